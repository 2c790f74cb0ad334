//! Glance's tasks (`tasks` and `task_info`): what `/v2/tasks` shows and the import tasks run.
//! A task belongs to a project (`owner`); only it and admins see it. Finished tasks expire
//! `task_time_to_live` hours after they end and are then deleted (softly, as Glance does).

use chrono::NaiveDateTime;
use serde_json::Value;
use sqlx::Row;

use super::images::now;
use super::work::Work;
use super::{Db, begin_write, with_pool};
use crate::domain::fault::Result;
use crate::domain::query::Val;
use crate::domain::task::Task;

/// A listing's filters, order and page.
#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    /// Column and value, each a column of `tasks` checked by the caller.
    pub filters: Vec<(String, String)>,
    /// A column of `tasks`, checked by the caller.
    pub sort_key: String,
    pub asc: bool,
    pub limit: u64,
}

const COLUMNS: &str = "t.id, t.type, t.status, t.owner, t.expires_at, t.created_at, t.updated_at, \
     t.image_id, t.request_id, t.user_id";

macro_rules! decode_task {
    ($r:expr, $info:expr) => {{
        let created_at: NaiveDateTime = $r.try_get("created_at")?;
        let updated_at: Option<NaiveDateTime> = $r.try_get("updated_at")?;
        let json = |s: Option<String>| s.and_then(|s| serde_json::from_str::<Value>(&s).ok());
        let (input, result, message) = if $info {
            (
                json($r.try_get("input")?),
                json($r.try_get("result")?),
                $r.try_get::<Option<String>, _>("message")?,
            )
        } else {
            (None, None, None)
        };
        Task {
            id: $r.try_get("id")?,
            kind: $r.try_get("type")?,
            status: $r.try_get("status")?,
            owner: $r.try_get("owner")?,
            expires_at: $r.try_get("expires_at")?,
            created_at,
            updated_at: updated_at.unwrap_or(created_at),
            image_id: $r.try_get("image_id")?,
            request_id: $r.try_get("request_id")?,
            user_id: $r.try_get("user_id")?,
            input,
            result,
            message,
        }
    }};
}

impl Db {
    /// Records a new task and the leased work that runs it, together: a task is never without
    /// a node responsible for it.
    /// With `lock` (a property name), the task also takes the image's lock: the property set
    /// to the task's id, in the same transaction, unless the image has it already (then
    /// nothing is recorded and this returns false).
    /// `create_task_once`, run again when the database picks it as a deadlock victim or Galera's
    /// certification fails, as oslo.db retries.
    pub async fn create_task(&self, t: &Task, w: &Work, lock: Option<&str>) -> Result<bool> {
        super::retry_busy(|| self.create_task_once(t, w, lock)).await
    }

    async fn create_task_once(&self, t: &Task, w: &Work, lock: Option<&str>) -> Result<bool> {
        let text = |v: &Option<Value>| v.as_ref().map(Value::to_string);
        let taken = with_pool!(self, |p| {
            let mut tx = begin_write(p).await?;
            if let (Some(name), Some(image_id)) = (lock, t.image_id.as_deref()) {
                let r = sqlx::query(
                    "INSERT INTO image_properties (image_id, name, value, created_at, updated_at, \
                     deleted) SELECT id, ?, ?, ?, ?, 0 FROM images WHERE id = ? AND deleted = 0",
                )
                .bind(name)
                .bind(&t.id)
                .bind(t.created_at)
                .bind(t.created_at)
                .bind(image_id)
                .execute(&mut *tx)
                .await;
                match r {
                    Ok(r) if r.rows_affected() == 1 => {}
                    // Held already (the unique (image_id, name) index), or the image is gone.
                    Ok(_) => return Ok(false),
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Ok(false),
                    Err(e) => return Err(e.into()),
                }
            }
            sqlx::query(
                "INSERT INTO tasks (id, type, status, owner, expires_at, created_at, updated_at, \
                 deleted, image_id, request_id, user_id) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
            )
            .bind(&t.id)
            .bind(&t.kind)
            .bind(&t.status)
            .bind(&t.owner)
            .bind(t.expires_at)
            .bind(t.created_at)
            .bind(t.updated_at)
            .bind(&t.image_id)
            .bind(&t.request_id)
            .bind(&t.user_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO task_info (task_id, input, result, message) VALUES (?, ?, ?, ?)",
            )
            .bind(&t.id)
            .bind(text(&t.input))
            .bind(text(&t.result))
            .bind(&t.message)
            .execute(&mut *tx)
            .await?;
            super::work::insert_work!(&mut *tx, w, t.created_at);
            tx.commit().await?;
            true
        });
        Ok(taken)
    }

    /// A task, with its input, result and message; None if there is none (or it was deleted).
    pub async fn get_task(&self, id: &str) -> Result<Option<Task>> {
        let sql = format!(
            "SELECT {COLUMNS}, i.input, i.result, i.message FROM tasks t \
             LEFT JOIN task_info i ON i.task_id = t.id WHERE t.id = ? AND t.deleted = 0"
        );
        let task = with_pool!(self, |p| {
            match sqlx::query(&sql).bind(id).fetch_optional(p).await? {
                Some(r) => Some(decode_task!(&r, true)),
                None => None,
            }
        });
        Ok(task)
    }

    /// Glance deletes (softly) the tasks of a project that have expired whenever it lists them.
    async fn expire_tasks(&self, owner: Option<&str>) -> Result<()> {
        let ts = now();
        with_pool!(self, |p| {
            let q = match owner {
                Some(o) => sqlx::query(
                    "UPDATE tasks SET deleted = 1, deleted_at = ? \
                     WHERE deleted = 0 AND expires_at <= ? AND owner = ?",
                )
                .bind(ts)
                .bind(ts)
                .bind(o),
                None => sqlx::query(
                    "UPDATE tasks SET deleted = 1, deleted_at = ? \
                     WHERE deleted = 0 AND expires_at <= ?",
                )
                .bind(ts)
                .bind(ts),
            };
            q.execute(p).await?.rows_affected()
        });
        Ok(())
    }

    /// A page of tasks (without input, result and message): `owner`'s only, or all (None: an
    /// admin's view).
    pub async fn list_tasks(
        &self,
        caller_project: Option<&str>,
        owner: Option<&str>,
        q: &TaskQuery,
        marker: Option<&Task>,
    ) -> Result<Vec<Task>> {
        // As Glance: the caller's own project's expired tasks go, whoever asks.
        self.expire_tasks(caller_project).await?;
        let mut wh = vec!["t.deleted = 0".to_string()];
        let mut args: Vec<Val> = Vec::new();
        if let Some(o) = owner {
            wh.push("t.owner = ?".into());
            args.push(Val::Str(o.into()));
        }
        for (col, v) in &q.filters {
            wh.push(format!("t.{col} = ?"));
            args.push(Val::Str(v.clone()));
        }
        // Glance's order: the key asked for, then created_at and id, all in one direction.
        let mut keys = vec![q.sort_key.as_str()];
        for k in ["created_at", "id"] {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        let (cmp, dir) = if q.asc { (">", "ASC") } else { ("<", "DESC") };
        if let Some(m) = marker {
            let value = |k: &str| match k {
                "created_at" => Val::Time(m.created_at),
                "updated_at" => Val::Time(m.updated_at),
                "id" => Val::Str(m.id.clone()),
                "status" => Val::Str(m.status.clone()),
                "type" => Val::Str(m.kind.clone()),
                "owner" => Val::Str(m.owner.clone()),
                _ => Val::Str(String::new()),
            };
            let mut ors = Vec::new();
            for i in 0..keys.len() {
                let mut ands: Vec<String> = Vec::new();
                for k in &keys[..i] {
                    ands.push(format!("t.{k} = ?"));
                    args.push(value(k));
                }
                ands.push(format!("t.{} {cmp} ?", keys[i]));
                args.push(value(keys[i]));
                ors.push(format!("({})", ands.join(" AND ")));
            }
            wh.push(format!("({})", ors.join(" OR ")));
        }
        let order: Vec<String> = keys.iter().map(|k| format!("t.{k} {dir}")).collect();
        let sql = format!(
            "SELECT {COLUMNS} FROM tasks t WHERE {} ORDER BY {} LIMIT {}",
            wh.join(" AND "),
            order.join(", "),
            q.limit
        );
        let tasks = with_pool!(self, |p| {
            let rows = super::bind_all!(sqlx::query(&sql), &args)
                .fetch_all(p)
                .await?;
            let mut v = Vec::with_capacity(rows.len());
            for r in &rows {
                v.push(decode_task!(r, false));
            }
            v
        });
        Ok(tasks)
    }

    /// The tasks of an image that have not expired, with input, result and message.
    pub async fn tasks_of_image(&self, image_id: &str) -> Result<Vec<Task>> {
        let sql = format!(
            "SELECT {COLUMNS}, i.input, i.result, i.message FROM tasks t \
             LEFT JOIN task_info i ON i.task_id = t.id \
             WHERE t.image_id = ? AND t.deleted = 0 AND (t.expires_at IS NULL OR t.expires_at >= ?) \
             ORDER BY t.created_at, t.id"
        );
        let ts = now();
        let tasks = with_pool!(self, |p| {
            let rows = sqlx::query(&sql)
                .bind(image_id)
                .bind(ts)
                .fetch_all(p)
                .await?;
            let mut v = Vec::with_capacity(rows.len());
            for r in &rows {
                v.push(decode_task!(r, true));
            }
            v
        });
        Ok(tasks)
    }

    /// Moves a task on (`processing`, or its end with a result or message and the time it
    /// expires), if it is in `from`. Returns whether it was.
    pub async fn update_task(
        &self,
        id: &str,
        from: &[&str],
        to: &str,
        result: Option<&Value>,
        message: Option<&str>,
        expires_at: Option<NaiveDateTime>,
    ) -> Result<bool> {
        let ts = now();
        let states = from.iter().map(|_| "?").collect::<Vec<_>>().join(", ");
        let sql = format!(
            "UPDATE tasks SET status = ?, updated_at = ?, expires_at = ? \
             WHERE id = ? AND deleted = 0 AND status IN ({states})"
        );
        let moved = with_pool!(self, |p| {
            super::retry_deadlocks(|| async {
            let mut tx = begin_write(p).await?;
            let mut q = sqlx::query(&sql)
                .bind(to)
                .bind(ts)
                .bind(expires_at)
                .bind(id);
            for f in from {
                q = q.bind(*f);
            }
            let n = q.execute(&mut *tx).await?.rows_affected();
            if n == 1 && (result.is_some() || message.is_some()) {
                sqlx::query("UPDATE task_info SET result = COALESCE(?, result), message = COALESCE(?, message) \
                     WHERE task_id = ?")
                    .bind(result.map(Value::to_string))
                    .bind(message)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(n == 1)
        })
        .await?
        });
        Ok(moved)
    }
}
