//! The resource part of a GitRepo delta: moving one cluster between the
//! `perClusterState` lists of one resource, as Fleet's aggregation would.

use crate::fleet::state::READY;
use crate::fleet::status::{GitRepoStatus, Resource};
use crate::fleet::ResourceKey;

use super::super::resource_states::ResourceState;
use crate::fleet::release::StatusRules;

/// Which perClusterState list of `key`'s entry names `cluster`, if any.
pub(super) fn shown_list(
    status: &GitRepoStatus,
    key: &ResourceKey,
    cluster: &str,
) -> Option<&'static str> {
    let entry = status.resources.iter().find(|r| r.key() == *key)?;
    shown_list_of_entry(entry, cluster)
}

/// Moves `cluster` in `key`'s entry from the list it is shown in to the list
/// of its new state, creating or dropping the entry as Fleet would.
pub(super) fn move_cluster(
    rules: &StatusRules,
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
    let Some(entry) = status.resources.get_mut(idx) else {
        return;
    };

    if let Some(shown) = shown_list_of_entry(entry, cluster) {
        if let Some(list) = entry.per_cluster_state.list_mut(shown) {
            if let Some(p) = list.iter().position(|c| c == cluster) {
                list.remove(p);
            }
        }
    }
    if let Some(a) = after {
        let list = rules
            .per_cluster_list(&a.state)
            .and_then(|l| entry.per_cluster_state.list_mut(l));
        if let Some(list) = list {
            let pos = list
                .iter()
                .position(|c| c.as_str() > cluster)
                .unwrap_or(list.len());
            list.insert(pos, cluster.to_string());
        }
        if a.incomplete {
            entry.incomplete_state = true;
        }
    }
    entry.state = top_level_state(rules, entry, cluster, before, after);
    if after.is_none()
        && entry.per_cluster_state.is_empty()
        && rules.per_cluster_list(&entry.state).is_some()
    {
        status.resources.remove(idx);
    }
}

/// Which perClusterState list of `entry` names `cluster`, if any.
pub(super) fn shown_list_of_entry(entry: &Resource, cluster: &str) -> Option<&'static str> {
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
pub(super) fn top_level_state(
    rules: &StatusRules,
    entry: &Resource,
    cluster: &str,
    before: Option<&ResourceState>,
    after: Option<&ResourceState>,
) -> String {
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
            if rules.per_cluster_list(&old) == Some(s.as_str()) {
                old
            } else {
                s
            }
        }
        None => {
            let old_from_us = before.is_some_and(|b| b.state == old);
            if rules.per_cluster_list(&old).is_none() && !old.is_empty() && !old_from_us {
                old
            } else {
                READY.to_string()
            }
        }
    }
}
