//! A bench, not API (built only with the `bench-floor` feature, into
//! `wasm/pkg/bench-floor`, never into the package): the floor of a single
//! in-memory append, for `bench/side_by_side.mjs --floor`. `Floor` does the
//! work an append cannot skip and nothing else: the event's bytes (the same
//! bytes the core writes), BLAKE3, the bytes kept in one arena, one table
//! digest -> id, the height and the head, the CID text back through the
//! staging buffer, as `appendStaged` does. It does not check the payload's
//! bytes (the core does: a few per cent of an append), keeps no parents
//! list, order, log or second table, and knows only a linear history.

use hashbrown::HashTable;
use ipld_core::cid::multihash::Multihash;
use wasm_bindgen::prelude::*;

use crate::core::Cid;
use crate::staging;

/// A linear stream's events, appended the cheapest way (see the module).
#[wasm_bindgen]
pub struct Floor {
    /// Every event's bytes, one after the other, and where each starts.
    arena: Vec<u8>,
    starts: Vec<u32>,
    digests: Vec<[u8; 32]>,
    heights: Vec<u32>,
    /// Ids by digest.
    table: HashTable<u32>,
    keys: (u64, u64),
    head: u32,
    /// The event being written.
    event: Vec<u8>,
}

/// The core's keyed digest hash (`KeyedState::hash_digest`): one folded
/// multiply of the digest's first 16 bytes with the keys.
fn digest_hash(d: &[u8; 32], (k0, k1): (u64, u64)) -> u64 {
    let w0 = u64::from_le_bytes(d[0..8].try_into().expect("8 bytes"));
    let w1 = u64::from_le_bytes(d[8..16].try_into().expect("8 bytes"));
    let p = u128::from(w0 ^ k0) * u128::from(w1 ^ k1);
    (p as u64) ^ ((p >> 64) as u64)
}

#[wasm_bindgen]
impl Floor {
    /// A stream holding only a genesis (a made-up digest).
    #[wasm_bindgen(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Floor {
        let genesis = [7u8; 32];
        let keys = (0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344);
        let mut table = HashTable::new();
        table.insert_unique(digest_hash(&genesis, keys), 0, |_| 0);
        Floor {
            arena: Vec::new(),
            starts: vec![0],
            digests: vec![genesis],
            heights: vec![0],
            table,
            keys,
            head: 0,
            event: Vec::with_capacity(512),
        }
    }

    /// Appends an event on the head with the first `len` staged bytes as
    /// its payload; the CID text's length (written into the staging
    /// buffer). As `Replica.appendStaged`: 0 when `len` is beyond the
    /// buffer, with the rejected promise parked for `takeParked`.
    #[wasm_bindgen(js_name = appendStaged)]
    pub fn append_staged(&mut self, len: u32) -> u32 {
        match staging::with_payload(len, |payload| self.append(payload)) {
            Ok(cid) => staging::put_cid(&cid),
            Err(e) => {
                staging::park(js_sys::Promise::reject(&e));
                0
            }
        }
    }

    /// The number of events, the genesis included.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> u32 {
        self.digests.len() as u32
    }
}

impl Floor {
    fn append(&mut self, payload: &[u8]) -> Cid {
        let parent = self.digests[self.head as usize];
        let height = self.heights[self.head as usize] + 1;
        // {"height": h, "parents": [parent], "payload": ...}, canonical.
        let e = &mut self.event;
        e.clear();
        e.extend_from_slice(b"\xa3\x66height");
        match height {
            0..24 => e.push(height as u8),
            24..256 => e.extend_from_slice(&[0x18, height as u8]),
            256..65536 => {
                e.push(0x19);
                e.extend_from_slice(&(height as u16).to_be_bytes());
            }
            _ => {
                e.push(0x1a);
                e.extend_from_slice(&height.to_be_bytes());
            }
        }
        e.extend_from_slice(b"\x67parents\x81\xd8\x2a\x58\x25\x00\x01\x71\x1e\x20");
        e.extend_from_slice(&parent);
        e.extend_from_slice(b"\x67payload");
        e.extend_from_slice(payload);
        let digest: [u8; 32] = *blake3::hash(e).as_bytes();
        self.starts.push(self.arena.len() as u32);
        self.arena.extend_from_slice(e);
        let id = self.digests.len() as u32;
        self.digests.push(digest);
        self.heights.push(height);
        let (digests, keys) = (&self.digests, self.keys);
        self.table.insert_unique(digest_hash(&digest, keys), id, |&i| digest_hash(&digests[i as usize], keys));
        self.head = id;
        Cid::new_v1(0x71, Multihash::<64>::wrap(0x1e, &digest).expect("32 bytes fit a 64-byte multihash"))
    }
}
