//! What the Fleet agent writes into a BundleDeployment's status on its next
//! monitor pass after one of the BD's objects was deleted (or came back).
//!
//! Fleet recomputes the whole status from a dry-run plan; the webhook only has
//! the previous status, so this module applies the same rules incrementally
//! (`updatestatus.go`: `updateFromResources`, `calculateResourceCounts`,
//! `readyError`; upstream `display`). Both directions are idempotent and
//! decide "already done" from the status alone.

use crate::fleet::conditions::set_error;
use crate::fleet::state::{agent_updates_resource_status, condition_display, deployment_state};
use crate::fleet::status::{
    BundleDeployment, BundleDeploymentDisplay, BundleDeploymentResource, BundleDeploymentSpec,
    BundleDeploymentStatus, ModifiedStatus, ResourceCounts,
};
use crate::fleet::ResourceKey;

use super::change::{ChangeKind, ResourceChange};
use super::resource::DeletedResource;

/// The agent keeps at most this many `modifiedStatus`/`nonReadyStatus` entries.
pub const MAX_DETAILS: usize = 10;

/// How a live resource was counted in `resourceCounts` before it vanished.
enum LiveClass {
    Ready,
    NotReady,
    Modified,
    /// Counted nowhere (it already had a `missing` entry: inconsistent input).
    AlreadyMissing,
}

/// Records that `r` no longer exists, exactly as Fleet's agent would after its
/// next resync: `r` leaves `resources` (and `nonReadyStatus`), joins
/// `modifiedStatus` as `missing`, counts move to `missing`, `nonModified`
/// becomes false, the Ready condition turns False with Fleet's message and
/// `display.state` follows `GetDeploymentState`.
///
/// Deleting an orphan removes its `delete` entry instead (Fleet stops
/// reporting it). Returns true if the status changed; a second call is a
/// no-op. Nothing happens when the agent itself would not update the status
/// (deployment not yet applied, install failed) or when `r` is not part of
/// this BD.
pub fn mark_missing(
    status: &mut BundleDeploymentStatus,
    spec: &BundleDeploymentSpec,
    r: &DeletedResource,
    now: &str,
) -> bool {
    if !agent_updates_resource_status(spec, status) {
        return false;
    }
    let before = status.clone();
    let key = r.key();
    let res_idx = status
        .resources
        .iter()
        .position(|x| x.key().same_object(&key));
    let mod_idx = status
        .modified_status
        .iter()
        .position(|m| m.key().same_object(&key));

    match (res_idx, mod_idx) {
        // Listed nowhere. If it belongs here, a writer that does not count missing
        // objects (an agent before the upstream fix) dropped it: count it as Fleet
        // does, desiredReady = live + missing. A truncated list may hide it: leave it.
        (None, None) if r.owned && !status.incomplete_state => {
            insert_modified(status, ModifiedStatus::missing(&key));
            add_count(status, |c| &mut c.missing, 1);
            add_count(status, |c| &mut c.desired_ready, 1);
        }
        (None, None) => return false,
        (None, Some(i)) => {
            let entry = &mut status.modified_status[i];
            if entry.missing {
                if !entry.exist {
                    return false;
                }
                // An unowned object of that name is gone: still missing.
                entry.exist = false;
            } else if entry.delete {
                status.modified_status.remove(i);
                add_count(status, |c| &mut c.orphaned, -1);
            } else {
                // Drifted but not listed as live (inconsistent): now missing.
                let missing = ModifiedStatus::missing(&entry.key());
                status.modified_status.remove(i);
                insert_modified(status, missing);
                add_count(status, |c| &mut c.modified, -1);
                add_count(status, |c| &mut c.missing, 1);
            }
        }
        (Some(i), _) => {
            let recorded = status.resources.remove(i).key();
            let nr_idx = status
                .non_ready_status
                .iter()
                .position(|n| n.key().same_object(&key));
            if let Some(j) = nr_idx {
                status.non_ready_status.remove(j);
                // An emptied list held fewer than 10 entries, so it was complete.
                status.ready = status.non_ready_status.is_empty();
            }
            let class = match mod_idx.map(|m| &status.modified_status[m]) {
                Some(m) if m.missing => LiveClass::AlreadyMissing,
                Some(_) => LiveClass::Modified,
                None if nr_idx.is_some() => LiveClass::NotReady,
                None => hidden_class(status),
            };
            match class {
                LiveClass::AlreadyMissing => {
                    if let Some(m) = mod_idx.and_then(|m| status.modified_status.get_mut(m)) {
                        m.exist = false;
                    }
                }
                LiveClass::Modified => {
                    if let Some(m) = mod_idx {
                        if status.modified_status.remove(m).delete {
                            add_count(status, |c| &mut c.orphaned, -1);
                        } else {
                            add_count(status, |c| &mut c.modified, -1);
                        }
                    }
                }
                LiveClass::NotReady => add_count(status, |c| &mut c.not_ready, -1),
                LiveClass::Ready => add_count(status, |c| &mut c.ready, -1),
            }
            if !matches!(class, LiveClass::AlreadyMissing) {
                insert_modified(status, ModifiedStatus::missing(&recorded));
                add_count(status, |c| &mut c.missing, 1);
            }
        }
    }
    refresh_derived(status, spec, now);
    *status != before
}

/// Undoes [`mark_missing`]: `r` exists again (recreated, or the DELETE never
/// happened). Its `missing` entry goes away, it rejoins `resources` as a
/// ready live object (with `r.created_at`), counts move back to `ready`, and
/// `nonModified`/Ready/`display.state` are restored when nothing else is
/// modified. Returns true if the status changed; idempotent.
///
/// Fleet re-lists what a truncated `modifiedStatus` hid; this cannot, so
/// after removing an entry from a full list one fewer entry is shown until
/// Fleet's next pass.
pub fn unmark_missing(
    status: &mut BundleDeploymentStatus,
    spec: &BundleDeploymentSpec,
    r: &DeletedResource,
    now: &str,
) -> bool {
    if !agent_updates_resource_status(spec, status) {
        return false;
    }
    let before = status.clone();
    let key = r.key();
    let visible = status
        .modified_status
        .iter()
        .position(|m| m.is_missing() && m.key().same_object(&key));
    let recorded = match visible {
        Some(i) => status.modified_status.remove(i).key(),
        // Not shown, but the truncated list hides more missing objects than it shows
        // and the object belongs here and is not listed live: it is one of them.
        None if r.owned
            && hides_missing(status)
            && !status.resources.iter().any(|x| x.key().same_object(&key)) =>
        {
            key.clone()
        }
        None => return false,
    };
    add_count(status, |c| &mut c.missing, -1);
    if !status.resources.iter().any(|x| x.key().same_object(&key)) {
        insert_resource(
            &mut status.resources,
            BundleDeploymentResource {
                kind: recorded.kind.clone(),
                api_version: recorded.api_version.clone(),
                namespace: recorded.namespace.clone(),
                name: recorded.name.clone(),
                created_at: r.created_at.clone(),
                ..Default::default()
            },
        );
        add_count(status, |c| &mut c.ready, 1);
    }
    refresh_derived(status, spec, now);
    *status != before
}

/// A truncated `modifiedStatus` hides missing objects: more are counted than shown.
fn hides_missing(status: &BundleDeploymentStatus) -> bool {
    let shown = status
        .modified_status
        .iter()
        .filter(|m| m.is_missing())
        .count() as i64;
    status.incomplete_state
        && status
            .resource_counts
            .as_ref()
            .is_some_and(|c| c.missing > shown)
}

/// Class of a live resource that is in neither visible list. With complete
/// lists it is ready; with truncated lists it may hide in either list, so
/// the counts decide (ready first: the common case).
fn hidden_class(status: &BundleDeploymentStatus) -> LiveClass {
    let Some(counts) = &status.resource_counts else {
        return LiveClass::Ready;
    };
    if !status.incomplete_state || counts.ready > 0 {
        LiveClass::Ready
    } else if counts.not_ready > 0 {
        LiveClass::NotReady
    } else if counts.modified > 0 {
        LiveClass::Modified
    } else {
        LiveClass::Ready
    }
}

/// Adds `delta` to one counter, if the agent reports counts at all.
fn add_count(
    status: &mut BundleDeploymentStatus,
    field: impl FnOnce(&mut ResourceCounts) -> &mut i64,
    delta: i64,
) {
    if let Some(counts) = status.resource_counts.as_mut() {
        let c = field(counts);
        *c = c.saturating_add(delta);
    }
}

/// Inserts in Fleet's order and applies the cap of 10 with `incompleteState`.
fn insert_modified(status: &mut BundleDeploymentStatus, entry: ModifiedStatus) {
    let key = entry.sort_key();
    let pos = status
        .modified_status
        .iter()
        .position(|m| m.sort_key() > key)
        .unwrap_or(status.modified_status.len());
    status.modified_status.insert(pos, entry);
    if status.modified_status.len() > MAX_DETAILS {
        status.incomplete_state = true;
        status.modified_status.truncate(MAX_DETAILS);
    }
}

/// Inserts where the agent lists it: among objects of the same
/// apiVersion/kind, sorted by `ns/name`; at the end for a new kind.
fn insert_resource(resources: &mut Vec<BundleDeploymentResource>, entry: BundleDeploymentResource) {
    let gvk = |x: &BundleDeploymentResource| (x.api_version.clone(), x.kind.clone());
    let id = |x: &BundleDeploymentResource| ResourceKey::resource_id(&x.key());
    let own = gvk(&entry);
    let own_id = id(&entry);
    let same: Vec<usize> = (0..resources.len())
        .filter(|&i| gvk(&resources[i]) == own)
        .collect();
    let pos = match same.iter().find(|&&i| id(&resources[i]) > own_id) {
        Some(&i) => i,
        None => same.last().map_or(resources.len(), |&i| i + 1),
    };
    resources.insert(pos, entry);
}

/// Recomputes what follows from the lists: `nonModified`, the Ready condition
/// (agent's `readyError`) and `display` (upstream BD reconciler).
fn refresh_derived(status: &mut BundleDeploymentStatus, spec: &BundleDeploymentSpec, now: &str) {
    let counted_modified = status
        .resource_counts
        .as_ref()
        .is_some_and(|c| c.missing != 0 || c.orphaned != 0 || c.modified != 0);
    status.non_modified = status.modified_status.is_empty() && !counted_modified;

    let error = if status.ready && status.non_modified {
        None
    } else if !status.ready {
        Some(
            status
                .non_ready_status
                .first()
                .map_or_else(|| "not ready".to_string(), ToString::to_string),
        )
    } else {
        Some(
            status
                .modified_status
                .first()
                .map_or_else(|| "out of sync".to_string(), ToString::to_string),
        )
    };
    set_error(&mut status.conditions, "Ready", error.as_deref(), now);

    let shown = |t: &str| {
        status
            .condition(t)
            .map(condition_display)
            .unwrap_or_default()
    };
    let (deployed, monitored) = (shown("Deployed"), shown("Monitored"));
    let state = deployment_state(spec, status).to_string();
    let display = status
        .display
        .get_or_insert_with(BundleDeploymentDisplay::default);
    display.deployed = deployed;
    display.monitored = monitored;
    display.state = state;
}

/// The status production writes to `bd` for `changes`, applied in order; `None` when
/// the status already says all of it (nothing to patch). Idempotent: applying the
/// result's changes again yields `None`.
pub fn status_after(
    bd: &BundleDeployment,
    changes: &[ResourceChange],
    now: &str,
) -> Option<BundleDeploymentStatus> {
    let mut status = bd.status.clone().unwrap_or_default();
    let mut changed = false;
    for c in changes {
        changed |= match c.kind {
            ChangeKind::Missing => mark_missing(&mut status, &bd.spec, &c.resource, now),
            ChangeKind::Restored => unmark_missing(&mut status, &bd.spec, &c.resource, now),
        };
    }
    changed.then_some(status)
}

/// The BundleDeployment status lists `r` as missing.
pub fn shows_missing(status: &BundleDeploymentStatus, r: &DeletedResource) -> bool {
    let key = r.key();
    status
        .modified_status
        .iter()
        .any(|m| m.is_missing() && m.key().same_object(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(api_version: &str, kind: &str, name: &str) -> BundleDeploymentResource {
        BundleDeploymentResource {
            kind: kind.into(),
            api_version: api_version.into(),
            namespace: "ns".into(),
            name: name.into(),
            ..Default::default()
        }
    }

    fn status(resources: Vec<BundleDeploymentResource>) -> BundleDeploymentStatus {
        let n = resources.len() as i64;
        BundleDeploymentStatus {
            ready: true,
            non_modified: true,
            resources,
            resource_counts: Some(ResourceCounts {
                ready: n,
                desired_ready: n,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn restored_resource_goes_back_into_its_kind_group() {
        let spec = BundleDeploymentSpec::default();
        let mut st = status(vec![
            res("apps/v1", "Deployment", "web"),
            res("v1", "ConfigMap", "a"),
            res("v1", "ConfigMap", "c"),
            res("v1", "Service", "web"),
        ]);
        let orig = st.clone();
        let r = DeletedResource::new("v1", "ConfigMap", Some("ns"), "a");
        assert!(mark_missing(&mut st, &spec, &r, "t1"));
        assert!(unmark_missing(&mut st, &spec, &r, "t2"));
        assert_eq!(st.resources, orig.resources);
        let r = DeletedResource::new("v1", "ConfigMap", Some("ns"), "c");
        assert!(mark_missing(&mut st, &spec, &r, "t1"));
        assert!(unmark_missing(&mut st, &spec, &r, "t2"));
        assert_eq!(st.resources, orig.resources);
    }

    #[test]
    fn unowned_object_deleted_stays_missing() {
        let spec = BundleDeploymentSpec::default();
        let mut st = status(vec![res("v1", "ConfigMap", "a")]);
        let mut m = ModifiedStatus::missing(&ResourceKey::new("v1", "ConfigMap", Some("ns"), "b"));
        m.exist = true;
        st.modified_status.push(m);
        st.non_modified = false;
        if let Some(c) = st.resource_counts.as_mut() {
            c.missing = 1;
            c.desired_ready = 2;
        }
        let r = DeletedResource::new("v1", "ConfigMap", Some("ns"), "b");
        assert!(mark_missing(&mut st, &spec, &r, "t"));
        assert!(st.modified_status[0].is_missing());
        assert_eq!(
            st.resource_counts
                .as_ref()
                .map(|c| (c.missing, c.desired_ready)),
            Some((1, 2))
        );
        assert_eq!(
            st.condition("Ready").map(|c| c.message.as_str()),
            Some("configmap.v1 ns/b missing")
        );
    }

    #[test]
    fn counts_are_left_alone_when_absent() {
        let spec = BundleDeploymentSpec::default();
        let mut st = status(vec![res("v1", "ConfigMap", "a")]);
        st.resource_counts = None;
        let r = DeletedResource::new("v1", "ConfigMap", Some("ns"), "a");
        assert!(mark_missing(&mut st, &spec, &r, "t"));
        assert!(st.resource_counts.is_none());
        assert!(!st.non_modified);
    }

    #[test]
    fn hidden_non_ready_is_guessed_from_counts() {
        let spec = BundleDeploymentSpec::default();
        let mut st = status(vec![res("v1", "ConfigMap", "a")]);
        st.incomplete_state = true;
        st.ready = false;
        if let Some(c) = st.resource_counts.as_mut() {
            c.ready = 0;
            c.not_ready = 1;
        }
        let r = DeletedResource::new("v1", "ConfigMap", Some("ns"), "a");
        assert!(mark_missing(&mut st, &spec, &r, "t"));
        let c = st.resource_counts.clone().unwrap_or_default();
        assert_eq!((c.ready, c.not_ready, c.missing), (0, 0, 1));
    }
}
