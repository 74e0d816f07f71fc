//! Fleet status deltas checked against the worked example in tests/fixtures
//! (GitRepo `fleet-local/lots`, BDs `lots-config1..3`, manual delete of
//! ConfigMap `default/test-config2-one`).

#[path = "support/second_cluster.rs"]
mod second_cluster;

use fleet_delete_guard::delta::batch::{self, Change, ChangeKind};
use fleet_delete_guard::delta::bundle_deployment::{mark_missing, unmark_missing};
use fleet_delete_guard::delta::gitrepo::{self, GitRepoOutcome};
use fleet_delete_guard::delta::merge_patch_diff;
use fleet_delete_guard::delta::recompute::{
    gitrepo_status_from_bundle_deployments, owner_status_for,
};
use fleet_delete_guard::delta::DeletedResource;
use fleet_delete_guard::fleet::release::FleetRelease;
use fleet_delete_guard::fleet::status::{
    BundleDeployment, BundleDeploymentStatus, GitRepo, GitRepoStatus, ModifiedStatus,
    NonReadyStatus, NonReadySummary,
};
use fleet_delete_guard::fleet::{OwnerKind, LABEL_BUNDLE_NAME};
use serde_json::{json, Value};

const NOW: &str = "2026-08-21T14:30:05Z";
const LATER: &str = "2026-08-21T14:31:00Z";
const CLUSTER: &str = "fleet-local/local";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn bds(name: &str) -> Vec<BundleDeployment> {
    fixture(name)["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| BundleDeployment::from_value(v).expect("bd parses"))
        .collect()
}

fn bd<'a>(list: &'a [BundleDeployment], name: &str) -> &'a BundleDeployment {
    list.iter()
        .find(|b| b.metadata.name == name)
        .expect("bd in fixture")
}

fn status(bd: &BundleDeployment) -> BundleDeploymentStatus {
    bd.status.clone().expect("bd has status")
}

fn gitrepo_status(name: &str) -> GitRepoStatus {
    GitRepoStatus::from_value(&fixture(name)["status"]).expect("gitrepo status parses")
}

fn cm(name: &str) -> DeletedResource {
    DeletedResource::new("v1", "ConfigMap", Some("default"), name)
        .with_created_at("2026-08-20T09:01:12Z")
}

/// Removes every `lastUpdateTime` (for comparisons "modulo timestamps").
fn strip_times(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("lastUpdateTime");
                m.values_mut().for_each(walk);
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

fn json_of<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).expect("serializes")
}

// ---------------------------------------------------------------- round trip

#[test]
fn fixtures_round_trip_unchanged() {
    for name in [
        "bundledeployments-lots.json",
        "bundledeployments-lots-after-delete.json",
    ] {
        for item in fixture(name)["items"].as_array().expect("items") {
            let typed = BundleDeployment::from_value(item).expect("parses");
            assert_eq!(&typed.to_value().expect("serializes"), item, "{name}");
            let st = BundleDeploymentStatus::from_value(&item["status"]).expect("status parses");
            assert_eq!(st.to_value().expect("serializes"), item["status"], "{name}");
        }
    }
    for name in ["gitrepo-lots.json", "gitrepo-lots-after-delete.json"] {
        let v = fixture(name);
        let typed = GitRepo::from_value(&v).expect("parses");
        assert_eq!(typed.to_value().expect("serializes"), v, "{name}");
        let st = GitRepoStatus::from_value(&v["status"]).expect("status parses");
        assert_eq!(st.to_value().expect("serializes"), v["status"], "{name}");
    }
}

#[test]
fn unknown_fields_survive_and_partial_input_parses() {
    let v = json!({
        "ready": true,
        "futureField": {"deep": [1, {"x": null}]},
        "modifiedStatus": [{"kind": "ConfigMap", "name": "a", "missing": true, "newFlag": "z"}],
        "resourceCounts": {"ready": 1, "brandNew": 5},
        "display": null,
        "resources": null
    });
    let st = BundleDeploymentStatus::from_value(&v).expect("parses");
    assert!(st.display.is_none() && st.resources.is_empty());
    let out = st.to_value().expect("serializes");
    assert_eq!(out["futureField"], v["futureField"]);
    assert_eq!(out["modifiedStatus"][0]["newFlag"], "z");
    assert_eq!(out["resourceCounts"]["brandNew"], 5);
    assert!(BundleDeploymentStatus::from_value(&Value::Null)
        .expect("null ok")
        .conditions
        .is_empty());
    assert!(GitRepoStatus::from_value(&json!({}))
        .expect("empty ok")
        .summary
        .is_none());
}

#[test]
fn wrong_types_in_known_fields_are_errors() {
    for bad in [
        json!({"ready": "yes"}),
        json!({"resourceCounts": {"ready": "4"}}),
        json!({"modifiedStatus": {"kind": "x"}}),
        json!({"conditions": [{"type": 5}]}),
        json!("a string"),
    ] {
        let err = BundleDeploymentStatus::from_value(&bad).expect_err("must fail");
        assert!(err.to_string().contains("unexpected type"), "{err}");
    }
    assert!(GitRepoStatus::from_value(&json!({"perClusterResourceCounts": []})).is_err());
    assert!(GitRepoStatus::from_value(&json!({"readyClusters": 1.5})).is_err());
    assert!(BundleDeployment::from_value(&json!({"metadata": {"labels": {"a": 1}}})).is_err());
}

// ------------------------------------------------------- BundleDeployment

#[test]
fn bd_mark_missing_gives_the_after_delete_fixture() {
    let before = bds("bundledeployments-lots.json");
    let after = bds("bundledeployments-lots-after-delete.json");
    let b = bd(&before, "lots-config2");
    let mut st = status(b);
    assert!(mark_missing(&mut st, &b.spec, &cm("test-config2-one"), NOW));
    let want = status(bd(&after, "lots-config2"));

    // field by field first, for readable failures
    assert_eq!(st.resources, want.resources, "resources");
    assert_eq!(st.modified_status, want.modified_status, "modifiedStatus");
    assert_eq!(st.resource_counts, want.resource_counts, "resourceCounts");
    assert!(st.ready && !st.non_modified);
    assert_eq!(st.display, want.display, "display");
    assert_eq!(st.conditions, want.conditions, "conditions");
    // then the whole status (timestamps included: `now` is the fixture's)
    assert_eq!(json_of(&st), json_of(&want));
    let ready = st.condition("Ready").expect("Ready");
    assert_eq!(
        ready.message,
        "configmap.v1 default/test-config2-one missing"
    );
    assert_eq!(ready.reason, "Error");
}

#[test]
fn bd_mark_twice_is_once_and_unmark_restores() {
    let list = bds("bundledeployments-lots.json");
    let b = bd(&list, "lots-config2");
    let r = cm("test-config2-one");
    let mut once = status(b);
    assert!(mark_missing(&mut once, &b.spec, &r, NOW));
    let mut twice = once.clone();
    assert!(!mark_missing(&mut twice, &b.spec, &r, LATER));
    assert_eq!(once, twice);

    let mut back = once.clone();
    assert!(unmark_missing(&mut back, &b.spec, &r, LATER));
    assert_eq!(
        strip_times(json_of(&back)),
        strip_times(json_of(&status(b)))
    );
    assert!(
        !unmark_missing(&mut back, &b.spec, &r, LATER),
        "unmark is idempotent"
    );
    // the restored Ready condition was touched
    assert_eq!(
        back.condition("Ready").map(|c| c.last_update_time.as_str()),
        Some(LATER)
    );
}

#[test]
fn bd_mark_of_an_owned_object_a_stale_agent_dropped_counts_it_as_fleet_would() {
    // An agent before the upstream fix lists only live objects and never counts the
    // missing one: 3 resources, ready 3, desiredReady 3.
    let list = bds("bundledeployments-lots.json");
    let b = bd(&list, "lots-config2");
    let r = cm("test-config2-one");
    let mut stale = status(b);
    stale.resources.retain(|x| x.name != "test-config2-one");
    if let Some(c) = stale.resource_counts.as_mut() {
        c.ready = 3;
        c.desired_ready = 3;
    }
    let mut unowned = stale.clone();
    assert!(
        !mark_missing(&mut unowned, &b.spec, &r, NOW),
        "unknown membership: left alone"
    );

    let mut st = stale.clone();
    assert!(mark_missing(&mut st, &b.spec, &r.clone().owned(), NOW));
    let want = status(bd(
        &bds("bundledeployments-lots-after-delete.json"),
        "lots-config2",
    ));
    assert_eq!(
        st.resource_counts, want.resource_counts,
        "desiredReady = live + missing"
    );
    assert_eq!(st.modified_status, want.modified_status);
    assert_eq!(st.display, want.display);
    let mut twice = st.clone();
    assert!(
        !mark_missing(&mut twice, &b.spec, &r.owned(), LATER),
        "idempotent"
    );

    // A truncated list may hide it already: never risk counting twice.
    let mut truncated = stale;
    truncated.incomplete_state = true;
    assert!(!mark_missing(
        &mut truncated,
        &b.spec,
        &cm("test-config2-one").owned(),
        NOW
    ));
}

#[test]
fn bd_delete_of_unrelated_object_changes_nothing() {
    let list = bds("bundledeployments-lots.json");
    let b = bd(&list, "lots-config2");
    let mut st = status(b);
    assert!(!mark_missing(
        &mut st,
        &b.spec,
        &cm("test-config1-one"),
        NOW
    ));
    assert!(!mark_missing(
        &mut st,
        &b.spec,
        &DeletedResource::new("v1", "Secret", Some("default"), "test-config2-one"),
        NOW
    ));
    assert_eq!(st, status(b));
}

#[test]
fn bd_delete_through_other_api_version_matches_recorded_one() {
    let list = bds("bundledeployments-lots.json");
    let b = bd(&list, "lots-config2");
    let mut st = status(b);
    let mut deployment = b.clone();
    let s = deployment.status.as_mut().expect("status");
    for r in &mut s.resources {
        r.api_version = "apps/v1".into();
        r.kind = "Deployment".into();
    }
    st.resources = s.resources.clone();
    let r = DeletedResource::new(
        "apps/v1beta2",
        "Deployment",
        Some("default"),
        "test-config2-one",
    );
    assert!(mark_missing(&mut st, &b.spec, &r, NOW));
    assert_eq!(
        st.modified_status[0].api_version, "apps/v1",
        "Fleet's recorded version is kept"
    );
    assert_eq!(
        st.modified_status[0].to_string(),
        "deployment.apps default/test-config2-one missing"
    );
}

#[test]
fn bd_not_applied_yet_is_left_alone() {
    let list = bds("bundledeployments-lots.json");
    let mut b = bd(&list, "lots-config2").clone();
    b.spec.deployment_id = "s-new:abc".into();
    let mut st = status(&b);
    assert!(!mark_missing(
        &mut st,
        &b.spec,
        &cm("test-config2-one"),
        NOW
    ));
}

/// lots-config2 with `names` non-ready (state `updating`, filed as notReady).
fn with_non_ready(b: &BundleDeployment, names: &[&str]) -> BundleDeployment {
    let mut b = b.clone();
    let s = b.status.as_mut().expect("status");
    for (i, n) in names.iter().enumerate() {
        s.non_ready_status.push(NonReadyStatus {
            uid: format!("00000000-0000-0000-0000-00000000000{i}"),
            kind: "ConfigMap".into(),
            api_version: "v1".into(),
            namespace: "default".into(),
            name: n.to_string(),
            summary: NonReadySummary {
                state: "updating".into(),
                transitioning: true,
                message: vec!["waiting".into()],
                ..Default::default()
            },
            ..Default::default()
        });
    }
    s.ready = names.is_empty();
    let counts = s.resource_counts.as_mut().expect("counts");
    counts.ready -= names.len() as i64;
    counts.not_ready += names.len() as i64;
    let msg = s.non_ready_status.first().map(ToString::to_string);
    if let Some(msg) = msg {
        let ready = s
            .conditions
            .iter_mut()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        ready.status = "False".into();
        ready.reason = "Error".into();
        ready.message = msg;
        s.display.as_mut().expect("display").state = "NotReady".into();
    }
    b
}

#[test]
fn bd_not_ready_before_delete() {
    let list = bds("bundledeployments-lots.json");
    let base = bd(&list, "lots-config2");

    // The only non-ready object is deleted: the BD becomes ready but Modified.
    let b = with_non_ready(base, &["test-config2-one"]);
    let mut st = status(&b);
    assert!(mark_missing(&mut st, &b.spec, &cm("test-config2-one"), NOW));
    let c = st.resource_counts.clone().expect("counts");
    assert_eq!(
        (c.ready, c.not_ready, c.missing, c.desired_ready),
        (3, 0, 1, 4)
    );
    assert!(st.ready && st.non_ready_status.is_empty());
    assert_eq!(
        st.display.as_ref().map(|d| d.state.as_str()),
        Some("Modified")
    );
    assert_eq!(
        st.condition("Ready").map(|c| c.message.as_str()),
        Some("configmap.v1 default/test-config2-one missing")
    );

    // Another non-ready object remains: the BD stays NotReady and says why.
    let b = with_non_ready(base, &["test-config2-one", "test-config2-two"]);
    let mut st = status(&b);
    assert!(mark_missing(&mut st, &b.spec, &cm("test-config2-one"), NOW));
    let c = st.resource_counts.clone().expect("counts");
    assert_eq!(
        (c.ready, c.not_ready, c.missing, c.desired_ready),
        (2, 1, 1, 4)
    );
    assert!(!st.ready);
    assert_eq!(
        st.display.as_ref().map(|d| d.state.as_str()),
        Some("NotReady")
    );
    assert_eq!(
        st.condition("Ready").map(|c| c.message.as_str()),
        Some("configmap.v1 default/test-config2-two [progressing] waiting")
    );
}

#[test]
fn bd_already_modified_before_delete() {
    let list = bds("bundledeployments-lots.json");
    let mut b = bd(&list, "lots-config2").clone();
    {
        let s = b.status.as_mut().expect("status");
        s.modified_status.push(ModifiedStatus {
            patch: "{\"data\":{\"k\":\"v\"}}".into(),
            ..ModifiedStatus::missing(&cm("test-config2-one").key())
        });
        s.modified_status[0].missing = false;
        s.non_modified = false;
        let c = s.resource_counts.as_mut().expect("counts");
        c.ready = 3;
        c.modified = 1;
    }
    let mut st = status(&b);
    assert!(mark_missing(&mut st, &b.spec, &cm("test-config2-one"), NOW));
    let c = st.resource_counts.clone().expect("counts");
    assert_eq!(
        (c.ready, c.modified, c.missing, c.desired_ready),
        (3, 0, 1, 4)
    );
    assert_eq!(st.modified_status.len(), 1);
    assert!(st.modified_status[0].is_missing() && st.modified_status[0].patch.is_empty());
}

#[test]
fn bd_orphan_delete_removes_it() {
    let list = bds("bundledeployments-lots.json");
    let mut b = bd(&list, "lots-config2").clone();
    {
        let s = b.status.as_mut().expect("status");
        let mut orphan = ModifiedStatus::missing(&cm("old-one").key());
        orphan.missing = false;
        orphan.delete = true;
        s.modified_status.push(orphan);
        s.non_modified = false;
        s.resource_counts.as_mut().expect("counts").orphaned = 1;
    }
    let mut st = status(&b);
    assert!(mark_missing(&mut st, &b.spec, &cm("old-one"), NOW));
    assert!(st.modified_status.is_empty() && st.non_modified);
    assert_eq!(st.resource_counts.as_ref().map(|c| c.orphaned), Some(0));
    assert_eq!(
        st.condition("Ready").map(|c| c.status.as_str()),
        Some("True")
    );
    assert_eq!(st.display.as_ref().map(|d| d.state.as_str()), Some("Ready"));
}

/// A BD with `n` ConfigMaps `cm-00..`, all ready.
fn big_bd(n: usize) -> BundleDeployment {
    let list = bds("bundledeployments-lots.json");
    let mut b = bd(&list, "lots-config2").clone();
    let s = b.status.as_mut().expect("status");
    let template = s.resources[0].clone();
    s.resources = (0..n)
        .map(|i| {
            let mut r = template.clone();
            r.name = format!("cm-{i:02}");
            r
        })
        .collect();
    let c = s.resource_counts.as_mut().expect("counts");
    c.ready = n as i64;
    c.desired_ready = n as i64;
    b
}

#[test]
fn caps_at_ten_with_incomplete_state() {
    let mut b = big_bd(13);
    let mut gr = gitrepo_status_from_bundle_deployments(
        &GitRepoStatus::default(),
        std::slice::from_ref(&b),
        NOW,
    );
    for i in (0..12).rev() {
        let r = cm(&format!("cm-{i:02}"));
        assert_eq!(
            gitrepo::mark_missing(&mut gr, &b, &r, std::slice::from_ref(&b), NOW),
            GitRepoOutcome::Applied
        );
        let spec = b.spec.clone();
        assert!(mark_missing(
            b.status.as_mut().expect("status"),
            &spec,
            &r,
            NOW
        ));
    }
    let s = status(&b);
    assert_eq!(s.modified_status.len(), 10);
    assert!(s.incomplete_state);
    assert_eq!(
        s.modified_status[0].name, "cm-00",
        "first 10 in Fleet's sort order are kept"
    );
    assert_eq!(s.modified_status[9].name, "cm-09");
    let c = s.resource_counts.clone().expect("counts");
    assert_eq!((c.ready, c.missing, c.desired_ready), (1, 12, 13));

    // GitRepo: hidden missing objects vanish, the live one becomes Unknown.
    let want = gitrepo_status_from_bundle_deployments(
        &GitRepoStatus::default(),
        std::slice::from_ref(&b),
        NOW,
    );
    assert_eq!(strip_times(json_of(&gr)), strip_times(json_of(&want)));
    let live = gr
        .resources
        .iter()
        .find(|r| r.name == "cm-12")
        .expect("live entry");
    assert_eq!(live.state, "Unknown");
    assert!(live.incomplete_state);
    assert_eq!(gr.resources.len(), 11);

    // A missing object beyond the cap is not visible, so unmarking it is a no-op.
    let spec = b.spec.clone();
    assert!(!unmark_missing(
        b.status.as_mut().expect("status"),
        &spec,
        &cm("cm-11"),
        NOW
    ));
}

#[test]
fn summary_caps_at_ten_bundle_deployments() {
    // 12 single-resource BDs on one cluster, each losing its resource.
    let template = big_bd(1);
    let mut list: Vec<BundleDeployment> = (0..12)
        .map(|i| {
            let mut b = template.clone();
            b.metadata.name = format!("bd-{i:02}");
            b.metadata.uid = format!("uid-{i:02}");
            b.metadata
                .labels
                .insert(LABEL_BUNDLE_NAME.into(), b.metadata.name.clone());
            let s = b.status.as_mut().expect("status");
            s.resources[0].name = format!("obj-{i:02}");
            b
        })
        .collect();
    let mut gr = gitrepo_status_from_bundle_deployments(&GitRepoStatus::default(), &list, NOW);
    let changes: Vec<Change> = (0..12)
        .rev()
        .map(|i| Change {
            bd: i,
            resource: cm(&format!("obj-{i:02}")),
            kind: ChangeKind::Missing,
        })
        .collect();
    let report = batch::apply(&mut gr, &mut list, &changes, NOW);
    assert_eq!(report.changed_bds.len(), 12);
    let want = gitrepo_status_from_bundle_deployments(&GitRepoStatus::default(), &list, NOW);
    let summary = gr.summary.clone().expect("summary");
    assert_eq!(summary.non_ready_resources.len(), 10);
    assert_eq!(summary.modified, 12);
    assert_eq!(summary.non_ready_resources[0].name, "bd-00");
    assert_eq!(strip_times(json_of(&gr)), strip_times(json_of(&want)));
}

// ---------------------------------------------------------------- GitRepo

#[test]
fn gitrepo_mark_missing_gives_the_after_delete_fixture() {
    let list = bds("bundledeployments-lots.json");
    let mut gr = gitrepo_status("gitrepo-lots.json");
    let outcome = gitrepo::mark_missing(
        &mut gr,
        bd(&list, "lots-config2"),
        &cm("test-config2-one"),
        &list,
        NOW,
    );
    assert_eq!(outcome, GitRepoOutcome::Applied);
    let want = gitrepo_status("gitrepo-lots-after-delete.json");

    assert_eq!(gr.resource_counts, want.resource_counts, "resourceCounts");
    assert_eq!(
        gr.per_cluster_resource_counts,
        want.per_cluster_resource_counts
    );
    assert_eq!(gr.resources, want.resources, "resources");
    assert_eq!(gr.summary, want.summary, "summary");
    assert_eq!(gr.display, want.display, "display");
    assert_eq!(
        (gr.ready_clusters, gr.desired_ready_clusters),
        (Some(0), Some(1))
    );
    assert_eq!(gr.conditions, want.conditions, "conditions");
    assert_eq!(
        gr.condition("Ready").map(|c| c.message.as_str()),
        Some("Modified(1) [Cluster fleet-local/local]; configmap.v1 default/test-config2-one missing")
    );
    assert_eq!(
        gr.to_value().expect("json"),
        fixture("gitrepo-lots-after-delete.json")["status"]
    );

    // The merge patch the webhook would send carries only the delta.
    let patch = merge_patch_diff(
        &fixture("gitrepo-lots.json")["status"],
        &gr.to_value().expect("json"),
    );
    assert!(patch.get("commit").is_none() && patch.get("gitJobStatus").is_none());
    assert_eq!(patch["readyClusters"], 0);
}

#[test]
fn gitrepo_delta_is_idempotent() {
    let list = bds("bundledeployments-lots.json");
    let after = bds("bundledeployments-lots-after-delete.json");
    let b = bd(&list, "lots-config2");
    let r = cm("test-config2-one");
    let want = gitrepo_status("gitrepo-lots-after-delete.json");

    // twice == once
    let mut gr = gitrepo_status("gitrepo-lots.json");
    gitrepo::mark_missing(&mut gr, b, &r, &list, NOW);
    assert_eq!(
        gitrepo::mark_missing(&mut gr, b, &r, &list, LATER),
        GitRepoOutcome::AlreadyApplied
    );
    assert_eq!(gr, want);

    // Fleet already recomputed the GitRepo: nothing to do.
    let mut gr = want.clone();
    assert_eq!(
        gitrepo::mark_missing(&mut gr, b, &r, &list, LATER),
        GitRepoOutcome::AlreadyApplied
    );
    assert_eq!(gr, want);

    // The BD already shows the deletion (agent was first, or a retry after the
    // BD patch landed): the GitRepo is still brought up to date.
    let mut gr = gitrepo_status("gitrepo-lots.json");
    let marked = bd(&after, "lots-config2");
    assert_eq!(
        gitrepo::mark_missing(&mut gr, marked, &r, &after, NOW),
        GitRepoOutcome::Applied
    );
    assert_eq!(gr, want);
}

#[test]
fn gitrepo_unmark_after_mark_restores_original() {
    let list = bds("bundledeployments-lots.json");
    let after = bds("bundledeployments-lots-after-delete.json");
    let r = cm("test-config2-one");
    let original = gitrepo_status("gitrepo-lots.json");
    let mut gr = original.clone();
    gitrepo::mark_missing(&mut gr, bd(&list, "lots-config2"), &r, &list, NOW);
    let outcome = gitrepo::unmark_missing(&mut gr, bd(&after, "lots-config2"), &r, &after, LATER);
    assert_eq!(outcome, GitRepoOutcome::Applied);
    assert_eq!(strip_times(json_of(&gr)), strip_times(json_of(&original)));
    assert_eq!(
        gitrepo::unmark_missing(&mut gr, bd(&list, "lots-config2"), &r, &list, LATER),
        GitRepoOutcome::AlreadyApplied
    );
}

#[test]
fn gitrepo_diverged_status_is_left_to_fleet() {
    let list = bds("bundledeployments-lots.json");
    let mut gr = gitrepo_status("gitrepo-lots.json");
    // Someone else's view: the resource shows as Modified on this cluster.
    let entry = gr
        .resources
        .iter_mut()
        .find(|r| r.name == "test-config2-one")
        .expect("entry");
    entry.per_cluster_state.ready.clear();
    entry.per_cluster_state.modified.push(CLUSTER.into());
    let snapshot = gr.clone();
    let outcome = gitrepo::mark_missing(
        &mut gr,
        bd(&list, "lots-config2"),
        &cm("test-config2-one"),
        &list,
        NOW,
    );
    assert_eq!(outcome, GitRepoOutcome::Diverged);
    assert_eq!(gr, snapshot);
}

#[test]
fn gitrepo_not_ready_before_delete_matches_recompute() {
    let list = bds("bundledeployments-lots.json");
    for names in [
        &["test-config2-one"][..],
        &["test-config2-one", "test-config2-two"][..],
    ] {
        let mut bds_now: Vec<BundleDeployment> = list.clone();
        bds_now[1] = with_non_ready(&list[1], names);
        let mut gr = gitrepo_status_from_bundle_deployments(
            &gitrepo_status("gitrepo-lots.json"),
            &bds_now,
            NOW,
        );
        let report = batch::apply(
            &mut gr,
            &mut bds_now,
            &[Change {
                bd: 1,
                resource: cm("test-config2-one"),
                kind: ChangeKind::Missing,
            }],
            NOW,
        );
        assert!(report.gitrepo_changed());
        let want = gitrepo_status_from_bundle_deployments(
            &gitrepo_status("gitrepo-lots.json"),
            &bds_now,
            NOW,
        );
        assert_eq!(
            strip_times(json_of(&gr)),
            strip_times(json_of(&want)),
            "{names:?}"
        );
        let counts = gr.resource_counts.clone().expect("counts");
        assert_eq!(
            (counts.missing, counts.not_ready as usize),
            (1, names.len() - 1)
        );
    }
}

#[test]
fn gitrepo_batch_across_two_bds_matches_recompute() {
    let original = gitrepo_status("gitrepo-lots.json");
    let batches: [&[(usize, &str)]; 3] = [
        &[(1, "test-config2-one"), (0, "test-config1-three")],
        &[
            (0, "test-config1-one"),
            (1, "test-config2-four"),
            (1, "test-config2-one"),
        ],
        &[
            (1, "test-config2-two"),
            (0, "test-config1-two"),
            (0, "test-config1-four"),
            (1, "test-config2-three"),
        ],
    ];
    for items in batches {
        let mut list = bds("bundledeployments-lots.json");
        let mut gr = original.clone();
        let changes: Vec<Change> = items
            .iter()
            .map(|(i, n)| Change {
                bd: *i,
                resource: cm(n),
                kind: ChangeKind::Missing,
            })
            .collect();
        let report = batch::apply(&mut gr, &mut list, &changes, NOW);
        assert!(report.gitrepo_changed());
        assert_eq!(report.changed_bds.len(), 2);
        let want = gitrepo_status_from_bundle_deployments(&original, &list, NOW);
        assert_eq!(json_of(&gr), json_of(&want), "{items:?}");
        assert_eq!(
            gr.summary
                .as_ref()
                .map(|s| s.non_ready_resources[0].name.as_str()),
            Some("lots-config1"),
            "UID order"
        );

        // Replaying the same batch against the result changes nothing.
        let mut again = gr.clone();
        let report = batch::apply(&mut again, &mut list, &changes, LATER);
        assert!(!report.gitrepo_changed() && report.changed_bds.is_empty());
        assert_eq!(again, gr);
    }
}

/// The fixture's BDs on a second cluster `fleet-default/downstream1`.
fn two_cluster_bds() -> Vec<BundleDeployment> {
    second_cluster::with_second_cluster(bds("bundledeployments-lots.json"), 'f')
}

#[test]
fn gitrepo_multi_cluster_only_that_cluster_changes() {
    let mut list = two_cluster_bds();
    let start =
        gitrepo_status_from_bundle_deployments(&gitrepo_status("gitrepo-lots.json"), &list, NOW);
    assert_eq!(
        (start.ready_clusters, start.desired_ready_clusters),
        (Some(2), Some(2))
    );

    let mut gr = start.clone();
    let changes = [Change {
        bd: 1,
        resource: cm("test-config2-one"),
        kind: ChangeKind::Missing,
    }];
    batch::apply(&mut gr, &mut list, &changes, NOW);
    let want = gitrepo_status_from_bundle_deployments(&start, &list, NOW);
    assert_eq!(json_of(&gr), json_of(&want));
    assert_eq!(gr.ready_clusters, Some(1));
    let entry = gr
        .resources
        .iter()
        .find(|r| r.name == "test-config2-one")
        .expect("entry");
    assert_eq!(
        entry.per_cluster_state.ready,
        vec!["fleet-default/downstream1".to_string()]
    );
    assert_eq!(entry.per_cluster_state.missing, vec![CLUSTER.to_string()]);
    assert_eq!(entry.state, "Missing");
    let other = &gr.per_cluster_resource_counts["fleet-default/downstream1"];
    assert_eq!((other.ready, other.missing), (11, 0));
    assert_eq!(gr.per_cluster_resource_counts[CLUSTER].missing, 1);

    // The same object on the second cluster: counts and resources still exact;
    // the Ready message keeps the first cluster's text (Fleet's would count 2).
    let changes = [Change {
        bd: 4,
        resource: cm("test-config2-one"),
        kind: ChangeKind::Missing,
    }];
    batch::apply(&mut gr, &mut list, &changes, NOW);
    let want = gitrepo_status_from_bundle_deployments(&start, &list, NOW);
    let mut got = json_of(&gr);
    let mut exp = json_of(&want);
    got.as_object_mut().expect("object").remove("conditions");
    exp.as_object_mut().expect("object").remove("conditions");
    assert_eq!(got, exp);
    assert_eq!(gr.ready_clusters, Some(0));
    assert_eq!(
        gr.condition("Ready").map(|c| c.status.as_str()),
        Some("False")
    );
    let entry = gr
        .resources
        .iter()
        .find(|r| r.name == "test-config2-one")
        .expect("entry");
    assert_eq!(entry.per_cluster_state.missing.len(), 2);
}

/// Issue #7: a multi-cluster owner seen from one cluster (only this cluster's BDs
/// listed). Deleting an object that was not Ready — `updating`, filed under notReady
/// from v0.13.1 and in no list before — is counted Missing on this cluster, as
/// Fleet's recompute shows it; the owner delta must not give up as diverged.
#[test]
fn gitrepo_multi_cluster_deletion_of_a_not_ready_object_is_counted() {
    for release in FleetRelease::ALL {
        let rules = release.rules();
        let mut list = two_cluster_bds();
        list[1] = with_non_ready(&list[1], &["test-config2-one"]);
        let start = owner_status_for(
            &rules,
            OwnerKind::GitRepo,
            &gitrepo_status("gitrepo-lots.json"),
            &list,
            NOW,
        );
        let mut gr = start.clone();
        let report = batch::apply_knowing(
            &rules,
            OwnerKind::GitRepo,
            &mut gr,
            &mut list,
            &[Change {
                bd: 1,
                resource: cm("test-config2-one"),
                kind: ChangeKind::Missing,
            }],
            NOW,
            |b| b.cluster_id() == CLUSTER,
        );
        assert!(report.gitrepo_changed(), "{release}: the owner is written");
        let want = owner_status_for(&rules, OwnerKind::GitRepo, &start, &list, NOW);
        assert_eq!(
            json_of(&gr.resources),
            json_of(&want.resources),
            "{release}"
        );
        assert_eq!(gr.resource_counts, want.resource_counts, "{release}");
        assert_eq!(
            gr.per_cluster_resource_counts, want.per_cluster_resource_counts,
            "{release}"
        );
        let entry = gr
            .resources
            .iter()
            .find(|r| r.name == "test-config2-one")
            .expect("entry");
        assert_eq!(entry.per_cluster_state.missing, [CLUSTER], "{release}");
        assert!(entry.per_cluster_state.not_ready.is_empty(), "{release}");
        assert_eq!(gr.per_cluster_resource_counts[CLUSTER].missing, 1);
        assert_eq!(gr.per_cluster_resource_counts[CLUSTER].not_ready, 0);
    }
}

#[test]
fn bd_merge_patch_is_the_documented_delta() {
    let list = bds("bundledeployments-lots.json");
    let b = bd(&list, "lots-config2");
    let mut st = status(b);
    mark_missing(&mut st, &b.spec, &cm("test-config2-one"), NOW);
    let old = b.status.as_ref().expect("status").to_value().expect("json");
    let patch = merge_patch_diff(&old, &st.to_value().expect("json"));
    let keys: Vec<&str> = patch
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "conditions",
            "display",
            "modifiedStatus",
            "nonModified",
            "resourceCounts",
            "resources"
        ]
    );
    assert_eq!(
        patch["nonModified"],
        Value::Null,
        "omitempty false → removed"
    );
    assert_eq!(patch["display"], json!({"state": "Modified"}));
    assert_eq!(patch["resourceCounts"], json!({"ready": 3, "missing": 1}));
}

#[test]
fn gitrepo_keeps_a_foreign_ready_condition() {
    let list = bds("bundledeployments-lots.json");
    let mut gr = gitrepo_status("gitrepo-lots.json");
    let ready = gr
        .conditions
        .iter_mut()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    ready.status = "False".into();
    ready.message = "error while rendering bundle lots-config3".into();
    let before = ready.clone();
    let outcome = gitrepo::mark_missing(
        &mut gr,
        bd(&list, "lots-config2"),
        &cm("test-config2-one"),
        &list,
        NOW,
    );
    assert_eq!(outcome, GitRepoOutcome::Applied);
    assert_eq!(gr.condition("Ready"), Some(&before));
    assert_eq!(gr.resource_counts.as_ref().map(|c| c.missing), Some(1));

    // Same with only the changed BD known (incremental path).
    let mut gr2 = gitrepo_status("gitrepo-lots.json");
    gr2.conditions = gr.conditions.clone();
    let only = vec![list[1].clone()];
    gitrepo::mark_missing(&mut gr2, &list[1], &cm("test-config2-one"), &only, NOW);
    assert_eq!(gr2.condition("Ready"), Some(&before));
}

#[test]
fn gitrepo_incremental_path_with_partial_knowledge_matches_fixture() {
    // Knowing only the changed BD (not its peers) still gives the fixture:
    // on one cluster every BD-level field follows from the GitRepo itself.
    let list = bds("bundledeployments-lots.json");
    let only = vec![list[1].clone()];
    let mut gr = gitrepo_status("gitrepo-lots.json");
    assert_eq!(
        gitrepo::mark_missing(&mut gr, &list[1], &cm("test-config2-one"), &only, NOW),
        GitRepoOutcome::Applied
    );
    assert_eq!(gr, gitrepo_status("gitrepo-lots-after-delete.json"));
    assert_eq!(
        gitrepo::mark_missing(&mut gr, &list[1], &cm("test-config2-one"), &only, NOW),
        GitRepoOutcome::AlreadyApplied
    );
    let after = bds("bundledeployments-lots-after-delete.json");
    let only = vec![after[1].clone()];
    gitrepo::unmark_missing(&mut gr, &after[1], &cm("test-config2-one"), &only, LATER);
    assert_eq!(
        strip_times(json_of(&gr)),
        strip_times(json_of(&gitrepo_status("gitrepo-lots.json")))
    );
}

// ---------------------------------------------------------------- hostile

/// Small deterministic PRNG so the hostile test needs no extra crates.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const KEYS: &[&str] = &[
    "ready",
    "nonModified",
    "modifiedStatus",
    "nonReadyStatus",
    "resources",
    "resourceCounts",
    "display",
    "conditions",
    "summary",
    "perClusterResourceCounts",
    "perClusterState",
    "missing",
    "delete",
    "kind",
    "apiVersion",
    "namespace",
    "name",
    "state",
    "incompleteState",
    "nonReadyResources",
    "desiredReady",
    "readyClusters",
    "type",
    "status",
    "message",
    "unknownThing",
    "metadata",
    "labels",
    "uid",
    "spec",
];

fn random_json(rng: &mut XorShift, depth: u32) -> Value {
    match rng.next() % if depth == 0 { 6 } else { 9 } {
        0 => Value::Null,
        1 => json!(rng.next().is_multiple_of(3)),
        2 => json!((rng.next() % 7) as i64 - 3),
        3 => json!(rng.pick(&[
            "",
            "Ready",
            "Missing",
            "v1",
            "ConfigMap",
            "default",
            "fleet-local/local",
            "True"
        ])),
        4 => json!(1.5),
        5 => json!(rng.pick(KEYS)),
        6 | 7 => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.next() % 6 {
                m.insert(rng.pick(KEYS).to_string(), random_json(rng, depth - 1));
            }
            Value::Object(m)
        }
        _ => Value::Array(
            (0..rng.next() % 4)
                .map(|_| random_json(rng, depth - 1))
                .collect(),
        ),
    }
}

/// Replaces a random node of `v` by `new`.
fn graft(rng: &mut XorShift, v: &mut Value, new: Value) {
    match v {
        Value::Object(m) if !m.is_empty() && !rng.next().is_multiple_of(3) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = &keys[(rng.next() % keys.len() as u64) as usize];
            if let Some(child) = m.get_mut(k) {
                graft(rng, child, new);
            }
        }
        Value::Array(a) if !a.is_empty() && !rng.next().is_multiple_of(3) => {
            let i = (rng.next() % a.len() as u64) as usize;
            graft(rng, &mut a[i], new);
        }
        _ => *v = new,
    }
}

#[test]
fn hostile_statuses_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let base_bds = fixture("bundledeployments-lots.json")["items"]
        .as_array()
        .expect("items")
        .clone();
    let base_gr = fixture("gitrepo-lots.json")["status"].clone();
    let r = cm("test-config2-one");
    let mut parsed = 0;
    for round in 0..3000 {
        let mut bd_v = base_bds[1].clone();
        let mut gr_v = base_gr.clone();
        if round % 3 == 0 {
            bd_v["status"] = random_json(&mut rng, 5);
            gr_v = random_json(&mut rng, 5);
        } else {
            for _ in 0..(1 + rng.next() % 3) {
                let junk = random_json(&mut rng, 3);
                graft(&mut rng, &mut bd_v, junk);
                let junk = random_json(&mut rng, 3);
                graft(&mut rng, &mut gr_v, junk);
            }
        }
        let (Ok(b), Ok(mut gr)) = (
            BundleDeployment::from_value(&bd_v),
            GitRepoStatus::from_value(&gr_v),
        ) else {
            continue;
        };
        parsed += 1;
        let known = vec![b.clone()];
        let _ = gitrepo::mark_missing(&mut gr, &b, &r, &known, NOW);
        let _ = gitrepo::unmark_missing(&mut gr, &b, &r, &known, NOW);
        let mut bd = b.clone();
        let spec = bd.spec.clone();
        if let Some(s) = bd.status.as_mut() {
            mark_missing(s, &spec, &r, NOW);
            unmark_missing(s, &spec, &r, NOW);
        }
        let _ = gitrepo::apply_change(&mut gr, &b, &bd, &known, NOW);
        let out = gitrepo_status_from_bundle_deployments(&gr, &known, NOW);
        let _ = merge_patch_diff(&gr_v, &out.to_value().expect("serializes"));
    }
    assert!(
        parsed > 100,
        "enough hostile inputs were accepted to exercise the deltas ({parsed})"
    );
}

#[test]
fn deeply_nested_unknown_fields_round_trip() {
    let mut deep = json!("leaf");
    for i in 0..100 {
        deep = if i % 2 == 0 {
            json!({"n": deep, "x": null})
        } else {
            json!([deep, null])
        };
    }
    let mut v = fixture("gitrepo-lots.json")["status"].clone();
    v["futureDeep"] = deep.clone();
    v["summary"]["futureDeep"] = deep.clone();
    let st = GitRepoStatus::from_value(&v).expect("parses");
    assert_eq!(st.to_value().expect("serializes"), v);
    // Too deep for serde_json's parser is an error, not a crash.
    let text = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(serde_json::from_str::<Value>(&text).is_err());
}

#[test]
fn bd_unmark_of_an_owned_object_hidden_by_the_cap_restores_it() {
    let list = bds("bundledeployments-lots.json");
    let b = bd(&list, "lots-config2");
    let mut st = status(b);
    // Four missing, but the list shows only one and says it is incomplete.
    for name in [
        "test-config2-one",
        "test-config2-two",
        "test-config2-three",
        "test-config2-four",
    ] {
        assert!(mark_missing(&mut st, &b.spec, &cm(name).owned(), NOW));
    }
    st.modified_status.retain(|m| m.name == "test-config2-one");
    st.incomplete_state = true;
    let hidden = cm("test-config2-three");
    assert!(
        !unmark_missing(&mut st.clone(), &b.spec, &hidden, NOW),
        "membership unknown: left alone"
    );
    assert!(unmark_missing(
        &mut st,
        &b.spec,
        &hidden.clone().owned(),
        NOW
    ));
    let counts = st.resource_counts.clone().expect("counts");
    assert_eq!(
        (counts.ready, counts.missing, counts.desired_ready),
        (1, 3, 4)
    );
    assert!(st.resources.iter().any(|r| r.name == "test-config2-three"));
    assert!(
        !unmark_missing(&mut st, &b.spec, &hidden.owned(), NOW),
        "idempotent: it is live now"
    );
}

/// Fleet's `status.SetFields` (v0.16.1 `internal/cmd/controller/status/status.go`) takes
/// `display.message` from the first BundleDeployment reaching the highest state rank,
/// looping over all of them; `summary.nonReadyResources` lists only the first 10. With
/// ten Modified BundleDeployments before an ErrApplied one, the message is the
/// ErrApplied one's and `display.error` is set.
#[test]
fn display_message_comes_from_the_highest_ranked_bundle_deployment_beyond_the_first_ten() {
    let template = bd(
        &bds("bundledeployments-lots-after-delete.json"),
        "lots-config2",
    )
    .clone();
    assert_eq!(
        fleet_delete_guard::fleet::state::deployment_state(
            &template.spec,
            &template.status_or_default()
        ),
        "Modified"
    );
    let mut list: Vec<BundleDeployment> = (0..11)
        .map(|i| {
            let mut b = template.clone();
            b.metadata.name = format!("b-{i:02}");
            b.metadata.uid = format!("00000000-0000-0000-0000-{i:012}");
            b
        })
        .collect();
    // The last one (by UID) failed to apply: ErrApplied, with the Deployed message.
    let last = list.last_mut().expect("eleven");
    let mut v = last.to_value().expect("json");
    v["spec"]["deploymentID"] = json!("s-new:options");
    let conds = v["status"]["conditions"]
        .as_array_mut()
        .expect("conditions");
    for c in conds.iter_mut() {
        if c["type"] == "Deployed" {
            c["status"] = json!("False");
            c["message"] = json!("template: boom");
        }
    }
    *last = BundleDeployment::from_value(&v).expect("bd");
    let mut start = gitrepo_status("gitrepo-lots-after-delete.json");
    start
        .summary
        .get_or_insert_with(Default::default)
        .desired_ready = 11;
    let out = gitrepo_status_from_bundle_deployments(&start, &list, NOW);
    let summary = out.summary.clone().expect("summary");
    assert_eq!(summary.non_ready_resources.len(), 10, "capped at 10");
    assert!(summary
        .non_ready_resources
        .iter()
        .all(|e| e.bundle_state == "Modified"));
    let display = out.display.expect("display");
    assert_eq!(display.state, "ErrApplied");
    assert_eq!(display.message, "template: boom");
    assert!(display.error);
}
