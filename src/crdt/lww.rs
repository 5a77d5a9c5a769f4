//! Last-writer-wins register and map.
//!
//! The rule is documented on the types (this module is private).

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use ipld_core::cid::Cid;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::fold::{FoldEvent, Reducer};
use super::resume::{Resumable, StateError, from_cbor, to_cbor};
use crate::dag::OrderKey;

/// The place of a write in the total order: `(height, CID bytes)`.
fn key_of(height: u64, cid: &Cid) -> Option<OrderKey> {
    OrderKey::new(height, cid)
}

/// Whether a write at `(height, cid)` beats the write that holds `current`.
fn beats(height: u64, cid: &Cid, current: Option<(u64, &Cid)>) -> bool {
    match current {
        None => true,
        Some((h, c)) => key_of(height, cid) > key_of(h, c),
    }
}

/// A winning write as a state block holds it: `{"set": [value, link,
/// height]}` or `{"clear": [link, height]}` (serde's externally tagged enum).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Saved<V> {
    Set(V, Cid, u64),
    Clear(Cid, u64),
}

/// The last write to one register or key: a value, or a clear (a delete)
/// remembered with its place in the order so that a late, lower write
/// cannot revive what it removed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot<V> {
    Set(Versioned<V>),
    Clear { cid: Cid, height: u64 },
}

impl<V: Clone> Slot<V> {
    fn saved(&self) -> Saved<V> {
        match self {
            Slot::Set(v) => Saved::Set(v.value.clone(), v.cid, v.height),
            Slot::Clear { cid, height } => Saved::Clear(*cid, *height),
        }
    }

    fn from_saved(saved: Saved<V>) -> Self {
        match saved {
            Saved::Set(value, cid, height) => Slot::Set(Versioned { value, cid, height }),
            Saved::Clear(cid, height) => Slot::Clear { cid, height },
        }
    }
}

/// A value and the event that wrote it (the write that won).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Versioned<V> {
    /// The value.
    pub value: V,
    /// The event that wrote it.
    pub cid: Cid,
    /// That event's height.
    pub height: u64,
}

/// An operation on an [`LwwRegister`].
///
/// DAG-CBOR representation (serde's externally tagged enum; pinned by tests):
/// `Set(v)` is the one-entry map `{"set": v}`, `Clear` is the string
/// `"clear"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterOp<V> {
    /// Writes a value.
    Set(V),
    /// Writes "no value".
    Clear,
}

/// The state of an [`LwwRegister`]: derefs to the value in force,
/// `Option<Versioned<V>>` (`None` before any write and after a clear).
///
/// It also remembers the place in the order of a winning clear, so that a
/// write applied late (one concurrent with a checkpoint the fold resumed
/// from) is decided exactly: it wins only if it sorts after the clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterState<V> {
    value: Option<Versioned<V>>,
    cleared: Option<(u64, Cid)>,
}

impl<V> Default for RegisterState<V> {
    fn default() -> Self {
        RegisterState { value: None, cleared: None }
    }
}

impl<V> Deref for RegisterState<V> {
    type Target = Option<Versioned<V>>;
    fn deref(&self) -> &Self::Target {
        &self.value
    }
}

/// A last-writer-wins register: its value is the one written by the last
/// write in the total order. Payloads are [`RegisterOp<V>`]; the state is a
/// [`RegisterState<V>`], which derefs to `Option<Versioned<V>>`.
///
/// **Conflict rule:** of two writes to the same register (or map key), the
/// one later in the stream's total order wins — the greater
/// `(height, CID bytes)`. A write made after another one was seen always
/// wins (its height is greater); between concurrent writes the winner is the
/// one with the greater height, then the greater CID. That choice is
/// arbitrary but identical on every replica, and needs no wall clock, no
/// replica id and no vector clock. A delete (or clear) is a write of
/// "absent": a later set revives the key, a later delete removes it again.
///
/// Folding the events in the total order and letting each write overwrite
/// is exactly this rule; the reducer also compares `(height, CID)` with the
/// write in force (deletes leave a tombstone), so a write applied out of
/// order — one concurrent with the checkpoint a fold resumed from — is
/// decided exactly too. Run it under a [`Fold`](super::Fold).
///
/// ```
/// use std::sync::Arc;
/// use merkle_clock::{Event, MemoryBlockstore, replica::{ReplicaConfig, Replica}};
/// use merkle_clock::crdt::{Fold, LwwRegister, RegisterOp};
/// # futures::executor::block_on(async {
/// let genesis = Event::genesis("title").encode()?;
/// let mut a = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
/// let mut b = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
/// a.append(&RegisterOp::Set("draft")).await?;
/// let a2 = a.append(&RegisterOp::Set("final")).await?;
/// let b1 = b.append(&RegisterOp::Set("other")).await?; // concurrent, height 1
/// a.ingest(b.get(&b1).await?.expect("present")).await?;
///
/// let mut fold = Fold::new(LwwRegister::<String>::new());
/// fold.update(&a).await?;
/// // "final" (height 2) was written after seeing more history than "other" (height 1).
/// let winner = fold.state().as_ref().expect("a value was written");
/// assert_eq!((winner.value.as_str(), winner.cid), ("final", a2));
/// # Ok::<(), merkle_clock::Error>(())
/// # })?;
/// # Ok::<(), merkle_clock::Error>(())
/// ```
pub struct LwwRegister<V>(PhantomData<fn() -> V>);

impl<V> LwwRegister<V> {
    /// The reducer.
    pub fn new() -> Self {
        LwwRegister(PhantomData)
    }
}

impl<V> Default for LwwRegister<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> Clone for LwwRegister<V> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<V> fmt::Debug for LwwRegister<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LwwRegister")
    }
}

impl<V: Clone + DeserializeOwned> Reducer for LwwRegister<V> {
    type Payload = RegisterOp<V>;
    type State = RegisterState<V>;

    fn init(&self) -> Self::State {
        RegisterState::default()
    }

    /// Keeps the write that sorts last: in a fold, in the total order, every
    /// write does; a late one only if it sorts after the write in force.
    fn apply(&self, state: &mut Self::State, event: &FoldEvent<RegisterOp<V>>) {
        let current = match (&state.value, &state.cleared) {
            (Some(v), _) => Some((v.height, &v.cid)),
            (None, Some((h, c))) => Some((*h, c)),
            (None, None) => None,
        };
        if !beats(event.height, &event.cid, current) {
            return;
        }
        *state = match &event.payload {
            RegisterOp::Set(v) => RegisterState {
                value: Some(Versioned { value: v.clone(), cid: event.cid, height: event.height }),
                cleared: None,
            },
            RegisterOp::Clear => RegisterState { value: None, cleared: Some((event.height, event.cid)) },
        };
    }
}

/// State block: `null` (never written), or the winning write as
/// `{"set": [value, link, height]}` or `{"clear": [link, height]}`.
impl<V: Clone + Serialize + DeserializeOwned> Resumable for LwwRegister<V> {
    fn save(&self, state: &Self::State) -> Result<Vec<u8>, StateError> {
        let slot = match (&state.value, &state.cleared) {
            (Some(v), _) => Some(Slot::Set(v.clone())),
            (None, Some((height, cid))) => Some(Slot::Clear { cid: *cid, height: *height }),
            (None, None) => None,
        };
        to_cbor(&slot.map(|s| s.saved()))
    }

    fn load(&self, bytes: &[u8]) -> Result<Self::State, StateError> {
        let saved: Option<Saved<V>> = from_cbor(bytes)?;
        Ok(match saved.map(Slot::from_saved) {
            None => RegisterState::default(),
            Some(Slot::Set(v)) => RegisterState { value: Some(v), cleared: None },
            Some(Slot::Clear { cid, height }) => RegisterState { value: None, cleared: Some((height, cid)) },
        })
    }
}

/// An operation on an [`LwwMap`].
///
/// DAG-CBOR representation (serde's externally tagged enum; pinned by tests):
/// `Set` is `{"set": {"key": k, "value": v}}`, `Delete` is
/// `{"delete": {"key": k}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapOp<K, V> {
    /// Writes `value` under `key`.
    Set {
        /// The key.
        key: K,
        /// The value.
        value: V,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: K,
    },
}

/// The state of an [`LwwMap`]: derefs to the keys present,
/// `BTreeMap<K, Versioned<V>>`.
///
/// It also keeps a tombstone per deleted key (the delete's place in the
/// order), so that a write applied late (one concurrent with a checkpoint the
/// fold resumed from) is decided exactly. One CID and height per deleted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapState<K, V> {
    live: BTreeMap<K, Versioned<V>>,
    deleted: BTreeMap<K, (u64, Cid)>,
}

impl<K, V> Default for MapState<K, V> {
    fn default() -> Self {
        MapState { live: BTreeMap::new(), deleted: BTreeMap::new() }
    }
}

impl<K, V> Deref for MapState<K, V> {
    type Target = BTreeMap<K, Versioned<V>>;
    fn deref(&self) -> &Self::Target {
        &self.live
    }
}

impl<K, V> MapState<K, V> {
    /// The number of deleted keys remembered as tombstones.
    pub fn tombstones(&self) -> usize {
        self.deleted.len()
    }
}

/// A map of last-writer-wins registers: each key holds the value of the last
/// write to it in the total order, or is absent if that write was a delete.
/// Payloads are [`MapOp<K, V>`]; the state is a [`MapState<K, V>`], which
/// derefs to `BTreeMap<K, Versioned<V>>`.
///
/// **Conflict rule:** of two writes to the same register (or map key), the
/// one later in the stream's total order wins — the greater
/// `(height, CID bytes)`. A write made after another one was seen always
/// wins (its height is greater); between concurrent writes the winner is the
/// one with the greater height, then the greater CID. That choice is
/// arbitrary but identical on every replica, and needs no wall clock, no
/// replica id and no vector clock. A delete (or clear) is a write of
/// "absent": a later set revives the key, a later delete removes it again.
///
/// Folding the events in the total order and letting each write overwrite
/// is exactly this rule; the reducer also compares `(height, CID)` with the
/// write in force (deletes leave a tombstone), so a write applied out of
/// order — one concurrent with the checkpoint a fold resumed from — is
/// decided exactly too. Run it under a [`Fold`](super::Fold).
///
/// ```
/// use std::sync::Arc;
/// use merkle_clock::{Event, MemoryBlockstore, replica::{ReplicaConfig, Replica}};
/// use merkle_clock::crdt::{Fold, LwwMap, MapOp};
/// # futures::executor::block_on(async {
/// let genesis = Event::genesis("settings").encode()?;
/// let mut r = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
/// r.append(&MapOp::Set { key: "theme", value: "dark" }).await?;
/// r.append(&MapOp::Set { key: "lang", value: "en" }).await?;
/// r.append(&MapOp::<_, &str>::Delete { key: "theme" }).await?;
/// r.append(&MapOp::Set { key: "lang", value: "fr" }).await?;
///
/// let mut fold = Fold::new(LwwMap::<String, String>::new());
/// fold.update(&r).await?;
/// let map: Vec<_> = fold.state().iter().map(|(k, v)| (k.as_str(), v.value.as_str())).collect();
/// assert_eq!(map, [("lang", "fr")]);
/// # Ok::<(), merkle_clock::Error>(())
/// # })?;
/// # Ok::<(), merkle_clock::Error>(())
/// ```
pub struct LwwMap<K, V>(PhantomData<fn() -> (K, V)>);

impl<K, V> LwwMap<K, V> {
    /// The reducer.
    pub fn new() -> Self {
        LwwMap(PhantomData)
    }
}

impl<K, V> Default for LwwMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> Clone for LwwMap<K, V> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<K, V> fmt::Debug for LwwMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LwwMap")
    }
}

impl<K: Ord + Clone + DeserializeOwned, V: Clone + DeserializeOwned> Reducer for LwwMap<K, V> {
    type Payload = MapOp<K, V>;
    type State = MapState<K, V>;

    fn init(&self) -> Self::State {
        MapState::default()
    }

    /// Per key, keeps the write that sorts last: in a fold, in the total
    /// order, every write does; a late one only if it sorts after the write
    /// in force (a set or a delete).
    fn apply(&self, state: &mut Self::State, event: &FoldEvent<MapOp<K, V>>) {
        let key = match &event.payload {
            MapOp::Set { key, .. } | MapOp::Delete { key } => key,
        };
        let current = match (state.live.get(key), state.deleted.get(key)) {
            (Some(v), _) => Some((v.height, &v.cid)),
            (None, Some((h, c))) => Some((*h, c)),
            (None, None) => None,
        };
        if !beats(event.height, &event.cid, current) {
            return;
        }
        match &event.payload {
            MapOp::Set { key, value } => {
                let v = Versioned { value: value.clone(), cid: event.cid, height: event.height };
                state.deleted.remove(key);
                match state.live.get_mut(key) {
                    Some(slot) => *slot = v,
                    None => {
                        state.live.insert(key.clone(), v);
                    }
                }
            }
            MapOp::Delete { key } => {
                state.live.remove(key);
                match state.deleted.get_mut(key) {
                    Some(slot) => *slot = (event.height, event.cid),
                    None => {
                        state.deleted.insert(key.clone(), (event.height, event.cid));
                    }
                }
            }
        }
    }
}

/// State block: a list of `[key, write]` pairs ascending by key, each write
/// `{"set": [value, link, height]}` or `{"clear": [link, height]}` (a
/// tombstone). A list, not a map, because keys need not be strings.
impl<K, V> Resumable for LwwMap<K, V>
where
    K: Ord + Clone + Serialize + DeserializeOwned,
    V: Clone + Serialize + DeserializeOwned,
{
    fn save(&self, state: &Self::State) -> Result<Vec<u8>, StateError> {
        let mut slots: BTreeMap<&K, Slot<V>> = state.live.iter().map(|(k, v)| (k, Slot::Set(v.clone()))).collect();
        for (k, (height, cid)) in &state.deleted {
            slots.insert(k, Slot::Clear { cid: *cid, height: *height });
        }
        let pairs: Vec<(&K, Saved<V>)> = slots.into_iter().map(|(k, s)| (k, s.saved())).collect();
        to_cbor(&pairs)
    }

    fn load(&self, bytes: &[u8]) -> Result<Self::State, StateError> {
        let pairs: Vec<(K, Saved<V>)> = from_cbor(bytes)?;
        let mut state = MapState::default();
        for (k, saved) in pairs {
            match Slot::from_saved(saved) {
                Slot::Set(v) => state.live.insert(k, v).map(|_| ()),
                Slot::Clear { cid, height } => state.deleted.insert(k, (height, cid)).map(|_| ()),
            };
        }
        Ok(state)
    }
}
