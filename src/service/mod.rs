//! The workflows: what a request asks for and what a background task does, from plain values
//! (a context, an id, a byte stream) to domain results. Handlers parse, call one of these and
//! render; the work engine calls the same ones.

pub mod data;
pub mod fetch;
pub mod images;
pub mod locations;
pub mod members;
pub mod metadef_catalog;
pub mod metadefs;
pub mod tasks;
