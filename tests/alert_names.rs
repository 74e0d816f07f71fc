//! The alerts the documentation (README.md, docs/) names are the alerts the
//! PrometheusRule ships, and each has its runbook section (docs/src/monitoring.md). Pure text: no promtool, no Prometheus (those run in
//! tests/monitoring.rs).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every page under docs/ (Markdown), with their paths.
fn documentation() -> Vec<(PathBuf, String)> {
    let mut files = vec![root().join("README.md")];
    let mut dirs = vec![root().join("docs")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
        .collect()
}

/// Alert names in a text: words starting `FleetDeleteGuard` followed by a capital, and
/// whatever follows `alert:` (rule snippets).
fn named_alerts(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let word = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in text.match_indices("FleetDeleteGuard") {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let name = word(&text[i..]);
        if name["FleetDeleteGuard".len()..].starts_with(|c: char| c.is_ascii_uppercase()) {
            out.insert(name);
        }
    }
    for line in text.lines() {
        let line = line.trim_start().trim_start_matches("- ");
        if let Some(rest) = line.strip_prefix("alert:") {
            let name = word(rest.trim_start());
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// The `- alert: NAME` entries of the PrometheusRule.
fn rule_alerts(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).expect("prometheusrule.yaml");
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect()
}

/// Runbook sections: headings (any level) that are an alert's name.
fn runbook_sections(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| l.trim_start_matches('#').strip_prefix(' '))
        .map(|h| h.trim().to_string())
        .filter(|h| h.starts_with("FleetDeleteGuard"))
        .collect()
}

#[test]
fn the_alerts_the_documentation_names_are_the_rule_files_and_each_has_a_runbook() {
    let rules = rule_alerts(&root().join("deploy/monitoring/prometheusrule.yaml"));
    assert!(rules.len() >= 11, "{rules:?}");
    let docs = documentation();
    let named: BTreeSet<String> = docs.iter().flat_map(|(_, t)| named_alerts(t)).collect();
    let runbooks: BTreeSet<String> = docs.iter().flat_map(|(_, t)| runbook_sections(t)).collect();
    let missing: Vec<&String> = named.difference(&rules).collect();
    let undocumented: Vec<&String> = rules.difference(&named).collect();
    assert!(
        missing.is_empty() && undocumented.is_empty(),
        "named in the documentation but not in the PrometheusRule: {missing:?}; in the \
         PrometheusRule but never named: {undocumented:?}"
    );
    assert_eq!(
        runbooks, rules,
        "one runbook section (a heading `### NAME`) per alert"
    );
}

#[test]
fn alert_names_are_found_in_prose_headings_and_rule_snippets() {
    let text = "See FleetDeleteGuardBreakerOpen, and `FleetDeleteGuardDown`.\n\
                ### FleetDeleteGuardAbsent\n\
                ```yaml\n- alert: SomethingElse\n  expr: up == 0\n```\n\
                not_FleetDeleteGuardX, FleetDeleteGuard alone, fleet_delete_guard_up";
    let named: Vec<String> = named_alerts(text).into_iter().collect();
    assert_eq!(
        named,
        [
            "FleetDeleteGuardAbsent",
            "FleetDeleteGuardBreakerOpen",
            "FleetDeleteGuardDown",
            "SomethingElse"
        ]
    );
    assert_eq!(
        runbook_sections(text).into_iter().collect::<Vec<_>>(),
        ["FleetDeleteGuardAbsent"]
    );
}
