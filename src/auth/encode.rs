//! Writing signed events and genesis blocks with a policy; the signing input;
//! verifying a signature.

use ipld_core::cid::Cid;
use serde::Serialize;

use super::{AuthError, AuthorKey, MemberOp, Role, Signer};
use crate::block::{Block, Digest};
use crate::cbor::{self, MAJOR_ARRAY, MAJOR_UINT};
use crate::error::{DecodeError, EncodeError};
use crate::event::{HEIGHT_KEY, Header, Limits, check_block, check_shape, write_parents_and_payload};

/// The first bytes of every signing input: ASCII `merkle-clock/event-signature/v1`.
pub(crate) const DOMAIN: &[u8; 31] = b"merkle-clock/event-signature/v1";
/// The binary form of an event CID: version 1, dag-cbor, BLAKE3, 32 bytes, digest.
const CID_BYTES: usize = 36;
/// What precedes the envelope in a signing input: the domain and the stream's CID.
const PREFIX: usize = DOMAIN.len() + CID_BYTES;

const SIG_ENTRY_HEAD: [u8; 6] = [0x63, b's', b'i', b'g', 0x58, 0x40];
const ADMINS_KEY: [u8; 7] = [0x66, b'a', b'd', b'm', b'i', b'n', b's'];
const AUTHOR_KEY: [u8; 7] = [0x66, b'a', b'u', b't', b'h', b'o', b'r'];
const MEMBER_KEY: [u8; 7] = [0x66, b'm', b'e', b'm', b'b', b'e', b'r'];
/// A 32-byte byte string's head.
const BYTES32: [u8; 2] = [0x58, 0x20];
/// The bytes a `sig` entry adds to a block: its key, head and 64 bytes.
const SIG_ENTRY: usize = SIG_ENTRY_HEAD.len() + 64;

/// Writes the stream's CID in binary (36 bytes).
fn write_stream(out: &mut Vec<u8>, stream: &Cid) {
    let before = out.len();
    stream.write_bytes(&mut *out).expect("writing to a Vec cannot fail");
    debug_assert_eq!(out.len() - before, CID_BYTES, "streams are event CIDs");
}

/// Encodes a genesis whose policy is `admins` (at least one key): the
/// stream's identity then commits to who may write. The genesis itself is
/// not signed; anyone may make a genesis naming any keys, and it is simply
/// another stream.
///
/// The envelope is `{"admins": [keys ascending], "height": 0, "parents": [],
/// "payload": payload}`.
///
/// # Errors
/// [`EncodeError::NoAdmins`] for an empty list; as [`crate::Event::encode`]
/// for the payload.
pub fn genesis<P: Serialize>(payload: &P, admins: &[AuthorKey]) -> Result<Block, EncodeError> {
    let mut keys = admins.to_vec();
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return Err(EncodeError::NoAdmins);
    }
    let limits = Limits::DEFAULT;
    let mut out = Vec::with_capacity(64 + 34 * keys.len());
    out.push(0xa4);
    out.extend_from_slice(&ADMINS_KEY);
    cbor::write_head(&mut out, MAJOR_ARRAY, keys.len() as u64);
    for key in &keys {
        out.extend_from_slice(&BYTES32);
        out.extend_from_slice(key.as_bytes());
    }
    out.extend_from_slice(&HEIGHT_KEY);
    cbor::write_head(&mut out, MAJOR_UINT, 0);
    let payload_start = write_parents_and_payload(&mut out, &[], payload)?;
    check_block(&out, payload_start, &limits)?;
    Ok(Block::from_bytes(out))
}

/// Writes a membership operation's value.
fn write_member(out: &mut Vec<u8>, op: &MemberOp) {
    out.push(0xa2);
    out.extend_from_slice(&[0x63, b'k', b'e', b'y']);
    out.extend_from_slice(&BYTES32);
    out.extend_from_slice(op.key().as_bytes());
    out.extend_from_slice(&[0x64, b'r', b'o', b'l', b'e']);
    let role = match op {
        MemberOp::Grant { role: Role::Admin, .. } => "admin",
        MemberOp::Grant { role: Role::Writer, .. } => "writer",
        MemberOp::Revoke { .. } => "revoked",
    };
    cbor::write_text(out, role);
}

/// Encodes a signed event into `out` (cleared first), using `scratch` for
/// the signing input. Returns where the payload starts in `out`.
///
/// The block is `{"sig", "author", "height", ["member",] "parents",
/// "payload"}`; the signing input is [`DOMAIN`], the stream's CID, then the
/// same map without `sig` (see [`signing_input`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode_signed_into<P: crate::event::WritePayload + ?Sized>(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    stream: &Cid,
    height: u64,
    parents: &[Digest],
    member: Option<&MemberOp>,
    payload: &P,
    limits: &Limits,
    signer: &Signer,
) -> Result<usize, EncodeError> {
    out.clear();
    scratch.clear();
    check_shape(height, parents, limits)?;
    if parents.is_empty() {
        // A genesis is never signed.
        return Err(EncodeError::InvalidHeight { height, parents: 0 });
    }
    let entries = 4 + u8::from(member.is_some());
    scratch.extend_from_slice(DOMAIN);
    write_stream(scratch, stream);
    scratch.push(0xa0 + entries);
    scratch.extend_from_slice(&AUTHOR_KEY);
    scratch.extend_from_slice(&BYTES32);
    scratch.extend_from_slice(signer.public().as_bytes());
    scratch.extend_from_slice(&HEIGHT_KEY);
    cbor::write_head(scratch, MAJOR_UINT, height);
    if let Some(op) = member {
        scratch.extend_from_slice(&MEMBER_KEY);
        write_member(scratch, op);
    }
    let payload_in_scratch = write_parents_and_payload(scratch, parents, payload)?;
    let sig = signer.sign(scratch);
    out.reserve(scratch.len() - PREFIX + SIG_ENTRY);
    out.push(0xa0 + entries + 1);
    out.extend_from_slice(&SIG_ENTRY_HEAD);
    out.extend_from_slice(&sig);
    out.extend_from_slice(&scratch[PREFIX + 1..]);
    let payload_start = payload_in_scratch - PREFIX + SIG_ENTRY;
    check_block(out, payload_start, limits)?;
    Ok(payload_start)
}

/// Encodes a signed event of the stream `stream` by `signer` (height and
/// parents as [`crate::Event::new`] takes them), optionally a membership
/// event doing `member`. A replica's [`append`](crate::Replica::append),
/// [`grant`](crate::Replica::grant) and [`revoke`](crate::Replica::revoke)
/// build theirs this way on the current heads; this is for tools and tests
/// that build events elsewhere.
///
/// # Errors
/// As [`crate::Event::encode`]; [`EncodeError::InvalidHeight`] for a
/// genesis (never signed).
pub fn signed_event<P: Serialize>(
    stream: &Cid,
    height: u64,
    parents: &[Cid],
    member: Option<&MemberOp>,
    payload: &P,
    signer: &Signer,
) -> Result<Block, EncodeError> {
    let mut digests: Vec<Digest> = parents
        .iter()
        .map(|p| crate::block::digest_of(p).ok_or(EncodeError::UnsupportedParent { parent: *p }))
        .collect::<Result<_, _>>()?;
    digests.sort_unstable();
    digests.dedup();
    let (mut out, mut scratch) = (Vec::new(), Vec::new());
    let limits = Limits::DEFAULT;
    encode_signed_into(&mut out, &mut scratch, stream, height, &digests, member, payload, &limits, signer)?;
    Ok(Block::from_bytes(out))
}

/// The signing input of the signed event in `block` on the stream `stream`:
/// the exact bytes its author signed, or `None` for an unsigned event.
///
/// They are the 31 ASCII bytes `merkle-clock/event-signature/v1`, the
/// stream's CID in binary (36 bytes: `01 71 1e 20` and the genesis' BLAKE3
/// digest), and the block's map without its `sig` entry: one byte `0xa0 + n -
/// 1` (the block's map has `n` entries) followed by the block's bytes after
/// the `sig` entry (`sig` sorts first in canonical order, so they are the
/// block's last bytes). Any DAG-CBOR library gets the same bytes by encoding
/// the decoded envelope without `sig`.
///
/// # Errors
/// [`DecodeError`] when the block is not a canonical event.
pub fn signing_input(stream: &Cid, block: &Block) -> Result<Option<Vec<u8>>, DecodeError> {
    let header = Header::parse(block, &Limits::TRUSTED)?;
    Ok(header.auth.as_deref().and_then(|a| a.sig.map(|_| input_of(stream, block, a))))
}

fn input_of(stream: &Cid, block: &Block, a: &super::AuthFields) -> Vec<u8> {
    let rest = &block.bytes()[a.unsigned_start..];
    let mut msg = Vec::with_capacity(PREFIX + 1 + rest.len());
    msg.extend_from_slice(DOMAIN);
    write_stream(&mut msg, stream);
    msg.push(0xa0 + a.entries - 1);
    msg.extend_from_slice(rest);
    msg
}

/// Verifies signatures, keeping the decoded keys of recent authors (point
/// decompression costs about a third of a verification) and one buffer for
/// the signing input. At most [`Verifier::MAX_KEYS`] keys are kept; the cache
/// starts over when full, so keys a peer makes up cannot grow it.
#[derive(Default)]
pub(crate) struct Verifier {
    keys: std::collections::HashMap<AuthorKey, ed25519_dalek::VerifyingKey>,
    input: Vec<u8>,
}

impl Verifier {
    /// Most decoded keys kept.
    pub(crate) const MAX_KEYS: usize = 4096;

    /// Verifies a signed event's signature (strict Ed25519: no small-order
    /// keys, no malleable signatures). `Ok` for an unsigned event: whether the
    /// stream takes those is the membership rules' call.
    pub(crate) fn verify(&mut self, stream: &Cid, block: &Block, header: &Header) -> Result<(), AuthError> {
        let Some(a) = header.auth.as_deref() else { return Ok(()) };
        let (Some(author), Some(sig)) = (a.author, a.sig) else { return Ok(()) };
        let cid = *block.cid();
        let key = match self.keys.get(&author) {
            Some(key) => *key,
            None => {
                let key = ed25519_dalek::VerifyingKey::from_bytes(author.as_bytes())
                    .map_err(|_| AuthError::InvalidKey { cid, author })?;
                if self.keys.len() >= Self::MAX_KEYS {
                    self.keys.clear();
                }
                self.keys.insert(author, key);
                key
            }
        };
        let rest = &block.bytes()[a.unsigned_start..];
        self.input.clear();
        self.input.reserve(PREFIX + 1 + rest.len());
        self.input.extend_from_slice(DOMAIN);
        write_stream(&mut self.input, stream);
        self.input.push(0xa0 + a.entries - 1);
        self.input.extend_from_slice(rest);
        let result = key.verify_strict(&self.input, &ed25519_dalek::Signature::from_bytes(&sig));
        if self.input.capacity() > 1 << 16 {
            self.input = Vec::new();
        }
        result.map_err(|_| AuthError::BadSignature { cid, author })
    }
}
