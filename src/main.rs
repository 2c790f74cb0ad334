//! glance-rs: the OpenStack Image service (Glance API v2).
//!
//! `glance-rs [--config-file FILE]... [serve]` serves the API; `glance-rs db sync` applies the
//! database migrations.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use glance_rs::api::{self, AppState};
use glance_rs::config::BackendKind;
use glance_rs::config::{Config, normalize_connection};
use glance_rs::db::Db;
use glance_rs::domain::policy::{Policy, PolicyOptions, PolicySource, PropertyRules, protections};
use glance_rs::store::file::{FileStore, FileStoreOptions};
use glance_rs::store::http::HttpStore;
use glance_rs::store::{Store, StoreEntry, Stores};

#[derive(Parser)]
#[command(
    name = "glance-rs",
    version,
    about = "OpenStack Image service (Glance API v2)"
)]
struct Cli {
    /// An oslo.config style INI file; repeat it, later files win. With neither this nor
    /// --config-dir, glance.conf and glance-api.conf (and their .conf.d directories) are looked
    /// for in ~/.glance/, ~/, /etc/glance/ and /etc/, as oslo.config looks for them.
    #[arg(long = "config-file", global = true)]
    config_file: Vec<PathBuf>,
    /// A directory whose *.conf files are read (in name order) after the --config-files.
    #[arg(long = "config-dir", global = true)]
    config_dir: Vec<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Database management.
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
}

#[derive(Subcommand)]
enum DbAction {
    /// Apply the migrations that are not applied yet (idempotent); `upgrade` and `expand`
    /// (glance-manage's) do the same.
    #[command(alias = "upgrade", alias = "expand")]
    Sync,
    /// Print the schema version.
    Version,
    /// Exit 0 when the schema is current, 3 when `db sync` (`db expand`) is needed, as
    /// glance-manage's rolling-upgrade check.
    Check,
    /// glance-manage's data migration and contraction: nothing to do (glance-rs's migrations
    /// only add), said so.
    #[command(alias = "contract")]
    Migrate,
    /// Load metadata definition files (a directory's *.json, or one file), as glance-manage.
    #[command(name = "load_metadefs")]
    LoadMetadefs {
        /// Default: [DEFAULT] metadata_source_path.
        path: Option<PathBuf>,
        #[arg(long = "path")]
        path_opt: Option<PathBuf>,
        /// Add to namespaces already loaded instead of skipping them.
        #[arg(long)]
        merge: bool,
        /// With --merge: the files' values replace the database's.
        #[arg(long = "prefer_new")]
        prefer_new: bool,
        /// With --merge: namespaces already loaded are deleted and loaded again.
        #[arg(long)]
        overwrite: bool,
    },
    /// Remove rows deleted more than --age_in_days ago from every table but `images`, at most
    /// --max_rows per table (-1: all), as glance-manage.
    Purge {
        #[arg(
            long = "age_in_days",
            default_value_t = 30,
            allow_negative_numbers = true
        )]
        age_in_days: i64,
        #[arg(
            long = "max_rows",
            default_value_t = 100,
            allow_negative_numbers = true
        )]
        max_rows: i64,
    },
    /// Remove the rows of images deleted more than --age_in_days ago, keeping their ids
    /// reserved (OSSN-0075), as glance-manage.
    #[command(name = "purge_images_table")]
    PurgeImagesTable {
        #[arg(
            long = "age_in_days",
            default_value_t = 180,
            allow_negative_numbers = true
        )]
        age_in_days: i64,
        #[arg(
            long = "max_rows",
            default_value_t = 100,
            allow_negative_numbers = true
        )]
        max_rows: i64,
    },
    /// Delete every metadata definition (and resource type).
    #[command(name = "unload_metadefs")]
    UnloadMetadefs,
    /// Write each namespace to a definition file in PATH.
    #[command(name = "export_metadefs")]
    ExportMetadefs {
        path: Option<PathBuf>,
        #[arg(long = "path")]
        path_opt: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // oslo.log's lines on stderr until the configuration says where they go.
    glance_rs::logging::bootstrap();
    // glance-manage's command lines (the binary run as `glance-manage`, or `glance-rs manage`).
    let mut cli = Cli::parse_from(glance_rs::manage::translate(std::env::args().collect()));
    cli.config_file = glance_rs::config::discover(
        &cli.config_file,
        &cli.config_dir,
        &glance_rs::config::search_path(),
    );
    if cli.config_file.is_empty() {
        tracing::warn!(
            "no configuration file given or found (glance-api.conf in ~/.glance/, ~/, /etc/glance/, /etc/): \
             serving the embedded default: SQLite under ./data, no authentication (every caller is an admin), \
             on 127.0.0.1 unless [DEFAULT] bind_host says otherwise"
        );
    } else {
        tracing::info!(files = ?cli.config_file, "configuration");
    }
    let cfg = match Config::load(&cli.config_file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("glance-rs: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = glance_rs::logging::configure(&cfg.log) {
        eprintln!("glance-rs: {e}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("glance-rs: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(cfg, &cli.config_file).await,
            Command::Db { action } => db_command(&cfg, action).await,
        }
    });
    // Store calls still running get a moment to finish (a failed upload removing its bytes);
    // one stuck on a dead NFS mount must not keep the process from exiting.
    rt.shutdown_timeout(std::time::Duration::from_secs(3));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("glance-rs: {msg}");
            ExitCode::FAILURE
        }
    }
}

async fn open_db(cfg: &Config) -> Result<Db, String> {
    let url = normalize_connection(&cfg.database_connection)
        .map_err(|e| format!("invalid value for [database] connection: {e}"))?;
    Db::connect(&url)
        .await
        .map_err(|e| format!("cannot open database ([database] connection): {e}"))
}

async fn db_sync(cfg: &Config) -> Result<(), String> {
    let db = open_db(cfg).await?;
    db.sync()
        .await
        .map_err(|e| format!("db sync failed: {e}"))?;
    println!("database is at the latest schema");
    Ok(())
}

async fn db_command(cfg: &Config, action: DbAction) -> Result<(), String> {
    use glance_rs::service::metadef_catalog::{self as catalog, Merge};
    let source = |path: Option<PathBuf>, opt: Option<PathBuf>| {
        opt.or(path)
            .unwrap_or_else(|| PathBuf::from(&cfg.metadata_source_path))
    };
    match action {
        DbAction::Sync => db_sync(cfg).await,
        DbAction::Version => {
            let (applied, known) = open_db(cfg)
                .await?
                .schema_version()
                .await
                .map_err(|e| format!("cannot read the schema version: {e}"))?;
            println!("Current DB version: glance-rs {applied:04} (of {known:04})");
            Ok(())
        }
        DbAction::Check => {
            let current = open_db(cfg)
                .await?
                .is_current()
                .await
                .map_err(|e| format!("cannot read the schema version: {e}"))?;
            if current {
                println!("Database is up to date. No migrations needed.");
                Ok(())
            } else {
                println!("Database expansion is required. Please run `glance-manage db expand`.");
                std::process::exit(3);
            }
        }
        DbAction::Migrate => {
            println!("Database migration is up to date. No migration needed.");
            Ok(())
        }
        DbAction::LoadMetadefs {
            path,
            path_opt,
            merge,
            prefer_new,
            overwrite,
        } => {
            let how = Merge {
                merge,
                prefer_new,
                overwrite,
            };
            how.check()?;
            let dir = source(path, path_opt);
            let db = open_db(cfg).await?;
            let done = catalog::load(&db, &dir, how).await?;
            println!(
                "metadata definitions from {}: {} namespaces loaded, {} skipped (already loaded), {} unreadable files",
                dir.display(),
                done.namespaces,
                done.skipped,
                done.unreadable
            );
            Ok(())
        }
        DbAction::Purge {
            age_in_days,
            max_rows,
        } => {
            let (before, limit) =
                glance_rs::manage::purge_limits(age_in_days, max_rows, chrono::Utc::now())?;
            let db = open_db(cfg).await?;
            for (table, n) in db
                .purge_deleted(before, limit)
                .await
                .map_err(purge_failed)?
            {
                tracing::info!("Deleted {n} row(s) from table {table}");
            }
            Ok(())
        }
        DbAction::PurgeImagesTable {
            age_in_days,
            max_rows,
        } => {
            let (before, limit) =
                glance_rs::manage::purge_limits(age_in_days, max_rows, chrono::Utc::now())?;
            let db = open_db(cfg).await?;
            let n = db.purge_images(before, limit).await.map_err(purge_failed)?;
            tracing::info!("Deleted {n} row(s) from table images");
            Ok(())
        }
        DbAction::UnloadMetadefs => {
            catalog::unload(&open_db(cfg).await?).await?;
            println!("metadata definitions unloaded");
            Ok(())
        }
        DbAction::ExportMetadefs { path, path_opt } => {
            let dir = source(path, path_opt);
            let n = catalog::export(&open_db(cfg).await?, &dir).await?;
            println!("{n} namespaces written to {}", dir.display());
            Ok(())
        }
    }
}

fn purge_failed(e: glance_rs::domain::fault::Fault) -> String {
    format!("Purge command failed: {e:?}")
}

/// A path from the configuration: absolute, or relative to the directory of the last config
/// file (where oslo.config looks first).
fn config_path(name: &str, files: &[PathBuf]) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    files
        .last()
        .and_then(|f| f.parent())
        .map_or_else(|| p.to_path_buf(), |d| d.join(p))
}

/// Glance's policy as oslo.policy builds it: the registered defaults, under `[oslo_policy]
/// policy_file` (optional under its default name `policy.yaml`), then the files of each
/// `policy_dirs` directory that exists, in name order. What the operator should know (rules
/// that cannot be understood, references to no rule) is logged here, once.
fn load_policy(cfg: &Config, files: &[PathBuf]) -> Result<Policy, String> {
    let opts = PolicyOptions {
        enforce_scope: cfg.enforce_scope,
        enforce_new_defaults: cfg.enforce_new_defaults,
        default_rule: cfg.policy_default_rule.clone(),
    };
    let read = |option: &str, path: &Path| {
        std::fs::read_to_string(path)
            .map(|text| PolicySource {
                origin: format!("[oslo_policy] {option} {}", path.display()),
                text,
            })
            .map_err(|e| format!("[oslo_policy] {option} {}: {e}", path.display()))
    };
    let mut sources = Vec::new();
    let name = cfg.policy_file.as_deref().unwrap_or("policy.yaml");
    let path = config_path(name, files);
    match read("policy_file", &path) {
        Ok(src) => sources.push(src),
        Err(e) if cfg.policy_file.is_some() => return Err(e),
        Err(_) => {}
    }
    for dir in &cfg.policy_dirs {
        let dir = config_path(dir, files);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        names.sort();
        for f in names {
            sources.push(read("policy_dirs", &f)?);
        }
    }
    let (policy, warnings) = Policy::new(&opts, &sources)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    for src in &sources {
        tracing::info!(file = %src.origin, "policy rules loaded");
    }
    Ok(policy)
}

/// `[DEFAULT] property_protection_file`, when set: a file that cannot be read or understood
/// stops start-up, as it stops Glance.
fn load_protections(cfg: &Config, files: &[PathBuf]) -> Result<Option<PropertyRules>, String> {
    let Some(name) = &cfg.property_protection_file else {
        return Ok(None);
    };
    let path = config_path(name, files);
    let what = || format!("[DEFAULT] property_protection_file {}", path.display());
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", what()))?;
    let format = protections::Format::parse(&cfg.property_protection_rule_format)
        .ok_or_else(|| format!("{}: unknown rule format", what()))?;
    let mut warnings = Vec::new();
    let rules = PropertyRules::parse(&text, format, &mut warnings)
        .map_err(|e| format!("{}: {e}", what()))?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(file = %path.display(), format = %cfg.property_protection_rule_format, "property protections loaded");
    Ok(Some(rules))
}

async fn serve(cfg: Config, files: &[PathBuf]) -> Result<(), String> {
    let policy = Arc::new(load_policy(&cfg, files)?);
    let protections = load_protections(&cfg, files)?.map(Arc::new);
    let db = open_db(&cfg).await?;
    if db.is_sqlite() {
        // The embedded default must serve with no setup at all.
        db.sync()
            .await
            .map_err(|e| format!("db sync failed: {e}"))?;
    } else {
        match db.is_current().await {
            Ok(true) => {}
            Ok(false) => {
                return Err(
                    "the database schema is not current: run `glance-rs db sync` first".into(),
                );
            }
            // Down right now: serve anyway (503s) and recover when it comes back.
            Err(e) => tracing::warn!(error = %e, "database unreachable at start-up"),
        }
    }
    if db.is_sqlite() {
        let db = db.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                every.tick().await;
                if let Err(e) = db.refresh_statistics().await {
                    tracing::warn!(error = %e, "could not refresh the database's statistics");
                }
            }
        });
    }
    let stores = Arc::new(open_stores(&cfg)?);
    // Which MD5 is faster here, timed off the runtime before the first upload needs it.
    tokio::task::spawn_blocking(glance_rs::digest::calibrate);
    let addr = format!("{}:{}", cfg.bind_host, cfg.bind_port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} ([DEFAULT] bind_host/bind_port): {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let cfg = Arc::new(cfg);
    // This node's name in the work it holds: the same after a restart, so that it then undoes
    // at once what it was doing when it stopped.
    let node = format!("{}:{}", hostname(), local.port());
    let engine = glance_rs::work::Engine::new(
        db.clone(),
        stores.clone(),
        node,
        std::time::Duration::from_secs(cfg.work_lease_seconds),
        usize::try_from(cfg.task_max_workers).unwrap_or(usize::MAX),
    );
    let state = AppState {
        schemas: Arc::new(api::schemas::Schemas::new(&cfg)),
        cfg: cfg.clone(),
        db,
        stores,
        policy,
        protections,
        engine: engine.clone(),
        keystone: cfg
            .keystone
            .clone()
            .map(|k| Arc::new(glance_rs::auth::keystone::Keystone::new(k))),
        draining: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        notifier: glance_rs::notifier::Notifier::start(&cfg.notifications),
    };
    let draining = state.draining.clone();
    engine.set_runner(Arc::new(state.clone()));
    engine.startup().await;
    engine.spawn();
    // The test harness and operators' scripts wait for this line.
    tracing::info!("glance-rs listening on http://{local}");
    println!("listening on {local}");
    glance_rs::notify::notify(&format!("READY=1\nSTATUS=serving on {local}"));
    let app = api::router(state).into_make_service_with_connect_info::<api::sendfile::Conn>();
    // On SIGTERM the listener closes and requests in flight may finish, for at most
    // graceful_shutdown_timeout: a multi-GiB download to a slow client must not hold a restart
    // up indefinitely.
    let drain_for = cfg.shutdown_drain_timeout;
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signalled = stopping.clone();
    let server =
        axum::serve(api::sendfile::Listener(listener), app).with_graceful_shutdown(async move {
            shutdown().await;
            glance_rs::notify::notify("STOPPING=1");
            let drain = drain_for;
            if drain > 0 {
                // Still serving, but failing health checks: the load balancer takes the node
                // out, so no new request meets a closed port.
                draining.store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    seconds = drain,
                    "stopping: draining (healthcheck fails) before closing"
                );
                tokio::time::sleep(std::time::Duration::from_secs(drain)).await;
            }
            tracing::info!("stopping: no new connections, requests in flight may finish");
            signalled.notify_one();
        });
    let grace = cfg.graceful_shutdown_timeout;
    let served = tokio::select! {
        r = server => r.map_err(|e| format!("server error: {e}")),
        _ = async {
            stopping.notified().await;
            match grace {
                0 => std::future::pending().await,
                s => tokio::time::sleep(std::time::Duration::from_secs(s)).await,
            }
        } => {
            tracing::warn!(seconds = grace, "graceful_shutdown_timeout reached: closing the requests still in flight");
            Ok(())
        }
    };
    // Work still held (uploads cut short) goes to the other nodes now, not when its leases
    // run out.
    engine.release().await;
    served
}

/// The host's name, as `hostname` prints it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Opens every configured store; any that cannot be opened stops start-up.
fn open_stores(cfg: &Config) -> Result<Stores, String> {
    let mut entries = Vec::new();
    for b in &cfg.backends {
        let section = if cfg.multi_store {
            b.id.as_str()
        } else {
            "glance_store"
        };
        let (store, properties): (Arc<dyn Store>, serde_json::Value) = match &b.kind {
            BackendKind::File {
                dirs,
                file_perm,
                thin,
                direct_io,
                cached_mib,
                timeout,
                metadata_file,
            } => {
                let store = FileStore::new(FileStoreOptions {
                    dirs: dirs.clone(),
                    file_perm: *file_perm,
                    thin: *thin,
                    direct_io: *direct_io,
                    keep_cached: cached_mib << 20,
                    timeout_secs: *timeout,
                    metadata_file: metadata_file.clone(),
                })
                .map_err(|e| format!("[{section}] {e}"))?;
                let props = serde_json::json!({
                    "data_dir": dirs.first().map(|d| d.0.display().to_string()),
                    "chunk_size": 65536,
                    "thin_provisioning": thin,
                });
                (Arc::new(store), props)
            }
            #[cfg(feature = "rbd")]
            BackendKind::Rbd {
                pool,
                user,
                conf,
                chunk_mib,
                connect_timeout,
                thin,
            } => {
                use glance_rs::store::rbd::{RbdOptions, RbdStore};
                let store = RbdStore::start(RbdOptions {
                    pool: pool.clone(),
                    user: user.clone(),
                    conf: conf.clone(),
                    chunk_mib: *chunk_mib,
                    connect_timeout: *connect_timeout,
                    thin: *thin,
                });
                if let Some(fsid) = store.fsid() {
                    tracing::info!(store = %b.id, %pool, %fsid, "RBD store connected");
                }
                // fsid: added at request time (RbdStore::live_properties).
                let props = serde_json::json!({
                    "pool": pool,
                    "chunk_size": chunk_mib,
                    "thin_provisioning": thin,
                });
                (store, props)
            }
            #[cfg(not(feature = "rbd"))]
            BackendKind::Rbd { .. } => {
                return Err(format!(
                    "[{section}] this build has no rbd store (build with --features rbd)"
                ));
            }
            BackendKind::Http => (Arc::new(HttpStore::default()), serde_json::json!({})),
        };
        entries.push(StoreEntry {
            id: b.id.clone(),
            kind: b.kind.type_name(),
            weight: b.weight,
            description: b.description.clone(),
            properties,
            store,
        });
    }
    Ok(Stores::new(entries, cfg.multi_store))
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
