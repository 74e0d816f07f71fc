//! Counting deletions in Fleet's status: the real server over TLS, real kube clients,
//! the Kubernetes API double imitating Fleet.

#[path = "support/kubectl.rs"]
mod kubectl;
mod support;

use std::time::Duration;

use futures::{stream, StreamExt};
use kube_api_double::{gvr, ApiDouble, Fault, Verb};
use serde_json::{json, Value};
use support::fleet::{
    bundle_deployment, delete_review, fast_patcher, gitrepo, imitate_gitrepo_status_controller,
    many_review, missing, ready_of_desired, seed_many, seeded_double, without_volatile,
    CountingServer, BD_NAMESPACE,
};
use support::{fixture_json, post, TestServer};

const WAIT: Duration = Duration::from_secs(20);

async fn answer(server: &TestServer, review: &Value) -> Value {
    let (status, text) = post(&server.client(), &server.url(), review.to_string()).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("JSON answer");
    v["response"].clone()
}

/// What kube-apiserver does: review, then delete when allowed.
async fn delete(
    double: &ApiDouble,
    server: &TestServer,
    name: &str,
    user: &str,
    uid: &str,
) -> Value {
    let review = delete_review(double, name, user, uid);
    let r = answer(server, &review).await;
    if r["allowed"] == true && review["request"]["dryRun"] != true {
        double.delete_object(&gvr::CONFIGMAPS, "default", name);
    }
    r
}

/// BundleDeployment `name` from a fixture list.
fn fixture_bd(file: &str, name: &str) -> Value {
    let list = fixture_json(file);
    list["items"]
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .find(|bd| bd["metadata"]["name"] == name)
                .cloned()
        })
        .expect("fixture BD")
}

async fn wait_repo(double: &ApiDouble, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    double
        .wait_for(&gvr::GITREPOS, "fleet-local", "lots", pred, WAIT)
        .await
        .unwrap_or_else(|t| panic!("{what}: {t}"))
}

/// Waits until BundleDeployment `name` of this cluster counts `missing` missing.
async fn wait_bd_missing(double: &ApiDouble, name: &str, missing: i64, what: &str) -> Value {
    double
        .wait_for(
            &gvr::BUNDLEDEPLOYMENTS,
            BD_NAMESPACE,
            name,
            |bd| bd["status"]["resourceCounts"]["missing"] == missing,
            WAIT,
        )
        .await
        .unwrap_or_else(|t| panic!("{name} {what}: {t}"))
}

#[tokio::test]
async fn one_delete_is_counted_at_once_exactly_as_fleet_would() {
    let double = seeded_double().await;
    imitate_gitrepo_status_controller(&double, Duration::ZERO);
    let s = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;

    let r = delete(&double, &s.server, "test-config2-one", "alice", "review-1").await;
    assert_eq!(r["allowed"], true);
    let first = r["warnings"][0].as_str().unwrap_or_default();
    assert!(
        first.contains("Fleet GitRepo fleet-local/lots (bundle lots-config2)"),
        "{first}"
    );
    assert_eq!(r["auditAnnotations"]["gitrepo"], "fleet-local/lots");
    assert_eq!(r["auditAnnotations"]["bundle"], "lots-config2");

    wait_repo(&double, "10/11", |repo| ready_of_desired(repo) == "10/11").await;
    double
        .wait_hooks_idle(WAIT)
        .await
        .expect("Fleet imitation settles");

    // Fleet recomputed the GitRepo from the BundleDeployments and still says 10/11.
    let repo = gitrepo(&double);
    assert_eq!(ready_of_desired(&repo), "10/11");
    assert_eq!(repo["status"]["display"]["readyBundleDeployments"], "2/3");
    let expected_repo = fixture_json("gitrepo-lots-after-delete.json");
    assert_eq!(
        without_volatile(repo["status"].clone()),
        without_volatile(expected_repo["status"].clone()),
        "GitRepo status equals Fleet's own after-resync status"
    );
    let bd = bundle_deployment(&double, "lots-config2");
    assert_eq!(
        without_volatile(bd["status"].clone()),
        without_volatile(expected_bd("lots-config2")["status"].clone()),
        "BundleDeployment status equals the agent's after-resync status"
    );
    // The other BundleDeployments are untouched.
    assert_eq!(
        without_volatile(bundle_deployment(&double, "lots-config1")["status"].clone()),
        without_volatile(expected_bd("lots-config1")["status"].clone())
    );

    // An Event on the GitRepo says who deleted what.
    let events = double
        .wait_for_count(Verb::Create, "events", None, 1, WAIT)
        .await
        .expect("event created");
    assert!(events >= 1);
    let event = double
        .list(&gvr::EVENTS_K8S_IO, Some("fleet-local"))
        .into_iter()
        .find(|e| e["reason"] == "ResourceDeleted")
        .expect("ResourceDeleted event");
    assert_eq!(event["regarding"]["name"], "lots");
    assert_eq!(event["regarding"]["kind"], "GitRepo");
    let note = event["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("configmap default/test-config2-one deleted by alice"),
        "{note}"
    );
    assert!(
        note.contains("counted as missing in bundle lots-config2 on cluster fleet-local/local"),
        "{note}"
    );
    assert_eq!(event["type"], "Warning");
    // One Event per GitRepo and batch, not per object: no related object.
    assert!(event["related"].is_null(), "{event}");
    assert_eq!(
        double.list(&gvr::EVENTS_K8S_IO, Some("fleet-local")).len(),
        1
    );
    let published = s.metrics.clone();
    support::wait_until("event counted as published", WAIT, || {
        published
            .encode()
            .contains(r#"fleet_delete_guard_events_total{result="published"} 1"#)
    })
    .await;

    let metrics = s.metrics.encode();
    assert!(
        metrics.contains("fleet_delete_guard_status_lag_seconds_count 1"),
        "{metrics}"
    );
    assert!(metrics.contains(r#"fleet_delete_guard_status_patches_total{object="bundledeployment",result="patched"} 1"#), "{metrics}");
}

#[tokio::test]
async fn the_same_deletion_reviewed_three_times_is_counted_once() {
    let double = seeded_double().await;
    let s = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    let review = delete_review(&double, "test-config1-one", "alice", "r");
    for uid in ["r-1", "r-2", "r-3"] {
        let mut again = review.clone();
        again["request"]["uid"] = uid.into();
        let r = answer(&s.server, &again).await;
        assert_eq!(r["uid"], uid);
    }
    double.delete_object(&gvr::CONFIGMAPS, "default", "test-config1-one");
    wait_repo(&double, "missing 1", |repo| missing(repo) == 1).await;
    // Wait for the mark to be confirmed (object seen gone), then check nothing moved.
    support::wait_until("confirmed", WAIT, || s.counting.patcher.marks_len() == 1).await;
    let bd = bundle_deployment(&double, "lots-config1");
    assert_eq!(bd["status"]["resourceCounts"]["missing"], 1);
    assert_eq!(bd["status"]["resourceCounts"]["ready"], 3);
    assert_eq!(ready_of_desired(&gitrepo(&double)), "10/11");
}

#[tokio::test]
async fn dry_run_and_fleet_own_deletions_are_never_patched_but_controllers_count() {
    let double = seeded_double().await;
    let s = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;

    let mut dry = delete_review(&double, "test-config1-two", "alice", "dry");
    dry["request"]["dryRun"] = true.into();
    assert_eq!(answer(&s.server, &dry).await["allowed"], true);

    let mut agent = delete_review(&double, "test-config1-three", "x", "agent");
    agent["request"]["userInfo"] =
        fixture_json("admissionreview-delete-by-fleet-agent.json")["request"]["userInfo"].clone();
    assert_eq!(answer(&s.server, &agent).await["allowed"], true);
    double.delete_object(&gvr::CONFIGMAPS, "default", "test-config1-three");

    // The namespace controller deleting a Fleet object is counted (and acts as a barrier:
    // the work queued before it has been handled once it shows).
    let mut ns = delete_review(&double, "test-config3-one", "x", "ns-controller");
    ns["request"]["name"] = "".into();
    ns["request"]["userInfo"] = json!({
        "username": "system:serviceaccount:kube-system:namespace-controller",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]
    });
    let r = answer(&s.server, &ns).await;
    assert_eq!(r["allowed"], true);
    assert!(r.get("warnings").is_none(), "no human to warn: {r}");
    double.delete_object(&gvr::CONFIGMAPS, "default", "test-config3-one");

    wait_repo(&double, "controller deletion counted", |repo| {
        missing(repo) == 1
    })
    .await;
    let bd1 = bundle_deployment(&double, "lots-config1");
    assert_eq!(
        bd1["status"]["resourceCounts"]["missing"], 0,
        "dry run and Fleet's own deletion not counted"
    );
    assert_eq!(
        double.count_where(|r| r.verb == Verb::Patch && r.name.as_deref() == Some("lots-config1")),
        0,
        "no patch at all for lots-config1"
    );
    assert_eq!(
        bundle_deployment(&double, "lots-config3")["status"]["resourceCounts"]["missing"],
        1
    );
}

#[tokio::test]
async fn conflicts_and_server_errors_still_give_exact_counts() {
    let double = seeded_double().await;
    imitate_gitrepo_status_controller(&double, Duration::ZERO);
    double.inject(
        Fault::new(Verb::Patch, "bundledeployments")
            .subresource("status")
            .times(3)
            .respond(409),
    );
    double.inject(
        Fault::new(Verb::Patch, "gitrepos")
            .subresource("status")
            .times(2)
            .respond(409),
    );
    double.inject(
        Fault::new(Verb::Patch, "gitrepos")
            .subresource("status")
            .times(2)
            .respond(500),
    );
    double.inject(
        Fault::new(Verb::Get, "bundledeployments")
            .subresource("status")
            .times(2)
            .respond(503),
    );
    let s = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    for (i, name) in ["test-config1-one", "test-config2-two", "test-config3-three"]
        .iter()
        .enumerate()
    {
        delete(&double, &s.server, name, "alice", &format!("r-{i}")).await;
    }
    let repo = wait_repo(&double, "8/11", |repo| ready_of_desired(repo) == "8/11").await;
    assert_eq!(missing(&repo), 3);
    double.wait_hooks_idle(WAIT).await.expect("settled");
    assert_eq!(ready_of_desired(&gitrepo(&double)), "8/11");
    let metrics = s.metrics.encode();
    assert!(
        metrics.contains("fleet_delete_guard_status_conflicts_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fleet_delete_guard_status_retries_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn forbidden_patches_are_counted_in_a_metric_and_not_retried_forever() {
    let double = seeded_double().await;
    double.inject(
        Fault::new(Verb::Patch, "bundledeployments")
            .subresource("status")
            .always()
            .respond(403),
    );
    let s = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    delete(&double, &s.server, "test-config1-one", "alice", "r").await;
    let metrics = s.metrics.clone();
    support::wait_until("403 counted", WAIT, || {
        metrics.encode().contains(r#"fleet_delete_guard_status_patches_total{object="bundledeployment",result="failed"} 1"#)
    })
    .await;
    assert_eq!(
        double.count(Verb::Patch, "bundledeployments", Some("status")),
        1,
        "a 403 is not retried"
    );
    assert_eq!(missing(&gitrepo(&double)), 0);
}

#[tokio::test]
async fn five_hundred_concurrent_deletions_are_counted_exactly_with_few_patches() {
    let double = ApiDouble::start(kube_api_double::Options::default()).await;
    support::fleet::seed_many(&double, 500);
    let s = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    let client = s.server.client();
    let url = s.server.url();
    let reviews: Vec<(String, Value)> = (0..500usize)
        .map(|i| {
            let name = format!("cm-{i:03}");
            (
                name.clone(),
                support::fleet::many_review(&double, &name, &format!("r-{i}")),
            )
        })
        .collect();
    stream::iter(reviews)
        .for_each_concurrent(64, |(name, review)| {
            let client = client.clone();
            let url = url.clone();
            let double = &double;
            async move {
                let (status, _) = post(&client, &url, review.to_string()).await;
                assert_eq!(status, 200);
                double.delete_object(&gvr::CONFIGMAPS, "default", &name);
            }
        })
        .await;
    let repo = double
        .wait_for(
            &gvr::GITREPOS,
            "fleet-local",
            "many",
            |r| missing(r) == 500,
            WAIT,
        )
        .await
        .expect("500 missing");
    assert_eq!(ready_of_desired(&repo), "0/500");
    let bd = double
        .get(&gvr::BUNDLEDEPLOYMENTS, BD_NAMESPACE, "many-config")
        .expect("bd");
    assert_eq!(bd["status"]["resourceCounts"]["missing"], 500);
    assert_eq!(bd["status"]["resourceCounts"]["ready"], 0);
    let patches = double.count(Verb::Patch, "bundledeployments", Some("status"));
    assert!(
        patches < 100,
        "coalesced: {patches} BundleDeployment patches for 500 deletions"
    );
    assert!(s
        .metrics
        .encode()
        .contains("fleet_delete_guard_coalesced_deletions_total"));
}

#[tokio::test]
async fn a_deletion_refused_elsewhere_is_reverted() {
    let double = seeded_double().await;
    let s = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    // Allowed by us, but another webhook refuses it: the object stays.
    let r = answer(
        &s.server,
        &delete_review(&double, "test-config2-two", "alice", "r"),
    )
    .await;
    assert_eq!(r["allowed"], true);
    wait_repo(&double, "marked", |repo| missing(repo) == 1).await;
    let repo = wait_repo(&double, "reverted", |repo| missing(repo) == 0).await;
    assert_eq!(ready_of_desired(&repo), "11/11");
    let bd = bundle_deployment(&double, "lots-config2");
    assert_eq!(
        without_volatile(bd["status"].clone()),
        without_volatile(fixture_bd_before("lots-config2")["status"].clone()),
        "the BundleDeployment is back to what it was"
    );
    assert!(s
        .metrics
        .encode()
        .contains("fleet_delete_guard_reverts_total 1"));
    // The existence check reads metadata only: the ConfigMap's data never travels.
    let checks: Vec<_> = double
        .requests()
        .into_iter()
        .filter(|r| r.verb == Verb::Get && r.name.as_deref() == Some("test-config2-two"))
        .collect();
    assert!(!checks.is_empty(), "the deleted object was looked at");
    for r in checks {
        let accept = r.accept.unwrap_or_default();
        assert!(accept.contains("as=PartialObjectMetadata"), "{accept}");
    }
}

fn expected_bd(name: &str) -> Value {
    fixture_bd("bundledeployments-lots-after-delete.json", name)
}

fn fixture_bd_before(name: &str) -> Value {
    fixture_bd("bundledeployments-lots.json", name)
}

#[tokio::test]
async fn a_stale_writer_dropping_the_mark_is_answered_by_reapplying_it() {
    let double = seeded_double().await;
    let s = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    delete(&double, &s.server, "test-config2-one", "alice", "r").await;
    wait_bd_missing(&double, "lots-config2", 1, "marked").await;
    support::wait_until("mark confirmed", WAIT, || {
        s.counting.patcher.marks_len() == 1
    })
    .await;
    // A Fleet agent older than the upstream fix rewrites the status it computes:
    // 3 live resources, all ready, nothing missing.
    let before = fixture_bd_before("lots-config2");
    let mut stale = before["status"].clone();
    stale["resources"]
        .as_array_mut()
        .expect("resources")
        .retain(|r| r["name"] != "test-config2-one");
    stale["resourceCounts"] = json!({"ready": 3, "desiredReady": 3, "waitApplied": 0, "modified": 0, "orphaned": 0, "missing": 0, "unknown": 0, "notReady": 0});
    // Its merge patch, computed against its own cache, removes what it does not know.
    stale["modifiedStatus"] = Value::Null;
    double
        .merge_patch_object(
            &gvr::BUNDLEDEPLOYMENTS,
            BD_NAMESPACE,
            "lots-config2",
            json!({ "status": stale }),
        )
        .expect("stale write");
    let bd = wait_bd_missing(&double, "lots-config2", 1, "mark restored").await;
    assert_eq!(
        bd["status"]["modifiedStatus"][0]["name"],
        "test-config2-one"
    );
    let metrics = s.metrics.clone();
    support::wait_until("re-apply counted", WAIT, || {
        metrics
            .encode()
            .contains("fleet_delete_guard_reapplied_marks_total 1")
    })
    .await;
}

#[tokio::test]
async fn a_resource_that_comes_back_is_unmarked() {
    let double = seeded_double().await;
    let s = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    let original = double
        .get(&gvr::CONFIGMAPS, "default", "test-config3-two")
        .expect("cm");
    delete(&double, &s.server, "test-config3-two", "alice", "r").await;
    wait_repo(&double, "marked", |repo| missing(repo) == 1).await;
    // Re-created (by hand, or by Fleet's drift correction): a new uid.
    let mut again = original.clone();
    again["metadata"]["uid"] = "00000000-0000-0000-0000-00000000beef".into();
    again["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("resourceVersion");
    double.seed(again).expect("re-create");
    let repo = wait_repo(&double, "unmarked", |repo| missing(repo) == 0).await;
    assert_eq!(ready_of_desired(&repo), "11/11");
    assert!(s
        .metrics
        .encode()
        .contains("fleet_delete_guard_unmarked_total 1"));
}

#[tokio::test]
async fn an_object_with_finalizers_counts_when_it_is_really_gone() {
    let double = seeded_double().await;
    let s = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    let mut cm = double
        .get(&gvr::CONFIGMAPS, "default", "test-config1-four")
        .expect("cm");
    cm["metadata"]["finalizers"] = json!(["example.com/hold"]);
    double.put_object(cm).expect("add finalizer");
    let r = answer(
        &s.server,
        &delete_review(&double, "test-config1-four", "alice", "r"),
    )
    .await;
    assert_eq!(r["allowed"], true);
    // kube-apiserver only sets the deletionTimestamp while finalizers are pending.
    double
        .merge_patch_object(
            &gvr::CONFIGMAPS,
            "default",
            "test-config1-four",
            json!({"metadata": {"deletionTimestamp": "2026-11-25T00:00:00Z"}}),
        )
        .expect("terminating");
    // Terminating, not gone: not counted yet.
    let terminating = double
        .get(&gvr::CONFIGMAPS, "default", "test-config1-four")
        .expect("still there");
    assert!(terminating["metadata"]["deletionTimestamp"].is_string());
    // A second DELETE of the terminating object is a repeat: allowed, silent.
    let repeat = answer(
        &s.server,
        &delete_review(&double, "test-config1-four", "alice", "r2"),
    )
    .await;
    assert_eq!(repeat["auditAnnotations"]["decision"], "repeat");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        missing(&gitrepo(&double)),
        0,
        "not counted while finalizers are pending"
    );
    // The finalizer is removed: the object is gone.
    double
        .merge_patch_object(
            &gvr::CONFIGMAPS,
            "default",
            "test-config1-four",
            json!({"metadata": {"finalizers": null}}),
        )
        .expect("remove finalizer");
    assert!(double
        .get(&gvr::CONFIGMAPS, "default", "test-config1-four")
        .is_none());
    wait_repo(&double, "counted once gone", |repo| missing(repo) == 1).await;
}

#[tokio::test]
async fn two_replicas_on_one_double_never_double_count() {
    let double = seeded_double().await;
    imitate_gitrepo_status_controller(&double, Duration::ZERO);
    let a = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    let b = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    let names = [
        "test-config1-one",
        "test-config1-two",
        "test-config2-one",
        "test-config2-three",
        "test-config3-one",
    ];
    for (i, name) in names.iter().enumerate() {
        let review = delete_review(&double, name, "alice", &format!("r-{i}"));
        // kube-apiserver may send the reviews of one deletion to both replicas.
        let (ra, rb) = tokio::join!(answer(&a.server, &review), answer(&b.server, &review));
        assert_eq!(
            (ra["allowed"].clone(), rb["allowed"].clone()),
            (json!(true), json!(true))
        );
        double.delete_object(&gvr::CONFIGMAPS, "default", name);
    }
    wait_repo(&double, "5 missing", |repo| missing(repo) == 5).await;
    support::wait_until("both confirmed", WAIT, || {
        a.counting.patcher.marks_len() == 5 && b.counting.patcher.marks_len() == 5
    })
    .await;
    double.wait_hooks_idle(WAIT).await.expect("settled");
    let repo = gitrepo(&double);
    assert_eq!(ready_of_desired(&repo), "6/11");
    assert_eq!(missing(&repo), 5);
}

#[tokio::test]
async fn with_the_api_down_at_start_reviews_are_answered_and_counting_resumes() {
    let double = seeded_double().await;
    double.stop().await;
    let s = CountingServer::start(&double, fast_patcher()).await;
    assert!(
        !s.readiness.is_ready(),
        "caches not synced while the API is down"
    );
    let review = fixture_json("admissionreview-delete-configmap.json");
    let r = answer(&s.server, &review).await;
    assert_eq!(r["allowed"], true, "reviews answered without the API");
    assert!(r["warnings"][0]
        .as_str()
        .unwrap_or_default()
        .contains("default-lots-config2"));

    double.restart().await.expect("API back");
    let s = s.synced().await;
    delete(&double, &s.server, "test-config3-three", "alice", "r").await;
    wait_repo(&double, "counting resumed", |repo| missing(repo) == 1).await;
}

#[tokio::test]
async fn deletions_made_while_the_webhook_was_away_are_counted_at_start_once() {
    let double = seeded_double().await;
    imitate_gitrepo_status_controller(&double, Duration::ZERO);
    // No replica running: three deletions are never reviewed.
    for name in ["test-config1-two", "test-config2-four", "test-config3-one"] {
        double.delete_object(&gvr::CONFIGMAPS, "default", name);
    }
    let s = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    let repo = wait_repo(&double, "8/11", |repo| ready_of_desired(repo) == "8/11").await;
    assert_eq!(missing(&repo), 3);
    let metrics = s.metrics.clone();
    support::wait_until("resync counted", WAIT, || {
        metrics
            .encode()
            .contains("fleet_delete_guard_resync_missing_total 3")
    })
    .await;
    // A second pass (a replica restarting) finds them already counted: no change.
    let again = fleet_delete_guard::patcher::resync::resync_once(
        &s.counting.patcher,
        &support::fleet::client(&double),
        &support::fleet::client(&double),
        BD_NAMESPACE,
        "fleet.cattle.io/cluster-namespace=fleet-local,fleet.cattle.io/cluster=local",
        Duration::from_secs(10),
    )
    .await
    .expect("second pass");
    assert_eq!(again.missing, 0, "already counted: nothing left to find");
    double.wait_hooks_idle(WAIT).await.expect("settled");
    assert_eq!(ready_of_desired(&gitrepo(&double)), "8/11");
}

/// The `ResourceDeleted` Events of GitRepo fleet-local/`repo`.
fn resource_deleted_events(double: &ApiDouble, repo: &str) -> Vec<Value> {
    double
        .list(&gvr::EVENTS_K8S_IO, Some("fleet-local"))
        .into_iter()
        .filter(|e| e["reason"] == "ResourceDeleted" && e["regarding"]["name"] == repo)
        .collect()
}

/// How many deletions an Event's note reports: `N deletions counted …` or one.
fn deletions_in(event: &Value) -> usize {
    let note = event["note"].as_str().unwrap_or_default();
    note.split_once(" deletions counted as missing at ")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(1)
}

/// Review `cm-NNN` of [`seed_many`] as deleted by alice, then delete it.
async fn delete_many(double: &ApiDouble, s: &CountingServer, name: &str) {
    let (status, text) = post(
        &s.server.client(),
        &s.server.url(),
        many_review(double, name, &format!("r-{name}")).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    double.delete_object(&gvr::CONFIGMAPS, "default", name);
}

async fn wait_many_missing(double: &ApiDouble, n: i64) {
    double
        .wait_for(
            &gvr::GITREPOS,
            "fleet-local",
            "many",
            |r| missing(r) == n,
            WAIT,
        )
        .await
        .unwrap_or_else(|t| panic!("{n} missing: {t}"));
}

#[tokio::test]
async fn a_burst_of_deletions_gives_few_events_that_account_for_every_one() {
    let double = ApiDouble::start(kube_api_double::Options::default()).await;
    seed_many(&double, 500);
    let config = fleet_delete_guard::patcher::PatcherConfig {
        // Room for every batch's Event: this test is about their number and content.
        event_queue_capacity: 1_000,
        ..fast_patcher()
    };
    let s = CountingServer::start(&double, config).await.synced().await;
    stream::iter((0..500usize).map(|i| format!("cm-{i:03}")))
        .for_each_concurrent(64, |name| {
            let (double, s) = (&double, &s);
            async move { delete_many(double, s, &name).await }
        })
        .await;
    wait_many_missing(&double, 500).await;

    // Every counted deletion is in exactly one Event's count.
    let metrics = s.metrics.clone();
    let double_ref = &double;
    support::wait_until("Events for all 500 deletions", WAIT, || {
        resource_deleted_events(double_ref, "many")
            .iter()
            .map(deletions_in)
            .sum::<usize>()
            >= 500
    })
    .await;
    let events = resource_deleted_events(&double, "many");
    assert_eq!(events.iter().map(deletions_in).sum::<usize>(), 500);
    // One Event per batch: no more Events than BundleDeployment patches, far fewer than
    // deletions.
    let patches = double.count(Verb::Patch, "bundledeployments", Some("status"));
    assert!(
        events.len() <= patches && events.len() < 100,
        "{} Events for 500 deletions ({patches} BundleDeployment patches)",
        events.len()
    );
    assert_eq!(
        double.count(Verb::Create, "events", None),
        events.len(),
        "each Event created once, never patched"
    );
    assert_eq!(double.count(Verb::Patch, "events", None), 0);
    for e in &events {
        let note = e["note"].as_str().unwrap_or_default();
        assert!(note.len() <= 1024, "{} bytes: {note}", note.len());
        assert!(e["related"].is_null(), "{e}");
        let n = deletions_in(e);
        let named = note.matches(" deleted by alice").count();
        assert!((1..=10).contains(&named) && named <= n, "{note}");
        if named < n {
            assert!(
                note.ends_with(&format!("; and {} more", n - named)),
                "{note}"
            );
        }
    }
    // The publisher counts an Event after the API has answered its create, i.e. after
    // it is in the double: wait until every create's outcome is counted.
    let creates = double.count(Verb::Create, "events", None) as u64;
    support::wait_until("every Event create counted", WAIT, || {
        events_total(&metrics, "published") + events_total(&metrics, "failed") >= creates
    })
    .await;
    let text = metrics.encode();
    assert!(
        text.contains(&format!(
            r#"fleet_delete_guard_events_total{{result="published"}} {}"#,
            events.len()
        )),
        "{text}"
    );
    // Exported at 0 from the start (for the alerts), and still 0.
    assert!(
        text.contains(r#"fleet_delete_guard_events_total{result="dropped"} 0"#),
        "{text}"
    );
}

#[tokio::test]
async fn events_beyond_the_queue_are_dropped_and_counted_while_counting_goes_on() {
    let double = ApiDouble::start(kube_api_double::Options::default()).await;
    seed_many(&double, 4);
    // The first Event's create never gets an answer: the publisher waits on it.
    double.inject(Fault::new(Verb::Create, "events").hang());
    let mut config = fast_patcher();
    config.event_queue_capacity = 1;
    // Longer than this test: the hanging publish holds the publisher throughout.
    config.retry.call_timeout = Duration::from_secs(60);
    let s = CountingServer::start(&double, config).await.synced().await;

    // One deletion per batch: each waits for the GitRepo to show the previous one.
    delete_many(&double, &s, "cm-000").await;
    wait_many_missing(&double, 1).await;
    double
        .wait_for_count(Verb::Create, "events", None, 1, WAIT)
        .await
        .expect("the publisher is waiting on the first Event");
    delete_many(&double, &s, "cm-001").await; // queued: the queue is full now
    wait_many_missing(&double, 2).await;
    delete_many(&double, &s, "cm-002").await; // dropped
    wait_many_missing(&double, 3).await;
    delete_many(&double, &s, "cm-003").await; // dropped
    wait_many_missing(&double, 4).await;

    let metrics = s.metrics.clone();
    support::wait_until("two Events dropped", WAIT, || {
        metrics
            .encode()
            .contains(r#"fleet_delete_guard_events_total{result="dropped"} 2"#)
    })
    .await;
    // Counting is not held up by the Events.
    let bd = double
        .get(&gvr::BUNDLEDEPLOYMENTS, BD_NAMESPACE, "many-config")
        .expect("bd");
    assert_eq!(bd["status"]["resourceCounts"]["missing"], 4);
    assert_eq!(ready_of_desired(&gitrepo_many(&double)), "0/4");
    assert_eq!(double.count(Verb::Create, "events", None), 1);
    assert!(resource_deleted_events(&double, "many").is_empty());
}

/// `fleet_delete_guard_events_total{result="<result>"}`, 0 when not exported.
fn events_total(metrics: &fleet_delete_guard::metrics::Metrics, result: &str) -> u64 {
    let needle = format!(r#"fleet_delete_guard_events_total{{result="{result}"}} "#);
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(needle.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn gitrepo_many(double: &ApiDouble) -> Value {
    double
        .get(&gvr::GITREPOS, "fleet-local", "many")
        .expect("gitrepo many")
}

#[tokio::test]
async fn an_event_the_api_refuses_or_never_answers_is_counted_as_failed() {
    let double = ApiDouble::start(kube_api_double::Options::default()).await;
    seed_many(&double, 3);
    double.inject(Fault::new(Verb::Create, "events").respond(500));
    let mut config = fast_patcher();
    // Bounds the hanging publish below; every other call answers at once here.
    config.retry.call_timeout = Duration::from_secs(2);
    let s = CountingServer::start(&double, config).await.synced().await;
    let metrics = s.metrics.clone();
    let failed = |n: usize| {
        let metrics = metrics.clone();
        move || {
            metrics.encode().contains(&format!(
                r#"fleet_delete_guard_events_total{{result="failed"}} {n}"#
            ))
        }
    };

    delete_many(&double, &s, "cm-000").await;
    wait_many_missing(&double, 1).await;
    support::wait_until("a 500 counted as failed", WAIT, failed(1)).await;

    double.inject(Fault::new(Verb::Create, "events").hang());
    delete_many(&double, &s, "cm-001").await;
    wait_many_missing(&double, 2).await;
    support::wait_until("a timeout counted as failed", WAIT, failed(2)).await;

    // Not retried; the next Event is published.
    delete_many(&double, &s, "cm-002").await;
    wait_many_missing(&double, 3).await;
    support::wait_until("the next Event published", WAIT, || {
        !resource_deleted_events(&double, "many").is_empty()
    })
    .await;
    let events = resource_deleted_events(&double, "many");
    assert_eq!(events.len(), 1);
    let note = events[0]["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("configmap default/cm-002 deleted by alice at "),
        "{note}"
    );
    assert_eq!(double.count(Verb::Create, "events", None), 3);
    assert!(metrics
        .encode()
        .contains(r#"fleet_delete_guard_events_total{result="dropped"} 0"#));
}

/// Many BundleDeployments, one ConfigMap each, `deleted` of them already gone: more
/// than one page (500) of BundleDeployments and of ConfigMaps for the resync.
fn seed_paged(double: &ApiDouble, n: usize, deleted: &[usize]) {
    let template = fixture_json("bundledeployments-lots.json")["items"][0].clone();
    for i in 0..n {
        let bd_name = format!("paged-{i:04}");
        let cm = format!("paged-cm-{i:04}");
        let set_id = format!("default-{bd_name}");
        if !deleted.contains(&i) {
            double
                .seed(json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {
                        "name": cm, "namespace": "default",
                        "labels": {"objectset.rio.cattle.io/hash": fleet_delete_guard::fleet::object_set_hash(&set_id)},
                        "annotations": {"objectset.rio.cattle.io/id": set_id}
                    },
                    "data": {"payload": "x".repeat(512)}
                }))
                .expect("seed cm");
        }
        let mut bd = template.clone();
        bd["metadata"] = json!({
            "name": bd_name, "namespace": BD_NAMESPACE,
            "labels": {
                "fleet.cattle.io/bundle-name": bd_name, "fleet.cattle.io/cluster": "local",
                "fleet.cattle.io/cluster-namespace": "fleet-local"
            }
        });
        bd["status"]["resources"] = json!([{"kind": "ConfigMap", "apiVersion": "v1", "namespace": "default", "name": cm, "createdAt": "2026-08-20T09:01:12Z"}]);
        bd["status"]["resourceCounts"] = json!({"ready": 1, "desiredReady": 1, "waitApplied": 0, "modified": 0, "orphaned": 0, "missing": 0, "unknown": 0, "notReady": 0});
        bd["status"]["modifiedStatus"] = Value::Null;
        bd["status"]["nonReadyStatus"] = Value::Null;
        double.seed(bd).expect("seed bd");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resync_pages_through_bundle_deployments_and_lists_objects_metadata_only() {
    let double = ApiDouble::start(kube_api_double::Options::default()).await;
    // Gone before the webhook started: on the first, a middle and the last page.
    let deleted = [0, 600, 1199];
    seed_paged(&double, 1200, &deleted);
    let s = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    let metrics = s.metrics.clone();
    support::wait_until("resync counted the three", WAIT, || {
        metrics
            .encode()
            .contains("fleet_delete_guard_resync_missing_total 3")
    })
    .await;
    for i in deleted {
        let name = format!("paged-{i:04}");
        wait_bd_missing(&double, &name, 1, "counted by the resync").await;
    }
    // Nothing else was counted.
    let counted = double
        .list(&gvr::BUNDLEDEPLOYMENTS, Some(BD_NAMESPACE))
        .into_iter()
        .filter(|bd| bd["status"]["resourceCounts"]["missing"] != 0)
        .count();
    assert_eq!(counted, 3);

    let requests = double.requests();
    let pages = |resource: &str| {
        requests
            .iter()
            .filter(|r| r.verb == Verb::List && r.resource() == resource)
            .filter(|r| r.query.contains("limit=100"))
            .collect::<Vec<_>>()
    };
    // 1,200 objects in pages of 100: twelve requests each, eleven of them continuing —
    // once for the watch's initial list and once for the resync.
    let bd_pages = pages("bundledeployments");
    assert!(
        bd_pages
            .iter()
            .filter(|r| r.query.contains("continue="))
            .count()
            >= 22,
        "BundleDeployments paged: {:?}",
        bd_pages.iter().map(|r| &r.query).collect::<Vec<_>>()
    );
    let mut cm_pages = pages("configmaps");
    // Not the checks of the three marks (listed by their objectset hash label).
    cm_pages.retain(|r| !r.query.contains("%28") && !r.query.contains('('));
    assert_eq!(cm_pages.len(), 12, "ConfigMaps paged once through");
    for r in cm_pages {
        let accept = r.accept.clone().unwrap_or_default();
        assert!(
            accept.contains("as=PartialObjectMetadataList"),
            "objects listed metadata-only: {accept}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_counting_needs_only_the_management_role_in_its_cluster_namespace() {
    let Some(kubectl) = kubectl::require(
        "downstream_counting_needs_only_the_management_role_in_its_cluster_namespace",
    ) else {
        return;
    };
    let double = seeded_double().await;
    // deploy/multi-cluster/management as shipped, its Role placed in this cluster's
    // BundleDeployment namespace as docs/src/multi-cluster.md says.
    for mut obj in kubectl::render(&kubectl, "multi-cluster/management") {
        if matches!(obj["kind"].as_str(), Some("Role" | "RoleBinding")) {
            obj["metadata"]["namespace"] = BD_NAMESPACE.into();
        }
        double.seed(obj).expect("seed management overlay");
    }
    // Another cluster's BundleDeployment next to ours: out of the downstream's reach.
    let mut other = bundle_deployment(&double, "lots-config2");
    other["metadata"]["namespace"] = "cluster-fleet-default-other-0123456789ab".into();
    other["metadata"]
        .as_object_mut()
        .expect("metadata")
        .retain(|k, _| matches!(k.as_str(), "name" | "namespace" | "labels"));
    double.seed(other).expect("other cluster's BD");
    // The deletion cluster's own client: an admin there.
    support::grant_cluster_admin(&double, json!([{"kind": "User", "name": "admin"}]));
    double.add_token(
        "admin-token",
        kube_api_double::UserInfo::new("admin", &["system:authenticated"]),
    );
    let downstream = kube_api_double::UserInfo::service_account(
        "cattle-fleet-system",
        "fleet-delete-guard-downstream",
    );
    let downstream_user = downstream.username.clone();
    double.add_token("downstream-token", downstream);
    double.enforce_rbac(true);
    let dir = tempfile::tempdir().expect("tempdir");
    let (admin, fleet) = (dir.path().join("admin"), dir.path().join("fleet"));
    double
        .write_kubeconfig_for(&admin, "admin-token", "default")
        .expect("kubeconfig");
    double
        .write_kubeconfig_for(&fleet, "downstream-token", "default")
        .expect("kubeconfig");
    let clients = fleet_delete_guard::cluster::Clients {
        cluster: support::fleet::client_from_kubeconfig(&admin).await,
        fleet: support::fleet::client_from_kubeconfig(&fleet).await,
        separate_fleet: true,
    };
    let config = fleet_delete_guard::patcher::PatcherConfig {
        patch_gitrepo: false,
        ..fast_patcher()
    };
    let s = CountingServer::start_with_clients(&clients, config, Default::default())
        .await
        .synced()
        .await;

    delete(&double, &s.server, "test-config2-two", "alice", "r").await;
    wait_bd_missing(
        &double,
        "lots-config2",
        1,
        "counted in the BundleDeployment",
    )
    .await;
    let refused: Vec<String> = double
        .forbidden_requests()
        .into_iter()
        .filter(|r| r.user.as_deref() == Some(downstream_user.as_str()))
        .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
        .collect();
    assert!(
        refused.is_empty(),
        "the Role in the cluster namespace was not enough: {refused:#?}"
    );
    // It read and wrote BundleDeployments of its own namespace only, never GitRepos.
    for r in double.requests() {
        if r.user.as_deref() != Some(downstream_user.as_str()) {
            continue;
        }
        assert_eq!(r.resource(), "bundledeployments", "{} {}", r.method, r.path);
        assert_eq!(
            r.namespace.as_deref(),
            Some(BD_NAMESPACE),
            "{} {}",
            r.method,
            r.path
        );
    }
}
