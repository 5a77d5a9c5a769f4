//! `mclock demo`: replicas of one stream, each over its own redb store, sync
//! through the Bloom-filter protocol on a simulated faulty network, and
//! converge.
//!
//! The wire is [`merkle_clock::sim::Network`] (loss, duplication, reordering,
//! partitions) and every random choice comes from [`SimRng`] streams forked
//! from `--seed`, so a seed gives the same run, CIDs and picture everywhere.
//! The driver is ours rather than [`merkle_clock::sim::Simulation`] because
//! the demo needs a hook per tick (progress bars, phase reports) and real
//! redb stores, so that the restart reopens a database file.
//!
//! The run, in ticks (one tick: every message due is delivered and answered
//! at once, then every live replica speaks to its two ring neighbours and one
//! random peer):
//!
//! 1. a lossy network: every replica but the last writes;
//! 2. a partition splits the writers in two halves, which go on writing;
//! 3. the partition heals and the last replica joins late, with only the genesis;
//! 4. one replica shuts down and later reopens its redb file;
//! 5. the network turns perfect and anti-entropy runs until every replica
//!    holds the same events, heads and order (or a bound, and the demo fails).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use merkle_clock::replica::{Replica, ReplicaConfig};
use merkle_clock::sim::{Faults, Network, NodeId, Partition, Sent, SimRng, Tick};
use merkle_clock::store::{Durability, RedbBlockstore};
use merkle_clock::sync::{Message, SyncLimits, SyncState, generate_message, receive_message};
use merkle_clock::{Block, Cid, Event, Ipld, cid_of, short_cid};

use crate::{Result, draw, store};

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

/// Ticks a sent message waits for an answer before its session is reset.
const SESSION_TIMEOUT: Tick = 8;
/// Most ticks of quiet network before the demo gives up.
const MAX_QUIET_TICKS: Tick = 400;
/// Probability that a message is delivered twice while the network is faulty.
const DUP: f64 = 0.1;
/// Most extra ticks of delay (reordering) while the network is faulty.
const REORDER: Tick = 2;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Absent,
    Up,
    Down,
}

struct Session {
    state: SyncState,
    /// When we last sent to the peer, if we heard nothing since.
    awaiting: Option<Tick>,
    /// Timeout resets without an answer since the last message received.
    backoff: u32,
}

struct Node {
    dir: PathBuf,
    replica: Option<Replica<RedbBlockstore>>,
    status: Status,
    sessions: BTreeMap<NodeId, Session>,
    /// Durable parts of the sessions while the node is down.
    saved: BTreeMap<NodeId, Vec<u8>>,
    /// Appends that fell due while the node was down.
    owed: usize,
    /// Events this node appended.
    seq: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    messages: u64,
    bytes: u64,
    lost: u64,
    duplicated: u64,
    cut: u64,
    undeliverable: u64,
    delivered: u64,
    timeouts: u64,
    reconnects: u64,
    errors: u64,
}

impl Counters {
    fn since(&self, before: &Counters) -> Counters {
        Counters {
            messages: self.messages - before.messages,
            bytes: self.bytes - before.bytes,
            lost: self.lost - before.lost,
            duplicated: self.duplicated - before.duplicated,
            cut: self.cut - before.cut,
            undeliverable: self.undeliverable - before.undeliverable,
            delivered: self.delivered - before.delivered,
            timeouts: self.timeouts - before.timeouts,
            reconnects: self.reconnects - before.reconnects,
            errors: self.errors - before.errors,
        }
    }
}

/// The fixed plan of a run.
struct Plan {
    nodes: usize,
    late: NodeId,
    restarted: NodeId,
    split: usize,
    /// Phase boundaries: phase i runs over ticks `bounds[i]..bounds[i + 1]`.
    bounds: [Tick; 5],
    join_at: Tick,
    down_at: Tick,
    up_at: Tick,
    appends: BTreeMap<Tick, Vec<NodeId>>,
}

impl Plan {
    fn new(args: &Args, rng: &mut SimRng) -> Plan {
        let n = args.nodes;
        let bounds = [0, 10, 26, 36, 48];
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
        Plan { nodes: n, late, restarted, split: (n - 1).div_ceil(2), bounds, join_at, down_at, up_at, appends }
    }

    fn calm_from(&self) -> Tick {
        self.bounds[4]
    }

    fn partition(&self) -> Partition {
        Partition::split(self.split, self.bounds[1], self.bounds[2])
    }
}

/// The progress display: phase bars on a terminal, and phase lines always.
struct Display<'a> {
    out: &'a mut dyn Write,
    multi: MultiProgress,
    visible: bool,
    phase: Option<ProgressBar>,
    status: Option<ProgressBar>,
}

impl<'a> Display<'a> {
    fn new(out: &'a mut dyn Write, visible: bool) -> Self {
        let multi =
            if visible { MultiProgress::new() } else { MultiProgress::with_draw_target(ProgressDrawTarget::hidden()) };
        Display { out, multi, visible, phase: None, status: None }
    }

    fn line(&mut self, text: &str) -> Result<()> {
        let out = &mut self.out;
        if self.visible {
            self.multi.suspend(|| -> std::io::Result<()> {
                writeln!(out, "{text}")?;
                out.flush()
            })?;
        } else {
            writeln!(out, "{text}")?;
            out.flush()?;
        }
        Ok(())
    }

    fn begin(&mut self, label: &str, len: u64, unit: &str) {
        let style = ProgressStyle::with_template(&format!(
            "{{prefix:.bold}} [{{bar:30.cyan/blue}}] {{pos:>3}}/{{len}} {unit}  {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        // The phase bar above the status line.
        let bar = self.multi.insert(0, ProgressBar::new(len).with_style(style).with_prefix(label.to_string()));
        if self.status.is_none() {
            let style = ProgressStyle::with_template("      {msg}").unwrap_or_else(|_| ProgressStyle::default_bar());
            self.status = Some(self.multi.add(ProgressBar::new(1).with_style(style)));
        }
        self.phase = Some(bar);
    }

    fn progress(&self, pos: u64, msg: String, status: String) {
        if let Some(bar) = &self.phase {
            bar.set_position(pos);
            bar.set_message(msg);
        }
        if let Some(bar) = &self.status {
            bar.set_message(status);
        }
    }

    fn end(&mut self) {
        if let Some(bar) = self.phase.take() {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }

    fn close(&mut self) {
        self.end();
        if let Some(bar) = self.status.take() {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
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

struct Demo {
    plan: Plan,
    genesis: Block,
    nodes: Vec<Node>,
    network: Network,
    salts: SimRng,
    peers: SimRng,
    payloads: SimRng,
    limits: SyncLimits,
    counters: Counters,
    appended: BTreeSet<Cid>,
    /// Events the last replica to shut down held.
    last_held: usize,
}

/// Runs the demo.
pub async fn run(args: &Args, out: &mut dyn Write) -> Result<ExitCode> {
    check(args)?;
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let pause = Duration::from_millis(args.tick_ms.unwrap_or(if tty { 30 } else { 0 }));
    let mut display = Display::new(out, tty);
    let (base, _cleanup) = store_dir(args)?;
    let mut demo = Demo::new(args, &base)?;

    display.line(&format!(
        "mclock demo: {} replicas, {} events each, seed {}; every replica has its own redb store",
        args.nodes, args.events, args.seed
    ))?;
    display.line(&format!(
        "stores in {}{}",
        base.display(),
        if args.keep.is_some() { "" } else { " (removed at the end; --keep DIR keeps them)" }
    ))?;
    display.line("")?;

    let phases = demo.phases(args);
    let mut track = Track::default();
    let mut t: Tick = 0;
    loop {
        if t == demo.plan.bounds[track.phase] {
            let (name, what) = &phases[track.phase];
            let (ticks, len, unit) = match demo.plan.bounds.get(track.phase + 1) {
                Some(&end) => (format!("ticks {t}–{}", end - 1), end - t, "ticks"),
                None => (format!("ticks {t}–"), demo.plan.nodes as u64, "replicas agree"),
            };
            display.line(&format!("[{}/5] {name:<19} {ticks:<12} {what}", track.phase + 1))?;
            display.begin(&format!("[{}/5] {name}", track.phase + 1), len, unit);
            track.phase_start = demo.counters;
            track.phase_events = demo.appended.len();
        }
        demo.tick(t, &mut track).await?;

        let c = demo.counters.since(&track.phase_start);
        let pos = match demo.plan.bounds.get(track.phase + 1) {
            Some(_) => t + 1 - demo.plan.bounds[track.phase],
            None => demo.agreeing() as u64,
        };
        display.progress(
            pos,
            format!("{} msgs, {} lost, {} cut", c.messages, c.lost + c.undeliverable, c.cut),
            format!(
                "events {} · messages {} ({}) · replicas up {}/{}",
                demo.appended.len() + 1,
                demo.counters.messages,
                human_bytes(demo.counters.bytes),
                demo.nodes.iter().filter(|n| n.status == Status::Up).count(),
                demo.plan.nodes
            ),
        );
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }

        let calm_from = demo.plan.calm_from();
        if t >= calm_from && track.converged_at.is_none() && demo.quiescent() {
            track.converged_at = Some(t);
        }
        let phase_over = match demo.plan.bounds.get(track.phase + 1) {
            Some(&end) => t + 1 == end,
            None => track.converged_at.is_some() || t >= calm_from + MAX_QUIET_TICKS,
        };
        if phase_over {
            display.end();
            display.line(&track.done_line(&demo))?;
            track.phase += 1;
            if track.phase == phases.len() {
                break;
            }
        }
        t += 1;
    }
    display.close();

    let verdict = demo.verdict(track.converged_at.is_some())?;
    let picture = demo.picture(args, &verdict).await?;
    std::fs::write(&args.output, draw::svg(&picture))
        .map_err(|e| format!("cannot write {}: {e}", args.output.display()))?;
    summary(&mut display, args, &demo, &track, &verdict, &picture, t + 1)?;
    display.line(&format!("  time         {:.2} s", started.elapsed().as_secs_f64()))?;
    demo.close()?;
    if !verdict.agree {
        return Err("the replicas did not converge".into());
    }
    Ok(ExitCode::SUCCESS)
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
    reopened_with: usize,
    /// Messages undeliverable by the end of the restart's downtime.
    down_undeliverable: u64,
}

impl Track {
    /// The line that reports the end of the current phase.
    fn done_line(&self, demo: &Demo) -> String {
        let p = &demo.plan;
        let c = demo.counters.since(&self.phase_start);
        let new_events = demo.appended.len() - self.phase_events;
        match self.phase {
            0 => format!(
                "      done: {new_events} events appended; {} messages ({}), {} lost, {} duplicated",
                c.messages,
                human_bytes(c.bytes),
                c.lost,
                c.duplicated
            ),
            1 => format!(
                "      done: {new_events} events appended; the sides hold {} and {} events; {} messages cut by the partition",
                demo.held(0),
                demo.held(p.split),
                c.cut
            ),
            2 => {
                let merged = match (self.healed_at, &self.heal_target) {
                    (Some(at), Some((from, target))) => format!(
                        "the two sides merged their {} events {} ticks after the heal",
                        target.len(),
                        at + 1 - from
                    ),
                    _ => "the two sides are still merging".into(),
                };
                let joined = match (self.joined_at, &self.join_target) {
                    (Some(at), Some(target)) => format!(
                        "n{} caught up with the {} events then known in {} ticks",
                        p.late,
                        target.len(),
                        at + 1 - p.join_at
                    ),
                    _ => format!("n{} is still catching up", p.late),
                };
                format!("      done: {merged}; {joined}")
            }
            3 => format!(
                "      done: n{} held {} events when it stopped and reopened with {} ({}); {} messages to it were lost while down",
                p.restarted,
                self.held_at_down,
                self.reopened_with,
                if self.reopened_with == self.held_at_down { "nothing lost" } else { "SOME LOST" },
                self.down_undeliverable.saturating_sub(self.phase_start.undeliverable)
            ),
            _ => match self.converged_at {
                Some(at) => format!(
                    "      done: all {} replicas agree {} ticks after the network went quiet ({} messages)",
                    p.nodes,
                    at + 1 - p.calm_from(),
                    c.messages
                ),
                None => format!("      gave up: no agreement after {MAX_QUIET_TICKS} ticks of quiet network"),
            },
        }
    }
}

/// The final state, checked from every replica.
struct Verdict {
    heads: Vec<Cid>,
    order: Vec<Cid>,
    /// Every replica is up and holds exactly the genesis and every event
    /// appended, with the same heads and order.
    agree: bool,
}

fn summary(
    display: &mut Display<'_>,
    args: &Args,
    demo: &Demo,
    track: &Track,
    verdict: &Verdict,
    picture: &draw::Picture,
    ticks: Tick,
) -> Result<()> {
    let p = &demo.plan;
    let c = demo.counters;
    let calm_from = p.calm_from();
    let heads = &verdict.heads;
    let s = if heads.len() == 1 { "" } else { "s" };
    let mut fingerprint = Vec::with_capacity(verdict.order.len() * 36);
    for cid in &verdict.order {
        fingerprint.extend_from_slice(&cid.to_bytes());
    }
    display.line("")?;
    display.line("summary")?;
    display.line(&format!(
        "  replicas     {} (n{} joined late with only the genesis, n{} restarted from its redb file)",
        p.nodes, p.late, p.restarted
    ))?;
    display.line(&format!(
        "  events       {} = 1 genesis + {} appended ({} replicas × {})",
        demo.appended.len() + 1,
        demo.appended.len(),
        p.nodes,
        args.events
    ))?;
    display.line(&format!(
        "  ticks        {ticks} (faults until tick {}, {})",
        calm_from - 1,
        track.converged_at.map_or("no agreement".into(), |at| format!("every replica agreed at tick {at}"))
    ))?;
    display.line(&format!(
        "  messages     {} sent, {}: {} lost, {} duplicated, {} cut by the partition, {} to a replica that was down",
        c.messages,
        human_bytes(c.bytes),
        c.lost,
        c.duplicated,
        c.cut,
        c.undeliverable
    ))?;
    display.line(&format!(
        "  round trips  {} after the network went quiet (a message takes one tick each way)",
        track.converged_at.map_or("-".into(), |at| (at + 1 - calm_from).div_ceil(2).to_string())
    ))?;
    display.line(&format!(
        "  sessions     {} reset by a timeout, {} by a reconnect; {} protocol errors",
        c.timeouts, c.reconnects, c.errors
    ))?;
    if verdict.agree {
        display.line(&format!(
            "  converged    yes: all {} replicas hold the same {} events, the same {} head{s} and the same order",
            p.nodes,
            verdict.order.len(),
            heads.len(),
        ))?;
    } else {
        display.line("  converged    NO: the replicas differ")?;
    }
    display.line(&format!("  order        fingerprint {} on every replica", short_cid(&cid_of(&fingerprint))))?;
    for (i, h) in heads.iter().enumerate() {
        display.line(&format!("  {}{h}", if i == 0 { "heads        " } else { "             " }))?;
    }
    let total_layers = picture.layers.last().map_or(0, |l| l.height) + 1;
    display.line(&format!(
        "  picture      {} ({} events in {} of {total_layers} layers, coloured by replica)",
        args.output.display(),
        picture.nodes.len(),
        picture.layers.len()
    ))?;
    Ok(())
}

fn human_bytes(n: u64) -> String {
    if n < 10 * 1024 {
        format!("{n} B")
    } else if n < 10 * 1024 * 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
    }
}

impl Demo {
    fn new(args: &Args, base: &Path) -> Result<Demo> {
        let mut master = SimRng::new(args.seed);
        let mut schedule_rng = master.fork();
        let network_rng = master.fork();
        let plan = Plan::new(args, &mut schedule_rng);
        let faults = Faults { loss: args.loss, dup: DUP, base_delay: 1, reorder: REORDER };
        let network = Network::new(network_rng, faults, vec![plan.partition()]);
        let genesis = Event::genesis(Ipld::Map(BTreeMap::from([
            ("demo".to_string(), Ipld::String("mclock".into())),
            ("seed".to_string(), Ipld::Integer(i128::from(args.seed))),
        ])))
        .encode()?;
        let nodes = (0..args.nodes)
            .map(|i| Node {
                dir: base.join(format!("node-{i}")),
                replica: None,
                status: Status::Absent,
                sessions: BTreeMap::new(),
                saved: BTreeMap::new(),
                owed: 0,
                seq: 0,
            })
            .collect();
        Ok(Demo {
            plan,
            genesis,
            nodes,
            network,
            salts: master.fork(),
            peers: master.fork(),
            payloads: master.fork(),
            limits: SyncLimits::default(),
            counters: Counters::default(),
            appended: BTreeSet::new(),
            last_held: 0,
        })
    }

    /// The name and description of each phase.
    fn phases(&self, args: &Args) -> [(String, String); 5] {
        let p = &self.plan;
        let names = |range: std::ops::Range<usize>| range.map(|i| format!("n{i}")).collect::<Vec<_>>().join(" ");
        [
            (
                "lossy network".into(),
                format!(
                    "{} write; {:.0}% of messages lost, {:.0}% delivered twice, up to {REORDER} ticks of reordering",
                    names(0..p.late),
                    args.loss * 100.0,
                    DUP * 100.0
                ),
            ),
            ("partition".into(), format!("{{{}}} | {{{}}} write apart", names(0..p.split), names(p.split..p.late))),
            (
                "heal + late joiner".into(),
                format!("the partition heals; n{} joins at tick {} with only the genesis", p.late, p.join_at),
            ),
            (
                "restart".into(),
                format!("n{} shuts down at tick {}, reopens its redb file at tick {}", p.restarted, p.down_at, p.up_at),
            ),
            ("quiet network".into(), "no more faults: anti-entropy until every replica agrees".into()),
        ]
    }

    /// One tick: lifecycle, appends, deliveries (each answered at once), anti-entropy.
    async fn tick(&mut self, t: Tick, track: &mut Track) -> Result<()> {
        if t == self.plan.bounds[2] {
            track.heal_target = Some((t, self.union()));
        }
        self.lifecycle(t).await?;
        if t == self.plan.join_at {
            track.join_target = Some(self.union());
        }
        if t == self.plan.down_at {
            track.held_at_down = self.last_held;
        }
        if t == self.plan.up_at {
            track.reopened_with = self.held(self.plan.restarted);
        }
        if t == self.plan.calm_from() {
            self.network.faults = Faults::NONE;
        }
        self.appends(t).await?;
        self.deliver(t).await;
        if (self.plan.down_at..self.plan.up_at).contains(&t) {
            track.down_undeliverable = self.counters.undeliverable;
        }
        self.anti_entropy(t).await;
        if let (Some((_, target)), None) = (&track.heal_target, track.healed_at)
            && (0..self.plan.late).all(|n| self.holds_all(n, target))
        {
            track.healed_at = Some(t);
        }
        if let (Some(target), None) = (&track.join_target, track.joined_at)
            && self.holds_all(self.plan.late, target)
        {
            track.joined_at = Some(t);
        }
        Ok(())
    }

    /// Checks the claim from every replica.
    fn verdict(&self, converged: bool) -> Result<Verdict> {
        let first = self.nodes[0].replica.as_ref().ok_or("replica n0 is not up")?;
        let heads = first.heads();
        let order: Vec<Cid> = first.order().collect();
        let mut want = self.appended.clone();
        want.insert(*self.genesis.cid());
        let same = |r: &Replica<RedbBlockstore>| {
            r.heads() == heads && r.order().eq(order.iter().copied()) && r.pending().events == 0
        };
        let agree = converged
            && self.nodes.iter().all(|n| n.replica.as_ref().is_some_and(same))
            && order.iter().copied().collect::<BTreeSet<Cid>>() == want;
        Ok(Verdict { heads, order, agree })
    }

    /// The picture of the final DAG, events coloured by the replica that wrote them.
    async fn picture(&self, args: &Args, verdict: &Verdict) -> Result<draw::Picture> {
        let first = self.nodes[0].replica.as_ref().ok_or("replica n0 is not up")?;
        let heads = verdict.heads.len();
        let opts = draw::Options {
            color_by: Some("node".into()),
            title: Some(format!(
                "mclock demo · seed {} · {} replicas · {} events · {heads} head{}",
                args.seed,
                self.plan.nodes,
                verdict.order.len(),
                if heads == 1 { "" } else { "s" }
            )),
            ..draw::Options::default()
        };
        draw::build(first, &opts).await
    }

    /// Closes every store cleanly (durably, so kept stores open as they were).
    fn close(&mut self) -> Result<()> {
        for node in &mut self.nodes {
            if let Some(r) = node.replica.take() {
                let store = Arc::clone(r.store());
                drop(r);
                if let Ok(db) = Arc::try_unwrap(store) {
                    db.close()?;
                }
            }
        }
        Ok(())
    }

    /// Every event held by some live replica.
    fn union(&self) -> BTreeSet<Cid> {
        let mut all = BTreeSet::new();
        for node in &self.nodes {
            if let Some(r) = &node.replica {
                all.extend(r.order());
            }
        }
        all
    }

    fn held(&self, n: NodeId) -> usize {
        self.nodes[n].replica.as_ref().map_or(0, Replica::len)
    }

    fn holds_all(&self, n: NodeId, target: &BTreeSet<Cid>) -> bool {
        self.nodes[n].replica.as_ref().is_some_and(|r| target.iter().all(|c| r.contains(c)))
    }

    /// Live replicas that hold every event appended so far.
    fn agreeing(&self) -> usize {
        let want = self.appended.len() + 1;
        self.nodes.iter().filter(|n| n.replica.as_ref().is_some_and(|r| r.len() == want)).count()
    }

    /// Whether every replica is up and holds the same events, heads and order.
    fn quiescent(&self) -> bool {
        let mut replicas = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            match (&node.replica, node.status) {
                (Some(r), Status::Up) => replicas.push(r),
                _ => return false,
            }
        }
        let want = self.appended.len() + 1;
        let first = replicas[0];
        let heads = first.heads();
        if replicas.iter().any(|r| r.len() != want || r.heads() != heads || r.pending().events != 0) {
            return false;
        }
        replicas.iter().all(|r| r.order().eq(first.order()))
    }

    async fn lifecycle(&mut self, t: Tick) -> Result<()> {
        let (nodes, late) = (self.plan.nodes, self.plan.late);
        if t == 0 {
            for n in (0..nodes).filter(|&n| n != late) {
                self.join(n).await?;
            }
        }
        if t == self.plan.bounds[2] {
            // The partition heals: the separated pairs reconnect.
            let partition = self.plan.partition();
            for a in 0..self.nodes.len() {
                let peers: Vec<NodeId> =
                    self.nodes[a].sessions.keys().copied().filter(|&b| partition.separates(a, b)).collect();
                for b in peers {
                    self.reset(a, b, false);
                }
            }
        }
        if t == self.plan.join_at {
            self.join(self.plan.late).await?;
            self.reconnect(self.plan.late);
        }
        if t == self.plan.down_at {
            self.down(self.plan.restarted)?;
        }
        if t == self.plan.up_at {
            self.up(self.plan.restarted).await?;
        }
        Ok(())
    }

    async fn join(&mut self, n: NodeId) -> Result<()> {
        let replica = store::create(&self.nodes[n].dir, &self.genesis, Durability::Eventual).await?;
        self.nodes[n].replica = Some(replica);
        self.nodes[n].status = Status::Up;
        Ok(())
    }

    /// Shuts a node down cleanly: its replica goes, its redb file is closed,
    /// the durable parts of its sync states are kept.
    fn down(&mut self, n: NodeId) -> Result<()> {
        let node = &mut self.nodes[n];
        let Some(replica) = node.replica.take() else { return Ok(()) };
        self.last_held = replica.len();
        let node = &mut self.nodes[n];
        node.status = Status::Down;
        let sessions = std::mem::take(&mut node.sessions);
        node.saved = sessions.into_iter().map(|(p, s)| (p, s.state.encode())).collect();
        let store = Arc::clone(replica.store());
        drop(replica);
        match Arc::try_unwrap(store) {
            Ok(db) => db.close()?,
            Err(_) => return Err("the store of a stopped replica is still in use".into()),
        }
        Ok(())
    }

    /// Reopens a node from its redb file and its saved sync states.
    async fn up(&mut self, n: NodeId) -> Result<()> {
        let dir = self.nodes[n].dir.clone();
        let db = store::open_db(&dir, Durability::Eventual)?;
        let replica = Replica::open(Arc::new(db), self.genesis.cid(), ReplicaConfig::default()).await?;
        let saved = std::mem::take(&mut self.nodes[n].saved);
        for (peer, bytes) in saved {
            let mut state = SyncState::decode(&bytes).unwrap_or_else(|_| SyncState::new());
            state.reseed(self.salts.next_u64());
            self.nodes[n].sessions.insert(peer, Session { state, awaiting: None, backoff: 0 });
        }
        self.nodes[n].replica = Some(replica);
        self.nodes[n].status = Status::Up;
        self.reconnect(n);
        Ok(())
    }

    /// `n` (re)connected: it and every peer reset their sessions with each other.
    fn reconnect(&mut self, n: NodeId) {
        let peers: Vec<NodeId> = self.nodes[n].sessions.keys().copied().collect();
        for p in peers {
            self.reset(n, p, false);
        }
        for a in 0..self.nodes.len() {
            if a != n && self.nodes[a].sessions.contains_key(&n) {
                self.reset(a, n, false);
            }
        }
    }

    fn reset(&mut self, a: NodeId, b: NodeId, timeout: bool) {
        let Some(session) = self.nodes[a].sessions.get_mut(&b) else { return };
        session.state.reset();
        session.awaiting = None;
        if timeout {
            session.backoff += 1;
            self.counters.timeouts += 1;
        } else {
            session.backoff = 0;
            self.counters.reconnects += 1;
        }
    }

    async fn appends(&mut self, t: Tick) -> Result<()> {
        if let Some(due) = self.plan.appends.get(&t) {
            for &n in due {
                self.nodes[n].owed += 1;
            }
        }
        for n in 0..self.nodes.len() {
            while self.nodes[n].owed > 0 && self.nodes[n].status == Status::Up {
                self.nodes[n].owed -= 1;
                let todo = TODOS[self.payloads.index(TODOS.len())];
                let node = &mut self.nodes[n];
                node.seq += 1;
                let payload = Ipld::Map(BTreeMap::from([
                    ("node".to_string(), Ipld::String(format!("n{n}"))),
                    ("seq".to_string(), Ipld::Integer(i128::from(node.seq))),
                    ("todo".to_string(), Ipld::String(todo.into())),
                ]));
                let replica = node.replica.as_mut().ok_or("an up node has a replica")?;
                let cid = replica.append(&payload).await?;
                self.appended.insert(cid);
            }
        }
        Ok(())
    }

    fn session(&mut self, a: NodeId, b: NodeId) -> &mut Session {
        let salts = &mut self.salts;
        self.nodes[a].sessions.entry(b).or_insert_with(|| Session {
            state: SyncState::with_seed(salts.next_u64()),
            awaiting: None,
            backoff: 0,
        })
    }

    async fn deliver(&mut self, t: Tick) {
        while let Some(env) = self.network.next_due(t) {
            let (from, to) = (env.from, env.to);
            if self.nodes[to].status != Status::Up {
                self.counters.undeliverable += 1;
                continue;
            }
            if self.network.cut(from, to, t) {
                self.counters.cut += 1;
                continue;
            }
            self.counters.delivered += 1;
            self.session(to, from);
            let limits = self.limits;
            let node = &mut self.nodes[to];
            let (Some(replica), Some(session)) = (node.replica.as_mut(), node.sessions.get_mut(&from)) else {
                continue;
            };
            session.awaiting = None;
            session.backoff = 0;
            let ok = match Message::decode(&env.bytes, &limits) {
                Ok(m) => match receive_message(replica, &mut session.state, m).await {
                    Ok(received) => received.rejected == 0,
                    Err(_) => false,
                },
                Err(_) => false,
            };
            if !ok {
                self.counters.errors += 1;
            }
            // The receiver answers at once.
            self.speak(t, to, from).await;
        }
    }

    async fn anti_entropy(&mut self, t: Tick) {
        let n = self.nodes.len();
        for a in 0..n {
            if self.nodes[a].status != Status::Up {
                continue;
            }
            // Peers it knows of: ring neighbours and one random peer, among
            // the replicas that have joined.
            let joined: Vec<NodeId> = (0..n).filter(|&b| b != a && self.nodes[b].status != Status::Absent).collect();
            if joined.is_empty() {
                continue;
            }
            let next = (1..n).map(|k| (a + k) % n).find(|b| joined.contains(b));
            let prev = (1..n).map(|k| (a + n - k) % n).find(|b| joined.contains(b));
            let random = joined[self.peers.index(joined.len())];
            let mut peers: Vec<NodeId> = [next, prev, Some(random)].into_iter().flatten().collect();
            let mut seen = BTreeSet::new();
            peers.retain(|p| seen.insert(*p));
            for b in peers {
                let session = self.session(a, b);
                if let Some(sent) = session.awaiting
                    && t >= sent + (SESSION_TIMEOUT << session.backoff.min(3))
                {
                    self.reset(a, b, true);
                }
                self.speak(t, a, b).await;
            }
        }
    }

    /// Asks `a`'s protocol for a message to `b` and sends it.
    async fn speak(&mut self, t: Tick, a: NodeId, b: NodeId) {
        self.session(a, b);
        let node = &mut self.nodes[a];
        let (Some(replica), Some(session)) = (node.replica.as_ref(), node.sessions.get_mut(&b)) else { return };
        match generate_message(replica, &mut session.state).await {
            Ok(None) => {}
            Ok(Some(m)) => {
                let bytes = m.encode();
                session.awaiting = Some(t);
                self.counters.messages += 1;
                self.counters.bytes += bytes.len() as u64;
                match self.network.send(t, a, b, bytes) {
                    Sent::Queued(_) => {}
                    Sent::Duplicated(..) => self.counters.duplicated += 1,
                    Sent::Lost => self.counters.lost += 1,
                    Sent::Partitioned => self.counters.cut += 1,
                }
            }
            Err(_) => self.counters.errors += 1,
        }
    }
}
