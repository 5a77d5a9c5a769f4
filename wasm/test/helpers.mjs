// Shared by the node tests (and tests/helia): an in-process lossy channel
// between two drivers, run on a simulated clock (no sleeping, no real
// timers), and native binaries built with cargo.

import { execFileSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

/**
 * Builds with `cargo build --quiet ARGS` at the repository's root (quick once
 * built) and returns the path of `artifact` in the target directory, e.g.
 * `cargoBuilt(['-p', 'mclock'], 'debug/mclock')`.
 */
export function cargoBuilt (args, artifact) {
  execFileSync('cargo', ['build', '--quiet', ...args], { cwd: root, stdio: 'inherit' })
  const target = process.env.CARGO_TARGET_DIR ? path.resolve(root, process.env.CARGO_TARGET_DIR) : path.join(root, 'target')
  return path.join(target, artifact)
}

/**
 * Runs two drivers for `seconds` simulated seconds, delivering messages in
 * rounds and dropping every `dropEvery`-th one (0: drop none). Returns the
 * number of messages sent and dropped.
 */
export async function syncOverLossyChannel (a, aName, b, bName, { seconds = 30, dropEvery = 0 } = {}) {
  const toB = []
  const toA = []
  let sent = 0
  let dropped = 0
  const deliver = async (driver, from, queue, replies, now) => {
    for (const message of queue.splice(0)) {
      sent++
      if (dropEvery && sent % dropEvery === 0) {
        dropped++
        continue
      }
      const { reply } = await driver.receive(from, message, now)
      if (reply) replies.push(reply)
    }
  }
  for (let s = 0; s < seconds; s++) {
    const now = s * 1000
    for (const m of (await a.tick(now)).messages) if (m.peer === bName) toB.push(m.message)
    for (const m of (await b.tick(now)).messages) if (m.peer === aName) toA.push(m.message)
    while (toB.length || toA.length) {
      await deliver(b, aName, toB, toA, now)
      await deliver(a, bName, toA, toB, now)
    }
  }
  return { sent, dropped }
}

/** A deterministic shuffle (so a failure reproduces). */
export function shuffle (items, seed = 7) {
  const out = items.slice()
  let x = seed
  for (let i = out.length - 1; i > 0; i--) {
    x = (x * 1103515245 + 12345) >>> 0
    const j = x % (i + 1);
    [out[i], out[j]] = [out[j], out[i]]
  }
  return out
}
