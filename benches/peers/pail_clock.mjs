// Peer benchmark: the Merkle clock of @web3-storage/pail (`@web3-storage/pail/clock`),
// the JavaScript Merkle clock users would otherwise pick. It prints figures that the
// merkle-clock crate's perf report compares against, measured on the same machine.
//
//   node pail_clock.mjs [--json] [--events N] [--histories 1000,5000,20000] [--fork-depth D]
//
// Note: pail's events are DAG-CBOR { data, parents } blocks hashed with SHA-256
// (merkle-clock uses BLAKE3); each pail event carries no height.

import { parseArgs } from 'node:util'
import { performance } from 'node:perf_hooks'
import { advance, EventBlock } from '@web3-storage/pail/clock'
import { MemoryBlockstore } from '@web3-storage/pail/block'

const PAYLOAD_BYTES = 128

/** A blockstore wrapper whose `get` counts every block read pail makes. */
class CountingBlockstore {
  /** @param {MemoryBlockstore} inner */
  constructor (inner) {
    this.inner = inner
    this.reads = 0
  }

  /** @param {import('multiformats').UnknownLink} cid */
  async get (cid) {
    this.reads++
    return this.inner.get(cid)
  }

  /** @param {import('multiformats').UnknownLink} cid @param {Uint8Array} bytes */
  async put (cid, bytes) {
    return this.inner.put(cid, bytes)
  }
}

/**
 * The event data: an object holding a 128-byte payload as a Uint8Array (encoded
 * by DAG-CBOR as a byte string). Bytes are a deterministic function of `i`, so
 * every event differs and runs are reproducible.
 * @param {number} i
 */
const eventData = (i) => {
  const payload = new Uint8Array(PAYLOAD_BYTES)
  let x = (i * 2654435761 + 1) >>> 0
  for (let j = 0; j < PAYLOAD_BYTES; j++) {
    x = (x * 1103515245 + 12345) >>> 0 // LCG
    payload[j] = x >>> 24
  }
  return { payload }
}

/**
 * Appends one event on top of `head`, the way pail's tests and README do it:
 * create the event block with the current head as parents, put it in the
 * blockstore, then `advance` the clock with its CID. Returns the new head.
 * @param {MemoryBlockstore | CountingBlockstore} blocks
 * @param {import('@web3-storage/pail/clock/api').EventLink<any>[]} head
 * @param {object} data
 */
const append = async (blocks, head, data) => {
  const event = await EventBlock.create(data, head)
  await blocks.put(event.cid, event.bytes)
  return advance(blocks, head, event.cid)
}

/**
 * Builds a linear history of `n` events in a fresh MemoryBlockstore.
 * Returns the blockstore and every event's CID, oldest first (chain[n - 1] is the head).
 * @param {number} n
 * @param {object[]} [datas] pre-built event data (one per event)
 */
const linearHistory = async (n, datas) => {
  const blocks = new MemoryBlockstore()
  const chain = []
  let head = []
  for (let i = 0; i < n; i++) {
    head = await append(blocks, head, datas ? datas[i] : eventData(i))
    chain.push(head[0])
  }
  if (head.length !== 1) throw new Error(`linear history ended with ${head.length} heads`)
  return { blocks, chain }
}

// Workload "append": a linear history of `events` events, each appended onto the
// current head (EventBlock.create + put + advance). Timed: the whole loop,
// encode + SHA-256 + put + advance; the payloads are built before the timer starts,
// and 1,000 untimed appends into a throwaway store warm up V8's JIT first.
const benchAppend = async (events) => {
  await linearHistory(1000)
  const datas = Array.from({ length: events }, (_, i) => eventData(i))
  const t0 = performance.now()
  await linearHistory(events, datas)
  const seconds = (performance.now() - t0) / 1000
  return {
    impl: 'pail',
    metric: 'append',
    events,
    payload_bytes: PAYLOAD_BYTES,
    seconds: round(seconds, 3),
    events_per_s: round(events / seconds, 1)
  }
}

// Workload "merge": build (untimed) a linear history of `history` events, then two
// concurrent events A and B. A's parent is the history's head; B's parent is the
// event `forkDepth` steps below it (default 0: A and B are siblings on the same head).
// With the clock's head = [A], one `advance(blocks, [A], B)` merges B in; we count
// the block reads it makes (through CountingBlockstore) and time it.
const benchMerge = async (history, forkDepth) => {
  if (forkDepth >= history) throw new Error(`--fork-depth ${forkDepth} needs a history longer than ${history}`)
  const { blocks: mem, chain } = await linearHistory(history)
  const a = await EventBlock.create(eventData(history), [chain[history - 1]])
  const b = await EventBlock.create(eventData(history + 1), [chain[history - 1 - forkDepth]])
  await mem.put(a.cid, a.bytes)
  await mem.put(b.cid, b.bytes)

  const blocks = new CountingBlockstore(mem)
  const t0 = performance.now()
  const merged = await advance(blocks, [a.cid], b.cid)
  const ms = performance.now() - t0

  // Sanity check: concurrent events must both stay heads.
  const got = merged.map(String).sort().join(',')
  const want = [a.cid, b.cid].map(String).sort().join(',')
  if (got !== want) throw new Error(`merge gave head [${got}], expected [${want}]`)
  return { impl: 'pail', metric: 'merge', history, block_reads: blocks.reads, ms: round(ms, 3) }
}

const round = (x, digits) => Number(x.toFixed(digits))

/** @param {string} name @param {string} s @param {number} [min] */
const int = (name, s, min = 1) => {
  if (!/^\d+$/.test(s) || Number(s) < min) throw new Error(`${name} wants an integer >= ${min}, got "${s}"`)
  return Number(s)
}

const parseCli = () => {
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean', default: false },
      events: { type: 'string', default: '10000' },
      histories: { type: 'string', default: '1000,5000,20000' },
      'fork-depth': { type: 'string', default: '0' },
      help: { type: 'boolean', short: 'h', default: false }
    }
  })
  return {
    json: values.json,
    help: values.help,
    events: int('--events', values.events),
    histories: values.histories.split(',').map((s) => int('--histories', s.trim())),
    forkDepth: int('--fork-depth', values['fork-depth'], 0)
  }
}

const main = async () => {
  const opts = parseCli()
  if (opts.help) {
    console.log('usage: node pail_clock.mjs [--json] [--events N] [--histories H1,H2,...] [--fork-depth D]')
    return
  }
  const emit = opts.json ? (row) => console.log(JSON.stringify(row)) : () => {}

  const appendRow = await benchAppend(opts.events)
  emit(appendRow)
  const mergeRows = []
  for (const h of opts.histories) {
    const row = await benchMerge(h, opts.forkDepth)
    mergeRows.push(row)
    emit(row)
  }

  if (!opts.json) {
    console.log('pail clock — append (linear history, advance onto the head)')
    console.log('  events  payload_bytes  seconds  events/s')
    const r = appendRow
    console.log(`  ${pad(r.events, 6)}  ${pad(r.payload_bytes, 13)}  ${pad(r.seconds.toFixed(3), 7)}  ${pad(r.events_per_s.toFixed(1), 8)}`)
    const shape = opts.forkDepth === 0 ? 'A, B siblings on the head' : `B forks ${opts.forkDepth} below A's parent`
    console.log(`pail clock — merge (head [A], advance with concurrent B; ${shape})`)
    console.log('  history  block_reads        ms')
    for (const m of mergeRows) {
      console.log(`  ${pad(m.history, 7)}  ${pad(m.block_reads, 11)}  ${pad(m.ms.toFixed(3), 8)}`)
    }
  }
}

const pad = (v, w) => String(v).padStart(w)

main().catch((err) => {
  console.error(`pail_clock: error: ${err && err.message ? err.message : err}`)
  process.exit(1)
})
