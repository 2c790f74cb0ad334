//! Policies as oslo.policy applies them and property protections as Glance applies them, on
//! the real binary (identities from noauth headers, as keystonemiddleware would pass them):
//! the policy file read as YAML with `policy_dirs` over it, token scope, the old defaults,
//! property protections in both formats, and the files that stop start-up. The same rules
//! against the real Glance under Keystone: tests/parity.rs.

mod common;

use common::{Backend, Server, status};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

fn as_(rb: RequestBuilder, project: &str, roles: &str) -> RequestBuilder {
    Server::as_project(rb, project, roles)
}

/// A system-scoped admin, as keystonemiddleware describes one.
fn as_system(rb: RequestBuilder) -> RequestBuilder {
    rb.header("X-System-Scope", "all")
        .header("X-Roles", "admin,member,reader")
}

fn patch_body(rb: RequestBuilder, ops: Value) -> RequestBuilder {
    rb.header(
        "Content-Type",
        "application/openstack-images-v2.1-json-patch",
    )
    .json(&ops)
}

/// The policy file is YAML (folded multi-line rules, quoted keys); each `policy_dirs` file
/// then overrides it, in name order; a reference to no rule is reported at start-up (and, as
/// in oslo.policy, evaluates the default rule); a rule that cannot be understood never passes.
async fn policy_file_and_dirs(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        "# site policy\n\
         'publicize_image': >-\n  role:admin\n  or (role:member and project_id:%(project_id)s)\n\
         \"delete_image\": \"role:nobody\"\n\
         communitize_image: rule:no_such_rule or role:nobody\n\
         deactivate: 'role:member and ('\n",
    )
    .unwrap();
    let d = dir.path().join("policy.d");
    std::fs::create_dir(&d).unwrap();
    // Read after policy.yaml, in name order: 20 wins over 10; hidden files are skipped.
    std::fs::write(d.join("10-a.json"), r#"{"delete_image": "!"}"#).unwrap();
    std::fs::write(
        d.join("20-b.yaml"),
        "delete_image: role:member and project_id:%(project_id)s\n",
    )
    .unwrap();
    std::fs::write(d.join(".hidden.yaml"), "delete_image: '!'\n").unwrap();
    let conf = format!(
        "[oslo_policy]\npolicy_file = {}\npolicy_dirs = {}\npolicy_default_rule = nope\n",
        dir.path().join("policy.yaml").display(),
        d.display()
    );
    let Some(s) = Server::start_with(b, &conf).await else {
        return;
    };
    let log = s.log();
    assert!(
        log.contains("communitize_image") && log.contains("not defined"),
        "the unknown rule is reported: {log}"
    );
    assert!(
        log.contains("deactivate") && log.contains("cannot be understood"),
        "{log}"
    );
    let p1 = |rb| as_(rb, "p1", "member,reader");
    let id = s.create_as("p1", json!({"name": "x"})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let img = format!("/v2/images/{id}");
    // The folded rule: a member publicizes its own project's image.
    let r = p1(s.req(Method::PATCH, &img));
    let r = patch_body(
        r,
        json!([{"op": "replace", "path": "/visibility", "value": "public"}]),
    );
    assert_eq!(status(r).await, 200);
    // rule:no_such_rule evaluates policy_default_rule "nope", which does not exist: refused.
    let r = patch_body(
        p1(s.req(Method::PATCH, &img)),
        json!([{"op": "replace", "path": "/visibility", "value": "community"}]),
    );
    let r = r.header("Accept", "application/json").send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("communitize_image"));
    // The broken rule never passes, even for an admin.
    let r = as_(
        s.req(Method::POST, &format!("{img}/actions/deactivate")),
        "p1",
        "admin",
    );
    assert_eq!(status(r).await, 403);
    // policy.d/20-b.yaml is the last word on delete_image.
    assert_eq!(status(p1(s.req(Method::DELETE, &img))).await, 204);
}

/// Every image rule is for project-scoped tokens: a system- or domain-scoped admin is refused
/// (403, or 404 where Glance hides the image), unless `enforce_scope = false`.
async fn scope_is_enforced(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let id = s.create_as("p1", json!({"name": "x"})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let img = format!("/v2/images/{id}");
    assert_eq!(status(as_system(s.get("/v2/images"))).await, 403);
    assert_eq!(status(as_system(s.get(&img))).await, 404);
    assert_eq!(status(as_system(s.req(Method::DELETE, &img))).await, 404);
    let r = as_system(s.req(Method::POST, "/v2/images")).json(&json!({"name": "s"}));
    assert_eq!(status(r).await, 403);
    let r = as_system(s.req(Method::POST, &format!("{img}/actions/deactivate")));
    assert_eq!(status(r).await, 404);
    let domain = |rb: RequestBuilder| {
        rb.header("X-Domain-Id", "default")
            .header("X-Roles", "admin")
    };
    assert_eq!(status(domain(s.get("/v2/images"))).await, 403);
    assert_eq!(s.show(&id).await["status"], "queued", "nothing changed");

    let Some(lax) = Server::start_with(b, "[oslo_policy]\nenforce_scope = false\n").await else {
        return;
    };
    assert_eq!(status(as_system(lax.get("/v2/images"))).await, 200);
    let id = lax.create_as("p1", json!({"name": "x"})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        status(as_system(lax.get(&format!("/v2/images/{id}")))).await,
        200
    );
    assert!(lax.log().contains("enforce_scope = false"));
}

/// Project personas under the defaults: a reader reads but neither downloads nor changes; a
/// member of another project sees nothing private; a member project's reader cannot accept.
async fn readers_and_members(b: Backend) {
    let Some(s) = Server::start(b).await else {
        return;
    };
    let reader = |rb| as_(rb, "p1", "reader");
    let queued = s.create_as("p1", json!({"name": "q"})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Data or not, download_image is checked first.
    let file = format!("/v2/images/{queued}/file");
    assert_eq!(status(reader(s.get(&file))).await, 403);
    assert_eq!(status(as_(s.get(&file), "p1", "member,reader")).await, 204);
    assert_eq!(
        status(reader(s.get(&format!("/v2/images/{queued}")))).await,
        200
    );
    let r = reader(s.req(Method::PUT, &file))
        .header("Content-Type", "application/octet-stream")
        .body("abc");
    assert_eq!(status(r).await, 403);
    assert_eq!(
        status(reader(s.req(Method::POST, "/v2/images")).json(&json!({}))).await,
        403
    );
    // Another project's member: the private image does not exist for it.
    let other = |rb| as_(rb, "p2", "member,reader");
    assert_eq!(
        status(other(s.get(&format!("/v2/images/{queued}")))).await,
        404
    );
    assert_eq!(
        status(other(
            s.req(Method::DELETE, &format!("/v2/images/{queued}"))
        ))
        .await,
        404
    );
    // Shared with p2: p2's reader sees it but may not accept it; p2's member may.
    let shared = s
        .create_as("p1", json!({"name": "s", "visibility": "shared"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let add = as_(
        s.req(Method::POST, &format!("/v2/images/{shared}/members")),
        "p1",
        "member,reader",
    )
    .json(&json!({"member": "p2"}));
    assert_eq!(status(add).await, 200);
    let member = format!("/v2/images/{shared}/members/p2");
    let accept = |roles: &str| {
        as_(s.req(Method::PUT, &member), "p2", roles).json(&json!({"status": "accepted"}))
    };
    let r = accept("reader")
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("modify_member"));
    assert_eq!(status(accept("member,reader")).await, 200);
    // The owner's reader lists the members but may not add one.
    let list = reader(s.get(&format!("/v2/images/{shared}/members")));
    assert_eq!(status(list).await, 200);
    let add = reader(s.req(Method::POST, &format!("/v2/images/{shared}/members")))
        .json(&json!({"member": "p3"}));
    assert_eq!(status(add).await, 403);
}

/// `enforce_new_defaults = false`: each rule is ORed with the one it replaced (`rule:default`,
/// which passes), and Glance's legacy owner checks decide instead.
async fn old_defaults(b: Backend) {
    let Some(s) = Server::start_with(b, "[oslo_policy]\nenforce_new_defaults = false\n").await
    else {
        return;
    };
    let id = s
        .create_as("p1", json!({"name": "x", "visibility": "community"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let img = format!("/v2/images/{id}");
    // A reader of the owning project may now change it; another project may not.
    let r = patch_body(
        as_(s.req(Method::PATCH, &img), "p1", "reader"),
        json!([{"op": "replace", "path": "/name", "value": "y"}]),
    );
    assert_eq!(status(r).await, 200);
    let r = patch_body(
        as_(s.req(Method::PATCH, &img), "p2", "member"),
        json!([{"op": "replace", "path": "/name", "value": "z"}]),
    )
    .header("Accept", "application/json");
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("You do not own this image")
    );
    let r = as_(s.req(Method::POST, "/v2/images"), "p1", "member")
        .json(&json!({"name": "o", "owner": "p2"}))
        .header("Accept", "application/json");
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("owned by 'p2'."));
}

const PROTECTIONS: &str = "[^x_owner_.*]\ncreate = admin,member\nread = admin,member\n\
    update = admin,member\ndelete = admin,member\n\n[^x_secret$]\ncreate = admin\nread = admin\n\
    update = admin\ndelete = admin\n\n[^x_open_.*]\ncreate = @\nread = @\nupdate = @\ndelete = @\n";

/// Property protections (roles format): a property is invisible to those who may not read it
/// and refused to those who may not write it; a name no section matches is refused to all.
/// Unlike Glance, saving an image never drops the properties its editor cannot read.
async fn property_protections(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("protections.conf");
    std::fs::write(&file, PROTECTIONS).unwrap();
    let conf = format!("[DEFAULT]\nproperty_protection_file = {}\n", file.display());
    let Some(s) = Server::start_with(b, &conf).await else {
        return;
    };
    let admin = |rb| as_(rb, "p1", "admin,member,reader");
    let member = |rb| as_(rb, "p1", "member,reader");
    let reader = |rb| as_(rb, "p1", "reader");
    let r = admin(s.req(Method::POST, "/v2/images"))
        .json(&json!({"name": "x", "x_owner_a": "1", "x_secret": "2", "x_open_c": "3"}));
    let v: Value = r.send().await.unwrap().json().await.unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let img = format!("/v2/images/{id}");
    let props = |v: &Value| {
        let mut k: Vec<String> = v
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with("x_"))
            .cloned()
            .collect();
        k.sort();
        k
    };
    let shown = |rb: RequestBuilder| async move {
        let v: Value = rb.send().await.unwrap().json().await.unwrap();
        props(&v)
    };
    assert_eq!(
        shown(admin(s.get(&img))).await,
        ["x_open_c", "x_owner_a", "x_secret"]
    );
    assert_eq!(shown(member(s.get(&img))).await, ["x_open_c", "x_owner_a"]);
    assert_eq!(shown(reader(s.get(&img))).await, ["x_open_c"]);
    let listed: Value = member(s.get("/v2/images"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(props(&listed["images"][0]), ["x_open_c", "x_owner_a"]);

    let patch = |rb: RequestBuilder, op: &str, path: &str| {
        let mut change = json!({"op": op, "path": path});
        if op != "remove" {
            change["value"] = json!("9");
        }
        patch_body(rb, json!([change])).header("Accept", "application/json")
    };
    let answer = |rb: RequestBuilder| async move {
        let r = rb.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    // What the member cannot read does not exist for it; what it cannot write is reserved.
    let (st, body) = answer(patch(
        member(s.req(Method::PATCH, &img)),
        "replace",
        "/x_secret",
    ))
    .await;
    assert_eq!(st, 409, "{body}");
    assert!(body.contains("Property x_secret does not exist."));
    let (st, body) = answer(patch(
        member(s.req(Method::PATCH, &img)),
        "add",
        "/x_secret",
    ))
    .await;
    assert_eq!(st, 403);
    assert!(body.contains("Attribute 'x_secret' is reserved."), "{body}");
    let (st, _) = answer(patch(
        member(s.req(Method::PATCH, &img)),
        "remove",
        "/x_secret",
    ))
    .await;
    assert_eq!(st, 409);
    let (st, _) = answer(patch(
        member(s.req(Method::PATCH, &img)),
        "add",
        "/x_unlisted",
    ))
    .await;
    assert_eq!(st, 403, "a name no section matches");
    let (st, _) = answer(patch(
        member(s.req(Method::PATCH, &img)),
        "replace",
        "/x_owner_a",
    ))
    .await;
    assert_eq!(st, 200);
    let (st, _) = answer(patch(
        member(s.req(Method::PATCH, &img)),
        "remove",
        "/x_owner_a",
    ))
    .await;
    assert_eq!(st, 200);
    // Created only by who may.
    let r = member(s.req(Method::POST, "/v2/images"))
        .json(&json!({"name": "m", "x_secret": "1"}))
        .header("Accept", "application/json");
    let (st, body) = answer(r).await;
    assert_eq!(st, 403);
    assert!(body.contains("Attribute 'x_secret' is reserved."), "{body}");
    // The member's saves kept the secret it could not see.
    assert_eq!(shown(admin(s.get(&img))).await, ["x_open_c", "x_secret"]);
}

/// The `policies` format: each operation names a rule of the policy file.
async fn property_protections_as_policies(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("protections.conf");
    std::fs::write(
        &file,
        "[^spl_.*]\ncreate = spl_writer\nread = @\nupdate = spl_writer\ndelete = !\n\n\
         [.*]\ncreate = @\nread = @\nupdate = @\ndelete = @\n",
    )
    .unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "spl_writer: role:admin or role:spl_role\n").unwrap();
    let conf = format!(
        "[DEFAULT]\nproperty_protection_file = {}\nproperty_protection_rule_format = policies\n\
         [oslo_policy]\npolicy_file = {}\n",
        file.display(),
        policy.display()
    );
    let Some(s) = Server::start_with(b, &conf).await else {
        return;
    };
    let create = |roles: &str| {
        as_(s.req(Method::POST, "/v2/images"), "p1", roles)
            .json(&json!({"name": "x", "spl_a": "1"}))
    };
    assert_eq!(status(create("member,reader")).await, 403);
    let r = create("member,reader,spl_role").send().await.unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = patch_body(
        as_(
            s.req(Method::PATCH, &format!("/v2/images/{id}")),
            "p1",
            "admin",
        ),
        json!([{"op": "remove", "path": "/spl_a"}]),
    );
    assert_eq!(status(r).await, 403, "delete = ! refuses even admins");
}

/// A property protection file that cannot be used stops start-up, naming the file and line.
#[test]
fn bad_protection_files_stop_startup() {
    let dir = tempfile::tempdir().unwrap();
    for (text, format, expect) in [
        (
            "[a]\ncreate = @\nread = @\nupdate = @\ndelete = @\n\n[b]\ncreate = @\nread = @\n",
            "roles",
            "line 7",
        ),
        (
            "[a]\ncreate = @,!\nread = @\nupdate = @\ndelete = @\n",
            "roles",
            "mutually",
        ),
        (
            "[(]\ncreate = @\nread = @\nupdate = @\ndelete = @\n",
            "roles",
            "regular expression",
        ),
        (
            "[a]\ncreate = x,y\nread = @\nupdate = @\ndelete = @\n",
            "policies",
            "one policy",
        ),
    ] {
        let file = dir.path().join("p.conf");
        std::fs::write(&file, text).unwrap();
        let conf = dir.path().join("g.conf");
        std::fs::write(
            &conf,
            format!(
                "[DEFAULT]\nproperty_protection_file = {}\nproperty_protection_rule_format = {format}\n",
                file.display()
            ),
        )
        .unwrap();
        let out = std::process::Command::new(common::bin())
            .args(["--config-file", conf.to_str().unwrap()])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(
            err.contains("property_protection_file") && err.contains(expect),
            "{expect}: {err}"
        );
    }
}

both_databases!(
    policy_file_and_dirs,
    scope_is_enforced,
    readers_and_members,
    old_defaults,
    property_protections,
    property_protections_as_policies
);
