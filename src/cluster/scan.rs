//! The listing behind the comparison, shared by `verify` and the resync: this
//! cluster's BundleDeployments (in its BundleDeployment namespace of the Fleet cluster,
//! label-selected), then each kind they name, metadata only, by Fleet's hash label —
//! all in pages of [`PAGE`], each page handed to the [`Comparison`] and dropped, so
//! memory holds one page whatever the size of the cluster.

use std::{borrow::Cow, collections::BTreeMap, time::Duration};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{
    api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams},
    core::{DynamicResourceScope, PartialObjectMeta, Resource},
    discovery::{pinned_kind, ApiCapabilities},
    Client,
};
use serde::Deserialize;

use crate::compare::{Comparison, KindKey, LiveObject};
use crate::fleet::{
    api::FleetResource, status::ResourceCounts, view::ListedBundleDeployment, OwnerKind, OwnerRef,
    LABEL_OBJECTSET_HASH,
};

/// Page size of the LISTs: bounded memory and request size on large clusters.
/// Objects per LIST page. 100, not kube's 500: a page's body and its parse are the
/// resync's transient, and with 10,000 BundleDeployments the server's peak RSS after its
/// start-up resync fell by about 6 MiB (BENCHMARKS.md, "Memory").
pub const PAGE: u32 = 100;
/// Page size of owner (GitRepo, HelmOp) LISTs: their status can be large.
const OWNER_PAGE: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("cannot list: {0}")]
    List(kube::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// LIST in pages of [`PAGE`], handing each page to `each` and dropping it: memory holds
/// one page, whatever the number of objects.
pub async fn for_each_page<K>(
    api: &Api<K>,
    selector: &str,
    timeout: Duration,
    each: impl FnMut(Vec<K>),
) -> Result<(), ListError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for_each_page_of(api, selector, PAGE, timeout, each).await
}

async fn for_each_page_of<K>(
    api: &Api<K>,
    selector: &str,
    page_size: u32,
    timeout: Duration,
    mut each: impl FnMut(Vec<K>),
) -> Result<(), ListError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut params = ListParams::default().limit(page_size);
    if !selector.is_empty() {
        params = params.labels(selector);
    }
    loop {
        let page = tokio::time::timeout(timeout, api.list(&params))
            .await
            .map_err(|_| ListError::Timeout(timeout))?
            .map_err(ListError::List)?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        each(page.items);
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// Where to look.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    /// Where the deployed objects are.
    pub cluster: &'a Client,
    /// Where the BundleDeployments and their owners are.
    pub fleet: &'a Client,
    /// This cluster's BundleDeployment namespace.
    pub bd_namespace: &'a str,
    /// The label selector of this cluster's BundleDeployments.
    pub selector: &'a str,
    /// `<namespace>/<name>` of this cluster's Fleet Cluster: its key in the owners'
    /// `perClusterResourceCounts`.
    pub cluster_key: &'a str,
    /// Bound on each request.
    pub timeout: Duration,
    /// Owner kinds whose status is read (LIST over all namespaces) to compare their
    /// counts; a refusal is a note, not an error.
    pub owner_kinds: &'a [OwnerKind],
}

/// Where the listing is, for progress lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress<'a> {
    /// So many BundleDeployments listed so far.
    BundleDeployments(usize),
    /// Listing kind `index` of `total`.
    Kind {
        index: usize,
        total: usize,
        kind: &'a KindKey,
    },
    /// So many objects of the current kind listed so far.
    Objects(usize),
    /// Reading the status of the owners of this kind.
    Owners(OwnerKind),
}

/// A kind as listed: what the resync needs to count a deletion of it.
#[derive(Debug, Clone)]
pub struct ListedKind {
    pub resource: ApiResource,
    pub capabilities: ApiCapabilities,
}

/// Lists into `comparison`. An error listing the BundleDeployments is returned (nothing
/// to compare); a kind that cannot be discovered or listed is recorded in the
/// comparison and the rest goes on. Returns the kinds listed.
pub async fn scan(
    target: &Target<'_>,
    comparison: &mut Comparison,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<BTreeMap<KindKey, ListedKind>, ListError> {
    let api: Api<ListedBundleDeployment> =
        Api::namespaced(target.fleet.clone(), target.bd_namespace);
    let mut seen = 0;
    for_each_page(&api, target.selector, target.timeout, |bds| {
        seen += bds.len();
        for bd in &bds {
            comparison.add_bundle_deployment(bd);
        }
        progress(Progress::BundleDeployments(seen));
    })
    .await?;

    let kinds = comparison.kinds();
    let mut listed = BTreeMap::new();
    for (index, kind) in kinds.iter().enumerate() {
        progress(Progress::Kind {
            index: index + 1,
            total: kinds.len(),
            kind,
        });
        let (group, version) = kind.group_version();
        let gvk = GroupVersionKind::gvk(group, version, &kind.kind);
        let (resource, capabilities) = match tokio::time::timeout(
            target.timeout,
            pinned_kind(target.cluster, &gvk),
        )
        .await
        {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::warn!(kind = %kind, error = %e, "cannot discover kind; its resources are not checked");
                comparison.kind_failed(kind, format!("cannot discover: {e}"));
                continue;
            }
            Err(_) => {
                comparison.kind_failed(
                    kind,
                    format!("cannot discover: no answer within {:?}", target.timeout),
                );
                continue;
            }
        };
        // Metadata only: names are all this needs, and objects of a kind (ConfigMaps,
        // Secrets) can be large.
        let objects: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(target.cluster.clone(), &resource);
        let mut count = 0;
        let result = for_each_page(&objects, LABEL_OBJECTSET_HASH, target.timeout, |page| {
            count += page.len();
            for o in &page {
                let Some(name) = o.metadata.name.as_deref() else {
                    continue;
                };
                comparison.observe(
                    kind,
                    LiveObject {
                        namespace: o.metadata.namespace.as_deref().unwrap_or_default(),
                        name,
                        uid: o.metadata.uid.as_deref(),
                        created_at: o
                            .metadata
                            .creation_timestamp
                            .as_ref()
                            .map(|t| t.0.as_second()),
                        hash: o
                            .metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(LABEL_OBJECTSET_HASH))
                            .map(String::as_str),
                    },
                );
            }
            progress(Progress::Objects(count));
        })
        .await;
        match result {
            Ok(()) => {
                comparison.kind_listed(kind);
                listed.insert(
                    kind.clone(),
                    ListedKind {
                        resource,
                        capabilities,
                    },
                );
            }
            Err(e) => {
                tracing::warn!(kind = %kind, error = %e, "cannot list objects; their resources are not checked");
                comparison.kind_failed(kind, e.to_string());
            }
        }
    }

    for kind in target.owner_kinds {
        let owners: Vec<OwnerRef> = comparison
            .owners()
            .filter(|o| o.kind == *kind)
            .cloned()
            .collect();
        if owners.is_empty() || !kind.has_resource_counts() {
            continue;
        }
        progress(Progress::Owners(*kind));
        read_owner_counts(target, *kind, &owners, comparison).await;
    }
    Ok(listed)
}

/// The parts of a GitRepo or HelmOp the comparison reads (the rest, `resources[]`
/// above all, is skipped while parsing).
#[derive(Debug, Clone, Deserialize)]
struct OwnerView {
    metadata: ObjectMeta,
    #[serde(default)]
    status: Option<OwnerStatusView>,
}

impl Resource for OwnerView {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }
    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }
    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }
    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }
    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct OwnerStatusView {
    resource_counts: Option<serde_json::Value>,
    per_cluster_resource_counts: Option<BTreeMap<String, serde_json::Value>>,
}

/// LIST the owners of `kind` (all namespaces, in pages) and hand the compared ones'
/// counts for this cluster to `comparison`.
async fn read_owner_counts(
    target: &Target<'_>,
    kind: OwnerKind,
    owners: &[OwnerRef],
    comparison: &mut Comparison,
) {
    let resource = FleetResource::of_owner(kind).api_resource();
    let api: Api<OwnerView> = Api::all_with(target.fleet.clone(), &resource);
    let mut found: Vec<(OwnerRef, ResourceCounts)> = Vec::new();
    let result = for_each_page_of(&api, "", OWNER_PAGE, target.timeout, |page| {
        for view in page {
            let owner = OwnerRef::new(
                kind,
                view.metadata.namespace.unwrap_or_default(),
                view.metadata.name.unwrap_or_default(),
            );
            if !owners.contains(&owner) {
                continue;
            }
            let status = view.status.unwrap_or_default();
            // This cluster's share (Fleet ≥ v0.12); the whole owner before that.
            let counts = match status.per_cluster_resource_counts {
                Some(per) if !per.is_empty() => per.get(target.cluster_key).cloned(),
                _ => status.resource_counts,
            };
            if let Some(counts) = counts.and_then(|c| ResourceCounts::deserialize(c).ok()) {
                found.push((owner, counts));
            }
        }
    })
    .await;
    match result {
        Ok(()) => {
            for (owner, counts) in found {
                comparison.owner_counts(&owner, &counts);
            }
        }
        Err(e) => {
            tracing::debug!(kind = %kind, error = %e, "owner status not readable; owner counts not compared");
            comparison.note(format!(
                "{} status not readable ({e}): owner resourceCounts not compared",
                FleetResource::of_owner(kind).plural
            ));
        }
    }
}
