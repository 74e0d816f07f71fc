//! Which requests check the marked objects — pure, no I/O ([`super::probe`] makes them).
//!
//! Marked objects of one kind in one namespace ([`GroupKey`]) are checked together with
//! ONE metadata-only LIST, label-selected by their `objectset.rio.cattle.io/hash`
//! values (`hash in (…)`): a namespace deletion of 5,000 Fleet-managed objects is one
//! LIST per tick, not 5,000 GETs. A lone object is checked with its metadata GET (one
//! request either way, and the cheapest the API serves). A kind the webhook may not
//! list (403) is remembered for a while ([`Unlistable`]) and its objects are checked
//! with GETs, as before.
//!
//! A LIST sees the whole group: an object it does not return is gone — only when every
//! page was read ([`seen_in_list`]); an object it returns with another uid was
//! re-created.

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use super::{marks::Seen, queue::Tracked};

/// The label Fleet's agent puts on every object it deploys.
pub const HASH_LABEL: &str = "objectset.rio.cattle.io/hash";

/// Distinct hash values in one selector at most; a group with more is listed without a
/// selector (every object of the kind in the namespace, still metadata only).
pub const MAX_HASHES_PER_SELECTOR: usize = 32;

/// One kind in one namespace (`""`: cluster-scoped).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespace: String,
}

impl GroupKey {
    pub fn of(o: &Tracked) -> Self {
        GroupKey {
            group: o.group.clone(),
            version: o.version.clone(),
            kind: o.kind.clone(),
            plural: o.plural.clone(),
            namespace: o.namespace.clone(),
        }
    }
}

impl std::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        if self.namespace.is_empty() {
            write!(f, "{}.{group}", self.plural)
        } else {
            write!(f, "{}.{group} in {}", self.plural, self.namespace)
        }
    }
}

/// One request to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The metadata GET of one object.
    Get(Tracked),
    /// A metadata-only LIST of `key`, label-selected by `selector` when `Some`; its
    /// result answers for every one of `objects`.
    List {
        key: GroupKey,
        selector: Option<String>,
        objects: Vec<Tracked>,
    },
}

/// The requests that check `due` (oldest first). `members` are all the marks of the
/// groups of `due` (due or not): a LIST answers for all of them at no extra cost. A
/// group with one member, or of a kind in `unlistable`, is checked with GETs of its
/// due objects. Probes come in the order of their oldest due object.
pub fn plan(
    due: &[Tracked],
    members: &[Tracked],
    unlistable: &Unlistable,
    now: Instant,
) -> Vec<Probe> {
    let mut by_key: HashMap<GroupKey, Vec<&Tracked>> = HashMap::new();
    for m in members {
        by_key.entry(GroupKey::of(m)).or_default().push(m);
    }
    let mut planned: BTreeSet<GroupKey> = BTreeSet::new();
    let mut out = Vec::new();
    for d in due {
        let key = GroupKey::of(d);
        let group = by_key.get(&key).map(Vec::as_slice).unwrap_or_default();
        if group.len() <= 1 || unlistable.contains(&key, now) {
            out.push(Probe::Get(d.clone()));
            continue;
        }
        if !planned.insert(key.clone()) {
            continue;
        }
        let objects: Vec<Tracked> = group.iter().map(|o| (*o).clone()).collect();
        out.push(Probe::List {
            selector: selector(&objects),
            key,
            objects,
        });
    }
    out
}

/// `objectset.rio.cattle.io/hash in (h1,h2)`; `None` when an object's hash is unknown or
/// there are too many to name.
pub fn selector(objects: &[Tracked]) -> Option<String> {
    let mut hashes: BTreeSet<&str> = BTreeSet::new();
    for o in objects {
        if o.objectset_hashes.is_empty() {
            return None;
        }
        for h in &o.objectset_hashes {
            if !valid_label_value(h) {
                return None;
            }
            hashes.insert(h);
        }
    }
    if hashes.is_empty() || hashes.len() > MAX_HASHES_PER_SELECTOR {
        return None;
    }
    let values: Vec<&str> = hashes.into_iter().collect();
    Some(format!("{HASH_LABEL} in ({})", values.join(",")))
}

/// A label value that is safe inside a selector (what Kubernetes allows: alphanumerics,
/// `-`, `_`, `.`, at most 63 characters).
fn valid_label_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// An object a LIST returned: what the checks read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub name: String,
    pub uid: Option<String>,
    pub terminating: bool,
}

/// What a LIST of a group says of each of `objects`: listed with its uid → the same
/// object; listed with another uid → re-created; not listed → gone, but only when
/// `complete` (every page read), else unknown (`None`: checked again later).
pub fn seen_in_list(
    objects: &[Tracked],
    listed: &[Live],
    complete: bool,
) -> Vec<(Tracked, Option<Seen>)> {
    let by_name: HashMap<&str, &Live> = listed.iter().map(|l| (l.name.as_str(), l)).collect();
    objects
        .iter()
        .map(|o| {
            let seen = match by_name.get(o.name.as_str()) {
                Some(l) if l.uid.as_deref() == Some(o.uid.as_str()) => Some(Seen::Same {
                    terminating: l.terminating,
                }),
                Some(_) => Some(Seen::Replaced),
                None if complete => Some(Seen::Gone),
                None => None,
            };
            (o.clone(), seen)
        })
        .collect()
}

/// Groups whose LIST was refused (403), with when: their objects are checked with GETs
/// until [`Unlistable::RETRY_AFTER`] has passed (RBAC may change).
#[derive(Debug, Default)]
pub struct Unlistable {
    since: HashMap<GroupKey, Instant>,
}

impl Unlistable {
    pub const RETRY_AFTER: Duration = Duration::from_secs(600);

    pub fn insert(&mut self, key: GroupKey, now: Instant) {
        self.since.insert(key, now);
    }

    pub fn contains(&self, key: &GroupKey, now: Instant) -> bool {
        self.since
            .get(key)
            .is_some_and(|at| now.duration_since(*at) < Self::RETRY_AFTER)
    }

    /// Forget the entries that have expired (bounded memory).
    pub fn expire(&mut self, now: Instant) {
        self.since
            .retain(|_, at| now.duration_since(*at) < Self::RETRY_AFTER);
    }
}

#[cfg(test)]
mod tests {
    use super::super::queue::tests::tracked;
    use super::*;

    fn in_ns(uid: &str, ns: &str, hash: Option<&str>) -> Tracked {
        Tracked {
            namespace: ns.into(),
            objectset_hashes: hash.map(str::to_string).into_iter().collect(),
            ..tracked(uid, "b")
        }
    }

    #[test]
    fn one_kind_in_one_namespace_is_one_list_selected_by_hash() {
        let now = Instant::now();
        let objects: Vec<Tracked> = (0..5)
            .map(|i| in_ns(&format!("u{i}"), "a", Some(if i < 3 { "h1" } else { "h2" })))
            .collect();
        let probes = plan(&objects, &objects, &Unlistable::default(), now);
        assert_eq!(probes.len(), 1, "{probes:?}");
        let Probe::List {
            selector,
            objects: all,
            key,
            ..
        } = &probes[0]
        else {
            panic!("a LIST: {probes:?}");
        };
        assert_eq!(
            selector.as_deref(),
            Some("objectset.rio.cattle.io/hash in (h1,h2)")
        );
        assert_eq!(all.len(), 5);
        assert_eq!(key.namespace, "a");
    }

    #[test]
    fn a_lone_object_is_a_get_and_other_namespaces_are_other_groups() {
        let now = Instant::now();
        let a = in_ns("u1", "a", Some("h"));
        let b1 = in_ns("u2", "b", Some("h"));
        let b2 = in_ns("u3", "b", Some("h"));
        let members = vec![a.clone(), b1.clone(), b2.clone()];
        let probes = plan(
            &[a.clone(), b1.clone()],
            &members,
            &Unlistable::default(),
            now,
        );
        assert_eq!(probes.len(), 2, "{probes:?}");
        assert_eq!(probes[0], Probe::Get(a));
        let Probe::List { objects, .. } = &probes[1] else {
            panic!("{probes:?}")
        };
        assert_eq!(objects.len(), 2, "the member that is not due rides along");
    }

    #[test]
    fn an_unlistable_kind_falls_back_to_gets_until_the_retry() {
        let now = Instant::now();
        let objects = vec![in_ns("u1", "a", Some("h")), in_ns("u2", "a", Some("h"))];
        let mut unlistable = Unlistable::default();
        unlistable.insert(GroupKey::of(&objects[0]), now);
        let probes = plan(&objects, &objects, &unlistable, now);
        assert_eq!(
            probes,
            vec![
                Probe::Get(objects[0].clone()),
                Probe::Get(objects[1].clone())
            ]
        );
        let later = now + Unlistable::RETRY_AFTER;
        assert!(matches!(
            plan(&objects, &objects, &unlistable, later)[..],
            [Probe::List { .. }]
        ));
        unlistable.expire(later);
        assert!(!unlistable.contains(&GroupKey::of(&objects[0]), now));
    }

    #[test]
    fn unknown_or_odd_hashes_list_without_a_selector() {
        let a = in_ns("u1", "a", None);
        let b = in_ns("u2", "a", Some("h"));
        assert_eq!(selector(&[a, b.clone()]), None);
        let odd = in_ns("u3", "a", Some("h) , x in (y"));
        assert_eq!(selector(&[odd, b]), None);
        let many: Vec<Tracked> = (0..=MAX_HASHES_PER_SELECTOR)
            .map(|i| in_ns(&format!("u{i}"), "a", Some(&format!("h{i}"))))
            .collect();
        assert_eq!(selector(&many), None);
    }

    #[test]
    fn a_list_tells_gone_same_and_replaced_and_nothing_when_incomplete() {
        let objects = vec![
            in_ns("u1", "a", Some("h")),
            in_ns("u2", "a", Some("h")),
            in_ns("u3", "a", Some("h")),
        ];
        let listed = vec![
            Live {
                name: "cm-u1".into(),
                uid: Some("u1".into()),
                terminating: true,
            },
            Live {
                name: "cm-u2".into(),
                uid: Some("new".into()),
                terminating: false,
            },
        ];
        let seen: Vec<Option<Seen>> = seen_in_list(&objects, &listed, true)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        assert_eq!(
            seen,
            [
                Some(Seen::Same { terminating: true }),
                Some(Seen::Replaced),
                Some(Seen::Gone)
            ]
        );
        let partial: Vec<Option<Seen>> = seen_in_list(&objects, &listed, false)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        assert_eq!(partial[2], None, "not seen on the pages read: unknown");
        assert_eq!(partial[1], Some(Seen::Replaced));
    }
}
