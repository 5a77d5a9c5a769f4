// Payloads (plain JS values) as DAG-CBOR bytes, written on the JS side.
//
// Reading a JS object from inside wasm costs a call across the boundary for
// every type test, key and value: for a `{payload: <128 bytes>}` it was about
// half the time of an append. Here the walk is plain JS; the wasm module
// receives one byte string (a CBOR sequence for a batch), decodes it and
// encodes the event canonically itself, so bytes that did not come from this
// encoder are checked there (and canonicalised) like any other input.
//
// The mapping (wasm/README.md, "Payloads"):
//   null → null; true/false → bool; a number with no fraction and
//   |n| ≤ 2^53−1 → integer, any other finite number → 64-bit float;
//   a bigint within −2^64 … 2^64−1 → integer; a string → text;
//   a Uint8Array → bytes; an array → list; a plain object → map (keys in
//   DAG-CBOR order: by UTF-8 length, then bytes); a multiformats CID (any
//   copy of the package: `value.asCID === value`) or `{"/": "bafy…"}` → link.
// Refused with a MerkleClockError `invalid_argument`: undefined, NaN,
// ±Infinity, symbols, functions, other class instances (Map, Date, ...), and
// nesting deeper than 128 levels (which also catches cycles).

import { CID } from 'multiformats/cid'

const MAX_DEPTH = 128
const textEncoder = new TextEncoder()

/** A MerkleClockError, as the wasm module throws them. */
export function merkleClockError (code, message) {
  const e = new Error(message)
  e.name = 'MerkleClockError'
  e.code = code
  return e
}

const invalid = (message) => merkleClockError('invalid_argument', message)

/** A growable byte buffer, reused from call to call. */
class Writer {
  constructor (size = 4096) {
    this.buf = new Uint8Array(size)
    this.view = new DataView(this.buf.buffer)
    this.len = 0
  }

  reserve (n) {
    if (this.len + n <= this.buf.length) return
    let size = Math.max(this.buf.length * 2, 64)
    while (size < this.len + n) size *= 2
    this.grow(size)
  }

  /** Makes `buf` at least `size` bytes, keeping the first `len`. */
  grow (size) {
    const buf = new Uint8Array(size)
    buf.set(this.buf.subarray(0, this.len))
    this.buf = buf
    this.view = new DataView(buf.buffer)
  }

  /** A CBOR head: major type and argument (a number ≤ 2^53−1 or a bigint < 2^64). */
  head (major, arg) {
    this.reserve(9)
    const m = major << 5
    if (typeof arg === 'bigint') {
      if (arg <= 0xffffffffn) return this.head(major, Number(arg))
      this.buf[this.len] = m | 27
      this.view.setBigUint64(this.len + 1, arg)
      this.len += 9
    } else if (arg < 24) {
      this.buf[this.len++] = m | arg
    } else if (arg < 0x100) {
      this.buf[this.len] = m | 24
      this.buf[this.len + 1] = arg
      this.len += 2
    } else if (arg < 0x10000) {
      this.buf[this.len] = m | 25
      this.view.setUint16(this.len + 1, arg)
      this.len += 3
    } else if (arg < 0x100000000) {
      this.buf[this.len] = m | 26
      this.view.setUint32(this.len + 1, arg)
      this.len += 5
    } else {
      this.buf[this.len] = m | 27
      this.view.setUint32(this.len + 1, Math.floor(arg / 0x100000000))
      this.view.setUint32(this.len + 5, arg >>> 0)
      this.len += 9
    }
  }

  bytes (major, bytes) {
    this.head(major, bytes.length)
    this.reserve(bytes.length)
    this.buf.set(bytes, this.len)
    this.len += bytes.length
  }

  text (s) {
    // ASCII, the common case, byte by byte; anything else through TextEncoder.
    const n = s.length
    if (n < 64) {
      this.reserve(2 + n)
      const start = this.len
      this.head(3, n)
      let at = this.len
      let i = 0
      for (; i < n; i++) {
        const c = s.charCodeAt(i)
        if (c > 0x7f) break
        this.buf[at++] = c
      }
      if (i === n) {
        this.len = at
        return
      }
      this.len = start
    }
    this.bytes(3, textEncoder.encode(s))
  }
}

/** Whether a string is ASCII (its UTF-16 order is then its UTF-8 byte order). */
const isAscii = (s) => {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false
  return true
}

/** DAG-CBOR map key order: by UTF-8 length, then byte by byte. */
function sortKeys (keys) {
  if (keys.length < 2) return keys
  if (keys.every(isAscii)) {
    return keys.sort((a, b) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0))
  }
  const encoded = keys.map((k) => [k, textEncoder.encode(k)])
  encoded.sort(([, a], [, b]) => {
    if (a.length !== b.length) return a.length - b.length
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i]
    return 0
  })
  return encoded.map(([k]) => k)
}

const isPlain = (obj) => {
  const proto = Object.getPrototypeOf(obj)
  return proto === null || Object.getPrototypeOf(proto) === null
}

function link (w, cidBytes) {
  // Tag 42, then the CID's bytes behind the identity multibase prefix 0x00.
  w.reserve(2)
  w.buf[w.len++] = 0xd8
  w.buf[w.len++] = 42
  w.head(2, cidBytes.length + 1)
  w.reserve(1 + cidBytes.length)
  w.buf[w.len++] = 0
  w.buf.set(cidBytes, w.len)
  w.len += cidBytes.length
}

function write (w, v, depth) {
  if (depth > MAX_DEPTH) throw invalid('the payload is nested deeper than 128 levels (or holds a cycle)')
  switch (typeof v) {
    case 'string':
      return w.text(v)
    case 'number':
      if (!Number.isFinite(v)) throw invalid('NaN and ±Infinity cannot be encoded as DAG-CBOR')
      if (Number.isInteger(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER) {
        // -0 is the integer 0, as 1.0 is 1: JS cannot tell them apart.
        return v >= 0 ? w.head(0, v) : w.head(1, -v - 1)
      }
      w.reserve(9)
      w.buf[w.len] = 0xfb
      w.view.setFloat64(w.len + 1, v)
      w.len += 9
      return
    case 'boolean':
      w.reserve(1)
      w.buf[w.len++] = v ? 0xf5 : 0xf4
      return
    case 'bigint':
      if (v < -(2n ** 64n) || v > 2n ** 64n - 1n) {
        throw invalid(`bigint ${v} is beyond DAG-CBOR's integers (−2^64 … 2^64−1)`)
      }
      return v >= 0n ? w.head(0, v) : w.head(1, -v - 1n)
    case 'undefined':
      throw invalid('undefined cannot be encoded as DAG-CBOR (use null, or leave the key out)')
    case 'object':
      break
    default:
      throw invalid(`a ${typeof v} cannot be encoded as DAG-CBOR`)
  }
  if (v === null) {
    w.reserve(1)
    w.buf[w.len++] = 0xf6
    return
  }
  if (v instanceof Uint8Array) return w.bytes(2, v)
  if (Array.isArray(v)) {
    w.head(4, v.length)
    for (let i = 0; i < v.length; i++) write(w, v[i], depth + 1)
    return
  }
  if (v.asCID === v) {
    if (!(v.bytes instanceof Uint8Array)) throw invalid('a CID object without bytes')
    return link(w, v.bytes)
  }
  if (!isPlain(v)) {
    const name = v.constructor && v.constructor.name
    throw invalid(`${name ? `a ${name}` : 'an object'} cannot be encoded as DAG-CBOR: only plain objects, arrays, Uint8Array and CIDs`)
  }
  const keys = Object.keys(v)
  if (keys.length === 1 && keys[0] === '/' && typeof v['/'] === 'string') {
    // The DAG-JSON link form, {"/": "bafy…"}.
    let cid
    try {
      cid = CID.parse(v['/'])
    } catch (e) {
      throw invalid(`${JSON.stringify(v['/'])} is not a CID: ${e.message}`)
    }
    return link(w, cid.bytes)
  }
  w.head(5, keys.length)
  for (const key of sortKeys(keys)) {
    w.text(key)
    write(w, v[key], depth + 1)
  }
}

const shared = new Writer()

/**
 * The DAG-CBOR bytes of several payloads, each after the other, and where
 * each ends. `bytes` is a view of a buffer that the next call overwrites:
 * hand it to wasm (which copies it) at once.
 * @param {unknown[]} values
 * @returns {{bytes: Uint8Array, ends: Uint32Array}}
 */
export function encodePayloads (values) {
  shared.len = 0
  const ends = new Uint32Array(values.length)
  for (let i = 0; i < values.length; i++) {
    write(shared, values[i], 0)
    ends[i] = shared.len
  }
  return { bytes: shared.buf.subarray(0, shared.len), ends }
}

/** @param {unknown} value @returns {Uint8Array} as encodePayloads */
export function encodePayload (value) {
  shared.len = 0
  write(shared, value, 0)
  return shared.buf.subarray(0, shared.len)
}

const textDecoder = new TextDecoder()

/** The length of an event CID's text (`bafyr4i…`: CIDv1, DAG-CBOR, BLAKE3-256). */
const EVENT_CID_TEXT = 59

/**
 * A writer over the wasm module's staging buffer (wasm/src/staging.rs):
 * `append` encodes a payload straight into wasm memory and reads the new
 * event's CID text from there, so nothing is copied or allocated to cross.
 * The views are made again when wasm memory grew (which detaches them) or
 * the buffer did; wasm keeps the buffer's bytes when it grows it.
 */
export class StagedWriter extends Writer {
  /** @param {any} wasm the generated module (after its init, in browsers) */
  constructor (wasm) {
    super(0)
    this.wasm = wasm
    this.memory = wasm.wasmMemory()
    this.bind(0)
  }

  bind (size) {
    const at = this.wasm.stagingReserve(size)
    const length = this.wasm.stagingLength()
    const buffer = this.memory.buffer
    this.buf = new Uint8Array(buffer, at, length)
    this.view = new DataView(buffer, at, length)
    this.cid = this.buf.subarray(0, EVENT_CID_TEXT)
  }

  grow (size) {
    this.bind(size)
  }

  /** Encodes `value` at the start of the staging buffer; its length. */
  stage (value) {
    if (this.buf.byteLength === 0) this.bind(0)
    this.len = 0
    write(this, value, 0)
    return this.len
  }

  /** The CID text of `n` bytes that wasm wrote at the start of the buffer. */
  cidText (n) {
    if (this.buf.byteLength === 0) this.bind(0)
    return textDecoder.decode(n === EVENT_CID_TEXT ? this.cid : this.buf.subarray(0, n))
  }
}
