//! The mass-deletion breaker (rancher/fleet#5406) against the API double: webhook
//! replicas with counting and the breaker on, talking to the double through real kube
//! clients; Leases, Events and faults in the double. Windows are the default 60 s (the
//! bursts take well under one), thresholds the defaults unless said.

mod support;

use std::time::{Duration, Instant};

use fleet_delete_guard::{
    breaker::{shared::Breakers, BreakerConfig, BreakerMode},
    fleet::{OwnerKind, OwnerRef},
};
use kube_api_double::{gvr, ApiDouble, Fault, Gvr, Options, ResourceDef, Verb};
use serde_json::{json, Value};
use support::fleet::{delete_review, fast_patcher, seed_many, CountingServer, BD_NAMESPACE};
use support::{post, ServerOptions};

const WAIT: Duration = Duration::from_secs(20);
const NS: &str = "cattle-fleet-system";
const LEASES: Gvr = Gvr::new_static("coordination.k8s.io", "v1", "leases");
const AGENT: &str = "system:serviceaccount:cattle-fleet-system:fleet-agent";
const AGENT_GROUPS: &[&str] = &[
    "system:serviceaccounts",
    "system:serviceaccounts:cattle-fleet-system",
    "system:authenticated",
];
const NS_CONTROLLER: &str = "system:serviceaccount:kube-system:namespace-controller";
const GC: &str = "system:serviceaccount:kube-system:generic-garbage-collector";

/// The double with Leases served and GitRepo `fleet-local/many` deploying `n` ConfigMaps.
/// `owner_label` relabels its BundleDeployment for another owner kind (`None`: a
/// Bundle-only owner; `Some(repo-name)`: as seeded).
async fn double_with(n: usize, owner_label: Option<&str>) -> ApiDouble {
    let double = ApiDouble::start(Options {
        extra_resources: vec![ResourceDef::builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
        )],
        ..Options::default()
    })
    .await;
    seed_many(&double, n);
    if owner_label != Some("fleet.cattle.io/repo-name") {
        let mut bd = double
            .get(&gvr::BUNDLEDEPLOYMENTS, BD_NAMESPACE, "many-config")
            .expect("bd");
        let labels = bd["metadata"]["labels"].as_object_mut().expect("labels");
        labels.remove("fleet.cattle.io/repo-name");
        if let Some(label) = owner_label {
            labels.insert(label.into(), json!("many"));
        }
        double.put_object(bd).expect("relabel");
    }
    double
}

fn config(mode: BreakerMode) -> BreakerConfig {
    BreakerConfig {
        mode,
        namespace: NS.into(),
        ..BreakerConfig::default()
    }
}

async fn replica(double: &ApiDouble, mode: BreakerMode, name: &str) -> (CountingServer, Breakers) {
    let (s, b) = CountingServer::start_with_breaker(
        double,
        fast_patcher(),
        ServerOptions::default(),
        config(mode),
        name,
    )
    .await;
    let s = s.synced().await;
    b.wait_synced().await;
    (s, b)
}

/// The review of deleting ConfigMap `cm-NNN` by `user` in `groups`.
fn review_by(double: &ApiDouble, i: usize, user: &str, groups: &[&str]) -> Value {
    let mut r = delete_review(
        double,
        &format!("cm-{i:03}"),
        user,
        &format!("r-{user}-{i}"),
    );
    r["request"]["userInfo"] = json!({"username": user, "groups": groups});
    r
}

/// The review of the agent deleting a cluster-scoped `kind` of the same bundle.
fn protected_review(kind: &str, group: &str, resource: &str, name: &str) -> Value {
    let set_id = "default-many-config";
    let hash = fleet_delete_guard::fleet::object_set_hash(set_id);
    let version = "v1";
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": format!("r-{kind}-{name}"),
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "name": name, "operation": "DELETE",
            "userInfo": {"username": AGENT, "groups": AGENT_GROUPS},
            "object": null,
            "oldObject": {
                "apiVersion": if group.is_empty() { "v1".to_string() } else { format!("{group}/v1") },
                "kind": kind,
                "metadata": {"name": name, "uid": format!("uid-{name}"),
                    "labels": {"objectset.rio.cattle.io/hash": hash},
                    "annotations": {"objectset.rio.cattle.io/id": set_id}}
            },
            "dryRun": false,
            "options": {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

async fn answer(s: &CountingServer, review: &Value) -> Value {
    let (status, text) = post(&s.server.client(), &s.server.url(), review.to_string()).await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str::<Value>(&text).expect("JSON")["response"].clone()
}

fn lease_name(owner: &OwnerRef) -> String {
    fleet_delete_guard::breaker::lease_name(owner)
}

async fn wait_open(b: &Breakers, owner: &OwnerRef, open: bool) -> Duration {
    let start = Instant::now();
    while b.open_breaker(owner).is_some() != open {
        assert!(
            start.elapsed() < WAIT,
            "breaker of {owner} never became open={open}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

async fn breaker_events(double: &ApiDouble, ns: &str, n: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let events: Vec<Value> = double
            .list(&gvr::EVENTS_K8S_IO, Some(ns))
            .into_iter()
            .filter(|e| e["reason"] == "BreakerTripped")
            .collect();
        if events.len() >= n {
            return events;
        }
        assert!(start.elapsed() < WAIT, "no BreakerTripped event in {ns}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_agent_deleting_100_objects_trips_in_enforce_replicas_agree_restart_keeps_reset_closes()
{
    let double = double_with(100, Some("fleet.cattle.io/repo-name")).await;
    let (a, breaker_a) = replica(&double, BreakerMode::Enforce, "replica-a").await;
    let (b, breaker_b) = replica(&double, BreakerMode::Enforce, "replica-b").await;
    let repo = OwnerRef::new(OwnerKind::GitRepo, "fleet-local", "many");

    // Fleet's agent deletes the GitRepo's 100 objects in one burst, all reviewed by replica a.
    let reviews: Vec<Value> = (0..100)
        .map(|i| review_by(&double, i, AGENT, AGENT_GROUPS))
        .collect();
    let start = Instant::now();
    let mut allowed = Vec::new();
    for r in &reviews {
        allowed.push(answer(&a, r).await["allowed"] == true);
    }
    let burst = start.elapsed();
    assert!(burst < Duration::from_secs(2), "the burst took {burst:?}");
    assert!(allowed[..20].iter().all(|a| *a), "the first 20 pass");
    assert!(
        allowed[20..].iter().all(|a| !*a),
        "the 21st and later are refused"
    );

    let denied = answer(&a, &reviews[50]).await;
    let msg = denied["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.contains("mass-deletion breaker open for Fleet GitRepo fleet-local/many"),
        "{msg}"
    );
    assert!(msg.contains("21 deletions within 60s (limit 20)"), "{msg}");
    assert!(
        msg.contains("configmap default/cm-050 by Fleet's agent refused"),
        "{msg}"
    );
    let reset = format!("kubectl -n {NS} delete lease breaker-gitrepo.fleet-local.many");
    assert!(msg.ends_with(&reset), "{msg}");
    assert_eq!(denied["auditAnnotations"]["decision"], "breaker-open");

    // Recorded in the cluster: one Lease, one Event on the GitRepo.
    let lease = double
        .wait_for(&LEASES, NS, &lease_name(&repo), |_| true, WAIT)
        .await
        .expect("lease");
    let ann = &lease["metadata"]["annotations"];
    assert_eq!(ann["delete-guard.fleet.cattle.io/owner-kind"], "GitRepo");
    assert_eq!(
        ann["delete-guard.fleet.cattle.io/reason"],
        "21 deletions within 60s (limit 20)"
    );
    assert_eq!(ann["delete-guard.fleet.cattle.io/tripped-by"], "replica-a");
    assert!(ann["delete-guard.fleet.cattle.io/last-deletion"]
        .as_str()
        .is_some_and(|l| l == format!("configmap default/cm-020 by {AGENT}")));
    let events = breaker_events(&double, "fleet-local", 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "Warning");
    assert_eq!(events[0]["regarding"]["kind"], "GitRepo");
    assert_eq!(events[0]["regarding"]["name"], "many");
    let note = events[0]["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("21 deletions within 60s") && note.contains(&reset),
        "{note}"
    );
    let text = a.metrics.encode();
    assert!(
        text.contains(r#"fleet_delete_guard_breaker_trips_total{owner_kind="GitRepo"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("fleet_delete_guard_breakers_open 1"),
        "{text}"
    );

    // Replica b, which reviewed nothing, agrees within a second (its Lease watch).
    let lag = wait_open(&breaker_b, &repo, true).await;
    assert!(
        lag < Duration::from_secs(1),
        "replica b saw it after {lag:?}"
    );
    assert_eq!(
        answer(&b, &review_by(&double, 60, AGENT, AGENT_GROUPS)).await["allowed"],
        false
    );
    let user = answer(
        &b,
        &review_by(&double, 61, "alice", &["system:authenticated"]),
    )
    .await;
    assert_eq!(user["allowed"], false, "users too");
    // Kubernetes controllers are never refused.
    for (i, who) in [(70, NS_CONTROLLER), (71, GC)] {
        let r = answer(&b, &review_by(&double, i, who, &["system:serviceaccounts"])).await;
        assert_eq!(r["allowed"], true, "{who}");
    }
    // A dry run gets the same answer.
    let mut dry = review_by(&double, 62, AGENT, AGENT_GROUPS);
    dry["request"]["dryRun"] = json!(true);
    assert_eq!(answer(&b, &dry).await["allowed"], false);

    // A restarted replica keeps it open: it lists the Leases before it is ready.
    a.server.stop().await;
    drop(breaker_a);
    let (c, breaker_c) = replica(&double, BreakerMode::Enforce, "replica-c").await;
    assert!(breaker_c.open_breaker(&repo).is_some());
    assert_eq!(
        answer(&c, &review_by(&double, 63, AGENT, AGENT_GROUPS)).await["allowed"],
        false
    );

    // The reset command (kubectl deletes the Lease) closes it everywhere.
    double
        .delete_object(&LEASES, NS, &lease_name(&repo))
        .expect("reset");
    for breaker in [&breaker_b, &breaker_c] {
        let lag = wait_open(breaker, &repo, false).await;
        assert!(lag < Duration::from_secs(1), "closed after {lag:?}");
    }
    assert_eq!(
        answer(&c, &review_by(&double, 64, AGENT, AGENT_GROUPS)).await["allowed"],
        true
    );
    assert_eq!(
        breaker_events(&double, "fleet-local", 1).await.len(),
        1,
        "one Event per trip"
    );
}

#[tokio::test]
async fn observe_reports_and_refuses_nothing() {
    let double = double_with(100, Some("fleet.cattle.io/repo-name")).await;
    let (a, _b) = replica(&double, BreakerMode::Observe, "replica-a").await;
    for i in 0..100 {
        let r = answer(&a, &review_by(&double, i, AGENT, AGENT_GROUPS)).await;
        assert_eq!(r["allowed"], true, "deletion {i}");
    }
    let repo = OwnerRef::new(OwnerKind::GitRepo, "fleet-local", "many");
    double
        .wait_for(&LEASES, NS, &lease_name(&repo), |_| true, WAIT)
        .await
        .expect("lease");
    let events = breaker_events(&double, "fleet-local", 1).await;
    let note = events[0]["note"].as_str().unwrap_or_default();
    assert!(note.contains("observe mode: nothing is refused"), "{note}");
    let r = answer(
        &a,
        &review_by(&double, 99, "alice", &["system:authenticated"]),
    )
    .await;
    assert_eq!(r["allowed"], true);
    assert!(
        r["auditAnnotations"]["breaker"]
            .as_str()
            .is_some_and(|b| b.starts_with("open: 21 deletions")),
        "{r}"
    );
}

#[tokio::test]
async fn a_helmop_trips_at_once_when_the_agent_deletes_a_protected_kind() {
    let double = double_with(3, Some("fleet.cattle.io/fleet-helm-name")).await;
    let (a, breaker) = replica(&double, BreakerMode::Enforce, "replica-a").await;
    let op = OwnerRef::new(OwnerKind::HelmOp, "fleet-local", "many");
    for (kind, group, resource, name) in [
        (
            "CustomResourceDefinition",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "widgets.example.com",
        ),
        ("Namespace", "", "namespaces", "prod"),
    ] {
        let r = answer(&a, &protected_review(kind, group, resource, name)).await;
        assert_eq!(r["allowed"], false, "{kind}: {r}");
        let msg = r["status"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("Fleet HelmOp fleet-local/many"), "{msg}");
        assert!(
            msg.contains("Fleet's agent deleted customresourcedefinition widgets.example.com (protected kind)"),
            "{msg}"
        );
    }
    assert!(breaker.open_breaker(&op).is_some());
    let events = breaker_events(&double, "fleet-local", 1).await;
    assert_eq!(events[0]["regarding"]["kind"], "HelmOp");
    double
        .wait_for(
            &LEASES,
            NS,
            "breaker-helmop.fleet-local.many",
            |_| true,
            WAIT,
        )
        .await
        .expect("lease");
}

#[tokio::test]
async fn a_bundle_only_owner_trips_like_the_others_and_a_failed_lease_write_is_retried() {
    let double = double_with(30, None).await;
    // The first two Lease creations are refused (RBAC): the breaker stays open on this replica and
    // is recorded once the API lets it.
    double.inject(Fault::new(Verb::Create, "leases").times(2).respond(403));
    let (a, breaker) = replica(&double, BreakerMode::Enforce, "replica-a").await;
    let bundle = OwnerRef::new(OwnerKind::Bundle, "fleet-local", "many-config");
    let allowed: Vec<bool> = {
        let mut out = Vec::new();
        for i in 0..30 {
            out.push(
                answer(&a, &review_by(&double, i, AGENT, AGENT_GROUPS)).await["allowed"] == true,
            );
        }
        out
    };
    // desiredReady 30: more than half (the 16th) trips before the 21st would.
    assert_eq!(allowed.iter().filter(|a| **a).count(), 15, "{allowed:?}");
    let msg = answer(&a, &review_by(&double, 25, "alice", &[])).await["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.contains("Fleet Bundle fleet-local/many-config"),
        "{msg}"
    );
    assert!(
        msg.ends_with("delete lease breaker-bundle.fleet-local.many-config"),
        "{msg}"
    );
    double
        .wait_for(&LEASES, NS, &lease_name(&bundle), |_| true, WAIT)
        .await
        .expect("recorded after the retries");
    support::wait_until("the breaker recorded", WAIT, || {
        breaker.open_breaker(&bundle).is_some_and(|b| b.recorded)
    })
    .await;
    assert!(double.count(Verb::Create, "leases", None) >= 3);
    assert!(a
        .metrics
        .encode()
        .contains(r#"fleet_delete_guard_errors_total{kind="breaker_lease"} 2"#));
    let events = breaker_events(&double, "fleet-local", 1).await;
    assert_eq!(events[0]["regarding"]["kind"], "Bundle");
    assert_eq!(events[0]["regarding"]["name"], "many-config");
}
