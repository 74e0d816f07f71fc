//! The real kubectl: finding it, rendering deploy/ with `kubectl kustomize`, running it
//! against the API double. Included with `#[path]` by tests/manifests.rs,
//! tests/e2e_kubectl.rs and examples/demo.rs.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

/// Where kubectl is looked for: `$KUBECTL`, `/usr/bin/kubectl`, then `$PATH`.
pub fn find() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KUBECTL").map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    let usr = PathBuf::from("/usr/bin/kubectl");
    if usr.is_file() {
        return Some(usr);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("kubectl"))
            .find(|p| p.is_file())
    })
}

/// kubectl, or: in CI (`CI` set) a failure, elsewhere a loud skip (`None`).
pub fn require(test: &str) -> Option<PathBuf> {
    match find() {
        Some(k) => Some(k),
        None if std::env::var_os("CI").is_some() => panic!(
            "{test}: kubectl not found ($KUBECTL, /usr/bin/kubectl, $PATH); CI machines must have it"
        ),
        None => {
            eprintln!(
                "SKIPPED {test}: kubectl not found ($KUBECTL, /usr/bin/kubectl, $PATH). \
                 Install kubectl to run it; in CI (CI set) this is a failure."
            );
            None
        }
    }
}

/// The project's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `kubectl kustomize deploy/<sub>` parsed into JSON objects.
pub fn render(kubectl: &Path, sub: &str) -> Vec<Value> {
    let dir = root().join("deploy").join(sub);
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", kubectl.display()));
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    parse_yaml_stream(&String::from_utf8_lossy(&out.stdout))
}

/// A multi-document YAML stream as JSON values (empty documents dropped).
pub fn parse_yaml_stream(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).expect("YAML stream");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// kubectl with its own kubeconfig and discovery cache, never the user's.
pub fn command(kubectl: &Path, kubeconfig: &Path, cache_dir: &Path) -> Command {
    let mut c = Command::new(kubectl);
    c.env("KUBECONFIG", kubeconfig)
        .env_remove("KUBECTL_EXTERNAL_DIFF")
        .arg(format!("--cache-dir={}", cache_dir.display()))
        .arg("--request-timeout=30s");
    c
}

/// What a kubectl run printed.
#[derive(Debug, Clone)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            if self.ok { "0" } else { "non-zero" },
            self.stdout,
            self.stderr
        )
    }
}

/// Run kubectl off the async runtime (the API double answers it on that runtime).
pub async fn run(mut command: Command) -> Run {
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("kubectl task")
        .expect("kubectl runs")
        .into()
}
