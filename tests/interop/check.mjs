#!/usr/bin/env node
// Independent check of a merkle-clock CAR file with the reference JavaScript
// IPLD stack (@ipld/car, @ipld/dag-cbor, multiformats), @noble/hashes' BLAKE3
// and, for signed streams, @noble/curves' Ed25519.
//
//   node check.mjs FILE.car
//
// Prints one `ok: ...` line and exits 0, or prints `FAIL: <what> <cid>` lines
// and exits 1. A file that cannot be read at all exits 1 too; bad usage exits 2.
//
// This file shares no code with make.mjs on purpose: a mistake in one should
// not be hidden by the same mistake in the other.

import { readFile } from 'node:fs/promises'
import { CarReader } from '@ipld/car/reader'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { from as hasherFrom } from 'multiformats/hashes/hasher'
import { equals } from 'multiformats/bytes'
import { blake3 } from '@noble/hashes/blake3.js'
import { ed25519 } from '@noble/curves/ed25519.js'

const DAG_CBOR = 0x71
const BLAKE3 = 0x1e
const DIGEST_LEN = 32
// The signing input starts with these ASCII bytes, then the stream's CID.
const SIGNATURE_DOMAIN = new TextEncoder().encode('merkle-clock/event-signature/v1')
// The key sets an event may have (sorted): unsigned, a genesis with a policy,
// signed, a signed membership event.
const SHAPES = new Set([
  'height,parents,payload',
  'admins,height,parents,payload',
  'author,height,parents,payload,sig',
  'author,height,member,parents,payload,sig'
])

function isBytes (v, n) {
  return v instanceof Uint8Array && v.length === n
}

const blake3Hasher = hasherFrom({
  name: 'blake3',
  code: BLAKE3,
  encode: (input) => blake3(input) // 32-byte output by default
})

/** Lexicographic comparison of byte strings (a shorter prefix sorts first). */
function compareBytes (a, b) {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i] - b[i]
  }
  return a.length - b.length
}

/** Whether a CID has the one form events use: CIDv1, dag-cbor, BLAKE3-256. */
function isEventCid (cid) {
  return cid.version === 1 &&
    cid.code === DAG_CBOR &&
    cid.multihash.code === BLAKE3 &&
    cid.multihash.size === DIGEST_LEN &&
    cid.multihash.digest.length === DIGEST_LEN
}

function isHeight (h) {
  return (typeof h === 'number' && Number.isSafeInteger(h) && h >= 0) ||
    (typeof h === 'bigint' && h >= 0n)
}

async function main () {
  const args = process.argv.slice(2)
  if (args.length !== 1 || args[0].startsWith('-')) {
    console.error('usage: node check.mjs FILE.car')
    return 2
  }
  const file = args[0]

  const failures = []
  const fail = (what, cid, detail) => {
    failures.push(`FAIL: ${what} ${cid}${detail ? ` (${detail})` : ''}`)
  }

  let reader
  try {
    reader = await CarReader.fromBytes(new Uint8Array(await readFile(file)))
  } catch (err) {
    console.log(`FAIL: unreadable CAR ${file} (${err.message})`)
    return 1
  }
  if (reader.version !== 1) {
    fail('CAR version is not 1', file, `version ${reader.version}`)
  }
  const roots = await reader.getRoots()

  // Pass 1: every block on its own.
  /** @type {Map<string, {height: bigint, parents: CID[]}>} well-formed events by CID string */
  const events = new Map()
  /** Signed events, checked once the genesis (the stream id) is known. */
  const signed = []
  /** Genesis blocks, with whether they name admins. */
  const geneses = []
  const seen = new Set()
  let blockCount = 0
  for await (const { cid, bytes } of reader.blocks()) {
    blockCount++
    const key = cid.toString()
    if (seen.has(key)) {
      fail('duplicate block', key)
      continue
    }
    seen.add(key)

    if (!isEventCid(cid)) {
      fail('CID is not v1/dag-cbor/blake3-256', key,
        `version ${cid.version}, codec 0x${cid.code.toString(16)}, ` +
        `multihash 0x${cid.multihash.code.toString(16)}/${cid.multihash.size} bytes`)
    }
    const recomputed = CID.create(1, DAG_CBOR, await blake3Hasher.digest(bytes))
    if (!equals(recomputed.bytes, cid.bytes)) {
      fail('CID does not match the block bytes', key, `recomputed ${recomputed}`)
    }

    let value
    try {
      value = dagCbor.decode(bytes)
    } catch (err) {
      fail('not decodable as DAG-CBOR', key, err.message)
      continue
    }
    let reencoded
    try {
      reencoded = dagCbor.encode(value)
    } catch (err) {
      fail('decoded value does not re-encode', key, err.message)
      continue
    }
    if (!equals(reencoded, bytes)) {
      fail('re-encoding differs from the block bytes', key,
        `${bytes.length} bytes in, ${reencoded.length} bytes out`)
      continue
    }

    // Event shape.
    if (value === null || typeof value !== 'object' || Array.isArray(value) ||
        value instanceof Uint8Array || CID.asCID(value) !== null) {
      fail('block is not a map', key)
      continue
    }
    const keys = Object.keys(value).sort()
    if (!SHAPES.has(keys.join(','))) {
      fail('event keys are not height, parents, payload (plus admins in a genesis, or author and sig, and member)',
        key, `keys: ${keys.join(', ')}`)
      continue
    }
    if ('admins' in value) {
      const ok = Array.isArray(value.admins) && value.admins.length > 0 &&
        value.admins.every((k, i) => isBytes(k, 32) && (i === 0 || compareBytes(value.admins[i - 1], k) < 0))
      if (!ok) fail('admins is not a non-empty ascending list of 32-byte keys', key)
    }
    if ('sig' in value) {
      if (!isBytes(value.sig, 64) || !isBytes(value.author, 32)) {
        fail('sig is not 64 bytes or author not 32 bytes', key)
        continue
      }
      signed.push({ key, value })
    }
    const { height, parents } = value
    let shapeOk = true
    if (!isHeight(height)) {
      fail('height is not a non-negative integer', key, String(height))
      shapeOk = false
    }
    if (!Array.isArray(parents)) {
      fail('parents is not a list', key)
      continue
    }
    const links = parents.map((p) => CID.asCID(p))
    links.forEach((link, i) => {
      if (link === null) {
        fail('parent is not a CID link', key, `index ${i}`)
        shapeOk = false
      } else if (!isEventCid(link)) {
        fail('parent CID is not v1/dag-cbor/blake3-256', key, `parent ${link}`)
        shapeOk = false
      }
    })
    if (!shapeOk) continue
    for (let i = 1; i < links.length; i++) {
      const c = compareBytes(links[i - 1].bytes, links[i].bytes)
      if (c === 0) {
        fail('duplicate parent', key, `parent ${links[i]}`)
        shapeOk = false
      } else if (c > 0) {
        fail('parents not in ascending byte order', key, `${links[i - 1]} before ${links[i]}`)
        shapeOk = false
      }
    }
    const h = BigInt(height)
    if (links.length === 0 && h !== 0n) {
      fail('event without parents must have height 0', key, `height ${h}`)
      shapeOk = false
    }
    if (links.length > 0 && h === 0n) {
      fail('event with parents has height 0', key)
      shapeOk = false
    }
    if (links.length === 0) geneses.push({ cid, admins: 'admins' in value })
    if (shapeOk) events.set(key, { height: h, parents: links, signed: 'sig' in value })
  }

  // Signatures: over the domain, the stream's CID and the event without `sig`,
  // re-encoded here (strict RFC 8032 verification, not ZIP 215).
  let signaturesVerified = 0
  if (signed.length > 0 || geneses.some((g) => g.admins)) {
    if (geneses.length !== 1) {
      fail('a signed stream needs exactly one genesis in the CAR', file, `${geneses.length} found`)
    } else {
      const stream = geneses[0].cid
      for (const { key, value } of signed) {
        const { sig, ...unsigned } = value
        const envelope = dagCbor.encode(unsigned)
        const input = new Uint8Array(SIGNATURE_DOMAIN.length + stream.bytes.length + envelope.length)
        input.set(SIGNATURE_DOMAIN, 0)
        input.set(stream.bytes, SIGNATURE_DOMAIN.length)
        input.set(envelope, SIGNATURE_DOMAIN.length + stream.bytes.length)
        let ok = false
        try {
          ok = ed25519.verify(sig, input, value.author, { zip215: false })
        } catch (err) {
          ok = false
        }
        if (ok) signaturesVerified++
        else fail('signature does not verify', key)
      }
      if (geneses[0].admins) {
        for (const [key, event] of events) {
          if (event.parents.length > 0 && !event.signed) fail('unsigned event on a stream with admins', key)
        }
      }
    }
  }

  // Pass 2: relations between blocks.
  let heightsChecked = 0
  let linksOutside = 0
  const referenced = new Set()
  for (const [key, event] of events) {
    let all = true
    let max = -1n
    for (const p of event.parents) {
      const pk = p.toString()
      referenced.add(pk)
      const parent = events.get(pk)
      if (parent === undefined) {
        if (!seen.has(pk)) linksOutside++
        all = false
      } else if (parent.height > max) {
        max = parent.height
      }
    }
    if (all && event.parents.length > 0) {
      heightsChecked++
      if (event.height !== max + 1n) {
        fail('height is not 1 + max parent height', key,
          `height ${event.height}, max parent height ${max}`)
      }
    }
  }

  const rootKeys = new Set()
  for (const root of roots) {
    const key = root.toString()
    if (rootKeys.has(key)) fail('duplicate root', key)
    rootKeys.add(key)
    if (!seen.has(key)) fail('root block missing from the CAR', key)
    if (referenced.has(key)) fail('root is a parent of another event, so not a head', key)
  }

  if (failures.length > 0) {
    for (const line of failures) console.log(line)
    console.log(`${failures.length} failure(s) in ${blockCount} blocks, ${roots.length} roots`)
    return 1
  }
  let summary = `ok: ${blockCount} blocks, ${roots.length} roots, all CIDs recomputed, ` +
    'all blocks re-encoded byte for byte'
  summary += `, ${heightsChecked} heights checked against parents`
  if (signaturesVerified > 0) summary += `, ${signaturesVerified} signatures verified`
  if (linksOutside > 0) summary += `, ${linksOutside} parent links point outside the CAR`
  console.log(summary)
  return 0
}

process.exitCode = await main()
