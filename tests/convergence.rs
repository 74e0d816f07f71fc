//! Replicas converge (RELIABILITY.md, "Replicas converge"): two replicas on one API
//! double, many concurrent deletions of one bundle, 409/503 injected on about a fifth of
//! the status writes, and no Fleet controller to repair anything — the GitRepo and its
//! BundleDeployment must both end exact. And re-created objects are un-marked soon.

mod support;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use fleet_delete_guard::{
    delta::recompute::gitrepo_status_from_bundle_deployments,
    fleet::status::{BundleDeployment, GitRepoStatus},
};
use futures::{stream, StreamExt};
use kube_api_double::{gvr, ApiDouble, Fault, Options, Verb};
use serde_json::{json, Value};
use support::fleet::{fast_patcher, many_review, seed_many, CountingServer, BD_NAMESPACE};
use support::post;

const WAIT: Duration = Duration::from_secs(60);

/// A small deterministic generator (xorshift), one per seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Until `stop`: a fault is pending at most one at a time (so about a fifth of the
/// status writes fail, as in the reported runs, instead of a backlog failing them all);
/// every ~2 ms without one pending, with probability 1/5 the next status write of a
/// GitRepo or a BundleDeployment answers 409 or 503.
fn inject_faults(
    double: ApiDouble,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        let mut rng = Rng(seed | 1);
        let mut injected = 0;
        let mut pending = None;
        while !stop.load(Ordering::Relaxed) {
            let free = pending.is_none_or(|id| double.fault_hits(id) > 0);
            if free && rng.next().is_multiple_of(5) {
                let resource = if rng.next().is_multiple_of(2) {
                    "gitrepos"
                } else {
                    "bundledeployments"
                };
                let code = if rng.next().is_multiple_of(2) {
                    409
                } else {
                    503
                };
                if let Some(id) = pending.take() {
                    double.remove_fault(id);
                }
                pending = Some(
                    double.inject(
                        Fault::new(Verb::Patch, resource)
                            .subresource("status")
                            .times(1)
                            .respond(code),
                    ),
                );
                injected += 1;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if let Some(id) = pending {
            double.remove_fault(id);
        }
        injected
    })
}

/// Waits until GitRepo `fleet-local/many` counts `want` (ready, desiredReady, missing).
async fn wait_many(double: &ApiDouble, want: (i64, i64, i64), what: &str) -> Value {
    double
        .wait_for(
            &gvr::GITREPOS,
            "fleet-local",
            "many",
            |r| counts(r) == want,
            WAIT,
        )
        .await
        .unwrap_or_else(|t| panic!("{what}: {t}"))
}

async fn review(server: &support::TestServer, review: &Value) -> bool {
    let (status, text) = post(&server.client(), &server.url(), review.to_string()).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    v["response"]["allowed"] == true
}

fn counts(obj: &Value) -> (i64, i64, i64) {
    let c = &obj["status"]["resourceCounts"];
    (
        c["ready"].as_i64().unwrap_or(-1),
        c["desiredReady"].as_i64().unwrap_or(-1),
        c["missing"].as_i64().unwrap_or(0),
    )
}

async fn two_replicas_burst(seed: u64, n: usize) {
    let double = ApiDouble::start(Options::default()).await;
    seed_many(&double, n);
    let a = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    let b = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let faults = inject_faults(double.clone(), seed, stop.clone());

    // Unpaced, from 8 tasks; reviews alternate between the replicas, each allowed
    // deletion is persisted at once (as kube-apiserver does).
    let servers = [&a.server, &b.server];
    stream::iter(0..n)
        .for_each_concurrent(8, |i| {
            let double = &double;
            let server = servers[i % 2];
            async move {
                let name = format!("cm-{i:03}");
                let r = many_review(double, &name, &format!("r-{seed}-{i}"));
                assert!(review(server, &r).await);
                double.delete_object(&gvr::CONFIGMAPS, "default", &name);
            }
        })
        .await;
    let n = n as i64;
    double
        .wait_for(
            &gvr::BUNDLEDEPLOYMENTS,
            BD_NAMESPACE,
            "many-config",
            |bd| counts(bd) == (0, n, n),
            WAIT,
        )
        .await
        .unwrap_or_else(|t| panic!("seed {seed}: BundleDeployment exact: {t}"));
    stop.store(true, Ordering::Relaxed);
    let injected = faults.await.expect("fault task");
    assert!(injected > 0, "seed {seed}: faults were injected");
    let repo = double
        .wait_for(
            &gvr::GITREPOS,
            "fleet-local",
            "many",
            |r| counts(r) == (0, n, n),
            WAIT,
        )
        .await
        .unwrap_or_else(|t| {
            panic!("seed {seed}: GitRepo exact (issue: stale view written over a newer one): {t}")
        });
    // Settled: both replicas idle for a while, and the GitRepo still exact and equal to
    // what Fleet would compute from the BundleDeployment.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let repo = double
        .get(&gvr::GITREPOS, "fleet-local", "many")
        .unwrap_or(repo);
    assert_eq!(counts(&repo), (0, n, n), "seed {seed}: GitRepo stays exact");
    let bd = double
        .get(&gvr::BUNDLEDEPLOYMENTS, BD_NAMESPACE, "many-config")
        .expect("bd");
    let typed = BundleDeployment::from_value(&bd).expect("typed bd");
    let status = GitRepoStatus::from_value(&repo["status"]).expect("status");
    let fleet = gitrepo_status_from_bundle_deployments(&status, &[typed], "2026-12-04T00:00:00Z");
    assert_eq!(
        fleet.resource_counts, status.resource_counts,
        "seed {seed}: GitRepo agrees with Fleet's recompute"
    );
    assert_eq!(fleet.summary, status.summary, "seed {seed}");
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_with_conflicts_and_outages_end_exact_for_several_seeds() {
    // The suite runs four seeds; `CONVERGENCE_RUNS=20 cargo test --test convergence`
    // runs twenty (RELIABILITY.md, "Replicas converge").
    let runs: u64 = std::env::var("CONVERGENCE_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4);
    let mut seeds = Rng(0x9e37_79b9_7f4a_7c15);
    for run in 0..runs {
        let seed = seeds.next();
        eprintln!("convergence run {run}: seed {seed:#x}");
        two_replicas_burst(seed, 150).await;
    }
}

#[tokio::test]
async fn a_gitrepo_made_to_disagree_by_hand_is_repaired_while_marks_live() {
    let double = ApiDouble::start(Options::default()).await;
    seed_many(&double, 10);
    let a = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    let r = many_review(&double, "cm-000", "r-1");
    assert!(review(&a.server, &r).await);
    double.delete_object(&gvr::CONFIGMAPS, "default", "cm-000");
    wait_many(&double, (9, 10, 1), "counted").await;
    // A stale writer puts the old counts back on the GitRepo, and the agent touches the
    // BundleDeployment (any status update): the watch sees it and the GitRepo is
    // re-derived from the BundleDeployment.
    double
        .merge_patch_object(
            &gvr::GITREPOS,
            "fleet-local",
            "many",
            json!({"status": {"resourceCounts": {"ready": 10, "missing": 0}}}),
        )
        .expect("stale write");
    double
        .merge_patch_object(
            &gvr::BUNDLEDEPLOYMENTS,
            BD_NAMESPACE,
            "many-config",
            json!({"status": {"syncGeneration": 1}}),
        )
        .expect("agent touch");
    wait_many(&double, (9, 10, 1), "repaired").await;
}

#[tokio::test]
async fn re_created_objects_are_unmarked() {
    let double = ApiDouble::start(Options::default()).await;
    seed_many(&double, 60);
    let a = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    let mut rng = Rng(0x5eed);
    let mut worst = Duration::ZERO;
    for i in 0..50 {
        let name = format!("cm-{i:03}");
        let cm = double.get(&gvr::CONFIGMAPS, "default", &name).expect("cm");
        let r = many_review(&double, &name, &format!("r-{i}"));
        assert!(review(&a.server, &r).await);
        double.delete_object(&gvr::CONFIGMAPS, "default", &name);
        double
            .wait_for(
                &gvr::GITREPOS,
                "fleet-local",
                "many",
                |r| counts(r).2 == 1,
                WAIT,
            )
            .await
            .expect("counted");
        tokio::time::sleep(Duration::from_millis(50 + rng.next() % 450)).await;
        // Re-created (drift correction, or by hand): a new object, a new uid.
        let mut again = cm.clone();
        again["metadata"]["uid"] = json!(format!("recreated-{i}"));
        again["metadata"]
            .as_object_mut()
            .expect("meta")
            .remove("resourceVersion");
        double.put_object(again).expect("re-create");
        let back = Instant::now();
        double
            .wait_for(
                &gvr::GITREPOS,
                "fleet-local",
                "many",
                |r| counts(r).2 == 0,
                WAIT,
            )
            .await
            .expect("un-marked");
        worst = worst.max(back.elapsed());
    }
    // The time is a figure, not an assertion (a shared machine can stall any process
    // for seconds): printed here, recorded in RELIABILITY.md and BENCHMARKS.md. The
    // assertion is that every re-created object was un-marked, within WAIT.
    eprintln!("re-created objects: worst time to un-mark {worst:?} (RELIABILITY.md)");
}

#[tokio::test]
async fn the_resync_repairs_a_gitrepo_that_disagrees_with_its_bundle_deployments() {
    let double = ApiDouble::start(Options::default()).await;
    seed_many(&double, 10);
    // Counts set by hand, with no webhook running and no mark anywhere.
    double
        .merge_patch_object(
            &gvr::GITREPOS,
            "fleet-local",
            "many",
            json!({"status": {"resourceCounts": {"ready": 7, "missing": 3}}}),
        )
        .expect("disagree");
    let _a = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    // The resync at start re-derives the owner from its BundleDeployment.
    wait_many(&double, (10, 10, 0), "repaired by the resync").await;
}
