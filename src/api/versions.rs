//! The versions document and version negotiation: `/v2.N/...` paths (and the
//! `application/vnd.openstack.images-v2.N` media type) map to v2; anything else gets the
//! versions document with 300.

use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};

use super::{AppState, base_url, json_response};
use crate::config::Config;

/// (version, status) in the order Glance lists them for a deployment without image cache and
/// without multi-store.
fn versions(cfg: &Config) -> Vec<(&'static str, &'static str)> {
    let _ = cfg; // cache and multi-store would add 2.8-2.14, 2.16, 2.18
    let mut v = vec![
        ("2.15", "SUPPORTED"),
        ("2.9", "SUPPORTED"),
        ("2.17", "CURRENT"),
    ];
    for minor in (0..=7).rev() {
        v.push((MINORS[minor], "SUPPORTED"));
    }
    v
}

const MINORS: [&str; 8] = ["2.0", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "2.7"];

/// Path prefixes Glance accepts for this configuration.
fn allowed(cfg: &Config, v: &str) -> bool {
    let _ = cfg;
    matches!(
        v,
        "v2" | "v2.0"
            | "v2.1"
            | "v2.2"
            | "v2.3"
            | "v2.4"
            | "v2.5"
            | "v2.6"
            | "v2.7"
            | "v2.9"
            | "v2.15"
            | "v2.17"
    )
}

pub fn document(s: &AppState, req: &Request) -> Value {
    let href = format!("{}/v2/", base_url(&s.cfg, req.headers(), req.uri()));
    let list: Vec<Value> = versions(&s.cfg)
        .into_iter()
        .map(|(id, status)| {
            json!({"id": format!("v{id}"), "status": status, "links": [{"rel": "self", "href": href}]})
        })
        .collect();
    json!({ "versions": list })
}

pub async fn multiple_choices(State(s): State<AppState>, req: Request) -> Response {
    json_response(StatusCode::MULTIPLE_CHOICES, &document(&s, &req))
}

pub async fn negotiate(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path == "/healthcheck" {
        return next.run(req).await;
    }
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let first = segments.next().unwrap_or("");
    let rest = segments.next();
    if first == "versions" {
        return json_response(StatusCode::OK, &document(&s, &req));
    }
    let accept = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (version, tail) = match accept.strip_prefix("application/vnd.openstack.images-") {
        Some(v) => (v.to_string(), path.clone()),
        None => (
            first.to_string(),
            rest.map(|r| format!("/{r}")).unwrap_or_default(),
        ),
    };
    if !allowed(&s.cfg, &version) {
        return json_response(StatusCode::MULTIPLE_CHOICES, &document(&s, &req));
    }
    let new_path = format!("/v2{tail}");
    let pq = match req.uri().query() {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path,
    };
    if let Ok(uri) = pq.parse::<Uri>() {
        *req.uri_mut() = uri;
    }
    next.run(req).await
}
