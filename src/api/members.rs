//! `/v2/images/{id}/members`: sharing a `shared` image with other projects. The owner adds
//! and removes members; each member accepts or rejects; a member sees only its own entry.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::images::json_body;
use super::{AppState, json_response};
use crate::db::members::Member;
use crate::domain::image::{Image, Visibility};
use crate::domain::policy::{self, Context};
use crate::error::{Error, Result};

fn render(m: &Member) -> Value {
    let t = |d: &chrono::NaiveDateTime| d.format("%Y-%m-%dT%H:%M:%SZ").to_string();
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

/// Only shared images have members. Glance checks this first and words the refusal per
/// operation ("create", "update", "delete", "list"; "show" answers 404 so as not to tell).
fn shared_only(img: &Image, op: &str) -> Result<()> {
    if img.visibility == Visibility::Shared {
        return Ok(());
    }
    const WHY: &str = "Only shared images have members.";
    let id = &img.id;
    Err(match op {
        "show" => Error::NotFound(WHY.into()),
        "list" => Error::Forbidden(format!("Not allowed to list members for image {id}: {WHY}")),
        _ => Error::Forbidden(format!("Not allowed to {op} members for image {id}.")),
    })
}

/// The owner's project members (and admins) manage the member list; others are refused in
/// the words of Glance's policy (`action`: add_member, delete_member).
fn owner_only(ctx: &Context, img: &Image, action: &str) -> Result<()> {
    if ctx.is_admin || (ctx.owns(img) && ctx.has_role("member")) {
        Ok(())
    } else {
        Err(policy::denied(action))
    }
}

/// Members the caller may see: all for the owner and admins, else only its own entry.
fn visible_to(ctx: &Context, img: &Image, members: Vec<Member>) -> Vec<Member> {
    if ctx.is_admin || ctx.owns(img) {
        return members;
    }
    members
        .into_iter()
        .filter(|m| Some(&m.member_id) == ctx.project_id.as_ref())
        .collect()
}

pub async fn list(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
) -> Result<Response> {
    let img = s.visible_parent_image(&ctx, &id).await?;
    shared_only(&img, "list")?;
    let members = visible_to(&ctx, &img, s.db.list_members(&id).await?);
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
    let img = s.visible_parent_image(&ctx, &id).await?;
    shared_only(&img, "show")?;
    let found = visible_to(&ctx, &img, s.db.list_members(&id).await?)
        .into_iter()
        .find(|m| m.member_id == member)
        .ok_or_else(|| not_a_member(&member, &id))?;
    Ok(json_response(StatusCode::OK, &render(&found)))
}

/// `member` of the image, or a 404 (Glance looks it up before the policy check).
async fn find_member(s: &AppState, id: &str, member: &str) -> Result<Member> {
    let members = s.db.list_members(id).await?;
    let found = members.into_iter().find(|m| m.member_id == member);
    found.ok_or_else(|| not_a_member(member, id))
}

fn not_a_member(member: &str, id: &str) -> Error {
    Error::NotFound(format!(
        "{member} not found in the member list of the image {id}."
    ))
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
    let img = s.visible_parent_image(&ctx, &id).await?;
    shared_only(&img, "create")?;
    owner_only(&ctx, &img, "add_member")?;
    let m =
        s.db.add_member(&id, &member, s.cfg.image_member_quota)
            .await?;
    tracing::info!(image_id = %id, member = %member, "member added");
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
        // Any other value fails the value check below, as in Glance's domain model.
        Some(v) => v.as_str().unwrap_or_default().to_string(),
        None => {
            return Err(Error::BadRequest(
                "Expected a status in the form: {\"status\": \"status\"}".into(),
            ));
        }
    };
    // Glance's order: the image, shared, the member, the policy, then the status's value.
    let img = s.visible_parent_image(&ctx, &id).await?;
    shared_only(&img, "update")?;
    let mut m = find_member(&s, &id, &member).await?;
    // Only the member itself (or an admin) says whether it accepts the image.
    if !(ctx.is_admin || ctx.project_id.as_deref() == Some(member.as_str())) {
        return Err(policy::denied("modify_member"));
    }
    if !matches!(status.as_str(), "pending" | "accepted" | "rejected") {
        return Err(Error::BadRequest(
            "Incorrect request: Status must be \"pending\", \"accepted\" or \"rejected\".".into(),
        ));
    }
    if !s.db.set_member_status(&mut m, &status).await? {
        return Err(not_a_member(&member, &id));
    }
    Ok(json_response(StatusCode::OK, &render(&m)))
}

pub async fn delete(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path((id, member)): Path<(String, String)>,
) -> Result<Response> {
    let img = s.visible_parent_image(&ctx, &id).await?;
    shared_only(&img, "delete")?;
    find_member(&s, &id, &member).await?;
    owner_only(&ctx, &img, "delete_member")?;
    if !s.db.delete_member(&id, &member).await? {
        return Err(not_a_member(&member, &id));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
