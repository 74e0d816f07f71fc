//! Status pieces shared by BundleDeployment and GitRepo status.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{nullable, Zero};
use crate::fleet::resource_key::{fleet_name, ResourceKey};

/// A wrangler `GenericCondition`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Ready`.
    #[serde(deserialize_with = "nullable")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[serde(deserialize_with = "nullable")]
    pub status: String,
    /// RFC 3339; touched whenever status or message changes.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub last_update_time: String,
    /// RFC 3339; Fleet rarely sets it.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub last_transition_time: String,
    /// Machine-readable reason, e.g. `Error`.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub reason: String,
    /// Human-readable message; the GitRepo's Ready message is what users see.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub message: String,
    /// Fields this crate does not model, kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Number of resources in each state (all fields always serialized: no omitempty in Fleet).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ResourceCounts {
    /// Live, ready, unmodified resources.
    #[serde(deserialize_with = "nullable")]
    pub ready: i64,
    /// Resources that should exist (live desired + missing).
    #[serde(deserialize_with = "nullable")]
    pub desired_ready: i64,
    /// Resources whose BD waits to be applied (GitRepo level only).
    #[serde(deserialize_with = "nullable")]
    pub wait_applied: i64,
    /// Live resources that drifted from the chart.
    #[serde(deserialize_with = "nullable")]
    pub modified: i64,
    /// Live resources with the hash label that the chart no longer has.
    #[serde(deserialize_with = "nullable")]
    pub orphaned: i64,
    /// Desired resources that do not exist (e.g. deleted by hand).
    #[serde(deserialize_with = "nullable")]
    pub missing: i64,
    /// Resources of incomplete or unknown BDs.
    #[serde(deserialize_with = "nullable")]
    pub unknown: i64,
    /// Live, unmodified resources that are not ready.
    #[serde(deserialize_with = "nullable")]
    pub not_ready: i64,
    /// Fields this crate does not model, kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl ResourceCounts {
    /// `self += sign * other` field by field (saturating: hostile input must not panic).
    pub fn add_scaled(&mut self, other: &ResourceCounts, sign: i64) {
        let add = |a: &mut i64, b: i64| *a = a.saturating_add(b.saturating_mul(sign));
        add(&mut self.ready, other.ready);
        add(&mut self.desired_ready, other.desired_ready);
        add(&mut self.wait_applied, other.wait_applied);
        add(&mut self.modified, other.modified);
        add(&mut self.orphaned, other.orphaned);
        add(&mut self.missing, other.missing);
        add(&mut self.unknown, other.unknown);
        add(&mut self.not_ready, other.not_ready);
    }

    /// Same numbers, ignoring unknown fields.
    pub fn same_counts(&self, other: &ResourceCounts) -> bool {
        self.ready == other.ready
            && self.desired_ready == other.desired_ready
            && self.wait_applied == other.wait_applied
            && self.modified == other.modified
            && self.orphaned == other.orphaned
            && self.missing == other.missing
            && self.unknown == other.unknown
            && self.not_ready == other.not_ready
    }
}

/// One drifted resource in BD `status.modifiedStatus` (also copied into
/// summaries). `missing` is Fleet's `Create`: the desired object does not exist.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ModifiedStatus {
    /// Kind of the object.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub kind: String,
    /// apiVersion of the object.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub api_version: String,
    /// Namespace (empty when cluster-scoped).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub namespace: String,
    /// Object name.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub name: String,
    /// Fleet would have to create it: it is missing (or exists unowned, see `exist`).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub missing: bool,
    /// With `missing`: an object of that name exists but is not owned by this BD.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub exist: bool,
    /// Fleet would delete it: an orphan.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub delete: bool,
    /// The drift patch for a modified object.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub patch: String,
    /// Fields this crate does not model, kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl ModifiedStatus {
    /// The entry Fleet's agent writes for a desired object that does not exist.
    pub fn missing(key: &ResourceKey) -> Self {
        Self {
            kind: key.kind.clone(),
            api_version: key.api_version.clone(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            missing: true,
            ..Self::default()
        }
    }

    /// The object this entry is about.
    pub fn key(&self) -> ResourceKey {
        ResourceKey {
            kind: self.kind.clone(),
            api_version: self.api_version.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// True for a plain "missing" entry (not the "not owned by us" variant).
    pub fn is_missing(&self) -> bool {
        self.missing && !self.exist
    }

    /// Order Fleet's agent sorts entries by.
    pub fn sort_key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.api_version, self.kind, self.namespace, self.name
        )
    }
}

impl fmt::Display for ModifiedStatus {
    /// Fleet's `ModifiedStatus.String()`, e.g. `configmap.v1 default/x missing`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = fleet_name(&self.api_version, &self.kind, &self.namespace, &self.name);
        if self.missing {
            if self.exist {
                write!(f, "{msg} is not owned by us")
            } else {
                write!(f, "{msg} missing")
            }
        } else if self.delete {
            write!(f, "{msg} extra")
        } else {
            write!(f, "{msg} modified {}", self.patch)
        }
    }
}

/// The agent's summary of one non-ready object (`summary.Summary`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NonReadySummary {
    /// Summarized state, e.g. `in-progress`, `updating`, `error`.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub state: String,
    /// The object reports an error.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub error: bool,
    /// The object is progressing.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub transitioning: bool,
    /// Messages from the object's conditions.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub message: Vec<String>,
    /// Fields this crate does not model, kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl fmt::Display for NonReadySummary {
    /// Fleet's `Summary.String()` (including its missing `[` when only `error`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.transitioning && !self.error {
            return f.write_str(&self.state);
        }
        let mut msg = String::new();
        if self.transitioning {
            msg.push_str("[progressing");
        }
        if self.error {
            if msg.is_empty() {
                msg.push_str("error]");
            } else {
                msg.push_str(",error]");
            }
        } else {
            msg.push(']');
        }
        if !self.message.is_empty() {
            msg.push(' ');
            msg.push_str(&self.message.join(", "));
        }
        f.write_str(&msg)
    }
}

/// One live object that is not ready, in BD `status.nonReadyStatus`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NonReadyStatus {
    /// Object UID (the agent sorts the list by it).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub uid: String,
    /// Kind of the object.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub kind: String,
    /// apiVersion of the object.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub api_version: String,
    /// Namespace (empty when cluster-scoped).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub namespace: String,
    /// Object name.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub name: String,
    /// Why it is not ready.
    #[serde(deserialize_with = "nullable")]
    pub summary: NonReadySummary,
    /// Fields this crate does not model, kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl NonReadyStatus {
    /// The object this entry is about.
    pub fn key(&self) -> ResourceKey {
        ResourceKey {
            kind: self.kind.clone(),
            api_version: self.api_version.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

impl fmt::Display for NonReadyStatus {
    /// Fleet's `NonReadyStatus.String()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = fleet_name(&self.api_version, &self.kind, &self.namespace, &self.name);
        write!(f, "{name} {}", self.summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_status_strings() {
        let key = ResourceKey::new("v1", "ConfigMap", Some("default"), "test-config2-one");
        let mut m = ModifiedStatus::missing(&key);
        assert_eq!(
            m.to_string(),
            "configmap.v1 default/test-config2-one missing"
        );
        m.exist = true;
        assert_eq!(
            m.to_string(),
            "configmap.v1 default/test-config2-one is not owned by us"
        );
        let o = ModifiedStatus {
            delete: true,
            ..ModifiedStatus::missing(&key)
        };
        assert_eq!(
            o.to_string(),
            "configmap.v1 default/test-config2-one missing"
        );
        let o = ModifiedStatus {
            missing: false,
            delete: true,
            ..o
        };
        assert_eq!(o.to_string(), "configmap.v1 default/test-config2-one extra");
        let p = ModifiedStatus {
            missing: false,
            patch: "{\"data\":null}".into(),
            ..ModifiedStatus::missing(&key)
        };
        assert_eq!(
            p.to_string(),
            "configmap.v1 default/test-config2-one modified {\"data\":null}"
        );
        // Go formats empty names the same way: "%s %s" of two empty strings.
        assert_eq!(ModifiedStatus::default().to_string(), "  modified ");
    }

    #[test]
    fn summary_strings() {
        let mut s = NonReadySummary {
            state: "in-progress".into(),
            ..Default::default()
        };
        assert_eq!(s.to_string(), "in-progress");
        s.transitioning = true;
        s.message = vec!["a".into(), "b".into()];
        assert_eq!(s.to_string(), "[progressing] a, b");
        s.error = true;
        assert_eq!(s.to_string(), "[progressing,error] a, b");
        s.transitioning = false;
        assert_eq!(s.to_string(), "error] a, b");
    }
}
