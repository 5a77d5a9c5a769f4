//! Head announcements: what a node publishes on a stream's gossipsub topic.
//!
//! ```text
//! announcement = version:u8 (2)
//!              | stream: u16 len ++ CID bytes
//!              | events:u64          (the sender's event count, genesis included)
//!              | head_count:u32      (all the sender's heads)
//!              | heads_digest:[32]   (BLAKE3 of the sorted heads' CID bytes, concatenated)
//!              | listed:u16 | listed × (u16 len ++ CID bytes)
//!              | blocks:u16 | blocks × (u32 len ++ block bytes)
//! ```
//!
//! At most a configured number of heads are listed; the digest of all of them
//! lets a receiver tell, even from a truncated list, whether its heads differ.
//! The blocks are what a [`Broadcaster`](merkle_clock::sync::transport::Broadcaster)
//! chose to push along (the node's own announcements carry none); the whole
//! announcement must fit in one gossip message.

use libp2p::gossipsub::IdentTopic;
use merkle_clock::Cid;

use crate::wire::{Reader, WireError, put_cid};

const VERSION: u8 = 2;

/// The gossipsub topic of a stream: `merkle-clock/2/<genesis CID>` (the
/// number is the announcement format's version).
pub fn topic(stream: &Cid) -> IdentTopic {
    IdentTopic::new(format!("merkle-clock/2/{stream}"))
}

/// BLAKE3 of the heads' CID bytes, in the order given (callers sort them).
pub fn heads_digest(heads: &[Cid]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    for c in heads {
        h.update(&c.to_bytes());
    }
    *h.finalize().as_bytes()
}

/// A node's heads for one stream, as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// The stream.
    pub stream: Cid,
    /// The sender's number of events.
    pub events: u64,
    /// The sender's number of heads.
    pub head_count: u32,
    /// [`heads_digest`] of all the sender's heads.
    pub heads_digest: [u8; 32],
    /// The heads listed (all of them unless more than the sender's cap).
    pub heads: Vec<Cid>,
    /// Event blocks pushed along (bytes only: hash them before use).
    pub blocks: Vec<Vec<u8>>,
}

/// Why an announcement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad announcement: {0}")]
pub struct BadAnnouncement(pub &'static str);

impl Announcement {
    /// The announcement of `heads` (sorted), listing at most `max_listed`.
    pub fn new(stream: Cid, events: u64, heads: &[Cid], max_listed: usize) -> Self {
        Announcement {
            stream,
            events,
            head_count: u32::try_from(heads.len()).unwrap_or(u32::MAX),
            heads_digest: heads_digest(heads),
            heads: heads.iter().take(max_listed.min(u16::MAX as usize)).copied().collect(),
            blocks: Vec::new(),
        }
    }

    /// Whether every head of the sender is listed.
    pub fn is_complete(&self) -> bool {
        self.heads.len() == self.head_count as usize
    }

    /// Encodes the announcement.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(80 + 40 * self.heads.len());
        out.push(VERSION);
        put_cid(&mut out, &self.stream);
        out.extend_from_slice(&self.events.to_be_bytes());
        out.extend_from_slice(&self.head_count.to_be_bytes());
        out.extend_from_slice(&self.heads_digest);
        out.extend_from_slice(&(self.heads.len() as u16).to_be_bytes());
        for h in &self.heads {
            put_cid(&mut out, h);
        }
        let blocks = &self.blocks[..self.blocks.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(blocks.len() as u16).to_be_bytes());
        for b in blocks {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        }
        out
    }

    /// Decodes an announcement; any deviation from the format is an error.
    ///
    /// # Errors
    /// [`BadAnnouncement`] naming what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Self, BadAnnouncement> {
        let mut r = Reader(bytes);
        if r.take(1, "version")? != [VERSION] {
            return Err(BadAnnouncement("unknown version"));
        }
        let stream = r.cid()?;
        let events = u64::from_be_bytes(r.array("event count")?);
        let head_count = u32::from_be_bytes(r.array("head count")?);
        let heads_digest: [u8; 32] = r.array("heads digest")?;
        let listed = r.u16("listed heads")?;
        if listed > head_count as usize {
            return Err(BadAnnouncement("more heads listed than counted"));
        }
        let mut heads = Vec::with_capacity(listed.min(r.0.len() / 4));
        for _ in 0..listed {
            heads.push(r.cid()?);
        }
        let count = r.u16("block count")?;
        let mut blocks = Vec::with_capacity(count.min(r.0.len() / 4));
        for _ in 0..count {
            let len = r.u32("block length")?;
            blocks.push(r.take(len, "block")?.to_vec());
        }
        r.end()?;
        Ok(Announcement { stream, events, head_count, heads_digest, heads, blocks })
    }
}

impl From<WireError> for BadAnnouncement {
    fn from(e: WireError) -> Self {
        BadAnnouncement(e.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use merkle_clock::Event;

    fn cids(n: usize) -> Vec<Cid> {
        let mut v: Vec<Cid> = (0..n).map(|i| *Event::genesis(i as u64).encode().unwrap().cid()).collect();
        v.sort();
        v
    }

    #[test]
    fn round_trips() {
        let heads = cids(5);
        for max in [0, 2, 5, 10] {
            let a = Announcement::new(heads[0], 42, &heads, max);
            assert_eq!(a.is_complete(), max >= 5);
            assert_eq!(Announcement::decode(&a.encode()).unwrap(), a);
        }
        let mut a = Announcement::new(heads[0], 42, &heads, 10);
        a.blocks = vec![vec![1, 2, 3], Vec::new(), vec![7; 300]];
        assert_eq!(Announcement::decode(&a.encode()).unwrap(), a);
    }

    #[test]
    fn garbage_is_refused() {
        let heads = cids(3);
        let mut good = Announcement::new(heads[0], 1, &heads, 10);
        good.blocks = vec![vec![5; 20]];
        let good = good.encode();
        for cut in 0..good.len() {
            assert!(Announcement::decode(&good[..cut]).is_err());
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(Announcement::decode(&trailing).is_err());
        let mut flipped = good;
        flipped[0] = 9;
        assert!(Announcement::decode(&flipped).is_err());
        assert!(Announcement::decode(&[]).is_err());
    }
}
