//! Controller imitation: hooks that run after writes and return writes of their own.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::resources::Gvr;
use crate::selector::LabelSelector;
use crate::store::{Db, EventType};

/// Names one object. `namespace` is "" for cluster-scoped objects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    pub gvr: Gvr,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(gvr: &Gvr, namespace: &str, name: &str) -> Self {
        Self {
            gvr: gvr.clone(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// A write a hook asks the double to make. The double applies it as its own writer (a
/// separate entry in the request log with [`crate::Origin::Hook`]), bumping the
/// resourceVersion and emitting watch events like any other write.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Create or replace a whole object (status included), no preconditions.
    Put(Value),
    /// A merge patch with the semantics of an HTTP PATCH: on the main resource `.status`
    /// is ignored, with `status: true` only `.status` changes, and a
    /// `metadata.resourceVersion` in the patch is a precondition (→ Conflict).
    MergePatch {
        target: ObjectKey,
        patch: Value,
        status: bool,
    },
    /// Like an HTTP DELETE (objects with finalizers only get `deletionTimestamp`).
    Delete(ObjectKey),
}

impl Write {
    pub fn put(obj: Value) -> Self {
        Write::Put(obj)
    }

    pub fn merge_patch(gvr: &Gvr, namespace: &str, name: &str, patch: Value) -> Self {
        Write::MergePatch {
            target: ObjectKey::new(gvr, namespace, name),
            patch,
            status: false,
        }
    }

    pub fn merge_patch_status(gvr: &Gvr, namespace: &str, name: &str, patch: Value) -> Self {
        Write::MergePatch {
            target: ObjectKey::new(gvr, namespace, name),
            patch,
            status: true,
        }
    }

    pub fn delete(gvr: &Gvr, namespace: &str, name: &str) -> Self {
        Write::Delete(ObjectKey::new(gvr, namespace, name))
    }
}

/// A read-only view of every stored object, handed to hooks.
pub struct StoreView<'a> {
    pub(crate) db: &'a Db,
    pub(crate) event: EventType,
}

impl StoreView<'_> {
    /// What happened to the object the hook was called for.
    pub fn event(&self) -> EventType {
        self.event
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.db.rv
    }

    pub fn get(&self, gvr: &Gvr, namespace: &str, name: &str) -> Option<&Value> {
        let res = self.db.rt.by_gvr(gvr)?;
        self.db.get(res, namespace, name)
    }

    /// All objects of a resource (in one namespace, or all with `None`), in key order.
    pub fn list(&self, gvr: &Gvr, namespace: Option<&str>) -> Vec<&Value> {
        match self.db.rt.by_gvr(gvr) {
            Some(res) => self.db.iter(res, namespace).map(|(_, v)| v).collect(),
            None => Vec::new(),
        }
    }

    /// Like [`StoreView::list`] with a label selector in the apiserver's syntax
    /// (an invalid selector selects nothing).
    pub fn list_selected(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Vec<&Value> {
        match LabelSelector::parse(label_selector) {
            Ok(sel) => self
                .list(gvr, namespace)
                .into_iter()
                .filter(|o| sel.matches(o))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// A hook: given the store and the object just written, the writes to make next.
/// Hooks run on the double's runtime with the store locked: keep them quick and never call
/// the [`crate::ApiDouble`] from inside one (return [`Write`]s instead).
pub type HookFn = dyn Fn(&StoreView<'_>, &Value) -> Vec<Write> + Send + Sync;

/// How a hook runs.
#[derive(Clone, Debug)]
pub struct HookOptions {
    /// Shown as [`crate::Origin::Hook`] in the request log.
    pub name: String,
    /// Wait this long after the triggering write before reading the store.
    pub delay: Duration,
    /// Which events trigger the hook (default: all).
    pub events: Vec<EventType>,
}

impl HookOptions {
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_string(),
            ..Self::default()
        }
    }

    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    pub fn events(mut self, events: &[EventType]) -> Self {
        self.events = events.to_vec();
        self
    }
}

impl Default for HookOptions {
    fn default() -> Self {
        Self {
            name: "hook".to_string(),
            delay: Duration::ZERO,
            events: vec![EventType::Added, EventType::Modified, EventType::Deleted],
        }
    }
}

/// Identifies a registered hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HookId(pub(crate) u64);

pub(crate) struct HookEntry {
    pub(crate) id: HookId,
    pub(crate) res: usize,
    pub(crate) opts: HookOptions,
    pub(crate) f: Arc<HookFn>,
}
