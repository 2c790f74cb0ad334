//! The RBD store's reader, without a copy in this process: librbd's C API copies each read into
//! the caller's buffer (a sixth of the server's CPU in a download, measured with `perf`), its
//! C++ API hands over the buffers the messenger received into. `zerocopy.cc` wraps the C++
//! calls; here its reads become a download's chunks, each holding its read until sent (copies
//! and hashing read them through `io::Read`).

use std::collections::VecDeque;
use std::ffi::c_void;
use std::io;
use std::ptr;
use std::sync::Arc;

use bytes::Bytes;

use super::ffi::{
    grs_rbd_aio_read, grs_rbd_close, grs_rbd_open_read, grs_rbd_read_release,
    grs_rbd_read_segments, grs_rbd_read_wait,
};
use super::{Conn, IN_FLIGHT, RbdStore, Share, check, cstr, errno, share_for};
use crate::domain::image::Location;
use crate::store::{Chunks, StoreError};

/// Reads at the snapshot, keeping `IN_FLIGHT` object-sized reads ahead of the consumer.
pub(super) struct ZeroCopyReader {
    // Reads are dropped (waited for) before the image closes: fields drop in this order.
    ahead: VecDeque<Read>,
    /// The completed read's segments not handed out yet.
    segments: VecDeque<Bytes>,
    image: Image,
    /// Next offset to request, and the image size at the snapshot.
    next: u64,
    size: u64,
    chunk: u64,
}

struct Image {
    img: *mut c_void,
    _conn: Arc<Conn>,
}

// SAFETY: the handle is used by its one owner at a time.
unsafe impl Send for Image {}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: opened by grs_rbd_open_read, closed only here, after its reads (field order).
        unsafe { grs_rbd_close(self.img) }
    }
}

/// A read, in flight or done; freed on drop once complete.
struct Read {
    rd: *mut c_void,
    off: u64,
    /// Its share of the in-flight budget, given back once it completes.
    share: Option<Share>,
}

// SAFETY: once complete (its completion released by grs_rbd_read_wait), a read is only its
// buffers, which are only read, from any thread; they are reference-counted atomically, so the
// last holder may free them anywhere, after the image has closed too.
unsafe impl Send for Read {}
unsafe impl Sync for Read {}

impl Drop for Read {
    fn drop(&mut self) {
        // SAFETY: a read made by grs_rbd_aio_read, released once (it waits if still running).
        unsafe { grs_rbd_read_release(self.rd) }
    }
}

/// One buffer of a completed read, as a response chunk: it keeps the read alive.
struct Segment {
    _read: Arc<Read>,
    ptr: *const u8,
    len: usize,
}

// SAFETY: see `Read`; the bytes never change once the read has completed.
unsafe impl Send for Segment {}

impl AsRef<[u8]> for Segment {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `len` bytes at `ptr` belong to the read this segment keeps alive.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl RbdStore {
    /// A zero-copy reader of a location's data from `offset`.
    pub(super) fn zero_copy_reader(
        &self,
        location: &Location,
        offset: u64,
    ) -> Result<ZeroCopyReader, StoreError> {
        let (_, name, snap) = self.parse(location)?;
        let cname = cstr(&name)?;
        let csnap = snap.as_deref().map(cstr).transpose()?;
        let conn = self.conn()?;
        let (mut img, mut size) = (ptr::null_mut(), 0u64);
        // SAFETY: valid io context and strings; img and size receive the results.
        let rc = unsafe {
            grs_rbd_open_read(
                conn.io,
                cname.as_ptr(),
                csnap.as_ref().map_or(ptr::null(), |s| s.as_ptr()),
                &mut img,
                &mut size,
            )
        };
        check(&format!("open {}/{name}", self.pool), rc).map_err(|e| match e {
            StoreError::NotFound(_) => StoreError::NotFound(location.url.clone()),
            other => other,
        })?;
        Ok(ZeroCopyReader {
            ahead: VecDeque::new(),
            segments: VecDeque::new(),
            image: Image { img, _conn: conn },
            next: offset.min(size),
            size,
            chunk: self.chunk,
        })
    }
}

impl ZeroCopyReader {
    fn fill(&mut self) -> io::Result<()> {
        while self.ahead.len() < IN_FLIGHT && self.next < self.size {
            let len = self.chunk.min(self.size - self.next) as usize;
            // One read ahead is the reader's own; more only with shared budget.
            let Some(share) = share_for(self.ahead.len(), len) else {
                break;
            };
            let mut rd = ptr::null_mut();
            // SAFETY: an open image; rd receives the read.
            let rc = unsafe { grs_rbd_aio_read(self.image.img, self.next, len, &mut rd) };
            if rc < 0 {
                return Err(io::Error::other(errno("read", -rc).to_string()));
            }
            self.ahead.push_back(Read {
                rd,
                off: self.next,
                share: Some(share),
            });
            self.next += len as u64;
        }
        Ok(())
    }

    /// Waits for the oldest read and queues its buffers; false at the end.
    fn next_read(&mut self) -> io::Result<bool> {
        self.fill()?;
        let Some(mut read) = self.ahead.pop_front() else {
            return Ok(false);
        };
        // SAFETY: a live read.
        let n = unsafe { grs_rbd_read_wait(read.rd) };
        read.share = None;
        if n < 0 {
            return Err(io::Error::other(errno("aio", -(n as i32)).to_string()));
        }
        if n == 0 && read.off < self.size {
            return Err(io::Error::other("short read from RBD"));
        }
        let none = libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        };
        let mut iov = vec![none; 16];
        // SAFETY: a completed read; at most iov.len() entries are written.
        let count = unsafe { grs_rbd_read_segments(read.rd, iov.as_mut_ptr(), iov.len()) };
        if count > iov.len() {
            iov.resize(count, none);
            // SAFETY: as above, with room for every segment.
            unsafe { grs_rbd_read_segments(read.rd, iov.as_mut_ptr(), iov.len()) };
        }
        iov.truncate(count);
        if iov.iter().map(|s| s.iov_len).sum::<usize>() != n as usize {
            return Err(io::Error::other("RBD read returned other than its length"));
        }
        let read = Arc::new(read);
        for s in iov.into_iter().filter(|s| s.iov_len > 0) {
            self.segments.push_back(Bytes::from_owner(Segment {
                _read: read.clone(),
                ptr: s.iov_base as *const u8,
                len: s.iov_len,
            }));
        }
        self.fill()?;
        Ok(true)
    }
}

/// For copies and hashing, which read into their own buffers.
impl io::Read for ZeroCopyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(front) = self.segments.front_mut() {
                let n = out.len().min(front.len());
                out[..n].copy_from_slice(&front[..n]);
                bytes::Buf::advance(front, n);
                if front.is_empty() {
                    self.segments.pop_front();
                }
                return Ok(n);
            }
            if !self.next_read()? {
                return Ok(0);
            }
        }
    }
}

impl Chunks for ZeroCopyReader {
    fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if let Some(b) = self.segments.pop_front() {
                return Ok(Some(b));
            }
            if !self.next_read()? {
                return Ok(None);
            }
        }
    }
}
