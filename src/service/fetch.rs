//! Fetching image data from a URL a user gave (the legacy `import` task), within
//! `[import_filtering_opts]` as Glance applies them: schemes, hosts and ports allowed or
//! disallowed, and never a loopback or link-local address unless its host is allowed by name.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use axum::http::Uri;
use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use crate::config::ImportFilter;

/// How many redirects a fetch follows, each checked against the filter.
const MAX_REDIRECTS: usize = 5;
const CHUNK: usize = 1 << 20;

/// A host as Glance compares it with its lists: an IP address in its standard form, or a name
/// that resolves. Shorthand and encoded addresses (`127.1`, `2130706433`) are refused.
fn normalize_host(host: &str) -> Option<String> {
    if let Ok(a) = host.parse::<Ipv4Addr>() {
        return Some(a.to_string());
    }
    if let Ok(a) = host.parse::<Ipv6Addr>() {
        return Some(a.to_string());
    }
    if host.is_empty() || host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let name = if host.ends_with('.') {
        host.to_string()
    } else {
        format!("{host}.")
    };
    (name.as_str(), 80).to_socket_addrs().ok()?;
    Some(host.to_string())
}

fn listed(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == value)
}

/// Whether `uri` passes the filter, resolved to an address that may be fetched.
pub fn passes(f: &ImportFilter, uri: &str) -> bool {
    check(f, uri).is_ok()
}

/// The addresses `uri` may be fetched from: its host resolved, less what the filter refuses.
fn check(f: &ImportFilter, uri: &str) -> Result<Vec<SocketAddr>, String> {
    let parsed: Uri = uri.parse().map_err(|_| format!("invalid URI: {uri}"))?;
    let scheme = parsed.scheme_str().unwrap_or_default();
    // An allowed list, when given, makes the disallowed one moot.
    let pick = |allowed: &[String], disallowed: &[String]| -> (Vec<String>, Vec<String>) {
        if !allowed.is_empty() {
            (allowed.to_vec(), Vec::new())
        } else {
            (Vec::new(), disallowed.to_vec())
        }
    };
    let (wl_s, bl_s) = pick(&f.allowed_schemes, &f.disallowed_schemes);
    if scheme.is_empty() || (!wl_s.is_empty() && !listed(&wl_s, scheme)) || listed(&bl_s, scheme) {
        return Err(format!("scheme not allowed for external URI: {uri}"));
    }
    let raw_host = parsed
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let (wl_h, bl_h) = pick(&f.allowed_hosts, &f.disallowed_hosts);
    let host = normalize_host(raw_host)
        .filter(|h| (wl_h.is_empty() || listed(&wl_h, h)) && !listed(&bl_h, h))
        .ok_or_else(|| format!("host not allowed for external URI: {uri}"))?;
    let (wl_p, bl_p) = pick(&f.allowed_ports, &f.disallowed_ports);
    if let Some(port) = parsed.port_u16().map(|p| p.to_string())
        && ((!wl_p.is_empty() && !listed(&wl_p, &port)) || listed(&bl_p, &port))
    {
        return Err(format!("port not allowed for external URI: {uri}"));
    }
    let port = parsed
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(a) => vec![a],
        Err(_) => (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("failed to resolve external host {host}: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    let by_name = listed(&wl_h, &host);
    let usable: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| {
            let a = match a {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*a, IpAddr::V4),
                v4 => *v4,
            };
            let local = match a {
                IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local(),
                IpAddr::V6(v6) => v6.is_loopback() || v6.is_unicast_link_local(),
            };
            by_name || (!local && !bl_h.iter().any(|b| b.parse::<IpAddr>().ok() == Some(a)))
        })
        .map(|a| SocketAddr::new(a, port))
        .collect();
    if usable.is_empty() {
        Err(format!("no allowed address for external host {host}"))
    } else {
        Ok(usable)
    }
}

/// Name resolution for fetches that connects only to the addresses the filter allowed, as
/// Glance pins them: a name that resolves differently between the check and the connection
/// (DNS rebinding) cannot lead a fetch to a refused address.
#[derive(Debug)]
struct Pinned(ImportFilter);

impl Resolver for Pinned {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        _: &ureq::config::Config,
        _: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let addrs = check(&self.0, &uri.to_string()).map_err(|e| {
            tracing::warn!(uri = %uri, reason = %e, "fetch refused by [import_filtering_opts]");
            ureq::Error::HostNotFound
        })?;
        let mut out = self.empty();
        // ureq keeps at most 16.
        for a in addrs.into_iter().take(16) {
            out.push(a);
        }
        Ok(out)
    }
}

/// Python's `urllib` words for a failed fetch, which Glance records in the task's message.
fn urllib_error(e: ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => format!("<urlopen error {io}>"),
        other => format!("<urlopen error {other}>"),
    }
}

/// Opens `uri` for reading, following redirects that pass the filter. Returns the body and
/// its length when the server gave one. Blocking.
fn open(f: &ImportFilter, uri: &str) -> Result<(Box<dyn Read + Send>, Option<u64>), String> {
    let config = crate::store::http::agent_config()
        .timeout_recv_body(None)
        .max_redirects(0)
        .http_status_as_error(false)
        .build();
    let agent = ureq::Agent::with_parts(config, DefaultConnector::default(), Pinned(f.clone()));
    let mut url = uri.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let resp = agent.get(&url).call().map_err(urllib_error)?;
        let status = resp.status();
        if status.is_redirection() {
            let Some(next) = resp.headers().get("location").and_then(|v| v.to_str().ok()) else {
                return Err(format!(
                    "HTTP Error {}: redirect without a Location",
                    status.as_u16()
                ));
            };
            let next = if next.starts_with("http://") || next.starts_with("https://") {
                next.to_string()
            } else {
                let base: Uri = url.parse().map_err(|_| format!("invalid URI: {url}"))?;
                format!(
                    "{}://{}{}",
                    base.scheme_str().unwrap_or("http"),
                    base.authority().map(|a| a.as_str()).unwrap_or_default(),
                    next
                )
            };
            if !passes(f, &next) {
                return Err(format!("Redirect to disallowed URL: {next}"));
            }
            url = next;
            continue;
        }
        if !status.is_success() {
            return Err(format!(
                "HTTP Error {}: {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ));
        }
        let len = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        return Ok((Box::new(resp.into_body().into_reader()), len));
    }
    Err("HTTP Error: too many redirects".into())
}

/// Fetches `uri` as a stream of chunks (read on the blocking pool), and its length if known.
pub async fn fetch(
    f: ImportFilter,
    uri: String,
) -> Result<
    (
        impl Stream<Item = Result<Bytes, String>> + Unpin + Send + 'static,
        Option<u64>,
    ),
    String,
> {
    let (mut body, len) = tokio::task::spawn_blocking(move || open(&f, &uri))
        .await
        .map_err(|e| e.to_string())??;
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, String>>(4);
    tokio::task::spawn_blocking(move || {
        loop {
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            // Full chunks: fewer hand-offs to the pipeline.
            while filled < CHUNK {
                match body.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(format!("<urlopen error {e}>")));
                        return;
                    }
                }
            }
            if filled == 0 {
                return;
            }
            buf.truncate(filled);
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return; // The task was cancelled.
            }
        }
    });
    Ok((
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)),
        len,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> ImportFilter {
        ImportFilter {
            allowed_schemes: vec!["http".into(), "https".into()],
            allowed_ports: vec!["80".into(), "443".into()],
            ..Default::default()
        }
    }

    #[test]
    fn loopback_and_encoded_hosts_are_refused_unless_allowed() {
        let f = filter();
        assert!(!passes(&f, "http://127.0.0.1/x"));
        assert!(!passes(&f, "http://127.1/x"));
        assert!(!passes(&f, "http://2130706433/x"));
        assert!(!passes(&f, "http://[::1]/x"));
        assert!(!passes(&f, "http://169.254.169.254/latest"));
        assert!(!passes(&f, "ftp://192.0.2.1/x"));
        assert!(!passes(&f, "http://192.0.2.1:8080/x"));
        assert!(passes(&f, "http://192.0.2.1/x"));
        let mut open = f.clone();
        open.allowed_hosts = vec!["127.0.0.1".into()];
        open.allowed_ports = vec![];
        assert!(passes(&open, "http://127.0.0.1:8080/x"));
        assert!(!passes(&open, "http://192.0.2.1/x"));
        let mut deny = f;
        deny.disallowed_hosts = vec!["192.0.2.1".into()];
        assert!(!passes(&deny, "http://192.0.2.1/x"));
    }

    /// What the resolver hands the connection: only addresses the filter allowed.
    #[test]
    fn fetches_connect_only_to_allowed_addresses() {
        let mut open = filter();
        open.allowed_hosts = vec!["127.0.0.1".into()];
        open.allowed_ports = vec![];
        let want: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(check(&open, "http://127.0.0.1:8080/x"), Ok(vec![want]));
        // A name that resolves to loopback is refused unless allowed by that name.
        assert!(check(&filter(), "http://localhost/x").is_err());
    }
}
