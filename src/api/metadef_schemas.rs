//! `/v2/schemas/metadefs/*`: the ten metadata definition schemas, shaped as Glance serves them
//! (same properties, types, limits, definitions and links; descriptions in our words), and the
//! validators request bodies meet.

use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::error::{Error, Result};

fn date(what: &str) -> Value {
    json!({"type": "string", "readOnly": true, "description": what, "format": "date-time"})
}

fn kind_enum() -> Value {
    json!([
        "array", "boolean", "integer", "number", "object", "string", null
    ])
}

/// The fields of a property definition.
fn property_fields() -> Value {
    json!({
        "name": {"type": "string", "maxLength": 80},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "operators": {"type": "array", "items": {"type": "string"}},
        "type": {"type": "string", "enum": kind_enum()},
        "required": {"$ref": "#/definitions/stringArray"},
        "minimum": {"type": "number"},
        "maximum": {"type": "number"},
        "maxLength": {"$ref": "#/definitions/positiveInteger"},
        "minLength": {"$ref": "#/definitions/positiveIntegerDefault0"},
        "pattern": {"type": "string", "format": "regex"},
        "enum": {"type": "array"},
        "readonly": {"type": "boolean"},
        "default": {},
        "items": {"type": "object", "properties": {
            "type": {"type": "string", "enum": kind_enum()},
            "enum": {"type": "array"}}},
        "maxItems": {"$ref": "#/definitions/positiveInteger"},
        "minItems": {"$ref": "#/definitions/positiveIntegerDefault0"},
        "uniqueItems": {"type": "boolean", "default": false},
        "additionalItems": {"type": "boolean"}
    })
}

fn base_definitions(min_items: bool) -> Value {
    // The property schema's list needs an item, before the uniqueness (Glance's key order).
    let string_array = if min_items {
        json!({"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": true})
    } else {
        json!({"type": "array", "items": {"type": "string"}, "uniqueItems": true})
    };
    json!({
        "positiveInteger": {"type": "integer", "minimum": 0},
        "positiveIntegerDefault0": {"allOf": [{"$ref": "#/definitions/positiveInteger"},
                                              {"default": 0}]},
        "stringArray": string_array
    })
}

/// The definitions of the namespace and object schemas: a dict of property definitions.
fn definitions() -> Value {
    let mut d = base_definitions(false);
    d["property"] = json!({"type": "object", "additionalProperties": {
        "type": "object", "required": ["title", "type"], "properties": property_fields()}});
    d
}

fn schema(name: &str, properties: Value, definitions: Option<Value>, required: &[&str]) -> Value {
    let mut s = json!({"name": name, "properties": properties, "additionalProperties": false});
    if let Some(d) = definitions {
        s["definitions"] = d;
    }
    if !required.is_empty() {
        s["required"] = json!(required);
    }
    s
}

/// A collection of `item`s under `key`: a list, or with `dict` a map by name.
fn collection(key: &str, item: &Value, dict: bool) -> Value {
    let mut bare = item.clone();
    let defs = bare.as_object_mut().and_then(|o| o.remove("definitions"));
    let items = if dict {
        json!({"type": "object", "additionalProperties": bare})
    } else {
        json!({"type": "array", "items": bare})
    };
    let mut s = json!({
        "name": key,
        "properties": {key: items, "first": {"type": "string"}, "next": {"type": "string"},
                       "schema": {"type": "string"}},
        "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                  {"rel": "describedby", "href": "{schema}"}]
    });
    if let Some(d) = defs {
        s["definitions"] = d;
    }
    s
}

pub fn namespace() -> Value {
    let props = json!({
        "namespace": {"type": "string", "description": "Unique name of the namespace.", "maxLength": 80},
        "display_name": {"type": "string", "description": "Name to show for the namespace.", "maxLength": 80},
        "description": {"type": "string", "description": "What the namespace defines.", "maxLength": 500},
        "visibility": {"type": "string", "description": "Who may read the namespace.", "enum": ["public", "private"]},
        "protected": {"type": "boolean", "description": "Whether the namespace is kept from deletion."},
        "owner": {"type": "string", "description": "Project owning the namespace.", "maxLength": 255},
        "created_at": date("When the namespace was created"),
        "updated_at": date("When the namespace last changed"),
        "schema": {"readOnly": true, "type": "string"},
        "self": {"readOnly": true, "type": "string"},
        "resource_type_associations": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "prefix": {"type": "string"},
            "properties_target": {"type": "string"}}}},
        "properties": {"$ref": "#/definitions/property"},
        "objects": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "description": {"type": "string"},
            "required": {"$ref": "#/definitions/stringArray"},
            "properties": {"$ref": "#/definitions/property"}}}},
        "tags": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}}}}
    });
    schema("namespace", props, Some(definitions()), &["namespace"])
}

pub fn object() -> Value {
    let props = json!({
        "name": {"type": "string", "maxLength": 80},
        "description": {"type": "string"},
        "required": {"$ref": "#/definitions/stringArray"},
        "properties": {"$ref": "#/definitions/property"},
        "schema": {"readOnly": true, "type": "string"},
        "self": {"readOnly": true, "type": "string"},
        "created_at": date("When the object was created"),
        "updated_at": date("When the object last changed")
    });
    schema("object", props, Some(definitions()), &["name"])
}

pub fn property() -> Value {
    schema(
        "property",
        property_fields(),
        Some(base_definitions(true)),
        &["type", "title", "name"],
    )
}

pub fn tag() -> Value {
    let props = json!({
        "name": {"type": "string", "maxLength": 80},
        "created_at": date("When the tag was created"),
        "updated_at": date("When the tag last changed")
    });
    schema("tag", props, None, &["name"])
}

pub fn resource_type() -> Value {
    let text = |what: &str| json!({"type": "string", "description": what, "maxLength": 80});
    let props = json!({
        "name": text("Name of the resource type (such as OS::Glance::Image) the namespace applies to."),
        "prefix": text("Prefix that the namespace's property names take on this resource type."),
        "properties_target": text("Where on the resource the properties go, when it has several places."),
        "created_at": date("When the association was created"),
        "updated_at": date("When the association last changed")
    });
    schema("resource_type_association", props, None, &["name"])
}

/// The schemas under `/v2/schemas/metadefs/`.
pub const NAMES: [&str; 10] = [
    "namespace",
    "namespaces",
    "object",
    "objects",
    "property",
    "properties",
    "tag",
    "tags",
    "resource_type",
    "resource_types",
];

/// What `/v2/schemas/metadefs/{name}` serves.
pub fn served(name: &str) -> Option<Value> {
    Some(match name {
        "namespace" => namespace(),
        "namespaces" => collection("namespaces", &namespace(), false),
        "object" => object(),
        "objects" => collection("objects", &object(), false),
        "property" => property(),
        "properties" => {
            let mut item = property();
            item["required"] = json!(["type", "title"]);
            collection("properties", &item, true)
        }
        "tag" => tag(),
        "tags" => collection("tags", &tag(), false),
        "resource_type" => resource_type(),
        "resource_types" => collection("resource_type_associations", &resource_type(), false),
        _ => return None,
    })
}

/// The body of a bulk tag creation.
fn tag_list() -> Value {
    json!({"name": "tags", "properties": {"tags": {"type": "array", "items": {
        "type": "object", "properties": {"name": {"type": "string"}},
        "required": ["name"], "additionalProperties": false}}},
        "additionalProperties": false})
}

/// The request bodies the metadef routes take, each checked against its schema.
#[derive(Clone, Copy, Debug)]
pub enum Body {
    Namespace,
    Object,
    Property,
    /// A property inside an object: no name of its own.
    ObjectProperty,
    Tag,
    Tags,
    Association,
}

struct Validators {
    list: Vec<(&'static str, jsonschema::Validator)>,
}

fn validators() -> &'static Validators {
    static V: OnceLock<Validators> = OnceLock::new();
    V.get_or_init(|| {
        let mut object_property = property();
        object_property["required"] = json!(["type", "title"]);
        let build = |s: &Value| jsonschema::validator_for(s).expect("metadef schema compiles");
        Validators {
            list: vec![
                ("namespace", build(&namespace())),
                ("object", build(&object())),
                ("property", build(&property())),
                ("property", build(&object_property)),
                ("tag", build(&tag())),
                ("tags", build(&tag_list())),
                ("resource_type_association", build(&resource_type())),
            ],
        }
    })
}

/// Glance's read-only keys of each body, refused (403) before the schema is applied.
fn read_only(body: Body) -> &'static [&'static str] {
    match body {
        Body::Namespace | Body::Object => &["self", "schema", "created_at", "updated_at"],
        Body::Property | Body::Tag | Body::Tags | Body::Association => {
            &["created_at", "updated_at"]
        }
        Body::ObjectProperty => &[],
    }
}

/// Checks `v` as Glance's deserializer does: read-only keys, then the schema.
pub fn validate(body: Body, v: &Value) -> Result<()> {
    if let Some(k) = read_only(body).iter().find(|k| v.get(**k).is_some()) {
        return Err(Error::Forbidden(format!("Attribute '{k}' is read-only.")));
    }
    let (name, validator) = &validators().list[body as usize];
    match validator.iter_errors(v).next() {
        None => Ok(()),
        Some(e) => Err(Error::BadRequest(format!(
            "Provided object does not match schema '{name}': {}",
            crate::json::python_words(&e)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_schemas_compile_and_validate() {
        for name in NAMES {
            let s = served(name).unwrap();
            assert!(jsonschema::validator_for(&s).is_ok(), "{name}");
        }
        assert!(validate(Body::Namespace, &json!({"namespace": "n"})).is_ok());
        assert!(
            validate(
                Body::Namespace,
                &json!({"namespace": "n", "visibility": "shared"})
            )
            .is_err()
        );
        let e = validate(Body::Tag, &json!({"name": "t", "created_at": "x"})).unwrap_err();
        assert_eq!(e.to_string(), "Attribute 'created_at' is read-only.");
        assert!(validate(Body::Tags, &json!({"tags": [{"name": "a", "x": 1}]})).is_err());
        assert!(
            validate(
                Body::Property,
                &json!({"name": "p", "title": "P", "type": "string"})
            )
            .is_ok()
        );
        assert!(
            validate(
                Body::ObjectProperty,
                &json!({"title": "P", "type": "string"})
            )
            .is_ok()
        );
    }
}
