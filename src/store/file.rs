//! The filesystem store: one file per image in `filesystem_store_datadir`, which in production is
//! an NFS mount shared by several API nodes.
//!
//! Data is written under a temporary name in the same directory and renamed into place after
//! fsync, so the image's own name never holds a truncated file, and a crash leaves only a
//! temporary file that no location points to.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{ImageWriter, Store, StoreError, classify_io};
use crate::domain::image::Location;

pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// Opens the store, creating the directory, and refuses a directory we cannot write.
    pub fn new(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "cannot create filesystem_store_datadir {}: {e}",
                dir.display()
            )
        })?;
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("filesystem_store_datadir {}: {e}", dir.display()))?;
        let probe = dir.join(format!(".glance-rs-probe-{}", uuid::Uuid::new_v4()));
        File::create(&probe)
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| {
                format!(
                    "filesystem_store_datadir {} is not writable: {e}",
                    dir.display()
                )
            })?;
        Ok(FileStore { dir })
    }

    fn path_for(&self, location: &Location) -> Result<PathBuf, StoreError> {
        let path = location
            .url
            .strip_prefix("file://")
            .ok_or_else(|| StoreError::Other(format!("not a file location: {}", location.url)))?;
        let path = PathBuf::from(path);
        // Never follow a location outside our directory (a tampered row must not reach /etc).
        if path.parent() != Some(self.dir.as_path()) {
            return Err(StoreError::Other(format!(
                "location {} is outside the store directory",
                location.url
            )));
        }
        Ok(path)
    }
}

struct FileWriter {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<File>,
}

impl ImageWriter for FileWriter {
    fn write(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        match self.file.as_mut() {
            Some(f) => f.write_all(buf).map_err(classify_io),
            None => Err(StoreError::Other("writer already closed".into())),
        }
    }

    fn commit(mut self: Box<Self>) -> Result<Location, StoreError> {
        let file = self
            .file
            .take()
            .ok_or_else(|| StoreError::Other("writer already closed".into()))?;
        file.sync_all().map_err(classify_io)?;
        drop(file);
        std::fs::rename(&self.tmp, &self.dest).map_err(classify_io)?;
        Ok(Location {
            url: format!("file://{}", self.dest.display()),
            metadata: serde_json::json!({}),
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

    fn begin_write(&self, image_id: &str) -> Result<Box<dyn ImageWriter>, StoreError> {
        let dest = self.dir.join(image_id);
        let tmp = self
            .dir
            .join(format!(".{image_id}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(classify_io)?;
        Ok(Box::new(FileWriter {
            tmp,
            dest,
            file: Some(file),
        }))
    }

    fn open_read(
        &self,
        location: &Location,
        offset: u64,
    ) -> Result<Box<dyn Read + Send>, StoreError> {
        let path = self.path_for(location)?;
        let mut f = File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound(location.url.clone()),
            _ => StoreError::Io(e),
        })?;
        if offset > 0 {
            f.seek(SeekFrom::Start(offset))?;
        }
        Ok(Box::new(f))
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

    #[test]
    fn uncommitted_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path()).unwrap();
        let mut w = store.begin_write("abc").unwrap();
        w.write(b"partial").unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut w = store.begin_write("abc").unwrap();
        w.write(b"whole").unwrap();
        let loc = w.commit().unwrap();
        let mut s = String::new();
        store
            .open_read(&loc, 1)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "hole");
        store.delete(&loc).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn foreign_locations_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path()).unwrap();
        let loc = Location {
            url: "file:///etc/passwd".into(),
            metadata: serde_json::json!({}),
        };
        assert!(store.open_read(&loc, 0).is_err());
        assert!(store.delete(&loc).is_err());
    }
}
