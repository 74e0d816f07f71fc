//! The cluster adapter below `serve`, `verify` and the resync: connecting to the
//! cluster where deletions happen and to the Fleet cluster ([`connect`]), this
//! cluster's Fleet `Cluster` ([`FleetCluster`]), and the page-by-page listing that
//! feeds the pure comparison ([`scan`], in [`crate::compare`]).

pub mod scan;

use std::path::PathBuf;

use kube::{
    config::{KubeConfigOptions, Kubeconfig},
    Client, Config,
};

use crate::fleet::{cluster_namespace, LABEL_CLUSTER, LABEL_CLUSTER_NAMESPACE};

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
