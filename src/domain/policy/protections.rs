//! Property protections (`[DEFAULT] property_protection_file`): which callers may create, read,
//! update and delete which custom properties, as Glance's `PropertyRules` decides.
//!
//! The file is INI: each section a regular expression over property names, the first section
//! that matches a name (anywhere in it) decides; each has `create`, `read`, `update` and
//! `delete`, each a comma-separated list of roles (`property_protection_rule_format = roles`)
//! or one policy rule name (`policies`), or `@` (anyone) or `!` (no one). A name no section
//! matches may not be touched at all. Glance's own `os_glance.*` properties are open to all.

use regex::Regex;

use super::Context;
use super::language::{Check, TargetMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Read,
    Update,
    Delete,
}

impl Operation {
    const ALL: [Operation; 4] = [
        Operation::Create,
        Operation::Read,
        Operation::Update,
        Operation::Delete,
    ];

    fn key(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Read => "read",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Roles,
    Policies,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "roles" => Some(Format::Roles),
            "policies" => Some(Format::Policies),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
enum Permission {
    Anyone,
    NoOne,
    /// Any of these (lowercased) roles, of the token or of a service token.
    Roles(Vec<String>),
    /// The policy rule of this name.
    Rule(String),
}

#[derive(Debug, Clone)]
pub struct PropertyRules {
    /// In the file's order; Glance's `os_glance.*` first.
    sections: Vec<(Regex, [Permission; 4])>,
}

impl PropertyRules {
    /// Reads the file's text; `Err` names what is wrong (start-up stops on it, as Glance's
    /// does), `warnings` what the operator should hear (an operation no one may do).
    pub fn parse(text: &str, format: Format, warnings: &mut Vec<String>) -> Result<Self, String> {
        let ini = ini::Ini::load_from_str_opt(
            text,
            ini::ParseOption {
                enabled_quote: false,
                enabled_escape: false,
                ..Default::default()
            },
        )
        .map_err(|e| e.to_string())?;
        let anyone = || {
            [
                Permission::Anyone,
                Permission::Anyone,
                Permission::Anyone,
                Permission::Anyone,
            ]
        };
        let mut sections = vec![(
            Regex::new("os_glance.*").map_err(|e| e.to_string())?,
            anyone(),
        )];
        let defaults = ini.general_section();
        for (name, props) in ini.iter() {
            let Some(name) = name else { continue };
            if name.starts_with("os_glance") {
                continue; // Glance replaces such a section with its own.
            }
            let at = |msg: String| format!("line {}: {msg}", line_of(text, name));
            let re = Regex::new(name)
                .map_err(|e| at(format!("[{name}] is not a regular expression: {e}")))?;
            let mut perms = anyone();
            for op in Operation::ALL {
                let value = props
                    .iter()
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case(op.key()))
                    .map(|(_, v)| v)
                    .or_else(|| defaults.get(op.key()))
                    .ok_or_else(|| at(format!("[{name}] has no '{}' line", op.key())))?
                    .trim();
                perms[op.index()] = permission(name, op, value, format, warnings).map_err(at)?;
            }
            sections.push((re, perms));
        }
        Ok(PropertyRules { sections })
    }

    /// Whether the caller may do `op` to the property `name`.
    pub fn allows(&self, ctx: &Context, name: &str, op: Operation) -> bool {
        let Some((_, perms)) = self.sections.iter().find(|(re, _)| re.is_match(name)) else {
            return false;
        };
        match &perms[op.index()] {
            Permission::Anyone => true,
            Permission::NoOne => false,
            Permission::Roles(roles) => roles.iter().any(|r| ctx.has_role_or_service_role(r)),
            Permission::Rule(rule) => {
                ctx.policy
                    .check(&Check::Rule(rule.clone()), ctx.creds(), &TargetMap::new())
            }
        }
    }
}

/// The line of a section's header, for messages.
fn line_of(text: &str, section: &str) -> usize {
    let header = format!("[{section}]");
    text.lines()
        .position(|l| l.trim() == header)
        .map_or(0, |i| i + 1)
}

fn permission(
    section: &str,
    op: Operation,
    value: &str,
    format: Format,
    warnings: &mut Vec<String>,
) -> Result<Permission, String> {
    let op = op.key();
    if value.is_empty() {
        warnings.push(format!(
            "property protection [{section}] {op} is empty: no one may {op} such properties"
        ));
        return Ok(Permission::NoOne);
    }
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    if format == Format::Policies && items.len() > 1 {
        return Err(format!(
            "[{section}] {op} = {value}: one policy per operation (combine them in the policy file)"
        ));
    }
    let any = items.contains(&"@");
    let none = items.contains(&"!");
    if any && none {
        return Err(format!(
            "[{section}] {op} = {value}: '@' and '!' are mutually exclusive"
        ));
    }
    Ok(if none {
        Permission::NoOne
    } else if any {
        Permission::Anyone
    } else if format == Format::Policies {
        Permission::Rule(value.to_string())
    } else {
        Permission::Roles(items.iter().map(|r| r.to_lowercase()).collect())
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{Caller, Policy, PolicyOptions, PolicySource};
    use super::*;

    fn ctx(roles: &[&str], policy: Policy, rules: &PropertyRules) -> Context {
        Context::new(
            Caller {
                project_id: Some("p".into()),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                is_admin_project: true,
                ..Caller::default()
            },
            "r".into(),
            Arc::new(policy),
            Some(Arc::new(rules.clone())),
        )
    }

    const ROLES: &str = "\
[^x_owner_.*]
create = admin,member
read = admin,member
update = admin,member
delete = admin,member

[x_none_read]
create = admin
read = !
update = !
delete = !

[.*]
create = @
read = @
update = @
delete = @
";

    #[test]
    fn roles_format() {
        let mut w = vec![];
        let r = PropertyRules::parse(ROLES, Format::Roles, &mut w).unwrap();
        assert!(w.is_empty());
        let member = ctx(&["member"], Policy::default(), &r);
        let reader = ctx(&["reader"], Policy::default(), &r);
        assert!(member.may("x_owner_foo", Operation::Create));
        assert!(!reader.may("x_owner_foo", Operation::Read));
        // Sections are searched, not matched whole: this one's regex is anchored.
        assert!(reader.may("y_x_owner_foo", Operation::Read));
        assert!(!member.may("x_none_read", Operation::Read));
        assert!(ctx(&["admin"], Policy::default(), &r).may("x_none_read", Operation::Create));
        assert!(reader.may("anything", Operation::Delete));
        assert!(reader.may("os_glance_import_task", Operation::Update));
        // Service roles count.
        let mut svc = ctx(&["reader"], Policy::default(), &r);
        svc.service_roles = vec!["member".into()];
        assert!(svc.may("x_owner_foo", Operation::Update));
    }

    #[test]
    fn unmatched_names_are_refused() {
        let r = PropertyRules::parse(
            "[^a$]\ncreate=@\nread=@\nupdate=@\ndelete=@\n",
            Format::Roles,
            &mut vec![],
        )
        .unwrap();
        let c = ctx(&["admin"], Policy::default(), &r);
        assert!(c.may("a", Operation::Read));
        assert!(!c.may("b", Operation::Read));
    }

    #[test]
    fn policies_format() {
        let text =
            "[^spl_.*]\ncreate = glance_creator\nread = @\nupdate = !\ndelete = glance_creator\n";
        let r = PropertyRules::parse(text, Format::Policies, &mut vec![]).unwrap();
        let (policy, _) = Policy::new(
            &PolicyOptions::default(),
            &[PolicySource {
                origin: "p".into(),
                text: "glance_creator: role:admin or role:spl_role".into(),
            }],
        )
        .unwrap();
        let c = ctx(&["spl_role"], policy.clone(), &r);
        assert!(c.may("spl_a", Operation::Create));
        assert!(!c.may("spl_a", Operation::Update));
        assert!(!ctx(&["member"], policy, &r).may("spl_a", Operation::Create));
    }

    #[test]
    fn malformed_files_are_refused_with_a_reason() {
        let bad = |t: &str, f| PropertyRules::parse(t, f, &mut vec![]).unwrap_err();
        let e = bad(
            "[a]\ncreate=@\nread=@\nupdate=@\ndelete=@\n[x]\ncreate=@\nread=@\nupdate=@\n",
            Format::Roles,
        );
        assert!(e.contains("line 6") && e.contains("'delete'"), "{e}");
        assert!(
            bad(
                "[x]\ncreate=@,!\nread=@\nupdate=@\ndelete=@\n",
                Format::Roles
            )
            .contains("mutually")
        );
        assert!(
            bad("[(]\ncreate=@\nread=@\nupdate=@\ndelete=@\n", Format::Roles).contains("regular")
        );
        assert!(
            bad(
                "[x]\ncreate=a,b\nread=@\nupdate=@\ndelete=@\n",
                Format::Policies
            )
            .contains("one policy")
        );
        let mut w = vec![];
        PropertyRules::parse(
            "[x]\ncreate=\nread=@\nupdate=@\ndelete=@\n",
            Format::Roles,
            &mut w,
        )
        .unwrap();
        assert_eq!(w.len(), 1);
    }
}
