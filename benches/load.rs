//! Load benchmark of the admission path against the real server binary.
//!
//! Run: `cargo bench --bench load` (the full suite, about 6 minutes; numbers and
//! commands in BENCHMARKS.md), `cargo bench --bench load -- --help` for the options.
//!
//! 1. The Kubernetes API double starts in this process, seeded with `--bundle-deployments`
//!    BundleDeployments of this cluster (10,000, in GitRepos of 100), the ConfigMap each
//!    one deploys, and the GitRepos.
//! 2. `fleet-delete-guard serve` (the release binary cargo builds for benches, or
//!    `--server-bin`) starts as a child process with KUBECONFIG pointing at the double;
//!    start → `/readyz` 200 (caches synced) is timed, several times.
//! 3. Open loop: review i is due at `start + i / rate` whatever happened before; it goes
//!    to the first free one of `--connections` keep-alive TLS (HTTP/1.1) connections, and
//!    its latency is measured from its due time, so queueing in the generator or in the
//!    server shows in the latency (no coordinated omission).
//! 4. Saturation: closed loop over `--saturation-connections` connections.
//! 5. The server's CPU time (from /proc, per review), peak RSS (VmHWM) and log volume.
//!
//! The generator and the double share the machine with the server: on 2 cores the
//! generator's TLS and HTTP work takes CPU from the server (`--server-cpus` and
//! `--client-cpus` pin them apart).

// libc: signals, CPU affinity, timer slack and rusage of the measured processes.
#![allow(unsafe_code)]

#[path = "support/process.rs"]
mod process;
#[path = "support/reviews.rs"]
mod reviews;

use std::{
    io::{Read as _, Write as _},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use axum::body::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use kube_api_double::{ApiDouble, Options};
use process::{context_switches, free_port, memory_kib, process_cpu, readyz};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio::sync::{mpsc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mix {
    /// Non-Fleet objects only (the fast path).
    Fast,
    /// Users deleting Fleet-managed objects, owners resolved from the cache.
    Fleet,
    /// 95 % fast path, 5 % Fleet-managed.
    Mixed,
}

impl Mix {
    fn label(self) -> &'static str {
        match self {
            Mix::Fast => "fast path",
            Mix::Fleet => "Fleet-managed",
            Mix::Mixed => "95/5 mix",
        }
    }
}

#[derive(Parser, Debug)]
#[command(about = "Open-loop load benchmark of fleet-delete-guard's admission path")]
struct Args {
    /// The server binary (default: the release binary cargo built for this bench).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// BundleDeployments of this cluster in the API double (and in the owner cache).
    #[arg(long, default_value_t = 10_000)]
    bundle_deployments: usize,
    /// Keep-alive TLS connections of the open-loop phases.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Request rates of the open-loop phases (reviews/s).
    #[arg(long, value_delimiter = ',', default_value = "500,1000,2000,4000")]
    rates: Vec<u32>,
    /// Mixes of the open-loop phases.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "fast,fleet,mixed"
    )]
    mixes: Vec<Mix>,
    /// Measured seconds per open-loop phase.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds before each phase.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Connections of the saturation phases (closed loop); 0 skips them.
    #[arg(long, default_value_t = 64)]
    saturation_connections: usize,
    /// Measured seconds per saturation phase.
    #[arg(long, default_value_t = 10.0)]
    saturation_duration: f64,
    /// Start → ready measurements (each a fresh process), with the cache and without.
    #[arg(long, default_value_t = 5)]
    startup_runs: usize,
    /// `taskset -c` CPU list for the server (default: not pinned).
    #[arg(long)]
    server_cpus: Option<String>,
    /// CPU list for this generator and the API double (default: not pinned).
    #[arg(long)]
    client_cpus: Option<String>,
    /// RUST_LOG of the server (info: every review is logged, as in production).
    #[arg(long, default_value = "info")]
    server_log: String,
    /// Fleet reviews are real deletions (dryRun false): counted, so the patcher writes
    /// to the double during the run. Default: dry runs (same answer, no counting).
    #[arg(long)]
    counted: bool,
    /// Extra arguments for `serve`, e.g. `--extra=--max-concurrent-reviews=64`.
    #[arg(long, allow_hyphen_values = true)]
    extra: Vec<String>,
    /// Extra environment of the server only, `KEY=VALUE` (e.g. `TOKIO_WORKER_THREADS=1`).
    #[arg(long)]
    server_env: Vec<String>,
    /// Distinct review bodies per mix (cycled).
    #[arg(long, default_value_t = 2000)]
    bodies: usize,
    /// Keep the server's log and working directory here instead of a temporary one.
    #[arg(long)]
    keep_dir: Option<PathBuf>,
    /// A short run: 2 s phases, one rate, one startup run (a smoke test of the harness).
    #[arg(long)]
    quick: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One prepared review: its bytes and what the answer must contain.
struct Body {
    bytes: Bytes,
    expect: Vec<u8>,
}

fn bodies(mix: Mix, n: usize, bds: usize, dry_run: bool) -> Vec<Body> {
    (0..n)
        .map(|i| {
            // A spread of BundleDeployments across the whole cache.
            let j = (i * 7919 + 13) % bds.max(1);
            let fleet = match mix {
                Mix::Fast => false,
                Mix::Fleet => true,
                Mix::Mixed => i % 20 == 7,
            };
            let review = if fleet {
                reviews::fleet_review(i, j, dry_run)
            } else {
                reviews::fast_review(i)
            };
            let uid = review["request"]["uid"].as_str().unwrap_or_default();
            let expect = if fleet {
                // Owner resolved from the cache: the GitRepo is named.
                format!("\"gitrepo\":\"fleet-local/{}\"", reviews::repo_name(j))
            } else {
                format!("\"uid\":\"{uid}\"")
            };
            Body {
                bytes: Bytes::from(reviews::bytes(&review)),
                expect: expect.into_bytes(),
            }
        })
        .collect()
}

// ------------------------------------------------------------------ the server

struct Server {
    child: Child,
    webhook: SocketAddr,
    ca_pem: String,
    log: PathBuf,
}

impl Server {
    /// Start the server; returns it and the time from spawn to `/readyz` 200.
    async fn start(
        args: &Args,
        bin: &Path,
        dir: &Path,
        tag: &str,
        kubeconfig: Option<&Path>,
    ) -> (Server, Duration) {
        let webhook: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let ca = dir.join(format!("ca-{tag}.pem"));
        let _ = std::fs::remove_file(&ca);
        let log = dir.join(format!("server-{tag}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = match &args.server_cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("serve")
            .arg(format!("--listen={webhook}"))
            .arg(format!("--metrics-listen={metrics}"))
            .arg(format!("--generated-ca-file={}", ca.display()))
            .arg("--log-format=json")
            .args(&args.extra)
            .env("RUST_LOG", &args.server_log)
            .envs(args.server_env.iter().filter_map(|kv| kv.split_once('=')))
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file);
        match kubeconfig {
            Some(k) => {
                cmd.env("KUBECONFIG", k);
            }
            None => {
                cmd.arg("--counting=false");
            }
        }
        for (k, _) in std::env::vars() {
            if k.starts_with("FLEET_DELETE_GUARD_") {
                cmd.env_remove(k);
            }
        }
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn the server");
        process::wait_ready(
            "server",
            &mut child,
            &log,
            Duration::from_secs(60),
            Duration::from_micros(500),
            || readyz(metrics),
        )
        .await;
        let ready = started.elapsed();
        let ca_pem = std::fs::read_to_string(&ca).expect("generated CA");
        (
            Server {
                child,
                webhook,
                ca_pem,
                log,
            },
            ready,
        )
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `VmHWM` (peak RSS) and `VmRSS` in KiB.
    fn memory_kib(&self) -> (u64, u64) {
        memory_kib(self.pid())
    }

    /// CPU time of all the server's threads so far.
    fn cpu_time(&self) -> Duration {
        process_cpu(self.pid())
    }

    async fn stop(mut self) {
        process::stop(&mut self.child).await;
    }
}

// ------------------------------------------------------------------ connections

type Sender = SendRequest<Full<Bytes>>;

struct Target {
    addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
}

impl Target {
    fn new(addr: SocketAddr, ca_pem: &str) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("add CA");
        }
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Target {
            addr,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }

    async fn connect(&self) -> std::io::Result<Sender> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        // Like Go's net/http (kube-apiserver): TCP_NODELAY on.
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("localhost").expect("server name");
        let tls = self.tls.connect(name, tcp).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}

/// Send one review; `Ok(true)` when the answer is a 200 carrying `expect`.
async fn send(sender: &mut Sender, body: &Body) -> Result<bool, hyper::Error> {
    let request = hyper::Request::post("/validate")
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::ACCEPT, "application/json, */*")
        .body(Full::new(body.bytes.clone()))
        .expect("request");
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let ok = response.status() == hyper::StatusCode::OK;
    let answer = response.into_body().collect().await?.to_bytes();
    Ok(ok && memchr::memmem::find(&answer, &body.expect).is_some())
}

fn histogram() -> Histogram<u64> {
    // 1 µs … 100 s in ns, 3 significant digits.
    Histogram::new_with_bounds(1_000, 100_000_000_000, 3).expect("histogram")
}

#[derive(Default)]
struct WorkerResult {
    ok: u64,
    errors: u64,
    latency: Option<Histogram<u64>>,
    dispatch_lag: Option<Histogram<u64>>,
}

struct PhaseResult {
    sent: u64,
    ok: u64,
    errors: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    dispatch_lag: Histogram<u64>,
    server_cpu: Duration,
    /// Server context switches per review.
    switches: f64,
}

fn merge(results: Vec<WorkerResult>) -> (u64, u64, Histogram<u64>, Histogram<u64>) {
    let (mut ok, mut errors, mut lat, mut lag) = (0, 0, histogram(), histogram());
    for r in results {
        ok += r.ok;
        errors += r.errors;
        if let Some(h) = r.latency {
            lat.add(h).expect("merge");
        }
        if let Some(h) = r.dispatch_lag {
            lag.add(h).expect("merge");
        }
    }
    (ok, errors, lat, lag)
}

/// A review due at `due`; measured when `measured`.
struct Job {
    due: Instant,
    index: usize,
    measured: bool,
}

/// Open loop: `rate` reviews/s for `warmup + duration`, only the last `duration` measured.
async fn open_loop(
    target: &Arc<Target>,
    bodies: &Arc<Vec<Body>>,
    rate: u32,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> PhaseResult {
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(target.connect().await.expect("connect"));
    }
    let (tx, rx) = mpsc::unbounded_channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = Vec::with_capacity(connections);
    for mut sender in senders {
        let rx = rx.clone();
        let bodies = bodies.clone();
        let target = target.clone();
        workers.push(tokio::spawn(async move {
            let mut r = WorkerResult {
                latency: Some(histogram()),
                dispatch_lag: Some(histogram()),
                ..WorkerResult::default()
            };
            loop {
                let job = { rx.lock().await.recv().await };
                let Some(job) = job else { break };
                let picked = Instant::now();
                let body = &bodies[job.index % bodies.len()];
                let result =
                    tokio::time::timeout(Duration::from_secs(10), send(&mut sender, body)).await;
                let done = Instant::now();
                let good = matches!(result, Ok(Ok(true)));
                if !matches!(result, Ok(Ok(_))) {
                    // Transport error or timeout: a new connection for the next one.
                    if let Ok(s) = target.connect().await {
                        sender = s;
                    }
                }
                if job.measured {
                    if good {
                        r.ok += 1;
                    } else {
                        r.errors += 1;
                    }
                    let ns = |d: Duration| (d.as_nanos() as u64).max(1_000);
                    if let Some(h) = r.latency.as_mut() {
                        h.saturating_record(ns(done - job.due));
                    }
                    if let Some(h) = r.dispatch_lag.as_mut() {
                        h.saturating_record(ns(picked.saturating_duration_since(job.due)));
                    }
                }
            }
            r
        }));
    }

    // The schedule runs on its own thread with a fine timer slack: tokio's timers tick
    // in milliseconds, which would send requests in bursts.
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let total = warmup + duration;
    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start + warmup;
    let scheduler = std::thread::spawn(move || {
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
        }
        let mut i: u64 = 0;
        let mut sent = 0u64;
        loop {
            let due = start + interval.mul_f64(i as f64);
            if due >= start + total {
                break;
            }
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let measured = due >= measure_from;
            if tx
                .send(Job {
                    due,
                    index: i as usize,
                    measured,
                })
                .is_err()
            {
                break;
            }
            if measured {
                sent += 1;
            }
            i += 1;
        }
        sent
    });
    let sent = tokio::task::spawn_blocking(move || scheduler.join().expect("scheduler"))
        .await
        .expect("scheduler");
    let mut results = Vec::with_capacity(workers.len());
    for w in workers {
        results.push(w.await.expect("worker"));
    }
    let elapsed = measure_from.elapsed();
    let (ok, errors, latency, dispatch_lag) = merge(results);
    PhaseResult {
        sent,
        ok,
        errors,
        elapsed,
        latency,
        dispatch_lag,
        server_cpu: Duration::ZERO,
        switches: 0.0,
    }
}

/// Closed loop: every connection sends its next review as soon as the answer arrives.
async fn closed_loop(
    target: &Arc<Target>,
    bodies: &Arc<Vec<Body>>,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> PhaseResult {
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(target.connect().await.expect("connect"));
    }
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut workers = Vec::with_capacity(connections);
    for (c, mut sender) in senders.into_iter().enumerate() {
        let bodies = bodies.clone();
        let target = target.clone();
        workers.push(tokio::spawn(async move {
            let mut r = WorkerResult {
                latency: Some(histogram()),
                ..WorkerResult::default()
            };
            let mut i = c * 7;
            loop {
                let at = Instant::now();
                if at >= end {
                    break;
                }
                let body = &bodies[i % bodies.len()];
                i += connections;
                let result =
                    tokio::time::timeout(Duration::from_secs(10), send(&mut sender, body)).await;
                let done = Instant::now();
                if !matches!(result, Ok(Ok(_))) {
                    if let Ok(s) = target.connect().await {
                        sender = s;
                    }
                }
                if at >= measure_from && done <= end {
                    if matches!(result, Ok(Ok(true))) {
                        r.ok += 1;
                    } else {
                        r.errors += 1;
                    }
                    if let Some(h) = r.latency.as_mut() {
                        h.saturating_record(((done - at).as_nanos() as u64).max(1_000));
                    }
                }
            }
            r
        }));
    }
    let mut results = Vec::with_capacity(workers.len());
    for w in workers {
        results.push(w.await.expect("worker"));
    }
    let (ok, errors, latency, dispatch_lag) = merge(results);
    PhaseResult {
        sent: ok + errors,
        ok,
        errors,
        elapsed: duration,
        latency,
        dispatch_lag,
        server_cpu: Duration::ZERO,
        switches: 0.0,
    }
}

// ------------------------------------------------------------------ reporting

fn ms(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1e6)
}

fn row(label: &str, target_rate: Option<u32>, r: &PhaseResult) {
    let h = &r.latency;
    let done = r.ok + r.errors;
    let throughput = done as f64 / r.elapsed.as_secs_f64();
    let cpu_per_review = if done > 0 {
        r.server_cpu.as_secs_f64() * 1e6 / done as f64
    } else {
        0.0
    };
    println!(
        "| {label} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {} |",
        target_rate.map_or("closed loop".to_string(), |r| r.to_string()),
        throughput,
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.90)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
        r.errors,
        r.sent,
        cpu_per_review,
        r.switches,
        if target_rate.is_some() {
            ms(r.dispatch_lag.value_at_quantile(0.99))
        } else {
            "–".to_string()
        }
    );
}

fn header() {
    println!("| mix | target rate/s | achieved/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | sent | server CPU µs/review | server context switches/review | generator lag p99 ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut uname = String::new();
    if let Ok(mut f) = std::fs::File::open("/proc/sys/kernel/osrelease") {
        let _ = f.read_to_string(&mut uname);
    }
    format!("{cores} cores ({cpu}), Linux {}", uname.trim())
}

fn median(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    if v.is_empty() {
        return (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    }
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn count_lines(path: &Path) -> (u64, u64) {
    let Ok(bytes) = std::fs::read(path) else {
        return (0, 0);
    };
    (
        memchr::memchr_iter(b'\n', &bytes).count() as u64,
        bytes.len() as u64,
    )
}

fn main() {
    let mut args = Args::parse();
    if args.quick {
        args.duration = 2.0;
        args.warmup = 0.5;
        args.saturation_duration = 2.0;
        args.startup_runs = 1;
        args.rates = vec![1000];
    }
    if let Some(cpus) = &args.client_cpus {
        process::pin_self(cpus);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    fleet_delete_guard::tls::install_crypto_provider();
    let bin = process::server_bin(args.server_bin.as_deref());
    let (_tmp, dir) = process::work_dir(args.keep_dir.as_deref());
    println!("# fleet-delete-guard admission load benchmark");
    println!();
    println!(
        "- date: {}",
        String::from_utf8_lossy(
            &Command::new("date")
                .arg("-u")
                .arg("+%Y-%m-%d %H:%M UTC")
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default()
        )
        .trim()
    );
    println!("- machine: {}", machine());
    println!("- server: {}", bin.display());
    println!(
        "- pinning: server {}, generator and API double {}",
        args.server_cpus.as_deref().unwrap_or("not pinned"),
        args.client_cpus.as_deref().unwrap_or("not pinned")
    );
    println!(
        "- server RUST_LOG={}, log to a file; extra args {:?}, env {:?}; Fleet reviews {}",
        args.server_log,
        args.extra,
        args.server_env,
        if args.counted {
            "counted (dryRun false)"
        } else {
            "dry runs (answered in full, not counted)"
        }
    );

    // The cluster: BundleDeployments, their ConfigMaps, GitRepos.
    let seeding = Instant::now();
    let double = ApiDouble::start(Options {
        history_limit: 1_000,
        ..Options::default()
    })
    .await;
    let n = args.bundle_deployments;
    for object in reviews::cluster(n) {
        double.seed(object).expect("seed the API double");
    }
    let kubeconfig = dir.join("kubeconfig");
    double.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    println!(
        "- API double: {n} BundleDeployments, {n} ConfigMaps, {} GitRepos (seeded in {:.1} s)",
        n.div_ceil(reviews::BDS_PER_REPO),
        seeding.elapsed().as_secs_f64()
    );

    // Start → ready.
    println!();
    println!("## Start → ready (`/readyz` 200)");
    println!();
    println!(
        "| configuration | runs | min ms | median ms | max ms | server CPU to ready, median ms | VmHWM after ready MiB |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (label, kc) in [
        ("no cluster (`--counting=false`)", None),
        (
            "10,000 BundleDeployments to cache",
            Some(kubeconfig.as_path()),
        ),
    ] {
        let label = if kc.is_some() {
            format!("{n} BundleDeployments to cache")
        } else {
            label.to_string()
        };
        let mut times = Vec::new();
        let mut cpu = Vec::new();
        let mut hwm = 0;
        for run in 0..args.startup_runs.max(1) {
            let (server, ready) = Server::start(
                &args,
                &bin,
                &dir,
                &format!("startup-{}-{run}", kc.is_some()),
                kc,
            )
            .await;
            times.push(ready);
            // The server's own work to get ready; the rest of the wall time is the API
            // server answering (here the double, serving the BundleDeployment pages).
            cpu.push(server.cpu_time());
            hwm = hwm.max(server.memory_kib().0);
            server.stop().await;
        }
        let (min, med, max) = median(times.clone());
        let (_, cpu_med, _) = median(cpu);
        println!(
            "| {label} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            times.len(),
            min.as_secs_f64() * 1e3,
            med.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            cpu_med.as_secs_f64() * 1e3,
            hwm as f64 / 1024.0
        );
    }

    // The server under load.
    let (server, ready) = Server::start(&args, &bin, &dir, "load", Some(&kubeconfig)).await;
    // Let start-up work (the initial resync) finish before measuring.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (hwm_idle, rss_idle) = server.memory_kib();
    let target = Arc::new(Target::new(server.webhook, &server.ca_pem));
    println!();
    println!(
        "Load server ready in {:.1} ms; idle after 3 s: VmRSS {:.1} MiB, VmHWM {:.1} MiB.",
        ready.as_secs_f64() * 1e3,
        rss_idle as f64 / 1024.0,
        hwm_idle as f64 / 1024.0
    );
    println!();
    println!("Body sizes (bytes, mean over the distinct bodies):");
    let mut prepared = Vec::new();
    for &mix in &args.mixes {
        let b = Arc::new(bodies(mix, args.bodies, n, !args.counted));
        let mean = b.iter().map(|b| b.bytes.len()).sum::<usize>() / b.len().max(1);
        println!("- {}: {mean}", mix.label());
        prepared.push((mix, b));
    }

    println!();
    println!(
        "## Open loop ({} keep-alive TLS connections, {:.0} s measured after {:.0} s warm-up)",
        args.connections, args.duration, args.warmup
    );
    println!();
    header();
    let mut total_reviews = 0u64;
    let log_before = count_lines(&server.log);
    let cpu_all_before = server.cpu_time();
    for (mix, b) in &prepared {
        for &rate in &args.rates {
            let cpu_before = server.cpu_time();
            let switches_before = context_switches(server.pid());
            let mut r = open_loop(
                &target,
                b,
                rate,
                args.connections,
                Duration::from_secs_f64(args.warmup),
                Duration::from_secs_f64(args.duration),
            )
            .await;
            // CPU over warm-up and measured window, per review of both.
            let all = r.ok + r.errors;
            let cpu = server.cpu_time().saturating_sub(cpu_before);
            let warm = (rate as f64 * args.warmup) as u64;
            r.server_cpu = cpu.mul_f64(all as f64 / (all + warm).max(1) as f64);
            r.switches = context_switches(server.pid()).saturating_sub(switches_before) as f64
                / (all + warm).max(1) as f64;
            total_reviews += all + warm;
            row(mix.label(), Some(rate), &r);
        }
    }

    if args.saturation_connections > 0 {
        println!();
        println!(
            "## Saturation (closed loop, {} connections, {:.0} s measured after 2 s warm-up)",
            args.saturation_connections, args.saturation_duration
        );
        println!();
        header();
        for (mix, b) in &prepared {
            let cpu_before = server.cpu_time();
            let switches_before = context_switches(server.pid());
            let mut r = closed_loop(
                &target,
                b,
                args.saturation_connections,
                Duration::from_secs(2),
                Duration::from_secs_f64(args.saturation_duration),
            )
            .await;
            let cpu = server.cpu_time().saturating_sub(cpu_before);
            // Warm-up reviews are not counted in r; scale by the measured share of time.
            let share = args.saturation_duration / (args.saturation_duration + 2.0);
            r.server_cpu = cpu.mul_f64(share);
            r.switches = context_switches(server.pid()).saturating_sub(switches_before) as f64
                * share
                / (r.ok + r.errors).max(1) as f64;
            total_reviews += ((r.ok + r.errors) as f64 / share) as u64;
            row(mix.label(), None, &r);
        }
    }

    let cpu_all = server.cpu_time().saturating_sub(cpu_all_before);
    let (hwm, rss) = server.memory_kib();
    let log_after = count_lines(&server.log);
    println!();
    println!(
        "Server after the run: VmHWM (peak RSS) {:.1} MiB, VmRSS {:.1} MiB; \
         CPU {:.1} s for about {total_reviews} reviews; log: {} lines, {:.0} bytes per line.",
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0,
        cpu_all.as_secs_f64(),
        log_after.0.saturating_sub(log_before.0),
        (log_after.1.saturating_sub(log_before.1)) as f64
            / (log_after.0.saturating_sub(log_before.0)).max(1) as f64
    );
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    println!(
        "Generator and API double (this process): {:.1} s CPU in total.",
        usage.ru_utime.tv_sec as f64
            + usage.ru_stime.tv_sec as f64
            + (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) as f64 / 1e6
    );
    server.stop().await;
    let _ = std::io::stdout().flush();
    drop(double);
}
