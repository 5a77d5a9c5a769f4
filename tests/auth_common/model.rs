//! The model of signed streams, shared by `tests/auth_properties.rs` and
//! the `membership` fuzz target: scenarios of grants, revocations and events
//! by any key on any recent parents, and an independent from-scratch model
//! of which are accepted and what membership each establishes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::executor::block_on;
use merkle_clock::auth::{AuthorKey, MemberOp, Members, Role, Signer};
use merkle_clock::{Block, Cid};

use super::{Builder, Mem, key, replica};

/// How many keys take part; key 0 is the genesis's admin, key 1 a second one.
pub const KEYS: u8 = 5;

/// One step of a scenario: who does what on which parents.
#[derive(Debug, Clone)]
pub struct Step {
    /// 0: grant writer, 1: grant admin, 2: revoke, else a plain event.
    pub kind: u8,
    pub author: u8,
    pub target: u8,
    /// Which recent blocks become parents.
    pub parents: (u8, u8),
}

/// A generated stream: every block built (valid or not), with what the
/// generator knows of it, in creation order (parents first).
pub struct Scenario {
    pub builder: Builder,
    pub blocks: Vec<Block>,
    /// Per block: parents, author, operation.
    pub meta: HashMap<Cid, (Vec<Cid>, AuthorKey, Option<MemberOp>)>,
}

pub fn build(steps: &[Step]) -> Scenario {
    let keys: Vec<Signer> = (1..=KEYS).map(key).collect();
    let mut builder = Builder::new(&[&keys[0], &keys[1]]);
    let mut blocks: Vec<Block> = Vec::new();
    let mut meta = HashMap::new();
    for (i, st) in steps.iter().enumerate() {
        let by = &keys[st.author as usize];
        let target = keys[st.target as usize].public();
        let op = match st.kind {
            0 => Some(MemberOp::Grant { key: target, role: Role::Writer }),
            1 => Some(MemberOp::Grant { key: target, role: Role::Admin }),
            2 => Some(MemberOp::Revoke { key: target }),
            _ => None,
        };
        // Parents among the last few blocks (or the genesis), one or two.
        let pick = |n: u8| -> Option<&Block> {
            if blocks.is_empty() || n % 8 == 7 {
                return None;
            }
            let back = (n as usize % 4).min(blocks.len() - 1);
            Some(&blocks[blocks.len() - 1 - back])
        };
        let mut parents: Vec<&Block> = Vec::new();
        if let Some(p) = pick(st.parents.0) {
            parents.push(p);
        }
        if st.parents.1 % 3 == 0
            && let Some(p) = pick(st.parents.1 / 3)
        {
            parents.push(p);
        }
        let block = builder.event(&parents, by, op, &format!("step {i}"));
        let mut pcids: Vec<Cid> = parents.iter().map(|b| *b.cid()).collect();
        if pcids.is_empty() {
            pcids.push(builder.stream());
        }
        meta.insert(*block.cid(), (pcids, by.public(), op));
        blocks.push(block);
    }
    Scenario { builder, blocks, meta }
}

/// The model: from scratch, per event, the membership its causal past
/// (itself included) establishes, and which events are accepted. Walks the
/// blocks in creation order (parents first); nothing is shared between
/// events, every past is collected anew.
pub struct Model {
    pub accepted: BTreeSet<Cid>,
    pub members: HashMap<Cid, Members>,
}

pub fn membership(genesis_admins: &[AuthorKey], ops: &[(Cid, MemberOp)]) -> Members {
    let mut granted: BTreeMap<AuthorKey, Role> = genesis_admins.iter().map(|k| (*k, Role::Admin)).collect();
    let mut revoked: BTreeMap<AuthorKey, Cid> = BTreeMap::new();
    for (cid, op) in ops {
        match op {
            MemberOp::Grant { key, role } => {
                let r = granted.entry(*key).or_insert(*role);
                if *role > *r {
                    *r = *role;
                }
            }
            MemberOp::Revoke { key } => {
                let e = revoked.entry(*key).or_insert(*cid);
                if *cid < *e {
                    *e = *cid;
                }
            }
        }
    }
    granted.retain(|k, _| !revoked.contains_key(k));
    Members { roles: granted, revoked }
}

pub fn model(s: &Scenario) -> Model {
    let admins = vec![key(1).public(), key(2).public()];
    let stream = s.builder.stream();
    let mut accepted: BTreeSet<Cid> = BTreeSet::new();
    let mut members = HashMap::new();
    for b in &s.blocks {
        let (parents, author, op) = &s.meta[b.cid()];
        if !parents.iter().all(|p| *p == stream || accepted.contains(p)) {
            continue;
        }
        // The strict past: every ancestor, by walking parents (a worklist).
        let mut past: BTreeSet<Cid> = BTreeSet::new();
        let mut work: Vec<Cid> = parents.clone();
        while let Some(c) = work.pop() {
            if c == stream || !past.insert(c) {
                continue;
            }
            work.extend(s.meta[&c].0.iter().copied());
        }
        let ops: Vec<(Cid, MemberOp)> = past.iter().filter_map(|c| s.meta[c].2.map(|op| (*c, op))).collect();
        let before = membership(&admins, &ops);
        let role = before.roles.get(author).copied();
        let admins_in_force = before.roles.values().filter(|r| **r == Role::Admin).count();
        let ok = !before.revoked.contains_key(author)
            && role.is_some()
            && match op {
                None => true,
                Some(_) if role != Some(Role::Admin) => false,
                Some(MemberOp::Grant { key, .. }) => !before.revoked.contains_key(key),
                Some(MemberOp::Revoke { key }) => {
                    !(admins_in_force == 1 && before.roles.get(key) == Some(&Role::Admin))
                }
            };
        if ok {
            accepted.insert(*b.cid());
            let mut with_self = ops;
            if let Some(op) = op {
                with_self.push((*b.cid(), *op));
            }
            members.insert(*b.cid(), membership(&admins, &with_self));
        }
    }
    Model { accepted, members }
}

/// A permutation of `0..n` from a seed (xorshift; Fisher-Yates).
pub fn permutation(n: usize, mut seed: u64) -> Vec<usize> {
    let mut out: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    out
}

/// Delivers the blocks in the order `perm`, in batches of `batch`.
pub fn deliver(s: &Scenario, perm: &[usize], batch: usize) -> Mem {
    let mut r = replica(&s.builder.genesis);
    for chunk in perm.chunks(batch.max(1)) {
        let blocks = chunk.iter().map(|i| s.blocks[*i].clone()).collect();
        block_on(r.ingest_many(blocks)).expect("memory store");
    }
    r
}

pub fn accepted(r: &Mem) -> BTreeSet<Cid> {
    r.order().skip(1).collect()
}
