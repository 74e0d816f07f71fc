//! Owners other than a GitRepo, counted against the API double through real kube
//! clients: a HelmOp (Fleet ≥ v0.13) and a Bundle with neither a GitRepo nor a HelmOp
//! (Rancher's ManagedCharts, `fleet apply`).
//!
//! The fixtures are the worked example's (tests/fixtures, derived from Fleet's rules as
//! described there) with the owner labels Fleet gives BundleDeployments of the other
//! kinds (`internal/cmd/controller/target/target.go`: Bundle labels copied onto the BD;
//! a HelmOp's Bundle carries `fleet.cattle.io/fleet-helm-name`). A HelmOp's status is
//! Fleet's `StatusBase` computed by the GitRepo's code
//! (`internal/cmd/controller/helmops/reconciler/helmop_status.go`, `setStatusHelm`, the
//! same at v0.13.0 … v0.16.1, calls `status.SetFields`, `resourcestatus.SetResources` and
//! `summary.SetReadyConditions(…, "Bundle", …)`) without the GitRepo status
//! controller's extras: no `gitJobStatus` and never display state `GitUpdating`, and no
//! Bundle's Ready condition copied (`setReadyStatusFromBundle` is GitRepo-only). So its
//! expected after-delete status is the GitRepo's after-delete fixture without the git
//! fields, with the HelmOp's own Ready message (`[Bundle lots-config2]`, not
//! `[Cluster fleet-local/local]`).

mod support;

use std::time::Duration;

use fleet_delete_guard::delta::recompute::{
    gitrepo_status_from_bundle_deployments, helmop_status_from_bundle_deployments,
};
use fleet_delete_guard::fleet::status::{BundleDeployment, GitRepoStatus};
use kube_api_double::{gvr, ApiDouble, Options, Verb};
use serde_json::{json, Value};
use support::fleet::{
    delete_review, fast_patcher, imitate_helmop_status_controller, without_volatile,
    CountingServer, BD_NAMESPACE,
};
use support::{fixture_json, post};

const WAIT: Duration = Duration::from_secs(20);

/// The worked example with its BundleDeployments relabelled: `owner_label` (if any)
/// names the owner instead of `fleet.cattle.io/repo-name`.
async fn double_with_owner(owner_label: Option<&str>) -> ApiDouble {
    let double = ApiDouble::start(Options::default()).await;
    let mut bds = fixture_json("bundledeployments-lots.json");
    for bd in bds["items"].as_array_mut().expect("items") {
        let labels = bd["metadata"]["labels"].as_object_mut().expect("labels");
        labels.remove("fleet.cattle.io/repo-name");
        if let Some(label) = owner_label {
            labels.insert(label.to_string(), json!("lots"));
        }
    }
    double.seed_list(bds).expect("seed bundledeployments");
    double
        .seed_list(fixture_json("configmaps-lots.json"))
        .expect("seed configmaps");
    // The GitRepo exists too: nothing may write it for another owner's objects.
    double
        .seed(fixture_json("gitrepo-lots.json"))
        .expect("seed gitrepo");
    double
}

/// A GitRepo status as a HelmOp's: without the git job's fields and condition.
fn as_helmop_status(status: &mut Value) {
    let map = status.as_object_mut().expect("status");
    for k in [
        "commit",
        "pollingCommit",
        "gitJobStatus",
        "lastPollingTriggered",
    ] {
        map.remove(k);
    }
    if let Some(conds) = map.get_mut("conditions").and_then(Value::as_array_mut) {
        conds.retain(|c| c["type"] != "GitPolling");
    }
}

fn helmop_before() -> Value {
    let mut op = fixture_json("gitrepo-lots.json");
    op["kind"] = json!("HelmOp");
    op["metadata"]["uid"] = json!("7d0f7c8e-3f1e-5a6b-9c2d-4e5f6a7b8c9d");
    op["spec"] = json!({"helm": {"chart": "lots", "repo": "https://charts.example.com"}});
    as_helmop_status(&mut op["status"]);
    op
}

/// What Fleet's HelmOp status controller writes after the deletion.
fn helmop_after_delete() -> Value {
    let mut status = fixture_json("gitrepo-lots-after-delete.json")["status"].clone();
    as_helmop_status(&mut status);
    for c in status["conditions"].as_array_mut().expect("conditions") {
        if c["type"] == "Ready" {
            c["message"] = json!(
                "Modified(1) [Bundle lots-config2]; configmap.v1 default/test-config2-one missing"
            );
        }
    }
    status
}

async fn answer(server: &support::TestServer, review: &Value) -> Value {
    let (status, text) = post(&server.client(), &server.url(), review.to_string()).await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str::<Value>(&text).expect("JSON")["response"].clone()
}

fn fixture_bds(name: &str) -> Vec<BundleDeployment> {
    fixture_json(name)["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| BundleDeployment::from_value(v).expect("bd"))
        .collect()
}

/// `helmop_status.go` (v0.13.0 … v0.16.1): display state `""` when Ready and the BDs'
/// state otherwise (never `GitUpdating`), and the HelmOp's own Ready message.
#[test]
fn a_helmop_status_is_what_helmop_status_go_computes() {
    const NOW: &str = "2026-08-21T14:30:05Z";
    let before = GitRepoStatus::from_value(&helmop_before()["status"]).expect("status");
    let ready = helmop_status_from_bundle_deployments(
        &before,
        &fixture_bds("bundledeployments-lots.json"),
        NOW,
    );
    let display = ready.display.clone().expect("display");
    assert_eq!(
        (
            display.state.as_str(),
            display.ready_bundle_deployments.as_str()
        ),
        ("", "3/3")
    );
    assert_eq!(
        ready.condition("Ready").map(|c| c.status.as_str()),
        Some("True")
    );

    let after = fixture_bds("bundledeployments-lots-after-delete.json");
    let deleted = helmop_status_from_bundle_deployments(&before, &after, NOW);
    assert_eq!(deleted.display.expect("display").state, "Modified");
    let cond = deleted
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(
        (cond.status.as_str(), cond.message.as_str()),
        (
            "False",
            "Modified(1) [Bundle lots-config2]; configmap.v1 default/test-config2-one missing"
        )
    );
    // The same BDs under a GitRepo with no finished job: GitUpdating, the Bundle's copy.
    let gitrepo = gitrepo_status_from_bundle_deployments(&before, &after, NOW);
    assert_eq!(gitrepo.display.expect("display").state, "GitUpdating");
    assert!(gitrepo.conditions.iter().any(|c| c.type_ == "Ready"
        && c.message
            .starts_with("Modified(1) [Cluster fleet-local/local]")));
}

#[tokio::test]
async fn a_helmops_deletion_is_counted_in_its_bundle_deployment_and_the_helmop_as_fleet_would() {
    let double = double_with_owner(Some("fleet.cattle.io/fleet-helm-name")).await;
    double.seed(helmop_before()).expect("seed helmop");
    imitate_helmop_status_controller(&double, Duration::ZERO);
    let s = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;

    let review = delete_review(&double, "test-config2-one", "alice", "r-1");
    let r = answer(&s.server, &review).await;
    assert_eq!(r["allowed"], true);
    let first = r["warnings"][0].as_str().unwrap_or_default();
    assert!(first.contains("Fleet HelmOp fleet-local/lots"), "{first}");
    assert_eq!(r["auditAnnotations"]["helmop"], "fleet-local/lots");
    assert_eq!(r["auditAnnotations"]["owner"], "helmop:fleet-local/lots");
    assert!(r["auditAnnotations"]["gitrepo"].is_null());
    double.delete_object(&gvr::CONFIGMAPS, "default", "test-config2-one");

    let op = double
        .wait_for(
            &gvr::HELMOPS,
            "fleet-local",
            "lots",
            |op| op["status"]["resourceCounts"]["missing"] == 1,
            WAIT,
        )
        .await
        .expect("HelmOp counts the deletion");
    double.wait_hooks_idle(WAIT).await.expect("settled");
    let op = double
        .get(&gvr::HELMOPS, "fleet-local", "lots")
        .unwrap_or(op);
    assert_eq!(
        without_volatile(op["status"].clone()),
        without_volatile(helmop_after_delete()),
        "HelmOp status equals what helmop_status.go writes after the delete"
    );
    assert_eq!(
        op["status"]["display"]["state"], "Modified",
        "never GitUpdating"
    );
    let bd = double
        .get(&gvr::BUNDLEDEPLOYMENTS, BD_NAMESPACE, "lots-config2")
        .expect("bd");
    assert_eq!(bd["status"]["resourceCounts"]["missing"], 1);
    assert_eq!(
        double.count(Verb::Patch, "gitrepos", Some("status")),
        0,
        "the GitRepo is not the owner"
    );

    let events = double
        .wait_for_count(Verb::Create, "events", None, 1, WAIT)
        .await
        .expect("event");
    assert!(events >= 1);
    let event = double
        .list(&gvr::EVENTS_K8S_IO, Some("fleet-local"))
        .into_iter()
        .find(|e| e["reason"] == "ResourceDeleted")
        .expect("ResourceDeleted event");
    assert_eq!(event["regarding"]["kind"], "HelmOp");
    assert_eq!(event["regarding"]["name"], "lots");
    assert_eq!(
        event["regarding"]["uid"],
        "7d0f7c8e-3f1e-5a6b-9c2d-4e5f6a7b8c9d"
    );
}

#[tokio::test]
async fn a_helmops_policy_annotation_applies_to_its_objects() {
    let double = double_with_owner(Some("fleet.cattle.io/fleet-helm-name")).await;
    let mut op = helmop_before();
    op["metadata"]["annotations"] = json!({"fleet-delete-guard/policy": "deny"});
    double.seed(op).expect("seed helmop");
    let s = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    let review = delete_review(&double, "test-config1-one", "alice", "r-1");
    let r = answer(&s.server, &review).await;
    assert_eq!(r["allowed"], false, "{r}");
    let msg = r["status"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("Fleet HelmOp fleet-local/lots"), "{msg}");
}

#[tokio::test]
async fn a_bundle_only_owner_is_counted_in_the_bundle_deployment_and_nothing_else() {
    let double = double_with_owner(None).await;
    let s = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    let review = delete_review(&double, "test-config3-one", "alice", "r-1");
    let r = answer(&s.server, &review).await;
    assert_eq!(r["allowed"], true);
    let first = r["warnings"][0].as_str().unwrap_or_default();
    assert!(
        first.contains("Fleet Bundle fleet-local/lots-config3"),
        "{first}"
    );
    assert!(
        r["warnings"][1]
            .as_str()
            .unwrap_or_default()
            .contains("Missing in the Bundle status"),
        "{r}"
    );
    assert!(!r["warnings"].to_string().contains("GitRepo"), "{r}");
    assert_eq!(
        r["auditAnnotations"]["owner"],
        "bundle:fleet-local/lots-config3"
    );
    double.delete_object(&gvr::CONFIGMAPS, "default", "test-config3-one");

    let bd = double
        .wait_for(
            &gvr::BUNDLEDEPLOYMENTS,
            BD_NAMESPACE,
            "lots-config3",
            |bd| bd["status"]["resourceCounts"]["missing"] == 1,
            WAIT,
        )
        .await
        .expect("BundleDeployment counts it");
    assert_eq!(bd["status"]["resourceCounts"]["ready"], 2);
    assert_eq!(bd["status"]["resourceCounts"]["desiredReady"], 3);
    // Give the worker a few ticks: still no owner write, no Event.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(double.count(Verb::Patch, "gitrepos", Some("status")), 0);
    assert_eq!(double.count(Verb::Patch, "helmops", Some("status")), 0);
    assert_eq!(double.count(Verb::Create, "events", None), 0);
}
