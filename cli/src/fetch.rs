//! `mclock fetch --gateway URL CID`: the stream as of an event, from IPFS
//! trustless gateways, every block verified before the store sees it; with
//! `--from-checkpoint CP`, only what follows a checkpoint.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use merkle_clock::sync::fill::{Fetched, fill};
use merkle_clock::{Cid, short_cid};
use merkle_clock_gateway::{DagScope, FetcherConfig, GatewayError, GatewayFetcher};

use crate::Result;
use crate::commands::{bootstrap, events, import_blocks};

/// `mclock fetch` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A trustless gateway (`http://host:port`); repeat to ask several, in order.
    #[arg(long = "gateway", value_name = "URL", required = true)]
    gateways: Vec<String>,
    /// Give up on a gateway after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    timeout: u64,
    /// Start this (new) store from the checkpoint with this CID, which you
    /// trust, instead of the whole history: fetch the checkpoint, its states
    /// and skeleton parts, then the events after it that lead to CID, block
    /// by block.
    #[arg(long = "from-checkpoint", value_name = "CP")]
    from_checkpoint: Option<String>,
    /// The event to fetch, with all its ancestors (a head gives the whole stream).
    #[arg(value_name = "CID")]
    cid: String,
}

/// `mclock fetch`: one `?format=car&dag-scope=all` request (to the first
/// gateway that answers with a CAR that verifies), then the blocks are
/// added as `import-car` adds a file's. With `--from-checkpoint`, raw
/// blocks instead (see [`shallow`]).
pub async fn run(dir: &Path, args: &Args, out: &mut dyn Write) -> Result<()> {
    let cid = Cid::try_from(args.cid.as_str()).map_err(|e| format!("{}: not a CID ({e})", args.cid))?;
    let mut config = FetcherConfig::default();
    config.timeout = Duration::from_secs(args.timeout);
    let fetcher = GatewayFetcher::with_config(&args.gateways, config)?;
    // The HTTP client needs tokio; the store does not.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    if let Some(cp) = &args.from_checkpoint {
        let cp = Cid::try_from(cp.as_str()).map_err(|e| format!("{cp}: not a CID ({e})"))?;
        return runtime.block_on(shallow(dir, &fetcher, &cp, &cid, out));
    }
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

/// `fetch --from-checkpoint CP CID`: a new store started from the checkpoint
/// (raw blocks from the gateways), then the events that lead from its cut
/// to `head`, a level of history per round of requests. Events concurrent
/// with the checkpoint (their parents are below its cut) are looked up in
/// its skeleton, never fetched in full. Ends with an error naming what no
/// gateway had.
async fn shallow(dir: &Path, fetcher: &GatewayFetcher, cp: &Cid, head: &Cid, out: &mut dyn Write) -> Result<()> {
    let source = Fetched::new(fetcher);
    let (mut here, checkpoint) = bootstrap(dir, &source, None, cp, out).await?;
    let before = here.len();
    let mut want = vec![*head];
    let mut blocks = 0;
    loop {
        blocks += fill(&mut here, fetcher, &want).await?.blocks;
        let late = here.admit_late(&checkpoint, &source).await?;
        want = here.missing();
        if late.anchored + late.outside == 0 || want.is_empty() {
            break;
        }
    }
    writeln!(
        out,
        "fetched {blocks} blocks after the checkpoint, every one verified ({} requests to the gateways in all)",
        fetcher.stats().requests
    )?;
    writeln!(out, "+{} after the checkpoint, now {} events", events(here.len() - before), here.len())?;
    if !here.contains(head) || !want.is_empty() {
        let shown: Vec<String> = want.iter().take(5).map(short_cid).collect();
        return Err(format!(
            "{head}: incomplete after the checkpoint: no gateway holds {} it needs ({})",
            events(want.len().max(1)),
            if shown.is_empty() { short_cid(head) } else { shown.join(" ") }
        )
        .into());
    }
    Ok(())
}
