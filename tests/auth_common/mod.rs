//! Shared by the signed-stream tests: fixed keys, a builder of signed
//! events on any parents, replicas over the memory store.
#![allow(dead_code)]

pub mod model;

use std::collections::HashMap;
use std::sync::Arc;

use futures::executor::block_on;
use merkle_clock::auth::{self, MemberOp, Role, Signer};
use merkle_clock::{Block, Cid, Ingest, Ipld, MemoryBlockstore, Replica, ReplicaConfig};

/// A fixed key: the same bytes on every run.
pub fn key(n: u8) -> Signer {
    Signer::from_seed(&[n; 32])
}

/// Builds signed events of one stream on any parents, remembering heights.
pub struct Builder {
    pub genesis: Block,
    heights: HashMap<Cid, u64>,
}

impl Builder {
    /// A stream whose genesis names `admins`.
    pub fn new(admins: &[&Signer]) -> Self {
        Self::with_payload(admins, "auth tests")
    }

    pub fn with_payload(admins: &[&Signer], payload: &str) -> Self {
        let keys: Vec<_> = admins.iter().map(|s| s.public()).collect();
        let genesis = auth::genesis(&payload, &keys).expect("a genesis");
        let mut heights = HashMap::new();
        heights.insert(*genesis.cid(), 0);
        Builder { genesis, heights }
    }

    pub fn stream(&self) -> Cid {
        *self.genesis.cid()
    }

    /// A signed event on `parents` (the genesis if empty).
    pub fn event(&mut self, parents: &[&Block], by: &Signer, op: Option<MemberOp>, payload: &str) -> Block {
        let parents: Vec<Cid> =
            if parents.is_empty() { vec![self.stream()] } else { parents.iter().map(|b| *b.cid()).collect() };
        let height = parents.iter().map(|p| self.heights[p]).max().expect("parents") + 1;
        let block = auth::signed_event(&self.stream(), height, &parents, op.as_ref(), &payload, by).expect("encodes");
        self.heights.insert(*block.cid(), height);
        block
    }

    pub fn write(&mut self, parents: &[&Block], by: &Signer, payload: &str) -> Block {
        self.event(parents, by, None, payload)
    }

    pub fn grant(&mut self, parents: &[&Block], by: &Signer, to: &Signer, role: Role) -> Block {
        self.event(parents, by, Some(MemberOp::Grant { key: to.public(), role }), "")
    }

    pub fn revoke(&mut self, parents: &[&Block], by: &Signer, whom: &Signer) -> Block {
        self.event(parents, by, Some(MemberOp::Revoke { key: whom.public() }), "")
    }
}

pub type Mem = Replica<MemoryBlockstore>;

/// A replica of the stream over a fresh memory store.
pub fn replica(genesis: &Block) -> Mem {
    block_on(Replica::create(Arc::new(MemoryBlockstore::new()), genesis, ReplicaConfig::default())).expect("create")
}

/// Ingests one block.
pub fn ingest(r: &mut Mem, b: &Block) -> Ingest {
    block_on(r.ingest(b.clone())).expect("the memory store does not fail")
}

/// Ingests blocks that must all be accepted.
pub fn accept_all(r: &mut Mem, blocks: &[&Block]) {
    for b in blocks {
        assert_eq!(ingest(r, b), Ingest::Accepted, "{:?}", b.cid());
    }
}

/// The payload `Ipld::Null` of membership events, for typed readers.
pub fn null() -> Ipld {
    Ipld::Null
}
