//! Start → ready of `fleet-delete-guard serve` against the **real** kube-apiserver
//! holding `--bundle-deployments` BundleDeployments (issue 24, item 6: < 2 s with
//! 10,000). The same measurement against the API double is in benches/peer.rs.
//!
//! Run (numbers in BENCHMARKS.md, "Ready with 10,000 BundleDeployments against the real
//! kube-apiserver"):
//!
//! ```sh
//! scripts/real-cluster.sh build && cargo bench --features real-cluster --bench ready_real
//! ```
//!
//! `-- --help` lists the options; `-- --quick` is a smoke run (1,000 BundleDeployments,
//! one start).
//!
//! 1. The project's real control plane (tests/support/real_cluster.rs: etcd,
//!    kube-apiserver, kube-controller-manager built by scripts/real-cluster.sh), the
//!    stand-in Fleet CRDs (tests/real-cluster/fleet-crds.yaml), the namespaces.
//! 2. Seeding through a kube-rs client as `admin`, `--concurrency` requests in flight:
//!    the GitRepos, the BundleDeployments and the ConfigMap each one deploys, shaped as
//!    in the other benches (benches/support/reviews.rs). Status is a subresource on
//!    the real apiserver: each BundleDeployment's and GitRepo's status is written with a
//!    status patch after its create. The ConfigMaps are seeded so that the start-up
//!    resync finds every deployed object present and writes nothing: every start sees
//!    the same cluster.
//! 3. A floor: the paged LIST (pages of 100, as `serve`) of this cluster's
//!    BundleDeployments by the bench itself, bodies not parsed; and the same with the
//!    other page sizes of `--floor-limits` (0: one unpaged LIST).
//! 4. `--runs` times a fresh `serve` process (`--counting=true`, as `admin`: a client
//!    certificate in `system:masters`, which is more than deploy/'s RBAC grants; the
//!    rights do not change what is listed), certificate made beforehand with
//!    `fleet-delete-guard certs`: spawn → `GET /readyz` 200 (polled every 2 ms), its
//!    VmHWM then, the CPU kube-apiserver and etcd spent meanwhile, when its log said
//!    "caches synced", how long the first resync took after it (its "resync done" line),
//!    and ready → quiet (< 1 % CPU over 0.5 s), its VmHWM then.

#[path = "../tests/support/kubectl.rs"]
mod kubectl;
#[path = "support/process.rs"]
mod process;
#[path = "../tests/support/real_cluster.rs"]
mod real_cluster;
#[path = "support/reviews.rs"]
mod reviews;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use kube::{
    api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
    Client,
};
use process::{memory_kib, process_cpu, readyz};
use real_cluster::ControlPlane;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(about = "fleet-delete-guard serve: start → ready against the real kube-apiserver")]
struct Args {
    /// BundleDeployments seeded (with their GitRepos and ConfigMaps).
    #[arg(long, default_value_t = 10_000)]
    bundle_deployments: usize,
    /// Fresh `serve` processes measured, one after the other.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Seeding requests in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// fleet-delete-guard's binary (default: the release binary cargo built for benches).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// RUST_LOG of the server.
    #[arg(long, default_value = "info")]
    server_log: String,
    /// Extra arguments for `serve`, e.g. `--extra=--breaker=off`.
    #[arg(long, allow_hyphen_values = true)]
    extra: Vec<String>,
    /// Page sizes of the floor LIST besides serve's 100 (0: unpaged), for comparison.
    #[arg(long, value_delimiter = ',', default_value = "500,0")]
    floor_limits: Vec<usize>,
    /// Copy the servers' logs here.
    #[arg(long)]
    keep_logs: Option<PathBuf>,
    /// 1,000 BundleDeployments, one run (a smoke test of the harness).
    #[arg(long)]
    quick: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One start of `serve`.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    ready_ms: f64,
    /// "caches synced" in the server's log, after spawn (its timestamp).
    synced_ms: Option<f64>,
    /// "resync done" (the first resync) in the log, after "caches synced".
    resync_ms: Option<f64>,
    ready_hwm_kib: u64,
    apiserver_cpu_ms: f64,
    etcd_cpu_ms: f64,
    quiet_ms: f64,
    quiet_hwm_kib: u64,
    /// The first resync's `missing` and `discrepancies` (its log line): 0 and 0 when the
    /// seeded statuses agree with the cluster.
    resync: Option<(u64, u64)>,
}

/// Namespace and cluster of the seeded BundleDeployments (Fleet's `fleet-local/local`).
const FLEET_NS: &str = "fleet-local";
const SELECTOR: &str =
    "fleet.cattle.io/cluster-namespace=fleet-local,fleet.cattle.io/cluster=local";
/// The page size of `serve`'s lists (src/cluster/scan.rs).
const PAGE: usize = 100;

fn main() {
    let mut args = Args::parse();
    if args.quick {
        args.bundle_deployments = args.bundle_deployments.min(1_000);
        args.runs = 1;
    }
    fleet_delete_guard::tls::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let bin = process::server_bin(args.server_bin.as_deref());
    let n = args.bundle_deployments;
    let kubectl = kubectl::find().expect("kubectl ($KUBECTL, /usr/bin/kubectl or $PATH)");
    let started = Instant::now();
    let cp = tokio::task::spawn_blocking(move || {
        let cp = ControlPlane::start(kubectl);
        cp.install_fleet_crds(&[FLEET_NS, reviews::BD_NAMESPACE, "cattle-fleet-system"]);
        cp
    })
    .await
    .expect("control plane");
    let plane_s = started.elapsed().as_secs_f64();
    let client = admin_client(&cp).await;

    let seeding = Instant::now();
    let seeded = seed(&client, n, args.concurrency).await;
    let seeding_s = seeding.elapsed().as_secs_f64();

    // The floor: what listing them costs the apiserver and the wire, nothing parsed.
    let mut floors = Vec::new();
    for limit in std::iter::once(PAGE).chain(args.floor_limits.iter().copied()) {
        let mut ms = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let (items, pages) = list_raw(&client, n, limit).await;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(items, n, "the LIST returns every seeded BundleDeployment");
            if limit > 0 {
                assert_eq!(pages, n.div_ceil(limit).max(1));
            }
        }
        ms.sort_by(f64::total_cmp);
        floors.push((limit, ms));
    }

    let cert_dir = cp.path("serve-certs");
    let status = Command::new(&bin)
        .args(["certs", "--dns-name", "localhost", "--force", "--out-dir"])
        .arg(&cert_dir)
        .stdout(Stdio::null())
        .status()
        .expect("run `fleet-delete-guard certs`");
    assert!(status.success(), "`fleet-delete-guard certs` failed");

    println!("# fleet-delete-guard serve: start → ready against the real kube-apiserver");
    println!();
    println!("- date: {}", shell("date -u '+%Y-%m-%d %H:%M UTC'"));
    println!(
        "- machine: {} cores; load average before the runs: {}",
        shell("nproc"),
        shell("cut -d' ' -f1-3 /proc/loadavg")
    );
    println!(
        "- control plane: {} (tests/support/real_cluster.rs), started with the CRDs in {plane_s:.1} s",
        shell(&format!(
            "{} --version",
            real_cluster::binaries().join("kube-apiserver").display()
        ))
    );
    println!(
        "- seeded {} objects ({} GitRepos, {n} BundleDeployments + a status patch each, {n} ConfigMaps; {:.1} MiB of JSON) in {seeding_s:.1} s, {} in flight ({:.0} requests/s)",
        seeded.objects,
        seeded.gitrepos,
        seeded.bytes as f64 / 1048576.0,
        args.concurrency,
        seeded.requests as f64 / seeding_s.max(1e-9),
    );
    for (limit, ms) in &floors {
        let paging = match limit {
            0 => "one unpaged LIST".to_string(),
            l if *l == PAGE => format!("the paged LIST (limit {l}, as serve)"),
            l => format!("the paged LIST (limit {l})"),
        };
        println!(
            "- floor: {paging} of the {n} BundleDeployments by the bench, bodies unparsed: min {:.0} / median {:.0} / max {:.0} ms",
            ms[0],
            ms[ms.len() / 2],
            ms[ms.len() - 1]
        );
    }
    println!(
        "- server: {} serve --counting=true, KUBECONFIG=admin (system:masters), RUST_LOG={}, extra {:?}",
        bin.display(),
        args.server_log,
        args.extra
    );
    let _ = std::io::stdout().flush();

    let mut samples = Vec::new();
    for i in 0..args.runs {
        let s = run_once(&args, &cp, &bin, &cert_dir, i).await;
        eprintln!("run {i}: {s:?}");
        samples.push(s);
    }
    report(n, &samples);
    drop(cp);
}

async fn admin_client(cp: &ControlPlane) -> Client {
    let kc = kube::config::Kubeconfig::read_from(cp.kubeconfig("admin")).expect("kubeconfig");
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("config");
    Client::try_from(config).expect("client")
}

#[derive(Debug, Default)]
struct Seeded {
    objects: usize,
    gitrepos: usize,
    requests: usize,
    bytes: usize,
}

/// `reviews::cluster(n)` created, `concurrency` requests in flight; statuses patched.
/// Each ConfigMap is created before its BundleDeployment, whose
/// `status.resources[].createdAt` then says the ConfigMap's real creationTimestamp (the
/// apiserver sets it; the resync compares the two, as Fleet's agent reports them).
async fn seed(client: &Client, n: usize, concurrency: usize) -> Seeded {
    let objects: Vec<Value> = reviews::cluster(n).collect();
    let mut seeded = Seeded {
        objects: objects.len(),
        gitrepos: objects.iter().filter(|o| o["kind"] == "GitRepo").count(),
        bytes: objects.iter().map(|o| reviews::bytes(o).len()).sum(),
        ..Seeded::default()
    };
    // Units of work: a GitRepo alone; a ConfigMap with the BundleDeployment deploying it.
    let mut units: Vec<(Option<Value>, Value)> = Vec::new();
    let mut bundle_deployment = None;
    for object in objects {
        match object["kind"].as_str() {
            Some("BundleDeployment") => bundle_deployment = Some(object),
            Some("ConfigMap") => {
                units.push((Some(object), bundle_deployment.take().expect("its BD")))
            }
            _ => units.push((None, object)),
        }
    }
    let requests: Vec<usize> = futures::stream::iter(units)
        .map(|(configmap, mut owner)| {
            let client = client.clone();
            async move {
                let (mut made, mut created_at) = (0, None);
                if let Some(cm) = configmap {
                    (made, created_at) = create(client.clone(), cm).await?;
                }
                if let (Some(t), Some(resources)) =
                    (created_at, owner["status"]["resources"].as_array_mut())
                {
                    for r in resources {
                        r["createdAt"] = json!(t);
                    }
                }
                Ok::<usize, kube::Error>(made + create(client, owner).await?.0)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("seeding failed: {e}"));
    seeded.requests = requests.iter().sum();
    seeded
}

/// Create `object` without its server-set fields; then its status, if any, through the
/// status subresource. Returns the requests made and the creationTimestamp.
async fn create(client: Client, mut object: Value) -> Result<(usize, Option<String>), kube::Error> {
    let status = object
        .as_object_mut()
        .and_then(|o| o.remove("status"))
        .filter(|s| !s.is_null());
    if let Some(meta) = object["metadata"].as_object_mut() {
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
        ] {
            meta.remove(k);
        }
    }
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = object["kind"].as_str().unwrap_or_default();
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, &format!("{}s", kind.to_lowercase()));
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let api: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &resource);
    let object: DynamicObject = serde_json::from_value(object).map_err(kube::Error::SerdeError)?;
    let created = api.create(&PostParams::default(), &object).await?;
    let created_at = created.metadata.creation_timestamp.map(|t| t.0.to_string());
    let Some(status) = status else {
        return Ok((1, created_at));
    };
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok((2, created_at))
}

/// This cluster's BundleDeployments, paged as `serve` pages: (items, pages). The items
/// are counted, not parsed.
async fn list_raw(client: &Client, n: usize, limit: usize) -> (usize, usize) {
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(rename = "continue", default)]
        token: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Page {
        metadata: Meta,
        items: Vec<serde::de::IgnoredAny>,
    }
    let (mut items, mut pages) = (0, 0);
    let mut token = String::new();
    loop {
        let mut query = format!(
            "limit={limit}&labelSelector={}",
            SELECTOR.replace(',', "%2C")
        );
        if !token.is_empty() {
            query.push_str(&format!("&continue={token}"));
        }
        let uri = format!(
            "/apis/fleet.cattle.io/v1alpha1/namespaces/{}/bundledeployments?{query}",
            reviews::BD_NAMESPACE
        );
        let request = http::Request::get(uri)
            .body(Vec::new())
            .expect("list request");
        let text = client.request_text(request).await.expect("LIST");
        let page: Page = serde_json::from_str(&text).expect("a list");
        items += page.items.len();
        pages += 1;
        match page.metadata.token.filter(|t| !t.is_empty()) {
            Some(t) => token = t,
            None => break,
        }
        assert!(pages <= n + 1, "the LIST does not end");
    }
    (items, pages)
}

async fn run_once(args: &Args, cp: &ControlPlane, bin: &Path, cert_dir: &Path, i: usize) -> Sample {
    let log = cp.path(&format!("serve-{i}.log"));
    let log_file = std::fs::File::create(&log).expect("log file");
    let port = real_cluster::free_port();
    let metrics: std::net::SocketAddr = ([127, 0, 0, 1], real_cluster::free_port()).into();
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--metrics-listen={metrics}"))
        .arg("--tls-cert")
        .arg(cert_dir.join("tls.crt"))
        .arg("--tls-key")
        .arg(cert_dir.join("tls.key"))
        .arg("--counting=true")
        .arg("--log-format=json")
        .args(&args.extra)
        .env("KUBECONFIG", cp.kubeconfig("admin"))
        .env("RUST_LOG", &args.server_log)
        .env("NO_PROXY", "127.0.0.1,localhost");
    for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        cmd.env_remove(k);
    }
    for (k, _) in std::env::vars() {
        if k.starts_with("FLEET_DELETE_GUARD_") {
            cmd.env_remove(k);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file);
    let pid_of = |name| cp.pid(name).expect("component running");
    let (api_pid, etcd_pid) = (pid_of("kube-apiserver"), pid_of("etcd"));
    let (api_before, etcd_before) = (process_cpu(api_pid), process_cpu(etcd_pid));

    let wall = jiff::Timestamp::now();
    let started = Instant::now();
    let mut child = real_cluster::spawn(cmd).expect("spawn the server");
    let pid = child.id();
    process::wait_ready(
        "serve",
        &mut child,
        &log,
        Duration::from_secs(120),
        Duration::from_millis(2),
        || readyz(metrics),
    )
    .await;
    let ready = started.elapsed();
    let ready_hwm_kib = memory_kib(pid).0;
    let apiserver_cpu = process_cpu(api_pid).saturating_sub(api_before);
    let etcd_cpu = process_cpu(etcd_pid).saturating_sub(etcd_before);

    // Quiet: the first resync done, less than 1 % of a core over half a second; ≤ 60 s.
    let settling = Instant::now();
    loop {
        let before = process_cpu(pid);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let busy = process_cpu(pid).saturating_sub(before);
        if busy < Duration::from_millis(5) || settling.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    let quiet = settling.elapsed();
    let quiet_hwm_kib = memory_kib(pid).0;
    process::stop(&mut child).await;

    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let synced = logged_at(&text, "caches synced; counting deletions");
    let synced_ms = synced.map(|t| t.duration_since(wall).as_secs_f64() * 1e3);
    let resync_ms = synced
        .zip(logged_at(&text, "resync done"))
        .map(|(from, to)| to.duration_since(from).as_secs_f64() * 1e3);
    let resync = logged(&text, "resync done").map(|v| {
        let n = |k: &str| {
            v[k].as_u64()
                .or(v["fields"][k].as_u64())
                .unwrap_or(u64::MAX)
        };
        (n("missing"), n("discrepancies"))
    });
    if let Some(dir) = &args.keep_logs {
        std::fs::create_dir_all(dir).expect("--keep-logs dir");
        std::fs::write(dir.join(format!("serve-{i}.log")), &text).expect("keep log");
    }
    Sample {
        ready_ms: ready.as_secs_f64() * 1e3,
        synced_ms,
        resync_ms,
        ready_hwm_kib,
        apiserver_cpu_ms: apiserver_cpu.as_secs_f64() * 1e3,
        etcd_cpu_ms: etcd_cpu.as_secs_f64() * 1e3,
        quiet_ms: quiet.as_secs_f64() * 1e3,
        quiet_hwm_kib,
        resync,
    }
}

/// The first JSON log line whose message is `message`.
fn logged(log: &str, message: &str) -> Option<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == message || v["message"] == message)
}

/// The timestamp of the first JSON log line whose message is `message`.
fn logged_at(log: &str, message: &str) -> Option<jiff::Timestamp> {
    logged(log, message).and_then(|v| v["timestamp"].as_str().and_then(|t| t.parse().ok()))
}

fn report(n: usize, samples: &[Sample]) {
    fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
        if v.is_empty() {
            return (f64::NAN, f64::NAN, f64::NAN);
        }
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2], v[v.len() - 1])
    }
    let col = |f: fn(&Sample) -> f64| stats(samples.iter().map(f).collect());
    let mib = |kib: f64| kib / 1024.0;
    let ready = col(|s| s.ready_ms);
    let synced = stats(samples.iter().filter_map(|s| s.synced_ms).collect());
    let hwm = col(|s| s.ready_hwm_kib as f64);
    let api = col(|s| s.apiserver_cpu_ms);
    let etcd = col(|s| s.etcd_cpu_ms);
    let quiet = col(|s| s.quiet_ms);
    let resync = stats(samples.iter().filter_map(|s| s.resync_ms).collect());
    let quiet_hwm = col(|s| s.quiet_hwm_kib as f64);
    println!();
    println!(
        "| BundleDeployments | runs | start → ready, min / median / max | \"caches synced\" logged, median | peak RSS when ready, median (max) | kube-apiserver CPU, start → ready, median | etcd CPU, median | first resync (log: synced → done), median | ready → quiet, median | peak RSS when quiet, median |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {n} | {} | {:.0} / {:.0} / {:.0} ms | {:.0} ms | {:.1} MiB ({:.1}) | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.1} MiB |",
        samples.len(),
        ready.0,
        ready.1,
        ready.2,
        synced.1,
        mib(hwm.1),
        mib(hwm.2),
        api.1,
        etcd.1,
        resync.1,
        quiet.1,
        mib(quiet_hwm.1),
    );
    println!();
    let resyncs: Vec<String> = samples
        .iter()
        .map(|s| match s.resync {
            Some((missing, discrepancies)) => {
                format!("{missing} missing, {discrepancies} discrepancies")
            }
            None => "not logged before quiet".to_string(),
        })
        .collect();
    println!("First resync of each run: {}.", resyncs.join("; "));
}

fn shell(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
