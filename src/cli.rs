//! The command line: every clap struct of the three subcommands (`serve`, `audit`'s
//! [`AuditArgs`], `certs`), one duration grammar ([`parse_duration`]), and the
//! conversions into the typed settings of the modules that act on them
//! ([`certs::Bootstrap`], [`certs::CertsOptions`], [`ConnectionConfig`]).
//!
//! Every flag can also be set by an environment variable (`FLEET_DELETE_GUARD_*`);
//! repeatable flags take a comma-separated list there.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    auditlog::AuditArgs,
    certs::{self, Bootstrap, CertsOptions, RenewalPolicy},
    listener::{ConnectionConfig, DEFAULT_MAX_CONNECTIONS},
    owners::DEFAULT_AGENT_SCOPES,
    policy::{Policy, DEFAULT_CONTROLLER_IDENTITIES, DEFAULT_FLEET_IDENTITIES},
};

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
    #[command(after_help = DURATION_HELP)]
    Serve(Box<ServeArgs>),
    /// Report deletions of Fleet-managed objects from kube-apiserver audit logs.
    Audit(AuditArgs),
    /// Compare the status Fleet reports with the objects that exist (read-only).
    Verify(VerifyArgs),
    /// Write a CA and a serving certificate for given DNS names into files.
    #[command(after_help = DURATION_HELP)]
    Certs(CertsArgs),
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

/// The grammar of every duration flag, as its help says: a positive decimal number
/// with an optional unit, `s` (the default), `m`, `h` or `d`: `4`, `0.5`, `1.5s`,
/// `90m`, `12h`, `30d`.
pub const DURATION_GRAMMAR: &str =
    "a positive number with an optional unit s (default), m, h or d: 4, 0.5s, 90m, 12h, 30d";

const DURATION_HELP: &str = "Durations: a positive number with an optional unit s (default), m, h or d: 4, 0.5s, 90m, 12h, 30d.";

/// Parse a duration flag ([`DURATION_GRAMMAR`]).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let number = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let factor = match &t[number.len()..] {
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration ({DURATION_GRAMMAR})"))?;
    let secs = value * factor;
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("{s:?} must be a positive duration"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} must be a positive whole number")),
    }
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

    /// How often the certificate files (and --client-ca) are checked for changes (duration).
    #[arg(long, env = "FLEET_DELETE_GUARD_TLS_RELOAD_INTERVAL", default_value = "10", value_parser = parse_duration)]
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

    /// Bound on one request: TLS handshake, headers, body and answer (duration).
    /// Keep it below the webhook's timeoutSeconds.
    #[arg(long, env = "FLEET_DELETE_GUARD_REQUEST_TIMEOUT", default_value = "4", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Threads that answer reviews (TLS, parsing, the decision, the answer). One answers
    /// over 20,000 reviews a second; counting's watches, resync and patcher run on a
    /// thread of their own. More threads cost CPU per review in wake-ups between them
    /// (BENCHMARKS.md, "Beside the kube-rs admission example").
    #[arg(
        long,
        env = "FLEET_DELETE_GUARD_WORKER_THREADS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=256)
    )]
    pub worker_threads: u16,

    /// Reviews processed at once; more wait for a slot within the request timeout.
    #[arg(
        long,
        env = "FLEET_DELETE_GUARD_MAX_CONCURRENT_REVIEWS",
        default_value_t = 1024
    )]
    pub max_concurrent_reviews: usize,

    /// Time in-flight reviews get to finish after SIGTERM (duration).
    #[arg(long, env = "FLEET_DELETE_GUARD_SHUTDOWN_GRACE", default_value = "20", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Count deletions in Fleet's status (needs a cluster connection).
    #[arg(long, env = "FLEET_DELETE_GUARD_COUNTING", default_value_t = true, action = clap::ArgAction::Set)]
    pub counting: bool,

    #[command(flatten)]
    pub fleet: FleetClusterArgs,

    /// Patch the GitRepo status too (auto: only without --fleet-kubeconfig).
    #[arg(
        long,
        env = "FLEET_DELETE_GUARD_PATCH_GITREPO",
        value_enum,
        default_value = "auto"
    )]
    pub patch_gitrepo: PatchGitRepo,

    /// Fleet's version (e.g. v0.14.3), whose status rules the writes follow. `auto`:
    /// read from Deployment cattle-fleet-system/fleet-controller's image; when that
    /// fails, the newest known rules (logged once).
    #[arg(long, env = "FLEET_DELETE_GUARD_FLEET_VERSION", default_value = "auto",
          value_parser = parse_fleet_version)]
    pub fleet_version: String,

    /// Deletions waiting to be counted at most; more are refused and counted in a metric.
    #[arg(
        long,
        env = "FLEET_DELETE_GUARD_QUEUE_CAPACITY",
        default_value_t = 10_000
    )]
    pub queue_capacity: usize,

    /// How long a counted object may stay before the mark is reverted as "not deleted" (duration).
    #[arg(long, env = "FLEET_DELETE_GUARD_CONFIRM_TIMEOUT", default_value = "5", value_parser = parse_duration)]
    pub confirm_timeout: Duration,

    /// How long a mark is watched over (re-applied, released when the object returns) (duration).
    #[arg(long, env = "FLEET_DELETE_GUARD_MARK_TTL", default_value = "900", value_parser = parse_duration)]
    pub mark_ttl: Duration,

    /// Requests per second at most (a tick's worth saved up) that check whether counted
    /// objects are still gone or came back: one metadata LIST per kind and namespace,
    /// a GET for a lone object.
    #[arg(long, env = "FLEET_DELETE_GUARD_PROBE_RATE", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub probe_rate: u32,

    /// Owners per second at most whose status the resync's sweep re-derives from their
    /// BundleDeployments (one GET and one LIST each): every owner once per resync,
    /// spread out instead of in one burst. Changes under counted deletions re-derive
    /// at once, whatever this says.
    #[arg(long, env = "FLEET_DELETE_GUARD_RESYNC_REDERIVE_RATE", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub resync_rederive_rate: u32,

    /// --cert-secret, --webhook-config, …: the certificate bootstrap.
    #[command(flatten)]
    pub cert_bootstrap: BootstrapArgs,

    /// --max-connections, --idle-timeout, --client-ca, --client-cert-name.
    #[command(flatten)]
    pub connections: ConnectionArgs,

    /// How often this cluster's deployed resources are compared with what exists, to
    /// count deletions made while no replica was running (duration; also once at start).
    #[arg(long, env = "FLEET_DELETE_GUARD_RESYNC_INTERVAL", default_value = "300", value_parser = parse_duration)]
    pub resync_interval: Duration,

    // --- webhook configuration tamper evidence (src/webhook_config/) ---
    #[command(flatten)]
    pub tamper: WebhookConfigArgs,

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

    /// How long info and debug lines may wait in memory before they are written to
    /// stderr, as Kubernetes' own `--log-flush-frequency` (duration, or 0: every line at
    /// once). Warnings and errors are written at once, with whatever waits before them;
    /// a clean stop writes everything. Writing a line costs a system call: at the rates
    /// of a mass deletion, batching them is a measured part of a review's CPU
    /// (BENCHMARKS.md, "The log line").
    #[arg(
        long,
        env = "FLEET_DELETE_GUARD_LOG_FLUSH_INTERVAL",
        default_value = "0.1s",
        value_parser = parse_flush_interval
    )]
    pub log_flush_interval: Duration,
}

/// A duration, or `0` for none.
fn parse_flush_interval(s: &str) -> Result<Duration, String> {
    let number = s.trim().trim_end_matches('s').parse::<f64>();
    if number.is_ok_and(|n| n == 0.0) {
        Ok(Duration::ZERO)
    } else {
        parse_duration(s)
    }
}

/// `auto`, or a Fleet version such as `v0.14.3`.
fn parse_fleet_version(s: &str) -> Result<String, String> {
    if s == "auto" {
        return Ok(s.to_string());
    }
    crate::fleet::release::parse_version(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// `serve` flags of the certificate bootstrap (src/certs.rs).
#[derive(Debug, Clone, Args)]
pub struct BootstrapArgs {
    /// Keep the CA and serving certificate in this Secret of --namespace (created when
    /// missing, renewed before expiry) and serve it; instead of --tls-cert/--tls-key.
    #[arg(
        long,
        env = "FLEET_DELETE_GUARD_CERT_SECRET",
        conflicts_with = "tls_cert"
    )]
    pub cert_secret: Option<String>,

    /// The webhook's own ValidatingWebhookConfiguration: watched for tampering
    /// (src/webhook_config/) and, with --cert-secret, its caBundle kept equal to the
    /// Secret's CA (its webhooks that call --service-name in --namespace).
    #[arg(long, env = "FLEET_DELETE_GUARD_WEBHOOK_CONFIG")]
    pub webhook_config: Option<String>,

    /// The webhook's own namespace (the pod's, from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "cattle-fleet-system")]
    pub namespace: String,

    /// The Service kube-apiserver calls; the certificate is issued for its DNS names.
    #[arg(
        long,
        env = "FLEET_DELETE_GUARD_SERVICE_NAME",
        default_value = "fleet-delete-guard"
    )]
    pub service_name: String,

    /// DNS names (or IP addresses) of the serving certificate; default: the Service's
    /// names (NAME.NAMESPACE.svc and NAME.NAMESPACE.svc.cluster.local).
    #[arg(
        long = "cert-dns-name",
        env = "FLEET_DELETE_GUARD_CERT_DNS_NAMES",
        value_delimiter = ','
    )]
    pub cert_dns_names: Vec<String>,

    /// Where the served tls.crt/tls.key are written (default $TMPDIR/fleet-delete-guard-certs).
    #[arg(long, env = "FLEET_DELETE_GUARD_CERT_DIR")]
    pub cert_dir: Option<PathBuf>,

    /// Validity of a new serving certificate (duration, e.g. 365d).
    #[arg(long, env = "FLEET_DELETE_GUARD_CERT_VALIDITY", default_value = "365d", value_parser = parse_duration)]
    pub cert_validity: Duration,

    /// Validity of a new CA (duration).
    #[arg(long, env = "FLEET_DELETE_GUARD_CA_VALIDITY", default_value = "3650d", value_parser = parse_duration)]
    pub ca_validity: Duration,

    /// Renew the serving certificate (and the CA) this long before it expires (duration).
    #[arg(long, env = "FLEET_DELETE_GUARD_CERT_RENEW_BEFORE", default_value = "30d", value_parser = parse_duration)]
    pub cert_renew_before: Duration,

    /// How often the Secret is checked (renewal due, renewed by another replica) (duration).
    #[arg(long, env = "FLEET_DELETE_GUARD_CERT_CHECK_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    pub cert_check_interval: Duration,

    /// Give up starting when the Secret cannot be read or written for this long (duration).
    #[arg(long, env = "FLEET_DELETE_GUARD_CERT_BOOTSTRAP_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub cert_bootstrap_timeout: Duration,
}

impl BootstrapArgs {
    /// The bootstrap to run; `None` without --cert-secret.
    pub fn bootstrap(&self) -> Option<Bootstrap> {
        let names = if self.cert_dns_names.is_empty() {
            certs::service_dns_names(&self.service_name, &self.namespace)
        } else {
            self.cert_dns_names.clone()
        };
        Some(Bootstrap {
            namespace: self.namespace.clone(),
            secret: self.cert_secret.clone()?,
            webhook_config: self.webhook_config.clone(),
            service_name: self.service_name.clone(),
            names,
            policy: RenewalPolicy {
                cert_validity: self.cert_validity,
                ca_validity: self.ca_validity,
                renew_before: self.cert_renew_before,
            },
            cert_dir: self
                .cert_dir
                .clone()
                .unwrap_or_else(certs::default_cert_dir),
            check_interval: self.cert_check_interval,
            timeout: self.cert_bootstrap_timeout,
        })
    }
}

// --- webhook configuration tamper evidence (src/webhook_config/) ---
/// `serve` flags of the watch on the webhook's own configuration (--webhook-config).
#[derive(Debug, Clone, Args)]
pub struct WebhookConfigArgs {
    /// The ValidatingWebhookConfiguration as installed, to compare the one in the
    /// cluster with: a file (YAML or JSON), or `builtin:base`, `builtin:breaker`,
    /// `builtin:breaker-fail-closed` (deploy/'s, compiled in, their entries calling
    /// --service-name in --namespace). Default: builtin:base.
    #[arg(long, env = "FLEET_DELETE_GUARD_WEBHOOK_CONFIG_MANIFEST")]
    pub webhook_config_manifest: Option<PathBuf>,

    /// Re-create or re-assert the configuration as installed when it is deleted or
    /// changed (off by default: an administrator's deliberate change wins). Needs the
    /// RBAC of deploy/restore-webhook-configuration/.
    #[arg(long, env = "FLEET_DELETE_GUARD_RESTORE_WEBHOOK_CONFIGURATION", default_value_t = false,
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub restore_webhook_configuration: bool,

    /// At most one repair per this interval (duration).
    #[arg(long, env = "FLEET_DELETE_GUARD_RESTORE_WEBHOOK_CONFIGURATION_INTERVAL", default_value = "30",
          value_parser = parse_duration)]
    pub restore_webhook_configuration_interval: Duration,
}

impl WebhookConfigArgs {
    /// The configuration as installed: the manifest file, else the compiled-in base.
    pub fn intended(
        &self,
        name: &str,
        namespace: &str,
        service: &str,
    ) -> Result<crate::webhook_config::Intended, crate::webhook_config::ManifestError> {
        use crate::webhook_config::{intended::BUILTIN_PREFIX, Intended};
        let builtin = self
            .webhook_config_manifest
            .as_ref()
            .and_then(|p| p.to_str())
            .and_then(|p| p.strip_prefix(BUILTIN_PREFIX));
        let intended = match (&self.webhook_config_manifest, builtin) {
            (_, Some(variant)) => Intended::builtin(variant, name, namespace, service)?,
            (Some(path), None) => Intended::read(path)?,
            (None, None) => Intended::default_for(name, namespace, service)?,
        };
        if intended.name() != name {
            return Err(crate::webhook_config::ManifestError::Invalid {
                origin: self
                    .webhook_config_manifest
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                problem: format!("names {}, not --webhook-config {name}", intended.name()),
            });
        }
        Ok(intended)
    }

    /// Minimum time between repairs; `None` when repair is off.
    pub fn restore(&self) -> Option<Duration> {
        self.restore_webhook_configuration
            .then_some(self.restore_webhook_configuration_interval)
    }
}
// --- end webhook configuration tamper evidence ---

/// `serve` flags of the webhook port's connection layer (src/listener/).
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Connections held open at once on the webhook port. Beyond it new connections
    /// wait in the kernel's accept queue until one ends.
    #[arg(long, env = "FLEET_DELETE_GUARD_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = parse_positive)]
    pub max_connections: usize,

    /// How long a keep-alive connection may stay idle between requests (duration). Keep
    /// it above kube-apiserver's 90 s idle timeout for its pooled connections, so that
    /// the server never closes one the moment it is reused. The request line and
    /// headers of a request, once started, stay bounded by --request-timeout.
    #[arg(long, env = "FLEET_DELETE_GUARD_IDLE_TIMEOUT", default_value = "120",
          value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// PEM CA bundle: when set, every client must present a certificate signed by it
    /// (kube-apiserver's webhook client certificate, see SECURITY.md). Re-read every
    /// --tls-reload-interval.
    #[arg(long, env = "FLEET_DELETE_GUARD_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,

    /// With --client-ca: the client certificate's subject CN or one of its DNS SANs
    /// must be one of these names (repeatable).
    #[arg(
        long = "client-cert-name",
        env = "FLEET_DELETE_GUARD_CLIENT_CERT_NAME",
        value_delimiter = ',',
        requires = "client_ca"
    )]
    pub client_cert_names: Vec<String>,
}

impl ConnectionArgs {
    /// The listener's settings, with the --client-ca file checked every `reload_interval`.
    pub fn config(&self, reload_interval: Duration) -> ConnectionConfig {
        ConnectionConfig {
            max_connections: self.max_connections,
            idle_timeout: self.idle_timeout,
            client_ca: self.client_ca.clone(),
            client_cert_names: self.client_cert_names.clone(),
            client_ca_reload_interval: reload_interval,
        }
    }
}

/// `fleet-delete-guard certs`: a CA and a serving certificate as files.
#[derive(Debug, Clone, Args)]
pub struct CertsArgs {
    /// DNS name or IP address of the serving certificate (repeatable, or comma-separated).
    /// In a cluster: fleet-delete-guard.cattle-fleet-system.svc.
    #[arg(long = "dns-name", value_delimiter = ',', required = true)]
    pub dns_names: Vec<String>,

    /// Directory for ca.crt, ca.key, tls.crt and tls.key (created when missing).
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,

    /// Sign with this existing CA (PEM) instead of creating one: renews the serving
    /// certificate while the caBundle stays the same. Needs --ca-key.
    #[arg(long, requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,

    /// Key of --ca-cert (PEM).
    #[arg(long, requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,

    /// Validity of the serving certificate (duration, e.g. 365d).
    #[arg(long, default_value = "365d", value_parser = parse_duration)]
    pub validity: Duration,

    /// Validity of a new CA (duration).
    #[arg(long, default_value = "3650d", value_parser = parse_duration)]
    pub ca_validity: Duration,

    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

impl CertsArgs {
    pub fn options(&self) -> CertsOptions {
        CertsOptions {
            dns_names: self.dns_names.clone(),
            out_dir: self.out_dir.clone(),
            ca_cert: self.ca_cert.clone(),
            ca_key: self.ca_key.clone(),
            validity: self.validity,
            ca_validity: self.ca_validity,
            force: self.force,
        }
    }
}

/// Where this cluster's Fleet objects are: `serve` and `verify` alike.
#[derive(Debug, Clone, Args)]
pub struct FleetClusterArgs {
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

    /// Fleet agent scopes (AGENT_SCOPE) of setIDs and hash labels; "" is standalone Fleet.
    #[arg(long = "agent-scope", env = "FLEET_DELETE_GUARD_AGENT_SCOPE", value_delimiter = ',',
          default_values = DEFAULT_AGENT_SCOPES)]
    pub agent_scopes: Vec<String>,
}

/// `fleet-delete-guard verify` flags.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Output,

    /// Only this owner: KIND/NAMESPACE/NAME (KIND: GitRepo, HelmOp, Bundle) or
    /// NAMESPACE/NAME (repeatable).
    #[arg(long = "owner", value_delimiter = ',')]
    pub owners: Vec<String>,

    /// Only owners in this namespace.
    #[arg(long)]
    pub namespace: Option<String>,

    #[command(flatten)]
    pub fleet: FleetClusterArgs,

    /// Bound on each API request (duration).
    #[arg(long, default_value = "30", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// The mass-deletion breaker (docs/src/breaker.md).
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

    /// The sliding window (duration).
    #[arg(id = "breaker_window", long = "breaker-window", env = "FLEET_DELETE_GUARD_BREAKER_WINDOW", default_value = "60",
          value_parser = parse_duration)]
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
    fn flags_default_and_validate() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            c: ConnectionArgs,
        }
        let t = T::try_parse_from(["t"]).expect("defaults");
        assert_eq!(t.c.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(t.c.idle_timeout, crate::listener::DEFAULT_IDLE_TIMEOUT);
        assert!(T::try_parse_from(["t", "--idle-timeout", "0"]).is_err());
        let t = T::try_parse_from(["t", "--idle-timeout", "1.5"]).expect("seconds");
        assert_eq!(t.c.idle_timeout, Duration::from_millis(1500));
        assert!(t.c.client_ca.is_none() && t.c.client_cert_names.is_empty());
        assert!(T::try_parse_from(["t", "--max-connections", "0"]).is_err());
        assert!(
            T::try_parse_from(["t", "--client-cert-name", "kube-apiserver"]).is_err(),
            "names need a CA"
        );
        let t = T::try_parse_from(["t", "--client-ca", "/ca.pem", "--client-cert-name", "a,b"])
            .expect("parse");
        assert_eq!(t.c.client_cert_names, ["a", "b"]);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("-1d").is_err());
        assert!(parse_duration("d").is_err());
        // The forms the seconds-only flags took: plain and fractional numbers, `s`.
        assert_eq!(parse_duration("0.2"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("4s"), Ok(Duration::from_secs(4)));
        assert_eq!(parse_duration("1e3"), Ok(Duration::from_secs(1000)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("nan").is_err());
        assert!(parse_duration("inf").is_err());
        assert!(parse_duration("1e300d").is_err());
    }

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
        assert_eq!(a.worker_threads, 1);
        let b = a.breaker.config("cattle-fleet-system");
        assert_eq!(b, crate::breaker::BreakerConfig::default());
    }

    /// `serve` with `flags` alone.
    fn serve_with(flags: &[&str]) -> Result<ServeArgs, clap::Error> {
        let args = ["fleet-delete-guard", "serve"].iter().chain(flags);
        Cli::try_parse_from(args).map(|cli| match cli.command {
            Command::Serve(a) => *a,
            _ => unreachable!("serve"),
        })
    }

    #[test]
    fn worker_threads_are_bounded() {
        let parse =
            |n: &str| serve_with(&[&format!("--worker-threads={n}")]).map(|a| a.worker_threads);
        assert_eq!(parse("4").expect("4 threads"), 4);
        for bad in ["0", "257", "-1", "two"] {
            let err = parse(bad).expect_err(bad).to_string();
            assert!(err.contains("--worker-threads"), "{bad}: {err}");
        }
    }

    #[test]
    fn log_flush_interval_takes_a_duration_or_zero() {
        let parse = |v: &str| {
            serve_with(&[&format!("--log-flush-interval={v}")]).map(|a| a.log_flush_interval)
        };
        let default = serve_with(&[]).expect("defaults");
        assert_eq!(default.log_flush_interval, Duration::from_millis(100));
        assert_eq!(parse("0").expect("0"), Duration::ZERO);
        assert_eq!(parse("0s").expect("0s"), Duration::ZERO);
        assert_eq!(parse("2").expect("2"), Duration::from_secs(2));
        assert_eq!(parse("0.5s").expect("0.5s"), Duration::from_millis(500));
        for bad in ["-1", "soon", "5ms", ""] {
            let err = parse(bad).expect_err(bad).to_string();
            assert!(err.contains("--log-flush-interval"), "{bad}: {err}");
        }
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

    #[test]
    fn webhook_config_flags_default_to_watching_without_repair() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["fleet-delete-guard", "serve"];
            args.extend(extra);
            let Command::Serve(a) = Cli::try_parse_from(args).expect("parse").command else {
                panic!("serve")
            };
            a
        };
        let a = parse(&["--webhook-config", "fleet-delete-guard"]);
        assert_eq!(a.tamper.restore(), None, "repair is off by default");
        assert!(
            a.cert_bootstrap.cert_secret.is_none(),
            "watching needs no --cert-secret"
        );
        let i = a
            .tamper
            .intended(
                "fleet-delete-guard",
                "cattle-fleet-system",
                "fleet-delete-guard",
            )
            .expect("the base");
        assert_eq!(i.name(), "fleet-delete-guard");
        let a = parse(&[
            "--restore-webhook-configuration",
            "--restore-webhook-configuration-interval",
            "5",
        ]);
        assert_eq!(a.tamper.restore(), Some(Duration::from_secs(5)));
        let a = parse(&["--restore-webhook-configuration=false"]);
        assert_eq!(a.tamper.restore(), None);
        let renamed = parse(&[])
            .tamper
            .intended("renamed", "ns", "svc")
            .expect("base");
        assert_eq!(
            renamed.name(),
            "renamed",
            "the base takes --webhook-config's name"
        );
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("webhook.yaml");
        std::fs::write(&file, "metadata: {name: other}\nwebhooks: [{name: w, sideEffects: None, admissionReviewVersions: [v1], clientConfig: {url: 'https://x'}}]\n")
            .expect("write");
        let a = parse(&["--webhook-config-manifest", "builtin:breaker"]);
        let i = a
            .tamper
            .intended("fleet-delete-guard", "ns", "svc")
            .expect("builtin");
        assert_eq!(
            i,
            crate::webhook_config::Intended::builtin("breaker", "fleet-delete-guard", "ns", "svc")
                .expect("builtin")
        );
        let a = parse(&["--webhook-config-manifest", file.to_str().expect("utf-8")]);
        let e = a
            .tamper
            .intended("fleet-delete-guard", "ns", "svc")
            .expect_err("another name");
        assert!(
            e.to_string()
                .contains("names other, not --webhook-config fleet-delete-guard"),
            "{e}"
        );
    }

    #[test]
    fn fleet_version_is_auto_or_a_version() {
        for ok in ["auto", "v0.14.3", "0.16.1"] {
            assert!(parse_fleet_version(ok).is_ok(), "{ok}");
        }
        let err = parse_fleet_version("latest").expect_err("not a version");
        assert!(err.contains("not a Fleet version"), "{err}");
    }
}
