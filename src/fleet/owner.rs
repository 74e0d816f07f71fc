//! Who owns a BundleDeployment: a GitRepo, a HelmOp, or only its Bundle.
//!
//! Fleet labels every BundleDeployment with its Bundle (`fleet.cattle.io/bundle-name`,
//! `fleet.cattle.io/bundle-namespace`) and, when a GitRepo or a HelmOp produced the
//! Bundle, with `fleet.cattle.io/repo-name` or `fleet.cattle.io/fleet-helm-name`.
//! Bundles with neither (Rancher's ManagedCharts as `mcc-<name>`, `fleet apply`) have
//! no status of their own to count in beyond the BundleDeployment's.

use std::{collections::BTreeMap, fmt};

use super::labels::{
    LABEL_BUNDLE_NAME, LABEL_BUNDLE_NAMESPACE, LABEL_HELM_OP_NAME, LABEL_REPO_NAME,
};

/// The kinds of Fleet object that own deployed resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OwnerKind {
    GitRepo,
    HelmOp,
    /// A Bundle with neither a GitRepo nor a HelmOp behind it.
    Bundle,
}

impl OwnerKind {
    /// The Kubernetes kind, also the `owner_kind` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerKind::GitRepo => "GitRepo",
            OwnerKind::HelmOp => "HelmOp",
            OwnerKind::Bundle => "Bundle",
        }
    }

    /// Owners whose status carries `resourceCounts` (Fleet's `StatusBase`).
    pub fn has_resource_counts(self) -> bool {
        matches!(self, OwnerKind::GitRepo | OwnerKind::HelmOp)
    }
}

impl fmt::Display for OwnerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Prefix Rancher gives the Bundles it makes from ManagedCharts.
pub const MANAGED_CHART_BUNDLE_PREFIX: &str = "mcc-";

/// One owner of deployed resources: `kind namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnerRef {
    pub kind: OwnerKind,
    pub namespace: String,
    pub name: String,
}

impl OwnerRef {
    pub fn new(kind: OwnerKind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        OwnerRef {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The owner a BundleDeployment's labels name. `bd_name` stands in for the Bundle
    /// when the bundle-name label is missing (Fleet makes them equal). A GitRepo wins
    /// over a HelmOp when both labels are present (never the case in Fleet).
    pub fn from_bundle_deployment_labels(labels: &BTreeMap<String, String>, bd_name: &str) -> Self {
        let label = |key: &str| labels.get(key).filter(|v| !v.is_empty());
        let namespace = label(LABEL_BUNDLE_NAMESPACE).cloned().unwrap_or_default();
        if let (Some(repo), false) = (label(LABEL_REPO_NAME), namespace.is_empty()) {
            return OwnerRef::new(OwnerKind::GitRepo, namespace, repo.clone());
        }
        if let (Some(op), false) = (label(LABEL_HELM_OP_NAME), namespace.is_empty()) {
            return OwnerRef::new(OwnerKind::HelmOp, namespace, op.clone());
        }
        let bundle = label(LABEL_BUNDLE_NAME)
            .cloned()
            .unwrap_or_else(|| bd_name.to_string());
        OwnerRef::new(OwnerKind::Bundle, namespace, bundle)
    }

    /// `namespace/name` (just `name` when the namespace is unknown).
    pub fn key(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }

    /// The ManagedChart behind a Bundle Rancher made (`mcc-<name>`), as `namespace/name`.
    pub fn managed_chart(&self) -> Option<String> {
        if self.kind != OwnerKind::Bundle {
            return None;
        }
        let chart = self.name.strip_prefix(MANAGED_CHART_BUNDLE_PREFIX)?;
        (!chart.is_empty()).then(|| {
            if self.namespace.is_empty() {
                chart.to_string()
            } else {
                format!("{}/{chart}", self.namespace)
            }
        })
    }
}

impl fmt::Display for OwnerRef {
    /// `GitRepo fleet-local/lots`, `HelmOp fleet-default/redis`, `Bundle fleet-local/mcc-x`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As `key()`, written straight into the formatter (no `String` in between).
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn gitrepo_helmop_and_bundle_only_owners() {
        let repo = OwnerRef::from_bundle_deployment_labels(
            &labels(&[
                (LABEL_REPO_NAME, "lots"),
                (LABEL_BUNDLE_NAMESPACE, "fleet-local"),
                (LABEL_BUNDLE_NAME, "lots-config2"),
            ]),
            "lots-config2",
        );
        assert_eq!(repo.to_string(), "GitRepo fleet-local/lots");

        let op = OwnerRef::from_bundle_deployment_labels(
            &labels(&[
                (LABEL_HELM_OP_NAME, "redis"),
                (LABEL_BUNDLE_NAMESPACE, "fleet-default"),
            ]),
            "redis",
        );
        assert_eq!(op.to_string(), "HelmOp fleet-default/redis");

        let mcc = OwnerRef::from_bundle_deployment_labels(
            &labels(&[(LABEL_BUNDLE_NAMESPACE, "fleet-local")]),
            "mcc-rancher-monitoring",
        );
        assert_eq!(mcc.to_string(), "Bundle fleet-local/mcc-rancher-monitoring");
        assert_eq!(
            mcc.managed_chart().as_deref(),
            Some("fleet-local/rancher-monitoring")
        );
        assert_eq!(repo.managed_chart(), None);
    }

    #[test]
    fn an_owner_label_without_the_bundle_namespace_is_not_trusted() {
        let o = OwnerRef::from_bundle_deployment_labels(
            &labels(&[(LABEL_REPO_NAME, "lots"), (LABEL_BUNDLE_NAME, "b")]),
            "b",
        );
        assert_eq!(o.kind, OwnerKind::Bundle);
        assert_eq!(o.key(), "b");
    }
}
