// The example of wasm/README.md, as written there (imports by package name).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Replica, SyncDriver } from 'merkle-clock-wasm'

test('the README example syncs two replicas', async () => {
  const genesis = Replica.genesis({ app: 'todo' })
  const alice = await Replica.create(genesis)
  const bob = await Replica.create(genesis)
  await alice.append({ item: 'milk' })
  await bob.append({ item: 'bread' })

  const a = new SyncDriver(alice)
  const b = new SyncDriver(bob)
  a.connect('bob', 0)
  b.connect('alice', 0)
  const send = async (to, from, message, now) => {
    const { reply } = await to.receive(from, message, now)
    if (reply) await send(to === a ? b : a, from === 'alice' ? 'bob' : 'alice', reply, now)
  }
  for (const { message } of (await a.tick(0)).messages) await send(b, 'alice', message, 0)

  assert.equal(alice.heads().length, 2)
  assert.deepEqual(alice.heads(), bob.heads())
  assert.deepEqual(alice.order(), bob.order())
  assert.deepEqual((await bob.get(bob.order().at(-1))).payload.item.length > 0, true)
})

// The JavaScript section of the repository's README.md, as written there.
test('the repository README example: ingest, appendMany, reopen', async () => {
  const { blockstoreAdapter } = await import('merkle-clock-wasm')
  const { MemoryBlockstore } = await import('blockstore-core/memory')
  const genesis = Replica.genesis({ app: 'todo' })
  const alice = await Replica.create(genesis)
  const bob = await Replica.create(genesis)
  await alice.append({ item: 'milk' })
  assert.equal((await bob.ingest(await alice.getBlock(alice.heads()[0]))).status, 'accepted')

  const store = blockstoreAdapter(new MemoryBlockstore(), { meta: new Map() })
  const carol = await Replica.openOrCreate(genesis, store)
  await carol.appendMany([{ item: 'eggs' }, { item: 'tea' }])
  const again = await Replica.open(carol.streamId, store)
  assert.deepEqual(again.heads(), carol.heads())
  assert.deepEqual(again.order(), carol.order())
})

// The "Signed streams" example of wasm/README.md, as written there.
test('the README signed-stream example: grant, author, revoke, a late event refused', async () => {
  const { generateSecretKey, publicKey } = await import('merkle-clock-wasm')
  const adminKey = generateSecretKey(); const aliceKey = generateSecretKey()
  const admin = publicKey(adminKey); const alice = publicKey(aliceKey)
  const genesis = Replica.genesis({ app: 'team notes' }, { admins: [admin] })

  const a = await Replica.create(genesis)
  a.setSigner(adminKey)
  await a.grant(alice, 'writer')
  a.setSigner(aliceKey)
  const note = await a.append('hello from alice')
  assert.equal((await a.get(note)).author, alice)
  a.setSigner(adminKey)
  const revocation = await a.revoke(alice)
  assert.deepEqual(a.members(), { roles: { [admin]: 'admin' }, revoked: { [alice]: revocation } })

  const late = Replica.signedEvent({ stream: a.streamId, height: 4, parents: a.heads(), payload: 'still here' }, aliceKey)
  const outcome = await a.ingest(late)
  assert.deepEqual(
    [outcome.status, outcome.reason, outcome.auth, outcome.author, outcome.revocation],
    ['rejected', 'unauthorized', 'revoked', alice, revocation]
  )
})

// The signed-stream lines of the repository README's JavaScript section.
test('the repository README signed-stream example', async () => {
  const { generateSecretKey, publicKey } = await import('merkle-clock-wasm')
  const adminKey = generateSecretKey(); const aliceKey = generateSecretKey()
  const team = await Replica.create(Replica.genesis('team notes', { admins: [publicKey(adminKey)] }))
  team.setSigner(adminKey)
  await team.grant(publicKey(aliceKey), 'writer')
  team.setSigner(aliceKey)
  const note = await team.append('hello')
  assert.equal((await team.get(note)).author, publicKey(aliceKey))
})
