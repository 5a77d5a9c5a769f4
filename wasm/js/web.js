// merkle-clock for browsers (an ES module). Call `await init()` once before
// anything else; it fetches `merkle_clock_wasm_bg.wasm` next to the generated
// module (or from the URL / bytes / `WebAssembly.Module` you pass).
// See wasm/README.md.
import initWasm, * as generated from '../pkg/web/merkle_clock_wasm.js'
import { CID } from 'multiformats/cid'
import { install } from './api.js'

install(generated)

export { Replica, SyncDriver, cidOf, publicKey, setCidFactory } from '../pkg/web/merkle_clock_wasm.js'
export { generateSecretKey } from './api.js'
export { blockstoreAdapter } from './blockstore.js'

/** @param {string | URL | Request | BufferSource | WebAssembly.Module} [wasm] */
export async function init (wasm) {
  await initWasm(wasm === undefined ? undefined : { module_or_path: wasm })
  // Links in payloads come back as multiformats CIDs.
  generated.setCidFactory((bytes) => CID.decode(bytes))
}
