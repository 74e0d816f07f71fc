//! End to end with the real kubectl: the API double plays kube-apiserver (discovery,
//! RBAC from deploy/, the ValidatingWebhookConfiguration from deploy/ called on DELETE
//! with its selectors, matchConditions, timeout and failurePolicy), the real
//! `fleet-delete-guard serve` binary bootstraps its certificate into a Secret, writes
//! the caBundle and counts deletions, and kubectl (as user alice) deletes.
//!
//! Without kubectl these tests say so and pass, except in CI (`CI` set), where they fail.
//! `E2E_FLEET_DELETE_GUARD_BIN` runs them against another build of the binary (CI: the
//! release binary of the image).

#[path = "support/kubectl.rs"]
mod kubectl;
mod support;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use kube_api_double::{gvr, ApiDouble, Options, RequestRecord, UserInfo, Verb};
use serde_json::{json, Value};

const NS: &str = "cattle-fleet-system";
const SERVICE: &str = "fleet-delete-guard";
const WEBHOOK: &str = "delete-guard.fleet.cattle.io";
const SA_TOKEN: &str = "fleet-delete-guard-sa-token";
const SA_USER: &str = "system:serviceaccount:cattle-fleet-system:fleet-delete-guard";
const ALICE_TOKEN: &str = "alice-token";
const AGENT_TOKEN: &str = "fleet-agent-token";
const WAIT: Duration = Duration::from_secs(20);
const JSONPATH_COUNTS: &str =
    "jsonpath={.status.resourceCounts.ready}/{.status.resourceCounts.desiredReady}";

/// The API double with deploy/ installed, Fleet's worked example seeded, RBAC enforced.
struct Cluster {
    double: ApiDouble,
    kubectl: PathBuf,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// `None` (skip) when kubectl is missing outside CI.
    async fn start(test: &str) -> Option<Cluster> {
        Self::start_with(test, |_| {}).await
    }

    /// Like [`Cluster::start`], with a chance to edit the rendered deploy/ objects first.
    async fn start_with(test: &str, edit: impl FnOnce(&mut Vec<Value>)) -> Option<Cluster> {
        Self::start_overlay(test, "", edit).await
    }

    /// With the overlay `deploy/<sub>` installed instead of deploy/.
    async fn start_overlay(
        test: &str,
        sub: &str,
        edit: impl FnOnce(&mut Vec<Value>),
    ) -> Option<Cluster> {
        let kubectl = kubectl::require(test)?;
        support::init_logging();
        fleet_delete_guard::tls::install_crypto_provider();
        // HTTPS: kubectl sends its token (and so its user) only over TLS. Leases: the
        // breaker's shared state.
        let double = ApiDouble::start(Options {
            https: true,
            extra_resources: vec![kube_api_double::ResourceDef::builtin(
                "coordination.k8s.io",
                "v1",
                "leases",
                "Lease",
            )],
            ..Options::default()
        })
        .await;
        let mut objects = kubectl::render(&kubectl, sub);
        edit(&mut objects);
        for obj in objects {
            double.seed(obj).expect("seed deploy/ object");
        }
        support::fleet::seed(&double);
        // The humans and Fleet's agent get what clusters give them.
        support::grant_cluster_admin(
            &double,
            json!([
                {"kind": "User", "name": "alice"},
                {"kind": "ServiceAccount", "name": "fleet-agent", "namespace": NS}]),
        );
        double.add_token(
            ALICE_TOKEN,
            UserInfo::new("alice", &["system:authenticated"]),
        );
        double.add_token(AGENT_TOKEN, UserInfo::service_account(NS, "fleet-agent"));
        double.add_token(SA_TOKEN, UserInfo::service_account(NS, SERVICE));
        double.enforce_rbac(true);
        let dir = tempfile::tempdir().expect("tempdir");
        double
            .write_kubeconfig_for(dir.path().join("alice.kubeconfig"), ALICE_TOKEN, "default")
            .expect("kubeconfig");
        double
            .write_kubeconfig_for(dir.path().join("agent.kubeconfig"), AGENT_TOKEN, "default")
            .expect("kubeconfig");
        double
            .write_kubeconfig_for(dir.path().join("webhook.kubeconfig"), SA_TOKEN, NS)
            .expect("kubeconfig");
        Some(Cluster {
            double,
            kubectl,
            dir,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn kubectl_as(&self, kubeconfig: &str, args: &[&str]) -> Command {
        let mut c = kubectl::command(
            &self.kubectl,
            &self.path(kubeconfig),
            &self.path("kubectl-cache"),
        );
        c.args(args);
        c
    }

    /// kubectl as alice, a cluster admin.
    async fn alice(&self, args: &[&str]) -> kubectl::Run {
        kubectl::run(self.kubectl_as("alice.kubeconfig", args)).await
    }

    /// `ready/desiredReady` of GitRepo fleet-local/lots through kubectl.
    async fn counts(&self) -> String {
        let run = self
            .alice(&[
                "get",
                "gitrepo",
                "lots",
                "-n",
                "fleet-local",
                "-o",
                JSONPATH_COUNTS,
            ])
            .await;
        assert!(run.ok, "{run}");
        run.stdout
    }

    /// Polls kubectl until the GitRepo reads `want`; returns how long it took.
    async fn wait_counts(&self, want: &str) -> Duration {
        let start = Instant::now();
        loop {
            let have = self.counts().await;
            if have == want {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < WAIT,
                "GitRepo still reads {have}, not {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Requests RBAC refused to the webhook's ServiceAccount: a verb missing from deploy/.
    fn refused_to_webhook(&self) -> Vec<RequestRecord> {
        self.double
            .forbidden_requests()
            .into_iter()
            .filter(|r| r.user.as_deref() == Some(SA_USER))
            .collect()
    }

    fn assert_rbac_was_enough(&self) {
        let refused: Vec<String> = self
            .refused_to_webhook()
            .iter()
            .map(|r| {
                format!(
                    "{} {}{}",
                    r.method,
                    r.path,
                    if r.query.is_empty() {
                        String::new()
                    } else {
                        format!("?{}", r.query)
                    }
                )
            })
            .collect();
        assert!(
            refused.is_empty(),
            "deploy/'s RBAC refused requests the webhook needs: {refused:#?}"
        );
    }

    fn audit_of(&self, name: &str) -> Value {
        self.double
            .audit_events()
            .into_iter()
            .rev()
            .find(|e| e["objectRef"]["name"] == name)
            .unwrap_or_else(|| panic!("no audit event for {name}"))
    }
}

/// `fleet-delete-guard serve` as a child process, as deploy/ configures it (certificate
/// bootstrap into the Secret, caBundle sync), connected to the double as its
/// ServiceAccount.
struct Webhook {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

/// The binary under test: this build's, or `$E2E_FLEET_DELETE_GUARD_BIN` (CI points it
/// at the release binary scripts/build-release.sh built for the image).
fn binary() -> PathBuf {
    match std::env::var_os("E2E_FLEET_DELETE_GUARD_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_fleet-delete-guard")),
    }
}

impl Webhook {
    async fn start(c: &Cluster, instance: &str, extra: &[&str]) -> Webhook {
        let w = Self::spawn(c, instance, extra).await;
        w.wait_ready().await;
        c.double.set_service_endpoint(NS, SERVICE, w.addr);
        w
    }

    async fn spawn(c: &Cluster, instance: &str, extra: &[&str]) -> Webhook {
        let cert_dir = c.path(&format!("certs-{instance}"));
        let mut cmd = Command::new(binary());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("FLEET_DELETE_GUARD_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("serve")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .args([
                "--cert-secret",
                "fleet-delete-guard-tls",
                "--webhook-config",
                "fleet-delete-guard",
            ])
            .arg("--cert-dir")
            .arg(&cert_dir)
            .args(["--tls-reload-interval", "0.2", "--shutdown-grace", "2"])
            .args(extra)
            .env("KUBECONFIG", c.path("webhook.kubeconfig"))
            .env("POD_NAMESPACE", NS)
            .env("POD_NAME", format!("fleet-delete-guard-{instance}"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start fleet-delete-guard");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<(SocketAddr, SocketAddr)>();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["message"] == "fleet-delete-guard serving" {
                        let addr = |k: &str| v[k].as_str().and_then(|s| s.parse().ok());
                        if let (Some(a), Some(m)) = (addr("listen"), addr("metrics_listen")) {
                            let _ = tx.send((a, m));
                        }
                    }
                }
                sink.lock().expect("logs").push(line);
            }
        });
        let got = tokio::task::spawn_blocking(move || rx.recv_timeout(WAIT))
            .await
            .expect("join");
        let Ok((addr, metrics)) = got else {
            let _ = child.kill();
            panic!(
                "fleet-delete-guard did not start:\n{}",
                logs.lock().expect("logs").join("\n")
            );
        };
        Webhook {
            child,
            addr,
            metrics,
            logs,
        }
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let url = format!("http://{}/readyz", self.metrics);
        let start = Instant::now();
        loop {
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(start.elapsed() < WAIT, "not ready:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn logs(&self) -> String {
        self.logs.lock().expect("logs").join("\n")
    }

    /// SIGTERM, and wait for the exit.
    #[allow(unsafe_code)] // kill(2)
    async fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        while self.child.try_wait().expect("wait").is_none() {
            assert!(start.elapsed() < WAIT, "fleet-delete-guard did not stop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn kubectl_delete_prints_the_warning_and_the_gitrepo_reads_10_of_11_at_once() {
    let Some(c) = Cluster::start("kubectl_delete_prints_the_warning").await else {
        return;
    };
    let w = Webhook::start(&c, "a", &[]).await;
    assert_eq!(c.counts().await, "11/11");

    let run = c.alice(&["delete", "configmap", "test-config2-one"]).await;
    assert!(run.ok, "{run}");
    assert!(
        run.stdout
            .contains("configmap \"test-config2-one\" deleted"),
        "{run}"
    );
    assert!(
        run.stderr.contains(
            "Warning: configmap default/test-config2-one is managed by Fleet GitRepo fleet-local/lots (bundle lots-config2)."
        ),
        "kubectl prints the webhook's warning:\n{run}"
    );
    assert!(
        run.stderr
            .contains("Warning: Fleet will report it Missing in the GitRepo status"),
        "{run}"
    );
    let lag = c.wait_counts("10/11").await;
    assert!(
        lag < Duration::from_secs(5),
        "counted in {lag:?}, not after Fleet's ~10 s"
    );

    // The review was the one kube-apiserver sends.
    let calls = c.double.admission_calls();
    assert_eq!(calls.len(), 1, "one review for one deletion");
    let request = &calls[0].review["request"];
    assert_eq!(request["operation"], "DELETE");
    assert_eq!(request["userInfo"]["username"], "alice");
    assert_eq!(request["oldObject"]["metadata"]["name"], "test-config2-one");
    assert!(request["object"].is_null());
    assert_eq!(request["dryRun"], false);
    assert_eq!(request["options"]["kind"], "DeleteOptions");
    assert_eq!(
        calls[0].response.as_ref().map(|r| r["allowed"].clone()),
        Some(json!(true))
    );

    // The audit log says what happened.
    let audit = c.audit_of("test-config2-one");
    let annotations = &audit["annotations"];
    assert_eq!(annotations[format!("{WEBHOOK}/decision")], "warned");
    assert_eq!(annotations[format!("{WEBHOOK}/counted")], "true");
    assert_eq!(
        annotations[format!("{WEBHOOK}/gitrepo")],
        "fleet-local/lots"
    );

    // The Event on the GitRepo, through kubectl.
    let start = Instant::now();
    loop {
        let run = c
            .alice(&[
                "get",
                "events.events.k8s.io",
                "-n",
                "fleet-local",
                "-o",
                "jsonpath={range .items[*]}{.reason}: {.note}{\"\\n\"}{end}",
            ])
            .await;
        if run
            .stdout
            .contains("ResourceDeleted: configmap default/test-config2-one deleted by alice")
        {
            break;
        }
        assert!(start.elapsed() < WAIT, "no ResourceDeleted event: {run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.assert_rbac_was_enough();
    w.stop().await;
}

#[tokio::test]
async fn objectset_metadata_of_other_writers_never_reaches_the_webhook() {
    let Some(c) = Cluster::start("objectset_metadata_of_other_writers").await else {
        return;
    };
    let w = Webhook::start(&c, "a", &[]).await;
    let hash = |id: &str| fleet_delete_guard::fleet::object_set_hash(id);
    // What real Rancher / RKE2 / k3s clusters carry besides Fleet's agent's objects.
    let others = [
        // kube-controller-manager copied a Fleet Service's labels: hash, no id.
        (
            "endpoints-copy",
            json!({"objectset.rio.cattle.io/hash": hash("default-lots-config2")}),
            json!({}),
        ),
        // Rancher's object set.
        (
            "rancher-set",
            json!({"objectset.rio.cattle.io/hash": hash("cluster-registration")}),
            json!({"objectset.rio.cattle.io/id": "cluster-registration"}),
        ),
        // A k3s add-on: empty id.
        (
            "k3s-addon",
            json!({"objectset.rio.cattle.io/hash": hash("")}),
            json!({"objectset.rio.cattle.io/id": "", "objectset.rio.cattle.io/owner-gvk": "k3s.cattle.io/v1, Kind=Addon"}),
        ),
    ];
    for (name, labels, annotations) in &others {
        c.double
            .seed(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "default", "labels": labels, "annotations": annotations}}))
            .expect("seed");
        let run = c.alice(&["delete", "configmap", name]).await;
        assert!(run.ok, "{run}");
        assert!(!run.stderr.contains("Warning"), "{run}");
    }
    // DELETECOLLECTION over them and one of Fleet's: only Fleet's is reviewed.
    for (name, labels, annotations) in &others {
        c.double
            .seed(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "default", "labels": labels, "annotations": annotations}}))
            .expect("seed");
    }
    assert_eq!(
        c.double.admission_calls().len(),
        0,
        "no call for other writers"
    );
    let run = c
        .alice(&[
            "delete",
            "configmap",
            "-l",
            &format!(
                "objectset.rio.cattle.io/hash in ({},{},{})",
                hash("default-lots-config2"),
                hash("cluster-registration"),
                hash("")
            ),
        ])
        .await;
    assert!(run.ok, "{run}");
    let calls = c.double.admission_calls();
    let names: Vec<String> = calls
        .iter()
        .map(|call| {
            call.review["request"]["oldObject"]["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(!names.is_empty(), "Fleet's objects are reviewed: {run}");
    assert!(
        names.iter().all(|n| n.starts_with("test-config2-")),
        "only Fleet's agent's objects reach the webhook: {names:?}"
    );
    w.stop().await;
}

#[tokio::test]
async fn server_side_dry_run_warns_and_leaves_11_of_11() {
    let Some(c) = Cluster::start("server_side_dry_run").await else {
        return;
    };
    let _w = Webhook::start(&c, "a", &[]).await;
    let run = c
        .alice(&[
            "delete",
            "configmap",
            "test-config1-one",
            "--dry-run=server",
        ])
        .await;
    assert!(run.ok, "{run}");
    assert!(run.stdout.contains("(server dry run)"), "{run}");
    assert!(
        run.stderr
            .contains("Warning: configmap default/test-config1-one is managed by Fleet"),
        "{run}"
    );
    let calls = c.double.admission_calls();
    assert_eq!(calls[0].review["request"]["dryRun"], true);
    assert_eq!(
        c.audit_of("test-config1-one")["annotations"][format!("{WEBHOOK}/counted")],
        "false"
    );
    let still = c
        .alice(&["get", "configmap", "test-config1-one", "-o", "name"])
        .await;
    assert!(still.ok, "the dry run deleted nothing: {still}");
    assert_eq!(c.counts().await, "11/11");

    // A real deletion afterwards is a barrier: once it is counted, anything the dry run
    // could have caused would show too. Only the real one is counted.
    let run = c.alice(&["delete", "configmap", "test-config3-one"]).await;
    assert!(run.ok, "{run}");
    c.wait_counts("10/11").await;
    let repo = c
        .double
        .get(&gvr::GITREPOS, "fleet-local", "lots")
        .expect("repo");
    let missing: Vec<&str> = repo["status"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["state"] == "Missing")
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(missing, ["test-config3-one"]);
    c.assert_rbac_was_enough();
}

#[tokio::test]
async fn with_the_webhook_down_or_slow_deletions_go_through() {
    let Some(c) = Cluster::start("with_the_webhook_down").await else {
        return;
    };
    let w = Webhook::start(&c, "a", &[]).await;
    w.stop().await;

    // Down: the connection is refused; failurePolicy Ignore lets the deletion through.
    let run = c.alice(&["delete", "configmap", "test-config2-two"]).await;
    assert!(run.ok, "{run}");
    assert!(!run.stderr.contains("Warning:"), "nobody to warn: {run}");
    let gone = c
        .alice(&["get", "configmap", "test-config2-two", "-o", "name"])
        .await;
    assert!(!gone.ok && gone.stderr.contains("NotFound"), "{gone}");
    let audit = c.audit_of("test-config2-two");
    assert_eq!(
        audit["annotations"]["failed-open.validating.webhook.admission.k8s.io/round_0_index_0"],
        WEBHOOK
    );
    let calls = c.double.admission_calls();
    assert!(
        calls[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("connection refused"),
        "{calls:?}"
    );

    // Slow: an endpoint that accepts connections and never answers. The call is cut at
    // the configuration's timeoutSeconds (5) and the deletion goes through.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    c.double
        .set_service_endpoint(NS, SERVICE, hole.local_addr().expect("addr"));
    let start = Instant::now();
    let run = c
        .alice(&["delete", "configmap", "test-config2-three"])
        .await;
    let took = start.elapsed();
    assert!(run.ok, "{run}");
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(10),
        "took {took:?}"
    );
    let calls = c.double.admission_calls();
    assert!(
        calls[1]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("context deadline exceeded"),
        "{calls:?}"
    );
    drop(hole);
}

#[tokio::test]
async fn with_policy_deny_kubectl_shows_the_refusal_and_fleet_still_deletes() {
    let Some(c) = Cluster::start("with_policy_deny").await else {
        return;
    };
    // Fleet-labelled objects in kube-system are never sent (namespaceSelector).
    let mut in_kube_system = c
        .double
        .get(&gvr::CONFIGMAPS, "default", "test-config3-two")
        .expect("cm");
    in_kube_system["metadata"]["namespace"] = "kube-system".into();
    in_kube_system["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("resourceVersion");
    in_kube_system["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("uid");
    c.double.seed(in_kube_system).expect("seed");
    let _w = Webhook::start(&c, "a", &["--policy", "deny"]).await;

    let run = c.alice(&["delete", "configmap", "test-config2-one"]).await;
    assert!(!run.ok, "refused: {run}");
    assert!(
        run.stderr.contains(&format!(
            "Error from server (Forbidden): admission webhook \"{WEBHOOK}\" denied the request: \
             fleet-delete-guard: configmap default/test-config2-one is managed by Fleet GitRepo fleet-local/lots"
        )),
        "{run}"
    );
    let still = c
        .alice(&["get", "configmap", "test-config2-one", "-o", "name"])
        .await;
    assert!(still.ok, "{still}");
    assert_eq!(c.double.admission_calls().len(), 1);

    // Fleet's own agent deletes: kube-apiserver skips the webhook (matchConditions).
    let run = kubectl::run(c.kubectl_as(
        "agent.kubeconfig",
        &["delete", "configmap", "test-config1-two"],
    ))
    .await;
    assert!(run.ok, "Fleet is never refused: {run}");
    // Objects without Fleet's label are never sent (objectSelector).
    c.double
        .seed(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "not-fleet", "namespace": "default"}}))
        .expect("seed");
    let run = c.alice(&["delete", "configmap", "not-fleet"]).await;
    assert!(run.ok, "{run}");
    let run = c
        .alice(&[
            "delete",
            "configmap",
            "test-config3-two",
            "-n",
            "kube-system",
        ])
        .await;
    assert!(run.ok, "{run}");
    assert_eq!(
        c.double.admission_calls().len(),
        1,
        "none of these reached the webhook"
    );
    assert_eq!(
        c.counts().await,
        "11/11",
        "a refused deletion is not counted"
    );
    c.assert_rbac_was_enough();
}

#[tokio::test]
async fn a_verb_missing_from_the_cluster_role_is_caught() {
    // deploy/'s ClusterRole without `patch` on gitrepos/status.
    let Some(c) = Cluster::start_with("a_verb_missing", |objects| {
        let role = objects
            .iter_mut()
            .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == "fleet-delete-guard")
            .expect("ClusterRole");
        for rule in role["rules"].as_array_mut().expect("rules") {
            if rule["resources"] == json!(["gitrepos/status", "helmops/status"]) {
                rule["verbs"] = json!(["get"]);
            }
        }
    })
    .await
    else {
        return;
    };
    let _w = Webhook::start(&c, "a", &[]).await;
    let run = c.alice(&["delete", "configmap", "test-config2-one"]).await;
    assert!(run.ok, "{run}");
    c.double
        .wait_for_request(
            |r| {
                r.status == Some(403)
                    && r.user.as_deref() == Some(SA_USER)
                    && r.is(Verb::Patch, "gitrepos", Some("status"))
            },
            WAIT,
        )
        .await
        .expect("the missing verb is refused");
    let refused = c.refused_to_webhook();
    assert!(
        refused
            .iter()
            .all(|r| r.is(Verb::Patch, "gitrepos", Some("status"))),
        "only that verb is missing: {refused:?}"
    );
}

fn peer_certificate(addr: SocketAddr, ca_pem: &str) -> Vec<u8> {
    let config = support::client_config(ca_pem);
    let name =
        rustls::pki_types::ServerName::try_from("fleet-delete-guard.cattle-fleet-system.svc")
            .expect("name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("tls");
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .expect("handshake: the served certificate chains to the caBundle");
    }
    conn.peer_certificates().expect("peer")[0].to_vec()
}

fn secret_field(double: &ApiDouble, key: &str) -> String {
    let secret = double
        .get(&gvr::SECRETS, NS, "fleet-delete-guard-tls")
        .expect("the bootstrap Secret");
    let b64 = secret["data"][key].as_str().unwrap_or_default().to_string();
    String::from_utf8(base64_decode(&b64)).expect("utf8")
}

fn ca_bundle(double: &ApiDouble) -> String {
    let vwc = double
        .get(
            &gvr::VALIDATING_WEBHOOK_CONFIGURATIONS,
            "",
            "fleet-delete-guard",
        )
        .expect("vwc");
    String::from_utf8(base64_decode(
        vwc["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .unwrap_or(""),
    ))
    .expect("utf8")
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

#[tokio::test]
async fn three_replicas_starting_at_once_share_one_certificate() {
    let Some(c) = Cluster::start("three_replicas").await else {
        return;
    };
    let (a, b, d) = tokio::join!(
        Webhook::spawn(&c, "a", &[]),
        Webhook::spawn(&c, "b", &[]),
        Webhook::spawn(&c, "c", &[])
    );
    let replicas = [a, b, d];
    for w in &replicas {
        w.wait_ready().await;
    }
    let created = c.double.count_where(|r| {
        r.verb == Verb::Create && r.resource() == "secrets" && r.status == Some(201)
    });
    assert_eq!(created, 1, "one Secret, created once");
    let bundle = ca_bundle(&c.double);
    assert_eq!(
        bundle,
        secret_field(&c.double, "ca.crt"),
        "the caBundle is the Secret's CA"
    );
    let served: Vec<Vec<u8>> = replicas
        .iter()
        .map(|w| peer_certificate(w.addr, &bundle))
        .collect();
    assert!(
        served.windows(2).all(|p| p[0] == p[1]),
        "all replicas serve the Secret's certificate"
    );

    // kube-apiserver reaches each of them with the caBundle.
    for (w, name) in
        replicas
            .iter()
            .zip(["test-config1-one", "test-config1-two", "test-config1-three"])
    {
        c.double.set_service_endpoint(NS, SERVICE, w.addr);
        let run = c
            .alice(&["delete", "configmap", name, "--dry-run=server"])
            .await;
        assert!(run.stderr.contains("Warning: configmap"), "{run}");
    }
    c.assert_rbac_was_enough();
}

#[tokio::test]
async fn the_serving_certificate_is_renewed_before_expiry_and_served_without_restart() {
    let Some(c) = Cluster::start("the_serving_certificate_is_renewed").await else {
        return;
    };
    // A 12 s certificate renewed 10 s before expiry: renewed about every 2 s.
    let w = Webhook::start(
        &c,
        "a",
        &[
            "--cert-validity",
            "12s",
            "--cert-renew-before",
            "10s",
            "--cert-check-interval",
            "0.5s",
        ],
    )
    .await;
    let bundle = ca_bundle(&c.double);
    let first = peer_certificate(w.addr, &bundle);
    let start = Instant::now();
    let renewed = loop {
        let now = peer_certificate(w.addr, &bundle);
        if now != first {
            break now;
        }
        assert!(start.elapsed() < WAIT, "never renewed:\n{}", w.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        ca_bundle(&c.double),
        bundle,
        "same CA: the caBundle did not change"
    );
    assert_ne!(renewed, first);
    // The process kept running: the same listener served both.
    let run = c
        .alice(&[
            "delete",
            "configmap",
            "test-config3-three",
            "--dry-run=server",
        ])
        .await;
    assert!(run.stderr.contains("Warning: configmap"), "{run}");
    assert!(
        w.logs().contains("serving certificate reloaded from disk"),
        "{}",
        w.logs()
    );
    c.assert_rbac_was_enough();
}

/// The breaker end to end (deploy/breaker-fail-closed: the agent's deletions are sent,
/// protected kinds through the failurePolicy Fail entry): Fleet's agent deleting a
/// Namespace of GitRepo lots trips it at once, kubectl shows the refusal with the reset
/// command, that very command (as alice) closes it, then the 4th of a burst of agent
/// deletions trips it again (--breaker-max-deletions 3). RBAC is deploy/'s.
#[tokio::test]
async fn the_breaker_refuses_the_agent_and_its_reset_command_closes_it() {
    let Some(c) = Cluster::start_overlay(
        "the_breaker_refuses_the_agent",
        "breaker-fail-closed",
        |_| {},
    )
    .await
    else {
        return;
    };
    // A Namespace GitRepo lots deploys (bundle lots-config1).
    let cm = c
        .double
        .get(&gvr::CONFIGMAPS, "default", "test-config1-one")
        .expect("cm");
    c.double
        .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": "prod",
            "labels": {"kubernetes.io/metadata.name": "prod",
                       "objectset.rio.cattle.io/hash": cm["metadata"]["labels"]["objectset.rio.cattle.io/hash"]},
            "annotations": {"objectset.rio.cattle.io/id": cm["metadata"]["annotations"]["objectset.rio.cattle.io/id"]}}}))
        .expect("seed namespace");
    let w = Webhook::start(
        &c,
        "a",
        &["--breaker", "enforce", "--breaker-max-deletions", "3"],
    )
    .await;
    let agent = |args: &[&str]| kubectl::run(c.kubectl_as("agent.kubeconfig", args));

    let run = agent(&["delete", "namespace", "prod"]).await;
    assert!(!run.ok, "refused: {run}");
    let want = "admission webhook \"protect.delete-guard.fleet.cattle.io\" denied the request: \
                fleet-delete-guard: mass-deletion breaker open for Fleet GitRepo fleet-local/lots";
    assert!(run.stderr.contains(want), "{run}");
    assert!(
        run.stderr
            .contains("Fleet's agent deleted namespace prod (protected kind)"),
        "{run}"
    );
    // The exact command the message ends with, run as an admin.
    let reset = run
        .stderr
        .trim()
        .rsplit_once("then reset: ")
        .map(|(_, cmd)| cmd.to_string())
        .expect("reset command in the message");
    assert_eq!(
        reset,
        format!("kubectl -n {NS} delete lease breaker-gitrepo.fleet-local.lots")
    );
    // The Lease is created off the admission path: it may land after the refusal.
    c.double
        .wait_for(
            &kube_api_double::Gvr::new("coordination.k8s.io", "v1", "leases"),
            NS,
            "breaker-gitrepo.fleet-local.lots",
            |_| true,
            WAIT,
        )
        .await
        .expect("recorded in a Lease");
    let args: Vec<&str> = reset.split_whitespace().skip(1).collect();
    let run = c.alice(&args).await;
    assert!(run.ok, "{run}");
    // Closed once the Lease watch delivers the deletion: the agent's deletions pass
    // again, the 4th trips it.
    let start = Instant::now();
    let mut names = [
        "test-config1-one",
        "test-config1-two",
        "test-config2-one",
        "test-config2-two",
    ]
    .into_iter();
    let first = names.next().expect("name");
    loop {
        let run = agent(&["delete", "configmap", first]).await;
        if run.ok {
            break;
        }
        assert!(start.elapsed() < WAIT, "still refused: {run}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for name in names.by_ref().take(2) {
        let run = agent(&["delete", "configmap", name]).await;
        assert!(run.ok, "{run}");
    }
    let run = agent(&["delete", "configmap", "test-config2-two"]).await;
    assert!(!run.ok, "{run}");
    assert!(
        run.stderr
            .contains("4 deletions within 60s (limit 3)); deletion of configmap default/test-config2-two by Fleet's agent refused"),
        "{run}"
    );
    // People deleting an open owner's objects are refused too.
    let run = c.alice(&["delete", "configmap", "test-config3-one"]).await;
    assert!(
        !run.ok && run.stderr.contains("mass-deletion breaker open"),
        "{run}"
    );
    c.assert_rbac_was_enough();
    w.stop().await;
}

// --- webhook configuration tamper evidence (src/webhook_config/) ---------------------

impl Webhook {
    async fn metrics_text(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics);
        match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    async fn wait_metric(&self, line: &str) {
        let start = Instant::now();
        while !self.metrics_text().await.contains(line) {
            assert!(
                start.elapsed() < WAIT,
                "no {line} in\n{}\nlogs:\n{}",
                self.metrics_text().await,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

const INTACT: &str = "fleet_delete_guard_webhook_configuration_intact{reason=\"none\"} 1";
const DELETED: &str = "fleet_delete_guard_webhook_configuration_intact{reason=\"deleted\"} 0";

#[tokio::test]
async fn kubectl_delete_of_the_webhook_configuration_is_reported_and_audit_names_who() {
    let Some(c) = Cluster::start("webhook_configuration_deleted").await else {
        return;
    };
    let w = Webhook::start(&c, "a", &[]).await;
    w.wait_metric(INTACT).await;

    let run = c
        .alice(&[
            "delete",
            "validatingwebhookconfiguration",
            "fleet-delete-guard",
        ])
        .await;
    assert!(run.ok, "{run}");
    w.wait_metric(DELETED).await;
    assert!(
        w.logs()
            .contains("the webhook configuration is not as installed"),
        "{}",
        w.logs()
    );
    // Informational on /readyz: still ready.
    let readyz = reqwest::get(format!("http://{}/readyz", w.metrics))
        .await
        .expect("readyz");
    assert!(readyz.status().is_success());
    let text = readyz.text().await.expect("text");
    assert!(text.contains("[+]webhook-configuration ok: ValidatingWebhookConfiguration fleet-delete-guard is NOT as installed: the configuration was deleted; repair off"), "{text}");
    // The Warning Event, through kubectl.
    let start = Instant::now();
    loop {
        let run = c
            .alice(&[
                "get",
                "events.events.k8s.io",
                "-n",
                "default",
                "-o",
                "jsonpath={range .items[*]}{.type} {.reason}: {.note}{\"\\n\"}{end}",
            ])
            .await;
        if run.stdout.contains(
            "Warning WebhookConfigurationChanged: ValidatingWebhookConfiguration fleet-delete-guard is not as installed: the configuration was deleted",
        ) {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "no WebhookConfigurationChanged event: {run}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Repair off: it stays deleted; the audit log says who.
    assert!(c
        .double
        .get(
            &gvr::VALIDATING_WEBHOOK_CONFIGURATIONS,
            "",
            "fleet-delete-guard"
        )
        .is_none());
    let log = c.path("audit.log");
    c.double.write_audit_log(&log).expect("audit log");
    let out = Command::new(binary())
        .arg("audit")
        .arg(&log)
        .output()
        .expect("audit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.starts_with("Changes to the guard itself (1):"),
        "{stdout}"
    );
    let row = stdout.lines().nth(2).unwrap_or_default();
    for cell in [
        "alice",
        "kubectl/",
        "delete",
        "ValidatingWebhookConfiguration fleet-delete-guard",
        "200 succeeded",
    ] {
        assert!(row.contains(cell), "{cell} missing from {row:?}\n{stdout}");
    }
    c.assert_rbac_was_enough();
    w.stop().await;
}

#[tokio::test]
async fn with_the_restore_overlay_a_deleted_configuration_comes_back() {
    let Some(c) = Cluster::start_overlay(
        "webhook_configuration_restored",
        "restore-webhook-configuration",
        |_| {},
    )
    .await
    else {
        return;
    };
    let w = Webhook::start(&c, "a", &["--restore-webhook-configuration"]).await;
    w.wait_metric(INTACT).await;
    let run = c
        .alice(&[
            "delete",
            "validatingwebhookconfiguration",
            "fleet-delete-guard",
        ])
        .await;
    assert!(run.ok, "{run}");
    let back = c
        .double
        .wait_for(
            &gvr::VALIDATING_WEBHOOK_CONFIGURATIONS,
            "",
            "fleet-delete-guard",
            |_| true,
            WAIT,
        )
        .await
        .expect("re-created");
    assert!(
        back["webhooks"][0]["clientConfig"]["caBundle"].is_string(),
        "re-created trusting the serving certificate: {back}"
    );
    w.wait_metric("fleet_delete_guard_webhook_configuration_restores_total{result=\"restored\"} 1")
        .await;
    w.wait_metric(INTACT).await;
    // Deletions are reviewed again.
    let run = c.alice(&["delete", "configmap", "test-config2-one"]).await;
    assert!(
        run.stderr
            .contains("is managed by Fleet GitRepo fleet-local/lots"),
        "{run}"
    );
    c.assert_rbac_was_enough();
    w.stop().await;
}
// --- end webhook configuration tamper evidence ----------------------------------------
