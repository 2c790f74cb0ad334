//! Metadata in MySQL/MariaDB or SQLite through sqlx.
//!
//! Both databases take the same SQL (`?` placeholders, portable types), so each repository
//! function is written once and `with_pool!` instantiates it for the pool at hand.

pub mod images;
pub mod members;
pub mod metadefs;
pub mod purge;
pub mod tasks;
pub mod work;

use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{MySqlPool, SqlitePool};

#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    MySql(MySqlPool),
}

/// Runs `$body` with `$p` bound to the concrete pool.
macro_rules! with_pool {
    ($db:expr, |$p:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($p) => $body,
            $crate::db::Db::MySql($p) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Begins a transaction that will write. In SQLite a plain BEGIN takes the write lock only at
/// the first write, and if another connection committed after this transaction's first read,
/// taking it fails at once with "database is locked": busy_timeout never applies. BEGIN
/// IMMEDIATE takes the lock first, waiting up to busy_timeout. MySQL begins as usual.
pub(crate) async fn begin_write<DB: sqlx::Database>(
    p: &sqlx::Pool<DB>,
) -> Result<sqlx::Transaction<'static, DB>, sqlx::Error> {
    if DB::NAME == "SQLite" {
        p.begin_with("BEGIN IMMEDIATE").await
    } else {
        p.begin().await
    }
}

/// Runs `f` again (up to five times, backing off) when the database chose its transaction as
/// a deadlock victim or a Galera certification failed (SQLSTATE 40001), as oslo.db retries.
pub(crate) async fn retry_deadlocks<T, F, Fut>(mut f: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let mut attempt = 0u32;
    loop {
        match f().await {
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("40001") && attempt < 5 =>
            {
                attempt += 1;
                tracing::info!(attempt, error = %e, "deadlock; running the transaction again");
                tokio::time::sleep(std::time::Duration::from_millis(10 << attempt)).await;
            }
            r => return r,
        }
    }
}

/// Runs `f` again (up to five times, backing off) while it fails because the database was
/// busy: a deadlock victim or a Galera certification failure (SQLSTATE 40001), a lock wait
/// timeout. A whole repository operation, for those whose transaction also decides on facts.
pub(crate) async fn retry_busy<T, F, Fut>(mut f: F) -> Result<T, crate::domain::fault::Fault>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::domain::fault::Fault>>,
{
    let mut attempt = 0u32;
    loop {
        match f().await {
            Err(crate::domain::fault::Fault::DatabaseBusy) if attempt < 5 => {
                attempt += 1;
                tracing::info!(attempt, "database busy; running the transaction again");
                tokio::time::sleep(std::time::Duration::from_millis(10 << attempt)).await;
            }
            r => return r,
        }
    }
}

/// Binds each value of a `&[Val]` to a query, in order.
macro_rules! bind_all {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                $crate::domain::query::Val::Str(s) => q.bind(s.clone()),
                $crate::domain::query::Val::Int(i) => q.bind(*i),
                $crate::domain::query::Val::Bool(b) => q.bind(*b),
                $crate::domain::query::Val::Time(t) => q.bind(*t),
            };
        }
        q
    }};
}
pub(crate) use bind_all;

static MYSQL_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/mysql");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

impl Db {
    /// Connects lazily: the server starts (and later recovers) whether or not the database is up
    /// at this moment; requests made while it is down get 503.
    pub async fn connect(url: &str) -> Result<Db, sqlx::Error> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            if let Some(parent) = opts.get_filename().parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(sqlx::Error::Io)?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            Ok(Db::Sqlite(pool))
        } else {
            let opts = MySqlConnectOptions::from_str(url)?.charset("utf8mb4");
            let pool = MySqlPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(5))
                .test_before_acquire(true)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        // On a Galera node, reads wait until the node has applied every write
                        // the cluster committed before them, so that a request sees what the
                        // one before it wrote whichever node the load balancer reached. Inert
                        // on a server that is not a Galera node; refused by MySQL (ignored).
                        let _ = sqlx::query("SET SESSION wsrep_sync_wait = 1")
                            .execute(&mut *conn)
                            .await;
                        Ok(())
                    })
                })
                .connect_lazy_with(opts);
            Ok(Db::MySql(pool))
        }
    }

    /// Applies the migrations that are not applied yet (`db sync`).
    pub async fn sync(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match self {
            Db::Sqlite(p) => SQLITE_MIGRATIONS.run(p).await,
            Db::MySql(p) => MYSQL_MIGRATIONS.run(p).await,
        }
    }

    /// How many migrations are applied, and how many this binary knows.
    pub async fn schema_version(&self) -> Result<(i64, usize), sqlx::Error> {
        Ok(match self {
            Db::Sqlite(p) => (applied_count(p).await?, SQLITE_MIGRATIONS.iter().count()),
            Db::MySql(p) => (applied_count(p).await?, MYSQL_MIGRATIONS.iter().count()),
        })
    }

    /// Whether every migration this binary knows has been applied.
    pub async fn is_current(&self) -> Result<bool, sqlx::Error> {
        let (applied, known): (i64, usize) = match self {
            Db::Sqlite(p) => (applied_count(p).await?, SQLITE_MIGRATIONS.iter().count()),
            Db::MySql(p) => (applied_count(p).await?, MYSQL_MIGRATIONS.iter().count()),
        };
        Ok(applied as usize >= known)
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self, Db::Sqlite(_))
    }

    /// SQLite's planner chooses between indexes well only with statistics (without them it
    /// reads every image a project may see and sorts them for each page, rather than walk the
    /// index of the page's order): `PRAGMA optimize` gathers them for the tables that changed
    /// much since the last time, sampling at most a thousand rows of each index; nearly free
    /// when nothing changed, so it runs every 5 s. MySQL keeps its own.
    pub async fn refresh_statistics(&self) -> Result<(), sqlx::Error> {
        let Db::Sqlite(p) = self else { return Ok(()) };
        let mut c = p.acquire().await?;
        sqlx::query("PRAGMA analysis_limit = 1000")
            .execute(&mut *c)
            .await?;
        sqlx::query("PRAGMA optimize = 0x10002")
            .execute(&mut *c)
            .await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        with_pool!(self, |p| sqlx::query("SELECT 1")
            .execute(p)
            .await
            .map(|_| ()))
    }
}

async fn applied_count<'e, E>(executor: E) -> Result<i64, sqlx::Error>
where
    E: sqlx::Executor<'e>,
    i64: sqlx::Type<E::Database> + for<'r> sqlx::Decode<'r, E::Database>,
    for<'r> usize: sqlx::ColumnIndex<<E::Database as sqlx::Database>::Row>,
    for<'q> <E::Database as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, E::Database>,
{
    let row: Result<(i64,), sqlx::Error> =
        sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
            .fetch_one(executor)
            .await;
    match row {
        Ok((n,)) => Ok(n),
        // No migrations table: nothing applied yet.
        Err(sqlx::Error::Database(_)) => Ok(0),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A database error with a given SQLSTATE.
    #[derive(Debug)]
    struct Coded(&'static str);

    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Coded {}

    impl sqlx::error::DatabaseError for Coded {
        fn message(&self) -> &str {
            self.0
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    #[tokio::test]
    async fn deadlock_victims_run_again_other_errors_do_not() {
        let calls = AtomicU32::new(0);
        let r = super::retry_deadlocks(|| async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(sqlx::Error::Database(Box::new(Coded("40001")))),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(r.ok(), Some(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let r: Result<(), _> = super::retry_deadlocks(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(sqlx::Error::Database(Box::new(Coded("23000"))))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "a constraint violation is not retried"
        );

        // Five retries at most: a deadlock that persists is an error in the end.
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = super::retry_deadlocks(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(sqlx::Error::Database(Box::new(Coded("40001"))))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 6);
    }
}
