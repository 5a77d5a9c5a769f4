// The adapter between an `interface-blockstore` (Helia's `helia.blockstore`,
// blockstore-core's MemoryBlockstore, ...) and the replica's JS store.
//
// The replica calls `get(cidBytes)`, `put(cidBytes, bytes)` and `has(cidBytes)`
// with the CID in binary form; this turns it into a `multiformats` CID, reads
// blockstores whose `get` returns bytes, a promise of bytes, or an (async)
// iterable of byte chunks (interface-blockstore 7), and turns a `NotFoundError`
// into `undefined` (a block that is not there is not an error).

import { CID } from 'multiformats/cid'

/** @param {unknown} e */
const isNotFound = (e) =>
  e != null && typeof e === 'object' && (e.name === 'NotFoundError' || e.code === 'ERR_NOT_FOUND')

/**
 * @param {unknown} value bytes, a promise of bytes, or an (async) iterable of chunks
 * @returns {Promise<Uint8Array | undefined>}
 */
async function readAll (value) {
  value = await value
  if (value == null) return undefined
  if (value instanceof Uint8Array) return value
  if (typeof value[Symbol.asyncIterator] !== 'function' && typeof value[Symbol.iterator] !== 'function') {
    throw new TypeError('blockstore.get() returned neither bytes nor an iterable of byte chunks')
  }
  const chunks = []
  let length = 0
  for await (const chunk of value) {
    chunks.push(chunk)
    length += chunk.length
  }
  if (chunks.length === 1) return chunks[0]
  const out = new Uint8Array(length)
  let at = 0
  for (const c of chunks) {
    out.set(c, at)
    at += c.length
  }
  return out
}

/**
 * The meta store (string keys, `Uint8Array` values) that keeps the streams'
 * heads and logs: a `Map`, or an object with `get(key)` (bytes, undefined, or
 * a `NotFoundError` when absent) and `put(key, bytes)`, sync or async.
 */
function metaStore (meta) {
  if (meta instanceof Map) {
    return { get: async (key) => meta.get(key), put: async (key, bytes) => { meta.set(key, bytes) } }
  }
  if (meta == null || typeof meta.get !== 'function' || typeof meta.put !== 'function') {
    throw new TypeError('meta must be a Map or an object with get(key) and put(key, bytes)')
  }
  return {
    async get (key) {
      try {
        return (await meta.get(key)) ?? undefined
      } catch (e) {
        if (isNotFound(e)) return undefined
        throw e
      }
    },
    async put (key, bytes) {
      await meta.put(key, bytes)
    }
  }
}

/**
 * The store argument of `Replica.create` / `open` / `openOrCreate` for an
 * `interface-blockstore`:
 * `await Replica.openOrCreate(genesis, blockstoreAdapter(helia.blockstore, { meta }))`.
 *
 * The blocks go to `blockstore`; each stream's heads and log go to `meta`
 * (a few small records per commit), so that a replica reopened on the same
 * two stores finds its stream again. `meta` defaults to a new `Map`: the
 * heads then last as long as this adapter object (reopen on it in the same
 * process), not across a reload. For that, pass a persistent one (a wrapper
 * around IndexedDB, a file, Helia's datastore: see wasm/README.md).
 * @param {{ get(cid: CID): any, put(cid: CID, bytes: Uint8Array): any, has?(cid: CID): any }} blockstore
 * @param {{ meta?: Map<string, Uint8Array> | { get(key: string): any, put(key: string, bytes: Uint8Array): any } }} [options]
 */
export function blockstoreAdapter (blockstore, { meta } = {}) {
  const metas = metaStore(meta ?? new Map())
  return {
    getMeta: (key) => metas.get(key),
    putMeta: (key, bytes) => metas.put(key, bytes),
    async get (cidBytes) {
      try {
        return await readAll(blockstore.get(CID.decode(cidBytes)))
      } catch (e) {
        if (isNotFound(e)) return undefined
        throw e
      }
    },
    async put (cidBytes, bytes) {
      await blockstore.put(CID.decode(cidBytes), bytes)
    },
    async has (cidBytes) {
      if (typeof blockstore.has !== 'function') return (await this.get(cidBytes)) !== undefined
      return Boolean(await blockstore.has(CID.decode(cidBytes)))
    }
  }
}
