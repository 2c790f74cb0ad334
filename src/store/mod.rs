//! Where image bytes live. A store hands out blocking writers and readers; callers run them on
//! their own threads, off the async runtime, so a slow disk or a hung NFS mount never stalls it.

pub mod file;

use std::io::Read;

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
    #[error("{0}")]
    Other(String),
}

impl From<StoreError> for crate::error::Error {
    fn from(e: StoreError) -> Self {
        use crate::error::Error;
        match e {
            StoreError::Full => Error::TooLarge(e.to_string()),
            StoreError::WriteDenied => Error::Unavailable(e.to_string()),
            StoreError::NotFound(_) => Error::NotFound(e.to_string()),
            other => {
                tracing::error!(error = %other, "store failure");
                Error::Internal("Error in store configuration.".into())
            }
        }
    }
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
    fn begin_write(&self, image_id: &str) -> Result<Box<dyn ImageWriter>, StoreError>;
    /// A reader positioned at `offset`.
    fn open_read(
        &self,
        location: &Location,
        offset: u64,
    ) -> Result<Box<dyn Read + Send>, StoreError>;
    fn delete(&self, location: &Location) -> Result<(), StoreError>;
}
