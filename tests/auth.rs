//! Who may write: the hostile inputs of SECURITY.md (each a typed error that
//! changes nothing) and the hard cases of DESIGN.md ("Who may write"), on
//! replicas fed signed blocks built by hand.

mod auth_common;

use std::sync::Arc;

use auth_common::{Builder, Mem, accept_all, ingest, key, replica};
use futures::executor::block_on;
use merkle_clock::auth::{self, AuthError, MemberOp, Policy, Role, Signer};
use merkle_clock::replica::RejectReason;
use merkle_clock::{
    AppendError, Block, Cid, DecodeError, Event, Ingest, Ipld, MemoryBlockstore, Rejection, Replica, ReplicaConfig,
};

/// The replica's observable state: heads, events, order.
fn snapshot(r: &Mem) -> (Vec<Cid>, usize, Vec<Cid>) {
    (r.heads(), r.len(), r.order().collect())
}

/// Ingests a hostile block: it must be refused with `expect` (checked by the
/// caller's closure), and nothing already accepted changes.
fn refused(r: &mut Mem, b: &Block) -> Rejection {
    let before = snapshot(r);
    let outcome = ingest(r, b);
    assert_eq!(snapshot(r), before, "a refused block changed the replica");
    assert_eq!(r.pending().events, 0, "a refused block waits");
    match outcome {
        Ingest::Rejected(rej) => rej,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn auth_err(r: Rejection) -> AuthError {
    match r {
        Rejection::Auth(e) => e,
        other => panic!("expected an auth rejection, got {other:?}"),
    }
}

/// The bytes of a block with its `sig` value replaced (bytes 7..71 of a
/// signed event: map head, the key `sig`, the byte-string head).
fn with_sig(b: &Block, sig: &[u8]) -> Block {
    let mut bytes = b.bytes().to_vec();
    bytes[7..71].copy_from_slice(sig);
    Block::from_bytes(bytes)
}

fn sig_of(b: &Block) -> Vec<u8> {
    b.bytes()[7..71].to_vec()
}

#[test]
fn a_forged_signature_is_refused_naming_author_and_cid() {
    let admin = key(1);
    let mut s = Builder::new(&[&admin]);
    let mut r = replica(&s.genesis);
    let good = s.write(&[], &admin, "hello");
    let mut sig = sig_of(&good);
    sig[10] ^= 1;
    let forged = with_sig(&good, &sig);
    let e = auth_err(refused(&mut r, &forged));
    assert_eq!(e, AuthError::BadSignature { cid: *forged.cid(), author: admin.public() });
    assert_eq!(r.metrics().rejected.get(&RejectReason::Signature), Some(&1));
    // The genuine event still goes in afterwards.
    accept_all(&mut r, &[&good]);
}

#[test]
fn a_valid_signature_by_a_non_member_is_refused() {
    let (admin, stranger) = (key(1), key(2));
    let mut s = Builder::new(&[&admin]);
    let mut r = replica(&s.genesis);
    let e = s.write(&[], &stranger, "let me in");
    assert_eq!(auth_err(refused(&mut r, &e)), AuthError::NotAMember { cid: *e.cid(), author: stranger.public() });
    assert_eq!(r.metrics().rejected.get(&RejectReason::Unauthorized), Some(&1));
}

#[test]
fn a_revoked_writers_event_after_its_revocation_is_refused_and_so_are_waiting_descendants() {
    let (admin, w) = (key(1), key(2));
    let mut s = Builder::new(&[&admin]);
    let mut r = replica(&s.genesis);
    let g = s.grant(&[], &admin, &w, Role::Writer);
    let rv = s.revoke(&[&g], &admin, &w);
    let late = s.write(&[&rv], &w, "after");
    let child = s.write(&[&late], &admin, "child of a refused event");
    accept_all(&mut r, &[&g, &rv]);
    // The child arrives first and waits; the refused parent takes it along.
    assert!(matches!(ingest(&mut r, &child), Ingest::Pending { .. }));
    let before = snapshot(&r);
    let report = block_on(r.ingest_many(vec![late.clone()])).unwrap();
    assert_eq!(snapshot(&r), before);
    assert_eq!(
        report.outcomes,
        vec![Ingest::Rejected(Rejection::Auth(AuthError::Revoked {
            cid: *late.cid(),
            author: w.public(),
            revocation: *rv.cid()
        }))]
    );
    assert_eq!(r.pending().events, 0, "the waiting child was rejected with its parent");
    assert_eq!(r.metrics().rejected.get(&RejectReason::AncestorRejected), Some(&1));
}

#[test]
fn a_signed_payload_replayed_onto_other_parents_another_height_or_another_stream_is_refused() {
    let admin = key(1);
    let mut s = Builder::new(&[&admin]);
    let mut r = replica(&s.genesis);
    let a = s.write(&[], &admin, "a");
    let b = s.write(&[], &admin, "b");
    let x = s.write(&[&a], &admin, "the payload");
    accept_all(&mut r, &[&a, &b]);
    // The same author and payload on other parents, with x's signature.
    let other_parents = with_sig(&s.write(&[&b], &admin, "the payload"), &sig_of(&x));
    assert!(matches!(auth_err(refused(&mut r, &other_parents)), AuthError::BadSignature { .. }));
    // On two parents (another height), with x's signature.
    let two = s.write(&[&a, &b], &admin, "the payload");
    let higher = with_sig(&s.write(&[&two], &admin, "the payload"), &sig_of(&x));
    accept_all(&mut r, &[&two]);
    assert!(matches!(auth_err(refused(&mut r, &higher)), AuthError::BadSignature { .. }));
    // Another stream with the same admin: an event signed for this stream on
    // the other's genesis does not verify there.
    let mut other = Builder::with_payload(&[&admin], "another stream");
    let mut r2 = replica(&other.genesis);
    let for_first = auth::signed_event(&s.stream(), 1, &[other.stream()], None, &"the payload", &admin).unwrap();
    assert!(matches!(auth_err(refused(&mut r2, &for_first)), AuthError::BadSignature { .. }));
    // The genuine event is still accepted where it belongs.
    accept_all(&mut r, &[&x]);
    accept_all(&mut r2, &[&other.write(&[], &admin, "the payload")]);
}

#[test]
fn a_member_granting_itself_admin_is_refused() {
    let (admin, w) = (key(1), key(2));
    let mut s = Builder::new(&[&admin]);
    let mut r = replica(&s.genesis);
    let g = s.grant(&[], &admin, &w, Role::Writer);
    accept_all(&mut r, &[&g]);
    let selfish = s.grant(&[&g], &w, &w, Role::Admin);
    assert_eq!(auth_err(refused(&mut r, &selfish)), AuthError::NotAnAdmin { cid: *selfish.cid(), author: w.public() });
}

/// A signed event's bytes: map head (1), `sig` key (4), head (2), signature
/// (64), `author` key (7), its byte-string head (2), the key (32), the rest.
const AUTHOR_HEAD: usize = 78;

#[test]
fn a_key_of_the_wrong_length_is_a_decode_error() {
    let admin = key(1);
    let mut s = Builder::new(&[&admin]);
    let mut r = replica(&s.genesis);
    let good = s.write(&[], &admin, "x");
    let b = good.bytes();
    let mut bytes = b[..AUTHOR_HEAD].to_vec();
    bytes.extend_from_slice(&[0x58, 31]);
    bytes.extend_from_slice(&b[AUTHOR_HEAD + 2..AUTHOR_HEAD + 2 + 31]);
    bytes.extend_from_slice(&b[AUTHOR_HEAD + 2 + 32..]);
    let short = Block::from_bytes(bytes);
    match refused(&mut r, &short) {
        Rejection::Decode(DecodeError::WrongType { key: "author", .. }) => {}
        other => panic!("expected a wrong-type author, got {other:?}"),
    }
}

#[test]
fn a_claimed_author_without_a_signature_is_a_decode_error() {
    let admin = key(1);
    let mut s = Builder::new(&[&admin]);
    let mut r = replica(&s.genesis);
    let good = s.write(&[], &admin, "x");
    let mut bytes = vec![good.bytes()[0] - 1];
    bytes.extend_from_slice(&good.bytes()[71..]);
    let unsigned = Block::from_bytes(bytes);
    match refused(&mut r, &unsigned) {
        Rejection::Decode(DecodeError::MissingKey { key: "sig", .. }) => {}
        other => panic!("expected a missing sig, got {other:?}"),
    }
    // And an event with neither, on a stream with admins: unsigned.
    let plain = Event::new(1, vec![s.stream()], "x").encode().unwrap();
    assert_eq!(auth_err(refused(&mut r, &plain)), AuthError::Unsigned { cid: *plain.cid() });
}

#[test]
fn a_membership_operation_without_an_author_is_a_decode_error() {
    let (admin, w) = (key(1), key(2));
    let mut s = Builder::new(&[&admin]);
    let mut r = replica(&s.genesis);
    let g = s.grant(&[], &admin, &w, Role::Writer);
    // Drop `sig` and `author` (bytes 1..112): height, member, parents, payload remain.
    let mut bytes = vec![g.bytes()[0] - 2];
    bytes.extend_from_slice(&g.bytes()[71 + 7 + 34..]);
    match refused(&mut r, &Block::from_bytes(bytes)) {
        Rejection::Decode(DecodeError::MissingKey { key: "author", .. }) => {}
        other => panic!("expected a missing author, got {other:?}"),
    }
}

#[test]
fn a_signature_over_a_non_canonical_encoding_is_refused() {
    let admin = key(1);
    let mut s = Builder::new(&[&admin]);
    let mut r = replica(&s.genesis);
    let good = s.write(&[], &admin, "x");
    // The author signs the envelope with the height written long (0x18 0x01
    // for 1): a signature over bytes no canonical block can carry.
    let mut input = auth::signing_input(&s.stream(), &good).unwrap().expect("signed");
    let at = input.len() - (good.len() - 71) + 7 + 34 + 7;
    assert_eq!(input[at], 0x01, "the height");
    input.splice(at..=at, [0x18, 0x01]);
    let sig = admin.sign(&input);
    let bad = with_sig(&good, &sig);
    assert!(matches!(auth_err(refused(&mut r, &bad)), AuthError::BadSignature { .. }));
    // And the block itself written long: not canonical, refused before any signature check.
    let mut long = good.bytes().to_vec();
    let at = 71 + 7 + 34 + 7;
    assert_eq!(long[at], 0x01);
    long.splice(at..=at, [0x18, 0x01]);
    match refused(&mut r, &Block::from_bytes(long)) {
        Rejection::Decode(DecodeError::NotCanonical { .. }) => {}
        other => panic!("expected not canonical, got {other:?}"),
    }
}

#[test]
fn a_grant_signed_by_a_key_revoked_before_it_is_refused() {
    let (admin, second, w) = (key(1), key(2), key(3));
    let mut s = Builder::new(&[&admin]);
    let mut r = replica(&s.genesis);
    let g = s.grant(&[], &admin, &second, Role::Admin);
    let rv = s.revoke(&[&g], &admin, &second);
    let late = s.grant(&[&rv], &second, &w, Role::Writer);
    accept_all(&mut r, &[&g, &rv]);
    assert_eq!(
        auth_err(refused(&mut r, &late)),
        AuthError::Revoked { cid: *late.cid(), author: second.public(), revocation: *rv.cid() }
    );
}

#[test]
fn an_invalid_key_is_refused() {
    let admin = key(1);
    let mut s = Builder::new(&[&admin]);
    let mut r = replica(&s.genesis);
    let good = s.write(&[], &admin, "x");
    // A y coordinate that is on no point: 2^255 - 1 (not canonical) is refused by the key decoder.
    let mut bytes = good.bytes().to_vec();
    bytes[AUTHOR_HEAD + 2..AUTHOR_HEAD + 2 + 32].copy_from_slice(&[0xff; 32]);
    let bad = Block::from_bytes(bytes);
    let e = auth_err(refused(&mut r, &bad));
    assert!(matches!(e, AuthError::InvalidKey { .. } | AuthError::BadSignature { .. }), "{e:?}");
    assert!(e.is_signature());
}

// ---- the hard cases ----

#[test]
fn a_revocation_concurrent_with_the_writers_events_leaves_them_valid_and_the_strict_reading_excludes_them() {
    let (admin, w) = (key(1), key(2));
    let mut s = Builder::new(&[&admin]);
    let mut r = replica(&s.genesis);
    let g = s.grant(&[], &admin, &w, Role::Writer);
    let before = s.write(&[&g], &w, "before the revocation");
    let rv = s.revoke(&[&before], &admin, &w);
    let concurrent = s.write(&[&before], &w, "concurrent with it");
    let after = s.write(&[&rv, &concurrent], &w, "after both");
    accept_all(&mut r, &[&g, &before, &rv, &concurrent]);
    assert!(matches!(auth_err(refused(&mut r, &after)), AuthError::Revoked { .. }));
    assert_eq!(r.written_after_revocation(), vec![*concurrent.cid()]);
    let members = r.members().unwrap();
    assert_eq!(members.role(&w.public()), None);
    assert_eq!(members.revoked.get(&w.public()), Some(rv.cid()));
    // What the concurrent event saw: the writer in force.
    assert_eq!(r.members_at(concurrent.cid()).unwrap().role(&w.public()), Some(Role::Writer));
}

#[test]
fn concurrent_grant_and_revoke_of_the_same_key_revocation_wins_once_both_are_seen() {
    let (a1, a2, w) = (key(1), key(2), key(3));
    let mut s = Builder::new(&[&a1, &a2]);
    let mut r = replica(&s.genesis);
    let g0 = s.grant(&[], &a1, &w, Role::Writer);
    let regrant = s.grant(&[&g0], &a1, &w, Role::Admin);
    let rv = s.revoke(&[&g0], &a2, &w);
    let on_grant = s.write(&[&regrant], &w, "sees only the grant");
    let on_both = s.write(&[&regrant, &rv], &w, "sees both");
    accept_all(&mut r, &[&g0, &regrant, &rv, &on_grant]);
    assert!(matches!(auth_err(refused(&mut r, &on_both)), AuthError::Revoked { .. }));
    assert_eq!(r.members().unwrap().role(&w.public()), None);
}

#[test]
fn two_admins_revoking_each_other_concurrently_both_go_and_membership_freezes() {
    let (a1, a2, w) = (key(1), key(2), key(3));
    let mut s = Builder::new(&[&a1, &a2]);
    let mut r = replica(&s.genesis);
    let r1 = s.revoke(&[], &a1, &a2);
    let r2 = s.revoke(&[], &a2, &a1);
    accept_all(&mut r, &[&r1, &r2]);
    let m = r.members().unwrap();
    assert!(m.admins().is_empty(), "no admin left: {m:?}");
    // Nobody can change membership any more.
    let g = s.grant(&[&r1, &r2], &a1, &w, Role::Writer);
    assert!(matches!(auth_err(refused(&mut r, &g)), AuthError::Revoked { .. }));
}

#[test]
fn an_admin_may_revoke_the_admin_who_granted_them() {
    let (a1, a2) = (key(1), key(2));
    let mut s = Builder::new(&[&a1]);
    let mut r = replica(&s.genesis);
    let g = s.grant(&[], &a1, &a2, Role::Admin);
    let rv = s.revoke(&[&g], &a2, &a1);
    accept_all(&mut r, &[&g, &rv]);
    assert_eq!(r.members().unwrap().admins(), vec![a2.public()]);
}

#[test]
fn self_revocation_is_allowed_and_ends_the_keys_writing() {
    let (a1, a2) = (key(1), key(2));
    let mut s = Builder::new(&[&a1, &a2]);
    let mut r = replica(&s.genesis);
    let rv = s.revoke(&[], &a2, &a2);
    let late = s.write(&[&rv], &a2, "after my own revocation");
    accept_all(&mut r, &[&rv]);
    assert!(matches!(auth_err(refused(&mut r, &late)), AuthError::Revoked { .. }));
}

#[test]
fn revoking_the_last_admin_is_refused() {
    let (a1, w) = (key(1), key(2));
    let mut s = Builder::new(&[&a1]);
    let mut r = replica(&s.genesis);
    let g = s.grant(&[], &a1, &w, Role::Writer);
    let rv = s.revoke(&[&g], &a1, &a1);
    accept_all(&mut r, &[&g]);
    assert_eq!(
        auth_err(refused(&mut r, &rv)),
        AuthError::LastAdmin { cid: *rv.cid(), author: a1.public(), key: a1.public() }
    );
    // Revoking a writer is fine.
    accept_all(&mut r, &[&s.revoke(&[&g], &a1, &w)]);
}

#[test]
fn a_grant_to_a_revoked_key_is_refused() {
    let (a1, w) = (key(1), key(2));
    let mut s = Builder::new(&[&a1]);
    let mut r = replica(&s.genesis);
    let g = s.grant(&[], &a1, &w, Role::Writer);
    let rv = s.revoke(&[&g], &a1, &w);
    let again = s.grant(&[&rv], &a1, &w, Role::Writer);
    accept_all(&mut r, &[&g, &rv]);
    assert_eq!(
        auth_err(refused(&mut r, &again)),
        AuthError::GrantToRevoked { cid: *again.cid(), author: a1.public(), key: w.public() }
    );
}

// ---- local appends ----

#[test]
fn append_on_a_signed_stream_needs_a_signer_and_refuses_what_replicas_would_refuse() {
    block_on(async {
        let (admin, w, stranger) = (key(1), key(2), key(3));
        let genesis = auth::genesis(&"appends", &[admin.public()]).unwrap();
        let mut r =
            Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await.unwrap();
        assert_eq!(r.policy(), Policy::Admins(vec![admin.public()]));
        assert!(matches!(r.append(&"unsigned").await, Err(AppendError::NeedsSigner { .. })));
        r.set_signer(Some(stranger.clone()));
        let before = snapshot(&r);
        match r.append(&"not a member").await {
            Err(AppendError::Rejected(Rejection::Auth(AuthError::NotAMember { author, .. }))) => {
                assert_eq!(author, stranger.public())
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            r.grant(stranger.public(), Role::Admin).await,
            Err(AppendError::Rejected(Rejection::Auth(AuthError::NotAMember { .. })))
        ));
        assert_eq!(snapshot(&r), before, "a refused append changes nothing");
        r.set_signer(Some(admin.clone()));
        r.grant(w.public(), Role::Writer).await.unwrap();
        assert!(matches!(
            r.revoke(admin.public()).await,
            Err(AppendError::Rejected(Rejection::Auth(AuthError::LastAdmin { .. })))
        ));
        r.set_signer(Some(w.clone()));
        let cids = r.append_many(["one", "two", "three"]).await.unwrap();
        assert!(matches!(
            r.grant(stranger.public(), Role::Writer).await,
            Err(AppendError::Rejected(Rejection::Auth(AuthError::NotAnAdmin { .. })))
        ));
        // Another replica accepts everything appended, in any order.
        let mut blocks = Vec::new();
        for cid in r.order().skip(1) {
            blocks.push(r.get(&cid).await.unwrap().unwrap());
        }
        blocks.reverse();
        let mut other =
            Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await.unwrap();
        let report = other.ingest_many(blocks).await.unwrap();
        assert_eq!(report.accepted.len(), 4);
        assert_eq!(other.heads(), r.heads());
        assert_eq!(auth::author_of(&r.get(&cids[2]).await.unwrap().unwrap()).unwrap(), Some(w.public()));
    });
}

#[test]
fn a_reopened_replica_rebuilds_membership_from_its_store() {
    block_on(async {
        let (admin, w) = (key(1), key(2));
        let genesis = auth::genesis(&"reopen", &[admin.public()]).unwrap();
        let store = Arc::new(MemoryBlockstore::new());
        let mut r = Replica::create(store.clone(), &genesis, ReplicaConfig::default()).await.unwrap();
        r.set_signer(Some(admin.clone()));
        r.grant(w.public(), Role::Writer).await.unwrap();
        r.set_signer(Some(w.clone()));
        r.append(&"hi").await.unwrap();
        r.set_signer(Some(admin.clone()));
        r.revoke(w.public()).await.unwrap();
        let members = r.members();
        drop(r);
        let mut again = Replica::open(store, genesis.cid(), ReplicaConfig::default()).await.unwrap();
        assert_eq!(again.members(), members);
        again.set_signer(Some(w));
        assert!(matches!(
            again.append(&"still?").await,
            Err(AppendError::Rejected(Rejection::Auth(AuthError::Revoked { .. })))
        ));
    });
}

#[test]
fn open_streams_take_signed_events_but_no_membership_events() {
    let admin = key(1);
    let genesis = Event::genesis("open").encode().unwrap();
    let mut r = replica(&genesis);
    let signed = auth::signed_event(genesis.cid(), 1, &[*genesis.cid()], None, &"signed", &admin).unwrap();
    accept_all(&mut r, &[&signed]);
    let op = MemberOp::Grant { key: key(2).public(), role: Role::Writer };
    let grant = auth::signed_event(genesis.cid(), 2, &[*signed.cid()], Some(&op), &Ipld::Null, &admin).unwrap();
    assert!(matches!(auth_err(refused(&mut r, &grant)), AuthError::OpenStream { .. }));
    assert_eq!(r.policy(), Policy::Open);
    assert!(r.members().is_none());
    // Locally: a membership event needs a signer, and an open stream refuses it.
    assert!(matches!(block_on(r.grant(key(2).public(), Role::Writer)), Err(AppendError::NeedsSigner { .. })));
    r.set_signer(Some(admin.clone()));
    assert!(matches!(
        block_on(r.grant(key(2).public(), Role::Writer)),
        Err(AppendError::Rejected(Rejection::Auth(AuthError::OpenStream { .. })))
    ));
    let mine = block_on(r.append(&"signed on an open stream")).unwrap();
    assert_eq!(auth::author_of(&block_on(r.get(&mine)).unwrap().unwrap()).unwrap(), Some(admin.public()));
    // A forged signature is refused on open streams too.
    let mut sig = sig_of(&signed);
    sig[0] ^= 1;
    let forged = with_sig(&auth::signed_event(genesis.cid(), 1, &[*genesis.cid()], None, &"x", &admin).unwrap(), &sig);
    assert!(matches!(auth_err(refused(&mut r, &forged)), AuthError::BadSignature { .. }));
}

#[test]
fn genesis_rules_are_decode_errors() {
    assert_eq!(auth::genesis(&"no admins", &[]).unwrap_err(), merkle_clock::EncodeError::NoAdmins);
    let g = auth::genesis(&"policy", &[key(2).public(), key(1).public(), key(2).public()]).unwrap();
    let mut want = vec![key(1).public(), key(2).public()];
    want.sort();
    assert_eq!(auth::policy_of(&g).unwrap(), Policy::Admins(want));
    // A signed event cannot be a genesis.
    assert!(auth::signed_event(g.cid(), 0, &[], None, &"x", &key(1)).is_err());
    let _ = Signer::generate();
}
