//! fleet-delete-guard beside the framework's floor, under the same wrk invocation.
//!
//! Run: `scripts/bench-peer.sh` (builds the peer outside the repo, then this bench), or
//! `cargo bench --bench peer -- --peer-bin PATH`; `-- --help` for the options. Numbers
//! and commands are in BENCHMARKS.md ("Beside the kube-rs admission example").
//!
//! The peer is kube-rs's `examples/admission_controller.rs`: it parses the review into
//! kube's `AdmissionReview<DynamicObject>` and answers, nothing else. No peer code is in
//! this repository; `--peer-bin` is its binary.
//!
//! Three servers, each started fresh for every round and the rounds interleaved, each
//! round starting with the next server (peer, off, on, off, on, peer, on, peer, off, …) so
//! that a noisy neighbour hits all of them alike:
//! - `peer`: the kube-rs example;
//! - `off`: `fleet-delete-guard serve --counting=false` (no cluster);
//! - `on`: `fleet-delete-guard serve` against the project's API double seeded with
//!   `--bundle-deployments` BundleDeployments (all in the owner cache).
//!
//! Same TLS certificate (made by `fleet-delete-guard certs`), same bodies (Fleet-managed
//! dry-run DELETE reviews of ConfigMaps spread over every BundleDeployment, or the fast
//! path's), same wrk command line. Per server and round:
//! 1. start → ready; wait until quiet (< 1 % CPU); idle VmHWM; CPU over 3 s with no review;
//! 2. 2 s unmeasured warm-up, then saturation: `wrk -c{saturation-connections}`;
//! 3. paced: `wrk -c{paced-connections}` with a per-connection pause of
//!    `paced-connections / rate` (wrk is closed-loop: the achieved rate is printed and the
//!    CPU is divided by the reviews actually answered);
//! 4. peak VmHWM, log bytes.
//!
//! The server's CPU comes from /proc (all its threads); wrk and the API double share the
//! machine with it, the same way for every server.

#[path = "support/process.rs"]
mod process;
#[path = "support/reviews.rs"]
mod reviews;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use clap::{Parser, ValueEnum};
use kube_api_double::{ApiDouble, Options};
use process::{free_port, memory_kib, process_cpu, readyz};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mix {
    /// Users deleting Fleet-managed objects (owners resolved from the cache).
    Fleet,
    /// Objects that are not Fleet's (the fast path).
    Fast,
}

#[derive(Parser, Debug)]
#[command(about = "fleet-delete-guard beside the kube-rs admission example, same wrk")]
struct Args {
    /// The kube-rs admission_controller example's binary.
    #[arg(long, env = "FDG_PEER_BIN")]
    peer_bin: PathBuf,
    /// fleet-delete-guard's binary (default: the release binary cargo built for benches).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// BundleDeployments in the API double (and in the `on` server's owner cache).
    #[arg(long, default_value_t = 10_000)]
    bundle_deployments: usize,
    /// Rounds; every round starts each server fresh.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Connections of the saturation phase.
    #[arg(long, default_value_t = 4)]
    saturation_connections: usize,
    /// Connections of the paced phase.
    #[arg(long, default_value_t = 16)]
    paced_connections: usize,
    /// Target rate of the paced phase (reviews/s).
    #[arg(long, default_value_t = 2_000)]
    rate: u32,
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 10)]
    duration: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    wrk_threads: usize,
    /// The wrk binary.
    #[arg(long, default_value = "wrk")]
    wrk: PathBuf,
    /// Body of the reviews.
    #[arg(long, value_enum, default_value = "fleet")]
    mix: Mix,
    /// Distinct review bodies (cycled).
    #[arg(long, default_value_t = 500)]
    bodies: usize,
    /// RUST_LOG of fleet-delete-guard (info: every Fleet-managed review is logged).
    #[arg(long, default_value = "info")]
    server_log: String,
    /// Extra arguments for both fleet-delete-guard servers, e.g. `--extra=--breaker=off`.
    #[arg(long, allow_hyphen_values = true)]
    extra: Vec<String>,
    /// Which servers to run (default all three).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "peer,off,on")]
    servers: Vec<Kind>,
    /// Keep logs, certificates and bodies here instead of a temporary directory.
    #[arg(long)]
    keep_dir: Option<PathBuf>,
    /// `taskset -c` CPU list for every server (default: not pinned), e.g. `1`.
    #[arg(long)]
    server_cpus: Option<String>,
    /// CPU list for this bench, its API double and wrk (default: not pinned), e.g. `0`.
    #[arg(long)]
    client_cpus: Option<String>,
    /// Alternating bursts: per round, every server of `--servers` started at once, then
    /// this many cycles of one saturated burst each, the order rotating every cycle
    /// (0: none). Drift slower than a cycle falls on every server alike, so the ratio of
    /// two servers comes out of one run with a much smaller spread than whole rounds
    /// give; printed after the rounds' tables (`--rounds 0` for this alone).
    #[arg(long, default_value_t = 0)]
    alternate: usize,
    /// Seconds of each alternating burst.
    #[arg(long, default_value_t = 2)]
    alternate_seconds: u32,
    /// Rounds of the alternating bursts (each starts its servers fresh).
    #[arg(long, default_value_t = 1)]
    alternate_rounds: usize,
    /// One round of 2 s phases with 1,000 BundleDeployments (a smoke test of the harness).
    #[arg(long)]
    quick: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// The kube-rs example.
    Peer,
    /// fleet-delete-guard, `--counting=false`.
    Off,
    /// fleet-delete-guard with the owner cache populated.
    On,
}

impl Kind {
    fn label(self, bds: usize) -> String {
        match self {
            Kind::Peer => "kube-rs example".into(),
            Kind::Off => "fleet-delete-guard, counting off".into(),
            Kind::On => format!("fleet-delete-guard, counting on, {bds} BundleDeployments cached"),
        }
    }
}

/// What wrk's `done()` printed.
#[derive(Debug, Clone, Copy, Default)]
struct Wrk {
    requests: u64,
    errors: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Wrk {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds.max(1e-9)
    }
}

/// One server in one round.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    ready_ms: f64,
    quiet_ms: f64,
    ready_hwm_kib: u64,
    idle_hwm_kib: u64,
    idle_cpu_ms_per_s: f64,
    saturation: Wrk,
    saturation_cpu_us: f64,
    paced: Wrk,
    paced_cpu_us: f64,
    peak_hwm_kib: u64,
    log_bytes: u64,
}

struct Running {
    child: Child,
    url: String,
    log: PathBuf,
    ready: Duration,
}

struct Setup {
    dir: PathBuf,
    bin: PathBuf,
    kubeconfig: PathBuf,
    cert_dir: PathBuf,
    body_file: PathBuf,
    saturate_lua: PathBuf,
    paced_lua: PathBuf,
}

const WRK_COMMON: &str = r#"
local reqs = {}
local i = 0
function init(args)
  for line in io.lines(args[2]) do
    reqs[#reqs + 1] = wrk.format("POST", args[1],
      {["Content-Type"] = "application/json", ["Accept"] = "application/json"}, line)
  end
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d errors=%d duration_us=%d p50_us=%d p99_us=%d\n",
    summary.requests, e.connect + e.read + e.write + e.status + e.timeout,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
"#;

/// The paced script's pause, per connection after each answer (wrk's `delay()`, ms).
const WRK_PAUSE: &str = r#"
function delay()
  return tonumber(os.getenv("WRK_PAUSE_MS"))
end
"#;

fn main() {
    let mut args = Args::parse();
    if args.quick {
        args.rounds = 1;
        args.duration = 2;
        args.bundle_deployments = args.bundle_deployments.min(1_000);
    }
    if let Some(cpus) = &args.client_cpus {
        process::pin_self(cpus);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let bin = process::server_bin(args.server_bin.as_deref());
    let (_tmp, dir) = process::work_dir(args.keep_dir.as_deref());
    let n = args.bundle_deployments;

    // The cluster of the `on` server.
    let double = ApiDouble::start(Options {
        history_limit: 1_000,
        ..Options::default()
    })
    .await;
    for object in reviews::cluster(n) {
        double.seed(object).expect("seed the API double");
    }
    let kubeconfig = dir.join("kubeconfig");
    double.write_kubeconfig(&kubeconfig).expect("kubeconfig");

    // One certificate for every server; the peer reads it from its working directory.
    let cert_dir = dir.join("certs");
    let status = Command::new(&bin)
        .args(["certs", "--dns-name", "localhost", "--force", "--out-dir"])
        .arg(&cert_dir)
        .stdout(Stdio::null())
        .status()
        .expect("run `fleet-delete-guard certs`");
    assert!(status.success(), "`fleet-delete-guard certs` failed");
    let peer_dir = dir.join("peer");
    std::fs::create_dir_all(&peer_dir).expect("peer dir");
    for (from, to) in [
        ("tls.crt", "admission-controller-tls.crt"),
        ("tls.key", "admission-controller-tls.key"),
    ] {
        std::fs::copy(cert_dir.join(from), peer_dir.join(to)).expect("peer certificate");
    }

    // Bodies, one per line, and the two wrk scripts.
    let body_file = dir.join("bodies.jsonl");
    let mut bodies = Vec::new();
    for i in 0..args.bodies {
        let j = (i * 7919 + 13) % n.max(1);
        let review = match args.mix {
            Mix::Fleet => reviews::fleet_review(i, j, true),
            Mix::Fast => reviews::fast_review(i),
        };
        bodies.extend(reviews::bytes(&review));
        bodies.push(b'\n');
    }
    std::fs::write(&body_file, &bodies).expect("bodies");
    let saturate_lua = dir.join("saturate.lua");
    let paced_lua = dir.join("paced.lua");
    std::fs::write(&saturate_lua, WRK_COMMON).expect("wrk script");
    std::fs::write(&paced_lua, format!("{WRK_COMMON}{WRK_PAUSE}")).expect("wrk script");
    let setup = Setup {
        dir: dir.clone(),
        bin,
        kubeconfig,
        cert_dir,
        body_file,
        saturate_lua,
        paced_lua,
    };

    let pause_ms = (args.paced_connections as f64 * 1_000.0 / args.rate as f64).round() as u64;
    println!("# fleet-delete-guard beside the kube-rs admission example");
    println!();
    println!("- date: {}", shell("date -u '+%Y-%m-%d %H:%M UTC'"));
    println!(
        "- machine: {} cores; load average before: {}",
        cores(),
        shell("cut -d' ' -f1-3 /proc/loadavg")
    );
    println!(
        "- wrk: {}",
        shell(&format!("{} -v 2>&1 | head -1", args.wrk.display()))
    );
    println!(
        "- fleet-delete-guard: {} (RUST_LOG={}, extra {:?})",
        setup.bin.display(),
        args.server_log,
        args.extra
    );
    println!("- peer: {}", args.peer_bin.display());
    println!(
        "- CPUs: servers {}; bench, API double and wrk {}",
        args.server_cpus.as_deref().unwrap_or("not pinned"),
        args.client_cpus.as_deref().unwrap_or("not pinned")
    );
    println!(
        "- body: {} ({} distinct, mean {} bytes); API double: {n} BundleDeployments",
        match args.mix {
            Mix::Fleet => "Fleet-managed ConfigMap, dry run",
            Mix::Fast => "fast path",
        },
        args.bodies,
        bodies.len() / args.bodies.max(1)
    );
    println!(
        "- saturation: `{wrk} -t{t} -c{c} -d{d}s -s saturate.lua URL PATH bodies.jsonl`; paced: \
         `WRK_PAUSE_MS={pause_ms} {wrk} -t{t} -c{pc} -d{d}s -s paced.lua …` (target {r}/s); {rounds} rounds, interleaved",
        wrk = args.wrk.display(),
        t = args.wrk_threads,
        c = args.saturation_connections,
        pc = args.paced_connections,
        d = args.duration,
        r = args.rate,
        rounds = args.rounds,
    );
    let _ = std::io::stdout().flush();

    let mut samples: Vec<(Kind, Sample)> = Vec::new();
    for round in 0..args.rounds {
        // Each round starts with the next server (peer, off, on; off, on, peer; …): with
        // a fixed order each server would always follow the same one, and whatever one
        // leaves behind (page cache, a neighbour's burst timed to the rounds) would fall
        // on the same next server every round.
        let mut order = args.servers.clone();
        if !order.is_empty() {
            let len = order.len();
            order.rotate_left(round % len);
        }
        for &kind in &order {
            let sample = measure(&args, &setup, kind, round, pause_ms).await;
            eprintln!("round {round} {kind:?}: {sample:?}");
            samples.push((kind, sample));
        }
    }
    if !samples.is_empty() {
        report(&args, &samples);
    }
    if args.alternate > 0 {
        let mut bursts: Vec<Burst> = Vec::new();
        for round in 0..args.alternate_rounds {
            bursts.extend(alternate(&args, &setup, round).await);
        }
        report_bursts(&args, &bursts);
    }
    drop(double);
}

/// One saturated burst of one server in the alternating mode.
#[derive(Debug, Clone, Copy)]
struct Burst {
    round: usize,
    cycle: usize,
    kind: Kind,
    wrk: Wrk,
    cpu: Duration,
    /// Minor page faults, user and kernel CPU ticks during the burst.
    faults: u64,
    user_ticks: u64,
    kernel_ticks: u64,
}

/// Every server started fresh and quiet, warmed up, then `--alternate` cycles of one
/// `--alternate-seconds` saturated burst each, in an order that rotates every cycle.
async fn alternate(args: &Args, setup: &Setup, round: usize) -> Vec<Burst> {
    let mut servers = Vec::new();
    for &kind in &args.servers {
        // Logs of their own: `start` names them by kind and round.
        let server = start(args, setup, kind, 1_000 + round).await;
        settle(server.child.id()).await;
        servers.push((kind, server));
    }
    for (_, server) in &servers {
        warm_up(args, setup, &server.url);
    }
    let mut bursts = Vec::new();
    for cycle in 0..args.alternate {
        let len = servers.len();
        for i in 0..len {
            let (kind, server) = &servers[(cycle + i) % len];
            let pid = server.child.id();
            let before = process_cpu(pid);
            let stat_before = process::fault_and_tick_counts(pid);
            let w = wrk(
                args,
                setup,
                &server.url,
                &setup.saturate_lua,
                args.saturation_connections,
                args.alternate_seconds,
                None,
            );
            let stat_after = process::fault_and_tick_counts(pid);
            bursts.push(Burst {
                round,
                cycle,
                kind: *kind,
                wrk: w,
                cpu: process_cpu(pid).saturating_sub(before),
                faults: stat_after.0.saturating_sub(stat_before.0),
                user_ticks: stat_after.1.saturating_sub(stat_before.1),
                kernel_ticks: stat_after.2.saturating_sub(stat_before.2),
            });
        }
    }
    for (_, server) in &mut servers {
        process::stop(&mut server.child).await;
    }
    bursts
}

/// 2 s of saturation, unmeasured: connections, allocator, caches.
fn warm_up(args: &Args, setup: &Setup, url: &str) {
    wrk(
        args,
        setup,
        url,
        &setup.saturate_lua,
        args.saturation_connections,
        2,
        None,
    );
}

/// Wait until the start-up work is done: less than 1 % of a core over half a second
/// (at most 60 s).
async fn settle(pid: u32) {
    let settling = Instant::now();
    loop {
        let before = process_cpu(pid);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let busy = process_cpu(pid).saturating_sub(before);
        if busy < Duration::from_millis(5) || settling.elapsed() > Duration::from_secs(60) {
            return;
        }
    }
}

fn report_bursts(args: &Args, bursts: &[Burst]) {
    let n = args.bundle_deployments;
    println!();
    println!(
        "Alternating bursts: {} round(s) × {} cycles × {} s per server, {} connections, order rotating per cycle.",
        args.alternate_rounds, args.alternate, args.alternate_seconds, args.saturation_connections
    );
    println!();
    println!("| server | reviews/s (all bursts) | bursts' range | server CPU per review, µs | kernel share of it | minor page faults per 1,000 reviews | errors |");
    println!("|---|---|---|---|---|---|---|");
    for &k in &args.servers {
        let mine: Vec<&Burst> = bursts.iter().filter(|b| b.kind == k).collect();
        if mine.is_empty() {
            continue;
        }
        let requests: u64 = mine.iter().map(|b| b.wrk.requests).sum();
        let seconds: f64 = mine.iter().map(|b| b.wrk.seconds).sum();
        let cpu: f64 = mine.iter().map(|b| b.cpu.as_secs_f64()).sum();
        let rates: Vec<f64> = mine.iter().map(|b| b.wrk.rate()).collect();
        let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rates.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let user: u64 = mine.iter().map(|b| b.user_ticks).sum();
        let kernel: u64 = mine.iter().map(|b| b.kernel_ticks).sum();
        let faults: u64 = mine.iter().map(|b| b.faults).sum();
        println!(
            "| {} | {:.0} | {lo:.0}–{hi:.0} | {:.1} | {:.0} % | {:.1} | {} |",
            k.label(n),
            requests as f64 / seconds.max(1e-9),
            cpu * 1e6 / requests.max(1) as f64,
            100.0 * kernel as f64 / (user + kernel).max(1) as f64,
            faults as f64 * 1000.0 / requests.max(1) as f64,
            mine.iter().map(|b| b.wrk.errors).sum::<u64>()
        );
    }
    // Ratios within one cycle (the two bursts a few seconds apart), then their median
    // and quartiles, and for throughput the ratio of the pooled rates.
    let pairs = [
        (Kind::On, Kind::Off),
        (Kind::Off, Kind::Peer),
        (Kind::On, Kind::Peer),
    ];
    println!();
    println!("| ratio | pooled | median of the cycles | quartiles | cycles | goal |");
    println!("|---|---|---|---|---|---|");
    for (a, b) in pairs {
        burst_ratio(
            bursts,
            "saturated throughput",
            a,
            b,
            Wrk::rate,
            Some((0.95, true)),
        );
    }
    for (a, b) in pairs {
        burst_ratio(
            bursts,
            "p99 at saturation",
            a,
            b,
            |w| w.p99_ms,
            Some((1.2, false)),
        );
    }
}

/// One line of the alternating bursts' ratios of `a` to `b` (per cycle, then their
/// median and quartiles; for a rate, the ratio of the pooled rates too). The goal
/// (`bound`, whether higher is better) is judged on the median, for on / off only.
fn burst_ratio(
    bursts: &[Burst],
    what: &str,
    a: Kind,
    b: Kind,
    get: fn(&Wrk) -> f64,
    goal: Option<(f64, bool)>,
) {
    let of = |k: Kind, round: usize, cycle: usize| {
        bursts
            .iter()
            .find(|x| x.kind == k && x.round == round && x.cycle == cycle)
    };
    let mut ratios: Vec<f64> = Vec::new();
    let (mut sum_a, mut sum_b) = ((0u64, 0f64), (0u64, 0f64));
    for x in bursts.iter().filter(|x| x.kind == a) {
        let Some(y) = of(b, x.round, x.cycle) else {
            continue;
        };
        ratios.push(get(&x.wrk) / get(&y.wrk).max(1e-9));
        sum_a = (sum_a.0 + x.wrk.requests, sum_a.1 + x.wrk.seconds);
        sum_b = (sum_b.0 + y.wrk.requests, sum_b.1 + y.wrk.seconds);
    }
    if ratios.is_empty() {
        return;
    }
    ratios.sort_by(f64::total_cmp);
    let q = |f: f64| ratios[((ratios.len() - 1) as f64 * f).round() as usize];
    let pooled = if what == "saturated throughput" {
        let rate = (sum_a.0 as f64 / sum_a.1.max(1e-9)) / (sum_b.0 as f64 / sum_b.1.max(1e-9));
        format!("{rate:.3}×")
    } else {
        "–".to_string()
    };
    let goal = match goal.filter(|_| (a, b) == (Kind::On, Kind::Off)) {
        Some((bound, higher)) => {
            let met = if higher {
                q(0.5) >= bound
            } else {
                q(0.5) <= bound
            };
            let op = if higher { "≥" } else { "≤" };
            format!("{op} {bound}×: {}", if met { "met" } else { "**not met**" })
        }
        None => "–".to_string(),
    };
    println!(
        "| {what}, {a:?} / {b:?} | {pooled} | {:.3}× | {:.3}–{:.3} | {} | {goal} |",
        q(0.5),
        q(0.25),
        q(0.75),
        ratios.len()
    );
}
async fn measure(args: &Args, setup: &Setup, kind: Kind, round: usize, pause_ms: u64) -> Sample {
    let mut server = start(args, setup, kind, round).await;
    let pid = server.child.id();
    let ready_hwm_kib = memory_kib(pid).0;
    // Steady state: the start-up work (first resync, owners re-derived) done.
    let settling = Instant::now();
    settle(pid).await;
    let quiet_ms = (server.ready + settling.elapsed()).as_secs_f64() * 1e3;
    let idle_hwm_kib = memory_kib(pid).0;
    // Background work (watches, patcher ticks, resync) with no review coming in.
    let before = process_cpu(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_cpu_ms_per_s = process_cpu(pid).saturating_sub(before).as_secs_f64() * 1e3 / 3.0;
    let d = args.duration;
    warm_up(args, setup, &server.url);
    let before = process_cpu(pid);
    let saturation = wrk(
        args,
        setup,
        &server.url,
        &setup.saturate_lua,
        args.saturation_connections,
        d,
        None,
    );
    let saturation_cpu = process_cpu(pid).saturating_sub(before);
    let before = process_cpu(pid);
    let paced = wrk(
        args,
        setup,
        &server.url,
        &setup.paced_lua,
        args.paced_connections,
        d,
        Some(pause_ms),
    );
    let paced_cpu = process_cpu(pid).saturating_sub(before);
    let peak_hwm_kib = memory_kib(pid).0;
    process::stop(&mut server.child).await;
    let log_bytes = std::fs::metadata(&server.log).map(|m| m.len()).unwrap_or(0);
    let per_review = |cpu: Duration, w: &Wrk| cpu.as_secs_f64() * 1e6 / w.requests.max(1) as f64;
    Sample {
        ready_ms: server.ready.as_secs_f64() * 1e3,
        quiet_ms,
        ready_hwm_kib,
        idle_hwm_kib,
        idle_cpu_ms_per_s,
        saturation_cpu_us: per_review(saturation_cpu, &saturation),
        saturation,
        paced_cpu_us: per_review(paced_cpu, &paced),
        paced,
        peak_hwm_kib,
        log_bytes,
    }
}

async fn start(args: &Args, setup: &Setup, kind: Kind, round: usize) -> Running {
    let log = setup
        .dir
        .join(format!("{kind:?}-{round}.log").to_lowercase());
    let log_file = std::fs::File::create(&log).expect("log file");
    let started = Instant::now();
    let command = |bin: &Path| match &args.server_cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpus).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let (mut cmd, url, metrics) = match kind {
        Kind::Peer => {
            // The example binds $ADMISSION_PRIVATE_IP:8443 and reads its certificate
            // from the working directory.
            let mut cmd = command(&args.peer_bin);
            cmd.current_dir(setup.dir.join("peer"))
                .env("ADMISSION_PRIVATE_IP", "127.0.0.1")
                .env_remove("RUST_LOG");
            (cmd, "https://127.0.0.1:8443/mutate".to_string(), None)
        }
        Kind::Off | Kind::On => {
            let port = free_port();
            let metrics: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let mut cmd = command(&setup.bin);
            cmd.arg("serve")
                .arg(format!("--listen=127.0.0.1:{port}"))
                .arg(format!("--metrics-listen={metrics}"))
                .arg("--tls-cert")
                .arg(setup.cert_dir.join("tls.crt"))
                .arg("--tls-key")
                .arg(setup.cert_dir.join("tls.key"))
                .arg("--log-format=json")
                .args(&args.extra)
                .env("RUST_LOG", &args.server_log)
                .env_remove("KUBECONFIG");
            for (k, _) in std::env::vars() {
                if k.starts_with("FLEET_DELETE_GUARD_") {
                    cmd.env_remove(k);
                }
            }
            if kind == Kind::On {
                cmd.env("KUBECONFIG", &setup.kubeconfig);
            } else {
                cmd.arg("--counting=false");
            }
            (
                cmd,
                format!("https://127.0.0.1:{port}/validate"),
                Some(metrics),
            )
        }
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file)
        .spawn()
        .expect("spawn the server");
    let what = format!("{kind:?}");
    process::wait_ready(
        &what,
        &mut child,
        &log,
        Duration::from_secs(120),
        Duration::from_millis(2),
        || async {
            match metrics {
                Some(m) => readyz(m).await,
                None => answers(setup, &url),
            }
        },
    )
    .await;
    let ready = started.elapsed();
    // Every server answers the same body with an allowed review of its uid.
    assert!(
        answers(setup, &url),
        "{kind:?} does not answer the first body correctly"
    );
    Running {
        child,
        url,
        log,
        ready,
    }
}

/// The first body, posted with curl (certificate checked): a 200 allowing its uid.
fn answers(setup: &Setup, url: &str) -> bool {
    let port = url
        .split(':')
        .nth(2)
        .and_then(|p| p.split('/').next())
        .unwrap_or("");
    let path = &url[url.find(port).map(|i| i + port.len()).unwrap_or(0)..];
    let first = std::fs::read_to_string(&setup.body_file).unwrap_or_default();
    let first = first.lines().next().unwrap_or_default().to_string();
    let uid = serde_json::from_str::<serde_json::Value>(&first)
        .ok()
        .and_then(|v| v["request"]["uid"].as_str().map(str::to_string))
        .unwrap_or_default();
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5", "--cacert"])
        .arg(setup.cert_dir.join("ca.crt"))
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
        ])
        .arg(format!("https://localhost:{port}{path}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            if let Some(mut stdin) = c.stdin.take() {
                stdin.write_all(first.as_bytes())?;
            }
            c.wait_with_output()
        });
    let Ok(out) = out else { return false };
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    out.status.success()
        && answer["response"]["uid"] == uid.as_str()
        && answer["response"]["allowed"] == true
}

fn wrk(
    args: &Args,
    setup: &Setup,
    url: &str,
    script: &Path,
    connections: usize,
    seconds: u32,
    pause_ms: Option<u64>,
) -> Wrk {
    let (base, path) = url.split_at(url.rfind('/').unwrap_or(url.len()));
    let mut cmd = Command::new(&args.wrk);
    cmd.arg(format!("-t{}", args.wrk_threads.min(connections)))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("--timeout=5s")
        .arg("-s")
        .arg(script)
        .arg(base)
        .arg("--")
        .arg(path)
        .arg(&setup.body_file);
    if let Some(p) = pause_ms {
        cmd.env("WRK_PAUSE_MS", p.to_string());
    }
    let out = cmd.output().expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("WRK_RESULT"))
        .unwrap_or_else(|| {
            panic!(
                "wrk printed no result:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let field = |name: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    Wrk {
        requests: field("requests") as u64,
        errors: field("errors") as u64,
        seconds: field("duration_us") / 1e6,
        p50_ms: field("p50_us") / 1e3,
        p99_ms: field("p99_us") / 1e3,
    }
}

fn report(args: &Args, samples: &[(Kind, Sample)]) {
    let n = args.bundle_deployments;
    let of = |k: Kind| {
        samples
            .iter()
            .filter(|(s, _)| *s == k)
            .map(|(_, s)| *s)
            .collect::<Vec<_>>()
    };
    let range = |v: Vec<f64>, digits: usize| -> String {
        if v.is_empty() {
            return "–".into();
        }
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if (hi - lo).abs() < 10f64.powi(-(digits as i32)) {
            format!("{lo:.digits$}")
        } else {
            format!("{lo:.digits$}–{hi:.digits$}")
        }
    };
    type Figure = (&'static str, fn(&Sample) -> f64, usize);
    let figures: [Figure; 15] = [
        ("start → ready, ms", |s| s.ready_ms, 0),
        ("start → quiet (start-up work done), ms", |s| s.quiet_ms, 0),
        (
            "peak RSS when ready, MiB",
            |s| s.ready_hwm_kib as f64 / 1024.0,
            1,
        ),
        (
            "idle peak RSS (after the start-up work), MiB",
            |s| s.idle_hwm_kib as f64 / 1024.0,
            1,
        ),
        ("idle CPU, ms per s", |s| s.idle_cpu_ms_per_s, 1),
        ("saturated reviews/s", |s| s.saturation.rate(), 0),
        ("p99 at saturation, ms", |s| s.saturation.p99_ms, 2),
        (
            "server CPU per review at saturation, µs",
            |s| s.saturation_cpu_us,
            1,
        ),
        ("paced: achieved reviews/s", |s| s.paced.rate(), 0),
        ("paced: server CPU per review, µs", |s| s.paced_cpu_us, 1),
        ("paced: p50, ms", |s| s.paced.p50_ms, 3),
        ("paced: p99, ms", |s| s.paced.p99_ms, 3),
        (
            "peak RSS after the runs, MiB",
            |s| s.peak_hwm_kib as f64 / 1024.0,
            1,
        ),
        ("log written, MB", |s| s.log_bytes as f64 / 1e6, 1),
        (
            "errors (both phases)",
            |s| (s.saturation.errors + s.paced.errors) as f64,
            0,
        ),
    ];
    println!();
    print!("| figure |");
    for k in &args.servers {
        print!(" {} |", k.label(n));
    }
    println!();
    println!("|---|{}", "---|".repeat(args.servers.len()));
    for (name, get, digits) in figures {
        print!("| {name} |");
        for &k in &args.servers {
            print!(" {} |", range(of(k).iter().map(get).collect(), digits));
        }
        println!();
    }

    // Ratios per round (same round: the machine was in the same state), then medians.
    let ratio = |a: Kind, b: Kind, get: fn(&Sample) -> f64| -> Option<(f64, String)> {
        let (va, vb) = (of(a), of(b));
        if va.is_empty() || vb.is_empty() {
            return None;
        }
        let mut r: Vec<f64> = va
            .iter()
            .zip(&vb)
            .map(|(x, y)| get(x) / get(y).max(1e-12))
            .collect();
        r.sort_by(f64::total_cmp);
        let all = r
            .iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ");
        Some((r[r.len() / 2], all))
    };
    type Goal = (
        &'static str,
        Kind,
        Kind,
        fn(&Sample) -> f64,
        &'static str,
        f64,
        bool,
    );
    let goals: [Goal; 9] = [
        (
            "saturated throughput, on / off",
            Kind::On,
            Kind::Off,
            |s| s.saturation.rate(),
            "≥",
            0.95,
            true,
        ),
        (
            "p99 at saturation, on / off",
            Kind::On,
            Kind::Off,
            |s| s.saturation.p99_ms,
            "≤",
            1.2,
            false,
        ),
        (
            "idle peak RSS, off / peer",
            Kind::Off,
            Kind::Peer,
            |s| s.idle_hwm_kib as f64,
            "≤",
            1.0,
            false,
        ),
        (
            "idle peak RSS, on / peer",
            Kind::On,
            Kind::Peer,
            |s| s.idle_hwm_kib as f64,
            "",
            0.0,
            false,
        ),
        (
            "paced CPU per review, on / peer",
            Kind::On,
            Kind::Peer,
            |s| s.paced_cpu_us,
            "≤",
            0.67,
            false,
        ),
        (
            "paced p99, on / peer",
            Kind::On,
            Kind::Peer,
            |s| s.paced.p99_ms,
            "≤",
            0.5,
            false,
        ),
        (
            "paced CPU per review, off / peer",
            Kind::Off,
            Kind::Peer,
            |s| s.paced_cpu_us,
            "",
            0.0,
            false,
        ),
        (
            "paced p99, off / peer",
            Kind::Off,
            Kind::Peer,
            |s| s.paced.p99_ms,
            "",
            0.0,
            false,
        ),
        (
            "saturated throughput, off / peer",
            Kind::Off,
            Kind::Peer,
            |s| s.saturation.rate(),
            "",
            0.0,
            true,
        ),
    ];
    println!();
    println!("| ratio (median of the rounds) | median | per round | goal | met |");
    println!("|---|---|---|---|---|");
    for (name, a, b, get, op, bound, higher_is_better) in goals {
        let Some((median, all)) = ratio(a, b, get) else {
            continue;
        };
        let (goal, met) = if op.is_empty() {
            ("–".to_string(), "–")
        } else {
            let ok = if higher_is_better {
                median >= bound
            } else {
                median <= bound
            };
            (format!("{op} {bound}×"), if ok { "yes" } else { "**no**" })
        };
        println!("| {name} | {median:.2}× | {all} | {goal} | {met} |");
    }
    let on = of(Kind::On);
    if !on.is_empty() {
        let worst = on.iter().map(|s| s.peak_hwm_kib).max().unwrap_or(0) as f64 / 1024.0;
        println!();
        println!(
            "Peak RSS with {n} BundleDeployments cached: {worst:.1} MiB (goal < 25 MiB: {}).",
            if worst < 25.0 { "met" } else { "**not met**" }
        );
    }
}

fn shell(command: &str) -> String {
    Command::new("sh")
        .arg("-c")
        .arg(command)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
