// Where the time of one `await replica.append(data)` goes, in the
// side-by-side workload (`{payload: <128 bytes>}` onto an in-memory replica):
// each part measured alone, in nanoseconds of CPU time per event (the best of
// several runs of N events). A script for figures, not a timed test.
//
//   bash wasm/build.sh && cd wasm && npm ci
//   node bench/append_breakdown.mjs [--json] [--events N]
//
// Parts (one JSON object per line with --json, `{"metric":
// "wasm_append_part","part":…,"ns_per_event":…}`):
// - await: `await` of a settled promise (what every append pays in JS);
// - call: one call into wasm and back (the `length` getter: a borrow of the
//   replica, no work);
// - encode: the payload's DAG-CBOR bytes written in JS (`encodePayload`);
// - hash: BLAKE3 of an event block and its CID string (`cidOf`), in wasm;
// - append_encoded: `await replica.appendEncoded(bytes)` of payloads already
//   encoded (the bytes copied in by wasm-bindgen's glue, the event written,
//   hashed, committed to the store, indexed, the CID string out through the
//   glue, a promise made in wasm);
// - append: the whole `await replica.append(data)` (the payload encoded
//   straight into wasm memory, the append finished within the call on the
//   in-memory store, the CID text read back from wasm memory: see
//   wasm/src/staging.rs);
// - core: append minus encode, hash, call and await: the core's own work
//   (event bytes, the store's commit, the DAG index) and the little glue
//   left. Native code does the same in
//   `cargo run --release --example wasm_native_append`.

import { parseArgs } from 'node:util'
import { Replica, cidOf } from '../js/node.js'
import { encodePayload } from '../js/payload.js'
import { eventData } from './workload.mjs'


/** CPU nanoseconds per event of `f(n)` (which does n events): the best of `runs`. */
const perEvent = async (n, runs, f) => {
  let best = Infinity
  for (let k = 0; k < runs; k++) {
    const c0 = process.cpuUsage()
    await f(n)
    const c = process.cpuUsage(c0)
    best = Math.min(best, ((c.user + c.system) * 1000) / n)
  }
  return best
}

const main = async () => {
  const { values } = parseArgs({
    options: { json: { type: 'boolean', default: false }, events: { type: 'string', default: '10000' } }
  })
  const n = Number(values.events)
  const datas = Array.from({ length: n }, (_, i) => eventData(i))
  const encoded = datas.map((d) => encodePayload(d).slice())
  const genesis = Replica.genesis('side by side')
  const probe = await Replica.create(genesis)
  const block = await probe.getBlock(await probe.append(datas[0]))
  const runs = 7

  const parts = {}
  parts.await = await perEvent(n, runs, async (n) => {
    const settled = Promise.resolve(1)
    for (let i = 0; i < n; i++) await settled
  })
  parts.call = await perEvent(n, runs, async (n) => {
    let sum = 0
    for (let i = 0; i < n; i++) sum += probe.length
    if (sum !== 2 * n) throw new Error('length')
  })
  parts.encode = await perEvent(n, runs, async (n) => {
    let sum = 0
    for (let i = 0; i < n; i++) sum += encodePayload(datas[i]).length
    if (sum === 0) throw new Error('encode')
  })
  parts.hash = await perEvent(n, runs, async (n) => {
    for (let i = 0; i < n; i++) cidOf(block)
  })
  const appendRuns = async (f) => perEvent(n, runs, async (n) => {
    const r = await Replica.create(genesis)
    for (let i = 0; i < n; i++) await f(r, i)
    r.free()
  })
  parts.append_encoded = await appendRuns((r, i) => r.appendEncoded(encoded[i]))
  parts.append = await appendRuns((r, i) => r.append(datas[i]))
  parts.core = parts.append - parts.encode - parts.call - parts.hash - parts.await

  for (const [part, ns] of Object.entries(parts)) {
    const row = { metric: 'wasm_append_part', part, events: n, ns_per_event: Math.round(ns) }
    console.log(values.json ? JSON.stringify(row) : `${part.padEnd(16)} ${Math.round(ns)} ns`)
  }
}

main().catch((err) => {
  console.error(`append_breakdown: error: ${err && err.stack ? err.stack : err}`)
  process.exit(1)
})
