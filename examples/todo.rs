//! A todo app: three replicas edit a shared todo list while
//! partitioned, exchange blocks, converge — and then read the same event log
//! in two ways, to show what the log keeps that last-writer-wins throws away.
//!
//! Run: `cargo run --example todo`. Exits non-zero unless the three replicas
//! end in equal states under both interpretations.

use std::collections::BTreeMap;
use std::sync::Arc;

use merkle_clock::crdt::{CheckpointPolicy, Fold, FoldEvent, FoldReport, Log, Reducer};
use merkle_clock::replica::{Replica, ReplicaConfig};
use merkle_clock::{Block, Cid, Event, Ingest, MemoryBlockstore, short_cid};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// The events: a `todo_events` table, one event per row. A todo's id
// is the CID of its `create` event. `by` names the author; it also keeps two
// people's identical edits on the same heads from being one event.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum TodoOp {
    Create { by: String },
    SetContent { by: String, todo: Cid, content: String },
    AddToList { by: String, todo: Cid, list: String },
    Complete { by: String, todo: Cid, done: bool },
}

impl TodoOp {
    fn by(&self) -> &str {
        match self {
            TodoOp::Create { by }
            | TodoOp::SetContent { by, .. }
            | TodoOp::AddToList { by, .. }
            | TodoOp::Complete { by, .. } => by,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Todo {
    content: String,
    list: String,
    complete: bool,
}

// ---------------------------------------------------------------------------
// Interpretation 1: last writer wins, per field. Folding in the total order
// and overwriting *is* LWW with the (height, CID) rule: no clocks per column.
// ---------------------------------------------------------------------------

struct LastWriterWins;

impl Reducer for LastWriterWins {
    type Payload = TodoOp;
    type State = BTreeMap<Cid, Todo>;

    fn init(&self) -> Self::State {
        BTreeMap::new()
    }

    fn apply(&self, todos: &mut Self::State, e: &FoldEvent<TodoOp>) {
        match &e.payload {
            TodoOp::Create { .. } => {
                todos.entry(e.cid).or_default();
            }
            TodoOp::SetContent { todo, content, .. } => todos.entry(*todo).or_default().content = content.clone(),
            TodoOp::AddToList { todo, list, .. } => todos.entry(*todo).or_default().list = list.clone(),
            TodoOp::Complete { todo, done, .. } => todos.entry(*todo).or_default().complete = *done,
        }
    }
}

// ---------------------------------------------------------------------------
// Interpretation 2, decided after the fact: a completed todo cannot be
// un-completed, and every attempt goes on a "task churn" list for review.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Churn {
    todo: Cid,
    event: Cid,
    by: String,
    /// Who completed it first.
    completed_by: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct StrictState {
    todos: BTreeMap<Cid, Todo>,
    completed_by: BTreeMap<Cid, String>,
    churn: Vec<Churn>,
}

struct NoUncomplete;

impl Reducer for NoUncomplete {
    type Payload = TodoOp;
    type State = StrictState;

    fn init(&self) -> StrictState {
        StrictState::default()
    }

    fn apply(&self, s: &mut StrictState, e: &FoldEvent<TodoOp>) {
        match &e.payload {
            TodoOp::Complete { todo, done: false, by } if s.todos.get(todo).is_some_and(|t| t.complete) => {
                let completed_by = s.completed_by.get(todo).cloned().unwrap_or_default();
                s.churn.push(Churn { todo: *todo, event: e.cid, by: by.clone(), completed_by });
            }
            TodoOp::Complete { todo, done: true, by } if !s.todos.get(todo).is_some_and(|t| t.complete) => {
                s.completed_by.insert(*todo, by.clone());
                LastWriterWins.apply(&mut s.todos, e);
            }
            _ => LastWriterWins.apply(&mut s.todos, e),
        }
    }
}

// ---------------------------------------------------------------------------
// Replicas and block exchange (plain blocks: the sync protocol is elsewhere)
// ---------------------------------------------------------------------------

type R = Replica<MemoryBlockstore>;

struct Peer {
    name: &'static str,
    replica: R,
    lww: Fold<LastWriterWins>,
    strict: Fold<NoUncomplete>,
}

impl Peer {
    async fn new(name: &'static str, genesis: &Block) -> Peer {
        let replica =
            Replica::create(Arc::new(MemoryBlockstore::new()), genesis, ReplicaConfig::default()).await.unwrap();
        // Small checkpoints, so that this tiny history shows replays from them.
        let policy = CheckpointPolicy::new(4, 4);
        Peer {
            name,
            replica,
            lww: Fold::with_policy(LastWriterWins, policy),
            strict: Fold::with_policy(NoUncomplete, policy),
        }
    }

    async fn create(&mut self, content: &str, list: &str) -> Cid {
        let by = self.name.to_string();
        let todo = self.replica.append(&TodoOp::Create { by: by.clone() }).await.unwrap();
        let ops = [
            TodoOp::SetContent { by: by.clone(), todo, content: content.into() },
            TodoOp::AddToList { by, todo, list: list.into() },
        ];
        self.replica.append_many(ops).await.unwrap();
        todo
    }

    async fn op(&mut self, op: TodoOp) -> Cid {
        self.replica.append(&op).await.unwrap()
    }

    fn me(&self) -> String {
        self.name.to_string()
    }

    /// Brings both interpretations up to date; returns the LWW fold's report.
    async fn refresh(&mut self) -> FoldReport {
        let report = self.lww.update(&self.replica).await.unwrap();
        self.strict.update(&self.replica).await.unwrap();
        report
    }
}

/// Sends the blocks of `cids` from one replica to another, in the order given.
async fn send(from: &Peer, to: &mut Peer, cids: &[Cid]) -> Vec<Ingest> {
    let mut blocks = Vec::new();
    for cid in cids {
        blocks.push(from.replica.get(cid).await.unwrap().expect("held"));
    }
    to.replica.ingest_many(blocks).await.unwrap().outcomes
}

/// Full exchange: every replica ingests every other replica's blocks, newest
/// first (so most arrive before their parents and wait in the pending buffer).
async fn sync_all(peers: &mut [Peer]) {
    let all: Vec<Vec<Block>> = peers.iter().map(|p| p.replica.store().blocks()).collect();
    for (i, peer) in peers.iter_mut().enumerate() {
        for (j, blocks) in all.iter().enumerate() {
            if i != j {
                let mut blocks = blocks.clone();
                blocks.sort_by_key(|b| std::cmp::Reverse(b.decode::<merkle_clock::Ipld>().map_or(0, |e| e.height())));
                peer.replica.ingest_many(blocks).await.unwrap();
            }
        }
        assert_eq!(peer.replica.pending().events, 0);
    }
}

fn outcome(o: &Ingest) -> &'static str {
    match o {
        Ingest::Accepted => "accepted",
        Ingest::Duplicate => "duplicate",
        Ingest::Pending { .. } => "pending",
        Ingest::Rejected(_) => "rejected",
    }
}

// ---------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------

fn describe(op: &TodoOp, cid: &Cid, names: &BTreeMap<Cid, String>) -> String {
    let name = |c: &Cid| names.get(c).cloned().unwrap_or_else(|| short_cid(c));
    match op {
        TodoOp::Create { .. } => format!("create       {}", name(cid)),
        TodoOp::SetContent { todo, content, .. } => format!("set_content  {} = {content:?}", name(todo)),
        TodoOp::AddToList { todo, list, .. } => format!("add_to_list  {} = {list:?}", name(todo)),
        TodoOp::Complete { todo, done, .. } => format!("complete     {} = {done}", name(todo)),
    }
}

fn short_label(op: &TodoOp, cid: &Cid, names: &BTreeMap<Cid, String>) -> String {
    let name = |c: &Cid| names.get(c).cloned().unwrap_or_default();
    match op {
        TodoOp::Create { .. } => format!("new {}", name(cid)),
        TodoOp::SetContent { todo, .. } => format!("text {}", name(todo)),
        TodoOp::AddToList { todo, .. } => format!("list {}", name(todo)),
        TodoOp::Complete { todo, done: true, .. } => format!("done {}", name(todo)),
        TodoOp::Complete { todo, done: false, .. } => format!("undo {}", name(todo)),
    }
}

fn print_table(todos: &BTreeMap<Cid, Todo>, names: &BTreeMap<Cid, String>) {
    println!("    {:<4} {:<10} {:<22} {:<8} complete", "id", "cid", "content", "list");
    let mut rows: Vec<_> = todos.iter().collect();
    rows.sort_by_key(|(cid, _)| names.get(cid).cloned());
    for (cid, t) in rows {
        let name = names.get(cid).map_or("?", String::as_str);
        println!(
            "    {:<4} {:<10} {:<22} {:<8} {}",
            name,
            short_cid(cid),
            format!("{:?}", t.content),
            t.list,
            t.complete
        );
    }
}

fn report(name: &str, r: &FoldReport) -> String {
    match (r.replayed_from, r.restored_from) {
        (Some(p), Some(c)) => format!(
            "{name}: late events landed at position {p}: restored the checkpoint at {c}, applied {} events",
            r.applied
        ),
        _ => format!("{name}: appended at the end, applied {} events", r.applied),
    }
}

fn main() {
    // Every future here completes at once (memory stores, no I/O).
    futures::executor::block_on(run());
}

async fn run() {
    let genesis = Event::genesis("todo list").encode().unwrap();
    let mut peers =
        vec![Peer::new("alice", &genesis).await, Peer::new("bob", &genesis).await, Peer::new("carol", &genesis).await];
    println!("stream {}\n", genesis.cid());

    // 1. Connected: everyone creates a todo; full exchange.
    let t1 = peers[0].create("make pasta", "home").await;
    let t2 = peers[1].create("clean", "home").await;
    let t3 = peers[2].create("write", "work").await;
    sync_all(&mut peers).await;
    for p in &mut peers {
        p.refresh().await;
    }
    println!("1. connected: three todos created and exchanged");

    // 2. Partition: {alice, bob} | {carol}.
    let (a, rest) = peers.split_at_mut(1);
    let (b, c) = rest.split_at_mut(1);
    let (alice, bob, carol) = (&mut a[0], &mut b[0], &mut c[0]);
    let done1 = alice.op(TodoOp::Complete { by: alice.me(), todo: t1, done: true }).await;
    let text1 = alice.op(TodoOp::SetContent { by: alice.me(), todo: t1, content: "cook".into() }).await;
    // Only alice's two events reach bob, newest first: the first waits for its parent.
    let first = send(alice, bob, &[text1]).await;
    let second = send(alice, bob, &[done1]).await;
    println!(
        "2. partition {{alice, bob}} | {{carol}}; alice's two new events reach bob newest first: {}, then {} \
         (releasing the first)",
        outcome(&first[0]),
        outcome(&second[0])
    );
    bob.op(TodoOp::Complete { by: bob.me(), todo: t1, done: false }).await; // un-completes what alice completed
    bob.op(TodoOp::AddToList { by: bob.me(), todo: t2, list: "work".into() }).await;
    carol.op(TodoOp::AddToList { by: carol.me(), todo: t2, list: "errands".into() }).await;
    carol.op(TodoOp::SetContent { by: carol.me(), todo: t1, content: "make pasta al pesto".into() }).await;
    carol.op(TodoOp::Complete { by: carol.me(), todo: t3, done: true }).await;
    carol.op(TodoOp::Complete { by: carol.me(), todo: t3, done: false }).await;
    for p in [&mut *alice, &mut *bob, &mut *carol] {
        p.refresh().await;
    }

    // 3. Heal: plain block exchange, then each replica's folds catch up.
    sync_all(&mut peers).await;
    println!("3. healed: every replica ingested every other's blocks");
    for p in &mut peers {
        let r = p.refresh().await;
        println!("   {}", report(p.name, &r));
    }

    // 4. After the merge: alice completes #2; her event has every head as a parent.
    let merge = peers[0].op(TodoOp::Complete { by: "alice".into(), todo: t2, done: true }).await;
    let merged = peers[0].replica.dag().id(&merge).map_or(0, |id| peers[0].replica.dag().parents(id).len());
    sync_all(&mut peers).await;
    for p in &mut peers {
        p.refresh().await;
    }
    println!("4. alice completes #2 on top of the {merged} heads (a merge event); exchanged again\n");

    // --- The log, in the total order --------------------------------------
    let mut log_fold = Fold::new(Log::<TodoOp>::new());
    log_fold.update(&peers[0].replica).await.unwrap();
    let log: Vec<(Cid, u64, TodoOp, usize)> =
        log_fold.state().iter().enumerate().map(|(i, e)| (e.cid, e.height, e.payload.clone(), i + 1)).collect();
    // The seed's todo ids; the real id of a todo is its `create` event's CID.
    let names: BTreeMap<Cid, String> = [(t1, "#1"), (t2, "#2"), (t3, "#3")].map(|(c, n)| (c, n.to_string())).into();
    println!("The event log ({} events after the genesis), sorted by (height, CID):", log.len());
    println!("    {:>3} {:<10} {:>2}  {:<6} event", "pos", "cid", "h", "by");
    for (cid, h, op, pos) in &log {
        println!("    {pos:>3} {:<10} {h:>2}  {:<6} {}", short_cid(cid), op.by(), describe(op, cid, &names));
    }

    // --- The DAG, in layers by height ---------------------------------------
    println!("\nThe DAG, one row per height, one column per author (⇐n: n parents):");
    let authors = ["alice", "bob", "carol"];
    println!("    {:>2}  {:<24}{:<24}{}", "h", authors[0], authors[1], authors[2]);
    println!("    {:>2}  {} genesis", 0, short_cid(genesis.cid()));
    let dag = peers[0].replica.dag();
    let max_h = log.iter().map(|(_, h, ..)| *h).max().unwrap_or(0);
    for h in 1..=max_h {
        let mut cells = vec![Vec::new(); authors.len()];
        for (cid, _, op, _) in log.iter().filter(|(_, eh, ..)| *eh == h) {
            let col = authors.iter().position(|a| *a == op.by()).unwrap_or(0);
            let parents = dag.id(cid).map_or(0, |id| dag.parents(id).len());
            let mark = if parents > 1 { format!(" ⇐{parents}") } else { String::new() };
            cells[col].push(format!("{} {}{mark}", short_cid(cid), short_label(op, cid, &names)));
        }
        let rows = cells.iter().map(Vec::len).max().unwrap_or(0);
        for row in 0..rows {
            let h_label = if row == 0 { h.to_string() } else { String::new() };
            let line: String =
                cells.iter().map(|c| format!("{:<24}", c.get(row).map_or("│", String::as_str))).collect();
            println!("    {h_label:>2}  {}", line.trim_end());
        }
    }

    // --- Two readings of the same log ---------------------------------------
    println!("\nReading 1, last writer wins per field (what an LWW store would keep):");
    print_table(peers[0].lww.state(), &names);
    println!("    concurrent writes to one field, and the one LWW kept (the greater (height, CID)):");
    /// One write to one field of one todo.
    struct Write<'a> {
        cid: Cid,
        height: u64,
        value: String,
        by: &'a str,
    }
    let mut writes: BTreeMap<(Cid, &str), Vec<Write>> = BTreeMap::new();
    for (cid, height, op, _) in &log {
        let (todo, field, value) = match op {
            TodoOp::Create { .. } => continue,
            TodoOp::SetContent { todo, content, .. } => (todo, "content", format!("{content:?}")),
            TodoOp::AddToList { todo, list, .. } => (todo, "list", list.clone()),
            TodoOp::Complete { todo, done, .. } => (todo, "complete", done.to_string()),
        };
        writes.entry((*todo, field)).or_default().push(Write { cid: *cid, height: *height, value, by: op.by() });
    }
    for ((todo, field), ws) in &writes {
        let last = ws.last().expect("non-empty");
        let losers: Vec<String> = ws[..ws.len() - 1]
            .iter()
            .filter(|w| !dag.is_ancestor(&w.cid, &last.cid).unwrap_or(true))
            .map(|w| format!("{} ({}, h{})", w.value, w.by, w.height))
            .collect();
        if !losers.is_empty() {
            println!(
                "      {} {field}: {} ({}, h{}, {}) over {}",
                names.get(todo).map_or("?", String::as_str),
                last.value,
                last.by,
                last.height,
                short_cid(&last.cid),
                losers.join(", ")
            );
        }
    }
    let strict = peers[0].strict.state();
    println!("\nReading 2, \"a completed todo cannot be un-completed\", decided after the fact:");
    print_table(&strict.todos, &names);
    println!("    task churn (un-completions refused, for review):");
    for c in &strict.churn {
        println!(
            "      {} {}: {} tried to un-complete what {} completed",
            short_cid(&c.event),
            names.get(&c.todo).map_or("?", String::as_str),
            c.by,
            c.completed_by
        );
    }
    println!("\nWhat LWW threw away, still in the log: the history of #1:");
    for (cid, _, op, pos) in log.iter().filter(|(cid, _, op, _)| match op {
        TodoOp::Create { .. } => *cid == t1,
        TodoOp::SetContent { todo, .. } | TodoOp::AddToList { todo, .. } | TodoOp::Complete { todo, .. } => *todo == t1,
    }) {
        println!("    {pos:>3} {:<6} {}", op.by(), describe(op, cid, &names));
    }

    // --- Convergence ---------------------------------------------------------
    let same_heads = peers.iter().all(|p| p.replica.heads() == peers[0].replica.heads());
    let same_lww = peers.iter().all(|p| p.lww.state() == peers[0].lww.state());
    let same_strict = peers.iter().all(|p| p.strict.state() == peers[0].strict.state());
    let differ = peers[0].lww.state() != &strict.todos;
    println!(
        "\nconverged: heads {}, LWW states {}, strict states {} across alice, bob and carol \
         (and the two readings differ: {differ})",
        if same_heads { "equal" } else { "DIFFER" },
        if same_lww { "equal" } else { "DIFFER" },
        if same_strict { "equal" } else { "DIFFER" },
    );
    assert!(same_heads && same_lww && same_strict, "the replicas did not converge");
    if !(same_heads && same_lww && same_strict) {
        std::process::exit(1);
    }
}
