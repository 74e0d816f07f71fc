//! Pure status arithmetic: what Fleet would write after a resource goes missing.
//!
//! Fleet reports a manually deleted object only after its agent's next drift
//! pass (~5 s) and the GitRepo status reconciler's delay (~3 s). These
//! modules compute the same status changes at once, so the webhook can write
//! them immediately, and compute them idempotently, so retries, conflicts
//! and Fleet getting there first never count a deletion twice.
//!
//! What production writes, and only that:
//! - [`bundle_deployment::status_after`]: the agent's BD status change for a batch of
//!   [`ResourceChange`]s (built on `mark_missing` / `unmark_missing`).
//! - [`owner::status_after`]: the GitRepo's or HelmOp's status after those BD changes —
//!   Fleet's recompute ([`recompute`]) when all the owner's BDs are known
//!   ([`gitrepo::all_known`]), else [`gitrepo`]'s incremental, idempotent deltas.
//!
//! Around them:
//! - [`batch`]: a worker batch replayed in memory through the two functions above (what
//!   the property tests drive).
//! - [`recompute`]: Fleet's full owner recompute from all BDs (also the API double's
//!   model of Fleet's controller).
//! - [`merge_patch`]: RFC 7386 diff for writing only what changed.
//! - [`resource_states`], [`summary`]: Fleet helpers shared by the above.

pub mod batch;
pub mod bundle_deployment;
pub mod change;
pub mod gitrepo;
pub mod merge_patch;
pub mod owner;
pub mod recompute;
pub mod resource;
pub mod resource_states;
pub mod summary;

pub use change::{ChangeKind, ResourceChange};
pub use gitrepo::GitRepoOutcome;
pub use merge_patch::merge_patch_diff;
pub use resource::DeletedResource;
