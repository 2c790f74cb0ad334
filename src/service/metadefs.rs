//! The metadata definition catalog as Glance manages it: finding a namespace as each route
//! looks it up, the metadef policies (and how a denial is answered), and the writes with
//! their rules (names unique per namespace, protected namespaces kept from deletion).

use serde_json::{Map, Value};

use crate::app::App;
use crate::domain::fault::{Fault, Metadef as M, MetadefKind as Kind};
use crate::domain::metadef::{self, Association, Entry, Namespace};
use crate::domain::policy::{Context, project_target};
use crate::domain::unicode::{Field, FourByte, check_fields};

/// How a route words a namespace it cannot find (Glance's handlers differ).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Namespace show: missing in full words, hidden as a bare 404.
    Show,
    /// Object routes: missing in full words, hidden as "Namespace X not found".
    Objects,
    /// Every other route: "Namespace X not found" either way.
    Other,
}

/// The namespace `name` as the caller may see it.
pub async fn find(app: &App, ctx: &Context, name: &str, how: Lookup) -> Result<Namespace, Fault> {
    let found = app.db.metadef_namespace(name).await?;
    let missing = || match how {
        Lookup::Show | Lookup::Objects => M::NamespaceMissing { name: name.into() },
        Lookup::Other => M::NamespaceNotFound { name: name.into() },
    };
    let ns = found.ok_or_else(missing)?;
    if !metadef::visible(ctx, &ns) {
        return Err(match how {
            Lookup::Show => M::NamespaceHidden,
            _ => M::NamespaceNotFound { name: name.into() },
        }
        .into());
    }
    Ok(ns)
}

/// `action` on namespace `ns`. As Glance's `MetadefAPIPolicy`: a caller who may not even read
/// the namespace is told it does not exist; others that they may not do this.
pub fn enforce(ctx: &Context, action: &str, ns: &Namespace) -> Result<(), Fault> {
    let target = metadef::target(ns);
    if ctx.allows(action, &target) {
        return Ok(());
    }
    if action == "get_metadef_namespace" || !ctx.allows("get_metadef_namespace", &target) {
        return Err(M::NamespaceHidden.into());
    }
    Err(crate::domain::policy::denied(action))
}

/// `action` about the caller's own project (creating, listing).
pub fn enforce_project(ctx: &Context, action: &str) -> Result<(), Fault> {
    if ctx.allows(action, &project_target(ctx)) {
        return Ok(());
    }
    if ctx.allows("get_metadef_namespaces", &project_target(ctx)) {
        Err(crate::domain::policy::denied(action))
    } else {
        Err(M::NamespaceHidden.into())
    }
}

/// Namespaces the caller sees (and the policy lets it read), with their associations.
pub async fn visible_namespaces(
    app: &App,
    ctx: &Context,
) -> Result<Vec<(Namespace, Vec<Association>)>, Fault> {
    enforce_project(ctx, "get_metadef_namespaces")?;
    enforce_project(ctx, "list_metadef_resource_types")?;
    let mut assocs = app.db.metadef_associations(None).await?;
    let mut out = Vec::new();
    for ns in app.db.metadef_namespaces().await? {
        if !metadef::visible(ctx, &ns)
            || !ctx.allows("get_metadef_namespace", &metadef::target(&ns))
        {
            continue;
        }
        let (mine, rest): (Vec<_>, Vec<_>) = assocs.into_iter().partition(|(id, _)| *id == ns.id);
        assocs = rest;
        out.push((ns, mine.into_iter().map(|(_, a)| a).collect()));
    }
    Ok(out)
}

/// The associations of one namespace.
pub async fn associations(app: &App, ns: &Namespace) -> Result<Vec<Association>, Fault> {
    Ok(app
        .db
        .metadef_associations(Some(ns.id))
        .await?
        .into_iter()
        .map(|(_, a)| a)
        .collect())
}

/// What a new namespace holds besides itself.
#[derive(Default)]
pub struct Contents {
    pub associations: Vec<Association>,
    pub properties: Vec<Entry>,
    pub objects: Vec<Entry>,
    pub tags: Vec<Entry>,
}

/// Glance's `no_4byte_params` on a namespace's fields.
fn storable_namespace(ns: &Namespace) -> Result<(), FourByte> {
    check_fields([
        ("namespace", Field::Text(Some(&ns.namespace))),
        ("display_name", Field::Text(ns.display_name.as_deref())),
        ("description", Field::Text(ns.description.as_deref())),
        ("visibility", Field::Text(ns.visibility.as_deref())),
        ("owner", Field::Text(Some(&ns.owner))),
    ])
}

/// Glance's `no_4byte_params` on an object, a property or a tag: its name, description and
/// definition (checked within).
pub fn storable_entry(e: &Entry) -> Result<(), FourByte> {
    let schema: Option<Value> = e
        .json_schema
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok());
    let null = Value::Null;
    check_fields([
        ("name", Field::Text(Some(&e.name))),
        ("description", Field::Text(e.description.as_deref())),
        ("json_schema", Field::Json(schema.as_ref().unwrap_or(&null))),
    ])
}

/// Creates a namespace with its contents. A refusal of any part removes what was made.
pub async fn create(
    app: &App,
    ctx: &Context,
    ns: Namespace,
    contents: &Contents,
) -> Result<Namespace, Fault> {
    enforce_project(ctx, "add_metadef_namespace")?;
    for (nonempty, action) in [
        (
            !contents.associations.is_empty(),
            "add_metadef_resource_type_association",
        ),
        (!contents.objects.is_empty(), "add_metadef_object"),
        (!contents.properties.is_empty(), "add_metadef_property"),
        (!contents.tags.is_empty(), "add_metadef_tag"),
    ] {
        if nonempty {
            enforce_project(ctx, action)?;
        }
    }
    let refused = |what| Fault::FourByte {
        what,
        context: Some("Couldn't create metadata namespace"),
    };
    storable_namespace(&ns).map_err(refused)?;
    for e in contents
        .objects
        .iter()
        .chain(&contents.tags)
        .chain(&contents.properties)
    {
        storable_entry(e).map_err(refused)?;
    }
    let name = ns.namespace.clone();
    let made = app
        .db
        .create_metadef_namespace(&ns)
        .await?
        .ok_or_else(|| M::NamespaceExists { name: name.clone() })?;
    let filled = fill(app, &made, contents).await;
    if let Err(e) = filled {
        app.db.delete_metadef_namespace(made.id).await?;
        return Err(e);
    }
    // Glance sends the namespace's, then each part's as its repositories add them.
    app.notifier
        .metadef_namespace("metadef_namespace.create", &made, &name, false);
    for a in &contents.associations {
        app.notifier.metadef_association(&name, a, false);
    }
    for (kind, entries) in [
        (Kind::Object, &contents.objects),
        (Kind::Tag, &contents.tags),
        (Kind::Property, &contents.properties),
    ] {
        created(app, &name, kind, entries);
    }
    tracing::info!(namespace = %name, owner = %made.owner, "metadef namespace created");
    Ok(made)
}

async fn fill(app: &App, ns: &Namespace, c: &Contents) -> Result<(), Fault> {
    for a in &c.associations {
        store_association(app, ns, a).await?;
    }
    for (kind, entries) in [
        (Kind::Object, &c.objects),
        (Kind::Tag, &c.tags),
        (Kind::Property, &c.properties),
    ] {
        store_entries(app, ns, kind, entries, false).await?;
    }
    Ok(())
}

/// `metadef_{object,property,tag}.create` for each entry.
fn created(app: &App, ns: &str, kind: Kind, entries: &[Entry]) {
    for e in entries {
        app.notifier.metadef_entry("create", kind, ns, e, &e.name);
    }
}

/// Adds entries of one kind (replacing that kind's entries when `replace`), all or none.
pub async fn add(
    app: &App,
    ns: &Namespace,
    kind: Kind,
    entries: &[Entry],
    replace: bool,
) -> Result<(), Fault> {
    store_entries(app, ns, kind, entries, replace).await?;
    created(app, &ns.namespace, kind, entries);
    Ok(())
}

async fn store_entries(
    app: &App,
    ns: &Namespace,
    kind: Kind,
    entries: &[Entry],
    replace: bool,
) -> Result<(), Fault> {
    if entries.is_empty() {
        return Ok(());
    }
    app.db
        .add_metadef_entries(ns.id, kind, entries, replace)
        .await?
        .map_err(|name| {
            M::EntryExists {
                kind,
                name,
                namespace: ns.namespace.clone(),
            }
            .into()
        })
}

/// Associates `ns` with a resource type, made on the way if it does not exist.
pub async fn associate(app: &App, ns: &Namespace, a: &Association) -> Result<(), Fault> {
    store_association(app, ns, a).await?;
    app.notifier.metadef_association(&ns.namespace, a, false);
    Ok(())
}

async fn store_association(app: &App, ns: &Namespace, a: &Association) -> Result<(), Fault> {
    let rt = app
        .db
        .ensure_metadef_resource_type(&a.name, false, true)
        .await?;
    if app.db.add_metadef_association(ns.id, rt.id, a).await? {
        Ok(())
    } else {
        Err(M::AssociationExists {
            resource_type: a.name.clone(),
            namespace: ns.namespace.clone(),
        }
        .into())
    }
}

/// Removes an association, unless the namespace is protected.
pub async fn dissociate(app: &App, ns: &Namespace, resource_type: &str) -> Result<(), Fault> {
    let gone = || M::AssociationToDeleteNotFound {
        resource_type: resource_type.into(),
    };
    let assocs = associations(app, ns).await?;
    let Some(assoc) = assocs.iter().find(|a| a.name == resource_type) else {
        return Err(gone().into());
    };
    if ns.protected == Some(true) {
        return Err(M::AssociationProtected {
            resource_type: resource_type.into(),
        }
        .into());
    }
    let types = app.db.metadef_resource_types().await?;
    let rt = types
        .iter()
        .find(|t| t.name == resource_type)
        .ok_or_else(gone)?;
    if app.db.delete_metadef_association(ns.id, rt.id).await? {
        app.notifier.metadef_association(&ns.namespace, assoc, true);
        Ok(())
    } else {
        Err(gone().into())
    }
}

/// One entry of a namespace.
pub async fn entry(app: &App, ns: &Namespace, kind: Kind, name: &str) -> Result<Entry, Fault> {
    app.db
        .metadef_entry(ns.id, kind, name)
        .await?
        .ok_or_else(|| {
            M::EntryNotFound {
                kind,
                name: name.into(),
            }
            .into()
        })
}

/// Replaces entry `old` with `new` (which may rename it).
pub async fn update(
    app: &App,
    ns: &Namespace,
    kind: Kind,
    old: &str,
    new: &Entry,
) -> Result<(), Fault> {
    let before = entry(app, ns, kind, old).await?;
    storable_entry(new).map_err(|what| Fault::FourByte {
        what,
        context: Some(match kind {
            Kind::Object => "Couldn't update metadata object",
            Kind::Property => "Couldn't update metadata property",
            Kind::Tag => "Couldn't update metadata tag",
        }),
    })?;
    app.db
        .update_metadef_entry(ns.id, kind, old, new)
        .await?
        .map_err(|name| -> Fault {
            M::EntryRenameTaken {
                kind,
                name,
                namespace: ns.namespace.clone(),
            }
            .into()
        })?;
    let shown = Entry {
        created_at: before.created_at,
        ..new.clone()
    };
    app.notifier
        .metadef_entry("update", kind, &ns.namespace, &shown, old);
    Ok(())
}

/// Deletes one entry, unless the namespace is protected.
pub async fn remove(app: &App, ns: &Namespace, kind: Kind, name: &str) -> Result<(), Fault> {
    let gone = entry(app, ns, kind, name).await?;
    if ns.protected == Some(true) {
        return Err(M::EntryProtected {
            kind,
            name: name.into(),
        }
        .into());
    }
    app.db
        .delete_metadef_entries(ns.id, kind, Some(name))
        .await?;
    app.notifier
        .metadef_entry("delete", kind, &ns.namespace, &gone, name);
    Ok(())
}

/// Deletes every entry of a kind, unless the namespace is protected.
pub async fn remove_all(app: &App, ns: &Namespace, kind: Kind) -> Result<(), Fault> {
    if ns.protected == Some(true) {
        return Err(M::NamespaceProtected {
            name: ns.namespace.clone(),
        }
        .into());
    }
    app.db.delete_metadef_entries(ns.id, kind, None).await?;
    let event = match kind {
        Kind::Object => "metadef_namespace.delete_objects",
        Kind::Property => "metadef_namespace.delete_properties",
        Kind::Tag => "metadef_namespace.delete_tags",
    };
    app.notifier
        .metadef_namespace(event, ns, &ns.namespace, false);
    Ok(())
}

/// Deletes a namespace and all it holds, unless protected.
pub async fn delete(app: &App, ns: &Namespace) -> Result<(), Fault> {
    if ns.protected == Some(true) {
        return Err(M::NamespaceProtected {
            name: ns.namespace.clone(),
        }
        .into());
    }
    app.db.delete_metadef_namespace(ns.id).await?;
    app.notifier
        .metadef_namespace("metadef_namespace.delete", ns, &ns.namespace, true);
    tracing::info!(namespace = %ns.namespace, "metadef namespace deleted");
    Ok(())
}

/// Rewrites a namespace called `old` (a full replacement, as Glance's PUT).
pub async fn replace(app: &App, old: &str, new: &Namespace) -> Result<Namespace, Fault> {
    storable_namespace(new).map_err(|what| Fault::FourByte {
        what,
        context: Some("Couldn't update metadata namespace"),
    })?;
    let saved = app
        .db
        .update_metadef_namespace(new)
        .await?
        .ok_or_else(|| -> Fault {
            M::NamespaceRenameTaken {
                name: new.namespace.clone(),
            }
            .into()
        })?;
    app.notifier
        .metadef_namespace("metadef_namespace.update", &saved, old, false);
    Ok(saved)
}

/// A property definition stored as JSON, read back as a map.
pub fn definition(e: &Entry) -> Map<String, Value> {
    e.json_schema
        .as_deref()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
}
