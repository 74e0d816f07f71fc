//! Shared test support: certificates, an in-process server, TLS clients.
//! The Kubernetes API double lives in the `kube-api-double` crate beside this file.
#![allow(dead_code)]

pub mod fleet;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum_server::tls_rustls::RustlsConfig;
use fleet_delete_guard::{
    admission::{
        Admission, BreakerGate, CountedDeletion, DeletionSink, NotCounted, ObjectOnly,
        OwnerResolver,
    },
    health::Readiness,
    metrics::Metrics,
    policy::DecisionConfig,
    server::{self, ListenConfig, Listeners, Services},
    tls::{self, CertFiles, GeneratedCertificates},
};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio::sync::oneshot;

pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

pub fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_str(&fixture(name)).expect("fixture is JSON")
}

/// Logs to the test output when RUST_LOG is set.
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

pub fn certificates() -> GeneratedCertificates {
    init_logging();
    tls::install_crypto_provider();
    tls::generate_certificates(
        &["localhost".to_string(), "127.0.0.1".to_string()],
        Duration::from_secs(3600),
    )
    .expect("generate certificates")
}

/// Writes a certificate pair into `dir` as tls.crt / tls.key.
pub fn write_pair(dir: &Path, certs: &GeneratedCertificates) -> CertFiles {
    let files = CertFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    tls::write_file_atomically(&files.cert, certs.cert_pem.as_bytes()).expect("write cert");
    tls::write_file_atomically(&files.key, certs.key_pem.as_bytes()).expect("write key");
    files
}

/// Records every deletion the admission path hands to the counter.
#[derive(Default)]
pub struct RecordingSink(pub Mutex<Vec<CountedDeletion>>);

impl DeletionSink for RecordingSink {
    fn record(&self, deletion: CountedDeletion) -> Result<(), NotCounted> {
        self.0.lock().expect("sink lock").push(deletion);
        Ok(())
    }
}

impl RecordingSink {
    pub fn take(&self) -> Vec<CountedDeletion> {
        std::mem::take(&mut *self.0.lock().expect("sink lock"))
    }
}

/// A server running in this process on ephemeral ports, with files for its certificate.
pub struct TestServer {
    pub webhook: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub ca_pem: String,
    pub files: CertFiles,
    pub sink: Arc<RecordingSink>,
    pub metrics: Metrics,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), server::ServerError>>,
}

pub struct ServerOptions {
    pub decision: DecisionConfig,
    pub request_timeout: Duration,
    pub reload_interval: Duration,
    pub owners: Arc<dyn OwnerResolver>,
    /// Where counted deletions go; a [`RecordingSink`] when `None`.
    pub sink: Option<Arc<dyn DeletionSink>>,
    /// The mass-deletion breaker, when on.
    pub breaker: Option<Arc<dyn BreakerGate>>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            decision: DecisionConfig::default(),
            request_timeout: Duration::from_secs(4),
            reload_interval: Duration::from_millis(100),
            owners: Arc::new(ObjectOnly),
            sink: None,
            breaker: None,
        }
    }
}

impl TestServer {
    pub async fn start(options: ServerOptions) -> TestServer {
        let certs = certificates();
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_pair(dir.path(), &certs);
        let config = ListenConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            metrics_listen: "127.0.0.1:0".parse().expect("addr"),
            request_timeout: options.request_timeout,
            max_concurrent_reviews: 64,
            shutdown_grace: Duration::from_secs(5),
            connections: Default::default(),
        };
        let listeners = Listeners::bind(&config).expect("bind");
        let webhook = listeners.webhook_addr().expect("addr");
        let metrics_addr = listeners.metrics_addr().expect("addr");
        let metrics = Metrics::new();
        let readiness = Readiness::default();
        readiness.set("tls", true, "test certificate");
        let (served, loaded) = files.load().expect("load pair");
        let tls = RustlsConfig::from_config(served);
        tokio::spawn(tls::reload_on_change(
            files.clone(),
            tls.clone(),
            loaded,
            options.reload_interval,
            metrics.clone(),
        ));
        let sink = Arc::new(RecordingSink::default());
        let counted: Arc<dyn DeletionSink> = match options.sink {
            Some(s) => s,
            None => sink.clone(),
        };
        let admission = Arc::new(
            Admission::new(options.decision, options.owners, counted).with_breaker(options.breaker),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let services = Services {
            admission,
            metrics: metrics.clone(),
            readiness,
            tls,
        };
        let task = tokio::spawn(server::serve(listeners, config, services, async {
            let _ = stopped.await;
        }));
        TestServer {
            webhook,
            metrics_addr,
            ca_pem: certs.ca_pem,
            files,
            sink,
            metrics,
            dir,
            stop: Some(stop),
            task,
        }
    }

    pub fn metrics_text_blocking(&self) -> String {
        self.metrics.encode()
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}/validate", self.webhook.port())
    }

    pub fn client(&self) -> reqwest::Client {
        https_client(&self.ca_pem)
    }

    /// Stop and wait for the server to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("server stops within 10 s");
        result.expect("server task").expect("server result");
    }
}

pub fn client_config(ca_pem: &str) -> rustls::ClientConfig {
    tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// An HTTP/1.1 client trusting only `ca_pem`, like kube-apiserver's webhook client.
pub fn https_client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(ca_pem))
        .http1_only()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// A raw TLS stream to the server, for tests that need control over bytes and timing.
pub async fn tls_connect(
    addr: SocketAddr,
    ca_pem: &str,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut config = client_config(ca_pem);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("server name");
    connector.connect(name, tcp).await
}

/// POST a review body; returns status and parsed JSON (Null when not JSON).
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, String) {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

pub async fn wait_until<F: FnMut() -> bool>(what: &str, timeout: Duration, mut f: F) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// RBAC as clusters give it to their admins: a `cluster-admin` ClusterRole (everything)
/// bound to `subjects` (a JSON list of RBAC subjects).
pub fn grant_cluster_admin(double: &kube_api_double::ApiDouble, subjects: serde_json::Value) {
    double
        .seed(
            serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "cluster-admin"},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
        )
        .expect("cluster-admin");
    double
        .seed(serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "admins"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": subjects}))
        .expect("admins");
}

/// `fleet-delete-guard serve` (this build) as a child process on loopback ports, with
/// `tls` as its certificate and `extra` arguments; its JSON log lines are followed on a
/// thread.
pub struct ServeProcess {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl ServeProcess {
    pub fn spawn(tls: &CertFiles, extra: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Self {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fleet-delete-guard"));
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert")
        .arg(&tls.cert)
        .arg("--tls-key")
        .arg(&tls.key)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the binary");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        ServeProcess { child, lines }
    }

    /// The next log line containing `needle`, parsed (at most 20 s).
    pub fn wait_log(&self, needle: &str) -> serde_json::Value {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
            if line.contains(needle) {
                return serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("log is JSON ({e}): {line}"));
            }
        }
    }

    /// The first log line containing each of `needles`, in any order, parsed (at most
    /// 20 s each).
    pub fn wait_logs(&self, needles: &[&str]) -> Vec<serde_json::Value> {
        let mut found: Vec<Option<serde_json::Value>> = vec![None; needles.len()];
        while found.iter().any(Option::is_none) {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no log line with each of {needles:?}"));
            for (i, needle) in needles.iter().enumerate() {
                if found[i].is_none() && line.contains(needle) {
                    found[i] = Some(
                        serde_json::from_str(&line)
                            .unwrap_or_else(|e| panic!("log is JSON ({e}): {line}")),
                    );
                }
            }
        }
        found.into_iter().flatten().collect()
    }

    /// The webhook and metrics addresses from the "serving" line.
    pub fn serving(&self) -> (std::net::SocketAddr, std::net::SocketAddr) {
        let v = self.wait_log("fleet-delete-guard serving");
        let addr =
            |k: &str| -> std::net::SocketAddr { v[k].as_str().expect(k).parse().expect("address") };
        (addr("listen"), addr("metrics_listen"))
    }

    /// Keep reading the log without looking at it, so the child never blocks on a
    /// full pipe.
    pub fn drain_log(self) -> std::process::Child {
        let lines = self.lines;
        std::thread::spawn(move || while lines.recv().is_ok() {});
        self.child
    }
}
