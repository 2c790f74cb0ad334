//! `/v2/info/stores` (and `/detail`) and `DELETE /v2/stores/{store}/{image}`: the stores of a
//! multi-store deployment; `/v2/info/import` and `/v2/info/usage`.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{AppState, json_response};
use crate::domain::fault::Lookup;
use crate::domain::image::Status;
use crate::domain::policy::{Context, TargetMap};
use crate::error::{Error, Result};
use crate::store::StoreError;

fn require_multi(s: &AppState) -> Result<()> {
    if s.stores.multi {
        Ok(())
    } else {
        Err(Error::NotFound(
            "Multi backend is not supported at this site.".into(),
        ))
    }
}

fn store_list(s: &AppState, detail: bool) -> Value {
    let default = s.stores.default_store().id.clone();
    let stores: Vec<Value> = s
        .stores
        .entries()
        .iter()
        .map(|e| {
            let mut m = Map::new();
            m.insert("id".into(), json!(e.id));
            if let Some(d) = &e.description {
                m.insert("description".into(), json!(d));
            }
            if e.id == default {
                m.insert("default".into(), json!("true"));
            }
            if e.kind == "http" {
                m.insert("read-only".into(), json!("true"));
            }
            if detail {
                // Glance's key order.
                m.insert("type".into(), json!(e.kind));
                let mut props = e.properties.clone();
                if let Some(p) = props.as_object_mut() {
                    p.extend(e.store.live_properties());
                }
                m.insert("properties".into(), props);
                m.insert("weight".into(), json!(e.weight));
            }
            Value::Object(m)
        })
        .collect();
    json!({ "stores": stores })
}

/// The import methods on offer (none yet: see `api::import`).
pub async fn import_methods() -> Response {
    let methods = json!({
        "import-methods": {
            "description": "Import methods available.",
            "type": "array",
            "value": super::r#import::ENABLED_METHODS,
        }
    });
    json_response(StatusCode::OK, &methods)
}

/// Usage against Keystone unified limits: none, as in a Glance without `use_keystone_limits`
/// (the per-image quotas of glance-api.conf are enforced, not reported).
pub async fn usage() -> Response {
    json_response(StatusCode::OK, &json!({ "usage": {} }))
}

pub async fn stores(State(s): State<AppState>) -> Result<Response> {
    require_multi(&s)?;
    Ok(json_response(StatusCode::OK, &store_list(&s, false)))
}

pub async fn stores_detail(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
) -> Result<Response> {
    require_multi(&s)?;
    ctx.enforce("stores_info_detail", &TargetMap::new())?;
    Ok(json_response(StatusCode::OK, &store_list(&s, true)))
}

/// Removes the image's data from one store, keeping the others.
pub async fn delete_from_store(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path((store_id, id)): Path<(String, String)>,
) -> Result<Response> {
    require_multi(&s)?;
    // Glance's checks, in its order and words.
    if s.stores.get(&store_id).is_none() {
        return Err(Error::Conflict(format!(
            "The selected store {store_id} is not available on this node."
        )));
    }
    let img = s.find_image(&ctx, &id, Lookup::StoreDelete).await?;
    let checks = ctx.on_image(&img);
    checks.enforce("get_image_location")?;
    checks.enforce_mutation("delete_image_location")?;
    if img.status != Status::Active {
        return Err(Error::Conflict(
            "It's not allowed to remove image data from store if image status is not 'active'"
                .into(),
        ));
    }
    if img.locations.len() == 1 {
        return Err(Error::Forbidden(
            "Cannot delete image data from the only store containing it. Consider deleting the image instead."
                .into(),
        ));
    }
    let Some(loc) = img
        .locations
        .iter()
        .find(|l| s.stores.for_location(l).is_some_and(|e| e.id == store_id))
        .cloned()
    else {
        return Err(Error::NotFound(format!(
            "Image {id} is not stored in store {store_id}."
        )));
    };
    let mut updated = img.clone();
    updated.locations.retain(|l| l.url != loc.url);
    match s.stores.delete(&loc).await {
        Ok(()) => {}
        Err(StoreError::InUse(why)) => {
            return Err(Error::Conflict(format!(
                "The data for Image {id} could not be deleted because it is in use: {why}"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    s.db.save_image(&img, &updated).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
