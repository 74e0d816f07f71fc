//! Tamper evidence against the API double: the webhook's own ValidatingWebhookConfiguration
//! is deleted, narrowed, switched to failurePolicy Fail; each is detected (gauge, Event,
//! `/readyz` line) by the one watch on it; repair off never writes it, repair on puts it
//! back as installed (docs: "When someone removes the guard").
//!
//! Waits are on conditions with a generous deadline, never on time.

mod support;

use std::time::{Duration, Instant};

use fleet_delete_guard::{
    health::Readiness,
    metrics::Metrics,
    webhook_config::{watch, Intended},
};
use kube_api_double::{gvr, ApiDouble, Options, Verb};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);
const NAME: &str = "fleet-delete-guard";
const VWC: kube_api_double::Gvr = gvr::VALIDATING_WEBHOOK_CONFIGURATIONS;

fn intended() -> Intended {
    Intended::default_for(NAME, "cattle-fleet-system", "fleet-delete-guard").expect("base")
}

fn installed() -> Value {
    let mut v = serde_json::to_value(&intended().config).expect("json");
    v["apiVersion"] = json!("admissionregistration.k8s.io/v1");
    v["kind"] = json!("ValidatingWebhookConfiguration");
    v
}

struct Guard {
    double: ApiDouble,
    metrics: Metrics,
    readiness: Readiness,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(restore: Option<Duration>) -> Guard {
    support::init_logging();
    let double = ApiDouble::start(Options::default()).await;
    double.seed(installed()).expect("install");
    let config = kube::Config::new(double.url().parse().expect("url"));
    let client = kube::Client::try_from(config).expect("client");
    let (metrics, readiness) = (Metrics::new(), Readiness::default());
    let task = tokio::spawn(watch::run(watch::Settings {
        client,
        intended: intended(),
        ca_bundle: None,
        sync_ca_bundle: None,
        restore,
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        instance: "test".into(),
    }));
    let g = Guard {
        double,
        metrics,
        readiness,
        task,
    };
    g.wait_gauge("none", 1).await;
    g
}

impl Guard {
    async fn wait_gauge(&self, reason: &str, value: i64) {
        let line = format!(
            "fleet_delete_guard_webhook_configuration_intact{{reason=\"{reason}\"}} {value}\n"
        );
        let start = Instant::now();
        while !self.metrics.encode().contains(&line) {
            assert!(
                start.elapsed() < WAIT,
                "never saw {line}; metrics:\n{}",
                self.metrics.encode()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Events of `reason` on the configuration (cluster-scoped: namespace default).
    async fn wait_event(&self, reason: &str, note_has: &str) -> Value {
        let start = Instant::now();
        loop {
            let found = self
                .double
                .list(&gvr::EVENTS_K8S_IO, Some("default"))
                .into_iter()
                .find(|e| {
                    e["reason"] == reason
                        && e["note"].as_str().is_some_and(|n| n.contains(note_has))
                });
            if let Some(e) = found {
                return e;
            }
            assert!(
                start.elapsed() < WAIT,
                "no {reason} Event saying {note_has:?}: {:#?}",
                self.double.list(&gvr::EVENTS_K8S_IO, None)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn edit(&self, f: impl FnOnce(&mut Value)) {
        let mut v = self.double.get(&VWC, "", NAME).expect("configuration");
        f(&mut v);
        self.double.put_object(v).expect("admin edit");
    }

    fn writes_by_the_guard(&self) -> usize {
        self.double.count_where(|r| {
            r.gvr.as_ref() == Some(&VWC)
                && matches!(
                    r.verb,
                    Verb::Create | Verb::Update | Verb::Patch | Verb::Delete
                )
        })
    }
}

#[tokio::test]
async fn deletion_narrowed_rules_and_failure_policy_are_detected_and_repair_off_never_writes() {
    let g = start(None).await;
    assert!(
        g.readiness.report().contains("is as installed; repair off"),
        "{}",
        g.readiness.report()
    );

    g.double.delete_object(&VWC, "", NAME).expect("deleted");
    g.wait_gauge("deleted", 0).await;
    let e = g
        .wait_event(watch::EVENT_CHANGED, "the configuration was deleted")
        .await;
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["regarding"]["kind"], "ValidatingWebhookConfiguration");
    assert_eq!(e["regarding"]["name"], NAME);
    let report = g.readiness.report();
    assert!(report.contains("[+]webhook-configuration ok: ValidatingWebhookConfiguration fleet-delete-guard is NOT as installed"), "{report}");
    assert!(g.readiness.is_ready(), "informational: never un-Ready");

    // Put back by the admin: intact again.
    g.double.seed(installed()).expect("reinstall");
    g.wait_gauge("none", 1).await;
    g.wait_event(watch::EVENT_INTACT, "as installed again")
        .await;

    g.edit(|v| v["webhooks"][0]["rules"][0]["resources"] = json!(["configmaps"]));
    g.wait_gauge("rules_narrowed", 0).await;
    g.wait_event(watch::EVENT_CHANGED, "no longer receives DELETE */*/*")
        .await;

    g.edit(|v| {
        v["webhooks"][0]["rules"][0]["resources"] = json!(["*"]);
        v["webhooks"][0]["failurePolicy"] = json!("Fail");
    });
    g.wait_gauge("failure_policy_changed", 0).await;
    assert!(
        !g.metrics.encode().contains("reason=\"rules_narrowed\""),
        "only the current reasons"
    );
    g.wait_event(watch::EVENT_CHANGED, "failurePolicy is Fail, not Ignore")
        .await;

    assert_eq!(
        g.writes_by_the_guard(),
        0,
        "repair off: the admin's change stays"
    );
    assert_eq!(
        g.double.get(&VWC, "", NAME).expect("vwc")["webhooks"][0]["failurePolicy"],
        "Fail"
    );
    assert_eq!(g.double.open_watches(), 1, "one watch, on that one object");
    let watched = g
        .double
        .requests()
        .into_iter()
        .filter(|r| r.gvr.as_ref() == Some(&VWC))
        .all(|r| {
            r.query
                .contains("fieldSelector=metadata.name%3Dfleet-delete-guard")
        });
    assert!(
        watched,
        "every read is field-selected: {:#?}",
        g.double.requests()
    );
}

#[tokio::test]
async fn repair_on_re_creates_a_deleted_configuration_and_re_asserts_an_edited_one() {
    let g = start(Some(Duration::from_millis(200))).await;
    assert!(
        g.readiness.report().contains("repair on"),
        "{}",
        g.readiness.report()
    );

    g.double.delete_object(&VWC, "", NAME).expect("deleted");
    let back = g
        .double
        .wait_for(&VWC, "", NAME, |_| true, WAIT)
        .await
        .expect("re-created");
    assert_eq!(back["webhooks"][0]["failurePolicy"], "Ignore");
    g.wait_event(watch::EVENT_RESTORED, "re-created as installed")
        .await;
    g.wait_gauge("none", 1).await;

    g.edit(|v| {
        v["webhooks"][0]["failurePolicy"] = json!("Fail");
        v["metadata"]["labels"]["team"] = json!("platform");
    });
    let back = g
        .double
        .wait_for(
            &VWC,
            "",
            NAME,
            |v| v["webhooks"][0]["failurePolicy"] == "Ignore",
            WAIT,
        )
        .await
        .expect("re-asserted");
    assert_eq!(
        back["metadata"]["labels"]["team"], "platform",
        "metadata is the admin's"
    );
    g.wait_event(watch::EVENT_RESTORED, "re-asserted as installed")
        .await;
    g.wait_gauge("none", 1).await;
    let restored = "fleet_delete_guard_webhook_configuration_restores_total{result=\"restored\"} 2";
    assert!(
        g.metrics.encode().contains(restored),
        "{}",
        g.metrics.encode()
    );
}

#[tokio::test]
async fn repair_is_rate_limited() {
    // One repair per hour: the first attempt is refused, a second deletion within the
    // hour is reported but not repaired.
    let g = start(Some(Duration::from_secs(3600))).await;
    let fault = g.double.inject(
        kube_api_double::Fault::new(Verb::Create, "validatingwebhookconfigurations")
            .always()
            .respond(403),
    );
    g.double.delete_object(&VWC, "", NAME).expect("deleted");
    g.wait_gauge("deleted", 0).await;
    let failed = "webhook_configuration_restores_total{result=\"failed\"} 1";
    let start = Instant::now();
    while !g.metrics.encode().contains(failed) {
        assert!(start.elapsed() < WAIT, "{}", g.metrics.encode());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    g.double.seed(installed()).expect("the admin puts it back");
    g.wait_gauge("none", 1).await;
    g.double
        .delete_object(&VWC, "", NAME)
        .expect("deleted again");
    g.wait_gauge("deleted", 0).await;
    assert_eq!(
        g.double.fault_hits(fault),
        1,
        "no second attempt within the interval"
    );
}

#[tokio::test]
async fn a_failed_repair_is_retried_after_the_interval() {
    let g = start(Some(Duration::from_millis(200))).await;
    let fault = g.double.inject(
        kube_api_double::Fault::new(Verb::Create, "validatingwebhookconfigurations").respond(500),
    );
    g.double.delete_object(&VWC, "", NAME).expect("deleted");
    g.double
        .wait_for(&VWC, "", NAME, |_| true, WAIT)
        .await
        .expect("re-created by the retry");
    assert_eq!(g.double.fault_hits(fault), 1);
    g.wait_gauge("none", 1).await;
    let text = g.metrics.encode();
    assert!(
        text.contains("webhook_configuration_restores_total{result=\"failed\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("webhook_configuration_restores_total{result=\"restored\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_repair_that_meets_another_writer_is_a_conflict_and_is_decided_again() {
    // Another replica re-created it first (409): not a failure; looked at again.
    let g = start(Some(Duration::from_millis(200))).await;
    let fault = g.double.inject(
        kube_api_double::Fault::new(Verb::Create, "validatingwebhookconfigurations").respond(409),
    );
    g.double.delete_object(&VWC, "", NAME).expect("deleted");
    g.double
        .wait_for(&VWC, "", NAME, |_| true, WAIT)
        .await
        .expect("re-created on the next look");
    assert_eq!(g.double.fault_hits(fault), 1);
    g.wait_gauge("none", 1).await;
    let text = g.metrics.encode();
    assert!(
        text.contains("webhook_configuration_restores_total{result=\"conflict\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains("webhook_configuration_restores_total{result=\"failed\"}"),
        "{text}"
    );
}
