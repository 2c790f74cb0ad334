//! The upload pipeline: bytes from the client are batched into large buffers and fanned out to
//! the hashers (MD5 `checksum` and `os_hash_value`) and to the store writer, each on its own
//! blocking thread, so hashing overlaps I/O. Bounded channels give backpressure: memory per
//! upload stays at a few buffers whatever the image size, and a budget shared by all uploads
//! bounds the total.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc};
use tokio::task::JoinHandle;

use crate::digest::Hasher;
use crate::domain::image::Location;
use crate::format::{Inspection, Inspector};
use crate::store::{ImageWriter, StoreError, within};

/// Body chunks are handed to the hashers and the writer in batches of at least this many bytes:
/// every hand-off wakes three threads, and on a small VM each wake-up costs an inter-processor
/// interrupt. hyper yields reads of up to ~400 KiB, so a batch is two or three of them.
const BATCH: usize = 1 << 20;
/// Chunks smaller than this are copied together (a chunked upload may come in pieces of a few
/// KiB); larger ones join the batch as they are, without a copy.
const SMALL: usize = 64 << 10;
/// Batches queued per consumer: 4 absorbs the scheduling jitter of three busy threads on two
/// cores.
const DEPTH: usize = 4;
/// Bytes held by upload pipelines (being gathered, or queued for or in the hands of the hashers
/// and writers) across all uploads, in units of `UNIT`: concurrent uploads share this rather
/// than each holding `DEPTH` buffers, so memory stays bounded however many clients upload at
/// once. An upload waiting for budget stops reading its body (TCP backpressure). 32 MiB: a
/// lone upload needs about 6; 50 concurrent 100 MiB uploads (as benches/bench.sh sends them)
/// took the same time as with 64 and peaked at 110-122 MiB of RSS instead of 118-136.
const BUDGET_UNITS: usize = 512;
const UNIT: usize = 64 << 10;

static BUDGET: std::sync::LazyLock<Arc<Semaphore>> =
    std::sync::LazyLock::new(|| Arc::new(Semaphore::new(BUDGET_UNITS)));

/// A batch shared by the consumers; its share of the budget returns when the last one is done.
struct Chunk {
    pieces: Vec<Bytes>,
    _budget: Option<OwnedSemaphorePermit>,
}

type Shared = Arc<Chunk>;

fn spawn_hasher(algo: &str) -> Result<(mpsc::Sender<Shared>, JoinHandle<String>), StoreError> {
    let (tx, mut rx) = mpsc::channel::<Shared>(DEPTH);
    let mut h = Hasher::new(algo)?;
    let handle = tokio::task::spawn_blocking(move || {
        while let Some(c) = rx.blocking_recv() {
            for p in &c.pieces {
                h.update(p);
            }
        }
        h.hex()
    });
    Ok((tx, handle))
}

/// The writer ended without an error of its own to report.
fn writer_stopped() -> IngestError {
    IngestError::Store(StoreError::Other("writer stopped".into()))
}

/// The writer task: the location once committed (None: not committed).
type WriterHandle = JoinHandle<Result<Option<Location>, StoreError>>;

/// Writes everything received, then commits when the channel closes normally. If the sender is
/// dropped after `abort` (or the task is cancelled), the writer is dropped and its bytes removed.
fn spawn_writer(mut writer: Box<dyn ImageWriter>) -> (mpsc::Sender<WriterMsg>, WriterHandle) {
    let (tx, mut rx) = mpsc::channel::<WriterMsg>(DEPTH);
    let handle = tokio::task::spawn_blocking(move || {
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                WriterMsg::Data(c) => {
                    for p in &c.pieces {
                        writer.write(p)?;
                    }
                }
                WriterMsg::Commit => return writer.commit().map(Some),
            }
        }
        // Sender gone without Commit: abandoned upload.
        Ok(None)
    });
    (tx, handle)
}

enum WriterMsg {
    Data(Shared),
    Commit,
}

fn budget_closed() -> IngestError {
    IngestError::Store(StoreError::Other("upload budget closed".into()))
}

pub struct Digests {
    pub size: u64,
    pub checksum: String,
    pub os_hash_algo: String,
    pub os_hash_value: String,
}

/// Why the pipeline stopped early.
#[derive(Debug)]
pub enum IngestError {
    /// The source failed (client went away, body error): carries its message.
    Source(String),
    /// More than `limit` bytes arrived.
    TooLarge,
    Store(StoreError),
    /// The data failed format inspection (message for the client).
    Rejected(String),
}

/// Runs one upload. `next` yields the body's chunks; nothing is committed unless all of them
/// arrive and the total is at most `limit`.
pub struct Pipeline {
    md5: (mpsc::Sender<Shared>, JoinHandle<String>),
    multi: (mpsc::Sender<Shared>, JoinHandle<String>),
    /// The handle is taken when the writer's error is read, so it is never awaited twice (a
    /// panic: "JoinHandle polled after completion").
    writer: (mpsc::Sender<WriterMsg>, Option<WriterHandle>),
    algo: String,
    /// The batch being gathered, and `small` chunks being copied together.
    pieces: Vec<Bytes>,
    pending: usize,
    small: BytesMut,
    /// The budget covering `pending`.
    held: Option<OwnedSemaphorePermit>,
    size: u64,
    limit: u64,
    inspector: Option<Inspector>,
    timeout: Option<std::time::Duration>,
    _live: crate::memory::Transfer,
}

impl Pipeline {
    /// `inspect`: run format inspection on the stream (Glance does for `container_format=bare`).
    /// `timeout`: how long the store writer may take to accept a buffer or commit.
    pub fn new(
        writer: Box<dyn ImageWriter>,
        algo: &str,
        limit: u64,
        inspect: bool,
        timeout: Option<std::time::Duration>,
    ) -> Result<Self, StoreError> {
        Ok(Pipeline {
            md5: spawn_hasher("md5")?,
            multi: spawn_hasher(algo)?,
            writer: {
                let (tx, handle) = spawn_writer(writer);
                (tx, Some(handle))
            },
            algo: algo.to_string(),
            pieces: Vec::new(),
            pending: 0,
            small: BytesMut::new(),
            held: None,
            size: 0,
            limit,
            inspector: inspect.then(Inspector::default),
            timeout,
            _live: crate::memory::Transfer::begin(),
        })
    }

    /// Bytes pushed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub async fn push(&mut self, chunk: Bytes) -> Result<(), IngestError> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(IngestError::TooLarge);
        }
        if let Some(i) = self.inspector.as_mut() {
            i.feed(&chunk);
        }
        self.reserve(chunk.len()).await?;
        self.pending += chunk.len();
        if chunk.len() < SMALL {
            self.small.extend_from_slice(&chunk);
            if self.small.len() >= SMALL {
                self.pieces.push(self.small.split().freeze());
            }
        } else {
            if !self.small.is_empty() {
                self.pieces.push(self.small.split().freeze());
            }
            self.pieces.push(chunk);
        }
        if self.pending >= BATCH {
            self.dispatch().await?;
        }
        Ok(())
    }

    /// Takes budget for `more` bytes on top of the gathered ones. When there is none to spare,
    /// the gathered batch goes out first: an upload never waits while holding budget, so uploads
    /// cannot hold parts of it and wait for each other, and the consumers, which need none,
    /// always give it back. Waiting longer than the store timeout fails the upload (503).
    async fn reserve(&mut self, more: usize) -> Result<(), IngestError> {
        let need = |pending: usize, held: usize| {
            ((pending + more).div_ceil(UNIT).saturating_sub(held)).min(BUDGET_UNITS) as u32
        };
        let n = need(
            self.pending,
            self.held.as_ref().map_or(0, |p| p.num_permits()),
        );
        if n == 0 {
            return Ok(());
        }
        let permit = match BUDGET.clone().try_acquire_many_owned(n) {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => return Err(budget_closed()),
            Err(TryAcquireError::NoPermits) => {
                self.dispatch().await?;
                let n = need(0, 0);
                let acquire = BUDGET.clone().acquire_many_owned(n);
                let limit = self.timeout.unwrap_or_default();
                let acquired = within(self.timeout, acquire).await.map_err(|_| {
                    IngestError::Store(StoreError::Unavailable(format!(
                        "upload buffers stayed full for {limit:?}"
                    )))
                })?;
                acquired.map_err(|_| budget_closed())?
            }
        };
        match self.held.as_mut() {
            Some(h) => h.merge(permit),
            None => self.held = Some(permit),
        }
        Ok(())
    }

    /// Sends the gathered batch (if any) to the writer and the hashers, with its budget.
    async fn dispatch(&mut self) -> Result<(), IngestError> {
        if !self.small.is_empty() {
            self.pieces.push(self.small.split().freeze());
        }
        self.pending = 0;
        let budget = self.held.take();
        if self.pieces.is_empty() {
            return Ok(());
        }
        let b = Arc::new(Chunk {
            pieces: std::mem::take(&mut self.pieces),
            _budget: budget,
        });
        // A closed writer channel means the writer failed: its error comes from join. A writer
        // stuck longer than the store timeout (a hung NFS mount) fails the upload.
        if self.send_to_writer(WriterMsg::Data(b.clone())).await? {
            return Err(self.writer_error().await);
        }
        let _ = self.md5.0.send(b.clone()).await;
        let _ = self.multi.0.send(b).await;
        Ok(())
    }

    /// Abandons the upload and waits (within the store timeout) until the writer has removed
    /// what it wrote, so that an error response is only sent once nothing is left behind.
    pub async fn abort(self) {
        let Pipeline {
            md5,
            multi,
            writer,
            timeout,
            ..
        } = self;
        drop((md5.0, multi.0, writer.0));
        // None: already joined, its error was the upload's.
        if let Some(handle) = writer.1 {
            let _ = within(timeout, handle).await;
        }
    }

    /// Sends to the writer within the store timeout; true if the writer has stopped.
    async fn send_to_writer(&mut self, msg: WriterMsg) -> Result<bool, IngestError> {
        let sent = within(self.timeout, self.writer.0.send(msg))
            .await
            .map_err(IngestError::Store)?;
        Ok(sent.is_err())
    }

    async fn writer_error(&mut self) -> IngestError {
        let Some(handle) = self.writer.1.take() else {
            return writer_stopped();
        };
        match handle.await {
            Ok(Err(e)) => IngestError::Store(e),
            Ok(Ok(_)) => writer_stopped(),
            Err(e) => IngestError::Store(StoreError::Other(format!("writer panicked: {e}"))),
        }
    }

    /// Flushes, asks `accept` about the inspected data (it returns the virtual size or refuses),
    /// then commits the store write and returns the digests, virtual size and location. Nothing
    /// is committed if `accept` refuses.
    pub async fn finish(
        mut self,
        accept: impl FnOnce(Option<&Inspection>) -> Result<Option<u64>, IngestError>,
    ) -> Result<(Digests, Option<u64>, Location), IngestError> {
        self.dispatch().await?;
        let inspection = self.inspector.take().map(Inspector::finish);
        let virtual_size = match accept(inspection.as_ref()) {
            Ok(v) => v,
            Err(e) => {
                self.abort().await;
                return Err(e);
            }
        };
        if self.send_to_writer(WriterMsg::Commit).await? {
            return Err(self.writer_error().await);
        }
        let Pipeline {
            md5,
            multi,
            writer,
            algo,
            size,
            timeout,
            ..
        } = self;
        drop(md5.0);
        drop(multi.0);
        drop(writer.0);
        let Some(handle) = writer.1 else {
            return Err(writer_stopped());
        };
        let committed = within(timeout, handle).await.map_err(IngestError::Store)?;
        let location = match committed {
            Ok(Ok(Some(loc))) => loc,
            Ok(Ok(None)) => {
                return Err(IngestError::Store(StoreError::Other(
                    "not committed".into(),
                )));
            }
            Ok(Err(e)) => return Err(IngestError::Store(e)),
            Err(e) => return Err(IngestError::Store(StoreError::Other(e.to_string()))),
        };
        let join = |r: Result<String, tokio::task::JoinError>| {
            r.map_err(|e| IngestError::Store(StoreError::Other(format!("hasher failed: {e}"))))
        };
        let checksum = join(md5.1.await)?;
        let os_hash_value = join(multi.1.await)?;
        Ok((
            Digests {
                size,
                checksum,
                os_hash_algo: algo,
                os_hash_value,
            },
            virtual_size,
            location,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Keeps what it is given, in order, and hands it over at commit.
    struct MemWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl ImageWriter for MemWriter {
        fn write(&mut self, b: &[u8]) -> Result<(), StoreError> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(())
        }
        fn commit(self: Box<Self>) -> Result<Location, StoreError> {
            Ok(Location {
                url: "mem://".into(),
                metadata: serde_json::json!({}),
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_of_any_size_arrive_whole_and_in_order() {
        // Small chunks copied together, large ones passed as they are, batches cut anywhere.
        let sizes = [
            10,
            70_000,
            5,
            65_535,
            1,
            3 << 20,
            3,
            64 << 10,
            900_000,
            7,
            1 << 20,
        ];
        let mut all = Vec::new();
        let kept = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut pipe = Pipeline::new(
            Box::new(MemWriter(kept.clone())),
            "sha512",
            u64::MAX,
            false,
            None,
        )
        .unwrap();
        for (i, n) in sizes.into_iter().enumerate() {
            let chunk: Vec<u8> = (0..n).map(|j| (j * 31 + i * 7) as u8).collect();
            all.extend_from_slice(&chunk);
            pipe.push(Bytes::from(chunk)).await.unwrap();
        }
        let (digests, _, _) = pipe.finish(|_| Ok(None)).await.unwrap();
        assert!(*kept.lock().unwrap() == all);
        assert_eq!(digests.size, all.len() as u64);
        let md5 = openssl::hash::hash(openssl::hash::MessageDigest::md5(), &all).unwrap();
        let sha = openssl::hash::hash(openssl::hash::MessageDigest::sha512(), &all).unwrap();
        assert_eq!(digests.checksum, hex::encode(&*md5));
        assert_eq!(digests.os_hash_value, hex::encode(&*sha));
    }

    /// A store that fills up at its first write.
    struct FullWriter;

    impl ImageWriter for FullWriter {
        fn write(&mut self, _: &[u8]) -> Result<(), StoreError> {
            Err(StoreError::Full)
        }
        fn commit(self: Box<Self>) -> Result<Location, StoreError> {
            unreachable!("never committed")
        }
    }

    /// The writer's error reaches the caller, and abandoning the upload afterwards (as the
    /// handler does) is quiet: it used to await the finished writer again and panic, so the
    /// client saw a reset connection instead of 413.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_writer_is_reported_once_and_abort_is_quiet() {
        let mut pipe =
            Pipeline::new(Box::new(FullWriter), "sha512", u64::MAX, false, None).unwrap();
        let mut failed = None;
        for _ in 0..64 {
            if let Err(e) = pipe.push(Bytes::from(vec![1u8; 1 << 20])).await {
                failed = Some(e);
                break;
            }
        }
        assert!(
            matches!(failed, Some(IngestError::Store(StoreError::Full))),
            "{failed:?}"
        );
        pipe.abort().await;
    }

    /// A store whose first write hangs for a while (a dead NFS mount).
    struct StuckWriter(bool);

    impl ImageWriter for StuckWriter {
        fn write(&mut self, _: &[u8]) -> Result<(), StoreError> {
            if !std::mem::replace(&mut self.0, true) {
                std::thread::sleep(Duration::from_millis(1500));
            }
            Ok(())
        }
        fn commit(self: Box<Self>) -> Result<Location, StoreError> {
            Err(StoreError::Other("never".into()))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stuck_writer_fails_the_upload_within_the_store_timeout() {
        let limit = Duration::from_millis(200);
        let mut pipe = Pipeline::new(
            Box::new(StuckWriter(false)),
            "sha512",
            u64::MAX,
            false,
            Some(limit),
        )
        .unwrap();
        let started = Instant::now();
        let mut result = Ok(());
        for _ in 0..64 {
            result = pipe.push(Bytes::from(vec![1u8; 1 << 20])).await;
            if result.is_err() {
                break;
            }
        }
        assert!(
            matches!(result, Err(IngestError::Store(StoreError::Timeout(_)))),
            "{result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        pipe.abort().await;
    }

    /// Writes slowly, so that the shared budget runs out.
    struct SlowWriter(usize);

    impl ImageWriter for SlowWriter {
        fn write(&mut self, b: &[u8]) -> Result<(), StoreError> {
            std::thread::sleep(Duration::from_millis(2));
            self.0 += b.len();
            Ok(())
        }
        fn commit(self: Box<Self>) -> Result<Location, StoreError> {
            Ok(Location {
                url: format!("mem://{}", self.0),
                metadata: serde_json::json!({}),
            })
        }
    }

    /// More uploads than the budget has room for, each gathering part of a batch, all finish:
    /// none waits for budget while holding some.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uploads_beyond_the_budget_all_finish() {
        let uploads = 2 * BUDGET_UNITS * UNIT / BATCH;
        let chunk = Bytes::from(vec![3u8; 200 << 10]);
        let tasks: Vec<_> = (0..uploads)
            .map(|_| {
                let chunk = chunk.clone();
                tokio::spawn(async move {
                    let mut pipe =
                        Pipeline::new(Box::new(SlowWriter(0)), "md5", u64::MAX, false, None)
                            .map_err(IngestError::Store)?;
                    for _ in 0..16 {
                        pipe.push(chunk.clone()).await?;
                    }
                    pipe.finish(|_| Ok(None)).await
                })
            })
            .collect();
        let all = tokio::time::timeout(
            Duration::from_secs(60),
            futures_util::future::join_all(tasks),
        )
        .await
        .expect("uploads stalled waiting for budget");
        for r in all {
            let (digests, _, location) = r.unwrap().unwrap();
            assert_eq!(digests.size, 16 * (200 << 10));
            assert_eq!(location.url, format!("mem://{}", 16 * (200 << 10)));
        }
    }
}
