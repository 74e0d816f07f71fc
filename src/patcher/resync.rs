//! Nothing lost while the webhook was away.
//!
//! With `failurePolicy: Ignore`, deletions made while no replica runs are never
//! reviewed. At start-up and every `--resync-interval`, this compares what this
//! cluster's BundleDeployments list as deployed (`status.resources`) with what exists
//! (LIST per kind by Fleet's hash label, paginated) and hands what is missing to the
//! patcher as ordinary marks: the same idempotent delta path, so each is counted once
//! however often the resync runs.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    time::Duration,
};

use kube::{
    api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams},
    discovery::{pinned_kind, Scope},
    Client,
};

use crate::{
    fleet::{status::BundleDeployment, LABEL_OBJECTSET_HASH},
    owners::{bundle_deployment_resource, BundleDeploymentRef},
};

use super::{
    queue::{Item, Op, Tracked},
    Patcher,
};

/// Page size of the LISTs: bounded memory and request size on large clusters.
const PAGE: u32 = 500;

#[derive(Debug, thiserror::Error)]
pub enum ResyncError {
    #[error("cannot list BundleDeployments: {0}")]
    ListBundleDeployments(kube::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// What one pass found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResyncReport {
    pub bundle_deployments: usize,
    pub resources: usize,
    /// Resources listed as deployed that do not exist: handed to the patcher.
    pub missing: usize,
    /// Kinds that could not be listed (discovery or LIST failed); their resources are
    /// not judged this time.
    pub skipped_kinds: usize,
}

/// A listed resource, its owner and its recorded creationTimestamp.
type Deployed = (Listed, Arc<BundleDeploymentRef>, Option<String>);

/// A deployed resource as a BundleDeployment lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Listed {
    namespace: String,
    name: String,
}

async fn list_all(
    api: &Api<DynamicObject>,
    selector: &str,
    timeout: Duration,
) -> Result<Vec<DynamicObject>, ResyncError> {
    let mut out = Vec::new();
    let mut params = ListParams::default().labels(selector).limit(PAGE);
    loop {
        let page = tokio::time::timeout(timeout, api.list(&params))
            .await
            .map_err(|_| ResyncError::Timeout(timeout))?
            .map_err(ResyncError::ListBundleDeployments)?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        out.extend(page.items);
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// One pass: returns what it found and queued.
pub async fn resync_once(
    patcher: &Patcher,
    cluster: &Client,
    fleet: &Client,
    cluster_selector: &str,
    timeout: Duration,
) -> Result<ResyncReport, ResyncError> {
    let api: Api<DynamicObject> = Api::all_with(fleet.clone(), &bundle_deployment_resource());
    let bds = list_all(&api, cluster_selector, timeout).await?;
    let mut report = ResyncReport {
        bundle_deployments: bds.len(),
        ..ResyncReport::default()
    };

    // (apiVersion, kind) → listed resources → owning BundleDeployment.
    let mut by_kind: BTreeMap<(String, String), Vec<Deployed>> = BTreeMap::new();
    for bd in &bds {
        let Ok(value) = serde_json::to_value(bd) else {
            continue;
        };
        let Ok(typed) = BundleDeployment::from_value(&value) else {
            continue;
        };
        let Some(owner) = BundleDeploymentRef::from_object(bd) else {
            continue;
        };
        let owner = Arc::new(owner);
        for r in &typed.status_or_default().resources {
            report.resources += 1;
            by_kind
                .entry((r.api_version.clone(), r.kind.clone()))
                .or_default()
                .push((
                    Listed {
                        namespace: r.namespace.clone(),
                        name: r.name.clone(),
                    },
                    owner.clone(),
                    r.created_at.clone(),
                ));
        }
    }

    for ((api_version, kind), listed) in by_kind {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.clone()),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, &kind);
        let (ar, caps): (ApiResource, _) = match tokio::time::timeout(
            timeout,
            pinned_kind(cluster, &gvk),
        )
        .await
        {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::warn!(api_version = %api_version, kind = %kind, error = %e, "resync: cannot discover kind; skipped");
                report.skipped_kinds += 1;
                continue;
            }
            Err(_) => {
                report.skipped_kinds += 1;
                continue;
            }
        };
        let objects: Api<DynamicObject> = Api::all_with(cluster.clone(), &ar);
        let live = match list_all(&objects, LABEL_OBJECTSET_HASH, timeout).await {
            Ok(items) => items,
            Err(e) => {
                tracing::warn!(kind = %kind, error = %e, "resync: cannot list objects; skipped");
                report.skipped_kinds += 1;
                continue;
            }
        };
        let exists: HashSet<Listed> = live
            .iter()
            .filter_map(|o| {
                Some(Listed {
                    namespace: o.metadata.namespace.clone().unwrap_or_default(),
                    name: o.metadata.name.clone()?,
                })
            })
            .collect();
        for (resource, owner, created_at) in listed {
            if exists.contains(&resource) {
                continue;
            }
            report.missing += 1;
            let namespace = match caps.scope {
                Scope::Namespaced => resource.namespace.clone(),
                Scope::Cluster => String::new(),
            };
            tracing::info!(
                kind = %kind, namespace = %namespace, name = %resource.name, bundledeployment = %owner.name,
                "resync: deployed resource is gone (deleted while no replica was reviewing); counting it"
            );
            let uid = format!(
                "resync:{}/{}/{}/{}/{}",
                owner.namespace, owner.name, kind, namespace, resource.name
            );
            patcher.push(Item {
                op: Op::Mark,
                object: Tracked {
                    group: group.clone(),
                    version: version.clone(),
                    kind: kind.clone(),
                    plural: ar.plural.clone(),
                    namespace,
                    name: resource.name,
                    uid,
                    created_at,
                    bd: owner,
                },
                received: None,
                user: String::new(),
            });
        }
    }
    Ok(report)
}

/// Run a pass now and then every `interval`, forever.
pub async fn run(
    patcher: Patcher,
    cluster: Client,
    fleet: Client,
    cluster_selector: String,
    interval: Duration,
) {
    let timeout = Duration::from_secs(30);
    loop {
        match resync_once(&patcher, &cluster, &fleet, &cluster_selector, timeout).await {
            Ok(report) => {
                patcher.count_resync("success", report.missing as u64);
                tracing::info!(
                    bundledeployments = report.bundle_deployments,
                    resources = report.resources,
                    missing = report.missing,
                    skipped_kinds = report.skipped_kinds,
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
