//! The store directory: `DIR/mclock.redb` (a [`RedbBlockstore`]) and
//! `DIR/stream`, one line naming the current stream (its genesis CID).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use merkle_clock::replica::{Replica, ReplicaConfig};
use merkle_clock::store::{Durability, RedbBlockstore};
use merkle_clock::{Block, Cid, StreamStore};

use crate::Result;

/// The database file inside a store directory.
pub const DB_FILE: &str = "mclock.redb";
/// The file naming the current stream inside a store directory.
pub const STREAM_FILE: &str = "stream";

/// A replica over the redb store of a directory.
pub type Local = Replica<RedbBlockstore>;

/// Opens the database of an existing store directory.
pub fn open_db(dir: &Path, durability: Durability) -> Result<RedbBlockstore> {
    let db = dir.join(DB_FILE);
    if !db.is_file() {
        return Err(format!(
            "no mclock store at {} (run `mclock --store {} init` first)",
            dir.display(),
            dir.display()
        )
        .into());
    }
    RedbBlockstore::open_with(&db, durability).map_err(|e| format!("cannot open {}: {e}", db.display()).into())
}

/// Creates (or opens) the database of a store directory, creating the directory.
pub fn create_db(dir: &Path, durability: Durability) -> Result<RedbBlockstore> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let db = dir.join(DB_FILE);
    RedbBlockstore::open_with(&db, durability).map_err(|e| format!("cannot open {}: {e}", db.display()).into())
}

/// The current stream of a store: the one `DIR/stream` names, or, if that
/// file is missing, the store's only stream.
pub async fn current_stream(dir: &Path, db: &RedbBlockstore) -> Result<Option<Cid>> {
    let file = dir.join(STREAM_FILE);
    match fs::read_to_string(&file) {
        Ok(text) => {
            let text = text.trim();
            let cid = Cid::try_from(text).map_err(|e| format!("{}: not a stream id ({e})", file.display()))?;
            Ok(Some(cid))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let streams = db.streams().await?;
            match streams.as_slice() {
                [] => Ok(None),
                [one] => Ok(Some(*one)),
                _ => Err(format!(
                    "{} holds {} streams and no {STREAM_FILE} file naming one",
                    dir.display(),
                    streams.len()
                )
                .into()),
            }
        }
        Err(e) => Err(format!("cannot read {}: {e}", file.display()).into()),
    }
}

/// Records the current stream of a store directory.
pub fn set_stream(dir: &Path, stream: &Cid) -> Result<()> {
    let file = dir.join(STREAM_FILE);
    let tmp: PathBuf = dir.join(format!("{STREAM_FILE}.tmp"));
    fs::write(&tmp, format!("{stream}\n")).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, &file).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok(())
}

/// The size of a store directory's database file, in bytes.
pub fn db_size(dir: &Path) -> Result<u64> {
    let db = dir.join(DB_FILE);
    Ok(fs::metadata(&db).map_err(|e| format!("cannot read {}: {e}", db.display()))?.len())
}

/// Compacts a store directory's database (gives what pruning freed back to
/// the file system); returns the file's new size.
pub fn compact(dir: &Path) -> Result<u64> {
    let mut db = open_db(dir, Durability::Immediate)?;
    while db.compact()? {}
    db.close()?;
    db_size(dir)
}

/// Opens the replica of the current stream of an existing store directory.
pub async fn open(dir: &Path) -> Result<Local> {
    let db = open_db(dir, Durability::Immediate)?;
    let stream = current_stream(dir, &db)
        .await?
        .ok_or_else(|| format!("the store at {} holds no stream (run `mclock init`)", dir.display()))?;
    Ok(Replica::open(Arc::new(db), &stream, ReplicaConfig::default()).await?)
}

/// Creates the stream of `genesis` in a store directory (which may not hold
/// a current stream yet, or already hold this one) and makes it current.
pub async fn create(dir: &Path, genesis: &Block, durability: Durability) -> Result<Local> {
    let db = create_db(dir, durability)?;
    if let Some(existing) = current_stream(dir, &db).await?
        && existing != *genesis.cid()
    {
        return Err(format!("the store at {} already holds stream {existing}", dir.display()).into());
    }
    let replica = Replica::open_or_create(Arc::new(db), genesis, ReplicaConfig::default()).await?;
    set_stream(dir, replica.stream_id())?;
    Ok(replica)
}
