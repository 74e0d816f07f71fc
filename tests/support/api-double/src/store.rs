//! In-memory object storage with apiserver write semantics, watch history and watch fan-out.

use std::collections::{BTreeMap, VecDeque};

use axum::body::Bytes;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::patch::{json_patch, merge_patch, JsonPatchError};
use crate::resources::{ResourceDef, ResourceTable};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::util::{name_suffix, new_uid, now_rfc3339};

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects.
pub(crate) type Key = (String, String);

/// The type of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change, kept for watch resumption.
#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    res: usize,
    ty: EventType,
    object: Value,
    old: Option<Value>,
}

/// A change that happened during one locked operation; hooks and waiters are told afterwards.
#[derive(Clone, Debug)]
pub(crate) struct Committed {
    pub(crate) res: usize,
    pub(crate) ty: EventType,
    pub(crate) object: Value,
    pub(crate) fire_hooks: bool,
}

pub(crate) enum WatchMsg {
    Line(Bytes),
    /// End the stream with an error: the connection is cut without the final chunk.
    Abort,
}

struct WatchSub {
    id: u64,
    res: usize,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    tx: UnboundedSender<WatchMsg>,
}

impl WatchSub {
    fn selects(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace {
            if meta_str(obj, "namespace").unwrap_or("") != ns {
                return false;
            }
        }
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// What this watcher sees of a change, with the apiserver's selector transitions:
    /// an object that starts matching is ADDED, one that stops matching is DELETED.
    fn translate(&self, c: &Change) -> Option<(EventType, Value)> {
        if c.res != self.res {
            return None;
        }
        let now = self.selects(&c.object);
        match c.ty {
            EventType::Added | EventType::Deleted => now.then(|| (c.ty, c.object.clone())),
            EventType::Modified => {
                let before = c.old.as_ref().is_some_and(|o| self.selects(o));
                match (before, now) {
                    (true, true) => Some((EventType::Modified, c.object.clone())),
                    (false, true) => Some((EventType::Added, c.object.clone())),
                    (true, false) => {
                        let mut gone = c.old.clone().unwrap_or(Value::Null);
                        set_meta(&mut gone, "resourceVersion", json!(c.rv.to_string()));
                        Some((EventType::Deleted, gone))
                    }
                    (false, false) => None,
                }
            }
        }
    }
}

pub(crate) fn event_line(ty: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": ty, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// Where a watch starts.
pub(crate) enum WatchFrom {
    /// `resourceVersion` unset or "0": synthetic ADDED events for the current state first
    /// (unless `sendInitialEvents=false`), then an `initial-events-end` bookmark when asked.
    Now {
        initial_events: bool,
        end_bookmark: bool,
    },
    /// Resume after this resourceVersion.
    After(u64),
}

pub(crate) enum PatchType {
    Merge,
    Json,
    Apply,
}

/// The result of one write.
pub(crate) struct Outcome {
    pub(crate) object: Value,
    pub(crate) created: bool,
    /// The object is gone (it had no finalizers left).
    pub(crate) removed: bool,
}

pub(crate) struct Db {
    pub(crate) rt: ResourceTable,
    pub(crate) rv: u64,
    /// Watches from a resourceVersion below this one get `410 Expired`.
    pub(crate) floor: u64,
    history_limit: usize,
    objects: Vec<BTreeMap<Key, Value>>,
    history: VecDeque<Change>,
    subs: Vec<WatchSub>,
    next_sub: u64,
    pub(crate) pending: Vec<Committed>,
}

pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

pub(crate) fn set_meta(obj: &mut Value, field: &str, value: Value) {
    if let Value::Object(o) = obj {
        let m = o
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if !m.is_object() {
            *m = Value::Object(Map::new());
        }
        if let Value::Object(m) = m {
            m.insert(field.to_string(), value);
        }
    }
}

fn remove_meta(obj: &mut Value, field: &str) {
    if let Some(Value::Object(m)) = obj.get_mut("metadata") {
        m.remove(field);
    }
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Content outside `metadata` (and `status` when it is a subresource): what `generation` tracks.
fn spec_part(rd: &ResourceDef, obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Value::Object(m) = &mut v {
        m.remove("metadata");
        if rd.status_subresource {
            m.remove("status");
        }
    }
    v
}

fn ensure_object(body: &Value) -> Result<(), ApiError> {
    if body.is_object() {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "the body of the request was in an unknown format: expected a JSON object",
        ))
    }
}

/// Fills in or checks `apiVersion` and `kind`.
fn check_type_meta(rd: &ResourceDef, body: &mut Value) -> Result<(), ApiError> {
    let want_av = rd.api_version();
    let av = body
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind = body
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !av.is_empty() && av != want_av {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({want_av})"
        )));
    }
    if !kind.is_empty() && kind != rd.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            rd.kind
        )));
    }
    if let Value::Object(m) = body {
        m.insert("apiVersion".into(), json!(want_av));
        m.insert("kind".into(), json!(rd.kind));
        if !m.get("metadata").is_some_and(Value::is_object) {
            m.insert("metadata".into(), json!({}));
        }
    }
    Ok(())
}

impl Db {
    pub(crate) fn new(rt: ResourceTable, history_limit: usize, start_rv: u64) -> Self {
        let n = rt.all().len();
        Self {
            rt,
            rv: start_rv,
            floor: start_rv,
            history_limit: history_limit.max(1),
            objects: vec![BTreeMap::new(); n],
            history: VecDeque::new(),
            subs: Vec::new(),
            next_sub: 1,
            pending: Vec::new(),
        }
    }

    fn key(&self, res: usize, ns: &str, name: &str) -> Key {
        if self.rt.get(res).namespaced {
            (ns.to_string(), name.to_string())
        } else {
            (String::new(), name.to_string())
        }
    }

    pub(crate) fn get(&self, res: usize, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(res)?.get(&self.key(res, ns, name))
    }

    /// Objects of a resource in key order, optionally in one namespace.
    pub(crate) fn iter<'a>(
        &'a self,
        res: usize,
        ns: Option<&str>,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        let ns = ns.map(str::to_string);
        self.objects[res]
            .iter()
            .filter(move |((n, _), _)| ns.as_ref().is_none_or(|want| want == n))
    }

    /// Objects after `after` (exclusive) in key order.
    pub(crate) fn iter_after<'a>(
        &'a self,
        res: usize,
        after: Option<Key>,
    ) -> Box<dyn Iterator<Item = (&'a Key, &'a Value)> + 'a> {
        match after {
            Some(k) => Box::new(
                self.objects[res].range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded)),
            ),
            None => Box::new(self.objects[res].iter()),
        }
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Stores (or removes, for DELETED) an object whose resourceVersion is already set,
    /// records history and fans the event out to watchers.
    fn commit(
        &mut self,
        res: usize,
        ty: EventType,
        object: Value,
        old: Option<Value>,
        fire_hooks: bool,
    ) {
        let key = self.key(
            res,
            meta_str(&object, "namespace").unwrap_or(""),
            meta_str(&object, "name").unwrap_or(""),
        );
        match ty {
            EventType::Deleted => {
                self.objects[res].remove(&key);
            }
            _ => {
                self.objects[res].insert(key, object.clone());
            }
        }
        let change = Change {
            rv: self.rv,
            res,
            ty,
            object: object.clone(),
            old,
        };
        self.subs.retain(|s| match s.translate(&change) {
            Some((t, o)) => {
                s.tx.send(WatchMsg::Line(event_line(t.as_str(), &o)))
                    .is_ok()
            }
            None => !s.tx.is_closed(),
        });
        self.history.push_back(change);
        while self.history.len() > self.history_limit {
            if let Some(c) = self.history.pop_front() {
                self.floor = self.floor.max(c.rv);
            }
        }
        self.pending.push(Committed {
            res,
            ty,
            object,
            fire_hooks,
        });
    }

    /// Drops the watch history: every resourceVersion handed out so far becomes too old.
    pub(crate) fn compact(&mut self) {
        self.history.clear();
        self.rv += 1;
        self.floor = self.rv;
    }

    // ---------------------------------------------------------------- client verbs

    pub(crate) fn create(
        &mut self,
        res: usize,
        url_ns: &str,
        mut body: Value,
        dry_run: bool,
    ) -> Result<Outcome, ApiError> {
        let rd = self.rt.get(res).clone();
        ensure_object(&body)?;
        check_type_meta(&rd, &mut body)?;
        crate::admission::check_match_conditions(&rd, &body)?;
        if rd.namespaced {
            match meta_str(&body, "namespace") {
                Some(ns) if !ns.is_empty() && ns != url_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                _ => set_meta(&mut body, "namespace", json!(url_ns)),
            }
        } else {
            remove_meta(&mut body, "namespace");
        }
        let mut name = meta_str(&body, "name").unwrap_or("").to_string();
        if name.is_empty() {
            let gen = meta_str(&body, "generateName").unwrap_or("").to_string();
            if gen.is_empty() {
                return Err(ApiError::invalid(
                    &rd.gvr,
                    &rd.kind,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                ));
            }
            name = format!("{gen}{}", name_suffix());
            set_meta(&mut body, "name", json!(name));
        }
        if meta_str(&body, "resourceVersion").is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        if self.get(res, url_ns, &name).is_some() {
            return Err(ApiError::already_exists(&rd.gvr, &name));
        }
        if rd.status_subresource {
            if let Value::Object(m) = &mut body {
                m.remove("status");
            }
        }
        set_meta(&mut body, "uid", json!(new_uid()));
        set_meta(&mut body, "creationTimestamp", json!(now_rfc3339()));
        remove_meta(&mut body, "deletionTimestamp");
        remove_meta(&mut body, "deletionGracePeriodSeconds");
        if rd.generation {
            set_meta(&mut body, "generation", json!(1));
        } else {
            remove_meta(&mut body, "generation");
        }
        if dry_run {
            return Ok(Outcome {
                object: body,
                created: true,
                removed: false,
            });
        }
        let rv = self.next_rv();
        set_meta(&mut body, "resourceVersion", json!(rv.to_string()));
        self.commit(res, EventType::Added, body.clone(), None, true);
        Ok(Outcome {
            object: body,
            created: true,
            removed: false,
        })
    }

    fn check_url_identity(
        &self,
        res: usize,
        ns: &str,
        name: &str,
        body: &Value,
    ) -> Result<(), ApiError> {
        let rd = self.rt.get(res);
        let body_name = meta_str(body, "name").unwrap_or("");
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if rd.namespaced {
            if let Some(b) = meta_str(body, "namespace") {
                if !b.is_empty() && b != ns {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
            }
        }
        Ok(())
    }

    /// PUT on the object or its `/status`.
    pub(crate) fn update(
        &mut self,
        res: usize,
        ns: &str,
        name: &str,
        mut body: Value,
        status_only: bool,
        dry_run: bool,
    ) -> Result<Outcome, ApiError> {
        let rd = self.rt.get(res).clone();
        if status_only && !rd.status_subresource {
            return Err(ApiError::path_not_found());
        }
        ensure_object(&body)?;
        check_type_meta(&rd, &mut body)?;
        crate::admission::check_match_conditions(&rd, &body)?;
        self.check_url_identity(res, ns, name, &body)?;
        let old = self
            .get(res, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rd.gvr, name))?;
        self.finish_update(res, old, body, status_only, dry_run, true)
    }

    /// PATCH on the object or its `/status`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn patch(
        &mut self,
        res: usize,
        ns: &str,
        name: &str,
        ptype: PatchType,
        patch: &Value,
        status_only: bool,
        dry_run: bool,
    ) -> Result<Outcome, ApiError> {
        let rd = self.rt.get(res).clone();
        if status_only && !rd.status_subresource {
            return Err(ApiError::path_not_found());
        }
        let Some(old) = self.get(res, ns, name).cloned() else {
            if matches!(ptype, PatchType::Apply) && !status_only {
                // server-side apply creates missing objects
                let mut obj = json!({});
                merge_patch(&mut obj, patch);
                self.check_url_identity(res, ns, name, &obj)?;
                if obj.get("apiVersion").is_none() || obj.get("kind").is_none() {
                    return Err(ApiError::bad_request(
                        "apiVersion and kind must be set for apply",
                    ));
                }
                return self.create(res, ns, obj, dry_run);
            }
            return Err(ApiError::not_found(&rd.gvr, name));
        };
        let patched = match ptype {
            PatchType::Merge | PatchType::Apply => {
                if !patch.is_object() {
                    return Err(ApiError::bad_request(
                        "invalid JSON merge patch: the patch must be a JSON object",
                    ));
                }
                let mut doc = old.clone();
                merge_patch(&mut doc, patch);
                doc
            }
            PatchType::Json => match json_patch(&old, patch) {
                Ok(doc) => doc,
                Err(JsonPatchError::Malformed(m)) => return Err(ApiError::bad_request(m)),
                Err(JsonPatchError::Failed(m)) => {
                    let mut e = ApiError::new(
                        422,
                        "Invalid",
                        "the server rejected our request due to an error in our request",
                    );
                    e.details = Some(json!({"causes": [{"message": m}]}));
                    return Err(e);
                }
            },
        };
        let mut patched = patched;
        check_type_meta(&rd, &mut patched)?;
        crate::admission::check_match_conditions(&rd, &patched)?;
        self.check_url_identity(res, ns, name, &patched)?;
        self.finish_update(res, old, patched, status_only, dry_run, true)
    }

    /// The shared tail of every update: preconditions, subresource rules, system fields,
    /// generation, no-op detection, finalizer-driven removal.
    fn finish_update(
        &mut self,
        res: usize,
        old: Value,
        new: Value,
        status_only: bool,
        dry_run: bool,
        fire_hooks: bool,
    ) -> Result<Outcome, ApiError> {
        let rd = self.rt.get(res).clone();
        let name = meta_str(&old, "name").unwrap_or("").to_string();
        let old_rv = meta_str(&old, "resourceVersion").unwrap_or("").to_string();
        if let Some(rv) = meta_str(&new, "resourceVersion") {
            if !rv.is_empty() && rv != old_rv {
                return Err(ApiError::conflict(&rd.gvr, &name));
            }
        }
        let mut cand = if rd.status_subresource && status_only {
            let mut c = old.clone();
            if let Value::Object(m) = &mut c {
                match new.get("status") {
                    Some(s) if !s.is_null() => {
                        m.insert("status".into(), s.clone());
                    }
                    _ => {
                        m.remove("status");
                    }
                }
            }
            c
        } else {
            let mut c = new;
            if rd.status_subresource {
                if let Value::Object(m) = &mut c {
                    match old.get("status") {
                        Some(s) => {
                            m.insert("status".into(), s.clone());
                        }
                        None => {
                            m.remove("status");
                        }
                    }
                }
            }
            c
        };
        for f in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match old.get("metadata").and_then(|m| m.get(f)) {
                Some(v) => set_meta(&mut cand, f, v.clone()),
                None => remove_meta(&mut cand, f),
            }
        }
        let terminating = meta_str(&old, "deletionTimestamp").is_some();
        if terminating {
            let before = finalizers(&old);
            let added: Vec<String> = finalizers(&cand)
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(ApiError::invalid(
                    &rd.gvr,
                    &rd.kind,
                    &name,
                    "metadata.finalizers",
                    &format!("Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"),
                ));
            }
        }
        if rd.generation && spec_part(&rd, &cand) != spec_part(&rd, &old) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            set_meta(&mut cand, "generation", json!(g + 1));
        }
        if cand == old {
            return Ok(Outcome {
                object: old,
                created: false,
                removed: false,
            });
        }
        if dry_run {
            return Ok(Outcome {
                object: cand,
                created: false,
                removed: false,
            });
        }
        let rv = self.next_rv();
        set_meta(&mut cand, "resourceVersion", json!(rv.to_string()));
        if terminating && finalizers(&cand).is_empty() {
            self.commit(res, EventType::Deleted, cand.clone(), Some(old), fire_hooks);
            return Ok(Outcome {
                object: cand,
                created: false,
                removed: true,
            });
        }
        self.commit(
            res,
            EventType::Modified,
            cand.clone(),
            Some(old),
            fire_hooks,
        );
        Ok(Outcome {
            object: cand,
            created: false,
            removed: false,
        })
    }

    /// DELETE with DeleteOptions. Objects with finalizers only get `deletionTimestamp`.
    pub(crate) fn delete(
        &mut self,
        res: usize,
        ns: &str,
        name: &str,
        opts: &Value,
        dry_run: bool,
    ) -> Result<Outcome, ApiError> {
        let rd = self.rt.get(res).clone();
        let old = self
            .get(res, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rd.gvr, name))?;
        if let Some(pre) = opts.get("preconditions") {
            if let Some(uid) = pre.get("uid").and_then(Value::as_str) {
                let have = meta_str(&old, "uid").unwrap_or("");
                if uid != have {
                    return Err(ApiError::conflict_with(
                        &rd.gvr,
                        name,
                        &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"),
                    ));
                }
            }
            if let Some(rv) = pre.get("resourceVersion").and_then(Value::as_str) {
                let have = meta_str(&old, "resourceVersion").unwrap_or("");
                if rv != have {
                    return Err(ApiError::conflict_with(
                        &rd.gvr,
                        name,
                        &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in meta: {have}"),
                    ));
                }
            }
        }
        if !finalizers(&old).is_empty() {
            if meta_str(&old, "deletionTimestamp").is_some() {
                return Ok(Outcome {
                    object: old,
                    created: false,
                    removed: false,
                });
            }
            let mut cand = old.clone();
            set_meta(&mut cand, "deletionTimestamp", json!(now_rfc3339()));
            set_meta(&mut cand, "deletionGracePeriodSeconds", json!(0));
            if rd.generation {
                // the apiserver bumps generation when deletionTimestamp is set
                let g = old
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                set_meta(&mut cand, "generation", json!(g + 1));
            }
            if dry_run {
                return Ok(Outcome {
                    object: cand,
                    created: false,
                    removed: false,
                });
            }
            let rv = self.next_rv();
            set_meta(&mut cand, "resourceVersion", json!(rv.to_string()));
            self.commit(res, EventType::Modified, cand.clone(), Some(old), true);
            return Ok(Outcome {
                object: cand,
                created: false,
                removed: false,
            });
        }
        let mut gone = old.clone();
        if dry_run {
            return Ok(Outcome {
                object: gone,
                created: false,
                removed: true,
            });
        }
        let rv = self.next_rv();
        set_meta(&mut gone, "resourceVersion", json!(rv.to_string()));
        self.commit(res, EventType::Deleted, gone.clone(), Some(old), true);
        Ok(Outcome {
            object: gone,
            created: false,
            removed: true,
        })
    }

    // ---------------------------------------------------------------- direct (test-side) writes

    /// Upserts a whole object as given (status included, no preconditions).
    /// With `seed`, a numeric resourceVersion newer than any handed out is kept, and hooks
    /// are not told.
    pub(crate) fn put_direct(
        &mut self,
        mut obj: Value,
        seed: bool,
    ) -> Result<(usize, Value), ApiError> {
        ensure_object(&obj)?;
        let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let res = self.rt.by_api_version_kind(av, kind).ok_or_else(|| {
            ApiError::bad_request(format!("the double serves no resource for {av} {kind}"))
        })?;
        let rd = self.rt.get(res).clone();
        let name = meta_str(&obj, "name").unwrap_or("").to_string();
        if name.is_empty() {
            return Err(ApiError::bad_request("metadata.name is required"));
        }
        let ns = if rd.namespaced {
            let ns = meta_str(&obj, "namespace").unwrap_or("default").to_string();
            let ns = if ns.is_empty() {
                "default".to_string()
            } else {
                ns
            };
            set_meta(&mut obj, "namespace", json!(ns));
            ns
        } else {
            remove_meta(&mut obj, "namespace");
            String::new()
        };
        let old = self.get(res, &ns, &name).cloned();
        for f in ["uid", "creationTimestamp"] {
            if meta_str(&obj, f).is_none() {
                let v = old
                    .as_ref()
                    .and_then(|o| o.get("metadata").and_then(|m| m.get(f)).cloned())
                    .unwrap_or_else(|| json!(if f == "uid" { new_uid() } else { now_rfc3339() }));
                set_meta(&mut obj, f, v);
            }
        }
        if rd.generation && obj.pointer("/metadata/generation").is_none() {
            let g = match &old {
                Some(o) => {
                    let g = o
                        .pointer("/metadata/generation")
                        .and_then(Value::as_i64)
                        .unwrap_or(1);
                    if spec_part(&rd, o) != spec_part(&rd, &obj) {
                        g + 1
                    } else {
                        g
                    }
                }
                None => 1,
            };
            set_meta(&mut obj, "generation", json!(g));
        }
        let given_rv = meta_str(&obj, "resourceVersion").and_then(|s| s.parse::<u64>().ok());
        let rv = match given_rv {
            Some(n) if seed && n > self.rv => {
                self.rv = n;
                n
            }
            _ => self.next_rv(),
        };
        set_meta(&mut obj, "resourceVersion", json!(rv.to_string()));
        let ty = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.commit(res, ty, obj.clone(), old, !seed);
        Ok((res, obj))
    }

    /// An RFC 7386 merge patch applied as a privileged writer: status and metadata included,
    /// no preconditions. System fields stay.
    pub(crate) fn merge_direct(
        &mut self,
        res: usize,
        ns: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        let rd = self.rt.get(res).clone();
        let old = self
            .get(res, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rd.gvr, name))?;
        let mut doc = old.clone();
        merge_patch(&mut doc, patch);
        for f in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "resourceVersion",
        ] {
            match old.get("metadata").and_then(|m| m.get(f)) {
                Some(v) => set_meta(&mut doc, f, v.clone()),
                None => remove_meta(&mut doc, f),
            }
        }
        if doc == old {
            return Ok(old);
        }
        if rd.generation && spec_part(&rd, &doc) != spec_part(&rd, &old) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            set_meta(&mut doc, "generation", json!(g + 1));
        }
        let rv = self.next_rv();
        set_meta(&mut doc, "resourceVersion", json!(rv.to_string()));
        let ty = if meta_str(&old, "deletionTimestamp").is_some() && finalizers(&doc).is_empty() {
            EventType::Deleted
        } else {
            EventType::Modified
        };
        self.commit(res, ty, doc.clone(), Some(old), true);
        Ok(doc)
    }

    /// Removes an object at once, finalizers or not.
    pub(crate) fn remove_direct(&mut self, res: usize, ns: &str, name: &str) -> Option<Value> {
        let old = self.get(res, ns, name).cloned()?;
        let mut gone = old.clone();
        let rv = self.next_rv();
        set_meta(&mut gone, "resourceVersion", json!(rv.to_string()));
        self.commit(res, EventType::Deleted, gone.clone(), Some(old), true);
        Some(gone)
    }

    // ---------------------------------------------------------------- watches

    /// Registers a watcher. Returns `Err` with a 410 Status when `from` is too old.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn watch(
        &mut self,
        res: usize,
        namespace: Option<String>,
        labels: LabelSelector,
        fields: FieldSelector,
        from: WatchFrom,
    ) -> Result<(u64, UnboundedReceiver<WatchMsg>), ApiError> {
        let (tx, rx) = unbounded_channel();
        let sub = WatchSub {
            id: self.next_sub,
            res,
            namespace,
            labels,
            fields,
            tx,
        };
        match from {
            WatchFrom::After(rv) => {
                if rv < self.floor {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {rv} ({})",
                        self.floor
                    )));
                }
                for c in self.history.iter().filter(|c| c.rv > rv) {
                    if let Some((t, o)) = sub.translate(c) {
                        let _ = sub.tx.send(WatchMsg::Line(event_line(t.as_str(), &o)));
                    }
                }
            }
            WatchFrom::Now {
                initial_events,
                end_bookmark,
            } => {
                if initial_events {
                    for (_, o) in self.objects[res].iter() {
                        if sub.selects(o) {
                            let _ = sub.tx.send(WatchMsg::Line(event_line("ADDED", o)));
                        }
                    }
                }
                if end_bookmark {
                    let line = self.bookmark_line(res, true);
                    let _ = sub.tx.send(WatchMsg::Line(line));
                }
            }
        }
        self.next_sub += 1;
        let id = sub.id;
        self.subs.push(sub);
        Ok((id, rx))
    }

    fn bookmark_line(&self, res: usize, initial_end: bool) -> Bytes {
        let rd = self.rt.get(res);
        let mut meta = json!({"resourceVersion": self.rv.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        event_line(
            "BOOKMARK",
            &json!({"kind": rd.kind, "apiVersion": rd.api_version(), "metadata": meta}),
        )
    }

    /// Queues a BOOKMARK at the current resourceVersion on one watch; false when it is gone.
    pub(crate) fn send_bookmark(&mut self, id: u64) -> bool {
        let Some(pos) = self.subs.iter().position(|s| s.id == id) else {
            return false;
        };
        let line = self.bookmark_line(self.subs[pos].res, false);
        self.subs[pos].tx.send(WatchMsg::Line(line)).is_ok()
    }

    pub(crate) fn remove_watch(&mut self, id: u64) {
        self.subs.retain(|s| s.id != id);
    }

    /// Ends every watch: cleanly (final chunk) or abruptly (connection cut).
    pub(crate) fn end_watches(&mut self, abort: bool) -> usize {
        let n = self.subs.len();
        if abort {
            for s in &self.subs {
                let _ = s.tx.send(WatchMsg::Abort);
            }
        }
        self.subs.clear();
        n
    }

    pub(crate) fn open_watches(&self) -> usize {
        self.subs.iter().filter(|s| !s.tx.is_closed()).count()
    }
}
