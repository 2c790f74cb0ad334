//! Purging soft-deleted rows (`glance-manage db purge`, `db purge_images_table`): rows whose
//! `deleted_at` is older than a cut-off, oldest first, at most so many per table.
//!
//! As in Glance, `purge` leaves the `images` rows (their ids keep deleted images' ids from
//! being reused, OSSN-0075); `purge_images_table` removes them and keeps only the id.

use chrono::NaiveDateTime;

use super::images::now;
use super::{Db, begin_write, with_pool};
use crate::domain::fault::Result;

/// Ids deleted per statement: well under any database's limit on placeholders.
const CHUNK: usize = 500;

/// The tables `purge` empties of old soft-deleted rows, children of `images` and `tasks`.
const IMAGE_CHILDREN: [&str; 4] = [
    "image_properties",
    "image_tags",
    "image_members",
    "image_locations",
];

impl Db {
    /// Removes rows soft-deleted before `before` (at most `max_rows` per table, None: all) from
    /// every table with a `deleted` column but `images`; a purged task's `task_info` goes with
    /// it. Returns each table with how many rows went, in the order purged.
    pub async fn purge_deleted(
        &self,
        before: NaiveDateTime,
        max_rows: Option<u64>,
    ) -> Result<Vec<(&'static str, u64)>> {
        let mut done = Vec::new();
        for table in IMAGE_CHILDREN {
            let ids = self.old_rows(table, before, max_rows, "").await?;
            done.push((table, self.delete_ids(table, "id", &ids).await?));
        }
        let ids = self.old_rows("tasks", before, max_rows, "").await?;
        self.delete_ids("task_info", "task_id", &ids).await?;
        done.push(("tasks", self.delete_ids("tasks", "id", &ids).await?));
        Ok(done)
    }

    /// Removes the `images` rows of images deleted before `before` (at most `max_rows`, None:
    /// all) with what is left of their properties, tags, members and locations, and records
    /// their ids so that no new image takes one. Images whose deletion still has work pending
    /// (data to remove) stay. How many went.
    pub async fn purge_images(&self, before: NaiveDateTime, max_rows: Option<u64>) -> Result<u64> {
        let ids = self
            .old_rows(
                "images",
                before,
                max_rows,
                " AND deleted = 1 AND NOT EXISTS \
                 (SELECT 1 FROM glance_rs_work w WHERE w.image_id = images.id)",
            )
            .await?;
        let ts = now();
        let mut n = 0;
        for chunk in ids.chunks(CHUNK) {
            let marks = vec!["?"; chunk.len()].join(", ");
            n += with_pool!(self, |p| {
                let mut tx = begin_write(p).await?;
                for table in IMAGE_CHILDREN {
                    let sql = format!("DELETE FROM {table} WHERE image_id IN ({marks})");
                    let mut q = sqlx::query(&sql);
                    for id in chunk {
                        q = q.bind(id);
                    }
                    q.execute(&mut *tx).await?;
                }
                for id in chunk {
                    sqlx::query(
                        "INSERT INTO glance_rs_purged_images (id, purged_at) VALUES (?, ?)",
                    )
                    .bind(id)
                    .bind(ts)
                    .execute(&mut *tx)
                    .await?;
                }
                let sql = format!("DELETE FROM images WHERE id IN ({marks})");
                let mut q = sqlx::query(&sql);
                for id in chunk {
                    q = q.bind(id);
                }
                let gone = q.execute(&mut *tx).await?.rows_affected();
                tx.commit().await?;
                gone
            });
        }
        Ok(n)
    }

    /// The ids of `table`'s rows deleted before `before` (and matching `also`), oldest first.
    async fn old_rows(
        &self,
        table: &str,
        before: NaiveDateTime,
        max_rows: Option<u64>,
        also: &str,
    ) -> Result<Vec<String>> {
        let limit = max_rows.map_or(String::new(), |n| format!(" LIMIT {n}"));
        // Ids are integers in some tables and strings in others: read as text in both.
        let sql = format!(
            "SELECT CAST(id AS CHAR(36)) FROM {table} WHERE deleted_at < ?{also} \
             ORDER BY deleted_at{limit}"
        );
        let ids = with_pool!(self, |p| sqlx::query_scalar(&sql)
            .bind(before)
            .fetch_all(p)
            .await?);
        Ok(ids)
    }

    /// Deletes the rows of `table` whose `column` is one of `ids`; how many.
    async fn delete_ids(&self, table: &str, column: &str, ids: &[String]) -> Result<u64> {
        let mut n = 0;
        for chunk in ids.chunks(CHUNK) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!("DELETE FROM {table} WHERE {column} IN ({marks})");
            n += with_pool!(self, |p| {
                let mut q = sqlx::query(&sql);
                for id in chunk {
                    q = q.bind(id);
                }
                q.execute(p).await?.rows_affected()
            });
        }
        Ok(n)
    }
}
