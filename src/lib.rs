#![recursion_limit = "256"]
//! glance-rs: the OpenStack Image service (Glance API v2) in Rust.
//!
//! Layout: `api` (HTTP handlers, one file per resource), `domain` (image model, status machine,
//! JSON-patch, list queries, policy; no I/O), `db` (sqlx repositories), `store` (image bytes),
//! `ingest` (the upload pipeline), `digest` (its hashes), `auth` (who is calling), `work` (leased
//! work that survives any node), `config`, `error`, `json` (Glance's JSON spacing), `logging` (oslo.log's lines).

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod db;
pub mod digest;
pub mod domain;
pub mod error;
pub mod format;
pub mod ingest;
pub mod json;
pub mod logging;
pub mod manage;
pub mod memory;
pub mod notifier;
pub mod notify;
pub mod service;
pub mod store;
pub mod work;

/// The integration tests' seeded generator, for the unit tests too.
#[cfg(test)]
#[path = "../tests/common/rng.rs"]
mod test_rng;

/// Helpers shared by unit tests.
#[cfg(test)]
pub(crate) mod testutil {
    pub(crate) use crate::test_rng as rng;

    /// `len` deterministic pseudo-random bytes (xorshift64).
    pub fn pseudo_random(len: usize) -> Vec<u8> {
        let mut x = 0x9e3779b97f4a7c15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }
}
