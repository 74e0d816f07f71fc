//! End to end against the real control plane: etcd, kube-apiserver and
//! kube-controller-manager built from their Go modules (`scripts/real-cluster.sh`).
//! deploy/ is applied with the real kubectl; its ValidatingWebhookConfiguration (with
//! its matchConditions, evaluated by the real apiserver's CEL) points at a locally
//! running `fleet-delete-guard serve`, which talks to the apiserver as its
//! ServiceAccount through the RBAC deploy/ grants; `alice` deletes with the real
//! kubectl; the real audit log is the evidence.
//!
//! Run with `scripts/real-cluster.sh test` (builds the binaries first, cached). It is not
//! part of the default `cargo test`: it needs Go-built programs (required feature
//! `real-cluster`). One control plane serves every test of this binary; the tests run
//! one at a time (a lock), each in its own namespace with a freshly seeded GitRepo.

#[path = "support/helm.rs"]
mod helm;
#[path = "support/kubectl.rs"]
mod kubectl;
#[path = "support/real_cluster.rs"]
mod real_cluster;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock},
    time::{Duration, Instant},
};

use real_cluster::ControlPlane;
use serde_json::{json, Value};

const NS: &str = "cattle-fleet-system";
const SA: &str = "fleet-delete-guard";
const WEBHOOK: &str = "delete-guard.fleet.cattle.io";
const WEBHOOK_CONFIG: &str = "fleet-delete-guard";
const SA_USER: &str = "system:serviceaccount:cattle-fleet-system:fleet-delete-guard";
const BD_NS: &str = "cluster-fleet-local-local-1a3d67d0a899";
/// Generous: a loaded 2-core machine. Nothing here asserts a speed.
const WAIT: Duration = Duration::from_secs(60);
const COUNTS: &str =
    "jsonpath={.status.resourceCounts.ready}/{.status.resourceCounts.desiredReady}";

/// The control plane every test shares, started once.
fn plane() -> &'static ControlPlane {
    static PLANE: OnceLock<ControlPlane> = OnceLock::new();
    PLANE.get_or_init(|| {
        fleet_delete_guard::tls::install_crypto_provider();
        let kubectl = kubectl::find().expect("kubectl ($KUBECTL, /usr/bin/kubectl or $PATH)");
        let cp = ControlPlane::start(kubectl);
        install_fleet_and_deploy(&cp);
        cp
    })
}

/// One test at a time: each starts its own webhook, which sees every deletion.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture JSON")
}

/// Server-assigned fields dropped, so the object can be created anew.
fn fresh(mut obj: Value) -> Value {
    if let Some(meta) = obj["metadata"].as_object_mut() {
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
            "finalizers",
        ] {
            meta.remove(k);
        }
    }
    obj
}

/// The Fleet CRD stand-ins, Fleet's namespaces, and deploy/ as kubectl renders it — with
/// the webhook's clientConfig pointed at a URL on loopback instead of the Service
/// (nothing runs pods here; envtest does the same).
fn install_fleet_and_deploy(cp: &ControlPlane) {
    cp.install_fleet_crds(&[NS, "fleet-local", BD_NS]);
    // deploy/ without its ValidatingWebhookConfiguration: each test installs that, with
    // its own webhook's URL.
    let objects: Vec<Value> = kubectl::render(&cp.kubectl, "")
        .into_iter()
        .filter(|o| o["kind"] != "ValidatingWebhookConfiguration")
        .collect();
    cp.apply(&objects);
    cp.wait_for("the webhook's ServiceAccount", || {
        cp.kubectl_ok("admin", &["get", "sa", SA, "-n", NS])
    });
}

/// The ValidatingWebhookConfiguration of deploy/`overlay`, named `name`, every entry
/// calling `url`.
fn webhook_configuration(cp: &ControlPlane, overlay: &str, name: &str, url: &str) -> Value {
    let mut vwc = kubectl::render(&cp.kubectl, overlay)
        .into_iter()
        .find(|o| o["kind"] == "ValidatingWebhookConfiguration")
        .expect("deploy/ has a ValidatingWebhookConfiguration");
    vwc["metadata"]["name"] = json!(name);
    for hook in vwc["webhooks"].as_array_mut().expect("webhooks") {
        hook["clientConfig"] = json!({ "url": url });
    }
    vwc
}

/// One test's world: a namespace holding the 11 ConfigMaps of the worked example, the
/// GitRepo fleet-local/lots and its three BundleDeployments (status as Fleet wrote it),
/// all created anew.
struct World {
    ns: String,
}

impl World {
    fn seed(cp: &'static ControlPlane, ns: &str) -> World {
        let _ = cp.kubectl_ok(
            "admin",
            &[
                "delete",
                "gitrepo,bundledeployment",
                "--all",
                "-A",
                "--wait=true",
            ],
        );
        // No breaker open, no window counts of an earlier test's webhooks (a webhook
        // counts its predecessors' deletions within the window, as a restarted replica must).
        for args in [
            &[
                "delete",
                "lease",
                "-n",
                NS,
                "-l",
                "delete-guard.fleet.cattle.io/breaker",
            ][..],
            &[
                "delete",
                "lease",
                "-n",
                NS,
                "fleet-delete-guard-breaker-counts",
                "--ignore-not-found",
            ][..],
        ] {
            let _ = cp.kubectl_ok("admin", args);
        }
        cp.apply(&[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})]);
        // alice is a team member: Kubernetes' built-in `edit` role in this namespace only.
        cp.apply(&[json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "alice-edit", "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]})]);
        let in_ns = |v: &Value| -> Value {
            let text = v.to_string().replace(
                r#""namespace":"default""#,
                &format!(r#""namespace":"{ns}""#),
            );
            serde_json::from_str(&text).expect("JSON")
        };
        let configmaps = fixture("configmaps-lots.json");
        let cms: Vec<Value> = configmaps["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|o| fresh(in_ns(o)))
            .collect();
        cp.apply(&cms);

        let gitrepo = fixture("gitrepo-lots.json");
        let bds = fixture("bundledeployments-lots.json");
        let bd_items: Vec<Value> = bds["items"].as_array().expect("items").clone();
        let mut specs = vec![strip_status(fresh(gitrepo.clone()))];
        specs.extend(bd_items.iter().map(|b| strip_status(fresh(b.clone()))));
        cp.apply(&specs);
        // The agent records each object's creation time; these were created just now.
        let created: std::collections::HashMap<String, String> = {
            let out = cp.kubectl_stdout("admin", &["get", "configmaps", "-n", ns, "-o", "json"]);
            let list: Value = serde_json::from_str(&out).expect("JSON");
            list["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|o| {
                    (
                        name_of(o).to_string(),
                        o["metadata"]["creationTimestamp"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    )
                })
                .collect()
        };
        for bd in &bd_items {
            let mut bd = in_ns(bd);
            for r in bd["status"]["resources"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                if let Some(t) = r["name"].as_str().and_then(|n| created.get(n)) {
                    r["createdAt"] = json!(t);
                }
            }
            patch_status(cp, "bundledeployment", BD_NS, name_of(&bd), &bd["status"]);
        }
        patch_status(
            cp,
            "gitrepo",
            "fleet-local",
            "lots",
            &in_ns(&gitrepo)["status"],
        );
        let w = World { ns: ns.to_string() };
        assert_eq!(w.counts(cp), "11/11");
        w
    }

    /// `kubectl delete configmap NAME` in this world's namespace, as alice.
    fn alice_deletes(&self, cp: &ControlPlane, name: &str, extra: &[&str]) -> kubectl::Run {
        kubectl_run(
            cp.kubectl("alice")
                .args(["delete", "configmap", name, "-n", &self.ns])
                .args(extra),
        )
    }

    fn counts(&self, cp: &ControlPlane) -> String {
        cp.kubectl_stdout(
            "admin",
            &["get", "gitrepo", "lots", "-n", "fleet-local", "-o", COUNTS],
        )
    }

    /// Polls the GitRepo until it reads `want`.
    fn wait_counts(&self, cp: &ControlPlane, want: &str) {
        let start = Instant::now();
        loop {
            let have = self.counts(cp);
            if have == want {
                return;
            }
            assert!(
                start.elapsed() < WAIT,
                "GitRepo still reads {have}, not {want}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn bd(&self, cp: &ControlPlane, name: &str) -> Value {
        let out = cp.kubectl_stdout(
            "admin",
            &["get", "bundledeployment", name, "-n", BD_NS, "-o", "json"],
        );
        serde_json::from_str(&out).expect("JSON")
    }
}

fn strip_status(mut o: Value) -> Value {
    if let Some(m) = o.as_object_mut() {
        m.remove("status");
    }
    o
}

fn name_of(o: &Value) -> &str {
    o["metadata"]["name"].as_str().expect("name")
}

fn patch_status(cp: &ControlPlane, kind: &str, ns: &str, name: &str, status: &Value) {
    let patch = json!({ "status": status }).to_string();
    cp.kubectl_stdout(
        "admin",
        &[
            "patch",
            kind,
            name,
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ],
    );
}

/// `fleet-delete-guard serve` as a child process, as deploy/ configures it (certificate
/// bootstrap into the Secret, caBundle written into its configuration), connected to
/// the real apiserver with its ServiceAccount's token.
struct Webhook {
    child: Child,
    /// The webhook's port on 127.0.0.1.
    port: u16,
    metrics: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    config: String,
}

impl Webhook {
    /// Starts it, installs its ValidatingWebhookConfiguration, and waits until the
    /// apiserver really calls it (a server-side dry-run deletion comes back warned).
    fn start(cp: &'static ControlPlane, world: &World, config: &str, extra: &[&str]) -> Webhook {
        Self::start_overlay(cp, world, "", config, extra)
    }

    /// Like [`Webhook::start`], with the webhook configuration of deploy/`overlay`.
    fn start_overlay(
        cp: &'static ControlPlane,
        world: &World,
        overlay: &str,
        config: &str,
        extra: &[&str],
    ) -> Webhook {
        let port = real_cluster::free_port();
        let kubeconfig = cp.service_account_kubeconfig(NS, SA);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleet-delete-guard"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("FLEET_DELETE_GUARD_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", "127.0.0.1:0", "--log-format", "json"])
            .args([
                "--cert-secret",
                "fleet-delete-guard-tls",
                "--webhook-config",
                config,
            ])
            .args(["--cert-dns-name", "127.0.0.1", "--fleet-version", "v0.16.1"])
            .arg("--cert-dir")
            .arg(cp.path(&format!("certs-{config}-{port}")))
            .args(["--shutdown-grace", "2"])
            .args(extra)
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAMESPACE", NS)
            .env("POD_NAME", format!("fleet-delete-guard-{port}"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Installed first, without a caBundle: the webhook writes it. The webhook
        // compares what it watches with this, as installed (--webhook-config-manifest).
        let installed = webhook_configuration(
            cp,
            overlay,
            config,
            &format!("https://127.0.0.1:{port}/validate"),
        );
        let manifest = cp.path(&format!("webhook-config-{config}-{port}.json"));
        std::fs::write(&manifest, installed.to_string()).expect("write the manifest");
        cmd.arg("--webhook-config-manifest").arg(&manifest);
        cp.apply(&[installed]);
        let mut child = real_cluster::spawn(cmd).expect("start fleet-delete-guard");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<SocketAddr>();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["message"] == "fleet-delete-guard serving" {
                        if let Some(m) = v["metrics_listen"].as_str().and_then(|s| s.parse().ok()) {
                            let _ = tx.send(m);
                        }
                    }
                }
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let Ok(metrics) = rx.recv_timeout(WAIT) else {
            let _ = child.kill();
            panic!(
                "fleet-delete-guard did not start:\n{}",
                logs.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
            );
        };
        let w = Webhook {
            child,
            port,
            metrics,
            logs,
            config: config.to_string(),
        };
        // The webhook bootstrapped its CA into the Secret; it syncs the caBundle only into
        // entries that call its Service, and this one calls a URL (no pods, no Service
        // routing here), so the test injects it — as cert-manager's CA injector would.
        let ca = cp.kubectl_stdout(
            "admin",
            &[
                "get",
                "secret",
                "fleet-delete-guard-tls",
                "-n",
                NS,
                "-o",
                "jsonpath={.data.ca\\.crt}",
            ],
        );
        assert!(
            !ca.is_empty(),
            "the webhook bootstrapped its Secret:\n{}",
            w.logs()
        );
        let entries = cp.kubectl_stdout(
            "admin",
            &[
                "get",
                "validatingwebhookconfiguration",
                config,
                "-o",
                "jsonpath={.webhooks[*].name}",
            ],
        );
        let patch: Vec<Value> = (0..entries.split_whitespace().count())
            .map(|i| json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": ca}))
            .collect();
        let patch = Value::Array(patch).to_string();
        cp.kubectl_stdout(
            "admin",
            &[
                "patch",
                "validatingwebhookconfiguration",
                config,
                "--type=json",
                "-p",
                &patch,
            ],
        );
        w.wait_called(cp, world);
        w
    }

    /// Until kube-apiserver calls the webhook: its caBundle is written and the apiserver's
    /// webhook configuration cache has it.
    fn wait_called(&self, cp: &ControlPlane, world: &World) {
        let start = Instant::now();
        loop {
            let run = world.alice_deletes(cp, "test-config1-one", &["--dry-run=server"]);
            if run.stderr.contains("is managed by Fleet") {
                return;
            }
            assert!(
                start.elapsed() < WAIT,
                "kube-apiserver never called the webhook: {run}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn logs(&self) -> String {
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// The JSON log lines of reviews (message "review").
    fn review_lines(&self) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("decision").is_some() || v["fields"].get("decision").is_some())
            .collect()
    }

    fn metrics_text(&self) -> String {
        let out = Command::new("curl")
            .args([
                "-fsS",
                "--max-time",
                "5",
                &format!("http://{}/metrics", self.metrics),
            ])
            .output();
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
            _ => http_get(self.metrics, "/metrics"),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.kill();
        if let Some(cp) = PLANE_FOR_DROP.get() {
            let _ = cp.kubectl_ok(
                "admin",
                &[
                    "delete",
                    "validatingwebhookconfiguration",
                    &self.config,
                    "--ignore-not-found",
                ],
            );
        }
    }
}

static PLANE_FOR_DROP: OnceLock<&'static ControlPlane> = OnceLock::new();

fn setup(ns: &str) -> (MutexGuard<'static, ()>, &'static ControlPlane, World) {
    let guard = serial();
    let cp = plane();
    let _ = PLANE_FOR_DROP.set(cp);
    let world = World::seed(cp, ns);
    (guard, cp, world)
}

fn kubectl_run(cmd: &mut Command) -> kubectl::Run {
    cmd.output().expect("kubectl runs").into()
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read");
    buf.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// Audit events of `verb` on `name`, newest last, once the apiserver has written them.
fn audit_events_for(cp: &ControlPlane, name: &str, verb: &str) -> Vec<Value> {
    cp.audit_events()
        .into_iter()
        .filter(|e| {
            e["objectRef"]["name"] == name && e["verb"] == verb && e["stage"] == "ResponseComplete"
        })
        .collect()
}

fn wait_audit(cp: &ControlPlane, name: &str, verb: &str) -> Value {
    let start = Instant::now();
    loop {
        if let Some(e) = audit_events_for(cp, name, verb).pop() {
            return e;
        }
        assert!(start.elapsed() < WAIT, "no {verb} audit event for {name}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn resource_names(bd: &Value, list: &str) -> Vec<String> {
    bd["status"][list]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn alice_deletes_a_fleet_configmap_kubectl_warns_the_status_reads_10_of_11_and_the_audit_log_says_so(
) {
    let (_g, cp, world) = setup("rc-delete");
    // The audit log is the whole suite's: only this test's events count here.
    let mark = cp.audit_events().len();
    let w = Webhook::start(cp, &world, WEBHOOK_CONFIG, &[]);

    let run = world.alice_deletes(cp, "test-config2-one", &[]);
    assert!(run.ok, "{run}");
    assert!(
        run.stderr.contains(&format!(
            "Warning: configmap {}/test-config2-one is managed by Fleet GitRepo fleet-local/lots (bundle lots-config2).",
            world.ns
        )),
        "the real kubectl prints the webhook's warning:\n{run}"
    );
    world.wait_counts(cp, "10/11");

    // The BundleDeployment Fleet recomputes the GitRepo from says the same.
    let bd = world.bd(cp, "lots-config2");
    assert_eq!(bd["status"]["resourceCounts"]["missing"], 1, "{bd:#}");
    assert!(
        resource_names(&bd, "modifiedStatus")
            .iter()
            .any(|n| n == "test-config2-one"),
        "{bd:#}"
    );

    // The writes went through the real RBAC as the webhook's ServiceAccount, and
    // deploy/'s RBAC let every request it made.
    let by_webhook: Vec<Value> = cp
        .audit_events()
        .into_iter()
        .skip(mark)
        .filter(|e| e["user"]["username"] == SA_USER && e["stage"] == "ResponseComplete")
        .collect();
    let status_writes = by_webhook
        .iter()
        .filter(|e| e["objectRef"]["subresource"] == "status" && e["verb"] == "patch")
        .count();
    assert!(
        status_writes >= 2,
        "BundleDeployment and GitRepo status patched: {by_webhook:#?}"
    );
    let refused: Vec<String> = by_webhook
        .iter()
        .filter(|e| e["responseStatus"]["code"] == 403)
        .map(|e| format!("{} {}", e["verb"], e["requestURI"]))
        .collect();
    assert!(
        refused.is_empty(),
        "deploy/'s RBAC refused the webhook: {refused:#?}"
    );

    // The real audit log holds the webhook's annotations on alice's DELETE.
    let event = wait_audit(cp, "test-config2-one", "delete");
    assert_eq!(event["user"]["username"], "alice");
    let a = &event["annotations"];
    assert_eq!(a[format!("{WEBHOOK}/decision")], "warned", "{event:#}");
    assert_eq!(
        a[format!("{WEBHOOK}/gitrepo")],
        "fleet-local/lots",
        "{event:#}"
    );
    assert_eq!(a[format!("{WEBHOOK}/counted")], "true", "{event:#}");

    // `fleet-delete-guard audit` reads the real log and reports the row.
    let out = Command::new(env!("CARGO_BIN_EXE_fleet-delete-guard"))
        .args(["audit", "-o", "json"])
        .arg(cp.audit_log())
        .output()
        .expect("run audit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let row = rows
        .iter()
        .find(|r| r.to_string().contains("test-config2-one"))
        .unwrap_or_else(|| panic!("audit reports the deletion: {rows:#?}"));
    assert!(row.to_string().contains("alice"), "{row:#}");
    drop(w);
}

#[test]
fn a_server_side_dry_run_is_warned_and_never_counted() {
    let (_g, cp, world) = setup("rc-dry-run");
    let _w = Webhook::start(cp, &world, WEBHOOK_CONFIG, &[]);
    let run = world.alice_deletes(cp, "test-config3-one", &["--dry-run=server"]);
    assert!(run.ok, "{run}");
    assert!(
        run.stderr
            .contains("is managed by Fleet GitRepo fleet-local/lots"),
        "{run}"
    );
    assert!(cp.kubectl_ok(
        "admin",
        &["get", "configmap", "test-config3-one", "-n", &world.ns]
    ));
    // A real deletion after it: the GitRepo reads 10/11, not 9/11, and only the real one
    // is listed — the dry run was never counted.
    let run = world.alice_deletes(cp, "test-config3-two", &[]);
    assert!(run.ok, "{run}");
    world.wait_counts(cp, "10/11");
    let bd = world.bd(cp, "lots-config3");
    let missing = resource_names(&bd, "modifiedStatus");
    assert!(missing.contains(&"test-config3-two".to_string()), "{bd:#}");
    assert!(!missing.contains(&"test-config3-one".to_string()), "{bd:#}");
    // The apiserver recorded the dry run with the webhook's decision too.
    let event = wait_audit(cp, "test-config3-one", "delete");
    assert_eq!(
        event["annotations"][format!("{WEBHOOK}/decision")],
        "warned",
        "{event:#}"
    );
}

#[test]
fn deletecollection_is_reviewed_item_by_item_and_each_is_counted() {
    let (_g, cp, world) = setup("rc-collection");
    let _w = Webhook::start(cp, &world, WEBHOOK_CONFIG, &[]);
    // lots-config1's four ConfigMaps, by their objectset hash label.
    let run = kubectl_run(cp.kubectl("alice").args([
        "delete",
        "configmap",
        "-n",
        &world.ns,
        "-l",
        "objectset.rio.cattle.io/hash=ba58bbccf47282ed0e4730455ed431fa5871d167",
    ]));
    assert!(run.ok, "{run}");
    world.wait_counts(cp, "7/11");
    let bd = world.bd(cp, "lots-config1");
    assert_eq!(bd["status"]["resourceCounts"]["missing"], 4, "{bd:#}");
    for name in [
        "test-config1-one",
        "test-config1-two",
        "test-config1-three",
        "test-config1-four",
    ] {
        let e = wait_audit(cp, name, "delete");
        assert_eq!(
            e["annotations"][format!("{WEBHOOK}/counted")],
            "true",
            "{e:#}"
        );
    }
}

#[test]
fn deletecollection_over_one_request_is_one_review_per_item() {
    let (_g, cp, world) = setup("rc-deletecollection");
    let _w = Webhook::start(cp, &world, WEBHOOK_CONFIG, &[]);
    // One DELETECOLLECTION request (kubectl deletes items one by one; the raw API does not).
    let path = format!(
        "/api/v1/namespaces/{}/configmaps?labelSelector=objectset.rio.cattle.io%2Fhash%3D1f6cbdedabb336dab13100bdf94ba7ff6d50ca9b",
        world.ns
    );
    let run = kubectl_run(cp.kubectl("alice").args(["delete", "--raw", &path]));
    assert!(run.ok, "{run}");
    world.wait_counts(cp, "8/11");
    let collection: Vec<Value> = cp
        .audit_events()
        .into_iter()
        .filter(|e| {
            e["verb"] == "deletecollection" && e["objectRef"]["namespace"] == world.ns.as_str()
        })
        .collect();
    assert!(
        !collection.is_empty(),
        "the apiserver logged the DELETECOLLECTION"
    );
}

#[test]
fn the_namespace_controller_deleting_a_namespace_is_allowed_and_counted() {
    let (_g, cp, world) = setup("rc-namespace");
    let _w = Webhook::start(cp, &world, WEBHOOK_CONFIG, &["--policy", "deny"]);
    let run =
        kubectl_run(
            cp.kubectl("admin")
                .args(["delete", "namespace", &world.ns, "--wait=false"]),
        );
    assert!(run.ok, "{run}");
    // Every one of the 11 lives in that namespace: the namespace controller deletes them,
    // the webhook (even under --policy deny) lets it and counts each.
    world.wait_counts(cp, "0/11");
    // The namespace controller empties a namespace with one DELETECOLLECTION per
    // resource; kube-apiserver reviews each item and files the webhook's annotations
    // on that one audit event.
    let start = Instant::now();
    let event = loop {
        let found = cp.audit_events().into_iter().find(|e| {
            e["verb"] == "deletecollection"
                && e["stage"] == "ResponseComplete"
                && e["objectRef"]["resource"] == "configmaps"
                && e["objectRef"]["namespace"] == world.ns.as_str()
        });
        if let Some(e) = found {
            break e;
        }
        assert!(
            start.elapsed() < WAIT,
            "no DELETECOLLECTION of the namespace's ConfigMaps"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        event["user"]["username"], "system:serviceaccount:kube-system:namespace-controller",
        "{event:#}"
    );
    let decision = event["annotations"][format!("{WEBHOOK}/decision")]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!decision.is_empty(), "reviewed: {event:#}");
    assert_ne!(
        decision, "denied",
        "never denied under --policy deny: {event:#}"
    );
}

#[test]
fn the_garbage_collector_deleting_a_dependent_is_counted() {
    let (_g, cp, world) = setup("rc-gc");
    let _w = Webhook::start(cp, &world, WEBHOOK_CONFIG, &[]);
    cp.apply(&[json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "gc-owner", "namespace": world.ns}})]);
    let uid = cp.kubectl_stdout(
        "admin",
        &[
            "get",
            "configmap",
            "gc-owner",
            "-n",
            &world.ns,
            "-o",
            "jsonpath={.metadata.uid}",
        ],
    );
    let patch = json!({"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap",
        "name": "gc-owner", "uid": uid}]}})
    .to_string();
    cp.kubectl_stdout(
        "admin",
        &[
            "patch",
            "configmap",
            "test-config3-three",
            "-n",
            &world.ns,
            "--type=merge",
            "-p",
            &patch,
        ],
    );
    let run =
        kubectl_run(
            cp.kubectl("alice")
                .args(["delete", "configmap", "gc-owner", "-n", &world.ns]),
        );
    assert!(run.ok, "{run}");
    world.wait_counts(cp, "10/11");
    let e = wait_audit(cp, "test-config3-three", "delete");
    assert_eq!(
        e["user"]["username"], "system:serviceaccount:kube-system:generic-garbage-collector",
        "{e:#}"
    );
    assert_eq!(
        e["annotations"][format!("{WEBHOOK}/counted")],
        "true",
        "{e:#}"
    );
}

#[test]
fn an_object_with_a_finalizer_is_counted_once_it_is_really_gone() {
    let (_g, cp, world) = setup("rc-finalizer");
    let w = Webhook::start(cp, &world, WEBHOOK_CONFIG, &[]);
    let hold = json!({"metadata": {"finalizers": ["example.com/hold"]}}).to_string();
    cp.kubectl_stdout(
        "admin",
        &[
            "patch",
            "configmap",
            "test-config2-four",
            "-n",
            &world.ns,
            "--type=merge",
            "-p",
            &hold,
        ],
    );
    let run = world.alice_deletes(cp, "test-config2-four", &["--wait=false"]);
    assert!(run.ok, "{run}");
    let ts = cp.kubectl_stdout(
        "admin",
        &[
            "get",
            "configmap",
            "test-config2-four",
            "-n",
            &world.ns,
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ],
    );
    assert!(!ts.is_empty(), "the finalizer holds the object");
    // While the object is still there, it is not counted: the webhook waits for it. An
    // unrelated real deletion shows how far counting has got.
    let run = world.alice_deletes(cp, "test-config1-four", &[]);
    assert!(run.ok, "{run}");
    world.wait_counts(cp, "10/11");
    assert!(
        !resource_names(&world.bd(cp, "lots-config2"), "modifiedStatus")
            .contains(&"test-config2-four".to_string()),
        "counted while it still exists"
    );
    let release = json!({"metadata": {"finalizers": null}}).to_string();
    cp.kubectl_stdout(
        "admin",
        &[
            "patch",
            "configmap",
            "test-config2-four",
            "-n",
            &world.ns,
            "--type=merge",
            "-p",
            &release,
        ],
    );
    world.wait_counts(cp, "9/11");
    assert!(
        resource_names(&world.bd(cp, "lots-config2"), "modifiedStatus")
            .contains(&"test-config2-four".to_string()),
        "{}",
        w.logs()
    );
}

#[test]
fn a_deletion_refused_by_a_second_webhook_is_not_left_counted() {
    let (_g, cp, world) = setup("rc-refused");
    let counting = Webhook::start(cp, &world, WEBHOOK_CONFIG, &["--confirm-timeout", "1"]);
    // A second webhook (the same binary, another configuration) that refuses humans'
    // deletions and counts nothing.
    let _refusing = Webhook::start(
        cp,
        &world,
        "second-webhook",
        &["--policy", "deny", "--counting", "false"],
    );
    let run = world.alice_deletes(cp, "test-config2-two", &[]);
    assert!(!run.ok, "the second webhook refuses: {run}");
    assert!(cp.kubectl_ok(
        "admin",
        &["get", "configmap", "test-config2-two", "-n", &world.ns]
    ));
    // The counting webhook reverts its mark: the deletion never happened.
    let start = Instant::now();
    while !counting
        .metrics_text()
        .contains("fleet_delete_guard_reverts_total 1")
    {
        assert!(
            start.elapsed() < WAIT,
            "no revert:\n{}\n{}",
            counting.metrics_text(),
            counting.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    world.wait_counts(cp, "11/11");
    assert!(
        !resource_names(&world.bd(cp, "lots-config2"), "modifiedStatus")
            .contains(&"test-config2-two".to_string())
    );
}

#[test]
fn objects_of_other_objectset_writers_never_reach_the_webhook() {
    let (_g, cp, world) = setup("rc-other-writers");
    let w = Webhook::start(cp, &world, WEBHOOK_CONFIG, &[]);
    cp.apply(&[json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "rancher-owned", "namespace": world.ns,
            "labels": {"objectset.rio.cattle.io/hash": "0123456789abcdef0123456789abcdef01234567"},
            "annotations": {"objectset.rio.cattle.io/id": "cluster-agent-rancher"}}})]);
    let before = w.review_lines().len();
    let run = world.alice_deletes(cp, "rancher-owned", &[]);
    assert!(run.ok, "{run}");
    assert!(!run.stderr.contains("Warning"), "{run}");
    // The apiserver's CEL matchCondition kept it: no review, no annotation.
    let e = wait_audit(cp, "rancher-owned", "delete");
    assert!(
        e["annotations"]
            .get(format!("{WEBHOOK}/decision"))
            .is_none(),
        "{e:#}"
    );
    // A Fleet deletion afterwards is reviewed, and is the only new review.
    let run = world.alice_deletes(cp, "test-config1-two", &[]);
    assert!(run.ok, "{run}");
    world.wait_counts(cp, "10/11");
    let reviews: Vec<Value> = w.review_lines().into_iter().skip(before).collect();
    assert!(
        reviews
            .iter()
            .all(|r| !r.to_string().contains("rancher-owned")),
        "{reviews:#?}"
    );
}

#[test]
fn with_the_webhook_stopped_deletions_succeed_and_the_audit_log_says_failed_open() {
    let (_g, cp, world) = setup("rc-failed-open");
    let mut w = Webhook::start(cp, &world, WEBHOOK_CONFIG, &[]);
    w.kill();
    let run = world.alice_deletes(cp, "test-config1-three", &[]);
    assert!(run.ok, "failurePolicy Ignore: {run}");
    let e = wait_audit(cp, "test-config1-three", "delete");
    let failed_open = e["annotations"]
        .as_object()
        .map(|a| {
            a.iter().any(|(k, v)| {
                k.starts_with("failed-open.validating.webhook.admission.k8s.io/") && v == WEBHOOK
            })
        })
        .unwrap_or(false);
    assert!(
        failed_open,
        "kube-apiserver records the failed-open call: {e:#}"
    );
    assert_eq!(world.counts(cp), "11/11", "nothing could count it");
}

#[test]
fn verify_against_the_real_apiserver_agrees_after_counting() {
    let (_g, cp, world) = setup("rc-verify");
    let _w = Webhook::start(cp, &world, WEBHOOK_CONFIG, &[]);
    let run = world.alice_deletes(cp, "test-config2-three", &[]);
    assert!(run.ok, "{run}");
    world.wait_counts(cp, "10/11");
    let out = Command::new(env!("CARGO_BIN_EXE_fleet-delete-guard"))
        .args(["verify", "-o", "json"])
        .env("KUBECONFIG", cp.kubeconfig("admin"))
        .output()
        .expect("run verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "verify: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("lots"), "{stdout}");
}

// ---------------------------------------------------------------------------------------
// Conformance: the same conversations with the API double and the real apiserver; what
// the project relies on must be answered alike. Differences found are fixed in the
// double or listed in docs/src/real-cluster.md with why they are acceptable.

/// One request of a conversation: method, path, body; `{rv}` in path or body is the
/// resourceVersion the previous answer carried in metadata.resourceVersion, `{cont}`
/// its metadata.continue.
struct Step {
    what: &'static str,
    identity: &'static str,
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    content_type: &'static str,
    accept: &'static str,
}

fn step(what: &'static str, method: &'static str, path: &'static str, body: Option<Value>) -> Step {
    Step {
        what,
        identity: "admin",
        method,
        path,
        body,
        content_type: "application/json",
        accept: "application/json",
    }
}

/// What is compared: the status code, the Status reason, the kind answered, whether a
/// continue token came, and the `data` of an object when one was answered.
#[derive(Debug, PartialEq)]
struct Answer {
    code: u16,
    reason: Option<String>,
    kind: Option<String>,
    has_continue: bool,
    items: Option<usize>,
    data: Option<Value>,
    /// A watch's events, one line each: `ADDED c1`, `BOOKMARK initial-events-end`,
    /// `ERROR 410 Expired` (the stream ends with `timeoutSeconds`).
    events: Option<Vec<String>>,
}

/// The events of a watch response body (newline-delimited JSON), summarised.
fn watch_events(body: &[u8]) -> Vec<String> {
    body.split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let e: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
            let object = &e["object"];
            match e["type"].as_str().unwrap_or("?") {
                "ERROR" => format!(
                    "ERROR {} {}",
                    object["code"],
                    object["reason"].as_str().unwrap_or("")
                ),
                "BOOKMARK" => {
                    let end =
                        object["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true";
                    if end {
                        "BOOKMARK initial-events-end".to_string()
                    } else {
                        "BOOKMARK".to_string()
                    }
                }
                other => format!(
                    "{other} {}",
                    object["metadata"]["name"].as_str().unwrap_or("")
                ),
            }
        })
        .collect()
}

fn conversation(ns: &'static str) -> Vec<Step> {
    let cm = |name: &str, value: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns}, "data": {"v": value}})
    };
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "l1", "namespace": ns}, "spec": {"holderIdentity": "a"}});
    let gitrepo = json!({"apiVersion": "fleet.cattle.io/v1alpha1", "kind": "GitRepo",
        "metadata": {"name": "g1", "namespace": ns}, "spec": {"repo": "https://example.invalid/x"}});
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let cms = leak(format!("/api/v1/namespaces/{ns}/configmaps"));
    let c1 = leak(format!("/api/v1/namespaces/{ns}/configmaps/c1"));
    let leases = leak(format!(
        "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
    ));
    let l1 = leak(format!(
        "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/l1"
    ));
    let grs = leak(format!(
        "/apis/fleet.cattle.io/v1alpha1/namespaces/{ns}/gitrepos"
    ));
    let g1 = leak(format!(
        "/apis/fleet.cattle.io/v1alpha1/namespaces/{ns}/gitrepos/g1"
    ));
    let g1s = leak(format!(
        "/apis/fleet.cattle.io/v1alpha1/namespaces/{ns}/gitrepos/g1/status"
    ));
    let secrets = leak(format!("/api/v1/namespaces/{ns}/secrets"));
    vec![
        step("get absent", "GET", c1, None),
        step("create", "POST", cms, Some(cm("c1", "1"))),
        step("create again", "POST", cms, Some(cm("c1", "1"))),
        step("create c2", "POST", cms, Some(cm("c2", "2"))),
        step("create c3", "POST", cms, Some(cm("c3", "3"))),
        step(
            "put with a stale resourceVersion",
            "PUT",
            c1,
            Some({
                let mut o = cm("c1", "x");
                o["metadata"]["resourceVersion"] = json!("1");
                o
            }),
        ),
        Step {
            content_type: "application/merge-patch+json",
            ..step(
                "merge patch with a stale resourceVersion",
                "PATCH",
                c1,
                Some(json!({"metadata": {"resourceVersion": "1"}, "data": {"v": "y"}})),
            )
        },
        Step {
            content_type: "application/merge-patch+json",
            ..step(
                "merge patch",
                "PATCH",
                c1,
                Some(json!({"data": {"v": "z"}})),
            )
        },
        step(
            "list, one per page",
            "GET",
            leak(format!("{cms}?limit=1")),
            None,
        ),
        step(
            "list, next page",
            "GET",
            leak(format!("{cms}?limit=1&continue={{cont}}")),
            None,
        ),
        Step {
            accept: "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
            ..step("metadata-only list", "GET", cms, None)
        },
        Step {
            identity: "alice",
            ..step("RBAC denies alice", "GET", secrets, None)
        },
        step("lease create", "POST", leases, Some(lease.clone())),
        step("lease create again", "POST", leases, Some(lease.clone())),
        step(
            "lease update with a stale resourceVersion",
            "PUT",
            l1,
            Some({
                let mut l = lease.clone();
                l["metadata"]["resourceVersion"] = json!("1");
                l
            }),
        ),
        step("gitrepo create", "POST", grs, Some(gitrepo)),
        Step {
            content_type: "application/merge-patch+json",
            ..step(
                "status patch with the current resourceVersion",
                "PATCH",
                g1s,
                Some(
                    json!({"metadata": {"resourceVersion": "{rv}"}, "status": {"display": {"readyBundleDeployments": "1/1"}}}),
                ),
            )
        },
        Step {
            content_type: "application/merge-patch+json",
            ..step(
                "status patch with a stale resourceVersion",
                "PATCH",
                g1s,
                Some(
                    json!({"metadata": {"resourceVersion": "1"}, "status": {"display": {"readyBundleDeployments": "0/1"}}}),
                ),
            )
        },
        Step {
            content_type: "application/merge-patch+json",
            ..step(
                "status on the main resource is ignored",
                "PATCH",
                g1,
                Some(json!({"status": {"display": {"readyBundleDeployments": "9/9"}}})),
            )
        },
        step("get after", "GET", g1, None),
        step(
            "list with a continue token that is not one",
            "GET",
            leak(format!("{cms}?limit=1&continue=bm90LWEtdG9rZW4")),
            None,
        ),
        // Watches (each ends after a second): how a watcher resumes and starts. (A watch
        // from a resourceVersion whose history is gone gets 410 from the double; the real
        // one serves old resourceVersions from its watch cache for as long as the cache
        // holds them, so there is no answer to compare it with in a short test.)
        step(
            "watch from c1's creation: the changes since, in order",
            "GET",
            leak(format!(
                "{cms}?watch=1&resourceVersion={{created:c1}}&timeoutSeconds=1"
            )),
            None,
        ),
        step(
            "watch with initial events and no resourceVersionMatch",
            "GET",
            leak(format!(
                "{cms}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&timeoutSeconds=1"
            )),
            None,
        ),
        step(
            "watch with resourceVersionMatch and no sendInitialEvents",
            "GET",
            leak(format!(
                "{cms}?watch=1&resourceVersionMatch=NotOlderThan&timeoutSeconds=1"
            )),
            None,
        ),
        step(
            "watch with initial events, as kube's streaming list asks",
            "GET",
            leak(format!(
                "{cms}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan\
                 &allowWatchBookmarks=true&timeoutSeconds=1"
            )),
            None,
        ),
        step(
            "watch from the list's resourceVersion, nothing changes",
            "GET",
            leak(format!(
                "{cms}?watch=1&resourceVersion={{rv}}&allowWatchBookmarks=true&timeoutSeconds=1"
            )),
            None,
        ),
        step("delete", "DELETE", c1, None),
        step("delete again", "DELETE", c1, None),
    ]
}

async fn converse(
    clients: &std::collections::HashMap<&'static str, kube::Client>,
    steps: &[Step],
) -> Vec<(String, Answer)> {
    use http_body_util::BodyExt as _;
    let mut answers = Vec::new();
    let mut last = Value::Null;
    // The resourceVersion each object was created with (`{created:NAME}`).
    let mut created: Vec<(String, String)> = Vec::new();
    for s in steps {
        let rv = last["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let cont = last["metadata"]["continue"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let mut path = s.path.replace("{cont}", &cont).replace("{rv}", &rv);
        for (name, rv) in &created {
            path = path.replace(&format!("{{created:{name}}}"), rv);
        }
        let body = s
            .body
            .as_ref()
            .map(|b| b.to_string().replace("{rv}", &rv))
            .unwrap_or_default();
        let req = http::Request::builder()
            .method(s.method)
            .uri(&path)
            .header("content-type", s.content_type)
            .header("accept", s.accept)
            .body(kube::client::Body::from(body.into_bytes()))
            .expect("request");
        let resp = clients[s.identity].send(req).await.expect("send");
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let watching = path.contains("watch=1") && code == 200;
        let v: Value = if watching {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        let answer = Answer {
            events: watching.then(|| watch_events(&bytes)),
            code,
            reason: v["reason"].as_str().map(String::from),
            kind: v["kind"].as_str().map(String::from),
            has_continue: v["metadata"]["continue"]
                .as_str()
                .is_some_and(|c| !c.is_empty()),
            items: v["items"].as_array().map(|a| a.len()),
            data: v
                .get("data")
                .cloned()
                .or_else(|| v.get("status").filter(|_| v["kind"] == "GitRepo").cloned()),
        };
        if code == 201 {
            if let (Some(name), Some(rv)) = (
                v["metadata"]["name"].as_str(),
                v["metadata"]["resourceVersion"].as_str(),
            ) {
                created.push((name.to_string(), rv.to_string()));
            }
        }
        if !watching && v["kind"] != "Status" {
            last = v;
        }
        answers.push((s.what.to_string(), answer));
    }
    answers
}

async fn kube_client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("config");
    kube::Client::try_from(config).expect("client")
}

/// Every step answered alike by kube-apiserver and the double; else each difference.
fn assert_answered_alike<W: std::fmt::Display, A: PartialEq + std::fmt::Debug>(
    real: &[(W, A)],
    double: &[(W, A)],
) {
    let differences: Vec<String> = real
        .iter()
        .zip(double)
        .filter(|((_, r), (_, d))| r != d)
        .map(|((what, r), (_, d))| {
            format!("{what}:\n  kube-apiserver: {r:?}\n  API double:     {d:?}")
        })
        .collect();
    assert!(
        differences.is_empty(),
        "the double differs from kube-apiserver:\n{}",
        differences.join("\n")
    );
}

/// One request of [`cel_errors`]: the status code, the Status reason, and whether the
/// message says what became of the expression (`compilation failed`, `resulted in
/// error`).
async fn send_raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Option<String>, bool) {
    use http_body_util::BodyExt as _;
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(kube::client::Body::from(
            body.map(Value::to_string).unwrap_or_default().into_bytes(),
        ))
        .expect("request");
    let resp = client.send(req).await.expect("send");
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let message = v["message"].as_str().unwrap_or("");
    (
        code,
        v["reason"].as_str().map(String::from),
        message.contains("compilation failed") || message.contains("resulted in error"),
    )
}

/// A ValidatingWebhookConfiguration for DELETEs of ConfigMaps in `ns` with one match
/// condition, calling a URL nothing listens on (a condition that cannot be evaluated
/// means the webhook is never called).
fn cel_configuration(name: &str, ns: &str, expression: &str, failure_policy: &str) -> Value {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
    "metadata": {"name": name},
    "webhooks": [{
        "name": format!("{name}.example.com"),
        "clientConfig": {"url": "https://127.0.0.1:1/never"},
        "rules": [{"operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"],
            "resources": ["configmaps"], "scope": "Namespaced"}],
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
        "failurePolicy": failure_policy,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": 2,
        "matchConditions": [{"name": "broken", "expression": expression}]
    }]})
}

/// The match-condition errors a webhook configuration can meet, as one server answers
/// them. Configurations take effect a moment after they are written (kube-apiserver's
/// informer), so each effect is awaited with a dry run before the real request.
async fn cel_errors(
    client: &kube::Client,
    ns: &str,
) -> Vec<(&'static str, (u16, Option<String>, bool))> {
    const VWCS: &str = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";
    let cms = format!("/api/v1/namespaces/{ns}/configmaps");
    let c1 = format!("{cms}/c1");
    // `labels` is absent from c1: looking a key up in it fails at run time.
    let fails_at_run_time = "oldObject.metadata.labels['fleet'] == 'x'";
    let mut out = Vec::new();
    out.push((
        "a configuration whose condition does not compile",
        send_raw(
            client,
            "POST",
            VWCS,
            Some(&cel_configuration(
                "cel-syntax",
                ns,
                "oldObject.metadata.name ==",
                "Fail",
            )),
        )
        .await,
    ));
    out.push((
        "a configuration whose condition fails at run time, failurePolicy Fail",
        send_raw(
            client,
            "POST",
            VWCS,
            Some(&cel_configuration(
                "cel-fail",
                ns,
                fails_at_run_time,
                "Fail",
            )),
        )
        .await,
    ));
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1", "namespace": ns}});
    out.push((
        "a ConfigMap",
        send_raw(client, "POST", &cms, Some(&cm)).await,
    ));
    let dry_run = format!("{c1}?dryRun=All");
    let deadline = Instant::now() + WAIT;
    while send_raw(client, "DELETE", &dry_run, None).await.0 == 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out.push((
        "its deletion, failurePolicy Fail",
        send_raw(client, "DELETE", &c1, None).await,
    ));
    out.push((
        "the Fail configuration deleted",
        send_raw(client, "DELETE", &format!("{VWCS}/cel-fail"), None).await,
    ));
    out.push((
        "the same condition, failurePolicy Ignore",
        send_raw(
            client,
            "POST",
            VWCS,
            Some(&cel_configuration(
                "cel-ignore",
                ns,
                fails_at_run_time,
                "Ignore",
            )),
        )
        .await,
    ));
    while send_raw(client, "DELETE", &dry_run, None).await.0 != 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out.push((
        "its deletion, failurePolicy Ignore",
        send_raw(client, "DELETE", &c1, None).await,
    ));
    out.push((
        "the Ignore configuration deleted",
        send_raw(client, "DELETE", &format!("{VWCS}/cel-ignore"), None).await,
    ));
    out
}

/// kube-apiserver refuses a configuration whose CEL match condition does not compile (422
/// `Invalid`); one that fails at run time refuses the request under `failurePolicy:
/// Fail` as 403 `Forbidden` (`… is forbidden: expression '…' resulted in error: …`)
/// without calling the webhook, and lets it through under `Ignore` — with no `failed-open`
/// audit annotation, as if the webhook did not match. The double answers alike (before
/// this test it answered 500 `InternalError`, "failed calling webhook", and annotated
/// `failed-open`).
#[test]
fn match_condition_errors_are_answered_as_kube_apiserver_does() {
    let _g = serial();
    let cp = plane();
    let ns = "cel-errors";
    cp.apply(&[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // Whether the audit event of the deletion under `Ignore` says `failed-open`.
    let failed_open = |events: Vec<Value>| -> Option<bool> {
        events
            .into_iter()
            .rfind(|e| {
                e["verb"] == "delete"
                    && e["stage"] == "ResponseComplete"
                    && e["objectRef"]["namespace"] == ns
                    && e["objectRef"]["name"] == "c1"
                    && e["responseStatus"]["code"] == 200
                    && !e["requestURI"].as_str().unwrap_or("").contains("dryRun")
            })
            .map(|e| {
                e["annotations"].as_object().is_some_and(|a| {
                    a.keys()
                        .any(|k| k.starts_with("failed-open.validating.webhook.admission.k8s.io/"))
                })
            })
    };
    let (real, double, double_failed_open) = rt.block_on(async {
        let real = cel_errors(&kube_client(&cp.kubeconfig("admin")).await, ns).await;
        let double = kube_api_double::ApiDouble::start(kube_api_double::Options {
            https: true,
            ..Default::default()
        })
        .await;
        double.add_token("admin-token", kube_api_double::UserInfo::admin("admin"));
        double
            .seed(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}}))
            .expect("namespace");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin");
        double
            .write_kubeconfig_for(&path, "admin-token", ns)
            .expect("kubeconfig");
        let answers = cel_errors(&kube_client(&path).await, ns).await;
        let double_failed_open = failed_open(double.audit_events());
        double.shutdown().await;
        (real, answers, double_failed_open)
    });
    for ((what, r), (_, d)) in real.iter().zip(&double) {
        eprintln!("{what:72} real {r:?} | double {d:?}");
    }
    // The audit log is written a moment after the answer.
    let deadline = Instant::now() + WAIT;
    let real_failed_open = loop {
        match failed_open(cp.audit_events()) {
            Some(said) => break said,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            None => panic!("no audit event of the deletion under Ignore"),
        }
    };
    eprintln!("failed-open annotation under Ignore: real {real_failed_open}, double {double_failed_open:?}");
    assert_eq!(
        Some(real_failed_open),
        double_failed_open,
        "the Ignore deletion's audit annotations"
    );
    let real_codes: Vec<u16> = real.iter().map(|(_, a)| a.0).collect();
    assert_eq!(
        real_codes[0], 422,
        "kube-apiserver compiles conditions: {real:?}"
    );
    assert!(
        real[3].1 .0 == 403 && real[3].1 .2,
        "Fail refuses as Forbidden, saying why: {real:?}"
    );
    assert_eq!(real[6].1 .0, 200, "Ignore lets it through: {real:?}");
    assert_answered_alike(&real, &double);
}

#[test]
fn the_api_double_answers_the_projects_conversations_as_kube_apiserver_does() {
    let _g = serial();
    let cp = plane();
    let ns = "conformance";
    cp.apply(&[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})]);
    let steps = conversation(ns);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (real, double) = rt.block_on(async {
        let mut real_clients = std::collections::HashMap::new();
        real_clients.insert("admin", kube_client(&cp.kubeconfig("admin")).await);
        real_clients.insert("alice", kube_client(&cp.kubeconfig("alice")).await);
        let real = converse(&real_clients, &steps).await;

        let double = kube_api_double::ApiDouble::start(kube_api_double::Options {
            https: true,
            extra_resources: vec![kube_api_double::ResourceDef::builtin(
                "coordination.k8s.io",
                "v1",
                "leases",
                "Lease",
            )],
            ..Default::default()
        })
        .await;
        double.add_token("admin-token", kube_api_double::UserInfo::admin("admin"));
        double.add_token(
            "alice-token",
            kube_api_double::UserInfo::new("alice", &["system:authenticated"]),
        );
        double.enforce_rbac(true);
        double
            .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
            .expect("namespace");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut double_clients = std::collections::HashMap::new();
        for (who, token) in [("admin", "admin-token"), ("alice", "alice-token")] {
            let path = dir.path().join(who);
            double
                .write_kubeconfig_for(&path, token, ns)
                .expect("kubeconfig");
            double_clients.insert(who, kube_client(&path).await);
        }
        let answers = converse(&double_clients, &steps).await;
        double.shutdown().await;
        (real, answers)
    });
    for ((what, r), (_, d)) in real.iter().zip(&double) {
        eprintln!(
            "{what:48} real {:3} {:?} | double {:3} {:?}",
            r.code, r.reason, d.code, d.reason
        );
    }
    // The conversation reaches what it is meant to: NotFound, AlreadyExists, Conflict on
    // stale resourceVersions (objects, Leases, status), Forbidden, pagination.
    let codes: Vec<u16> = real.iter().map(|(_, a)| a.code).collect();
    for code in [404, 409, 403, 201, 200] {
        assert!(codes.contains(&code), "no {code} in {codes:?}");
    }
    assert!(
        real.iter().any(|(_, a)| a.has_continue),
        "a continue token was answered"
    );
    // … and the watch answers a watcher depends on: a resumption's changes, the end of
    // a streaming list's initial events.
    let events: Vec<&String> = real
        .iter()
        .filter_map(|(_, a)| a.events.as_ref())
        .flatten()
        .collect();
    for event in ["MODIFIED c1", "ADDED c2", "BOOKMARK initial-events-end"] {
        assert!(
            events.iter().any(|e| *e == event),
            "no {event} in {events:?}"
        );
    }
    assert_answered_alike(&real, &double);
}

#[test]
fn the_breaker_refuses_fleets_agent_records_a_lease_and_deleting_the_lease_closes_it() {
    let (_g, cp, world) = setup("rc-breaker");
    // Fleet's agent: its ServiceAccount, with the rights it has in that namespace.
    cp.apply(&[
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "fleet-agent", "namespace": NS}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "fleet-agent-edit", "namespace": world.ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "ServiceAccount", "name": "fleet-agent", "namespace": NS}]}),
    ]);
    let agent = cp.service_account_kubeconfig(NS, "fleet-agent");
    let agent_delete = |name: &str| {
        let mut c = cp.kubectl("admin");
        c.env("KUBECONFIG", &agent);
        kubectl_run(c.args(["delete", "configmap", name, "-n", &world.ns]))
    };
    let _w = Webhook::start_overlay(
        cp,
        &world,
        "breaker",
        WEBHOOK_CONFIG,
        &["--breaker", "enforce", "--breaker-max-deletions", "3"],
    );
    for name in ["test-config1-one", "test-config1-two", "test-config2-one"] {
        let run = agent_delete(name);
        assert!(run.ok, "{run}");
    }
    let run = agent_delete("test-config2-two");
    assert!(!run.ok, "the fourth is refused: {run}");
    assert!(
        run.stderr
            .contains("mass-deletion breaker open for Fleet GitRepo fleet-local/lots"),
        "{run}"
    );
    assert!(cp.kubectl_ok(
        "admin",
        &["get", "configmap", "test-config2-two", "-n", &world.ns]
    ));
    // The open breaker is a Lease in the real apiserver, shared by every replica.
    let lease = "breaker-gitrepo.fleet-local.lots";
    assert!(cp.kubectl_ok("admin", &["get", "lease", lease, "-n", NS]));
    // The reset: an admin deletes the Lease; the agent's deletions pass again.
    cp.kubectl_stdout("admin", &["delete", "lease", lease, "-n", NS]);
    let start = Instant::now();
    loop {
        let run = agent_delete("test-config2-two");
        if run.ok {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "still refused after the reset: {run}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The Helm chart with the real helm v4 (scripts/build-helm.sh) into a control plane of
/// its own (deploy/'s objects already live in the shared one): install, upgrade with
/// another policy, uninstall. `--wait` is not used: nothing runs pods here.
#[test]
fn the_helm_chart_installs_upgrades_and_uninstalls_with_the_real_helm() {
    let _g = serial();
    let helm_bin = helm::require();
    let kubectl = kubectl::find().expect("kubectl");
    let cp = ControlPlane::start(kubectl);
    cp.apply(&[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})]);
    let home = cp.path("helm-home");
    let run_helm = |verb: &[&str], extra: &[&str]| {
        let mut c = helm::command(&helm_bin, &home);
        c.args(verb)
            .arg(helm::RELEASE)
            .args(["--namespace", NS, "--kubeconfig"])
            .arg(cp.kubeconfig("admin"))
            .args(extra);
        let out = c.output().expect("run helm");
        assert!(
            out.status.success(),
            "helm {verb:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let chart = helm::chart_dir().display().to_string();
    run_helm(&["install"], &[&chart]);
    assert!(cp.kubectl_ok(
        "admin",
        &["get", "validatingwebhookconfiguration", WEBHOOK_CONFIG]
    ));
    let policy = || {
        cp.kubectl_stdout(
            "admin",
            &[
                "get",
                "deployment",
                "fleet-delete-guard",
                "-n",
                NS,
                "-o",
                "jsonpath={.spec.template.spec.containers[0].env[?(@.name==\"FLEET_DELETE_GUARD_POLICY\")].value}",
            ],
        )
    };
    assert_eq!(policy(), "warn");
    run_helm(&["upgrade"], &[&chart, "--set", "policy=deny"]);
    assert_eq!(policy(), "deny");
    let status = run_helm(&["status"], &["-o", "json"]);
    let status: Value = serde_json::from_str(&status).expect("helm status JSON");
    assert_eq!(status["version"], 2, "{status:#}");
    run_helm(&["uninstall"], &[]);
    assert!(!cp.kubectl_ok(
        "admin",
        &["get", "validatingwebhookconfiguration", WEBHOOK_CONFIG]
    ));
    assert!(!cp.kubectl_ok(
        "admin",
        &["get", "deployment", "fleet-delete-guard", "-n", NS]
    ));
}

// --- the breaker's shared window against the real apiserver (issue 25) ---------------

/// The AdmissionReview of alice deleting ConfigMap `name` of `world` as it is now.
fn delete_review(cp: &ControlPlane, world: &World, name: &str, uid: &str) -> Value {
    let cm: Value = serde_json::from_str(&cp.kubectl_stdout(
        "admin",
        &["get", "configmap", name, "-n", &world.ns, "-o", "json"],
    ))
    .expect("configmap JSON");
    let mut review = fixture("admissionreview-delete-configmap.json");
    review["request"]["uid"] = uid.into();
    review["request"]["name"] = name.into();
    review["request"]["namespace"] = world.ns.clone().into();
    review["request"]["oldObject"] = cm;
    review["request"]["userInfo"] =
        json!({"username": "alice", "groups": ["system:authenticated"]});
    review
}

/// Each replica's answer to its review, the `i`-th review sent to `replicas[i]`'s
/// webhook port with curl (in parallel), trusting `ca`.
fn post_all(ca: &Path, sends: &[(u16, String)]) -> Vec<bool> {
    let children: Vec<Child> = sends
        .iter()
        .map(|(port, body)| {
            let mut c = Command::new("curl");
            c.args(["-sS", "--max-time", "10", "--cacert"])
                .arg(ca)
                .args([
                    "-H",
                    "Content-Type: application/json",
                    "--data-binary",
                    body,
                ])
                .arg(format!("https://127.0.0.1:{port}/validate"))
                .stdout(Stdio::piped());
            c.spawn().expect("curl")
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().expect("curl output");
            let v: Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
            v["response"]["allowed"] == true
        })
        .collect()
}

#[test]
fn a_burst_spread_over_three_replicas_trips_within_max_deletions_plus_three_with_the_real_leases() {
    const R: usize = 3;
    const MAX: usize = 5;
    let (_guard, cp, world) = setup("breaker-burst");
    let flags = [
        "--breaker",
        "enforce",
        "--breaker-max-deletions",
        "5",
        "--breaker-max-fraction",
        "0",
    ];
    let replicas: Vec<Webhook> = [
        "fleet-delete-guard-a",
        "fleet-delete-guard-b",
        "fleet-delete-guard-c",
    ]
    .iter()
    .map(|config| Webhook::start(cp, &world, config, &flags))
    .collect();
    let ca_b64 = cp.kubectl_stdout(
        "admin",
        &[
            "get",
            "secret",
            "fleet-delete-guard-tls",
            "-n",
            NS,
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ],
    );
    let ca = cp.path("breaker-burst-ca.pem");
    {
        use base64::Engine as _;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(ca_b64.trim())
            .expect("ca.crt base64");
        std::fs::write(&ca, pem).expect("write CA");
    }
    // Reviews of deletions of lots' ConfigMaps (reviewed, not performed), 3 at a time,
    // one to each replica.
    let names = ["test-config1-one", "test-config1-two", "test-config2-one"];
    let mut allowed = Vec::new();
    for round in 0..6 {
        let sends: Vec<(u16, String)> = replicas
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let review = delete_review(cp, &world, names[i], &format!("burst-{round}-{i}"));
                (w.port, review.to_string())
            })
            .collect();
        allowed.extend(post_all(&ca, &sends));
    }
    let first_refused = allowed.iter().position(|a| !*a);
    let logs = || {
        replicas
            .iter()
            .map(Webhook::logs)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        first_refused.is_some_and(|i| i < MAX + R),
        "tripped at deletion {:?}, not within {MAX} + {R}: {allowed:?}\n{}",
        first_refused.map(|i| i + 1),
        logs()
    );
    assert!(
        allowed.iter().filter(|a| **a).count() <= MAX + R,
        "{allowed:?}"
    );
    assert!(allowed[MAX + R..].iter().all(|a| !*a), "{allowed:?}");
    eprintln!(
        "tripped at deletion {}, {} admitted",
        first_refused.map_or(0, |i| i + 1),
        allowed.iter().filter(|a| **a).count()
    );
    // The counts Lease holds each replica's annotation; none of them is degraded.
    let lease: Value = serde_json::from_str(&cp.kubectl_stdout(
        "admin",
        &[
            "get",
            "lease",
            "fleet-delete-guard-breaker-counts",
            "-n",
            NS,
            "-o",
            "json",
        ],
    ))
    .expect("lease JSON");
    let keys: Vec<&String> = lease["metadata"]["annotations"]
        .as_object()
        .map(|a| a.keys().filter(|k| k.contains("/counts.")).collect())
        .unwrap_or_default();
    assert_eq!(keys.len(), R, "{lease}");
    for w in &replicas {
        let text = w.metrics_text();
        assert!(
            text.contains("fleet_delete_guard_breaker_degraded 0"),
            "{text}"
        );
    }
    // Reset, and the counts go too (World::seed clears them as well).
    for lease in [
        "breaker-gitrepo.fleet-local.lots",
        "fleet-delete-guard-breaker-counts",
    ] {
        let _ = cp.kubectl_ok(
            "admin",
            &["delete", "lease", lease, "-n", NS, "--ignore-not-found"],
        );
    }
}
// --- webhook configuration tamper evidence (src/webhook_config/) ---------------------

const INTACT: &str = "fleet_delete_guard_webhook_configuration_intact{reason=\"none\"} 1";

impl Webhook {
    fn wait_metric(&self, line: &str) {
        let start = Instant::now();
        while !self.metrics_text().contains(line) {
            assert!(
                start.elapsed() < WAIT,
                "no {line} in\n{}\nlogs:\n{}",
                self.metrics_text(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn patch_configuration(cp: &ControlPlane, patch: Value) {
    cp.kubectl_stdout(
        "admin",
        &[
            "patch",
            "validatingwebhookconfiguration",
            WEBHOOK_CONFIG,
            "--type=json",
            "-p",
            &patch.to_string(),
        ],
    );
}

#[test]
fn narrowing_switching_to_fail_and_deleting_the_configuration_are_reported_and_audit_names_who() {
    let (_g, cp, world) = setup("rc-tamper");
    let w = Webhook::start(cp, &world, WEBHOOK_CONFIG, &[]);
    w.wait_metric(INTACT);

    patch_configuration(
        cp,
        json!([{"op": "replace", "path": "/webhooks/0/rules/0/resources", "value": ["configmaps"]}]),
    );
    w.wait_metric("fleet_delete_guard_webhook_configuration_intact{reason=\"rules_narrowed\"} 0");
    patch_configuration(
        cp,
        json!([
            {"op": "replace", "path": "/webhooks/0/rules/0/resources", "value": ["*"]},
            {"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Fail"}
        ]),
    );
    w.wait_metric(
        "fleet_delete_guard_webhook_configuration_intact{reason=\"failure_policy_changed\"} 0",
    );
    assert!(
        !w.metrics_text().contains("reason=\"rules_narrowed\""),
        "only the current reasons"
    );
    cp.kubectl_stdout(
        "admin",
        &["delete", "validatingwebhookconfiguration", WEBHOOK_CONFIG],
    );
    w.wait_metric("fleet_delete_guard_webhook_configuration_intact{reason=\"deleted\"} 0");
    let notes = [
        "no longer receives DELETE */*/*",
        "failurePolicy is Fail, not Ignore",
        "the configuration was deleted",
    ];
    cp.wait_for(
        "a WebhookConfigurationChanged Event for each change",
        || {
            let events = cp.kubectl_stdout(
                "admin",
                &[
                    "get",
                    "events.events.k8s.io",
                    "-n",
                    "default",
                    "--field-selector",
                    "reason=WebhookConfigurationChanged",
                    "-o",
                    "jsonpath={range .items[*]}{.type}: {.note}{\"\\n\"}{end}",
                ],
            );
            notes.iter().all(|n| {
                events
                    .lines()
                    .any(|l| l.starts_with("Warning:") && l.contains(n))
            })
        },
    );
    // Repair off: the admin's deletion stands. The real audit log says who.
    assert!(!cp.kubectl_ok(
        "admin",
        &["get", "validatingwebhookconfiguration", WEBHOOK_CONFIG]
    ));
    wait_audit(cp, WEBHOOK_CONFIG, "delete");
    let out = Command::new(env!("CARGO_BIN_EXE_fleet-delete-guard"))
        .arg("audit")
        .arg(cp.audit_log())
        .args(["--output", "json"])
        .output()
        .expect("audit");
    assert!(out.status.success());
    let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|r: &Value| r["row"] == "guard" && r["name"] == WEBHOOK_CONFIG)
        .collect();
    let verbs: Vec<&str> = rows.iter().filter_map(|r| r["verb"].as_str()).collect();
    assert!(verbs.ends_with(&["patch", "patch", "delete"]), "{rows:#?}");
    let delete = rows.last().expect("the deletion");
    assert_eq!(delete["kind"], "ValidatingWebhookConfiguration");
    assert_eq!(delete["result"], "succeeded");
    assert!(
        delete["user"].as_str().is_some_and(|u| !u.is_empty()),
        "{delete}"
    );
}

#[test]
fn with_repair_on_a_deleted_configuration_is_re_created_and_reviews_resume() {
    let (_g, cp, world) = setup("rc-restore");
    // The rights of deploy/restore-webhook-configuration/.
    let rbac: Vec<Value> = kubectl::render(&cp.kubectl, "restore-webhook-configuration")
        .into_iter()
        .filter(|o| o["metadata"]["name"] == "fleet-delete-guard-restore-webhook-config")
        .collect();
    assert_eq!(rbac.len(), 2, "ClusterRole and binding");
    cp.apply(&rbac);
    let w = Webhook::start(
        cp,
        &world,
        WEBHOOK_CONFIG,
        &[
            "--restore-webhook-configuration",
            "--restore-webhook-configuration-interval",
            "1",
        ],
    );
    w.wait_metric(INTACT);
    cp.kubectl_stdout(
        "admin",
        &["delete", "validatingwebhookconfiguration", WEBHOOK_CONFIG],
    );
    w.wait_metric("fleet_delete_guard_webhook_configuration_restores_total{result=\"restored\"} 1");
    w.wait_metric(INTACT);
    cp.wait_for("the re-created configuration", || {
        cp.kubectl_ok(
            "admin",
            &["get", "validatingwebhookconfiguration", WEBHOOK_CONFIG],
        )
    });
    // kube-apiserver calls the webhook again (the re-created caBundle trusts it).
    w.wait_called(cp, &world);
    cp.wait_for("the audit event of the re-creation by the webhook", || {
        audit_events_for(cp, WEBHOOK_CONFIG, "create")
            .iter()
            .any(|e| e["user"]["username"] == SA_USER)
    });
    for o in &rbac {
        let kind = o["kind"].as_str().unwrap_or_default().to_lowercase();
        let _ = cp.kubectl_ok(
            "admin",
            &["delete", &kind, "fleet-delete-guard-restore-webhook-config"],
        );
    }
}
// --- end webhook configuration tamper evidence ----------------------------------------
