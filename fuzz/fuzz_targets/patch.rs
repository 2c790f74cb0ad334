//! An image PATCH body, parsed and applied as the handler does (schema check, policy, rules)
//! to an active image with a location, then rendered: never panics. The first byte chooses the
//! dialect, whether the caller is an admin and whether locations are shown.
#![no_main]

use std::sync::{Arc, LazyLock};

use glance_rs::api::images::render;
use glance_rs::api::schemas::Schemas;
use glance_rs::config::Config;
use glance_rs::domain::image::{Image, Location, Status, Visibility};
use glance_rs::domain::patch::{self, Dialect, PatchOptions};
use glance_rs::domain::policy::Context;
use glance_rs::domain::rules::Policy;
use libfuzzer_sys::fuzz_target;

static CFG: LazyLock<Config> = LazyLock::new(|| Config::load(&[]).expect("default config"));
static SCHEMAS: LazyLock<Schemas> = LazyLock::new(|| Schemas::new(&CFG));

fn image() -> Image {
    let now = chrono::DateTime::from_timestamp(1_700_000_000, 0)
        .expect("a valid time")
        .naive_utc();
    Image {
        id: "8a3f1c2e-0000-4000-8000-000000000001".into(),
        name: Some("cirros".into()),
        status: Status::Active,
        visibility: Visibility::Shared,
        protected: false,
        os_hidden: false,
        checksum: Some("d41d8cd98f00b204e9800998ecf8427e".into()),
        os_hash_algo: Some("sha512".into()),
        os_hash_value: Some("00".repeat(64)),
        owner: Some("p1".into()),
        size: Some(1024),
        virtual_size: None,
        container_format: Some("bare".into()),
        disk_format: Some("raw".into()),
        created_at: now,
        updated_at: now,
        min_ram: 0,
        min_disk: 0,
        tags: ["a".to_string()].into(),
        properties: [("hw_disk_bus".to_string(), "virtio".to_string())].into(),
        locations: vec![Location {
            url: "file:///var/lib/glance/images/8a3f1c2e-0000-4000-8000-000000000001".into(),
            metadata: serde_json::json!({"store": "file"}),
        }],
    }
}

fuzz_target!(|input: &[u8]| {
    let [flags, body @ ..] = input else { return };
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let dialect = if flags & 1 == 0 {
        Dialect::Draft10
    } else {
        Dialect::Draft4
    };
    let Ok(changes) = patch::parse(&body, dialect, &|v| SCHEMAS.validate_image(v)) else {
        return;
    };
    let mut ctx = Context::unauthenticated("req-fuzz".into(), Arc::new(Policy::default()));
    ctx.is_admin = flags & 2 != 0;
    ctx.project_id = Some("p1".into());
    let opts = PatchOptions {
        show_multiple_locations: flags & 4 != 0,
        image_location_quota: 3,
    };
    if let Ok(img) = patch::apply(&ctx, &image(), &changes, dialect, &opts) {
        let _ = render(&CFG, &img);
    }
});
