// The type test of the package's declarations (js/*.d.ts), as a consumer
// sees them: imported by package name. Checked, never run:
// `npm run test:types` (tsc --noEmit --strict, here and in
// tsconfig.web.json). It uses every declared API the way wasm/README.md
// does (its examples, typed), asserts the types of results, and marks
// misuse with `@ts-expect-error` (which fails the check if the misuse is
// accepted).

import {
  Replica,
  SyncDriver,
  blockstoreAdapter,
  cidOf,
  generateSecretKey,
  publicKey,
  setCidFactory
} from 'merkle-clock-wasm'
import type {
  CarImport,
  CidString,
  ClockOrder,
  IngestOutcome,
  IngestReport,
  MerkleClockError,
  Members,
  Payload,
  Policy,
  PublicKeyHex,
  ReceiveResult,
  Rejection,
  ReplicaEvent,
  ReplicaStore,
  RestartReason,
  SyncStats,
  TickResult
} from 'merkle-clock-wasm'
import { blockstoreAdapter as adapterFromSubpath } from 'merkle-clock-wasm/blockstore'
import type { Blockstore, MetaStore } from 'merkle-clock-wasm/blockstore'
import { CID } from 'multiformats/cid'

// `console` without the DOM or Node types (this config has neither).
declare const console: { log (...values: unknown[]): void, warn (...values: unknown[]): void }

/** Compiles only when `A` and `B` are the same type. */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
const same = <T extends true>(): void => {}

// ---- wasm/README.md, "Example"

const genesis = Replica.genesis({ app: 'todo' })
same<Equal<typeof genesis, Uint8Array>>()
const alice = await Replica.create(genesis)
const bob = await Replica.create(genesis)
same<Equal<typeof alice, Replica>>()

const milk = await alice.append({ item: 'milk' })
same<Equal<typeof milk, CidString>>()
await bob.append({ item: 'bread' })

const a = new SyncDriver(alice)
const b = new SyncDriver(bob)
a.connect('bob', 0)
b.connect('alice', 0)
const send = async (to: SyncDriver, from: string, message: Uint8Array, now: number): Promise<void> => {
  const { reply } = await to.receive(from, message, now)
  if (reply) await send(to === a ? b : a, from === 'alice' ? 'bob' : 'alice', reply, now)
}
for (const { message } of (await a.tick(0)).messages) await send(b, 'alice', message, 0)

console.log(alice.heads(), bob.heads())
console.log(alice.order())
// `order().at(-1)` may be undefined, and so may the event: say so.
const last = await bob.get(bob.order().at(-1)!)
console.log(last?.payload)
same<Equal<typeof last, ReplicaEvent | undefined>>()

// ---- wasm/README.md, "API": Replica

const streamId: CidString = alice.streamId
const count: number = alice.length
same<Equal<ReturnType<Replica['heads']>, CidString[]>>()
same<Equal<ReturnType<Replica['order']>, CidString[]>>()
same<Equal<ReturnType<Replica['missing']>, CidString[]>>()
const held: boolean = alice.has(milk)
const { events, bytes } = alice.pending()
const order = alice.compare(alice.heads(), bob.heads())
same<Equal<typeof order, ClockOrder>>()
if (alice.compare(milk, alice.heads()) === 'before') console.log('milk is in the past of the heads')
// @ts-expect-error: compare gives one of four words, never 'less'
if (order === 'less') console.log(order)

const many = await alice.appendMany([{ item: 'eggs' }, 'tea', 42, 3.5, 2n ** 60n, null, true, new Uint8Array([1])])
same<Equal<typeof many, CidString[]>>()
const encoded = await alice.appendEncoded(new Uint8Array([0xf6]))
same<Equal<typeof encoded, CidString>>()
const encodedMany = await alice.appendManyEncoded(new Uint8Array([0xf6, 0xf5]), new Uint32Array([1, 2]))
same<Equal<typeof encodedMany, CidString[]>>()
const genesisFromBytes: Uint8Array = Replica.genesisEncoded(new Uint8Array([0xa0]))

// Links in payloads: multiformats CIDs, and the DAG-JSON form.
const link = CID.parse(milk)
await alice.append({ after: link, also: { '/': milk }, list: [link, [1, 'two']] })

// The ingest outcome: narrow on `status` before reading its other fields.
const block = (await alice.getBlock(alice.heads()[0]))!
same<Equal<Awaited<ReturnType<Replica['getBlock']>>, Uint8Array | undefined>>()
const outcome = await bob.ingest(block)
same<Equal<typeof outcome, IngestOutcome>>()
// @ts-expect-error: a rejected outcome has no `missing`: narrow on status first
console.log(outcome.missing)
// @ts-expect-error: only a rejected outcome has a `reason`
console.log(outcome.reason)
switch (outcome.status) {
  case 'accepted':
  case 'duplicate':
    same<Equal<typeof outcome.missing, []>>()
    break
  case 'pending':
    same<Equal<typeof outcome.missing, CidString[]>>()
    break
  case 'rejected':
    console.log(outcome.reason, outcome.message)
    if (outcome.reason === 'unauthorized' && outcome.auth === 'revoked') {
      const revocation: CidString = outcome.revocation
      const author: PublicKeyHex = outcome.author
      console.log(revocation, author)
    }
    if (outcome.reason === 'height') {
      // @ts-expect-error: a rule rejection names no author
      console.log(outcome.author)
    }
    break
  default: {
    // Every status is handled above: `outcome` is `never` here.
    const none: never = outcome
    console.log(none)
  }
}
// @ts-expect-error: 'missing' is not a status
if (outcome.status === 'missing') console.log(outcome)
await bob.ingest(block, cidOf(block))

const report = await bob.ingestMany([block, genesis])
same<Equal<typeof report, IngestReport>>()
const firstOutcome: IngestOutcome = report.outcomes[0]
const added: CidString[] = report.accepted

const event = await alice.get(milk)
if (event !== undefined) {
  const { cid, height, parents, payload } = event
  same<Equal<typeof payload, Payload>>()
  console.log(cid, height, parents, payload)
}

const car = await alice.exportCar()
same<Equal<typeof car, Uint8Array>>()
const imported = await bob.importCar(car)
same<Equal<typeof imported, CarImport>>()
const roots: CidString[] = imported.roots

// The sync driver: options, results, counters.
const driver = new SyncDriver(alice, { timeoutMs: 5000, antiEntropyMs: null, maxBackoff: 2, maxSessionMessages: 100, seed: 7 })
const known: boolean = driver.connect('carol', 0)
const received = await driver.receive('carol', new Uint8Array(), 1)
same<Equal<typeof received, ReceiveResult>>()
const { accepted, duplicate, pending, rejected, acceptedCids, rejections, stale } = received.received
same<Equal<typeof rejections, Rejection[]>>()
const ticked = await driver.tick(500)
same<Equal<typeof ticked, TickResult>>()
for (const { peer, reason } of ticked.restarts) same<Equal<typeof reason, RestartReason>>()
const durable = driver.disconnect('carol')
if (durable) driver.connectWith('carol', durable, 600)
driver.lost('carol', 700)
const settled: boolean = driver.settled('carol')
const peers: string[] = driver.peers()
const stats: SyncStats = driver.stats()
console.log(stats.messagesSent, stats.antiEntropy)
// @ts-expect-error: times are numbers of milliseconds, not Dates
driver.tick(new Date())
// @ts-expect-error: an unknown option is a typo
new SyncDriver(alice, { timeout: 5000 })
driver.free()

// Payload shapes: a `type` is a Payload, an `interface` is not (README, "TypeScript").
type Todo = { item: string, done: boolean, tags: string[] }
interface TodoInterface { item: string }
const todo: Todo = { item: 'milk', done: false, tags: ['shop'] }
await alice.append(todo)
declare const todoInterface: TodoInterface
// @ts-expect-error: an interface has no index signature: declare payload shapes with `type`
await alice.append(todoInterface)

// Payloads the encoder refuses, refused by the types too.
// @ts-expect-error: a Map is not a payload (use a plain object)
await alice.append(new Map([['a', 1]]))
// @ts-expect-error: undefined is not a payload
await alice.append({ item: undefined })
// @ts-expect-error: a Date is not a payload
await alice.append(new Date())
// @ts-expect-error: CIDs are strings, not numbers
alice.has(42)
// @ts-expect-error: CIDs are strings, not multiformats CID objects
await alice.get(link)
// @ts-expect-error: a block is a Uint8Array, not a string
await bob.ingest('bafy')

// Errors: plain Errors named MerkleClockError, narrowed on `code`.
const isMerkleClockError = (e: unknown): e is MerkleClockError =>
  e instanceof Error && e.name === 'MerkleClockError'
try {
  await alice.append({ item: 'x' })
} catch (e) {
  if (isMerkleClockError(e)) {
    if (e.code === 'rejected') console.log(e.reason, e.auth, e.author)
    else if (e.code === 'busy') console.log('await the previous call first')
    // @ts-expect-error: 'timeout' is not a code this package throws
    else if (e.code === 'timeout') console.log(e)
  }
}

// ---- wasm/README.md, "TypeScript"

declare function fetchBlocks (cids: CidString[]): Promise<void>
declare const replica: Replica
{
  const outcome = await replica.ingest(block)
  if (outcome.status === 'pending') await fetchBlocks(outcome.missing)
  else if (outcome.status === 'rejected') console.warn(outcome.reason, outcome.message)
}

// ---- wasm/README.md, "Signed streams: who may write"

const adminKey = generateSecretKey(); const aliceKey = generateSecretKey()
const admin = publicKey(adminKey); const aliceAuthor = publicKey(aliceKey)
same<Equal<typeof admin, PublicKeyHex>>()
const signedGenesis = Replica.genesis({ app: 'team notes' }, { admins: [admin] })

const team = await Replica.create(signedGenesis)
team.setSigner(adminKey)
const granted: CidString = await team.grant(aliceAuthor, 'writer')
team.setSigner(aliceKey)
const note = await team.append('hello from alice')
console.log((await team.get(note))?.author === aliceAuthor)
team.setSigner(adminKey)
const revocation = await team.revoke(aliceAuthor)
const members = team.members()
same<Equal<typeof members, Members | undefined>>()
console.log(members?.roles[admin] === 'admin', members?.revoked[aliceAuthor] === revocation)

const late = Replica.signedEvent({ stream: team.streamId, height: 4, parents: team.heads(), payload: 'still here' }, aliceKey)
const lateOutcome = await team.ingest(late)
if (lateOutcome.status === 'rejected' && lateOutcome.reason === 'unauthorized' && lateOutcome.auth === 'revoked') {
  console.log(lateOutcome.author === aliceAuthor, lateOutcome.revocation === revocation, lateOutcome.cid)
}

const signer: PublicKeyHex | undefined = team.signer
team.setSigner(null)
await team.grant(new Uint8Array(32))           // a key as its 32 bytes; role defaults to 'writer'
// @ts-expect-error: roles are 'writer' and 'admin'
await team.grant(aliceAuthor, 'owner')
// @ts-expect-error: a secret key is bytes, not hex
team.setSigner(admin)
const policy = team.policy()
same<Equal<typeof policy, Policy>>()
if (!policy.open) console.log(policy.admins)
// @ts-expect-error: an open policy names no admins: narrow on `open` first
console.log(policy.admins)
const past: Members | undefined = team.membersAt(note)
const hidden: CidString[] = team.writtenAfterRevocation()
const member = (await team.get(revocation))?.member
if (member?.op === 'grant') console.log(member.role)
Replica.genesis('open stream', {})
Replica.genesisEncoded(new Uint8Array([0xa0]), [admin, new Uint8Array(32)])

// ---- wasm/README.md, "A Helia blockstore behind the replica"

// A blockstore with interface-blockstore's shape, sync and async answers.
const blocks = new Map<string, Uint8Array>()
const blockstore: Blockstore = {
  get: async (cid: CID) => blocks.get(cid.toString()),
  put: (cid: CID, bytes: Uint8Array) => { blocks.set(cid.toString(), bytes) },
  has: (cid: CID) => blocks.has(cid.toString())
}
// A meta store as the README's Helia wrapper: async get and put.
const metaRecords = new Map<string, Uint8Array>()
const meta: MetaStore = {
  get: async (key: string) => metaRecords.get(key),
  put: async (key: string, value: Uint8Array) => { metaRecords.set(key, value) }
}
const store = blockstoreAdapter(blockstore, { meta })
const r = await Replica.openOrCreate(genesis, store)
const reopened = await Replica.open(r.streamId, adapterFromSubpath(blockstore, { meta: new Map() }))
await Replica.create(genesis, null)
// A hand-written store: CIDs as bytes (the adapter object the replica calls).
const own: ReplicaStore = { get: () => undefined, put: async () => {} }
await Replica.create(genesis, own)
// @ts-expect-error: open needs the store that holds the stream
await Replica.open(r.streamId)
// @ts-expect-error: a blockstore needs get and put
blockstoreAdapter({ has: () => true })
// @ts-expect-error: meta keys are strings and values bytes
blockstoreAdapter(blockstore, { meta: new Map<string, string>() })

// ---- the rest of the functions

const secret = generateSecretKey()
same<Equal<typeof secret, Uint8Array>>()
setCidFactory((cidBytes) => CID.decode(cidBytes))
setCidFactory(null)
// @ts-expect-error: the factory takes bytes
setCidFactory((text: string) => text)
// @ts-expect-error: Replica has no public constructor: Replica.create
new Replica()
alice.free()

// The values above are used (for noUnusedLocals, if it is ever turned on).
console.log(streamId, count, held, events, bytes, genesisFromBytes, firstOutcome, added, roots, known,
  accepted, duplicate, pending, rejected, acceptedCids, stale, settled, peers, granted, signer, past, hidden,
  reopened)
