//! HTTP: the router, the middleware every request passes through (request id, version
//! negotiation, identity, error rendering) and shared helpers for handlers.

pub mod healthcheck;
pub mod image_data;
pub mod images;
pub mod r#import;
pub mod info;
pub mod locations;
pub mod members;
pub mod metadef_schemas;
pub mod metadefs;
pub mod schemas;
pub mod sendfile;
pub mod tags;
pub mod tasks;
pub mod versions;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use tracing::Instrument;

use crate::auth;
use crate::config::Config;
use crate::domain::policy::Context;
use crate::error::{Error, ErrorText, pick_format, render_body, webob_title};

pub use crate::app::App as AppState;

/// A 201 with `body` and the new resource's absolute `Location` (`path` under the base URL
/// the client used).
pub fn created(
    cfg: &Config,
    headers: &HeaderMap,
    uri: &Uri,
    path: &str,
    body: &(impl serde::Serialize + ?Sized),
) -> Response {
    let mut resp = json_response(StatusCode::CREATED, body);
    if let Ok(v) = HeaderValue::from_str(&format!("{}{path}", base_url(cfg, headers, uri))) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// A page's `first` and `next` links as Glance writes them: `path` with the request's query
/// less its `marker`, and (when the page was full) with the last item's id as the marker.
pub fn page_links(
    path: &str,
    pairs: &[(String, String)],
    next_marker: Option<&str>,
) -> (String, Option<String>) {
    let encode = |marker: Option<&str>| {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs.iter().filter(|(k, _)| k != "marker") {
            ser.append_pair(k, v);
        }
        if let Some(m) = marker {
            ser.append_pair("marker", m);
        }
        ser.finish()
    };
    let first = match encode(None) {
        q if q.is_empty() => path.to_string(),
        q => format!("{path}?{q}"),
    };
    (
        first,
        next_marker.map(|m| format!("{path}?{}", encode(Some(m)))),
    )
}

/// webob's view of a query parameter: the last value of a repeated one.
pub fn last_param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A method router whose other methods get Glance's 405 with this `Allow`. HEAD too: Glance's
/// v2 routes name their methods, so HEAD is not served as a GET without a body there.
fn only(allow: &'static str, r: MethodRouter<AppState>) -> MethodRouter<AppState> {
    let refuse = move || async move { Error::MethodNotAllowed { allow } };
    r.head(refuse).fallback(refuse)
}

/// Glance refuses a body where a route takes none (its `body_reject` routes): a Content-Length
/// above 0, or a transfer coding on a method that may carry one. Layered on a method router,
/// it covers only the methods added before it (so `get(..).layer(..).patch(..)` spares PATCH).
async fn no_body(req: Request, next: Next) -> Response {
    if has_body(&req) {
        return Error::BadRequest("A body is not expected with this request.".into())
            .into_response();
    }
    next.run(req).await
}

fn has_body(req: &Request) -> bool {
    let h = req.headers();
    let coded = h.get(header::TRANSFER_ENCODING).is_some_and(|v| {
        let v = v.to_str().unwrap_or("").to_ascii_lowercase();
        ["chunked", "compress", "deflate", "gzip", "identity"].contains(&v.as_str())
    });
    let length = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    length > 0 || (coded && [Method::POST, Method::PUT, Method::PATCH].contains(req.method()))
}

pub fn router(state: AppState) -> Router {
    let mut v2 = Router::new();
    for name in schemas::NAMES {
        let show = move |State(s): State<AppState>| async move { schemas::show(&s, name) };
        v2 = v2.route(
            &format!("/v2/schemas/{name}"),
            only("GET", get(show).layer(middleware::from_fn(no_body))),
        );
    }
    let v2 = v2
        .route(
            "/v2/images",
            only("GET, POST", get(images::list).post(images::create)),
        )
        .route(
            "/v2/images/{id}",
            only(
                "GET, PATCH, DELETE",
                get(images::show)
                    .delete(images::delete)
                    .layer(middleware::from_fn(no_body))
                    .patch(images::update),
            ),
        )
        .route(
            "/v2/images/{id}/file",
            only(
                "GET, PUT",
                get(image_data::download)
                    .layer(middleware::from_fn(no_body))
                    .put(image_data::upload),
            ),
        )
        // Glance's 405 here names POST alone, though GET is served.
        .route(
            "/v2/images/{id}/locations",
            only("POST", get(locations::list).post(locations::add)),
        )
        .route(
            "/v2/images/{id}/members",
            only(
                "GET, POST",
                get(members::list)
                    .layer(middleware::from_fn(no_body))
                    .post(members::add),
            ),
        )
        .route(
            "/v2/images/{id}/members/{member}",
            only(
                "GET, PUT, DELETE",
                get(members::show)
                    .delete(members::delete)
                    .layer(middleware::from_fn(no_body))
                    .put(members::update),
            ),
        )
        .route(
            "/v2/images/{id}/tags/{tag}",
            only(
                "PUT, DELETE",
                put(tags::add)
                    .delete(tags::remove)
                    .layer(middleware::from_fn(no_body)),
            ),
        )
        .route(
            "/v2/tasks",
            only(
                "GET, POST",
                get(tasks::list)
                    .layer(middleware::from_fn(no_body))
                    .post(tasks::create),
            ),
        )
        .route(
            "/v2/tasks/{id}",
            only(
                "GET, DELETE",
                get(tasks::show)
                    .delete(tasks::delete)
                    .layer(middleware::from_fn(no_body)),
            ),
        )
        .route(
            "/v2/images/{id}/tasks",
            only(
                "GET",
                get(tasks::of_image).layer(middleware::from_fn(no_body)),
            ),
        )
        .route(
            "/v2/images/{id}/import",
            only("POST", post(r#import::import)),
        )
        .route("/v2/images/{id}/stage", only("PUT", put(r#import::stage)))
        .route(
            "/v2/info/import",
            only(
                "GET",
                get(info::import_methods).layer(middleware::from_fn(no_body)),
            ),
        )
        .route("/v2/info/usage", only("GET", get(info::usage)))
        .route(
            "/v2/images/{id}/actions/deactivate",
            only(
                "POST",
                post(images::deactivate).layer(middleware::from_fn(no_body)),
            ),
        )
        .route(
            "/v2/images/{id}/actions/reactivate",
            only(
                "POST",
                post(images::reactivate).layer(middleware::from_fn(no_body)),
            ),
        )
        .route(
            "/v2/info/stores",
            only("GET", get(info::stores).layer(middleware::from_fn(no_body))),
        )
        .route(
            "/v2/info/stores/detail",
            only(
                "GET",
                get(info::stores_detail).layer(middleware::from_fn(no_body)),
            ),
        )
        .route(
            "/v2/stores/{store}/{id}",
            only(
                "DELETE",
                axum::routing::delete(info::delete_from_store).layer(middleware::from_fn(no_body)),
            ),
        )
        .merge(metadefs::routes())
        .fallback(|| async { Error::NotFound(String::new()) })
        .layer(middleware::from_fn_with_state(state.clone(), identify));

    let routes = Router::new()
        .route("/healthcheck", get(healthcheck::healthcheck))
        .route("/", get(versions::multiple_choices))
        .merge(v2)
        .with_state(state.clone());
    // Version negotiation rewrites the path, so it must run before routing: it wraps the
    // router as a service instead of being a route layer.
    let negotiated = tower::Layer::layer(
        &middleware::from_fn_with_state(state.clone(), versions::negotiate),
        routes,
    );
    Router::new()
        .fallback_service(negotiated)
        .layer(middleware::from_fn(catch_panics))
        .layer(middleware::from_fn(render_errors))
        .layer(middleware::from_fn_with_state(state, request_id))
}

#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// `x-openstack-request-id: req-<uuid>` on every response; an inbound id of at most 64
/// characters is kept, as Glance's context middleware does. Every log line of the request
/// carries it, and the client's address.
async fn request_id(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-openstack-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .map(|v| {
            if v.starts_with("req-") {
                v.to_string()
            } else {
                format!("req-{v}")
            }
        })
        .unwrap_or_else(|| format!("req-{}", uuid::Uuid::new_v4()));
    // An id the caller sent ties this request to its own logs: oslo.log's global request id.
    let inbound = req.headers().contains_key("x-openstack-request-id");
    req.extensions_mut().insert(RequestId(id.clone()));
    let client = client_addr(&s.cfg, &req);
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let empty = tracing::field::Empty;
    // The caller's ids are recorded once known (`identify`).
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        global_request_id = empty,
        user_id = empty,
        project_id = empty,
        domain_id = empty,
        system_scope = empty,
        user_domain_id = empty,
        project_domain_id = empty,
    );
    if inbound {
        span.record("global_request_id", id.as_str());
    }
    let started = std::time::Instant::now();
    async move {
        let mut resp = next.run(req).await;
        // As eventlet.wsgi.server's access line, which operators grep.
        tracing::info!(
            "{client} \"{method} {path}\" status: {} time: {:.4}",
            resp.status().as_u16(),
            started.elapsed().as_secs_f64()
        );
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert("x-openstack-request-id", v);
        }
        resp
    }
    .instrument(span)
    .await
}

/// A handler that panics answers 500, as Glance answers an unexpected error, instead of
/// resetting the connection. Drop guards have already undone its work: an upload's image is
/// back in `queued` and its partial bytes removed.
async fn catch_panics(req: Request, next: Next) -> Response {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .await
    {
        Ok(resp) => resp,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %what, "request handler panicked");
            let mut resp = StatusCode::INTERNAL_SERVER_ERROR.into_response();
            // webob's standard explanation, which Glance's 500s carry.
            resp.extensions_mut().insert(ErrorText::default());
            resp
        }
    }
}

/// Writes error bodies the way webob renders them, from the request's `Accept`.
async fn render_errors(req: Request, next: Next) -> Response {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let method = req.method().clone();
    // Kept for webob's 415 body; a HeaderValue clone shares the request's bytes.
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    let resp = next.run(req).await;
    let Some(text) = resp.extensions().get::<ErrorText>().cloned() else {
        return resp;
    };
    let status = resp.status();
    let explanation = format!("{}{}", text.explanation, text.detail);
    if status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!(status = status.as_u16(), %explanation, "request failed");
    } else {
        tracing::info!(status = status.as_u16(), %explanation, "request refused");
    }
    let (ct, body) = render_body(
        status,
        &text,
        method.as_str(),
        content_type
            .as_ref()
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .as_deref(),
        pick_format(accept.as_deref()),
    );
    let (mut parts, _) = resp.into_parts();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    // The status line's reason phrase too, where webob's differs from hyper's.
    let title = webob_title(status);
    if Some(title) != status.canonical_reason() {
        parts
            .extensions
            .insert(hyper::ext::ReasonPhrase::from_static(title.as_bytes()));
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    if method == Method::HEAD {
        // webob answers HEAD with the HTML error's headers and no body.
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=UTF-8"),
        );
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, Body::from(body))
}

/// The first value of a header each proxy on the way may have appended to: the one the
/// outermost proxy saw from the client.
fn first_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let v = headers.get(name)?.to_str().ok()?.split(',').next()?.trim();
    (!v.is_empty()).then_some(v)
}

/// The first element of `Forwarded` (RFC 7239) as (lowercase key, unquoted value) pairs; None
/// when the request has no such header.
fn forwarded(headers: &HeaderMap) -> Option<Vec<(String, &str)>> {
    let pairs = first_value(headers, "forwarded")?
        .split(';')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().trim_matches('"')))
        });
    Some(pairs.collect())
}

/// The client's address for the logs: the peer's, or with `enable_proxy_headers_parsing` the
/// `for` of `Forwarded` or else `X-Forwarded-For`, as oslo's HTTPProxyToWSGI sets REMOTE_ADDR.
fn client_addr(cfg: &Config, req: &Request) -> String {
    let proxied = || match forwarded(req.headers()) {
        Some(pairs) => pairs.into_iter().find(|(k, _)| k == "for").map(|(_, v)| v),
        None => first_value(req.headers(), "x-forwarded-for"),
    };
    let peer = || {
        let conn = req.extensions().get::<ConnectInfo<sendfile::Conn>>()?;
        conn.0.peer.map(|a| a.ip().to_string())
    };
    match cfg.proxy_headers_parsing.then(proxied).flatten() {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => peer().unwrap_or_else(|| "-".to_string()),
    }
}

/// The URL clients reached us by, for the links and `Location`s we write: `public_endpoint` if
/// set, else the Host header with the scheme a TLS-terminating proxy names in
/// `X-Forwarded-Proto` (Glance under uWSGI takes it from there). With `[oslo_middleware]
/// enable_proxy_headers_parsing`, as oslo's HTTPProxyToWSGI: the first `Forwarded` element's
/// proto and host, or else `X-Forwarded-Proto` and `X-Forwarded-Host`, and the path prefix of
/// `X-Forwarded-Prefix`.
pub fn base_url(cfg: &Config, headers: &HeaderMap, uri: &Uri) -> String {
    if let Some(ep) = &cfg.public_endpoint {
        return ep.clone();
    }
    let mut host = first_value(headers, "host")
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| format!("{}:{}", cfg.bind_host, cfg.bind_port));
    let mut scheme = first_value(headers, "x-forwarded-proto");
    let mut prefix = "";
    if cfg.proxy_headers_parsing {
        match forwarded(headers) {
            Some(pairs) => {
                for (k, v) in pairs {
                    match k.as_str() {
                        "proto" => scheme = Some(v),
                        "host" => host = v.to_string(),
                        _ => {}
                    }
                }
            }
            None => {
                if let Some(h) = first_value(headers, "x-forwarded-host") {
                    host = h.to_string();
                }
            }
        }
        prefix = first_value(headers, "x-forwarded-prefix").map_or("", |p| p.trim_end_matches('/'));
    }
    let https = scheme.is_some_and(|s| s.eq_ignore_ascii_case("https"));
    format!("{}://{host}{prefix}", if https { "https" } else { "http" })
}

pub fn json_response(status: StatusCode, v: &(impl serde::Serialize + ?Sized)) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        crate::json::to_string(v),
    )
        .into_response()
}

/// Who is calling (see `auth`): the request's `Context`, or its refusal in Glance's words.
pub async fn identify(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let (policy, protections) = (s.policy.clone(), s.protections.clone());
    let ctx = match &s.keystone {
        None => match auth::from_headers(req.headers()) {
            Some(caller) => Context::new(caller, request_id, policy, protections),
            None => Context::unauthenticated(request_id, policy, protections),
        },
        Some(ks) => match auth::from_keystone(ks.clone(), req.headers()).await {
            Ok(caller) => Context::new(caller, request_id, policy, protections),
            Err(refusal) => {
                let e = match refusal {
                    auth::Refusal::Unauthorized { www_authenticate } => {
                        Error::Unauthorized { www_authenticate }
                    }
                    auth::Refusal::Unavailable => Error::Unavailable(
                        "The identity service is unavailable; please retry later.".into(),
                    ),
                    auth::Refusal::Internal(what) => Error::Internal(what),
                };
                return e.into_response();
            }
        },
    };
    let span = tracing::Span::current();
    let c = &ctx.caller;
    for (field, value) in [
        ("user_id", &c.user_id),
        ("project_id", &c.project_id),
        ("domain_id", &c.domain_id),
        ("system_scope", &c.system_scope),
        ("user_domain_id", &c.user_domain_id),
        ("project_domain_id", &c.project_domain_id),
    ] {
        if let Some(v) = value {
            span.record(field, v.as_str());
        }
    }
    req.extensions_mut().insert(ctx);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_answers_glances_500() {
        let app: Router = Router::new()
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("index out of bounds");
                    }
                    StatusCode::OK
                }),
            )
            .layer(middleware::from_fn(catch_panics))
            .layer(middleware::from_fn(render_errors));
        let req = Request::builder()
            .uri("/boom")
            .body(Body::empty())
            .expect("request");
        let resp = app.oneshot(req).await.expect("a response, not a reset");
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), 4096)
            .await
            .expect("body");
        assert_eq!(
            String::from_utf8_lossy(&body),
            "500 Internal Server Error\n\nThe server has either erred or is incapable of \
             performing the requested operation.\n\n   "
        );
    }
}
