//! Whether the breaker works on shared state or has fallen back to this replica's own,
//! and why: pure bookkeeping of the failing parts, read by the readiness check, the
//! `breaker_degraded` metric and the log.
//!
//! Degraded is not unready: admission needs no Lease, so a replica whose Lease rights
//! are missing (403) or whose Lease API fails still reviews, and its breaker judges on
//! the deletions it reviews itself — as before replicas shared their counts.

use std::collections::BTreeMap;

/// The parts of the shared state that can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// The list and watch of the open breakers' Leases.
    Watch,
    /// Writing and reading the window counts (the counts Lease).
    Counts,
    /// Recording a trip in its Lease.
    Record,
}

impl Part {
    fn what(self) -> &'static str {
        match self {
            Part::Watch => "cannot list or watch breaker Leases",
            Part::Counts => "cannot share window counts",
            Part::Record => "cannot record a trip in its Lease",
        }
    }
}

/// What changed with [`Degradation::set`] or [`Degradation::clear`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// It was not degraded and is now.
    Degraded,
    /// It was degraded and is not any more.
    Recovered,
    /// Still degraded, for other reasons.
    Changed,
    Same,
}

/// The failing parts with their last error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Degradation {
    failing: BTreeMap<Part, String>,
}

impl Degradation {
    pub fn is_degraded(&self) -> bool {
        !self.failing.is_empty()
    }

    /// `part` fails with `error`.
    pub fn set(&mut self, part: Part, error: impl Into<String>) -> Change {
        let was = self.is_degraded();
        let error = error.into();
        let before = self.failing.insert(part, error.clone());
        match (was, before) {
            (false, _) => Change::Degraded,
            (true, Some(b)) if b == error => Change::Same,
            (true, _) => Change::Changed,
        }
    }

    /// `part` works again.
    pub fn clear(&mut self, part: Part) -> Change {
        if self.failing.remove(&part).is_none() {
            return Change::Same;
        }
        if self.is_degraded() {
            Change::Changed
        } else {
            Change::Recovered
        }
    }

    /// The readiness detail while degraded: `degraded: cannot list or watch breaker
    /// Leases (403 …); breakers judged on this replica's reviews only`.
    pub fn detail(&self) -> Option<String> {
        if !self.is_degraded() {
            return None;
        }
        let reasons: Vec<String> = self
            .failing
            .iter()
            .map(|(part, error)| format!("{} ({error})", part.what()))
            .collect();
        Some(format!(
            "degraded: {}; breakers judged on this replica's reviews only",
            reasons.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_while_any_part_fails_and_says_which() {
        let mut d = Degradation::default();
        assert_eq!(d.detail(), None);
        assert_eq!(d.clear(Part::Watch), Change::Same);
        assert_eq!(d.set(Part::Watch, "403 Forbidden"), Change::Degraded);
        assert_eq!(d.set(Part::Watch, "403 Forbidden"), Change::Same);
        assert_eq!(d.set(Part::Counts, "timed out"), Change::Changed);
        assert_eq!(
            d.detail().as_deref(),
            Some(
                "degraded: cannot list or watch breaker Leases (403 Forbidden); cannot share \
                 window counts (timed out); breakers judged on this replica's reviews only"
            )
        );
        assert_eq!(d.clear(Part::Watch), Change::Changed);
        assert!(d.is_degraded());
        assert_eq!(d.clear(Part::Counts), Change::Recovered);
        assert!(!d.is_degraded());
    }
}
