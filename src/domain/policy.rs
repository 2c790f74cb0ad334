//! Who may do what: the caller's context and Glance's default (secure RBAC) image rules.
//!
//! Pure functions over the context and the image; where the identity comes from (noauth headers
//! now, Keystone later) is the auth layer's business.

use crate::domain::image::{Image, Visibility};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Context {
    pub project_id: Option<String>,
    pub user_id: Option<String>,
    pub roles: Vec<String>,
    pub is_admin: bool,
    pub request_id: String,
}

impl Context {
    /// Glance's unauthenticated context: an admin with no project.
    pub fn unauthenticated(request_id: String) -> Self {
        Context {
            project_id: None,
            user_id: None,
            roles: vec!["admin".into()],
            is_admin: true,
            request_id,
        }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    pub fn owns(&self, image: &Image) -> bool {
        self.project_id.is_some() && image.owner == self.project_id
    }

    /// `project_member_or_admin` in Glance's base policies.
    fn member_of_owner(&self, image: &Image) -> bool {
        self.is_admin || (self.owns(image) && self.has_role("member"))
    }
}

fn denied(action: &str) -> Error {
    Error::Forbidden(format!(
        "You are not authorized to complete {action} action."
    ))
}

/// Whether the caller may know the image exists. `is_member` says the caller's project is a
/// member of the image (any member status).
pub fn can_see(ctx: &Context, image: &Image, is_member: bool) -> bool {
    ctx.is_admin
        || matches!(image.visibility, Visibility::Public | Visibility::Community)
        || ctx.owns(image)
        || (image.visibility == Visibility::Shared && is_member)
}

pub fn check_modify(ctx: &Context, image: &Image) -> Result<()> {
    ctx.member_of_owner(image)
        .then_some(())
        .ok_or_else(|| denied("modify_image"))
}

pub fn check_delete(ctx: &Context, image: &Image) -> Result<()> {
    ctx.member_of_owner(image)
        .then_some(())
        .ok_or_else(|| denied("delete_image"))
}

pub fn check_upload(ctx: &Context, image: &Image) -> Result<()> {
    ctx.member_of_owner(image)
        .then_some(())
        .ok_or_else(|| denied("upload_image"))
}

pub fn check_deactivate(ctx: &Context, image: &Image, action: &str) -> Result<()> {
    ctx.member_of_owner(image)
        .then_some(())
        .ok_or_else(|| denied(action))
}

/// Setting a visibility: public needs admin (publicize_image), community needs the owner's member
/// (communitize_image).
pub fn check_visibility(ctx: &Context, image: &Image, v: Visibility) -> Result<()> {
    match v {
        Visibility::Public if !ctx.is_admin => Err(denied("publicize_image")),
        Visibility::Community if !ctx.member_of_owner(image) => Err(denied("communitize_image")),
        _ => Ok(()),
    }
}

pub fn check_create(ctx: &Context, owner: Option<&str>) -> Result<()> {
    if ctx.is_admin {
        return Ok(());
    }
    if !ctx.has_role("member") {
        return Err(denied("add_image"));
    }
    match owner {
        Some(o) if Some(o) != ctx.project_id.as_deref() => Err(Error::Forbidden(format!(
            "You are not permitted to create images owned by '{o}'."
        ))),
        _ => Ok(()),
    }
}

pub fn check_download(ctx: &Context, image: &Image) -> Result<()> {
    if image.status == crate::domain::image::Status::Deactivated && !ctx.is_admin {
        return Err(Error::Forbidden(
            "The requested image has been deactivated. Image data download is forbidden.".into(),
        ));
    }
    Ok(())
}
