//! The metadata definition catalog through the real clients (python-openstackclient's
//! `image metadef ...`, python-glanceclient's `md-*`), and the catalog files an operator
//! loads, exports and unloads with `glance-rs db ..._metadefs`. Parity of every route with the
//! real Glance is in tests/parity.rs.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Backend, Server, venv};
use serde_json::Value;

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap_or_else(|e| panic!("{e}: {}", ok(out)))
}

/// `openstack image metadef ARGS...`'s arguments.
fn md<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    [&["image", "metadef"][..], rest].concat()
}

fn glance_cli(venv: &Path, s: &Server, args: &[&str]) -> Output {
    Command::new(venv.join("bin/glance"))
        .args(["--os-auth-token", "x", "--os-image-url", &s.url])
        .args(args)
        .output()
        .unwrap()
}

/// `glance-rs db ARGS...` with the server's configuration.
fn manage(s: &Server, args: &[&str]) -> Output {
    Command::new(common::bin())
        .arg("--config-file")
        .arg(s.dir.path().join("glance-api.conf"))
        .arg("--config-file")
        .arg(s.dir.path().join("extra.conf"))
        .arg("db")
        .args(args)
        .output()
        .unwrap()
}

/// An operator's session with both clients: namespaces, properties, objects, tags and
/// resource type associations made, read, changed and removed; refusals reach the user.
async fn clients_manage_the_catalog(b: Backend) {
    let Some(venv) = venv() else { return };
    let Some(s) = Server::start(b).await else {
        return;
    };
    let os = |args: &[&str]| s.openstack(&venv, args);
    let ns = json_of(&os(&md(&[
        "namespace",
        "create",
        "Site::Hardware",
        "--display-name",
        "Site hardware",
        "--public",
        "--protected",
        "-f",
        "json",
    ])));
    assert_eq!(ns["visibility"], "public");
    assert_eq!(ns["protected"], true);
    let p = json_of(&os(&md(&[
        "property",
        "create",
        "--name",
        "rack",
        "--title",
        "Rack",
        "--type",
        "integer",
        "--schema",
        r#"{"minimum": 1, "default": 4}"#,
        "Site::Hardware",
        "-f",
        "json",
    ])));
    // Glance keeps a default as text.
    assert_eq!(p["default"], "4", "{p}");
    let o = json_of(&os(&md(&[
        "object",
        "create",
        "--namespace",
        "Site::Hardware",
        "chassis",
        "-f",
        "json",
    ])));
    assert_eq!(o["name"], "chassis");
    ok(&os(&md(&[
        "resource",
        "type",
        "association",
        "create",
        "Site::Hardware",
        "OS::Glance::Image",
        "-f",
        "json",
    ])));
    let listed = json_of(&os(&md(&["namespace", "list", "-f", "json"])));
    assert!(listed.to_string().contains("Site::Hardware"), "{listed}");
    let props = json_of(&os(&md(&[
        "property",
        "list",
        "Site::Hardware",
        "-f",
        "json",
    ])));
    assert!(props.to_string().contains("rack"), "{props}");
    let assocs = json_of(&os(&md(&[
        "resource",
        "type",
        "association",
        "list",
        "Site::Hardware",
        "-f",
        "json",
    ])));
    assert!(assocs.to_string().contains("OS::Glance::Image"), "{assocs}");

    // glanceclient's md-* commands on the same catalog.
    ok(&glance_cli(
        &venv,
        &s,
        &[
            "md-tag-create-multiple",
            "--names",
            "ssd,gpu",
            "Site::Hardware",
        ],
    ));
    let tags = ok(&glance_cli(&venv, &s, &["md-tag-list", "Site::Hardware"]));
    assert!(tags.contains("ssd") && tags.contains("gpu"), "{tags}");
    let shown = ok(&glance_cli(
        &venv,
        &s,
        &["md-namespace-show", "Site::Hardware"],
    ));
    assert!(
        shown.contains("rack") && shown.contains("Site hardware"),
        "{shown}"
    );
    let objects = ok(&glance_cli(
        &venv,
        &s,
        &["md-object-list", "Site::Hardware"],
    ));
    assert!(objects.contains("chassis"), "{objects}");
    let types = ok(&glance_cli(&venv, &s, &["md-resource-type-list"]));
    assert!(types.contains("OS::Glance::Image"), "{types}");
    let props = ok(&glance_cli(
        &venv,
        &s,
        &["md-property-list", "Site::Hardware"],
    ));
    assert!(props.contains("rack"), "{props}");

    // A protected namespace is kept, with the client showing Glance's words.
    let out = os(&md(&["namespace", "delete", "Site::Hardware"]));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("is protected and cannot be deleted"),
        "{said}"
    );
    // A duplicate name is refused.
    let out = os(&md(&["namespace", "create", "Site::Hardware"]));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Unprotected, it goes, with everything it held.
    ok(&os(&md(&[
        "namespace",
        "set",
        "Site::Hardware",
        "--unprotected",
    ])));
    ok(&os(&md(&["property", "delete", "Site::Hardware", "rack"])));
    ok(&os(&md(&["namespace", "delete", "Site::Hardware"])));
    let listed = json_of(&os(&md(&["namespace", "list", "-f", "json"])));
    assert_eq!(listed, Value::Array(vec![]), "{listed}");
    let left: Vec<(String, i64)> = s.counts().await;
    for (table, n) in left {
        if table.starts_with("metadef_") && table != "metadef_resource_types" {
            assert_eq!(n, 0, "{table} keeps rows of a deleted namespace");
        }
    }
}

/// openstacksdk's metadef calls (tests/clients/sdk_metadefs.py): each part made, read,
/// changed and removed; the ten schemas fetched.
async fn sdk_manages_the_catalog(b: Backend) {
    let Some(venv) = venv() else { return };
    let Some(s) = Server::start(b).await else {
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/sdk_metadefs.py");
    let out = Command::new(venv.join("bin/python"))
        .args([script, &s.url])
        .output()
        .unwrap();
    let stdout = ok(&out);
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    assert_eq!(seen["listed"], serde_json::json!(["SDK::Test"]), "{seen}");
    assert_eq!(seen["description"], "changed");
    assert_eq!(seen["properties"], serde_json::json!(["speed"]));
    assert_eq!(seen["objects"], serde_json::json!(["disk"]));
    assert_eq!(seen["tags"], serde_json::json!(["fast"]));
    assert_eq!(
        seen["associations"],
        serde_json::json!(["OS::Glance::Image"])
    );
    assert_eq!(seen["types"], serde_json::json!(["OS::Glance::Image"]));
    assert_eq!(seen["schemas"].as_array().map(Vec::len), Some(10), "{seen}");
    assert_eq!(seen["after"], serde_json::json!([]));
}

/// The definition files Glance ships (from the reference Glance's package): loaded, loaded
/// again (skipped without --merge), exported, unloaded and loaded back from the export: the
/// same catalog. glance-manage's option checks refuse what it refuses.
async fn catalog_files_round_trip(b: Backend) {
    let Some(glance) = common::glance_venv() else {
        return;
    };
    let files = glance.join("etc/glance/metadefs");
    let Some(s) = Server::start(b).await else {
        return;
    };
    let files = files.to_str().unwrap();
    let out = ok(&manage(&s, &["load_metadefs", files]));
    assert!(out.contains("32 namespaces loaded"), "{out}");
    let out = ok(&manage(&s, &["load_metadefs", "--path", files]));
    assert!(out.contains("0 namespaces loaded, 32 skipped"), "{out}");
    let bad = manage(&s, &["load_metadefs", files, "--prefer_new"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("combine of these options with --merge"));
    let catalog = |s: &Server| {
        let s = s.url.clone();
        async move {
            let http = reqwest::Client::new();
            let get = |p: String| {
                let http = http.clone();
                async move {
                    http.get(p)
                        .send()
                        .await
                        .unwrap()
                        .json::<Value>()
                        .await
                        .unwrap()
                }
            };
            let list = get(format!(
                "{s}/v2/metadefs/namespaces?limit=100&sort_key=namespace&sort_dir=asc"
            ))
            .await;
            let mut all = Vec::new();
            for ns in list["namespaces"].as_array().unwrap() {
                let name = ns["namespace"].as_str().unwrap();
                let mut shown = get(format!("{s}/v2/metadefs/namespaces/{name}")).await;
                // Times differ between the loads.
                strip_times(&mut shown);
                all.push(shown);
            }
            all
        }
    };
    let before = catalog(&s).await;
    assert_eq!(before.len(), 32);
    let export = tempfile::tempdir().unwrap();
    let out = ok(&manage(
        &s,
        &["export_metadefs", export.path().to_str().unwrap()],
    ));
    assert!(out.contains("32 namespaces written"), "{out}");
    ok(&manage(&s, &["unload_metadefs"]));
    assert!(catalog(&s).await.is_empty());
    let types = s.get_json("/v2/metadefs/resource_types").await;
    assert_eq!(types["resource_types"], Value::Array(vec![]));
    let out = ok(&manage(
        &s,
        &["load_metadefs", export.path().to_str().unwrap()],
    ));
    assert!(out.contains("32 namespaces loaded"), "{out}");
    let after = catalog(&s).await;
    assert_eq!(after.len(), before.len());
    for (a, b) in after.iter().zip(&before) {
        assert!(a == b, "{} differs after the round trip", b["namespace"]);
    }
}

/// Leaves out what a reload changes: the times, and the order of a namespace's resource type
/// associations on MariaDB (by resource type id, as Glance's query returns them there).
fn strip_times(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("created_at");
            m.remove("updated_at");
            if let Some(Value::Array(a)) = m.get_mut("resource_type_associations") {
                a.sort_by_key(|x| x["name"].to_string());
            }
            m.values_mut().for_each(strip_times);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_times),
        _ => {}
    }
}

both_databases!(
    clients_manage_the_catalog,
    sdk_manages_the_catalog,
    catalog_files_round_trip
);
