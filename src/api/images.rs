//! `/v2/images` and `/v2/images/{id}`: create, list, show, PATCH, delete, deactivate, reactivate.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{AppState, created, json_response, page_links};
use crate::config::Config;
use crate::domain::image::Image;
use crate::domain::patch;
use crate::domain::policy::{Context, Operation};
use crate::domain::query::ListQuery;
use crate::error::{Error, Result};
use crate::service;

pub use crate::json::isotime;

/// The image as Glance's serializer shows it to this caller: the custom properties it may
/// read, then the base attributes. Written straight to JSON (a page of images built as
/// `serde_json::Value`s spent more on building and dropping them than on the database).
pub fn render<'a>(cfg: &'a Config, ctx: &'a Context, img: &'a Image) -> ImageView<'a> {
    ImageView { cfg, ctx, img }
}

pub struct ImageView<'a> {
    cfg: &'a Config,
    ctx: &'a Context,
    img: &'a Image,
}

impl ImageView<'_> {
    /// The locations the caller may see: none of a deactivated image but to an admin (Glance's
    /// database layer hides them), so neither `locations` nor `direct_url` nor `stores`.
    fn locations(&self) -> &[crate::domain::image::Location] {
        if self.img.status == crate::domain::image::Status::Deactivated && !self.ctx.is_admin {
            &[]
        } else {
            &self.img.locations
        }
    }

    /// `stores` with multi-store: the stores holding the image's data, in location order.
    fn stores(&self) -> Option<String> {
        if !self.cfg.multi_store {
            return None;
        }
        let mut ids: Vec<&str> = Vec::new();
        for l in self.locations() {
            if let Some(id) = l.metadata.get("store").and_then(Value::as_str)
                && !ids.contains(&id)
            {
                ids.push(id);
            }
        }
        (!ids.is_empty()).then(|| ids.join(","))
    }
}

#[derive(serde::Serialize)]
struct LocationView<'a> {
    url: &'a str,
    metadata: &'a Value,
}

impl serde::Serialize for ImageView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (img, cfg) = (self.img, self.cfg);
        let stores = self.stores();
        let mut m = s.serialize_map(None)?;
        // `stores` comes last, as Glance adds it, unless a custom property of that name (PATCH
        // takes one, as in Glance) holds its place: it then takes this value there.
        let mut stores_shown = false;
        for (k, v) in img.visible_properties() {
            if !self.ctx.may(k, Operation::Read) {
                continue;
            }
            match &stores {
                Some(st) if k == "stores" => {
                    m.serialize_entry(k, st)?;
                    stores_shown = true;
                }
                _ => m.serialize_entry(k, v)?,
            }
        }
        m.serialize_entry("name", &img.name)?;
        m.serialize_entry("disk_format", &img.disk_format)?;
        m.serialize_entry("container_format", &img.container_format)?;
        m.serialize_entry("visibility", img.visibility.as_str())?;
        m.serialize_entry("size", &img.size)?;
        m.serialize_entry("virtual_size", &img.virtual_size)?;
        m.serialize_entry("status", img.status.as_str())?;
        m.serialize_entry("checksum", &img.checksum)?;
        m.serialize_entry("protected", &img.protected)?;
        m.serialize_entry("min_ram", &img.min_ram)?;
        m.serialize_entry("min_disk", &img.min_disk)?;
        m.serialize_entry("owner", &img.owner)?;
        m.serialize_entry("os_hidden", &img.os_hidden)?;
        m.serialize_entry("os_hash_algo", &img.os_hash_algo)?;
        m.serialize_entry("os_hash_value", &img.os_hash_value)?;
        m.serialize_entry("id", &img.id)?;
        m.serialize_entry("created_at", &isotime(&img.created_at))?;
        m.serialize_entry("updated_at", &isotime(&img.updated_at))?;
        if cfg.show_multiple_locations {
            let locs: Vec<LocationView> = self
                .locations()
                .iter()
                .map(|l| LocationView {
                    url: &l.url,
                    metadata: &l.metadata,
                })
                .collect();
            m.serialize_entry("locations", &locs)?;
        }
        if cfg.show_image_direct_url
            && let Some(l) = self.locations().first()
        {
            m.serialize_entry("direct_url", &l.url)?;
        }
        m.serialize_entry("tags", &img.tags)?;
        m.serialize_entry("self", &format!("/v2/images/{}", img.id))?;
        m.serialize_entry("file", &format!("/v2/images/{}/file", img.id))?;
        m.serialize_entry("schema", "/v2/schemas/image")?;
        if let Some(st) = stores.filter(|_| !stores_shown) {
            m.serialize_entry("stores", &st)?;
        }
        m.end()
    }
}

/// A page of `GET /v2/images`, keys in Glance's order.
#[derive(serde::Serialize)]
struct ImagePage<'a> {
    images: Vec<ImageView<'a>>,
    first: String,
    schema: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// Parses a JSON request body with Glance's errors for empty and malformed bodies.
pub fn json_body(body: &Bytes) -> Result<Value> {
    if body.is_empty() {
        return Err(Error::BadRequest("Body expected in request.".into()));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| Error::BadRequest("Malformed JSON in request body.".into()))?;
    if !(v.is_object() || v.is_array()) {
        return Err(Error::BadRequest(
            "Unexpected body type. Expected list/dict.".into(),
        ));
    }
    Ok(v)
}

pub async fn create(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response> {
    let img = service::images::create(&s, &ctx, json_body(&body)?).await?;

    let path = format!("/v2/images/{}", img.id);
    let mut resp = created(&s.cfg, &headers, &uri, &path, &render(&s.cfg, &ctx, &img));
    if s.stores.multi {
        let ids: Vec<&str> = s.stores.entries().iter().map(|e| e.id.as_str()).collect();
        if let Ok(v) = HeaderValue::from_str(&ids.join(",")) {
            resp.headers_mut().insert("openstack-image-store-ids", v);
        }
    }
    Ok(resp)
}

pub async fn show(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
) -> Result<Response> {
    let img = service::images::show(&s, &ctx, &id).await?;
    Ok(json_response(StatusCode::OK, &render(&s.cfg, &ctx, &img)))
}

pub async fn list(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let q = ListQuery::parse(&pairs, s.cfg.limit_param_default, s.cfg.api_limit_max)?;
    let (images, full) = service::images::list(&s, &ctx, &q).await?;
    let last = full.then(|| images.last()).flatten();
    let (first, next) = page_links("/v2/images", &pairs, last.map(|i| i.id.as_str()));
    let page = ImagePage {
        images: images.iter().map(|i| render(&s.cfg, &ctx, i)).collect(),
        first,
        schema: "/v2/schemas/images",
        next,
    };
    Ok(json_response(StatusCode::OK, &page))
}

pub async fn update(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let dialect = patch::dialect_for(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )?;
    let body = json_body(&body)?;
    let changes = patch::parse(&body, dialect, &|v| s.schemas.validate_image(v))?;
    let saved = service::images::update(&s, &ctx, &id, &changes, dialect).await?;
    Ok(json_response(StatusCode::OK, &render(&s.cfg, &ctx, &saved)))
}

pub async fn delete(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
) -> Result<Response> {
    service::images::delete(&s, &ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn deactivate(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
) -> Result<Response> {
    service::images::set_active(&s, &ctx, &id, false).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn reactivate(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
) -> Result<Response> {
    service::images::set_active(&s, &ctx, &id, true).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
