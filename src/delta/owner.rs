//! The owner status production writes — a GitRepo's or a HelmOp's (both Fleet's
//! `StatusBase`, computed by the same Fleet code) — after BundleDeployment changes.
//!
//! One rule decides how: when the BundleDeployments known are all the owner's
//! ([`all_known`]), the status is recomputed exactly as Fleet's status controller
//! would ([`gitrepo_status_from_bundle_deployments`]); otherwise (a multi-cluster owner
//! seen from one cluster) each change is applied as an idempotent incremental delta.
//! Both read the BundleDeployments as given: the caller passes a view at least as new
//! as the owner status it read, so nothing older is ever written over something newer.

use crate::fleet::release::StatusRules;
use crate::fleet::status::{BundleDeployment, OwnerStatus};
use crate::fleet::OwnerKind;

use super::change::{ChangeKind, ResourceChange};
use super::gitrepo::{self, all_known, same_bd, GitRepoOutcome, OwnerRules};
use super::recompute::owner_status_for;

/// A BundleDeployment as written by this batch, with the changes written to it.
#[derive(Clone, Copy, Debug)]
pub struct WrittenBundleDeployment<'a> {
    pub bundle_deployment: &'a BundleDeployment,
    pub changes: &'a [ResourceChange],
    /// The BundleDeployment as read just before this batch's write, when the write
    /// changed it: the owner's incremental delta starts from it instead of rebuilding
    /// the "before" state (which would assume a deleted object was Ready).
    pub before: Option<&'a BundleDeployment>,
}

/// The status of the owner (of `kind`) to write, or `None` when `status` already says
/// it. `rules` are the running Fleet release's: both the exact recompute and the
/// incremental deltas (an owner some of whose BundleDeployments are unknown) follow
/// them.
///
/// `known` is the owner's BundleDeployments as listed after `status` was read (may be
/// empty when the list failed); `written` are those this batch changed, in the state
/// the API returned after the change. A listed copy is preferred over a written one:
/// the list is newer.
pub fn status_after(
    rules: &StatusRules,
    kind: OwnerKind,
    status: Option<&OwnerStatus>,
    written: &[WrittenBundleDeployment<'_>],
    known: &[BundleDeployment],
    now: &str,
) -> Option<OwnerStatus> {
    let orig = status.cloned().unwrap_or_default();
    let mut view: Vec<&BundleDeployment> = known.iter().collect();
    for w in written {
        if !known.iter().any(|k| same_bd(k, w.bundle_deployment)) {
            view.push(w.bundle_deployment);
        }
    }
    if let Some(all) = all_known(&orig, view.iter().copied()) {
        let all: Vec<BundleDeployment> = all.into_iter().cloned().collect();
        let new = owner_status_for(rules, kind, &orig, &all, now);
        return (new != orig).then_some(new);
    }
    let view: Vec<BundleDeployment> = view.into_iter().cloned().collect();
    let owner = OwnerRules {
        rules: *rules,
        kind,
    };
    let mut status = orig.clone();
    for w in written {
        let current = view
            .iter()
            .find(|k| same_bd(k, w.bundle_deployment))
            .unwrap_or(w.bundle_deployment);
        if let Some(before) = w.before {
            // The real transition of this batch's write: exact whatever state the
            // object was in (Ready, NotReady, in no list).
            let mut moved = status.clone();
            let outcome =
                gitrepo::apply_change_for(&owner, &mut moved, before, current, &view, now);
            if outcome != GitRepoOutcome::Diverged {
                status = moved;
                continue;
            }
        }
        for c in w.changes {
            match c.kind {
                ChangeKind::Missing => {
                    gitrepo::change(&owner, &mut status, current, &c.resource, &view, now, true)
                }
                ChangeKind::Restored => {
                    gitrepo::change(&owner, &mut status, current, &c.resource, &view, now, false)
                }
            };
        }
    }
    (status != orig).then_some(status)
}
