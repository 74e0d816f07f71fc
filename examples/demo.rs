//! The local demo, for people without a Fleet cluster at hand:
//!
//! ```sh
//! cargo run --example demo            # walkthrough, then left running until Ctrl-C
//! cargo run --example demo -- --help
//! ```
//!
//! It starts the Kubernetes API double (HTTPS, RBAC enforced) with deploy/ installed
//! (`kubectl kustomize deploy/`) and Fleet's 11-ConfigMap GitRepo seeded, runs
//! `fleet-delete-guard serve` (the same code as the binary, in this process) as its
//! ServiceAccount — it bootstraps its certificate and writes the caBundle —, writes a
//! kubeconfig, deletes a ConfigMap with the real kubectl and shows what a Fleet admin
//! sees: kubectl's warning, the GitRepo going 11/11 → 10/11 and how long that took, the
//! Event, the audit annotations. Then it waits for your own kubectl commands.

#[path = "../tests/support/kubectl.rs"]
mod kubectl;

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Parser;
use fleet_delete_guard::cli::{Cli, Command};
use kube_api_double::{gvr, ApiDouble, Options, UserInfo, Verb};
use serde_json::json;

const NS: &str = "cattle-fleet-system";
const SERVICE: &str = "fleet-delete-guard";
const COUNTS: &str =
    "jsonpath={.status.resourceCounts.ready}/{.status.resourceCounts.desiredReady}";

#[derive(Debug, Parser)]
#[command(
    name = "demo",
    about = "fleet-delete-guard without a cluster: the API double, the webhook and the real kubectl"
)]
struct Args {
    /// Where the kubeconfig, certificates, logs and audit log go.
    #[arg(long, default_value_os_t = std::env::temp_dir().join("fleet-delete-guard-demo"))]
    dir: PathBuf,
    /// Port of the API double (0: any free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The webhook's policy: warn, deny or allow.
    #[arg(long, default_value = "warn")]
    policy: String,
    /// Exit after the walkthrough instead of waiting for Ctrl-C.
    #[arg(long)]
    no_wait: bool,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let Some(kubectl) = kubectl::find() else {
        eprintln!("demo: kubectl not found ($KUBECTL, /usr/bin/kubectl, $PATH); the demo drives the real kubectl");
        return std::process::ExitCode::FAILURE;
    };
    if let Err(e) = std::fs::create_dir_all(&args.dir) {
        eprintln!("demo: cannot create {}: {e}", args.dir.display());
        return std::process::ExitCode::FAILURE;
    }
    // The webhook finds its cluster as in a pod or on a laptop: KUBECONFIG. Set before
    // any thread starts.
    std::env::set_var("KUBECONFIG", args.dir.join("webhook.kubeconfig"));
    let log = match std::fs::File::create(args.dir.join("webhook.log")) {
        Ok(f) => Arc::new(f),
        Err(e) => {
            eprintln!("demo: cannot write the log: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(log)
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        ))
        .init();
    fleet_delete_guard::tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(run(args, kubectl)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

struct Demo {
    kubectl: PathBuf,
    dir: PathBuf,
}

impl Demo {
    async fn kubectl(&self, args: &[&str]) -> kubectl::Run {
        let mut c = kubectl::command(
            &self.kubectl,
            &self.dir.join("kubeconfig"),
            &self.dir.join("kubectl-cache"),
        );
        c.args(args);
        kubectl::run(c).await
    }

    /// Runs kubectl and prints it the way a terminal would show it.
    async fn show(&self, args: &[&str]) -> kubectl::Run {
        println!(
            "\n$ kubectl {}",
            args.iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let run = self.kubectl(args).await;
        for line in run.stderr.lines().filter(|l| !l.trim().is_empty()) {
            println!("{line}");
        }
        for line in run.stdout.lines() {
            println!("{line}");
        }
        run
    }
}

fn shell_quote(a: &str) -> String {
    if a.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:".contains(c))
    {
        a.to_string()
    } else {
        format!("'{a}'")
    }
}

async fn wait_ready(metrics: SocketAddr, timeout: Duration) -> Result<(), String> {
    let url = format!("http://{metrics}/readyz");
    let client = reqwest::Client::new();
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(&url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "the webhook did not become ready within {timeout:?}; see its log"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn seed_fixtures(double: &ApiDouble) -> Result<(), String> {
    let fixtures = kubectl::root().join("tests/fixtures");
    for f in [
        "gitrepo-lots.json",
        "bundledeployments-lots.json",
        "configmaps-lots.json",
    ] {
        double
            .seed_json_file(fixtures.join(f))
            .map_err(|e| format!("seeding {f}: {e}"))?;
    }
    double
        .seed(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "cluster-admin"},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
        )
        .map_err(|e| e.to_string())?;
    double
        .seed(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "alice-is-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "User", "name": "alice"}]}))
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn start_webhook(dir: &Path, policy: &str) -> Result<(SocketAddr, SocketAddr), String> {
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let certs = dir.join("certs");
    let argv: Vec<String> = [
        "fleet-delete-guard",
        "serve",
        "--listen",
        &listen.to_string(),
        "--metrics-listen",
        &metrics.to_string(),
        "--policy",
        policy,
        "--namespace",
        NS,
        "--cert-secret",
        "fleet-delete-guard-tls",
        "--webhook-config",
        "fleet-delete-guard",
        "--cert-dir",
        &certs.to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    let Command::Serve(serve) = cli.command else {
        return Err("not serve".into());
    };
    tokio::spawn(async move {
        if let Err(e) = fleet_delete_guard::app::serve(*serve).await {
            eprintln!("demo: the webhook stopped: {e}");
        }
    });
    Ok((listen, metrics))
}

async fn run(args: Args, kubectl: PathBuf) -> Result<(), String> {
    let double = ApiDouble::try_start(Options {
        https: true,
        port: args.port,
        ..Options::default()
    })
    .await
    .map_err(|e| format!("cannot start the API double: {e}"))?;
    for obj in kubectl::render(&kubectl, "") {
        double
            .seed(obj)
            .map_err(|e| format!("installing deploy/: {e}"))?;
    }
    seed_fixtures(&double)?;
    double.add_token(
        "alice-token",
        UserInfo::new("alice", &["system:authenticated"]),
    );
    double.add_token(
        "fleet-delete-guard-token",
        UserInfo::service_account(NS, SERVICE),
    );
    double.enforce_rbac(true);
    let dir = args.dir.clone();
    double
        .write_kubeconfig_for(dir.join("kubeconfig"), "alice-token", "default")
        .and_then(|_| {
            double.write_kubeconfig_for(
                dir.join("webhook.kubeconfig"),
                "fleet-delete-guard-token",
                NS,
            )
        })
        .map_err(|e| format!("cannot write kubeconfigs: {e}"))?;

    let (listen, metrics) = start_webhook(&dir, &args.policy)?;
    wait_ready(metrics, Duration::from_secs(30)).await?;
    double.set_service_endpoint(NS, SERVICE, listen);
    let demo = Demo {
        kubectl,
        dir: dir.clone(),
    };

    println!("fleet-delete-guard local demo");
    println!(
        "  kube-apiserver (the project's API double): {}",
        double.url()
    );
    println!("    deploy/ installed (kubectl kustomize deploy/), RBAC from deploy/ enforced");
    println!("  webhook: https://{listen}/validate, metrics and probes http://{metrics}/");
    println!(
        "    certificate bootstrapped into Secret {NS}/fleet-delete-guard-tls, caBundle written"
    );
    println!(
        "  you are alice (a cluster admin): KUBECONFIG={}",
        dir.join("kubeconfig").display()
    );
    println!(
        "  GitRepo fleet-local/lots deploys 11 ConfigMaps in 3 bundles; webhook policy: {}",
        args.policy
    );

    demo.show(&["get", "gitrepo", "lots", "-n", "fleet-local", "-o", COUNTS])
        .await;
    double.clear_requests();
    let deleted = demo
        .show(&["delete", "configmap", "test-config2-one"])
        .await;

    let mut problem = None;
    if !deleted.ok && args.policy != "deny" {
        problem = Some("kubectl could not delete the ConfigMap".to_string());
    }
    if deleted.ok {
        let start = Instant::now();
        let counted = double
            .wait_for(
                &gvr::GITREPOS,
                "fleet-local",
                "lots",
                |r| r["status"]["resourceCounts"]["missing"] == 1,
                Duration::from_secs(10),
            )
            .await
            .is_ok();
        demo.show(&["get", "gitrepo", "lots", "-n", "fleet-local", "-o", COUNTS])
            .await;
        if counted {
            let log = double.requests();
            let delete_at = log
                .iter()
                .find(|r| r.verb == Verb::Delete && r.name.as_deref() == Some("test-config2-one"))
                .map(|r| r.at);
            let patch_at = log
                .iter()
                .find(|r| {
                    r.verb == Verb::Patch && r.resource() == "gitrepos" && r.status == Some(200)
                })
                .map(|r| r.at);
            if let (Some(d), Some(p)) = (delete_at, patch_at) {
                println!(
                    "  ↳ 11/11 → 10/11 {} ms after kube-apiserver received the DELETE (Fleet alone: about 8–10 s)",
                    p.saturating_sub(d).as_millis()
                );
            }
        } else {
            println!(
                "  ↳ not counted within {:?}; see {}",
                start.elapsed(),
                dir.join("webhook.log").display()
            );
            problem = Some("the deletion was not counted".into());
        }
        // The Event is published right after the status patch.
        let _ = double
            .wait_for_count(Verb::Create, "events", None, 1, Duration::from_secs(5))
            .await;
        demo.show(&[
            "get",
            "events.events.k8s.io",
            "-n",
            "fleet-local",
            "-o",
            "jsonpath={range .items[*]}{.type}  {.reason}  {.regarding.kind}/{.regarding.name}: {.note}{\"\\n\"}{end}",
        ])
        .await;
    }

    let audit_log = dir.join("audit.log");
    let _ = double.write_audit_log(&audit_log);
    if let Some(event) = double
        .audit_events()
        .iter()
        .rev()
        .find(|e| e["objectRef"]["name"] == "test-config2-one")
    {
        println!("\nAudit annotations kube-apiserver stored with the DELETE (audit.k8s.io/v1, level Metadata):");
        let annotations = event["annotations"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (k, v) in annotations
            .iter()
            .filter(|(k, _)| !k.starts_with("authorization.k8s.io/"))
        {
            println!("  {k}: {}", v.as_str().unwrap_or(""));
        }
        println!(
            "  (the audit log is {}; `cargo run -- audit {}` reports it)",
            audit_log.display(),
            audit_log.display()
        );
    }

    if let Some(p) = problem {
        return Err(format!(
            "{p}; the webhook's log is {}",
            dir.join("webhook.log").display()
        ));
    }
    if args.no_wait {
        return Ok(());
    }
    let kc = dir.join("kubeconfig");
    println!("\nLeft running for your own kubectl commands; Ctrl-C stops it.");
    println!("  export KUBECONFIG={}", kc.display());
    println!("  kubectl get configmaps");
    println!(
        "  kubectl get gitrepo lots -n fleet-local -o {}",
        shell_quote(COUNTS)
    );
    println!(
        "  kubectl delete configmap test-config1-one --dry-run=server   # warned, not counted"
    );
    println!("  kubectl delete configmap test-config1-one                    # warned, counted");
    println!(
        "  kubectl get gitrepo lots -n fleet-local -o jsonpath='{{.status.display}}{{\"\\n\"}}'"
    );
    println!("  curl -s http://{metrics}/metrics | grep fleet_delete_guard_status");
    println!("  webhook log: {}", dir.join("webhook.log").display());
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    let _ = double.write_audit_log(&audit_log);
    println!(
        "\nstopped; the audit log of the session is {}",
        audit_log.display()
    );
    Ok(())
}
