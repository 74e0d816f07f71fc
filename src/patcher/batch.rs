//! Batching: what the worker drained from the queue becomes writes — marks and
//! unmarks as queued, awaited deletions handed to the marks, rechecks probed first —
//! grouped by owner and BundleDeployment, so deletions that arrive together share one
//! patch per object ([`super::status_writes`] writes each group). Writes that could not
//! be made yet go back to the queue.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::atomic::Ordering,
    time::Instant,
};

use crate::{delta::ResourceChange, fleet::OwnerRef};

use super::{
    deleted_resource, lock,
    marks::Seen,
    probe::Outcome,
    queue::{Item, Op, Pushed},
    OwnerAt, Shared,
};

/// One write to make: mark or unmark one object.
#[derive(Debug, Clone)]
pub(super) struct Write {
    pub(super) mark: bool,
    pub(super) item: Item,
}

impl Write {
    pub(super) fn change(&self) -> ResourceChange {
        let r = deleted_resource(&self.item.object);
        if self.mark {
            ResourceChange::missing(r)
        } else {
            ResourceChange::restored(r)
        }
    }
}

/// The writes of one batch for one BundleDeployment `(namespace, name)`.
pub(super) type WritesByBundleDeployment = BTreeMap<(String, String), Vec<Write>>;

impl Shared {
    pub(super) async fn handle(&self, items: Vec<Item>, rederive: BTreeSet<OwnerAt>) {
        tracing::debug!(
            items = items.len(),
            rederive = rederive.len(),
            "handling queued work"
        );
        self.batches.fetch_add(1, Ordering::Relaxed);
        let mut writes: Vec<Write> = Vec::with_capacity(items.len());
        let mut rechecks: Vec<Item> = Vec::new();
        for item in items {
            match item.op {
                Op::Mark => writes.push(Write { mark: true, item }),
                Op::Unmark => writes.push(Write { mark: false, item }),
                Op::AwaitGone => lock(&self.marks).await_gone(item.object, Instant::now()),
                Op::Recheck => rechecks.push(item),
            }
        }
        writes.extend(self.recheck(rechecks).await);
        // Owner → BundleDeployment → writes, in a stable order.
        let mut groups: BTreeMap<OwnerAt, WritesByBundleDeployment> = BTreeMap::new();
        for w in writes {
            let bd = &w.item.object.bd;
            groups
                .entry(OwnerAt {
                    owner: OwnerRef::clone(&bd.owner),
                    bd_namespace: bd.namespace.clone(),
                })
                .or_default()
                .entry((bd.namespace.clone(), bd.name.clone()))
                .or_default()
                .push(w);
        }
        for owner in rederive {
            groups.entry(owner).or_default();
        }
        for (owner, bds) in groups {
            self.write_group(owner, bds).await;
        }
    }

    /// Marks another writer dropped: probed (grouped, within the budget); re-applied
    /// while the object is gone (capped per mark), taken back when it is there. Those
    /// the budget left out go back to the queue; those the API did not answer for are
    /// dropped (the watch asks again at the BundleDeployment's next change).
    async fn recheck(&self, items: Vec<Item>) -> Vec<Write> {
        if items.is_empty() {
            return Vec::new();
        }
        let objects: Vec<_> = items.iter().map(|i| i.object.clone()).collect();
        let outcomes: HashMap<String, Outcome> = self
            .probe(&objects, &objects)
            .await
            .into_iter()
            .map(|(o, outcome)| (o.uid, outcome))
            .collect();
        let mut writes = Vec::new();
        let mut later = Vec::new();
        for item in items {
            match outcomes.get(&item.object.uid) {
                Some(Outcome::Seen(Seen::Gone)) => {
                    let allowed = lock(&self.marks)
                        .reapply(&item.object.uid, self.config.marks.max_reapplies);
                    if allowed {
                        writes.push(Write { mark: true, item });
                    } else {
                        tracing::warn!(object = %item.object.describe(), "another writer keeps dropping this mark; no longer re-applying it");
                    }
                }
                Some(Outcome::Seen(Seen::Unreadable)) | Some(Outcome::Unknown) | None => {}
                Some(Outcome::NotProbed) => later.push(item),
                Some(Outcome::Seen(_)) => writes.push(Write { mark: false, item }),
            }
        }
        if !later.is_empty() {
            let mut q = lock(&self.queue);
            for item in later {
                if q.push(item) == Pushed::Full {
                    self.metrics.queue_overflow.inc();
                }
            }
        }
        writes
    }

    /// Put writes back in the queue (their marks and arrival times kept).
    pub(super) fn requeue(&self, writes: Vec<Write>) {
        let mut q = lock(&self.queue);
        for w in writes {
            let item = Item {
                op: if w.mark { Op::Mark } else { Op::Unmark },
                ..w.item
            };
            if q.push(item) == Pushed::Full {
                self.metrics.queue_overflow.inc();
            }
        }
    }
}
