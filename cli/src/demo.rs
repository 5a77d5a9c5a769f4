//! `mclock demo`: replicas of one stream, each over its own redb store, sync
//! through the Bloom-filter protocol on a simulated faulty network, and
//! converge.
//!
//! The demo is a presentation over the library's simulator,
//! [`merkle_clock::sim::Simulation`], in which every replica runs the real
//! session driver ([`merkle_clock::sync::Sessions`]): the per-peer sync
//! states, timeouts with back-off, reconnections and anti-entropy are the
//! driver's, the network (loss, duplication, reordering, a partition) and the
//! delivery are the simulator's. The demo only gives the simulator
//!
//! - a [`SimConfig`] (the faults, the timeout, the quiet-phase bound),
//! - a signed stream ([`Simulation::with_auth`]): the genesis names n0's key
//!   as the admin, each replica signs with its own key, and every replica
//!   starts from its invitation: the genesis and n0's grants of the writer
//!   role to the others,
//! - an explicit [`Schedule`], its plan: which replica appends at which tick,
//!   when the partition heals, when the late replica joins, when the
//!   restarted one goes down and comes back up, when n0 revokes a writer and
//!   when that writer goes on writing,
//! - a store factory that creates, and after the restart reopens, a
//!   [`RedbBlockstore`] in `DIR/node-i` (each an mclock store: try
//!   `mclock --store DIR/node-0 log`),
//! - a payload function (a to-do item per event, from `--seed`),
//!
//! and draws in the hook the simulator calls after every tick (progress
//! bars, phase reports). Every random choice comes from `--seed`, so a seed
//! gives the same run, CIDs and picture everywhere.
//!
//! The run, in ticks (one tick: every message due is delivered and answered
//! at once, then every live replica's driver sends what is due to its ring
//! neighbours and one random peer):
//!
//! 1. a lossy network: every replica but the last writes;
//! 2. a partition splits the writers in two halves, which go on writing;
//! 3. the partition heals and the last replica joins late, with only its
//!    invitation (the genesis and the grants);
//! 4. one replica shuts down and later reopens its redb file;
//! 5. n0 revokes a writer's key, and the writer keeps writing: what it writes
//!    before it learns of the revocation is valid (concurrent with it); what
//!    it writes after, its own replica refuses to build, so it builds the
//!    events by hand and pushes them to every replica, and every one refuses
//!    them (the demo fails if one does not);
//! 6. the network turns perfect and anti-entropy runs until every replica
//!    holds the same events, heads and order (or a bound, and the demo fails).

mod display;
mod summary;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use merkle_clock::sim::{Action, NodeId, Partition, Schedule, SimConfig, SimRng, Simulation, Tick};
use merkle_clock::store::{Durability, RedbBlockstore};
use merkle_clock::{Block, Cid, Ipld, StoreError, StreamStore};

use crate::{Result, draw, store};
use display::Display;
use summary::Counters;

/// Options of `mclock demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Replicas in the network (at least 3): the last joins late.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub nodes: usize,
    /// Events each replica appends.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub events: usize,
    /// Seeds every random choice: the same seed gives the same run and the same CIDs.
    #[arg(long, default_value_t = 42, value_name = "N")]
    pub seed: u64,
    /// Fraction of messages lost while the network is faulty (0 to 0.9).
    #[arg(long, default_value_t = 0.2, value_name = "P")]
    pub loss: f64,
    /// Where to write the SVG picture of the final DAG.
    #[arg(short, long, default_value = "mclock-demo.svg", value_name = "FILE")]
    pub output: PathBuf,
    /// Keep the replicas' stores in DIR/node-0, DIR/node-1, ... (each one an
    /// mclock store: try `mclock --store DIR/node-0 log`) instead of a
    /// temporary directory removed at the end.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// Milliseconds to pause per tick, to watch it run (default: 30 when
    /// stderr is a terminal, else 0). It changes nothing but the pace.
    #[arg(long, value_name = "MS")]
    pub tick_ms: Option<u64>,
}

/// Ticks a session waits for its peer before the driver restarts it.
const SESSION_TIMEOUT: Tick = 8;
/// Every this many ticks, each replica's driver refreshes one settled session.
const ANTI_ENTROPY: Tick = 16;
/// Most ticks of quiet network before the demo gives up.
const MAX_QUIET_TICKS: Tick = 400;
/// Probability that a message is delivered twice while the network is faulty.
const DUP: f64 = 0.1;
/// Most extra ticks of delay (reordering) while the network is faulty.
const REORDER: Tick = 2;
/// The phases of a run.
const PHASES: usize = 6;
/// The admin: the replica whose key the genesis names.
const ADMIN: NodeId = 0;

const TODOS: [&str; 16] = [
    "buy milk",
    "water the plants",
    "call the plumber",
    "renew the passport",
    "fix the bike light",
    "book the dentist",
    "return library books",
    "pay the electricity bill",
    "back up the laptop",
    "bake bread",
    "clean the gutters",
    "write to grandma",
    "defrost the freezer",
    "oil the hinges",
    "sort the recycling",
    "plan the picnic",
];

/// The fixed plan of a run: who does what when.
struct Plan {
    nodes: usize,
    late: NodeId,
    restarted: NodeId,
    /// The writer whose key the admin revokes (when the revocation phase starts).
    revoked: NodeId,
    split: usize,
    /// Phase boundaries: phase i runs over ticks `bounds[i]..bounds[i + 1]`.
    bounds: [Tick; PHASES],
    join_at: Tick,
    down_at: Tick,
    up_at: Tick,
    appends: BTreeMap<Tick, Vec<NodeId>>,
    /// When the revoked writer writes anyway.
    keep_writing: Vec<Tick>,
}

impl Plan {
    fn new(args: &Args, rng: &mut SimRng) -> Plan {
        let n = args.nodes;
        let bounds = [0, 10, 26, 36, 48, 60];
        let (join_at, down_at, up_at) = (28, 38, 44);
        let late = n - 1;
        let restarted = (n - 1) / 2;
        let mut appends: BTreeMap<Tick, Vec<NodeId>> = BTreeMap::new();
        for node in 0..n {
            let from = if node == late { join_at } else { 0 };
            let mut times: Vec<Tick> = (0..args.events).map(|_| rng.range(from, bounds[4] - 2)).collect();
            times.sort_unstable();
            for t in times {
                appends.entry(t).or_default().push(node);
            }
        }
        // The revoked writer writes at an even pace from the revocation on:
        // before it learns of it and after.
        let span = (bounds[5] - 2 - bounds[4]) as usize;
        let keep_writing: Vec<Tick> = (0..args.events).map(|k| bounds[4] + (k * span / args.events) as Tick).collect();
        Plan {
            nodes: n,
            late,
            restarted,
            revoked: n - 2,
            split: (n - 1).div_ceil(2),
            bounds,
            join_at,
            down_at,
            up_at,
            appends,
            keep_writing,
        }
    }

    /// The first tick of the quiet network.
    fn calm_from(&self) -> Tick {
        self.bounds[5]
    }

    /// The tick the admin revokes the writer.
    fn revoke_at(&self) -> Tick {
        self.bounds[4]
    }

    fn partition(&self) -> Partition {
        Partition::split(self.split, self.bounds[1], self.bounds[2])
    }

    /// The simulator's parameters: the faults of the first five phases, the
    /// driver's timeout and anti-entropy, the bound on the quiet phase.
    fn config(&self, args: &Args) -> SimConfig {
        SimConfig {
            seed: args.seed,
            nodes: self.nodes,
            events_per_node: args.events,
            loss: args.loss,
            dup: DUP,
            base_delay: 1,
            reorder: REORDER,
            partitions: vec![self.partition()],
            fault_ticks: self.calm_from(),
            max_ticks: MAX_QUIET_TICKS,
            ring: true,
            random_peers: 1,
            sync_interval: 1,
            session_timeout: Some(SESSION_TIMEOUT),
            anti_entropy: Some(ANTI_ENTROPY),
            ..SimConfig::default()
        }
    }

    /// The plan as the simulator's schedule.
    fn schedule(&self) -> Schedule {
        let mut schedule = Schedule::new();
        let mut at = |t: Tick, a: Action| schedule.entry(t).or_default().push(a);
        for n in (0..self.nodes).filter(|&n| n != self.late) {
            at(0, Action::Join(n));
        }
        at(self.bounds[2], Action::Heal(0));
        at(self.join_at, Action::Join(self.late));
        at(self.down_at, Action::Down(self.restarted));
        at(self.up_at, Action::Up(self.restarted));
        for (&t, nodes) in &self.appends {
            for &n in nodes {
                at(t, Action::Append(n));
            }
        }
        at(self.revoke_at(), Action::Revoke { admin: ADMIN, writer: self.revoked });
        for &t in &self.keep_writing {
            at(t, Action::KeepWriting(self.revoked));
        }
        schedule
    }

    /// The name and description of each phase.
    fn phases(&self, args: &Args) -> [(String, String); PHASES] {
        let names = |range: std::ops::Range<usize>| range.map(|i| format!("n{i}")).collect::<Vec<_>>().join(" ");
        [
            (
                "lossy network".into(),
                format!(
                    "{} write; {:.0}% of messages lost, {:.0}% delivered twice, up to {REORDER} ticks of reordering",
                    names(0..self.late),
                    args.loss * 100.0,
                    DUP * 100.0
                ),
            ),
            (
                "partition".into(),
                format!("{{{}}} | {{{}}} write apart", names(0..self.split), names(self.split..self.late)),
            ),
            (
                "heal + late joiner".into(),
                format!("the partition heals; n{} joins at tick {} with only its invitation", self.late, self.join_at),
            ),
            (
                "restart".into(),
                format!(
                    "n{} shuts down at tick {}, reopens its redb file at tick {}",
                    self.restarted, self.down_at, self.up_at
                ),
            ),
            (
                "revocation".into(),
                format!(
                    "n{ADMIN} revokes n{}'s key at tick {}; n{} keeps writing ({} events)",
                    self.revoked,
                    self.revoke_at(),
                    self.revoked,
                    self.keep_writing.len()
                ),
            ),
            ("quiet network".into(), "no more faults: anti-entropy until every replica agrees".into()),
        ]
    }
}

/// The replicas' redb stores, made and reopened for the simulator.
///
/// It keeps only weak references: when the simulator drops a replica that
/// goes down, its database closes, and the next open really reopens the file.
struct Stores {
    base: PathBuf,
    stream: Cid,
    open: Vec<Weak<RedbBlockstore>>,
    /// Events in each store's log when it was last reopened.
    reopened_with: Vec<Option<u64>>,
    opened: Vec<bool>,
}

impl Stores {
    fn new(base: PathBuf, stream: Cid, nodes: usize) -> Self {
        Stores {
            base,
            stream,
            open: (0..nodes).map(|_| Weak::new()).collect(),
            reopened_with: vec![None; nodes],
            opened: vec![false; nodes],
        }
    }

    /// The store factory: `DIR/node-n` is created as an mclock store the
    /// first time (its `stream` file names the stream), reopened after.
    fn open(&mut self, n: NodeId) -> Result<Arc<dyn StreamStore>, StoreError> {
        let dir = self.base.join(format!("node-{n}"));
        std::fs::create_dir_all(&dir).map_err(StoreError::backend)?;
        let db = Arc::new(RedbBlockstore::open_with(dir.join(store::DB_FILE), Durability::Eventual)?);
        if self.opened[n] {
            // redb answers at once: the future is ready on its first poll.
            let len = db.log_len(&self.stream).now_or_never().transpose()?;
            self.reopened_with[n] = len;
        } else {
            store::set_stream(&dir, &self.stream).map_err(|e| StoreError::backend(e.to_string()))?;
            self.opened[n] = true;
        }
        self.open[n] = Arc::downgrade(&db);
        Ok(db)
    }

    /// Makes every write to node `n`'s store durable, if it is open (before a
    /// clean shutdown, and at the end).
    fn flush(&self, n: NodeId) -> Result<(), StoreError> {
        match self.open[n].upgrade() {
            Some(db) => db.flush(),
            None => Ok(()),
        }
    }
}

/// The payload of each event: which replica wrote it, its number, a to-do item.
fn payloads(seed: u64) -> impl FnMut(NodeId, u64) -> Ipld {
    let mut rng = SimRng::new(seed).fork();
    move |n, k| {
        let todo = TODOS[rng.index(TODOS.len())];
        Ipld::Map(BTreeMap::from([
            ("node".to_string(), Ipld::String(format!("n{n}"))),
            ("seq".to_string(), Ipld::Integer(i128::from(k + 1))),
            ("todo".to_string(), Ipld::String(todo.into())),
        ]))
    }
}

/// Removes the temporary store directory when the demo ends, however it ends.
struct TempDir(Option<PathBuf>);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// What the run observed, for the phase reports and the summary.
#[derive(Default)]
struct Track {
    /// The current phase, from 0.
    phase: usize,
    phase_start: Counters,
    phase_events: usize,
    converged_at: Option<Tick>,
    /// Every event when the partition healed, and when all the writers held them.
    heal_target: Option<(Tick, BTreeSet<Cid>)>,
    healed_at: Option<Tick>,
    /// Every event when the late joiner joined, and when it held them.
    join_target: Option<BTreeSet<Cid>>,
    joined_at: Option<Tick>,
    held_at_down: usize,
    reopened_with: Option<u64>,
    /// Messages undeliverable by the end of the restart's downtime.
    down_undeliverable: u64,
    /// When the revoked writer's replica learned of its revocation.
    learned_at: Option<Tick>,
}

/// The final state, checked from every replica.
struct Verdict {
    heads: Vec<Cid>,
    order: Vec<Cid>,
    /// Every replica is up and holds exactly the genesis and every event
    /// appended, with the same heads and order.
    agree: bool,
    /// The events the revoked writer wrote after it learned of its
    /// revocation, as it built them.
    refused: Vec<Block>,
    /// Every replica refused every one of them, and none holds any.
    refused_everywhere: bool,
}

/// The per-tick presentation: what the hook the simulator calls does.
struct Show<'a> {
    plan: Plan,
    phases: [(String, String); PHASES],
    display: Display<'a>,
    track: Track,
    stores: Rc<RefCell<Stores>>,
    pause: Duration,
}

/// Runs the demo.
pub async fn run(args: &Args, out: &mut dyn Write) -> Result<ExitCode> {
    check(args)?;
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let pause = Duration::from_millis(args.tick_ms.unwrap_or(if tty { 30 } else { 0 }));
    let (base, _cleanup) = store_dir(args)?;
    let mut master = SimRng::new(args.seed);
    let plan = Plan::new(args, &mut master.fork());
    let sim = Simulation::new(plan.config(args))?
        .with_auth(&[ADMIN])?
        .with_schedule(plan.schedule())?
        .with_payloads(payloads(args.seed));
    let stores = Rc::new(RefCell::new(Stores::new(base.clone(), *sim.genesis().cid(), args.nodes)));
    let factory = Rc::clone(&stores);
    let mut sim = sim.with_stores(move |n| factory.borrow_mut().open(n));

    let mut display = Display::new(out, tty);
    display.line(&format!(
        "mclock demo: {} replicas, {} events each, seed {}; every replica has its own redb store and signing key",
        args.nodes, args.events, args.seed
    ))?;
    display.line(&format!(
        "the genesis names n{ADMIN}'s key as the admin; every replica starts from the genesis and n{ADMIN}'s grants of the writer role"
    ))?;
    display.line(&format!(
        "stores in {}{}",
        base.display(),
        if args.keep.is_some() { "" } else { " (removed at the end; --keep DIR keeps them)" }
    ))?;
    display.line("")?;

    let phases = plan.phases(args);
    // Phase 1 counts the events appended in it: not the grants made before.
    let track = Track { phase_events: sim.appended().len(), ..Track::default() };
    let mut show = Show { plan, phases, display, track, stores, pause };
    show.begin(0)?;
    let report = sim.run_with(|sim, t| show.tick(sim, t)).await?;
    let Show { plan, mut display, mut track, stores, .. } = show;
    track.converged_at = summary::converged_at(&report);
    display.end();
    display.line(&track.done_line(&plan, &sim))?;
    display.close();

    let verdict = verdict(&sim, track.converged_at.is_some())?;
    let picture = picture(args, &plan, &sim, &verdict).await?;
    std::fs::write(&args.output, draw::svg(&picture))
        .map_err(|e| format!("cannot write {}: {e}", args.output.display()))?;
    summary::summary(&mut display, args, (&plan, &sim, &track), &verdict, &picture)?;
    display.line(&format!("  time         {:.2} s", started.elapsed().as_secs_f64()))?;
    // Durably, so kept stores open as they were; dropping the simulation closes them.
    for n in 0..plan.nodes {
        stores.borrow().flush(n)?;
    }
    drop(sim);
    if !verdict.agree {
        return Err("the replicas did not converge".into());
    }
    if !verdict.refused_everywhere {
        return Err("an event written after its author's revocation was not refused by every replica".into());
    }
    Ok(ExitCode::SUCCESS)
}

impl Show<'_> {
    /// Starts phase `self.track.phase` at tick `t`.
    fn begin(&mut self, t: Tick) -> Result<()> {
        let phase = self.track.phase;
        let (name, what) = &self.phases[phase];
        let (ticks, len, unit) = match self.plan.bounds.get(phase + 1) {
            Some(&end) => (format!("ticks {t}–{}", end - 1), end - t, "ticks"),
            None => (format!("ticks {t}–"), self.plan.nodes as u64, "replicas agree"),
        };
        self.display.line(&format!("[{}/{PHASES}] {name:<19} {ticks:<12} {what}", phase + 1))?;
        self.display.begin(&format!("[{}/{PHASES}] {name}", phase + 1), len, unit);
        Ok(())
    }

    /// The hook: after tick `t`, observe, draw, and end the phase if it is over.
    fn tick(&mut self, sim: &Simulation, t: Tick) -> Result<()> {
        self.observe(sim, t)?;
        let now = Counters::of(sim.progress());
        let c = now.since(&self.track.phase_start);
        let pos = match self.plan.bounds.get(self.track.phase + 1) {
            Some(_) => t + 1 - self.plan.bounds[self.track.phase],
            None => agreeing(sim) as u64,
        };
        let up = (0..self.plan.nodes).filter(|&n| sim.replica(n).is_some()).count();
        self.display.progress(
            pos,
            format!("{} msgs, {} lost, {} cut", c.messages, c.lost + c.undeliverable, c.cut),
            format!(
                "events {} · messages {} ({}) · replicas up {up}/{}",
                sim.appended().len() + 1,
                now.messages,
                display::human_bytes(now.bytes),
                self.plan.nodes
            ),
        );
        if !self.pause.is_zero() {
            std::thread::sleep(self.pause);
        }
        if self.plan.bounds.get(self.track.phase + 1) == Some(&(t + 1)) {
            self.display.end();
            let line = self.track.done_line(&self.plan, sim);
            self.display.line(&line)?;
            self.track.phase += 1;
            self.track.phase_start = now;
            self.track.phase_events = sim.appended().len();
            self.begin(t + 1)?;
        }
        Ok(())
    }

    /// Records what the phase reports need, as of the end of tick `t`.
    fn observe(&mut self, sim: &Simulation, t: Tick) -> Result<()> {
        let (p, track) = (&self.plan, &mut self.track);
        let next = t + 1;
        if next == p.bounds[2] {
            track.heal_target = Some((next, union(sim)));
        }
        if next == p.join_at {
            track.join_target = Some(union(sim));
        }
        if next == p.down_at {
            // A clean shutdown: what it holds is on disk before it goes.
            track.held_at_down = sim.replica(p.restarted).map_or(0, |r| r.len());
            self.stores.borrow().flush(p.restarted)?;
        }
        if (p.down_at..p.up_at).contains(&t) {
            track.down_undeliverable = sim.progress().undeliverable;
        }
        if t == p.up_at {
            track.reopened_with = self.stores.borrow().reopened_with[p.restarted];
        }
        if let (Some((_, target)), None) = (&track.heal_target, track.healed_at)
            && (0..p.late).all(|n| holds_all(sim, n, target))
        {
            track.healed_at = Some(t);
        }
        if let (Some(target), None) = (&track.join_target, track.joined_at)
            && t >= p.join_at
            && holds_all(sim, p.late, target)
        {
            track.joined_at = Some(t);
        }
        if track.learned_at.is_none() && t >= p.revoke_at() && knows_revoked(sim, p.revoked) {
            track.learned_at = Some(t);
        }
        Ok(())
    }
}

fn check(args: &Args) -> Result<()> {
    if !(3..=64).contains(&args.nodes) {
        return Err(format!("--nodes must be between 3 and 64 (got {})", args.nodes).into());
    }
    if !(1..=10_000).contains(&args.events) {
        return Err(format!("--events must be between 1 and 10000 (got {})", args.events).into());
    }
    if !(0.0..=0.9).contains(&args.loss) {
        return Err(format!("--loss must be between 0 and 0.9 (got {})", args.loss).into());
    }
    Ok(())
}

/// The directory of the replicas' stores, and the guard that removes it if it is temporary.
fn store_dir(args: &Args) -> Result<(PathBuf, TempDir)> {
    let (base, guard) = match &args.keep {
        Some(dir) => {
            if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
                return Err(format!("--keep {}: the directory exists and is not empty", dir.display()).into());
            }
            (dir.clone(), TempDir(None))
        }
        None => {
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            let dir = std::env::temp_dir().join(format!("mclock-demo-{}-{nanos}", std::process::id()));
            (dir.clone(), TempDir(Some(dir)))
        }
    };
    std::fs::create_dir_all(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
    Ok((base, guard))
}

/// Every event held by some live replica.
fn union(sim: &Simulation) -> BTreeSet<Cid> {
    let mut all = BTreeSet::new();
    for n in 0..sim.config().nodes {
        if let Some(r) = sim.replica(n) {
            all.extend(r.order());
        }
    }
    all
}

/// Whether replica `n` knows its own key was revoked.
fn knows_revoked(sim: &Simulation, n: NodeId) -> bool {
    let (Some(replica), Some(signer)) = (sim.replica(n), sim.signer(n)) else { return false };
    replica.members().is_some_and(|m| m.revoked.contains_key(&signer.public()))
}

fn holds_all(sim: &Simulation, n: NodeId, target: &BTreeSet<Cid>) -> bool {
    sim.replica(n).is_some_and(|r| target.iter().all(|c| r.contains(c)))
}

/// Live replicas that hold every event appended so far.
fn agreeing(sim: &Simulation) -> usize {
    let want = sim.appended().len() + 1;
    (0..sim.config().nodes).filter(|&n| sim.replica(n).is_some_and(|r| r.len() == want)).count()
}

/// Checks the claim from every replica.
fn verdict(sim: &Simulation, converged: bool) -> Result<Verdict> {
    let first = sim.replica(0).ok_or("replica n0 is not up")?;
    let heads = first.heads();
    let order: Vec<Cid> = first.order().collect();
    let mut want = sim.appended().clone();
    want.insert(*sim.genesis().cid());
    let agree = converged
        && (0..sim.config().nodes).all(|n| {
            sim.replica(n)
                .is_some_and(|r| r.heads() == heads && r.order().eq(order.iter().copied()) && r.pending().events == 0)
        })
        && order.iter().copied().collect::<BTreeSet<Cid>>() == want;
    let nodes = sim.config().nodes;
    let refused_by = sim.refused_after_revocation();
    let refused_everywhere = refused_by
        .iter()
        .all(|(cid, by)| by.len() == nodes && (0..nodes).all(|n| sim.replica(n).is_some_and(|r| !r.contains(cid))));
    let refused = refused_by.keys().filter_map(|cid| sim.refused_block(cid).cloned()).collect();
    Ok(Verdict { heads, order, agree, refused, refused_everywhere })
}

/// The picture of the final DAG, events coloured by the replica that wrote
/// them, with the events every replica refused drawn beside it.
async fn picture(args: &Args, plan: &Plan, sim: &Simulation, verdict: &Verdict) -> Result<draw::Picture> {
    let first = sim.replica(0).ok_or("replica n0 is not up")?;
    let heads = verdict.heads.len();
    let opts = draw::Options {
        color_by: Some("node".into()),
        title: Some(format!(
            "mclock demo · seed {} · {} replicas · {} events · {heads} head{}",
            args.seed,
            plan.nodes,
            verdict.order.len(),
            if heads == 1 { "" } else { "s" }
        )),
        ..draw::Options::default()
    };
    let mut picture = draw::build(first, &opts).await?;
    draw::add_refused(&mut picture, &verdict.refused);
    Ok(picture)
}
