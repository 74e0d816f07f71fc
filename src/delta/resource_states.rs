//! What one BundleDeployment contributes to its GitRepo's `status.resources`
//! (Fleet's `bundleDeploymentResources` / `resourcesDefaultState`). Shared by
//! the incremental GitRepo delta and the full recompute so both agree.

use std::collections::BTreeMap;

use crate::fleet::state::{deployment_state, MODIFIED, NOT_READY, READY};
use crate::fleet::status::BundleDeployment;
use crate::fleet::ResourceKey;

/// One resource's state on one cluster, as one BD reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceState {
    /// `Ready`, `Missing`, `Modified`, `Orphaned`, `Unknown`, a BD state, or
    /// the agent's summary state of a non-ready object (e.g. `in-progress`).
    pub state: String,
    /// The BD's lists were truncated.
    pub incomplete: bool,
}

/// State of resources that are listed only in `resources`: Ready for
/// Modified/NotReady BDs (those states come from individual resources),
/// `Unknown` if the BD's lists were truncated, else the BD's own state.
pub fn resources_default_state(bd: &BundleDeployment) -> String {
    let status = bd.status_or_default();
    match deployment_state(&bd.spec, &status) {
        NOT_READY | MODIFIED => {
            if status.incomplete_state {
                "Unknown".to_string()
            } else {
                READY.to_string()
            }
        }
        other => other.to_string(),
    }
}

/// Every resource a BD reports, with its state: live resources get the
/// default state, then non-ready and modified entries override it.
pub fn bundle_deployment_resource_states(
    bd: &BundleDeployment,
) -> BTreeMap<ResourceKey, ResourceState> {
    let status = bd.status_or_default();
    let incomplete = status.incomplete_state;
    let default_state = resources_default_state(bd);
    let mut out = BTreeMap::new();
    for r in &status.resources {
        out.insert(
            r.key(),
            ResourceState {
                state: default_state.clone(),
                incomplete,
            },
        );
    }
    for n in &status.non_ready_status {
        out.insert(
            n.key(),
            ResourceState {
                state: n.summary.state.clone(),
                incomplete,
            },
        );
    }
    for m in &status.modified_status {
        let state = if m.delete {
            "Orphaned"
        } else if m.missing {
            "Missing"
        } else {
            "Modified"
        };
        out.insert(
            m.key(),
            ResourceState {
                state: state.to_string(),
                incomplete,
            },
        );
    }
    out
}

/// Name of the `perClusterState` list a state is filed under (`None` for
/// states Fleet does not file, e.g. `in-progress` or a BD state like `OutOfSync`).
pub fn per_cluster_list(state: &str) -> Option<&'static str> {
    crate::fleet::release::StatusRules::default().per_cluster_list(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::status::{
        BundleDeploymentResource, BundleDeploymentStatus, ModifiedStatus, NonReadyStatus,
        NonReadySummary,
    };

    fn bd(incomplete: bool) -> BundleDeployment {
        let res = |n: &str| BundleDeploymentResource {
            kind: "ConfigMap".into(),
            api_version: "v1".into(),
            namespace: "default".into(),
            name: n.into(),
            ..Default::default()
        };
        let key = |n: &str| ResourceKey::new("v1", "ConfigMap", Some("default"), n);
        BundleDeployment {
            status: Some(BundleDeploymentStatus {
                ready: false,
                incomplete_state: incomplete,
                resources: vec![res("a"), res("b"), res("c")],
                non_ready_status: vec![NonReadyStatus {
                    kind: "ConfigMap".into(),
                    api_version: "v1".into(),
                    namespace: "default".into(),
                    name: "b".into(),
                    summary: NonReadySummary {
                        state: "updating".into(),
                        ..Default::default()
                    },
                    ..Default::default()
                }],
                modified_status: vec![ModifiedStatus::missing(&key("gone"))],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn states_like_fleet() {
        let states = bundle_deployment_resource_states(&bd(false));
        let state = |n: &str| {
            states[&ResourceKey::new("v1", "ConfigMap", Some("default"), n)]
                .state
                .clone()
        };
        assert_eq!(state("a"), "Ready");
        assert_eq!(state("b"), "updating");
        assert_eq!(state("gone"), "Missing");
        let states = bundle_deployment_resource_states(&bd(true));
        assert_eq!(
            states[&ResourceKey::new("v1", "ConfigMap", Some("default"), "a")].state,
            "Unknown"
        );
        assert!(states.values().all(|s| s.incomplete));
    }

    #[test]
    fn per_cluster_lists() {
        assert_eq!(per_cluster_list("updating"), Some("NotReady"));
        assert_eq!(per_cluster_list("error"), Some("NotReady"));
        assert_eq!(per_cluster_list("Missing"), Some("Missing"));
        assert_eq!(per_cluster_list("in-progress"), None);
        assert_eq!(per_cluster_list("OutOfSync"), None);
    }
}
