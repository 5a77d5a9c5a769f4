// The Rust store contract suite (merkle_clock::store::contract), rule by rule,
// against the replica's JS-backed store, run inside wasm (pkg/testing, built
// by build.sh with the crate's `testing` feature).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { blockstoreAdapter } from '../js/node.js'

const require = createRequire(import.meta.url)
const { storeContractRules, storeContractRule } = require('../pkg/testing/merkle_clock_wasm.js')

/** An async string-keyed store, as an IndexedDB wrapper would be. */
const asyncMeta = () => {
  const records = new Map()
  return { get: async (key) => records.get(key), put: async (key, bytes) => { records.set(key, bytes) } }
}

// Each a fresh, empty store.
const stores = {
  'interface-blockstore, meta in a Map': () => blockstoreAdapter(new MemoryBlockstore()),
  'interface-blockstore, meta in an async store': () => blockstoreAdapter(new MemoryBlockstore(), { meta: asyncMeta() }),
  'bare adapter, heads in wasm memory': () => {
    const { get, put, has } = blockstoreAdapter(new MemoryBlockstore())
    return { get, put, has }
  }
}

const rules = storeContractRules()

test('the contract has its ten rules', () => {
  assert.equal(rules.length, 10)
})

for (const [name, make] of Object.entries(stores)) {
  for (const rule of rules) {
    test(`store contract: ${rule} (${name})`, async () => {
      await storeContractRule(rule, make())
    })
  }
}

test('a rule that does not exist is an error, not a pass', async () => {
  await assert.rejects(storeContractRule('no_such_rule', stores['interface-blockstore, meta in a Map']()), (e) => e.code === 'contract')
})
