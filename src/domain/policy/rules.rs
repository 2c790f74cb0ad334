//! Glance's policy rules as oslo.policy enforces them: Glance 33's registered defaults (secure
//! RBAC, each with its scope types and the deprecated rule it replaced), the operator's policy
//! file and `policy_dirs` on top, and the scope check before each registered rule.

use std::collections::HashMap;

use serde_json::Value;

use super::language::{self, Check, Target};

/// Glance 33's registered rules: name, check string, whether it is for project-scoped tokens
/// only (`scope_types=['project']`; the others have none), and the deprecated check string
/// that `enforce_new_defaults = false` ORs in. From `glance/policies/*.py`.
#[rustfmt::skip]
pub const GLANCE_RULES: &[(&str, &str, bool, Option<&str>)] = &[
    ("default", "", false, Some("rule:context_is_admin")),
    ("context_is_admin", "role:admin", false, None),
    ("service_api", "role:service or role:admin", false, None),
    ("add_image", "rule:context_is_admin or (role:member and project_id:%(project_id)s and project_id:%(owner)s)", true, Some("rule:default")),
    ("delete_image", "rule:context_is_admin or (role:member and project_id:%(project_id)s)", true, Some("rule:default")),
    ("get_image", "rule:context_is_admin or (role:reader and (project_id:%(project_id)s or project_id:%(member_id)s or 'community':%(visibility)s or 'public':%(visibility)s or 'shared':%(visibility)s))", true, Some("rule:default")),
    ("get_images", "rule:context_is_admin or (role:reader and project_id:%(project_id)s)", true, Some("rule:default")),
    ("modify_image", "rule:context_is_admin or (role:member and project_id:%(project_id)s)", true, Some("rule:default")),
    ("publicize_image", "rule:context_is_admin", true, None),
    ("communitize_image", "rule:context_is_admin or (role:member and project_id:%(project_id)s)", true, Some("rule:default")),
    ("download_image", "rule:context_is_admin or (role:member and (project_id:%(project_id)s or project_id:%(member_id)s or 'community':%(visibility)s or 'public':%(visibility)s or 'shared':%(visibility)s))", true, Some("rule:default")),
    ("download_from_store", "rule:context_is_admin or (role:member and (project_id:%(project_id)s or project_id:%(member_id)s or 'community':%(visibility)s or 'public':%(visibility)s or 'shared':%(visibility)s))", true, None),
    ("upload_image", "rule:context_is_admin or (role:member and project_id:%(project_id)s)", true, Some("rule:default")),
    ("delete_image_location", "rule:context_is_admin", true, Some("rule:default")),
    ("get_image_location", "rule:context_is_admin or (role:reader and project_id:%(project_id)s)", true, Some("rule:default")),
    ("set_image_location", "rule:context_is_admin or (role:member and project_id:%(project_id)s)", true, Some("rule:default")),
    ("add_image_location", "rule:service_api or (role:member and project_id:%(project_id)s and project_id:%(owner)s)", true, None),
    ("fetch_image_location", "rule:service_api", true, None),
    ("add_member", "rule:context_is_admin or (role:member and project_id:%(project_id)s)", true, Some("rule:default")),
    ("delete_member", "rule:context_is_admin or (role:member and project_id:%(project_id)s)", true, Some("rule:default")),
    ("get_member", "rule:context_is_admin or role:reader and (project_id:%(project_id)s or project_id:%(member_id)s)", true, Some("rule:default")),
    ("get_members", "rule:context_is_admin or role:reader and (project_id:%(project_id)s or project_id:%(member_id)s)", true, Some("rule:default")),
    ("modify_member", "rule:context_is_admin or (role:member and project_id:%(member_id)s)", true, Some("rule:default")),
    ("manage_image_cache", "rule:context_is_admin", true, None),
    ("deactivate", "rule:context_is_admin or (role:member and project_id:%(project_id)s)", true, Some("rule:default")),
    ("reactivate", "rule:context_is_admin or (role:member and project_id:%(project_id)s)", true, Some("rule:default")),
    ("copy_image", "rule:context_is_admin", true, None),
    ("list_cached_nodes", "rule:context_is_admin", true, None),
    ("get_task", "rule:default", true, Some("rule:default")),
    ("get_tasks", "rule:default", true, Some("rule:default")),
    ("add_task", "rule:default", true, Some("rule:default")),
    ("modify_task", "rule:default", true, None),
    ("tasks_api_access", "rule:context_is_admin", true, None),
    ("metadef_default", "", false, None),
    ("metadef_admin", "rule:context_is_admin", false, None),
    ("get_metadef_namespace", "rule:context_is_admin or (role:reader and (project_id:%(project_id)s or 'public':%(visibility)s))", true, Some("rule:metadef_default")),
    ("get_metadef_namespaces", "rule:context_is_admin or (role:reader and project_id:%(project_id)s)", true, Some("rule:metadef_default")),
    ("modify_metadef_namespace", "rule:metadef_admin", true, None),
    ("add_metadef_namespace", "rule:metadef_admin", true, None),
    ("delete_metadef_namespace", "rule:metadef_admin", true, None),
    ("get_metadef_object", "rule:context_is_admin or (role:reader and (project_id:%(project_id)s or 'public':%(visibility)s))", true, Some("rule:metadef_default")),
    ("get_metadef_objects", "rule:context_is_admin or (role:reader and (project_id:%(project_id)s or 'public':%(visibility)s))", true, Some("rule:metadef_default")),
    ("modify_metadef_object", "rule:metadef_admin", true, None),
    ("add_metadef_object", "rule:metadef_admin", true, None),
    ("delete_metadef_object", "rule:metadef_admin", true, None),
    ("list_metadef_resource_types", "rule:context_is_admin or (role:reader and (project_id:%(project_id)s or 'public':%(visibility)s))", true, Some("rule:metadef_default")),
    ("get_metadef_resource_type", "rule:context_is_admin or (role:reader and (project_id:%(project_id)s or 'public':%(visibility)s))", true, Some("rule:metadef_default")),
    ("add_metadef_resource_type_association", "rule:metadef_admin", true, None),
    ("remove_metadef_resource_type_association", "rule:metadef_admin", true, None),
    ("get_metadef_property", "rule:context_is_admin or (role:reader and (project_id:%(project_id)s or 'public':%(visibility)s))", true, Some("rule:metadef_default")),
    ("get_metadef_properties", "rule:context_is_admin or (role:reader and (project_id:%(project_id)s or 'public':%(visibility)s))", true, Some("rule:metadef_default")),
    ("modify_metadef_property", "rule:metadef_admin", true, None),
    ("add_metadef_property", "rule:metadef_admin", true, None),
    ("remove_metadef_property", "rule:metadef_admin", true, None),
    ("get_metadef_tag", "rule:context_is_admin or (role:reader and (project_id:%(project_id)s or 'public':%(visibility)s))", true, Some("rule:metadef_default")),
    ("get_metadef_tags", "rule:context_is_admin or (role:reader and (project_id:%(project_id)s or 'public':%(visibility)s))", true, Some("rule:metadef_default")),
    ("modify_metadef_tag", "rule:metadef_admin", true, None),
    ("add_metadef_tag", "rule:metadef_admin", true, None),
    ("add_metadef_tags", "rule:metadef_admin", true, None),
    ("delete_metadef_tag", "rule:metadef_admin", true, None),
    ("delete_metadef_tags", "rule:metadef_admin", true, None),
    ("cache_image", "rule:context_is_admin", true, Some("rule:manage_image_cache")),
    ("cache_list", "rule:context_is_admin", true, Some("rule:manage_image_cache")),
    ("cache_delete", "rule:context_is_admin", true, Some("rule:manage_image_cache")),
    ("cache_clean", "rule:context_is_admin", true, None),
    ("cache_prune", "rule:context_is_admin", true, None),
    ("stores_info_detail", "rule:context_is_admin or rule:service_api", true, Some("rule:context_is_admin")),
];

/// `[oslo_policy]` options.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyOptions {
    /// A rule for project-scoped tokens refuses others (else it only logs the mismatch, as
    /// oslo.policy did before scope became mandatory).
    pub enforce_scope: bool,
    /// Only the new defaults; `false` ORs each rule with the deprecated one it replaced.
    pub enforce_new_defaults: bool,
    /// `policy_default_rule`: the rule a `rule:` reference to no rule evaluates.
    pub default_rule: String,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            enforce_scope: true,
            enforce_new_defaults: true,
            default_rule: "default".into(),
        }
    }
}

/// A policy file's text and where it came from (for messages).
pub struct PolicySource {
    pub origin: String,
    pub text: String,
}

/// The token's scope, as oslo.policy derives it from the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    System,
    Domain,
    Project,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::System => "system",
            Scope::Domain => "domain",
            Scope::Project => "project",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    /// The token's scope is not one the rule is for (oslo.policy's InvalidScope).
    WrongScope,
}

#[derive(Debug, Clone)]
pub struct Policy {
    rules: HashMap<String, Check>,
    opts: PolicyOptions,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(&PolicyOptions::default(), &[])
            .map(|(p, _)| p)
            .unwrap_or_else(|_| Policy {
                rules: HashMap::new(),
                opts: PolicyOptions::default(),
            })
    }
}

fn registered(
    name: &str,
) -> Option<&'static (&'static str, &'static str, bool, Option<&'static str>)> {
    GLANCE_RULES.iter().find(|r| r.0 == name)
}

/// A policy file: YAML (JSON is YAML too), a mapping of rule names to check strings, or to the
/// old list-of-lists form.
fn read_file(
    src: &PolicySource,
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, Check)>, String> {
    let origin = &src.origin;
    let doc: Value = serde_yaml_ng::from_str(&src.text)
        .map_err(|e| format!("{origin}: not YAML or JSON: {e}"))?;
    let map = match doc {
        Value::Null => return Ok(vec![]),
        Value::Object(m) => m,
        _ => {
            return Err(format!(
                "{origin}: expected a mapping of rule names to rules"
            ));
        }
    };
    let mut out = Vec::new();
    for (name, v) in map {
        let check = match &v {
            Value::String(s) => {
                for bad in language::unreadable_checks(s) {
                    warnings.push(format!(
                        "{origin}: rule {name:?}: {bad}; that check never passes"
                    ));
                }
                language::parse(s).unwrap_or_else(|e| {
                    warnings.push(format!(
                        "{origin}: rule {name:?} cannot be understood ({e}); it never passes"
                    ));
                    Check::False
                })
            }
            Value::Array(items) => {
                let list: Option<Vec<Vec<String>>> = items
                    .iter()
                    .map(|inner| match inner {
                        Value::String(s) => Some(vec![s.clone()]),
                        Value::Array(a) => {
                            a.iter().map(|x| x.as_str().map(str::to_string)).collect()
                        }
                        _ => None,
                    })
                    .collect();
                let list = list.ok_or_else(|| {
                    format!("{origin}: rule {name:?}: a list rule holds lists of strings")
                })?;
                language::parse_list(&list)
            }
            other => {
                return Err(format!("{origin}: rule {name:?} is {other}, not a string"));
            }
        };
        out.push((name, check));
    }
    Ok(out)
}

impl Policy {
    /// The registered defaults with `files` over them: the first is the policy file, which
    /// replaces rules; the others (policy directories' files, in order) update them. Returns
    /// the policy and what to tell the operator (rules that cannot be understood, references
    /// to rules that do not exist, cycles); `Err` for a file that is not a policy file at all.
    pub fn new(
        opts: &PolicyOptions,
        files: &[PolicySource],
    ) -> Result<(Policy, Vec<String>), String> {
        let mut warnings = Vec::new();
        let mut rules: HashMap<String, Check> = HashMap::new();
        for src in files {
            for (name, check) in read_file(src, &mut warnings)? {
                rules.insert(name, check);
            }
        }
        for (name, check_str, _, deprecated) in GLANCE_RULES {
            if rules.contains_key(*name) {
                continue;
            }
            // Constants, checked by a test.
            let mut check = language::parse(check_str).unwrap_or(Check::False);
            if !opts.enforce_new_defaults
                && let Some(old) = deprecated
                && old != check_str
            {
                check = Check::Or(vec![check, language::parse(old).unwrap_or(Check::False)]);
            }
            rules.insert(name.to_string(), check);
        }
        let policy = Policy {
            rules,
            opts: opts.clone(),
        };
        let mut undefined: Vec<&str> = policy
            .rules
            .iter()
            .filter(|(_, c)| policy.refers_to_missing(c))
            .map(|(n, _)| n.as_str())
            .collect();
        undefined.sort();
        if !undefined.is_empty() {
            warnings.push(format!(
                "policies {undefined:?} reference a rule that is not defined (such a reference evaluates the {:?} rule)",
                opts.default_rule
            ));
        }
        let mut cyclic: Vec<&str> = policy
            .rules
            .keys()
            .filter(|n| policy.in_cycle(n))
            .map(String::as_str)
            .collect();
        cyclic.sort();
        if !cyclic.is_empty() {
            warnings.push(format!(
                "policies {cyclic:?} are part of a cyclical reference (they never pass)"
            ));
        }
        Ok((policy, warnings))
    }

    fn refers_to_missing(&self, c: &Check) -> bool {
        match c {
            Check::Rule(n) => !self.rules.contains_key(n),
            Check::Not(x) => self.refers_to_missing(x),
            Check::And(v) | Check::Or(v) => v.iter().any(|x| self.refers_to_missing(x)),
            _ => false,
        }
    }

    fn in_cycle(&self, start: &str) -> bool {
        fn refs<'a>(c: &'a Check, out: &mut Vec<&'a str>) {
            match c {
                Check::Rule(n) => out.push(n),
                Check::Not(x) => refs(x, out),
                Check::And(v) | Check::Or(v) => v.iter().for_each(|x| refs(x, out)),
                _ => {}
            }
        }
        let mut stack: Vec<&str> = Vec::new();
        if let Some(c) = self.rules.get(start) {
            refs(c, &mut stack);
        }
        let mut seen = std::collections::HashSet::new();
        while let Some(n) = stack.pop() {
            if n == start {
                return true;
            }
            if seen.insert(n)
                && let Some(c) = self.rules.get(n)
            {
                refs(c, &mut stack);
            }
        }
        false
    }

    /// The scope of a token with these credentials.
    pub fn scope_of(creds: &Value) -> Scope {
        let set = |k: &str| {
            creds
                .get(k)
                .is_some_and(|v| !v.is_null() && v != "" && v != false)
        };
        if set("system_scope") {
            Scope::System
        } else if set("domain_id") {
            Scope::Domain
        } else {
            Scope::Project
        }
    }

    /// A registered rule (or one from the files) for `creds` on `target`, scope first.
    pub fn enforce(&self, action: &str, creds: &Value, target: &dyn Target) -> Decision {
        if let Some((_, _, true, _)) = registered(action) {
            let scope = Self::scope_of(creds);
            if scope != Scope::Project {
                if self.opts.enforce_scope {
                    return Decision::WrongScope;
                }
                tracing::warn!(
                    rule = action,
                    scope = scope.as_str(),
                    "policy {action} is for project-scoped tokens; allowed as [oslo_policy] enforce_scope = false"
                );
            }
        }
        let rule = self
            .rules
            .get(action)
            .or_else(|| self.rules.get(&self.opts.default_rule));
        match rule {
            Some(r) if self.eval(r, creds, target, 0) => Decision::Allow,
            _ => Decision::Deny,
        }
    }

    pub fn new_defaults(&self) -> bool {
        self.opts.enforce_new_defaults
    }

    /// A check tree (not a registered rule: no scope) for `creds` on `target`.
    pub fn check(&self, check: &Check, creds: &Value, target: &dyn Target) -> bool {
        self.eval(check, creds, target, 0)
    }

    fn eval(&self, c: &Check, creds: &Value, t: &dyn Target, depth: u8) -> bool {
        match c {
            Check::True => true,
            Check::False | Check::Remote(_) => false,
            Check::Not(x) => !self.eval(x, creds, t, depth),
            Check::And(v) => v.iter().all(|x| self.eval(x, creds, t, depth)),
            Check::Or(v) => v.iter().any(|x| self.eval(x, creds, t, depth)),
            Check::Role(m) => language::role(m, creds, t),
            Check::Generic { kind, matcher } => language::generic(kind, matcher, creds, t),
            Check::Rule(name) => {
                // Deeper than any sane policy: a cycle, which oslo.policy would not survive.
                if depth > 32 {
                    return false;
                }
                let rule = self
                    .rules
                    .get(name)
                    .or_else(|| self.rules.get(&self.opts.default_rule));
                rule.is_some_and(|r| self.eval(r, creds, t, depth + 1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::language::TargetMap;
    use serde_json::json;

    fn target(pairs: &[(&str, &str)]) -> TargetMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn creds(project: &str, roles: &[&str]) -> Value {
        json!({"project_id": project, "roles": roles, "system_scope": null, "domain_id": null})
    }

    fn src(text: &str) -> PolicySource {
        PolicySource {
            origin: "policy.yaml".into(),
            text: text.into(),
        }
    }

    #[test]
    fn every_default_parses_and_there_are_67() {
        assert_eq!(GLANCE_RULES.len(), 67);
        for (name, check, _, old) in GLANCE_RULES {
            assert!(language::parse(check).is_ok(), "{name}");
            assert!(language::unreadable_checks(check).is_empty(), "{name}");
            if let Some(old) = old {
                assert!(language::parse(old).is_ok(), "{name}");
            }
        }
        let (_, warnings) = Policy::new(&PolicyOptions::default(), &[]).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn defaults_as_glance() {
        let p = Policy::default();
        let t = target(&[
            ("project_id", "p1"),
            ("owner", "p1"),
            ("member_id", "None"),
            ("visibility", "private"),
        ]);
        let member = creds("p1", &["member", "reader"]);
        let reader = creds("p1", &["reader"]);
        let other = creds("p2", &["member", "reader"]);
        let admin = creds("p9", &["admin"]);
        assert_eq!(p.enforce("modify_image", &member, &t), Decision::Allow);
        assert_eq!(p.enforce("modify_image", &reader, &t), Decision::Deny);
        assert_eq!(p.enforce("modify_image", &other, &t), Decision::Deny);
        assert_eq!(p.enforce("get_image", &reader, &t), Decision::Allow);
        assert_eq!(p.enforce("download_image", &reader, &t), Decision::Deny);
        assert_eq!(p.enforce("publicize_image", &member, &t), Decision::Deny);
        assert_eq!(p.enforce("publicize_image", &admin, &t), Decision::Allow);
        let system = json!({"project_id": null, "roles": ["admin"], "system_scope": "all"});
        assert_eq!(p.enforce("get_image", &system, &t), Decision::WrongScope);
        // Rules without scope types take any token.
        assert_eq!(p.enforce("context_is_admin", &system, &t), Decision::Allow);
        let domain = json!({"domain_id": "d", "roles": ["admin"]});
        assert_eq!(p.enforce("get_images", &domain, &t), Decision::WrongScope);
        let lax = PolicyOptions {
            enforce_scope: false,
            ..Default::default()
        };
        let (p2, _) = Policy::new(&lax, &[]).unwrap();
        assert_eq!(p2.enforce("get_image", &system, &t), Decision::Allow);
    }

    #[test]
    fn old_defaults_when_asked() {
        let t = target(&[("project_id", "p1"), ("owner", "p1")]);
        let reader = creds("p1", &["reader"]);
        let old = PolicyOptions {
            enforce_new_defaults: false,
            ..Default::default()
        };
        let (p, _) = Policy::new(&old, &[]).unwrap();
        // rule:default is "" (always): the deprecated half lets anyone in.
        assert_eq!(p.enforce("modify_image", &reader, &t), Decision::Allow);
        // No deprecated rule: the new default alone.
        assert_eq!(p.enforce("publicize_image", &reader, &t), Decision::Deny);
    }

    #[test]
    fn files_override_in_order_and_are_yaml() {
        let main = src(
            "# comment\n\"publicize_image\": \"role:member and project_id:%(project_id)s\"\n\
                        delete_image: '!'\n\
                        modify_image: >-\n  role:admin\n  or role:creator\n\
                        'quoted:key': '@'\n",
        );
        let dir = src(
            "{\"delete_image\": \"@\", \"download_image\": [[\"role:x\", \"role:y\"], [\"role:z\"]]}",
        );
        let (p, warnings) = Policy::new(&PolicyOptions::default(), &[main, dir]).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let t = target(&[("project_id", "p1")]);
        assert_eq!(
            p.enforce("publicize_image", &creds("p1", &["member"]), &t),
            Decision::Allow
        );
        assert_eq!(
            p.enforce("delete_image", &creds("p9", &[]), &t),
            Decision::Allow
        );
        assert_eq!(
            p.enforce("modify_image", &creds("p9", &["creator"]), &t),
            Decision::Allow
        );
        assert_eq!(
            p.enforce("download_image", &creds("p9", &["x", "y"]), &t),
            Decision::Allow
        );
        assert_eq!(
            p.enforce("download_image", &creds("p9", &["x"]), &t),
            Decision::Deny
        );
        assert_eq!(
            p.enforce("quoted:key", &creds("p9", &[]), &t),
            Decision::Allow
        );
        // An empty file, or one of comments only, changes nothing.
        let (p, w) =
            Policy::new(&PolicyOptions::default(), &[src(""), src("# nothing\n")]).unwrap();
        assert!(w.is_empty());
        assert_eq!(
            p.enforce("modify_image", &creds("p1", &["member"]), &t),
            Decision::Allow
        );
    }

    #[test]
    fn what_the_operator_is_told() {
        let (p, warnings) = Policy::new(
            &PolicyOptions::default(),
            &[src("get_image: rule:no_such_rule\nmodify_image: 'role:a and ('\na: rule:b\nb: rule:a\nc: nonsense or role:x\n")],
        )
        .unwrap();
        let all = warnings.join("\n");
        assert!(
            all.contains("\"get_image\"") && all.contains("not defined"),
            "{all}"
        );
        assert!(
            all.contains("modify_image") && all.contains("cannot be understood"),
            "{all}"
        );
        assert!(all.contains("cyclical"), "{all}");
        assert!(all.contains("\"nonsense\""), "{all}");
        let t = target(&[("project_id", "p1")]);
        // As oslo.policy: a reference to no rule evaluates `default` (""), which passes.
        assert_eq!(
            p.enforce("get_image", &creds("p1", &[]), &t),
            Decision::Allow
        );
        assert_eq!(
            p.enforce("modify_image", &creds("p1", &["a"]), &t),
            Decision::Deny
        );
        assert_eq!(p.enforce("a", &creds("p1", &[]), &t), Decision::Deny);
        assert!(Policy::new(&PolicyOptions::default(), &[src("[1, 2]")]).is_err());
        assert!(Policy::new(&PolicyOptions::default(), &[src("a: {b: c}")]).is_err());
        assert!(Policy::new(&PolicyOptions::default(), &[src("a: 'x\n")]).is_err());
    }
}
