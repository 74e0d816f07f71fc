//! The load counting puts on kube-apiserver (issue 24, items 4–5), against the API
//! double, whose request log records every request with its arrival time:
//!
//! - **Mark probes**: the marked objects of one kind in one namespace are checked with
//!   one metadata-only LIST (label-selected by their objectset hash), every probe
//!   request within the global cap (`--probe-rate`); LISTs that fail, are refused or
//!   come in pages.
//! - **Write coalescing**: owner-status writes, BundleDeployment status writes and
//!   Events per 1,000 deletions, per owner; at most one owner-status write per owner
//!   per worker batch.
//!
//! Counts are asserted, never durations: a bound on requests over a span is computed
//! from the span the double measured. The figures these tests print (run with
//! `-- --nocapture`) are in BENCHMARKS.md.

mod support;

use std::time::{Duration, Instant};

use fleet_delete_guard::patcher::PatcherConfig;
use futures::{stream, StreamExt};
use kube_api_double::{gvr, ApiDouble, Fault, Options, Origin, RequestRecord, Verb};
use serde_json::{json, Value};
use support::fleet::{delete_review_in, fast_patcher, missing, seed_owner, CountingServer};
use support::post;

const WAIT: Duration = Duration::from_secs(60);

/// A probe: the metadata GET of a marked ConfigMap, or the metadata LIST of a group
/// (selected `objectset.rio.cattle.io/hash in (…)`; the resync's LISTs select by the
/// label's presence only).
fn is_probe(r: &RequestRecord) -> bool {
    let metadata_only = r
        .accept
        .as_deref()
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
    let grouped = r.query.contains("%28") || r.query.contains('(');
    r.origin == Origin::Client
        && r.resource() == "configmaps"
        && metadata_only
        && (r.verb == Verb::Get || (r.verb == Verb::List && grouped))
}

fn probes(double: &ApiDouble) -> Vec<RequestRecord> {
    double.requests().into_iter().filter(is_probe).collect()
}

/// Probe requests at most in a span: the bucket's burst plus its rate over the span
/// (and 100 ms for the way from the worker to the double).
fn cap(config: &PatcherConfig, span: Duration) -> usize {
    let rate = f64::from(config.probe_rate);
    config.probe_burst() as usize + (rate * (span.as_secs_f64() + 0.1)).floor() as usize
}

/// The most requests of `records` in any one second.
fn peak_per_second(records: &[RequestRecord]) -> usize {
    let at: Vec<Duration> = records.iter().map(|r| r.at).collect();
    let mut best = 0;
    let mut start = 0;
    for end in 0..at.len() {
        while at[end].saturating_sub(at[start]) >= Duration::from_secs(1) {
            start += 1;
        }
        best = best.max(end + 1 - start);
    }
    best
}

fn span(records: &[RequestRecord]) -> Duration {
    match (records.first(), records.last()) {
        (Some(a), Some(b)) => b.at.saturating_sub(a.at),
        _ => Duration::ZERO,
    }
}

/// Reviewed and then deleted, as kube-apiserver does (`user` deletes them all).
async fn delete_all(
    double: &ApiDouble,
    s: &CountingServer,
    objects: &[(String, String)],
    user: &str,
) {
    let client = s.server.client();
    let url = s.server.url();
    stream::iter(objects.iter().enumerate())
        .for_each_concurrent(32, |(i, (namespace, name))| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let review = delete_review_in(double, namespace, name, user, &format!("r-{i}"));
                let (status, text) = post(&client, &url, review.to_string()).await;
                assert_eq!(status, 200, "{text}");
                double.delete_object(&gvr::CONFIGMAPS, namespace, name);
            }
        })
        .await;
}

async fn wait_missing(double: &ApiDouble, repo: &str, n: i64) {
    double
        .wait_for(
            &gvr::GITREPOS,
            "fleet-local",
            repo,
            |r| missing(r) == n,
            WAIT,
        )
        .await
        .unwrap_or_else(|t| panic!("{repo} counts {n} missing: {t}"));
}

/// Started, caches synced, the start-up resync done, the request log cleared.
async fn started(double: &ApiDouble, config: PatcherConfig) -> CountingServer {
    let s = CountingServer::start(double, config).await.synced().await;
    let metrics = s.metrics.clone();
    support::wait_until("the start-up resync", WAIT, || {
        metrics
            .encode()
            .contains(r#"fleet_delete_guard_resyncs_total{result="success"} 1"#)
    })
    .await;
    double.clear_requests();
    s
}

/// Re-created (by Fleet's drift correction, or by hand): a new object, a new uid.
fn recreate(double: &ApiDouble, original: &Value, uid: &str) {
    let mut again = original.clone();
    again["metadata"]["uid"] = json!(uid);
    if let Some(m) = again["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    double.put_object(again).expect("re-create");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_deletion_of_5000_objects_is_probed_with_few_requests_within_the_cap() {
    let double = ApiDouble::start(Options::default()).await;
    let objects = seed_owner(&double, "big", 5000, &["doomed"]);
    // The production timings: a 200 ms tick, young marks every 500 ms, 50 probes/s.
    let config = PatcherConfig::default();
    let rate = config.probe_rate;
    let s = started(&double, config.clone()).await;
    let originals: Vec<Value> = objects[..20]
        .iter()
        .map(|(ns, n)| double.get(&gvr::CONFIGMAPS, ns, n).expect("cm"))
        .collect();

    let start = Instant::now();
    delete_all(
        &double,
        &s,
        &objects,
        "system:serviceaccount:kube-system:namespace-controller",
    )
    .await;
    let deleted_in = start.elapsed();
    wait_missing(&double, "big", 5000).await;
    let patcher = s.counting.patcher.clone();
    support::wait_until("every mark confirmed", WAIT, || {
        patcher.confirmed_marks() == 5000
    })
    .await;
    let confirmed_in = start.elapsed();

    // Re-created one after the other: each is un-marked, seen by the group's LIST.
    let mut worst = Duration::ZERO;
    for (i, original) in originals.iter().enumerate() {
        recreate(&double, original, &format!("recreated-{i}"));
        let back = Instant::now();
        wait_missing(&double, "big", 5000 - (i as i64 + 1)).await;
        worst = worst.max(back.elapsed());
    }

    let probes = probes(&double);
    let gets = probes.iter().filter(|r| r.verb == Verb::Get).count();
    let lists = probes.len() - gets;
    let span = span(&probes);
    eprintln!(
        "5000 deletions in one namespace (reviews sent in {deleted_in:?}, all confirmed after {confirmed_in:?}), \
         then 20 re-created: {} probe requests ({gets} GETs, {lists} LISTs) over {span:?}, \
         peak {} in one second (cap {rate}/s); worst time to un-mark a re-created object {worst:?}",
        probes.len(),
        peak_per_second(&probes),
    );
    assert!(
        probes.len() <= cap(&config, span),
        "{} probe requests over {span:?}",
        probes.len()
    );
    // One GET per object would be 5,000 requests for a single round of checks.
    assert!(probes.len() < 1000, "{} probe requests", probes.len());
    assert!(lists > 0, "the group was listed");
    assert_eq!(
        missing(&support::fleet::gitrepo_named(&double, "big")),
        4980
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_of_many_groups_stay_within_the_cap() {
    let double = ApiDouble::start(Options::default()).await;
    let namespaces: Vec<String> = (0..60).map(|i| format!("ns-{i:02}")).collect();
    let ns: Vec<&str> = namespaces.iter().map(String::as_str).collect();
    let objects = seed_owner(&double, "wide", 120, &ns);
    let config = PatcherConfig {
        probe_rate: 20,
        ..fast_patcher()
    };
    let s = started(&double, config.clone()).await;
    delete_all(&double, &s, &objects, "alice").await;
    wait_missing(&double, "wide", 120).await;
    let patcher = s.counting.patcher.clone();
    support::wait_until("every mark confirmed", WAIT, || {
        patcher.confirmed_marks() == 120
    })
    .await;
    let probes = probes(&double);
    let span = span(&probes);
    eprintln!(
        "120 deletions in 60 namespaces, cap 20/s: {} probe requests over {span:?}, peak {} in one second",
        probes.len(),
        peak_per_second(&probes)
    );
    assert!(
        probes.len() <= cap(&config, span),
        "{} probe requests over {span:?}",
        probes.len()
    );
    let peak = peak_per_second(&probes);
    assert!(
        peak <= cap(&config, Duration::from_secs(1)),
        "{peak} in one second"
    );
    assert_eq!(s.counting.patcher.marks_len(), 120, "no mark lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_list_keeps_the_marks_and_is_retried_once_a_tick() {
    let double = ApiDouble::start(Options::default()).await;
    let objects = seed_owner(&double, "flaky", 20, &["apps"]);
    let config = fast_patcher();
    let tick = config.tick;
    let s = started(&double, config).await;
    let fault = double.inject(Fault::new(Verb::List, "configmaps").always().respond(500));
    delete_all(&double, &s, &objects, "alice").await;
    wait_missing(&double, "flaky", 20).await;
    let from = Instant::now();
    support::wait_until("a few failed LISTs", WAIT, || double.fault_hits(fault) >= 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let failed = double.fault_hits(fault) as usize;
    let ticks = (from.elapsed().as_secs_f64() / tick.as_secs_f64()).ceil() as usize;
    // Deletions that came alone were GETs (and some may be confirmed); the rest wait.
    assert_eq!(s.counting.patcher.marks_len(), 20, "no mark lost");
    assert!(
        s.counting.patcher.confirmed_marks() < 20,
        "the grouped ones are not confirmed while the LIST fails"
    );
    // One group: at most one LIST a tick while it fails (the deletions' own ticks aside).
    let during = probes(&double)
        .into_iter()
        .filter(|r| r.verb == Verb::List)
        .count();
    assert!(
        failed <= during && during <= ticks + 20,
        "{during} LISTs in {ticks} ticks"
    );
    double.remove_fault(fault);
    let patcher = s.counting.patcher.clone();
    support::wait_until("every mark confirmed", WAIT, || {
        patcher.confirmed_marks() == 20
    })
    .await;
    assert_eq!(
        missing(&support::fleet::gitrepo_named(&double, "flaky")),
        20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_that_never_answers_is_given_up_and_tried_again_one_at_a_time() {
    let double = ApiDouble::start(Options::default()).await;
    let objects = seed_owner(&double, "slow", 10, &["apps"]);
    let mut config = fast_patcher();
    config.retry.call_timeout = Duration::from_millis(300);
    let call_timeout = config.retry.call_timeout;
    let s = started(&double, config).await;
    let hang = double.inject(Fault::new(Verb::List, "configmaps").always().hang());
    delete_all(&double, &s, &objects, "alice").await;
    wait_missing(&double, "slow", 10).await;
    let from = Instant::now();
    support::wait_until("LISTs given up", WAIT, || double.fault_hits(hang) >= 3).await;
    let hung = double.fault_hits(hang) as f64;
    let elapsed = from.elapsed();
    assert_eq!(s.counting.patcher.marks_len(), 10, "no mark lost");
    // Each LIST waits for its timeout before the next is made (and one may have been
    // under way at `from`): no pile-up of requests the API does not answer.
    let bound = elapsed.as_secs_f64() / call_timeout.as_secs_f64() + 2.0;
    assert!(hung <= bound, "{hung} hung LISTs in {elapsed:?}");
    double.remove_fault(hang);
    let patcher = s.counting.patcher.clone();
    support::wait_until("every mark confirmed", WAIT, || {
        patcher.confirmed_marks() == 10
    })
    .await;
    assert_eq!(missing(&support::fleet::gitrepo_named(&double, "slow")), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_that_may_not_be_listed_is_checked_with_gets() {
    let double = ApiDouble::start(Options::default()).await;
    let objects = seed_owner(&double, "secretive", 10, &["apps"]);
    let s = started(&double, fast_patcher()).await;
    let original = double
        .get(&gvr::CONFIGMAPS, "apps", &objects[3].1)
        .expect("cm");
    let forbidden = double.inject(Fault::new(Verb::List, "configmaps").always().respond(403));
    delete_all(&double, &s, &objects, "alice").await;
    wait_missing(&double, "secretive", 10).await;
    let patcher = s.counting.patcher.clone();
    support::wait_until("every mark confirmed by a GET", WAIT, || {
        patcher.confirmed_marks() == 10
    })
    .await;
    recreate(&double, &original, "back-again");
    wait_missing(&double, "secretive", 9).await;
    assert_eq!(
        double.fault_hits(forbidden),
        1,
        "a refused LIST is remembered, not repeated every tick"
    );
    let gets = probes(&double)
        .into_iter()
        .filter(|r| r.verb == Verb::Get)
        .count();
    assert!(gets >= 10, "{gets} GETs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_in_pages_is_followed_to_its_last_page() {
    let double = ApiDouble::start(Options::default()).await;
    let objects = seed_owner(&double, "paged", 40, &["apps"]);
    let config = PatcherConfig {
        probe_page_size: 5,
        ..fast_patcher()
    };
    let s = started(&double, config).await;
    // The last ten go; the thirty left take six pages, the re-created one is on the last.
    let gone = &objects[30..];
    let original = double
        .get(&gvr::CONFIGMAPS, "apps", &objects[39].1)
        .expect("cm");
    delete_all(&double, &s, gone, "alice").await;
    wait_missing(&double, "paged", 10).await;
    let patcher = s.counting.patcher.clone();
    support::wait_until("every mark confirmed", WAIT, || {
        patcher.confirmed_marks() == 10
    })
    .await;
    recreate(&double, &original, "back-on-the-last-page");
    wait_missing(&double, "paged", 9).await;
    let continued = probes(&double)
        .into_iter()
        .filter(|r| r.verb == Verb::List && r.query.contains("continue="))
        .count();
    assert!(continued > 0, "continue tokens followed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_with_more_pages_than_allowed_stops_and_keeps_the_marks() {
    let double = ApiDouble::start(Options::default()).await;
    let objects = seed_owner(&double, "huge", 40, &["apps"]);
    let config = PatcherConfig {
        probe_page_size: 5,
        probe_max_pages: 2,
        ..fast_patcher()
    };
    let s = started(&double, config).await;
    delete_all(&double, &s, &objects[30..], "alice").await;
    wait_missing(&double, "huge", 10).await;
    support::wait_until("several LISTs", WAIT, || {
        probes(&double)
            .iter()
            .filter(|r| r.verb == Verb::List)
            .count()
            >= 10
    })
    .await;
    let lists: Vec<RequestRecord> = probes(&double)
        .into_iter()
        .filter(|r| r.verb == Verb::List)
        .collect();
    let first_pages = lists
        .iter()
        .filter(|r| !r.query.contains("continue="))
        .count();
    assert!(
        lists.len() <= 2 * first_pages,
        "at most two pages a LIST: {} requests, {first_pages} LISTs",
        lists.len()
    );
    // Thirty objects left, ten a LIST: the marked ones are never reached, so never
    // taken as gone by mistake, and none is lost.
    assert_eq!(s.counting.patcher.marks_len(), 10);
    assert_eq!(missing(&support::fleet::gitrepo_named(&double, "huge")), 10);
}

// ------------------------------------------------------------------ write coalescing

/// Per owner: owner-status PATCHes, BundleDeployment status PATCHes, Events.
fn writes_of(double: &ApiDouble, repo: &str) -> (usize, usize, usize) {
    let bd = format!("{repo}-config");
    let log = double.requests();
    let client = |r: &&RequestRecord| r.origin == Origin::Client;
    let owner = log
        .iter()
        .filter(client)
        .filter(|r| {
            r.is(Verb::Patch, "gitrepos", Some("status")) && r.name.as_deref() == Some(repo)
        })
        .count();
    let bds = log
        .iter()
        .filter(client)
        .filter(|r| {
            r.is(Verb::Patch, "bundledeployments", Some("status"))
                && r.name.as_deref() == Some(bd.as_str())
        })
        .count();
    let events = log
        .iter()
        .filter(client)
        .filter(|r| r.verb == Verb::Create && r.resource() == "events")
        .filter(|r| {
            r.body
                .as_ref()
                .is_some_and(|b| b["regarding"]["name"] == repo)
        })
        .count();
    (owner, bds, events)
}

/// `deletions` spread over `owners` GitRepos (each in its own namespace), reviewed and
/// deleted 32 at a time; returns the batches and each owner's writes.
async fn coalescing(
    owners: usize,
    deletions: usize,
) -> (u64, Vec<(String, (usize, usize, usize))>) {
    let double = ApiDouble::start(Options::default()).await;
    let mut all = Vec::new();
    let repos: Vec<String> = (0..owners).map(|k| format!("team{k:02}")).collect();
    for repo in &repos {
        let ns = format!("{repo}-apps");
        all.extend(seed_owner(
            &double,
            repo,
            deletions / owners,
            &[ns.as_str()],
        ));
    }
    // Interleaved, as a sweep across namespaces would come.
    let per = deletions / owners;
    let order: Vec<(String, String)> = (0..per)
        .flat_map(|i| (0..owners).map(move |k| k * per + i))
        .map(|j| all[j].clone())
        .collect();
    let s = started(&double, PatcherConfig::default()).await;
    delete_all(&double, &s, &order, "alice").await;
    for repo in &repos {
        wait_missing(&double, repo, per as i64).await;
    }
    let patcher = s.counting.patcher.clone();
    support::wait_until("every mark confirmed", WAIT, || {
        patcher.confirmed_marks() == deletions
    })
    .await;
    // Quiet: no write for a while (the probes go on).
    let writes = || {
        double.count_where(|r| {
            r.origin == Origin::Client && matches!(r.verb, Verb::Patch | Verb::Create)
        })
    };
    let mut last = writes();
    loop {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let now = writes();
        if now == last {
            break;
        }
        last = now;
    }
    let batches = s.counting.patcher.batches();
    let per_owner = repos
        .iter()
        .map(|r| (r.clone(), writes_of(&double, r)))
        .collect();
    (batches, per_owner)
}

fn report(
    what: &str,
    deletions: usize,
    batches: u64,
    per_owner: &[(String, (usize, usize, usize))],
) {
    let total = per_owner
        .iter()
        .fold((0, 0, 0), |a, (_, w)| (a.0 + w.0, a.1 + w.1, a.2 + w.2));
    eprintln!(
        "{what}: {deletions} deletions, {batches} worker batches; per 1,000 deletions: \
         {} owner-status writes, {} BundleDeployment status writes, {} Events",
        total.0 * 1000 / deletions,
        total.1 * 1000 / deletions,
        total.2 * 1000 / deletions
    );
    for (repo, (owner, bds, events)) in per_owner {
        eprintln!("  {repo}: owner status {owner}, BundleDeployment status {bds}, Events {events}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_deletions_over_ten_owners_write_each_owner_at_most_once_a_batch() {
    let (batches, per_owner) = coalescing(10, 1000).await;
    report("10 owners × 100", 1000, batches, &per_owner);
    for (repo, (owner, bds, events)) in &per_owner {
        assert!(
            *owner >= 1 && *owner as u64 <= batches,
            "{repo}: {owner} owner writes, {batches} batches"
        );
        assert!(
            *bds >= 1 && *bds as u64 <= batches,
            "{repo}: {bds} BundleDeployment writes"
        );
        assert!(*events as u64 <= batches, "{repo}: {events} Events");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_deletions_of_one_owner_write_it_at_most_once_a_batch() {
    let (batches, per_owner) = coalescing(1, 1000).await;
    report("1 owner × 1000", 1000, batches, &per_owner);
    let (repo, (owner, bds, events)) = &per_owner[0];
    assert!(
        *owner >= 1 && *owner as u64 <= batches,
        "{repo}: {owner} owner writes, {batches} batches"
    );
    assert!(
        *bds >= 1 && *bds as u64 <= batches,
        "{repo}: {bds} BundleDeployment writes"
    );
    assert!(*events as u64 <= batches, "{repo}: {events} Events");
}

/// Each resync re-derives every owner (one GET of the owner and one LIST of its
/// BundleDeployments) in a sweep of `sweep_rate` owners per second: 60 owners at 20 per
/// second take about three seconds, never one burst of 120 requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resync_sweeps_every_owner_within_its_rate() {
    let double = ApiDouble::start(Options::default()).await;
    let owners = 60;
    for i in 0..owners {
        seed_owner(&double, &format!("sweep-{i:02}"), 1, &["default"]);
    }
    let config = PatcherConfig {
        sweep_rate: 20,
        ..PatcherConfig::default()
    };
    let burst = config.sweep_burst() as usize;
    let _s = CountingServer::start(&double, config.clone())
        .await
        .synced()
        .await;
    let owner_reads = |d: &ApiDouble| -> Vec<RequestRecord> {
        d.requests()
            .into_iter()
            .filter(|r| {
                r.origin == Origin::Client && r.verb == Verb::Get && r.resource() == "gitrepos"
            })
            .collect()
    };
    support::wait_until("every owner re-derived", WAIT, || {
        owner_reads(&double).len() >= owners
    })
    .await;
    let reads = owner_reads(&double);
    let lists = double.count_where(|r| {
        r.origin == Origin::Client
            && r.verb == Verb::List
            && r.resource() == "bundledeployments"
            && r.query.contains("repo-name")
    });
    let span = span(&reads);
    let peak = peak_per_second(&reads);
    eprintln!(
        "{owners} owners re-derived by the start-up resync's sweep: {} owner GETs and {lists} \
         LISTs of their BundleDeployments over {span:?}, peak {peak} owners in one second \
         (rate {}/s, {burst} saved up)",
        reads.len(),
        config.sweep_rate
    );
    assert_eq!(reads.len(), owners, "each owner read once");
    assert_eq!(lists, owners, "each owner's BundleDeployments listed once");
    let cap = burst + (f64::from(config.sweep_rate) * (span.as_secs_f64() + 0.1)).floor() as usize;
    assert!(reads.len() <= cap, "{} owners over {span:?}", reads.len());
    assert!(
        peak <= config.sweep_rate as usize + burst,
        "{peak} owners in one second"
    );
}
