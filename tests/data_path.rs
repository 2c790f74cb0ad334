//! The data path under failure: clients that vanish, racing uploads, deletes during upload, a
//! full or read-only store; and the file store's options (priorities, thin provisioning, modes).

mod common;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::mounts::{HangFs, MemFs, Unhang};
use common::{Backend, Server, random_bytes, require, status};
use md5::Digest as _;
use reqwest::Method;
use serde_json::{Value, json};

async fn new_image(s: &Server) -> String {
    s.create_raw("d").await
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

/// A body larger than its `x-openstack-image-size` is refused at the first chunk past it, not
/// read to the end: the answer comes while the client still has most of it to send.
async fn oversized_body_is_refused_early(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let id = new_image(&s).await;
    let started = Instant::now();
    let r = s
        .req(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .header("x-openstack-image-size", "1000")
        // 200 x 1 MiB, 50 ms apart: 10 s to send it all.
        .body(slow_body(200, 1 << 20, Duration::from_millis(50)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("Size exceeds: expected 1000 bytes, got "),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s.show(&id).await["status"], "queued");
    assert!(s.store_files().is_empty());
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

/// A qcow2 header naming a backing file: refused by the safety check once all of it is read.
fn qcow2_with_backing_file() -> Vec<u8> {
    let mut d = vec![0u8; 4096];
    d[..4].copy_from_slice(b"QFI\xfb");
    d[4..8].copy_from_slice(&3u32.to_be_bytes());
    d[8..16].copy_from_slice(&512u64.to_be_bytes());
    d[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
    d[100..104].copy_from_slice(&104u32.to_be_bytes());
    d
}

/// Uploads refused by the safety check, racing each other on one image, leave it `queued`: a
/// refused upload used to keep `saving` when a concurrent upload had recorded its start just
/// before being refused itself (409), and the image stayed `saving` for good.
async fn refused_uploads_racing_leave_the_image_queued(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let bad = qcow2_with_backing_file();
    for round in 0..25 {
        let v = s
            .create(json!({"name": "q", "disk_format": "qcow2", "container_format": "bare"}))
            .await;
        let id = v["id"].as_str().unwrap().to_string();
        let puts = (0..6).map(|_| s.upload(&id, bad.clone()));
        let codes: Vec<u16> = futures_util::future::join_all(puts)
            .await
            .iter()
            .map(|r| r.status().as_u16())
            .collect();
        assert!(
            codes.iter().all(|c| *c == 415 || *c == 409) && codes.contains(&415),
            "round {round}: {codes:?}"
        );
        assert_eq!(
            s.show(&id).await["status"],
            "queued",
            "round {round}: {codes:?}"
        );
    }
    assert!(s.store_files().is_empty());
}

/// A delete whose read of the image precedes an upload's activation, and whose write follows
/// it, removes the data that activation recorded (it used to stay in the store with no image).
/// The delete is sent at staggered moments around the upload's end to land in that window.
async fn delete_racing_an_upload_end_leaves_no_bytes(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    for i in 0..120u64 {
        let id = new_image(&s).await;
        let upload = s.upload(&id, vec![7u8; 64 << 10]);
        let delete = async {
            tokio::time::sleep(Duration::from_micros(i * 60)).await;
            s.delete(&id).await
        };
        let (up, del) = tokio::join!(upload, delete);
        let up = up.status().as_u16();
        assert!(matches!(up, 204 | 404 | 409 | 410), "upload {up}");
        assert!(matches!(del, 204 | 404), "delete {del}");
        if del == 204 {
            assert!(
                !s.store_files().contains(&id),
                "round {i}: upload {up}, delete {del}, yet the data stayed"
            );
        }
    }
}

/// Many uploads at once, each streamed in pieces, 80 MB in all: more than the server's shared
/// upload budget (32 MiB), so a budget not given back would stall them (503 after the store
/// timeout). Every one lands whole, with its own checksum.
async fn many_concurrent_uploads_all_land(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(new_image(&s).await);
    }
    let (n, size) = (8, 256 << 10);
    let uploads = ids.iter().enumerate().map(|(i, id)| {
        // Image i's chunk k holds bytes (i + k) % 251 + 1 (slow_body's pattern, shifted).
        let body =
            futures_util::stream::iter((0..n).map(move |k| {
                Ok::<Vec<u8>, std::io::Error>(vec![((i + k) % 251) as u8 + 1; size])
            }));
        s.req(Method::PUT, &format!("/v2/images/{id}/file"))
            .header("Content-Type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body))
            .send()
    });
    for r in futures_util::future::join_all(uploads).await {
        assert_eq!(r.unwrap().status(), 204);
    }
    for (i, id) in ids.iter().enumerate() {
        let data: Vec<u8> = (0..n)
            .flat_map(|k| vec![((i + k) % 251) as u8 + 1; size])
            .collect();
        let v = s.show(id).await;
        assert_eq!(v["status"], "active", "{id}");
        assert_eq!(v["size"], (n * size) as u64);
        assert_eq!(v["checksum"], hex::encode(md5::Md5::digest(&data)), "{id}");
    }
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
    assert_eq!(status(s.get(&format!("/v2/images/{id}"))).await, 404);
}

/// A full and a read-only store, written with O_DIRECT (tmpfs takes it when asked) and through
/// the page cache (as on NFS, or tmpfs left to `auto`).
async fn full_and_read_only_store(b: Backend) {
    for direct in ["true", "false"] {
        let base = tempfile::tempdir().unwrap();
        let mnt = base.path().join("store");
        let Some(fs) = MemFs::mount(&mnt, "tmpfs", Some("4m")) else {
            return;
        };
        let conf = format!(
            "[glance_store]\nfilesystem_store_datadir = {}\nfilesystem_store_direct_io = {direct}\n",
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
            assert_eq!(st, 413, "direct {direct}: {text}\n{}", s.log());
            assert!(text.contains("Image storage media is full"), "{text}");
        }
        assert_eq!(wait_status(&s, &id, "queued").await["status"], "queued");
        assert_eq!(
            listing(),
            0,
            "direct {direct}: no partial file on a full store"
        );

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
}

async fn file_store_options(b: Backend) {
    let base = tempfile::tempdir().unwrap();
    let low = base.path().join("low");
    let high = base.path().join("high");
    // What Nova matches against its own mounts to read image files directly.
    let meta = base.path().join("meta.json");
    let entries = json!([
        {"id": "nfs-low", "mountpoint": low.to_str().unwrap()},
        {"id": "nfs-high", "mountpoint": high.to_str().unwrap(), "share": "filer:/glance"},
    ]);
    std::fs::write(&meta, entries.to_string()).unwrap();
    // Thin provisioning through the page cache (with O_DIRECT: the file store's unit tests).
    let conf = format!(
        "[DEFAULT]\nshow_multiple_locations = true\n\
         [glance_store]\nfilesystem_store_datadirs = {}:10\nfilesystem_store_datadirs = {}:200\n\
         filesystem_thin_provisioning = true\nfilesystem_store_file_perm = 640\n\
         filesystem_store_metadata_file = {}\nfilesystem_store_direct_io = false\n",
        low.display(),
        high.display(),
        meta.display()
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
    let v = s.show(&id).await;
    assert_eq!(v["locations"][0]["metadata"], entries[1], "{v}");
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

/// Pages of the file at `path` in the page cache.
fn cached_pages(path: &std::path::Path) -> usize {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    // SAFETY: a read-only shared mapping of an open file, only inspected by mincore (which
    // reads no page), unmapped before return.
    unsafe {
        let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
        let at = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(at, libc::MAP_FAILED);
        let mut resident = vec![0u8; len.div_ceil(page)];
        let r = libc::mincore(at, len, resident.as_mut_ptr());
        libc::munmap(at, len);
        assert_eq!(r, 0, "mincore");
        resident.iter().filter(|p| **p & 1 != 0).count()
    }
}

/// The page cache after an upload: by default the image is written through it and stays there
/// (its first download reads memory), except beyond `filesystem_store_cached_mib`;
/// `filesystem_store_direct_io = auto` writes with O_DIRECT on a local disk (nothing of the
/// upload left in the page cache) and through the cache on tmpfs; `true` on a filesystem that
/// refuses O_DIRECT (ramfs) falls back to buffered writes; `false` writes through the cache.
/// Each directory's choice is logged at start-up.
async fn direct_io_where_it_helps(b: Backend) {
    let base = tempfile::tempdir().unwrap();
    let fs = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(base.path())
        .output()
        .unwrap();
    let fs = String::from_utf8_lossy(&fs.stdout).trim().to_string();
    let local = ["ext2/ext3", "xfs", "btrfs"].contains(&fs.as_str());
    if require(
        "a temporary directory on a local disk filesystem",
        local.then(|| fs.clone()),
        &format!("TMPDIR is on {fs}: point it at ext4, xfs or btrfs"),
    )
    .is_none()
    {
        return;
    }
    let dir = |name: &str| base.path().join(name);
    let Some(_tmpfs) = MemFs::mount(&dir("mem"), "tmpfs", Some("64m")) else {
        return;
    };
    let Some(_ramfs) = MemFs::mount(&dir("ram"), "ramfs", None) else {
        return;
    };
    let conf = format!(
        "[DEFAULT]\nenabled_backends = disk:file, mem:file, ram:file, cached:file, plain:file, \
         capped:file\n\
         [glance_store]\ndefault_backend = disk\n\
         [disk]\nfilesystem_store_datadir = {}\nfilesystem_store_direct_io = auto\n\
         [mem]\nfilesystem_store_datadir = {}\nfilesystem_store_direct_io = auto\n\
         [ram]\nfilesystem_store_datadir = {}\nfilesystem_store_direct_io = true\n\
         [cached]\nfilesystem_store_datadir = {}\nfilesystem_store_direct_io = false\n\
         [plain]\nfilesystem_store_datadir = {}\n\
         [capped]\nfilesystem_store_datadir = {}\nfilesystem_store_cached_mib = 32\n",
        dir("disk").display(),
        dir("mem").display(),
        dir("ram").display(),
        dir("cached").display(),
        dir("plain").display(),
        dir("capped").display(),
    );
    let Some(s) = Server::start_with(b, &conf).await else {
        return;
    };
    let log = s.log();
    let logged = |store: &str, what: &str| {
        let d = dir(store).canonicalize().unwrap();
        assert!(
            log.lines()
                .any(|l| l.contains(what) && l.contains(d.to_str().unwrap())),
            "{store}: no {what:?} in\n{log}"
        );
    };
    logged("disk", "O_DIRECT writes");
    logged(
        "mem",
        "buffered writes (tmpfs is not a local disk filesystem",
    );
    logged("ram", "buffered writes (ramfs refuses O_DIRECT)");
    logged(
        "cached",
        "buffered writes (filesystem_store_direct_io = false)",
    );
    logged(
        "plain",
        "buffered writes (filesystem_store_direct_io = false)",
    );

    // Not a multiple of any block or buffer size: padding must be cut back where there is some.
    let data = random_bytes((3 << 20) + 12345);
    for store in ["disk", "mem", "ram", "cached", "plain"] {
        let id = new_image(&s).await;
        let r = s
            .req(Method::PUT, &format!("/v2/images/{id}/file"))
            .header("Content-Type", "application/octet-stream")
            .header("X-Image-Meta-Store", store)
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{store}: {}", r.text().await.unwrap());
        let path = dir(store).join(&id);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), data.len() as u64);
        let cached = cached_pages(&path);
        let pages = data.len().div_ceil(4096);
        match store {
            "disk" => assert_eq!(cached, 0, "O_DIRECT leaves nothing in the page cache"),
            "cached" | "plain" => assert_eq!(cached, pages, "{store}: all of it stays cached"),
            _ => {}
        }
        assert!(s.download(&id).await == data, "{store}");
        assert_eq!(s.delete(&id).await, 204);
    }
    // Beyond filesystem_store_cached_mib, what is on disk leaves the cache: an image larger
    // than the node's memory does not push everything else out.
    let data = random_bytes(100 << 20);
    let id = new_image(&s).await;
    let r = s
        .req(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .header("X-Image-Meta-Store", "capped")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let cached = cached_pages(&dir("capped").join(&id));
    assert!(
        ((16 << 20) / 4096..=(32 << 20) / 4096).contains(&cached),
        "the first 32 MiB stay cached, the rest goes: {cached} pages"
    );
    assert!(s.download(&id).await == data);
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
    assert_eq!(status(a.get(&format!("/v2/images/{id}"))).await, 404);
    assert!(a.store_files().is_empty());
}

/// Sends requests on one keep-alive connection, pipelined, and reads the responses back in
/// order: (status line, headers, body) each.
async fn pipelined(port: u16, requests: &[String]) -> Vec<(String, String, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    sock.write_all(requests.concat().as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while out.len() < requests.len() {
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let mut chunk = vec![0; 1 << 20];
            let n = tokio::time::timeout(Duration::from_secs(30), sock.read(&mut chunk))
                .await
                .expect("response in time")
                .unwrap();
            assert!(n > 0, "connection closed after {} responses", out.len());
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        buf.drain(..head_end);
        while buf.len() < len {
            let mut chunk = vec![0; 1 << 20];
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(n > 0, "body cut short");
            buf.extend_from_slice(&chunk[..n]);
        }
        let body: Vec<u8> = buf.drain(..len).collect();
        let (status, headers) = head.split_once("\r\n").unwrap();
        out.push((status.to_string(), headers.to_string(), body));
    }
    out
}

/// Downloads larger than one sendfile placeholder, several on one keep-alive connection with
/// ranges in between, and over HTTP/2 (which takes the copying path): every byte right.
async fn downloads_on_one_connection_and_over_http2(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let id = new_image(&s).await;
    let data = random_bytes((40 << 20) + 12345);
    assert_eq!(s.upload(&id, data.clone()).await.status(), 204);
    let get = |range: &str| {
        format!("GET /v2/images/{id}/file HTTP/1.1\r\nHost: 127.0.0.1\r\n{range}\r\n")
    };
    let responses = pipelined(
        s.port,
        &[
            get("Range: bytes=100-20000099\r\n"),
            get(""),
            get("Range: bytes=-5\r\n"),
            format!("GET /v2/images/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
            get(""),
            get("Range: bytes=99999999999-\r\n"),
        ],
    )
    .await;
    let expect: [(&str, &[u8]); 3] = [
        ("206", &data[100..20000100]),
        ("200", &data),
        ("206", &data[data.len() - 5..]),
    ];
    for (i, (status, body)) in expect.iter().enumerate() {
        assert!(responses[i].0.contains(status), "{}", responses[i].0);
        assert!(responses[i].2 == *body, "response {i} differs");
    }
    let shown: Value = serde_json::from_slice(&responses[3].2).unwrap();
    assert_eq!(shown["id"], id.as_str());
    assert!(responses[4].2 == data);
    // webob's reason phrase and body for a 416 (plain text without Accept).
    let (line, _, body) = &responses[5];
    assert_eq!(line, "HTTP/1.1 416 Request Range Not Satisfiable");
    let max = data.len() - 1;
    assert_eq!(
        String::from_utf8_lossy(body),
        format!(
            "416 Request Range Not Satisfiable\n\nThe Range requested is not available.\n\n \
             Invalid start position in Range header. Start position MUST be in the inclusive \
             range [0, {max}].  "
        )
    );

    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2
        .get(format!("{}/v2/images/{id}/file", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap() == data);
}

/// A hung NFS mount, played by a FIFO in place of the image's file (opening it for reading
/// blocks until a writer appears, i.e. for ever): the download fails with 503 after
/// filesystem_store_timeout while the server keeps answering other requests.
async fn hung_store_fails_requests_not_the_server(b: Backend) {
    let Some(s) = Server::start_with(b, "[glance_store]\nfilesystem_store_timeout = 1\n").await
    else {
        return;
    };
    let id = new_image(&s).await;
    assert_eq!(s.upload(&id, b"some bytes".to_vec()).await.status(), 204);
    let path = s.images_dir().join(&id);
    std::fs::remove_file(&path).unwrap();
    let status = Command::new("mkfifo").arg(&path).status().unwrap();
    assert!(status.success());

    let started = Instant::now();
    let hung = {
        let req = s.get(&format!("/v2/images/{id}/file"));
        tokio::spawn(async move { req.send().await.map(|r| r.status().as_u16()) })
    };
    // Meanwhile the API answers at once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let list = s.get("/v2/images").send().await.unwrap();
    assert_eq!(list.status(), 200);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert!(
        !hung.is_finished(),
        "the stuck download should still be waiting"
    );

    assert_eq!(hung.await.unwrap().unwrap(), 503);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert!(s.log().contains("store call timed out"));
    // Still serving (a second hung call also fails alone).
    let again = s
        .get(&format!("/v2/images/{id}/file"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 503);
    assert_eq!(s.show(&id).await["status"], "active");
}

/// A store on a network mount that stops answering mid-transfer: a download in progress is cut
/// (the client sees the connection end, not a body that never finishes) and an upload fails
/// with 503, both within filesystem_store_timeout, while the API keeps answering; the image is
/// back to queued, and once the mount answers again the partial file is removed and the upload
/// succeeds. On SIGTERM with a thread stuck on the mount the server still exits (the kernel
/// completes the exit of a process with a FUSE call in flight only when the daemon answers, so
/// the test checks that every thread but the stuck one has gone).
async fn hung_mount_mid_transfer(b: Backend) {
    let base = tempfile::tempdir().unwrap();
    let Some(fs) = HangFs::mount(base.path()) else {
        return;
    };
    let conf = format!(
        "[glance_store]\nfilesystem_store_datadir = {}\nfilesystem_store_timeout = 2\n",
        fs.mnt.display()
    );
    let Some(mut s) = Server::start_with(b, &conf).await else {
        return;
    };
    let _unhang = Unhang(&fs);
    let data = random_bytes(32 << 20);
    let stored = new_image(&s).await;
    assert_eq!(s.upload(&stored, data.clone()).await.status(), 204);
    let quick = |s: &Server| {
        let req = s.get("/v2/images");
        async move {
            let t = Instant::now();
            let st = req.send().await.unwrap().status();
            (st, t.elapsed())
        }
    };

    // Download: the first bytes arrive, then the mount hangs.
    let mut resp = s
        .get(&format!("/v2/images/{stored}/file"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = resp.chunk().await.unwrap().unwrap().len();
    fs.hang(true);
    let started = Instant::now();
    let (list_status, list_took) = quick(&s).await;
    assert_eq!(list_status, 200);
    assert!(list_took < Duration::from_millis(500), "{list_took:?}");
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(20), resp.chunk()).await {
            Err(_) => break "still waiting after 20 s",
            Ok(Ok(Some(c))) => got += c.len(),
            Ok(Ok(None)) => break "complete",
            Ok(Err(_)) => break "cut",
        }
    };
    let took = started.elapsed();
    assert_eq!(end, "cut", "{got} of {} bytes, after {took:?}", data.len());
    assert!(got < data.len());
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert!(
        s.log()
            .contains("image store read timed out during download")
    );

    // Upload while hung: 503 within the timeout, other requests answered meanwhile.
    let id = new_image(&s).await;
    let started = Instant::now();
    let upload = {
        let req = s
            .req(Method::PUT, &format!("/v2/images/{id}/file"))
            .header("Content-Type", "application/octet-stream")
            .body(random_bytes(8 << 20));
        tokio::spawn(async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (list_status, list_took) = quick(&s).await;
    assert_eq!(list_status, 200);
    assert!(list_took < Duration::from_millis(500), "{list_took:?}");
    let (st, text) = upload.await.unwrap();
    let took = started.elapsed();
    assert_eq!(st, 503, "{text}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert_eq!(wait_status(&s, &id, "queued").await["status"], "queued");

    // The mount answers again: the stuck writer finishes and removes its partial file.
    fs.hang(false);
    let deadline = Instant::now() + Duration::from_secs(15);
    let leftovers = loop {
        let names: Vec<String> = std::fs::read_dir(&fs.backing)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| *n != stored)
            .collect();
        if names.is_empty() || Instant::now() > deadline {
            break names;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
    let again = random_bytes(1 << 20);
    assert_eq!(s.upload(&id, again.clone()).await.status(), 204);
    let back = s
        .get(&format!("/v2/images/{id}/file"))
        .send()
        .await
        .unwrap();
    assert!(back.bytes().await.unwrap() == again);

    // SIGTERM with a thread stuck on the hung mount: the server still exits.
    let stuck = new_image(&s).await;
    fs.hang(true);
    let req = s
        .req(Method::PUT, &format!("/v2/images/{stuck}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(random_bytes(4 << 20));
    let pending = tokio::spawn(async move { req.send().await.map(|r| r.status()) });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = s.pid();
    // Threads still running: neither exited (Z) nor waiting on the mount (D).
    let running = || -> Vec<String> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return vec![];
        };
        tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
            .filter_map(|st| Some(st.rsplit_once(") ")?.1.chars().next()?.to_string()))
            .filter(|state| state != "Z" && state != "D")
            .collect()
    };
    assert!(!running().is_empty());
    let _ = Command::new("kill").arg(pid.to_string()).status();
    // Graceful shutdown lets the stuck upload fail first (store timeout, 2 s), then the runtime
    // waits up to 3 s for store calls before exiting; the rest is slack for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(8);
    while !running().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        running().is_empty(),
        "threads still running after SIGTERM: {:?}",
        running()
    );
    fs.hang(false);
    s.stop();
    let _ = pending.await;
}

/// SIGTERM while a download is stalled by a client that stopped reading: the server lets it
/// run for graceful_shutdown_timeout, then closes it and exits (without the bound it would
/// wait for that client for ever).
async fn stopping_waits_at_most_graceful_shutdown_timeout(b: Backend) {
    let Some(mut s) = Server::start_with(b, "[DEFAULT]\ngraceful_shutdown_timeout = 1\n").await
    else {
        return;
    };
    let id = new_image(&s).await;
    // More than loopback's socket buffers hold, so the response stalls.
    assert_eq!(s.upload(&id, random_bytes(64 << 20)).await.status(), 204);
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    write!(
        conn,
        "GET /v2/images/{id}/file HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    let _ = Command::new("kill").arg(s.pid().to_string()).status();
    // 1 s of grace, then up to 3 s for the runtime's blocking calls (the stalled sendfile);
    // the rest is slack for a loaded machine.
    assert!(s.exited_within(Duration::from_secs(8)), "still running");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "the request in flight had its grace period: exited after {:?}",
        t.elapsed()
    );
    drop(conn);
}

both_databases!(
    stopping_waits_at_most_graceful_shutdown_timeout,
    downloads_on_one_connection_and_over_http2,
    hung_store_fails_requests_not_the_server,
    hung_mount_mid_transfer,
    two_nodes_share_one_store,
    client_killed_mid_upload_leaves_nothing,
    oversized_body_is_refused_early,
    racing_uploads_one_wins,
    refused_uploads_racing_leave_the_image_queued,
    delete_racing_an_upload_end_leaves_no_bytes,
    many_concurrent_uploads_all_land,
    delete_during_upload_is_gone,
    full_and_read_only_store,
    file_store_options,
    direct_io_where_it_helps,
);
