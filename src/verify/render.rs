//! `verify` output: a table for terminals, JSON for scripts.

use std::fmt::Write as _;

use crate::compare::Report;

const HEADERS: [&str; 9] = [
    "OWNER",
    "BDS",
    "DESIRED",
    "READY",
    "MISSING",
    "PRESENT",
    "ABSENT",
    "UNCHECKED",
    "DISCREPANCIES",
];

/// One line per owner, its discrepancies indented below it, then errors and a summary.
pub fn table(report: &Report) -> String {
    let rows: Vec<[String; 9]> = report
        .owners
        .iter()
        .map(|o| {
            [
                o.owner.to_string(),
                o.bundle_deployments.to_string(),
                o.desired_ready.to_string(),
                o.reported_ready.to_string(),
                o.reported_missing.to_string(),
                o.present.to_string(),
                o.absent.to_string(),
                o.unchecked.to_string(),
                o.discrepancies.len().to_string(),
            ]
        })
        .collect();
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == 0 {
                let _ = write!(text, "{cell:<w$}");
            } else {
                let _ = write!(text, "  {cell:>w$}");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    let mut out = String::new();
    line(&mut out, &HEADERS);
    for (row, owner) in rows.iter().zip(&report.owners) {
        line(&mut out, &row.each_ref().map(String::as_str));
        for d in &owner.discrepancies {
            let _ = writeln!(out, "  ! {d}");
        }
    }
    if !report.errors.is_empty() {
        out.push_str("\nNot checked:\n");
        for e in &report.errors {
            let _ = write!(out, "  {}: {}", e.what, e.message);
            if e.unchecked > 0 {
                let _ = write!(out, " ({} resources unchecked)", e.unchecked);
            }
            out.push('\n');
        }
    }
    if !report.notes.is_empty() {
        out.push_str("\nNotes:\n");
        for n in &report.notes {
            let _ = writeln!(out, "  {n}");
        }
    }
    let disagreeing = report
        .owners
        .iter()
        .filter(|o| !o.discrepancies.is_empty())
        .count();
    let _ = writeln!(
        out,
        "\n{} BundleDeployments, owners: {} ({} disagreeing), discrepancies: {}, errors: {}: {}",
        report.bundle_deployments,
        report.owners.len(),
        disagreeing,
        report.discrepancies(),
        report.errors.len(),
        match report.exit_code() {
            0 => "Fleet's status agrees with the cluster",
            1 => "Fleet's status disagrees with the cluster",
            _ => "not everything could be checked",
        }
    );
    out
}

/// The report as one JSON document.
pub fn json(report: &Report) -> String {
    // Plain data (strings, numbers): serializing cannot fail.
    let mut text = serde_json::to_string_pretty(report).unwrap_or_else(|e| {
        serde_json::json!({"errors": [{"what": "output", "message": e.to_string()}]}).to_string()
    });
    text.push('\n');
    text
}
