// What the Helia scripts need to read our blocks: a BLAKE3 hasher for
// Helia's `hashers`, the check that bytes hash to the CID they were asked
// by, Helia's blockstore `get` as one Uint8Array, and a Helia node over
// Bitswap on 127.0.0.1.

import { createHeliaLight } from 'helia'
import { withLibp2pLight } from '@helia/libp2p'
import { withBitswap } from '@helia/bitswap'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { from as hasherFrom } from 'multiformats/hashes/hasher'
import { equals } from 'multiformats/bytes'
import { blake3 } from '@noble/hashes/blake3.js'

export const DAG_CBOR = 0x71
export const BLAKE3 = 0x1e

// Helia ships sha2 and identity only: without this, fetching one of our
// blocks fails with UnknownHashAlgorithmError 0x1e.
export const blake3Hasher = hasherFrom({ name: 'blake3', code: BLAKE3, encode: (input) => blake3(input) })

/** Whether the CID is one of ours: v1, DAG-CBOR, BLAKE3. */
export function isEventCid (cid) {
  return cid.version === 1 && cid.code === DAG_CBOR && cid.multihash.code === BLAKE3
}

/** Whether the bytes hash to the CID (recomputed here, not by our code). */
export async function hashesTo (cid, bytes) {
  const again = CID.create(1, DAG_CBOR, await blake3Hasher.digest(bytes))
  return equals(again.bytes, cid.bytes)
}

/** Helia's blockstore `get`: bytes, or chunks of them, depending on the version. */
export async function heliaGet (helia, cid, timeoutMs) {
  const got = helia.blockstore.get(cid, { signal: AbortSignal.timeout(timeoutMs) })
  if (got != null && typeof got[Symbol.asyncIterator] === 'function') {
    const chunks = []
    for await (const c of got) chunks.push(c)
    const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0))
    let at = 0
    for (const c of chunks) { out.set(c, at); at += c.length }
    return out
  }
  return await got
}

/**
 * A started Helia node with Bitswap, knowing BLAKE3 and DAG-CBOR, over TCP
 * (Noise, Yamux, identify) on the `listen` addresses (none: dial only). No
 * bootstrap, no DHT: nothing leaves the machine.
 */
export async function startHelia (listen) {
  const helia = withBitswap(withLibp2pLight(createHeliaLight({
    hashers: [blake3Hasher],
    codecs: [dagCbor]
  }), {
    addresses: { listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() }
  }))
  await helia.start()
  return helia
}
