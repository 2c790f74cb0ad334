//! `glance-manage` command lines, as deployment tools write them, turned into glance-rs's: the
//! binary run as `glance-manage` (a link) or as `glance-rs manage ...`. The legacy one-word
//! forms (`db_sync`, `db_load_metadefs PATH True`) become `db sync`, `db load_metadefs PATH
//! --merge`; options such as `--config-file` pass through wherever they stand.

/// `args` (with the program name first) as glance-rs's own command line: the tokens stay in
/// their order (options where they were), the command words are rewritten.
pub fn translate(args: Vec<String>) -> Vec<String> {
    let Some(prog) = args.first() else {
        return args;
    };
    let as_manage = std::path::Path::new(prog)
        .file_name()
        .is_some_and(|n| n == "glance-manage");
    let mut out = args.clone();
    let positions = |v: &[String]| {
        let mut found = Vec::new();
        let mut i = 1;
        while i < v.len() {
            if v[i].starts_with("--") {
                if !v[i].contains('=') && takes_value(&v[i]) {
                    i += 1;
                }
            } else {
                found.push(i);
            }
            i += 1;
        }
        found
    };
    let mut pos = positions(&out);
    match pos.first() {
        Some(&i) if out[i] == "manage" => {
            out.remove(i);
            pos = positions(&out);
        }
        _ if as_manage => {}
        _ => return args,
    }
    let Some(&first) = pos.first() else {
        return out;
    };
    let Some(cmd) = out[first].strip_prefix("db_").map(str::to_string) else {
        return out;
    };
    out.splice(first..=first, ["db".to_string(), cmd.clone()]);
    if cmd == "load_metadefs" {
        // db_load_metadefs [path] [merge] [prefer_new] [overwrite]: the three booleans as flags.
        let after: Vec<usize> = positions(&out)
            .into_iter()
            .filter(|&i| i > first + 1)
            .collect();
        let bools: Vec<usize> = after.iter().skip(1).take(3).copied().collect();
        // From the last, so that removing a false one leaves the others' indices as they were.
        for (&i, flag) in bools
            .iter()
            .zip(["--merge", "--prefer_new", "--overwrite"])
            .rev()
        {
            if matches!(out[i].to_lowercase().as_str(), "true" | "1" | "yes") {
                out[i] = flag.to_string();
            } else {
                out.remove(i);
            }
        }
    }
    out
}

/// glance-manage's checks of `db purge`'s arguments, in its order and words: the time before
/// which deleted rows go, and how many per table (None: all, `-1`).
pub fn purge_limits(
    age_in_days: i64,
    max_rows: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(chrono::NaiveDateTime, Option<u64>), String> {
    if age_in_days < 0 {
        return Err("Must supply a non-negative value for age.".into());
    }
    if age_in_days >= now.timestamp() / 86400 {
        return Err("Maximal age is count of days since epoch.".into());
    }
    if max_rows < -1 {
        return Err("Minimal rows limit is -1.".into());
    }
    // The database keeps counts in 4-byte integers.
    if max_rows > i64::from(i32::MAX) {
        return Err(format!(
            "'max_rows' value out of range, must not exceed {}.",
            i32::MAX
        ));
    }
    let before = (now - chrono::Duration::days(age_in_days)).naive_utc();
    Ok((before, u64::try_from(max_rows).ok()))
}

fn takes_value(opt: &str) -> bool {
    matches!(
        opt,
        "--config-file" | "--config-dir" | "--path" | "--age_in_days" | "--max_rows"
    )
}

#[cfg(test)]
mod tests {
    use super::translate;

    fn t(args: &[&str]) -> Vec<String> {
        translate(args.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn glance_manage_lines_become_ours() {
        assert_eq!(
            t(&[
                "/usr/bin/glance-manage",
                "--config-file",
                "/etc/g.conf",
                "db_sync"
            ]),
            [
                "/usr/bin/glance-manage",
                "--config-file",
                "/etc/g.conf",
                "db",
                "sync"
            ]
        );
        assert_eq!(
            t(&["glance-rs", "manage", "db", "sync"]),
            ["glance-rs", "db", "sync"]
        );
        assert_eq!(
            t(&[
                "glance-manage",
                "db_load_metadefs",
                "/etc/glance/metadefs",
                "True",
                "False",
                "true"
            ]),
            [
                "glance-manage",
                "db",
                "load_metadefs",
                "/etc/glance/metadefs",
                "--merge",
                "--overwrite"
            ]
        );
        // Current forms, and glance-rs's own lines (even with a value named `manage`), stay.
        for line in [
            &[
                "glance-manage",
                "db",
                "load_metadefs",
                "--path",
                "/m",
                "--merge",
            ][..],
            &["glance-rs", "--config-file", "manage", "db", "sync"],
            &["glance-rs", "serve"],
        ] {
            assert_eq!(t(line), line);
        }
    }
}
