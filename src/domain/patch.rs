//! Glance's JSON-patch dialects for images: parsing the request and applying it to an image.
//!
//! Two media types: `application/openstack-images-v2.1-json-patch` (RFC 6902 style objects with
//! `op`/`path`/`value`) and the older `...-v2.0-json-patch` (draft-4 style `{"replace": "/name"}`).
//! Only add/remove/replace exist. All changes are applied to a copy and saved once, so a request
//! that fails half-way changes nothing.

use serde_json::Value;

use crate::domain::image::{Image, READ_ONLY, Visibility, is_reserved, min_requirement};
use crate::domain::policy::{Context, Operation};
use crate::error::{Error, Result};

pub const MEDIA_TYPE_V20: &str = "application/openstack-images-v2.0-json-patch";
pub const MEDIA_TYPE_V21: &str = "application/openstack-images-v2.1-json-patch";
/// Sorted, comma-joined: what Glance puts in `Accept-Patch`.
pub const ACCEPT_PATCH: &str =
    "application/openstack-images-v2.0-json-patch, application/openstack-images-v2.1-json-patch";

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Add,
    Remove,
    Replace,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Remove => "remove",
            Op::Replace => "replace",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dialect {
    /// v2.0 media type (draft 4)
    Draft4,
    /// v2.1 media type (draft 10 / RFC 6902)
    Draft10,
}

#[derive(Debug, Clone)]
pub struct Change {
    pub op: Op,
    pub path: Vec<String>,
    pub value: Option<Value>,
}

const OPS: &str = "add, remove, replace";

pub fn dialect_for(content_type: Option<&str>) -> Result<Dialect> {
    let ct = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    match ct.as_deref() {
        Some(MEDIA_TYPE_V20) => Ok(Dialect::Draft4),
        Some(MEDIA_TYPE_V21) => Ok(Dialect::Draft10),
        _ => Err(Error::UnsupportedMediaType {
            msg: format!("Image PATCH expects Content-Type one of: {ACCEPT_PATCH}"),
            accept_patch: Some(ACCEPT_PATCH),
        }),
    }
}

/// Parses and validates the request body (the deserializer's half of Glance's PATCH handling).
/// `validate` checks a partial image such as `{"name": "x"}` against the image schema.
pub fn parse(
    body: &Value,
    dialect: Dialect,
    validate: &dyn Fn(&Value) -> Result<()>,
) -> Result<Vec<Change>> {
    let Some(items) = body.as_array() else {
        return Err(Error::BadRequest(
            "Request body must be a JSON array of operation objects.".into(),
        ));
    };
    let mut changes = Vec::with_capacity(items.len());
    for raw in items {
        let Some(obj) = raw.as_object() else {
            return Err(Error::BadRequest("Operations must be JSON objects.".into()));
        };
        let (op, pointer) = match dialect {
            Dialect::Draft10 => {
                let op = match obj.get("op").and_then(Value::as_str) {
                    None if !obj.contains_key("op") => {
                        return Err(Error::BadRequest(format!(
                            "Unable to find `op` in JSON Schema change. It must be one of the following: {OPS}."
                        )));
                    }
                    Some("add") => Op::Add,
                    Some("remove") => Op::Remove,
                    Some("replace") => Op::Replace,
                    other => {
                        let shown = other
                            .map(str::to_string)
                            .unwrap_or_else(|| obj["op"].to_string());
                        return Err(Error::BadRequest(format!(
                            "Invalid operation: `{shown}`. It must be one of the following: {OPS}."
                        )));
                    }
                };
                let path = obj.get("path").ok_or_else(|| {
                    Error::BadRequest("Unable to find 'path' in JSON Schema change".into())
                })?;
                (op, path)
            }
            Dialect::Draft4 => {
                let present: Vec<Op> = [Op::Add, Op::Remove, Op::Replace]
                    .into_iter()
                    .filter(|o| obj.contains_key(o.name()))
                    .collect();
                match present.as_slice() {
                    [op] => (*op, &obj[op.name()]),
                    [] => {
                        return Err(Error::BadRequest(
                            "Operation objects must contain exactly one member named \"add\", \"remove\", or \"replace\".".into(),
                        ));
                    }
                    _ => {
                        return Err(Error::BadRequest(
                            "Operation objects must contain only one member named \"add\", \"remove\", or \"replace\".".into(),
                        ));
                    }
                }
            }
        };
        let pointer = pointer.as_str().ok_or_else(|| {
            Error::BadRequest(format!("Pointer `{pointer}` does not start with \"/\"."))
        })?;
        let path = decode_pointer(pointer)?;
        validate_depth(op, &path)?;
        let value = if op == Op::Remove {
            None
        } else {
            Some(obj.get("value").cloned().ok_or_else(|| {
                Error::BadRequest(format!(
                    "Operation \"{}\" requires a member named \"value\".",
                    op.name()
                ))
            })?)
        };
        let change = Change { op, path, value };
        check_writable(&change, validate)?;
        changes.push(change);
    }
    Ok(changes)
}

fn decode_pointer(pointer: &str) -> Result<Vec<String>> {
    let bad = |why: &str| Error::BadRequest(format!("Pointer `{pointer}` {why}"));
    if !pointer.starts_with('/') {
        return Err(bad("does not start with \"/\"."));
    }
    let rest = &pointer[1..];
    if has_adjacent_slashes(rest) {
        return Err(bad("contains adjacent \"/\"."));
    }
    if pointer.len() > 1 && pointer.ends_with('/') {
        return Err(bad("end with \"/\"."));
    }
    let bytes = pointer.as_bytes();
    let bad_tilde = bytes
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'~' && !matches!(bytes.get(i + 1), Some(b'0' | b'1')));
    if bad_tilde {
        return Err(bad(
            "contains \"~\" not part of a recognized escape sequence.",
        ));
    }
    if rest.trim() == "/" {
        return Err(bad("does not contains valid token."));
    }
    Ok(pointer
        .trim_start_matches('/')
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~").trim().to_string())
        .collect())
}

/// A "/" followed by blanks and another "/".
fn has_adjacent_slashes(s: &str) -> bool {
    s.match_indices('/')
        .any(|(i, _)| s[i + 1..].trim_start().starts_with('/'))
}

fn validate_depth(op: Op, path: &[String]) -> Result<()> {
    let allowed = if path[0] == "locations" {
        match op {
            Op::Add | Op::Remove => 2,
            Op::Replace => 1,
        }
    } else {
        1
    };
    if path.len() != allowed {
        return Err(Error::BadRequest(format!(
            "Invalid JSON pointer for this resource: '/{}'",
            path.join("/")
        )));
    }
    Ok(())
}

fn check_writable(change: &Change, validate: &dyn Fn(&Value) -> Result<()>) -> Result<()> {
    let root = change.path[0].as_str();
    if READ_ONLY.contains(&root) {
        return Err(Error::Forbidden(format!(
            "Attribute '{root}' is read-only."
        )));
    }
    if is_reserved(root) {
        return Err(Error::Forbidden(format!("Attribute '{root}' is reserved.")));
    }
    if let Some(value) = &change.value {
        let partial = if change.path.len() == 1 {
            serde_json::json!({ root: value })
        } else {
            // `/locations/N`: one element of the list.
            serde_json::json!({ root: [value] })
        };
        validate(&partial)?;
    }
    Ok(())
}

/// Deployment settings PATCH depends on.
pub struct PatchOptions {
    pub show_multiple_locations: bool,
    pub image_location_quota: i64,
}

/// Applies the changes to a copy of `image`; the caller saves the result once. Location
/// changes only edit the list (and the hashes from `validation_data`); the caller checks new
/// locations against the stores, fills in the size and activates a queued image.
pub fn apply(
    ctx: &Context,
    image: &Image,
    changes: &[Change],
    dialect: Dialect,
    opts: &PatchOptions,
) -> Result<Image> {
    let mut img = image.clone();
    for change in changes {
        let root = change.path[0].as_str();
        if root == "locations" {
            apply_location(ctx, &mut img, change, opts)?;
            continue;
        }
        match change.op {
            Op::Replace | Op::Add => {
                let value = change.value.clone().unwrap_or(Value::Null);
                if root == "owner" && !ctx.is_admin {
                    return Err(
                        Error::Forbidden("Owner can't be updated by non admin.".into()).as_detail(),
                    );
                }
                let is_base = set_base(ctx, &mut img, root, &value)?;
                if is_base {
                    if change.op == Op::Add && dialect == Dialect::Draft4 {
                        return Err(Error::Conflict(format!("Property {root} already present."))
                            .as_detail());
                    }
                    continue;
                }
                ctx.on_image(&img).enforce_mutation("modify_image")?;
                // A property the caller may not read is one it cannot see: as if absent.
                let exists = img.properties.contains_key(root) && ctx.may(root, Operation::Read);
                match change.op {
                    Op::Replace if !exists => {
                        return Err(
                            Error::Conflict(format!("Property {root} does not exist.")).as_detail()
                        );
                    }
                    Op::Add if exists && dialect == Dialect::Draft4 => {
                        return Err(Error::Conflict(format!("Property {root} already present."))
                            .as_detail());
                    }
                    _ => {}
                }
                let s = value.as_str().map(str::to_string).ok_or_else(|| {
                    Error::BadRequest(format!(
                        "Provided object does not match schema 'image': {value} is not of type 'string'"
                    ))
                })?;
                let op = if exists {
                    Operation::Update
                } else {
                    Operation::Create
                };
                if !ctx.may(root, op) {
                    return Err(reserved(root));
                }
                img.properties.insert(root.to_string(), s);
            }
            Op::Remove => {
                ctx.on_image(&img).enforce_mutation("modify_image")?;
                if crate::domain::image::BASE_PROPERTIES.contains(&root) {
                    return Err(
                        Error::Forbidden(format!("Property {root} may not be removed."))
                            .as_detail(),
                    );
                }
                if !(img.properties.contains_key(root) && ctx.may(root, Operation::Read)) {
                    return Err(
                        Error::Conflict(format!("Property {root} does not exist.")).as_detail()
                    );
                }
                if !ctx.may(root, Operation::Delete) {
                    return Err(reserved(root));
                }
                img.properties.remove(root);
            }
        }
    }
    Ok(img)
}

/// A property protection's refusal, in Glance's words.
fn reserved(key: &str) -> Error {
    Error::Forbidden(format!("Attribute '{key}' is reserved."))
}

fn apply_location(
    ctx: &Context,
    img: &mut Image,
    change: &Change,
    opts: &PatchOptions,
) -> Result<()> {
    let verb = match change.op {
        Op::Add => "add",
        Op::Remove => "remove",
        Op::Replace => "update",
    };
    // Glance refuses an empty list before anything else.
    let empty = change
        .value
        .as_ref()
        .and_then(Value::as_array)
        .is_none_or(|l| l.is_empty());
    if change.op == Op::Replace && empty {
        return Err(Error::Forbidden("Cannot set locations to empty list.".into()).as_detail());
    }
    // Glance's policy first: set_image_location to add or replace, delete_image_location
    // (with the legacy owner check) to remove.
    let checks = ctx.on_image(img);
    match change.op {
        Op::Remove => checks.enforce_mutation("delete_image_location")?,
        _ => checks.enforce("set_image_location")?,
    }
    if !opts.show_multiple_locations {
        return Err(Error::Forbidden(format!(
            "It's not allowed to {verb} locations if locations are invisible."
        )));
    }
    match change.op {
        Op::Remove => {
            let pos = position(&change.path[1], img.locations.len(), false)?;
            if img.locations.len() == 1 {
                return Err(
                    Error::Forbidden("Cannot remove last location in the image.".into())
                        .as_detail(),
                );
            }
            img.locations.remove(pos);
        }
        Op::Add => {
            let value = change.value.as_ref().cloned().unwrap_or(Value::Null);
            let pos = position(&change.path[1], img.locations.len(), true)?;
            add_location(img, value, pos, opts)?;
        }
        Op::Replace => {
            let list = change
                .value
                .as_ref()
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !img.locations.is_empty() {
                return Err(Error::BadRequest(
                    "Cannot replace locations from a non-empty list to a non-empty list.".into(),
                ));
            }
            for v in list {
                let n = img.locations.len();
                add_location(img, v, n, opts)?;
            }
        }
    }
    Ok(())
}

/// `/locations/N` or `/locations/-` (append, for add only).
fn position(token: &str, len: usize, adding: bool) -> Result<usize> {
    if adding && token == "-" {
        return Ok(len);
    }
    let bad = || Error::BadRequest(format!("Invalid position for the location: {token}"));
    let n: usize = token.parse().map_err(|_| bad())?;
    if (adding && n > len) || (!adding && n >= len) {
        return Err(bad());
    }
    Ok(n)
}

pub fn add_location(img: &mut Image, value: Value, pos: usize, opts: &PatchOptions) -> Result<()> {
    use crate::domain::image::{Location, Status};
    if !matches!(img.status, Status::Queued | Status::Active) {
        return Err(Error::Conflict(format!(
            "Cannot add a location to an image in status {}.",
            img.status.as_str()
        )));
    }
    let url = value["url"].as_str().unwrap_or_default().to_string();
    if img.locations.iter().any(|l| l.url == url) {
        return Err(Error::BadRequest(format!(
            "The location {url} is already in the image."
        )));
    }
    let n = img.locations.len() + 1;
    if opts.image_location_quota >= 0 && n as i64 > opts.image_location_quota {
        return Err(Error::TooLarge(format!(
            "The limit has been exceeded on the number of allowed image locations. Attempted: {n}, Maximum: {}",
            opts.image_location_quota
        )));
    }
    set_validation_data(img, value.get("validation_data"))?;
    let metadata = value
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    img.locations.insert(pos, Location { url, metadata });
    Ok(())
}

/// Hashes that come with a location: they become the image's while it is queued, and must
/// equal the image's afterwards.
pub fn set_validation_data(img: &mut Image, vd: Option<&Value>) -> Result<()> {
    let Some(vd) = vd.filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let queued = img.status == crate::domain::image::Status::Queued;
    for (key, field) in [
        ("checksum", &mut img.checksum),
        ("os_hash_algo", &mut img.os_hash_algo),
        ("os_hash_value", &mut img.os_hash_value),
    ] {
        let Some(given) = vd.get(key).and_then(Value::as_str) else {
            continue;
        };
        match field {
            Some(current) if current != given => {
                return Err(Error::Conflict(format!(
                    "{key} of the location's validation data is different from the value set on the image."
                )));
            }
            Some(_) => {}
            None if queued => *field = Some(given.to_string()),
            None => {}
        }
    }
    Ok(())
}

/// Sets a base attribute. Returns false when `key` is not one (a custom property).
/// Values were already checked against the schema by `parse`.
fn set_base(ctx: &Context, img: &mut Image, key: &str, value: &Value) -> Result<bool> {
    let string = || value.as_str().map(str::to_string);
    match key {
        "visibility" => {
            let v = value
                .as_str()
                .and_then(Visibility::parse)
                .ok_or_else(|| Error::BadRequest("Visibility must be one of \"community\", \"public\", \"private\", or \"shared\"".into()))?;
            let checks = ctx.on_image(img);
            checks.enforce_visibility(v)?;
            checks.enforce_mutation("modify_image")?;
            img.visibility = v;
        }
        _ if !crate::domain::image::BASE_PROPERTIES.contains(&key) => return Ok(false),
        _ => {
            ctx.on_image(img).enforce_mutation("modify_image")?;
            match key {
                "name" => img.name = string(),
                "protected" => img.protected = value.as_bool().unwrap_or(false),
                "os_hidden" => img.os_hidden = value.as_bool().unwrap_or(false),
                "owner" => img.owner = string(),
                "container_format" => set_format(img, "container_format", string())?,
                "disk_format" => set_format(img, "disk_format", string())?,
                "min_ram" => img.min_ram = min_requirement(key, value)?,
                "min_disk" => img.min_disk = min_requirement(key, value)?,
                "tags" => {
                    img.tags = value
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default();
                }
                other => {
                    return Err(Error::Forbidden(format!(
                        "Attribute '{other}' is read-only."
                    )));
                }
            }
        }
    }
    Ok(true)
}

/// Formats are frozen once the image has data (Glance: "Attribute X can be only replaced for a
/// queued image").
fn set_format(img: &mut Image, key: &str, value: Option<String>) -> Result<()> {
    use crate::domain::image::Status;
    if img.status != Status::Queued {
        return Err(Error::Forbidden(format!(
            "Attribute {key} can be only replaced for a queued image."
        )));
    }
    if key == "disk_format" {
        img.disk_format = value;
    } else {
        img.container_format = value;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: &Value) -> Result<()> {
        Ok(())
    }

    #[test]
    fn pointers() {
        assert_eq!(decode_pointer("/a~1b~0c").unwrap(), vec!["a/b~c"]);
        assert!(decode_pointer("name").is_err());
        assert!(decode_pointer("/a//b").is_err());
        assert!(decode_pointer("/a/").is_err());
        assert!(decode_pointer("/a~2").is_err());
        assert!(decode_pointer("/a~").is_err());
    }

    #[test]
    fn parse_rules() {
        let body = serde_json::json!([{"op": "move", "path": "/name", "value": "x"}]);
        assert!(matches!(
            parse(&body, Dialect::Draft10, &ok),
            Err(Error::BadRequest(_))
        ));
        let body = serde_json::json!([{"op": "replace", "path": "/status", "value": "x"}]);
        assert!(matches!(
            parse(&body, Dialect::Draft10, &ok),
            Err(Error::Forbidden(_))
        ));
        let body = serde_json::json!([{"op": "add", "path": "/os_glance_x", "value": "x"}]);
        assert!(matches!(
            parse(&body, Dialect::Draft10, &ok),
            Err(Error::Forbidden(_))
        ));
        let body = serde_json::json!([{"replace": "/name", "value": "x"}]);
        let ch = parse(&body, Dialect::Draft4, &ok).unwrap();
        assert_eq!(ch[0].op, Op::Replace);
        let body = serde_json::json!({"op": "add"});
        assert!(parse(&body, Dialect::Draft10, &ok).is_err());
        let body = serde_json::json!([{"op": "add", "path": "/a/b", "value": "x"}]);
        assert!(matches!(
            parse(&body, Dialect::Draft10, &ok),
            Err(Error::BadRequest(_))
        ));
    }
}
