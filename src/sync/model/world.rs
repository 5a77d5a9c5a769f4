//! One state of the model: real replicas, real drivers, a network of bytes.
//!
//! The search keeps the worlds of its frontier and [forks](World::fork) a
//! parent to take each step; a [`World`] can also be rebuilt by replaying
//! its trace from the start (regression traces, counterexamples): the same
//! actions give the same world, because every random choice comes from a
//! fixed seed.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use ipld_core::cid::Cid;

use super::{Action, ModelConfig, Violation};
use crate::block::{cid_of, digest_of, short_cid};
use crate::event::Event;
use crate::replica::{Replica, ReplicaConfig};
use crate::store::{Blockstore, MemoryBlockstore};
use crate::sync::mutation;
use crate::sync::{Bloom, BloomFilter, Message, Sessions, SyncState};

type R = Replica<MemoryBlockstore>;

/// A replica's own hash, and its peers' (each with the peer's index).
pub(super) type NodeHash = ([u8; 32], Vec<(usize, [u8; 32])>);

/// A filter sent: its sender, the filter, the events its sender held then.
pub(super) type SentFilter = (usize, BloomFilter, BTreeSet<Cid>);

/// One replica and its driver.
pub(super) struct Node {
    pub replica: R,
    pub sessions: Sessions<usize, Bloom>,
    /// The replica's store: it survives a restart.
    pub store: Arc<MemoryBlockstore>,
}

/// A message on its way.
#[derive(Clone)]
pub(super) struct InFlight {
    /// Its number in the run, for traces.
    pub id: u64,
    pub from: usize,
    pub to: usize,
    pub bytes: Vec<u8>,
    /// Time advanced once since it was sent: it must arrive (or be lost)
    /// before time advances again.
    pub late: bool,
    /// A gossip announcement (heads and new blocks, with
    /// [`SessionConfig::push`](crate::sync::SessionConfig) off), not a sync message.
    pub announce: bool,
}

/// The partition between n0 and the other replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Partition {
    Never,
    Active,
    Healed,
}

/// The network and the budgets it spends, saved to undo a step that only
/// moves messages.
pub(super) struct Network {
    net: Vec<InFlight>,
    losses: usize,
    duplicates: usize,
    partition: Partition,
    cut: bool,
}

/// The whole state.
pub(super) struct World {
    pub cfg: ModelConfig,
    pub nodes: Vec<Node>,
    pub net: Vec<InFlight>,
    pub now: Duration,
    pub next_id: u64,
    /// Every event appended, in order, and its label (`e1`, `e2`, …).
    pub appended: Vec<(Cid, String)>,
    pub genesis: Cid,
    pub losses: usize,
    pub duplicates: usize,
    /// Times time advanced with messages in flight.
    pub delays: usize,
    pub restarts: usize,
    pub partition: Partition,
    /// A message was cut off by the partition.
    pub cut: bool,
    /// Every filter sent: its sender, the filter, and the events its sender
    /// held when it made it (the oracle of the one-round-trip property).
    pub filters: Vec<SentFilter>,
    /// What each step did, in words (only when `verbose`).
    pub log: Vec<String>,
    pub verbose: bool,
    /// Check the one-round-trip property on each send. Off while a trace is
    /// replayed: its steps were checked when the search first took them.
    pub checking: bool,
}

impl World {
    /// The initial state: every replica holds only the genesis and is
    /// connected to every other.
    pub async fn new(cfg: &ModelConfig) -> Result<Self, Violation> {
        let genesis = Event::genesis("model check").encode().map_err(|e| Violation::error(format!("genesis: {e}")))?;
        let mut nodes = Vec::new();
        for i in 0..cfg.replicas {
            let store = Arc::new(MemoryBlockstore::new());
            let replica = Replica::create(store.clone(), &genesis, ReplicaConfig::default())
                .await
                .map_err(|e| Violation::error(format!("create: {e}")))?;
            let mut sessions = Sessions::with_seed(Bloom::default(), cfg.session.clone(), i as u64 + 1);
            for j in (0..cfg.replicas).filter(|&j| j != i) {
                sessions.connect(j, Duration::ZERO);
            }
            nodes.push(Node { replica, sessions, store });
        }
        Ok(World {
            cfg: cfg.clone(),
            nodes,
            net: Vec::new(),
            now: Duration::ZERO,
            next_id: 0,
            appended: Vec::new(),
            genesis: *genesis.cid(),
            losses: 0,
            duplicates: 0,
            delays: 0,
            restarts: 0,
            partition: Partition::Never,
            cut: false,
            filters: Vec::new(),
            log: Vec::new(),
            verbose: false,
            checking: true,
        })
    }

    /// The initial state of `cfg`: with [`ModelConfig::warm`], after the
    /// replicas met and fell silent (a few fair, lossless rounds).
    pub async fn start(cfg: &ModelConfig) -> Result<Self, Violation> {
        let mut w = World::new(cfg).await?;
        w.start_warm().await?;
        Ok(w)
    }

    /// With [`ModelConfig::warm`], the replicas meet and fall silent.
    pub async fn start_warm(&mut self) -> Result<(), Violation> {
        let w = self;
        if w.cfg.warm {
            for _ in 0..4 {
                w.apply(Action::Advance).await?;
                while !w.net.is_empty() {
                    w.apply(Action::Deliver(0)).await?;
                }
            }
            if w.verbose {
                w.log.clear();
                w.log.push("the replicas meet, sync and fall silent".into());
            }
        }
        Ok(())
    }

    /// A copy of the world that shares nothing with it: each replica over a
    /// copy of its store, each driver with its random state. The search
    /// forks a parent to take each step from it, instead of replaying the
    /// parent's trace from the start.
    pub fn fork(&self) -> Result<Self, Violation> {
        let nodes = self
            .nodes
            .iter()
            .map(|n| {
                let store = Arc::new(n.store.deep_copy());
                let replica = n
                    .replica
                    .fork(store.clone())
                    .ok_or_else(|| Violation::error("a replica that cannot be forked".into()))?;
                Ok(Node { replica, sessions: n.sessions.clone(), store })
            })
            .collect::<Result<_, Violation>>()?;
        Ok(World {
            cfg: self.cfg.clone(),
            nodes,
            net: self.net.clone(),
            now: self.now,
            next_id: self.next_id,
            appended: self.appended.clone(),
            genesis: self.genesis,
            losses: self.losses,
            duplicates: self.duplicates,
            delays: self.delays,
            restarts: self.restarts,
            partition: self.partition,
            cut: self.cut,
            filters: self.filters.clone(),
            log: self.log.clone(),
            verbose: self.verbose,
            checking: self.checking,
        })
    }

    /// The world after `trace`, from the start.
    pub async fn replay(cfg: &ModelConfig, trace: &[Action]) -> Result<Self, Violation> {
        let mut w = World::start(cfg).await?;
        w.checking = false;
        for &a in trace {
            w.apply(a).await?;
        }
        w.checking = true;
        Ok(w)
    }

    fn cut(&self, a: usize, b: usize) -> bool {
        self.partition == Partition::Active && (a == 0) != (b == 0)
    }

    /// The actions possible now, in a fixed order.
    pub fn enabled(&self) -> Vec<Action> {
        let cfg = &self.cfg;
        let mut out = Vec::new();
        let n = self.nodes.len();
        if self.appended.len() < cfg.appends {
            out.extend((0..n).filter(|&i| cfg.appenders.is_none_or(|k| i < k)).map(Action::Append));
        }
        if self.net.is_empty() || (self.delays < cfg.delays && self.net.iter().all(|m| !m.late)) {
            out.push(Action::Advance);
        }
        // Identical messages between the same peers are one choice.
        let mut seen: BTreeSet<(usize, usize, bool, &[u8])> = BTreeSet::new();
        for (k, m) in self.net.iter().enumerate() {
            if !seen.insert((m.from, m.to, m.announce, &m.bytes)) {
                continue;
            }
            out.push(Action::Deliver(k));
            if self.losses < cfg.losses {
                out.push(Action::Lose(k));
            }
            if self.duplicates < cfg.duplicates {
                out.push(Action::Duplicate(k));
            }
        }
        match self.partition {
            Partition::Never if cfg.partition => out.push(Action::Partition),
            Partition::Active => out.push(Action::Heal),
            _ => {}
        }
        if self.restarts < cfg.restarts {
            for i in 0..n {
                out.push(Action::Restart { replica: i, durable: true });
                out.push(Action::Restart { replica: i, durable: false });
            }
        }
        out
    }

    fn label(&self, cid: &Cid) -> String {
        if *cid == self.genesis {
            return "g".into();
        }
        self.appended.iter().find(|(c, _)| c == cid).map_or_else(|| short_cid(cid), |(_, l)| l.clone())
    }

    fn labels(&self, cids: &[Cid]) -> String {
        let mut v: Vec<String> = cids.iter().map(|c| self.label(c)).collect();
        v.sort();
        v.join(",")
    }

    /// A message in words: `filter`, `heads e1,e2`, `blocks e1`, ….
    pub fn describe(&self, bytes: &[u8]) -> String {
        if !self.verbose {
            return String::new();
        }
        let Ok(m) = Message::decode(bytes, &crate::sync::SyncLimits::default()) else {
            return "undecodable".into();
        };
        let mut s = format!("#{} ack {}", m.seq, m.ack);
        if m.hello {
            s.push_str(" hello");
        }
        if m.filter.is_some() {
            let _ = write!(s, " filter since [{}]", self.labels(&m.since));
        }
        if !m.heads.is_empty() {
            let _ = write!(s, " heads [{}]", self.labels(&m.heads));
        }
        if !m.want.is_empty() {
            let _ = write!(s, " want [{}]", self.labels(&m.want));
        }
        if !m.blocks.is_empty() {
            let cids: Vec<Cid> = m.blocks.iter().map(|b| cid_of(b)).collect();
            let _ = write!(s, " blocks [{}]", self.labels(&cids));
        }
        if m.more {
            s.push_str(" more");
        }
        s
    }

    /// Sends a message, telling it after `words` (the step so far, logged
    /// with it when the message breaks a property).
    fn send(&mut self, from: usize, to: usize, bytes: Vec<u8>, why: &str, words: &mut String) -> Result<(), Violation> {
        self.post(from, to, bytes, false, why, words)
    }

    fn post(
        &mut self,
        from: usize,
        to: usize,
        bytes: Vec<u8>,
        announce: bool,
        why: &str,
        words: &mut String,
    ) -> Result<(), Violation> {
        self.next_id += 1;
        let id = self.next_id;
        let what = self.describe(&bytes);
        let kind = if announce { "announcement" } else { "message" };
        let _ = write!(words, "{why}{kind} {id} n{from}→n{to} ({what})");
        if let Err(v) = if announce { Ok(()) } else { self.one_round_trip(from, to, &bytes) } {
            if self.verbose {
                self.log.push(std::mem::take(words));
            }
            return Err(v);
        }
        if self.cut(from, to) {
            self.cut = true;
            words.push_str(" is cut off by the partition");
            return Ok(());
        }
        self.net.push(InFlight { id, from, to, bytes, late: false, announce });
        Ok(())
    }

    /// Replica `i` holds `cid`, in its DAG or waiting for parents.
    fn has(&self, i: usize, cid: &Cid) -> bool {
        let r = &self.nodes[i].replica;
        r.dag().contains(cid) || r.is_pending(cid)
    }

    /// A message in flight to `replica` carries `cid`.
    fn on_its_way(&self, replica: usize, cid: &Cid) -> bool {
        self.net.iter().filter(|m| m.to == replica).any(|m| {
            Message::decode(&m.bytes, &crate::sync::SyncLimits::default())
                .is_ok_and(|m| m.blocks.iter().any(|b| cid_of(b) == *cid))
        })
    }

    /// Nothing was lost so far: no message lost or cut off, no restart.
    pub fn lossless(&self) -> bool {
        self.losses == 0 && !self.cut && self.restarts == 0
    }

    /// One round trip (step 2 of the protocol): records the filter `bytes`
    /// carries; and once `from` holds `to`'s filter, every message it sends
    /// `to` brings, with what `to` holds or has on its way, every event
    /// `from` holds that `to` lacked when it made the filter, except those
    /// the filter holds falsely. Checked while the run has lost nothing
    /// (what was sent earlier in the session has arrived or is on its way).
    fn one_round_trip(&mut self, from: usize, to: usize, bytes: &[u8]) -> Result<(), Violation> {
        let Ok(m) = Message::decode(bytes, &crate::sync::SyncLimits::default()) else { return Ok(()) };
        if let Some(f) = &m.filter {
            let held = self.blocks(from).into_iter().collect();
            self.filters.push((from, f.clone(), held));
        }
        if !self.lossless() || !self.checking {
            return Ok(());
        }
        let Some(theirs) = self.nodes[from].sessions.state(&to).and_then(|s| s.session.their_filter.as_ref()) else {
            return Ok(());
        };
        let Some((_, f, held)) = self.filters.iter().find(|(i, f, _)| *i == to && f.salt() == theirs.salt()) else {
            return Err(Violation::error(format!("n{from} holds a filter n{to} never sent")));
        };
        let brought: BTreeSet<Cid> = m.blocks.iter().map(|b| cid_of(b)).collect();
        let withheld = self.blocks(from).into_iter().find(|c| {
            !held.contains(c)
                && !digest_of(c).is_some_and(|d| mutation::with(None, || f.contains_digest(&d)))
                && !brought.contains(c)
                && !self.has(to, c)
                && !self.on_its_way(to, c)
        });
        match withheld {
            None => Ok(()),
            Some(c) => Err(Violation::new(
                super::Property::RoundTrip,
                format!(
                    "n{from} answers n{to}'s filter without {}, which the filter does not hold and n{to} lacks",
                    self.label(&c)
                ),
            )),
        }
    }

    /// Performs `action`. A protocol error is a violation: every peer here is honest.
    pub async fn apply(&mut self, action: Action) -> Result<(), Violation> {
        let step = match action {
            Action::Append(i) => {
                let label = format!("e{}", self.appended.len() + 1);
                // The event names not its author: the same append by another
                // replica, with the same parents, is the same block, which
                // the symmetry reduction relies on.
                let payload = label.clone();
                let cid = self.nodes[i].replica.append(&payload).await.map_err(|e| Violation::error(e.to_string()))?;
                self.appended.push((cid, label.clone()));
                let mut words = format!("n{i} appends {label}");
                if !self.cfg.session.push {
                    self.announce(i, &[cid], &mut words).await?;
                }
                format!("{words}; {}", self.tick(i).await?)
            }
            Action::Tick(i) => self.tick(i).await?,
            Action::Advance => {
                self.now += self.cfg.step();
                if !self.net.is_empty() {
                    self.delays += 1;
                }
                for m in &mut self.net {
                    m.late = true;
                }
                let mut words = format!("time advances to {}s", self.now.as_secs_f64());
                for i in 0..self.nodes.len() {
                    words.push_str("; ");
                    words.push_str(&self.tick(i).await?);
                }
                words
            }
            Action::Deliver(k) if self.net[k].announce => self.announced(k).await?,
            Action::Deliver(k) => {
                let m = self.net.remove(k);
                let what = self.describe(&m.bytes);
                let node = &mut self.nodes[m.to];
                let reply = node
                    .sessions
                    .receive(&mut node.replica, &m.from, &m.bytes, self.now)
                    .await
                    .map_err(|e| Violation::error(format!("n{} refused message {}: {e}", m.to, m.id)))?;
                if !reply.received.rejections.is_empty() {
                    return Err(Violation::error(format!("n{} rejected {:?}", m.to, reply.received.rejections)));
                }
                let mut words = format!("message {} n{}→n{} ({what}) arrives", m.id, m.from, m.to);
                if let Some(r) = reply.reply {
                    self.send(m.to, m.from, r, "; it answers with ", &mut words)?;
                }
                words.push_str("; ");
                words.push_str(&self.tick(m.to).await?);
                words
            }
            Action::Lose(k) => {
                let m = self.net.remove(k);
                self.losses += 1;
                format!("message {} n{}→n{} ({}) is lost", m.id, m.from, m.to, self.describe(&m.bytes))
            }
            Action::Duplicate(k) => {
                let mut m = self.net[k].clone();
                m.late = false;
                self.duplicates += 1;
                let words = format!("message {} n{}→n{} is duplicated", m.id, m.from, m.to);
                self.net.push(m);
                words
            }
            Action::Partition => {
                self.partition = Partition::Active;
                let before = self.net.len();
                let net = std::mem::take(&mut self.net);
                self.net = net.into_iter().filter(|m| (m.from == 0) == (m.to == 0)).collect();
                self.cut |= self.net.len() < before;
                format!("n0 is cut off from the others ({} message(s) in flight lost)", before - self.net.len())
            }
            Action::Heal => {
                self.partition = Partition::Healed;
                "the partition heals".into()
            }
            Action::Restart { replica: i, durable } => {
                self.restart(i, durable).await?;
                let kept = if durable { "keeping its sync states" } else { "with fresh sync states" };
                format!("n{i} restarts from its store, {kept}; {}", self.tick(i).await?)
            }
        };
        if self.verbose {
            self.log.push(step);
        }
        Ok(())
    }

    /// The parts of the world a step that only moves messages changes:
    /// [`World::undo`] puts them back.
    pub fn network(&self) -> Network {
        Network {
            net: self.net.clone(),
            losses: self.losses,
            duplicates: self.duplicates,
            partition: self.partition,
            cut: self.cut,
        }
    }

    /// Undoes a step that only moved messages (see [`Action::network_only`]).
    pub fn undo(&mut self, saved: Network) {
        let Network { net, losses, duplicates, partition, cut } = saved;
        (self.net, self.losses, self.duplicates, self.partition, self.cut) = (net, losses, duplicates, partition, cut);
    }

    /// Replica `i`'s driver ticks; a second tick at once must say nothing.
    /// Replica `i` announces its heads and the blocks of `fresh` to every
    /// peer, as the libp2p node's gossip does with push off: its sessions
    /// then take the peers to hold them ([`Sessions::delivered`]).
    pub async fn announce(&mut self, i: usize, fresh: &[Cid], words: &mut String) -> Result<(), Violation> {
        let node = &mut self.nodes[i];
        let store = |e: crate::store::StoreError| Violation::error(format!("n{i}'s store: {e}"));
        let blocks = node.replica.store().get_many(fresh).await.map_err(store)?;
        let blocks = blocks.into_iter().flatten().map(|b| b.into_parts().1).collect();
        let bytes = Message { heads: node.replica.heads(), blocks, ..Message::default() }.encode();
        node.sessions.delivered(fresh);
        for j in (0..self.nodes.len()).filter(|&j| j != i) {
            self.post(i, j, bytes.clone(), true, ", ", words)?;
        }
        Ok(())
    }

    /// Announcement `k` arrives: its blocks are taken in, and if the
    /// announcer's heads are still missing, a fresh session pulls them from
    /// it (as the libp2p node does, [`Sessions::resync`]).
    async fn announced(&mut self, k: usize) -> Result<String, Violation> {
        let m = self.net.remove(k);
        let what = self.describe(&m.bytes);
        let msg = Message::decode(&m.bytes, &crate::sync::SyncLimits::default())
            .map_err(|e| Violation::error(format!("announcement {}: {e}", m.id)))?;
        let node = &mut self.nodes[m.to];
        let blocks = msg.blocks.into_iter().map(crate::block::Block::from_bytes).collect();
        let report = node.replica.ingest_many(blocks).await.map_err(|e| Violation::error(e.to_string()))?;
        node.sessions.delivered(&report.accepted);
        let mut words = format!("announcement {} n{}→n{} ({what}) arrives", m.id, m.from, m.to);
        if msg.heads.iter().any(|h| !node.replica.dag().contains(h)) {
            node.sessions.resync(m.from, self.now);
            let _ = write!(words, "; n{} lacks a head and pulls from n{}", m.to, m.from);
        }
        words.push_str("; ");
        words.push_str(&self.tick(m.to).await?);
        Ok(words)
    }

    /// With push off (the libp2p node), a peer with a message of `i`'s on
    /// its way is busy: the tick skips it, what it is owed waits for its
    /// answer ([`Sessions::tick_skipping`]).
    fn busy(&self, i: usize) -> Vec<usize> {
        if self.cfg.session.push {
            return Vec::new();
        }
        self.net.iter().filter(|m| m.from == i && !m.announce).map(|m| m.to).collect()
    }

    async fn tick(&mut self, i: usize) -> Result<String, Violation> {
        let busy = self.busy(i);
        let node = &mut self.nodes[i];
        let due = node
            .sessions
            .tick_skipping(&node.replica, self.now, |p| busy.contains(p))
            .await
            .map_err(|e| Violation::error(e.to_string()))?;
        let mut words = format!("n{i} ticks");
        for (p, why) in &due.restarts {
            let _ = write!(words, ", restarts its session with n{p} ({why})");
        }
        for m in due.messages {
            self.send(i, m.peer, m.message, ", sends ", &mut words)?;
        }
        let busy = self.busy(i);
        let node = &mut self.nodes[i];
        let again = node
            .sessions
            .tick_skipping(&node.replica, self.now, |p| busy.contains(p))
            .await
            .map_err(|e| Violation::error(e.to_string()))?;
        if !again.messages.is_empty() {
            if self.verbose {
                self.log.push(words);
            }
            return Err(Violation::chatter(format!(
                "n{i} ticked again at once and sent {} more message(s)",
                again.messages.len()
            )));
        }
        Ok(words)
    }

    async fn restart(&mut self, i: usize, durable: bool) -> Result<(), Violation> {
        self.restarts += 1;
        let n = self.nodes.len();
        let node = &mut self.nodes[i];
        let stream = *node.replica.stream_id();
        let replica = Replica::open(node.store.clone(), &stream, ReplicaConfig::default())
            .await
            .map_err(|e| Violation::error(format!("reopen: {e}")))?;
        let seed = 100 + i as u64 + 10 * self.restarts as u64;
        let mut sessions = Sessions::with_seed(Bloom::default(), self.cfg.session.clone(), seed);
        for j in (0..n).filter(|&j| j != i) {
            match node.sessions.disconnect(&j) {
                Some(saved) if durable => sessions.connect_with(j, &saved, self.now),
                _ => {
                    sessions.connect(j, self.now);
                }
            }
        }
        node.replica = replica;
        node.sessions = sessions;
        Ok(())
    }

    /// Every event in replica `i`'s DAG, ascending.
    pub fn blocks(&self, i: usize) -> Vec<Cid> {
        let mut v: Vec<Cid> = self.nodes[i].replica.order().collect();
        v.sort_unstable();
        v
    }

    /// Every replica holds the same events.
    pub fn agree(&self) -> bool {
        let first = self.blocks(0);
        (1..self.nodes.len()).all(|i| self.blocks(i) == first)
    }

    /// The state as the checker sees it: a hash of everything that decides
    /// what happens next, and of nothing else (see the module docs).
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint_of(View::ALL)
    }

    /// The fingerprint of the parts of the state `view` keeps (the others
    /// are left out): [`View::ALL`] is the checker's abstraction; fewer
    /// parts tell what the states of a level differ in (`MODEL_ANALYZE`).
    pub fn fingerprint_of(&self, view: View) -> [u8; 32] {
        let universe = self.universe();
        let digest = |f: &dyn Fn(&mut Fp)| -> [u8; 32] {
            let mut h = Fp(blake3::Hasher::new());
            f(&mut h);
            h.0.finalize().into()
        };
        // Each replica, apart from the names of its peers: its events, its
        // pending events, and each peer's clocks and state.
        let nodes: Vec<NodeHash> = (0..self.nodes.len()).map(|i| self.node_hash(i, view, &universe)).collect();
        let msgs: Vec<(usize, usize, [u8; 32])> = self
            .net
            .iter()
            .filter(|_| view.network)
            .map(|m| {
                let d = digest(&|h| {
                    h.num(u64::from(m.late));
                    h.flag(m.announce);
                    hash_message(&m.bytes, &universe, &self.filters, view.seqs, h);
                });
                (m.from, m.to, d)
            })
            .collect();
        // The least hash over the renamings of the replicas that the
        // configuration cannot tell apart (symmetry reduction).
        self.symmetries_with(self.cfg.symmetry && view.symmetry)
            .iter()
            .map(|pi| {
                let mut h = Fp(blake3::Hasher::new());
                h.num(self.appended.len() as u64);
                h.cids(&universe);
                let mut order: Vec<usize> = (0..nodes.len()).collect();
                order.sort_unstable_by_key(|&i| pi[i]);
                for i in order {
                    let (own, peers) = &nodes[i];
                    h.0.update(own);
                    let mut renamed: Vec<(usize, [u8; 32])> = peers.iter().map(|(p, d)| (pi[*p], *d)).collect();
                    renamed.sort_unstable();
                    for (p, d) in renamed {
                        h.num(p as u64);
                        h.0.update(&d);
                    }
                }
                let mut renamed: Vec<(usize, usize, [u8; 32])> =
                    msgs.iter().map(|(f, t, d)| (pi[*f], pi[*t], *d)).collect();
                renamed.sort_unstable();
                h.num(renamed.len() as u64);
                for (f, t, d) in renamed {
                    h.num(f as u64);
                    h.num(t as u64);
                    h.0.update(&d);
                }
                h.num(self.losses as u64);
                h.num(self.duplicates as u64);
                h.num(self.delays as u64);
                h.num(self.restarts as u64);
                h.num(self.partition as u64);
                h.flag(self.cut);
                h.0.finalize().into()
            })
            .min()
            .expect("the identity is a symmetry")
    }

    /// Every event of the run: the genesis, then each appended event.
    pub fn universe(&self) -> Vec<Cid> {
        std::iter::once(self.genesis).chain(self.appended.iter().map(|(c, _)| *c)).collect()
    }

    /// Replica `i` as the fingerprint sees it, apart from the names of its
    /// peers: a hash of its events, pending events (and anti-entropy clock),
    /// and one of each peer's clocks and sync state, with the peer's index.
    pub fn node_hash(&self, i: usize, view: View, universe: &[Cid]) -> NodeHash {
        let digest = |f: &dyn Fn(&mut Fp)| -> [u8; 32] {
            let mut h = Fp(blake3::Hasher::new());
            f(&mut h);
            h.0.finalize().into()
        };
        let node = &self.nodes[i];
        let r = &node.replica;
        let (anti, peers) = node.sessions.model_view(self.now);
        let own = digest(&|h| {
            h.cids(&self.blocks_of(r));
            let pending: Vec<Cid> = universe.iter().filter(|c| r.is_pending(c)).copied().collect();
            h.cids(&pending);
            if view.clocks {
                h.num(anti.map_or(u64::MAX, |d| d.as_millis() as u64));
            }
        });
        let peers = peers
            .into_iter()
            .map(|(peer, state, clock)| {
                let d = digest(&|h| {
                    if view.clocks {
                        clock.hash(&self.cfg, h);
                    }
                    if view.sessions {
                        hash_state(state, universe, &self.filters, view.seqs, h);
                    }
                });
                (*peer, d)
            })
            .collect();
        (own, peers)
    }

    /// The renamings of the replicas (`pi[old] = new`) that map the
    /// configuration onto itself: every permutation, except that n0 stays
    /// n0 when it may be cut off, and the appenders stay appenders.
    fn symmetries_with(&self, symmetry: bool) -> Vec<Vec<usize>> {
        let n = self.nodes.len();
        let mut all: Vec<Vec<usize>> = vec![Vec::new()];
        for _ in 0..n {
            all = all
                .iter()
                .flat_map(|p| (0..n).filter(|i| !p.contains(i)).map(|i| [p.as_slice(), &[i]].concat()))
                .collect();
        }
        let appenders = self.cfg.appenders.unwrap_or(n);
        all.retain(|pi| (!self.cfg.partition || pi[0] == 0) && (0..n).all(|i| (i < appenders) == (pi[i] < appenders)));
        if !symmetry {
            all.truncate(1);
        }
        all
    }

    fn blocks_of(&self, r: &R) -> Vec<Cid> {
        let mut v: Vec<Cid> = r.order().collect();
        v.sort_unstable();
        v
    }
}

/// The parts of a state a fingerprint sees ([`World::fingerprint_of`]):
/// the replicas' events always, and the budgets spent.
#[derive(Debug, Clone, Copy)]
pub(super) struct View {
    pub clocks: bool,
    pub sessions: bool,
    pub network: bool,
    pub symmetry: bool,
    /// The message numbers (seq, ack, and those a sync state keeps).
    pub seqs: bool,
}

impl View {
    /// Every part: the checker's abstraction.
    pub const ALL: View = View { clocks: true, sessions: true, network: true, symmetry: true, seqs: true };
}

/// A hasher with helpers.
pub(super) struct Fp(pub blake3::Hasher);

impl Fp {
    pub fn num(&mut self, n: u64) {
        self.0.update(&n.to_le_bytes());
    }

    pub fn flag(&mut self, b: bool) {
        self.num(u64::from(b));
    }

    /// A set of CIDs, in order.
    pub fn cids(&mut self, cids: &[Cid]) {
        let mut v = cids.to_vec();
        v.sort_unstable();
        v.dedup();
        self.num(v.len() as u64);
        for c in v {
            self.0.update(&c.to_bytes());
        }
    }

    fn opt_print(&mut self, print: Option<&crate::sync::state::HeadsPrint>) {
        match print {
            None => self.num(u64::MAX),
            Some(p) => {
                self.0.update(p.as_bytes());
            }
        }
    }

    fn opt_cids(&mut self, cids: Option<&Vec<Cid>>) {
        match cids {
            None => self.num(u64::MAX),
            Some(v) => self.cids(v),
        }
    }

    /// A filter, as what it says of each event of the universe and whether
    /// its sender held it: its salt and bits only matter through that.
    fn filter(&mut self, f: Option<&BloomFilter>, universe: &[Cid], sent: &[SentFilter]) {
        match f {
            None => self.num(u64::MAX),
            Some(f) => {
                let held = sent.iter().find(|(_, g, _)| g.salt() == f.salt()).map(|(_, _, held)| held);
                for c in universe {
                    self.flag(digest_of(c).is_some_and(|d| f.contains_digest(&d)));
                    self.flag(held.is_some_and(|h| h.contains(c)));
                }
            }
        }
    }
}

fn hash_state(state: &SyncState, universe: &[Cid], sent: &[SentFilter], seqs: bool, h: &mut Fp) {
    h.cids(&state.shared);
    let s = &state.session;
    for b in [s.hello, s.filter_sent, s.their_more, s.prompted, s.owe_ack, s.owe_reply, s.dirty] {
        h.flag(b);
    }
    for n in [s.filter_seq, s.seq, s.their_seq, s.their_ack, s.their_heads_seq].into_iter().filter(|_| seqs) {
        h.num(n);
    }
    h.opt_print(s.last_sent_heads.as_ref());
    h.opt_cids(s.their_heads.as_ref());
    h.opt_cids(s.predicted.as_ref());
    h.opt_print(s.last_heads.as_ref());
    h.filter(s.their_filter.as_ref(), universe, sent);
    h.cids(&s.their_since);
    h.cids(&s.their_wants);
    let mut sent: Vec<([u8; 32], u64)> = s.sent.iter().map(|(d, n)| (*d, *n)).collect();
    sent.sort_unstable();
    h.num(sent.len() as u64);
    for (d, n) in sent {
        h.0.update(&d);
        if seqs {
            h.num(n);
        }
    }
    let asked: Vec<Cid> = s.asked.iter().copied().collect();
    h.cids(&asked);
}

fn hash_message(bytes: &[u8], universe: &[Cid], sent: &[SentFilter], seqs: bool, h: &mut Fp) {
    let Ok(m) = Message::decode(bytes, &crate::sync::SyncLimits::default()) else {
        h.0.update(bytes);
        return;
    };
    h.flag(m.hello);
    h.flag(m.more);
    if seqs {
        h.num(m.seq);
        h.num(m.ack);
    }
    h.num(m.heads.len() as u64);
    h.cids(&m.heads);
    h.filter(m.filter.as_ref(), universe, sent);
    h.cids(&m.since);
    h.cids(&m.want);
    let blocks: Vec<Cid> = m.blocks.iter().map(|b| cid_of(b)).collect();
    h.cids(&blocks);
}
