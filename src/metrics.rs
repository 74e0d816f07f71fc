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
        Metrics {
            registry: Arc::new(registry),
            reviews,
            review_duration,
            errors,
            tls_reloads,
            in_flight,
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
