//! `fleet-delete-guard audit`: who deleted Fleet-managed objects, from audit logs.
//!
//! Reads kube-apiserver audit logs (`audit.k8s.io/v1` `Event`s, one JSON object a
//! line, as the log backend writes them), plain or gzip-compressed (rotated files,
//! also several gzip members one after the other), from files or standard input, and
//! prints one row per deletion (`delete` or `deletecollection`) of a Fleet-managed
//! object.
//!
//! # What counts as a deletion of a Fleet-managed object
//! - The event carries this webhook's audit annotations: kube-apiserver stores each
//!   key of the webhook's `auditAnnotations` as `<webhook-name>/<key>`. Keys under
//!   `--webhook-name` are used when present; otherwise the first prefix whose
//!   `<prefix>/decision` holds one of the webhook's decisions is used, so a webhook
//!   registered under another name is still recognised (`authorization.k8s.io/decision`
//!   holds `allow`/`forbid` and never matches). Decisions the webhook takes for objects
//!   that are not Fleet's (`not-delete`, `no-object`, `not-managed`) do not count.
//! - Or Fleet's label `objectset.rio.cattle.io/hash` / annotation
//!   `objectset.rio.cattle.io/id` appear in `requestObject` or `responseObject`: at
//!   level `RequestResponse` kube-apiserver records the deleted object for resources
//!   that return it (custom resources, objects with finalizers or a grace period such
//!   as Pods and Namespaces), and the list of deleted items for a `deletecollection`.
//!   A plain `delete` of a ConfigMap returns a `Status`, so there only the webhook's
//!   annotations tell.
//!
//! Only the final stages `ResponseComplete` and `Panic` are read: `RequestReceived`
//! and `ResponseStarted` events describe the same request again and are counted as
//! skipped, never as deletions.
//!
//! # Representation
//! - A `deletecollection` is one audit event for the whole collection, so it is one
//!   row, with the name `*` in the table and `""` in JSON (`"verb":"deletecollection"`).
//!   The webhook is called once per item and kube-apiserver keeps, per annotation key,
//!   the first value an item set, so GitRepo, bundle and decision describe the first
//!   annotated item. At `RequestResponse` level the JSON `items` field counts the
//!   deleted items and how many of them carried Fleet's labels.
//! - A namespace deletion is the `delete` of the Namespace (a row when the webhook
//!   annotated it or the Namespace carries Fleet's labels) followed by one
//!   `deletecollection` per resource by
//!   `system:serviceaccount:kube-system:namespace-controller`.
//! - Dry-run: `dryRun` in the `DeleteOptions` body (`requestObject`, levels Request and
//!   up), the `dryRun` query parameter of `requestURI`, or the webhook's `reason`
//!   annotation, which says "dry run" (the only trace at Metadata level).
//! - Result: `responseStatus.code` with a word: succeeded (2xx), denied (403; the
//!   webhook's denial or another admission's), forbidden (403 by RBAC:
//!   `authorization.k8s.io/decision: forbid`), not found (404), conflict (409),
//!   failed (anything else), panic (stage `Panic`).
//!
//! # Changes to the guard itself
//! Deletions, updates, patches and creations of the webhook's own
//! ValidatingWebhookConfiguration, Deployment (`/scale` included), Service and
//! certificate Secrets (`--guard-*`) are rows of their own, printed before the
//! deletions ([`guard`]): who took the guard out of the API path, and when.
//!
//! # Memory
//! The input is read line by line into one reused buffer (lines longer than 64 MiB are
//! counted as malformed and skipped without being held). Only events whose `verb` is a
//! deletion are deserialized beyond `kind`/`stage`/`verb`, and then into views that
//! keep Fleet's four label/annotation keys and skip the rest of `requestObject` and
//! `responseObject` without building them. Rows are sorted by time, so the rows to
//! print are held until the end, packed into 72 bytes each (strings interned once,
//! strings that travel together interned as one tuple, UUID audit IDs as 128 bits),
//! and sorted through a 4-byte index. Only Fleet-managed deletions are kept, a small
//! part of any real log; see BENCHMARKS.md for both a realistic log and one where
//! every event is such a deletion. `--output json --unsorted` holds nothing: it
//! prints each row as it is read, in input order (audit logs are written in order
//! of completion, so this is nearly, not exactly, time order).
//!
//! # Exit status
//! Non-zero only for unusable arguments (clap's usage errors, exit 2) or input that
//! cannot be read (missing file, corrupt gzip: exit 1). Malformed lines are counted and
//! reported on standard error at the end, never fatal.

mod event;
mod guard;
mod input;
mod provider;
mod report;
mod timespec;

use std::{
    io::{self, Write},
    path::PathBuf,
};

use jiff::Timestamp;

use self::{
    event::{Deletion, Parsed},
    input::{LineReader, ReadLine},
    report::{JsonRow, Report, Stats},
};

/// The name the webhook is registered under in the ValidatingWebhookConfiguration.
pub const DEFAULT_WEBHOOK_NAME: &str = "delete-guard.fleet.cattle.io";

/// Lines longer than this are counted as malformed and skipped without being held.
const MAX_LINE_BYTES: usize = 64 << 20;

/// Some editors and Windows tools start a text file with it.
const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// How rows are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Columns aligned for a terminal, then a summary per GitRepo and per user.
    Table,
    /// One JSON object a line, for tools; the counts go to standard error.
    Json,
}

/// Arguments of `fleet-delete-guard audit`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "TIME is RFC 3339 (2024-05-01T12:00:00Z, 2024-05-01T14:00:00+02:00) or a \
                  duration before now: 30s, 15m, 2h, 7d, 1w, 1h30m."
)]
pub struct AuditArgs {
    /// Audit log files (plain or gzip, detected by content); standard input when none
    /// or for `-`.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// `table` (aligned, with summaries) or `json` (one object a line).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Only deletions requested at or after TIME.
    #[arg(long, value_name = "TIME", value_parser = timespec::parse_time_arg)]
    pub since: Option<Timestamp>,

    /// Only deletions requested before TIME.
    #[arg(long, value_name = "TIME", value_parser = timespec::parse_time_arg)]
    pub until: Option<Timestamp>,

    /// Only objects of this GitRepo (repeatable). Unresolved owners are named
    /// `objectset:<setID>` and can be given so too.
    #[arg(long, value_name = "NS/NAME", value_parser = parse_gitrepo)]
    pub gitrepo: Vec<String>,

    /// Only deletions by this user, real or impersonated (repeatable; a trailing `*`
    /// matches a prefix, e.g. `system:serviceaccount:cattle-fleet-system:*`).
    #[arg(long, value_name = "USER")]
    pub user: Vec<String>,

    /// Name of the webhook in the ValidatingWebhookConfiguration: its audit annotations
    /// are `<name>/<key>`. Other prefixes are matched by their `/decision` key.
    #[arg(
        long,
        value_name = "NAME",
        env = "FLEET_DELETE_GUARD_WEBHOOK_NAME",
        default_value = DEFAULT_WEBHOOK_NAME
    )]
    pub webhook_name: String,

    /// With `--output json`: print rows as they are read, in input order, holding
    /// nothing in memory (rows are otherwise sorted by time).
    #[arg(long)]
    pub unsorted: bool,

    // --- changes to the guard itself (guard.rs) ---
    /// The webhook's namespace: changes to its Deployment, Service and certificate
    /// Secrets there are reported as rows of their own.
    #[arg(long, value_name = "NAMESPACE", default_value = "cattle-fleet-system")]
    pub guard_namespace: String,

    /// Name of the webhook's ValidatingWebhookConfiguration, Deployment and Service.
    #[arg(long, value_name = "NAME", default_value = "fleet-delete-guard")]
    pub guard_name: String,

    /// Names of the webhook's certificate Secrets (repeatable).
    #[arg(long = "guard-secret", value_name = "NAME", value_delimiter = ',',
          default_values = ["fleet-delete-guard-tls", "fleet-delete-guard-serving-cert"])]
    pub guard_secrets: Vec<String>,
}

fn parse_gitrepo(s: &str) -> Result<String, String> {
    let valid = match s.split_once('/') {
        Some((ns, name)) => !ns.is_empty() && !name.is_empty() && !name.contains('/'),
        None => s.starts_with("objectset:") && s.len() > "objectset:".len(),
    };
    if valid {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not NAMESPACE/NAME (or objectset:<setID>)"
        ))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Arguments that cannot work together.
    #[error("{0}")]
    Usage(String),
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path}: corrupt gzip data: {source}")]
    Gzip { path: String, source: io::Error },
    #[error("cannot write the report: {0}")]
    Write(io::Error),
}

/// Which deletions are printed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    gitrepos: Vec<String>,
    users: Vec<String>,
}

impl Filter {
    fn from_args(args: &AuditArgs) -> Self {
        Filter {
            since: args.since,
            until: args.until,
            gitrepos: args.gitrepo.clone(),
            users: args.user.clone(),
        }
    }

    pub(crate) fn keeps(&self, d: &Deletion) -> bool {
        if self.since.is_some_and(|since| d.time < since)
            || self.until.is_some_and(|until| d.time >= until)
        {
            return false;
        }
        if !self.gitrepos.is_empty() {
            let owner = d.owner_key();
            if !self.gitrepos.iter().any(|g| *g == owner || *g == d.gitrepo) {
                return false;
            }
        }
        if !self.users.is_empty() {
            let matches = |pattern: &str| {
                let user_matches = |user: &str| match pattern.strip_suffix('*') {
                    Some(prefix) => user.starts_with(prefix),
                    None => user == pattern,
                };
                user_matches(&d.user) || d.impersonated_user.as_deref().is_some_and(user_matches)
            };
            if !self.users.iter().any(|p| matches(p)) {
                return false;
            }
        }
        true
    }
}

/// Run the audit report.
pub fn run(args: AuditArgs) -> Result<(), AuditError> {
    if args.unsorted && args.output != OutputFormat::Json {
        return Err(AuditError::Usage(
            "--unsorted needs --output json: a table is aligned over all its rows".into(),
        ));
    }
    if let (Some(since), Some(until)) = (args.since, args.until) {
        if since >= until {
            return Err(AuditError::Usage(format!(
                "--since {since} is not before --until {until}"
            )));
        }
    }
    let sources = input::check_sources(&args.files)?;
    let filter = Filter::from_args(&args);
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 << 10, stdout.lock());
    let result = report_to(&args, &sources, &filter, &mut out);
    let result = result.and_then(|stats| {
        out.flush().map_err(AuditError::Write)?;
        Ok(stats)
    });
    match result {
        Ok(stats) => {
            if args.output == OutputFormat::Json {
                eprintln!("fleet-delete-guard audit: {}", stats.counts_line(false));
            }
            if let Some(line) = stats.malformed_summary() {
                eprintln!("fleet-delete-guard audit: {line}");
            }
            Ok(())
        }
        // `audit … | head`: the reader has seen enough.
        Err(AuditError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e),
    }
}

/// Read every source and print the report to `out`.
fn report_to(
    args: &AuditArgs,
    sources: &[input::Source],
    filter: &Filter,
    out: &mut impl Write,
) -> Result<Stats, AuditError> {
    let mut report = Report::new(args.output == OutputFormat::Json);
    let mut stats = Stats::default();
    let guard_objects =
        guard::GuardObjects::new(&args.guard_namespace, &args.guard_name, &args.guard_secrets);
    let mut guard_rows: Vec<guard::GuardChange> = Vec::new();
    let mut reader = LineReader::new(MAX_LINE_BYTES);
    for source in sources {
        stats.inputs += 1;
        let mut lines = source.open()?;
        let mut line_no: u64 = 0;
        loop {
            let line = match reader.next(lines.reader.as_mut()) {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(e) => return Err(lines.read_error(e)),
            };
            line_no += 1;
            let bytes = match line {
                ReadLine::Line(bytes) => {
                    let bytes = bytes.trim_ascii();
                    bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes)
                }
                ReadLine::TooLong(len) => {
                    stats.malformed(
                        &source.name,
                        line_no,
                        &format!("line of {len} bytes is longer than {MAX_LINE_BYTES}"),
                    );
                    continue;
                }
            };
            if bytes.is_empty() {
                continue;
            }
            if let Some(change) = guard::parse(bytes, &guard_objects) {
                stats.events += 1;
                keep_guard_row(change, args, &mut guard_rows, out)?;
                continue;
            }
            match event::parse_line(bytes, &args.webhook_name) {
                Ok(parsed) => count(parsed, args, filter, &mut stats, &mut report, out)?,
                // Not a plain audit event: maybe a managed cluster's export of some.
                Err(plain_error) => match provider::unwrap(bytes) {
                    provider::Unwrapped::NotWrapped => {
                        stats.malformed(&source.name, line_no, &plain_error)
                    }
                    provider::Unwrapped::Events(records) => {
                        let several = records.len() > 1;
                        for (i, record) in records.into_iter().enumerate() {
                            if let Some(reason) = record.skipped {
                                stats.skipped(reason);
                                continue;
                            }
                            let guard_change = record
                                .event
                                .as_ref()
                                .ok()
                                .and_then(|e| guard::parse(e, &guard_objects));
                            if let Some(change) = guard_change {
                                stats.events += 1;
                                keep_guard_row(change, args, &mut guard_rows, out)?;
                                continue;
                            }
                            let parsed = record
                                .event
                                .and_then(|e| event::parse_line(&e, &args.webhook_name));
                            match parsed {
                                Ok(parsed) => {
                                    count(parsed, args, filter, &mut stats, &mut report, out)?
                                }
                                Err(e) => {
                                    let at = if several {
                                        format!("record {} ({})", i + 1, record.from)
                                    } else {
                                        record.from.to_string()
                                    };
                                    stats.malformed(&source.name, line_no, &format!("{at}: {e}"))
                                }
                            }
                        }
                    }
                },
            }
        }
    }
    if !args.unsorted {
        match args.output {
            OutputFormat::Table => guard::write_table(&mut guard_rows, &mut *out)
                .and_then(|()| report.write_table(&mut *out, &stats)),
            OutputFormat::Json => {
                guard_rows.sort_by_key(|c| c.time);
                guard_rows
                    .iter()
                    .try_for_each(|c| guard::write_json_line(c, &mut *out))
                    .and_then(|()| report.write_json(&mut *out))
            }
        }
        .map_err(AuditError::Write)?;
    }
    Ok(stats)
}

/// Keep (or, unsorted, print) a change to the guard itself that the filters keep.
fn keep_guard_row(
    change: guard::GuardChange,
    args: &AuditArgs,
    rows: &mut Vec<guard::GuardChange>,
    out: &mut impl Write,
) -> Result<(), AuditError> {
    if !guard::keeps(&change, args.since, args.until, &args.user) {
        return Ok(());
    }
    if args.unsorted {
        guard::write_json_line(&change, &mut *out).map_err(AuditError::Write)
    } else {
        rows.push(change);
        Ok(())
    }
}

/// Count one parsed event, and print or keep its row.
fn count(
    parsed: Parsed,
    args: &AuditArgs,
    filter: &Filter,
    stats: &mut Stats,
    report: &mut Report,
    out: &mut impl Write,
) -> Result<(), AuditError> {
    match parsed {
        Parsed::OtherStage => {
            stats.events += 1;
            stats.other_stage += 1;
        }
        Parsed::NotDeletion => stats.events += 1,
        Parsed::NotFleet => {
            stats.events += 1;
            stats.deletions += 1;
        }
        Parsed::Deletion(d) => {
            stats.events += 1;
            // Overlapping inputs (rotated files, concatenated or re-downloaded exports)
            // repeat events: each auditID is reported once.
            if !d.audit_id.is_empty() && !report.first_sight(&d.audit_id) {
                stats.duplicates += 1;
                return Ok(());
            }
            stats.deletions += 1;
            stats.fleet_deletions += 1;
            if !filter.keeps(&d) {
                stats.filtered_out += 1;
            } else if args.unsorted {
                stats.printed += 1;
                JsonRow::new(&d)
                    .write_line(&mut *out)
                    .map_err(AuditError::Write)?;
            } else {
                stats.printed += 1;
                report.push(&d);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deletion(user: &str, impersonated: Option<&str>, gitrepo: &str, owner: &str) -> Deletion {
        Deletion {
            time: "2024-05-01T10:00:00Z".parse().unwrap(),
            user: user.into(),
            impersonated_user: impersonated.map(String::from),
            gitrepo: gitrepo.into(),
            owner: owner.into(),
            ..Deletion::default()
        }
    }

    #[test]
    fn time_filters_keep_since_inclusive_until_exclusive() {
        let d = deletion("alice", None, "", "");
        let at = |s: &str| Some(s.parse::<Timestamp>().unwrap());
        let filter = |since, until| Filter {
            since,
            until,
            ..Filter::default()
        };
        assert!(filter(at("2024-05-01T10:00:00Z"), None).keeps(&d));
        assert!(!filter(at("2024-05-01T10:00:01Z"), None).keeps(&d));
        assert!(!filter(None, at("2024-05-01T10:00:00Z")).keeps(&d));
        assert!(filter(None, at("2024-05-01T10:00:01Z")).keeps(&d));
    }

    #[test]
    fn user_filter_matches_real_or_impersonated_user_and_prefixes() {
        let helm = deletion(
            "system:serviceaccount:cattle-fleet-system:fleet-agent",
            Some("system:serviceaccount:cattle-fleet-system:fleet-default"),
            "",
            "",
        );
        let users = |u: &[&str]| Filter {
            users: u.iter().map(|s| s.to_string()).collect(),
            ..Filter::default()
        };
        assert!(users(&["system:serviceaccount:cattle-fleet-system:fleet-default"]).keeps(&helm));
        assert!(users(&["system:serviceaccount:cattle-fleet-system:fleet-agent"]).keeps(&helm));
        assert!(users(&["system:serviceaccount:cattle-fleet-system:*"]).keeps(&helm));
        assert!(users(&["alice", "system:serviceaccount:*"]).keeps(&helm));
        assert!(!users(&["alice"]).keeps(&helm));
        assert!(!users(&["system:serviceaccount:cattle-fleet"]).keeps(&helm));
    }

    #[test]
    fn gitrepo_filter_matches_the_gitrepo_or_the_unresolved_owner() {
        let repos = |r: &[&str]| Filter {
            gitrepos: r.iter().map(|s| s.to_string()).collect(),
            ..Filter::default()
        };
        let resolved = deletion("a", None, "fleet-local/lots", "fleet-local/lots");
        let unresolved = deletion("a", None, "", "objectset:default-lots-config2");
        assert!(repos(&["fleet-local/lots"]).keeps(&resolved));
        assert!(!repos(&["fleet-local/lots"]).keeps(&unresolved));
        assert!(repos(&["objectset:default-lots-config2"]).keeps(&unresolved));
        assert!(!repos(&["fleet-default/lots"]).keeps(&resolved));
    }

    #[test]
    fn gitrepo_arguments_are_checked() {
        assert!(parse_gitrepo("fleet-local/lots").is_ok());
        assert!(parse_gitrepo("objectset:default-lots-config2").is_ok());
        for bad in ["lots", "/lots", "fleet-local/", "a/b/c", "objectset:"] {
            assert!(parse_gitrepo(bad).is_err(), "{bad}");
        }
    }
}
