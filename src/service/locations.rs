//! Locations added with the Locations API (v2.17), as Glance adds them: a `location_import`
//! task, holding the image's import lock (`os_glance_import_task`), records the location and
//! its size and, with `[DEFAULT] do_secure_hash`, reads the data to compute `checksum` and
//! `os_hash_value`: before the image turns `active` when `validation_data` came with it (a
//! mismatch fails the task and returns the image to `queued` without the location), after
//! otherwise (the image is usable while it is hashed). Deleting the image cancels the hashing.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::app::App;
use crate::db::work::Work;
use crate::digest::Hasher;
use crate::domain::fault::Fault;
use crate::domain::image::{Image, Location, Status};
use crate::domain::policy::Context;
use crate::domain::task::Task;
use crate::error::Result;
use crate::service::fetch;
use crate::store::{StoreError, blocking};

pub const LOCATION_IMPORT: &str = "location_import";
/// The image's import lock: the id of the task working on it.
pub const IMPORT_LOCK: &str = "os_glance_import_task";
/// What Glance records when a task's flow fails.
const INTERNAL: &str = "Task failed due to Internal Error";

fn is_http(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// Starts adding `url` to the `queued` image `img` (found and authorized by the caller): the
/// checks Glance makes before it answers 202, then the task.
pub async fn add(app: &App, ctx: &Context, img: &Image, url: &str, val_data: Value) -> Result<()> {
    if is_http(url) {
        let (f, u) = (app.cfg.import_filter.clone(), url.to_string());
        let passes = tokio::task::spawn_blocking(move || fetch::passes(&f, &u))
            .await
            .map_err(|e| Fault::Internal {
                what: e.to_string(),
            })?;
        if !passes {
            return Err(Fault::LocationFiltered { url: url.into() }.into());
        }
    }
    // The engine drops a lock with its task (or reclaims both): a lock held is a task at work.
    if img.properties.contains_key(IMPORT_LOCK) {
        return Err(Fault::ActiveTask {
            image: img.id.clone(),
        }
        .into());
    }
    let lock_taken = || Fault::ImportLocked {
        image: img.id.clone(),
    };
    // A location no configured store serves is accepted, as Glance accepts it: its task fails.
    let input = json!({"image_id": img.id, "loc_url": url, "validation_data": val_data});
    // The lock with the task, in one transaction: never a lock without a task to drop it.
    let t = super::tasks::record(
        app,
        ctx,
        LOCATION_IMPORT,
        Some(img.id.clone()),
        input,
        Some(IMPORT_LOCK),
    )
    .await?
    .ok_or_else(lock_taken)?;
    tracing::info!(task_id = %t.id, image_id = %img.id, location = %url, "location import task created");
    Ok(())
}

/// The data of `loc` hashed as Glance does (MD5 and `algo`), unless `cancel` is raised.
fn hash(
    app: &App,
    loc: &Location,
    algo: &str,
    cancel: &AtomicBool,
) -> std::result::Result<(String, String), StoreError> {
    let entry = app
        .stores
        .for_location(loc)
        .ok_or_else(|| StoreError::NotFound(loc.url.clone()))?;
    let mut r = entry.store.open_read(loc, 0)?;
    let mut md5 = Hasher::new("md5")?;
    let mut other = Hasher::new(algo)?;
    let mut buf = vec![0u8; 4 << 20];
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(StoreError::Other("canceled".into()));
        }
        let n = r.read(&mut buf).map_err(crate::store::classify_io)?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        other.update(&buf[..n]);
    }
    Ok((md5.hex(), other.hex()))
}

/// Hashes on the blocking pool, with up to `http_retries` further attempts; cancelled as soon
/// as the image is deleted.
async fn hash_with_retries(
    app: &App,
    image_id: &str,
    loc: &Location,
    algo: &str,
) -> std::result::Result<(String, String), String> {
    let cancel = Arc::new(AtomicBool::new(false));
    let watch = {
        let (db, id, cancel) = (app.db.clone(), image_id.to_string(), cancel.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if matches!(db.get_image(&id).await, Ok(None)) {
                    cancel.store(true, Ordering::Relaxed);
                    return;
                }
            }
        })
    };
    let mut last = String::new();
    let attempts = app.cfg.http_retries.max(1);
    for attempt in 1..=attempts {
        let (app2, loc2, algo2, c) = (app.clone(), loc.clone(), algo.to_string(), cancel.clone());
        match tokio::task::spawn_blocking(move || hash(&app2, &loc2, &algo2, &c)).await {
            Ok(Ok(h)) => {
                watch.abort();
                return Ok(h);
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(e) => last = e.to_string(),
        }
        if cancel.load(Ordering::Relaxed) {
            last = format!("Hash calculation for image {image_id} has been canceled");
            break;
        }
        tracing::info!(image_id, attempt, attempts, error = %last, "hashing a location failed");
    }
    watch.abort();
    Err(last)
}

/// Runs a `location_import` task. The outer error is the database failing (the work stays
/// for a retry); the inner one the task's failure, in Glance's words.
pub async fn run(app: &App, w: &Work, t: &Task) -> Result<std::result::Result<Value, String>> {
    let input = t.input.clone().unwrap_or(Value::Null);
    let image_id = input["image_id"].as_str().unwrap_or_default().to_string();
    let url = input["loc_url"].as_str().unwrap_or_default().to_string();
    let val: serde_json::Map<String, Value> = input["validation_data"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let Some(img) = app.db.get_image(&image_id).await? else {
        return Ok(Err(INTERNAL.into()));
    };
    if img.properties.get(IMPORT_LOCK) != Some(&t.id) {
        tracing::error!(image_id, other = ?img.properties.get(IMPORT_LOCK), "another task holds the image's import lock; aborting");
        return Ok(Err(INTERNAL.into()));
    }
    let outcome = locate_and_hash(app, img, &url, &val).await?;
    if let Err(why) = &outcome {
        tracing::warn!(image_id, work = %w.id, reason = %why, "location import failed");
    }
    app.db
        .delete_property_if(&image_id, IMPORT_LOCK, &t.id)
        .await?;
    Ok(outcome
        .map(|()| json!({ "image_id": image_id }))
        .map_err(|_| INTERNAL.to_string()))
}

/// The flow itself, resumable: each step checks what a previous attempt already did.
async fn locate_and_hash(
    app: &App,
    img: Image,
    url: &str,
    val: &serde_json::Map<String, Value>,
) -> Result<std::result::Result<(), String>> {
    let id = img.id.clone();
    // The location and its size, unless an earlier attempt recorded them.
    let img = if img.locations.iter().any(|l| l.url == url) {
        img
    } else {
        let mut loc = Location {
            url: url.to_string(),
            metadata: json!({}),
        };
        let Some(entry) = app.stores.for_location(&loc) else {
            return Ok(Err(format!("no configured store holds {url}")));
        };
        if app.stores.multi {
            loc.metadata = json!({ "store": entry.id });
        }
        let store = entry.store.clone();
        let probe = loc.clone();
        let size = match blocking(store.timeout(), move || store.size(&probe)).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(format!("Invalid location {url}: {e}"))),
        };
        let mut updated = img.clone();
        updated.locations.push(loc);
        updated.size = Some(size as i64);
        app.db.save_image(&img, &updated).await?;
        updated
    };
    let loc = img
        .locations
        .iter()
        .find(|l| l.url == url)
        .cloned()
        .ok_or_else(|| Fault::Internal {
            what: "location vanished".into(),
        })?;
    let algo = val
        .get("os_hash_algo")
        .and_then(Value::as_str)
        .unwrap_or(&app.cfg.hashing_algorithm)
        .to_string();
    let set = |img: &Image, f: &dyn Fn(&mut Image)| {
        let mut n = img.clone();
        f(&mut n);
        n
    };
    if !app.cfg.do_secure_hash {
        let next = set(&img, &|n| {
            for (k, v) in val {
                let v = v.as_str().map(str::to_string);
                match k.as_str() {
                    "os_hash_algo" => n.os_hash_algo = v,
                    "os_hash_value" => n.os_hash_value = v,
                    _ => {}
                }
            }
            if n.status == Status::Queued {
                n.status = Status::Active;
            }
        });
        app.db.save_image(&img, &next).await?;
        return Ok(Ok(()));
    }
    if val.is_empty() {
        // Active first, then hashed: the image is usable meanwhile.
        let active = set(&img, &|n| {
            if n.status == Status::Queued {
                n.status = Status::Active;
            }
            n.os_hash_algo = Some(algo.clone());
        });
        if active != img {
            app.db.save_image(&img, &active).await?;
        }
        if active.os_hash_value.is_some() {
            return Ok(Ok(()));
        }
        match hash_with_retries(app, &id, &loc, &algo).await {
            Ok((md5, h)) => {
                let hashed = set(&active, &|n| {
                    n.checksum = Some(md5.clone());
                    n.os_hash_value = Some(h.clone());
                });
                app.db.save_image(&active, &hashed).await?;
                tracing::info!(image_id = %id, checksum = %md5, "location hashed");
            }
            // Deleted meanwhile: the hashing was cancelled, and the task fails as in Glance.
            Err(e) if app.db.get_image(&id).await?.is_none() => return Ok(Err(e)),
            // The image stays active without hashes, as in Glance.
            Err(e) => {
                tracing::warn!(image_id = %id, error = %e, "Hash calculation failed for image data")
            }
        }
        return Ok(Ok(()));
    }
    // With validation data: `importing` while hashed, `active` only if the data matches.
    let importing = set(&img, &|n| {
        if n.status == Status::Queued {
            n.status = Status::Importing;
        }
        n.os_hash_algo = Some(algo.clone());
    });
    if importing != img {
        app.db.save_image(&img, &importing).await?;
    }
    let hashed = hash_with_retries(app, &id, &loc, &algo).await;
    let expected = |k: &str| val.get(k).and_then(Value::as_str);
    let failure = match &hashed {
        Err(e) => Some(format!("Hash calculation failed for image {id} data: {e}")),
        Ok((_, h)) if expected("os_hash_value").is_some_and(|v| v != h) => Some(format!(
            "os_hash_value: ({}) not matched with actual os_hash_value: ({h})",
            expected("os_hash_value").unwrap_or_default()
        )),
        Ok(_) => None,
    };
    let Some(current) = app.db.get_image(&id).await? else {
        return Ok(Err(format!("image {id} deleted while hashed")));
    };
    if let Some(why) = failure {
        // Back as it was: queued, without the location (unless http) or hashes.
        let back = set(&current, &|n| {
            if !is_http(url) {
                n.locations.retain(|l| l.url != url);
            }
            if n.status == Status::Importing {
                n.status = Status::Queued;
                n.size = None;
            }
            n.os_hash_algo = None;
            n.os_hash_value = None;
            n.checksum = None;
        });
        app.db.save_image(&current, &back).await?;
        return Ok(Err(why));
    }
    let Ok((md5, h)) = hashed else {
        return Ok(Err("hashing failed".into()));
    };
    let done = set(&current, &|n| {
        n.checksum = Some(md5.clone());
        n.os_hash_value = Some(h.clone());
        if n.status == Status::Importing {
            n.status = Status::Active;
        }
    });
    app.db.save_image(&current, &done).await?;
    tracing::info!(image_id = %id, checksum = %md5, "location hashed and verified");
    Ok(Ok(()))
}
