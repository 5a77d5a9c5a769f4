//! Who may write, from the command line: key files, signed streams,
//! grants and revocations, and the key that signs an append.
//!
//! A key file holds one line: the 64 hex digits of an Ed25519 secret seed
//! (RFC 8032's private key). `keygen` creates it with 0600 permissions and
//! never overwrites one; reading a key file that others may read is refused
//! (on Unix), as ssh does.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use merkle_clock::auth::{self, AuthorKey, Policy, Role, Signer};
use merkle_clock::replica::AppendError;
use merkle_clock::{Block, Ipld};
use thiserror::Error;

use crate::Result;
use crate::store::{self, Local};

/// Why a key, or a command that needs one, was refused.
#[derive(Debug, Error)]
pub enum KeyError {
    /// `keygen` would overwrite an existing file.
    #[error("{0} exists: keygen never overwrites a key file (choose another --out)")]
    Exists(PathBuf),
    /// The key file could not be created, written or read.
    #[error("cannot {action} key file {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The key file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The key file does not hold 64 hex digits.
    #[error("{0}: not a key file (one line of 64 hex digits, as `mclock keygen` writes)")]
    Malformed(PathBuf),
    /// Others may read the key file (Unix).
    #[error("{path}: a secret key readable by others (mode {mode:04o}); run `chmod 600 {path}`")]
    Exposed {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Neither a key file nor a public key.
    #[error("{0:?} is neither a key file nor a public key (64 hex digits)")]
    NotAKey(String),
    /// An append, grant or revocation on a signed stream without `--key`.
    #[error("stream {0} only takes events signed by its members: give --key KEYFILE")]
    NeedsKey(merkle_clock::Cid),
    /// `grant`/`revoke` on a stream whose genesis names no admins.
    #[error("stream {0} is open (its genesis names no admins): it has no members to grant or revoke")]
    OpenStream(merkle_clock::Cid),
}

/// The file `keygen` writes without `--out`.
pub const DEFAULT_KEY_FILE: &str = "mclock.key";

/// `mclock keygen`: a new key in a new file (0600); prints the public key.
pub fn keygen(path: &Path, out: &mut dyn Write) -> Result<()> {
    let signer = Signer::generate();
    let mut file = create_secret(path)?;
    let text = format!("{}\n", hex(&signer.seed()));
    let io = |source| KeyError::Io { action: "write", path: path.to_path_buf(), source };
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    writeln!(out, "{}", signer.public())?;
    Ok(())
}

/// Creates `path` for a secret: never over an existing file, 0600 from the start.
fn create_secret(path: &Path) -> Result<File, KeyError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => KeyError::Exists(path.to_path_buf()),
        _ => KeyError::Io { action: "create", path: path.to_path_buf(), source },
    })
}

/// Reads the signing key of a key file.
pub fn read_key(path: &Path) -> Result<Signer, KeyError> {
    let io = |source| KeyError::Io { action: "read", path: path.to_path_buf(), source };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Exposed { path: path.to_path_buf(), mode });
        }
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let seed = parse_hex32(text.trim()).ok_or_else(|| KeyError::Malformed(path.to_path_buf()))?;
    Ok(Signer::from_seed(&seed))
}

/// A public key given as 64 hex digits, or as a key file (its public key).
pub fn public_key(text: &str) -> Result<AuthorKey, KeyError> {
    if let Ok(key) = text.parse::<AuthorKey>() {
        return Ok(key);
    }
    let path = Path::new(text);
    if path.is_file() {
        return Ok(read_key(path)?.public());
    }
    Err(KeyError::NotAKey(text.to_string()))
}

/// The genesis of `init`: a signed stream when admins are named, else open.
pub fn genesis(payload: &Ipld, admins: &[String]) -> Result<Block> {
    if admins.is_empty() {
        return Ok(merkle_clock::Event::genesis(payload.clone())
            .encode()
            .map_err(|e| format!("invalid genesis: {e}"))?);
    }
    let keys: Vec<AuthorKey> = admins.iter().map(|a| public_key(a)).collect::<Result<_, _>>()?;
    Ok(auth::genesis(payload, &keys).map_err(|e| format!("invalid genesis: {e}"))?)
}

/// Opens the store's replica with the signer of `key`, if given; refuses a
/// signed stream without one.
pub async fn open_signed(dir: &Path, key: Option<&Path>) -> Result<Local> {
    let mut replica = store::open(dir).await?;
    match key {
        Some(path) => replica.set_signer(Some(read_key(path)?)),
        None if replica.policy() != Policy::Open => return Err(KeyError::NeedsKey(*replica.stream_id()).into()),
        None => {}
    }
    Ok(replica)
}

/// `mclock grant` and `mclock revoke`: one membership event, signed by `key`;
/// prints its CID.
pub async fn change(dir: &Path, who: &str, role: Option<Role>, key: &Path, out: &mut dyn Write) -> Result<()> {
    let target = public_key(who)?;
    let mut replica = open_signed(dir, Some(key)).await?;
    if replica.policy() == Policy::Open {
        return Err(KeyError::OpenStream(*replica.stream_id()).into());
    }
    let cid = match role {
        Some(role) => replica.grant(target, role).await,
        None => replica.revoke(target).await,
    }
    .map_err(refused)?;
    writeln!(out, "{cid}")?;
    Ok(())
}

/// An append refused for who signs it says so plainly.
pub fn refused(e: AppendError) -> Box<dyn std::error::Error> {
    match e {
        AppendError::NeedsSigner { stream } => KeyError::NeedsKey(stream).into(),
        other => other.into(),
    }
}

/// The author column of `log` for an event: the short key, and what a
/// membership event changes; `None` for an unsigned event.
pub fn author_column(block: &Block) -> Option<(String, Option<String>)> {
    let author = auth::author_of(block).ok()??;
    let change = auth::member_op_of(block).ok().flatten().map(|op| match op {
        auth::MemberOp::Grant { key, role } => format!("grant {role} {}", short_key(&key)),
        auth::MemberOp::Revoke { key } => format!("revoke {}", short_key(&key)),
    });
    Some((short_key(&author), change))
}

/// The first 8 hex digits of a key, as `log` prints it.
pub fn short_key(key: &AuthorKey) -> String {
    key.to_string()[..8].to_string()
}

/// 32 bytes as 64 lowercase hex digits (the text form keys already have).
fn hex(bytes: &[u8; 32]) -> String {
    AuthorKey::from_bytes(*bytes).to_string()
}

/// 32 bytes from 64 hex digits.
fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    s.parse::<AuthorKey>().ok().map(|k| *k.as_bytes())
}
