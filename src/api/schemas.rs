//! `/v2/schemas/*`: the JSON schemas the clients download and validate against, shaped as
//! Glance serves them (same properties, types, enums, patterns, links). The image schema also
//! validates create and PATCH bodies.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{AppState, json_response};
use crate::config::Config;
use crate::error::{Error, Result};

const UUID_PATTERN: &str =
    "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$";

fn nullable_enum(values: &[String]) -> Value {
    let mut v = vec![Value::Null];
    v.extend(values.iter().map(|s| json!(s)));
    Value::Array(v)
}

fn image_properties(cfg: &Config) -> Value {
    json!({
        "id": {"type": "string", "description": "Image ID (a UUID)", "pattern": UUID_PATTERN},
        "name": {"type": ["null", "string"], "description": "Name of the image", "maxLength": 255},
        "status": {"type": "string", "readOnly": true, "description": "Where the image is in its lifecycle",
                   "enum": ["queued", "saving", "active", "killed", "deleted", "uploading", "importing",
                            "pending_delete", "deactivated"]},
        "visibility": {"type": "string", "description": "Who can see the image",
                       "enum": ["community", "public", "private", "shared"]},
        "protected": {"type": "boolean", "description": "When true, the image cannot be deleted."},
        "os_hidden": {"type": "boolean", "description": "When true, the image is left out of default listings."},
        "checksum": {"type": ["null", "string"], "readOnly": true, "description": "MD5 of the image data.", "maxLength": 32},
        "os_hash_algo": {"type": ["null", "string"], "readOnly": true, "description": "Hash algorithm of os_hash_value", "maxLength": 64},
        "os_hash_value": {"type": ["null", "string"], "readOnly": true, "description": "Hex digest of the image data computed with os_hash_algo", "maxLength": 128},
        "owner": {"type": ["null", "string"], "description": "Project that owns the image", "maxLength": 255},
        "size": {"type": ["null", "integer"], "readOnly": true, "description": "Size of the image data in bytes"},
        "virtual_size": {"type": ["null", "integer"], "readOnly": true, "description": "Size of the virtual disk in bytes"},
        "container_format": {"type": ["null", "string"], "description": "Container format of the image data",
                             "enum": nullable_enum(&cfg.container_formats)},
        "disk_format": {"type": ["null", "string"], "description": "Disk format of the image data",
                        "enum": nullable_enum(&cfg.disk_formats)},
        "created_at": {"type": "string", "readOnly": true, "description": "When the image record was created"},
        "updated_at": {"type": "string", "readOnly": true, "description": "When the image was last changed"},
        "tags": {"type": "array", "description": "Tags of the image",
                 "items": {"type": "string", "maxLength": 255}},
        "direct_url": {"type": "string", "readOnly": true, "description": "Where the image data is stored"},
        "min_ram": {"type": "integer", "description": "RAM in MiB needed to boot the image."},
        "min_disk": {"type": "integer", "description": "Disk in GiB needed to boot the image."},
        "self": {"type": "string", "readOnly": true, "description": "URL of this image"},
        "file": {"type": "string", "readOnly": true, "description": "URL of this image's data"},
        "stores": {"type": "string", "readOnly": true, "description": "Comma-separated ids of the stores holding the data (multi-store only)."},
        "schema": {"type": "string", "readOnly": true, "description": "URL of the image schema"},
        "locations": {"type": "array", "description": "Locations of the image data",
            "items": {"type": "object", "properties": {
                "url": {"type": "string", "maxLength": 255},
                "metadata": {"type": "object"},
                "validation_data": {"description": "Hashes of the data at this location; they must equal the image's own unless it is queued.",
                    "type": "object", "writeOnly": true, "additionalProperties": false,
                    "properties": {
                        "checksum": {"type": "string", "minLength": 32, "maxLength": 32},
                        "os_hash_algo": {"type": "string", "maxLength": 64},
                        "os_hash_value": {"type": "string", "maxLength": 128}},
                    "required": ["os_hash_algo", "os_hash_value"]}},
                "required": ["url", "metadata"]}}
    })
}

pub fn image_schema(cfg: &Config) -> Value {
    json!({
        "name": "image",
        "properties": image_properties(cfg),
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"}
        ]
    })
}

/// A list's schema. Only images are paged (`first`/`next`); Glance's members and tasks
/// schemas name neither.
fn collection(name: &str, item: Value, paged: bool) -> Value {
    if !paged {
        return json!({
            "name": name,
            "properties": {name: {"type": "array", "items": item}, "schema": {"type": "string"}},
            "links": [{"rel": "describedby", "href": "{schema}"}]
        });
    }
    json!({
        "name": name,
        "properties": {
            name: {"type": "array", "items": item},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"}
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"}
        ]
    })
}

pub fn member_schema() -> Value {
    json!({
        "name": "member",
        "properties": {
            "member_id": {"type": "string", "description": "Project ID of the member"},
            "image_id": {"type": "string", "description": "Image ID (a UUID)", "pattern": UUID_PATTERN},
            "created_at": {"type": "string", "description": "When the membership was created"},
            "updated_at": {"type": "string", "description": "When the membership was last changed"},
            "status": {"type": "string", "description": "Whether the member accepted the image",
                       "enum": ["pending", "accepted", "rejected"]},
            "schema": {"readOnly": true, "type": "string"}
        }
    })
}

fn task_properties(full: bool) -> Value {
    let mut p = json!({
        "id": {"description": "Task ID (a UUID)", "pattern": UUID_PATTERN, "type": "string"},
        "type": {"description": "Kind of task",
                 "enum": ["import", "api_image_import", "location_import"], "type": "string"},
        "status": {"description": "Where the task is in its lifecycle",
                   "enum": ["pending", "processing", "success", "failure"], "type": "string"},
        "input": {"description": "Task parameters", "type": ["null", "object"]},
        "result": {"description": "Task outcome", "type": ["null", "object"]},
        "owner": {"description": "Project that owns the task", "type": "string"},
        "message": {"description": "Progress or failure message", "type": "string"},
        "image_id": {"description": "Image the task works on", "type": "string"},
        "request_id": {"description": "Request that started the task", "type": "string"},
        "user_id": {"description": "User that started the task", "type": "string"},
        "expires_at": {"description": "When the task record may be removed", "type": ["null", "string"]},
        "created_at": {"description": "When the task was created", "type": "string"},
        "updated_at": {"description": "When the task was last changed", "type": "string"},
        "self": {"readOnly": true, "type": "string"},
        "schema": {"readOnly": true, "type": "string"}
    });
    if !full && let Some(obj) = p.as_object_mut() {
        for k in ["input", "result", "message"] {
            // shift_remove keeps the others in Glance's order (remove would swap the last in).
            obj.shift_remove(k);
        }
    }
    p
}

fn task_schema(full: bool) -> Value {
    json!({"name": "task", "properties": task_properties(full)})
}

/// Schemas built once at start-up, and the compiled image validator.
pub struct Schemas {
    pub image: Value,
    pub images: Value,
    pub member: Value,
    pub members: Value,
    pub task: Value,
    pub tasks: Value,
    validator: jsonschema::Validator,
    task_validator: jsonschema::Validator,
}

impl Schemas {
    pub fn new(cfg: &Config) -> Self {
        let image = image_schema(cfg);
        // Built from constants above: a failure here is a programming error caught by tests.
        let validator = jsonschema::validator_for(&image).expect("image schema compiles");
        let task_validator =
            jsonschema::validator_for(&task_schema(true)).expect("task schema compiles");
        Schemas {
            images: collection("images", image.clone(), true),
            image,
            member: member_schema(),
            members: collection("members", member_schema(), false),
            task: task_schema(true),
            tasks: collection("tasks", task_schema(false), false),
            validator,
            task_validator,
        }
    }

    /// Validates a (partial) image body as Glance does, with its error wording.
    pub fn validate_image(&self, body: &Value) -> Result<()> {
        match self.validator.iter_errors(body).next() {
            None => Ok(()),
            Some(e) => Err(Error::BadRequest(format!(
                "Provided object does not match schema 'image': {}",
                crate::json::python_words(&e)
            ))),
        }
    }
}

impl Schemas {
    /// Validates a task body as Glance does, with its error wording.
    pub fn validate_task(&self, body: &Value) -> Result<()> {
        match self.task_validator.iter_errors(body).next() {
            None => Ok(()),
            Some(e) => Err(Error::BadRequest(format!(
                "Provided object does not match schema 'task': {}",
                crate::json::python_words(&e)
            ))),
        }
    }
}

/// The schemas served at `/v2/schemas/{name}`.
pub const NAMES: [&str; 6] = ["image", "images", "member", "members", "task", "tasks"];

pub fn show(s: &AppState, name: &str) -> Response {
    let schemas = &s.schemas;
    let schema = match name {
        "image" => &schemas.image,
        "images" => &schemas.images,
        "member" => &schemas.member,
        "members" => &schemas.members,
        "task" => &schemas.task,
        "tasks" => &schemas.tasks,
        _ => return Error::NotFound(String::new()).into_response(),
    };
    json_response(StatusCode::OK, schema)
}
