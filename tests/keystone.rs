//! Keystone authentication against a real Keystone (`scripts/keystone.sh`, started by
//! `scripts/test`), with the real clients logging in by password: tokens, 401s, revocation,
//! disabled users, Keystone outages, and image sharing between two projects.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Backend, PrivateKeystone, Server, auth_url, keystone_conf, keystone_token, venv};
use serde_json::{Value, json};

/// A token for `user` in `project` (password "secret").
fn clouds_yaml(s: &Server, auth: &str) -> std::path::PathBuf {
    let mut y = String::from("clouds:\n");
    for (name, project) in [("alice", "p1"), ("bob", "p2"), ("admin", "admin")] {
        y.push_str(&format!(
            "  {name}:\n    auth:\n      auth_url: {auth}\n      username: {name}\n      password: secret\n      \
             project_name: {project}\n      user_domain_name: Default\n      project_domain_name: Default\n    \
             image_endpoint_override: {}\n    region_name: RegionOne\n",
            s.url
        ));
    }
    let p = s.dir.path().join("clouds.yaml");
    std::fs::write(&p, y).unwrap();
    p
}

fn cli(venv: &std::path::Path, clouds: &std::path::Path, cloud: &str, args: &[&str]) -> Output {
    Command::new(venv.join("bin/openstack"))
        .env("OS_CLIENT_CONFIG_FILE", clouds)
        .args(["--os-cloud", cloud])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

async fn sharing_between_projects_with_the_cli(b: Backend) {
    let (Some(auth), Some(venv)) = (auth_url(), venv()) else {
        return;
    };
    let Some(s) = Server::start_with(b, &keystone_conf(&auth, 300)).await else {
        return;
    };
    let clouds = clouds_yaml(&s, &auth);
    let f = s.dir.path().join("disk.raw");
    std::fs::write(&f, b"shared bytes").unwrap();
    let id = ok(&cli(
        &venv,
        &clouds,
        "alice",
        &[
            "image",
            "create",
            "--file",
            f.to_str().unwrap(),
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--private",
            "-f",
            "value",
            "-c",
            "id",
            "alice-img",
        ],
    ));
    // Private: invisible to the other project, in list and show.
    assert!(
        !ok(&cli(
            &venv,
            &clouds,
            "bob",
            &["image", "list", "-f", "value", "-c", "ID"]
        ))
        .contains(&id)
    );
    assert!(
        !cli(&venv, &clouds, "bob", &["image", "show", &id])
            .status
            .success()
    );
    // Non-admins cannot publicize.
    let o = cli(&venv, &clouds, "alice", &["image", "set", "--public", &id]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Share with p2; bob accepts; bob sees it.
    let bob_project = ok(&cli(
        &venv,
        &clouds,
        "bob",
        &["token", "issue", "-f", "value", "-c", "project_id"],
    ));
    ok(&cli(
        &venv,
        &clouds,
        "alice",
        &["image", "set", "--shared", &id],
    ));
    ok(&cli(
        &venv,
        &clouds,
        "alice",
        &["image", "add", "project", &id, &bob_project],
    ));
    assert!(
        !ok(&cli(
            &venv,
            &clouds,
            "bob",
            &["image", "list", "-f", "value", "-c", "ID"]
        ))
        .contains(&id),
        "pending"
    );
    ok(&cli(
        &venv,
        &clouds,
        "bob",
        &["image", "set", "--accept", &id],
    ));
    assert!(
        ok(&cli(
            &venv,
            &clouds,
            "bob",
            &["image", "list", "-f", "value", "-c", "ID"]
        ))
        .contains(&id)
    );
    let out = s.dir.path().join("bob.raw");
    ok(&cli(
        &venv,
        &clouds,
        "bob",
        &["image", "save", "--file", out.to_str().unwrap(), &id],
    ));
    assert_eq!(std::fs::read(&out).unwrap(), b"shared bytes");
    // Bob cannot delete it; alice can.
    assert!(
        !cli(&venv, &clouds, "bob", &["image", "delete", &id])
            .status
            .success()
    );
    ok(&cli(&venv, &clouds, "alice", &["image", "delete", &id]));
    // Community images are listed on request.
    let cid = ok(&cli(
        &venv,
        &clouds,
        "alice",
        &[
            "image",
            "create",
            "--community",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "-f",
            "value",
            "-c",
            "id",
            "community-img",
        ],
    ));
    assert!(
        !ok(&cli(
            &venv,
            &clouds,
            "bob",
            &["image", "list", "-f", "value", "-c", "ID"]
        ))
        .contains(&cid)
    );
    assert!(
        ok(&cli(
            &venv,
            &clouds,
            "bob",
            &["image", "list", "--community", "-f", "value", "-c", "ID"]
        ))
        .contains(&cid)
    );
}

async fn tokens_are_checked(b: Backend) {
    let Some(auth) = auth_url() else { return };
    let Some(s) = Server::start_with(b, &keystone_conf(&auth, 2)).await else {
        return;
    };
    let http = reqwest::Client::new();
    let list = |t: Option<&str>| {
        let mut rb = http.get(format!("{}/v2/images", s.url));
        if let Some(t) = t {
            rb = rb.header("X-Auth-Token", t);
        }
        rb.send()
    };
    let r = list(None).await.unwrap();
    assert_eq!(r.status(), 401);
    let base = auth.trim_end_matches("/v3");
    assert_eq!(
        r.headers()["www-authenticate"],
        format!("Keystone uri=\"{base}\"").as_str()
    );
    assert_eq!(list(Some("not-a-token")).await.unwrap().status(), 401);

    // A revoked token stops working within token_cache_time.
    let t = keystone_token(&auth, "alice", "p1").await;
    assert_eq!(list(Some(&t)).await.unwrap().status(), 200);
    let admin = keystone_token(&auth, "admin", "admin").await;
    let r = http
        .delete(format!("{auth}/auth/tokens"))
        .header("X-Auth-Token", &admin)
        .header("X-Subject-Token", &t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(list(Some(&t)).await.unwrap().status(), 401, "revoked");

    // A disabled user's token is refused.
    let name = format!("carol-{}", uuid::Uuid::new_v4().simple());
    let r = http
        .post(format!("{auth}/users"))
        .header("X-Auth-Token", &admin)
        .json(&json!({"user": {"name": name, "password": "secret", "domain_id": "default"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let uid = r.json::<Value>().await.unwrap()["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let roles: Value = http
        .get(format!("{auth}/roles?name=member"))
        .header("X-Auth-Token", &admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rid = roles["roles"][0]["id"].as_str().unwrap().to_string();
    let projects: Value = http
        .get(format!("{auth}/projects?name=p1"))
        .header("X-Auth-Token", &admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pid = projects["projects"][0]["id"].as_str().unwrap().to_string();
    http.put(format!("{auth}/projects/{pid}/users/{uid}/roles/{rid}"))
        .header("X-Auth-Token", &admin)
        .send()
        .await
        .unwrap();
    let ct = keystone_token(&auth, &name, "p1").await;
    assert_eq!(list(Some(&ct)).await.unwrap().status(), 200);
    let r = http
        .patch(format!("{auth}/users/{uid}"))
        .header("X-Auth-Token", &admin)
        .json(&json!({"user": {"enabled": false}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        list(Some(&ct)).await.unwrap().status(),
        401,
        "disabled user"
    );

    // The service role of the token itself reaches the Locations API; a service token's roles
    // are not the user's (Glance's fetch_image_location reads the token's roles).
    let img = {
        let alice = keystone_token(&auth, "alice", "p1").await;
        let r = http
            .post(format!("{}/v2/images", s.url))
            .header("X-Auth-Token", &alice)
            .json(&json!({"name": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let r = http
            .get(format!("{}/v2/images/{id}/locations", s.url))
            .header("X-Auth-Token", &alice)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        // A service token without the service role lends nothing.
        let bob = keystone_token(&auth, "bob", "p2").await;
        let r = http
            .get(format!("{}/v2/images/{id}/locations", s.url))
            .header("X-Auth-Token", &alice)
            .header("X-Service-Token", &bob)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let svc = keystone_token(&auth, "glance", "service").await;
        let r = http
            .get(format!("{}/v2/images/{id}/locations", s.url))
            .header("X-Auth-Token", &alice)
            .header("X-Service-Token", &svc)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let r = http
            .get(format!("{}/v2/images/{id}/locations", s.url))
            .header("X-Auth-Token", &svc)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        id
    };
    assert!(!img.is_empty());
}

/// A private Keystone with short-lived tokens: expiry, then an outage (503) and recovery.
async fn keystone_outage_and_expiry(b: Backend) {
    let Some(_) = auth_url() else { return };
    let ks = PrivateKeystone::start(&[("KEYSTONE_TOKEN_EXPIRATION", "6")]);
    let auth = ks.auth.clone();
    let Some(s) = Server::start_with(b, &keystone_conf(&auth, 1)).await else {
        return;
    };
    let http = reqwest::Client::new();
    let t = keystone_token(&auth, "alice", "p1").await;
    let get = |t: String| {
        http.get(format!("{}/v2/images", s.url))
            .header("X-Auth-Token", t)
            .send()
    };
    assert_eq!(get(t.clone()).await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(get(t).await.unwrap().status(), 401, "expired");

    let t = keystone_token(&auth, "alice", "p1").await;
    ks.stop();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(get(t.clone()).await.unwrap().status(), 503, "Keystone down");
    ks.start_again();
    // The old token may have expired meanwhile (6 s): a fresh one must work again.
    let t = keystone_token(&auth, "alice", "p1").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = 0;
    while Instant::now() < deadline {
        status = get(t.clone()).await.unwrap().status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(status, 200, "recovers without a restart");
}

/// Plain password login with the endpoint from Keystone's catalog (no clouds.yaml): the
/// bootstrap registers the image service at 127.0.0.1:9292, so this one test serves there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_login_through_the_catalog() {
    let (Some(auth), Some(venv)) = (auth_url(), venv()) else {
        return;
    };
    let extra = format!("{}[DEFAULT]\nbind_port = 9292\n", keystone_conf(&auth, 300));
    let Some(s) = Server::start_with(Backend::Sqlite, &extra).await else {
        return;
    };
    assert_eq!(s.port, 9292);
    let run = |args: &[&str]| {
        Command::new(venv.join("bin/openstack"))
            .env_remove("OS_CLIENT_CONFIG_FILE")
            .args([
                "--os-auth-url",
                &auth,
                "--os-username",
                "alice",
                "--os-password",
                "secret",
                "--os-project-name",
                "p1",
                "--os-user-domain-name",
                "Default",
                "--os-project-domain-name",
                "Default",
                "--os-region-name",
                "RegionOne",
            ])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let id = ok(&run(&[
        "image",
        "create",
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "-f",
        "value",
        "-c",
        "id",
        "via-catalog",
    ]));
    assert!(ok(&run(&["image", "list", "-f", "value", "-c", "ID"])).contains(&id));
    ok(&run(&["image", "delete", &id]));
}

/// glance-api.conf as kolla-ansible, devstack and OpenStack-Ansible write it
/// (tests/fixtures/deploy), each started the way that tool starts the service (kolla: no flag,
/// the file and its `.conf.d` found on the search path; devstack: `--config-dir`; OSA:
/// `--config-file`), serving the real `openstack` client a whole image round trip; what
/// glance-rs leaves out (kolla's cinder store) and ignores is said once in its log.
async fn deployment_tool_configs_serve_the_clients(b: Backend) {
    let (Some(auth), Some(venv)) = (auth_url(), venv()) else {
        return;
    };
    // A database (migrated) and its cleanup; this node itself is not used.
    let Some(mut base) = Server::start(b).await else {
        return;
    };
    base.stop();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deploy");
    let data = common::random_bytes(300_000);
    for tool in ["kolla", "devstack", "openstack-ansible"] {
        let state = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let fill = |text: &str| {
            text.replace("@PORT@", "0")
                .replace("@DB@", &base.db_url)
                .replace("@AUTH@", auth.trim_end_matches("/v3"))
                .replace("@STATE@", state.path().to_str().unwrap())
        };
        let read = |f: &str| fill(&std::fs::read_to_string(fixtures.join(tool).join(f)).unwrap());
        let mut cmd = Command::new(common::bin());
        match tool {
            "kolla" => {
                let etc = home.path().join(".glance");
                std::fs::create_dir_all(etc.join("glance-api.conf.d")).unwrap();
                std::fs::write(etc.join("glance-api.conf"), read("glance-api.conf")).unwrap();
                std::fs::write(
                    etc.join("glance-api.conf.d/99-overrides.conf"),
                    read("glance-api.conf.d/99-overrides.conf"),
                )
                .unwrap();
            }
            "devstack" => {
                let dir = state.path().join("etc");
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("glance-api.conf"), read("glance-api.conf")).unwrap();
                cmd.arg("--config-dir").arg(&dir);
            }
            _ => {
                let f = state.path().join("glance-api.conf");
                std::fs::write(&f, read("glance-api.conf")).unwrap();
                cmd.arg("--config-file").arg(&f);
            }
        }
        let log = state.path().join("stderr.log");
        cmd.env("HOME", home.path())
            .env("RUST_LOG", "info,sqlx=warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = common::ChildGuard(Some(cmd.spawn().unwrap()));
        let stdout = child.0.as_mut().unwrap().stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(a) = line.strip_prefix("listening on ") {
                    let _ = tx.send(a.to_string());
                }
            }
        });
        let addr = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap()
            .unwrap_or_else(|_| {
                panic!(
                    "{tool}: not serving: {}",
                    std::fs::read_to_string(&log).unwrap()
                )
            });
        let url = format!("http://{addr}");
        let clouds = state.path().join("clouds.yaml");
        std::fs::write(
            &clouds,
            format!(
                "clouds:\n  alice:\n    auth:\n      auth_url: {auth}\n      username: alice\n      \
                 password: secret\n      project_name: p1\n      user_domain_name: Default\n      \
                 project_domain_name: Default\n    image_endpoint_override: {url}\n    \
                 region_name: RegionOne\n"
            ),
        )
        .unwrap();
        let file = state.path().join("in.img");
        std::fs::write(&file, &data).unwrap();
        let name = format!("via-{tool}");
        let id = ok(&cli(
            &venv,
            &clouds,
            "alice",
            &[
                "image",
                "create",
                "--disk-format",
                "raw",
                "--container-format",
                "bare",
                "--file",
                file.to_str().unwrap(),
                "-f",
                "value",
                "-c",
                "id",
                &name,
            ],
        ));
        let listed = ok(&cli(
            &venv,
            &clouds,
            "alice",
            &["image", "list", "-f", "value", "-c", "Name"],
        ));
        assert!(listed.lines().any(|l| l == name), "{tool}: {listed}");
        let out = state.path().join("out.img");
        ok(&cli(
            &venv,
            &clouds,
            "alice",
            &["image", "save", "--file", out.to_str().unwrap(), &id],
        ));
        assert!(
            std::fs::read(&out).unwrap() == data,
            "{tool}: the bytes came back"
        );
        ok(&cli(&venv, &clouds, "alice", &["image", "delete", &id]));
        if let Some(mut c) = child.0.take() {
            common::terminate(&mut c);
        }
        let logged = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            logged.matches("not used by glance-rs").count(),
            1,
            "{tool}: ignored options said once: {logged}"
        );
        if tool == "kolla" {
            assert!(logged.contains("\"cinder\" is not implemented"), "{logged}");
            assert!(
                logged.contains("[cinder] cinder_store_user_name"),
                "{logged}"
            );
        }
    }
}

both_databases!(
    deployment_tool_configs_serve_the_clients,
    sharing_between_projects_with_the_cli,
    tokens_are_checked,
    keystone_outage_and_expiry
);
