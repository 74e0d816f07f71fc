//! Wiring for counting: cluster connections, the reflectors feeding the owner index,
//! and the patch worker.

use std::{path::PathBuf, sync::Arc};

use futures::{StreamExt, TryStreamExt};
use kube::{
    api::{Api, DynamicObject},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{reflector, watcher, WatchStreamExt},
    Client, Config,
};

use crate::{
    fleet::{LABEL_CLUSTER, LABEL_CLUSTER_NAMESPACE},
    health::Readiness,
    metrics::Metrics,
    owners::{bundle_deployment_resource, gitrepo_resource, OwnerIndex},
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
}

impl std::str::FromStr for FleetCluster {
    type Err = ConnectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(FleetCluster {
                    namespace: ns.to_string(),
                    name: name.to_string(),
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

/// Start the reflectors and the patch worker. Readiness gets the `caches` check,
/// which passes once both caches have listed once.
pub fn start(
    clients: &Clients,
    cluster: &FleetCluster,
    scopes: Vec<String>,
    config: PatcherConfig,
    metrics: Metrics,
    readiness: Readiness,
) -> Counting {
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

    // BundleDeployments of this cluster: the index, and the patcher's watch over its marks.
    let bd_api: Api<DynamicObject> =
        Api::all_with(clients.fleet.clone(), &bundle_deployment_resource());
    let (bd_store, bd_writer) = {
        let w = reflector::store::Writer::<DynamicObject>::new(bundle_deployment_resource());
        (w.as_reader(), w)
    };
    let bd_index = index.clone();
    let observer = patcher.clone();
    let bds = watcher(
        bd_api,
        watcher::Config::default().labels(&cluster.selector()),
    )
    .default_backoff()
    .map_ok(move |event| {
        bd_index.apply_bundle_deployment_event(&event);
        if let watcher::Event::Apply(bd) = &event {
            observer.observe_bundle_deployment(bd);
        }
        // The cache needs names and labels only; statuses are read fresh when patching.
        event.modify(strip)
    })
    .reflect(bd_writer);
    tokio::spawn(async move {
        bds.for_each(|r| async move {
            if let Err(e) = r {
                tracing::warn!(error = %e, "BundleDeployment watch failed; retrying with backoff");
            }
        })
        .await;
    });

    // GitRepos: only their policy annotation.
    let repo_store = if watch_gitrepos {
        let repo_api: Api<DynamicObject> =
            Api::all_with(clients.fleet.clone(), &gitrepo_resource());
        let writer = reflector::store::Writer::<DynamicObject>::new(gitrepo_resource());
        let store = writer.as_reader();
        let repo_index = index.clone();
        let repos = watcher(repo_api, watcher::Config::default())
            .default_backoff()
            .map_ok(move |event| {
                repo_index.apply_gitrepo_event(&event);
                event.modify(strip)
            })
            .reflect(writer);
        tokio::spawn(async move {
            repos
                .for_each(|r| async move {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "GitRepo watch failed; retrying with backoff");
                    }
                })
                .await;
        });
        Some(store)
    } else {
        None
    };

    let ready_index = index.clone();
    let resync = (
        patcher.clone(),
        clients.cluster.clone(),
        clients.fleet.clone(),
        cluster.selector(),
    );
    tokio::spawn(async move {
        let synced = async {
            bd_store.wait_until_ready().await?;
            if let Some(store) = &repo_store {
                store.wait_until_ready().await?;
            }
            Ok::<_, reflector::store::WriterDropped>(())
        };
        match synced.await {
            Ok(()) => {
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
                let (patcher, cluster, fleet, selector) = resync;
                let interval = patcher.config().resync_interval;
                tokio::spawn(crate::patcher::resync::run(
                    patcher, cluster, fleet, selector, interval,
                ));
            }
            Err(e) => tracing::error!(error = %e, "cache writer dropped before sync"),
        }
    });

    tokio::spawn(patcher.clone().run());
    Counting { index, patcher }
}

fn strip(o: &mut DynamicObject) {
    o.data = serde_json::Value::Null;
    o.metadata.managed_fields = None;
    o.metadata.annotations = o.metadata.annotations.take().map(|mut a| {
        a.retain(|k, _| k == crate::owners::POLICY_ANNOTATION);
        a
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
        for bad in ["local", "/local", "ns/", "a/b/c"] {
            let err = bad.parse::<FleetCluster>().expect_err(bad);
            assert!(err.to_string().contains("NAMESPACE/NAME"), "{err}");
        }
    }
}
