// The JS package (wasm/, built) syncing with a native node over libp2p
// streams: a JS replica and its `SyncDriver` on a js-libp2p node speak the
// native node's sync protocol (`/merkle-clock/sync/2`, libp2p/src/codec.rs:
// one request and one response per stream, each a frame) to `mclock serve`,
// and the two end with the same heads and order. Run with the Node 22 this
// package pins, after `bash wasm/build.sh`, `npm ci` in wasm/ and here, and
// `cargo build -p mclock` (wasm/ci.sh does all of it):
//
//   node_modules/node/bin/node --test sync.test.mjs

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { createInterface } from 'node:readline'
import path from 'node:path'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import { Replica, SyncDriver } from '../../wasm/js/node.js'
import { cargoBuilt } from '../../wasm/test/helpers.mjs'

const SYNC_PROTOCOL = '/merkle-clock/sync/2'
const VERSION = 2
const KIND_SYNC = 0
const STATUS_MESSAGE = 0
const STATUS_DONE = 1

/** A frame: a 4-byte big-endian length, then the bytes. */
const frame = (parts) => {
  const length = parts.reduce((n, p) => n + p.length, 0)
  const out = new Uint8Array(4 + length)
  new DataView(out.buffer).setUint32(0, length)
  let at = 4
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

/** A sync request: version, kind, the stream's CID (u16 length first), the message. */
const syncRequest = (stream, message) => {
  const cid = CID.parse(stream).bytes
  return frame([new Uint8Array([VERSION, KIND_SYNC, cid.length >> 8, cid.length & 0xff]), cid, message])
}

/** Reads one frame from a libp2p stream (an async iterable of chunks). */
const readFrame = async (stream) => {
  let buffered = new Uint8Array(0)
  for await (const chunk of stream) {
    const bytes = chunk.subarray()
    const joined = new Uint8Array(buffered.length + bytes.length)
    joined.set(buffered)
    joined.set(bytes, buffered.length)
    buffered = joined
    if (buffered.length >= 4) {
      const length = new DataView(buffered.buffer, buffered.byteOffset).getUint32(0)
      if (buffered.length >= 4 + length) return buffered.subarray(4, 4 + length)
    }
  }
  throw new Error(`the stream ended inside a frame (${buffered.length} bytes)`)
}

/** Runs `mclock serve` on a store; resolves to its libp2p address once printed. */
const serve = (mclock, cwd) => {
  const child = spawn(mclock, ['--store', 'a', 'serve'], { cwd, stdio: ['ignore', 'pipe', 'inherit'] })
  const lines = createInterface({ input: child.stdout })
  const address = new Promise((resolve, reject) => {
    lines.once('line', (line) => line.startsWith('libp2p ') ? resolve(line.slice(7)) : reject(new Error(line)))
    child.once('exit', (code) => reject(new Error(`mclock serve exited (${code})`)))
  })
  const stopped = new Promise((resolve) => child.once('exit', resolve))
  return { address, stop: () => { child.kill('SIGTERM'); return stopped } }
}

test('a JS replica syncs with `mclock serve` over libp2p streams: same heads, same order', async () => {
  const mclock = cargoBuilt(['-p', 'mclock'], 'debug/mclock')
  const dir = mkdtempSync(path.join(tmpdir(), 'mclock-js-sync-'))
  const cli = (...args) => execFileSync(mclock, ['--store', 'a', ...args], { cwd: dir, encoding: 'utf8' }).trim()
  let node
  let served
  try {
    // The native store: a genesis the JS side makes the same block of (the
    // CLI's JSON string is a DAG-CBOR text, as a JS string is).
    cli('init', '--genesis', '"over libp2p"')
    for (let i = 0; i < 5; i++) cli('append', `{"native": ${i}}`)
    const js = await Replica.create(Replica.genesis('over libp2p'))
    for (let i = 0; i < 3; i++) await js.append({ js: i })
    served = serve(mclock, dir)
    const address = multiaddr(await served.address)

    // The JS side: a libp2p node that sends its driver's messages as
    // requests and gives it the replies that come back in the responses. (It
    // is on no gossip topic, so the native node speaks to it only in those
    // responses and never opens a request of its own.)
    // The driver's clock is the test's: a round of ticks is 100 ms of it, so
    // its timeouts run without waiting (the native node keeps its own).
    const driver = new SyncDriver(js, { timeoutMs: 2000, seed: 5 })
    let clock = 0
    node = await createLibp2p({
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify() }
    })
    const send = async (message) => {
      // A message out, and the replies back and forth until one side is done.
      while (message) {
        const stream = await node.dialProtocol(address, SYNC_PROTOCOL)
        stream.send(syncRequest(js.streamId, message))
        const response = await readFrame(stream)
        await stream.close()
        assert.equal(response[0], VERSION)
        assert.ok(response[1] === STATUS_MESSAGE || response[1] === STATUS_DONE, `status ${response[1]}`)
        if (response[1] === STATUS_DONE) return
        message = (await driver.receive('native', response.subarray(2), clock)).reply
      }
    }
    driver.connect('native', clock)
    // Rounds until the JS replica holds both histories and the driver is
    // quiet: at most 600 (a minute of the driver's clock; one is enough
    // when nothing is lost).
    let rounds = 0
    while (!(js.length === 9 && js.heads().length === 2 && driver.settled('native'))) {
      assert.ok(rounds++ < 600, `not synced in 600 rounds: ${js.length} events, ${js.heads().length} heads`)
      clock += 100
      for (const { peer, message } of (await driver.tick(clock)).messages) if (peer === 'native') await send(message)
    }

    // The native store, read after the node stops: the same clock.
    await served.stop()
    served = undefined
    assert.deepEqual(cli('heads').split('\n').sort(), js.heads().slice().sort(), 'the same heads')
    const order = cli('log', '--json').split('\n').map((line) => JSON.parse(line).cid)
    assert.deepEqual(order, js.order(), 'the same total order')
  } finally {
    if (served) await served.stop()
    if (node) await node.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})
