//! systemd's readiness protocol (`sd_notify`): with `Type=notify`, systemd (and anything that
//! sets `NOTIFY_SOCKET`) learns when the node serves and when it stops, so a rolling restart
//! waits for real readiness instead of a fixed delay. Without `NOTIFY_SOCKET` nothing is sent.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (`READY=1`, `STOPPING=1`, ...) to `$NOTIFY_SOCKET`; a path, or an abstract
/// socket when it starts with `@`. Failures are logged, never fatal.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|sock| {
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)
        } else {
            sock.send_to(state.as_bytes(), &path)
        }
    });
    if let Err(e) = sent {
        tracing::warn!(socket = ?path, error = %e, "could not notify the service manager");
    }
}
