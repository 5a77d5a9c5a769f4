//! A peer that keeps sending invalid events (forged or unauthorised signed
//! events of a signed stream) is disconnected and refused for
//! `NodeConfig::ban_for`, while honest peers keep syncing.
//!
//! Every wait is for a condition, bounded by `tokio::time::timeout`.

#[allow(dead_code)] // `run_garbage_peer` is tests/loopback.rs's
mod garbage_peer;
mod waiting;

use std::sync::Arc;
use std::time::Duration;

use garbage_peer::forger::run_forger;
use merkle_clock::auth::{self, Signer};
use merkle_clock::replica::ReplicaConfig;
use merkle_clock::{Block, MemoryBlockstore, Replica, StreamStore};
use merkle_clock_libp2p::libp2p::identity::Keypair;
use merkle_clock_libp2p::{Node, NodeConfig, NodeHandle};
use tokio::time::timeout;
use waiting::{converge, wait_for};

type Handle = NodeHandle<dyn StreamStore>;

const LIMIT: Duration = Duration::from_secs(40);

fn node_config() -> NodeConfig {
    let mut c = NodeConfig::default();
    c.announce_interval = Duration::from_millis(400);
    c.announce_debounce = Duration::from_millis(20);
    c.request_timeout = Duration::from_secs(5);
    c.sessions.timeout = Some(Duration::from_secs(2));
    c.redial_interval = Duration::from_millis(200);
    c.gossip_heartbeat = Duration::from_millis(200);
    c.max_invalid_events = 8;
    c.ban_for = Duration::from_secs(300);
    c
}

/// A node with the stream, signing with `signer`; `grant`: a writer the
/// signer (an admin) grants before the node starts.
async fn spawn(genesis: &Block, signer: &Signer, grant: Option<&Signer>) -> Handle {
    let handle = Node::<dyn StreamStore>::spawn(node_config()).unwrap();
    let store: Arc<dyn StreamStore> = Arc::new(MemoryBlockstore::new());
    let mut replica = Replica::create(store, genesis, ReplicaConfig::default()).await.unwrap();
    replica.set_signer(Some(signer.clone()));
    if let Some(writer) = grant {
        replica.grant(writer.public(), auth::Role::Writer).await.unwrap();
    }
    handle.add_stream(replica).await.unwrap();
    handle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_forged_events_is_banned() {
    timeout(LIMIT, async {
        let (admin, writer) = (Signer::generate(), Signer::generate());
        let genesis = auth::genesis(&"ban test", &[admin.public()]).unwrap();
        let stream = *genesis.cid();
        // The admin granted the writer; both write.
        let a = spawn(&genesis, &admin, Some(&writer)).await;
        let b = spawn(&genesis, &writer, None).await;
        b.dial(a.listen_addr().await.unwrap()).await.unwrap();
        let forger_key = Keypair::generate_ed25519();
        let forger_id = forger_key.public().to_peer_id();
        let targets = vec![a.listen_addr().await.unwrap(), b.listen_addr().await.unwrap()];
        let forger = tokio::spawn(run_forger(forger_key, stream, admin.public(), targets));

        converge(&[&a, &b], stream, 2).await;
        for i in 0..10 {
            a.append(stream, &format!("a {i}")).await.unwrap();
            b.append(stream, &format!("b {i}")).await.unwrap();
        }
        // Both honest nodes ban the forger, and refuse it when it comes back...
        wait_for("the forger to be banned by both and refused on redial", || async {
            for n in [&a, &b] {
                let s = n.stats().await.unwrap();
                if s.peers_banned < 1 || s.banned_refusals < 1 {
                    return false;
                }
            }
            true
        })
        .await;
        for n in [&a, &b] {
            assert!(!n.peers().await.unwrap().contains(&forger_id), "the forger is disconnected");
            let s = n.stats().await.unwrap();
            assert!(s.blocks_rejected >= 8, "{s:?}");
            assert_eq!(s.peers_banned, 1, "only the forger is banned: {s:?}");
        }
        // ...while the honest pair keeps syncing: nothing forged got in.
        converge(&[&a, &b], stream, 22).await;
        a.append(stream, &"after the ban").await.unwrap();
        converge(&[&a, &b], stream, 23).await;
        assert!(a.peers().await.unwrap().contains(&b.peer_id()), "the honest peer is not banned");
        forger.abort();
    })
    .await
    .expect("test took too long");
}
