//! Wiring for `serve`: turns the CLI arguments into running listeners.

use std::{path::PathBuf, sync::Arc, time::Duration};

use axum_server::tls_rustls::RustlsConfig;

use crate::{
    admission::{Admission, NoCounting, ObjectOnly},
    cli::ServeArgs,
    health::Readiness,
    metrics::Metrics,
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

    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let files = CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            let (config, loaded) = files.load()?;
            let served = RustlsConfig::from_config(config);
            tokio::spawn(tls::reload_on_change(
                files,
                served.clone(),
                loaded,
                args.tls_reload_interval,
                metrics.clone(),
            ));
            readiness.set(
                "tls",
                true,
                format!("certificate loaded from {}", cert.display()),
            );
            served
        }
        _ => {
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

    let admission = Arc::new(Admission::new(
        args.decision_config(),
        Arc::new(ObjectOnly),
        Arc::new(NoCounting),
    ));
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

/// Default CA path, for the docs.
pub fn default_generated_ca_file() -> PathBuf {
    std::env::temp_dir().join("fleet-delete-guard-ca.pem")
}
