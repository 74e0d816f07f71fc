//! The change Fleet's GitRepo status reconciler makes when one of the
//! GitRepo's BundleDeployments changes, applied to the GitRepo status
//! without a full recompute.
//!
//! Idempotency comes from the GitRepo status itself: for every resource whose
//! per-cluster state differs between the BD before and after, the GitRepo's
//! `perClusterState` tells whether it still shows the old state (apply the
//! resource lists and counts), the new one (already applied: Fleet
//! recomputed it, or this is a retry), or neither (diverged: leave it to
//! Fleet). The BD-level fields (summary, readyClusters, display, Ready
//! condition) are then set to reflect the BD's new state: recomputed exactly
//! when every BD of the GitRepo is known, else updated in place from what the
//! GitRepo shows. Both are idempotent by construction.

use std::collections::BTreeSet;

use crate::fleet::state::{deployment_state, READY};
use crate::fleet::status::{BundleDeployment, GitRepoStatus};
use crate::fleet::{OwnerKind, ResourceKey};

use super::bundle_deployment;
use super::recompute::set_bundle_deployment_fields;
use super::resource::DeletedResource;
use super::resource_states::{bundle_deployment_resource_states, ResourceState};
use super::summary::is_bundle_state_message;
use crate::fleet::release::StatusRules;

mod bd_fields;
mod resources;

use bd_fields::{shown_entry, shown_ready, update_bundle_deployment_fields, BdChange, ShownReady};
use resources::{move_cluster, shown_list};

/// How the owner's status controller computes its status: the running Fleet
/// release's rules, and the owner's kind (a HelmOp's status has no GitRepo extras).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerRules {
    pub rules: StatusRules,
    pub kind: OwnerKind,
}

impl OwnerRules {
    /// A GitRepo, with the newest release's rules.
    pub const GITREPO: OwnerRules = OwnerRules {
        rules: StatusRules::NEWEST,
        kind: OwnerKind::GitRepo,
    };
}

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
/// GitRepo. `known_bds` are the GitRepo's BDs the caller knows, in their
/// current state (`bd` itself is ignored there). When they are all of the
/// GitRepo's BDs, summary, readyClusters, display and the Ready condition are
/// recomputed exactly like Fleet; otherwise (e.g. only `bd`'s cluster) they
/// are updated in place, and peers on `bd`'s cluster decide readyClusters,
/// summary order and which Bundle's Ready message is shown. `now` (RFC 3339)
/// stamps changed conditions.
pub fn mark_missing(
    status: &mut GitRepoStatus,
    bd: &BundleDeployment,
    r: &DeletedResource,
    known_bds: &[BundleDeployment],
    now: &str,
) -> GitRepoOutcome {
    change(&OwnerRules::GITREPO, status, bd, r, known_bds, now, true)
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
    change(&OwnerRules::GITREPO, status, bd, r, known_bds, now, false)
}

/// [`mark_missing`] (`missing`) or [`unmark_missing`] for the status of an owner
/// computed by `owner`.
pub fn change(
    owner: &OwnerRules,
    status: &mut GitRepoStatus,
    bd: &BundleDeployment,
    r: &DeletedResource,
    known_bds: &[BundleDeployment],
    now: &str,
    missing: bool,
) -> GitRepoOutcome {
    let (before, after) = transition(bd, r, now, missing);
    if before == after {
        // `r` is not part of this BD, or already so: nothing of this GitRepo changes.
        return GitRepoOutcome::AlreadyApplied;
    }
    apply_change_for(owner, status, &before, &after, known_bds, now)
}

/// (before, after) of the BD for a mark (`missing == true`) or unmark.
fn transition(
    bd: &BundleDeployment,
    r: &DeletedResource,
    now: &str,
    missing: bool,
) -> (BundleDeployment, BundleDeployment) {
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
    apply_change_for(&OwnerRules::GITREPO, status, before, after, known_bds, now)
}

/// [`apply_change`] to the status of an owner computed by `owner`.
pub fn apply_change_for(
    owner: &OwnerRules,
    status: &mut GitRepoStatus,
    before: &BundleDeployment,
    after: &BundleDeployment,
    known_bds: &[BundleDeployment],
    now: &str,
) -> GitRepoOutcome {
    let (rules, kind) = (&owner.rules, owner.kind);
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
        let b = list_of(rules, states_before.get(*key));
        let a = list_of(rules, states_after.get(*key));
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

    let resources_applied = shows_before > 0;
    let peers: Vec<&BundleDeployment> = known_bds
        .iter()
        .filter(|p| p.cluster_id() == cluster && !same_bd(p, after))
        .collect();
    let shown = ShownReady {
        this: shown_ready(rules, status, &cluster, &[before, after]),
        entries: shown_entry(rules, status, &cluster, before, after),
        peers: peers
            .iter()
            .all(|p| shown_ready(rules, status, &cluster, &[p]).unwrap_or(bd_state(p) == READY)),
    };
    if resources_applied {
        for key in &differing {
            move_cluster(
                rules,
                status,
                key,
                &cluster,
                states_before.get(*key),
                states_after.get(*key),
            );
        }
        let delta_before = before
            .status_or_default()
            .resource_counts
            .clone()
            .unwrap_or_default();
        let delta_after = after
            .status_or_default()
            .resource_counts
            .clone()
            .unwrap_or_default();
        for counts in status
            .resource_counts
            .iter_mut()
            .chain(status.per_cluster_resource_counts.get_mut(&cluster))
        {
            counts.add_scaled(&delta_before, -1);
            counts.add_scaled(&delta_after, 1);
        }
    }

    // A Ready condition Fleet copied from a Bundle for another reason (e.g. a
    // rendering error) is not the BDs' to change. (A HelmOp never copies one.)
    let foreign_ready = orig
        .condition("Ready")
        .filter(|c| {
            kind == OwnerKind::GitRepo
                && c.status == "False"
                && !is_bundle_state_message(&c.message)
        })
        .cloned();

    if let Some(all) = complete_bds(status, known_bds, after) {
        // Every BD is known: the BD-level fields follow exactly (and
        // idempotently) from them, as in Fleet's recompute.
        set_bundle_deployment_fields(rules, kind, status, &all, now);
    } else {
        let change = BdChange {
            rules,
            before,
            after,
            known: known_bds,
            peers: &peers,
            resources_applied,
            single_cluster: is_single_cluster(status, &cluster),
            shown,
        };
        update_bundle_deployment_fields(kind, status, &change, now);
    }
    if let Some(cond) = foreign_ready {
        if let Some(c) = status.conditions.iter_mut().find(|c| c.type_ == "Ready") {
            *c = cond;
        }
    }

    if *status == orig {
        GitRepoOutcome::AlreadyApplied
    } else {
        GitRepoOutcome::Applied
    }
}

/// `known` with `after` in place of its older copy, if together they are all of the
/// owner's BundleDeployments ([`all_known`]).
fn complete_bds<'a>(
    status: &GitRepoStatus,
    known: &'a [BundleDeployment],
    after: &'a BundleDeployment,
) -> Option<Vec<&'a BundleDeployment>> {
    all_known(
        status,
        known
            .iter()
            .filter(|k| !same_bd(k, after))
            .chain(std::iter::once(after)),
    )
}

/// The one rule for "these BundleDeployments are all the owner has": as many as its
/// summary counts (no duplicates), as many clusters as it counts, and every cluster of
/// its per-cluster counts among them. Returns them sorted by UID (Fleet's order), or
/// `None` when some may be missing — then only incremental deltas are safe.
pub fn all_known<'a>(
    status: &GitRepoStatus,
    bds: impl IntoIterator<Item = &'a BundleDeployment>,
) -> Option<Vec<&'a BundleDeployment>> {
    let summary = status.summary.as_ref()?;
    let mut all: Vec<&BundleDeployment> = bds.into_iter().collect();
    all.sort_by(|a, b| a.metadata.uid.cmp(&b.metadata.uid));
    if all.is_empty()
        || all.windows(2).any(|w| same_bd(w[0], w[1]))
        || summary.desired_ready != all.len() as i64
    {
        return None;
    }
    let clusters: BTreeSet<String> = all
        .iter()
        .filter(|b| b.has_cluster_labels())
        .map(|b| b.cluster_id())
        .collect();
    if status
        .desired_ready_clusters
        .is_some_and(|n| n != clusters.len() as i64)
    {
        return None;
    }
    let ids: BTreeSet<String> = all.iter().map(|b| b.cluster_id()).collect();
    if status
        .per_cluster_resource_counts
        .keys()
        .any(|k| !ids.contains(k))
    {
        return None;
    }
    Some(all)
}

/// Same object: by UID when both have one, else by namespace and name.
pub fn same_bd(a: &BundleDeployment, b: &BundleDeployment) -> bool {
    if !a.metadata.uid.is_empty() && !b.metadata.uid.is_empty() {
        return a.metadata.uid == b.metadata.uid;
    }
    a.metadata.name == b.metadata.name && a.metadata.namespace == b.metadata.namespace
}

fn list_of(rules: &StatusRules, state: Option<&ResourceState>) -> Option<&'static str> {
    state.and_then(|s| rules.per_cluster_list(&s.state))
}

fn bd_state(bd: &BundleDeployment) -> &'static str {
    deployment_state(&bd.spec, &bd.status_or_default())
}

/// The GitRepo shows clusters of one GitRepo only if at most one cluster id
/// appears anywhere; then BD names identify summary entries uniquely.
fn is_single_cluster(status: &GitRepoStatus, cluster: &str) -> bool {
    status.desired_ready_clusters.unwrap_or(0) <= 1
        && status
            .per_cluster_resource_counts
            .keys()
            .all(|k| k == cluster)
}
