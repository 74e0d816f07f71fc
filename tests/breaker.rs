//! The mass-deletion breaker (rancher/fleet#5406) against the API double: webhook
//! replicas with counting and the breaker on, talking to the double through real kube
//! clients; Leases, Events and faults in the double. Windows are the default 60 s (the
//! bursts take well under one), thresholds the defaults unless said.

#[path = "support/kubectl.rs"]
mod kubectl;
mod support;

use std::time::{Duration, Instant};

use fleet_delete_guard::{
    breaker::{counts::COUNTS_LEASE, shared::Breakers, BreakerConfig, BreakerMode},
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

/// [`double_with`] whose counts Lease exists already (its writes are patches, not
/// creations): every Lease creation is then a breaker's.
async fn double_with_counts_lease(n: usize) -> ApiDouble {
    let double = double_with(n, None).await;
    double
        .seed(
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": COUNTS_LEASE, "namespace": NS}}),
        )
        .expect("counts lease");
    double
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

/// The refusal's message (empty when allowed).
async fn refusal(s: &CountingServer, review: &Value) -> String {
    answer(s, review).await["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn answer(s: &CountingServer, review: &Value) -> Value {
    let (status, text) = post(&s.server.client(), &s.server.url(), review.to_string()).await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str::<Value>(&text).expect("JSON")["response"].clone()
}

fn lease_name(owner: &OwnerRef) -> String {
    fleet_delete_guard::breaker::lease_name(owner)
}

async fn wait_open(b: &Breakers, owner: &OwnerRef, open: bool) {
    support::wait_until(&format!("breaker of {owner} open={open}"), WAIT, || {
        b.open_breaker(owner).is_some() == open
    })
    .await;
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
    let mut allowed = Vec::new();
    for r in &reviews {
        allowed.push(answer(&a, r).await["allowed"] == true);
    }
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

    // Replica b, which reviewed nothing, agrees (its Lease watch).
    wait_open(&breaker_b, &repo, true).await;
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
        wait_open(breaker, &repo, false).await;
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

/// A replica without the right to create Leases keeps its breaker open (degraded), and
/// its refusals say that the reset command finds no Lease and that a restart resets it.
#[tokio::test]
async fn while_its_lease_cannot_be_written_the_refusal_says_what_resets_it() {
    let double = double_with_counts_lease(30).await;
    double.inject(Fault::new(Verb::Create, "leases").always().respond(403));
    let (a, breaker) = replica(&double, BreakerMode::Enforce, "replica-a").await;
    for i in 0..16 {
        answer(&a, &review_by(&double, i, AGENT, AGENT_GROUPS)).await;
    }
    let bundle = OwnerRef::new(OwnerKind::Bundle, "fleet-local", "many-config");
    assert!(breaker.open_breaker(&bundle).is_some(), "tripped");
    // The recording task marks the breaker before it reports the degradation.
    support::wait_until("degraded", WAIT, || breaker.degradation().is_degraded()).await;
    let msg = refusal(&a, &review_by(&double, 20, "alice", &[])).await;
    assert!(
        msg.ends_with(
            "delete lease breaker-bundle.fleet-local.many-config (its Lease could not be \
             written yet, so this finds none: this replica's log says why, and restarting \
             the replica resets its breaker)"
        ),
        "{msg}"
    );
    assert!(double.count(Verb::Create, "leases", None) >= 1);
    assert!(double.get(&LEASES, NS, &lease_name(&bundle)).is_none());
}

#[tokio::test]
async fn a_bundle_only_owner_trips_like_the_others_and_a_failed_lease_write_is_retried() {
    let double = double_with_counts_lease(30).await;
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
    let msg = refusal(&a, &review_by(&double, 25, "alice", &[])).await;
    assert!(
        msg.contains("Fleet Bundle fleet-local/many-config"),
        "{msg}"
    );
    // The command, with or without the note that its Lease could not be written yet
    // (whether the first refused creation came before this review is timing).
    assert!(
        msg.contains("delete lease breaker-bundle.fleet-local.many-config"),
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
    // Recorded: the command alone.
    let msg = refusal(&a, &review_by(&double, 26, "alice", &[])).await;
    assert!(
        msg.ends_with("delete lease breaker-bundle.fleet-local.many-config"),
        "{msg}"
    );
    assert!(double.count(Verb::Create, "leases", None) >= 3);
    // Degraded while the creation was refused, no longer once it went through.
    support::wait_until("not degraded", WAIT, || {
        !breaker.degradation().is_degraded()
    })
    .await;
    assert!(a
        .metrics
        .encode()
        .contains("fleet_delete_guard_breaker_degraded 0"));
    assert!(a
        .metrics
        .encode()
        .contains(r#"fleet_delete_guard_errors_total{kind="breaker_lease"} 2"#));
    let events = breaker_events(&double, "fleet-local", 1).await;
    assert_eq!(events[0]["regarding"]["kind"], "Bundle");
    assert_eq!(events[0]["regarding"]["name"], "many-config");
}

// --- replicas share the window (issue 25) ---------------------------------------------

/// Seeds of the spread of a burst over the replicas: `BREAKER_SEEDS=1,2,…` or five.
fn seeds() -> Vec<u64> {
    std::env::var("BREAKER_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 3, 4, 5])
}

/// xorshift64*: the order within each round of an even spread.
struct Spread(u64);

impl Spread {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }

    /// Each round sends one deletion to each of `r` replicas, in a shuffled order.
    fn rounds(&mut self, r: usize, n: usize) -> Vec<usize> {
        let mut out = Vec::new();
        while out.len() < n {
            let mut round: Vec<usize> = (0..r).collect();
            for i in (1..r).rev() {
                round.swap(i, self.next(i + 1));
            }
            out.extend(round);
        }
        out.truncate(n);
        out
    }
}

#[tokio::test]
async fn a_burst_spread_evenly_over_three_replicas_trips_within_max_deletions_plus_three() {
    const R: usize = 3;
    const N: usize = 60;
    let max = BreakerConfig::default().max_deletions as usize;
    let repo = OwnerRef::new(OwnerKind::GitRepo, "fleet-local", "many");
    for seed in seeds() {
        // Odd seeds send each round's R deletions at once (their writes coalesce and
        // race), even seeds one after the other.
        let concurrent = seed % 2 == 1;
        let double = double_with(N, Some("fleet.cattle.io/repo-name")).await;
        let mut replicas = Vec::new();
        for name in ["replica-a", "replica-b", "replica-c"] {
            replicas.push(replica(&double, BreakerMode::Enforce, name).await);
        }
        assert_eq!(
            double.count(Verb::Patch, "leases", None) + double.count(Verb::Create, "leases", None),
            0,
            "no write before the first deletion"
        );
        let order = Spread(seed).rounds(R, N);
        let reviews: Vec<Value> = (0..N)
            .map(|i| review_by(&double, i, AGENT, AGENT_GROUPS))
            .collect();
        let mut allowed = Vec::new();
        for round in (0..N).collect::<Vec<_>>().chunks(R) {
            if concurrent {
                let answers = futures::future::join_all(
                    round
                        .iter()
                        .map(|&i| answer(&replicas[order[i]].0, &reviews[i])),
                )
                .await;
                allowed.extend(answers.iter().map(|a| a["allowed"] == true));
            } else {
                for &i in round {
                    allowed
                        .push(answer(&replicas[order[i]].0, &reviews[i]).await["allowed"] == true);
                }
            }
        }
        let admitted = allowed.iter().filter(|a| **a).count();
        let first_refused = allowed.iter().position(|a| !*a);
        assert!(
            first_refused.is_some_and(|i| i < max + R),
            "seed {seed} (concurrent {concurrent}): the burst tripped at deletion {:?}, not \
             within {max} + {R}: {allowed:?}",
            first_refused.map(|i| i + 1)
        );
        assert!(
            admitted <= max + R,
            "seed {seed}: {admitted} deletions admitted"
        );
        assert!(
            allowed[max + R..].iter().all(|a| !*a),
            "seed {seed}: refused once tripped, on every replica: {allowed:?}"
        );
        eprintln!(
            "seed {seed} (concurrent {concurrent}): tripped at deletion {}, {admitted} admitted",
            first_refused.map_or(0, |i| i + 1)
        );
        // Every replica's window is in the counts Lease; none is degraded.
        let counts = double.get(&LEASES, NS, COUNTS_LEASE).expect("counts lease");
        let annotations = counts["metadata"]["annotations"]
            .as_object()
            .expect("annotations");
        for name in ["replica-a", "replica-b", "replica-c"] {
            assert!(
                annotations.contains_key(&format!("delete-guard.fleet.cattle.io/counts.{name}")),
                "{name}: {annotations:?}"
            );
        }
        for (s, b) in &replicas {
            assert!(!b.degradation().is_degraded(), "{:?}", b.degradation());
            assert!(
                !s.metrics
                    .encode()
                    .contains(r#"fleet_delete_guard_breaker_count_writes_total{result="ok"} 0"#),
                "every replica wrote its counts"
            );
            wait_open(b, &repo, true).await;
        }
    }
}

#[tokio::test]
async fn a_reset_starts_the_shared_window_afresh_on_every_replica() {
    let double = double_with(60, Some("fleet.cattle.io/repo-name")).await;
    let (a, breaker_a) = replica(&double, BreakerMode::Enforce, "replica-a").await;
    let (b, breaker_b) = replica(&double, BreakerMode::Enforce, "replica-b").await;
    let repo = OwnerRef::new(OwnerKind::GitRepo, "fleet-local", "many");
    // 10 deletions on each: the 21st (on a) trips.
    for i in 0..20 {
        let s = if i % 2 == 0 { &a } else { &b };
        let r = answer(s, &review_by(&double, i, AGENT, AGENT_GROUPS)).await;
        assert_eq!(r["allowed"], true, "deletion {i}");
    }
    let r = answer(&a, &review_by(&double, 20, AGENT, AGENT_GROUPS)).await;
    assert_eq!(r["allowed"], false);
    let msg = r["status"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("21 deletions within 60s (limit 20)"), "{msg}");
    double
        .wait_for(&LEASES, NS, &lease_name(&repo), |_| true, WAIT)
        .await
        .expect("lease");
    wait_open(&breaker_b, &repo, true).await;

    // Reset: both replicas forget the 21 deletions, their own and each other's.
    double
        .delete_object(&LEASES, NS, &lease_name(&repo))
        .expect("reset");
    wait_open(&breaker_a, &repo, false).await;
    wait_open(&breaker_b, &repo, false).await;
    for i in 21..41 {
        let s = if i % 2 == 0 { &a } else { &b };
        let r = answer(s, &review_by(&double, i, AGENT, AGENT_GROUPS)).await;
        assert_eq!(r["allowed"], true, "deletion {i} after the reset: {r}");
    }
    let r = answer(&b, &review_by(&double, 41, AGENT, AGENT_GROUPS)).await;
    assert_eq!(r["allowed"], false, "the 21st after the reset");
}

#[tokio::test]
async fn a_failing_lease_api_degrades_the_breaker_to_this_replica_and_recovers() {
    let double = double_with(40, Some("fleet.cattle.io/repo-name")).await;
    let (a, breaker) = replica(&double, BreakerMode::Enforce, "replica-a").await;
    // Every Lease write fails (the counts and the trip's record).
    let fault = double.inject(Fault::new(Verb::Patch, "leases").always().respond(500));
    let create = double.inject(Fault::new(Verb::Create, "leases").always().respond(500));
    let mut allowed = Vec::new();
    for i in 0..25 {
        allowed
            .push(answer(&a, &review_by(&double, i, AGENT, AGENT_GROUPS)).await["allowed"] == true);
    }
    // Judged on this replica's count: the 21st trips all the same.
    assert_eq!(allowed.iter().filter(|a| **a).count(), 20, "{allowed:?}");
    assert!(breaker.degradation().is_degraded());
    let report = a.readiness.report();
    assert!(a.readiness.is_ready(), "{report}");
    assert!(
        report.contains("[+]breaker ok: degraded: cannot share window counts ("),
        "{report}"
    );
    let text = a.metrics.encode();
    assert!(
        text.contains("fleet_delete_guard_breaker_degraded 1"),
        "{text}"
    );
    assert!(
        !text.contains(r#"fleet_delete_guard_breaker_count_writes_total{result="failed"} 0"#),
        "{text}"
    );
    // The API works again: the retries go through, the breaker is shared again.
    double.remove_fault(fault);
    double.remove_fault(create);
    support::wait_until("recovered", Duration::from_secs(90), || {
        !breaker.degradation().is_degraded()
    })
    .await;
    assert!(a
        .readiness
        .report()
        .contains("window counts shared in Lease"));
    assert!(a
        .metrics
        .encode()
        .contains("fleet_delete_guard_breaker_degraded 0"));
}

// --- degrade, don't block (issue 25) -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_lease_rights_the_webhook_is_ready_and_its_breaker_judges_alone_degraded() {
    // 60 objects: the count rule (21st deletion) trips before the fraction rule would.
    let double = double_with(60, Some("fleet.cattle.io/repo-name")).await;
    // deploy/base's RBAC without the breaker's Role: no Lease rights at all.
    let rbac = std::fs::read_to_string(kubectl::root().join("deploy/base/rbac.yaml"))
        .expect("deploy/base/rbac.yaml");
    let mut skipped = 0;
    for obj in kubectl::parse_yaml_stream(&rbac) {
        if obj["metadata"]["name"] == "fleet-delete-guard-breaker" {
            skipped += 1;
            continue;
        }
        double.seed(obj).expect("seed RBAC");
    }
    assert_eq!(skipped, 2, "the breaker's Role and RoleBinding");
    let sa = kube_api_double::UserInfo::service_account(NS, "fleet-delete-guard");
    let sa_name = sa.username.clone();
    double.add_token("webhook-token", sa);
    double.enforce_rbac(true);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    double
        .write_kubeconfig_for(&kubeconfig, "webhook-token", NS)
        .expect("kubeconfig");
    let certs = support::certificates();
    let files = support::write_pair(dir.path(), &certs);
    let process = support::ServeProcess::spawn(
        &files,
        &["--breaker", "enforce"],
        &[
            ("KUBECONFIG", kubeconfig.as_os_str()),
            ("POD_NAMESPACE", std::ffi::OsStr::new(NS)),
            ("RUST_LOG", std::ffi::OsStr::new("info")),
        ],
    );
    let logs = process.wait_logs(&[
        "fleet-delete-guard serving",
        "mass-deletion breaker degraded: cannot list or watch breaker Leases",
    ]);
    let _process = Killed(process.drain_log());
    assert_eq!(logs[1]["level"], "ERROR", "{}", logs[1]);
    let addr = |k: &str| -> std::net::SocketAddr {
        logs[0][k].as_str().expect(k).parse().expect("address")
    };
    let (webhook, metrics) = (addr("listen"), addr("metrics_listen"));

    // Ready, saying the breaker is degraded.
    let plain = reqwest::Client::new();
    let start = Instant::now();
    let readyz = loop {
        if let Ok(r) = plain.get(format!("http://{metrics}/readyz")).send().await {
            if r.status().is_success() {
                break r.text().await.expect("readyz text");
            }
        }
        assert!(start.elapsed() < WAIT, "the webhook never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let line = readyz
        .lines()
        .find(|l| l.starts_with("[+]breaker ok: degraded: cannot list or watch breaker Leases ("))
        .unwrap_or_else(|| panic!("{readyz}"));
    assert!(line.contains("forbidden"), "{line}");
    assert!(
        line.ends_with("breakers judged on this replica's reviews only"),
        "{line}"
    );
    let text = plain
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains("fleet_delete_guard_breaker_degraded 1"),
        "{text}"
    );

    // Reviews go on, and the breaker trips on this replica's own count.
    let client = support::https_client(&certs.ca_pem);
    let url = format!("https://localhost:{}/validate", webhook.port());
    let mut allowed = Vec::new();
    for i in 0..25 {
        let (status, text) = post(
            &client,
            &url,
            review_by(&double, i, AGENT, AGENT_GROUPS).to_string(),
        )
        .await;
        assert_eq!(status, 200, "{text}");
        let v: Value = serde_json::from_str(&text).expect("JSON");
        allowed.push(v["response"]["allowed"] == true);
    }
    assert_eq!(allowed.iter().filter(|a| **a).count(), 20, "{allowed:?}");
    // What RBAC refused: the Leases, nothing else.
    let refused: Vec<String> = double
        .forbidden_requests()
        .into_iter()
        .filter(|r| r.user.as_deref() == Some(sa_name.as_str()))
        .map(|r| r.resource().to_string())
        .collect();
    assert!(refused.iter().any(|r| r == "leases"), "{refused:?}");
    assert!(refused.iter().all(|r| r == "leases"), "{refused:?}");
}

/// A child process killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
