//! `mclock checkpoint`: a checkpoint event at the current heads, carrying the
//! state of the chosen reducers and the skeleton of the history below it.

use std::io::Write;
use std::path::{Path, PathBuf};

use merkle_clock::Ipld;
use merkle_clock::auth::Policy;
use merkle_clock::checkpoint::{self, CheckpointConfig, SavedState};
use merkle_clock::crdt::{AddWinsSet, Counter, Fold, Log, LwwMap, LwwRegister, Resumable};

use crate::Result;
use crate::keys;
use crate::store::Local;

/// `mclock checkpoint` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The key file that signs the checkpoint: on a signed stream it must be
    /// an admin's (others trust only those); on an open stream it is optional.
    #[arg(long, value_name = "KEYFILE")]
    key: Option<PathBuf>,
    /// A reducer whose state at the cut the checkpoint carries, under its
    /// name (repeatable). Without one, the checkpoint carries the skeleton only.
    #[arg(long = "reducer", value_name = "NAME", value_enum)]
    reducers: Vec<Named>,
}

/// The ready-made reducers over JSON payloads, by the name a checkpoint
/// gives their state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Named {
    /// `{"increment": n}` / `{"decrement": n}`: their sum.
    Counter,
    /// `{"set": {"key": "k", "value": v}}` / `{"delete": {"key": "k"}}`: last writer wins per key.
    Map,
    /// `{"set": v}` / `"clear"`: last writer wins.
    Register,
    /// `{"add": "e"}` / `{"remove": {"elem": "e", "observed": [links]}}`: add wins.
    Set,
    /// Every event, in the total order (the whole history: large).
    Log,
}

impl Named {
    fn name(self) -> &'static str {
        match self {
            Named::Counter => "counter",
            Named::Map => "map",
            Named::Register => "register",
            Named::Set => "set",
            Named::Log => "log",
        }
    }
}

/// Folds `reducer` over the replica, boxed for `build`.
async fn folded<R: Resumable + 'static>(reducer: R, replica: &Local) -> Result<Box<dyn SavedState>> {
    let mut fold = Fold::new(reducer);
    fold.update(replica).await?;
    Ok(Box::new(fold))
}

/// `mclock checkpoint`: folds the chosen reducers, writes their states and
/// the skeleton to the store, appends the checkpoint; prints its CID.
pub async fn run(dir: &Path, args: &Args, out: &mut dyn Write) -> Result<()> {
    let mut replica = keys::open_signed(dir, args.key.as_deref()).await?;
    if let (Policy::Admins(_), Some(signer)) = (replica.policy(), replica.signer()) {
        let members = replica.members().unwrap_or_default();
        if !members.may_checkpoint(&signer.public()) {
            return Err(format!(
                "{} is not an admin of this stream: nobody would trust its checkpoint",
                signer.public()
            )
            .into());
        }
    }
    let mut names: Vec<Named> = args.reducers.clone();
    names.sort_unstable_by_key(|n| n.name());
    names.dedup();
    let mut states = Vec::with_capacity(names.len());
    for named in &names {
        let state = match named {
            Named::Counter => folded(Counter, &replica).await?,
            Named::Map => folded(LwwMap::<String, Ipld>::new(), &replica).await?,
            Named::Register => folded(LwwRegister::<Ipld>::new(), &replica).await?,
            Named::Set => folded(AddWinsSet::<String>::new(), &replica).await?,
            Named::Log => folded(Log::<Ipld>::new(), &replica).await?,
        };
        states.push((named.name(), state));
    }
    let refs: Vec<(&str, &dyn SavedState)> = states.iter().map(|(n, s)| (*n, s.as_ref())).collect();
    let cp = checkpoint::build(&mut replica, &refs, &CheckpointConfig::default()).await.map_err(|e| match e {
        checkpoint::CheckpointError::Append(e) => keys::refused(e),
        e => e.into(),
    })?;
    writeln!(out, "{}", cp.cid)?;
    Ok(())
}
