//! [`GatewayFetcher`]: blocks and snapshots from trustless gateways,
//! verified before anyone sees them; the core's
//! [`Fetcher`](merkle_clock::sync::transport::Fetcher) over HTTP.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use merkle_clock::car::{CarLimits, CarReader};
use merkle_clock::sync::transport::{Fetcher, TransportError};
use merkle_clock::{Block, Cid, Limits, LoggedEvent};

use crate::car_stream::key;
use crate::client::{Answer, Endpoint};
use crate::error::GatewayError;
use crate::request::{CAR, DagScope, RAW};

/// How a [`GatewayFetcher`] asks. `#[non_exhaustive]`: start from
/// [`FetcherConfig::default()`] and change fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FetcherConfig {
    /// How long one request may take, connecting, the response head and the
    /// whole body included; past it the request is
    /// [`GatewayError::Timeout`] and the next gateway is asked. Default: 30 s.
    pub timeout: Duration,
    /// Largest raw block accepted, in bytes. Default: 1 MiB (the largest
    /// event a replica accepts, [`Limits::DEFAULT`]).
    pub max_block_bytes: u64,
    /// Largest CAR body accepted, in bytes (a CAR is verified whole before
    /// any block is handed out, so this is the memory a snapshot may take).
    /// Default: 256 MiB, about 2.5 million small events.
    pub max_car_bytes: u64,
    /// The CAR reader's limits (header, block, block count).
    /// Default: [`CarLimits::default()`].
    pub car_limits: CarLimits,
    /// Most block requests in flight at once in one [`Fetcher::fetch`].
    /// Default: 16.
    pub max_concurrent_requests: usize,
}

impl Default for FetcherConfig {
    fn default() -> Self {
        FetcherConfig {
            timeout: Duration::from_secs(30),
            max_block_bytes: Limits::DEFAULT.max_block_bytes as u64,
            max_car_bytes: 256 << 20,
            car_limits: CarLimits::default(),
            max_concurrent_requests: 16,
        }
    }
}

/// A [`GatewayFetcher`]'s counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetcherStats {
    /// HTTP requests sent.
    pub requests: u64,
    /// Blocks verified and handed out (raw or from a CAR).
    pub blocks_verified: u64,
    /// Answers "not found" (404, 410).
    pub not_found: u64,
    /// Answers refused because they did not verify: a block that does not
    /// hash to its CID, a bad or incomplete CAR, the wrong content type, a
    /// body over its limit.
    pub rejected: u64,
    /// Requests that failed: no connection, a time-out, an HTTP error,
    /// another status.
    pub failed: u64,
    /// Blocks in CARs that were not part of the DAG asked for (ignored, as
    /// the spec asks).
    pub unexpected_blocks: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    blocks_verified: AtomicU64,
    not_found: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    unexpected_blocks: AtomicU64,
}

/// Fetches blocks by CID from one or more trustless gateways (asked in the
/// order given until one answers with a block that verifies), and whole
/// snapshots as CARs.
///
/// Nothing unverified gets out: a raw block must hash to the CID asked
/// ([`Block::new`]); a CAR is read whole by the core's
/// [`CarReader`], which verifies every block, and must hold every block of
/// the scope asked for. A gateway that lies, truncates or stalls costs a
/// typed [`GatewayError`] (the [`Fetcher`] impl then asks the next gateway,
/// and answers `None` if none had a good block).
pub struct GatewayFetcher {
    endpoints: Vec<Endpoint>,
    config: FetcherConfig,
    counters: Counters,
}

impl fmt::Debug for GatewayFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<&str> = self.endpoints.iter().map(|e| e.url.as_str()).collect();
        f.debug_struct("GatewayFetcher").field("gateways", &urls).field("stats", &self.stats()).finish()
    }
}

impl GatewayFetcher {
    /// A fetcher over these gateway URLs (`http://host:port`, optionally
    /// with a path before `/ipfs/`), with the default configuration.
    ///
    /// # Errors
    /// [`GatewayError::BadUrl`], [`GatewayError::NoGateway`].
    pub fn new<S: AsRef<str>>(urls: impl IntoIterator<Item = S>) -> Result<Self, GatewayError> {
        Self::with_config(urls, FetcherConfig::default())
    }

    /// A fetcher over these gateway URLs.
    ///
    /// # Errors
    /// [`GatewayError::BadUrl`], [`GatewayError::NoGateway`].
    pub fn with_config<S: AsRef<str>>(
        urls: impl IntoIterator<Item = S>,
        config: FetcherConfig,
    ) -> Result<Self, GatewayError> {
        let endpoints = urls.into_iter().map(|u| Endpoint::parse(u.as_ref())).collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(GatewayError::NoGateway);
        }
        Ok(GatewayFetcher { endpoints, config, counters: Counters::default() })
    }

    /// The configuration.
    pub fn config(&self) -> &FetcherConfig {
        &self.config
    }

    /// The counters so far.
    pub fn stats(&self) -> FetcherStats {
        let c = &self.counters;
        FetcherStats {
            requests: c.requests.load(Relaxed),
            blocks_verified: c.blocks_verified.load(Relaxed),
            not_found: c.not_found.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
            failed: c.failed.load(Relaxed),
            unexpected_blocks: c.unexpected_blocks.load(Relaxed),
        }
    }

    /// One block, from the first gateway whose answer verifies.
    ///
    /// # Errors
    /// [`GatewayError::NotFound`] when every gateway said so; otherwise the
    /// first gateway's error (a [`GatewayError::Block`] for a block that does
    /// not hash to `cid`, a [`GatewayError::Timeout`], ...).
    pub async fn block(&self, cid: &Cid) -> Result<Block, GatewayError> {
        let target = &format!("/ipfs/{cid}?format=raw");
        self.first_good(|ep| async move {
            let answer = self.ask(ep, target, RAW, self.config.max_block_bytes, cid).await?;
            Block::new(*cid, answer.body).map_err(|source| GatewayError::Block { gateway: ep.url.clone(), source })
        })
        .await
        .inspect(|_| {
            self.counters.blocks_verified.fetch_add(1, Relaxed);
        })
    }

    /// The CAR of `root` with `dag-scope` `scope`, read whole and verified:
    /// every block hashes to its CID, and every block of the scope is there
    /// (for [`DagScope::All`], the root event and every ancestor). Blocks not
    /// in the DAG asked for are dropped. Returns the blocks in an order a
    /// replica takes without buffering: ascending height, parents first.
    ///
    /// # Errors
    /// [`GatewayError::Car`] (a truncated or malformed CAR, a block that
    /// does not hash to its CID), [`GatewayError::Incomplete`], and the
    /// errors of [`GatewayFetcher::block`].
    pub async fn car(&self, root: &Cid, scope: DagScope) -> Result<Vec<Block>, GatewayError> {
        let target = &format!("/ipfs/{root}?format=car&dag-scope={}", scope.as_str());
        let accept = "application/vnd.ipld.car; version=1; order=dfs; dups=n";
        let blocks = self
            .first_good(|ep| async move {
                let answer = self.ask(ep, target, accept, self.config.max_car_bytes, root).await?;
                self.verify_car(ep, root, scope, &answer.body)
            })
            .await?;
        self.counters.blocks_verified.fetch_add(blocks.len() as u64, Relaxed);
        Ok(blocks)
    }

    /// Tries every gateway in order; the first success, or the most telling error.
    async fn first_good<'a, T, F, Fut>(&'a self, mut attempt: F) -> Result<T, GatewayError>
    where
        F: FnMut(&'a Endpoint) -> Fut,
        Fut: Future<Output = Result<T, GatewayError>>,
    {
        let mut first_error: Option<GatewayError> = None;
        for ep in &self.endpoints {
            match attempt(ep).await {
                Ok(t) => return Ok(t),
                Err(e) => {
                    let counter = match &e {
                        GatewayError::NotFound { .. } => &self.counters.not_found,
                        GatewayError::Connect { .. }
                        | GatewayError::Timeout { .. }
                        | GatewayError::Http { .. }
                        | GatewayError::Status { .. } => &self.counters.failed,
                        _ => &self.counters.rejected,
                    };
                    counter.fetch_add(1, Relaxed);
                    tracing::debug!(gateway = %ep.url, error = %e, "gateway answer refused");
                    // A real failure says more than a "not found" elsewhere.
                    let replace = match &first_error {
                        None => true,
                        Some(kept) => kept.is_not_found() && !e.is_not_found(),
                    };
                    if replace {
                        first_error = Some(e);
                    }
                }
            }
        }
        Err(first_error.unwrap_or(GatewayError::NoGateway))
    }

    /// One request; a 200 with the expected media type, or an error.
    async fn ask(
        &self,
        ep: &Endpoint,
        target: &str,
        accept: &'static str,
        limit: u64,
        cid: &Cid,
    ) -> Result<Answer, GatewayError> {
        self.counters.requests.fetch_add(1, Relaxed);
        let answer = ep.get(target, accept, limit, self.config.timeout).await?;
        match answer.status.as_u16() {
            200 => {}
            404 | 410 => return Err(GatewayError::NotFound { gateway: ep.url.clone(), cid: *cid }),
            status => return Err(GatewayError::Status { gateway: ep.url.clone(), cid: *cid, status }),
        }
        let expected = if accept == RAW { RAW } else { CAR };
        let media = answer.content_type.split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case(expected) {
            return Err(GatewayError::WrongContentType {
                gateway: ep.url.clone(),
                expected,
                found: answer.content_type.clone(),
            });
        }
        Ok(answer)
    }

    fn verify_car(&self, ep: &Endpoint, root: &Cid, scope: DagScope, body: &[u8]) -> Result<Vec<Block>, GatewayError> {
        let car_err = |source| GatewayError::Car { gateway: ep.url.clone(), source };
        // The header's roots are not specified for gateways: ignored.
        let reader = CarReader::new(body, self.config.car_limits).map_err(car_err)?;
        // Keyed by digest: every block the reader returns is a BLAKE3 CID.
        let mut by_digest: HashMap<[u8; 32], Block> = HashMap::new();
        let mut read = 0u64;
        for block in reader {
            let block = block.map_err(car_err)?;
            read += 1;
            by_digest.entry(key(block.cid())).or_insert(block);
        }
        // Keep what the root reaches, in any order the gateway chose.
        let mut kept: Vec<(u64, Block)> = Vec::new();
        let mut seen: HashSet<[u8; 32]> = HashSet::from([key(root)]);
        let mut stack = vec![*root];
        let mut missing: Vec<Cid> = Vec::new();
        while let Some(cid) = stack.pop() {
            let Some(block) = by_digest.remove(&key(&cid)).filter(|b| b.cid() == &cid) else {
                missing.push(cid);
                continue;
            };
            // A block that is not an event is a leaf (the replica will say what it is).
            let (height, parents) = LoggedEvent::from_block(&block).map_or((0, Vec::new()), |e| (e.height, e.parents));
            if scope == DagScope::All {
                stack.extend(parents.into_iter().filter(|p| seen.insert(key(p))));
            }
            kept.push((height, block));
        }
        if let Some(first) = missing.first() {
            return Err(GatewayError::Incomplete {
                gateway: ep.url.clone(),
                root: *root,
                missing: missing.len(),
                first: *first,
            });
        }
        self.counters.unexpected_blocks.fetch_add(read - kept.len() as u64, Relaxed);
        // Parents first: a parent's height is below its children's.
        kept.sort_by_key(|(h, _)| *h);
        Ok(kept.into_iter().map(|(_, b)| b).collect())
    }
}

#[async_trait]
impl Fetcher for GatewayFetcher {
    /// Each CID as a raw block, up to
    /// [`FetcherConfig::max_concurrent_requests`] at once; `None` for a CID
    /// no gateway had a verified block for.
    ///
    /// # Errors
    /// [`TransportError::Backend`] (holding the [`GatewayError`]) when no
    /// gateway could be reached for any CID: every request failed to
    /// connect, timed out or broke.
    async fn fetch(&self, cids: &[Cid]) -> Result<Vec<Option<Block>>, TransportError> {
        let mut results: Vec<(usize, Result<Block, GatewayError>)> =
            futures::stream::iter(cids.iter().copied().enumerate())
                .map(|(i, cid)| async move { (i, self.block(&cid).await) })
                .buffer_unordered(self.config.max_concurrent_requests.max(1))
                .collect()
                .await;
        results.sort_by_key(|(i, _)| *i);
        let unreachable = |e: &GatewayError| {
            matches!(e, GatewayError::Connect { .. } | GatewayError::Timeout { .. } | GatewayError::Http { .. })
        };
        if !results.is_empty() && results.iter().all(|(_, r)| r.as_ref().is_err_and(unreachable)) {
            let first = results.swap_remove(0).1.err();
            return Err(first.map_or(TransportError::Closed, |e| TransportError::Backend(Box::new(e))));
        }
        Ok(results.into_iter().map(|(_, r)| r.ok()).collect())
    }
}
