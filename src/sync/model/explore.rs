//! The search and the properties.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use futures::executor::block_on;
use ipld_core::cid::Cid;

use super::world::{NodeHash, Partition, View, World};
use super::{Action, ModelConfig, Property, Violation};
use crate::sync::mutation::{self, Mutation};

/// What a check found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The configuration's name.
    pub config: &'static str,
    /// Distinct abstract states reached.
    pub states: usize,
    /// Transitions tried.
    pub transitions: usize,
    /// The deepest level at which a new state was found.
    pub depth: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// States explored through a persistent set only (partial-order
    /// reduction: the other steps from them were not tried).
    pub reduced: usize,
    /// Every reachable state was explored (no state was new at the last
    /// level, within the depth and state bounds).
    pub complete: bool,
    /// The first violation found (on a shortest trace), if any.
    pub violation: Option<Violation>,
}

impl Outcome {
    /// Every property held on every state explored, and every reachable state was.
    pub fn holds(&self) -> bool {
        self.violation.is_none() && self.complete
    }
}

/// Explores every state of `cfg` reachable within its bounds, checking every
/// property on every transition and state; stops at the first violation.
pub fn check(cfg: &ModelConfig) -> Outcome {
    let start = Instant::now();
    let mut out = Outcome {
        config: cfg.name,
        states: 0,
        transitions: 0,
        depth: 0,
        seconds: 0.0,
        reduced: 0,
        complete: false,
        violation: None,
    };
    if let Err(v) = block_on(explore(cfg, &mut out)) {
        out.violation = Some(explain(cfg, v));
    }
    out.seconds = start.elapsed().as_secs_f64();
    out
}

/// Runs the check of each configuration with `m` switched on, until one
/// reports a violation: the violation, or `None` when the mutation went
/// unnoticed.
pub fn check_mutation(configs: &[ModelConfig], m: Mutation) -> Option<Violation> {
    mutation::with(Some(m), || configs.iter().find_map(|cfg| check(cfg).violation))
}

/// Replays `trace` on `cfg`, checking every property on every step and
/// state on the way, as the search does.
///
/// # Errors
/// The first violation, with the trace in words.
pub fn replay(cfg: &ModelConfig, trace: &[Action]) -> Result<(), Violation> {
    let run = block_on(async {
        for len in 0..=trace.len() {
            let mut w = World::replay(cfg, &trace[..len.saturating_sub(1)]).await.map_err(|v| at(v, &trace[..len]))?;
            if len > 0 {
                // The last step is checked as the search checks it.
                let before = held(&w);
                w.apply(trace[len - 1]).await.map_err(|v| at(v, &trace[..len]))?;
                transition(&before, &w).map_err(|v| at(v, &trace[..len]))?;
            }
            settle(&mut w).await.map_err(|v| at(v, &trace[..len]))?;
        }
        Ok(())
    });
    run.map_err(|v| explain(cfg, v))
}

/// The steps of `trace` in words (stopping at the first error).
pub fn narrate(cfg: &ModelConfig, trace: &[Action]) -> Vec<String> {
    block_on(async {
        let Ok(mut w) = World::new(cfg).await else { return Vec::new() };
        w.verbose = true;
        let _ = w.start_warm().await;
        for &a in trace {
            if let Err(e) = w.apply(a).await {
                w.log.push(format!("error: {}", e.detail));
                break;
            }
        }
        w.log
    })
}

fn at(mut v: Violation, trace: &[Action]) -> Violation {
    if v.trace.is_empty() {
        v.trace = trace.to_vec();
    }
    v
}

/// Fills in the steps of a violation in words, replaying its trace.
fn explain(cfg: &ModelConfig, mut v: Violation) -> Violation {
    let steps = block_on(async {
        let mut w = World::new(cfg).await.ok()?;
        w.verbose = true;
        w.start_warm().await.ok()?;
        for &a in &v.trace {
            if w.apply(a).await.is_err() {
                return Some(w.log);
            }
        }
        // The trace replays without a violation: it failed in the run from
        // its last state, which the steps show too.
        w.log.push("— from here, with no more loss, every message delivered and every replica ticking:".into());
        let _ = settle(&mut w).await;
        Some(w.log)
    });
    v.steps = steps.unwrap_or_default();
    v
}

async fn explore(cfg: &ModelConfig, out: &mut Outcome) -> Result<(), Violation> {
    // Each state seen, with the level it was first seen at (the cycle
    // proviso of the reduction reads it).
    let mut visited: HashMap<[u8; 16], u32> = HashMap::new();
    let root = World::start(cfg).await?;
    visited.insert(short(root.fingerprint()), 0);
    settle(&mut root.fork()?).await?;
    out.states = 1;
    // Each state of the frontier with its trace: a child is its parent,
    // forked, after one step (no replay from the start).
    // Beyond `max_kept`, a state is kept as its trace and replayed.
    let mut frontier: Vec<(Vec<Action>, Option<World>)> = vec![(Vec::new(), Some(root))];
    let mut depth = 0;
    while !frontier.is_empty() {
        if depth == cfg.max_depth || out.states >= cfg.max_states {
            return Ok(());
        }
        let mut next = Vec::new();
        for (trace, kept) in std::mem::take(&mut frontier) {
            let parent = match kept {
                Some(w) => w,
                None => World::replay(cfg, &trace).await.map_err(|v| at(v, &trace))?,
            };
            let mut actions = parent.enabled();
            // Steps that only move messages first: they are undone on the
            // parent, which the last step then takes.
            actions.sort_by_key(|a| !a.network_only());
            // A persistent set first (partial-order reduction): the rest is
            // explored only if one of its children was seen before (the
            // cycle proviso).
            let closed = closed_replicas(&parent);
            let persistent = persistent(&parent, &closed, &actions);
            if let Some(t) = &persistent {
                actions.sort_by_key(|a| !t.contains(a));
                out.reduced += 1;
            }
            let mut revisited = false;
            let before = held(&parent);
            let mut parent = Some(parent);
            for (i, &a) in actions.iter().enumerate() {
                if persistent.as_ref().is_some_and(|t| i == t.len()) {
                    if !revisited {
                        break;
                    }
                    out.reduced -= 1;
                }
                let mut child_trace = trace.clone();
                child_trace.push(a);
                out.transitions += 1;
                let p = parent.as_mut().expect("the parent is taken by the last step only");
                if a.network_only() {
                    // A step that only moves messages is tried on the parent
                    // and undone: a child already seen costs no fork.
                    let saved = p.network();
                    p.apply(a).await.map_err(|v| at(v, &child_trace))?;
                    let checked = transition(&before, p);
                    let fp = short(p.fingerprint());
                    p.undo(saved);
                    checked.map_err(|v| at(v, &child_trace))?;
                    if visited.insert(fp, depth as u32 + 1).is_some() {
                        continue;
                    }
                }
                let footprint = closed.as_ref().and_then(|c| Footprint::of(p, c, a));
                // The last child takes the parent; the others fork it.
                let mut w = if i + 1 == actions.len() { parent.take().expect("still here") } else { p.fork()? };
                if a.network_only() {
                    w.apply(a).await.map_err(|v| at(v, &child_trace))?;
                } else {
                    w.apply(a).await.map_err(|v| at(v, &child_trace))?;
                    transition(&before, &w).map_err(|v| at(v, &child_trace))?;
                    if let Some(f) = footprint {
                        f.check(&w).map_err(|v| at(v, &child_trace))?;
                    }
                    let fp = short(w.fingerprint());
                    if let Some(&seen) = visited.get(&fp) {
                        // Seen at this level or before: it may close a cycle.
                        revisited |= seen as usize <= depth;
                        continue;
                    }
                    visited.insert(fp, depth as u32 + 1);
                }
                out.states += 1;
                out.depth = depth + 1;
                settle(&mut w.fork()?).await.map_err(|v| at(v, &child_trace))?;
                let kept = next.len() < cfg.max_kept;
                next.push((child_trace, kept.then_some(w)));
            }
        }
        frontier = next;
        depth += 1;
        if std::env::var_os("MODEL_PROGRESS").is_some() {
            eprintln!(
                "{}: depth {depth}: {} new, {} states, {} transitions",
                cfg.name,
                frontier.len(),
                out.states,
                out.transitions
            );
            if std::env::var_os("MODEL_ANALYZE").is_some() {
                analyze(&frontier);
            }
            if std::env::var_os("MODEL_SAMPLES").is_some() {
                for (t, _) in frontier.iter().rev().step_by((frontier.len() / 5).max(1)).take(5) {
                    eprintln!("  {}", super::format_trace(t));
                }
            }
        }
    }
    out.complete = true;
    Ok(())
}

/// What the kept states of a level differ in: how many stay distinct when
/// the fingerprint leaves a part out (`MODEL_ANALYZE=1` with `MODEL_PROGRESS=1`).
fn analyze(frontier: &[(Vec<Action>, Option<World>)]) {
    let all = View::ALL;
    let views = [
        ("without symmetry", View { symmetry: false, ..all }),
        ("without the network", View { network: false, ..all }),
        ("without the clocks", View { clocks: false, ..all }),
        ("without the sync states", View { sessions: false, ..all }),
        ("without clocks and network", View { clocks: false, network: false, ..all }),
        ("events and network only", View { clocks: false, sessions: false, ..all }),
        ("without seqs", View { seqs: false, ..all }),
        ("events only", View { clocks: false, sessions: false, network: false, symmetry: true, seqs: true }),
    ];
    let worlds: Vec<&World> = frontier.iter().filter_map(|(_, w)| w.as_ref()).collect();
    let mut line = format!("  of {} kept:", worlds.len());
    for (name, v) in views {
        let distinct: HashSet<[u8; 32]> = worlds.iter().map(|w| w.fingerprint_of(v)).collect();
        line.push_str(&format!(" {name} {};", distinct.len()));
    }
    let closed = worlds
        .iter()
        .filter(|w| {
            let n = w.nodes.len();
            let full = |i: usize| w.blocks(i).len() == w.appended.len() + 1;
            w.appended.len() == w.cfg.appends
                && (0..n).any(|r| {
                    (r + 1..n).any(|p| {
                        full(r)
                            && full(p)
                            && w.net.iter().any(|m| (m.from == r && m.to == p) || (m.from == p && m.to == r))
                            && w.net.iter().any(|m| !((m.from == r && m.to == p) || (m.from == p && m.to == r)))
                    })
                })
        })
        .count();
    line.push_str(&format!(" with a closed pair and other messages {closed};"));
    let mut in_flight = std::collections::BTreeMap::new();
    let mut appended = std::collections::BTreeMap::new();
    for w in &worlds {
        *in_flight.entry(w.net.len()).or_insert(0usize) += 1;
        *appended.entry(w.appended.len()).or_insert(0usize) += 1;
    }
    eprintln!("{line} in flight {in_flight:?}; appended {appended:?}");
}

/// The replicas that hold every event for good, in a state where nothing
/// but deliveries can happen any more: every budget is spent (appends,
/// losses, duplicates, late deliveries, restarts, the partition), push is on,
/// and the configuration asks for the reduction. `None` elsewhere.
fn closed_replicas(w: &World) -> Option<Vec<bool>> {
    let cfg = &w.cfg;
    let spent = w.appended.len() == cfg.appends
        && w.losses == cfg.losses
        && w.duplicates == cfg.duplicates
        && w.delays == cfg.delays
        && w.restarts == cfg.restarts
        && w.partition != Partition::Active
        && !(cfg.partition && w.partition == Partition::Never);
    if !cfg.reduction || !cfg.session.push || !spent {
        return None;
    }
    let all = w.appended.len() + 1;
    Some((0..w.nodes.len()).map(|i| w.blocks(i).len() == all).collect())
}

/// A persistent set of `actions` (partial-order reduction, DESIGN.md "Model
/// checking"): the deliveries between the two replicas of the fewest such
/// deliveries among pairs that both hold every event (`closed`), when other
/// steps are possible too. No step outside it can touch what it touches:
/// the two replicas' events are final, each one's state for the other, the
/// messages between them (a closed replica answers only the sender).
fn persistent(w: &World, closed: &Option<Vec<bool>>, actions: &[Action]) -> Option<Vec<Action>> {
    let closed = closed.as_ref()?;
    let pair = |a: &Action| match *a {
        Action::Deliver(k) => {
            let m = &w.net[k];
            (closed[m.from] && closed[m.to]).then(|| (m.from.min(m.to), m.from.max(m.to)))
        }
        _ => None,
    };
    let mut best: Option<Vec<Action>> = None;
    let mut pairs: Vec<(usize, usize)> = actions.iter().filter_map(pair).collect();
    pairs.sort_unstable();
    pairs.dedup();
    for p in pairs {
        let t: Vec<Action> = actions.iter().filter(|a| pair(a) == Some(p)).copied().collect();
        if best.as_ref().is_none_or(|b| t.len() < b.len()) {
            best = Some(t);
        }
    }
    best.filter(|t| t.len() < actions.len())
}

/// What a delivery to a closed replica may touch (the reduction's premise):
/// its state for the sender and the messages between the two. Taken before
/// the step, [`Footprint::check`]ed after it, on every such step the
/// search takes.
struct Footprint {
    to: usize,
    from: usize,
    node: NodeHash,
    others: Vec<(usize, usize, Vec<u8>)>,
}

impl Footprint {
    fn of(w: &World, closed: &[bool], a: Action) -> Option<Self> {
        let Action::Deliver(k) = a else { return None };
        let (from, to) = (w.net[k].from, w.net[k].to);
        closed[to].then(|| Footprint {
            to,
            from,
            node: w.node_hash(to, View::ALL, &w.universe()),
            others: Footprint::others(w, from, to),
        })
    }

    /// The messages in flight between other replicas than `a` and `b`.
    fn others(w: &World, a: usize, b: usize) -> Vec<(usize, usize, Vec<u8>)> {
        let mut v: Vec<_> = w
            .net
            .iter()
            .filter(|m| !((m.from == a && m.to == b) || (m.from == b && m.to == a)))
            .map(|m| (m.from, m.to, m.bytes.clone()))
            .collect();
        v.sort_unstable();
        v
    }

    fn check(&self, after: &World) -> Result<(), Violation> {
        let (own, peers) = after.node_hash(self.to, View::ALL, &after.universe());
        let others = |ps: &[(usize, [u8; 32])]| -> Vec<(usize, [u8; 32])> {
            ps.iter().filter(|(p, _)| *p != self.from).copied().collect()
        };
        if own != self.node.0
            || others(&peers) != others(&self.node.1)
            || Footprint::others(after, self.from, self.to) != self.others
        {
            return Err(Violation::error(format!(
                "the partial-order reduction's premise failed: a message n{}→n{} to a replica that holds every event touched more than their pair",
                self.from, self.to
            )));
        }
        Ok(())
    }
}

fn short(fp: [u8; 32]) -> [u8; 16] {
    fp[..16].try_into().expect("16 of 32 bytes")
}

/// The events each replica holds.
fn held(w: &World) -> Vec<Vec<Cid>> {
    (0..w.nodes.len()).map(|i| w.blocks(i)).collect()
}

/// Safety and the in-flight bound, from a state whose replicas held `before` to `after`.
fn transition(before: &[Vec<Cid>], after: &World) -> Result<(), Violation> {
    let safety = |d: String| Violation { property: Property::Safety, detail: d, trace: Vec::new(), steps: Vec::new() };
    let appended: HashSet<Cid> = after.appended.iter().map(|(c, _)| *c).chain(std::iter::once(after.genesis)).collect();
    let held = held(after);
    for (i, blocks) in held.iter().enumerate() {
        if let Some(c) = blocks.iter().find(|c| !appended.contains(c)) {
            return Err(safety(format!("n{i} holds {c}, which no replica appended")));
        }
        let now: HashSet<&Cid> = blocks.iter().collect();
        if let Some(c) = before[i].iter().find(|c| !now.contains(c)) {
            return Err(safety(format!("n{i} lost {c}")));
        }
    }
    for i in 0..held.len() {
        for j in i + 1..held.len() {
            if held[i] != held[j] {
                continue;
            }
            let (a, b) = (&after.nodes[i].replica, &after.nodes[j].replica);
            if a.heads() != b.heads() {
                return Err(safety(format!("n{i} and n{j} hold the same events but not the same heads")));
            }
            if !a.order().eq(b.order()) {
                return Err(safety(format!("n{i} and n{j} hold the same events but order them differently")));
            }
        }
    }
    // The bound per ordered pair is the one the reduction preserves (see
    // DESIGN.md); the bound on the whole network is checked on the states visited.
    let n = after.nodes.len();
    let per_pair = after.cfg.max_in_flight_pair;
    for (a, b) in (0..n).flat_map(|a| (0..n).map(move |b| (a, b))).filter(|(a, b)| a != b) {
        let k = after.net.iter().filter(|m| m.from == a && m.to == b).count();
        if k > per_pair {
            return Err(Violation::chatter(format!("{k} messages in flight from n{a} to n{b} (at most {per_pair})")));
        }
    }
    if after.net.len() > after.cfg.max_in_flight {
        return Err(Violation::chatter(format!(
            "{} messages in flight (at most {})",
            after.net.len(),
            after.cfg.max_in_flight
        )));
    }
    Ok(())
}

/// Messages delivered in one round of [`settle`] before it is called endless.
const MAX_EXCHANGE: usize = 200;

/// Rounds of [`settle`] (deliver everything, advance, tick everyone) before
/// the replicas must agree and be silent.
const MAX_ROUNDS: usize = 40;

/// Messages a synced ordered pair may still send before silence: the
/// acknowledgements, and a filter and its answer when a timeout starts a
/// session that learns they agree.
const SYNCED_MESSAGES_PER_PAIR: usize = 4;

/// Liveness, no lockup, no chatter, from the state `w` (which it consumes):
/// with no more loss and the partition healed, a fair run brings every
/// replica to the same events and then to silence.
async fn settle(w: &mut World) -> Result<(), Violation> {
    let quiet_at_start = w.net.is_empty() && w.partition != Partition::Active;
    if w.partition == Partition::Active {
        w.apply(Action::Heal).await?;
    }
    let n = w.nodes.len();
    let s = &w.cfg.session;
    let step = w.cfg.step().as_millis().max(1);
    // The longest any driver can stay silent while something is due: the
    // longest timeout or pause, in steps, and one more.
    let longest = s.timeout.unwrap_or_default().max(s.retry).saturating_mul(1 << s.max_backoff.min(30));
    let silent_rounds = (longest.as_millis() / step) as usize + 2;
    let first_id = w.next_id;
    let mut synced_from: Option<u64> = None;
    let mut silent = 0;
    for _ in 0..MAX_ROUNDS {
        let mut delivered = 0;
        while !w.net.is_empty() {
            w.apply(Action::Deliver(0)).await?;
            delivered += 1;
            if delivered > MAX_EXCHANGE {
                return Err(Violation::chatter(format!("an exchange of more than {MAX_EXCHANGE} messages")));
            }
        }
        if w.agree() {
            let from = *synced_from.get_or_insert(w.next_id);
            let since = (w.next_id - from) as usize;
            if since > SYNCED_MESSAGES_PER_PAIR * n * (n - 1) {
                return Err(Violation::chatter(format!("{since} messages after every replica held the same events")));
            }
        }
        let before = w.next_id;
        if !w.cfg.session.push && !w.agree() {
            // With push off, peers announce their heads periodically (the
            // libp2p node's gossip): a lost announcement is made good.
            let mut words = String::from("every replica announces its heads");
            for i in 0..n {
                w.announce(i, &[], &mut words).await?;
            }
            if w.verbose {
                w.log.push(words);
            }
        }
        w.apply(Action::Advance).await?;
        if w.next_id == before && w.net.is_empty() {
            silent += 1;
            if silent >= silent_rounds {
                if w.agree() {
                    return Ok(());
                }
                let property =
                    if quiet_at_start && w.next_id == first_id { Property::Lockup } else { Property::Liveness };
                let differ = (1..n).find(|&i| w.blocks(i) != w.blocks(0)).unwrap_or(0);
                return Err(Violation {
                    property,
                    detail: format!(
                        "every replica and the network are quiet for good, but n0 holds {} events and n{differ} {}",
                        w.blocks(0).len(),
                        w.blocks(differ).len()
                    ),
                    trace: Vec::new(),
                    steps: Vec::new(),
                });
            }
        } else {
            silent = 0;
        }
    }
    Err(Violation {
        property: Property::Liveness,
        detail: format!("no silent agreement after {MAX_ROUNDS} rounds of fair, lossless delivery"),
        trace: Vec::new(),
        steps: Vec::new(),
    })
}
