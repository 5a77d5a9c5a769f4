//! Last-writer-wins register and map.
//!
//! The rule is documented on the types (this module is private).

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use ipld_core::cid::Cid;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::fold::{FoldEvent, Reducer};

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

/// A last-writer-wins register: its value is the one written by the last
/// write in the total order. Payloads are [`RegisterOp<V>`]; the state is
/// `Option<Versioned<V>>`.
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
/// is exactly this rule, so the reducer is a plain overwrite run by a
/// [`Fold`](super::Fold). It is **not**
/// [`OrderInsensitive`](super::OrderInsensitive): use a `Fold`, never a
/// `CausalFeed`.
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
    type State = Option<Versioned<V>>;

    fn init(&self) -> Self::State {
        None
    }

    fn apply(&self, state: &mut Self::State, event: &FoldEvent<RegisterOp<V>>) {
        *state = match &event.payload {
            RegisterOp::Set(v) => Some(Versioned { value: v.clone(), cid: event.cid, height: event.height }),
            RegisterOp::Clear => None,
        };
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

/// A map of last-writer-wins registers: each key holds the value of the last
/// write to it in the total order, or is absent if that write was a delete.
/// Payloads are [`MapOp<K, V>`]; the state is a `BTreeMap<K, Versioned<V>>`.
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
/// is exactly this rule, so the reducer is a plain overwrite run by a
/// [`Fold`](super::Fold). It is **not**
/// [`OrderInsensitive`](super::OrderInsensitive): use a `Fold`, never a
/// `CausalFeed`.
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
    type State = BTreeMap<K, Versioned<V>>;

    fn init(&self) -> Self::State {
        BTreeMap::new()
    }

    fn apply(&self, state: &mut Self::State, event: &FoldEvent<MapOp<K, V>>) {
        match &event.payload {
            MapOp::Set { key, value } => {
                let v = Versioned { value: value.clone(), cid: event.cid, height: event.height };
                match state.get_mut(key) {
                    Some(slot) => *slot = v,
                    None => {
                        state.insert(key.clone(), v);
                    }
                }
            }
            MapOp::Delete { key } => {
                state.remove(key);
            }
        }
    }
}
