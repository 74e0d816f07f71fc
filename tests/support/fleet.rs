//! A Fleet-managed cluster on the API double: the 11-ConfigMap GitRepo of the worked
//! example, Fleet's GitRepo status controller imitated, and webhook servers with
//! counting on, talking to the double through real kube clients.
#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use fleet_delete_guard::{
    breaker::{
        shared::{BreakerContext, Breakers},
        BreakerConfig,
    },
    cluster::{Clients, FleetCluster},
    counting::{self, Counting},
    delta::{
        merge_patch::merge_patch_diff,
        recompute::{
            gitrepo_status_from_bundle_deployments, helmop_status_from_bundle_deployments,
        },
    },
    fleet::status::{BundleDeployment, GitRepoStatus},
    health::Readiness,
    metrics::Metrics,
    owners::DEFAULT_AGENT_SCOPES,
    patcher::{marks::MarkTimings, PatcherConfig},
};
use kube_api_double::{gvr, ApiDouble, HookOptions, Options, Write};
use serde_json::{json, Value};

use super::{fixture_json, ServerOptions, TestServer};

pub const BD_NAMESPACE: &str = "cluster-fleet-local-local-1a3d67d0a899";

/// The double seeded with the worked example: GitRepo fleet-local/lots, its three
/// BundleDeployments and the 11 ConfigMaps.
pub async fn seeded_double() -> ApiDouble {
    let double = ApiDouble::start(Options::default()).await;
    seed(&double);
    double
}

pub fn seed(double: &ApiDouble) {
    double
        .seed(fixture_json("gitrepo-lots.json"))
        .expect("seed gitrepo");
    double
        .seed_list(fixture_json("bundledeployments-lots.json"))
        .expect("seed bundledeployments");
    double
        .seed_list(fixture_json("configmaps-lots.json"))
        .expect("seed configmaps");
}

/// Fleet's GitRepo status controller: every GitRepo update triggers a recompute of the
/// status from the BundleDeployments, written as a merge patch. `delay` imitates the
/// controller's queue.
pub fn imitate_gitrepo_status_controller(double: &ApiDouble, delay: Duration) {
    imitate_owner_status_controller(
        double,
        &gvr::GITREPOS,
        "fleet.cattle.io/repo-name",
        "fleet-gitrepo-status",
        gitrepo_status_from_bundle_deployments,
        delay,
    );
}

/// Fleet's HelmOp status controller (`helmops/reconciler/helmop_status.go`): the
/// `StatusBase` computation without the GitRepo's extras (no `GitUpdating`, its own
/// Ready condition), from the BundleDeployments labelled
/// `fleet.cattle.io/fleet-helm-name`, on every HelmOp update, with no forced delay.
pub fn imitate_helmop_status_controller(double: &ApiDouble, delay: Duration) {
    imitate_owner_status_controller(
        double,
        &gvr::HELMOPS,
        "fleet.cattle.io/fleet-helm-name",
        "fleet-helmop-status",
        helmop_status_from_bundle_deployments,
        delay,
    );
}

fn imitate_owner_status_controller(
    double: &ApiDouble,
    owners: &kube_api_double::Gvr,
    owner_label: &'static str,
    hook: &'static str,
    recompute: fn(&GitRepoStatus, &[BundleDeployment], &str) -> GitRepoStatus,
    delay: Duration,
) {
    let target = owners.clone();
    double.on_update_with(
        owners,
        HookOptions::named(hook).delay(delay),
        move |store, repo| {
            let ns = repo["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let name = repo["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let bds: Vec<BundleDeployment> = store
                .list(&gvr::BUNDLEDEPLOYMENTS, None)
                .into_iter()
                .filter(|bd| {
                    bd["metadata"]["labels"][owner_label] == name.as_str()
                        && bd["metadata"]["labels"]["fleet.cattle.io/bundle-namespace"]
                            == ns.as_str()
                })
                .filter_map(|bd| BundleDeployment::from_value(bd).ok())
                .collect();
            let old = repo.get("status").cloned().unwrap_or(Value::Null);
            let Ok(status) = GitRepoStatus::from_value(&old) else {
                return vec![];
            };
            let now = fleet_delete_guard::patcher::now_rfc3339();
            let new = recompute(&status, &bds, &now);
            let Ok(new) = new.to_value() else {
                return vec![];
            };
            if new == old {
                return vec![];
            }
            vec![Write::merge_patch_status(
                &target,
                &ns,
                &name,
                json!({ "status": merge_patch_diff(&old, &new) }),
            )]
        },
    );
}

pub fn client(double: &ApiDouble) -> kube::Client {
    fleet_delete_guard::tls::install_crypto_provider();
    let config = kube::Config::new(double.url().parse().expect("double url"));
    kube::Client::try_from(config).expect("kube client")
}

/// A kube client from a kubeconfig file, as `--fleet-kubeconfig` builds one.
pub async fn client_from_kubeconfig(path: &std::path::Path) -> kube::Client {
    fleet_delete_guard::tls::install_crypto_provider();
    let kubeconfig = kube::config::Kubeconfig::read_from(path).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    kube::Client::try_from(config).expect("kube client")
}

/// Patcher settings for tests: short ticks and timeouts.
pub fn fast_patcher() -> PatcherConfig {
    PatcherConfig {
        tick: Duration::from_millis(50),
        marks: MarkTimings {
            confirm_timeout: Duration::from_millis(800),
            recheck_interval: Duration::from_millis(200),
            ttl: Duration::from_secs(120),
            max_reapplies: 10,
            ..MarkTimings::default()
        },
        ..PatcherConfig::default()
    }
}

/// A webhook server with counting on against `double`.
pub struct CountingServer {
    pub server: TestServer,
    pub counting: Counting,
    pub metrics: Metrics,
    pub readiness: Readiness,
}

impl CountingServer {
    pub async fn start(double: &ApiDouble, config: PatcherConfig) -> CountingServer {
        Self::start_with(double, config, ServerOptions::default()).await
    }

    pub async fn start_with(
        double: &ApiDouble,
        config: PatcherConfig,
        options: ServerOptions,
    ) -> CountingServer {
        let client = client(double);
        let clients = Clients {
            cluster: client.clone(),
            fleet: client,
            separate_fleet: false,
        };
        Self::start_with_clients(&clients, config, options).await
    }

    /// With the mass-deletion breaker on (its Leases in `breaker.namespace` of `double`).
    pub async fn start_with_breaker(
        double: &ApiDouble,
        config: PatcherConfig,
        options: ServerOptions,
        breaker: BreakerConfig,
        instance: &str,
    ) -> (CountingServer, Breakers) {
        let client = client(double);
        let clients = Clients {
            cluster: client.clone(),
            fleet: client,
            separate_fleet: false,
        };
        Self::start_with_breaker_clients(&clients, config, options, breaker, instance).await
    }

    /// With the mass-deletion breaker on, through clients of one's own.
    pub async fn start_with_breaker_clients(
        clients: &Clients,
        config: PatcherConfig,
        options: ServerOptions,
        breaker: BreakerConfig,
        instance: &str,
    ) -> (CountingServer, Breakers) {
        let metrics = Metrics::new();
        let readiness = Readiness::default();
        let counting = Self::start_counting(clients, config, &metrics, &readiness);
        let breakers = Breakers::start(
            breaker,
            options.decision.clone(),
            BreakerContext {
                client: clients.cluster.clone(),
                events: Some(counting.patcher.event_queue()),
                metrics: metrics.clone(),
                readiness: readiness.clone(),
                instance: instance.to_string(),
            },
        );
        let server = TestServer::start(ServerOptions {
            owners: counting.index.clone(),
            sink: Some(Arc::new(counting.patcher.clone())),
            breaker: Some(Arc::new(breakers.clone())),
            ..options
        })
        .await;
        let s = CountingServer {
            server,
            counting,
            metrics,
            readiness,
        };
        (s, breakers)
    }

    fn start_counting(
        clients: &Clients,
        config: PatcherConfig,
        metrics: &Metrics,
        readiness: &Readiness,
    ) -> Counting {
        let cluster: FleetCluster = "fleet-local/local".parse().expect("cluster");
        counting::start(
            clients,
            &cluster,
            DEFAULT_AGENT_SCOPES.iter().map(|s| s.to_string()).collect(),
            config,
            metrics.clone(),
            readiness.clone(),
        )
    }

    /// With clients of one's own (other identities, a separate Fleet cluster).
    pub async fn start_with_clients(
        clients: &Clients,
        config: PatcherConfig,
        options: ServerOptions,
    ) -> CountingServer {
        let metrics = Metrics::new();
        let readiness = Readiness::default();
        let cluster: FleetCluster = "fleet-local/local".parse().expect("cluster");
        let counting = counting::start(
            clients,
            &cluster,
            DEFAULT_AGENT_SCOPES.iter().map(|s| s.to_string()).collect(),
            config,
            metrics.clone(),
            readiness.clone(),
        );
        let server = TestServer::start(ServerOptions {
            owners: counting.index.clone(),
            sink: Some(Arc::new(counting.patcher.clone())),
            ..options
        })
        .await;
        CountingServer {
            server,
            counting,
            metrics,
            readiness,
        }
    }

    /// Wait until the caches have listed once.
    pub async fn synced(self) -> Self {
        let readiness = self.readiness.clone();
        super::wait_until("caches synced", Duration::from_secs(20), || {
            readiness.is_ready()
        })
        .await;
        self
    }
}

/// The AdmissionReview kube-apiserver sends when `user` deletes ConfigMap `name` as it
/// is stored in the double right now.
pub fn delete_review(double: &ApiDouble, name: &str, user: &str, review_uid: &str) -> Value {
    delete_review_in(double, "default", name, user, review_uid)
}

/// [`delete_review`] of ConfigMap `namespace/name`.
pub fn delete_review_in(
    double: &ApiDouble,
    namespace: &str,
    name: &str,
    user: &str,
    review_uid: &str,
) -> Value {
    let cm = double
        .get(&gvr::CONFIGMAPS, namespace, name)
        .unwrap_or_else(|| panic!("configmap {namespace}/{name} exists"));
    let mut review = fixture_json("admissionreview-delete-configmap.json");
    review["request"]["uid"] = review_uid.into();
    review["request"]["name"] = name.into();
    review["request"]["namespace"] = namespace.into();
    review["request"]["oldObject"] = cm;
    review["request"]["userInfo"] = json!({ "username": user, "groups": ["system:authenticated"] });
    review
}

/// Drop what differs between runs: timestamps, resourceVersions, managedFields.
pub fn without_volatile(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for k in [
                    "lastUpdateTime",
                    "lastTransitionTime",
                    "resourceVersion",
                    "managedFields",
                    "generation",
                ] {
                    map.remove(k);
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

pub fn gitrepo(double: &ApiDouble) -> Value {
    double
        .get(&gvr::GITREPOS, "fleet-local", "lots")
        .expect("gitrepo")
}

pub fn gitrepo_named(double: &ApiDouble, name: &str) -> Value {
    double
        .get(&gvr::GITREPOS, "fleet-local", name)
        .expect("gitrepo")
}

pub fn bundle_deployment(double: &ApiDouble, name: &str) -> Value {
    double
        .get(&gvr::BUNDLEDEPLOYMENTS, BD_NAMESPACE, name)
        .expect("bundledeployment")
}

/// `ready/desiredReady` of the GitRepo's resource counts, as the dashboard shows it.
pub fn ready_of_desired(repo: &Value) -> String {
    let c = &repo["status"]["resourceCounts"];
    format!(
        "{}/{}",
        c["ready"].as_i64().unwrap_or(-1),
        c["desiredReady"].as_i64().unwrap_or(-1)
    )
}

pub fn missing(repo: &Value) -> i64 {
    repo["status"]["resourceCounts"]["missing"]
        .as_i64()
        .unwrap_or(0)
}

/// A GitRepo `fleet-local/many` with one BundleDeployment `many-config` deploying `n`
/// ConfigMaps `cm-000`… in `default`, all Ready; the GitRepo status as Fleet computes it.
pub fn seed_many(double: &ApiDouble, n: usize) {
    let set_id = "default-many-config";
    let hash = fleet_delete_guard::fleet::object_set_hash(set_id);
    let names: Vec<String> = (0..n).map(|i| format!("cm-{i:03}")).collect();
    for name in &names {
        double
            .seed(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {
                    "name": name, "namespace": "default",
                    "uid": format!("00000000-0000-0000-0000-{:012}", name.trim_start_matches("cm-").parse::<u64>().unwrap_or(0)),
                    "creationTimestamp": "2026-08-20T09:01:12Z",
                    "labels": {"objectset.rio.cattle.io/hash": hash, "app.kubernetes.io/managed-by": "Helm"},
                    "annotations": {"objectset.rio.cattle.io/id": set_id, "meta.helm.sh/release-name": "many-config", "meta.helm.sh/release-namespace": "default"}
                },
                "data": {"n": name}
            }))
            .expect("seed cm");
    }
    let resources: Vec<Value> = names
        .iter()
        .map(|n| json!({"kind": "ConfigMap", "apiVersion": "v1", "namespace": "default", "name": n, "createdAt": "2026-08-20T09:01:12Z"}))
        .collect();
    let template = fixture_json("bundledeployments-lots.json")["items"][0].clone();
    let mut bd = template;
    bd["metadata"] = json!({
        "name": "many-config", "namespace": BD_NAMESPACE, "uid": "11111111-2222-3333-4444-555555555555",
        "creationTimestamp": "2026-08-20T09:01:05Z",
        "labels": {
            "fleet.cattle.io/bundle-name": "many-config", "fleet.cattle.io/bundle-namespace": "fleet-local",
            "fleet.cattle.io/cluster": "local", "fleet.cattle.io/cluster-namespace": "fleet-local",
            "fleet.cattle.io/managed": "true", "fleet.cattle.io/repo-name": "many"
        }
    });
    bd["status"]["resources"] = Value::Array(resources);
    bd["status"]["resourceCounts"] = json!({"ready": n, "desiredReady": n, "waitApplied": 0, "modified": 0, "orphaned": 0, "missing": 0, "unknown": 0, "notReady": 0});
    bd["status"]["release"] = "default/many-config:1".into();
    let typed = BundleDeployment::from_value(&bd).expect("typed bd");
    double.seed(bd).expect("seed bd");
    let mut repo = fixture_json("gitrepo-lots.json");
    repo["metadata"]["name"] = "many".into();
    repo["metadata"]["uid"] = "66666666-7777-8888-9999-000000000000".into();
    let status = GitRepoStatus::from_value(&Value::Null).expect("empty status");
    let status = gitrepo_status_from_bundle_deployments(&status, &[typed], "2026-08-20T09:01:20Z");
    repo["status"] = status.to_value().expect("status");
    double.seed(repo).expect("seed repo");
}

/// The review of deleting `cm-NNN` of [`seed_many`].
pub fn many_review(double: &ApiDouble, name: &str, uid: &str) -> Value {
    delete_review(double, name, "alice", uid)
}

/// A GitRepo `fleet-local/{repo}` with one BundleDeployment `{repo}-config` deploying
/// `n` ConfigMaps `{repo}-0000`… spread over `namespaces` (in turn), all Ready; the
/// GitRepo status as Fleet computes it. Returns each ConfigMap's `(namespace, name)`.
pub fn seed_owner(
    double: &ApiDouble,
    repo: &str,
    n: usize,
    namespaces: &[&str],
) -> Vec<(String, String)> {
    let bundle = format!("{repo}-config");
    let set_id = format!("default-{bundle}");
    let hash = fleet_delete_guard::fleet::object_set_hash(&set_id);
    let objects: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                namespaces[i % namespaces.len().max(1)].to_string(),
                format!("{repo}-{i:04}"),
            )
        })
        .collect();
    for (namespace, name) in &objects {
        double
            .seed(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {
                    "name": name, "namespace": namespace,
                    "creationTimestamp": "2026-08-20T09:01:12Z",
                    "labels": {"objectset.rio.cattle.io/hash": hash, "app.kubernetes.io/managed-by": "Helm"},
                    "annotations": {"objectset.rio.cattle.io/id": set_id, "meta.helm.sh/release-name": bundle, "meta.helm.sh/release-namespace": "default"}
                },
                "data": {"n": name}
            }))
            .expect("seed cm");
    }
    let resources: Vec<Value> = objects
        .iter()
        .map(|(ns, n)| json!({"kind": "ConfigMap", "apiVersion": "v1", "namespace": ns, "name": n, "createdAt": "2026-08-20T09:01:12Z"}))
        .collect();
    let mut bd = fixture_json("bundledeployments-lots.json")["items"][0].clone();
    bd["metadata"] = json!({
        "name": bundle, "namespace": BD_NAMESPACE,
        "creationTimestamp": "2026-08-20T09:01:05Z",
        "labels": {
            "fleet.cattle.io/bundle-name": bundle, "fleet.cattle.io/bundle-namespace": "fleet-local",
            "fleet.cattle.io/cluster": "local", "fleet.cattle.io/cluster-namespace": "fleet-local",
            "fleet.cattle.io/managed": "true", "fleet.cattle.io/repo-name": repo
        }
    });
    bd["status"]["resources"] = Value::Array(resources);
    bd["status"]["resourceCounts"] = json!({"ready": n, "desiredReady": n, "waitApplied": 0, "modified": 0, "orphaned": 0, "missing": 0, "unknown": 0, "notReady": 0});
    bd["status"]["release"] = format!("default/{bundle}:1").into();
    let typed = BundleDeployment::from_value(&bd).expect("typed bd");
    double.seed(bd).expect("seed bd");
    let mut gitrepo = fixture_json("gitrepo-lots.json");
    gitrepo["metadata"]["name"] = repo.into();
    gitrepo["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("uid");
    let status = GitRepoStatus::from_value(&Value::Null).expect("empty status");
    let status = gitrepo_status_from_bundle_deployments(&status, &[typed], "2026-08-20T09:01:20Z");
    gitrepo["status"] = status.to_value().expect("status");
    double.seed(gitrepo).expect("seed repo");
    objects
}
