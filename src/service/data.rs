//! Image data in: an upload's whole workflow (the `saving` transition, its leased work row, the
//! pipeline into a store, the record of the result), from any byte stream: a request's body or
//! a task's download.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::app::App;
use crate::db::images::UploadResult;
use crate::domain::fault::Fault;
use crate::domain::image::{Image, Status};
use crate::error::Result;
use crate::format::{Inspection, Verdict};
use crate::ingest::{IngestError, Pipeline};
use crate::store::{StoreEntry, blocking};
use crate::work::Engine;

#[derive(Debug)]
pub struct DeclaredSize {
    /// Saturated beyond i128, which no upload reaches either way.
    pub n: i128,
    pub shown: String,
}

/// Returns an image left in `saving` to `queued` if the upload does not finish, including when
/// the request future is dropped because the client went away; ends the upload's work row.
/// (If the whole node dies instead, another node undoes the upload when its lease runs out.)
struct SavingGuard {
    engine: Arc<Engine>,
    id: String,
    work: String,
    armed: bool,
}

impl SavingGuard {
    async fn restore(mut self) {
        self.armed = false;
        if let Err(e) = self.engine.abandon_upload(&self.id, &self.work).await {
            tracing::error!(image_id = %self.id, error = %e, "could not return image to queued");
            self.engine.give_up(&self.work);
        }
    }

    /// The upload's end is unknown (the database failed while recording it): left to the
    /// undo, which keeps the data if the image records it.
    fn give_up(mut self) {
        self.armed = false;
        self.engine.give_up(&self.work);
    }
}

impl Drop for SavingGuard {
    fn drop(&mut self) {
        if self.armed {
            let engine = self.engine.clone();
            let id = std::mem::take(&mut self.id);
            let work = std::mem::take(&mut self.work);
            tracing::warn!(image_id = %id, "upload abandoned; returning image to queued");
            tokio::spawn(async move {
                if let Err(e) = engine.abandon_upload(&id, &work).await {
                    tracing::error!(image_id = %id, error = %e, "could not return image to queued");
                    engine.give_up(&work);
                }
            });
        }
    }
}

/// Writes `stream` as the data of `img` (already found and authorized) into `target`; the
/// image is `active` when this returns its size. `size_hint` sizes the store's allocation;
/// `declared` is a size the data must have.
pub async fn upload(
    app: &App,
    mut img: Image,
    target: &StoreEntry,
    stream: impl Stream<Item = std::result::Result<Bytes, String>> + Unpin,
    size_hint: Option<u64>,
    declared: Option<&DeclaredSize>,
) -> Result<u64> {
    let cap = app.cfg.image_size_cap;
    if size_hint.is_some_and(|n| n > cap) {
        return Err(Fault::TooLarge.into());
    }
    img.transition(Status::Saving)?;
    let id = img.id.clone();
    let backend = app.stores.multi.then_some(target.id.as_str());
    app.notifier.image_data("image.prepare", &img, backend);
    // `saving` and the work row that undoes it if this node dies, together.
    let Some(work) = app.engine.begin_upload(&id, &target.id).await? else {
        // Glance names the status it found (a deleted image's row says `deleted`).
        let from = match app.db.get_image(&id).await? {
            Some(i) => i.status,
            None => Status::Deleted,
        };
        return Err(Fault::Transition {
            from,
            to: Status::Saving,
        }
        .into());
    };
    let guard = SavingGuard {
        engine: app.engine.clone(),
        id: id.clone(),
        work: work.clone(),
        armed: true,
    };

    match ingest(app, &img, target, &work, stream, cap, size_hint, declared).await {
        Ok((result, size)) => {
            if let Some(d) = declared
                && d.n != i128::from(size)
            {
                app.engine.delete_data(&id, result.location.clone()).await;
                guard.restore().await;
                return Err(Fault::SizeMismatch {
                    expected: d.shown.clone(),
                    got: size,
                }
                .into());
            }
            let recorded = match app
                .db
                .finish_upload(&id, &result, &work, &app.engine.node)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    guard.give_up();
                    return Err(e.into());
                }
            };
            if !recorded {
                // Deleted (or otherwise moved on, or undone by another node that took this
                // one for dead) while we were writing.
                app.engine.delete_data(&id, result.location).await;
                guard.restore().await;
                return Err(Fault::VanishedDuringUpload { image: id }.into());
            }
            let mut g = guard;
            g.armed = false;
            tracing::info!(image_id = %id, size, "upload complete");
            if app.notifier.enabled()
                && let Ok(Some(done)) = app.db.get_image(&id).await
            {
                app.notifier.image_data("image.upload", &done, None);
                app.notifier.image("image.activate", &done);
            }
            Ok(size)
        }
        Err(e) => {
            guard.restore().await;
            Err(e)
        }
    }
}

/// Streams the body through the pipeline into the store, as the write `attempt`.
#[allow(clippy::too_many_arguments)]
async fn ingest(
    app: &App,
    img: &Image,
    target: &StoreEntry,
    attempt: &str,
    mut stream: impl Stream<Item = std::result::Result<Bytes, String>> + Unpin,
    cap: u64,
    size_hint: Option<u64>,
    declared: Option<&DeclaredSize>,
) -> Result<(UploadResult, u64)> {
    let id = img.id.as_str();
    let store = target.store.clone();
    let image_id = id.to_string();
    let attempt = attempt.to_string();
    let writer = blocking(store.timeout(), {
        let store = store.clone();
        move || store.begin_write(&image_id, size_hint, &attempt)
    })
    .await?;
    let inspect = img.container_format.as_deref() == Some("bare");
    let mut pipe = Pipeline::new(
        writer,
        &app.cfg.hashing_algorithm,
        cap,
        inspect,
        store.timeout(),
    )?;
    while let Some(chunk) = stream.next().await {
        let step = match chunk {
            Ok(c) => {
                let received = pipe.size() + c.len() as u64;
                // More than declared: stop reading, as Glance's stores do at the first chunk
                // past the size (the rest is never read or written).
                if let Some(d) = declared.filter(|d| i128::from(received) > d.n) {
                    pipe.abort().await;
                    return Err(Fault::SizeExceeds {
                        expected: d.shown.clone(),
                        got: received,
                    }
                    .into());
                }
                pipe.push(c).await
            }
            Err(e) => Err(IngestError::Source(e)),
        };
        if let Err(e) = step {
            pipe.abort().await;
            return Err(ingest_error(id, e).into());
        }
    }
    let disk_format = img.disk_format.clone().unwrap_or_default();
    let require_match = app.cfg.require_image_format_match;
    let accept = |insp: Option<&Inspection>| {
        let Some(insp) = insp else { return Ok(None) };
        match insp.verdict(
            &disk_format,
            require_match,
            &app.cfg.gpt_safety_checks_nonfatal,
        ) {
            Verdict::Accept(vsize) => Ok(vsize.map(|v| v.min(i64::MAX as u64))),
            Verdict::Mismatch(msg) => Err(IngestError::Rejected(msg)),
            Verdict::Unsafe(why) => {
                tracing::warn!(image_id = %id, reason = %why, "image failed safety checks");
                Err(IngestError::Rejected("Image failed safety checks".into()))
            }
        }
    };
    let (d, virtual_size, mut location) =
        pipe.finish(accept).await.map_err(|e| ingest_error(id, e))?;
    Ok((
        UploadResult {
            size: d.size as i64,
            checksum: d.checksum,
            os_hash_algo: d.os_hash_algo,
            os_hash_value: d.os_hash_value,
            // Glance records a virtual size only when it is not 0 (an empty image has none).
            virtual_size: virtual_size.filter(|v| *v > 0).map(|v| v as i64),
            location: {
                if app.stores.multi {
                    // Next to what the store put there (filesystem_store_metadata_file).
                    match location.metadata.as_object_mut() {
                        Some(m) => {
                            m.insert("store".into(), target.id.clone().into());
                        }
                        None => location.metadata = serde_json::json!({"store": target.id}),
                    }
                }
                location
            },
        },
        d.size,
    ))
}

fn ingest_error(id: &str, e: IngestError) -> Fault {
    match e {
        IngestError::TooLarge => Fault::TooLarge,
        IngestError::Source(why) => {
            tracing::warn!(image_id = %id, error = %why, "client stopped sending image data");
            Fault::SourceFailed { why }
        }
        IngestError::Store(other) => other.into(),
        IngestError::Rejected(why) => Fault::Rejected { why },
    }
}

/// What a store opened for a download.
pub enum Opened {
    /// A local file, for the caller to send with sendfile.
    File(std::fs::File),
    /// The data from the offset asked for, to its end.
    Stream(Box<dyn crate::store::Chunks>),
}

/// An image's data, opened: where it comes from, which bytes of how many.
pub struct Download {
    pub image: Image,
    pub opened: Opened,
    /// Each blocking read from the store may take this long.
    pub timeout: Option<std::time::Duration>,
    pub offset: u64,
    pub len: u64,
    /// The image's whole size.
    pub size: u64,
    /// A part was asked for (`range` gave one).
    pub partial: bool,
    /// To call once the last byte is handed to the connection: `image.send`, which Glance
    /// sends only after a download's last chunk (never for one the client abandoned).
    pub on_sent: Box<dyn FnOnce() + Send>,
}

/// Finds the image, authorizes the download (from the stores `prefer` names, in that order,
/// when given), and opens the first of its locations that opens (`zero_copy`: as a file, where
/// the store has one). `range` gives the part wanted once the size is known (None: all of it).
/// None when the image has no data to give.
pub async fn open_download(
    app: &App,
    ctx: &crate::domain::policy::Context,
    id: &str,
    prefer: &[String],
    zero_copy: bool,
    range: impl FnOnce(u64) -> Result<Option<(u64, u64)>>,
) -> Result<Option<Download>> {
    let img = app.image(ctx, id).await?;
    if img.status == Status::Deactivated && !ctx.is_admin {
        return Err(Fault::DownloadDeactivated.into());
    }
    let checks = ctx.on_image(&img);
    checks.enforce("download_image")?;
    if !prefer.is_empty() {
        checks.enforce("download_from_store")?;
    }
    let order = download_order(app, &img.locations, prefer)?;
    let Some(size) = img.size.filter(|_| !img.locations.is_empty()) else {
        return Ok(None);
    };
    let size = size.max(0) as u64;
    let wanted = range(size)?;
    let (offset, len) = wanted.unwrap_or((0, size));

    // Locations in order of preference; the first that opens serves the data.
    let mut last_err = None;
    for (entry, loc) in order {
        let store = entry.store.clone();
        let l = loc.clone();
        let open = move || match store.open_file(&l).filter(|_| zero_copy) {
            Some(file) => file.map(Opened::File),
            None => store.open_chunks(&l, offset).map(Opened::Stream),
        };
        match blocking(entry.store.timeout(), open).await {
            Ok(opened) => {
                let (notifier, sent, ctx) = (app.notifier.clone(), img.clone(), ctx.clone());
                let on_sent = Box::new(move || notifier.image_sent(&sent, len, &ctx));
                return Ok(Some(Download {
                    on_sent,
                    timeout: entry.store.timeout(),
                    image: img,
                    opened,
                    offset,
                    len,
                    size,
                    partial: wanted.is_some(),
                }));
            }
            Err(e) => {
                tracing::warn!(image_id = %id, location = %loc.url, error = %e, "location unreadable");
                last_err = Some(e);
            }
        }
    }
    match last_err {
        Some(crate::store::StoreError::NotFound(_)) | None => {
            tracing::error!(image_id = %id, "image data missing from every location");
            Ok(None)
        }
        Some(e) => Err(e.into()),
    }
}

/// The image's locations a configured store holds, the stores `prefer` names first (in its
/// order), then by store weight.
fn download_order<'a>(
    app: &'a App,
    locations: &'a [crate::domain::image::Location],
    prefer: &[String],
) -> Result<Vec<(&'a StoreEntry, &'a crate::domain::image::Location)>, Fault> {
    if !prefer.is_empty() {
        if !app.stores.multi {
            return Err(Fault::StoreSelectionUnavailable);
        }
        if let Some(bad) = prefer.iter().find(|p| app.stores.get(p).is_none()) {
            return Err(Fault::UnknownStore { id: bad.clone() });
        }
    }
    let mut order: Vec<_> = locations
        .iter()
        .filter_map(|l| app.stores.for_location(l).map(|e| (e, l)))
        .collect();
    let rank = |e: &StoreEntry| prefer.iter().position(|p| *p == e.id).unwrap_or(usize::MAX);
    order.sort_by_key(|(e, _)| (rank(e), std::cmp::Reverse(e.weight)));
    Ok(order)
}
