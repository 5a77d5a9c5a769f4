//! The `SyncDriver` class: the core's session driver (`merkle_clock::sync::Sessions`)
//! for one replica and its peers, over any channel the caller carries bytes on.

use std::rc::Rc;
use std::time::Duration;

use crate::spawn::promise as future_to_promise;
use futures::lock::Mutex;
use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::core::{Bloom, DynReplica, DynSessions, Received, SessionConfig, Sessions};
use crate::errors::{busy, error, invalid};
use crate::replica::{JsReplica, rejection, set};
use crate::values::{bytes_arg, cid_strings};

/// Every sync session of one replica with its peers (named by strings).
///
/// It does no I/O and reads no clock: pass the time as milliseconds since any
/// fixed start (`performance.now()`), carry the bytes yourself:
/// `connect(peer, now)` when a peer appears; `receive(peer, bytes, now)` with
/// every message from it (send back the `reply`, if any); `tick(now)` every
/// few hundred milliseconds (send each of its `messages` to its `peer`).
/// Lost messages are repaired by the driver's timeouts.
#[wasm_bindgen(js_name = SyncDriver)]
pub struct JsSyncDriver {
    replica: Rc<Mutex<DynReplica>>,
    sessions: Rc<Mutex<DynSessions>>,
}

/// A time in milliseconds as a `Duration`.
fn now(ms: f64) -> Result<Duration, JsValue> {
    if !ms.is_finite() || ms < 0.0 {
        return Err(invalid(format!("the time must be a finite number of milliseconds ≥ 0, not {ms}")));
    }
    Duration::try_from_secs_f64(ms / 1000.0).map_err(|e| invalid(format!("time {ms} ms: {e}")))
}

/// `undefined`: keep the default; `null`: `None` (never); a number of ms.
fn opt_ms(options: &JsValue, key: &str, default: Option<Duration>) -> Result<Option<Duration>, JsValue> {
    let v = Reflect::get(options, &JsValue::from_str(key))?;
    if v.is_undefined() {
        return Ok(default);
    }
    if v.is_null() {
        return Ok(None);
    }
    let ms = v.as_f64().ok_or_else(|| invalid(format!("options.{key} must be a number of milliseconds or null")))?;
    now(ms).map(Some)
}

fn opt_u32(options: &JsValue, key: &str, default: u32) -> Result<u32, JsValue> {
    let v = Reflect::get(options, &JsValue::from_str(key))?;
    if v.is_undefined() {
        return Ok(default);
    }
    match v.as_f64() {
        Some(n) if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n) => Ok(n as u32),
        _ => Err(invalid(format!("options.{key} must be an integer ≥ 0"))),
    }
}

fn sync_error(e: impl std::fmt::Display) -> JsValue {
    error("sync", e)
}

fn received_js(r: &Received) -> Object {
    let obj = Object::new();
    set(&obj, "accepted", &JsValue::from_f64(r.accepted as f64));
    set(&obj, "duplicate", &JsValue::from_f64(r.duplicate as f64));
    set(&obj, "pending", &JsValue::from_f64(r.pending as f64));
    set(&obj, "rejected", &JsValue::from_f64(r.rejected as f64));
    set(&obj, "acceptedCids", &cid_strings(&r.accepted_cids));
    set(&obj, "rejections", &r.rejections.iter().map(|w| rejection(w, "rejected")).collect::<Array>());
    set(&obj, "stale", &JsValue::from_bool(r.stale));
    obj
}

#[wasm_bindgen(js_class = SyncDriver)]
impl JsSyncDriver {
    /// A driver for `replica`. `options` (all optional): `timeoutMs` (a
    /// session not settled restarts after this long without a word from the
    /// peer; `null`: never; default 10000), `antiEntropyMs` (a fresh session
    /// with a random settled peer this often; `null`: never; default 60000),
    /// `maxBackoff` (default 3), `maxSessionMessages` (default 10000),
    /// `seed` (an integer: reproducible random choices; default OS randomness).
    #[wasm_bindgen(constructor)]
    pub fn new(replica: &JsReplica, options: JsValue) -> Result<JsSyncDriver, JsValue> {
        let options = if options.is_undefined() || options.is_null() { Object::new().into() } else { options };
        if !options.is_object() {
            return Err(invalid("options must be an object"));
        }
        let mut config = SessionConfig::default();
        config.timeout = opt_ms(&options, "timeoutMs", config.timeout)?;
        config.anti_entropy = opt_ms(&options, "antiEntropyMs", config.anti_entropy)?;
        config.max_backoff = opt_u32(&options, "maxBackoff", config.max_backoff)?;
        config.max_session_messages = opt_u32(&options, "maxSessionMessages", config.max_session_messages)?;
        let seed = Reflect::get(&options, &JsValue::from_str("seed"))?;
        let sessions = if seed.is_undefined() || seed.is_null() {
            Sessions::new(config)
        } else {
            let seed = seed
                .as_f64()
                .filter(|s| s.fract() == 0.0 && *s >= 0.0 && *s <= 9_007_199_254_740_991.0)
                .ok_or_else(|| invalid("options.seed must be a safe integer ≥ 0"))?;
            Sessions::with_seed(Bloom::default(), config, seed as u64)
        };
        Ok(JsSyncDriver { replica: replica.inner.clone(), sessions: Rc::new(Mutex::new(sessions)) })
    }

    /// A peer appeared (or came back: its session restarts, keeping what it
    /// is known to hold). Returns whether the peer was already known.
    pub fn connect(&self, peer: String, now_ms: f64) -> Result<bool, JsValue> {
        let now = now(now_ms)?;
        Ok(self.sessions.try_lock().ok_or_else(busy)?.connect(peer, now))
    }

    /// A peer went away. Returns the durable part of its state (bytes to
    /// pass to `connectWith` next time), or `undefined` for an unknown peer.
    pub fn disconnect(&self, peer: String) -> Result<Option<Uint8Array>, JsValue> {
        Ok(self.sessions.try_lock().ok_or_else(busy)?.disconnect(&peer).map(|b| Uint8Array::from(&b[..])))
    }

    /// Reconnects a peer with the durable state `disconnect` returned.
    #[wasm_bindgen(js_name = connectWith)]
    pub fn connect_with(&self, peer: String, durable: &[u8], now_ms: f64) -> Result<(), JsValue> {
        let now = now(now_ms)?;
        self.sessions.try_lock().ok_or_else(busy)?.connect_with(peer, durable, now);
        Ok(())
    }

    /// The transport knows a message to `peer` was lost: restart its session.
    pub fn lost(&self, peer: String, now_ms: f64) -> Result<(), JsValue> {
        let now = now(now_ms)?;
        self.sessions.try_lock().ok_or_else(busy)?.lost(&peer, now);
        Ok(())
    }

    /// Whether `peer` is known to hold exactly this replica's events.
    pub fn settled(&self, peer: String) -> Result<bool, JsValue> {
        let sessions = self.sessions.try_lock().ok_or_else(busy)?;
        let replica = self.replica.try_lock().ok_or_else(busy)?;
        Ok(sessions.settled(&replica, &peer))
    }

    /// The peers connected.
    pub fn peers(&self) -> Result<Array, JsValue> {
        let sessions = self.sessions.try_lock().ok_or_else(busy)?;
        Ok(sessions.peers().map(|p| JsValue::from_str(p)).collect())
    }

    /// Takes a message from `peer`. Resolves to `{received, reply}`:
    /// `received` is `{accepted, duplicate, pending, rejected, acceptedCids,
    /// rejections: [{status, reason, message}], stale}`; `reply` is the
    /// `Uint8Array` to send back to `peer`, or `undefined`. Rejects (code
    /// `sync`) on a message that does not decode.
    pub fn receive(&self, peer: String, message: JsValue, now_ms: f64) -> Promise {
        let (sessions, replica) = (self.sessions.clone(), self.replica.clone());
        let now = now(now_ms);
        let message = bytes_arg(&message, "the message");
        future_to_promise(async move {
            let now = now?;
            let message = message?;
            let mut sessions = sessions.lock().await;
            let mut replica = replica.lock().await;
            let reply = sessions.receive(&mut replica, &peer, &message, now).await.map_err(sync_error)?;
            let obj = Object::new();
            set(&obj, "received", &received_js(&reply.received));
            set(&obj, "reply", &reply.reply.map_or(JsValue::UNDEFINED, |r| Uint8Array::from(&r[..]).into()));
            Ok(obj.into())
        })
    }

    /// Resolves to `{messages: [{peer, message}], restarts: [{peer, reason}]}`:
    /// the messages due now (send each to its peer) and the sessions
    /// restarted, with why (`timeout`, `reconnect`, `lost`, `error`,
    /// `capped`, `anti-entropy`).
    pub fn tick(&self, now_ms: f64) -> Promise {
        let (sessions, replica) = (self.sessions.clone(), self.replica.clone());
        let now = now(now_ms);
        future_to_promise(async move {
            let now = now?;
            let mut sessions = sessions.lock().await;
            let replica = replica.lock().await;
            let due = sessions.tick(&replica, now).await.map_err(sync_error)?;
            let messages: Array = due
                .messages
                .iter()
                .map(|m| {
                    let o = Object::new();
                    set(&o, "peer", &JsValue::from_str(&m.peer));
                    set(&o, "message", &Uint8Array::from(&m.message[..]));
                    JsValue::from(o)
                })
                .collect();
            let restarts: Array = due
                .restarts
                .iter()
                .map(|(peer, why)| {
                    let o = Object::new();
                    set(&o, "peer", &JsValue::from_str(peer));
                    set(&o, "reason", &JsValue::from_str(why.as_str()));
                    JsValue::from(o)
                })
                .collect();
            let obj = Object::new();
            set(&obj, "messages", &messages);
            set(&obj, "restarts", &restarts);
            Ok(obj.into())
        })
    }

    /// Counters of the driver: `{messagesSent, bytesSent, messagesReceived,
    /// bytesReceived, errors, timeouts, reconnects, failures, capped,
    /// antiEntropy}`.
    pub fn stats(&self) -> Result<Object, JsValue> {
        let s = self.sessions.try_lock().ok_or_else(busy)?.stats();
        let obj = Object::new();
        for (k, v) in [
            ("messagesSent", s.messages_sent),
            ("bytesSent", s.bytes_sent),
            ("messagesReceived", s.messages_received),
            ("bytesReceived", s.bytes_received),
            ("errors", s.errors),
            ("timeouts", s.timeouts),
            ("reconnects", s.reconnects),
            ("failures", s.failures),
            ("capped", s.capped),
            ("antiEntropy", s.anti_entropy),
        ] {
            set(&obj, k, &JsValue::from_f64(v as f64));
        }
        Ok(obj)
    }
}
