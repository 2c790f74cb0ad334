//! Metadata definitions: who sees a namespace, the policy target it is checked against, and
//! the shape Glance gives a property definition (its API passes each through a typed model:
//! keys in one order, `default` as text, bounds as integers).

use chrono::NaiveDateTime;
use serde_json::{Map, Value};

use crate::domain::policy::{Context, TargetMap};

#[derive(Debug, Clone, PartialEq)]
pub struct Namespace {
    pub id: i64,
    pub namespace: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub visibility: Option<String>,
    pub protected: Option<bool>,
    pub owner: String,
    pub created_at: NaiveDateTime,
    pub updated_at: Option<NaiveDateTime>,
}

/// An object, a property or a tag. Objects use every field; properties `json_schema`; tags
/// only the name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Entry {
    /// The row's id (0 until stored).
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub required: Option<String>,
    pub json_schema: Option<String>,
    pub created_at: Option<NaiveDateTime>,
    pub updated_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    pub id: i64,
    pub name: String,
    pub protected: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: Option<NaiveDateTime>,
}

/// A namespace's association with a resource type.
#[derive(Debug, Clone, PartialEq)]
pub struct Association {
    pub name: String,
    pub prefix: Option<String>,
    pub properties_target: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: Option<NaiveDateTime>,
}

/// The keys of a property definition, in the order Glance writes them.
pub const PROPERTY_KEYS: [&str; 19] = [
    "name",
    "type",
    "title",
    "description",
    "operators",
    "default",
    "readonly",
    "minimum",
    "maximum",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "confidential",
    "items",
    "uniqueItems",
    "minItems",
    "maxItems",
    "additionalItems",
];

const INTEGER_KEYS: [&str; 6] = [
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
];

/// Whether the caller sees a namespace: an admin sees all, others the public ones and their
/// project's.
pub fn visible(ctx: &Context, ns: &Namespace) -> bool {
    ctx.is_admin
        || ns.visibility.as_deref() == Some("public")
        || ctx.project_id.as_deref() == Some(ns.owner.as_str())
}

/// The policy target of a namespace: its owner as `project_id`, and its visibility.
pub fn target(ns: &Namespace) -> TargetMap {
    TargetMap::from([
        ("project_id".to_string(), ns.owner.clone()),
        (
            "visibility".to_string(),
            ns.visibility.clone().unwrap_or_else(|| "None".into()),
        ),
    ])
}

/// Python's `str()` of a JSON scalar, as Glance stores a property's `default`; lists, objects
/// and null become null.
fn as_text(v: &Value) -> Value {
    match v {
        Value::String(_) => v.clone(),
        Value::Bool(b) => Value::String(if *b { "True" } else { "False" }.into()),
        Value::Number(n) => Value::String(match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e16 => format!("{f:.1}"),
            _ => n.to_string(),
        }),
        _ => Value::Null,
    }
}

/// A property definition as Glance keeps and shows it; `Err(key)` names a key it does not
/// know. Keys with null values are left out, but for `default`.
pub fn normalize_property(def: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    if let Some(k) = def.keys().find(|k| !PROPERTY_KEYS.contains(&k.as_str())) {
        return Err(k.clone());
    }
    let mut out = Map::new();
    for key in PROPERTY_KEYS {
        let Some(v) = def.get(key) else { continue };
        let v = match key {
            "default" => as_text(v),
            k if INTEGER_KEYS.contains(&k) => match v.as_f64() {
                Some(f) if !v.is_i64() && !v.is_u64() => Value::from(f.trunc() as i64),
                _ => v.clone(),
            },
            "items" => match v.as_object() {
                Some(items) => {
                    let mut m = Map::new();
                    for k in ["type", "enum"] {
                        if let Some(x) = items.get(k).filter(|x| !x.is_null()) {
                            m.insert(k.into(), x.clone());
                        }
                    }
                    Value::Object(m)
                }
                None => v.clone(),
            },
            _ => v.clone(),
        };
        if v.is_null() && key != "default" {
            continue;
        }
        out.insert(key.into(), v);
    }
    Ok(out)
}

/// A stored property definition as Glance shows it: through the same typed model (files a
/// catalog load stored verbatim show their defaults as text too).
pub fn shown(def: &Map<String, Value>) -> Map<String, Value> {
    normalize_property(def).unwrap_or_else(|_| ordered(def))
}

/// A property definition read back, in Glance's key order.
pub fn ordered(def: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for key in PROPERTY_KEYS {
        if let Some(v) = def.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn property_definitions_take_glances_shape() {
        let def = json!({"title": "T", "type": "integer", "default": 5, "minimum": 1.5,
                          "name": "p", "items": {"enum": ["a"], "type": "string"}});
        let got = normalize_property(def.as_object().unwrap()).unwrap();
        assert_eq!(
            Value::Object(got).to_string(),
            r#"{"name":"p","type":"integer","title":"T","default":"5","minimum":1,"items":{"type":"string","enum":["a"]}}"#
        );
        let d = |v: Value| {
            normalize_property(json!({"default": v}).as_object().unwrap()).unwrap()["default"]
                .clone()
        };
        assert_eq!(d(json!(true)), json!("True"));
        assert_eq!(d(json!(1.5)), json!("1.5"));
        assert_eq!(d(json!(2.0)), json!("2.0"));
        assert_eq!(d(json!([1])), Value::Null);
        assert_eq!(
            normalize_property(json!({"required": []}).as_object().unwrap()),
            Err("required".to_string())
        );
    }
}
