//! `/v2/images/{id}/tags/{tag}`: add and remove one tag.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::domain::policy::Context;
use crate::error::{Error, Result};
use crate::service::images::check_quotas;

/// A tag with an encoded `/` splits the path in Glance's router: no such resource.
fn no_slash(tag: &str) -> Result<()> {
    if tag.contains('/') {
        return Err(Error::NotFound(String::new()));
    }
    Ok(())
}

pub async fn add(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path((id, tag)): Path<(String, String)>,
) -> Result<Response> {
    no_slash(&tag)?;
    s.schemas
        .validate_image(&serde_json::json!({ "tags": [tag] }))?;
    let img = s.parent_image(&ctx, &id).await?;
    ctx.on_image(&img).enforce_mutation("modify_image")?;
    if !img.tags.contains(&tag) {
        let mut updated = img.clone();
        updated.tags.insert(tag);
        check_quotas(&s.cfg, &updated)?;
        s.db.save_image(&img, &updated).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn remove(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path((id, tag)): Path<(String, String)>,
) -> Result<Response> {
    no_slash(&tag)?;
    let img = s.parent_image(&ctx, &id).await?;
    ctx.on_image(&img).enforce_mutation("modify_image")?;
    if !img.tags.contains(&tag) {
        return Err(Error::NotFound(String::new()));
    }
    let mut updated = img.clone();
    updated.tags.remove(&tag);
    s.db.save_image(&img, &updated).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
