//! The versions document and version negotiation: `/v2.N/...` paths (and the
//! `application/vnd.openstack.images-v2.N` media type) map to v2; anything else gets the
//! versions document with 300.

use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{AppState, base_url, json_response};
use crate::config::Config;

/// (version, status) in the order Glance lists them for this configuration (without the image
/// cache, which would add 2.14, 2.16 and 2.18).
fn versions(cfg: &Config) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![("2.15", "SUPPORTED")];
    let multi: &[&str] = if cfg.multi_store {
        &["2.13", "2.12", "2.11", "2.10", "2.9", "2.8"]
    } else {
        &["2.9"]
    };
    v.extend(multi.iter().map(|m| (*m, "SUPPORTED")));
    v.push(("2.17", "CURRENT"));
    for m in ["2.7", "2.6", "2.5", "2.4", "2.3", "2.2", "2.1", "2.0"] {
        v.push((m, "SUPPORTED"));
    }
    v
}

/// Path prefixes Glance accepts for this configuration (note: not v2.16 without the cache).
fn allowed(cfg: &Config, v: &str) -> bool {
    const ALWAYS: &[&str] = &[
        "v2", "v2.0", "v2.1", "v2.2", "v2.3", "v2.4", "v2.5", "v2.6", "v2.7", "v2.9", "v2.15",
        "v2.17",
    ];
    const MULTI: &[&str] = &["v2.8", "v2.10", "v2.11", "v2.12", "v2.13"];
    ALWAYS.contains(&v) || (cfg.multi_store && MULTI.contains(&v))
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
    // Glance's router reads `/v2//images` as `/v2/images`.
    let mut path = req.uri().path().to_string();
    while path.contains("//") {
        path = path.replace("//", "/");
    }
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
    if tail.is_empty() {
        // `/v2` (or `/v2.N`), any method: Glance's router sends the client to `/v2/`.
        let location = format!("{}/v2/", base_url(&s.cfg, req.headers(), req.uri()));
        return (
            StatusCode::FOUND,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf8".to_string()),
                (header::LOCATION, location),
            ],
        )
            .into_response();
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
