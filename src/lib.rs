#![recursion_limit = "256"]
//! glance-rs: the OpenStack Image service (Glance API v2) in Rust.
//!
//! Layout: `api` (HTTP handlers, one file per resource), `domain` (image model, status machine,
//! JSON-patch, list queries, policy; no I/O), `db` (sqlx repositories), `store` (image bytes),
//! `ingest` (the upload pipeline), `digest` (its hashes), `auth` (who is calling), `config`, `error`.

pub mod api;
pub mod auth;
pub mod config;
pub mod db;
pub mod digest;
pub mod domain;
pub mod error;
pub mod format;
pub mod ingest;
pub mod store;
