//! Membership, computed incrementally: each event's state is the union of
//! its parents' states plus its own operation, shared by reference.
//!
//! A state is the set of membership operations in an event's causal past
//! (itself included), kept as a sorted list of indices into the replica's
//! operation table, with the roles it implies. Operations only grow and merge
//! by union, so an event's state is a function of its past alone. Almost
//! every event has the state of its parents (one pointer copy, no work); a
//! merge of two different states builds their union once and interns it, so
//! every later event with the same past shares it. Checking one event costs
//! a lookup per parent and one hash-map probe: nothing in it grows with the
//! history, only with the number of membership operations where histories
//! diverge.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ipld_core::cid::Cid;

use super::{AuthorKey, MemberOp, Role};
use crate::dag::EventId;

/// The membership established by one event's causal past.
#[derive(Debug)]
pub(crate) struct MemberState {
    /// Indices into [`MemberIndex::ops`], ascending.
    ops: Box<[u32]>,
    /// The roles in force: granted (or genesis admins) and not revoked.
    pub(crate) roles: HashMap<AuthorKey, Role>,
    /// The keys revoked, each with its revocation (the lowest CID if several).
    pub(crate) revoked: HashMap<AuthorKey, Cid>,
    /// How many admins are in force.
    pub(crate) admins: usize,
}

/// A shared state.
pub(crate) type StateRef = Arc<MemberState>;

/// The membership of every event of a stream whose genesis names admins.
pub(crate) struct MemberIndex {
    genesis_admins: Vec<AuthorKey>,
    /// Every membership operation accepted (or being accepted), by index.
    ops: Vec<(Cid, MemberOp)>,
    /// The state of each event, by [`EventId`] index.
    states: Vec<StateRef>,
    /// Every distinct state, by its operation set.
    interned: HashMap<Box<[u32]>, StateRef>,
    /// The author of each event, by [`EventId`] index, as an index into
    /// `keys` ([`NO_AUTHOR`] for the genesis).
    authors: Vec<u32>,
    keys: Vec<AuthorKey>,
    key_ids: HashMap<AuthorKey, u32>,
}

/// The author index of the unsigned genesis.
const NO_AUTHOR: u32 = u32::MAX;

impl MemberIndex {
    /// The index of a stream whose genesis names `admins`; the genesis's
    /// state (no operations) is event 0's.
    pub(crate) fn new(admins: Vec<AuthorKey>) -> Self {
        let mut index = MemberIndex {
            genesis_admins: admins,
            ops: Vec::new(),
            states: Vec::new(),
            interned: HashMap::new(),
            authors: vec![NO_AUTHOR],
            keys: Vec::new(),
            key_ids: HashMap::new(),
        };
        let base = index.intern(Box::new([]));
        index.states.push(base);
        index
    }

    /// The state of an event in the index.
    pub(crate) fn state(&self, id: EventId) -> &StateRef {
        &self.states[id.index()]
    }

    /// The state of an event in the index, by its raw id ([`crate::Dag::find`]).
    pub(crate) fn state_raw(&self, id: u32) -> &StateRef {
        &self.states[id as usize]
    }

    /// Records the state and author of the event just added to the DAG as `id`.
    pub(crate) fn push(&mut self, id: EventId, state: StateRef, author: AuthorKey) {
        debug_assert_eq!(id.index(), self.states.len(), "states follow the DAG's ids");
        self.states.push(state);
        let next = u32::try_from(self.keys.len()).expect("fewer than 2^32 authors");
        let key = *self.key_ids.entry(author).or_insert(next);
        if key == next {
            self.keys.push(author);
        }
        self.authors.push(key);
    }

    /// Records the state of the event just added to the DAG as `id` whose
    /// author is not known: a pruned event, read back from its skeleton.
    pub(crate) fn push_unattributed(&mut self, id: EventId, state: StateRef) {
        debug_assert_eq!(id.index(), self.states.len(), "states follow the DAG's ids");
        self.states.push(state);
        self.authors.push(NO_AUTHOR);
    }

    /// The membership events accepted, by CID.
    pub(crate) fn op_cids(&self) -> impl Iterator<Item = &Cid> + '_ {
        self.ops.iter().map(|(cid, _)| cid)
    }

    /// The author of an event in the index (`None` for the genesis and for
    /// pruned events read back from their skeleton).
    pub(crate) fn author(&self, id: EventId) -> Option<AuthorKey> {
        self.keys.get(self.authors[id.index()] as usize).copied()
    }

    /// The revocations in a state: each revoked key with every event that
    /// revokes it.
    pub(crate) fn revocations(&self, state: &MemberState) -> HashMap<AuthorKey, Vec<Cid>> {
        let mut out: HashMap<AuthorKey, Vec<Cid>> = HashMap::new();
        for &i in state.ops.iter() {
            if let (cid, MemberOp::Revoke { key }) = &self.ops[i as usize] {
                out.entry(*key).or_default().push(*cid);
            }
        }
        out
    }

    /// The genesis's admins.
    pub(crate) fn genesis_admins(&self) -> &[AuthorKey] {
        &self.genesis_admins
    }

    /// The union of the states of events in the index.
    pub(crate) fn merge_ids(&mut self, ids: impl Iterator<Item = EventId>) -> StateRef {
        let states: Vec<StateRef> = ids.map(|id| self.state(id).clone()).collect();
        self.union_of(&states)
    }

    /// The union of states (at least one).
    pub(crate) fn union_of(&mut self, states: &[StateRef]) -> StateRef {
        self.merge(states)
    }

    /// The union of states (at least one), without keeping it.
    pub(crate) fn peek_union(&self, states: &[StateRef]) -> StateRef {
        match Self::union_ops(states) {
            None => states[0].clone(),
            Some(ops) => self.interned.get(&ops).cloned().unwrap_or_else(|| Arc::new(self.build(ops))),
        }
    }

    /// The union of the states' operations, or `None` when they are all one state.
    fn union_ops(states: &[StateRef]) -> Option<Box<[u32]>> {
        let first = &states[0];
        if states.iter().all(|s| Arc::ptr_eq(s, first)) {
            return None;
        }
        let mut ops: Vec<u32> = states.iter().flat_map(|s| s.ops.iter().copied()).collect();
        ops.sort_unstable();
        ops.dedup();
        Some(ops.into_boxed_slice())
    }

    /// The state of the past of an event with these parents' states: their
    /// union. One pointer copy when they agree.
    fn merge(&mut self, states: &[StateRef]) -> StateRef {
        match Self::union_ops(states) {
            None => states[0].clone(),
            Some(ops) => self.intern(ops),
        }
    }

    /// The state after the membership event `cid` doing `op` on top of `past`.
    pub(crate) fn with_op(&mut self, past: &StateRef, cid: Cid, op: MemberOp) -> StateRef {
        let index = u32::try_from(self.ops.len()).expect("fewer than 2^32 membership events");
        self.ops.push((cid, op));
        let mut ops = past.ops.to_vec();
        ops.push(index);
        self.intern(ops.into_boxed_slice())
    }

    /// The state whose operations are exactly `ops` (each a membership
    /// event and what it does), built by the same union as every other
    /// state: an anchor's, which a shallow replica learns from a
    /// checkpoint's skeleton instead of from the events below it. An
    /// operation the index holds already (by CID) is not added twice.
    pub(crate) fn state_of_ops(&mut self, ops: &[(Cid, MemberOp)]) -> StateRef {
        let mut ids = Vec::with_capacity(ops.len());
        for (cid, op) in ops {
            let i = match self.op_position(cid) {
                Some(i) => i,
                None => {
                    self.ops.push((*cid, *op));
                    self.ops.len() - 1
                }
            };
            ids.push(u32::try_from(i).expect("fewer than 2^32 membership events"));
        }
        ids.sort_unstable();
        ids.dedup();
        self.intern(ids.into_boxed_slice())
    }

    /// The membership events of a state, each with what it does, in the
    /// order the index learnt them.
    pub(crate) fn ops_of<'a>(&'a self, state: &'a MemberState) -> impl Iterator<Item = &'a (Cid, MemberOp)> + 'a {
        state.ops.iter().map(|&i| &self.ops[i as usize])
    }

    /// The membership event with this CID, if the index holds it.
    pub(crate) fn op(&self, cid: &Cid) -> Option<MemberOp> {
        self.op_position(cid).map(|i| self.ops[i].1)
    }

    /// Where the index holds the membership event with this CID.
    fn op_position(&self, cid: &Cid) -> Option<usize> {
        self.ops.iter().position(|(c, _)| c == cid)
    }

    /// The state with exactly these operations, built once.
    fn intern(&mut self, ops: Box<[u32]>) -> StateRef {
        if let Some(s) = self.interned.get(&ops) {
            return s.clone();
        }
        let state = Arc::new(self.build(ops.clone()));
        self.interned.insert(ops, state.clone());
        state
    }

    /// Applies operations to the genesis's admins. Order does not matter:
    /// grants keep the higher role, revocations are permanent.
    fn build(&self, ops: Box<[u32]>) -> MemberState {
        let mut granted: HashMap<AuthorKey, Role> = self.genesis_admins.iter().map(|k| (*k, Role::Admin)).collect();
        let mut revoked: HashMap<AuthorKey, Cid> = HashMap::new();
        for &i in ops.iter() {
            let (cid, op) = &self.ops[i as usize];
            match *op {
                MemberOp::Grant { key, role } => {
                    let r = granted.entry(key).or_insert(role);
                    *r = (*r).max(role);
                }
                MemberOp::Revoke { key } => {
                    let by = revoked.entry(key).or_insert(*cid);
                    *by = (*by).min(*cid);
                }
            }
        }
        granted.retain(|k, _| !revoked.contains_key(k));
        let admins = granted.values().filter(|r| **r == Role::Admin).count();
        MemberState { ops, roles: granted, revoked, admins }
    }
}

/// A snapshot of a stream's membership at some point of its history
/// ([`Replica::members`](crate::Replica::members)).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Members {
    /// The keys in force and their roles.
    pub roles: BTreeMap<AuthorKey, Role>,
    /// The keys revoked, each with its revocation (the lowest CID if several).
    pub revoked: BTreeMap<AuthorKey, Cid>,
}

impl Members {
    pub(crate) fn of(state: &MemberState) -> Self {
        Members {
            roles: state.roles.iter().map(|(k, r)| (*k, *r)).collect(),
            revoked: state.revoked.iter().map(|(k, c)| (*k, *c)).collect(),
        }
    }

    /// The role of `key` in force, if any.
    pub fn role(&self, key: &AuthorKey) -> Option<Role> {
        self.roles.get(key).copied()
    }

    /// Whether `key` may write a checkpoint that others trust
    /// ([`crate::checkpoint`]): an admin in force. (Revoked keys hold no role.)
    pub fn may_checkpoint(&self, key: &AuthorKey) -> bool {
        self.role(key) == Some(Role::Admin)
    }

    /// The admins in force, ascending.
    pub fn admins(&self) -> Vec<AuthorKey> {
        self.roles.iter().filter(|(_, r)| **r == Role::Admin).map(|(k, _)| *k).collect()
    }
}
