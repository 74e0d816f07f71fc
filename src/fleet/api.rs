//! Fleet's API resources, declared once: group, version, kind and plural of every
//! Fleet object the webhook reads or writes.

use kube::api::{ApiResource, GroupVersionKind};

use super::labels::{FLEET_API_VERSION, FLEET_GROUP, FLEET_VERSION};
use super::owner::OwnerKind;

/// One Fleet resource type (all are namespaced, `fleet.cattle.io/v1alpha1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetResource {
    pub kind: &'static str,
    pub plural: &'static str,
}

pub const BUNDLE_DEPLOYMENT: FleetResource = FleetResource {
    kind: "BundleDeployment",
    plural: "bundledeployments",
};
pub const GIT_REPO: FleetResource = FleetResource {
    kind: "GitRepo",
    plural: "gitrepos",
};
pub const HELM_OP: FleetResource = FleetResource {
    kind: "HelmOp",
    plural: "helmops",
};
pub const BUNDLE: FleetResource = FleetResource {
    kind: "Bundle",
    plural: "bundles",
};

impl FleetResource {
    pub const fn api_version(&self) -> &'static str {
        FLEET_API_VERSION
    }

    /// For kube's dynamic `Api`.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(FLEET_GROUP, FLEET_VERSION, self.kind),
            self.plural,
        )
    }

    /// The resource of an owner kind.
    pub fn of_owner(kind: OwnerKind) -> FleetResource {
        match kind {
            OwnerKind::GitRepo => GIT_REPO,
            OwnerKind::HelmOp => HELM_OP,
            OwnerKind::Bundle => BUNDLE,
        }
    }
}
