//! Logs as oslo.log writes them, so that operators' greps (`req-...`), kolla's fluentd and
//! logrotate keep working: `logging_context_format_string`'s default layout
//! (`2026-12-04 02:30:00.123 4242 INFO glance_rs.api [None req-... user project - - default
//! default] message`), `[-]` outside a request; `[DEFAULT] debug`, `log_file`/`log_dir` (a
//! watched file: reopened once logrotate moves it), `use_stderr`, `use_journal`, `use_json`.
//!
//! Logging starts before the configuration is read (on stderr, so that its warnings are
//! seen) and is configured once it is: the filter and the outputs are reloadable layers.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Context as LayerContext, Layered, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

pub use crate::config::LogSettings;

type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;
type Base = Layered<RequestLayer, Filtered>;
type Output = Box<dyn Layer<Base> + Send + Sync>;

struct Handles {
    filter: reload::Handle<EnvFilter, Registry>,
    output: reload::Handle<Output, Base>,
}

static HANDLES: OnceLock<Handles> = OnceLock::new();

/// The journal as oslo.log's journal handler fills it: fields named plainly (`REQUEST_ID`,
/// `PROJECT_ID`, `USER_ID`, for `journalctl REQUEST_ID=req-...`), syslog's priority for each
/// Python level (INFO is 6, DEBUG 7), and the service's name as identifier.
fn journal(j: tracing_journald::Layer) -> tracing_journald::Layer {
    use tracing_journald::{Priority, PriorityMappings};
    j.with_syslog_identifier("glance-api".into())
        .with_field_prefix(None)
        .with_priority_mappings(PriorityMappings {
            info: Priority::Informational,
            debug: Priority::Debug,
            ..PriorityMappings::new()
        })
}
fn filter(debug: bool) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        if debug {
            "debug,sqlx=warn,hyper=info,h2=info,tower=info,ureq=info,rustls=info".into()
        } else {
            "info,sqlx=warn".into()
        }
    })
}

/// Logging before the configuration is known: oslo.log's text on stderr, INFO (or RUST_LOG).
pub fn bootstrap() {
    let (filter, filter_handle) = reload::Layer::new(filter(false));
    let out: Output = Box::new(text_layer(Sinks::stderr(), false));
    let (output, output_handle) = reload::Layer::new(out);
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(RequestLayer)
        .with(output)
        .try_init();
    if installed.is_ok() {
        let _ = HANDLES.set(Handles {
            filter: filter_handle,
            output: output_handle,
        });
    }
}

/// Sends the logs where `s` says, as oslo.log would: the file (and stderr only with
/// `use_stderr`), the journal, or with none of them stderr (oslo.log's stdout carries
/// glance-rs's "listening on" line).
pub fn configure(s: &LogSettings) -> Result<(), String> {
    let Some(h) = HANDLES.get() else {
        return Ok(());
    };
    let file = match &s.file {
        Some(p) => Some(WatchedFile::open(p).map_err(|e| {
            format!(
                "cannot open the log file {} ([DEFAULT] log_file): {e}",
                p.display()
            )
        })?),
        None => None,
    };
    let stderr = s.use_stderr || (file.is_none() && !s.use_journal);
    let sinks = Sinks {
        file: file.map(Mutex::new),
        stderr,
    };
    let mut out: Output = if sinks.file.is_some() || sinks.stderr {
        if s.use_json {
            Box::new(json_layer(sinks))
        } else {
            Box::new(text_layer(sinks, s.debug))
        }
    } else {
        Box::new(tracing_subscriber::layer::Identity::new())
    };
    if s.use_journal {
        match tracing_journald::layer() {
            Ok(j) => out = Box::new(out.and_then(journal(j))),
            Err(e) => {
                eprintln!("glance-rs: [DEFAULT] use_journal: the journal is not reachable: {e}")
            }
        }
    }
    h.output
        .reload(out)
        .map_err(|e| format!("cannot configure logging: {e}"))?;
    h.filter
        .reload(filter(s.debug))
        .map_err(|e| format!("cannot configure logging: {e}"))
}

fn text_layer(sinks: Sinks, debug: bool) -> impl Layer<Base> + Send + Sync {
    tracing_subscriber::fmt::layer()
        .event_format(Oslo { json: false, debug })
        .with_writer(sinks)
}

fn json_layer(sinks: Sinks) -> impl Layer<Base> + Send + Sync {
    tracing_subscriber::fmt::layer()
        .event_format(Oslo {
            json: true,
            debug: false,
        })
        .with_writer(sinks)
}

/// What a request's log lines carry: oslo.context's ids, as the request span records them.
#[derive(Debug, Default, Clone)]
struct RequestFields {
    request_id: Option<String>,
    global_request_id: Option<String>,
    user: Option<String>,
    project: Option<String>,
    domain: Option<String>,
    system_scope: Option<String>,
    user_domain: Option<String>,
    project_domain: Option<String>,
}

impl Visit for RequestFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        let slot = match field.name() {
            "request_id" => &mut self.request_id,
            "global_request_id" => &mut self.global_request_id,
            "user_id" => &mut self.user,
            "project_id" => &mut self.project,
            "domain_id" => &mut self.domain,
            "system_scope" => &mut self.system_scope,
            "user_domain_id" => &mut self.user_domain,
            "project_domain_id" => &mut self.project_domain,
            _ => return,
        };
        *slot = Some(value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

/// Keeps each `request` span's ids (recorded at its start, and the caller's once known).
pub struct RequestLayer;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for RequestLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        if attrs.metadata().name() != "request" {
            return;
        }
        let mut f = RequestFields::default();
        attrs.record(&mut f);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(f);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(f) = span.extensions_mut().get_mut::<RequestFields>()
        {
            values.record(f);
        }
    }
}

/// An event's message and its other fields, in order.
#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.rest.push((field.name(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.rest.push((field.name(), format!("{value:?}")));
        }
    }
}

/// oslo.log's ContextFormatter (text) or JSONFormatter.
struct Oslo {
    json: bool,
    debug: bool,
}

fn level_name(l: &tracing::Level) -> (&'static str, u8) {
    match *l {
        tracing::Level::ERROR => ("ERROR", 40),
        tracing::Level::WARN => ("WARNING", 30),
        tracing::Level::INFO => ("INFO", 20),
        // Python has no TRACE: both are DEBUG.
        _ => ("DEBUG", 10),
    }
}

impl<S, N> FormatEvent<S, N> for Oslo
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let now = chrono::Local::now();
        let (level, levelno) = level_name(meta.level());
        let name = meta.target().replace("::", ".");
        let mut fields = Fields::default();
        event.record(&mut fields);
        let request = ctx.event_scope().and_then(|scope| {
            scope
                .from_root()
                .find_map(|span| span.extensions().get::<RequestFields>().cloned())
        });
        let pid = std::process::id();
        if self.json {
            let context = match &request {
                Some(r) => serde_json::json!({
                    "request_id": r.request_id,
                    "global_request_id": r.global_request_id,
                    "user": r.user,
                    "project": r.project,
                    "domain": r.domain,
                    "system_scope": r.system_scope,
                    "user_domain": r.user_domain,
                    "project_domain": r.project_domain,
                }),
                None => serde_json::json!({}),
            };
            let extra: serde_json::Map<String, serde_json::Value> = fields
                .rest
                .iter()
                .map(|(k, v)| ((*k).to_string(), serde_json::Value::String(v.clone())))
                .collect();
            let line = serde_json::json!({
                "message": fields.message,
                "asctime": now.format("%Y-%m-%d %H:%M:%S").to_string(),
                "name": name,
                "levelname": level,
                "levelno": levelno,
                "filename": meta.file(),
                "lineno": meta.line(),
                "module": meta.module_path(),
                "created": now.timestamp_micros() as f64 / 1e6,
                "msecs": now.timestamp_subsec_millis(),
                "process": pid,
                "process_name": "glance-api",
                "hostname": hostname(),
                "context": context,
                "extra": extra,
            });
            return writeln!(w, "{line}");
        }
        write!(
            w,
            "{} {pid} {level} {name} ",
            now.format("%Y-%m-%d %H:%M:%S%.3f")
        )?;
        match &request {
            Some(r) => {
                let d = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                write!(
                    w,
                    "[{} {} {} {} {} {} {} {}] ",
                    r.global_request_id.as_deref().unwrap_or("None"),
                    d(&r.request_id),
                    d(&r.user),
                    d(&r.project),
                    d(&r.domain),
                    d(&r.system_scope),
                    d(&r.user_domain),
                    d(&r.project_domain)
                )?;
            }
            None => write!(w, "[-] ")?,
        }
        write!(w, "{}", fields.message)?;
        for (k, v) in &fields.rest {
            write!(w, " {k}={v}")?;
        }
        if self.debug && levelno == 10 {
            // logging_debug_format_suffix, the function named by its module.
            write!(
                w,
                " {} {}:{}",
                meta.module_path().unwrap_or(""),
                meta.file().unwrap_or(""),
                meta.line().unwrap_or(0)
            )?;
        }
        writeln!(w)
    }
}

fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    })
}

/// A log file reopened when it is moved or removed (logrotate without copytruncate), as
/// Python's WatchedFileHandler: its device and inode are compared before each line.
struct WatchedFile {
    path: PathBuf,
    file: std::fs::File,
    id: (u64, u64),
}

impl WatchedFile {
    fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let m = file.metadata()?;
        Ok(WatchedFile {
            path: path.to_path_buf(),
            file,
            id: (m.dev(), m.ino()),
        })
    }

    fn write_line(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let moved = match std::fs::metadata(&self.path) {
            Ok(m) => (m.dev(), m.ino()) != self.id,
            Err(_) => true,
        };
        if moved {
            *self = WatchedFile::open(&self.path)?;
        }
        self.file.write_all(buf)
    }
}

/// Where lines go: the watched file and/or stderr.
struct Sinks {
    file: Option<Mutex<WatchedFile>>,
    stderr: bool,
}

impl Sinks {
    fn stderr() -> Self {
        Sinks {
            file: None,
            stderr: true,
        }
    }
}

struct SinkWriter<'a>(&'a Sinks);

impl Write for SinkWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(f) = &self.0.file {
            // A log line that cannot be written must not fail the request that logs it.
            let _ = f.lock().unwrap_or_else(|e| e.into_inner()).write_line(buf);
        }
        if self.0.stderr {
            let _ = std::io::stderr().write_all(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Sinks {
    type Writer = SinkWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        SinkWriter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_file_path_as_oslo_log() {
        assert_eq!(
            LogSettings::file_path(Some("/var/log/g.log"), None),
            Some(PathBuf::from("/var/log/g.log"))
        );
        assert_eq!(
            LogSettings::file_path(Some("g.log"), Some("/var/log/glance")),
            Some(PathBuf::from("/var/log/glance/g.log"))
        );
        assert_eq!(
            LogSettings::file_path(None, Some("/var/log/glance")),
            Some(PathBuf::from("/var/log/glance/glance-api.log"))
        );
        assert_eq!(LogSettings::file_path(None, None), None);
    }

    #[test]
    fn a_moved_log_file_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("api.log");
        let mut f = WatchedFile::open(&p).unwrap();
        f.write_line(b"one\n").unwrap();
        std::fs::rename(&p, dir.path().join("api.log.1")).unwrap();
        f.write_line(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("api.log.1")).unwrap(),
            "one\n"
        );
    }
}
