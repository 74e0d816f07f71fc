//! Several deletions (and restorations) for one GitRepo applied in order,
//! keeping BDs and GitRepo status consistent step by step. This is the
//! coalescing entry point: one GitRepo patch and one patch per changed BD.

use crate::fleet::status::{BundleDeployment, GitRepoStatus};

use super::bundle_deployment;
use super::gitrepo::{self, GitRepoOutcome};
use super::resource::DeletedResource;

/// Direction of one change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// The resource was deleted.
    Missing,
    /// The resource exists again (recreated, or the DELETE did not happen).
    Restored,
}

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
    /// Indexes of BDs whose status changed (patch each of them).
    pub changed_bds: Vec<usize>,
    /// GitRepo outcome per change, in order.
    pub gitrepo: Vec<GitRepoOutcome>,
}

impl BatchReport {
    /// True if the GitRepo status changed (patch it once).
    pub fn gitrepo_changed(&self) -> bool {
        self.gitrepo.iter().any(|o| o.changed())
    }
}

/// Applies `changes` in order to the BDs (in place) and to `gitrepo`.
/// `bds` should hold the GitRepo's BDs as currently known (at least those on
/// the affected clusters); changes pointing outside it are skipped.
pub fn apply(
    gitrepo: &mut GitRepoStatus,
    bds: &mut [BundleDeployment],
    changes: &[Change],
    now: &str,
) -> BatchReport {
    let mut report = BatchReport::default();
    for change in changes {
        let Some(bd) = bds.get(change.bd).cloned() else {
            continue;
        };
        let outcome = match change.kind {
            ChangeKind::Missing => gitrepo::mark_missing(gitrepo, &bd, &change.resource, bds, now),
            ChangeKind::Restored => {
                gitrepo::unmark_missing(gitrepo, &bd, &change.resource, bds, now)
            }
        };
        report.gitrepo.push(outcome);
        let Some(target) = bds.get_mut(change.bd) else {
            continue;
        };
        let spec = target.spec.clone();
        let changed = match (target.status.as_mut(), change.kind) {
            (Some(s), ChangeKind::Missing) => {
                bundle_deployment::mark_missing(s, &spec, &change.resource, now)
            }
            (Some(s), ChangeKind::Restored) => {
                bundle_deployment::unmark_missing(s, &spec, &change.resource, now)
            }
            (None, _) => false,
        };
        if changed && !report.changed_bds.contains(&change.bd) {
            report.changed_bds.push(change.bd);
        }
    }
    report
}
