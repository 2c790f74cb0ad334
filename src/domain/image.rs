//! The image model and its status machine, as Glance's domain defines them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDateTime;

use super::fault::{Fault, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Queued,
    Saving,
    Active,
    Killed,
    Deleted,
    PendingDelete,
    Deactivated,
    Uploading,
    Importing,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Saving => "saving",
            Status::Active => "active",
            Status::Killed => "killed",
            Status::Deleted => "deleted",
            Status::PendingDelete => "pending_delete",
            Status::Deactivated => "deactivated",
            Status::Uploading => "uploading",
            Status::Importing => "importing",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "queued" => Status::Queued,
            "saving" => Status::Saving,
            "active" => Status::Active,
            "killed" => Status::Killed,
            "deleted" => Status::Deleted,
            "pending_delete" => Status::PendingDelete,
            "deactivated" => Status::Deactivated,
            "uploading" => Status::Uploading,
            "importing" => Status::Importing,
            _ => return None,
        })
    }

    /// Glance's `valid_state_targets`.
    pub fn can_become(self, to: Status) -> bool {
        use Status::*;
        let targets: &[Status] = match self {
            Queued => &[Saving, Uploading, Importing, Active, Deleted],
            Saving => &[Active, Killed, Deleted, Queued],
            Uploading => &[Importing, Queued, Deleted],
            Importing => &[Active, Deleted, Queued],
            Active => &[PendingDelete, Deleted, Deactivated],
            Killed => &[Deleted],
            PendingDelete => &[Deleted, Active],
            Deleted => &[],
            Deactivated => &[Active, Deleted],
        };
        targets.contains(&to)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    Public,
    Private,
    Shared,
    Community,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
            Visibility::Shared => "shared",
            Visibility::Community => "community",
        }
    }

    pub fn parse(s: &str) -> Option<Visibility> {
        Some(match s {
            "public" => Visibility::Public,
            "private" => Visibility::Private,
            "shared" => Visibility::Shared,
            "community" => Visibility::Community,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub url: String,
    pub metadata: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub id: String,
    pub name: Option<String>,
    pub status: Status,
    pub visibility: Visibility,
    pub protected: bool,
    pub os_hidden: bool,
    pub checksum: Option<String>,
    pub os_hash_algo: Option<String>,
    pub os_hash_value: Option<String>,
    pub owner: Option<String>,
    pub size: Option<i64>,
    pub virtual_size: Option<i64>,
    pub container_format: Option<String>,
    pub disk_format: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub min_ram: i64,
    pub min_disk: i64,
    pub tags: BTreeSet<String>,
    pub properties: BTreeMap<String, String>,
    pub locations: Vec<Location>,
}

/// Properties every image has, which can be set but never removed.
pub const BASE_PROPERTIES: &[&str] = &[
    "id",
    "name",
    "status",
    "visibility",
    "protected",
    "os_hidden",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "owner",
    "size",
    "virtual_size",
    "container_format",
    "disk_format",
    "created_at",
    "updated_at",
    "tags",
    "min_ram",
    "min_disk",
    "locations",
    "direct_url",
    "self",
    "file",
    "schema",
];

/// Keys a client may never write (create or PATCH).
pub const READ_ONLY: &[&str] = &[
    "created_at",
    "updated_at",
    "status",
    "checksum",
    "size",
    "virtual_size",
    "direct_url",
    "self",
    "file",
    "schema",
    "id",
    "os_hash_algo",
    "os_hash_value",
];
/// `min_ram` and `min_disk` as Glance accepts them: not negative (checked first, by its domain)
/// and within the database's INT column.
pub fn min_requirement(key: &str, value: &serde_json::Value) -> Result<i64> {
    // Beyond i64 (a JSON number serde keeps as u64 or f64): by its sign.
    let n = value
        .as_i64()
        .or_else(|| {
            value
                .as_f64()
                .map(|f| if f < 0.0 { i64::MIN } else { i64::MAX })
        })
        .unwrap_or(0);
    if n < 0 {
        return Err(Fault::NegativeValue {
            key: key.into(),
            value: value.to_string(),
        });
    }
    if n > i64::from(i32::MAX) {
        return Err(Fault::OutOfRange { key: key.into() });
    }
    Ok(n)
}

pub const RESERVED: &[&str] = &["location", "deleted", "deleted_at"];
pub const RESERVED_NAMESPACE: &str = "os_glance";

pub fn is_reserved(key: &str) -> bool {
    RESERVED.contains(&key) || key.starts_with(RESERVED_NAMESPACE)
}

/// Custom properties Glance keeps to itself and never shows.
pub const HIDDEN_PROPERTIES: &[&str] = &["os_glance_stage_host", "os_glance_hash_op_host"];

pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

impl Image {
    /// Moves the image to `to`, enforcing Glance's state machine and its rule that data can only be
    /// accepted once both formats are known.
    pub fn transition(&mut self, to: Status) -> Result<()> {
        if !self.status.can_become(to) {
            return Err(Fault::Transition {
                from: self.status,
                to,
            });
        }
        self.check_formats_for(to)?;
        if to == Status::Queued {
            self.size = None;
            self.virtual_size = None;
        }
        self.status = to;
        Ok(())
    }

    pub fn check_formats_for(&self, to: Status) -> Result<()> {
        if matches!(self.status, Status::Queued | Status::Uploading)
            && matches!(to, Status::Saving | Status::Active | Status::Importing)
        {
            let missing: Vec<&str> = [
                ("disk_format", &self.disk_format),
                ("container_format", &self.container_format),
            ]
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| *k)
            .collect();
            if !missing.is_empty() {
                return Err(Fault::FormatsMissing { missing });
            }
        }
        Ok(())
    }

    /// The custom properties a client sees.
    pub fn visible_properties(&self) -> impl Iterator<Item = (&String, &String)> {
        self.properties
            .iter()
            .filter(|(k, _)| !HIDDEN_PROPERTIES.contains(&k.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_machine() {
        assert!(Status::Queued.can_become(Status::Saving));
        assert!(Status::Saving.can_become(Status::Queued));
        assert!(!Status::Active.can_become(Status::Queued));
        assert!(!Status::Deleted.can_become(Status::Active));
        assert!(Status::Deactivated.can_become(Status::Active));
    }

    #[test]
    fn uuid_check() {
        assert!(is_uuid("6f1b1e2a-9c1d-4f6e-8a3b-0c2d4e6f8a10"));
        assert!(!is_uuid("6f1b1e2a9c1d4f6e8a3b0c2d4e6f8a10"));
        assert!(!is_uuid("zf1b1e2a-9c1d-4f6e-8a3b-0c2d4e6f8a10"));
    }
}
