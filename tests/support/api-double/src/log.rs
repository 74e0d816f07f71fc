//! The request log that tests assert on.

use std::time::Duration;

use serde_json::Value;

use crate::resources::Gvr;

/// The Kubernetes verb of a request (as RBAC names them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
    /// `/version`, `/api`, `/apis`, `/api/v1`, `/apis/G/V`.
    Discovery,
    /// A path or method the double does not serve.
    Unknown,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Discovery => "discovery",
            Verb::Unknown => "unknown",
        }
    }
}

/// Who made a request or write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// An HTTP client of the double.
    Client,
    /// A write returned by an `on_update` hook, with the hook's name.
    Hook(String),
}

/// One logged request (or hook write).
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// Position in the log, from 0.
    pub seq: u64,
    /// Time since the double started.
    pub at: Duration,
    pub origin: Origin,
    pub method: String,
    pub verb: Verb,
    pub gvr: Option<Gvr>,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    /// The `Accept` header (e.g. kube's metadata-only `as=PartialObjectMetadata`).
    pub accept: Option<String>,
    pub user_agent: Option<String>,
    /// The authenticated user name (`None` for hook writes).
    pub user: Option<String>,
    /// The request body when it was JSON.
    pub body: Option<Value>,
    /// The response code; `None` while the request is still being answered (or hangs).
    pub status: Option<u16>,
    /// Answered (or delayed) by an injected fault.
    pub faulted: bool,
}

impl RequestRecord {
    /// Plural resource name, or "" for discovery and unknown paths.
    pub fn resource(&self) -> &str {
        self.gvr.as_ref().map(|g| g.resource.as_ref()).unwrap_or("")
    }

    /// Same verb, plural resource and subresource (`None` = the main resource).
    pub fn is(&self, verb: Verb, resource: &str, subresource: Option<&str>) -> bool {
        self.verb == verb
            && self.resource() == resource
            && self.subresource.as_deref() == subresource
    }
}
