//! The worker's side of the marks ([`super::marks`] holds their pure bookkeeping):
//! recording each mark after its BundleDeployment write, the periodic checks that
//! confirm, revert or release them (grouped, within the probe budget, through
//! [`super::probe`]), and the
//! BundleDeployment watch's view, which shows a mark another writer dropped and an
//! owner to re-derive.

use std::time::Instant;

use kube::ResourceExt;

use crate::{
    delta,
    fleet::{
        status::BundleDeployment,
        view::{StatusEntry, WatchedBundleDeployment},
        OwnerRef,
    },
};

use super::{
    batch::Write,
    deleted_resource, lock,
    marks::{Next, UnmarkReason},
    probe::Outcome,
    queue::{Item, Op, Pushed, Tracked},
    Patcher, Shared,
};

impl Patcher {
    /// Called for every BundleDeployment the watch delivers: when another writer
    /// dropped one of our marks, find out whether the object is still gone; when the
    /// owner has live marks and its status was derived from an older copy of this
    /// BundleDeployment, re-derive it.
    pub fn observe_bundle_deployment(&self, bd: &WatchedBundleDeployment) {
        let namespace = bd.metadata.namespace.as_deref().unwrap_or_default();
        let name = bd.name_any();
        let (defended, owner_marked) = {
            let marks = lock(&self.shared.marks);
            let owner = OwnerRef::from_bundle_deployment_labels(bd.labels(), &name);
            let marked = marks.any_of_owner(&owner).then_some(owner);
            (marks.defended_on(namespace, &name), marked)
        };
        if let Some(owner) = owner_marked {
            let seen = bd.metadata.resource_version.as_deref().unwrap_or_default();
            let known = lock(&self.shared.derived_from)
                .get(&owner)
                .and_then(|bds| bds.get(&name))
                .is_some_and(|rv| rv == seen);
            if !known {
                self.rederive(owner, namespace);
            }
        }
        for object in defended {
            if !view_shows_missing(&bd.status.modified, &object) {
                self.push(Item {
                    op: Op::Recheck,
                    object,
                    received: None,
                    user: String::new(),
                });
            }
        }
    }
}

/// The watch's view of `status.modifiedStatus` lists the object as missing.
fn view_shows_missing(modified: &[StatusEntry], o: &Tracked) -> bool {
    let key = deleted_resource(o).key();
    modified
        .iter()
        .any(|m| m.is_missing() && m.key.same_object(&key))
}

impl Shared {
    pub(super) fn after_bundle_deployment(
        &self,
        writes: &[Write],
        bd: &BundleDeployment,
        patched: bool,
    ) {
        let status = bd.status_or_default();
        let now = Instant::now();
        let mut marks = lock(&self.marks);
        for w in writes {
            let object = w.item.object.clone();
            if w.mark {
                if w.item.op == Op::Recheck && patched {
                    self.metrics.reapplied.inc();
                }
                let defended =
                    delta::bundle_deployment::shows_missing(&status, &deleted_resource(&object));
                marks.marked(object, now, defended);
            } else {
                marks.remove(&object.uid);
            }
        }
    }

    /// Check the marks that are due — grouped ([`super::probe`]), within the probe
    /// budget; what is not probed now stays due for the next tick — and queue what
    /// follows: a mark once an awaited object is gone, an unmark when the deletion did
    /// not happen or the object is back.
    pub(super) async fn check_marks(&self) {
        let now = Instant::now();
        let (due, members, expired) = {
            let mut marks = lock(&self.marks);
            let expired = marks.expire(now, &self.config.marks);
            let due = marks.due(now, &self.config.marks);
            let members = marks.in_groups_of(&due);
            (due, members, expired)
        };
        for m in expired {
            tracing::debug!(object = %m.object.describe(), "mark expired; Fleet has had time to catch up");
        }
        if due.is_empty() {
            return;
        }
        let results = self.probe(&due, &members).await;
        let now = Instant::now();
        let mut follow_ups = Vec::new();
        {
            let mut marks = lock(&self.marks);
            for (object, outcome) in results {
                let Outcome::Seen(seen) = outcome else {
                    continue;
                };
                let next = marks.checked(&object.uid, seen, now, &self.config.marks);
                if let Some(op) = self.follow_up(&object, next) {
                    follow_ups.push((op, object));
                }
            }
        }
        if follow_ups.is_empty() {
            return;
        }
        let mut q = lock(&self.queue);
        for (op, object) in follow_ups {
            if q.push(Item {
                op,
                object,
                received: None,
                user: String::new(),
            }) == Pushed::Full
            {
                self.metrics.queue_overflow.inc();
            }
        }
        drop(q);
        self.notify.notify_one();
    }

    /// The write a check's verdict calls for, counted and logged.
    fn follow_up(&self, object: &Tracked, next: Next) -> Option<Op> {
        match next {
            Next::Keep | Next::Forget => None,
            Next::Mark => Some(Op::Mark),
            Next::Unmark(reason) => {
                match reason {
                    UnmarkReason::NotDeleted => {
                        self.metrics.reverts.inc();
                        tracing::warn!(object = %object.describe(), "the deletion did not happen (refused or failed after admission); reverting the mark");
                    }
                    UnmarkReason::CameBack => {
                        self.metrics.unmarked.inc();
                        tracing::info!(object = %object.describe(), "the object is back; removing the mark");
                    }
                }
                Some(Op::Unmark)
            }
        }
    }
}
