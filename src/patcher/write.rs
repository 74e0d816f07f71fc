//! One status write with optimistic concurrency: read, edit, merge-patch with the
//! read resourceVersion as precondition; on 409 read again and re-apply the edit.
//!
//! The edit is a pure function of the current object (the status deltas are
//! idempotent), so re-applying it after a conflict, after a retry whose first
//! attempt did land, or on another replica never counts a deletion twice.

use std::time::Duration;

use kube::{
    api::{Api, DynamicObject, Patch, PatchParams},
    core::Status,
};
use rand::Rng;
use serde_json::{json, Value};

use crate::{
    delta::merge_patch::merge_patch_diff,
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

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
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
    #[error("{object} {name}: cannot edit the status: {message}")]
    Edit {
        object: &'static str,
        name: String,
        message: String,
    },
}

impl WriteError {
    /// Label for the `failed` result of the patch metric.
    pub fn reason(&self) -> &'static str {
        match self {
            WriteError::Permanent { code: 403, .. } => "forbidden",
            WriteError::Permanent { code: 404, .. } => "not_found",
            WriteError::Permanent { .. } => "rejected",
            WriteError::Exhausted { .. } => "exhausted",
            WriteError::Edit { .. } => "edit",
        }
    }
}

/// The result of a successful write.
#[derive(Debug, Clone)]
pub enum Written {
    /// The edit changed nothing: the object already says it. Carries the object read.
    Unchanged(Value),
    /// Patched; `before` is the object the edit was applied to, `after` what the
    /// API server returned.
    Patched { before: Value, after: Value },
}

impl Written {
    pub fn object(&self) -> &Value {
        match self {
            Written::Unchanged(o) => o,
            Written::Patched { after, .. } => after,
        }
    }
}

enum CallError {
    Conflict(String),
    Transient(String),
    Permanent(Box<Status>),
}

fn classify(e: kube::Error) -> CallError {
    match e {
        kube::Error::Api(status) if status.is_conflict() => {
            CallError::Conflict(status.message.clone())
        }
        kube::Error::Api(status) if status.code == 429 || status.code >= 500 => {
            CallError::Transient(format!("{} {}", status.code, status.message))
        }
        kube::Error::Api(status) => CallError::Permanent(status),
        other => CallError::Transient(other.to_string()),
    }
}

async fn call<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(timeout, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(e)),
        Err(_) => Err(CallError::Transient(format!(
            "no answer within {timeout:?}"
        ))),
    }
}

/// Read `name`'s status, apply `edit`, and patch the difference with the read
/// resourceVersion as precondition. `edit` returns the new status, or `None` when the
/// object already says what it should.
pub async fn update_status<F>(
    api: &Api<DynamicObject>,
    object: &'static str,
    name: &str,
    policy: &RetryPolicy,
    metrics: &Metrics,
    mut edit: F,
) -> Result<Written, WriteError>
where
    F: FnMut(&Value) -> Result<Option<Value>, String>,
{
    let mut conflicts = 0u32;
    let mut transient = 0u32;
    let labels = ObjectLabels { object };
    let fail = |e: WriteError| {
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
        let result = async {
            let current = call(policy.call_timeout, api.get_status(name)).await?;
            let current = serde_json::to_value(&current)
                .map_err(|e| CallError::Transient(format!("cannot encode the object read: {e}")))?;
            let old_status = current.get("status").cloned().unwrap_or(Value::Null);
            let new_status = match edit(&current) {
                Ok(Some(s)) if s != old_status => s,
                Ok(_) => return Ok(Written::Unchanged(current)),
                Err(message) => {
                    return Err(CallError::Permanent(Box::new(Status::failure(
                        &message, "Edit",
                    ))))
                }
            };
            let rv = current
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(Value::Null);
            let body = json!({
                "metadata": { "resourceVersion": rv },
                "status": merge_patch_diff(&old_status, &new_status),
            });
            let after = call(
                policy.call_timeout,
                api.patch_status(name, &PatchParams::default(), &Patch::Merge(&body)),
            )
            .await?;
            let after = serde_json::to_value(&after).map_err(|e| {
                CallError::Transient(format!("cannot encode the patched object: {e}"))
            })?;
            Ok(Written::Patched {
                before: current,
                after,
            })
        }
        .await;

        match result {
            Ok(written) => {
                let result = match written {
                    Written::Unchanged(_) => "unchanged",
                    Written::Patched { .. } => "patched",
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
            Err(CallError::Permanent(status)) if status.reason == "Edit" => {
                return fail(WriteError::Edit {
                    object,
                    name: name.to_string(),
                    message: status.message.clone(),
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
