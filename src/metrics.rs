//! Prometheus metrics, all prefixed `fleet_delete_guard_`.
//!
//! One [`Metrics`] value is shared (cheaply cloned) by the server and the workers.

use std::sync::Arc;

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::{Registry, Unit},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    pub operation: &'static str,
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// `object` is `bundledeployment` or `gitrepo`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PatchLabels {
    pub object: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OwnerKindLabels {
    pub owner_kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub object: &'static str,
}

/// Every metric the process exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Reviews answered, by operation and decision.
    pub reviews: Family<ReviewLabels, Counter>,
    /// Time from body received to answer serialised.
    pub review_duration: Histogram,
    /// Requests that could not be answered as reviews, by kind (400, 413, timeouts, …).
    pub errors: Family<KindLabels, Counter>,
    /// Certificate reloads by result (`success`, `error`).
    pub tls_reloads: Family<ResultLabels, Counter>,
    /// Reviews being processed right now.
    pub in_flight: Gauge,
    /// Webhook requests whose headers were read and that are not answered yet (the
    /// body may still be arriving).
    pub requests_in_progress: Gauge,
    /// Review received → status patch accepted, per counted deletion.
    pub status_lag: Histogram,
    /// Status patches by object and result (`patched`, `unchanged`, `failed`).
    pub patches: Family<PatchLabels, Counter>,
    /// 409 Conflicts met while patching (each is re-read and re-applied).
    pub conflicts: Family<ObjectLabels, Counter>,
    /// Retries after 5xx, 429 or timeouts.
    pub retries: Family<ObjectLabels, Counter>,
    /// Deletions handled in a patch together with others of the same BundleDeployment.
    pub coalesced: Counter,
    /// Marks reverted because the object was not deleted after all.
    pub reverts: Counter,
    /// Marks re-applied after another writer dropped them while the object was still gone.
    pub reapplied: Counter,
    /// Marks removed because the object came back.
    pub unmarked: Counter,
    /// Deletions waiting to be counted.
    pub queue_depth: Gauge,
    /// Deletions refused by the full queue (counted later by Fleet and by the resync).
    pub queue_overflow: Counter,
    /// Deletions whose owner is not in the cache (no BundleDeployment matches).
    pub unresolved: Counter,
    /// Resync passes by result.
    pub resyncs: Family<ResultLabels, Counter>,
    /// Deployed resources found gone by a resync (deleted while no replica reviewed).
    pub resync_missing: Counter,
    /// `ResourceDeleted` Events by result (`published`, `failed`, `dropped` when the
    /// bounded event queue is full).
    pub events: Family<ResultLabels, Counter>,
    /// Mass-deletion breakers tripped by this replica, by owner kind.
    pub breaker_trips: Family<OwnerKindLabels, Counter>,
    /// Mass-deletion breakers open (known to this replica).
    pub breakers_open: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fleet_delete_guard");
        let reviews = Family::<ReviewLabels, Counter>::default();
        registry.register("reviews", "Admission reviews answered", reviews.clone());
        // 25 µs … ~1.6 s: the interesting range is well below a millisecond.
        let review_duration = Histogram::new(exponential_buckets(0.000_025, 2.0, 17));
        registry.register_with_unit(
            "review_duration",
            "Time to answer one admission review",
            Unit::Seconds,
            review_duration.clone(),
        );
        let errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "errors",
            "Requests that were not answered as reviews, by kind",
            errors.clone(),
        );
        let tls_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "tls_reloads",
            "Serving certificate reloads, by result",
            tls_reloads.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "reviews_in_flight",
            "Admission reviews being processed",
            in_flight.clone(),
        );
        let requests_in_progress = Gauge::default();
        registry.register(
            "requests_in_progress",
            "Webhook requests whose headers were read and that are not answered yet",
            requests_in_progress.clone(),
        );
        // 1 ms … ~65 s.
        let status_lag = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        registry.register_with_unit(
            "status_lag",
            "Time from review received to status patch accepted",
            Unit::Seconds,
            status_lag.clone(),
        );
        let patches = Family::<PatchLabels, Counter>::default();
        registry.register(
            "status_patches",
            "Status patches by object and result",
            patches.clone(),
        );
        let conflicts = Family::<ObjectLabels, Counter>::default();
        registry.register(
            "status_conflicts",
            "409 Conflicts met while patching status",
            conflicts.clone(),
        );
        let retries = Family::<ObjectLabels, Counter>::default();
        registry.register(
            "status_retries",
            "Status patch retries after 5xx, 429 or timeouts",
            retries.clone(),
        );
        let coalesced = Counter::default();
        registry.register(
            "coalesced_deletions",
            "Deletions counted in a shared patch",
            coalesced.clone(),
        );
        let reverts = Counter::default();
        registry.register(
            "reverts",
            "Marks reverted because the deletion did not happen",
            reverts.clone(),
        );
        let reapplied = Counter::default();
        registry.register(
            "reapplied_marks",
            "Marks re-applied after another writer dropped them",
            reapplied.clone(),
        );
        let unmarked = Counter::default();
        registry.register(
            "unmarked",
            "Marks removed because the object came back",
            unmarked.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Deletions waiting to be counted",
            queue_depth.clone(),
        );
        let queue_overflow = Counter::default();
        registry.register(
            "queue_overflow",
            "Deletions refused because the queue was full",
            queue_overflow.clone(),
        );
        let unresolved = Counter::default();
        registry.register(
            "unresolved_owner",
            "Deletions whose BundleDeployment is not in the cache",
            unresolved.clone(),
        );
        let resyncs = Family::<ResultLabels, Counter>::default();
        registry.register("resyncs", "Resync passes by result", resyncs.clone());
        let resync_missing = Counter::default();
        registry.register(
            "resync_missing",
            "Deployed resources a resync found gone",
            resync_missing.clone(),
        );
        let events = Family::<ResultLabels, Counter>::default();
        registry.register(
            "events",
            "ResourceDeleted Events on GitRepos by result (published, failed, dropped)",
            events.clone(),
        );
        let breaker_trips = Family::<OwnerKindLabels, Counter>::default();
        registry.register(
            "breaker_trips",
            "Mass-deletion breakers tripped by this replica, by owner kind",
            breaker_trips.clone(),
        );
        let breakers_open = Gauge::default();
        registry.register(
            "breakers_open",
            "Mass-deletion breakers open, as this replica knows them",
            breakers_open.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            breaker_trips,
            breakers_open,
            reviews,
            review_duration,
            errors,
            tls_reloads,
            in_flight,
            requests_in_progress,
            status_lag,
            patches,
            conflicts,
            retries,
            coalesced,
            reverts,
            reapplied,
            unmarked,
            queue_depth,
            queue_overflow,
            unresolved,
            resyncs,
            resync_missing,
            events,
        }
    }

    /// Count one request error of `kind`.
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&KindLabels { kind }).inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_prefixed_names() {
        let m = Metrics::new();
        m.reviews
            .get_or_create(&ReviewLabels {
                operation: "DELETE",
                decision: "warned",
            })
            .inc();
        m.error("not_json");
        m.review_duration.observe(0.0002);
        let text = m.encode();
        assert!(
            text.contains(
                r#"fleet_delete_guard_reviews_total{operation="DELETE",decision="warned"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"fleet_delete_guard_errors_total{kind="not_json"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("fleet_delete_guard_review_duration_seconds_count 1"),
            "{text}"
        );
    }
}
