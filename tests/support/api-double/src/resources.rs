//! The data-driven resource table: which kinds the double serves and how they behave.

use std::borrow::Cow;
use std::fmt;

/// Group, version and plural resource name, e.g. `fleet.cattle.io/v1alpha1/gitrepos`.
/// The core group is the empty string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gvr {
    pub group: Cow<'static, str>,
    pub version: Cow<'static, str>,
    pub resource: Cow<'static, str>,
}

impl Gvr {
    /// A `Gvr` usable in `const` items.
    pub const fn new_static(
        group: &'static str,
        version: &'static str,
        resource: &'static str,
    ) -> Self {
        Self {
            group: Cow::Borrowed(group),
            version: Cow::Borrowed(version),
            resource: Cow::Borrowed(resource),
        }
    }

    pub fn new(
        group: impl Into<String>,
        version: impl Into<String>,
        resource: impl Into<String>,
    ) -> Self {
        Self {
            group: Cow::Owned(group.into()),
            version: Cow::Owned(version.into()),
            resource: Cow::Owned(resource.into()),
        }
    }

    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `gitrepos.fleet.cattle.io` or `configmaps`: how the apiserver names a resource in messages.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

impl fmt::Display for Gvr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}/{}", self.version, self.resource)
        } else {
            write!(f, "{}/{}/{}", self.group, self.version, self.resource)
        }
    }
}

/// Constants for the resources the double serves out of the box.
pub mod gvr {
    use super::Gvr;
    pub const GITREPOS: Gvr = Gvr::new_static("fleet.cattle.io", "v1alpha1", "gitrepos");
    pub const HELMOPS: Gvr = Gvr::new_static("fleet.cattle.io", "v1alpha1", "helmops");
    pub const BUNDLEDEPLOYMENTS: Gvr =
        Gvr::new_static("fleet.cattle.io", "v1alpha1", "bundledeployments");
    pub const BUNDLES: Gvr = Gvr::new_static("fleet.cattle.io", "v1alpha1", "bundles");
    pub const CLUSTERS: Gvr = Gvr::new_static("fleet.cattle.io", "v1alpha1", "clusters");
    pub const CONFIGMAPS: Gvr = Gvr::new_static("", "v1", "configmaps");
    pub const SECRETS: Gvr = Gvr::new_static("", "v1", "secrets");
    pub const SERVICES: Gvr = Gvr::new_static("", "v1", "services");
    /// core/v1 Events (the legacy API).
    pub const EVENTS: Gvr = Gvr::new_static("", "v1", "events");
    pub const NAMESPACES: Gvr = Gvr::new_static("", "v1", "namespaces");
    /// events.k8s.io/v1 Events, which kube-runtime's `Recorder` writes.
    pub const EVENTS_K8S_IO: Gvr = Gvr::new_static("events.k8s.io", "v1", "events");
    pub const DEPLOYMENTS: Gvr = Gvr::new_static("apps", "v1", "deployments");
    pub const SERVICE_ACCOUNTS: Gvr = Gvr::new_static("", "v1", "serviceaccounts");
    pub const POD_DISRUPTION_BUDGETS: Gvr = Gvr::new_static("policy", "v1", "poddisruptionbudgets");
    pub const VALIDATING_WEBHOOK_CONFIGURATIONS: Gvr = Gvr::new_static(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
    );
    pub const CLUSTER_ROLES: Gvr =
        Gvr::new_static("rbac.authorization.k8s.io", "v1", "clusterroles");
    pub const CLUSTER_ROLE_BINDINGS: Gvr =
        Gvr::new_static("rbac.authorization.k8s.io", "v1", "clusterrolebindings");
    pub const ROLES: Gvr = Gvr::new_static("rbac.authorization.k8s.io", "v1", "roles");
    pub const ROLE_BINDINGS: Gvr =
        Gvr::new_static("rbac.authorization.k8s.io", "v1", "rolebindings");
}

/// How one resource behaves. Build entries with [`ResourceDef::crd`] / [`ResourceDef::builtin`]
/// and the `const` modifiers; add them through [`crate::Options::extra_resources`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceDef {
    pub gvr: Gvr,
    pub kind: Cow<'static, str>,
    /// Namespaced (true) or cluster-scoped.
    pub namespaced: bool,
    /// Has a `/status` subresource: writes to the main resource ignore `.status`, writes to
    /// `/status` change only `.status`, and `.status` is dropped on create.
    pub status_subresource: bool,
    /// The apiserver maintains `metadata.generation` (bumped when anything outside
    /// `metadata` and `status` changes).
    pub generation: bool,
    /// Served by a CustomResourceDefinition: DELETE returns the deleted object (built-ins
    /// answer with a `Status`), strategic merge patches are rejected with 415.
    pub custom: bool,
}

impl ResourceDef {
    /// A namespaced custom resource with a status subresource (what Fleet's CRDs are).
    pub const fn crd(
        group: &'static str,
        version: &'static str,
        plural: &'static str,
        kind: &'static str,
    ) -> Self {
        Self {
            gvr: Gvr::new_static(group, version, plural),
            kind: Cow::Borrowed(kind),
            namespaced: true,
            status_subresource: true,
            generation: true,
            custom: true,
        }
    }

    /// A namespaced built-in resource without status subresource or generation.
    pub const fn builtin(
        group: &'static str,
        version: &'static str,
        plural: &'static str,
        kind: &'static str,
    ) -> Self {
        Self {
            gvr: Gvr::new_static(group, version, plural),
            kind: Cow::Borrowed(kind),
            namespaced: true,
            status_subresource: false,
            generation: false,
            custom: false,
        }
    }

    pub const fn cluster_scoped(mut self) -> Self {
        self.namespaced = false;
        self
    }

    pub const fn with_status(mut self) -> Self {
        self.status_subresource = true;
        self
    }

    pub const fn with_generation(mut self) -> Self {
        self.generation = true;
        self
    }

    pub fn api_version(&self) -> String {
        self.gvr.api_version()
    }

    /// `GitRepoList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

/// Everything the double serves by default. One line per kind.
pub const BUILTIN_RESOURCES: &[ResourceDef] = &[
    ResourceDef::crd("fleet.cattle.io", "v1alpha1", "gitrepos", "GitRepo"),
    ResourceDef::crd("fleet.cattle.io", "v1alpha1", "helmops", "HelmOp"),
    ResourceDef::crd(
        "fleet.cattle.io",
        "v1alpha1",
        "bundledeployments",
        "BundleDeployment",
    ),
    ResourceDef::crd("fleet.cattle.io", "v1alpha1", "bundles", "Bundle"),
    ResourceDef::crd("fleet.cattle.io", "v1alpha1", "clusters", "Cluster"),
    ResourceDef::builtin("", "v1", "configmaps", "ConfigMap"),
    ResourceDef::builtin("", "v1", "secrets", "Secret"),
    ResourceDef::builtin("", "v1", "services", "Service").with_status(),
    ResourceDef::builtin("", "v1", "events", "Event"),
    ResourceDef::builtin("", "v1", "namespaces", "Namespace")
        .cluster_scoped()
        .with_status(),
    ResourceDef::builtin("events.k8s.io", "v1", "events", "Event"),
    ResourceDef::builtin("coordination.k8s.io", "v1", "leases", "Lease"),
    ResourceDef::builtin("apps", "v1", "deployments", "Deployment")
        .with_status()
        .with_generation(),
    ResourceDef::builtin("", "v1", "serviceaccounts", "ServiceAccount"),
    ResourceDef::builtin(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
    )
    .with_status()
    .with_generation(),
    // What deploy/ installs, so it can be seeded and enforced (webhooks, RBAC).
    ResourceDef::builtin(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
    )
    .cluster_scoped()
    .with_generation(),
    ResourceDef::builtin(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
    )
    .cluster_scoped(),
    ResourceDef::builtin(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
    )
    .cluster_scoped(),
    ResourceDef::builtin("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    ResourceDef::builtin(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
    ),
];

/// kubectl's short names (`kubectl get cm`), served in discovery.
pub(crate) fn short_names(gvr: &Gvr) -> &'static [&'static str] {
    match (gvr.group.as_ref(), gvr.resource.as_ref()) {
        ("", "configmaps") => &["cm"],
        ("", "services") => &["svc"],
        ("", "namespaces") => &["ns"],
        ("", "events") => &["ev"],
        ("", "serviceaccounts") => &["sa"],
        ("apps", "deployments") => &["deploy"],
        ("policy", "poddisruptionbudgets") => &["pdb"],
        ("events.k8s.io", "events") => &["ev"],
        _ => &[],
    }
}

/// The resources of one running double (built-ins plus extras), indexed by position.
#[derive(Clone, Debug)]
pub(crate) struct ResourceTable {
    defs: Vec<ResourceDef>,
}

impl ResourceTable {
    pub(crate) fn new(extra: &[ResourceDef]) -> Self {
        let mut defs: Vec<ResourceDef> = BUILTIN_RESOURCES.to_vec();
        for e in extra {
            if let Some(pos) = defs.iter().position(|d| d.gvr == e.gvr) {
                defs[pos] = e.clone();
            } else {
                defs.push(e.clone());
            }
        }
        Self { defs }
    }

    pub(crate) fn get(&self, idx: usize) -> &ResourceDef {
        &self.defs[idx]
    }

    pub(crate) fn all(&self) -> &[ResourceDef] {
        &self.defs
    }

    pub(crate) fn by_gvr(&self, gvr: &Gvr) -> Option<usize> {
        self.defs.iter().position(|d| &d.gvr == gvr)
    }

    pub(crate) fn by_path(&self, group: &str, version: &str, plural: &str) -> Option<usize> {
        self.defs.iter().position(|d| {
            d.gvr.group == group && d.gvr.version == version && d.gvr.resource == plural
        })
    }

    /// Finds the resource of an object from its `apiVersion` and `kind`.
    pub(crate) fn by_api_version_kind(&self, api_version: &str, kind: &str) -> Option<usize> {
        let (group, version) = split_api_version(api_version);
        self.defs
            .iter()
            .position(|d| d.gvr.group == group && d.gvr.version == version && d.kind == kind)
    }

    pub(crate) fn group_versions(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for d in &self.defs {
            let gv = (d.gvr.group.to_string(), d.gvr.version.to_string());
            if !out.contains(&gv) {
                out.push(gv);
            }
        }
        out
    }
}

pub(crate) fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}
