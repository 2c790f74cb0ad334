//! Where image bytes live. A store hands out blocking writers and readers; callers run them on
//! their own threads, off the async runtime, so a slow disk or a hung NFS mount never stalls it.

pub mod file;
pub mod http;
#[cfg(feature = "rbd")]
pub mod rbd;

use std::io::Read;

use std::sync::Arc;

use crate::domain::image::Location;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("There is not enough disk space on the image storage media.")]
    Full,
    #[error("Permission to write image storage media denied.")]
    WriteDenied,
    #[error("Image data not found in the store: {0}")]
    NotFound(String),
    #[error("store error: {0}")]
    Io(#[from] std::io::Error),
    /// The data is in use (RBD clones of its snapshot): it cannot be deleted now.
    #[error("{0}")]
    InUse(String),
    /// Data under the image's name is there already (glance_store's `Duplicate`).
    #[error("{0}")]
    Duplicate(String),
    #[error("The store is read-only.")]
    ReadOnly,
    #[error("The image store did not answer within {0:?}.")]
    Timeout(std::time::Duration),
    /// The backend cannot be reached (a Ceph cluster that does not answer).
    #[error("The image store is unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Other(String),
}

/// Maps an I/O error the way glance_store's drivers classify them.
pub fn classify_io(e: std::io::Error) -> StoreError {
    match e.raw_os_error() {
        Some(28) | Some(122) => StoreError::Full, // ENOSPC, EDQUOT
        Some(13) | Some(1) | Some(30) => StoreError::WriteDenied, // EACCES, EPERM, EROFS
        _ => StoreError::Io(e),
    }
}

/// An image being written. Dropping it without `commit` removes what was written.
pub trait ImageWriter: Send {
    fn write(&mut self, buf: &[u8]) -> Result<(), StoreError>;
    /// Makes the data durable and visible under the image's name; returns its location.
    fn commit(self: Box<Self>) -> Result<Location, StoreError>;
}

pub trait Store: Send + Sync {
    /// The URL scheme of the locations this store owns (`file`, `rbd`, ...).
    fn scheme(&self) -> &'static str;
    /// Whether a location is this store's (its scheme, and its cluster, pool or directory).
    fn owns(&self, location: &Location) -> bool;
    /// How long one blocking call may take before the request fails (None: no limit).
    fn timeout(&self) -> Option<std::time::Duration>;
    /// Starts writing an image; `size` is the expected size when the client declared it.
    /// `attempt` names this write (the upload's work id): what another node needs to find and
    /// remove the partial data if this one dies (`remove_partial`).
    fn begin_write(
        &self,
        image_id: &str,
        size: Option<u64>,
        attempt: &str,
    ) -> Result<Box<dyn ImageWriter>, StoreError>;
    /// Removes what an unfinished write `attempt` of `image_id` left, from any node: nothing if
    /// it left nothing. `keep`: the image's recorded locations, never removed (a store that
    /// writes under the final name must not remove data an upload finished after all).
    fn remove_partial(
        &self,
        _image_id: &str,
        _attempt: &str,
        _keep: &[Location],
    ) -> Result<(), StoreError> {
        Ok(())
    }
    /// A reader positioned at `offset`.
    fn open_read(
        &self,
        location: &Location,
        offset: u64,
    ) -> Result<Box<dyn Read + Send>, StoreError>;
    /// A location's data from `offset` as buffers, for downloads: by default `open_read`'s,
    /// read into large buffers; stores whose reads land in buffers of their own hand those out
    /// instead of copies.
    fn open_chunks(&self, location: &Location, offset: u64) -> Result<Box<dyn Chunks>, StoreError> {
        let reader = self.open_read(location, offset)?;
        Ok(Box::new(ReadChunks {
            reader,
            size: READ_CHUNK,
        }))
    }
    /// The file holding a location's data, for stores that have one (downloads then use
    /// sendfile); None for the others.
    fn open_file(&self, _location: &Location) -> Option<Result<std::fs::File, StoreError>> {
        None
    }
    fn delete(&self, location: &Location) -> Result<(), StoreError>;
    /// Properties for `/v2/info/stores/detail` known only at run time (an RBD cluster's fsid
    /// once connected).
    fn live_properties(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }
    /// Size of the data at a location of this store; an error if the location is not ours or
    /// holds nothing (how registered locations are checked).
    fn size(&self, location: &Location) -> Result<u64, StoreError>;
}

/// A configured store: its id (`enabled_backends`), settings shown by `/v2/info/stores`, and
/// the driver.
pub struct StoreEntry {
    pub id: String,
    pub kind: &'static str,
    pub weight: i64,
    pub description: Option<String>,
    /// Type-specific properties for `/v2/info/stores/detail`.
    pub properties: serde_json::Value,
    pub store: Arc<dyn Store>,
}

/// All configured stores; the default one first.
pub struct Stores {
    entries: Vec<StoreEntry>,
    /// `enabled_backends` is set: ids are shown, chosen and recorded in location metadata.
    pub multi: bool,
}

impl Stores {
    pub fn new(entries: Vec<StoreEntry>, multi: bool) -> Self {
        Stores { entries, multi }
    }

    pub fn default_store(&self) -> &StoreEntry {
        &self.entries[0]
    }

    pub fn entries(&self) -> &[StoreEntry] {
        &self.entries
    }

    pub fn get(&self, id: &str) -> Option<&StoreEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// The store holding a location: the one its metadata names, else the first that owns it.
    pub fn for_location(&self, loc: &Location) -> Option<&StoreEntry> {
        if let Some(id) = loc.metadata.get("store").and_then(|v| v.as_str())
            && let Some(e) = self.get(id)
        {
            return Some(e);
        }
        self.entries.iter().find(|e| e.store.owns(loc))
    }

    /// Removes a location's data from the store holding it (none configured: nothing to do).
    pub async fn delete(&self, loc: &Location) -> Result<(), StoreError> {
        let Some(entry) = self.for_location(loc) else {
            tracing::warn!(location = %loc.url, "no configured store holds this location");
            return Ok(());
        };
        let store = entry.store.clone();
        let l = loc.clone();
        blocking(store.timeout(), move || store.delete(&l)).await
    }
}

/// Runs a blocking store call on the blocking pool, failing with `Timeout` if it takes longer
/// than `limit`: a hung mount fails the request instead of stalling the server. (The stuck
/// thread itself cannot be cancelled; it finishes or stays blocked in the kernel.)
pub async fn blocking<T: Send + 'static>(
    limit: Option<std::time::Duration>,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let joined = within(limit, tokio::task::spawn_blocking(f)).await?;
    joined.map_err(|e| StoreError::Other(format!("store task failed: {e}")))?
}

/// Awaits `f`, failing with `Timeout` if it takes longer than `limit` (None: no limit).
pub async fn within<F: std::future::Future>(
    limit: Option<std::time::Duration>,
    f: F,
) -> Result<F::Output, StoreError> {
    match limit {
        Some(l) => tokio::time::timeout(l, f)
            .await
            .map_err(|_| StoreError::Timeout(l)),
        None => Ok(f.await),
    }
}

/// Download buffer size for readers that fill the caller's buffers: large reads and few, large
/// socket writes.
const READ_CHUNK: usize = 1 << 20;

/// Data handed out as the buffers it was read into.
pub trait Chunks: Send {
    /// The next buffer; None at the end.
    fn next_chunk(&mut self) -> std::io::Result<Option<bytes::Bytes>>;
}

/// Any reader as chunks of `size` bytes (the last one shorter): each read into a new buffer.
pub struct ReadChunks<R> {
    pub reader: R,
    pub size: usize,
}

impl<R: Read + Send> Chunks for ReadChunks<R> {
    fn next_chunk(&mut self) -> std::io::Result<Option<bytes::Bytes>> {
        // Fills a whole buffer unless the data ends, so chunks stay large; read_to_end writes
        // into spare capacity without zeroing it first.
        let mut buf = Vec::with_capacity(self.size);
        (&mut self.reader)
            .take(self.size as u64)
            .read_to_end(&mut buf)?;
        Ok((!buf.is_empty()).then(|| buf.into()))
    }
}

/// The first `left` bytes of `inner`'s chunks.
pub struct Limited {
    pub inner: Box<dyn Chunks>,
    pub left: u64,
}

impl Chunks for Limited {
    fn next_chunk(&mut self) -> std::io::Result<Option<bytes::Bytes>> {
        if self.left == 0 {
            return Ok(None);
        }
        let Some(mut c) = self.inner.next_chunk()? else {
            return Ok(None);
        };
        c.truncate(self.left.min(c.len() as u64) as usize);
        self.left -= c.len() as u64;
        Ok(Some(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A part ending inside a chunk: the chunks are cut there, and nothing is read past it.
    #[test]
    fn limited_chunks_stop_at_the_part() {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let inner = Box::new(ReadChunks {
            reader: std::io::Cursor::new(data.clone()),
            size: 4096,
        });
        let mut part = Limited { inner, left: 5000 };
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        while let Some(c) = part.next_chunk().unwrap() {
            sizes.push(c.len());
            got.extend_from_slice(&c);
        }
        assert_eq!(sizes, [4096, 904]);
        assert_eq!(got, &data[..5000]);
        let whole = Box::new(ReadChunks {
            reader: std::io::Cursor::new(data.clone()),
            size: 4096,
        });
        let mut all = Limited {
            inner: whole,
            left: u64::MAX,
        };
        let n: usize = std::iter::from_fn(|| all.next_chunk().unwrap())
            .map(|c| c.len())
            .sum();
        assert_eq!(n, 10_000);
    }

    #[tokio::test]
    async fn a_hung_call_times_out() {
        let t = Instant::now();
        let r = blocking(Some(Duration::from_millis(100)), || {
            std::thread::sleep(Duration::from_secs(2));
            Ok(())
        })
        .await;
        assert!(matches!(r, Err(StoreError::Timeout(_))));
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
