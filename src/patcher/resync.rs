//! Nothing lost while the webhook was away.
//!
//! With `failurePolicy: Ignore`, deletions made while no replica runs are never
//! reviewed. At start-up and every `--resync-interval`, this compares what this
//! cluster's BundleDeployments list as deployed (`status.resources`) with what exists
//! (LIST per kind by Fleet's hash label, paginated) and hands what is missing to the
//! patcher as ordinary marks: the same idempotent delta path, so each is counted once
//! however often the resync runs. It also has every owner's status re-derived from its
//! BundleDeployments, so an owner that disagrees with them is repaired.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use kube::{
    api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams},
    core::PartialObjectMeta,
    discovery::{pinned_kind, Scope},
    Client,
};

use crate::{
    fleet::{view::ListedBundleDeployment, OwnerRef, LABEL_OBJECTSET_HASH},
    owners::BundleDeploymentRef,
};

use super::{
    queue::{Item, Op, Tracked},
    Patcher,
};

/// Page size of the LISTs: bounded memory and request size on large clusters.
const PAGE: u32 = 500;

#[derive(Debug, thiserror::Error)]
pub enum ResyncError {
    #[error("cannot list: {0}")]
    List(kube::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
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

/// A listed resource's owner and its recorded creationTimestamp.
type Deployed = (Arc<BundleDeploymentRef>, Option<String>);

/// A deployed resource as a BundleDeployment lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Listed {
    namespace: String,
    name: String,
}

/// LIST in pages of [`PAGE`], handing each page to `each` and dropping it: memory holds
/// one page, whatever the number of objects.
async fn for_each_page<K>(
    api: &Api<K>,
    selector: &str,
    timeout: Duration,
    mut each: impl FnMut(Vec<K>),
) -> Result<(), ResyncError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut params = ListParams::default().labels(selector).limit(PAGE);
    loop {
        let page = tokio::time::timeout(timeout, api.list(&params))
            .await
            .map_err(|_| ResyncError::Timeout(timeout))?
            .map_err(ResyncError::List)?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        each(page.items);
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// One pass: returns what it found and queued.
///
/// Memory: one page of BundleDeployments (read through [`ListedBundleDeployment`],
/// which skips spec and most of status) plus one entry per deployed resource; the
/// objects that exist are listed metadata-only, a page at a time, and only their
/// names are compared.
pub async fn resync_once(
    patcher: &Patcher,
    cluster: &Client,
    fleet: &Client,
    bd_namespace: &str,
    cluster_selector: &str,
    timeout: Duration,
) -> Result<ResyncReport, ResyncError> {
    let api: Api<ListedBundleDeployment> = Api::namespaced(fleet.clone(), bd_namespace);
    let mut report = ResyncReport::default();

    // (apiVersion, kind) → listed resource → owning BundleDeployment.
    let mut by_kind: BTreeMap<(String, String), HashMap<Listed, Deployed>> = BTreeMap::new();
    let mut owners: BTreeSet<OwnerRef> = BTreeSet::new();
    for_each_page(&api, cluster_selector, timeout, |bds| {
        report.bundle_deployments += bds.len();
        for bd in bds {
            let Some(owner) = BundleDeploymentRef::from_object(&bd) else {
                continue;
            };
            owners.insert(owner.owner.clone());
            let owner = Arc::new(owner);
            for r in bd.status.resources {
                report.resources += 1;
                by_kind
                    .entry((r.key.api_version, r.key.kind))
                    .or_default()
                    .insert(
                        Listed {
                            namespace: r.key.namespace,
                            name: r.key.name,
                        },
                        (owner.clone(), r.created_at),
                    );
            }
        }
    })
    .await?;

    // Owners are checked too, not only missing objects: each GitRepo/HelmOp status is
    // re-derived from its BundleDeployments (a write only when it disagrees), so one
    // written from a stale view by a replica that then died is repaired here at the
    // latest. One GET and one LIST per owner per pass.
    report.owners = owners.len();
    for owner in owners {
        patcher.rederive(owner, bd_namespace);
    }

    for ((api_version, kind), mut listed) in by_kind {
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
        // Metadata only: names are all this needs, and objects of a kind (ConfigMaps,
        // Secrets) can be large.
        let objects: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(cluster.clone(), &ar);
        let listed_all = for_each_page(&objects, LABEL_OBJECTSET_HASH, timeout, |page| {
            for o in page {
                if let Some(name) = o.metadata.name {
                    listed.remove(&Listed {
                        namespace: o.metadata.namespace.unwrap_or_default(),
                        name,
                    });
                }
            }
        })
        .await;
        if let Err(e) = listed_all {
            tracing::warn!(kind = %kind, error = %e, "resync: cannot list objects; skipped");
            report.skipped_kinds += 1;
            continue;
        }
        // What is left was not found. In a stable order, for logs and tests.
        let mut missing: Vec<_> = listed.into_iter().collect();
        missing.sort_by(|a, b| a.0.cmp(&b.0));
        for (resource, (owner, created_at)) in missing {
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
    bd_namespace: String,
    cluster_selector: String,
    interval: Duration,
) {
    let timeout = Duration::from_secs(30);
    loop {
        match resync_once(
            &patcher,
            &cluster,
            &fleet,
            &bd_namespace,
            &cluster_selector,
            timeout,
        )
        .await
        {
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
