// The benchmarks' workload, shared by side_by_side.mjs and
// append_breakdown.mjs: the event data of benches/peers/pail_clock.mjs.

export const PAYLOAD_BYTES = 128

/** The same event data as pail_clock.mjs: `{payload}`, 128 bytes from an LCG seeded by i. */
export const eventData = (i) => {
  const payload = new Uint8Array(PAYLOAD_BYTES)
  let x = (i * 2654435761 + 1) >>> 0
  for (let j = 0; j < PAYLOAD_BYTES; j++) {
    x = (x * 1103515245 + 12345) >>> 0
    payload[j] = x >>> 24
  }
  return { payload }
}
