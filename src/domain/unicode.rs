//! Glance refuses text holding characters beyond the Basic Multilingual Plane (four bytes in
//! UTF-8: emoji, ...) before it writes it: the MySQL `utf8` tables Glance creates cannot store
//! them (`no_4byte_params`). glance-rs refuses them alike, in Glance's words, so that a Glance
//! database it serves never meets one.

use serde_json::Value;

/// What held a four-byte character, as Glance's check names it.
#[derive(Debug, Clone, PartialEq)]
pub enum FourByte {
    /// A key of the fields written (a custom property's name).
    PropertyName,
    /// The value of field `key`.
    Value { key: String },
    /// A value passed alone (a tag).
    Param,
}

impl FourByte {
    /// Glance's words.
    pub fn message(&self) -> String {
        match self {
            FourByte::PropertyName => "Property names can't contain 4 byte unicode.".into(),
            FourByte::Value { key } => {
                format!("{} can't contain 4 byte unicode characters.", title(key))
            }
            FourByte::Param => "Param values can't contain 4 byte unicode.".into(),
        }
    }
}

fn four_byte(s: &str) -> bool {
    s.chars().any(|c| u32::from(c) > 0xFFFF)
}

/// The fields written, in order (`nested`: a field holding fields, checked in place); the
/// first offender.
pub fn check_fields<'a>(
    fields: impl IntoIterator<Item = (&'a str, Field<'a>)>,
) -> Result<(), FourByte> {
    for (key, value) in fields {
        match value {
            Field::Text(v) => check_text(key, v)?,
            Field::Nested(pairs) => {
                for (k, v) in &pairs {
                    check_text(k, Some(v))?;
                }
            }
            Field::Json(v) => check_json(key, v)?,
        }
    }
    Ok(())
}

fn check_text(key: &str, value: Option<&str>) -> Result<(), FourByte> {
    if four_byte(key) {
        return Err(FourByte::PropertyName);
    }
    if value.is_some_and(four_byte) {
        return Err(FourByte::Value { key: key.into() });
    }
    Ok(())
}

/// A field's value.
pub enum Field<'a> {
    Text(Option<&'a str>),
    /// A dict of text (an image's custom properties).
    Nested(Vec<(String, String)>),
    /// A JSON value (a metadef definition): objects checked within, other values as text.
    Json(&'a Value),
}

fn check_json(key: &str, v: &Value) -> Result<(), FourByte> {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                check_json(k, v)?;
            }
            Ok(())
        }
        _ => {
            if four_byte(key) {
                return Err(FourByte::PropertyName);
            }
            match v {
                Value::String(s) if four_byte(s) => Err(FourByte::Value { key: key.into() }),
                _ => Ok(()),
            }
        }
    }
}

/// A value passed alone (a tag).
pub fn check_param(v: &str) -> Result<(), FourByte> {
    if four_byte(v) {
        Err(FourByte::Param)
    } else {
        Ok(())
    }
}

/// Python's `str.title()`: each run of letters capitalized, the rest of it in lower case.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_cased = false;
    for c in s.chars() {
        if prev_cased {
            out.extend(c.to_lowercase());
        } else {
            out.extend(c.to_uppercase());
        }
        prev_cased = c.is_alphabetic();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_as_glance() {
        assert_eq!(title("os_distro"), "Os_Distro");
        assert_eq!(title("x1y"), "X1Y");
        assert_eq!(title("name"), "Name");
        let emoji = "caf\u{1F600}";
        assert_eq!(
            check_fields([("name", Field::Text(Some(emoji)))]),
            Err(FourByte::Value { key: "name".into() })
        );
        assert_eq!(
            check_fields([(
                "properties",
                Field::Nested(vec![(emoji.into(), "v".into())])
            )]),
            Err(FourByte::PropertyName)
        );
        assert_eq!(check_param("caf\u{e9}"), Ok(()));
        assert_eq!(
            FourByte::Value {
                key: "hw_disk_bus".into()
            }
            .message(),
            "Hw_Disk_Bus can't contain 4 byte unicode characters."
        );
    }
}
