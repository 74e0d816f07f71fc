//! Fleet's own vocabulary: labels, annotations, setID and hash rules, status
//! types and the small pieces of Fleet logic (state machine, conditions) the
//! webhook must reproduce exactly to predict what Fleet will report.

pub mod api;
pub mod conditions;
pub mod gates;
pub mod labels;
pub mod names;
pub mod owner;
pub mod recognize;
pub mod release;
pub mod resource_key;
pub mod setid;
pub mod state;
pub mod status;
pub mod view;

pub use labels::*;
pub use names::{cluster_namespace, key_hash, safe_concat_name};
pub use owner::{OwnerKind, OwnerRef};
pub use resource_key::ResourceKey;
pub use setid::{
    hash_for_bundle_deployment, object_set_hash, object_set_hash_bytes, parse_object_set_hash,
    set_id, DEFAULT_LABEL_PREFIX,
};
