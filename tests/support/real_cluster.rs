//! A real control plane for tests, like controller-runtime's envtest: etcd,
//! kube-apiserver and kube-controller-manager built from their Go modules
//! (`scripts/real-cluster.sh build`, pinned in tests/real-cluster/go.mod, cached outside
//! the work tree), started on
//! loopback with free ports, TLS, a service-account signing key, the RBAC and Node
//! authorizers, admission webhooks, a JSON audit log, and the controller manager's
//! garbage collector, namespace controller, service-account controllers and the
//! ClusterRole aggregation (Kubernetes' `edit`/`view` roles) (each
//! controller with its own ServiceAccount, as in a real cluster).
//!
//! Identities: `admin` (client certificate in `system:masters`), `alice` (a client
//! certificate and no rights beyond what a test grants), and any ServiceAccount through
//! [`ControlPlane::service_account_kubeconfig`] (a TokenRequest token).
//!
//! Every process is killed when the [`ControlPlane`] is dropped, and — through
//! `PR_SET_PDEATHSIG` on the long-lived thread that spawned them — when the test
//! process dies, so a failed or killed test leaves nothing behind.
#![allow(dead_code)]

use std::{
    fmt,
    io::Write as _,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Mutex},
    time::{Duration, Instant},
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use serde_json::Value;

/// How long a component may take to become healthy on a loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The audit policy: Metadata for every deletion (the webhook's audit annotations and
/// the apiserver's own `failed-open` annotation land there), for writes to admission
/// configuration, and for every request of the webhook's ServiceAccount (so a test can
/// show deploy/'s RBAC was enough); nothing else.
const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    users: ["system:serviceaccount:cattle-fleet-system:fleet-delete-guard"]
  - level: Metadata
    verbs: ["delete", "deletecollection"]
  - level: Metadata
    verbs: ["create", "update", "patch"]
    resources:
      - group: admissionregistration.k8s.io
        resources: ["validatingwebhookconfigurations"]
  - level: None
"#;

/// Where the Go-built binaries are: `$REAL_CLUSTER_BIN` (scripts/real-cluster.sh sets
/// it), else the script's default cache, `$FLEET_DELETE_GUARD_CACHE` or
/// `${XDG_CACHE_HOME:-$HOME/.cache}/fleet-delete-guard`, then `real-cluster/bin`.
pub fn binaries() -> PathBuf {
    if let Some(p) = std::env::var_os("REAL_CLUSTER_BIN") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("FLEET_DELETE_GUARD_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("fleet-delete-guard"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/fleet-delete-guard"))
        })
        .unwrap_or_else(|| PathBuf::from("/tmp/fleet-delete-guard"));
    cache.join("real-cluster/bin")
}

fn binary(name: &str) -> PathBuf {
    let path = binaries().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the real control plane first with `scripts/real-cluster.sh build` \
         (Go ≥ 1.26 and the Go module proxy), or point REAL_CLUSTER_BIN at the binaries",
        path.display()
    );
    path
}

/// A free loopback port (bound, read, released: the usual race, acceptable in tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free loopback port")
}

/// PEM files of one identity.
struct Pair {
    cert: String,
    key: String,
}

/// The cluster CA, and the certificates issued from it.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "real-cluster test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("CA key");
        Pki {
            ca: CertifiedIssuer::self_signed(params, key).expect("CA"),
        }
    }

    fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    fn serving(&self, names: &[&str]) -> Pair {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate: CN is the user name, O the groups (kube-apiserver's x509
    /// authenticator).
    fn client(&self, user: &str, groups: &[&str]) -> Pair {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, user);
        for g in groups {
            params.distinguished_name.push(DnType::OrganizationName, *g);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> Pair {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// One started process and where its output goes.
struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// Requests to the spawner thread: a command to start.
type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Children are spawned from one thread that lives as long as the test process, so
/// `PR_SET_PDEATHSIG` (which fires when the *spawning thread* exits) kills them when the
/// process dies, whatever test thread asked for them.
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: std::sync::OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> =
        std::sync::OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("real-cluster-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(spawn_dying_with_parent(&mut cmd));
                }
                // The channel lives in a static: this thread never ends before the process.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawner thread");
        Mutex::new(tx)
    })
}

#[allow(unsafe_code)] // prctl(2) in the child before exec
fn spawn_dying_with_parent(cmd: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Start `cmd` through the spawner thread.
pub fn spawn(cmd: Command) -> std::io::Result<Child> {
    let (tx, rx) = mpsc::channel();
    spawner()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, tx))
        .expect("spawner thread alive");
    rx.recv().expect("spawner replied")
}

/// etcd + kube-apiserver + kube-controller-manager on loopback.
pub struct ControlPlane {
    dir: tempfile::TempDir,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    pub ca_pem: String,
    pki: Pki,
    processes: Mutex<Vec<Process>>,
    pub kubectl: PathBuf,
}

impl fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server", &self.server)
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl ControlPlane {
    /// Start etcd, kube-apiserver and kube-controller-manager; wait until the apiserver
    /// is ready and the `default` ServiceAccount exists (the controller manager runs).
    pub fn start(kubectl: PathBuf) -> ControlPlane {
        remove_dirs_of_dead_runs();
        let dir = tempfile::Builder::new()
            .prefix(&format!("real-cluster-{}-", std::process::id()))
            .tempdir()
            .expect("tempdir");
        let pki = Pki::new();
        let api_port = free_port();
        let server = format!("https://127.0.0.1:{api_port}");
        let cp = ControlPlane {
            server,
            ca_pem: pki.ca_pem(),
            pki,
            dir,
            processes: Mutex::new(Vec::new()),
            kubectl,
        };
        cp.write("ca.crt", &cp.ca_pem);
        let serving = cp.pki.serving(&[
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default.svc",
        ]);
        cp.write("apiserver.crt", &serving.cert);
        cp.write("apiserver.key", &serving.key);
        let sa = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("SA key");
        cp.write("sa.key", &sa.serialize_pem());
        cp.write("sa.pub", &sa.public_key_pem());
        cp.write("audit-policy.yaml", AUDIT_POLICY);
        cp.write_cert_kubeconfig("admin", "admin", &["system:masters"]);
        cp.write_cert_kubeconfig("alice", "alice", &[]);
        cp.write_cert_kubeconfig("controller-manager", "system:kube-controller-manager", &[]);

        let etcd_client = free_port();
        let etcd_peer = free_port();
        cp.start_etcd(etcd_client, etcd_peer);
        cp.start_apiserver(api_port, etcd_client);
        cp.start_controller_manager();
        cp.wait_for(
            "the default ServiceAccount (kube-controller-manager)",
            || {
                cp.kubectl_ok(
                    "admin",
                    &["get", "serviceaccount", "default", "-n", "default"],
                )
            },
        );
        cp
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }

    /// The kubeconfig of `name` (`admin`, `alice`, or one written by a test).
    pub fn kubeconfig(&self, name: &str) -> PathBuf {
        self.path(&format!("{name}.kubeconfig"))
    }

    /// The JSON audit log kube-apiserver writes (one event per line).
    pub fn audit_log(&self) -> PathBuf {
        self.path("audit.log")
    }

    /// Every audit event written so far.
    pub fn audit_events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.audit_log())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn write_cert_kubeconfig(&self, name: &str, user: &str, groups: &[&str]) {
        let pair = self.pki.client(user, groups);
        let cfg = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "real", "cluster": {
                "server": self.server,
                "certificate-authority-data": b64(&self.ca_pem)}}],
            "users": [{"name": user, "user": {
                "client-certificate-data": b64(&pair.cert),
                "client-key-data": b64(&pair.key)}}],
            "contexts": [{"name": "real", "context": {"cluster": "real", "user": user, "namespace": "default"}}],
            "current-context": "real",
        });
        self.write(&format!("{name}.kubeconfig"), &cfg.to_string());
    }

    /// A kubeconfig for ServiceAccount `namespace/name`, with a TokenRequest token
    /// valid for an hour (the way a pod's projected token is made).
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let token = self.kubectl_stdout(
            "admin",
            &["create", "token", name, "-n", namespace, "--duration", "1h"],
        );
        let file = format!("sa-{namespace}-{name}");
        let cfg = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "real", "cluster": {
                "server": self.server,
                "certificate-authority-data": b64(&self.ca_pem)}}],
            "users": [{"name": name, "user": {"token": token.trim()}}],
            "contexts": [{"name": "real", "context": {"cluster": "real", "user": name, "namespace": namespace}}],
            "current-context": "real",
        });
        self.write(&format!("{file}.kubeconfig"), &cfg.to_string())
    }

    fn start_process(&self, name: &'static str, mut cmd: Command) {
        let log = self.path(&format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // What must not leak from the test's environment into the components.
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBECONFIG")
            .env("NO_PROXY", "127.0.0.1,localhost");
        let child = spawn(cmd).unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.processes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Process { name, child, log });
    }

    fn start_etcd(&self, client: u16, peer: u16) {
        let mut cmd = Command::new(binary("etcd"));
        cmd.args([
            "--name=default",
            &format!("--data-dir={}", self.path("etcd").display()),
            &format!("--listen-client-urls=http://127.0.0.1:{client}"),
            &format!("--advertise-client-urls=http://127.0.0.1:{client}"),
            &format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
            &format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
            &format!("--initial-cluster=default=http://127.0.0.1:{peer}"),
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]);
        self.start_process("etcd", cmd);
        self.wait_for("etcd /health", || http_get_ok(client, "/health"));
    }

    fn start_apiserver(&self, port: u16, etcd: u16) {
        let p = |n: &str| self.path(n).display().to_string();
        let mut cmd = Command::new(binary("kube-apiserver"));
        cmd.args([
            &format!("--etcd-servers=http://127.0.0.1:{etcd}"),
            &format!("--secure-port={port}"),
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--allow-privileged=true",
            "--authorization-mode=Node,RBAC",
            &format!("--client-ca-file={}", p("ca.crt")),
            &format!("--tls-cert-file={}", p("apiserver.crt")),
            &format!("--tls-private-key-file={}", p("apiserver.key")),
            &format!("--service-account-key-file={}", p("sa.pub")),
            &format!("--service-account-signing-key-file={}", p("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc",
            &format!("--audit-policy-file={}", p("audit-policy.yaml")),
            &format!("--audit-log-path={}", p("audit.log")),
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
            &format!("--cert-dir={}", p("apiserver-certs")),
            "--enable-admission-plugins=ValidatingAdmissionWebhook,MutatingAdmissionWebhook",
            "--v=1",
        ]);
        self.start_process("kube-apiserver", cmd);
        self.wait_for("kube-apiserver /readyz", || {
            self.kubectl_ok("admin", &["get", "--raw", "/readyz"])
        });
    }

    fn start_controller_manager(&self) {
        let p = |n: &str| self.path(n).display().to_string();
        let mut cmd = Command::new(binary("kube-controller-manager"));
        cmd.args([
            &format!("--kubeconfig={}", p("controller-manager.kubeconfig")),
            "--controllers=garbage-collector-controller,namespace-controller,serviceaccount-token-controller,serviceaccount-controller,clusterrole-aggregation-controller",
            &format!("--service-account-private-key-file={}", p("sa.key")),
            &format!("--root-ca-file={}", p("ca.crt")),
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--secure-port=0",
            "--concurrent-gc-syncs=5",
            "--v=1",
        ]);
        self.start_process("kube-controller-manager", cmd);
    }

    /// Polls `ready` until it holds; fails with every component's log tail otherwise.
    pub fn wait_for(&self, what: &str, mut ready: impl FnMut() -> bool) {
        let start = Instant::now();
        loop {
            if ready() {
                return;
            }
            self.assert_running();
            assert!(
                start.elapsed() < START_TIMEOUT,
                "timed out waiting for {what}\n{}",
                self.log_tails()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The process id of component `name` (`etcd`, `kube-apiserver`,
    /// `kube-controller-manager`), e.g. to read its CPU time from /proc.
    pub fn pid(&self, name: &str) -> Option<u32> {
        let procs = self.processes.lock().unwrap_or_else(|e| e.into_inner());
        procs.iter().find(|p| p.name == name).map(|p| p.child.id())
    }

    /// Fails when a component has exited.
    pub fn assert_running(&self) {
        let mut procs = self.processes.lock().unwrap_or_else(|e| e.into_inner());
        for p in procs.iter_mut() {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("{} exited ({status}):\n{}", p.name, tail(&p.log, 40));
            }
        }
    }

    /// The last lines of every component's log.
    pub fn log_tails(&self) -> String {
        let procs = self.processes.lock().unwrap_or_else(|e| e.into_inner());
        procs
            .iter()
            .map(|p| format!("--- {} ---\n{}", p.name, tail(&p.log, 25)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A kubectl command as `identity` (a kubeconfig name).
    pub fn kubectl(&self, identity: &str) -> Command {
        let mut c = Command::new(&self.kubectl);
        c.env("KUBECONFIG", self.kubeconfig(identity))
            .env("KUBECACHEDIR", self.path("kubectl-cache"))
            .env_remove("HTTPS_PROXY")
            .env_remove("HTTP_PROXY")
            .env_remove("https_proxy")
            .env_remove("http_proxy")
            .arg("--request-timeout=30s");
        c
    }

    pub fn kubectl_ok(&self, identity: &str, args: &[&str]) -> bool {
        self.kubectl(identity)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// The Fleet CRD stand-ins (tests/real-cluster/fleet-crds.yaml), applied and
    /// Established, and `namespaces` created.
    pub fn install_fleet_crds(&self, namespaces: &[&str]) {
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real-cluster/fleet-crds.yaml");
        let out = self
            .kubectl("admin")
            .args(["apply", "--server-side", "-f"])
            .arg(&crds)
            .output()
            .expect("kubectl apply CRDs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.kubectl_stdout(
            "admin",
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd",
                "gitrepos.fleet.cattle.io",
                "helmops.fleet.cattle.io",
                "bundles.fleet.cattle.io",
                "bundledeployments.fleet.cattle.io",
                "clusters.fleet.cattle.io",
            ],
        );
        let namespaces: Vec<Value> = namespaces
            .iter()
            .map(|n| serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}))
            .collect();
        self.apply(&namespaces);
    }

    /// kubectl's stdout; fails the test with stderr when kubectl fails.
    pub fn kubectl_stdout(&self, identity: &str, args: &[&str]) -> String {
        let out = self
            .kubectl(identity)
            .args(args)
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?} as {identity} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f -` (server-side) as admin.
    pub fn apply(&self, objects: &[Value]) {
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
        let mut child = self
            .kubectl("admin")
            .args(["apply", "--server-side", "--force-conflicts", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl apply");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(list.to_string().as_bytes())
            .expect("write objects");
        let out = child.wait_with_output().expect("kubectl apply");
        assert!(
            out.status.success(),
            "kubectl apply failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let mut procs = self.processes.lock().unwrap_or_else(|e| e.into_inner());
        // Reverse order: the controller manager, then the apiserver, then etcd.
        for p in procs.iter_mut().rev() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

/// A control plane shared through a `static` is never dropped, so its directory (etcd's
/// data, logs, certificates) outlives the test process. Each run names its directory
/// after its pid; the next run removes those whose process is gone.
fn remove_dirs_of_dead_runs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("real-cluster-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A plain-HTTP GET to loopback that answers 200 (etcd's health endpoint).
fn http_get_ok(port: u16, path: &str) -> bool {
    use std::io::Read as _;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
