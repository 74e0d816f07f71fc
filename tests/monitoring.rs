//! Observability an SRE can install (deploy/monitoring/, README "Monitoring"):
//!
//! - `owner_deletions_total` as the admission path counts it (no server, no Prometheus);
//! - the PrometheusRule's groups through the real `promtool check rules` and
//!   `promtool test rules` (deploy/monitoring/tests/*.yaml: every alert firing and not);
//! - a real Prometheus scraping the real binary while deletions are reviewed and counted
//!   against the API double: every dashboard panel query and every alert expression
//!   evaluated through `/api/v1/query`, each returning series with the expected labels.
//!
//! Prometheus and promtool come from Debian's `prometheus` package (`.ci/run` installs
//! it). Without them these tests fail, saying so: they never pass silently.

#[path = "support/kubectl.rs"]
mod kubectl;
mod support;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use fleet_delete_guard::{
    admission::{Admission, NoCounting, ObjectOnly, OwnerResolver},
    decide::{ObjectFacts, Owner},
    metrics::Metrics,
    policy::{DecisionConfig, Policy},
};
use serde_json::{json, Value};

// --- owner_deletions_total from the admission path ---------------------------------

/// Resolves every Fleet object to GitRepo fleet-local/lots, bundle lots-config2, like
/// the owner index does for the fixture.
struct Lots {
    gitrepo: bool,
}

impl OwnerResolver for Lots {
    fn resolve(&self, object: &ObjectFacts) -> Owner {
        Owner {
            gitrepo: self.gitrepo.then(|| "fleet-local/lots".to_string()),
            bundle: Some("lots-config2".to_string()),
            ..Owner::from_object(object)
        }
    }
}

fn review_body(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut review = support::fixture_json("admissionreview-delete-configmap.json");
    edit(&mut review);
    review.to_string().into_bytes()
}

fn owner_series(metrics: &Metrics) -> Vec<String> {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("fleet_delete_guard_owner_deletions_total{"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_admission_path_counts_fleet_deletions_by_owner_and_decision() {
    let metrics = Metrics::new();
    let warn = Admission::new(
        DecisionConfig::default(),
        Arc::new(Lots { gitrepo: true }),
        Arc::new(NoCounting),
    )
    .with_metrics(metrics.clone());
    let now = Instant::now();
    warn.review(&review_body(|_| {}), now).expect("review");
    // A dry run deletes nothing; a repeat review of a terminating object was counted
    // when its first DELETE was admitted; objects that are not Fleet's are the fast path.
    warn.review(&review_body(|r| r["request"]["dryRun"] = json!(true)), now)
        .expect("review");
    warn.review(
        &review_body(|r| {
            r["request"]["oldObject"]["metadata"]["deletionTimestamp"] =
                json!("2026-08-20T09:05:00Z")
        }),
        now,
    )
    .expect("review");
    warn.review(
        &review_body(|r| {
            r["request"]["oldObject"]["metadata"]["labels"] = json!({});
            r["request"]["oldObject"]["metadata"]["annotations"] = json!({});
        }),
        now,
    )
    .expect("review");
    warn.review(
        &review_body(|r| r["request"]["operation"] = json!("UPDATE")),
        now,
    )
    .expect("review");

    // Denied deletions count (someone tried); a Bundle without GitRepo names the
    // Bundle; no owner in the index at all is "unknown".
    let deny = Admission::new(
        DecisionConfig {
            policy: Policy::Deny,
            ..DecisionConfig::default()
        },
        Arc::new(Lots { gitrepo: false }),
        Arc::new(NoCounting),
    )
    .with_metrics(metrics.clone());
    deny.review(&review_body(|_| {}), now).expect("review");
    let unknown = Admission::new(
        DecisionConfig::default(),
        Arc::new(ObjectOnly),
        Arc::new(NoCounting),
    )
    .with_metrics(metrics.clone());
    unknown.review(&review_body(|_| {}), now).expect("review");
    unknown.review(&review_body(|_| {}), now).expect("review");

    let expected = [
        r#"fleet_delete_guard_owner_deletions_total{owner_kind="GitRepo",owner_namespace="fleet-local",owner_name="lots",decision="warned"} 1"#,
        r#"fleet_delete_guard_owner_deletions_total{owner_kind="Bundle",owner_namespace="",owner_name="lots-config2",decision="denied"} 1"#,
        r#"fleet_delete_guard_owner_deletions_total{owner_kind="unknown",owner_namespace="",owner_name="",decision="warned"} 2"#,
    ];
    assert_eq!(
        sorted(owner_series(&metrics)),
        sorted(expected.iter().map(|s| s.to_string()).collect())
    );
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}
