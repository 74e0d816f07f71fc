//! The change Fleet's GitRepo status reconciler makes when one of the
//! GitRepo's BundleDeployments changes, applied incrementally to the
//! GitRepo status (without listing every BD).
//!
//! Idempotency comes from the GitRepo status itself: for every resource whose
//! per-cluster state differs between the BD before and after, the GitRepo's
//! `perClusterState` tells whether it still shows the old state (apply), the
//! new one (already applied, e.g. Fleet recomputed it or this is a retry),
//! or neither (diverged: leave it to Fleet). Summary, display, readyClusters
//! and the Ready condition are then brought in line with the BD's new state,
//! which is idempotent by construction.

use std::collections::BTreeSet;

use crate::fleet::conditions::set_condition;
use crate::fleet::state::{deployment_state, READY};
use crate::fleet::status::{BundleDeployment, GitRepoStatus, NonReadyResource, Resource, StatusDisplay};
use crate::fleet::ResourceKey;

use super::bundle_deployment;
use super::resource::DeletedResource;
use super::resource_states::{bundle_deployment_resource_states, per_cluster_list, ResourceState};
use super::summary::{
    bundle_ready_message, display_from_summary, is_bundle_state_message, non_ready_entry, ready_message,
    MAX_NON_READY_RESOURCES,
};

/// What applying a BD change to a GitRepo status did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GitRepoOutcome {
    /// The status was changed; patch it.
    Applied,
    /// The status already showed the change (Fleet recomputed it, or this is
    /// a retry): nothing to patch.
    AlreadyApplied,
    /// The status shows neither the old nor the new state of the changed
    /// resources (it moved on): left untouched for Fleet to settle.
    Diverged,
}

impl GitRepoOutcome {
    /// True when the status was modified and should be patched.
    pub fn changed(self) -> bool {
        self == GitRepoOutcome::Applied
    }
}

/// GitRepo delta for "`r` was deleted" on `bd`'s cluster.
///
/// `bd` is the BD as currently known: either still unaware of the deletion
/// (then the change is `bd` → `mark_missing(bd)`), or already marked by the
/// webhook or by Fleet's agent (then the change is reconstructed as
/// `unmark_missing(bd)` → `bd`), so retries and late calls still update the
/// GitRepo. `known_bds` are the GitRepo's BDs the caller knows (at least
/// those on `bd`'s cluster; `bd` itself is ignored there): they decide
/// readyClusters, the order of summary entries and which Bundle's Ready
/// message is shown. `now` (RFC 3339) stamps changed conditions.
pub fn mark_missing(
    status: &mut GitRepoStatus,
    bd: &BundleDeployment,
    r: &DeletedResource,
    known_bds: &[BundleDeployment],
    now: &str,
) -> GitRepoOutcome {
    let (before, after) = transition(bd, r, now, true);
    if before == after {
        // `r` is not part of this BD: nothing of this GitRepo changes.
        return GitRepoOutcome::AlreadyApplied;
    }
    apply_change(status, &before, &after, known_bds, now)
}

/// GitRepo delta for "`r` exists again" (recreated, or the DELETE failed):
/// the inverse of [`mark_missing`], with the same conventions.
pub fn unmark_missing(
    status: &mut GitRepoStatus,
    bd: &BundleDeployment,
    r: &DeletedResource,
    known_bds: &[BundleDeployment],
    now: &str,
) -> GitRepoOutcome {
    let (before, after) = transition(bd, r, now, false);
    if before == after {
        return GitRepoOutcome::AlreadyApplied;
    }
    apply_change(status, &before, &after, known_bds, now)
}

/// (before, after) of the BD for a mark (`missing == true`) or unmark.
fn transition(bd: &BundleDeployment, r: &DeletedResource, now: &str, missing: bool) -> (BundleDeployment, BundleDeployment) {
    let forward = |b: &mut BundleDeployment| -> bool {
        let spec = b.spec.clone();
        match b.status.as_mut() {
            Some(s) if missing => bundle_deployment::mark_missing(s, &spec, r, now),
            Some(s) => bundle_deployment::unmark_missing(s, &spec, r, now),
            None => false,
        }
    };
    let backward = |b: &mut BundleDeployment| {
        let spec = b.spec.clone();
        if let Some(s) = b.status.as_mut() {
            if missing {
                bundle_deployment::unmark_missing(s, &spec, r, now);
            } else {
                bundle_deployment::mark_missing(s, &spec, r, now);
            }
        }
    };
    let mut after = bd.clone();
    if forward(&mut after) {
        (bd.clone(), after)
    } else {
        let mut before = bd.clone();
        backward(&mut before);
        (before, bd.clone())
    }
}

/// Applies the change of one BD from `before` to `after` (same BD, same
/// cluster) to `status`, as Fleet's recompute would reflect it. See the
/// module docs for idempotency; see [`mark_missing`] for `known_bds`.
pub fn apply_change(
    status: &mut GitRepoStatus,
    before: &BundleDeployment,
    after: &BundleDeployment,
    known_bds: &[BundleDeployment],
    now: &str,
) -> GitRepoOutcome {
    let orig = status.clone();
    let cluster = after.cluster_id();
    let states_before = bundle_deployment_resource_states(before);
    let states_after = bundle_deployment_resource_states(after);
    let differing: BTreeSet<&ResourceKey> = states_before
        .keys()
        .chain(states_after.keys())
        .filter(|k| states_before.get(*k) != states_after.get(*k))
        .collect();

    let mut shows_before = 0usize;
    let mut shows_neither = 0usize;
    for key in &differing {
        let b = list_of(states_before.get(*key));
        let a = list_of(states_after.get(*key));
        if a == b {
            continue;
        }
        let shown = shown_list(status, key, &cluster);
        if shown == a {
            continue;
        }
        if shown == b {
            shows_before += 1;
        } else {
            shows_neither += 1;
        }
    }
    if shows_before == 0 && shows_neither > 0 {
        return GitRepoOutcome::Diverged;
    }

    let single_cluster = is_single_cluster(status, &cluster);
    let resources_applied = shows_before > 0;
    if resources_applied {
        for key in &differing {
            move_cluster(status, key, &cluster, states_before.get(*key), states_after.get(*key));
        }
        let delta_before = before.status_or_default().resource_counts.clone().unwrap_or_default();
        let delta_after = after.status_or_default().resource_counts.clone().unwrap_or_default();
        for counts in status
            .resource_counts
            .iter_mut()
            .chain(status.per_cluster_resource_counts.get_mut(&cluster))
        {
            counts.add_scaled(&delta_before, -1);
            counts.add_scaled(&delta_after, 1);
        }
    }

    let peers: Vec<&BundleDeployment> = known_bds
        .iter()
        .filter(|p| p.cluster_id() == cluster && !same_bd(p, after))
        .collect();
    update_summary(status, before, after, known_bds, &peers, resources_applied, single_cluster);
    if let Some(summary) = &status.summary {
        let previous = status.display.clone().unwrap_or_else(StatusDisplay::default);
        status.display = Some(display_from_summary(summary, &status.git_job_status, &previous));
    }
    update_ready_condition(status, before, after, &peers, single_cluster, now);

    if *status == orig {
        GitRepoOutcome::AlreadyApplied
    } else {
        GitRepoOutcome::Applied
    }
}

fn same_bd(a: &BundleDeployment, b: &BundleDeployment) -> bool {
    if !a.metadata.uid.is_empty() && !b.metadata.uid.is_empty() {
        return a.metadata.uid == b.metadata.uid;
    }
    a.metadata.name == b.metadata.name && a.metadata.namespace == b.metadata.namespace
}

fn list_of(state: Option<&ResourceState>) -> Option<&'static str> {
    state.and_then(|s| per_cluster_list(&s.state))
}

fn bd_state(bd: &BundleDeployment) -> &'static str {
    deployment_state(&bd.spec, &bd.status_or_default())
}

/// The GitRepo shows clusters of one GitRepo only if at most one cluster id
/// appears anywhere; then BD names identify summary entries uniquely.
fn is_single_cluster(status: &GitRepoStatus, cluster: &str) -> bool {
    status.desired_ready_clusters.unwrap_or(0) <= 1
        && status.per_cluster_resource_counts.keys().all(|k| k == cluster)
}

/// Which perClusterState list of `key`'s entry names `cluster`, if any.
fn shown_list(status: &GitRepoStatus, key: &ResourceKey, cluster: &str) -> Option<&'static str> {
    let entry = status.resources.iter().find(|r| r.key() == *key)?;
    entry
        .per_cluster_state
        .lists()
        .into_iter()
        .find(|(_, list)| list.iter().any(|c| c == cluster))
        .map(|(name, _)| name)
}

/// Moves `cluster` in `key`'s entry from the list it is shown in to the list
/// of its new state, creating or dropping the entry as Fleet would.
fn move_cluster(
    status: &mut GitRepoStatus,
    key: &ResourceKey,
    cluster: &str,
    before: Option<&ResourceState>,
    after: Option<&ResourceState>,
) {
    let idx = match status.resources.iter().position(|r| r.key() == *key) {
        Some(i) => Some(i),
        None if after.is_some() => {
            let entry = Resource::for_key(key);
            let sort_key = entry.sort_key();
            let pos = status
                .resources
                .iter()
                .position(|r| r.sort_key() > sort_key)
                .unwrap_or(status.resources.len());
            status.resources.insert(pos, entry);
            Some(pos)
        }
        None => None,
    };
    let Some(idx) = idx else { return };
    let Some(entry) = status.resources.get_mut(idx) else { return };

    if let Some(shown) = shown_list_of_entry(entry, cluster) {
        if let Some(list) = entry.per_cluster_state.list_mut(shown) {
            if let Some(p) = list.iter().position(|c| c == cluster) {
                list.remove(p);
            }
        }
    }
    if let Some(a) = after {
        if let Some(list) = entry.per_cluster_state.list_mut(&a.state) {
            let pos = list.iter().position(|c| c.as_str() > cluster).unwrap_or(list.len());
            list.insert(pos, cluster.to_string());
        }
        if a.incomplete {
            entry.incomplete_state = true;
        }
    }
    entry.state = top_level_state(entry, cluster, before, after);
    if after.is_none() && entry.per_cluster_state.is_empty() && per_cluster_list(&entry.state).is_some() {
        status.resources.remove(idx);
    }
}

fn shown_list_of_entry(entry: &Resource, cluster: &str) -> Option<&'static str> {
    entry
        .per_cluster_state
        .lists()
        .into_iter()
        .find(|(_, list)| list.iter().any(|c| c == cluster))
        .map(|(name, _)| name)
}

/// Fleet's top-level resource state: the first non-Ready per-cluster state
/// with clusters in id order, else `Ready`. Raw states of other clusters
/// (e.g. `updating` filed under notReady) are only visible through the old
/// top-level state, which is kept when it still fits.
fn top_level_state(entry: &Resource, cluster: &str, before: Option<&ResourceState>, after: Option<&ResourceState>) -> String {
    let old = entry.state.clone();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (name, list) in entry.per_cluster_state.lists() {
        for c in list {
            if c != cluster {
                pairs.push((c.clone(), name.to_string()));
            }
        }
    }
    if let Some(a) = after {
        pairs.push((cluster.to_string(), a.state.clone()));
    }
    pairs.sort_by(|x, y| x.0.cmp(&y.0));
    match pairs.into_iter().find(|(_, s)| s != READY) {
        Some((c, s)) if c == cluster => s,
        Some((_, s)) => {
            if per_cluster_list(&old) == Some(s.as_str()) {
                old
            } else {
                s
            }
        }
        None => {
            let old_from_us = before.is_some_and(|b| b.state == old);
            if per_cluster_list(&old).is_none() && !old.is_empty() && !old_from_us {
                old
            } else {
                READY.to_string()
            }
        }
    }
}

/// Replaces what the summary shows for this BD with its new state: state
/// counters, its `nonReadyResources` entry (kept in BD UID order, capped at
/// 10) and readyClusters.
fn update_summary(
    status: &mut GitRepoStatus,
    before: &BundleDeployment,
    after: &BundleDeployment,
    known: &[BundleDeployment],
    peers: &[&BundleDeployment],
    resources_applied: bool,
    single_cluster: bool,
) {
    let Some(summary) = status.summary.as_mut() else { return };
    let name = after.metadata.name.as_str();
    let (state_b, state_a) = (bd_state(before), bd_state(after));
    let entry_b = (state_b != READY).then(|| non_ready_entry(name, before));
    let entry_a = (state_a != READY).then(|| non_ready_entry(name, after));
    let entries = &summary.non_ready_resources;
    let candidates: Vec<usize> = (0..entries.len()).filter(|&i| entries[i].name == name).collect();
    // Among identical entries (same BD name and content on several
    // clusters) ours is the one whose rank matches our UID's rank.
    let equal_to = |e: &Option<NonReadyResource>| {
        let e = e.as_ref()?;
        let same: Vec<usize> = candidates.iter().copied().filter(|&i| entries[i].same_content(e)).collect();
        let rank = known
            .iter()
            .filter(|k| k.metadata.name == name && !same_bd(k, after))
            .filter(|k| k.metadata.uid < after.metadata.uid)
            .filter(|k| non_ready_entry(name, k).same_content(e))
            .count();
        same.get(rank).or(same.last()).copied()
    };
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
    } else if resources_applied {
        (state_b.to_string(), equal_to(&entry_b))
    } else {
        // Several clusters share BD names, so entries cannot be told apart:
        // trust the resources, which already show this BD's new state.
        return;
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

    if shown_state != state_a {
        if let Some(c) = summary.counter_mut(&shown_state) {
            *c = c.saturating_sub(1).max(0);
        }
        if let Some(c) = summary.counter_mut(state_a) {
            *c = c.saturating_add(1);
        }
    }
    let mut insert_at = None;
    if let Some(i) = shown_idx {
        summary.non_ready_resources.remove(i);
        insert_at = Some(i);
    }
    if let Some(entry) = entry_a {
        let pos = insert_at.unwrap_or_else(|| uid_position(&summary.non_ready_resources, after, known, peers));
        let pos = pos.min(summary.non_ready_resources.len());
        summary.non_ready_resources.insert(pos, entry);
        summary.non_ready_resources.truncate(MAX_NON_READY_RESOURCES);
    }

    if shown_state != state_a && (shown_state == READY || state_a == READY) {
        let peers_ready = peers.iter().all(|p| bd_state(p) == READY);
        let was = i64::from(shown_state == READY && peers_ready);
        let now_ready = i64::from(state_a == READY && peers_ready);
        if let Some(rc) = status.ready_clusters.as_mut() {
            let max = status.desired_ready_clusters.unwrap_or(i64::MAX);
            *rc = rc.saturating_add(now_ready - was).clamp(0, max.max(0));
        }
    }
}

/// Where a new entry for `bd` goes so entries stay in BD UID order. Entries
/// are matched to known BDs with the same name and the same entry content
/// (BD names repeat across clusters; the k-th of several identical entries
/// gets the k-th smallest UID), else to a same-named BD on this cluster;
/// entries of unknown BDs are skipped over.
fn uid_position(
    entries: &[NonReadyResource],
    bd: &BundleDeployment,
    known: &[BundleDeployment],
    peers: &[&BundleDeployment],
) -> usize {
    let own = bd.metadata.uid.as_str();
    for (i, e) in entries.iter().enumerate() {
        let nth = entries[..i].iter().filter(|p| p.same_content(e)).count();
        let mut uids: Vec<&str> = known
            .iter()
            .filter(|k| k.metadata.name == e.name && !same_bd(k, bd))
            .filter(|k| non_ready_entry(&e.name, k).same_content(e))
            .map(|k| k.metadata.uid.as_str())
            .collect();
        uids.sort_unstable();
        let uid = uids.get(nth).copied().or_else(|| {
            peers
                .iter()
                .find(|p| p.metadata.name == e.name)
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
fn update_ready_condition(
    status: &mut GitRepoStatus,
    before: &BundleDeployment,
    after: &BundleDeployment,
    peers: &[&BundleDeployment],
    single_cluster: bool,
    now: &str,
) {
    let Some(summary) = status.summary.as_ref() else { return };
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
        candidates.first().map(|b| bundle_ready_message(&[b]))
    };
    let message = if single_cluster {
        first_non_ready()
    } else {
        let ours_before = bundle_ready_message(&[before]);
        let shown_is_ours = current
            .as_ref()
            .is_none_or(|c| c.status == "True" || (!ours_before.is_empty() && c.message == ours_before));
        if !shown_is_ours {
            return;
        }
        if bd_state(after) != READY {
            Some(bundle_ready_message(&[after]))
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
