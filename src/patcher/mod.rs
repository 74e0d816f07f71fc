//! Counting deletions in Fleet's status, off the admission path.
//!
//! The admission path hands each counted deletion to [`Patcher::record`], which only
//! queues it. One worker task drains the queue, groups the work by owner (GitRepo,
//! HelmOp or Bundle) and BundleDeployment, and writes:
//!
//! 1. the BundleDeployment status of this cluster first — Fleet's source of truth, and
//!    the only object a downstream cluster's Fleet credentials may write — so that
//!    Fleet's own recompute agrees with the mark instead of reverting it;
//! 2. then, where the webhook may (same cluster, or management-cluster credentials) and
//!    the owner has a status of its own (GitRepo, HelmOp), the owner's status, derived
//!    from the owner's BundleDeployments as listed after the owner was read, and one
//!    Event on it for the batch ([`events`]).
//!
//! Every write goes through [`write::update_status`] (read → load → pure edit from
//! [`crate::delta`] → merge patch with resourceVersion precondition → retry); the edits
//! are idempotent, so retries, repeated reviews and several replicas never count a
//! deletion twice. [`marks`] then confirms, reverts, defends and releases each mark;
//! while an owner has marks, a change of one of its BundleDeployments seen by the watch
//! re-derives the owner status, so a replica that wrote from an older view is repaired.

pub mod events;
pub mod fleet_api;
pub mod marks;
pub mod probe;
pub mod queue;
pub mod resync;
pub mod write;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    convert::Infallible,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use kube::{api::ListParams, runtime::events::Reporter, Client, ResourceExt};
use tokio::sync::Notify;

use crate::{
    admission::{CountedDeletion, DeletionSink},
    delta::{self, owner::WrittenBundleDeployment, DeletedResource, ResourceChange},
    fleet::{
        api::{FleetResource, BUNDLE_DEPLOYMENT},
        release::FleetRelease,
        status::{BundleDeployment, OwnerObject},
        view::{StatusEntry, WatchedBundleDeployment},
        OwnerKind, OwnerRef, LABEL_BUNDLE_NAMESPACE, LABEL_HELM_OP_NAME, LABEL_REPO_NAME,
    },
    metrics::Metrics,
    owners::OwnerIndex,
};

use events::{Deletion, EventQueue, EventReceiver, Pending};
use fleet_api::FleetApi;
use marks::{MarkTimings, Marks, Next, Seen, UnmarkReason};
use queue::{Item, Op, Pushed, Queue, Tracked};
use write::{update_status, RetryPolicy};

pub use events::EVENT_REASON;

/// How the patcher behaves.
#[derive(Debug, Clone)]
pub struct PatcherConfig {
    /// Patch the owner's status too — GitRepo or HelmOp — (needs rights on them in the
    /// Fleet cluster).
    pub patch_gitrepo: bool,
    /// Deletions waiting at most; more are refused (metric `queue_overflow_total`).
    pub queue_capacity: usize,
    /// Events (one per owner and batch) waiting to be published at most; more are
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

/// Owners re-derived per worker batch at most.
const REDERIVE_PER_BATCH: usize = 64;

/// An owner whose status is re-derived from its BundleDeployments, and where they are.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct OwnerAt {
    owner: OwnerRef,
    /// Namespace of this cluster's BundleDeployments.
    bd_namespace: String,
}

struct Shared {
    queue: Mutex<Queue>,
    marks: Mutex<Marks>,
    /// Owners to re-derive at the next batch (a BundleDeployment of theirs changed).
    rederive: Mutex<BTreeSet<OwnerAt>>,
    /// The Fleet release whose status rules the owner writes follow.
    fleet_release: std::sync::RwLock<FleetRelease>,
    /// Per owner, the resourceVersions of the BundleDeployments its status was last
    /// derived from: a watch event carrying one of them is not news.
    derived_from: Mutex<HashMap<OwnerRef, HashMap<String, String>>>,
    notify: Notify,
    index: Arc<OwnerIndex>,
    metrics: Metrics,
    config: PatcherConfig,
    /// Where deletions happen (GET of deleted objects).
    cluster: Client,
    /// Where BundleDeployments, GitRepos and HelmOps live.
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
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
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
                rederive: Mutex::new(BTreeSet::new()),
                derived_from: Mutex::new(HashMap::new()),
                fleet_release: std::sync::RwLock::new(FleetRelease::NEWEST),
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

    /// The queue of the Event publisher the worker starts (the breaker's Events use it too).
    pub fn event_queue(&self) -> EventQueue {
        self.shared.events.clone()
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
            // Bounded per batch, so a resync of thousands of owners never holds up
            // the counting of new deletions; the rest wait for the next ticks.
            let rederive: BTreeSet<OwnerAt> = {
                let mut pending = lock(&shared.rederive);
                std::iter::from_fn(|| pending.pop_first())
                    .take(REDERIVE_PER_BATCH)
                    .collect()
            };
            if !items.is_empty() || !rederive.is_empty() {
                shared.handle(items, rederive).await;
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

    /// Re-derive `owner`'s status from its BundleDeployments in `bd_namespace` at the
    /// next batch (the resync found it disagreeing with them).
    pub fn rederive(&self, owner: OwnerRef, bd_namespace: &str) {
        if !owner.kind.has_resource_counts() || !self.shared.config.patch_gitrepo {
            return;
        }
        lock(&self.shared.rederive).insert(OwnerAt {
            owner,
            bd_namespace: bd_namespace.to_string(),
        });
        self.shared.notify.notify_one();
    }

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

    /// Write what this Fleet release would (found at start-up, or `--fleet-version`).
    pub fn set_fleet_release(&self, release: FleetRelease) {
        *self
            .shared
            .fleet_release
            .write()
            .unwrap_or_else(|e| e.into_inner()) = release;
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

/// The watch's view of `status.modifiedStatus` lists the object as missing.
fn view_shows_missing(modified: &[StatusEntry], o: &Tracked) -> bool {
    let key = deleted_resource(o).key();
    modified
        .iter()
        .any(|m| m.is_missing() && m.key.same_object(&key))
}

/// One write to make: mark or unmark one object.
#[derive(Debug, Clone)]
struct Write {
    mark: bool,
    item: Item,
}

impl Write {
    fn change(&self) -> ResourceChange {
        let r = deleted_resource(&self.item.object);
        if self.mark {
            ResourceChange::missing(r)
        } else {
            ResourceChange::restored(r)
        }
    }
}

/// The writes of one batch for one BundleDeployment `(namespace, name)`.
type WritesByBundleDeployment = BTreeMap<(String, String), Vec<Write>>;

/// A BundleDeployment as written, with the writes and changes it took.
struct WrittenBd {
    writes: Vec<Write>,
    changes: Vec<ResourceChange>,
    bd: BundleDeployment,
}

/// Label selector of an owner's BundleDeployments, as Fleet's status controllers list
/// them.
fn owner_selector(owner: &OwnerRef) -> Option<String> {
    let label = match owner.kind {
        OwnerKind::GitRepo => LABEL_REPO_NAME,
        OwnerKind::HelmOp => LABEL_HELM_OP_NAME,
        OwnerKind::Bundle => return None,
    };
    Some(format!(
        "{label}={},{LABEL_BUNDLE_NAMESPACE}={}",
        owner.name, owner.namespace
    ))
}

/// The owner's BundleDeployments in `api`'s namespace, or why they could not be listed.
async fn list_owner_bundle_deployments(
    api: &FleetApi<BundleDeployment>,
    selector: &str,
    timeout: Duration,
) -> Result<Vec<BundleDeployment>, String> {
    let mut params = ListParams::default().labels(selector).limit(500);
    let mut out = Vec::new();
    loop {
        let page = tokio::time::timeout(timeout, api.list(&params))
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
            .map_err(|e| e.to_string())?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        out.extend(page.items);
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

impl Shared {
    fn fleet_release(&self) -> FleetRelease {
        *self.fleet_release.read().unwrap_or_else(|e| e.into_inner())
    }

    fn bundle_deployments(&self, namespace: &str) -> FleetApi<BundleDeployment> {
        FleetApi::namespaced(self.fleet.clone(), BUNDLE_DEPLOYMENT, namespace)
    }

    async fn handle(&self, items: Vec<Item>, rederive: BTreeSet<OwnerAt>) {
        tracing::debug!(
            items = items.len(),
            rederive = rederive.len(),
            "handling queued work"
        );
        let mut writes: Vec<Write> = Vec::with_capacity(items.len());
        for item in items {
            match item.op {
                Op::Mark => writes.push(Write { mark: true, item }),
                Op::Unmark => writes.push(Write { mark: false, item }),
                Op::AwaitGone => lock(&self.marks).await_gone(item.object, Instant::now()),
                Op::Recheck => {
                    match probe::look(&self.cluster, &item.object, self.config.retry.call_timeout)
                        .await
                    {
                        Some(Seen::Gone) => {
                            let allowed = lock(&self.marks)
                                .reapply(&item.object.uid, self.config.marks.max_reapplies);
                            if allowed {
                                writes.push(Write { mark: true, item });
                            } else {
                                tracing::warn!(object = %item.object.describe(), "another writer keeps dropping this mark; no longer re-applying it");
                            }
                        }
                        Some(Seen::Unreadable) | None => {}
                        Some(_) => writes.push(Write { mark: false, item }),
                    }
                }
            }
        }
        // Owner → BundleDeployment → writes, in a stable order.
        let mut groups: BTreeMap<OwnerAt, WritesByBundleDeployment> = BTreeMap::new();
        for w in writes {
            let bd = &w.item.object.bd;
            groups
                .entry(OwnerAt {
                    owner: bd.owner.clone(),
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

    /// Write one owner's BundleDeployments, then the owner.
    async fn write_group(&self, at: OwnerAt, bds: WritesByBundleDeployment) {
        let now = now_rfc3339();
        let mut written: Vec<WrittenBd> = Vec::new();
        for ((namespace, name), writes) in bds {
            if writes.len() > 1 {
                self.metrics.coalesced.inc_by(writes.len() as u64 - 1);
            }
            let changes: Vec<ResourceChange> = writes.iter().map(Write::change).collect();
            let api = self.bundle_deployments(&namespace);
            let result = update_status(
                &api,
                &name,
                &self.config.retry,
                &self.metrics,
                || async {},
                |bd: &BundleDeployment, _: &()| {
                    Ok::<_, Infallible>(delta::bundle_deployment::status_after(bd, &changes, &now))
                },
            )
            .await;
            match result {
                Ok(w) => {
                    let patched = w.patched();
                    tracing::debug!(bundledeployment = %name, patched, writes = writes.len(), "BundleDeployment status written");
                    let bd = w.into_object();
                    self.after_bundle_deployment(&writes, &bd, patched);
                    written.push(WrittenBd {
                        writes,
                        changes,
                        bd,
                    });
                }
                Err(e) if e.is_transient() => {
                    // The API kept failing or conflicting: nothing is dropped, the work
                    // goes back to the queue for the next batch.
                    tracing::warn!(error = %e, deletions = writes.len(), "BundleDeployment status not written yet; retrying at the next batch");
                    self.metrics.requeued.inc_by(writes.len() as u64);
                    self.requeue(writes);
                }
                Err(e) => {
                    tracing::error!(error = %e, reason = e.reason(), deletions = writes.len(), "cannot count deletions in the BundleDeployment status");
                }
            }
        }
        let rederive_only = written.is_empty();
        let owner = &at.owner;
        let Some(selector) = owner_selector(owner).filter(|_| self.config.patch_gitrepo) else {
            // A Bundle-only owner, or no rights on owners: the BundleDeployment is all.
            self.observe_lag(&written);
            return;
        };
        let owner_api: FleetApi<OwnerObject> = FleetApi::namespaced(
            self.fleet.clone(),
            FleetResource::of_owner(owner.kind),
            &owner.namespace,
        );
        let bd_api = self.bundle_deployments(&at.bd_namespace);
        let timeout = self.config.retry.call_timeout;
        let views: Vec<WrittenBundleDeployment<'_>> = written
            .iter()
            .map(|w| WrittenBundleDeployment {
                bundle_deployment: &w.bd,
                changes: &w.changes,
            })
            .collect();
        let mut derived_from: HashMap<String, String> = HashMap::new();
        let rules = self.fleet_release().rules();
        let result = update_status(
            &owner_api,
            &owner.name,
            &self.config.retry,
            &self.metrics,
            // Listed after every read of the owner: never older than the owner status it
            // replaces, so a stale view can never be written over a newer one.
            || list_owner_bundle_deployments(&bd_api, &selector, timeout),
            |object: &OwnerObject, listed: &Result<Vec<BundleDeployment>, String>| {
                let known: &[BundleDeployment] = match listed {
                    Ok(bds) => bds,
                    Err(e) => {
                        tracing::warn!(%owner, error = %e, "cannot list the owner's BundleDeployments; using the ones just written");
                        &[]
                    }
                };
                derived_from = known
                    .iter()
                    .filter_map(|b| {
                        let rv = b.metadata.resource_version()?;
                        Some((b.metadata.name.clone(), rv.to_string()))
                    })
                    .collect();
                Ok::<_, Infallible>(delta::owner::status_after(
                    &rules,
                    object.status.as_ref(),
                    &views,
                    known,
                    &now,
                ))
            },
        )
        .await;
        match result {
            Ok(w) => {
                tracing::debug!(%owner, patched = w.patched(), rederive_only, "owner status written");
                lock(&self.derived_from).insert(owner.clone(), derived_from);
                self.observe_lag(&written);
                self.publish_events(owner, w.object(), &written);
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(%owner, error = %e, "owner status not written yet; re-deriving it at the next batch");
                lock(&self.rederive).insert(at.clone());
            }
            Err(e) => {
                tracing::error!(%owner, error = %e, reason = e.reason(), "cannot count deletions in the owner's status")
            }
        }
    }

    /// Put writes back in the queue (their marks and arrival times kept).
    fn requeue(&self, writes: Vec<Write>) {
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
                let defended =
                    delta::bundle_deployment::shows_missing(&status, &deleted_resource(&object));
                marks.marked(object, now, defended);
            } else {
                marks.remove(&object.uid);
            }
        }
    }

    fn observe_lag(&self, written: &[WrittenBd]) {
        for w in written.iter().flat_map(|w| &w.writes).filter(|w| w.mark) {
            if let Some(received) = w.item.received {
                self.metrics
                    .status_lag
                    .observe(received.elapsed().as_secs_f64());
            }
        }
    }

    /// One Event on the owner for the deletions a review reported in this batch (not
    /// for reverts or re-applies), queued for the publisher.
    fn publish_events(&self, owner: &OwnerRef, object: &OwnerObject, written: &[WrittenBd]) {
        let deletions: Vec<Deletion> = written
            .iter()
            .flat_map(|w| {
                w.writes
                    .iter()
                    .filter(|x| x.mark && x.item.received.is_some())
                    .map(move |x| Deletion {
                        object: x.item.object.describe(),
                        user: x.item.user.clone(),
                        bundle: x.item.object.bd.bundle.clone(),
                        cluster: w.bd.cluster_id(),
                    })
            })
            .collect();
        let Some(note) = events::note(&deletions, &now_rfc3339()) else {
            return;
        };
        self.events.offer(Pending {
            regarding: events::regarding(owner, object),
            reason: events::EVENT_REASON,
            action: events::EVENT_ACTION,
            note,
        });
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
            let Some(seen) =
                probe::look(&self.cluster, &object, self.config.retry.call_timeout).await
            else {
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
