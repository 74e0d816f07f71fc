//! One kube-runtime watch on the webhook's own ValidatingWebhookConfiguration (field
//! selector `metadata.name`), and what each change of verdict reports:
//!
//! - `fleet_delete_guard_webhook_configuration_intact` (1 `reason="none"`, else 0 per
//!   reason);
//! - a Warning Event `WebhookConfigurationChanged` on the configuration (Normal
//!   `WebhookConfigurationIntact` when it is back);
//! - an error log line naming every change, and the last writer from `managedFields`
//!   (who it was as a user is in the audit log: `fleet-delete-guard audit`);
//! - the `/readyz` line `webhook-configuration`, always passing: a replica that is
//!   taken out of the API path can still answer, and un-readying every replica would
//!   only hide the webhook from the Service too.
//!
//! The caBundle is the certificate bootstrap's (src/certs.rs keeps it equal to the
//! Secret's CA): when it no longer trusts our CA, the watch asks the bootstrap to sync
//! now instead of writing it itself. With `--restore-webhook-configuration` the other
//! changes are repaired ([`super::restore`]), at most once per `min_interval`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::api::{
    admissionregistration::v1::ValidatingWebhookConfiguration, core::v1::ObjectReference,
};
use kube::{
    api::Api,
    runtime::{
        events::{Event, EventType, Recorder, Reporter},
        watcher, WatchStreamExt,
    },
    Client,
};
use tokio::sync::{watch as channel, Notify};

use super::{compare, restore, Intended, Reason, Tamper};
use crate::{
    health::Readiness,
    metrics::{Metrics, TamperLabels},
};

/// The `/readyz` line (informational: always passing).
pub const READINESS_CHECK: &str = "webhook-configuration";
/// Event reasons.
pub const EVENT_CHANGED: &str = "WebhookConfigurationChanged";
pub const EVENT_INTACT: &str = "WebhookConfigurationIntact";
pub const EVENT_RESTORED: &str = "WebhookConfigurationRestored";
/// How long one Event publish may take.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the watch needs.
pub struct Settings {
    pub client: Client,
    pub intended: Intended,
    /// This webhook's CA bundle (PEM), when the certificate bootstrap manages it.
    pub ca_bundle: Option<channel::Receiver<Option<String>>>,
    /// Ask the certificate bootstrap to sync the caBundle now.
    pub sync_ca_bundle: Option<Arc<Notify>>,
    /// `--restore-webhook-configuration`: repair, at most once per this interval.
    pub restore: Option<Duration>,
    pub metrics: Metrics,
    pub readiness: Readiness,
    /// Pod name, for the Events' reporting instance.
    pub instance: String,
}

/// Watch until the process ends.
pub async fn run(s: Settings) {
    let name = s.intended.name().to_string();
    let api: Api<ValidatingWebhookConfiguration> = Api::all(s.client.clone());
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(api.clone(), config).default_backoff().boxed();
    let mut ca = s.ca_bundle.clone();
    let mut state = State::default();
    s.readiness.set(
        READINESS_CHECK,
        true,
        format!("ValidatingWebhookConfiguration {name}: not observed yet"),
    );
    loop {
        let retry_at = state.retry_at;
        let ca_open = ca.is_some();
        tokio::select! {
            event = stream.next() => match event {
                None => return,
                Some(Ok(watcher::Event::Init)) => state.listing = Some(None),
                Some(Ok(watcher::Event::InitApply(o))) => state.listing = Some(Some(o)),
                Some(Ok(watcher::Event::InitDone)) => {
                    state.observed = state.listing.take().flatten();
                    state.seen = true;
                    evaluate(&s, &api, &mut state).await;
                }
                Some(Ok(watcher::Event::Apply(o))) => {
                    state.observed = Some(o);
                    evaluate(&s, &api, &mut state).await;
                }
                Some(Ok(watcher::Event::Delete(_))) => {
                    state.observed = None;
                    evaluate(&s, &api, &mut state).await;
                }
                Some(Err(e)) => {
                    tracing::warn!(webhook_config = %name, error = %e, "cannot watch the webhook configuration; retrying with backoff");
                    if !state.seen {
                        s.readiness.set(READINESS_CHECK, true, format!("ValidatingWebhookConfiguration {name}: cannot watch it: {e}"));
                    }
                }
            },
            changed = async {
                match ca.as_mut() {
                    Some(c) => c.changed().await,
                    None => std::future::pending().await,
                }
            }, if ca_open => {
                if changed.is_err() {
                    ca = None;
                }
                if state.seen {
                    evaluate(&s, &api, &mut state).await;
                }
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(retry_at.unwrap_or_else(Instant::now))), if retry_at.is_some() => {
                state.retry_at = None;
                evaluate(&s, &api, &mut state).await;
            }
        }
    }
}

#[derive(Default)]
struct State {
    /// The object as last seen (`None`: it does not exist).
    observed: Option<ValidatingWebhookConfiguration>,
    /// During a (re)list: what it found so far.
    listing: Option<Option<ValidatingWebhookConfiguration>>,
    /// A first list completed.
    seen: bool,
    /// The reasons last reported (`None`: nothing reported yet).
    reported: Option<Vec<Tamper>>,
    last_restore: Option<Instant>,
    retry_at: Option<Instant>,
}

async fn evaluate(s: &Settings, api: &Api<ValidatingWebhookConfiguration>, state: &mut State) {
    let ca = s.ca_bundle.as_ref().and_then(|c| c.borrow().clone());
    let tampers = compare(&s.intended, state.observed.as_ref(), ca.as_deref());
    if state.reported.as_ref() != Some(&tampers) {
        report(
            s,
            state.observed.as_ref(),
            &tampers,
            state.reported.is_some(),
        );
        state.reported = Some(tampers.clone());
    }
    if tampers.is_empty() {
        return;
    }
    let only_ca = tampers
        .iter()
        .all(|t| t.reason() == Reason::CaBundleUntrusted);
    if let (true, Some(sync)) = (only_ca, &s.sync_ca_bundle) {
        // The bootstrap's job (src/certs.rs), with or without repair.
        sync.notify_one();
        return;
    }
    let Some(min_interval) = s.restore else {
        return;
    };
    let now = Instant::now();
    if let Some(last) = state.last_restore {
        if now < last + min_interval {
            state.retry_at = Some(last + min_interval);
            return;
        }
    }
    state.last_restore = Some(now);
    let name = s.intended.name();
    let result = restore::restore(api, &s.intended, state.observed.as_ref(), ca.as_deref()).await;
    let count = |result: &'static str| {
        s.metrics
            .webhook_configuration_restores
            .get_or_create(&crate::metrics::ResultLabels { result })
            .inc()
    };
    match result {
        Ok(done) => {
            count("restored");
            let note = format!(
                "ValidatingWebhookConfiguration {name} {} as installed by fleet-delete-guard (--restore-webhook-configuration); it was changed: {}",
                done.as_str(),
                summary(&tampers)
            );
            tracing::warn!(webhook_config = %name, action = done.as_str(), changes = %summary(&tampers), "webhook configuration restored as installed");
            publish(
                s,
                state.observed.as_ref(),
                EventType::Normal,
                EVENT_RESTORED,
                "Restore",
                note,
            );
        }
        Err(e) if e.is_conflict() => {
            count("conflict");
            tracing::info!(webhook_config = %name, error = %e, "another writer changed the webhook configuration first; deciding again on what the watch sees");
            // Normally the watch brings that write at once; if not, look again later.
            state.retry_at = Some(now + min_interval);
        }
        Err(e) => {
            count("failed");
            tracing::error!(webhook_config = %name, error = %e, retry_in_s = min_interval.as_secs_f64(), "cannot restore the webhook configuration");
            state.retry_at = Some(now + min_interval);
        }
    }
}

/// `webhook_configuration_intact`: `{reason="none"} 1` when `reasons` is empty, else
/// `{reason=R} 0` for each reason and no other series. The new series are set before
/// the others are removed: a scrape in between sees the new verdict, never none.
pub fn set_gauge(metrics: &Metrics, reasons: &[Reason]) {
    let family = &metrics.webhook_configuration_intact;
    if reasons.is_empty() {
        family
            .get_or_create(&TamperLabels { reason: "none" })
            .set(1);
    }
    for r in reasons {
        family
            .get_or_create(&TamperLabels { reason: r.as_str() })
            .set(0);
    }
    let all = Reason::ALL.map(Reason::as_str);
    for label in std::iter::once("none").chain(all) {
        let wanted = if reasons.is_empty() {
            label == "none"
        } else {
            reasons.iter().any(|r| r.as_str() == label)
        };
        if !wanted {
            family.remove(&TamperLabels { reason: label });
        }
    }
}

/// Every change, `; `-separated.
pub fn summary(tampers: &[Tamper]) -> String {
    tampers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The newest `managedFields` entry: `manager (operation) at time`.
fn last_writer(o: Option<&ValidatingWebhookConfiguration>) -> Option<String> {
    let fields = o?.metadata.managed_fields.as_ref()?;
    let newest = fields.iter().max_by_key(|f| f.time.as_ref().map(|t| t.0))?;
    Some(format!(
        "{} ({}) at {}",
        newest.manager.as_deref().unwrap_or("unknown"),
        newest.operation.as_deref().unwrap_or("?"),
        newest
            .time
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default()
    ))
}

fn report(
    s: &Settings,
    observed: Option<&ValidatingWebhookConfiguration>,
    tampers: &[Tamper],
    had_verdict: bool,
) {
    let name = s.intended.name();
    let reasons: Vec<Reason> = tampers.iter().map(Tamper::reason).collect();
    set_gauge(&s.metrics, &reasons);
    let repair = if s.restore.is_some() {
        "repair on (--restore-webhook-configuration)"
    } else {
        "repair off"
    };
    if tampers.is_empty() {
        s.readiness.set(
            READINESS_CHECK,
            true,
            format!("ValidatingWebhookConfiguration {name} is as installed; {repair}"),
        );
        if had_verdict {
            tracing::info!(webhook_config = %name, "webhook configuration is as installed again");
            publish(
                s,
                observed,
                EventType::Normal,
                EVENT_INTACT,
                "Watch",
                format!("ValidatingWebhookConfiguration {name} is as installed again"),
            );
        }
        return;
    }
    let changes = summary(tampers);
    let writer = last_writer(observed);
    let labels: Vec<&str> = reasons.iter().map(|r| r.as_str()).collect();
    tracing::error!(
        webhook_config = %name,
        reasons = %labels.join(","),
        changes = %changes,
        last_writer = writer.as_deref().unwrap_or(""),
        "the webhook configuration is not as installed: deletions of Fleet-managed objects may no longer be reviewed (`fleet-delete-guard audit` shows who changed it)"
    );
    s.readiness.set(
        READINESS_CHECK,
        true,
        format!("ValidatingWebhookConfiguration {name} is NOT as installed: {changes}; {repair}"),
    );
    let mut note = format!("ValidatingWebhookConfiguration {name} is not as installed: {changes}");
    if let Some(w) = writer {
        note.push_str(&format!("; last written by {w}"));
    }
    publish(
        s,
        observed,
        EventType::Warning,
        EVENT_CHANGED,
        "Watch",
        note,
    );
}

/// Publish an Event on the configuration in the background (bounded by a timeout;
/// failures are logged).
fn publish(
    s: &Settings,
    observed: Option<&ValidatingWebhookConfiguration>,
    type_: EventType,
    reason: &'static str,
    action: &'static str,
    note: String,
) {
    let regarding = ObjectReference {
        api_version: Some("admissionregistration.k8s.io/v1".into()),
        kind: Some("ValidatingWebhookConfiguration".into()),
        name: Some(s.intended.name().to_string()),
        uid: observed.and_then(|o| o.metadata.uid.clone()),
        ..ObjectReference::default()
    };
    let recorder = Recorder::new(
        s.client.clone(),
        Reporter {
            controller: "fleet-delete-guard".into(),
            instance: Some(s.instance.clone()),
        },
    );
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(crate::patcher::events::truncate_note(note)),
        action: action.into(),
        secondary: None,
    };
    tokio::spawn(async move {
        match tokio::time::timeout(EVENT_TIMEOUT, recorder.publish(&event, &regarding)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(reason = event.reason, error = %e, "cannot publish the event")
            }
            Err(_) => tracing::warn!(reason = event.reason, "publishing the event timed out"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_has_one_series_per_verdict() {
        let m = Metrics::new();
        assert!(
            !m.encode().contains("webhook_configuration_intact{"),
            "nothing before the first look"
        );
        set_gauge(&m, &[Reason::RulesNarrowed, Reason::FailurePolicyChanged]);
        let text = m.encode();
        for line in [
            r#"fleet_delete_guard_webhook_configuration_intact{reason="rules_narrowed"} 0"#,
            r#"fleet_delete_guard_webhook_configuration_intact{reason="failure_policy_changed"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        set_gauge(&m, &[]);
        let text = m.encode();
        assert!(
            text.contains(r#"fleet_delete_guard_webhook_configuration_intact{reason="none"} 1"#),
            "{text}"
        );
        assert_eq!(
            text.matches("webhook_configuration_intact{").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn the_summary_names_every_change() {
        let t = [
            Tamper::Deleted,
            Tamper::EntryRemoved {
                webhook: "w".into(),
            },
        ];
        assert_eq!(
            summary(&t),
            "the configuration was deleted; webhook w was removed"
        );
    }

    #[test]
    fn the_last_writer_is_the_newest_managed_fields_entry() {
        let o: ValidatingWebhookConfiguration = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "g", "managedFields": [
                {"manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-01-01T00:00:00Z"},
                {"manager": "kubectl-edit", "operation": "Update", "time": "2026-01-02T00:00:00Z"}
            ]},
            "webhooks": []
        }))
        .expect("vwc");
        assert_eq!(
            last_writer(Some(&o)).as_deref(),
            Some("kubectl-edit (Update) at 2026-01-02T00:00:00Z")
        );
        assert_eq!(last_writer(None), None);
    }
}
