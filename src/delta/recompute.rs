//! Fleet's GitRepo status reconciler as a pure function: the whole
//! BD-derived part of a GitRepo status from its BundleDeployments.
//!
//! The API double uses it to behave like Fleet (every GitRepo update is
//! recomputed from BDs, reverting foreign edits), and property tests use it
//! as the reference for the incremental deltas.

use crate::fleet::release::StatusRules;
use std::collections::{BTreeMap, HashMap};

use crate::fleet::conditions::set_condition;
use crate::fleet::state::{deployment_state, READY};
use crate::fleet::status::{
    BundleDeployment, BundleSummary, GitRepoStatus, Resource, ResourceCounts,
};
use crate::fleet::{OwnerKind, ResourceKey};

use super::resource_states::{bundle_deployment_resource_states, ResourceState};
use super::summary::{
    bundle_ready_message, display_from_summary, increment_state, max_state_message, ready_message,
};

/// Fleet stops listing cluster ids in `perClusterState` after ~1 MiB.
const PER_CLUSTER_STATE_BUDGET: usize = 1024 * 1024;

/// Recomputes summary, readyClusters/desiredReadyClusters, display,
/// resources, resourceCounts, perClusterResourceCounts and the Ready
/// condition of `status` from `bds` (the GitRepo's BDs, any order), exactly
/// as Fleet's GitRepo status reconciler does. Everything else is kept.
///
/// Fleet copies the Ready condition of the first not-ready *Bundle* (by
/// Bundle UID). Bundles are not an input here, so Bundles are ordered by
/// their first BD in UID order and their Ready message is rebuilt from their
/// BDs; exact whenever each Bundle's BDs are all known and UIDs are
/// consistent (always true for one cluster). `now` stamps changed conditions.
pub fn gitrepo_status_from_bundle_deployments(
    status: &GitRepoStatus,
    bds: &[BundleDeployment],
    now: &str,
) -> GitRepoStatus {
    owner_status_for(
        &StatusRules::default(),
        OwnerKind::GitRepo,
        status,
        bds,
        now,
    )
}

/// Fleet's HelmOp status controller (`helmops/reconciler/helmop_status.go`,
/// `setStatusHelm`) as a pure function: the same `StatusBase` fields as a GitRepo's,
/// but the display state is never `GitUpdating` and the Ready condition is the
/// HelmOp's own (`Modified(1) [Bundle b]; …`), never a Bundle's copied one.
pub fn helmop_status_from_bundle_deployments(
    status: &GitRepoStatus,
    bds: &[BundleDeployment],
    now: &str,
) -> GitRepoStatus {
    owner_status_for(&StatusRules::default(), OwnerKind::HelmOp, status, bds, now)
}

/// The status the owner's status controller writes, as the Fleet release with `rules`
/// computes it: [`gitrepo_status_from_bundle_deployments`] for a GitRepo,
/// [`helmop_status_from_bundle_deployments`] for a HelmOp (any other kind is computed
/// like a HelmOp: `StatusBase` alone).
pub fn owner_status_for(
    rules: &StatusRules,
    kind: OwnerKind,
    status: &GitRepoStatus,
    bds: &[BundleDeployment],
    now: &str,
) -> GitRepoStatus {
    let mut out = status.clone();
    let mut sorted: Vec<&BundleDeployment> = bds.iter().collect();
    sorted.sort_by(|a, b| a.metadata.uid.cmp(&b.metadata.uid));

    // resourcestatus.SetResources
    out.resources = aggregate_resources(rules, &sorted);
    let mut total = ResourceCounts {
        other: status
            .resource_counts
            .as_ref()
            .map(|c| c.other.clone())
            .unwrap_or_default(),
        ..ResourceCounts::default()
    };
    let mut by_cluster: BTreeMap<String, ResourceCounts> = BTreeMap::new();
    for bd in &sorted {
        let counts = bd
            .status_or_default()
            .resource_counts
            .clone()
            .unwrap_or_default();
        total.add_scaled(&counts, 1);
        let id = bd.cluster_id();
        let slot = by_cluster
            .entry(id.clone())
            .or_insert_with(|| ResourceCounts {
                other: status
                    .per_cluster_resource_counts
                    .get(&id)
                    .map(|c| c.other.clone())
                    .unwrap_or_default(),
                ..ResourceCounts::default()
            });
        slot.add_scaled(&counts, 1);
    }
    out.resource_counts = Some(total);
    out.per_cluster_resource_counts = by_cluster;

    set_bundle_deployment_fields(rules, kind, &mut out, &sorted, now);
    out
}

/// The BD-level part of Fleet's recompute: summary, readyClusters,
/// desiredReadyClusters, display and the Ready condition, from all of the
/// GitRepo's BDs sorted by UID. Previous values in `status` only supply
/// unknown fields, the display message fallback, and condition timestamps.
/// A HelmOp (`kind`) gets its own Ready condition and no `GitUpdating`.
pub(crate) fn set_bundle_deployment_fields(
    rules: &StatusRules,
    kind: OwnerKind,
    status: &mut GitRepoStatus,
    sorted: &[&BundleDeployment],
    now: &str,
) {
    // status.SetFields
    let mut summary = BundleSummary {
        other: status
            .summary
            .as_ref()
            .map(|s| s.other.clone())
            .unwrap_or_default(),
        ..BundleSummary::default()
    };
    let mut per_cluster: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for bd in sorted {
        increment_state(rules, &mut summary, &bd.metadata.name, bd);
        summary.desired_ready = summary.desired_ready.saturating_add(1);
        if bd.has_cluster_labels() {
            let labels = &bd.metadata.labels;
            let key = (
                labels
                    .get(crate::fleet::LABEL_CLUSTER_NAMESPACE)
                    .cloned()
                    .unwrap_or_default(),
                labels
                    .get(crate::fleet::LABEL_CLUSTER)
                    .cloned()
                    .unwrap_or_default(),
            );
            let entry = per_cluster.entry(key).or_default();
            entry.0 += 1;
            if deployment_state(&bd.spec, &bd.status_or_default()) == READY {
                entry.1 += 1;
            }
        }
    }
    status.desired_ready_clusters = Some(per_cluster.len() as i64);
    status.ready_clusters = Some(
        per_cluster
            .values()
            .filter(|(n, r)| n == r && *r > 0)
            .count() as i64,
    );

    // summary.SetReadyConditions(gitrepo, "Bundle", summary)
    let own = ready_message(&summary, "Bundle");
    // The reason stays, except that v0.14.3 on clears it when Ready becomes True.
    let reason = if own.is_empty() && rules.ready_true_clears_reason {
        String::new()
    } else {
        status
            .condition("Ready")
            .map(|c| c.reason.clone())
            .unwrap_or_default()
    };

    // display, and GitUpdating for a GitRepo only (status_controller.go)
    let previous = status.display.clone().unwrap_or_default();
    let git_job_status = (kind == OwnerKind::GitRepo).then_some(status.git_job_status.as_str());
    status.display = Some(display_from_summary(
        &summary,
        git_job_status,
        &previous,
        Some(&max_state_message(rules, sorted)),
    ));
    status.summary = Some(summary);

    if kind != OwnerKind::GitRepo {
        // setStatusHelm: SetReadyConditions only, no Bundle's condition copied.
        let status_bool = if own.is_empty() { "True" } else { "False" };
        set_condition(
            &mut status.conditions,
            "Ready",
            status_bool,
            &own,
            &reason,
            now,
        );
        return;
    }

    // setReadyStatusFromBundle: first not-ready bundle wins.
    let mut bundles: Vec<Vec<&BundleDeployment>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for bd in sorted {
        let name = bd.bundle_name();
        match index.get(name) {
            Some(&i) => bundles[i].push(bd),
            None => {
                index.insert(name, bundles.len());
                bundles.push(vec![bd]);
            }
        }
    }
    let bundle_msg = bundles
        .iter()
        .map(|bds| bundle_ready_message(rules, bds))
        .find(|m| !m.is_empty());
    match bundle_msg {
        Some(msg) => set_condition(&mut status.conditions, "Ready", "False", &msg, "", now),
        None if own.is_empty() => {
            set_condition(&mut status.conditions, "Ready", "True", "", &reason, now)
        }
        None => set_condition(&mut status.conditions, "Ready", "False", &own, &reason, now),
    };
}

/// `fromResources` + `aggregateResourceStatesClustersMap`.
pub(crate) fn aggregate_resources(rules: &StatusRules, bds: &[&BundleDeployment]) -> Vec<Resource> {
    let mut items: Vec<&BundleDeployment> = bds.to_vec();
    items.sort_by_key(|bd| bd.cluster_id());
    let mut by_key: HashMap<ResourceKey, Vec<(ResourceState, String)>> = HashMap::new();
    for bd in &items {
        let cluster = bd.cluster_id();
        for (key, state) in bundle_deployment_resource_states(bd) {
            by_key
                .entry(key)
                .or_default()
                .push((state, cluster.clone()));
        }
    }
    let mut keys: Vec<ResourceKey> = by_key.keys().cloned().collect();
    let order = |k: &ResourceKey| format!("{}{} {}/{}", k.kind, k.api_version, k.namespace, k.name);
    keys.sort_by_key(|k| std::cmp::Reverse(order(k)));

    let mut size = 0usize;
    let mut result = Vec::with_capacity(keys.len());
    for key in keys {
        let mut resource = Resource::for_key(&key);
        for (entry, cluster) in by_key.get(&key).map(Vec::as_slice).unwrap_or_default() {
            if entry.incomplete {
                resource.incomplete_state = true;
            }
            size = size.saturating_add(cluster.len());
            if size < PER_CLUSTER_STATE_BUDGET || !rules.per_cluster_state_cap {
                let list = rules
                    .per_cluster_list(&entry.state)
                    .and_then(|l| resource.per_cluster_state.list_mut(l));
                if let Some(list) = list {
                    list.push(cluster.clone());
                }
            }
            if resource.state == READY {
                resource.state = entry.state.clone();
            }
        }
        result.push(resource);
    }
    result.sort_by_key(Resource::sort_key);
    result
}
