//! Tamper evidence for the webhook's own ValidatingWebhookConfiguration (docs:
//! "When someone removes the guard").
//!
//! kube-apiserver never sends admission reviews for webhook configurations, so nothing
//! stops an administrator, a compromised account or a careless `kubectl delete -k`
//! from taking the guard out of the API path before deleting Fleet-managed objects.
//! The guard cannot prevent that; it notices it and says so.
//!
//! - [`intended`] (pure): the configuration the webhook is meant to run under, from
//!   the manifest it was installed with (`--webhook-config-manifest FILE` or
//!   `builtin:base|breaker|breaker-fail-closed`, else the compiled-in
//!   `deploy/base/webhook.yaml`).
//! - [`compare`] (pure): intended versus observed → typed [`Tamper`] reasons (deleted,
//!   entry removed, rules narrowed, failurePolicy / matchConditions / selectors /
//!   timeoutSeconds changed, caBundle no longer trusting our CA).
//! - [`watch`] (adapter): one kube-runtime watch on that one object; reports each
//!   change of verdict (gauge, Event, log line, `/readyz` line) and, with
//!   `--restore-webhook-configuration`, hands the repair to [`restore`].
//! - [`restore`] (adapter): re-creates or re-asserts the configuration as installed,
//!   rate-limited.

pub mod compare;
pub mod intended;
pub mod restore;
pub mod watch;

pub use compare::{compare, Reason, Tamper};
pub use intended::{Intended, ManifestError};
