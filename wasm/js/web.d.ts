// Types of `merkle-clock-wasm` in a browser or bundler (js/web.js): the same
// API as index.d.ts, once `init()` has loaded the WebAssembly module.

export * from './index.js'

/**
 * Loads the WebAssembly module; call it once, before anything else.
 * Without an argument it fetches `merkle_clock_wasm_bg.wasm` next to the
 * generated module; else pass its URL, its bytes, or a compiled
 * `WebAssembly.Module`.
 *
 * ```ts
 * import { init, Replica } from 'merkle-clock-wasm'
 * await init()
 * const replica = await Replica.create(Replica.genesis({ app: 'todo' }))
 * ```
 */
export function init (wasm?: string | URL | Request | BufferSource | WebAssembly.Module): Promise<void>
