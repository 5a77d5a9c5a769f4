import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CID } from 'multiformats/cid'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { Replica, SyncDriver, blockstoreAdapter, cidOf } from '../js/node.js'
import { shuffle, syncOverLossyChannel } from './helpers.mjs'

const genesis = Replica.genesis({ app: 'notes', version: 1 })

/** Rejects with a MerkleClockError of this code. */
const rejectsWith = (promise, code) =>
  assert.rejects(promise, (e) => e.name === 'MerkleClockError' && e.code === code && e.message.length > 0)

test('create and append: heads, order, get', async () => {
  const r = await Replica.create(genesis)
  assert.equal(r.streamId, cidOf(genesis))
  assert.match(r.streamId, /^bafyr4i/)
  assert.deepEqual(r.heads(), [r.streamId])
  const a = await r.append({ text: 'buy milk' })
  const b = await r.append({ text: 'walk the dog' })
  assert.match(a, /^bafyr4i/)
  assert.deepEqual(r.heads(), [b])
  assert.deepEqual(r.order(), [r.streamId, a, b])
  assert.equal(r.length, 3)
  const event = await r.get(b)
  assert.deepEqual(event, { cid: b, height: 2, parents: [a], payload: { text: 'walk the dog' } })
  assert.equal(await r.get('bafyr4igbvc7qhfdyvvaw4hmq5bgeyqwxpzhk4fbmhxqkzzqxbqkr5ueyym'), undefined)
  assert.equal(r.compare(a, b), 'before')
  assert.equal(r.compare([b], a), 'after')
  assert.equal(r.compare(b, b), 'equal')
  assert.deepEqual(await r.appendMany([1, 2, 3]).then((c) => c.length), 3)
  assert.equal(r.length, 6)
})

test('payloads round-trip as DAG-CBOR values', async () => {
  const r = await Replica.create(genesis)
  const link = CID.parse(r.streamId)
  const payload = {
    int: 42,
    negative: -7,
    float: 1.5,
    big: 2n ** 60n,
    text: 'héllo',
    bytes: new Uint8Array([1, 2, 3]),
    list: [null, true, false, [[]]],
    nested: { b: 1, a: 2, __proto__x: 3 },
    link
  }
  const cid = await r.append(payload)
  const back = (await r.get(cid)).payload
  assert.equal(back.int, 42)
  assert.equal(back.negative, -7)
  assert.equal(back.float, 1.5)
  assert.equal(back.big, 2n ** 60n)
  assert.equal(back.text, 'héllo')
  assert.deepEqual(back.bytes, new Uint8Array([1, 2, 3]))
  assert.deepEqual(back.list, [null, true, false, [[]]])
  assert.deepEqual(back.nested, { a: 2, b: 1, __proto__x: 3 })
  assert.ok(CID.asCID(back.link), 'links come back as multiformats CIDs')
  assert.equal(back.link.toString(), r.streamId)
  // DAG-JSON link form is accepted too, and encodes the same block.
  const r2 = await Replica.create(genesis)
  const viaJson = await r2.append({ ...payload, link: { '/': r.streamId } })
  assert.equal(viaJson, cid, 'the same value encodes to the same canonical block')
})

test('values DAG-CBOR cannot hold are refused with a typed error', async () => {
  const r = await Replica.create(genesis)
  await rejectsWith(r.append(undefined), 'invalid_argument')
  await rejectsWith(r.append({ a: undefined }), 'invalid_argument')
  await rejectsWith(r.append(NaN), 'invalid_argument')
  await rejectsWith(r.append(new Map()), 'invalid_argument')
  await rejectsWith(r.append(new Date()), 'invalid_argument')
  await rejectsWith(r.append(() => 1), 'invalid_argument')
  await rejectsWith(r.append(2n ** 70n), 'invalid_argument')
  const cyclic = {}
  cyclic.self = cyclic
  await rejectsWith(r.append(cyclic), 'invalid_argument')
  let deep = 0
  for (let i = 0; i < 100; i++) deep = [deep]
  await rejectsWith(r.append(deep), 'encode') // beyond the core's payload depth limit (64)
  await rejectsWith(r.append({ big: new Uint8Array(2 << 20) }), 'encode') // beyond 1 MiB
  await rejectsWith(r.get('not a cid'), 'invalid_argument')
  await rejectsWith(r.ingest('not bytes'), 'invalid_argument')
  await rejectsWith(Replica.create(new Uint8Array([1, 2, 3])), 'open')
  assert.throws(() => r.compare('not a cid', r.streamId), (e) => e.code === 'invalid_argument')
  assert.throws(
    () => r.compare('bafyr4igbvc7qhfdyvvaw4hmq5bgeyqwxpzhk4fbmhxqkzzqxbqkr5ueyym', r.streamId),
    (e) => e.code === 'unknown_event'
  )
  assert.equal(r.length, 1, 'nothing was appended')
})

test('payload bytes handed to wasm directly are checked: not DAG-CBOR, not canonical, nested 100,000 deep, a bad link, bad ends', async () => {
  const r = await Replica.create(genesis)
  await rejectsWith(r.appendEncoded(new Uint8Array([0xff])), 'invalid_argument')
  await rejectsWith(r.appendEncoded(new Uint8Array([0x01, 0x02])), 'invalid_argument') // trailing bytes
  await rejectsWith(r.appendEncoded(new Uint8Array(100000).fill(0x81)), 'encode') // [[[[… beyond the depth limit
  await rejectsWith(r.appendManyEncoded(new Uint8Array([0x01, 0x5f]), new Uint32Array([1, 2])), 'invalid_argument') // unclosed
  await rejectsWith(r.appendManyEncoded(new Uint8Array([0x01, 0x02]), new Uint32Array([1])), 'invalid_argument') // ends short
  await rejectsWith(r.appendManyEncoded(new Uint8Array([0x01, 0x02]), new Uint32Array([2, 1])), 'invalid_argument') // ends descend
  await rejectsWith(r.appendEncoded(new Uint8Array([0xd8, 0x2a, 0x42, 0x00, 0x01])), 'invalid_argument')
  assert.throws(() => Replica.genesisEncoded(new Uint8Array([0x9f])), (e) => e.code === 'invalid_argument')
  await rejectsWith(r.appendMany('not an array'), 'invalid_argument')
  await rejectsWith(r.appendEncoded(new Uint8Array([0xa2, 0x61, 0x62, 0x01, 0x61, 0x61, 0x02])), 'invalid_argument') // {b, a}: keys out of order
  assert.equal(r.length, 1, 'nothing was appended')
  // Canonical bytes make the same block as the JS value.
  const a = await r.appendEncoded(new Uint8Array([0xa2, 0x61, 0x61, 0x02, 0x61, 0x62, 0x01])) // {a: 2, b: 1}
  assert.deepEqual((await r.get(a)).payload, { a: 2, b: 1 })
  const other = await Replica.create(genesis)
  assert.equal(await other.append({ a: 2, b: 1 }), a, 'the same block as the JS value makes')
})

test('append writes payloads straight into wasm memory: past the staging buffer, across memory growth, the blocks appendEncoded makes', async () => {
  const { encodePayload } = await import('../js/payload.js')
  const staged = await Replica.create(genesis)
  const direct = await Replica.create(genesis)
  const big = new Uint8Array(300_000).map((_, i) => i * 7)
  const payloads = [
    { small: 1 },
    { bytes: big }, // the staging buffer grows (wasm keeps what was written)
    'x'.repeat(70_000),
    { after: 'growth' }
  ]
  for (const p of payloads) {
    const cid = await staged.append(p)
    assert.equal(cid, await direct.appendEncoded(encodePayload(p).slice()), 'the same event')
    assert.equal(cidOf(await staged.getBlock(cid)), cid, 'the CID text read back is the block\'s')
    // Wasm memory grows (which detaches JS's views of it) between appends.
    await staged.appendMany(Array.from({ length: 2000 }, (_, i) => ({ filler: big.subarray(0, 100), i })))
    await direct.appendMany(Array.from({ length: 2000 }, (_, i) => ({ filler: big.subarray(0, 100), i })))
  }
  await rejectsWith(staged.append({ bad: undefined }), 'invalid_argument')
  assert.deepEqual(staged.heads(), direct.heads())
  assert.deepEqual((await staged.get(await staged.append({ last: true }))).payload, { last: true })
})

test('ingest in any order: pending until the parents arrive', async () => {
  const alice = await Replica.create(genesis)
  const cids = await alice.appendMany(Array.from({ length: 20 }, (_, i) => ({ i })))
  const blocks = await Promise.all(cids.map((c) => alice.getBlock(c)))

  const bob = await Replica.create(genesis)
  // The last event first: it waits for its parent.
  const last = await bob.ingest(blocks[19])
  assert.deepEqual(last, { status: 'pending', missing: [cids[18]] })
  assert.deepEqual(bob.missing(), [cids[18]])
  assert.deepEqual(bob.pending().events, 1)
  const statuses = []
  for (const b of shuffle(blocks.slice(0, 19))) statuses.push((await bob.ingest(b)).status)
  assert.ok(statuses.includes('pending') && statuses.includes('accepted'))
  assert.deepEqual(await bob.ingest(blocks[0]), { status: 'duplicate', missing: [] })
  assert.deepEqual(bob.heads(), alice.heads())
  assert.deepEqual(bob.order(), alice.order())
  assert.deepEqual(bob.missing(), [])

  // ingestMany, newest first: all accepted in one call, parents before children.
  const carol = await Replica.create(genesis)
  const report = await carol.ingestMany(blocks.slice().reverse())
  assert.equal(report.outcomes.length, 20)
  assert.deepEqual(report.accepted, cids)
  assert.deepEqual(carol.order(), alice.order())
})

test('a bad block is rejected with its reason', async () => {
  const r = await Replica.create(genesis)
  const garbage = await r.ingest(new Uint8Array([0xa1, 0x61, 0x78, 0x01]))
  assert.equal(garbage.status, 'rejected')
  assert.equal(garbage.reason, 'decode')
  assert.match(garbage.message, /./)

  const rej = await r.ingest(Replica.genesis('another stream'))
  assert.equal(rej.status, 'rejected')
  assert.equal(rej.reason, 'foreign_genesis')

  const good = await Replica.create(genesis)
  const cid = await good.append('fine')
  const bytes = await good.getBlock(cid)
  const wrong = await r.ingest(bytes, r.streamId) // bytes that do not hash to the CID given
  assert.deepEqual([wrong.status, wrong.reason], ['rejected', 'block'])
  assert.deepEqual(await r.ingest(bytes, cid), { status: 'accepted', missing: [] })
  const many = await r.ingestMany([new Uint8Array([1]), bytes])
  assert.deepEqual(many.outcomes.map((o) => o.status), ['rejected', 'duplicate'])
})

test('calls need not be awaited one by one: they queue', async () => {
  // A store whose puts wait until the test lets them go.
  const inner = blockstoreAdapter(new MemoryBlockstore())
  let gate = null
  let entered = null
  const gated = {
    get: (c) => inner.get(c),
    has: (c) => inner.has(c),
    put: async (c, b) => {
      if (gate) {
        entered()
        await gate
      }
      return inner.put(c, b)
    }
  }
  const r = await Replica.create(genesis, gated)
  let open
  gate = new Promise((resolve) => { open = resolve })
  const inPut = new Promise((resolve) => { entered = resolve })
  const pending = Array.from({ length: 10 }, (_, i) => r.append({ i }))
  await inPut // the first append is inside the store's put
  assert.throws(() => r.heads(), (e) => e.name === 'MerkleClockError' && e.code === 'busy')
  gate = null
  open()
  const cids = await Promise.all(pending)
  assert.deepEqual(r.order().slice(1), cids, 'appended in call order, each on the previous')
  assert.deepEqual(r.heads(), [cids[9]])
})

test('two replicas sync through the driver over a channel that loses messages', async () => {
  const alice = await Replica.create(genesis)
  const bob = await Replica.create(genesis)
  await alice.appendMany(Array.from({ length: 50 }, (_, i) => `alice ${i}`))
  await bob.append('bob')
  const a = new SyncDriver(alice, { timeoutMs: 2000, seed: 1 })
  const b = new SyncDriver(bob, { timeoutMs: 2000, seed: 2 })
  assert.equal(a.connect('bob', 0), false, 'a peer not known before')
  b.connect('alice', 0)
  const { dropped } = await syncOverLossyChannel(a, 'alice', b, 'bob', { seconds: 30, dropEvery: 3 })
  assert.ok(dropped > 0, 'some messages were lost')
  assert.deepEqual(alice.heads(), bob.heads())
  assert.equal(alice.heads().length, 2, 'two concurrent heads')
  assert.deepEqual(alice.order(), bob.order())
  assert.equal(alice.length, 52)
  assert.ok(a.settled('bob') && b.settled('alice'), 'synced and quiet')
  assert.ok(a.stats().timeouts + b.stats().timeouts > 0, 'losses were repaired by timeouts')

  // A message that is not a sync message is a typed error, not a crash.
  await rejectsWith(b.receive('alice', new Uint8Array([0xff, 0xff, 0xff]), 31000), 'sync')
  await rejectsWith(a.tick(-1), 'invalid_argument')
  assert.throws(() => new SyncDriver(alice, { timeoutMs: 'soon' }), (e) => e.code === 'invalid_argument')
})

test('CAR export and import', async () => {
  const alice = await Replica.create(genesis)
  await alice.appendMany(['a', 'b', 'c'])
  const car = await alice.exportCar()
  assert.ok(car instanceof Uint8Array)
  const bob = await Replica.create(genesis)
  const report = await bob.importCar(car)
  assert.deepEqual(report.roots, alice.heads())
  assert.equal(report.accepted.length, 3)
  assert.deepEqual(bob.order(), alice.order())
  await rejectsWith(bob.importCar(new Uint8Array([1, 2, 3])), 'car')
})

test('a replica over a JS blockstore (interface-blockstore, as Helia uses)', async () => {
  const blockstore = new MemoryBlockstore()
  const r = await Replica.create(genesis, blockstoreAdapter(blockstore))
  const cid = await r.append({ stored: 'in the JS blockstore' })
  assert.ok(await blockstore.has(CID.parse(cid)))
  assert.ok(await blockstore.has(CID.parse(r.streamId)))
  assert.deepEqual((await r.get(cid)).payload, { stored: 'in the JS blockstore' })

  // Syncs with an in-memory replica like any other.
  const other = await Replica.create(genesis)
  await other.append('from memory')
  const a = new SyncDriver(r, { seed: 3 })
  const b = new SyncDriver(other, { seed: 4 })
  a.connect('other', 0)
  b.connect('r', 0)
  await syncOverLossyChannel(a, 'r', b, 'other', { seconds: 3 })
  assert.deepEqual(r.heads(), other.heads())
  assert.equal(r.length, 3)
})

test('a failing JS blockstore gives a store error and leaves the replica unchanged', async () => {
  const inner = blockstoreAdapter(new MemoryBlockstore())
  let failPuts = false
  const flaky = {
    get: (c) => inner.get(c),
    has: (c) => inner.has(c),
    put: async (c, b) => {
      if (failPuts) throw new Error('disk full')
      return inner.put(c, b)
    }
  }
  const r = await Replica.create(genesis, flaky)
  const first = await r.append(1)
  failPuts = true
  await assert.rejects(r.append(2), (e) => e.code === 'store' && /disk full/.test(e.message))
  assert.deepEqual(r.heads(), [first])
  failPuts = false
  const second = await r.append(2)
  assert.deepEqual(r.heads(), [second])

  // A store that returns bytes that do not match the CID is caught.
  const honest = blockstoreAdapter(new MemoryBlockstore())
  let lying = false
  const liar = {
    get: async (c) => (lying ? new Uint8Array([1]) : honest.get(c)),
    put: (c, b) => honest.put(c, b),
    has: (c) => honest.has(c)
  }
  const l = await Replica.create(genesis, liar)
  lying = true
  await assert.rejects(l.get(l.streamId), (e) => e.code === 'store' && /corrupt/i.test(e.message))
  await rejectsWith(Replica.create(genesis, { get: 1 }), 'invalid_argument')
})

test('CID strings: the same text as multiformats, other bases accepted, junk refused', async () => {
  const { base58btc } = await import('multiformats/bases/base58')
  const r = await Replica.create(genesis)
  const cid = await r.append({ some: 'event' })
  const parsed = CID.parse(cid)
  assert.equal(parsed.toString(), cid, 'the canonical base32 text')
  assert.equal(cidOf(await r.getBlock(cid)), cid)
  assert.ok(r.has(parsed.toString(base58btc)), 'base58btc')
  assert.ok(r.has('B' + cid.slice(1).toUpperCase()), 'base32 upper case')
  assert.equal(r.compare(parsed.toString(base58btc), cid), 'equal')
  for (const junk of ['', 'b', cid.slice(0, -1), cid + 'a', cid.replace(/.$/, '1'), cid.slice(0, -1) + 'b']) {
    assert.throws(() => r.has(junk), (e) => e.code === 'invalid_argument', JSON.stringify(junk))
  }
})
