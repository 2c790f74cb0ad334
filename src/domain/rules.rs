//! oslo.policy rules: Glance's default (secure RBAC) rules, overridable by an operator's policy
//! file (`[oslo_policy] policy_file`, YAML or JSON `"name": "rule"` pairs).
//!
//! Rule syntax as oslo.policy: `role:X`, `rule:NAME`, `attr:%(target)s`, `attr:'literal'`,
//! `'literal':%(target)s`, `@` (always), `!` (never), `and`, `or`, `not`, parentheses.

use std::collections::HashMap;

/// Glance's defaults for the actions glance-rs checks.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("context_is_admin", "role:admin"),
    (
        "admin_or_project_member",
        "role:admin or (role:member and project_id:%(project_id)s)",
    ),
    ("service_api", "role:service"),
    ("get_image", "role:admin or role:reader or role:member"),
    ("get_images", "role:admin or role:reader or role:member"),
    ("add_image", "rule:admin_or_project_member"),
    ("modify_image", "rule:admin_or_project_member"),
    ("upload_image", "rule:admin_or_project_member"),
    ("delete_image", "rule:admin_or_project_member"),
    ("publicize_image", "role:admin"),
    ("communitize_image", "rule:admin_or_project_member"),
    ("deactivate", "rule:admin_or_project_member"),
    ("reactivate", "rule:admin_or_project_member"),
    ("download_image", "role:admin or role:member or role:reader"),
    ("copy_image", "role:admin"),
    ("add_member", "rule:admin_or_project_member"),
    ("delete_member", "rule:admin_or_project_member"),
    (
        "modify_member",
        "role:admin or (role:member and project_id:%(member_id)s)",
    ),
    (
        "get_image_location",
        "role:admin or (role:reader and project_id:%(project_id)s)",
    ),
    ("fetch_image_location", "rule:service_api"),
    (
        "add_image_location",
        "rule:service_api or rule:admin_or_project_member",
    ),
    ("delete_image_location", "role:admin"),
    ("stores_info_detail", "role:admin or rule:service_api"),
];

#[derive(Debug, Clone, PartialEq)]
enum Rule {
    Always,
    Never,
    Check(String, String),
    And(Vec<Rule>),
    Or(Vec<Rule>),
    Not(Box<Rule>),
}

/// What a rule is evaluated against.
pub struct Creds<'a> {
    pub roles: &'a [String],
    pub project_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub is_admin: bool,
}

#[derive(Debug, Clone)]
pub struct Policy {
    rules: HashMap<String, Rule>,
}

impl Default for Policy {
    fn default() -> Self {
        let mut rules = HashMap::new();
        for (k, v) in DEFAULTS {
            // The defaults are constants checked by tests.
            if let Ok(r) = parse(v) {
                rules.insert(k.to_string(), r);
            }
        }
        Policy { rules }
    }
}

impl Policy {
    /// The defaults overridden by the `"name": "rule"` pairs of a policy file.
    pub fn with_overrides(text: &str) -> Result<Self, String> {
        let mut p = Policy::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim().trim_end_matches(',');
            if line.is_empty()
                || line.starts_with('#')
                || line == "{"
                || line == "}"
                || line == "---"
            {
                continue;
            }
            let (k, v) = split_pair(line)
                .ok_or_else(|| format!("line {}: expected \"name\": \"rule\"", n + 1))?;
            let rule = parse(&v).map_err(|e| format!("line {}: {e}", n + 1))?;
            p.rules.insert(k, rule);
        }
        Ok(p)
    }

    /// Whether `action` is allowed; unknown actions fall back to the `default` rule, else deny.
    pub fn allows(&self, action: &str, creds: &Creds, target: &HashMap<&str, String>) -> bool {
        let rule = self.rules.get(action).or_else(|| self.rules.get("default"));
        rule.is_some_and(|r| self.eval(r, creds, target, 0))
    }

    fn eval(&self, r: &Rule, c: &Creds, t: &HashMap<&str, String>, depth: u8) -> bool {
        if depth > 16 {
            return false; // a rule that refers to itself
        }
        match r {
            Rule::Always => true,
            Rule::Never => false,
            Rule::And(v) => v.iter().all(|x| self.eval(x, c, t, depth)),
            Rule::Or(v) => v.iter().any(|x| self.eval(x, c, t, depth)),
            Rule::Not(x) => !self.eval(x, c, t, depth),
            Rule::Check(kind, m) => match kind.as_str() {
                "role" => c.roles.iter().any(|r| r.eq_ignore_ascii_case(m)),
                "rule" => self
                    .rules
                    .get(m)
                    .is_some_and(|x| self.eval(x, c, t, depth + 1)),
                _ => {
                    let value = |s: &str| -> Option<String> {
                        if let Some(key) = s.strip_prefix("%(").and_then(|x| x.strip_suffix(")s")) {
                            return t.get(key).cloned();
                        }
                        if let Some(lit) = s.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')) {
                            return Some(lit.to_string());
                        }
                        match s {
                            "project_id" | "tenant" => c.project_id.map(str::to_string),
                            "user_id" => c.user_id.map(str::to_string),
                            "is_admin" => {
                                Some(if c.is_admin { "True" } else { "False" }.to_string())
                            }
                            other => Some(other.to_string()),
                        }
                    };
                    matches!((value(kind), value(m)), (Some(a), Some(b)) if a.eq_ignore_ascii_case(&b))
                }
            },
        }
    }
}

fn split_pair(line: &str) -> Option<(String, String)> {
    let unquote = |s: &str| s.trim().trim_matches('"').trim_matches('\'').to_string();
    if let Some(rest) = line.strip_prefix('"') {
        let end = rest.find('"')?;
        let key = rest[..end].to_string();
        let v = rest[end + 1..].trim_start().strip_prefix(':')?;
        return Some((key, unquote(v)));
    }
    let (k, v) = line.split_once(':')?;
    Some((unquote(k), unquote(v)))
}

/// Words, with grouping parentheses peeled off their ends (those of `%(name)s` stay).
fn tokenize(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in s.split_whitespace() {
        let mut w = word;
        while let Some(rest) = w.strip_prefix('(') {
            out.push("(".to_string());
            w = rest;
        }
        let mut closing = 0;
        while let Some(rest) = w.strip_suffix(')') {
            closing += 1;
            w = rest;
        }
        if !w.is_empty() {
            out.push(w.to_string());
        }
        out.extend(std::iter::repeat_n(")".to_string(), closing));
    }
    out
}

fn parse(s: &str) -> Result<Rule, String> {
    let toks = tokenize(s);
    if toks.is_empty() {
        return Ok(Rule::Always);
    }
    let mut pos = 0;
    let r = parse_or(&toks, &mut pos)?;
    if pos != toks.len() {
        return Err(format!("unexpected {:?} in {s:?}", toks[pos]));
    }
    Ok(r)
}

fn parse_or(t: &[String], p: &mut usize) -> Result<Rule, String> {
    let mut v = vec![parse_and(t, p)?];
    while t.get(*p).is_some_and(|x| x == "or") {
        *p += 1;
        v.push(parse_and(t, p)?);
    }
    Ok(if v.len() == 1 {
        v.remove(0)
    } else {
        Rule::Or(v)
    })
}

fn parse_and(t: &[String], p: &mut usize) -> Result<Rule, String> {
    let mut v = vec![parse_not(t, p)?];
    while t.get(*p).is_some_and(|x| x == "and") {
        *p += 1;
        v.push(parse_not(t, p)?);
    }
    Ok(if v.len() == 1 {
        v.remove(0)
    } else {
        Rule::And(v)
    })
}

fn parse_not(t: &[String], p: &mut usize) -> Result<Rule, String> {
    if t.get(*p).is_some_and(|x| x == "not") {
        *p += 1;
        return Ok(Rule::Not(Box::new(parse_not(t, p)?)));
    }
    let tok = t.get(*p).ok_or("rule ends too early")?.clone();
    *p += 1;
    match tok.as_str() {
        "(" => {
            let r = parse_or(t, p)?;
            if t.get(*p).is_none_or(|x| x != ")") {
                return Err("missing ')'".into());
            }
            *p += 1;
            Ok(r)
        }
        "@" => Ok(Rule::Always),
        "!" => Ok(Rule::Never),
        check => {
            let (k, m) = check
                .split_once(':')
                .ok_or_else(|| format!("{check:?} is not kind:match"))?;
            Ok(Rule::Check(k.to_string(), m.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds<'a>(roles: &'a [String], project: Option<&'a str>) -> Creds<'a> {
        Creds {
            roles,
            project_id: project,
            user_id: None,
            is_admin: roles.iter().any(|r| r == "admin"),
        }
    }

    #[test]
    fn defaults_parse_and_apply() {
        for (k, v) in DEFAULTS {
            assert!(parse(v).is_ok(), "{k}");
        }
        let p = Policy::default();
        let member = vec!["member".to_string(), "reader".to_string()];
        let admin = vec!["admin".to_string()];
        let t: HashMap<&str, String> = [
            ("project_id", "p1".to_string()),
            ("owner", "p1".to_string()),
        ]
        .into();
        assert!(p.allows("modify_image", &creds(&member, Some("p1")), &t));
        assert!(!p.allows("modify_image", &creds(&member, Some("p2")), &t));
        assert!(!p.allows("publicize_image", &creds(&member, Some("p1")), &t));
        assert!(p.allows("publicize_image", &creds(&admin, None), &t));
        assert!(!p.allows("no_such_action", &creds(&member, Some("p1")), &t));
    }

    #[test]
    fn overrides() {
        let p = Policy::with_overrides(
            "# comment\n\"publicize_image\": \"role:member and project_id:%(project_id)s\"\ndelete_image: '!'\n\"download_image\": \"not role:reader\"\n",
        )
        .unwrap();
        let member = vec!["member".to_string()];
        let reader = vec!["reader".to_string()];
        let t: HashMap<&str, String> = [("project_id", "p1".to_string())].into();
        assert!(p.allows("publicize_image", &creds(&member, Some("p1")), &t));
        assert!(!p.allows("delete_image", &creds(&["admin".to_string()], None), &t));
        assert!(!p.allows("download_image", &creds(&reader, Some("p1")), &t));
        assert!(Policy::with_overrides("\"x\": \"role:a and (\"").is_err());
    }
}
