//! The image repository: images with their properties, tags, locations and members.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{NaiveDateTime, Timelike, Utc};
use sqlx::Row;

use super::{Db, bind_all, with_pool};
use crate::domain::fault::{Fault, Lookup, Result};
use crate::domain::image::{Image, Location, Status, Visibility};
use crate::domain::policy::Context;
use crate::domain::query::{Cond, ListQuery, MemberStatus, SortKey, Val};

const IMAGE_COLUMNS: &str = "images.id, images.name, images.size, images.status, images.created_at, \
    images.updated_at, images.disk_format, images.container_format, images.checksum, images.owner, \
    images.min_disk, images.min_ram, images.protected, images.virtual_size, \
    CONCAT('', images.visibility) AS visibility, images.os_hidden, images.os_hash_algo, images.os_hash_value";

/// Glance keeps timestamps to the second (DATETIME columns).
pub fn now() -> NaiveDateTime {
    let t = Utc::now().naive_utc();
    t.with_nanosecond(0).unwrap_or(t)
}

/// The columns of an `images` row, before tags, properties and locations are attached.
macro_rules! decode_image {
    ($row:expr) => {{
        let row = $row;
        let status: String = row.try_get("status")?;
        let visibility: String = row.try_get("visibility")?;
        let created_at: NaiveDateTime = row.try_get("created_at")?;
        let updated_at: Option<NaiveDateTime> = row.try_get("updated_at")?;
        Image {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            status: Status::parse(&status).unwrap_or(Status::Killed),
            visibility: Visibility::parse(&visibility).unwrap_or(Visibility::Private),
            protected: row.try_get("protected")?,
            os_hidden: row.try_get("os_hidden")?,
            checksum: row.try_get("checksum")?,
            os_hash_algo: row.try_get("os_hash_algo")?,
            os_hash_value: row.try_get("os_hash_value")?,
            owner: row.try_get("owner")?,
            size: row.try_get("size")?,
            virtual_size: row.try_get("virtual_size")?,
            container_format: row.try_get("container_format")?,
            disk_format: row.try_get("disk_format")?,
            created_at,
            updated_at: updated_at.unwrap_or(created_at),
            min_ram: row.try_get::<i64, _>("min_ram")?,
            min_disk: row.try_get::<i64, _>("min_disk")?,
            tags: BTreeSet::new(),
            properties: BTreeMap::new(),
            locations: Vec::new(),
        }
    }};
}

/// The SQL expression a sort key orders by: NULLs become a constant so that ordering and the
/// marker comparison agree on both databases.
fn sort_expr(k: SortKey) -> &'static str {
    match k {
        SortKey::Name => "COALESCE(images.name, '')",
        SortKey::ContainerFormat => "COALESCE(images.container_format, '')",
        SortKey::DiskFormat => "COALESCE(images.disk_format, '')",
        SortKey::Size => "COALESCE(images.size, -1)",
        SortKey::Status => "images.status",
        SortKey::Id => "images.id",
        SortKey::CreatedAt => "images.created_at",
        SortKey::UpdatedAt => "images.updated_at",
    }
}

fn sort_value(img: &Image, k: SortKey) -> Val {
    match k {
        SortKey::Name => Val::Str(img.name.clone().unwrap_or_default()),
        SortKey::ContainerFormat => Val::Str(img.container_format.clone().unwrap_or_default()),
        SortKey::DiskFormat => Val::Str(img.disk_format.clone().unwrap_or_default()),
        SortKey::Size => Val::Int(img.size.unwrap_or(-1)),
        SortKey::Status => Val::Str(img.status.as_str().into()),
        SortKey::Id => Val::Str(img.id.clone()),
        SortKey::CreatedAt => Val::Time(img.created_at),
        SortKey::UpdatedAt => Val::Time(img.updated_at),
    }
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// What an upload produced, recorded when the image becomes active.
#[derive(Debug, Clone)]
pub struct UploadResult {
    pub size: i64,
    pub checksum: String,
    pub os_hash_algo: String,
    pub os_hash_value: String,
    pub virtual_size: Option<i64>,
    pub location: Location,
}

impl Db {
    /// A live (not deleted) image with everything attached.
    pub async fn get_image(&self, id: &str) -> Result<Option<Image>> {
        let sql = format!(
            "SELECT {IMAGE_COLUMNS} FROM images WHERE images.id = ? AND images.deleted = 0"
        );
        let sql = self.dialect(&sql);
        let img = with_pool!(self, |p| {
            let row = sqlx::query(&sql).bind(id).fetch_optional(p).await?;
            match row {
                Some(r) => Some(decode_image!(&r)),
                None => None,
            }
        });
        match img {
            Some(img) => Ok(self.attach(vec![img]).await?.pop()),
            None => Ok(None),
        }
    }

    /// Whether the project is a member of the image (any status).
    pub async fn is_member(&self, image_id: &str, project: Option<&str>) -> Result<bool> {
        let Some(project) = project else {
            return Ok(false);
        };
        let sql =
            "SELECT COUNT(*) FROM image_members WHERE image_id = ? AND member = ? AND deleted = 0";
        let n: i64 = with_pool!(self, |p| sqlx::query_scalar(sql)
            .bind(image_id)
            .bind(project)
            .fetch_one(p)
            .await?);
        Ok(n > 0)
    }

    /// `create_image_once`, run again when the database picks it as a deadlock victim or Galera's
    /// certification fails, as oslo.db retries.
    pub async fn create_image(&self, img: &Image) -> Result<()> {
        super::retry_busy(|| self.create_image_once(img)).await
    }

    async fn create_image_once(&self, img: &Image) -> Result<()> {
        let res: Result<bool, sqlx::Error> = with_pool!(self, |p| {
            async {
            let mut tx = super::begin_write(p).await?;
            sqlx::query(
                "INSERT INTO images (id, name, size, status, created_at, updated_at, deleted, \
                 disk_format, container_format, checksum, owner, min_disk, min_ram, protected, \
                 virtual_size, visibility, os_hidden, os_hash_algo, os_hash_value) \
                 VALUES (?, ?, NULL, ?, ?, ?, 0, ?, ?, NULL, ?, ?, ?, ?, NULL, ?, ?, NULL, NULL)",
            )
            .bind(&img.id)
            .bind(&img.name)
            .bind(img.status.as_str())
            .bind(img.created_at)
            .bind(img.updated_at)
            .bind(&img.disk_format)
            .bind(&img.container_format)
            .bind(&img.owner)
            .bind(img.min_disk)
            .bind(img.min_ram)
            .bind(img.protected)
            .bind(img.visibility.as_str())
            .bind(img.os_hidden)
            .execute(&mut *tx)
            .await?;
            // After the insert: it waits for a purge holding the row, whose tombstone this
            // read then sees.
            let purged: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM glance_rs_purged_images WHERE id = ?")
                    .bind(&img.id)
                    .fetch_one(&mut *tx)
                    .await?;
            if purged > 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            for (k, v) in &img.properties {
                sqlx::query(
                    "INSERT INTO image_properties (image_id, name, value, created_at, updated_at, deleted) \
                     VALUES (?, ?, ?, ?, ?, 0)",
                )
                .bind(&img.id)
                .bind(k)
                .bind(v)
                .bind(img.created_at)
                .bind(img.created_at)
                .execute(&mut *tx)
                .await?;
            }
            for t in &img.tags {
                sqlx::query(
                    "INSERT INTO image_tags (image_id, value, created_at, updated_at, deleted) VALUES (?, ?, ?, ?, 0)",
                )
                .bind(&img.id)
                .bind(t)
                .bind(img.created_at)
                .bind(img.created_at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        }
        .await
        });
        match res {
            Ok(true) => Ok(()),
            Ok(false) => Err(Fault::DuplicateImage { id: img.id.clone() }),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(Fault::DuplicateImage { id: img.id.clone() })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Saves what a client may change (attributes, properties, tags, locations) from `old` to
    /// `new` in one transaction. Status, size and hashes change here only when a location
    /// activates a queued image, and only if the image is still in `old`'s status.
    /// `save_image_once`, run again when the database picks it as a deadlock victim or Galera's
    /// certification fails, as oslo.db retries.
    pub async fn save_image(&self, old: &Image, new: &Image) -> Result<()> {
        super::retry_busy(|| self.save_image_once(old, new)).await
    }

    async fn save_image_once(&self, old: &Image, new: &Image) -> Result<()> {
        let ts = now();
        let removed_props: Vec<&String> = old
            .properties
            .keys()
            .filter(|k| !new.properties.contains_key(*k))
            .collect();
        let changed_props: Vec<(&String, &String)> = new
            .properties
            .iter()
            .filter(|(k, v)| old.properties.get(*k) != Some(*v))
            .collect();
        let removed_tags: Vec<&String> = old.tags.difference(&new.tags).collect();
        let removed_locs: Vec<&Location> = old
            .locations
            .iter()
            .filter(|l| !new.locations.iter().any(|n| n.url == l.url))
            .collect();
        let added_locs: Vec<&Location> = new
            .locations
            .iter()
            .filter(|l| !old.locations.iter().any(|o| o.url == l.url))
            .collect();
        let added_tags: Vec<&String> = new.tags.difference(&old.tags).collect();
        // The locations are written as a difference from `old`'s: if another request changed
        // them since `old` was read, that difference is wrong (two removals of different
        // locations would leave none), so the locations read again must be `old`'s. The row
        // lock the first UPDATE takes orders such saves; MySQL's plain SELECT would read this
        // transaction's snapshot, hence FOR UPDATE (the latest committed rows).
        let locs_change = !removed_locs.is_empty() || !added_locs.is_empty();
        let read_locs = format!(
            "SELECT value FROM image_locations WHERE image_id = ? AND deleted = 0 \
             AND status = 'active'{}",
            if matches!(self, Db::MySql(_)) {
                " FOR UPDATE"
            } else {
                ""
            }
        );
        let rows = with_pool!(self, |p| {
            let mut tx = super::begin_write(p).await?;
            let r = sqlx::query(
                "UPDATE images SET name = ?, visibility = ?, protected = ?, os_hidden = ?, owner = ?, \
                 container_format = ?, disk_format = ?, min_ram = ?, min_disk = ?, updated_at = ? \
                 WHERE id = ? AND deleted = 0",
            )
            .bind(&new.name)
            .bind(new.visibility.as_str())
            .bind(new.protected)
            .bind(new.os_hidden)
            .bind(&new.owner)
            .bind(&new.container_format)
            .bind(&new.disk_format)
            .bind(new.min_ram)
            .bind(new.min_disk)
            .bind(ts)
            .bind(&new.id)
            .execute(&mut *tx)
            .await?;
            if locs_change && r.rows_affected() == 1 {
                let now: Vec<String> = sqlx::query_scalar(&read_locs)
                    .bind(&new.id)
                    .fetch_all(&mut *tx)
                    .await?;
                let same = now.len() == old.locations.len()
                    && old.locations.iter().all(|l| now.contains(&l.url));
                if !same {
                    tx.rollback().await?;
                    return Err(Fault::ChangedMeanwhile {
                        image: new.id.clone(),
                    });
                }
            }
            for k in &removed_props {
                sqlx::query("DELETE FROM image_properties WHERE image_id = ? AND name = ?")
                    .bind(&new.id)
                    .bind(*k)
                    .execute(&mut *tx)
                    .await?;
            }
            for (k, v) in &changed_props {
                // Delete-then-insert is portable where upsert syntax is not.
                sqlx::query("DELETE FROM image_properties WHERE image_id = ? AND name = ?")
                    .bind(&new.id)
                    .bind(*k)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO image_properties (image_id, name, value, created_at, updated_at, deleted) \
                     VALUES (?, ?, ?, ?, ?, 0)",
                )
                .bind(&new.id)
                .bind(*k)
                .bind(*v)
                .bind(ts)
                .bind(ts)
                .execute(&mut *tx)
                .await?;
            }
            for loc in &removed_locs {
                sqlx::query(
                    "UPDATE image_locations SET deleted = 1, deleted_at = ?, status = 'deleted' \
                     WHERE image_id = ? AND value = ? AND deleted = 0",
                )
                .bind(ts)
                .bind(&new.id)
                .bind(&loc.url)
                .execute(&mut *tx)
                .await?;
            }
            for loc in &added_locs {
                sqlx::query(
                    "INSERT INTO image_locations (image_id, value, created_at, updated_at, deleted, meta_data, status) \
                     VALUES (?, ?, ?, ?, 0, ?, 'active')",
                )
                .bind(&new.id)
                .bind(&loc.url)
                .bind(ts)
                .bind(ts)
                .bind(loc.metadata.to_string())
                .execute(&mut *tx)
                .await?;
            }
            if new.status != old.status
                || new.size != old.size
                || new.checksum != old.checksum
                || new.os_hash_algo != old.os_hash_algo
                || new.os_hash_value != old.os_hash_value
            {
                // Only from the status we read: a concurrent upload or delete wins.
                let n = sqlx::query(
                    "UPDATE images SET status = ?, size = ?, checksum = ?, os_hash_algo = ?, os_hash_value = ? \
                     WHERE id = ? AND status = ? AND deleted = 0",
                )
                .bind(new.status.as_str())
                .bind(new.size)
                .bind(&new.checksum)
                .bind(&new.os_hash_algo)
                .bind(&new.os_hash_value)
                .bind(&new.id)
                .bind(old.status.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n != 1 {
                    tx.rollback().await?;
                    return Err(Fault::ChangedMeanwhile {
                        image: new.id.clone(),
                    });
                }
            }
            for t in &removed_tags {
                sqlx::query("DELETE FROM image_tags WHERE image_id = ? AND value = ?")
                    .bind(&new.id)
                    .bind(*t)
                    .execute(&mut *tx)
                    .await?;
            }
            for t in &added_tags {
                sqlx::query(
                    "INSERT INTO image_tags (image_id, value, created_at, updated_at, deleted) VALUES (?, ?, ?, ?, 0)",
                )
                .bind(&new.id)
                .bind(*t)
                .bind(ts)
                .bind(ts)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            r.rows_affected()
        });
        if rows == 0 {
            return Err(Fault::ImageNotFound {
                id: new.id.clone(),
                lookup: Lookup::Image,
            });
        }
        Ok(())
    }

    /// Removes the property `name` if it is `value` (Glance's `delete_property_atomic`).
    /// Whether it was.
    pub async fn delete_property_if(
        &self,
        image_id: &str,
        name: &str,
        value: &str,
    ) -> Result<bool> {
        let n = with_pool!(self, |p| sqlx::query(
            "DELETE FROM image_properties WHERE image_id = ? AND name = ? AND value = ?"
        )
        .bind(image_id)
        .bind(name)
        .bind(value)
        .execute(p)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Moves the image from one status to another only if it is still in `from`: of two racing
    /// requests exactly one wins. Returns whether this one did.
    pub async fn set_status(&self, id: &str, from: Status, to: Status) -> Result<bool> {
        let ts = now();
        // Back to queued forgets any data (Glance's `_restore`).
        let sql = if to == Status::Queued {
            "UPDATE images SET status = ?, updated_at = ?, size = NULL, virtual_size = NULL, \
             checksum = NULL, os_hash_algo = NULL, os_hash_value = NULL \
             WHERE id = ? AND status = ? AND deleted = 0"
        } else {
            "UPDATE images SET status = ?, updated_at = ? WHERE id = ? AND status = ? AND deleted = 0"
        };
        let n = with_pool!(self, |p| sqlx::query(sql)
            .bind(to.as_str())
            .bind(ts)
            .bind(id)
            .bind(from.as_str())
            .execute(p)
            .await?
            .rows_affected());
        Ok(n == 1)
    }

    /// Records a finished upload and makes the image active, if it is still `saving` and the
    /// upload's work (`work`, held by `node`) is still this node's: a node whose lease ran out
    /// while it wrote must not make active an image another node has since returned to
    /// `queued` (or given to another upload). The work row goes with it, in one transaction.
    pub async fn finish_upload(
        &self,
        id: &str,
        up: &UploadResult,
        work: &str,
        node: &str,
    ) -> Result<bool> {
        let ts = now();
        let meta = up.location.metadata.to_string();
        // The end of an upload whose bytes are all written: run again if the database picks
        // it as a deadlock victim rather than fail the upload.
        let done = with_pool!(self, |p| {
            super::retry_deadlocks(|| async {
            let mut tx = super::begin_write(p).await?;
            let n = sqlx::query(
                "UPDATE images SET status = 'active', size = ?, checksum = ?, os_hash_algo = ?, \
                 os_hash_value = ?, virtual_size = ?, updated_at = ? \
                 WHERE id = ? AND status = 'saving' AND deleted = 0 \
                 AND EXISTS (SELECT 1 FROM glance_rs_work w WHERE w.id = ? AND w.node = ?)",
            )
            .bind(up.size)
            .bind(&up.checksum)
            .bind(&up.os_hash_algo)
            .bind(&up.os_hash_value)
            .bind(up.virtual_size)
            .bind(ts)
            .bind(id)
            .bind(work)
            .bind(node)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                sqlx::query("DELETE FROM glance_rs_work WHERE id = ?")
                    .bind(work)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO image_locations (image_id, value, created_at, updated_at, deleted, meta_data, status) \
                     VALUES (?, ?, ?, ?, 0, ?, 'active')",
                )
                .bind(id)
                .bind(&up.location.url)
                .bind(ts)
                .bind(ts)
                .bind(&meta)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            } else {
                tx.rollback().await?;
                Ok(false)
            }
        })
        .await?
        });
        Ok(done)
    }

    /// Marks the image deleted (a tombstone that keeps its id from ever being reused) and returns
    /// the locations whose data should now be removed. None if it was already gone.
    /// `delete_image_once`, run again when the database picks it as a deadlock victim or Galera's
    /// certification fails, as oslo.db retries.
    pub async fn delete_image(&self, id: &str) -> Result<Option<Vec<Location>>> {
        super::retry_busy(|| self.delete_image_once(id)).await
    }

    async fn delete_image_once(&self, id: &str) -> Result<Option<Vec<Location>>> {
        let ts = now();
        let locs = with_pool!(self, |p| {
            let mut tx = super::begin_write(p).await?;
            let n = sqlx::query(
                "UPDATE images SET deleted = 1, deleted_at = ?, updated_at = ?, status = 'deleted' \
                 WHERE id = ? AND deleted = 0",
            )
            .bind(ts)
            .bind(ts)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                tx.rollback().await?;
                None
            } else {
                let rows = sqlx::query(
                    "SELECT value, meta_data FROM image_locations WHERE image_id = ? AND deleted = 0",
                )
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                let mut locs = Vec::new();
                for r in &rows {
                    let url: String = r.try_get("value")?;
                    let meta: Option<String> = r.try_get("meta_data")?;
                    locs.push(Location {
                        url,
                        metadata: parse_meta(meta),
                    });
                }
                // Glance's unique key (image_id, member, deleted_at) holds one tombstone per
                // member and second: a member removed earlier in this same second would make
                // this delete fail (MariaDB 1062), so that older tombstone goes first.
                sqlx::query(
                    "DELETE FROM image_members WHERE image_id = ? AND deleted = 1 AND deleted_at = ? \
                     AND member IN (SELECT member FROM (SELECT member FROM image_members \
                     WHERE image_id = ? AND deleted = 0) AS live)",
                )
                .bind(id)
                .bind(ts)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                for table in ["image_properties", "image_tags", "image_members"] {
                    sqlx::query(&format!(
                        "UPDATE {table} SET deleted = 1, deleted_at = ? WHERE image_id = ? AND deleted = 0"
                    ))
                    .bind(ts)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "UPDATE image_locations SET deleted = 1, deleted_at = ?, status = 'deleted' \
                     WHERE image_id = ? AND deleted = 0",
                )
                .bind(ts)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Some(locs)
            }
        });
        Ok(locs)
    }

    /// One page of the images `ctx` may list.
    pub async fn list_images(
        &self,
        ctx: &Context,
        q: &ListQuery,
        marker: Option<&Image>,
    ) -> Result<Vec<Image>> {
        // `+col`: SQLite must not pick the index of a flag that nearly every row shares (without
        // statistics its planner would, and read every image); MySQL ignores the `+`.
        let mut wh: Vec<String> = vec![
            "+images.deleted = 0".into(),
            "images.status <> 'killed'".into(),
        ];
        let mut args: Vec<Val> = Vec::new();

        if !ctx.is_admin {
            match &ctx.project_id {
                Some(project) => {
                    let mut member =
                        "EXISTS (SELECT 1 FROM image_members m WHERE m.image_id = images.id \
                                      AND +m.deleted = 0 AND m.member = ?"
                            .to_string();
                    args.push(Val::Str(project.clone()));
                    args.push(Val::Str(project.clone()));
                    if let MemberStatus::Only(s) = &q.member_status {
                        member.push_str(" AND m.status = ?");
                        args.push(Val::Str(s.clone()));
                    }
                    member.push(')');
                    wh.push(format!(
                        "(images.visibility IN ('public', 'community') OR images.owner = ? \
                         OR (images.visibility = 'shared' AND {member}))"
                    ));
                }
                None => wh.push("images.visibility IN ('public', 'community')".into()),
            }
        }
        match &q.visibility {
            Some(Some(v)) => {
                wh.push("images.visibility = ?".into());
                args.push(Val::Str(v.clone()));
            }
            Some(None) => {}
            None => match &ctx.project_id {
                None => wh.push("images.visibility <> 'community'".into()),
                Some(project) => {
                    wh.push("(images.owner = ? OR images.visibility <> 'community')".into());
                    args.push(Val::Str(project.clone()));
                }
            },
        }
        for c in &q.conds {
            match c {
                Cond::In(col, values) => {
                    wh.push(format!("images.{col} IN ({})", placeholders(values.len())));
                    args.extend(values.iter().cloned().map(Val::Str));
                }
                Cond::Cmp(col, op, v) => {
                    let flag = if matches!(*col, "os_hidden" | "protected") {
                        "+"
                    } else {
                        ""
                    };
                    wh.push(format!("{flag}images.{col} {} ?", op.sql()));
                    args.push(v.clone());
                }
                Cond::Property(name, value) => {
                    wh.push(
                        "EXISTS (SELECT 1 FROM image_properties pr WHERE pr.image_id = images.id \
                         AND +pr.deleted = 0 AND pr.name = ? AND pr.value = ?)"
                            .into(),
                    );
                    args.push(Val::Str(name.clone()));
                    args.push(Val::Str(value.clone()));
                }
                Cond::Tag(tag) => {
                    wh.push(
                        "EXISTS (SELECT 1 FROM image_tags t WHERE t.image_id = images.id \
                         AND +t.deleted = 0 AND t.value = ?)"
                            .into(),
                    );
                    args.push(Val::Str(tag.clone()));
                }
            }
        }
        if let Some(m) = marker {
            // Rows strictly after the marker in the sort order (oslo.db's paginate_query).
            let mut ors = Vec::new();
            for i in 0..q.sort.len() {
                let mut ands = Vec::new();
                for (k, _) in &q.sort[..i] {
                    ands.push(format!("{} = ?", sort_expr(*k)));
                    args.push(sort_value(m, *k));
                }
                let (k, asc) = q.sort[i];
                ands.push(format!(
                    "{} {} ?",
                    sort_expr(k),
                    if asc { ">" } else { "<" }
                ));
                args.push(sort_value(m, k));
                ors.push(format!("({})", ands.join(" AND ")));
            }
            wh.push(format!("({})", ors.join(" OR ")));
        }
        let order: Vec<String> = q
            .sort
            .iter()
            .map(|(k, asc)| format!("{} {}", sort_expr(*k), if *asc { "ASC" } else { "DESC" }))
            .collect();
        let sql = format!(
            "SELECT {IMAGE_COLUMNS} FROM images WHERE {} ORDER BY {} LIMIT {}",
            wh.join(" AND "),
            order.join(", "),
            q.limit
        );
        let sql = self.dialect(&sql);
        let images = with_pool!(self, |p| {
            let rows = bind_all!(sqlx::query(&sql), &args).fetch_all(p).await?;
            let mut v = Vec::with_capacity(rows.len());
            for r in &rows {
                v.push(decode_image!(r));
            }
            v
        });
        self.attach(images).await
    }

    /// Loads tags, properties and active locations for a page of images, in one query (each
    /// round trip to the database costs more than the rows of a page).
    async fn attach(&self, mut images: Vec<Image>) -> Result<Vec<Image>> {
        if images.is_empty() {
            return Ok(images);
        }
        let ids: Vec<Val> = images.iter().map(|i| Val::Str(i.id.clone())).collect();
        let ph = placeholders(ids.len());
        // kind p: a property (name, value); t: a tag; l: a location (url, metadata), in order.
        let rows = format!(
            "SELECT 'p' AS kind, image_id, name AS a, value AS b, 0 AS ord FROM image_properties \
             WHERE +deleted = 0 AND image_id IN ({ph}) \
             UNION ALL SELECT 't', image_id, value, NULL, 0 FROM image_tags \
             WHERE +deleted = 0 AND image_id IN ({ph}) \
             UNION ALL SELECT 'l', image_id, value, meta_data, id FROM image_locations \
             WHERE +deleted = 0 AND status = 'active' AND image_id IN ({ph})"
        );
        let args: Vec<Val> = ids.iter().chain(&ids).chain(&ids).cloned().collect();
        let mut by_id: HashMap<String, usize> = HashMap::new();
        for (i, img) in images.iter().enumerate() {
            by_id.insert(img.id.clone(), i);
        }
        // (kind, image id, a, b)
        let found: Vec<(String, String, Option<String>, Option<String>)> = match self {
            Db::Sqlite(p) => {
                // sqlx hands each SQLite row from its worker thread to the request's task, a
                // wake-up per row: a page's rows cost more than the query. As one JSON row they
                // cost one.
                let sql = format!(
                    "SELECT json_group_array(json_array(kind, image_id, a, b) ORDER BY ord) \
                     AS page FROM ({rows})"
                );
                let page: String = bind_all!(sqlx::query(&sql), &args)
                    .fetch_one(p)
                    .await?
                    .try_get("page")?;
                serde_json::from_str(&page).map_err(|e| sqlx::Error::Decode(Box::new(e)))?
            }
            Db::MySql(p) => {
                let sql = format!("{rows} ORDER BY ord");
                let mut v = Vec::new();
                for r in bind_all!(sqlx::query(&sql), &args).fetch_all(p).await? {
                    v.push((
                        r.try_get("kind")?,
                        r.try_get("image_id")?,
                        r.try_get("a")?,
                        r.try_get("b")?,
                    ));
                }
                v
            }
        };
        for (kind, id, a, b) in found {
            let Some(&i) = by_id.get(&id) else { continue };
            let a = a.unwrap_or_default();
            match kind.as_str() {
                "p" => {
                    images[i].properties.insert(a, b.unwrap_or_default());
                }
                "t" => {
                    images[i].tags.insert(a);
                }
                _ => images[i].locations.push(Location {
                    url: a,
                    metadata: parse_meta(b),
                }),
            }
        }
        Ok(images)
    }

    /// SQLite has no CONCAT; the MySQL ENUM column needs it to read back as text.
    fn dialect(&self, sql: &str) -> String {
        if self.is_sqlite() {
            sql.replace("CONCAT('', images.visibility)", "images.visibility")
        } else {
            sql.to_string()
        }
    }
}

fn parse_meta(meta: Option<String>) -> serde_json::Value {
    meta.and_then(|m| serde_json::from_str(&m).ok())
        .unwrap_or_else(|| serde_json::json!({}))
}
