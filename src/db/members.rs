//! Image members: which projects a `shared` image is shared with, and whether they accepted.

use chrono::NaiveDateTime;
use sqlx::Row;

use super::images::now;
use super::{Db, with_pool};
use crate::domain::fault::{Fault, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub image_id: String,
    pub member_id: String,
    pub status: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl Db {
    pub async fn list_members(&self, image_id: &str) -> Result<Vec<Member>> {
        let sql = "SELECT image_id, member, status, created_at, updated_at FROM image_members \
                   WHERE image_id = ? AND deleted = 0 ORDER BY created_at, id";
        let members = with_pool!(self, |p| {
            let rows = sqlx::query(sql).bind(image_id).fetch_all(p).await?;
            let mut v = Vec::new();
            for r in &rows {
                let created_at: NaiveDateTime = r.try_get("created_at")?;
                let updated_at: Option<NaiveDateTime> = r.try_get("updated_at")?;
                v.push(Member {
                    image_id: r.try_get("image_id")?,
                    member_id: r.try_get("member")?,
                    status: r.try_get("status")?,
                    created_at,
                    updated_at: updated_at.unwrap_or(created_at),
                });
            }
            v
        });
        Ok(members)
    }

    /// Adds a pending member; a live duplicate is a conflict. `quota` < 0 means unlimited.
    /// `add_member_once`, run again when the database picks it as a deadlock victim or Galera's
    /// certification fails, as oslo.db retries.
    pub async fn add_member(&self, image_id: &str, member: &str, quota: i64) -> Result<Member> {
        super::retry_busy(|| self.add_member_once(image_id, member, quota)).await
    }

    async fn add_member_once(&self, image_id: &str, member: &str, quota: i64) -> Result<Member> {
        let ts = now();
        let outcome: std::result::Result<Option<i64>, sqlx::Error> = with_pool!(self, |p| {
            async {
            let mut tx = super::begin_write(p).await?;
            let rows = sqlx::query("SELECT member FROM image_members WHERE image_id = ? AND deleted = 0")
                .bind(image_id)
                .fetch_all(&mut *tx)
                .await?;
            let mut existing = Vec::new();
            for r in &rows {
                existing.push(r.try_get::<String, _>("member")?);
            }
            if existing.iter().any(|m| m == member) {
                return Ok(None);
            }
            let n = existing.len() as i64 + 1;
            if quota >= 0 && n > quota {
                return Ok(Some(n));
            }
            sqlx::query(
                "INSERT INTO image_members (image_id, member, can_share, created_at, updated_at, deleted, status) \
                 VALUES (?, ?, 0, ?, ?, 0, 'pending')",
            )
            .bind(image_id)
            .bind(member)
            .bind(ts)
            .bind(ts)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Some(0))
        }
        .await
        });
        match outcome? {
            None => Err(Fault::DuplicateMember {
                image: image_id.into(),
                member: member.into(),
            }),
            Some(n) if n > 0 => Err(Fault::MemberLimit {
                image: image_id.into(),
                attempted: n,
                maximum: quota,
            }),
            Some(_) => Ok(Member {
                image_id: image_id.into(),
                member_id: member.into(),
                status: "pending".into(),
                created_at: ts,
                updated_at: ts,
            }),
        }
    }

    /// Sets `m`'s status (and its `updated_at`, as stored); false if it is no longer a member.
    pub async fn set_member_status(&self, m: &mut Member, status: &str) -> Result<bool> {
        let ts = now();
        let n = with_pool!(self, |p| {
            sqlx::query(
            "UPDATE image_members SET status = ?, updated_at = ? WHERE image_id = ? AND member = ? AND deleted = 0"
        )
        .bind(status)
        .bind(ts)
        .bind(&m.image_id)
        .bind(&m.member_id)
        .execute(p)
        .await?
        .rows_affected()
        });
        if n > 0 {
            m.status = status.to_string();
            m.updated_at = ts;
        }
        Ok(n > 0)
    }

    pub async fn delete_member(&self, image_id: &str, member: &str) -> Result<bool> {
        let ts = now();
        let n = with_pool!(self, |p| {
            super::retry_deadlocks(|| async {
                let mut tx = super::begin_write(p).await?;
                // One tombstone per (image, member, second) under Glance's unique key: a
                // removal earlier in this second (then added again) must not fail this one.
                sqlx::query(
                    "DELETE FROM image_members WHERE image_id = ? AND member = ? AND deleted = 1 \
                     AND deleted_at = ?",
                )
                .bind(image_id)
                .bind(member)
                .bind(ts)
                .execute(&mut *tx)
                .await?;
                let n = sqlx::query(
                    "UPDATE image_members SET deleted = 1, deleted_at = ?, updated_at = ? \
                     WHERE image_id = ? AND member = ? AND deleted = 0",
                )
                .bind(ts)
                .bind(ts)
                .bind(image_id)
                .bind(member)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok::<_, sqlx::Error>(n)
            })
            .await?
        });
        Ok(n > 0)
    }
}
