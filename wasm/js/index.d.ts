// Types of `merkle-clock-wasm` (js/node.js; js/web.js adds `init`, see
// web.d.ts). Written by hand from wasm/src (the wasm-bindgen layer) and
// wasm/js; wasm/README.md documents the same API. test/types.test.mjs checks
// that every name declared here exists at run time and the other way round,
// and that the module's results fit these types; test/types/usage.ts (npm
// run test:types) uses them as a consumer does.

import type { ReplicaStore } from './blockstore.js'

export type { BlockRead, Blockstore, BlockstoreAdapterOptions, MetaStore, ReplicaStore } from './blockstore.js'
export { blockstoreAdapter } from './blockstore.js'

// ---------------------------------------------------------------- values

/**
 * A CID as this package gives and takes it: its text, e.g. `'bafyr4i…'`
 * (CIDv1, DAG-CBOR, BLAKE3). Strings compare with `===` and key objects;
 * `CID.parse(cid)` of `multiformats` makes a `CID` object of one.
 */
export type CidString = string

/** A public key (an author), as this package gives it: 64 lowercase hex digits. */
export type PublicKeyHex = string

/** A public key as this package takes it: 64 hex digits, or its 32 bytes (`ed25519.getPublicKey`). */
export type PublicKey = PublicKeyHex | Uint8Array

/** A secret key: the 32-byte Ed25519 seed (`generateSecretKey()`, `ed25519.utils.randomSecretKey()`). */
export type SecretKey = Uint8Array

/** One event or a set of them (e.g. a replica's heads): a clock to compare. */
export type Clock = CidString | readonly CidString[]

/** How clock `a` relates to clock `b`: `'before'` means a's history is inside b's. */
export type ClockOrder = 'equal' | 'before' | 'after' | 'concurrent'

/**
 * A link inside a payload: a `multiformats` `CID` object (from any copy of
 * the package: what matters is `cid.asCID === cid`). Links come back as
 * `multiformats` CIDs too.
 */
export interface CidLink {
  readonly asCID: unknown
  readonly bytes: Uint8Array
}

/**
 * A payload: a plain JS value, stored as canonical DAG-CBOR. Integers
 * beyond ±(2^53−1) come back as `bigint`; `{"/": "bafy…"}` (DAG-JSON's
 * link form) is taken as a link. `undefined`, `NaN`, `Infinity`, `Map`,
 * `Date`, class instances and cycles are refused (`invalid_argument`).
 * Declare payload shapes with `type`, not `interface`: an interface has
 * no index signature, so TypeScript does not take it as a `Payload`.
 */
export type Payload =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | CidLink
  | Payload[]
  | { [key: string]: Payload }

// ---------------------------------------------------------------- outcomes

/** An event taken into the DAG (`missing` is empty). */
export interface AcceptedOutcome {
  status: 'accepted'
  missing: []
}

/** An event the DAG already held (`missing` is empty). */
export interface DuplicateOutcome {
  status: 'duplicate'
  missing: []
}

/** An event waiting for parents (`missing`); it is accepted when they arrive. */
export interface PendingOutcome {
  status: 'pending'
  missing: CidString[]
}

/**
 * The rules of the block and the DAG: `block` (the bytes do not match the
 * CID, or the CID is not an event CID), `limits` (too many parents, nested
 * too deep), `decode` (not a canonical event), `height` (not 1 + the
 * largest parent height), `foreign_genesis` (a parentless event not this
 * stream's genesis), `insert` (another DAG rule), `ancestor_rejected`.
 */
export type RuleReason = 'block' | 'limits' | 'decode' | 'height' | 'foreign_genesis' | 'insert' | 'ancestor_rejected'

/**
 * Why a block was refused: a {@link RuleReason}, `signature` (unsigned on a
 * stream with admins, an invalid key, a signature that does not verify) or
 * `unauthorized` (validly signed, but the author may not write it).
 */
export type RejectReason = RuleReason | 'signature' | 'unauthorized'

/**
 * The authorship rule an event broke (a {@link RejectReason} `signature`:
 * `unsigned`, `invalid_key`, `bad_signature`; `unauthorized`: the others).
 */
export type AuthKind =
  | 'unsigned'
  | 'invalid_key'
  | 'bad_signature'
  | 'not_a_member'
  | 'revoked'
  | 'not_an_admin'
  | 'grant_to_revoked'
  | 'last_admin'
  | 'open_stream'

/** A block refused by the rules of blocks and the DAG. */
export interface RuleRejection {
  status: 'rejected'
  reason: RuleReason
  /** What is wrong, for people. */
  message: string
}

/** An unsigned event on a stream that takes only signed ones. */
export interface UnsignedRejection {
  status: 'rejected'
  reason: 'signature'
  auth: 'unsigned'
  cid: CidString
  message: string
}

/** A signed event whose key is not valid or whose signature does not verify. */
export interface ForgedRejection {
  status: 'rejected'
  reason: 'signature'
  auth: 'invalid_key' | 'bad_signature'
  cid: CidString
  /** The author the event claims. */
  author: PublicKeyHex
  message: string
}

/** An event by an author revoked in its causal past. */
export interface RevokedRejection {
  status: 'rejected'
  reason: 'unauthorized'
  auth: 'revoked'
  cid: CidString
  author: PublicKeyHex
  /** The revocation event (of those in the event's past, the lowest CID). */
  revocation: CidString
  message: string
}

/** A validly signed event that its author may not write. */
export interface UnauthorizedRejection {
  status: 'rejected'
  reason: 'unauthorized'
  auth: 'not_a_member' | 'not_an_admin' | 'grant_to_revoked' | 'last_admin' | 'open_stream'
  cid: CidString
  author: PublicKeyHex
  message: string
}

/** A block refused on the grounds of its author (narrow further on `auth`). */
export type AuthRejection = UnsignedRejection | ForgedRejection | RevokedRejection | UnauthorizedRejection

/** A refused block: narrow on `reason`, then on `auth`. The replica is unchanged. */
export type Rejection = RuleRejection | AuthRejection

/**
 * What `ingest` did with one block. Narrow on `status`:
 *
 * ```ts
 * const outcome = await replica.ingest(block)
 * if (outcome.status === 'pending') fetchBlocks(outcome.missing)
 * else if (outcome.status === 'rejected') console.warn(outcome.reason, outcome.message)
 * ```
 */
export type IngestOutcome = AcceptedOutcome | DuplicateOutcome | PendingOutcome | Rejection

/** What `ingestMany` did: one outcome per block, in order, and every event added. */
export interface IngestReport {
  outcomes: IngestOutcome[]
  /** The events added (pending ones released included), each after its parents. */
  accepted: CidString[]
}

/** What `importCar` did: as `ingestMany`, with the CAR file's roots. */
export interface CarImport extends IngestReport {
  roots: CidString[]
}

// ---------------------------------------------------------------- events and membership

/** A member's role: writers append; admins also grant and revoke. */
export type Role = 'writer' | 'admin'

/** What a membership event does. */
export type MemberOp =
  | { op: 'grant', key: PublicKeyHex, role: Role }
  | { op: 'revoke', key: PublicKeyHex }

/** An event as `get` reads it. */
export interface ReplicaEvent {
  cid: CidString
  /** 0 for the genesis, else 1 + the largest parent height. */
  height: number
  parents: CidString[]
  payload: Payload
  /** The signer, on a signed event. */
  author?: PublicKeyHex
  /** What it does, on a membership event (`grant`, `revoke`). */
  member?: MemberOp
}

/** Who may write, as the genesis says: anyone, or members starting from these admins. */
export type Policy = { open: true } | { open: false, admins: PublicKeyHex[] }

/** The membership of a signed stream at some point of its history. */
export interface Members {
  /** Each member's role. */
  roles: Record<PublicKeyHex, Role>
  /** Each revoked key, with its revocation event. */
  revoked: Record<PublicKeyHex, CidString>
}

/** The options of `Replica.genesis`. */
export interface GenesisOptions {
  /** Public keys (at least one): the stream then takes only events signed by its members. */
  admins?: readonly PublicKey[]
}

/** An event for `Replica.signedEvent`, built by hand. */
export interface SignedEventFields {
  /** The stream's id (its genesis CID). */
  stream: CidString
  /** An integer ≥ 1. */
  height: number
  parents: Clock
  payload: Payload
}

// ---------------------------------------------------------------- errors

/**
 * The `code` of a {@link MerkleClockError}: `invalid_argument` (a value the
 * API cannot take), `busy` (a synchronous call while a store call is in
 * flight: await it first), `encode` (a payload beyond the limits),
 * `rejected` (an event the replicas would refuse), `needs_signer` (an
 * append on a stream with admins, no signer set), `open` (a bad genesis,
 * `create` of a stream the store holds, `open` of one it does not),
 * `store` (the store failed), `unknown_event` (a CID not in the DAG),
 * `sync` (a sync message that does not decode), `car` (a CAR file that
 * does not parse).
 */
export type ErrorCode =
  | 'invalid_argument'
  | 'busy'
  | 'encode'
  | 'rejected'
  | 'needs_signer'
  | 'open'
  | 'store'
  | 'unknown_event'
  | 'sync'
  | 'car'

/**
 * What this package throws (or rejects a promise with): an `Error` named
 * `MerkleClockError` with a `code`. It is a plain `Error`, not a class to
 * `instanceof`: test `e.name === 'MerkleClockError'`, then narrow on `code`.
 */
export type MerkleClockError = MerkleClockFailure | AppendRejectedError

/** A {@link MerkleClockError} of any code but `rejected`. */
export interface MerkleClockFailure extends Error {
  name: 'MerkleClockError'
  code: Exclude<ErrorCode, 'rejected'>
}

/**
 * An append, grant or revocation that the replicas would refuse (nothing
 * was stored): why, as a refused block's outcome says it.
 */
export interface AppendRejectedError extends Error {
  name: 'MerkleClockError'
  code: 'rejected'
  reason: RejectReason
  auth?: AuthKind
  cid?: CidString
  author?: PublicKeyHex
  revocation?: CidString
}

// ---------------------------------------------------------------- Replica

/**
 * A replica of one stream (a Merkle clock): its DAG of events, their total
 * order, and a store for their blocks. Make one with `Replica.create`,
 * `Replica.open` or `Replica.openOrCreate`.
 *
 * Methods that touch the store return a `Promise`; they run one at a time
 * in call order, so they need not be awaited one by one. The synchronous
 * readers throw a `busy` error while one is in flight.
 */
export class Replica {
  private constructor ()

  /** The genesis block of a new stream with this payload; with `admins`, a signed stream. */
  static genesis (payload: Payload, options?: GenesisOptions): Uint8Array
  /** As `genesis`, with the payload already canonical DAG-CBOR bytes. */
  static genesisEncoded (payload: Uint8Array, admins?: readonly PublicKey[] | null): Uint8Array
  /** A signed event's block, built by hand (for tools and tests). */
  static signedEvent (event: SignedEventFields, secretKey: SecretKey): Uint8Array
  /**
   * A new replica of the stream `genesis` starts. `store` omitted or `null`:
   * in memory. Rejects (`open`) when the store already holds the stream.
   */
  static create (genesis: Uint8Array, store?: ReplicaStore | null): Promise<Replica>
  /** Reopens a stream (by its id) from a store that keeps heads: it continues where it stopped. */
  static open (streamId: CidString, store: ReplicaStore): Promise<Replica>
  /** Opens the stream `genesis` starts if `store` holds it, else creates it. */
  static openOrCreate (genesis: Uint8Array, store?: ReplicaStore | null): Promise<Replica>

  /** The stream's id: its genesis CID. */
  readonly streamId: CidString
  /** The number of events in the DAG, the genesis included. */
  readonly length: number
  /** The signer's public key, or `undefined`. */
  readonly signer: PublicKeyHex | undefined

  /** The current heads, in ascending CID order. */
  heads (): CidString[]
  /** Every event in the total order (the same on every replica with the same events). */
  order (): CidString[]
  /** The parents that pending events wait for. */
  missing (): CidString[]
  /** Whether the event is in the DAG. */
  has (cid: CidString): boolean
  /** What the pending buffer holds. */
  pending (): { events: number, bytes: number }
  /** How two clocks (CIDs or sets of CIDs, all in the DAG) relate; throws `unknown_event` otherwise. */
  compare (a: Clock, b: Clock): ClockOrder

  /** Appends an event on the current heads (signed when a signer is set); resolves to its CID. */
  append (payload: Payload): Promise<CidString>
  /** Appends one event per payload, each on the previous, in one store commit. */
  appendMany (payloads: readonly Payload[]): Promise<CidString[]>
  /** As `append`, with the payload already one canonical DAG-CBOR item. */
  appendEncoded (payload: Uint8Array): Promise<CidString>
  /** As `appendMany`: the payloads' DAG-CBOR bytes one after the other, `ends` where each ends. */
  appendManyEncoded (payloads: Uint8Array, ends: Uint32Array): Promise<CidString[]>

  /**
   * Takes one block from anywhere, in any order (with `cid`, the bytes must
   * hash to it). Rejects only when the store fails or the arguments are
   * not bytes and a CID; a bad block is an outcome, not an error.
   */
  ingest (block: Uint8Array, cid?: CidString | null): Promise<IngestOutcome>
  /** Takes several blocks in one store commit. */
  ingestMany (blocks: readonly Uint8Array[]): Promise<IngestReport>
  /** The event `cid`, or `undefined` when the store has not got it. */
  get (cid: CidString): Promise<ReplicaEvent | undefined>
  /** The block `cid`'s bytes, or `undefined`. */
  getBlock (cid: CidString): Promise<Uint8Array | undefined>
  /** The whole stream as a CARv1 file: the heads as roots, every event in order. */
  exportCar (): Promise<Uint8Array>
  /** Ingests every block of a CARv1 file; rejects (`car`) when it does not parse. */
  importCar (car: Uint8Array): Promise<CarImport>

  /** Sets the key that signs appends, grants and revocations; `null` for unsigned appends. */
  setSigner (secretKey: SecretKey | null): void
  /** Who may write, as the genesis says. */
  policy (): Policy
  /** The membership at the current heads; `undefined` on an open stream. */
  members (): Members | undefined
  /** The membership in the event `cid`'s past (itself included); `undefined` on an open stream or an unknown event. */
  membersAt (cid: CidString): Members | undefined
  /** Events by revoked authors written concurrently with their revocation (valid; an application may hide them). */
  writtenAfterRevocation (): CidString[]
  /** Makes `key` a member (`role` defaults to `'writer'`) in an event signed by the signer, an admin. */
  grant (key: PublicKey, role?: Role): Promise<CidString>
  /** Revokes `key` for good, in an event signed by the signer, an admin. */
  revoke (key: PublicKey): Promise<CidString>

  /** Frees the replica's wasm memory now (else it is freed once the object is garbage). */
  free (): void
}

// ---------------------------------------------------------------- SyncDriver

/** The options of a {@link SyncDriver}; all optional. */
export interface SyncOptions {
  /** A session not settled restarts after this long without a word from the peer; `null`: never. Default 10000. */
  timeoutMs?: number | null
  /** A fresh session with a random settled peer this often; `null`: never. Default 60000. */
  antiEntropyMs?: number | null
  /** Each timeout in a row doubles the next wait, at most this many times. Default 3. */
  maxBackoff?: number
  /** A session restarts after sending this many messages. Default 10000. */
  maxSessionMessages?: number
  /** A safe integer ≥ 0: reproducible random choices. Default: OS randomness. */
  seed?: number | null
}

/** What one message from a peer brought. */
export interface Received {
  accepted: number
  duplicate: number
  pending: number
  rejected: number
  /** The events accepted, each after its parents. */
  acceptedCids: CidString[]
  /** Why each refused event was refused. */
  rejections: Rejection[]
  /** The message was a copy or came after a later one: its blocks were taken, its heads ignored. */
  stale: boolean
}

/** What `receive` resolves to: `reply`, when there is one, goes back to the peer. */
export interface ReceiveResult {
  received: Received
  reply: Uint8Array | undefined
}

/** Why the driver restarted a session with a peer. */
export type RestartReason = 'timeout' | 'reconnect' | 'lost' | 'error' | 'capped' | 'anti-entropy'

/** What `tick` resolves to: send each message to its peer. */
export interface TickResult {
  messages: Array<{ peer: string, message: Uint8Array }>
  restarts: Array<{ peer: string, reason: RestartReason }>
}

/** The driver's counters. */
export interface SyncStats {
  messagesSent: number
  bytesSent: number
  messagesReceived: number
  bytesReceived: number
  errors: number
  timeouts: number
  reconnects: number
  failures: number
  capped: number
  antiEntropy: number
}

/**
 * Every sync session of one replica with its peers (named by strings). It
 * does no I/O and reads no clock: pass the time (`now`, milliseconds since
 * any fixed start) and carry the bytes yourself. `connect(peer, now)` when
 * a peer appears; `receive(peer, bytes, now)` with each of its messages
 * (send back the `reply`); `tick(now)` every few hundred milliseconds (send
 * each message to its peer).
 */
export class SyncDriver {
  constructor (replica: Replica, options?: SyncOptions | null)
  /** A peer appeared (or came back: its session restarts). Whether it was known. */
  connect (peer: string, now: number): boolean
  /** A peer went away: its durable state (for `connectWith`), or `undefined` if unknown. */
  disconnect (peer: string): Uint8Array | undefined
  /** Reconnects a peer with the durable state `disconnect` returned. */
  connectWith (peer: string, durable: Uint8Array, now: number): void
  /** The transport knows a message to `peer` was lost: restart its session. */
  lost (peer: string, now: number): void
  /** Takes a message from `peer`; rejects (`sync`) when it does not decode. */
  receive (peer: string, message: Uint8Array, now: number): Promise<ReceiveResult>
  /** The messages due now, and the sessions restarted. */
  tick (now: number): Promise<TickResult>
  /** Whether `peer` is known to hold exactly this replica's events. */
  settled (peer: string): boolean
  /** The peers connected. */
  peers (): string[]
  /** The driver's counters. */
  stats (): SyncStats
  /** Frees the driver's wasm memory now. */
  free (): void
}

// ---------------------------------------------------------------- functions

/** The CID of block bytes (DAG-CBOR, BLAKE3): what a replica names the block. */
export function cidOf (bytes: Uint8Array): CidString

/**
 * Sets what payload links are read back as: `factory(cidBytes)` makes each
 * one. The package sets `CID.decode` of `multiformats`; `null` gives
 * `{"/": "bafy…"}` objects.
 */
export function setCidFactory (factory: ((bytes: Uint8Array) => unknown) | null): void

/** A new secret key: 32 random bytes from `crypto.getRandomValues`. Keep it secret. */
export function generateSecretKey (): SecretKey

/** The public key (the author events signed with it name) of a secret key. */
export function publicKey (secretKey: SecretKey): PublicKeyHex
