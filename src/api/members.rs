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
use crate::domain::policy::Context;
use crate::error::{Error, Result};

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

/// Glance's legacy ownership checks, made only with `enforce_new_defaults = false` (the rules
/// then let anyone through): only the owner adds and removes members, only members set their
/// status. Refused in the words the calling Glance handler gives a refusal.
fn legacy_owner_check(ctx: &Context, img: &Image, op: &str) -> Result<()> {
    if ctx.new_defaults() || ctx.is_admin {
        return Ok(());
    }
    let refused = match op {
        "create" | "delete" => !ctx.owns(img),
        "update" => ctx.owns(img),
        _ => false,
    };
    if refused {
        return Err(Error::Forbidden(format!(
            "Not allowed to {op} members for image {}.",
            img.id
        )));
    }
    Ok(())
}

/// Members the caller may see (Glance's database layer): all for the owner and admins, else
/// only its own entry.
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
    let img = s.parent_image(&ctx, &id).await?;
    shared_only(&img, "list")?;
    let checks = ctx.on_image(&img);
    checks.enforce_member("get_members")?;
    let mut members = visible_to(&ctx, &img, s.db.list_members(&id).await?);
    // Each member is shown if get_member allows it (its target is the image: all or none).
    if !checks.allows("get_member") {
        members.clear();
    }
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
    let img = s.parent_image(&ctx, &id).await?;
    shared_only(&img, "show")?;
    // Glance answers a refused get_member with a 404 in the policy's words.
    ctx.on_image(&img)
        .enforce_member("get_member")
        .map_err(|e| match e {
            Error::Forbidden(m) => Error::NotFound(m),
            e => e,
        })?;
    let found = visible_to(&ctx, &img, s.db.list_members(&id).await?)
        .into_iter()
        .find(|m| m.member_id == member)
        .ok_or_else(|| not_a_member(&member, &id))?;
    Ok(json_response(StatusCode::OK, &render(&found)))
}

/// `member` of the image, once `get_member` allows looking (403), or a 404 (Glance looks it up
/// before the operation's own policy check).
async fn find_member(s: &AppState, ctx: &Context, img: &Image, member: &str) -> Result<Member> {
    ctx.on_image(img).enforce_member("get_member")?;
    let id = &img.id;
    let members = visible_to(ctx, img, s.db.list_members(id).await?);
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
    let img = s.parent_image(&ctx, &id).await?;
    shared_only(&img, "create")?;
    legacy_owner_check(&ctx, &img, "create")?;
    ctx.on_image(&img).enforce_member("add_member")?;
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
    let img = s.parent_image(&ctx, &id).await?;
    shared_only(&img, "update")?;
    legacy_owner_check(&ctx, &img, "update")?;
    let mut m = find_member(&s, &ctx, &img, &member).await?;
    ctx.on_image(&img).enforce_member("modify_member")?;
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
    let img = s.parent_image(&ctx, &id).await?;
    shared_only(&img, "delete")?;
    legacy_owner_check(&ctx, &img, "delete")?;
    find_member(&s, &ctx, &img, &member).await?;
    ctx.on_image(&img).enforce_member("delete_member")?;
    if !s.db.delete_member(&id, &member).await? {
        return Err(not_a_member(&member, &id));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
