//! Serde types for the parts of Fleet's BundleDeployment and GitRepo objects
//! the webhook reads or rewrites.
//!
//! Every struct keeps the fields it does not know in `other`, so a
//! parse → modify → serialize round trip leaves everything else untouched and
//! a merge-patch diff only carries what was really changed. Fields are
//! omitted on output exactly where Fleet's Go types say `omitempty`; fields
//! that are missing or `null` on input parse as their zero value, like Go.
//! A known field with a wrong JSON type is a [`StatusError`], never a panic.

mod bundle_deployment;
mod common;
mod gitrepo;

pub use bundle_deployment::{
    BundleDeployment, BundleDeploymentDisplay, BundleDeploymentResource, BundleDeploymentSpec,
    BundleDeploymentStatus, ObjectMeta,
};
pub use common::{Condition, ModifiedStatus, NonReadyStatus, NonReadySummary, ResourceCounts};
pub use gitrepo::{
    BundleSummary, GitRepo, GitRepoStatus, NonReadyResource, PerClusterState, Resource,
    StatusDisplay,
};

/// A GitRepo or a HelmOp: the owners whose status Fleet computes from BundleDeployments.
pub type OwnerObject = GitRepo;
/// Fleet's `StatusBase`, shared by GitRepo and HelmOp.
pub type OwnerStatus = GitRepoStatus;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Why a Fleet object or status could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// A field Fleet defines has a JSON type Fleet would never write.
    #[error("{what} has a field of an unexpected type: {source}")]
    InvalidField {
        /// Which object/status was being read.
        what: &'static str,
        /// serde's description, naming the field and expected type.
        #[source]
        source: serde_json::Error,
    },
    /// Serializing back to JSON failed (not expected for these types).
    #[error("{what} could not be serialized: {source}")]
    Serialize {
        /// Which object/status was being written.
        what: &'static str,
        /// serde's description.
        #[source]
        source: serde_json::Error,
    },
}

/// Parses `value` into `T`; `null` parses as `T::default()` (Fleet's `+nullable`).
pub(crate) fn parse_value<T: DeserializeOwned + Default>(
    what: &'static str,
    value: &Value,
) -> Result<T, StatusError> {
    if value.is_null() {
        return Ok(T::default());
    }
    T::deserialize(value).map_err(|source| StatusError::InvalidField { what, source })
}

/// Serializes `value` to a JSON value.
pub(crate) fn to_json<T: Serialize>(what: &'static str, value: &T) -> Result<Value, StatusError> {
    serde_json::to_value(value).map_err(|source| StatusError::Serialize { what, source })
}

/// Deserializes a Go `+nullable` field: `null` becomes the zero value.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `skip_serializing_if` for Go's `omitempty` on bools.
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

/// `skip_serializing_if` for Go's `omitempty` on ints.
pub(crate) fn is_zero(n: &i64) -> bool {
    *n == 0
}
