//! The metadata definition files deployments load (`db load_metadefs`, as `glance-manage`
//! loads `/etc/glance/metadefs/*.json`), unload and export. Loaded as Glance loads them:
//! owner `admin` unless the file names one, visibility and protection as written, resource
//! types made protected, property definitions stored as written, objects without their
//! `required` list, rows without an update time.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::db::Db;
use crate::db::metadefs::Kind;
use crate::domain::fault::Fault;
use crate::domain::metadef::{Association, Entry, Namespace};
use crate::json::str_field;

/// How a namespace already in the database is treated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Merge {
    /// Add what the files have and the database lacks (else such a namespace is skipped).
    pub merge: bool,
    /// With `merge`: the files' values replace the database's.
    pub prefer_new: bool,
    /// With `merge`: the namespace is deleted and loaded again.
    pub overwrite: bool,
}

impl Merge {
    /// glance-manage's checks of the options, in its words.
    pub fn check(&self) -> Result<(), String> {
        if (self.prefer_new || self.overwrite) && !self.merge {
            return Err("To use --prefer_new or --overwrite you need to combine of these options with --merge option.".into());
        }
        if self.prefer_new && self.overwrite {
            return Err(
                "Please provide no more than one option from this list: --prefer_new, --overwrite"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The `.json` files of `path`: a file, or a directory's files in the order the directory
/// lists them (as glance-manage reads them: resource types and ids follow that order).
fn files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "json"))
        .collect()
}

/// What a load did, for the operator.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    pub namespaces: usize,
    pub skipped: usize,
    pub unreadable: usize,
}

/// Loads the definition files under `path`.
pub async fn load(db: &Db, path: &Path, how: Merge) -> Result<Loaded, String> {
    how.check()?;
    let found = files(path);
    if found.is_empty() {
        return Err(format!(
            "Json schema files not found in {}. Aborting.",
            path.display()
        ));
    }
    let mut done = Loaded::default();
    for file in found {
        let doc: Value = match std::fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(file = %file.display(), error = %e, "cannot read a metadata definition file; skipped");
                done.unreadable += 1;
                continue;
            }
        };
        match load_one(db, &doc, how).await.map_err(|e| e.to_string())? {
            true => done.namespaces += 1,
            false => done.skipped += 1,
        }
    }
    Ok(done)
}

/// Loads one namespace document; false when it was skipped (it exists, no merge).
async fn load_one(db: &Db, doc: &Value, how: Merge) -> Result<bool, Fault> {
    let name = str_field(doc, "namespace").unwrap_or_default();
    let fresh = Namespace {
        id: 0,
        namespace: name.clone(),
        display_name: str_field(doc, "display_name"),
        description: str_field(doc, "description"),
        visibility: str_field(doc, "visibility"),
        protected: doc.get("protected").and_then(Value::as_bool),
        owner: str_field(doc, "owner").unwrap_or_else(|| "admin".into()),
        created_at: crate::db::images::now(),
        updated_at: None,
    };
    let ns = match db.metadef_namespace(&name).await? {
        None => db.create_metadef_namespace(&fresh).await?,
        Some(_) if !how.merge => {
            tracing::info!(namespace = %name, "Skipping namespace: it already exists in the database");
            return Ok(false);
        }
        Some(old) if how.overwrite => {
            db.delete_metadef_namespace(old.id).await?;
            db.create_metadef_namespace(&fresh).await?
        }
        Some(old) if how.prefer_new => {
            db.update_metadef_namespace(&Namespace { id: old.id, ..fresh })
                .await?
        }
        Some(old) => Some(old),
    }
    .ok_or(Fault::Database)?;
    for a in doc["resource_type_associations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let rt_name = str_field(a, "name").unwrap_or_default();
        let rt = db
            .ensure_metadef_resource_type(&rt_name, true, false)
            .await?;
        let assoc = Association {
            name: rt_name,
            prefix: str_field(a, "prefix"),
            properties_target: str_field(a, "properties_target"),
            created_at: crate::db::images::now(),
            updated_at: None,
        };
        if !db.add_metadef_association(ns.id, rt.id, &assoc).await? && how.prefer_new {
            db.delete_metadef_association(ns.id, rt.id).await?;
            db.add_metadef_association(ns.id, rt.id, &assoc).await?;
        }
    }
    let entry = |name: &str| Entry {
        name: name.into(),
        ..Entry::default()
    };
    let props: Vec<Entry> = doc["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(n, def)| Entry {
            json_schema: Some(def.to_string()),
            ..entry(n)
        })
        .collect();
    let objects: Vec<Entry> = doc["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| Entry {
            description: str_field(o, "description"),
            json_schema: Some(
                o.get("properties")
                    .cloned()
                    .unwrap_or(Value::Null)
                    .to_string(),
            ),
            ..entry(o["name"].as_str().unwrap_or_default())
        })
        .collect();
    let tags: Vec<Entry> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| entry(t["name"].as_str().unwrap_or_default()))
        .collect();
    for (kind, list) in [
        (Kind::Property, props),
        (Kind::Object, objects),
        (Kind::Tag, tags),
    ] {
        let existing: Vec<String> = db
            .metadef_entries(ns.id, kind)
            .await?
            .into_iter()
            .map(|e| e.name)
            .collect();
        for e in list {
            if !existing.contains(&e.name) {
                if let Err(dup) = db
                    .add_metadef_entries(ns.id, kind, std::slice::from_ref(&e), false)
                    .await?
                {
                    tracing::warn!(namespace = %name, entry = %dup, "Duplicate entry; skipped");
                }
            } else if how.prefer_new && kind != Kind::Tag {
                // Only the update stamps the time, as Glance's update does.
                let updated = Entry {
                    updated_at: Some(crate::db::images::now()),
                    ..e.clone()
                };
                let _ = db
                    .update_metadef_entry(ns.id, kind, &e.name, &updated)
                    .await?;
            }
        }
    }
    tracing::info!(namespace = %name, "metadata definitions loaded");
    Ok(true)
}

/// Empties the catalog.
pub async fn unload(db: &Db) -> Result<(), String> {
    db.delete_all_metadefs().await.map_err(|e| e.to_string())
}

/// Writes each namespace to `dir` as a definition file named after its display name (as
/// Glance names them), which `load` reads back.
pub async fn export(db: &Db, dir: &Path) -> Result<usize, String> {
    let err = |e: Fault| e.to_string();
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let assocs = db.metadef_associations(None).await.map_err(err)?;
    let namespaces = db.metadef_namespaces().await.map_err(err)?;
    for ns in &namespaces {
        let parse = |e: &Entry| {
            e.json_schema
                .as_deref()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .unwrap_or(Value::Null)
        };
        let mut doc = Map::new();
        doc.insert("namespace".into(), json!(ns.namespace));
        doc.insert("display_name".into(), json!(ns.display_name));
        doc.insert("description".into(), json!(ns.description));
        doc.insert("visibility".into(), json!(ns.visibility));
        doc.insert("protected".into(), json!(ns.protected));
        let rts: Vec<Value> = assocs
            .iter()
            .filter(|(id, _)| *id == ns.id)
            .map(|(_, a)| json!({"name": a.name, "prefix": a.prefix, "properties_target": a.properties_target}))
            .collect();
        doc.insert("resource_type_associations".into(), Value::Array(rts));
        let props = db
            .metadef_entries(ns.id, Kind::Property)
            .await
            .map_err(err)?;
        let props: Map<String, Value> = props.iter().map(|e| (e.name.clone(), parse(e))).collect();
        doc.insert("properties".into(), Value::Object(props));
        let objects = db.metadef_entries(ns.id, Kind::Object).await.map_err(err)?;
        let objects: Vec<Value> = objects
            .iter()
            .map(|o| json!({"name": o.name, "description": o.description, "properties": parse(o)}))
            .collect();
        doc.insert("objects".into(), Value::Array(objects));
        let tags = db.metadef_entries(ns.id, Kind::Tag).await.map_err(err)?;
        let tags: Vec<Value> = tags.iter().map(|t| json!({"name": t.name})).collect();
        doc.insert("tags".into(), Value::Array(tags));
        let stem: String = ns
            .display_name
            .as_deref()
            .unwrap_or(&ns.namespace)
            .chars()
            .filter(|c| c.is_alphanumeric())
            .collect();
        let file = dir.join(format!("{stem}.json"));
        let body = serde_json::to_string_pretty(&Value::Object(doc)).map_err(|e| e.to_string())?;
        std::fs::write(&file, body).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok(namespaces.len())
}
