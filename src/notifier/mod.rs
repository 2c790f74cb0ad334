//! Notifications as Glance sends them through oslo.messaging (Ceilometer bills from them):
//! `[oslo_messaging_notifications] driver = messagingv2` (or `messaging`), `topics`, and
//! `transport_url` (`rabbit://`), published to the `glance` topic exchange with the routing key
//! `<topic>.<priority>`, Glance's payloads in oslo.messaging's envelope.
//!
//! A request never waits for the broker: events go into a bounded queue that one task sends
//! from, reconnecting with a growing pause while the broker is away; when the queue is full,
//! events are dropped and counted in the log.

mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use amqprs::BasicProperties;
use amqprs::channel::{
    BasicPublishArguments, Channel, ExchangeDeclareArguments, QueueBindArguments,
    QueueDeclareArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::config::NotificationConfig;
use crate::db::metadefs::Kind;
use crate::domain::image::Image;
use crate::domain::metadef::{Association, Entry, Namespace};
use crate::domain::task::Task;
use crate::json::isotime;

/// Events waiting for the broker before new ones are dropped.
const QUEUE: usize = 10_000;

/// oslo.messaging's exchange for Glance's notifications (its control_exchange).
const EXCHANGE: &str = "glance";

struct Event {
    priority: &'static str,
    event_type: String,
    payload: Value,
}

/// Sends Glance's notifications; does nothing without a messaging driver.
pub struct Notifier {
    tx: Option<mpsc::Sender<Event>>,
    disabled: Vec<String>,
    dropped: AtomicU64,
}

impl Notifier {
    pub fn disabled() -> Arc<Notifier> {
        Arc::new(Notifier {
            tx: None,
            disabled: Vec::new(),
            dropped: AtomicU64::new(0),
        })
    }

    /// Starts the sender when `cfg` names a messaging driver and a broker.
    pub fn start(cfg: &NotificationConfig) -> Arc<Notifier> {
        let Some(url) = cfg.transport_url.clone().filter(|_| cfg.messaging()) else {
            return Notifier::disabled();
        };
        let brokers = match parse_transport_url(&url) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(
                    "[oslo_messaging_notifications] transport_url: {e}: notifications are not sent"
                );
                return Notifier::disabled();
            }
        };
        let tls = match tls::settings(&cfg.rabbit_tls, &url)
            .and_then(|t| tls::client(&t, brokers.len()))
        {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("[oslo_messaging_rabbit] {e}: notifications are not sent");
                return Notifier::disabled();
            }
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let sender = Sender {
            brokers,
            tls,
            topics: cfg.topics.clone(),
            publisher_id: cfg.publisher_id.clone(),
            v2: cfg.driver.iter().any(|d| d == "messagingv2"),
        };
        tokio::spawn(sender.run(rx));
        Arc::new(Notifier {
            tx: Some(tx),
            disabled: cfg.disabled.clone(),
            dropped: AtomicU64::new(0),
        })
    }

    /// Whether notifications are sent at all (what to read for them is then worth reading).
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues `event_type` with `payload` at `priority` (INFO, ERROR), unless the event or its
    /// group (`image`) is in `[DEFAULT] disabled_notifications`.
    fn send(&self, priority: &'static str, event_type: &str, payload: Value) {
        let Some(tx) = &self.tx else { return };
        let group = event_type.split('.').next().unwrap_or(event_type);
        if self.disabled.iter().any(|d| d == event_type || d == group) {
            return;
        }
        let event = Event {
            priority,
            event_type: event_type.to_string(),
            payload,
        };
        if tx.try_send(event).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    "notification queue full (the broker is away): events dropped"
                );
            }
        }
    }

    pub fn info(&self, event_type: &str, payload: Value) {
        self.send("INFO", event_type, payload);
    }

    pub fn error(&self, event_type: &str, payload: Value) {
        self.send("ERROR", event_type, payload);
    }

    /// `image.create`, `image.update`, `image.prepare`, `image.upload`, `image.activate`, ...:
    /// the image as Glance's `format_image_notification` shows it.
    pub fn image(&self, event_type: &str, img: &Image) {
        if self.tx.is_some() {
            self.info(event_type, image_payload(img));
        }
    }

    /// `image.prepare` and `image.upload`: with the import's stores (Glance's
    /// `_format_import_properties`) and, with several stores, the one written to.
    pub fn image_data(&self, event_type: &str, img: &Image, backend: Option<&str>) {
        if self.tx.is_none() {
            return;
        }
        let mut p = image_payload(img);
        for key in ["os_glance_importing_to_stores", "os_glance_failed_import"] {
            let list: Vec<&str> = img
                .properties
                .get(key)
                .map(|v| v.split(',').filter(|s| !s.is_empty()).collect())
                .unwrap_or_default();
            p[key] = json!(list);
        }
        if let Some(b) = backend {
            p["backend"] = json!(b);
        }
        self.info(event_type, p);
    }

    /// `image.delete`: the image, marked deleted now.
    pub fn image_deleted(&self, img: &Image) {
        if self.tx.is_some() {
            let mut p = image_payload(img);
            p["deleted"] = json!(true);
            p["deleted_at"] = json!(isotime(&chrono::Utc::now().naive_utc()));
            self.info("image.delete", p);
        }
    }

    /// `image.member.create`, `.update`, `.delete` (`deleted`).
    pub fn member(&self, event_type: &str, m: &crate::db::members::Member, deleted: bool) {
        if self.tx.is_some() {
            self.info(
                event_type,
                json!({
                    "image_id": m.image_id,
                    "member_id": m.member_id,
                    "status": m.status,
                    "created_at": isotime(&m.created_at),
                    "updated_at": isotime(&m.updated_at),
                    "deleted": deleted,
                    "deleted_at": deleted.then(|| isotime(&chrono::Utc::now().naive_utc())),
                }),
            );
        }
    }

    /// `task.create`, `task.run`, `task.processing`, `task.success`, `task.failure`: the task
    /// without its input (it may hold credentials), as Glance's `format_task_notification`.
    pub fn task(&self, event_type: &str, t: &Task) {
        if self.tx.is_some() {
            self.info(
                event_type,
                json!({
                    "id": t.id,
                    "type": t.kind,
                    "status": t.status,
                    "result": null,
                    "owner": t.owner,
                    "message": null,
                    "expires_at": t.expires_at.as_ref().map(isotime),
                    "created_at": isotime(&t.created_at),
                    "updated_at": isotime(&t.updated_at),
                    "deleted": false,
                    "deleted_at": null,
                }),
            );
        }
    }

    /// `image.send`: a download's bytes all sent, to whom. (Glance sends it as an error when
    /// fewer bytes than the size came from the store; here such a download fails instead.)
    pub fn image_sent(&self, img: &Image, sent: u64, receiver: &crate::domain::policy::Context) {
        if self.tx.is_none() {
            return;
        }
        let payload = json!({
            "bytes_sent": sent,
            "image_id": img.id,
            "owner_id": img.owner,
            "receiver_tenant_id": receiver.project_id,
            "receiver_user_id": receiver.user_id,
        });
        self.info("image.send", payload);
    }
    /// `metadef_namespace.create`, `.update` (renamed from `old`), `.delete` (`deleted`), and
    /// `.delete_objects`, `.delete_properties`, `.delete_tags`: the namespace as Glance's
    /// `format_metadef_namespace_notification` shows it.
    pub fn metadef_namespace(&self, event_type: &str, ns: &Namespace, old: &str, deleted: bool) {
        if self.tx.is_none() {
            return;
        }
        let mut p = json!({
            "namespace": ns.namespace,
            "namespace_old": old,
            "display_name": ns.display_name,
            "protected": ns.protected,
            "visibility": ns.visibility,
            "owner": ns.owner,
            "description": ns.description,
            "created_at": isotime(&ns.created_at),
            "updated_at": when(ns.updated_at.as_ref()),
        });
        mark_deleted(&mut p, deleted);
        self.info(event_type, p);
    }

    /// `metadef_object.*`, `metadef_property.*`, `metadef_tag.*` (`action`: create, update,
    /// delete) for an entry of namespace `ns`, renamed from `old` on update.
    pub fn metadef_entry(&self, action: &str, kind: Kind, ns: &str, e: &Entry, old: &str) {
        if self.tx.is_none() {
            return;
        }
        let deleted = action == "delete";
        let mut p = json!({"namespace": ns, "name": e.name, "name_old": old});
        let schema = || -> Map<String, Value> {
            e.json_schema
                .as_deref()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default()
        };
        let group = match kind {
            Kind::Object => {
                // Glance lists the object's properties with these keys, unset ones null.
                let props: Vec<Value> = schema()
                    .into_iter()
                    .map(|(name, def)| {
                        let mut o = Map::new();
                        o.insert("name".into(), json!(name));
                        for k in notified_keys() {
                            let v = def.get(k).cloned().filter(truthy).unwrap_or(Value::Null);
                            o.insert(k.into(), v);
                        }
                        Value::Object(o)
                    })
                    .collect();
                let required: Option<Vec<&str>> =
                    e.required.as_deref().map(|r| r.split(',').collect());
                p["properties"] = json!(props);
                p["required"] = json!(required);
                p["description"] = json!(e.description);
                p["created_at"] = json!(when(e.created_at.as_ref()));
                p["updated_at"] = json!(when(e.updated_at.as_ref()));
                "metadef_object"
            }
            Kind::Property => {
                let def = schema();
                for k in notified_keys() {
                    p[k] = def.get(k).cloned().unwrap_or(Value::Null);
                }
                "metadef_property"
            }
            Kind::Tag => {
                p["created_at"] = json!(when(e.created_at.as_ref()));
                p["updated_at"] = json!(when(e.updated_at.as_ref()));
                "metadef_tag"
            }
        };
        mark_deleted(&mut p, deleted);
        self.info(&format!("{group}.{action}"), p);
    }

    /// `metadef_resource_type.create` / `.delete`: a namespace's association with a resource
    /// type.
    pub fn metadef_association(&self, ns: &str, a: &Association, deleted: bool) {
        if self.tx.is_none() {
            return;
        }
        let mut p = json!({
            "namespace": ns,
            "name": a.name,
            "name_old": a.name,
            "prefix": a.prefix,
            "properties_target": a.properties_target,
            "created_at": isotime(&a.created_at),
            "updated_at": when(a.updated_at.as_ref()),
        });
        mark_deleted(&mut p, deleted);
        let action = if deleted { "delete" } else { "create" };
        self.info(&format!("metadef_resource_type.{action}"), p);
    }
}

/// The keys of a property in a metadef object's or property's notification, in Glance's order:
/// a definition's, without its name, `operators` and `readonly`.
fn notified_keys() -> impl Iterator<Item = &'static str> {
    crate::domain::metadef::PROPERTY_KEYS
        .into_iter()
        .filter(|k| !matches!(*k, "name" | "operators" | "readonly"))
}

/// Python's truth of a value: Glance writes `value or None`.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A time as oslo's `isotime` writes it; none is now (as `isotime(None)`).
fn when(t: Option<&chrono::NaiveDateTime>) -> String {
    isotime(&t.copied().unwrap_or_else(|| chrono::Utc::now().naive_utc()))
}

/// `deleted` and `deleted_at` (now, when deleted).
fn mark_deleted(p: &mut Value, deleted: bool) {
    p["deleted"] = json!(deleted);
    p["deleted_at"] = json!(deleted.then(|| isotime(&chrono::Utc::now().naive_utc())));
}

fn image_payload(img: &Image) -> Value {
    json!({
        "id": img.id,
        "name": img.name,
        "status": img.status.as_str(),
        "created_at": isotime(&img.created_at),
        "updated_at": isotime(&img.updated_at),
        "min_disk": img.min_disk,
        "min_ram": img.min_ram,
        "protected": img.protected,
        "checksum": img.checksum,
        "owner": img.owner,
        "disk_format": img.disk_format,
        "container_format": img.container_format,
        "size": img.size,
        "virtual_size": img.virtual_size,
        "is_public": img.visibility.as_str() == "public",
        "visibility": img.visibility.as_str(),
        "properties": img.properties,
        "tags": img.tags,
        "deleted": false,
        "deleted_at": null,
    })
}

#[derive(Debug, Clone, PartialEq)]
struct Broker {
    host: String,
    port: u16,
    user: String,
    password: String,
    vhost: String,
}

/// `rabbit://user:pass@host:port[,user:pass@host2:port]/vhost[?options]`, as oslo.messaging
/// reads it (`//` at the end: the vhost `/`).
fn parse_transport_url(url: &str) -> Result<Vec<Broker>, String> {
    let rest = url
        .strip_prefix("rabbit://")
        .ok_or_else(|| "only rabbit:// is supported".to_string())?;
    let rest = rest.split('?').next().unwrap_or(rest);
    let (hosts, vhost) = rest.split_once('/').unwrap_or((rest, ""));
    let vhost = if vhost.is_empty() { "/" } else { vhost };
    let unescape = percent_decode;
    hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| {
            let (cred, addr) = h.rsplit_once('@').unwrap_or(("guest:guest", h));
            let (user, password) = cred.split_once(':').unwrap_or((cred, ""));
            let (host, port) = match addr.rsplit_once(':') {
                Some((host, port)) => (
                    host,
                    port.parse().map_err(|_| format!("bad port in {addr:?}"))?,
                ),
                None => (addr, 5672),
            };
            Ok(Broker {
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port,
                user: unescape(user),
                password: unescape(password),
                vhost: unescape(vhost),
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .and_then(|v| {
            if v.is_empty() {
                Err("no broker in it".into())
            } else {
                Ok(v)
            }
        })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Sender {
    brokers: Vec<Broker>,
    /// Set when the brokers are reached over TLS.
    tls: Option<tls::Client>,
    topics: Vec<String>,
    publisher_id: String,
    v2: bool,
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<Event>) {
        let mut pending: Option<Event> = None;
        let mut pause = Duration::from_millis(200);
        loop {
            let (conn, ch) = match self.connect().await {
                Ok(c) => {
                    pause = Duration::from_millis(200);
                    c
                }
                Err(e) => {
                    tracing::warn!(error = %e, "notifications: broker unreachable; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            loop {
                let event = match pending.take() {
                    Some(e) => e,
                    None => match rx.recv().await {
                        Some(e) => e,
                        None => {
                            let _ = conn.close().await;
                            return;
                        }
                    },
                };
                if let Err(e) = self.publish(&ch, &event).await {
                    tracing::warn!(error = %e, event_type = %event.event_type, "notifications: sending failed; reconnecting");
                    pending = Some(event);
                    break;
                }
            }
        }
    }

    async fn connect(&self) -> Result<(Connection, Channel), String> {
        let mut last = String::new();
        for b in &self.brokers {
            let mut args = OpenConnectionArguments::new(&b.host, b.port, &b.user, &b.password);
            args.virtual_host(&b.vhost);
            if let Some(tls) = &self.tls {
                args.tls_adaptor(tls.adaptor(&b.host));
            }
            let opened = async {
                let conn = Connection::open(&args).await.map_err(|e| e.to_string())?;
                let ch = conn.open_channel(None).await.map_err(|e| e.to_string())?;
                ch.exchange_declare(ExchangeDeclareArguments::new(EXCHANGE, "topic"))
                    .await
                    .map_err(|e| e.to_string())?;
                // As oslo.messaging: each topic's queue, so that nothing sent before a consumer
                // comes is lost.
                for topic in &self.topics {
                    for priority in ["info", "error"] {
                        let q = format!("{topic}.{priority}");
                        ch.queue_declare(QueueDeclareArguments::new(&q))
                            .await
                            .map_err(|e| e.to_string())?;
                        ch.queue_bind(QueueBindArguments::new(&q, EXCHANGE, &q))
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                Ok::<_, String>((conn, ch))
            };
            match tokio::time::timeout(Duration::from_secs(10), opened).await {
                Ok(Ok(c)) => return Ok(c),
                Ok(Err(e)) => last = format!("{}:{}: {e}", b.host, b.port),
                Err(_) => last = format!("{}:{}: timed out", b.host, b.port),
            }
        }
        Err(last)
    }

    async fn publish(&self, ch: &Channel, e: &Event) -> Result<(), String> {
        let message = json!({
            "message_id": uuid::Uuid::new_v4().to_string(),
            "publisher_id": self.publisher_id,
            "event_type": e.event_type,
            "priority": e.priority,
            "payload": e.payload,
            "timestamp": chrono::Utc::now().naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
            "_unique_id": uuid::Uuid::new_v4().simple().to_string(),
        });
        let body = if self.v2 {
            json!({"oslo.version": "2.0", "oslo.message": message.to_string()})
        } else {
            message
        };
        let props = BasicProperties::default()
            .with_content_type("application/json")
            .with_content_encoding("utf-8")
            .finish();
        for topic in &self.topics {
            let key = format!("{topic}.{}", e.priority.to_lowercase());
            tokio::time::timeout(
                Duration::from_secs(10),
                ch.basic_publish(
                    props.clone(),
                    body.to_string().into_bytes(),
                    BasicPublishArguments::new(EXCHANGE, &key),
                ),
            )
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_urls_as_oslo_messaging_reads_them() {
        let b = parse_transport_url(
            "rabbit://openstack:p%40ss@10.0.0.1:5672,openstack:p%40ss@10.0.0.2//",
        )
        .unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].password, "p@ss");
        assert_eq!(b[0].vhost, "/");
        assert_eq!(b[1].port, 5672);
        let b = parse_transport_url("rabbit://g:s@127.0.0.1:5671//glance?ssl=1").unwrap();
        assert_eq!((b[0].port, b[0].vhost.as_str()), (5671, "/glance"));
        let b = parse_transport_url("rabbit://g:s@h:1/").unwrap();
        assert_eq!(b[0].vhost, "/");
        assert!(parse_transport_url("kafka://h:9092").is_err());
    }
}
