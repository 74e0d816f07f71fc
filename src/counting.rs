//! Wiring for counting: the watchers feeding the owner index, the patch worker and
//! the resync, started on the clients [`crate::cluster`] connected.

use std::sync::Arc;

use futures::StreamExt;
use kube::{
    api::{Api, DynamicObject},
    core::PartialObjectMeta,
    runtime::{watcher, WatchStreamExt},
    Client,
};

use crate::{
    cluster::{Clients, FleetCluster},
    fleet::{api::FleetResource, view::WatchedBundleDeployment, OwnerKind},
    health::Readiness,
    metrics::Metrics,
    owners::OwnerIndex,
    patcher::{resync::ResyncVerify, Patcher, PatcherConfig},
};

/// The readiness check name for the caches.
pub const CACHES_CHECK: &str = "caches";
/// The readiness check name that reports whether counting is on.
pub const COUNTING_CHECK: &str = "counting";

/// Counting, running: the owner index for the admission path, the patcher as its sink.
pub struct Counting {
    pub index: Arc<OwnerIndex>,
    pub patcher: Patcher,
}

/// Start the watchers and the patch worker. Readiness gets the `caches` check,
/// which passes once both caches have listed once.
pub fn start(
    clients: &Clients,
    cluster: &FleetCluster,
    scopes: Vec<String>,
    config: PatcherConfig,
    metrics: Metrics,
    readiness: Readiness,
) -> Counting {
    let verify = ResyncVerify {
        metrics: metrics.clone(),
        scopes: scopes.clone(),
        cluster_key: cluster.to_string(),
        owner_kinds: if config.patch_gitrepo {
            vec![OwnerKind::GitRepo, OwnerKind::HelmOp]
        } else {
            Vec::new()
        },
    };
    let index = Arc::new(OwnerIndex::new(scopes));
    let watch_gitrepos = config.patch_gitrepo;
    let patcher = Patcher::new(
        clients.cluster.clone(),
        clients.fleet.clone(),
        index.clone(),
        metrics,
        config,
    );
    readiness.set(
        CACHES_CHECK,
        false,
        "waiting for the first list of BundleDeployments",
    );

    // BundleDeployments of this cluster: the index, and the patcher's watch over its
    // marks. Read through a view that skips spec and most of status while parsing; the
    // index is the only cache (no reflector store of the objects).
    let bd_api: Api<WatchedBundleDeployment> =
        Api::namespaced(clients.fleet.clone(), &cluster.bundle_deployment_namespace);
    let bd_index = index.clone();
    let observer = patcher.clone();
    let bds = watcher(
        bd_api,
        watcher::Config::default()
            .labels(&cluster.selector())
            .page_size(WATCH_PAGE),
    )
    .default_backoff();
    tokio::spawn(async move {
        bds.for_each(|r| {
            match r {
                Ok(event) => {
                    bd_index.apply_bundle_deployment_event(&event);
                    if let watcher::Event::Apply(bd) = &event {
                        observer.observe_bundle_deployment(bd);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "BundleDeployment watch failed; retrying with backoff")
                }
            }
            std::future::ready(())
        })
        .await;
    });

    // GitRepos and HelmOps: only their policy annotation, so metadata only.
    if watch_gitrepos {
        for kind in [OwnerKind::GitRepo, OwnerKind::HelmOp] {
            spawn_owner_watch(clients.fleet.clone(), index.clone(), kind);
        }
    }

    let ready_index = index.clone();
    let resync = (
        patcher.clone(),
        clients.cluster.clone(),
        clients.fleet.clone(),
        cluster.bundle_deployment_namespace.clone(),
        cluster.selector(),
    );
    tokio::spawn(async move {
        ready_index.wait_synced(watch_gitrepos).await;
        tracing::info!(
            bundledeployments = ready_index.len(),
            "caches synced; counting deletions"
        );
        readiness.set(
            CACHES_CHECK,
            true,
            format!(
                "{} BundleDeployments of this cluster cached",
                ready_index.len()
            ),
        );
        // Deletions made while no replica was running were never reviewed.
        let (patcher, cluster, fleet, namespace, selector) = resync;
        let interval = patcher.config().resync_interval;
        tokio::spawn(crate::patcher::resync::run(
            patcher, cluster, fleet, namespace, selector, interval, verify,
        ));
    });

    tokio::spawn(patcher.clone().run());
    Counting { index, patcher }
}

/// Pages of the BundleDeployment watch's (re-)list: the resync's page size, not kube's
/// 500. Each page's body and its parse are a transient on top of the index: with 10,000
/// BundleDeployments the peak RSS when ready fell from 31.9 to about 27 MiB
/// (BENCHMARKS.md); 100 requests instead of 20 did not slow the start-up measurably.
const WATCH_PAGE: u32 = crate::cluster::scan::PAGE;

/// Watch one owner kind's metadata for the policy annotation. A Fleet without that kind
/// (HelmOps before v0.13) answers 404, an RBAC without it 403: readiness then does not
/// wait for it, and the watch keeps retrying in case the CRD or the rule arrives later.
fn spawn_owner_watch(fleet: Client, index: Arc<OwnerIndex>, kind: OwnerKind) {
    let api: Api<PartialObjectMeta<DynamicObject>> =
        Api::all_with(fleet, &FleetResource::of_owner(kind).api_resource());
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    tokio::spawn(async move {
        let mut absent_logged = false;
        stream
            .for_each(|r| {
                match r {
                    Ok(event) => index.apply_owner_event(kind, &event),
                    Err(watcher::Error::InitialListFailed(kube::Error::Api(s)))
                        if s.code == 404 || s.code == 403 =>
                    {
                        index.mark_owners_synced(kind);
                        if !std::mem::replace(&mut absent_logged, true) {
                            let why = if s.code == 404 { "this Fleet serves none (before v0.13)" } else { "forbidden (RBAC)" };
                            tracing::warn!(%kind, why, "cannot list {kind}s; their policy annotations are not watched");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%kind, error = %e, "owner watch failed; retrying with backoff")
                    }
                }
                std::future::ready(())
            })
            .await;
    });
}
