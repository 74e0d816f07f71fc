//! The breaker in the cluster: one `coordination.k8s.io` Lease per open breaker, in the
//! webhook's namespace, named from the owner ([`super::lease_name`]).
//!
//! - The replica whose review trips a breaker refuses at once (its [`BreakerBook`] says
//!   open) and creates the Lease off the admission path; a 409 means another replica
//!   recorded it first. Only the replica that created it publishes the
//!   `BreakerTripped` Event, so there is one per trip.
//! - Every replica watches the Leases (label `delete-guard.fleet.cattle.io/breaker`): a
//!   breaker tripped elsewhere is open here as soon as the watch delivers it (well under a
//!   second), and a restarted replica lists them before it is ready.
//! - Nothing closes a breaker but deleting its Lease ([`super::reset_command`]); there is no
//!   timer. The watch then resets the breaker and its window on every replica.
//! - A Lease that cannot be created (403, 5xx, timeouts) is retried with backoff while
//!   the breaker stays open on this replica.
//! - The window counts are shared through one more Lease (`share.rs`): each counted
//!   deletion is judged on every replica's deletions of its owner.
//! - Degrade, don't block: when the Leases cannot be listed, watched, written or created
//!   (no Lease rights, a failing API), the replica is still ready; its breaker judges on
//!   its own reviews, and says so — an error log line, `/readyz` `[+]breaker ok:
//!   degraded: …` and the gauge `breaker_degraded` ([`super::degraded`]).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::{
    api::{coordination::v1::Lease, core::v1::ObjectReference},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    api::{Api, PostParams},
    runtime::{watcher, WatchStreamExt},
    Client, ResourceExt,
};
use tokio::sync::{mpsc, watch};

use super::{
    counts::COUNTS_LEASE,
    degraded::{Change, Degradation, Part},
    lease_name, owner_of_lease, reset_command,
    share::{published_value, Sharing},
    BreakerBook, BreakerConfig, BreakerMode, Judgement, OpenBreaker, Step, Trip,
    ANNOTATION_LAST_DELETION, ANNOTATION_OWNER_KIND, ANNOTATION_OWNER_NAME,
    ANNOTATION_OWNER_NAMESPACE, ANNOTATION_REASON, ANNOTATION_TRIPPED_AT, ANNOTATION_TRIPPED_BY,
    LEASE_LABEL,
};
use crate::{
    admission::{BreakerGate, Judged},
    decide::{Owner, Review, Verdict},
    fleet::api::FleetResource,
    health::Readiness,
    metrics::{Metrics, OwnerKindLabels},
    patcher::{
        events::{EventQueue, Pending},
        now_rfc3339,
    },
    policy::DecisionConfig,
};

/// Readiness check name: the breaker Leases have been listed once, or cannot be (then
/// it passes, degraded).
pub const BREAKER_CHECK: &str = "breaker";
/// Event reason on the owner when its breaker trips.
pub const EVENT_REASON: &str = "BreakerTripped";
const EVENT_ACTION: &str = "Trip";
/// kube-apiserver refuses Event notes longer than this (bytes).
const NOTE_MAX_BYTES: usize = 1024;
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// A watch that failed (after its list) counts as working again after this long
/// without errors: a resumed watch delivers nothing when no Lease changes.
const WATCH_QUIET: Duration = Duration::from_secs(120);

/// A trip to record in the cluster.
#[derive(Debug)]
struct Tripped {
    open: OpenBreaker,
    trip: Trip,
    /// `configmap default/x by alice`.
    last: String,
}

struct Inner {
    config: BreakerConfig,
    decision: DecisionConfig,
    book: Mutex<BreakerBook>,
    /// Times are measured from here (the pure book takes durations).
    origin: Instant,
    trips: mpsc::UnboundedSender<Tripped>,
    metrics: Metrics,
    synced: watch::Sender<bool>,
    /// Unix milliseconds at `origin`: the book's times as wall-clock times.
    origin_unix_ms: u64,
    degradation: Mutex<Degradation>,
    /// The readiness check to keep current (none when detached).
    readiness: Option<Readiness>,
    /// The counts Lease's writer (none when detached).
    sharing: OnceLock<Sharing>,
}

/// The breaker, running: the admission path's [`BreakerGate`]. Cheap to clone.
#[derive(Clone)]
pub struct Breakers {
    inner: Arc<Inner>,
}

fn lock(m: &Mutex<BreakerBook>) -> std::sync::MutexGuard<'_, BreakerBook> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_ms_now() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0)
}

/// Where the breaker runs and what it reports through.
pub struct BreakerContext {
    /// The cluster where deletions happen (the Leases live in its `config.namespace`).
    pub client: Client,
    /// The Event queue of the patch worker (Events go to the owner's cluster).
    pub events: Option<EventQueue>,
    pub metrics: Metrics,
    pub readiness: Readiness,
    /// This replica, in the Lease's `tripped-by` annotation.
    pub instance: String,
}

impl Breakers {
    /// Start watching the Leases, sharing the window counts and recording trips.
    /// Readiness gets the `breaker` check, which passes once the Leases have been listed
    /// — or once they cannot be (degraded).
    pub fn start(config: BreakerConfig, decision: DecisionConfig, ctx: BreakerContext) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let breakers = Breakers::new(
            config,
            decision,
            tx,
            ctx.metrics.clone(),
            false,
            Some(ctx.readiness.clone()),
        );
        breakers.report();
        let namespace = breakers.inner.config.namespace.clone();
        let api: Api<Lease> = Api::namespaced(ctx.client.clone(), &namespace);
        let sharing = Sharing::start(api.clone(), breakers.clone(), &ctx.instance);
        let _ = breakers.inner.sharing.set(sharing);
        tokio::spawn(watch_leases(api.clone(), breakers.clone()));
        tokio::spawn(record_trips(
            rx,
            api,
            breakers.clone(),
            ctx.events,
            ctx.instance,
        ));
        breakers
    }

    /// The breaker without a cluster: trips are judged on this replica's counts and
    /// counted in metrics but recorded nowhere (benchmarks, tests of the admission path).
    pub fn detached(config: BreakerConfig, decision: DecisionConfig, metrics: Metrics) -> Self {
        let (tx, _rx) = mpsc::unbounded_channel();
        Breakers::new(config, decision, tx, metrics, true, None)
    }

    fn new(
        config: BreakerConfig,
        decision: DecisionConfig,
        trips: mpsc::UnboundedSender<Tripped>,
        metrics: Metrics,
        synced: bool,
        readiness: Option<Readiness>,
    ) -> Self {
        metrics.breaker_degraded.set(0);
        Breakers {
            inner: Arc::new(Inner {
                config,
                decision,
                book: Mutex::new(BreakerBook::default()),
                origin: Instant::now(),
                origin_unix_ms: unix_ms_now(),
                trips,
                metrics,
                synced: watch::Sender::new(synced),
                degradation: Mutex::new(Degradation::default()),
                readiness,
                sharing: OnceLock::new(),
            }),
        }
    }

    /// Whether the breaker has fallen back to this replica's own state, and why.
    pub fn degradation(&self) -> Degradation {
        self.inner
            .degradation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `part` of the shared state fails: degraded, said loudly on the change.
    pub(super) fn degrade(&self, part: Part, error: String) {
        let change = self
            .inner
            .degradation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set(part, error.clone());
        if matches!(change, Change::Degraded | Change::Changed) {
            let detail = self.degradation().detail().unwrap_or_default();
            tracing::error!(
                error = %error,
                namespace = %self.inner.config.namespace,
                "mass-deletion breaker {detail}: each replica now counts only the deletions \
                 it reviews (a burst spread over R replicas trips after up to R times the \
                 thresholds); check the Role fleet-delete-guard-breaker and the Lease API"
            );
            self.report();
        }
    }

    /// `part` works again.
    pub(super) fn recover(&self, part: Part) {
        let change = self
            .inner
            .degradation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear(part);
        match change {
            Change::Recovered => {
                tracing::info!("mass-deletion breaker no longer degraded: shared state works");
                self.report();
            }
            Change::Changed => self.report(),
            Change::Degraded | Change::Same => {}
        }
    }

    /// The readiness check and the `breaker_degraded` gauge from the current state.
    fn report(&self) {
        let inner = &self.inner;
        let degradation = self.degradation();
        inner
            .metrics
            .breaker_degraded
            .set(i64::from(degradation.is_degraded()));
        let Some(readiness) = &inner.readiness else {
            return;
        };
        let namespace = &inner.config.namespace;
        match degradation.detail() {
            Some(detail) => readiness.set(BREAKER_CHECK, true, detail),
            None if *inner.synced.borrow() => readiness.set(
                BREAKER_CHECK,
                true,
                format!(
                    "mode {}, breaker Leases in {namespace} listed, window counts shared in \
                     Lease {COUNTS_LEASE}",
                    inner.config.mode.as_str()
                ),
            ),
            None => readiness.set(
                BREAKER_CHECK,
                false,
                format!("waiting for the first list of breaker Leases in {namespace}"),
            ),
        }
    }

    /// Now as Unix milliseconds on the book's clock.
    pub(super) fn now_unix_ms(&self) -> u64 {
        let since = self.inner.origin.elapsed().as_millis() as u64;
        self.inner.origin_unix_ms.saturating_add(since)
    }

    /// This replica's annotation of the counts Lease.
    pub(super) fn published(&self, max_owners: usize) -> String {
        let now = self.inner.origin.elapsed();
        let recent = lock(&self.inner.book).recent(&self.inner.config, now, max_owners);
        published_value(recent, self.inner.origin_unix_ms)
    }

    /// One write of the counts Lease went through or failed.
    pub(super) fn count_write(&self, ok: bool) {
        self.inner
            .metrics
            .breaker_count_writes
            .get_or_create(&crate::metrics::ResultLabels {
                result: if ok { "ok" } else { "failed" },
            })
            .inc();
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.inner.config
    }

    /// Wait until the Leases have been listed once.
    pub async fn wait_synced(&self) {
        let mut rx = self.inner.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// The open breaker of `owner` this replica knows of.
    pub fn open_breaker(&self, owner: &crate::fleet::OwnerRef) -> Option<OpenBreaker> {
        lock(&self.inner.book).open_breaker(owner).cloned()
    }

    fn with_book<T>(&self, f: impl FnOnce(&mut BreakerBook) -> T) -> T {
        let (out, open) = {
            let mut book = lock(&self.inner.book);
            let out = f(&mut book);
            (out, book.open_count())
        };
        self.inner
            .metrics
            .breakers_open
            .set(i64::try_from(open).unwrap_or(i64::MAX));
        out
    }
}

impl Breakers {
    /// The trip of `judgement`, if any, reported and queued for recording.
    fn conclude(&self, review: &Review, judgement: Judgement) -> Verdict {
        let inner = &self.inner;
        if let Some((open, trip)) = judgement.tripped {
            let m = &inner.metrics;
            m.breaker_trips
                .get_or_create(&OwnerKindLabels {
                    owner_kind: open.owner.kind.as_str(),
                })
                .inc();
            let count = lock(&inner.book).open_count();
            m.breakers_open
                .set(i64::try_from(count).unwrap_or(i64::MAX));
            let object = review
                .object
                .as_ref()
                .map(|o| format!("{} {}", o.kind, o.display_name()))
                .unwrap_or_default();
            let last = format!("{object} by {}", review.username);
            tracing::error!(
                owner = %open.owner,
                reason = %open.reason,
                mode = inner.config.mode.as_str(),
                last_deletion = %last,
                reset = %reset_command(&inner.config.namespace, &open.owner),
                "mass-deletion breaker tripped"
            );
            // The receiver lives as long as the recording task, i.e. the process.
            let _ = inner.trips.send(Tripped { open, trip, last });
        }
        judgement.verdict
    }

    fn now(&self, received: Instant) -> Duration {
        received.saturating_duration_since(self.inner.origin)
    }
}

impl BreakerGate for Breakers {
    fn judge(
        &self,
        review: &Review,
        owner: &Owner,
        verdict: Verdict,
        received: Instant,
    ) -> Verdict {
        let inner = &self.inner;
        let now = self.now(received);
        let judgement = lock(&inner.book).judge(
            &inner.config,
            &inner.decision,
            review,
            owner,
            verdict,
            now,
            &now_rfc3339,
        );
        self.conclude(review, judgement)
    }

    fn judge_shared<'a>(
        &'a self,
        review: &'a Review,
        owner: &'a Owner,
        verdict: Verdict,
        received: Instant,
    ) -> Judged<'a> {
        let inner = &self.inner;
        let now = self.now(received);
        let step = lock(&inner.book).begin(
            &inner.config,
            &inner.decision,
            review,
            owner,
            verdict,
            now,
            &now_rfc3339,
        );
        let pending = match step {
            Step::Done(judgement) => return Judged::Ready(self.conclude(review, judgement)),
            Step::Share(pending) => pending,
        };
        Judged::Waiting(Box::pin(async move {
            let others = match inner.sharing.get() {
                Some(sharing) => {
                    let now_ms = inner.origin_unix_ms.saturating_add(now.as_millis() as u64);
                    let since = now_ms.saturating_sub(inner.config.window.as_millis() as u64);
                    sharing.others(pending.owner(), since).await
                }
                None => 0,
            };
            let judgement =
                lock(&inner.book).conclude(&inner.config, pending, others, &now_rfc3339);
            self.conclude(review, judgement)
        }))
    }
}

/// The Lease recording `t`.
fn lease(t: &Tripped, namespace: &str, instance: &str) -> Lease {
    let owner = &t.open.owner;
    let annotations = BTreeMap::from([
        (
            ANNOTATION_OWNER_KIND.to_string(),
            owner.kind.as_str().to_string(),
        ),
        (
            ANNOTATION_OWNER_NAMESPACE.to_string(),
            owner.namespace.clone(),
        ),
        (ANNOTATION_OWNER_NAME.to_string(), owner.name.clone()),
        (ANNOTATION_REASON.to_string(), t.open.reason.clone()),
        (ANNOTATION_TRIPPED_AT.to_string(), t.open.tripped_at.clone()),
        (ANNOTATION_TRIPPED_BY.to_string(), instance.to_string()),
        (ANNOTATION_LAST_DELETION.to_string(), t.last.clone()),
    ]);
    let labels = BTreeMap::from([
        (LEASE_LABEL.to_string(), "open".to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "fleet-delete-guard".to_string(),
        ),
    ]);
    Lease {
        metadata: ObjectMeta {
            name: Some(lease_name(owner)),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(k8s_openapi::api::coordination::v1::LeaseSpec {
            holder_identity: Some(instance.to_string()),
            acquire_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            ..Default::default()
        }),
    }
}

/// What an existing Lease says; `None` for a Lease that is not a breaker's.
fn open_of(l: &Lease) -> Option<OpenBreaker> {
    let annotations = l.annotations();
    let owner = owner_of_lease(annotations)?;
    Some(OpenBreaker {
        owner,
        reason: annotations
            .get(ANNOTATION_REASON)
            .cloned()
            .unwrap_or_else(|| "recorded in the cluster".into()),
        tripped_at: annotations
            .get(ANNOTATION_TRIPPED_AT)
            .cloned()
            .unwrap_or_default(),
        recorded: true,
        record_failing: false,
    })
}

async fn watch_leases(api: Api<Lease>, breakers: Breakers) {
    let config = watcher::Config::default().labels(LEASE_LABEL);
    let namespace = breakers.inner.config.namespace.clone();
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    let mut tick = tokio::time::interval(WATCH_QUIET / 4);
    // A failed list leaves the open breakers unknown until a list completes; a failed
    // watch (after its list) until it has run quietly for a while.
    let mut list_failed = false;
    let mut last_error: Option<Instant> = None;
    loop {
        let event = tokio::select! {
            e = events.next() => match e {
                Some(e) => e,
                None => return,
            },
            _ = tick.tick() => {
                if !list_failed && last_error.is_some_and(|t| t.elapsed() >= WATCH_QUIET) {
                    last_error = None;
                    breakers.recover(Part::Watch);
                }
                continue;
            }
        };
        match event {
            Ok(watcher::Event::Init) => breakers.with_book(|b| b.relist_start()),
            Ok(watcher::Event::InitApply(l)) | Ok(watcher::Event::Apply(l)) => {
                if let Some(open) = open_of(&l) {
                    breakers.with_book(|b| b.recorded(open));
                }
            }
            Ok(watcher::Event::InitDone) => {
                let open = breakers.with_book(|b| {
                    b.relist_done();
                    b.open_count()
                });
                if !breakers.inner.synced.send_replace(true) {
                    tracing::info!(open, namespace = %namespace, "breaker Leases listed");
                }
                list_failed = false;
                last_error = None;
                breakers.recover(Part::Watch);
                breakers.report();
            }
            Ok(watcher::Event::Delete(l)) => {
                if let Some(open) = open_of(&l) {
                    breakers.with_book(|b| b.reset(&open.owner));
                    if let Some(sharing) = breakers.inner.sharing.get() {
                        sharing.reset(&open.owner, breakers.now_unix_ms());
                    }
                    tracing::warn!(owner = %open.owner, lease = %l.name_any(), "mass-deletion breaker reset (its Lease was deleted)");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "breaker Lease watch failed; retrying with backoff");
                list_failed |= matches!(e, watcher::Error::InitialListFailed(_));
                last_error = Some(Instant::now());
                breakers.degrade(Part::Watch, e.to_string());
            }
        }
    }
}

/// Records every trip in its own task (trips are at most one per owner until reset).
async fn record_trips(
    mut rx: mpsc::UnboundedReceiver<Tripped>,
    api: Api<Lease>,
    breakers: Breakers,
    events: Option<EventQueue>,
    instance: String,
) {
    while let Some(t) = rx.recv().await {
        tokio::spawn(record(
            t,
            api.clone(),
            breakers.clone(),
            events.clone(),
            instance.clone(),
        ));
    }
}

async fn record(
    t: Tripped,
    api: Api<Lease>,
    breakers: Breakers,
    events: Option<EventQueue>,
    instance: String,
) {
    let namespace = breakers.inner.config.namespace.clone();
    let lease = lease(&t, &namespace, &instance);
    let name = lease_name(&t.open.owner);
    let mut delay = RETRY_FIRST;
    loop {
        let result = tokio::time::timeout(
            Duration::from_secs(5),
            api.create(&PostParams::default(), &lease),
        )
        .await;
        let error = match result {
            Ok(Ok(_)) => {
                breakers.with_book(|b| b.confirm(&t.open.owner));
                breakers.recover(Part::Record);
                tracing::info!(owner = %t.open.owner, lease = %name, "breaker recorded");
                if let Some(events) = &events {
                    events.offer(event(&t, &breakers.inner.config));
                }
                return;
            }
            Ok(Err(kube::Error::Api(s))) if s.code == 409 => {
                // Another replica recorded it first (its Event is the one).
                breakers.with_book(|b| b.confirm(&t.open.owner));
                breakers.recover(Part::Record);
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        };
        if breakers.open_breaker(&t.open.owner).is_none() {
            breakers.recover(Part::Record);
            return;
        }
        breakers.with_book(|b| b.record_failed(&t.open.owner));
        breakers.degrade(Part::Record, error.clone());
        breakers
            .inner
            .metrics
            .errors
            .get_or_create(&crate::metrics::KindLabels {
                kind: "breaker_lease",
            })
            .inc();
        tracing::error!(
            owner = %t.open.owner, lease = %name, error = %error,
            retry_in_ms = delay.as_millis() as u64,
            "cannot record the open breaker in its Lease; it stays open on this replica only"
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RETRY_MAX);
    }
}

/// The `BreakerTripped` Event on the owner.
fn event(t: &Tripped, config: &BreakerConfig) -> Pending {
    let owner = &t.open.owner;
    let resource = FleetResource::of_owner(owner.kind);
    let effect = match config.mode {
        BreakerMode::Enforce => {
            "further deletions of its objects by users and Fleet's agent are refused"
        }
        BreakerMode::Observe | BreakerMode::Off => "observe mode: nothing is refused",
    };
    let mut note = format!(
        "Mass-deletion breaker tripped at {}: {}; last: {}. {effect} until reset: {}",
        t.open.tripped_at,
        t.trip,
        t.last,
        reset_command(&config.namespace, owner)
    );
    if note.len() > NOTE_MAX_BYTES {
        let mut end = NOTE_MAX_BYTES - 3;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push('…');
    }
    Pending {
        regarding: ObjectReference {
            api_version: Some(resource.api_version().into()),
            kind: Some(resource.kind.into()),
            namespace: (!owner.namespace.is_empty()).then(|| owner.namespace.clone()),
            name: Some(owner.name.clone()),
            ..ObjectReference::default()
        },
        reason: EVENT_REASON,
        action: EVENT_ACTION,
        note,
    }
}
