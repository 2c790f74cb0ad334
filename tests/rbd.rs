//! The RBD store against a real one-node Ceph cluster (`scripts/ceph.sh`, started by
//! `scripts/test`): what Nova and Cinder rely on — a protected snapshot to clone, a refused
//! delete while clones exist — and nothing left behind by a failed upload.
#![cfg(feature = "rbd")]

mod common;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Backend, Server, ceph_conf, random, random_bytes, run_ok, status, venv};
use reqwest::Method;
use serde_json::{Value, json};

/// `rbd` with our cluster's conf, never hanging (it blocks forever when the OSD is down).
fn rbd(conf: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("timeout")
        .args(["60", "rbd", "-c", conf])
        .args(args)
        .output()
        .expect("rbd");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

async fn start(b: Backend) -> Option<(Server, String)> {
    start_on_pool(b, "images", "").await
}

/// `more`: further `[glance_store]` lines.
async fn start_on_pool(b: Backend, pool: &str, more: &str) -> Option<(Server, String)> {
    start_configured(b, pool, "", more).await
}

/// `defaults`: further `[DEFAULT]` lines; `more`: further `[glance_store]` lines.
async fn start_configured(
    b: Backend,
    pool: &str,
    defaults: &str,
    more: &str,
) -> Option<(Server, String)> {
    let conf = ceph_conf()?;
    let extra = format!(
        "[DEFAULT]\nshow_image_direct_url = true\nshow_multiple_locations = true\n{defaults}\
         [glance_store]\nstores = rbd\ndefault_store = rbd\nrbd_store_pool = {pool}\n\
         rbd_store_user = admin\nrbd_store_ceph_conf = {conf}\nrbd_store_chunk_size = 4\n{more}"
    );
    let s = Server::start_with(b, &extra).await?;
    Some((s, conf))
}

/// `ceph` with our cluster's conf, bounded like `rbd`.
fn ceph(conf: &str, args: &[&str]) -> String {
    run_ok(
        Command::new("timeout")
            .args(["60", "ceph", "-c", conf])
            .args(args),
    )
}

/// A pool of its own for a test that changes pool settings; deleted on drop.
struct ScratchPool {
    conf: String,
    name: String,
}

impl ScratchPool {
    fn new(conf: &str, prefix: &str) -> ScratchPool {
        let name = format!(
            "{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        ceph(conf, &["osd", "pool", "create", &name, "8"]);
        let (ok, out) = rbd(conf, &["pool", "init", &name]);
        assert!(ok, "{out}");
        ScratchPool {
            conf: conf.to_string(),
            name,
        }
    }
}

impl Drop for ScratchPool {
    fn drop(&mut self) {
        let _ = Command::new("timeout")
            .args(["60", "ceph", "-c", &self.conf])
            .args(["config", "set", "mon", "mon_allow_pool_delete", "true"])
            .output();
        let _ = Command::new("timeout")
            .args(["60", "ceph", "-c", &self.conf, "osd", "pool", "delete"])
            .args([&self.name, &self.name, "--yes-i-really-really-mean-it"])
            .output();
    }
}

/// What Nova does with a snapshot it registers: `file` imported into the `images` pool under
/// a new name, snapshot `snap` created and protected. The name.
fn nova_snapshot(conf: &str, file: &std::path::Path) -> String {
    let name = uuid::Uuid::new_v4().to_string();
    let snap = format!("images/{name}@snap");
    for args in [
        vec![
            "import",
            "--no-progress",
            file.to_str().unwrap(),
            &format!("images/{name}"),
        ],
        vec!["snap", "create", &snap],
        vec!["snap", "protect", &snap],
    ] {
        let (ok, out) = rbd(conf, &args);
        assert!(ok, "{out}");
    }
    name
}

fn fsid(conf: &str) -> String {
    std::fs::read_to_string(conf)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("fsid = ").map(str::to_string))
        .unwrap()
}

async fn snapshot_clone_and_delete(b: Backend) {
    let Some((s, conf)) = start(b).await else {
        return;
    };
    let img = s
        .create(json!({"name": "rbd", "disk_format": "raw", "container_format": "bare"}))
        .await;
    let id = img["id"].as_str().unwrap().to_string();
    // Odd size, several 4 MiB objects, chunked upload (size unknown: the image grows).
    let data = random_bytes(9 * 1024 * 1024 + 123);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(1 << 20).map(|c| Ok(c.to_vec())).collect();
    let r = s
        .req(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    let v = s.show(&id).await;
    let url = format!("rbd://{}/images/{id}/snap", fsid(&conf));
    assert_eq!(v["direct_url"], url);
    assert_eq!(v["locations"], json!([{"url": url, "metadata": {}}]));
    assert_eq!(v["size"], data.len());

    let (ok, info) = rbd(&conf, &["info", &format!("images/{id}@snap")]);
    assert!(ok, "{info}");
    assert!(info.contains("protected: True"), "{info}");
    let (ok, info) = rbd(&conf, &["info", &format!("images/{id}")]);
    assert!(ok && info.contains("layering"), "{info}");
    let export = s.dir.path().join("export.raw");
    let (ok, out) = rbd(
        &conf,
        &[
            "export",
            &format!("images/{id}@snap"),
            export.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    assert!(
        std::fs::read(&export).unwrap() == data,
        "rbd export gives back the bytes"
    );
    // Ranges read at offsets.
    let r = s
        .get(&format!("/v2/images/{id}/file"))
        .header("Range", "bytes=5000000-5000099")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        &data[5_000_000..5_000_100]
    );

    // Cinder's copy-on-write clone; then the image cannot be deleted and still downloads.
    let vol = format!("volumes/volume-{}", uuid::Uuid::new_v4());
    let (ok, out) = rbd(&conf, &["clone", &format!("images/{id}@snap"), &vol]);
    assert!(ok, "{out}");
    let (code, body) = s.delete_answer(&id).await;
    assert_eq!(code, 409);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("clones"),
        "{body}"
    );
    let v = s.show(&id).await;
    assert_eq!(v["status"], "active");
    let got = s.download(&id).await;
    assert!(got == data);
    let (ok, info) = rbd(&conf, &["info", &format!("images/{id}@snap")]);
    assert!(ok && info.contains("protected: True"), "{info}");

    let (ok, out) = rbd(&conf, &["rm", &vol]);
    assert!(ok, "{out}");
    assert_eq!(s.delete(&id).await, 204);
    let (ok, list) = rbd(&conf, &["ls", "images"]);
    assert!(ok);
    assert!(!list.contains(&id), "rbd ls images still lists {id}");
}

/// Another client has the RBD image open (a watch on it, as `rbd watch` or a mapped device
/// holds): librbd refuses to remove it, and by then the delete has taken its snapshot away.
/// The delete answers 409 and puts the snapshot back, protected, so the image still downloads
/// and clones; once the client lets go, the delete goes through.
async fn busy_image_delete_leaves_it_whole(b: Backend) {
    let Some((s, conf)) = start(b).await else {
        return;
    };
    let data = random_bytes((1 << 22) + 77);
    let id = s.create_raw("busy").await;
    assert_eq!(s.upload(&id, data.clone()).await.status(), 204);
    // `rbd watch` holds its watch until a line or the end of its standard input.
    let mut watch = Command::new("timeout")
        .args(["120", "rbd", "-c", &conf, "watch", &format!("images/{id}")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rbd(&conf, &["status", &format!("images/{id}")])
        .1
        .contains("watcher=")
    {
        assert!(Instant::now() < deadline, "rbd watch never watched");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = s.delete_answer(&id).await;
    // Enter ends `rbd watch` cleanly (killed, its watch would stay until Ceph times it out).
    drop(watch.stdin.take().map(|mut i| i.write_all(b"\n")));
    let deadline = Instant::now() + Duration::from_secs(20);
    while watch.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = watch.kill();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("in use"), "{body}");
    assert_eq!(s.show(&id).await["status"], "active");
    assert!(s.download(&id).await == data, "downloads after the refusal");
    let (ok, info) = rbd(&conf, &["info", &format!("images/{id}@snap")]);
    assert!(ok && info.contains("protected: True"), "{info}");
    assert_eq!(s.delete(&id).await, 204);
    assert!(!rbd(&conf, &["ls", "images"]).1.contains(&id));
}

/// Two deletes of each image at once (each opens the RBD image, and librbd refuses to remove
/// an image another client has open): every image ends either deleted with nothing left in
/// the pool, or active with its data whole.
async fn concurrent_deletes_leave_whole_images_or_none(b: Backend) {
    concurrent_deletes(b, false).await
}

/// As above with each image's two deletes sent to two nodes sharing the database and the pool
/// (one node's deletes wait for each other, two nodes' do not): a delete that failed midway
/// after the other removed the row has what it left in the pool removed a lease later.
async fn concurrent_deletes_on_two_nodes_leave_no_rbd_image(b: Backend) {
    concurrent_deletes(b, true).await
}

async fn concurrent_deletes(b: Backend, two_nodes: bool) {
    let Some((mut a, conf)) = start(b).await else {
        return;
    };
    let mut peer = None;
    if two_nodes {
        let extra = std::fs::read_to_string(a.dir.path().join("extra.conf")).unwrap();
        let lease = "[task]\nlease_seconds = 2\n";
        std::fs::write(a.dir.path().join("extra.conf"), format!("{extra}{lease}")).unwrap();
        a.kill9();
        a.restart().await;
        peer = Some(a.start_peer_with(&format!("{extra}{lease}")).await);
    }
    let other = peer.as_ref().unwrap_or(&a);
    // Two nodes' removals may also meet midway (ENOENT, ESTALE: 503).
    let allowed: &[u16] = if two_nodes {
        &[204, 404, 409, 503]
    } else {
        &[204, 404, 409]
    };
    let data = random_bytes(4096);
    let mut ids = Vec::new();
    for i in 0..8 {
        let id = a.create_raw(&format!("twice-{i}")).await;
        assert_eq!(a.upload(&id, data.clone()).await.status(), 204);
        ids.push(id);
    }
    for id in &ids {
        let (x, y) = tokio::join!(a.delete(id), other.delete(id));
        assert!(
            [x, y].iter().all(|c| allowed.contains(c)) && (x, y) != (404, 404),
            "{id}: {x} {y}"
        );
    }
    // On one node the pool is as it should be at once; on two, within a few leases.
    let deadline = Instant::now() + Duration::from_secs(if two_nodes { 30 } else { 0 });
    for id in &ids {
        let r = a.get(&format!("/v2/images/{id}")).send().await.unwrap();
        if r.status() == 404 {
            while rbd(&conf, &["ls", "images"]).1.contains(id.as_str()) {
                if Instant::now() >= deadline {
                    let log = format!(
                        "{}{}",
                        a.log(),
                        peer.as_ref().map(|p| p.log()).unwrap_or_default()
                    );
                    let told: Vec<&str> = log.lines().filter(|l| l.contains(id.as_str())).collect();
                    panic!(
                        "{id} deleted, its RBD image left; the server said:\n{}",
                        told.join("\n")
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        } else {
            assert_eq!(a.show(id).await["status"], "active");
            assert!(
                a.download(id).await == data,
                "{id} refused to go, and is whole"
            );
            assert_eq!(a.delete(id).await, 204);
        }
    }
}

async fn failed_uploads_leave_no_rbd_image(b: Backend) {
    let Some((s, conf)) = start(b).await else {
        return;
    };
    // Client killed mid-upload.
    let img = s
        .create(json!({"name": "k", "disk_format": "raw", "container_format": "bare"}))
        .await;
    let id = img["id"].as_str().unwrap().to_string();
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    write!(
        sock,
        "PUT /v2/images/{id}/file HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 40000000\r\n\r\n"
    )
    .unwrap();
    sock.write_all(&random_bytes(6 << 20)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while s.show(&id).await["status"] != "saving" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(sock);
    let deadline = Instant::now() + Duration::from_secs(20);
    let gone = loop {
        let (_, list) = rbd(&conf, &["ls", "images"]);
        let queued = s.show(&id).await["status"] == "queued";
        if queued && !list.contains(&id) {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(gone, "the image is queued and no RBD image remains");

    // Refused by format inspection: same.
    let img = s
        .create(json!({"name": "q", "disk_format": "qcow2", "container_format": "bare"}))
        .await;
    let id2 = img["id"].as_str().unwrap().to_string();
    assert_eq!(s.upload(&id2, random_bytes(3 << 20)).await.status(), 415);
    let (_, list) = rbd(&conf, &["ls", "images"]);
    assert!(!list.contains(&id2));
    assert_eq!(s.show(&id2).await["status"], "queued");

    // The image's name already taken in the pool (by something else): 409 as glance_store's
    // Duplicate, and what is there stays.
    let id3 = s.create_raw("taken").await;
    let (ok, out) = rbd(&conf, &["create", "--size", "1M", &format!("images/{id3}")]);
    assert!(ok, "{out}");
    let r = s.upload(&id3, random_bytes(1 << 20)).await;
    assert_eq!(r.status(), 409);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("Unable to upload duplicate image data"),
        "{body}"
    );
    assert_eq!(s.show(&id3).await["status"], "queued");
    let (ok, info) = rbd(&conf, &["info", &format!("images/{id3}")]);
    assert!(ok && info.contains("size 1 MiB"), "{info}");
    assert!(rbd(&conf, &["rm", &format!("images/{id3}")]).0);
}

async fn openstack_client_on_rbd(b: Backend) {
    let Some(venv) = venv() else { return };
    let Some((s, conf)) = start(b).await else {
        return;
    };
    let file = s.dir.path().join("disk.raw");
    let data = random_bytes(6 << 20);
    std::fs::write(&file, &data).unwrap();
    let out = s.openstack(
        &venv,
        &[
            "image",
            "create",
            "--file",
            file.to_str().unwrap(),
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "-f",
            "json",
            "on-rbd",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let (ok, _) = rbd(&conf, &["info", &format!("images/{id}@snap")]);
    assert!(ok);
    let saved = s.dir.path().join("saved.raw");
    let out = s.openstack(
        &venv,
        &["image", "save", "--file", saved.to_str().unwrap(), &id],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(&saved).unwrap() == data);
    let out = s.openstack(&venv, &["image", "delete", &id]);
    assert!(out.status.success());
    let (_, list) = rbd(&conf, &["ls", "images"]);
    assert!(!list.contains(&id));
}

/// Nova's direct snapshot: the data is written to RBD by the client, then registered on a
/// queued image through the Locations API (service role) or the legacy PATCH.
async fn registered_rbd_locations(b: Backend) {
    use md5::Digest as _;
    let Some((s, conf)) = start(b).await else {
        return;
    };
    let data = random_bytes(5 << 20);
    let file = s.dir.path().join("snap.raw");
    std::fs::write(&file, &data).unwrap();
    let fsid = fsid(&conf);
    // Nova acts in the user's project with the service role (its service token).
    let as_service =
        |rb: reqwest::RequestBuilder| Server::as_project(rb, "p1", "service,member,reader");

    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(nova_snapshot(&conf, &file));
    }
    let url0 = format!("rbd://{fsid}/images/{}/snap", ids[0]);
    let url1 = format!("rbd://{fsid}/images/{}/snap", ids[1]);
    let md5hex = hex::encode(md5::Md5::digest(&data));
    let sha = hex::encode(sha2::Sha512::digest(&data));

    // Locations API.
    let img = s
        .create_as(
            "p1",
            json!({"name": "snap", "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let id = img["id"].as_str().unwrap().to_string();
    let body =
        json!({"url": url0, "validation_data": {"os_hash_algo": "sha512", "os_hash_value": sha}});
    let r = Server::as_project(
        s.req(Method::POST, &format!("/v2/images/{id}/locations")),
        "p1",
        "member",
    )
    .json(&body)
    .send()
    .await
    .unwrap();
    assert_eq!(
        r.status(),
        403,
        "only the service role registers rbd locations"
    );
    let r = as_service(s.req(Method::POST, &format!("/v2/images/{id}/locations")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let v = s.settled(&id, "active").await;
    assert_eq!(v["size"], data.len());
    assert_eq!(v["os_hash_value"], sha);
    assert_eq!(v["checksum"], md5hex);
    assert_eq!(v["direct_url"], url0);
    let got = s.download(&id).await;
    assert!(got == data);
    let r = as_service(s.get(&format!("/v2/images/{id}/locations")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!([{"url": url0, "metadata": {}}])
    );
    // Glance 33's service_api rule takes admins too; a member without the service role is refused.
    assert_eq!(
        status(s.get(&format!("/v2/images/{id}/locations"))).await,
        200
    );
    let r = Server::as_project(
        s.get(&format!("/v2/images/{id}/locations")),
        "p1",
        "member,reader",
    );
    assert_eq!(status(r).await, 403, "a member without the service role");
    // Not queued any more: 409.
    let r = as_service(s.req(Method::POST, &format!("/v2/images/{id}/locations")))
        .json(&json!({"url": url1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    // Legacy PATCH; a location that is not ours is refused and changes nothing.
    let img = s
        .create(json!({"name": "legacy", "disk_format": "raw", "container_format": "bare"}))
        .await;
    let id2 = img["id"].as_str().unwrap().to_string();
    let bad = format!("rbd://{fsid}/images/{}/snap", uuid::Uuid::new_v4());
    let r = s
        .patch(
            &id2,
            json!([{"op": "add", "path": "/locations/-", "value": {"url": bad, "metadata": {}}}]),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(s.show(&id2).await["status"], "queued");
    let r = s
        .patch(
            &id2,
            json!([{"op": "add", "path": "/locations/-", "value": {"url": url1, "metadata": {}}}]),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let v = s.show(&id2).await;
    assert_eq!(v["status"], "active");
    assert_eq!(v["size"], data.len());
    let r = s
        .patch(&id2, json!([{"op": "remove", "path": "/locations/0"}]))
        .await;
    assert_eq!(r.status(), 403, "the last location stays");

    // Deleting the images removes the RBD images registered with them.
    for i in [&id, &id2] {
        assert_eq!(s.delete(i).await, 204);
    }
    let (_, list) = rbd(&conf, &["ls", "images"]);
    assert!(!list.contains(&ids[0]) && !list.contains(&ids[1]), "{list}");
}

/// An image whose RBD image carries a snapshot of someone else's (a backup tool's, say): the
/// delete unprotects and removes ours, then moves the image to the RBD trash, as glance_store
/// does, rather than failing.
async fn other_snapshots_send_it_to_the_trash(b: Backend) {
    let Some((s, conf)) = start(b).await else {
        return;
    };
    let id = s.create_raw("t").await;
    assert_eq!(s.upload(&id, random_bytes(5 << 20)).await.status(), 204);
    let (ok, out) = rbd(&conf, &["snap", "create", &format!("images/{id}@backup")]);
    assert!(ok, "{out}");

    assert_eq!(s.delete(&id).await, 204);
    let (_, list) = rbd(&conf, &["ls", "images"]);
    assert!(!list.contains(&id), "{list}");
    let (ok, trash) = rbd(&conf, &["trash", "ls", "images"]);
    assert!(ok && trash.contains(&id), "{trash}");
    let (_, snaps) = rbd(&conf, &["snap", "ls", &format!("images/{id}@backup")]);
    assert!(!snaps.contains(" snap "), "our snapshot is gone: {snaps}");

    // Tidy up: restore, drop the foreign snapshot, remove.
    let trash_id = trash
        .lines()
        .find(|l| l.contains(&id))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(rbd(&conf, &["trash", "restore", "-p", "images", &trash_id]).0);
    assert!(rbd(&conf, &["snap", "purge", &format!("images/{id}")]).0);
    assert!(rbd(&conf, &["rm", &format!("images/{id}")]).0);
}

/// The RBD image `pool/name@snap` as `rbd export` reads it (through a temporary file).
fn rbd_export(conf: &str, spec: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.raw");
    let (ok, out) = rbd(conf, &["export", spec, file.to_str().unwrap()]);
    assert!(ok, "{out}");
    std::fs::read(&file).unwrap()
}

/// More 4 MiB objects than the writer keeps in flight and the reader reads ahead, and a short
/// last one: the upload's digests, two downloads at once, a range across an object boundary
/// and what Ceph itself holds all agree byte for byte.
async fn objects_beyond_the_in_flight_window_round_trip(b: Backend) {
    use md5::Digest as _;
    let Some((s, conf)) = start(b).await else {
        return;
    };
    let data = random_bytes((21 << 22) + 123);
    let id = s.create_raw("many-objects").await;
    let r = s.upload(&id, data.clone()).await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    let v = s.show(&id).await;
    assert_eq!(v["size"], data.len());
    assert_eq!(v["checksum"], hex::encode(md5::Md5::digest(&data)));
    let (a, b2) = tokio::join!(s.download(&id), s.download(&id));
    assert!(a == data && b2 == data, "concurrent downloads");
    let (from, to) = ((5 << 22) - 7, (7 << 22) + 9);
    let r = s
        .get(&format!("/v2/images/{id}/file"))
        .header("Range", format!("bytes={from}-{to}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert!(
        r.bytes().await.unwrap() == data[from..=to],
        "range across objects"
    );
    assert!(
        rbd_export(&conf, &format!("images/{id}@snap")) == data,
        "rbd export"
    );
    assert_eq!(s.delete(&id).await, 204);
}

/// A pool over its quota (what a full cluster looks like to a client): the upload fails at once
/// with 413 instead of waiting for room, the image goes back to `queued` and nothing is left in
/// the pool; images already there can still be deleted to make room.
async fn full_pool_gives_413(b: Backend) {
    let Some(conf) = ceph_conf() else {
        return;
    };
    let pool = ScratchPool::new(&conf, "full");
    let Some((s, conf)) = start_on_pool(b, &pool.name, "").await else {
        return;
    };
    ceph(
        &conf,
        &[
            "osd",
            "pool",
            "set-quota",
            &pool.name,
            "max_bytes",
            &(4u64 << 20).to_string(),
        ],
    );
    let first = s.create_raw("a").await;
    // Usage reaches the monitors a few seconds late, so this one still fits.
    assert_eq!(s.upload(&first, random_bytes(12 << 20)).await.status(), 204);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let detail = ceph(&conf, &["osd", "pool", "ls", "detail"]);
        let flagged = detail
            .lines()
            .any(|l| l.contains(&format!("'{}'", pool.name)) && l.contains("full_quota"));
        if flagged {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pool never flagged full: {detail}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let id = s.create_raw("b").await;
    let started = Instant::now();
    let r = s.upload(&id, random_bytes(6 << 20)).await;
    assert_eq!(r.status(), 413);
    let body = r.text().await.unwrap();
    assert!(body.contains("Image storage media is full"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s.show(&id).await["status"], "queued");
    let (_, list) = rbd(&conf, &["ls", &pool.name]);
    assert!(!list.contains(&id) && list.contains(&first), "{list}");

    // librbd cannot remove an image from a full pool (it goes through the pool's trash): the
    // delete says so and keeps the record; once the quota is lifted it succeeds.
    let r = s
        .req(Method::DELETE, &format!("/v2/images/{first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("could not be removed"));
    assert_eq!(s.show(&first).await["status"], "active");
    ceph(
        &conf,
        &["osd", "pool", "set-quota", &pool.name, "max_bytes", "0"],
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = s.delete(&first).await;
        if status == 204 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "delete still {status} after the quota was lifted"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (_, list) = rbd(&conf, &["ls", &pool.name]);
    assert!(!list.contains(&first), "{list}");
}

/// A cluster that does not answer: the server still starts and serves metadata, and RBD calls
/// fail with 503 after rados_connect_timeout instead of hanging; the image stays `queued`.
async fn unreachable_cluster_fails_within_connect_timeout(b: Backend) {
    let Some(real) = ceph_conf() else {
        return;
    };
    // A monitor address where nothing listens (a port we bound and released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.conf");
    let keyring = std::fs::read_to_string(&real)
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("keyring = ").map(str::to_string))
        .unwrap_or_default();
    std::fs::write(
        &dead,
        format!(
            "[global]\nfsid = {}\nmon host = v2:127.0.0.1:{port}\nkeyring = {keyring}\n",
            uuid::Uuid::new_v4()
        ),
    )
    .unwrap();
    let extra = format!(
        "[glance_store]\nstores = rbd\ndefault_store = rbd\nrbd_store_pool = images\n\
         rbd_store_user = admin\nrbd_store_ceph_conf = {}\nrados_connect_timeout = 2\n",
        dead.display()
    );
    let started = Instant::now();
    let Some(s) = Server::start_with(b, &extra).await else {
        return;
    };
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(
        s.log().contains("RBD store not connected yet"),
        "{}",
        s.log()
    );
    assert_eq!(status(s.get("/v2/images")).await, 200);

    let id = s.create_raw("u").await;
    let t = Instant::now();
    let r = s.upload(&id, random_bytes(1 << 20)).await;
    assert_eq!(r.status(), 503);
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert_eq!(s.show(&id).await["status"], "queued");
    // Right after a failed attempt the store says so at once; a few seconds later it dials
    // again (and waits out the connect timeout again).
    let t = Instant::now();
    assert_eq!(s.upload(&id, random_bytes(1 << 20)).await.status(), 503);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let t = Instant::now();
    assert_eq!(s.upload(&id, random_bytes(1 << 20)).await.status(), 503);
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(s.show(&id).await["status"], "queued");
}

/// rbd_thin_provisioning: an object-sized run of zeros is never written, so its RADOS object
/// does not exist, and the image still reads back whole.
async fn thin_provisioning_skips_zero_objects(b: Backend) {
    let Some((s, conf)) = start_on_pool(b, "images", "rbd_thin_provisioning = true\n").await else {
        return;
    };
    let id = s.create_raw("thin").await;
    let mut data = random_bytes(12 << 20);
    data[4 << 20..8 << 20].fill(0);
    assert_eq!(s.upload(&id, data.clone()).await.status(), 204);
    let (ok, info) = rbd(&conf, &["info", &format!("images/{id}")]);
    assert!(ok, "{info}");
    let prefix = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("block_name_prefix: "))
        .unwrap()
        .to_string();
    let out = Command::new("timeout")
        .args(["60", "rados", "-c", &conf, "-p", "images", "ls"])
        .output()
        .unwrap();
    let objects = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .count();
    assert_eq!(objects, 2, "objects 0 and 2 written, 1 skipped");
    assert!(s.download(&id).await == data);
    assert_eq!(s.delete(&id).await, 204);
}

/// The random request sequences of tests/random_requests.rs on the RBD store, four clients
/// at once on a pool of their own: afterwards no image is left saving, each with data
/// downloads whole, and every RBD image in the pool belongs to one of them.
async fn random_requests_leave_a_whole_pool(b: Backend) {
    let Some(conf) = ceph_conf() else {
        return;
    };
    let pool = ScratchPool::new(&conf, "random");
    let Some((s, _)) = start_configured(b, &pool.name, random::DEFAULTS, "").await else {
        return;
    };
    let statuses = random::four_clients(&[&s], 0x5eed_1234_abcd_0004).await;
    let (ok, list) = rbd(&conf, &["ls", &pool.name]);
    assert!(ok, "{list}");
    let stored = list.lines().map(str::to_string).collect();
    random::check_state(&s, &statuses, stored).await;
}

/// Two nodes on one pool and one database: the node writing an upload into RBD is killed
/// halfway; the other undoes it once the lease (2 s) has run out and Ceph has let go of the
/// dead client's watch on the RBD image (`rbd rm` refuses an image with watchers): the image
/// is `queued`, no RBD image is left, and an upload through the other node succeeds.
async fn killed_node_upload_leaves_no_rbd_image(b: Backend) {
    killed_upload_is_undone(b, false).await;
}

/// A node killed while librbd was creating the image: the name is in the pool's directory but
/// the image has no header yet (it cannot be opened, and creating it again fails with EEXIST).
/// The undo still removes what there is, and the image can be uploaded again.
async fn killed_mid_create_leaves_no_rbd_image(b: Backend) {
    killed_upload_is_undone(b, true).await;
}

/// `half_made`: the killed node's RBD image is turned into one whose creation did not finish
/// (its header object removed) before the other node undoes the upload.
async fn killed_upload_is_undone(b: Backend, half_made: bool) {
    let Some((mut a, conf)) = start_configured(b, "images", "", "").await else {
        return;
    };
    // The same store settings, and a short lease, on both nodes.
    let extra = std::fs::read_to_string(a.dir.path().join("extra.conf")).unwrap();
    let lease = "[task]\nlease_seconds = 2\n";
    std::fs::write(a.dir.path().join("extra.conf"), format!("{extra}{lease}")).unwrap();
    a.kill9();
    a.restart().await;
    let peer = a.start_peer_with(&format!("{extra}{lease}")).await;
    let img = a
        .create(json!({"name": "k", "disk_format": "raw", "container_format": "bare"}))
        .await;
    let id = img["id"].as_str().unwrap().to_string();
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    write!(
        sock,
        "PUT /v2/images/{id}/file HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 1073741824\r\n\r\n"
    )
    .unwrap();
    sock.write_all(&random_bytes(24 << 20)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(peer.show(&id).await["status"] == "saving"
        && rbd(&conf, &["ls", "images"]).1.contains(&id))
    {
        assert!(Instant::now() < deadline, "upload under way");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.kill9();
    if half_made {
        let (ok, info) = rbd(&conf, &["info", &format!("images/{id}")]);
        assert!(ok, "{info}");
        let rbd_id = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("id: "))
            .expect("the RBD image's id")
            .to_string();
        run_ok(Command::new("timeout").args([
            "60",
            "rados",
            "-c",
            &conf,
            "-p",
            "images",
            "rm",
            &format!("rbd_header.{rbd_id}"),
        ]));
        let (ok, out) = rbd(&conf, &["info", &format!("images/{id}")]);
        assert!(
            !ok && rbd(&conf, &["ls", "images"]).1.contains(&id),
            "{out}"
        );
    }
    let t = Instant::now();
    let deadline = t + Duration::from_secs(90);
    loop {
        let queued = peer.show(&id).await["status"] == "queued";
        if queued && !rbd(&conf, &["ls", "images"]).1.contains(&id) {
            break;
        }
        assert!(Instant::now() < deadline, "not undone: {}", peer.log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("killed node's RBD upload undone after {:?}", t.elapsed());
    drop(sock);
    let data = random_bytes(5 << 20);
    assert_eq!(peer.upload(&id, data.clone()).await.status(), 204);
    assert!(peer.download(&id).await == data);
    assert_eq!(peer.delete(&id).await, 204);
}

/// Two nodes on the pool with a 2 s lease (`more`: further configuration): the first
/// restarted with it, the second beside it; and the Ceph configuration.
async fn pair_with_short_lease(b: Backend, more: &str) -> Option<(Server, Server, String)> {
    let (mut a, conf) = start_configured(b, "images", "", "").await?;
    let extra = std::fs::read_to_string(a.dir.path().join("extra.conf")).unwrap();
    let more = format!("{extra}{more}[task]\nlease_seconds = 2\n");
    std::fs::write(a.dir.path().join("extra.conf"), &more).unwrap();
    a.kill9();
    a.restart().await;
    let peer = a.start_peer_with(&more).await;
    Some((a, peer, conf))
}

/// The task `task_of` shows, once it ended on `peer` (bounded: 120 s); prints how long after
/// now (the other node's death) that was.
async fn ended_on<F, Fut>(peer: &Server, what: &str, task_of: F) -> Value
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let t = Instant::now();
    loop {
        let task = task_of().await;
        if task["status"] == "success" || task["status"] == "failure" {
            eprintln!(
                "killed node's {what} finished by the other after {:?}",
                t.elapsed()
            );
            return task;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "task not finished: {task}\n{}",
            peer.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node killed while its import task writes into the pool: another node undoes the partial
/// RBD image (once Ceph drops the dead client's watch) and runs the task on into the same image.
async fn killed_node_import_task_finishes_on_rbd(b: Backend) {
    use md5::Digest as _;
    let Some((mut a, peer, conf)) = pair_with_short_lease(b, common::source::OPEN).await else {
        return;
    };
    let data = random_bytes(48 << 20);
    let src = common::source::Source::start(data.clone(), 12 << 20).await;
    let body = json!({"type": "import", "input": {
        "import_from": src.url("/image"), "import_from_format": "raw",
        "image_properties": {"name": "t", "disk_format": "raw", "container_format": "bare"}}});
    let r = a
        .req(Method::POST, "/v2/tasks")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let task = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let imgs = peer.get_json("/v2/images").await;
        if imgs["images"][0]["status"] == "saving" {
            let id = imgs["images"][0]["id"].as_str().unwrap().to_string();
            if rbd(&conf, &["ls", "images"]).1.contains(&id) {
                break id;
            }
        }
        assert!(Instant::now() < deadline, "import under way: {imgs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    a.kill9();
    let done = ended_on(&peer, "import", || async {
        peer.get_json(&format!("/v2/tasks/{task}")).await
    })
    .await;
    assert_eq!(done["status"], "success", "{done}\n{}", peer.log());
    assert_eq!(done["result"]["image_id"], id.as_str());
    let img = peer.show(&id).await;
    assert_eq!(img["status"], "active");
    assert_eq!(img["checksum"], hex::encode(md5::Md5::digest(&data)));
    assert!(peer.download(&id).await == data);
    assert_eq!(peer.delete(&id).await, 204);
    assert!(
        !rbd(&conf, &["ls", "images"]).1.contains(&id),
        "nothing left in the pool"
    );
}

/// A node killed while it hashes a registered RBD snapshot (an added location with validation
/// data: the image stays `importing` until the hash is verified): another node takes the task
/// over, hashes again and activates the image; the snapshot is Nova's and stays untouched.
async fn killed_node_hashing_an_rbd_location(b: Backend) {
    let Some((mut a, peer, conf)) = pair_with_short_lease(b, "").await else {
        return;
    };
    // Large enough that hashing it outlasts the kill below.
    let data = random_bytes(512 << 20);
    let file = a.dir.path().join("snap.raw");
    std::fs::write(&file, &data).unwrap();
    let name = nova_snapshot(&conf, &file);
    // Digests by coreutils (the test binary's own are unoptimised).
    let digest = |tool: &str| {
        let out = Command::new(tool).arg(&file).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let (md5, sha512) = (digest("md5sum"), digest("sha512sum"));
    std::fs::remove_file(&file).unwrap();
    let as_service =
        |rb: reqwest::RequestBuilder| Server::as_project(rb, "p1", "service,member,reader");
    let img = a
        .create_as(
            "p1",
            json!({"name": "nova-snap", "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let id = img["id"].as_str().unwrap().to_string();
    let url = format!("rbd://{}/images/{name}/snap", fsid(&conf));
    let body = json!({"url": url, "validation_data": {
        "os_hash_algo": "sha512",
        "os_hash_value": sha512,
    }});
    let r = as_service(a.req(Method::POST, &format!("/v2/images/{id}/locations")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tasks = as_service(a.get(&format!("/v2/images/{id}/tasks")))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        if tasks["tasks"][0]["status"] == "processing" {
            break;
        }
        assert!(Instant::now() < deadline, "hashing never started: {tasks}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.show(&id).await["status"], "importing", "still hashing");
    a.kill9();
    let task = ended_on(&peer, "hashing", || async {
        let tasks = as_service(peer.get(&format!("/v2/images/{id}/tasks")))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        tasks["tasks"][0].clone()
    })
    .await;
    assert_eq!(task["status"], "success", "{task}");
    assert!(peer.log().contains("reclaiming abandoned work"));
    let shown = peer.show(&id).await;
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["size"], data.len() as u64);
    assert_eq!(shown["checksum"], md5);
    assert_eq!(
        shown["os_hash_value"],
        body["validation_data"]["os_hash_value"]
    );
    assert_eq!(shown["direct_url"], url.as_str());
    let (ok, out) = rbd(&conf, &["snap", "ls", &format!("images/{name}")]);
    assert!(ok && out.contains("snap"), "snapshot untouched: {out}");
    // Deleting the image removes the data it names, as Glance's RBD store does.
    assert_eq!(peer.delete(&id).await, 204);
    assert!(!rbd(&conf, &["ls", "images"]).1.contains(&name));
}

both_databases!(
    killed_node_hashing_an_rbd_location,
    killed_node_import_task_finishes_on_rbd,
    killed_node_upload_leaves_no_rbd_image,
    killed_mid_create_leaves_no_rbd_image,
    random_requests_leave_a_whole_pool,
    objects_beyond_the_in_flight_window_round_trip,
    thin_provisioning_skips_zero_objects,
    other_snapshots_send_it_to_the_trash,
    full_pool_gives_413,
    unreachable_cluster_fails_within_connect_timeout,
    snapshot_clone_and_delete,
    busy_image_delete_leaves_it_whole,
    concurrent_deletes_leave_whole_images_or_none,
    concurrent_deletes_on_two_nodes_leave_no_rbd_image,
    failed_uploads_leave_no_rbd_image,
    openstack_client_on_rbd,
    registered_rbd_locations,
);
