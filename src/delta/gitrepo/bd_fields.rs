//! The BD-level part of a GitRepo delta when not every BD is known: which
//! summary entry and state the GitRepo shows for the BD, and updating the
//! summary, readyClusters, display and Ready condition in place.

use crate::fleet::release::StatusRules;
use std::collections::BTreeSet;

use crate::fleet::conditions::set_condition;
use crate::fleet::state::{MODIFIED, NOT_READY, READY};
use crate::fleet::status::{BundleDeployment, GitRepoStatus, NonReadyResource};
use crate::fleet::{OwnerKind, ResourceKey};

use super::super::resource_states::bundle_deployment_resource_states;
use super::super::summary::{
    bundle_ready_message, display_from_summary, is_bundle_state_message, non_ready_entry,
    ready_message, MAX_NON_READY_RESOURCES,
};
use super::resources::shown_list;
use super::{bd_state, same_bd};

/// The incremental BD-level update when not every BD is known: summary,
/// readyClusters, display and the Ready condition.
pub(super) fn update_bundle_deployment_fields(
    kind: OwnerKind,
    status: &mut GitRepoStatus,
    change: &BdChange<'_>,
    now: &str,
) {
    let single_cluster = change.single_cluster;
    update_summary(status, change);
    if let Some(summary) = &status.summary {
        if single_cluster {
            // The only cluster is ready iff every BD is.
            if let Some(rc) = status.ready_clusters.as_mut() {
                let all_ready = summary.ready == summary.desired_ready;
                *rc = if all_ready {
                    status.desired_ready_clusters.unwrap_or(0).clamp(0, 1)
                } else {
                    0
                };
            }
        }
        let previous = status.display.clone().unwrap_or_default();
        // Only this cluster's BundleDeployments are known here: the message comes from
        // the summary's first 10 non-ready entries, or stays as Fleet last wrote it.
        let git_job_status = (kind == OwnerKind::GitRepo).then_some(status.git_job_status.as_str());
        status.display = Some(display_from_summary(
            summary,
            git_job_status,
            &previous,
            None,
        ));
    }
    if kind != OwnerKind::GitRepo {
        // helmop_status.go: the HelmOp's own Ready condition, from its summary.
        if let Some(summary) = &status.summary {
            let own = ready_message(summary, "Bundle");
            let status_bool = if own.is_empty() { "True" } else { "False" };
            let reason = if own.is_empty() && change.rules.ready_true_clears_reason {
                String::new()
            } else {
                status
                    .condition("Ready")
                    .map(|c| c.reason.clone())
                    .unwrap_or_default()
            };
            set_condition(
                &mut status.conditions,
                "Ready",
                status_bool,
                &own,
                &reason,
                now,
            );
        }
        return;
    }
    update_ready_condition(
        change.rules,
        status,
        change.before,
        change.after,
        change.peers,
        single_cluster,
        now,
    );
}

/// What the GitRepo currently shows for this BD and its cluster peers.
#[derive(Clone)]
pub(super) struct ShownReady {
    /// This BD shown Ready (see [`shown_ready`]).
    pub(super) this: Option<bool>,
    /// Summary entries the resources say may be this BD's (see [`shown_entry`]).
    pub(super) entries: Vec<usize>,
    /// All other BDs on the cluster shown Ready (unknown ones by their state).
    pub(super) peers: bool,
}

/// One BD's change with what is known around it (incremental path).
pub(super) struct BdChange<'a> {
    pub(super) rules: &'a StatusRules,
    pub(super) before: &'a BundleDeployment,
    pub(super) after: &'a BundleDeployment,
    pub(super) known: &'a [BundleDeployment],
    pub(super) peers: &'a [&'a BundleDeployment],
    pub(super) resources_applied: bool,
    pub(super) single_cluster: bool,
    pub(super) shown: ShownReady,
}

/// Whether the GitRepo's resources show the BD (given as one or more
/// versions of it) as Ready on `cluster`: `Some(true)` if every resource of
/// it is listed Ready there (or not listed), `Some(false)` if one is listed
/// in another state, `None` when the BD's state cannot be read off its
/// resources (states like OutOfSync, or resource states Fleet does not file).
pub(super) fn shown_ready(
    rules: &StatusRules,
    status: &GitRepoStatus,
    cluster: &str,
    versions: &[&BundleDeployment],
) -> Option<bool> {
    let mut keys = BTreeSet::new();
    for bd in versions {
        if !matches!(bd_state(bd), READY | MODIFIED | NOT_READY) {
            return None;
        }
        for (key, state) in bundle_deployment_resource_states(bd) {
            if state.state != READY && rules.per_cluster_list(&state.state).is_none() {
                return None;
            }
            keys.insert(key);
        }
    }
    Some(
        keys.iter()
            .all(|k| matches!(shown_list(status, k, cluster), None | Some("Ready"))),
    )
}

/// The summary entry (named like the BD) that matches what the GitRepo's
/// resources show for this BD on `cluster`: every object in the entry's
/// `modifiedStatus`/`nonReadyStatus` is listed for the cluster in the
/// matching state, and every object of the BD listed as missing, orphaned or
/// modified there is in the entry. Tells apart same-named BDs of other
/// clusters (identical entries of several clusters all match).
pub(super) fn shown_entry(
    rules: &StatusRules,
    status: &GitRepoStatus,
    cluster: &str,
    before: &BundleDeployment,
    after: &BundleDeployment,
) -> Vec<usize> {
    let Some(summary) = status.summary.as_ref() else {
        return Vec::new();
    };
    let name = after.metadata.name.as_str();
    let mut keys: BTreeSet<ResourceKey> = bundle_deployment_resource_states(before)
        .into_keys()
        .collect();
    keys.extend(bundle_deployment_resource_states(after).into_keys());
    let drifted: BTreeSet<&ResourceKey> = keys
        .iter()
        .filter(|k| {
            matches!(
                shown_list(status, k, cluster),
                Some("Missing" | "Modified" | "Orphaned")
            )
        })
        .collect();
    let matches = |e: &NonReadyResource| {
        if e.name != name {
            return false;
        }
        let covered = drifted
            .iter()
            .all(|k| e.modified_status.iter().any(|m| m.key() == **k));
        entry_listed_for(rules, status, e, cluster) && covered
    };
    (0..summary.non_ready_resources.len())
        .filter(|&i| matches(&summary.non_ready_resources[i]))
        .collect()
}

/// True when the GitRepo's resources list every object of summary entry
/// `e` for `cluster` in the state the entry gives it: the entry can be that
/// cluster's.
pub(super) fn entry_listed_for(
    rules: &StatusRules,
    status: &GitRepoStatus,
    e: &NonReadyResource,
    cluster: &str,
) -> bool {
    let modified = e.modified_status.iter().all(|m| {
        let want = if m.delete {
            "Orphaned"
        } else if m.missing {
            "Missing"
        } else {
            "Modified"
        };
        shown_list(status, &m.key(), cluster) == Some(want)
    });
    let not_ready =
        e.non_ready_status
            .iter()
            .all(|n| match rules.per_cluster_list(&n.summary.state) {
                Some(list) => shown_list(status, &n.key(), cluster) == Some(list),
                None => true,
            });
    modified && not_ready
}

/// Replaces what the summary shows for this BD with its new state: state
/// counters, its `nonReadyResources` entry (kept in BD UID order, capped at
/// 10) and readyClusters.
pub(super) fn update_summary(status: &mut GitRepoStatus, ctx: &BdChange<'_>) {
    let BdChange {
        rules,
        before,
        after,
        known,
        peers,
        resources_applied,
        single_cluster,
        ref shown,
    } = *ctx;
    let Some(summary) = status.summary.as_ref() else {
        return;
    };
    let name = after.metadata.name.as_str();
    let (state_b, state_a) = (bd_state(before), bd_state(after));
    let entry_b = (state_b != READY).then(|| non_ready_entry(rules, name, before));
    let entry_a = (state_a != READY).then(|| non_ready_entry(rules, name, after));
    let entries = &summary.non_ready_resources;
    let candidates: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].name == name)
        .collect();
    // Among identical entries (same BD name and content on several
    // clusters) ours is the one whose rank matches our UID's rank among the
    // BDs shown with that content.
    let equal_among = |pool: &[usize], e: &Option<NonReadyResource>| {
        let e = e.as_ref()?;
        let same: Vec<usize> = pool
            .iter()
            .copied()
            .filter(|&i| entries[i].same_content(e))
            .collect();
        let rank = known
            .iter()
            .filter(|k| k.metadata.name == name && !same_bd(k, after))
            .filter(|k| k.metadata.uid < after.metadata.uid)
            .filter(|k| non_ready_entry(rules, name, k).same_content(e))
            .filter(|k| entry_listed_for(rules, status, e, &k.cluster_id()))
            .count();
        same.get(rank).or(same.last()).copied()
    };
    let equal_to = |e: &Option<NonReadyResource>| equal_among(&candidates, e);
    let hidden_possible = entries.len() >= MAX_NON_READY_RESOURCES;

    // (state the summary currently counts this BD in, index of its entry)
    let (shown_state, shown_idx): (String, Option<usize>) = if single_cluster {
        match candidates.first() {
            Some(&i) => (entries[i].bundle_state.clone(), Some(i)),
            None if hidden_possible => {
                let s = if resources_applied { state_b } else { state_a };
                (s.to_string(), None)
            }
            None => (READY.to_string(), None),
        }
    } else if !resources_applied {
        // Several clusters share BD names and this call moved no resource:
        // the GitRepo already shows this BD's change (or a later one).
        return;
    } else if shown.this == Some(true) {
        (READY.to_string(), None)
    } else if let Some(i) = equal_among(&shown.entries, &entry_b)
        .or_else(|| equal_among(&shown.entries, &entry_a))
        .or_else(|| shown.entries.first().copied())
        .or_else(|| equal_to(&entry_b))
        .or_else(|| equal_to(&entry_a))
    {
        (entries[i].bundle_state.clone(), Some(i))
    } else {
        (state_b.to_string(), None)
    };

    let entry_matches = match (shown_idx, &entry_a) {
        (Some(i), Some(e)) => entries[i].same_content(e),
        (None, None) => true,
        (None, Some(_)) => hidden_possible && shown_state == state_a,
        (Some(_), None) => false,
    };
    if shown_state == state_a && entry_matches {
        return;
    }
    // A new entry keeps its place when replacing the old one, else goes by UID.
    let insert_at = shown_idx
        .unwrap_or_else(|| uid_position(rules, status, after, known, peers, single_cluster));

    let Some(summary) = status.summary.as_mut() else {
        return;
    };
    if shown_state != state_a {
        if let Some(c) = summary.counter_mut(&shown_state) {
            *c = c.saturating_sub(1).max(0);
        }
        if let Some(c) = summary.counter_mut(state_a) {
            *c = c.saturating_add(1);
        }
    }
    if let Some(i) = shown_idx {
        summary.non_ready_resources.remove(i);
    }
    if let Some(entry) = entry_a {
        let pos = insert_at.min(summary.non_ready_resources.len());
        summary.non_ready_resources.insert(pos, entry);
        summary
            .non_ready_resources
            .truncate(MAX_NON_READY_RESOURCES);
    }

    // One cluster: readyClusters follows from the summary (see apply_change).
    if !single_cluster && shown_state != state_a && (shown_state == READY || state_a == READY) {
        let peers_ready = shown.peers;
        let was = i64::from(shown_state == READY && peers_ready);
        let now_ready = i64::from(state_a == READY && peers_ready);
        if let Some(rc) = status.ready_clusters.as_mut() {
            let max = status.desired_ready_clusters.unwrap_or(i64::MAX);
            *rc = rc.saturating_add(now_ready - was).clamp(0, max.max(0));
        }
    }
}

/// Where a new entry for `bd` goes so entries stay in BD UID order. Entries
/// are matched to known BDs with the same name and entry content whose
/// cluster the GitRepo resources show in that state (BD names repeat across
/// clusters; the k-th of several identical entries gets the k-th smallest
/// UID), else to a same-named BD on this cluster; entries of unknown BDs are
/// skipped over.
pub(super) fn uid_position(
    rules: &StatusRules,
    status: &GitRepoStatus,
    bd: &BundleDeployment,
    known: &[BundleDeployment],
    peers: &[&BundleDeployment],
    single_cluster: bool,
) -> usize {
    let Some(entries) = status
        .summary
        .as_ref()
        .map(|s| s.non_ready_resources.as_slice())
    else {
        return 0;
    };
    let own = bd.metadata.uid.as_str();
    for (i, e) in entries.iter().enumerate() {
        // BDs this entry can belong to: same name, and the GitRepo resources
        // show the entry's objects that way on the BD's cluster.
        let shown_as: Vec<&BundleDeployment> = known
            .iter()
            .filter(|k| k.metadata.name == e.name && !same_bd(k, bd))
            .filter(|k| entry_listed_for(rules, status, e, &k.cluster_id()))
            .collect();
        let nth = entries[..i].iter().filter(|p| p.same_content(e)).count();
        let mut same: Vec<&str> = shown_as
            .iter()
            .filter(|k| non_ready_entry(rules, &e.name, k).same_content(e))
            .map(|k| k.metadata.uid.as_str())
            .collect();
        same.sort_unstable();
        let uid = same
            .get(nth)
            .copied()
            .or_else(|| shown_as.first().map(|k| k.metadata.uid.as_str()))
            .or_else(|| {
                // With one cluster, names identify BDs.
                let ours = single_cluster || entry_listed_for(rules, status, e, &bd.cluster_id());
                peers
                    .iter()
                    .find(|p| ours && p.metadata.name == e.name)
                    .map(|p| p.metadata.uid.as_str())
            });
        if uid.is_some_and(|u| u > own) {
            return i;
        }
    }
    entries.len()
}

/// The GitRepo Ready condition after the change: Fleet shows the Ready
/// condition of the first not-ready Bundle (`State(n) [Cluster c]; …`), or
/// its own True when everything is ready. Bundle order is approximated by
/// BD UID; on several clusters only a message known to be this Bundle's is
/// replaced.
pub(super) fn update_ready_condition(
    rules: &StatusRules,
    status: &mut GitRepoStatus,
    before: &BundleDeployment,
    after: &BundleDeployment,
    peers: &[&BundleDeployment],
    single_cluster: bool,
    now: &str,
) {
    let Some(summary) = status.summary.as_ref() else {
        return;
    };
    let current = status.condition("Ready").cloned();
    let all_ready = summary.ready == summary.desired_ready;
    if all_ready {
        if current
            .as_ref()
            .is_none_or(|c| c.status == "True" || is_bundle_state_message(&c.message))
        {
            set_condition(&mut status.conditions, "Ready", "True", "", "", now);
        }
        return;
    }
    let first_non_ready = || {
        let mut candidates: Vec<&BundleDeployment> = peers
            .iter()
            .copied()
            .chain(std::iter::once(after))
            .filter(|b| bd_state(b) != READY)
            .collect();
        candidates.sort_by(|a, b| a.metadata.uid.cmp(&b.metadata.uid));
        candidates
            .first()
            .map(|b| bundle_ready_message(rules, &[b]))
    };
    let message = if single_cluster {
        first_non_ready()
    } else {
        let ours_before = bundle_ready_message(rules, &[before]);
        let shown_is_ours = current.as_ref().is_none_or(|c| {
            c.status == "True" || (!ours_before.is_empty() && c.message == ours_before)
        });
        if !shown_is_ours {
            return;
        }
        if bd_state(after) != READY {
            Some(bundle_ready_message(rules, &[after]))
        } else {
            first_non_ready()
        }
    };
    match message.filter(|m| !m.is_empty()) {
        Some(msg) => set_condition(&mut status.conditions, "Ready", "False", &msg, "", now),
        None => {
            if current.as_ref().is_some_and(|c| c.status == "False") {
                return;
            }
            let own = ready_message(summary, "Bundle");
            set_condition(&mut status.conditions, "Ready", "False", &own, "", now)
        }
    };
}
