//! Giving memory back to the system after bursts of transfers.
//!
//! Uploads and store-buffered downloads allocate their buffers on blocking threads; glibc keeps
//! what they free in its per-thread arenas (140-150 MiB of RSS after 50 concurrent uploads,
//! several hundred MiB after 20 RBD uploads and downloads), which an idle server should not
//! hold. Each transfer holds a [`Transfer`]; when the last one ends the allocator is asked to
//! return its free pages.

use std::sync::atomic::{AtomicUsize, Ordering};

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// One transfer under way (an upload's pipeline, a download's store reader).
pub struct Transfer(());

impl Transfer {
    pub fn begin() -> Transfer {
        LIVE.fetch_add(1, Ordering::AcqRel);
        Transfer(())
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        if LIVE.fetch_sub(1, Ordering::AcqRel) == 1
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            // Walks every arena: a few milliseconds, so off the async threads.
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            rt.spawn_blocking(|| {
                // SAFETY: malloc_trim only returns free pages to the system.
                unsafe { libc::malloc_trim(0) };
            });
            #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
            let _ = rt;
        }
    }
}
