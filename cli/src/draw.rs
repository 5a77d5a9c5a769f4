//! Pictures of a stream's DAG: laid out in layers by height (one column per
//! height, oldest on the left), short CIDs, heads marked, as SVG (drawn here,
//! no Graphviz needed), Graphviz DOT or a Mermaid flow chart.
//!
//! Big DAGs are cut to a readable window: the last `max_layers` layers and at
//! most `max_rows` events per layer (heads first); the picture says so.
//!
//! Events the replicas refused (not in the DAG: the demo's revoked writer's)
//! can be added beside it ([`add_refused`]), drawn dashed red.

use std::collections::HashMap;
use std::fmt::Write as _;

use merkle_clock::replica::Replica;
use merkle_clock::{Block, Cid, Event, EventId, Ipld, StreamStore, short_cid};

use crate::{Result, json};

/// What to draw and how much of it.
#[derive(Debug, Clone)]
pub struct Options {
    /// The most layers (heights) drawn: the latest ones.
    pub max_layers: usize,
    /// The most events drawn per layer.
    pub max_rows: usize,
    /// Colour events by the value of this payload key (payloads that are maps).
    pub color_by: Option<String>,
    /// A title; by default one naming the stream.
    pub title: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options { max_layers: 40, max_rows: 12, color_by: None, title: None }
    }
}

/// One event in the picture.
#[derive(Debug, Clone)]
pub struct Node {
    pub cid: Cid,
    pub height: u64,
    /// Visible parents, as indices into [`Picture::nodes`].
    pub parents: Vec<usize>,
    /// Parents left out of the window (in earlier layers).
    pub cut_parents: usize,
    pub head: bool,
    pub genesis: bool,
    /// Not in the DAG: an event the replicas refused ([`add_refused`]).
    pub refused: bool,
    /// Index into [`Picture::groups`].
    pub group: Option<usize>,
    /// The payload as one line of JSON (shortened), for tooltips.
    pub payload: String,
}

/// A layer: the events of one height that are drawn, and how many are not.
#[derive(Debug, Clone)]
pub struct Layer {
    pub height: u64,
    pub nodes: Vec<usize>,
    pub hidden: usize,
}

/// A window on a DAG, ready to render.
#[derive(Debug, Clone)]
pub struct Picture {
    pub title: String,
    pub notes: Vec<String>,
    pub nodes: Vec<Node>,
    pub layers: Vec<Layer>,
    pub groups: Vec<String>,
    pub color_by: Option<String>,
}

/// Builds the picture of a replica's DAG.
pub async fn build<S: ?Sized + StreamStore>(replica: &Replica<S>, opts: &Options) -> Result<Picture> {
    let dag = replica.dag();
    let total_events = dag.len();
    let heads = dag.heads();
    let order: Vec<EventId> = dag.order().collect();
    let max_height = order.last().map_or(0, |id| dag.height(*id));
    let total_layers = max_height + 1;
    let shown_layers = (opts.max_layers.max(1) as u64).min(total_layers);
    let min_height = total_layers - shown_layers;

    // The window: per layer, heads first, then the rest in the total order.
    let mut by_layer: Vec<Vec<EventId>> = vec![Vec::new(); shown_layers as usize];
    for &id in order.iter().filter(|id| dag.height(**id) >= min_height) {
        by_layer[(dag.height(id) - min_height) as usize].push(id);
    }
    let is_head = |id: EventId| heads.binary_search(&dag.cid(id)).is_ok();
    let mut layers = Vec::with_capacity(by_layer.len());
    let mut index: HashMap<EventId, usize> = HashMap::new();
    let mut ids: Vec<EventId> = Vec::new();
    for (i, mut members) in by_layer.into_iter().enumerate() {
        members.sort_by_key(|id| !is_head(*id)); // stable: heads first, then the order
        let hidden = members.len().saturating_sub(opts.max_rows.max(1));
        members.truncate(opts.max_rows.max(1));
        members.sort_by_key(|id| dag.key(*id));
        let mut nodes = Vec::with_capacity(members.len());
        for id in members {
            index.insert(id, ids.len());
            nodes.push(ids.len());
            ids.push(id);
        }
        layers.push(Layer { height: min_height + i as u64, nodes, hidden });
    }

    // Payloads of the events drawn, for colours and tooltips.
    let cids: Vec<Cid> = ids.iter().map(|id| dag.cid(*id)).collect();
    let blocks = replica.store().get_many(&cids).await?;
    let mut groups: Vec<String> = Vec::new();
    let mut nodes = Vec::with_capacity(ids.len());
    for ((&id, cid), block) in ids.iter().zip(&cids).zip(blocks) {
        let payload = match &block {
            Some(b) => Event::<Ipld>::decode(b).map(|e| e.into_payload()).ok(),
            None => None,
        };
        let group = group_of(opts.color_by.as_deref(), payload.as_ref(), &mut groups);
        let mut parents = Vec::new();
        let mut cut_parents = 0;
        for p in dag.parents(id) {
            match index.get(&p) {
                Some(&i) => parents.push(i),
                None if dag.height(p) < min_height => cut_parents += 1,
                None => {} // hidden by the row cap
            }
        }
        nodes.push(Node {
            cid: *cid,
            height: dag.height(id),
            parents,
            cut_parents,
            head: is_head(id),
            genesis: id == EventId::GENESIS,
            refused: false,
            group,
            payload: tooltip(payload.as_ref()),
        });
    }

    // Legend order: by name, numbers by value (n2 before n10).
    let mut sorted: Vec<usize> = (0..groups.len()).collect();
    sorted.sort_by(|a, b| natural(&groups[*a]).cmp(&natural(&groups[*b])));
    let mut rank = vec![0; groups.len()];
    for (r, &g) in sorted.iter().enumerate() {
        rank[g] = r;
    }
    for n in &mut nodes {
        n.group = n.group.map(|g| rank[g]);
    }
    let groups: Vec<String> = sorted.into_iter().map(|g| groups[g].clone()).collect();

    let title = opts.title.clone().unwrap_or_else(|| {
        format!(
            "stream {} · {} events · {} head{}",
            short_cid(replica.stream_id()),
            total_events,
            heads.len(),
            if heads.len() == 1 { "" } else { "s" }
        )
    });
    let mut notes = Vec::new();
    if shown_layers < total_layers {
        notes.push(format!(
            "showing the last {shown_layers} of {total_layers} layers (heights {min_height}–{max_height})"
        ));
    }
    let hidden: usize = layers.iter().map(|l| l.hidden).sum();
    if hidden > 0 {
        notes.push(format!("{hidden} events left out: at most {} per layer, heads first", opts.max_rows));
    }
    Ok(Picture { title, notes, nodes, layers, groups, color_by: opts.color_by.clone() })
}

/// The group (colour) of a payload: the value of its `key`, as an index
/// into `groups` (added there if new).
fn group_of(key: Option<&str>, payload: Option<&Ipld>, groups: &mut Vec<String>) -> Option<usize> {
    let group = match (key, payload) {
        (Some(key), Some(Ipld::Map(m))) => m.get(key).map(|v| match v {
            Ipld::String(s) => s.clone(),
            other => json::compact(other),
        }),
        _ => None,
    }?;
    Some(match groups.iter().position(|x| *x == group) {
        Some(i) => i,
        None => {
            groups.push(group);
            groups.len() - 1
        }
    })
}

/// A payload as one line of JSON, shortened, for tooltips.
fn tooltip(payload: Option<&Ipld>) -> String {
    let mut text = payload.map(json::compact).unwrap_or_default();
    if text.chars().count() > 160 {
        text = text.chars().take(157).collect::<String>() + "...";
    }
    text
}

/// Adds events the replicas refused (not in the DAG the picture shows), each
/// beside its parents, drawn dashed red. An event that is not a canonical
/// event, or whose layer is left of the window, is left out.
pub fn add_refused(p: &mut Picture, blocks: &[Block]) {
    let mut added = 0;
    for block in blocks {
        let Ok(event) = Event::<Ipld>::decode(block) else { continue };
        let height = event.height();
        let (Some(first), Some(last)) = (p.layers.first(), p.layers.last()) else { return };
        let (min_height, last_height) = (first.height, last.height);
        if height < min_height || height > last_height + 1 {
            continue;
        }
        if height == last_height + 1 {
            p.layers.push(Layer { height, nodes: Vec::new(), hidden: 0 });
        }
        let mut parents = Vec::new();
        let mut cut_parents = 0;
        for parent in event.parents() {
            match p.nodes.iter().position(|n| n.cid == *parent) {
                Some(i) => parents.push(i),
                None => cut_parents += 1,
            }
        }
        let group = group_of(p.color_by.as_deref(), Some(event.payload()), &mut p.groups);
        let i = p.nodes.len();
        p.nodes.push(Node {
            cid: *block.cid(),
            height,
            parents,
            cut_parents,
            head: false,
            genesis: false,
            refused: true,
            group,
            payload: tooltip(Some(event.payload())),
        });
        p.layers[(height - min_height) as usize].nodes.push(i);
        added += 1;
    }
    if added > 0 {
        p.notes.push(format!("{added} events dashed red: refused by the replicas, in no replica's DAG"));
    }
}

/// A sort key that orders the digit runs of a text by value.
fn natural(text: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if !digits.is_empty() {
                out.push((std::mem::take(&mut word), digits.parse().unwrap_or(u64::MAX)));
                digits.clear();
            }
            word.push(c);
        }
    }
    out.push((word, digits.parse().unwrap_or(0)));
    out
}

// ---------------------------------------------------------------- layout

/// Row positions (in units of rows, centred on 0) that keep edges short:
/// barycentre sweeps down and up the layers, ties broken by the total order.
fn rows(p: &Picture) -> Vec<f64> {
    let mut y = vec![0.0; p.nodes.len()];
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); p.nodes.len()];
    for (i, n) in p.nodes.iter().enumerate() {
        for &q in &n.parents {
            children[q].push(i);
        }
    }
    let mut order: Vec<Vec<usize>> = p.layers.iter().map(|l| l.nodes.clone()).collect();
    let place = |layer: &[usize], y: &mut [f64]| {
        let k = layer.len() as f64;
        for (r, &n) in layer.iter().enumerate() {
            y[n] = r as f64 - (k - 1.0) / 2.0;
        }
    };
    for layer in &order {
        place(layer, &mut y);
    }
    let sweep = |order: &mut Vec<Vec<usize>>, y: &mut Vec<f64>, down: bool| {
        let idx: Vec<usize> =
            if down { (1..order.len()).collect() } else { (0..order.len().saturating_sub(1)).rev().collect() };
        for li in idx {
            let layer = &mut order[li];
            let keys: HashMap<usize, f64> = layer
                .iter()
                .map(|&n| {
                    let near: &[usize] = if down { &p.nodes[n].parents } else { &children[n] };
                    let key = if near.is_empty() {
                        y[n]
                    } else {
                        near.iter().map(|&q| y[q]).sum::<f64>() / near.len() as f64
                    };
                    (n, key)
                })
                .collect();
            layer.sort_by(|a, b| keys[a].total_cmp(&keys[b]).then(a.cmp(b)));
            place(layer, y);
        }
    };
    sweep(&mut order, &mut y, true);
    sweep(&mut order, &mut y, false);
    sweep(&mut order, &mut y, true);
    y
}

const PALETTE: [&str; 10] =
    ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#e15759", "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#bab0ac"];
const NEUTRAL: (&str, &str) = ("#f2f2f2", "#8c8c8c");
/// The stroke of refused events and of the edges into them.
const REFUSED: &str = "#d62728";

/// The fill (a light tint) and stroke of a group's colour.
fn colors(group: Option<usize>) -> (String, String) {
    match group {
        None => (NEUTRAL.0.to_string(), NEUTRAL.1.to_string()),
        Some(g) => {
            let stroke = PALETTE[g % PALETTE.len()];
            let hex = |i: usize| u8::from_str_radix(&stroke[i..i + 2], 16).unwrap_or(0);
            let tint = |c: u8| 255 - ((255 - u32::from(c)) * 30 / 100) as u8;
            (format!("#{:02x}{:02x}{:02x}", tint(hex(1)), tint(hex(3)), tint(hex(5))), stroke.to_string())
        }
    }
}

fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------- SVG

const COL_W: f64 = 136.0;
const NODE_W: f64 = 104.0;
const NODE_H: f64 = 28.0;
const ROW_H: f64 = 52.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 32.0;

/// The picture as an SVG document.
pub fn svg(p: &Picture) -> String {
    let y = rows(p);
    let max_rows = p.layers.iter().map(|l| l.nodes.len()).max().unwrap_or(1).max(1) as f64;
    let top = 84.0 + 18.0 * p.notes.len() as f64;
    let band = max_rows * ROW_H;
    let legend_h = 40.0;
    let ncols = p.layers.len().max(1) as f64;
    let width = (LEFT + (ncols - 1.0) * COL_W + NODE_W + RIGHT).max(560.0);
    let height = top + band + 24.0 + legend_h;
    let mid = top + band / 2.0;
    let col_of: HashMap<u64, usize> = p.layers.iter().enumerate().map(|(i, l)| (l.height, i)).collect();
    let pos = |i: usize| {
        let n = &p.nodes[i];
        let x = LEFT + col_of[&n.height] as f64 * COL_W;
        (x, mid + y[i] * ROW_H - NODE_H / 2.0)
    };

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(s, "<title>{}</title>", xml(&p.title));
    s.push_str(concat!(
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\">",
        "<path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#9a9a9a\"/></marker></defs>\n"
    ));
    let _ = writeln!(s, r##"<rect x="0" y="0" width="{width:.0}" height="{height:.0}" fill="#ffffff"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="30" font-size="17" font-weight="bold" fill="#222">{}</text>"##,
        xml(&p.title)
    );
    for (i, note) in p.notes.iter().enumerate() {
        let _ = writeln!(
            s,
            r##"<text x="{LEFT}" y="{:.0}" font-size="12" font-style="italic" fill="#b35900">{}</text>"##,
            50.0 + 18.0 * i as f64,
            xml(note)
        );
    }
    // The height axis.
    let axis_y = top - 22.0;
    for (i, layer) in p.layers.iter().enumerate() {
        let x = LEFT + i as f64 * COL_W + NODE_W / 2.0;
        let _ = writeln!(
            s,
            r##"<text x="{x:.1}" y="{axis_y:.0}" font-size="11" fill="#777" text-anchor="middle">h{}</text>"##,
            layer.height
        );
        if layer.hidden > 0 {
            let _ = writeln!(
                s,
                r##"<text x="{x:.1}" y="{:.0}" font-size="11" fill="#b35900" text-anchor="middle">+{} more</text>"##,
                top + band + 14.0,
                layer.hidden
            );
        }
    }

    // Edges first, under the nodes. Each edge gets its own port on the
    // sides of its nodes, in the order of the other ends, so that arrows
    // into one node do not pile up.
    let port = |k: usize, j: usize| {
        let step = (NODE_H - 10.0) / (k.max(2) - 1) as f64;
        (j as f64 - (k as f64 - 1.0) / 2.0) * step.min(6.0)
    };
    let mut out_port: HashMap<(usize, usize), f64> = HashMap::new();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); p.nodes.len()];
    for (i, n) in p.nodes.iter().enumerate() {
        for &q in &n.parents {
            children[q].push(i);
        }
    }
    for (q, kids) in children.iter_mut().enumerate() {
        kids.sort_by(|a, b| y[*a].total_cmp(&y[*b]).then(a.cmp(b)));
        for (j, &c) in kids.iter().enumerate() {
            out_port.insert((q, c), port(kids.len(), j));
        }
    }
    s.push_str("<g fill=\"none\" stroke=\"#9a9a9a\" stroke-width=\"1.3\">\n");
    for (i, n) in p.nodes.iter().enumerate() {
        let (cx, cy) = pos(i);
        let mut parents = n.parents.clone();
        parents.sort_by(|a, b| y[*a].total_cmp(&y[*b]).then(a.cmp(b)));
        for (j, &q) in parents.iter().enumerate() {
            let (x2, y2) = (cx - 2.0, cy + NODE_H / 2.0 + port(parents.len(), j));
            let (px, py) = pos(q);
            let (x1, y1) = (px + NODE_W, py + NODE_H / 2.0 + out_port.get(&(q, i)).copied().unwrap_or(0.0));
            let dx = ((x2 - x1) / 2.0).max(12.0);
            let style =
                if n.refused { format!(r#" stroke="{REFUSED}" stroke-dasharray="5 3""#) } else { String::new() };
            let _ = writeln!(
                s,
                r#"<path d="M {x1:.1} {y1:.1} C {:.1} {y1:.1}, {:.1} {y2:.1}, {x2:.1} {y2:.1}"{style} marker-end="url(#arrow)"/>"#,
                x1 + dx,
                x2 - dx
            );
        }
        if n.cut_parents > 0 {
            let (x2, y2) = (cx - 2.0, cy + NODE_H / 2.0);
            let x1 = (cx - COL_W + NODE_W).max(6.0);
            let _ = writeln!(
                s,
                r#"<path d="M {:.1} {y2:.1} L {x2:.1} {y2:.1}" stroke-dasharray="4 3" marker-end="url(#arrow)"/>"#,
                x1.min(x2 - 14.0)
            );
        }
    }
    s.push_str("</g>\n");

    // Nodes.
    for (i, n) in p.nodes.iter().enumerate() {
        let (x, y0) = pos(i);
        let (fill, stroke) = colors(n.group);
        let (sw, stroke) = match (n.head, n.refused) {
            (true, _) => (3.0, "#111111".to_string()),
            (_, true) => (2.5, REFUSED.to_string()),
            _ => (1.5, stroke),
        };
        let dash = if n.refused { r#" stroke-dasharray="5 3""# } else { "" };
        let mut tip = format!("{}\nheight {}", n.cid, n.height);
        if n.head {
            tip.push_str("\nhead");
        }
        if n.refused {
            tip.push_str("\nrefused by the replicas: its author was revoked in its past");
        }
        if !n.payload.is_empty() {
            let _ = write!(tip, "\npayload {}", n.payload);
        }
        let _ = writeln!(s, "<g><title>{}</title>", xml(&tip));
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="{y0:.1}" width="{NODE_W}" height="{NODE_H}" rx="7" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"{dash}/>"#
        );
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="12.5" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" fill="#222" text-anchor="middle">{}</text>"##,
            x + NODE_W / 2.0,
            y0 + NODE_H / 2.0 + 4.5,
            xml(&short_cid(&n.cid))
        );
        if n.head {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" font-size="10.5" font-weight="bold" fill="#111" text-anchor="middle">HEAD</text>"##,
                x + NODE_W / 2.0,
                y0 - 4.0
            );
        }
        if n.genesis {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" font-size="10.5" font-weight="bold" fill="#555" text-anchor="middle">genesis</text>"##,
                x + NODE_W / 2.0,
                y0 + NODE_H + 13.0
            );
        }
        if n.refused {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" font-size="10.5" font-weight="bold" fill="{REFUSED}" text-anchor="middle">REFUSED</text>"##,
                x + NODE_W / 2.0,
                y0 - 4.0
            );
        }
        s.push_str("</g>\n");
    }

    // Legend.
    let ly = height - legend_h / 2.0;
    let mut lx = LEFT;
    let _ = writeln!(
        s,
        r##"<rect x="{lx:.1}" y="{:.1}" width="22" height="14" rx="4" fill="#ffffff" stroke="#111" stroke-width="3"/>"##,
        ly - 10.0
    );
    let _ = writeln!(s, r##"<text x="{:.1}" y="{:.1}" font-size="12" fill="#333">head</text>"##, lx + 28.0, ly + 1.5);
    lx += 80.0;
    if p.nodes.iter().any(|n| n.refused) {
        let _ = writeln!(
            s,
            r##"<rect x="{lx:.1}" y="{:.1}" width="22" height="14" rx="4" fill="#ffffff" stroke="{REFUSED}" stroke-width="2.5" stroke-dasharray="5 3"/>"##,
            ly - 10.0
        );
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="12" fill="#333">refused</text>"##,
            lx + 28.0,
            ly + 1.5
        );
        lx += 90.0;
    }
    let _ = writeln!(
        s,
        r##"<text x="{lx:.1}" y="{:.1}" font-size="12" fill="#333">parent → child · column = height</text>"##,
        ly + 1.5
    );
    lx += 220.0;
    if let Some(key) = &p.color_by
        && !p.groups.is_empty()
    {
        let _ =
            writeln!(s, r##"<text x="{lx:.1}" y="{:.1}" font-size="12" fill="#333">{}:</text>"##, ly + 1.5, xml(key));
        lx += 10.0 + 7.5 * key.chars().count() as f64;
        for (g, name) in p.groups.iter().enumerate() {
            let (fill, stroke) = colors(Some(g));
            let _ = writeln!(
                s,
                r#"<rect x="{lx:.1}" y="{:.1}" width="14" height="14" rx="3" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>"#,
                ly - 10.0
            );
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" font-size="12" fill="#333">{}</text>"##,
                lx + 19.0,
                ly + 1.5,
                xml(name)
            );
            lx += 30.0 + 7.5 * name.chars().count() as f64;
        }
    }
    s.push_str("</svg>\n");
    s
}

// ---------------------------------------------------------------- DOT

/// The picture as a Graphviz DOT graph.
pub fn dot(p: &Picture) -> String {
    let q = |t: &str| t.replace('\\', "\\\\").replace('"', "\\\"");
    let mut s = String::from("digraph merkle_clock {\n");
    let mut label = p.title.clone();
    for n in &p.notes {
        label.push_str("\\n");
        label.push_str(n);
    }
    let _ = writeln!(s, "  label=\"{}\";\n  labelloc=t;\n  rankdir=LR;", q(&label).replace("\\\\n", "\\n"));
    s.push_str("  node [shape=box, style=\"rounded,filled\", fontname=\"monospace\", fillcolor=\"#f2f2f2\"];\n");
    s.push_str("  edge [color=\"#9a9a9a\"];\n");
    for (i, n) in p.nodes.iter().enumerate() {
        let (fill, stroke) = colors(n.group);
        let (stroke, pen) = if n.head { ("#111111".to_string(), 3) } else { (stroke, 1) };
        let mut attrs = format!(
            "label=\"{}\\nh{}\", fillcolor=\"{fill}\", color=\"{stroke}\", penwidth={pen}",
            q(&short_cid(&n.cid)),
            n.height
        );
        if n.head {
            attrs.push_str(", xlabel=\"head\"");
        }
        if n.genesis {
            attrs.push_str(", xlabel=\"genesis\"");
        }
        if n.refused {
            let _ = write!(attrs, ", style=\"rounded,filled,dashed\", color=\"{REFUSED}\", xlabel=\"refused\"");
        }
        let _ = writeln!(s, "  e{i} [{attrs}, tooltip=\"{}\"];", n.cid);
    }
    for (i, n) in p.nodes.iter().enumerate() {
        for &par in &n.parents {
            let _ = writeln!(s, "  e{par} -> e{i};");
        }
    }
    for layer in &p.layers {
        let members: Vec<String> = layer.nodes.iter().map(|i| format!("e{i}")).collect();
        let _ = writeln!(s, "  {{ rank=same; {} }}  // h{}", members.join("; "), layer.height);
    }
    s.push_str("}\n");
    s
}

// ---------------------------------------------------------------- Mermaid

/// The picture as a Mermaid flow chart.
pub fn mermaid(p: &Picture) -> String {
    let q = |t: &str| t.replace('"', "#quot;");
    let mut s = String::new();
    let _ = writeln!(s, "---\ntitle: \"{}\"\n---", q(&p.title));
    s.push_str("flowchart LR\n");
    for n in &p.notes {
        let _ = writeln!(s, "  %% {n}");
    }
    for (i, n) in p.nodes.iter().enumerate() {
        let mut label = format!("{}<br/>h{}", short_cid(&n.cid), n.height);
        if n.genesis {
            label.push_str(" genesis");
        }
        if n.head {
            label.push_str(" HEAD");
        }
        if n.refused {
            label.push_str(" REFUSED");
        }
        let _ = writeln!(s, "  e{i}[\"{}\"]", q(&label));
    }
    for (i, n) in p.nodes.iter().enumerate() {
        for &par in &n.parents {
            let _ = writeln!(s, "  e{par} --> e{i}");
        }
    }
    for g in 0..p.groups.len() {
        let (fill, stroke) = colors(Some(g));
        let _ = writeln!(s, "  classDef g{g} fill:{fill},stroke:{stroke}");
        let members: Vec<String> =
            p.nodes.iter().enumerate().filter(|(_, n)| n.group == Some(g)).map(|(i, _)| format!("e{i}")).collect();
        let _ = writeln!(s, "  class {} g{g}", members.join(","));
    }
    for (i, n) in p.nodes.iter().enumerate() {
        if n.head {
            let _ = writeln!(s, "  style e{i} stroke:#111,stroke-width:3px");
        }
        if n.refused {
            let _ = writeln!(s, "  style e{i} stroke:{REFUSED},stroke-width:2px,stroke-dasharray:5 3");
        }
    }
    s
}
