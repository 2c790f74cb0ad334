//! Who may do what: the caller's context, and the checks of Glance's policy rules (defaults or
//! the operator's policy file, see `rules`) against an image.
//!
//! Pure functions over the context and the image; where the identity comes from (noauth headers
//! or Keystone) is the auth layer's business.

use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::image::{Image, Visibility};
use crate::domain::rules::{Creds, Policy};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Context {
    pub project_id: Option<String>,
    pub user_id: Option<String>,
    pub roles: Vec<String>,
    pub is_admin: bool,
    pub request_id: String,
    pub policy: Arc<Policy>,
}

impl Context {
    /// Glance's unauthenticated context: an admin with no project.
    pub fn unauthenticated(request_id: String, policy: Arc<Policy>) -> Self {
        Context {
            project_id: None,
            user_id: None,
            roles: vec!["admin".into()],
            is_admin: true,
            request_id,
            policy,
        }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    pub fn owns(&self, image: &Image) -> bool {
        self.project_id.is_some() && image.owner == self.project_id
    }

    /// Checks `action` against a target (`project_id`/`owner`, `visibility`, `member_id`, ...).
    pub fn enforce(&self, action: &str, target: &HashMap<&str, String>) -> Result<()> {
        let creds = Creds {
            roles: &self.roles,
            project_id: self.project_id.as_deref(),
            user_id: self.user_id.as_deref(),
            is_admin: self.is_admin,
        };
        if self.policy.allows(action, &creds, target) {
            Ok(())
        } else {
            Err(denied(action))
        }
    }

    /// `action` on an image: the target is the image's owner and visibility.
    pub fn enforce_on(&self, action: &str, image: &Image) -> Result<()> {
        self.enforce(action, &target(image))
    }
}

/// Glance's refusal of a policy action.
pub fn denied(action: &str) -> Error {
    Error::Forbidden(format!(
        "You are not authorized to complete {action} action."
    ))
}

/// The policy target of an image, as Glance builds it.
pub fn target(image: &Image) -> HashMap<&'static str, String> {
    let owner = image.owner.clone().unwrap_or_default();
    HashMap::from([
        ("project_id", owner.clone()),
        ("owner", owner),
        ("visibility", image.visibility.as_str().to_string()),
    ])
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
    ctx.enforce_on("modify_image", image)
}

pub fn check_delete(ctx: &Context, image: &Image) -> Result<()> {
    ctx.enforce_on("delete_image", image)
}

pub fn check_upload(ctx: &Context, image: &Image) -> Result<()> {
    ctx.enforce_on("upload_image", image)
}

pub fn check_deactivate(ctx: &Context, image: &Image, action: &str) -> Result<()> {
    ctx.enforce_on(action, image)
}

/// Setting a visibility: public needs publicize_image, community communitize_image.
pub fn check_visibility(ctx: &Context, image: &Image, v: Visibility) -> Result<()> {
    match v {
        Visibility::Public => ctx.enforce_on("publicize_image", image),
        Visibility::Community => ctx.enforce_on("communitize_image", image),
        _ => Ok(()),
    }
}

pub fn check_create(ctx: &Context, owner: Option<&str>) -> Result<()> {
    let project = owner
        .map(str::to_string)
        .or_else(|| ctx.project_id.clone())
        .unwrap_or_default();
    let target = HashMap::from([("project_id", project.clone()), ("owner", project)]);
    // An owner other than the caller's project: Glance words any refusal of it as such.
    let foreign = owner.filter(|o| Some(*o) != ctx.project_id.as_deref());
    let refused = |o: &str| {
        Error::Forbidden(format!(
            "You are not permitted to create images owned by '{o}'"
        ))
        .as_detail()
    };
    if let Err(e) = ctx.enforce("add_image", &target) {
        return Err(foreign.map_or(e, refused));
    }
    match foreign {
        Some(o) if !ctx.is_admin => Err(refused(o)),
        _ => Ok(()),
    }
}

pub fn check_download(ctx: &Context, image: &Image) -> Result<()> {
    if image.status == crate::domain::image::Status::Deactivated && !ctx.is_admin {
        return Err(Error::Forbidden(
            "The requested image has been deactivated. Image data download is forbidden.".into(),
        ));
    }
    ctx.enforce_on("download_image", image)
}
