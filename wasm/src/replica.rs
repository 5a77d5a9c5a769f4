//! The `Replica` class: one stream on one node.

use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;

use crate::spawn::{poll_once, promise as future_to_promise};
use futures::lock::Mutex;
use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::core::{
    AppendError, Block, CarLimits, ClockOrder, DynReplica, EncodeError, Event, Ingest, Ipld, MemoryBlockstore,
    OpenError, Rejection, StreamStore, author_of, member_op_of, read_car, signed_event, signed_genesis, write_car,
};
use crate::errors::{busy, error, invalid};
use crate::keys::{key_arg, key_js, keys_arg, member_op_js, members_js, policy_js, role_arg, secret_arg, set_auth};
use crate::staging;
use crate::store::JsStore;
use crate::values::{bytes_arg, cid_arg, cid_js, cid_strings, cids_arg, from_ipld, payload_from_cbor};

/// A replica of one stream (a Merkle clock): its DAG of events, their total
/// order, and a store for their blocks.
///
/// Methods that touch the store return a `Promise`; they run one at a time
/// in call order (a queue), so they need not be awaited before the next call.
/// The synchronous methods read the in-memory index and throw a `busy`
/// error while an async method is in flight.
#[wasm_bindgen(js_name = Replica)]
pub struct JsReplica {
    pub(crate) inner: Rc<Mutex<DynReplica>>,
    /// Whether the store is the in-memory one, whose methods never wait: an
    /// append then finishes within the call (`appendStaged`).
    in_memory: bool,
}

pub(crate) fn set(obj: &Object, key: &str, value: &JsValue) {
    // Setting a data property on a fresh plain object cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

fn str_value(s: &str) -> JsValue {
    JsValue::from_str(s)
}

/// `{status, missing}` or `{status: 'rejected', reason, message}`.
pub(crate) fn outcome(o: &Ingest) -> JsValue {
    let obj = Object::new();
    match o {
        Ingest::Accepted => {
            set(&obj, "status", &str_value("accepted"));
            set(&obj, "missing", &Array::new());
        }
        Ingest::Duplicate => {
            set(&obj, "status", &str_value("duplicate"));
            set(&obj, "missing", &Array::new());
        }
        Ingest::Pending { missing } => {
            set(&obj, "status", &str_value("pending"));
            set(&obj, "missing", &cid_strings(missing));
        }
        Ingest::Rejected(why) => return rejection(why, "rejected"),
    }
    obj.into()
}

/// `{status, reason, message}` for a rejection; for one on the grounds of
/// its author also `auth`, `cid`, `author` and `revocation` (see
/// [`set_auth`]).
pub(crate) fn rejection(why: &Rejection, status: &str) -> JsValue {
    let obj = rejected(status, why.reason().as_str(), &why.to_string());
    if let Rejection::Auth(e) = why {
        set_auth(&obj, e);
    }
    obj.into()
}

fn rejected(status: &str, reason: &str, message: &str) -> Object {
    let obj = Object::new();
    set(&obj, "status", &str_value(status));
    set(&obj, "reason", &str_value(reason));
    set(&obj, "message", &str_value(message));
    obj
}

fn append_error(e: AppendError) -> JsValue {
    match e {
        AppendError::Store(e) => error("store", e),
        // Payload bytes that are not one canonical DAG-CBOR item: only bytes
        // handed to `appendEncoded` directly can be (payload.js writes
        // canonical ones).
        AppendError::Encode(e @ EncodeError::Payload { .. }) => {
            invalid(format!("the payload is not canonical DAG-CBOR: {e}"))
        }
        AppendError::Encode(e) => error("encode", e),
        AppendError::Rejected(why) => {
            let e = error("rejected", &why);
            let obj: &Object = e.unchecked_ref();
            set(obj, "reason", &str_value(why.reason().as_str()));
            if let Rejection::Auth(auth) = &why {
                set_auth(obj, auth);
            }
            e
        }
        e @ AppendError::NeedsSigner { .. } => error("needs_signer", e),
        e => error("append", e),
    }
}

/// `store` when the store failed, else `open` (a bad genesis, an unknown or
/// existing stream).
fn open_error(e: OpenError) -> JsValue {
    match e {
        OpenError::Store(e) => store_error(e),
        e => error("open", e),
    }
}

fn store_error(e: impl std::fmt::Display) -> JsValue {
    error("store", e)
}

/// The event of a block as `{cid, height, parents, payload}`, with `author`
/// when it is signed and `member` when it is a membership event.
fn event_js(block: &Block) -> Result<JsValue, JsValue> {
    let stored = |e| error("store", format!("a stored block is not an event: {e}"));
    let event = Event::<Ipld>::decode(block).map_err(stored)?;
    let obj = Object::new();
    set(&obj, "cid", &cid_js(block.cid()));
    set(&obj, "height", &JsValue::from_f64(event.height() as f64));
    set(&obj, "parents", &cid_strings(event.parents()));
    set(&obj, "payload", &from_ipld(event.payload()));
    if let Some(author) = author_of(block).map_err(stored)? {
        set(&obj, "author", &key_js(&author));
    }
    if let Some(op) = member_op_of(block).map_err(stored)? {
        set(&obj, "member", &member_op_js(&op));
    }
    Ok(obj.into())
}

/// Blocks from a JS array of `Uint8Array`s.
fn blocks_arg(blocks: &JsValue) -> Result<Vec<Block>, JsValue> {
    if !Array::is_array(blocks) {
        return Err(invalid("expected an array of Uint8Array blocks"));
    }
    Array::from(blocks)
        .iter()
        .map(|b| {
            b.dyn_ref::<Uint8Array>()
                .map(|b| Block::from_bytes(b.to_vec()))
                .ok_or_else(|| invalid("expected an array of Uint8Array blocks"))
        })
        .collect()
}

fn report_js(outcomes: &[Ingest], accepted: &[crate::core::Cid]) -> Object {
    let obj = Object::new();
    set(&obj, "outcomes", &outcomes.iter().map(outcome).collect::<Array>());
    set(&obj, "accepted", &cid_strings(accepted));
    obj
}

/// The genesis block and the store of `create` and `openOrCreate`, and
/// whether that is the in-memory one.
fn genesis_and_store(genesis: &JsValue, store: JsValue) -> Result<(Block, Arc<dyn StreamStore>, bool), JsValue> {
    let genesis = bytes_arg(genesis, "the genesis block")?;
    let in_memory = store.is_undefined() || store.is_null();
    let store: Arc<dyn StreamStore> =
        if in_memory { Arc::new(MemoryBlockstore::new()) } else { Arc::new(JsStore::new(store)?) };
    Ok((Block::from_bytes(genesis), store, in_memory))
}

impl JsReplica {
    fn new(replica: DynReplica, in_memory: bool) -> Self {
        JsReplica { inner: Rc::new(Mutex::new(replica)), in_memory }
    }

    fn with<R>(&self, f: impl FnOnce(&DynReplica) -> R) -> Result<R, JsValue> {
        let guard = self.inner.try_lock().ok_or_else(busy)?;
        Ok(f(&guard))
    }

    /// `appendStaged`: the CID text's length, or `None` when the append
    /// could not finish at once and its promise is parked.
    fn append_staged_now(&self, len: u32) -> Result<Option<u32>, JsValue> {
        if self.in_memory
            && let Some(mut replica) = self.inner.try_lock()
        {
            // Nothing can wait: the lock is ours and the in-memory store's
            // methods return at once. So the append runs here, on the staged
            // bytes where they are, with no future boxed and no promise.
            let done = staging::with_payload(len, |payload| poll_once(pin!(replica.append_encoded(payload))))?;
            return match done {
                Poll::Ready(Ok(cid)) => Ok(Some(staging::put_cid(&cid))),
                Poll::Ready(Err(e)) => Err(append_error(e)),
                Poll::Pending => Err(error("store", "the in-memory store waited")),
            };
        }
        let payload = staging::with_payload(len, <[u8]>::to_vec)?;
        let inner = self.inner.clone();
        let mut append = Box::pin(async move {
            let mut replica = inner.lock().await;
            replica.append_encoded(&payload).await.map_err(append_error)
        });
        match poll_once(append.as_mut()) {
            Poll::Ready(Ok(cid)) => Ok(Some(staging::put_cid(&cid))),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => {
                staging::park(wasm_bindgen_futures::future_to_promise(async move { Ok(cid_js(&append.await?)) }));
                Ok(None)
            }
        }
    }
}

#[wasm_bindgen(js_class = Replica)]
impl JsReplica {
    /// The genesis block (DAG-CBOR bytes) of a new stream whose genesis
    /// payload has these DAG-CBOR bytes. `admins` (an array of public keys,
    /// or omitted): the stream then only takes events signed by its members,
    /// these admins to begin with. `Replica.genesis(payload, {admins})` (in
    /// `wasm/js/api.js`) encodes a JS value and calls this.
    #[wasm_bindgen(js_name = genesisEncoded)]
    pub fn genesis_encoded(payload: &[u8], admins: JsValue) -> Result<Uint8Array, JsValue> {
        let payload = payload_from_cbor(payload)?;
        let block = if admins.is_undefined() || admins.is_null() {
            Event::genesis(payload).encode()
        } else {
            let admins = keys_arg(&admins)?;
            if admins.is_empty() {
                return Err(invalid("admins must name at least one key (omit it for an open stream)"));
            }
            signed_genesis(&payload, &admins)
        }
        .map_err(|e| error("encode", e))?;
        Ok(Uint8Array::from(&block.bytes()[..]))
    }

    /// A signed event built by hand (for tools and tests: a replica's
    /// `append`, `grant` and `revoke` build theirs on its heads): on the
    /// stream `stream` (a CID string), at `height` on `parents` (CID
    /// strings), with a payload of these DAG-CBOR bytes, signed with
    /// `secretKey`. Returns the block's bytes. `Replica.signedEvent({stream,
    /// height, parents, payload}, secretKey)` encodes a JS value and calls
    /// this.
    #[wasm_bindgen(js_name = signedEventEncoded)]
    pub fn signed_event_encoded(
        stream: JsValue,
        height: f64,
        parents: JsValue,
        payload: &[u8],
        secret_key: JsValue,
    ) -> Result<Uint8Array, JsValue> {
        let stream = cid_arg(&stream)?;
        if !(height.fract() == 0.0 && (1.0..=9_007_199_254_740_991.0).contains(&height)) {
            return Err(invalid("a signed event's height is an integer ≥ 1"));
        }
        let parents = cids_arg(&parents)?;
        let payload = payload_from_cbor(payload)?;
        let signer = secret_arg(&secret_key)?;
        let block =
            signed_event(&stream, height as u64, &parents, None, &payload, &signer).map_err(|e| error("encode", e))?;
        Ok(Uint8Array::from(&block.bytes()[..]))
    }

    /// A new replica of the stream that `genesis` (block bytes) starts.
    /// `store`: omitted or `null` for an in-memory store, else a blockstore
    /// adapter (see `wasm/js/blockstore.js`). Resolves to the `Replica`;
    /// rejects with code `open` when the store already holds the stream
    /// (`open` or `openOrCreate` it instead).
    pub fn create(genesis: JsValue, store: JsValue) -> Promise {
        let setup = genesis_and_store(&genesis, store);
        future_to_promise(async move {
            let (genesis, store, in_memory) = setup?;
            let replica = crate::core::create(store, &genesis).await.map_err(open_error)?;
            Ok(JsReplica::new(replica, in_memory).into())
        })
    }

    /// The replica of the stream that `genesis` starts in `store`: reopened
    /// if the store holds it (its heads and events as they were), else
    /// created. Resolves to the `Replica`.
    #[wasm_bindgen(js_name = openOrCreate)]
    pub fn open_or_create(genesis: JsValue, store: JsValue) -> Promise {
        let setup = genesis_and_store(&genesis, store);
        future_to_promise(async move {
            let (genesis, store, in_memory) = setup?;
            let replica = crate::core::open_or_create(store, &genesis).await.map_err(open_error)?;
            Ok(JsReplica::new(replica, in_memory).into())
        })
    }

    /// Reopens the stream `stream` (its id, a CID string) from `store`, a
    /// blockstore adapter that keeps heads (see `wasm/js/blockstore.js`):
    /// the replica continues exactly where the last one stopped. Rejects
    /// with code `open` when the store does not hold the stream.
    pub fn open(stream: JsValue, store: JsValue) -> Promise {
        let setup = cid_arg(&stream).and_then(|stream| {
            if store.is_undefined() || store.is_null() {
                return Err(invalid("open needs the store that holds the stream"));
            }
            Ok((stream, Arc::new(JsStore::new(store)?) as Arc<dyn StreamStore>))
        });
        future_to_promise(async move {
            let (stream, store) = setup?;
            let replica = crate::core::open(store, &stream).await.map_err(open_error)?;
            Ok(JsReplica::new(replica, false).into())
        })
    }

    /// The stream's id: the CID of its genesis event.
    #[wasm_bindgen(getter, js_name = streamId)]
    pub fn stream_id(&self) -> Result<String, JsValue> {
        self.with(|r| crate::cidtext::to_text(r.stream_id()))
    }

    /// The number of events in the DAG (the genesis included).
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> Result<u32, JsValue> {
        self.with(|r| u32::try_from(r.len()).unwrap_or(u32::MAX))
    }

    /// The current heads, as CID strings in ascending CID order.
    pub fn heads(&self) -> Result<Array, JsValue> {
        self.with(|r| cid_strings(&r.heads()))
    }

    /// Every event in the deterministic total order (the same on every
    /// replica that holds the same events), as CID strings.
    pub fn order(&self) -> Result<Array, JsValue> {
        self.with(|r| r.order().map(|c| cid_js(&c)).collect())
    }

    /// Whether the event is in the DAG.
    pub fn has(&self, cid: JsValue) -> Result<bool, JsValue> {
        let cid = cid_arg(&cid)?;
        self.with(|r| r.contains(&cid))
    }

    /// The parents that pending events wait for, as CID strings.
    pub fn missing(&self) -> Result<Array, JsValue> {
        self.with(|r| cid_strings(&r.missing()))
    }

    /// `{events, bytes}` held in the pending buffer.
    pub fn pending(&self) -> Result<Object, JsValue> {
        self.with(|r| {
            let (events, bytes) = crate::core::pending(r);
            let obj = Object::new();
            set(&obj, "events", &JsValue::from_f64(events as f64));
            set(&obj, "bytes", &JsValue::from_f64(bytes as f64));
            obj
        })
    }

    /// How two clocks relate: `a` and `b` are each a CID string or an array
    /// of them (e.g. two sets of heads), all in this replica's DAG. Returns
    /// `'equal'`, `'before'` (a's history is inside b's), `'after'` or
    /// `'concurrent'`.
    pub fn compare(&self, a: JsValue, b: JsValue) -> Result<String, JsValue> {
        let (a, b) = (cids_arg(&a)?, cids_arg(&b)?);
        let order = self.with(|r| r.dag().compare(&a, &b))?.map_err(|e| error("unknown_event", e))?;
        Ok(match order {
            ClockOrder::Equal => "equal",
            ClockOrder::Before => "before",
            ClockOrder::After => "after",
            ClockOrder::Concurrent => "concurrent",
        }
        .to_owned())
    }

    /// Appends an event whose payload has these DAG-CBOR bytes (one
    /// canonical item) on top of the current heads, signed when a signer is
    /// set. Resolves to its CID string. The bytes go into the event as they
    /// are (`Replica::append_encoded`): no decode and re-encode in wasm.
    /// `append(payload)` (in `wasm/js/api.js`) encodes a JS value and calls
    /// this.
    #[wasm_bindgen(js_name = appendEncoded)]
    pub fn append_encoded(&self, payload: Vec<u8>) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut replica = inner.lock().await;
            let cid = replica.append_encoded(&payload).await.map_err(append_error)?;
            Ok(cid_js(&cid))
        })
    }

    /// `appendEncoded` of the first `len` bytes of the staging buffer
    /// (`staging.rs`), the path of `append` (in `wasm/js/api.js`): returns
    /// the length of the new event's CID text, written at the start of the
    /// staging buffer. When the append cannot finish at once (a JS store, or
    /// a call in flight on this replica) it queues as `appendEncoded` does
    /// and returns 0; its promise is then `takeParked()`'s. A failure also
    /// returns 0, and `takeParked()` is then rejected with what
    /// `appendEncoded`'s promise would reject with.
    #[wasm_bindgen(js_name = appendStaged)]
    pub fn append_staged(&self, len: u32) -> u32 {
        // One number back, not a `Result`: wasm-bindgen returns a `Result`
        // as several values, which V8 hands to JS as a fresh array on every
        // call. A failure is parked as a rejected promise instead.
        match self.append_staged_now(len) {
            Ok(Some(n)) => n,
            Ok(None) => 0,
            Err(e) => {
                staging::park(Promise::reject(&e));
                0
            }
        }
    }

    /// Appends one event per payload, each on the previous, in one store
    /// commit: `payloads` holds their DAG-CBOR bytes one after the other,
    /// `ends` where each ends (ascending, the last one the length). Resolves
    /// to their CID strings. `appendMany(payloads)` (in `wasm/js/api.js`)
    /// encodes JS values and calls this.
    #[wasm_bindgen(js_name = appendManyEncoded)]
    pub fn append_many_encoded(&self, payloads: Vec<u8>, ends: Vec<u32>) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut start = 0;
            let mut items = Vec::with_capacity(ends.len());
            for &end in &ends {
                let end = end as usize;
                if end < start || end > payloads.len() {
                    return Err(invalid("ends must ascend within the payload bytes"));
                }
                items.push(&payloads[start..end]);
                start = end;
            }
            if start != payloads.len() {
                return Err(invalid("the last of ends must be the length of the payload bytes"));
            }
            let mut replica = inner.lock().await;
            let cids = replica.append_many_encoded(items).await.map_err(append_error)?;
            Ok(cid_strings(&cids).into())
        })
    }

    /// Sets the key that signs this replica's appends, grants and
    /// revocations: a secret key (32 bytes), or `null` for unsigned appends
    /// (which only an open stream takes). A stream whose genesis names
    /// admins needs one before any append.
    #[wasm_bindgen(js_name = setSigner)]
    pub fn set_signer(&self, secret_key: JsValue) -> Result<(), JsValue> {
        let signer =
            if secret_key.is_undefined() || secret_key.is_null() { None } else { Some(secret_arg(&secret_key)?) };
        let mut guard = self.inner.try_lock().ok_or_else(busy)?;
        guard.set_signer(signer);
        Ok(())
    }

    /// The public key (hex) of the signer, or `undefined`.
    #[wasm_bindgen(getter)]
    pub fn signer(&self) -> Result<JsValue, JsValue> {
        self.with(|r| r.signer().map_or(JsValue::UNDEFINED, |s| key_js(&s.public())))
    }

    /// What the genesis says about who may write: `{open: true}`, or
    /// `{open: false, admins: [key…]}` (its admins, hex).
    pub fn policy(&self) -> Result<JsValue, JsValue> {
        self.with(|r| policy_js(&r.policy()))
    }

    /// The membership at the current heads: `{roles: {key: 'writer' |
    /// 'admin'}, revoked: {key: revocationCid}}` (keys hex), or `undefined`
    /// on an open stream.
    pub fn members(&self) -> Result<JsValue, JsValue> {
        self.with(|r| r.members().map_or(JsValue::UNDEFINED, |m| members_js(&m)))
    }

    /// The membership that the event `cid`'s causal past establishes (the
    /// event included), as `members()`; `undefined` on an open stream or for
    /// an event not in the DAG.
    #[wasm_bindgen(js_name = membersAt)]
    pub fn members_at(&self, cid: JsValue) -> Result<JsValue, JsValue> {
        let cid = cid_arg(&cid)?;
        self.with(|r| r.members_at(&cid).map_or(JsValue::UNDEFINED, |m| members_js(&m)))
    }

    /// The events by authors revoked at the current heads that no
    /// revocation of them precedes (written concurrently with it: valid,
    /// but an application may hide them), in the total order. Empty on an
    /// open stream.
    #[wasm_bindgen(js_name = writtenAfterRevocation)]
    pub fn written_after_revocation(&self) -> Result<Array, JsValue> {
        self.with(|r| cid_strings(&r.written_after_revocation()))
    }

    /// Makes `key` (a public key) a member with `role` (`'writer'`, the
    /// default, or `'admin'`), in a membership event signed by this
    /// replica's signer, an admin. Resolves to the event's CID string;
    /// rejects with code `rejected` (and `reason`, `auth`, `author`) when
    /// replicas would refuse it, `needs_signer` without a signer.
    pub fn grant(&self, key: JsValue, role: JsValue) -> Promise {
        let inner = self.inner.clone();
        let args = key_arg(&key).and_then(|key| Ok((key, role_arg(&role)?)));
        future_to_promise(async move {
            let (key, role) = args?;
            let mut replica = inner.lock().await;
            let cid = replica.grant(key, role).await.map_err(append_error)?;
            Ok(cid_js(&cid))
        })
    }

    /// Revokes `key` for good, in a membership event signed by this
    /// replica's signer, an admin. Its later events (those that descend
    /// from the revocation) are refused everywhere. As `grant` otherwise.
    pub fn revoke(&self, key: JsValue) -> Promise {
        let inner = self.inner.clone();
        let key = key_arg(&key);
        future_to_promise(async move {
            let key = key?;
            let mut replica = inner.lock().await;
            let cid = replica.revoke(key).await.map_err(append_error)?;
            Ok(cid_js(&cid))
        })
    }

    /// Takes one block (bytes) from anywhere, in any order. With `cid` (a
    /// string), the bytes must hash to it. Resolves to
    /// `{status: 'accepted' | 'duplicate' | 'pending', missing: [cid…]}` or
    /// `{status: 'rejected', reason, message}`; rejects only when the store
    /// fails or the arguments are not bytes and a CID.
    pub fn ingest(&self, block: JsValue, cid: JsValue) -> Promise {
        let inner = self.inner.clone();
        let block = bytes_arg(&block, "the block").and_then(|bytes| {
            if cid.is_undefined() || cid.is_null() {
                Ok(Ok(Block::from_bytes(bytes)))
            } else {
                cid_arg(&cid).map(|cid| Block::new(cid, bytes))
            }
        });
        future_to_promise(async move {
            let block = match block? {
                Ok(block) => block,
                Err(e) => return Ok(rejected("rejected", "block", &e.to_string()).into()),
            };
            let mut replica = inner.lock().await;
            let o = replica.ingest(block).await.map_err(store_error)?;
            Ok(outcome(&o))
        })
    }

    /// Takes several blocks (an array of `Uint8Array`) in one store commit.
    /// Resolves to `{outcomes: [outcome…], accepted: [cid…]}`: one outcome
    /// per block, and every event added (with the pending ones they
    /// released), each after its parents.
    #[wasm_bindgen(js_name = ingestMany)]
    pub fn ingest_many(&self, blocks: JsValue) -> Promise {
        let inner = self.inner.clone();
        let blocks = blocks_arg(&blocks);
        future_to_promise(async move {
            let blocks = blocks?;
            let mut replica = inner.lock().await;
            let report = replica.ingest_many(blocks).await.map_err(store_error)?;
            Ok(report_js(&report.outcomes, &report.accepted).into())
        })
    }

    /// The event `cid` as `{cid, height, parents, payload}`, or `undefined`
    /// when the store does not hold it.
    pub fn get(&self, cid: JsValue) -> Promise {
        let inner = self.inner.clone();
        let cid = cid_arg(&cid);
        future_to_promise(async move {
            let cid = cid?;
            let replica = inner.lock().await;
            match replica.get(&cid).await.map_err(store_error)? {
                Some(block) => event_js(&block),
                None => Ok(JsValue::UNDEFINED),
            }
        })
    }

    /// The block `cid` as bytes, or `undefined`.
    #[wasm_bindgen(js_name = getBlock)]
    pub fn get_block(&self, cid: JsValue) -> Promise {
        let inner = self.inner.clone();
        let cid = cid_arg(&cid);
        future_to_promise(async move {
            let cid = cid?;
            let replica = inner.lock().await;
            Ok(match replica.get(&cid).await.map_err(store_error)? {
                Some(block) => Uint8Array::from(&block.bytes()[..]).into(),
                None => JsValue::UNDEFINED,
            })
        })
    }

    /// The whole stream as a CARv1 file (bytes): the heads as roots, every
    /// event in the total order.
    #[wasm_bindgen(js_name = exportCar)]
    pub fn export_car(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let replica = inner.lock().await;
            let cids: Vec<_> = replica.order().collect();
            let mut blocks = Vec::with_capacity(cids.len());
            for cid in &cids {
                let block = replica
                    .get(cid)
                    .await
                    .map_err(store_error)?
                    .ok_or_else(|| error("store", format!("{cid}: in the DAG but not in the store")))?;
                blocks.push(block);
            }
            let car = write_car(Vec::new(), &replica.heads(), &blocks).map_err(|e| error("car", e))?;
            Ok(Uint8Array::from(&car[..]).into())
        })
    }

    /// Ingests every block of a CARv1 file. Resolves to
    /// `{roots, outcomes, accepted}` (as `ingestMany`, with the file's roots).
    #[wasm_bindgen(js_name = importCar)]
    pub fn import_car(&self, car: JsValue) -> Promise {
        let inner = self.inner.clone();
        let bytes = bytes_arg(&car, "the CAR file");
        future_to_promise(async move {
            let bytes = bytes?;
            let (roots, blocks) = read_car(&bytes[..], CarLimits::default()).map_err(|e| error("car", e))?;
            let mut replica = inner.lock().await;
            let report = replica.ingest_many(blocks).await.map_err(store_error)?;
            let obj = report_js(&report.outcomes, &report.accepted);
            set(&obj, "roots", &cid_strings(&roots));
            Ok(obj.into())
        })
    }
}
