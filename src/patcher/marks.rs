//! The deletions this process has counted and still watches over.
//!
//! A mark is written optimistically right after the review is answered (the object is
//! deleted a few milliseconds later, after admission). The worker then confirms it
//! (GET → 404, or another uid), reverts it when the deletion did not happen, re-applies
//! it when another writer drops it while the object is still gone, and takes it back
//! when the object returns. Every path is bounded: marks expire, re-applies are capped.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use super::{probe_plan::GroupKey, queue::Tracked};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkState {
    /// Marked; the object has not yet been seen gone.
    Unconfirmed,
    /// Seen gone.
    Confirmed,
    /// Had finalizers: not marked until it is really gone.
    AwaitingGone,
}

#[derive(Debug, Clone)]
pub struct Mark {
    pub object: Tracked,
    pub state: MarkState,
    /// When the mark was written (or the wait began).
    pub since: Instant,
    /// When the object was last checked with a GET.
    pub checked: Option<Instant>,
    /// Re-applies so far.
    pub reapplied: u32,
    /// The BundleDeployment showed the mark after our write: worth defending.
    pub defended: bool,
}

/// What a GET of the tracked object found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// 404.
    Gone,
    /// The same object (same uid), with or without a deletionTimestamp.
    Same { terminating: bool },
    /// An object of that name with another uid: the deleted one is gone, a new one is there.
    Replaced,
    /// The webhook may not read this kind (403): the mark stays, unverified and undefended.
    Unreadable,
}

/// What to do after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Keep,
    /// Write the mark (finalizers gone, or a re-apply).
    Mark,
    /// Take the mark back.
    Unmark(UnmarkReason),
    /// Forget it without writing.
    Forget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmarkReason {
    /// The deletion did not happen (refused by another admission step, or failed).
    NotDeleted,
    /// The object was created again.
    CameBack,
}

/// Timing bounds for the marks.
#[derive(Debug, Clone)]
pub struct MarkTimings {
    /// How long an unconfirmed mark may wait for the object to disappear.
    pub confirm_timeout: Duration,
    /// How often confirmed marks are re-checked for the object coming back.
    pub recheck_interval: Duration,
    /// Marks younger than this are re-checked every [`Self::young_recheck_interval`]:
    /// re-creations (Fleet's drift correction after ~5 s, or by hand) mostly come soon.
    pub young: Duration,
    /// How often young marks are re-checked.
    pub young_recheck_interval: Duration,
    /// How long a mark is watched over at all (by then Fleet has caught up).
    pub ttl: Duration,
    /// Re-applies allowed per mark: never a write loop with another writer.
    pub max_reapplies: u32,
}

impl Default for MarkTimings {
    fn default() -> Self {
        MarkTimings {
            confirm_timeout: Duration::from_secs(5),
            recheck_interval: Duration::from_secs(10),
            young: Duration::from_secs(30),
            young_recheck_interval: Duration::from_millis(500),
            ttl: Duration::from_secs(15 * 60),
            max_reapplies: 10,
        }
    }
}

/// All marks, by object uid.
#[derive(Debug, Default)]
pub struct Marks {
    by_uid: HashMap<String, Mark>,
}

impl Marks {
    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_uid.is_empty()
    }

    pub fn get(&self, uid: &str) -> Option<&Mark> {
        self.by_uid.get(uid)
    }

    /// Record a written mark (keeps the re-apply count of an earlier one).
    pub fn marked(&mut self, object: Tracked, now: Instant, defended: bool) {
        let reapplied = self.by_uid.get(&object.uid).map_or(0, |m| m.reapplied);
        let state = match self.by_uid.get(&object.uid).map(|m| m.state) {
            Some(MarkState::Confirmed) => MarkState::Confirmed,
            _ => MarkState::Unconfirmed,
        };
        self.by_uid.insert(
            object.uid.clone(),
            Mark {
                object,
                state,
                since: now,
                checked: None,
                reapplied,
                defended,
            },
        );
    }

    /// Start waiting for an object with finalizers to go.
    pub fn await_gone(&mut self, object: Tracked, now: Instant) {
        self.by_uid.entry(object.uid.clone()).or_insert(Mark {
            object,
            state: MarkState::AwaitingGone,
            since: now,
            checked: None,
            reapplied: 0,
            defended: false,
        });
    }

    pub fn remove(&mut self, uid: &str) -> Option<Mark> {
        self.by_uid.remove(uid)
    }

    /// Count one re-apply; false when the cap is reached (stop defending).
    pub fn reapply(&mut self, uid: &str, max: u32) -> bool {
        match self.by_uid.get_mut(uid) {
            Some(m) if m.reapplied < max => {
                m.reapplied += 1;
                true
            }
            Some(m) => {
                m.defended = false;
                false
            }
            None => false,
        }
    }

    /// Marks of one BundleDeployment (`ns/name`) that are defended.
    pub fn defended_on(&self, bd_namespace: &str, bd_name: &str) -> Vec<Tracked> {
        self.by_uid
            .values()
            .filter(|m| {
                m.defended && m.object.bd.namespace == bd_namespace && m.object.bd.name == bd_name
            })
            .map(|m| m.object.clone())
            .collect()
    }

    /// Some mark is on an object of `owner`.
    pub fn any_of_owner(&self, owner: &crate::fleet::OwnerRef) -> bool {
        self.by_uid.values().any(|m| *m.object.bd.owner == *owner)
    }

    /// Objects due for a check now, least recently checked first (never checked
    /// first, then by age): when the probe budget cannot serve them all, every mark
    /// gets its turn and rechecks of old marks never starve new ones.
    pub fn due(&self, now: Instant, t: &MarkTimings) -> Vec<Tracked> {
        let mut due: Vec<&Mark> = self
            .by_uid
            .values()
            .filter(|m| match m.state {
                MarkState::Unconfirmed | MarkState::AwaitingGone => true,
                MarkState::Confirmed => {
                    let interval = if now.duration_since(m.since) < t.young {
                        t.young_recheck_interval
                    } else {
                        t.recheck_interval
                    };
                    m.checked.is_none_or(|c| now.duration_since(c) >= interval)
                }
            })
            .collect();
        due.sort_by_key(|m| (m.checked, m.since));
        due.into_iter().map(|m| m.object.clone()).collect()
    }

    /// Every mark of the kinds and namespaces of `objects`, oldest first: the LIST of a
    /// group answers for all of them at once.
    pub fn in_groups_of(&self, objects: &[Tracked]) -> Vec<Tracked> {
        let keys: HashSet<GroupKey> = objects.iter().map(GroupKey::of).collect();
        let mut members: Vec<&Mark> = self
            .by_uid
            .values()
            .filter(|m| keys.contains(&GroupKey::of(&m.object)))
            .collect();
        members.sort_by_key(|m| m.since);
        members.into_iter().map(|m| m.object.clone()).collect()
    }

    /// Marks seen gone.
    pub fn confirmed(&self) -> usize {
        self.by_uid
            .values()
            .filter(|m| m.state == MarkState::Confirmed)
            .count()
    }

    /// Drop marks older than the TTL; returns them for logging.
    pub fn expire(&mut self, now: Instant, t: &MarkTimings) -> Vec<Mark> {
        let old: Vec<String> = self
            .by_uid
            .iter()
            .filter(|(_, m)| now.duration_since(m.since) >= t.ttl)
            .map(|(k, _)| k.clone())
            .collect();
        old.iter().filter_map(|k| self.by_uid.remove(k)).collect()
    }

    /// Decide after a GET of the object.
    pub fn checked(&mut self, uid: &str, seen: Seen, now: Instant, t: &MarkTimings) -> Next {
        let Some(m) = self.by_uid.get_mut(uid) else {
            return Next::Forget;
        };
        m.checked = Some(now);
        if seen == Seen::Unreadable {
            // Checking again would only repeat the 403 every tick: stop watching it.
            self.by_uid.remove(uid);
            return Next::Forget;
        }
        match (m.state, seen) {
            (MarkState::AwaitingGone, Seen::Gone | Seen::Replaced) => Next::Mark,
            (MarkState::AwaitingGone, Seen::Same { .. }) => Next::Keep,
            (MarkState::Unconfirmed, Seen::Gone) => {
                m.state = MarkState::Confirmed;
                Next::Keep
            }
            (MarkState::Unconfirmed, Seen::Replaced) | (MarkState::Confirmed, Seen::Replaced) => {
                Next::Unmark(UnmarkReason::CameBack)
            }
            (MarkState::Unconfirmed, Seen::Same { terminating: true }) => Next::Keep,
            (MarkState::Unconfirmed, Seen::Same { terminating: false }) => {
                if now.duration_since(m.since) >= t.confirm_timeout {
                    Next::Unmark(UnmarkReason::NotDeleted)
                } else {
                    Next::Keep
                }
            }
            (MarkState::Confirmed, Seen::Gone) => Next::Keep,
            // The same uid after it was seen gone cannot happen; treat it as back.
            (MarkState::Confirmed, Seen::Same { .. }) => Next::Unmark(UnmarkReason::CameBack),
            (_, Seen::Unreadable) => Next::Forget,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::queue::tests::tracked;
    use super::*;

    fn t() -> MarkTimings {
        MarkTimings {
            confirm_timeout: Duration::from_secs(5),
            recheck_interval: Duration::from_secs(10),
            young: Duration::from_secs(3),
            young_recheck_interval: Duration::from_millis(500),
            ttl: Duration::from_secs(60),
            max_reapplies: 2,
        }
    }

    #[test]
    fn unconfirmed_mark_is_confirmed_by_a_404_and_reverted_when_the_object_stays() {
        let now = Instant::now();
        let mut marks = Marks::default();
        marks.marked(tracked("u1", "b"), now, true);
        assert_eq!(marks.checked("u1", Seen::Gone, now, &t()), Next::Keep);
        assert_eq!(marks.get("u1").map(|m| m.state), Some(MarkState::Confirmed));

        marks.marked(tracked("u2", "b"), now, true);
        assert_eq!(
            marks.checked("u2", Seen::Same { terminating: false }, now, &t()),
            Next::Keep,
            "deletion may still be in flight"
        );
        let later = now + Duration::from_secs(6);
        assert_eq!(
            marks.checked("u2", Seen::Same { terminating: false }, later, &t()),
            Next::Unmark(UnmarkReason::NotDeleted)
        );
        assert_eq!(
            marks.checked("u2", Seen::Same { terminating: true }, later, &t()),
            Next::Keep,
            "terminating: going"
        );
    }

    #[test]
    fn an_unreadable_kind_is_not_checked_again() {
        let now = Instant::now();
        let mut marks = Marks::default();
        marks.marked(tracked("s", "b"), now, true);
        assert_eq!(
            marks.checked("s", Seen::Unreadable, now, &t()),
            Next::Forget
        );
        assert!(
            marks.due(now, &t()).is_empty(),
            "no GET every tick for a 403"
        );
    }

    #[test]
    fn replaced_object_means_it_came_back() {
        let now = Instant::now();
        let mut marks = Marks::default();
        marks.marked(tracked("u1", "b"), now, true);
        marks.checked("u1", Seen::Gone, now, &t());
        assert_eq!(
            marks.checked("u1", Seen::Replaced, now, &t()),
            Next::Unmark(UnmarkReason::CameBack)
        );
    }

    #[test]
    fn objects_with_finalizers_are_marked_only_once_gone() {
        let now = Instant::now();
        let mut marks = Marks::default();
        marks.await_gone(tracked("f", "b"), now);
        assert_eq!(
            marks.checked("f", Seen::Same { terminating: true }, now, &t()),
            Next::Keep
        );
        assert_eq!(marks.checked("f", Seen::Gone, now, &t()), Next::Mark);
    }

    #[test]
    fn reapplies_are_capped_and_marks_expire() {
        let now = Instant::now();
        let mut marks = Marks::default();
        marks.marked(tracked("u1", "b"), now, true);
        assert_eq!(marks.defended_on("cluster-ns", "b").len(), 1);
        assert!(marks.reapply("u1", 2));
        assert!(marks.reapply("u1", 2));
        assert!(!marks.reapply("u1", 2), "cap reached");
        assert!(
            marks.defended_on("cluster-ns", "b").is_empty(),
            "no longer defended"
        );
        assert_eq!(marks.expire(now + Duration::from_secs(61), &t()).len(), 1);
        assert!(marks.is_empty());
    }

    #[test]
    fn confirmed_marks_are_rechecked_at_the_interval() {
        let now = Instant::now();
        let mut marks = Marks::default();
        marks.marked(tracked("u1", "b"), now, true);
        assert_eq!(marks.due(now, &t()).len(), 1);
        let later = now + Duration::from_secs(4);
        marks.checked("u1", Seen::Gone, later, &t());
        assert!(marks.due(later + Duration::from_secs(1), &t()).is_empty());
        assert_eq!(marks.due(later + Duration::from_secs(11), &t()).len(), 1);
    }

    #[test]
    fn the_members_of_a_group_are_its_kind_in_its_namespace() {
        let now = Instant::now();
        let mut marks = Marks::default();
        marks.marked(tracked("u1", "b"), now, true);
        marks.marked(tracked("u2", "b"), now + Duration::from_millis(1), true);
        let elsewhere = Tracked {
            namespace: "other".into(),
            ..tracked("u3", "b")
        };
        marks.marked(elsewhere, now, true);
        let members: Vec<String> = marks
            .in_groups_of(&[tracked("u2", "b")])
            .into_iter()
            .map(|t| t.uid)
            .collect();
        assert_eq!(members, ["u1", "u2"], "oldest first, same namespace only");
        marks.checked("u1", Seen::Gone, now, &t());
        assert_eq!(marks.confirmed(), 1);
    }

    #[test]
    fn the_least_recently_checked_come_first() {
        let now = Instant::now();
        let mut marks = Marks::default();
        marks.marked(tracked("old", "b"), now, true);
        marks.checked("old", Seen::Gone, now + Duration::from_secs(1), &t());
        marks.marked(tracked("new", "b"), now + Duration::from_secs(2), true);
        let later = now + Duration::from_millis(2600);
        let due: Vec<String> = marks.due(later, &t()).into_iter().map(|o| o.uid).collect();
        assert_eq!(due, ["new", "old"], "never checked before checked");
    }

    #[test]
    fn young_marks_are_rechecked_often() {
        let now = Instant::now();
        let mut marks = Marks::default();
        marks.marked(tracked("u1", "b"), now, true);
        marks.checked("u1", Seen::Gone, now, &t());
        assert!(marks.due(now + Duration::from_millis(100), &t()).is_empty());
        assert_eq!(marks.due(now + Duration::from_millis(600), &t()).len(), 1);
    }
}
