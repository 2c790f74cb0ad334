//! Random request sequences for the robustness tests (tests/random_requests.rs, and the RBD
//! store's in tests/rbd.rs): valid and hostile requests mixed, from several projects, and the
//! check that the stored state is whole afterwards.

use std::collections::BTreeSet;

use md5::Digest;
use reqwest::Method;
use serde_json::{Value, json};

use super::Server;
use super::rng::Rng;

/// `[DEFAULT]` lines: small quotas and cap, so that their refusals are among the answers.
pub const DEFAULTS: &str = "image_size_cap = 200000\nimage_tag_quota = 4\n\
    image_property_quota = 6\nimage_member_quota = 3\nimage_location_quota = 3\n";

/// Strings that have broken parsers: empty, long, unicode, separators, escapes, numbers.
const STRINGS: &[&str] = &[
    "x",
    "",
    " ",
    "cirros",
    "ünïcødé ☃",
    "a/b",
    "a,b",
    "in:a,b",
    "\"quoted\"",
    "%00",
    "..",
    "null",
    "123",
    "-1",
    "gte:2020-01-01T00:00:00Z",
    "lt:bogus",
    "~1~0",
    "\u{0}",
];

fn string(rng: &mut Rng) -> String {
    if rng.chance(5) {
        return "y".repeat(rng.pick(&[255, 256, 300, 5000]).to_owned());
    }
    rng.pick(STRINGS).to_string()
}

/// Any JSON value, mostly small.
fn value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 1 { 7 } else { 9 }) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => json!(*rng.pick(&[0i64, 1, -1, 512, i64::MAX, i64::MIN])),
        3 => json!(1.5),
        4..=6 => json!(string(rng)),
        7 => Value::Array((0..rng.below(4)).map(|_| value(rng, depth + 1)).collect()),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.below(4) {
                m.insert(key(rng), value(rng, depth + 1));
            }
            Value::Object(m)
        }
    }
}

const KEYS: &[&str] = &[
    "name",
    "disk_format",
    "container_format",
    "visibility",
    "protected",
    "os_hidden",
    "min_ram",
    "min_disk",
    "tags",
    "owner",
    "id",
    "status",
    "checksum",
    "size",
    "locations",
    "os_glance_x",
    "hw_disk_bus",
    "custom",
    "self",
    "file",
    "direct_url",
];

fn key(rng: &mut Rng) -> String {
    if rng.chance(10) {
        string(rng)
    } else {
        rng.pick(KEYS).to_string()
    }
}

/// A plausible value for `key`, or anything at all.
fn field(rng: &mut Rng, key: &str) -> Value {
    if rng.chance(25) {
        return value(rng, 0);
    }
    match key {
        "disk_format" => json!(rng.pick(&["raw", "qcow2", "vmdk", "iso", "ami", "bogus"])),
        "container_format" => json!(rng.pick(&["bare", "ovf", "ova", "docker", "bogus"])),
        "visibility" => json!(rng.pick(&["public", "private", "shared", "community", "x"])),
        "protected" | "os_hidden" => json!(rng.chance(30)),
        "min_ram" | "min_disk" => json!(rng.below(4096)),
        "tags" => Value::Array((0..rng.below(6)).map(|_| json!(string(rng))).collect()),
        "owner" => json!(rng.pick(&["p1", "p2", "p3"])),
        "id" => json!(uuid(rng)),
        _ => json!(string(rng)),
    }
}

/// A random UUID from the sequence's own generator (the run replays from its seed).
fn uuid(rng: &mut Rng) -> String {
    uuid::Builder::from_random_bytes(
        ((rng.next() as u128) << 64 | rng.next() as u128).to_le_bytes(),
    )
    .into_uuid()
    .to_string()
}

struct Caller {
    project: &'static str,
    roles: &'static str,
}

/// p1, a member, owns most images; the others try their luck with them.
const CALLERS: &[Caller] = &[
    Caller {
        project: "p1",
        roles: "member,reader",
    },
    Caller {
        project: "p1",
        roles: "member,reader",
    },
    Caller {
        project: "p1",
        roles: "member,reader",
    },
    Caller {
        project: "p2",
        roles: "member,reader",
    },
    Caller {
        project: "p3",
        roles: "admin,member,reader",
    },
    Caller {
        project: "p1",
        roles: "reader",
    },
];

/// One request: its description (for a failure message) and what to send.
struct Req {
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
}

fn image_id(rng: &mut Rng, ids: &[String]) -> String {
    if !ids.is_empty() && rng.chance(85) {
        // Mostly the newest images, which are the likeliest to be uploaded to next.
        let recent = &ids[ids.len().saturating_sub(4)..];
        let from = if rng.chance(60) { recent } else { ids };
        return rng.pick(from).clone();
    }
    match rng.below(3) {
        0 => uuid(rng),
        1 => "not-a-uuid".into(),
        _ => "%2e%2e".into(),
    }
}

/// Bytes that may or may not be an image of the declared format.
fn data(rng: &mut Rng) -> Vec<u8> {
    let n = *rng.pick(&[0usize, 1, 511, 4096, 70_000, 199_999, 200_001]);
    let mut d = super::random_bytes(n);
    if n >= 512 && rng.chance(40) {
        // A qcow2 header, sometimes with a backing file.
        d[..4].copy_from_slice(b"QFI\xfb");
        d[4..8].copy_from_slice(&3u32.to_be_bytes());
        let backing = if rng.chance(50) { 0u64 } else { 512 };
        d[8..16].copy_from_slice(&backing.to_be_bytes());
        d[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
        d[72..80].copy_from_slice(&0u64.to_be_bytes());
        d[100..104].copy_from_slice(&104u32.to_be_bytes());
        d[104..112].copy_from_slice(&[0; 8]);
    } else if n >= 512 && rng.chance(20) {
        d.iter_mut().for_each(|b| *b = 0);
    }
    d
}

const RANGES: &[&str] = &[
    "bytes=0-0",
    "bytes=1-2",
    "bytes=-1",
    "bytes=0-10",
    "bytes=-5",
    "bytes=5-",
    "bytes=10-5",
    "bytes=0-1,3-4",
    "bytes=abc",
    "bytes=99999999999999999999-",
    "bytes=-0",
    "items=0-1",
    "bytes=300000-",
];

fn request(rng: &mut Rng, ids: &[String]) -> Req {
    let get = |path: String| Req {
        method: Method::GET,
        path,
        headers: vec![],
        body: None,
    };
    let id = image_id(rng, ids);
    match rng.below(18) {
        0..=2 => {
            let mut body = serde_json::Map::new();
            for _ in 0..rng.below(7) {
                let k = key(rng);
                let v = field(rng, &k);
                body.insert(k, v);
            }
            if rng.chance(75) {
                body.insert("disk_format".into(), json!("raw"));
                body.insert("container_format".into(), json!("bare"));
            }
            let body = if rng.chance(5) {
                b"{not json".to_vec()
            } else {
                Value::Object(body).to_string().into_bytes()
            };
            let ct = if rng.chance(95) {
                "application/json"
            } else {
                "text/plain"
            };
            Req {
                method: Method::POST,
                path: "/v2/images".into(),
                headers: vec![("Content-Type", ct.into())],
                body: Some(body),
            }
        }
        3..=5 => {
            let d = data(rng);
            let mut headers = vec![(
                "Content-Type",
                if rng.chance(92) {
                    "application/octet-stream".to_string()
                } else {
                    "application/json".into()
                },
            )];
            if rng.chance(20) {
                let n = d.len() + rng.below(2);
                headers.push(("x-openstack-image-size", n.to_string()));
            }
            if rng.chance(25) {
                let store = rng.pick(&["fast", "slow", "web", "nowhere"]);
                headers.push(("X-Image-Meta-Store", store.to_string()));
            }
            let stage = rng.chance(10);
            Req {
                method: Method::PUT,
                path: format!("/v2/images/{id}/{}", if stage { "stage" } else { "file" }),
                headers,
                body: Some(d),
            }
        }
        6 | 7 => {
            let prefer = if rng.chance(15) {
                rng.pick(&["?prefer=fast", "?prefer=slow,fast", "?prefer=nowhere"])
            } else {
                ""
            };
            let mut r = get(format!("/v2/images/{id}/file{prefer}"));
            if rng.chance(70) {
                r.headers.push(("Range", rng.pick(RANGES).to_string()));
            } else if rng.chance(20) {
                let cr = rng.pick(&["bytes 0-3/*", "bytes 5-2/10", "bytes x", "bytes 0-0/1"]);
                r.headers.push(("Content-Range", cr.to_string()));
            }
            r
        }
        8 | 9 => {
            let ops: Vec<Value> = (0..1 + rng.below(3))
                .map(|_| {
                    let path = if rng.chance(15) {
                        rng.pick(&["/locations/-", "/locations/0", "/locations", "//x", "/a~2", "name"])
                            .to_string()
                    } else {
                        format!("/{}", key(rng))
                    };
                    let op = rng.pick(&["add", "replace", "remove", "move", "test"]);
                    let root = path.trim_start_matches('/').to_string();
                    let v = if path.starts_with("/locations") {
                        json!({"url": rng.pick(&["http://127.0.0.1:1/x", "file:///etc/passwd", "bogus"]), "metadata": {}})
                    } else {
                        field(rng, &root)
                    };
                    json!({"op": op, "path": path, "value": v})
                })
                .collect();
            let ct = rng.pick(&[
                "application/openstack-images-v2.1-json-patch",
                "application/openstack-images-v2.0-json-patch",
                "application/json",
            ]);
            Req {
                method: Method::PATCH,
                path: format!("/v2/images/{id}"),
                headers: vec![("Content-Type", ct.to_string())],
                body: Some(Value::Array(ops).to_string().into_bytes()),
            }
        }
        10 => Req {
            method: Method::DELETE,
            path: format!("/v2/images/{id}"),
            headers: vec![],
            body: None,
        },
        11 => {
            let mut q = Vec::new();
            for _ in 0..rng.below(4) {
                let k = rng.pick(&[
                    "limit", "marker", "sort", "sort_key", "sort_dir", "name", "status",
                    "visibility", "tag", "size_min", "size_max", "created_at", "member_status",
                    "os_hidden", "owner", "hw_disk_bus", "protected", "id",
                ]);
                let v = if *k == "marker" {
                    image_id(rng, ids)
                } else {
                    string(rng)
                };
                q.push(format!(
                    "{k}={}",
                    percent_encoding::utf8_percent_encode(&v, percent_encoding::NON_ALPHANUMERIC)
                ));
            }
            get(format!("/v2/images?{}", q.join("&")))
        }
        12 => {
            let tag = percent_encoding::utf8_percent_encode(
                &string(rng),
                percent_encoding::NON_ALPHANUMERIC,
            )
            .to_string();
            Req {
                method: if rng.chance(70) {
                    Method::PUT
                } else {
                    Method::DELETE
                },
                path: format!("/v2/images/{id}/tags/{tag}"),
                headers: vec![],
                body: None,
            }
        }
        13 => {
            let member = *rng.pick(&["p1", "p2", "p3", ""]);
            match rng.below(4) {
                0 => Req {
                    method: Method::POST,
                    path: format!("/v2/images/{id}/members"),
                    headers: vec![("Content-Type", "application/json".into())],
                    body: Some(json!({"member": field(rng, "owner")}).to_string().into_bytes()),
                },
                1 => Req {
                    method: Method::PUT,
                    path: format!("/v2/images/{id}/members/{member}"),
                    headers: vec![("Content-Type", "application/json".into())],
                    body: Some(
                        json!({"status": rng.pick(&["accepted", "rejected", "pending", "x"])})
                            .to_string()
                            .into_bytes(),
                    ),
                },
                2 => get(format!("/v2/images/{id}/members")),
                _ => Req {
                    method: Method::DELETE,
                    path: format!("/v2/images/{id}/members/{member}"),
                    headers: vec![],
                    body: None,
                },
            }
        }
        14 => Req {
            method: Method::POST,
            path: format!(
                "/v2/images/{id}/actions/{}",
                rng.pick(&["deactivate", "reactivate", "explode"])
            ),
            headers: vec![],
            body: None,
        },
        // A legacy import task (admins only) fetching another image's data from the node
        // itself: `{self}` is the node's address.
        15 if rng.chance(50) => Req {
            method: Method::POST,
            path: "/v2/tasks".into(),
            headers: vec![("Content-Type", "application/json".into())],
            body: Some(
                json!({"type": "import", "input": {
                    "import_from": format!("{{self}}/v2/images/{id}/file"),
                    "import_from_format": "raw",
                    "image_properties": {"name": "task", "disk_format": rng.pick(&["raw", "qcow2"]),
                                         "container_format": "bare"}}})
                .to_string()
                .into_bytes(),
            ),
        },
        15 => Req {
            method: Method::POST,
            path: format!("/v2/images/{id}/import"),
            headers: vec![("Content-Type", "application/json".into())],
            body: Some(
                json!({"method": {"name": rng.pick(&["glance-direct", "web-download", "x"]), "uri": "http://127.0.0.1:1/x"}})
                    .to_string()
                    .into_bytes(),
            ),
        },
        16 => Req {
            method: Method::DELETE,
            path: format!(
                "/v2/stores/{}/{id}",
                rng.pick(&["fast", "slow", "web", "nowhere"])
            ),
            headers: vec![],
            body: None,
        },
        _ => {
            let path = rng.pick(&[
                "/v2/images/{id}",
                "/v2/schemas/image",
                "/v2/schemas/bogus",
                "/v2/info/stores",
                "/v2/info/import",
                "/v2/images/{id}/members/p1",
                "/v3/images",
                "/v2//images",
                "/",
            ]);
            Req {
                method: rng
                    .pick(&[Method::GET, Method::HEAD, Method::POST, Method::OPTIONS])
                    .clone(),
                path: path.replace("{id}", &id),
                headers: vec![],
                body: None,
            }
        }
    }
}

/// Every image, hidden or not, as an admin sees them.
pub async fn all_images(s: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    for hidden in ["false", "true"] {
        let v = s
            .get_json(&format!(
                "/v2/images?limit=1000&os_hidden={hidden}&member_status=all&visibility=all"
            ))
            .await;
        out.extend(v["images"].as_array().cloned().unwrap_or_default());
    }
    out
}

pub type Answers = std::collections::BTreeMap<u16, usize>;

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One client sending `rounds` random requests; `ids` (shared among clients) collects the
/// images created. Returns how many answers of each status it got.
pub async fn client(
    s: &Server,
    seed: u64,
    rounds: usize,
    ids: &std::sync::Mutex<Vec<String>>,
) -> Answers {
    client_of(s, seed, rounds, ids, false).await
}

/// As `client`; with `outages`, a request that gets no answer (its node was killed, or is
/// down) counts as status 0 instead of failing the test.
pub async fn client_of(
    s: &Server,
    seed: u64,
    rounds: usize,
    ids: &std::sync::Mutex<Vec<String>>,
    outages: bool,
) -> Answers {
    let mut rng = Rng(seed);
    let mut statuses = Answers::new();
    for round in 0..rounds {
        let caller = rng.pick(CALLERS);
        let req = request(&mut rng, &ids.lock().unwrap());
        let what = format!(
            "seed {seed} round {round}: {} {} as {}/{} {:?} body {:?}",
            req.method,
            req.path,
            caller.project,
            caller.roles,
            req.headers,
            req.body
                .as_ref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(300)]).to_string())
        );
        let mut rb = s
            .req(req.method.clone(), &req.path)
            .header("X-Project-Id", caller.project)
            .header("X-Roles", caller.roles);
        for (k, v) in &req.headers {
            rb = rb.header(*k, v);
        }
        // Some uploads lose their client halfway: the body stream fails after half the bytes.
        let vanish = req.method == Method::PUT && req.path.ends_with("/file") && rng.chance(8);
        if let Some(mut body) = req.body.map(|b| {
            String::from_utf8(b.clone()).map_or(b, |t| t.replace("{self}", &s.url).into_bytes())
        }) {
            rb = if vanish {
                let rest = body.split_off(body.len() / 2);
                let chunks: [std::io::Result<Vec<u8>>; 2] = [
                    Ok(body),
                    Err(std::io::Error::other(format!(
                        "client gone, {} bytes unsent",
                        rest.len()
                    ))),
                ];
                rb.body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    chunks,
                )))
            } else {
                rb.body(body)
            };
        }
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(_) if vanish || outages => {
                *statuses.entry(0).or_default() += 1;
                continue;
            }
            Err(e) => panic!("{what}: no answer: {e}\n{}", s.log()),
        };
        let status = resp.status().as_u16();
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(_) if outages => {
                *statuses.entry(0).or_default() += 1;
                continue;
            }
            Err(e) => panic!("{what}: body cut short: {e}"),
        };
        assert!(
            status < 500,
            "{what}: {status} {}\n{}",
            String::from_utf8_lossy(&body),
            s.log()
        );
        *statuses.entry(status).or_default() += 1;
        if req.method == Method::POST
            && req.path == "/v2/images"
            && status == 201
            && let Ok(v) = serde_json::from_slice::<Value>(&body)
            && let Some(id) = v["id"].as_str()
        {
            ids.lock().unwrap().push(id.to_string());
        }
    }
    statuses
}

/// Four clients at once sharing their images, spread over `nodes`; the answers of all.
pub async fn four_clients(nodes: &[&Server], default_seed: u64) -> Answers {
    four_clients_of(nodes, default_seed, false).await
}

/// As `four_clients`; with `outages`, requests that get no answer are counted as 0.
pub async fn four_clients_of(nodes: &[&Server], default_seed: u64, outages: bool) -> Answers {
    let seed = env_or("GLANCE_RANDOM_SEED", default_seed);
    let rounds = env_or("GLANCE_RANDOM_ROUNDS", 1200usize) / 4;
    let ids = Default::default();
    let all = futures_util::future::join_all((0..4u64).map(|i| {
        let node = nodes[i as usize % nodes.len()];
        client_of(
            node,
            seed.wrapping_add(i * 0x9e37_79b9),
            rounds,
            &ids,
            outages,
        )
    }))
    .await;
    let mut statuses = Answers::new();
    for (code, n) in all.into_iter().flatten() {
        *statuses.entry(code).or_default() += n;
    }
    statuses
}

/// No task left unfinished (after a bounded wait for those still running or being taken over
/// from a dead node), no image left mid-upload, every image's data whole, no store file
/// without its image.
pub async fn check_state(s: &Server, statuses: &Answers, stored: Vec<String>) {
    let t0 = std::time::Instant::now();
    loop {
        let tasks = s.get_json("/v2/tasks?limit=1000").await;
        let running: Vec<&Value> = tasks["tasks"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter(|t| t["status"] == "pending" || t["status"] == "processing")
                    .collect()
            })
            .unwrap_or_default();
        if running.is_empty() {
            let ended: Vec<&str> = tasks["tasks"]
                .as_array()
                .map(|t| t.iter().filter_map(|t| t["status"].as_str()).collect())
                .unwrap_or_default();
            eprintln!("tasks: {ended:?}");
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "tasks stuck: {running:?}\n{}",
            s.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // An upload whose client vanished ends when the server sees the connection go, which may
    // come a moment after the clients stop: bounded, a stuck image still fails below.
    let t0 = std::time::Instant::now();
    let images = loop {
        let images = all_images(s).await;
        let busy = images
            .iter()
            .any(|i| i["status"] == "saving" || i["status"] == "importing");
        if !busy || t0.elapsed() > std::time::Duration::from_secs(15) {
            break images;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let mut owned = BTreeSet::new();
    let mut with_data = 0;
    for img in &images {
        let id = img["id"].as_str().unwrap();
        let status = img["status"].as_str().unwrap();
        let history = || {
            let log = s.log();
            log.lines()
                .filter(|l| l.contains(id))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_ne!(status, "saving", "{id} left in saving:\n{}", history());
        assert_ne!(status, "importing", "{id} left importing:\n{}", history());
        if matches!(status, "active" | "deactivated") && img["checksum"].is_string() {
            let r = s
                .get(&format!("/v2/images/{id}/file"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{id} has data:\n{img}\n{}", history());
            let d = r.bytes().await.unwrap().to_vec();
            assert_eq!(Some(d.len() as u64), img["size"].as_u64(), "{id} size");
            assert_eq!(
                hex::encode(md5::Md5::digest(&d)),
                img["checksum"].as_str().unwrap(),
                "{id} checksum"
            );
            with_data += 1;
            owned.insert(id.to_string());
        } else {
            assert!(
                img["checksum"].is_null() || status == "killed",
                "{id} {status} has a checksum but no data"
            );
        }
    }
    assert!(with_data > 0, "no upload succeeded: {statuses:?}");
    if let Some(f) = stored.iter().find(|f| !owned.contains(*f)) {
        let log = s.log();
        let history: Vec<&str> = log.lines().filter(|l| l.contains(f.as_str())).collect();
        panic!(
            "stored object {f} belongs to no image with data; its requests:\n{}",
            history.join("\n")
        );
    }
    eprintln!(
        "answers {statuses:?}; {} images, {with_data} with data",
        images.len()
    );
}
