// The browser/bundler entry's own parts (tsconfig.web.json): `init`, and an
// interface-blockstore (blockstore-core's MemoryBlockstore, as Helia's
// blockstore) behind the adapter.

import { init, Replica, blockstoreAdapter } from 'merkle-clock-wasm'
import { MemoryBlockstore } from 'blockstore-core/memory'

await init()
await init(new URL('/pkg/web/merkle_clock_wasm_bg.wasm', 'https://example.org'))
await init(new Uint8Array(8))

const genesis = Replica.genesis({ app: 'todo' })
const replica = await Replica.openOrCreate(genesis, blockstoreAdapter(new MemoryBlockstore(), { meta: new Map() }))
await replica.append({ item: 'milk' })
