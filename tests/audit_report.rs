//! `fleet-delete-guard audit` run as a binary on audit logs built from the
//! audit.k8s.io/v1 schema (see `fixtures/audit/events.rs`), from files and stdin.

#[path = "fixtures/audit/events.rs"]
mod events;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use events::*;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_fleet-delete-guard");
const HASH2: &str = "37517d22b0ca4dbc462436d47410a3bdfce3c6f9";
const HASH_ONE: &str = "ec4b361339aee0ed3797931ec95840485448986c";

/// A morning on a cluster: Fleet-managed deletions of every kind, out of time order
/// (rotated files, slow requests), among unrelated events, stage duplicates and
/// malformed lines.
fn cluster_log() -> Vec<String> {
    let lots = Some("fleet-local/lots");
    let warned = Ev::delete(
        "e-warned",
        "alice",
        "configmaps",
        "default",
        "test-config2-one",
    )
    .at("2024-05-01T10:00:00Z")
    .webhook(
        HOOK,
        "warned",
        lots,
        Some("lots-config2"),
        "default-lots-config2",
    );
    vec![
        // RequestReceived of the warned deletion: must not be counted twice.
        warned.clone().stage("RequestReceived").line(),
        // Unrelated traffic.
        Ev::new(
            "u-get",
            "get",
            "alice",
            "configmaps",
            "default",
            "test-config2-one",
        )
        .at("2024-05-01T09:59:00Z")
        .line(),
        Ev::new(
            "u-list",
            "list",
            "system:serviceaccount:kube-system:replicaset-controller",
            "pods",
            "apps",
            "",
        )
        .at("2024-05-01T09:59:30Z")
        .line(),
        Ev::new(
            "u-update",
            "update",
            "alice",
            "deployments.apps",
            "apps",
            "web",
        )
        .at("2024-05-01T09:59:40Z")
        .level("RequestResponse")
        .response_object(plain_object("Deployment", "apps", "web"))
        .line(),
        // A deletion of an object that is not Fleet's: at RequestResponse the Status
        // says nothing, and the webhook took its fast path (no annotations).
        Ev::delete("u-delete", "alice", "configmaps", "default", "scratch")
            .at("2024-05-01T10:05:00Z")
            .level("RequestResponse")
            .response_object(json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Success", "details": {"name": "scratch", "kind": "configmaps"}}))
            .line(),
        // RBAC refused before admission: nothing says it is Fleet's.
        Ev::delete(
            "u-forbidden",
            "eve",
            "configmaps",
            "default",
            "test-config2-one",
        )
        .at("2024-05-01T10:06:00Z")
        .forbidden()
        .line(),
        warned.line(),
        // Denied by the webhook, Request level; earlier than the line above.
        Ev::delete(
            "e-denied",
            "bob",
            "configmaps",
            "default",
            "test-config1-one",
        )
        .at("2024-05-01T09:30:00Z")
        .level("Request")
        .webhook(
            HOOK,
            "denied",
            lots,
            Some("lots-config1"),
            "default-lots-config1",
        )
        .denied_by(HOOK)
        .code(403)
        .line(),
        "this is not JSON at all".to_string(),
        // A dry run (Request level: dryRun in the DeleteOptions body).
        Ev::delete(
            "e-dry-run",
            "carol",
            "configmaps",
            "default",
            "test-config2-two",
        )
        .at("2024-05-01T10:30:00Z")
        .webhook(
            HOOK,
            "warned",
            lots,
            Some("lots-config2"),
            "default-lots-config2",
        )
        .level("Request")
        .dry_run()
        .line(),
        // Namespace deletion: the Namespace itself (Fleet deployed it)…
        Ev::delete(
            "e-namespace",
            "alice",
            "namespaces",
            "lots-apps",
            "lots-apps",
        )
        .at("2024-05-01T11:00:00Z")
        .level("RequestResponse")
        .webhook(
            HOOK,
            "warned",
            lots,
            Some("lots-config2"),
            "default-lots-config2",
        )
        .response_object({
            let mut ns = fleet_object("Namespace", "", "lots-apps", "default-lots-config2", HASH2);
            ns["metadata"].as_object_mut().unwrap().remove("namespace");
            ns["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:00:00Z");
            ns["spec"] = json!({"finalizers": ["kubernetes"]});
            ns["status"] = json!({"phase": "Terminating"});
            ns
        })
        .line(),
        // …then the namespace controller empties it, one deletecollection a resource.
        Ev::delete_collection(
            "e-collection",
            NAMESPACE_CONTROLLER,
            "configmaps",
            "lots-apps",
        )
        .at("2024-05-01T11:00:05Z")
        .level("RequestResponse")
        .webhook(
            HOOK,
            "controller",
            lots,
            Some("lots-config2"),
            "default-lots-config2",
        )
        .response_object(json!({"kind": "ConfigMapList", "apiVersion": "v1",
        "metadata": {"resourceVersion": "48300"},
        "items": [
            fleet_object("ConfigMap", "lots-apps", "a", "default-lots-config2", HASH2),
            plain_object("ConfigMap", "lots-apps", "kube-root-ca.crt"),
            fleet_object("ConfigMap", "lots-apps", "b", "default-lots-config2", HASH2),
        ]}))
        .line(),
        // The namespace controller's deletecollection of a resource with nothing of Fleet's.
        Ev::delete_collection("u-collection", NAMESPACE_CONTROLLER, "secrets", "lots-apps")
            .at("2024-05-01T11:00:06Z")
            .level("RequestResponse")
            .response_object(
                json!({"kind": "SecretList", "apiVersion": "v1", "metadata": {},
                "items": [plain_object("Secret", "lots-apps", "token")]}),
            )
            .line(),
        String::new(),
        // Fleet's own prune: Helm in the agent impersonates fleet-default.
        Ev::delete(
            "e-fleet",
            FLEET_AGENT,
            "configmaps",
            "default",
            "old-config",
        )
        .at("2024-05-01T08:00:00Z")
        .impersonating(
            FLEET_DEFAULT,
            &[
                "system:serviceaccounts",
                "system:serviceaccounts:cattle-fleet-system",
                "system:authenticated",
            ],
        )
        .webhook(
            HOOK,
            "fleet",
            lots,
            Some("lots-config2"),
            "default-lots-config2",
        )
        .line(),
        r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"trunc"#
            .to_string(),
        // Before the webhook was installed: only the labels of the deleted Pod tell.
        Ev::delete("e-labels", "dave", "pods", "default", "web-0")
            .at("2024-05-01T07:00:00Z")
            .level("RequestResponse")
            .response_object(fleet_object(
                "Pod",
                "default",
                "web-0",
                "default-lots-config-one",
                HASH_ONE,
            ))
            .line(),
    ]
}

const SORTED_IDS: [&str; 7] = [
    "e-labels",
    "e-fleet",
    "e-denied",
    "e-warned",
    "e-dry-run",
    "e-namespace",
    "e-collection",
];

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("audit").args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the binary runs");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_string();
        std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn json_rows(o: &Output) -> Vec<Value> {
    assert!(o.status.success(), "{}", stderr(o));
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a JSON object"))
        .collect()
}

fn ids(rows: &[Value]) -> Vec<&str> {
    rows.iter()
        .map(|r| r["auditID"].as_str().unwrap())
        .collect()
}

fn log_file(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    write_plain(&path, lines);
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn json_rows_are_the_fleet_deletions_sorted_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_file(dir.path(), "audit.log", &cluster_log());
    let out = run(&["--output", "json", s(&log)], None);
    let rows = json_rows(&out);
    assert_eq!(ids(&rows), SORTED_IDS);
    let row = |id: &str| rows.iter().find(|r| r["auditID"] == id).unwrap();

    let warned = row("e-warned");
    // stageTimestamp (the request completed 12 ms after it was received).
    assert_eq!(warned["time"], "2024-05-01T10:00:00.012Z");
    assert_eq!(warned["user"], "alice");
    assert_eq!(warned["groups"], json!(["devs", "system:authenticated"]));
    assert_eq!(warned["userAgent"], KUBECTL);
    assert_eq!(warned["resource"], "configmaps");
    assert_eq!(
        (&warned["namespace"], &warned["name"]),
        (&json!("default"), &json!("test-config2-one"))
    );
    assert_eq!(warned["gitrepo"], "fleet-local/lots");
    assert_eq!(warned["bundle"], "lots-config2");
    assert_eq!(warned["objectsetID"], "default-lots-config2");
    assert_eq!(warned["decision"], "warned");
    assert_eq!(warned["counted"], true);
    assert_eq!(
        (&warned["dryRun"], &warned["code"], &warned["result"]),
        (&json!(false), &json!(200), &json!("succeeded"))
    );
    assert_eq!(warned["recognisedBy"], "webhook");

    let denied = row("e-denied");
    assert_eq!(
        (&denied["code"], &denied["result"]),
        (&json!(403), &json!("denied"))
    );
    assert_eq!(denied["deniedBy"], HOOK);
    assert_eq!(denied["decision"], "denied");

    let dry = row("e-dry-run");
    assert_eq!(dry["dryRun"], true);

    let ns = row("e-namespace");
    assert_eq!(
        (&ns["resource"], &ns["name"]),
        (&json!("namespaces"), &json!("lots-apps"))
    );
    assert_eq!(ns["recognisedBy"], "webhook+labels");
    assert_eq!(ns["helmRelease"], "default/lots-config2");

    let collection = row("e-collection");
    assert_eq!(collection["verb"], "deletecollection");
    assert_eq!(collection["name"], "");
    assert_eq!(collection["user"], NAMESPACE_CONTROLLER);
    assert_eq!(collection["decision"], "controller");
    assert_eq!(
        collection["items"],
        json!({"deleted": 3, "fleetManaged": 2})
    );

    let fleet = row("e-fleet");
    assert_eq!(fleet["user"], FLEET_AGENT);
    assert_eq!(fleet["impersonatedUser"], FLEET_DEFAULT);
    assert_eq!(fleet["decision"], "fleet");

    let labels = row("e-labels");
    assert_eq!(labels["recognisedBy"], "labels");
    assert_eq!(labels["owner"], "objectset:default-lots-config-one");
    assert!(labels["gitrepo"].is_null() && labels["decision"].is_null());

    let err = stderr(&out);
    assert!(
        err.contains("7 deletions shown; read 14 audit events from 1 input: 10 deletions, 7 of Fleet-managed objects; 1 RequestReceived/ResponseStarted event skipped"),
        "{err}"
    );
    assert!(err.contains("2 malformed lines skipped (first: "), "{err}");
    assert!(err.contains("audit.log:9: "), "{err}");
    assert!(err.contains("audit.log:16: "), "{err}");
}

#[test]
fn the_table_is_aligned_and_ends_with_summaries_per_gitrepo_and_user() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_file(dir.path(), "audit.log", &cluster_log());
    let out = run(&[s(&log)], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let header = lines[0];
    for column in [
        "TIME", "USER", "GROUPS", "AGENT", "RESOURCE", "OBJECT", "GITREPO", "BUNDLE", "DECISION",
        "DRY-RUN", "RESULT",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let rows = &lines[1..8];
    // Columns are aligned in characters (a cut cell ends with the 3-byte '…').
    let col = |name: &str| header.find(name).unwrap();
    let cell = |line: &str, name: &str| {
        let rest: String = line.chars().skip(col(name)).collect();
        rest.split("  ").next().unwrap().trim().to_string()
    };
    let objects: Vec<String> = rows.iter().map(|l| cell(l, "OBJECT")).collect();
    assert_eq!(
        objects,
        [
            "default/web-0",
            "default/old-config",
            "default/test-config1-one",
            "default/test-config2-one",
            "default/test-config2-two",
            "lots-apps",
            "lots-apps/*",
        ]
    );
    assert_eq!(cell(rows[2], "RESULT"), "403 denied");
    assert_eq!(cell(rows[4], "DRY-RUN"), "yes");
    assert_eq!(cell(rows[3], "DRY-RUN"), "no");
    assert_eq!(
        cell(rows[0], "GITREPO"),
        "objectset:default-lots-config-one"
    );
    assert_eq!(cell(rows[0], "DECISION"), "-");
    assert_eq!(cell(rows[3], "AGENT"), "kubectl/v1.30.1");
    assert_eq!(cell(rows[3], "TIME"), "2024-05-01T10:00:00Z");
    assert_eq!(cell(rows[6], "RESOURCE"), "configmaps");
    assert!(
        rows[1].contains(&format!("{FLEET_DEFAULT} (via {FLEET_AGENT})")),
        "{text}"
    );
    assert_eq!(lines[8], "");

    let gitrepos = text.split("Per GitRepo:\n").nth(1).unwrap();
    let gitrepos: Vec<&str> = gitrepos.lines().take(3).collect();
    // Keys left-aligned, counts right-aligned under their headers.
    let w = "objectset:default-lots-config-one".len();
    let line = |cells: [&str; 7]| {
        format!(
            "{:<w$}  {:>9}  {:>7}  {:>7}  {:>6}  {:>6}  {:>5}",
            cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6]
        )
    };
    assert_eq!(
        gitrepos,
        [
            line([
                "GITREPO",
                "DELETIONS",
                "DELETED",
                "DRY-RUN",
                "DENIED",
                "FAILED",
                "USERS"
            ]),
            line(["fleet-local/lots", "6", "4", "1", "1", "0", "5"]),
            line([
                "objectset:default-lots-config-one",
                "1",
                "1",
                "0",
                "0",
                "0",
                "1"
            ]),
        ]
    );
    let users = text.split("Per user:\n").nth(1).unwrap();
    let alice = users.lines().find(|l| l.starts_with("alice ")).unwrap();
    let alice: Vec<&str> = alice.split_whitespace().collect();
    assert_eq!(alice, ["alice", "2", "2", "0", "0", "0", "1"]);
    assert!(
        text.trim_end().ends_with("2 malformed lines skipped."),
        "{text}"
    );
    assert!(stderr(&out).contains("2 malformed lines skipped (first: "));
}

#[test]
fn standard_input_is_read_when_no_file_is_given_or_for_dash() {
    let input = events::text(&cluster_log());
    // A byte-order mark before the first line is not a malformed line.
    let with_bom = format!("\u{feff}{input}");
    let out = run(&["-o", "json"], Some(&with_bom));
    assert_eq!(ids(&json_rows(&out)), SORTED_IDS);
    assert!(
        stderr(&out).contains("audit: 2 malformed lines skipped (first: <stdin>:9: "),
        "{}",
        stderr(&out)
    );

    let dir = tempfile::tempdir().unwrap();
    let extra = log_file(
        dir.path(),
        "extra.log",
        &[Ev::delete("e-extra", "alice", "configmaps", "default", "x")
            .at("2024-05-01T06:00:00Z")
            .webhook(
                HOOK,
                "allowed",
                Some("fleet-local/lots"),
                None,
                "default-lots-config2",
            )
            .line()],
    );
    let both = run(&["-o", "json", s(&extra), "-"], Some(&input));
    let both = json_rows(&both);
    assert_eq!(ids(&both)[0], "e-extra");
    assert_eq!(both.len(), 8);
}

#[test]
fn gzip_rotated_files_and_plain_files_are_read_together() {
    let dir = tempfile::tempdir().unwrap();
    let log = cluster_log();
    let (older, newer) = log.split_at(8);
    let (first, second) = older.split_at(3);
    // Rotated and compressed, two gzip members; named without .gz on purpose.
    let rotated = dir.path().join("audit-2024-05-01T09-00-00.000.log.1");
    write_gzip(&rotated, &[first, second]);
    let current = log_file(dir.path(), "audit.log", newer);
    let out = run(&["-o", "json", s(&rotated), s(&current)], None);
    assert_eq!(ids(&json_rows(&out)), SORTED_IDS);
    assert!(stderr(&out).contains("from 2 inputs"), "{}", stderr(&out));

    // Gzip on standard input too.
    let bytes = std::fs::read(&rotated).unwrap();
    let mut child = Command::new(BIN)
        .args(["audit", "-o", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(ids(&json_rows(&out)), ["e-denied", "e-warned"]);
}

#[test]
fn filters_select_by_time_gitrepo_and_user() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_file(dir.path(), "audit.log", &cluster_log());
    let ids_for = |args: &[&str]| {
        let mut all = vec!["-o", "json", s(&log)];
        all.extend_from_slice(args);
        ids(&json_rows(&run(&all, None)))
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids_for(&[
            "--since",
            "2024-05-01T10:00:00Z",
            "--until",
            "2024-05-01T11:00:00Z"
        ]),
        ["e-warned", "e-dry-run"]
    );
    assert_eq!(
        ids_for(&["--until", "2024-05-01T10:00:00+02:00"]),
        ["e-labels"]
    );
    assert_eq!(
        ids_for(&["--gitrepo", "objectset:default-lots-config-one"]),
        ["e-labels"]
    );
    assert_eq!(ids_for(&["--gitrepo", "fleet-local/lots"]).len(), 6);
    assert!(ids_for(&["--gitrepo", "fleet-default/other"]).is_empty());
    assert_eq!(
        ids_for(&["--user", "bob", "--user", "carol"]),
        ["e-denied", "e-dry-run"]
    );
    assert_eq!(
        ids_for(&["--user", "system:serviceaccount:*"]),
        ["e-fleet", "e-collection"]
    );
    assert_eq!(ids_for(&["--user", FLEET_DEFAULT]), ["e-fleet"]);
    let out = run(&["-o", "json", s(&log), "--user", "alice"], None);
    assert!(
        stderr(&out).contains("(5 outside the filters)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn relative_times_count_back_from_now() {
    let now = jiff::Timestamp::now();
    let ago = |mins: i64| (now - jiff::SignedDuration::from_mins(mins)).to_string();
    let at = |id: &str, mins| {
        Ev::delete(id, "alice", "configmaps", "default", id)
            .at(&ago(mins))
            .webhook(
                HOOK,
                "warned",
                Some("fleet-local/lots"),
                None,
                "default-lots-config2",
            )
            .line()
    };
    let dir = tempfile::tempdir().unwrap();
    let log = log_file(
        dir.path(),
        "audit.log",
        &[
            at("three-days", 3 * 24 * 60),
            at("three-hours", 180),
            at("half-hour", 30),
        ],
    );
    let ids_for = |args: &[&str]| {
        let mut all = vec!["-o", "json", s(&log)];
        all.extend_from_slice(args);
        ids(&json_rows(&run(&all, None)))
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids_for(&["--since", "2h"]), ["half-hour"]);
    assert_eq!(
        ids_for(&["--since", "1d", "--until", "1h"]),
        ["three-hours"]
    );
    assert_eq!(ids_for(&["--until", "1d"]), ["three-days"]);
    assert_eq!(ids_for(&["--since", "1w"]).len(), 3);
}

#[test]
fn malformed_lines_are_counted_and_never_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_file(
        dir.path(),
        "junk.log",
        &[
            "{not json".to_string(),
            "[]".to_string(),
            r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}"#.to_string(),
            "\u{1}\u{2}binary".to_string(),
            "2024-05-01T10:00:00Z AUDIT: id=\"x\" legacy format".to_string(),
        ],
    );
    let out = run(&[s(&log)], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("No deletions of Fleet-managed objects found.\n"));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("fleet-delete-guard audit: 5 malformed lines skipped (first: "),
        "{err}"
    );
    assert!(
        err.contains("junk.log:1: ")
            && err.contains("junk.log:2: not a JSON object")
            && err.contains("junk.log:3: kind \"EventList\" is not an audit Event"),
        "{err}"
    );
}

#[test]
fn unsorted_json_keeps_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_file(dir.path(), "audit.log", &cluster_log());
    let rows = json_rows(&run(&["-o", "json", "--unsorted", s(&log)], None));
    assert_eq!(
        ids(&rows),
        [
            "e-warned",
            "e-denied",
            "e-dry-run",
            "e-namespace",
            "e-collection",
            "e-fleet",
            "e-labels",
        ]
    );
}

#[test]
fn the_webhook_name_picks_among_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let lots = Some("fleet-local/lots");
    let log = log_file(
        dir.path(),
        "audit.log",
        &[
            Ev::delete("both", "alice", "configmaps", "default", "x")
                .webhook(
                    "a-guard.example.com",
                    "denied",
                    lots,
                    None,
                    "default-lots-config2",
                )
                .webhook(
                    "b-guard.example.com",
                    "warned",
                    lots,
                    None,
                    "default-lots-config2",
                )
                .line(),
            Ev::delete("renamed", "alice", "configmaps", "default", "y")
                .at("2024-05-01T10:01:00Z")
                .webhook(
                    "guard.example.org",
                    "allowed",
                    lots,
                    None,
                    "default-lots-config2",
                )
                .line(),
        ],
    );
    let decisions = |args: &[&str]| {
        let mut all = vec!["-o", "json", s(&log)];
        all.extend_from_slice(args);
        json_rows(&run(&all, None))
            .iter()
            .map(|r| r["decision"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    // No prefix is the default name: the first with a decision and an owner.
    assert_eq!(decisions(&[]), ["denied", "allowed"]);
    assert_eq!(
        decisions(&["--webhook-name", "b-guard.example.com"]),
        ["warned", "allowed"]
    );
}

#[test]
fn unusable_arguments_and_files_fail_with_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = log_file(dir.path(), "audit.log", &cluster_log());

    let missing = dir.path().join("missing.log");
    let out = run(&[s(&good), s(&missing)], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty(), "nothing read before the error");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("fleet-delete-guard audit: cannot open "),
        "{err}"
    );
    assert!(err.contains("missing.log"), "{err}");

    let corrupt = dir.path().join("audit.log.2.gz");
    let mut bytes = vec![0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0xff];
    bytes.extend_from_slice(b"this is not deflate data at all");
    std::fs::write(&corrupt, bytes).unwrap();
    let out = run(&[s(&corrupt)], None);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("audit.log.2.gz: corrupt gzip data"), "{err}");

    // A gzip file cut short (a rotation caught mid-write).
    let truncated = dir.path().join("audit.log.3.gz");
    write_gzip(&truncated, &[&cluster_log()]);
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let out = run(&[s(&truncated)], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("audit.log.3.gz: corrupt gzip data"),
        "{}",
        stderr(&out)
    );

    let out = run(&[s(dir.path())], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));

    for (flag, value) in [
        ("--since", "yesterday"),
        ("--until", "2h30"),
        ("--gitrepo", "lots"),
    ] {
        let out = run(&[flag, value, s(&good)], None);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let err = stderr(&out);
        assert!(
            err.lines()
                .next()
                .unwrap()
                .starts_with(&format!("error: invalid value '{value}' for '{flag}")),
            "{err}"
        );
    }

    let out = run(&["--since", "1h", "--until", "2h", s(&good)], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not before --until"),
        "{}",
        stderr(&out)
    );

    let out = run(&["--unsorted", s(&good)], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--unsorted needs --output json"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_closed_pipe_ends_the_report_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for i in 0..3000 {
        lines.push(
            Ev::delete(
                &format!("id-{i}"),
                "alice",
                "configmaps",
                "default",
                &format!("cm-{i}"),
            )
            .webhook(
                HOOK,
                "warned",
                Some("fleet-local/lots"),
                None,
                "default-lots-config2",
            )
            .line(),
        );
    }
    let log = log_file(dir.path(), "audit.log", &lines);
    let mut child = Command::new(BIN)
        .args(["audit", "-o", "json", s(&log)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    drop(out);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// The managed clusters' exports, one form a line, mixed with a plain event and with
/// wrappers that cannot be read: every deletion is found, every broken record named.
#[test]
fn gke_aks_and_eks_exports_are_read_line_by_line_without_a_flag() {
    let lots = Some("fleet-local/lots");
    let deletion = |id: &str, name: &str, at: &str| {
        Ev::delete(id, "alice", "configmaps", "default", name)
            .at(at)
            .webhook(
                HOOK,
                "warned",
                lots,
                Some("lots-config2"),
                "default-lots-config2",
            )
    };
    let plain = deletion("e-plain", "a", "2024-05-01T10:00:00Z");
    let azure_string = deletion("e-azure-string", "b", "2024-05-01T10:01:00Z");
    let azure_object = deletion("e-azure-object", "c", "2024-05-01T10:02:00Z");
    let eks = deletion("e-eks", "d", "2024-05-01T10:03:00Z");
    let insights = deletion("e-insights", "e", "2024-05-01T10:04:00Z");
    let azure = |log: Value, category: &str| {
        json!({"time": "2024-05-01T10:00:00Z", "category": category,
               "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
               "properties": {"log": log, "stream": "stdout", "pod": "kube-apiserver-0"}})
    };
    let gke = json!({
        "insertId": "e-gke", "timestamp": "2024-05-01T10:05:00Z",
        "logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
        "operation": {"id": "e-gke", "producer": "k8s.io", "first": true, "last": true},
        "resource": {"type": "k8s_cluster", "labels": {"cluster_name": "c"}},
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "authenticationInfo": {"principalEmail": "bob@example.com"},
            "methodName": "io.k8s.core.v1.configmaps.delete",
            "resourceName": "core/v1/namespaces/default/configmaps/f",
            "requestMetadata": {"callerSuppliedUserAgent": "kubectl/v1.30.1"},
            "serviceName": "k8s.io"
        },
        "labels": {
            "delete-guard.fleet.cattle.io/decision": "warned",
            "delete-guard.fleet.cattle.io/owner": "fleet-local/lots",
            "delete-guard.fleet.cattle.io/gitrepo": "fleet-local/lots"
        }
    });
    let lines = vec![
        plain.line(),
        json!({"records": [
            azure(json!(azure_string.line()), "kube-audit"),
            azure(azure_object.0.clone(), "kube-audit-admin"),
            azure(json!("I0501 10:00:00 started"), "kube-apiserver"),
        ]})
        .to_string(),
        json!({"logStreamName": "kube-apiserver-audit-1", "message": eks.line()}).to_string(),
        json!([{"@timestamp": "2024-05-01 10:04:00.000", "@message": insights.line()}]).to_string(),
        gke.to_string(),
        json!({"protoPayload": {"methodName": "io.k8s.core.v1.configmaps.delete"}}).to_string(),
        json!({"message": "{\"kind\":\"Event\"}"}).to_string(),
    ];
    let dir = tempfile::tempdir().unwrap();
    let log = log_file(dir.path(), "exports.json", &lines);
    let out = run(&["--output", "json", s(&log)], None);
    let rows = json_rows(&out);
    assert_eq!(
        ids(&rows),
        [
            "e-plain",
            "e-azure-string",
            "e-azure-object",
            "e-eks",
            "e-insights",
            "e-gke"
        ]
    );
    let gke_row = rows.last().unwrap();
    assert_eq!(gke_row["user"], "bob@example.com");
    assert_eq!(gke_row["gitrepo"], "fleet-local/lots");
    assert_eq!(gke_row["decision"], "warned");
    let err = stderr(&out);
    assert!(
        err.contains("3 malformed lines skipped")
            && err.contains(
                "exports.json:2: record 3 (Azure diagnostic record): category \"kube-apiserver\" is not kube-audit or kube-audit-admin"
            )
            && err.contains(
                "exports.json:6: GKE Cloud Logging entry: resourceName \"\" is not <group>/<version>/…/<resource>"
            )
            && err.contains("exports.json:7: CloudWatch log event: "),
        "{err}"
    );
}

/// Issues #13, #14, #15, #16 from real audit logs: v1beta1 events carrying only
/// `timestamp`, the same auditID read from two overlapping files, a GKE export's
/// /readyz health checks, and a deletion while the webhook was down (failed open).
#[test]
fn real_logs_overlapping_files_health_checks_v1beta1_and_failed_open() {
    let dir = tempfile::tempdir().unwrap();
    let warned = |id: &str| {
        Ev::delete(id, "alice", "configmaps", "default", "test-config2-one")
            .at("2024-05-01T10:00:00Z")
            .webhook(
                HOOK,
                "warned",
                Some("fleet-local/lots"),
                Some("lots-config2"),
                "default-lots-config2",
            )
    };
    // The v1beta1 shape: `timestamp` only.
    let mut old = warned("e-v1beta1");
    old.0["apiVersion"] = json!("audit.k8s.io/v1beta1");
    let map = old.0.as_object_mut().unwrap();
    map.remove("requestReceivedTimestamp");
    map.remove("stageTimestamp");
    map.insert("timestamp".into(), json!("2024-05-01T09:00:00Z"));
    // kube-apiserver could not call the webhook: Metadata level, no object recorded.
    let mut unseen = Ev::delete(
        "e-unseen",
        "bob",
        "configmaps",
        "default",
        "test-config1-one",
    )
    .at("2024-05-01T11:00:00Z");
    unseen.0["annotations"] = json!({
        "failed-open.validating.webhook.admission.k8s.io/round_0_index_0": HOOK,
        "authorization.k8s.io/decision": "allow"
    });
    let readyz = json!({
        "insertId": "h1", "timestamp": "2024-05-01T10:00:01Z",
        "protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "methodName": "io.k8s.get", "resourceName": "readyz",
            "authenticationInfo": {"principalEmail": "system:anonymous"}}
    })
    .to_string();
    let first = log_file(
        dir.path(),
        "audit.log.1",
        &[old.line(), warned("e-dup").line(), readyz.clone()],
    );
    // A rotated file overlapping the previous one.
    let second = log_file(
        dir.path(),
        "audit.log",
        &[warned("e-dup").line(), unseen.line(), readyz],
    );
    let out = run(&["--output", "json", s(&first), s(&second)], None);
    let rows = json_rows(&out);
    assert_eq!(ids(&rows), ["e-v1beta1", "e-dup", "e-unseen"], "{rows:?}");
    assert_eq!(rows[0]["time"], "2024-05-01T09:00:00Z");
    assert_eq!(rows[2]["decision"], "failed-open");
    assert!(
        rows[2]["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("not seen by fleet-delete-guard"),
        "{}",
        rows[2]
    );
    let err = stderr(&out);
    assert!(!err.contains("malformed"), "{err}");
    assert!(
        err.contains("1 deletion read again under the same auditID skipped"),
        "{err}"
    );
    assert!(
        err.contains("2 entries skipped (GKE entry for a non-resource URL, e.g. /readyz)"),
        "{err}"
    );
    // The table names them for what they are.
    let out = run(&[s(&first), s(&second)], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("not seen (failed open)"),
        "{}",
        stdout(&out)
    );
}
