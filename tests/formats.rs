//! Format inspection on upload: every format qemu-img makes gets its virtual size; data that
//! does not match its disk_format, and unsafe images, are refused with 415 and leave the image
//! queued with no bytes in the store.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Backend, Server, run_ok};
use serde_json::{Value, json};

fn qemu_img(args: &[&str]) {
    run_ok(Command::new("qemu-img").args(args));
}

fn qemu_virtual_size(path: &Path, fmt: &str) -> u64 {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json", "-f", fmt, path.to_str().unwrap()])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["virtual-size"].as_u64().unwrap()
}

async fn upload_file(s: &Server, disk_format: &str, path: &Path) -> (String, u16, String) {
    let img = s
        .create(
            json!({"name": disk_format, "disk_format": disk_format, "container_format": "bare"}),
        )
        .await;
    let id = img["id"].as_str().unwrap().to_string();
    let r = s.upload(&id, std::fs::read(path).unwrap()).await;
    let st = r.status().as_u16();
    (id, st, r.text().await.unwrap())
}

/// A minimal ISO 9660 primary volume descriptor: 1000 blocks of 2048 bytes.
fn make_iso(path: &Path) {
    let mut d = vec![0u8; 0x8000 + 2048 * 2];
    let pvd = 0x8000;
    d[pvd] = 1;
    d[pvd + 1..pvd + 6].copy_from_slice(b"CD001");
    d[pvd + 6] = 1;
    d[pvd + 80..pvd + 84].copy_from_slice(&1000u32.to_le_bytes());
    d[pvd + 84..pvd + 88].copy_from_slice(&1000u32.to_be_bytes());
    d[pvd + 128..pvd + 130].copy_from_slice(&2048u16.to_le_bytes());
    d[pvd + 2048] = 255; // terminator
    d[pvd + 2049..pvd + 2054].copy_from_slice(b"CD001");
    std::fs::write(path, d).unwrap();
}

/// A disk with a protective MBR and a GPT header, or a broken variant of it.
fn make_gpt(path: &Path, protective_start: u32, boot_flag: u8, with_protective: bool) {
    let mut d = vec![0u8; 1 << 20];
    if with_protective {
        let e = 446;
        d[e] = boot_flag;
        d[e + 4] = 0xEE;
        d[e + 8..e + 12].copy_from_slice(&protective_start.to_le_bytes());
        d[e + 12..e + 16].copy_from_slice(&(2047u32).to_le_bytes());
    } else {
        d[446] = boot_flag;
        d[446 + 4] = 0x83;
        d[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
    }
    d[510] = 0x55;
    d[511] = 0xAA;
    d[512..520].copy_from_slice(b"EFI PART");
    std::fs::write(path, d).unwrap();
}

fn work(s: &Server) -> PathBuf {
    let d = s.dir.path().join("formats");
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn every_format_gets_its_virtual_size(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let d = work(&s);
    // (disk_format, qemu-img format, extra options)
    for (disk, qfmt, opts) in [
        ("qcow2", "qcow2", ""),
        ("vmdk", "vmdk", ""),
        ("vmdk", "vmdk", "subformat=streamOptimized"),
        ("vhd", "vpc", ""),
        ("vhd", "vpc", "subformat=fixed"),
        ("vhdx", "vhdx", ""),
        ("vdi", "vdi", ""),
        ("raw", "raw", ""),
    ] {
        let path = d.join(format!("disk-{qfmt}-{}.img", opts.replace('=', "-")));
        let mut args = vec!["create", "-q", "-f", qfmt];
        if !opts.is_empty() {
            args.extend(["-o", opts]);
        }
        args.extend([path.to_str().unwrap(), "50M"]);
        qemu_img(&args);
        let expected = qemu_virtual_size(&path, qfmt);
        let (id, st, text) = upload_file(&s, disk, &path).await;
        assert_eq!(st, 204, "{disk} {opts}: {text}");
        let v = s.show(&id).await;
        assert_eq!(v["virtual_size"], expected, "{disk} {opts}");
        assert_eq!(v["status"], "active");
    }
    let iso = d.join("disk.iso");
    make_iso(&iso);
    let (id, st, text) = upload_file(&s, "iso", &iso).await;
    assert_eq!(st, 204, "{text}");
    assert_eq!(s.show(&id).await["virtual_size"], 2048 * 1000);
    // A GPT disk declared raw is raw, with virtual size = size.
    let gpt = d.join("gpt.raw");
    make_gpt(&gpt, 1, 0, true);
    let (id, st, text) = upload_file(&s, "raw", &gpt).await;
    assert_eq!(st, 204, "{text}");
    assert_eq!(s.show(&id).await["virtual_size"], 1 << 20);
    // Headers claiming more than the API's integers hold (a VMDK of 2^60 sectors, a qcow2 of
    // 2^64-1 bytes) are stored as the largest virtual size: too big for any flavor, where
    // the multiplication used to overflow (and Glance 33 answers 500 and leaves the image in
    // `saving`).
    for (disk, qfmt, at, field) in [
        ("vmdk", "vmdk", 12, (1u64 << 60).to_le_bytes()),
        ("qcow2", "qcow2", 24, u64::MAX.to_be_bytes()),
    ] {
        let path = d.join(format!("huge.{qfmt}"));
        qemu_img(&["create", "-q", "-f", qfmt, path.to_str().unwrap(), "1M"]);
        let mut data = std::fs::read(&path).unwrap();
        data[at..at + 8].copy_from_slice(&field);
        std::fs::write(&path, data).unwrap();
        let (id, st, text) = upload_file(&s, disk, &path).await;
        assert_eq!(st, 204, "{disk}: {text}");
        let v = s.show(&id).await;
        assert_eq!(v["virtual_size"], i64::MAX, "{disk}");
        assert_eq!(v["status"], "active");
    }
    // Non-bare containers are not inspected.
    let img = s
        .create(json!({"name": "ova", "disk_format": "vmdk", "container_format": "ova"}))
        .await;
    let id = img["id"].as_str().unwrap();
    assert_eq!(
        s.upload(id, b"not a vmdk at all".to_vec()).await.status(),
        204
    );
    assert_eq!(s.show(id).await["virtual_size"], Value::Null);
}

async fn mismatched_and_unsafe_images_are_refused(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let d = work(&s);
    let q = |n: &str| d.join(n).to_str().unwrap().to_string();
    qemu_img(&["create", "-q", "-f", "raw", &q("base.raw"), "10M"]);
    qemu_img(&["create", "-q", "-f", "qcow2", &q("plain.qcow2"), "10M"]);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        &q("base.raw"),
        "-F",
        "raw",
        &q("backing.qcow2"),
    ]);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &format!("data_file={}", q("data.raw")),
        &q("datafile.qcow2"),
        "10M",
    ]);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vmdk",
        "-o",
        "subformat=monolithicFlat",
        &q("flat.vmdk"),
        "10M",
    ]);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vmdk",
        "-o",
        "subformat=twoGbMaxExtentSparse",
        &q("split.vmdk"),
        "10M",
    ]);
    // A monolithicSparse VMDK whose embedded descriptor is rewritten to name a host file.
    qemu_img(&["create", "-q", "-f", "vmdk", &q("evil.vmdk"), "10M"]);
    let mut evil = std::fs::read(q("evil.vmdk")).unwrap();
    let text = String::from_utf8_lossy(&evil).to_string();
    let pos = text
        .find("RW 20480 SPARSE \"evil.vmdk\"")
        .expect("descriptor extent line");
    let replacement = b"RW 20480 FLAT \"/etc/passwd\" 0";
    evil[pos..pos + replacement.len()].copy_from_slice(replacement);
    std::fs::write(q("evil.vmdk"), &evil).unwrap();
    make_gpt(&d.join("badboot.raw"), 1, 0x13, true);
    make_gpt(&d.join("badprot.raw"), 5, 0, true);
    make_gpt(&d.join("noprot.raw"), 1, 0, false);

    let before = s.store_files();
    for (disk, file, code, msg) in [
        (
            "vmdk",
            "plain.qcow2",
            415,
            "does not match stream data qcow2",
        ),
        ("qcow2", "base.raw", 415, "does not match stream data raw"),
        ("qcow2", "backing.qcow2", 415, "failed safety checks"),
        ("raw", "backing.qcow2", 415, "failed safety checks"),
        ("qcow2", "datafile.qcow2", 415, "failed safety checks"),
        ("vmdk", "flat.vmdk", 415, "failed safety checks"),
        ("vmdk", "split.vmdk", 415, "failed safety checks"),
        ("vmdk", "evil.vmdk", 415, "failed safety checks"),
        ("raw", "badboot.raw", 415, "failed safety checks"),
        ("raw", "badprot.raw", 415, "failed safety checks"),
        ("raw", "noprot.raw", 415, "failed safety checks"),
    ] {
        let (id, st, text) = upload_file(&s, disk, &d.join(file)).await;
        assert_eq!(st, code, "{disk} {file}: {text}");
        assert!(text.contains(msg), "{disk} {file}: {text}");
        let v = s.show(&id).await;
        assert_eq!(v["status"], "queued", "{file}");
        assert_eq!(v["size"], Value::Null);
        assert_eq!(v["checksum"], Value::Null);
        assert_eq!(s.store_files(), before, "{file} left bytes behind");
    }
}

async fn format_match_can_be_relaxed(b: Backend) {
    let Some(s) =
        Server::start_with(b, "[image_format]\nrequire_image_format_match = false\n").await
    else {
        return;
    };
    let d = work(&s);
    let p = d.join("plain.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", p.to_str().unwrap(), "10M"]);
    let (id, st, text) = upload_file(&s, "vmdk", &p).await;
    assert_eq!(st, 204, "{text}");
    assert_eq!(s.show(&id).await["virtual_size"], Value::Null);
    // Safety checks still apply.
    let bad = d.join("noprot.raw");
    make_gpt(&bad, 1, 0, false);
    let (_, st, _) = upload_file(&s, "raw", &bad).await;
    assert_eq!(st, 415);
}

/// `[image_format] gpt_safety_checks_nonfatal = mbr`: a GPT disk whose MBR has a bad boot flag
/// is accepted (with a warning in the log); a broken protective MBR ("gptmbr") still is not.
async fn gpt_checks_can_be_made_nonfatal(b: Backend) {
    let Some(s) = Server::start_with(b, "[image_format]\ngpt_safety_checks_nonfatal = mbr\n").await
    else {
        return;
    };
    let d = work(&s);
    make_gpt(&d.join("badboot.raw"), 1, 0x13, true);
    make_gpt(&d.join("badprot.raw"), 5, 0, true);
    let (id, st, text) = upload_file(&s, "raw", &d.join("badboot.raw")).await;
    assert_eq!(st, 204, "{text}");
    assert_eq!(s.show(&id).await["status"], "active");
    assert!(s.log().contains("non-fatal GPT safety check failed"));
    let (id, st, text) = upload_file(&s, "raw", &d.join("badprot.raw")).await;
    assert_eq!(st, 415, "{text}");
    assert_eq!(s.show(&id).await["status"], "queued");
}

both_databases!(
    every_format_gets_its_virtual_size,
    mismatched_and_unsafe_images_are_refused,
    format_match_can_be_relaxed,
    gpt_checks_can_be_made_nonfatal,
);
