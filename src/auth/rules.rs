//! The membership rules: may this author write this event, given the
//! membership of its causal past?

use ipld_core::cid::Cid;

use super::membership::MemberState;
use super::{AuthError, AuthorKey, MemberOp, Role};

/// Decides an event of `cid` by `author` (if signed) doing `op` (if a
/// membership event), given `past`: the membership its parents establish, or
/// `None` on an open stream. Signatures are checked before, by
/// [`super::verify`].
///
/// The rules, in order: on an open stream anything but a membership event
/// goes; on a stream with admins the event is signed, its author not revoked
/// and in force; a membership event's author is an admin; a grant is not to a
/// revoked key; a revocation does not remove the last admin.
pub(crate) fn authorize(
    past: Option<&MemberState>,
    cid: Cid,
    author: Option<AuthorKey>,
    op: Option<&MemberOp>,
) -> Result<(), AuthError> {
    let Some(past) = past else {
        return match (author, op) {
            (Some(author), Some(_)) => Err(AuthError::OpenStream { cid, author }),
            _ => Ok(()),
        };
    };
    let author = author.ok_or(AuthError::Unsigned { cid })?;
    if let Some(revocation) = past.revoked.get(&author) {
        return Err(AuthError::Revoked { cid, author, revocation: *revocation });
    }
    let role = past.roles.get(&author).ok_or(AuthError::NotAMember { cid, author })?;
    let Some(op) = op else { return Ok(()) };
    if *role != Role::Admin {
        return Err(AuthError::NotAnAdmin { cid, author });
    }
    match *op {
        MemberOp::Grant { key, .. } if past.revoked.contains_key(&key) => {
            Err(AuthError::GrantToRevoked { cid, author, key })
        }
        MemberOp::Revoke { key } if past.admins == 1 && past.roles.get(&key) == Some(&Role::Admin) => {
            Err(AuthError::LastAdmin { cid, author, key })
        }
        _ => Ok(()),
    }
}
