//! The status of the objects that own Bundles — GitRepo and HelmOp — which is Fleet's
//! `StatusBase` (the GitRepo's and the HelmOp's own fields are kept in `other`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::bundle_deployment::ObjectMeta;
use super::common::{Condition, ModifiedStatus, NonReadyStatus, ResourceCounts};
use super::{nullable, parse_value, to_json, StatusError, Zero};
use crate::fleet::resource_key::ResourceKey;

/// Count of BundleDeployments per state plus the first 10 non-ready ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BundleSummary {
    /// BDs with non-ready resources.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub not_ready: i64,
    /// BDs waiting for the agent to apply them.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub wait_applied: i64,
    /// BDs whose apply failed.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub err_applied: i64,
    /// BDs with a staged deployment not yet rolled out.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub out_of_sync: i64,
    /// BDs with missing/orphaned/drifted resources.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub modified: i64,
    /// Ready BDs (always serialized).
    #[serde(deserialize_with = "nullable")]
    pub ready: i64,
    /// BDs not yet created.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub pending: i64,
    /// All BDs (always serialized).
    #[serde(deserialize_with = "nullable")]
    pub desired_ready: i64,
    /// First 10 non-ready BDs in UID order.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub non_ready_resources: Vec<NonReadyResource>,
    /// Fields this crate does not model, kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl BundleSummary {
    /// Mutable counter for a Fleet bundle state; `None` for unknown states.
    pub fn counter_mut(&mut self, state: &str) -> Option<&mut i64> {
        use crate::fleet::state::*;
        Some(match state {
            READY => &mut self.ready,
            NOT_READY => &mut self.not_ready,
            WAIT_APPLIED => &mut self.wait_applied,
            ERR_APPLIED => &mut self.err_applied,
            OUT_OF_SYNC => &mut self.out_of_sync,
            MODIFIED => &mut self.modified,
            PENDING => &mut self.pending,
            _ => return None,
        })
    }

    /// Counter for a Fleet bundle state (0 for unknown states).
    pub fn counter(&self, state: &str) -> i64 {
        use crate::fleet::state::*;
        match state {
            READY => self.ready,
            NOT_READY => self.not_ready,
            WAIT_APPLIED => self.wait_applied,
            ERR_APPLIED => self.err_applied,
            OUT_OF_SYNC => self.out_of_sync,
            MODIFIED => self.modified,
            PENDING => self.pending,
            _ => 0,
        }
    }
}

/// One non-ready BundleDeployment (GitRepo) or target cluster (Bundle).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NonReadyResource {
    /// BD name (GitRepo summary) or `clusterNS/cluster` (Bundle summary).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub name: String,
    /// Fleet bundle state of that BD.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub bundle_state: String,
    /// Message from the BD's Deployed/Installed/Monitored condition.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub message: String,
    /// Copy of the BD's modifiedStatus.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub modified_status: Vec<ModifiedStatus>,
    /// Copy of the BD's nonReadyStatus.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub non_ready_status: Vec<NonReadyStatus>,
    /// Fields this crate does not model, kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl NonReadyResource {
    /// Same Fleet content (ignoring unknown fields): used to recognise which
    /// summary entry belongs to which BD state.
    pub fn same_content(&self, other: &NonReadyResource) -> bool {
        self.name == other.name
            && self.bundle_state == other.bundle_state
            && self.message == other.message
            && self.modified_status == other.modified_status
            && self.non_ready_status == other.non_ready_status
    }
}

/// Human-readable summary shown by `kubectl get gitrepo`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StatusDisplay {
    /// `"<ready>/<desiredReady>"` BundleDeployments.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub ready_bundle_deployments: String,
    /// Highest-ranked BD state (`""` when all Ready) or `GitUpdating`.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub state: String,
    /// Message of the first BD in that state.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub message: String,
    /// `message` is not empty.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub error: bool,
    /// Fields this crate does not model, kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Cluster ids (`clusterNS/cluster`) per resource state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PerClusterState {
    /// Clusters where the resource is Ready.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub ready: Vec<String>,
    /// Clusters where its BD waits to be applied.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub wait_applied: Vec<String>,
    /// Clusters where its BD is pending.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub pending: Vec<String>,
    /// Clusters where it drifted.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub modified: Vec<String>,
    /// Clusters where it is orphaned.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub orphaned: Vec<String>,
    /// Clusters where it is missing.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub missing: Vec<String>,
    /// Clusters where its state is unknown (truncated BD status).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub unknown: Vec<String>,
    /// Clusters where it is not ready.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub not_ready: Vec<String>,
    /// Fields this crate does not model, kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl PerClusterState {
    /// The list a per-cluster resource state goes into (Fleet's
    /// `appendToPerClusterState`); `None` for states Fleet drops.
    pub fn list_mut(&mut self, state: &str) -> Option<&mut Vec<String>> {
        Some(match state {
            "Ready" => &mut self.ready,
            "WaitApplied" => &mut self.wait_applied,
            "Pending" => &mut self.pending,
            "Modified" => &mut self.modified,
            "NotReady" | "updating" | "error" => &mut self.not_ready,
            "Orphaned" => &mut self.orphaned,
            "Missing" => &mut self.missing,
            "Unknown" => &mut self.unknown,
            _ => return None,
        })
    }

    /// All lists with the state name each one stands for, in a fixed order.
    pub fn lists(&self) -> [(&'static str, &Vec<String>); 8] {
        [
            ("Ready", &self.ready),
            ("WaitApplied", &self.wait_applied),
            ("Pending", &self.pending),
            ("Modified", &self.modified),
            ("Orphaned", &self.orphaned),
            ("Missing", &self.missing),
            ("Unknown", &self.unknown),
            ("NotReady", &self.not_ready),
        ]
    }

    /// True when no list names any cluster.
    pub fn is_empty(&self) -> bool {
        self.lists().iter().all(|(_, l)| l.is_empty())
    }
}

/// One resource over all BundleDeployments of a GitRepo.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Resource {
    /// apiVersion of the object.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub api_version: String,
    /// Kind of the object.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub kind: String,
    /// `<group.>lowerkind`.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub type_: String,
    /// `ns/name` or `name`.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub id: String,
    /// Namespace (empty when cluster-scoped).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub namespace: String,
    /// Object name.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub name: String,
    /// Some contributing BD status was truncated.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub incomplete_state: bool,
    /// First non-Ready per-cluster state (clusters sorted), else `Ready`.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub state: String,
    /// Unused by current Fleet, kept for older writers.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub error: bool,
    /// Unused by current Fleet, kept for older writers.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub transitioning: bool,
    /// Unused by current Fleet, kept for older writers.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub message: String,
    /// Cluster ids per state (always serialized).
    #[serde(deserialize_with = "nullable")]
    pub per_cluster_state: PerClusterState,
    /// Fields this crate does not model, kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Resource {
    /// The object this entry is about.
    pub fn key(&self) -> ResourceKey {
        ResourceKey {
            kind: self.kind.clone(),
            api_version: self.api_version.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// A fresh entry for `key`, as Fleet builds it before adding clusters.
    pub fn for_key(key: &ResourceKey) -> Self {
        Self {
            api_version: key.api_version.clone(),
            kind: key.kind.clone(),
            type_: key.resource_type(),
            id: key.resource_id(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            state: "Ready".to_string(),
            ..Self::default()
        }
    }

    /// Fleet's sort key for `status.resources`: `type/id`.
    pub fn sort_key(&self) -> String {
        format!("{}/{}", self.type_, self.id)
    }
}

/// GitRepo `status` (the fields the webhook touches; the rest stays in `other`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GitRepoStatus {
    /// Clusters whose BDs are all Ready.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub ready_clusters: Option<i64>,
    /// Clusters with at least one BD.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub desired_ready_clusters: Option<i64>,
    /// BD state counts and non-ready BDs.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub summary: Option<BundleSummary>,
    /// Display strings.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub display: Option<StatusDisplay>,
    /// Ready, Accepted, Reconciling, Stalled, GitPolling …
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub conditions: Vec<Condition>,
    /// Every resource of every BD with per-cluster state.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub resources: Vec<Resource>,
    /// Sum of BD resourceCounts.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub resource_counts: Option<ResourceCounts>,
    /// BD resourceCounts summed per `clusterNS/cluster`.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub per_cluster_resource_counts: BTreeMap<String, ResourceCounts>,
    /// `Current` unless the git job is running or failed (then display is `GitUpdating`).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub git_job_status: String,
    /// Fields this crate does not model (commit, observedGeneration …), kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl GitRepoStatus {
    /// Parses a GitRepo `.status` value (`null` → empty status).
    pub fn from_value(value: &Value) -> Result<Self, StatusError> {
        parse_value("GitRepo status", value)
    }

    /// Serializes back to the JSON Fleet would write.
    pub fn to_value(&self) -> Result<Value, StatusError> {
        to_json("GitRepo status", self)
    }

    /// The condition of type `type_`, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// A GitRepo or a HelmOp object (both carry Fleet's `StatusBase`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GitRepo {
    /// Metadata.
    #[serde(deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    /// Status, absent before Fleet first reconciled it.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Zero::is_zero")]
    pub status: Option<GitRepoStatus>,
    /// apiVersion, kind, spec and anything else, kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl GitRepo {
    /// Parses a whole GitRepo object.
    pub fn from_value(value: &Value) -> Result<Self, StatusError> {
        parse_value("GitRepo", value)
    }

    /// Serializes back to JSON.
    pub fn to_value(&self) -> Result<Value, StatusError> {
        to_json("GitRepo", self)
    }
}
