//! What the webhook reads of a BundleDeployment from lists and watches.
//!
//! Read as `DynamicObject`, every BundleDeployment of a cluster becomes a JSON tree of
//! its spec and status (and its managedFields) only to be dropped again: 10,000 of
//! them are 25 MB of JSON at start-up. This view keeps what the webhook uses — the
//! identity and labels (owner index), `status.modifiedStatus` (the patcher's marks)
//! and, for the resync, `status.resources`, `status.resourceCounts` and the uids of
//! `status.nonReadyStatus` (`fleet-delete-guard verify`) — and skips everything else
//! while parsing.
//!
//! Status is written by agents, possibly old or buggy ones. A part of it with an
//! unexpected shape reads as absent rather than failing the whole watch (a failing
//! watch would stop the owner index, and kube logs the page it could not parse).

use std::{borrow::Cow, collections::BTreeMap, fmt};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::core::{NamespaceResourceScope, Resource};
use serde::{
    de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor},
    Deserialize, Deserializer,
};

use super::{gates::Gates, status::ResourceCounts, ResourceKey};

/// A BundleDeployment as the watch reads it: no `status.resources`.
pub type WatchedBundleDeployment = BundleDeploymentView<false>;
/// A BundleDeployment as the resync reads it: with `status.resources`.
pub type ListedBundleDeployment = BundleDeploymentView<true>;

/// A BundleDeployment reduced to what the webhook uses; `RESOURCES` says whether
/// `status.resources` is read (the resync needs it, the watch does not).
#[derive(Clone, Debug, Default)]
pub struct BundleDeploymentView<const RESOURCES: bool> {
    /// name, namespace, uid, resourceVersion, labels; nothing else.
    pub metadata: ObjectMeta,
    /// `spec.paused`, `spec.offSchedule`, `spec.waitingForValues`; nothing else.
    pub gates: Gates,
    pub status: StatusView,
}

/// The parts of BundleDeployment `status` the webhook reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusView {
    /// `status.modifiedStatus`.
    pub modified: Vec<StatusEntry>,
    /// `status.resources` (empty unless the view reads it).
    pub resources: Vec<StatusEntry>,
    /// `status.nonReadyStatus`, for the uids it carries (empty unless the view reads
    /// `status.resources`).
    pub non_ready: Vec<StatusEntry>,
    /// `status.resourceCounts` (`None` unless the view reads `status.resources`, or
    /// when absent or of an unexpected shape).
    pub resource_counts: Option<ResourceCounts>,
    /// `status.resourceCounts.desiredReady` (the breaker's fraction rule).
    pub desired_ready: Option<u64>,
}

/// One entry of `modifiedStatus` or `resources`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusEntry {
    pub key: ResourceKey,
    /// `modifiedStatus`: Fleet would create it.
    pub missing: bool,
    /// `modifiedStatus`: with `missing`, an unowned object of that name exists.
    pub exist: bool,
    /// `resources`: the live object's creationTimestamp.
    pub created_at: Option<String>,
    /// `nonReadyStatus`: the live object's uid.
    pub uid: Option<String>,
}

impl StatusEntry {
    /// A plain "missing" entry, as [`super::status::ModifiedStatus::is_missing`].
    pub fn is_missing(&self) -> bool {
        self.missing && !self.exist
    }
}

impl<const RESOURCES: bool> Resource for BundleDeploymentView<RESOURCES> {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "BundleDeployment".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "fleet.cattle.io".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1alpha1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "bundledeployments".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl<'de, const RESOURCES: bool> Deserialize<'de> for BundleDeploymentView<RESOURCES> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier)]
        enum Field {
            #[serde(rename = "metadata")]
            Metadata,
            #[serde(rename = "spec")]
            Spec,
            #[serde(rename = "status")]
            Status,
            #[serde(other)]
            Other,
        }
        struct ViewVisitor<const R: bool>;
        impl<'de, const R: bool> Visitor<'de> for ViewVisitor<R> {
            type Value = BundleDeploymentView<R>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a BundleDeployment object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut view = BundleDeploymentView::<R>::default();
                while let Some(field) = map.next_key::<Field>()? {
                    match field {
                        Field::Metadata => {
                            view.metadata = map.next_value::<SlimMeta>()?.into_object_meta()
                        }
                        Field::Spec => view.gates = map.next_value::<SpecGates>()?.0,
                        Field::Status => {
                            view.status = map.next_value_seed(StatusSeed { resources: R })?
                        }
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(view)
            }
        }
        d.deserialize_map(ViewVisitor::<RESOURCES>)
    }
}

/// The metadata fields the webhook reads; managedFields, annotations and the rest
/// are skipped. Metadata is validated by the API server, so it is read strictly.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SlimMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    deletion_timestamp: Option<Time>,
}

impl SlimMeta {
    fn into_object_meta(self) -> ObjectMeta {
        ObjectMeta {
            name: self.name,
            namespace: self.namespace,
            uid: self.uid,
            resource_version: self.resource_version,
            labels: self.labels,
            deletion_timestamp: self.deletion_timestamp,
            ..ObjectMeta::default()
        }
    }
}

/// The gates of `spec`; anything but an object reads as no gate.
struct SpecGates(Gates);

impl<'de> Deserialize<'de> for SpecGates {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> LenientVisitor<'de> for V {
            type Value = Gates;
            fn expecting() -> &'static str {
                "a BundleDeployment spec"
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Gates, A::Error> {
                #[derive(Deserialize)]
                #[serde(field_identifier)]
                enum Field {
                    #[serde(rename = "paused")]
                    Paused,
                    #[serde(rename = "offSchedule")]
                    OffSchedule,
                    #[serde(rename = "waitingForValues")]
                    WaitingForValues,
                    #[serde(other)]
                    Other,
                }
                let mut gates = Gates::default();
                while let Some(field) = map.next_key::<Field>()? {
                    match field {
                        Field::Paused => gates.paused = map.next_value::<Flag>()?.0,
                        Field::OffSchedule => gates.off_schedule = map.next_value::<Flag>()?.0,
                        Field::WaitingForValues => {
                            gates.waiting_for_values = map.next_value::<Flag>()?.0
                        }
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(gates)
            }
        }
        d.deserialize_any(Lenient(V)).map(SpecGates)
    }
}

/// Reads `status`; anything but an object reads as empty.
struct StatusSeed {
    resources: bool,
}

impl<'de> de::DeserializeSeed<'de> for StatusSeed {
    type Value = StatusView;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<StatusView, D::Error> {
        d.deserialize_any(Lenient(self))
    }
}

impl<'de> LenientVisitor<'de> for StatusSeed {
    type Value = StatusView;
    fn expecting() -> &'static str {
        "a BundleDeployment status"
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StatusView, A::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier)]
        enum Field {
            #[serde(rename = "modifiedStatus")]
            Modified,
            #[serde(rename = "resources")]
            Resources,
            #[serde(rename = "nonReadyStatus")]
            NonReady,
            #[serde(rename = "resourceCounts")]
            Counts,
            #[serde(other)]
            Other,
        }
        let mut status = StatusView::default();
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Modified => status.modified = map.next_value::<Entries>()?.0,
                Field::Resources if self.resources => {
                    status.resources = map.next_value::<Entries>()?.0
                }
                Field::NonReady if self.resources => {
                    status.non_ready = map.next_value::<Entries>()?.0
                }
                // Read as a value, then: `desiredReady` leniently (the breaker's fraction
                // rule), and with the resources view all eight counts; a wrong shape
                // reads as absent.
                Field::Counts => {
                    let value = map.next_value::<serde_json::Value>()?;
                    status.desired_ready = DesiredReady::deserialize(&value).ok().and_then(|d| d.0);
                    if self.resources {
                        status.resource_counts = ResourceCounts::deserialize(value).ok();
                    }
                }
                Field::Resources | Field::NonReady | Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(status)
    }
}

/// A list of status entries; entries that are not objects are dropped, a value that
/// is not a list reads as empty.
struct Entries(Vec<StatusEntry>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Seq;
        impl<'de> LenientVisitor<'de> for Seq {
            type Value = Vec<StatusEntry>;
            fn expecting() -> &'static str {
                "a list of status entries"
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(Entry(entry)) = seq.next_element::<Entry>()? {
                    out.extend(entry);
                }
                Ok(out)
            }
        }
        d.deserialize_any(Lenient(Seq)).map(Entries)
    }
}

/// One entry, `None` when it is not an object; fields of the wrong type read as absent.
struct Entry(Option<StatusEntry>);

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Map;
        impl<'de> LenientVisitor<'de> for Map {
            type Value = Option<StatusEntry>;
            fn expecting() -> &'static str {
                "a status entry"
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                #[derive(Deserialize)]
                #[serde(field_identifier)]
                enum Field {
                    #[serde(rename = "kind")]
                    Kind,
                    #[serde(rename = "apiVersion")]
                    ApiVersion,
                    #[serde(rename = "namespace")]
                    Namespace,
                    #[serde(rename = "name")]
                    Name,
                    #[serde(rename = "missing")]
                    Missing,
                    #[serde(rename = "exist")]
                    Exist,
                    #[serde(rename = "createdAt")]
                    CreatedAt,
                    #[serde(rename = "uid")]
                    Uid,
                    #[serde(other)]
                    Other,
                }
                let mut e = StatusEntry::default();
                while let Some(field) = map.next_key::<Field>()? {
                    let text = |t: Text| t.0.unwrap_or_default();
                    match field {
                        Field::Kind => e.key.kind = text(map.next_value()?),
                        Field::ApiVersion => e.key.api_version = text(map.next_value()?),
                        Field::Namespace => e.key.namespace = text(map.next_value()?),
                        Field::Name => e.key.name = text(map.next_value()?),
                        Field::Missing => e.missing = map.next_value::<Flag>()?.0,
                        Field::Exist => e.exist = map.next_value::<Flag>()?.0,
                        Field::CreatedAt => e.created_at = map.next_value::<Text>()?.0,
                        Field::Uid => e.uid = map.next_value::<Text>()?.0,
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Some(e))
            }
        }
        d.deserialize_any(Lenient(Map)).map(Entry)
    }
}

/// `resourceCounts.desiredReady`; anything else reads as `None`.
struct DesiredReady(Option<u64>);

impl<'de> Deserialize<'de> for DesiredReady {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Counts;
        impl<'de> LenientVisitor<'de> for Counts {
            type Value = Option<u64>;
            fn expecting() -> &'static str {
                "resource counts"
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                #[derive(Deserialize)]
                #[serde(field_identifier)]
                enum Field {
                    #[serde(rename = "desiredReady")]
                    DesiredReady,
                    #[serde(other)]
                    Other,
                }
                let mut desired = None;
                while let Some(key) = map.next_key::<Field>()? {
                    match key {
                        Field::DesiredReady => desired = map.next_value::<Count>()?.0,
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(desired)
            }
        }
        d.deserialize_any(Lenient(Counts)).map(DesiredReady)
    }
}

/// A non-negative integer; any other JSON value reads as `None`.
struct Count(Option<u64>);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Num;
        impl<'de> Visitor<'de> for Num {
            type Value = Option<u64>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a count")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<u64>, E> {
                Ok(Some(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<u64>, E> {
                Ok(u64::try_from(v).ok())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<u64>, E> {
                Ok(None)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<u64>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(None)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<u64>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(None)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<u64>, E> {
                Ok(None)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<u64>, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Option<u64>, E> {
                Ok(None)
            }
            fn visit_none<E: de::Error>(self) -> Result<Option<u64>, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<u64>, D::Error> {
                d.deserialize_any(self)
            }
        }
        d.deserialize_any(Num).map(Count)
    }
}

/// A string; any other JSON value reads as `None`.
struct Text(Option<String>);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> LenientVisitor<'de> for V {
            type Value = Option<String>;
            fn expecting() -> &'static str {
                "a string"
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<String>, E> {
                Ok(Some(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Option<String>, E> {
                Ok(Some(v))
            }
        }
        d.deserialize_any(Lenient(V)).map(Text)
    }
}

/// A bool; any other JSON value reads as `false`.
struct Flag(bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> LenientVisitor<'de> for V {
            type Value = bool;
            fn expecting() -> &'static str {
                "a bool"
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
                Ok(v)
            }
        }
        d.deserialize_any(Lenient(V)).map(Flag)
    }
}

/// A visitor for one expected JSON shape: every shape it does not handle is consumed
/// and read as `Value::default()` instead of failing.
trait LenientVisitor<'de>: Sized {
    type Value: Default;
    fn expecting() -> &'static str;
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Self::Value::default())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Self::Value::default())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Self::Value::default())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        self.visit_str(&v)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Self::Value::default())
    }
}

/// Adapts a [`LenientVisitor`] to serde's `Visitor`.
struct Lenient<V>(V);

impl<'de, V: LenientVisitor<'de>> Visitor<'de> for Lenient<V> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(V::expecting())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(seq)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.0.visit_str(v)
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.0.visit_string(v)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<V::Value, E> {
        self.0.visit_bool(v)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<V::Value, E> {
        Ok(V::Value::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<V::Value, E> {
        Ok(V::Value::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<V::Value, E> {
        Ok(V::Value::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        Ok(V::Value::default())
    }
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        Ok(V::Value::default())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        d.deserialize_any(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bd(status: serde_json::Value) -> serde_json::Value {
        json!({
            "apiVersion": "fleet.cattle.io/v1alpha1", "kind": "BundleDeployment",
            "metadata": {
                "name": "lots-config2", "namespace": "cluster-fleet-local-local-1a3d67d0a899",
                "uid": "u1", "resourceVersion": "42",
                "labels": {"fleet.cattle.io/repo-name": "lots"},
                "annotations": {"a": "b"},
                "managedFields": [{"manager": "fleetagent", "fieldsV1": {"f:status": {}}}]
            },
            "spec": {"deploymentID": "s-1:abc", "options": {"helm": {"values": {"x": [1, 2, {"y": null}]}}}},
            "status": status,
        })
    }

    #[test]
    fn keeps_identity_labels_and_the_status_lists_it_reads() {
        let text = bd(json!({
            "ready": false,
            "modifiedStatus": [
                {"kind": "ConfigMap", "apiVersion": "v1", "namespace": "default", "name": "a", "missing": true},
                {"kind": "ConfigMap", "apiVersion": "v1", "namespace": "default", "name": "b", "missing": true, "exist": true},
                {"kind": "ConfigMap", "apiVersion": "v1", "namespace": "default", "name": "c", "patch": "{}"}
            ],
            "resources": [{"kind": "ConfigMap", "apiVersion": "v1", "namespace": "default", "name": "d", "createdAt": "2025-01-01T00:00:00Z"}]
        }))
        .to_string();
        let watched: WatchedBundleDeployment = serde_json::from_str(&text).expect("watched");
        assert_eq!(watched.metadata.name.as_deref(), Some("lots-config2"));
        assert_eq!(watched.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(watched.metadata.uid.as_deref(), Some("u1"));
        assert_eq!(
            watched
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("fleet.cattle.io/repo-name")),
            Some(&"lots".to_string())
        );
        assert!(
            watched.metadata.managed_fields.is_none() && watched.metadata.annotations.is_none()
        );
        let missing: Vec<_> = watched
            .status
            .modified
            .iter()
            .filter(|e| e.is_missing())
            .collect();
        assert_eq!(missing.len(), 1);
        assert_eq!(
            missing[0].key,
            ResourceKey::new("v1", "ConfigMap", Some("default"), "a")
        );
        assert!(
            watched.status.resources.is_empty(),
            "the watch skips resources"
        );

        let listed: ListedBundleDeployment = serde_json::from_str(&text).expect("listed");
        assert_eq!(listed.status.modified.len(), 3);
        assert_eq!(listed.status.resources.len(), 1);
        assert_eq!(listed.status.resources[0].key.name, "d");
        assert_eq!(
            listed.status.resources[0].created_at.as_deref(),
            Some("2025-01-01T00:00:00Z")
        );
        assert_eq!(listed.status.resource_counts, None, "absent here");
        assert!(watched.status.non_ready.is_empty());
    }

    #[test]
    fn the_listed_view_reads_resource_counts_and_non_ready_uids() {
        let text = bd(json!({
            "resourceCounts": {"ready": 3, "desiredReady": 4, "missing": 1},
            "nonReadyStatus": [{"uid": "u-7", "kind": "Deployment", "apiVersion": "apps/v1", "namespace": "d", "name": "web", "summary": {"state": "updating"}}]
        }))
        .to_string();
        let listed: ListedBundleDeployment = serde_json::from_str(&text).expect("listed");
        let counts = listed.status.resource_counts.expect("counts");
        assert_eq!(
            (counts.ready, counts.desired_ready, counts.missing),
            (3, 4, 1)
        );
        assert_eq!(listed.status.non_ready.len(), 1);
        assert_eq!(listed.status.non_ready[0].uid.as_deref(), Some("u-7"));
        assert_eq!(listed.status.non_ready[0].key.name, "web");
        let watched: WatchedBundleDeployment = serde_json::from_str(&text).expect("watched");
        assert_eq!(
            watched.status.resource_counts, None,
            "the watch skips counts"
        );
        assert!(watched.status.non_ready.is_empty());
        // Counts of a wrong shape read as absent, never fail the page.
        let text = bd(json!({"resourceCounts": {"ready": "three"}})).to_string();
        let listed: ListedBundleDeployment = serde_json::from_str(&text).expect("listed");
        assert_eq!(listed.status.resource_counts, None);
    }

    #[test]
    fn malformed_status_parts_read_as_absent_and_never_fail() {
        for status in [
            json!(null),
            json!("broken"),
            json!(7),
            json!([1, 2]),
            json!({"modifiedStatus": "x", "resources": {"a": 1}}),
            json!({"modifiedStatus": null, "resources": null}),
            json!({"modifiedStatus": [1, "x", null, [true], {"kind": 5, "name": ["n"], "missing": "yes"}]}),
        ] {
            let text = bd(status.clone()).to_string();
            let view: ListedBundleDeployment =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: {e}"));
            assert!(view.status.resources.is_empty(), "{status}");
            assert!(
                view.status.modified.iter().all(|e| !e.is_missing()),
                "{status}"
            );
            assert_eq!(view.metadata.name.as_deref(), Some("lots-config2"));
        }
        // A wrong-typed entry field reads as absent; the rest of the entry stays.
        let text =
            bd(json!({"modifiedStatus": [{"kind": 5, "name": "n", "missing": true}]})).to_string();
        let view: WatchedBundleDeployment = serde_json::from_str(&text).expect("view");
        assert_eq!(view.status.modified.len(), 1);
        assert_eq!(view.status.modified[0].key.kind, "");
        assert_eq!(view.status.modified[0].key.name, "n");
        assert!(view.status.modified[0].is_missing());
    }

    #[test]
    fn desired_ready_and_the_deletion_timestamp_are_read_leniently() {
        let mut v = bd(json!({"resourceCounts": {"ready": 3, "desiredReady": 4, "missing": 1}}));
        v["metadata"]["deletionTimestamp"] = json!("2026-08-20T09:01:12Z");
        let view: WatchedBundleDeployment = serde_json::from_str(&v.to_string()).expect("view");
        assert_eq!(view.status.desired_ready, Some(4));
        assert!(view.metadata.deletion_timestamp.is_some());
        for counts in [
            json!(null),
            json!("x"),
            json!({"desiredReady": -1}),
            json!({"desiredReady": 1.5}),
            json!({"desiredReady": "4"}),
            json!({"desiredReady": [4]}),
            json!({"desiredReady": {"n": 4}}),
            json!({"ready": 4}),
        ] {
            let text = bd(json!({"resourceCounts": counts.clone()})).to_string();
            let view: ListedBundleDeployment =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{counts}: {e}"));
            assert_eq!(view.status.desired_ready, None, "{counts}");
        }
    }

    #[test]
    fn reads_through_a_buffered_deserializer_as_well() {
        // kube reads watch events through an adjacently tagged enum; if the object came
        // before the type, serde would buffer it. The view must read from that too.
        #[derive(Deserialize)]
        #[serde(tag = "type", content = "object")]
        enum Event {
            #[serde(rename = "ADDED")]
            Added(WatchedBundleDeployment),
        }
        let object = bd(
            json!({"modifiedStatus": [{"kind": "ConfigMap", "apiVersion": "v1", "name": "a", "missing": true}]}),
        );
        let text = format!(r#"{{"object":{object},"type":"ADDED"}}"#);
        let Event::Added(view) = serde_json::from_str(&text).expect("buffered");
        assert_eq!(view.status.modified.len(), 1);
        assert!(view.status.modified[0].is_missing());
    }

    #[test]
    fn a_metadata_that_is_not_an_object_is_an_error() {
        let err = serde_json::from_str::<WatchedBundleDeployment>(r#"{"metadata": 5}"#)
            .expect_err("bad metadata");
        assert!(err.to_string().contains("invalid type"), "{err}");
        assert!(serde_json::from_str::<WatchedBundleDeployment>("[]").is_err());
    }

    #[test]
    fn spec_gates_are_read_and_odd_shapes_read_as_no_gate() {
        let bd: WatchedBundleDeployment = serde_json::from_str(
            r#"{"metadata": {"name": "b"}, "spec": {"paused": true, "options": {"x": 1},
                "offSchedule": "yes", "waitingForValues": true}}"#,
        )
        .expect("view");
        assert!(bd.gates.paused && bd.gates.waiting_for_values);
        assert!(!bd.gates.off_schedule, "a string is not a bool");
        let bd: WatchedBundleDeployment =
            serde_json::from_str(r#"{"metadata": {"name": "b"}, "spec": [1]}"#).expect("view");
        assert_eq!(bd.gates, Gates::default());
    }
}
