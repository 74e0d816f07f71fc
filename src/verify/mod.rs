//! `fleet-delete-guard verify`: does the status Fleet reports agree with the cluster?
//!
//! For every owner (GitRepo, HelmOp, Bundle) of this cluster's BundleDeployments, the
//! status Fleet reports is compared with the objects that exist. One implementation,
//! used twice — here and by `serve`'s resync ([`crate::patcher::resync`]):
//!
//! - [`crate::compare`] — the comparison itself, pure (no I/O);
//! - [`crate::cluster::scan`] — the listing that feeds it, page by page;
//! - this module — the command (`verify`) and its output ([`render`]).

pub mod render;

use crate::{
    cluster::{
        self,
        scan::{self, Progress, Target},
        FleetCluster,
    },
    compare::{self, Comparison, OwnerFilter, Report},
    fleet::OwnerKind,
};

pub use crate::cli::{Output, VerifyArgs};

/// Exit code when the command itself cannot run (bad flags, no cluster configuration).
pub const EXIT_ERROR: u8 = 2;

/// Why `verify` could not start.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Owner(#[from] compare::OwnerFilterError),
    #[error(transparent)]
    Connect(#[from] cluster::ConnectError),
}

/// Runs the command: the report on stdout, progress on stderr; returns the exit code
/// (0 agreement, 1 discrepancies, 2 errors).
pub async fn run(args: VerifyArgs) -> u8 {
    match run_inner(&args).await {
        Ok(report) => {
            let text = match args.output {
                Output::Table => render::table(&report),
                Output::Json => render::json(&report),
            };
            print!("{text}");
            report.exit_code()
        }
        Err(e) => {
            eprintln!("fleet-delete-guard verify: {e}");
            EXIT_ERROR
        }
    }
}

async fn run_inner(args: &VerifyArgs) -> Result<Report, VerifyError> {
    let filter = OwnerFilter {
        owners: args
            .owners
            .iter()
            .map(|o| OwnerFilter::parse_owner(o))
            .collect::<Result<_, _>>()?,
        namespace: args.namespace.clone().filter(|n| !n.is_empty()),
    };
    let cluster = args
        .fleet
        .fleet_cluster
        .parse::<FleetCluster>()?
        .with_bundle_deployment_namespace(args.fleet.fleet_cluster_namespace.as_deref());
    let clients = cluster::connect(args.fleet.fleet_kubeconfig.as_ref()).await?;
    let selector = cluster.selector();
    let cluster_key = cluster.to_string();
    let target = Target {
        cluster: &clients.cluster,
        fleet: &clients.fleet,
        bd_namespace: &cluster.bundle_deployment_namespace,
        selector: &selector,
        cluster_key: &cluster_key,
        timeout: args.timeout,
        owner_kinds: &[OwnerKind::GitRepo, OwnerKind::HelmOp],
    };
    eprintln!(
        "verifying Fleet cluster {cluster_key} (BundleDeployments in {})",
        cluster.bundle_deployment_namespace
    );
    let mut comparison = Comparison::new(args.fleet.agent_scopes.clone(), filter);
    let mut progress = |p: Progress<'_>| match p {
        Progress::BundleDeployments(n) => eprintln!("  {n} BundleDeployments listed"),
        Progress::Kind { index, total, kind } => {
            eprintln!("  listing {kind} ({index}/{total}), metadata only")
        }
        Progress::Objects(n) if n >= scan::PAGE as usize => eprintln!("    {n} objects"),
        Progress::Objects(_) => {}
        Progress::Owners(kind) => eprintln!("  reading {kind} status"),
    };
    if let Err(e) = scan::scan(&target, &mut comparison, &mut progress).await {
        comparison.error("BundleDeployments", e.to_string());
    }
    Ok(comparison.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn flags_parse_with_serve_defaults() {
        let cli = Cli::try_parse_from([
            "fleet-delete-guard",
            "verify",
            "-o",
            "json",
            "--owner",
            "GitRepo/fleet-local/lots",
            "--owner",
            "fleet-default/redis",
        ])
        .expect("parse");
        let Command::Verify(a) = cli.command else {
            panic!("verify")
        };
        assert_eq!(a.output, Output::Json);
        assert_eq!(
            a.owners,
            ["GitRepo/fleet-local/lots", "fleet-default/redis"]
        );
        assert_eq!(a.fleet.fleet_cluster, "fleet-local/local");
        assert_eq!(a.fleet.agent_scopes, crate::owners::DEFAULT_AGENT_SCOPES);
        assert_eq!(a.timeout, std::time::Duration::from_secs(30));
        assert!(Cli::try_parse_from(["fleet-delete-guard", "verify", "-o", "yaml"]).is_err());
    }
}
