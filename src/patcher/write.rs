//! One status write with optimistic concurrency, for every Fleet object kind: read,
//! load what the edit depends on, apply a pure typed edit, merge-patch with the read
//! resourceVersion as precondition; on 409 do it all again.
//!
//! The edit is a pure function of the current object (the status deltas are
//! idempotent), so re-applying it after a conflict, after a retry whose first
//! attempt did land, or on another replica never counts a deletion twice.

use std::time::Duration;

use kube::core::Status;
use rand::Rng;
use serde_json::json;

use super::fleet_api::{FleetApi, StatusObject};
use crate::{
    delta::merge_patch::merge_patch_diff,
    fleet::api::FleetResource,
    metrics::{Metrics, ObjectLabels, PatchLabels},
};

/// How hard to try.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Re-reads after 409 Conflict before giving up.
    pub max_conflicts: u32,
    /// Attempts after 5xx, 429, timeouts and transport errors.
    pub max_transient: u32,
    /// First backoff; doubles each time, with full jitter, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Bound on each API call.
    pub call_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_conflicts: 16,
            max_transient: 8,
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            call_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a status write did not happen. `E` is the edit's own error.
#[derive(Debug, thiserror::Error)]
pub enum WriteError<E: std::error::Error + 'static> {
    #[error("{object} {name}: {code} {reason}: {message} (not retried)")]
    Permanent {
        object: &'static str,
        name: String,
        code: u16,
        reason: String,
        message: String,
    },
    #[error("{object} {name}: gave up after {attempts} attempts: {last}")]
    Exhausted {
        object: &'static str,
        name: String,
        attempts: u32,
        last: String,
    },
    /// The object read does not parse as Fleet's type (a field of a type Fleet never
    /// writes): nothing is written over what cannot be read.
    #[error("{object} {name}: cannot read the object: {message}")]
    Unreadable {
        object: &'static str,
        name: String,
        message: String,
    },
    #[error("{object} {name}: cannot edit the status")]
    Edit {
        object: &'static str,
        name: String,
        #[source]
        source: E,
    },
}

impl<E: std::error::Error + 'static> WriteError<E> {
    /// Label for the `failed` result of the patch metric.
    pub fn reason(&self) -> &'static str {
        match self {
            WriteError::Permanent { code: 403, .. } => "forbidden",
            WriteError::Permanent { code: 404, .. } => "not_found",
            WriteError::Permanent { .. } => "rejected",
            WriteError::Exhausted { .. } => "exhausted",
            WriteError::Unreadable { .. } => "unreadable",
            WriteError::Edit { .. } => "edit",
        }
    }
}

/// The result of a successful write.
#[derive(Debug, Clone)]
pub enum Written<K> {
    /// The edit changed nothing: the object already says it. Carries the object read.
    Unchanged(K),
    /// Patched; `after` is what the API server returned.
    Patched { after: K },
}

impl<K> Written<K> {
    pub fn object(&self) -> &K {
        match self {
            Written::Unchanged(o) => o,
            Written::Patched { after } => after,
        }
    }

    pub fn into_object(self) -> K {
        match self {
            Written::Unchanged(o) => o,
            Written::Patched { after } => after,
        }
    }

    pub fn patched(&self) -> bool {
        matches!(self, Written::Patched { .. })
    }
}

enum CallError<E> {
    Conflict(String),
    Transient(String),
    Permanent(Box<Status>),
    Unreadable(String),
    Edit(E),
}

fn classify<E>(e: kube::Error) -> CallError<E> {
    match e {
        kube::Error::Api(status) if status.is_conflict() => {
            CallError::Conflict(status.message.clone())
        }
        kube::Error::Api(status) if status.code == 429 || status.code >= 500 => {
            CallError::Transient(format!("{} {}", status.code, status.message))
        }
        kube::Error::Api(status) => CallError::Permanent(status),
        kube::Error::SerdeError(e) => CallError::Unreadable(e.to_string()),
        other => CallError::Transient(other.to_string()),
    }
}

async fn call<T, E>(
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, CallError<E>> {
    match tokio::time::timeout(timeout, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(e)),
        Err(_) => Err(CallError::Transient(format!(
            "no answer within {timeout:?}"
        ))),
    }
}

/// Read `name` through its status subresource, load what the edit needs to know
/// besides it (`load`, called after every read, so it is never older than the object
/// read), apply `edit`, and merge-patch the difference with the read resourceVersion as
/// precondition. `edit` returns the new status, or `None` when the object already says
/// what it should. On 409 the whole cycle — read, load, edit — runs again.
pub async fn update_status<K, C, E, L, F>(
    api: &FleetApi<K>,
    name: &str,
    policy: &RetryPolicy,
    metrics: &Metrics,
    mut load: impl FnMut() -> L,
    mut edit: F,
) -> Result<Written<K>, WriteError<E>>
where
    K: StatusObject,
    L: std::future::Future<Output = C>,
    E: std::error::Error + 'static,
    F: FnMut(&K, &C) -> Result<Option<K::Status>, E>,
{
    let object = metric_label(api.resource());
    let mut conflicts = 0u32;
    let mut transient = 0u32;
    let labels = ObjectLabels { object };
    let fail = |e: WriteError<E>| {
        metrics
            .patches
            .get_or_create(&PatchLabels {
                object,
                result: "failed",
            })
            .inc();
        Err(e)
    };
    loop {
        let result: Result<Written<K>, CallError<E>> = async {
            let current: K = call(policy.call_timeout, api.get_status(name)).await?;
            let context = load().await;
            let new_status = match edit(&current, &context) {
                Ok(Some(s)) if Some(&s) != current.current_status() => s,
                Ok(_) => return Ok(Written::Unchanged(current)),
                Err(e) => return Err(CallError::Edit(e)),
            };
            let encode = |s: Option<&K::Status>| {
                serde_json::to_value(s)
                    .map_err(|e| CallError::Transient(format!("cannot encode the status: {e}")))
            };
            let old_status = encode(current.current_status())?;
            let new_status = encode(Some(&new_status))?;
            let body = json!({
                "metadata": { "resourceVersion": current.resource_version() },
                "status": merge_patch_diff(&old_status, &new_status),
            });
            let after = call(policy.call_timeout, api.patch_status(name, &body)).await?;
            Ok(Written::Patched { after })
        }
        .await;

        match result {
            Ok(written) => {
                let result = if written.patched() {
                    "patched"
                } else {
                    "unchanged"
                };
                metrics
                    .patches
                    .get_or_create(&PatchLabels { object, result })
                    .inc();
                return Ok(written);
            }
            Err(CallError::Conflict(message)) => {
                tracing::debug!(object, name, "409 Conflict; re-reading and re-applying");
                metrics.conflicts.get_or_create(&labels).inc();
                conflicts += 1;
                if conflicts > policy.max_conflicts {
                    return fail(WriteError::Exhausted {
                        object,
                        name: name.to_string(),
                        attempts: conflicts,
                        last: format!("409 Conflict: {message}"),
                    });
                }
                // A few ms of jitter keeps two replicas from colliding in lockstep.
                let jitter = rand::rng().random_range(0..=5u64);
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
            Err(CallError::Transient(message)) => {
                tracing::debug!(object, name, error = %message, attempt = transient + 1, "status write failed; retrying");
                metrics.retries.get_or_create(&labels).inc();
                transient += 1;
                if transient >= policy.max_transient {
                    return fail(WriteError::Exhausted {
                        object,
                        name: name.to_string(),
                        attempts: transient,
                        last: message,
                    });
                }
                tokio::time::sleep(backoff(policy, transient)).await;
            }
            Err(CallError::Unreadable(message)) => {
                return fail(WriteError::Unreadable {
                    object,
                    name: name.to_string(),
                    message,
                })
            }
            Err(CallError::Edit(source)) => {
                return fail(WriteError::Edit {
                    object,
                    name: name.to_string(),
                    source,
                })
            }
            Err(CallError::Permanent(status)) => {
                return fail(WriteError::Permanent {
                    object,
                    name: name.to_string(),
                    code: status.code,
                    reason: status.reason.clone(),
                    message: status.message.clone(),
                })
            }
        }
    }
}

/// The `object` label of the patch metrics: the lower-case kind.
pub fn metric_label(resource: FleetResource) -> &'static str {
    match resource.kind {
        "BundleDeployment" => "bundledeployment",
        "GitRepo" => "gitrepo",
        "HelmOp" => "helmop",
        _ => "bundle",
    }
}

/// Exponential backoff with full jitter: uniform in [0, min(max, base·2^(n-1))].
pub fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .base_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let cap = exp.min(policy.max_backoff);
    let millis = cap.as_millis().max(1) as u64;
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_grows() {
        let p = RetryPolicy::default();
        for attempt in 1..40 {
            assert!(backoff(&p, attempt) <= p.max_backoff);
        }
        let cap = |n: u32| {
            p.base_backoff
                .saturating_mul(1 << (n - 1))
                .min(p.max_backoff)
        };
        assert_eq!(cap(1), Duration::from_millis(50));
        assert_eq!(cap(3), Duration::from_millis(200));
        assert_eq!(cap(10), Duration::from_secs(2));
    }
}
