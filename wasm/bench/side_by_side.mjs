// merkle-clock's WebAssembly build side by side with @web3-storage/pail 0.6.2
// (the JavaScript Merkle clock), in one Node process, and against the native
// library. A script for figures, not a timed test.
//
//   bash wasm/build.sh && cd wasm && npm ci
//   node bench/side_by_side.mjs [--json] [--events N] [--histories 1000,5000,20000]
//                               [--native-events-per-s R | --no-native] [--baseline DIR] [--floor]
//
// Rows (one JSON object per line with --json):
// - wasm_append: single `await replica.append(data)`s of `{payload: <128
//   bytes>}` onto a fresh in-memory replica (the best of 5 runs after 3
//   untimed ones), and pail's rate on the same payloads, measured the
//   way benches/peers/pail_clock.mjs does (EventBlock.create + put + advance
//   onto the head, the best of 3 runs after 3 untimed ones). ratio = wasm / pail. Both sides
//   do the same work per event: encode it as DAG-CBOR, hash it, store the
//   block, move the head (pail's clock is its only index; the replica also
//   indexes the event for the total order).
// - wasm_append_many: the same 10,000 events in one `appendMany` (one call,
//   one promise, one store commit), against the same pail rate (pail's clock
//   has no batch append).
// - wasm_merge_reads (per history size): a replica over a JS blockstore
//   (blockstore-core's MemoryBlockstore behind a counter) holds a linear
//   history and an event A on its head; it ingests an event B whose parent
//   is one below the head (a fork at depth 1). `reads` counts the blockstore
//   get() calls that ingest makes; pail_reads counts pail's for the same
//   merge (`advance(blocks, [A], B)`, as pail_clock.mjs does).
// - wasm_native_ratio: wasm's append rate over the native library's on the
//   same workload (`cargo run --release --example wasm_native_append`, run
//   by this script; or pass the native rate with --native-events-per-s);
//   wasm_native_ratio_many: the same for appendMany over `append_many`.
// - native_pail_ratio: the native library's single appends over pail's, in
//   this run: the ceiling of wasm_append's ratio (the wasm build at native
//   speed).
// - wasm_size: the .wasm (pkg/web) raw and gzipped (level 9).
// - wasm_append_floor (with --floor, after `bash build.sh --bench-floor`):
//   the floor of a single append, `Floor` of src/floor.rs (the event's
//   bytes, BLAKE3, one arena, one table, the CID text back, nothing else),
//   driven the same way from JS (`await floor.append(data)` through the
//   staging buffer), its runs alternating with this build's appends:
//   cpu_ratio over pail, and floor_over_append (how much faster the floor is
//   than `append`, by CPU).
// - wasm_append_baseline, wasm_append_many_baseline (with --baseline DIR,
//   the wasm/ folder of another commit with its package built): that
//   build's rates in this same process (its runs alternating with this
//   build's), and this build's speedup over it.
//
// Every rate twice: by the wall clock (events_per_s, ratio) and by CPU time
// (cpu_events_per_s, cpu_ratio: the process's user + system time in Node,
// all its threads; the thread's in the native example), each the best of
// several runs. On a shared machine the wall clock also counts the time
// spent waiting for a core, which a long run (pail's) suffers more than a
// short one; CPU time does not, so the cpu_ figures are the steadier
// comparison when the machine is loaded.

import { parseArgs } from 'node:util'
import { performance } from 'node:perf_hooks'
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { gzipSync } from 'node:zlib'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import { advance, EventBlock } from '@web3-storage/pail/clock'
import { MemoryBlockstore as PailBlockstore } from '@web3-storage/pail/block'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { Replica, blockstoreAdapter } from '../js/node.js'
import { stagedAppend } from '../js/api.js'
import { PAYLOAD_BYTES, eventData } from './workload.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))

/**
 * Times `f` by the wall clock and by the process's CPU time (user + system,
 * every thread of the process: V8's collector and compiler threads count).
 * @returns {Promise<{wall: number, cpu: number}>} seconds
 */
const timed = async (f) => {
  const t0 = performance.now()
  const c0 = process.cpuUsage()
  await f()
  const c = process.cpuUsage(c0)
  return { wall: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 }
}

/** The best rates of several runs: {wall, cpu} events per second. */
const best = (events, runs) => ({
  wall: Math.max(...runs.map((r) => events / r.wall)),
  cpu: Math.max(...runs.map((r) => events / r.cpu))
})

/**
 * Untimed runs of the whole workload before the timed ones, for every rate
 * (pail's and each build's): V8 compiles the hot code again, optimised, during
 * the first runs (wasm: Liftoff, then TurboFan; JS: Ignition, then
 * TurboFan), and its compiler threads' time counts as CPU time. Measured
 * here: a 10,000-event wasm run takes 3–6× its steady time the first time
 * and is steady from about the fourth.
 */
const WARMUP_RUNS = 3

// ------------------------------------------------------------------ pail (as pail_clock.mjs)

class CountingPailBlockstore {
  constructor (inner) { this.inner = inner; this.reads = 0 }
  async get (cid) { this.reads++; return this.inner.get(cid) }
  async put (cid, bytes) { return this.inner.put(cid, bytes) }
}

const pailAppend = async (blocks, head, data) => {
  const event = await EventBlock.create(data, head)
  await blocks.put(event.cid, event.bytes)
  return advance(blocks, head, event.cid)
}

const pailLinear = async (n, datas) => {
  const blocks = new PailBlockstore()
  const chain = []
  let head = []
  for (let i = 0; i < n; i++) {
    head = await pailAppend(blocks, head, datas ? datas[i] : eventData(i))
    chain.push(head[0])
  }
  return { blocks, chain }
}

const pailAppendRate = async (events) => {
  const datas = Array.from({ length: events }, (_, i) => eventData(i))
  for (let k = 0; k < WARMUP_RUNS; k++) await pailLinear(events, datas)
  const runs = []
  for (let k = 0; k < 3; k++) runs.push(await timed(() => pailLinear(events, datas)))
  return best(events, runs)
}

const pailMergeReads = async (history, forkDepth) => {
  const { blocks: mem, chain } = await pailLinear(history)
  const a = await EventBlock.create(eventData(history), [chain[history - 1]])
  const b = await EventBlock.create(eventData(history + 1), [chain[history - 1 - forkDepth]])
  await mem.put(a.cid, a.bytes)
  await mem.put(b.cid, b.bytes)
  const blocks = new CountingPailBlockstore(mem)
  const merged = await advance(blocks, [a.cid], b.cid)
  if (merged.length !== 2) throw new Error(`pail merge gave ${merged.length} heads`)
  return blocks.reads
}

// ------------------------------------------------------------------ wasm

const genesis = Replica.genesis('side by side')

/**
 * `Replica` of the package measured: this one, or another build's
 * (--baseline), or a maker of `Floor`s (--floor): `{ create, floor: true }`.
 */
const wasmAppendRun = async (datas, many, Package = Replica) => {
  const r = await Package.create(Package === Replica || Package.floor ? genesis : Package.genesis('side by side'))
  const t = await timed(async () => {
    if (many) await r.appendMany(datas)
    else for (const d of datas) await r.append(d)
  })
  if (r.length !== datas.length + 1) throw new Error('wasm append lost events')
  r.free()
  return t
}

/**
 * The best rates of `packages` (this build's Replica, and another build's
 * with --baseline), their runs interleaved so that a change in the
 * machine's load falls on both alike.
 */
const wasmAppendRates = async (events, many, packages) => {
  const datas = Array.from({ length: events }, (_, i) => eventData(i))
  for (let k = 0; k < WARMUP_RUNS; k++) {
    for (const Package of packages) await wasmAppendRun(datas, many, Package)
  }
  const runs = packages.map(() => [])
  for (let k = 0; k < 5; k++) {
    for (const [i, Package] of packages.entries()) runs[i].push(await wasmAppendRun(datas, many, Package))
  }
  return runs.map((r) => best(events, r))
}

/** A JS blockstore whose get() calls are counted. */
const countingAdapter = () => {
  const inner = blockstoreAdapter(new MemoryBlockstore())
  const counter = { reads: 0 }
  return {
    counter,
    adapter: {
      get: (c) => { counter.reads++; return inner.get(c) },
      put: (c, b) => inner.put(c, b),
      has: (c) => inner.has(c)
    }
  }
}

const wasmMergeReads = async (history, forkDepth) => {
  // The history (genesis + history - 1 events) and A on its head, built in memory.
  const src = await Replica.create(genesis)
  const chain = [src.streamId]
  for (let i = 1; i < history; i += 1000) {
    const n = Math.min(1000, history - i)
    chain.push(...await src.appendMany(Array.from({ length: n }, (_, k) => eventData(i + k))))
  }
  // B: on another replica that holds the history up to `forkDepth` below the head.
  const forker = await Replica.create(genesis)
  const upTo = chain.slice(1, history - forkDepth)
  await forker.ingestMany(await Promise.all(upTo.map((c) => src.getBlock(c))))
  const b = await forker.getBlock(await forker.append(eventData(history + 1)))
  await src.append(eventData(history))

  // The replica measured: over a counting JS blockstore, holding history + A.
  const { counter, adapter } = countingAdapter()
  const r = await Replica.create(genesis, adapter)
  const all = src.order().slice(1)
  for (let i = 0; i < all.length; i += 1000) {
    await r.ingestMany(await Promise.all(all.slice(i, i + 1000).map((c) => src.getBlock(c))))
  }
  counter.reads = 0
  const outcome = await r.ingest(b)
  if (outcome.status !== 'accepted' || r.heads().length !== 2) throw new Error(`merge: ${JSON.stringify(outcome)}`)
  return counter.reads
}

/**
 * `Floor`s (src/floor.rs, built by `bash build.sh --bench-floor` into
 * pkg/bench-floor) with the same `append` as a Replica's (api.js's
 * `stagedAppend`).
 */
const floorMaker = () => {
  const require = createRequire(import.meta.url)
  const file = path.resolve(here, '../pkg/bench-floor/merkle_clock_wasm.js')
  if (!existsSync(file)) throw new Error('--floor wants pkg/bench-floor: run `bash build.sh --bench-floor` first')
  const module = require(file)
  module.Floor.prototype.append = stagedAppend(module)
  return { floor: true, create: async () => new module.Floor() }
}

// ------------------------------------------------------------------ native

/** The native rates: {native_append: {wall, cpu}, native_append_many: …} in events/s. */
const nativeRates = (events) => {
  const out = execFileSync('cargo', ['run', '--quiet', '--release', '--example', 'wasm_native_append', '--', String(events)], {
    cwd: path.resolve(here, '../..'),
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const rates = {}
  for (const line of out.trim().split('\n')) {
    const row = JSON.parse(line)
    rates[row.metric] = { wall: row.events_per_s, cpu: row.cpu_events_per_s }
  }
  return rates
}

// ------------------------------------------------------------------ main

const round = (x, d) => Number(x.toFixed(d))

const main = async () => {
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean', default: false },
      events: { type: 'string', default: '10000' },
      histories: { type: 'string', default: '1000,5000,20000' },
      'native-events-per-s': { type: 'string' },
      baseline: { type: 'string' },
      floor: { type: 'boolean', default: false },
      'no-native': { type: 'boolean', default: false }
    }
  })
  const events = Number(values.events)
  const histories = values.histories.split(',').map(Number)
  if (!Number.isInteger(events) || events < 1 || histories.some((h) => !Number.isInteger(h) || h < 3)) {
    throw new Error('--events wants an integer >= 1, --histories integers >= 3')
  }
  const rows = []
  const emit = (row) => {
    rows.push(row)
    if (values.json) console.log(JSON.stringify(row))
  }

  // Another build of the package (another commit's wasm/, built), measured
  // in this same process, its runs interleaved with this one's: before/after
  // on equal terms.
  const packages = [Replica]
  if (values.baseline) packages.push((await import(path.resolve(values.baseline, 'js/node.js'))).Replica)
  const floor = values.floor ? floorMaker() : null
  const [wasm, ...others] = await wasmAppendRates(events, false, floor ? [...packages, floor] : packages)
  const [wasmBefore, floorRate] = values.baseline ? others : [undefined, others[0]]
  const pail = await pailAppendRate(events)
  const [wasmMany, wasmManyBefore] = await wasmAppendRates(events, true, packages)
  const appendRow = (metric, w) => ({
    metric,
    events,
    payload_bytes: PAYLOAD_BYTES,
    events_per_s: round(w.wall, 1),
    pail_events_per_s: round(pail.wall, 1),
    ratio: round(w.wall / pail.wall, 1),
    cpu_events_per_s: round(w.cpu, 1),
    pail_cpu_events_per_s: round(pail.cpu, 1),
    cpu_ratio: round(w.cpu / pail.cpu, 1)
  })
  emit(appendRow('wasm_append', wasm))
  emit(appendRow('wasm_append_many', wasmMany))
  if (floorRate) {
    emit({
      ...appendRow('wasm_append_floor', floorRate),
      floor_over_append: round(floorRate.cpu / wasm.cpu, 2),
      floor_over_append_wall: round(floorRate.wall / wasm.wall, 2)
    })
  }

  if (values.baseline) {
    for (const [metric, before, now] of [['wasm_append_baseline', wasmBefore, wasm], ['wasm_append_many_baseline', wasmManyBefore, wasmMany]]) {
      emit({
        metric,
        baseline: values.baseline,
        events_per_s: round(before.wall, 1),
        cpu_events_per_s: round(before.cpu, 1),
        cpu_ratio_to_pail: round(before.cpu / pail.cpu, 1),
        speedup: round(now.wall / before.wall, 2),
        cpu_speedup: round(now.cpu / before.cpu, 2)
      })
    }
  }

  for (const history of histories) {
    const reads = await wasmMergeReads(history, 1)
    const pailReads = await pailMergeReads(history, 1)
    emit({ metric: 'wasm_merge_reads', history, fork_depth: 1, reads, pail_reads: pailReads })
  }

  if (!values['no-native']) {
    const given = values['native-events-per-s']
    const native = given ? { native_append: { wall: Number(given) } } : nativeRates(events)
    const ratioRow = (metric, w, n) => ({
      metric,
      events,
      wasm_events_per_s: round(w.wall, 1),
      native_events_per_s: round(n.wall, 1),
      ratio: round(w.wall / n.wall, 3),
      ...(n.cpu ? { wasm_cpu_events_per_s: round(w.cpu, 1), native_cpu_events_per_s: round(n.cpu, 1), cpu_ratio: round(w.cpu / n.cpu, 3) } : {})
    })
    emit(ratioRow('wasm_native_ratio', wasm, native.native_append))
    // The native library's single appends over pail's: what wasm_append's
    // ratio would be if the wasm build ran at native speed (its ceiling).
    const n = native.native_append
    emit({
      metric: 'native_pail_ratio',
      events,
      native_events_per_s: round(n.wall, 1),
      pail_events_per_s: round(pail.wall, 1),
      ratio: round(n.wall / pail.wall, 1),
      ...(n.cpu ? { native_cpu_events_per_s: round(n.cpu, 1), pail_cpu_events_per_s: round(pail.cpu, 1), cpu_ratio: round(n.cpu / pail.cpu, 1) } : {})
    })
    if (native.native_append_many) emit(ratioRow('wasm_native_ratio_many', wasmMany, native.native_append_many))
  }

  const bytes = readFileSync(path.resolve(here, '../pkg/web/merkle_clock_wasm_bg.wasm'))
  emit({ metric: 'wasm_size', bytes: bytes.length, gzip_bytes: gzipSync(bytes, { level: 9 }).length })

  if (!values.json) for (const row of rows) console.log(row)
}

main().catch((err) => {
  console.error(`side_by_side: error: ${err && err.stack ? err.stack : err}`)
  process.exit(1)
})
