//! Who may do what: the caller's context, and Glance's policy rules (`rules`, in oslo.policy's
//! language, `language`) checked against an image the way Glance's API checks them (a refusal
//! of an image the caller may not even `get_image` is a 404, not a 403). Property protections
//! (`protections`) decide which custom properties a caller may create, read, update, delete.
//!
//! Pure functions over the context and the image; where the identity comes from (noauth headers
//! or Keystone) is the auth layer's business.

pub mod language;
pub mod protections;
pub mod rules;

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{Value, json};

use super::fault::{Fault, Result};
use crate::domain::image::{Image, Visibility};
pub use language::{Target, TargetMap};
pub use protections::{Operation, PropertyRules};
pub use rules::{Decision, Policy, PolicyOptions, PolicySource};

/// Who is calling, as keystonemiddleware describes a token (or noauth headers do).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Caller {
    pub user_id: Option<String>,
    pub user_domain_id: Option<String>,
    /// Project-scoped tokens.
    pub project_id: Option<String>,
    pub project_domain_id: Option<String>,
    /// Domain-scoped tokens.
    pub domain_id: Option<String>,
    /// System-scoped tokens: `all`.
    pub system_scope: Option<String>,
    /// Lowercased, as Glance lowercases them.
    pub roles: Vec<String>,
    /// The roles of an `X-Service-Token`.
    pub service_roles: Vec<String>,
    pub service_user_id: Option<String>,
    pub service_project_id: Option<String>,
    pub is_admin_project: bool,
}

#[derive(Debug, Clone)]
pub struct Context {
    pub user_id: Option<String>,
    pub project_id: Option<String>,
    pub roles: Vec<String>,
    pub service_roles: Vec<String>,
    /// Glance's `context.is_admin`: the `context_is_admin` rule, decided once. It opens the
    /// database layer's views (every image is visible) and the few checks Glance hard-codes
    /// (changing an owner, downloading deactivated data).
    pub is_admin: bool,
    pub request_id: String,
    pub policy: Arc<Policy>,
    pub protections: Option<Arc<PropertyRules>>,
    /// What rules are checked against: oslo.context's policy values.
    creds: Value,
    /// As the token described it: what a task keeps to act for its creator later.
    pub caller: Caller,
}

impl Context {
    pub fn new(
        caller: Caller,
        request_id: String,
        policy: Arc<Policy>,
        protections: Option<Arc<PropertyRules>>,
    ) -> Self {
        let mut creds = json!({
            "user_id": caller.user_id,
            "user_domain_id": caller.user_domain_id,
            "system_scope": caller.system_scope,
            "domain_id": caller.domain_id,
            "project_id": caller.project_id,
            "project_domain_id": caller.project_domain_id,
            "roles": caller.roles,
            "is_admin_project": caller.is_admin_project,
            "service_user_id": caller.service_user_id,
            "service_project_id": caller.service_project_id,
            "service_roles": caller.service_roles,
        });
        if let Some(s) = &caller.system_scope {
            creds["system"] = json!(s);
        }
        let mut ctx = Context {
            user_id: caller.user_id.clone(),
            project_id: caller.project_id.clone(),
            roles: caller.roles.clone(),
            service_roles: caller.service_roles.clone(),
            caller,
            is_admin: false,
            request_id,
            policy,
            protections,
            creds,
        };
        ctx.is_admin = ctx.decide("context_is_admin", &TargetMap::new()) == Decision::Allow;
        ctx
    }

    /// A request without identity in noauth mode: an admin with no project (Glance's
    /// unauthenticated context, with the admin role so that the default rules let it work).
    pub fn unauthenticated(
        request_id: String,
        policy: Arc<Policy>,
        protections: Option<Arc<PropertyRules>>,
    ) -> Self {
        let mut ctx = Context::new(
            Caller {
                roles: vec!["admin".into()],
                is_admin_project: true,
                ..Caller::default()
            },
            request_id,
            policy,
            protections,
        );
        ctx.is_admin = true;
        ctx
    }

    pub fn owns(&self, image: &Image) -> bool {
        self.project_id.is_some() && image.owner == self.project_id
    }

    /// The role among the token's or the service token's roles (Glance's checks that do not
    /// go through a rule read both).
    pub fn has_role_or_service_role(&self, role: &str) -> bool {
        self.roles
            .iter()
            .chain(&self.service_roles)
            .any(|r| r == role)
    }

    pub fn decide(&self, action: &str, target: &dyn Target) -> Decision {
        self.policy.enforce(action, &self.creds, target)
    }

    pub fn allows(&self, action: &str, target: &dyn Target) -> bool {
        self.decide(action, target) == Decision::Allow
    }

    /// `action` on `target`, refused (403) in Glance's words.
    pub fn enforce(&self, action: &str, target: &dyn Target) -> Result<()> {
        match self.decide(action, target) {
            Decision::Allow => Ok(()),
            Decision::Deny | Decision::WrongScope => Err(denied(action)),
        }
    }

    /// Whether `[oslo_policy] enforce_new_defaults` is on: off, Glance adds its legacy
    /// ownership checks to the (then permissive) rules.
    pub fn new_defaults(&self) -> bool {
        self.policy.new_defaults()
    }

    /// The checks of an existing image, as Glance's `ImageAPIPolicy` makes them.
    pub fn on_image<'a>(&'a self, image: &'a Image) -> ImageChecks<'a> {
        ImageChecks {
            ctx: self,
            target: ImageTarget::new(self, image),
        }
    }

    /// Whether a custom property may be `op`-ed by this caller (always, without a property
    /// protection file).
    pub fn may(&self, property: &str, op: Operation) -> bool {
        self.protections
            .as_ref()
            .is_none_or(|p| p.allows(self, property, op))
    }

    pub(crate) fn creds(&self) -> &Value {
        &self.creds
    }
}

/// Glance's refusal of a policy action.
pub fn denied(action: &str) -> Fault {
    Fault::Denied {
        action: action.into(),
    }
}

/// Python's `str()` of an optional value.
fn py(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "None".to_string(), |v| v.to_string())
}

fn py_str(v: Option<&str>) -> Cow<'_, str> {
    Cow::Borrowed(v.unwrap_or("None"))
}

fn py_bool(b: bool) -> Cow<'static, str> {
    Cow::Borrowed(if b { "True" } else { "False" })
}

/// The policy target of an image, as Glance's `ImageTarget` shows it: the image's attributes
/// (`project_id` is the owner), its custom properties, and `member_id`: the caller's project
/// when the image is shared and someone else's (Glance found it because the caller is a
/// member). Values are made when a rule reads them: a list checks every image of a page.
pub struct ImageTarget<'a> {
    img: &'a Image,
    member: Option<&'a str>,
}

impl<'a> ImageTarget<'a> {
    pub fn new(ctx: &'a Context, img: &'a Image) -> Self {
        let member = (img.visibility == Visibility::Shared && ctx.project_id != img.owner)
            .then_some(ctx.project_id.as_deref())
            .flatten();
        ImageTarget { img, member }
    }
}

impl Target for ImageTarget<'_> {
    fn get(&self, key: &str) -> Option<Cow<'_, str>> {
        let img = self.img;
        let datetime =
            |d: &chrono::NaiveDateTime| Cow::Owned(d.format("%Y-%m-%d %H:%M:%S").to_string());
        Some(match key {
            "id" | "image_id" => Cow::Borrowed(img.id.as_str()),
            "name" => py_str(img.name.as_deref()),
            "status" => Cow::Borrowed(img.status.as_str()),
            "visibility" => Cow::Borrowed(img.visibility.as_str()),
            "protected" => py_bool(img.protected),
            "os_hidden" => py_bool(img.os_hidden),
            "checksum" => py_str(img.checksum.as_deref()),
            "os_hash_algo" => py_str(img.os_hash_algo.as_deref()),
            "os_hash_value" => py_str(img.os_hash_value.as_deref()),
            "owner" | "project_id" => py_str(img.owner.as_deref()),
            "member" | "member_id" => py_str(self.member),
            "size" => Cow::Owned(py(img.size)),
            "virtual_size" => Cow::Owned(py(img.virtual_size)),
            "min_ram" => Cow::Owned(img.min_ram.to_string()),
            "min_disk" => Cow::Owned(img.min_disk.to_string()),
            "disk_format" => py_str(img.disk_format.as_deref()),
            "container_format" => py_str(img.container_format.as_deref()),
            "created_at" => datetime(&img.created_at),
            "updated_at" => datetime(&img.updated_at),
            other => Cow::Borrowed(img.properties.get(other)?.as_str()),
        })
    }
}

/// The target of an image being created: its owner (the caller's project unless given) and
/// visibility (`private` unless given: Glance's policy default, not the image's).
pub fn create_target(owner: Option<&str>, visibility: Option<Visibility>) -> TargetMap {
    let owner = py(owner);
    TargetMap::from([
        ("project_id".to_string(), owner.clone()),
        ("owner".to_string(), owner),
        (
            "visibility".to_string(),
            visibility.map_or("private", Visibility::as_str).to_string(),
        ),
    ])
}

/// The target of a check about the caller's own project (`get_images`).
pub fn project_target(ctx: &Context) -> TargetMap {
    TargetMap::from([("project_id".to_string(), py(ctx.project_id.as_deref()))])
}

/// Glance's `ImageAPIPolicy` on one image.
pub struct ImageChecks<'a> {
    ctx: &'a Context,
    target: ImageTarget<'a>,
}

impl ImageChecks<'_> {
    /// `action` on the image: refused with 403, or 404 when the caller may not even see it
    /// (`get_image` itself, or any refusal when `get_image` would refuse too).
    pub fn enforce(&self, action: &str) -> Result<()> {
        if self.ctx.allows(action, &self.target) {
            return Ok(());
        }
        if action == "get_image" || !self.ctx.allows("get_image", &self.target) {
            return Err(Fault::Hidden);
        }
        Err(denied(action))
    }

    pub fn allows(&self, action: &str) -> bool {
        self.ctx.allows(action, &self.target)
    }

    /// Glance's member checks (`MemberAPIPolicy`): `get_image` first (404), then the rule.
    pub fn enforce_member(&self, action: &str) -> Result<()> {
        self.enforce("get_image")?;
        if self.ctx.allows(action, &self.target) {
            Ok(())
        } else {
            Err(denied(action))
        }
    }

    /// Setting a visibility: public needs `publicize_image`, community `communitize_image`
    /// (refused with 403 whatever `get_image` says).
    pub fn enforce_visibility(&self, v: Visibility) -> Result<()> {
        let action = match v {
            Visibility::Public => "publicize_image",
            Visibility::Community => "communitize_image",
            _ => return Ok(()),
        };
        self.ctx.enforce(action, &self.target)
    }

    /// An action that changes the image (`modify_image`, `upload_image`, `delete_image`,
    /// `deactivate`, ...), with Glance's legacy owner check when the new defaults are off.
    pub fn enforce_mutation(&self, action: &str) -> Result<()> {
        self.enforce(action)?;
        if !self.ctx.new_defaults() && !self.ctx.is_admin && !self.ctx.owns(self.target.img) {
            return Err(Fault::NotOwner);
        }
        Ok(())
    }
}

/// Creating an image: `add_image` on its owner (a refusal for another owner words it so),
/// then the visibility's rule; with the new defaults off, Glance's legacy owner check.
pub fn check_create(
    ctx: &Context,
    owner: Option<&str>,
    visibility: Option<Visibility>,
) -> Result<()> {
    let target = create_target(owner, visibility);
    let foreign = |o: Option<&str>, legacy| Fault::ForeignOwner {
        owner: o.map(str::to_string),
        legacy,
    };
    if let Err(e) = ctx.enforce("add_image", &target) {
        return Err(if owner != ctx.project_id.as_deref() {
            foreign(owner, false)
        } else {
            e
        });
    }
    if let Some(v) = visibility {
        let action = match v {
            Visibility::Public => Some("publicize_image"),
            Visibility::Community => Some("communitize_image"),
            _ => None,
        };
        if let Some(a) = action {
            ctx.enforce(a, &target)?;
        }
    }
    if !ctx.new_defaults() && !ctx.is_admin && owner != ctx.project_id.as_deref() {
        return Err(foreign(owner, true));
    }
    Ok(())
}

/// Whether the caller may know the image exists: Glance's database-layer visibility.
/// `is_member`: the caller's project is a member of the image (any member status).
pub fn can_see(ctx: &Context, image: &Image, is_member: bool) -> bool {
    ctx.is_admin
        || image.owner.is_none()
        || matches!(image.visibility, Visibility::Public | Visibility::Community)
        || ctx.owns(image)
        || (image.visibility == Visibility::Shared && is_member)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(project: Option<&str>, roles: &[&str], system: bool) -> Context {
        Context::new(
            Caller {
                project_id: project.map(str::to_string),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                system_scope: system.then(|| "all".to_string()),
                is_admin_project: true,
                ..Caller::default()
            },
            "req".into(),
            Arc::new(Policy::default()),
            None,
        )
    }

    fn image(owner: &str, v: Visibility) -> Image {
        let ts = chrono::NaiveDateTime::default();
        Image {
            id: "i".into(),
            name: None,
            status: crate::domain::image::Status::Active,
            visibility: v,
            protected: false,
            os_hidden: false,
            checksum: None,
            os_hash_algo: None,
            os_hash_value: None,
            owner: Some(owner.into()),
            size: None,
            virtual_size: None,
            container_format: None,
            disk_format: None,
            created_at: ts,
            updated_at: ts,
            min_ram: 0,
            min_disk: 0,
            tags: Default::default(),
            properties: Default::default(),
            locations: vec![],
        }
    }

    #[test]
    fn is_admin_is_the_context_is_admin_rule() {
        assert!(ctx(Some("p"), &["admin"], false).is_admin);
        // No scope on context_is_admin: a system admin is an admin for the database layer.
        assert!(ctx(None, &["admin"], true).is_admin);
        assert!(!ctx(Some("p"), &["member"], false).is_admin);
    }

    #[test]
    fn refusals_hide_what_get_image_hides() {
        let img = image("p1", Visibility::Private);
        let reader = ctx(Some("p1"), &["reader"], false);
        // A reader sees the image but may not change it: 403.
        let e = reader.on_image(&img).enforce("modify_image").unwrap_err();
        assert!(matches!(e, Fault::Denied { ref action } if action == "modify_image"));
        let system = ctx(None, &["admin"], true);
        // A system-scoped token fails every project rule, get_image too: 404.
        let e = system.on_image(&img).enforce("modify_image").unwrap_err();
        assert!(matches!(e, Fault::Hidden));
        let e = system.on_image(&img).enforce("get_image").unwrap_err();
        assert!(matches!(e, Fault::Hidden));
        // Members: get_image (404) before the rule (403).
        let shared = image("p1", Visibility::Shared);
        let member_reader = ctx(Some("p2"), &["reader"], false);
        let e = member_reader
            .on_image(&shared)
            .enforce_member("modify_member")
            .unwrap_err();
        assert!(matches!(e, Fault::Denied { .. }));
        let member = ctx(Some("p2"), &["member", "reader"], false);
        assert!(
            member
                .on_image(&shared)
                .enforce_member("modify_member")
                .is_ok()
        );
        assert!(
            member
                .on_image(&shared)
                .enforce_member("add_member")
                .is_err()
        );
    }

    #[test]
    fn create_words_a_foreign_owner() {
        let member = ctx(Some("p1"), &["member"], false);
        assert!(check_create(&member, Some("p1"), None).is_ok());
        let e = check_create(&member, Some("p2"), None).unwrap_err();
        assert!(e.to_string().contains("owned by 'p2'"), "{e}");
        let e = check_create(&member, Some("p1"), Some(Visibility::Public)).unwrap_err();
        assert!(e.to_string().contains("publicize_image"), "{e}");
        let system = ctx(None, &["admin"], true);
        let e = check_create(&system, None, None).unwrap_err();
        assert!(e.to_string().contains("add_image"), "{e}");
    }
}
