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
//! memory and, when the adapter has two more async methods, in a string-keyed
//! *meta* store beside the blocks, so that a replica reopened on the same
//! stores (after a page reload, in another process) finds them again:
//!
//! - `getMeta(key) → Promise<Uint8Array | undefined>`,
//! - `putMeta(key, bytes) → Promise<void>`.
//!
//! The records, all DAG-CBOR:
//!
//! - `merkle-clock/<stream>/heads`: `{"heads": [link…], "len": n}`, the
//!   commit point: the heads and how many log entries count;
//! - `merkle-clock/<stream>/log/<i>`: a list of links, entries `i·128` up
//!   to `i·128 + 127` of the log (the last chunk is rewritten as it fills);
//! - `merkle-clock/streams`: the list of streams (their genesis links).
//!
//! `commit` puts the blocks, then the log chunks the new entries fall in,
//! then (for a new stream) the streams list, and last the heads record; only
//! then does it change the copy in wasm memory. A failure at any step leaves
//! the stream as the last heads record says: chunk entries beyond its `len`
//! are ignored and overwritten by the next commit, blocks are
//! content-addressed and harmless. Without `getMeta`/`putMeta` the heads and
//! log live in wasm memory only, and are lost with the page or process.
//!
//! One replica per stream per store at a time: each keeps its own copy of
//! the log in memory.
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

use crate::core::{Block, Blockstore, Cid, Ipld, StoreError, StreamStore};
use crate::errors::{describe, invalid};

/// The JS side: the adapter object and its methods.
struct Adapter {
    this: JsValue,
    get: Function,
    put: Function,
    has: Option<Function>,
    /// `getMeta` and `putMeta`, when the adapter has both.
    meta: Option<(Function, Function)>,
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
    /// The meta store's streams list, once read.
    listed: Mutex<Option<Vec<Cid>>>,
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

/// `f(key)` or `f(key, bytes)` on `this`, awaited.
async fn call(this: &JsValue, f: &Function, key: &JsValue, bytes: Option<&[u8]>) -> Result<JsValue, JsValue> {
    let r = match bytes {
        Some(b) => f.call2(this, key, &Uint8Array::from(b)),
        None => f.call1(this, key),
    }?;
    JsFuture::from(Promise::resolve(&r)).await
}

fn meta_error(what: &str, key: &str, e: &JsValue) -> StoreError {
    StoreError::backend(format!("JS meta store {what}({key:?}) failed: {}", describe(e)))
}

impl Adapter {
    /// The meta record `key`, if the adapter keeps meta records and has it.
    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some((get, _)) = &self.meta else { return Ok(None) };
        let v =
            call(&self.this, get, &JsValue::from_str(key), None).await.map_err(|e| meta_error("getMeta", key, &e))?;
        if v.is_undefined() || v.is_null() {
            return Ok(None);
        }
        v.dyn_ref::<Uint8Array>()
            .map(|b| Some(b.to_vec()))
            .ok_or_else(|| StoreError::Corrupt(format!("JS meta store getMeta({key:?}) returned a non-Uint8Array")))
    }

    /// Stores the meta record `key` (nothing without a meta store).
    async fn put_meta(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let Some((_, put)) = &self.meta else { return Ok(()) };
        call(&self.this, put, &JsValue::from_str(key), Some(bytes))
            .await
            .map_err(|e| meta_error("putMeta", key, &e))?;
        Ok(())
    }

    async fn call(&self, what: &str, f: &Function, cid: &Cid, bytes: Option<&[u8]>) -> Result<JsValue, StoreError> {
        let key = Uint8Array::from(&cid.to_bytes()[..]);
        call(&self.this, f, &key, bytes).await.map_err(|e| backend(what, cid, &e))
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

/// Log entries per chunk record.
const CHUNK: usize = 128;

fn heads_key(stream: &Cid) -> String {
    format!("merkle-clock/{stream}/heads")
}

fn chunk_key(stream: &Cid, i: usize) -> String {
    format!("merkle-clock/{stream}/log/{i}")
}

const STREAMS_KEY: &str = "merkle-clock/streams";

fn links(cids: &[Cid]) -> Ipld {
    Ipld::List(cids.iter().copied().map(Ipld::Link).collect())
}

fn to_cbor(value: &Ipld) -> Result<Vec<u8>, StoreError> {
    serde_ipld_dagcbor::to_vec(value).map_err(|e| StoreError::backend(format!("encoding a meta record: {e}")))
}

fn corrupt(key: &str, what: &str) -> StoreError {
    StoreError::Corrupt(format!("meta record {key:?}: {what}"))
}

/// A list of links from a meta record.
fn read_links(key: &str, bytes: &[u8]) -> Result<Vec<Cid>, StoreError> {
    let value: Ipld = serde_ipld_dagcbor::from_slice(bytes).map_err(|e| corrupt(key, &e.to_string()))?;
    let Ipld::List(items) = value else { return Err(corrupt(key, "not a list")) };
    items.into_iter().map(|i| if let Ipld::Link(c) = i { Ok(c) } else { Err(corrupt(key, "not a link")) }).collect()
}

/// The heads record: `{"heads": [link…], "len": n}`.
fn read_heads(key: &str, bytes: &[u8]) -> Result<(Vec<Cid>, usize), StoreError> {
    let value: Ipld = serde_ipld_dagcbor::from_slice(bytes).map_err(|e| corrupt(key, &e.to_string()))?;
    let Ipld::Map(mut map) = value else { return Err(corrupt(key, "not a map")) };
    let heads = match map.remove("heads") {
        Some(list @ Ipld::List(_)) => read_links(key, &to_cbor(&list)?)?,
        _ => return Err(corrupt(key, "no heads list")),
    };
    let len = match map.get("len") {
        Some(Ipld::Integer(n)) => usize::try_from(*n).map_err(|_| corrupt(key, "len out of range"))?,
        _ => return Err(corrupt(key, "no len")),
    };
    Ok((heads, len))
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
        let meta = match (method(&adapter, "getMeta")?, method(&adapter, "putMeta")?) {
            (Some(get), Some(put)) => Some((get, put)),
            (None, None) => None,
            _ => return Err(invalid("the store has one of getMeta(key) and putMeta(key, bytes) but not the other")),
        };
        Ok(JsStore {
            adapter: SendWrapper::new(Adapter { this: adapter, get, put, has, meta }),
            streams: Mutex::default(),
            listed: Mutex::default(),
        })
    }

    fn logs(&self) -> std::sync::MutexGuard<'_, HashMap<Cid, Log>> {
        lock(&self.streams)
    }

    /// Reads the stream's heads and log from the meta store into memory, if
    /// they are not there yet and the meta store has them.
    async fn load(&self, stream: &Cid) -> Result<(), StoreError> {
        if self.adapter.meta.is_none() || self.logs().contains_key(stream) {
            return Ok(());
        }
        let key = heads_key(stream);
        let Some(record) = self.adapter.get_meta(&key).await? else { return Ok(()) };
        let (heads, len) = read_heads(&key, &record)?;
        let mut log = Vec::with_capacity(len);
        for i in 0..len.div_ceil(CHUNK) {
            let key = chunk_key(stream, i);
            let bytes = self.adapter.get_meta(&key).await?.ok_or_else(|| corrupt(&key, "missing"))?;
            let mut chunk = read_links(&key, &bytes)?;
            let want = CHUNK.min(len - i * CHUNK);
            if chunk.len() < want {
                return Err(corrupt(&key, "shorter than the heads record says"));
            }
            chunk.truncate(want);
            log.extend(chunk);
        }
        self.logs().entry(*stream).or_insert(Log { heads, log });
        Ok(())
    }

    /// The meta store's streams list (read once).
    async fn listed(&self) -> Result<Vec<Cid>, StoreError> {
        if let Some(list) = lock(&self.listed).as_ref() {
            return Ok(list.clone());
        }
        let list = match self.adapter.get_meta(STREAMS_KEY).await? {
            Some(bytes) => read_links(STREAMS_KEY, &bytes)?,
            None => Vec::new(),
        };
        *lock(&self.listed) = Some(list.clone());
        Ok(list)
    }

    /// Writes the log chunks that the new entries fall in, the streams list
    /// for a new stream, and the heads record (see the module docs).
    async fn commit_meta(&self, stream: &Cid, blocks: &[Block], heads: &[Cid]) -> Result<(), StoreError> {
        let (old_len, known) = match self.logs().get(stream) {
            Some(log) => (log.log.len(), true),
            None => (0, false),
        };
        let first = old_len / CHUNK;
        // The log from the first chunk touched on, with the new entries.
        let mut tail: Vec<Cid> = self.logs().get(stream).map(|l| l.log[first * CHUNK..].to_vec()).unwrap_or_default();
        tail.extend(blocks.iter().map(|b| *b.cid()));
        let new_len = first * CHUNK + tail.len();
        if new_len > old_len {
            for (i, chunk) in tail.chunks(CHUNK).enumerate() {
                self.adapter.put_meta(&chunk_key(stream, first + i), &to_cbor(&links(chunk))?).await?;
            }
        }
        if !known {
            let mut list = self.listed().await?;
            if !list.contains(stream) {
                list.push(*stream);
                self.adapter.put_meta(STREAMS_KEY, &to_cbor(&links(&list))?).await?;
                *lock(&self.listed) = Some(list);
            }
        }
        let record =
            Ipld::Map([("heads".to_owned(), links(heads)), ("len".to_owned(), Ipld::Integer(new_len as i128))].into());
        self.adapter.put_meta(&heads_key(stream), &to_cbor(&record)?).await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // One thread: the lock is never contended, and no code panics while
    // holding it, so it is never poisoned; take it either way.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
            self.load(stream).await?;
            for block in blocks {
                self.adapter.put(block).await?;
            }
            if self.adapter.meta.is_some() {
                self.commit_meta(stream, blocks, heads).await?;
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
        SendWrapper::new(self.load(stream)).await?;
        Ok(self.logs().get(stream).map(|l| l.heads.clone()))
    }

    async fn log_len(&self, stream: &Cid) -> Result<u64, StoreError> {
        SendWrapper::new(self.load(stream)).await?;
        Ok(self.logs().get(stream).map_or(0, |l| l.log.len() as u64))
    }

    async fn read_log(&self, stream: &Cid, start: u64, max: usize) -> Result<Vec<Cid>, StoreError> {
        SendWrapper::new(self.load(stream)).await?;
        let streams = self.logs();
        let Some(log) = streams.get(stream) else { return Ok(Vec::new()) };
        let start = usize::try_from(start).unwrap_or(usize::MAX).min(log.log.len());
        let end = start.saturating_add(max).min(log.log.len());
        Ok(log.log[start..end].to_vec())
    }

    async fn streams(&self) -> Result<Vec<Cid>, StoreError> {
        let mut all = SendWrapper::new(self.listed()).await?;
        all.extend(self.logs().keys().filter(|s| !all.contains(s)).copied().collect::<Vec<_>>());
        Ok(all)
    }
}
