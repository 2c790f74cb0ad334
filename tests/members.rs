//! Image sharing between projects (identity from noauth headers): only shared images take
//! members, the owner adds and removes them, the member accepts or rejects, a member sees
//! only itself, and `member_status` decides what shared images a project lists.

mod common;

use common::{Backend, Server, status};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

fn as_p(rb: RequestBuilder, p: &str) -> RequestBuilder {
    Server::as_project(rb, p, "member,reader")
}

async fn ids(s: &Server, project: &str, q: &str) -> Vec<String> {
    let r = as_p(s.get(&format!("/v2/images{q}")), project)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

async fn sharing_flow(b: Backend) {
    let Some(s) = Server::start_with(b, "[DEFAULT]\nimage_member_quota = 2\n").await else {
        return;
    };
    let img = s
        .create_as("p1", json!({"name": "shared", "visibility": "shared"}))
        .await;
    let id = img["id"].as_str().unwrap().to_string();
    let members = format!("/v2/images/{id}/members");
    let member = |m: &str| format!("/v2/images/{id}/members/{m}");

    assert!(ids(&s, "p2", "").await.is_empty());
    assert_eq!(
        status(as_p(s.get(&format!("/v2/images/{id}")), "p2")).await,
        404
    );
    // Only the owner adds members.
    let r = as_p(s.req(Method::POST, &members), "p2")
        .json(&json!({"member": "p2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "p2 cannot see the image yet");
    for (body, code) in [
        (json!({}), 400),
        (json!({"member": ""}), 400),
        (json!({"member": 5}), 400),
    ] {
        let r = as_p(s.req(Method::POST, &members), "p1")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), code, "{body}");
    }
    let r = as_p(s.req(Method::POST, &members), "p1")
        .json(&json!({"member": "p2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let raw = r.text().await.unwrap();
    // Glance's key order and spacing.
    let start =
        format!(r#"{{"member_id": "p2", "image_id": "{id}", "status": "pending", "created_at": ""#);
    assert!(raw.starts_with(&start), "{raw}");
    assert!(
        raw.ends_with(r#"Z", "schema": "/v2/schemas/member"}"#),
        "{raw}"
    );
    let m: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(m["status"], "pending");
    assert_eq!(m["member_id"], "p2");
    assert_eq!(m["image_id"], id);
    assert_eq!(m["schema"], "/v2/schemas/member");
    let r = as_p(s.req(Method::POST, &members), "p1")
        .json(&json!({"member": "p2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(
        status(as_p(s.req(Method::POST, &members), "p1").json(&json!({"member": "p3"}))).await,
        200
    );
    let r = as_p(s.req(Method::POST, &members), "p1")
        .json(&json!({"member": "p4"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "image_member_quota");

    // Pending: p2 sees the image by id, not in its default list.
    assert_eq!(
        status(as_p(s.get(&format!("/v2/images/{id}")), "p2")).await,
        200
    );
    assert!(ids(&s, "p2", "").await.is_empty());
    assert_eq!(
        ids(&s, "p2", "?member_status=pending").await,
        vec![id.clone()]
    );
    assert_eq!(ids(&s, "p2", "?member_status=all").await, vec![id.clone()]);
    // A member sees only itself; the owner sees all.
    let v: Value = as_p(s.get(&members), "p2")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["members"].as_array().unwrap().len(), 1);
    assert_eq!(v["schema"], "/v2/schemas/members");
    let v: Value = as_p(s.get(&members), "p1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["members"].as_array().unwrap().len(), 2);
    assert_eq!(status(as_p(s.get(&member("p3")), "p2")).await, 404);

    // Only the member sets its status, to a known one.
    for (who, to, code) in [
        ("p1", "accepted", 403),
        ("p2", "maybe", 400),
        ("p2", "accepted", 200),
    ] {
        let r = as_p(s.req(Method::PUT, &member("p2")), who)
            .json(&json!({"status": to}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), code, "{who} -> {to}");
        if code == 200 {
            assert_eq!(r.json::<Value>().await.unwrap()["status"], "accepted");
        }
    }
    assert_eq!(ids(&s, "p2", "").await, vec![id.clone()]);
    assert_eq!(ids(&s, "p2", "?visibility=shared").await, vec![id.clone()]);
    // A member cannot modify the image.
    let r = as_p(s.req(Method::PATCH, &format!("/v2/images/{id}")), "p2")
        .header(
            "Content-Type",
            "application/openstack-images-v2.1-json-patch",
        )
        .json(&json!([{"op": "replace", "path": "/name", "value": "mine"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Rejected: out of the default list, still listed on request.
    let r = as_p(s.req(Method::PUT, &member("p3")), "p3")
        .json(&json!({"status": "rejected"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(ids(&s, "p3", "").await.is_empty());
    assert_eq!(
        ids(&s, "p3", "?member_status=rejected").await,
        vec![id.clone()]
    );

    // Removal by the owner only; then p2 no longer sees it.
    assert_eq!(
        status(as_p(s.req(Method::DELETE, &member("p2")), "p2")).await,
        403
    );
    assert_eq!(
        status(as_p(s.req(Method::DELETE, &member("p2")), "p1")).await,
        204
    );
    assert_eq!(
        status(as_p(s.req(Method::DELETE, &member("p2")), "p1")).await,
        404
    );
    assert_eq!(
        status(as_p(s.get(&format!("/v2/images/{id}")), "p2")).await,
        404
    );

    // Only shared images have members, refused in Glance's words for the operation.
    let private = s
        .create_as("p1", json!({"name": "private", "visibility": "private"}))
        .await;
    let pid = private["id"].as_str().unwrap();
    let r = as_p(
        s.req(Method::POST, &format!("/v2/images/{pid}/members")),
        "p1",
    )
    .header("Accept", "application/json")
    .json(&json!({"member": "p2"}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    let want = format!("Not allowed to create members for image {pid}.");
    assert!(r.text().await.unwrap().contains(&want));
}

both_databases!(sharing_flow);
