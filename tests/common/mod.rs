//! Shared by the test files that run one scenario on every store (the
//! iroh-blobs pattern): the stores, and the [`every_store!`] macro that makes
//! each scenario its own `#[test]` once per store, in a module per store.
//!
//! The stores: `memory` ([`MemoryBlockstore`]), `faulty` ([`FaultyStore`]
//! around the memory store, no fault armed: the wrapper must be invisible),
//! `arena` (the simulator's [`ArenaStore`]s over one shared [`BlockArena`]),
//! `redb_memory` (redb over its in-memory backend), `redb_disk` and
//! `redb_disk_eventual` (a redb file in a temporary directory, with
//! [`Durability::Immediate`] and [`Durability::Eventual`]).
// Each test binary uses a part of this module.
#![allow(dead_code, unused_macros)]

use std::fmt::Debug;
use std::future::Future;

use std::sync::Arc;

use futures::executor::block_on;
use merkle_clock::MemoryBlockstore;
use merkle_clock::sim::{ArenaStore, BlockArena};
#[cfg(feature = "redb")]
use merkle_clock::store::{Durability, RedbBlockstore};
use merkle_clock::store::{FaultyStore, StreamStore, contract};

/// One kind of store: makes fresh, empty stores of it (a scenario that needs
/// a store per replica calls [`Stores::fresh`] once per replica) and counts
/// what one holds.
pub trait Stores: Default {
    /// The store.
    type Store: StreamStore + Debug + 'static;
    /// A new, empty store.
    fn fresh(&self) -> Self::Store;
    /// The number of distinct blocks the store holds.
    fn block_count(store: &Self::Store) -> u64;
}

/// [`MemoryBlockstore`].
#[derive(Default)]
pub struct Memory;

impl Stores for Memory {
    type Store = MemoryBlockstore;
    fn fresh(&self) -> MemoryBlockstore {
        MemoryBlockstore::new()
    }
    fn block_count(store: &MemoryBlockstore) -> u64 {
        store.len() as u64
    }
}

/// [`FaultyStore`] around the memory store, with no fault armed.
#[derive(Default)]
pub struct Faulty;

impl Stores for Faulty {
    type Store = FaultyStore<MemoryBlockstore>;
    fn fresh(&self) -> Self::Store {
        FaultyStore::new(MemoryBlockstore::new())
    }
    fn block_count(store: &Self::Store) -> u64 {
        assert_eq!(store.failures(), 0, "a store with no fault armed failed an operation");
        store.inner().len() as u64
    }
}

/// [`ArenaStore`]s of the simulator, every one of them over one shared
/// [`BlockArena`]: a fresh store is empty though the arena is not.
#[derive(Default)]
pub struct Arena(Arc<BlockArena>);

impl Stores for Arena {
    type Store = ArenaStore;
    fn fresh(&self) -> ArenaStore {
        ArenaStore::new(Arc::clone(&self.0))
    }
    fn block_count(store: &ArenaStore) -> u64 {
        store.len() as u64
    }
}

/// [`RedbBlockstore::in_memory`].
#[cfg(feature = "redb")]
#[derive(Default)]
pub struct RedbMemory;

#[cfg(feature = "redb")]
impl Stores for RedbMemory {
    type Store = RedbBlockstore;
    fn fresh(&self) -> RedbBlockstore {
        RedbBlockstore::in_memory().expect("an in-memory redb store")
    }
    fn block_count(store: &RedbBlockstore) -> u64 {
        store.block_count().expect("block_count")
    }
}

/// A redb file per store, in a temporary directory that lives as long as
/// this value: [`Durability::Eventual`] if `EVENTUAL`, else [`Durability::Immediate`].
#[cfg(feature = "redb")]
pub struct RedbDisk<const EVENTUAL: bool> {
    dir: tempfile::TempDir,
    next: std::sync::atomic::AtomicUsize,
}

#[cfg(feature = "redb")]
impl<const EVENTUAL: bool> Default for RedbDisk<EVENTUAL> {
    fn default() -> Self {
        RedbDisk { dir: tempfile::tempdir().expect("tempdir"), next: Default::default() }
    }
}

#[cfg(feature = "redb")]
impl<const EVENTUAL: bool> Stores for RedbDisk<EVENTUAL> {
    type Store = RedbBlockstore;
    fn fresh(&self) -> RedbBlockstore {
        let durability = if EVENTUAL { Durability::Eventual } else { Durability::Immediate };
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dir.path().join(format!("store-{n}.redb"));
        let store = RedbBlockstore::open_with(&path, durability).expect("a redb file store");
        assert_eq!(store.durability(), durability);
        store
    }
    fn block_count(store: &RedbBlockstore) -> u64 {
        store.block_count().expect("block_count")
    }
}

/// What a scenario returns: nothing (it asserts), or a contract verdict.
pub trait Outcome {
    fn check(self);
}

impl Outcome for () {
    fn check(self) {}
}

impl Outcome for Result<(), contract::Violation> {
    fn check(self) {
        if let Err(v) = self {
            panic!("contract violated: {v}");
        }
    }
}

/// Runs a scenario to completion and checks its outcome.
pub fn run<F: Future<Output: Outcome>>(scenario: F) {
    block_on(scenario).check();
}

/// Instantiates scenarios once per store: `every_store!(replica: scenarios a, b)`
/// makes `replica::memory::a`, `replica::redb_disk::b` and so on, each a
/// `#[test]` that calls `a(&stores)` (an `async fn a(stores: &impl Stores)`
/// at the top of the file, or any function of the stores that returns a
/// future). `every_store!(contract: rules x, y)` calls
/// `merkle_clock::store::contract::x` on a fresh store of each kind.
macro_rules! every_store {
    ($suite:ident: $kind:ident $($name:ident),+ $(,)?) => {
        mod $suite {
            every_store!(@store $kind, memory, $crate::common::Memory; $($name),+);
            every_store!(@store $kind, faulty, $crate::common::Faulty; $($name),+);
            every_store!(@store $kind, arena, $crate::common::Arena; $($name),+);
            #[cfg(feature = "redb")]
            every_store!(@store $kind, redb_memory, $crate::common::RedbMemory; $($name),+);
            #[cfg(feature = "redb")]
            every_store!(@store $kind, redb_disk, $crate::common::RedbDisk<false>; $($name),+);
            #[cfg(feature = "redb")]
            every_store!(@store $kind, redb_disk_eventual, $crate::common::RedbDisk<true>; $($name),+);
        }
    };
    (@store $kind:ident, $module:ident, $stores:ty; $($name:ident),+) => {
        mod $module {
            $(
                #[test]
                fn $name() {
                    #[allow(unused_imports)]
                    use $crate::common::Stores as _;
                    let stores = <$stores as ::std::default::Default>::default();
                    $crate::common::run(every_store!(@call $kind, $name, stores));
                }
            )+
        }
    };
    (@call scenarios, $name:ident, $stores:ident) => {
        super::super::$name(&$stores)
    };
    (@call rules, $name:ident, $stores:ident) => {
        merkle_clock::store::contract::$name(&$stores.fresh())
    };
}
