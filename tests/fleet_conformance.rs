//! Fleet's own test tables as a conformance suite.
//!
//! `tests/fixtures/fleet-conformance/*.json` holds, as values only, the assertions of
//! rancher/fleet's unit tests that exercise what the webhook reproduces, each case with
//! its provenance (file, test name) and the release tags whose test file has it (the
//! newest patch of v0.12.x … v0.16.x). Every case runs here against the pure core with
//! the rules of each of its tags. Cases of code the webhook does not reproduce are kept
//! with the reason, so that a table that grows upstream is noticed when re-transcribed.

use std::collections::BTreeSet;

use fleet_delete_guard::delta::bundle_deployment::mark_missing;
use fleet_delete_guard::delta::recompute::owner_status_for;
use fleet_delete_guard::delta::summary::bundle_ready_message;
use fleet_delete_guard::delta::DeletedResource;
use fleet_delete_guard::fleet::release::{parse_version, StatusRules};
use fleet_delete_guard::fleet::state::message_from_deployment;
use fleet_delete_guard::fleet::status::{BundleDeployment, GitRepoStatus, Resource};
use fleet_delete_guard::fleet::{safe_concat_name, OwnerKind};
use serde_json::{json, Map, Value};

const NOW: &str = "2026-08-21T14:30:05Z";
/// The newest patch of each supported minor release: every one must be covered.
const NEWEST_PATCHES: [&str; 5] = ["v0.12.19", "v0.13.15", "v0.14.10", "v0.15.6", "v0.16.1"];

fn table(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/fleet-conformance/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("conformance table");
    serde_json::from_str(&text).expect("JSON")
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

fn rules_at(tag: &str) -> StatusRules {
    parse_version(tag).expect("a release tag").rules_of.rules()
}

/// Drops empty lists, empty objects, nulls, `false` and zero counters: Fleet's
/// `omitempty` and Go's zero values compare equal to absent fields.
fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                let x = normalized(x);
                let empty = match &x {
                    Value::Null | Value::Bool(false) => true,
                    Value::Array(a) => a.is_empty(),
                    Value::Object(o) => o.is_empty(),
                    Value::Number(n) => n.as_i64() == Some(0),
                    _ => false,
                };
                if !empty {
                    out.insert(k.clone(), x);
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

fn bundle_deployments(case: &Value) -> Vec<BundleDeployment> {
    case["bundleDeployments"]
        .as_array()
        .expect("bundleDeployments")
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut v = v.clone();
            // Fleet's tests leave UIDs empty; Fleet sorts by them (stable for equal ones).
            v["metadata"]["uid"] = json!(format!("00000000-0000-0000-0000-{i:012}"));
            BundleDeployment::from_value(&v).expect("bd")
        })
        .collect()
}

fn resources_value(resources: &[Resource]) -> Vec<Value> {
    resources
        .iter()
        .map(|r| normalized(&serde_json::to_value(r).expect("resource")))
        .collect()
}

/// `SetResources` on the case's BundleDeployments.
fn set_resources(case: &Value, rules: &StatusRules) -> GitRepoStatus {
    let bds = bundle_deployments(case);
    owner_status_for(
        rules,
        OwnerKind::GitRepo,
        &GitRepoStatus::default(),
        &bds,
        NOW,
    )
}

fn check_set_resources(case: &Value, rules: &StatusRules, at: &str) {
    let expect = &case["expect"];
    let out = set_resources(case, rules);
    assert_eq!(
        out.resources.len() as u64,
        expect["resourcesLen"].as_u64().expect("len"),
        "{at}"
    );
    let got = resources_value(&out.resources);
    for want in expect["resources"].as_array().expect("resources") {
        let want = normalized(want);
        assert!(got.contains(&want), "{at}: {want} not in {got:?}");
    }
    let counts = normalized(&serde_json::to_value(&out.resource_counts).expect("counts"));
    assert_eq!(counts, normalized(&expect["resourceCounts"]), "{at}");
    let per_cluster =
        normalized(&serde_json::to_value(&out.per_cluster_resource_counts).expect("counts"));
    assert_eq!(
        per_cluster,
        normalized(&expect["perClusterResourceCounts"]),
        "{at}"
    );
}

fn check_per_cluster_state(case: &Value, rules: &StatusRules, at: &str) {
    let out = set_resources(case, rules);
    let state = serde_json::to_value(&out.resources[0].per_cluster_state).expect("state");
    assert_eq!(
        normalized(&state),
        normalized(&case["expect"]["perClusterState"]),
        "{at}"
    );
}

/// `TestPerClusterStateTruncation`'s generator: `bundles` × `clusters` BundleDeployments
/// (one parsed per bundle, copied per cluster).
fn truncation_bds(g: &Value) -> Vec<BundleDeployment> {
    let n = |k: &str| g[k].as_u64().expect("count");
    let mut templates = Vec::new();
    for b in 0..n("bundles") {
        let workload = format!("workload{b:02}");
        let at_workload = |list: &Value| {
            let mut list = list.clone();
            for item in list.as_array_mut().expect("list") {
                item["namespace"] = json!(workload);
            }
            list
        };
        let v = json!({
            "metadata": {
                "name": format!("bundlename{b}"),
                "labels": {"fleet.cattle.io/cluster-namespace": g["clusterNamespaceLabel"]}
            },
            "spec": {"deploymentID": g["deploymentID"]},
            "status": {
                "appliedDeploymentID": g["deploymentID"],
                "resources": at_workload(&g["resources"]),
                "modifiedStatus": at_workload(&g["modifiedStatus"]),
                "nonReadyStatus": at_workload(&g["nonReadyStatus"]),
            }
        });
        templates.push(BundleDeployment::from_value(&v).expect("bd"));
    }
    let mut out = Vec::new();
    for c in 0..n("clusters") {
        for template in &templates {
            let mut bd = template.clone();
            bd.metadata.namespace = format!("ns-cluster{c}");
            bd.metadata.labels.insert(
                "fleet.cattle.io/cluster".into(),
                format!("d0-k3k-downstream{c:04}-downstream{c:04}"),
            );
            out.push(bd);
        }
    }
    out
}

fn check_truncation(case: &Value, rules: &StatusRules, at: &str) {
    let mut bds = truncation_bds(&case["generator"]);
    let empty = GitRepoStatus::default();
    let first = owner_status_for(rules, OwnerKind::GitRepo, &empty, &bds, NOW);
    let size: usize = first
        .resources
        .iter()
        .flat_map(|r| {
            let s = &r.per_cluster_state;
            s.ready.iter().chain(&s.not_ready).chain(&s.missing)
        })
        .map(String::len)
        .sum();
    let limit = case["expect"]["sizeOfReadyNotReadyMissingBelow"]
        .as_u64()
        .expect("limit") as usize;
    assert!(size < limit, "{at}: {size} bytes of cluster ids");
    let json = |s: &GitRepoStatus| serde_json::to_string(&s.resources).expect("json");
    let again = owner_status_for(rules, OwnerKind::GitRepo, &empty, &bds, NOW);
    assert!(
        json(&first) == json(&again),
        "{at}: stable for the same input"
    );
    bds.reverse();
    let reversed = owner_status_for(rules, OwnerKind::GitRepo, &empty, &bds, NOW);
    assert!(
        json(&first) == json(&reversed),
        "{at}: stable in reverse order"
    );
}

fn check_ready_condition(case: &Value, rules: &StatusRules, at: &str) {
    let ready = case["summary"]["ready"].as_u64().expect("ready");
    let bds: Vec<BundleDeployment> = (0..ready)
        .map(|i| {
            BundleDeployment::from_value(&json!({
                "metadata": {"name": format!("b{i}"), "namespace": "cluster-ns",
                    "uid": format!("00000000-0000-0000-0000-{i:012}"),
                    "labels": {"fleet.cattle.io/cluster": "c", "fleet.cattle.io/cluster-namespace": "ns"}},
                "spec": {"deploymentID": "d", "stagedDeploymentID": "d"},
                "status": {"appliedDeploymentID": "d", "ready": true, "nonModified": true}
            }))
            .expect("bd")
        })
        .collect();
    let before = GitRepoStatus::from_value(&json!({
        "conditions": [case["before"]],
        "summary": {"desiredReady": ready, "ready": 0},
        "gitJobStatus": "Current"
    }))
    .expect("status");
    for kind in [OwnerKind::GitRepo, OwnerKind::HelmOp] {
        let out = owner_status_for(rules, kind, &before, &bds, NOW);
        let cond = out.condition("Ready").expect("Ready");
        let expect = &case["expect"];
        assert_eq!(
            (
                cond.status.as_str(),
                cond.message.as_str(),
                cond.reason.as_str()
            ),
            (
                str_of(expect, "status"),
                str_of(expect, "message"),
                str_of(expect, "reason")
            ),
            "{at} {kind}"
        );
    }
}

fn check_message_from_deployment(case: &Value, rules: &StatusRules, at: &str) {
    let bd = BundleDeployment::from_value(&json!({
        "metadata": {"name": "bd", "namespace": "ns"},
        "spec": {"deploymentID": case["deploymentID"]},
        "status": {"appliedDeploymentID": case["appliedDeploymentID"], "conditions": case["conditions"]}
    }))
    .expect("bd");
    let message = message_from_deployment(rules, &bd.spec, &bd.status_or_default());
    assert_eq!(message, str_of(case, "expect"), "{at}");
}

/// A HelmOp's status through the spec's steps; each step's expectations are a subset
/// of the recomputed status (Go zero values compare equal to absent fields).
fn check_helmop_steps(case: &Value, rules: &StatusRules, at: &str) {
    let mut status = GitRepoStatus::default();
    for step in case["steps"].as_array().expect("steps") {
        let bds = bundle_deployments(step);
        status = owner_status_for(rules, OwnerKind::HelmOp, &status, &bds, NOW);
        let got = status.to_value().expect("status");
        assert_ne!(got["display"]["state"], "GitUpdating", "{at}");
        // Compared as Go values: absent equals zero.
        let same = |want: &Value, got: &Value| {
            normalized(&json!({ "v": want })) == normalized(&json!({ "v": got }))
        };
        for (field, want) in step["expect"].as_object().expect("expect") {
            match want.as_object() {
                Some(fields) => {
                    for (k, v) in fields {
                        let g = &got[field][k];
                        assert!(same(v, g), "{at}: {}: {field}.{k} {g} ≠ {v}", step["what"]);
                    }
                }
                None => {
                    let g = &got[field];
                    assert!(
                        same(want, g),
                        "{at}: {}: {field} {g} ≠ {want}",
                        step["what"]
                    );
                }
            }
        }
    }
}

/// A Bundle's summary (`status.SetFields` over its BundleDeployments, as for a HelmOp)
/// and its Ready message (`Cluster` targets: what a GitRepo copies) through the steps.
fn check_bundle_steps(case: &Value, rules: &StatusRules, at: &str) {
    for step in case["steps"].as_array().expect("steps") {
        let what = str_of(step, "what");
        let bds = bundle_deployments(step);
        let status = owner_status_for(
            rules,
            OwnerKind::HelmOp,
            &GitRepoStatus::default(),
            &bds,
            NOW,
        );
        let summary = serde_json::to_value(&status.summary).expect("summary");
        let expect = &step["expect"];
        for (k, v) in expect["summary"].as_object().expect("summary") {
            let got = summary[k].as_i64().unwrap_or(0);
            assert_eq!(Some(got), v.as_i64(), "{at}: {what}: summary.{k}");
        }
        let refs: Vec<&BundleDeployment> = bds.iter().collect();
        let message = bundle_ready_message(rules, &refs);
        if let Some(part) = expect["readyMessageContains"].as_str() {
            assert!(message.contains(part), "{at}: {what}: {message:?}");
        }
        if let Some(part) = expect["readyMessageLacks"].as_str() {
            assert!(!message.contains(part), "{at}: {what}: {message:?}");
        }
    }
}

fn key_of(v: &Value) -> (String, String, String, String) {
    (
        str_of(v, "apiVersion").to_string(),
        str_of(v, "kind").to_string(),
        str_of(v, "namespace").to_string(),
        str_of(v, "name").to_string(),
    )
}

/// The agent's status while the case's missing objects still existed (all of them
/// live and ready), then each marked missing by the webhook's delta.
fn check_agent_counts(case: &Value, at: &str) {
    let args = &case["args"];
    let list = |k: &str| args[k].as_array().cloned().unwrap_or_default();
    let missing: Vec<Value> = list("modified")
        .into_iter()
        .filter(|m| m["missing"] == true)
        .collect();
    let mut resources = list("resources");
    resources.extend(missing.iter().map(|m| {
        json!({"kind": m["kind"], "apiVersion": m["apiVersion"],
               "namespace": m["namespace"], "name": m["name"]})
    }));
    let live: BTreeSet<_> = resources.iter().map(key_of).collect();
    let non_ready = list("nonReady");
    let not_ready = non_ready
        .iter()
        .filter(|n| live.contains(&key_of(n)))
        .count();
    let shown: Vec<Value> = non_ready.iter().take(10).cloned().collect();
    let bd = BundleDeployment::from_value(&json!({
        "metadata": {"name": "bd", "namespace": "ns"},
        "spec": {"deploymentID": "d"},
        "status": {
            "appliedDeploymentID": "d",
            "ready": non_ready.is_empty(),
            "nonModified": true,
            "incompleteState": non_ready.len() > 10,
            "resources": resources,
            "nonReadyStatus": shown,
            "resourceCounts": {"desiredReady": live.len(), "ready": live.len() - not_ready,
                               "notReady": not_ready},
        }
    }))
    .expect("bd");
    let mut status = bd.status_or_default().into_owned();
    for m in &missing {
        let (api_version, kind, namespace, name) = key_of(m);
        let r = DeletedResource::new(&api_version, &kind, Some(&namespace), &name).owned();
        assert!(mark_missing(&mut status, &bd.spec, &r, NOW), "{at}: {name}");
    }
    let expect = &case["expect"];
    let counts = normalized(&serde_json::to_value(&status.resource_counts).expect("counts"));
    assert_eq!(counts, normalized(&expect["resourceCounts"]), "{at}");
    assert_eq!(Some(status.ready), expect["ready"].as_bool(), "{at}");
    assert_eq!(
        Some(status.non_modified),
        expect["nonModified"].as_bool(),
        "{at}"
    );
    let len = |k: &str| expect[k].as_u64().expect("len") as usize;
    assert_eq!(status.resources.len(), len("resourcesLen"), "{at}");
    assert_eq!(status.modified_status.len(), len("modifiedLen"), "{at}");
    assert_eq!(status.non_ready_status.len(), len("nonReadyLen"), "{at}");
    assert!(status.modified_status.iter().all(|m| m.missing), "{at}");
}

fn check_safe_concat_name(case: &Value, at: &str) {
    let input: Vec<&str> = case["input"]
        .as_array()
        .expect("input")
        .iter()
        .map(|v| v.as_str().expect("string"))
        .collect();
    assert_eq!(safe_concat_name(&input), str_of(case, "expect"), "{at}");
}

/// Runs every case of `file` at each of its tags; returns (runs, kept with a reason).
fn run(file: &str) -> (usize, usize) {
    run_checks(file, |_| true)
}

/// [`run`] for the cases whose check `only` accepts.
fn run_checks(file: &str, only: impl Fn(&str) -> bool) -> (usize, usize) {
    let doc = table(file);
    let source = str_of(&doc["source"], "file");
    let mut runs = 0;
    let mut skipped = 0;
    let mut tags_seen = BTreeSet::new();
    for case in doc["cases"].as_array().expect("cases") {
        let test = str_of(case, "test");
        let tags: Vec<&str> = case["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .map(|t| t.as_str().expect("tag"))
            .collect();
        assert!(!tags.is_empty(), "{file}: {test} names no release");
        let check = str_of(case, "check");
        if !only(check) {
            continue;
        }
        if check == "not_reproduced" || check == "not_exercised" {
            assert!(!str_of(case, "why").is_empty(), "{file}: {test} says why");
            skipped += 1;
            continue;
        }
        for tag in tags {
            tags_seen.insert(tag.to_string());
            let at = format!("{tag} {source} {test}");
            let rules = rules_at(tag);
            match check {
                "set_resources" => check_set_resources(case, &rules, &at),
                "per_cluster_state" => check_per_cluster_state(case, &rules, &at),
                "truncation" => check_truncation(case, &rules, &at),
                "ready_condition" => check_ready_condition(case, &rules, &at),
                "message_from_deployment" => check_message_from_deployment(case, &rules, &at),
                "agent_counts" => check_agent_counts(case, &at),
                "helmop_steps" => check_helmop_steps(case, &rules, &at),
                "bundle_steps" => check_bundle_steps(case, &rules, &at),
                "safe_concat_name" => check_safe_concat_name(case, &at),
                other => panic!("{file}: {test}: unknown check {other:?}"),
            }
            runs += 1;
        }
    }
    for tag in &tags_seen {
        assert!(NEWEST_PATCHES.contains(&tag.as_str()), "{file}: {tag}");
    }
    (runs, skipped)
}

#[test]
fn resourcestatus_resourcekey_test_at_every_release() {
    let (runs, _) = run_checks("resourcekey_test.json", |c| c != "truncation");
    // TestSetResources × 5, TestPerClusterState 3 × 1 + 4 × 3.
    assert_eq!(runs, 5 + 3 + 12);
}

/// TestPerClusterStateTruncation: 40 000 BundleDeployments, three recomputes per
/// release (its own test, run in parallel with the others).
#[test]
fn resourcestatus_truncation_test_at_every_release() {
    let (runs, _) = run_checks("resourcekey_test.json", |c| c == "truncation");
    assert_eq!(runs, 4);
}

#[test]
fn controller_summary_test_at_every_release() {
    let (runs, skipped) = run("summary_test.json");
    assert_eq!((runs, skipped), (3 + 4, 2));
}

#[test]
fn agent_monitor_updatestatus_test_at_every_release() {
    let (runs, skipped) = run("updatestatus_test.json");
    assert_eq!((runs, skipped), (3 * 5, 3));
}

#[test]
fn helmops_status_integration_test_at_every_release() {
    let (runs, skipped) = run("helmop_status_test.json");
    assert_eq!((runs, skipped), (4, 0));
}

#[test]
fn bundle_error_handling_integration_test_at_every_release() {
    let (runs, skipped) = run("bundle_error_handling_test.json");
    assert_eq!((runs, skipped), (1, 0));
}

/// The v0.16 rule the bundle error-handling spec pins: against v0.15.6's rules the
/// stale Installed message would still show.
#[test]
fn the_bundle_error_handling_spec_fails_against_v0_15() {
    let doc = table("bundle_error_handling_test.json");
    let step = &doc["cases"][0]["steps"][1];
    let bds = bundle_deployments(step);
    let refs: Vec<&BundleDeployment> = bds.iter().collect();
    assert!(bundle_ready_message(&rules_at("v0.15.6"), &refs).contains("unknown field"));
    assert!(!bundle_ready_message(&rules_at("v0.16.1"), &refs).contains("unknown field"));
}

#[test]
fn names_test_at_every_release() {
    let (runs, skipped) = run("names_test.json");
    assert_eq!((runs, skipped), (7 * 5, 2));
}

/// The per-release rules are what makes a case pass or fail: v0.13.15's `updating`
/// case fails against v0.13.0's rules, v0.14.10's `error` case against v0.13.15's.
#[test]
fn the_cases_tell_the_releases_apart() {
    let doc = table("resourcekey_test.json");
    let case = |state: &str| {
        doc["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .find(|c| {
                c["check"] == "per_cluster_state"
                    && c["bundleDeployments"][0]["status"]["nonReadyStatus"][0]["summary"]["state"]
                        == state
            })
            .expect("case")
            .clone()
    };
    let listed = |c: &Value, tag: &str| {
        let out = set_resources(c, &rules_at(tag));
        out.resources[0].per_cluster_state.not_ready.clone()
    };
    assert!(listed(&case("updating"), "v0.13.0").is_empty());
    assert_eq!(listed(&case("updating"), "v0.13.15"), ["namespace/cluster"]);
    assert!(listed(&case("error"), "v0.13.15").is_empty());
    assert_eq!(listed(&case("error"), "v0.14.10"), ["namespace/cluster"]);
    let all: BTreeSet<&str> = NEWEST_PATCHES.into_iter().collect();
    assert_eq!(all.len(), 5);
}
