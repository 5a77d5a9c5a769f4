//! `mclock`: a command line over merkle-clock streams kept in a redb store,
//! and a one-command demo of replicas converging on a faulty network.
//!
//! See `cli/README.md` for the commands and the store layout.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod checkpoint;
mod commands;
mod demo;
mod draw;
mod fetch;
mod json;
mod keys;
mod serve;
mod store;

/// Every command's result: errors are shown as one line.
pub type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// Replicated event logs as Merkle clocks, in a local redb store.
///
/// Every event is a content-addressed IPLD block whose CID hashes its payload
/// and its parents' CIDs; the events nobody points at yet (the heads) are the
/// clock. Start with `mclock demo`, or `mclock init` then `mclock append '{"hello": "world"}'`.
#[derive(Debug, Parser)]
#[command(name = "mclock", version, propagate_version = true)]
struct Cli {
    /// The store directory (holds mclock.redb and a `stream` file naming the current stream).
    #[arg(long, global = true, value_name = "PATH", default_value = ".mclock")]
    store: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates a stream in the store and prints its id (the genesis CID).
    Init {
        /// The genesis payload as JSON; it names the stream (default: a fresh unique one).
        #[arg(long, value_name = "JSON")]
        genesis: Option<String>,
        /// An admin of a signed stream: a key file or a public key (64 hex
        /// digits). Repeatable; without it the stream is open to anyone.
        #[arg(long = "admin", value_name = "KEYFILE_OR_PUBKEY")]
        admins: Vec<String>,
    },
    /// Appends an event whose parents are the current heads; prints its CID.
    Append {
        /// The payload as JSON (`-` reads it from stdin). Links are {"/": "CID"},
        /// bytes {"/": {"bytes": "BASE64"}}.
        #[arg(value_name = "JSON", allow_hyphen_values = true)]
        payload: String,
        /// The key file that signs the event (required on a signed stream).
        #[arg(long, value_name = "KEYFILE")]
        key: Option<PathBuf>,
    },
    /// Creates a signing key in a new key file (0600, never overwritten); prints its public key.
    Keygen {
        /// The key file to create.
        #[arg(long, value_name = "FILE", default_value = keys::DEFAULT_KEY_FILE)]
        out: PathBuf,
    },
    /// On a signed stream: makes a key a writer (or an admin), in an event signed by an admin.
    Grant {
        /// The public key (64 hex digits) or a key file.
        #[arg(value_name = "PUBKEY")]
        pubkey: String,
        /// Grant the admin role (may grant and revoke) instead of writer.
        #[arg(long)]
        admin: bool,
        /// The admin's key file that signs the grant.
        #[arg(long, value_name = "KEYFILE")]
        key: PathBuf,
    },
    /// On a signed stream: revokes a key for good, in an event signed by an admin.
    Revoke {
        /// The public key (64 hex digits) or a key file.
        #[arg(value_name = "PUBKEY")]
        pubkey: String,
        /// The admin's key file that signs the revocation.
        #[arg(long, value_name = "KEYFILE")]
        key: PathBuf,
    },
    /// Prints the events in the total order: position, height, short CID,
    /// author (signed streams), payload.
    Log {
        /// One JSON object per line: position, height, cid, parents, payload.
        #[arg(long)]
        json: bool,
    },
    /// Prints the current heads, one CID per line.
    Heads,
    /// Drops the bytes of old events, keeping the newest N (in the total
    /// order) and, always, the genesis, the heads and the membership events.
    /// A pruned event keeps its place in the clock (height, parents); `log`
    /// marks it and `show` says it was pruned. Prints what it pruned and
    /// the bytes freed (the file is compacted).
    Prune {
        /// How many of the newest events keep their bytes.
        #[arg(long, value_name = "N")]
        keep: usize,
    },
    /// Prints one event: height, parents, children, payload.
    Show {
        /// A CID, or a unique tail of one (as `log` prints it).
        #[arg(value_name = "CID")]
        cid: String,
        /// Prints the event as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Compares two clocks (sets of events): prints before, after, concurrent or equal.
    #[command(override_usage = "mclock compare <CID>... -- <CID>...")]
    Compare {
        /// The first clock.
        #[arg(value_name = "CID", required = true, num_args = 1..)]
        left: Vec<String>,
        /// The second clock, after `--`.
        #[arg(value_name = "CID", last = true, required = true, num_args = 1..)]
        right: Vec<String>,
    },
    /// Writes the stream to a CAR v1 file: roots = heads, every block in the total order.
    ExportCar {
        /// The CAR file to write.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Reads a CAR v1 file, verifying every block before keeping any, and
    /// adds its events (creating the stream from its genesis if the store has none).
    ImportCar {
        /// The CAR file to read.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Reconciles with another local store through the sync protocol, in-process
    /// (one session driver per side), or with a running node over libp2p (`--peer`).
    Sync {
        /// The other store directory (it must hold the same stream).
        #[arg(long = "with", value_name = "PATH", required_unless_present = "peer", conflicts_with = "peer")]
        with: Option<PathBuf>,
        /// Start this (empty) store from the checkpoint with this CID, which
        /// you trust, fetching its blocks from the `--with` store, instead
        /// of the whole history; then sync the events after it.
        #[arg(long = "from-checkpoint", value_name = "CID", requires = "with")]
        from_checkpoint: Option<String>,
        #[command(flatten)]
        peer: serve::PeerArgs,
    },
    /// Runs a node over the store: libp2p (sync protocol) and an IPFS
    /// trustless HTTP gateway; prints `libp2p <addr>` and `gateway <url>`,
    /// then serves until interrupted.
    Serve(serve::Args),
    /// Fills the store from IPFS trustless gateways: the event CID and all
    /// its ancestors, every block verified.
    Fetch(fetch::Args),
    /// Appends a checkpoint at the heads: the chosen reducers' states and the
    /// skeleton of the history below it; prints its CID.
    Checkpoint(checkpoint::Args),
    /// Draws the DAG in layers by height, heads marked: SVG (drawn by mclock), DOT or Mermaid.
    Draw {
        /// The output format.
        #[arg(long, value_enum, default_value_t = Format::Svg)]
        format: Format,
        /// Write to this file instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Draw at most the last N layers (heights).
        #[arg(long, value_name = "N", default_value_t = 40)]
        layers: usize,
        /// Draw at most N events per layer (heads first).
        #[arg(long, value_name = "N", default_value_t = 12)]
        rows: usize,
        /// Colour events by the value of this payload key (for map payloads).
        #[arg(long, value_name = "KEY")]
        color_by: Option<String>,
    },
    /// Runs replicas on a simulated faulty network (loss, a partition that
    /// heals, a late joiner, a restart) and checks that they converge.
    Demo(demo::Args),
}

/// Formats `draw` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An SVG picture.
    Svg,
    /// A Graphviz DOT graph.
    Dot,
    /// A Mermaid flow chart.
    Mermaid,
}

fn main() -> ExitCode {
    // A bug must still end in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("error: internal error: {}{at}", one_line(&msg));
    }));

    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result = futures::executor::block_on(commands::run(cli.command, &cli.store, &mut out));
    let result = result.and_then(|code| out.flush().map(|()| code).map_err(Into::into));
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(io) = e.downcast_ref::<io::Error>()
                && io.kind() == io::ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS; // `mclock log | head`
            }
            eprintln!("error: {}", one_line(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// Help and version go to stdout as clap writes them; usage errors become one line.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return ExitCode::from(2);
    }
    let text = e.render().to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .collect();
    let msg = lines.join(" ");
    let msg = msg.strip_prefix("error: ").unwrap_or(&msg);
    eprintln!("error: {msg} (see `mclock --help`)");
    ExitCode::from(2)
}

/// Collapses a message to one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
