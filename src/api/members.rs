//! `/v2/images/{id}/members`: the member list of a shared image (see `service::members`).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::images::json_body;
use super::{AppState, json_response};
use crate::db::members::Member;
use crate::domain::policy::Context;
use crate::error::{Error, Result};
use crate::service::members;

fn render(m: &Member) -> Value {
    let t = super::images::isotime;
    // Glance's key order.
    json!({
        "member_id": m.member_id,
        "image_id": m.image_id,
        "status": m.status,
        "created_at": t(&m.created_at),
        "updated_at": t(&m.updated_at),
        "schema": "/v2/schemas/member",
    })
}

pub async fn list(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
) -> Result<Response> {
    let members = members::list(&s, &ctx, &id).await?;
    let body = json!({
        "members": members.iter().map(render).collect::<Vec<_>>(),
        "schema": "/v2/schemas/members",
    });
    Ok(json_response(StatusCode::OK, &body))
}

pub async fn show(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path((id, member)): Path<(String, String)>,
) -> Result<Response> {
    let m = members::show(&s, &ctx, &id, &member).await?;
    Ok(json_response(StatusCode::OK, &render(&m)))
}

pub async fn add(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let body = json_body(&body)?;
    let member = match body.get("member") {
        None if body.is_object() => {
            return Err(Error::BadRequest("Member to be added not specified".into()));
        }
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(Value::String(_)) | Some(Value::Null) => {
            return Err(Error::BadRequest("Member can't be empty".into()));
        }
        _ => {
            return Err(Error::BadRequest(
                "Expected a member in the form: {\"member\": \"image_id\"}".into(),
            ));
        }
    };
    if member.chars().count() > 255 {
        return Err(Error::BadRequest(
            "Member id is longer than 255 characters.".into(),
        ));
    }
    let m = members::add(&s, &ctx, &id, &member).await?;
    Ok(json_response(StatusCode::OK, &render(&m)))
}

pub async fn update(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path((id, member)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let body = json_body(&body)?;
    let status = match body.get("status") {
        None if body.is_object() => return Err(Error::BadRequest("Status not specified".into())),
        // Any other value fails the service's value check, as in Glance's domain model.
        Some(v) => v.as_str().unwrap_or_default().to_string(),
        None => {
            return Err(Error::BadRequest(
                "Expected a status in the form: {\"status\": \"status\"}".into(),
            ));
        }
    };
    let m = members::set_status(&s, &ctx, &id, &member, &status).await?;
    Ok(json_response(StatusCode::OK, &render(&m)))
}

pub async fn delete(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path((id, member)): Path<(String, String)>,
) -> Result<Response> {
    members::remove(&s, &ctx, &id, &member).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
