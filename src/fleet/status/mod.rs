//! Serde types for the parts of Fleet's BundleDeployment and GitRepo objects
//! the webhook reads or rewrites.
//!
//! Every struct keeps the fields it does not know in `other`, so a
//! parse → modify → serialize round trip leaves everything else untouched and
//! a merge-patch diff only carries what was really changed.
//!
//! Go's rules, said one way everywhere: absent, `null` or empty means the zero value.
//!
//! - Every struct says `#[serde(default, rename_all = "camelCase")]`: a field that is
//!   absent parses as its zero value (the derived `Default`), and fields are named as
//!   Fleet's JSON names them (an explicit `rename` only where Go's name is not the
//!   camel case of ours, e.g. `deploymentID`).
//! - Every field says `deserialize_with = "nullable"`: `null` parses as the zero value
//!   (Fleet's `+nullable`).
//! - A field whose Go tag says `omitempty` adds `skip_serializing_if = "Zero::is_zero"`
//!   ([`Zero`]): empty is not written, exactly where Fleet would not write it.
//!
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

/// Go's zero value, which `omitempty` leaves out of the JSON:
/// `skip_serializing_if = "Zero::is_zero"` on a field is its Go tag's `,omitempty`.
pub(crate) trait Zero {
    fn is_zero(&self) -> bool;
}

impl Zero for String {
    fn is_zero(&self) -> bool {
        self.is_empty()
    }
}

impl Zero for bool {
    fn is_zero(&self) -> bool {
        !*self
    }
}

impl Zero for i64 {
    fn is_zero(&self) -> bool {
        *self == 0
    }
}

impl<T> Zero for Vec<T> {
    fn is_zero(&self) -> bool {
        self.is_empty()
    }
}

impl<K, V> Zero for std::collections::BTreeMap<K, V> {
    fn is_zero(&self) -> bool {
        self.is_empty()
    }
}

/// A Go pointer: nil.
impl<T> Zero for Option<T> {
    fn is_zero(&self) -> bool {
        self.is_none()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map};

    use super::*;

    /// Absent → zero, and the zero value written as Fleet writes it: only the fields
    /// without `omitempty`, under Fleet's names.
    fn zero_round_trip<T>(written: &str)
    where
        T: DeserializeOwned + Serialize + Default + PartialEq + std::fmt::Debug,
    {
        let parsed: T = parse_value("test", &json!({})).expect("{} parses");
        assert_eq!(parsed, T::default(), "{} parses as the zero value", written);
        let json = serde_json::to_string(&T::default()).expect("serialize");
        assert_eq!(json, written);
    }

    #[test]
    fn absent_is_zero_and_zero_is_written_only_without_omitempty() {
        zero_round_trip::<Condition>(r#"{"type":"","status":""}"#);
        zero_round_trip::<ResourceCounts>(
            r#"{"ready":0,"desiredReady":0,"waitApplied":0,"modified":0,"orphaned":0,"missing":0,"unknown":0,"notReady":0}"#,
        );
        zero_round_trip::<ModifiedStatus>("{}");
        zero_round_trip::<NonReadyStatus>(r#"{"summary":{}}"#);
        zero_round_trip::<BundleSummary>(r#"{"ready":0,"desiredReady":0}"#);
        zero_round_trip::<PerClusterState>("{}");
        zero_round_trip::<GitRepoStatus>("{}");
        zero_round_trip::<BundleDeploymentSpec>("{}");
        zero_round_trip::<BundleDeploymentStatus>("{}");
        zero_round_trip::<BundleDeployment>(r#"{"metadata":{},"spec":{}}"#);
    }

    #[test]
    fn null_is_zero_and_unknown_nulls_are_kept() {
        let condition: Condition = parse_value(
            "test",
            &json!({"type": null, "status": null, "lastUpdateTime": null,
                    "lastTransitionTime": null, "reason": null, "message": null, "x": null}),
        )
        .expect("nulls parse");
        assert_eq!(
            condition.other,
            json!({"x": null}).as_object().cloned().unwrap_or_default()
        );
        assert_eq!(
            Condition {
                other: Map::new(),
                ..condition
            },
            Condition::default()
        );
        let counts: ResourceCounts = parse_value(
            "test",
            &json!({"ready": null, "desiredReady": null, "waitApplied": null, "modified": null,
                    "orphaned": null, "missing": null, "unknown": null, "notReady": null}),
        )
        .expect("nulls parse");
        assert_eq!(counts, ResourceCounts::default());
        let status: GitRepoStatus = parse_value(
            "test",
            &json!({"readyClusters": null, "summary": null, "conditions": null,
                    "resources": null, "perClusterResourceCounts": null}),
        )
        .expect("nulls parse");
        assert_eq!(status, GitRepoStatus::default());
        let bd: BundleDeployment = parse_value(
            "test",
            &json!({"metadata": null, "spec": null, "status": null}),
        )
        .expect("nulls parse");
        assert_eq!(bd, BundleDeployment::default());
    }

    #[test]
    fn names_follow_fleet_and_a_wrong_type_is_an_error() {
        let spec: BundleDeploymentSpec = parse_value(
            "test",
            &json!({"deploymentID": "a", "stagedDeploymentID": "b"}),
        )
        .expect("parse");
        let written = serde_json::to_value(&spec).expect("serialize");
        assert_eq!(
            written,
            json!({"deploymentID": "a", "stagedDeploymentID": "b"})
        );
        let err = parse_value::<ResourceCounts>("counts", &json!({"desiredReady": "x"}))
            .expect_err("a string is no count");
        assert!(
            matches!(err, StatusError::InvalidField { what: "counts", .. }),
            "{err}"
        );
    }
}
