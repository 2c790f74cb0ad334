//! Who is calling. With `[paste_deploy] flavor` unset this is Glance's noauth pipeline: an
//! unauthenticated admin context, or, when identity headers are present, the project and roles
//! they name (so tests can act as several projects). With `flavor = keystone`, the identity
//! comes from the validated `X-Auth-Token` (and `X-Service-Token`), as keystonemiddleware
//! provides it to Glance.

pub mod keystone;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use std::sync::Arc;

use axum::response::IntoResponse;

use crate::api::{AppState, RequestId};
use crate::domain::policy::Context;
use crate::domain::rules::Policy;
use crate::error::Error;
use keystone::{AuthError, Keystone};

/// The context of a Keystone-authenticated request; 401 without a valid token, 503 when
/// Keystone cannot be asked.
async fn from_keystone(
    ks: Arc<Keystone>,
    h: &HeaderMap,
    request_id: String,
    policy: Arc<Policy>,
) -> Result<Context, Error> {
    let unauthorized = || Error::Unauthorized {
        www_authenticate: ks.www_authenticate(),
    };
    let Some(token) = header(h, "x-auth-token") else {
        return Err(unauthorized());
    };
    let service_token = header(h, "x-service-token");
    let k = ks.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let user = k.validate(&token)?;
        let service = match service_token {
            Some(t) => Some(k.validate(&t)?),
            None => None,
        };
        Ok::<_, AuthError>((user, service))
    })
    .await
    .map_err(|e| Error::Internal(format!("auth task failed: {e}")))?;
    let (user, service) = match checked {
        Ok(v) => v,
        Err(AuthError::Invalid) => return Err(unauthorized()),
        Err(AuthError::Unavailable(why)) => {
            tracing::warn!(error = %why, "cannot validate tokens");
            return Err(Error::Unavailable(
                "The identity service is unavailable; please retry later.".into(),
            ));
        }
    };
    if let Some(sv) = &service
        && ks.service_roles_required()
        && !ks.is_service(sv)
    {
        return Err(unauthorized());
    }
    let mut roles = user.roles.clone();
    // A valid service token with a service role lends its role (Glance's service_api rule).
    if let Some(sv) = &service
        && ks.is_service(sv)
        && !roles.iter().any(|r| r == "service")
    {
        roles.push("service".into());
    }
    Ok(Context {
        is_admin: roles.iter().any(|r| r == "admin"),
        project_id: user.project_id,
        user_id: user.user_id,
        roles,
        request_id,
        policy,
    })
}

pub async fn identify(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let ctx = match &s.keystone {
        None => from_headers(req.headers(), request_id, s.policy.clone()),
        Some(ks) => {
            match from_keystone(ks.clone(), req.headers(), request_id, s.policy.clone()).await {
                Ok(ctx) => ctx,
                Err(e) => return e.into_response(),
            }
        }
    };
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
pub fn from_headers(h: &HeaderMap, request_id: String, policy: Arc<Policy>) -> Context {
    let project = header(h, "x-project-id").or_else(|| header(h, "x-tenant-id"));
    let user = header(h, "x-user-id");
    let roles = header(h, "x-roles");
    if project.is_none() && user.is_none() && roles.is_none() {
        return Context::unauthenticated(request_id, policy);
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
        policy,
    }
}
