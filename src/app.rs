//! Wiring for `serve`: turns the command line into typed settings and running listeners.

use std::{path::PathBuf, sync::Arc, time::Duration};

use axum_server::tls_rustls::RustlsConfig;

use crate::{
    admission::{Admission, BreakerGate, DeletionSink, NoCounting, ObjectOnly, OwnerResolver},
    breaker::{
        shared::{BreakerContext, Breakers},
        BreakerMode,
    },
    cli::{PatchGitRepo, ServeArgs},
    cluster::{self, FleetCluster},
    counting::{self, COUNTING_CHECK},
    health::Readiness,
    metrics::Metrics,
    patcher::{marks::MarkTimings, PatcherConfig},
    policy::DecisionConfig,
    server::{self, ListenConfig, Listeners, Services},
    tls::{self, CertFiles, TlsError},
};

/// Validity of the certificate generated for local use.
const GENERATED_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error(transparent)]
    Certs(#[from] crate::certs::CertError),
    #[error(transparent)]
    WebhookConfig(#[from] crate::webhook_config::ManifestError),
}

impl ServeArgs {
    pub fn decision_config(&self) -> DecisionConfig {
        DecisionConfig {
            policy: self.policy,
            fleet_identities: self.fleet_identities.clone(),
            controller_identities: self.controller_identities.clone(),
            break_glass_groups: self.break_glass_groups.clone(),
        }
    }

    pub fn listen_config(&self) -> ListenConfig {
        ListenConfig {
            listen: self.listen,
            metrics_listen: self.metrics_listen,
            request_timeout: self.request_timeout,
            max_concurrent_reviews: self.max_concurrent_reviews,
            shutdown_grace: self.shutdown_grace,
            connections: self.connections.config(self.tls_reload_interval),
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Run `serve` until SIGTERM.
pub async fn serve(args: ServeArgs) -> Result<(), AppError> {
    let metrics = Metrics::new();
    let readiness = Readiness::default();
    let listeners = Listeners::bind(&args.listen_config())?;
    // Checked before anything starts: a manifest that does not parse is a usage error.
    let intended = match &args.cert_bootstrap.webhook_config {
        Some(name) => Some(args.tamper.intended(
            name,
            &args.cert_bootstrap.namespace,
            &args.cert_bootstrap.service_name,
        )?),
        None => None,
    };
    let ca_link = crate::certs::CaBundleLink::default();
    // With --cert-secret: the bootstrapped pair in --cert-dir; else --tls-cert/--tls-key.
    let bootstrap = args.cert_bootstrap.bootstrap();
    let ca_managed = bootstrap.is_some();
    let files = match bootstrap {
        Some(boot) => Some(crate::certs::bootstrap(boot, &readiness, ca_link.clone()).await?),
        None => args
            .tls_cert
            .clone()
            .zip(args.tls_key.clone())
            .map(|(cert, key)| CertFiles { cert, key }),
    };

    let tls = match files {
        Some(files) => {
            let (config, loaded) = files.load()?;
            let loaded_from = format!("certificate loaded from {}", files.cert.display());
            let served = RustlsConfig::from_config(config);
            tokio::spawn(tls::reload_on_change(
                files,
                served.clone(),
                loaded,
                args.tls_reload_interval,
                metrics.clone(),
            ));
            readiness.set("tls", true, loaded_from);
            served
        }
        None => {
            let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
            let generated = tls::generate_certificates(&names, GENERATED_VALIDITY)?;
            let ca_file = args
                .generated_ca_file
                .clone()
                .unwrap_or_else(default_generated_ca_file);
            tls::write_file_atomically(&ca_file, generated.ca_pem.as_bytes())?;
            tracing::warn!(
                ca_file = %ca_file.display(),
                "no --tls-cert/--tls-key given: serving a generated certificate for localhost and 127.0.0.1; \
                 trust the CA in ca_file to call it (for local use only)"
            );
            let config =
                tls::server_config(generated.cert_pem.as_bytes(), generated.key_pem.as_bytes())?;
            readiness.set(
                "tls",
                true,
                format!("generated certificate, CA in {}", ca_file.display()),
            );
            RustlsConfig::from_config(config)
        }
    };

    if let Some(intended) = intended {
        start_webhook_config_watch(
            &args,
            intended,
            ca_managed.then_some(ca_link),
            &metrics,
            &readiness,
        )
        .await;
    }
    let (owners, sink, breaker) = start_counting(&args, &metrics, &readiness).await;
    let admission = Arc::new(
        Admission::new(args.decision_config(), owners, sink)
            .with_metrics(metrics.clone())
            .with_breaker(breaker),
    );
    tracing::info!(
        listen = %listeners.webhook_addr().map(|a| a.to_string()).unwrap_or_default(),
        metrics_listen = %listeners.metrics_addr().map(|a| a.to_string()).unwrap_or_default(),
        policy = args.policy.as_str(),
        "fleet-delete-guard serving"
    );
    server::serve(
        listeners,
        args.listen_config(),
        Services {
            admission,
            metrics,
            readiness,
            tls,
        },
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

/// What the admission path is given: owner lookup, counting, the breaker.
type Started = (
    Arc<dyn OwnerResolver>,
    Arc<dyn DeletionSink>,
    Option<Arc<dyn BreakerGate>>,
);

/// Connect and start counting; with no cluster, say so and answer reviews anyway.
async fn start_counting(args: &ServeArgs, metrics: &Metrics, readiness: &Readiness) -> Started {
    let off = |reason: String| -> Started {
        tracing::warn!(reason = %reason, "counting is off: reviews are answered, deletions are not counted in Fleet's status");
        if args.breaker.mode != BreakerMode::Off {
            tracing::warn!("the mass-deletion breaker is off too: it needs the owner index");
        }
        readiness.set(COUNTING_CHECK, true, format!("off: {reason}"));
        (Arc::new(ObjectOnly), Arc::new(NoCounting), None)
    };
    if !args.counting {
        return off("disabled by --counting=false".into());
    }
    let cluster: FleetCluster = match args.fleet.fleet_cluster.parse::<FleetCluster>() {
        Ok(c) => c.with_bundle_deployment_namespace(args.fleet.fleet_cluster_namespace.as_deref()),
        Err(e) => return off(e.to_string()),
    };
    let clients = match cluster::connect(args.fleet.fleet_kubeconfig.as_ref()).await {
        Ok(c) => c,
        Err(e) => return off(e.to_string()),
    };
    let config = args.patcher_config(clients.separate_fleet);
    let mode = if clients.separate_fleet {
        "downstream"
    } else {
        "same-cluster"
    };
    readiness.set(
        COUNTING_CHECK,
        true,
        format!(
            "on: {mode} mode, cluster {cluster} (BundleDeployments in {}), GitRepo patches {}",
            cluster.bundle_deployment_namespace,
            if config.patch_gitrepo { "on" } else { "off" }
        ),
    );
    tracing::info!(
        mode, cluster = %cluster, bundledeployment_namespace = %cluster.bundle_deployment_namespace,
        patch_gitrepo = config.patch_gitrepo, "counting deletions"
    );
    // The watches, the patcher and the resync spawn their tasks on the background
    // runtime (src/background.rs); without one, on the webhook's workers. The breaker's
    // tasks stay on the workers: counted deletions wait for them.
    let background = crate::background::start()
        .map_err(|e| tracing::warn!(error = %e, "no background thread; counting runs on the webhook's workers"))
        .ok();
    let counting = {
        let _entered = background.as_ref().map(|h| h.enter());
        counting::start(
            &clients,
            &cluster,
            args.fleet.agent_scopes.clone(),
            config,
            metrics.clone(),
            readiness.clone(),
        )
    };
    {
        let (flag, fleet, patcher, metrics, readiness) = (
            args.fleet_version.clone(),
            clients.fleet.clone(),
            counting.patcher.clone(),
            metrics.clone(),
            readiness.clone(),
        );
        tokio::spawn(async move {
            crate::fleet_version::resolve(Some(&flag), &fleet, &patcher, &metrics, &readiness)
                .await;
        });
    }
    let breaker_config = args.breaker.config(&args.cert_bootstrap.namespace);
    let breaker: Option<Arc<dyn BreakerGate>> =
        (breaker_config.mode != BreakerMode::Off).then(|| {
            tracing::info!(
                mode = breaker_config.mode.as_str(),
                max_deletions = breaker_config.max_deletions,
                max_fraction = breaker_config.max_fraction,
                window_s = breaker_config.window.as_secs_f64(),
                protect = ?breaker_config.protected_kinds,
                namespace = %breaker_config.namespace,
                "mass-deletion breaker on"
            );
            let breakers = Breakers::start(
                breaker_config.clone(),
                args.decision_config(),
                BreakerContext {
                    client: clients.cluster.clone(),
                    events: Some(counting.patcher.event_queue()),
                    metrics: metrics.clone(),
                    readiness: readiness.clone(),
                    instance: config_instance(),
                },
            );
            Arc::new(breakers) as Arc<dyn BreakerGate>
        });
    (counting.index, Arc::new(counting.patcher), breaker)
}

/// Watch the webhook's own configuration (src/webhook_config/); `ca` when the
/// certificate bootstrap manages the caBundle.
async fn start_webhook_config_watch(
    args: &ServeArgs,
    intended: crate::webhook_config::Intended,
    ca: Option<crate::certs::CaBundleLink>,
    metrics: &Metrics,
    readiness: &Readiness,
) {
    use crate::webhook_config::watch;
    let client = match kube::Config::infer().await.map(kube::Client::try_from) {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return watch_off(readiness, e.to_string()),
        Err(e) => return watch_off(readiness, e.to_string()),
    };
    let restore = args.tamper.restore();
    tracing::info!(
        webhook_config = intended.name(),
        manifest = %args.tamper.webhook_config_manifest.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "deploy/base/webhook.yaml (compiled in)".into()),
        restore = restore.is_some(),
        "watching the webhook configuration"
    );
    tokio::spawn(watch::run(watch::Settings {
        client,
        intended,
        ca_bundle: ca.as_ref().map(|l| l.ca_bundle.subscribe()),
        sync_ca_bundle: ca.map(|l| l.sync_now),
        restore,
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        instance: config_instance(),
    }));
}

fn watch_off(readiness: &Readiness, reason: String) {
    tracing::warn!(reason = %reason, "the webhook configuration is not watched: no cluster connection");
    readiness.set(
        crate::webhook_config::watch::READINESS_CHECK,
        true,
        format!("not watched: {reason}"),
    );
}

fn config_instance() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "fleet-delete-guard".into())
}

impl ServeArgs {
    pub fn patcher_config(&self, separate_fleet: bool) -> PatcherConfig {
        let defaults = PatcherConfig::default();
        PatcherConfig {
            patch_gitrepo: match self.patch_gitrepo {
                PatchGitRepo::Always => true,
                PatchGitRepo::Never => false,
                PatchGitRepo::Auto => !separate_fleet,
            },
            queue_capacity: self.queue_capacity,
            probe_rate: self.probe_rate,
            sweep_rate: self.resync_rederive_rate,
            marks: MarkTimings {
                confirm_timeout: self.confirm_timeout,
                ttl: self.mark_ttl,
                ..defaults.marks.clone()
            },
            resync_interval: self.resync_interval,
            instance: config_instance(),
            ..defaults
        }
    }
}

/// Default CA path, for the docs.
pub fn default_generated_ca_file() -> PathBuf {
    std::env::temp_dir().join("fleet-delete-guard-ca.pem")
}
