//! Nothing lost while the webhook was away.
//!
//! With `failurePolicy: Ignore`, deletions made while no replica runs are never
//! reviewed. At start-up and every `--resync-interval`, this compares what this
//! cluster's BundleDeployments list as deployed (`status.resources`) with what exists
//! (LIST per kind by Fleet's hash label, paginated) and hands what is missing to the
//! patcher as ordinary marks: the same idempotent delta path, so each is counted once
//! however often the resync runs. It also has every owner's status re-derived from its
//! BundleDeployments, so an owner that disagrees with them is repaired.

use std::{collections::BTreeSet, time::Duration};

use kube::{discovery::Scope, Client};

use crate::{
    cluster::scan::{self, Target},
    compare::{Comparison, Report},
    fleet::{OwnerKind, OwnerRef},
    metrics::Metrics,
};

use super::{
    queue::{Item, Op, Tracked},
    Patcher,
};

/// The listing is shared with `fleet-delete-guard verify` (src/cluster/scan.rs).
pub use crate::cluster::scan::ListError as ResyncError;

/// What the resync needs to run the comparison and publish it.
#[derive(Clone)]
pub struct ResyncVerify {
    pub metrics: Metrics,
    /// `--agent-scope`.
    pub scopes: Vec<String>,
    /// This cluster's Fleet Cluster, `namespace/name`.
    pub cluster_key: String,
    /// Owner kinds whose status the credentials may list (GitRepos when the webhook
    /// watches them; none downstream).
    pub owner_kinds: Vec<OwnerKind>,
}

/// What a resync publishes: `owner_discrepancies` per owner (every owner of this
/// cluster's BundleDeployments, 0 when it agrees; owners gone since the last check are
/// removed) and the time of this check.
pub fn publish(metrics: &Metrics, report: &Report) {
    metrics.set_owner_discrepancies(
        report
            .owners
            .iter()
            .map(|o| (&o.owner, o.discrepancies.len())),
    );
    metrics.verify_completed_now();
}

/// What one pass found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResyncReport {
    pub bundle_deployments: usize,
    /// Owners whose status is re-derived from their BundleDeployments.
    pub owners: usize,
    pub resources: usize,
    /// Resources listed as deployed that do not exist: handed to the patcher.
    pub missing: usize,
    /// Kinds that could not be listed (discovery or LIST failed); their resources are
    /// not judged this time.
    pub skipped_kinds: usize,
}

/// One pass: returns what it found and queued.
pub async fn resync_once(
    patcher: &Patcher,
    cluster: &Client,
    fleet: &Client,
    bd_namespace: &str,
    cluster_selector: &str,
    timeout: Duration,
) -> Result<ResyncReport, ResyncError> {
    let target = Target {
        cluster,
        fleet,
        bd_namespace,
        selector: cluster_selector,
        cluster_key: "",
        timeout,
        owner_kinds: &[],
    };
    resync_pass(patcher, &target, Vec::new())
        .await
        .map(|(found, _)| found)
}

/// One pass: lists through [`scan::scan`] (page by page: one page of
/// BundleDeployments, read through a view that skips spec and most of status, plus one
/// entry per deployed resource; the objects that exist metadata-only), queues what is
/// gone, and returns the comparison of Fleet's status with the cluster as well.
pub async fn resync_pass(
    patcher: &Patcher,
    target: &Target<'_>,
    scopes: Vec<String>,
) -> Result<(ResyncReport, Report), ResyncError> {
    // The hash labels a gone object carried, one per agent scope: its probes list by them.
    let hashes_of = |bd_name: &str| -> Vec<String> {
        scopes
            .iter()
            .map(|scope| crate::fleet::hash_for_bundle_deployment(bd_name, scope))
            .collect()
    };
    let mut comparison = Comparison::new(scopes.clone(), Default::default());
    let kinds = scan::scan(target, &mut comparison, &mut |_| {}).await?;
    let mut report = ResyncReport {
        bundle_deployments: comparison.listed_bundle_deployments(),
        owners: 0,
        resources: comparison.resources(),
        missing: 0,
        skipped_kinds: comparison.kinds().len().saturating_sub(kinds.len()),
    };

    // Owners are checked too, not only missing objects: each GitRepo/HelmOp status is
    // re-derived from its BundleDeployments (a write only when it disagrees), so one
    // written from a stale view by a replica that then died is repaired by the sweep
    // after this pass at the latest. One GET and one LIST per owner per pass, spread at
    // `--resync-rederive-rate` owners per second.
    let owners: BTreeSet<OwnerRef> = comparison.owners().cloned().collect();
    report.owners = owners.len();
    for owner in owners {
        patcher.rederive_in_sweep(owner, target.bd_namespace);
    }

    // Listed as deployed and not found; in a stable order, for logs and tests.
    for gone in comparison.absent_reported() {
        let Some(listed) = kinds.get(gone.kind) else {
            continue;
        };
        report.missing += 1;
        let (group, version) = gone.kind.group_version();
        let kind = &gone.kind.kind;
        let owner = gone.bundle_deployment.clone();
        let namespace = match listed.capabilities.scope {
            Scope::Namespaced => gone.namespace.to_string(),
            Scope::Cluster => String::new(),
        };
        tracing::info!(
            kind = %kind, namespace = %namespace, name = %gone.name, bundledeployment = %owner.name,
            "resync: deployed resource is gone (deleted while no replica was reviewing); counting it"
        );
        let uid = format!(
            "resync:{}/{}/{}/{}/{}",
            owner.namespace, owner.name, kind, namespace, gone.name
        );
        patcher.push(Item {
            op: Op::Mark,
            object: Tracked {
                group: group.to_string(),
                version: version.to_string(),
                kind: kind.clone(),
                plural: listed.resource.plural.clone(),
                namespace,
                name: gone.name.to_string(),
                uid,
                created_at: gone.created_at.map(str::to_string),
                objectset_hashes: hashes_of(&owner.name),
                bd: owner,
            },
            received: None,
            user: String::new(),
        });
    }
    Ok((report, comparison.finish()))
}

/// Run a pass now and then every `interval`, forever.
pub async fn run(
    patcher: Patcher,
    cluster: Client,
    fleet: Client,
    bd_namespace: String,
    cluster_selector: String,
    interval: Duration,
    verify: ResyncVerify,
) {
    let timeout = Duration::from_secs(30);
    loop {
        let target = Target {
            cluster: &cluster,
            fleet: &fleet,
            bd_namespace: &bd_namespace,
            selector: &cluster_selector,
            cluster_key: &verify.cluster_key,
            timeout,
            owner_kinds: &verify.owner_kinds,
        };
        match resync_pass(&patcher, &target, verify.scopes.clone()).await {
            Ok((report, verified)) => {
                patcher.count_resync("success", report.missing as u64);
                publish(&verify.metrics, &verified);
                tracing::info!(
                    bundledeployments = report.bundle_deployments,
                    owners = report.owners,
                    owners_awaiting_sweep = patcher.sweep_pending(),
                    resources = report.resources,
                    missing = report.missing,
                    skipped_kinds = report.skipped_kinds,
                    discrepancies = verified.discrepancies(),
                    "resync done"
                );
            }
            Err(e) => {
                patcher.count_resync("error", 0);
                tracing::warn!(error = %e, "resync failed; next attempt at the next interval");
            }
        }
        tokio::time::sleep(interval).await;
    }
}
