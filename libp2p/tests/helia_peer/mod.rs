//! Runs Helia 7 (`tests/helia/bitswap.mjs`, with the Node 22 its package
//! pins) as a Bitswap client or server. Shared by `tests/helia.rs` and
//! `examples/bitswap_report.rs`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use merkle_clock::{Block, Cid};
use merkle_clock_libp2p::libp2p::Multiaddr;

/// `tests/helia` at the repository's root.
pub fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/helia")
}

/// The Node 22 binary `npm ci` installs in the package, if it is there.
pub fn node_binary() -> Option<PathBuf> {
    let node = package_dir().join("node_modules/node/bin/node");
    let helia = package_dir().join("node_modules/helia/package.json");
    (node.is_file() && helia.is_file()).then_some(node)
}

/// The Node 22 binary; without it, a loud skip on a workstation and a
/// failure in CI (`CI` set), where `.ci/run` installs the package first.
pub fn node_or_skip(test: &str) -> Option<PathBuf> {
    let node = node_binary();
    if node.is_none() {
        let msg = format!("{test}: Helia is not installed; run `npm ci` in {}", package_dir().display());
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("SKIPPED {msg}");
    }
    node
}

/// What `bitswap.mjs fetch` printed.
#[derive(Debug, Clone, Copy)]
pub struct HeliaFetch {
    pub blocks: u64,
    pub bytes: u64,
    pub seconds: f64,
}

fn field(json: &str, name: &str) -> f64 {
    let key = format!("\"{name}\":");
    let at = json.find(&key).unwrap_or_else(|| panic!("no {name} in {json}")) + key.len();
    let end = json[at..].find([',', '}']).map_or(json.len(), |e| at + e);
    json[at..end].trim().parse().unwrap_or_else(|_| panic!("bad {name} in {json}"))
}

/// Helia dials `addr` (with `/p2p/`) and fetches `cids` over Bitswap,
/// recomputing every CID. Panics with Helia's own words when it fails.
pub fn helia_fetch(node: &Path, addr: &Multiaddr, cids: &[Cid]) -> HeliaFetch {
    let list = tempfile::NamedTempFile::new().unwrap();
    let text: String = cids.iter().map(|c| format!("{c}\n")).collect();
    std::fs::write(list.path(), text).unwrap();
    let out = Command::new(node)
        .current_dir(package_dir())
        .arg("bitswap.mjs")
        .arg("fetch")
        .arg(addr.to_string())
        .arg(list.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Helia fetch failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).expect("a JSON line");
    assert!(line.contains("\"ok\":true"), "{line}");
    HeliaFetch {
        blocks: field(line, "blocks") as u64,
        bytes: field(line, "bytes") as u64,
        seconds: field(line, "seconds"),
    }
}

/// Helia serving the blocks of a CAR over Bitswap until dropped.
pub struct HeliaServer {
    child: Child,
    /// Its loopback address, with `/p2p/`.
    pub addr: Multiaddr,
}

impl HeliaServer {
    /// Writes `blocks` to a CAR, starts Helia on it and waits until it listens.
    pub fn start(node: &Path, root: Cid, blocks: &[Block]) -> HeliaServer {
        let car = tempfile::NamedTempFile::new().unwrap();
        merkle_clock::car::write_car(std::fs::File::create(car.path()).unwrap(), &[root], blocks).unwrap();
        let mut child = Command::new(node)
            .current_dir(package_dir())
            .arg("bitswap.mjs")
            .arg("serve")
            .arg(car.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("listening"), "Helia did not start: {line:?}");
        let addr = words.next().unwrap().parse().unwrap();
        assert_eq!(words.next().map(|n| n.parse::<usize>().unwrap()), Some(blocks.len()));
        HeliaServer { child, addr }
    }
}

impl Drop for HeliaServer {
    fn drop(&mut self) {
        // Closing stdin stops it; it is killed if it does not.
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.flush();
        }
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
