//! Image members: sharing a `shared` image with other projects. The owner adds and removes
//! members; each member accepts or rejects; a member sees only its own entry. Every function
//! makes Glance's checks in Glance's order: the image, shared, the legacy owner check, the
//! member, the policy, then the request's values.

use crate::app::App;
use crate::db::members::Member;
use crate::domain::fault::{Fault, MemberOp};
use crate::domain::image::{Image, Visibility};
use crate::domain::policy::Context;
use crate::error::Result;

/// The statuses a member can be given.
pub const STATUSES: &[&str] = &["pending", "accepted", "rejected"];

/// Only shared images have members: Glance checks this first.
fn shared_only(img: &Image, op: MemberOp) -> Result<(), Fault> {
    if img.visibility == Visibility::Shared {
        return Ok(());
    }
    Err(Fault::MembersRefused {
        image: img.id.clone(),
        op,
        not_shared: true,
    })
}

/// Glance's legacy ownership checks, made only with `enforce_new_defaults = false` (the rules
/// then let anyone through): only the owner adds and removes members, only members set their
/// status.
fn legacy_owner_check(ctx: &Context, img: &Image, op: MemberOp) -> Result<(), Fault> {
    if ctx.new_defaults() || ctx.is_admin {
        return Ok(());
    }
    let refused = match op {
        MemberOp::Create | MemberOp::Delete => !ctx.owns(img),
        MemberOp::Update => ctx.owns(img),
        MemberOp::List | MemberOp::Show => false,
    };
    if refused {
        return Err(Fault::MembersRefused {
            image: img.id.clone(),
            op,
            not_shared: false,
        });
    }
    Ok(())
}

/// The parent image of a member operation, once it is shared and (new defaults off) the
/// caller's to manage.
async fn image_for(app: &App, ctx: &Context, id: &str, op: MemberOp) -> Result<Image, Fault> {
    let img = app.parent_image(ctx, id).await?;
    shared_only(&img, op)?;
    legacy_owner_check(ctx, &img, op)?;
    Ok(img)
}

/// Members the caller may see (Glance's database layer): all for the owner and admins, else
/// only its own entry.
fn visible_to(ctx: &Context, img: &Image, members: Vec<Member>) -> Vec<Member> {
    if ctx.is_admin || ctx.owns(img) {
        return members;
    }
    members
        .into_iter()
        .filter(|m| Some(&m.member_id) == ctx.project_id.as_ref())
        .collect()
}

/// `member` of the image, once `get_member` allows looking.
async fn find(app: &App, ctx: &Context, img: &Image, member: &str) -> Result<Member, Fault> {
    ctx.on_image(img).enforce_member("get_member")?;
    let members = visible_to(ctx, img, app.db.list_members(&img.id).await?);
    members
        .into_iter()
        .find(|m| m.member_id == member)
        .ok_or_else(|| not_a_member(&img.id, member))
}

fn not_a_member(image: &str, member: &str) -> Fault {
    Fault::NotAMember {
        image: image.into(),
        member: member.into(),
    }
}

pub async fn list(app: &App, ctx: &Context, id: &str) -> Result<Vec<Member>> {
    let img = image_for(app, ctx, id, MemberOp::List).await?;
    let checks = ctx.on_image(&img);
    checks.enforce_member("get_members")?;
    // Each member is shown if get_member allows it (its target is the image: all or none).
    if !checks.allows("get_member") {
        return Ok(Vec::new());
    }
    Ok(visible_to(ctx, &img, app.db.list_members(id).await?))
}

pub async fn show(app: &App, ctx: &Context, id: &str, member: &str) -> Result<Member> {
    let img = image_for(app, ctx, id, MemberOp::Show).await?;
    // Glance answers a refused get_member as not found, in the policy's words.
    match find(app, ctx, &img, member).await {
        Err(Fault::Denied { action }) => Err(Fault::DeniedAsNotFound { action }.into()),
        other => Ok(other?),
    }
}

pub async fn add(app: &App, ctx: &Context, id: &str, member: &str) -> Result<Member> {
    let img = image_for(app, ctx, id, MemberOp::Create).await?;
    ctx.on_image(&img).enforce_member("add_member")?;
    crate::domain::unicode::check_fields([(
        "member",
        crate::domain::unicode::Field::Text(Some(member)),
    )])
    .map_err(|what| Fault::FourByte {
        what,
        context: None,
    })?;
    let m = app
        .db
        .add_member(id, member, app.cfg.image_member_quota)
        .await?;
    tracing::info!(image_id = %id, member, "member added");
    app.notifier.member("image.member.create", &m, false);
    Ok(m)
}

/// Sets a member's status; `status` is checked last, as in Glance's domain model.
pub async fn set_status(
    app: &App,
    ctx: &Context,
    id: &str,
    member: &str,
    status: &str,
) -> Result<Member> {
    let img = image_for(app, ctx, id, MemberOp::Update).await?;
    let mut m = find(app, ctx, &img, member).await?;
    ctx.on_image(&img).enforce_member("modify_member")?;
    if !STATUSES.contains(&status) {
        return Err(Fault::InvalidMemberStatus.into());
    }
    if !app.db.set_member_status(&mut m, status).await? {
        return Err(not_a_member(id, member).into());
    }
    tracing::info!(image_id = %id, member, status, "member status set");
    app.notifier.member("image.member.update", &m, false);
    Ok(m)
}

pub async fn remove(app: &App, ctx: &Context, id: &str, member: &str) -> Result<()> {
    let img = image_for(app, ctx, id, MemberOp::Delete).await?;
    let m = find(app, ctx, &img, member).await?;
    ctx.on_image(&img).enforce_member("delete_member")?;
    if !app.db.delete_member(id, member).await? {
        return Err(not_a_member(id, member).into());
    }
    tracing::info!(image_id = %id, member, "member removed");
    app.notifier.member("image.member.delete", &m, true);
    Ok(())
}
