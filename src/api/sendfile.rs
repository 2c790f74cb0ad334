//! Zero-copy downloads: file-store bytes go from the page cache to the socket with sendfile(2)
//! instead of being read into memory and written out again (two copies fewer per byte).
//!
//! hyper owns the socket, so a response body cannot call sendfile itself. Instead the body
//! yields placeholder slices of a static, never-written buffer and queues on the connection what
//! they stand for (file, offset, length); the connection's I/O wrapper recognises placeholders in
//! hyper's writes by their address and sends the file range in their place. A placeholder that
//! does not continue the transfer at the head of the queue fails the connection rather than send
//! wrong bytes; consecutive bodies use alternate halves of the buffer so that a range left over
//! from an earlier response can never pass for the next one's. Only HTTP/1 bodies go this way:
//! HTTP/2 copies body bytes into frames, so its downloads use the ordinary read path.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Sleep;

/// Largest placeholder, so one sendfile call covers this much of the file.
const SLICE: usize = 16 << 20;
/// Two halves, alternated between bodies. Never written, so never paged in: it costs address
/// space, not memory.
static PLACEHOLDER: [u8; 2 * SLICE] = [0; 2 * SLICE];

/// Where a slice starting at `p` lies in the placeholder buffer: (half, offset in it).
fn placeholder_offset(p: *const u8) -> Option<(usize, usize)> {
    let base = PLACEHOLDER.as_ptr() as usize;
    let p = p as usize;
    (base..base + 2 * SLICE)
        .contains(&p)
        .then(|| ((p - base) / SLICE, (p - base) % SLICE))
}

/// A file range a placeholder stands for.
struct Transfer {
    /// The placeholder half its body uses.
    half: usize,
    file: Arc<File>,
    offset: u64,
    len: usize,
    /// Bytes of it already sent.
    sent: usize,
    /// The store's timeout for one read.
    timeout: Option<Duration>,
}

/// The connection's side of the bargain: the queue the bodies fill and the I/O wrapper drains.
/// Handlers reach it through `ConnectInfo<Conn>`.
#[derive(Clone, Default)]
pub struct Conn {
    queue: Arc<Mutex<Queue>>,
    /// The client's address (the proxy's, behind one).
    pub peer: Option<std::net::SocketAddr>,
}

#[derive(Default)]
struct Queue {
    transfers: VecDeque<Transfer>,
    /// Bodies made so far on this connection.
    bodies: usize,
}

impl Conn {
    /// A body sending `len` bytes of `file` from `offset`. The ranges are queued only when hyper
    /// polls for them, i.e. in the order it writes them.
    pub fn body(&self, file: File, offset: u64, len: u64, timeout: Option<Duration>) -> Body {
        let file = Arc::new(file);
        let queue = self.queue.clone();
        // Handlers run in request order, which is the order hyper writes responses in.
        let half = match self.queue.lock() {
            Ok(mut q) => {
                q.bodies += 1;
                q.bodies % 2
            }
            Err(_) => 0,
        };
        let stream = futures_util::stream::unfold((offset, len), move |(at, left)| {
            let (file, queue) = (file.clone(), queue.clone());
            async move {
                if left == 0 {
                    return None;
                }
                let n = left.min(SLICE as u64) as usize;
                let Ok(mut q) = queue.lock() else {
                    return Some((Err(poisoned()), (at, 0)));
                };
                q.transfers.push_back(Transfer {
                    half,
                    file,
                    offset: at,
                    len: n,
                    sent: 0,
                    timeout,
                });
                let start = half * SLICE;
                let chunk = Bytes::from_static(&PLACEHOLDER[start..start + n]);
                Some((Ok::<_, io::Error>(chunk), (at + n as u64, left - n as u64)))
            }
        });
        Body::from_stream(stream)
    }
}

/// The listener handing out wrapped connections.
pub struct Listener(pub TcpListener);

impl axum::serve::Listener for Listener {
    type Io = Io;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (
                        Io {
                            stream,
                            conn: Conn::default(),
                            sending: None,
                        },
                        addr,
                    );
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl Connected<IncomingStream<'_, Listener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, Listener>) -> Self {
        Conn {
            peer: Some(*stream.remote_addr()),
            ..stream.io().conn.clone()
        }
    }
}

/// A TCP connection whose writes may contain placeholders.
pub struct Io {
    stream: TcpStream,
    conn: Conn,
    /// The sendfile call running on a blocking thread, if any.
    sending: Option<Sending>,
}

struct Sending {
    task: JoinHandle<io::Result<usize>>,
    /// When the store's timeout fails it.
    deadline: Option<Pin<Box<Sleep>>>,
    /// The placeholder (half, offset) it sends from: a retried write must be the same one.
    at: (usize, usize),
}

impl Io {
    /// Sends (part of) the file range behind the placeholder `buf`, which starts a write.
    /// One sendfile call per write, on a blocking thread (a file read may block, on a hung NFS
    /// mount for ever: the store's timeout then fails the download); waiting for room in the
    /// socket happens here, on the runtime, like any other write.
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        (half, at): (usize, usize),
    ) -> Poll<io::Result<usize>> {
        loop {
            if self.sending.is_none() {
                ready!(self.stream.poll_write_ready(cx))?;
                let (file, offset, n, limit) = {
                    let q = self.conn.queue.lock().map_err(|_| poisoned())?;
                    // The placeholder must continue the transfer at the head of the queue.
                    match q.transfers.front() {
                        Some(t) if t.half == half && t.sent == at && at < t.len => (
                            t.file.clone(),
                            t.offset + at as u64,
                            buf.len().min(t.len - at),
                            t.timeout,
                        ),
                        _ => return Poll::Ready(Err(io::Error::other("unexpected placeholder"))),
                    }
                };
                // A duplicate, so the fd cannot be closed and reused under the blocking thread
                // if the connection goes away meanwhile.
                let sock = self.stream.as_fd().try_clone_to_owned()?;
                let task = tokio::task::spawn_blocking(move || send_once(&sock, &file, offset, n));
                self.sending = Some(Sending {
                    task,
                    deadline: limit.map(|l| Box::pin(tokio::time::sleep(l))),
                    at: (half, at),
                });
            }
            let Some(Sending {
                task,
                deadline,
                at: started,
            }) = self.sending.as_mut()
            else {
                return Poll::Ready(Err(io::Error::other("sendfile task missing")));
            };
            if *started != (half, at) {
                return Poll::Ready(Err(interleaved()));
            }
            let done = match Pin::new(task).poll(cx) {
                Poll::Ready(done) => done,
                Poll::Pending => {
                    if let Some(d) = deadline {
                        ready!(d.as_mut().poll(cx));
                        self.sending = None;
                        tracing::error!("image store read timed out during download");
                        // The stuck thread holds a duplicate of the socket, so closing ours
                        // would not end the connection: the client would wait for the rest of
                        // the body for ever. Shut it down for every holder.
                        // SAFETY: shutdown on an fd this connection owns; no memory involved.
                        unsafe { libc::shutdown(self.stream.as_raw_fd(), libc::SHUT_RDWR) };
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "image store read timed out",
                        )));
                    }
                    return Poll::Pending;
                }
            };
            self.sending = None;
            match done.map_err(io::Error::other)? {
                Ok(n) => {
                    let mut q = self.conn.queue.lock().map_err(|_| poisoned())?;
                    if let Some(t) = q.transfers.front_mut() {
                        t.sent += n;
                        if t.sent >= t.len {
                            q.transfers.pop_front();
                        }
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The socket is full. tokio only learns that from a WouldBlock inside
                    // try_io, so ask the socket again there: if it is still full, tokio clears
                    // its readiness and the next poll_write_ready waits for room (an edge after
                    // that check is not lost); if room appeared meanwhile, send again.
                    let fd = self.stream.as_raw_fd();
                    match self.stream.try_io(Interest::WRITABLE, || writable_now(fd)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// Ok if the socket has room (or an error for sendfile to report), WouldBlock if full.
fn writable_now(fd: std::os::fd::RawFd) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: pfd is a valid array of one pollfd; a zero timeout never blocks.
    let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if pfd.revents == 0 {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    Ok(())
}

/// hyper retries a write with the same buffers; anything else while a sendfile runs would
/// interleave bytes on the wire, so the connection fails instead.
fn interleaved() -> io::Error {
    io::Error::other("write interleaved with a running sendfile")
}

fn poisoned() -> io::Error {
    io::Error::other("connection state poisoned")
}

/// Blocking: one sendfile(2) of up to `n` bytes of `file` from `offset` to the non-blocking
/// socket. WouldBlock when the socket has no room; an error if the file ends early.
fn send_once(sock: &OwnedFd, file: &File, offset: u64, n: usize) -> io::Result<usize> {
    let mut off = offset as libc::off_t;
    loop {
        // SAFETY: both fds are open for the duration of the call; off is a valid off_t.
        let rc = unsafe { libc::sendfile(sock.as_raw_fd(), file.as_raw_fd(), &mut off, n) };
        match rc {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "image file shorter than its recorded size",
                ));
            }
            r if r > 0 => return Ok(r as usize),
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match placeholder_offset(buf.as_ptr()) {
            Some(at) => self.poll_send(cx, buf, at),
            None if self.sending.is_some() => Poll::Ready(Err(interleaved())),
            None => Pin::new(&mut self.stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // Ordinary slices up to the first placeholder go as they are; a placeholder at the
        // front is sent from the file. Either way a short count tells hyper where to resume.
        let first = bufs
            .iter()
            .position(|b| !b.is_empty() && placeholder_offset(b.as_ptr()).is_some());
        match first {
            Some(0) => {
                let b: &[u8] = &bufs[0];
                match placeholder_offset(b.as_ptr()) {
                    Some(at) => self.poll_send(cx, b, at),
                    None => Poll::Ready(Err(io::Error::other("placeholder vanished"))),
                }
            }
            _ if self.sending.is_some() => Poll::Ready(Err(interleaved())),
            Some(i) => Pin::new(&mut self.stream).poll_write_vectored(cx, &bufs[..i]),
            None => Pin::new(&mut self.stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        // hyper then queues body buffers as they are instead of copying them together, which
        // is what keeps placeholders intact.
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_recognised_by_address() {
        assert_eq!(placeholder_offset(PLACEHOLDER.as_ptr()), Some((0, 0)));
        assert_eq!(placeholder_offset(PLACEHOLDER[5..].as_ptr()), Some((0, 5)));
        assert_eq!(
            placeholder_offset(PLACEHOLDER[SLICE + 7..].as_ptr()),
            Some((1, 7))
        );
        let other = [0u8; 16];
        assert_eq!(placeholder_offset(other.as_ptr()), None);
    }
}
