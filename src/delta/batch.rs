//! A worker batch replayed in memory: the changes of one owner's BundleDeployments,
//! written BD by BD ([`bundle_deployment::status_after`]) and then once to the owner
//! ([`owner::status_after`]) — the same two functions, in the same order, as the patch
//! worker. Property tests and benchmarks drive production's arithmetic through this.

use crate::fleet::release::StatusRules;
use crate::fleet::status::{BundleDeployment, OwnerStatus};
use crate::fleet::OwnerKind;

use super::bundle_deployment;
pub use super::change::ChangeKind;
use super::change::ResourceChange;
use super::owner::{self, WrittenBundleDeployment};
use super::resource::DeletedResource;

/// One resource of one BD (index into the `bds` slice) changing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Index of the owning BD in the slice given to [`apply`].
    pub bd: usize,
    /// The resource.
    pub resource: DeletedResource,
    /// Deleted or restored.
    pub kind: ChangeKind,
}

/// What [`apply`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Indexes of BDs whose status changed (one patch each), in first-change order.
    pub changed_bds: Vec<usize>,
    /// The owner status changed (one patch).
    pub owner_changed: bool,
}

impl BatchReport {
    /// True if the owner (GitRepo) status changed.
    pub fn gitrepo_changed(&self) -> bool {
        self.owner_changed
    }
}

/// Applies `changes` to the BDs (in place) and then to `owner`, knowing every BD in
/// `bds` (the single-cluster case: the worker lists them all). Changes pointing
/// outside `bds` are skipped.
pub fn apply(
    owner: &mut OwnerStatus,
    bds: &mut [BundleDeployment],
    changes: &[Change],
    now: &str,
) -> BatchReport {
    apply_knowing(
        &StatusRules::default(),
        OwnerKind::GitRepo,
        owner,
        bds,
        changes,
        now,
        |_| true,
    )
}

/// [`apply`] to an owner of `kind` when the worker's list of the owner's BDs returns
/// only those `known` accepts (e.g. this cluster's); the changed BDs are always known.
pub fn apply_knowing(
    rules: &StatusRules,
    kind: OwnerKind,
    owner: &mut OwnerStatus,
    bds: &mut [BundleDeployment],
    changes: &[Change],
    now: &str,
    known: impl Fn(&BundleDeployment) -> bool,
) -> BatchReport {
    // Changes per BD, BDs in first-change order.
    let mut per_bd: Vec<(usize, Vec<ResourceChange>)> = Vec::new();
    for c in changes.iter().filter(|c| c.bd < bds.len()) {
        let change = ResourceChange {
            resource: c.resource.clone(),
            kind: c.kind,
        };
        match per_bd.iter_mut().find(|(i, _)| *i == c.bd) {
            Some((_, list)) => list.push(change),
            None => per_bd.push((c.bd, vec![change])),
        }
    }
    let mut report = BatchReport::default();
    // As read before each write (the worker keeps the copy its patch was computed on).
    let mut before: Vec<Option<BundleDeployment>> = Vec::with_capacity(per_bd.len());
    for (i, list) in &per_bd {
        if let Some(status) = bundle_deployment::status_after(&bds[*i], list, now) {
            before.push(Some(bds[*i].clone()));
            bds[*i].status = Some(status);
            report.changed_bds.push(*i);
        } else {
            before.push(None);
        }
    }
    let written: Vec<WrittenBundleDeployment<'_>> = per_bd
        .iter()
        .zip(&before)
        .map(|((i, list), before)| WrittenBundleDeployment {
            bundle_deployment: &bds[*i],
            changes: list,
            before: before.as_ref(),
        })
        .collect();
    let listed: Vec<BundleDeployment> = bds.iter().filter(|b| known(b)).cloned().collect();
    if let Some(status) = owner::status_after(rules, kind, Some(owner), &written, &listed, now) {
        *owner = status;
        report.owner_changed = true;
    }
    report
}
