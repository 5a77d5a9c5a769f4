//! One state of the model: real replicas, real drivers, a network of bytes.
//!
//! A [`World`] is rebuilt by replaying its trace from the start (the
//! replicas and drivers are not `Clone`): the same actions give the same
//! world, because every random choice comes from a fixed seed.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use ipld_core::cid::Cid;

use super::{Action, ModelConfig, Violation};
use crate::block::{cid_of, digest_of, short_cid};
use crate::event::Event;
use crate::replica::{Replica, ReplicaConfig};
use crate::store::MemoryBlockstore;
use crate::sync::{Bloom, Message, Sessions, SyncState};

type R = Replica<MemoryBlockstore>;

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
}

/// The partition between n0 and the other replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Partition {
    Never,
    Active,
    Healed,
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
    /// What each step did, in words (only when `verbose`).
    pub log: Vec<String>,
    pub verbose: bool,
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
            log: Vec::new(),
            verbose: false,
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

    /// The world after `trace`, from the start.
    pub async fn replay(cfg: &ModelConfig, trace: &[Action]) -> Result<Self, Violation> {
        let mut w = World::start(cfg).await?;
        for &a in trace {
            w.apply(a).await?;
        }
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
        let mut seen: BTreeSet<(usize, usize, &[u8])> = BTreeSet::new();
        for (k, m) in self.net.iter().enumerate() {
            if !seen.insert((m.from, m.to, &m.bytes)) {
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

    fn send(&mut self, from: usize, to: usize, bytes: Vec<u8>, why: &str) -> String {
        self.next_id += 1;
        let id = self.next_id;
        let what = self.describe(&bytes);
        if self.cut(from, to) {
            return format!("{why}message {id} n{from}→n{to} ({what}) is cut off by the partition");
        }
        self.net.push(InFlight { id, from, to, bytes, late: false });
        format!("{why}message {id} n{from}→n{to} ({what})")
    }

    /// Performs `action`. A protocol error is a violation: every peer here is honest.
    pub async fn apply(&mut self, action: Action) -> Result<(), Violation> {
        let step = match action {
            Action::Append(i) => {
                let label = format!("e{}", self.appended.len() + 1);
                let payload = format!("{label} by n{i}");
                let cid = self.nodes[i].replica.append(&payload).await.map_err(|e| Violation::error(e.to_string()))?;
                self.appended.push((cid, label.clone()));
                format!("n{i} appends {label}; {}", self.tick(i).await?)
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
                    let said = self.send(m.to, m.from, r, "; it answers with ");
                    words.push_str(&said);
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

    /// Replica `i`'s driver ticks; a second tick at once must say nothing.
    async fn tick(&mut self, i: usize) -> Result<String, Violation> {
        let node = &mut self.nodes[i];
        let due = node.sessions.tick(&node.replica, self.now).await.map_err(|e| Violation::error(e.to_string()))?;
        let mut words = format!("n{i} ticks");
        for (p, why) in &due.restarts {
            let _ = write!(words, ", restarts its session with n{p} ({why})");
        }
        for m in due.messages {
            let said = self.send(i, m.peer, m.message, ", sends ");
            words.push_str(&said);
        }
        let node = &mut self.nodes[i];
        let again = node.sessions.tick(&node.replica, self.now).await.map_err(|e| Violation::error(e.to_string()))?;
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
        let mut h = Fp(blake3::Hasher::new());
        let universe: Vec<Cid> = std::iter::once(self.genesis).chain(self.appended.iter().map(|(c, _)| *c)).collect();
        h.num(self.appended.len() as u64);
        h.cids(&universe);
        for node in &self.nodes {
            let r = &node.replica;
            h.cids(&self.blocks_of(r));
            let pending: Vec<Cid> = universe.iter().filter(|c| r.is_pending(c)).copied().collect();
            h.cids(&pending);
            let (anti, peers) = node.sessions.model_view(self.now);
            h.num(anti.map_or(u64::MAX, |d| d.as_millis() as u64));
            for (peer, state, clock) in peers {
                h.num(*peer as u64);
                clock.hash(&self.cfg, &mut h);
                hash_state(state, &universe, &mut h);
            }
        }
        let mut msgs: Vec<[u8; 32]> = self
            .net
            .iter()
            .map(|m| {
                let mut mh = Fp(blake3::Hasher::new());
                mh.num(m.from as u64);
                mh.num(m.to as u64);
                mh.num(u64::from(m.late));
                hash_message(&m.bytes, &universe, &mut mh);
                mh.0.finalize().into()
            })
            .collect();
        msgs.sort_unstable();
        h.num(msgs.len() as u64);
        for m in msgs {
            h.0.update(&m);
        }
        h.num(self.losses as u64);
        h.num(self.duplicates as u64);
        h.num(self.delays as u64);
        h.num(self.restarts as u64);
        h.num(self.partition as u64);
        h.0.finalize().into()
    }

    fn blocks_of(&self, r: &R) -> Vec<Cid> {
        let mut v: Vec<Cid> = r.order().collect();
        v.sort_unstable();
        v
    }
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

    /// A filter, as what it says of each event of the universe: its salt and
    /// bits only matter through that.
    fn filter(&mut self, f: Option<&crate::sync::BloomFilter>, universe: &[Cid]) {
        match f {
            None => self.num(u64::MAX),
            Some(f) => {
                for c in universe {
                    self.flag(digest_of(c).is_some_and(|d| f.contains_digest(&d)));
                }
            }
        }
    }
}

fn hash_state(state: &SyncState, universe: &[Cid], h: &mut Fp) {
    h.cids(&state.shared);
    let s = &state.session;
    for b in [s.hello, s.filter_sent, s.their_more, s.prompted, s.owe_ack, s.owe_reply, s.dirty] {
        h.flag(b);
    }
    for n in [s.filter_seq, s.seq, s.their_seq, s.their_ack, s.their_heads_seq] {
        h.num(n);
    }
    h.opt_print(s.last_sent_heads.as_ref());
    h.opt_cids(s.their_heads.as_ref());
    h.opt_cids(s.predicted.as_ref());
    h.opt_print(s.last_heads.as_ref());
    h.filter(s.their_filter.as_ref(), universe);
    h.cids(&s.their_since);
    h.cids(&s.their_wants);
    let mut sent: Vec<([u8; 32], u64)> = s.sent.iter().map(|(d, n)| (*d, *n)).collect();
    sent.sort_unstable();
    h.num(sent.len() as u64);
    for (d, n) in sent {
        h.0.update(&d);
        h.num(n);
    }
    let asked: Vec<Cid> = s.asked.iter().copied().collect();
    h.cids(&asked);
}

fn hash_message(bytes: &[u8], universe: &[Cid], h: &mut Fp) {
    let Ok(m) = Message::decode(bytes, &crate::sync::SyncLimits::default()) else {
        h.0.update(bytes);
        return;
    };
    h.flag(m.hello);
    h.flag(m.more);
    h.num(m.seq);
    h.num(m.ack);
    h.num(m.heads.len() as u64);
    h.cids(&m.heads);
    h.filter(m.filter.as_ref(), universe);
    h.cids(&m.since);
    h.cids(&m.want);
    let blocks: Vec<Cid> = m.blocks.iter().map(|b| cid_of(b)).collect();
    h.cids(&blocks);
}
