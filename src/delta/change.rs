//! One resource of one BundleDeployment going missing, or existing again.

use super::resource::DeletedResource;

/// Direction of one change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// The resource was deleted.
    Missing,
    /// The resource exists again (recreated, or the DELETE did not happen).
    Restored,
}

/// A change of one resource of a BundleDeployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceChange {
    pub resource: DeletedResource,
    pub kind: ChangeKind,
}

impl ResourceChange {
    pub fn missing(resource: DeletedResource) -> Self {
        ResourceChange {
            resource,
            kind: ChangeKind::Missing,
        }
    }

    pub fn restored(resource: DeletedResource) -> Self {
        ResourceChange {
            resource,
            kind: ChangeKind::Restored,
        }
    }
}
