// The parts of the JS API written in JS, installed on the wasm-bindgen
// classes by the entry points (node.js, web.js): the methods that take
// payloads encode them here (payload.js) and hand the wasm module one byte
// string, which is much faster than reading JS objects from inside wasm.

import { encodePayload, encodePayloads, merkleClockError } from './payload.js'

/** A promise rejected with what `f` throws, else `f`'s promise. */
const guarded = (f) => {
  try {
    return f()
  } catch (e) {
    return Promise.reject(e)
  }
}

/** @param {{ Replica: any }} wasm the generated module */
export function install ({ Replica }) {
  /** The genesis block (Uint8Array) of a new stream with this payload. */
  Replica.genesis = (payload) => Replica.genesisEncoded(encodePayload(payload))

  /** Appends an event with this payload; resolves to its CID string. */
  Replica.prototype.append = function append (payload) {
    return guarded(() => this.appendEncoded(encodePayload(payload)))
  }

  /** Appends one event per payload, each on the previous, in one commit. */
  Replica.prototype.appendMany = function appendMany (payloads) {
    return guarded(() => {
      if (!Array.isArray(payloads)) throw merkleClockError('invalid_argument', 'appendMany takes an array of payloads')
      return this.appendManyEncoded(encodePayloads(payloads))
    })
  }
}
