//! Signing keys and membership as JS sees them.
//!
//! The forms are those of `@noble/curves`' `ed25519` (the JS ecosystem's
//! Ed25519), so keys move between the two without conversion:
//!
//! - a **secret key** is the 32-byte Ed25519 seed (RFC 8032's private key) as
//!   a `Uint8Array`: what `ed25519.utils.randomSecretKey()` makes and
//!   `ed25519.getPublicKey(secretKey)` takes;
//! - a **public key** (an author) is taken as its 32 bytes (`Uint8Array`, as
//!   `getPublicKey` returns it) or as 64 hex digits, and given back as 64
//!   lowercase hex digits: a string, like CIDs in this package, so that keys
//!   compare with `===` and serve as object keys; it is also how the Rust
//!   library and the CLI print them.

use js_sys::{Object, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::core::{AuthError, AuthorKey, MemberOp, Members, Policy, Role, Signer};
use crate::errors::invalid;
use crate::replica::set;
use crate::values::cid_js;

/// A secret key (32 bytes) from a JS value.
pub(crate) fn secret_arg(v: &JsValue) -> Result<Signer, JsValue> {
    let seed: [u8; 32] = v
        .dyn_ref::<Uint8Array>()
        .and_then(|b| <[u8; 32]>::try_from(b.to_vec()).ok())
        .ok_or_else(|| invalid("a secret key is a Uint8Array of 32 bytes (an Ed25519 seed)"))?;
    Ok(Signer::from_seed(&seed))
}

/// A public key from 32 bytes or 64 hex digits.
pub(crate) fn key_arg(v: &JsValue) -> Result<AuthorKey, JsValue> {
    if let Some(bytes) = v.dyn_ref::<Uint8Array>() {
        return <[u8; 32]>::try_from(bytes.to_vec())
            .map(AuthorKey::from_bytes)
            .map_err(|_| invalid(format!("a public key is 32 bytes, not {}", bytes.length())));
    }
    match v.as_string() {
        Some(s) => s.parse().map_err(|e| invalid(format!("{e} (or a Uint8Array of 32 bytes)"))),
        None => Err(invalid("a public key is a Uint8Array of 32 bytes or a string of 64 hex digits")),
    }
}

/// Public keys from a JS array.
pub(crate) fn keys_arg(v: &JsValue) -> Result<Vec<AuthorKey>, JsValue> {
    if !js_sys::Array::is_array(v) {
        return Err(invalid("admins must be an array of public keys"));
    }
    js_sys::Array::from(v).iter().map(|k| key_arg(&k)).collect()
}

/// A public key as JS sees it: 64 lowercase hex digits.
pub(crate) fn key_js(key: &AuthorKey) -> JsValue {
    JsValue::from_str(&key.to_string())
}

/// `'writer'` (also when omitted) or `'admin'` from JS.
pub(crate) fn role_arg(v: &JsValue) -> Result<Role, JsValue> {
    if v.is_undefined() || v.is_null() {
        return Ok(Role::Writer);
    }
    match v.as_string().as_deref() {
        Some("writer") => Ok(Role::Writer),
        Some("admin") => Ok(Role::Admin),
        _ => Err(invalid("a role is 'writer' or 'admin'")),
    }
}

/// The public key (64 hex digits) of a secret key (32 bytes): the author
/// that events signed with it name.
#[wasm_bindgen(js_name = publicKey)]
pub fn public_key(secret_key: JsValue) -> Result<JsValue, JsValue> {
    Ok(key_js(&secret_arg(&secret_key)?.public()))
}

/// `{op: 'grant', key, role}` or `{op: 'revoke', key}`.
pub(crate) fn member_op_js(op: &MemberOp) -> JsValue {
    let obj = Object::new();
    match op {
        MemberOp::Grant { key, role } => {
            set(&obj, "op", &JsValue::from_str("grant"));
            set(&obj, "key", &key_js(key));
            set(&obj, "role", &JsValue::from_str(role.as_str()));
        }
        MemberOp::Revoke { key } => {
            set(&obj, "op", &JsValue::from_str("revoke"));
            set(&obj, "key", &key_js(key));
        }
    }
    obj.into()
}

/// `{roles: {key: 'writer' | 'admin'}, revoked: {key: revocationCid}}`.
pub(crate) fn members_js(members: &Members) -> JsValue {
    let (roles, revoked) = (Object::new(), Object::new());
    for (key, role) in &members.roles {
        set(&roles, &key.to_string(), &JsValue::from_str(role.as_str()));
    }
    for (key, cid) in &members.revoked {
        set(&revoked, &key.to_string(), &cid_js(cid));
    }
    let obj = Object::new();
    set(&obj, "roles", &roles);
    set(&obj, "revoked", &revoked);
    obj.into()
}

/// `{open: true}` or `{open: false, admins: [key…]}`.
pub(crate) fn policy_js(policy: &Policy) -> JsValue {
    let obj = Object::new();
    match policy {
        Policy::Open => set(&obj, "open", &JsValue::TRUE),
        Policy::Admins(admins) => {
            set(&obj, "open", &JsValue::FALSE);
            set(&obj, "admins", &admins.iter().map(key_js).collect::<js_sys::Array>());
        }
    }
    obj.into()
}

/// The snake_case name of an authorship refusal: `unsigned`, `invalid_key`,
/// `bad_signature`, `not_a_member`, `revoked`, `not_an_admin`,
/// `grant_to_revoked`, `last_admin`, `open_stream` (`auth` for a kind this
/// build does not know).
pub(crate) fn auth_kind(e: &AuthError) -> &'static str {
    match e {
        AuthError::Unsigned { .. } => "unsigned",
        AuthError::InvalidKey { .. } => "invalid_key",
        AuthError::BadSignature { .. } => "bad_signature",
        AuthError::NotAMember { .. } => "not_a_member",
        AuthError::Revoked { .. } => "revoked",
        AuthError::NotAnAdmin { .. } => "not_an_admin",
        AuthError::GrantToRevoked { .. } => "grant_to_revoked",
        AuthError::LastAdmin { .. } => "last_admin",
        AuthError::OpenStream { .. } => "open_stream",
        _ => "auth",
    }
}

/// Adds an authorship refusal's details to `obj` (a rejected outcome or an
/// error): `auth` (its kind), `cid`, `author` (when the event claims one)
/// and, for a revoked author, `revocation`.
pub(crate) fn set_auth(obj: &Object, e: &AuthError) {
    set(obj, "auth", &JsValue::from_str(auth_kind(e)));
    set(obj, "cid", &cid_js(e.cid()));
    if let Some(author) = e.author() {
        set(obj, "author", &key_js(author));
    }
    if let AuthError::Revoked { revocation, .. } = e {
        set(obj, "revocation", &cid_js(revocation));
    }
}
