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
