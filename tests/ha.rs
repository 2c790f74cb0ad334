//! Behind haproxy as deployments run glance-api (`deploy/haproxy.cfg`, the shipped section):
//! two glance-rs nodes sharing the database and the image directory, clients working through
//! haproxy while each node in turn is taken out and restarted (a rolling restart, by the
//! maintenance file or by SIGTERM alone). No request may fail, and no image is left mid-upload.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Backend, Server, random_bytes, require};
use md5::Digest;
use serde_json::{Value, json};

fn haproxy() -> Option<String> {
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

/// haproxy in the foreground with the shipped section, its ports replaced by the test's.
struct Haproxy {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(bin: &str, nodes: &[u16]) -> Haproxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let shipped =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy.cfg"))
                .unwrap();
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
        // Faster checks than in production, so that the test's restarts are seen quickly.
        let cfg = cfg.replace(
            "check inter 3000 fall 2 rise 5",
            "check inter 500 fall 2 rise 2",
        );
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One client's loop through haproxy: create, upload, download and compare, list, until told
/// to stop. Every failure is recorded with what it was.
async fn client(
    url: String,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    seed: usize,
) -> Vec<(Instant, String)> {
    let http = reqwest::Client::new();
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
            Ok(r) if r.status() == 204 => {}
            Ok(r) => failures.push((Instant::now(), format!("upload {id}: {}", r.status()))),
            Err(e) => failures.push((Instant::now(), format!("upload {id}: {e}"))),
        }
        match http.get(format!("{url}/v2/images/{id}/file")).send().await {
            Ok(r) if r.status() == 200 => {
                let got = r.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                if md5::Md5::digest(&got) != md5::Md5::digest(&data) {
                    failures.push((Instant::now(), format!("download {id}: other bytes")));
                }
            }
            Ok(r) => failures.push((Instant::now(), format!("download {id}: {}", r.status()))),
            Err(e) => failures.push((Instant::now(), format!("download {id}: {e}"))),
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

/// Four clients looping through haproxy (`client`), started once both nodes are seen up.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    clients: Vec<tokio::task::JoinHandle<Vec<(Instant, String)>>>,
}

impl Load {
    async fn start(url: &str) -> Load {
        // Both nodes seen up (rise 2 at 0.5 s).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let clients = (0..4)
            .map(|i| {
                tokio::spawn(client(
                    url.to_string(),
                    stop.clone(),
                    done.clone(),
                    i * 1000,
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(2)).await;
        Load {
            stop,
            done,
            clients,
        }
    }

    /// Stops the clients: the rounds they completed and every failure, when it happened.
    async fn finish(self) -> (usize, Vec<(Instant, String)>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut failures = Vec::new();
        for c in self.clients {
            failures.extend(c.await.unwrap());
        }
        (self.done.load(Ordering::Relaxed), failures)
    }
}

/// Each node in turn, through haproxy under load: the first taken out for maintenance by
/// oslo.middleware's disable file (then stopped, started again, put back), the second stopped
/// with SIGTERM alone (it drains: `/healthcheck` fails for `shutdown_drain_timeout` while it
/// still serves) and started again.
async fn rolling_restart_behind_haproxy_fails_no_request(b: Backend) {
    let Some(hp_bin) = haproxy() else { return };
    let (pa, pb) = (free_port(), free_port());
    let flag = tempfile::tempdir().unwrap();
    let disable = flag.path().join("healthcheck_disable");
    let conf = format!(
        "[DEFAULT]\ngraceful_shutdown_timeout = 10\nshutdown_drain_timeout = 2\n\
         [healthcheck]\ndisable_by_file_path = {}\n",
        disable.display()
    );
    let Some(mut a) = Server::start_with(b, &format!("{conf}[DEFAULT]\nbind_port = {pa}\n")).await
    else {
        return;
    };
    // The second node has its own maintenance file (none), the same drain.
    let mut peer = a
        .start_peer_with(&format!(
            "[DEFAULT]\nbind_port = {pb}\ngraceful_shutdown_timeout = 10\n\
             shutdown_drain_timeout = 2\n[healthcheck]\ndisable_by_file_path = {}\n",
            flag.path().join("other").display()
        ))
        .await;
    let hp = Haproxy::start(&hp_bin, &[pa, pb]);
    let load = Load::start(&hp.url).await;
    // Maintenance: out of the pool by the file, then restarted, then back.
    std::fs::write(&disable, b"").unwrap();
    let r = reqwest::get(format!("{}/healthcheck", a.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await.unwrap(), "DISABLED BY FILE");
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.stop();
    a.restart().await;
    std::fs::remove_file(&disable).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // SIGTERM alone: the node drains, then stops; started again.
    let t = Instant::now();
    peer.stop();
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "drained before closing"
    );
    peer.restart().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rounds, failures) = load.finish().await;
    let failures: Vec<String> = failures.into_iter().map(|(_, f)| f).collect();
    eprintln!("{rounds} rounds of create/upload/download/list through haproxy");
    assert!(rounds > 20, "the clients hardly ran: {rounds}");
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert!(peer.log().contains("draining"), "{}", peer.log());
    // Nothing left mid-upload.
    let imgs = a.get_json("/v2/images?limit=1000").await;
    for i in imgs["images"].as_array().unwrap() {
        assert_ne!(i["status"], "saving", "{i}");
    }
}

/// `kill -9` of one node under load behind haproxy: requests it held fail (counted, the fault
/// window); once haproxy's checks take it out (fall 2 at 0.5 s) none fails; after its lease
/// (2 s) the other node has undone its uploads: nothing stays in `saving`, no data differs.
async fn killed_node_behind_haproxy(b: Backend) {
    let Some(hp_bin) = haproxy() else { return };
    let (pa, pb) = (free_port(), free_port());
    let lease = "[task]\nlease_seconds = 2\n";
    let Some(mut a) = Server::start_with(b, &format!("{lease}[DEFAULT]\nbind_port = {pa}\n")).await
    else {
        return;
    };
    let peer = a
        .start_peer_with(&format!("{lease}[DEFAULT]\nbind_port = {pb}\n"))
        .await;
    let hp = Haproxy::start(&hp_bin, &[pa, pb]);
    let load = Load::start(&hp.url).await;
    let killed = Instant::now();
    a.kill9();
    tokio::time::sleep(Duration::from_secs(5)).await;
    a.restart().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rounds, failures) = load.finish().await;
    // The fault window: haproxy's detection (2 checks at 0.5 s) and the requests in flight.
    let window = Duration::from_secs(2);
    let (inside, outside): (Vec<_>, Vec<_>) = failures
        .iter()
        .partition(|(t, _)| *t >= killed && t.duration_since(killed) < window);
    eprintln!(
        "{} rounds; failed inside the fault window: {} {:?}",
        rounds,
        inside.len(),
        inside.iter().map(|(_, f)| f).collect::<Vec<_>>()
    );
    assert!(
        outside.is_empty(),
        "failed outside the fault window: {outside:?}"
    );
    // Undone by the other node (lease 2 s, a look every 0.7 s) and by the restart.
    let imgs = peer.get_json("/v2/images?limit=1000").await;
    for i in imgs["images"].as_array().unwrap() {
        assert_ne!(i["status"], "saving", "{i}");
    }
}

both_databases!(
    rolling_restart_behind_haproxy_fails_no_request,
    killed_node_behind_haproxy
);
