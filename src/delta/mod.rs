//! Pure status arithmetic: what Fleet would write after a resource goes missing.

pub mod bundle_deployment;
pub mod resource;

pub use resource::DeletedResource;
pub mod recompute;
pub mod resource_states;
pub mod summary;
pub mod gitrepo;
pub mod batch;
pub mod merge_patch;

pub use merge_patch::merge_patch_diff;
