//! The application: everything a request or a background job needs (configuration, database,
//! stores, policy, the work engine), built once at start-up and shared.

use std::sync::Arc;

use crate::config::Config;
use crate::db::Db;
use crate::domain::image::Image;
use crate::domain::policy::{self, Context};
use crate::error::{Error, Result};
use crate::store::Stores;

#[derive(Clone)]
pub struct App {
    pub cfg: Arc<Config>,
    pub db: Db,
    pub stores: Arc<Stores>,
    /// Glance's policy rules (defaults, or the operator's policy file).
    pub policy: Arc<crate::domain::policy::Policy>,
    /// `[DEFAULT] property_protection_file`, when set.
    pub protections: Option<Arc<crate::domain::policy::PropertyRules>>,
    /// Leased work: what another node undoes if this one dies.
    pub engine: Arc<crate::work::Engine>,
    /// Token validation, with `[paste_deploy] flavor = keystone`.
    pub keystone: Option<Arc<crate::auth::keystone::Keystone>>,
    pub schemas: Arc<crate::api::schemas::Schemas>,
    /// Set on SIGTERM while the node drains (`shutdown_drain_timeout`): `/healthcheck` fails.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

impl App {
    /// The image if the caller may know it exists (Glance's database-layer visibility), else
    /// `missing()`, the 404 in the calling Glance handler's words. Policy checks follow in each
    /// handler (`ctx.on_image`), as in Glance.
    pub async fn find_image(
        &self,
        ctx: &Context,
        id: &str,
        missing: impl Fn() -> Error,
    ) -> Result<Image> {
        let Some(img) = self.db.get_image(id).await? else {
            return Err(missing());
        };
        let member = !ctx.is_admin
            && !ctx.owns(&img)
            && self.db.is_member(id, ctx.project_id.as_deref()).await?;
        if !policy::can_see(ctx, &img, member) {
            return Err(missing());
        }
        Ok(img)
    }

    /// `find_image` with the 404 of Glance's images controller.
    pub async fn image(&self, ctx: &Context, id: &str) -> Result<Image> {
        self.find_image(ctx, id, || Error::image_not_found(id))
            .await
    }

    /// `find_image` with the 404 of Glance's tags and members controllers.
    pub async fn parent_image(&self, ctx: &Context, id: &str) -> Result<Image> {
        self.find_image(ctx, id, || {
            Error::NotFound(format!("Image {id} not found."))
        })
        .await
    }
}
