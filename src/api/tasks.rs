//! `/v2/tasks` and `/v2/images/{id}/tasks`: Glance's (deprecated, still served) tasks API.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::images::{isotime, json_body};
use super::{AppState, created, json_response, page_links};
use crate::db::tasks::TaskQuery;
use crate::domain::fault::Lookup;
use crate::domain::image::is_uuid;
use crate::domain::policy::Context;
use crate::domain::task::{self, Task};
use crate::error::{Error, ErrorText, Result};
use crate::service::tasks as service;

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("Could not find task {id}"))
}

/// A task as Glance's serializer shows it: whole (`full`), or the stub of a listing.
fn view(t: &Task, full: bool) -> Value {
    let mut v = Map::new();
    v.insert("id".into(), json!(t.id));
    if full {
        v.insert("input".into(), t.input.clone().unwrap_or(Value::Null));
    }
    v.insert("type".into(), json!(t.kind));
    v.insert("status".into(), json!(t.status));
    v.insert("owner".into(), json!(t.owner));
    if full {
        v.insert("message".into(), json!(t.message));
        v.insert("result".into(), t.result.clone().unwrap_or(Value::Null));
    }
    v.insert("created_at".into(), json!(isotime(&t.created_at)));
    v.insert("updated_at".into(), json!(isotime(&t.updated_at)));
    v.insert("self".into(), json!(format!("/v2/tasks/{}", t.id)));
    v.insert("schema".into(), json!("/v2/schemas/task"));
    if full {
        for (k, val) in [
            ("image_id", &t.image_id),
            ("request_id", &t.request_id),
            ("user_id", &t.user_id),
        ] {
            if let Some(x) = val.as_deref().filter(|x| !x.is_empty()) {
                v.insert(k.into(), json!(x));
            }
        }
    }
    if let Some(e) = &t.expires_at {
        v.insert("expires_at".into(), json!(isotime(e)));
    }
    Value::Object(v)
}

pub async fn create(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response> {
    // Glance checks access before it reads the body.
    ctx.enforce(
        "tasks_api_access",
        &crate::domain::policy::project_target(&ctx),
    )?;
    let body = json_body(&body)?;
    for key in ["type", "input"] {
        if body.get(key).is_none() {
            return Err(Error::BadRequest(format!("Task '{key}' is required")));
        }
    }
    s.schemas.validate_task(&body)?;
    service::authorize(&ctx, "add_task")?;
    let kind = body["type"].as_str().unwrap_or_default().to_string();
    let t = service::create(&s, &ctx, &kind, body["input"].clone()).await?;
    let path = format!("/v2/tasks/{}", t.id);
    Ok(created(&s.cfg, &headers, &uri, &path, &view(&t, true)))
}

pub async fn show(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
) -> Result<Response> {
    service::authorize(&ctx, "get_task")?;
    let t =
        s.db.get_task(&id)
            .await?
            .filter(|t| service::visible(&ctx, t))
            .ok_or_else(|| not_found(&id))?;
    Ok(json_response(StatusCode::OK, &view(&t, true)))
}

/// The columns a listing may be filtered on (any other parameter is ignored, as in Glance)
/// and sorted by.
const FILTERS: [&str; 6] = [
    "status",
    "type",
    "owner",
    "image_id",
    "request_id",
    "user_id",
];
const SORT_KEYS: [&str; 6] = ["created_at", "updated_at", "id", "status", "type", "owner"];

pub async fn list(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    service::authorize(&ctx, "get_tasks")?;
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    // webob's params: the last value of a repeated parameter.
    let param = |k: &str| super::last_param(&pairs, k);
    let sort_dir = param("sort_dir").unwrap_or("desc");
    if sort_dir != "asc" && sort_dir != "desc" {
        return Err(Error::BadRequest(format!(
            "Invalid sort direction: {sort_dir}"
        )));
    }
    if let Some(st) = param("status").filter(|v| !v.is_empty())
        && !task::STATUSES.contains(&st)
    {
        return Err(Error::BadRequest(format!("Invalid status value: {st}")));
    }
    if let Some(ty) = param("type").filter(|v| !v.is_empty())
        && ty != task::IMPORT
    {
        return Err(Error::BadRequest(format!("Invalid type value: {ty}")));
    }
    let marker = param("marker");
    if let Some(m) = marker
        && !m.is_empty()
        && !is_uuid(m)
    {
        return Err(Error::BadRequest("Invalid marker format".into()));
    }
    let limit = match param("limit") {
        None => s.cfg.limit_param_default,
        Some(l) => {
            let n: i64 = l
                .trim()
                .parse()
                .map_err(|_| Error::BadRequest("limit param must be an integer".into()))?;
            if n < 0 {
                return Err(Error::BadRequest("limit param must be positive".into()));
            }
            n as u64
        }
    }
    .min(s.cfg.api_limit_max);
    let sort_key = param("sort_key").unwrap_or("created_at");
    if !SORT_KEYS.contains(&sort_key) {
        return Err(Error::BadRequest("Sort key supplied was not valid.".into()));
    }
    let q = TaskQuery {
        filters: FILTERS
            .iter()
            .filter_map(|k| param(k).map(|v| (k.to_string(), v.to_string())))
            .collect(),
        sort_key: sort_key.into(),
        asc: sort_dir == "asc",
        limit,
    };
    let marker = match marker.filter(|m| !m.is_empty()) {
        None => None,
        Some(m) => Some(
            s.db.get_task(m)
                .await?
                .filter(|t| service::visible(&ctx, t))
                .ok_or_else(|| {
                    Error::BadRequest(format!("Task with the given id {m} was not found"))
                })?,
        ),
    };
    let owner = (!ctx.is_admin)
        .then_some(ctx.project_id.as_deref())
        .flatten();
    let tasks =
        s.db.list_tasks(ctx.project_id.as_deref(), owner, &q, marker.as_ref())
            .await?;

    let full = !tasks.is_empty() && tasks.len() as u64 == limit;
    let last = full.then(|| tasks.last()).flatten();
    let (first, next) = page_links("/v2/tasks", &pairs, last.map(|t| t.id.as_str()));
    let mut page = Map::new();
    page.insert(
        "tasks".into(),
        Value::Array(tasks.iter().map(|t| view(t, false)).collect()),
    );
    page.insert("first".into(), json!(first));
    page.insert("schema".into(), json!("/v2/schemas/tasks"));
    if let Some(n) = next {
        page.insert("next".into(), json!(n));
    }
    Ok(json_response(StatusCode::OK, &Value::Object(page)))
}

/// Glance refuses to delete tasks (they expire), after its access check.
pub async fn delete(Extension(ctx): Extension<Context>) -> Result<Response> {
    ctx.enforce(
        "tasks_api_access",
        &crate::domain::policy::project_target(&ctx),
    )?;
    let mut resp = Error::MethodNotAllowed { allow: "GET" }.into_response();
    resp.extensions_mut().insert(ErrorText {
        explanation: "This operation is currently not permitted on Glance Tasks. They are auto \
                      deleted after reaching the time based on their expires_at property."
            .into(),
        detail: String::new(),
        bare: true,
    });
    Ok(resp)
}

/// Python's `isoformat()` of a naive time without microseconds, as Glance's default JSON
/// serializer writes the raw task records of `/v2/images/{id}/tasks`.
fn isoformat(t: &chrono::NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// `GET /v2/images/{id}/tasks`: the image's unexpired tasks, as raw records.
pub async fn of_image(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
) -> Result<Response> {
    // Not there or not visible: Glance's bare 404; a database outage stays a 503.
    let img = s.find_image(&ctx, &id, Lookup::Bare).await?;
    if !ctx.on_image(&img).allows("get_image") {
        return Err(Error::NotFound(String::new()));
    }
    let tasks: Vec<Value> =
        s.db.tasks_of_image(&id)
            .await?
            .into_iter()
            .filter(|t| service::visible(&ctx, t))
            .map(|t| {
                json!({
                    "id": t.id,
                    "type": t.kind,
                    "status": t.status,
                    "owner": t.owner,
                    "expires_at": t.expires_at.as_ref().map(isoformat),
                    "created_at": isoformat(&t.created_at),
                    "updated_at": isoformat(&t.updated_at),
                    "deleted_at": Value::Null,
                    "deleted": false,
                    "image_id": t.image_id,
                    "request_id": t.request_id,
                    "user_id": t.user_id,
                    "input": t.input,
                    "result": t.result,
                    "message": t.message,
                })
            })
            .collect();
    Ok(json_response(StatusCode::OK, &json!({ "tasks": tasks })))
}
