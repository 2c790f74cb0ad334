//! `/healthcheck` as oslo.middleware's healthcheck answers it in Glance's pipeline (the
//! `disable_by_file` backend): 200 (HEAD 204) with the reason `OK`, 503 with the reasons it
//! is not; text, HTML or JSON as the Accept header prefers, `[healthcheck] detailed` for more.
//! glance-rs adds two reasons of its own: a node draining before it stops, and a database it
//! cannot reach (either would fail the requests haproxy sends it).

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;

/// One check's result, as oslo.middleware's `HealthcheckResult`.
struct Check {
    available: bool,
    reason: &'static str,
    /// The check's class name, shown in detailed answers.
    kind: &'static str,
    details: String,
}

pub async fn healthcheck(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let checks = run_checks(&s).await;
    let healthy = checks.iter().all(|c| c.available);
    let status = match (healthy, method == Method::HEAD) {
        (true, true) => StatusCode::NO_CONTENT,
        (true, false) => StatusCode::OK,
        (false, _) => StatusCode::SERVICE_UNAVAILABLE,
    };
    if method == Method::HEAD {
        return (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
        )
            .into_response();
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    let detailed = s.cfg.healthcheck_detailed;
    // webob names the charset of text types only.
    let (body, kind) = match preferred(accept, &["text/plain", "text/html", "application/json"]) {
        "application/json" => (json_body(&checks, detailed), "application/json"),
        "text/html" => (html_body(&checks, detailed), "text/html; charset=UTF-8"),
        _ => (
            checks
                .iter()
                .map(|c| c.reason)
                .filter(|r| !r.is_empty())
                .collect::<Vec<_>>()
                .join("\n"),
            "text/plain; charset=UTF-8",
        ),
    };
    (status, [(header::CONTENT_TYPE, kind)], body).into_response()
}

async fn run_checks(s: &AppState) -> Vec<Check> {
    let mut checks = Vec::new();
    let disabled = s
        .cfg
        .healthcheck_disable_file
        .as_deref()
        .is_some_and(|f| std::path::Path::new(f).exists());
    checks.push(Check {
        available: !disabled,
        reason: if disabled { "DISABLED BY FILE" } else { "OK" },
        kind: "DisableByFileHealthcheck",
        details: String::new(),
    });
    if s.draining.load(std::sync::atomic::Ordering::Relaxed) {
        checks.push(Check {
            available: false,
            reason: "stopping",
            kind: "ShutdownDrain",
            details: String::new(),
        });
    }
    if let Err(e) = s.db.ping().await {
        tracing::warn!(error = %e, "healthcheck: database unreachable");
        checks.push(Check {
            available: false,
            reason: "database unreachable",
            kind: "Database",
            details: e.to_string(),
        });
    }
    checks
}

/// The offer the Accept header `accept` prefers (highest quality; the first offer on a tie),
/// as webob's `acceptable_offers` picks; the first offer when none is acceptable.
fn preferred<'a>(accept: &str, offers: &[&'a str]) -> &'a str {
    let ranges: Vec<(&str, f32)> = accept
        .split(',')
        .filter_map(|part| {
            let mut it = part.split(';');
            let range = it.next()?.trim();
            let q = it
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|v| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (!range.is_empty()).then_some((range, q))
        })
        .collect();
    let quality = |offer: &str| -> f32 {
        let (kind, _) = offer.split_once('/').unwrap_or((offer, ""));
        // The most specific range that matches decides.
        let mut best: Option<(u8, f32)> = None;
        for (range, q) in &ranges {
            let specificity = if range.eq_ignore_ascii_case(offer) {
                2
            } else if range
                .strip_suffix("/*")
                .is_some_and(|t| t.eq_ignore_ascii_case(kind))
            {
                1
            } else if *range == "*/*" {
                0
            } else {
                continue;
            };
            if best.is_none_or(|(s, _)| specificity > s) {
                best = Some((specificity, *q));
            }
        }
        best.map_or(0.0, |(_, q)| q)
    };
    let mut chosen = (offers[0], 0.0);
    for offer in offers {
        let q = quality(offer);
        if q > chosen.1 {
            chosen = (offer, q);
        }
    }
    chosen.0
}

fn json_body(checks: &[Check], detailed: bool) -> String {
    let body = if detailed {
        serde_json::json!({
            "detailed": true,
            "now": chrono::Utc::now().naive_utc().to_string(),
            "platform": platform(),
            "reasons": checks.iter().map(|c| serde_json::json!({
                "class": c.kind,
                "details": c.details,
                "reason": c.reason,
            })).collect::<Vec<_>>(),
        })
    } else {
        serde_json::json!({
            "detailed": false,
            "reasons": checks.iter().map(|c| c.reason).collect::<Vec<_>>(),
        })
    };
    // Python's json.dumps(indent=4, sort_keys=True): serde_json's maps are sorted.
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    if serde::Serialize::serialize(&body, &mut ser).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

fn html_body(checks: &[Check], detailed: bool) -> String {
    let esc = crate::error::html_escape;
    let mut h = String::from("<HTML>\n<HEAD><TITLE>Healthcheck Status</TITLE></HEAD>\n<BODY>\n");
    if detailed {
        h.push_str(&format!(
            "<H1>Server status</H1>\n<B>Current time:</B><PRE>{}</PRE>\n<B>Platform:</B><PRE>{}</PRE>\n<HR></HR>",
            esc(&chrono::Utc::now().naive_utc().to_string()),
            esc(&platform())
        ));
    }
    h.push_str(&format!(
        "\n<H2>Result of {} checks:</H2>\n<TABLE bgcolor=\"#ffffff\" border=\"1\">\n<TBODY>\n<TR>\n",
        checks.len()
    ));
    if detailed {
        h.push_str("<TH>\nKind\n</TH>\n<TH>\nReason\n</TH>\n<TH>\nDetails\n</TH>\n");
    } else {
        h.push_str("\n<TH>\nReason\n</TH>");
    }
    h.push_str("\n</TR>");
    for c in checks.iter().filter(|c| !c.reason.is_empty()) {
        h.push_str("\n<TR>\n");
        if detailed {
            h.push_str(&format!("    <TD>{}</TD>", esc(c.kind)));
        }
        h.push_str(&format!("\n    <TD>{}</TD>\n", esc(c.reason)));
        if detailed {
            h.push_str(&format!("    <TD>{}</TD>", esc(&c.details)));
        }
        h.push_str("\n</TR>");
    }
    h.push_str("\n</TBODY>\n</TABLE>\n<HR></HR>\n\n</BODY>\n</HTML>");
    h
}

/// What Python's `platform.platform()` would say, from uname.
fn platform() -> String {
    match nix_uname() {
        Some((sys, release, machine)) => format!("{sys}-{release}-{machine}"),
        None => std::env::consts::OS.to_string(),
    }
}

fn nix_uname() -> Option<(String, String, String)> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    Some((
        read("/proc/sys/kernel/ostype")?,
        read("/proc/sys/kernel/osrelease")?,
        std::env::consts::ARCH.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::{Check, html_body, preferred};

    #[test]
    fn accept_picks_as_webob() {
        let offers = ["text/plain", "text/html", "application/json"];
        assert_eq!(preferred("*/*", &offers), "text/plain");
        assert_eq!(preferred("application/json", &offers), "application/json");
        assert_eq!(
            preferred("text/html;q=0.5, application/json;q=0.9", &offers),
            "application/json"
        );
        assert_eq!(preferred("text/*", &offers), "text/plain");
        assert_eq!(preferred("text/*, text/plain;q=0", &offers), "text/html");
        assert_eq!(preferred("image/png", &offers), "text/plain");
    }

    #[test]
    fn html_as_oslo_middleware_renders_it() {
        let ok = Check {
            available: true,
            reason: "OK",
            kind: "DisableByFileHealthcheck",
            details: String::new(),
        };
        // oslo.middleware's template rendered by jinja2 (not detailed).
        assert_eq!(
            html_body(&[ok], false),
            "<HTML>\n<HEAD><TITLE>Healthcheck Status</TITLE></HEAD>\n<BODY>\n\n<H2>Result of 1 \
             checks:</H2>\n<TABLE bgcolor=\"#ffffff\" border=\"1\">\n<TBODY>\n<TR>\n\n<TH>\n\
             Reason\n</TH>\n</TR>\n<TR>\n\n    <TD>OK</TD>\n\n</TR>\n</TBODY>\n</TABLE>\n\
             <HR></HR>\n\n</BODY>\n</HTML>"
        );
    }
}
