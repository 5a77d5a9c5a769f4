// Helia 7 (IPFS in JavaScript) against a merkle-clock node over Bitswap
// 1.2.0, on 127.0.0.1. Driven by libp2p/tests/helia.rs and
// libp2p/examples/bitswap_report.rs; run it with the Node 22 that this
// package pins (node_modules/node/bin/node): Helia 7 does not load on Node 20.
//
//   bitswap.mjs fetch MULTIADDR CIDS_FILE
//     Dials the node, fetches every CID listed (one per line) over Bitswap,
//     recomputes each CID from the bytes (BLAKE3, DAG-CBOR), checks each
//     event's parents are in the list (or are the genesis, the first line),
//     and prints one JSON line: {"ok":true,"blocks":N,"bytes":B,"seconds":S}.
//   bitswap.mjs serve CAR_FILE
//     Loads the CAR's blocks into Helia (each CID recomputed), listens on
//     127.0.0.1, prints "listening MULTIADDR", and serves until stdin closes.
//
// Any failure prints the reason on stderr and exits with status 1.

import { readFile } from 'node:fs/promises'
import { multiaddr } from '@multiformats/multiaddr'
import { CarReader } from '@ipld/car/reader'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { hashesTo, heliaGet, isEventCid, startHelia } from './ours.mjs'

function fail (...why) {
  console.error('helia bitswap interop FAILED:', ...why)
  process.exit(1)
}

/** The CID the bytes hash to, checked against the one they were asked by. */
async function verify (cid, bytes) {
  if (!isEventCid(cid)) fail('not a v1 DAG-CBOR BLAKE3 CID', cid.toString())
  if (!(await hashesTo(cid, bytes))) fail('bytes do not hash to', cid.toString())
  return dagCbor.decode(bytes)
}

async function fetch (addr, cidsFile) {
  const lines = (await readFile(cidsFile, 'utf8')).split('\n').filter(Boolean)
  const cids = lines.map((l) => CID.parse(l))
  const known = new Set(lines)
  const helia = await startHelia([])
  await helia.libp2p.dial(multiaddr(addr))
  const started = performance.now()
  let bytes = 0
  let next = 0
  // 64 gets in flight (HELIA_GETS): Helia batches them into wantlists. Its
  // client spends milliseconds per block received, growing with the gets in
  // flight (measured: 64 is faster than 16, 256 or 1,000).
  const worker = async () => {
    while (next < cids.length) {
      const cid = cids[next++]
      const block = await heliaGet(helia, cid, 60_000)
      const event = await verify(cid, block)
      bytes += block.length
      for (const p of event.parents ?? []) {
        if (!known.has(p.toString())) fail('parent', p.toString(), 'of', cid.toString(), 'is not in the stream')
      }
      if (typeof event.height !== 'number') fail('not an event', cid.toString())
    }
  }
  await Promise.all(Array.from({ length: Number(process.env.HELIA_GETS ?? 64) }, worker))
  const seconds = (performance.now() - started) / 1000
  console.log(JSON.stringify({ ok: true, blocks: cids.length, bytes, seconds }))
  await helia.stop()
}

async function serve (carFile) {
  const reader = await CarReader.fromBytes(await readFile(carFile))
  const helia = await startHelia(['/ip4/127.0.0.1/tcp/0'])
  let blocks = 0
  for await (const { cid, bytes } of reader.blocks()) {
    await verify(cid, bytes)
    await helia.blockstore.put(cid, bytes)
    blocks++
  }
  const addr = helia.libp2p.getMultiaddrs().find((a) => a.toString().startsWith('/ip4/127.0.0.1/'))
  if (addr == null) fail('no loopback address')
  console.log(`listening ${addr.toString()} ${blocks}`)
  // Serve until the driver closes our stdin.
  process.stdin.resume()
  await new Promise((resolve) => process.stdin.on('end', resolve))
  await helia.stop()
}

const [mode, ...args] = process.argv.slice(2)
try {
  if (mode === 'fetch') await fetch(args[0], args[1])
  else if (mode === 'serve') await serve(args[0])
  else fail('usage: bitswap.mjs fetch MULTIADDR CIDS_FILE | serve CAR_FILE')
  process.exit(0)
} catch (e) {
  fail(e?.stack ?? e)
}
