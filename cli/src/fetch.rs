//! `mclock fetch --gateway URL CID`: the stream as of an event, from IPFS
//! trustless gateways, every block verified before the store sees it.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use merkle_clock::Cid;
use merkle_clock_gateway::{DagScope, FetcherConfig, GatewayError, GatewayFetcher};

use crate::Result;
use crate::commands::import_blocks;

/// `mclock fetch` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A trustless gateway (`http://host:port`); repeat to ask several, in order.
    #[arg(long = "gateway", value_name = "URL", required = true)]
    gateways: Vec<String>,
    /// Give up on a gateway after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    timeout: u64,
    /// The event to fetch, with all its ancestors (a head gives the whole stream).
    #[arg(value_name = "CID")]
    cid: String,
}

/// `mclock fetch`: one `?format=car&dag-scope=all` request (to the first
/// gateway that answers with a CAR that verifies), then the blocks are
/// added as `import-car` adds a file's.
pub async fn run(dir: &Path, args: &Args, out: &mut dyn Write) -> Result<()> {
    let cid = Cid::try_from(args.cid.as_str()).map_err(|e| format!("{}: not a CID ({e})", args.cid))?;
    let mut config = FetcherConfig::default();
    config.timeout = Duration::from_secs(args.timeout);
    let fetcher = GatewayFetcher::with_config(&args.gateways, config)?;
    // The HTTP client needs tokio; the store does not.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let blocks = runtime.block_on(fetcher.car(&cid, DagScope::All)).map_err(|e| match e {
        // The gateway's CAR stops at a horizon: it pruned (or never held) the rest.
        GatewayError::Incomplete { missing, first, .. } => format!(
            "{e}; nothing fetched: the gateway does not hold {missing} of the ancestors of {cid} (first: {first}), \
             most likely pruned there; fetch from a gateway that holds the whole history, or start from a checkpoint"
        ),
        e => format!("{e}; nothing fetched"),
    })?;
    let bytes: usize = blocks.iter().map(|b| b.len()).sum();
    writeln!(out, "fetched {} blocks ({bytes} bytes), every one verified", blocks.len())?;
    let source = format!("the snapshot of {cid}");
    import_blocks(dir, &source, &[cid], blocks, out).await
}
