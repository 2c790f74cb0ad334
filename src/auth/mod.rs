//! Who is calling. With `[paste_deploy] flavor` unset this is Glance's noauth pipeline: an
//! unauthenticated admin context, or, when identity headers are present, the identity they
//! name as keystonemiddleware would (`X-Project-Id`, `X-Roles`, `X-Domain-Id`,
//! `X-System-Scope`, `X-Service-Roles`), so tests can act as anyone. With `flavor = keystone`,
//! the identity comes from the validated `X-Auth-Token` (and `X-Service-Token`), as
//! keystonemiddleware provides it to Glance.

pub mod keystone;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use std::sync::Arc;

use axum::response::IntoResponse;

use crate::api::{AppState, RequestId};
use crate::domain::policy::{Caller, Context};
use crate::error::Error;
use keystone::{AuthError, Keystone};

/// The context of a Keystone-authenticated request; 401 without a valid token, 503 when
/// Keystone cannot be asked.
async fn from_keystone(ks: Arc<Keystone>, h: &HeaderMap) -> Result<Caller, Error> {
    let unauthorized = || Error::Unauthorized {
        www_authenticate: ks.www_authenticate(),
    };
    let Some(token) = header(h, "x-auth-token") else {
        return Err(unauthorized());
    };
    let service_token = header(h, "x-service-token");
    // Most requests carry a token validated moments ago: no trip to the blocking pool then.
    let cached = match (ks.cached(&token), &service_token) {
        (Some(user), None) => Some((user, None)),
        (Some(user), Some(t)) => ks.cached(t).map(|sv| (user, Some(sv))),
        (None, _) => None,
    };
    let checked = match cached {
        Some(both) => Ok(both),
        None => {
            let k = ks.clone();
            tokio::task::spawn_blocking(move || {
                let user = k.validate(&token)?;
                let service = match service_token {
                    Some(t) => Some(k.validate(&t)?),
                    None => None,
                };
                Ok::<_, AuthError>((user, service))
            })
            .await
            .map_err(|e| Error::Internal(format!("auth task failed: {e}")))?
        }
    };
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
    let mut caller = user;
    if let Some(sv) = service {
        caller.service_roles = sv.roles;
        caller.service_user_id = sv.user_id;
        caller.service_project_id = sv.project_id;
    }
    Ok(caller)
}

pub async fn identify(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let (policy, protections) = (s.policy.clone(), s.protections.clone());
    let ctx = match &s.keystone {
        None => match from_headers(req.headers()) {
            Some(caller) => Context::new(caller, request_id, policy, protections),
            None => Context::unauthenticated(request_id, policy, protections),
        },
        Some(ks) => match from_keystone(ks.clone(), req.headers()).await {
            Ok(caller) => Context::new(caller, request_id, policy, protections),
            Err(e) => return e.into_response(),
        },
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

/// The noauth caller the identity headers name (keystonemiddleware's names), if any.
pub fn from_headers(h: &HeaderMap) -> Option<Caller> {
    let project = header(h, "x-project-id").or_else(|| header(h, "x-tenant-id"));
    let user = header(h, "x-user-id");
    let roles = header(h, "x-roles");
    let domain = header(h, "x-domain-id");
    let system = header(h, "x-system-scope");
    if [&project, &user, &roles, &domain, &system]
        .iter()
        .all(|v| v.is_none())
    {
        return None;
    }
    let list = |v: Option<String>| -> Vec<String> {
        v.map(|r| {
            r.split(',')
                .map(|s| s.trim().to_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
    };
    // A project without roles acts as its member.
    let roles = match roles {
        Some(r) => list(Some(r)),
        None => vec!["member".into(), "reader".into()],
    };
    Some(Caller {
        user_id: user,
        project_id: project,
        domain_id: domain,
        system_scope: system,
        roles,
        service_roles: list(header(h, "x-service-roles")),
        is_admin_project: true,
        ..Caller::default()
    })
}
