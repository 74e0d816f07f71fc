//! The Helm chart's files, read without helm (tests/chart.rs renders it with the real
//! helm): the copies of deploy/monitoring/ it ships are deploy/'s, every value is in the
//! schema, Rancher's form asks only for real values, Chart.yaml carries the annotations
//! Rancher's Apps page reads, and Fleet can deploy the chart as a `helm:` bundle.

#[path = "support/kubectl.rs"]
mod kubectl;

use std::path::PathBuf;

use serde_json::Value;

fn chart() -> PathBuf {
    kubectl::root().join("charts/fleet-delete-guard")
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(path: PathBuf) -> Value {
    let docs = kubectl::parse_yaml_stream(&read(path.clone()));
    assert_eq!(docs.len(), 1, "one document in {}", path.display());
    docs[0].clone()
}

#[test]
fn the_chart_ships_deploy_s_alert_rules_and_dashboard_unchanged() {
    for (copy, original) in [
        (
            "files/prometheusrule.yaml",
            "deploy/monitoring/prometheusrule.yaml",
        ),
        (
            "files/fleet-deletions.json",
            "deploy/monitoring/dashboards/fleet-deletions.json",
        ),
    ] {
        assert!(
            read(chart().join(copy)) == read(kubectl::root().join(original)),
            "charts/fleet-delete-guard/{copy} differs from {original}: copy it over"
        );
    }
}

/// Every leaf path of a values tree (`a.b.c`), maps walked, lists and scalars leaves.
fn leaves(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v.as_object() {
        Some(map) if !map.is_empty() => {
            for (k, w) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(w, &p, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// The schema of a dotted path, if values.schema.json declares it: by its properties,
/// or inside an object declared free-form (no `properties`, e.g. `resources`).
fn schema_of<'a>(schema: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(schema, |s, k| match s.get("properties") {
            Some(props) => props.get(k),
            None if s["type"] == "object" => Some(s),
            None => None,
        })
}

#[test]
fn every_value_is_declared_in_the_schema() {
    let values = yaml(chart().join("values.yaml"));
    let schema: Value =
        serde_json::from_str(&read(chart().join("values.schema.json"))).expect("JSON schema");
    assert_eq!(
        schema["additionalProperties"], false,
        "unknown keys are refused"
    );
    let mut paths = Vec::new();
    leaves(&values, "", &mut paths);
    assert!(paths.len() > 20, "{paths:?}");
    for p in &paths {
        assert!(
            schema_of(&schema, p).is_some(),
            "values.yaml has {p}, values.schema.json does not declare it"
        );
    }
}

#[test]
fn rancher_s_form_asks_only_for_values_with_their_defaults() {
    let values = yaml(chart().join("values.yaml"));
    let form = yaml(chart().join("questions.yaml"));
    let mut questions: Vec<&Value> = Vec::new();
    for q in form["questions"].as_array().expect("questions") {
        questions.push(q);
        questions.extend(q["subquestions"].as_array().into_iter().flatten());
    }
    assert!(questions.len() >= 8);
    for q in questions {
        let var = q["variable"].as_str().expect("variable");
        let default = var
            .split('.')
            .try_fold(&values, |v, k| v.get(k))
            .unwrap_or_else(|| panic!("questions.yaml asks for {var}, not in values.yaml"));
        // Rancher's form writes its default into the values: it must be the chart's.
        let asked = &q["default"];
        let same = match (default, asked) {
            (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
            (a, b) => a == b,
        };
        assert!(same, "{var}: form default {asked} ≠ values.yaml {default}");
        if let Some(options) = q["options"].as_array() {
            assert!(
                options.contains(default),
                "{var}: {default} not among {options:?}"
            );
        }
    }
}

#[test]
fn chart_yaml_carries_rancher_s_annotations_and_the_crate_s_version() {
    let chart_yaml = yaml(chart().join("Chart.yaml"));
    assert_eq!(chart_yaml["apiVersion"], "v2");
    let a = &chart_yaml["annotations"];
    for key in [
        "catalog.cattle.io/display-name",
        "catalog.cattle.io/release-name",
        "catalog.cattle.io/rancher-version",
        "catalog.cattle.io/kube-version",
    ] {
        assert!(
            a[key].as_str().is_some_and(|s| !s.is_empty()),
            "Chart.yaml: annotation {key}"
        );
    }
    assert_eq!(a["catalog.cattle.io/namespace"], "cattle-fleet-system");
    assert_eq!(a["catalog.cattle.io/os"], "linux");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        chart_yaml["version"], version,
        "chart version = Cargo.toml's"
    );
    assert_eq!(
        chart_yaml["appVersion"], version,
        "appVersion = the image's"
    );
}

#[test]
fn fleet_can_deploy_the_chart_as_a_helm_bundle_with_deploy_s_compare_patches() {
    let bundle = yaml(chart().join("fleet.yaml"));
    let kustomize_bundle = yaml(kubectl::root().join("deploy/fleet.yaml"));
    assert_eq!(bundle["defaultNamespace"], "cattle-fleet-system");
    assert_eq!(bundle["helm"]["releaseName"], "fleet-delete-guard");
    assert!(
        bundle["helm"].get("chart").is_none(),
        "the bundle's directory is the chart (Fleet reads its Chart.yaml)"
    );
    assert_eq!(
        bundle["diff"]["comparePatches"], kustomize_bundle["diff"]["comparePatches"],
        "the run-time caBundle is no drift either way (rancher/fleet#5368)"
    );
    let ignored = read(chart().join(".helmignore"));
    for entry in ["fleet.yaml", "ci/"] {
        assert!(
            ignored.lines().any(|l| l.trim() == entry),
            ".helmignore keeps {entry} out of a packaged chart"
        );
    }
}
