//! Micro-benchmarks of the admission path and of the status deltas (criterion).
//!
//! Run: `cargo bench --bench admission` (numbers in BENCHMARKS.md). A filter selects
//! groups, e.g. `cargo bench --bench admission -- decide`.
//!
//! `… -- --instructions SCENARIO N` runs one scenario N times without criterion, for
//! instruction counts under `valgrind --tool=callgrind` (deterministic, unlike time):
//! SCENARIO is `fast-pod`, `fast-configmap`, `fast-secret`, `fleet` (owner from a cache of
//! 10,000 BundleDeployments), `fleet-spread` (500 such bodies over the cache, in turn),
//! `fleet-unresolved` or `fleet-off` (the same body with counting off: the owner from the
//! object alone); each iteration is what the HTTP
//! handler does with a body: [`Admission::review`] and serialising the answer. `log-span`
//! and `log-event` format a Fleet-managed review's log line (with and without the
//! `review` span); `log-fast` is the fast path's, at debug level and so filtered out.

#[path = "support/reviews.rs"]
mod reviews;

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{BatchSize, Criterion, Throughput};
use fleet_delete_guard::{
    admission::{Admission, NoCounting, ObjectOnly, OwnerResolver},
    decide::{decide, ObjectFacts, Operation, Owner, Review},
    delta::{
        batch::{self, Change, ChangeKind},
        bundle_deployment::mark_missing,
        gitrepo, merge_patch_diff, DeletedResource,
    },
    fleet::status::{BundleDeployment, GitRepoStatus},
    owners::{OwnerIndex, DEFAULT_AGENT_SCOPES},
    policy::{DecisionConfig, Policy},
    review,
    server::log_answer,
};
use kube::{
    api::DynamicObject,
    core::{admission::AdmissionReview, PartialObjectMeta},
    runtime::watcher::Event,
};
use serde_json::Value;

const NOW: &str = "2026-08-21T14:30:05Z";

/// The type `review::parse` read bodies into before (metadata-only, but flattened).
type KubeReview = AdmissionReview<PartialObjectMeta<DynamicObject>>;
const BUNDLE_DEPLOYMENTS: usize = 10_000;

/// An owner index holding `n` BundleDeployments, filled as the watch stream does.
fn owner_index(n: usize) -> Arc<OwnerIndex> {
    let index = Arc::new(OwnerIndex::new(
        DEFAULT_AGENT_SCOPES.iter().map(|s| s.to_string()).collect(),
    ));
    for j in 0..n {
        let bd: DynamicObject =
            serde_json::from_value(reviews::bundle_deployment(j)).expect("bd parses");
        index.apply_bundle_deployment_event(&Event::Apply(bd));
    }
    index
}

fn admission(owners: Arc<dyn OwnerResolver>) -> Admission {
    Admission::new(DecisionConfig::default(), owners, Arc::new(NoCounting))
}

fn body(scenario: &str) -> Vec<u8> {
    let v = match scenario {
        "fast-pod" => reviews::fast_review(0),
        "fast-configmap" => reviews::fast_review(6),
        "fast-secret" => reviews::fast_review(9),
        "fleet" | "fleet-off" => reviews::fleet_review(0, 4242, false),
        "fleet-unresolved" => reviews::fleet_review(0, BUNDLE_DEPLOYMENTS + 1, false),
        other => panic!("unknown scenario {other}"),
    };
    reviews::bytes(&v)
}

/// What the HTTP handler does with one body, minus HTTP: review, then write the answer.
fn handle(admission: &Admission, body: &[u8]) -> usize {
    let answer = admission
        .review(body, Instant::now())
        .expect("valid review");
    answer.response.to_json().len()
}

fn managed_object() -> ObjectFacts {
    ObjectFacts {
        kind: "configmap".into(),
        namespace: "default".into(),
        name: "cm-04242".into(),
        objectset_hash: Some(reviews::fleet_marks(4242).1),
        objectset_id: Some(reviews::fleet_marks(4242).0),
        terminating: false,
    }
}

fn user_review(object: Option<ObjectFacts>) -> Review {
    Review {
        operation: Operation::Delete,
        dry_run: false,
        username: "alice".into(),
        groups: vec!["developers".into(), "system:authenticated".into()],
        object,
    }
}

fn bench_decide(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide");
    let config = DecisionConfig::default();
    let unmanaged = user_review(Some(ObjectFacts {
        objectset_hash: None,
        objectset_id: None,
        ..managed_object()
    }));
    g.bench_function("not managed (fast path)", |b| {
        b.iter(|| decide(black_box(&unmanaged), black_box(&Owner::default()), &config))
    });
    let managed = user_review(Some(managed_object()));
    let resolved = Owner {
        set_id: managed_object().objectset_id,
        owned_by: Some(
            fleet_delete_guard::fleet::OwnerRef::new(
                fleet_delete_guard::fleet::OwnerKind::GitRepo,
                "fleet-local",
                "repo-042",
            )
            .into(),
        ),
        bundle: Some("bd-04242".into()),
        ..Owner::default()
    };
    g.bench_function("user deletion, warn, owner resolved", |b| {
        b.iter(|| decide(black_box(&managed), black_box(&resolved), &config))
    });
    let deny = DecisionConfig {
        policy: Policy::Deny,
        ..DecisionConfig::default()
    };
    g.bench_function("user deletion, deny", |b| {
        b.iter(|| decide(black_box(&managed), black_box(&resolved), &deny))
    });
    let fleet = Review {
        username: "system:serviceaccount:cattle-fleet-system:fleet-agent".into(),
        groups: vec![
            "system:serviceaccounts".into(),
            "system:serviceaccounts:cattle-fleet-system".into(),
            "system:authenticated".into(),
        ],
        ..user_review(Some(managed_object()))
    };
    g.bench_function("Fleet's own deletion", |b| {
        b.iter(|| decide(black_box(&fleet), black_box(&resolved), &config))
    });
    g.finish();
}

fn bench_owner(c: &mut Criterion) {
    let index = owner_index(BUNDLE_DEPLOYMENTS);
    let object = managed_object();
    let mut g = c.benchmark_group("owner");
    g.bench_function("resolve from 10,000 BundleDeployments", |b| {
        b.iter(|| index.resolve(black_box(&object)))
    });
    g.finish();
}

fn bench_review(c: &mut Criterion) {
    let index = owner_index(BUNDLE_DEPLOYMENTS);
    let cached = admission(index);
    let object_only = admission(Arc::new(ObjectOnly));
    let mut g = c.benchmark_group("review");
    for scenario in [
        "fast-pod",
        "fast-configmap",
        "fast-secret",
        "fleet",
        "fleet-unresolved",
    ] {
        let body = body(scenario);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("parse {scenario}"), |b| {
            b.iter(|| review::parse(black_box(&body)).expect("parses"))
        });
        // What parsing cost before: kube's typed review (its `#[serde(flatten)]` buffers
        // the whole body, oldObject included, before reading it).
        g.bench_function(
            format!("parse {scenario}, kube AdmissionReview (before)"),
            |b| b.iter(|| serde_json::from_slice::<KubeReview>(black_box(&body)).expect("parses")),
        );
        g.bench_function(format!("review+serialise {scenario}"), |b| {
            b.iter(|| handle(&cached, black_box(&body)))
        });
    }
    let body = body("fleet");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("review+serialise fleet, no cache (ObjectOnly)", |b| {
        b.iter(|| handle(&object_only, black_box(&body)))
    });
    g.finish();
}

/// The per-review cost of the mass-deletion breaker (closed: thresholds out of reach,
/// so every Fleet deletion is counted in its owner's window and allowed), before/after
/// in one run: the same bodies through an `Admission` without and with the breaker.
fn bench_breaker(c: &mut Criterion) {
    use fleet_delete_guard::breaker::{shared::Breakers, BreakerConfig, BreakerMode};
    let index = owner_index(BUNDLE_DEPLOYMENTS);
    let without = admission(index.clone());
    let closed = BreakerConfig {
        mode: BreakerMode::Enforce,
        max_deletions: u32::MAX,
        max_fraction: 0.0,
        ..BreakerConfig::default()
    };
    let breaker = Breakers::detached(
        closed,
        DecisionConfig::default(),
        fleet_delete_guard::metrics::Metrics::new(),
    );
    let with = Admission::new(DecisionConfig::default(), index, Arc::new(NoCounting))
        .with_breaker(Some(Arc::new(breaker)));
    let agent = reviews::bytes(&reviews::delete_review(
        0xa6e7,
        0,
        reviews::fleet_configmap(4242),
        "configmaps",
        "system:serviceaccount:cattle-fleet-system:fleet-agent",
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:cattle-fleet-system",
            "system:authenticated",
        ],
        false,
    ));
    let mut g = c.benchmark_group("breaker");
    for (scenario, body) in [
        ("fast-configmap", body("fast-configmap")),
        ("fleet (user)", body("fleet")),
        ("fleet (agent)", agent),
    ] {
        g.bench_function(format!("{scenario}, breaker off (before)"), |b| {
            b.iter(|| handle(&without, black_box(&body)))
        });
        g.bench_function(format!("{scenario}, breaker closed (after)"), |b| {
            b.iter(|| handle(&with, black_box(&body)))
        });
    }
    g.finish();
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture JSON")
}

fn bench_delta(c: &mut Criterion) {
    let bds: Vec<BundleDeployment> = fixture("bundledeployments-lots.json")["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| BundleDeployment::from_value(v).expect("bd"))
        .collect();
    let gr = GitRepoStatus::from_value(&fixture("gitrepo-lots.json")["status"]).expect("status");
    let bd = bds
        .iter()
        .find(|b| b.metadata.name == "lots-config2")
        .expect("lots-config2")
        .clone();
    let r = DeletedResource::new("v1", "ConfigMap", Some("default"), "test-config2-one")
        .with_created_at("2026-08-20T09:01:12Z");

    let mut g = c.benchmark_group("status delta");
    let status = bd.status.clone().expect("status");
    g.bench_function("BundleDeployment mark_missing", |b| {
        b.iter_batched_ref(
            || status.clone(),
            |st| mark_missing(st, &bd.spec, &r, NOW),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("GitRepo mark_missing (3 BundleDeployments)", |b| {
        b.iter_batched_ref(
            || gr.clone(),
            |st| gitrepo::mark_missing(st, &bd, &r, &bds, NOW),
            BatchSize::SmallInput,
        )
    });
    let changes: Vec<Change> = (0..4)
        .map(|i| Change {
            bd: i % bds.len(),
            resource: DeletedResource::new(
                "v1",
                "ConfigMap",
                Some("default"),
                ["test-config1-one", "test-config2-one", "test-config3-one"][i % 3],
            )
            .with_created_at("2026-08-20T09:01:12Z"),
            kind: ChangeKind::Missing,
        })
        .collect();
    g.bench_function("batch apply, 4 deletions over 3 BundleDeployments", |b| {
        b.iter_batched_ref(
            || (gr.clone(), bds.clone()),
            |(st, list)| batch::apply(st, list, &changes, NOW),
            BatchSize::SmallInput,
        )
    });
    let before = status.to_value().expect("value");
    let mut after = status.clone();
    mark_missing(&mut after, &bd.spec, &r, NOW);
    let after = after.to_value().expect("value");
    g.bench_function("merge patch of the BundleDeployment status", |b| {
        b.iter(|| merge_patch_diff(black_box(&before), black_box(&after)))
    });
    g.finish();
}

/// The subscriber `serve` installs for `--log-format json`, writing to `io::sink`.
fn json_subscriber() -> impl tracing::Subscriber + Send + Sync {
    fleet_delete_guard::logging::json_subscriber(
        std::io::sink,
        tracing_subscriber::EnvFilter::new("info"),
    )
}

/// The review log line as `server::validate` emits it: inside the `review` span with
/// the uid recorded, or (`in_span` false) the event alone.
fn log_line(summary: &fleet_delete_guard::admission::Summary, in_span: bool) {
    let latency = Duration::from_micros(42);
    if in_span {
        let span = tracing::info_span!("review", uid = tracing::field::Empty);
        span.record("uid", summary.uid.as_str());
        let _entered = span.enter();
        log_answer(summary, latency);
    } else {
        log_answer(summary, latency);
    }
}

/// The summary of a review the server logs at info: a Fleet-managed deletion (the fast
/// path's line is at debug level, filtered out: `log-fast`).
fn logged_summary(scenario: &str) -> fleet_delete_guard::admission::Summary {
    let owners: Arc<dyn OwnerResolver> = if scenario == "fast-pod" {
        Arc::new(ObjectOnly)
    } else {
        owner_index(BUNDLE_DEPLOYMENTS)
    };
    admission(owners)
        .review(&body(scenario), Instant::now())
        .expect("review")
        .summary
}

fn bench_log(c: &mut Criterion) {
    let summary = logged_summary("fleet");
    let mut g = c.benchmark_group("log line (JSON, to io::sink)");
    tracing::subscriber::with_default(json_subscriber(), || {
        g.bench_function("review span + event (as served)", |b| {
            b.iter(|| log_line(black_box(&summary), true))
        });
        g.bench_function("event alone", |b| {
            b.iter(|| log_line(black_box(&summary), false))
        });
    });
    g.finish();
}

/// `--instructions SCENARIO N`: N handled reviews of SCENARIO, for callgrind.
fn instructions(scenario: &str, n: usize) {
    if let Some(which) = scenario.strip_prefix("log-") {
        let summary = logged_summary(if which == "fast" { "fast-pod" } else { "fleet" });
        tracing::subscriber::with_default(json_subscriber(), || {
            for _ in 0..n {
                log_line(black_box(&summary), which == "span");
            }
        });
        println!("{scenario}: {n} log lines");
        return;
    }
    let owners: Arc<dyn OwnerResolver> = if scenario.starts_with("fleet") && scenario != "fleet-off"
    {
        owner_index(BUNDLE_DEPLOYMENTS)
    } else {
        Arc::new(ObjectOnly)
    };
    let admission = admission(owners);
    // `fleet-spread`: 500 bodies over the cached BundleDeployments (every 20th), in turn,
    // as the peer bench sends them: the lookups touch 500 slots and owners, not one (for
    // `--cache-sim=yes`).
    let bodies: Vec<Vec<u8>> = match scenario {
        "fleet-spread" => (0..500)
            .map(|k| reviews::bytes(&reviews::fleet_review(k, k * 20, false)))
            .collect(),
        _ => vec![body(scenario)],
    };
    let mut total = 0;
    for i in 0..n {
        total += handle(&admission, black_box(&bodies[i % bodies.len()]));
    }
    println!(
        "{scenario}: {n} reviews of {} bytes, {} answer bytes",
        bodies[0].len(),
        total
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--instructions") {
        let scenario = args.get(i + 1).map(String::as_str).unwrap_or("fast-pod");
        let n = args.get(i + 2).and_then(|n| n.parse().ok()).unwrap_or(1000);
        instructions(scenario, n);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench_decide(&mut c);
    bench_owner(&mut c);
    bench_review(&mut c);
    bench_delta(&mut c);
    bench_log(&mut c);
    bench_breaker(&mut c);
    c.final_summary();
}
