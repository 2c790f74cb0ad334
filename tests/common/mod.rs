//! Test harness: starts the real `glance-rs` binary on a free loopback port against SQLite or
//! MariaDB and talks to it over HTTP; runs the real OpenStack clients against it.
#![allow(dead_code)]

pub mod ha;
pub mod mounts;
pub mod random;
pub mod rng;
pub mod source;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde_json::Value;
use sqlx::Row;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Backend {
    Sqlite,
    MySql,
}

pub fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

/// A service the test needs: under CI its absence fails the test; locally the test is skipped
/// with a message saying how to provide it.
pub fn require(service: &str, value: Option<String>, how: &str) -> Option<String> {
    if value.is_some() {
        return value;
    }
    if in_ci() {
        panic!("{service} is required under CI but is not available: {how}");
    }
    eprintln!("SKIPPED: {service} is not available. {how}");
    None
}

/// The test Keystone's v3 URL (`scripts/keystone.sh`).
pub fn auth_url() -> Option<String> {
    require(
        "Keystone",
        std::env::var("OS_AUTH_URL").ok().filter(|s| !s.is_empty()),
        "run scripts/test, or `scripts/keystone.sh start DIR` and set OS_AUTH_URL",
    )
}

/// glance-api.conf lines that authenticate with the test Keystone as its `glance` user.
pub fn keystone_conf(auth: &str, cache_secs: u64) -> String {
    let base = auth.trim_end_matches("/v3");
    format!(
        "[paste_deploy]\nflavor = keystone\n[keystone_authtoken]\nwww_authenticate_uri = {base}\n\
         auth_url = {base}\nauth_type = password\nusername = glance\npassword = secret\n\
         project_name = service\nuser_domain_name = Default\nproject_domain_name = Default\n\
         token_cache_time = {cache_secs}\n"
    )
}

/// A project-scoped token of `user` in `project` (password "secret") from the Keystone at
/// `auth`.
pub async fn keystone_token(auth: &str, user: &str, project: &str) -> String {
    let body = serde_json::json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"name": user, "password": "secret", "domain": {"id": "default"}}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}});
    let r = reqwest::Client::new()
        .post(format!("{auth}/auth/tokens"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "login as {user}");
    r.headers()["x-subject-token"].to_str().unwrap().to_string()
}

/// A Keystone of the test's own (`scripts/keystone.sh` on a free port), for tests that stop
/// and start it; stopped (by pid) when dropped.
pub struct PrivateKeystone {
    _dir: tempfile::TempDir,
    kdir: PathBuf,
    port: String,
    env: Vec<(String, String)>,
    /// Its v3 URL.
    pub auth: String,
}

impl PrivateKeystone {
    const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/keystone.sh");

    /// `env`: settings for `scripts/keystone.sh` (e.g. `KEYSTONE_TOKEN_EXPIRATION`).
    pub fn start(env: &[(&str, &str)]) -> PrivateKeystone {
        let dir = tempfile::tempdir().unwrap();
        let mut k = PrivateKeystone {
            kdir: dir.path().join("ks"),
            _dir: dir,
            port: ha::free_port().to_string(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            auth: String::new(),
        };
        k.auth = k.start_again();
        k
    }

    /// Starts it again after `stop`; its v3 URL.
    pub fn start_again(&self) -> String {
        let mut cmd = Command::new(Self::SCRIPT);
        cmd.arg("start").arg(&self.kdir).arg(&self.port);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        run_ok(&mut cmd)
            .trim()
            .trim_start_matches("OS_AUTH_URL=")
            .to_string()
    }

    pub fn stop(&self) {
        run_ok(Command::new(Self::SCRIPT).arg("stop").arg(&self.kdir));
    }
}

impl Drop for PrivateKeystone {
    fn drop(&mut self) {
        let _ = Command::new(Self::SCRIPT)
            .arg("stop")
            .arg(&self.kdir)
            .status();
    }
}

/// The names in `dir`, sorted (none if it does not exist).
pub fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn mysql_url() -> Option<String> {
    require(
        "MariaDB",
        std::env::var("GLANCE_TEST_MYSQL_URL")
            .ok()
            .filter(|s| !s.is_empty()),
        "run scripts/test, or start one with `scripts/mariadb.sh start DIR PORT` and set GLANCE_TEST_MYSQL_URL",
    )
}

/// The test Ceph cluster's conf file (`scripts/ceph.sh`).
pub fn ceph_conf() -> Option<String> {
    require(
        "a Ceph cluster",
        std::env::var("CEPH_CONF")
            .ok()
            .filter(|c| std::path::Path::new(c).exists()),
        "run scripts/test, or `scripts/ceph.sh start DIR` and set CEPH_CONF",
    )
}

pub fn venv() -> Option<PathBuf> {
    let dir = std::env::var("GLANCE_TEST_VENV")
        .ok()
        .map(PathBuf::from)
        .or_else(|| {
            let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".test-env/venv");
            d.exists().then_some(d)
        })
        .filter(|d| d.join("bin/openstack").exists());
    require(
        "the OpenStack clients virtualenv",
        dir.map(|d| d.display().to_string()),
        "run scripts/install-deps (creates .test-env/venv) or set GLANCE_TEST_VENV",
    )
    .map(PathBuf::from)
}

/// The reference Glance's virtualenv (scripts/test installs it): the parity tests start it,
/// the metadef tests load the definition files its package ships.
pub fn glance_venv() -> Option<PathBuf> {
    let dir = std::env::var("GLANCE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".test-env/glance/venv")
        });
    require(
        "the reference Glance",
        dir.join("bin/uwsgi")
            .exists()
            .then(|| dir.display().to_string()),
        "run scripts/test, or `scripts/glance.sh install` once",
    )
    .map(PathBuf::from)
}

/// A MariaDB database of its own for a test (the reference Glance's, say), dropped with it.
pub struct TestDatabase {
    admin: String,
    pub name: String,
}

impl TestDatabase {
    pub async fn create(admin: &str) -> TestDatabase {
        TestDatabase {
            admin: admin.to_string(),
            name: create_database(admin).await,
        }
    }

    /// Its URL as Glance's (and glance-rs's) `[database] connection` takes it.
    pub fn connection(&self) -> String {
        connection_url(&self.admin, &self.name)
    }
}

/// A new, empty database at the MariaDB `admin` names; its name.
async fn create_database(admin: &str) -> String {
    let name = format!("glance_t_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::MySqlPool::connect(admin)
        .await
        .expect("connect MariaDB");
    sqlx::query(&format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"))
        .execute(&pool)
        .await
        .expect("create database");
    pool.close().await;
    name
}

/// Database `name` at `admin` as Glance's (and glance-rs's) `[database] connection` takes it.
fn connection_url(admin: &str, name: &str) -> String {
    let base = admin.trim_start_matches("mysql://").trim_end_matches('/');
    format!("mysql+pymysql://{base}/{name}?charset=utf8")
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        drop_database(self.admin.clone(), self.name.clone());
    }
}

/// Drops database `name` of the MariaDB at `admin`, on a private runtime: Drop cannot await.
fn drop_database(admin: String, name: String) {
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(async {
                if let Ok(pool) = sqlx::MySqlPool::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                        .execute(&pool)
                        .await;
                    pool.close().await;
                }
            });
        }
    })
    .join();
}

pub struct Server {
    pub url: String,
    pub port: u16,
    pub backend: Backend,
    pub db_url: String,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    child: Child,
    mysql: Option<(String, String)>, // (admin url, database name)
    /// `[glance_store] filesystem_store_datadir` when the configuration sets it.
    store_dir: Option<PathBuf>,
}

/// The last `filesystem_store_datadir` of the `[glance_store]` section of `conf`.
fn configured_store_dir(conf: &str) -> Option<PathBuf> {
    let mut section = "";
    let mut found = None;
    for line in conf.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name;
        } else if section == "glance_store"
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == "filesystem_store_datadir"
        {
            found = Some(PathBuf::from(v.trim()));
        }
    }
    found
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_glance-rs")
}

impl Server {
    pub async fn start(backend: Backend) -> Option<Server> {
        Self::start_with(backend, "").await
    }

    /// Starts a server; `extra` is a second config file (later files win), e.g.
    /// "[DEFAULT]\nimage_tag_quota = 2\n".
    pub async fn start_with(backend: Backend, extra: &str) -> Option<Server> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db_url, mysql) = match backend {
            Backend::Sqlite => (
                format!("sqlite:///{}", dir.path().join("glance.sqlite").display()),
                None,
            ),
            Backend::MySql => Self::new_database(&mysql_url()?).await,
        };
        Some(Self::start_on(backend, dir, db_url, mysql, extra).await)
    }

    /// Starts a server on a new database of the MariaDB (or Galera cluster) at `admin`.
    pub async fn start_on_mysql(admin: &str, extra: &str) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db_url, mysql) = Self::new_database(admin).await;
        Self::start_on(Backend::MySql, dir, db_url, mysql, extra).await
    }

    /// A new database at `admin`: glance-rs's URL for it, and what drops it at the end.
    async fn new_database(admin: &str) -> (String, Option<(String, String)>) {
        let name = create_database(admin).await;
        (
            connection_url(admin, &name),
            Some((admin.to_string(), name)),
        )
    }

    async fn start_on(
        backend: Backend,
        dir: tempfile::TempDir,
        db_url: String,
        mysql: Option<(String, String)>,
        extra: &str,
    ) -> Server {
        let conf = dir.path().join("glance-api.conf");
        // The default store directory, unless the test configures its own.
        let store = if extra.contains("filesystem_store_datadir") {
            String::new()
        } else {
            format!(
                "[glance_store]\nfilesystem_store_datadir = {}\n",
                dir.path().join("images").display()
            )
        };
        std::fs::write(
            &conf,
            format!(
                "[DEFAULT]\nbind_host = 127.0.0.1\nbind_port = 0\n\n[database]\nconnection = {db_url}\n\n{store}"
            ),
        )
        .unwrap();
        let extra_conf = dir.path().join("extra.conf");
        std::fs::write(&extra_conf, extra).unwrap();
        if backend == Backend::MySql {
            run_ok(Command::new(bin()).args([
                "--config-file",
                conf.to_str().unwrap(),
                "db",
                "sync",
            ]));
        }
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut child = Command::new(bin())
            .args([
                "--config-file",
                conf.to_str().unwrap(),
                "--config-file",
                extra_conf.to_str().unwrap(),
                "serve",
            ])
            .env("RUST_LOG", "info,sqlx=warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start glance-rs");
        let stdout = child.stdout.take().unwrap();
        // Killed on drop until it is handed to the Server: a panic in between leaks nothing.
        let mut child = ChildGuard(Some(child));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                drop(child);
                panic!(
                    "glance-rs did not start: {}",
                    std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
                );
            }
        };
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        Server {
            url: format!("http://127.0.0.1:{port}"),
            port,
            backend,
            db_url,
            dir,
            // No pooled connections: a connection the server closed after refusing an upload
            // early (413 before reading the body) must not be reused by the next request.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            child: child.0.take().expect("child present"),
            mysql,
            store_dir: configured_store_dir(extra),
        }
    }

    /// A second API node on the same database and store directory (scale-out).
    pub async fn start_peer(&self) -> Server {
        self.start_peer_with("").await
    }

    /// A second API node with `extra` configuration too (as its first node's).
    pub async fn start_peer_with(&self, extra: &str) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let extra = format!(
            "{extra}\n[database]\nconnection = {}\n[glance_store]\nfilesystem_store_datadir = {}\n",
            self.db_url,
            self.images_dir().display()
        );
        // The peer shares the database, so it must not drop it when it stops.
        Self::start_on(self.backend, dir, self.db_url.clone(), None, &extra).await
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The file store's directory: `[glance_store] filesystem_store_datadir` as configured, or
    /// the default under the server's directory.
    pub fn images_dir(&self) -> PathBuf {
        self.store_dir
            .clone()
            .unwrap_or_else(|| self.dir.path().join("images"))
    }

    /// Files in the store directory (image data and any temporary files).
    pub fn store_files(&self) -> Vec<String> {
        files_in(&self.images_dir())
    }

    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{}", self.url, path))
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.req(Method::GET, path)
    }

    /// GET `path` as admin and parse the JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path).send().await.unwrap().json().await.unwrap()
    }

    /// GET `path` as admin: the body as sent (bytes matter, not only the JSON).
    pub async fn get_text(&self, path: &str) -> String {
        self.get(path).send().await.unwrap().text().await.unwrap()
    }

    /// As a project (member role unless `roles` says otherwise).
    pub fn as_project(rb: RequestBuilder, project: &str, roles: &str) -> RequestBuilder {
        rb.header("X-Project-Id", project).header("X-Roles", roles)
    }

    pub async fn create(&self, body: Value) -> Value {
        let r = self
            .req(Method::POST, "/v2/images")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            201,
            "create failed: {}",
            r.text().await.unwrap()
        );
        r.json().await.unwrap()
    }

    /// Creates a raw/bare image named `name` and returns its id.
    pub async fn create_raw(&self, name: &str) -> String {
        let v = self
            .create(
                serde_json::json!({"name": name, "disk_format": "raw", "container_format": "bare"}),
            )
            .await;
        v["id"].as_str().unwrap().to_string()
    }

    pub async fn create_as(&self, project: &str, body: Value) -> Value {
        let r = Self::as_project(self.req(Method::POST, "/v2/images"), project, "member")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            201,
            "create failed: {}",
            r.text().await.unwrap()
        );
        r.json().await.unwrap()
    }

    pub async fn show(&self, id: &str) -> Value {
        let r = self.get(&format!("/v2/images/{id}")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// The image once its `status` is `status` and it has an `os_hash_value` (when `active`):
    /// a location added with the Locations API is recorded and hashed by a background task.
    pub async fn settled(&self, id: &str, status: &str) -> Value {
        let t0 = std::time::Instant::now();
        loop {
            let v = self.show(id).await;
            if v["status"] == status && (status != "active" || v["os_hash_value"].is_string()) {
                return v;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "image {id} not {status}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn upload(&self, id: &str, data: Vec<u8>) -> reqwest::Response {
        self.req(Method::PUT, &format!("/v2/images/{id}/file"))
            .header("Content-Type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .unwrap()
    }

    /// The image's data as an admin downloads it; the download must answer 200 (an image
    /// without data answers 204, whose empty body is not its data).
    pub async fn download(&self, id: &str) -> Vec<u8> {
        let r = self
            .get(&format!("/v2/images/{id}/file"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "download of {id}");
        r.bytes().await.unwrap().to_vec()
    }

    /// DELETE of the image as an admin; the status code.
    pub async fn delete(&self, id: &str) -> u16 {
        let r = self.req(reqwest::Method::DELETE, &format!("/v2/images/{id}"));
        r.send().await.unwrap().status().as_u16()
    }

    /// DELETE asking for a JSON error: the status and the body.
    pub async fn delete_answer(&self, id: &str) -> (u16, String) {
        let r = self
            .req(reqwest::Method::DELETE, &format!("/v2/images/{id}"))
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub async fn patch(&self, id: &str, ops: Value) -> reqwest::Response {
        self.req(Method::PATCH, &format!("/v2/images/{id}"))
            .header(
                "Content-Type",
                "application/openstack-images-v2.1-json-patch",
            )
            .json(&ops)
            .send()
            .await
            .unwrap()
    }

    /// Rows in each image table, to prove a refused request changed nothing.
    pub async fn counts(&self) -> Vec<(String, i64)> {
        let tables = [
            "images",
            "image_properties",
            "image_tags",
            "image_locations",
            "image_members",
            "glance_rs_work",
            "metadef_namespaces",
            "metadef_objects",
            "metadef_properties",
            "metadef_tags",
            "metadef_namespace_resource_types",
        ];
        let mut out = Vec::new();
        match self.backend {
            Backend::Sqlite => {
                let path = self.dir.path().join("glance.sqlite");
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                for t in tables {
                    let n: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {t}"))
                        .fetch_one(&pool)
                        .await
                        .unwrap()
                        .get("n");
                    out.push((t.to_string(), n));
                }
                pool.close().await;
            }
            Backend::MySql => {
                let (admin, name) = self.mysql.clone().unwrap();
                let pool =
                    sqlx::MySqlPool::connect(&format!("{}/{name}", admin.trim_end_matches('/')))
                        .await
                        .unwrap();
                for t in tables {
                    let n: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {t}"))
                        .fetch_one(&pool)
                        .await
                        .unwrap()
                        .get("n");
                    out.push((t.to_string(), n));
                }
                pool.close().await;
            }
        }
        out
    }

    /// Runs the real `openstack` CLI against this server without authentication.
    pub fn openstack(&self, venv: &std::path::Path, args: &[&str]) -> Output {
        Command::new(venv.join("bin/openstack"))
            .args(["--os-auth-type", "none", "--os-endpoint", &self.url])
            .args(args)
            .stdin(Stdio::null())
            .current_dir(self.dir.path())
            .output()
            .expect("run openstack")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(&mut self) {
        terminate(&mut self.child);
    }

    /// SIGKILL: the node dies at once, as in a crash or an OOM kill; reaped.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the node again with the same configuration (after `kill9` or `stop`); with a fixed
    /// `bind_port` in its configuration it comes back as the same node.
    pub async fn restart(&mut self) {
        let (child, port) = self.spawn_again().await;
        self.child = child;
        self.port = port;
        self.url = format!("http://127.0.0.1:{port}");
    }

    /// Another process with this node's configuration (its log appended to this node's),
    /// once it listens: the process and its port. The caller stops it.
    pub async fn spawn_again(&self) -> (Child, u16) {
        let conf = self.dir.path().join("glance-api.conf");
        let extra = self.dir.path().join("extra.conf");
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let mut child = Command::new(bin())
            .args(["--config-file", conf.to_str().unwrap()])
            .args(["--config-file", extra.to_str().unwrap(), "serve"])
            .env("RUST_LOG", "info,sqlx=warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start glance-rs again");
        let stdout = child.stdout.take().unwrap();
        // Read to the end, as at the first start: the pipe stays open for the server.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let mut child = ChildGuard(Some(child));
        let addr = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap()
            .unwrap_or_else(|_| panic!("glance-rs did not start again: {}", self.log()));
        let port = addr.rsplit(':').next().unwrap().parse().unwrap();
        (child.0.take().expect("child present"), port)
    }

    /// Whether the server process has exited (and been reaped) within `d`.
    pub fn exited_within(&mut self, d: Duration) -> bool {
        exited_within(&mut self.child, d)
    }
}

/// Runs `cmd` to completion; fails the test with its stderr unless it succeeds. Its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// SIGTERM to a child we started (by pid, nothing else), SIGKILL if it has not exited within
/// 5 s; reaped either way.
pub fn terminate(child: &mut Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    if !exited_within(child, Duration::from_secs(5)) {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Whether `child` has exited (and been reaped) within `d`.
fn exited_within(child: &mut Child, d: Duration) -> bool {
    let deadline = std::time::Instant::now() + d;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Kills and reaps a child process when dropped.
pub struct ChildGuard(pub Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        // A panic in the server is a bug even where the test accepted what the client saw (a
        // reset connection, a 500): one hid a full store's 413 that way.
        if !std::thread::panicking()
            && let Some(line) = self.log().lines().find(|l| l.contains("panicked"))
        {
            panic!("the server panicked during this test: {line}");
        }
        if let Some((admin, name)) = self.mysql.take() {
            drop_database(admin, name);
        }
    }
}

/// Declares each `async fn name(Backend)` as two tests, one per database.
#[macro_export]
macro_rules! both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::MySql).await
                }
            )*
        }
    };
}

/// Sends a request and returns its status code.
pub async fn status(rb: RequestBuilder) -> u16 {
    rb.send().await.unwrap().status().as_u16()
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    // xorshift: fast, deterministic enough, not compressible.
    let mut x: u64 = 0x9E3779B97F4A7C15 ^ n as u64;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

/// A private RabbitMQ broker (scripts/rabbitmq.sh, Debian's rabbitmq-server), stopped when
/// dropped.
pub struct Rabbit {
    dir: tempfile::TempDir,
    /// `rabbit://guest:guest@127.0.0.1:PORT//`
    pub url: String,
    pub port: u16,
    /// With a TLS listener: its `rabbit://` URL and the CA file its certificate comes from.
    pub tls: Option<(String, String)>,
}

/// The broker's Erlang distribution port, this far above its AMQP port (scripts/rabbitmq.sh).
const DIST_OFFSET: u16 = 4000;

impl Rabbit {
    pub fn start() -> Option<Rabbit> {
        Self::start_on(Self::free_port())
    }

    /// A port for a broker (12000-15899) whose distribution port (+4000) is free too: both
    /// below the Galera tests' ports (20000 up) and the kernel's ephemeral range (32768 up), as
    /// a broker whose distribution port is taken by the time it starts dies at once.
    pub fn free_port() -> u16 {
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        let seed = std::process::id() as u16;
        (0..2000u16)
            .map(|i| 12000 + (seed.wrapping_add(i.wrapping_mul(37)) % 3900))
            .find(|p| free(*p) && free(*p + DIST_OFFSET))
            .expect("a free port for RabbitMQ")
    }

    pub fn start_on(port: u16) -> Option<Rabbit> {
        Self::start_with(port, None)
    }

    /// A broker with a TLS listener too (on the port after its own).
    pub fn start_tls() -> Option<Rabbit> {
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        let port = (0..50)
            .map(|i| Self::free_port().wrapping_add(i * 2))
            .find(|p| free(*p) && free(*p + 1) && free(*p + DIST_OFFSET))
            .expect("two free ports for RabbitMQ");
        Self::start_with(port, Some(port + 1))
    }

    fn start_with(port: u16, tls_port: Option<u16>) -> Option<Rabbit> {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec![
            "start".to_string(),
            dir.path().to_str().unwrap().to_string(),
            port.to_string(),
        ];
        args.extend(tls_port.map(|p| p.to_string()));
        let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rabbitmq.sh"))
            .args(&args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(key).map(str::to_string))
        };
        let tls = line("TLS_URL=").zip(line("TLS_CA="));
        let url = line("TRANSPORT_URL=").filter(|_| tls_port.is_none() || tls.is_some());
        let url = require(
            "RabbitMQ",
            url.filter(|_| out.status.success()),
            &format!(
                "scripts/rabbitmq.sh installs and starts Debian's rabbitmq-server: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        )?;
        Some(Rabbit {
            dir,
            url,
            port,
            tls,
        })
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rabbitmq.sh"))
            .args(["stop", self.dir.path().to_str().unwrap()])
            .status();
    }
}
