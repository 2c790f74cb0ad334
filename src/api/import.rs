//! `POST /v2/images/{id}/import` and `PUT /v2/images/{id}/stage`: interoperable image import.
//! glance-rs offers no import method yet, so it answers as a Glance whose
//! `enabled_import_methods` is empty: `/v2/info/import` lists none, create sends no
//! `OpenStack-image-import-methods` header, and these two refuse in Glance's words, so clients
//! fall back to (or tell the user to use) `PUT /file`.

use axum::body::Bytes;
use axum::response::Response;
use serde_json::Value;

use super::images::json_body;
use crate::error::{Error, Result};

/// The methods this node offers (`enabled_import_methods`).
pub const ENABLED_METHODS: &[&str] = &[];

/// The body is checked before the image is looked at, as Glance's request parser does.
pub async fn import(body: Bytes) -> Result<Response> {
    let body = json_body(&body)?;
    let method = body
        .get("method")
        .ok_or_else(|| Error::BadRequest("Import request requires a 'method' field.".into()))?;
    let name = method
        .get("name")
        .ok_or_else(|| Error::BadRequest("Import request requires a 'name' field.".into()))?;
    let name = match name {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Err(Error::BadRequest(format!(
        "Unknown import method name '{name}'."
    )))
}

pub async fn stage() -> Result<Response> {
    Err(Error::NotFound(
        "'glance-direct' method is not available at this site.".into(),
    ))
}
