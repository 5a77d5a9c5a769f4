//! A [`StreamStore`] whose blocks live in a JS blockstore.
//!
//! The Rust side calls an *adapter* object with three async methods, CIDs
//! passed as their binary form (a `Uint8Array`):
//!
//! - `get(cidBytes) → Promise<Uint8Array | undefined>` (undefined: not stored),
//! - `put(cidBytes, bytes) → Promise<void>`,
//! - `has(cidBytes) → Promise<boolean>` (optional: `get` answers otherwise).
//!
//! `wasm/js/blockstore.js` builds that adapter from an `interface-blockstore`
//! (Helia's `helia.blockstore`, `blockstore-core`'s stores), turning the bytes
//! into `multiformats` CIDs and a `NotFoundError` into `undefined`.
//!
//! Every block read back is verified against its CID (BLAKE3): a JS store is
//! outside the replica's trust.
//!
//! The stream's heads and log (the rest of [`StreamStore`]) are kept in wasm
//! memory: they do not survive a page reload or a process exit, the blocks do
//! (as far as the JS blockstore keeps them). `commit` puts the blocks first
//! and only then changes heads and log, so a failed commit leaves the stream
//! as it was (the blocks it did put are content-addressed and harmless).
//!
//! # Why `SendWrapper`
//!
//! The core's store traits are `Send + Sync` with `Send` futures (the native
//! library runs on multi-threaded executors). JS values are neither: they
//! belong to the one JS thread. `wasm32-unknown-unknown` without the
//! `atomics` feature (how this crate is built) has exactly one thread, so no
//! value can move to another; [`SendWrapper`] states that and checks it at
//! run time (it would panic on a foreign thread, which cannot exist here). It
//! wraps the JS functions and every future that awaits a JS promise; no
//! `unsafe impl Send` is written in this crate.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use js_sys::{Function, Promise, Reflect, Uint8Array};
use send_wrapper::SendWrapper;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::core::{Block, Blockstore, Cid, StoreError, StreamStore};
use crate::errors::{describe, invalid};

/// The JS side: the adapter object and its methods.
struct Adapter {
    this: JsValue,
    get: Function,
    put: Function,
    has: Option<Function>,
}

/// One stream's heads and log.
#[derive(Default)]
struct Log {
    heads: Vec<Cid>,
    log: Vec<Cid>,
}

/// A [`StreamStore`] over a JS blockstore adapter (see the module docs).
pub(crate) struct JsStore {
    adapter: SendWrapper<Adapter>,
    streams: Mutex<HashMap<Cid, Log>>,
}

fn method(obj: &JsValue, name: &str) -> Result<Option<Function>, JsValue> {
    let f = Reflect::get(obj, &JsValue::from_str(name))?;
    if f.is_undefined() || f.is_null() {
        return Ok(None);
    }
    f.dyn_into::<Function>().map(Some).map_err(|_| invalid(format!("the store's {name} is not a function")))
}

fn backend(what: &str, cid: &Cid, e: &JsValue) -> StoreError {
    StoreError::backend(format!("JS blockstore {what}({cid}) failed: {}", describe(e)))
}

impl Adapter {
    async fn call(&self, what: &str, f: &Function, cid: &Cid, bytes: Option<&[u8]>) -> Result<JsValue, StoreError> {
        let key = Uint8Array::from(&cid.to_bytes()[..]);
        let r = match bytes {
            Some(b) => f.call2(&self.this, &key, &Uint8Array::from(b)),
            None => f.call1(&self.this, &key),
        }
        .map_err(|e| backend(what, cid, &e))?;
        JsFuture::from(Promise::resolve(&r)).await.map_err(|e| backend(what, cid, &e))
    }

    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        let v = self.call("get", &self.get, cid, None).await?;
        if v.is_undefined() || v.is_null() {
            return Ok(None);
        }
        let bytes = v
            .dyn_ref::<Uint8Array>()
            .ok_or_else(|| StoreError::Corrupt(format!("JS blockstore get({cid}) returned a non-Uint8Array")))?
            .to_vec();
        Block::new(*cid, bytes).map(Some).map_err(|e| StoreError::Corrupt(format!("JS blockstore returned {e}")))
    }

    async fn put(&self, block: &Block) -> Result<(), StoreError> {
        self.call("put", &self.put, block.cid(), Some(block.bytes())).await.map(drop)
    }

    async fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        match &self.has {
            Some(has) => Ok(self.call("has", has, cid, None).await?.is_truthy()),
            None => Ok(self.get(cid).await?.is_some()),
        }
    }
}

impl JsStore {
    /// A store over `adapter` (see the module docs).
    pub(crate) fn new(adapter: JsValue) -> Result<Self, JsValue> {
        if !adapter.is_object() {
            return Err(invalid("the store must be an object with async get(cid) and put(cid, bytes)"));
        }
        let get = method(&adapter, "get")?.ok_or_else(|| invalid("the store has no get(cid) method"))?;
        let put = method(&adapter, "put")?.ok_or_else(|| invalid("the store has no put(cid, bytes) method"))?;
        let has = method(&adapter, "has")?;
        Ok(JsStore { adapter: SendWrapper::new(Adapter { this: adapter, get, put, has }), streams: Mutex::default() })
    }

    fn logs(&self) -> std::sync::MutexGuard<'_, HashMap<Cid, Log>> {
        // One thread: the lock is never contended, and no code panics while
        // holding it, so it is never poisoned; take it either way.
        self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Blockstore for JsStore {
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        SendWrapper::new(self.adapter.get(cid)).await
    }

    async fn put(&self, block: Block) -> Result<(), StoreError> {
        SendWrapper::new(async move { self.adapter.put(&block).await }).await
    }

    async fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        SendWrapper::new(self.adapter.has(cid)).await
    }
}

#[async_trait]
impl StreamStore for JsStore {
    async fn commit(&self, stream: &Cid, blocks: &[Block], heads: &[Cid]) -> Result<(), StoreError> {
        SendWrapper::new(async move {
            for block in blocks {
                self.adapter.put(block).await?;
            }
            Ok::<(), StoreError>(())
        })
        .await?;
        let mut streams = self.logs();
        let log = streams.entry(*stream).or_default();
        log.log.extend(blocks.iter().map(|b| *b.cid()));
        log.heads = heads.to_vec();
        Ok(())
    }

    async fn heads(&self, stream: &Cid) -> Result<Option<Vec<Cid>>, StoreError> {
        Ok(self.logs().get(stream).map(|l| l.heads.clone()))
    }

    async fn log_len(&self, stream: &Cid) -> Result<u64, StoreError> {
        Ok(self.logs().get(stream).map_or(0, |l| l.log.len() as u64))
    }

    async fn read_log(&self, stream: &Cid, start: u64, max: usize) -> Result<Vec<Cid>, StoreError> {
        let streams = self.logs();
        let Some(log) = streams.get(stream) else { return Ok(Vec::new()) };
        let start = usize::try_from(start).unwrap_or(usize::MAX).min(log.log.len());
        let end = start.saturating_add(max).min(log.log.len());
        Ok(log.log[start..end].to_vec())
    }

    async fn streams(&self) -> Result<Vec<Cid>, StoreError> {
        Ok(self.logs().keys().copied().collect())
    }
}
