//! Pure status arithmetic: what Fleet would write after a resource goes missing.

pub mod bundle_deployment;
pub mod resource;

pub use resource::DeletedResource;
