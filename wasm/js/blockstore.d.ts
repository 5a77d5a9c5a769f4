// Types of `merkle-clock-wasm/blockstore` (js/blockstore.js): a replica's
// store on an `interface-blockstore` (Helia's `helia.blockstore`,
// blockstore-core's stores, ...). See wasm/README.md, "A Helia blockstore
// behind the replica".

import type { CID } from 'multiformats/cid'

/**
 * What `Blockstore.get` may give back: the block's bytes, its bytes in
 * chunks (interface-blockstore 7 returns a generator), or `undefined` /
 * `null` when it has no such block. Throwing a `NotFoundError` means "not
 * there" too.
 */
export type BlockRead = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array> | null | undefined

/**
 * The blockstore `blockstoreAdapter` takes: the part of `interface-blockstore`
 * that a replica uses, keyed by `multiformats` CIDs. Each method may answer
 * at once or with a promise. Helia's `helia.blockstore` and blockstore-core's
 * `MemoryBlockstore` fit as they are.
 */
export interface Blockstore {
  /** The block `cid`: bytes, chunks, or nothing (see {@link BlockRead}). */
  get(cid: CID): BlockRead | PromiseLike<BlockRead>
  /** Stores `bytes` under `cid` (what it returns is ignored). */
  put(cid: CID, bytes: Uint8Array): unknown
  /** Whether the store holds `cid`; optional (`get` answers without it). */
  has?(cid: CID): boolean | PromiseLike<boolean>
}

/**
 * A string-keyed store of small records (`Uint8Array`s) that keeps each
 * stream's heads and log, so a stream can be reopened after a reload: a
 * `Map`, or an object with `get` and `put`, sync or async. `get` answers
 * `undefined` (or `null`, or throws a `NotFoundError`) for a key it has not
 * got. Keys look like `merkle-clock/<stream>/heads`.
 */
export type MetaStore =
  | Map<string, Uint8Array>
  | {
    get(key: string): Uint8Array | null | undefined | PromiseLike<Uint8Array | null | undefined>
    put(key: string, bytes: Uint8Array): unknown
  }

/** The options of {@link blockstoreAdapter}. */
export interface BlockstoreAdapterOptions {
  /**
   * Where the heads and log go. Omitted: a new `Map`, so reopening works on
   * the same adapter object, but a reload loses the heads (not the blocks).
   */
  meta?: MetaStore
}

/**
 * The store argument of `Replica.create` / `open` / `openOrCreate`: the
 * object the replica calls, with CIDs in their binary form. Build one with
 * {@link blockstoreAdapter}, or write your own: `get` answers the block's
 * bytes or `undefined`, `has` is optional, and `getMeta` / `putMeta` (both
 * or neither) keep the heads and log so the stream can be reopened.
 * Blocks read back are verified against their CIDs.
 */
export interface ReplicaStore {
  /** The block whose CID has these bytes, or `undefined`. */
  get(cid: Uint8Array): Uint8Array | null | undefined | PromiseLike<Uint8Array | null | undefined>
  /** Stores a block under the CID with these bytes. */
  put(cid: Uint8Array, bytes: Uint8Array): unknown
  /** Whether the block is stored (optional: `get` answers otherwise). */
  has?(cid: Uint8Array): unknown
  /** The meta record `key`, or `undefined`. */
  getMeta?(key: string): Uint8Array | null | undefined | PromiseLike<Uint8Array | null | undefined>
  /** Stores the meta record `key`. */
  putMeta?(key: string, bytes: Uint8Array): unknown
}

/**
 * A replica's store on an `interface-blockstore`: blocks go to `blockstore`
 * (where the rest of the application, and bitswap, sees them), each
 * stream's heads and log to `options.meta`.
 *
 * ```ts
 * const store = blockstoreAdapter(helia.blockstore, { meta })
 * const replica = await Replica.openOrCreate(genesis, store)
 * ```
 *
 * Throws a `TypeError` when `meta` is neither a `Map` nor has `get` and `put`.
 */
export function blockstoreAdapter (blockstore: Blockstore, options?: BlockstoreAdapterOptions): Required<ReplicaStore>
