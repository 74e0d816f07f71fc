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

/// Strings that always travel together, interned as one tuple of symbols.
struct Tuples<const N: usize> {
    ids: HashMap<[Sym; N], Sym>,
    list: Vec<[Sym; N]>,
}

impl<const N: usize> Tuples<N> {
    fn new() -> Self {
        Tuples {
            ids: HashMap::new(),
            list: Vec::new(),
        }
    }

    fn intern(&mut self, tuple: [Sym; N]) -> Sym {
        if let Some(&id) = self.ids.get(&tuple) {
            return id;
        }
        let id = Sym::try_from(self.list.len()).expect("fewer than 2^32 distinct tuples");
        self.list.push(tuple);
        self.ids.insert(tuple, id);
        id
    }

    fn get(&self, id: Sym) -> [Sym; N] {
        self.list[id as usize]
    }
}

/// Everything a row refers to.
struct Strings {
    strs: Interner,
    /// user, groups, impersonated user, impersonated groups, user agent.
    identities: Tuples<5>,
    /// API group, version, resource, subresource, namespace.
    targets: Tuples<5>,
    /// owner, GitRepo, bundle, setID, Helm release.
    owners: Tuples<5>,
    /// stage, decision, reason, denying webhook.
    verdicts: Tuples<4>,
}

impl Strings {
    fn new() -> Self {
        Strings {
            strs: Interner::new(),
            identities: Tuples::new(),
            targets: Tuples::new(),
            owners: Tuples::new(),
            verdicts: Tuples::new(),
        }
    }

    fn get(&self, id: Sym) -> &str {
        self.strs.get(id)
    }
}

/// Groups are kept as one string, one group a line.
const GROUP_SEPARATOR: char = '\n';

const COLLECTION: u8 = 1;
const DRY_RUN: u8 = 2;
const BY_WEBHOOK: u8 = 4;
const BY_LABELS: u8 = 8;
const IMPERSONATED: u8 = 16;
const HAS_ITEMS: u8 = 32;
/// `audit_id` holds a UUID's 128 bits.
const AUDIT_UUID: u8 = 64;
/// `audit_id[0]` is the symbol of an audit ID that is not a lower-case UUID.
const AUDIT_STRING: u8 = 128;

/// A lower-case UUID (what kube-apiserver generates) as 128 bits.
fn uuid_bits(s: &str) -> Option<[u64; 2]> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut bits: u128 = 0;
    for (i, &c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        bits = bits << 4 | u128::from(digit);
    }
    Some([(bits >> 64) as u64, bits as u64])
}

fn uuid_string(bits: [u64; 2]) -> String {
    let hex = format!("{:016x}{:016x}", bits[0], bits[1]);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A [`Deletion`] packed into 72 bytes; its strings live in [`Strings`].
struct Row {
    time: Timestamp,
    /// Kept only for JSON, where it is printed: see `AUDIT_UUID`/`AUDIT_STRING`.
    audit_id: [u64; 2],
    identity: Sym,
    target: Sym,
    name: Sym,
    owner: Sym,
    verdict: Sym,
    /// Deleted items and Fleet-managed items of a deletecollection (`HAS_ITEMS`).
    items: [u32; 2],
    code: u16,
    outcome: u8,
    flags: u8,
    /// 0 absent, 1 false, 2 true.
    counted: u8,
}

impl Row {
    fn pack(d: &Deletion, strings: &mut Strings, keep_audit_id: bool) -> Row {
        let mut s = |v: &str| strings.strs.intern(v);
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        let groups = d.groups.join(&GROUP_SEPARATOR.to_string());
        let impersonated_groups = d.impersonated_groups.join(&GROUP_SEPARATOR.to_string());
        let identity = [
            s(&d.user),
            s(&groups),
            s(d.impersonated_user.as_deref().unwrap_or("")),
            s(&impersonated_groups),
            s(&d.user_agent),
        ];
        let target = [
            s(&d.api_group),
            s(&d.api_version),
            s(&d.resource),
            s(&d.subresource),
            s(&d.namespace),
        ];
        let owner = [
            s(&d.owner),
            s(&d.gitrepo),
            s(&d.bundle),
            s(&d.objectset_id),
            s(&d.helm_release),
        ];
        let verdict = [s(&d.stage), s(&d.decision), s(&d.reason), s(&d.denied_by)];
        let name = s(&d.name);
        let (audit_id, audit_flag) = match keep_audit_id.then(|| uuid_bits(&d.audit_id)) {
            None => ([0, 0], 0),
            Some(Some(bits)) => (bits, AUDIT_UUID),
            Some(None) => ([u64::from(s(&d.audit_id)), 0], AUDIT_STRING),
        };
        let items = d.items.unwrap_or_default();
        Row {
            time: d.time,
            audit_id,
            identity: strings.identities.intern(identity),
            target: strings.targets.intern(target),
            name,
            owner: strings.owners.intern(owner),
            verdict: strings.verdicts.intern(verdict),
            items: [items.deleted, items.fleet_managed],
            code: d.code,
            outcome: d.outcome.index(),
            flags: flag(d.collection, COLLECTION)
                | flag(d.dry_run, DRY_RUN)
                | flag(d.by_webhook, BY_WEBHOOK)
                | flag(d.by_labels, BY_LABELS)
                | flag(d.impersonated_user.is_some(), IMPERSONATED)
                | flag(d.items.is_some(), HAS_ITEMS)
                | audit_flag,
            counted: match d.counted {
                None => 0,
                Some(false) => 1,
                Some(true) => 2,
            },
        }
    }

    fn unpack(&self, strings: &Strings) -> Deletion {
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
        let [user, groups, impersonated_user, impersonated_groups, user_agent] =
            strings.identities.get(self.identity);
        let [api_group, api_version, resource, subresource, namespace] =
            strings.targets.get(self.target);
        let [owner, gitrepo, bundle, objectset_id, helm_release] = strings.owners.get(self.owner);
        let [stage, decision, reason, denied_by] = strings.verdicts.get(self.verdict);
        let audit_id = if has(AUDIT_UUID) {
            uuid_string(self.audit_id)
        } else if has(AUDIT_STRING) {
            s(self.audit_id[0] as Sym)
        } else {
            String::new()
        };
        Deletion {
            time: self.time,
            audit_id,
            stage: s(stage),
            collection: has(COLLECTION),
            user: s(user),
            groups: list(groups),
            impersonated_user: has(IMPERSONATED).then(|| s(impersonated_user)),
            impersonated_groups: list(impersonated_groups),
            user_agent: s(user_agent),
            api_group: s(api_group),
            api_version: s(api_version),
            resource: s(resource),
            subresource: s(subresource),
            namespace: s(namespace),
            name: s(self.name),
            owner: s(owner),
            gitrepo: s(gitrepo),
            bundle: s(bundle),
            objectset_id: s(objectset_id),
            helm_release: s(helm_release),
            decision: s(decision),
            counted: match self.counted {
                0 => None,
                1 => Some(false),
                _ => Some(true),
            },
            reason: s(reason),
            dry_run: has(DRY_RUN),
            code: self.code,
            outcome: Outcome::from_index(self.outcome),
            denied_by: s(denied_by),
            by_webhook: has(BY_WEBHOOK),
            by_labels: has(BY_LABELS),
            items: has(HAS_ITEMS).then_some(Items {
                deleted: self.items[0],
                fleet_managed: self.items[1],
            }),
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
    /// Lines that are well-formed but hold no Kubernetes audit event, by reason (e.g.
    /// a GKE export's health checks).
    pub skipped: std::collections::BTreeMap<&'static str, u64>,
    /// Deletions read again under an auditID already reported (overlapping inputs).
    pub duplicates: u64,
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

    /// A line (or record) holding no Kubernetes audit event, for `reason`.
    pub(crate) fn skipped(&mut self, reason: &'static str) {
        *self.skipped.entry(reason).or_default() += 1;
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
        if self.duplicates > 0 {
            line.push_str(&format!(
                "; {} {} read again under the same auditID skipped",
                self.duplicates,
                plural(self.duplicates, "deletion", "deletions")
            ));
        }
        for (reason, n) in &self.skipped {
            line.push_str(&format!(
                "; {n} {} skipped ({reason})",
                plural(*n, "entry", "entries")
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
        match d.decision.as_str() {
            "failed-open" => "not seen (failed open)".to_string(),
            decision => dash(decision).to_string(),
        },
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
    strings: Strings,
    rows: Vec<Row>,
    json: bool,
    widths: [usize; 11],
    by_owner: HashMap<Sym, Counts>,
    by_user: HashMap<Sym, Counts>,
    /// (owner, user) pairs seen, for the USERS/GITREPOS columns.
    pairs: HashSet<(Sym, Sym)>,
    /// auditIDs of the deletions read so far.
    audit_ids: HashSet<String>,
}

impl Report {
    /// True the first time `audit_id` is seen.
    pub(crate) fn first_sight(&mut self, audit_id: &str) -> bool {
        if self.audit_ids.contains(audit_id) {
            return false;
        }
        self.audit_ids.insert(audit_id.to_string())
    }

    pub(crate) fn new(json: bool) -> Self {
        Report {
            strings: Strings::new(),
            rows: Vec::new(),
            json,
            widths: TABLE_HEADER.map(width),
            by_owner: HashMap::new(),
            by_user: HashMap::new(),
            pairs: HashSet::new(),
            audit_ids: HashSet::new(),
        }
    }

    pub(crate) fn push(&mut self, d: &Deletion) {
        if !self.json {
            for (w, cell) in self.widths.iter_mut().zip(table_cells(d)) {
                *w = (*w).max(width(&cell));
            }
            let owner = self.strings.strs.intern(dash(d.owner_key()));
            let user = self.strings.strs.intern(d.effective_user());
            self.by_owner.entry(owner).or_default().add(d);
            self.by_user.entry(user).or_default().add(d);
            self.pairs.insert((owner, user));
        }
        let row = Row::pack(d, &mut self.strings, self.json);
        self.rows.push(row);
    }

    /// Row numbers by time; rows of the same time stay in input order. Sorting
    /// 4-byte numbers rather than rows keeps the sort's scratch space small.
    fn order(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.rows.len())
            .map(|i| u32::try_from(i).expect("fewer than 2^32 rows"))
            .collect();
        order.sort_by_key(|&i| self.rows[i as usize].time);
        order
    }

    pub(crate) fn write_json(&mut self, out: &mut impl Write) -> io::Result<()> {
        for i in self.order() {
            let d = self.rows[i as usize].unpack(&self.strings);
            JsonRow::new(&d).write_line(&mut *out)?;
        }
        Ok(())
    }

    pub(crate) fn write_table(&mut self, out: &mut impl Write, stats: &Stats) -> io::Result<()> {
        if self.rows.is_empty() {
            writeln!(out, "No deletions of Fleet-managed objects found.")?;
        } else {
            write_aligned(out, &TABLE_HEADER, &self.widths, &[])?;
            for i in self.order() {
                let cells = table_cells(&self.rows[i as usize].unpack(&self.strings));
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
                (false, false) => "failed-open",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn deletion(time: &str, user: &str, gitrepo: &str, code: u16, outcome: Outcome) -> Deletion {
        Deletion {
            time: time.parse().unwrap(),
            audit_id: format!("id-{time}"),
            stage: "ResponseComplete".into(),
            user: user.into(),
            groups: vec!["devs".into(), ALL_AUTHENTICATED.into()],
            user_agent: "kubectl/v1.30.1 (linux/amd64) kubernetes/7911c4f".into(),
            api_version: "v1".into(),
            resource: "configmaps".into(),
            namespace: "default".into(),
            name: "test-config2-one".into(),
            owner: gitrepo.into(),
            gitrepo: gitrepo.into(),
            bundle: "lots-config2".into(),
            decision: "warned".into(),
            counted: Some(true),
            reason: "manual deletion, policy warn".into(),
            code,
            outcome,
            by_webhook: true,
            ..Deletion::default()
        }
    }

    #[test]
    fn a_packed_row_unpacks_to_the_same_deletion() {
        let mut d = deletion(
            "2024-05-01T10:00:00.5Z",
            "alice",
            "fleet-local/lots",
            200,
            Outcome::Succeeded,
        );
        d.impersonated_user = Some("bob".into());
        d.impersonated_groups = vec!["ops".into()];
        d.collection = true;
        d.name = String::new();
        d.dry_run = true;
        d.by_labels = true;
        d.items = Some(Items {
            deleted: 3,
            fleet_managed: 2,
        });
        d.helm_release = "apps/lots".into();
        d.denied_by = "x".into();
        d.audit_id = "8c2b0a5e-0d1f-4a51-9d0c-4b2f7e0c1a11".into();
        let mut strings = Strings::new();
        assert_eq!(Row::pack(&d, &mut strings, true).unpack(&strings), d);
        // Audit IDs that are not lower-case UUIDs are kept as strings.
        for id in ["8C2B0A5E-0D1F-4A51-9D0C-4B2F7E0C1A11", "my-audit-id", ""] {
            d.audit_id = id.into();
            assert_eq!(Row::pack(&d, &mut strings, true).unpack(&strings), d);
        }
        // The table does not print them, so does not keep them.
        assert_eq!(
            Row::pack(&d, &mut strings, false).unpack(&strings).audit_id,
            ""
        );

        let mut plain = deletion("2024-05-01T10:00:00Z", "", "", 0, Outcome::Unknown);
        plain.groups.clear();
        plain.counted = None;
        assert_eq!(
            Row::pack(&plain, &mut strings, true).unpack(&strings),
            plain
        );
        // Repeated strings and tuples are stored once.
        let before = (strings.strs.strs.len(), strings.identities.list.len());
        Row::pack(&plain, &mut strings, true);
        assert_eq!(
            (strings.strs.strs.len(), strings.identities.list.len()),
            before
        );
    }

    #[test]
    fn rows_stay_small() {
        assert!(
            std::mem::size_of::<Row>() <= 136,
            "{}",
            std::mem::size_of::<Row>()
        );
    }

    #[test]
    fn every_row_is_in_exactly_one_summary_column() {
        let mut c = Counts::default();
        let mut dry = deletion("2024-05-01T10:00:00Z", "a", "r", 200, Outcome::Succeeded);
        dry.dry_run = true;
        let mut dry_denied = deletion("2024-05-01T10:00:00Z", "a", "r", 403, Outcome::Denied);
        dry_denied.dry_run = true;
        for d in [
            deletion("2024-05-01T10:00:00Z", "a", "r", 200, Outcome::Succeeded),
            dry,
            dry_denied,
            deletion("2024-05-01T10:00:00Z", "a", "r", 403, Outcome::Forbidden),
            deletion("2024-05-01T10:00:00Z", "a", "r", 404, Outcome::NotFound),
        ] {
            c.add(&d);
        }
        assert_eq!(
            c,
            Counts {
                rows: 5,
                deleted: 1,
                dry_run: 1,
                denied: 2,
                failed: 1
            }
        );
    }

    #[test]
    fn the_table_is_sorted_aligned_and_summarised() {
        let mut report = Report::new(false);
        report.push(&deletion(
            "2024-05-01T12:00:00Z",
            "system:serviceaccount:kube-system:namespace-controller",
            "fleet-local/lots",
            200,
            Outcome::Succeeded,
        ));
        report.push(&deletion(
            "2024-05-01T10:00:00Z",
            "alice",
            "fleet-local/lots",
            403,
            Outcome::Denied,
        ));
        report.push(&deletion(
            "2024-05-01T11:00:00Z",
            "alice",
            "",
            200,
            Outcome::Succeeded,
        ));
        let mut out = Vec::new();
        report.write_table(&mut out, &Stats::default()).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("TIME                  USER  "),
            "{text}"
        );
        assert!(
            lines[1].starts_with("2024-05-01T10:00:00Z  alice "),
            "{text}"
        );
        assert!(
            lines[2].starts_with("2024-05-01T11:00:00Z  alice "),
            "{text}"
        );
        assert!(
            lines[3].starts_with("2024-05-01T12:00:00Z  system:"),
            "{text}"
        );
        // Aligned: every column starts at the same offset on every line.
        let at = |line: &str, word: &str| line.find(word).unwrap();
        let object = at(lines[0], "OBJECT");
        for line in &lines[1..4] {
            assert_eq!(at(line, "default/test-config2-one"), object, "{text}");
        }
        assert!(lines[1].ends_with("403 denied"), "{text}");
        // system:authenticated is left out of the table.
        assert!(!text.contains("system:authenticated"), "{text}");
        assert!(
            lines[1][at(lines[0], "GROUPS")..].starts_with("devs  "),
            "{text}"
        );
        let agent = at(lines[0], "AGENT");
        assert!(lines[1][agent..].starts_with("kubectl/v1.30.1  "), "{text}");
        // An unresolved owner shows as "-".
        let gitrepo = at(lines[0], "GITREPO");
        assert!(lines[2][gitrepo..].starts_with("-   "), "{text}");
        assert!(
            lines[1][gitrepo..].starts_with("fleet-local/lots  "),
            "{text}"
        );

        let gitrepo_summary = text.split("Per GitRepo:\n").nth(1).unwrap();
        let mut summary = gitrepo_summary.lines();
        assert_eq!(
            summary.next().unwrap(),
            "GITREPO           DELETIONS  DELETED  DRY-RUN  DENIED  FAILED  USERS"
        );
        assert_eq!(
            summary.next().unwrap(),
            "fleet-local/lots          2        1        0       1       0      2"
        );
        assert_eq!(
            summary.next().unwrap(),
            "-                         1        1        0       0       0      1"
        );
        let user_summary = text.split("Per user:\n").nth(1).unwrap();
        assert!(
            user_summary.lines().nth(1).unwrap().starts_with("alice  "),
            "{text}"
        );
    }

    #[test]
    fn an_empty_table_says_so() {
        let mut out = Vec::new();
        Report::new(false)
            .write_table(&mut out, &Stats::default())
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("No deletions of Fleet-managed objects found.\n"));
    }

    #[test]
    fn json_rows_have_a_fixed_shape() {
        let d = deletion(
            "2024-05-01T10:00:00.123Z",
            "alice",
            "fleet-local/lots",
            200,
            Outcome::Succeeded,
        );
        let mut out = Vec::new();
        JsonRow::new(&d).write_line(&mut out).unwrap();
        assert!(out.ends_with(b"}\n"));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["time"], "2024-05-01T10:00:00.123Z");
        assert_eq!(v["verb"], "delete");
        assert_eq!(v["result"], "succeeded");
        assert_eq!(v["recognisedBy"], "webhook");
        assert!(v["impersonatedUser"].is_null() && v["items"].is_null());
        assert_eq!(v.as_object().unwrap().len(), 29);
    }

    #[test]
    fn long_cells_are_cut_with_an_ellipsis() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abcd", 4), "abcd");
    }

    #[test]
    fn stats_read_as_sentences() {
        let mut stats = Stats {
            inputs: 2,
            events: 10,
            deletions: 3,
            fleet_deletions: 2,
            printed: 1,
            filtered_out: 1,
            other_stage: 4,
            ..Stats::default()
        };
        for line in 1..=5 {
            stats.malformed("a.log", line, "expected value");
        }
        assert_eq!(
            stats.counts_line(true),
            "1 deletion shown; read 10 audit events from 2 inputs: 3 deletions, 2 of \
             Fleet-managed objects (1 outside the filters); 4 RequestReceived/ResponseStarted \
             events skipped; 5 malformed lines skipped"
        );
        assert!(!stats.counts_line(false).contains("malformed"));
        stats.duplicates = 2;
        stats.skipped("GKE entry for a non-resource URL, e.g. /readyz");
        stats.skipped("GKE entry for a non-resource URL, e.g. /readyz");
        assert!(
            stats.counts_line(false).ends_with(
                "; 2 deletions read again under the same auditID skipped; 2 entries skipped \
                 (GKE entry for a non-resource URL, e.g. /readyz)"
            ),
            "{}",
            stats.counts_line(false)
        );
        assert_eq!(
            stats.malformed_summary().unwrap(),
            "5 malformed lines skipped (first: a.log:1: expected value; a.log:2: expected \
             value; a.log:3: expected value)"
        );
    }
}
