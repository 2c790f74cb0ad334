//! What the high-availability tests share: Debian's haproxy with the shipped sections
//! (`deploy/haproxy.cfg` in front of the API nodes, `deploy/haproxy-mariadb.cfg` in front of a
//! Galera cluster), and clients looping through it while faults are made, each failure
//! recorded with when it happened.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use md5::Digest;
use serde_json::{Value, json};

use super::{random_bytes, require};

pub fn haproxy() -> Option<String> {
    let found = Command::new("sh")
        .args(["-c", "command -v haproxy || ls /usr/sbin/haproxy"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .filter(|p| !p.is_empty());
    require(
        "haproxy",
        found,
        "scripts/install-deps installs Debian's haproxy",
    )
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// haproxy in the foreground with a shipped section, its ports replaced by the test's.
pub struct Haproxy {
    child: Child,
    pub port: u16,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// `deploy/haproxy.cfg` in front of the API nodes listening on `nodes`.
    pub fn start(bin: &str, nodes: &[u16]) -> Haproxy {
        // Faster checks than in production, so that the test's restarts are seen quickly.
        Self::shipped(
            bin,
            "haproxy.cfg",
            nodes,
            &[(
                "check inter 3000 fall 2 rise 5",
                "check inter 500 fall 2 rise 2",
            )],
        )
    }

    /// `deploy/haproxy-mariadb.cfg` in front of the Galera nodes listening on `nodes` (the
    /// first the writer); `url()` is then the database's.
    pub fn database(bin: &str, nodes: &[u16]) -> Haproxy {
        Self::shipped(
            bin,
            "haproxy-mariadb.cfg",
            nodes,
            &[(
                "check inter 2000 rise 2 fall 5",
                "check inter 500 rise 2 fall 2",
            )],
        )
    }

    /// `mysql://` URL of the database behind this haproxy.
    pub fn mysql_url(&self) -> String {
        format!("mysql://glance:glance@127.0.0.1:{}", self.port)
    }

    fn shipped(bin: &str, file: &str, nodes: &[u16], faster: &[(&str, &str)]) -> Haproxy {
        let port = free_port();
        let path = format!("{}/deploy/{file}", env!("CARGO_MANIFEST_DIR"));
        let shipped = std::fs::read_to_string(path).unwrap();
        let mut cfg = String::new();
        let mut servers = nodes.iter();
        for line in shipped.lines() {
            let t = line.trim_start();
            if t.starts_with("bind ") {
                cfg.push_str(&format!("    bind 127.0.0.1:{port}\n"));
            } else if t.starts_with("server ") {
                // The shipped check settings, on the test's nodes.
                if let Some(p) = servers.next() {
                    let name = t.split_whitespace().nth(1).unwrap();
                    let rest = t.splitn(4, ' ').nth(3).unwrap();
                    cfg.push_str(&format!("    server {name} 127.0.0.1:{p} {rest}\n"));
                }
            } else {
                cfg.push_str(line);
                cfg.push('\n');
            }
        }
        for (from, to) in faster {
            cfg = cfg.replace(from, to);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, &cfg).unwrap();
        let child = Command::new(bin)
            .args(["-db", "-f", path.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        Haproxy {
            child,
            port,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a client saw go wrong, and when.
pub type Failures = Vec<(Instant, String)>;

/// Images whose upload a client was told succeeded: their id and the MD5 of their data.
pub type Uploaded = Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// One client's loop through haproxy: create, upload, download and compare, patch, list, until
/// told to stop. Every failure is recorded with what it was.
async fn client(
    url: String,
    token: Option<String>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    uploaded: Uploaded,
    seed: usize,
) -> Failures {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        headers.insert("x-auth-token", t.parse().unwrap());
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .default_headers(headers)
        .build()
        .unwrap();
    let mut failures = Vec::new();
    let mut n = seed;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let data = random_bytes(64 << 10 | (n % 7) << 10);
        let r = http
            .post(format!("{url}/v2/images"))
            .json(&json!({"name": format!("ha-{n}"), "disk_format": "raw", "container_format": "bare"}))
            .send()
            .await;
        let id = match r {
            Ok(r) if r.status() == 201 => r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
            Ok(r) => {
                failures.push((Instant::now(), format!("create: {}", r.status())));
                continue;
            }
            Err(e) => {
                failures.push((Instant::now(), format!("create: {e}")));
                continue;
            }
        };
        match http
            .put(format!("{url}/v2/images/{id}/file"))
            .header("Content-Type", "application/octet-stream")
            .body(data.clone())
            .send()
            .await
        {
            Ok(r) if r.status() == 204 => {
                let md5 = hex::encode(md5::Md5::digest(&data));
                uploaded.lock().unwrap().push((id.clone(), md5));
            }
            Ok(r) => failures.push((Instant::now(), format!("upload {id}: {}", r.status()))),
            Err(e) => failures.push((Instant::now(), format!("upload {id}: {e}"))),
        }
        match http.get(format!("{url}/v2/images/{id}/file")).send().await {
            Ok(r) if r.status() == 200 => match r.bytes().await {
                // A body cut short (the store stopped answering) is an error, not data.
                Err(e) => failures.push((Instant::now(), format!("download {id}: cut: {e}"))),
                Ok(got) if md5::Md5::digest(&got) != md5::Md5::digest(&data) => {
                    failures.push((Instant::now(), format!("download {id}: other bytes")));
                }
                Ok(_) => {}
            },
            Ok(r) => failures.push((Instant::now(), format!("download {id}: {}", r.status()))),
            Err(e) => failures.push((Instant::now(), format!("download {id}: {e}"))),
        }
        match http
            .patch(format!("{url}/v2/images/{id}"))
            .header(
                "Content-Type",
                "application/openstack-images-v2.1-json-patch",
            )
            .json(&json!([{"op": "add", "path": "/round", "value": n.to_string()}]))
            .send()
            .await
        {
            Ok(r) if r.status() == 200 => {}
            Ok(r) => failures.push((Instant::now(), format!("patch {id}: {}", r.status()))),
            Err(e) => failures.push((Instant::now(), format!("patch {id}: {e}"))),
        }
        match http.get(format!("{url}/v2/images?limit=5")).send().await {
            Ok(r) if r.status() == 200 => {}
            Ok(r) => failures.push((Instant::now(), format!("list: {}", r.status()))),
            Err(e) => failures.push((Instant::now(), format!("list: {e}"))),
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    failures
}

/// Clients looping through haproxy (`client`), started once the nodes are seen up.
pub struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    pub uploaded: Uploaded,
    clients: Vec<tokio::task::JoinHandle<Failures>>,
}

impl Load {
    /// Four clients.
    pub async fn start(url: &str) -> Load {
        Self::clients(url, 4).await
    }

    pub async fn clients(url: &str, n: usize) -> Load {
        Self::clients_with(url, n, None).await
    }

    /// `n` clients sending `token` (a Keystone token) with every request.
    pub async fn clients_with(url: &str, n: usize, token: Option<String>) -> Load {
        // The nodes seen up (rise 2 at 0.5 s).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let uploaded = Uploaded::default();
        let clients = (0..n)
            .map(|i| {
                tokio::spawn(client(
                    url.to_string(),
                    token.clone(),
                    stop.clone(),
                    done.clone(),
                    uploaded.clone(),
                    i * 100_000,
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(2)).await;
        Load {
            stop,
            done,
            uploaded,
            clients,
        }
    }

    /// Rounds completed so far.
    pub fn rounds(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// Stops the clients: the rounds they completed and every failure, when it happened.
    pub async fn finish(self) -> (usize, Failures) {
        self.stop.store(true, Ordering::Relaxed);
        let mut failures = Vec::new();
        for c in self.clients {
            failures.extend(c.await.unwrap());
        }
        (self.done.load(Ordering::Relaxed), failures)
    }
}

/// One row of a fault matrix: what failed while the fault lasted (`from`..`to`, recovery
/// included), printed with its kinds; returns how many failed inside.
pub fn report(fault: &str, from: Instant, to: Instant, failures: &Failures) -> usize {
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for f in failures.iter().filter(|f| f.0 >= from && f.0 < to) {
        let (op, rest) = f.1.split_once(' ').unwrap_or((&f.1, ""));
        let what = rest.rsplit(": ").next().unwrap_or(rest);
        *kinds
            .entry(format!("{} {what}", op.trim_end_matches(':')))
            .or_default() += 1;
    }
    let inside: usize = kinds.values().sum();
    println!(
        "| {fault} | {inside} inside the {:.1} s window | {kinds:?} |",
        (to - from).as_secs_f64()
    );
    inside
}

/// Waits (bounded, 30 s) until no image is left in `saving` or `importing`; panics with what
/// is stuck.
pub async fn nothing_stuck(s: &super::Server, token: Option<&str>) {
    let t = Instant::now();
    loop {
        let mut stuck = Vec::new();
        for status in ["saving", "importing"] {
            let mut rb = s.get(&format!("/v2/images?status={status}&limit=1000"));
            if let Some(t) = token {
                rb = rb.header("X-Auth-Token", t);
            }
            let v: Value = rb.send().await.unwrap().json().await.unwrap();
            stuck.extend(v["images"].as_array().cloned().unwrap_or_default());
        }
        if stuck.is_empty() {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "stuck: {stuck:?}\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
