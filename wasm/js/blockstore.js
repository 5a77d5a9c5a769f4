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
 * The store argument of `Replica.create` for an `interface-blockstore`:
 * `await Replica.create(genesis, blockstoreAdapter(helia.blockstore))`.
 * @param {{ get(cid: CID): any, put(cid: CID, bytes: Uint8Array): any, has?(cid: CID): any }} blockstore
 */
export function blockstoreAdapter (blockstore) {
  return {
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
