//! The filesystem store: one file per image, named by its id, in one of the configured data
//! directories (`filesystem_store_datadir`, or `filesystem_store_datadirs` with priorities). In
//! production a directory is an NFS mount shared by several API nodes.
//!
//! Data is written under a temporary name in the same directory and renamed into place after
//! fsync, so the image's own name never holds a truncated file and a crash leaves only a
//! temporary file no location points to. Every call here blocks; callers run them off the async
//! runtime with a timeout (see `store::blocking`).
//!
//! Data is written through the page cache, its writeback started every 32 MiB so that little is
//! dirty at any time, and the first `filesystem_store_cached_mib` (glance-rs's own, 2 GiB by
//! default) of each image stay cached once written: the download that follows an upload (Nova
//! booting the image just uploaded, Cinder making a volume of it) reads memory, not the disk,
//! while a very large image does not push everything else out of the cache (its pages beyond
//! that are dropped once on disk). `filesystem_store_direct_io` (glance-rs's own) can write
//! with O_DIRECT instead, from a page-aligned staging buffer: no copy into the page cache and no
//! writeback work (1 GiB uploads ~5% faster on a two-core node), but the first read of each
//! image then goes to the disk.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{ImageWriter, Store, StoreError, classify_io};
use crate::domain::image::Location;

/// Granularity of hole detection with thin provisioning (glance_store's chunk size).
const THIN_CHUNK: usize = 64 * 1024;

/// O_DIRECT needs buffer addresses, file offsets and lengths aligned to the device's logical
/// block; a page suits every device.
const DIRECT_ALIGN: usize = 4096;
/// Staging buffer of an O_DIRECT writer (multiples of THIN_CHUNK and DIRECT_ALIGN), one per
/// upload. Each write is one request to the disk, and on a VM each request one exit to the
/// hypervisor (4.6% of an upload's server time with 256 KiB), so a lone upload gets a large
/// buffer (1 GiB uploads 2-5% faster than with 256 KiB: benches/ab-upload.sh); many at once get
/// small ones (with 1 MiB each, 50 concurrent uploads peaked at 280-370 MiB RSS instead of
/// 160-210 MiB).
const DIRECT_BUF_LARGE: usize = 1 << 20;
const DIRECT_BUF_SMALL: usize = 256 << 10;
/// Writers holding a large buffer at most.
const LARGE_BUFFERS: usize = 4;
static LARGE_IN_USE: AtomicUsize = AtomicUsize::new(0);

pub struct FileStore {
    /// Directories, highest priority first.
    dirs: Vec<(PathBuf, i64)>,
    file_perm: u32,
    thin: bool,
    direct_io: DirectIo,
    /// Bytes of each new image left in the page cache once written.
    keep_cached: u64,
    timeout: Option<Duration>,
    /// Entries of `filesystem_store_metadata_file`, each with at least `id` and `mountpoint`.
    metadata: Vec<serde_json::Map<String, serde_json::Value>>,
}

pub struct FileStoreOptions {
    pub dirs: Vec<(PathBuf, i64)>,
    pub file_perm: u32,
    pub thin: bool,
    pub direct_io: DirectIo,
    /// `filesystem_store_cached_mib`, in bytes.
    pub keep_cached: u64,
    pub timeout_secs: u64,
    pub metadata_file: Option<PathBuf>,
}

/// Reads `filesystem_store_metadata_file`: one JSON object or a list of them, each with string
/// `id` and `mountpoint` (what Nova matches against its own mounts to read images directly).
fn read_metadata_file(
    path: &Path,
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, String> {
    let what = |e: String| format!("filesystem_store_metadata_file {}: {e}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| what(e.to_string()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| what(e.to_string()))?;
    let entries = match value {
        serde_json::Value::Array(a) => a,
        v @ serde_json::Value::Object(_) => vec![v],
        _ => return Err(what("must be a JSON object or a list of objects".into())),
    };
    entries
        .into_iter()
        .map(|e| match e {
            serde_json::Value::Object(m)
                if m.get("id").is_some_and(|v| v.is_string())
                    && m.get("mountpoint").is_some_and(|v| v.is_string()) =>
            {
                Ok(m)
            }
            _ => Err(what(
                "each entry needs string \"id\" and \"mountpoint\" keys".into(),
            )),
        })
        .collect()
}

impl FileStore {
    /// Opens the store, creating missing directories, and refuses one we cannot write.
    pub fn new(opts: FileStoreOptions) -> Result<Self, String> {
        let mut dirs = Vec::new();
        for (dir, prio) in opts.dirs {
            std::fs::create_dir_all(&dir).map_err(|e| {
                format!(
                    "cannot create filesystem_store_datadir {}: {e}",
                    dir.display()
                )
            })?;
            let dir = dir
                .canonicalize()
                .map_err(|e| format!("filesystem_store_datadir {}: {e}", dir.display()))?;
            let probe = dir.join(format!(".glance-rs-probe-{}", uuid::Uuid::new_v4()));
            let writes = File::create(&probe)
                .map(|f| enable_direct_io(&f, opts.direct_io))
                .and_then(|w| std::fs::remove_file(&probe).map(|_| w))
                .map_err(|e| {
                    format!(
                        "filesystem_store_datadir {} is not writable: {e}",
                        dir.display()
                    )
                })?;
            match writes {
                Ok(fs) => {
                    tracing::info!(dir = %dir.display(), "file store on {fs}: O_DIRECT writes")
                }
                Err(why) => {
                    tracing::info!(dir = %dir.display(), "file store: buffered writes ({why})")
                }
            }
            dirs.push((dir, prio));
        }
        dirs.sort_by_key(|d| std::cmp::Reverse(d.1));
        let metadata = match &opts.metadata_file {
            Some(p) => read_metadata_file(p)?,
            None => Vec::new(),
        };
        Ok(FileStore {
            dirs,
            file_perm: opts.file_perm,
            thin: opts.thin,
            direct_io: opts.direct_io,
            keep_cached: opts.keep_cached,
            timeout: (opts.timeout_secs > 0).then(|| Duration::from_secs(opts.timeout_secs)),
            metadata,
        })
    }

    /// The metadata entry whose mountpoint prefixes `path` (a plain string prefix, as
    /// glance_store compares), or an empty object, logged, when none does.
    fn metadata_for(&self, path: &Path) -> serde_json::Value {
        if self.metadata.is_empty() {
            return serde_json::json!({});
        }
        let p = path.to_string_lossy();
        let found = self.metadata.iter().find(|m| {
            m.get("mountpoint")
                .and_then(|v| v.as_str())
                .is_some_and(|mp| p.starts_with(mp))
        });
        match found {
            Some(m) => serde_json::Value::Object(m.clone()),
            None => {
                tracing::error!(path = %p, "image path matches no mountpoint of filesystem_store_metadata_file; location metadata left empty");
                serde_json::json!({})
            }
        }
    }

    fn path_for(&self, location: &Location) -> Result<PathBuf, StoreError> {
        let path = location
            .url
            .strip_prefix("file://")
            .or_else(|| location.url.strip_prefix("filesystem://"))
            .ok_or_else(|| StoreError::Other(format!("not a file location: {}", location.url)))?;
        let path = PathBuf::from(path);
        // Never follow a location outside our directories (a tampered row must not reach /etc).
        let inside = self
            .dirs
            .iter()
            .any(|(d, _)| path.parent() == Some(d.as_path()));
        if !inside {
            return Err(StoreError::Other(format!(
                "location {} is outside the store directories",
                location.url
            )));
        }
        Ok(path)
    }

    /// glance_store's choice: the highest priority; within it, the most free space; with a
    /// known size, only directories it fits in. A single directory is not checked.
    fn pick_dir(&self, size: Option<u64>) -> Result<&Path, StoreError> {
        if self.dirs.len() == 1 {
            return Ok(&self.dirs[0].0);
        }
        let mut best: Option<(i64, u64, &Path)> = None;
        for (dir, prio) in &self.dirs {
            let free = free_bytes(dir)?;
            if size.is_some_and(|s| s > free) {
                continue;
            }
            let better = match best {
                None => true,
                Some((bp, bf, _)) => *prio > bp || (*prio == bp && free > bf),
            };
            if better {
                best = Some((*prio, free, dir));
            }
        }
        best.map(|(_, _, d)| d).ok_or(StoreError::Full)
    }

    fn open(&self, location: &Location) -> Result<File, StoreError> {
        let path = self.path_for(location)?;
        File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound(location.url.clone()),
            _ => StoreError::Io(e),
        })
    }
}

fn free_bytes(dir: &Path) -> Result<u64, StoreError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| StoreError::Other("directory name contains NUL".into()))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(classify_io(std::io::Error::last_os_error()));
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

struct FileWriter {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<File>,
    thin: bool,
    perm: u32,
    /// Bytes accepted so far (with thin provisioning, more than were written).
    len: u64,
    /// Where the writeback started by `flush_behind` has got to.
    flushed: u64,
    /// Bytes of the image to leave in the page cache; the rest is dropped once written back.
    keep_cached: u64,
    /// The location metadata to publish (filesystem_store_metadata_file).
    metadata: serde_json::Value,
    /// With O_DIRECT: the bytes not written yet.
    staging: Option<Staging>,
}

/// A page-aligned buffer, filled until it can be written with O_DIRECT; mapped apart from the
/// heap so that it goes back to the system when the upload ends.
struct Staging {
    buf: memmap2::MmapMut,
    filled: usize,
    /// File offset of the buffer's first byte.
    offset: u64,
}

impl Staging {
    fn new() -> Result<Staging, StoreError> {
        let large = LARGE_IN_USE
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < LARGE_BUFFERS).then_some(n + 1)
            })
            .is_ok();
        let size = if large {
            DIRECT_BUF_LARGE
        } else {
            DIRECT_BUF_SMALL
        };
        match memmap2::MmapMut::map_anon(size) {
            Ok(buf) => Ok(Staging {
                buf,
                filled: 0,
                offset: 0,
            }),
            Err(e) => {
                if large {
                    LARGE_IN_USE.fetch_sub(1, Ordering::AcqRel);
                }
                Err(StoreError::Other(format!("staging buffer: {e}")))
            }
        }
    }

    /// Copies `data` in, writing out each full buffer.
    fn write(&mut self, f: &File, mut data: &[u8], thin: bool) -> Result<(), StoreError> {
        while !data.is_empty() {
            let n = (self.buf.len() - self.filled).min(data.len());
            self.buf[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == self.buf.len() {
                self.flush(f, thin)?;
            }
        }
        Ok(())
    }

    /// Writes what is buffered, zero-padded to the alignment (commit cuts the file back to its
    /// length).
    fn flush(&mut self, f: &File, thin: bool) -> Result<(), StoreError> {
        if self.filled == 0 {
            return Ok(());
        }
        let len = self.filled.next_multiple_of(DIRECT_ALIGN);
        self.buf[self.filled..len].fill(0);
        write_at(f, &self.buf[..len], self.offset, thin)?;
        self.offset += self.filled as u64;
        self.filled = 0;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.buf.len() == DIRECT_BUF_LARGE {
            LARGE_IN_USE.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Writes `data` at `offset`; with `thin`, chunks of zeros are skipped (holes).
fn write_at(f: &File, data: &[u8], offset: u64, thin: bool) -> Result<(), StoreError> {
    if !thin {
        return f.write_all_at(data, offset).map_err(classify_io);
    }
    for (i, piece) in data.chunks(THIN_CHUNK).enumerate() {
        if piece.iter().any(|b| *b != 0) {
            f.write_all_at(piece, offset + (i * THIN_CHUNK) as u64)
                .map_err(classify_io)?;
        }
    }
    Ok(())
}

pub use crate::config::DirectIo;

/// Filesystems (statfs magic numbers) on which `auto` writes with O_DIRECT: local disks, where
/// it saves the page-cache copy and the writeback. Not NFS or any other network filesystem:
/// there every O_DIRECT write is a synchronous round trip, committed on the server before it
/// returns, where buffered writes are sent many at once and committed once at fsync. Not tmpfs:
/// no disk to bypass.
const LOCAL_DISK_FS: &[(u32, &str)] = &[
    (0xEF53, "ext2/3/4"),
    (0x5846_5342, "xfs"),
    (0x9123_683E, "btrfs"),
    (0xF2F5_2010, "f2fs"),
    (0xCA45_1A4E, "bcachefs"),
];

/// Names for the log line of the others an operator is likely to meet.
const OTHER_FS: &[(u32, &str)] = &[
    (0x6969, "nfs"),
    (0xFF53_4D42, "cifs"),
    (0xFE53_4D42, "smb2"),
    (0x00C3_6400, "ceph"),
    (0x0BD0_0BD0, "lustre"),
    (0x4750_4653, "gpfs"),
    (0x6573_5546, "fuse"),
    (0x2FC1_2FC1, "zfs"),
    (0x0102_1994, "tmpfs"),
    (0x8584_58F6, "ramfs"),
    (0x794C_7630, "overlayfs"),
];

/// Turns O_DIRECT on for `f` where `setting` asks for it; Ok(filesystem) if it is on, else
/// why not.
fn enable_direct_io(f: &File, setting: DirectIo) -> Result<String, String> {
    use std::os::fd::AsRawFd;
    if setting == DirectIo::Off {
        return Err("filesystem_store_direct_io = false".into());
    }
    let fd = f.as_raw_fd();
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: fd is open for the duration of the call; statfs fills the struct it is given.
    let magic = if unsafe { libc::fstatfs(fd, st.as_mut_ptr()) } == 0 {
        // SAFETY: fstatfs succeeded, so the struct is initialised. f_type is a 32-bit magic
        // number in a word whose width and signedness vary by platform.
        Some(unsafe { st.assume_init() }.f_type as u32)
    } else {
        None
    };
    let name = |list: &[(u32, &'static str)]| {
        list.iter()
            .find(|(m, _)| Some(*m) == magic)
            .map(|(_, n)| *n)
    };
    let local = name(LOCAL_DISK_FS);
    let fs = local.or_else(|| name(OTHER_FS)).map_or_else(
        || format!("filesystem {:#x}", magic.unwrap_or(0)),
        str::to_string,
    );
    if setting == DirectIo::Auto && local.is_none() {
        return Err(format!(
            "{fs} is not a local disk filesystem; filesystem_store_direct_io = auto"
        ));
    }
    // SAFETY: fcntl on a descriptor `f` owns, with integer arguments only.
    let on = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_DIRECT) == 0
    };
    if on {
        Ok(fs)
    } else {
        Err(format!("{fs} refuses O_DIRECT"))
    }
}

/// Dirty data a writer lets accumulate before it starts writing it back.
const FLUSH_STEP: u64 = 32 << 20;

/// Drops `[from, to)` of `fd` from the page cache: clean pages only, so only what is on disk.
/// A hint: nothing to report if it is not taken.
fn uncache(fd: std::os::fd::RawFd, from: u64, to: u64) {
    if to > from {
        // SAFETY: posix_fadvise takes a descriptor and integers; it reads no memory of ours.
        unsafe {
            libc::posix_fadvise(
                fd,
                from as libc::off_t,
                (to - from) as libc::off_t,
                libc::POSIX_FADV_DONTNEED,
            );
        }
    }
}

impl FileWriter {
    /// Starts writeback of each completed step and waits for the step before it, so the fsync
    /// at commit only has the last steps to flush instead of the whole image (the kernel would
    /// otherwise keep gigabytes dirty until then), and dirty memory stays bounded. A step on
    /// disk beyond `keep_cached` leaves the page cache. Hints only: errors surface at the fsync.
    fn flush_behind(&mut self) {
        use std::os::fd::AsRawFd;
        let Some(f) = self.file.as_ref() else { return };
        if self.staging.is_some() {
            return; // O_DIRECT leaves nothing dirty.
        }
        while self.len - self.flushed >= FLUSH_STEP {
            let fd = f.as_raw_fd();
            let at = self.flushed as libc::off64_t;
            let step = FLUSH_STEP as libc::off64_t;
            // SAFETY: fd is an open file owned by self; the calls only take integers.
            unsafe {
                libc::sync_file_range(fd, at, step, libc::SYNC_FILE_RANGE_WRITE);
                if at >= step {
                    libc::sync_file_range(
                        fd,
                        at - step,
                        step,
                        libc::SYNC_FILE_RANGE_WAIT_BEFORE
                            | libc::SYNC_FILE_RANGE_WRITE
                            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                    );
                }
            }
            if at >= step {
                // The step before this one is on disk now.
                let written = self.flushed;
                uncache(fd, self.keep_cached.max(written - FLUSH_STEP), written);
            }
            self.flushed += FLUSH_STEP;
        }
    }
}

/// The temporary name of an upload attempt's data, next to where it will be renamed to.
fn partial_name(image_id: &str, attempt: &str) -> String {
    format!(".{image_id}.{attempt}.tmp")
}

fn closed() -> StoreError {
    StoreError::Other("writer already closed".into())
}

impl ImageWriter for FileWriter {
    fn write(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        let f = self.file.as_ref().ok_or_else(closed)?;
        match self.staging.as_mut() {
            Some(st) => st.write(f, buf, self.thin)?,
            None => write_at(f, buf, self.len, self.thin)?,
        }
        self.len += buf.len() as u64;
        self.flush_behind();
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<Location, StoreError> {
        let file = self.file.take().ok_or_else(closed)?;
        let result = (|| {
            if let Some(st) = self.staging.as_mut() {
                st.flush(&file, self.thin)?;
            }
            // Cuts O_DIRECT's padding and keeps trailing holes (otherwise already the length).
            file.set_len(self.len).map_err(classify_io)?;
            if self.perm != 0 {
                file.set_permissions(std::fs::Permissions::from_mode(self.perm))
                    .map_err(classify_io)?;
            }
            file.sync_all().map_err(classify_io)?;
            if self.staging.is_none() {
                use std::os::fd::AsRawFd;
                uncache(file.as_raw_fd(), self.keep_cached, self.len);
            }
            drop(file);
            if self.dest.exists() {
                return Err(StoreError::Other(format!(
                    "image data {} already exists",
                    self.dest.display()
                )));
            }
            std::fs::rename(&self.tmp, &self.dest).map_err(classify_io)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(e);
        }
        Ok(Location {
            url: format!("file://{}", self.dest.display()),
            metadata: std::mem::take(&mut self.metadata),
        })
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        // Not committed: the partial bytes go.
        if self.file.take().is_some()
            && let Err(e) = std::fs::remove_file(&self.tmp)
        {
            tracing::warn!(path = %self.tmp.display(), error = %e, "could not remove partial upload");
        }
    }
}

impl Store for FileStore {
    fn scheme(&self) -> &'static str {
        "file"
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn owns(&self, location: &Location) -> bool {
        self.path_for(location).is_ok()
    }

    fn begin_write(
        &self,
        image_id: &str,
        size: Option<u64>,
        attempt: &str,
    ) -> Result<Box<dyn ImageWriter>, StoreError> {
        let dir = self.pick_dir(size)?;
        let dest = dir.join(image_id);
        let tmp = dir.join(partial_name(image_id, attempt));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(classify_io)?;
        let direct = enable_direct_io(&file, self.direct_io).is_ok();
        Ok(Box::new(FileWriter {
            metadata: self.metadata_for(&dest),
            tmp,
            dest,
            file: Some(file),
            thin: self.thin,
            perm: self.file_perm,
            len: 0,
            flushed: 0,
            keep_cached: self.keep_cached,
            staging: if direct { Some(Staging::new()?) } else { None },
        }))
    }

    /// The temporary file of that attempt, in whichever directory it went to, and the
    /// image's final-name file unless a recorded location names it: a writer that died after
    /// its rename but before the database recorded the location left whole data nobody owns.
    fn remove_partial(
        &self,
        image_id: &str,
        attempt: &str,
        keep: &[Location],
    ) -> Result<(), StoreError> {
        let kept: Vec<PathBuf> = keep.iter().filter_map(|l| self.path_for(l).ok()).collect();
        let name = partial_name(image_id, attempt);
        for (dir, _) in &self.dirs {
            for path in [dir.join(&name), dir.join(image_id)] {
                if kept.contains(&path) {
                    continue;
                }
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(classify_io(e)),
                }
            }
        }
        Ok(())
    }

    fn open_read(
        &self,
        location: &Location,
        offset: u64,
    ) -> Result<Box<dyn Read + Send>, StoreError> {
        let mut f = self.open(location)?;
        if offset > 0 {
            f.seek(SeekFrom::Start(offset))?;
        }
        Ok(Box::new(f))
    }

    fn open_file(&self, location: &Location) -> Option<Result<File, StoreError>> {
        Some(self.open(location))
    }

    fn size(&self, location: &Location) -> Result<u64, StoreError> {
        let path = self.path_for(location)?;
        std::fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|_| StoreError::NotFound(location.url.clone()))
    }

    fn delete(&self, location: &Location) -> Result<(), StoreError> {
        let path = self.path_for(location)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(classify_io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn store(dirs: Vec<(PathBuf, i64)>, thin: bool, perm: u32) -> FileStore {
        store_io(dirs, thin, perm, DirectIo::Auto)
    }

    fn store_io(
        dirs: Vec<(PathBuf, i64)>,
        thin: bool,
        perm: u32,
        direct_io: DirectIo,
    ) -> FileStore {
        FileStore::new(FileStoreOptions {
            dirs,
            file_perm: perm,
            thin,
            direct_io,
            keep_cached: 1 << 30,
            timeout_secs: 5,
            metadata_file: None,
        })
        .unwrap()
    }

    fn read_back(store: &FileStore, loc: &Location, offset: u64) -> Vec<u8> {
        let mut back = Vec::new();
        store
            .open_read(loc, offset)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        back
    }

    #[test]
    fn uncommitted_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(vec![(dir.path().into(), 0)], false, 0);
        let mut w = store.begin_write("abc", None, "w1").unwrap();
        w.write(b"partial").unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut w = store.begin_write("abc", None, "w1").unwrap();
        w.write(b"whole").unwrap();
        let loc = w.commit().unwrap();
        assert_eq!(read_back(&store, &loc, 1), b"hole");
        store.delete(&loc).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// What a node that died mid-write left (its writer never dropped) is found and removed
    /// by name from any node; a finished write is not touched.
    #[test]
    fn partial_data_of_a_dead_writer_is_removed() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let store = store(vec![(a.path().into(), 0), (b.path().into(), 1)], false, 0);
        let mut w = store.begin_write("img", None, "attempt-1").unwrap();
        w.write(b"half of it").unwrap();
        std::mem::forget(w); // the process died: no Drop
        let left = |d: &Path| std::fs::read_dir(d).unwrap().count();
        assert_eq!(left(a.path()) + left(b.path()), 1);
        store.remove_partial("img", "other-attempt", &[]).unwrap();
        assert_eq!(left(a.path()) + left(b.path()), 1, "another attempt's name");
        store.remove_partial("img", "attempt-1", &[]).unwrap();
        assert_eq!(left(a.path()) + left(b.path()), 0);
        let mut w = store.begin_write("img", None, "attempt-2").unwrap();
        w.write(b"whole").unwrap();
        let loc = w.commit().unwrap();
        // Recorded: the upload finished after all, its data stays.
        store
            .remove_partial("img", "attempt-2", std::slice::from_ref(&loc))
            .unwrap();
        assert_eq!(read_back(&store, &loc, 0), b"whole");
        // Renamed into place but never recorded (the writer died in between): an orphan.
        store.remove_partial("img", "attempt-2", &[]).unwrap();
        assert_eq!(left(a.path()) + left(b.path()), 0);
    }

    #[test]
    fn foreign_locations_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(vec![(dir.path().into(), 0)], false, 0);
        let loc = Location {
            url: "file:///etc/passwd".into(),
            metadata: serde_json::json!({}),
        };
        assert!(store.open_read(&loc, 0).is_err());
        assert!(store.delete(&loc).is_err());
    }

    #[test]
    fn thin_provisioning_makes_holes_and_keeps_length() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(vec![(dir.path().into(), 0)], true, 0o640);
        let mut w = store.begin_write("thin", None, "w1").unwrap();
        let mut data = vec![0u8; 8 << 20];
        data[100] = 1;
        w.write(&data).unwrap();
        w.write(&[0u8; 1000]).unwrap();
        let loc = w.commit().unwrap();
        let meta = std::fs::metadata(dir.path().join("thin")).unwrap();
        assert_eq!(meta.len(), (8 << 20) + 1000);
        assert!(
            meta.blocks() * 512 < 1 << 20,
            "zeros became holes: {} blocks",
            meta.blocks()
        );
        assert_eq!(meta.mode() & 0o777, 0o640);
        let back = read_back(&store, &loc, 0);
        assert_eq!(&back[..data.len()], &data[..]);
    }

    /// O_DIRECT writes go through an aligned staging buffer and are padded then cut back: every
    /// length around the alignment and the buffer's size, in awkward pieces, with and without
    /// holes, must read back as written, and as the buffered writer stores it.
    #[test]
    fn direct_writes_store_exactly_the_bytes_given() {
        let dir = tempfile::tempdir().unwrap();
        let probe = File::create(dir.path().join("probe")).unwrap();
        if let Err(why) = enable_direct_io(&probe, DirectIo::On) {
            panic!("{why}: this test would not test O_DIRECT");
        }
        // Buffers are large or small depending on the writers at work (tests run in parallel):
        // lengths around both sizes.
        const LARGE: usize = DIRECT_BUF_LARGE;
        const SMALL: usize = DIRECT_BUF_SMALL;
        let mut data = crate::testutil::pseudo_random(3 * LARGE + 12345);
        // Zeros across a staging-buffer boundary and a THIN_CHUNK-aligned run inside one.
        data[LARGE - 70_000..LARGE + 200_000].fill(0);
        data[2 * LARGE + THIN_CHUNK..2 * LARGE + 3 * THIN_CHUNK].fill(0);
        let lens = [
            0,
            1,
            DIRECT_ALIGN - 1,
            DIRECT_ALIGN,
            DIRECT_ALIGN + 1,
            SMALL - 1,
            SMALL,
            SMALL + 1,
            LARGE - 1,
            LARGE,
            LARGE + 1,
            data.len(),
        ];
        for thin in [false, true] {
            for direct in [DirectIo::On, DirectIo::Off] {
                let store = store_io(vec![(dir.path().into(), 0)], thin, 0, direct);
                for len in lens {
                    let id = format!("img-{thin}-{direct:?}-{len}");
                    let mut w = store.begin_write(&id, None, "w1").unwrap();
                    for piece in data[..len].chunks(7777) {
                        w.write(piece).unwrap();
                    }
                    let back = read_back(&store, &w.commit().unwrap(), 0);
                    assert!(back == data[..len], "{id}: {} bytes back", back.len());
                }
            }
        }
        // Thin and direct: the zero run inside the last buffer became a hole.
        let meta = std::fs::metadata(dir.path().join(format!("img-true-On-{}", data.len())));
        let meta = meta.unwrap();
        assert!(meta.blocks() * 512 < data.len() as u64 - 2 * THIN_CHUNK as u64);
    }

    #[test]
    fn highest_priority_directory_wins() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let store = store(vec![(a.path().into(), 1), (b.path().into(), 100)], false, 0);
        let w = store.begin_write("img", Some(10), "w1").unwrap();
        let loc = w.commit().unwrap();
        assert!(b.path().join("img").exists(), "{}", loc.url);
        // Nothing fits an absurd size: the store is full.
        assert!(matches!(
            store.begin_write("big", Some(u64::MAX), "w1"),
            Err(StoreError::Full)
        ));
    }
}
