//! Who is calling. With `[paste_deploy] flavor` unset this is Glance's noauth pipeline: an
//! unauthenticated admin context, or, when identity headers are present, the project and roles
//! they name (so tests can act as several projects). Keystone token validation plugs in here.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use crate::api::{AppState, RequestId};
use crate::domain::policy::Context;

pub async fn identify(State(_s): State<AppState>, mut req: Request, next: Next) -> Response {
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let ctx = from_headers(req.headers(), request_id);
    req.extensions_mut().insert(ctx);
    next.run(req).await
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// The noauth context: identity headers when given, else an admin with no project.
pub fn from_headers(h: &HeaderMap, request_id: String) -> Context {
    let project = header(h, "x-project-id").or_else(|| header(h, "x-tenant-id"));
    let user = header(h, "x-user-id");
    let roles = header(h, "x-roles");
    if project.is_none() && user.is_none() && roles.is_none() {
        return Context::unauthenticated(request_id);
    }
    // Glance lowercases roles. A project without roles acts as its member.
    let roles: Vec<String> = match roles {
        Some(r) => r
            .split(',')
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty())
            .collect(),
        None => vec!["member".into(), "reader".into()],
    };
    Context {
        is_admin: roles.iter().any(|r| r == "admin"),
        project_id: project,
        user_id: user,
        roles,
        request_id,
    }
}
