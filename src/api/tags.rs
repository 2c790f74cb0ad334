//! `/v2/images/{id}/tags/{tag}`: add and remove one tag.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::domain::policy::Context;
use crate::error::{Error, Result};
use crate::service::images;

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
    images::add_tag(&s, &ctx, &id, &tag).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn remove(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path((id, tag)): Path<(String, String)>,
) -> Result<Response> {
    no_slash(&tag)?;
    images::remove_tag(&s, &ctx, &id, &tag).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
