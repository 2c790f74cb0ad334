//! Long random sequences of requests, valid and invalid mixed as a careless script or a hostile
//! user sends them, from three projects, against the real binary: no answer is a 5xx or a
//! dropped connection, and at the end the stored state is whole — no image left in `saving`,
//! every image with data downloads bytes matching its size and checksum, and the store holds
//! no file that no image owns.
//!
//! Deterministic: GLANCE_RANDOM_SEED and GLANCE_RANDOM_ROUNDS replay or lengthen a run; a
//! failure names the seed, the round and the request.

mod common;

use std::time::Duration;

use common::random::{DEFAULTS, check_state, client, env_or, four_clients, four_clients_of};
use common::{Backend, ChildGuard, Server, files_in};

/// Import tasks may fetch from the node itself (loopback, allowed by address).
fn conf() -> String {
    format!(
        "[import_filtering_opts]\nallowed_hosts = [127.0.0.1]\nallowed_ports = []\n[DEFAULT]\n{DEFAULTS}"
    )
}

async fn random_requests_leave_a_whole_state(b: Backend) {
    let Some(s) = Server::start_with(b, &conf()).await else {
        return;
    };
    let seed = env_or("GLANCE_RANDOM_SEED", 0x5eed_1234_abcd_0001u64);
    let rounds = env_or("GLANCE_RANDOM_ROUNDS", 1200usize);
    let statuses = client(&s, seed, rounds, &Default::default()).await;
    // The sequence must have reached the interesting answers, not only 404s.
    for code in [200, 201, 204, 206, 400, 403, 404, 409, 413, 415, 416] {
        assert!(
            statuses.contains_key(&code),
            "no {code} among {statuses:?}: the generator no longer reaches it"
        );
    }
    check_state(&s, &statuses, s.store_files()).await;
}

/// Four clients at once on the same images, through two API nodes sharing the database and
/// the store (as behind haproxy): racing uploads, deletes during uploads, patches of images
/// being deleted. Answers may differ from one run to the next; the state's wholeness may not.
async fn concurrent_random_requests_leave_a_whole_state(b: Backend) {
    let Some(s) = Server::start_with(b, &conf()).await else {
        return;
    };
    let peer = s.start_peer_with(&conf()).await;
    let nodes = [&s, &peer];
    let statuses = four_clients(&nodes, 0x5eed_1234_abcd_0002).await;
    check_state(&s, &statuses, s.store_files()).await;
}

/// The same four clients against a node with two file stores and the http store, showing
/// locations: uploads to a named store, downloads preferring one, a store's copy removed.
async fn multistore_random_requests_leave_a_whole_state(b: Backend) {
    let base = tempfile::tempdir().expect("tempdir");
    let (fast, slow) = (base.path().join("fast"), base.path().join("slow"));
    let conf = format!(
        "[DEFAULT]\n{DEFAULTS}enabled_backends = fast:file, slow:file, web:http\nshow_multiple_locations = true\n\
         [glance_store]\ndefault_backend = slow\n\
         [fast]\nfilesystem_store_datadir = {}\nweight = 100\n\
         [slow]\nfilesystem_store_datadir = {}\nweight = 10\n",
        fast.display(),
        slow.display()
    );
    let Some(s) = Server::start_with(b, &conf).await else {
        return;
    };
    let statuses = four_clients(&[&s], 0x5eed_1234_abcd_0003).await;
    let stored = [files_in(&fast), files_in(&slow)].concat();
    check_state(&s, &statuses, stored).await;
}

/// The four clients through two nodes, one of which is killed (`kill -9`) a few seconds in and
/// restarted on the same address a second later: requests to it meanwhile get no answer (counted
/// as 0), the others none may be a 5xx; afterwards, once a lease has run out, the state is whole:
/// the killed node's uploads undone, no partial bytes left.
async fn killed_node_random_requests_leave_a_whole_state(b: Backend) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let lease = "[task]\nlease_seconds = 2\n";
    let Some(s) = Server::start_with(b, &format!("{}bind_port = {port}\n{lease}", conf())).await
    else {
        return;
    };
    let peer = s.start_peer_with(&format!("{}{lease}", conf())).await;
    let again = std::sync::Mutex::new(ChildGuard(None));
    let killer = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let _ = std::process::Command::new("kill")
            .args(["-9", &s.pid().to_string()])
            .status();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (child, p) = s.spawn_again().await;
        assert_eq!(p, port, "back on the same address");
        again.lock().unwrap().0 = Some(child);
    };
    let nodes = [&s, &peer];
    let (statuses, ()) = tokio::join!(four_clients_of(&nodes, 0x5eed_1234_abcd_0004, true), killer);
    assert!(
        statuses.get(&0).is_some_and(|n| *n > 0),
        "the kill cut requests: {statuses:?}"
    );
    // What the killed node held is undone once its lease (2 s) has run out and a node looked.
    tokio::time::sleep(Duration::from_secs(4)).await;
    check_state(&peer, &statuses, s.store_files()).await;
    drop(again);
}

both_databases!(
    killed_node_random_requests_leave_a_whole_state,
    random_requests_leave_a_whole_state,
    concurrent_random_requests_leave_a_whole_state,
    multistore_random_requests_leave_a_whole_state
);
