// The parts of the JS API written in JS, installed on the wasm-bindgen
// classes by the entry points (node.js, web.js): the methods that take
// payloads encode them here (payload.js) and hand the wasm module one byte
// string, which is much faster than reading JS objects from inside wasm.

import { StagedWriter, encodePayload, encodePayloads, merkleClockError } from './payload.js'

/** A promise rejected with what `f` throws, else `f`'s promise. */
const guarded = (f) => {
  try {
    return f()
  } catch (e) {
    return Promise.reject(e)
  }
}

/**
 * A new secret key: 32 random bytes (an Ed25519 seed, as @noble/curves'
 * `ed25519.utils.randomSecretKey()` makes), from `crypto.getRandomValues`.
 * Keep it secret; `publicKey(secretKey)` is the author it signs as.
 * @returns {Uint8Array}
 */
export const generateSecretKey = () => crypto.getRandomValues(new Uint8Array(32))

/**
 * `append(payload)` over a module's staging buffer (wasm/src/staging.rs), for
 * a class with `appendStaged(length)`: the payload is encoded into wasm
 * memory and the append runs in the same call when it can (the in-memory
 * store), resolving to the CID text read back from there; else it queues
 * (or failed) and its promise is `takeParked()`'s. Also what
 * `bench/side_by_side.mjs --floor` drives the floor of an append with.
 * @param {any} wasm the generated module
 */
export function stagedAppend (wasm) {
  /** The staging buffer's writer, made at the first append (after a browser's init). */
  let staged = null
  return function append (payload) {
    // As `guarded`, without a closure per call: this is the hot path.
    try {
      const w = staged ?? (staged = new StagedWriter(wasm))
      const n = this.appendStaged(w.stage(payload))
      return n === 0 ? wasm.takeParked() : Promise.resolve(w.cidText(n))
    } catch (e) {
      return Promise.reject(e)
    }
  }
}

/** @param {any} wasm the generated module */
export function install (wasm) {
  const { Replica } = wasm

  /**
   * The genesis block (Uint8Array) of a new stream with this payload. With
   * `admins` (public keys: 32 bytes or 64 hex digits), only events signed by
   * the stream's members are taken: these admins, and whom they grant.
   */
  Replica.genesis = (payload, { admins } = {}) => Replica.genesisEncoded(encodePayload(payload), admins)

  /**
   * A signed event built by hand, as bytes (for tools and tests; replicas
   * build theirs on their heads): `{stream, height, parents, payload}`.
   */
  Replica.signedEvent = ({ stream, height, parents, payload }, secretKey) =>
    Replica.signedEventEncoded(stream, height, parents, encodePayload(payload), secretKey)

  /** Appends an event with this payload; resolves to its CID string. */
  Replica.prototype.append = stagedAppend(wasm)

  /** Appends one event per payload, each on the previous, in one commit. */
  Replica.prototype.appendMany = function appendMany (payloads) {
    return guarded(() => {
      if (!Array.isArray(payloads)) throw merkleClockError('invalid_argument', 'appendMany takes an array of payloads')
      const { bytes, ends } = encodePayloads(payloads)
      return this.appendManyEncoded(bytes, ends)
    })
  }
}
