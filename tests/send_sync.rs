//! Public types are `Send + Sync` and the replica's futures are `Send`, so
//! they can live in multithreaded runtimes (`tokio::spawn`).

use std::sync::Arc;

use futures::executor::block_on;
use merkle_clock::sync::{SyncState, generate_message, receive_message};
use merkle_clock::{
    Block, BlockSet, Dag, DecodeError, Event, MemoryBlockstore, Replica, ReplicaConfig, StoreError, StreamStore,
};

fn send<T: Send>(_: &T) {}
fn send_sync<T: Send + Sync>() {}

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<Block>();
    send_sync::<BlockSet>();
    send_sync::<Dag>();
    send_sync::<MemoryBlockstore>();
    send_sync::<Replica<MemoryBlockstore>>();
    send_sync::<Replica<dyn StreamStore>>();
    send_sync::<DecodeError>();
    send_sync::<StoreError>();
    send_sync::<SyncState>();
    #[cfg(feature = "redb")]
    send_sync::<merkle_clock::store::RedbBlockstore>();
}

#[test]
fn replica_and_sync_futures_are_send() {
    let genesis = Event::genesis("send").encode().unwrap();
    let store: Arc<dyn StreamStore> = Arc::new(MemoryBlockstore::new());
    let create = Replica::create(store.clone(), &genesis, ReplicaConfig::default());
    send(&create);
    let mut a = block_on(create).unwrap();
    let mut b = block_on(Replica::open_or_create(store, &genesis, ReplicaConfig::default())).unwrap();
    send(&a.append(&1u8));
    send(&a.append_many([1u8, 2]));
    send(&a.ingest_many(Vec::new()));
    send(&a.get(genesis.cid()));
    let mut state = SyncState::with_seed(1);
    send(&generate_message(&b, &mut state));
    let msg = block_on(generate_message(&b, &mut state)).unwrap().unwrap();
    let mut other = SyncState::with_seed(2);
    send(&receive_message(&mut a, &mut other, msg));
    send(&Replica::open(Arc::new(MemoryBlockstore::new()), genesis.cid(), ReplicaConfig::default()));
    block_on(b.append(&3u8)).unwrap();
}
