//! The fault matrix's remaining rows, each under load through haproxy (`deploy/haproxy.cfg`):
//! two glance-rs nodes on MariaDB sharing one image directory, four clients creating,
//! uploading, downloading (and comparing), patching and listing. For each fault: what failed
//! while it lasted (reported), nothing failed outside it, nothing stuck in `saving`, no
//! download whose bytes differ, no partial file left in the store.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::ha::{Haproxy, Load, free_port, haproxy, nothing_stuck, report};
use common::mounts::{HangFs, MemFs, Unhang};
use common::{Backend, PrivateKeystone, Server, auth_url, keystone_conf, keystone_token, run_ok};

/// Two nodes with `conf` behind haproxy: the first, its peer, haproxy.
async fn pair(conf: &str) -> Option<(Server, Server, Haproxy)> {
    let hp_bin = haproxy()?;
    let (pa, pb) = (free_port(), free_port());
    let lease = "[task]\nlease_seconds = 2\n";
    let a = Server::start_with(
        Backend::MySql,
        &format!("{conf}{lease}[DEFAULT]\nbind_port = {pa}\n"),
    )
    .await?;
    let b = a
        .start_peer_with(&format!("{conf}{lease}[DEFAULT]\nbind_port = {pb}\n"))
        .await;
    let hp = Haproxy::start(&hp_bin, &[pa, pb]);
    Some((a, b, hp))
}

/// Fails on anything that went wrong outside `windows`, or on a download whose bytes differed.
fn only_inside(failures: &common::ha::Failures, windows: &[(Instant, Instant)]) {
    let outside: Vec<_> = failures
        .iter()
        .filter(|f| !windows.iter().any(|(a, b)| f.0 >= *a && f.0 < *b))
        .collect();
    assert!(outside.is_empty(), "failed outside the fault: {outside:?}");
    assert!(
        !failures.iter().any(|f| f.1.contains("other bytes")),
        "downloads differed: {failures:?}"
    );
}

/// No partial (`.<id>.<attempt>.tmp`) file left in the image directory.
fn no_partials(dir: &std::path::Path) {
    let partial: Vec<String> = common::files_in(dir)
        .into_iter()
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(partial.is_empty(), "partial files left: {partial:?}");
}

/// Keystone stopped for 5 s and started again: tokens validated before are cached
/// (`token_cache_time`), so the clients, whose token is known, see nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keystone_restarted_under_load() {
    let Some(_) = auth_url() else { return };
    let ks = PrivateKeystone::start(&[]);
    let auth = ks.auth.clone();
    let Some((a, _b, hp)) = pair(&keystone_conf(&auth, 300)).await else {
        return;
    };
    let token = keystone_token(&auth, "alice", "p1").await;
    // Each node validates the token once before the fault (haproxy spreads the requests).
    for _ in 0..4 {
        let r = reqwest::Client::new()
            .get(format!("{}/v2/images", hp.url))
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let load = Load::clients_with(&hp.url, 4, Some(token.clone())).await;
    let from = Instant::now();
    ks.stop();
    tokio::time::sleep(Duration::from_secs(5)).await;
    ks.start_again();
    let to = Instant::now() + Duration::from_secs(2);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (rounds, failures) = load.finish().await;
    println!("| fault | failed | kinds |\n|---|---|---|");
    let inside = report("Keystone stopped 5 s, restarted", from, to, &failures);
    println!("{rounds} rounds");
    assert!(rounds > 20, "the clients hardly ran: {rounds}");
    assert_eq!(inside, 0, "cached tokens keep working: {failures:?}");
    only_inside(&failures, &[]);
    nothing_stuck(&a, Some(&token)).await;
}

/// The shared image mount stops answering for 5 s (a dead NFS server; FUSE): transfers on it
/// fail with 503 within `filesystem_store_timeout` (2 s) while everything else is served; once
/// it answers again, nothing is stuck and no partial file is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_mount_under_load() {
    let base = tempfile::tempdir().unwrap();
    let Some(fs) = HangFs::mount(base.path()) else {
        return;
    };
    let conf = format!(
        "[glance_store]\nfilesystem_store_datadir = {}\nfilesystem_store_timeout = 2\n",
        fs.mnt.display()
    );
    let Some((a, b, hp)) = pair(&conf).await else {
        return;
    };
    let unhang = Unhang(&fs);
    let load = Load::start(&hp.url).await;
    let from = Instant::now();
    fs.hang(true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    fs.hang(false);
    // Calls stuck on the mount end when it answers; the timeout (2 s) has answered for them.
    let to = Instant::now() + Duration::from_secs(3);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rounds, failures) = load.finish().await;
    println!("| fault | failed | kinds |\n|---|---|---|");
    report("image mount hung 5 s (FUSE)", from, to, &failures);
    println!("{rounds} rounds");
    assert!(rounds > 20, "the clients hardly ran: {rounds}");
    only_inside(&failures, &[(from, to)]);
    nothing_stuck(&a, None).await;
    // Undone uploads' partial files go with the undo (the lease, 2 s, then a look).
    let t = Instant::now();
    while common::files_in(&fs.backing)
        .iter()
        .any(|n| n.ends_with(".tmp"))
    {
        assert!(t.elapsed() < Duration::from_secs(20), "{}", b.log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    no_partials(&fs.backing);
    drop(unhang);
}

/// The image disk fills up for 5 s (another program takes the space): uploads fail with 413
/// ("Image storage media is full") and leave nothing behind; downloads, listing and patching go
/// on; once there is room again, uploads succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_under_load() {
    let base = tempfile::tempdir().unwrap();
    let mnt = base.path().join("store");
    let Some(_fs) = MemFs::mount(&mnt, "tmpfs", Some("256m")) else {
        return;
    };
    let conf = format!(
        "[glance_store]\nfilesystem_store_datadir = {}\n",
        mnt.display()
    );
    let Some((a, _b, hp)) = pair(&conf).await else {
        return;
    };
    let load = Load::start(&hp.url).await;
    let filler = mnt.join("filler");
    let from = Instant::now();
    // All the room there is, taken by someone else.
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0xA5u8; 1 << 20];
    use std::io::Write as _;
    while f.write_all(&chunk).is_ok() {}
    drop(f);
    tokio::time::sleep(Duration::from_secs(5)).await;
    std::fs::remove_file(&filler).unwrap();
    let to = Instant::now() + Duration::from_secs(1);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rounds, failures) = load.finish().await;
    println!("| fault | failed | kinds |\n|---|---|---|");
    let inside = report("image disk full 5 s", from, to, &failures);
    println!("{rounds} rounds");
    assert!(rounds > 20, "the clients hardly ran: {rounds}");
    assert!(inside > 0, "the disk was full: uploads must have failed");
    let refused: Vec<_> = failures
        .iter()
        .filter(|f| f.1.starts_with("upload") && !f.1.contains("413"))
        .collect();
    assert!(
        refused.is_empty(),
        "uploads refused otherwise than 413: {refused:?}"
    );
    only_inside(&failures, &[(from, to)]);
    nothing_stuck(&a, None).await;
    no_partials(&mnt);
}

/// A private one-node Ceph cluster (`scripts/ceph.sh`, its monitor on a free port), stopped by
/// pid when dropped: its OSD is stopped below, which the shared test cluster must not be.
#[cfg(feature = "rbd")]
struct Ceph {
    dir: tempfile::TempDir,
    conf: String,
}

#[cfg(feature = "rbd")]
impl Ceph {
    const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ceph.sh");

    fn start() -> Option<Ceph> {
        let found = Command::new("sh")
            .args(["-c", "command -v ceph-osd"])
            .status()
            .is_ok_and(|s| s.success());
        common::require(
            "Ceph (ceph-osd)",
            found.then(|| "ok".to_string()),
            "scripts/ceph.sh installs Debian's Ceph packages",
        )?;
        let dir = tempfile::tempdir().unwrap();
        let out = run_ok(
            Command::new(Self::SCRIPT)
                .arg("start")
                .arg(dir.path())
                .env("CEPH_MON_PORT", free_port().to_string()),
        );
        let conf = out
            .lines()
            .find_map(|l| l.strip_prefix("CEPH_CONF="))
            .expect("CEPH_CONF")
            .to_string();
        Some(Ceph { dir, conf })
    }

    fn osd_pid(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("run/ceph-osd.0.pid"))
            .unwrap()
            .trim()
            .to_string()
    }
}

#[cfg(feature = "rbd")]
impl Drop for Ceph {
    fn drop(&mut self) {
        let _ = Command::new(Self::SCRIPT)
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// The cluster's only OSD stopped for 5 s mid-load and started again: writes and reads wait
/// for it (as with Glance's defaults, no `rados_connect_timeout`), then finish; nothing fails
/// outside the fault, nothing is stuck, no RBD image is left without its Glance image.
#[cfg(feature = "rbd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceph_osd_restarted_under_load() {
    let Some(ceph) = Ceph::start() else { return };
    let conf = format!(
        "[glance_store]\nstores = rbd\ndefault_store = rbd\nrbd_store_pool = images\n\
         rbd_store_user = admin\nrbd_store_ceph_conf = {}\nrbd_store_chunk_size = 4\n",
        ceph.conf
    );
    let Some((a, _b, hp)) = pair(&conf).await else {
        return;
    };
    let load = Load::start(&hp.url).await;
    let from = Instant::now();
    run_ok(Command::new("kill").arg(ceph.osd_pid()));
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Starts what is not running: the OSD (its configuration names the monitor's port).
    run_ok(Command::new(Ceph::SCRIPT).arg("start").arg(ceph.dir.path()));
    let to = Instant::now() + Duration::from_secs(2);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rounds, failures) = load.finish().await;
    println!("| fault | failed | kinds |\n|---|---|---|");
    report("Ceph OSD stopped 5 s, restarted", from, to, &failures);
    println!("{rounds} rounds, ready again after {:?}", to - from);
    // RBD on this one-OSD cluster is slow: fewer rounds than on the file store.
    assert!(rounds > 10, "the clients hardly ran: {rounds}");
    only_inside(&failures, &[(from, to)]);
    nothing_stuck(&a, None).await;
    // Every RBD image in the pool belongs to an image that has data.
    let out = run_ok(Command::new("timeout").args(["60", "rbd", "-c", &ceph.conf, "ls", "images"]));
    for name in out.lines().filter(|l| !l.is_empty()) {
        let img = a.get_json(&format!("/v2/images/{name}")).await;
        assert_eq!(
            img["status"], "active",
            "RBD image {name} without a whole image: {img}"
        );
    }
}
