//! Observability an SRE can install (deploy/monitoring/, docs/src/monitoring.md),
//! proven with the real Prometheus tools:
//!
//! - the PrometheusRule's groups through the real `promtool check rules` and
//!   `promtool test rules` (deploy/monitoring/tests/*.yaml: every alert firing and not);
//! - a real Prometheus scraping the real binary while deletions are reviewed and counted
//!   against the API double: every dashboard panel query and every alert expression
//!   evaluated through `/api/v1/query`, each returning series with the expected labels.
//!
//! Needs `prometheus` and `promtool` (Debian's `prometheus` package), so it is a target
//! of the `external-tools` feature, run explicitly (docs/src/testing.md):
//!
//!     cargo test --locked --features external-tools --test monitoring_prometheus
//!
//! `.ci/run` installs Prometheus and runs it. Without the tools it fails, saying so.

#[path = "support/kubectl.rs"]
mod kubectl;
#[path = "support/prometheus_rule.rs"]
mod prometheus_rule;
mod support;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use prometheus_rule::{monitoring_dir, prometheus_rule};
use serde_json::{json, Value};

// --- the real Prometheus tools ---------------------------------------------------------

/// `prometheus` and `promtool`, or a failure that says how to get them.
fn require_prometheus() -> (PathBuf, PathBuf) {
    let find = |name: &str| -> Option<PathBuf> {
        let env = format!("{}_BIN", name.to_uppercase());
        if let Some(p) = std::env::var_os(env).map(PathBuf::from) {
            return p.is_file().then_some(p);
        }
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    };
    match (find("prometheus"), find("promtool")) {
        (Some(prometheus), Some(promtool)) => (prometheus, promtool),
        _ => panic!(
            "prometheus and promtool are needed by tests/monitoring_prometheus.rs and were not found \
             ($PROMETHEUS_BIN/$PROMTOOL_BIN or $PATH): run `apt-get install prometheus` \
             (Debian's package; .ci/run installs it)"
        ),
    }
}

/// Its rule groups as a plain Prometheus rules file (JSON is YAML), written into `dir`.
fn write_rules_file(dir: &Path) -> PathBuf {
    let spec = prometheus_rule()["spec"].clone();
    assert!(spec["groups"].is_array(), "spec.groups: {spec}");
    let path = dir.join("fleet-delete-guard.rules.yaml");
    std::fs::write(&path, serde_json::to_string_pretty(&spec).expect("JSON")).expect("write");
    path
}

/// Every alerting rule: (name, expr).
fn alerts() -> Vec<(String, String)> {
    let rule = prometheus_rule();
    rule["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .filter(|r| r["alert"].is_string())
        .map(|r| {
            (
                r["alert"].as_str().unwrap_or_default().to_string(),
                r["expr"].as_str().unwrap_or_default().trim().to_string(),
            )
        })
        .collect()
}

fn run_ok(mut cmd: Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn promtool_checks_the_rules_and_every_alert_has_unit_tests_firing_and_not() {
    let (_, promtool) = require_prometheus();
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = write_rules_file(dir.path());
    let checked = run_ok({
        let mut c = Command::new(&promtool);
        c.arg("check").arg("rules").arg(&rules);
        c
    });
    let names = alerts();
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", names.len())),
        "{checked}"
    );

    let tests_dir = monitoring_dir().join("tests");
    let mut test_files = Vec::new();
    for entry in std::fs::read_dir(&tests_dir).expect("deploy/monitoring/tests") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let copy = dir.path().join(path.file_name().expect("name"));
            std::fs::copy(&path, &copy).expect("copy test file");
            test_files.push((path, copy));
        }
    }
    assert!(
        !test_files.is_empty(),
        "no promtool tests in {}",
        tests_dir.display()
    );
    let tested = run_ok({
        let mut c = Command::new(&promtool);
        c.arg("test").arg("rules");
        c.args(test_files.iter().map(|(_, copy)| copy));
        c
    });
    assert!(tested.contains("SUCCESS"), "{tested}");

    // Every alert is tested both firing (exp_alerts with an entry) and not (empty).
    let mut firing: BTreeMap<String, usize> = BTreeMap::new();
    let mut quiet: BTreeMap<String, usize> = BTreeMap::new();
    for (path, _) in &test_files {
        let text = std::fs::read_to_string(path).expect("read");
        let docs = kubectl::parse_yaml_stream(&text);
        for test in docs[0]["tests"].as_array().expect("tests") {
            for case in test["alert_rule_test"].as_array().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap_or_default().to_string();
                let fired = case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty());
                *if fired { &mut firing } else { &mut quiet }
                    .entry(name)
                    .or_default() += 1;
            }
        }
    }
    for (name, _) in &names {
        assert!(
            firing.contains_key(name),
            "{name} has no promtool test where it fires"
        );
        assert!(
            quiet.contains_key(name),
            "{name} has no promtool test where it stays quiet"
        );
    }
}

// --- a real Prometheus scraping the real binary ---------------------------------------

const POD: &str = "fleet-delete-guard-e2e";
const JOB: &str = "fleet-delete-guard";
const WAIT: Duration = Duration::from_secs(30);

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

struct Prometheus {
    _child: Killed,
    url: String,
    client: reqwest::Client,
}

impl Prometheus {
    /// Scrapes `target` every second as job fleet-delete-guard (the PodMonitor's job)
    /// with the pod labels prometheus-operator adds, and evaluates the alert rules.
    async fn start(bin: &Path, dir: &Path, target: std::net::SocketAddr) -> Prometheus {
        let rules = write_rules_file(dir);
        let config = json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [rules],
            "scrape_configs": [{
                "job_name": JOB,
                "scrape_interval": "1s",
                "metrics_path": "/metrics",
                "static_configs": [{
                    "targets": [target.to_string()],
                    "labels": {"namespace": "cattle-fleet-system", "pod": POD}
                }]
            }]
        });
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config.to_string()).expect("config");
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let p = Prometheus {
            _child: Killed(child),
            url: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        let log_path = dir.join("prometheus.log");
        p.wait_until(
            "Prometheus ready and scraping the webhook",
            &log_path,
            |v| v.first().is_some_and(|s| s["value"][1] == "1"),
            &format!("up{{job=\"{JOB}\"}}"),
        )
        .await;
        p
    }

    /// The instant vector `query` evaluates to (the `result` array).
    async fn query(&self, query: &str) -> Result<Vec<Value>, String> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url),
            &[("query", query)],
        )
        .map_err(|e| e.to_string())?;
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("{query}: {body}"));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    async fn wait_until(
        &self,
        what: &str,
        log: &Path,
        done: impl Fn(&[Value]) -> bool,
        query: &str,
    ) {
        let start = Instant::now();
        loop {
            let last = self.query(query).await;
            if last.as_deref().is_ok_and(&done) {
                return;
            }
            if start.elapsed() > WAIT {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                panic!("timed out waiting for {what}: {query} = {last:?}\nprometheus log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn labels_of(series: &Value) -> BTreeMap<String, String> {
    series["metric"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Some series of `result` carries every label of `want`.
fn assert_series_with(what: &str, query: &str, result: &[Value], want: &[(&str, &str)]) {
    assert!(!result.is_empty(), "{what}: no series for {query}");
    let found = result.iter().any(|s| {
        let labels = labels_of(s);
        want.iter()
            .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
    });
    assert!(
        found,
        "{what}: no series of {query} has the labels {want:?}: {result:#?}"
    );
}

/// Grafana's variables as a user picks them: one namespace and owner, or All.
fn substitute(expr: &str, namespace: &str, owner: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$namespace", namespace)
        .replace("$owner", owner)
}

/// The expression of an alert without its threshold, for alerts not meant to fire in a
/// healthy run: `X > 0` / `X == 0` → `X`, `absent(X)` → `X`.
fn without_threshold(expr: &str) -> String {
    let expr = expr.trim();
    if let Some(inner) = expr
        .strip_prefix("absent(")
        .and_then(|e| e.strip_suffix(')'))
    {
        return inner.trim().to_string();
    }
    for op in [" > ", " == "] {
        if let Some((left, right)) = expr.rsplit_once(op) {
            if right.trim().parse::<f64>().is_ok() {
                return left.trim().to_string();
            }
        }
    }
    panic!("no threshold to strip from {expr}")
}

/// What each dashboard panel query must return after the run below: labels that some
/// series carries (title, refId, labels).
/// Labels some series must carry.
type Labels = &'static [(&'static str, &'static str)];

const PANELS: &[(&str, &str, Labels)] = &[
    ("Deletions by owner and decision", "A", OWNER_WARNED),
    (
        "Deletions by owner since the webhook started",
        "A",
        OWNER_WARNED,
    ),
    ("Status lag p50 / p99", "A", &[]),
    ("Status lag p50 / p99", "B", &[]),
    ("Review latency p50 / p99", "A", &[]),
    ("Review latency p50 / p99", "B", &[]),
    ("Reviews by decision", "A", &[("decision", "warned")]),
    ("Errors", "A", &[("kind", "not_json")]),
    ("Errors", "B", &[("object", "gitrepo")]),
    ("Errors", "C", &[]),
    ("Errors", "D", &[]),
    ("Events dropped", "A", &[("result", "dropped")]),
    ("Replicas up, ready and queue depth", "A", &[]),
    ("Replicas up, ready and queue depth", "B", &[]),
    ("Replicas up, ready and queue depth", "C", &[("pod", POD)]),
    // --- breaker and Fleet status panels (issue 25) ---
    ("Mass-deletion breaker", "A", &[]),
    ("Mass-deletion breaker", "B", &[("owner_kind", "GitRepo")]),
    ("Mass-deletion breaker", "C", &[("pod", POD)]),
    ("Mass-deletion breaker", "D", &[("result", "ok")]),
    ("Fleet status discrepancies", "A", OWNER),
    ("Fleet status discrepancies", "B", &[]),
];

const OWNER: Labels = &[
    ("owner_kind", "GitRepo"),
    ("owner_namespace", "fleet-local"),
    ("owner_name", "lots"),
];

const OWNER_WARNED: Labels = &[
    ("owner_kind", "GitRepo"),
    ("owner_namespace", "fleet-local"),
    ("owner_name", "lots"),
    ("decision", "warned"),
];

/// Each alert in the run below: whether it fires, and the labels of its series (of
/// the whole expression when it fires, else of [`without_threshold`]).
const ALERTS: &[(&str, bool, Labels)] = &[
    (
        "FleetDeleteGuardManualDeletions",
        true,
        &[
            ("owner_kind", "GitRepo"),
            ("owner_namespace", "fleet-local"),
            ("owner_name", "lots"),
        ],
    ),
    (
        "FleetDeleteGuardStatusPatchesFailing",
        false,
        &[
            ("namespace", "cattle-fleet-system"),
            ("pod", POD),
            ("object", "gitrepo"),
        ],
    ),
    ("FleetDeleteGuardQueueOverflow", false, &[("pod", POD)]),
    ("FleetDeleteGuardDown", false, &[("job", JOB), ("pod", POD)]),
    ("FleetDeleteGuardAbsent", false, &[("job", JOB)]),
    (
        "FleetDeleteGuardNotReady",
        false,
        &[("pod", POD), ("check", "tls")],
    ),
    (
        "FleetDeleteGuardCertificateReloadFailing",
        false,
        &[("pod", POD)],
    ),
    // --- breaker and Fleet status alerts (issue 25) ---
    (
        "FleetDeleteGuardBreakerOpen",
        false,
        &[("namespace", "cattle-fleet-system")],
    ),
    ("FleetDeleteGuardBreakerDegraded", false, &[("pod", POD)]),
    ("FleetDeleteGuardStatusDisagrees", false, OWNER),
    (
        "FleetDeleteGuardStatusCheckStale",
        false,
        &[("namespace", "cattle-fleet-system")],
    ),
    // --- webhook configuration tamper evidence (src/webhook_config/) ---
    (
        "FleetDeleteGuardWebhookConfigurationChanged",
        false,
        &[("namespace", "cattle-fleet-system"), ("reason", "none")],
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_binary_and_every_panel_and_alert_query_answers() {
    let (prometheus_bin, _) = require_prometheus();
    let double = support::fleet::seeded_double().await;
    // The webhook configuration as installed, watched (--webhook-config).
    let mut vwc = serde_json::to_value(
        &fleet_delete_guard::webhook_config::Intended::default_for(
            "fleet-delete-guard",
            "cattle-fleet-system",
            "fleet-delete-guard",
        )
        .expect("base")
        .config,
    )
    .expect("json");
    vwc["apiVersion"] = json!("admissionregistration.k8s.io/v1");
    vwc["kind"] = json!("ValidatingWebhookConfiguration");
    double.seed(vwc).expect("install the configuration");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    double.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let certs = support::certificates();
    let files = support::write_pair(dir.path(), &certs);
    let process = support::ServeProcess::spawn(
        &files,
        &[
            "--resync-interval",
            "300",
            "--webhook-config",
            "fleet-delete-guard",
        ],
        &[
            ("KUBECONFIG", kubeconfig.as_os_str()),
            ("RUST_LOG", std::ffi::OsStr::new("info")),
        ],
    );
    let (webhook, metrics) = process.serving();
    let _webhook = Killed(process.drain_log());
    let plain = reqwest::Client::new();
    let start = Instant::now();
    while !plain
        .get(format!("http://{metrics}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(start.elapsed() < WAIT, "the webhook is not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let prometheus = Prometheus::start(&prometheus_bin, dir.path(), metrics).await;
    let log = dir.path().join("prometheus.log");

    // What kube-apiserver sends: alice deletes two of lots' ConfigMaps (warned, counted),
    // one dry run (not counted), and a body that is not JSON (an error).
    let client = support::https_client(&certs.ca_pem);
    let url = format!("https://localhost:{}/validate", webhook.port());
    for (i, name) in ["test-config2-one", "test-config1-one"].iter().enumerate() {
        let mut dry = support::fleet::delete_review(&double, name, "alice", &format!("dry-{i}"));
        dry["request"]["dryRun"] = json!(true);
        let (status, _) = support::post(&client, &url, dry.to_string()).await;
        assert_eq!(status, 200);
        let review = support::fleet::delete_review(&double, name, "alice", &format!("r-{i}"));
        let (status, text) = support::post(&client, &url, review.to_string()).await;
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("\"warned\""), "{text}");
        double.delete_object(&kube_api_double::gvr::CONFIGMAPS, "default", name);
    }
    let (status, _) = support::post(&client, &url, "not json").await;
    assert_eq!(status, 400);
    double
        .wait_for(
            &kube_api_double::gvr::GITREPOS,
            "fleet-local",
            "lots",
            |r| support::fleet::missing(r) == 2,
            WAIT,
        )
        .await
        .expect("both deletions counted in the GitRepo status");

    // Prometheus has the counted deletions (not the dry runs) and scraped them a few times.
    prometheus
        .wait_until(
            "the deletions scraped",
            &log,
            |v| {
                v.first()
                    .is_some_and(|s| s["value"][1].as_str().and_then(|x| x.parse::<f64>().ok()) >= Some(3.0))
            },
            "min(count_over_time(fleet_delete_guard_owner_deletions_total[1m])) \
             and on() fleet_delete_guard_status_lag_seconds_count >= 2 \
             and on() fleet_delete_guard_owner_deletions_total{owner_name=\"lots\",decision=\"warned\"} == 2",
        )
        .await;

    // Every panel query of the dashboard, for one owner and for All.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring_dir().join("dashboards/fleet-deletions.json"))
            .expect("dashboard"),
    )
    .expect("dashboard JSON");
    let mut seen = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("title");
        for target in panel["targets"].as_array().expect("targets") {
            let ref_id = target["refId"].as_str().expect("refId");
            let expr = target["expr"].as_str().expect("expr");
            let want = PANELS
                .iter()
                .find(|(t, r, _)| *t == title && *r == ref_id)
                .unwrap_or_else(|| panic!("no expectation for panel {title:?} {ref_id}"))
                .2;
            seen.push((title, ref_id));
            for (namespace, owner) in [("fleet-local", "lots"), (".*", ".*")] {
                let query = substitute(expr, namespace, owner);
                let result = prometheus.query(&query).await.expect("query");
                assert_series_with(&format!("panel {title:?} {ref_id}"), &query, &result, want);
                if title.contains("p50 / p99") {
                    let value = result[0]["value"][1].as_str().unwrap_or_default();
                    assert!(
                        value.parse::<f64>().is_ok_and(f64::is_finite),
                        "{title} {ref_id}: {value} (observations in the window)"
                    );
                }
            }
        }
    }
    assert_eq!(
        seen.len(),
        PANELS.len(),
        "every expectation has its panel query"
    );
    // The variables' queries (label_values) find the owner.
    for (label, want) in [("owner_namespace", "fleet-local"), ("owner_name", "lots")] {
        let result = prometheus
            .query(&format!(
                "count by ({label}) (fleet_delete_guard_owner_deletions_total)"
            ))
            .await
            .expect("query");
        assert_series_with("variable", label, &result, &[(label, want)]);
    }

    // Every alert: the one a manual deletion fires, and the others quiet in a healthy
    // run but selecting the webhook's series.
    let rules = alerts();
    assert_eq!(rules.len(), ALERTS.len(), "every alert has its expectation");
    for (name, expr) in &rules {
        let (_, fires, want) = ALERTS
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no expectation for alert {name}"));
        let result = prometheus.query(expr).await.expect("query");
        if *fires {
            assert_series_with(name, expr, &result, want);
        } else {
            assert!(
                result.is_empty(),
                "{name} fires in a healthy run: {result:#?}"
            );
            let inner = without_threshold(expr);
            let result = prometheus.query(&inner).await.expect("query");
            assert_series_with(name, &inner, &result, want);
        }
    }
    // Prometheus' own rule evaluation fires it too.
    prometheus
        .wait_until(
            "FleetDeleteGuardManualDeletions firing",
            &log,
            |v| !v.is_empty(),
            "ALERTS{alertname=\"FleetDeleteGuardManualDeletions\",alertstate=\"firing\",owner_name=\"lots\"}",
        )
        .await;
}
