//! Configuration read from the operator's `glance-api.conf`.
//!
//! Files are INI as oslo.config reads them: several `--config-file` options, the later one winning
//! key by key, and environment overrides `OS_<SECTION>__<KEY>` (oslo.config's environment source).
//! Unknown keys are ignored (operators' files carry options for features we do not have yet);
//! a known key with an invalid value stops start-up with a message naming section and key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Default image formats, as `[image_format] disk_formats` / `container_formats` default them.
pub const DEFAULT_DISK_FORMATS: &[&str] = &[
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];
pub const DEFAULT_CONTAINER_FORMATS: &[&str] = &[
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
];

#[derive(Debug, Clone, PartialEq)]
pub enum Flavor {
    /// No authentication: Glance's unauthenticated context, or identity taken from headers.
    NoAuth,
    Keystone,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind_host: String,
    pub bind_port: u16,
    /// `[DEFAULT] graceful_shutdown_timeout` (oslo.service): seconds a stopping server lets
    /// requests in flight finish before closing them; 0 waits for them however long.
    pub graceful_shutdown_timeout: u64,
    /// `[DEFAULT] shutdown_drain_timeout` (glance-rs's own, seconds, default 0): on SIGTERM the
    /// node first answers `/healthcheck` with 503 for this long while it still serves, so that
    /// a load balancer takes it out before it stops listening (haproxy's `inter` × `fall`).
    pub shutdown_drain_timeout: u64,
    /// `[healthcheck] disable_by_file_path` (oslo.middleware): while this file exists,
    /// `/healthcheck` answers 503 (a node taken out for maintenance).
    pub healthcheck_disable_file: Option<String>,
    /// `[healthcheck] detailed`: answers name each check's class and details, the time and
    /// the platform.
    pub healthcheck_detailed: bool,
    /// `[DEFAULT]`'s oslo.log options.
    pub log: LogSettings,
    pub notifications: NotificationConfig,
    pub public_endpoint: Option<String>,
    /// `[oslo_middleware] enable_proxy_headers_parsing`: links follow `Forwarded` and
    /// `X-Forwarded-Host`/`-Prefix`, logs name the client the proxy forwards (`api::base_url`,
    /// `api::client_addr`).
    pub proxy_headers_parsing: bool,
    pub show_image_direct_url: bool,
    pub show_multiple_locations: bool,
    pub image_size_cap: u64,
    pub limit_param_default: u64,
    pub api_limit_max: u64,
    pub image_member_quota: i64,
    pub image_property_quota: i64,
    pub image_tag_quota: i64,
    pub image_location_quota: i64,
    pub hashing_algorithm: String,
    pub database_connection: String,
    pub flavor: Flavor,
    /// The stores, the default first. One (plus `http`) in the legacy single-store setup.
    pub backends: Vec<Backend>,
    /// `[DEFAULT] enabled_backends` is set: store ids are shown and can be chosen.
    pub multi_store: bool,
    /// `[oslo_policy] policy_file` as written (resolved against the config files' directory).
    pub policy_file: Option<String>,
    /// `[oslo_policy] policy_dirs` (each line, in order; default `policy.d`): directories whose
    /// files are read after the policy file, in name order.
    pub policy_dirs: Vec<String>,
    /// `[oslo_policy] enforce_scope` (default true): refuse tokens of another scope than a
    /// rule's.
    pub enforce_scope: bool,
    /// `[oslo_policy] enforce_new_defaults` (default true).
    pub enforce_new_defaults: bool,
    /// `[oslo_policy] policy_default_rule` (default `default`).
    pub policy_default_rule: String,
    /// `[task] lease_seconds` (glance-rs's own, default 30): how long work a node holds (an
    /// upload in progress) stays its own without renewal; a node that dies is noticed, and its
    /// work undone by another, within about this much.
    pub work_lease_seconds: u64,
    /// `[DEFAULT] metadata_source_path`: where `db load_metadefs` reads definition files.
    pub metadata_source_path: String,
    /// `[DEFAULT] do_secure_hash` (default true): locations added with the Locations API are
    /// read and hashed in the background.
    pub do_secure_hash: bool,
    /// `[DEFAULT] http_retries` (default 3): attempts at reading an added location's data.
    pub http_retries: u64,
    /// `[task] task_time_to_live` (hours, default 48): how long a finished task is kept.
    pub task_time_to_live: u64,
    /// `[taskflow_executor] max_workers` (default 10): tasks one node runs at once.
    pub task_max_workers: u64,
    /// `[import_filtering_opts]`: where an import task may fetch from.
    pub import_filter: ImportFilter,
    /// `[DEFAULT] property_protection_file`.
    pub property_protection_file: Option<String>,
    /// `[DEFAULT] property_protection_rule_format`: `roles` (default) or `policies`.
    pub property_protection_rule_format: String,
    /// `[keystone_authtoken]`, when the keystone flavor is on.
    pub keystone: Option<KeystoneConfig>,
    pub disk_formats: Vec<String>,
    pub container_formats: Vec<String>,
    pub require_image_format_match: bool,
    /// `[image_format] gpt_safety_checks_nonfatal`: GPT safety checks ("mbr", "gptmbr") that
    /// only log a warning.
    pub gpt_safety_checks_nonfatal: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BackendKind {
    File {
        /// Directories with their priority (`filesystem_store_datadir` is one of priority 0).
        dirs: Vec<(PathBuf, i64)>,
        /// chmod for image files (0: leave as created).
        file_perm: u32,
        thin: bool,
        /// `filesystem_store_direct_io` (glance-rs's own): when to write with O_DIRECT.
        direct_io: DirectIo,
        /// `filesystem_store_cached_mib` (glance-rs's own): MiB of each new image left in the
        /// page cache once written.
        cached_mib: u64,
        /// Seconds a blocking call may take (0: no limit).
        timeout: u64,
        /// `filesystem_store_metadata_file`: JSON returned as location metadata.
        metadata_file: Option<PathBuf>,
    },
    Rbd {
        pool: String,
        user: String,
        conf: String,
        chunk_mib: u64,
        connect_timeout: i64,
        thin: bool,
    },
    /// Read-only: serves images whose location is an http(s) URL.
    Http,
}

impl BackendKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            BackendKind::File { .. } => "file",
            BackendKind::Rbd { .. } => "rbd",
            BackendKind::Http => "http",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub id: String,
    pub kind: BackendKind,
    pub weight: i64,
    pub description: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot parse config file {path}: {msg}")]
    Parse { path: String, msg: String },
    #[error("invalid value for [{section}] {key}: {msg}")]
    Invalid {
        section: String,
        key: String,
        msg: String,
    },
}

/// Raw key/values by (section, key), lowercased section names except DEFAULT. A key may repeat
/// within a file (oslo's multi-valued options); a later file replaces an earlier one's values.
#[derive(Default, Debug)]
pub struct RawConfig {
    values: HashMap<(String, String), Vec<String>>,
    /// The options read so far: what is left was given but not used.
    read: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

impl RawConfig {
    pub fn load(files: &[PathBuf]) -> Result<Self, ConfigError> {
        let mut raw = RawConfig::default();
        for path in files {
            raw.merge_file(path)?;
        }
        raw.merge_env(std::env::vars());
        raw.interpolate();
        // Nothing configured: the embedded default (noauth: everyone who reaches it is an
        // admin) listens on loopback only, unless told otherwise.
        if files.is_empty() && raw.get("DEFAULT", "bind_host").is_none() {
            raw.set("DEFAULT", "bind_host", "127.0.0.1");
        }
        Ok(raw)
    }

    fn merge_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let ini = ini::Ini::load_from_str_opt(
            &text,
            ini::ParseOption {
                enabled_quote: false,
                enabled_escape: false,
                ..Default::default()
            },
        )
        .map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        let mut file: HashMap<(String, String), Vec<String>> = HashMap::new();
        for (section, props) in ini.iter() {
            let section = normalize_section(section.unwrap_or("DEFAULT"));
            for (k, v) in props.iter() {
                file.entry((section.clone(), k.trim().to_string()))
                    .or_default()
                    .push(unquote(v.trim()).to_string());
            }
        }
        self.values.extend(file);
        Ok(())
    }

    fn merge_env(&mut self, vars: impl Iterator<Item = (String, String)>) {
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix("OS_") else {
                continue;
            };
            let Some((section, key)) = rest.split_once("__") else {
                continue;
            };
            self.values.insert(
                (normalize_section(section), key.to_lowercase()),
                vec![value],
            );
        }
    }

    pub fn set(&mut self, section: &str, key: &str, value: &str) {
        self.values.insert(
            (normalize_section(section), key.to_string()),
            vec![value.to_string()],
        );
    }

    fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.get_all(section, key).last().map(String::as_str)
    }

    fn get_all(&self, section: &str, key: &str) -> &[String] {
        self.read
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((section.to_string(), key.to_string()));
        self.values
            .get(&(section.to_string(), key.to_string()))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

impl RawConfig {
    /// Replaces `$name`, `${name}` and `${section.name}` in every value with that option's
    /// value (a bare name: from the value's own section, else `[DEFAULT]`), `$$` with `$`, as
    /// oslo.config substitutes (`lock_path = $state_path/lock`). A name no file sets stays as
    /// written, with a warning.
    fn interpolate(&mut self) {
        let keys: Vec<(String, String)> = self
            .values
            .iter()
            .filter(|(_, v)| v.iter().any(|v| v.contains('$')))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let vals: Vec<String> = self.values[&key]
                .iter()
                .map(|v| self.substitute(&key, v, 0))
                .collect();
            self.values.insert(key, vals);
        }
    }

    fn substitute(&self, at: &(String, String), v: &str, depth: u8) -> String {
        let section = at.0.as_str();
        let mut out = String::new();
        let mut rest = v;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let (name, len) = if let Some(a) = after.strip_prefix('$') {
                out.push('$');
                rest = a;
                continue;
            } else if let Some(inner) = after.strip_prefix('{') {
                match inner.find('}') {
                    Some(end) => (&inner[..end], end + 2),
                    None => ("", 0),
                }
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            };
            let (sec, opt) = match name.split_once('.') {
                Some((sec, opt)) => (normalize_section(sec), opt),
                None => (section.to_string(), name),
            };
            let found = [sec.as_str(), "DEFAULT"].iter().find_map(|s| {
                self.values
                    .get(&(s.to_string(), opt.to_string()))
                    .and_then(|v| v.last())
            });
            match found.filter(|_| !name.is_empty() && depth < 8) {
                Some(value) => out.push_str(&self.substitute(at, value, depth + 1)),
                None => {
                    // The name is not logged: the value may be a password with a `$` in it.
                    tracing::warn!(
                        "configuration: [{section}] {} has a `$` naming no option set (write `$$` \
                         for a `$`): left as written",
                        at.1
                    );
                    out.push('$');
                    out.push_str(&after[..len]);
                }
            }
            rest = &after[len..];
        }
        out.push_str(rest);
        out
    }

    /// The options given that nothing read, as `[section] key`, sorted.
    pub fn unused(&self) -> Vec<String> {
        let read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<String> = self
            .values
            .keys()
            .filter(|k| !read.contains(*k))
            .map(|(s, k)| format!("[{s}] {k}"))
            .collect();
        out.sort();
        out
    }
}

/// A value as oslo.config's parser reads it: one pair of matching quotes around it removed
/// (kolla writes `default_backend = "file"`).
fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// The configuration files to read, as oslo.config finds them: the `--config-file`s given,
/// then the `*.conf` files of each `--config-dir` in name order; with neither, the first
/// `glance.conf` and the first `glance-api.conf` of `search` (oslo.config's `~/.glance/`,
/// `~/`, `/etc/glance/`, `/etc/`), then the files of the first `glance.conf.d` and
/// `glance-api.conf.d` there.
pub fn discover(files: &[PathBuf], dirs: &[PathBuf], search: &[PathBuf]) -> Vec<PathBuf> {
    let conf_files = |dir: &Path| {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "conf"))
            .collect();
        found.sort();
        found
    };
    if !files.is_empty() || !dirs.is_empty() {
        let mut out = files.to_vec();
        for d in dirs {
            out.extend(conf_files(d));
        }
        return out;
    }
    let first = |name: &str, want_dir: bool| {
        search
            .iter()
            .map(|d| d.join(name))
            .find(|p| if want_dir { p.is_dir() } else { p.is_file() })
    };
    let mut out: Vec<PathBuf> = ["glance.conf", "glance-api.conf"]
        .iter()
        .filter_map(|n| first(n, false))
        .collect();
    for d in ["glance.conf.d", "glance-api.conf.d"]
        .iter()
        .filter_map(|n| first(n, true))
    {
        out.extend(conf_files(&d));
    }
    out
}

/// oslo.config's search path for a project's files.
pub fn search_path() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        dirs.push(home.join(".glance"));
        dirs.push(home);
    }
    dirs.push(PathBuf::from("/etc/glance"));
    dirs.push(PathBuf::from("/etc"));
    dirs
}

fn normalize_section(s: &str) -> String {
    if s.eq_ignore_ascii_case("default") {
        "DEFAULT".to_string()
    } else {
        s.to_lowercase()
    }
}

struct Reader<'a> {
    raw: &'a RawConfig,
}

impl Reader<'_> {
    fn invalid(section: &str, key: &str, msg: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            section: section.to_string(),
            key: key.to_string(),
            msg: msg.into(),
        }
    }

    fn string(&self, section: &str, key: &str, default: &str) -> String {
        self.raw
            .get(section, key)
            .map(str::to_string)
            .unwrap_or_else(|| default.to_string())
    }

    fn opt_string(&self, section: &str, key: &str) -> Option<String> {
        self.raw
            .get(section, key)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }

    fn bool(&self, section: &str, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.raw.get(section, key) {
            None => Ok(default),
            Some(v) => oslo_bool(v).ok_or_else(|| {
                Self::invalid(section, key, format!("{v:?} is not a boolean (true/false)"))
            }),
        }
    }

    fn int<T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display>(
        &self,
        section: &str,
        key: &str,
        default: T,
        min: Option<T>,
        max: Option<T>,
    ) -> Result<T, ConfigError> {
        let Some(v) = self.raw.get(section, key) else {
            return Ok(default);
        };
        let n: T = v
            .parse()
            .map_err(|_| Self::invalid(section, key, format!("{v:?} is not an integer")))?;
        if let Some(min) = min
            && n < min
        {
            return Err(Self::invalid(
                section,
                key,
                format!("{n} is less than {min}"),
            ));
        }
        if let Some(max) = max
            && n > max
        {
            return Err(Self::invalid(
                section,
                key,
                format!("{n} is greater than {max}"),
            ));
        }
        Ok(n)
    }

    fn list(&self, section: &str, key: &str, default: &[&str]) -> Vec<String> {
        match self.raw.get(section, key) {
            None => default.iter().map(|s| s.to_string()).collect(),
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }

    /// A list oslo.config reads with `bounds=True`: `[a, "b"]` (brackets and quotes are
    /// stripped; a value without brackets is read as a plain list).
    fn bounded_list(&self, section: &str, key: &str, default: &[&str]) -> Vec<String> {
        match self.raw.get(section, key) {
            None => default.iter().map(|s| s.to_string()).collect(),
            Some(v) => {
                let v = v.trim();
                let inner = v
                    .strip_prefix('[')
                    .and_then(|v| v.strip_suffix(']'))
                    .unwrap_or(v);
                inner
                    .split(',')
                    .map(|s| s.trim().trim_matches(|c| c == '"' || c == '\''))
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            }
        }
    }
}

/// Hash algorithms we compute for `os_hash_algo` (names as Python's hashlib spells them).
pub const HASH_ALGORITHMS: &[&str] = &["sha512", "sha384", "sha256", "sha224", "sha1", "md5"];

impl Config {
    /// The embedded default: everything under `./data/`, noauth, port 9292.
    pub fn load(files: &[PathBuf]) -> Result<Self, ConfigError> {
        let raw = RawConfig::load(files)?;
        let cfg = Self::from_raw(&raw)?;
        // Once, at start-up: what the deployment tool wrote that glance-rs leaves as it is
        // (an option glance-rs has no use for, or a misspelt one).
        let unused = raw.unused();
        if !unused.is_empty() {
            tracing::warn!(
                "configuration: {} options not used by glance-rs (ignored): {}",
                unused.len(),
                unused.join(", ")
            );
        }
        Ok(cfg)
    }

    pub fn from_raw(raw: &RawConfig) -> Result<Self, ConfigError> {
        let r = Reader { raw };
        let d = "DEFAULT";

        let metadata_source_path = r.string(d, "metadata_source_path", "/etc/glance/metadefs/");
        let hashing_algorithm = r.string(d, "hashing_algorithm", "sha512");
        if !HASH_ALGORITHMS.contains(&hashing_algorithm.as_str()) {
            return Err(Reader::invalid(
                d,
                "hashing_algorithm",
                format!(
                    "{hashing_algorithm:?} is not one of {}",
                    HASH_ALGORITHMS.join(", ")
                ),
            ));
        }

        let connection = r.string("database", "connection", "sqlite:///./data/glance.sqlite");
        normalize_connection(&connection)
            .map_err(|msg| Reader::invalid("database", "connection", msg))?;

        let flavor = match r
            .opt_string("paste_deploy", "flavor")
            .unwrap_or_default()
            .as_str()
        {
            "" => Flavor::NoAuth,
            "keystone" | "keystone+cachemanagement" => Flavor::Keystone,
            other => {
                return Err(Reader::invalid(
                    "paste_deploy",
                    "flavor",
                    format!(
                        "unknown flavor {other:?} (use keystone, or leave it unset for noauth)"
                    ),
                ));
            }
        };

        let (backends, multi_store) = backends(&r)?;
        let keystone = if flavor == Flavor::Keystone {
            Some(keystone(&r)?)
        } else {
            None
        };

        let public_endpoint = r
            .opt_string(d, "public_endpoint")
            .map(|s| s.trim_end_matches('/').to_string());
        if let Some(ep) = &public_endpoint
            && !(ep.starts_with("http://") || ep.starts_with("https://"))
        {
            return Err(Reader::invalid(
                d,
                "public_endpoint",
                format!("{ep:?} is not an http(s) URL"),
            ));
        }

        let property_protection_rule_format = r
            .string(d, "property_protection_rule_format", "roles")
            .to_ascii_lowercase();
        if !["roles", "policies"].contains(&property_protection_rule_format.as_str()) {
            return Err(Reader::invalid(
                d,
                "property_protection_rule_format",
                format!("{property_protection_rule_format:?} is not roles or policies"),
            ));
        }
        let policy_dirs = match r.raw.get_all("oslo_policy", "policy_dirs") {
            [] => vec!["policy.d".to_string()],
            lines => lines
                .iter()
                .flat_map(|l| l.split(','))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
        };

        let limit_param_default = r.int(d, "limit_param_default", 25u64, Some(1), None)?;
        let api_limit_max = r.int(d, "api_limit_max", 1000u64, Some(1), None)?;

        Ok(Config {
            bind_host: r.string(d, "bind_host", "0.0.0.0"),
            bind_port: r.int(d, "bind_port", 9292u16, Some(0), None)?,
            graceful_shutdown_timeout: r.int(
                d,
                "graceful_shutdown_timeout",
                60u64,
                Some(0),
                None,
            )?,
            shutdown_drain_timeout: r.int(
                d,
                "shutdown_drain_timeout",
                0u64,
                Some(0),
                Some(3600),
            )?,
            healthcheck_disable_file: r.opt_string("healthcheck", "disable_by_file_path"),
            healthcheck_detailed: r.bool("healthcheck", "detailed", false)?,
            notifications: NotificationConfig {
                // A multi-valued option: repeated, or a list.
                driver: r
                    .raw
                    .get_all("oslo_messaging_notifications", "driver")
                    .iter()
                    .flat_map(|v| v.split(','))
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect(),
                topics: r.list("oslo_messaging_notifications", "topics", &["notifications"]),
                transport_url: r
                    .opt_string("oslo_messaging_notifications", "transport_url")
                    .or_else(|| r.opt_string(d, "transport_url")),
                publisher_id: r.string(d, "default_publisher_id", "image.localhost"),
                disabled: r.list(d, "disabled_notifications", &[]),
                rabbit_tls: RabbitTls {
                    ssl: r.bool("oslo_messaging_rabbit", "ssl", false)?,
                    ca_file: r.opt_string("oslo_messaging_rabbit", "ssl_ca_file"),
                    cert_file: r.opt_string("oslo_messaging_rabbit", "ssl_cert_file"),
                    key_file: r.opt_string("oslo_messaging_rabbit", "ssl_key_file"),
                },
            },
            log: LogSettings {
                debug: r.bool(d, "debug", false)?,
                file: LogSettings::file_path(
                    r.opt_string(d, "log_file").as_deref(),
                    r.opt_string(d, "log_dir").as_deref(),
                ),
                use_stderr: r.bool(d, "use_stderr", false)?,
                use_journal: r.bool(d, "use_journal", false)?,
                use_json: r.bool(d, "use_json", false)?,
            },
            public_endpoint,
            proxy_headers_parsing: r.bool(
                "oslo_middleware",
                "enable_proxy_headers_parsing",
                false,
            )?,
            show_image_direct_url: r.bool(d, "show_image_direct_url", false)?,
            show_multiple_locations: r.bool(d, "show_multiple_locations", false)?,
            image_size_cap: r.int(
                d,
                "image_size_cap",
                1u64 << 40,
                Some(1),
                Some(9_223_372_036_854_775_808),
            )?,
            limit_param_default,
            api_limit_max,
            image_member_quota: r.int(d, "image_member_quota", 128i64, Some(-1), None)?,
            image_property_quota: r.int(d, "image_property_quota", 128i64, Some(-1), None)?,
            image_tag_quota: r.int(d, "image_tag_quota", 128i64, Some(-1), None)?,
            image_location_quota: r.int(d, "image_location_quota", 10i64, Some(-1), None)?,
            hashing_algorithm,
            metadata_source_path,
            database_connection: connection,
            flavor,
            backends,
            multi_store,
            policy_file: r.opt_string("oslo_policy", "policy_file"),
            policy_dirs,
            enforce_scope: r.bool("oslo_policy", "enforce_scope", true)?,
            enforce_new_defaults: r.bool("oslo_policy", "enforce_new_defaults", true)?,
            policy_default_rule: r.string("oslo_policy", "policy_default_rule", "default"),
            work_lease_seconds: r.int("task", "lease_seconds", 30u64, Some(1), Some(86_400))?,
            task_time_to_live: r.int("task", "task_time_to_live", 48u64, Some(0), None)?,
            do_secure_hash: r.bool(d, "do_secure_hash", true)?,
            http_retries: r.int(d, "http_retries", 3u64, Some(0), None)?,
            task_max_workers: r.int("taskflow_executor", "max_workers", 10u64, Some(1), None)?,
            import_filter: {
                let f = "import_filtering_opts";
                ImportFilter {
                    allowed_schemes: r.bounded_list(f, "allowed_schemes", &["http", "https"]),
                    disallowed_schemes: r.bounded_list(f, "disallowed_schemes", &[]),
                    allowed_hosts: r.bounded_list(f, "allowed_hosts", &[]),
                    disallowed_hosts: r.bounded_list(f, "disallowed_hosts", &[]),
                    allowed_ports: r.bounded_list(f, "allowed_ports", &["80", "443"]),
                    disallowed_ports: r.bounded_list(f, "disallowed_ports", &[]),
                }
            },
            property_protection_file: r.opt_string(d, "property_protection_file"),
            property_protection_rule_format,
            keystone,
            disk_formats: r.list("image_format", "disk_formats", DEFAULT_DISK_FORMATS),
            container_formats: r.list(
                "image_format",
                "container_formats",
                DEFAULT_CONTAINER_FORMATS,
            ),
            require_image_format_match: r.bool(
                "image_format",
                "require_image_format_match",
                true,
            )?,
            gpt_safety_checks_nonfatal: r.list("image_format", "gpt_safety_checks_nonfatal", &[]),
        })
    }
}

fn keystone(r: &Reader) -> Result<KeystoneConfig, ConfigError> {
    let s = "keystone_authtoken";
    let need = |key: &str| {
        r.opt_string(s, key).ok_or_else(|| {
            Reader::invalid(s, key, "required with [paste_deploy] flavor = keystone")
        })
    };
    let auth_type = r.string(s, "auth_type", "password");
    if auth_type != "password" {
        return Err(Reader::invalid(
            s,
            "auth_type",
            format!("{auth_type:?} is not supported (use password)"),
        ));
    }
    let auth_url = need("auth_url")?;
    Ok(KeystoneConfig {
        www_authenticate_uri: r
            .opt_string(s, "www_authenticate_uri")
            .unwrap_or_else(|| auth_url.clone()),
        auth_url,
        username: need("username")?,
        password: need("password")?,
        project_name: need("project_name")?,
        user_domain_name: r.string(s, "user_domain_name", "Default"),
        project_domain_name: r.string(s, "project_domain_name", "Default"),
        // kolla and OpenStack-Ansible name the domains by id; an id wins over a name, as in
        // keystoneauth.
        user_domain_id: r.opt_string(s, "user_domain_id"),
        project_domain_id: r.opt_string(s, "project_domain_id"),
        cafile: r.opt_string(s, "cafile").map(PathBuf::from),
        insecure: r.bool(s, "insecure", false)?,
        service_token_roles: r
            .list(s, "service_token_roles", &["service"])
            .into_iter()
            .map(|x| x.to_lowercase())
            .collect(),
        service_token_roles_required: r.bool(s, "service_token_roles_required", false)?,
        token_cache_time: r.int(s, "token_cache_time", 300u64, Some(0), None)?,
    })
}

/// Store types this build has.
fn supported_types() -> &'static [&'static str] {
    if cfg!(feature = "rbd") {
        &["file", "rbd", "http"]
    } else {
        &["file", "http"]
    }
}

/// The stores: `[DEFAULT] enabled_backends = id:type,...` with a section per id and
/// `[glance_store] default_backend`; or, without it, the legacy `[glance_store] default_store`.
fn backends(r: &Reader) -> Result<(Vec<Backend>, bool), ConfigError> {
    let enabled = r.list("DEFAULT", "enabled_backends", &[]);
    if enabled.is_empty() {
        let default_store = r.string("glance_store", "default_store", "file");
        let stores = r.list("glance_store", "stores", &["file", "http"]);
        if default_store == "http" || !supported_types().contains(&default_store.as_str()) {
            return Err(Reader::invalid(
                "glance_store",
                "default_store",
                format!(
                    "store {default_store:?} is not supported by this build (supported: {})",
                    supported_types()
                        .iter()
                        .filter(|t| **t != "http")
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let mut list = vec![backend(r, "glance_store", &default_store, &default_store)?];
        if default_store != "http" && stores.iter().any(|s| s == "http") {
            list.push(Backend {
                id: "http".into(),
                kind: BackendKind::Http,
                weight: 0,
                description: None,
            });
        }
        return Ok((list, false));
    }
    let mut list = Vec::new();
    for entry in &enabled {
        let (id, kind) = entry
            .split_once(':')
            .map(|(a, b)| (a.trim(), b.trim()))
            .ok_or_else(|| {
                Reader::invalid(
                    "DEFAULT",
                    "enabled_backends",
                    format!("{entry:?} is not id:type"),
                )
            })?;
        if !supported_types().contains(&kind) {
            // kolla lists `cinder:cinder` whenever Cinder is deployed: serve the others.
            tracing::warn!(
                "configuration: store {id:?} of type {kind:?} is not implemented by this build \
                 (supported: {}): left out",
                supported_types().join(", ")
            );
            continue;
        }
        if list.iter().any(|b: &Backend| b.id == id) {
            return Err(Reader::invalid(
                "DEFAULT",
                "enabled_backends",
                format!("{id:?} appears twice"),
            ));
        }
        list.push(backend(r, &id.to_lowercase(), id, kind)?);
    }
    let default = r
        .opt_string("glance_store", "default_backend")
        .ok_or_else(|| {
            Reader::invalid(
                "glance_store",
                "default_backend",
                "must name one of enabled_backends",
            )
        })?;
    let pos = list.iter().position(|b| b.id == default).ok_or_else(|| {
        Reader::invalid(
            "glance_store",
            "default_backend",
            format!("{default:?} is not in enabled_backends"),
        )
    })?;
    if list[pos].kind == BackendKind::Http {
        return Err(Reader::invalid(
            "glance_store",
            "default_backend",
            "the http store is read-only",
        ));
    }
    let d = list.remove(pos);
    list.insert(0, d);
    Ok((list, true))
}

/// `filesystem_store_direct_io`: `auto` or a boolean (default false).
fn direct_io(r: &Reader, section: &str) -> Result<DirectIo, ConfigError> {
    const KEY: &str = "filesystem_store_direct_io";
    match r.raw.get(section, KEY) {
        None => Ok(DirectIo::Off),
        Some(v) if v.eq_ignore_ascii_case("auto") => Ok(DirectIo::Auto),
        Some(v) => r
            .bool(section, KEY, true)
            .map(|on| if on { DirectIo::On } else { DirectIo::Off })
            .map_err(|_| {
                Reader::invalid(section, KEY, format!("{v:?} is not auto, true or false"))
            }),
    }
}

/// One store's options from its section (`glance_store` in the legacy setup).
fn backend(r: &Reader, section: &str, id: &str, kind: &str) -> Result<Backend, ConfigError> {
    let kind = match kind {
        "file" => BackendKind::File {
            dirs: datadirs(r.raw, section)?,
            file_perm: file_perm(r, section)?,
            thin: r.bool(section, "filesystem_thin_provisioning", false)?,
            direct_io: direct_io(r, section)?,
            cached_mib: r.int(
                section,
                "filesystem_store_cached_mib",
                2048u64,
                Some(0),
                None,
            )?,
            timeout: r.int(section, "filesystem_store_timeout", 60u64, Some(0), None)?,
            metadata_file: r
                .opt_string(section, "filesystem_store_metadata_file")
                .map(PathBuf::from),
        },
        "rbd" => BackendKind::Rbd {
            pool: r.string(section, "rbd_store_pool", "images"),
            user: r.string(section, "rbd_store_user", "admin"),
            conf: r.string(section, "rbd_store_ceph_conf", "/etc/ceph/ceph.conf"),
            chunk_mib: {
                let c = r.int(section, "rbd_store_chunk_size", 8u64, Some(1), Some(1024))?;
                if !c.is_power_of_two() {
                    return Err(Reader::invalid(
                        section,
                        "rbd_store_chunk_size",
                        "must be a power of two",
                    ));
                }
                c
            },
            connect_timeout: r.int(section, "rados_connect_timeout", 0i64, Some(-1), None)?,
            thin: r.bool(section, "rbd_thin_provisioning", false)?,
        },
        _ => BackendKind::Http,
    };
    Ok(Backend {
        id: id.to_string(),
        kind,
        weight: r.int(section, "weight", 0i64, None, None)?,
        description: r.opt_string(section, "store_description"),
    })
}

fn datadirs(raw: &RawConfig, section: &str) -> Result<Vec<(PathBuf, i64)>, ConfigError> {
    let multi = raw.get_all(section, "filesystem_store_datadirs");
    let single = raw.get(section, "filesystem_store_datadir");
    if multi.is_empty() {
        let default = if section == "glance_store" {
            "./data/images"
        } else {
            ""
        };
        let dir = single.unwrap_or(default);
        if dir.is_empty() {
            return Err(Reader::invalid(
                section,
                "filesystem_store_datadir",
                "a file store needs a directory",
            ));
        }
        return Ok(vec![(PathBuf::from(dir), 0)]);
    }
    if single.is_some() {
        return Err(Reader::invalid(
            section,
            "filesystem_store_datadirs",
            "filesystem_store_datadir and filesystem_store_datadirs cannot both be set",
        ));
    }
    let mut dirs = Vec::new();
    for entry in multi {
        // "path:priority"; the priority is optional (0).
        let (path, prio) = match entry.rsplit_once(':') {
            Some((p, n)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit() || c == '-') => {
                let prio = n.parse().map_err(|_| {
                    Reader::invalid(
                        section,
                        "filesystem_store_datadirs",
                        format!("bad priority in {entry:?}"),
                    )
                })?;
                (p, prio)
            }
            _ => (entry.as_str(), 0),
        };
        if path.is_empty() {
            return Err(Reader::invalid(
                section,
                "filesystem_store_datadirs",
                format!("empty path in {entry:?}"),
            ));
        }
        dirs.push((PathBuf::from(path), prio));
    }
    Ok(dirs)
}

/// Octal digits as glance_store reads them (`640` means rw-r-----); owner read is required.
fn file_perm(r: &Reader, section: &str) -> Result<u32, ConfigError> {
    let v = r.string(section, "filesystem_store_file_perm", "0");
    let perm = u32::from_str_radix(v.trim(), 8).map_err(|_| {
        Reader::invalid(
            section,
            "filesystem_store_file_perm",
            format!("{v:?} is not an octal mode"),
        )
    })?;
    if perm != 0 && (perm & 0o400 == 0 || perm > 0o777) {
        return Err(Reader::invalid(
            section,
            "filesystem_store_file_perm",
            format!("{v} must give the owner read permission and be at most 777"),
        ));
    }
    Ok(perm)
}

/// Turns an SQLAlchemy URL into an sqlx one: `mysql+pymysql://u:p@h/db?charset=utf8` →
/// `mysql://u:p@h/db`, `sqlite:///rel/path` → `sqlite://rel/path`, `sqlite:////abs` → `sqlite:///abs`.
pub fn normalize_connection(url: &str) -> Result<String, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a database URL"))?;
    let driver = scheme.split('+').next().unwrap_or(scheme);
    match driver {
        "mysql" | "mariadb" => {
            let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
            if !base.contains('/') {
                return Err(format!("{url:?} names no database"));
            }
            // PyMySQL's TLS and socket options in sqlx's words (OpenStack-Ansible writes
            // `ssl_ca` for a Galera with TLS); the others (charset, plugin, ...) mean nothing
            // to sqlx, which always speaks utf8mb4.
            let mut params = Vec::new();
            let (mut ca, mut verify, mut identity) = (false, true, false);
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let yes = matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes");
                match k {
                    "ssl_ca" => {
                        ca = true;
                        params.push(format!("ssl-ca={v}"));
                    }
                    "ssl_cert" => params.push(format!("ssl-cert={v}")),
                    "ssl_key" => params.push(format!("ssl-key={v}")),
                    "ssl_verify_cert" => verify = yes,
                    "ssl_verify_identity" => identity = yes,
                    "unix_socket" => params.push(format!("socket={v}")),
                    _ => {}
                }
            }
            if params.iter().any(|p| p.starts_with("ssl-")) {
                let mode = match (ca && verify, identity) {
                    (true, true) => "VERIFY_IDENTITY",
                    (true, false) => "VERIFY_CA",
                    _ => "REQUIRED",
                };
                params.push(format!("ssl-mode={mode}"));
            }
            if params.is_empty() {
                Ok(format!("mysql://{base}"))
            } else {
                Ok(format!("mysql://{base}?{}", params.join("&")))
            }
        }
        "sqlite" => {
            let path = rest
                .strip_prefix('/')
                .ok_or_else(|| format!("{url:?}: use sqlite:///PATH"))?;
            if path.is_empty() {
                return Err("in-memory SQLite is not supported: it is lost on restart".into());
            }
            Ok(format!("sqlite://{path}?mode=rwc"))
        }
        other => Err(format!(
            "unsupported database driver {other:?} (use mysql+pymysql:// or sqlite:///)"
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_lose_one_pair_of_quotes_as_oslo_config_reads_them() {
        assert_eq!(unquote("\"file\""), "file");
        assert_eq!(unquote("'file'"), "file");
        assert_eq!(unquote("\"a'"), "\"a'");
        assert_eq!(unquote("\""), "\"");
        assert_eq!(unquote("plain"), "plain");
    }

    #[test]
    fn files_are_found_as_oslo_config_finds_them() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        for d in [&a, &b, &b.join("glance-api.conf.d"), &a.join("conf.d")] {
            std::fs::create_dir_all(d).unwrap();
        }
        for f in [
            a.join("glance-api.conf"),
            b.join("glance-api.conf"),
            b.join("glance.conf"),
            b.join("glance-api.conf.d/20.conf"),
            b.join("glance-api.conf.d/10.conf"),
            b.join("glance-api.conf.d/notes.txt"),
            a.join("conf.d/z.conf"),
            a.join("conf.d/y.conf"),
        ] {
            std::fs::write(f, "").unwrap();
        }
        let search = [a.clone(), b.clone()];
        // glance.conf first, then the first glance-api.conf, then the .conf.d files.
        assert_eq!(
            discover(&[], &[], &search),
            vec![
                b.join("glance.conf"),
                a.join("glance-api.conf"),
                b.join("glance-api.conf.d/10.conf"),
                b.join("glance-api.conf.d/20.conf"),
            ]
        );
        // Named files and directories replace the search.
        let named = vec![b.join("glance.conf")];
        assert_eq!(
            discover(&named, &[a.join("conf.d")], &search),
            vec![
                b.join("glance.conf"),
                a.join("conf.d/y.conf"),
                a.join("conf.d/z.conf")
            ]
        );
        assert!(discover(&[], &[], &[root.path().join("none")]).is_empty());
    }

    use super::*;

    fn raw(pairs: &[(&str, &str, &str)]) -> RawConfig {
        let mut r = RawConfig::default();
        for (s, k, v) in pairs {
            r.set(s, k, v);
        }
        r
    }

    #[test]
    fn connection_urls() {
        assert_eq!(
            normalize_connection("mysql+pymysql://glance:pw@127.0.0.1:3306/glance?charset=utf8")
                .unwrap(),
            "mysql://glance:pw@127.0.0.1:3306/glance"
        );
        assert_eq!(
            normalize_connection("sqlite:////var/lib/glance/glance.sqlite").unwrap(),
            "sqlite:///var/lib/glance/glance.sqlite?mode=rwc"
        );
        assert_eq!(
            normalize_connection("sqlite:///data/g.sqlite").unwrap(),
            "sqlite://data/g.sqlite?mode=rwc"
        );
        assert_eq!(
            normalize_connection(
                "mysql+pymysql://g:pw@db/glance?charset=utf8&ssl_ca=/etc/ssl/ca.pem&read_timeout=5"
            )
            .unwrap(),
            "mysql://g:pw@db/glance?ssl-ca=/etc/ssl/ca.pem&ssl-mode=VERIFY_CA"
        );
        assert_eq!(
            normalize_connection(
                "mysql+pymysql://g:pw@db/glance?ssl_ca=/ca&ssl_verify_identity=true"
            )
            .unwrap(),
            "mysql://g:pw@db/glance?ssl-ca=/ca&ssl-mode=VERIFY_IDENTITY"
        );
        assert_eq!(
            normalize_connection("mysql://g@localhost/glance?unix_socket=/run/mysqld/mysqld.sock")
                .unwrap(),
            "mysql://g@localhost/glance?socket=/run/mysqld/mysqld.sock"
        );
        assert!(normalize_connection("postgresql://x/y").is_err());
        assert!(normalize_connection("sqlite://").is_err());
    }

    #[test]
    fn invalid_value_names_section_and_key() {
        let err = Config::from_raw(&raw(&[("DEFAULT", "bind_port", "http")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value for [DEFAULT] bind_port: \"http\" is not an integer"
        );
        let err =
            Config::from_raw(&raw(&[("DEFAULT", "show_image_direct_url", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("[DEFAULT] show_image_direct_url"));
        let err = Config::from_raw(&raw(&[("database", "connection", "oracle://x")])).unwrap_err();
        assert!(err.to_string().contains("[database] connection"));
    }

    #[test]
    fn store_options() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.conf");
        std::fs::write(
            &f,
            "[glance_store]\nfilesystem_store_datadirs = /a:100\nfilesystem_store_datadirs = /b\nfilesystem_store_file_perm = 640\n",
        )
        .unwrap();
        let mut r = RawConfig::default();
        r.merge_file(&f).unwrap();
        let c = Config::from_raw(&r).unwrap();
        let BackendKind::File {
            dirs,
            file_perm,
            direct_io,
            ..
        } = &c.backends[0].kind
        else {
            panic!("file store expected")
        };
        assert_eq!(
            dirs,
            &vec![(PathBuf::from("/a"), 100), (PathBuf::from("/b"), 0)]
        );
        assert_eq!(*file_perm, 0o640);
        assert_eq!(*direct_io, DirectIo::Off, "buffered unless asked");
        for (value, want) in [
            ("false", DirectIo::Off),
            ("On", DirectIo::On),
            ("AUTO", DirectIo::Auto),
        ] {
            let c = Config::from_raw(&raw(&[(
                "glance_store",
                "filesystem_store_direct_io",
                value,
            )]))
            .unwrap();
            assert!(
                matches!(c.backends[0].kind, BackendKind::File { direct_io, .. } if direct_io == want),
                "{value}"
            );
        }
        let err = Config::from_raw(&raw(&[(
            "glance_store",
            "filesystem_store_direct_io",
            "sometimes",
        )]))
        .unwrap_err();
        assert!(err.to_string().contains("auto, true or false"), "{err}");
        assert!(!c.multi_store);
        assert_eq!(c.backends[1].kind, BackendKind::Http);
        let err = Config::from_raw(&raw(&[(
            "glance_store",
            "filesystem_store_file_perm",
            "200",
        )]))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("[glance_store] filesystem_store_file_perm")
        );
    }

    #[test]
    fn multi_store_backends() {
        let c = Config::from_raw(&raw(&[
            (
                "DEFAULT",
                "enabled_backends",
                "fast:file, web:http, cinder:cinder, slow:file",
            ),
            ("glance_store", "default_backend", "slow"),
            ("fast", "filesystem_store_datadir", "/f"),
            ("fast", "weight", "100"),
            ("slow", "filesystem_store_datadir", "/s"),
            ("slow", "store_description", "Slow disks"),
        ]))
        .unwrap();
        assert!(c.multi_store);
        // A store type this build lacks (kolla's cinder) is left out, not refused.
        let ids: Vec<&str> = c.backends.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["slow", "fast", "web"]);
        assert_eq!(c.backends[1].weight, 100);
        assert_eq!(c.backends[0].description.as_deref(), Some("Slow disks"));
        let err = Config::from_raw(&raw(&[
            ("DEFAULT", "enabled_backends", "a:file"),
            ("a", "filesystem_store_datadir", "/a"),
            ("glance_store", "default_backend", "b"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string().contains("[glance_store] default_backend"),
            "{err}"
        );
    }

    #[test]
    fn values_interpolated_and_unused_options_found_as_oslo_config() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("glance-api.conf");
        std::fs::write(
            &f,
            "[DEFAULT]\nstate_path = /var/lib/glance\nimage_cache_dir = $state_path/cache\n\
             metadata_source_path = ${state_path}/metadefs\nnot_an_option = 1\n\
             [glance_store]\nfilesystem_store_datadir = ${DEFAULT.state_path}/images/\n\
             [database]\nconnection = mysql://glance:pa$$word@db/glance\n\
             [keystone_authtoken]\npassword = se$cret\n\
             [profiler]\nenabled = false\n",
        )
        .unwrap();
        let raw = RawConfig::load(std::slice::from_ref(&f)).unwrap();
        assert_eq!(
            raw.get("DEFAULT", "image_cache_dir"),
            Some("/var/lib/glance/cache")
        );
        assert_eq!(
            raw.get("DEFAULT", "metadata_source_path"),
            Some("/var/lib/glance/metadefs")
        );
        assert_eq!(
            raw.get("database", "connection"),
            Some("mysql://glance:pa$word@db/glance")
        );
        // No option `cret`: left as written (oslo.config would refuse to start).
        assert_eq!(raw.get("keystone_authtoken", "password"), Some("se$cret"));
        let c = Config::from_raw(&raw).unwrap();
        assert_eq!(
            c.backends[0].kind,
            Config::from_raw(&raw_of(&[(
                "glance_store",
                "filesystem_store_datadir",
                "/var/lib/glance/images/"
            )]))
            .unwrap()
            .backends[0]
                .kind
        );
        let unused = raw.unused();
        assert!(
            unused.contains(&"[DEFAULT] not_an_option".to_string()),
            "{unused:?}"
        );
        assert!(unused.contains(&"[profiler] enabled".to_string()));
        // Read: not reported.
        assert!(
            !unused
                .iter()
                .any(|u| u.contains("filesystem_store_datadir"))
        );
    }

    fn raw_of(pairs: &[(&str, &str, &str)]) -> RawConfig {
        raw(pairs)
    }

    #[test]
    fn later_file_wins_and_env_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.conf");
        let b = dir.path().join("b.conf");
        std::fs::write(&a, "[DEFAULT]\nbind_port = 1\napi_limit_max = 7\n").unwrap();
        std::fs::write(&b, "[DEFAULT]\nbind_port = 2\n").unwrap();
        let mut r = RawConfig::default();
        r.merge_file(&a).unwrap();
        r.merge_file(&b).unwrap();
        r.merge_env(vec![("OS_DEFAULT__API_LIMIT_MAX".to_string(), "9".to_string())].into_iter());
        let c = Config::from_raw(&r).unwrap();
        assert_eq!(c.bind_port, 2);
        assert_eq!(c.api_limit_max, 9);
        assert_eq!(c.graceful_shutdown_timeout, 60, "oslo.service's default");
    }
}

/// `[import_filtering_opts]`, as Glance reads it: an allowed list, when given, overrides the
/// disallowed one.
#[derive(Debug, Clone, Default)]
pub struct ImportFilter {
    pub allowed_schemes: Vec<String>,
    pub disallowed_schemes: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub disallowed_hosts: Vec<String>,
    pub allowed_ports: Vec<String>,
    pub disallowed_ports: Vec<String>,
}

/// `filesystem_store_direct_io`: `false` (the default) never writes with O_DIRECT, `auto` on
/// local disk filesystems only, `true` wherever the filesystem accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectIo {
    Auto,
    On,
    Off,
}

/// `[DEFAULT]`'s logging options, as oslo.log reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogSettings {
    pub debug: bool,
    /// `log_file`, joined to `log_dir` (with `log_dir` alone: `glance-api.log` there).
    pub file: Option<PathBuf>,
    pub use_stderr: bool,
    pub use_journal: bool,
    pub use_json: bool,
}

impl LogSettings {
    /// oslo.log's `_get_log_file_path`, the binary named as the service it replaces.
    pub fn file_path(log_file: Option<&str>, log_dir: Option<&str>) -> Option<PathBuf> {
        match (log_file, log_dir) {
            (Some(f), None) => Some(PathBuf::from(f)),
            (Some(f), Some(d)) => Some(Path::new(d).join(f)),
            (None, Some(d)) => Some(Path::new(d).join("glance-api.log")),
            (None, None) => None,
        }
    }
}

/// oslo.messaging's notification options, and Glance's own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotificationConfig {
    /// `[oslo_messaging_notifications] driver` (none: no notifications).
    pub driver: Vec<String>,
    pub topics: Vec<String>,
    /// `[oslo_messaging_notifications] transport_url`, else `[DEFAULT] transport_url`.
    pub transport_url: Option<String>,
    /// `[DEFAULT] default_publisher_id`.
    pub publisher_id: String,
    /// `[DEFAULT] disabled_notifications`: events or groups (`image`) not sent.
    pub disabled: Vec<String>,
    /// `[oslo_messaging_rabbit]`'s TLS options (the transport_url's query may override them).
    pub rabbit_tls: RabbitTls,
}

/// A boolean as oslo.config reads one (also the transport_url's query options).
pub fn oslo_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// TLS to RabbitMQ as oslo.messaging's rabbit driver does it: `ssl` on, then the broker's
/// certificate checked against `ssl_ca_file` (and its name, with one broker) or, without one,
/// against the system's CAs (name unchecked); `ssl_cert_file`/`ssl_key_file`: a client
/// certificate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RabbitTls {
    pub ssl: bool,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

impl NotificationConfig {
    /// Whether a driver sends to a broker (`messagingv2`, or `messaging`, the v1 format).
    pub fn messaging(&self) -> bool {
        self.driver
            .iter()
            .any(|d| d == "messagingv2" || d == "messaging")
    }
}

/// `[keystone_authtoken]`: how to validate tokens, as keystonemiddleware reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeystoneConfig {
    pub www_authenticate_uri: String,
    pub auth_url: String,
    pub username: String,
    pub password: String,
    pub project_name: String,
    pub user_domain_name: String,
    pub project_domain_name: String,
    pub user_domain_id: Option<String>,
    pub project_domain_id: Option<String>,
    /// CA certificates (PEM) Keystone's TLS certificate is checked against.
    pub cafile: Option<PathBuf>,
    /// Keystone's TLS certificate is not checked.
    pub insecure: bool,
    pub service_token_roles: Vec<String>,
    /// Refuse (401) a service token that lacks `service_token_roles`.
    pub service_token_roles_required: bool,
    pub token_cache_time: u64,
}
