//! Who is calling. With `[paste_deploy] flavor` unset this is Glance's noauth pipeline: an
//! unauthenticated admin context, or, when identity headers are present, the identity they
//! name as keystonemiddleware would (`X-Project-Id`, `X-Roles`, `X-Domain-Id`,
//! `X-System-Scope`, `X-Service-Roles`), so tests can act as anyone. With `flavor = keystone`,
//! the identity comes from the validated `X-Auth-Token` (and `X-Service-Token`), as
//! keystonemiddleware provides it to Glance.

pub mod keystone;

use std::sync::Arc;

use axum::http::HeaderMap;

use crate::domain::policy::Caller;
use keystone::{AuthError, Keystone};

/// Why a request carries no identity the service accepts.
#[derive(Debug)]
pub enum Refusal {
    /// No token, or one Keystone does not accept (401, with this `WWW-Authenticate`).
    Unauthorized {
        www_authenticate: String,
    },
    /// Keystone cannot be asked (503).
    Unavailable,
    Internal(String),
}

/// The caller of a Keystone-authenticated request: refused without a valid token, or when
/// Keystone cannot be asked.
pub async fn from_keystone(ks: Arc<Keystone>, h: &HeaderMap) -> Result<Caller, Refusal> {
    let unauthorized = || Refusal::Unauthorized {
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
            .map_err(|e| Refusal::Internal(format!("auth task failed: {e}")))?
        }
    };
    let (user, service) = match checked {
        Ok(v) => v,
        Err(AuthError::Invalid) => return Err(unauthorized()),
        Err(AuthError::Unavailable(why)) => {
            tracing::warn!(error = %why, "cannot validate tokens");
            return Err(Refusal::Unavailable);
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
