//! The keydir: where each event block the log holds inline is, by digest,
//! so that a lookup by CID costs one hash probe and one B-tree read of the
//! log entry (see the store's docs).

use std::collections::HashMap;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::block::{Digest, KeyedState};
use crate::store::{Slot, StoreError, table_hash};

/// The keydir: where each inline-logged event block is, by digest. An arena
/// of entries in the order first logged, and a hash table of arena indices
/// with a keyed 32-bit hash of the digest beside each, as in the memory store.
pub(super) struct Keydir {
    hasher: KeyedState,
    index: HashTable<Slot>,
    pub(super) entries: Vec<Located>,
    /// Stream keys (CID bytes) by stream index.
    streams: Vec<Box<[u8]>>,
    stream_ids: HashMap<Box<[u8]>, u32, KeyedState>,
}

/// A logged event block: 44 bytes.
pub(super) struct Located {
    digest: Digest,
    stream: u32,
    /// The position, big-endian (as in the log key).
    pos: [u8; 8],
}

fn keydir_full() -> StoreError {
    StoreError::backend("the keydir holds at most 2^32 - 1 logged blocks")
}

impl Keydir {
    pub(super) fn with_capacity(n: usize) -> Self {
        let hasher = KeyedState::default();
        let mut index = HashTable::new();
        index.reserve(n, |s: &Slot| table_hash(s.hash));
        Keydir {
            stream_ids: HashMap::with_hasher(hasher.clone()),
            hasher,
            index,
            entries: Vec::with_capacity(n),
            streams: Vec::new(),
        }
    }

    fn hash(&self, digest: &Digest) -> u32 {
        let h = self.hasher.hash_one(digest);
        (h ^ (h >> 32)) as u32
    }

    pub(super) fn find(&self, digest: &Digest) -> Option<&Located> {
        let hash = self.hash(digest);
        self.index
            .find(table_hash(hash), |s| s.hash == hash && self.entries[s.id as usize].digest == *digest)
            .map(|s| &self.entries[s.id as usize])
    }

    pub(super) fn stream_id(&mut self, skey: &[u8]) -> Result<u32, StoreError> {
        if let Some(&id) = self.stream_ids.get(skey) {
            return Ok(id);
        }
        let id = u32::try_from(self.streams.len()).map_err(|_| keydir_full())?;
        self.streams.push(skey.into());
        self.stream_ids.insert(skey.into(), id);
        Ok(id)
    }

    /// Records where a block is logged, unless it is logged already (the
    /// first location stays; every copy holds the same bytes).
    pub(super) fn insert(&mut self, digest: &Digest, stream: u32, pos: u64) -> Result<(), StoreError> {
        let hash = self.hash(digest);
        let id = u32::try_from(self.entries.len()).ok().filter(|&id| id < u32::MAX).ok_or_else(keydir_full)?;
        let entries = &self.entries;
        match self.index.entry(
            table_hash(hash),
            |s| s.hash == hash && entries[s.id as usize].digest == *digest,
            |s| table_hash(s.hash),
        ) {
            hashbrown::hash_table::Entry::Occupied(_) => return Ok(()),
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(Slot { id, hash });
            }
        }
        self.entries.push(Located { digest: *digest, stream, pos: pos.to_be_bytes() });
        Ok(())
    }

    pub(super) fn add_all(&mut self, skey: &[u8], logged: &[(Digest, u64)]) -> Result<(), StoreError> {
        if logged.is_empty() {
            return Ok(());
        }
        let stream = self.stream_id(skey)?;
        self.entries.reserve(logged.len());
        for (digest, pos) in logged {
            self.insert(digest, stream, *pos)?;
        }
        Ok(())
    }

    pub(super) fn log_key(&self, at: &Located) -> Vec<u8> {
        let skey = &self.streams[at.stream as usize];
        let mut k = Vec::with_capacity(skey.len() + 8);
        k.extend_from_slice(skey);
        k.extend_from_slice(&at.pos);
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::DIGEST_LEN;

    /// The figures the type's docs give.
    #[test]
    fn keydir_bytes_per_entry() {
        assert_eq!(std::mem::size_of::<Located>(), 44);
        for n in [1_000usize, 100_000, 1_000_000] {
            let k = Keydir::with_capacity(n);
            let bytes = k.entries.capacity() * std::mem::size_of::<Located>() + k.index.allocation_size();
            let per = bytes as f64 / n as f64;
            assert!((54.0..66.0).contains(&per), "{n} entries: {per:.1} bytes each");
        }
    }

    #[test]
    fn keydir_keeps_the_first_location() {
        let mut k = Keydir::with_capacity(0);
        let s = k.stream_id(b"stream a").unwrap();
        let t = k.stream_id(b"stream b").unwrap();
        assert_eq!(k.stream_id(b"stream a").unwrap(), s);
        for i in 0..1000u32 {
            let mut d = [0u8; DIGEST_LEN];
            d[..4].copy_from_slice(&i.to_le_bytes());
            k.insert(&d, s, u64::from(i)).unwrap();
            k.insert(&d, t, 5).unwrap();
        }
        assert_eq!(k.entries.len(), 1000);
        let mut d = [0u8; DIGEST_LEN];
        d[..4].copy_from_slice(&17u32.to_le_bytes());
        let at = k.find(&d).unwrap();
        assert_eq!(k.log_key(at), [b"stream a".as_slice(), &17u64.to_be_bytes()].concat());
        assert!(k.find(&[9u8; DIGEST_LEN]).is_none());
    }
}
