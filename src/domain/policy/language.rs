//! oslo.policy's rule language: check strings parsed into a tree and evaluated against the
//! caller's credentials and a target, with oslo.policy's semantics.
//!
//! Syntax: `@` (always), `!` (never), `role:NAME`, `rule:NAME`, `KIND:MATCH` (a credential
//! such as `project_id`, or a dotted path into them, or a quoted/`True`/number literal, equal
//! to MATCH once `%(key)s` is filled from the target), `not`, `and`, `or` (in that order of
//! precedence, case-insensitive), parentheses; the old list-of-lists form of JSON files
//! (`[["a", "b"], ["c"]]` = `(a and b) or c`). An empty rule always passes.
//!
//! As in oslo.policy, nothing here fails a request for a bad rule: a check oslo.policy cannot
//! understand never passes (and `parse` says why, so the loader can report it at start-up),
//! a target key that is missing makes its check fail, and a `rule:` that names no rule
//! evaluates the default rule.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    True,
    False,
    /// `role:NAME`; NAME may interpolate the target.
    Role(String),
    /// `rule:NAME`.
    Rule(String),
    /// `KIND:MATCH`.
    Generic {
        kind: String,
        matcher: String,
    },
    /// `http:`/`https:` checks ask a remote server, which glance-rs does not do: never passes.
    Remote(String),
    Not(Box<Check>),
    And(Vec<Check>),
    Or(Vec<Check>),
}

/// What a check's `%(key)s` reads: the target's values as Python's `str()` shows them (`None`,
/// `True`, numbers in decimal), the form oslo.policy compares; `None` for a key it lacks.
pub trait Target {
    fn get(&self, key: &str) -> Option<Cow<'_, str>>;
}

/// A target given as a map.
pub type TargetMap = HashMap<String, String>;

impl Target for TargetMap {
    fn get(&self, key: &str) -> Option<Cow<'_, str>> {
        HashMap::get(self, key).map(|v| Cow::Borrowed(v.as_str()))
    }
}

/// A rule written in the language; `Err` says why it cannot be understood (it then never
/// passes, as oslo.policy's `FalseCheck`).
pub fn parse(rule: &str) -> Result<Check, String> {
    let tokens = tokenize(rule);
    if tokens.is_empty() {
        return Ok(Check::True);
    }
    let mut pos = 0;
    let parsed = parse_or(&tokens, &mut pos)?;
    if pos != tokens.len() {
        return Err(format!("unexpected {} in {rule:?}", tokens[pos].describe()));
    }
    Ok(parsed)
}

/// The old list syntax: a list of alternatives, each a list of checks that must all pass.
pub fn parse_list(list: &[Vec<String>]) -> Check {
    if list.is_empty() {
        return Check::True;
    }
    let mut alternatives = Vec::new();
    for inner in list.iter().filter(|l| !l.is_empty()) {
        let mut all: Vec<Check> = inner
            .iter()
            .map(|c| parse_check(c).unwrap_or(Check::False))
            .collect();
        alternatives.push(if all.len() == 1 {
            all.remove(0)
        } else {
            Check::And(all)
        });
    }
    match alternatives.len() {
        0 => Check::False,
        1 => alternatives.remove(0),
        _ => Check::Or(alternatives),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    Not,
    /// A whole token in quotes: oslo.policy's grammar has no place for it.
    Str(String),
    Check(Result<Check, String>),
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Open => "'('".into(),
            Token::Close => "')'".into(),
            Token::And => "'and'".into(),
            Token::Or => "'or'".into(),
            Token::Not => "'not'".into(),
            Token::Str(s) => format!("string {s:?}"),
            Token::Check(_) => "a check".into(),
        }
    }
}

/// Words split on whitespace; grouping parentheses peeled off their ends (those inside a check,
/// as in `%(name)s`, stay).
fn tokenize(rule: &str) -> Vec<Token> {
    let mut out = Vec::new();
    for word in rule.split_whitespace() {
        let clean = word.trim_start_matches('(');
        out.extend(std::iter::repeat_n(Token::Open, word.len() - clean.len()));
        if clean.is_empty() {
            continue;
        }
        let tok = clean;
        let bare = tok.trim_end_matches(')');
        let closing = tok.len() - bare.len();
        match bare.to_ascii_lowercase().as_str() {
            "and" => out.push(Token::And),
            "or" => out.push(Token::Or),
            "not" => out.push(Token::Not),
            "" => {}
            _ => {
                let quoted = tok.len() >= 2
                    && (tok.starts_with('"') && tok.ends_with('"')
                        || tok.starts_with('\'') && tok.ends_with('\''));
                if quoted {
                    out.push(Token::Str(tok[1..tok.len() - 1].to_string()));
                } else {
                    out.push(Token::Check(parse_check(bare)));
                }
            }
        }
        out.extend(std::iter::repeat_n(Token::Close, closing));
    }
    out
}

/// One check: `@`, `!`, or `KIND:MATCH`.
fn parse_check(s: &str) -> Result<Check, String> {
    match s {
        "!" => return Ok(Check::False),
        "@" => return Ok(Check::True),
        _ => {}
    }
    let (kind, matcher) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not KIND:MATCH"))?;
    Ok(match kind {
        "rule" => Check::Rule(matcher.to_string()),
        "role" => Check::Role(matcher.to_string()),
        "http" | "https" => Check::Remote(s.to_string()),
        _ => Check::Generic {
            kind: kind.to_string(),
            matcher: matcher.to_string(),
        },
    })
}

fn parse_or(t: &[Token], p: &mut usize) -> Result<Check, String> {
    let mut v = vec![parse_and(t, p)?];
    while t.get(*p) == Some(&Token::Or) {
        *p += 1;
        v.push(parse_and(t, p)?);
    }
    Ok(if v.len() == 1 {
        v.remove(0)
    } else {
        Check::Or(v)
    })
}

fn parse_and(t: &[Token], p: &mut usize) -> Result<Check, String> {
    let mut v = vec![parse_not(t, p)?];
    while t.get(*p) == Some(&Token::And) {
        *p += 1;
        v.push(parse_not(t, p)?);
    }
    Ok(if v.len() == 1 {
        v.remove(0)
    } else {
        Check::And(v)
    })
}

fn parse_not(t: &[Token], p: &mut usize) -> Result<Check, String> {
    let tok = t.get(*p).ok_or("the rule ends too early")?;
    *p += 1;
    match tok {
        Token::Not => Ok(Check::Not(Box::new(parse_not(t, p)?))),
        Token::Open => {
            let inner = parse_or(t, p)?;
            if t.get(*p) != Some(&Token::Close) {
                return Err("a '(' is not closed".into());
            }
            *p += 1;
            Ok(inner)
        }
        // A check oslo.policy cannot read is a FalseCheck in its place, not a broken rule.
        Token::Check(c) => Ok(c.clone().unwrap_or(Check::False)),
        other => Err(format!("unexpected {}", other.describe())),
    }
}

/// The checks of a tree that oslo.policy could not read (each then never passes).
pub fn unreadable_checks(rule: &str) -> Vec<String> {
    tokenize(rule)
        .into_iter()
        .filter_map(|t| match t {
            Token::Check(Err(e)) => Some(e),
            _ => None,
        })
        .collect()
}

/// `s % target` in Python: `%(key)s` takes the target's value, `%%` is `%`; `None` when a key
/// is missing (oslo.policy's KeyError: the check fails).
pub fn interpolate(s: &str, target: &dyn Target) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('%') {
            out.push('%');
            rest = r;
        } else if let Some(r) = after.strip_prefix('(')
            && let Some(end) = r.find(")s")
        {
            out.push_str(&target.get(&r[..end])?);
            rest = &r[end + 2..];
        } else {
            out.push('%');
            rest = after;
        }
    }
    out.push_str(rest);
    Some(out)
}

/// What Python's `ast.literal_eval` makes of a check's kind, as `str()` shows it: quoted
/// strings, `True`/`False`/`None`, numbers. Anything else names credentials.
fn literal(kind: &str) -> Option<String> {
    let quoted = kind.len() >= 2
        && ((kind.starts_with('\'') && kind.ends_with('\''))
            || (kind.starts_with('"') && kind.ends_with('"')));
    if quoted {
        return Some(kind[1..kind.len() - 1].to_string());
    }
    match kind {
        "True" | "False" | "None" => return Some(kind.to_string()),
        _ => {}
    }
    if let Ok(n) = kind.parse::<i64>() {
        return Some(n.to_string());
    }
    kind.parse::<f64>()
        .ok()
        .filter(|_| kind.contains('.'))
        .map(|f| format!("{f:?}"))
}

/// Python's `str()` of a credential value.
fn python_str(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// oslo.policy's `_find_in_dict`: follows the path; a list matches if any element does.
fn find_in(value: &Value, path: &[&str], matcher: &str) -> bool {
    let Some((key, rest)) = path.split_first() else {
        return python_str(value) == matcher;
    };
    let Some(next) = value.get(*key) else {
        return false;
    };
    match next {
        Value::Array(items) => items.iter().any(|v| find_in(v, rest, matcher)),
        v => find_in(v, rest, matcher),
    }
}

/// A generic check against the credentials.
pub fn generic(kind: &str, matcher: &str, creds: &Value, target: &dyn Target) -> bool {
    let Some(m) = interpolate(matcher, target) else {
        return false;
    };
    if let Some(lit) = literal(kind) {
        return lit == m;
    }
    let path: Vec<&str> = kind.split('.').collect();
    find_in(creds, &path, &m)
}

/// A role check: the role (interpolated) among the credentials' roles, ignoring case.
pub fn role(matcher: &str, creds: &Value, target: &dyn Target) -> bool {
    let Some(m) = interpolate(matcher, target) else {
        return false;
    };
    let m = m.to_lowercase();
    creds["roles"].as_array().is_some_and(|r| {
        r.iter()
            .any(|x| x.as_str().is_some_and(|x| x.to_lowercase() == m))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(pairs: &[(&str, &str)]) -> TargetMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn precedence_and_parentheses_as_oslo() {
        let r = parse("role:a or role:b and not role:c").unwrap();
        assert_eq!(
            r,
            Check::Or(vec![
                Check::Role("a".into()),
                Check::And(vec![
                    Check::Role("b".into()),
                    Check::Not(Box::new(Check::Role("c".into())))
                ])
            ])
        );
        let r = parse("((role:a OR role:b)) AND project_id:%(project_id)s").unwrap();
        assert!(matches!(r, Check::And(_)));
        assert_eq!(parse("").unwrap(), Check::True);
        assert_eq!(parse("  ").unwrap(), Check::True);
        assert_eq!(parse("@").unwrap(), Check::True);
        assert_eq!(parse("!").unwrap(), Check::False);
        assert!(parse("role:a and (").is_err());
        assert!(parse("role:a role:b").is_err());
        assert!(parse("'quoted' and role:a").is_err());
        // A check without a kind is a FalseCheck in its place; the rest still parses.
        assert_eq!(
            parse("nonsense or role:a").unwrap(),
            Check::Or(vec![Check::False, Check::Role("a".into())])
        );
        assert_eq!(unreadable_checks("nonsense or role:a").len(), 1);
    }

    #[test]
    fn interpolation_as_python() {
        let target = t(&[("project_id", "p1"), ("owner", "None")]);
        assert_eq!(
            interpolate("%(project_id)s", &target).as_deref(),
            Some("p1")
        );
        assert_eq!(interpolate("a%%b", &target).as_deref(), Some("a%b"));
        assert_eq!(interpolate("%(missing)s", &target), None);
        assert_eq!(interpolate("%(owner)s", &target).as_deref(), Some("None"));
    }

    #[test]
    fn generic_checks_compare_exactly() {
        let creds = json!({"project_id": "P1", "roles": ["Member"], "is_admin_project": true,
                           "nested": {"list": [{"x": "1"}, {"x": "2"}]}, "system_scope": null});
        let target = t(&[
            ("project_id", "P1"),
            ("lower", "p1"),
            ("visibility", "public"),
        ]);
        assert!(generic("project_id", "%(project_id)s", &creds, &target));
        // oslo.policy compares strings exactly.
        assert!(!generic("project_id", "%(lower)s", &creds, &target));
        assert!(generic("'public'", "%(visibility)s", &creds, &target));
        assert!(!generic("'shared'", "%(visibility)s", &creds, &target));
        assert!(generic("is_admin_project", "True", &creds, &target));
        assert!(generic("nested.list.x", "2", &creds, &target));
        assert!(!generic("nested.list.x", "3", &creds, &target));
        assert!(generic("system_scope", "None", &creds, &target));
        assert!(!generic("no_such", "x", &creds, &target));
        assert!(generic("True", "True", &creds, &target));
        // Roles ignore case.
        assert!(role("member", &creds, &target));
        assert!(role("MEMBER", &creds, &target));
        assert!(!role("reader", &creds, &target));
    }

    #[test]
    fn list_syntax() {
        let r = parse_list(&[
            vec!["role:a".into(), "role:b".into()],
            vec!["role:c".into()],
        ]);
        assert_eq!(
            r,
            Check::Or(vec![
                Check::And(vec![Check::Role("a".into()), Check::Role("b".into())]),
                Check::Role("c".into())
            ])
        );
        assert_eq!(parse_list(&[]), Check::True);
        assert_eq!(parse_list(&[vec![]]), Check::False);
    }
}
