#!/usr/bin/env node
// Builds a small merkle-clock stream entirely in JavaScript and writes it as a
// CAR v1 file, for the Rust side to read:
//
//   genesis {name: "js-genesis"}            height 0
//    ├── child A {n: 1, text: "from js"}     height 1
//    └── child B {n: 2, bytes: <8 bytes>}    height 1
//   merge {name: "js-merge"}, parents A, B  height 2  (the only root)
//
//   node make.mjs OUT.car
//
// Prints the four CIDs, genesis first, then A and B in the order of the
// merge's parents list, then the merge; one per line.
// The same input gives the same bytes, so the CIDs are stable.

import { createWriteStream } from 'node:fs'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { CarWriter } from '@ipld/car/writer'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { from as hasherFrom } from 'multiformats/hashes/hasher'
import { blake3 } from '@noble/hashes/blake3.js'

const DAG_CBOR = 0x71

const blake3Hasher = hasherFrom({
  name: 'blake3',
  code: 0x1e,
  encode: (input) => blake3(input) // 32-byte output by default
})

function compareBytes (a, b) {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i] - b[i]
  }
  return a.length - b.length
}

/** Encodes one event; parents are sorted by CID bytes here. */
async function makeEvent (parents, payload, heights) {
  const sorted = [...parents].sort((a, b) => compareBytes(a.bytes, b.bytes))
  const height = sorted.length === 0
    ? 0
    : 1 + Math.max(...sorted.map((p) => heights.get(p.toString())))
  // The encoder orders map keys canonically, whatever the order written here.
  const bytes = dagCbor.encode({ height, parents: sorted, payload })
  const cid = CID.create(1, DAG_CBOR, await blake3Hasher.digest(bytes))
  heights.set(cid.toString(), height)
  return { cid, bytes, parents: sorted }
}

async function main () {
  const args = process.argv.slice(2)
  if (args.length !== 1 || args[0].startsWith('-')) {
    console.error('usage: node make.mjs OUT.car')
    return 2
  }
  const out = args[0]

  const heights = new Map()
  const genesis = await makeEvent([], { name: 'js-genesis' }, heights)
  const a = await makeEvent([genesis.cid], { n: 1, text: 'from js' }, heights)
  const b = await makeEvent([genesis.cid],
    { n: 2, bytes: new Uint8Array([0x00, 0x01, 0x02, 0x7f, 0x80, 0xfe, 0xff, 0x6a]) }, heights)
  const merge = await makeEvent([a.cid, b.cid], { name: 'js-merge' }, heights)

  // Children in the order the merge lists them (ascending CID bytes).
  const children = merge.parents.map((p) => (p.equals(a.cid) ? a : b))
  const blocks = [genesis, ...children, merge]

  const { writer, out: carBytes } = CarWriter.create([merge.cid])
  const written = pipeline(Readable.from(carBytes), createWriteStream(out))
  for (const { cid, bytes } of blocks) await writer.put({ cid, bytes })
  await writer.close()
  await written

  for (const { cid } of blocks) console.log(cid.toString())
  return 0
}

process.exitCode = await main()
