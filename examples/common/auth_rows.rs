//! The signed-stream measurements (`ingest_signed`, `append_signed`,
//! `membership_check_growth`), shared by `auth_report` and `perf_report`
//! (each includes this file with `#[path]`): each function measures and
//! returns its figures; the reports print them. See `auth_report.rs` for
//! what each row measures and its target.

use std::sync::Arc;
use std::time::Duration;

use super::cpu::Stopwatch;

use futures::executor::block_on;
use merkle_clock::auth::{self, Role, Signer};
use merkle_clock::{Block, Cid, Event, MemoryBlockstore, Replica, ReplicaConfig};

type Mem = Replica<MemoryBlockstore>;

fn fresh(genesis: &Block) -> Mem {
    block_on(Replica::create(Arc::new(MemoryBlockstore::new()), genesis, ReplicaConfig::default())).expect("create")
}

fn payload(i: usize) -> String {
    format!("event {i:>8} {}", "x".repeat(100))
}

/// A stream with `admin` and a granted `writer`; the grant block.
fn signed_stream(admin: &Signer, writer: &Signer) -> (Block, Block) {
    let genesis = auth::genesis(&"auth report", &[admin.public()]).expect("genesis");
    let s = *genesis.cid();
    let op = auth::MemberOp::Grant { key: writer.public(), role: Role::Writer };
    let grant = auth::signed_event(&s, 1, &[s], Some(&op), &merkle_clock::Ipld::Null, admin).expect("grant");
    (genesis, grant)
}

/// `ingest_signed`'s figures, in events per second.
pub struct IngestSigned {
    /// Signed blocks through `ingest_many`.
    pub signed: f64,
    /// Unsigned blocks of the same shape on an open stream.
    pub unsigned: f64,
    /// Bare `verify_strict` of the same signatures.
    pub verify: f64,
    /// (unsigned + verify time) / signed time.
    pub ratio: f64,
}

impl IngestSigned {
    /// The target: the ratio at least this.
    pub const TARGET: f64 = 0.9;
}

/// Measures `ingest_signed` over `n` events, CPU time summed over `rounds`.
pub fn ingest_signed(n: usize, rounds: usize) -> IngestSigned {
    let (admin, writer) = (Signer::from_seed(&[1; 32]), Signer::from_seed(&[2; 32]));
    let (genesis, grant) = signed_stream(&admin, &writer);
    let s = *genesis.cid();
    let mut signed = vec![grant.clone()];
    let mut prev = *grant.cid();
    for i in 0..n {
        let b = auth::signed_event(&s, i as u64 + 2, &[prev], None, &payload(i), &writer).expect("event");
        prev = *b.cid();
        signed.push(b);
    }
    let open = Event::genesis("auth report, unsigned").encode().expect("genesis");
    let mut unsigned = Vec::with_capacity(n);
    let mut prev = *open.cid();
    for i in 0..n {
        let b = Event::new(i as u64 + 1, vec![prev], payload(i)).encode().expect("event");
        prev = *b.cid();
        unsigned.push(b);
    }
    // The bare verification's inputs, prepared outside the clock.
    let key = ed25519_dalek::VerifyingKey::from_bytes(writer.public().as_bytes()).expect("key");
    let inputs: Vec<(Vec<u8>, ed25519_dalek::Signature)> = signed[1..]
        .iter()
        .map(|b| {
            let input = auth::signing_input(&s, b).expect("decodes").expect("signed");
            let sig: [u8; 64] = b.bytes()[7..71].try_into().expect("64 bytes");
            (input, ed25519_dalek::Signature::from_bytes(&sig))
        })
        .collect();
    let ingest = |genesis: &Block, blocks: &[Block]| {
        let mut r = fresh(genesis);
        let t = Stopwatch::start();
        for chunk in blocks.chunks(1000) {
            let report = block_on(r.ingest_many(chunk.to_vec())).expect("ingest");
            assert_eq!(report.accepted.len(), chunk.len());
        }
        t.stop().cpu
    };
    let (mut t_signed, mut t_unsigned, mut t_verify) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        t_signed += ingest(&genesis, &signed);
        t_unsigned += ingest(&open, &unsigned);
        t_verify += {
            let t = Stopwatch::start();
            for (input, sig) in &inputs {
                key.verify_strict(input, sig).expect("verifies");
            }
            t.stop().cpu
        };
    }
    let rate = |d: Duration| (n * rounds) as f64 / d.as_secs_f64();
    IngestSigned {
        signed: rate(t_signed),
        unsigned: rate(t_unsigned),
        verify: rate(t_verify),
        ratio: (t_unsigned + t_verify).as_secs_f64() / t_signed.as_secs_f64(),
    }
}

/// `append_signed`'s figures, in events per second.
pub struct AppendSigned {
    /// `Replica::append` with a signer.
    pub append: f64,
    /// Bare sign + encode + hash of the same events.
    pub bare: f64,
    /// bare time / append time.
    pub ratio: f64,
}

impl AppendSigned {
    /// The target: the ratio at least this.
    pub const TARGET: f64 = 0.7;
}

/// Measures `append_signed` over `n` events, CPU time summed over `rounds`.
pub fn append_signed(n: usize, rounds: usize) -> AppendSigned {
    let (admin, writer) = (Signer::from_seed(&[1; 32]), Signer::from_seed(&[2; 32]));
    let (genesis, grant) = signed_stream(&admin, &writer);
    let s = *genesis.cid();
    let payloads: Vec<String> = (0..n).map(payload).collect();
    let (mut t_append, mut t_bare) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let mut r = fresh(&genesis);
        block_on(r.ingest(grant.clone())).expect("grant");
        r.set_signer(Some(writer.clone()));
        let t = Stopwatch::start();
        for p in &payloads {
            block_on(r.append(p)).expect("append");
        }
        t_append += t.stop().cpu;
        let t = Stopwatch::start();
        let mut prev: Cid = *grant.cid();
        for (i, p) in payloads.iter().enumerate() {
            prev = *auth::signed_event(&s, i as u64 + 2, &[prev], None, p, &writer).expect("event").cid();
        }
        t_bare += t.stop().cpu;
    }
    let rate = |d: Duration| (n * rounds) as f64 / d.as_secs_f64();
    AppendSigned { append: rate(t_append), bare: rate(t_bare), ratio: t_bare.as_secs_f64() / t_append.as_secs_f64() }
}

/// A replica holding `history` signed events with 100 grants and
/// revocations spread through it; the writer who writes the probes.
fn history(history: usize) -> (Mem, Signer, Block) {
    let (admin, writer) = (Signer::from_seed(&[1; 32]), Signer::from_seed(&[2; 32]));
    let (genesis, grant) = signed_stream(&admin, &writer);
    let mut r = fresh(&genesis);
    block_on(r.ingest(grant)).expect("grant");
    let ops = 100;
    let stretch = history / ops;
    let others: Vec<Signer> = (0..ops / 2).map(|i| Signer::from_seed(&[10 + i as u8; 32])).collect();
    let mut written = 0;
    for k in 0..ops {
        r.set_signer(Some(writer.clone()));
        let payloads: Vec<String> = (written..written + stretch - 1).map(payload).collect();
        written += payloads.len();
        for chunk in payloads.chunks(10_000) {
            block_on(r.append_many(chunk.iter())).expect("append");
        }
        r.set_signer(Some(admin.clone()));
        let other = &others[k / 2];
        if k % 2 == 0 {
            block_on(r.grant(other.public(), Role::Writer)).expect("grant");
        } else {
            block_on(r.revoke(other.public())).expect("revoke");
        }
        written += 1;
    }
    (r, writer, genesis)
}

/// The per-event cost of ingesting `probes` signed children of the head, one at a time (CPU time over `rounds`).
fn probe(r: &mut Mem, writer: &Signer, genesis: &Block, probes: usize, rounds: usize) -> Duration {
    let s = *genesis.cid();
    let mut total = Duration::ZERO;
    for round in 0..rounds {
        let head = r.heads()[0];
        let height = r.dag().height(r.dag().id(&head).expect("head"));
        let mut blocks = Vec::with_capacity(probes);
        let mut prev = head;
        for i in 0..probes {
            let b = auth::signed_event(&s, height + 1 + i as u64, &[prev], None, &payload(round * probes + i), writer)
                .expect("probe");
            prev = *b.cid();
            blocks.push(b);
        }
        let t = Stopwatch::start();
        for b in blocks {
            block_on(r.ingest(b)).expect("ingest");
        }
        total += t.stop().cpu;
    }
    total / (probes * rounds) as u32
}

/// `membership_check_growth`'s figures.
pub struct MembershipGrowth {
    /// Events of the large history.
    pub big: usize,
    /// One event's validation at `big` events, in microseconds.
    pub large_us: f64,
    /// The same at 1,000 events.
    pub small_us: f64,
    /// large / small.
    pub ratio: f64,
}

impl MembershipGrowth {
    /// The target: the ratio at most this.
    pub const TARGET: f64 = 1.5;
}

/// Measures `membership_check_growth` at `big` events over 1,000, over `rounds`.
pub fn membership_check_growth(big: usize, rounds: usize) -> MembershipGrowth {
    let probes = 2_000;
    let (mut small, w, g) = history(1_000);
    let small_cost = probe(&mut small, &w, &g, probes, rounds);
    drop(small);
    let (mut large, w, g) = history(big);
    let large_cost = probe(&mut large, &w, &g, probes, rounds);
    MembershipGrowth {
        big,
        large_us: large_cost.as_secs_f64() * 1e6,
        small_us: small_cost.as_secs_f64() * 1e6,
        ratio: large_cost.as_secs_f64() / small_cost.as_secs_f64(),
    }
}

/// The sizes of a run: events for the rates, rounds, and the large history.
pub fn sizes(quick: bool) -> (usize, usize, usize) {
    if quick { (5_000, 3, 100_000) } else { (20_000, 5, 1_000_000) }
}
