//! Keystone token validation as keystonemiddleware does it: the service authenticates itself
//! with its own credentials (`[keystone_authtoken]`), then asks Keystone about each user token
//! (`GET /v3/auth/tokens` with `X-Subject-Token`), caching answers for `token_cache_time`.
//! Calls block (ureq) and run on the blocking pool.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use crate::config::KeystoneConfig;

/// Who a token belongs to, and its scope.
pub type Identity = crate::domain::policy::Caller;

#[derive(Debug)]
pub enum AuthError {
    /// The token is not valid (unknown, expired, revoked).
    Invalid,
    /// Keystone cannot be reached or answered oddly: the client may retry.
    Unavailable(String),
}

/// Bound on cached validations; expired ones are dropped first when it is reached.
const CACHE_MAX: usize = 10_000;

pub struct Keystone {
    cfg: KeystoneConfig,
    agent: ureq::Agent,
    service: Mutex<Option<(String, Instant)>>,
    cache: Mutex<HashMap<String, (Identity, Instant)>>,
}

fn read_json(resp: ureq::http::Response<ureq::Body>) -> Result<Value, AuthError> {
    let text = resp
        .into_body()
        .read_to_string()
        .map_err(|e| AuthError::Unavailable(format!("Keystone answer: {e}")))?;
    serde_json::from_str(&text).map_err(|e| AuthError::Unavailable(format!("Keystone answer: {e}")))
}

fn parse_expiry(body: &Value) -> Option<Duration> {
    let s = body["token"]["expires_at"].as_str()?;
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    (t.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

/// What keystonemiddleware tells a service about a validated v3 token: the user, the scope
/// (project, domain, or the whole system), the roles (lowercased, as Glance uses them).
fn identity(t: &Value) -> Identity {
    let s = |v: &Value| v.as_str().map(str::to_string);
    Identity {
        user_id: s(&t["user"]["id"]),
        user_domain_id: s(&t["user"]["domain"]["id"]),
        project_id: s(&t["project"]["id"]),
        project_domain_id: s(&t["project"]["domain"]["id"]),
        domain_id: s(&t["domain"]["id"]),
        system_scope: (t["system"]["all"] == true).then(|| "all".to_string()),
        roles: t["roles"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|x| x["name"].as_str())
                    .map(str::to_lowercase)
                    .collect()
            })
            .unwrap_or_default(),
        // Keystone names the admin project only when one is configured; else every project is.
        is_admin_project: t["is_admin_project"].as_bool().unwrap_or(true),
        ..Identity::default()
    }
}

/// Every certificate of the PEM file `path`.
fn ca_certificates(path: &std::path::Path) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
            Ok(_) => None,
            Err(e) => Some(Err(e.to_string())),
        })
        .collect::<Result<_, _>>()?;
    if certs.is_empty() {
        return Err("no certificate in it".into());
    }
    Ok(certs)
}

impl Keystone {
    pub fn new(cfg: KeystoneConfig) -> Self {
        let mut tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::NativeTls)
            .disable_verification(cfg.insecure);
        if let Some(path) = &cfg.cafile {
            match ca_certificates(path) {
                Ok(certs) => tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs)),
                Err(e) => tracing::error!(
                    cafile = %path.display(), error = %e,
                    "[keystone_authtoken] cafile unreadable: Keystone's certificate is checked against the system's CAs"
                ),
            }
        }
        let config = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build();
        Keystone {
            cfg,
            agent: ureq::Agent::new_with_config(config),
            service: Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn www_authenticate(&self) -> String {
        format!("Keystone uri=\"{}\"", self.cfg.www_authenticate_uri)
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}{path}",
            self.cfg
                .auth_url
                .trim_end_matches('/')
                .trim_end_matches("/v3")
        )
    }

    /// The service's own token, renewed a minute before it expires.
    fn service_token(&self, force: bool) -> Result<String, AuthError> {
        if !force
            && let Ok(g) = self.service.lock()
            && let Some((t, until)) = g.as_ref()
            && *until > Instant::now()
        {
            return Ok(t.clone());
        }
        let domain = |id: &Option<String>, name: &str| match id {
            Some(id) => json!({ "id": id }),
            None => json!({ "name": name }),
        };
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": self.cfg.username, "password": self.cfg.password,
                "domain": domain(&self.cfg.user_domain_id, &self.cfg.user_domain_name)}}},
            "scope": {"project": {"name": self.cfg.project_name,
                "domain": domain(&self.cfg.project_domain_id, &self.cfg.project_domain_name)}}}});
        let resp = self
            .agent
            .post(&self.url("/v3/auth/tokens"))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .map_err(|e| AuthError::Unavailable(format!("Keystone unreachable: {e}")))?;
        if resp.status() != 201 {
            return Err(AuthError::Unavailable(format!(
                "the service credentials ([keystone_authtoken]) were refused: HTTP {}",
                resp.status()
            )));
        }
        let token = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| AuthError::Unavailable("Keystone returned no token".into()))?;
        let body = read_json(resp)?;
        let life = parse_expiry(&body).unwrap_or(Duration::from_secs(300));
        let until = Instant::now() + life.saturating_sub(Duration::from_secs(60));
        if let Ok(mut g) = self.service.lock() {
            *g = Some((token.clone(), until));
        }
        Ok(token)
    }

    /// Who a token belongs to, if a validation of it is still cached (never blocks).
    pub fn cached(&self, token: &str) -> Option<Identity> {
        let c = self.cache.lock().ok()?;
        let (id, until) = c.get(token)?;
        (*until > Instant::now()).then(|| id.clone())
    }

    /// Who a token belongs to, from the cache or from Keystone.
    pub fn validate(&self, token: &str) -> Result<Identity, AuthError> {
        if let Some(id) = self.cached(token) {
            return Ok(id);
        }
        let mut service = self.service_token(false)?;
        for attempt in 0..2 {
            let resp = self
                .agent
                .get(&self.url("/v3/auth/tokens"))
                .header("X-Auth-Token", &service)
                .header("X-Subject-Token", token)
                .call()
                .map_err(|e| AuthError::Unavailable(format!("Keystone unreachable: {e}")))?;
            match resp.status().as_u16() {
                200 => {
                    let body = read_json(resp)?;
                    let life = parse_expiry(&body).ok_or(AuthError::Invalid)?;
                    let id = identity(&body["token"]);
                    let keep = life.min(Duration::from_secs(self.cfg.token_cache_time));
                    self.remember(token, &id, keep);
                    return Ok(id);
                }
                // Our own token was refused (expired early, revoked): renew once.
                401 if attempt == 0 => service = self.service_token(true)?,
                401 | 403 | 404 => return Err(AuthError::Invalid),
                other => {
                    return Err(AuthError::Unavailable(format!(
                        "Keystone answered HTTP {other} to a token validation"
                    )));
                }
            }
        }
        Err(AuthError::Invalid)
    }

    fn remember(&self, token: &str, id: &Identity, keep: Duration) {
        let Ok(mut c) = self.cache.lock() else { return };
        if c.len() >= CACHE_MAX {
            let now = Instant::now();
            c.retain(|_, (_, until)| *until > now);
            if c.len() >= CACHE_MAX {
                c.clear();
            }
        }
        c.insert(token.to_string(), (id.clone(), Instant::now() + keep));
    }

    /// Whether an X-Service-Token carries one of `service_token_roles`.
    pub fn is_service(&self, id: &Identity) -> bool {
        id.roles
            .iter()
            .any(|r| self.cfg.service_token_roles.contains(r))
    }

    pub fn service_roles_required(&self) -> bool {
        self.cfg.service_token_roles_required
    }
}
