//! `GET /v2/images` parameters: filters, sorting and paging, validated as Glance validates them.

use chrono::NaiveDateTime;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cmp {
    Gt,
    Gte,
    Eq,
    Neq,
    Lt,
    Lte,
}

impl Cmp {
    pub fn sql(self) -> &'static str {
        match self {
            Cmp::Gt => ">",
            Cmp::Gte => ">=",
            Cmp::Eq => "=",
            Cmp::Neq => "<>",
            Cmp::Lt => "<",
            Cmp::Lte => "<=",
        }
    }
}

/// A typed value for a condition on an `images` column.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    Int(i64),
    Bool(bool),
    Time(NaiveDateTime),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// `column IN (...)` (a plain value is a one-element list).
    In(&'static str, Vec<String>),
    /// `column <op> value`
    Cmp(&'static str, Cmp, Val),
    /// A custom property with this exact value.
    Property(String, String),
    /// The image carries this tag.
    Tag(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SortKey {
    Name,
    Status,
    ContainerFormat,
    DiskFormat,
    Size,
    Id,
    CreatedAt,
    UpdatedAt,
}

const SORT_KEYS: &str =
    "name, status, container_format, disk_format, size, id, created_at, updated_at";

impl SortKey {
    fn parse(s: &str) -> Result<SortKey> {
        Ok(match s {
            "name" => SortKey::Name,
            "status" => SortKey::Status,
            "container_format" => SortKey::ContainerFormat,
            "disk_format" => SortKey::DiskFormat,
            "size" => SortKey::Size,
            "id" => SortKey::Id,
            "created_at" => SortKey::CreatedAt,
            "updated_at" => SortKey::UpdatedAt,
            _ => {
                return Err(Error::BadRequest(format!(
                    "Invalid sort key: {s}. It must be one of the following: {SORT_KEYS}."
                )));
            }
        })
    }

    pub fn column(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Status => "status",
            SortKey::ContainerFormat => "container_format",
            SortKey::DiskFormat => "disk_format",
            SortKey::Size => "size",
            SortKey::Id => "id",
            SortKey::CreatedAt => "created_at",
            SortKey::UpdatedAt => "updated_at",
        }
    }
}

/// Which membership rows make a shared image part of the caller's list.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberStatus {
    Only(String),
    All,
}

#[derive(Debug, Clone)]
pub struct ListQuery {
    pub limit: u64,
    pub marker: Option<String>,
    pub member_status: MemberStatus,
    /// None: Glance's default (no community images but the caller's own); Some(None): `all`.
    pub visibility: Option<Option<String>>,
    pub conds: Vec<Cond>,
    /// Sort keys with `true` for ascending; `created_at` and `id` always end the list.
    pub sort: Vec<(SortKey, bool)>,
}

const TIME_COLUMNS: &[&str] = &["created_at", "updated_at"];
const IN_COLUMNS: &[&str] = &["name", "id", "status", "container_format", "disk_format"];
const RANGE_COLUMNS: &[&str] = &["size", "virtual_size", "min_ram", "min_disk"];
const STRING_COLUMNS: &[&str] = &["checksum", "owner", "os_hash_algo", "os_hash_value"];

fn static_name(list: &[&'static str], key: &str) -> Option<&'static str> {
    list.iter().copied().find(|c| *c == key)
}

impl ListQuery {
    /// Parses the query string pairs, in order, as `RequestDeserializer.index` and the controller
    /// do.
    pub fn parse(pairs: &[(String, String)], default_limit: u64, max_limit: u64) -> Result<Self> {
        let mut limit = None;
        let mut marker = None;
        let mut member_status = MemberStatus::Only("accepted".into());
        let mut visibility = None;
        let mut conds = Vec::new();
        let mut sort_new: Option<String> = None;
        let mut sort_keys = Vec::new();
        let mut sort_dirs = Vec::new();
        let mut os_hidden = false;

        for (k, v) in pairs {
            match k.as_str() {
                "limit" => {
                    let n: i64 = v
                        .trim()
                        .parse()
                        .map_err(|_| Error::BadRequest("limit param must be an integer".into()))?;
                    if n < 0 {
                        return Err(Error::BadRequest("limit param must be positive".into()));
                    }
                    limit = Some(n as u64);
                }
                "marker" => marker = Some(v.clone()),
                "member_status" => {
                    member_status = match v.as_str() {
                        "pending" | "accepted" | "rejected" => MemberStatus::Only(v.clone()),
                        "all" => MemberStatus::All,
                        _ => return Err(Error::BadRequest(format!("Invalid status: {v}"))),
                    }
                }
                "tag" => conds.push(Cond::Tag(v.trim().to_string())),
                "visibility" => {
                    visibility = match v.as_str() {
                        "" => None,
                        "all" => Some(None),
                        "community" | "public" | "private" | "shared" => Some(Some(v.clone())),
                        _ => {
                            return Err(Error::BadRequest(format!(
                                "Invalid visibility value: {v}"
                            )));
                        }
                    }
                }
                "changes-since" => {
                    return Err(Error::BadRequest(
                        "The \"changes-since\" filter is no longer available on v2.".into(),
                    ));
                }
                "sort" => sort_new = Some(v.clone()),
                "sort_key" => sort_keys.push(SortKey::parse(v.trim())?),
                "sort_dir" => sort_dirs.push(parse_dir(v.trim())?),
                "os_hidden" => {
                    os_hidden = match v.to_lowercase().as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(Error::BadRequest(format!(
                                "Invalid value '{v}' for 'os_hidden' filter. Valid values are 'true' or 'false'."
                            )));
                        }
                    }
                }
                "protected" => {
                    let b = match v.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(Error::BadRequest(format!(
                                "Invalid value '{v}' for 'protected' filter. Valid values are 'true' or 'false'."
                            )));
                        }
                    };
                    conds.push(Cond::Cmp("protected", Cmp::Eq, Val::Bool(b)));
                }
                key => conds.push(parse_filter(key, v)?),
            }
        }
        conds.push(Cond::Cmp("os_hidden", Cmp::Eq, Val::Bool(os_hidden)));

        let mut sort: Vec<(SortKey, bool)> = Vec::new();
        let mut default_asc = false;
        if let Some(s) = sort_new {
            if !sort_keys.is_empty() || !sort_dirs.is_empty() {
                return Err(Error::BadRequest(
                    "Old and new sorting syntax cannot be combined".into(),
                ));
            }
            for part in s.trim().split(',') {
                let (key, dir) = part.split_once(':').unwrap_or((part, ""));
                let dir = if dir.trim().is_empty() {
                    "desc"
                } else {
                    dir.trim()
                };
                sort.push((SortKey::parse(key.trim())?, parse_dir(dir)?));
            }
        } else {
            if sort_dirs.len() > 1 && sort_dirs.len() != sort_keys.len() {
                return Err(Error::BadRequest(
                    "Number of sort dirs does not match the number of sort keys".into(),
                ));
            }
            if sort_keys.is_empty() {
                sort_keys.push(SortKey::CreatedAt);
            }
            if sort_dirs.len() == 1 {
                default_asc = sort_dirs[0];
            }
            for (i, k) in sort_keys.iter().enumerate() {
                let asc = if sort_dirs.len() > 1 {
                    sort_dirs[i]
                } else {
                    default_asc
                };
                sort.push((*k, asc));
            }
        }
        for tiebreak in [SortKey::CreatedAt, SortKey::Id] {
            if !sort.iter().any(|(k, _)| *k == tiebreak) {
                sort.push((tiebreak, default_asc));
            }
        }

        Ok(ListQuery {
            limit: limit.unwrap_or(default_limit).min(max_limit),
            marker,
            member_status,
            visibility,
            conds,
            sort,
        })
    }
}

fn parse_dir(d: &str) -> Result<bool> {
    match d {
        "asc" => Ok(true),
        "desc" => Ok(false),
        _ => Err(Error::BadRequest(format!("Invalid sort direction: {d}"))),
    }
}

fn parse_filter(key: &str, value: &str) -> Result<Cond> {
    if let Some(base) = key
        .strip_suffix("_min")
        .or_else(|| key.strip_suffix("_max"))
    {
        let n: i64 = value.trim().parse().map_err(|_| {
            Error::BadRequest("Unable to filter on a range with a non-numeric value.".into())
        })?;
        let col = static_name(RANGE_COLUMNS, base).ok_or_else(|| {
            Error::BadRequest(format!("Unable to filter on a range of '{base}'."))
        })?;
        let op = if key.ends_with("_min") {
            Cmp::Gte
        } else {
            Cmp::Lte
        };
        return Ok(Cond::Cmp(col, op, Val::Int(n)));
    }
    if let Some(col) = static_name(TIME_COLUMNS, key) {
        // The operator is checked before the time, in Glance's words for time filters.
        let (op, when) = split_op(value);
        let op = match op {
            "gt" => Cmp::Gt,
            "gte" => Cmp::Gte,
            "eq" => Cmp::Eq,
            "neq" => Cmp::Neq,
            "lt" => Cmp::Lt,
            "lte" => Cmp::Lte,
            _ => {
                return Err(Error::BadRequest(
                    "Unable to filter on a unknown operator.".into(),
                ));
            }
        };
        let t = parse_isotime(when).ok_or_else(|| {
            Error::BadRequest(format!(
                "Bad \"{key}\" query filter format. Use ISO 8601 DateTime notation."
            ))
        })?;
        return Ok(Cond::Cmp(col, op, Val::Time(t)));
    }
    if let Some(col) = static_name(IN_COLUMNS, key) {
        let (op, rest) = split_op(value);
        return match op {
            "in" => Ok(Cond::In(col, split_quoted(rest)?)),
            "eq" => Ok(Cond::In(col, vec![rest.to_string()])),
            other => Err(Error::BadRequest(format!(
                "Unable to filter by unknown operator '{other}'."
            ))),
        };
    }
    if let Some(col) = static_name(STRING_COLUMNS, key) {
        return Ok(Cond::Cmp(col, Cmp::Eq, Val::Str(value.to_string())));
    }
    if let Some(col) = static_name(RANGE_COLUMNS, key) {
        let n: i64 = value.trim().parse().map_err(|_| {
            Error::BadRequest(format!("Invalid value '{value}' for '{key}' filter."))
        })?;
        return Ok(Cond::Cmp(col, Cmp::Eq, Val::Int(n)));
    }
    Ok(Cond::Property(key.to_string(), value.to_string()))
}

/// Glance's `split_filter_op`: `op:value`, but a bare ISO time keeps its colons.
fn split_op(expr: &str) -> (&str, &str) {
    match expr.split_once(':') {
        Some(_) if parse_isotime(expr).is_some() => ("eq", expr),
        Some((op, rest)) => (op, rest),
        None => ("eq", expr),
    }
}

/// ISO 8601 date-times as oslo's `parse_isotime` takes them, normalized to naive UTC.
pub fn parse_isotime(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.naive_utc());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z"] {
        if let Ok(t) = chrono::DateTime::parse_from_str(s, fmt) {
            return Some(t.naive_utc());
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t);
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

/// `in:` values: comma-separated; double quotes protect commas, `\"` is a literal quote.
pub fn split_quoted(s: &str) -> Result<Vec<String>> {
    let bad = |why: &str| Error::BadRequest(format!("Invalid filter value {s}. {why}"));
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' if chars.peek() == Some(&'"') => {
                        item.push('"');
                        chars.next();
                    }
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => item.push(c),
                }
            }
            if !closed {
                return Err(bad("The quote is not closed."));
            }
            match chars.next() {
                None => {
                    out.push(item);
                    return Ok(out);
                }
                Some(',') => out.push(item),
                Some(_) => return Err(bad("There is no comma after closing quotation mark.")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        out.push(item);
                        return Ok(out);
                    }
                    Some(',') => break,
                    Some('"') => {
                        return Err(bad("There is no comma before opening quotation mark."));
                    }
                    Some(c) => item.push(c),
                }
            }
            out.push(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<ListQuery> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(s.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        ListQuery::parse(&pairs, 25, 1000)
    }

    #[test]
    fn quoted_lists() {
        assert_eq!(
            split_quoted("\"glass, darkly\",share me").unwrap(),
            vec!["glass, darkly", "share me"]
        );
        assert_eq!(split_quoted("a,b").unwrap(), vec!["a", "b"]);
        assert!(split_quoted("\"a,b").is_err());
        assert!(split_quoted("a\"b\"").is_err());
    }

    #[test]
    fn sorting_rules() {
        let l = q("sort=name:asc,status").unwrap();
        assert_eq!(
            l.sort,
            vec![
                (SortKey::Name, true),
                (SortKey::Status, false),
                (SortKey::CreatedAt, false),
                (SortKey::Id, false)
            ]
        );
        assert!(q("sort=name&sort_key=id").is_err());
        assert!(q("sort_key=bogus").is_err());
        assert!(q("sort_key=name&sort_key=id&sort_dir=asc&sort_dir=desc&sort_dir=asc").is_err());
        let l = q("sort_key=name&sort_dir=asc").unwrap();
        assert_eq!(l.sort[2], (SortKey::Id, true));
    }

    #[test]
    fn filters() {
        assert!(q("changes-since=2020-01-01").is_err());
        assert!(q("size_min=abc").is_err());
        assert!(q("visibility=bogus").is_err());
        assert!(q("limit=-1").is_err());
        assert_eq!(q("limit=5000").unwrap().limit, 1000);
        let l = q("created_at=gt:2016-04-18T21:38:54Z").unwrap();
        assert!(matches!(
            l.conds[0],
            Cond::Cmp("created_at", Cmp::Gt, Val::Time(_))
        ));
        let l = q("created_at=2016-04-18T21:38:54Z").unwrap();
        assert!(matches!(
            l.conds[0],
            Cond::Cmp("created_at", Cmp::Eq, Val::Time(_))
        ));
        assert!(q("name=foo:bar").is_err());
        let l = q("os_distro=ubuntu").unwrap();
        assert_eq!(
            l.conds[0],
            Cond::Property("os_distro".into(), "ubuntu".into())
        );
    }
}
