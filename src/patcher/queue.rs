//! The bounded queue between the admission path and the patch worker.
//!
//! Pushing never blocks and never waits on the network. Work for the same object is
//! merged (kube-apiserver reviews one deletion several times), and the worker takes
//! everything pending at once, so deletions that arrive together share one patch.
//! When the queue is full the *new* item is refused — loudly, in a metric and the
//! log — rather than silently dropping older work; the periodic resync counts what
//! was refused, and Fleet itself counts it after its own delays.

use std::{collections::HashMap, sync::Arc, time::Instant};

use crate::owners::BundleDeploymentRef;

/// The deleted object: everything needed to GET it and to describe it to Fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Plural resource name, e.g. `configmaps`.
    pub plural: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
    /// The deleted object's uid: one deletion, whatever the number of reviews.
    pub uid: String,
    pub created_at: Option<String>,
    /// The values its `objectset.rio.cattle.io/hash` label may have (the one a review
    /// saw; one per agent scope for the resync's): the probes list a kind's marked
    /// objects in a namespace by them ([`super::probe_plan`]). Empty when unknown.
    pub objectset_hashes: Vec<String>,
    pub bd: Arc<BundleDeploymentRef>,
}

impl Tracked {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `kind namespace/name`, for logs and Events.
    pub fn describe(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind.to_ascii_lowercase(), self.name)
        } else {
            format!(
                "{} {}/{}",
                self.kind.to_ascii_lowercase(),
                self.namespace,
                self.name
            )
        }
    }
}

/// What to do with a tracked object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Count it missing now (a confirmed or expected deletion).
    Mark,
    /// Take our mark back (the deletion did not happen, or the object came back).
    Unmark,
    /// Find out with a GET whether it is still gone, then mark or forget.
    Recheck,
    /// It had finalizers: count it once it is really gone.
    AwaitGone,
}

/// One unit of work.
#[derive(Debug, Clone)]
pub struct Item {
    pub op: Op,
    pub object: Tracked,
    /// When the review arrived, for the lag metric (reviews only).
    pub received: Option<Instant>,
    pub user: String,
}

/// Outcome of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Merged with pending work for the same object.
    Merged,
    /// Refused: the queue is full.
    Full,
}

/// Pending work, keyed by object uid and op (the latest op for an object wins, except
/// that an earlier review's arrival time is kept for the lag metric).
#[derive(Debug)]
pub struct Queue {
    capacity: usize,
    items: HashMap<String, Item>,
    order: Vec<String>,
}

impl Queue {
    pub fn new(capacity: usize) -> Self {
        Queue {
            capacity: capacity.max(1),
            items: HashMap::new(),
            order: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn push(&mut self, item: Item) -> Pushed {
        let key = item.object.uid.clone();
        if let Some(existing) = self.items.get_mut(&key) {
            let received = existing.received.or(item.received);
            *existing = Item { received, ..item };
            return Pushed::Merged;
        }
        if self.items.len() >= self.capacity {
            return Pushed::Full;
        }
        self.order.push(key.clone());
        self.items.insert(key, item);
        Pushed::Queued
    }

    /// Everything pending, oldest first.
    pub fn drain(&mut self) -> Vec<Item> {
        let mut out = Vec::with_capacity(self.items.len());
        for key in self.order.drain(..) {
            if let Some(item) = self.items.remove(&key) {
                out.push(item);
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn tracked(uid: &str, bd: &str) -> Tracked {
        Tracked {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
            namespace: "default".into(),
            name: format!("cm-{uid}"),
            uid: uid.into(),
            created_at: None,
            objectset_hashes: vec!["h".into()],
            bd: Arc::new(BundleDeploymentRef {
                namespace: "cluster-ns".into(),
                name: bd.into(),
                bundle: bd.into(),
                owner: crate::fleet::OwnerRef::new(
                    crate::fleet::OwnerKind::GitRepo,
                    "fleet-local",
                    "lots",
                )
                .into(),
                unmonitored: None,
            }),
        }
    }

    fn item(op: Op, uid: &str, received: Option<Instant>) -> Item {
        Item {
            op,
            object: tracked(uid, "b"),
            received,
            user: "alice".into(),
        }
    }

    #[test]
    fn repeated_reviews_of_one_deletion_merge_and_keep_the_first_arrival() {
        let mut q = Queue::new(10);
        let first = Instant::now();
        assert_eq!(q.push(item(Op::Mark, "u1", Some(first))), Pushed::Queued);
        assert_eq!(
            q.push(item(Op::Mark, "u1", Some(Instant::now()))),
            Pushed::Merged
        );
        assert_eq!(q.push(item(Op::Unmark, "u1", None)), Pushed::Merged);
        let drained = q.drain();
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].op, Op::Unmark, "latest op wins");
        assert_eq!(drained[0].received, Some(first));
        assert!(q.is_empty());
    }

    #[test]
    fn full_queue_refuses_new_work_and_keeps_old() {
        let mut q = Queue::new(2);
        q.push(item(Op::Mark, "a", None));
        q.push(item(Op::Mark, "b", None));
        assert_eq!(q.push(item(Op::Mark, "c", None)), Pushed::Full);
        assert_eq!(
            q.push(item(Op::Mark, "a", None)),
            Pushed::Merged,
            "existing work still merges"
        );
        let uids: Vec<_> = q.drain().into_iter().map(|i| i.object.uid).collect();
        assert_eq!(uids, ["a", "b"], "oldest first, nothing old lost");
    }
}
