// Signed streams from JS: keys, a genesis naming admins, grants and
// revocations, authors, and refusals that name their reason and author.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createPublicKey, verify } from 'node:crypto'
import { CID } from 'multiformats/cid'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { Replica, blockstoreAdapter, cidOf, generateSecretKey, publicKey } from '../js/node.js'

const adminKey = generateSecretKey()
const writerKey = generateSecretKey()
const strangerKey = generateSecretKey()
const admin = publicKey(adminKey)
const writer = publicKey(writerKey)
const stranger = publicKey(strangerKey)

/** Gives `to` every event `from` holds (in order: each after its parents). */
const copy = async (from, to) => {
  const blocks = await Promise.all(from.order().map((c) => from.getBlock(c)))
  const { outcomes } = await to.ingestMany(blocks)
  assert.ok(outcomes.every((o) => o.status === 'accepted' || o.status === 'duplicate'), JSON.stringify(outcomes))
}

/** A team stream: its genesis names `admin`; the admin's replica and the writer's. */
const team = async () => {
  const genesis = Replica.genesis({ app: 'team notes' }, { admins: [admin] })
  const a = await Replica.create(genesis)
  const w = await Replica.create(genesis)
  a.setSigner(adminKey)
  return { a, w }
}

/** Resolves when `promise` rejects with a MerkleClockError whose fields include `fields`. */
const rejectsWith = (promise, fields) =>
  assert.rejects(promise, (e) => {
    assert.equal(e.name, 'MerkleClockError')
    for (const [k, v] of Object.entries(fields)) assert.equal(e[k], v, `${k}: ${e.message}`)
    return true
  })

test('keys: 32-byte secret keys, public keys as 64 hex digits, taken as bytes or hex', async () => {
  assert.ok(adminKey instanceof Uint8Array && adminKey.length === 32)
  assert.match(admin, /^[0-9a-f]{64}$/)
  assert.equal(publicKey(adminKey), admin, 'the same key, the same author')
  assert.notEqual(publicKey(generateSecretKey()), admin)
  // RFC 8032, test 1: the secret key 9d61b1…7f60 is the public key d75a98…511a.
  const rfc = Uint8Array.from(Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex'))
  assert.equal(publicKey(rfc), 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a')
  assert.throws(() => publicKey(new Uint8Array(31)), (e) => e.code === 'invalid_argument')
  assert.throws(() => publicKey('not bytes'), (e) => e.code === 'invalid_argument')
  const asBytes = Replica.genesis('g', { admins: [Uint8Array.from(Buffer.from(admin, 'hex'))] })
  assert.deepEqual(asBytes, Replica.genesis('g', { admins: [admin] }), 'bytes and hex name the same key')
  assert.throws(() => Replica.genesis('g', { admins: [] }), (e) => e.code === 'invalid_argument')
  assert.throws(() => Replica.genesis('g', { admins: ['abc'] }), (e) => e.code === 'invalid_argument')
  const r = await Replica.create(Replica.genesis('open'))
  assert.deepEqual(r.policy(), { open: true })
  assert.equal(r.members(), undefined, 'an open stream has no membership')
  assert.throws(() => r.setSigner(new Uint8Array(3)), (e) => e.code === 'invalid_argument')
  assert.equal(r.signer, undefined)
})

test('an admin grants a writer, the writer appends on its own replica, and a revoked writer\'s event is refused with its reason and author', async () => {
  const { a, w } = await team()
  assert.deepEqual(a.policy(), { open: false, admins: [admin] })
  assert.equal(a.signer, admin)
  await rejectsWith(w.append('unsigned'), { code: 'needs_signer' })

  const grant = await a.grant(writer, 'writer')
  assert.deepEqual(a.members(), { roles: { [admin]: 'admin', [writer]: 'writer' }, revoked: {} })
  assert.deepEqual((await a.get(grant)).member, { op: 'grant', key: writer, role: 'writer' })
  assert.equal((await a.get(grant)).author, admin)

  await copy(a, w)
  w.setSigner(writerKey)
  const note = await w.append({ text: 'hello' })
  assert.equal((await a.ingest(await w.getBlock(note))).status, 'accepted', 'the admin\'s replica takes the writer\'s event')
  const event = await a.get(note)
  assert.equal(event.author, writer)
  assert.deepEqual(event.payload, { text: 'hello' })
  assert.equal(event.member, undefined)

  const revocation = await a.revoke(writer)
  assert.deepEqual(a.members(), { roles: { [admin]: 'admin' }, revoked: { [writer]: revocation } })
  assert.deepEqual(a.membersAt(note).roles, { [admin]: 'admin', [writer]: 'writer' }, 'the membership in the note\'s past')

  // The writer's replica learns of the revocation: its appends there stop.
  await copy(a, w)
  await rejectsWith(w.append('still here?'), { code: 'rejected', reason: 'unauthorized', auth: 'revoked', author: writer, revocation })

  // An event the revoked writer signs on top of its revocation (built by
  // hand, as a misbehaving peer would) is refused by the admin's replica.
  const height = (await a.get(revocation)).height + 1
  const late = Replica.signedEvent({ stream: a.streamId, height, parents: [revocation], payload: 'late' }, writerKey)
  const outcome = await a.ingest(late)
  assert.equal(outcome.status, 'rejected')
  assert.equal(outcome.reason, 'unauthorized')
  assert.equal(outcome.auth, 'revoked')
  assert.equal(outcome.author, writer)
  assert.equal(outcome.revocation, revocation)
  assert.equal(outcome.cid, cidOf(late))
  assert.match(outcome.message, /revoked/)
  assert.equal(a.has(cidOf(late)), false)
})

test('refusals name the rule: a stranger, a forged signature, a writer granting, the last admin; concurrent events stay', async () => {
  const { a, w } = await team()
  await a.grant(writer)
  const heads = a.heads()
  const height = (await a.get(heads[0])).height + 1
  const event = (key, payload = 'x') => Replica.signedEvent({ stream: a.streamId, height, parents: heads, payload }, key)

  const byStranger = await a.ingest(event(strangerKey))
  assert.deepEqual([byStranger.reason, byStranger.auth, byStranger.author], ['unauthorized', 'not_a_member', stranger])

  // The writer's signature moved onto other bytes: a forgery.
  const honest = event(writerKey, 'honest')
  const forged = event(writerKey, 'forged')
  forged.set(honest.subarray(7, 71), 7) // the signature: map head, "sig", a 64-byte string head, then its bytes
  const byForger = await a.ingest(forged)
  assert.deepEqual([byForger.reason, byForger.auth, byForger.author], ['signature', 'bad_signature', writer])
  assert.equal((await a.ingest(honest)).status, 'accepted')

  // A writer may not grant; the refusal comes before anything is stored.
  await copy(a, w)
  w.setSigner(writerKey)
  await rejectsWith(w.grant(stranger, 'admin'), { code: 'rejected', auth: 'not_an_admin', author: writer })
  await rejectsWith(w.grant(stranger, 'owner'), { code: 'invalid_argument' })
  await rejectsWith(a.revoke(admin), { code: 'rejected', auth: 'last_admin' })

  // The writer's event written before it learnt of its revocation stays
  // valid everywhere; a strict reading can leave it out.
  const concurrent = await w.append('written concurrently with the revocation')
  const revocation = await a.revoke(writer)
  assert.equal((await a.ingest(await w.getBlock(concurrent))).status, 'accepted')
  assert.deepEqual(a.writtenAfterRevocation(), [concurrent])
  assert.deepEqual(a.members().revoked, { [writer]: revocation })
})

test('a signature verifies with Node\'s own Ed25519 over the signing input DESIGN.md gives', async () => {
  const { a, w } = await team()
  await a.grant(writer)
  await copy(a, w)
  w.setSigner(writerKey)
  const block = await w.getBlock(await w.append({ text: 'checked elsewhere' }))
  // {"sig": <64 bytes>, "author", "height", "parents", "payload"}: a 5-entry
  // map whose first entry is the signature (map head, "sig", a 64-byte head).
  assert.equal(block[0], 0xa5)
  const sig = block.subarray(7, 71)
  // The signing input: the domain, the stream's CID in binary, then the map without "sig".
  const input = Buffer.concat([
    Buffer.from('merkle-clock/event-signature/v1'),
    CID.parse(w.streamId).bytes,
    Uint8Array.of(0xa4),
    block.subarray(71)
  ])
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(writer, 'hex').toString('base64url') }, format: 'jwk' })
  assert.ok(verify(null, input, key, sig), 'the writer\'s signature')
  assert.ok(!verify(null, Buffer.concat([input, Uint8Array.of(0)]), key, sig), 'and over nothing else')
})

test('a signed stream reopened from a JS store keeps its policy, members and authors; the signer is set again', async () => {
  const blockstore = new MemoryBlockstore()
  const meta = new Map()
  const genesis = Replica.genesis({ app: 'team notes' }, { admins: [admin] })
  const before = await Replica.create(genesis, blockstoreAdapter(blockstore, { meta }))
  before.setSigner(adminKey)
  await before.grant(writer)
  before.setSigner(writerKey)
  const note = await before.append('kept')

  const after = await Replica.open(before.streamId, blockstoreAdapter(blockstore, { meta }))
  assert.deepEqual(after.policy(), { open: false, admins: [admin] })
  assert.deepEqual(after.members(), before.members())
  assert.equal((await after.get(note)).author, writer)
  assert.equal(after.signer, undefined, 'a key is never stored with the stream')
  await assert.rejects(after.append('no key yet'), (e) => e.code === 'needs_signer')
  after.setSigner(writerKey)
  const next = await after.append('continued')
  assert.deepEqual(after.heads(), [next])
  assert.equal((await after.get(next)).author, writer)
})
