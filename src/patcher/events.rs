//! The `ResourceDeleted` Event on a GitRepo or HelmOp: one per owner and patch batch,
//! published by one task through a bounded queue.
//!
//! Memory stays bounded whatever the deletion rate:
//!
//! - one Event per GitRepo per batch (its note names up to [`NOTE_MAX_LISTED`]
//!   deletions and says how many more), so the Event rate follows the patch worker's
//!   ticks, not the deletions;
//! - Events wait in a bounded queue ([`PatcherConfig::event_queue_capacity`]); when it is
//!   full the Event is dropped and counted (`events_total{result="dropped"}`), never
//!   queued without bound and never a task per Event;
//! - each Event is published by a fresh kube-runtime [`Recorder`]. A long-lived
//!   `Recorder` caches every Event it published for 6 minutes, with no size bound, to
//!   patch repeats into a series — and would publish a repeat with the first note, which
//!   is wrong for notes that differ per batch. A fresh one holds one Event at a time.
//!
//! [`PatcherConfig::event_queue_capacity`]: super::PatcherConfig::event_queue_capacity

use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    runtime::events::{Event, EventType, Recorder, Reporter},
    Client,
};
use tokio::sync::mpsc;

use crate::{
    fleet::{api::FleetResource, status::OwnerObject, OwnerRef},
    metrics::{Metrics, ResultLabels},
};

/// Event reason on the owner for counted deletions.
pub const EVENT_REASON: &str = "ResourceDeleted";
/// Event action (not shown by `kubectl describe`).
pub const EVENT_ACTION: &str = "Count";
/// kube-apiserver refuses an Event whose note is longer (bytes).
pub const NOTE_MAX_BYTES: usize = 1024;
/// Deletions named in one note at most; the others are counted ("and K more").
pub const NOTE_MAX_LISTED: usize = 10;

/// One counted deletion, as a note names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// `configmap default/name`.
    pub object: String,
    /// Who deleted it (empty: unknown).
    pub user: String,
    pub bundle: String,
    pub cluster: String,
}

impl Deletion {
    fn user(&self) -> &str {
        if self.user.is_empty() {
            "unknown"
        } else {
            &self.user
        }
    }
}

/// What the Event is about: the owner object as the API returned it.
pub fn regarding(owner: &OwnerRef, object: &OwnerObject) -> ObjectReference {
    let resource = FleetResource::of_owner(owner.kind);
    let uid = &object.metadata.uid;
    ObjectReference {
        api_version: Some(resource.api_version().into()),
        kind: Some(resource.kind.into()),
        namespace: Some(owner.namespace.clone()),
        name: Some(owner.name.clone()),
        uid: (!uid.is_empty()).then(|| uid.clone()),
        ..ObjectReference::default()
    }
}

/// The note of the Event for `deletions` counted at `when`; `None` when there are none.
///
/// One deletion reads as before aggregation:
/// `configmap default/a deleted by alice at T; counted as missing in bundle B on cluster C`.
/// Several: `3 deletions counted as missing at T: configmap default/a deleted by alice
/// (bundle B, cluster C); …; and 1 more`. Never longer than [`NOTE_MAX_BYTES`].
pub fn note(deletions: &[Deletion], when: &str) -> Option<String> {
    let note = match deletions {
        [] => return None,
        [d] => format!(
            "{} deleted by {} at {when}; counted as missing in bundle {} on cluster {}",
            d.object,
            d.user(),
            d.bundle,
            d.cluster
        ),
        _ => {
            let total = deletions.len();
            let mut note = format!("{total} deletions counted as missing at {when}: ");
            let mut listed = 0;
            for (i, d) in deletions.iter().take(NOTE_MAX_LISTED).enumerate() {
                let entry = format!(
                    "{}{} deleted by {} (bundle {}, cluster {})",
                    if i == 0 { "" } else { "; " },
                    d.object,
                    d.user(),
                    d.bundle,
                    d.cluster
                );
                let rest = total - i - 1;
                let tail = if rest == 0 { 0 } else { more(rest).len() };
                let room = NOTE_MAX_BYTES.saturating_sub(note.len() + tail);
                if entry.len() > room {
                    if i == 0 {
                        // Name the first one, cut, rather than none.
                        note.push_str(&truncate(entry, room));
                        listed = 1;
                    }
                    break;
                }
                note.push_str(&entry);
                listed += 1;
            }
            if listed < total {
                note.push_str(&more(total - listed));
            }
            note
        }
    };
    Some(truncate(note, NOTE_MAX_BYTES))
}

fn more(k: usize) -> String {
    format!("; and {k} more")
}

/// A note kube-apiserver accepts: at most [`NOTE_MAX_BYTES`], ending in `…` when cut.
pub fn truncate_note(note: String) -> String {
    truncate(note, NOTE_MAX_BYTES)
}

/// At most `max` bytes, cut at a character boundary and ending in `…` when cut.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    const ELLIPSIS: &str = "…";
    let mut end = max.saturating_sub(ELLIPSIS.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(ELLIPSIS);
    s
}

/// An Event waiting to be published.
#[derive(Debug)]
pub struct Pending {
    pub regarding: ObjectReference,
    /// [`EVENT_REASON`] for counted deletions; the breaker's `BreakerTripped`.
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
}

/// The patch worker's end of the queue.
#[derive(Clone)]
pub struct EventQueue {
    tx: mpsc::Sender<Pending>,
    metrics: Metrics,
}

/// The publisher's end of the queue.
pub type EventReceiver = mpsc::Receiver<Pending>;

fn count(metrics: &Metrics, result: &'static str) {
    metrics.events.get_or_create(&ResultLabels { result }).inc();
}

impl EventQueue {
    /// A queue holding at most `capacity` Events (at least 1).
    pub fn new(capacity: usize, metrics: Metrics) -> (EventQueue, EventReceiver) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (EventQueue { tx, metrics }, rx)
    }

    /// Queue an Event without waiting; when the queue is full (or the publisher is
    /// gone) it is dropped and counted. Returns whether it was queued.
    pub fn offer(&self, pending: Pending) -> bool {
        match self.tx.try_send(pending) {
            Ok(()) => true,
            Err(e) => {
                let (why, pending) = match e {
                    mpsc::error::TrySendError::Full(p) => ("queue full", p),
                    mpsc::error::TrySendError::Closed(p) => ("publisher stopped", p),
                };
                count(&self.metrics, "dropped");
                tracing::warn!(
                    kind = pending.regarding.kind.as_deref().unwrap_or(""),
                    name = pending.regarding.name.as_deref().unwrap_or(""),
                    reason = pending.reason,
                    why,
                    "event dropped (the deletions are counted all the same)"
                );
                false
            }
        }
    }
}

/// Publishes the queued Events one at a time until every [`EventQueue`] is dropped.
/// Each publish is bounded by `timeout`; failures are logged and counted
/// (`events_total{result="failed"}`), not retried.
pub async fn publish(
    mut rx: EventReceiver,
    client: Client,
    reporter: Reporter,
    timeout: Duration,
    metrics: Metrics,
) {
    while let Some(p) = rx.recv().await {
        let event = Event {
            type_: EventType::Warning,
            reason: p.reason.into(),
            note: Some(p.note),
            action: p.action.into(),
            secondary: None,
        };
        // A fresh Recorder: its cache dies with it (see the module documentation).
        let recorder = Recorder::new(client.clone(), reporter.clone());
        let owner = format!(
            "{} {}/{}",
            p.regarding.kind.as_deref().unwrap_or(""),
            p.regarding.namespace.as_deref().unwrap_or(""),
            p.regarding.name.as_deref().unwrap_or("")
        );
        match tokio::time::timeout(timeout, recorder.publish(&event, &p.regarding)).await {
            Ok(Ok(())) => count(&metrics, "published"),
            Ok(Err(e)) => {
                count(&metrics, "failed");
                tracing::warn!(%owner, reason = event.reason, error = %e, "cannot publish the event");
            }
            Err(_) => {
                count(&metrics, "failed");
                tracing::warn!(
                    %owner,
                    reason = event.reason,
                    timeout_ms = timeout.as_millis() as u64,
                    "publishing the event timed out"
                );
            }
        }
    }
    tracing::debug!("event publisher stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deletion(i: usize) -> Deletion {
        Deletion {
            object: format!("configmap default/cm-{i:03}"),
            user: "alice".into(),
            bundle: "many-config".into(),
            cluster: "fleet-local/local".into(),
        }
    }

    const WHEN: &str = "2026-11-26T01:02:03Z";

    #[test]
    fn no_deletion_no_note() {
        assert_eq!(note(&[], WHEN), None);
    }

    #[test]
    fn one_deletion_reads_as_a_sentence() {
        let mut d = deletion(1);
        d.user.clear();
        assert_eq!(
            note(&[d], WHEN).as_deref(),
            Some("configmap default/cm-001 deleted by unknown at 2026-11-26T01:02:03Z; counted as missing in bundle many-config on cluster fleet-local/local")
        );
    }

    #[test]
    fn several_deletions_are_listed() {
        let n = note(&[deletion(1), deletion(2)], WHEN).expect("note");
        assert_eq!(
            n,
            "2 deletions counted as missing at 2026-11-26T01:02:03Z: \
             configmap default/cm-001 deleted by alice (bundle many-config, cluster fleet-local/local); \
             configmap default/cm-002 deleted by alice (bundle many-config, cluster fleet-local/local)"
        );
    }

    #[test]
    fn a_burst_names_at_most_ten_and_counts_the_rest() {
        let all: Vec<Deletion> = (0..500).map(deletion).collect();
        let n = note(&all, WHEN).expect("note");
        assert!(n.starts_with("500 deletions counted as missing at "), "{n}");
        assert!(n.len() <= NOTE_MAX_BYTES, "{} bytes", n.len());
        let listed = n.matches(" deleted by alice").count();
        assert!((1..=NOTE_MAX_LISTED).contains(&listed), "{listed}: {n}");
        assert!(n.ends_with(&format!("; and {} more", 500 - listed)), "{n}");
        // The first ones are named, in order.
        assert!(
            n.contains("configmap default/cm-000 deleted by alice"),
            "{n}"
        );
    }

    #[test]
    fn long_names_keep_the_note_within_the_api_limit() {
        let long = |i: usize| Deletion {
            object: format!("configmap {}/{}-{i}", "n".repeat(63), "x".repeat(240)),
            user: format!(
                "system:serviceaccount:{}:{}",
                "ü".repeat(60),
                "y".repeat(200)
            ),
            ..deletion(i)
        };
        let all: Vec<Deletion> = (0..3).map(long).collect();
        let n = note(&all, WHEN).expect("note");
        assert!(n.len() <= NOTE_MAX_BYTES, "{} bytes", n.len());
        assert!(n.ends_with("; and 2 more"), "{n}");
        // One deletion with a name too long for the limit is cut, not refused by the API.
        let one = note(&all[..1], WHEN).expect("note");
        assert!(one.len() <= NOTE_MAX_BYTES, "{} bytes", one.len());
        let huge = Deletion {
            object: "ü".repeat(600),
            ..deletion(0)
        };
        let cut = note(std::slice::from_ref(&huge), WHEN).expect("note");
        assert!(cut.len() <= NOTE_MAX_BYTES && cut.ends_with('…'), "{cut}");
        // Several, the first already too long for the limit: it is cut too.
        let first_too_long = note(&[huge, deletion(1)], WHEN).expect("note");
        assert!(first_too_long.len() <= NOTE_MAX_BYTES, "{first_too_long}");
        assert!(first_too_long.contains(": üü"), "{first_too_long}");
        assert!(
            first_too_long.ends_with("…; and 1 more"),
            "{first_too_long}"
        );
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("abc".into(), 3), "abc");
        let cut = truncate("üüüü".into(), 6);
        assert_eq!(cut, "ü…");
    }

    fn pending(name: &str) -> Pending {
        Pending {
            regarding: ObjectReference {
                name: Some(name.into()),
                ..ObjectReference::default()
            },
            reason: EVENT_REASON,
            action: EVENT_ACTION,
            note: "n".into(),
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let metrics = Metrics::new();
        let (queue, mut rx) = EventQueue::new(2, metrics.clone());
        let offered: Vec<bool> = (0..5)
            .map(|i| queue.offer(pending(&format!("r{i}"))))
            .collect();
        assert_eq!(offered, [true, true, false, false, false]);
        let text = metrics.encode();
        assert!(
            text.contains(r#"fleet_delete_guard_events_total{result="dropped"} 3"#),
            "{text}"
        );
        // The queued ones are the first two; once taken, there is room again.
        assert_eq!(
            rx.try_recv()
                .map(|p| p.regarding.name)
                .ok()
                .flatten()
                .as_deref(),
            Some("r0")
        );
        assert!(queue.offer(pending("r5")));
        drop(rx);
        assert!(!queue.offer(pending("r6")), "publisher gone");
        assert!(metrics
            .encode()
            .contains(r#"fleet_delete_guard_events_total{result="dropped"} 4"#));
    }

    #[test]
    fn a_zero_capacity_still_holds_one() {
        let (queue, _rx) = EventQueue::new(0, Metrics::new());
        assert!(queue.offer(pending("r")));
        assert!(!queue.offer(pending("r")));
    }
}
