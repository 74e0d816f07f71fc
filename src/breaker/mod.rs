//! The mass-deletion circuit breaker, pure: no I/O, no clock, no global state.
//!
//! Per owner (GitRepo, HelmOp or Bundle) on this cluster, a sliding window counts the
//! deletions of the owner's objects. The breaker trips when, within `window`,
//!
//! - more than `max_deletions` were deleted, or
//! - more than `max_fraction` of the owner's `desiredReady` were deleted (and at least
//!   [`FRACTION_MIN_DELETIONS`]), or
//! - Fleet's agent deleted an object of a protected kind (at once).
//!
//! [`BreakerBook`] holds the windows and the open breakers this replica knows of; time
//! is an input ([`Duration`] since any fixed origin), so the same sequence of calls
//! always gives the same answers. [`BreakerBook::judge`] takes the verdict of
//! [`crate::decide::decide`] and returns it with the breaker applied; `shared.rs` keeps
//! the book in sync with the cluster (a Lease per open breaker).

pub mod counts;
pub mod degraded;
pub mod share;
pub mod shared;

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    time::Duration,
};

use crate::{
    decide::{Outcome, Owner, Review, Verdict, MAX_WARNINGS, MAX_WARNING_CHARS},
    fleet::{object_set_hash, OwnerKind, OwnerRef},
    policy::{matches_identity, DecisionConfig},
};

/// What the breaker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum BreakerMode {
    /// No counting, no breaker.
    Off,
    /// Count and report trips (Event, error log, metrics); deny nothing (default).
    Observe,
    /// Also deny further deletions of a tripped owner's objects until reset.
    Enforce,
}

impl BreakerMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerMode::Off => "off",
            BreakerMode::Observe => "observe",
            BreakerMode::Enforce => "enforce",
        }
    }
}

/// Kinds whose deletion by Fleet's agent trips the breaker at once. Fleet keeps CRDs on
/// uninstall (`helm.sh/resource-policy: keep`), Helm never deletes the namespaces it
/// creates, and PersistentVolumeClaims hold data that no re-deployment brings back.
pub const DEFAULT_PROTECTED_KINDS: &[&str] = &[
    "CustomResourceDefinition",
    "Namespace",
    "PersistentVolumeClaim",
];

/// The fraction rule needs at least this many deletions in the window: deleting 2 of
/// an owner's 3 objects is not a mass deletion.
pub const FRACTION_MIN_DELETIONS: u32 = 5;

/// Timestamps kept per owner at most (the oldest are dropped beyond): memory stays
/// bounded whatever the deletion rate; the count then reads at least this high.
pub const MAX_STAMPS_PER_OWNER: usize = 16_384;

/// Owners with a window kept at most before stale windows are dropped.
const PRUNE_ABOVE_OWNERS: usize = 1024;

/// The breaker's configuration (`--breaker*` flags).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    pub mode: BreakerMode,
    /// Trip when more than this many deletions of one owner fall in the window.
    pub max_deletions: u32,
    /// Trip when more than this fraction of the owner's desiredReady is deleted in the
    /// window; 0 turns the rule off.
    pub max_fraction: f64,
    pub window: Duration,
    /// Lower-case kinds (`customresourcedefinition`) whose deletion by Fleet's agent trips at once.
    pub protected_kinds: Vec<String>,
    /// Namespace of the Leases recording open breakers (the webhook's own).
    pub namespace: String,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            mode: BreakerMode::Observe,
            max_deletions: 20,
            max_fraction: 0.5,
            window: Duration::from_secs(60),
            protected_kinds: DEFAULT_PROTECTED_KINDS
                .iter()
                .map(|k| k.to_ascii_lowercase())
                .collect(),
            namespace: "cattle-fleet-system".into(),
        }
    }
}

impl BreakerConfig {
    pub fn is_protected(&self, kind: &str) -> bool {
        self.protected_kinds
            .iter()
            .any(|k| k.eq_ignore_ascii_case(kind))
    }
}

/// Who deleted, as the breaker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// Fleet's agent (`--fleet-identity`).
    FleetAgent,
    /// A Kubernetes controller (`--controller-identity`): never denied, never counted
    /// (the namespace or owner deletion that caused it was reviewed itself).
    Controller,
    /// A member of a `--break-glass-group`: counted, never denied.
    BreakGlass,
    /// Anyone else.
    User,
}

/// One reviewed deletion of a resolved owner's object, as the breaker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub owner: OwnerRef,
    pub actor: Actor,
    /// Counts in the owner's window: a real deletion (not a dry run, not refused by the
    /// policy, not a controller's, not the agent uninstalling a deleted bundle).
    pub counts: bool,
    /// Trips at once: Fleet's agent deleting a protected kind (same conditions).
    pub protected: bool,
    /// `configmap default/name`, for the trip reason.
    pub object: String,
    pub desired_ready: Option<u64>,
}

/// The breaker's view of one review; `None` when the breaker has nothing to say (not a
/// DELETE of a Fleet-managed object of a resolved owner, or a repeat of an admitted one).
pub fn classify(
    review: &Review,
    owner: &Owner,
    verdict: &Verdict,
    decision: &DecisionConfig,
    config: &BreakerConfig,
) -> Option<Candidate> {
    let actor = match verdict.outcome {
        Outcome::FleetDeletion => Actor::FleetAgent,
        Outcome::ControllerDeletion => Actor::Controller,
        Outcome::Allowed | Outcome::Warned | Outcome::BreakGlass | Outcome::Denied => {
            if matches_identity(&decision.break_glass_groups, "", &review.groups) {
                Actor::BreakGlass
            } else {
                Actor::User
            }
        }
        _ => return None,
    };
    let object = review.object.as_ref()?;
    if object.terminating {
        // A repeat of an admitted deletion: it changes nothing, so it is neither
        // counted nor refused.
        return None;
    }
    let owned_by = OwnerRef::clone(owner.owned_by.as_deref()?);
    // The agent uninstalling a bundle whose BundleDeployment is being deleted (its
    // GitRepo or Bundle was deleted): meant, and refusing it would leave the
    // BundleDeployment stuck on its finalizer.
    let uninstall = actor == Actor::FleetAgent && owner.bundle_deleting;
    let real = !review.dry_run && verdict.outcome != Outcome::Denied && !uninstall;
    Some(Candidate {
        counts: real && actor != Actor::Controller,
        protected: real && actor == Actor::FleetAgent && config.is_protected(&object.kind),
        object: format!("{} {}", object.kind, object.display_name()),
        owner: owned_by,
        actor,
        desired_ready: owner.desired_ready,
    })
}

/// Why a breaker tripped.
#[derive(Debug, Clone, PartialEq)]
pub enum Trip {
    Deletions {
        count: u32,
        limit: u32,
        window: Duration,
    },
    Fraction {
        count: u32,
        desired_ready: u64,
        max_fraction: f64,
        window: Duration,
    },
    Protected {
        object: String,
    },
}

impl fmt::Display for Trip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trip::Deletions {
                count,
                limit,
                window,
            } => write!(
                f,
                "{count} deletions within {} (limit {limit})",
                seconds(*window)
            ),
            Trip::Fraction {
                count,
                desired_ready,
                max_fraction,
                window,
            } => write!(
                f,
                "{count} of {desired_ready} desired resources deleted within {} (limit {}%)",
                seconds(*window),
                (max_fraction * 100.0).round()
            ),
            Trip::Protected { object } => {
                write!(f, "Fleet's agent deleted {object} (protected kind)")
            }
        }
    }
}

fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}s", s as u64)
    } else {
        format!("{s:.1}s")
    }
}

/// Whether `count` deletions in the window (this one included) trip the breaker.
pub fn detect(config: &BreakerConfig, candidate: &Candidate, count: u32) -> Option<Trip> {
    if candidate.protected {
        return Some(Trip::Protected {
            object: candidate.object.clone(),
        });
    }
    if !candidate.counts {
        return None;
    }
    if count > config.max_deletions {
        return Some(Trip::Deletions {
            count,
            limit: config.max_deletions,
            window: config.window,
        });
    }
    match candidate.desired_ready {
        Some(desired)
            if desired > 0
                && config.max_fraction > 0.0
                && count >= FRACTION_MIN_DELETIONS
                && f64::from(count) > config.max_fraction * desired as f64 =>
        {
            Some(Trip::Fraction {
                count,
                desired_ready: desired,
                max_fraction: config.max_fraction,
                window: config.window,
            })
        }
        _ => None,
    }
}

/// Deletion times of one owner within the window.
#[derive(Debug, Clone, Default)]
pub struct Window {
    stamps: VecDeque<Duration>,
}

impl Window {
    /// Record a deletion at `now`; the number in `(now - window, now]`, this one included.
    pub fn record(&mut self, now: Duration, window: Duration) -> u32 {
        self.evict(now, window);
        if self.stamps.len() >= MAX_STAMPS_PER_OWNER {
            self.stamps.pop_front();
        }
        // Times from several threads may arrive slightly out of order: keep it sorted.
        let at = self.stamps.partition_point(|t| *t <= now);
        self.stamps.insert(at, now);
        self.count(now, window)
    }

    /// The number of deletions in `(now - window, now]` (the times are kept sorted:
    /// two binary searches).
    pub fn count(&self, now: Duration, window: Duration) -> u32 {
        let end = self.stamps.partition_point(|t| *t <= now);
        let start = self
            .stamps
            .partition_point(|t| t.saturating_add(window) <= now);
        u32::try_from(end.saturating_sub(start)).unwrap_or(u32::MAX)
    }

    /// The deletion times in `(now - window, now]`, oldest first.
    pub fn within(&self, now: Duration, window: Duration) -> Vec<Duration> {
        let end = self.stamps.partition_point(|t| *t <= now);
        let start = self
            .stamps
            .partition_point(|t| t.saturating_add(window) <= now);
        self.stamps.range(start..end.max(start)).copied().collect()
    }

    fn evict(&mut self, now: Duration, window: Duration) {
        while self
            .stamps
            .front()
            .is_some_and(|t| t.saturating_add(window) <= now)
        {
            self.stamps.pop_front();
        }
    }

    fn stale(&self, now: Duration, window: Duration) -> bool {
        self.stamps
            .back()
            .is_none_or(|t| now.saturating_sub(*t) >= window)
    }
}

/// An open breaker: what tripped it, when, and how to reset it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenBreaker {
    pub owner: OwnerRef,
    /// What tripped it (`21 deletions within 60s (limit 20)`).
    pub reason: String,
    /// RFC 3339, as recorded in the Lease.
    pub tripped_at: String,
    /// The Lease recording it exists (seen by the watch or created by this replica);
    /// `false` while this replica's creation is pending.
    pub recorded: bool,
    /// This replica's creation of its Lease has failed and not yet gone through (no
    /// rights, the API failing): the reset command cannot work until it does, and the
    /// refusal says so.
    pub record_failing: bool,
}

/// Label on every breaker Lease (the watch selects by it).
pub const LEASE_LABEL: &str = "delete-guard.fleet.cattle.io/breaker";
pub const ANNOTATION_OWNER_KIND: &str = "delete-guard.fleet.cattle.io/owner-kind";
pub const ANNOTATION_OWNER_NAMESPACE: &str = "delete-guard.fleet.cattle.io/owner-namespace";
pub const ANNOTATION_OWNER_NAME: &str = "delete-guard.fleet.cattle.io/owner-name";
pub const ANNOTATION_REASON: &str = "delete-guard.fleet.cattle.io/reason";
pub const ANNOTATION_TRIPPED_AT: &str = "delete-guard.fleet.cattle.io/tripped-at";
pub const ANNOTATION_TRIPPED_BY: &str = "delete-guard.fleet.cattle.io/tripped-by";
pub const ANNOTATION_LAST_DELETION: &str = "delete-guard.fleet.cattle.io/last-deletion";

/// The Lease recording `owner`'s open breaker: `breaker-<kind>.<namespace>.<name>`
/// (namespaces hold no dots, so distinct owners never share a name), cut to 253
/// characters with a hash suffix when longer.
pub fn lease_name(owner: &OwnerRef) -> String {
    let kind = owner.kind.as_str().to_ascii_lowercase();
    let full = if owner.namespace.is_empty() {
        format!("breaker-{kind}.{}", owner.name)
    } else {
        format!("breaker-{kind}.{}.{}", owner.namespace, owner.name)
    };
    const MAX: usize = 253;
    if full.len() <= MAX {
        return full;
    }
    let hash = &object_set_hash(&full)[..10];
    let mut cut: String = full.chars().take(MAX - hash.len() - 1).collect();
    while cut.ends_with(['.', '-']) {
        cut.pop();
    }
    format!("{cut}-{hash}")
}

/// The command that closes `owner`'s breaker.
pub fn reset_command(namespace: &str, owner: &OwnerRef) -> String {
    format!("kubectl -n {namespace} delete lease {}", lease_name(owner))
}

/// The owner a breaker Lease names in its annotations.
pub fn owner_of_lease(
    annotations: &std::collections::BTreeMap<String, String>,
) -> Option<OwnerRef> {
    let kind = match annotations.get(ANNOTATION_OWNER_KIND)?.as_str() {
        "GitRepo" => OwnerKind::GitRepo,
        "HelmOp" => OwnerKind::HelmOp,
        "Bundle" => OwnerKind::Bundle,
        _ => return None,
    };
    let name = annotations
        .get(ANNOTATION_OWNER_NAME)
        .filter(|n| !n.is_empty())?;
    let namespace = annotations
        .get(ANNOTATION_OWNER_NAMESPACE)
        .cloned()
        .unwrap_or_default();
    Some(OwnerRef::new(kind, namespace, name.clone()))
}

/// The outcome of [`BreakerBook::judge`].
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    /// This review tripped the owner's breaker (it was closed): record it.
    pub tripped: Option<(OpenBreaker, Trip)>,
}

/// The first half of a judgement ([`BreakerBook::begin`]).
#[derive(Debug)]
pub enum Step {
    Done(Judgement),
    /// A counted deletion of an owner whose breaker is closed, not tripping it on this
    /// replica's count: [`BreakerBook::conclude`] adds the other replicas'.
    Share(Pending),
}

/// A counted deletion awaiting the other replicas' counts.
#[derive(Debug)]
pub struct Pending {
    candidate: Candidate,
    verdict: Verdict,
    /// Deletions of the owner in this replica's window, this one included.
    local: u32,
}

impl Pending {
    pub fn owner(&self) -> &OwnerRef {
        &self.candidate.owner
    }
}

/// Windows and open breakers of this replica. Pure: time comes in as an argument.
#[derive(Debug, Default)]
pub struct BreakerBook {
    windows: HashMap<OwnerRef, Window>,
    open: HashMap<OwnerRef, OpenBreaker>,
    /// Filled during a re-list of the Leases, swapped in when it is complete.
    relisting: Option<HashMap<OwnerRef, OpenBreaker>>,
}

impl BreakerBook {
    /// The breaker applied to `verdict` (from [`crate::decide::decide`]) for a review at
    /// `now`, on this replica's counts alone ([`BreakerBook::begin`], then
    /// [`BreakerBook::conclude`] with no other replica's deletions); `tripped_at` gives the
    /// wall-clock time written into a new trip (called only then, so reviews that trip
    /// nothing never format a time).
    #[allow(clippy::too_many_arguments)]
    pub fn judge(
        &mut self,
        config: &BreakerConfig,
        decision: &DecisionConfig,
        review: &Review,
        owner: &Owner,
        verdict: Verdict,
        now: Duration,
        tripped_at: &dyn Fn() -> String,
    ) -> Judgement {
        match self.begin(config, decision, review, owner, verdict, now, tripped_at) {
            Step::Done(judgement) => judgement,
            Step::Share(pending) => self.conclude(config, pending, 0, tripped_at),
        }
    }

    /// The first half of a judgement: the deletion is counted in this replica's window.
    /// Done when nothing more can change the answer (the breaker is off, the review is
    /// not a counted deletion, the owner's breaker is open, this replica's count alone
    /// trips it); else the deletion awaits the other replicas' counts
    /// ([`BreakerBook::conclude`]).
    #[allow(clippy::too_many_arguments)]
    pub fn begin(
        &mut self,
        config: &BreakerConfig,
        decision: &DecisionConfig,
        review: &Review,
        owner: &Owner,
        verdict: Verdict,
        now: Duration,
        tripped_at: &dyn Fn() -> String,
    ) -> Step {
        let done = |verdict| {
            Step::Done(Judgement {
                verdict,
                tripped: None,
            })
        };
        if config.mode == BreakerMode::Off {
            return done(verdict);
        }
        // A dry run or a refused deletion neither counts nor trips ([`classify`]); with
        // no breaker open its verdict stands, without the candidate's allocations (seven
        // eighths of what the breaker cost such a review: BENCHMARKS.md).
        if self.open.is_empty() && (review.dry_run || verdict.outcome == Outcome::Denied) {
            return done(verdict);
        }
        let Some(candidate) = classify(review, owner, &verdict, decision, config) else {
            return done(verdict);
        };
        let was_open = self.open.contains_key(&candidate.owner);
        let mut local = 0;
        if candidate.counts {
            local = self
                .windows
                .entry(candidate.owner.clone())
                .or_default()
                .record(now, config.window);
            self.prune(now, config.window);
        }
        if !was_open && (candidate.counts || candidate.protected) {
            if let Some(trip) = detect(config, &candidate, local) {
                return Step::Done(self.trip(config, candidate, verdict, trip, tripped_at));
            }
            if candidate.counts {
                return Step::Share(Pending {
                    candidate,
                    verdict,
                    local,
                });
            }
        }
        Step::Done(self.apply(config, &candidate, verdict, None))
    }

    /// The second half: `others` deletions of the owner within the window were counted
    /// by the other replicas (0 when unknown), added to this replica's count.
    pub fn conclude(
        &mut self,
        config: &BreakerConfig,
        pending: Pending,
        others: u32,
        tripped_at: &dyn Fn() -> String,
    ) -> Judgement {
        let Pending {
            candidate,
            verdict,
            local,
        } = pending;
        // Another review may have tripped it meanwhile.
        if !self.open.contains_key(&candidate.owner) {
            if let Some(trip) = detect(config, &candidate, local.saturating_add(others)) {
                return self.trip(config, candidate, verdict, trip, tripped_at);
            }
        }
        self.apply(config, &candidate, verdict, None)
    }

    fn trip(
        &mut self,
        config: &BreakerConfig,
        candidate: Candidate,
        verdict: Verdict,
        trip: Trip,
        tripped_at: &dyn Fn() -> String,
    ) -> Judgement {
        let open = OpenBreaker {
            owner: candidate.owner.clone(),
            reason: trip.to_string(),
            tripped_at: tripped_at(),
            recorded: false,
            record_failing: false,
        };
        self.open.insert(candidate.owner.clone(), open.clone());
        self.apply(config, &candidate, verdict, Some((open, trip)))
    }

    fn apply(
        &self,
        config: &BreakerConfig,
        candidate: &Candidate,
        verdict: Verdict,
        tripped: Option<(OpenBreaker, Trip)>,
    ) -> Judgement {
        let verdict = match self.open.get(&candidate.owner) {
            Some(open) => apply_open(verdict, config, candidate, open),
            None => verdict,
        };
        Judgement { verdict, tripped }
    }

    /// Every owner's deletion times within the window ending at `now`, the most recent
    /// `max_deletions + 1` at most (one more never changes a verdict: the count rule has
    /// tripped), owners with the latest deletion first, at most `max_owners`: what this
    /// replica publishes for the others ([`counts`]).
    pub fn recent(
        &self,
        config: &BreakerConfig,
        now: Duration,
        max_owners: usize,
    ) -> Vec<(OwnerRef, Vec<Duration>)> {
        let keep = usize::try_from(config.max_deletions)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let mut out: Vec<(OwnerRef, Vec<Duration>)> = self
            .windows
            .iter()
            .filter_map(|(owner, w)| {
                let stamps = w.within(now, config.window);
                let skip = stamps.len().saturating_sub(keep);
                (!stamps.is_empty()).then(|| (owner.clone(), stamps[skip..].to_vec()))
            })
            .collect();
        out.sort_by(|a, b| b.1.last().cmp(&a.1.last()).then_with(|| a.0.cmp(&b.0)));
        out.truncate(max_owners);
        out
    }

    /// The open breaker of `owner`, if any.
    pub fn open_breaker(&self, owner: &OwnerRef) -> Option<&OpenBreaker> {
        self.open.get(owner)
    }

    /// Number of open breakers known.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// A breaker Lease was seen (watch) or created: the breaker is open and recorded.
    pub fn recorded(&mut self, open: OpenBreaker) {
        let open = OpenBreaker {
            recorded: true,
            record_failing: false,
            ..open
        };
        if let Some(fresh) = self.relisting.as_mut() {
            fresh.insert(open.owner.clone(), open.clone());
        }
        match self.open.get_mut(&open.owner) {
            // Keep the first reason seen: several replicas may trip one owner at once.
            Some(known) if known.recorded => {}
            _ => {
                self.open.insert(open.owner.clone(), open);
            }
        }
    }

    /// This replica's Lease creation for `owner` went through (or found one there).
    pub fn confirm(&mut self, owner: &OwnerRef) {
        if let Some(open) = self.open.get_mut(owner) {
            open.recorded = true;
            open.record_failing = false;
        }
    }

    /// This replica's Lease creation for `owner` failed; it is retried.
    pub fn record_failed(&mut self, owner: &OwnerRef) {
        if let Some(open) = self.open.get_mut(owner).filter(|o| !o.recorded) {
            open.record_failing = true;
        }
    }

    /// The Lease of `owner` was deleted: the breaker is reset, its window starts afresh.
    pub fn reset(&mut self, owner: &OwnerRef) {
        self.open.remove(owner);
        self.windows.remove(owner);
        if let Some(fresh) = self.relisting.as_mut() {
            fresh.remove(owner);
        }
    }

    /// A re-list of the Leases starts.
    pub fn relist_start(&mut self) {
        self.relisting = Some(HashMap::new());
    }

    /// The re-list is complete: recorded breakers without a Lease were reset while the
    /// watch was down; breakers whose recording is pending stay open.
    pub fn relist_done(&mut self) {
        let Some(fresh) = self.relisting.take() else {
            return;
        };
        let gone: Vec<OwnerRef> = self
            .open
            .iter()
            .filter(|(k, v)| v.recorded && !fresh.contains_key(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for owner in gone {
            self.open.remove(&owner);
            self.windows.remove(&owner);
        }
        for (owner, open) in fresh {
            self.open.entry(owner).or_insert(open);
        }
    }

    /// The number of deletions of `owner` in the window ending at `now`.
    pub fn count(&self, owner: &OwnerRef, now: Duration, window: Duration) -> u32 {
        self.windows.get(owner).map_or(0, |w| w.count(now, window))
    }

    fn prune(&mut self, now: Duration, window: Duration) {
        if self.windows.len() > PRUNE_ABOVE_OWNERS {
            self.windows.retain(|_, w| !w.stale(now, window));
        }
    }
}

/// The verdict while `open` is open: in `enforce`, deletions by users and by Fleet's
/// agent are refused; controllers and break-glass members pass.
fn apply_open(
    mut verdict: Verdict,
    config: &BreakerConfig,
    candidate: &Candidate,
    open: &OpenBreaker,
) -> Verdict {
    verdict
        .audit_annotations
        .push(("breaker", format!("open: {}", open.reason)));
    if config.mode != BreakerMode::Enforce {
        return verdict;
    }
    match candidate.actor {
        Actor::Controller => verdict,
        Actor::BreakGlass => {
            let note = truncate(
                format!(
                    "Mass-deletion breaker open for {}; allowed by break-glass group.",
                    open.owner
                ),
                MAX_WARNING_CHARS,
            );
            verdict.warnings.insert(0, note);
            verdict.warnings.truncate(MAX_WARNINGS);
            verdict
        }
        Actor::FleetAgent | Actor::User => {
            let message = denial_message(config, candidate, open);
            verdict.outcome = Outcome::BreakerOpen;
            verdict.allowed = false;
            verdict.count = false;
            verdict.warnings.clear();
            for (k, v) in verdict.audit_annotations.iter_mut() {
                match *k {
                    "decision" => *v = Outcome::BreakerOpen.as_str().to_string(),
                    "counted" => *v = "false".to_string(),
                    "reason" => *v = format!("mass-deletion breaker open: {}", open.reason),
                    _ => {}
                }
            }
            verdict.denial = Some(message);
            verdict
        }
    }
}

fn denial_message(config: &BreakerConfig, candidate: &Candidate, open: &OpenBreaker) -> String {
    let who = if candidate.actor == Actor::FleetAgent {
        "by Fleet's agent "
    } else {
        ""
    };
    // Until its Lease is written the command answers NotFound: say what resets a
    // breaker whose Lease cannot be written.
    let failing = if open.record_failing {
        " (its Lease could not be written yet, so this finds none: this replica's log says \
         why, and restarting the replica resets its breaker)"
    } else {
        ""
    };
    format!(
        "fleet-delete-guard: mass-deletion breaker open for Fleet {} (tripped at {}: {}); \
         deletion of {} {who}refused. Check Fleet's agent and the owner, then reset: {}{failing}",
        open.owner,
        open.tripped_at,
        open.reason,
        candidate.object,
        reset_command(&config.namespace, &open.owner)
    )
}

fn truncate(s: String, max: usize) -> String {
    crate::decide::truncate_chars(s, max)
}

#[cfg(test)]
mod tests;
