//! The fetching side: [`BitswapFetcher`], and the hand-over of blocks and
//! presences from the stream readers to the fetches waiting for them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use libp2p::PeerId;
use merkle_clock::sync::transport::{Fetcher, TransportError};
use merkle_clock::{Block, Cid};
use tokio::sync::mpsc;

use super::message::{self, Entry, Message, PresenceType, WantType, Wantlist};
use super::{Arrival, BitswapStats, Shared, bump};

/// The core's [`Fetcher`] over Bitswap, from
/// [`NodeHandle::bitswap_fetcher`](crate::NodeHandle::bitswap_fetcher):
/// blocks by CID from any connected peer that speaks Bitswap (a
/// merkle-clock node, Kubo, Helia), verified against their CIDs. See the
/// [module docs](crate::bitswap) for the strategy and its limits.
///
/// What no peer sent in time is `None`. Errors: [`TransportError::Closed`]
/// once the node has stopped.
#[derive(Clone)]
pub struct BitswapFetcher {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for BitswapFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BitswapFetcher").field("peers", &self.shared.peers().len()).finish()
    }
}

impl BitswapFetcher {
    /// The connected peers that speak Bitswap (as identify reported).
    pub fn peers(&self) -> Vec<PeerId> {
        self.shared.peers().iter().copied().collect()
    }

    /// Waits until at least `n` connected peers speak Bitswap, at most
    /// `limit`; whether they do.
    pub async fn wait_for_peers(&self, n: usize, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.shared.peers().len() >= n {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The node's Bitswap counters.
    pub fn stats(&self) -> BitswapStats {
        self.shared.stats()
    }

    /// Sends one wantlist update to every peer; the peers that could not be
    /// reached are dropped from `peers`.
    async fn send_wants(&self, peers: &mut Vec<PeerId>, want: &[Cid], cancel: &[Cid]) {
        let entry = |cid: &Cid, cancel: bool| Entry {
            block: cid.to_bytes(),
            priority: 1,
            cancel,
            want_type: WantType::Block as i32,
            send_dont_have: !cancel,
        };
        let entries = want.iter().map(|c| entry(c, false)).chain(cancel.iter().map(|c| entry(c, true))).collect();
        let frame = Message { wantlist: Some(Wantlist { entries, full: false }), ..Message::default() }.to_frame();
        let sent = futures::future::join_all(peers.iter().map(|p| self.shared.send(*p, &frame))).await;
        let mut ok = sent.into_iter().map(|r| r.is_ok());
        peers.retain(|_| ok.next().unwrap_or(false));
    }
}

/// Removes a fetch's registrations when it ends (or is dropped midway).
struct Registration<'a> {
    shared: &'a Shared,
    id: u64,
    cids: Vec<Cid>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut wants = self.shared.wants();
        for cid in &self.cids {
            if let Some(waiters) = wants.get_mut(cid) {
                waiters.retain(|(id, _)| *id != self.id);
                if waiters.is_empty() {
                    wants.remove(cid);
                }
            }
        }
    }
}

#[async_trait]
impl Fetcher for BitswapFetcher {
    async fn fetch(&self, cids: &[Cid]) -> Result<Vec<Option<Block>>, TransportError> {
        if self.shared.stopped.load(Ordering::Relaxed) {
            return Err(TransportError::Closed);
        }
        let config = &self.shared.config;
        let mut out: Vec<Option<Block>> = vec![None; cids.len()];
        let mut peers: Vec<PeerId> = self.shared.peers().iter().copied().take(config.fetch_peers.max(1)).collect();
        if cids.is_empty() || peers.is_empty() {
            return Ok(out);
        }
        // Where each CID goes in the answer; each is asked once.
        let mut slots: HashMap<Cid, Vec<usize>> = HashMap::new();
        let mut todo = VecDeque::new();
        for (i, cid) in cids.iter().enumerate() {
            slots.entry(*cid).or_insert_with(|| {
                todo.push_back(*cid);
                Vec::new()
            });
            slots.get_mut(cid).expect("inserted").push(i);
        }
        let id = self.shared.next_fetch.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel();
        {
            let mut wants = self.shared.wants();
            for cid in slots.keys() {
                wants.entry(*cid).or_default().push((id, tx.clone()));
            }
        }
        drop(tx);
        let _registration = Registration { shared: &self.shared, id, cids: slots.keys().copied().collect() };
        // Outstanding CIDs and the peers that said DONT_HAVE for each.
        let mut asked: HashMap<Cid, HashSet<PeerId>> = HashMap::new();
        let mut received: Vec<Cid> = Vec::new();
        let window = config.fetch_window.max(1);
        loop {
            if asked.len() <= window / 2 && !todo.is_empty() {
                let n = (window - asked.len()).min(todo.len());
                let want: Vec<Cid> = todo.drain(..n).collect();
                asked.extend(want.iter().map(|c| (*c, HashSet::new())));
                // Blocks already here are cancelled with the next wants: the
                // other peers asked do not send them too, and no peer's
                // ledger of our wants grows beyond the window.
                self.send_wants(&mut peers, &want, &std::mem::take(&mut received)).await;
            }
            if asked.is_empty() || peers.is_empty() {
                break;
            }
            let arrival = match tokio::time::timeout(config.fetch_timeout, rx.recv()).await {
                Ok(Some(a)) => a,
                Ok(None) | Err(_) => break,
            };
            match arrival {
                Arrival::Block(block) => {
                    let cid = *block.cid();
                    if asked.remove(&cid).is_some() {
                        for &i in &slots[&cid] {
                            out[i] = Some(block.clone());
                        }
                        // Peers keep a want after answering it (Helia does, in a
                        // ledger of 1,024): cancel it, at every peer asked.
                        received.push(cid);
                    }
                }
                Arrival::DontHave(peer, cid) => {
                    if let Some(said) = asked.get_mut(&cid) {
                        said.insert(peer);
                        if peers.iter().all(|p| said.contains(p)) {
                            asked.remove(&cid);
                        }
                    }
                }
            }
        }
        // What is still asked for (a time-out), no longer.
        received.extend(asked.keys().copied());
        if !received.is_empty() && !peers.is_empty() {
            self.send_wants(&mut peers, &[], &received).await;
        }
        Ok(out)
    }
}

/// Hands what a message carries to the fetches waiting for it: each block
/// only after its bytes hashed to a CID some fetch wants.
pub(crate) fn on_message(shared: &Shared, peer: PeerId, message: &Message) {
    let counters = &shared.counters;
    bump(&counters.blocks_unwanted, message.blocks.len() as u64);
    for payload in &message.payload {
        let block =
            (payload.data.len() <= shared.config.max_block_bytes).then(|| message::block_of(payload).ok()).flatten();
        let waiters = block.as_ref().and_then(|b| shared.wants().get(b.cid()).cloned());
        match (block, waiters) {
            (Some(block), Some(waiters)) => {
                bump(&counters.blocks_received, 1);
                for (_, tx) in waiters {
                    let _ = tx.send(Arrival::Block(block.clone()));
                }
            }
            _ => bump(&counters.blocks_unwanted, 1),
        }
    }
    for presence in &message.block_presences {
        bump(&counters.presences_received, 1);
        let Ok(cid) = message::cid_from_bytes(&presence.cid) else { continue };
        // Fetches ask want-block: a HAVE tells them nothing they can use.
        if presence.r#type != PresenceType::DontHave as i32 {
            continue;
        }
        let Some(waiters) = shared.wants().get(&cid).cloned() else { continue };
        for (_, tx) in waiters {
            let _ = tx.send(Arrival::DontHave(peer, cid));
        }
    }
}
