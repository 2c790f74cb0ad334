//! Deployed as OpenStack deployments run Glance at scale: three glance-rs nodes behind haproxy
//! (`deploy/haproxy.cfg`) sharing one image directory, then the Ceph pool, on a three-node MariaDB Galera cluster
//! (Debian's galera-4, `scripts/galera.sh`) reached through haproxy with one active writer
//! (`deploy/haproxy-mariadb.cfg`). Eight clients create, upload, download, patch and list
//! through haproxy while the database fails: the writer stopped and started again, a backup
//! killed and started again, the whole cluster stopped and bootstrapped again. Prints the fault
//! matrix; nothing may be lost, stuck or corrupted, and nothing may fail outside the faults.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::ha::{Failures, Haproxy, Load, free_port, haproxy};
use common::{Server, require, run_ok};
use serde_json::Value;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/galera.sh");

/// A three-node cluster of `scripts/galera.sh`, stopped (by pid) when dropped.
struct Galera {
    dir: tempfile::TempDir,
    ports: Vec<u16>,
}

impl Galera {
    fn start() -> Option<Galera> {
        let provider = std::path::Path::new("/usr/lib/galera/libgalera_smm.so");
        require(
            "Galera (galera-4)",
            provider.exists().then(|| provider.display().to_string()),
            "scripts/install-deps installs Debian's galera-4 and rsync",
        )?;
        let dir = tempfile::tempdir().unwrap();
        let out = run_ok(Command::new(SCRIPT).args([
            "start",
            dir.path().to_str().unwrap(),
            &free_base().to_string(),
        ]));
        let ports = out
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect::<Vec<u16>>();
        assert_eq!(ports.len(), 3, "{out}");
        Some(Galera { dir, ports })
    }

    fn run(&self, args: &[&str]) {
        let (cmd, rest) = args.split_first().unwrap();
        run_ok(
            Command::new(SCRIPT)
                .arg(cmd)
                .arg(self.dir.path())
                .args(rest),
        );
    }
}

impl Drop for Galera {
    fn drop(&mut self) {
        let _ = Command::new(SCRIPT)
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// A base port whose twelve ports (three nodes: client, replication, IST, SST) are free, all
/// below the kernel's ephemeral range (32768 up): a node binds its IST port again when it
/// rejoins, and a client connection's ephemeral port must not have taken it meanwhile.
fn free_base() -> u16 {
    for i in 0..200u16 {
        let base = 20_000 + ((std::process::id() as u16 % 100) * 120 + i * 40) % 12_000;
        let free = (1..=3).all(|n| {
            (0..4).all(|k| std::net::TcpListener::bind(("127.0.0.1", base + 10 * n + k)).is_ok())
        });
        if free {
            return base;
        }
    }
    panic!("no free ports for the Galera nodes");
}

/// One fault: its name and the time from its start until the service is expected whole again.
struct Window {
    fault: &'static str,
    from: Instant,
    to: Instant,
    rounds: usize,
}

/// Waits (bounded) until the database behind `db` answers.
async fn reachable(db: &Haproxy) {
    let t = Instant::now();
    while sqlx::MySqlPool::connect(&db.mysql_url()).await.is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "database unreachable"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_galera_and_a_shared_file_store() {
    survive_database_faults("").await;
}

#[cfg(feature = "rbd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_galera_and_ceph() {
    let Some(conf) = common::ceph_conf() else {
        return;
    };
    survive_database_faults(&format!(
        "[glance_store]\nstores = rbd\ndefault_store = rbd\nrbd_store_pool = images\n\
         rbd_store_user = admin\nrbd_store_ceph_conf = {conf}\nrbd_store_chunk_size = 4\n"
    ))
    .await;
}

/// The matrix with the images in the store `store` configures (the file store by default).
async fn survive_database_faults(store: &str) {
    let Some(hp_bin) = haproxy() else { return };
    let Some(g) = Galera::start() else { return };
    let db = Haproxy::database(&hp_bin, &g.ports);
    reachable(&db).await;
    let api_ports = [free_port(), free_port(), free_port()];
    let conf =
        |port: u16| format!("{store}[task]\nlease_seconds = 2\n[DEFAULT]\nbind_port = {port}\n");
    let a = Server::start_on_mysql(&db.mysql_url(), &conf(api_ports[0])).await;
    let b = a.start_peer_with(&conf(api_ports[1])).await;
    let c = a.start_peer_with(&conf(api_ports[2])).await;
    let api = Haproxy::start(&hp_bin, &api_ports);
    let load = Load::clients(&api.url, 8).await;
    let settle = Duration::from_secs(5);
    let mut windows = Vec::new();

    // The writer leaves (a clean stop) and comes back: haproxy fails over to a backup, then
    // back to the writer, cutting the backup's sessions.
    tokio::time::sleep(settle).await;
    let from = Instant::now();
    let rounds = load.rounds();
    g.run(&["stop", "1"]);
    tokio::time::sleep(settle).await;
    g.run(&["rejoin", "1"]);
    windows.push(Window {
        fault: "Galera writer stopped, restarted",
        from,
        to: Instant::now() + Duration::from_secs(4),
        rounds,
    });

    // A backup dies (kill -9) and comes back: no session of glance-rs was on it.
    tokio::time::sleep(settle).await;
    let from = Instant::now();
    let rounds = load.rounds();
    g.run(&["kill", "2"]);
    tokio::time::sleep(settle).await;
    g.run(&["rejoin", "2"]);
    windows.push(Window {
        fault: "Galera backup killed, restarted",
        from,
        to: Instant::now() + Duration::from_secs(2),
        rounds,
    });

    // The whole cluster stops and is bootstrapped again.
    tokio::time::sleep(settle).await;
    let from = Instant::now();
    let rounds = load.rounds();
    g.run(&["stop"]);
    g.run(&["bootstrap"]);
    windows.push(Window {
        fault: "whole database restarted",
        from,
        to: Instant::now() + Duration::from_secs(4),
        rounds,
    });
    tokio::time::sleep(settle).await;
    let uploaded = load.uploaded.clone();
    let (total, failures) = load.finish().await;

    // Nothing stuck: uploads cut off by the faults are undone within a lease (2 s) and a look.
    let t = Instant::now();
    loop {
        let mut stuck = Vec::new();
        for status in ["saving", "importing"] {
            let v = a
                .get_json(&format!("/v2/images?status={status}&limit=1000"))
                .await;
            stuck.extend(v["images"].as_array().unwrap().iter().cloned());
        }
        if stuck.is_empty() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "stuck: {stuck:?}\n{}\n{}\n{}",
            a.log(),
            b.log(),
            c.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Nothing lost: every image whose upload succeeded is active with the same data.
    let uploaded = uploaded.lock().unwrap().clone();
    let mut lost = Vec::new();
    let mut refused = 0;
    for (id, md5) in &uploaded {
        // Asked again (bounded) while the node refuses: lost means not there, or other data.
        let mut tries = 0;
        let (code, img) = loop {
            let r = a.get(&format!("/v2/images/{id}")).send().await.unwrap();
            let code = r.status();
            let img: Value = r.json().await.unwrap_or_default();
            if !code.is_server_error() || tries == 20 {
                break (code, img);
            }
            refused += 1;
            tries += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        if img["status"] != "active" || img["checksum"] != md5.as_str() {
            lost.push((id.clone(), code.as_u16(), img));
        }
    }
    if refused > 0 {
        println!("the check afterwards was refused {refused} times (5xx) and asked again");
    }

    let inside = |w: &Window, f: &(Instant, String)| f.0 >= w.from && f.0 < w.to;
    let differed = |f: &(Instant, String)| f.1.contains("other bytes");
    println!(
        "\n| fault | rounds | lost | stuck | bytes differed | failed inside window | failed outside |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut outside: Failures = failures.clone();
    outside.retain(|f| !windows.iter().any(|w| inside(w, f)));
    for (i, w) in windows.iter().enumerate() {
        let next = windows.get(i + 1).map_or(total, |n| n.rounds);
        let mine: Vec<&(Instant, String)> = failures.iter().filter(|f| inside(w, f)).collect();
        println!(
            "| {} | {} | {} | 0 | {} | {} | {} |",
            w.fault,
            next - w.rounds,
            lost.len(),
            mine.iter().filter(|f| differed(f)).count(),
            mine.len(),
            outside.len()
        );
    }
    for w in &windows {
        // What failed inside the window, by operation and answer.
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        for f in failures.iter().filter(|f| inside(w, f)) {
            let (op, rest) = f.1.split_once(' ').unwrap_or((&f.1, ""));
            let what = rest.rsplit(": ").next().unwrap_or(rest);
            *kinds
                .entry(format!("{} {what}", op.trim_end_matches(':')))
                .or_default() += 1;
        }
        let offsets: Vec<f64> = failures
            .iter()
            .filter(|f| inside(w, f))
            .map(|f| (f.0 - w.from).as_secs_f64())
            .collect();
        let first = offsets.iter().cloned().fold(f64::INFINITY, f64::min);
        let last = offsets.iter().cloned().fold(0.0, f64::max);
        println!(
            "{} (window {:.1} s; failures from +{first:.1} s to +{last:.1} s): {kinds:?}",
            w.fault,
            (w.to - w.from).as_secs_f64()
        );
    }
    println!(
        "{total} rounds, {} uploads checked afterwards\n",
        uploaded.len()
    );
    // What the nodes were told by the database, by kind: the why of the 5xx above.
    let mut told = std::collections::BTreeMap::<String, usize>::new();
    for s in [&a, &b, &c] {
        for line in s.log().lines().filter(|l| l.contains("database")) {
            if let Some(why) = line.split("error=").nth(1) {
                *told.entry(why.chars().take(100).collect()).or_default() += 1;
            }
        }
    }
    for (why, n) in &told {
        println!("{n:>6} x {why}");
    }
    assert!(total > 50, "the clients hardly ran: {total}");
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(
        !failures.iter().any(differed),
        "downloads differed: {failures:?}"
    );
    assert!(
        outside.is_empty(),
        "failed outside the fault windows: {outside:?}"
    );
    drop((a, b, c));
}
