//! Multi-store (`enabled_backends`): choosing the store on upload, the `stores` field, the
//! store info API, removing one store's copy, download preferences, and the read-only http
//! store. With `--features rbd` and a cluster, a file store and an RBD store side by side.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Backend, Server, random_bytes, status};
use reqwest::Method;
use serde_json::{Value, json};

fn config(base: &std::path::Path, extra_backends: &str, extra_sections: &str) -> String {
    format!(
        "[DEFAULT]\nenabled_backends = fast:file, slow:file, web:http{extra_backends}\n\
         show_multiple_locations = true\n\
         [glance_store]\ndefault_backend = slow\n\
         [fast]\nfilesystem_store_datadir = {}\nweight = 100\nstore_description = Fast disks\n\
         [slow]\nfilesystem_store_datadir = {}\nweight = 10\n{extra_sections}",
        base.join("fast").display(),
        base.join("slow").display()
    )
}

/// A static file server on a free loopback port (python's http.server), stopped by pid.
struct HttpServer {
    child: Child,
    url: String,
}

impl HttpServer {
    fn start(dir: &std::path::Path) -> HttpServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        HttpServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

async fn upload_to(s: &Server, id: &str, store: Option<&str>, data: Vec<u8>) -> reqwest::Response {
    let mut rb = s
        .req(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream");
    if let Some(st) = store {
        rb = rb.header("X-Image-Meta-Store", st);
    }
    rb.body(data).send().await.unwrap()
}

async fn stores_choose_and_report(b: Backend) {
    let base = tempfile::tempdir().unwrap();
    let Some(s) = Server::start_with(b, &config(base.path(), "", "")).await else {
        return;
    };

    // Versions list the multi-store API versions.
    let v: Value = s.get_json("/versions").await;
    let ids: Vec<&str> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    for want in ["v2.8", "v2.10", "v2.13", "v2.17"] {
        assert!(ids.contains(&want), "{ids:?}");
    }
    assert_eq!(status(s.get("/v2.13/images")).await, 200);

    let r = s
        .req(Method::POST, "/v2/images")
        .json(&json!({"name": "m", "disk_format": "raw", "container_format": "bare"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut store_ids: Vec<&str> = r.headers()["openstack-image-store-ids"]
        .to_str()
        .unwrap()
        .split(',')
        .collect();
    store_ids.sort();
    assert_eq!(store_ids, ["fast", "slow", "web"]);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Unknown and read-only stores are refused; nothing changes.
    assert_eq!(
        upload_to(&s, &id, Some("nowhere"), b"x".to_vec())
            .await
            .status(),
        400
    );
    assert_eq!(
        upload_to(&s, &id, Some("web"), b"x".to_vec())
            .await
            .status(),
        400
    );
    assert_eq!(s.show(&id).await["status"], "queued");
    // Default store.
    let data = random_bytes(100_000);
    assert_eq!(upload_to(&s, &id, None, data.clone()).await.status(), 204);
    let v = s.show(&id).await;
    assert_eq!(v["stores"], "slow");
    assert_eq!(v["locations"][0]["metadata"], json!({"store": "slow"}));
    assert!(base.path().join("slow").join(&id).exists());
    // Chosen store.
    let img2 = s
        .create(json!({"name": "f", "disk_format": "raw", "container_format": "bare"}))
        .await;
    let id2 = img2["id"].as_str().unwrap().to_string();
    assert_eq!(
        upload_to(&s, &id2, Some("fast"), data.clone())
            .await
            .status(),
        204
    );
    assert_eq!(s.show(&id2).await["stores"], "fast");
    assert!(base.path().join("fast").join(&id2).exists());

    // Info API.
    let v: Value = s.get_json("/v2/info/stores").await;
    let list = v["stores"].as_array().unwrap();
    let by_id = |i: &str| list.iter().find(|e| e["id"] == i).cloned().unwrap();
    assert_eq!(by_id("slow")["default"], "true");
    assert_eq!(by_id("fast")["description"], "Fast disks");
    assert!(by_id("fast").get("default").is_none());
    assert_eq!(by_id("web")["read-only"], "true");
    assert!(by_id("fast").get("type").is_none());
    let r = Server::as_project(s.get("/v2/info/stores/detail"), "p1", "member")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = s.get_json("/v2/info/stores/detail").await;
    let fast = v["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "fast")
        .cloned()
        .unwrap();
    assert_eq!(fast["type"], "file");
    assert_eq!(fast["weight"], 100);
    assert!(
        fast["properties"]["data_dir"]
            .as_str()
            .unwrap()
            .ends_with("/fast")
    );

    // The same image in two stores: a copy registered in `fast`.
    let copy = base
        .path()
        .join("fast")
        .canonicalize()
        .unwrap()
        .join(format!("copy-{id}"));
    std::fs::write(&copy, &data).unwrap();
    let r = s
        .patch(&id, json!([{"op": "add", "path": "/locations/-", "value": {"url": format!("file://{}", copy.display()), "metadata": {}}}]))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(s.show(&id).await["stores"], "slow,fast");
    for q in ["", "?prefer=fast", "?prefer=slow,fast"] {
        let got = s
            .get(&format!("/v2/images/{id}/file{q}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(got == data, "{q}");
    }
    assert_eq!(
        status(s.get(&format!("/v2/images/{id}/file?prefer=bogus"))).await,
        400
    );
    // Remove the fast copy; the last copy cannot be removed that way.
    let del = |st: &str| s.req(Method::DELETE, &format!("/v2/stores/{st}/{id}"));
    assert_eq!(
        status(Server::as_project(del("fast"), "p1", "member")).await,
        404,
        "not visible to p1"
    );
    assert_eq!(status(del("fast")).await, 204);
    assert!(!copy.exists());
    assert_eq!(s.show(&id).await["stores"], "slow");
    // Glance checks "the only store" before "not in this store": 403 either way; an unknown
    // store is a 409. In its words.
    let only = "Cannot delete image data from the only store containing it. Consider deleting the image instead.";
    for (st, code, message) in [
        ("fast", 403, only),
        ("slow", 403, only),
        (
            "bogus",
            409,
            "The selected store bogus is not available on this node.",
        ),
    ] {
        let r = del(st)
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), code, "{st}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["message"], format!("{message}<br /><br />\n\n\n"), "{st}");
    }
    // `stores` comes last, as Glance writes it.
    let raw = s.get_text(&format!("/v2/images/{id}")).await;
    assert!(
        raw.ends_with(r#""schema": "/v2/schemas/image", "stores": "slow"}"#),
        "{raw}"
    );
    let got = s.download(&id).await;
    assert!(got == data);
}

/// A server with the stores of `config`, and a web server on loopback serving `files` (each
/// holding `data`) from a directory in `base`.
async fn with_web_files(
    b: Backend,
    base: &std::path::Path,
    files: &[&str],
    data: &[u8],
) -> Option<(Server, HttpServer)> {
    // The web server is on loopback: allowed by address, as Glance needs it.
    let conf = config(base, "", "")
        + "[import_filtering_opts]\nallowed_hosts = [127.0.0.1]\nallowed_ports = []\n";
    let s = Server::start_with(b, &conf).await?;
    let web = base.join("web");
    std::fs::create_dir_all(&web).unwrap();
    for name in files {
        std::fs::write(web.join(name), data).unwrap();
    }
    Some((s, HttpServer::start(&web)))
}

async fn http_store_serves_registered_urls(b: Backend) {
    let base = tempfile::tempdir().unwrap();
    let web = base.path().join("web");
    let data = random_bytes(300_000);
    let Some((s, http)) = with_web_files(b, base.path(), &["disk.raw"], &data).await else {
        return;
    };
    let url = format!("{}/disk.raw", http.url);

    let img = s
        .create_as(
            "p1",
            json!({"name": "h", "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let id = img["id"].as_str().unwrap().to_string();
    // The owner's member may register an http location.
    let r = Server::as_project(
        s.req(Method::POST, &format!("/v2/images/{id}/locations")),
        "p1",
        "member",
    )
    .json(&json!({"url": url}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let v = s.settled(&id, "active").await;
    assert_eq!(v["size"], data.len());
    assert_eq!(v["stores"], "web");
    let got = s.download(&id).await;
    assert!(got == data);
    // A missing URL is refused and changes nothing.
    let img = s
        .create_as(
            "p1",
            json!({"name": "h2", "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let id2 = img["id"].as_str().unwrap().to_string();
    let r = Server::as_project(
        s.req(Method::POST, &format!("/v2/images/{id2}/locations")),
        "p1",
        "member",
    )
    .json(&json!({"url": format!("{}/missing", http.url)}))
    .send()
    .await
    .unwrap();
    // Accepted, as Glance accepts it; its task fails and the image stays queued.
    assert_eq!(r.status(), 202);
    let t0 = std::time::Instant::now();
    loop {
        let tasks = s.get_json(&format!("/v2/images/{id2}/tasks")).await;
        if tasks["tasks"][0]["status"] == "failure" {
            break;
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(30), "{tasks}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let v = s.show(&id2).await;
    assert_eq!(v["status"], "queued");
    assert!(v.get("os_glance_import_task").is_none(), "{v}");
    // Deleting the image leaves the remote file alone.
    assert_eq!(s.delete(&id).await, 204);
    assert!(web.join("disk.raw").exists());
}

async fn single_store_has_no_store_api(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let r = s
        .get("/v2/info/stores")
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Multi backend is not supported at this site.")
    );
    let img = s
        .create(json!({"name": "x", "disk_format": "raw", "container_format": "bare"}))
        .await;
    let id = img["id"].as_str().unwrap();
    assert!(img.get("stores").is_none());
    assert_eq!(s.upload(id, b"abc".to_vec()).await.status(), 204);
    assert!(s.show(id).await.get("stores").is_none());
    assert_eq!(
        status(s.get(&format!("/v2/images/{id}/file?prefer=x"))).await,
        400
    );
}

#[cfg(feature = "rbd")]
async fn file_and_rbd_side_by_side(b: Backend) {
    let Some(conf) = common::ceph_conf() else {
        return;
    };
    let base = tempfile::tempdir().unwrap();
    let cfg = config(
        base.path(),
        ", ceph:rbd",
        &format!("[ceph]\nrbd_store_pool = images\nrbd_store_ceph_conf = {conf}\nweight = 50\n"),
    );
    let Some(s) = Server::start_with(b, &cfg).await else {
        return;
    };
    let data = random_bytes(3 << 20);
    let img = s
        .create(json!({"name": "both", "disk_format": "raw", "container_format": "bare"}))
        .await;
    let id = img["id"].as_str().unwrap().to_string();
    assert_eq!(
        upload_to(&s, &id, Some("ceph"), data.clone())
            .await
            .status(),
        204
    );
    let v = s.show(&id).await;
    assert_eq!(v["stores"], "ceph");
    // A copy in the file store, registered as a second location.
    let copy = base
        .path()
        .join("fast")
        .canonicalize()
        .unwrap()
        .join("copy");
    std::fs::write(&copy, &data).unwrap();
    let r = s
        .patch(&id, json!([{"op": "add", "path": "/locations/-", "value": {"url": format!("file://{}", copy.display()), "metadata": {}}}]))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.show(&id).await["stores"], "ceph,fast");
    let v: Value = s.get_json("/v2/info/stores/detail").await;
    let ceph = v["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "ceph")
        .cloned()
        .unwrap();
    assert_eq!(ceph["type"], "rbd");
    assert_eq!(ceph["properties"]["pool"], "images");
    assert!(ceph["properties"]["fsid"].as_str().unwrap().len() == 36);
    for q in ["?prefer=ceph", "?prefer=fast"] {
        let got = s
            .get(&format!("/v2/images/{id}/file{q}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(got == data, "{q}");
    }
    assert_eq!(s.delete(&id).await, 204);
    assert!(!copy.exists());
}

#[cfg(not(feature = "rbd"))]
async fn file_and_rbd_side_by_side(_: Backend) {}

/// Two PATCH requests at once, each removing a different one of an image's two locations: as
/// if one came after the other, one succeeds and the other is refused (the last location
/// stays), however their reads and writes interleave; the image keeps serving its data.
async fn racing_removals_keep_the_last_location(b: Backend) {
    let base = tempfile::tempdir().unwrap();
    let data = random_bytes(4096);
    let Some((s, http)) = with_web_files(b, base.path(), &["a.raw", "b.raw"], &data).await else {
        return;
    };
    for round in 0..12 {
        let id = s.create_raw(&format!("r{round}")).await;
        for name in ["a.raw", "b.raw"] {
            let url = format!("{}/{name}", http.url);
            let add = json!([{"op": "add", "path": "/locations/-", "value": {"url": url, "metadata": {}}}]);
            let r = s.patch(&id, add).await;
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        }
        let remove = |i: usize| json!([{"op": "remove", "path": format!("/locations/{i}")}]);
        let (r0, r1) = tokio::join!(s.patch(&id, remove(0)), s.patch(&id, remove(1)));
        let mut codes = [r0.status().as_u16(), r1.status().as_u16()];
        codes.sort();
        // The second, applied to one location: out of range (400) or the last one (403).
        assert!(
            codes[0] == 200 && (codes[1] == 400 || codes[1] == 403),
            "round {round}: {codes:?}"
        );
        let v = s.show(&id).await;
        assert_eq!(v["status"], "active", "{v}");
        assert_eq!(v["locations"].as_array().map(Vec::len), Some(1), "{v}");
        assert!(s.download(&id).await == data, "round {round}");
    }
}

both_databases!(
    stores_choose_and_report,
    http_store_serves_registered_urls,
    single_store_has_no_store_api,
    file_and_rbd_side_by_side,
    racing_removals_keep_the_last_location,
);
