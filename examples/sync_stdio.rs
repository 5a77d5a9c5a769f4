//! A native replica as a sync peer on standard input and output, one command
//! a line and one answer a line: the other side of the JS package's interop
//! test (`wasm/test/native.test.mjs`), in which a replica built to
//! WebAssembly and this one, built natively, sync through their session
//! drivers (`SyncDriver` there, `sync::Sessions` here) and must end with the
//! same heads and the same total order.
//!
//! ```text
//! cargo run --release --example sync_stdio
//! ```
//!
//! Commands (bytes as lowercase hex, times in milliseconds; the one peer is
//! the other side):
//!
//! - `create GENESIS` — a replica in memory of the stream that this genesis
//!   block starts → `ok STREAM-CID`
//! - `append TEXT` — an event whose payload is the text (the rest of the
//!   line) → `ok CID`
//! - `connect NOW` → `ok`
//! - `receive NOW MESSAGE` → `reply MESSAGE` or `reply -`
//! - `tick NOW` → `messages [MESSAGE …]`
//! - `settled` → `settled true|false`
//! - `state` → `state HEADS ORDER` (CIDs joined by `,`; heads sorted)
//!
//! A bad command or a failed call answers `error …` and changes nothing.
//! End of input ends the process.

use std::io::{self, BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use futures::executor::block_on;
use merkle_clock::sync::{Bloom, SessionConfig, Sessions};
use merkle_clock::{Block, Ipld, MemoryBlockstore, Replica, ReplicaConfig};

/// The other side, the one peer.
const PEER: &str = "other";

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Peer {
    replica: Option<Replica<MemoryBlockstore>>,
    sessions: Sessions<String, Bloom>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Result<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return Err("hex of odd length".into());
    }
    (0..text.len()).step_by(2).map(|i| Ok(u8::from_str_radix(&text[i..i + 2], 16)?)).collect()
}

fn millis(text: &str) -> Result<Duration> {
    Ok(Duration::from_millis(text.parse()?))
}

impl Peer {
    fn replica(&mut self) -> Result<&mut Replica<MemoryBlockstore>> {
        self.replica.as_mut().ok_or_else(|| "no replica yet: `create GENESIS` first".into())
    }

    fn answer(&mut self, line: &str) -> Result<String> {
        let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
        let mut args = rest.split(' ');
        let mut arg = || args.next().filter(|a| !a.is_empty()).ok_or("an argument is missing");
        Ok(match command {
            "create" => {
                let genesis = Block::from_bytes(unhex(arg()?)?);
                let store = Arc::new(MemoryBlockstore::new());
                let replica = block_on(Replica::create(store, &genesis, ReplicaConfig::default()))?;
                let stream = *replica.stream_id();
                self.replica = Some(replica);
                format!("ok {stream}")
            }
            "append" => {
                let cid = block_on(self.replica()?.append(&Ipld::String(rest.to_string())))?;
                format!("ok {cid}")
            }
            "connect" => {
                self.sessions.connect(PEER.to_string(), millis(arg()?)?);
                "ok".to_string()
            }
            "receive" => {
                let now = millis(arg()?)?;
                let message = unhex(arg()?)?;
                let replica = self.replica.as_mut().ok_or("no replica yet")?;
                let reply = block_on(self.sessions.receive(replica, &PEER.to_string(), &message, now))?;
                format!("reply {}", reply.reply.map_or_else(|| "-".to_string(), |m| hex(&m)))
            }
            "tick" => {
                let now = millis(arg()?)?;
                let replica = self.replica.as_ref().ok_or("no replica yet")?;
                let due = block_on(self.sessions.tick(replica, now))?;
                let messages: Vec<String> = due.messages.iter().map(|m| hex(&m.message)).collect();
                format!("messages {}", messages.join(" ")).trim_end().to_string()
            }
            "settled" => {
                let replica = self.replica.as_ref().ok_or("no replica yet")?;
                format!("settled {}", self.sessions.settled(replica, &PEER.to_string()))
            }
            "state" => {
                let replica = self.replica.as_ref().ok_or("no replica yet")?;
                let mut heads: Vec<String> = replica.heads().iter().map(ToString::to_string).collect();
                heads.sort();
                let order: Vec<String> = replica.order().map(|c| c.to_string()).collect();
                format!("state {} {}", heads.join(","), order.join(","))
            }
            other => return Err(format!("unknown command {other:?}").into()),
        })
    }
}

fn main() -> Result<()> {
    let mut peer = Peer { replica: None, sessions: Sessions::new(SessionConfig::default()) };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    for line in io::stdin().lock().lines() {
        let line = line?;
        let answer = peer.answer(line.trim_end()).unwrap_or_else(|e| format!("error {e}"));
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    Ok(())
}
