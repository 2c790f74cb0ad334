//! The Ceph RBD store, as glance_store's rbd driver behaves: one RBD image per Glance image,
//! named by its id, with a protected snapshot `snap` that Nova and Cinder clone from; the
//! location is `rbd://<fsid>/<pool>/<id>/snap`.
//!
//! librados comes from the `ceph` crate's FFI, librbd from `ffi.rs` (and, for downloads, its
//! C++ API through `zerocopy.cc`). One cluster connection and one I/O context are shared by all
//! requests; every call blocks and runs on the blocking pool (see `store::blocking`).

mod ffi;
mod zerocopy;

use std::collections::HashSet;
use std::ffi::CString;
use std::io::Read;
use std::os::raw::c_int;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use ceph::rados::{
    rados_cluster_fsid, rados_conf_read_file, rados_conf_set, rados_connect, rados_create,
    rados_ioctx_create, rados_ioctx_destroy, rados_shutdown, rados_t,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// What Python's `urllib.parse.quote(s, '')` leaves alone: letters, digits and `_.-~`.
const URL_PART: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

use super::{ImageWriter, Store, StoreError};
use crate::domain::image::Location;
use ffi::*;

const SNAP: &str = "snap";
/// Growth step cap when the size is not known up front (glance_store's 8 GiB).
const MAX_GROW: u64 = 8 << 30;

#[derive(Clone)]
pub struct RbdOptions {
    pub pool: String,
    pub user: String,
    pub conf: String,
    pub chunk_mib: u64,
    pub connect_timeout: i64,
    pub thin: bool,
}

/// The cluster handle and the pool's I/O context, torn down in the right order.
struct Conn {
    cluster: rados_t,
    io: rados_ioctx_t,
    fsid: String,
}

// SAFETY: librados handles are thread-safe; the pointers are only freed in Drop.
unsafe impl Send for Conn {}
unsafe impl Sync for Conn {}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: created by rados_ioctx_create / rados_create and not freed elsewhere; the
        // I/O context goes before the cluster it belongs to.
        unsafe {
            rados_ioctx_destroy(self.io);
            rados_shutdown(self.cluster);
        }
    }
}

/// The cluster connection is made on first use, not at start-up (as glance_store does): an API
/// node restarted while Ceph is unreachable still serves everything else, and its RBD calls
/// fail with 503 until the cluster is back. One connection is then shared by all requests.
pub struct RbdStore {
    opts: Arc<RbdOptions>,
    conn: std::sync::Mutex<Link>,
    /// Set once connected; read without the lock (which a connect attempt holds for up to
    /// rados_connect_timeout) because request handlers on the runtime ask for it.
    fsid: std::sync::OnceLock<String>,
    pool: String,
    order: c_int,
    chunk: u64,
    thin: bool,
}

fn cstr(s: &str) -> Result<CString, StoreError> {
    CString::new(s).map_err(|_| StoreError::Other(format!("{s:?} contains NUL")))
}

fn check(what: &str, rc: c_int) -> Result<(), StoreError> {
    if rc >= 0 {
        return Ok(());
    }
    Err(errno(what, -rc))
}

fn errno(what: &str, e: c_int) -> StoreError {
    match e {
        28 | 122 => StoreError::Full,           // ENOSPC, EDQUOT
        13 | 1 => StoreError::WriteDenied,      // EACCES, EPERM
        2 => StoreError::NotFound(what.into()), // ENOENT
        16 => StoreError::InUse(format!("{what}: the image is in use (EBUSY)")),
        _ => StoreError::Other(format!(
            "{what} failed: {}",
            std::io::Error::from_raw_os_error(e)
        )),
    }
}

impl Conn {
    /// Connects to the cluster and opens the pool; the error names what failed.
    fn open(o: &RbdOptions) -> Result<Conn, String> {
        let user = cstr(&o.user).map_err(|e| e.to_string())?;
        let conf = cstr(&o.conf).map_err(|e| e.to_string())?;
        let pool = cstr(&o.pool).map_err(|e| e.to_string())?;
        let mut cluster: rados_t = ptr::null_mut();
        // SAFETY: plain librados calls with valid NUL-terminated strings; on failure the handle
        // is shut down before returning.
        unsafe {
            let rc = rados_create(&mut cluster, user.as_ptr());
            if rc < 0 {
                return Err(format!(
                    "rados_create({}): {}",
                    o.user,
                    std::io::Error::from_raw_os_error(-rc)
                ));
            }
            let fail = |what: String, rc: c_int| {
                rados_shutdown(cluster);
                Err(format!(
                    "{what}: {}",
                    std::io::Error::from_raw_os_error(-rc)
                ))
            };
            let rc = rados_conf_read_file(cluster, conf.as_ptr());
            if rc < 0 {
                return fail(format!("rbd_store_ceph_conf {}", o.conf), rc);
            }
            if o.connect_timeout > 0 {
                let v = cstr(&o.connect_timeout.to_string()).map_err(|e| e.to_string())?;
                for opt in [
                    "rados_osd_op_timeout",
                    "rados_mon_op_timeout",
                    "client_mount_timeout",
                ] {
                    let k = cstr(opt).map_err(|e| e.to_string())?;
                    rados_conf_set(cluster, k.as_ptr(), v.as_ptr());
                }
            }
            let rc = rados_connect(cluster);
            if rc < 0 {
                return fail(
                    format!("cannot connect to Ceph as {} with {}", o.user, o.conf),
                    rc,
                );
            }
            let mut io: rados_ioctx_t = ptr::null_mut();
            let rc = rados_ioctx_create(cluster, pool.as_ptr(), &mut io);
            if rc < 0 {
                return fail(format!("rbd_store_pool {}", o.pool), rc);
            }
            // A full cluster or pool quota must fail the upload (413), not hang it: librados
            // otherwise pauses writes until there is room again.
            rados_set_pool_full_try(io);
            let mut conn = Conn {
                cluster,
                io,
                fsid: String::new(),
            };
            let mut buf = vec![0u8; 64];
            let n = rados_cluster_fsid(cluster, buf.as_mut_ptr().cast(), buf.len());
            if n < 0 {
                return Err(format!(
                    "cannot read the cluster fsid: {}",
                    std::io::Error::from_raw_os_error(-n)
                ));
            }
            buf.truncate(n as usize);
            conn.fsid = String::from_utf8_lossy(&buf)
                .trim_end_matches('\0')
                .to_string();
            Ok(conn)
        }
    }
}

/// The state of an RBD store's cluster connection.
enum Link {
    Idle,
    Up(Arc<Conn>),
    /// The last attempt failed, when and why.
    Down(std::time::Instant, String),
}

/// How long start-up waits for the first connection.
const STARTUP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a failed connection attempt is reported before the next one is made.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

impl RbdStore {
    /// The store, with a first connection attempt under way: start-up waits a few seconds for
    /// it, so that the log says whether the cluster answers, but never for longer.
    pub fn start(o: RbdOptions) -> Arc<RbdStore> {
        let chunk = o.chunk_mib.max(1) << 20;
        let store = RbdStore {
            pool: o.pool.clone(),
            order: chunk.trailing_zeros() as c_int,
            chunk,
            thin: o.thin,
            opts: Arc::new(o),
            conn: std::sync::Mutex::new(Link::Idle),
            fsid: std::sync::OnceLock::new(),
        };
        let store = Arc::new(store);
        let (tx, rx) = std::sync::mpsc::channel();
        let first = store.clone();
        std::thread::spawn(move || {
            let _ = tx.send(first.conn().map(|_| ()));
        });
        match rx.recv_timeout(STARTUP_WAIT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(pool = %store.pool, error = %e, "RBD store not connected yet; retrying on use");
            }
            Err(_) => {
                tracing::error!(pool = %store.pool, "RBD store not connected yet (still trying); RBD requests wait for it");
            }
        }
        store
    }

    /// The shared connection, made now if there is none yet. Blocking (up to
    /// rados_connect_timeout): call it from a blocking thread.
    fn conn(&self) -> Result<Arc<Conn>, StoreError> {
        // One attempt at a time: concurrent requests wait for it rather than each dial.
        let mut link = self
            .conn
            .lock()
            .map_err(|_| StoreError::Other("RBD connection state poisoned".into()))?;
        match &*link {
            Link::Up(c) => return Ok(c.clone()),
            // Requests queued behind a failed attempt fail at once instead of each waiting
            // out another connect timeout.
            Link::Down(at, why) if at.elapsed() < RETRY_AFTER => {
                return Err(StoreError::Unavailable(why.clone()));
            }
            _ => {}
        }
        match Conn::open(&self.opts) {
            Ok(c) => {
                let c = Arc::new(c);
                let _ = self.fsid.set(c.fsid.clone());
                *link = Link::Up(c.clone());
                Ok(c)
            }
            Err(why) => {
                *link = Link::Down(std::time::Instant::now(), why.clone());
                Err(StoreError::Unavailable(why))
            }
        }
    }

    /// The cluster's fsid once connected (never dials, never waits).
    pub fn fsid(&self) -> Option<String> {
        self.fsid.get().cloned()
    }

    fn location(fsid: &str, pool: &str, id: &str) -> Location {
        let q = |s: &str| utf8_percent_encode(s, URL_PART).to_string();
        // The fsid and id are UUIDs; quoting keeps odd pool names from breaking the URL.
        Location {
            url: format!("rbd://{}/{}/{}/{}", q(fsid), q(pool), q(id), q(SNAP)),
            metadata: serde_json::json!({}),
        }
    }

    /// (pool, image, snapshot) of a location of ours.
    fn parse(&self, loc: &Location) -> Result<(String, String, Option<String>), StoreError> {
        let rest = loc
            .url
            .strip_prefix("rbd://")
            .ok_or_else(|| StoreError::Other(format!("not an rbd location: {}", loc.url)))?;
        let parts: Vec<String> = rest
            .split('/')
            .map(|p| percent_decode_str(p).decode_utf8_lossy().to_string())
            .collect();
        let (fsid, pool, image, snap) = match parts.as_slice() {
            [f, p, i, s] => (f.clone(), p.clone(), i.clone(), Some(s.clone())),
            [f, p, i] => (f.clone(), p.clone(), i.clone(), None),
            _ => {
                return Err(StoreError::Other(format!(
                    "malformed rbd location: {}",
                    loc.url
                )));
            }
        };
        // Before the first connection the fsid is unknown: the pool must match.
        if self.fsid().is_some_and(|f| f != fsid) || pool != self.pool {
            return Err(StoreError::Other(format!(
                "location {} is not in this store",
                loc.url
            )));
        }
        Ok((pool, image, snap))
    }

    fn open(&self, name: &str, snap: Option<&str>, read_only: bool) -> Result<Image, StoreError> {
        let cname = cstr(name)?;
        let csnap = snap.map(cstr).transpose()?;
        let mut img: rbd_image_t = ptr::null_mut();
        let snap_ptr = csnap.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        let conn = self.conn()?;
        // SAFETY: valid io context and strings; img receives the handle.
        let rc = unsafe {
            if read_only {
                rbd_open_read_only(conn.io, cname.as_ptr(), &mut img, snap_ptr)
            } else {
                rbd_open(conn.io, cname.as_ptr(), &mut img, snap_ptr)
            }
        };
        check(&format!("open {}/{name}", self.pool), rc)?;
        Ok(Image { img, _conn: conn })
    }

    fn remove(&self, name: &str) -> Result<(), StoreError> {
        let c = cstr(name)?;
        let conn = self.conn()?;
        // SAFETY: valid io context and name.
        let rc = unsafe { rbd_remove(conn.io, c.as_ptr()) };
        match rc {
            0 => Ok(()),
            // librbd removes by way of the pool's trash; when the pool is full that step fails
            // and may come back as ENOENT for an image that is still there.
            -2 if self.open(name, None, true).is_ok() => Err(StoreError::Unavailable(format!(
                "RBD image {}/{name} could not be removed (is the pool full?); retry once it has room",
                self.pool
            ))),
            // ESTALE: another client (a concurrent delete of the same image) removed it under
            // us. Gone is done; still there means retry.
            -116 => match self.open(name, None, true) {
                Err(StoreError::NotFound(m)) => Err(StoreError::NotFound(m)),
                _ => Err(StoreError::Unavailable(format!(
                    "RBD image {}/{name} changed while being removed; retry",
                    self.pool
                ))),
            },
            // Other snapshots remain (not ours): move it to the trash as glance_store does.
            -39 => {
                // SAFETY: as above.
                let rc = unsafe { rbd_trash_move(conn.io, c.as_ptr(), 0) };
                check(&format!("trash move {}/{name}", self.pool), rc)
            }
            rc => check(&format!("remove {}/{name}", self.pool), rc),
        }
    }

    /// Puts back the protected snapshot of an image a delete could not remove. Nothing writes
    /// to an uploaded image, so the snapshot taken again holds what the old one held.
    fn restore_snapshot(&self, name: &str) {
        // EEXIST, EBUSY (already protected): a concurrent delete that also failed did it first.
        let restored = self.open(name, None, false).and_then(|img| {
            img.snap_unless("snap create", rbd_snap_create, libc::EEXIST)?;
            img.snap_unless("snap protect", rbd_snap_protect, libc::EBUSY)
        });
        match restored {
            Ok(_) => {
                tracing::warn!(image = %name, pool = %self.pool, "RBD image not removed; its snapshot is back")
            }
            // Removed after all, by a concurrent delete.
            Err(StoreError::NotFound(_)) => {}
            Err(e) => {
                tracing::error!(image = %name, pool = %self.pool, error = %e, "RBD image not removed and its snapshot could not be put back; its downloads fail until it is (rbd snap create/protect)")
            }
        }
    }
}

/// An open RBD image; closed on drop. Holds the connection so it cannot outlive it.
struct Image {
    img: rbd_image_t,
    _conn: Arc<Conn>,
}

// SAFETY: an rbd image handle may be used from any thread, one at a time (we never share it).
unsafe impl Send for Image {}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: opened by rbd_open and closed only here.
        unsafe {
            rbd_close(self.img);
        }
    }
}

type SnapOp = unsafe extern "C" fn(rbd_image_t, *const std::os::raw::c_char) -> c_int;

impl Image {
    fn snap(&self, what: &str, f: SnapOp) -> Result<(), StoreError> {
        self.snap_unless(what, f, 0).map(|_| ())
    }

    /// As `snap`, but the error `already` (an errno: the snapshot is already in the state the
    /// call would put it in) is no failure. Whether the call changed anything.
    fn snap_unless(&self, what: &str, f: SnapOp, already: c_int) -> Result<bool, StoreError> {
        let s = cstr(SNAP)?;
        // SAFETY: valid image handle and snapshot name.
        match unsafe { f(self.img, s.as_ptr()) } {
            rc if already != 0 && rc == -already => Ok(false),
            rc => check(what, rc).map(|()| true),
        }
    }

    fn resize(&self, size: u64) -> Result<(), StoreError> {
        // SAFETY: valid image handle.
        check("resize", unsafe { rbd_resize(self.img, size) })
    }
}

/// Operations a reader or writer keeps in flight: librbd spreads them over the OSDs, as `rbd
/// import` does.
const IN_FLIGHT: usize = 8;

/// Bytes of operations in flight across all readers and writers, beyond each one's first: a
/// lone transfer keeps all `IN_FLIGHT` object-sized operations going, many at once share this
/// (with eight each, 20 concurrent 100 MiB uploads peaked at 2.8 GiB of RSS; with this, 1.0:
/// benches/bench-rbd.sh). Nobody waits for it: a writer without budget waits for its own
/// oldest write, a reader reads ahead less, so one stalled client cannot stall others.
const SHARED_IN_FLIGHT: usize = 64 << 20;

static SHARED_FREE: AtomicUsize = AtomicUsize::new(SHARED_IN_FLIGHT);

/// The RBD images (`pool/name`) a delete on this node is removing, and the signal that one
/// ended. librbd's removal is not safe against a concurrent one of the same image: two
/// interleaved fail midway with ENOENT or ESTALE, or one reports the image gone while the other
/// then fails and puts its snapshot back (an image left in the pool with no row). So a second
/// delete of the image waits for the first, then finds it gone (or fails as it did).
static DELETING: std::sync::LazyLock<(Mutex<HashSet<String>>, Condvar)> =
    std::sync::LazyLock::new(Default::default);

/// This node's only delete of one RBD image, while it lives.
struct Deleting(String);

impl Deleting {
    /// Waits until no other delete of `key` runs here (blocking: deletes run on the blocking
    /// pool), then is the one.
    fn begin(key: String) -> Deleting {
        let (names, ended) = &*DELETING;
        let mut names = names.lock().unwrap_or_else(|e| e.into_inner());
        while names.contains(&key) {
            names = ended.wait(names).unwrap_or_else(|e| e.into_inner());
        }
        names.insert(key.clone());
        Deleting(key)
    }
}

impl Drop for Deleting {
    fn drop(&mut self) {
        let (names, ended) = &*DELETING;
        names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
        ended.notify_all();
    }
}

/// The budget for one more operation of `n` bytes beside `in_flight` others: the first is the
/// transfer's own, the next ones up to `IN_FLIGHT` take shared budget if it is free.
fn share_for(in_flight: usize, n: usize) -> Option<Share> {
    match in_flight {
        0 => Some(Share(0)),
        k if k < IN_FLIGHT => take_share(n),
        _ => None,
    }
}

/// `n` bytes of the shared in-flight budget, if that many are free.
fn take_share(n: usize) -> Option<Share> {
    SHARED_FREE
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
            free.checked_sub(n)
        })
        .ok()
        .map(|_| Share(n))
}

/// One asynchronous librbd write and the bytes it sends, which must live until it completes
/// (the completion is waited for on drop).
struct Aio {
    c: rbd_completion_t,
    _buf: Vec<u8>,
    /// Its share of the in-flight budget, given back once it has completed (fields drop after
    /// `drop` has waited).
    _share: Share,
}

// SAFETY: the completion and buffer are owned by this value and only touched by its owner.
unsafe impl Send for Aio {}

impl Aio {
    /// Starts writing `buf` at `off`, holding `share` (given back at once if it does not start).
    fn write(img: &Image, off: u64, buf: Vec<u8>, share: Share) -> Result<Aio, StoreError> {
        let mut c: rbd_completion_t = ptr::null_mut();
        // SAFETY: c receives a new completion; no callback.
        check("aio completion", unsafe {
            rbd_aio_create_completion(ptr::null_mut(), None, &mut c)
        })?;
        // SAFETY: buf lives in the returned Aio until the write completes (wait/drop).
        let rc = unsafe { rbd_aio_write(img.img, off, buf.len(), buf.as_ptr().cast(), c) };
        if rc < 0 {
            unsafe { rbd_aio_release(c) };
            return Err(errno("write", -rc));
        }
        Ok(Aio {
            c,
            _buf: buf,
            _share: share,
        })
    }

    /// Waits for the write to complete (the buffer is freed after, on drop).
    fn wait(self) -> Result<(), StoreError> {
        // SAFETY: c is a live completion owned by self.
        let n = unsafe {
            rbd_aio_wait_for_complete(self.c);
            rbd_aio_get_return_value(self.c)
        };
        if n < 0 {
            return Err(errno("aio", -(n as c_int)));
        }
        Ok(())
    }
}

impl Drop for Aio {
    fn drop(&mut self) {
        // SAFETY: waiting before release keeps librbd from touching a freed buffer.
        unsafe {
            rbd_aio_wait_for_complete(self.c);
            rbd_aio_release(self.c);
        }
    }
}

/// Bytes of the shared in-flight budget, held until dropped; `Share(0)` for a transfer's own
/// first operation.
struct Share(usize);

impl Drop for Share {
    fn drop(&mut self) {
        SHARED_FREE.fetch_add(self.0, Ordering::AcqRel);
    }
}

struct RbdWriter {
    store: RbdHandle,
    name: String,
    image: Option<Image>,
    size: u64,
    offset: u64,
    thin: bool,
    /// Bytes not yet sent, flushed one object-sized write at a time.
    pending: Vec<u8>,
    in_flight: std::collections::VecDeque<Aio>,
}

/// What a writer needs of the store after `begin_write` returns.
#[derive(Clone)]
struct RbdHandle {
    conn: Arc<Conn>,
    opts: Arc<RbdOptions>,
    pool: String,
    chunk: u64,
}

impl RbdHandle {
    fn store(&self) -> RbdStore {
        RbdStore {
            conn: std::sync::Mutex::new(Link::Up(self.conn.clone())),
            fsid: std::sync::OnceLock::from(self.conn.fsid.clone()),
            opts: self.opts.clone(),
            pool: self.pool.clone(),
            order: self.chunk.trailing_zeros() as c_int,
            chunk: self.chunk,
            thin: false,
        }
    }
}

impl RbdWriter {
    /// Sends `pending` (at `offset - pending.len()`) as one asynchronous write.
    fn send_pending(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let buf = std::mem::replace(
            &mut self.pending,
            Vec::with_capacity(self.store.chunk as usize),
        );
        let off = self.offset - buf.len() as u64;
        if self.thin && buf.iter().all(|b| *b == 0) {
            return Ok(());
        }
        if self.in_flight.len() >= IN_FLIGHT
            && let Some(oldest) = self.in_flight.pop_front()
        {
            oldest.wait()?;
        }
        let img = self
            .image
            .as_ref()
            .ok_or_else(|| StoreError::Other("writer closed".into()))?;
        let end = off + buf.len() as u64;
        if end > self.size {
            // Unknown size: grow by doubling, at most 8 GiB a step (glance_store's rule).
            let step = self.size.max(self.store.chunk).min(MAX_GROW);
            let new = end.max(self.size + step);
            img.resize(new)?;
            self.size = new;
        }
        // The first write in flight is this writer's own; the others take shared budget, and
        // without it the oldest is waited for.
        let share = loop {
            if let Some(s) = share_for(self.in_flight.len(), buf.len()) {
                break s;
            }
            if let Some(oldest) = self.in_flight.pop_front() {
                oldest.wait()?;
            }
        };
        self.in_flight.push_back(Aio::write(img, off, buf, share)?);
        Ok(())
    }

    fn drain(&mut self) -> Result<(), StoreError> {
        while let Some(a) = self.in_flight.pop_front() {
            a.wait()?;
        }
        Ok(())
    }
}

impl ImageWriter for RbdWriter {
    fn write(&mut self, mut buf: &[u8]) -> Result<(), StoreError> {
        let chunk = self.store.chunk as usize;
        while !buf.is_empty() {
            let n = (chunk - self.pending.len()).min(buf.len());
            self.pending.extend_from_slice(&buf[..n]);
            self.offset += n as u64;
            buf = &buf[n..];
            if self.pending.len() == chunk {
                self.send_pending()?;
            }
        }
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<Location, StoreError> {
        self.send_pending()?;
        self.drain()?;
        let img = self
            .image
            .take()
            .ok_or_else(|| StoreError::Other("writer closed".into()))?;
        let result = (|| {
            if self.size != self.offset {
                img.resize(self.offset)?;
            }
            // SAFETY: valid image handle.
            check("flush", unsafe { rbd_flush(img.img) })?;
            img.snap("snap create", rbd_snap_create)?;
            img.snap("snap protect", rbd_snap_protect)?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                drop(img);
                Ok(RbdStore::location(
                    &self.store.conn.fsid,
                    &self.store.pool,
                    &self.name,
                ))
            }
            Err(e) => {
                self.image = Some(img);
                // Drop cleans up (unprotect, snap rm, rm) what was created.
                Err(e)
            }
        }
    }
}

impl Drop for RbdWriter {
    fn drop(&mut self) {
        // Writes still in flight finish (or fail) before the image goes.
        self.in_flight.clear();
        // Not committed: remove what was created.
        if let Some(img) = self.image.take() {
            let _ = img.snap("snap unprotect", rbd_snap_unprotect);
            let _ = img.snap("snap remove", rbd_snap_remove);
            drop(img);
            if let Err(e) = self.store.store().remove(&self.name) {
                tracing::warn!(image = %self.name, error = %e, "could not remove partial RBD image");
            }
        }
    }
}

impl Store for RbdStore {
    fn scheme(&self) -> &'static str {
        "rbd"
    }

    fn timeout(&self) -> Option<std::time::Duration> {
        None
    }

    fn live_properties(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("fsid".into(), self.fsid().into());
        m
    }

    fn owns(&self, location: &Location) -> bool {
        self.parse(location).is_ok()
    }

    fn begin_write(
        &self,
        image_id: &str,
        size: Option<u64>,
        _attempt: &str,
    ) -> Result<Box<dyn ImageWriter>, StoreError> {
        let name = cstr(image_id)?;
        let mut order = self.order;
        let size = size.unwrap_or(0);
        let conn = self.conn()?;
        // SAFETY: valid io context, name and order pointer.
        let rc = unsafe { rbd_create2(conn.io, name.as_ptr(), size, FEATURE_LAYERING, &mut order) };
        if rc == -17 {
            return Err(StoreError::Duplicate(format!(
                "RBD image {}/{image_id} already exists",
                self.pool
            )));
        }
        check(&format!("create {}/{image_id}", self.pool), rc)?;
        let image = match self.open(image_id, None, false) {
            Ok(i) => i,
            Err(e) => {
                let _ = self.remove(image_id);
                return Err(e);
            }
        };
        Ok(Box::new(RbdWriter {
            store: RbdHandle {
                conn,
                opts: self.opts.clone(),
                pool: self.pool.clone(),
                chunk: self.chunk,
            },
            name: image_id.to_string(),
            image: Some(image),
            size,
            offset: 0,
            thin: self.thin,
            pending: Vec::with_capacity(self.chunk as usize),
            in_flight: std::collections::VecDeque::new(),
        }))
    }

    fn open_read(
        &self,
        location: &Location,
        offset: u64,
    ) -> Result<Box<dyn Read + Send>, StoreError> {
        Ok(Box::new(self.zero_copy_reader(location, offset)?))
    }

    fn open_chunks(
        &self,
        location: &Location,
        offset: u64,
    ) -> Result<Box<dyn super::Chunks>, StoreError> {
        Ok(Box::new(self.zero_copy_reader(location, offset)?))
    }

    fn size(&self, location: &Location) -> Result<u64, StoreError> {
        let (_, name, snap) = self.parse(location)?;
        let image = self.open(&name, snap.as_deref(), true)?;
        let mut size = 0u64;
        // SAFETY: valid image handle and out pointer.
        check("size", unsafe { rbd_get_size(image.img, &mut size) })?;
        Ok(size)
    }

    /// RBD writes under the image's own name: the partial data is that image, with or
    /// without its snapshot, unless a recorded location of the image names it (the upload
    /// finished after all).
    fn remove_partial(
        &self,
        image_id: &str,
        _attempt: &str,
        keep: &[Location],
    ) -> Result<(), StoreError> {
        let recorded = keep
            .iter()
            .any(|l| self.parse(l).is_ok_and(|(_, name, _)| name == image_id));
        if recorded {
            return Ok(());
        }
        let fsid = self.conn()?.fsid.clone();
        self.delete(&Self::location(&fsid, &self.pool, image_id))
    }

    fn delete(&self, location: &Location) -> Result<(), StoreError> {
        let (pool, name, snap) = self.parse(location)?;
        let _only = Deleting::begin(format!("{pool}/{name}"));
        // An image that cannot be opened may still be half there (its creator died between
        // naming it and writing its header): the remove below clears what there is.
        let img = match snap {
            Some(_) => match self.open(&name, None, false) {
                Ok(i) => Some(i),
                Err(StoreError::NotFound(_)) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        // Whether this delete unprotected or removed the snapshot: if the image then stays, the
        // snapshot is put back, else the image's location names nothing and its downloads fail.
        let mut touched = false;
        if let Some(img) = img {
            // EINVAL: not protected (a half-finished earlier delete); ENOENT: no snapshot.
            match img.snap_unless("snap unprotect", rbd_snap_unprotect, libc::EINVAL) {
                Ok(done) => touched = done,
                Err(StoreError::NotFound(_)) => {}
                Err(StoreError::InUse(_)) => {
                    return Err(StoreError::InUse(format!(
                        "RBD image {}/{name} has clones of its snapshot (copy-on-write children); remove them first",
                        self.pool
                    )));
                }
                Err(e) => return Err(e),
            }
            match img.snap("snap remove", rbd_snap_remove) {
                Ok(()) => touched = true,
                Err(StoreError::NotFound(_)) => {}
                Err(e) => {
                    drop(img);
                    if touched {
                        self.restore_snapshot(&name);
                    }
                    return Err(e);
                }
            }
        }
        // librbd refuses to remove an image another client has open; another node's delete of
        // the same image (this node's wait for each other: `Deleting`) holds it for a moment only.
        let mut removed = self.remove(&name);
        for wait_ms in [50, 100, 200, 400] {
            if !matches!(removed, Err(StoreError::InUse(_))) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(wait_ms));
            removed = self.remove(&name);
        }
        match removed {
            Ok(()) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => {
                if touched {
                    self.restore_snapshot(&name);
                }
                match e {
                    StoreError::InUse(_) => Err(StoreError::InUse(format!(
                        "RBD image {}/{name} is open by another client",
                        self.pool
                    ))),
                    e => Err(e),
                }
            }
        }
    }
}
