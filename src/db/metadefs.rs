//! The metadata definition catalog (metadefs) in Glance's six tables: namespaces, and per
//! namespace its objects, properties and tags (one shape: `Entry`), resource types and the
//! namespaces' associations with them.

use sqlx::Row;

use super::images::now;
use super::{Db, with_pool};
use crate::domain::fault::{Fault, Result};
pub use crate::domain::metadef::{Association, Entry, Namespace, ResourceType};

pub use crate::domain::fault::MetadefKind as Kind;

fn table(kind: Kind) -> &'static str {
    match kind {
        Kind::Object => "metadef_objects",
        Kind::Property => "metadef_properties",
        Kind::Tag => "metadef_tags",
    }
}

const NS_COLUMNS: &str = "id, namespace, display_name, description, visibility, protected, owner, created_at, updated_at";

macro_rules! decode_namespace {
    ($r:expr) => {
        Namespace {
            id: $r.try_get::<i64, _>("id")?,
            namespace: $r.try_get("namespace")?,
            display_name: $r.try_get("display_name")?,
            description: $r.try_get("description")?,
            visibility: $r.try_get("visibility")?,
            protected: $r.try_get("protected")?,
            owner: $r.try_get("owner")?,
            created_at: $r.try_get("created_at")?,
            updated_at: $r.try_get("updated_at")?,
        }
    };
}

macro_rules! decode_entry {
    ($r:expr, $kind:expr) => {{
        let mut e = Entry {
            id: $r.try_get::<i64, _>("id")?,
            name: $r.try_get("name")?,
            created_at: $r.try_get("created_at")?,
            updated_at: $r.try_get("updated_at")?,
            ..Entry::default()
        };
        if $kind != Kind::Tag {
            e.json_schema = $r.try_get("json_schema")?;
        }
        if $kind == Kind::Object {
            e.description = $r.try_get("description")?;
            e.required = $r.try_get("required")?;
        }
        e
    }};
}

fn entry_columns(kind: Kind) -> String {
    format!("id, {}, created_at, updated_at", written_columns(kind))
}

/// The columns an entry of `kind` writes, in the order `add_metadef_entries` and
/// `update_metadef_entry` bind them.
fn written_columns(kind: Kind) -> &'static str {
    match kind {
        Kind::Object => "name, description, required, json_schema",
        Kind::Property => "name, json_schema",
        Kind::Tag => "name",
    }
}

/// A unique key refused the row: a name taken.
fn is_duplicate(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl Db {
    /// The order Glance's unordered queries return rows in on this database (the rows' on
    /// SQLite, the clustered key's on InnoDB): `sqlite` or `mysql`, as an ORDER BY.
    fn physical_order(&self, sqlite: &'static str, mysql: &'static str) -> &'static str {
        match self {
            Db::Sqlite(_) => sqlite,
            Db::MySql(_) => mysql,
        }
    }

    /// Whether the database compares text regardless of case (MariaDB's utf8mb4_general_ci,
    /// which Glance's tables use), as its ORDER BY does.
    pub fn collation_folds_case(&self) -> bool {
        matches!(self, Db::MySql(_))
    }

    /// Every namespace, by id (the catalog is small: filtering and paging happen above).
    pub async fn metadef_namespaces(&self) -> Result<Vec<Namespace>> {
        let sql = format!("SELECT {NS_COLUMNS} FROM metadef_namespaces ORDER BY id");
        Ok(with_pool!(self, |p| {
            let rows = sqlx::query(&sql).fetch_all(p).await?;
            let mut v = Vec::with_capacity(rows.len());
            for r in &rows {
                v.push(decode_namespace!(r));
            }
            v
        }))
    }

    pub async fn metadef_namespace(&self, name: &str) -> Result<Option<Namespace>> {
        let sql = format!("SELECT {NS_COLUMNS} FROM metadef_namespaces WHERE namespace = ?");
        Ok(with_pool!(self, |p| {
            match sqlx::query(&sql).bind(name).fetch_optional(p).await? {
                Some(r) => Some(decode_namespace!(r)),
                None => None,
            }
        }))
    }

    /// Creates a namespace; `None` when the name is taken.
    pub async fn create_metadef_namespace(&self, ns: &Namespace) -> Result<Option<Namespace>> {
        let ts = now();
        let done = with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO metadef_namespaces (namespace, display_name, description, visibility, \
                 protected, owner, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&ns.namespace)
            .bind(&ns.display_name)
            .bind(&ns.description)
            .bind(&ns.visibility)
            .bind(ns.protected)
            .bind(&ns.owner)
            .bind(ts)
            .bind(ns.updated_at)
            .execute(p)
            .await
            .map(|_| ())
        });
        match done {
            Err(e) if is_duplicate(&e) => Ok(None),
            Err(e) => Err(e.into()),
            Ok(_) => self.metadef_namespace(&ns.namespace).await,
        }
    }

    /// Rewrites namespace `id` (its name too); `None` when the new name is taken.
    pub async fn update_metadef_namespace(&self, ns: &Namespace) -> Result<Option<Namespace>> {
        let done = with_pool!(self, |p| {
            sqlx::query(
                "UPDATE metadef_namespaces SET namespace = ?, display_name = ?, description = ?, \
                 visibility = ?, protected = ?, owner = ?, updated_at = ? WHERE id = ?",
            )
            .bind(&ns.namespace)
            .bind(&ns.display_name)
            .bind(&ns.description)
            .bind(&ns.visibility)
            .bind(ns.protected)
            .bind(&ns.owner)
            .bind(now())
            .bind(ns.id)
            .execute(p)
            .await
            .map(|_| ())
        });
        match done {
            Err(e) if is_duplicate(&e) => Ok(None),
            Err(e) => Err(e.into()),
            Ok(_) => self.metadef_namespace(&ns.namespace).await,
        }
    }

    /// Deletes a namespace with everything it holds, in one transaction.
    pub async fn delete_metadef_namespace(&self, id: i64) -> Result<()> {
        with_pool!(self, |p| {
            let mut tx = super::begin_write(p).await?;
            for table in [
                "metadef_objects",
                "metadef_properties",
                "metadef_tags",
                "metadef_namespace_resource_types",
            ] {
                sqlx::query(&format!("DELETE FROM {table} WHERE namespace_id = ?"))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("DELETE FROM metadef_namespaces WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// A namespace's objects, properties or tags in the order Glance's unordered query
    /// returns them: on SQLite by name, byte by byte (its unique key's); on MariaDB as they
    /// were written (InnoDB reads the namespace_id index, whose entries follow the id).
    pub async fn metadef_entries(&self, ns: i64, kind: Kind) -> Result<Vec<Entry>> {
        let sql = format!(
            "SELECT {} FROM {} WHERE namespace_id = ? ORDER BY {}",
            entry_columns(kind),
            table(kind),
            self.physical_order("name", "id")
        );
        Ok(with_pool!(self, |p| {
            let rows = sqlx::query(&sql).bind(ns).fetch_all(p).await?;
            let mut v = Vec::with_capacity(rows.len());
            for r in &rows {
                v.push(decode_entry!(r, kind));
            }
            v
        }))
    }

    pub async fn metadef_entry(&self, ns: i64, kind: Kind, name: &str) -> Result<Option<Entry>> {
        let sql = format!(
            "SELECT {} FROM {} WHERE namespace_id = ? AND name = ?",
            entry_columns(kind),
            table(kind)
        );
        Ok(with_pool!(self, |p| {
            match sqlx::query(&sql)
                .bind(ns)
                .bind(name)
                .fetch_optional(p)
                .await?
            {
                Some(r) => Some(decode_entry!(r, kind)),
                None => None,
            }
        }))
    }

    /// Adds entries to a namespace in one transaction (after removing its entries of that kind
    /// when `replace`); `Err(name)` inside when a name is taken (nothing is written then).
    pub async fn add_metadef_entries(
        &self,
        ns: i64,
        kind: Kind,
        entries: &[Entry],
        replace: bool,
    ) -> Result<std::result::Result<(), String>> {
        let ts = now();
        let cols = written_columns(kind);
        let sql = format!(
            "INSERT INTO {} (namespace_id, {cols}, created_at, updated_at) VALUES (?, {}?, ?)",
            table(kind),
            "?, ".repeat(cols.split(", ").count()),
        );
        let outcome: std::result::Result<std::result::Result<(), String>, sqlx::Error> =
            with_pool!(self, |p| {
                async {
                    let mut tx = super::begin_write(p).await?;
                    if replace {
                        sqlx::query(&format!(
                            "DELETE FROM {} WHERE namespace_id = ?",
                            table(kind)
                        ))
                        .bind(ns)
                        .execute(&mut *tx)
                        .await?;
                    }
                    for e in entries {
                        let mut q = sqlx::query(&sql).bind(ns).bind(&e.name);
                        if kind == Kind::Object {
                            q = q.bind(&e.description).bind(&e.required);
                        }
                        if kind != Kind::Tag {
                            q = q.bind(e.json_schema.clone().unwrap_or_else(|| "{}".into()));
                        }
                        match q.bind(ts).bind(e.updated_at).execute(&mut *tx).await {
                            Err(err) if is_duplicate(&err) => return Ok(Err(e.name.clone())),
                            r => r?,
                        };
                    }
                    tx.commit().await?;
                    Ok(Ok(()))
                }
                .await
            });
        Ok(outcome?)
    }

    /// Rewrites entry `old` of a namespace; `Err(name)` inside when the new name is taken.
    pub async fn update_metadef_entry(
        &self,
        ns: i64,
        kind: Kind,
        old: &str,
        e: &Entry,
    ) -> Result<std::result::Result<(), String>> {
        let set = written_columns(kind).replace(", ", " = ?, ") + " = ?";
        let sql = format!(
            "UPDATE {} SET {set}, updated_at = ? WHERE namespace_id = ? AND name = ?",
            table(kind)
        );
        let done = with_pool!(self, |p| {
            let mut q = sqlx::query(&sql).bind(&e.name);
            if kind == Kind::Object {
                q = q.bind(&e.description).bind(&e.required);
            }
            if kind != Kind::Tag {
                q = q.bind(e.json_schema.clone().unwrap_or_else(|| "{}".into()));
            }
            q.bind(now())
                .bind(ns)
                .bind(old)
                .execute(p)
                .await
                .map(|_| ())
        });
        match done {
            Err(err) if is_duplicate(&err) => Ok(Err(e.name.clone())),
            Err(err) => Err(err.into()),
            Ok(_) => Ok(Ok(())),
        }
    }

    /// Deletes one entry (`Some(name)`) or all of a kind; whether any was there.
    pub async fn delete_metadef_entries(
        &self,
        ns: i64,
        kind: Kind,
        name: Option<&str>,
    ) -> Result<bool> {
        let sql = format!(
            "DELETE FROM {} WHERE namespace_id = ? AND (? IS NULL OR name = ?)",
            table(kind)
        );
        let n = with_pool!(self, |p| {
            sqlx::query(&sql)
                .bind(ns)
                .bind(name)
                .bind(name)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    pub async fn metadef_resource_types(&self) -> Result<Vec<ResourceType>> {
        Ok(with_pool!(self, |p| {
            let rows = sqlx::query(
                "SELECT id, name, protected, created_at, updated_at FROM metadef_resource_types \
                 ORDER BY id",
            )
            .fetch_all(p)
            .await?;
            let mut v = Vec::with_capacity(rows.len());
            for r in &rows {
                v.push(ResourceType {
                    id: r.try_get::<i64, _>("id")?,
                    name: r.try_get("name")?,
                    protected: r.try_get("protected")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                });
            }
            v
        }))
    }

    /// The resource type `name`, made if it does not exist yet (`updated_at` set when
    /// `stamped`, as Glance's API makes them; its catalog loader leaves it empty).
    pub async fn ensure_metadef_resource_type(
        &self,
        name: &str,
        protected: bool,
        stamped: bool,
    ) -> Result<ResourceType> {
        let find = |all: Vec<ResourceType>| all.into_iter().find(|t| t.name == name);
        if let Some(t) = find(self.metadef_resource_types().await?) {
            return Ok(t);
        }
        let ts = now();
        let done = with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO metadef_resource_types (name, protected, created_at, updated_at) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(name)
            .bind(protected)
            .bind(ts)
            .bind(stamped.then_some(ts))
            .execute(p)
            .await
            .map(|_| ())
        });
        match done {
            // Made meanwhile by another request: that one.
            Err(e) if is_duplicate(&e) => {}
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        find(self.metadef_resource_types().await?).ok_or(Fault::Database)
    }

    /// Every association (of namespace `ns` only, when given), with its namespace's id.
    pub async fn metadef_associations(&self, ns: Option<i64>) -> Result<Vec<(i64, Association)>> {
        let sql = format!(
            "SELECT a.namespace_id, t.name, a.prefix, a.properties_target, a.created_at, \
             a.updated_at FROM metadef_namespace_resource_types a \
             JOIN metadef_resource_types t ON t.id = a.resource_type_id \
             WHERE ? IS NULL OR a.namespace_id = ? ORDER BY {}",
            self.physical_order("a.rowid", "a.resource_type_id")
        );
        Ok(with_pool!(self, |p| {
            let rows = sqlx::query(&sql).bind(ns).bind(ns).fetch_all(p).await?;
            let mut v = Vec::with_capacity(rows.len());
            for r in &rows {
                v.push((
                    r.try_get::<i64, _>("namespace_id")?,
                    Association {
                        name: r.try_get("name")?,
                        prefix: r.try_get("prefix")?,
                        properties_target: r.try_get("properties_target")?,
                        created_at: r.try_get("created_at")?,
                        updated_at: r.try_get("updated_at")?,
                    },
                ));
            }
            v
        }))
    }

    /// Associates namespace `ns` with resource type `rt`; false when it already is.
    pub async fn add_metadef_association(&self, ns: i64, rt: i64, a: &Association) -> Result<bool> {
        let ts = now();
        let done = with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO metadef_namespace_resource_types (resource_type_id, namespace_id, \
                 properties_target, prefix, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(rt)
            .bind(ns)
            .bind(&a.properties_target)
            .bind(&a.prefix)
            .bind(ts)
            .bind(a.updated_at)
            .execute(p)
            .await
            .map(|_| ())
        });
        match done {
            Err(e) if is_duplicate(&e) => Ok(false),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(true),
        }
    }

    /// Removes an association; whether it was there.
    pub async fn delete_metadef_association(&self, ns: i64, rt: i64) -> Result<bool> {
        let n = with_pool!(self, |p| {
            sqlx::query(
                "DELETE FROM metadef_namespace_resource_types WHERE namespace_id = ? \
                 AND resource_type_id = ?",
            )
            .bind(ns)
            .bind(rt)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// Empties the catalog, resource types included (`db unload_metadefs`).
    pub async fn delete_all_metadefs(&self) -> Result<()> {
        with_pool!(self, |p| {
            let mut tx = super::begin_write(p).await?;
            for table in [
                "metadef_properties",
                "metadef_objects",
                "metadef_tags",
                "metadef_namespace_resource_types",
                "metadef_namespaces",
                "metadef_resource_types",
            ] {
                sqlx::query(&format!("DELETE FROM {table}"))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
