//! The rules of the image service, free of I/O.

pub mod fault;
pub mod image;
pub mod metadef;
pub mod patch;
pub mod policy;
pub mod query;
pub mod task;
pub mod unicode;
