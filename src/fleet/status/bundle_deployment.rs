//! BundleDeployment object and status.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::common::{Condition, ModifiedStatus, NonReadyStatus, ResourceCounts};
use super::{nullable, parse_value, to_json, StatusError, Zero};
use crate::fleet::labels::{LABEL_BUNDLE_NAME, LABEL_CLUSTER, LABEL_CLUSTER_NAMESPACE};
use crate::fleet::resource_key::ResourceKey;

/// The parts of `metadata` the webhook needs; the rest is kept verbatim.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Object name.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub name: String,
    /// Object namespace.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub namespace: String,
    /// UID; Fleet sorts BundleDeployments by it when summarizing.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub uid: String,
    /// Labels (cluster, repo-name, bundle-name …).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub labels: BTreeMap<String, String>,
    /// Fields this crate does not model, kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl ObjectMeta {
    /// `metadata.resourceVersion`: the precondition of a status write.
    pub fn resource_version(&self) -> Option<&str> {
        self.other.get("resourceVersion").and_then(Value::as_str)
    }
}

/// The spec fields Fleet's state machine compares against status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BundleDeploymentSpec {
    /// Deployment the agent should apply.
    #[serde(
        rename = "deploymentID",
        deserialize_with = "nullable",
        skip_serializing_if = "Zero::is_zero"
    )]
    pub deployment_id: String,
    /// Deployment staged by the controller (differs while rolling out).
    #[serde(
        rename = "stagedDeploymentID",
        deserialize_with = "nullable",
        skip_serializing_if = "Zero::is_zero"
    )]
    pub staged_deployment_id: String,
    /// Fields this crate does not model, kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl BundleDeploymentSpec {
    /// `paused`, `offSchedule`, `waitingForValues` (kept in `other`; non-bools read as
    /// false, like the watch view).
    pub fn gates(&self) -> crate::fleet::gates::Gates {
        let flag = |k: &str| self.other.get(k).and_then(Value::as_bool).unwrap_or(false);
        crate::fleet::gates::Gates {
            paused: flag("paused"),
            off_schedule: flag("offSchedule"),
            waiting_for_values: flag("waitingForValues"),
        }
    }
}

/// Display strings the upstream BD reconciler derives from conditions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BundleDeploymentDisplay {
    /// `True` or `Error: <msg>` from the Deployed condition.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub deployed: String,
    /// `True` or `Error: <msg>` from the Monitored condition.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub monitored: String,
    /// Fleet's deployment state (`Ready`, `Modified`, `NotReady` …).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub state: String,
    /// Fields this crate does not model, kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One live deployed object in BD `status.resources`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BundleDeploymentResource {
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
    /// The live object's creationTimestamp.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub created_at: Option<String>,
    /// Fields this crate does not model, kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl BundleDeploymentResource {
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

/// BundleDeployment `status`, written by the agent (all but `display`) and
/// the upstream BD reconciler (`display`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BundleDeploymentStatus {
    /// Installed, Deployed, Ready, Monitored.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub conditions: Vec<Condition>,
    /// Deployment the agent last applied.
    #[serde(
        rename = "appliedDeploymentID",
        deserialize_with = "nullable",
        skip_serializing_if = "Zero::is_zero"
    )]
    pub applied_deployment_id: String,
    /// No live object is non-ready.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub ready: bool,
    /// No object is missing, orphaned or drifted.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub non_modified: bool,
    /// Non-ready live objects (first 10 by UID).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub non_ready_status: Vec<NonReadyStatus>,
    /// Missing/orphaned/drifted objects (first 10 by `apiVersion/kind/ns/name`).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub modified_status: Vec<ModifiedStatus>,
    /// One of the two lists above was truncated at 10.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub incomplete_state: bool,
    /// Display strings (absent until the upstream reconciler ran).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub display: Option<BundleDeploymentDisplay>,
    /// Live desired objects.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub resources: Vec<BundleDeploymentResource>,
    /// Per-state counts (absent on old agents: then left alone).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub resource_counts: Option<ResourceCounts>,
    /// Fields this crate does not model (release, syncGeneration …), kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl BundleDeploymentStatus {
    /// Parses a BD `.status` value (`null` → empty status).
    pub fn from_value(value: &Value) -> Result<Self, StatusError> {
        parse_value("BundleDeployment status", value)
    }

    /// Serializes back to the JSON Fleet would write.
    pub fn to_value(&self) -> Result<Value, StatusError> {
        to_json("BundleDeployment status", self)
    }

    /// The condition of type `type_`, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// A BundleDeployment object (one Bundle on one cluster).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BundleDeployment {
    /// Metadata.
    #[serde(deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    /// Spec (only the deployment IDs are modelled).
    #[serde(deserialize_with = "nullable")]
    pub spec: BundleDeploymentSpec,
    /// Status, absent before the agent first reported.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub status: Option<BundleDeploymentStatus>,
    /// apiVersion, kind and anything else, kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl BundleDeployment {
    /// Parses a whole BundleDeployment object.
    pub fn from_value(value: &Value) -> Result<Self, StatusError> {
        parse_value("BundleDeployment", value)
    }

    /// Serializes back to JSON.
    pub fn to_value(&self) -> Result<Value, StatusError> {
        to_json("BundleDeployment", self)
    }

    /// Fleet's cluster id for this BD: `<cluster-namespace label>/<cluster label>`
    /// (`/` when unlabelled, exactly as Fleet computes it).
    pub fn cluster_id(&self) -> String {
        let labels = &self.metadata.labels;
        format!(
            "{}/{}",
            labels
                .get(LABEL_CLUSTER_NAMESPACE)
                .map(String::as_str)
                .unwrap_or_default(),
            labels
                .get(LABEL_CLUSTER)
                .map(String::as_str)
                .unwrap_or_default()
        )
    }

    /// True when both cluster labels are set (Fleet skips others when counting clusters).
    pub fn has_cluster_labels(&self) -> bool {
        let labels = &self.metadata.labels;
        [LABEL_CLUSTER, LABEL_CLUSTER_NAMESPACE]
            .iter()
            .all(|k| labels.get(*k).is_some_and(|v| !v.is_empty()))
    }

    /// Name of the Bundle this BD belongs to (label, falling back to the BD name,
    /// which Fleet makes equal to the Bundle name).
    pub fn bundle_name(&self) -> &str {
        match self.metadata.labels.get(LABEL_BUNDLE_NAME) {
            Some(name) if !name.is_empty() => name,
            _ => &self.metadata.name,
        }
    }

    /// The status, or an empty one when the agent has not reported yet.
    pub fn status_or_default(&self) -> std::borrow::Cow<'_, BundleDeploymentStatus> {
        match &self.status {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(BundleDeploymentStatus::default()),
        }
    }
}
