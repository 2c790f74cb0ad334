//! Images: creating one from a JSON object (the API's body, or an import task's
//! `image_properties`), listing, changing (JSON-patch changes, tags, deactivation), deleting,
//! and the per-image quotas every change checks.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::app::App;
use crate::config::Config;
use crate::db::images::now;
use crate::domain::fault::{Counted, Fault, Lookup};
use crate::domain::image::{self, Image, Location, Status, Visibility, is_reserved, is_uuid};
use crate::domain::patch::{self, Change, Dialect};
use crate::domain::policy::{self, Context, Operation};
use crate::domain::query::ListQuery;
use crate::error::Result;
use crate::store::{StoreError, blocking};

/// Per-image quotas; a negative quota means unlimited.
pub fn check_quotas(cfg: &Config, img: &Image) -> Result<(), Fault> {
    let check = |what, n: usize, q: i64| {
        if q >= 0 && n as i64 > q {
            return Err(Fault::LimitExceeded {
                what,
                attempted: n,
                maximum: q,
            });
        }
        Ok(())
    };
    check(
        Counted::Properties,
        img.properties.len(),
        cfg.image_property_quota,
    )?;
    check(Counted::Tags, img.tags.len(), cfg.image_tag_quota)
}

const CREATE_DISALLOWED: &[&str] = &["direct_url", "self", "file", "schema", "stores"];
const CREATE_READ_ONLY: &[&str] = &[
    "created_at",
    "updated_at",
    "status",
    "checksum",
    "size",
    "virtual_size",
];
/// Taken and dropped on create, as Glance does (they end up as hidden properties there; the
/// image shows null until data is uploaded).
const CREATE_IGNORED: &[&str] = &["os_hash_algo", "os_hash_value"];

/// Creates a `queued` image from `body` as `ctx` asks for it, with Glance's checks in
/// Glance's order (schema, read-only and reserved attributes, the owner and visibility rules,
/// property protections, quotas).
pub async fn create(app: &App, ctx: &Context, body: Value) -> Result<Image> {
    let Value::Object(mut obj) = body else {
        return Err(Fault::NotAnImageObject.into());
    };
    for key in CREATE_DISALLOWED {
        if obj.contains_key(*key) {
            return Err(Fault::ReadOnly {
                attribute: key.to_string(),
            }
            .into());
        }
    }
    app.schemas.validate_image(&Value::Object(obj.clone()))?;
    for key in CREATE_READ_ONLY {
        if obj.contains_key(*key) {
            return Err(Fault::ReadOnly {
                attribute: key.to_string(),
            }
            .into());
        }
    }

    let str_of = |v: Option<Value>| v.and_then(|v| v.as_str().map(str::to_string));
    let id = str_of(obj.remove("id")).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let name = str_of(obj.remove("name"));
    let visibility = obj
        .remove("visibility")
        .and_then(|v| v.as_str().and_then(Visibility::parse));
    let protected = obj
        .remove("protected")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let os_hidden = obj
        .remove("os_hidden")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let owner_given = obj.remove("owner").map(|v| v.as_str().map(str::to_string));
    let container_format = str_of(obj.remove("container_format"));
    let disk_format = str_of(obj.remove("disk_format"));
    let min = |obj: &mut Map<String, Value>, key: &str| {
        obj.remove(key)
            .map_or(Ok(0), |v| image::min_requirement(key, &v))
    };
    let min_ram = min(&mut obj, "min_ram")?;
    let min_disk = min(&mut obj, "min_disk")?;
    for key in CREATE_IGNORED {
        obj.remove(*key);
    }
    let tags: BTreeSet<String> = obj
        .remove("tags")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect();

    let mut properties = BTreeMap::new();
    for (k, v) in obj {
        if k.chars().count() > 255 {
            return Err(Fault::PropertyNameTooLong.into());
        }
        // Glance refuses `locations` in its domain (the message alone), the others in its
        // request parser (after the standard explanation).
        if k == "locations" || is_reserved(&k) {
            return Err(Fault::Reserved {
                in_parser: k != "locations",
                attribute: k,
            }
            .into());
        }
        // The schema allows only strings for additional properties.
        properties.insert(k, v.as_str().unwrap_or_default().to_string());
    }
    let visibility_given = visibility;
    if !is_uuid(&id) {
        return Err(Fault::InvalidImageId { id }.into());
    }

    let owner = match owner_given {
        Some(o) => o,
        None => ctx.project_id.clone(),
    };
    policy::check_create(ctx, owner.as_deref(), visibility_given)?;
    // Property protections come before the per-image quotas, as in Glance's factory.
    if let Some(k) = properties.keys().find(|k| !ctx.may(k, Operation::Create)) {
        return Err(Fault::Reserved {
            attribute: k.clone(),
            in_parser: false,
        }
        .into());
    }
    let ts = now();
    let img = Image {
        id,
        name,
        status: Status::Queued,
        visibility: visibility.unwrap_or(Visibility::Shared),
        protected,
        os_hidden,
        checksum: None,
        os_hash_algo: None,
        os_hash_value: None,
        owner,
        size: None,
        virtual_size: None,
        container_format,
        disk_format,
        created_at: ts,
        updated_at: ts,
        min_ram,
        min_disk,
        tags,
        properties,
        locations: vec![],
    };
    check_quotas(&app.cfg, &img)?;
    storable(&img, None)?;
    app.db.create_image(&img).await?;
    tracing::info!(image_id = %img.id, "image created");
    app.notifier.image("image.create", &img);
    Ok(img)
}

/// Glance's refusal of text it could not store (`no_4byte_params`), checked in the order its
/// database layer writes: the image's fields, its properties, then each tag.
fn storable(img: &Image, context: Option<&'static str>) -> Result<(), Fault> {
    use crate::domain::unicode::{Field, check_fields, check_param};
    let refused = |what| Fault::FourByte { what, context };
    check_fields([
        ("name", Field::Text(img.name.as_deref())),
        ("owner", Field::Text(img.owner.as_deref())),
        ("disk_format", Field::Text(img.disk_format.as_deref())),
        (
            "container_format",
            Field::Text(img.container_format.as_deref()),
        ),
        (
            "properties",
            Field::Nested(
                img.properties
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
        ),
    ])
    .map_err(refused)?;
    img.tags
        .iter()
        .try_for_each(|t| check_param(t))
        .map_err(refused)
}

/// Deletes an image as Glance does: its data first (an image whose data cannot go, RBD clones
/// of its snapshot, keeps its record and stays usable), then the record, then any data an
/// upload recorded meanwhile.
pub async fn delete(app: &App, ctx: &Context, id: &str) -> Result<()> {
    let img = app.find_image(ctx, id, Lookup::Delete).await?;
    ctx.on_image(&img).enforce_mutation("delete_image")?;
    if img.protected {
        return Err(Fault::Protected { image: id.into() }.into());
    }
    for loc in &img.locations {
        if let Err(e) = app.stores.delete(loc).await {
            // Another delete of the image at once (on another node: librbd's removals
            // interleaved) can fail this one midway, its snapshot put back, while the other
            // reports the image gone and removes the row: looked at again a lease later, the
            // data goes unless an image still records it (the usual case: refused, kept).
            app.engine
                .delete_later(id, loc.clone(), &e.to_string())
                .await;
            return Err(match e {
                StoreError::InUse(why) => Fault::InUse {
                    image: id.into(),
                    why,
                }
                .into(),
                e => e.into(),
            });
        }
    }
    let Some(current) = app.db.delete_image(id).await? else {
        return Err(Fault::ImageNotFound {
            id: id.into(),
            lookup: Lookup::Delete,
        }
        .into());
    };
    // Data recorded since the image was read above (an upload that finished meanwhile) would
    // otherwise stay in the store with no image.
    for loc in current.into_iter().filter(|l| !img.locations.contains(l)) {
        app.engine.delete_data(id, loc).await;
    }
    tracing::info!(image_id = %id, "image deleted");
    app.notifier.image_deleted(&img);
    Ok(())
}

/// The image as `GET /v2/images/{id}` shows it, if the caller may see it.
pub async fn show(app: &App, ctx: &Context, id: &str) -> Result<Image> {
    let img = app.image(ctx, id).await?;
    ctx.on_image(&img).enforce("get_image")?;
    Ok(img)
}

/// A page of images the caller may see, and whether the database filled it (Glance's `next`
/// follows the database's count, whatever `get_image` then hides).
pub async fn list(app: &App, ctx: &Context, q: &ListQuery) -> Result<(Vec<Image>, bool)> {
    ctx.enforce("get_images", &policy::project_target(ctx))?;
    let marker = match &q.marker {
        None => None,
        Some(m) => Some(app.image(ctx, m).await.map_err(|f| match f {
            Fault::ImageNotFound { id, .. } => Fault::MarkerNotFound { id },
            other => other,
        })?),
    };
    let mut images = app.db.list_images(ctx, q, marker.as_ref()).await?;
    let full = !images.is_empty() && images.len() as u64 == q.limit;
    images.retain(|i| ctx.on_image(i).allows("get_image"));
    Ok((images, full))
}

/// Applies JSON-patch `changes` to the image and saves it once; data of locations the image
/// lost leaves the store. The image as stored afterwards.
pub async fn update(
    app: &App,
    ctx: &Context,
    id: &str,
    changes: &[Change],
    dialect: Dialect,
) -> Result<Image> {
    let opts = patch::PatchOptions {
        show_multiple_locations: app.cfg.show_multiple_locations,
        image_location_quota: app.cfg.image_location_quota,
    };
    // A concurrent request that changed the image in between makes the save refuse; the patch
    // is then applied again to the image as it now is, as if the two had come one after the
    // other (two removals of an image's last two locations: the second is refused).
    let mut attempt = 0;
    let removed = loop {
        let img = app.image(ctx, id).await?;
        let mut updated = patch::apply(ctx, &img, changes, dialect, &opts)?;
        check_quotas(&app.cfg, &updated)?;
        storable(&updated, None)?;
        let removed = accept_new_locations(app, &img, &mut updated).await?;
        if updated == img {
            break removed;
        }
        match app.db.save_image(&img, &updated).await {
            Ok(()) => break removed,
            Err(Fault::ChangedMeanwhile { .. }) if attempt < 3 => {
                attempt += 1;
                tracing::info!(image_id = %id, attempt, "image changed meanwhile; patching again");
            }
            Err(e) => return Err(e.into()),
        }
    };
    for loc in removed {
        app.engine.delete_data(id, loc).await;
    }
    // Read back so the answer shows what is stored (updated_at included).
    let saved = app
        .db
        .get_image(id)
        .await?
        .ok_or_else(|| Fault::ImageNotFound {
            id: id.into(),
            lookup: Lookup::Image,
        })?;
    app.notifier.image("image.update", &saved);
    Ok(saved)
}

/// Checks each location `updated` gains against the store (it must be ours and hold data);
/// a queued image with a location becomes active with that data's size, as when Nova
/// registers an RBD snapshot. Returns the locations `updated` lost, whose data goes.
pub async fn accept_new_locations(
    app: &App,
    old: &Image,
    updated: &mut Image,
) -> Result<Vec<Location>, Fault> {
    let known = |l: &Location, list: &[Location]| list.iter().any(|o| o.url == l.url);
    let added: Vec<_> = updated
        .locations
        .iter()
        .filter(|l| !known(l, &old.locations))
        .cloned()
        .collect();
    let removed: Vec<_> = old
        .locations
        .iter()
        .filter(|l| !known(l, &updated.locations))
        .cloned()
        .collect();
    let mut first_size = None;
    for loc in &added {
        let entry = app
            .stores
            .for_location(loc)
            .ok_or_else(|| Fault::NoStoreFor {
                url: loc.url.clone(),
            })?;
        let store = entry.store.clone();
        let l = loc.clone();
        let size = blocking(store.timeout(), move || store.size(&l))
            .await
            .map_err(|e| Fault::BadLocation {
                url: loc.url.clone(),
                why: e.to_string(),
            })?;
        first_size.get_or_insert(size);
        if app.stores.multi
            && let Some(l) = updated.locations.iter_mut().find(|l| l.url == loc.url)
            && l.metadata.get("store").is_none()
            && let Some(m) = l.metadata.as_object_mut()
        {
            m.insert("store".into(), serde_json::json!(entry.id));
        }
    }
    if updated.status == Status::Queued
        && !updated.locations.is_empty()
        && let Some(size) = first_size
    {
        updated.transition(Status::Active)?;
        updated.size = Some(size as i64);
    }
    Ok(removed)
}

/// Adds a tag (already there: nothing to do).
pub async fn add_tag(app: &App, ctx: &Context, id: &str, tag: &str) -> Result<()> {
    app.schemas
        .validate_image(&serde_json::json!({ "tags": [tag] }))?;
    let img = app.parent_image(ctx, id).await?;
    ctx.on_image(&img).enforce_mutation("modify_image")?;
    if !img.tags.contains(tag) {
        crate::domain::unicode::check_param(tag).map_err(|what| Fault::FourByte {
            what,
            context: Some("Could not update image"),
        })?;
        let mut updated = img.clone();
        updated.tags.insert(tag.to_string());
        check_quotas(&app.cfg, &updated)?;
        app.db.save_image(&img, &updated).await?;
        app.notifier.image("image.update", &updated);
    }
    Ok(())
}

/// Removes a tag; one the image does not have is not found.
pub async fn remove_tag(app: &App, ctx: &Context, id: &str, tag: &str) -> Result<()> {
    let img = app.parent_image(ctx, id).await?;
    ctx.on_image(&img).enforce_mutation("modify_image")?;
    if !img.tags.contains(tag) {
        return Err(Fault::TagNotFound {
            image: id.into(),
            tag: tag.into(),
        }
        .into());
    }
    let mut updated = img.clone();
    updated.tags.remove(tag);
    app.db.save_image(&img, &updated).await?;
    app.notifier.image("image.update", &updated);
    Ok(())
}

/// Deactivates (`active` false) or reactivates an image; already there is a no-op, any
/// status but the two is refused.
pub async fn set_active(app: &App, ctx: &Context, id: &str, active: bool) -> Result<()> {
    let (action, from, to) = if active {
        ("reactivate", Status::Deactivated, Status::Active)
    } else {
        ("deactivate", Status::Active, Status::Deactivated)
    };
    let img = app.image(ctx, id).await?;
    ctx.on_image(&img).enforce_mutation(action)?;
    if img.status == from {
        if !app.db.set_status(id, from, to).await? {
            return Err(Fault::ChangedMeanwhile { image: id.into() }.into());
        }
    } else if img.status != to {
        return Err(Fault::ActionInStatus {
            action: action.into(),
            status: img.status,
        }
        .into());
    }
    tracing::info!(image_id = %id, action, "image status changed");
    let mut shown = img;
    shown.status = to;
    app.notifier.image("image.update", &shown);
    Ok(())
}
