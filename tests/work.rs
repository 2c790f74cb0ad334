//! Work that survives any node: an upload on a node that dies (`kill -9`) is undone by another
//! node sharing the database and store once its lease runs out (the image back in `queued`, no
//! bytes left in the store, a new upload through the other node succeeds); a node restarted on
//! the same address undoes its own at once; a node stopped with SIGTERM hands its work over; a
//! removal of data the store refused is tried again until the data is gone.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{Backend, Server};

/// Starts an upload of a declared `total` bytes to `s` on a raw connection and sends `sent` of
/// them; returns the open connection (the upload stays in progress while it lives).
fn upload_in_progress(s: &Server, id: &str, total: u64, sent: usize) -> std::net::TcpStream {
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    write!(
        sock,
        "PUT /v2/images/{id}/file HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..sent / chunk.len() {
        sock.write_all(&chunk).unwrap();
    }
    sock
}

async fn status_of(s: &Server, id: &str) -> String {
    s.show(id).await["status"].as_str().unwrap().to_string()
}

/// Waits (bounded) until `cond` holds; how long it took.
async fn within<F: std::future::Future<Output = bool>>(
    limit: Duration,
    what: &str,
    mut cond: impl FnMut() -> F,
) -> Duration {
    let t = Instant::now();
    while !cond().await {
        assert!(t.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t.elapsed()
}

async fn new_image(s: &Server) -> String {
    s.create(serde_json::json!({"name": "w", "disk_format": "raw", "container_format": "bare"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Two nodes, one store directory and one database: the node receiving an upload is killed
/// halfway; the other notices within the lease (2 s) plus a scan and undoes it.
async fn killed_node_upload_is_undone_by_another(b: Backend) {
    let lease = "[task]\nlease_seconds = 2\n";
    let Some(mut a) = Server::start_with(b, lease).await else {
        return;
    };
    let peer = a.start_peer_with(lease).await;
    let id = new_image(&a).await;
    let _sock = upload_in_progress(&a, &id, 1 << 30, 64 << 20);
    within(Duration::from_secs(30), "upload under way", || async {
        status_of(&peer, &id).await == "saving" && !a.store_files().is_empty()
    })
    .await;
    a.kill9();
    let took = within(
        Duration::from_secs(20),
        "the image back in queued, no bytes left",
        || {
            let peer = &peer;
            let (id, a) = (&id, &a);
            async move { status_of(peer, id).await == "queued" && a.store_files().is_empty() }
        },
    )
    .await;
    eprintln!("killed node's upload undone after {took:?}");
    let log = peer.log();
    assert!(log.contains("reclaiming abandoned work"), "{log}");
    assert!(log.contains("abandoned upload undone"), "{log}");
    // A new upload through the surviving node succeeds.
    let data = common::random_bytes(3 << 20);
    assert_eq!(peer.upload(&id, data.clone()).await.status(), 204);
    assert!(peer.download(&id).await == data);
    assert_eq!(a.store_files(), vec![id.clone()]);
}

/// A node restarted on the same address undoes what it held at once, long before its lease
/// (10 minutes here) would have run out.
async fn restarted_node_undoes_its_own_upload_at_once(b: Backend) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = format!("[DEFAULT]\nbind_port = {port}\n[task]\nlease_seconds = 600\n");
    let Some(mut a) = Server::start_with(b, &conf).await else {
        return;
    };
    let id = new_image(&a).await;
    let sock = upload_in_progress(&a, &id, 1 << 30, 32 << 20);
    within(Duration::from_secs(30), "upload under way", || async {
        status_of(&a, &id).await == "saving"
    })
    .await;
    a.kill9();
    drop(sock);
    a.restart().await;
    assert_eq!(status_of(&a, &id).await, "queued", "undone before serving");
    assert!(a.store_files().is_empty(), "{:?}", a.store_files());
    assert_eq!(a.upload(&id, b"again".to_vec()).await.status(), 204);
}

/// A node stopped with SIGTERM while an upload outlasts its grace period hands the work back:
/// the other node takes it at its next look (2 s), not when the lease (60 s) runs out.
async fn stopped_node_hands_its_work_over(b: Backend) {
    let conf = "[DEFAULT]\ngraceful_shutdown_timeout = 1\n[task]\nlease_seconds = 60\n";
    let Some(mut a) = Server::start_with(b, conf).await else {
        return;
    };
    let peer = a.start_peer_with("[task]\nlease_seconds = 60\n").await;
    let id = new_image(&a).await;
    let _sock = upload_in_progress(&a, &id, 1 << 30, 16 << 20);
    within(Duration::from_secs(30), "upload under way", || async {
        status_of(&peer, &id).await == "saving"
    })
    .await;
    a.stop();
    within(
        Duration::from_secs(15),
        "handed over and undone",
        || async { status_of(&peer, &id).await == "queued" && a.store_files().is_empty() },
    )
    .await;
    assert!(a.log().contains("leases handed back"), "{}", a.log());
}

/// Files made immutable (`chattr +i`: not even root may remove them) until dropped.
struct Immutable(Vec<std::path::PathBuf>);

impl Immutable {
    fn set(paths: &[std::path::PathBuf], on: bool) {
        let flag = if on { "+i" } else { "-i" };
        let st = std::process::Command::new("chattr")
            .arg(flag)
            .args(paths)
            .status()
            .expect("chattr (e2fsprogs)");
        assert!(st.success(), "chattr {flag}: needs root and ext4");
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        Immutable::set(&self.0, false);
    }
}

/// Data whose removal fails (the store refuses: the file is immutable) is not left behind: the
/// removal is recorded as work that the nodes try again until the store lets the data go;
/// data that the image records again meanwhile is kept.
async fn failed_removals_are_retried_until_the_data_is_gone(b: Backend) {
    let conf = "[DEFAULT]\nshow_multiple_locations = true\n[task]\nlease_seconds = 1\n";
    let Some(s) = Server::start_with(b, conf).await else {
        return;
    };
    let id = new_image(&s).await;
    let dir = s.images_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    let files: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|f| dir.join(format!("{id}-{f}")))
        .collect();
    let urls: Vec<String> = files
        .iter()
        .map(|f| {
            std::fs::write(f, b"same bytes").unwrap();
            format!("file://{}", f.display())
        })
        .collect();
    let value: Vec<_> = urls
        .iter()
        .map(|u| serde_json::json!({"url": u, "metadata": {}}))
        .collect();
    let r = s
        .patch(
            &id,
            serde_json::json!([{"op": "replace", "path": "/locations", "value": value}]),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    Immutable::set(&files[1..], true);
    let held = Immutable(files[1..].to_vec());
    // b removed for good; c removed, then added back before its removal is tried again.
    for _ in 0..2 {
        let r = s
            .patch(
                &id,
                serde_json::json!([{"op": "remove", "path": "/locations/1"}]),
            )
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let r = s
        .patch(
            &id,
            serde_json::json!([{"op": "add", "path": "/locations/-", "value": {"url": urls[2], "metadata": {}}}]),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // Tried again (a lease later, then less often) and refused while the store refuses.
    within(Duration::from_secs(20), "a retry refused", || async {
        s.log().contains("reclaimed work failed; will retry")
    })
    .await;
    assert!(files[1].exists() && files[2].exists());
    drop(held);
    within(Duration::from_secs(30), "b's data removed", || async {
        !files[1].exists()
    })
    .await;
    within(Duration::from_secs(30), "c's removal dropped", || async {
        s.log().contains("an image records the data: kept")
    })
    .await;
    assert!(files[0].exists(), "a was never removed");
    assert!(files[2].exists(), "c is recorded again: its data stays");
    let shown: Vec<String> = s.show(&id).await["locations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["url"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(shown, [urls[0].clone(), urls[2].clone()]);
    let log = s.log();
    assert_eq!(
        log.matches("could not remove image data; will try again unless an image records it")
            .count(),
        2,
        "{log}"
    );
    assert!(
        log.contains("image data whose removal had failed removed"),
        "{log}"
    );
}

both_databases!(
    failed_removals_are_retried_until_the_data_is_gone,
    killed_node_upload_is_undone_by_another,
    restarted_node_undoes_its_own_upload_at_once,
    stopped_node_hands_its_work_over
);
