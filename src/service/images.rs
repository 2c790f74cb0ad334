//! Images: creating one from a JSON object (the API's body, or an import task's
//! `image_properties`), and the per-image quotas every change checks.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::app::App;
use crate::config::Config;
use crate::db::images::now;
use crate::domain::image::{self, Image, Status, Visibility, is_reserved, is_uuid};
use crate::domain::policy::{self, Context, Operation};
use crate::error::{Error, Result};
use crate::store::StoreError;

fn limit_exceeded(what: &str, attempted: usize, maximum: i64) -> Error {
    Error::TooLarge(format!(
        "The limit has been exceeded on the number of allowed image {what}. Attempted: {attempted}, Maximum: {maximum}"
    ))
}

/// Per-image quotas; a negative quota means unlimited.
pub fn check_quotas(cfg: &Config, img: &Image) -> Result<()> {
    let over = |n: usize, q: i64| q >= 0 && n as i64 > q;
    if over(img.properties.len(), cfg.image_property_quota) {
        return Err(limit_exceeded(
            "properties",
            img.properties.len(),
            cfg.image_property_quota,
        ));
    }
    if over(img.tags.len(), cfg.image_tag_quota) {
        return Err(limit_exceeded("tags", img.tags.len(), cfg.image_tag_quota));
    }
    Ok(())
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
        return Err(Error::BadRequest(
            "Provided object does not match schema 'image': the body is not a JSON object".into(),
        ));
    };
    for key in CREATE_DISALLOWED {
        if obj.contains_key(*key) {
            return Err(Error::Forbidden(format!("Attribute '{key}' is read-only.")));
        }
    }
    app.schemas.validate_image(&Value::Object(obj.clone()))?;
    for key in CREATE_READ_ONLY {
        if obj.contains_key(*key) {
            return Err(Error::Forbidden(format!("Attribute '{key}' is read-only.")));
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
            return Err(Error::BadRequest(
                "Custom property should not be greater than 255 characters.".into(),
            ));
        }
        // Glance refuses `locations` in its domain (the message alone), the others in its
        // request parser (after the standard explanation).
        if k == "locations" {
            return Err(Error::Forbidden(format!("Attribute '{k}' is reserved.")));
        }
        if is_reserved(&k) {
            return Err(Error::Forbidden(format!("Attribute '{k}' is reserved.")).as_detail());
        }
        // The schema allows only strings for additional properties.
        properties.insert(k, v.as_str().unwrap_or_default().to_string());
    }
    let visibility_given = visibility;
    if !is_uuid(&id) {
        return Err(Error::BadRequest(format!("Invalid image id {id}")));
    }

    let owner = match owner_given {
        Some(o) => o,
        None => ctx.project_id.clone(),
    };
    policy::check_create(ctx, owner.as_deref(), visibility_given)?;
    // Property protections come before the per-image quotas, as in Glance's factory.
    if let Some(k) = properties.keys().find(|k| !ctx.may(k, Operation::Create)) {
        return Err(Error::Forbidden(format!("Attribute '{k}' is reserved.")));
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
    app.db.create_image(&img).await?;
    tracing::info!(image_id = %img.id, "image created");
    Ok(img)
}

/// Deletes an image as Glance does: its data first (an image whose data cannot go, RBD clones
/// of its snapshot, keeps its record and stays usable), then the record, then any data an
/// upload recorded meanwhile.
pub async fn delete(app: &App, ctx: &Context, id: &str) -> Result<()> {
    // Glance's words for an image that is not there (or not visible) when deleting.
    let gone = || Error::NotFound(format!("Failed to find image {id} to delete"));
    let img = app.find_image(ctx, id, gone).await?;
    ctx.on_image(&img).enforce_mutation("delete_image")?;
    if img.protected {
        return Err(Error::Forbidden(format!(
            "Image {id} is protected and cannot be deleted."
        )));
    }
    for loc in &img.locations {
        match app.stores.delete(loc).await {
            Ok(()) => {}
            Err(StoreError::InUse(why)) => {
                return Err(Error::Conflict(format!(
                    "Image {id} could not be deleted because it is in use: {why}"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let Some(current) = app.db.delete_image(id).await? else {
        return Err(gone());
    };
    // Data recorded since the image was read above (an upload that finished meanwhile) would
    // otherwise stay in the store with no image.
    for loc in current.into_iter().filter(|l| !img.locations.contains(l)) {
        app.stores.delete_quietly(loc).await;
    }
    tracing::info!(image_id = %id, "image deleted");
    Ok(())
}
