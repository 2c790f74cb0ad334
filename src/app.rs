//! The application: everything a request or a background job needs (configuration, database,
//! stores, policy, the work engine), built once at start-up and shared.

use std::sync::Arc;

use crate::config::Config;
use crate::db::Db;
use crate::domain::fault::{Fault, Lookup, Result};
use crate::domain::image::Image;
use crate::domain::policy::{self, Context};
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
    /// Glance's notifications (`[oslo_messaging_notifications]`).
    pub notifier: Arc<crate::notifier::Notifier>,
}

impl App {
    /// The image if the caller may know it exists (Glance's database-layer visibility), else
    /// not found, in the words of the Glance handler `lookup` names. Policy checks follow in
    /// each service (`ctx.on_image`), as in Glance.
    pub async fn find_image(&self, ctx: &Context, id: &str, lookup: Lookup) -> Result<Image> {
        let missing = || Fault::ImageNotFound {
            id: id.to_string(),
            lookup,
        };
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

    /// `find_image` as Glance's images controller looks it up.
    pub async fn image(&self, ctx: &Context, id: &str) -> Result<Image> {
        self.find_image(ctx, id, Lookup::Image).await
    }

    /// `find_image` as Glance's tags and members controllers look it up.
    pub async fn parent_image(&self, ctx: &Context, id: &str) -> Result<Image> {
        self.find_image(ctx, id, Lookup::Parent).await
    }
}
