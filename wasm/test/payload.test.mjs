// The JS payload encoder (js/payload.js) against @ipld/dag-cbor, the
// ecosystem's reference encoder: byte for byte on generated values.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { encodePayload, encodePayloads } from '../js/payload.js'

const link = CID.parse('bafyr4igbvc7qhfdyvvaw4hmq5bgeyqwxpzhk4fbmhxqkzzqxbqkr5ueyym')

/** A deterministic generator of DAG-CBOR-able values. */
function generator (seed) {
  let x = seed >>> 0
  const next = () => { x = (x * 1103515245 + 12345) >>> 0; return x }
  const pick = (n) => next() % n
  const keyChars = ['a', 'b', 'z', 'é', '€', '😀', '_', '0']
  const key = () => Array.from({ length: pick(4) }, () => keyChars[pick(keyChars.length)]).join('')
  const value = (depth) => {
    switch (depth > 3 ? pick(8) : pick(10)) {
      case 0: return null
      case 1: return pick(2) === 0
      case 2: return [0, 1, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER][pick(11)] * (pick(2) ? 1 : -1)
      case 3: return [0.5, -1.25, 1e300, 5e-324, Math.PI][pick(5)]
      case 4: return key() + 'text'.repeat(pick(30))
      case 5: return new Uint8Array(pick(300)).map(() => pick(256))
      case 6: return link
      case 7: return [2n ** 63n, -(2n ** 64n), 2n ** 64n - 1n][pick(3)]
      case 8: return Array.from({ length: pick(5) }, () => value(depth + 1))
      default: {
        const obj = {}
        for (let i = pick(6); i > 0; i--) obj[key()] = value(depth + 1)
        return obj
      }
    }
  }
  return () => value(0)
}

const reference = (v) => dagCbor.encode(v)

/** Bytes as hex (the two encoders return different Uint8Array subclasses). */
const hex = (bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('hex')

test('prop_payload_encoder_matches_ipld_dag_cbor', () => {
  for (let seed = 1; seed <= 500; seed++) {
    const v = generator(seed)()
    assert.equal(hex(encodePayload(v)), hex(reference(v)), `seed ${seed}`)
  }
})

test('a batch is a CBOR sequence of the same bytes, with where each ends', () => {
  const values = [1, 'two', { three: [3] }, new Uint8Array(5000)]
  const parts = values.map(reference)
  const joined = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  const expectedEnds = []
  let at = 0
  for (const p of parts) { joined.set(p, at); at += p.length; expectedEnds.push(at) }
  const { bytes, ends } = encodePayloads(values)
  assert.equal(hex(bytes), hex(joined))
  assert.deepEqual([...ends], expectedEnds)
})
