//! A terminal chat over a merkle-clock stream, replicated with libp2p.
//!
//! ```text
//! cargo run -p merkle-clock-libp2p --example chat -- \
//!     --listen /ip4/127.0.0.1/tcp/4001 --peer /ip4/127.0.0.1/tcp/4002 --store ./chat-a.redb
//! ```
//!
//! Every line typed is appended to the room's stream. Messages from others
//! are printed in the stream's total order as they arrive; when a late
//! message sorts before what was already shown, the tail of the conversation
//! is printed again from the first position that moved.
//!
//! Options: `--listen ADDR` (default `/ip4/127.0.0.1/tcp/0`), `--peer ADDR`
//! (repeatable; redialed until connected), `--store PATH` (a redb file; an
//! in-memory store when absent), `--name NAME` (default: the peer id's tail),
//! `--room NAME` (default `lobby`; the genesis, so the stream, derives from it).

use std::sync::Arc;

use merkle_clock::replica::ReplicaConfig;
use merkle_clock::store::RedbBlockstore;
use merkle_clock::{Cursor, Event, MemoryBlockstore, Replica, StreamStore};
use merkle_clock_libp2p::libp2p::Multiaddr;
use merkle_clock_libp2p::{Node, NodeConfig, NodeHandle};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Serialize, Deserialize)]
struct Line {
    from: String,
    text: String,
}

struct Args {
    listen: Multiaddr,
    peers: Vec<Multiaddr>,
    store: Option<String>,
    name: Option<String>,
    room: String,
}

fn usage() -> ! {
    eprintln!(
        "usage: chat [--listen ADDR] [--peer ADDR]... [--store PATH] [--name NAME] [--room NAME]\n\
         e.g.  chat --listen /ip4/127.0.0.1/tcp/4001 --peer /ip4/127.0.0.1/tcp/4002 --store ./chat-a.redb"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        listen: "/ip4/127.0.0.1/tcp/0".parse().expect("valid"),
        peers: Vec::new(),
        store: None,
        name: None,
        room: "lobby".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        let addr = |v: &str| -> Multiaddr {
            v.parse().unwrap_or_else(|e| {
                eprintln!("bad address {v}: {e}");
                usage()
            })
        };
        match flag.as_str() {
            "--listen" => args.listen = addr(&value),
            "--peer" => args.peers.push(addr(&value)),
            "--store" => args.store = Some(value),
            "--name" => args.name = Some(value),
            "--room" => args.room = value,
            _ => usage(),
        }
    }
    args
}

type Handle = NodeHandle<dyn StreamStore>;

/// Prints what is new after `cursor`; returns the new cursor.
async fn print_new(node: &Handle, stream: merkle_clock::Cid, me: &str, cursor: Cursor) -> Cursor {
    let Ok(delta) = node.read(stream, move |r| r.events_since(&cursor)).await else { return cursor };
    if delta.events.is_empty() {
        return delta.cursor;
    }
    let Ok(blocks) = node.get(stream, delta.events.clone()).await else { return cursor };
    if let Some(p) = delta.replay_from {
        println!("--- earlier messages arrived; the conversation from #{p} on:");
    }
    for (i, block) in blocks.into_iter().enumerate() {
        let Some(block) = block else { continue };
        let Ok(event) = Event::<Line>::decode(&block) else { continue }; // the genesis, or a foreign payload
        let line = event.payload();
        // Our own lines were echoed by the terminal; show them only in a replay.
        if line.from != me || delta.replay_from.is_some() {
            println!("#{:<4} <{}> {}", delta.start + i, line.from, line.text);
        }
    }
    delta.cursor
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let args = parse_args();

    let genesis = Event::genesis(format!("merkle-clock chat room: {}", args.room)).encode()?;
    let stream = *genesis.cid();
    let store: Arc<dyn StreamStore> = match &args.store {
        Some(path) => Arc::new(RedbBlockstore::open(path)?),
        None => Arc::new(MemoryBlockstore::new()),
    };
    let replica = Replica::open_or_create(store, &genesis, ReplicaConfig::default()).await?;
    let held = replica.len() - 1;

    let mut config = NodeConfig::default();
    config.listen = vec![args.listen.clone()];
    config.announce_interval = std::time::Duration::from_secs(3);
    let node = Node::<dyn StreamStore>::spawn(config)?;
    let me = args.name.clone().unwrap_or_else(|| {
        let id = node.peer_id().to_string();
        id[id.len() - 6..].to_string()
    });
    node.add_stream(replica).await?;
    for p in &args.peers {
        node.dial(p.clone()).await?;
    }
    eprintln!("room {} (stream {stream})", args.room);
    eprintln!("you are <{me}>, peer {}, listening on {}", node.peer_id(), node.listen_addr().await?);
    eprintln!("{held} messages in the store; type a line and press enter (Ctrl-D quits)");

    let mut updates = node.updates();
    let mut cursor = print_new(&node, stream, "", Cursor::start()).await;
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = stdin.next_line() => match line? {
                Some(text) if !text.trim().is_empty() => {
                    node.append(stream, &Line { from: me.clone(), text }).await?;
                }
                Some(_) => {}
                None => break,
            },
            update = updates.recv() => {
                // Any update (ours too, to move the cursor past our lines) or a
                // lag: print what is new. The replica is the source of truth.
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = update {
                    break;
                }
                cursor = print_new(&node, stream, &me, cursor).await;
            }
        }
    }
    drop(node.shutdown().await?);
    Ok(())
}
