//! The data path under failure: clients that vanish, racing uploads, deletes during upload, a
//! full or read-only store; and the file store's options (priorities, thin provisioning, modes).

mod common;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Backend, Server, random_bytes, require};
use reqwest::Method;
use serde_json::{Value, json};

async fn new_image(s: &Server) -> String {
    let v = s
        .create(json!({"name": "d", "disk_format": "raw", "container_format": "bare"}))
        .await;
    v["id"].as_str().unwrap().to_string()
}

/// Polls (bounded) until the image has `status`.
async fn wait_status(s: &Server, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = s.show(id).await;
        if v["status"] == status || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A request body that sends `n` chunks of `size` bytes, pausing `pause` between them.
fn slow_body(n: usize, size: usize, pause: Duration) -> reqwest::Body {
    let stream = futures_util::stream::unfold(0usize, move |i| async move {
        if i == n {
            return None;
        }
        tokio::time::sleep(pause).await;
        Some((
            Ok::<Vec<u8>, std::io::Error>(vec![(i % 251) as u8 + 1; size]),
            i + 1,
        ))
    });
    reqwest::Body::wrap_stream(stream)
}

async fn client_killed_mid_upload_leaves_nothing(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let id = new_image(&s).await;
    // Raw socket: promise 50 MB, send 3 MB, vanish.
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    write!(
        sock,
        "PUT /v2/images/{id}/file HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 50000000\r\n\r\n"
    )
    .unwrap();
    sock.write_all(&random_bytes(3 << 20)).unwrap();
    // While it is in flight the image is saving.
    let v = wait_status(&s, &id, "saving").await;
    assert_eq!(v["status"], "saving");
    drop(sock);
    let v = wait_status(&s, &id, "queued").await;
    assert_eq!(
        v["status"], "queued",
        "abandoned upload returns the image to queued"
    );
    assert_eq!(v["size"], Value::Null);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.store_files().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        s.store_files().is_empty(),
        "partial bytes left: {:?}",
        s.store_files()
    );
    // And it can be uploaded again.
    assert_eq!(s.upload(&id, b"complete".to_vec()).await.status(), 204);
}

async fn racing_uploads_one_wins(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let id = new_image(&s).await;
    let first = s
        .req(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(slow_body(10, 100_000, Duration::from_millis(100)))
        .send();
    let second = async {
        // Start once the first has taken the image.
        wait_status(&s, &id, "saving").await;
        s.upload(&id, b"other".to_vec()).await.status().as_u16()
    };
    let (a, b2) = tokio::join!(first, second);
    assert_eq!(a.unwrap().status(), 204);
    assert_eq!(b2, 409);
    let v = s.show(&id).await;
    assert_eq!(v["size"], 1_000_000);
    assert_eq!(s.store_files(), vec![id]);
}

async fn delete_during_upload_is_gone(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let id = new_image(&s).await;
    let upload = s
        .req(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(slow_body(10, 100_000, Duration::from_millis(100)))
        .send();
    let delete = async {
        wait_status(&s, &id, "saving").await;
        s.delete(&id).await
    };
    let (up, del) = tokio::join!(upload, delete);
    assert_eq!(del, 204);
    let up = up.unwrap();
    assert_eq!(up.status(), 410);
    assert!(
        up.text()
            .await
            .unwrap()
            .contains("may have been deleted during the upload")
    );
    assert!(s.store_files().is_empty(), "{:?}", s.store_files());
    assert_eq!(
        s.get(&format!("/v2/images/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

/// A small tmpfs as the store: needs root (CI runs as root); unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                dir.to_str().unwrap(),
            ])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        require(
            "a tmpfs mount (root)",
            ok.then(|| "ok".to_string()),
            "run the tests as root",
        )?;
        Some(Tmpfs(dir.to_path_buf()))
    }

    fn remount(&self, mode: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{mode}"), self.0.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

async fn full_and_read_only_store(b: Backend) {
    let base = tempfile::tempdir().unwrap();
    let mnt = base.path().join("store");
    let Some(fs) = Tmpfs::mount(&mnt, "4m") else {
        return;
    };
    let conf = format!(
        "[glance_store]\nfilesystem_store_datadir = {}\n",
        mnt.display()
    );
    let Some(mut s) = Server::start_with(b, &conf).await else {
        return;
    };
    let listing = || std::fs::read_dir(&mnt).unwrap().count();

    // Full: 413, queued, no partial file.
    let id = new_image(&s).await;
    let r = s
        .req(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(slow_body(8, 1 << 20, Duration::from_millis(1)))
        .send()
        .await;
    if let Ok(r) = r {
        let st = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(st, 413, "{text}");
        assert!(text.contains("Image storage media is full"), "{text}");
    }
    assert_eq!(wait_status(&s, &id, "queued").await["status"], "queued");
    assert_eq!(listing(), 0, "no partial file on a full store");

    // Read-only: 503, queued.
    fs.remount("ro");
    let id2 = new_image(&s).await;
    let r = s.upload(&id2, b"abc".to_vec()).await;
    let st = r.status();
    let text = r.text().await.unwrap();
    fs.remount("rw");
    assert_eq!(st, 503, "{text}");
    assert!(
        text.contains("Insufficient permissions on image storage media"),
        "{text}"
    );
    assert_eq!(s.show(&id2).await["status"], "queued");
    // Recovers once writable.
    assert_eq!(s.upload(&id2, b"abc".to_vec()).await.status(), 204);
    s.stop();
}

async fn file_store_options(b: Backend) {
    let base = tempfile::tempdir().unwrap();
    let low = base.path().join("low");
    let high = base.path().join("high");
    let conf = format!(
        "[glance_store]\nfilesystem_store_datadirs = {}:10\nfilesystem_store_datadirs = {}:200\n\
         filesystem_thin_provisioning = true\nfilesystem_store_file_perm = 640\n",
        low.display(),
        high.display()
    );
    let Some(s) = Server::start_with(b, &conf).await else {
        return;
    };
    let id = new_image(&s).await;
    let mut data = vec![0u8; 16 << 20];
    data[0] = 9;
    data[(16 << 20) - 1] = 9;
    let r = s
        .req(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let path = high.join(&id);
    assert!(path.exists(), "the highest priority directory wins");
    assert!(!low.join(&id).exists());
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), 16 << 20);
    assert!(
        meta.blocks() * 512 < 1 << 20,
        "zeros became holes ({} blocks)",
        meta.blocks()
    );
    assert_eq!(meta.mode() & 0o777, 0o640);
    let got = s.download(&id).await;
    assert!(got == data);
    assert_eq!(s.delete(&id).await, 204);
    assert!(!path.exists());
}

/// Two API nodes on one database and one store directory: data written through one is served,
/// and deleted, through the other.
async fn two_nodes_share_one_store(b: Backend) {
    let Some(a) = Server::start(b).await else {
        return;
    };
    let peer = a.start_peer().await;
    let id = new_image(&a).await;
    let data = random_bytes(2 << 20);
    assert_eq!(a.upload(&id, data.clone()).await.status(), 204);
    let got = peer.download(&id).await;
    assert!(got == data);
    // The image is active for both nodes: a second upload conflicts.
    assert_eq!(peer.upload(&id, b"x".to_vec()).await.status(), 409);
    assert_eq!(peer.delete(&id).await, 204);
    assert_eq!(
        a.get(&format!("/v2/images/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert!(a.store_files().is_empty());
}

both_databases!(
    two_nodes_share_one_store,
    client_killed_mid_upload_leaves_nothing,
    racing_uploads_one_wins,
    delete_during_upload_is_gone,
    full_and_read_only_store,
    file_store_options,
);
