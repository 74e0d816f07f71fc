//! Wiring for counting: cluster connections, the watchers feeding the owner index,
//! and the patch worker.

use std::{path::PathBuf, sync::Arc};

use futures::StreamExt;
use kube::{
    api::{Api, DynamicObject},
    config::{KubeConfigOptions, Kubeconfig},
    core::PartialObjectMeta,
    runtime::{watcher, WatchStreamExt},
    Client, Config,
};

use crate::{
    fleet::{
        api::FleetResource, cluster_namespace, view::WatchedBundleDeployment, OwnerKind,
        LABEL_CLUSTER, LABEL_CLUSTER_NAMESPACE,
    },
    health::Readiness,
    metrics::Metrics,
    owners::OwnerIndex,
    patcher::{Patcher, PatcherConfig},
};

/// The readiness check name for the caches.
pub const CACHES_CHECK: &str = "caches";
/// The readiness check name that reports whether counting is on.
pub const COUNTING_CHECK: &str = "counting";

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no cluster configuration (no KUBECONFIG, no ~/.kube/config, not in a cluster): {0}")]
    Infer(String),
    #[error("cannot read --fleet-kubeconfig {path}: {message}")]
    FleetKubeconfig { path: PathBuf, message: String },
    #[error("cannot build a client: {0}")]
    Client(String),
    #[error("--fleet-cluster must be NAMESPACE/NAME, got {0:?}")]
    FleetCluster(String),
}

/// This cluster's Fleet `Cluster`, e.g. `fleet-local/local`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetCluster {
    pub namespace: String,
    pub name: String,
    /// Where its BundleDeployments live in the Fleet cluster (the Cluster's
    /// `status.namespace`). Every read and write of BundleDeployments stays in it, so
    /// credentials scoped to this one namespace suffice (downstream mode).
    pub bundle_deployment_namespace: String,
}

impl std::str::FromStr for FleetCluster {
    type Err = ConnectError;
    /// `NAMESPACE/NAME`; the BundleDeployment namespace follows Fleet's naming rule
    /// (`cluster-<ns>-<name>-<hash>`), see [`FleetCluster::with_bundle_deployment_namespace`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(FleetCluster {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                    bundle_deployment_namespace: cluster_namespace(ns, name),
                })
            }
            _ => Err(ConnectError::FleetCluster(s.to_string())),
        }
    }
}

impl std::fmt::Display for FleetCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl FleetCluster {
    /// Use `namespace` (`--fleet-cluster-namespace`) instead of the derived one.
    pub fn with_bundle_deployment_namespace(mut self, namespace: Option<&str>) -> Self {
        if let Some(ns) = namespace.filter(|ns| !ns.is_empty()) {
            self.bundle_deployment_namespace = ns.to_string();
        }
        self
    }

    /// The label selector of this cluster's BundleDeployments.
    pub fn selector(&self) -> String {
        format!(
            "{LABEL_CLUSTER_NAMESPACE}={},{LABEL_CLUSTER}={}",
            self.namespace, self.name
        )
    }
}

/// Clients for the cluster where deletions happen and for the Fleet cluster.
#[derive(Clone)]
pub struct Clients {
    pub cluster: Client,
    pub fleet: Client,
    /// The Fleet cluster is another one (`--fleet-kubeconfig`).
    pub separate_fleet: bool,
}

/// Connect from the usual places: KUBECONFIG, else in-cluster; the Fleet cluster from
/// `fleet_kubeconfig` when given. No API call is made here.
pub async fn connect(fleet_kubeconfig: Option<&PathBuf>) -> Result<Clients, ConnectError> {
    let config = Config::infer()
        .await
        .map_err(|e| ConnectError::Infer(e.to_string()))?;
    let cluster = Client::try_from(config).map_err(|e| ConnectError::Client(e.to_string()))?;
    let (fleet, separate_fleet) = match fleet_kubeconfig {
        Some(path) => {
            let err = |message: String| ConnectError::FleetKubeconfig {
                path: path.clone(),
                message,
            };
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
            let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| err(e.to_string()))?;
            (
                Client::try_from(config).map_err(|e| ConnectError::Client(e.to_string()))?,
                true,
            )
        }
        None => (cluster.clone(), false),
    };
    Ok(Clients {
        cluster,
        fleet,
        separate_fleet,
    })
}

/// Counting, running: the owner index for the admission path, the patcher as its sink.
pub struct Counting {
    pub index: Arc<OwnerIndex>,
    pub patcher: Patcher,
}

/// Start the watchers and the patch worker. Readiness gets the `caches` check,
/// which passes once both caches have listed once.
pub fn start(
    clients: &Clients,
    cluster: &FleetCluster,
    scopes: Vec<String>,
    config: PatcherConfig,
    metrics: Metrics,
    readiness: Readiness,
) -> Counting {
    let verify = crate::verify::ResyncVerify {
        metrics: metrics.clone(),
        scopes: scopes.clone(),
        cluster_key: cluster.to_string(),
        owner_kinds: if config.patch_gitrepo {
            vec![
                crate::fleet::OwnerKind::GitRepo,
                crate::fleet::OwnerKind::HelmOp,
            ]
        } else {
            Vec::new()
        },
    };
    let index = Arc::new(OwnerIndex::new(scopes));
    let watch_gitrepos = config.patch_gitrepo;
    let patcher = Patcher::new(
        clients.cluster.clone(),
        clients.fleet.clone(),
        index.clone(),
        metrics,
        config,
    );
    readiness.set(
        CACHES_CHECK,
        false,
        "waiting for the first list of BundleDeployments",
    );

    // BundleDeployments of this cluster: the index, and the patcher's watch over its
    // marks. Read through a view that skips spec and most of status while parsing; the
    // index is the only cache (no reflector store of the objects).
    let bd_api: Api<WatchedBundleDeployment> =
        Api::namespaced(clients.fleet.clone(), &cluster.bundle_deployment_namespace);
    let bd_index = index.clone();
    let observer = patcher.clone();
    let bds = watcher(
        bd_api,
        watcher::Config::default().labels(&cluster.selector()),
    )
    .default_backoff();
    tokio::spawn(async move {
        bds.for_each(|r| {
            match r {
                Ok(event) => {
                    bd_index.apply_bundle_deployment_event(&event);
                    if let watcher::Event::Apply(bd) = &event {
                        observer.observe_bundle_deployment(bd);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "BundleDeployment watch failed; retrying with backoff")
                }
            }
            std::future::ready(())
        })
        .await;
    });

    // GitRepos and HelmOps: only their policy annotation, so metadata only.
    if watch_gitrepos {
        for kind in [OwnerKind::GitRepo, OwnerKind::HelmOp] {
            spawn_owner_watch(clients.fleet.clone(), index.clone(), kind);
        }
    }

    let ready_index = index.clone();
    let resync = (
        patcher.clone(),
        clients.cluster.clone(),
        clients.fleet.clone(),
        cluster.bundle_deployment_namespace.clone(),
        cluster.selector(),
    );
    tokio::spawn(async move {
        ready_index.wait_synced(watch_gitrepos).await;
        tracing::info!(
            bundledeployments = ready_index.len(),
            "caches synced; counting deletions"
        );
        readiness.set(
            CACHES_CHECK,
            true,
            format!(
                "{} BundleDeployments of this cluster cached",
                ready_index.len()
            ),
        );
        // Deletions made while no replica was running were never reviewed.
        let (patcher, cluster, fleet, namespace, selector) = resync;
        let interval = patcher.config().resync_interval;
        tokio::spawn(crate::patcher::resync::run(
            patcher, cluster, fleet, namespace, selector, interval, verify,
        ));
    });

    tokio::spawn(patcher.clone().run());
    Counting { index, patcher }
}

/// Watch one owner kind's metadata for the policy annotation. A Fleet without that kind
/// (HelmOps before v0.13) answers 404, an RBAC without it 403: readiness then does not
/// wait for it, and the watch keeps retrying in case the CRD or the rule arrives later.
fn spawn_owner_watch(fleet: Client, index: Arc<OwnerIndex>, kind: OwnerKind) {
    let api: Api<PartialObjectMeta<DynamicObject>> =
        Api::all_with(fleet, &FleetResource::of_owner(kind).api_resource());
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    tokio::spawn(async move {
        let mut absent_logged = false;
        stream
            .for_each(|r| {
                match r {
                    Ok(event) => index.apply_owner_event(kind, &event),
                    Err(watcher::Error::InitialListFailed(kube::Error::Api(s)))
                        if s.code == 404 || s.code == 403 =>
                    {
                        index.mark_owners_synced(kind);
                        if !std::mem::replace(&mut absent_logged, true) {
                            let why = if s.code == 404 { "this Fleet serves none (before v0.13)" } else { "forbidden (RBAC)" };
                            tracing::warn!(%kind, why, "cannot list {kind}s; their policy annotations are not watched");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%kind, error = %e, "owner watch failed; retrying with backoff")
                    }
                }
                std::future::ready(())
            })
            .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_cluster_parses_and_rejects() {
        let c: FleetCluster = "fleet-local/local".parse().expect("parse");
        assert_eq!(
            c.selector(),
            "fleet.cattle.io/cluster-namespace=fleet-local,fleet.cattle.io/cluster=local"
        );
        assert_eq!(
            c.bundle_deployment_namespace,
            "cluster-fleet-local-local-1a3d67d0a899"
        );
        let c = c.with_bundle_deployment_namespace(Some("custom-ns"));
        assert_eq!(c.bundle_deployment_namespace, "custom-ns");
        let c = c.with_bundle_deployment_namespace(Some(""));
        assert_eq!(
            c.bundle_deployment_namespace, "custom-ns",
            "empty: no override"
        );
        for bad in ["local", "/local", "ns/", "a/b/c"] {
            let err = bad.parse::<FleetCluster>().expect_err(bad);
            assert!(err.to_string().contains("NAMESPACE/NAME"), "{err}");
        }
    }
}
