//! Glance's tasks API and the legacy `import` task, run as leased work: a task fetches an
//! image from an HTTP server (a small one in this file, on loopback, allowed by
//! `[import_filtering_opts]`); a node killed or stopped mid-task leaves it to another node,
//! which finishes it. The real clients list, show and create tasks.

mod common;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::source::{OPEN, Source};
use common::{Backend, Server, status, venv};
use md5::Digest;
use reqwest::Method;
use serde_json::{Value, json};

fn import_body(from: &str, name: &str) -> Value {
    json!({
        "type": "import",
        "input": {
            "import_from": from,
            "import_from_format": "raw",
            "image_properties": {"name": name, "disk_format": "raw", "container_format": "bare"}
        }
    })
}

async fn post_task(s: &Server, body: &Value) -> reqwest::Response {
    s.req(Method::POST, "/v2/tasks")
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn task(s: &Server, id: &str) -> Value {
    s.get_json(&format!("/v2/tasks/{id}")).await
}

/// Waits (bounded) for the task to end; returns it.
async fn finished(s: &Server, id: &str, limit: Duration) -> Value {
    let t0 = Instant::now();
    loop {
        let t = task(s, id).await;
        let st = t["status"].as_str().unwrap_or_default().to_string();
        if st == "success" || st == "failure" {
            return t;
        }
        assert!(
            t0.elapsed() < limit,
            "task not finished within {limit:?}: {t}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn md5_hex(data: &[u8]) -> String {
    hex(&md5::Md5::digest(data))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn import_task_brings_an_image_in(b: Backend) {
    let Some(s) = Server::start_with(b, OPEN).await else {
        return;
    };
    let data = common::random_bytes(5 << 20);
    let src = Source::start(data.clone(), usize::MAX).await;
    let r = post_task(&s, &import_body(&src.url("/image"), "imported")).await;
    assert_eq!(r.status(), 201);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let created: Value = r.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(loc, format!("{}/v2/tasks/{id}", s.url));
    assert_eq!(created["status"], "pending");
    assert_eq!(created["message"], "");
    assert_eq!(created["result"], Value::Null);
    assert_eq!(created["input"]["import_from_format"], "raw");
    assert_eq!(created["self"], format!("/v2/tasks/{id}"));
    assert!(created.get("expires_at").is_none());

    let t = finished(&s, &id, Duration::from_secs(60)).await;
    assert_eq!(t["status"], "success", "{t}");
    assert_eq!(t["message"], "");
    assert!(t["expires_at"].is_string());
    let image_id = t["result"]["image_id"].as_str().unwrap().to_string();
    let img = s.show(&image_id).await;
    assert_eq!(img["status"], "active");
    assert_eq!(img["name"], "imported");
    assert_eq!(img["size"], data.len());
    assert_eq!(img["checksum"], md5_hex(&data));
    assert!(s.download(&image_id).await == data);

    // The listing shows stubs (no input, result or message), filters and pages.
    let list = s.get_json("/v2/tasks").await;
    assert_eq!(list["schema"], "/v2/schemas/tasks");
    assert_eq!(list["first"], "/v2/tasks");
    let stub = &list["tasks"][0];
    assert_eq!(stub["id"], id.as_str());
    assert!(stub.get("input").is_none() && stub.get("message").is_none());
    // Times are kept to the second, as Glance keeps them: the second task is the newest.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = post_task(&s, &import_body(&src.url("/image"), "again")).await;
    let second: Value = second.json().await.unwrap();
    finished(&s, second["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    let page = s.get_json("/v2/tasks?limit=1").await;
    assert_eq!(page["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(page["tasks"][0]["id"], second["id"], "newest first");
    let next = page["next"].as_str().unwrap().to_string();
    assert_eq!(
        next,
        format!(
            "/v2/tasks?limit=1&marker={}",
            second["id"].as_str().unwrap()
        )
    );
    let rest = s.get_json(&next).await;
    assert_eq!(rest["tasks"][0]["id"], id.as_str());
    let ok = s
        .get_json("/v2/tasks?status=success&type=import&sort_dir=asc")
        .await;
    assert_eq!(ok["tasks"][0]["id"], id.as_str());
    assert_eq!(ok["tasks"].as_array().unwrap().len(), 2);
    let none = s.get_json("/v2/tasks?status=failure").await;
    assert_eq!(none["tasks"], json!([]));
    assert_eq!(src.gets.load(Ordering::SeqCst), 2);
    // The work rows are gone once the tasks ended.
    let work: Vec<_> = s
        .counts()
        .await
        .into_iter()
        .filter(|(t, n)| t == "glance_rs_work" && *n > 0)
        .collect();
    assert!(work.is_empty(), "{work:?}");
}

async fn refusals_and_failures_as_glance_words_them(b: Backend) {
    let Some(s) = Server::start_with(b, OPEN).await else {
        return;
    };
    let src = Source::start(b"x".to_vec(), usize::MAX).await;
    // A source that answers 404: the task fails, its image is gone.
    let r = post_task(&s, &import_body(&src.url("/missing"), "lost")).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let t = finished(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(t["status"], "failure");
    assert_eq!(
        t["message"],
        "Uploading the image failed due to: HTTP Error 404: Not Found"
    );
    assert_eq!(t["result"], Value::Null);
    assert_eq!(s.get_json("/v2/images").await["images"], json!([]));

    let text = |r: reqwest::Response| async move { (r.status().as_u16(), r.text().await.unwrap()) };
    let post_task = |s: &Server, body: &Value| {
        s.req(Method::POST, "/v2/tasks")
            .header("Accept", "application/json")
            .json(body)
            .send()
    };
    let cases = [
        (
            import_body(&format!("http://localhost:{}/image", src.port), "x"),
            format!(
                "URI for legacy import task does not pass filtering: http://localhost:{}/image",
                src.port
            ),
        ),
        (
            import_body("file:///etc/passwd", "x"),
            "File based imports are not allowed. Please use a non-local source of image data."
                .to_string(),
        ),
        (
            import_body("ftp://127.0.0.1/x", "x"),
            "The given uri is not valid.".to_string(),
        ),
        (
            json!({"type": "import"}),
            "Task 'input' is required".to_string(),
        ),
        (
            json!({"type": "bogus", "input": {}}),
            "Provided object does not match schema 'task'".to_string(),
        ),
    ];
    for (body, words) in cases {
        let (code, msg) = text(post_task(&s, &body).await.unwrap()).await;
        assert_eq!(code, 400, "{body}: {msg}");
        assert!(msg.contains(&words), "{body}: {msg}");
    }
    // Nothing was recorded for the refused ones.
    assert_eq!(
        s.get_json("/v2/tasks").await["tasks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    for (q, words) in [
        ("sort_dir=up", "Invalid sort direction: up"),
        ("status=done", "Invalid status value: done"),
        ("type=export", "Invalid type value: export"),
        ("marker=nope", "Invalid marker format"),
        ("limit=x", "limit param must be an integer"),
        ("limit=-1", "limit param must be positive"),
        ("sort_key=input", "Sort key supplied was not valid."),
    ] {
        let r = s
            .get(&format!("/v2/tasks?{q}"))
            .header("Accept", "application/json");
        let (code, msg) = text(r.send().await.unwrap()).await;
        assert_eq!(code, 400, "{q}: {msg}");
        assert!(msg.contains(words), "{q}: {msg}");
    }
    let missing = uuid::Uuid::new_v4();
    assert_eq!(status(s.get(&format!("/v2/tasks/{missing}"))).await, 404);
    let r = s
        .req(Method::DELETE, &format!("/v2/tasks/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    assert!(r.text().await.unwrap().contains("auto deleted"));
    // tasks_api_access is for admins: a project member is refused everything.
    let member = |rb| Server::as_project(rb, "p1", "member");
    assert_eq!(status(member(s.get("/v2/tasks"))).await, 403);
    assert_eq!(status(member(s.get(&format!("/v2/tasks/{id}")))).await, 403);
    let body = import_body(&src.url("/image"), "m");
    assert_eq!(
        status(member(s.req(Method::POST, "/v2/tasks")).json(&body)).await,
        403
    );
}

/// `[task] task_time_to_live`: a finished task is gone once it expires (here at once), as Glance
/// deletes expired tasks when they are listed.
async fn finished_tasks_expire(b: Backend) {
    let conf = format!("{OPEN}[task]\ntask_time_to_live = 0\n");
    let Some(s) = Server::start_with(b, &conf).await else {
        return;
    };
    let src = Source::start(b"abc".to_vec(), usize::MAX).await;
    let r = post_task(&s, &import_body(&src.url("/image"), "brief")).await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let t = finished(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(t["status"], "success");
    assert_eq!(t["expires_at"], t["updated_at"], "{t}");
    assert_eq!(s.get_json("/v2/tasks").await["tasks"], json!([]));
    assert_eq!(status(s.get(&format!("/v2/tasks/{id}"))).await, 404);
    // The image it made stays.
    let image_id = t["result"]["image_id"].as_str().unwrap();
    assert_eq!(s.show(image_id).await["status"], "active");
    assert_eq!(
        s.get_json(&format!("/v2/images/{image_id}/tasks")).await,
        json!({"tasks": []})
    );
    let missing = uuid::Uuid::new_v4();
    assert_eq!(
        status(s.get(&format!("/v2/images/{missing}/tasks"))).await,
        404
    );
}

/// Two nodes; the one running an import is killed with 32 MiB of 64 fetched; the other
/// notices within the lease (2 s) plus a look, undoes the partial upload and runs the task on
/// to success, into the image the first node created.
async fn killed_node_import_is_finished_by_another(b: Backend) {
    let conf = format!("{OPEN}[task]\nlease_seconds = 2\n");
    let Some(mut a) = Server::start_with(b, &conf).await else {
        return;
    };
    let peer = a.start_peer_with(&conf).await;
    let data = common::random_bytes(64 << 20);
    let src = Source::start(data.clone(), 16 << 20).await;
    let r = post_task(&a, &import_body(&src.url("/image"), "survivor")).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let t0 = Instant::now();
    loop {
        let imgs = peer.get_json("/v2/images").await;
        if imgs["images"][0]["status"] == "saving" && !a.store_files().is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "import under way: {imgs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.kill9();
    let t = finished(&peer, &id, Duration::from_secs(60)).await;
    assert_eq!(t["status"], "success", "{t}");
    let image_id = t["result"]["image_id"].as_str().unwrap().to_string();
    let img = peer.show(&image_id).await;
    assert_eq!(img["status"], "active");
    assert_eq!(img["checksum"], md5_hex(&data));
    assert_eq!(
        peer.get_json("/v2/images").await["images"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        a.store_files(),
        vec![image_id.clone()],
        "no partial data left"
    );
    assert!(src.gets.load(Ordering::SeqCst) >= 2);
    let log = peer.log();
    assert!(log.contains("reclaiming abandoned work"), "{log}");
    assert!(log.contains("task succeeded"), "{log}");
}

/// SIGTERM during an import: the node interrupts it and hands it back; the other finishes it.
async fn stopped_node_hands_its_task_over(b: Backend) {
    let conf =
        format!("{OPEN}[DEFAULT]\ngraceful_shutdown_timeout = 1\n[task]\nlease_seconds = 60\n");
    let Some(mut a) = Server::start_with(b, &conf).await else {
        return;
    };
    let peer = a
        .start_peer_with(&format!("{OPEN}[task]\nlease_seconds = 60\n"))
        .await;
    let data = common::random_bytes(24 << 20);
    let src = Source::start(data.clone(), 8 << 20).await;
    let r = post_task(&a, &import_body(&src.url("/image"), "handed")).await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let t0 = Instant::now();
    while task(&peer, &id).await["status"] != "processing" || a.store_files().is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.stop();
    // Well before the 60 s lease: handed over, not timed out.
    let t0 = Instant::now();
    while !["success", "failure"].contains(&task(&peer, &id).await["status"].as_str().unwrap()) {
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "not handed over:\n{}\n---\n{}",
            a.log(),
            peer.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = task(&peer, &id).await;
    assert_eq!(t["status"], "success", "{t}");
    let image_id = t["result"]["image_id"].as_str().unwrap();
    assert_eq!(peer.show(image_id).await["checksum"], md5_hex(&data));
    assert!(
        a.log().contains("work interrupted, handed over"),
        "{}",
        a.log()
    );
}

/// The real clients: `glance task-create/task-list/task-show`, `openstack image task list/show`.
async fn clients_create_list_and_show_tasks(b: Backend) {
    let Some(venv) = venv() else { return };
    let Some(s) = Server::start_with(b, OPEN).await else {
        return;
    };
    let data = common::random_bytes(1 << 20);
    let src = Source::start(data, usize::MAX).await;
    let input = json!({
        "import_from": src.url("/image"),
        "import_from_format": "raw",
        "image_properties": {"name": "by-client", "disk_format": "raw", "container_format": "bare"}
    })
    .to_string();
    let out = Command::new(venv.join("bin/glance"))
        .args(["--os-auth-token", "x", "--os-image-url", &s.url])
        .args(["task-create", "--type", "import", "--input", &input])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = s.get_json("/v2/tasks").await["tasks"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(stdout.contains(&id), "{stdout}");
    finished(&s, &id, Duration::from_secs(30)).await;
    let out = Command::new(venv.join("bin/glance"))
        .args([
            "--os-auth-token",
            "x",
            "--os-image-url",
            &s.url,
            "task-list",
        ])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && listed.contains(&id) && listed.contains("success"),
        "{listed}"
    );
    let out = s.openstack(&venv, &["image", "task", "list", "-f", "json"]);
    let list: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(list[0]["ID"], id.as_str());
    assert_eq!(list[0]["Status"], "success");
    let out = s.openstack(&venv, &["image", "task", "show", &id, "-f", "json"]);
    let shown: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(shown["status"], "success");
    assert!(shown["result"].to_string().contains("image_id"), "{shown}");

    // The locations API through openstacksdk (as a service of p1), hashed in the background;
    // its task listed by `tasks()`, the computed hash shown by `openstack image show`.
    let data = common::random_bytes(3 << 20);
    let src = Source::start(data.clone(), usize::MAX).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/sdk_locations.py"
    );
    let out = Command::new(venv.join("bin/python"))
        .args([script, &s.url, &src.url("/image")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    assert_eq!(v["status"], "active", "{v}");
    assert_eq!(v["checksum"], md5_hex(&data), "{v}");
    assert_eq!(v["size"], data.len(), "{v}");
    assert_eq!(v["hash_algo"], "sha512", "{v}");
    assert_eq!(v["tasks"][0]["status"], "success", "{v}");
    assert_eq!(v["tasks"][0]["input"]["loc_url"], src.url("/image"), "{v}");
    let id = v["id"].as_str().unwrap();
    let out = s.openstack(&venv, &["image", "show", id, "-f", "json"]);
    let shown: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(shown["checksum"], md5_hex(&data));
    // The client shows the sha512 among the image's properties.
    let sha512 = v["hash_value"].as_str().unwrap();
    assert_eq!(sha512.len(), 128);
    assert!(shown.to_string().contains(sha512), "{shown}");
    assert_eq!(shown["status"], "active");

    // `glance add-location` (the same API through python-glanceclient) with validation data:
    // verified, then active; a hash too long for its algorithm is refused in Glance's words.
    let data = common::random_bytes(2 << 20);
    let src = Source::start(data.clone(), usize::MAX).await;
    let sha = hex(&sha2::Sha512::digest(&data));
    let add = |id: &str, vd: &str| {
        Command::new(venv.join("bin/glance"))
            .args(["--os-auth-token", "x", "--os-image-url", &s.url])
            .args(["add-location", "--url", &src.url("/image")])
            .args(["--validation-data", vd, id])
            .output()
            .unwrap()
    };
    let new =
        || s.create(json!({"name": "cli-loc", "disk_format": "raw", "container_format": "bare"}));
    let id = new().await["id"].as_str().unwrap().to_string();
    let vd = json!({"os_hash_algo": "sha512", "os_hash_value": sha}).to_string();
    let out = add(&id, &vd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = s.settled(&id, "active").await;
    assert_eq!(v["os_hash_value"], sha);
    assert_eq!(v["checksum"], md5_hex(&data));
    let id = new().await["id"].as_str().unwrap().to_string();
    let out = add(
        &id,
        &json!({"os_hash_algo": "sha256", "os_hash_value": sha}).to_string(),
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("is not the correct size for (sha256)"),
        "{said}"
    );
    assert_eq!(s.show(&id).await["status"], "queued");
}

/// As a service (Nova, Cinder) of project p1 registers data: the Locations API's caller.
fn as_service(rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    Server::as_project(rb, "p1", "member,reader,service")
}

async fn add_location(s: &Server, id: &str, body: Value) -> reqwest::Response {
    as_service(s.req(Method::POST, &format!("/v2/images/{id}/locations")))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// A GET as the service, its JSON answer.
async fn service_get(s: &Server, path: &str) -> Value {
    as_service(s.get(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn new_p1_image(s: &Server, name: &str) -> String {
    s.create_as(
        "p1",
        json!({"name": name, "disk_format": "raw", "container_format": "bare"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The image's newest location_import task, once all its tasks ended.
async fn location_task(s: &Server, id: &str, limit: Duration) -> Value {
    let t0 = Instant::now();
    loop {
        let r = as_service(s.get(&format!("/v2/images/{id}/tasks")))
            .send()
            .await
            .unwrap();
        let code = r.status();
        let text = r.text().await.unwrap();
        let tasks: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{code}: {text}"));
        let all = tasks["tasks"].as_array().cloned().unwrap_or_default();
        let ended = |t: &Value| t["status"] == "success" || t["status"] == "failure";
        // Listed oldest first, as Glance lists them.
        if let Some(newest) = all.last().filter(|_| all.iter().all(ended)) {
            return newest.clone();
        }
        assert!(t0.elapsed() < limit, "location task not finished: {tasks}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `do_secure_hash` (Glance's default): an added location's data is read and hashed by a
/// `location_import` task; validation data that disagrees fails it and leaves the image queued
/// without the location; matching validation data activates the image once verified.
async fn added_locations_are_hashed_in_the_background(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let data = common::random_bytes(8 << 20);
    std::fs::create_dir_all(s.images_dir()).unwrap();
    let path = s.images_dir().canonicalize().unwrap().join("external");
    std::fs::write(&path, &data).unwrap();
    let url = format!("file://{}", path.display());
    let sha = hex(&sha2::Sha512::digest(&data));

    let id = new_p1_image(&s, "hashed").await;
    let r = add_location(&s, &id, json!({"url": url})).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let t = location_task(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(t["type"], "location_import");
    assert_eq!(t["status"], "success", "{t}");
    assert_eq!(t["result"], json!({"image_id": id}));
    assert_eq!(t["input"]["loc_url"], url.as_str());
    let img = s.show(&id).await;
    assert_eq!(img["status"], "active");
    assert_eq!(img["size"], data.len());
    assert_eq!(img["checksum"], md5_hex(&data));
    assert_eq!(img["os_hash_algo"], "sha512");
    assert_eq!(img["os_hash_value"], sha);
    assert!(
        img.get("os_glance_import_task").is_none(),
        "lock dropped: {img}"
    );

    // Validation data that disagrees: the task fails, the image is as before.
    let bad = new_p1_image(&s, "mismatch").await;
    let vd = json!({"os_hash_algo": "sha512", "os_hash_value": "0".repeat(128)});
    let r = add_location(&s, &bad, json!({"url": url, "validation_data": vd})).await;
    assert_eq!(r.status(), 202);
    let t = location_task(&s, &bad, Duration::from_secs(30)).await;
    assert_eq!(t["status"], "failure");
    assert_eq!(t["message"], "Task failed due to Internal Error");
    let img = s.show(&bad).await;
    assert_eq!(img["status"], "queued", "{img}");
    assert_eq!(img["checksum"], Value::Null);
    assert_eq!(img["os_hash_value"], Value::Null);
    assert_eq!(img["size"], Value::Null);
    let locs = service_get(&s, &format!("/v2/images/{bad}/locations")).await;
    assert_eq!(locs, json!([]));
    assert!(img.get("os_glance_import_task").is_none());

    // Refused before any work, as Glance's schema and checks refuse them; nothing changes.
    let refused = new_p1_image(&s, "refused").await;
    for (vd, words) in [
        (
            json!({"checksum": md5_hex(&data)}),
            "Additional properties are not allowed ('checksum' was unexpected)",
        ),
        (
            json!({"os_hash_value": sha}),
            "'os_hash_algo' is a dependency of 'os_hash_value'",
        ),
        (
            json!({"os_hash_algo": "crc32", "os_hash_value": "00"}),
            "'crc32' is not one of ['sha1', 'sha256', 'sha512', 'md5']",
        ),
        (
            json!({"os_hash_algo": "sha512", "os_hash_value": "zz"}),
            "os_hash_value (zz) is not a valid hexadecimal value",
        ),
        (
            json!({"os_hash_algo": "sha256", "os_hash_value": sha}),
            "is not the correct size for (sha256) (should be (32) bytes)",
        ),
    ] {
        let r = add_location(&s, &refused, json!({"url": url, "validation_data": vd})).await;
        assert_eq!(r.status(), 400, "{vd}");
        // Rendered as Glance renders it for a browser: quotes as HTML entities.
        let text = r.text().await.unwrap().replace("&#x27;", "'");
        assert!(text.contains(words), "{vd}: {text}");
    }
    let tasks = service_get(&s, &format!("/v2/images/{refused}/tasks")).await;
    assert_eq!(tasks["tasks"], json!([]), "no task for a refused location");
    assert_eq!(s.show(&refused).await["status"], "queued");

    // A location no store serves (a file outside the store's directory, an unknown scheme) is
    // accepted as Glance accepts it; its task fails, the image stays queued and unlocked, so
    // a good location is accepted next.
    for other in ["file:///etc/passwd", "ftp://127.0.0.1/x"] {
        let r = add_location(&s, &refused, json!({"url": other})).await;
        assert_eq!(r.status(), 202, "{other}");
        let t = location_task(&s, &refused, Duration::from_secs(30)).await;
        assert_eq!(t["status"], "failure", "{other}: {t}");
        assert_eq!(t["message"], "Task failed due to Internal Error");
        let img = s.show(&refused).await;
        assert_eq!(img["status"], "queued", "{img}");
        assert!(img.get("os_glance_import_task").is_none(), "{img}");
        assert_eq!(img["size"], Value::Null);
    }
    let r = add_location(&s, &refused, json!({"url": url})).await;
    assert_eq!(r.status(), 202);
    assert_eq!(
        s.settled(&refused, "active").await["checksum"],
        md5_hex(&data)
    );

    // Matching validation data: active once verified.
    let good = new_p1_image(&s, "verified").await;
    let vd = json!({"os_hash_algo": "sha512", "os_hash_value": sha});
    let r = add_location(&s, &good, json!({"url": url, "validation_data": vd})).await;
    assert_eq!(r.status(), 202);
    assert_eq!(
        location_task(&s, &good, Duration::from_secs(30)).await["status"],
        "success"
    );
    let img = s.show(&good).await;
    assert_eq!(img["status"], "active");
    assert_eq!(img["os_hash_value"], sha);
    // Not queued any more: 409.
    let r = add_location(&s, &good, json!({"url": url})).await;
    assert_eq!(r.status(), 409);
}

/// A node killed while it hashes an added (slow, http) location: another node resumes the task
/// and hashes it.
async fn killed_node_hashing_is_finished_by_another(b: Backend) {
    let conf = format!("{OPEN}[task]\nlease_seconds = 2\n");
    let Some(mut a) = Server::start_with(b, &conf).await else {
        return;
    };
    let peer = a.start_peer_with(&conf).await;
    let data = common::random_bytes(48 << 20);
    let src = Source::start(data.clone(), 12 << 20).await;
    let id = new_p1_image(&a, "slow").await;
    let r = add_location(&a, &id, json!({"url": src.url("/image")})).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let t0 = Instant::now();
    while src.gets.load(Ordering::SeqCst) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "hashing never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.kill9();
    let t = location_task(&peer, &id, Duration::from_secs(60)).await;
    assert_eq!(t["status"], "success", "{t}");
    let img = peer.show(&id).await;
    assert_eq!(img["status"], "active");
    assert_eq!(img["checksum"], md5_hex(&data));
    assert!(
        src.gets.load(Ordering::SeqCst) >= 2,
        "hashed again by the other node"
    );
    assert!(peer.log().contains("reclaiming abandoned work"));
}

/// Deleting an image while its added location is hashed cancels the hashing: the task fails
/// soon after (not when the slow download would have ended) and nothing is left running.
async fn deleting_the_image_cancels_its_hashing(b: Backend) {
    let Some(s) = Server::start_with(b, OPEN).await else {
        return;
    };
    // 40 MiB at 4 MiB/s: ten seconds to hash.
    let src = Source::start(common::random_bytes(40 << 20), 4 << 20).await;
    let id = new_p1_image(&s, "doomed").await;
    let r = add_location(&s, &id, json!({"url": src.url("/image")})).await;
    assert_eq!(r.status(), 202);
    let t0 = Instant::now();
    while src.gets.load(Ordering::SeqCst) == 0 || s.show(&id).await["status"] != "active" {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "hashing never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tasks = s.get_json(&format!("/v2/images/{id}/tasks")).await;
    let task_id = tasks["tasks"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(s.delete(&id).await, 204);
    let deleted = Instant::now();
    let t = loop {
        let t = task(&s, &task_id).await;
        if t["status"] == "success" || t["status"] == "failure" {
            break t;
        }
        assert!(
            deleted.elapsed() < Duration::from_secs(6),
            "not cancelled: {t}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(t["status"], "failure", "{t}");
    assert_eq!(t["message"], "Task failed due to Internal Error");
    assert!(s.log().contains("has been canceled"), "{}", s.log());
}

both_databases!(
    import_task_brings_an_image_in,
    refusals_and_failures_as_glance_words_them,
    finished_tasks_expire,
    killed_node_import_is_finished_by_another,
    stopped_node_hands_its_task_over,
    added_locations_are_hashed_in_the_background,
    killed_node_hashing_is_finished_by_another,
    deleting_the_image_cancels_its_hashing,
    clients_create_list_and_show_tasks
);
