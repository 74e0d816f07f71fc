//! The real helm CLI (v4, built from the Go module pinned in tests/helm/go.mod by
//! scripts/build-helm.sh): finding it, rendering and linting the chart, and installing
//! it into a cluster given a kubeconfig. Included with `#[path]` by tests/chart.rs.
//!
//! `install`, `upgrade` and `uninstall` are the hook for the real-cluster suite
//! (a real kube-apiserver): they run what scripts/helm-install.sh runs.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

use super::kubectl;

/// The release name and namespace every test and the install hook use.
pub const RELEASE: &str = "fleet-delete-guard";
pub const NAMESPACE: &str = "cattle-fleet-system";

/// `$HELM`, else `target/tools/bin/helm`; a failure naming the build script when
/// neither exists (this target runs only when asked for: never a silent skip).
pub fn require() -> PathBuf {
    let path = std::env::var_os("HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| kubectl::root().join("target/tools/bin/helm"));
    assert!(
        path.is_file(),
        "helm not found at {} ($HELM or target/tools/bin/helm): run scripts/build-helm.sh \
         (Go and the Go module proxy; .ci/run does it)",
        path.display()
    );
    path
}

pub fn chart_dir() -> PathBuf {
    kubectl::root().join("charts/fleet-delete-guard")
}

/// A values profile of the chart: `charts/fleet-delete-guard/ci/<name>-values.yaml`.
pub fn profile(name: &str) -> PathBuf {
    chart_dir().join("ci").join(format!("{name}-values.yaml"))
}

/// Every profile in `ci/`, by name.
pub fn profiles() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(chart_dir().join("ci"))
        .expect("charts/fleet-delete-guard/ci")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter_map(|f| f.strip_suffix("-values.yaml").map(str::to_string))
        .collect();
    names.sort();
    names
}

/// helm with its caches and configuration in a throw-away directory, never the user's.
pub fn command(helm: &Path, home: &Path) -> Command {
    let mut c = Command::new(helm);
    c.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("KUBECONFIG");
    c
}

fn run(mut c: Command) -> Output {
    c.output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"))
}

/// `helm template` of the chart with the given values files and `--set` pairs.
pub fn template(helm: &Path, home: &Path, values: &[PathBuf], set: &[&str]) -> Output {
    let mut c = command(helm, home);
    c.arg("template")
        .arg(RELEASE)
        .arg(chart_dir())
        .arg("--namespace")
        .arg(NAMESPACE);
    for v in values {
        c.arg("--values").arg(v);
    }
    for s in set {
        c.arg("--set").arg(s);
    }
    run(c)
}

/// `helm template` that must succeed, parsed into JSON objects.
pub fn render(helm: &Path, home: &Path, values: &[PathBuf], set: &[&str]) -> Vec<Value> {
    let out = template(helm, home, values, set);
    assert!(
        out.status.success(),
        "helm template {values:?} {set:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    kubectl::parse_yaml_stream(&String::from_utf8_lossy(&out.stdout))
}

/// `helm lint --strict` of the chart with one values file.
pub fn lint_strict(helm: &Path, home: &Path, values: &Path) -> Output {
    let mut c = command(helm, home);
    c.arg("lint")
        .arg("--strict")
        .arg(chart_dir())
        .arg("--values")
        .arg(values);
    run(c)
}

/// `helm upgrade --install` of the chart into the cluster of `kubeconfig`, waiting for
/// the Deployment (scripts/helm-install.sh runs the same).
pub fn install(helm: &Path, home: &Path, kubeconfig: &Path, values: &[PathBuf]) -> Output {
    let mut c = command(helm, home);
    c.arg("upgrade")
        .arg("--install")
        .arg(RELEASE)
        .arg(chart_dir())
        .arg("--namespace")
        .arg(NAMESPACE)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--wait")
        .arg("--timeout")
        .arg("5m");
    for v in values {
        c.arg("--values").arg(v);
    }
    run(c)
}

/// An upgrade is an install of an existing release.
pub fn upgrade(helm: &Path, home: &Path, kubeconfig: &Path, values: &[PathBuf]) -> Output {
    install(helm, home, kubeconfig, values)
}

/// `helm uninstall`, waiting for the objects to be gone.
pub fn uninstall(helm: &Path, home: &Path, kubeconfig: &Path) -> Output {
    let mut c = command(helm, home);
    c.arg("uninstall")
        .arg(RELEASE)
        .arg("--namespace")
        .arg(NAMESPACE)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--wait");
    run(c)
}
