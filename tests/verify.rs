//! `fleet-delete-guard verify` and the `owner_discrepancies` gauge: the real binary
//! (exit codes, output) and the comparison through real kube clients, against the
//! Kubernetes API double imitating Fleet.

#[path = "support/kubectl.rs"]
mod kubectl;
mod support;

use std::{path::Path, process::Command, time::Duration};

use fleet_delete_guard::{
    cluster::scan::{self, Target},
    compare::{Comparison, Discrepancy, OwnerFilter, Report},
    fleet::{object_set_hash, OwnerKind},
};
use kube_api_double::{gvr, ApiDouble, Options, RequestRecord, UserInfo, Verb};
use serde_json::{json, Value};
use support::fixture_json;
use support::fleet::{
    client, fast_patcher, imitate_gitrepo_status_controller, seeded_double, CountingServer,
    BD_NAMESPACE,
};

const SELECTOR: &str =
    "fleet.cattle.io/cluster-namespace=fleet-local,fleet.cattle.io/cluster=local";
const WAIT: Duration = Duration::from_secs(20);

/// What one run of the binary gave.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("JSON output ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

/// `fleet-delete-guard verify ARGS` with KUBECONFIG = `kubeconfig`, off the runtime's
/// threads (the double runs on them).
async fn verify_bin(kubeconfig: &Path, args: &[&str]) -> Run {
    let kubeconfig = kubeconfig.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_fleet-delete-guard"))
            .arg("verify")
            .args(&args)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("FLEET_DELETE_GUARD_FLEET_KUBECONFIG")
            .output()
            .expect("run the binary");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .expect("binary run")
}

/// The double's administrator kubeconfig in `dir`.
fn admin_kubeconfig(double: &ApiDouble, dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("kubeconfig");
    double.write_kubeconfig(&path).expect("kubeconfig");
    path
}

/// The comparison as `verify` makes it, through a real kube client (library).
async fn compare(double: &ApiDouble) -> Report {
    let c = client(double);
    let target = Target {
        cluster: &c,
        fleet: &c,
        bd_namespace: BD_NAMESPACE,
        selector: SELECTOR,
        cluster_key: "fleet-local/local",
        timeout: Duration::from_secs(10),
        owner_kinds: &[OwnerKind::GitRepo, OwnerKind::HelmOp],
    };
    let mut comparison = Comparison::new(
        vec![String::new(), "cattle-fleet-local-system".into()],
        OwnerFilter::default(),
    );
    scan::scan(&target, &mut comparison, &mut |_| {})
        .await
        .expect("BundleDeployments listed");
    comparison.finish()
}

fn lots(report: &Report) -> &fleet_delete_guard::compare::OwnerReport {
    report
        .owners
        .iter()
        .find(|o| o.owner.to_string() == "GitRepo fleet-local/lots")
        .unwrap_or_else(|| panic!("GitRepo lots in {report:?}"))
}

/// A double with the GitRepo, BundleDeployments and ConfigMaps as given (fixture
/// files), ConfigMaps named in `gone` left out.
async fn double_with(gitrepo: &str, bundle_deployments: &str, gone: &[&str]) -> ApiDouble {
    let double = ApiDouble::start(Options::default()).await;
    double.seed(fixture_json(gitrepo)).expect("gitrepo");
    double
        .seed_list(fixture_json(bundle_deployments))
        .expect("bundledeployments");
    double
        .seed_list(fixture_json("configmaps-lots.json"))
        .expect("configmaps");
    for name in gone {
        double.delete_object(&gvr::CONFIGMAPS, "default", name);
    }
    double
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_fleet_agrees_with_the_cluster_verify_says_so_and_exits_0() {
    let double = seeded_double().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = admin_kubeconfig(&double, &dir);

    let run = verify_bin(&kubeconfig, &[]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with("GitRepo fleet-local/lots"))
        .unwrap_or_else(|| panic!("a row for lots: {}", run.stdout));
    let cells: Vec<&str> = row.split_whitespace().skip(2).collect();
    // BDS DESIRED READY MISSING PRESENT ABSENT UNCHECKED DISCREPANCIES
    assert_eq!(cells, ["3", "11", "11", "0", "11", "0", "0", "0"], "{row}");
    assert!(
        run.stdout
            .contains("Fleet's status agrees with the cluster"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("BundleDeployments listed"),
        "progress on stderr: {}",
        run.stderr
    );

    let run = verify_bin(&kubeconfig, &["--output", "json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = run.json();
    assert_eq!(v["bundleDeployments"], 3);
    assert_eq!(v["errors"], json!([]));
    let owner = &v["owners"][0];
    assert_eq!(
        (&owner["kind"], &owner["namespace"], &owner["name"]),
        (&json!("GitRepo"), &json!("fleet-local"), &json!("lots"))
    );
    assert_eq!(owner["discrepancies"], json!([]));
    assert_eq!(
        owner["ownerCounts"]["ready"], 11,
        "the GitRepo's counts were read"
    );

    // Read-only: nothing but reads reached the API.
    let writes = double.count_where(|r: &RequestRecord| {
        !matches!(
            r.verb,
            Verb::Get | Verb::List | Verb::Watch | Verb::Discovery
        )
    });
    assert_eq!(writes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_made_while_no_webhook_ran_is_reported_ready_but_absent_and_exits_1() {
    let double = seeded_double().await;
    // No webhook: Fleet's status still lists it as deployed.
    double.delete_object(&gvr::CONFIGMAPS, "default", "test-config2-one");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = admin_kubeconfig(&double, &dir);

    let run = verify_bin(&kubeconfig, &["-o", "json"]).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let owner = &run.json()["owners"][0];
    assert_eq!(
        owner["discrepancies"],
        json!([{"kind": "reported_ready_but_absent", "bundleDeployment": "lots-config2",
                "object": {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default", "name": "test-config2-one"}}])
    );
    assert_eq!(
        (&owner["present"], &owner["absent"]),
        (&json!(10), &json!(1))
    );
    assert_eq!(
        (&owner["reportedReady"], &owner["desiredReady"]),
        (&json!(11), &json!(11))
    );

    let run = verify_bin(&kubeconfig, &[]).await;
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains(
            "  ! lots-config2: configmap.v1 default/test-config2-one reported Ready but absent"
        ),
        "{}",
        run.stdout
    );

    // Filters: another owner only, or another namespace: nothing to disagree about.
    for args in [
        &["--owner", "GitRepo/fleet-local/other"][..],
        &["--owner", "fleet-default/lots"],
        &["--namespace", "fleet-default"],
    ] {
        let run = verify_bin(&kubeconfig, &[args, &["-o", "json"]].concat()).await;
        assert_eq!(run.code, 0, "{args:?}: {}", run.stdout);
        assert_eq!(run.json()["owners"], json!([]), "{args:?}");
    }
    let run = verify_bin(&kubeconfig, &["--owner", "fleet-local/lots", "-o", "json"]).await;
    assert_eq!(run.code, 1);
    assert_eq!(run.json()["owners"].as_array().map(Vec::len), Some(1));
    let run = verify_bin(&kubeconfig, &["--owner", "lots"]).await;
    assert_eq!(run.code, 2, "a bad --owner is an error");
    assert!(run.stderr.contains("KIND/NAMESPACE/NAME"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_object_is_reported_missing_but_present_or_recreated() {
    // Fleet counted the deletion (after-delete status), then someone re-created it.
    let double = double_with(
        "gitrepo-lots-after-delete.json",
        "bundledeployments-lots-after-delete.json",
        &[],
    )
    .await;
    let report = compare(&double).await;
    assert_eq!(
        lots(&report).discrepancies,
        [Discrepancy::ReportedMissingButPresent {
            bundle_deployment: "lots-config2".into(),
            object: fleet_delete_guard::compare::ObjectRef {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: "default".into(),
                name: "test-config2-one".into(),
            },
        }]
    );
    assert_eq!(report.exit_code(), 1);

    // Fleet's status says Ready, but the object there is another one (deleted and
    // re-created by hand: a new uid and creationTimestamp).
    let double = seeded_double().await;
    let mut cm = double
        .delete_object(&gvr::CONFIGMAPS, "default", "test-config1-two")
        .expect("was there");
    let meta = cm["metadata"].as_object_mut().expect("metadata");
    for field in [
        "uid",
        "creationTimestamp",
        "resourceVersion",
        "managedFields",
    ] {
        meta.remove(field);
    }
    double.seed(cm).expect("re-created");
    let report = compare(&double).await;
    let found = &lots(&report).discrepancies;
    assert_eq!(found.len(), 1, "{found:?}");
    let Discrepancy::Recreated {
        bundle_deployment,
        object,
        field,
        reported,
        ..
    } = &found[0]
    else {
        panic!("re-created: {found:?}")
    };
    assert_eq!(
        (
            bundle_deployment.as_str(),
            object.name.as_str(),
            *field,
            reported.as_str()
        ),
        (
            "lots-config1",
            "test-config1-two",
            "createdAt",
            "2026-08-20T09:01:12Z"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_fleet_never_updated_is_reported() {
    // The agent counted the deletion in the BundleDeployment; the GitRepo status was
    // never recomputed (Fleet's GitRepo controller down): still 11/11.
    let double = double_with(
        "gitrepo-lots.json",
        "bundledeployments-lots-after-delete.json",
        &["test-config2-one"],
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = admin_kubeconfig(&double, &dir);
    let run = verify_bin(&kubeconfig, &["-o", "json"]).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let owner = &run.json()["owners"][0];
    assert_eq!(
        owner["discrepancies"].as_array().map(Vec::len),
        Some(1),
        "{owner}"
    );
    let d = &owner["discrepancies"][0];
    assert_eq!(d["kind"], "owner_counts");
    assert_eq!(
        (&d["reported"]["ready"], &d["reported"]["missing"]),
        (&json!(11), &json!(0))
    );
    assert_eq!(
        (
            &d["bundleDeployments"]["ready"],
            &d["bundleDeployments"]["missing"]
        ),
        (&json!(10), &json!(1))
    );
    // The deleted object itself is reported missing, as it is: no discrepancy there.
    assert_eq!(
        (&owner["absent"], &owner["reportedMissing"]),
        (&json!(1), &json!(1))
    );
}

/// deploy/base/rbac.yaml as shipped, bound to the webhook's ServiceAccount.
fn seed_base_rbac(double: &ApiDouble) {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/base/rbac.yaml"),
    )
    .expect("rbac.yaml");
    for obj in kubectl::parse_yaml_stream(&text) {
        double.seed(obj).expect("seed rbac");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_the_credentials_cannot_list_are_errors_and_the_rest_is_still_checked() {
    let double = ApiDouble::start(Options {
        https: true,
        ..Options::default()
    })
    .await;
    support::fleet::seed(&double);
    // lots-config1 also deploys a Secret: the base RBAC leaves Secrets out on purpose.
    let mut bd = double
        .get(&gvr::BUNDLEDEPLOYMENTS, BD_NAMESPACE, "lots-config1")
        .expect("bd");
    bd["status"]["resources"]
        .as_array_mut()
        .expect("resources")
        .push(json!({"kind": "Secret", "apiVersion": "v1", "namespace": "default", "name": "creds", "createdAt": "2026-08-20T09:01:12Z"}));
    double.put_object(bd).expect("bd with a Secret");
    double
        .seed(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "default",
               "labels": {"objectset.rio.cattle.io/hash": object_set_hash("default-lots-config1")}}}))
        .expect("secret");
    seed_base_rbac(&double);
    double.add_token(
        "webhook-token",
        UserInfo::service_account("cattle-fleet-system", "fleet-delete-guard"),
    );
    double.enforce_rbac(true);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    double
        .write_kubeconfig_for(&kubeconfig, "webhook-token", "cattle-fleet-system")
        .expect("kubeconfig");

    let run = verify_bin(&kubeconfig, &["-o", "json"]).await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let v = run.json();
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["errors"][0]["what"], "Secret v1");
    assert_eq!(v["errors"][0]["unchecked"], 1);
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("forbidden"),
        "{v}"
    );
    let owner = &v["owners"][0];
    assert_eq!(
        (&owner["present"], &owner["absent"], &owner["unchecked"]),
        (&json!(11), &json!(0), &json!(1)),
        "the ConfigMaps were checked all the same"
    );
    assert_eq!(owner["discrepancies"], json!([]));
    // The webhook's own rights suffice for everything else, the GitRepo's counts included.
    let refused: Vec<String> = double
        .forbidden_requests()
        .iter()
        .map(|r| format!("{:?} {}", r.verb, r.resource()))
        .collect();
    assert_eq!(refused, ["List secrets"], "only the Secrets were refused");
    assert_eq!(owner["ownerCounts"]["desiredReady"], 11);

    let run = verify_bin(&kubeconfig, &[]).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stdout.contains("Not checked:\n  Secret v1: "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("(1 resources unchecked)"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_is_an_error_in_the_report_and_exits_2() {
    let double = seeded_double().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = admin_kubeconfig(&double, &dir);
    double.stop().await;
    let run = verify_bin(&kubeconfig, &["-o", "json", "--timeout", "3"]).await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let v = run.json();
    assert_eq!(v["errors"][0]["what"], "BundleDeployments", "{v}");
    assert_eq!(v["owners"], json!([]));

    // No cluster configuration at all.
    let run = verify_bin(&dir.path().join("absent"), &[]).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("fleet-delete-guard verify:"),
        "{}",
        run.stderr
    );
}

/// `n` BundleDeployments of this cluster, one ConfigMap each (GitRepo `many`), those in
/// `deleted` gone.
fn seed_bundle_deployments(double: &ApiDouble, n: usize, deleted: &[usize]) {
    let template = fixture_json("bundledeployments-lots.json")["items"][0].clone();
    for i in 0..n {
        let bd_name = format!("many-{i:05}");
        let cm = format!("many-cm-{i:05}");
        if !deleted.contains(&i) {
            double
                .seed(json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {
                        "name": cm, "namespace": "default", "creationTimestamp": "2026-08-20T09:01:12Z",
                        "labels": {"objectset.rio.cattle.io/hash": object_set_hash(&format!("default-{bd_name}"))},
                    },
                    "data": {"payload": "x".repeat(512)}
                }))
                .expect("seed cm");
        }
        let mut bd = template.clone();
        bd["metadata"] = json!({
            "name": bd_name, "namespace": BD_NAMESPACE,
            "labels": {
                "fleet.cattle.io/bundle-name": bd_name, "fleet.cattle.io/bundle-namespace": "fleet-local",
                "fleet.cattle.io/repo-name": "many",
                "fleet.cattle.io/cluster": "local", "fleet.cattle.io/cluster-namespace": "fleet-local"
            }
        });
        bd["status"]["resources"] = json!([{"kind": "ConfigMap", "apiVersion": "v1", "namespace": "default", "name": cm, "createdAt": "2026-08-20T09:01:12Z"}]);
        bd["status"]["resourceCounts"] = json!({"ready": 1, "desiredReady": 1});
        double.seed(bd).expect("seed bd");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_lists_page_by_page_metadata_only() {
    let double = ApiDouble::start(Options::default()).await;
    seed_bundle_deployments(&double, 1200, &[0, 1199]);
    let report = compare(&double).await;
    assert_eq!(report.bundle_deployments, 1200);
    let many = &report.owners[0];
    assert_eq!((many.present, many.absent), (1198, 2));
    assert_eq!(many.discrepancies.len(), 2);

    let requests = double.requests();
    let pages = |resource: &str| {
        requests
            .iter()
            .filter(|r| r.verb == Verb::List && r.resource() == resource)
            .filter(|r| r.query.contains("limit=100"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        pages("bundledeployments").len(),
        12,
        "1,200 in pages of 100"
    );
    let cms = pages("configmaps");
    assert_eq!(cms.len(), 12);
    for r in cms {
        let accept = r.accept.clone().unwrap_or_default();
        assert!(accept.contains("as=PartialObjectMetadataList"), "{accept}");
    }
}

/// Peak RSS (VmHWM, KiB) of a running process, from /proc.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The real binary on `n` BundleDeployments (and ConfigMaps, one in 1,000 deleted):
/// exit code, peak RSS (MiB), wall time (s), the JSON report.
async fn measure(n: usize) -> (i32, f64, f64, Value) {
    let double = ApiDouble::start(Options::default()).await;
    let deleted: Vec<usize> = (0..n).step_by(1000).collect();
    seed_bundle_deployments(&double, n, &deleted);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = admin_kubeconfig(&double, &dir);
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_fleet-delete-guard"))
            .args(["verify", "-o", "json"])
            .env("KUBECONFIG", &kubeconfig)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let pid = child.id();
        let mut stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut s).map(|_| s)
        });
        let mut peak = 0;
        let code = loop {
            if let Some(kib) = peak_rss_kib(pid) {
                peak = peak.max(kib);
            }
            match child.try_wait().expect("wait") {
                Some(status) => break status.code().unwrap_or(-1),
                None => std::thread::sleep(Duration::from_millis(2)),
            }
        };
        let elapsed = started.elapsed().as_secs_f64();
        let out = reader.join().expect("reader").expect("stdout");
        let v: Value = serde_json::from_str(&out).expect("json");
        (code, peak as f64 / 1024.0, elapsed, v)
    })
    .await
    .expect("run")
}

/// BENCHMARKS.md, "verify": 1,000, 10,000 and 20,000 BundleDeployments, the real binary.
/// Run by hand:
/// `cargo test --release --test verify -- --ignored --nocapture verify_memory`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, run by hand (BENCHMARKS.md)"]
async fn verify_memory_with_10000_bundle_deployments() {
    for n in [1_000, 10_000, 20_000] {
        let (code, peak_mib, secs, v) = measure(n).await;
        println!(
            "verify, {n} BundleDeployments: exit {code}, peak RSS {peak_mib:.1} MiB, {secs:.2} s wall"
        );
        assert_eq!(v["bundleDeployments"], n);
        assert_eq!(code, 1, "one deletion in 1,000 is reported");
        assert_eq!(
            v["owners"][0]["discrepancies"].as_array().map(Vec::len),
            Some(n / 1000)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_publishes_owner_discrepancies_after_each_resync() {
    let double = seeded_double().await;
    imitate_gitrepo_status_controller(&double, Duration::ZERO);
    // Deleted while no replica ran: the first resync finds them, reports them and
    // counts them; the next one finds Fleet's status agreeing again.
    for name in ["test-config1-two", "test-config3-one"] {
        double.delete_object(&gvr::CONFIGMAPS, "default", name);
    }
    let s = CountingServer::start(
        &double,
        fleet_delete_guard::patcher::PatcherConfig {
            resync_interval: Duration::from_millis(500),
            ..fast_patcher()
        },
    )
    .await
    .synced()
    .await;
    let metrics = s.metrics.clone();
    let gauge = r#"fleet_delete_guard_owner_discrepancies{owner_kind="GitRepo",owner_namespace="fleet-local",owner_name="lots"}"#;
    support::wait_until("the first resync reports 2", WAIT, || {
        metrics.encode().contains(&format!("{gauge} 2"))
    })
    .await;
    let completed = |text: &str| -> f64 {
        text.lines()
            .find_map(|l| {
                l.strip_prefix("fleet_delete_guard_verify_last_completed_timestamp_seconds ")
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    };
    let first = completed(&metrics.encode());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        (now - first).abs() < 60.0,
        "a recent check: {first} vs {now}"
    );
    support::wait_until("a later resync reports 0", WAIT, || {
        metrics.encode().contains(&format!("{gauge} 0"))
    })
    .await;
    assert!(
        completed(&metrics.encode()) > first,
        "the time moves with each check"
    );
}
