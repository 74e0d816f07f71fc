//! The Helm chart charts/fleet-delete-guard through the real helm (v4, pinned in
//! tests/helm/go.mod, built by scripts/build-helm.sh):
//!
//! - `helm lint --strict` passes with every values profile (`ci/*-values.yaml`);
//! - one source of truth with deploy/: each profile that mirrors a kustomize overlay
//!   renders exactly its objects (Helm's own three labels aside), so everything
//!   tests/manifests.rs proves of deploy/ holds for the chart;
//! - the values deploy/ has no overlay for reach the objects they name;
//! - bad values are refused by values.schema.json or the templates, saying why.
//!
//! Needs the helm binary and kubectl, so it is a target of the `external-tools` feature,
//! run explicitly (docs/src/testing.md):
//!
//!     scripts/build-helm.sh
//!     cargo test --locked --features external-tools --test chart

#[path = "support/helm.rs"]
mod helm;
#[path = "support/kubectl.rs"]
mod kubectl;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use k8s_openapi::api::{
    admissionregistration::v1::ValidatingWebhookConfiguration, apps::v1::Deployment,
};
use serde_json::Value;

/// Labels Helm adds that kustomize does not.
const HELM_LABELS: [&str; 3] = [
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
];

/// Profile → what it must render: kustomize directories under deploy/, or plain
/// manifest files there (`.yaml`).
const MIRRORS: [(&str, &[&str]); 6] = [
    ("default", &[""]),
    ("cert-manager", &["cert-manager"]),
    ("breaker", &["breaker"]),
    ("breaker-fail-closed", &["breaker-fail-closed"]),
    ("monitoring", &["", "monitoring"]),
    ("networkpolicy", &["", "networkpolicy.yaml"]),
];

/// Profiles of values deploy/ has no overlay for, checked field by field below.
const VALUES_ONLY: [&str; 1] = ["enforce"];

fn key(obj: &Value) -> String {
    format!(
        "{} {} {}/{}",
        obj["apiVersion"].as_str().unwrap_or("?"),
        obj["kind"].as_str().unwrap_or("?"),
        obj["metadata"]["namespace"].as_str().unwrap_or(""),
        obj["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn by_key(objects: Vec<Value>) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for obj in objects {
        let k = key(&obj);
        assert!(map.insert(k.clone(), obj).is_none(), "{k} rendered twice");
    }
    map
}

fn without_helm_labels(mut obj: Value) -> Value {
    let name = key(&obj);
    let labels = obj["metadata"]["labels"]
        .as_object_mut()
        .unwrap_or_else(|| panic!("{name}: no labels"));
    for l in HELM_LABELS {
        labels.remove(l);
    }
    obj
}

fn kustomize(kubectl: &Path, parts: &[&str]) -> Vec<Value> {
    parts
        .iter()
        .flat_map(|part| {
            if part.ends_with(".yaml") {
                let path = kubectl::root().join("deploy").join(part);
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                kubectl::parse_yaml_stream(&text)
            } else {
                kubectl::render(kubectl, part)
            }
        })
        .collect()
}

fn require_kubectl() -> PathBuf {
    kubectl::find().expect("kubectl ($KUBECTL, /usr/bin/kubectl or $PATH) renders deploy/")
}

#[test]
fn helm_lint_strict_passes_with_every_profile() {
    let helm = helm::require();
    let home = tempfile::tempdir().expect("tempdir");
    let profiles = helm::profiles();
    assert!(profiles.len() >= MIRRORS.len() + VALUES_ONLY.len());
    for name in &profiles {
        let out = helm::lint_strict(&helm, home.path(), &helm::profile(name));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "helm lint --strict ({name}):\n{text}");
        assert!(
            text.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{name}: {text}"
        );
    }
}

#[test]
fn every_profile_is_checked_here() {
    let known: Vec<&str> = MIRRORS.iter().map(|(p, _)| *p).chain(VALUES_ONLY).collect();
    for name in helm::profiles() {
        assert!(
            known.contains(&name.as_str()),
            "profile {name} is neither a mirror of deploy/ nor checked by value"
        );
    }
}

#[test]
fn each_mirror_profile_renders_exactly_what_kustomize_renders() {
    let helm = helm::require();
    let kubectl = require_kubectl();
    let home = tempfile::tempdir().expect("tempdir");
    for (name, parts) in MIRRORS {
        let chart = by_key(
            helm::render(&helm, home.path(), &[helm::profile(name)], &[])
                .into_iter()
                .map(|o| {
                    for l in HELM_LABELS {
                        assert!(
                            o["metadata"]["labels"][l].is_string(),
                            "{name}: {} has no {l} label",
                            key(&o)
                        );
                    }
                    without_helm_labels(o)
                })
                .collect(),
        );
        let deploy = by_key(kustomize(&kubectl, parts));
        assert_eq!(
            chart.keys().collect::<Vec<_>>(),
            deploy.keys().collect::<Vec<_>>(),
            "profile {name}: the chart renders other objects than deploy/{parts:?}"
        );
        for (k, want) in &deploy {
            assert_eq!(
                &chart[k], want,
                "profile {name}: {k} differs from deploy/{parts:?}\nchart: {}\ndeploy: {}",
                chart[k], want
            );
        }
    }
}

fn one<T: serde::de::DeserializeOwned>(objects: &[Value], kind: &str) -> T {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    serde_json::from_value(found[0].clone()).unwrap_or_else(|e| panic!("{kind}: {e}"))
}

#[test]
fn the_enforce_profile_reaches_every_object_its_values_name() {
    let helm = helm::require();
    let home = tempfile::tempdir().expect("tempdir");
    let objects = helm::render(&helm, home.path(), &[helm::profile("enforce")], &[]);

    let d: Deployment = one(&objects, "Deployment");
    let spec = d.spec.expect("spec");
    assert_eq!(spec.replicas, Some(3));
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(
        pod.image_pull_secrets.expect("pull secrets")[0].name,
        "registry-credentials"
    );
    assert_eq!(
        pod.node_selector.expect("nodeSelector")["kubernetes.io/os"],
        "linux"
    );
    let c = &pod.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some("registry.example.com/fleet-delete-guard:0.1.0-test")
    );
    let env: BTreeMap<String, String> = c
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    for (name, value) in [
        ("FLEET_DELETE_GUARD_POLICY", "deny"),
        ("FLEET_DELETE_GUARD_BREAKER", "enforce"),
        (
            "FLEET_DELETE_GUARD_BREAK_GLASS_GROUP",
            "platform-admins,oncall",
        ),
        ("FLEET_DELETE_GUARD_BREAKER_MAX_DELETIONS", "10"),
        ("FLEET_DELETE_GUARD_BREAKER_MAX_FRACTION", "0"),
        ("FLEET_DELETE_GUARD_BREAKER_WINDOW", "120"),
        ("RUST_LOG", "debug"),
    ] {
        assert_eq!(env.get(name).map(String::as_str), Some(value), "{name}");
    }

    // Fail-closed: the agent's deletions reviewed, a second entry failing closed.
    let w: ValidatingWebhookConfiguration = one(&objects, "ValidatingWebhookConfiguration");
    let hooks = w.webhooks.expect("webhooks");
    assert_eq!(hooks.len(), 2);
    let conditions: Vec<String> = hooks[0]
        .match_conditions
        .iter()
        .flatten()
        .map(|m| m.name.clone())
        .collect();
    assert!(!conditions.contains(&"not-fleet-itself".to_string()));
    assert_eq!(hooks[1].failure_policy.as_deref(), Some("Fail"));

    // kube-prometheus-stack's selector label on what it selects, not on the dashboard.
    for kind in ["PodMonitor", "PrometheusRule"] {
        let o = objects.iter().find(|o| o["kind"] == kind).expect(kind);
        assert_eq!(o["metadata"]["labels"]["release"], "kube-prometheus-stack");
    }
    let dashboard = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap")
        .expect("dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(dashboard["metadata"]["namespace"], "cattle-dashboards");
}

#[test]
fn the_release_namespace_is_the_webhooks_own() {
    let helm = helm::require();
    let home = tempfile::tempdir().expect("tempdir");
    let mut c = helm::command(&helm, home.path());
    c.arg("template")
        .arg(helm::RELEASE)
        .arg(helm::chart_dir())
        .arg("--namespace")
        .arg("guard-system");
    let out = c.output().expect("helm template");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let objects = kubectl::parse_yaml_stream(&String::from_utf8_lossy(&out.stdout));
    let w: ValidatingWebhookConfiguration = one(&objects, "ValidatingWebhookConfiguration");
    let hook = &w.webhooks.expect("webhooks")[0];
    let service = hook.client_config.service.as_ref().expect("service");
    assert_eq!(service.namespace, "guard-system");
    let excluded = &hook
        .namespace_selector
        .as_ref()
        .and_then(|s| s.match_expressions.as_ref())
        .expect("namespaceSelector")[0];
    assert_eq!(
        excluded.values.as_deref(),
        Some(&["kube-system".to_string(), "guard-system".to_string()][..])
    );
    // fleet-controller's Role stays in Fleet's namespace, bound to the release's account.
    let binding = objects
        .iter()
        .find(|o| {
            o["kind"] == "RoleBinding"
                && o["metadata"]["name"] == "fleet-delete-guard-fleet-version"
        })
        .expect("fleet-version RoleBinding");
    assert_eq!(binding["metadata"]["namespace"], "cattle-fleet-system");
    assert_eq!(binding["subjects"][0]["namespace"], "guard-system");
}

#[test]
fn bad_values_are_refused_saying_why() {
    let helm = helm::require();
    let home = tempfile::tempdir().expect("tempdir");
    for (set, why) in [
        (&["policy=block"][..], "/policy"),
        (&["breaker.mode=on"][..], "/breaker/mode"),
        (&["certificates.source=vault"][..], "/certificates/source"),
        (&["replicaCount=0"][..], "/replicaCount"),
        (&["breaker.maxFraction=2"][..], "/breaker/maxFraction"),
        (&["unknownKey=1"][..], "unknownKey"),
        (
            &["breaker.failClosed=true"][..],
            "breaker.failClosed needs breaker.reviewFleetAgent",
        ),
        (
            &["networkPolicy.enabled=true"][..],
            "networkPolicy.apiServerCIDR",
        ),
    ] {
        let out = helm::template(&helm, home.path(), &[], set);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{set:?} was accepted");
        assert!(
            err.contains(why),
            "{set:?}: the error does not say {why:?}: {err}"
        );
    }
}
