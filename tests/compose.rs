//! The top-level `docker-compose.yml` as a user runs it: a private Docker engine
//! (`scripts/docker.sh`, Debian's docker.io, host networking, a debootstrap base image), `up
//! --build` with the binary under test, then the real `openstack` client through Keystone:
//! create with data, list, save and compare; `down -v`; the engine stopped by pid.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::ha::free_port;
use common::{random_bytes, require, run_ok, venv};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn found(cmd: &str) -> Option<String> {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {cmd} || ls /usr/sbin/{cmd}")])
        .output()
        .ok()
        .is_some_and(|o| o.status.success());
    ok.then(|| cmd.to_string())
}

/// The engine of `scripts/docker.sh`, stopped (by pid) when dropped.
struct Engine {
    dir: PathBuf,
    host: String,
}

impl Engine {
    fn start() -> Option<Engine> {
        for cmd in ["dockerd", "docker-compose", "debootstrap"] {
            require(
                cmd,
                found(cmd),
                "scripts/install-deps installs Debian's docker.io, docker-compose and debootstrap",
            )?;
        }
        // Kept between runs: the base image and the built layers make the next run quick.
        let dir = Path::new(ROOT).join(".test-env/docker");
        let out = run_ok(
            Command::new(format!("{ROOT}/scripts/docker.sh"))
                .arg("start")
                .arg(&dir),
        );
        let host = out
            .lines()
            .find_map(|l| l.strip_prefix("DOCKER_HOST="))
            .expect("DOCKER_HOST")
            .to_string();
        Some(Engine { dir, host })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = Command::new(format!("{ROOT}/scripts/docker.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// The certificates of a TLS-intercepting proxy this machine trusts, for pip in the Keystone
/// image (empty where there is none).
fn extra_ca() -> String {
    let mut pem = String::new();
    if let Ok(dir) = std::fs::read_dir("/usr/local/share/ca-certificates") {
        for e in dir.flatten() {
            pem.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    pem
}

/// `docker-compose` in the project's directory with the stack's settings.
struct Stack<'a> {
    engine: &'a Engine,
    project: String,
    files: Vec<String>,
    env: Vec<(String, String)>,
}

impl Stack<'_> {
    fn compose(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker-compose");
        c.current_dir(ROOT)
            .env("DOCKER_HOST", &self.engine.host)
            .args(["-p", &self.project]);
        for f in &self.files {
            c.args(["-f", f]);
        }
        c.args(args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }
}

impl Drop for Stack<'_> {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "--timeout", "20"]).output();
    }
}

/// Brings the stack of `files` up, uses it with the client through the catalog's image
/// endpoint (`api`), takes it down.
async fn use_stack(engine: &Engine, venv: &Path, files: &[&str], ports: &[(&str, u16)], api: u16) {
    let ks = ports.iter().find(|(k, _)| *k == "KEYSTONE_PORT").unwrap().1;
    let mut env: Vec<(String, String)> = ports
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.push(("GLANCE_RS_BINARY".into(), "target/compose/glance-rs".into()));
    env.push(("EXTRA_CA".into(), extra_ca()));
    let stack = Stack {
        engine,
        project: format!("glancers{}", std::process::id()),
        files: files.iter().map(|f| f.to_string()).collect(),
        env,
    };
    let t = Instant::now();
    let up = stack.compose(&["up", "-d", "--build"]).output().unwrap();
    assert!(
        up.status.success(),
        "{}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    // `up -d` returns once glance-rs started; serving follows its `db sync`.
    let url = format!("http://127.0.0.1:{api}");
    loop {
        if let Ok(r) = reqwest::get(format!("{url}/healthcheck")).await
            && r.status() == 200
        {
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            let logs = stack.compose(&["logs", "--tail", "40"]).output().unwrap();
            panic!(
                "stack not serving: {}",
                String::from_utf8_lossy(&logs.stdout)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "compose stack {files:?} up and serving after {:?}",
        t.elapsed()
    );

    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(3 << 20);
    let file = dir.path().join("disk.raw");
    std::fs::write(&file, &data).unwrap();
    let openstack = |args: &[&str]| {
        let out = Command::new(venv.join("bin/openstack"))
            .env("OS_AUTH_URL", format!("http://127.0.0.1:{ks}/v3"))
            .env("OS_USERNAME", "alice")
            .env("OS_PASSWORD", "secret")
            .env("OS_PROJECT_NAME", "p1")
            .env("OS_USER_DOMAIN_NAME", "Default")
            .env("OS_PROJECT_DOMAIN_NAME", "Default")
            .env("OS_IMAGE_API_VERSION", "2")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openstack {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // The catalog's image endpoint is the stack's front (glance-rs, or haproxy).
    let mut ids = Vec::new();
    for name in ["composed-1", "composed-2", "composed-3"] {
        let created: serde_json::Value = serde_json::from_str(&openstack(&[
            "image",
            "create",
            "--file",
            file.to_str().unwrap(),
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            name,
            "-f",
            "json",
        ]))
        .unwrap();
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    let listed = openstack(&["image", "list", "-f", "value", "-c", "ID"]);
    for id in &ids {
        assert!(listed.contains(id.as_str()), "{listed}");
        let saved = dir.path().join("saved.raw");
        openstack(&["image", "save", "--file", saved.to_str().unwrap(), id]);
        assert!(std::fs::read(&saved).unwrap() == data, "same bytes back");
        let shown: serde_json::Value =
            serde_json::from_str(&openstack(&["image", "show", id, "-f", "json"])).unwrap();
        assert_eq!(shown["status"], "active");
    }
    // Every node of the stack serves.
    for (k, port) in ports {
        if k.starts_with("GLANCE_PORT") {
            let r = reqwest::get(format!("http://127.0.0.1:{port}/healthcheck"))
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{k}");
        }
    }
    drop(stack);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_stack_serves_the_clients() {
    let Some(venv) = venv() else { return };
    let Some(engine) = Engine::start() else {
        return;
    };
    // The binary under test, stripped, where the Dockerfile's context lets it in.
    let bin = Path::new(ROOT).join("target/compose/glance-rs");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    run_ok(Command::new("strip").arg("-o").arg(&bin).arg(common::bin()));
    // One node.
    let (db, ks, api) = (free_port(), free_port(), free_port());
    let ports = [
        ("MYSQL_PORT", db),
        ("KEYSTONE_PORT", ks),
        ("GLANCE_PORT", api),
    ];
    use_stack(&engine, &venv, &["docker-compose.yml"], &ports, api).await;
    // Three nodes behind haproxy.
    let ports = [
        ("MYSQL_PORT", free_port()),
        ("KEYSTONE_PORT", free_port()),
        ("HAPROXY_PORT", free_port()),
        ("GLANCE_PORT", free_port()),
        ("GLANCE_PORT_2", free_port()),
        ("GLANCE_PORT_3", free_port()),
    ];
    let front = ports[2].1;
    let files = ["docker-compose.yml", "docker-compose.ha.yml"];
    use_stack(&engine, &venv, &files, &ports, front).await;
    drop(engine);
}
