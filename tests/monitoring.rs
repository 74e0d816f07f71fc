//! Observability an SRE can install (deploy/monitoring/, docs/src/monitoring.md), the
//! parts that need no external program:
//!
//! - `owner_deletions_total` as the admission path counts it (no server, no Prometheus);
//! - every alert of the PrometheusRule has a summary, a description and a runbook.
//!
//! The real `promtool` and Prometheus run in tests/monitoring_prometheus.rs, a target
//! of the `external-tools` feature (docs/src/testing.md).

#[path = "support/kubectl.rs"]
mod kubectl;
#[path = "support/prometheus_rule.rs"]
mod prometheus_rule;
mod support;

use std::{sync::Arc, time::Instant};

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
        use fleet_delete_guard::fleet::{OwnerKind, OwnerRef};
        let owned_by = if self.gitrepo {
            OwnerRef::new(OwnerKind::GitRepo, "fleet-local", "lots")
        } else {
            OwnerRef::new(OwnerKind::Bundle, "fleet-local", "lots-config2")
        };
        Owner {
            owned_by: Some(owned_by.into()),
            bundle: Some("lots-config2".into()),
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
        r#"fleet_delete_guard_owner_deletions_total{owner_kind="Bundle",owner_namespace="fleet-local",owner_name="lots-config2",decision="denied"} 1"#,
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

use prometheus_rule::prometheus_rule;

#[test]
fn every_alert_has_a_summary_a_description_and_a_runbook_in_the_docs() {
    let runbooks = std::fs::read_to_string(kubectl::root().join("docs/src/monitoring.md"))
        .expect("docs/src/monitoring.md");
    let rule = prometheus_rule();
    let mut count = 0;
    for group in rule["spec"]["groups"].as_array().expect("groups") {
        for r in group["rules"].as_array().expect("rules") {
            let name = r["alert"].as_str().expect("only alerting rules");
            count += 1;
            let a = &r["annotations"];
            for key in ["summary", "description"] {
                assert!(
                    a[key].as_str().is_some_and(|s| s.len() > 20),
                    "{name}: annotation {key}"
                );
            }
            assert!(
                a["description"].as_str().is_some_and(
                    |d| d.contains(&format!("Runbook: docs/src/monitoring.md, {name}."))
                ),
                "{name}: the description points at its runbook"
            );
            assert!(
                runbooks.contains(&format!("### {name}\n")),
                "docs/src/monitoring.md has no runbook section `### {name}`"
            );
            assert!(r["labels"]["severity"].is_string(), "{name}: severity");
        }
    }
    assert_eq!(count, 12, "the alerts docs/src/monitoring.md documents");
}
