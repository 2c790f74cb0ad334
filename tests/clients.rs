//! End-to-end tests with the real OpenStack clients from PyPI (python-openstackclient,
//! openstacksdk) against the real binary, on SQLite and MariaDB.

mod common;

use std::process::{Command, Output};

use common::{Backend, Server, random_bytes, venv};
use serde_json::Value;

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "client failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        stdout
    );
    stdout
}

fn json_out(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).expect("client printed JSON")
}

fn names(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["Name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

async fn openstack_cli_image_lifecycle(b: Backend) {
    let Some(venv) = venv() else { return };
    let Some(s) = Server::start(b).await else {
        return;
    };
    let dir = s.dir.path();
    // A real qcow2 made by qemu-img, plus a raw file of random bytes.
    let qcow = dir.join("disk.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", qcow.to_str().unwrap(), "64M"])
        .status()
        .expect("qemu-img");
    assert!(st.success());
    let raw = dir.join("disk.raw");
    let raw_bytes = random_bytes(5 * 1024 * 1024 + 3);
    std::fs::write(&raw, &raw_bytes).unwrap();

    let created = json_out(&s.openstack(
        &venv,
        &[
            "image",
            "create",
            "--file",
            qcow.to_str().unwrap(),
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "--property",
            "os_distro=cirros",
            "--tag",
            "small",
            "-f",
            "json",
            "cirros",
        ],
    ));
    assert_eq!(created["status"], "active");
    assert_eq!(created["disk_format"], "qcow2");
    let qid = created["id"].as_str().unwrap().to_string();
    let created = json_out(&s.openstack(
        &venv,
        &[
            "image",
            "create",
            "--file",
            raw.to_str().unwrap(),
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--private",
            "-f",
            "json",
            "bigraw",
        ],
    ));
    let rid = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["size"], raw_bytes.len());
    assert_eq!(created["visibility"], "private");
    // A record without data (the CLI would upload its empty stdin, so it comes from the API).
    s.create(
        serde_json::json!({"name": "empty", "disk_format": "raw", "container_format": "bare"}),
    )
    .await;

    let all = json_out(&s.openstack(&venv, &["image", "list", "-f", "json"]));
    assert_eq!(names(&all), ["bigraw", "cirros", "empty"]);
    let filtered = json_out(&s.openstack(
        &venv,
        &[
            "image",
            "list",
            "--property",
            "os_distro=cirros",
            "-f",
            "json",
        ],
    ));
    assert_eq!(names(&filtered), ["cirros"]);
    let filtered =
        json_out(&s.openstack(&venv, &["image", "list", "--tag", "small", "-f", "json"]));
    assert_eq!(names(&filtered), ["cirros"]);
    let filtered = json_out(&s.openstack(&venv, &["image", "list", "--private", "-f", "json"]));
    assert_eq!(names(&filtered), ["bigraw"]);
    let filtered = json_out(&s.openstack(
        &venv,
        &["image", "list", "--status", "queued", "-f", "json"],
    ));
    assert_eq!(names(&filtered), ["empty"]);
    let sorted = json_out(&s.openstack(
        &venv,
        &[
            "image",
            "list",
            "--sort",
            "name:desc",
            "--limit",
            "2",
            "-f",
            "json",
        ],
    ));
    let first: Vec<&str> = sorted
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["Name"].as_str().unwrap())
        .collect();
    assert_eq!(first[0], "empty");

    ok(&s.openstack(
        &venv,
        &[
            "image",
            "set",
            "--property",
            "hw_disk_bus=scsi",
            "--tag",
            "extra",
            "--name",
            "cirros2",
            "--min-ram",
            "128",
            &qid,
        ],
    ));
    let shown = json_out(&s.openstack(&venv, &["image", "show", "-f", "json", &qid]));
    assert_eq!(shown["name"], "cirros2");
    assert_eq!(shown["min_ram"], 128);
    let tags: Vec<&str> = match &shown["tags"] {
        Value::Array(a) => a.iter().map(|t| t.as_str().unwrap()).collect(),
        Value::String(s) => s.split(", ").collect(),
        other => panic!("tags: {other}"),
    };
    assert!(
        tags.contains(&"extra") && tags.contains(&"small"),
        "{tags:?}"
    );
    assert_eq!(shown["properties"]["hw_disk_bus"], "scsi");

    // save verifies os_hash_value itself; then compare bytes.
    let out = dir.join("out.raw");
    ok(&s.openstack(
        &venv,
        &["image", "save", "--file", out.to_str().unwrap(), &rid],
    ));
    assert_eq!(std::fs::read(&out).unwrap(), raw_bytes);
    let outq = dir.join("out.qcow2");
    ok(&s.openstack(
        &venv,
        &["image", "save", "--file", outq.to_str().unwrap(), &qid],
    ));
    assert_eq!(std::fs::read(&outq).unwrap(), std::fs::read(&qcow).unwrap());

    // Import is not offered: the client says so and no data lands, as with a Glance whose
    // enabled_import_methods is empty.
    let out = s.openstack(
        &venv,
        &[
            "image",
            "create",
            "--import",
            "--file",
            raw.to_str().unwrap(),
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "imported",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not support the image import method"),
        "{err}"
    );
    // The client made the record before it asked about import (so it does with Glance): it
    // stays queued, without data.
    let left = json_out(&s.openstack(&venv, &["image", "show", "-f", "json", "imported"]));
    assert_eq!(left["status"], "queued");
    ok(&s.openstack(&venv, &["image", "delete", "imported"]));

    ok(&s.openstack(&venv, &["image", "delete", &qid, &rid]));
    let all = json_out(&s.openstack(&venv, &["image", "list", "-f", "json"]));
    assert_eq!(names(&all), ["empty"]);
    assert!(s.store_files().is_empty(), "{:?}", s.store_files());
    let out = s.openstack(&venv, &["image", "show", &qid]);
    assert!(!out.status.success());
}

async fn openstacksdk_flow(b: Backend) {
    let Some(venv) = venv() else { return };
    let Some(s) = Server::start(b).await else {
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/sdk_flow.py");
    let out = Command::new(venv.join("bin/python"))
        .args([script, &s.url])
        .output()
        .expect("run python");
    let v: Value = serde_json::from_str(ok(&out).lines().last().unwrap_or("")).expect("sdk output");
    assert_eq!(v["status"], "active", "{v}");
    assert_eq!(v["size"], 256 * 4096 + 4);
    for k in [
        "checksum_ok",
        "sha512_ok",
        "listed",
        "by_prop",
        "download_ok",
        "gone",
    ] {
        assert_eq!(v[k], true, "{k}: {v}");
    }
    assert_eq!(v["name"], "sdk-renamed");
    assert_eq!(v["hw_disk_bus"], "virtio");
}

/// A multi-GiB sparse image through the real client both ways: `image save` verifies
/// os_hash_value itself, then the bytes are compared. Thin provisioning keeps the store sparse.
async fn multi_gib_sparse_image_round_trip(b: Backend) {
    let Some(venv) = venv() else { return };
    let Some(s) =
        Server::start_with(b, "[glance_store]\nfilesystem_thin_provisioning = true\n").await
    else {
        return;
    };
    let dir = s.dir.path();
    let src = dir.join("sparse.raw");
    let size: u64 = 2 << 30;
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(&src).unwrap();
        f.write_all(&random_bytes(1 << 20)).unwrap();
        f.seek(SeekFrom::Start(size / 2)).unwrap();
        f.write_all(b"middle").unwrap();
        f.seek(SeekFrom::Start(size - 4096)).unwrap();
        f.write_all(&random_bytes(4096)).unwrap();
        f.set_len(size).unwrap();
    }
    let created = json_out(&s.openstack(
        &venv,
        &[
            "image",
            "create",
            "--file",
            src.to_str().unwrap(),
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "-f",
            "json",
            "sparse",
        ],
    ));
    assert_eq!(created["status"], "active");
    assert_eq!(created["size"], size);
    let id = created["id"].as_str().unwrap().to_string();
    let shown = s.show(&id).await;
    assert_eq!(shown["virtual_size"], size);
    let stored = s.images_dir().join(&id);
    let blocks = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&stored).unwrap());
    assert!(
        blocks * 512 < 64 << 20,
        "store file is sparse ({blocks} blocks)"
    );

    let out = dir.join("saved.raw");
    ok(&s.openstack(
        &venv,
        &["image", "save", "--file", out.to_str().unwrap(), &id],
    ));
    let st = Command::new("cmp")
        .args([src.to_str().unwrap(), out.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success(), "saved bytes differ");
}

both_databases!(
    openstack_cli_image_lifecycle,
    openstacksdk_flow,
    multi_gib_sparse_image_round_trip
);
