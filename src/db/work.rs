//! Leased work (`glance_rs_work`): a row per piece of work that outlives a request, held by
//! the node doing it until `lease_until` (milliseconds since the epoch). A node renews its
//! leases while it lives; any node may claim a row whose lease has run out.

use sqlx::Row;

use super::images::now;
use super::{Db, begin_write, with_pool};
use crate::domain::fault::Result;

/// A row of leased work.
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    pub id: String,
    /// What the work is (`upload`, ...).
    pub kind: String,
    pub image_id: Option<String>,
    /// The node holding it.
    pub node: String,
    pub lease_until: i64,
    /// How many nodes have taken it over.
    pub attempts: i64,
    pub payload: serde_json::Value,
}

const COLUMNS: &str = "id, kind, image_id, node, lease_until, attempts, payload";

macro_rules! decode_work {
    ($r:expr) => {{
        let payload: String = $r.try_get("payload")?;
        Work {
            id: $r.try_get("id")?,
            kind: $r.try_get("kind")?,
            image_id: $r.try_get("image_id")?,
            node: $r.try_get("node")?,
            lease_until: $r.try_get("lease_until")?,
            attempts: $r.try_get::<i64, _>("attempts")?,
            payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        }
    }};
}

/// Inserts the work `$w` (created at `$ts`) with the executor `$e`.
macro_rules! insert_work {
    ($e:expr, $w:expr, $ts:expr) => {
        sqlx::query(
            "INSERT INTO glance_rs_work (id, kind, image_id, node, lease_until, attempts, \
             payload, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&$w.id)
        .bind(&$w.kind)
        .bind(&$w.image_id)
        .bind(&$w.node)
        .bind($w.lease_until)
        .bind($w.attempts)
        .bind($w.payload.to_string())
        .bind($ts)
        .execute($e)
        .await?
        .rows_affected()
    };
}
pub(super) use insert_work;

impl Db {
    /// Starts the upload `w`: the image goes from `queued` to `saving` and the work row that
    /// undoes it if this node dies is written, in one transaction. False (nothing written) if
    /// the image is not `queued`: a work row for an image always belongs to the upload that
    /// made it `saving`, so that an upload refused for a concurrent one never blocks the
    /// other's return to `queued`.
    pub async fn begin_upload(&self, w: &Work) -> Result<bool> {
        let ts = now();
        let image_id = w.image_id.as_deref().unwrap_or_default();
        let begun = with_pool!(self, |p| {
            super::retry_deadlocks(|| async {
                let mut tx = begin_write(p).await?;
                let n = sqlx::query(
                    "UPDATE images SET status = 'saving', updated_at = ? \
                     WHERE id = ? AND status = 'queued' AND deleted = 0",
                )
                .bind(ts)
                .bind(image_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n != 1 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                insert_work!(&mut *tx, w, ts);
                tx.commit().await?;
                Ok(true)
            })
            .await?
        });
        Ok(begun)
    }

    /// Records work no request is doing: `w` as it is (a lease from now, or none held).
    pub async fn add_work(&self, w: &Work) -> Result<()> {
        let ts = now();
        with_pool!(self, |p| insert_work!(p, w, ts));
        Ok(())
    }

    /// Whether an image (not deleted) records a location of `url`.
    pub async fn location_recorded(&self, url: &str) -> Result<bool> {
        let n: i64 = with_pool!(self, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM image_locations l JOIN images i ON i.id = l.image_id \
             WHERE l.value = ? AND l.deleted = 0 AND i.deleted = 0"
        )
        .bind(url)
        .fetch_one(p)
        .await?);
        Ok(n > 0)
    }

    /// Removes work `node` holds (done, or undone). False if it is not `node`'s any more.
    pub async fn delete_work(&self, id: &str, node: &str) -> Result<bool> {
        let n = with_pool!(self, |p| sqlx::query(
            "DELETE FROM glance_rs_work WHERE id = ? AND node = ?"
        )
        .bind(id)
        .bind(node)
        .execute(p)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Extends every lease `node` holds to `until`, but those of the work `except` (given up:
    /// left to run out); how many.
    pub async fn renew_work(&self, node: &str, until: i64, except: &[String]) -> Result<u64> {
        let mut sql = String::from(
            "UPDATE glance_rs_work SET lease_until = ? WHERE node = ? AND lease_until > 0",
        );
        if !except.is_empty() {
            sql.push_str(" AND id NOT IN (");
            sql.push_str(&vec!["?"; except.len()].join(", "));
            sql.push(')');
        }
        let n = with_pool!(self, |p| {
            let mut q = sqlx::query(&sql).bind(until).bind(node);
            for id in except {
                q = q.bind(id);
            }
            q.execute(p).await?.rows_affected()
        });
        Ok(n)
    }

    /// Gives up every lease `node` holds, so that other nodes take the work at once.
    pub async fn release_work(&self, node: &str) -> Result<u64> {
        let n = with_pool!(self, |p| super::retry_deadlocks(|| async {
            sqlx::query("UPDATE glance_rs_work SET lease_until = 0 WHERE node = ?")
                .bind(node)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })
        .await?);
        Ok(n)
    }

    /// Puts work `node` holds aside until `until`, held by no node (so no heartbeat renews it):
    /// any node takes it again then.
    pub async fn postpone_work(&self, id: &str, node: &str, until: i64) -> Result<bool> {
        let n = with_pool!(self, |p| sqlx::query(
            "UPDATE glance_rs_work SET node = '', lease_until = ? WHERE id = ? AND node = ?"
        )
        .bind(until)
        .bind(id)
        .bind(node)
        .execute(p)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Work whose lease ran out before `at` (oldest first), or that `node` held before it
    /// restarted (`held_by`).
    pub async fn abandoned_work(
        &self,
        at: i64,
        held_by: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Work>> {
        // Not `node = ''` when no node is named: rows held by no node (postponed) are due only
        // when their lease runs out, and offering them sooner costs a refused claim each.
        let sql = format!(
            "SELECT {COLUMNS} FROM glance_rs_work WHERE lease_until < ? OR (node = ? AND ? <> '') \
             ORDER BY lease_until LIMIT {limit}"
        );
        let rows = with_pool!(self, |p| {
            let rows = sqlx::query(&sql)
                .bind(at)
                .bind(held_by.unwrap_or(""))
                .bind(held_by.unwrap_or(""))
                .fetch_all(p)
                .await?;
            let mut v = Vec::with_capacity(rows.len());
            for r in &rows {
                v.push(decode_work!(r));
            }
            v
        });
        Ok(rows)
    }

    /// Takes over work whose lease ran out (or that `was` held, for a node's restart): of two
    /// nodes trying, one wins. Returns whether this one did.
    pub async fn claim_work(&self, w: &Work, node: &str, at: i64, until: i64) -> Result<bool> {
        let n = with_pool!(self, |p| sqlx::query(
            "UPDATE glance_rs_work SET node = ?, lease_until = ?, attempts = attempts + 1 \
             WHERE id = ? AND node = ? AND lease_until = ? AND (lease_until < ? OR node = ?)"
        )
        .bind(node)
        .bind(until)
        .bind(&w.id)
        .bind(&w.node)
        .bind(w.lease_until)
        .bind(at)
        .bind(node)
        .execute(p)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Whether another upload of `image_id` than `except` is under a live lease.
    pub async fn other_live_upload(&self, image_id: &str, except: &str, at: i64) -> Result<bool> {
        let n: i64 = with_pool!(self, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM glance_rs_work \
             WHERE image_id = ? AND kind = 'upload' AND id <> ? AND lease_until >= ?"
        )
        .bind(image_id)
        .bind(except)
        .bind(at)
        .fetch_one(p)
        .await?);
        Ok(n > 0)
    }

    /// The end of an upload that did not finish, by the node holding its work `work`: the image
    /// goes back from `saving` to `queued` (its data forgotten) unless another upload holds it
    /// now, and the work row goes, in one transaction. Returns whether the image was returned.
    pub async fn abandon_upload(
        &self,
        image_id: &str,
        work: &str,
        node: &str,
        at: i64,
    ) -> Result<bool> {
        let ts = now();
        let returned = with_pool!(self, |p| {
            super::retry_deadlocks(|| async {
            let mut tx = begin_write(p).await?;
            let n = sqlx::query(
                "UPDATE images SET status = 'queued', updated_at = ?, size = NULL, virtual_size = NULL, \
                 checksum = NULL, os_hash_algo = NULL, os_hash_value = NULL \
                 WHERE id = ? AND status = 'saving' AND deleted = 0 \
                 AND EXISTS (SELECT 1 FROM glance_rs_work w WHERE w.id = ? AND w.node = ?) \
                 AND NOT EXISTS (SELECT 1 FROM glance_rs_work o WHERE o.image_id = ? \
                     AND o.kind = 'upload' AND o.id <> ? AND o.lease_until >= ?)",
            )
            .bind(ts)
            .bind(image_id)
            .bind(work)
            .bind(node)
            .bind(image_id)
            .bind(work)
            .bind(at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query("DELETE FROM glance_rs_work WHERE id = ? AND node = ?")
                .bind(work)
                .bind(node)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(n == 1)
        })
        .await?
        });
        Ok(returned)
    }

    /// Notes on work `node` holds the image it works on and what it needs to resume.
    pub async fn update_work(
        &self,
        id: &str,
        node: &str,
        image_id: Option<&str>,
        payload: &serde_json::Value,
    ) -> Result<bool> {
        let n = with_pool!(self, |p| sqlx::query(
            "UPDATE glance_rs_work SET image_id = ?, payload = ? WHERE id = ? AND node = ?"
        )
        .bind(image_id)
        .bind(payload.to_string())
        .bind(id)
        .bind(node)
        .execute(p)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Whether an upload of `image_id` is recorded, live or abandoned and not yet undone.
    pub async fn any_upload(&self, image_id: &str) -> Result<bool> {
        let n: i64 = with_pool!(self, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM glance_rs_work WHERE image_id = ? AND kind = 'upload'"
        )
        .bind(image_id)
        .fetch_one(p)
        .await?);
        Ok(n > 0)
    }
}
