//! Glance's tasks: creating one (`POST /v2/tasks`) and running it as leased work, so that a
//! node that dies mid-task leaves it to another node, which runs it on from where it was.
//!
//! The legacy `import` task: create an image from `input.image_properties`, fetch
//! `input.import_from` into it, and record `{"image_id": ...}`; on failure the image is
//! deleted and the task records why.

use std::future::Future;
use std::pin::Pin;

use chrono::NaiveDateTime;
use serde_json::{Value, json};

use crate::app::App;
use crate::db::images::now;
use crate::db::work::Work;
use crate::domain::fault::Fault;
use crate::domain::image::Status;
use crate::domain::policy::{Caller, Context, project_target};
use crate::domain::task::{self, Task};
use crate::error::Result;
use crate::service::{data, fetch, images, locations};
use crate::work::{Runner, TASK};

/// Glance's check of `import_from` when a task is created and again when it runs.
fn check_import_from(app: &App, input: &Value) -> std::result::Result<String, String> {
    let uri = match input.get("import_from") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        other => {
            let shown = match other {
                None | Some(Value::Null) => "None".to_string(),
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
            };
            return Err(format!("Invalid location: {shown}"));
        }
    };
    if uri.starts_with("file:///") || uri.starts_with("filesystem:///") {
        return Err(
            "File based imports are not allowed. Please use a non-local source of image data."
                .into(),
        );
    }
    if !(uri.starts_with("http://") || uri.starts_with("https://")) {
        return Err(
            "The given uri is not valid. Please specify a valid uri from the following \
             list of supported uri ['http']"
                .into(),
        );
    }
    if !fetch::passes(&app.cfg.import_filter, &uri) {
        return Err(format!(
            "URI for legacy import task does not pass filtering: {uri}"
        ));
    }
    Ok(uri)
}

fn expiry(app: &App) -> NaiveDateTime {
    now() + chrono::Duration::hours(i64::try_from(app.cfg.task_time_to_live).unwrap_or(48))
}

/// `import_from` checked as Glance checks it, off the async runtime (the filter resolves names).
async fn checked_import_from(
    app: &App,
    input: &Value,
) -> Result<std::result::Result<String, String>> {
    let (app, input) = (app.clone(), input.clone());
    tokio::task::spawn_blocking(move || check_import_from(&app, &input))
        .await
        .map_err(|e| {
            Fault::Internal {
                what: e.to_string(),
            }
            .into()
        })
}

/// Creates a task of `kind` with `input` for `ctx`'s project and starts it on this node.
pub async fn create(app: &App, ctx: &Context, kind: &str, input: Value) -> Result<Task> {
    if kind == task::IMPORT {
        checked_import_from(app, &input)
            .await?
            .map_err(|why| Fault::ImportFromRefused { why })?;
    }
    let image_id = input
        .get("image_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    // Without a lock there is nothing to be refused.
    let t = record(app, ctx, kind, image_id, input, None)
        .await?
        .ok_or_else(|| Fault::Internal {
            what: "task not recorded".into(),
        })?;
    tracing::info!(task_id = %t.id, kind = %t.kind, node = %app.engine.node, "task created");
    app.notifier.task("task.create", &t);
    Ok(t)
}

/// Records a new `pending` task for `ctx` with the work row that runs it (and, with `lock`,
/// the image's lock property, in the same transaction), then starts it. None if the lock was
/// held already.
pub(crate) async fn record(
    app: &App,
    ctx: &Context,
    kind: &str,
    image_id: Option<String>,
    input: Value,
    lock: Option<&str>,
) -> Result<Option<Task>> {
    let ts = now();
    let t = Task {
        id: uuid::Uuid::new_v4().to_string(),
        kind: kind.to_string(),
        status: task::PENDING.into(),
        owner: ctx.project_id.clone().unwrap_or_default(),
        expires_at: None,
        created_at: ts,
        updated_at: ts,
        image_id,
        request_id: Some(ctx.request_id.clone()),
        user_id: ctx.user_id.clone(),
        input: Some(input),
        result: None,
        message: Some(String::new()),
    };
    // The creator's identity goes with the work: a node that takes it over acts as them.
    let w = app.engine.new_work(
        TASK,
        lock.and(t.image_id.as_deref()),
        json!({ "task_id": t.id, "caller": ctx.caller, "is_admin": ctx.is_admin }),
    );
    if !app.db.create_task(&t, &w, lock).await? {
        return Ok(None);
    }
    start(app, w);
    Ok(Some(t))
}

/// Runs the task of work `w` (held by this node) in the background.
pub(crate) fn start(app: &App, w: Work) {
    let job = app.clone();
    app.engine
        .launch(w.id.clone(), async move { run(job, w).await });
}

/// The context a task acts in: its creator's, as recorded with its work.
fn context_of(app: &App, w: &Work, t: &Task) -> Context {
    let caller: Caller = serde_json::from_value(w.payload["caller"].clone()).unwrap_or_default();
    let mut ctx = Context::new(
        caller,
        t.request_id.clone().unwrap_or_default(),
        app.policy.clone(),
        app.protections.clone(),
    );
    if w.payload["is_admin"].as_bool() == Some(true) {
        ctx.is_admin = true;
    }
    ctx
}

async fn run(app: App, mut w: Work) {
    let Some(task_id) = w.payload["task_id"].as_str().map(str::to_string) else {
        let _ = app.db.delete_work(&w.id, &app.engine.node).await;
        return;
    };
    let node = app.engine.node.clone();
    let span = tracing::info_span!("task", task_id = %task_id, node = %node);
    let _ = tracing::Instrument::instrument(
        async {
            if let Err(e) = run_task(&app, &mut w, &task_id).await {
                // The database failed us: the work stays; when its lease runs out (or this
                // node restarts) it is offered again.
                tracing::error!(error = %e, "task interrupted; it will be resumed");
                let _ = app
                    .db
                    .postpone_work(&w.id, &node, app.engine.lease_end())
                    .await;
            }
        },
        span,
    )
    .await;
}

async fn run_task(app: &App, w: &mut Work, task_id: &str) -> Result<()> {
    let node = app.engine.node.clone();
    let Some(t) = app.db.get_task(task_id).await? else {
        app.db.delete_work(&w.id, &node).await?;
        return Ok(());
    };
    if t.status == task::SUCCESS || t.status == task::FAILURE {
        app.db.delete_work(&w.id, &node).await?;
        return Ok(());
    }
    app.db
        .update_task(
            task_id,
            &[task::PENDING],
            task::PROCESSING,
            None,
            None,
            None,
        )
        .await?;
    tracing::info!(kind = %t.kind, attempt = w.attempts + 1, "task processing");
    let shown = |status: &str| task::Task {
        status: status.to_string(),
        ..t.clone()
    };
    app.notifier.task("task.run", &shown(task::PROCESSING));
    app.notifier
        .task("task.processing", &shown(task::PROCESSING));
    let ctx = context_of(app, w, &t);
    let outcome = match t.kind.as_str() {
        task::IMPORT => import(app, &ctx, w, &t).await?,
        locations::LOCATION_IMPORT => locations::run(app, w, &t).await?,
        _ => Err("Task failed due to Internal Error".to_string()),
    };
    let (status, result, message) = match &outcome {
        Ok(r) => (task::SUCCESS, Some(r), None),
        Err(m) => (task::FAILURE, None, Some(m.as_str())),
    };
    app.db
        .update_task(
            task_id,
            &[task::PROCESSING],
            status,
            result,
            message,
            Some(expiry(app)),
        )
        .await?;
    match &outcome {
        Ok(r) => tracing::info!(result = %r, "task succeeded"),
        Err(m) => tracing::warn!(message = %m, "task failed"),
    }
    let event = if outcome.is_ok() {
        "task.success"
    } else {
        "task.failure"
    };
    app.notifier.task(event, &shown(status));
    app.db.delete_work(&w.id, &node).await?;
    Ok(())
}

/// The legacy import. The outer error is the database failing (the task stays for a retry);
/// the inner one is the task's failure, in the words it records.
async fn import(
    app: &App,
    ctx: &Context,
    w: &mut Work,
    t: &Task,
) -> Result<std::result::Result<Value, String>> {
    let input = t.input.clone().unwrap_or(Value::Null);
    let uri = match checked_import_from(app, &input).await? {
        Ok(u) => u,
        Err(m) => return Ok(Err(m)),
    };
    // The image: the one a previous attempt created, or a new one, recorded with the work
    // before any data moves so that a successor finds it.
    let image_id = match w.payload["image_id"].as_str() {
        Some(id) => id.to_string(),
        None => {
            let mut props = match input.get("image_properties") {
                Some(Value::Object(m)) => m.clone(),
                _ => serde_json::Map::new(),
            };
            // Glance's placeholders for an import that names no properties.
            if props.is_empty() {
                props.insert("disk_format".into(), "qcow2".into());
                props.insert("container_format".into(), "bare".into());
            }
            let img = match images::create(app, ctx, Value::Object(props)).await {
                Ok(img) => img,
                Err(e) => return Ok(Err(e.to_string())),
            };
            w.payload["image_id"] = json!(img.id);
            if !app
                .db
                .update_work(&w.id, &app.engine.node, Some(&img.id), &w.payload)
                .await?
            {
                // Another node took the work for dead: it has the image now.
                return Err(Fault::TakenOver.into());
            }
            tracing::info!(image_id = %img.id, "import task created its image");
            img.id
        }
    };
    let fail = |app: &App, msg: String| {
        let app = app.clone();
        let image_id = image_id.clone();
        async move {
            if let Ok(Some(locs)) = app.db.delete_image(&image_id).await {
                for l in locs {
                    app.engine.delete_data(&image_id, l).await;
                }
            }
            Ok(Err(msg))
        }
    };
    let Some(img) = app.db.get_image(&image_id).await? else {
        return fail(app, format!("Image {image_id} could not be found.")).await;
    };
    match img.status {
        Status::Active => return Ok(Ok(json!({ "image_id": image_id }))),
        Status::Queued => {}
        other => {
            return fail(
                app,
                format!(
                    "Image status transition from {} to saving is not allowed",
                    other.as_str()
                ),
            )
            .await;
        }
    }
    let (stream, len) = match fetch::fetch(app.cfg.import_filter.clone(), uri).await {
        Ok(x) => x,
        Err(e) => {
            return fail(app, format!("Uploading the image failed due to: {e}")).await;
        }
    };
    let target = app.stores.default_store();
    match data::upload(app, img, target, stream, len, None).await {
        Ok(size) => {
            tracing::info!(image_id = %image_id, size, "import task wrote the image");
            Ok(Ok(json!({ "image_id": image_id })))
        }
        Err(e) => fail(app, e.to_string()).await,
    }
}

impl Runner for App {
    fn resume(&self, w: Work) -> Pin<Box<dyn Future<Output = Result<bool, Fault>> + Send + '_>> {
        Box::pin(async move {
            // An upload the dead node was doing for this task is undone first (the image
            // back to `queued`, its partial data gone); then the task runs on.
            if let Some(image_id) = w.payload["image_id"].as_str()
                && self.db.any_upload(image_id).await?
            {
                return Ok(false);
            }
            start(self, w);
            Ok(true)
        })
    }
}

/// Whether `t` may be seen by `ctx` (Glance's database-layer visibility for tasks).
pub fn visible(ctx: &Context, t: &Task) -> bool {
    ctx.is_admin || ctx.project_id.as_deref() == Some(t.owner.as_str())
}

/// `tasks_api_access` then `action`, as Glance's tasks controller checks them.
pub fn authorize(ctx: &Context, action: &str) -> Result<()> {
    let target = project_target(ctx);
    ctx.enforce("tasks_api_access", &target)?;
    Ok(ctx.enforce(action, &target)?)
}
