//! `Replica::create` makes a new stream and refuses one the store holds;
//! `Replica::open_or_create` opens it instead.

use std::sync::Arc;

use futures::executor::block_on;
use merkle_clock::{Event, MemoryBlockstore, OpenError, Replica, ReplicaConfig};

#[test]
fn create_refuses_a_stream_the_store_holds_and_open_or_create_opens_it() {
    block_on(async {
        let store = Arc::new(MemoryBlockstore::new());
        let genesis = Event::genesis("one stream").encode().expect("genesis");
        let mut first = Replica::create(store.clone(), &genesis, ReplicaConfig::default()).await.expect("new stream");
        let e1 = first.append(&"kept").await.expect("append");
        drop(first);

        let again = Replica::create(store.clone(), &genesis, ReplicaConfig::default()).await;
        assert!(matches!(again, Err(OpenError::StreamExists { stream }) if stream == *genesis.cid()), "{again:?}");

        let reopened = Replica::open_or_create(store.clone(), &genesis, ReplicaConfig::default()).await.expect("open");
        assert_eq!(reopened.heads(), vec![e1]);

        // On a store without the stream, open_or_create creates it.
        let fresh = Arc::new(MemoryBlockstore::new());
        let created = Replica::open_or_create(fresh, &genesis, ReplicaConfig::default()).await.expect("create");
        assert_eq!(created.heads(), vec![*genesis.cid()]);
    });
}
