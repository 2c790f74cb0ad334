//! The Locations API (v2.17): `GET/POST /v2/images/{id}/locations`, for the service role —
//! how Nova and Cinder read where an image lives and register data they wrote themselves.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::images::json_body;
use super::{AppState, json_response};
use crate::domain::image::Status;
use crate::domain::policy::Context;
use crate::error::{Error, Result};
use crate::json::py_repr;
use crate::service;

pub async fn list(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
) -> Result<Response> {
    let img = s.image(&ctx, &id).await?;
    // The service role only by default (locations can carry credentials).
    ctx.on_image(&img).enforce("fetch_image_location")?;
    let locs: Vec<Value> = img
        .locations
        .iter()
        .map(|l| json!({"url": l.url, "metadata": l.metadata}))
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Array(locs)))
}

pub async fn add(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let body = json_body(&body)?;
    if let Some(why) = schema_error(&body) {
        return Err(Error::BadRequest(format!(
            "Provided object does not match schema 'location': {why}"
        )));
    }
    let url = body["url"].as_str().unwrap_or_default().to_string();
    let vd = body.get("validation_data").cloned().unwrap_or(json!({}));
    let img = s.image(&ctx, &id).await?;
    // Glance's order: the status, the policy (the service role, or the owner's members), then
    // the one check it makes outside the rules: without the service role (of the token or of a
    // service token) only http locations, and only where the http store is enabled.
    if img.status != Status::Queued {
        return Err(Error::Conflict(format!(
            "It's not allowed to add locations if image status is {}.",
            img.status.as_str()
        )));
    }
    ctx.on_image(&img).enforce("add_image_location")?;
    let http = (url.starts_with("http://") || url.starts_with("https://"))
        && s.stores.entries().iter().any(|e| e.kind == "http");
    if !(ctx.has_role_or_service_role("service") || http) {
        return Err(Error::Forbidden(
            "http store must be enabled to use location API by normal user.".into(),
        ));
    }
    if let Some(why) = hash_value_error(&vd, &s.cfg.hashing_algorithm) {
        return Err(Error::BadRequest(why));
    }
    service::locations::add(&s, &ctx, &img, &url, vd).await?;
    // An empty 202 with webob's default type, as Glance answers.
    Ok((
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
    )
        .into_response())
}

/// The first error Glance's `location` schema reports for an add-location body (jsonschema's
/// best match: the shallowest, then the later sibling), in jsonschema's words.
fn schema_error(body: &Value) -> Option<String> {
    let Some(obj) = body.as_object() else {
        return Some(format!("{} is not of type 'object'", py_repr(body)));
    };
    if !obj.contains_key("url") {
        return Some("'url' is a required property".into());
    }
    let string = |v: &Value, max: usize| match v.as_str() {
        None => Some(format!("{} is not of type 'string'", py_repr(v))),
        Some(s) if s.chars().count() > max => Some(format!("{} is too long", py_repr(v))),
        Some(_) => None,
    };
    if let Some(vd) = obj.get("validation_data") {
        let Some(vd) = vd.as_object() else {
            return Some(format!("{} is not of type 'object'", py_repr(vd)));
        };
        let mut extra: Vec<&String> = vd
            .keys()
            .filter(|k| !matches!(k.as_str(), "os_hash_algo" | "os_hash_value"))
            .collect();
        if !extra.is_empty() {
            extra.sort();
            let names: Vec<String> = extra.iter().map(|k| py_repr(&json!(k))).collect();
            let verb = if extra.len() == 1 { "was" } else { "were" };
            return Some(format!(
                "Additional properties are not allowed ({} {verb} unexpected)",
                names.join(", ")
            ));
        }
        for (key, needs) in [
            ("os_hash_value", "os_hash_algo"),
            ("os_hash_algo", "os_hash_value"),
        ] {
            if vd.contains_key(key) && !vd.contains_key(needs) {
                return Some(format!("'{needs}' is a dependency of '{key}'"));
            }
        }
        if let Some(v) = vd.get("os_hash_value")
            && let Some(why) = string(v, 128)
        {
            return Some(why);
        }
        if let Some(v) = vd.get("os_hash_algo") {
            if let Some(why) = string(v, 64) {
                return Some(why);
            }
            if !matches!(v.as_str(), Some("sha1" | "sha256" | "sha512" | "md5")) {
                return Some(format!(
                    "{} is not one of ['sha1', 'sha256', 'sha512', 'md5']",
                    py_repr(v)
                ));
            }
        }
    }
    obj.get("url").and_then(|u| string(u, usize::MAX))
}

/// Glance's check of `os_hash_value` before it accepts a location: hexadecimal (as Python's
/// `bytes.fromhex`, which skips whitespace between bytes) and as long as the algorithm's digest.
fn hash_value_error(vd: &Value, default_algo: &str) -> Option<String> {
    let value = vd.get("os_hash_value")?.as_str()?;
    let Some(bytes) = from_hex(value) else {
        return Some(format!(
            "os_hash_value ({value}) is not a valid hexadecimal value"
        ));
    };
    let algo = vd
        .get("os_hash_algo")
        .and_then(Value::as_str)
        .unwrap_or(default_algo);
    let want = match algo {
        "md5" => 16,
        "sha1" => 20,
        "sha224" => 28,
        "sha256" => 32,
        "sha384" => 48,
        "sha512" => 64,
        _ => return None,
    };
    (bytes != want).then(|| {
        format!(
            "os_hash_value: ({value}) is not the correct size for ({algo}) (should be ({want}) bytes)"
        )
    })
}

/// How many bytes Python's `bytes.fromhex` makes of `s`, if it accepts it.
fn from_hex(s: &str) -> Option<usize> {
    let mut chars = s.chars().peekable();
    let mut n = 0;
    loop {
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        let Some(hi) = chars.next() else {
            return Some(n);
        };
        let lo = chars.next()?;
        if !(hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit()) {
            return None;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_bodies_are_refused_in_glances_words() {
        let algo = json!({"os_hash_algo": "sha256"});
        for (body, why) in [
            (json!([1]), "[1] is not of type 'object'"),
            (
                json!({"validation_data": {"x": 1}}),
                "'url' is a required property",
            ),
            (json!({"url": null}), "None is not of type 'string'"),
            // The later sibling wins: validation_data over url, os_hash_value over algo.
            (
                json!({"url": 5, "validation_data": {"b": 1, "a": 2}}),
                "Additional properties are not allowed ('a', 'b' were unexpected)",
            ),
            (
                json!({"url": "u", "validation_data": {"os_hash_algo": 5, "os_hash_value": 5}}),
                "5 is not of type 'string'",
            ),
            (
                json!({"url": "u", "validation_data": {"os_hash_value": "00"}}),
                "'os_hash_algo' is a dependency of 'os_hash_value'",
            ),
            (
                json!({"url": "u", "validation_data": {"os_hash_algo": "x\"y", "os_hash_value": "0"}}),
                "'x\"y' is not one of ['sha1', 'sha256', 'sha512', 'md5']",
            ),
            (
                json!({"url": "u", "validation_data": {"os_hash_algo": {"a": [true, null]}, "os_hash_value": "0"}}),
                "{'a': [True, None]} is not of type 'string'",
            ),
            (
                json!({"url": "it's", "validation_data": "x"}),
                "'x' is not of type 'object'",
            ),
        ] {
            assert_eq!(schema_error(&body).as_deref(), Some(why), "{body}");
        }
        assert_eq!(py_repr(&json!("it's")), "\"it's\"");
        assert_eq!(
            schema_error(&json!({"url": "", "validation_data": algo})),
            Some("'os_hash_value' is a dependency of 'os_hash_algo'".into())
        );
        assert_eq!(
            schema_error(&json!({"url": "x", "validation_data": {}})),
            None
        );
        let vd = |v: &str| json!({"os_hash_algo": "sha1", "os_hash_value": v});
        assert_eq!(hash_value_error(&vd(&"ab".repeat(20)), "sha512"), None);
        assert_eq!(
            hash_value_error(&vd("0g"), "sha512").unwrap(),
            "os_hash_value (0g) is not a valid hexadecimal value"
        );
        assert_eq!(
            hash_value_error(&vd("00 11"), "sha512").unwrap(),
            "os_hash_value: (00 11) is not the correct size for (sha1) (should be (20) bytes)"
        );
        assert!(
            hash_value_error(&vd("0 0"), "sha512")
                .unwrap()
                .contains("hexadecimal")
        );
        // Without an algorithm, the configured one.
        let v = json!({"os_hash_value": "00"});
        assert!(
            hash_value_error(&v, "sha512")
                .unwrap()
                .ends_with("(sha512) (should be (64) bytes)")
        );
    }
}
