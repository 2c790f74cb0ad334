//! The Locations API (v2.17): `GET/POST /v2/images/{id}/locations`, for the service role —
//! how Nova and Cinder read where an image lives and register data they wrote themselves.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::images::json_body;
use super::{AppState, json_response};
use crate::domain::image::Status;
use crate::domain::policy::Context;
use crate::error::{Error, Result};
use crate::service;

pub async fn list(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
) -> Result<Response> {
    let img = s.image(&ctx, &id).await?;
    // The service role only by default (locations can carry credentials).
    ctx.on_image(&img).enforce("fetch_image_location")?;
    let locs: Vec<Value> = img
        .locations
        .iter()
        .map(|l| json!({"url": l.url, "metadata": l.metadata}))
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Array(locs)))
}

pub async fn add(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let body = json_body(&body)?;
    let url = body
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::BadRequest("The location needs a 'url'.".into()))?
        .to_string();
    let vd = body.get("validation_data").cloned().unwrap_or(Value::Null);
    if !vd.is_null() {
        let ok = vd.is_object()
            && vd.get("os_hash_algo").is_some_and(Value::is_string)
                == vd.get("os_hash_value").is_some_and(Value::is_string)
            && vd
                .get("checksum")
                .is_none_or(|c| c.as_str().is_some_and(|c| c.len() == 32));
        if !ok {
            return Err(Error::BadRequest(
                "Provided object does not match schema 'location': invalid validation_data".into(),
            ));
        }
    }
    let img = s.image(&ctx, &id).await?;
    // Glance's order: the status, the policy (the service role, or the owner's members), then
    // the one check it makes outside the rules: without the service role (of the token or of a
    // service token) only http locations, and only where the http store is enabled.
    if img.status != Status::Queued {
        return Err(Error::Conflict(format!(
            "It's not allowed to add locations if image status is {}.",
            img.status.as_str()
        )));
    }
    ctx.on_image(&img).enforce("add_image_location")?;
    let http = (url.starts_with("http://") || url.starts_with("https://"))
        && s.stores.entries().iter().any(|e| e.kind == "http");
    if !(ctx.has_role_or_service_role("service") || http) {
        return Err(Error::Forbidden(
            "http store must be enabled to use location API by normal user.".into(),
        ));
    }
    service::locations::add(&s, &ctx, &img, &url, vd).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}
