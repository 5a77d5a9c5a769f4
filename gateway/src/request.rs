//! What a request asks for: the CID, the response format and the DAG scope,
//! from the path, the query and the `Accept` header; or why it cannot be
//! answered. Pure functions, no I/O.

use hyper::header::{ACCEPT, CACHE_CONTROL, HeaderMap};
use hyper::{Method, StatusCode, Uri};
use merkle_clock::Cid;

/// The media type of a single raw block.
pub const RAW: &str = "application/vnd.ipld.raw";
/// The media type of a CAR stream.
pub const CAR: &str = "application/vnd.ipld.car";

/// The two response formats a trustless gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/vnd.ipld.raw`: the block's bytes.
    Raw,
    /// `application/vnd.ipld.car; version=1; order=dfs; dups=n`.
    Car,
}

/// Which blocks a CAR response holds (`dag-scope`).
///
/// `entity` is `block` for DAG-CBOR events (the spec says so for anything
/// that is not UnixFS), so a request for it gets `Block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DagScope {
    /// Only the requested block.
    Block,
    /// The requested event and every ancestor: the stream as of that event.
    All,
}

impl DagScope {
    /// The query value.
    pub fn as_str(self) -> &'static str {
        match self {
            DagScope::Block => "block",
            DagScope::All => "all",
        }
    }
}

/// A request the gateway can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Want {
    pub cid: Cid,
    pub format: Format,
    pub scope: DagScope,
    /// `GET` (a body) or `HEAD` (headers only).
    pub head: bool,
    /// `Cache-Control: only-if-cached`: a missing root is 412, not 404.
    pub only_if_cached: bool,
    /// The format came from `Accept`, not from `?format=`.
    pub negotiated: bool,
}

/// A request the gateway refuses, with the status and a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub reason: String,
}

fn refuse(status: StatusCode, reason: impl Into<String>) -> Refusal {
    Refusal { status, reason: reason.into() }
}

/// Reads a request. Order of checks: method, path, CID, format, CAR
/// parameters, scope.
pub(crate) fn parse(method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<Want, Refusal> {
    let head = match *method {
        Method::GET => false,
        Method::HEAD => true,
        _ => return Err(refuse(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD")),
    };
    let path = uri.path();
    let Some(rest) = path.strip_prefix("/ipfs/") else {
        if path.starts_with("/ipns/") {
            return Err(refuse(StatusCode::NOT_IMPLEMENTED, "IPNS is not served here; ask for /ipfs/{cid}"));
        }
        return Err(refuse(StatusCode::NOT_FOUND, "not found; this gateway serves /ipfs/{cid}"));
    };
    let (cid_text, sub_path) = match rest.split_once('/') {
        Some((cid, sub)) => (cid, sub.trim_matches('/')),
        None => (rest, ""),
    };
    let cid = Cid::try_from(cid_text).map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("invalid CID: {e}")))?;
    let query: Vec<(&str, &str)> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    let param = |name: &str| query.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| *v);

    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let offered = accepted(accept);
    let (format, negotiated) = match param("format") {
        Some("raw") => (Format::Raw, false),
        Some("car") => (Format::Car, false),
        Some(other) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!("format={other} is not served; use format=raw or format=car"),
            ));
        }
        None => match offered.iter().find_map(|m| m.format()) {
            Some(f) => (f, true),
            None if offered.iter().all(MediaRange::is_wildcard) => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "a trustless gateway answers only verifiable responses: ask for ?format=raw or ?format=car, or Accept: {RAW} or {CAR}"
                    ),
                ));
            }
            None => {
                return Err(refuse(
                    StatusCode::NOT_ACCEPTABLE,
                    format!(
                        "none of the accepted types is served; this gateway serves {RAW} and {CAR}; version=1; order=dfs; dups=n"
                    ),
                ));
            }
        },
    };
    let scope = match format {
        Format::Raw => {
            if !sub_path.is_empty() {
                return Err(refuse(StatusCode::BAD_REQUEST, "a raw block is requested by CID alone: /ipfs/{cid}"));
            }
            DagScope::Block
        }
        Format::Car => {
            if !sub_path.is_empty() {
                return Err(refuse(
                    StatusCode::NOT_IMPLEMENTED,
                    "content paths are not resolved here; ask for /ipfs/{cid}",
                ));
            }
            let from_accept = offered.iter().find(|m| m.format() == Some(Format::Car));
            let car_param = |query_name: &str, accept_name: &str| {
                param(query_name).or_else(|| from_accept.and_then(|m| m.param(accept_name)))
            };
            check_car_params(
                car_param("car-version", "version"),
                car_param("car-order", "order"),
                car_param("car-dups", "dups"),
            )?;
            match param("dag-scope") {
                Some("all") => DagScope::All,
                Some("block" | "entity") => DagScope::Block,
                // `entity-bytes` implies `entity`, and an event is no byte array: the range is ignored.
                None if param("entity-bytes").is_some() => DagScope::Block,
                None => DagScope::All,
                Some(other) => {
                    return Err(refuse(
                        StatusCode::BAD_REQUEST,
                        format!("dag-scope={other} is not one of block, entity, all"),
                    ));
                }
            }
        }
    };
    let only_if_cached = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("only-if-cached"));
    Ok(Want { cid, format, scope, head, only_if_cached, negotiated })
}

/// The CAR variants served: version 1, depth-first order, no duplicates.
fn check_car_params(version: Option<&str>, order: Option<&str>, dups: Option<&str>) -> Result<(), Refusal> {
    if let Some(v) = version
        && v != "1"
    {
        return Err(refuse(StatusCode::BAD_REQUEST, format!("CAR version {v} is not served (only version=1)")));
    }
    if let Some(o) = order
        && o != "dfs"
        && o != "unk"
    {
        return Err(refuse(StatusCode::BAD_REQUEST, format!("CAR order={o} is not served (only order=dfs)")));
    }
    if let Some(d) = dups
        && d != "n"
    {
        return Err(refuse(StatusCode::BAD_REQUEST, format!("CAR dups={d} is not served (only dups=n)")));
    }
    Ok(())
}

/// One entry of an `Accept` header.
#[derive(Debug, Clone, PartialEq)]
struct MediaRange<'a> {
    media: &'a str,
    params: Vec<(&'a str, &'a str)>,
    q: f32,
}

impl MediaRange<'_> {
    fn is_wildcard(&self) -> bool {
        self.media == "*/*" || self.media == "application/*"
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }

    /// The format this entry asks for, if it is one served in a variant served.
    fn format(&self) -> Option<Format> {
        if self.media.eq_ignore_ascii_case(RAW) {
            Some(Format::Raw)
        } else if self.media.eq_ignore_ascii_case(CAR) {
            check_car_params(self.param("version"), self.param("order"), self.param("dups")).ok()?;
            Some(Format::Car)
        } else {
            None
        }
    }
}

/// The entries of an `Accept` header with `q > 0`, most preferred first
/// (ties keep the header's order).
fn accepted(header: &str) -> Vec<MediaRange<'_>> {
    let mut out: Vec<MediaRange<'_>> = header
        .split(',')
        .filter_map(|entry| {
            let mut parts = entry.split(';').map(str::trim);
            let media = parts.next().filter(|m| !m.is_empty())?;
            let mut q = 1.0;
            let mut params = Vec::new();
            for p in parts {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                let (k, v) = (k.trim(), v.trim().trim_matches('"'));
                if k.eq_ignore_ascii_case("q") {
                    q = v.parse().unwrap_or(0.0);
                } else {
                    params.push((k, v));
                }
            }
            (q > 0.0).then_some(MediaRange { media, params, q })
        })
        .collect();
    out.sort_by(|a, b| b.q.total_cmp(&a.q));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    const CID: &str = "bafyr4ibebv3twrvyqxyqe2fo7m7ijzmn7hpfpmsv3olmabvzrp5mb2tpta";

    fn ask(method: Method, target: &str, accept: Option<&str>) -> Result<Want, Refusal> {
        let uri: Uri = target.parse().unwrap();
        let mut headers = HeaderMap::new();
        if let Some(a) = accept {
            headers.insert(ACCEPT, HeaderValue::from_str(a).unwrap());
        }
        parse(&method, &uri, &headers)
    }

    fn status(r: Result<Want, Refusal>) -> StatusCode {
        r.err().map_or(StatusCode::OK, |r| r.status)
    }

    #[test]
    fn format_parameter_wins_over_accept() {
        let w = ask(Method::GET, &format!("/ipfs/{CID}?format=raw"), Some(CAR)).unwrap();
        assert_eq!((w.format, w.negotiated), (Format::Raw, false));
        let w = ask(Method::HEAD, &format!("/ipfs/{CID}?format=car"), Some(RAW)).unwrap();
        assert_eq!((w.format, w.scope, w.head), (Format::Car, DagScope::All, true));
    }

    #[test]
    fn accept_is_negotiated_by_quality() {
        let w = ask(Method::GET, &format!("/ipfs/{CID}"), Some(&format!("{RAW};q=0.5, {CAR};version=1;order=dfs")))
            .unwrap();
        assert_eq!((w.format, w.negotiated), (Format::Car, true));
        // A CAR variant not served is skipped for the next entry.
        let w = ask(Method::GET, &format!("/ipfs/{CID}"), Some(&format!("{CAR};dups=y, {RAW};q=0.1"))).unwrap();
        assert_eq!(w.format, Format::Raw);
        assert_eq!(status(ask(Method::GET, &format!("/ipfs/{CID}"), Some("text/html"))), StatusCode::NOT_ACCEPTABLE);
        assert_eq!(status(ask(Method::GET, &format!("/ipfs/{CID}"), Some("*/*"))), StatusCode::BAD_REQUEST);
        assert_eq!(status(ask(Method::GET, &format!("/ipfs/{CID}"), None)), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn scopes_and_car_parameters() {
        let scope = |q: &str| ask(Method::GET, &format!("/ipfs/{CID}?format=car&{q}"), None).map(|w| w.scope);
        assert_eq!(scope("dag-scope=block").unwrap(), DagScope::Block);
        assert_eq!(scope("dag-scope=entity").unwrap(), DagScope::Block);
        assert_eq!(scope("entity-bytes=0:*").unwrap(), DagScope::Block);
        assert_eq!(scope("dag-scope=all").unwrap(), DagScope::All);
        assert_eq!(
            status(ask(Method::GET, &format!("/ipfs/{CID}?format=car&dag-scope=everything"), None)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(ask(Method::GET, &format!("/ipfs/{CID}?format=car&car-version=2"), None)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(ask(Method::GET, &format!("/ipfs/{CID}?format=car&car-dups=y"), None)),
            StatusCode::BAD_REQUEST
        );
        assert!(ask(Method::GET, &format!("/ipfs/{CID}?format=car&car-order=dfs&car-dups=n"), None).is_ok());
    }

    #[test]
    fn bad_paths_cids_and_methods() {
        assert_eq!(status(ask(Method::GET, "/ipfs/not-a-cid?format=raw", None)), StatusCode::BAD_REQUEST);
        assert_eq!(status(ask(Method::GET, &format!("/ipfs/{CID}/a/b?format=raw"), None)), StatusCode::BAD_REQUEST);
        assert_eq!(status(ask(Method::GET, &format!("/ipfs/{CID}/a?format=car"), None)), StatusCode::NOT_IMPLEMENTED);
        assert_eq!(status(ask(Method::GET, "/ipns/k51?format=raw", None)), StatusCode::NOT_IMPLEMENTED);
        assert_eq!(status(ask(Method::GET, "/", None)), StatusCode::NOT_FOUND);
        assert_eq!(status(ask(Method::POST, &format!("/ipfs/{CID}?format=raw"), None)), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(status(ask(Method::GET, &format!("/ipfs/{CID}?format=dag-json"), None)), StatusCode::BAD_REQUEST);
        // A trailing slash is no path.
        assert!(ask(Method::GET, &format!("/ipfs/{CID}/?format=raw"), None).is_ok());
    }
}
