//! glance-rs against the real Glance: `scripts/compare-responses.py` sends the same requests
//! (errors of every kind, edge cases of create, PATCH, list filters, the data path, import) to
//! Glance 33 from PyPI under uWSGI (`scripts/glance.sh`) and to the real binary, and fails on
//! any answer that differs other than as its KNOWN list says; once with one file store, once
//! with two file backends on both sides (multi-store), once with both validating tokens with
//! the test Keystone.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Backend, Server, auth_url, glance_venv, keystone_conf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A running reference Glance, stopped (by the pid in its directory) when dropped.
struct Glance {
    dir: tempfile::TempDir,
    venv: PathBuf,
    url: String,
}

impl Glance {
    /// `auth`: the Keystone to validate tokens with, else none (noauth); `conf` appended to
    /// its glance-api.conf, `policy` its policy file.
    fn start_configured(
        venv: PathBuf,
        multi: bool,
        auth: Option<&str>,
        conf: &str,
        policy: &str,
    ) -> Glance {
        Self::start_with_workers(venv, multi, auth, conf, policy, false)
    }

    /// As `start_configured`, with one uWSGI worker when `one_worker`: its background tasks
    /// then never contend with another worker for the SQLite database.
    fn start_with_workers(
        venv: PathBuf,
        multi: bool,
        auth: Option<&str>,
        conf: &str,
        policy: &str,
        one_worker: bool,
    ) -> Glance {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = Command::new(Path::new(ROOT).join("scripts/glance.sh"))
            .args(["start", dir.path().to_str().unwrap(), &port.to_string()])
            .env("GLANCE_VENV", &venv)
            .env("GLANCE_STORES", if multi { "multi" } else { "single" })
            .env("GLANCE_AUTH_URL", auth.unwrap_or(""))
            .env("GLANCE_EXTRA_CONF", conf)
            .env("GLANCE_POLICY_YAML", policy)
            .env("GLANCE_PROCESSES", if one_worker { "1" } else { "2" })
            .output()
            .unwrap();
        let glance = Glance {
            dir,
            venv,
            url: format!("http://127.0.0.1:{port}"),
        };
        assert!(
            out.status.success(),
            "glance.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        glance
    }
}

impl Drop for Glance {
    fn drop(&mut self) {
        let _ = Command::new(Path::new(ROOT).join("scripts/glance.sh"))
            .args(["stop", self.dir.path().to_str().unwrap()])
            .env("GLANCE_VENV", &self.venv)
            .status();
    }
}

/// The reference Glance's database for a comparison with glance-rs on `b`: on MariaDB, a
/// database of its own there (its `[database]` lines, and the guard that drops it), so that
/// both answer from the same kind of database (orders of unsorted queries included); on
/// SQLite, its own file (glance.sh's default).
async fn reference_database(b: Backend) -> (String, Option<common::TestDatabase>) {
    match b {
        Backend::Sqlite => (String::new(), None),
        Backend::MySql => {
            let Some(admin) = common::mysql_url() else {
                return (String::new(), None);
            };
            let db = common::TestDatabase::create(&admin).await;
            (
                format!("[database]\nconnection = {}\n", db.connection()),
                Some(db),
            )
        }
    }
}

/// Runs compare-responses.py against a fresh reference Glance and `s`: with `--multi` both
/// have two stores, with `--keystone` both validate tokens with the Keystone at `auth`.
async fn compare(venv: PathBuf, s: &Server, multi: bool, auth: Option<&str>) {
    let (db, _db) = reference_database(s.backend).await;
    let glance = Glance::start_configured(venv, multi, auth, &db, "");
    let mut args = Vec::new();
    if multi {
        args.push("--multi");
    }
    if let Some(a) = auth {
        args.extend(["--keystone", a]);
    }
    run_compare(&glance, s, &args);
}

/// Panics with the comparison's report unless every answer matched.
fn run_compare(glance: &Glance, s: &Server, args: &[&str]) {
    let mut cmd = Command::new("python3");
    cmd.arg(Path::new(ROOT).join("scripts/compare-responses.py"));
    let out = cmd.args(args).args([&glance.url, &s.url]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let last = stdout.lines().last().unwrap_or("");
    if out.status.success() && last.starts_with("0 of ") {
        return;
    }
    panic!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}

async fn answers_match_glance(b: Backend) {
    let Some(venv) = glance_venv() else { return };
    let Some(s) = Server::start(b).await else {
        return;
    };
    compare(venv, &s, false, None).await;
}

/// Both sides with the backends `fast` (default, described) and `slow`.
async fn multi_store_answers_match_glance(b: Backend) {
    let Some(venv) = glance_venv() else { return };
    let stores = tempfile::tempdir().unwrap();
    let dir = |name: &str| stores.path().join(name).display().to_string();
    let extra = format!(
        "[DEFAULT]\nenabled_backends = fast:file, slow:file\n[glance_store]\ndefault_backend = fast\n\
         [fast]\nfilesystem_store_datadir = {}\nstore_description = Fast disks\n\
         [slow]\nfilesystem_store_datadir = {}\n",
        dir("fast"),
        dir("slow")
    );
    let Some(s) = Server::start_with(b, &extra).await else {
        return;
    };
    compare(venv, &s, true, None).await;
}

/// Both validating tokens with the test Keystone under default policies: three users create,
/// share, refuse and delete (compare-responses.py's KEYSTONE_STEPS).
async fn keystone_answers_match_glance(b: Backend) {
    let Some(venv) = glance_venv() else { return };
    let Some(auth) = auth_url() else { return };
    // As the reference: one file store, no http store; import tasks may fetch from the
    // harness's server on loopback.
    let filter = "[import_filtering_opts]\nallowed_hosts = [127.0.0.1]\nallowed_ports = []\n";
    let conf = keystone_conf(&auth, 300) + "[glance_store]\nstores = file\n" + filter;
    let Some(s) = Server::start_with(b, &conf).await else {
        return;
    };
    let (db, _db) = reference_database(b).await;
    let glance = Glance::start_configured(venv, false, Some(&auth), &format!("{db}{filter}"), "");
    run_compare(&glance, &s, &["--keystone", &auth]);
}

/// The Locations API (v2.17) as Glance's service role and its image owners meet it: both with
/// the file and http stores, fetching from the harness's server on loopback
/// (compare-responses.py's LOCATION_STEPS): hashed, verified, refused, failed in the task.
async fn locations_answer_as_glance(b: Backend) {
    let Some(venv) = glance_venv() else { return };
    let Some(auth) = auth_url() else { return };
    let filter = "[import_filtering_opts]\nallowed_hosts = [127.0.0.1]\nallowed_ports = []\n";
    let stores = "[glance_store]\nstores = file, http\n";
    let conf = keystone_conf(&auth, 300) + stores + filter;
    let Some(s) = Server::start_with(b, &conf).await else {
        return;
    };
    let extra = filter.to_string() + stores;
    let args = ["--keystone", &auth, "--locations"];
    // compare-responses.py waits for the reference's location tasks through GET
    // /v2/tasks/{id}: Glance's GET /v2/images/{id}/tasks writes, and on SQLite that write made
    // the task's own writes fail (it stayed pending or failed after hashing) under load.
    let (db, _db) = reference_database(b).await;
    let glance =
        Glance::start_with_workers(venv.clone(), false, Some(&auth), &(db + &extra), "", true);
    run_compare(&glance, &s, &args);
}

/// The metadata definition catalog as the admin, a reader of p1 and a user of p2 meet it
/// (compare-responses.py's METADEF_STEPS): every route, its refusals and its schemas.
async fn metadefs_answer_as_glance(b: Backend) {
    let Some(venv) = glance_venv() else { return };
    let Some(auth) = auth_url() else { return };
    let Some(s) = Server::start_with(b, &keystone_conf(&auth, 300)).await else {
        return;
    };
    let (db, _db) = reference_database(b).await;
    let glance = Glance::start_configured(venv, false, Some(&auth), &db, "");
    run_compare(&glance, &s, &["--keystone", &auth, "--metadefs"]);
}

/// The definition files Glance ships, loaded by `glance-manage db load_metadefs` into the real
/// Glance and by `glance-rs db load_metadefs` into glance-rs: the same catalog, as readers and
/// admins list and show it (compare-responses.py's CATALOG_STEPS).
async fn loaded_catalog_answers_as_glance(b: Backend) {
    let Some(venv) = glance_venv() else { return };
    let Some(auth) = auth_url() else { return };
    let Some(s) = Server::start_with(b, &keystone_conf(&auth, 300)).await else {
        return;
    };
    let files = venv.join("etc/glance/metadefs");
    let (db, _db) = reference_database(b).await;
    let glance = Glance::start_configured(venv.clone(), false, Some(&auth), &db, "");
    common::run_ok(
        Command::new(venv.join("bin/glance-manage"))
            .arg("--config-file")
            .arg(glance.dir.path().join("etc/glance-api.conf"))
            .args(["db", "load_metadefs"])
            .arg(&files),
    );
    let out = common::run_ok(
        Command::new(common::bin())
            .arg("--config-file")
            .arg(s.dir.path().join("glance-api.conf"))
            .arg("--config-file")
            .arg(s.dir.path().join("extra.conf"))
            .args(["db", "load_metadefs"])
            .arg(&files),
    );
    assert!(out.contains("32 namespaces loaded"), "{out}");
    run_compare(&glance, &s, &["--keystone", &auth, "--catalog"]);
}

/// The property protections compare-responses.py's PROTECTION_STEPS expect, in the `roles`
/// format, or in the `policies` format with the same roles behind the policy rules.
const PROTECTIONS_ROLES: &str = "[^x_owner_.*]\ncreate = admin,member\nread = admin,member\n\
     update = admin,member\ndelete = admin,member\n\n[^x_ro_.*]\ncreate = admin\n\
     read = admin,member,reader\nupdate = admin\ndelete = admin\n\n[^x_secret$]\n\
     create = admin\nread = admin\nupdate = admin\ndelete = admin\n\n[.*]\n\
     create = admin,member\nread = admin,member,reader\nupdate = admin,member\n\
     delete = admin,member\n";
const PROTECTIONS_POLICIES: &str = "[^x_owner_.*]\ncreate = p_members\nread = p_members\n\
     update = p_members\ndelete = p_members\n\n[^x_ro_.*]\ncreate = p_admins\n\
     read = p_readers\nupdate = p_admins\ndelete = p_admins\n\n[^x_secret$]\n\
     create = p_admins\nread = p_admins\nupdate = p_admins\ndelete = p_admins\n\n[.*]\n\
     create = p_members\nread = p_readers\nupdate = p_members\ndelete = p_members\n";
const PROTECTION_POLICY: &str = "p_admins: role:admin\np_members: role:admin or role:member\n\
     p_readers: role:admin or role:member or role:reader\n";

/// Both under the same property protection file (each format), validating tokens with the
/// test Keystone: who may create, read, update and delete which properties.
async fn protections_answer_as_glance(b: Backend) {
    let Some(venv) = glance_venv() else { return };
    let Some(auth) = auth_url() else { return };
    for (format, rules, policy) in [
        ("roles", PROTECTIONS_ROLES, ""),
        ("policies", PROTECTIONS_POLICIES, PROTECTION_POLICY),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("property-protections.conf");
        std::fs::write(&file, rules).unwrap();
        let extra = format!(
            "[DEFAULT]\nproperty_protection_file = {}\nproperty_protection_rule_format = {format}\n",
            file.display()
        );
        let (db, _db) = reference_database(b).await;
        let glance =
            Glance::start_configured(venv.clone(), false, Some(&auth), &(db + &extra), policy);
        let policy_file = dir.path().join("policy.yaml");
        std::fs::write(&policy_file, policy).unwrap();
        let conf = format!(
            "{}{extra}[oslo_policy]\npolicy_file = {}\n",
            keystone_conf(&auth, 300),
            policy_file.display()
        );
        let Some(s) = Server::start_with(b, &conf).await else {
            return;
        };
        run_compare(&glance, &s, &["--keystone", &auth, "--protections"]);
    }
}

/// `openstack --os-system-scope all image ...` (a cloud admin asking for system scope), as the
/// real client shows it: refused by glance-rs as by Glance (exit status and message).
async fn system_scope_is_refused_as_glance_refuses_it(b: Backend) {
    let Some(glance_env) = glance_venv() else {
        return;
    };
    let Some(auth) = auth_url() else { return };
    let Some(clients) = common::venv() else {
        return;
    };
    let (db, _db) = reference_database(b).await;
    let glance = Glance::start_configured(glance_env, false, Some(&auth), &db, "");
    let Some(s) = Server::start_with(b, &keystone_conf(&auth, 300)).await else {
        return;
    };
    // One cloud per server: the admin, with its image endpoint there.
    let clouds = s.dir.path().join("clouds.yaml");
    let mut y = String::from("clouds:\n");
    for (name, url) in [("ours", &s.url), ("glance", &glance.url)] {
        y.push_str(&format!(
            "  {name}:\n    auth:\n      auth_url: {auth}\n      username: admin\n      \
             password: secret\n      user_domain_name: Default\n    region_name: RegionOne\n    \
             image_endpoint_override: {url}\n"
        ));
    }
    std::fs::write(&clouds, y).unwrap();
    let run = |cloud: &str, url: &str, args: &[&str]| {
        let out = Command::new(clients.join("bin/openstack"))
            .env("OS_CLIENT_CONFIG_FILE", &clouds)
            .args(["--os-cloud", cloud, "--os-system-scope", "all"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).replace(url, "URL");
        (out.status.code(), err.trim().to_string())
    };
    for (args, refusal) in [
        (&["image", "list"][..], "403"),
        (
            &["image", "show", "5f8b0a4e-0000-4000-8000-000000000000"],
            "403",
        ),
        (&["image", "create", "--disk-format", "raw", "x"], "403"),
    ] {
        let ours = run("ours", &s.url, args);
        let theirs = run("glance", &glance.url, args);
        assert!(
            ours.0 != Some(0) && ours.1.contains(refusal),
            "{args:?}: {ours:?}"
        );
        assert_eq!(ours, theirs, "{args:?}");
    }
}

both_databases!(
    system_scope_is_refused_as_glance_refuses_it,
    answers_match_glance,
    multi_store_answers_match_glance,
    keystone_answers_match_glance,
    locations_answer_as_glance,
    metadefs_answer_as_glance,
    loaded_catalog_answers_as_glance,
    protections_answer_as_glance
);

/// Glance's columns (table, column, type, nullability, default) in database `name`, sorted.
async fn glance_columns(
    pool: &sqlx::MySqlPool,
    name: &str,
) -> Vec<(String, String, String, String, Option<String>)> {
    sqlx::query_as(
        "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT \
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? \
         AND TABLE_NAME NOT LIKE 'glance\\_rs\\_%' AND TABLE_NAME <> '_sqlx_migrations' \
         ORDER BY TABLE_NAME, COLUMN_NAME",
    )
    .bind(name)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The migration path: a MariaDB database made by Glance 33's own `glance-manage db_sync` and
/// filled by the real Glance (images of every visibility, data, members, a deactivated, a
/// deleted and a hidden image, a task's import, a metadef namespace) is taken over by
/// glance-rs's `db sync` without a column of Glance's changing, then served by both at once
/// (one database, one file store): glance-rs answers what Glance wrote as Glance does, then
/// writes to it (creates, uploads, members, patches, tags, reactivation, deletes, metadefs),
/// and Glance answers that as glance-rs does (compare-responses.py --shared); Glance's
/// `glance-manage db check` still finds its schema current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_glance_database_is_served_both_ways() {
    // One file store: glance-rs's is Glance's directory.
    shared_database("", |glance_dir| {
        format!(
            "[glance_store]\nstores = file\nfilesystem_store_datadir = {}\n",
            glance_dir.join("images").display()
        )
    })
    .await;
}

/// As above with Glance's RBD store (its own driver through Ceph's Python bindings) and
/// glance-rs's on the same pool: each reads the RBD images the other wrote (their
/// `rbd://fsid/pool/id/snap` locations, `direct_url` shown), as Nova and Cinder would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_glance_database_with_rbd_images_is_served_both_ways() {
    let Some(conf) = common::ceph_conf() else {
        return;
    };
    let rbd = format!(
        "[DEFAULT]\nshow_image_direct_url = true\n[glance_store]\nstores = rbd\n\
         default_store = rbd\nrbd_store_pool = images\nrbd_store_user = admin\n\
         rbd_store_ceph_conf = {conf}\n"
    );
    shared_database(&rbd, |_| rbd.clone()).await;
}

/// A database made and filled by Glance (with `glance_stores`), taken over by glance-rs's db
/// sync, served by both at once (glance-rs with `rs_stores(Glance's directory)`).
async fn shared_database(glance_stores: &str, rs_stores: impl Fn(&Path) -> String) {
    let Some(venv) = glance_venv() else { return };
    let Some(auth) = auth_url() else { return };
    let Some(admin) = common::mysql_url() else {
        return;
    };
    let db = common::TestDatabase::create(&admin).await;
    let pool = sqlx::MySqlPool::connect(&admin).await.unwrap();
    let filter = "[import_filtering_opts]\nallowed_hosts = [127.0.0.1]\nallowed_ports = []\n";
    let database = format!("[database]\nconnection = {}\n", db.connection());
    let dir = tempfile::tempdir().unwrap();
    let glance = Glance::start_configured(
        venv.clone(),
        false,
        Some(&auth),
        &format!("{filter}{database}{glance_stores}"),
        "",
    );
    let before = glance_columns(&pool, &db.name).await;
    assert!(
        before.iter().any(|c| c.0 == "images"),
        "Glance made its schema"
    );

    let conf = dir.path().join("glance-api.conf");
    std::fs::write(&conf, &database).unwrap();
    common::run_ok(
        Command::new(common::bin())
            .arg("--config-file")
            .arg(&conf)
            .args(["db", "sync"]),
    );
    assert_eq!(
        glance_columns(&pool, &db.name).await,
        before,
        "db sync changed Glance's tables"
    );
    let extra = format!(
        "{}{}{filter}{database}",
        keystone_conf(&auth, 300),
        rs_stores(glance.dir.path())
    );
    let Some(s) = Server::start_with(Backend::Sqlite, &extra).await else {
        return;
    };
    run_compare(&glance, &s, &["--keystone", &auth, "--shared"]);
    let check = Command::new(venv.join("bin/glance-manage"))
        .arg("--config-file")
        .arg(glance.dir.path().join("etc/glance-api.conf"))
        .args(["db", "check"])
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    drop(s);
    drop(glance);
    pool.close().await;
}

/// Every notification in `queue` of the broker at `port` (waiting up to 10 s for the first
/// and 2 s for each next), as (event type, payload) from oslo.messaging's v2 envelope.
async fn drain_notifications(port: u16, queue: &str) -> Vec<(String, serde_json::Value)> {
    use amqprs::channel::BasicGetArguments;
    use amqprs::connection::{Connection, OpenConnectionArguments};
    let conn = Connection::open(&OpenConnectionArguments::new(
        "127.0.0.1",
        port,
        "guest",
        "guest",
    ))
    .await
    .unwrap();
    let ch = conn.open_channel(None).await.unwrap();
    // Declared as the senders declare them (a get from a queue not there yet closes the
    // channel): the exchange, the queue, its binding.
    use amqprs::channel::{ExchangeDeclareArguments, QueueBindArguments, QueueDeclareArguments};
    ch.exchange_declare(ExchangeDeclareArguments::new("glance", "topic"))
        .await
        .unwrap();
    ch.queue_declare(QueueDeclareArguments::new(queue))
        .await
        .unwrap();
    ch.queue_bind(QueueBindArguments::new(queue, "glance", queue))
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let args = BasicGetArguments {
            queue: queue.into(),
            no_ack: true,
        };
        match ch.basic_get(args).await.unwrap() {
            Some((_, _, body)) => {
                let env: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(env["oslo.version"], "2.0", "{env}");
                let msg: serde_json::Value =
                    serde_json::from_str(env["oslo.message"].as_str().unwrap()).unwrap();
                got.push((msg["event_type"].as_str().unwrap().to_string(), msg));
                deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            }
            None => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    let _ = conn.close().await;
    got
}

/// For each event type: its payload's keys (and the envelope's), as a consumer meets them.
fn notification_shapes(
    events: &[(String, serde_json::Value)],
) -> std::collections::BTreeMap<String, (Vec<String>, Vec<String>)> {
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        k.sort();
        k
    };
    events
        .iter()
        .map(|(t, m)| (t.clone(), (keys(m), keys(&m["payload"]))))
        .collect()
}

/// Notifications as Glance's messagingv2 driver sends them: both sides send to one RabbitMQ
/// (each its own topic) while they answer compare-responses.py's NOTIFY_STEPS (an image made,
/// uploaded, downloaded, patched, tagged, shared, deactivated, reactivated, deleted; a task's
/// import; a metadef namespace and each of its parts made, renamed, deleted); a consumer then
/// finds the same event types with the same payload keys from both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_match_glance() {
    let Some(venv) = glance_venv() else { return };
    let Some(auth) = auth_url() else { return };
    let Some(rabbit) = common::Rabbit::start() else {
        return;
    };
    let filter = "[import_filtering_opts]\nallowed_hosts = [127.0.0.1]\nallowed_ports = []\n";
    let notify = |topic: &str| {
        format!(
            "[oslo_messaging_notifications]\ndriver = messagingv2\ntopics = {topic}\n\
             transport_url = {}\n",
            rabbit.url
        )
    };
    let conf = keystone_conf(&auth, 300) + "[glance_store]\nstores = file\n" + filter;
    let Some(s) = Server::start_with(Backend::Sqlite, &(conf + &notify("from_rs"))).await else {
        return;
    };
    let glance = Glance::start_configured(
        venv,
        false,
        Some(&auth),
        &format!("{filter}{}", notify("from_glance")),
        "",
    );
    run_compare(&glance, &s, &["--keystone", &auth, "--notifications"]);
    let theirs = drain_notifications(rabbit.port, "from_glance.info").await;
    let ours = drain_notifications(rabbit.port, "from_rs.info").await;
    let order =
        |e: &[(String, serde_json::Value)]| e.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>();
    eprintln!(
        "glance:    {:?}\nglance-rs: {:?}",
        order(&theirs),
        order(&ours)
    );
    assert!(theirs.len() > 10, "the reference sent {theirs:?}");
    // The catalog's events come one per change, in the order Glance sends them.
    let metadef = |e: &[(String, serde_json::Value)]| {
        order(e)
            .into_iter()
            .filter(|t| t.starts_with("metadef_"))
            .collect::<Vec<_>>()
    };
    assert_eq!(metadef(&ours), metadef(&theirs), "metadef events");
    let (a, b) = (notification_shapes(&theirs), notification_shapes(&ours));
    for (t, shape) in &a {
        assert_eq!(
            b.get(t),
            Some(shape),
            "{t}: glance {shape:?}, glance-rs {:?}",
            b.get(t)
        );
    }
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "event types"
    );
}

/// Notifications over TLS as oslo.messaging sends them: `[oslo_messaging_rabbit] ssl` with
/// `ssl_ca_file`, or the same options in the transport_url's query; the broker's name checked
/// when the URL names one broker (its certificate is for `localhost`, so `127.0.0.1` fails) and
/// not with two; a broker whose certificate the system's CAs do not vouch for (`ssl` without
/// `ssl_ca_file`) gets nothing. The log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_over_tls() {
    let Some(rabbit) = common::Rabbit::start_tls() else {
        return;
    };
    let (tls_url, ca) = rabbit.tls.clone().unwrap();
    let section = format!(
        "[oslo_messaging_notifications]\ndriver = messagingv2\ntopics = tls\n\
         transport_url = {tls_url}\n[oslo_messaging_rabbit]\nssl = true\nssl_ca_file = {ca}\n"
    );
    let query = format!(
        "[oslo_messaging_notifications]\ndriver = messagingv2\ntopics = tlsq\n\
         transport_url = {tls_url}?ssl=1&ssl_ca_file={ca}\n"
    );
    let untrusted = format!(
        "[oslo_messaging_notifications]\ndriver = messagingv2\ntopics = untrusted\n\
         transport_url = {tls_url}\n[oslo_messaging_rabbit]\nssl = true\n"
    );
    let by_address = tls_url.replace("@localhost:", "@127.0.0.1:");
    let misnamed = format!(
        "[oslo_messaging_notifications]\ndriver = messagingv2\ntopics = misnamed\n\
         transport_url = {by_address}\n[oslo_messaging_rabbit]\nssl = true\nssl_ca_file = {ca}\n"
    );
    // Two brokers (the same one twice): the chain is checked, not the name.
    let hosts = by_address
        .trim_start_matches("rabbit://")
        .trim_end_matches('/');
    let two = format!(
        "[oslo_messaging_notifications]\ndriver = messagingv2\ntopics = two\n\
         transport_url = rabbit://{hosts},{hosts}//\n\
         [oslo_messaging_rabbit]\nssl = true\nssl_ca_file = {ca}\n"
    );
    let mut servers = Vec::new();
    for (conf, name) in [
        (&section, "by-section"),
        (&query, "by-query"),
        (&untrusted, "untrusted"),
        (&misnamed, "misnamed"),
        (&two, "two"),
    ] {
        let Some(s) = Server::start_with(Backend::Sqlite, conf).await else {
            return;
        };
        s.create_raw(name).await;
        servers.push(s);
    }
    for (queue, name) in [
        ("tls.info", "by-section"),
        ("tlsq.info", "by-query"),
        ("two.info", "two"),
    ] {
        let events = drain_notifications(rabbit.port, queue).await;
        let created: Vec<_> = events
            .iter()
            .filter(|(t, _)| t == "image.create")
            .map(|(_, m)| m["payload"]["name"].clone())
            .collect();
        assert_eq!(created, vec![serde_json::json!(name)], "{queue}");
    }
    assert!(
        drain_notifications(rabbit.port, "untrusted.info")
            .await
            .is_empty(),
        "a broker the system's CAs do not vouch for"
    );
    assert!(
        drain_notifications(rabbit.port, "misnamed.info")
            .await
            .is_empty(),
        "one broker by an address its certificate does not name"
    );
    for (i, why) in [(2, "UnknownIssuer"), (3, "not valid for name")] {
        let log = servers[i].log();
        assert!(
            log.contains("broker unreachable") && log.contains(why),
            "{why}: {log}"
        );
    }
}

/// A broker that is away slows no request: they are answered at once, the sender says in the
/// log that it cannot reach the broker and tries again, and once the broker is there the
/// events held meanwhile arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_away_delays_no_request() {
    let port = common::Rabbit::free_port();
    let conf = format!(
        "[oslo_messaging_notifications]\ndriver = messagingv2\ntopics = late\n\
         transport_url = rabbit://guest:guest@127.0.0.1:{port}//\n"
    );
    let Some(s) = Server::start_with(Backend::Sqlite, &conf).await else {
        return;
    };
    for i in 0..20 {
        let t = std::time::Instant::now();
        s.create_raw(&format!("while-away-{i}")).await;
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "create {i} took {:?}",
            t.elapsed()
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(s.log().contains("broker unreachable"), "{}", s.log());
    let Some(rabbit) = common::Rabbit::start_on(port) else {
        return;
    };
    let events = drain_notifications(rabbit.port, "late.info").await;
    let created = events.iter().filter(|(t, _)| t == "image.create").count();
    assert_eq!(
        created,
        20,
        "{:?}",
        events.iter().map(|(t, _)| t).collect::<Vec<_>>()
    );
}

/// `image.send` as Glance sends it: once a download's last byte is given, with the bytes of
/// the part asked for, and never for a download the client abandoned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_send_follows_the_last_byte() {
    let Some(rabbit) = common::Rabbit::start() else {
        return;
    };
    let conf = format!(
        "[oslo_messaging_notifications]\ndriver = messagingv2\ntopics = sends\n\
         transport_url = {}\n",
        rabbit.url
    );
    let Some(s) = Server::start_with(Backend::Sqlite, &conf).await else {
        return;
    };
    let id = s.create_raw("sent").await;
    let size = 64 << 20;
    let data = common::random_bytes(size);
    assert_eq!(s.upload(&id, data.clone()).await.status(), 204);
    // Abandoned after its first bytes: far from the last of 64 MiB.
    let mut r = s
        .get(&format!("/v2/images/{id}/file"))
        .send()
        .await
        .unwrap();
    assert!(!r.chunk().await.unwrap().unwrap().is_empty());
    drop(r);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(s.download(&id).await == data, "the whole image");
    let part = s
        .get(&format!("/v2/images/{id}/file"))
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap().len(), 100);
    let events = drain_notifications(rabbit.port, "sends.info").await;
    let sent: Vec<_> = events
        .iter()
        .filter(|(t, _)| t == "image.send")
        .map(|(_, m)| m["payload"].clone())
        .collect();
    assert_eq!(
        sent.iter()
            .map(|p| p["bytes_sent"].as_u64())
            .collect::<Vec<_>>(),
        vec![Some(size as u64), Some(100)],
        "{sent:?}"
    );
    assert_eq!(sent[0]["image_id"], id.as_str());
}
