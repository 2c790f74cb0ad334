//! Behind haproxy as deployments run glance-api (`deploy/haproxy.cfg`, the shipped section):
//! two glance-rs nodes sharing the database and the image directory, clients working through
//! haproxy while each node in turn is taken out and restarted (a rolling restart, by the
//! maintenance file or by SIGTERM alone). No request may fail, and no image is left mid-upload.

mod common;

use std::time::{Duration, Instant};

use common::ha::{Haproxy, Load, free_port, haproxy};
use common::{Backend, Server};

/// Each node in turn, through haproxy under load: the first taken out for maintenance by
/// oslo.middleware's disable file (then stopped, started again, put back), the second stopped
/// with SIGTERM alone (it drains: `/healthcheck` fails for `shutdown_drain_timeout` while it
/// still serves) and started again.
async fn rolling_restart_behind_haproxy_fails_no_request(b: Backend) {
    let Some(hp_bin) = haproxy() else { return };
    let (pa, pb) = (free_port(), free_port());
    let flag = tempfile::tempdir().unwrap();
    let disable = flag.path().join("healthcheck_disable");
    let conf = format!(
        "[DEFAULT]\ngraceful_shutdown_timeout = 10\nshutdown_drain_timeout = 2\n\
         [healthcheck]\ndisable_by_file_path = {}\n",
        disable.display()
    );
    let Some(mut a) = Server::start_with(b, &format!("{conf}[DEFAULT]\nbind_port = {pa}\n")).await
    else {
        return;
    };
    // The second node has its own maintenance file (none), the same drain.
    let mut peer = a
        .start_peer_with(&format!(
            "[DEFAULT]\nbind_port = {pb}\ngraceful_shutdown_timeout = 10\n\
             shutdown_drain_timeout = 2\n[healthcheck]\ndisable_by_file_path = {}\n",
            flag.path().join("other").display()
        ))
        .await;
    let hp = Haproxy::start(&hp_bin, &[pa, pb]);
    let load = Load::start(&hp.url).await;
    // Maintenance: out of the pool by the file, then restarted, then back.
    std::fs::write(&disable, b"").unwrap();
    let r = reqwest::get(format!("{}/healthcheck", a.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await.unwrap(), "DISABLED BY FILE");
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.stop();
    a.restart().await;
    std::fs::remove_file(&disable).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // SIGTERM alone: the node drains, then stops; started again.
    let t = Instant::now();
    peer.stop();
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "drained before closing"
    );
    peer.restart().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rounds, failures) = load.finish().await;
    let failures: Vec<String> = failures.into_iter().map(|(_, f)| f).collect();
    eprintln!("{rounds} rounds of create/upload/download/list through haproxy");
    assert!(rounds > 20, "the clients hardly ran: {rounds}");
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert!(peer.log().contains("draining"), "{}", peer.log());
    // Nothing left mid-upload.
    let imgs = a.get_json("/v2/images?limit=1000").await;
    for i in imgs["images"].as_array().unwrap() {
        assert_ne!(i["status"], "saving", "{i}");
    }
}

/// `kill -9` of one node under load behind haproxy: requests it held fail (counted, the fault
/// window); once haproxy's checks take it out (fall 2 at 0.5 s) none fails; after its lease
/// (2 s) the other node has undone its uploads: nothing stays in `saving`, no data differs.
async fn killed_node_behind_haproxy(b: Backend) {
    let Some(hp_bin) = haproxy() else { return };
    let (pa, pb) = (free_port(), free_port());
    let lease = "[task]\nlease_seconds = 2\n";
    let Some(mut a) = Server::start_with(b, &format!("{lease}[DEFAULT]\nbind_port = {pa}\n")).await
    else {
        return;
    };
    let peer = a
        .start_peer_with(&format!("{lease}[DEFAULT]\nbind_port = {pb}\n"))
        .await;
    let hp = Haproxy::start(&hp_bin, &[pa, pb]);
    let load = Load::start(&hp.url).await;
    let killed = Instant::now();
    a.kill9();
    tokio::time::sleep(Duration::from_secs(5)).await;
    a.restart().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rounds, failures) = load.finish().await;
    // The fault window: haproxy's detection (2 checks at 0.5 s) and the requests in flight.
    let window = Duration::from_secs(2);
    let (inside, outside): (Vec<_>, Vec<_>) = failures
        .iter()
        .partition(|(t, _)| *t >= killed && t.duration_since(killed) < window);
    eprintln!(
        "{} rounds; failed inside the fault window: {} {:?}",
        rounds,
        inside.len(),
        inside.iter().map(|(_, f)| f).collect::<Vec<_>>()
    );
    assert!(
        outside.is_empty(),
        "failed outside the fault window: {outside:?}"
    );
    // Undone by the other node (lease 2 s, a look every 0.7 s) and by the restart.
    let imgs = peer.get_json("/v2/images?limit=1000").await;
    for i in imgs["images"].as_array().unwrap() {
        assert_ne!(i["status"], "saving", "{i}");
    }
}

both_databases!(
    rolling_restart_behind_haproxy_fails_no_request,
    killed_node_behind_haproxy
);
