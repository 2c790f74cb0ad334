//! The read-only http store: serves images whose location is an http(s) URL (registered with
//! the Locations API or PATCH). Nothing is ever written or deleted there.

use std::io::Read;
use std::time::Duration;

use super::{ImageWriter, Store, StoreError};
use crate::domain::image::Location;

pub struct HttpStore {
    agent: ureq::Agent,
}

/// An HTTP client's settings for fetching image data: the system's TLS, 30 s to connect.
pub fn agent_config() -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::NativeTls)
                .build(),
        )
        .timeout_connect(Some(Duration::from_secs(30)))
}

impl Default for HttpStore {
    fn default() -> Self {
        HttpStore {
            agent: ureq::Agent::new_with_config(agent_config().build()),
        }
    }
}

fn is_http(loc: &Location) -> bool {
    loc.url.starts_with("http://") || loc.url.starts_with("https://")
}

fn remote(e: ureq::Error, url: &str) -> StoreError {
    match e {
        ureq::Error::StatusCode(404) => StoreError::NotFound(url.to_string()),
        other => StoreError::Other(format!("{url}: {other}")),
    }
}

impl Store for HttpStore {
    fn scheme(&self) -> &'static str {
        "http"
    }

    fn timeout(&self) -> Option<Duration> {
        Some(Duration::from_secs(60))
    }

    fn owns(&self, location: &Location) -> bool {
        is_http(location)
    }

    fn begin_write(
        &self,
        _: &str,
        _: Option<u64>,
        _: &str,
    ) -> Result<Box<dyn ImageWriter>, StoreError> {
        Err(StoreError::ReadOnly)
    }

    fn open_read(
        &self,
        location: &Location,
        offset: u64,
    ) -> Result<Box<dyn Read + Send>, StoreError> {
        let mut req = self.agent.get(&location.url);
        if offset > 0 {
            req = req.header("Range", &format!("bytes={offset}-"));
        }
        let resp = req.call().map_err(|e| remote(e, &location.url))?;
        if offset > 0 && resp.status() != 206 {
            return Err(StoreError::Other(format!(
                "{} does not serve ranges",
                location.url
            )));
        }
        Ok(Box::new(resp.into_body().into_reader()))
    }

    fn delete(&self, _: &Location) -> Result<(), StoreError> {
        // The data belongs to someone else: dropping the location is all there is to do.
        Ok(())
    }

    fn size(&self, location: &Location) -> Result<u64, StoreError> {
        let resp = self
            .agent
            .head(&location.url)
            .call()
            .map_err(|e| remote(e, &location.url))?;
        resp.headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| StoreError::Other(format!("{} has no Content-Length", location.url)))
    }
}
