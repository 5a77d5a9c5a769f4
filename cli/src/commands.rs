//! The subcommands over a store directory.

use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use merkle_clock::auth::Role;
use merkle_clock::car::{CarLimits, CarWriter, read_car};
use merkle_clock::checkpoint::Checkpoint;
use merkle_clock::replica::{PrunePolicy, Replica, ReplicaConfig};
use merkle_clock::store::Durability;
use merkle_clock::sync::{SessionConfig, SessionStats, Sessions};
use merkle_clock::{Block, Blockstore, Cid, ClockOrder, Event, Ingest, Ipld, StreamStore, short_cid};
use serde_json::json;

use crate::store::{self, Local};
use crate::{Command, Format, Result, demo, draw, json as pj, keys};

/// Blocks fetched per store read when walking the order.
const PAGE: usize = 1024;

/// Runs one command; what it prints goes to `out`.
pub async fn run(command: Command, dir: &Path, out: &mut dyn Write) -> Result<ExitCode> {
    match command {
        Command::Init { genesis, admins } => init(dir, genesis.as_deref(), &admins, out).await?,
        Command::Append { payload, key } => append(dir, &payload, key.as_deref(), out).await?,
        Command::Keygen { out: file } => keys::keygen(&file, out)?,
        Command::Grant { pubkey, admin, key } => {
            let role = if admin { Role::Admin } else { Role::Writer };
            keys::change(dir, &pubkey, Some(role), &key, out).await?;
        }
        Command::Revoke { pubkey, key } => keys::change(dir, &pubkey, None, &key, out).await?,
        Command::Log { json } => log(dir, json, out).await?,
        Command::Heads => {
            let replica = store::open(dir).await?;
            for head in replica.heads() {
                writeln!(out, "{head}")?;
            }
        }
        Command::Prune { keep } => prune(dir, keep, out).await?,
        Command::Show { cid, json } => show(dir, &cid, json, out).await?,
        Command::Compare { left, right } => compare(dir, &left, &right, out).await?,
        Command::ExportCar { file } => export_car(dir, &file, out).await?,
        Command::ImportCar { file } => import_car(dir, &file, out).await?,
        Command::Sync { with: Some(with), from_checkpoint, .. } => {
            sync(dir, &with, from_checkpoint.as_deref(), out).await?
        }
        Command::Sync { with: None, peer, .. } => crate::serve::sync_peer(dir, &peer, out)?,
        Command::Serve(args) => crate::serve::run(dir, &args, out)?,
        Command::Fetch(args) => crate::fetch::run(dir, &args, out).await?,
        Command::Checkpoint(args) => crate::checkpoint::run(dir, &args, out).await?,
        Command::Draw { format, output, layers, rows, color_by } => {
            let replica = store::open(dir).await?;
            let opts = draw::Options { max_layers: layers, max_rows: rows, color_by, title: None };
            let picture = draw::build(&replica, &opts).await?;
            let text = render(&picture, format);
            match output {
                Some(path) => {
                    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    writeln!(out, "wrote {}", path.display())?;
                }
                None => out.write_all(text.as_bytes())?,
            }
        }
        Command::Demo(args) => return demo::run(&args, out).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// A picture in one of the formats.
pub fn render(picture: &draw::Picture, format: Format) -> String {
    match format {
        Format::Svg => draw::svg(picture),
        Format::Dot => draw::dot(picture),
        Format::Mermaid => draw::mermaid(picture),
    }
}

async fn init(dir: &Path, genesis: Option<&str>, admins: &[String], out: &mut dyn Write) -> Result<()> {
    let payload = match genesis {
        Some(text) => pj::parse(text)?,
        None => default_genesis(),
    };
    let block = keys::genesis(&payload, admins)?;
    let replica = store::create(dir, &block, Durability::Immediate).await?;
    writeln!(out, "{}", replica.stream_id())?;
    Ok(())
}

/// A genesis no other `init` makes: a time and a random nonce.
fn default_genesis() -> Ipld {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(now.as_nanos());
    h.write_u32(std::process::id());
    let text = format!(r#"{{"mclock": "stream", "created": {}, "nonce": "{:016x}"}}"#, now.as_secs(), h.finish());
    pj::parse(&text).unwrap_or(Ipld::Null)
}

async fn append(dir: &Path, payload: &str, key: Option<&Path>, out: &mut dyn Write) -> Result<()> {
    let text = if payload == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| format!("cannot read stdin: {e}"))?;
        s
    } else {
        payload.to_string()
    };
    let payload = pj::parse(&text)?;
    let mut replica = keys::open_signed(dir, key).await?;
    let cid = replica.append(&payload).await.map_err(keys::refused)?;
    writeln!(out, "{cid}")?;
    Ok(())
}

/// Calls `f` with each event in the total order: position, CID, block
/// (`None` for a pruned event).
async fn walk<S: ?Sized + StreamStore>(
    replica: &Replica<S>,
    mut f: impl FnMut(usize, &Cid, Option<&Block>) -> Result<()>,
) -> Result<()> {
    let order: Vec<Cid> = replica.order().collect();
    for (page_no, page) in order.chunks(PAGE).enumerate() {
        let blocks = replica.store().get_many(page).await?;
        for (i, (cid, block)) in page.iter().zip(blocks).enumerate() {
            if block.is_none() && !replica.is_pruned(cid) {
                return Err(format!("{cid}: in the log but not in the store").into());
            }
            f(page_no * PAGE + i, cid, block.as_ref())?;
        }
    }
    Ok(())
}

/// Prints a pruned event's line of `log`: what the clock still knows of it.
fn log_pruned(replica: &Local, pos: usize, cid: &Cid, as_json: bool, out: &mut dyn Write) -> Result<()> {
    let dag = replica.dag();
    let id = dag.id(cid).ok_or_else(|| format!("unknown event {cid}"))?;
    let h = dag.height(id);
    if as_json {
        let mut parents: Vec<String> = dag.parents(id).map(|p| dag.cid(p).to_string()).collect();
        parents.sort_unstable();
        let line = json!({ "position": pos, "height": h, "cid": cid.to_string(), "parents": parents, "pruned": true });
        writeln!(out, "{line}")?;
    } else {
        writeln!(out, "{pos:>5}  h{h:<4} {}  (pruned)", short_cid(cid))?;
    }
    Ok(())
}

/// `mclock prune --keep N`.
async fn prune(dir: &Path, keep: usize, out: &mut dyn Write) -> Result<()> {
    let mut replica = store::open(dir).await?;
    let before_file = store::db_size(dir)?;
    let before: Vec<Cid> = replica.order().filter(|c| !replica.is_pruned(c)).collect();
    let report = replica.prune(PrunePolicy::KeepNewest(keep)).await?;
    let gone: Vec<Cid> = before.into_iter().filter(|c| replica.is_pruned(c)).collect();
    let total = replica.metrics().pruned;
    drop(replica);
    let after_file = store::compact(dir)?;
    match (gone.first(), gone.last()) {
        (Some(first), Some(last)) => writeln!(
            out,
            "pruned {} event{} ({} … {} in the total order), {} bytes of blocks",
            report.events,
            if report.events == 1 { "" } else { "s" },
            short_cid(first),
            short_cid(last),
            report.bytes
        )?,
        _ => writeln!(out, "pruned nothing")?,
    }
    writeln!(
        out,
        "kept the newest {keep}, and {} more that are never pruned (the genesis, heads, membership events); {total} pruned in all",
        report.kept
    )?;
    writeln!(
        out,
        "store file: {before_file} -> {after_file} bytes ({} bytes freed)",
        before_file.saturating_sub(after_file)
    )?;
    Ok(())
}

async fn log(dir: &Path, as_json: bool, out: &mut dyn Write) -> Result<()> {
    let replica = store::open(dir).await?;
    walk(&replica, |pos, cid, block| {
        let Some(block) = block else { return log_pruned(&replica, pos, cid, as_json, out) };
        let event = Event::<Ipld>::decode(block)?;
        let signed = keys::author_column(block);
        if as_json {
            let mut line = json!({
                "position": pos,
                "height": event.height(),
                "cid": cid.to_string(),
                "parents": event.parents().iter().map(ToString::to_string).collect::<Vec<_>>(),
                "payload": pj::from_ipld(event.payload()),
            });
            if let Some(author) = merkle_clock::auth::author_of(block)? {
                line["author"] = json!(author.to_string());
            }
            writeln!(out, "{line}")?;
        } else {
            let (h, short) = (event.height(), short_cid(cid));
            match signed {
                None => writeln!(out, "{pos:>5}  h{h:<4} {short}  {}", pj::compact(event.payload()))?,
                Some((author, Some(change))) => writeln!(out, "{pos:>5}  h{h:<4} {short}  {author}  {change}")?,
                Some((author, None)) => {
                    writeln!(out, "{pos:>5}  h{h:<4} {short}  {author}  {}", pj::compact(event.payload()))?
                }
            }
        }
        Ok(())
    })
    .await
}

/// A CID given in full or as a unique tail of its string (`…x3kq2a7e` or `x3kq2a7e`).
fn resolve(replica: &Local, text: &str) -> Result<Cid> {
    let t = text.trim().trim_start_matches('…').trim_start_matches("...");
    match Cid::try_from(t) {
        Ok(cid) if replica.contains(&cid) => return Ok(cid),
        Ok(_) => return Err(format!("unknown event {t}: not in stream {}", replica.stream_id()).into()),
        // Longer than any tail `log` prints: meant as a whole CID.
        Err(e) if t.len() > 20 => return Err(format!("not a CID: {t} ({e})").into()),
        Err(_) => {}
    }
    if t.len() < 4 || !t.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!("not a CID: {text:?}").into());
    }
    let found: Vec<Cid> = replica.order().filter(|c| c.to_string().ends_with(t)).take(2).collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!("unknown event {text}: no event of stream {} ends with it", replica.stream_id()).into()),
        _ => Err(format!("ambiguous CID tail {text}: give more characters").into()),
    }
}

async fn show(dir: &Path, text: &str, as_json: bool, out: &mut dyn Write) -> Result<()> {
    let replica = store::open(dir).await?;
    let cid = resolve(&replica, text)?;
    let block = match replica.get(&cid).await {
        Err(merkle_clock::StoreError::Pruned { .. }) => return show_pruned(&replica, &cid, as_json, out),
        other => other?.ok_or_else(|| format!("{cid}: in the DAG but not in the store"))?,
    };
    let event = Event::<Ipld>::decode(&block)?;
    let dag = replica.dag();
    let id = dag.id(&cid).ok_or_else(|| format!("unknown event {cid}"))?;
    let mut children: Vec<Cid> = dag.children(id).map(|c| dag.cid(c)).collect();
    children.sort_unstable();
    let head = children.is_empty();
    let author = merkle_clock::auth::author_of(&block)?;
    if as_json {
        let mut v = json!({
            "cid": cid.to_string(),
            "height": event.height(),
            "parents": event.parents().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "children": children.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "head": head,
            "size": block.len(),
            "payload": pj::from_ipld(event.payload()),
        });
        if let Some(author) = author {
            v["author"] = json!(author.to_string());
        }
        writeln!(out, "{v}")?;
        return Ok(());
    }
    let list = |cids: &[Cid]| -> Vec<String> {
        if cids.is_empty() {
            vec!["none".into()]
        } else {
            cids.iter().map(|c| format!("{c}  ({})", short_cid(c))).collect()
        }
    };
    writeln!(out, "cid       {cid}")?;
    writeln!(out, "height    {}", event.height())?;
    for (i, line) in list(event.parents()).iter().enumerate() {
        writeln!(out, "{}{line}", if i == 0 { "parents   " } else { "          " })?;
    }
    for (i, line) in list(&children).iter().enumerate() {
        writeln!(out, "{}{line}", if i == 0 { "children  " } else { "          " })?;
    }
    writeln!(out, "head      {}", if head { "yes" } else { "no" })?;
    if let Some(author) = author {
        writeln!(out, "author    {author}")?;
    }
    writeln!(out, "size      {} bytes", block.len())?;
    let pretty = serde_json::to_string_pretty(&pj::from_ipld(event.payload()))?;
    for (i, line) in pretty.lines().enumerate() {
        writeln!(out, "{}{line}", if i == 0 { "payload   " } else { "          " })?;
    }
    Ok(())
}

/// `show` of a pruned event: its place in the clock, and that its bytes are gone.
fn show_pruned(replica: &Local, cid: &Cid, as_json: bool, out: &mut dyn Write) -> Result<()> {
    let dag = replica.dag();
    let id = dag.id(cid).ok_or_else(|| format!("unknown event {cid}"))?;
    let sorted = |it: &mut dyn Iterator<Item = merkle_clock::EventId>| {
        let mut v: Vec<Cid> = it.map(|i| dag.cid(i)).collect();
        v.sort_unstable();
        v
    };
    let parents = sorted(&mut dag.parents(id));
    let children = sorted(&mut dag.children(id));
    if as_json {
        let v = json!({
            "cid": cid.to_string(),
            "height": dag.height(id),
            "parents": parents.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "children": children.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "head": children.is_empty(),
            "pruned": true,
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(out, "cid       {cid}")?;
    writeln!(out, "height    {}", dag.height(id))?;
    for (label, cids) in [("parents   ", &parents), ("children  ", &children)] {
        for (i, c) in cids.iter().enumerate() {
            writeln!(out, "{}{c}  ({})", if i == 0 { label } else { "          " }, short_cid(c))?;
        }
    }
    writeln!(out, "pruned    yes: its payload was dropped by `mclock prune`; its place in the clock is kept")?;
    Ok(())
}

async fn compare(dir: &Path, left: &[String], right: &[String], out: &mut dyn Write) -> Result<()> {
    let replica = store::open(dir).await?;
    let a: Vec<Cid> = left.iter().map(|t| resolve(&replica, t)).collect::<Result<_>>()?;
    let b: Vec<Cid> = right.iter().map(|t| resolve(&replica, t)).collect::<Result<_>>()?;
    let word = match replica.dag().compare(&a, &b)? {
        ClockOrder::Before => "before",
        ClockOrder::After => "after",
        ClockOrder::Concurrent => "concurrent",
        ClockOrder::Equal => "equal",
    };
    writeln!(out, "{word}")?;
    Ok(())
}

async fn export_car(dir: &Path, path: &Path, out: &mut dyn Write) -> Result<()> {
    let replica = store::open(dir).await?;
    let heads = replica.heads();
    let file = File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut car = CarWriter::new(BufWriter::new(file), &heads)?;
    let mut pruned = 0u64;
    walk(&replica, |_, _, block| match block {
        Some(block) => Ok(car.write(block)?),
        None => {
            pruned += 1;
            Ok(())
        }
    })
    .await?;
    let (blocks, bytes) = (car.blocks_written(), car.bytes_written());
    let file = car.finish()?.into_inner().map_err(|e| format!("cannot write {}: {}", path.display(), e.error()))?;
    file.sync_all().map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    writeln!(
        out,
        "exported {blocks} blocks ({bytes} bytes) of stream {} to {}; roots: {} head{}",
        replica.stream_id(),
        path.display(),
        heads.len(),
        if heads.len() == 1 { "" } else { "s" }
    )?;
    if pruned > 0 {
        writeln!(out, "left out {pruned} pruned events: the file holds the events this store still has")?;
    }
    Ok(())
}

async fn import_car(dir: &Path, path: &Path, out: &mut dyn Write) -> Result<()> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // Every block is hashed and checked before anything is kept...
    let (roots, blocks) = read_car(BufReader::new(file), CarLimits::default())
        .map_err(|e| format!("{}: {e}; nothing imported", path.display()))?;
    import_blocks(dir, &path.display().to_string(), &roots, blocks, out).await
}

/// Adds verified blocks (from a CAR, `source`) to the store: each is decoded
/// as a canonical event first; the stream is created from their genesis if
/// the store has none. Fails, naming `source`, if some `roots` did not join.
pub async fn import_blocks(
    dir: &Path,
    source: &str,
    roots: &[Cid],
    blocks: Vec<Block>,
    out: &mut dyn Write,
) -> Result<()> {
    // ...and decoded as a canonical event.
    let mut geneses = Vec::new();
    for block in &blocks {
        let event = Event::<Ipld>::decode(block).map_err(|e| format!("{source}: {e}; nothing imported"))?;
        if event.is_genesis() && !geneses.contains(block) {
            geneses.push(block.clone());
        }
    }
    let db_exists = dir.join(store::DB_FILE).is_file();
    let current = if db_exists {
        let db = store::open_db(dir, Durability::Immediate)?;
        let stream = store::current_stream(dir, &db).await?;
        drop(db);
        stream
    } else {
        None
    };
    let created = current.is_none();
    let mut replica = match current {
        Some(stream) => {
            if let Some(g) = geneses.iter().find(|g| g.cid() != &stream) {
                return Err(format!(
                    "{} holds stream {}, the store holds stream {stream}; nothing imported",
                    source,
                    g.cid()
                )
                .into());
            }
            store::open(dir).await?
        }
        None => match geneses.as_slice() {
            [genesis] => store::create(dir, genesis, Durability::Immediate).await?,
            [] => {
                return Err(format!(
                    "{} holds no genesis and the store holds no stream to add its events to; nothing imported",
                    source
                )
                .into());
            }
            _ => return Err(format!("{} holds {} streams; nothing imported", source, geneses.len()).into()),
        },
    };
    // A store created from the CAR's genesis held nothing before.
    let before = if created { 0 } else { replica.len() };
    let total = blocks.len();
    let events: Vec<Block> = blocks.into_iter().filter(|b| b.cid() != replica.stream_id()).collect();
    let report = replica.ingest_many(events).await?;
    let skipped = total - report.outcomes.len(); // copies of the genesis
    let mut duplicate = if created { skipped.saturating_sub(1) } else { skipped };
    let (mut pending, mut rejected) = (0, Vec::new());
    for outcome in &report.outcomes {
        match outcome {
            Ingest::Accepted => {}
            Ingest::Duplicate => duplicate += 1,
            Ingest::Pending { .. } => pending += 1,
            Ingest::Rejected(why) => rejected.push(why.to_string()),
        }
    }
    let added = replica.len() - before;
    let missing_roots = roots.iter().filter(|r| !replica.contains(r)).count();
    writeln!(
        out,
        "imported {}: {total} blocks, {added} new events, {duplicate} already held; stream {} now has {} events and {} head{}",
        source,
        replica.stream_id(),
        replica.len(),
        replica.heads().len(),
        if replica.heads().len() == 1 { "" } else { "s" }
    )?;
    if !rejected.is_empty() || pending > 0 || missing_roots > 0 {
        out.flush()?;
        let mut why = Vec::new();
        if !rejected.is_empty() {
            why.push(format!("{} rejected (first: {})", rejected.len(), rejected[0]));
        }
        if pending > 0 {
            why.push(format!("{pending} lack their parents"));
        }
        if missing_roots > 0 {
            why.push(format!("{missing_roots} of its {} roots are not in the stream", roots.len()));
        }
        return Err(format!("{} is incomplete: {}", source, why.join("; ")).into());
    }
    Ok(())
}

/// `sync --with OTHER --from-checkpoint CID`: a new store here, started
/// from the checkpoint with blocks from the other store.
async fn start_from_checkpoint(
    dir: &Path,
    other: &Path,
    checkpoint: &str,
    out: &mut dyn Write,
) -> Result<(Local, Checkpoint)> {
    let cid = Cid::try_from(checkpoint).map_err(|e| format!("{checkpoint}: not a CID ({e})"))?;
    let other_db = store::open_db(other, Durability::Immediate)?;
    let stream = store::current_stream(other, &other_db)
        .await?
        .ok_or_else(|| format!("the store at {} holds no stream", other.display()))?;
    bootstrap(dir, &other_db, Some(stream), &cid, out).await
}

/// A new store at `dir` started from the checkpoint `cid` (trusted: the
/// user named it), every block fetched from `source` and hashed: the
/// checkpoint, its states, the membership below it and its cut, not the
/// history. `stream` is the genesis when known; `None` reads it from the
/// checkpoint (the height-0 entry of its flagged tree).
pub(crate) async fn bootstrap<B: ?Sized + Blockstore>(
    dir: &Path,
    source: &B,
    stream: Option<Cid>,
    cid: &Cid,
    out: &mut dyn Write,
) -> Result<(Local, Checkpoint)> {
    if dir.join(store::DB_FILE).is_file() {
        let db = store::open_db(dir, Durability::Immediate)?;
        if let Some(s) = store::current_stream(dir, &db).await? {
            return Err(format!(
                "the store at {} already holds stream {s}: start from a checkpoint into a new one",
                dir.display()
            )
            .into());
        }
    }
    let stream = match stream {
        Some(s) => s,
        None => {
            let block = source.get(cid).await?.ok_or_else(|| format!("{cid}: not found"))?;
            let cp = Checkpoint::from_block(&block)?.ok_or_else(|| format!("{cid}: not a checkpoint event"))?;
            let flagged = cp.flagged_entries(source, ReplicaConfig::default().max_flagged_entries).await?;
            flagged
                .iter()
                .find(|e| e.height == 0)
                .map(|e| e.cid)
                .ok_or_else(|| format!("{cid}: its flagged tree names no genesis"))?
        }
    };
    let db = Arc::new(store::create_db(dir, Durability::Immediate)?);
    let (here, fetched) = Replica::bootstrap(db, source, &stream, cid, &[*cid], Default::default()).await?;
    store::set_stream(dir, &stream)?;
    writeln!(
        out,
        "started from checkpoint {}: {} blocks, {} bytes fetched, each hashed; the {} events below it are not",
        short_cid(cid),
        fetched.blocks,
        fetched.bytes,
        fetched.checkpoint.count
    )?;
    Ok((here, fetched.checkpoint))
}

async fn sync(dir: &Path, other: &Path, from_checkpoint: Option<&str>, out: &mut dyn Write) -> Result<()> {
    let same = match (dir.canonicalize(), other.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(format!("{} is this store: sync needs another one", other.display()).into());
    }
    let (mut here, checkpoint) = match from_checkpoint {
        Some(cp) => {
            let (here, cp) = start_from_checkpoint(dir, other, cp, out).await?;
            (here, Some(cp))
        }
        None => (store::open(dir).await?, None),
    };
    let other_db = store::open_db(other, Durability::Immediate)?;
    let their_stream = store::current_stream(other, &other_db).await?;
    let mut there = match their_stream {
        Some(s) if s == *here.stream_id() => Replica::open(Arc::new(other_db), &s, Default::default()).await?,
        Some(s) => {
            return Err(
                format!("{} holds stream {s}, this store holds stream {}", other.display(), here.stream_id()).into()
            );
        }
        None => return Err(format!("the store at {} holds no stream", other.display()).into()),
    };
    let (before_here, before_there) = (here.len(), there.len());
    let mut done = reconcile(&mut here, &mut there).await?;
    // Events concurrent with the checkpoint wait for their parents below
    // its cut: look those up in its skeleton, then sync again.
    if let Some(cp) = &checkpoint {
        let late = here.admit_late(cp, there.store().as_ref()).await?;
        if late.anchored + late.outside > 0 {
            let more = reconcile(&mut here, &mut there).await?;
            done.rounds += more.rounds;
            for (total, more) in [(&mut done.here, more.here), (&mut done.there, more.there)] {
                total.messages_sent += more.messages_sent;
                total.bytes_sent += more.bytes_sent;
            }
            (done.unavailable_here, done.unavailable_there) = (more.unavailable_here, more.unavailable_there);
        }
    }
    let Reconciled { rounds, here: here_stats, there: there_stats, unavailable_here, unavailable_there } = done;
    let messages = here_stats.messages_sent + there_stats.messages_sent;
    let (sent, received) = (here_stats.bytes_sent, there_stats.bytes_sent);
    let equal = here.heads() == there.heads();
    writeln!(
        out,
        "synced with {} in {rounds} round trip{}: {messages} messages, {} bytes ({sent} sent, {received} received)",
        other.display(),
        if rounds == 1 { "" } else { "s" },
        sent + received
    )?;
    writeln!(out, "here:  +{} events, now {} events", here.len() - before_here, here.len())?;
    writeln!(out, "there: +{} events, now {} events", there.len() - before_there, there.len())?;
    let heads: Vec<String> = here.heads().iter().map(short_cid).collect();
    writeln!(out, "heads: {} ({})", heads.join(" "), if equal { "the same on both" } else { "DIFFERENT" })?;
    for (side, gone, pruner) in
        [("here", &unavailable_here, "the store there"), ("there", &unavailable_there, "the store here")]
    {
        if !gone.is_empty() {
            writeln!(out, "{}", unavailable_line(side, pruner, gone))?;
        }
    }
    if !equal {
        let gone = unavailable_here.len() + unavailable_there.len();
        if gone > 0 {
            return Err(format!(
                "the stores did not converge: {} pruned where {} asked for",
                events(gone),
                if gone == 1 { "it was" } else { "they were" }
            )
            .into());
        }
        return Err("the stores did not converge".into());
    }
    Ok(())
}

/// "1 event", "4 events".
pub(crate) fn events(n: usize) -> String {
    format!("{n} event{}", if n == 1 { "" } else { "s" })
}

/// The line that names the events `side` lacks and `pruner` pruned (the
/// first five, short).
pub(crate) fn unavailable_line(side: &str, pruner: &str, gone: &[Cid]) -> String {
    let shown: Vec<String> = gone.iter().take(5).map(short_cid).collect();
    let more = if gone.len() > 5 { format!(" and {} more", gone.len() - 5) } else { String::new() };
    format!(
        "unavailable {side}: {} {pruner} pruned ({}{more}); fetch them elsewhere or start from a checkpoint",
        events(gone.len()),
        shown.join(" ")
    )
}

/// What `reconcile` did: round trips, each side's counters, and the events
/// each side still lacks that the other said it pruned.
struct Reconciled {
    rounds: u32,
    here: SessionStats,
    there: SessionStats,
    unavailable_here: Vec<Cid>,
    unavailable_there: Vec<Cid>,
}

/// The two sides of `sync --with`, as their session drivers name each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Here,
    There,
}

/// Most round trips `sync --with` makes before it gives up.
const MAX_ROUNDS: u32 = 1000;

/// Reconciles two local replicas through two session drivers, one per side,
/// as two processes would over a lossless wire: each connects the other,
/// ticks, and every message is delivered and answered until both are quiet.
/// Round trips are passes in which messages moved both ways.
async fn reconcile(here: &mut Local, there: &mut Local) -> Result<Reconciled> {
    // Nothing is lost in-process: no timeouts, and no anti-entropy in one call.
    let config = SessionConfig { timeout: None, anti_entropy: None, ..SessionConfig::default() };
    let (mut a, mut b) = (Sessions::new(config.clone()), Sessions::new(config));
    let now = Duration::ZERO;
    a.connect(Side::There, now);
    b.connect(Side::Here, now);
    let mut rounds = 0;
    loop {
        let mut to_there: Vec<Vec<u8>> = a.tick(here, now).await?.messages.into_iter().map(|m| m.message).collect();
        let mut to_here: Vec<Vec<u8>> = b.tick(there, now).await?.messages.into_iter().map(|m| m.message).collect();
        if to_there.is_empty() && to_here.is_empty() {
            return Ok(Reconciled {
                rounds,
                here: a.stats(),
                there: b.stats(),
                unavailable_here: a.unavailable(here),
                unavailable_there: b.unavailable(there),
            });
        }
        while !to_there.is_empty() || !to_here.is_empty() {
            rounds += 1;
            if rounds > MAX_ROUNDS {
                return Err(format!("sync did not settle in {MAX_ROUNDS} round trips").into());
            }
            for m in std::mem::take(&mut to_there) {
                to_here.extend(b.receive(there, &Side::Here, &m, now).await?.reply);
            }
            for m in std::mem::take(&mut to_here) {
                to_there.extend(a.receive(here, &Side::There, &m, now).await?.reply);
            }
        }
    }
}
