//! Fault injection: answer matching requests with an error, add latency, or hang.

use std::time::Duration;

use crate::log::{RequestRecord, Verb};

/// What a fault does to a matching request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer with this code and a `Status` in the apiserver's wording (or `message`).
    Respond {
        code: u16,
        message: Option<String>,
        /// Sent as `Retry-After` (seconds) and `details.retryAfterSeconds`.
        retry_after: Option<u64>,
    },
    /// Wait this long, then handle the request normally.
    Delay(Duration),
    /// Never answer: hold the request until the client gives up or the server stops
    /// (then it gets a 503), bounded by [`crate::Options::max_hang`].
    Hang,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum SubMatch {
    Main,
    Exactly(String),
    Any,
}

/// A fault rule. Built with [`Fault::new`] and modifiers, e.g.
/// `Fault::new(Verb::Patch, "gitrepos").subresource("status").times(2).respond(409)`.
///
/// By default a fault matches the main resource only (use [`Fault::subresource`] or
/// [`Fault::any_subresource`]), any namespace and name, fires once, and answers 500.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    verb: Option<Verb>,
    resource: Option<String>,
    subresource: SubMatch,
    name: Option<String>,
    namespace: Option<String>,
    pub(crate) times: Option<u32>,
    pub(crate) action: FaultAction,
}

impl Fault {
    /// Matches `verb` on the plural `resource` (any API group).
    pub fn new(verb: Verb, resource: &str) -> Self {
        Self {
            verb: Some(verb),
            resource: Some(resource.to_string()),
            subresource: SubMatch::Main,
            name: None,
            namespace: None,
            times: Some(1),
            action: FaultAction::Respond {
                code: 500,
                message: None,
                retry_after: None,
            },
        }
    }

    /// Matches every verb on `resource`.
    pub fn any_verb(resource: &str) -> Self {
        Self {
            verb: None,
            ..Self::new(Verb::Get, resource)
        }
    }

    /// Matches every request, discovery included.
    pub fn any_request() -> Self {
        Self {
            verb: None,
            resource: None,
            subresource: SubMatch::Any,
            ..Self::new(Verb::Get, "")
        }
    }

    pub fn subresource(mut self, sub: &str) -> Self {
        self.subresource = SubMatch::Exactly(sub.to_string());
        self
    }

    pub fn any_subresource(mut self) -> Self {
        self.subresource = SubMatch::Any;
        self
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.to_string());
        self
    }

    /// Applies to the next `n` matching requests (default 1).
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    /// Applies until cleared.
    pub fn always(mut self) -> Self {
        self.times = None;
        self
    }

    /// Answer with `code` (a `Status` with the apiserver's reason for that code).
    pub fn respond(mut self, code: u16) -> Self {
        let (message, retry_after) = match self.action {
            FaultAction::Respond {
                message,
                retry_after,
                ..
            } => (message, retry_after),
            _ => (None, None),
        };
        self.action = FaultAction::Respond {
            code,
            message,
            retry_after,
        };
        self
    }

    /// Adds `Retry-After: secs` to a `respond` fault.
    pub fn retry_after(mut self, secs: u64) -> Self {
        if let FaultAction::Respond { retry_after, .. } = &mut self.action {
            *retry_after = Some(secs);
        }
        self
    }

    /// Overrides the Status message of a `respond` fault.
    pub fn message(mut self, msg: &str) -> Self {
        if let FaultAction::Respond { message, .. } = &mut self.action {
            *message = Some(msg.to_string());
        }
        self
    }

    /// Delay matching requests, then serve them normally.
    pub fn delay(mut self, d: Duration) -> Self {
        self.action = FaultAction::Delay(d);
        self
    }

    /// Never answer matching requests.
    pub fn hang(mut self) -> Self {
        self.action = FaultAction::Hang;
        self
    }

    pub(crate) fn matches(&self, r: &RequestRecord) -> bool {
        if self.verb.is_some_and(|v| v != r.verb) {
            return false;
        }
        if let Some(res) = &self.resource {
            if r.resource() != res {
                return false;
            }
        }
        let sub_ok = match &self.subresource {
            SubMatch::Main => r.subresource.is_none(),
            SubMatch::Exactly(s) => r.subresource.as_deref() == Some(s.as_str()),
            SubMatch::Any => true,
        };
        sub_ok
            && self
                .name
                .as_ref()
                .is_none_or(|n| r.name.as_ref() == Some(n))
            && self
                .namespace
                .as_ref()
                .is_none_or(|n| r.namespace.as_ref() == Some(n))
    }
}

/// Identifies an injected fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FaultId(pub(crate) u64);

pub(crate) struct ActiveFault {
    pub(crate) id: FaultId,
    pub(crate) fault: Fault,
    pub(crate) remaining: Option<u32>,
    pub(crate) hits: u32,
}
