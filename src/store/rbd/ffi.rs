//! The few librbd calls the RBD store needs. Every function returns a negative errno on error.
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_int, c_void};

pub use ceph::rados::rados_ioctx_t;

pub type rbd_image_t = *mut c_void;
pub type rbd_completion_t = *mut c_void;
pub type rbd_callback_t = Option<unsafe extern "C" fn(cb: rbd_completion_t, arg: *mut c_void)>;

/// RBD_FEATURE_LAYERING: what copy-on-write clones need.
pub const FEATURE_LAYERING: u64 = 1;

#[link(name = "rados")]
unsafe extern "C" {
    /// Writes to a full pool fail with ENOSPC / EDQUOT instead of waiting for room (the
    /// `ceph` crate does not bind it).
    pub fn rados_set_pool_full_try(io: rados_ioctx_t);
}

#[link(name = "rbd")]
unsafe extern "C" {
    pub fn rbd_create2(
        io: rados_ioctx_t,
        name: *const c_char,
        size: u64,
        features: u64,
        order: *mut c_int,
    ) -> c_int;
    pub fn rbd_open(
        io: rados_ioctx_t,
        name: *const c_char,
        image: *mut rbd_image_t,
        snap_name: *const c_char,
    ) -> c_int;
    pub fn rbd_open_read_only(
        io: rados_ioctx_t,
        name: *const c_char,
        image: *mut rbd_image_t,
        snap_name: *const c_char,
    ) -> c_int;
    pub fn rbd_close(image: rbd_image_t) -> c_int;
    pub fn rbd_resize(image: rbd_image_t, size: u64) -> c_int;
    pub fn rbd_get_size(image: rbd_image_t, size: *mut u64) -> c_int;
    pub fn rbd_flush(image: rbd_image_t) -> c_int;
    pub fn rbd_snap_create(image: rbd_image_t, snapname: *const c_char) -> c_int;
    pub fn rbd_snap_protect(image: rbd_image_t, snapname: *const c_char) -> c_int;
    pub fn rbd_snap_unprotect(image: rbd_image_t, snapname: *const c_char) -> c_int;
    pub fn rbd_snap_remove(image: rbd_image_t, snapname: *const c_char) -> c_int;
    pub fn rbd_remove(io: rados_ioctx_t, name: *const c_char) -> c_int;
    pub fn rbd_aio_create_completion(
        cb_arg: *mut c_void,
        complete_cb: rbd_callback_t,
        c: *mut rbd_completion_t,
    ) -> c_int;
    pub fn rbd_aio_write(
        image: rbd_image_t,
        off: u64,
        len: usize,
        buf: *const c_char,
        c: rbd_completion_t,
    ) -> c_int;
    pub fn rbd_aio_wait_for_complete(c: rbd_completion_t) -> c_int;
    pub fn rbd_aio_get_return_value(c: rbd_completion_t) -> isize;
    pub fn rbd_aio_release(c: rbd_completion_t);
    pub fn rbd_trash_move(io: rados_ioctx_t, name: *const c_char, delay: u64) -> c_int;
}

// `zerocopy.cc`: reads handed over as the buffers librbd received them in.
unsafe extern "C" {
    pub fn grs_rbd_open_read(
        io: rados_ioctx_t,
        name: *const c_char,
        snap: *const c_char,
        image: *mut *mut c_void,
        size: *mut u64,
    ) -> c_int;
    pub fn grs_rbd_close(image: *mut c_void);
    pub fn grs_rbd_aio_read(
        image: *mut c_void,
        off: u64,
        len: usize,
        read: *mut *mut c_void,
    ) -> c_int;
    pub fn grs_rbd_read_wait(read: *mut c_void) -> isize;
    pub fn grs_rbd_read_segments(read: *mut c_void, iov: *mut libc::iovec, max: usize) -> usize;
    pub fn grs_rbd_read_release(read: *mut c_void);
}
