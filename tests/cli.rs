//! The binary's commands and configuration: defaults with no setup, the sample config, config
//! errors, `db sync`, and surviving a database restart.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, require, run_ok};

/// Starts the binary with `args` in `cwd`, waits for its "listening on" line, returns (child, url).
fn spawn(
    cwd: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Child, String) {
    let (child, addr) = spawn_at(cwd, args, env);
    let port = addr.rsplit(':').next().unwrap();
    (child, format!("http://127.0.0.1:{port}"))
}

/// As `spawn`, returning the address the server says it listens on.
fn spawn_at(
    cwd: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Child, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("listening on ") {
                let _ = tx.send(a.to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server started");
    (child, addr)
}

/// Configuration as oslo.config finds and reads it: `--config-dir` files in name order, quoted
/// values unquoted, the search path (`~/.glance/glance-api.conf`) when no file is named, and with
/// nothing found the embedded default, listening on loopback only.
#[test]
fn configuration_is_found_and_read_as_oslo_config_does() {
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let home_s = home.path().to_str().unwrap();
    let port0 = ("OS_DEFAULT__BIND_PORT", "0");
    // A kolla-style directory: values in quotes, the later file winning.
    let confd = home.path().join("conf.d");
    std::fs::create_dir_all(&confd).unwrap();
    let db = |name: &str| home.path().join(name);
    std::fs::write(
        confd.join("10-base.conf"),
        format!(
            "[DEFAULT]\nbind_host = \"127.0.0.2\"\n[database]\nconnection = \"sqlite:///{}\"\n",
            db("first.db").display()
        ),
    )
    .unwrap();
    std::fs::write(
        confd.join("20-site.conf"),
        "[DEFAULT]\nbind_host = '127.0.0.1'\n",
    )
    .unwrap();
    let (child, addr) = spawn_at(
        cwd.path(),
        &["--config-dir", confd.to_str().unwrap()],
        &[port0, ("HOME", home_s)],
    );
    stop(child);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert!(db("first.db").exists(), "the quoted connection was used");

    // No file named: ~/.glance/glance-api.conf is found.
    std::fs::create_dir_all(home.path().join(".glance")).unwrap();
    std::fs::write(
        home.path().join(".glance/glance-api.conf"),
        format!(
            "[DEFAULT]\nbind_host = 127.0.0.1\n[database]\nconnection = sqlite:///{}\n",
            db("found.db").display()
        ),
    )
    .unwrap();
    let (child, _) = spawn_at(cwd.path(), &[], &[port0, ("HOME", home_s)]);
    stop(child);
    assert!(
        db("found.db").exists(),
        "the file on the search path was used"
    );

    // Nothing anywhere: the embedded default on loopback (unless the machine has its own).
    let system = [
        "/etc/glance/glance-api.conf",
        "/etc/glance/glance.conf",
        "/etc/glance-api.conf",
        "/etc/glance.conf",
    ];
    if system.iter().all(|f| !std::path::Path::new(f).exists()) {
        let empty = tempfile::tempdir().unwrap();
        let (child, addr) = spawn_at(
            cwd.path(),
            &[],
            &[port0, ("HOME", empty.path().to_str().unwrap())],
        );
        stop(child);
        assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        assert!(
            cwd.path().join("data").exists(),
            "the embedded default's data directory"
        );
    }
}

fn stop(mut child: std::process::Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}

#[tokio::test]
async fn serves_with_no_setup_and_with_the_sample_config() {
    for conf in [
        None,
        Some(concat!(env!("CARGO_MANIFEST_DIR"), "/etc/glance-api.conf")),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec![];
        if let Some(c) = conf {
            args.extend(["--config-file", c]);
        }
        // Port 0 through the environment override, so tests never collide on 9292.
        let (child, url) = spawn(
            dir.path(),
            &args,
            &[
                ("OS_DEFAULT__BIND_PORT", "0"),
                ("OS_DEFAULT__BIND_HOST", "127.0.0.1"),
            ],
        );
        let r = reqwest::Client::new()
            .post(format!("{url}/v2/images"))
            .json(
                &serde_json::json!({"name": "x", "disk_format": "raw", "container_format": "bare"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let id = r.json::<serde_json::Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let r = reqwest::Client::new()
            .put(format!("{url}/v2/images/{id}/file"))
            .header("Content-Type", "application/octet-stream")
            .body("bytes")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        stop(child);
        assert!(dir.path().join("data/glance.sqlite").exists(), "{conf:?}");
        assert!(
            dir.path().join("data/images").join(&id).exists(),
            "{conf:?}"
        );
    }
}

/// With `NOTIFY_SOCKET` set (systemd's `Type=notify`), the node says `READY=1` once it
/// serves and `STOPPING=1` when SIGTERM stops it: a rolling restart waits for readiness.
#[tokio::test]
async fn tells_the_service_manager_when_ready_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (child, url) = spawn(
        dir.path(),
        &[],
        &[
            ("OS_DEFAULT__BIND_PORT", "0"),
            ("OS_DEFAULT__BIND_HOST", "127.0.0.1"),
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ],
    );
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("READY=1 within 30 s");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        msg.starts_with("READY=1\nSTATUS=serving on 127.0.0.1:"),
        "{msg}"
    );
    // Ready means serving.
    let r = reqwest::get(format!("{url}/healthcheck")).await.unwrap();
    assert_eq!(r.status(), 200);
    let pid = child.id();
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let n = sock.recv(&mut buf).expect("STOPPING=1 on SIGTERM");
    assert_eq!(&buf[..n], b"STOPPING=1");
    stop(child);
}

/// Runs the server with one config file, expecting it to stop on its own.
fn start_and_exit(conf: &std::path::Path, cwd: &std::path::Path) -> std::process::Output {
    Command::new(bin())
        .args(["--config-file", conf.to_str().unwrap()])
        .current_dir(cwd)
        .output()
        .unwrap()
}

#[test]
fn invalid_config_stops_startup_naming_section_and_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, needle) in [
        ("[DEFAULT]\nbind_port = http\n", "[DEFAULT] bind_port"),
        (
            "[DEFAULT]\nshow_image_direct_url = perhaps\n",
            "[DEFAULT] show_image_direct_url",
        ),
        (
            "[DEFAULT]\nhashing_algorithm = crc32\n",
            "[DEFAULT] hashing_algorithm",
        ),
        ("[DEFAULT]\napi_limit_max = 0\n", "[DEFAULT] api_limit_max"),
        (
            "[database]\nconnection = oracle://x/y\n",
            "[database] connection",
        ),
        ("[paste_deploy]\nflavor = magic\n", "[paste_deploy] flavor"),
        (
            "[glance_store]\ndefault_store = swift\n",
            "[glance_store] default_store",
        ),
    ] {
        let conf = dir.path().join("bad.conf");
        std::fs::write(&conf, text).unwrap();
        let out = start_and_exit(&conf, dir.path());
        assert!(!out.status.success(), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{text}: {err}");
    }
    // A file that does not exist is an error too.
    let out = Command::new(bin())
        .args(["--config-file", "/nonexistent.conf"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    // An unwritable store directory stops start-up with a clear message.
    let conf = dir.path().join("store.conf");
    std::fs::write(
        &conf,
        "[glance_store]\nfilesystem_store_datadir = /proc/glance-rs\n",
    )
    .unwrap();
    let out = start_and_exit(&conf, dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("filesystem_store_datadir"));
    // So does a metadata file without the keys Nova needs.
    let meta = dir.path().join("meta.json");
    std::fs::write(&meta, r#"[{"id": "nfs1"}]"#).unwrap();
    std::fs::write(
        &conf,
        format!(
            "[glance_store]\nfilesystem_store_datadir = {}\nfilesystem_store_metadata_file = {}\n",
            dir.path().join("images").display(),
            meta.display()
        ),
    )
    .unwrap();
    let out = start_and_exit(&conf, dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("filesystem_store_metadata_file") && err.contains("mountpoint"),
        "{err}"
    );
}

#[tokio::test]
async fn db_sync_is_idempotent_and_mysql_needs_it() {
    let Some(admin) = common::mysql_url() else {
        return;
    };
    let name = format!("glance_sync_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::MySqlPool::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("g.conf");
    let url = format!(
        "mysql+pymysql://{}/{name}",
        admin.trim_start_matches("mysql://").trim_end_matches('/')
    );
    std::fs::write(&conf, format!("[DEFAULT]\nbind_host = 127.0.0.1\nbind_port = 0\n[database]\nconnection = {url}\n[glance_store]\nfilesystem_store_datadir = {}\n", dir.path().join("img").display())).unwrap();
    let c = conf.to_str().unwrap();
    // Serving an empty database refuses with the command to run.
    let out = Command::new(bin())
        .args(["--config-file", c])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("db sync"));
    for _ in 0..2 {
        run_ok(Command::new(bin()).args(["--config-file", c, "db", "sync"]));
    }
    let tables: Vec<(String,)> = sqlx::query_as(&format!(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = '{name}' ORDER BY table_name"
    ))
    .fetch_all(&pool)
    .await
    .unwrap();
    let tables: Vec<String> = tables.into_iter().map(|t| t.0).collect();
    for t in [
        "image_locations",
        "image_members",
        "image_properties",
        "image_tags",
        "images",
        "task_info",
        "tasks",
    ] {
        assert!(
            tables.contains(&t.to_string()),
            "{t} missing from {tables:?}"
        );
    }
    sqlx::query(&format!("DROP DATABASE {name}"))
        .execute(&pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn survives_a_database_restart() {
    // A private MariaDB, so stopping it disturbs no other test.
    let mariadbd = std::path::Path::new("/usr/sbin/mariadbd")
        .exists()
        .then(|| "mariadbd".to_string());
    let Some(_) = require(
        "mariadbd",
        mariadbd,
        "install Debian's mariadb-server (scripts/install-deps)",
    ) else {
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/mariadb.sh");
    let dir = tempfile::tempdir().unwrap();
    let mdir = dir.path().join("mariadb");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let start = || {
        run_ok(Command::new(script).args(["start", mdir.to_str().unwrap(), &port]))
            .trim()
            .to_string()
    };
    let stop_db = || {
        let st = Command::new(script)
            .args(["stop", mdir.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(st.success());
    };
    let admin = start();
    let pool = sqlx::MySqlPool::connect(&admin).await.unwrap();
    sqlx::query("CREATE DATABASE glance")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let conf = dir.path().join("g.conf");
    std::fs::write(&conf, format!(
        "[DEFAULT]\nbind_host = 127.0.0.1\nbind_port = 0\n[database]\nconnection = mysql+pymysql://{}/glance\n[glance_store]\nfilesystem_store_datadir = {}\n",
        admin.trim_start_matches("mysql://"), dir.path().join("img").display()
    )).unwrap();
    let c = conf.to_str().unwrap().to_string();
    assert!(
        Command::new(bin())
            .args(["--config-file", &c, "db", "sync"])
            .status()
            .unwrap()
            .success()
    );
    let (child, url) = spawn(dir.path(), &["--config-file", &c], &[]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let r = http
        .post(format!("{url}/v2/images"))
        .json(&serde_json::json!({"name": "before"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    stop_db();
    let r = http.get(format!("{url}/v2/images")).send().await.unwrap();
    assert_eq!(r.status(), 503, "requests during the outage get 503");
    let r = http.get(format!("{url}/healthcheck")).send().await.unwrap();
    assert_eq!(r.status(), 503);

    start();
    // Bounded wait for the pool to reconnect.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = 0;
    while Instant::now() < deadline {
        status = http
            .get(format!("{url}/v2/images"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, 200, "recovers without a restart");
    let v: serde_json::Value = http
        .get(format!("{url}/v2/images"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["images"][0]["name"], "before");
    stop(child);
    stop_db();
}

/// The shipped systemd unit as systemd reads it: `systemd-analyze verify` finds nothing wrong
/// (its binary put where the test's is), and its sandboxing keeps the exposure systemd rates
/// below 5 ("OK") — offline, no systemd needs to run.
#[test]
fn the_systemd_unit_verifies() {
    let found = Command::new("sh")
        .args(["-c", "command -v systemd-analyze"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let Some(analyze) = require(
        "systemd-analyze",
        found,
        "scripts/install-deps installs Debian's systemd package",
    ) else {
        return;
    };
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/glance-rs.service"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("glance-rs.service");
    std::fs::write(&unit, shipped.replace("/usr/bin/glance-rs", bin())).unwrap();
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
    let security = run_ok(
        Command::new(&analyze)
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&unit),
    );
    let level: f64 = security
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for glance-rs.service: ")
                .nth(1)
        })
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{security}"));
    assert!(level < 5.0, "exposure {level}: {security}");
}

/// glance-manage's command lines, as deployment tools run them, through a `glance-manage` link
/// to the binary and through `glance-rs manage`: db_sync / db sync / upgrade / expand, version,
/// check (exit 3 before the schema exists, 0 after), migrate and contract, and the metadef
/// commands in their legacy and current forms.
#[test]
fn glance_manage_command_lines_run_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let manage = dir.path().join("glance-manage");
    std::os::unix::fs::symlink(bin(), &manage).unwrap();
    let conf = dir.path().join("glance-api.conf");
    std::fs::write(
        &conf,
        format!(
            "[database]\nconnection = sqlite:///{}/glance.sqlite\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let c = conf.to_str().unwrap();
    let run = |prog: &std::path::Path, args: &[&str]| {
        Command::new(prog)
            .args(["--config-file", c])
            .args(args)
            .output()
            .unwrap()
    };
    let check = run(&manage, &["db", "check"]);
    assert_eq!(check.status.code(), Some(3), "{check:?}");
    run_ok(Command::new(&manage).args(["--config-file", c, "db_sync"]));
    let check = run(&manage, &["db", "check"]);
    assert_eq!(check.status.code(), Some(0), "{check:?}");
    assert!(String::from_utf8_lossy(&check.stdout).contains("up to date"));
    for args in [
        &["db", "sync"][..],
        &["db", "upgrade"],
        &["db", "expand"],
        &["db", "migrate"],
        &["db", "contract"],
    ] {
        let out = run(&manage, args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    let version = run(&manage, &["db", "version"]);
    assert!(
        String::from_utf8_lossy(&version.stdout).contains("Current DB version"),
        "{version:?}"
    );
    let ours = run(std::path::Path::new(bin()), &["manage", "db", "check"]);
    assert_eq!(ours.status.code(), Some(0), "{ours:?}");

    // Metadefs: a definition file loaded by the legacy form, merged, exported.
    let defs = dir.path().join("metadefs");
    std::fs::create_dir_all(&defs).unwrap();
    std::fs::write(
        defs.join("site.json"),
        r#"{"namespace": "Site::Test", "display_name": "Site Test", "visibility": "public",
            "properties": {"p": {"title": "P", "type": "string"}}}"#,
    )
    .unwrap();
    let d = defs.to_str().unwrap();
    let out = run_ok(Command::new(&manage).args(["--config-file", c, "db_load_metadefs", d]));
    assert!(out.contains("1 namespaces loaded"), "{out}");
    let out = run_ok(Command::new(&manage).args(["--config-file", c, "db_load_metadefs", d]));
    assert!(out.contains("1 skipped"), "{out}");
    let out = run_ok(Command::new(&manage).args([
        "--config-file",
        c,
        "db_load_metadefs",
        d,
        "True",
        "True",
    ]));
    assert!(out.contains("1 namespaces loaded"), "merged: {out}");
    let out = run(
        &manage,
        &["db", "load_metadefs", "--path", d, "--prefer_new"],
    );
    assert!(!out.status.success(), "--prefer_new needs --merge");
    let export = dir.path().join("export");
    run_ok(Command::new(&manage).args([
        "--config-file",
        c,
        "db",
        "export_metadefs",
        "--path",
        export.to_str().unwrap(),
    ]));
    assert!(export.join("SiteTest.json").exists());
    run_ok(Command::new(&manage).args(["--config-file", c, "db_unload_metadefs"]));
}

/// `db purge` removes old soft-deleted rows (properties, tags, locations) but keeps `images`;
/// `db purge_images_table` removes the image rows, and their ids stay taken (OSSN-0075); both
/// check their arguments in glance-manage's words.
async fn purge_removes_old_deleted_rows_and_never_frees_an_id(b: common::Backend) {
    use serde_json::json;
    let Some(s) = common::Server::start(b).await else {
        return;
    };
    let gone = s
        .create(
            json!({"name": "gone", "disk_format": "raw", "container_format": "bare",
                       "tags": ["t1", "t2"], "site": "x"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.upload(&gone, b"data".to_vec()).await.status(), 204);
    let kept = s
        .create(
            json!({"name": "kept", "disk_format": "raw", "container_format": "bare",
                       "tags": ["k"], "site": "y"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.delete(&gone).await, 204);
    let count = |c: &[(String, i64)], t: &str| c.iter().find(|(n, _)| n == t).unwrap().1;
    let before = s.counts().await;
    let conf = s.dir.path().join("glance-api.conf");
    let c = conf.to_str().unwrap();
    let manage = s.dir.path().join("glance-manage");
    std::os::unix::fs::symlink(bin(), &manage).unwrap();
    let run = |args: &[&str]| {
        Command::new(&manage)
            .args(["--config-file", c])
            .args(args)
            .output()
            .unwrap()
    };

    // Deleted just now: not older than a day.
    let out = run(&["db", "purge", "--age_in_days", "1"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(s.counts().await, before);

    for (args, words) in [
        (
            &["db", "purge", "--age_in_days", "-1"][..],
            "Must supply a non-negative value for age.",
        ),
        (
            &["db", "purge", "--age_in_days", "100000"],
            "Maximal age is count of days since epoch.",
        ),
        (
            &["db", "purge", "--max_rows", "-2"],
            "Minimal rows limit is -1.",
        ),
        (
            &["db", "purge_images_table", "--max_rows", "2147483648"],
            "'max_rows' value out of range, must not exceed 2147483647.",
        ),
    ] {
        let out = run(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(words), "{args:?}: {err}");
        assert_eq!(s.counts().await, before, "{args:?} changed nothing");
    }

    let out = run(&["db", "purge", "--age_in_days=0", "--max_rows", "-1"]);
    assert!(out.status.success(), "{out:?}");
    let after = s.counts().await;
    assert_eq!(count(&after, "images"), count(&before, "images"));
    // The deleted image's property, two tags and location went; the kept image's stayed.
    assert_eq!(
        count(&after, "image_properties"),
        count(&before, "image_properties") - 1
    );
    assert_eq!(
        count(&after, "image_tags"),
        count(&before, "image_tags") - 2
    );
    assert_eq!(
        count(&after, "image_locations"),
        count(&before, "image_locations") - 1
    );
    let v = s.show(&kept).await;
    assert_eq!(
        (v["site"].as_str(), v["tags"].clone()),
        (Some("y"), json!(["k"]))
    );

    let out = run(&["db", "purge_images_table", "--age_in_days", "0"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        count(&s.counts().await, "images"),
        count(&before, "images") - 1
    );
    // The purged image's id is never given again.
    let r = s
        .req(reqwest::Method::POST, "/v2/images")
        .json(&json!({"id": gone, "name": "again"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(s.show(&kept).await["status"], "queued");
}

both_databases!(purge_removes_old_deleted_rows_and_never_frees_an_id);

/// `GET /v2/images` as user u1 of project p1 (noauth headers) with request id `rid`: 200.
async fn list_as_u1(s: &common::Server, rid: &str) {
    let r = s
        .get("/v2/images")
        .header("X-OpenStack-Request-ID", rid)
        .header("X-Project-Id", "p1")
        .header("X-User-Id", "u1")
        .header("X-Roles", "member,reader")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Logs as oslo.log writes them: `[DEFAULT] log_file` in logging_context_format_string's
/// default layout (the caller's request id as the global one, the token's ids), `[-]` outside
/// a request, the file reopened after logrotate moves it; `use_json` one JSON object a line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_as_oslo_log() {
    let logs = tempfile::tempdir().unwrap();
    let conf = format!(
        "[DEFAULT]\nlog_dir = {}\nlog_file = api.log\n",
        logs.path().display()
    );
    let Some(s) = common::Server::start_with(common::Backend::Sqlite, &conf).await else {
        return;
    };
    let file = logs.path().join("api.log");
    let rid = "req-0b3f1e9a-6d2c-4c47-9a54-2f1d3c4b5a69";
    list_as_u1(&s, rid).await;
    let text = std::fs::read_to_string(&file).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("\"GET /v2/images\" status: 200"))
        .unwrap_or_else(|| panic!("no access line: {text}"));
    let re = regex_lite(line);
    assert!(re, "not oslo.log's layout: {line}");
    assert!(
        line.contains(&format!("[{rid} {rid} u1 p1 - - - -] 127.0.0.1")),
        "{line}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains(" INFO ") && l.contains(" [-] ")),
        "lines outside a request: {text}"
    );
    // The log lines went to the file, not to stderr.
    assert!(!s.log().contains("status: 200"), "{}", s.log());

    // logrotate moves the file: the next line starts a new one.
    std::fs::rename(&file, logs.path().join("api.log.1")).unwrap();
    assert_eq!(s.get("/versions").send().await.unwrap().status(), 200);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\"GET /versions\" status: 200"), "{text}");
    assert!(!text.contains("/v2/images"), "{text}");
    drop(s);

    let json = format!("{conf}use_json = true\n");
    let Some(s) = common::Server::start_with(common::Backend::Sqlite, &json).await else {
        return;
    };
    let r = s
        .get("/v2/images")
        .header("X-OpenStack-Request-ID", rid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = std::fs::read_to_string(&file).unwrap();
    let access: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("status: 200"))
        })
        .unwrap_or_else(|| panic!("no JSON access line: {text}"));
    assert_eq!(access["context"]["request_id"], rid);
    assert_eq!(access["context"]["global_request_id"], rid);
    assert_eq!(access["levelname"], "INFO");
}

/// `2026-12-04 02:30:00.123 4242 INFO glance_rs.api [`: oslo.log's default prefix.
fn regex_lite(line: &str) -> bool {
    let b = line.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let mut parts = line.splitn(5, ' ');
    let (date, time, pid, level, rest) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    date.len() == 10
        && digits(0..4)
        && time.len() == 12
        && time.as_bytes()[8] == b'.'
        && pid.bytes().all(|c| c.is_ascii_digit())
        && ["DEBUG", "INFO", "WARNING", "ERROR"].contains(&level)
        && rest.starts_with("glance_rs.")
        && rest.contains(" [")
}

/// `[DEFAULT] use_journal`: lines reach systemd's journal as oslo.log's journal handler writes
/// them (the request's ids as plain fields, syslog priorities, the service's identifier), so
/// `journalctl REQUEST_ID=req-...` finds a request. A journald already running is used;
/// otherwise the test runs Debian's systemd-journald (standalone, as root) and stops it.
#[tokio::test]
async fn logs_to_the_journal() {
    const SOCKET: &str = "/run/systemd/journal/socket";
    let listening = || {
        std::os::unix::net::UnixDatagram::unbound()
            .and_then(|s| s.send_to(b"", SOCKET))
            .is_ok()
    };
    /// The journald this test started, stopped however the test ends.
    struct Ours(Option<std::process::Child>);
    impl Drop for Ours {
        fn drop(&mut self) {
            if let Some(c) = self.0.as_mut() {
                common::terminate(c);
            }
        }
    }
    let mut ours = Ours(None);
    if !listening() {
        let binary = "/lib/systemd/systemd-journald";
        let Some(_) = require(
            "systemd-journald",
            std::path::Path::new(binary)
                .exists()
                .then(|| binary.to_string()),
            "Debian's systemd package (scripts/install-deps installs it)",
        ) else {
            return;
        };
        let child = Command::new(binary)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        ours.0 = Some(child);
        let t0 = Instant::now();
        while !listening() {
            assert!(t0.elapsed() < Duration::from_secs(10), "journald not up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let conf = "[DEFAULT]\nuse_journal = true\n";
    let Some(s) = common::Server::start_with(common::Backend::Sqlite, conf).await else {
        return;
    };
    let rid = format!("req-{}", uuid::Uuid::new_v4());
    list_as_u1(&s, &rid).await;
    let mut found = None;
    let t0 = Instant::now();
    while found.is_none() && t0.elapsed() < Duration::from_secs(10) {
        let out = Command::new("journalctl")
            .args(["--no-pager", "-o", "json", &format!("REQUEST_ID={rid}")])
            .output()
            .unwrap();
        found = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| {
                e["MESSAGE"]
                    .as_str()
                    .is_some_and(|m| m.contains("status: 200"))
            });
        if found.is_none() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    drop(ours);
    let entry = found.expect("the access line in the journal");
    assert_eq!(entry["SYSLOG_IDENTIFIER"], "glance-api", "{entry}");
    assert_eq!(entry["PRIORITY"], "6", "INFO is syslog's info: {entry}");
    assert_eq!(entry["PROJECT_ID"], "p1", "{entry}");
    assert_eq!(entry["USER_ID"], "u1", "{entry}");
    assert_eq!(entry["GLOBAL_REQUEST_ID"], rid.as_str(), "{entry}");
    assert!(
        entry["MESSAGE"]
            .as_str()
            .is_some_and(|m| m.contains("\"GET /v2/images\" status: 200")),
        "{entry}"
    );
    // The journal replaces stderr (oslo.log's use_stderr defaults to off).
    assert!(!s.log().contains("status: 200"), "{}", s.log());
}
