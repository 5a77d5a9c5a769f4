//! The add-wins (observed-remove) set.
//!
//! The rule is documented on [`AddWinsSet`] (this module is private).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;

use ipld_core::cid::Cid;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::fold::{FoldEvent, OrderInsensitive, Reducer};
use super::resume::{Resumable, StateError, from_cbor, to_cbor};

/// An operation on an [`AddWinsSet`].
///
/// DAG-CBOR representation (serde's externally tagged enum; pinned by tests):
/// `Add(e)` is `{"add": e}`, `Remove` is
/// `{"remove": {"elem": e, "observed": [link, ...]}}` with the observed adds
/// as CID links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetOp<T> {
    /// Adds an element; the event's CID tags this add.
    Add(T),
    /// Removes the adds of `elem` named in `observed`.
    Remove {
        /// The element.
        elem: T,
        /// The CIDs of the add events of `elem` that the remover had seen.
        /// Build it with [`AddWinsState::remove_op`].
        observed: Vec<Cid>,
    },
}

/// The tags of one element.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Tags {
    /// Adds not removed.
    live: BTreeSet<Cid>,
    /// Adds named by a remove (seen or not).
    removed: BTreeSet<Cid>,
}

/// The state of an [`AddWinsSet`]: per element, its live add events and the
/// tombstones of removed ones.
#[derive(Clone, PartialEq, Eq)]
pub struct AddWinsState<T> {
    elems: BTreeMap<T, Tags>,
}

impl<T> Default for AddWinsState<T> {
    fn default() -> Self {
        AddWinsState { elems: BTreeMap::new() }
    }
}

impl<T: fmt::Debug> fmt::Debug for AddWinsState<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.elems.iter().filter(|(_, t)| !t.live.is_empty()).map(|(e, _)| e)).finish()
    }
}

impl<T: Ord + Clone> AddWinsState<T> {
    /// Whether the element is present.
    pub fn contains(&self, elem: &T) -> bool {
        self.elems.get(elem).is_some_and(|t| !t.live.is_empty())
    }

    /// The present elements, ascending.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.elems.iter().filter(|(_, t)| !t.live.is_empty()).map(|(e, _)| e)
    }

    /// The number of present elements.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether no element is present.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The add events that keep `elem` present (none when it is absent).
    pub fn adds(&self, elem: &T) -> impl Iterator<Item = &Cid> + '_ {
        self.elems.get(elem).into_iter().flat_map(|t| t.live.iter())
    }

    /// The number of removed adds remembered as tombstones.
    pub fn tombstones(&self) -> usize {
        self.elems.values().map(|t| t.removed.len()).sum()
    }

    /// The operation that removes `elem` as this state sees it: a
    /// [`SetOp::Remove`] naming every add of `elem` that is visible here.
    /// `None` when `elem` is absent. Adds made concurrently elsewhere are
    /// not named, so they survive.
    pub fn remove_op(&self, elem: &T) -> Option<SetOp<T>> {
        let live = &self.elems.get(elem)?.live;
        if live.is_empty() {
            return None;
        }
        Some(SetOp::Remove { elem: elem.clone(), observed: live.iter().copied().collect() })
    }
}

/// The add-wins (observed-remove) set. Payloads are [`SetOp<T>`]; the state
/// is an [`AddWinsState<T>`].
///
/// **Conflict rule:** an element is present iff some `Add` event for it is
/// not named in the `observed` list of any `Remove` event for the same
/// element. A remove names the CIDs of the adds its author had seen, so it
/// cancels exactly those; an add the remover had not seen — a concurrent
/// one — survives. Add wins over a concurrent remove; a remove wins over
/// every add it observed. Content addressing makes this cheap: every add
/// already has a unique, unforgeable tag (its CID), so no replica ids or
/// counters are needed.
///
/// The result depends only on the set of events, not on their order, so the
/// reducer is [`OrderInsensitive`] and runs under a [`Fold`](super::Fold) or
/// a [`CausalFeed`](super::CausalFeed) alike.
///
/// **Cost:** the state remembers the CID of every removed add (a tombstone,
/// one CID per removed add), because a remove may be delivered before an add
/// it names, and two concurrent removes may name the same add.
///
/// ```
/// use std::sync::Arc;
/// use merkle_clock::{Event, MemoryBlockstore, replica::{ReplicaConfig, Replica}};
/// use merkle_clock::crdt::{AddWinsSet, Fold, SetOp};
/// # futures::executor::block_on(async {
/// let genesis = Event::genesis("tags").encode()?;
/// let mut a = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
/// let mut b = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
/// let add = a.append(&SetOp::Add("urgent")).await?;
/// b.ingest(a.get(&add).await?.expect("present")).await?;
///
/// // a removes "urgent" while b, concurrently, adds it again.
/// let mut fold_a = Fold::new(AddWinsSet::<String>::new());
/// fold_a.update(&a).await?;
/// let remove = fold_a.state().remove_op(&"urgent".to_string()).expect("\"urgent\" is in the set");
/// let r = a.append(&remove).await?;
/// let re_add = b.append(&SetOp::Add("urgent")).await?;
///
/// a.ingest(b.get(&re_add).await?.expect("present")).await?;
/// b.ingest(a.get(&r).await?.expect("present")).await?;
/// let mut fold_b = Fold::new(AddWinsSet::<String>::new());
/// fold_a.update(&a).await?;
/// fold_b.update(&b).await?;
/// // The remove had not seen b's add: the element survives, on both sides.
/// assert!(fold_a.state().contains(&"urgent".to_string()));
/// assert!(fold_a.state() == fold_b.state());
/// # Ok::<(), merkle_clock::Error>(())
/// # })?;
/// # Ok::<(), merkle_clock::Error>(())
/// ```
pub struct AddWinsSet<T>(PhantomData<fn() -> T>);

impl<T> AddWinsSet<T> {
    /// The reducer.
    pub fn new() -> Self {
        AddWinsSet(PhantomData)
    }
}

impl<T> Default for AddWinsSet<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for AddWinsSet<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for AddWinsSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AddWinsSet")
    }
}

impl<T: Ord + Clone + DeserializeOwned> Reducer for AddWinsSet<T> {
    type Payload = SetOp<T>;
    type State = AddWinsState<T>;

    fn init(&self) -> Self::State {
        AddWinsState::default()
    }

    fn apply(&self, state: &mut Self::State, event: &FoldEvent<SetOp<T>>) {
        match &event.payload {
            SetOp::Add(elem) => {
                let tags = match state.elems.get_mut(elem) {
                    Some(t) => t,
                    None => state.elems.entry(elem.clone()).or_default(),
                };
                if !tags.removed.contains(&event.cid) {
                    tags.live.insert(event.cid);
                }
            }
            SetOp::Remove { elem, observed } => {
                if observed.is_empty() {
                    return;
                }
                let tags = match state.elems.get_mut(elem) {
                    Some(t) => t,
                    None => state.elems.entry(elem.clone()).or_default(),
                };
                for cid in observed {
                    tags.live.remove(cid);
                    tags.removed.insert(*cid);
                }
            }
        }
    }
}

impl<T: Ord + Clone + DeserializeOwned> OrderInsensitive for AddWinsSet<T> {}

/// State block: a list of `[elem, [live add links], [removed add links]]`,
/// ascending by element, each list of links ascending.
impl<T: Ord + Clone + Serialize + DeserializeOwned> Resumable for AddWinsSet<T> {
    fn save(&self, state: &Self::State) -> Result<Vec<u8>, StateError> {
        let rows: Vec<(&T, &BTreeSet<Cid>, &BTreeSet<Cid>)> =
            state.elems.iter().map(|(e, t)| (e, &t.live, &t.removed)).collect();
        to_cbor(&rows)
    }

    fn load(&self, bytes: &[u8]) -> Result<Self::State, StateError> {
        let rows: Vec<(T, BTreeSet<Cid>, BTreeSet<Cid>)> = from_cbor(bytes)?;
        let elems = rows.into_iter().map(|(e, live, removed)| (e, Tags { live, removed })).collect();
        Ok(AddWinsState { elems })
    }
}
