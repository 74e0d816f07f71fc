//! Prometheus metrics, all prefixed `fleet_delete_guard_`.
//!
//! One [`Metrics`] value is shared (cheaply cloned) by the server and the workers.

use std::{
    collections::BTreeSet,
    sync::{atomic::AtomicU64, Arc, Mutex},
};

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

use crate::{fleet::OwnerRef, health::Readiness};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    pub operation: &'static str,
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// The Fleet version the status writes follow, and where it was learnt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FleetInfoLabels {
    pub version: String,
    /// The release whose rules apply, down to the patch (`v0.14.3`).
    pub rules: String,
    pub source: &'static str,
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

/// An owner of this cluster's BundleDeployments (bounded: only those owners).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct OwnerLabels {
    pub owner_kind: &'static str,
    pub owner_namespace: String,
    pub owner_name: String,
}

/// The owner of a deleted Fleet-managed object, and the webhook's decision. Owners come
/// from the owner index only (never from the review), so the series are bounded by the
/// GitRepos, HelmOps and Bundles deployed to this cluster; every owner the index does
/// not know shares `owner_kind="unknown"` with empty namespace and name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OwnerDeletionLabels {
    pub owner_kind: &'static str,
    pub owner_namespace: String,
    pub owner_name: String,
    pub decision: String,
}

// --- webhook configuration tamper evidence (src/webhook_config/) -------------------
/// Why the webhook configuration is not intact (`none` while it is).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TamperLabels {
    pub reason: &'static str,
}
// --- end webhook configuration tamper evidence ---------------------------------------

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    pub check: &'static str,
}

/// `owner_kind` of deletions whose owner the index does not know.
pub const UNKNOWN_OWNER_KIND: &str = "unknown";

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
    pub requeued: Counter,
    /// Deletions whose owner is not in the cache (no BundleDeployment matches).
    pub unresolved: Counter,
    /// Resync passes by result.
    pub resyncs: Family<ResultLabels, Counter>,
    /// Deployed resources found gone by a resync (deleted while no replica reviewed).
    pub resync_missing: Counter,
    pub fleet_info: Family<FleetInfoLabels, Gauge>,
    /// `ResourceDeleted` Events by result (`published`, `failed`, `dropped` when the
    /// bounded event queue is full).
    pub events: Family<ResultLabels, Counter>,
    /// Discrepancies between Fleet's status and the cluster per owner, as of the last
    /// resync (src/verify).
    pub owner_discrepancies: Family<OwnerLabels, Gauge>,
    /// When that comparison last completed (Unix seconds).
    pub verify_last_completed: Gauge<f64, AtomicU64>,
    /// The owners `owner_discrepancies` has a series for.
    verify_owners: Arc<Mutex<BTreeSet<OwnerLabels>>>,
    /// Deletions of Fleet-managed objects by owner and decision (see
    /// [`Metrics::count_owner_deletion`]).
    pub owner_deletions: Family<OwnerDeletionLabels, Counter>,
    /// 1 when `/readyz` answers 200 (every check passes), else 0; set at each scrape.
    pub ready: Gauge,
    /// Each readiness check (`tls`, `counting`, …): 1 passing, 0 failing.
    pub readiness_checks: Family<CheckLabels, Gauge>,
    /// Mass-deletion breakers tripped by this replica, by owner kind.
    pub breaker_trips: Family<OwnerKindLabels, Counter>,
    /// Mass-deletion breakers open (known to this replica).
    pub breakers_open: Gauge,
    // --- breaker shared state (issue 25): degraded gauge, counts Lease writes ---
    /// 1 while the breaker has fallen back to this replica's own state (Leases cannot be
    /// listed, watched, written or created), else 0.
    pub breaker_degraded: Gauge,
    /// Writes of the breaker's shared window counts (`ok`, `failed`).
    pub breaker_count_writes: Family<ResultLabels, Counter>,
    // --- end breaker shared state ---
    // --- webhook configuration tamper evidence (src/webhook_config/) ---
    /// 1 with `reason="none"` while the webhook configuration is as installed; else one
    /// series at 0 per reason (set by src/webhook_config/watch.rs).
    pub webhook_configuration_intact: Family<TamperLabels, Gauge>,
    /// Repairs of the webhook configuration (`--restore-webhook-configuration`) by
    /// result (`restored`, `conflict` when another writer got there first, `failed`).
    pub webhook_configuration_restores: Family<ResultLabels, Counter>,
    // --- end webhook configuration tamper evidence ---
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
        let requeued = Counter::default();
        registry.register(
            "requeued",
            "Deletions whose status write gave up (API failing) and went back to the queue",
            requeued.clone(),
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
        let fleet_info = Family::<FleetInfoLabels, Gauge>::default();
        registry.register(
            "fleet_info",
            "The Fleet version whose status rules are written (1), with its source",
            fleet_info.clone(),
        );
        let events = Family::<ResultLabels, Counter>::default();
        registry.register(
            "events",
            "ResourceDeleted Events on GitRepos by result (published, failed, dropped)",
            events.clone(),
        );
        let owner_discrepancies = Family::<OwnerLabels, Gauge>::default();
        registry.register(
            "owner_discrepancies",
            "Discrepancies between Fleet's reported status and the cluster per owner, as of the last resync",
            owner_discrepancies.clone(),
        );
        let verify_last_completed = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "verify_last_completed_timestamp_seconds",
            "When the last comparison of Fleet's status with the cluster completed (Unix time)",
            verify_last_completed.clone(),
        );
        let owner_deletions = Family::<OwnerDeletionLabels, Counter>::default();
        registry.register(
            "owner_deletions",
            "Deletions of Fleet-managed objects by owner (from the owner index) and decision",
            owner_deletions.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 when every readiness check passes (/readyz answers 200), else 0",
            ready.clone(),
        );
        let readiness_checks = Family::<CheckLabels, Gauge>::default();
        registry.register(
            "readiness_check",
            "Readiness checks: 1 passing, 0 failing",
            readiness_checks.clone(),
        );
        // Failure series exist at 0 from the start, so that `increase()` in an alert sees
        // the first failure (deploy/monitoring/prometheusrule.yaml).
        for object in ["bundledeployment", "gitrepo"] {
            patches
                .get_or_create(&PatchLabels {
                    object,
                    result: "failed",
                })
                .inc_by(0);
        }
        tls_reloads
            .get_or_create(&ResultLabels { result: "error" })
            .inc_by(0);
        for result in ["failed", "dropped"] {
            events.get_or_create(&ResultLabels { result }).inc_by(0);
        }
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
        // --- breaker shared state (issue 25): degraded gauge, counts Lease writes ---
        let breaker_degraded = Gauge::default();
        registry.register(
            "breaker_degraded",
            "1 while the mass-deletion breaker judges on this replica's reviews only (its Leases fail)",
            breaker_degraded.clone(),
        );
        let breaker_count_writes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "breaker_count_writes",
            "Writes of the mass-deletion breaker's shared window counts, by result",
            breaker_count_writes.clone(),
        );
        // Trips from 0, so `increase()` sees the first.
        for owner_kind in ["GitRepo", "HelmOp", "Bundle"] {
            breaker_trips
                .get_or_create(&OwnerKindLabels { owner_kind })
                .inc_by(0);
        }
        for result in ["ok", "failed"] {
            breaker_count_writes
                .get_or_create(&ResultLabels { result })
                .inc_by(0);
        }
        // --- end breaker shared state ---
        // --- webhook configuration tamper evidence (src/webhook_config/) ---
        let webhook_configuration_intact = Family::<TamperLabels, Gauge>::default();
        registry.register(
            "webhook_configuration_intact",
            "1 (reason=none) while the webhook's ValidatingWebhookConfiguration is as installed; 0 per reason it is not",
            webhook_configuration_intact.clone(),
        );
        let webhook_configuration_restores = Family::<ResultLabels, Counter>::default();
        registry.register(
            "webhook_configuration_restores",
            "Repairs of the webhook's ValidatingWebhookConfiguration, by result (restored, conflict, failed)",
            webhook_configuration_restores.clone(),
        );
        // --- end webhook configuration tamper evidence ---
        Metrics {
            registry: Arc::new(registry),
            webhook_configuration_intact,
            webhook_configuration_restores,
            breaker_trips,
            breakers_open,
            breaker_degraded,
            breaker_count_writes,
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
            requeued,
            unresolved,
            resyncs,
            resync_missing,
            fleet_info,
            events,
            owner_discrepancies,
            verify_last_completed,
            verify_owners: Arc::default(),
            owner_deletions,
            ready,
            readiness_checks,
        }
    }

    /// Sets `owner_discrepancies` to these owners' numbers and removes the series of
    /// owners no longer present.
    pub fn set_owner_discrepancies<'a>(
        &self,
        owners: impl IntoIterator<Item = (&'a crate::fleet::OwnerRef, usize)>,
    ) {
        let mut now = BTreeSet::new();
        for (owner, n) in owners {
            let labels = OwnerLabels {
                owner_kind: owner.kind.as_str(),
                owner_namespace: owner.namespace.clone(),
                owner_name: owner.name.clone(),
            };
            self.owner_discrepancies
                .get_or_create(&labels)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
            now.insert(labels);
        }
        let mut known = self.verify_owners.lock().unwrap_or_else(|e| e.into_inner());
        for gone in known.difference(&now) {
            self.owner_discrepancies.remove(gone);
        }
        *known = now;
    }

    /// `verify_last_completed_timestamp_seconds` = now.
    pub fn verify_completed_now(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        self.verify_last_completed.set(now);
    }

    /// Copy the readiness checks into `ready` and `readiness_check` (before a scrape).
    pub fn observe_readiness(&self, readiness: &Readiness) {
        let states = readiness.states();
        for (check, ok) in &states {
            self.readiness_checks
                .get_or_create(&CheckLabels { check })
                .set(i64::from(*ok));
        }
        let ready = !states.is_empty() && states.iter().all(|(_, ok)| *ok);
        self.ready.set(i64::from(ready));
    }

    /// Count one deletion of a Fleet-managed object of `owner` (`None`: not in the
    /// owner index) with the webhook's `decision` (`warned`, `denied`, …).
    pub fn count_owner_deletion(&self, owner: Option<&OwnerRef>, decision: &str) {
        let labels = match owner {
            Some(o) => OwnerDeletionLabels {
                owner_kind: o.kind.as_str(),
                owner_namespace: o.namespace.clone(),
                owner_name: o.name.clone(),
                decision: decision.to_string(),
            },
            None => OwnerDeletionLabels {
                owner_kind: UNKNOWN_OWNER_KIND,
                owner_namespace: String::new(),
                owner_name: String::new(),
                decision: decision.to_string(),
            },
        };
        self.owner_deletions.get_or_create(&labels).inc();
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

    #[test]
    fn owner_discrepancies_follow_the_owners_of_the_last_check() {
        use crate::fleet::{OwnerKind, OwnerRef};
        let m = Metrics::new();
        let lots = OwnerRef::new(OwnerKind::GitRepo, "fleet-local", "lots");
        let mcc = OwnerRef::new(OwnerKind::Bundle, "fleet-local", "mcc-x");
        m.set_owner_discrepancies([(&lots, 2), (&mcc, 0)]);
        m.verify_completed_now();
        let text = m.encode();
        assert!(
            text.contains(r#"fleet_delete_guard_owner_discrepancies{owner_kind="GitRepo",owner_namespace="fleet-local",owner_name="lots"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"owner_name="mcc-x"} 0"#), "{text}");
        assert!(
            !text.contains("fleet_delete_guard_verify_last_completed_timestamp_seconds 0\n"),
            "{text}"
        );
        m.set_owner_discrepancies([(&lots, 0)]);
        let text = m.encode();
        assert!(text.contains(r#"owner_name="lots"} 0"#), "{text}");
        assert!(
            !text.contains("mcc-x"),
            "a gone owner's series is removed: {text}"
        );
    }

    #[test]
    fn readiness_is_exported_per_check_and_as_a_whole() {
        let m = Metrics::new();
        let r = Readiness::default();
        m.observe_readiness(&r);
        assert!(
            m.encode().contains("fleet_delete_guard_ready 0\n"),
            "no checks: not ready"
        );
        r.set("tls", true, "loaded");
        r.set("counting", false, "caches not synced");
        m.observe_readiness(&r);
        let text = m.encode();
        assert!(text.contains("fleet_delete_guard_ready 0\n"), "{text}");
        assert!(
            text.contains(r#"fleet_delete_guard_readiness_check{check="tls"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"fleet_delete_guard_readiness_check{check="counting"} 0"#),
            "{text}"
        );
        r.set("counting", true, "synced");
        m.observe_readiness(&r);
        let text = m.encode();
        assert!(text.contains("fleet_delete_guard_ready 1\n"), "{text}");
        assert!(
            text.contains(r#"fleet_delete_guard_readiness_check{check="counting"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn owner_deletions_are_labelled_by_owner_and_unknown_owners_share_one_series() {
        use crate::fleet::OwnerKind;
        let m = Metrics::new();
        let lots = OwnerRef::new(OwnerKind::GitRepo, "fleet-local", "lots");
        m.count_owner_deletion(Some(&lots), "warned");
        m.count_owner_deletion(Some(&lots), "warned");
        m.count_owner_deletion(Some(&lots), "denied");
        let op = OwnerRef::new(OwnerKind::HelmOp, "fleet-default", "redis");
        m.count_owner_deletion(Some(&op), "allowed");
        let bundle = OwnerRef::new(OwnerKind::Bundle, "", "mcc-x");
        m.count_owner_deletion(Some(&bundle), "controller");
        m.count_owner_deletion(None, "warned");
        m.count_owner_deletion(None, "warned");
        let text = m.encode();
        for line in [
            r#"fleet_delete_guard_owner_deletions_total{owner_kind="GitRepo",owner_namespace="fleet-local",owner_name="lots",decision="warned"} 2"#,
            r#"fleet_delete_guard_owner_deletions_total{owner_kind="GitRepo",owner_namespace="fleet-local",owner_name="lots",decision="denied"} 1"#,
            r#"fleet_delete_guard_owner_deletions_total{owner_kind="HelmOp",owner_namespace="fleet-default",owner_name="redis",decision="allowed"} 1"#,
            r#"fleet_delete_guard_owner_deletions_total{owner_kind="Bundle",owner_namespace="",owner_name="mcc-x",decision="controller"} 1"#,
            r#"fleet_delete_guard_owner_deletions_total{owner_kind="unknown",owner_namespace="",owner_name="",decision="warned"} 2"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert_eq!(text.matches("owner_deletions_total{").count(), 5, "{text}");
    }

    #[test]
    fn failure_series_the_alerts_use_exist_at_zero_from_the_start() {
        let text = Metrics::new().encode();
        for line in [
            r#"fleet_delete_guard_status_patches_total{object="bundledeployment",result="failed"} 0"#,
            r#"fleet_delete_guard_status_patches_total{object="gitrepo",result="failed"} 0"#,
            r#"fleet_delete_guard_tls_reloads_total{result="error"} 0"#,
            r#"fleet_delete_guard_events_total{result="dropped"} 0"#,
            r#"fleet_delete_guard_events_total{result="failed"} 0"#,
            "fleet_delete_guard_queue_overflow_total 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
