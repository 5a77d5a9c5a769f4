// merkle-clock for Node.js (>= 20). See wasm/README.md.
import { createRequire } from 'node:module'
import { CID } from 'multiformats/cid'
import { install } from './api.js'

const require = createRequire(import.meta.url)
const wasm = require('../pkg/node/merkle_clock_wasm.js')

install(wasm)
// Links in payloads come back as multiformats CIDs.
wasm.setCidFactory((bytes) => CID.decode(bytes))

export const { Replica, SyncDriver, cidOf, publicKey, setCidFactory } = wasm
export { generateSecretKey } from './api.js'
export { blockstoreAdapter } from './blockstore.js'
