//! Property tests: random sequences of deletions and restorations of the
//! fixture's 11 ConfigMaps, applied incrementally (BD deltas + GitRepo
//! deltas), must equal Fleet's full recompute from the resulting BDs, and
//! Fleet's count invariant must hold throughout.

#[path = "support/second_cluster.rs"]
mod second_cluster;

use fleet_delete_guard::delta::batch::{self, Change, ChangeKind};
use fleet_delete_guard::delta::bundle_deployment;
use fleet_delete_guard::delta::gitrepo;
use fleet_delete_guard::delta::recompute::{
    gitrepo_status_from_bundle_deployments, owner_status_for,
};
use fleet_delete_guard::delta::DeletedResource;
use fleet_delete_guard::fleet::release::FleetRelease;
use fleet_delete_guard::fleet::status::{
    BundleDeployment, GitRepoStatus, NonReadyResource, ResourceCounts,
};
use fleet_delete_guard::fleet::OwnerKind;
use proptest::prelude::*;
use serde_json::Value;

const NOW: &str = "2026-08-21T14:30:05Z";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture_bds() -> Vec<BundleDeployment> {
    fixture("bundledeployments-lots.json")["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| BundleDeployment::from_value(v).expect("bd parses"))
        .collect()
}

fn fixture_gitrepo() -> GitRepoStatus {
    GitRepoStatus::from_value(&fixture("gitrepo-lots.json")["status"]).expect("parses")
}

/// (BD index, ConfigMap name) for the 11 fixture objects.
fn resources() -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, names) in [
        &["one", "two", "three", "four"][..],
        &["one", "two", "three", "four"],
        &["one", "two", "three"],
    ]
    .iter()
    .enumerate()
    {
        for n in *names {
            out.push((i, format!("test-config{}-{n}", i + 1)));
        }
    }
    out
}

fn cm(name: &str) -> DeletedResource {
    DeletedResource::new("v1", "ConfigMap", Some("default"), name)
        .with_created_at("2026-08-20T09:01:12Z")
}

fn strip_times(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("lastUpdateTime");
                m.values_mut().for_each(walk);
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

fn json_of<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).expect("serializes")
}

/// Fleet's invariant: every desired object is exactly one of ready,
/// notReady, modified or missing (orphans are not desired, and waitApplied /
/// unknown are never set by the agent).
fn conserved(c: &ResourceCounts) -> bool {
    c.ready + c.not_ready + c.modified + c.missing == c.desired_ready
        && c.ready >= 0
        && c.missing >= 0
        && c.wait_applied == 0
        && c.unknown == 0
}

fn changes_for(
    ops: &[(usize, bool)],
    objects: &[(usize, String)],
    bd_offset: usize,
) -> Vec<Change> {
    ops.iter()
        .map(|&(i, delete)| {
            let (bd, name) = &objects[i % objects.len()];
            Change {
                bd: bd + bd_offset,
                resource: cm(name),
                kind: if delete {
                    ChangeKind::Missing
                } else {
                    ChangeKind::Restored
                },
            }
        })
        .collect()
}

/// The two-cluster variant: the fixture's BDs plus copies on `fleet-default/downstream1`.
fn two_cluster_bds() -> Vec<BundleDeployment> {
    second_cluster::with_second_cluster(fixture_bds(), '0')
}

/// The agent reports `changes` in its BundleDeployment statuses.
fn agent_reports(list: &mut [BundleDeployment], changes: &[Change]) {
    for c in changes {
        let bd = &mut list[c.bd];
        let spec = bd.spec.clone();
        let status = bd.status.as_mut().expect("status");
        match c.kind {
            ChangeKind::Missing => bundle_deployment::mark_missing(status, &spec, &c.resource, NOW),
            ChangeKind::Restored => {
                bundle_deployment::unmark_missing(status, &spec, &c.resource, NOW)
            }
        };
    }
}

/// Like `batch::apply`, but the GitRepo delta only knows the changed BD
/// (`same_cluster == false`) or the BDs on its cluster.
fn apply_partially(
    gr: &mut GitRepoStatus,
    list: &mut [BundleDeployment],
    changes: &[Change],
    same_cluster: bool,
) {
    for c in changes {
        let bd = list[c.bd].clone();
        let known: Vec<BundleDeployment> = if same_cluster {
            list.iter()
                .filter(|b| b.cluster_id() == bd.cluster_id())
                .cloned()
                .collect()
        } else {
            vec![bd.clone()]
        };
        match c.kind {
            ChangeKind::Missing => gitrepo::mark_missing(gr, &bd, &c.resource, &known, NOW),
            ChangeKind::Restored => gitrepo::unmark_missing(gr, &bd, &c.resource, &known, NOW),
        };
        let target = &mut list[c.bd];
        let spec = target.spec.clone();
        let status = target.status.as_mut().expect("status");
        match c.kind {
            ChangeKind::Missing => bundle_deployment::mark_missing(status, &spec, &c.resource, NOW),
            ChangeKind::Restored => {
                bundle_deployment::unmark_missing(status, &spec, &c.resource, NOW)
            }
        };
    }
}

fn sorted_entries(s: &GitRepoStatus) -> Vec<String> {
    let mut v: Vec<String> = s
        .summary
        .iter()
        .flat_map(|s| s.non_ready_resources.iter())
        .map(|e| serde_json::to_string(e).expect("json"))
        .collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Single cluster: the incremental GitRepo status equals the recompute
    /// field for field (timestamps aside), after every batch.
    #[test]
    fn incremental_equals_recompute(
        ops in prop::collection::vec((0usize..11, prop::bool::weighted(0.7)), 1..30),
        batch_size in 1usize..5,
    ) {
        let objects = resources();
        let original = fixture_gitrepo();
        let mut list = fixture_bds();
        let mut gr = original.clone();
        for chunk in ops.chunks(batch_size) {
            let changes = changes_for(chunk, &objects, 0);
            batch::apply(&mut gr, &mut list, &changes, NOW);
            let want = gitrepo_status_from_bundle_deployments(&original, &list, NOW);
            prop_assert_eq!(&gr.resource_counts, &want.resource_counts);
            prop_assert_eq!(&gr.per_cluster_resource_counts, &want.per_cluster_resource_counts);
            prop_assert_eq!(&gr.resources, &want.resources);
            prop_assert_eq!(strip_times(json_of(&gr)), strip_times(json_of(&want)));

            for bd in &list {
                let counts = bd.status.as_ref().and_then(|s| s.resource_counts.clone()).expect("counts");
                prop_assert!(conserved(&counts), "BD {} counts {:?}", bd.metadata.name, counts);
            }
            let total = gr.resource_counts.clone().expect("counts");
            prop_assert!(conserved(&total), "GitRepo counts {:?}", total);
            prop_assert_eq!(total.desired_ready, 11);

            // Replaying the batch ends where it started (idempotent deltas).
            let mut again = gr.clone();
            let mut list_again = list.clone();
            batch::apply(&mut again, &mut list_again, &changes, NOW);
            prop_assert_eq!(&list_again, &list);
            prop_assert_eq!(&again, &gr);
        }
    }

    /// For every supported Fleet release: production's batch, with that release's
    /// rules, equals that release's recompute after every batch, and replays are no-ops.
    #[test]
    fn incremental_equals_recompute_for_every_release(
        ops in prop::collection::vec((0usize..11, prop::bool::weighted(0.7)), 1..20),
        batch_size in 1usize..4,
        release in prop::sample::select(FleetRelease::ALL.to_vec()),
    ) {
        let rules = release.rules();
        let objects = resources();
        let original = owner_status_for(&rules, OwnerKind::GitRepo, &fixture_gitrepo(), &fixture_bds(), NOW);
        let mut list = fixture_bds();
        let mut gr = original.clone();
        for chunk in ops.chunks(batch_size) {
            let changes = changes_for(chunk, &objects, 0);
            batch::apply_knowing(&rules, OwnerKind::GitRepo, &mut gr, &mut list, &changes, NOW, |_| true);
            let want = owner_status_for(&rules, OwnerKind::GitRepo, &original, &list, NOW);
            prop_assert_eq!(strip_times(json_of(&gr)), strip_times(json_of(&want)), "{}", release);
            let mut again = gr.clone();
            let mut list_again = list.clone();
            batch::apply_knowing(&rules, OwnerKind::GitRepo, &mut again, &mut list_again, &changes, NOW, |_| true);
            prop_assert_eq!(&again, &gr);
        }
    }

    /// Whoever is first: in some batches Fleet's agent has already updated the
    /// BDs before the webhook's GitRepo delta runs, and sometimes Fleet
    /// recomputes the GitRepo in between. The result is always Fleet's.
    #[test]
    fn agent_first_and_fleet_recompute_interleave(
        batches in prop::collection::vec(
            (prop::collection::vec((0usize..11, prop::bool::weighted(0.7)), 1..4), 0u8..3),
            1..10,
        ),
    ) {
        let objects = resources();
        let original = fixture_gitrepo();
        let mut list = fixture_bds();
        let mut gr = original.clone();
        for (ops, mode) in batches {
            let changes = changes_for(&ops, &objects, 0);
            if mode == 1 {
                // the agent reported first
                agent_reports(&mut list, &changes);
            }
            batch::apply(&mut gr, &mut list, &changes, NOW);
            if mode == 2 {
                // Fleet recomputed the GitRepo after the webhook's patch
                gr = gitrepo_status_from_bundle_deployments(&gr, &list, NOW);
            }
            let want = gitrepo_status_from_bundle_deployments(&original, &list, NOW);
            prop_assert_eq!(strip_times(json_of(&gr)), strip_times(json_of(&want)));
        }
    }

    /// Two clusters: everything but the Ready condition equals the recompute
    /// (which Bundle's message Fleet shows depends on Bundle UIDs). Batches of
    /// four are first reported by the agent, then by the webhook.
    #[test]
    fn incremental_equals_recompute_on_two_clusters(
        ops in prop::collection::vec((0usize..22, prop::bool::weighted(0.7)), 1..30),
        batch_size in 1usize..5,
    ) {
        let objects = resources();
        let mut list = two_cluster_bds();
        let original = gitrepo_status_from_bundle_deployments(&fixture_gitrepo(), &list, NOW);
        let mut gr = original.clone();
        for chunk in ops.chunks(batch_size) {
            let mut changes = Vec::new();
            for &(i, delete) in chunk {
                changes.extend(changes_for(&[(i % 11, delete)], &objects, if i >= 11 { 3 } else { 0 }));
            }
            let agent_first = batch_size == 4;
            if agent_first {
                // the agent reported these before the webhook's GitRepo delta
                agent_reports(&mut list, &changes);
            }
            batch::apply(&mut gr, &mut list, &changes, NOW);
            let want = gitrepo_status_from_bundle_deployments(&original, &list, NOW);
            prop_assert_eq!(&gr.resource_counts, &want.resource_counts);
            prop_assert_eq!(&gr.per_cluster_resource_counts, &want.per_cluster_resource_counts);
            prop_assert_eq!(&gr.resources, &want.resources);
            prop_assert_eq!(gr.ready_clusters, want.ready_clusters);
            let (s, w) = (gr.summary.clone().expect("summary"), want.summary.clone().expect("summary"));
            prop_assert_eq!((s.ready, s.modified, s.desired_ready), (w.ready, w.modified, w.desired_ready));
            if agent_first {
                // Entry order across clusters can lag when the agent was first.
                let key = |e: &NonReadyResource| serde_json::to_string(e).expect("json");
                let mut got: Vec<String> = s.non_ready_resources.iter().map(key).collect();
                let mut exp: Vec<String> = w.non_ready_resources.iter().map(key).collect();
                got.sort();
                exp.sort();
                prop_assert_eq!(got, exp);
            } else {
                prop_assert_eq!(&s, &w);
            }
            prop_assert_eq!(&gr.display, &want.display);
            let total = gr.resource_counts.clone().expect("counts");
            prop_assert!(conserved(&total));
            prop_assert_eq!(total.desired_ready, 22);
        }
    }

    /// Partial knowledge (the incremental path): the GitRepo delta sees only
    /// the changed BD (one cluster) or the BDs of its cluster (two clusters).
    /// Counts, resources, summary counters and entries, readyClusters, the
    /// display and the Ready status still equal Fleet's recompute (which
    /// Bundle's Ready message is shown needs the other BDs' UIDs).
    #[test]
    fn partial_knowledge_matches_recompute(
        ops in prop::collection::vec((0usize..22, prop::bool::weighted(0.7)), 1..30),
        batch_size in 1usize..4,
        two_clusters in any::<bool>(),
    ) {
        let objects = resources();
        let mut list = if two_clusters { two_cluster_bds() } else { fixture_bds() };
        let original = gitrepo_status_from_bundle_deployments(&fixture_gitrepo(), &list, NOW);
        let mut gr = original.clone();
        for chunk in ops.chunks(batch_size) {
            let mut changes = Vec::new();
            for &(i, delete) in chunk {
                let offset = if two_clusters && i >= 11 { 3 } else { 0 };
                changes.extend(changes_for(&[(i % 11, delete)], &objects, offset));
            }
            apply_partially(&mut gr, &mut list, &changes, two_clusters);
            let want = gitrepo_status_from_bundle_deployments(&original, &list, NOW);
            prop_assert_eq!(&gr.resource_counts, &want.resource_counts);
            prop_assert_eq!(&gr.per_cluster_resource_counts, &want.per_cluster_resource_counts);
            prop_assert_eq!(&gr.resources, &want.resources);
            prop_assert_eq!(gr.ready_clusters, want.ready_clusters);
            let (s, w) = (gr.summary.clone().expect("summary"), want.summary.clone().expect("summary"));
            prop_assert_eq!((s.ready, s.modified, s.desired_ready), (w.ready, w.modified, w.desired_ready));
            prop_assert_eq!(sorted_entries(&gr), sorted_entries(&want));
            prop_assert_eq!(&gr.display, &want.display);
            let ready = |g: &GitRepoStatus| g.condition("Ready").map(|c| c.status.clone());
            prop_assert_eq!(ready(&gr), ready(&want));
        }
    }
}
