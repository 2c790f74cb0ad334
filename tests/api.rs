//! HTTP-level tests of the image API against the real binary, on SQLite and MariaDB.

mod common;

use common::{Backend, Server, random_bytes, status};
use md5::Digest as _;
use reqwest::Method;
use serde_json::{Value, json};

fn image_ids(v: &Value) -> Vec<String> {
    v["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

async fn list(s: &Server, query: &str) -> Value {
    let r = s.get(&format!("/v2/images{query}")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{query}: {}", r.text().await.unwrap());
    r.json().await.unwrap()
}

async fn status_of(r: reqwest::Response) -> (u16, String) {
    let st = r.status().as_u16();
    (st, r.text().await.unwrap())
}

/// Asserts that `r` is a `code` whose body says `msg`; `what` names the case in failures.
async fn assert_refused(r: reqwest::Response, code: u16, msg: &str, what: &str) {
    let (st, text) = status_of(r).await;
    assert_eq!(st, code, "{what}: {text}");
    assert!(text.contains(msg), "{what}: {text}");
}

async fn versions_and_negotiation(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let r = s.get("/").send().await.unwrap();
    assert_eq!(r.status(), 300);
    let v: Value = r.json().await.unwrap();
    let ids: Vec<&str> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "v2.15", "v2.9", "v2.17", "v2.7", "v2.6", "v2.5", "v2.4", "v2.3", "v2.2", "v2.1",
            "v2.0"
        ]
    );
    assert_eq!(v["versions"][2]["status"], "CURRENT");
    assert_eq!(
        v["versions"][0]["links"][0]["href"],
        format!("{}/v2/", s.url)
    );
    assert_eq!(v["versions"][0]["links"][0]["rel"], "self");

    assert_eq!(status(s.get("/versions")).await, 200);
    for (path, code) in [
        ("/v2.1/images", 200),
        ("/v2.17/images", 200),
        ("/v2.16/images", 300), // not allowed without the image cache, as in Glance
        ("/v3/images", 300),
        ("/v1/images", 300),
        ("/anything", 300),
    ] {
        assert_eq!(status(s.get(path)).await, code, "{path}");
    }
    let r = s
        .get("/images")
        .header("Accept", "application/vnd.openstack.images-v2.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s.get("/healthcheck").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "OK");
}

/// The href of the versions document's first entry for a request with `headers`.
async fn version_href(s: &Server, headers: &[(&str, &str)]) -> String {
    let mut r = s.get("/versions");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let v: Value = r.send().await.unwrap().json().await.unwrap();
    v["versions"][0]["links"][0]["href"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Sends GET /v2/images/logged-for with `X-Forwarded-For: forwarded` (a 404) and returns the
/// client its log line names.
async fn logged_client(s: &Server, forwarded: &str) -> String {
    let r = s
        .get("/v2/images/logged-for")
        .header("X-Forwarded-For", forwarded);
    assert_eq!(r.send().await.unwrap().status(), 404);
    let log = s.log();
    // The access line: `... [ids] CLIENT "GET /v2/images/logged-for" status: 404 ...`.
    let line = log
        .lines()
        .find(|l| l.contains("\"GET /v2/images/logged-for\""));
    let client = line.and_then(|l| l.split("] ").nth(1)?.split(' ').next());
    client.unwrap_or_default().to_string()
}

/// Behind a TLS-terminating proxy: links and Locations name the scheme it forwards (as Glance
/// under uWSGI does), and with `enable_proxy_headers_parsing` its host and path prefix (as
/// oslo's HTTPProxyToWSGI), each compared with Glance 33; `/v2` redirects to `/v2/`. The logs
/// name the client: the peer, or with the option the address the proxy forwards.
async fn behind_a_proxy(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let host = s.url.trim_start_matches("http://").to_string();
    let https = ("X-Forwarded-Proto", "https");
    assert_eq!(
        version_href(&s, &[https]).await,
        format!("https://{host}/v2/")
    );
    let lb = ("X-Forwarded-Host", "lb.example");
    assert_eq!(version_href(&s, &[lb]).await, format!("{}/v2/", s.url));
    let r = s
        .req(Method::POST, "/v2/images")
        .header(https.0, https.1)
        .json(&json!({"name": "p"}))
        .send()
        .await
        .unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(location, format!("https://{host}/v2/images/{id}"));

    assert_eq!(logged_client(&s, "203.0.113.7").await, "127.0.0.1");

    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (method, path) in [(Method::GET, "/v2"), (Method::DELETE, "/v2.1?x=1")] {
        let r = plain
            .request(method, format!("{}{path}", s.url))
            .header(https.0, https.1)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "{path}");
        assert_eq!(
            r.headers()["location"],
            format!("https://{host}/v2/").as_str()
        );
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf8");
    }

    let Some(s) = Server::start_with(
        b,
        "[oslo_middleware]\nenable_proxy_headers_parsing = true\n",
    )
    .await
    else {
        return;
    };
    assert_eq!(
        logged_client(&s, "203.0.113.7, 10.0.0.1").await,
        "203.0.113.7"
    );
    let host = s.url.trim_start_matches("http://").to_string();
    for (headers, want) in [
        (
            vec![lb, ("X-Forwarded-Prefix", "/image/")],
            "http://lb.example/image/v2/".to_string(),
        ),
        (
            vec![https, ("X-Forwarded-Host", "a.example:8443, b.example")],
            "https://a.example:8443/v2/".to_string(),
        ),
        // Forwarded wins over X-Forwarded-*; its first element is the client's side.
        (
            vec![
                lb,
                (
                    "Forwarded",
                    "for=10.0.0.1;proto=https;host=\"lb2.example\", proto=http",
                ),
            ],
            "https://lb2.example/v2/".to_string(),
        ),
        (
            vec![https, ("Forwarded", "for=10.0.0.1")],
            format!("https://{host}/v2/"),
        ),
    ] {
        assert_eq!(version_href(&s, &headers).await, want, "{headers:?}");
    }
}

async fn request_ids_and_error_shapes(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let missing = "6f1b1e2a-9c1d-4f6e-8a3b-0c2d4e6f8a10";
    let r = s
        .get(&format!("/v2/images/{missing}"))
        .header("Accept", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let rid = r.headers()["x-openstack-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(rid.starts_with("req-") && rid.len() == 40, "{rid}");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(
        r.text().await.unwrap(),
        format!("404 Not Found\n\nNo image found with ID {missing}\n\n   ")
    );

    let r = s
        .get(&format!("/v2/images/{missing}"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "404 Not Found");
    assert_eq!(v["title"], "Not Found");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("No image found with ID")
    );

    let r = s
        .get(&format!("/v2/images/{missing}"))
        .header("Accept", "*/*")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.text().await.unwrap().contains("<h1>404 Not Found</h1>"));

    // An inbound id is kept; a too-long one is replaced.
    let r = s
        .get("/v2/images")
        .header("X-Openstack-Request-Id", "req-abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-openstack-request-id"], "req-abc");
    let long = "x".repeat(65);
    let r = s
        .get("/v2/images")
        .header("X-Openstack-Request-Id", &long)
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["x-openstack-request-id"], long.as_str());

    // Wrong methods: 405 with Allow.
    for (m, path, allow) in [
        (Method::PUT, "/v2/images", "GET, POST"),
        (
            Method::POST,
            &*format!("/v2/images/{missing}"),
            "GET, PATCH, DELETE",
        ),
        (Method::DELETE, "/v2/schemas/image", "GET"),
        (
            Method::DELETE,
            &*format!("/v2/images/{missing}/locations"),
            "POST",
        ),
        (
            Method::POST,
            &*format!("/v2/images/{missing}/file"),
            "GET, PUT",
        ),
    ] {
        let r = s.req(m.clone(), path).send().await.unwrap();
        assert_eq!(r.status(), 405, "{m} {path}");
        assert_eq!(r.headers()["allow"], allow);
        assert!(r.headers().contains_key("x-openstack-request-id"));
        // webob's own 405 template, as Glance 33 renders it.
        let body = r.text().await.unwrap();
        let expected =
            format!("  The method {m} is not allowed for this resource. <br /><br />\n\n </body>");
        assert!(body.contains(&expected), "{body}");
    }
    // HEAD is refused like any method a v2 route does not name (not served as a bodiless GET),
    // with the HTML error's headers and no body, as webob does; the health check answers it.
    let img = s.create_raw("head").await;
    for (path, allow) in [
        ("/v2/images".to_string(), "GET, POST"),
        (format!("/v2/images/{img}"), "GET, PATCH, DELETE"),
        (format!("/v2/images/{img}/file"), "GET, PUT"),
        ("/v2/schemas/image".to_string(), "GET"),
    ] {
        let r = s
            .req(Method::HEAD, &path)
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "HEAD {path}");
        assert_eq!(r.headers()["allow"], allow);
        assert_eq!(r.headers()["content-type"], "text/html; charset=UTF-8");
        assert_eq!(r.headers()["content-length"], "0");
    }
    let r = s.req(Method::HEAD, "/healthcheck").send().await.unwrap();
    assert_eq!(r.status(), 204);

    // A body where a route takes none: 400 before anything else (even for a missing image),
    // as Glance's `body_reject` routes answer; an empty one is no body.
    let expected = "A body is not expected with this request.";
    for (m, path) in [
        (Method::GET, format!("/v2/images/{img}")),
        (Method::DELETE, format!("/v2/images/{missing}")),
        (Method::GET, format!("/v2/images/{img}/file")),
        (Method::POST, format!("/v2/images/{img}/actions/deactivate")),
        (Method::PUT, format!("/v2/images/{img}/tags/t")),
        (Method::GET, format!("/v2/images/{img}/members")),
        (Method::GET, "/v2/schemas/image".to_string()),
    ] {
        let r = s.req(m.clone(), &path).body("{}").send().await.unwrap();
        assert_refused(r, 400, expected, &format!("{m} {path}")).await;
    }
    let chunked = || {
        reqwest::Body::wrap_stream(futures_util::stream::iter([Ok::<_, std::io::Error>(
            b"{}".to_vec(),
        )]))
    };
    let r = s
        .req(
            Method::POST,
            &format!("/v2/images/{img}/actions/reactivate"),
        )
        .body(chunked())
        .send()
        .await
        .unwrap();
    assert_eq!(status_of(r).await.0, 400);
    let r = s
        .req(Method::PUT, &format!("/v2/images/{img}/tags/t"))
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        s.get("/v2/images")
            .body("{}")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(s.show(&img).await["tags"], json!(["t"]));

    // Repeated slashes read as one, as Glance's router does.
    let r = s.get(&format!("/v2//images//{img}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], img.as_str());
}

/// Messages Glance raises as webob's `detail` follow the status's standard explanation; the
/// others replace it. Each expected body is what Glance 33 answered (under uWSGI) to the same
/// request.
async fn error_messages_as_glance_words_them(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let id = s.create_raw("e").await;
    let missing = "6f1b1e2a-9c1d-4f6e-8a3b-0c2d4e6f8a10";
    let patch = |ops: Value| {
        s.req(Method::PATCH, &format!("/v2/images/{id}"))
            .header(
                "Content-Type",
                "application/openstack-images-v2.1-json-patch",
            )
            .body(ops.to_string())
    };
    let cases = [
        (
            s.req(Method::DELETE, &format!("/v2/images/{missing}")),
            404,
            format!("Failed to find image {missing} to delete<br /><br />\n\n\n"),
        ),
        (
            s.req(Method::PUT, &format!("/v2/images/{missing}/tags/x")),
            404,
            format!("Image {missing} not found.<br /><br />\n\n\n"),
        ),
        (
            patch(json!([{"op": "remove", "path": "/nosuch"}])),
            409,
            "There was a conflict when trying to complete your request.<br /><br />\n\
             Property nosuch does not exist.\n\n"
                .into(),
        ),
        (
            patch(json!([{"op": "remove", "path": "/min_ram"}])),
            403,
            "Access was denied to this resource.<br /><br />\nProperty min_ram may not be removed.\n\n"
                .into(),
        ),
        (
            patch(json!([{"op": "replace", "path": "/locations", "value": []}])),
            403,
            "Access was denied to this resource.<br /><br />\nCannot set locations to empty list.\n\n"
                .into(),
        ),
        (
            s.req(Method::POST, "/v2/images")
                .header("Content-Type", "application/json")
                .body(json!({"name": "x", "os_glance_foo": "y"}).to_string()),
            403,
            "Access was denied to this resource.<br /><br />\nAttribute 'os_glance_foo' is reserved.\n\n"
                .into(),
        ),
        (
            s.req(Method::POST, "/v2/images")
                .header("Content-Type", "application/json")
                .body(json!({"name": "x", "locations": []}).to_string()),
            403,
            "Attribute 'locations' is reserved.<br /><br />\n\n\n".into(),
        ),
        (
            s.req(Method::POST, "/v2/images")
                .header("Content-Type", "application/json")
                .body(json!({"min_ram": -1}).to_string()),
            400,
            "Invalid value '-1' for parameter 'min_ram': Cannot be a negative value<br /><br />\n\n\n"
                .into(),
        ),
        (
            s.req(Method::POST, "/v2/images")
                .header("Content-Type", "application/json")
                .body(json!({"min_disk": 2147483648u64}).to_string()),
            400,
            "'min_disk' value out of range, must not exceed 2147483647.<br /><br />\n\n\n".into(),
        ),
        (
            patch(json!([{"op": "replace", "path": "/min_disk", "value": -5}])),
            400,
            "Invalid value '-5' for parameter 'min_disk': Cannot be a negative value<br /><br />\n\n\n"
                .into(),
        ),
        (
            patch(json!([{"op": "replace", "path": "/min_ram", "value": 9223372036854775808u64}])),
            400,
            "'min_ram' value out of range, must not exceed 2147483647.<br /><br />\n\n\n".into(),
        ),
        (
            s.get("/v2/images?created_at=between:2020-01-01T00:00:00Z"),
            400,
            "Unable to filter on a unknown operator.<br /><br />\n\n\n".into(),
        ),
        (
            s.get(&format!("/v2/images/{missing}/members")),
            404,
            format!("Image {missing} not found.<br /><br />\n\n\n"),
        ),
        (
            s.req(Method::PUT, &format!("/v2/images/{id}/tags/a%2Fb")),
            404,
            "The resource could not be found.<br /><br />\n\n\n".into(),
        ),
        (
            s.req(Method::PUT, &format!("/v2/images/{id}/file"))
                .header("Content-Type", "text/plain")
                .body("abc"),
            415,
            "The request media type text/plain is not supported by this server.\n<br /><br />\n\
             Invalid content type text/plain"
                .into(),
        ),
    ];
    for (rb, status, message) in cases {
        let r = rb
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{message}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["message"], message.as_str());
    }
    assert_eq!(s.show(&id).await["status"], "queued");
}

async fn create_defaults_and_location(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let r = s
        .req(Method::POST, "/v2/images")
        .json(&json!({"name": "cirros", "disk_format": "qcow2", "container_format": "bare", "os_distro": "cirros", "tags": ["a", "b"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let v: Value = r.json().await.unwrap();
    let id = v["id"].as_str().unwrap();
    assert_eq!(loc, format!("{}/v2/images/{id}", s.url));
    assert_eq!(v["status"], "queued");
    assert_eq!(v["visibility"], "shared");
    assert_eq!(v["protected"], false);
    assert_eq!(v["os_hidden"], false);
    assert_eq!(v["min_ram"], 0);
    assert_eq!(v["size"], Value::Null);
    assert_eq!(v["checksum"], Value::Null);
    assert_eq!(v["os_distro"], "cirros");
    assert_eq!(v["tags"], json!(["a", "b"]));
    assert_eq!(v["self"], format!("/v2/images/{id}"));
    assert_eq!(v["file"], format!("/v2/images/{id}/file"));
    assert_eq!(v["schema"], "/v2/schemas/image");
    assert!(v.get("locations").is_none() && v.get("direct_url").is_none());
    let created = v["created_at"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.len() == 20, "{created}");
    // The same image comes back from show.
    let shown = s.show(id).await;
    assert_eq!(shown, v);
    // Byte for byte as Glance writes it: its key order and Python's separators (scripts grep
    // for `"status": "queued"`).
    let raw = s.get_text(&format!("/v2/images/{id}")).await;
    assert!(
        raw.starts_with(r#"{"os_distro": "cirros", "name": "cirros", "disk_format": "qcow2", "container_format": "bare", "visibility": "shared", "size": null, "virtual_size": null, "status": "queued", "checksum": null,"#),
        "{raw}"
    );

    // Client-supplied id; then a duplicate, and after delete the tombstone keeps it taken.
    let custom = "11111111-2222-3333-4444-555555555555";
    let v = s.create(json!({"id": custom, "name": "x"})).await;
    assert_eq!(v["id"], custom);
    let before = s.counts().await;
    let r = s
        .req(Method::POST, "/v2/images")
        .json(&json!({"id": custom}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(s.delete(custom).await, 204);
    let r = s
        .req(Method::POST, "/v2/images")
        .json(&json!({"id": custom}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        409,
        "a deleted id must never be reused (OSSN-0075)"
    );
    assert_eq!(status(s.get(&format!("/v2/images/{custom}"))).await, 404);
    assert_eq!(s.counts().await[0], before[0]);
}

async fn create_rejects_bad_input(b: Backend) {
    let Some(s) = Server::start_with(
        b,
        "[DEFAULT]\nimage_property_quota = 3\nimage_tag_quota = 2\n",
    )
    .await
    else {
        return;
    };
    s.create(json!({"name": "seed"})).await;
    let before = s.counts().await;
    let long = "n".repeat(256);
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"status": "active"}),
            403,
            "Attribute 'status' is read-only.",
        ),
        (
            json!({"checksum": "abc"}),
            403,
            "Attribute 'checksum' is read-only.",
        ),
        (json!({"self": "/x"}), 403, "Attribute 'self' is read-only."),
        (
            json!({"direct_url": "file:///x"}),
            403,
            "Attribute 'direct_url' is read-only.",
        ),
        (json!({"size": 5}), 403, "Attribute 'size' is read-only."),
        (
            json!({"os_glance_import_task": "x"}),
            403,
            "Attribute 'os_glance_import_task' is reserved.",
        ),
        (
            json!({"deleted": "1"}),
            403,
            "Attribute 'deleted' is reserved.",
        ),
        (
            json!({"name": long}),
            400,
            "Provided object does not match schema 'image'",
        ),
        (
            json!({"min_ram": "lots"}),
            400,
            "Provided object does not match schema 'image'",
        ),
        (
            json!({"disk_format": "floppy"}),
            400,
            "Provided object does not match schema 'image'",
        ),
        (
            json!({"visibility": "everyone"}),
            400,
            "Provided object does not match schema 'image'",
        ),
        (
            json!({"id": "not-a-uuid"}),
            400,
            "Provided object does not match schema 'image'",
        ),
        (
            json!({"tags": ["t".repeat(256)]}),
            400,
            "Provided object does not match schema 'image'",
        ),
        (
            json!({"custom": 5}),
            400,
            "Provided object does not match schema 'image'",
        ),
        (
            json!({ "k".repeat(256): "v" }),
            400,
            "Custom property should not be greater than 255 characters.",
        ),
        (
            json!({"a": "1", "b": "2", "c": "3", "d": "4"}),
            413,
            "image properties. Attempted: 4, Maximum: 3",
        ),
        (
            json!({"tags": ["1", "2", "3"]}),
            413,
            "image tags. Attempted: 3, Maximum: 2",
        ),
    ];
    for (body, code, msg) in cases {
        let r = s
            .req(Method::POST, "/v2/images")
            .header("Accept", "application/json")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_refused(r, code, msg, &body.to_string()).await;
    }
    for raw in ["{not json", "", "[1, 2"] {
        let r = s
            .req(Method::POST, "/v2/images")
            .body(raw)
            .send()
            .await
            .unwrap();
        let msg = if raw.is_empty() {
            "Body expected in request."
        } else {
            "Malformed JSON in request body."
        };
        assert_refused(r, 400, msg, raw).await;
    }
    // Non-admins may not publicize.
    let r = Server::as_project(s.req(Method::POST, "/v2/images"), "p1", "member")
        .json(&json!({"visibility": "public"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        s.counts().await,
        before,
        "refused requests must change nothing"
    );
    // Taken and dropped, as Glance does; the limits' edges are taken.
    let v = s
        .create(json!({"os_hash_algo": "md5", "os_hash_value": "abc", "min_ram": 2147483647, "min_disk": 0}))
        .await;
    assert_eq!(v["os_hash_algo"], Value::Null);
    assert_eq!(v["os_hash_value"], Value::Null);
    assert_eq!(v["min_ram"], 2147483647);
    assert!(v.get("abc").is_none());
}

async fn patch_rules(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let img = s
        .create(json!({"name": "p", "os_distro": "ubuntu", "a/b": "slash"}))
        .await;
    let id = img["id"].as_str().unwrap().to_string();
    let path = format!("/v2/images/{id}");

    // Wrong media type: 415 with Accept-Patch.
    let r = s
        .req(Method::PATCH, &path)
        .header("Content-Type", "application/json")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(
        r.headers()["accept-patch"],
        "application/openstack-images-v2.0-json-patch, application/openstack-images-v2.1-json-patch"
    );

    // add / replace / remove with escapes.
    let r = s
        .patch(
            &id,
            json!([
                {"op": "replace", "path": "/name", "value": "renamed"},
                {"op": "add", "path": "/hw_disk_bus", "value": "scsi"},
                {"op": "add", "path": "/os_distro", "value": "debian"},
                {"op": "remove", "path": "/a~1b"},
                {"op": "replace", "path": "/min_ram", "value": 512},
                {"op": "replace", "path": "/tags", "value": ["x", "y"]},
                {"op": "replace", "path": "/protected", "value": true}
            ]),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["name"], "renamed");
    assert_eq!(v["hw_disk_bus"], "scsi");
    assert_eq!(v["os_distro"], "debian");
    assert!(v.get("a/b").is_none());
    assert_eq!(v["min_ram"], 512);
    assert_eq!(v["tags"], json!(["x", "y"]));
    assert_eq!(v["protected"], true);
    assert_eq!(s.show(&id).await, v);

    // Draft-4 (v2.0) dialect.
    let r = s
        .req(Method::PATCH, &path)
        .header(
            "Content-Type",
            "application/openstack-images-v2.0-json-patch",
        )
        .json(&json!([{"replace": "/name", "value": "old-style"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .req(Method::PATCH, &path)
        .header(
            "Content-Type",
            "application/openstack-images-v2.0-json-patch",
        )
        .json(&json!([{"add": "/os_distro", "value": "again"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        409,
        "v2.0 add of an existing property conflicts"
    );

    let before_img = s.show(&id).await;
    let before = s.counts().await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!([{"op": "replace", "path": "/status", "value": "active"}]),
            403,
            "Attribute 'status' is read-only.",
        ),
        (
            json!([{"op": "replace", "path": "/id", "value": "x"}]),
            403,
            "is read-only",
        ),
        (
            json!([{"op": "add", "path": "/os_glance_x", "value": "x"}]),
            403,
            "is reserved",
        ),
        (
            json!([{"op": "replace", "path": "/nope", "value": "x"}]),
            409,
            "Property nope does not exist.",
        ),
        (
            json!([{"op": "remove", "path": "/nope"}]),
            409,
            "Property nope does not exist.",
        ),
        (
            json!([{"op": "remove", "path": "/name"}]),
            403,
            "Property name may not be removed.",
        ),
        (
            json!([{"op": "move", "path": "/name", "value": "x"}]),
            400,
            "Invalid operation: `move`",
        ),
        (
            json!([{"op": "test", "path": "/name", "value": "x"}]),
            400,
            "Invalid operation",
        ),
        (
            json!([{"path": "/name", "value": "x"}]),
            400,
            "Unable to find `op`",
        ),
        (
            json!([{"op": "add", "value": "x"}]),
            400,
            "Unable to find 'path'",
        ),
        (
            json!([{"op": "add", "path": "/x"}]),
            400,
            "requires a member named",
        ),
        (
            json!([{"op": "add", "path": "name", "value": "x"}]),
            400,
            "does not start with",
        ),
        (
            json!([{"op": "add", "path": "/a/b", "value": "x"}]),
            400,
            "Invalid JSON pointer for this resource",
        ),
        (
            json!([{"op": "add", "path": "/a~2", "value": "x"}]),
            400,
            "recognized escape sequence",
        ),
        (
            json!([{"op": "replace", "path": "/min_ram", "value": "big"}]),
            400,
            "does not match schema",
        ),
        (
            json!([{"op": "replace", "path": "/visibility", "value": "everyone"}]),
            400,
            "does not match schema",
        ),
        (
            json!({"op": "add"}),
            400,
            "Request body must be a JSON array of operation objects.",
        ),
        (json!(["x"]), 400, "Operations must be JSON objects."),
        // Half-way failure: the first change is valid, the second is not; nothing is applied.
        (
            json!([{"op": "replace", "path": "/name", "value": "half"}, {"op": "replace", "path": "/nope", "value": "x"}]),
            409,
            "does not exist",
        ),
        (
            json!([{"op": "add", "path": "/k", "value": "v"}, {"op": "remove", "path": "/disk_format"}]),
            403,
            "may not be removed",
        ),
        (
            json!([{"op": "replace", "path": "/locations", "value": []}]),
            403,
            "locations",
        ),
    ];
    for (ops, code, msg) in cases {
        let r = s
            .req(Method::PATCH, &path)
            .header(
                "Content-Type",
                "application/openstack-images-v2.1-json-patch",
            )
            .header("Accept", "application/json")
            .json(&ops)
            .send()
            .await
            .unwrap();
        assert_refused(r, code, msg, &ops.to_string()).await;
    }
    let r = s
        .req(Method::PATCH, &path)
        .header(
            "Content-Type",
            "application/openstack-images-v2.1-json-patch",
        )
        .body("{bad")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        s.show(&id).await,
        before_img,
        "refused PATCHes must change nothing"
    );
    assert_eq!(s.counts().await, before);

    // Another project's member cannot modify; a non-admin cannot change the owner.
    let mine = s
        .create_as("p1", json!({"name": "mine", "visibility": "community"}))
        .await;
    let r = Server::as_project(
        s.req(
            Method::PATCH,
            &format!("/v2/images/{}", mine["id"].as_str().unwrap()),
        ),
        "p2",
        "member,reader",
    )
    .header(
        "Content-Type",
        "application/openstack-images-v2.1-json-patch",
    )
    .json(&json!([{"op": "replace", "path": "/name", "value": "stolen"}]))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    let r = Server::as_project(
        s.req(
            Method::PATCH,
            &format!("/v2/images/{}", mine["id"].as_str().unwrap()),
        ),
        "p1",
        "member",
    )
    .header(
        "Content-Type",
        "application/openstack-images-v2.1-json-patch",
    )
    .json(&json!([{"op": "replace", "path": "/owner", "value": "p2"}]))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    // Protected images cannot be deleted.
    let r = s.req(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("is protected and cannot be deleted")
    );
}

async fn list_filters_and_visibility(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let public = s
        .create_as(
            "p1",
            json!({"name": "pub", "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let pid = public["id"].as_str().unwrap().to_string();
    // Admin publicizes.
    assert_eq!(
        s.patch(
            &pid,
            json!([{"op": "replace", "path": "/visibility", "value": "public"}])
        )
        .await
        .status(),
        200
    );
    let private = s.create_as("p1", json!({"name": "priv", "visibility": "private", "tags": ["a", "b"], "os_distro": "ubuntu"})).await;
    let community = s
        .create_as(
            "p1",
            json!({"name": "glass, darkly", "visibility": "community", "tags": ["a"]}),
        )
        .await;
    let hidden = s
        .create_as("p2", json!({"name": "hidden", "os_hidden": true}))
        .await;
    let shared2 = s
        .create_as("p2", json!({"name": "share me", "protected": true}))
        .await;
    let id = |v: &Value| v["id"].as_str().unwrap().to_string();

    let as_p = |project: &str, q: &str| {
        Server::as_project(s.get(&format!("/v2/images{q}")), project, "member,reader")
    };
    async fn ids(rb: reqwest::RequestBuilder) -> Vec<String> {
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 200);
        let mut v = image_ids(&r.json().await.unwrap());
        v.sort();
        v
    }
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    // p2 sees public and its own non-hidden images; not p1's private nor community.
    assert_eq!(
        ids(as_p("p2", "")).await,
        sorted(vec![pid.clone(), id(&shared2)])
    );
    // p1 sees its own community image without asking.
    assert_eq!(
        ids(as_p("p1", "")).await,
        sorted(vec![pid.clone(), id(&private), id(&community)])
    );
    assert_eq!(
        ids(as_p("p2", "?visibility=community")).await,
        vec![id(&community)]
    );
    assert_eq!(ids(as_p("p2", "?os_hidden=true")).await, vec![id(&hidden)]);
    assert_eq!(
        ids(as_p("p2", "?visibility=private")).await,
        Vec::<String>::new()
    );
    // p2 cannot show p1's private image: 404, not 403.
    let r = Server::as_project(
        s.get(&format!("/v2/images/{}", id(&private))),
        "p2",
        "member",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    // Admin (no project) sees everything but community (Glance's rule) and hidden.
    assert_eq!(
        sorted(image_ids(&list(&s, "").await)),
        sorted(vec![pid.clone(), id(&private), id(&shared2)])
    );
    assert_eq!(
        image_ids(&list(&s, "?visibility=all&os_hidden=true").await),
        vec![id(&hidden)]
    );
    assert_eq!(
        sorted(image_ids(&list(&s, "?visibility=all").await)).len(),
        4
    );

    // Filters.
    assert_eq!(
        image_ids(&list(&s, "?tag=a&tag=b").await),
        vec![id(&private)]
    );
    assert_eq!(
        image_ids(&list(&s, "?os_distro=ubuntu").await),
        vec![id(&private)]
    );
    assert_eq!(
        image_ids(&list(&s, "?protected=true").await),
        vec![id(&shared2)]
    );
    assert_eq!(
        image_ids(&list(&s, "?disk_format=raw").await),
        vec![pid.clone()]
    );
    assert_eq!(
        sorted(image_ids(
            &list(
                &s,
                "?visibility=all&name=in:%22glass,%20darkly%22,share%20me"
            )
            .await
        )),
        sorted(vec![id(&community), id(&shared2)])
    );
    assert_eq!(
        image_ids(&list(&s, "?status=in:active,saving").await),
        Vec::<String>::new()
    );
    assert_eq!(
        image_ids(&list(&s, "?created_at=gt:2999-01-01T00:00:00Z").await),
        Vec::<String>::new()
    );
    assert_eq!(
        list(&s, "?created_at=lte:2999-01-01T00:00:00Z").await["images"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        list(&s, "?updated_at=gte:2000-01-01T00:00:00Z").await["images"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Size filters need data.
    let r = s.upload(&pid, random_bytes(1000)).await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        image_ids(&list(&s, "?size_min=1000&size_max=1000").await),
        vec![pid.clone()]
    );
    assert_eq!(
        image_ids(&list(&s, "?size_min=1001").await),
        Vec::<String>::new()
    );

    for (q, msg) in [
        (
            "?changes-since=2020-01-01T00:00:00Z",
            "no longer available on v2",
        ),
        ("?size_min=big", "non-numeric"),
        ("?visibility=everyone", "Invalid visibility value"),
        ("?os_hidden=maybe", "Invalid value 'maybe' for 'os_hidden'"),
        ("?protected=maybe", "Invalid value 'maybe' for 'protected'"),
        ("?member_status=bogus", "Invalid status"),
        ("?limit=-1", "limit param must be positive"),
        ("?limit=x", "limit param must be an integer"),
        ("?sort_key=owner", "Invalid sort key: owner"),
        ("?sort_dir=up", "Invalid sort direction: up"),
        (
            "?sort=name:asc&sort_key=id",
            "Old and new sorting syntax cannot be combined",
        ),
        (
            "?sort_key=name&sort_key=id&sort_dir=asc&sort_dir=desc&sort_dir=asc",
            "Number of sort dirs",
        ),
        ("?created_at=gt:yesterday", "ISO 8601"),
        (
            "?created_at=between:2020-01-01T00:00:00Z",
            "unknown operator",
        ),
        ("?name=like:x", "unknown operator 'like'"),
        (
            "?marker=6f1b1e2a-9c1d-4f6e-8a3b-0c2d4e6f8a10",
            "No image found with ID",
        ),
    ] {
        let r = s
            .get(&format!("/v2/images{q}"))
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_refused(r, 400, msg, q).await;
    }
}

async fn sorting_and_paging(b: Backend) {
    let Some(s) =
        Server::start_with(b, "[DEFAULT]\nlimit_param_default = 4\napi_limit_max = 5\n").await
    else {
        return;
    };
    let names = ["d", "b", "a", "c", "e", "b", "f"];
    let mut ids = Vec::new();
    for n in names {
        ids.push(
            s.create(json!({"name": n})).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // Page through sorted by name asc, then id: all images, each once, in order.
    let mut seen = Vec::new();
    let mut next = Some("/v2/images?sort=name:asc,id:asc&limit=2".to_string());
    let mut pages = 0;
    while let Some(url) = next {
        pages += 1;
        assert!(pages < 10, "paging does not end");
        let v: Value = s.get_json(&url).await;
        assert!(
            v["first"]
                .as_str()
                .unwrap()
                .starts_with("/v2/images?sort=name%3Aasc%2Cid%3Aasc&limit=2")
        );
        assert!(!v["first"].as_str().unwrap().contains("marker"));
        assert_eq!(v["schema"], "/v2/schemas/images");
        for i in v["images"].as_array().unwrap() {
            seen.push((
                i["name"].as_str().unwrap().to_string(),
                i["id"].as_str().unwrap().to_string(),
            ));
        }
        next = v["next"].as_str().map(str::to_string);
    }
    assert_eq!(pages, 4, "7 images in pages of 2, the last one short");
    let mut expected: Vec<(String, String)> = names
        .iter()
        .map(|n| n.to_string())
        .zip(ids.iter().cloned())
        .collect();
    expected.sort();
    assert_eq!(seen, expected);

    // Classic syntax, descending.
    let v = list(&s, "?sort_key=name&sort_dir=desc&limit=3").await;
    let got: Vec<&str> = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["f", "e", "d"]);
    assert!(v["next"].as_str().unwrap().contains("marker="));
    // Default order is created_at desc (id desc breaks ties): a full default listing pages the same.
    assert_eq!(
        list(&s, "").await["images"].as_array().unwrap().len(),
        4,
        "limit_param_default"
    );
    assert_eq!(
        list(&s, "?limit=100").await["images"]
            .as_array()
            .unwrap()
            .len(),
        5,
        "api_limit_max caps limit"
    );
    let v = list(&s, "?limit=0").await;
    assert_eq!(v["images"].as_array().unwrap().len(), 0);
    assert!(v.get("next").is_none());
}

async fn tags_and_actions(b: Backend) {
    let Some(s) = Server::start_with(b, "[DEFAULT]\nimage_tag_quota = 2\n").await else {
        return;
    };
    let img = s
        .create(json!({"name": "t", "disk_format": "raw", "container_format": "bare"}))
        .await;
    let id = img["id"].as_str().unwrap().to_string();
    let tag = |t: &str| format!("/v2/images/{id}/tags/{t}");
    assert_eq!(status(s.req(Method::PUT, &tag("one"))).await, 204);
    assert_eq!(
        status(s.req(Method::PUT, &tag("one"))).await,
        204,
        "idempotent"
    );
    assert_eq!(status(s.req(Method::PUT, &tag("two"))).await, 204);
    let r = s.req(Method::PUT, &tag("three")).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let long = "t".repeat(256);
    assert_eq!(status(s.req(Method::PUT, &tag(&long))).await, 400);
    assert_eq!(s.show(&id).await["tags"], json!(["one", "two"]));
    assert_eq!(status(s.req(Method::DELETE, &tag("one"))).await, 204);
    assert_eq!(status(s.req(Method::DELETE, &tag("one"))).await, 404);
    assert_eq!(s.show(&id).await["tags"], json!(["two"]));

    // Deactivate needs an active image.
    let deact = format!("/v2/images/{id}/actions/deactivate");
    let react = format!("/v2/images/{id}/actions/reactivate");
    assert_eq!(status(s.req(Method::POST, &deact)).await, 403);
    assert_eq!(s.upload(&id, b"data".to_vec()).await.status(), 204);
    assert_eq!(status(s.req(Method::POST, &deact)).await, 204);
    assert_eq!(
        status(s.req(Method::POST, &deact)).await,
        204,
        "no-op when deactivated"
    );
    assert_eq!(s.show(&id).await["status"], "deactivated");
    // Admins still download; others get 403.
    assert_eq!(status(s.get(&format!("/v2/images/{id}/file"))).await, 200);
    let pubimg = s.create(json!({"name": "p", "visibility": "public", "disk_format": "raw", "container_format": "bare"})).await;
    let pid = pubimg["id"].as_str().unwrap().to_string();
    assert_eq!(s.upload(&pid, b"abc".to_vec()).await.status(), 204);
    assert_eq!(
        status(s.req(
            Method::POST,
            &format!("/v2/images/{pid}/actions/deactivate")
        ))
        .await,
        204
    );
    let r = Server::as_project(s.get(&format!("/v2/images/{pid}/file")), "p9", "reader")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(status(s.req(Method::POST, &react)).await, 204);
    assert_eq!(s.show(&id).await["status"], "active");
}

async fn schemas_are_served(b: Backend) {
    let Some(s) = Server::start_with(b, "[image_format]\ndisk_formats = raw,qcow2\n").await else {
        return;
    };
    let v: Value = s.get_json("/v2/schemas/image").await;
    assert_eq!(v["name"], "image");
    assert_eq!(v["additionalProperties"], json!({"type": "string"}));
    assert_eq!(
        v["properties"]["disk_format"]["enum"],
        json!([null, "raw", "qcow2"])
    );
    assert_eq!(
        v["properties"]["visibility"]["enum"],
        json!(["community", "public", "private", "shared"])
    );
    assert_eq!(v["links"][1], json!({"rel": "enclosure", "href": "{file}"}));
    let v: Value = s.get_json("/v2/schemas/images").await;
    assert_eq!(v["properties"]["images"]["items"]["name"], "image");
    for (path, name) in [
        ("member", "member"),
        ("members", "members"),
        ("task", "task"),
        ("tasks", "tasks"),
    ] {
        let v: Value = s.get_json(&format!("/v2/schemas/{path}")).await;
        assert_eq!(v["name"], name);
    }
    // As in Glance 33: only the images list is paged, and the member schema leaves
    // additionalProperties open.
    let v: Value = s.get_json("/v2/schemas/members").await;
    assert_eq!(
        v["links"],
        json!([{"rel": "describedby", "href": "{schema}"}])
    );
    assert!(v["properties"].get("next").is_none());
    let v: Value = s.get_json("/v2/schemas/member").await;
    assert!(v.get("additionalProperties").is_none());
    let v: Value = s.get_json("/v2/schemas/tasks").await;
    assert!(
        v["properties"]["tasks"]["items"]["properties"]
            .get("input")
            .is_none()
    );
}

async fn upload_download_and_delete(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let img = s
        .create(json!({"name": "data", "disk_format": "raw", "container_format": "bare"}))
        .await;
    let id = img["id"].as_str().unwrap().to_string();
    let file = format!("/v2/images/{id}/file");
    // No data yet: 204.
    assert_eq!(status(s.get(&file)).await, 204);
    // Wrong content type: 415, nothing changes.
    let r = s
        .req(Method::PUT, &file)
        .header("Content-Type", "application/json")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(s.show(&id).await["status"], "queued");

    let data = random_bytes(3 * 1024 * 1024 + 17);
    let r = s.upload(&id, data.clone()).await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    let v = s.show(&id).await;
    assert_eq!(v["status"], "active");
    assert_eq!(v["size"], data.len());
    let md5hex = hex::encode(md5::Md5::digest(&data));
    let sha = hex::encode(sha2::Sha512::digest(&data));
    assert_eq!(v["checksum"], md5hex);
    assert_eq!(v["os_hash_algo"], "sha512");
    assert_eq!(v["os_hash_value"], sha);
    assert_eq!(
        s.store_files(),
        vec![id.clone()],
        "one file, named by the image id"
    );

    let r = s.get(&file).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.headers()["content-md5"], md5hex.as_str());
    assert_eq!(
        r.headers()["content-length"],
        data.len().to_string().as_str()
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);

    // Ranges.
    let n = data.len();
    for (range, start, end) in [
        ("bytes=0-9", 0, 9),
        ("bytes=-5", n - 5, n - 1),
        ("bytes=100-", 100, n - 1),
        ("bytes=7-7", 7, 7),
    ] {
        let r = s.get(&file).header("Range", range).send().await.unwrap();
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes {start}-{end}/{n}").as_str()
        );
        assert_eq!(
            r.bytes().await.unwrap().as_ref(),
            &data[start..=end],
            "{range}"
        );
    }
    assert_eq!(
        status(s.get(&file).header("Range", format!("bytes={n}-"))).await,
        416
    );
    assert_eq!(
        status(s.get(&file).header("Range", "bytes=0-1,5-6")).await,
        400
    );
    // The legacy request Content-Range Glance still honours when there is no Range.
    let r = s
        .get(&file)
        .header("Content-Range", "bytes 3-11/*")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 3-11/{n}").as_str()
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[3..=11]);
    let past_end = format!("bytes 0-{n}/*");
    for bad in ["bytes 9-3/*", past_end.as_str()] {
        let r = s
            .get(&file)
            .header("Content-Range", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 416, "{bad}");
    }
    // Range wins over Content-Range.
    let r = s
        .get(&file)
        .header("Range", "bytes=0-1")
        .header("Content-Range", "bytes 3-11/*")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[0..=1]);

    // A second upload to an active image conflicts.
    assert_eq!(s.upload(&id, b"again".to_vec()).await.status(), 409);
    // Missing formats: 400, still queued.
    let bare = s.create(json!({"name": "noformat"})).await;
    let bid = bare["id"].as_str().unwrap();
    let r = s.upload(bid, b"x".to_vec()).await;
    assert_refused(r, 400, "must be set prior to saving data", "no formats").await;
    assert_eq!(s.show(bid).await["status"], "queued");
    // Declared size mismatch: 400, back to queued, no bytes left.
    let sized = s
        .create(json!({"name": "sized", "disk_format": "raw", "container_format": "bare"}))
        .await;
    let sid = sized["id"].as_str().unwrap();
    // More and fewer bytes than declared (Python's int() reads the header, as in Glance), and
    // -1, which any data exceeds: 400, still queued, nothing stored.
    for (declared, body, message) in [
        ("10", 11, "Size exceeds: expected 10 bytes, got 11 bytes"),
        (
            " +0_12 ",
            11,
            "Size mismatch: expected 12 bytes, got 11 bytes",
        ),
        ("-1", 3, "Size exceeds: expected -1 bytes, got 3 bytes"),
        ("-1", 0, "Size mismatch: expected -1 bytes, got 0 bytes"),
        (
            "0x3",
            3,
            "Invalid or missing image size in request headers.",
        ),
    ] {
        let r = s
            .req(Method::PUT, &format!("/v2/images/{sid}/file"))
            .header("Content-Type", "application/octet-stream")
            .header("x-openstack-image-size", declared)
            .body(vec![1u8; body])
            .send()
            .await
            .unwrap();
        assert_refused(r, 400, message, declared).await;
        assert_eq!(s.show(sid).await["status"], "queued");
        assert_eq!(s.store_files(), vec![id.clone()]);
    }
    // Content types are compared as sent, as webob hands them to Glance.
    let r = s
        .req(Method::PUT, &format!("/v2/images/{sid}/file"))
        .header("Content-Type", "Application/Octet-Stream")
        .body(b"abc".to_vec())
        .send()
        .await
        .unwrap();
    let msg = "Invalid content type Application/Octet-Stream";
    assert_refused(r, 415, msg, "content type as sent").await;
    // 0 means "not given": any size is taken.
    let r = s
        .req(Method::PUT, &format!("/v2/images/{sid}/file"))
        .header("Content-Type", "application/octet-stream;a=b")
        .header("x-openstack-image-size", "0")
        .body(b"abc".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(s.show(sid).await["size"], 3);
    assert_eq!(s.delete(sid).await, 204);

    // Delete removes the bytes.
    assert_eq!(s.delete(&id).await, 204);
    assert_eq!(status(s.get(&file)).await, 404);
    assert!(s.store_files().is_empty());
    assert_eq!(s.delete(&id).await, 404);
}

async fn size_cap_rejects_without_leftovers(b: Backend) {
    let Some(s) = Server::start_with(b, "[DEFAULT]\nimage_size_cap = 1048576\n").await else {
        return;
    };
    let img = s
        .create(json!({"name": "big", "disk_format": "raw", "container_format": "bare"}))
        .await;
    let id = img["id"].as_str().unwrap().to_string();
    // Declared too large: refused before reading. The server answers and closes without
    // reading the body, so the client sees the 413 or, if still sending, a closed connection.
    let r = s
        .req(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(vec![0u8; 2 * 1048576])
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }
    assert_eq!(s.show(&id).await["status"], "queued");
    // Chunked (no length): refused once the cap is crossed.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![7u8; 300_000])).collect();
    let r = s
        .req(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    // The server answers 413 and closes without reading the rest; the client may see the
    // answer or only the closed connection, as with Glance.
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }
    let v = s.show(&id).await;
    assert_eq!(v["status"], "queued");
    assert_eq!(v["size"], Value::Null);
    assert!(
        s.store_files().is_empty(),
        "no partial bytes: {:?}",
        s.store_files()
    );
}

async fn locations_on_the_file_store(b: Backend) {
    let Some(s) = Server::start_with(b, "[DEFAULT]\nshow_multiple_locations = true\nshow_image_direct_url = true\nimage_location_quota = 1\n").await else {
        return;
    };
    let img = s
        .create(json!({"name": "l", "disk_format": "raw", "container_format": "bare"}))
        .await;
    let id = img["id"].as_str().unwrap().to_string();
    assert_eq!(img["locations"], json!([]));
    // Data placed in the store directory by someone else, then registered.
    std::fs::create_dir_all(s.images_dir()).unwrap();
    let path = s.images_dir().canonicalize().unwrap().join("external-data");
    std::fs::write(&path, b"hello locations").unwrap();
    let url = format!("file://{}", path.display());
    for (ops, code) in [
        (
            json!([{"op": "add", "path": "/locations/5", "value": {"url": url, "metadata": {}}}]),
            400,
        ),
        (
            json!([{"op": "add", "path": "/locations/-", "value": {"url": "file:///etc/passwd", "metadata": {}}}]),
            400,
        ),
        (
            json!([{"op": "add", "path": "/locations/-", "value": {"url": url}}]),
            400,
        ),
        (
            json!([{"op": "replace", "path": "/locations", "value": []}]),
            403,
        ),
    ] {
        let r = s.patch(&id, ops.clone()).await;
        assert_eq!(r.status(), code, "{ops}");
        assert_eq!(s.show(&id).await["status"], "queued");
    }
    let r = s.patch(&id, json!([{"op": "replace", "path": "/locations", "value": [{"url": url, "metadata": {"k": "v"}}]}])).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "active");
    assert_eq!(v["size"], 15);
    assert_eq!(
        v["locations"],
        json!([{"url": url, "metadata": {"k": "v"}}])
    );
    assert_eq!(v["direct_url"], url);
    let got = s.download(&id).await;
    assert_eq!(got, b"hello locations");
    // image_location_quota = 1.
    let r = s.patch(&id, json!([{"op": "add", "path": "/locations/-", "value": {"url": format!("{url}2"), "metadata": {}}}])).await;
    assert_eq!(r.status(), 413);
    // Mismatching validation data on an active image: 409.
    let r = s.patch(&id, json!([{"op": "replace", "path": "/locations", "value": [{"url": url, "metadata": {}, "validation_data": {"os_hash_algo": "sha512", "os_hash_value": "00"}}]}])).await;
    assert_eq!(r.status(), 400, "a non-empty list cannot be replaced");
}

/// A list shows each image as its show does: every property (whatever characters its value
/// holds), tag and location, locations in their order, each on its own image.
async fn listed_images_carry_what_show_shows(b: Backend) {
    let Some(s) = Server::start_with(b, "[DEFAULT]\nshow_multiple_locations = true\n").await else {
        return;
    };
    std::fs::create_dir_all(s.images_dir()).unwrap();
    let dir = s.images_dir().canonicalize().unwrap();
    let odd = "quote \" backslash \\ newline \n tab \t unicode ünï 漢字 </script> {\"a\": [1]}";
    let mut ids = Vec::new();
    for n in 0..3 {
        let img = s
            .create(json!({"name": format!("i{n}"), "disk_format": "raw", "container_format": "bare",
                           "odd": odd, "empty": "", "n": n.to_string(), "tags": [format!("t{n}"), "\"q\" \\"]}))
            .await;
        let id = img["id"].as_str().unwrap().to_string();
        let urls: Vec<String> = ["b", "a"]
            .iter()
            .map(|f| {
                let path = dir.join(format!("{id}-{f}"));
                std::fs::write(&path, b"same bytes").unwrap();
                format!("file://{}", path.display())
            })
            .collect();
        let value: Vec<Value> = urls
            .iter()
            .map(|u| json!({"url": u, "metadata": {"u": u}}))
            .collect();
        let r = s
            .patch(
                &id,
                json!([{"op": "replace", "path": "/locations", "value": value}]),
            )
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        ids.push((id, urls));
    }
    let listed = list(&s, "").await;
    for (id, urls) in &ids {
        let shown = s.show(id).await;
        let entry = listed["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id.as_str())
            .unwrap();
        assert_eq!(entry, &shown, "the list's entry and the show of {id}");
        assert_eq!(entry["odd"], odd);
        assert_eq!(entry["empty"], "");
        let listed_urls: Vec<&str> = entry["locations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["url"].as_str().unwrap())
            .collect();
        assert_eq!(
            listed_urls,
            urls.iter().map(String::as_str).collect::<Vec<_>>()
        );
        assert_eq!(entry["locations"][0]["metadata"], json!({"u": urls[0]}));
        let mut tags: Vec<&str> = entry["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        tags.sort();
        let own = entry["name"].as_str().unwrap().replace('i', "t");
        assert_eq!(tags, vec!["\"q\" \\", own.as_str()]);
    }
}

/// An operator's policy file overrides Glance's defaults (oslo.policy syntax).
async fn policy_file_overrides_defaults(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "# site policy\n\"publicize_image\": \"role:member and project_id:%(project_id)s\"\n\
         \"delete_image\": \"!\"\n\"download_image\": \"role:admin\"\n",
    )
    .unwrap();
    let Some(s) = Server::start_with(
        b,
        &format!("[oslo_policy]\npolicy_file = {}\n", policy.display()),
    )
    .await
    else {
        return;
    };
    let img = s
        .create_as(
            "p1",
            json!({"name": "x", "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let id = img["id"].as_str().unwrap().to_string();
    let as_p1 = |rb: reqwest::RequestBuilder| Server::as_project(rb, "p1", "member,reader");
    let r = as_p1(s.req(Method::PATCH, &format!("/v2/images/{id}")))
        .header(
            "Content-Type",
            "application/openstack-images-v2.1-json-patch",
        )
        .json(&json!([{"op": "replace", "path": "/visibility", "value": "public"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "members may publicize under this policy");
    assert_eq!(
        status(
            as_p1(s.req(Method::PUT, &format!("/v2/images/{id}/file")))
                .header("Content-Type", "application/octet-stream")
                .body("abc")
        )
        .await,
        204
    );
    assert_eq!(
        status(as_p1(s.get(&format!("/v2/images/{id}/file")))).await,
        403
    );
    assert_eq!(status(s.get(&format!("/v2/images/{id}/file"))).await, 200);
    let (code, body) = s.delete_answer(&id).await;
    assert_eq!(code, 403);
    assert!(body.contains("delete_image"));
    // Without a reader, member or admin role nothing is visible: get_images refuses the list,
    // get_image hides the image (404, as Glance).
    let observer = |rb: reqwest::RequestBuilder| Server::as_project(rb, "p1", "observer");
    assert_eq!(status(observer(s.get("/v2/images"))).await, 403);
    assert_eq!(
        status(observer(s.get(&format!("/v2/images/{id}")))).await,
        404
    );
    assert_eq!(status(as_p1(s.get(&format!("/v2/images/{id}")))).await, 200);
    // A file that is not YAML (nor JSON) stops start-up, naming the option.
    std::fs::write(&policy, "\"delete_image\": \"role:admin and (\n").unwrap();
    let conf = dir.path().join("g.conf");
    std::fs::write(
        &conf,
        format!("[oslo_policy]\npolicy_file = {}\n", policy.display()),
    )
    .unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["--config-file", conf.to_str().unwrap()])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("[oslo_policy] policy_file"));
}

/// No import method is offered yet: the discovery document lists none, create sends no
/// import-methods header, and import and stage refuse as a Glance without methods does.
async fn import_is_not_offered(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let v = s.get_json("/v2/info/import").await;
    assert_eq!(v["import-methods"]["value"], json!([]));
    assert_eq!(s.get_json("/v2/info/usage").await, json!({"usage": {}}));
    let r = s
        .req(Method::POST, "/v2/images")
        .json(&json!({"name": "i", "disk_format": "raw", "container_format": "bare"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(!r.headers().contains_key("openstack-image-import-methods"));
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (body, msg) in [
        (
            json!({"method": {"name": "glance-direct"}}),
            "Unknown import method name 'glance-direct'.",
        ),
        (
            json!({"method": {}}),
            "Import request requires a 'name' field.",
        ),
        (json!({}), "Import request requires a 'method' field."),
    ] {
        let r = s
            .req(Method::POST, &format!("/v2/images/{id}/import"))
            .header("Accept", "application/json")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_refused(r, 400, msg, &body.to_string()).await;
    }
    let r = s
        .req(Method::PUT, &format!("/v2/images/{id}/stage"))
        .header("Accept", "application/json")
        .header("Content-Type", "application/octet-stream")
        .body("abc")
        .send()
        .await
        .unwrap();
    let msg = "'glance-direct' method is not available at this site.";
    assert_refused(r, 404, msg, "stage").await;
    assert_eq!(s.show(&id).await["status"], "queued");
    assert!(s.store_files().is_empty());
}

/// `hashing_algorithm` chooses os_hash_algo; the MD5 checksum is always there.
async fn configured_hashing_algorithm(b: Backend) {
    let Some(s) = Server::start_with(b, "[DEFAULT]\nhashing_algorithm = sha256\n").await else {
        return;
    };
    let img = s
        .create(json!({"name": "h", "disk_format": "raw", "container_format": "bare"}))
        .await;
    let id = img["id"].as_str().unwrap();
    let data = random_bytes(3 << 20);
    assert_eq!(s.upload(id, data.clone()).await.status(), 204);
    let v = s.show(id).await;
    assert_eq!(v["os_hash_algo"], "sha256");
    assert_eq!(v["os_hash_value"], hex::encode(sha2::Sha256::digest(&data)));
    assert_eq!(v["checksum"], hex::encode(md5::Md5::digest(&data)));
}

/// `/healthcheck` as oslo.middleware's: GET 200 / HEAD 204 with `OK`; a drain file makes both
/// 503 (haproxy may check with either), `DISABLED BY FILE` in text or JSON; detailed JSON names
/// each check's class.
async fn healthcheck_as_oslo_middleware(b: Backend) {
    let flag = tempfile::tempdir().unwrap();
    let disable = flag.path().join("healthcheck_disable");
    let conf = format!(
        "[healthcheck]\ndisable_by_file_path = {}\ndetailed = true\n",
        disable.display()
    );
    let Some(s) = Server::start_with(b, &conf).await else {
        return;
    };
    let get = |accept: &'static str| s.get("/healthcheck").header("Accept", accept).send();
    let r = get("text/plain").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=UTF-8");
    assert_eq!(r.text().await.unwrap(), "OK");
    let r = s.req(Method::HEAD, "/healthcheck").send().await.unwrap();
    assert_eq!(r.status(), 204);
    let v: Value = get("application/json").await.unwrap().json().await.unwrap();
    assert_eq!(v["detailed"], true);
    assert_eq!(
        v["reasons"],
        json!([{"class": "DisableByFileHealthcheck", "details": "", "reason": "OK"}])
    );

    std::fs::write(&disable, b"").unwrap();
    let r = get("*/*").await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await.unwrap(), "DISABLED BY FILE");
    let r = s.req(Method::HEAD, "/healthcheck").send().await.unwrap();
    assert_eq!(r.status(), 503);
    let r = get("text/html").await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("<TD>DISABLED BY FILE</TD>")
    );
    // Back in the pool once the file is gone.
    std::fs::remove_file(&disable).unwrap();
    assert_eq!(status(s.req(Method::HEAD, "/healthcheck")).await, 204);
}

/// Text Glance's MySQL tables could not hold (four-byte UTF-8: emoji) is refused in Glance's
/// words before anything is written: a create whose tag holds one leaves no image (Glance's
/// leaves the image without its tags), a PATCH or a tag changes nothing.
async fn four_byte_text_is_refused_and_changes_nothing(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let id = s.create_raw("plain").await;
    let before = s.counts().await;
    let emoji = "\u{1F600}";
    for (method, path, body, words) in [
        (
            Method::POST,
            "/v2/images".to_string(),
            json!({"name": "x", "tags": [emoji]}),
            "Param values can't contain 4 byte unicode.",
        ),
        (
            Method::POST,
            "/v2/images".to_string(),
            json!({"name": "x", "os_distro": emoji}),
            "Os_Distro can't contain 4 byte unicode characters.",
        ),
        (
            Method::POST,
            format!("/v2/images/{id}/members"),
            json!({"member": emoji}),
            "Member can't contain 4 byte unicode characters.",
        ),
    ] {
        let r = s.req(method, &path).json(&body).send().await.unwrap();
        let status = r.status();
        // webob's HTML page escapes the apostrophe.
        let text = r.text().await.unwrap().replace("&#x27;", "'");
        assert_eq!(status, 400, "{path} {body}: {text}");
        assert!(text.contains(words), "{path} {body}: {text}");
    }
    let r = s
        .req(Method::PATCH, &format!("/v2/images/{id}"))
        .header(
            "Content-Type",
            "application/openstack-images-v2.1-json-patch",
        )
        .body(json!([{"op": "replace", "path": "/name", "value": emoji}]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(s.counts().await, before);
    assert_eq!(s.show(&id).await["name"], "plain");
}

both_databases!(
    listed_images_carry_what_show_shows,
    four_byte_text_is_refused_and_changes_nothing,
    healthcheck_as_oslo_middleware,
    import_is_not_offered,
    configured_hashing_algorithm,
    policy_file_overrides_defaults,
    locations_on_the_file_store,
    versions_and_negotiation,
    behind_a_proxy,
    request_ids_and_error_shapes,
    error_messages_as_glance_words_them,
    create_defaults_and_location,
    create_rejects_bad_input,
    patch_rules,
    list_filters_and_visibility,
    sorting_and_paging,
    tags_and_actions,
    schemas_are_served,
    upload_download_and_delete,
    size_cap_rejects_without_leftovers,
);
