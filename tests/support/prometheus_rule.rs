//! deploy/monitoring/'s PrometheusRule, read by tests/monitoring.rs (annotations,
//! runbooks) and tests/monitoring_prometheus.rs (promtool, a real Prometheus).
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

use super::kubectl;

pub fn monitoring_dir() -> PathBuf {
    kubectl::root().join("deploy/monitoring")
}

/// The PrometheusRule of deploy/monitoring/ as JSON.
pub fn prometheus_rule() -> Value {
    let path = monitoring_dir().join("prometheusrule.yaml");
    let text = std::fs::read_to_string(&path).expect("prometheusrule.yaml");
    let docs = kubectl::parse_yaml_stream(&text);
    assert_eq!(docs.len(), 1, "one object in {}", path.display());
    assert_eq!(docs[0]["kind"], "PrometheusRule");
    docs[0].clone()
}
