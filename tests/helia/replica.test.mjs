// The JS package (wasm/, built) on Helia's own blockstore: a replica's blocks
// go where the rest of an IPFS application sees them, so another Helia node
// fetches the stream over Bitswap with nothing more done, and a second
// replica over that node's blockstore rebuilds the same clock. Run with the
// Node 22 this package pins (Helia 7 does not load on Node 20), after `bash
// wasm/build.sh` and `npm ci` in wasm/ and here (wasm/ci.sh does all three):
//
//   node_modules/node/bin/node --test replica.test.mjs

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CID } from 'multiformats/cid'
import { Replica, blockstoreAdapter } from '../../wasm/js/node.js'
import { hashesTo, heliaGet, startHelia } from './ours.mjs'

test('a replica on Helia\'s blockstore: another Helia node fetches its stream over Bitswap', async () => {
  const a = await startHelia(['/ip4/127.0.0.1/tcp/0'])
  const b = await startHelia([])
  try {
    const genesis = Replica.genesis({ app: 'on helia' })
    const writer = await Replica.create(genesis, blockstoreAdapter(a.blockstore))
    await writer.appendMany(Array.from({ length: 40 }, (_, i) => ({ n: i })))
    await writer.append({ last: true })
    const order = writer.order()
    assert.equal(order.length, 42)
    for (const cid of order) assert.ok(await a.blockstore.has(CID.parse(cid)), `Helia's blockstore holds ${cid}`)

    // Node b knows nothing of merkle-clock: it asks a's Bitswap for each CID.
    const addr = a.libp2p.getMultiaddrs().find((m) => m.toString().startsWith('/ip4/127.0.0.1/'))
    await b.libp2p.dial(addr)
    const blocks = await Promise.all(order.map(async (cid) => {
      const bytes = await heliaGet(b, CID.parse(cid), 30_000)
      assert.ok(await hashesTo(CID.parse(cid), bytes), `${cid} verified by b`)
      return bytes
    }))

    // A second replica over b's blockstore: the same clock from those blocks.
    const reader = await Replica.create(genesis, blockstoreAdapter(b.blockstore))
    const { accepted } = await reader.ingestMany(blocks.slice(1))
    assert.equal(accepted.length, 41)
    assert.deepEqual(reader.heads(), writer.heads())
    assert.deepEqual(reader.order(), order)
    assert.deepEqual((await reader.get(writer.heads()[0])).payload, { last: true })
  } finally {
    await b.stop()
    await a.stop()
  }
})
