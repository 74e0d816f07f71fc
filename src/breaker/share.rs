//! The window counts in the cluster: every counted deletion is written into this
//! replica's annotation of the counts Lease ([`super::counts`]) before it is answered,
//! and the answer to that write — the Lease with every replica's annotation — gives the
//! other replicas' deletions of the owner. So each deletion is judged on every deletion
//! whose write the API committed before its own: a burst spread over any number of
//! replicas trips at the same count as on one.
//!
//! - Writes are coalesced: one merge patch in flight per replica; deletions arriving
//!   meanwhile go into the next one (one write per API round trip at most, per replica).
//! - Nothing is written while no deletion is counted (an idle webhook writes nothing).
//! - A write that fails (403, 5xx, [`WRITE_TIMEOUT`]) degrades the breaker: this
//!   deletion and those during the retry backoff are judged on this replica's count alone,
//!   without waiting; the write is retried with backoff ([`RETRY_FIRST`] to
//!   [`RETRY_MAX`]) until it goes through.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::{api::coordination::v1::Lease, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use kube::{
    api::{Api, Patch, PatchParams, PostParams},
    ResourceExt,
};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::{
    counts::{annotation_key, encode, Others, COUNTS_LABEL, COUNTS_LEASE, MAX_PUBLISHED_OWNERS},
    degraded::Part,
    shared::Breakers,
};
use crate::fleet::OwnerRef;

/// How long one write may take before it counts as failed; a deletion waits for at most
/// two (the one in flight, then its own) before it is judged on this replica's count
/// alone (the server answers within `--request-timeout`, 4 s; kube-apiserver waits
/// `timeoutSeconds`, 5 s).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
pub const RETRY_FIRST: Duration = Duration::from_secs(2);
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// Annotations of replicas without a deletion for this long are removed.
const STALE_AFTER: Duration = Duration::from_secs(3600);

enum Request {
    /// Write, and send back the other replicas' counts (`None`: the write failed).
    Write(oneshot::Sender<Option<Arc<Others>>>),
    /// Write, nobody waits (after a reset: the owner's deletions leave this replica's
    /// annotation).
    Flush,
}

#[derive(Debug, Default)]
struct State {
    /// While set and in the future, deletions do not wait for a write.
    backoff_until: Option<Instant>,
    /// When each owner's breaker was last reset here (Unix ms): other replicas'
    /// deletions before it no longer count.
    resets: HashMap<OwnerRef, u64>,
}

/// This replica's end of the counts Lease. Cheap to clone.
#[derive(Clone)]
pub struct Sharing {
    tx: mpsc::UnboundedSender<Request>,
    state: Arc<Mutex<State>>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sharing {
    /// Start the writer of `instance`'s annotation of the counts Lease in `api`'s namespace.
    pub fn start(api: Api<Lease>, breakers: Breakers, instance: &str) -> Sharing {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(Mutex::new(State::default()));
        tokio::spawn(writer(
            rx,
            api,
            breakers,
            annotation_key(instance),
            state.clone(),
        ));
        Sharing { tx, state }
    }

    /// The other replicas' deletions of `owner` after `since_ms` (Unix ms), once this
    /// replica's deletions (the one being judged included) are written; 0 while writes
    /// fail.
    pub async fn others(&self, owner: &OwnerRef, since_ms: u64) -> u32 {
        let since_ms = {
            let state = lock(&self.state);
            if state
                .backoff_until
                .is_some_and(|until| Instant::now() < until)
            {
                return 0;
            }
            state
                .resets
                .get(owner)
                .map_or(since_ms, |reset| since_ms.max(*reset))
        };
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Request::Write(tx)).is_err() {
            return 0;
        }
        // The write in flight, then the one carrying this deletion.
        match tokio::time::timeout(2 * WRITE_TIMEOUT, rx).await {
            Ok(Ok(Some(others))) => others.count(owner, since_ms),
            _ => 0,
        }
    }

    /// `owner`'s breaker was reset at `at_ms`: older deletions of it no longer count, and
    /// this replica's annotation drops them.
    pub fn reset(&self, owner: &OwnerRef, at_ms: u64) {
        lock(&self.state).resets.insert(owner.clone(), at_ms);
        let _ = self.tx.send(Request::Flush);
    }
}

async fn writer(
    mut rx: mpsc::UnboundedReceiver<Request>,
    api: Api<Lease>,
    breakers: Breakers,
    key: String,
    state: Arc<Mutex<State>>,
) {
    let mut stale: Vec<String> = Vec::new();
    let mut retry: Option<Duration> = None;
    loop {
        let first = match retry {
            // Failing: retry after the backoff even if no deletion asks.
            Some(delay) => tokio::select! {
                r = rx.recv() => r,
                () = tokio::time::sleep(delay) => Some(Request::Flush),
            },
            None => rx.recv().await,
        };
        let Some(first) = first else { return };
        let mut waiters = Vec::new();
        let mut next = Some(first);
        while let Some(request) = next {
            if let Request::Write(w) = request {
                waiters.push(w);
            }
            next = rx.try_recv().ok();
        }
        let answer =
            match tokio::time::timeout(WRITE_TIMEOUT, write(&api, &breakers, &key, &stale)).await {
                Ok(Ok(others)) => {
                    let before = breakers
                        .now_unix_ms()
                        .saturating_sub(STALE_AFTER.as_millis() as u64);
                    stale = others.stale(before);
                    retry = None;
                    lock(&state).backoff_until = None;
                    breakers.recover(Part::Counts);
                    Some(Arc::new(others))
                }
                Ok(Err(error)) => {
                    retry = Some(backoff(retry, &state));
                    breakers.degrade(Part::Counts, error);
                    None
                }
                Err(_) => {
                    retry = Some(backoff(retry, &state));
                    breakers.degrade(Part::Counts, "timed out".to_string());
                    None
                }
            };
        breakers.count_write(answer.is_some());
        for w in waiters {
            let _ = w.send(answer.clone());
        }
    }
}

fn backoff(retry: Option<Duration>, state: &Mutex<State>) -> Duration {
    let delay = retry.map_or(RETRY_FIRST, |d| (d * 2).min(RETRY_MAX));
    lock(state).backoff_until = Some(Instant::now() + delay);
    delay
}

/// One write of this replica's annotation (creating the Lease when it does not exist),
/// removing the `stale` ones; the other replicas' counts from the answer.
async fn write(
    api: &Api<Lease>,
    breakers: &Breakers,
    key: &str,
    stale: &[String],
) -> Result<Others, String> {
    let value = breakers.published(MAX_PUBLISHED_OWNERS);
    let mut annotations = serde_json::Map::new();
    for k in stale {
        annotations.insert(k.clone(), Value::Null);
    }
    annotations.insert(key.to_string(), Value::String(value.clone()));
    let patch = json!({ "metadata": { "annotations": annotations } });
    let params = PatchParams::default();
    let read = |l: Lease| Others::read(l.annotations(), key);
    match api
        .patch(COUNTS_LEASE, &params, &Patch::Merge(&patch))
        .await
    {
        Ok(lease) => return Ok(read(lease)),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.to_string()),
    }
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(COUNTS_LEASE.to_string()),
            labels: Some(
                [
                    (COUNTS_LABEL.to_string(), "counts".to_string()),
                    (
                        "app.kubernetes.io/managed-by".to_string(),
                        "fleet-delete-guard".to_string(),
                    ),
                ]
                .into(),
            ),
            annotations: Some([(key.to_string(), value)].into()),
            ..ObjectMeta::default()
        },
        spec: None,
    };
    match api.create(&PostParams::default(), &lease).await {
        Ok(lease) => Ok(read(lease)),
        // Another replica created it first: write into it.
        Err(kube::Error::Api(s)) if s.code == 409 => api
            .patch(COUNTS_LEASE, &params, &Patch::Merge(&patch))
            .await
            .map(read)
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// This replica's annotation value: its recent deletions per owner in Unix ms.
pub(super) fn published_value(recent: Vec<(OwnerRef, Vec<Duration>)>, origin_ms: u64) -> String {
    let recent: Vec<(OwnerRef, Vec<u64>)> = recent
        .into_iter()
        .map(|(owner, stamps)| {
            let ms = stamps
                .into_iter()
                .map(|d| origin_ms.saturating_add(d.as_millis() as u64))
                .collect();
            (owner, ms)
        })
        .collect();
    encode(&recent)
}
