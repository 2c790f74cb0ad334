//! `/v2/images/{id}/file`: streaming upload and download of image data.

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{AppState, sendfile};
use crate::domain::fault::Fault;

use crate::domain::policy::Context;
use crate::error::{Error, Result};
use crate::service;
use crate::service::data::{DeclaredSize, Opened};
use crate::store::StoreEntry;

/// A receiver whose sender is gone: the stream ends at its next poll.
fn closed_receiver() -> mpsc::Receiver<std::io::Result<Bytes>> {
    mpsc::channel(1).1
}

/// `x-openstack-image-size` as Glance reads it: Python's `int()` of the value (surrounding
/// blanks, a sign, `_` between digits), so `-1` is a size that any data exceeds and 0 means
/// "not given" (no check). `shown` is the number as Glance's messages print it.
fn declared_size(headers: &HeaderMap) -> Result<Option<DeclaredSize>> {
    let Some(v) = headers.get("x-openstack-image-size") else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(python_int)
        .map(Some)
        .ok_or_else(|| {
            Error::BadRequest("Invalid or missing image size in request headers.".into())
        })
}

fn python_int(s: &str) -> Option<DeclaredSize> {
    let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let (negative, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    // Digits, with single underscores between them.
    if body
        .split('_')
        .any(|group| group.is_empty() || !group.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let digits = body.replace('_', "");
    let digits = match digits.trim_start_matches('0') {
        "" => "0",
        d => d,
    };
    let magnitude = digits.parse::<i128>().unwrap_or(i128::MAX);
    let negative = negative && digits != "0";
    Some(DeclaredSize {
        n: if negative { -magnitude } else { magnitude },
        shown: format!("{}{digits}", if negative { "-" } else { "" }),
    })
}

pub async fn upload(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    // Compared as webob gives it to Glance: the part before any `;`, as sent (so case matters).
    let ct = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .map(|v| v.split(';').next().unwrap_or("").to_string());
    if ct.as_deref() != Some("application/octet-stream") {
        return Err(Error::UnsupportedMediaType {
            msg: format!("Invalid content type {}", ct.as_deref().unwrap_or("None")),
            accept_patch: None,
        });
    }
    // Checked against the data only when given and not 0, as Glance's stores do.
    let declared = declared_size(&headers)?.filter(|d| d.n != 0);
    let content_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let size_hint = match &declared {
        Some(d) => u64::try_from(d.n).ok(),
        None => content_length,
    };

    let target = target_store(&s, &headers)?;
    let img = s.image(&ctx, &id).await?;
    ctx.on_image(&img)
        .enforce_mutation("upload_image")
        .map_err(|e| match e {
            // Glance words its legacy owner check's refusal here.
            Fault::NotOwner => {
                Error::Forbidden(format!("Not allowed to upload image data for image {id}"))
            }
            e => e.into(),
        })?;
    let stream = body
        .into_data_stream()
        .map(|c| c.map_err(|e| e.to_string()));
    service::data::upload(&s, img, target, stream, size_hint, declared.as_ref()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The store an upload goes to: `X-Image-Meta-Store` with multi-store, else the default.
fn target_store<'a>(s: &'a AppState, headers: &HeaderMap) -> Result<&'a StoreEntry> {
    let wanted = headers
        .get("x-image-meta-store")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    match wanted {
        Some(id) if s.stores.multi => {
            let e = s
                .stores
                .get(id)
                .ok_or_else(|| Error::BadRequest(format!("Store for identifier {id} not found")))?;
            if e.kind == "http" {
                return Err(Error::BadRequest(format!("Store {id} is read-only")));
            }
            Ok(e)
        }
        _ => Ok(s.stores.default_store()),
    }
}

/// Leading ASCII digits of `s` as a number (None if there are none or too many) and the rest.
fn digits(s: &str) -> (Option<u64>, &str) {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    (s[..n].parse().ok(), &s[n..])
}

/// `Range` as Glance (webob) reads it, `bytes *= *(\d*) *- *(\d*)` at the start of the value:
/// one range only, a suffix when the first number is missing. Returns (offset, length) or the
/// error to send.
fn parse_range(value: &str, size: u64) -> Result<(u64, u64)> {
    if value.contains(',') {
        return Err(Error::BadRequest(
            "Requests with multiple ranges are not supported in Glance. You may make multiple single-range requests instead.".into(),
        ));
    }
    let invalid = || Error::RangeNotSatisfiable("Invalid Range header.".into());
    let rest = value
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("bytes"))
        .map(|_| value[5..].trim_start_matches(' '))
        .and_then(|r| r.strip_prefix('='))
        .ok_or_else(invalid)?
        .trim_start_matches(' ');
    let (first, rest) = digits(rest);
    let rest = rest
        .trim_start_matches(' ')
        .strip_prefix('-')
        .ok_or_else(invalid)?;
    let (last, _) = digits(rest.trim_start_matches(' '));
    // webob reads `-0` as `0-`.
    let (start, last) = match (first, last) {
        (Some(start), last) => (start, last),
        (None, Some(0)) => (0, None),
        (None, Some(n)) => {
            // A suffix longer than the image means the whole image (none of an empty one).
            let offset = size.saturating_sub(n);
            return Ok((offset, size - offset));
        }
        (None, None) => return Err(invalid()),
    };
    if last.is_some_and(|e| e < start) {
        return Err(invalid());
    }
    if start >= size {
        return Err(bad_start("Range", size));
    }
    let last = last.map(|e| e.min(size - 1)).unwrap_or(size - 1);
    Ok((start, last - start + 1))
}

/// Glance's 416 for a range starting past the end of an image of `size` bytes.
fn bad_start(header: &str, size: u64) -> Error {
    Error::RangeNotSatisfiable(format!(
        "Invalid start position in {header} header. Start position MUST be in the inclusive range [0, {}].",
        size as i64 - 1
    ))
}

/// The request `Content-Range: bytes FIRST-LAST/LENGTH` (LENGTH may be `*`) that Glance still
/// honours, for old clients, when there is no `Range`. Returns (offset, length) or the error.
fn parse_content_range(value: &str, size: u64) -> Result<(u64, u64)> {
    let invalid = || Error::RangeNotSatisfiable("Invalid Content-Range header.".into());
    let rest = value.strip_prefix("bytes ").ok_or_else(invalid)?;
    let (first, rest) = digits(rest);
    let (last, rest) = digits(rest.strip_prefix('-').ok_or_else(invalid)?);
    let rest = rest.strip_prefix('/').ok_or_else(invalid)?;
    let length = match rest.strip_prefix('*') {
        Some(_) => None,
        None => Some(digits(rest).0.ok_or_else(invalid)?),
    };
    let (Some(start), Some(stop)) = (first, last.and_then(|l| l.checked_add(1))) else {
        return Err(invalid());
    };
    if start >= stop || length.is_some_and(|l| stop > l) {
        return Err(invalid());
    }
    if length.is_none() && stop > size {
        return Err(Error::RangeNotSatisfiable(format!(
            "Invalid stop position in Content-Range header. The stop position MUST be in the inclusive range [0, {}].",
            size as i64 - 1
        )));
    }
    if start >= size {
        return Err(bad_start("Content-Range", size));
    }
    // A stated length larger than the image: serve what there is (Glance would promise more
    // bytes than it sends).
    Ok((start, stop.min(size) - start))
}

/// Where to read from: locations of configured stores, highest store weight first, or in the
/// order of `?prefer=a,b` (multi-store only; an unknown store is a 400).
/// The stores `?prefer=` names, in order.
fn preferred_stores(query: Option<&str>) -> Vec<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == "prefer")
        .flat_map(|(_, v)| {
            v.split(',')
                .map(|p| p.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|p| !p.is_empty())
        .collect()
}

pub async fn download(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    version: Version,
    conn: Option<Extension<ConnectInfo<sendfile::Conn>>>,
    headers: HeaderMap,
) -> Result<Response> {
    let prefer = preferred_stores(query.as_deref());
    // HTTP/2 copies body bytes into its frames, so sendfile placeholders are HTTP/1 only.
    let conn = conn.filter(|_| version <= Version::HTTP_11).map(|c| c.0.0);
    fn text(v: &HeaderValue) -> &str {
        v.to_str().unwrap_or("")
    }
    let range = |size| match (
        headers.get(header::RANGE),
        headers.get(header::CONTENT_RANGE),
    ) {
        (Some(v), _) => parse_range(text(v), size).map(Some),
        (None, Some(v)) => parse_content_range(text(v), size).map(Some),
        (None, None) => Ok(None),
    };
    let Some(d) =
        service::data::open_download(&s, &ctx, &id, &prefer, conn.is_some(), range).await?
    else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let (offset, len) = (d.offset, d.len);
    let body = match (d.opened, conn) {
        (Opened::File(f), Some(conn)) => conn.body(f, offset, len, d.timeout),
        // Not opened that way without a connection to send it on.
        (Opened::File(_), None) => {
            return Err(Error::Internal("sendfile without a connection".into()));
        }
        (Opened::Stream(inner), _) => stream_chunks(
            crate::store::Limited { inner, left: len },
            id.clone(),
            d.timeout,
        ),
    };
    let mut resp = Response::new(when_all_given(body, len, d.on_sent));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(sum) = d
        .image
        .checksum
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        h.insert("content-md5", sum);
    }
    if d.partial {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        // Signed: a suffix range of an empty image is Glance's `bytes 0--1/0`.
        let cr = format!(
            "bytes {}-{}/{}",
            offset,
            offset as i64 + len as i64 - 1,
            d.size
        );
        if let Ok(v) = HeaderValue::from_str(&cr) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(resp)
}

/// `body` calling `done` as it hands over its last byte (of `len`). hyper stops polling a body
/// once its Content-Length is written, so the end of the stream is never seen: the count is.
/// A download the client abandons earlier never calls it.
fn when_all_given(body: Body, len: u64, done: Box<dyn FnOnce() + Send>) -> Body {
    if len == 0 {
        done();
        return body;
    }
    let mut done = Some(done);
    let mut given = 0u64;
    Body::from_stream(body.into_data_stream().inspect(move |chunk| {
        if let Ok(c) = chunk {
            given += c.len() as u64;
            if given >= len
                && let Some(f) = done.take()
            {
                f();
            }
        }
    }))
}

/// Streams a store's chunks as a response body: a blocking thread reads ahead of the socket,
/// a couple of buffers (the stores read further ahead themselves). If the store stalls longer
/// than `limit` between buffers, the body ends with an error.
fn stream_chunks(
    mut chunks: impl crate::store::Chunks + 'static,
    id: String,
    limit: Option<std::time::Duration>,
) -> Body {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(2);
    // Held while the store is read: the reader's buffers come from its thread's arena.
    let transfer = crate::memory::Transfer::begin();
    tokio::task::spawn_blocking(move || {
        let _transfer = transfer;
        loop {
            let item = match chunks.next_chunk() {
                Ok(Some(c)) => Ok(c),
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(image_id = %id, error = %e, "read from store failed");
                    Err(e)
                }
            };
            let stop = item.is_err();
            if tx.blocking_send(item).is_err() || stop {
                return; // client went away, or the error is sent
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, move |mut rx| async move {
        let item = match limit {
            None => rx.recv().await,
            Some(l) => match tokio::time::timeout(l, rx.recv()).await {
                Ok(item) => item,
                Err(_) => Some(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "image store read timed out",
                ))),
            },
        };
        // After an error the stream ends.
        item.map(|i| {
            let stop = i.is_err();
            (i, if stop { closed_receiver() } else { rx })
        })
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Python's int() accepts, as Glance parses x-openstack-image-size.
    #[test]
    fn declared_size_reads_as_python_int() {
        let n = |s: &str| python_int(s).map(|d| (d.n, d.shown));
        assert_eq!(n("10"), Some((10, "10".into())));
        assert_eq!(n(" +0010 "), Some((10, "10".into())));
        assert_eq!(n("1_000"), Some((1000, "1000".into())));
        assert_eq!(n("-1"), Some((-1, "-1".into())));
        assert_eq!(n("-0"), Some((0, "0".into())));
        let big = "99999999999999999999999999999999999999999";
        assert_eq!(n(big), Some((i128::MAX, big.into())));
        for bad in ["", "-", "0x3", "1__0", "_1", "1_", "1.0", "3 4", "+-1"] {
            assert_eq!(n(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-4", 10).unwrap(), (0, 5));
        assert_eq!(parse_range("bytes=-2", 10).unwrap(), (8, 2));
        assert_eq!(parse_range("bytes=-20", 10).unwrap(), (0, 10));
        assert_eq!(parse_range("bytes=-0", 10).unwrap(), (0, 10));
        // An empty image: a suffix is nothing, `-0` (read as `0-`) starts past the end.
        assert_eq!(parse_range("bytes=-1", 0).unwrap(), (0, 0));
        assert!(matches!(
            parse_range("bytes=-0", 0),
            Err(Error::RangeNotSatisfiable(_))
        ));
        assert_eq!(parse_range("bytes=3-", 10).unwrap(), (3, 7));
        assert_eq!(parse_range("bytes=3-100", 10).unwrap(), (3, 7));
        assert_unsatisfiable(parse_range, &["bytes=10-"]);
        assert!(matches!(
            parse_range("bytes=0-1,3-4", 10),
            Err(Error::BadRequest(_))
        ));
        // webob's spelling: any case, spaces around the signs, anything after the range.
        assert_eq!(parse_range("Bytes = 2 - 4", 10).unwrap(), (2, 3));
        assert_eq!(parse_range("bytes=2-4;x", 10).unwrap(), (2, 3));
        let bad = ["items=0-1", "bytes=", "bytes=-", "bytes=5-4", "bytes 0-4"];
        assert_unsatisfiable(parse_range, &bad);
    }

    /// Each of `values` is a 416 for a 10-byte image.
    fn assert_unsatisfiable(parse: fn(&str, u64) -> Result<(u64, u64)>, values: &[&str]) {
        for v in values {
            let r = parse(v, 10);
            assert!(matches!(r, Err(Error::RangeNotSatisfiable(_))), "{v}");
        }
    }

    #[test]
    fn legacy_content_ranges() {
        assert_eq!(parse_content_range("bytes 2-5/*", 10).unwrap(), (2, 4));
        assert_eq!(parse_content_range("bytes 0-9/10", 10).unwrap(), (0, 10));
        // A stated length beyond the image is cut to the image.
        assert_eq!(parse_content_range("bytes 5-99/100", 10).unwrap(), (5, 5));
        let bad = [
            "bytes 5-4/*",
            "bytes */10",
            "bytes 0-9/5",
            "bytes=0-4",
            "items 0-4/*",
            "bytes 0-4",
            "bytes 0-10/*",
            "bytes 10-19/20",
        ];
        assert_unsatisfiable(parse_content_range, &bad);
    }
}
