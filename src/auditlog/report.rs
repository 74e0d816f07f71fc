//! Rows held for sorting, packed as interned symbols, and the two outputs.

use std::{
    collections::{HashMap, HashSet},
    io::{self, Write},
    rc::Rc,
};

use jiff::Timestamp;
use serde::Serialize;

use super::event::{Deletion, Items, Outcome};

type Sym = u32;

/// Every distinct string once; rows refer to them by number.
struct Interner {
    ids: HashMap<Rc<str>, Sym>,
    strs: Vec<Rc<str>>,
}

impl Interner {
    fn new() -> Self {
        let mut interner = Interner {
            ids: HashMap::new(),
            strs: Vec::new(),
        };
        interner.intern("");
        interner
    }

    fn intern(&mut self, s: &str) -> Sym {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = Sym::try_from(self.strs.len()).expect("fewer than 2^32 distinct strings");
        let rc: Rc<str> = Rc::from(s);
        self.strs.push(rc.clone());
        self.ids.insert(rc, id);
        id
    }

    fn get(&self, id: Sym) -> &str {
        &self.strs[id as usize]
    }
}

/// Groups are kept as one string, one group a line.
const GROUP_SEPARATOR: char = '\n';

const COLLECTION: u8 = 1;
const DRY_RUN: u8 = 2;
const BY_WEBHOOK: u8 = 4;
const BY_LABELS: u8 = 8;
const IMPERSONATED: u8 = 16;

/// A [`Deletion`] packed: about 130 bytes whatever its strings.
struct Row {
    time: Timestamp,
    /// Unique per event: kept only for JSON, where it is printed.
    audit_id: Option<Box<str>>,
    stage: Sym,
    user: Sym,
    groups: Sym,
    impersonated_user: Sym,
    impersonated_groups: Sym,
    user_agent: Sym,
    api_group: Sym,
    api_version: Sym,
    resource: Sym,
    subresource: Sym,
    namespace: Sym,
    name: Sym,
    owner: Sym,
    gitrepo: Sym,
    bundle: Sym,
    objectset_id: Sym,
    helm_release: Sym,
    decision: Sym,
    reason: Sym,
    denied_by: Sym,
    items: Option<Items>,
    code: u16,
    outcome: u8,
    flags: u8,
    /// 0 absent, 1 false, 2 true.
    counted: u8,
}

impl Row {
    fn pack(d: &Deletion, strings: &mut Interner, keep_audit_id: bool) -> Row {
        let mut s = |v: &str| strings.intern(v);
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        let groups = d.groups.join(&GROUP_SEPARATOR.to_string());
        let impersonated_groups = d.impersonated_groups.join(&GROUP_SEPARATOR.to_string());
        Row {
            time: d.time,
            audit_id: keep_audit_id.then(|| d.audit_id.clone().into_boxed_str()),
            stage: s(&d.stage),
            user: s(&d.user),
            groups: s(&groups),
            impersonated_user: s(d.impersonated_user.as_deref().unwrap_or("")),
            impersonated_groups: s(&impersonated_groups),
            user_agent: s(&d.user_agent),
            api_group: s(&d.api_group),
            api_version: s(&d.api_version),
            resource: s(&d.resource),
            subresource: s(&d.subresource),
            namespace: s(&d.namespace),
            name: s(&d.name),
            owner: s(&d.owner),
            gitrepo: s(&d.gitrepo),
            bundle: s(&d.bundle),
            objectset_id: s(&d.objectset_id),
            helm_release: s(&d.helm_release),
            decision: s(&d.decision),
            reason: s(&d.reason),
            denied_by: s(&d.denied_by),
            items: d.items,
            code: d.code,
            outcome: d.outcome.index(),
            flags: flag(d.collection, COLLECTION)
                | flag(d.dry_run, DRY_RUN)
                | flag(d.by_webhook, BY_WEBHOOK)
                | flag(d.by_labels, BY_LABELS)
                | flag(d.impersonated_user.is_some(), IMPERSONATED),
            counted: match d.counted {
                None => 0,
                Some(false) => 1,
                Some(true) => 2,
            },
        }
    }

    fn unpack(&self, strings: &Interner) -> Deletion {
        let s = |id: Sym| strings.get(id).to_string();
        let list = |id: Sym| {
            let joined = strings.get(id);
            if joined.is_empty() {
                Vec::new()
            } else {
                joined.split(GROUP_SEPARATOR).map(str::to_string).collect()
            }
        };
        let has = |bit: u8| self.flags & bit != 0;
        Deletion {
            time: self.time,
            audit_id: self.audit_id.as_deref().unwrap_or("").to_string(),
            stage: s(self.stage),
            collection: has(COLLECTION),
            user: s(self.user),
            groups: list(self.groups),
            impersonated_user: has(IMPERSONATED).then(|| s(self.impersonated_user)),
            impersonated_groups: list(self.impersonated_groups),
            user_agent: s(self.user_agent),
            api_group: s(self.api_group),
            api_version: s(self.api_version),
            resource: s(self.resource),
            subresource: s(self.subresource),
            namespace: s(self.namespace),
            name: s(self.name),
            owner: s(self.owner),
            gitrepo: s(self.gitrepo),
            bundle: s(self.bundle),
            objectset_id: s(self.objectset_id),
            helm_release: s(self.helm_release),
            decision: s(self.decision),
            counted: match self.counted {
                0 => None,
                1 => Some(false),
                _ => Some(true),
            },
            reason: s(self.reason),
            dry_run: has(DRY_RUN),
            code: self.code,
            outcome: Outcome::from_index(self.outcome),
            denied_by: s(self.denied_by),
            by_webhook: has(BY_WEBHOOK),
            by_labels: has(BY_LABELS),
            items: self.items,
        }
    }
}

/// What the run read, for the closing lines.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub inputs: u64,
    /// Well-formed audit events.
    pub events: u64,
    /// `RequestReceived`/`ResponseStarted` events, not counted as anything else.
    pub other_stage: u64,
    /// `delete`/`deletecollection` events at a final stage.
    pub deletions: u64,
    /// Those of Fleet-managed objects.
    pub fleet_deletions: u64,
    pub filtered_out: u64,
    pub printed: u64,
    pub malformed: u64,
    pub malformed_examples: Vec<String>,
}

const MALFORMED_EXAMPLES: usize = 3;

impl Stats {
    pub(crate) fn malformed(&mut self, source: &str, line: u64, error: &str) {
        self.malformed += 1;
        if self.malformed_examples.len() < MALFORMED_EXAMPLES {
            let error: String = error.chars().take(160).collect();
            self.malformed_examples
                .push(format!("{source}:{line}: {error}"));
        }
    }

    /// `N malformed lines skipped (first: file:line: why; …)`, when there were any.
    pub(crate) fn malformed_summary(&self) -> Option<String> {
        (self.malformed > 0).then(|| {
            format!(
                "{} malformed {} skipped (first: {})",
                self.malformed,
                plural(self.malformed, "line", "lines"),
                self.malformed_examples.join("; ")
            )
        })
    }

    /// The counts in one sentence; malformed lines only when `with_malformed` (the
    /// JSON output reports them on a line of their own, with examples).
    pub(crate) fn counts_line(&self, with_malformed: bool) -> String {
        let mut line = format!(
            "{} {} shown; read {} audit {} from {} {}: {} {}, {} of Fleet-managed objects",
            self.printed,
            plural(self.printed, "deletion", "deletions"),
            self.events,
            plural(self.events, "event", "events"),
            self.inputs,
            plural(self.inputs, "input", "inputs"),
            self.deletions,
            plural(self.deletions, "deletion", "deletions"),
            self.fleet_deletions,
        );
        if self.filtered_out > 0 {
            line.push_str(&format!(" ({} outside the filters)", self.filtered_out));
        }
        if self.other_stage > 0 {
            line.push_str(&format!(
                "; {} RequestReceived/ResponseStarted {} skipped",
                self.other_stage,
                plural(self.other_stage, "event", "events")
            ));
        }
        if with_malformed && self.malformed > 0 {
            line.push_str(&format!(
                "; {} malformed {} skipped",
                self.malformed,
                plural(self.malformed, "line", "lines")
            ));
        }
        line
    }
}

fn plural<'s>(n: u64, one: &'s str, many: &'s str) -> &'s str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// Counts behind one line of a summary. Every row is in exactly one of deleted,
/// dry-run, denied (403) and failed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    rows: u64,
    deleted: u64,
    dry_run: u64,
    denied: u64,
    failed: u64,
}

impl Counts {
    fn add(&mut self, d: &Deletion) {
        self.rows += 1;
        match d.outcome {
            Outcome::Denied | Outcome::Forbidden => self.denied += 1,
            _ if d.dry_run => self.dry_run += 1,
            Outcome::Succeeded => self.deleted += 1,
            _ => self.failed += 1,
        }
    }
}

const TABLE_HEADER: [&str; 11] = [
    "TIME", "USER", "GROUPS", "AGENT", "RESOURCE", "OBJECT", "GITREPO", "BUNDLE", "DECISION",
    "DRY-RUN", "RESULT",
];
const MAX_GROUPS_WIDTH: usize = 48;
const MAX_AGENT_WIDTH: usize = 32;
/// Every authenticated user has it: the table leaves it out (JSON keeps it).
const ALL_AUTHENTICATED: &str = "system:authenticated";

fn width(s: &str) -> usize {
    s.chars().count()
}

fn truncate(s: &str, max: usize) -> String {
    if width(s) <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}

fn dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// The table's cells for one deletion.
fn table_cells(d: &Deletion) -> [String; 11] {
    let user = match &d.impersonated_user {
        Some(imp) => format!("{imp} (via {})", d.user),
        None => d.user.clone(),
    };
    let groups: Vec<&str> = d
        .effective_groups()
        .iter()
        .map(String::as_str)
        .filter(|g| *g != ALL_AUTHENTICATED)
        .collect();
    // kubectl/v1.30.1 (linux/amd64) kubernetes/7911c4f → kubectl/v1.30.1
    let agent = d.user_agent.split_whitespace().next().unwrap_or("");
    let result = match d.code {
        0 => d.outcome.as_str().to_string(),
        code => format!("{code} {}", d.outcome.as_str()),
    };
    [
        format!("{:.0}", d.time),
        user,
        truncate(dash(&groups.join(",")), MAX_GROUPS_WIDTH),
        truncate(dash(agent), MAX_AGENT_WIDTH),
        d.resource_display(),
        d.object_display(),
        dash(d.owner_key()).to_string(),
        dash(&d.bundle).to_string(),
        dash(&d.decision).to_string(),
        if d.dry_run { "yes" } else { "no" }.to_string(),
        result,
    ]
}

/// Write `cells` padded to `widths`, two spaces apart, the last one unpadded.
/// Columns listed in `right` are right-aligned.
fn write_aligned<S: AsRef<str>>(
    out: &mut impl Write,
    cells: &[S],
    widths: &[usize],
    right: &[usize],
) -> io::Result<()> {
    let mut line = String::new();
    for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
        let cell = cell.as_ref();
        if i > 0 {
            line.push_str("  ");
        }
        let pad = w.saturating_sub(width(cell));
        if right.contains(&i) {
            line.extend(std::iter::repeat_n(' ', pad));
            line.push_str(cell);
        } else {
            line.push_str(cell);
            if i + 1 < cells.len() {
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
    }
    writeln!(out, "{}", line.trim_end())
}

/// Kept rows and running summaries.
pub(crate) struct Report {
    strings: Interner,
    rows: Vec<Row>,
    keep_audit_id: bool,
    widths: [usize; 11],
    by_owner: HashMap<Sym, Counts>,
    by_user: HashMap<Sym, Counts>,
    /// (owner, user) pairs seen, for the USERS/GITREPOS columns.
    pairs: HashSet<(Sym, Sym)>,
}

impl Report {
    pub(crate) fn new(json: bool) -> Self {
        Report {
            strings: Interner::new(),
            rows: Vec::new(),
            keep_audit_id: json,
            widths: TABLE_HEADER.map(width),
            by_owner: HashMap::new(),
            by_user: HashMap::new(),
            pairs: HashSet::new(),
        }
    }

    pub(crate) fn push(&mut self, d: &Deletion) {
        if !self.keep_audit_id {
            for (w, cell) in self.widths.iter_mut().zip(table_cells(d)) {
                *w = (*w).max(width(&cell));
            }
            let owner = self.strings.intern(dash(d.owner_key()));
            let user = self.strings.intern(d.effective_user());
            self.by_owner.entry(owner).or_default().add(d);
            self.by_user.entry(user).or_default().add(d);
            self.pairs.insert((owner, user));
        }
        let row = Row::pack(d, &mut self.strings, self.keep_audit_id);
        self.rows.push(row);
    }

    /// Rows by time; rows of the same time stay in input order.
    fn sort(&mut self) {
        self.rows.sort_by_key(|row| row.time);
    }

    pub(crate) fn write_json(&mut self, out: &mut impl Write) -> io::Result<()> {
        self.sort();
        for row in &self.rows {
            JsonRow::new(&row.unpack(&self.strings)).write_line(&mut *out)?;
        }
        Ok(())
    }

    pub(crate) fn write_table(&mut self, out: &mut impl Write, stats: &Stats) -> io::Result<()> {
        self.sort();
        if self.rows.is_empty() {
            writeln!(out, "No deletions of Fleet-managed objects found.")?;
        } else {
            write_aligned(out, &TABLE_HEADER, &self.widths, &[])?;
            for row in &self.rows {
                let cells = table_cells(&row.unpack(&self.strings));
                write_aligned(out, &cells, &self.widths, &[])?;
            }
            self.write_summary(out, "GitRepo", "GITREPO", "USERS", &self.by_owner, |p| p.0)?;
            self.write_summary(out, "user", "USER", "GITREPOS", &self.by_user, |p| p.1)?;
        }
        writeln!(out)?;
        writeln!(out, "{}.", stats.counts_line(true))
    }

    fn write_summary(
        &self,
        out: &mut impl Write,
        title: &str,
        key_header: &str,
        distinct_header: &str,
        counts: &HashMap<Sym, Counts>,
        key_of: impl Fn(&(Sym, Sym)) -> Sym,
    ) -> io::Result<()> {
        let mut distinct: HashMap<Sym, u64> = HashMap::new();
        for pair in &self.pairs {
            *distinct.entry(key_of(pair)).or_default() += 1;
        }
        let mut lines: Vec<(&str, Counts, u64)> = counts
            .iter()
            .map(|(&key, &c)| {
                let n = distinct.get(&key).copied().unwrap_or(0);
                (self.strings.get(key), c, n)
            })
            .collect();
        lines.sort_by(|a, b| b.1.rows.cmp(&a.1.rows).then(a.0.cmp(b.0)));
        let header = [
            key_header,
            "DELETIONS",
            "DELETED",
            "DRY-RUN",
            "DENIED",
            "FAILED",
            distinct_header,
        ];
        let cells: Vec<[String; 7]> = lines
            .iter()
            .map(|(key, c, n)| {
                [
                    key.to_string(),
                    c.rows.to_string(),
                    c.deleted.to_string(),
                    c.dry_run.to_string(),
                    c.denied.to_string(),
                    c.failed.to_string(),
                    n.to_string(),
                ]
            })
            .collect();
        let mut widths = header.map(width);
        for line in &cells {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(width(cell));
            }
        }
        let right = [1, 2, 3, 4, 5, 6];
        writeln!(out)?;
        writeln!(out, "Per {title}:")?;
        write_aligned(out, &header, &widths, &right)?;
        for line in &cells {
            write_aligned(out, line, &widths, &right)?;
        }
        Ok(())
    }
}

/// One JSON line. Every key is always there (null when unknown), so tools can rely
/// on the shape.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JsonRow<'d> {
    time: String,
    #[serde(rename = "auditID")]
    audit_id: &'d str,
    stage: &'d str,
    verb: &'static str,
    user: &'d str,
    groups: &'d [String],
    impersonated_user: Option<&'d str>,
    impersonated_groups: Option<&'d [String]>,
    user_agent: &'d str,
    api_group: &'d str,
    api_version: &'d str,
    resource: &'d str,
    subresource: Option<&'d str>,
    namespace: &'d str,
    /// Empty for a `deletecollection`.
    name: &'d str,
    gitrepo: Option<&'d str>,
    bundle: Option<&'d str>,
    owner: Option<&'d str>,
    #[serde(rename = "objectsetID")]
    objectset_id: Option<&'d str>,
    helm_release: Option<&'d str>,
    decision: Option<&'d str>,
    counted: Option<bool>,
    reason: Option<&'d str>,
    dry_run: bool,
    code: Option<u16>,
    result: &'static str,
    denied_by: Option<&'d str>,
    /// `webhook`, `labels` or `webhook+labels`.
    recognised_by: &'static str,
    items: Option<Items>,
}

fn some(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

impl<'d> JsonRow<'d> {
    pub(crate) fn new(d: &'d Deletion) -> Self {
        JsonRow {
            time: d.time.to_string(),
            audit_id: &d.audit_id,
            stage: &d.stage,
            verb: if d.collection {
                "deletecollection"
            } else {
                "delete"
            },
            user: &d.user,
            groups: &d.groups,
            impersonated_user: d.impersonated_user.as_deref(),
            impersonated_groups: d
                .impersonated_user
                .is_some()
                .then_some(d.impersonated_groups.as_slice()),
            user_agent: &d.user_agent,
            api_group: &d.api_group,
            api_version: &d.api_version,
            resource: &d.resource,
            subresource: some(&d.subresource),
            namespace: &d.namespace,
            name: &d.name,
            gitrepo: some(&d.gitrepo),
            bundle: some(&d.bundle),
            owner: some(&d.owner),
            objectset_id: some(&d.objectset_id),
            helm_release: some(&d.helm_release),
            decision: some(&d.decision),
            counted: d.counted,
            reason: some(&d.reason),
            dry_run: d.dry_run,
            code: (d.code != 0).then_some(d.code),
            result: d.outcome.as_str(),
            denied_by: some(&d.denied_by),
            recognised_by: match (d.by_webhook, d.by_labels) {
                (true, true) => "webhook+labels",
                (false, true) => "labels",
                _ => "webhook",
            },
            items: d.items,
        }
    }

    pub(crate) fn write_line(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        out.write_all(b"\n")
    }
}
