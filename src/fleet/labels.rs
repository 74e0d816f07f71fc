//! Label and annotation keys Fleet, its objectset apply machinery and Helm put
//! on objects. The webhook matches on these, so they must be spelled exactly
//! as Fleet spells them.

/// Label on every object Fleet deploys: lowercase hex SHA-1 of the setID.
/// Its presence is what makes an object "Fleet-managed" for the webhook.
pub const LABEL_OBJECTSET_HASH: &str = "objectset.rio.cattle.io/hash";
/// Annotation on every object Fleet deploys: the setID itself.
pub const ANNOTATION_OBJECTSET_ID: &str = "objectset.rio.cattle.io/id";
/// Objects a user labels `prune: "false"` are never reported as orphaned.
pub const LABEL_OBJECTSET_PRUNE: &str = "objectset.rio.cattle.io/prune";

/// BundleDeployment label: name of the Bundle it was created from.
pub const LABEL_BUNDLE_NAME: &str = "fleet.cattle.io/bundle-name";
/// BundleDeployment label: namespace of that Bundle (= the GitRepo's namespace).
pub const LABEL_BUNDLE_NAMESPACE: &str = "fleet.cattle.io/bundle-namespace";
/// Bundle/BundleDeployment label: name of the GitRepo that produced it.
pub const LABEL_REPO_NAME: &str = "fleet.cattle.io/repo-name";
/// Bundle/BundleDeployment label: name of the HelmOp that produced it (Fleet ≥ v0.13).
pub const LABEL_HELM_OP_NAME: &str = "fleet.cattle.io/fleet-helm-name";
/// BundleDeployment label: name of the targeted Cluster.
pub const LABEL_CLUSTER: &str = "fleet.cattle.io/cluster";
/// BundleDeployment label: namespace of the targeted Cluster (e.g. `fleet-local`).
pub const LABEL_CLUSTER_NAMESPACE: &str = "fleet.cattle.io/cluster-namespace";
/// Bundle/BundleDeployment label: Git commit the bundle was built from.
pub const LABEL_COMMIT: &str = "fleet.cattle.io/commit";
/// Label Fleet puts on objects it manages for clean-up (`"true"`).
pub const LABEL_MANAGED: &str = "fleet.cattle.io/managed";

/// Helm's release-name annotation on every object of a release.
pub const ANNOTATION_HELM_RELEASE_NAME: &str = "meta.helm.sh/release-name";
/// Helm's release-namespace annotation on every object of a release.
pub const ANNOTATION_HELM_RELEASE_NAMESPACE: &str = "meta.helm.sh/release-namespace";
/// Helm's managed-by label value is `Helm`.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// CRDs carry `helm.sh/resource-policy: keep` unless deleteCRDResources is set.
pub const ANNOTATION_HELM_RESOURCE_POLICY: &str = "helm.sh/resource-policy";

/// API group of Fleet's own resources.
pub const FLEET_GROUP: &str = "fleet.cattle.io";
/// The only served version of Fleet's resources.
pub const FLEET_VERSION: &str = "v1alpha1";
/// `apiVersion` of Fleet's resources.
pub const FLEET_API_VERSION: &str = "fleet.cattle.io/v1alpha1";
