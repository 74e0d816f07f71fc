//! Command-line interface. Every flag can also be set by an environment variable
//! (`FLEET_DELETE_GUARD_*`); repeatable flags take a comma-separated list there.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::policy::{Policy, DEFAULT_CONTROLLER_IDENTITIES, DEFAULT_FLEET_IDENTITIES};

#[derive(Debug, Parser)]
#[command(
    name = "fleet-delete-guard",
    version,
    about = "Validating admission webhook that tells Fleet at once when someone deletes a Fleet-managed object"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the webhook server.
    Serve(Box<ServeArgs>),
    /// Report deletions of Fleet-managed objects from kube-apiserver audit logs.
    Audit(crate::auditlog::AuditArgs),
    // --- certificates (src/certs.rs) ---
    /// Write a CA and a serving certificate for given DNS names into files.
    Certs(crate::certs::CertsArgs),
}

/// Whether to patch the GitRepo status besides the BundleDeployment status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PatchGitRepo {
    /// Yes in the same-cluster mode, no with --fleet-kubeconfig (downstream credentials
    /// of a Fleet agent may write only BundleDeployments).
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

pub(crate) fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("{s:?} must be a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// HTTPS address for AdmissionReviews (POST /validate).
    #[arg(
        long,
        env = "FLEET_DELETE_GUARD_LISTEN",
        default_value = "0.0.0.0:9443"
    )]
    pub listen: SocketAddr,

    /// Plain-HTTP address for /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "FLEET_DELETE_GUARD_METRICS_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_listen: SocketAddr,

    /// PEM certificate chain. Without --tls-cert/--tls-key a CA and a certificate for
    /// localhost/127.0.0.1 are generated at start-up (for trying it locally).
    #[arg(long, env = "FLEET_DELETE_GUARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key matching --tls-cert.
    #[arg(long, env = "FLEET_DELETE_GUARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// How often the certificate files are checked for changes (seconds).
    #[arg(long, env = "FLEET_DELETE_GUARD_TLS_RELOAD_INTERVAL", default_value = "10", value_parser = parse_seconds)]
    pub tls_reload_interval: Duration,

    /// Where the generated CA is written when no certificate is given.
    #[arg(long, env = "FLEET_DELETE_GUARD_GENERATED_CA_FILE")]
    pub generated_ca_file: Option<PathBuf>,

    /// What to do when a user deletes a Fleet-managed object.
    #[arg(
        long,
        env = "FLEET_DELETE_GUARD_POLICY",
        value_enum,
        default_value = "warn"
    )]
    pub policy: Policy,

    /// User name or group whose deletions are Fleet's own: allowed silently, never counted.
    #[arg(long = "fleet-identity", env = "FLEET_DELETE_GUARD_FLEET_IDENTITY", value_delimiter = ',',
          default_values = DEFAULT_FLEET_IDENTITIES)]
    pub fleet_identities: Vec<String>,

    /// User name or group of a Kubernetes controller: allowed silently, never denied, counted.
    #[arg(long = "controller-identity", env = "FLEET_DELETE_GUARD_CONTROLLER_IDENTITY", value_delimiter = ',',
          default_values = DEFAULT_CONTROLLER_IDENTITIES)]
    pub controller_identities: Vec<String>,

    /// Group whose members may delete under --policy deny (with a warning).
    #[arg(
        long = "break-glass-group",
        env = "FLEET_DELETE_GUARD_BREAK_GLASS_GROUP",
        value_delimiter = ','
    )]
    pub break_glass_groups: Vec<String>,

    /// Bound on one request: TLS handshake, headers, body and answer (seconds).
    /// Keep it below the webhook's timeoutSeconds.
    #[arg(long, env = "FLEET_DELETE_GUARD_REQUEST_TIMEOUT", default_value = "4", value_parser = parse_seconds)]
    pub request_timeout: Duration,

    /// Reviews processed at once; more wait for a slot within the request timeout.
    #[arg(
        long,
        env = "FLEET_DELETE_GUARD_MAX_CONCURRENT_REVIEWS",
        default_value_t = 1024
    )]
    pub max_concurrent_reviews: usize,

    /// Time in-flight reviews get to finish after SIGTERM (seconds).
    #[arg(long, env = "FLEET_DELETE_GUARD_SHUTDOWN_GRACE", default_value = "20", value_parser = parse_seconds)]
    pub shutdown_grace: Duration,

    /// Count deletions in Fleet's status (needs a cluster connection).
    #[arg(long, env = "FLEET_DELETE_GUARD_COUNTING", default_value_t = true, action = clap::ArgAction::Set)]
    pub counting: bool,

    /// Kubeconfig of the Fleet management cluster, when it is not this cluster.
    #[arg(long, env = "FLEET_DELETE_GUARD_FLEET_KUBECONFIG")]
    pub fleet_kubeconfig: Option<PathBuf>,

    /// This cluster's Fleet Cluster object, NAMESPACE/NAME.
    #[arg(
        long,
        env = "FLEET_DELETE_GUARD_FLEET_CLUSTER",
        default_value = "fleet-local/local"
    )]
    pub fleet_cluster: String,

    /// Namespace of this cluster's BundleDeployments in the Fleet cluster (the Cluster's
    /// status.namespace). Default: derived from --fleet-cluster by Fleet's naming rule.
    #[arg(long, env = "FLEET_DELETE_GUARD_FLEET_CLUSTER_NAMESPACE")]
    pub fleet_cluster_namespace: Option<String>,

    /// Patch the GitRepo status too (auto: only without --fleet-kubeconfig).
    #[arg(
        long,
        env = "FLEET_DELETE_GUARD_PATCH_GITREPO",
        value_enum,
        default_value = "auto"
    )]
    pub patch_gitrepo: PatchGitRepo,

    /// Fleet agent scopes (AGENT_SCOPE) tried when matching setIDs; "" is standalone Fleet.
    #[arg(long = "agent-scope", env = "FLEET_DELETE_GUARD_AGENT_SCOPE", value_delimiter = ',',
          default_values = crate::owners::DEFAULT_AGENT_SCOPES)]
    pub agent_scopes: Vec<String>,

    /// Deletions waiting to be counted at most; more are refused and counted in a metric.
    #[arg(
        long,
        env = "FLEET_DELETE_GUARD_QUEUE_CAPACITY",
        default_value_t = 10_000
    )]
    pub queue_capacity: usize,

    /// How long a counted object may stay before the mark is reverted as "not deleted" (seconds).
    #[arg(long, env = "FLEET_DELETE_GUARD_CONFIRM_TIMEOUT", default_value = "5", value_parser = parse_seconds)]
    pub confirm_timeout: Duration,

    /// How long a mark is watched over (re-applied, released when the object returns) (seconds).
    #[arg(long, env = "FLEET_DELETE_GUARD_MARK_TTL", default_value = "900", value_parser = parse_seconds)]
    pub mark_ttl: Duration,

    // --- certificate bootstrap (src/certs.rs): --cert-secret, --webhook-config, ... ---
    #[command(flatten)]
    pub cert_bootstrap: crate::certs::BootstrapArgs,

    // --- webhook port (src/listener.rs): --max-connections, --client-ca, --client-cert-name ---
    #[command(flatten)]
    pub connections: crate::listener::ConnectionArgs,

    /// How often this cluster's deployed resources are compared with what exists, to
    /// count deletions made while no replica was running (seconds; also once at start).
    #[arg(long, env = "FLEET_DELETE_GUARD_RESYNC_INTERVAL", default_value = "300", value_parser = parse_seconds)]
    pub resync_interval: Duration,

    // --- mass-deletion breaker (src/breaker/): --breaker, --breaker-max-deletions, ... ---
    #[command(flatten)]
    pub breaker: BreakerArgs,

    /// Log format: json (one object per line, for clusters) or text.
    #[arg(
        long,
        env = "FLEET_DELETE_GUARD_LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    pub log_format: LogFormat,
}

/// The mass-deletion breaker (README, "Mass-deletion breaker").
#[derive(Debug, Clone, Args)]
pub struct BreakerArgs {
    /// off, observe (report trips only) or enforce (also refuse deletions of a tripped
    /// owner's objects until reset).
    #[arg(
        id = "breaker_mode",
        long = "breaker",
        env = "FLEET_DELETE_GUARD_BREAKER",
        value_enum,
        default_value = "observe"
    )]
    pub mode: crate::breaker::BreakerMode,

    /// Trip when more deletions of one owner's objects than this fall in the window.
    #[arg(
        id = "breaker_max_deletions",
        long = "breaker-max-deletions",
        env = "FLEET_DELETE_GUARD_BREAKER_MAX_DELETIONS",
        default_value_t = 20
    )]
    pub max_deletions: u32,

    /// Trip when more than this fraction of the owner's desiredReady is deleted in the
    /// window (and at least 5); 0 turns the rule off.
    #[arg(id = "breaker_max_fraction", long = "breaker-max-fraction", env = "FLEET_DELETE_GUARD_BREAKER_MAX_FRACTION",
          default_value = "0.5", value_parser = parse_fraction)]
    pub max_fraction: f64,

    /// The sliding window (seconds).
    #[arg(id = "breaker_window", long = "breaker-window", env = "FLEET_DELETE_GUARD_BREAKER_WINDOW", default_value = "60",
          value_parser = parse_seconds)]
    pub window: Duration,

    /// Kinds whose deletion by Fleet's agent trips the breaker at once.
    #[arg(id = "breaker_protect", long = "breaker-protect", env = "FLEET_DELETE_GUARD_BREAKER_PROTECT", value_delimiter = ',',
          default_values = crate::breaker::DEFAULT_PROTECTED_KINDS)]
    pub protect: Vec<String>,

    /// Namespace of the Leases recording open breakers (default: the pod's namespace).
    #[arg(
        id = "breaker_namespace",
        long = "breaker-namespace",
        env = "FLEET_DELETE_GUARD_BREAKER_NAMESPACE"
    )]
    pub namespace: Option<String>,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("{s:?} must be a fraction between 0 and 1")),
    }
}

impl BreakerArgs {
    /// The pure breaker's configuration; `pod_namespace` unless --breaker-namespace.
    pub fn config(&self, pod_namespace: &str) -> crate::breaker::BreakerConfig {
        crate::breaker::BreakerConfig {
            mode: self.mode,
            max_deletions: self.max_deletions,
            max_fraction: self.max_fraction,
            window: self.window,
            protected_kinds: self
                .protect
                .iter()
                .map(|k| k.trim().to_ascii_lowercase())
                .filter(|k| !k.is_empty())
                .collect(),
            namespace: self
                .namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| pod_namespace.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_docs() {
        let cli = Cli::try_parse_from(["fleet-delete-guard", "serve"]).expect("parse");
        let Command::Serve(a) = cli.command else {
            panic!("serve")
        };
        assert_eq!(a.listen.port(), 9443);
        assert_eq!(a.metrics_listen.port(), 8080);
        assert_eq!(a.policy, Policy::Warn);
        assert_eq!(a.fleet_identities, DEFAULT_FLEET_IDENTITIES);
        assert_eq!(a.controller_identities, DEFAULT_CONTROLLER_IDENTITIES);
        assert!(a.break_glass_groups.is_empty());
        let b = a.breaker.config("cattle-fleet-system");
        assert_eq!(b, crate::breaker::BreakerConfig::default());
    }

    #[test]
    fn breaker_flags_parse_and_reject_bad_values() {
        let cli = Cli::try_parse_from([
            "fleet-delete-guard",
            "serve",
            "--breaker",
            "enforce",
            "--breaker-max-deletions",
            "5",
            "--breaker-max-fraction",
            "0",
            "--breaker-window",
            "0.5",
            "--breaker-protect",
            "Namespace, Secret",
            "--breaker-namespace",
            "guard",
        ])
        .expect("parse");
        let Command::Serve(a) = cli.command else {
            panic!("serve")
        };
        let b = a.breaker.config("ignored");
        assert_eq!(b.mode, crate::breaker::BreakerMode::Enforce);
        assert_eq!((b.max_deletions, b.max_fraction), (5, 0.0));
        assert_eq!(b.window, Duration::from_millis(500));
        assert_eq!(b.protected_kinds, ["namespace", "secret"]);
        assert_eq!(b.namespace, "guard");
        for bad in [
            ["--breaker", "on"],
            ["--breaker-max-fraction", "1.5"],
            ["--breaker-max-fraction", "x"],
            ["--breaker-window", "0"],
        ] {
            let mut args = vec!["fleet-delete-guard", "serve"];
            args.extend(bad);
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn repeatable_flags_and_bad_values() {
        let cli = Cli::try_parse_from([
            "fleet-delete-guard",
            "serve",
            "--policy",
            "deny",
            "--break-glass-group",
            "a",
            "--break-glass-group",
            "b,c",
        ])
        .expect("parse");
        let Command::Serve(a) = cli.command else {
            panic!("serve")
        };
        assert_eq!(a.break_glass_groups, ["a", "b", "c"]);
        assert!(Cli::try_parse_from(["fleet-delete-guard", "serve", "--policy", "block"]).is_err());
        assert!(
            Cli::try_parse_from(["fleet-delete-guard", "serve", "--request-timeout", "-1"])
                .is_err()
        );
        assert!(
            Cli::try_parse_from(["fleet-delete-guard", "serve", "--tls-cert", "x"]).is_err(),
            "cert needs key"
        );
    }
}
