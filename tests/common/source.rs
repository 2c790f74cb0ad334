//! A web server for tests that fetch image data (import tasks, http locations): on loopback,
//! throttled when asked, counting its downloads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `[import_filtering_opts]` that let a node fetch from a `Source`: loopback allowed by
/// address, any port.
pub const OPEN: &str = "[import_filtering_opts]\nallowed_hosts = [127.0.0.1]\nallowed_ports = []\n";

/// An HTTP server on loopback serving `data` at `/image` (at most `rate` bytes a second, so
/// that a fetch can be interrupted), 404 elsewhere. Counts the GETs of `/image`.
pub struct Source {
    pub port: u16,
    pub gets: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Source {
    pub async fn start(data: Vec<u8>, rate: usize) -> Source {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let data = Arc::new(data);
        let gets = Arc::new(AtomicUsize::new(0));
        let counter = gets.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let data = data.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&req).to_string();
                    let head_only = line.starts_with("HEAD /image ");
                    if !line.starts_with("GET /image ") && !head_only {
                        let _ = sock
                            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .await;
                        return;
                    }
                    if !head_only {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                        data.len()
                    );
                    if sock.write_all(head.as_bytes()).await.is_err() || head_only {
                        return;
                    }
                    let step = (rate / 10).max(1);
                    for chunk in data.chunks(step) {
                        if sock.write_all(chunk).await.is_err() {
                            return;
                        }
                        if rate < usize::MAX {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                });
            }
        });
        Source { port, gets, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.task.abort();
    }
}
