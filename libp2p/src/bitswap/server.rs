//! The serving side: the inbound stream readers, and the node task's
//! ledgers (what each peer wants from us) and writers (one per peer).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use libp2p::{PeerId, Stream, StreamProtocol};
use merkle_clock::{Block, Cid, StreamStore};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::debug;

use super::message::{self, BlockPresence, Message, PayloadBlock, PresenceType, WantType, Wantlist, prefix_of};
use super::{BITSWAP_PROTOCOL, BitswapConfig, Counters, InboundWants, Shared, bump, client, read_frame};
use crate::handle::NodeError;
use crate::node::{Node, StreamSlot};

/// Wantlists waiting for the node's task, per reader; a full queue holds
/// the readers back (and so the peers' streams).
const INBOUND_QUEUE: usize = 64;

/// Bytes a presence or a block adds to a message beyond the CID or the data
/// (protobuf keys, lengths, the prefix).
const ITEM_OVERHEAD: usize = 24;

/// Bitswap in the node's task.
pub(crate) struct Server {
    pub(crate) shared: Arc<Shared>,
    inbound: mpsc::Receiver<InboundWants>,
    ledgers: HashMap<PeerId, Ledger>,
    writers: HashMap<PeerId, Writer>,
    /// The replicas' total length when the ledgers were last served: when
    /// it grows, wants we could not answer may be answerable.
    seen_len: usize,
}

/// What a peer wants from us and has not been answered.
#[derive(Default)]
struct Ledger {
    /// Arrival order (may hold CIDs no longer wanted; skipped).
    order: VecDeque<Cid>,
    wants: HashMap<Cid, Want>,
    /// Serving stopped because the peer's writer was full.
    blocked: bool,
}

#[derive(Clone, Copy)]
struct Want {
    block: bool,
    send_dont_have: bool,
}

/// Writes a peer's messages, one stream each, in order.
struct Writer {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    /// Bytes given to the writer and not yet written (or failed).
    queued: Arc<AtomicUsize>,
}

impl Writer {
    fn spawn(peer: PeerId, shared: Arc<Shared>) -> Writer {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let queued = Arc::new(AtomicUsize::new(0));
        let q = Arc::clone(&queued);
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if let Err(e) = shared.send(peer, &frame).await {
                    debug!(%peer, "bitswap: sending a message failed: {e}");
                }
                q.fetch_sub(frame.len(), Ordering::Relaxed);
            }
        });
        Writer { tx, queued }
    }

    fn push(&self, frame: Vec<u8>) {
        self.queued.fetch_add(frame.len(), Ordering::Relaxed);
        if self.tx.send(frame).is_err() {
            self.queued.store(0, Ordering::Relaxed);
        }
    }

    fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

impl Server {
    /// Registers the protocol (so identify lists it) and starts accepting
    /// streams. Runs inside the node's runtime.
    pub(crate) fn start(mut control: libp2p_stream::Control, config: BitswapConfig) -> Result<Server, NodeError> {
        let incoming =
            control.accept(BITSWAP_PROTOCOL).map_err(|e| NodeError::Setup(format!("bitswap protocol: {e}")))?;
        let shared = Arc::new(Shared {
            config,
            control,
            counters: Counters::default(),
            peers: Default::default(),
            wants: Default::default(),
            next_fetch: Default::default(),
            stopped: Default::default(),
        });
        let (to_node, inbound) = mpsc::channel(INBOUND_QUEUE);
        tokio::spawn(accept_loop(incoming, Arc::clone(&shared), to_node));
        Ok(Server { shared, inbound, ledgers: HashMap::new(), writers: HashMap::new(), seen_len: 0 })
    }

    /// The next wantlist from a reader (pending forever once none can come).
    pub(crate) async fn next_wants(&mut self) -> InboundWants {
        match self.inbound.recv().await {
            Some(w) => w,
            None => futures::future::pending().await,
        }
    }

    /// Identify told us what `peer` speaks.
    pub(crate) fn identified(&self, peer: PeerId, protocols: &[StreamProtocol]) {
        if protocols.contains(&BITSWAP_PROTOCOL) {
            self.shared.peers().insert(peer);
        }
    }

    /// The last connection to `peer` closed: forget its wants and stop its writer.
    pub(crate) fn peer_gone(&mut self, peer: &PeerId) {
        self.ledgers.remove(peer);
        self.writers.remove(peer);
        self.shared.peers().remove(peer);
    }

    /// Takes a wantlist into the peer's ledger.
    fn take_wants(&mut self, peer: PeerId, wantlist: Wantlist) {
        let counters = &self.shared.counters;
        let max = self.shared.config.max_outstanding_wants;
        let ledger = self.ledgers.entry(peer).or_default();
        if wantlist.full {
            ledger.order.clear();
            ledger.wants.clear();
        }
        bump(&counters.wants_received, wantlist.entries.len() as u64);
        for entry in wantlist.entries {
            let Ok(cid) = message::cid_from_bytes(&entry.block) else {
                bump(&counters.wants_dropped, 1);
                continue;
            };
            if entry.cancel {
                ledger.wants.remove(&cid);
                continue;
            }
            let want = Want { block: entry.want_type != WantType::Have as i32, send_dont_have: entry.send_dont_have };
            if let Some(w) = ledger.wants.get_mut(&cid) {
                *w = want;
            } else if ledger.wants.len() < max {
                ledger.wants.insert(cid, want);
                ledger.order.push_back(cid);
            } else {
                bump(&counters.wants_dropped, 1);
            }
        }
        // Cancelled CIDs stay in `order` until reached; keep it near the wants' size.
        if ledger.order.len() > 2 * ledger.wants.len() + 64 {
            let mut seen = std::collections::HashSet::new();
            let wants = &ledger.wants;
            ledger.order.retain(|c| wants.contains_key(c) && seen.insert(*c));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
    }
}

impl<S: ?Sized + StreamStore + 'static> Node<S> {
    /// A wantlist arrived: record it and answer what can be answered.
    pub(crate) async fn on_bitswap_wants(&mut self, (peer, wantlist): InboundWants) {
        let Some(server) = self.bitswap.as_mut() else { return };
        server.take_wants(peer, wantlist);
        self.serve_ledger(peer).await;
    }

    /// Runs with the node's timer: answers wants that became answerable
    /// (the replicas grew) or that waited for a full writer.
    pub(crate) async fn bitswap_tick(&mut self) {
        let Some(server) = self.bitswap.as_mut() else { return };
        let len: usize = self.streams.values().map(|s| s.replica.len()).sum();
        let grew = len != server.seen_len;
        server.seen_len = len;
        let due: Vec<PeerId> = server
            .ledgers
            .iter()
            .filter(|(_, l)| !l.wants.is_empty() && (grew || l.blocked))
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            self.serve_ledger(peer).await;
        }
    }

    /// Answers the peer's ledger, in order, in messages of at most
    /// `max_outgoing_message_bytes`, until its writer holds twice that.
    async fn serve_ledger(&mut self, peer: PeerId) {
        let Some(server) = self.bitswap.as_mut() else { return };
        let Some(ledger) = server.ledgers.get_mut(&peer) else { return };
        let shared = Arc::clone(&server.shared);
        let writer = server.writers.entry(peer).or_insert_with(|| Writer::spawn(peer, Arc::clone(&shared)));
        let (config, counters) = (&shared.config, &shared.counters);
        let budget = config.max_outgoing_message_bytes;
        let mut message = Message::default();
        let mut size = 0usize;
        let mut kept = VecDeque::new();
        ledger.blocked = false;
        while let Some(cid) = ledger.order.pop_front() {
            if writer.queued() >= 2 * budget {
                ledger.order.push_front(cid);
                ledger.blocked = true;
                break;
            }
            let Some(want) = ledger.wants.get(&cid).copied() else { continue };
            let block = if want.block { find_block(&self.streams, &cid).await } else { None };
            let have = block.is_some() || (!want.block && self.streams.values().any(|s| holds(&s.replica, &cid)));
            // A pruned block never comes back: it is not kept waiting.
            let pruned = !have && self.streams.values().any(|s| s.replica.is_pruned(&cid));
            if pruned {
                bump(&counters.pruned_wants, 1);
            }
            let item = match block {
                Some(b) if b.len() <= config.max_block_bytes => Item::Block(b),
                _ if have && !want.block => Item::Presence(PresenceType::Have),
                _ if want.send_dont_have => Item::Presence(PresenceType::DontHave),
                _ if pruned => {
                    ledger.wants.remove(&cid);
                    continue;
                }
                _ => {
                    // Not here yet: answered when it arrives.
                    kept.push_back(cid);
                    continue;
                }
            };
            ledger.wants.remove(&cid);
            let n = match &item {
                Item::Block(b) => b.len(),
                Item::Presence(_) => cid.encoded_len(),
            } + ITEM_OVERHEAD;
            if size + n > budget && !message.is_empty() {
                writer.push(std::mem::take(&mut message).to_frame());
                size = 0;
            }
            size += n;
            match item {
                Item::Block(b) => {
                    bump(&counters.blocks_sent, 1);
                    message.payload.push(PayloadBlock { prefix: prefix_of(b.cid()), data: b.into_parts().1 });
                }
                Item::Presence(kind) => {
                    let c = if kind == PresenceType::Have { &counters.haves_sent } else { &counters.dont_haves_sent };
                    bump(c, 1);
                    message.block_presences.push(BlockPresence { cid: cid.to_bytes(), r#type: kind as i32 });
                }
            }
        }
        kept.extend(ledger.order.drain(..));
        ledger.order = kept;
        if !message.is_empty() {
            writer.push(message.to_frame());
        }
    }
}

enum Item {
    Block(Block),
    Presence(PresenceType),
}

/// Whether the replica holds the bytes of `cid` (a pruned event's are gone).
fn holds<S: ?Sized + StreamStore>(replica: &merkle_clock::Replica<S>, cid: &Cid) -> bool {
    replica.contains(cid) && !replica.is_pruned(cid)
}

/// The block of `cid` from whichever stream holds its bytes.
async fn find_block<S: ?Sized + StreamStore + 'static>(
    streams: &HashMap<Cid, StreamSlot<S>>,
    cid: &Cid,
) -> Option<Block> {
    for slot in streams.values() {
        if holds(&slot.replica, cid) {
            match slot.replica.get(cid).await {
                Ok(b) => return b,
                Err(e) => debug!(%cid, "bitswap: reading a block to serve failed: {e}"),
            }
        }
    }
    None
}

/// Accepts inbound Bitswap streams, each read by a task of its own, at
/// most `max_inbound_streams` at once.
async fn accept_loop(
    mut incoming: libp2p_stream::IncomingStreams,
    shared: Arc<Shared>,
    to_node: mpsc::Sender<InboundWants>,
) {
    let slots = Arc::new(Semaphore::new(shared.config.max_inbound_streams));
    while let Some((peer, stream)) = incoming.next().await {
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(read_stream(peer, stream, Arc::clone(&shared), to_node.clone(), permit));
            }
            Err(_) => bump(&shared.counters.streams_refused, 1),
        }
    }
}

/// Reads messages from one inbound stream until it ends or breaks a rule:
/// blocks and presences go to the fetches, wantlists to the node's task.
async fn read_stream(
    peer: PeerId,
    mut stream: Stream,
    shared: Arc<Shared>,
    to_node: mpsc::Sender<InboundWants>,
    _permit: OwnedSemaphorePermit,
) {
    let config = &shared.config;
    let mut messages = 0u64;
    loop {
        let read = tokio::time::timeout(config.message_timeout, read_frame(&mut stream, config.max_message_bytes));
        let result = match read.await {
            Ok(Ok(None)) => return,
            Ok(Ok(Some(body))) => {
                let len = body.len();
                message::decode(body, config.max_message_items).map(|m| (m, len))
            }
            Ok(Err(e)) => Err(e),
            // A stream kept open after its messages is simply done.
            Err(_) if messages > 0 => return,
            Err(_) => Err(super::BitswapError::Timeout),
        };
        let (message, len) = match result {
            Ok(ok) => ok,
            Err(e) => {
                debug!(%peer, "bitswap: inbound stream refused: {e}");
                bump(&shared.counters.garbage, 1);
                return;
            }
        };
        messages += 1;
        bump(&shared.counters.messages_received, 1);
        bump(&shared.counters.bytes_received, len as u64);
        client::on_message(&shared, peer, &message);
        if let Some(wantlist) = message.wantlist
            && (wantlist.full || !wantlist.entries.is_empty())
            && to_node.send((peer, wantlist)).await.is_err()
        {
            return;
        }
    }
}
