// A JS replica (this package, WebAssembly) and a native one (the Rust
// library, `examples/sync_stdio.rs`, a separate process) sync through their
// session drivers over a lossy channel, and end with the same heads and the
// same total order: what the README promises ("a JS replica syncs with a
// native one"). The native binary is built here with cargo (release; quick
// once built).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { Replica, SyncDriver } from '../js/node.js'
import { cargoBuilt, syncOverLossyChannel } from './helpers.mjs'

const hex = (bytes) => Buffer.from(bytes).toString('hex')
const unhex = (text) => new Uint8Array(Buffer.from(text, 'hex'))

/**
 * The native replica behind the same calls as a `SyncDriver` (`tick`,
 * `receive`), so the shared lossy channel drives it; `command` sends one
 * line and resolves to its answer line.
 */
class NativePeer {
  constructor (binary, otherName) {
    this.child = spawn(binary, [], { stdio: ['pipe', 'pipe', 'inherit'] })
    this.otherName = otherName
    this.waiting = []
    createInterface({ input: this.child.stdout }).on('line', (line) => this.waiting.shift()(line))
  }

  command (line) {
    return new Promise((resolve) => {
      this.waiting.push(resolve)
      this.child.stdin.write(line + '\n')
    })
  }

  async ok (line) {
    const answer = await this.command(line)
    assert.match(answer, /^ok\b/, `${line.slice(0, 40)}…: ${answer}`)
    return answer.slice(3)
  }

  async tick (now) {
    const answer = await this.command(`tick ${now}`)
    assert.match(answer, /^messages( [0-9a-f]+)*$/, answer)
    return { messages: answer.split(' ').slice(1).map((m) => ({ peer: this.otherName, message: unhex(m) })) }
  }

  async receive (from, message, now) {
    const answer = await this.command(`receive ${now} ${hex(message)}`)
    assert.match(answer, /^reply (-|[0-9a-f]+)$/, answer)
    return { reply: answer === 'reply -' ? undefined : unhex(answer.slice(6)) }
  }

  async state () {
    const [, heads, order] = (await this.command('state')).split(' ')
    return { heads: heads.split(','), order: order.split(',') }
  }

  close () {
    this.child.stdin.end()
  }
}

test('a JS replica and a native replica sync over a lossy channel: same heads, same order', async () => {
  const native = new NativePeer(cargoBuilt(['--release', '--example', 'sync_stdio'], 'release/examples/sync_stdio'), 'js')
  try {
    // The stream: a genesis made in JS, opened by both.
    const genesis = Replica.genesis({ app: 'interop', made: 'in js' })
    const js = await Replica.create(genesis)
    assert.equal(await native.ok(`create ${hex(genesis)}`), js.streamId, 'the same stream CID on both sides')

    // Both write before they meet: concurrent histories.
    const mine = await js.appendMany(Array.from({ length: 20 }, (_, i) => ({ n: i, from: 'js' })))
    mine.push(await js.append({ last: true, bytes: new Uint8Array([1, 2, 3]) }))
    const theirs = []
    for (const text of ['native one', 'native two', 'native three']) theirs.push(await native.ok(`append ${text}`))

    const driver = new SyncDriver(js, { timeoutMs: 2000, seed: 3 })
    driver.connect('native', 0)
    await native.ok('connect 0')
    const { dropped } = await syncOverLossyChannel(driver, 'js', native, 'native', { seconds: 60, dropEvery: 4 })
    assert.ok(dropped > 0, 'some messages were lost')

    const there = await native.state()
    assert.deepEqual(js.heads().slice().sort(), there.heads, 'the same heads')
    assert.equal(there.heads.length, 2, 'two concurrent heads')
    assert.deepEqual(js.order(), there.order, 'the same total order')
    assert.equal(js.length, 1 + mine.length + theirs.length)
    for (const cid of theirs) assert.ok(js.has(cid), `the JS replica holds ${cid}`)
    assert.equal((await js.get(theirs[1])).payload, 'native two', 'a native event read in JS')
    for (const cid of mine) assert.ok(there.order.includes(cid), `the native replica holds ${cid}`)
    assert.equal(await native.command('settled'), 'settled true')
    assert.ok(driver.settled('native'), 'both quiet')
  } finally {
    native.close()
  }
})
