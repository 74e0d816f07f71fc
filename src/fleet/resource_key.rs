//! Fleet's `ResourceKey` (kind, apiVersion, namespace, name) and the string
//! forms Fleet derives from it for BundleDeployment and GitRepo status.

use std::fmt;

/// Identity of one deployed object as Fleet records it in status lists.
/// `namespace` is empty for cluster-scoped objects, as in Fleet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    /// Kind, e.g. `ConfigMap`.
    pub kind: String,
    /// apiVersion, e.g. `v1` or `apps/v1`.
    pub api_version: String,
    /// Namespace, empty when cluster-scoped.
    pub namespace: String,
    /// Object name.
    pub name: String,
}

impl ResourceKey {
    /// Builds a key; `namespace` `None` or `""` means cluster-scoped.
    pub fn new(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Self {
        Self {
            kind: kind.to_string(),
            api_version: api_version.to_string(),
            namespace: namespace.unwrap_or_default().to_string(),
            name: name.to_string(),
        }
    }

    /// API group (`""` for the core group). Two keys of one object seen
    /// through different versions share it.
    pub fn group(&self) -> &str {
        match self.api_version.split_once('/') {
            Some((group, _)) => group,
            None => "",
        }
    }

    /// True when both keys name the same object, whatever API version each was
    /// read through (a DELETE may arrive in another version than Fleet recorded).
    pub fn same_object(&self, other: &ResourceKey) -> bool {
        self.name == other.name
            && self.namespace == other.namespace
            && self.kind == other.kind
            && self.group() == other.group()
    }

    /// GitRepo `resources[].type`: `<group.>lowerkind`, `configmap` for core.
    pub fn resource_type(&self) -> String {
        let group = self.api_version.split('/').next().unwrap_or_default();
        let prefix = if group == "v1" || group.is_empty() {
            String::new()
        } else {
            format!("{group}.")
        };
        format!("{prefix}{}", self.kind.to_lowercase())
    }

    /// GitRepo `resources[].id`: `ns/name`, or `name` when cluster-scoped.
    pub fn resource_id(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }

    /// Fleet's `name()` used in status messages: `configmap.v1 default/x`,
    /// `deployment.apps ns/x`, `clusterrole.rbac.authorization.k8s.io x`.
    pub fn fleet_name(&self) -> String {
        fleet_name(&self.api_version, &self.kind, &self.namespace, &self.name)
    }

    /// Order Fleet's agent sorts `modifiedStatus` by: `apiVersion/kind/ns/name`.
    pub fn modified_sort_key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.api_version, self.kind, self.namespace, self.name
        )
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fleet_name())
    }
}

/// Fleet's `name(apiVersion, kind, namespace, name)` helper.
pub(crate) fn fleet_name(api_version: &str, kind: &str, namespace: &str, name: &str) -> String {
    let kind = kind.to_lowercase();
    if api_version.is_empty() {
        if namespace.is_empty() {
            return format!("{kind} {name}");
        }
        return format!("{kind} {namespace}/{name}");
    }
    let group = api_version.split('/').next().unwrap_or_default();
    if namespace.is_empty() {
        format!("{kind}.{group} {name}")
    } else {
        format!("{kind}.{group} {namespace}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_forms() {
        let cm = ResourceKey::new("v1", "ConfigMap", Some("default"), "test-config2-one");
        assert_eq!(cm.resource_type(), "configmap");
        assert_eq!(cm.resource_id(), "default/test-config2-one");
        assert_eq!(cm.fleet_name(), "configmap.v1 default/test-config2-one");
        assert_eq!(
            cm.modified_sort_key(),
            "v1/ConfigMap/default/test-config2-one"
        );

        let cr = ResourceKey::new("rbac.authorization.k8s.io/v1", "ClusterRole", None, "admin");
        assert_eq!(cr.resource_type(), "rbac.authorization.k8s.io.clusterrole");
        assert_eq!(cr.resource_id(), "admin");
        assert_eq!(
            cr.fleet_name(),
            "clusterrole.rbac.authorization.k8s.io admin"
        );

        let d = ResourceKey::new("apps/v1", "Deployment", Some("ns"), "web");
        assert_eq!(d.resource_type(), "apps.deployment");
        assert_eq!(d.fleet_name(), "deployment.apps ns/web");
        assert_eq!(
            ResourceKey::new("", "Thing", None, "x").fleet_name(),
            "thing x"
        );
    }

    #[test]
    fn same_object_ignores_version_not_group() {
        let a = ResourceKey::new("autoscaling/v1", "HorizontalPodAutoscaler", Some("n"), "h");
        let b = ResourceKey::new("autoscaling/v2", "HorizontalPodAutoscaler", Some("n"), "h");
        let c = ResourceKey::new("other.io/v2", "HorizontalPodAutoscaler", Some("n"), "h");
        assert!(a.same_object(&b));
        assert!(!a.same_object(&c));
        let core = ResourceKey::new("v1", "ConfigMap", Some("n"), "x");
        assert!(core.same_object(&ResourceKey::new("v1", "ConfigMap", Some("n"), "x")));
    }
}
