//! The same deletion against every supported Fleet release: what differs between
//! releases is written as that release computes it.
//!
//! The scenario is the worked example (tests/fixtures, GitRepo `fleet-local/lots`) with
//! one resource of `lots-config1` reported `updating` by the agent (a Deployment-like
//! object whose `Available` condition is false; the agent's summarizer calls that state
//! `updating`), then the manual deletion of `default/test-config2-one`. Expected values
//! per release, from rancher/fleet at the release tags:
//! - v0.12.19 / v0.13.0 `internal/resourcestatus/resourcekey.go` `appendToPerClusterState`:
//!   no case for `updating` → the cluster is in no `perClusterState` list;
//! - v0.13.1 (same file): `case "NotReady", "updating"` → `notReady` (v0.14.0 adds `"error"`);
//! - v0.16.0 `internal/cmd/controller/summary/summary.go` `MessageFromDeployment`: the
//!   `Installed` message only when `appliedDeploymentID == deploymentID`;
//! - v0.14.3 same file `SetReadyConditions`: a Ready condition turning True loses its
//!   reason (not at v0.14.2 nor in any v0.13.x).

use fleet_delete_guard::delta::batch::{self, Change, ChangeKind};
use fleet_delete_guard::delta::recompute::owner_status_for;
use fleet_delete_guard::delta::DeletedResource;
use fleet_delete_guard::fleet::release::{FleetRelease, FleetVersion};
use fleet_delete_guard::fleet::state::message_from_deployment;
use fleet_delete_guard::fleet::status::{BundleDeployment, GitRepoStatus};
use fleet_delete_guard::fleet::OwnerKind;
use serde_json::{json, Value};

const NOW: &str = "2026-08-21T14:30:05Z";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("json")
}

/// The fixture's BundleDeployments, `lots-config1` reporting `test-config1-two` as
/// `updating` (not ready), as the agent writes it.
fn bds_with_updating() -> Vec<BundleDeployment> {
    fixture("bundledeployments-lots.json")["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| {
            let mut v = v.clone();
            if v["metadata"]["name"] == "lots-config1" {
                v["status"]["ready"] = json!(false);
                v["status"]["nonReadyStatus"] = json!([{
                    "kind": "ConfigMap", "apiVersion": "v1", "namespace": "default",
                    "name": "test-config1-two",
                    "summary": {"state": "updating", "transitioning": true}
                }]);
                v["status"]["resourceCounts"]["ready"] = json!(3);
                v["status"]["resourceCounts"]["notReady"] = json!(1);
            }
            BundleDeployment::from_value(&v).expect("bd")
        })
        .collect()
}

fn resource<'a>(
    status: &'a GitRepoStatus,
    name: &str,
) -> &'a fleet_delete_guard::fleet::status::Resource {
    status
        .resources
        .iter()
        .find(|r| r.name == name)
        .expect("resource listed")
}

/// Releases where a rule changes, and the newest patch of each minor.
fn versions() -> Vec<FleetVersion> {
    use FleetRelease::*;
    let mut v: Vec<FleetVersion> = FleetRelease::ALL
        .iter()
        .map(|r| r.at(r.newest_patch()))
        .collect();
    v.extend([
        V0_13.at(0),
        V0_13.at(1),
        V0_13.at(4),
        V0_13.at(5),
        V0_14.at(0),
        V0_14.at(2),
        V0_14.at(3),
        V0_16.at(0),
    ]);
    v.sort();
    v
}

#[test]
fn one_deletion_written_as_each_release_computes_it() {
    let base = GitRepoStatus::from_value(&fixture("gitrepo-lots.json")["status"]).expect("status");
    for release in versions() {
        let rules = release.rules();
        let mut bds = bds_with_updating();
        // The GitRepo as this release shows it before the deletion.
        let mut owner = owner_status_for(&rules, OwnerKind::GitRepo, &base, &bds, NOW);
        let report = batch::apply_knowing(
            &rules,
            OwnerKind::GitRepo,
            &mut owner,
            &mut bds,
            &[Change {
                bd: 1,
                resource: DeletedResource::new(
                    "v1",
                    "ConfigMap",
                    Some("default"),
                    "test-config2-one",
                )
                .with_created_at("2026-08-20T09:01:12Z"),
                kind: ChangeKind::Missing,
            }],
            NOW,
            |_| true,
        );
        assert!(report.gitrepo_changed(), "{release}");
        // Counted the same in every release.
        let counts = owner.resource_counts.clone().expect("counts");
        assert_eq!(
            (
                counts.ready,
                counts.desired_ready,
                counts.missing,
                counts.not_ready
            ),
            (9, 11, 1, 1),
            "{release}"
        );
        let deleted = resource(&owner, "test-config2-one");
        assert_eq!(deleted.state, "Missing", "{release}");
        assert_eq!(
            deleted.per_cluster_state.missing,
            ["fleet-local/local"],
            "{release}"
        );
        // Where releases differ: the updating resource's per-cluster list.
        let updating = resource(&owner, "test-config1-two");
        assert_eq!(
            updating.state, "updating",
            "{release}: top-level state is the first non-Ready"
        );
        let listed = updating.per_cluster_state.not_ready.clone();
        if release < FleetRelease::V0_13.at(1) {
            assert!(listed.is_empty(), "{release}: updating is in no list");
            assert!(updating.per_cluster_state.ready.is_empty(), "{release}");
        } else {
            assert_eq!(
                listed,
                ["fleet-local/local"],
                "{release}: updating counts as notReady"
            );
        }
        // And the whole status is exactly that release's recompute.
        assert_eq!(
            owner,
            owner_status_for(&rules, OwnerKind::GitRepo, &owner, &bds, NOW),
            "{release}"
        );
    }
}

#[test]
fn the_installed_message_of_a_superseded_attempt_counts_before_v0_16_only() {
    let mut v = fixture("bundledeployments-lots.json")["items"][0].clone();
    v["spec"]["deploymentID"] = json!("s-next:options");
    for c in v["status"]["conditions"]
        .as_array_mut()
        .expect("conditions")
    {
        if c["type"] == "Installed" {
            c["status"] = json!("False");
            c["message"] = json!("previous attempt failed");
        }
    }
    let bd = BundleDeployment::from_value(&v).expect("bd");
    let status = bd.status_or_default();
    for release in versions() {
        let m = message_from_deployment(&release.rules(), &bd.spec, &status);
        if release >= FleetRelease::V0_16.at(0) {
            assert_eq!(m, "", "{release}");
        } else {
            assert_eq!(m, "previous attempt failed", "{release}");
        }
    }
}

#[test]
fn a_ready_condition_turning_true_keeps_its_reason_before_v0_14_3() {
    let mut base =
        GitRepoStatus::from_value(&fixture("gitrepo-lots.json")["status"]).expect("status");
    for c in base.conditions.iter_mut().filter(|c| c.type_ == "Ready") {
        c.status = "False".into();
        c.reason = "Error".into();
        c.message = "Modified(1) [Bundle lots-config2]".into();
    }
    let bds: Vec<BundleDeployment> = fixture("bundledeployments-lots.json")["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| BundleDeployment::from_value(v).expect("bd"))
        .collect();
    for release in versions() {
        let out = owner_status_for(&release.rules(), OwnerKind::GitRepo, &base, &bds, NOW);
        let ready = out.condition("Ready").expect("Ready");
        assert_eq!(ready.status, "True", "{release}");
        let want = if release >= FleetRelease::V0_14.at(3) {
            ""
        } else {
            "Error"
        };
        assert_eq!(ready.reason, want, "{release}");
    }
}

// --- against the API double ------------------------------------------------------

#[path = "support/mod.rs"]
mod support;

use kube_api_double::{gvr, ApiDouble, Options, Verb};
use std::time::Duration;
use support::fleet::{delete_review, fast_patcher, seed, CountingServer, BD_NAMESPACE};

async fn answer(server: &support::TestServer, review: &Value) -> Value {
    let (status, text) = support::post(&server.client(), &server.url(), review.to_string()).await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str::<Value>(&text).expect("JSON")["response"].clone()
}

#[tokio::test]
async fn bundles_fleet_does_not_monitor_are_warned_about_and_never_written() {
    for (field, why) in [
        ("paused", "paused"),
        ("offSchedule", "off schedule"),
        ("waitingForValues", "waiting for values"),
    ] {
        let double = ApiDouble::start(Options::default()).await;
        seed(&double);
        double
            .merge_patch_object(
                &gvr::BUNDLEDEPLOYMENTS,
                BD_NAMESPACE,
                "lots-config2",
                json!({"spec": {field: true}}),
            )
            .expect("gate");
        let s = CountingServer::start(&double, fast_patcher())
            .await
            .synced()
            .await;
        let r = answer(
            &s.server,
            &delete_review(&double, "test-config2-one", "alice", "r-1"),
        )
        .await;
        assert_eq!(r["allowed"], true, "{field}");
        let warnings = r["warnings"].to_string();
        assert!(
            warnings.contains(&format!("Fleet does not monitor this bundle now ({why})")),
            "{field}: {warnings}"
        );
        assert_eq!(r["auditAnnotations"]["counted"], "false", "{field}");
        assert!(
            r["auditAnnotations"]["reason"]
                .as_str()
                .is_some_and(|x| x.contains(why)),
            "{field}: {r}"
        );
        double.delete_object(&gvr::CONFIGMAPS, "default", "test-config2-one");
        // The worker ticks every 50 ms: give it several, then nothing was written.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            double.count(Verb::Patch, "bundledeployments", Some("status")),
            0,
            "{field}"
        );
        assert_eq!(
            double.count(Verb::Patch, "gitrepos", Some("status")),
            0,
            "{field}"
        );
    }
}

#[tokio::test]
async fn the_fleet_version_is_read_from_fleet_controllers_image_or_the_flag() {
    let double = ApiDouble::start(Options::default()).await;
    seed(&double);
    let s = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    let client = support::fleet::client(&double);
    let resolve = |flag: &'static str| {
        let (client, s) = (client.clone(), &s);
        async move {
            fleet_delete_guard::fleet_version::resolve(
                Some(flag),
                &client,
                &s.counting.patcher,
                &s.metrics,
                &s.readiness,
            )
            .await
        }
    };
    // No fleet-controller Deployment: the newest rules, said so.
    assert_eq!(resolve("auto").await, FleetVersion::NEWEST);
    assert!(s.metrics.encode().contains(
        r#"fleet_delete_guard_fleet_info{version="unknown",rules="v0.16.1",source="default"} 1"#
    ));
    double
        .seed(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "fleet-controller", "namespace": "cattle-fleet-system"},
            "spec": {"selector": {"matchLabels": {"app": "fleet-controller"}},
                "template": {"metadata": {"labels": {"app": "fleet-controller"}},
                "spec": {"containers": [
                    {"name": "fleet-cleanup", "image": "rancher/fleet:v0.13.9"},
                    {"name": "fleet-controller", "image": "rancher/fleet:v0.13.2"}]}}}
        }))
        .expect("seed deployment");
    assert_eq!(resolve("auto").await, FleetRelease::V0_13.at(2));
    assert!(s.metrics.encode().contains(
        r#"fleet_delete_guard_fleet_info{version="v0.13.2",rules="v0.13.2",source="fleet-controller"} 1"#
    ));
    assert!(
        s.readiness
            .report()
            .contains("v0.13.2 (fleet-controller), v0.13.2 status rules"),
        "{}",
        s.readiness.report()
    );
    // The flag wins over the Deployment; a newer release uses the newest rules; a flag
    // that is not a version (refused by the command line before it gets here) is logged
    // and the newest rules apply.
    assert_eq!(resolve("v0.14.1").await, FleetRelease::V0_14.at(1));
    assert_eq!(resolve("v0.18.0").await, FleetVersion::NEWEST);
    assert_eq!(resolve("not-a-version").await, FleetVersion::NEWEST);
}
