// Helia's trustless-gateway client against the merkle-clock gateway.
//
//   node gateway.mjs <gateway URL> <head CID> <expected event count>
//
// 1. A Helia 7 node (createHeliaLight + @helia/http's withHTTP: the
//    trustless-gateway block broker with allowInsecure and allowLocal, our
//    gateway as its only provider, no delegated routing), with a BLAKE3 hasher
//    added to Helia's hashers, fetches the head event and every ancestor block
//    by block (`?format=raw`), walking parent links without recursion. Helia
//    verifies each block against its CID with that hasher; the script
//    recomputes each CID as well.
// 2. The same stream as one CAR (`?format=car&dag-scope=all`): the headers the
//    spec requires are checked, the CAR is read with @ipld/car, every block is
//    hashed and compared with its CID, and the blocks must be exactly the
//    head's ancestry (each once, the head first, every parent present).
// 3. The spec's probe, `/ipfs/bafkqaaa`, answers 200.
//
// Prints one JSON line of figures, then 'N passed, 0 failed'; exits 1 on the
// first failure, naming it.

import { createHeliaLight } from 'helia'
import { withHTTP } from '@helia/http'
import { fallbackRouter } from '@helia/fallback-router'
import { CarBlockIterator } from '@ipld/car/iterator'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { blake3Hasher, hashesTo, heliaGet, isEventCid } from './ours.mjs'

const [url, headText, countText] = process.argv.slice(2)
if (!url || !headText || !countText) {
  console.error('usage: node gateway.mjs <gateway URL> <head CID> <expected event count>')
  process.exit(2)
}
const head = CID.parse(headText)
const expected = Number(countText)
let passed = 0
function check (ok, what) {
  if (!ok) {
    console.error(`FAILED: ${what}`)
    console.log(`${passed} passed, 1 failed`)
    process.exit(1)
  }
  passed++
}

async function verify (cid, bytes) {
  check(isEventCid(cid), `${cid} is a CIDv1 / dag-cbor / blake3`)
  check(await hashesTo(cid, bytes), `the bytes of ${cid} hash to it`)
}

function parentsOf (bytes) {
  const event = dagCbor.decode(bytes)
  return (event.parents ?? []).map((p) => CID.asCID(p))
}

// ------------------------------------------------- 1. Helia, block by block
// Our gateway as the provider of every CID. Helia 7.1.15's routing waits for
// ever when its only routers are fallback routers (with no default router
// its provider search never ends), so the fallback router @helia/http would
// add for `recursiveGateways` is registered as an ordinary router instead.
const gateways = fallbackRouter({ gateways: [url] })
const router = { name: 'merkle-clock-gateway', findProviders: (cid, options) => gateways.findProviders(cid, options) }
const helia = withHTTP(createHeliaLight({ hashers: [blake3Hasher], routers: [router] }), {
  delegatedRouters: [],
  recursiveGateways: [],
  allowInsecure: true,
  allowLocal: true
})
await helia.start()
const started = performance.now()
const seen = new Set([head.toString()])
const stack = [head]
let rawBytes = 0
while (stack.length > 0) {
  const cid = stack.pop()
  const bytes = await heliaGet(helia, cid, 30_000)
  rawBytes += bytes.length
  await verify(cid, bytes)
  for (const p of parentsOf(bytes)) {
    if (!seen.has(p.toString())) {
      seen.add(p.toString())
      stack.push(p)
    }
  }
}
const rawSeconds = (performance.now() - started) / 1000
check(seen.size === expected, `Helia fetched ${seen.size} events, expected ${expected}`)
await helia.stop()

// ------------------------------------------------------ 2. one CAR, all of it
const carStarted = performance.now()
const res = await fetch(`${url}/ipfs/${head}?format=car&dag-scope=all`, {
  headers: { Accept: 'application/vnd.ipld.car; version=1; order=dfs; dups=n' }
})
check(res.status === 200, `CAR status ${res.status}`)
const type = res.headers.get('content-type') ?? ''
check(type.startsWith('application/vnd.ipld.car') && type.includes('version=1'), `CAR content type ${type}`)
check(type.includes('order=dfs') && type.includes('dups=n'), `CAR order and dups signalled: ${type}`)
check(res.headers.get('x-content-type-options') === 'nosniff', 'X-Content-Type-Options: nosniff')
check((res.headers.get('content-disposition') ?? '').startsWith('attachment'), 'Content-Disposition: attachment')
check((res.headers.get('etag') ?? '').length > 2, 'an Etag')
const car = await CarBlockIterator.fromIterable(res.body)
const inCar = new Map()
let first = null
let carBytes = 0
for await (const { cid, bytes } of car) {
  first ??= cid
  check(!inCar.has(cid.toString()), `dups=n: ${cid} once`)
  await verify(cid, bytes)
  inCar.set(cid.toString(), bytes)
  carBytes += bytes.length
}
const carSeconds = (performance.now() - carStarted) / 1000
check(first !== null && first.equals(head), 'order=dfs: the head comes first')
// Exactly the head's ancestry: every parent present, nothing else.
for (const bytes of inCar.values()) {
  for (const p of parentsOf(bytes)) check(inCar.has(p.toString()), `the CAR holds parent ${p}`)
}
check(inCar.size === expected, `the CAR holds ${inCar.size} events, expected ${expected}`)
for (const cid of seen) check(inCar.has(cid), `the CAR holds ${cid}, which Helia fetched`)

// ------------------------------------------------------------- 3. the probe
const probe = await fetch(`${url}/ipfs/bafkqaaa?format=raw`, { headers: { Accept: 'application/vnd.ipld.raw' } })
check(probe.status === 200 && (await probe.arrayBuffer()).byteLength === 0, 'the bafkqaaa probe')

console.log(JSON.stringify({
  node: process.version,
  events: expected,
  helia_raw: { blocks: seen.size, bytes: rawBytes, seconds: Number(rawSeconds.toFixed(3)) },
  car: { blocks: inCar.size, bytes: carBytes, seconds: Number(carSeconds.toFixed(3)) }
}))
console.log(`${passed} passed, 0 failed`)
process.exit(0)
