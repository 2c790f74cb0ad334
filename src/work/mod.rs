//! The work engine: work that outlives a request lives in the database as leased rows
//! (`db::work`), so that any node may die at any moment and another undoes or finishes what it
//! held. Each node renews the leases it holds every third of a lease (at most every 2 s);
//! every node looks for leases that ran out as often, claims them (of two nodes, one wins) and
//! deals with them; a node that restarts deals at once with what it held before; a node that
//! stops hands its leases back so that others need not wait for them to run out.
//!
//! Kinds of work: `upload` (an upload in progress: if its node dies, the image goes back to
//! `queued` and the partial data leaves the store); `task` (a Glance task: if its node dies,
//! another runs it on from where it was, through a `Runner`); `delete` (data no image records
//! whose removal failed, the store down or busy: any node tries again later).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::db::Db;
use crate::db::work::Work;
use crate::domain::fault::Result;
use crate::domain::image::Location;
use crate::store::{Stores, blocking};

pub const UPLOAD: &str = "upload";
pub const TASK: &str = "task";
pub const DELETE: &str = "delete";

/// Runs the kinds of work that are workflows of the service layer (tasks), which the engine
/// beneath it cannot name.
pub trait Runner: Send + Sync + 'static {
    /// Takes on work this node now holds (it claimed it, or created it): starts it with
    /// `Engine::launch`, or says it must wait (false: the engine offers it again later).
    fn resume(&self, w: Work) -> Pin<Box<dyn Future<Output = Result<bool>> + Send + '_>>;
}

/// Milliseconds since the epoch, the unit of leases.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub struct Engine {
    db: Db,
    stores: Arc<Stores>,
    /// This node's name in the rows it holds: host and port, the same after a restart.
    pub node: String,
    lease: Duration,
    runner: OnceLock<Arc<dyn Runner>>,
    /// Work running on this node, stopped when it stops.
    running: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    /// `[taskflow_executor] max_workers`: how much work runs here at once.
    slots: Arc<Semaphore>,
    /// Work this node gave up (its end could not be recorded): its lease is no longer renewed,
    /// so that it runs out and the undo, by any node, settles it.
    given_up: Mutex<std::collections::HashSet<String>>,
}

impl Engine {
    pub fn new(
        db: Db,
        stores: Arc<Stores>,
        node: String,
        lease: Duration,
        max_workers: usize,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            db,
            stores,
            node,
            lease,
            runner: OnceLock::new(),
            running: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(max_workers.max(1))),
            given_up: Mutex::default(),
        })
    }

    /// Who runs tasks; set once the application around the engine exists.
    pub fn set_runner(&self, runner: Arc<dyn Runner>) {
        let _ = self.runner.set(runner);
    }

    /// New work of `kind`, held by this node.
    pub fn new_work(&self, kind: &str, image_id: Option<&str>, payload: serde_json::Value) -> Work {
        Work {
            id: uuid::Uuid::new_v4().to_string(),
            kind: kind.into(),
            image_id: image_id.map(str::to_string),
            node: self.node.clone(),
            lease_until: self.until(),
            attempts: 0,
            payload,
        }
    }

    /// Runs `job` for the work `work_id` in the background once a slot is free. The work's
    /// row keeps it safe meanwhile: a node that dies before or during the job leaves it to
    /// another.
    pub fn launch(
        self: &Arc<Self>,
        work_id: String,
        job: impl Future<Output = ()> + Send + 'static,
    ) {
        let engine = self.clone();
        let id = work_id.clone();
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let handle = tokio::spawn(async move {
            let Ok(_slot) = engine.slots.clone().acquire_owned().await else {
                return;
            };
            job.await;
            engine
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        });
        running.insert(work_id, handle.abort_handle());
    }

    /// How often leases are renewed and abandoned work looked for: a third of a lease at
    /// most, so that a lease is renewed twice before it can run out; at most 2 s, so that a
    /// lease that ran out (or work handed back at a shutdown) is taken over within 2 s: one
    /// indexed query and one update per node.
    fn scan_period(&self) -> Duration {
        (self.lease / 3).clamp(Duration::from_millis(500), Duration::from_secs(2))
    }

    /// When a lease taken now ends.
    pub fn lease_end(&self) -> i64 {
        self.until()
    }

    fn until(&self) -> i64 {
        now_ms() + self.lease.as_millis() as i64
    }

    /// Records an upload of `image_id` into the store `store` about to start: from now on, if
    /// this node dies, another returns the image to `queued` and removes the partial data.
    /// Returns the work's id, which names the write (`Store::begin_write`); None if the image
    /// is not `queued`.
    pub async fn begin_upload(&self, image_id: &str, store: &str) -> Result<Option<String>> {
        let w = Work {
            id: uuid::Uuid::new_v4().to_string(),
            kind: UPLOAD.into(),
            image_id: Some(image_id.into()),
            node: self.node.clone(),
            lease_until: self.until(),
            attempts: 0,
            payload: serde_json::json!({ "store": store }),
        };
        Ok(self.db.begin_upload(&w).await?.then_some(w.id))
    }

    /// Stops renewing the lease of `work`, whose end this node could not record (the database
    /// went away, perhaps mid-commit): once it runs out, the undo (by any node) keeps the data
    /// if the image records it, else removes it and returns the image to `queued`.
    pub fn give_up(&self, work: &str) {
        tracing::warn!(work, node = %self.node, "upload's end not recorded; its lease will run out and the upload be settled");
        self.given_up
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(work.to_string());
    }

    /// Ends an upload that did not finish, whose partial data is already gone: the image goes
    /// back to `queued`, unless another upload holds it now.
    pub async fn abandon_upload(&self, image_id: &str, work: &str) -> Result<bool> {
        self.db
            .abandon_upload(image_id, work, &self.node, now_ms())
            .await
    }

    /// Removes the data of a location the image `image_id` no longer records (removed from
    /// it, an upload undone, the image deleted). If the store fails, the removal becomes work
    /// that any node tries again, a lease later, until the data is gone: it is not left in the
    /// store with nothing pointing to it.
    pub async fn delete_data(&self, image_id: &str, loc: Location) {
        if let Err(e) = self.stores.delete(&loc).await {
            self.delete_later(image_id, loc, &e.to_string()).await;
        }
    }

    /// Records that the data of `loc`, whose removal failed with `error`, is to be removed a
    /// lease from now by any node, unless an image still records it then.
    pub async fn delete_later(&self, image_id: &str, loc: Location, error: &str) {
        let w = Work {
            id: uuid::Uuid::new_v4().to_string(),
            kind: DELETE.into(),
            image_id: Some(image_id.into()),
            // Held by no node (no heartbeat renews it): whichever looks first once it is due.
            node: String::new(),
            lease_until: self.until(),
            attempts: 0,
            payload: serde_json::json!({ "url": loc.url, "metadata": loc.metadata }),
        };
        match self.db.add_work(&w).await {
            Ok(()) => {
                tracing::warn!(image_id, location = %loc.url, error, work = %w.id, "could not remove image data; will try again unless an image records it")
            }
            Err(db) => {
                tracing::error!(image_id, location = %loc.url, error, db_error = %db, "could not remove image data, nor record it for later: it stays in the store")
            }
        }
    }

    /// Before this node serves: deals with what it held before it restarted (its rows carry
    /// its name), at once rather than when their leases run out.
    pub async fn startup(&self) {
        if let Err(e) = self.reclaim_round(true).await {
            tracing::warn!(node = %self.node, error = %e, "could not look for work left by this node's previous run");
        }
    }

    /// Renews this node's leases, then deals with work whose lease ran out, for ever.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(engine.scan_period());
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let except: Vec<String> = engine
                    .given_up
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .cloned()
                    .collect();
                if let Err(e) = engine
                    .db
                    .renew_work(&engine.node, engine.until(), &except)
                    .await
                {
                    tracing::warn!(node = %engine.node, error = %e, "could not renew this node's leases");
                }
                if let Err(e) = engine.reclaim_round(false).await {
                    tracing::warn!(node = %engine.node, error = %e, "could not look for abandoned work");
                }
            }
        })
    }

    /// Hands every lease this node holds back (on shutdown): other nodes take the work at once.
    pub async fn release(&self) {
        // Stopped first, so that nothing this node does meets what the next holder does.
        let jobs: Vec<_> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for (work, job) in jobs {
            tracing::warn!(work = %work, node = %self.node, "stopping: work interrupted, handed over");
            job.abort();
        }
        match self.db.release_work(&self.node).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(node = %self.node, count = n, "stopping: leases handed back to the other nodes")
            }
            Err(e) => {
                tracing::warn!(node = %self.node, error = %e, "could not hand leases back; they will run out")
            }
        }
    }

    /// One look for abandoned work; `restarted`: this node's own rows from a previous run too.
    pub async fn reclaim_round(&self, restarted: bool) -> Result<()> {
        let at = now_ms();
        let mine = restarted.then_some(self.node.as_str());
        let mut found = self.db.abandoned_work(at, mine, 20).await?;
        // Uploads first: a task waits for the undoing of the upload it was doing.
        found.sort_by_key(|w| w.kind != UPLOAD);
        for w in found {
            if !self.db.claim_work(&w, &self.node, at, self.until()).await? {
                continue; // Another node was quicker, or the holder renewed meanwhile.
            }
            let stale_ms = at - w.lease_until;
            tracing::warn!(
                work = %w.id,
                kind = %w.kind,
                image_id = w.image_id.as_deref().unwrap_or(""),
                from_node = %w.node,
                node = %self.node,
                lease_expired_ms_ago = stale_ms,
                attempts = w.attempts + 1,
                "reclaiming abandoned work"
            );
            let done = match w.kind.as_str() {
                UPLOAD => self.undo_upload(&w).await,
                DELETE => self.retry_delete(&w).await,
                TASK => match self.runner.get() {
                    Some(r) => r.resume(w.clone()).await,
                    None => Ok(false),
                },
                other => {
                    tracing::error!(work = %w.id, kind = other, "unknown kind of work; dropped");
                    self.db.delete_work(&w.id, &self.node).await.map(|_| true)
                }
            };
            // Out of this node's hands (its heartbeat would keep it for ever): work that must
            // wait for other work is offered again at the next look; work that failed, a
            // lease from now.
            let again = match done {
                Ok(true) => None,
                Ok(false) => Some(now_ms() + self.scan_period().as_millis() as i64),
                Err(e) => {
                    tracing::warn!(work = %w.id, error = %e, "reclaimed work failed; will retry");
                    Some(self.until() + self.backoff(&w))
                }
            };
            if let Some(at) = again {
                self.db.postpone_work(&w.id, &self.node, at).await?;
            }
        }
        Ok(())
    }

    /// How much later than a lease failed work is tried again: a removal the store keeps
    /// refusing (an RBD snapshot with clones) is tried less and less often, at most hourly.
    fn backoff(&self, w: &Work) -> i64 {
        if w.kind != DELETE {
            return 0;
        }
        let lease = self.lease.as_millis() as i64;
        (lease << w.attempts.clamp(0, 7)).min(3_600_000) - lease
    }

    /// Data whose removal failed before: removed now, unless an image records it (still, or
    /// again: a location added back) or an upload of the image is under way (it may be
    /// writing under the same name). Whether it is done.
    async fn retry_delete(&self, w: &Work) -> Result<bool> {
        let loc = Location {
            url: w.payload["url"].as_str().unwrap_or_default().to_string(),
            metadata: w.payload["metadata"].clone(),
        };
        let image_id = w.image_id.as_deref().unwrap_or("");
        if self.db.other_live_upload(image_id, &w.id, now_ms()).await? {
            return Ok(false);
        }
        if self.db.location_recorded(&loc.url).await? {
            tracing::info!(work = %w.id, image_id, location = %loc.url, "an image records the data: kept");
            self.db.delete_work(&w.id, &self.node).await?;
            return Ok(true);
        }
        if !loc.url.is_empty() {
            self.stores.delete(&loc).await?;
        }
        self.db.delete_work(&w.id, &self.node).await?;
        tracing::warn!(
            work = %w.id,
            image_id,
            location = %loc.url,
            attempts = w.attempts + 1,
            "image data whose removal had failed removed"
        );
        Ok(true)
    }

    /// An upload whose node died: the partial data leaves the store, the image goes back to
    /// `queued`. Unless another upload of the image is live (it may be writing under the same
    /// name in a store that writes under final names): then later. Whether it is done.
    async fn undo_upload(&self, w: &Work) -> Result<bool> {
        let Some(image_id) = w.image_id.as_deref() else {
            self.db.delete_work(&w.id, &self.node).await?;
            return Ok(true);
        };
        if self.db.other_live_upload(image_id, &w.id, now_ms()).await? {
            tracing::info!(work = %w.id, image_id, "another upload of the image is under way; undoing later");
            return Ok(false);
        }
        let keep: Vec<Location> = match self.db.get_image(image_id).await? {
            Some(img) => img.locations,
            None => Vec::new(),
        };
        let store_id = w.payload["store"].as_str().unwrap_or_default();
        match self.stores.get(store_id) {
            Some(entry) => {
                let store = entry.store.clone();
                let (image, attempt) = (image_id.to_string(), w.id.clone());
                blocking(store.timeout(), move || {
                    store.remove_partial(&image, &attempt, &keep)
                })
                .await?;
            }
            None => {
                tracing::error!(work = %w.id, store = store_id, "the store of an abandoned upload is not configured here; its partial data stays")
            }
        }
        let returned = self.abandon_upload(image_id, &w.id).await?;
        self.given_up
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&w.id);
        tracing::warn!(
            work = %w.id,
            image_id,
            from_node = %w.node,
            node = %self.node,
            returned_to_queued = returned,
            "abandoned upload undone: partial data removed"
        );
        Ok(true)
    }
}
