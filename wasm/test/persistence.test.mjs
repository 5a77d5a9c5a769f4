import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { Replica, blockstoreAdapter } from '../js/node.js'

const genesis = Replica.genesis({ app: 'persistence' })

const rejectsWith = (promise, code) =>
  assert.rejects(promise, (e) => e.name === 'MerkleClockError' && e.code === code && e.message.length > 0)

/** An async string-keyed store, as an IndexedDB wrapper would be. */
class AsyncMeta {
  constructor () { this.records = new Map(); this.failPuts = false }
  async get (key) { return this.records.get(key) }
  async put (key, bytes) {
    if (this.failPuts) throw new Error('quota exceeded')
    this.records.set(key, bytes)
  }
}

/** What a reopened replica must show again. */
const snapshot = (r) => ({ streamId: r.streamId, heads: r.heads(), order: r.order(), length: r.length })

test('a replica reopened on the same stores finds its heads and events again', async () => {
  const blockstore = new MemoryBlockstore()
  const meta = new AsyncMeta()
  const adapter = blockstoreAdapter(blockstore, { meta })
  const r = await Replica.create(genesis, adapter)
  // More than two log chunks (128 entries each), by single and batch appends.
  for (let i = 0; i < 100; i++) await r.append({ i })
  await r.appendMany(Array.from({ length: 200 }, (_, i) => ({ batch: i })))
  // A concurrent event from elsewhere: two heads.
  const other = await Replica.create(genesis)
  const fork = await other.getBlock(await other.append('concurrent'))
  assert.equal((await r.ingest(fork)).status, 'accepted')
  const before = snapshot(r)
  assert.equal(before.heads.length, 2)
  assert.equal(before.length, 302)
  r.free()

  // The same adapter object.
  const again = await Replica.open(before.streamId, adapter)
  assert.deepEqual(snapshot(again), before)
  const next = await again.append('after reopening')
  assert.deepEqual(again.heads(), [next], 'the next append folds both heads')
  const after = snapshot(again)
  again.free()

  // A fresh adapter over the same blockstore and meta store (a page reload).
  const reloaded = await Replica.open(before.streamId, blockstoreAdapter(blockstore, { meta }))
  assert.deepEqual(snapshot(reloaded), after)
  assert.deepEqual((await reloaded.get(next)).payload, 'after reopening')

  // openOrCreate opens it; create refuses to make it twice.
  const joined = await Replica.openOrCreate(genesis, blockstoreAdapter(blockstore, { meta }))
  assert.deepEqual(snapshot(joined), after)
  await rejectsWith(Replica.create(genesis, blockstoreAdapter(blockstore, { meta })), 'open')
})

test('openOrCreate creates a stream the store does not hold; open refuses it', async () => {
  const meta = new Map()
  const blockstore = new MemoryBlockstore()
  const other = Replica.genesis('another stream')
  const r = await Replica.openOrCreate(other, blockstoreAdapter(blockstore, { meta }))
  assert.deepEqual(r.heads(), [r.streamId])
  await rejectsWith(Replica.open((await Replica.create(genesis)).streamId, blockstoreAdapter(blockstore, { meta })), 'open')
  await rejectsWith(Replica.open(r.streamId), 'invalid_argument')
  await rejectsWith(Replica.open('not a cid', blockstoreAdapter(blockstore, { meta })), 'invalid_argument')
  // The default meta store lives as long as its adapter: reopen on it works.
  const adapter = blockstoreAdapter(new MemoryBlockstore())
  const a = await Replica.create(genesis, adapter)
  const cid = await a.append('kept in the adapter')
  assert.deepEqual((await Replica.open(a.streamId, adapter)).heads(), [cid])
})

test('a failing meta store leaves the stream as its last commit', async () => {
  const blockstore = new MemoryBlockstore()
  const meta = new AsyncMeta()
  const r = await Replica.create(genesis, blockstoreAdapter(blockstore, { meta }))
  const kept = await r.appendMany(Array.from({ length: 127 }, (_, i) => i))
  meta.failPuts = true
  await rejectsWith(r.append('lost'), 'store')
  await rejectsWith(r.appendMany(['lost', 'too']), 'store')
  assert.deepEqual(r.heads(), [kept.at(-1)])
  const reopened = await Replica.open(r.streamId, blockstoreAdapter(blockstore, { meta }))
  assert.deepEqual(reopened.heads(), [kept.at(-1)])
  assert.equal(reopened.length, 128)
  // The store works again: the next commits overwrite what the failed ones left.
  meta.failPuts = false
  const next = await r.appendMany(['one', 'two'])
  const again = await Replica.open(r.streamId, blockstoreAdapter(blockstore, { meta }))
  assert.deepEqual(again.heads(), [next[1]])
  assert.equal(again.length, 130)
})

test('corrupt or half-given meta stores are typed errors', async () => {
  const blockstore = new MemoryBlockstore()
  const meta = new Map()
  const r = await Replica.create(genesis, blockstoreAdapter(blockstore, { meta }))
  await r.append(1)
  const headsKey = `merkle-clock/${r.streamId}/heads`
  assert.ok(meta.has(headsKey))
  meta.set(headsKey, new Uint8Array([0xff, 0x00]))
  await rejectsWith(Replica.open(r.streamId, blockstoreAdapter(blockstore, { meta })), 'store')
  meta.set(headsKey, new Uint8Array([0xa0])) // {}: no heads
  await rejectsWith(Replica.open(r.streamId, blockstoreAdapter(blockstore, { meta })), 'store')
  meta.delete(`merkle-clock/${r.streamId}/log/0`)
  await rejectsWith(Replica.open(r.streamId, blockstoreAdapter(blockstore, { meta })), 'store')
  const plain = blockstoreAdapter(blockstore)
  await rejectsWith(Replica.create(genesis, { get: plain.get, put: plain.put, getMeta: plain.getMeta }), 'invalid_argument')
  assert.throws(() => blockstoreAdapter(blockstore, { meta: {} }), TypeError)
})
