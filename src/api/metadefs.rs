//! `/v2/metadefs/*`: the metadata definition catalog (namespaces, their objects, properties,
//! tags and resource type associations) with Glance's statuses and bodies, and
//! `/v2/schemas/metadefs/*`.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{Map, Value, json};

use super::images::{isotime, json_body};
use super::metadef_schemas::{self as schemas, Body};
use super::{AppState, created, json_response, no_body, only};
use crate::domain::fault::MetadefKind as Kind;
use crate::domain::metadef::{self, Association, Entry, Namespace};
use crate::domain::policy::Context;
use crate::error::{Error, Result};
use crate::json::str_field;
use crate::service::metadefs::{self as service, Contents, Lookup};

const NS: &str = "/v2/metadefs/namespaces/{ns}";

pub fn routes() -> Router<AppState> {
    let mut r = Router::new();
    for name in schemas::NAMES {
        let show = move || async move {
            match schemas::served(name) {
                Some(s) => json_response(StatusCode::OK, &s),
                None => Error::NotFound(String::new()).into_response(),
            }
        };
        r = r.route(
            &format!("/v2/schemas/metadefs/{name}"),
            only("GET", get(show).layer(middleware::from_fn(no_body))),
        );
    }
    r.route(
        "/v2/metadefs/namespaces",
        only("GET, POST", get(list_namespaces).post(create_namespace)),
    )
    .route(
        NS,
        only(
            "GET, PUT, DELETE",
            get(show_namespace)
                .delete(delete_namespace)
                .layer(middleware::from_fn(no_body))
                .put(update_namespace),
        ),
    )
    .route(
        &format!("{NS}/objects"),
        only(
            "GET, POST, DELETE",
            get(list_objects).post(create_object).delete(delete_objects),
        ),
    )
    .route(
        &format!("{NS}/objects/{{name}}"),
        only(
            "GET, PUT, DELETE",
            get(show_object)
                .delete(delete_object)
                .layer(middleware::from_fn(no_body))
                .put(update_object),
        ),
    )
    .route(
        &format!("{NS}/properties"),
        only(
            "GET, POST, DELETE",
            get(list_properties)
                .post(create_property)
                .delete(delete_properties),
        ),
    )
    .route(
        &format!("{NS}/properties/{{name}}"),
        only(
            "GET, PUT, DELETE",
            get(show_property)
                .put(update_property)
                .delete(delete_property),
        ),
    )
    .route(
        &format!("{NS}/tags"),
        only(
            "GET, POST, DELETE",
            get(list_tags).post(create_tags).delete(delete_tags),
        ),
    )
    .route(
        &format!("{NS}/tags/{{name}}"),
        only(
            "GET, POST, PUT, DELETE",
            get(show_tag)
                .post(create_tag)
                .delete(delete_tag)
                .layer(middleware::from_fn(no_body))
                .put(update_tag),
        ),
    )
    .route(
        "/v2/metadefs/resource_types",
        only(
            "GET",
            get(list_resource_types).layer(middleware::from_fn(no_body)),
        ),
    )
    .route(
        &format!("{NS}/resource_types"),
        only(
            "GET, POST",
            get(list_associations)
                .layer(middleware::from_fn(no_body))
                .post(create_association),
        ),
    )
    .route(
        &format!("{NS}/resource_types/{{rt}}"),
        only(
            "DELETE",
            axum::routing::delete(delete_association).layer(middleware::from_fn(no_body)),
        ),
    )
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn query_pairs(q: Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

// ---- rendering ----

fn put_opt(m: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v.filter(|v| !v.is_null()) {
        m.insert(key.into(), v);
    }
}

fn association_json(a: &Association) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(a.name));
    put_opt(&mut m, "prefix", a.prefix.clone().map(Value::from));
    put_opt(
        &mut m,
        "properties_target",
        a.properties_target.clone().map(Value::from),
    );
    m.insert("created_at".into(), json!(isotime(&a.created_at)));
    put_opt(
        &mut m,
        "updated_at",
        a.updated_at.map(|t| json!(isotime(&t))),
    );
    Value::Object(m)
}

/// A namespace's own fields, then what `extra` adds, then its links.
fn namespace_json(ns: &Namespace, extra: Map<String, Value>) -> Value {
    let mut m = Map::new();
    m.insert("namespace".into(), json!(ns.namespace));
    put_opt(
        &mut m,
        "display_name",
        ns.display_name.clone().map(Value::from),
    );
    put_opt(
        &mut m,
        "description",
        ns.description.clone().map(Value::from),
    );
    m.insert(
        "visibility".into(),
        json!(ns.visibility.as_deref().unwrap_or("private")),
    );
    m.insert("protected".into(), json!(ns.protected.unwrap_or(false)));
    m.insert("owner".into(), json!(ns.owner));
    m.insert("created_at".into(), json!(isotime(&ns.created_at)));
    put_opt(
        &mut m,
        "updated_at",
        ns.updated_at.map(|t| json!(isotime(&t))),
    );
    m.extend(extra);
    m.insert(
        "self".into(),
        json!(format!("/v2/metadefs/namespaces/{}", ns.namespace)),
    );
    m.insert("schema".into(), json!("/v2/schemas/metadefs/namespace"));
    Value::Object(m)
}

fn with_associations(assocs: &[Association]) -> Map<String, Value> {
    let mut m = Map::new();
    if !assocs.is_empty() {
        m.insert(
            "resource_type_associations".into(),
            Value::Array(assocs.iter().map(association_json).collect()),
        );
    }
    m
}

/// A property definition's keys with `prefix` before each.
fn prefixed(defs: Map<String, Value>, prefix: &str) -> Map<String, Value> {
    defs.into_iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v))
        .collect()
}

fn object_json(ns: &str, e: &Entry, prefix: &str) -> Value {
    let required: Vec<String> = e
        .required
        .as_deref()
        .filter(|r| !r.is_empty())
        .map(|r| r.split(',').map(|s| format!("{prefix}{s}")).collect())
        .unwrap_or_default();
    let props: Map<String, Value> = service::definition(e)
        .into_iter()
        .map(|(k, v)| {
            let def = v.as_object().map(metadef::shown).unwrap_or_default();
            (format!("{prefix}{k}"), Value::Object(def))
        })
        .collect();
    let mut m = Map::new();
    m.insert("name".into(), json!(e.name));
    m.insert("required".into(), json!(required));
    put_opt(
        &mut m,
        "description",
        e.description.clone().map(Value::from),
    );
    m.insert("properties".into(), Value::Object(props));
    if let Some(t) = e.created_at {
        m.insert("created_at".into(), json!(isotime(&t)));
    }
    put_opt(
        &mut m,
        "updated_at",
        e.updated_at.map(|t| json!(isotime(&t))),
    );
    m.insert(
        "self".into(),
        json!(format!("/v2/metadefs/namespaces/{ns}/objects/{}", e.name)),
    );
    m.insert("schema".into(), json!("/v2/schemas/metadefs/object"));
    Value::Object(m)
}

/// An object's fields as sent, in Glance's order (properties as stored).
fn object_fields(v: &Value) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    put_opt(&mut m, "name", v.get("name").cloned());
    put_opt(&mut m, "required", v.get("required").cloned());
    put_opt(&mut m, "description", v.get("description").cloned());
    if v.get("properties").is_some() {
        m.insert(
            "properties".into(),
            Value::Object(definitions(v.get("properties"))?),
        );
    }
    Ok(m)
}

/// An object as Glance echoes a create or update: the fields sent, its times and links.
fn object_echo(
    ns: &str,
    v: &Value,
    created: Option<chrono::NaiveDateTime>,
    updated: Option<chrono::NaiveDateTime>,
) -> Result<Value> {
    let name = v["name"].as_str().unwrap_or_default();
    let mut m = object_fields(v)?;
    put_opt(&mut m, "created_at", created.map(|t| json!(isotime(&t))));
    put_opt(&mut m, "updated_at", updated.map(|t| json!(isotime(&t))));
    m.insert(
        "self".into(),
        json!(format!("/v2/metadefs/namespaces/{ns}/objects/{name}")),
    );
    m.insert("schema".into(), json!("/v2/schemas/metadefs/object"));
    Ok(Value::Object(m))
}

fn tag_json(e: &Entry) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(e.name));
    if let Some(t) = e.created_at {
        m.insert("created_at".into(), json!(isotime(&t)));
    }
    put_opt(
        &mut m,
        "updated_at",
        e.updated_at.map(|t| json!(isotime(&t))),
    );
    Value::Object(m)
}

fn property_json(e: &Entry, with_name: bool) -> Value {
    let mut def = service::definition(e);
    if with_name {
        def.insert("name".into(), json!(e.name));
    }
    Value::Object(metadef::shown(&def))
}

// ---- parsing ----

fn bad_property(key: &str) -> Error {
    Error::BadRequest(format!(
        "Provided object does not match schema 'property': Additional properties are not allowed ('{key}' was unexpected)"
    ))
}

/// The property definitions of a body (`properties`: name → definition), as stored.
fn definitions(v: Option<&Value>) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for (name, def) in v.and_then(Value::as_object).into_iter().flatten() {
        let def = def.as_object().cloned().unwrap_or_default();
        let def = metadef::normalize_property(&def).map_err(|k| bad_property(&k))?;
        out.insert(name.clone(), Value::Object(def));
    }
    Ok(out)
}

fn object_entry(v: &Value) -> Result<Entry> {
    let required = v.get("required").and_then(Value::as_array).map(|r| {
        r.iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(",")
    });
    Ok(Entry {
        name: str_field(v, "name").unwrap_or_default(),
        description: str_field(v, "description"),
        required: required.filter(|r| !r.is_empty()),
        json_schema: Some(Value::Object(definitions(v.get("properties"))?).to_string()),
        updated_at: Some(crate::db::images::now()),
        ..Entry::default()
    })
}

fn property_entry(name: String, def: &Map<String, Value>) -> Result<Entry> {
    let def = metadef::normalize_property(def).map_err(|k| bad_property(&k))?;
    Ok(stored_property(name, &Value::Object(def)))
}

/// A property whose definition is already in Glance's shape.
fn stored_property(name: String, def: &Value) -> Entry {
    Entry {
        name,
        json_schema: Some(def.to_string()),
        updated_at: Some(crate::db::images::now()),
        ..Entry::default()
    }
}

fn tag_entry(name: &str) -> Entry {
    Entry {
        name: name.into(),
        updated_at: Some(crate::db::images::now()),
        ..Entry::default()
    }
}

fn association(v: &Value) -> Association {
    let now = crate::db::images::now();
    Association {
        name: str_field(v, "name").unwrap_or_default(),
        prefix: str_field(v, "prefix"),
        properties_target: str_field(v, "properties_target"),
        created_at: now,
        updated_at: Some(now),
    }
}

/// The namespace a PUT or POST body describes (a full replacement: absent fields take their
/// defaults, the owner the caller's project).
fn namespace_from(ctx: &Context, v: &Value, id: i64) -> Namespace {
    let now = crate::db::images::now();
    Namespace {
        id,
        namespace: str_field(v, "namespace").unwrap_or_default(),
        display_name: str_field(v, "display_name"),
        description: str_field(v, "description"),
        visibility: Some(str_field(v, "visibility").unwrap_or_else(|| "private".into())),
        protected: Some(v.get("protected").and_then(Value::as_bool).unwrap_or(false)),
        owner: str_field(v, "owner")
            .or_else(|| ctx.project_id.clone())
            .unwrap_or_default(),
        created_at: now,
        updated_at: Some(now),
    }
}

/// The namespace a route works on, once `action` on it is allowed.
async fn namespace_for(
    s: &AppState,
    ctx: &Context,
    name: &str,
    how: Lookup,
    action: &str,
) -> Result<Namespace> {
    let ns = service::find(s, ctx, name, how).await?;
    service::enforce(ctx, action, &ns)?;
    Ok(ns)
}

/// How the routes of `kind` look their namespace up.
fn lookup(kind: Kind) -> Lookup {
    if kind == Kind::Object {
        Lookup::Objects
    } else {
        Lookup::Other
    }
}

/// DELETE of one object, property or tag.
async fn delete_entry(
    s: &AppState,
    ctx: &Context,
    (name, entry): (String, String),
    kind: Kind,
    action: &str,
) -> Result<Response> {
    let ns = namespace_for(s, ctx, &name, lookup(kind), action).await?;
    service::remove(s, &ns, kind, &entry).await?;
    Ok(no_content())
}

// ---- namespaces ----

async fn list_namespaces(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let pairs = query_pairs(q);
    let param = |k: &str| super::last_param(&pairs, k);
    let limit = match param("limit") {
        None => s.cfg.limit_param_default as i64,
        Some(l) => match l.parse::<i64>() {
            Err(_) => return Err(Error::BadRequest("limit param must be an integer".into())),
            Ok(n) if n < 0 => return Err(Error::BadRequest("limit param must be positive".into())),
            Ok(n) => n.min(s.cfg.api_limit_max as i64),
        },
    };
    let dir = param("sort_dir").unwrap_or("desc");
    if dir != "asc" && dir != "desc" {
        return Err(Error::BadRequest(format!("Invalid sort direction: {dir}")));
    }
    let key = param("sort_key").unwrap_or("created_at");
    const KEYS: [&str; 9] = [
        "id",
        "namespace",
        "display_name",
        "description",
        "visibility",
        "protected",
        "owner",
        "created_at",
        "updated_at",
    ];
    if !KEYS.contains(&key) {
        return Err(Error::BadRequest(format!("Invalid sort key: {key}")));
    }
    let visibility = param("visibility");
    if let Some(v) = visibility
        && !v.is_empty()
        && v != "public"
        && v != "private"
    {
        return Err(Error::BadRequest(format!("Invalid visibility value: {v}")));
    }
    if let Some(m) = param("marker") {
        let ns =
            s.db.metadef_namespace(m).await?.ok_or_else(|| {
                crate::domain::fault::Metadef::NamespaceMissing { name: m.into() }
            })?;
        if !metadef::visible(&ctx, &ns) {
            return Err(crate::domain::fault::Metadef::MarkerHidden { name: m.into() }.into());
        }
    }
    let types: Option<Vec<&str>> = param("resource_types").map(|t| t.split(',').collect());
    let mut all = service::visible_namespaces(&s, &ctx).await?;
    all.retain(|(ns, assocs)| {
        visibility.is_none_or(|v| ns.visibility.as_deref() == Some(v))
            && types
                .as_ref()
                .is_none_or(|t| assocs.iter().any(|a| t.contains(&a.name.as_str())))
    });
    let fold = s.db.collation_folds_case();
    let sort_value = |ns: &Namespace| -> (String, chrono::NaiveDateTime, i64) {
        let v = match key {
            "namespace" => ns.namespace.clone(),
            "display_name" => ns.display_name.clone().unwrap_or_default(),
            "description" => ns.description.clone().unwrap_or_default(),
            "visibility" => ns.visibility.clone().unwrap_or_default(),
            "protected" => ns.protected.unwrap_or(false).to_string(),
            "owner" => ns.owner.clone(),
            "updated_at" => ns.updated_at.map(|t| t.to_string()).unwrap_or_default(),
            _ => String::new(),
        };
        // Sorted as Glance's query sorts them: on MariaDB, by its case-blind collation.
        let v = if fold { v.to_lowercase() } else { v };
        (v, ns.created_at, ns.id)
    };
    all.sort_by(|(a, _), (b, _)| {
        let o = sort_value(a).cmp(&sort_value(b));
        if dir == "desc" { o.reverse() } else { o }
    });
    if let Some(m) = param("marker")
        && let Some(pos) = all.iter().position(|(ns, _)| ns.namespace == m)
    {
        all.drain(..=pos);
    }
    all.truncate(limit.max(0) as usize);
    let items: Vec<Value> = all
        .iter()
        .map(|(ns, assocs)| namespace_json(ns, with_associations(assocs)))
        .collect();
    let next_marker = (limit > 0 && all.len() == limit as usize)
        .then(|| all.last().map(|(ns, _)| ns.namespace.clone()))
        .flatten();
    let (first, next) =
        super::page_links("/v2/metadefs/namespaces", &pairs, next_marker.as_deref());
    let mut m = Map::new();
    m.insert("namespaces".into(), Value::Array(items));
    put_opt(&mut m, "next", next.map(Value::from));
    m.insert("schema".into(), json!("/v2/schemas/metadefs/namespaces"));
    m.insert("first".into(), json!(first));
    Ok(json_response(StatusCode::OK, &Value::Object(m)))
}

async fn create_namespace(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response> {
    let v = json_body(&body)?;
    schemas::validate(Body::Namespace, &v)?;
    let mut contents = Contents::default();
    for a in v["resource_type_associations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        contents.associations.push(association(a));
    }
    for o in v["objects"].as_array().into_iter().flatten() {
        contents.objects.push(object_entry(o)?);
    }
    for t in v["tags"].as_array().into_iter().flatten() {
        contents
            .tags
            .push(tag_entry(t["name"].as_str().unwrap_or_default()));
    }
    let props = definitions(v.get("properties"))?;
    for (name, def) in &props {
        contents.properties.push(stored_property(name.clone(), def));
    }
    let ns = service::create(&s, &ctx, namespace_from(&ctx, &v, 0), &contents).await?;
    // Glance echoes what was asked for: the nested parts as sent, given keys only.
    let mut extra = Map::new();
    if let Some(a) = v.get("resource_type_associations") {
        extra.insert(
            "resource_type_associations".into(),
            Value::Array(
                a.as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        let mut m = Map::new();
                        for k in ["name", "prefix", "properties_target"] {
                            put_opt(&mut m, k, a.get(k).cloned());
                        }
                        Value::Object(m)
                    })
                    .collect(),
            ),
        );
    }
    if v.get("properties").is_some() {
        extra.insert("properties".into(), Value::Object(props));
    }
    if let Some(objs) = v.get("objects") {
        let mut list = Vec::new();
        for o in objs.as_array().into_iter().flatten() {
            list.push(Value::Object(object_fields(o)?));
        }
        extra.insert("objects".into(), Value::Array(list));
    }
    if let Some(tags) = v.get("tags") {
        let list = tags
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| json!({"name": t["name"]}))
            .collect();
        extra.insert("tags".into(), Value::Array(list));
    }
    let path = format!("/v2/metadefs/namespaces/{}", ns.namespace);
    Ok(created(
        &s.cfg,
        &headers,
        &uri,
        &path,
        &namespace_json(&ns, extra),
    ))
}

async fn show_namespace(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let pairs = query_pairs(q);
    if let Some((_, v)) = pairs.iter().find(|(k, _)| k == "visibility")
        && v != "public"
        && v != "private"
    {
        return Err(Error::BadRequest(format!("Invalid visibility value: {v}")));
    }
    let ns = namespace_for(&s, &ctx, &name, Lookup::Show, "get_metadef_namespace").await?;
    for action in [
        "list_metadef_resource_types",
        "get_metadef_objects",
        "get_metadef_properties",
        "get_metadef_tags",
    ] {
        service::enforce(&ctx, action, &ns)?;
    }
    let assocs = service::associations(&s, &ns).await?;
    let prefix = pairs
        .iter()
        .find(|(k, _)| k == "resource_type")
        .and_then(|(_, rt)| assocs.iter().find(|a| &a.name == rt))
        .and_then(|a| a.prefix.clone())
        .unwrap_or_default();
    let mut extra = with_associations(&assocs);
    let props = s.db.metadef_entries(ns.id, Kind::Property).await?;
    if !props.is_empty() {
        let defs: Map<String, Value> = props
            .iter()
            .map(|e| (e.name.clone(), property_json(e, false)))
            .collect();
        extra.insert("properties".into(), Value::Object(prefixed(defs, &prefix)));
    }
    let objects = s.db.metadef_entries(ns.id, Kind::Object).await?;
    if !objects.is_empty() {
        let list = objects
            .iter()
            .map(|o| object_json(&ns.namespace, o, &prefix))
            .collect();
        extra.insert("objects".into(), Value::Array(list));
    }
    let mut tags = s.db.metadef_entries(ns.id, Kind::Tag).await?;
    // As Glance lists them by default: newest first (creation, then insertion).
    tags.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
    if !tags.is_empty() {
        let list = tags.iter().map(|t| json!({"name": t.name})).collect();
        extra.insert("tags".into(), Value::Array(list));
    }
    Ok(json_response(StatusCode::OK, &namespace_json(&ns, extra)))
}

async fn update_namespace(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let v = json_body(&body)?;
    schemas::validate(Body::Namespace, &v)?;
    let ns = namespace_for(&s, &ctx, &name, Lookup::Other, "modify_metadef_namespace").await?;
    let new = namespace_from(&ctx, &v, ns.id);
    let saved = service::replace(&s, &ns.namespace, &new).await?;
    // Glance answers with the times read before the update.
    let shown = Namespace {
        created_at: ns.created_at,
        updated_at: ns.updated_at,
        ..saved
    };
    Ok(json_response(
        StatusCode::OK,
        &namespace_json(&shown, Map::new()),
    ))
}

async fn delete_namespace(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(name): Path<String>,
) -> Result<Response> {
    let ns = namespace_for(&s, &ctx, &name, Lookup::Other, "delete_metadef_namespace").await?;
    service::delete(&s, &ns).await?;
    Ok(no_content())
}

/// DELETE of all objects, properties or tags of a namespace.
async fn delete_all(s: &AppState, ctx: &Context, name: &str, kind: Kind) -> Result<Response> {
    let ns = namespace_for(s, ctx, name, lookup(kind), "delete_metadef_namespace").await?;
    if kind == Kind::Tag {
        service::enforce(ctx, "delete_metadef_tags", &ns)?;
    }
    service::remove_all(s, &ns, kind).await?;
    Ok(no_content())
}

// ---- objects ----

async fn list_objects(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    check_list_query(&query_pairs(q), true)?;
    let ns = namespace_for(&s, &ctx, &name, Lookup::Objects, "get_metadef_objects").await?;
    let list: Vec<Value> = if ctx.allows("get_metadef_object", &metadef::target(&ns)) {
        s.db.metadef_entries(ns.id, Kind::Object)
            .await?
            .iter()
            .map(|o| object_json(&ns.namespace, o, ""))
            .collect()
    } else {
        Vec::new()
    };
    // Glance's link here lacks the leading slash.
    Ok(json_response(
        StatusCode::OK,
        &json!({"objects": list, "schema": "v2/schemas/metadefs/objects"}),
    ))
}

/// The paging parameters Glance checks on object and tag lists (and then ignores, for objects).
fn check_list_query(pairs: &[(String, String)], zero_is_bad: bool) -> Result<()> {
    for (k, v) in pairs {
        match k.as_str() {
            "limit" => match v.parse::<i64>() {
                Err(_) => return Err(Error::BadRequest("limit param must be an integer".into())),
                Ok(n) if n < 0 || (zero_is_bad && n == 0) => {
                    return Err(Error::BadRequest("limit param must be positive".into()));
                }
                Ok(_) => {}
            },
            "sort_dir" if v != "asc" && v != "desc" => {
                return Err(Error::BadRequest(format!("Invalid sort direction: {v}")));
            }
            "visibility" if !["public", "private", "shared"].contains(&v.as_str()) => {
                return Err(Error::BadRequest(format!("Invalid visibility value: {v}")));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Glance's refusal of text it could not store, in the words of the route's handler.
fn storable(e: &Entry, context: &'static str) -> Result<(), crate::domain::fault::Fault> {
    service::storable_entry(e).map_err(|what| crate::domain::fault::Fault::FourByte {
        what,
        context: Some(context),
    })
}

async fn create_object(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let v = json_body(&body)?;
    schemas::validate(Body::Object, &v)?;
    for def in v["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, d)| d)
    {
        schemas::validate(Body::ObjectProperty, def)?;
    }
    let ns = namespace_for(&s, &ctx, &name, Lookup::Objects, "add_metadef_object").await?;
    let e = object_entry(&v)?;
    storable(&e, "Couldn't create metadata object")?;
    service::add(&s, &ns, Kind::Object, std::slice::from_ref(&e), false).await?;
    let now = Some(crate::db::images::now());
    let m = object_echo(&ns.namespace, &v, now, now)?;
    Ok(json_response(StatusCode::CREATED, &m))
}

async fn delete_objects(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(name): Path<String>,
) -> Result<Response> {
    delete_all(&s, &ctx, &name, Kind::Object).await
}

async fn show_object(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path((name, object)): Path<(String, String)>,
) -> Result<Response> {
    let ns = namespace_for(&s, &ctx, &name, Lookup::Objects, "get_metadef_object").await?;
    let e = service::entry(&s, &ns, Kind::Object, &object).await?;
    Ok(json_response(
        StatusCode::OK,
        &object_json(&ns.namespace, &e, ""),
    ))
}

async fn update_object(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path((name, object)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let v = json_body(&body)?;
    schemas::validate(Body::Object, &v)?;
    let ns = namespace_for(&s, &ctx, &name, Lookup::Objects, "modify_metadef_object").await?;
    let old = service::entry(&s, &ns, Kind::Object, &object).await?;
    service::update(&s, &ns, Kind::Object, &object, &object_entry(&v)?).await?;
    // Glance answers with what was sent and the times read before the update.
    let m = object_echo(&ns.namespace, &v, old.created_at, old.updated_at)?;
    Ok(json_response(StatusCode::OK, &m))
}

async fn delete_object(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(p): Path<(String, String)>,
) -> Result<Response> {
    delete_entry(&s, &ctx, p, Kind::Object, "delete_metadef_object").await
}

// ---- properties ----

async fn list_properties(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(name): Path<String>,
) -> Result<Response> {
    let ns = namespace_for(&s, &ctx, &name, Lookup::Other, "get_metadef_properties").await?;
    let props: Map<String, Value> =
        s.db.metadef_entries(ns.id, Kind::Property)
            .await?
            .iter()
            .map(|e| (e.name.clone(), property_json(e, false)))
            .collect();
    Ok(json_response(StatusCode::OK, &json!({"properties": props})))
}

async fn create_property(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let v = json_body(&body)?;
    schemas::validate(Body::Property, &v)?;
    let ns = namespace_for(&s, &ctx, &name, Lookup::Other, "add_metadef_property").await?;
    let def = v.as_object().cloned().unwrap_or_default();
    let e = property_entry(str_field(&v, "name").unwrap_or_default(), &def)?;
    storable(&e, "Couldn't create metadata property")?;
    service::add(&s, &ns, Kind::Property, std::slice::from_ref(&e), false).await?;
    Ok(json_response(StatusCode::CREATED, &property_json(&e, true)))
}

async fn delete_properties(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(name): Path<String>,
) -> Result<Response> {
    delete_all(&s, &ctx, &name, Kind::Property).await
}

async fn show_property(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path((name, property)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let ns = namespace_for(&s, &ctx, &name, Lookup::Other, "get_metadef_property").await?;
    let mut wanted = property.clone();
    if let Some((_, rt)) = query_pairs(q)
        .into_iter()
        .find(|(k, _)| k == "resource_type")
    {
        use crate::domain::fault::Metadef as M;
        service::enforce(&ctx, "get_metadef_resource_type", &ns)?;
        if !s
            .db
            .metadef_resource_types()
            .await?
            .iter()
            .any(|t| t.name == rt)
        {
            return Err(M::ResourceTypeNotFound { name: rt }.into());
        }
        let assoc = service::associations(&s, &ns)
            .await?
            .into_iter()
            .find(|a| a.name == rt)
            .ok_or_else(|| M::AssociationNotFound {
                resource_type: rt.clone(),
                namespace: ns.namespace.clone(),
            })?;
        match assoc.prefix.as_deref().filter(|p| !p.is_empty()) {
            Some(p) if property.starts_with(p) => wanted = property[p.len()..].to_string(),
            _ => {
                return Err(M::PrefixMismatch {
                    property,
                    prefix: assoc.prefix,
                }
                .into());
            }
        }
    }
    let e = service::entry(&s, &ns, Kind::Property, &wanted).await?;
    Ok(json_response(StatusCode::OK, &property_json(&e, true)))
}

async fn update_property(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path((name, property)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let v = json_body(&body)?;
    schemas::validate(Body::Property, &v)?;
    let ns = namespace_for(&s, &ctx, &name, Lookup::Other, "modify_metadef_property").await?;
    let def = v.as_object().cloned().unwrap_or_default();
    let e = property_entry(str_field(&v, "name").unwrap_or_default(), &def)?;
    service::update(&s, &ns, Kind::Property, &property, &e).await?;
    Ok(json_response(StatusCode::OK, &property_json(&e, true)))
}

async fn delete_property(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(p): Path<(String, String)>,
) -> Result<Response> {
    delete_entry(&s, &ctx, p, Kind::Property, "remove_metadef_property").await
}

// ---- tags ----

async fn list_tags(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let pairs = query_pairs(q);
    check_list_query(&pairs, false)?;
    let ns = namespace_for(&s, &ctx, &name, Lookup::Other, "get_metadef_tags").await?;
    let mut tags = s.db.metadef_entries(ns.id, Kind::Tag).await?;
    let param = |k: &str| super::last_param(&pairs, k);
    // Newest first unless asked otherwise: by the sort key, then creation, then insertion.
    let key = |t: &Entry| {
        let first = match param("sort_key") {
            Some("name") => t.name.clone(),
            Some("updated_at") => t.updated_at.map(|u| u.to_string()).unwrap_or_default(),
            _ => String::new(),
        };
        (first, t.created_at, t.id)
    };
    tags.sort_by_key(key);
    if param("sort_dir").unwrap_or("desc") == "desc" {
        tags.reverse();
    }
    if let Some(m) = param("marker") {
        let pos = tags.iter().position(|t| t.name == m).ok_or_else(|| {
            crate::domain::fault::Metadef::EntryNotFound {
                kind: Kind::Tag,
                name: m.into(),
            }
        })?;
        tags.drain(..=pos);
    }
    if let Some(n) = param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        tags.truncate(n);
    }
    let list: Vec<Value> = tags.iter().map(|t| json!({"name": t.name})).collect();
    Ok(json_response(StatusCode::OK, &json!({"tags": list})))
}

async fn create_tags(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let v = json_body(&body)?;
    schemas::validate(Body::Tags, &v)?;
    let ns = namespace_for(&s, &ctx, &name, Lookup::Other, "add_metadef_tags").await?;
    let append = headers
        .get("x-openstack-append")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| {
            ["1", "t", "true", "on", "y", "yes"].contains(&h.trim().to_lowercase().as_str())
        });
    let names: Vec<&str> = v["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    let entries: Vec<Entry> = names.iter().map(|n| tag_entry(n)).collect();
    service::add(&s, &ns, Kind::Tag, &entries, !append).await?;
    let list: Vec<Value> = names.iter().map(|n| json!({"name": n})).collect();
    Ok(json_response(StatusCode::CREATED, &json!({"tags": list})))
}

async fn delete_tags(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(name): Path<String>,
) -> Result<Response> {
    delete_all(&s, &ctx, &name, Kind::Tag).await
}

async fn show_tag(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path((name, tag)): Path<(String, String)>,
) -> Result<Response> {
    let ns = namespace_for(&s, &ctx, &name, Lookup::Other, "get_metadef_tag").await?;
    let e = service::entry(&s, &ns, Kind::Tag, &tag).await?;
    Ok(json_response(StatusCode::OK, &tag_json(&e)))
}

async fn create_tag(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path((name, tag)): Path<(String, String)>,
) -> Result<Response> {
    let ns = service::find(&s, &ctx, &name, Lookup::Other).await?;
    schemas::validate(Body::Tag, &json!({ "name": tag }))?;
    service::enforce(&ctx, "add_metadef_tag", &ns)?;
    storable(&tag_entry(&tag), "Couldn't create metadata tag")?;
    service::add(&s, &ns, Kind::Tag, &[tag_entry(&tag)], false).await?;
    let e = service::entry(&s, &ns, Kind::Tag, &tag).await?;
    Ok(json_response(StatusCode::CREATED, &tag_json(&e)))
}

async fn update_tag(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path((name, tag)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let v = json_body(&body)?;
    schemas::validate(Body::Tag, &v)?;
    let ns = namespace_for(&s, &ctx, &name, Lookup::Other, "modify_metadef_tag").await?;
    let old = service::entry(&s, &ns, Kind::Tag, &tag).await?;
    let new = tag_entry(v["name"].as_str().unwrap_or_default());
    service::update(&s, &ns, Kind::Tag, &tag, &new).await?;
    let shown = Entry {
        created_at: old.created_at,
        updated_at: old.updated_at,
        ..new
    };
    Ok(json_response(StatusCode::OK, &tag_json(&shown)))
}

async fn delete_tag(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(p): Path<(String, String)>,
) -> Result<Response> {
    delete_entry(&s, &ctx, p, Kind::Tag, "delete_metadef_tag").await
}

// ---- resource types ----

async fn list_resource_types(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
) -> Result<Response> {
    service::enforce_project(&ctx, "list_metadef_resource_types")?;
    let list: Vec<Value> =
        s.db.metadef_resource_types()
            .await?
            .iter()
            .map(|t| {
                let mut m = Map::new();
                m.insert("name".into(), json!(t.name));
                m.insert("created_at".into(), json!(isotime(&t.created_at)));
                put_opt(
                    &mut m,
                    "updated_at",
                    t.updated_at.map(|u| json!(isotime(&u))),
                );
                Value::Object(m)
            })
            .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"resource_types": list}),
    ))
}

async fn list_associations(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(name): Path<String>,
) -> Result<Response> {
    let ns = namespace_for(
        &s,
        &ctx,
        &name,
        Lookup::Other,
        "list_metadef_resource_types",
    )
    .await?;
    let shown = ctx.allows("get_metadef_resource_type", &metadef::target(&ns));
    let list: Vec<Value> = service::associations(&s, &ns)
        .await?
        .iter()
        .filter(|_| shown)
        .map(association_json)
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "resource_type_associations": list }),
    ))
}

async fn create_association(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let v = json_body(&body)?;
    schemas::validate(Body::Association, &v)?;
    let ns = namespace_for(
        &s,
        &ctx,
        &name,
        Lookup::Other,
        "add_metadef_resource_type_association",
    )
    .await?;
    let a = association(&v);
    service::associate(&s, &ns, &a).await?;
    let shown = Association {
        updated_at: Some(a.created_at),
        ..a
    };
    Ok(json_response(
        StatusCode::CREATED,
        &association_json(&shown),
    ))
}

async fn delete_association(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path((name, rt)): Path<(String, String)>,
) -> Result<Response> {
    let ns = namespace_for(
        &s,
        &ctx,
        &name,
        Lookup::Other,
        "remove_metadef_resource_type_association",
    )
    .await?;
    service::dissociate(&s, &ns, &rt).await?;
    Ok(no_content())
}
