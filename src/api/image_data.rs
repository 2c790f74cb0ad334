//! `/v2/images/{id}/file`: streaming upload and download of image data.

use std::io::Read;
use std::sync::Arc;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::AppState;
use crate::db::Db;
use crate::db::images::UploadResult;
use crate::domain::image::{Image, Location, Status};
use crate::domain::policy::{self, Context};
use crate::error::{Error, Result};
use crate::format::{Inspection, Verdict};
use crate::ingest::{IngestError, Pipeline};
use crate::store::{Store, StoreError, blocking};

/// A receiver whose sender is gone: the stream ends at its next poll.
fn closed_receiver() -> mpsc::Receiver<std::io::Result<Bytes>> {
    mpsc::channel(1).1
}

/// Returns an image left in `saving` to `queued` if the upload does not finish, including when
/// the request future is dropped because the client went away.
struct SavingGuard {
    db: Db,
    id: String,
    armed: bool,
}

impl SavingGuard {
    async fn restore(mut self) {
        self.armed = false;
        if let Err(e) = self
            .db
            .set_status(&self.id, Status::Saving, Status::Queued)
            .await
        {
            tracing::error!(image_id = %self.id, error = %e, "could not return image to queued");
        }
    }
}

impl Drop for SavingGuard {
    fn drop(&mut self) {
        if self.armed {
            let db = self.db.clone();
            let id = std::mem::take(&mut self.id);
            tracing::warn!(image_id = %id, "upload abandoned; returning image to queued");
            tokio::spawn(async move {
                if let Err(e) = db.set_status(&id, Status::Saving, Status::Queued).await {
                    tracing::error!(image_id = %id, error = %e, "could not return image to queued");
                }
            });
        }
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Result<Option<u64>> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| {
                Error::BadRequest("Invalid or missing image size in request headers.".into())
            }),
    }
}

pub async fn upload(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if ct.as_deref() != Some("application/octet-stream") {
        return Err(Error::UnsupportedMediaType {
            msg: format!("Invalid content type {}", ct.as_deref().unwrap_or("None")),
            accept_patch: None,
        });
    }
    let declared = header_u64(&headers, "x-openstack-image-size")?;
    let content_length = header_u64(&headers, header::CONTENT_LENGTH.as_str())?;

    let mut img = s.visible_image(&ctx, &id).await?;
    policy::check_upload(&ctx, &img)?;
    let cap = s.cfg.image_size_cap;
    if declared.or(content_length).is_some_and(|n| n > cap) {
        return Err(Error::TooLarge("The provided image is too large.".into()));
    }
    img.transition(Status::Saving)?;
    if !s.db.set_status(&id, Status::Queued, Status::Saving).await? {
        return Err(Error::Conflict(format!(
            "Image status transition from {} to saving is not allowed",
            s.db.get_image(&id)
                .await?
                .map(|i| i.status.as_str())
                .unwrap_or("deleted")
        )));
    }
    let guard = SavingGuard {
        db: s.db.clone(),
        id: id.clone(),
        armed: true,
    };

    match ingest(&s, &img, body, cap, declared.or(content_length)).await {
        Ok((result, size)) => {
            if let Some(d) = declared
                && d != size
            {
                delete_quietly(s.store.clone(), result.location.clone()).await;
                guard.restore().await;
                return Err(Error::BadRequest(format!(
                    "Image size mismatch: x-openstack-image-size says {d} bytes, {size} were received."
                )));
            }
            if !s.db.finish_upload(&id, &result).await? {
                // Deleted (or otherwise moved on) while we were writing.
                delete_quietly(s.store.clone(), result.location).await;
                let mut g = guard;
                g.armed = false;
                return Err(Error::Gone(format!(
                    "Image {id} could not be found after upload. The image may have been deleted during the upload."
                )));
            }
            let mut g = guard;
            g.armed = false;
            tracing::info!(image_id = %id, size, "upload complete");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(e) => {
            guard.restore().await;
            Err(e)
        }
    }
}

/// Streams the body through the pipeline into the store.
async fn ingest(
    s: &AppState,
    img: &Image,
    body: Body,
    cap: u64,
    size_hint: Option<u64>,
) -> Result<(UploadResult, u64)> {
    let id = img.id.as_str();
    let store = s.store.clone();
    let image_id = id.to_string();
    let writer = blocking(s.store.timeout(), move || {
        store.begin_write(&image_id, size_hint)
    })
    .await?;
    let inspect = img.container_format.as_deref() == Some("bare");
    let mut pipe = Pipeline::new(
        writer,
        &s.cfg.hashing_algorithm,
        cap,
        inspect,
        s.store.timeout(),
    )?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let step = match chunk {
            Ok(c) => pipe.push(c).await,
            Err(e) => Err(IngestError::Source(e.to_string())),
        };
        if let Err(e) = step {
            pipe.abort().await;
            return Err(ingest_error(id, e));
        }
    }
    let disk_format = img.disk_format.clone().unwrap_or_default();
    let require_match = s.cfg.require_image_format_match;
    let accept = |insp: Option<&Inspection>| {
        let Some(insp) = insp else { return Ok(None) };
        match insp.verdict(&disk_format, require_match) {
            Verdict::Accept(vsize) => Ok(vsize.map(|v| v.min(i64::MAX as u64))),
            Verdict::Mismatch(msg) => Err(IngestError::Rejected(msg)),
            Verdict::Unsafe(why) => {
                tracing::warn!(image_id = %id, reason = %why, "image failed safety checks");
                Err(IngestError::Rejected("Image failed safety checks".into()))
            }
        }
    };
    let (d, virtual_size, location) = pipe.finish(accept).await.map_err(|e| ingest_error(id, e))?;
    Ok((
        UploadResult {
            size: d.size as i64,
            checksum: d.checksum,
            os_hash_algo: d.os_hash_algo,
            os_hash_value: d.os_hash_value,
            virtual_size: virtual_size.map(|v| v as i64),
            location,
        },
        d.size,
    ))
}

fn ingest_error(id: &str, e: IngestError) -> Error {
    match e {
        IngestError::TooLarge => Error::TooLarge(
            "The incoming image is too large: The provided image is too large.".into(),
        ),
        IngestError::Source(msg) => {
            tracing::warn!(image_id = %id, error = %msg, "client stopped sending image data");
            Error::BadRequest(format!("Error reading image data: {msg}"))
        }
        IngestError::Store(other) => other.into(),
        IngestError::Rejected(msg) => Error::UnsupportedMediaType {
            msg,
            accept_patch: None,
        },
    }
}

/// Removes stored data; a failure leaves an orphan no row points to, logged for the operator.
pub async fn delete_quietly(store: Arc<dyn Store>, loc: Location) {
    let url = loc.url.clone();
    let limit = store.timeout();
    if let Err(e) = blocking(limit, move || store.delete(&loc)).await {
        tracing::error!(location = %url, error = %e, "could not remove image data");
    }
}

/// `Range` as Glance (webob) reads it: one range only; `start` negative for a suffix.
/// Returns (offset, length) or the error to send.
fn parse_range(value: &str, size: u64) -> Result<(u64, u64)> {
    if value.contains(',') {
        return Err(Error::BadRequest(
            "Requests with multiple ranges are not supported in Glance. You may make multiple single-range requests instead.".into(),
        ));
    }
    let invalid = || Error::RangeNotSatisfiable("Invalid Range header.".into());
    let spec = value
        .trim()
        .strip_prefix("bytes=")
        .ok_or_else(invalid)?
        .trim();
    let (a, b) = spec.split_once('-').ok_or_else(invalid)?;
    if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| invalid())?;
        if n == 0 {
            return Err(invalid());
        }
        // A suffix longer than the image means the whole image.
        let offset = size.saturating_sub(n);
        return Ok((offset, size - offset));
    }
    let start: u64 = a.parse().map_err(|_| invalid())?;
    let end: Option<u64> = if b.is_empty() {
        None
    } else {
        Some(b.parse().map_err(|_| invalid())?)
    };
    if let Some(e) = end
        && e < start
    {
        return Err(invalid());
    }
    if start >= size {
        return Err(Error::RangeNotSatisfiable(format!(
            "Invalid start position in Range header. Start position MUST be in the inclusive range [0, {}].",
            size as i64 - 1
        )));
    }
    let last = end.map(|e| e.min(size - 1)).unwrap_or(size - 1);
    Ok((start, last - start + 1))
}

pub async fn download(
    State(s): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let img = s.visible_image(&ctx, &id).await?;
    policy::check_download(&ctx, &img)?;
    let (Some(loc), Some(size)) = (img.locations.first().cloned(), img.size) else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let size = size.max(0) as u64;
    let range = match headers.get(header::RANGE) {
        None => None,
        Some(v) => Some(parse_range(v.to_str().unwrap_or(""), size)?),
    };
    let (offset, len) = range.unwrap_or((0, size));

    let store = s.store.clone();
    let reader = {
        let loc = loc.clone();
        blocking(s.store.timeout(), move || store.open_read(&loc, offset)).await
    };
    let reader = match reader {
        Ok(r) => r,
        Err(StoreError::NotFound(_)) => {
            tracing::error!(image_id = %id, location = %loc.url, "image data missing from store");
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        Err(e) => return Err(e.into()),
    };

    let mut resp = Response::new(stream_reader(
        reader.take(len),
        id.clone(),
        s.store.timeout(),
    ));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(sum) = img
        .checksum
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        h.insert("content-md5", sum);
    }
    if range.is_some() {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        let cr = format!("bytes {}-{}/{}", offset, offset + len - 1, size);
        if let Ok(v) = HeaderValue::from_str(&cr) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(resp)
}

/// Streams a blocking reader as a response body: a blocking thread reads large buffers ahead of
/// the socket, a few at a time.
/// Download buffer size: large reads and few, large socket writes.
const READ_CHUNK: usize = 1 << 20;

/// If the store stalls longer than `limit` between buffers, the body ends with an error.
fn stream_reader(
    mut reader: impl Read + Send + 'static,
    id: String,
    limit: Option<std::time::Duration>,
) -> Body {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        loop {
            // Fill a whole buffer unless the data ends, so chunks stay large; read_to_end
            // writes into spare capacity without zeroing it first.
            let mut buf = Vec::with_capacity(READ_CHUNK);
            match (&mut reader).take(READ_CHUNK as u64).read_to_end(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(image_id = %id, error = %e, "read from store failed");
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return; // client went away
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

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-4", 10).unwrap(), (0, 5));
        assert_eq!(parse_range("bytes=-2", 10).unwrap(), (8, 2));
        assert_eq!(parse_range("bytes=-20", 10).unwrap(), (0, 10));
        assert_eq!(parse_range("bytes=3-", 10).unwrap(), (3, 7));
        assert_eq!(parse_range("bytes=3-100", 10).unwrap(), (3, 7));
        assert!(matches!(
            parse_range("bytes=10-", 10),
            Err(Error::RangeNotSatisfiable(_))
        ));
        assert!(matches!(
            parse_range("bytes=0-1,3-4", 10),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            parse_range("items=0-1", 10),
            Err(Error::RangeNotSatisfiable(_))
        ));
    }
}
