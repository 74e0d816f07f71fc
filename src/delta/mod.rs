//! Pure status arithmetic: what Fleet would write after a resource goes missing.
//!
//! Fleet reports a manually deleted object only after its agent's next drift
//! pass (~5 s) and the GitRepo status reconciler's delay (~3 s). These
//! modules compute the same status changes at once, so the webhook can write
//! them immediately, and compute them idempotently, so retries, conflicts
//! and Fleet getting there first never count a deletion twice.
//!
//! - [`bundle_deployment`]: the agent's BD status change (`mark_missing` /
//!   `unmark_missing`).
//! - [`gitrepo`]: the GitRepo status change for one BD change, decided from
//!   the GitRepo status itself.
//! - [`batch`]: several deletions of one GitRepo, in order (coalescing).
//! - [`recompute`]: Fleet's full GitRepo recompute from all BDs (reference
//!   model for tests and the API double).
//! - [`merge_patch`]: RFC 7386 diff for writing only what changed.
//! - [`resource_states`], [`summary`]: Fleet helpers shared by the above.

pub mod batch;
pub mod bundle_deployment;
pub mod gitrepo;
pub mod merge_patch;
pub mod recompute;
pub mod resource;
pub mod resource_states;
pub mod summary;

pub use gitrepo::GitRepoOutcome;
pub use merge_patch::merge_patch_diff;
pub use resource::DeletedResource;
