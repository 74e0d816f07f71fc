//! Fault soak: a steady mix of deletions and re-creations (drift correction) reviewed
//! by the real binary, while the API double injects 409s, 5xx, latency spikes, dropped
//! watches and full restarts that lose the watch history. Afterwards every count must
//! be exact; memory and open descriptors of the webhook are sampled throughout.
//!
//! Run: `cargo bench --bench soak -- --minutes 10` (results in RELIABILITY.md).
//! Without `--bench` (e.g. `cargo test --benches`) it runs for a few seconds.
//! `--server-bin PATH` runs that webhook binary instead of the one Cargo built (as in
//! the load bench): with a target directory shared by several worktrees, another build
//! may replace `target/release/fleet-delete-guard` before the soak starts it.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use kube_api_double::{gvr, ApiDouble, Fault, Options, Verb};
use rand::{seq::IteratorRandom, Rng};
use serde_json::Value;
use support::fleet::{imitate_gitrepo_status_controller, missing, seed_many, BD_NAMESPACE};

const OBJECTS: usize = 200;

fn proc_status(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let minutes: f64 = args
        .iter()
        .position(|a| a == "--minutes")
        .and_then(|i| args.get(i + 1))
        .and_then(|m| m.parse().ok())
        .unwrap_or(if args.iter().any(|a| a == "--bench") {
            10.0
        } else {
            0.1
        });
    let duration = Duration::from_secs_f64(minutes * 60.0);
    let server_bin = args
        .iter()
        .position(|a| a == "--server-bin")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_BIN_EXE_fleet-delete-guard")));

    let double = ApiDouble::start(Options::default()).await;
    seed_many(&double, OBJECTS);
    imitate_gitrepo_status_controller(&double, Duration::from_millis(20));
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    double.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let certs = support::certificates();
    let files = support::write_pair(dir.path(), &certs);

    let mut child = Command::new(&server_bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .args(["--resync-interval", "30", "--confirm-timeout", "5"])
        .arg("--tls-cert")
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "warn,fleet_delete_guard=info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let pid = child.id();
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (addr, metrics_addr): (SocketAddr, SocketAddr) = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("serving log line");
        if line.contains("fleet-delete-guard serving") {
            let v: Value = serde_json::from_str(&line).expect("JSON");
            break (
                v["listen"].as_str().expect("listen").parse().expect("addr"),
                v["metrics_listen"]
                    .as_str()
                    .expect("metrics")
                    .parse()
                    .expect("addr"),
            );
        }
    };
    let errors_seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let errors = errors_seen.clone();
    std::thread::spawn(move || {
        while let Ok(line) = rx.recv() {
            if line.contains("\"level\":\"ERROR\"")
                && errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 5
            {
                eprintln!("webhook error: {line}");
            }
        }
    });
    let url = format!("https://localhost:{}/validate", addr.port());
    let client = support::https_client(&certs.ca_pem);
    let http = reqwest::Client::new();
    loop {
        let ready = http
            .get(format!("http://{metrics_addr}/readyz"))
            .send()
            .await;
        if matches!(ready, Ok(ref r) if r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // name → (the object as created, when it was deleted) for absent objects.
    let mut originals: BTreeMap<String, Value> = BTreeMap::new();
    for i in 0..OBJECTS {
        let name = format!("cm-{i:03}");
        originals.insert(
            name.clone(),
            double.get(&gvr::CONFIGMAPS, "default", &name).expect("cm"),
        );
    }
    let mut absent: BTreeMap<String, Instant> = BTreeMap::new();
    let (rss_start, fds_start) = (proc_status(pid, "VmRSS:"), open_fds(pid));
    let mut rss_max = rss_start;
    let mut samples = Vec::new();
    let start = Instant::now();
    let mut next_fault = Instant::now() + Duration::from_secs(5);
    let mut fault_round = 0u32;
    let mut deletions = 0u64;
    let mut recreations = 0u64;
    let mut review_failures = 0u64;
    let mut generation = 0u64;
    let mut last_sample = Instant::now();
    let mut rng = rand::rng();

    while start.elapsed() < duration {
        // ~50 operations a second.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let recreate = !absent.is_empty() && (absent.len() > OBJECTS / 2 || rng.random_bool(0.45));
        if recreate {
            let ready: Vec<String> = absent
                .iter()
                .filter(|(_, at)| at.elapsed() > Duration::from_secs(1))
                .map(|(n, _)| n.clone())
                .collect();
            if let Some(name) = ready.into_iter().choose(&mut rng) {
                generation += 1;
                let mut obj = originals[&name].clone();
                obj["metadata"]["uid"] = format!("soak-{generation:08}-{name}").into();
                if let Some(meta) = obj["metadata"].as_object_mut() {
                    meta.remove("resourceVersion");
                }
                double.seed(obj).expect("re-create");
                absent.remove(&name);
                recreations += 1;
            }
        } else {
            let present: Vec<String> = originals
                .keys()
                .filter(|n| !absent.contains_key(*n))
                .cloned()
                .collect();
            if let Some(name) = present.into_iter().choose(&mut rng) {
                let review =
                    support::fleet::many_review(&double, &name, &format!("soak-{deletions}"));
                match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(review.to_string())
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {}
                    _ => review_failures += 1,
                }
                double.delete_object(&gvr::CONFIGMAPS, "default", &name);
                absent.insert(name, Instant::now());
                deletions += 1;
            }
        }
        if Instant::now() >= next_fault {
            fault_round += 1;
            match fault_round % 6 {
                1 => {
                    double.inject(
                        Fault::new(Verb::Patch, "bundledeployments")
                            .subresource("status")
                            .times(5)
                            .respond(409),
                    );
                }
                2 => {
                    double.inject(
                        Fault::new(Verb::Patch, "gitrepos")
                            .subresource("status")
                            .times(5)
                            .respond(503),
                    );
                    double.inject(Fault::new(Verb::Get, "configmaps").times(5).respond(500));
                    // The grouped checks (one LIST per kind and namespace).
                    double.inject(Fault::new(Verb::List, "configmaps").times(5).respond(500));
                }
                3 => double.set_global_latency(Duration::from_millis(300)),
                4 => {
                    double.set_global_latency(Duration::ZERO);
                    double.drop_watches();
                }
                5 => {
                    double.restart().await.expect("API restart");
                }
                _ => {}
            }
            next_fault = Instant::now() + Duration::from_secs(5);
        }
        if last_sample.elapsed() >= Duration::from_secs(10) {
            let rss = proc_status(pid, "VmRSS:");
            rss_max = rss_max.max(rss);
            samples.push((start.elapsed().as_secs(), rss, open_fds(pid)));
            last_sample = Instant::now();
        }
    }
    double.clear_faults();
    double.set_global_latency(Duration::ZERO);

    // Quiesce: marks of re-created objects are released at the next recheck (10 s),
    // the resync catches anything refused while the API was down.
    let expected = absent.len() as i64;
    let settle = double
        .wait_for(
            &gvr::BUNDLEDEPLOYMENTS,
            BD_NAMESPACE,
            "many-config",
            |bd| bd["status"]["resourceCounts"]["missing"] == expected,
            Duration::from_secs(90),
        )
        .await;
    let settle_repo = double
        .wait_for(
            &gvr::GITREPOS,
            "fleet-local",
            "many",
            |r| missing(r) == expected,
            Duration::from_secs(60),
        )
        .await;
    double.wait_hooks_idle(Duration::from_secs(30)).await.ok();
    let bd = double
        .get(&gvr::BUNDLEDEPLOYMENTS, BD_NAMESPACE, "many-config")
        .expect("bd");
    let repo = double
        .get(&gvr::GITREPOS, "fleet-local", "many")
        .expect("repo");
    let listed_missing: Vec<String> = bd["status"]["modifiedStatus"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let bd_missing = bd["status"]["resourceCounts"]["missing"]
        .as_i64()
        .unwrap_or(-1);
    let bd_ready = bd["status"]["resourceCounts"]["ready"]
        .as_i64()
        .unwrap_or(-1);
    let (rss_end, fds_end) = (proc_status(pid, "VmRSS:"), open_fds(pid));
    let _ = child.kill();
    let _ = child.wait();

    println!("soak: {:.1} min, {deletions} deletions reviewed, {recreations} re-creations, {fault_round} fault rounds", minutes);
    println!("review failures (during API restarts the webhook still answers; failures are transport): {review_failures}");
    println!("absent at the end: {expected}; BundleDeployment missing {bd_missing}, ready {bd_ready}; GitRepo missing {}", missing(&repo));
    println!(
        "modifiedStatus lists {} (capped at 10 by Fleet)",
        listed_missing.len()
    );
    println!("webhook RSS KiB: start {rss_start}, end {rss_end}, max {rss_max}; open fds: start {fds_start}, end {fds_end}");
    println!(
        "error log lines: {}",
        errors_seen.load(std::sync::atomic::Ordering::Relaxed)
    );
    for (t, rss, fds) in &samples {
        println!("  t={t:>4}s rss={rss} KiB fds={fds}");
    }
    let exact = settle.is_ok()
        && settle_repo.is_ok()
        && bd_missing == expected
        && bd_ready == OBJECTS as i64 - expected
        && missing(&repo) == expected;
    println!("counts exact: {exact}");
    assert!(exact, "counts must be exact after the soak");
}
