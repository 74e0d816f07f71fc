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
//!
//! One job per file: this module holds the handle ([`Patcher`]) and the state the
//! worker shares with it; `worker.rs` the loop, `batch.rs` the grouping of queued work
//! into writes, `status_writes.rs` the writes of one owner's group, `mark_checks.rs` the
//! worker's side of the marks ([`marks`] their pure bookkeeping), [`probe`] the checks
//! of deleted objects (one metadata LIST per kind and namespace, planned by
//! [`probe_plan`], capped by [`rate`]), [`write`] the one status-write path, [`queue`], [`events`] and
//! [`resync`].

mod batch;
pub mod events;
pub mod fleet_api;
mod mark_checks;
pub mod marks;
pub mod probe;
pub mod probe_plan;
pub mod queue;
pub mod rate;
pub mod resync;
mod status_writes;
mod worker;
pub mod write;

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use kube::Client;
use tokio::sync::Notify;

use crate::{
    admission::{CountedDeletion, DeletionSink, NotCounted},
    delta::DeletedResource,
    fleet::{
        api::BUNDLE_DEPLOYMENT, object_set_hash, release::FleetVersion, status::BundleDeployment,
        OwnerRef,
    },
    metrics::Metrics,
    owners::OwnerIndex,
};

use events::{EventQueue, EventReceiver};
use fleet_api::FleetApi;
use marks::{MarkTimings, Marks};
use probe_plan::Unlistable;
use queue::{Item, Op, Pushed, Queue, Tracked};
use rate::TokenBucket;
use write::RetryPolicy;

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
    /// Probe requests (the GETs and LIST pages that check marked objects) per second
    /// at most (`--probe-rate`); one tick's worth is saved up ([`Self::probe_burst`]).
    pub probe_rate: u32,
    /// Objects per page of a group's LIST.
    pub probe_page_size: u32,
    /// Pages of one group's LIST at most; objects beyond are checked when a later LIST
    /// reaches them.
    pub probe_max_pages: u32,
    pub marks: MarkTimings,
    pub retry: RetryPolicy,
    /// This process, as the Events' reporting instance.
    pub instance: String,
    /// How often deployed resources are compared with what exists (also once at start).
    pub resync_interval: Duration,
    /// Owners per second at most whose status the resync's sweep re-derives (one GET and
    /// one LIST each; `--resync-rederive-rate`). A BundleDeployment that changed under an
    /// owner with marks, and a write that failed, re-derive at once.
    pub sweep_rate: u32,
}

impl PatcherConfig {
    /// Probe requests saved up at most: one tick's worth (the worker spends them once a
    /// tick), so that no second ever sees more than `probe_rate` and a tick's worth.
    pub fn probe_burst(&self) -> u32 {
        self.tick_worth(self.probe_rate)
    }

    /// Owners the sweep saves up at most: one tick's worth, as for probes.
    pub fn sweep_burst(&self) -> u32 {
        self.tick_worth(self.sweep_rate)
    }

    /// `rate` per second over one tick, at least 1.
    fn tick_worth(&self, rate: u32) -> u32 {
        let per_tick = f64::from(rate) * self.tick.as_secs_f64();
        (per_tick.ceil() as u32).max(1)
    }
}

impl Default for PatcherConfig {
    fn default() -> Self {
        PatcherConfig {
            patch_gitrepo: true,
            queue_capacity: 10_000,
            event_queue_capacity: 64,
            tick: Duration::from_millis(200),
            probe_rate: 50,
            probe_page_size: 500,
            probe_max_pages: 20,
            marks: MarkTimings::default(),
            retry: RetryPolicy::default(),
            instance: "fleet-delete-guard".to_string(),
            resync_interval: Duration::from_secs(300),
            sweep_rate: 10,
        }
    }
}

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
    /// The global cap on probe requests.
    probe_budget: Mutex<TokenBucket>,
    /// Groups whose LIST was refused: checked with GETs for a while.
    unlistable: Mutex<Unlistable>,
    /// Worker batches that wrote something (for the coalescing measurements).
    batches: AtomicU64,
    /// Owners to re-derive at the next batch (a BundleDeployment of theirs changed).
    rederive: Mutex<BTreeSet<OwnerAt>>,
    /// Owners the resync's sweep re-derives, `sweep_rate` per second.
    sweep: Mutex<BTreeSet<OwnerAt>>,
    sweep_budget: Mutex<TokenBucket>,
    /// The Fleet release whose status rules the owner writes follow.
    fleet_release: std::sync::RwLock<FleetVersion>,
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

impl Shared {
    /// Add an owner with resource counts to `set` (nothing when the owners' status is
    /// not written); whether it was added.
    fn add_owner(
        &self,
        set: &Mutex<BTreeSet<OwnerAt>>,
        owner: OwnerRef,
        bd_namespace: &str,
    ) -> bool {
        if !owner.kind.has_resource_counts() || !self.config.patch_gitrepo {
            return false;
        }
        lock(set).insert(OwnerAt {
            owner,
            bd_namespace: bd_namespace.to_string(),
        });
        true
    }
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
                probe_budget: Mutex::new(TokenBucket::new(
                    config.probe_rate,
                    config.probe_burst(),
                    std::time::Instant::now(),
                )),
                unlistable: Mutex::new(Unlistable::default()),
                batches: AtomicU64::new(0),
                rederive: Mutex::new(BTreeSet::new()),
                sweep: Mutex::new(BTreeSet::new()),
                sweep_budget: Mutex::new(TokenBucket::new(
                    config.sweep_rate,
                    config.sweep_burst(),
                    std::time::Instant::now(),
                )),
                derived_from: Mutex::new(HashMap::new()),
                fleet_release: std::sync::RwLock::new(FleetVersion::NEWEST),
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

    /// Queue `item`; false when the queue is full (the item is dropped).
    pub(crate) fn push(&self, item: Item) -> bool {
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
        pushed != Pushed::Full
    }

    /// Re-derive `owner`'s status from its BundleDeployments in `bd_namespace` at the
    /// next batch (written only where it disagrees): a BundleDeployment changed under an
    /// owner with marks.
    pub fn rederive(&self, owner: OwnerRef, bd_namespace: &str) {
        if self
            .shared
            .add_owner(&self.shared.rederive, owner, bd_namespace)
        {
            self.shared.notify.notify_one();
        }
    }

    /// Re-derive `owner`'s status in the resync's sweep of every owner: `sweep_rate`
    /// owners per second, so that a cluster of thousands of owners never sends the API
    /// server thousands of GETs and LISTs in one burst at each resync.
    pub fn rederive_in_sweep(&self, owner: OwnerRef, bd_namespace: &str) {
        self.shared
            .add_owner(&self.shared.sweep, owner, bd_namespace);
    }

    /// Owners waiting for the sweep.
    pub fn sweep_pending(&self) -> usize {
        lock(&self.shared.sweep).len()
    }

    /// Write what this Fleet release would (found at start-up, or `--fleet-version`).
    pub fn set_fleet_release(&self, release: FleetVersion) {
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

    /// Marks seen gone by a probe so far (for tests).
    pub fn confirmed_marks(&self) -> usize {
        lock(&self.shared.marks).confirmed()
    }

    /// Worker batches handled so far (queued work or owners to re-derive): each writes
    /// every owner's status at most once (for tests and the coalescing measurements).
    pub fn batches(&self) -> u64 {
        self.shared.batches.load(Ordering::Relaxed)
    }
}

impl DeletionSink for Patcher {
    fn record(&self, d: CountedDeletion) -> Result<(), NotCounted> {
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
            return Err(NotCounted::NoBundleDeployment);
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
            objectset_hashes: d
                .objectset_hash
                .or_else(|| d.owner.set_id.as_deref().map(object_set_hash))
                .into_iter()
                .collect(),
            bd,
        };
        let op = if d.has_finalizers {
            Op::AwaitGone
        } else {
            Op::Mark
        };
        let pushed = self.push(Item {
            op,
            object,
            received: Some(d.received),
            user: d.username,
        });
        if pushed {
            Ok(())
        } else {
            Err(NotCounted::QueueFull)
        }
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

impl Shared {
    fn fleet_release(&self) -> FleetVersion {
        *self.fleet_release.read().unwrap_or_else(|e| e.into_inner())
    }

    fn bundle_deployments(&self, namespace: &str) -> FleetApi<BundleDeployment> {
        FleetApi::namespaced(self.fleet.clone(), BUNDLE_DEPLOYMENT, namespace)
    }
}

/// A shorthand used by the wiring and tests.
pub type SharedIndex = Arc<OwnerIndex>;
