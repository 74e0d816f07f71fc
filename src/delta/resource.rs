//! The object a DELETE removed, in the terms Fleet's status uses.

use serde_json::Value;

use crate::fleet::ResourceKey;

/// A deleted (or about to be deleted) Fleet-deployed object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletedResource {
    /// apiVersion the object was read through.
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// The object's creationTimestamp, so undoing the delta can restore the
    /// BD `resources[].createdAt` Fleet had.
    pub created_at: Option<String>,
    /// Known to belong to the BundleDeployment (its objectset labels say so), even when
    /// the status no longer lists it: a Fleet agent older than the upstream fix drops a
    /// missing object from its status altogether.
    pub owned: bool,
}

impl DeletedResource {
    /// A deleted object without a known creationTimestamp.
    pub fn new(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Self {
        Self {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            namespace: namespace.filter(|ns| !ns.is_empty()).map(str::to_string),
            name: name.to_string(),
            created_at: None,
            owned: false,
        }
    }

    /// Marks the object as known to belong to the BundleDeployment (see [`Self::owned`]).
    pub fn owned(mut self) -> Self {
        self.owned = true;
        self
    }

    /// Adds the creationTimestamp of the deleted object.
    pub fn with_created_at(mut self, created_at: &str) -> Self {
        self.created_at = Some(created_at.to_string());
        self
    }

    /// Reads apiVersion, kind, namespace, name and creationTimestamp from an
    /// object (e.g. an AdmissionReview's `oldObject`); `None` if kind, apiVersion
    /// or name is missing.
    pub fn from_object(object: &Value) -> Option<Self> {
        fn s(v: Option<&Value>) -> Option<&str> {
            v.and_then(Value::as_str).filter(|s| !s.is_empty())
        }
        let meta = object.get("metadata");
        let mut r = Self::new(
            s(object.get("apiVersion"))?,
            s(object.get("kind"))?,
            s(meta.and_then(|m| m.get("namespace"))),
            s(meta.and_then(|m| m.get("name")))?,
        );
        r.created_at = s(meta.and_then(|m| m.get("creationTimestamp"))).map(str::to_string);
        Some(r)
    }

    /// Fleet's resource key for this object.
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(
            &self.api_version,
            &self.kind,
            self.namespace.as_deref(),
            &self.name,
        )
    }

    /// BD modifiedStatus string once missing: `configmap.v1 default/x missing`.
    pub fn missing_message(&self) -> String {
        format!("{} missing", self.key().fleet_name())
    }

    /// GitRepo `resources[].type`.
    pub fn resource_type(&self) -> String {
        self.key().resource_type()
    }

    /// GitRepo `resources[].id`.
    pub fn resource_id(&self) -> String {
        self.key().resource_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn string_forms() {
        let r = DeletedResource::new("v1", "ConfigMap", Some("default"), "test-config2-one");
        assert_eq!(
            r.missing_message(),
            "configmap.v1 default/test-config2-one missing"
        );
        assert_eq!(r.resource_type(), "configmap");
        assert_eq!(r.resource_id(), "default/test-config2-one");
        let cr = DeletedResource::new("rbac.authorization.k8s.io/v1", "ClusterRole", Some(""), "x");
        assert_eq!(cr.namespace, None);
        assert_eq!(cr.resource_id(), "x");
    }

    #[test]
    fn from_object_reads_metadata() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "default", "creationTimestamp": "2026-08-20T09:01:12Z"}});
        let r = DeletedResource::from_object(&obj).expect("parses");
        assert_eq!(r.created_at.as_deref(), Some("2026-08-20T09:01:12Z"));
        assert_eq!(DeletedResource::from_object(&json!(null)), None);
        assert_eq!(DeletedResource::from_object(&json!({"kind": 3})), None);
    }
}
