//! JSON as Glance writes it: Python's `json.dumps` separators (`", "` and `": "`), non-ASCII as
//! is. Clients parse either form, but scripts that match on `"status": "active"` need the bytes.

use std::io;

struct PythonStyle;

impl serde_json::ser::Formatter for PythonStyle {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

pub fn to_string<T: serde::Serialize + ?Sized>(v: &T) -> String {
    let mut out = Vec::with_capacity(1024);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonStyle);
    // Serializing into a Vec fails only for maps with non-string keys, which we never write.
    let _ = serde::Serialize::serialize(v, &mut ser);
    // serde_json writes valid UTF-8 only.
    String::from_utf8(out).unwrap_or_default()
}

/// Python's `repr` of a JSON value, as jsonschema's messages show instances.
pub fn py_repr(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "None".into(),
        serde_json::Value::Bool(true) => "True".into(),
        serde_json::Value::Bool(false) => "False".into(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => {
            let quote = if s.contains('\'') && !s.contains('"') {
                '"'
            } else {
                '\''
            };
            let mut out = String::from(quote);
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c == quote => {
                        out.push('\\');
                        out.push(c);
                    }
                    c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                        out.push_str(&format!("\\x{:02x}", c as u32));
                    }
                    c => out.push(c),
                }
            }
            out.push(quote);
            out
        }
        serde_json::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(py_repr).collect();
            format!("[{}]", items.join(", "))
        }
        serde_json::Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}: {}",
                        py_repr(&serde_json::Value::String(k.clone())),
                        py_repr(v)
                    )
                })
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// A JSON schema refusal in the words of Python's jsonschema (which Glance's messages quote):
/// instances as Python shows them; kinds it has no words for keep the crate's.
pub fn python_words(e: &jsonschema::ValidationError) -> String {
    use jsonschema::error::{TypeKind, ValidationErrorKind as K};
    let inst = py_repr(e.instance());
    match e.kind() {
        K::Required { property } => format!("{} is a required property", py_repr(property)),
        K::Type { kind } => {
            let names: Vec<String> = match kind {
                TypeKind::Single(t) => vec![format!("'{t}'")],
                TypeKind::Multiple(set) => set.iter().map(|t| format!("'{t}'")).collect(),
            };
            format!("{inst} is not of type {}", names.join(", "))
        }
        K::Enum { options } => format!("{inst} is not one of {}", py_repr(options)),
        K::MaxLength { .. } => format!("{inst} is too long"),
        K::MinLength { .. } => format!("{inst} is too short"),
        K::MaxItems { limit: 0 } => format!("{inst} is expected to be empty"),
        K::MaxItems { .. } => format!("{inst} is too long"),
        K::MinItems { limit: 1 } => format!("{inst} should be non-empty"),
        K::MinItems { .. } => format!("{inst} is too short"),
        K::UniqueItems => format!("{inst} has non-unique elements"),
        K::Minimum { limit } => format!("{inst} is less than the minimum of {limit}"),
        K::Maximum { limit } => format!("{inst} is greater than the maximum of {limit}"),
        K::Pattern { pattern } => format!(
            "{inst} does not match {}",
            py_repr(&serde_json::Value::String(pattern.clone()))
        ),
        K::AdditionalProperties { unexpected } => {
            let mut names = unexpected.clone();
            names.sort();
            let quoted: Vec<String> = names
                .iter()
                .map(|n| py_repr(&serde_json::Value::String(n.clone())))
                .collect();
            let verb = if names.len() == 1 { "was" } else { "were" };
            format!(
                "Additional properties are not allowed ({} {verb} unexpected)",
                quoted.join(", ")
            )
        }
        _ => e.to_string(),
    }
}

/// The string at `key` of a JSON object, if it is one.
pub fn str_field(v: &serde_json::Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
}

/// Glance's `isotime`: seconds, UTC, `Z` (formatted by hand: chrono's format strings are
/// parsed at each call, and a page of images formats two dates each).
pub fn isotime(t: &chrono::NaiveDateTime) -> String {
    use chrono::{Datelike, Timelike};
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn separators_as_python_json_dumps() {
        let v = json!({"a": [1, "x", null, {}], "b": {"c": true, "d": []}, "é": "☃\n"});
        assert_eq!(
            super::to_string(&v),
            r#"{"a": [1, "x", null, {}], "b": {"c": true, "d": []}, "é": "☃\n"}"#
        );
        assert_eq!(super::to_string(&json!([])), "[]");
    }
}
