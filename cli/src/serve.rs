//! `mclock serve`: the store's stream on libp2p (the sync protocol) and on an
//! IPFS trustless gateway, until interrupted; and `mclock sync --peer`, which
//! syncs the store with such a node.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use merkle_clock::replica::{Replica, ReplicaConfig};
use merkle_clock::store::{Durability, RedbBlockstore};
use merkle_clock::sync::transport::Broadcaster;
use merkle_clock::{Blockstore, Cid, StreamStore, short_cid};
use merkle_clock_gateway::Gateway;
use merkle_clock_libp2p::libp2p::multiaddr::Protocol;
use merkle_clock_libp2p::libp2p::{Multiaddr, PeerId};
use merkle_clock_libp2p::{Node, NodeConfig, NodeHandle, Source};

use crate::commands::{events, unavailable_line};
use crate::{Result, store};

/// `mclock serve` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The libp2p address to listen on.
    #[arg(long, value_name = "MULTIADDR", default_value = "/ip4/127.0.0.1/tcp/0")]
    listen: Multiaddr,
    /// The gateway's HTTP address (`ADDR:PORT`; port 0 picks a free one).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:0")]
    gateway: SocketAddr,
}

/// `mclock sync --peer` options.
#[derive(Debug, clap::Args)]
pub struct PeerArgs {
    /// A running node's libp2p address (as `mclock serve` prints it, with `/p2p/<peer id>`).
    #[arg(long, value_name = "MULTIADDR")]
    peer: Option<Multiaddr>,
    /// Give up after this many seconds without both sides holding the same heads.
    #[arg(long, value_name = "SECONDS", default_value_t = 60, requires = "peer")]
    timeout: u64,
}

type Node_ = NodeHandle<dyn StreamStore>;

/// The node's configuration. Bitswap hook: when the libp2p adapter serves
/// and fetches over `/ipfs/bitswap/1.2.0`, switch it on here, so IPFS peers
/// can fetch the stream's blocks from `mclock serve` as they do from its gateway.
fn node_config(listen: Vec<Multiaddr>) -> NodeConfig {
    let mut config = NodeConfig::default();
    config.listen = listen;
    config
}

/// Opens the current stream's replica over a redb store shared with others
/// (the gateway reads the same store while the node writes it).
async fn open(dir: &Path) -> Result<(Arc<RedbBlockstore>, Replica<dyn StreamStore>)> {
    let db = Arc::new(store::open_db(dir, Durability::Immediate)?);
    let stream = store::current_stream(dir, &db).await?.ok_or_else(|| {
        format!("the store at {} holds no stream (run `mclock init` or `mclock fetch`)", dir.display())
    })?;
    let shared: Arc<dyn StreamStore> = Arc::clone(&db) as Arc<dyn StreamStore>;
    let replica = Replica::open(shared, &stream, ReplicaConfig::default()).await?;
    Ok((db, replica))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `mclock serve`.
pub fn run(dir: &Path, args: &Args, out: &mut dyn Write) -> Result<()> {
    runtime()?.block_on(async {
        let (db, replica) = open(dir).await?;
        let stream = *replica.stream_id();
        let node: Node_ = Node::spawn(node_config(vec![args.listen.clone()]))?;
        node.add_stream(replica).await?;
        let listener = tokio::net::TcpListener::bind(args.gateway)
            .await
            .map_err(|e| format!("cannot listen on {} for the gateway: {e}", args.gateway))?;
        let gateway_addr = listener.local_addr()?;
        let libp2p_addr = node.listen_addr().await?.with(Protocol::P2p(node.peer_id()));
        writeln!(out, "libp2p {libp2p_addr}")?;
        writeln!(out, "gateway http://{gateway_addr}")?;
        out.flush()?;
        eprintln!("serving stream {stream} from {} until interrupted", dir.display());

        // What arrives from peers, on stderr.
        let mut updates = node.updates();
        let log = tokio::spawn(async move {
            while let Ok(u) = updates.recv().await {
                if let Source::Peer(peer) = u.source {
                    eprintln!("+{} events from {peer}", u.added);
                }
            }
        });
        let store: Arc<dyn Blockstore> = db;
        let served = Gateway::new(store).serve(listener, interrupted()).await;
        log.abort();
        // The replicas come back; dropping them (and the gateway) closes the store.
        node.shutdown().await?;
        served.map_err(|e| format!("the gateway failed: {e}"))?;
        eprintln!("stopped");
        Ok(())
    })
}

/// `mclock sync --peer`: runs a node of our own over the store, dials the
/// peer, and waits until the peer's announced heads are ours.
pub fn sync_peer(dir: &Path, args: &PeerArgs, out: &mut dyn Write) -> Result<()> {
    let peer = args.peer.clone().ok_or("sync needs --with PATH or --peer MULTIADDR")?;
    let peer_id = peer.iter().find_map(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    });
    runtime()?.block_on(async {
        let (_db, replica) = open(dir).await?;
        let stream = *replica.stream_id();
        let before = replica.len();
        let node: Node_ = Node::spawn(node_config(vec!["/ip4/127.0.0.1/tcp/0".parse()?]))?;
        let mut topic = node.broadcaster(stream);
        node.add_stream(replica).await?;
        node.dial(peer.clone()).await?;
        let synced =
            tokio::time::timeout(Duration::from_secs(args.timeout), settle(&node, stream, &mut topic, peer_id)).await;
        let (now, heads) = (node.len(stream).await?, node.heads(stream).await?);
        let gone = node.unavailable(stream).await?;
        node.shutdown().await?;
        match synced {
            Ok(Ok(gone)) if !gone.is_empty() => {
                writeln!(out, "{}", unavailable_line("here", "the peer", &gone))?;
                return Err(format!(
                    "{peer}: not in sync (now {now} events here): the peer pruned the {} this store still lacks, and \
                     nothing else is coming",
                    events(gone.len())
                )
                .into());
            }
            Ok(result) => {
                result?;
            }
            Err(_) if !gone.is_empty() => {
                return Err(format!(
                    "{peer}: not in sync after {} s (now {now} events here); the peer pruned {} of those this \
                     store lacks: fetch them elsewhere or start from a checkpoint",
                    args.timeout,
                    events(gone.len())
                )
                .into());
            }
            Err(_) => {
                return Err(format!(
                    "{peer}: not in sync after {} s (now {now} events here); is it serving stream {stream}?",
                    args.timeout
                )
                .into());
            }
        }
        let shown: Vec<String> = heads.iter().map(short_cid).collect();
        writeln!(out, "synced with {peer}: +{} events, now {now} events", now - before)?;
        writeln!(out, "heads: {} (the same on both)", shown.join(" "))?;
        Ok(())
    })
}

/// How often `sync --peer` asks its node whether what it lacks is only what
/// the peer pruned (the peer's `pruned` answer brings no new event, so no
/// update wakes the wait).
const UNAVAILABLE_CHECK: Duration = Duration::from_millis(200);

/// Waits until the peer (or, without a peer id, anyone on the topic)
/// announces exactly our heads, and returns nothing; or until every event
/// this store lacks is one the peer said it pruned, and returns them (it
/// will never send them: waiting longer is pointless). A node announces
/// when it meets a new peer and whenever its heads change, so this ends
/// once both sides hold the same events.
async fn settle(node: &Node_, stream: Cid, topic: &mut impl Broadcaster, peer: Option<PeerId>) -> Result<Vec<Cid>> {
    let mut theirs: Option<Vec<Cid>> = None;
    let mut updates = node.updates();
    let mut tick = tokio::time::interval(UNAVAILABLE_CHECK);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // Stop only once the peer holds what we hold beyond the
                // genesis (its announced heads list ours): our own events
                // have reached it, and it has nothing else for us.
                let mine = node.heads(stream).await?;
                let pushed = theirs.as_ref().is_some_and(|t| mine.iter().all(|h| *h == stream || t.contains(h)));
                let gone = node.unavailable(stream).await?;
                if pushed && !gone.is_empty() && gone == node.read(stream, |r| r.missing()).await? {
                    return Ok(gone);
                }
            }
            a = topic.next() => {
                let Some(a) = a? else { return Err("the node stopped".into()) };
                if peer.is_none_or(|p| a.from.as_str() == p.to_string()) {
                    let mut heads = a.heads;
                    heads.sort_unstable();
                    theirs = Some(heads);
                }
            }
            _ = updates.recv() => {}
        }
        if let Some(theirs) = &theirs {
            let mut mine = node.heads(stream).await?;
            mine.sort_unstable();
            // An announcement lists at most `max_announced_heads` of them.
            mine.truncate(theirs.len().max(NodeConfig::default().max_announced_heads));
            if *theirs == mine {
                return Ok(Vec::new());
            }
        }
    }
}
