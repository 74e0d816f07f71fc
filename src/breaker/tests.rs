use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::decide::Operation;
use crate::decide::{decide, ObjectFacts, Owner, Review};
use crate::policy::Policy;

const AGENT: &str = "system:serviceaccount:cattle-fleet-system:fleet-agent";
const AGENT_GROUP: &str = "system:serviceaccounts:cattle-fleet-system";
const NS_CONTROLLER: &str = "system:serviceaccount:kube-system:namespace-controller";
const GC: &str = "system:serviceaccount:kube-system:generic-garbage-collector";
const T: &str = "2026-11-26T01:02:03Z";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn gitrepo() -> OwnerRef {
    OwnerRef::new(OwnerKind::GitRepo, "fleet-local", "many")
}

fn owner(desired: Option<u64>) -> Owner {
    Owner {
        set_id: Some("default-many-config".into()),
        owned_by: Some(gitrepo().into()),
        bundle: Some("many-config".into()),
        desired_ready: desired,
        ..Owner::default()
    }
}

fn review(user: &str, groups: &[&str], kind: &str, name: &str) -> Review {
    Review {
        operation: Operation::Delete,
        dry_run: false,
        username: user.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        object: Some(ObjectFacts {
            kind: kind.into(),
            namespace: if kind == "namespace" || kind == "customresourcedefinition" {
                String::new()
            } else {
                "default".into()
            },
            name: name.into(),
            objectset_hash: Some(object_set_hash("default-many-config")),
            objectset_id: Some("default-many-config".into()),
            terminating: false,
        }),
    }
}

fn agent(kind: &str, name: &str) -> Review {
    review(AGENT, &[AGENT_GROUP, "system:authenticated"], kind, name)
}

fn alice(name: &str) -> Review {
    review("alice", &["system:authenticated"], "configmap", name)
}

fn cfg(mode: BreakerMode) -> BreakerConfig {
    BreakerConfig {
        mode,
        ..BreakerConfig::default()
    }
}

struct Run {
    book: BreakerBook,
    config: BreakerConfig,
    decision: DecisionConfig,
}

impl Run {
    fn new(config: BreakerConfig) -> Self {
        Run {
            book: BreakerBook::default(),
            config,
            decision: DecisionConfig::default(),
        }
    }

    fn at(&mut self, now: Duration, r: &Review, o: &Owner) -> Judgement {
        let v = decide(r, o, &self.decision);
        self.book
            .judge(&self.config, &self.decision, r, o, v, now, &|| {
                T.to_string()
            })
    }
}

#[test]
fn the_21st_deletion_in_the_window_trips_and_later_ones_are_refused_in_enforce() {
    let mut run = Run::new(cfg(BreakerMode::Enforce));
    let o = owner(Some(1000));
    for i in 0..20 {
        let j = run.at(ms(10 * i), &agent("configmap", &format!("cm-{i}")), &o);
        assert!(j.verdict.allowed && j.tripped.is_none(), "deletion {i}");
    }
    let j = run.at(ms(200), &agent("configmap", "cm-20"), &o);
    let (open, trip) = j.tripped.expect("trips");
    assert_eq!(
        trip,
        Trip::Deletions {
            count: 21,
            limit: 20,
            window: Duration::from_secs(60)
        }
    );
    assert_eq!(open.reason, "21 deletions within 60s (limit 20)");
    assert_eq!(open.tripped_at, T);
    assert!(!j.verdict.allowed, "the tripping deletion is refused");
    assert_eq!(j.verdict.outcome, Outcome::BreakerOpen);
    let msg = j.verdict.denial.expect("message");
    assert!(msg.contains("Fleet GitRepo fleet-local/many"), "{msg}");
    assert!(msg.contains("21 deletions within 60s (limit 20)"), "{msg}");
    assert!(msg.contains("by Fleet's agent refused"), "{msg}");
    assert!(
        msg.ends_with(
            "kubectl -n cattle-fleet-system delete lease breaker-gitrepo.fleet-local.many"
        ),
        "{msg}"
    );
    // Later: users and the agent refused, no second trip.
    for r in [agent("configmap", "cm-21"), alice("cm-22")] {
        let j = run.at(ms(300), &r, &o);
        assert!(!j.verdict.allowed && j.tripped.is_none());
        assert!(!j.verdict.count, "a refused deletion is not counted");
    }
}

/// While this replica cannot write the breaker's Lease, the reset command finds none:
/// the refusal says so and what resets it instead; once written, the command alone.
#[test]
fn a_refusal_says_when_the_reset_command_cannot_work_yet() {
    let mut run = Run::new(cfg(BreakerMode::Enforce));
    let o = owner(Some(1000));
    for i in 0..21 {
        run.at(ms(i), &agent("configmap", &format!("cm-{i}")), &o);
    }
    let note = "(its Lease could not be written yet, so this finds none: this replica's log \
                says why, and restarting the replica resets its breaker)";
    let refusal = |run: &mut Run, at: u64| {
        run.at(ms(at), &alice("x"), &o)
            .verdict
            .denial
            .expect("refused")
    };
    // Pending, not failed: the command alone (the Lease lands within moments).
    assert!(!refusal(&mut run, 30).contains(note));
    run.book.record_failed(&gitrepo());
    let msg = refusal(&mut run, 31);
    assert!(
        msg.ends_with(&format!(
            "delete lease breaker-gitrepo.fleet-local.many {note}"
        )),
        "{msg}"
    );
    run.book.confirm(&gitrepo());
    let msg = refusal(&mut run, 32);
    assert!(
        msg.ends_with("delete lease breaker-gitrepo.fleet-local.many"),
        "{msg}"
    );
    // A failure reported after the Lease was seen changes nothing.
    run.book.record_failed(&gitrepo());
    assert!(!refusal(&mut run, 33).contains(note));
}

#[test]
fn observe_reports_and_allows() {
    let mut run = Run::new(cfg(BreakerMode::Observe));
    let o = owner(None);
    let trips: Vec<bool> = (0..30)
        .map(|i| {
            let j = run.at(ms(i), &agent("configmap", &format!("cm-{i}")), &o);
            assert!(j.verdict.allowed);
            j.tripped.is_some()
        })
        .collect();
    assert_eq!(trips.iter().filter(|t| **t).count(), 1, "one trip");
    assert!(trips[20]);
    let j = run.at(ms(40), &alice("x"), &o);
    assert!(j.verdict.allowed && j.verdict.outcome == Outcome::Warned);
    assert!(j
        .verdict
        .audit_annotations
        .iter()
        .any(|(k, v)| *k == "breaker" && v.starts_with("open: 21 deletions")));
}

#[test]
fn off_counts_nothing() {
    let mut run = Run::new(cfg(BreakerMode::Off));
    for i in 0..50 {
        let j = run.at(ms(i), &agent("namespace", "prod"), &owner(None));
        assert!(j.verdict.allowed && j.tripped.is_none());
    }
    assert_eq!(
        run.book.count(&gitrepo(), ms(50), Duration::from_secs(60)),
        0
    );
}

#[test]
fn the_fraction_rule_trips_small_owners_with_a_floor() {
    let mut run = Run::new(cfg(BreakerMode::Enforce));
    // desiredReady 8: more than 4 → the 5th deletion trips.
    let o = owner(Some(8));
    for i in 0..4 {
        assert!(run
            .at(ms(i), &alice(&format!("c{i}")), &o)
            .tripped
            .is_none());
    }
    let (_, trip) = run.at(ms(5), &alice("c4"), &o).tripped.expect("trips");
    assert_eq!(
        trip.to_string(),
        "5 of 8 desired resources deleted within 60s (limit 50%)"
    );
    // desiredReady 3: 3 deletions are more than half, but below the floor of 5.
    let mut run = Run::new(cfg(BreakerMode::Enforce));
    let small = owner(Some(3));
    for i in 0..3 {
        assert!(run
            .at(ms(i), &alice(&format!("c{i}")), &small)
            .tripped
            .is_none());
    }
    // Fraction 0 turns the rule off.
    let mut run = Run::new(BreakerConfig {
        max_fraction: 0.0,
        ..cfg(BreakerMode::Enforce)
    });
    for i in 0..8 {
        assert!(run
            .at(ms(i), &alice(&format!("c{i}")), &o)
            .tripped
            .is_none());
    }
}

#[test]
fn a_protected_kind_deleted_by_the_agent_trips_at_once_by_a_user_it_counts() {
    for kind in [
        "customresourcedefinition",
        "namespace",
        "persistentvolumeclaim",
    ] {
        let mut run = Run::new(cfg(BreakerMode::Enforce));
        let j = run.at(ms(0), &agent(kind, "x"), &owner(None));
        let (open, _) = j.tripped.expect("trips at once");
        assert!(
            open.reason
                .contains(&format!("Fleet's agent deleted {kind}")),
            "{}",
            open.reason
        );
        assert!(!j.verdict.allowed, "{kind}: the deletion itself is refused");

        let mut run = Run::new(cfg(BreakerMode::Enforce));
        let j = run.at(ms(0), &review("alice", &[], kind, "x"), &owner(None));
        assert!(j.tripped.is_none() && j.verdict.allowed, "{kind} by a user");
        assert_eq!(
            run.book.count(&gitrepo(), ms(0), Duration::from_secs(60)),
            1
        );
    }
}

#[test]
fn controllers_are_never_refused_nor_counted_break_glass_passes_with_a_warning() {
    let decision = DecisionConfig {
        break_glass_groups: vec!["oncall".into()],
        ..DecisionConfig::default()
    };
    let mut run = Run::new(cfg(BreakerMode::Enforce));
    run.decision = decision;
    let o = owner(None);
    for i in 0..40 {
        for user in [NS_CONTROLLER, GC] {
            let j = run.at(ms(i), &review(user, &[], "configmap", "c"), &o);
            assert!(j.verdict.allowed && j.tripped.is_none());
        }
    }
    assert_eq!(
        run.book.count(
            &o.owned_by.clone().expect("owner"),
            ms(40),
            Duration::from_secs(60)
        ),
        0
    );
    run.at(ms(50), &agent("namespace", "prod"), &o)
        .tripped
        .expect("trips");
    for user in [NS_CONTROLLER, GC] {
        let j = run.at(ms(60), &review(user, &[], "configmap", "c"), &o);
        assert!(j.verdict.allowed, "{user} passes an open breaker");
    }
    let j = run.at(ms(60), &review("bob", &["oncall"], "configmap", "c"), &o);
    assert!(j.verdict.allowed);
    assert!(j.verdict.warnings[0]
        .starts_with("Mass-deletion breaker open for GitRepo fleet-local/many"));
    assert!(j.verdict.warnings.len() <= MAX_WARNINGS);
    // Under policy deny the break-glass member passes as well.
    run.decision.policy = Policy::Deny;
    let j = run.at(ms(70), &review("bob", &["oncall"], "configmap", "c"), &o);
    assert!(j.verdict.allowed && j.verdict.outcome == Outcome::BreakGlass);
}

#[test]
fn dry_runs_repeats_policy_refusals_and_uninstalls_never_count() {
    let mut run = Run::new(cfg(BreakerMode::Enforce));
    let o = owner(None);
    let mut dry = agent("namespace", "prod");
    dry.dry_run = true;
    let mut repeat = agent("namespace", "prod");
    if let Some(obj) = repeat.object.as_mut() {
        obj.terminating = true;
    }
    let uninstalling = Owner {
        bundle_deleting: true,
        ..owner(None)
    };
    for i in 0..30 {
        assert!(run.at(ms(i), &dry, &o).tripped.is_none());
        assert!(run.at(ms(i), &repeat, &o).tripped.is_none());
        let j = run.at(ms(i), &agent("namespace", "prod"), &uninstalling);
        assert!(j.tripped.is_none() && j.verdict.allowed);
    }
    run.decision.policy = Policy::Deny;
    for i in 0..30 {
        let j = run.at(ms(i), &alice("c"), &o);
        assert_eq!(j.verdict.outcome, Outcome::Denied);
        assert!(j.tripped.is_none());
    }
    assert_eq!(
        run.book.count(&gitrepo(), ms(30), Duration::from_secs(60)),
        0
    );
    // A dry run is answered as the real deletion would be once open.
    run.decision.policy = Policy::Warn;
    run.at(ms(40), &agent("namespace", "prod"), &o)
        .tripped
        .expect("trip");
    let j = run.at(ms(41), &dry, &o);
    assert!(!j.verdict.allowed && j.tripped.is_none());
}

#[test]
fn unresolved_owners_and_unmanaged_objects_are_outside_the_breaker() {
    let mut run = Run::new(cfg(BreakerMode::Enforce));
    let unresolved = Owner {
        owned_by: None,
        ..owner(None)
    };
    let j = run.at(ms(0), &agent("namespace", "prod"), &unresolved);
    assert!(j.tripped.is_none() && j.verdict.allowed);
    let mut unmanaged = agent("namespace", "prod");
    if let Some(o) = unmanaged.object.as_mut() {
        o.objectset_id = None;
        o.objectset_hash = None;
    }
    let j = run.at(ms(0), &unmanaged, &owner(None));
    assert!(j.tripped.is_none() && j.verdict.is_fast_path());
}

#[test]
fn the_window_slides() {
    let mut run = Run::new(BreakerConfig {
        window: ms(1000),
        ..cfg(BreakerMode::Enforce)
    });
    let o = owner(None);
    // 20 per second for 5 seconds never trips.
    for i in 0..100u64 {
        let j = run.at(ms(i * 50), &alice("c"), &o);
        assert!(j.tripped.is_none(), "deletion {i}");
    }
    // 21 within one second do.
    let mut tripped = 0;
    for i in 0..21u64 {
        tripped += usize::from(run.at(ms(10_000 + i), &alice("c"), &o).tripped.is_some());
    }
    assert_eq!(tripped, 1);
}

#[test]
fn reset_closes_and_restarts_the_window_relist_reconciles() {
    let mut run = Run::new(cfg(BreakerMode::Enforce));
    let o = owner(None);
    let (open, _) = run
        .at(ms(0), &agent("namespace", "p"), &o)
        .tripped
        .expect("trip");
    assert!(!open.recorded);
    // A relist that does not hold it keeps it while its recording is pending.
    run.book.relist_start();
    run.book.relist_done();
    assert!(run.book.open_breaker(&gitrepo()).is_some());
    run.book.confirm(&gitrepo());
    assert!(run
        .book
        .open_breaker(&gitrepo())
        .is_some_and(|b| b.recorded));
    // Once recorded, a relist without its Lease closes it (reset while the watch was down).
    run.book.relist_start();
    run.book.relist_done();
    assert!(run.book.open_breaker(&gitrepo()).is_none());
    // Seen from another replica, then reset.
    run.book.recorded(OpenBreaker {
        recorded: false,
        record_failing: false,
        ..open.clone()
    });
    assert_eq!(run.book.open_count(), 1);
    assert!(!run.at(ms(1), &alice("c"), &o).verdict.allowed);
    run.book.reset(&gitrepo());
    assert_eq!(run.book.open_count(), 0);
    assert_eq!(
        run.book.count(&gitrepo(), ms(1), Duration::from_secs(60)),
        0
    );
    let j = run.at(ms(2), &alice("c"), &o);
    assert!(j.verdict.allowed && j.tripped.is_none());
    // The first recorded reason stays when replicas race.
    run.book.recorded(open.clone());
    run.book.recorded(OpenBreaker {
        reason: "other".into(),
        ..open.clone()
    });
    assert_eq!(
        run.book.open_breaker(&gitrepo()).map(|b| b.reason.clone()),
        Some(open.reason.clone())
    );
}

#[test]
fn lease_names_are_deterministic_distinct_and_valid() {
    let a = lease_name(&OwnerRef::new(OwnerKind::GitRepo, "a-b", "c"));
    let b = lease_name(&OwnerRef::new(OwnerKind::GitRepo, "a", "b-c"));
    assert_eq!(a, "breaker-gitrepo.a-b.c");
    assert_ne!(a, b);
    assert_eq!(
        lease_name(&OwnerRef::new(OwnerKind::HelmOp, "fleet-default", "redis")),
        "breaker-helmop.fleet-default.redis"
    );
    assert_eq!(
        lease_name(&OwnerRef::new(OwnerKind::Bundle, "", "mcc-x")),
        "breaker-bundle.mcc-x"
    );
    let long = OwnerRef::new(OwnerKind::Bundle, "n".repeat(63), "x".repeat(253));
    let name = lease_name(&long);
    assert!(name.len() <= 253, "{}", name.len());
    assert_ne!(
        name,
        lease_name(&OwnerRef::new(
            OwnerKind::Bundle,
            "n".repeat(63),
            "x".repeat(252)
        ))
    );
    let back = owner_of_lease(&BTreeMap::from([
        (ANNOTATION_OWNER_KIND.to_string(), "HelmOp".to_string()),
        (ANNOTATION_OWNER_NAMESPACE.to_string(), "ns".to_string()),
        (ANNOTATION_OWNER_NAME.to_string(), "op".to_string()),
    ]));
    assert_eq!(back, Some(OwnerRef::new(OwnerKind::HelmOp, "ns", "op")));
    for bad in [("Pod", "x"), ("GitRepo", "")] {
        let a = BTreeMap::from([
            (ANNOTATION_OWNER_KIND.to_string(), bad.0.to_string()),
            (ANNOTATION_OWNER_NAME.to_string(), bad.1.to_string()),
        ]);
        assert_eq!(owner_of_lease(&a), None, "{bad:?}");
    }
}

use std::collections::BTreeMap;

/// The count in a window equals a brute-force count over every deletion recorded.
fn brute(stamps: &[u64], now: u64, window: u64) -> u32 {
    stamps
        .iter()
        .filter(|t| **t <= now && **t + window > now)
        .count() as u32
}

proptest! {
    #[test]
    fn window_count_matches_brute_force(mut gaps in prop::collection::vec(0u64..300, 1..200), window in 1u64..2000) {
        let mut w = Window::default();
        let mut now = 0;
        let mut seen = Vec::new();
        for g in gaps.drain(..) {
            now += g;
            seen.push(now);
            let n = w.record(ms(now), ms(window));
            prop_assert_eq!(n, brute(&seen, now, window));
        }
    }

    #[test]
    fn trips_exactly_when_the_count_exceeds_the_limit(
        gaps in prop::collection::vec(0u64..100, 1..120),
        limit in 1u32..40,
        window in 50u64..3000,
    ) {
        let mut run = Run::new(BreakerConfig {
            max_deletions: limit,
            max_fraction: 0.0,
            window: ms(window),
            ..cfg(BreakerMode::Enforce)
        });
        let o = owner(None);
        let mut now = 0;
        let mut seen = Vec::new();
        let mut open = false;
        for g in gaps {
            now += g;
            let j = run.at(ms(now), &alice("c"), &o);
            if open {
                // Once open: refused, not counted, never a second trip.
                prop_assert!(!j.verdict.allowed && j.tripped.is_none());
                continue;
            }
            seen.push(now);
            let expect = brute(&seen, now, window) > limit;
            prop_assert_eq!(j.tripped.is_some(), expect);
            prop_assert_eq!(j.verdict.allowed, !expect);
            open = expect;
        }
    }

    #[test]
    fn observe_never_refuses_and_controllers_never_are(
        users in prop::collection::vec(0usize..4, 1..80),
        mode in prop::sample::select(vec![BreakerMode::Observe, BreakerMode::Enforce]),
    ) {
        let mut run = Run::new(BreakerConfig { max_deletions: 3, ..cfg(mode) });
        let o = owner(Some(10));
        for (i, u) in users.iter().enumerate() {
            let r = match u {
                0 => agent("configmap", "c"),
                1 => alice("c"),
                2 => review(NS_CONTROLLER, &[], "configmap", "c"),
                _ => review(GC, &[], "namespace", "n"),
            };
            let j = run.at(ms(i as u64), &r, &o);
            if mode == BreakerMode::Observe || *u >= 2 {
                prop_assert!(j.verdict.allowed);
            }
        }
    }
}

// --- shared window (begin / conclude, recent) -------------------------------------------

impl Run {
    fn begin(&mut self, now: Duration, r: &Review, o: &Owner) -> Step {
        let v = decide(r, o, &self.decision);
        self.book
            .begin(&self.config, &self.decision, r, o, v, now, &|| {
                T.to_string()
            })
    }
}

#[test]
fn the_other_replicas_deletions_count_with_this_ones() {
    let mut run = Run::new(cfg(BreakerMode::Enforce));
    let o = owner(Some(1000));
    // This replica's 5th deletion, with 15 of the others: 20, allowed.
    for i in 0..4 {
        let j = run.at(ms(i), &agent("configmap", &format!("cm-{i}")), &o);
        assert!(j.verdict.allowed);
    }
    let Step::Share(p) = run.begin(ms(10), &agent("configmap", "cm-4"), &o) else {
        panic!("a counted deletion awaits the others' counts");
    };
    assert_eq!(p.owner(), &gitrepo());
    let j = run.book.conclude(&run.config, p, 15, &|| T.to_string());
    assert!(j.verdict.allowed && j.tripped.is_none());
    // The 6th with 15 others: 21, trips.
    let Step::Share(p) = run.begin(ms(20), &agent("configmap", "cm-5"), &o) else {
        panic!("shared");
    };
    let j = run.book.conclude(&run.config, p, 15, &|| T.to_string());
    let (open, _) = j.tripped.expect("trips on the sum");
    assert_eq!(open.reason, "21 deletions within 60s (limit 20)");
    assert!(!j.verdict.allowed);
    // Open now: the next is done at once, refused, nothing to share.
    let Step::Done(j) = run.begin(ms(30), &agent("configmap", "cm-6"), &o) else {
        panic!("open: done");
    };
    assert!(!j.verdict.allowed && j.tripped.is_none());
}

#[test]
fn the_fraction_rule_applies_to_the_sum_and_a_concurrent_trip_is_not_repeated() {
    let mut run = Run::new(cfg(BreakerMode::Enforce));
    let o = owner(Some(10));
    let Step::Share(first) = run.begin(ms(0), &agent("configmap", "cm-0"), &o) else {
        panic!("shared");
    };
    let Step::Share(second) = run.begin(ms(1), &agent("configmap", "cm-1"), &o) else {
        panic!("shared");
    };
    // 2 here + 4 elsewhere = 6 of 10 desired > 50 %.
    let j = run.book.conclude(&run.config, second, 4, &|| T.to_string());
    let (_, trip) = j.tripped.expect("fraction");
    assert!(matches!(trip, Trip::Fraction { count: 6, .. }), "{trip:?}");
    // The first, concluded after the trip: refused, not tripping again.
    let j = run.book.conclude(&run.config, first, 4, &|| T.to_string());
    assert!(j.tripped.is_none() && !j.verdict.allowed);
}

#[test]
fn what_is_not_a_counted_deletion_is_done_at_once() {
    let mut run = Run::new(cfg(BreakerMode::Enforce));
    let o = owner(Some(1000));
    for r in [
        review(NS_CONTROLLER, &["system:serviceaccounts"], "configmap", "a"),
        agent("customresourcedefinition", "widgets.example.com"),
    ] {
        assert!(matches!(run.begin(ms(0), &r, &o), Step::Done(_)), "{r:?}");
    }
    let mut off = Run::new(cfg(BreakerMode::Off));
    assert!(matches!(off.begin(ms(0), &alice("a"), &o), Step::Done(_)));
}

#[test]
fn recent_deletions_are_the_window_s_newest_per_owner_newest_owner_first() {
    let mut run = Run::new(cfg(BreakerMode::Observe));
    let other = Owner {
        owned_by: Some(OwnerRef::new(OwnerKind::HelmOp, "fleet-local", "h").into()),
        ..owner(None)
    };
    for i in 0..30u64 {
        run.at(
            Duration::from_secs(i),
            &alice(&format!("cm-{i}")),
            &owner(None),
        );
    }
    run.at(Duration::from_secs(5), &alice("x"), &other);
    let recent = run.book.recent(&run.config, Duration::from_secs(64), 10);
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0].0, gitrepo(), "latest deletion first");
    // Within (4 s, 64 s]: 5..=29 are 25; the newest 21 kept.
    assert_eq!(recent[0].1.len(), 21);
    assert_eq!(recent[0].1[0], Duration::from_secs(9));
    assert_eq!(recent[0].1[20], Duration::from_secs(29));
    assert_eq!(recent[1].1, vec![Duration::from_secs(5)]);
    assert_eq!(
        run.book
            .recent(&run.config, Duration::from_secs(64), 1)
            .len(),
        1
    );
    assert!(run
        .book
        .recent(&run.config, Duration::from_secs(200), 10)
        .is_empty());
}
