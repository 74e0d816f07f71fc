//! Status lag: time from the review sent to the GitRepo status counting the deletion,
//! and status patches per deletion, against the Kubernetes API double.
//!
//! Run: `cargo bench --bench status_lag` (release build; numbers in BENCHMARKS.md).
//! For bursts, deletion i's lag is the time from the i-th review sent to the i-th
//! increase of the GitRepo's `missing` count (both in order): coalescing may reorder
//! within a patch, so this is the lag of the i-th counted deletion.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use kube_api_double::{gvr, ApiDouble, Options, Verb};
use support::fleet::{fast_patcher, missing, seed_many, CountingServer};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Sequential single deletions: each one's lag alone.
async fn singles(rounds: usize) -> (Vec<Duration>, f64) {
    let double = ApiDouble::start(Options::default()).await;
    seed_many(&double, rounds);
    let s = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    let client = s.server.client();
    let url = s.server.url();
    let mut lags = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let name = format!("cm-{i:03}");
        let review = support::fleet::many_review(&double, &name, &format!("r-{i}"));
        let start = Instant::now();
        let (status, _) = support::post(&client, &url, review.to_string()).await;
        assert_eq!(status, 200);
        double.delete_object(&gvr::CONFIGMAPS, "default", &name);
        double
            .wait_for(
                &gvr::GITREPOS,
                "fleet-local",
                "many",
                |r| missing(r) as usize > i,
                Duration::from_secs(30),
            )
            .await
            .expect("counted");
        lags.push(start.elapsed());
    }
    let patches = double.count(Verb::Patch, "bundledeployments", Some("status"))
        + double.count(Verb::Patch, "gitrepos", Some("status"));
    (lags, patches as f64 / rounds as f64)
}

/// `n` deletions fired together (64 in flight).
async fn burst(n: usize) -> (Vec<Duration>, f64) {
    let double = ApiDouble::start(Options::default()).await;
    seed_many(&double, n);
    let s = CountingServer::start(&double, fast_patcher())
        .await
        .synced()
        .await;
    let client = s.server.client();
    let url = s.server.url();
    let reviews: Vec<_> = (0..n)
        .map(|i| {
            let name = format!("cm-{i:03}");
            (
                name.clone(),
                support::fleet::many_review(&double, &name, &format!("r-{i}")),
            )
        })
        .collect();

    // Watch the count rise, timestamping each increase.
    let watcher_double = &double;
    let counted_at = async move {
        let mut times = Vec::with_capacity(n);
        let mut seen = 0usize;
        while seen < n {
            let repo = watcher_double
                .wait_for(
                    &gvr::GITREPOS,
                    "fleet-local",
                    "many",
                    |r| missing(r) as usize > seen,
                    Duration::from_secs(60),
                )
                .await
                .expect("progress");
            let now = Instant::now();
            let m = missing(&repo) as usize;
            while seen < m.min(n) {
                times.push(now);
                seen += 1;
            }
        }
        times
    };
    let sent = async {
        let sent: Vec<Instant> = stream::iter(reviews)
            .map(|(name, review)| {
                let client = client.clone();
                let url = url.clone();
                let double = &double;
                async move {
                    let at = Instant::now();
                    let (status, _) = support::post(&client, &url, review.to_string()).await;
                    assert_eq!(status, 200);
                    double.delete_object(&gvr::CONFIGMAPS, "default", &name);
                    at
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        sent
    };
    let (mut sent, counted) = tokio::join!(sent, counted_at);
    sent.sort();
    let lags: Vec<Duration> = sent
        .iter()
        .zip(counted.iter())
        .map(|(s, c)| c.saturating_duration_since(*s))
        .collect();
    let patches = double.count(Verb::Patch, "bundledeployments", Some("status"))
        + double.count(Verb::Patch, "gitrepos", Some("status"));
    (lags, patches as f64 / n as f64)
}

fn report(label: &str, mut lags: Vec<Duration>, patches_per_deletion: f64) {
    lags.sort();
    println!(
        "| {label} | {} | {} | {} | {} | {:.3} |",
        lags.len(),
        ms(percentile(&lags, 0.50)),
        ms(percentile(&lags, 0.99)),
        ms(*lags.last().unwrap_or(&Duration::ZERO)),
        patches_per_deletion
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: run a
    // tiny smoke round then, so the harness stays cheap in test runs.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (singles_n, bursts): (usize, Vec<usize>) = if quick {
        (3, vec![10])
    } else {
        (200, vec![100, 1000])
    };
    println!("| scenario | deletions | p50 lag ms | p99 lag ms | max lag ms | status patches per deletion |");
    println!("|---|---|---|---|---|---|");
    let (lags, ppd) = singles(singles_n).await;
    report("1 at a time", lags, ppd);
    for n in bursts {
        let (lags, ppd) = burst(n).await;
        report(&format!("burst of {n}"), lags, ppd);
    }
}
