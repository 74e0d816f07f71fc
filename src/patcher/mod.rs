//! Counting deletions in Fleet's status, off the admission path.
//!
//! The admission path hands each counted deletion to [`Patcher::record`], which only
//! queues it. One worker task drains the queue, groups the work by GitRepo and
//! BundleDeployment, and writes:
//!
//! 1. the BundleDeployment status of this cluster first — Fleet's source of truth, and
//!    the only object a downstream cluster's Fleet credentials may write — so that
//!    Fleet's own recompute agrees with the mark instead of reverting it;
//! 2. then, where the webhook may (same cluster, or management-cluster credentials),
//!    the GitRepo status, for immediacy, and one Event on the GitRepo for the batch
//!    ([`events`]: a bounded queue and one publisher task).
//!
//! Every write is read → pure delta → merge patch with resourceVersion precondition
//! ([`write::update_status`]); the deltas are idempotent, so retries, repeated reviews
//! and several replicas never count a deletion twice. [`marks`] then confirms,
//! reverts, defends and releases each mark.

pub mod events;
pub mod marks;
pub mod queue;
pub mod resync;
pub mod write;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams},
    core::PartialObjectMeta,
    runtime::events::Reporter,
    Client, ResourceExt,
};
use serde_json::Value;
use tokio::sync::Notify;

use crate::{
    admission::{CountedDeletion, DeletionSink},
    delta::{self, DeletedResource},
    fleet::{
        status::{BundleDeployment, BundleDeploymentStatus, GitRepoStatus},
        view::{StatusEntry, WatchedBundleDeployment},
        LABEL_BUNDLE_NAMESPACE, LABEL_REPO_NAME,
    },
    metrics::Metrics,
    owners::{bundle_deployment_resource, gitrepo_resource, OwnerIndex},
};

use events::{Deletion, EventQueue, EventReceiver, Pending};
use marks::{MarkTimings, Marks, Next, Seen, UnmarkReason};
use queue::{Item, Op, Pushed, Queue, Tracked};
use write::{update_status, RetryPolicy, Written};

pub use events::EVENT_REASON;

/// How the patcher behaves.
#[derive(Debug, Clone)]
pub struct PatcherConfig {
    /// Patch the GitRepo status too (needs rights on GitRepos in the Fleet cluster).
    pub patch_gitrepo: bool,
    /// Deletions waiting at most; more are refused (metric `queue_overflow_total`).
    pub queue_capacity: usize,
    /// Events (one per GitRepo and batch) waiting to be published at most; more are
    /// dropped (metric `events_total{result="dropped"}`).
    pub event_queue_capacity: usize,
    /// The worker wakes at least this often to check marks.
    pub tick: Duration,
    /// Objects checked with a GET per tick at most.
    pub checks_per_tick: usize,
    pub marks: MarkTimings,
    pub retry: RetryPolicy,
    /// This process, as the Events' reporting instance.
    pub instance: String,
    /// How often deployed resources are compared with what exists (also once at start).
    pub resync_interval: Duration,
}

impl Default for PatcherConfig {
    fn default() -> Self {
        PatcherConfig {
            patch_gitrepo: true,
            queue_capacity: 10_000,
            event_queue_capacity: 64,
            tick: Duration::from_millis(200),
            checks_per_tick: 200,
            marks: MarkTimings::default(),
            retry: RetryPolicy::default(),
            instance: "fleet-delete-guard".to_string(),
            resync_interval: Duration::from_secs(300),
        }
    }
}

struct Shared {
    queue: Mutex<Queue>,
    marks: Mutex<Marks>,
    notify: Notify,
    index: Arc<OwnerIndex>,
    metrics: Metrics,
    config: PatcherConfig,
    /// Where deletions happen (GET of deleted objects).
    cluster: Client,
    /// Where BundleDeployments and GitRepos live.
    fleet: Client,
    events: EventQueue,
    /// Taken by the worker, which starts the publisher.
    event_receiver: Mutex<Option<EventReceiver>>,
}

/// The handle the admission path and the BundleDeployment watch use.
#[derive(Clone)]
pub struct Patcher {
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// RFC 3339 "now" with second precision, as Kubernetes writes timestamps.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Patcher {
    pub fn new(
        cluster: Client,
        fleet: Client,
        index: Arc<OwnerIndex>,
        metrics: Metrics,
        config: PatcherConfig,
    ) -> Self {
        let (events, event_receiver) =
            EventQueue::new(config.event_queue_capacity, metrics.clone());
        Patcher {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::new(config.queue_capacity)),
                marks: Mutex::new(Marks::default()),
                notify: Notify::new(),
                index,
                metrics,
                config,
                cluster,
                fleet,
                events,
                event_receiver: Mutex::new(Some(event_receiver)),
            }),
        }
    }

    /// The worker; spawn it once. It starts the Event publisher.
    pub async fn run(self) {
        let shared = self.shared;
        if let Some(rx) = lock(&shared.event_receiver).take() {
            tokio::spawn(events::publish(
                rx,
                shared.fleet.clone(),
                Reporter {
                    controller: "fleet-delete-guard".into(),
                    instance: Some(shared.config.instance.clone()),
                },
                shared.config.retry.call_timeout,
                shared.metrics.clone(),
            ));
        }
        tracing::debug!("patch worker started");
        loop {
            tokio::select! {
                _ = shared.notify.notified() => {}
                _ = tokio::time::sleep(shared.config.tick) => {}
            }
            let items = lock(&shared.queue).drain();
            shared.metrics.queue_depth.set(0);
            if !items.is_empty() {
                shared.handle(items).await;
            }
            shared.check_marks().await;
        }
    }

    pub(crate) fn push(&self, item: Item) {
        let shared = &self.shared;
        let (pushed, depth) = {
            let mut q = lock(&shared.queue);
            let pushed = q.push(item.clone());
            (pushed, q.len())
        };
        shared.metrics.queue_depth.set(depth as i64);
        tracing::debug!(object = %item.object.describe(), op = ?item.op, ?pushed, depth, "queued");
        if pushed == Pushed::Full {
            shared.metrics.queue_overflow.inc();
            tracing::error!(
                object = %item.object.describe(), uid = %item.object.uid,
                capacity = shared.config.queue_capacity,
                "patch queue full: this deletion is not counted now (Fleet and the resync will count it)"
            );
        }
        shared.notify.notify_one();
    }

    /// Called for every BundleDeployment the watch delivers: when another writer
    /// dropped one of our marks, find out whether the object is still gone.
    pub fn observe_bundle_deployment(&self, bd: &WatchedBundleDeployment) {
        let namespace = bd.metadata.namespace.as_deref().unwrap_or_default();
        let defended = lock(&self.shared.marks).defended_on(namespace, &bd.name_any());
        if defended.is_empty() {
            return;
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

    pub fn config(&self) -> &PatcherConfig {
        &self.shared.config
    }

    /// Count one resync pass and the missing resources it found.
    pub fn count_resync(&self, result: &'static str, found: u64) {
        let m = &self.shared.metrics;
        m.resyncs
            .get_or_create(&crate::metrics::ResultLabels { result })
            .inc();
        m.resync_missing.inc_by(found);
    }

    /// Marks currently watched over (for tests and readiness detail).
    pub fn marks_len(&self) -> usize {
        lock(&self.shared.marks).len()
    }
}

impl DeletionSink for Patcher {
    fn record(&self, d: CountedDeletion) {
        let Some(bd) = self
            .shared
            .index
            .bundle_deployment(d.owner.set_id.as_deref(), d.objectset_hash.as_deref())
        else {
            self.shared.metrics.unresolved.inc();
            tracing::warn!(
                review_uid = %d.review_uid, namespace = %d.namespace, name = %d.name,
                set_id = d.owner.set_id.as_deref().unwrap_or(""),
                "deleted object's BundleDeployment is not in the cache of this cluster; not counted"
            );
            return;
        };
        let object = Tracked {
            group: d.group,
            version: d.version,
            kind: d.kind,
            plural: d.resource,
            namespace: d.namespace,
            name: d.name,
            uid: d.object_uid,
            created_at: d.created_at,
            bd,
        };
        let op = if d.has_finalizers {
            Op::AwaitGone
        } else {
            Op::Mark
        };
        self.push(Item {
            op,
            object,
            received: Some(d.received),
            user: d.username,
        });
    }
}

fn deleted_resource(o: &Tracked) -> DeletedResource {
    let ns = (!o.namespace.is_empty()).then_some(o.namespace.as_str());
    // The object carried the BundleDeployment's objectset labels: it belongs there.
    let r = DeletedResource::new(&o.api_version(), &o.kind, ns, &o.name).owned();
    match &o.created_at {
        Some(at) => r.with_created_at(at),
        None => r,
    }
}

/// The BundleDeployment status lists the object as missing.
fn shows_missing(status: &BundleDeploymentStatus, o: &Tracked) -> bool {
    let key = deleted_resource(o).key();
    status
        .modified_status
        .iter()
        .any(|m| m.is_missing() && m.key().same_object(&key))
}

/// [`shows_missing`] on the watch's view of `status.modifiedStatus`.
fn view_shows_missing(modified: &[StatusEntry], o: &Tracked) -> bool {
    let key = deleted_resource(o).key();
    modified
        .iter()
        .any(|m| m.is_missing() && m.key.same_object(&key))
}

/// Writes grouped by BundleDeployment `(namespace, name)`.
type WritesByBundleDeployment = BTreeMap<(String, String), Vec<Write>>;

/// One write to make: mark or unmark one object.
#[derive(Debug, Clone)]
struct Write {
    mark: bool,
    item: Item,
}

fn edit_bundle_deployment(
    object: &Value,
    writes: &[Write],
    now: &str,
) -> Result<Option<Value>, String> {
    let bd = BundleDeployment::from_value(object).map_err(|e| e.to_string())?;
    let mut status = bd.status.clone().unwrap_or_default();
    let mut changed = false;
    for w in writes {
        let r = deleted_resource(&w.item.object);
        changed |= if w.mark {
            delta::bundle_deployment::mark_missing(&mut status, &bd.spec, &r, now)
        } else {
            delta::bundle_deployment::unmark_missing(&mut status, &bd.spec, &r, now)
        };
    }
    if !changed {
        return Ok(None);
    }
    status.to_value().map(Some).map_err(|e| e.to_string())
}

fn edit_gitrepo(
    object: &Value,
    written: &[(Vec<Write>, BundleDeployment)],
    known: &[BundleDeployment],
    now: &str,
) -> Result<Option<Value>, String> {
    let mut status = match object.get("status") {
        Some(s) if !s.is_null() => GitRepoStatus::from_value(s).map_err(|e| e.to_string())?,
        _ => GitRepoStatus::default(),
    };
    // When the BundleDeployments we know are all of the GitRepo's (the usual single-
    // cluster case), compute the status exactly as Fleet's controller does; otherwise
    // apply the incremental, idempotent deltas of our changes.
    if covers_gitrepo(&status, known) {
        let old = status.to_value().map_err(|e| e.to_string())?;
        let new = delta::recompute::gitrepo_status_from_bundle_deployments(&status, known, now)
            .to_value()
            .map_err(|e| e.to_string())?;
        return Ok((new != old).then_some(new));
    }
    let mut changed = false;
    for (writes, bd) in written {
        for w in writes {
            let r = deleted_resource(&w.item.object);
            let outcome = if w.mark {
                delta::gitrepo::mark_missing(&mut status, bd, &r, known, now)
            } else {
                delta::gitrepo::unmark_missing(&mut status, bd, &r, known, now)
            };
            changed |= outcome.changed();
        }
    }
    if !changed {
        return Ok(None);
    }
    status.to_value().map(Some).map_err(|e| e.to_string())
}

/// The known BundleDeployments are all the GitRepo has: as many as its summary counts,
/// all on clusters its per-cluster counts name.
fn covers_gitrepo(status: &GitRepoStatus, known: &[BundleDeployment]) -> bool {
    let Some(summary) = &status.summary else {
        return false;
    };
    if summary.desired_ready != known.len() as i64 || known.is_empty() {
        return false;
    }
    status
        .per_cluster_resource_counts
        .keys()
        .all(|cluster| known.iter().any(|bd| &bd.cluster_id() == cluster))
}

impl Shared {
    fn bundle_deployments(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.fleet.clone(), namespace, &bundle_deployment_resource())
    }

    /// GET the tracked object's metadata (uid, deletionTimestamp: all this reads) in
    /// the deletion cluster; its contents are never transferred.
    async fn look(&self, o: &Tracked) -> Option<Seen> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&o.group, &o.version, &o.kind),
            &o.plural,
        );
        let api: Api<PartialObjectMeta<DynamicObject>> = if o.namespace.is_empty() {
            Api::all_with(self.cluster.clone(), &ar)
        } else {
            Api::namespaced_with(self.cluster.clone(), &o.namespace, &ar)
        };
        match tokio::time::timeout(self.config.retry.call_timeout, api.get_opt(&o.name)).await {
            Ok(Ok(None)) => Some(Seen::Gone),
            Ok(Ok(Some(live))) if live.metadata.uid.as_deref() == Some(o.uid.as_str()) => {
                Some(Seen::Same {
                    terminating: live.metadata.deletion_timestamp.is_some(),
                })
            }
            Ok(Ok(Some(_))) => Some(Seen::Replaced),
            Ok(Err(kube::Error::Api(status))) if status.code == 403 => {
                tracing::warn!(
                    object = %o.describe(),
                    "may not read this kind (RBAC): the deletion stays counted but is not verified"
                );
                Some(Seen::Unreadable)
            }
            Ok(Err(e)) => {
                tracing::debug!(object = %o.describe(), error = %e, "cannot check the deleted object; will retry");
                None
            }
            Err(_) => None,
        }
    }

    async fn handle(&self, items: Vec<Item>) {
        tracing::debug!(items = items.len(), "handling queued work");
        let mut writes: Vec<Write> = Vec::with_capacity(items.len());
        for item in items {
            match item.op {
                Op::Mark => writes.push(Write { mark: true, item }),
                Op::Unmark => writes.push(Write { mark: false, item }),
                Op::AwaitGone => lock(&self.marks).await_gone(item.object, Instant::now()),
                Op::Recheck => match self.look(&item.object).await {
                    Some(Seen::Gone) => {
                        let allowed = lock(&self.marks)
                            .reapply(&item.object.uid, self.config.marks.max_reapplies);
                        if allowed {
                            writes.push(Write { mark: true, item });
                        } else {
                            tracing::warn!(object = %item.object.describe(), "another writer keeps dropping this mark; no longer re-applying it");
                        }
                    }
                    Some(Seen::Unreadable) => {}
                    Some(_) => writes.push(Write { mark: false, item }),
                    None => {}
                },
            }
        }
        // GitRepo → BundleDeployment → writes, in a stable order.
        let mut groups: BTreeMap<Option<String>, WritesByBundleDeployment> = BTreeMap::new();
        for w in writes {
            let bd = &w.item.object.bd;
            groups
                .entry(bd.gitrepo.clone())
                .or_default()
                .entry((bd.namespace.clone(), bd.name.clone()))
                .or_default()
                .push(w);
        }
        for (gitrepo, bds) in groups {
            self.write_group(gitrepo, bds).await;
        }
    }

    async fn write_group(&self, gitrepo: Option<String>, bds: WritesByBundleDeployment) {
        let now = now_rfc3339();
        let mut written: Vec<(Vec<Write>, BundleDeployment)> = Vec::new();
        for ((namespace, name), writes) in bds {
            if writes.len() > 1 {
                self.metrics.coalesced.inc_by(writes.len() as u64 - 1);
            }
            let api = self.bundle_deployments(&namespace);
            let result = update_status(
                &api,
                "bundledeployment",
                &name,
                &self.config.retry,
                &self.metrics,
                |obj| edit_bundle_deployment(obj, &writes, &now),
            )
            .await;
            match result {
                Ok(w) => {
                    let reapplied = matches!(w, Written::Patched { .. });
                    tracing::debug!(bundledeployment = %name, patched = reapplied, writes = writes.len(), "BundleDeployment status written");
                    match BundleDeployment::from_value(w.object()) {
                        Ok(bd) => {
                            self.after_bundle_deployment(&writes, &bd, reapplied);
                            written.push((writes, bd));
                        }
                        Err(e) => {
                            tracing::warn!(bundledeployment = %name, error = %e, "patched object unreadable")
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, reason = e.reason(), deletions = writes.len(), "cannot count deletions in the BundleDeployment status");
                }
            }
        }
        let Some(repo) = gitrepo.filter(|_| self.config.patch_gitrepo && !written.is_empty())
        else {
            self.observe_lag(&written);
            return;
        };
        let Some((repo_ns, repo_name)) = repo.split_once('/') else {
            return;
        };
        let known = self
            .known_bundle_deployments(repo_ns, repo_name, &written)
            .await;
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.fleet.clone(), repo_ns, &gitrepo_resource());
        let result = update_status(
            &api,
            "gitrepo",
            repo_name,
            &self.config.retry,
            &self.metrics,
            |obj| edit_gitrepo(obj, &written, &known, &now),
        )
        .await;
        match result {
            Ok(w) => {
                tracing::debug!(gitrepo = %repo, patched = matches!(w, Written::Patched { .. }), "GitRepo status written");
                self.observe_lag(&written);
                self.publish_events(w.object(), &written);
            }
            Err(e) => {
                tracing::error!(gitrepo = %repo, error = %e, reason = e.reason(), "cannot count deletions in the GitRepo status")
            }
        }
    }

    /// This GitRepo's BundleDeployments on this cluster, with ours as just written.
    async fn known_bundle_deployments(
        &self,
        repo_ns: &str,
        repo_name: &str,
        written: &[(Vec<Write>, BundleDeployment)],
    ) -> Vec<BundleDeployment> {
        let mut known: Vec<BundleDeployment> = written.iter().map(|(_, bd)| bd.clone()).collect();
        let Some((_, first)) = written.first() else {
            return known;
        };
        let selector = format!("{LABEL_REPO_NAME}={repo_name},{LABEL_BUNDLE_NAMESPACE}={repo_ns}");
        let api = self.bundle_deployments(&first.metadata.namespace);
        match tokio::time::timeout(
            self.config.retry.call_timeout,
            api.list(&ListParams::default().labels(&selector)),
        )
        .await
        {
            Ok(Ok(list)) => {
                for item in list.items {
                    let Ok(value) = serde_json::to_value(&item) else {
                        continue;
                    };
                    let Ok(bd) = BundleDeployment::from_value(&value) else {
                        continue;
                    };
                    if !known.iter().any(|k| k.metadata.name == bd.metadata.name) {
                        known.push(bd);
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot list the GitRepo's BundleDeployments; using the ones just written")
            }
            Err(_) => tracing::warn!(
                "listing the GitRepo's BundleDeployments timed out; using the ones just written"
            ),
        }
        known
    }

    fn after_bundle_deployment(&self, writes: &[Write], bd: &BundleDeployment, patched: bool) {
        let status = bd.status_or_default();
        let now = Instant::now();
        let mut marks = lock(&self.marks);
        for w in writes {
            let object = w.item.object.clone();
            if w.mark {
                if w.item.op == Op::Recheck && patched {
                    self.metrics.reapplied.inc();
                }
                let defended = shows_missing(&status, &object);
                marks.marked(object, now, defended);
            } else {
                marks.remove(&object.uid);
            }
        }
    }

    fn observe_lag(&self, written: &[(Vec<Write>, BundleDeployment)]) {
        for (writes, _) in written {
            for w in writes.iter().filter(|w| w.mark) {
                if let Some(received) = w.item.received {
                    self.metrics
                        .status_lag
                        .observe(received.elapsed().as_secs_f64());
                }
            }
        }
    }

    /// One Event on the GitRepo for the deletions a review reported in this batch (not
    /// for reverts or re-applies), queued for the publisher.
    fn publish_events(&self, gitrepo: &Value, written: &[(Vec<Write>, BundleDeployment)]) {
        let deletions: Vec<Deletion> = written
            .iter()
            .flat_map(|(writes, bd)| {
                writes
                    .iter()
                    .filter(|w| w.mark && w.item.received.is_some())
                    .map(move |w| Deletion {
                        object: w.item.object.describe(),
                        user: w.item.user.clone(),
                        bundle: w.item.object.bd.bundle.clone(),
                        cluster: bd.cluster_id(),
                    })
            })
            .collect();
        let Some(note) = events::note(&deletions, &now_rfc3339()) else {
            return;
        };
        let field = |pointer: &str| {
            gitrepo
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let regarding = ObjectReference {
            api_version: Some("fleet.cattle.io/v1alpha1".into()),
            kind: Some("GitRepo".into()),
            namespace: field("/metadata/namespace"),
            name: field("/metadata/name"),
            uid: field("/metadata/uid"),
            ..ObjectReference::default()
        };
        self.events.offer(Pending { regarding, note });
    }

    async fn check_marks(&self) {
        let now = Instant::now();
        let (due, expired) = {
            let mut marks = lock(&self.marks);
            let expired = marks.expire(now, &self.config.marks);
            let mut due = marks.due(now, &self.config.marks);
            due.truncate(self.config.checks_per_tick);
            (due, expired)
        };
        for m in expired {
            tracing::debug!(object = %m.object.describe(), "mark expired; Fleet has had time to catch up");
        }
        for object in due {
            let Some(seen) = self.look(&object).await else {
                continue;
            };
            let next =
                lock(&self.marks).checked(&object.uid, seen, Instant::now(), &self.config.marks);
            let op = match next {
                Next::Keep | Next::Forget => continue,
                Next::Mark => Op::Mark,
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
                    Op::Unmark
                }
            };
            let mut q = lock(&self.queue);
            if q.push(Item {
                op,
                object,
                received: None,
                user: String::new(),
            }) == Pushed::Full
            {
                self.metrics.queue_overflow.inc();
            }
            drop(q);
            self.notify.notify_one();
        }
    }
}

/// A shorthand used by the wiring and tests.
pub type SharedIndex = Arc<OwnerIndex>;
