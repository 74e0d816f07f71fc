//! Realistic AdmissionReview bodies for the admission benchmarks (`benches/admission.rs`,
//! `benches/load.rs`): what kube-apiserver sends on a DELETE, with the whole old object
//! (managedFields included), as JSON bytes.
//!
//! - fast path: objects without Fleet's labels (a Deployment's Pod, a plain ConfigMap,
//!   a Helm release Secret), deleted by a user;
//! - Fleet: a ConfigMap deployed by BundleDeployment `bd-NNNNN` of GitRepo
//!   `fleet-local/repo-NNN` ([`bundle_deployment`]), deleted by a user.
#![allow(dead_code)]

use fleet_delete_guard::fleet::{object_set_hash, set_id, DEFAULT_LABEL_PREFIX};
use serde_json::{json, Value};

/// Namespace of this cluster's BundleDeployments (`fleet-local/local`).
pub const BD_NAMESPACE: &str = "cluster-fleet-local-local-1a3d67d0a899";
/// BundleDeployments per GitRepo in the seeded cluster.
pub const BDS_PER_REPO: usize = 100;

pub fn bd_name(j: usize) -> String {
    format!("bd-{j:05}")
}

pub fn cm_name(j: usize) -> String {
    format!("cm-{j:05}")
}

pub fn repo_name(j: usize) -> String {
    format!("repo-{:03}", j / BDS_PER_REPO)
}

/// The setID and hash label Fleet puts on the objects of BundleDeployment `bd-j`.
pub fn fleet_marks(j: usize) -> (String, String) {
    let id = set_id(&bd_name(j), DEFAULT_LABEL_PREFIX, "");
    let hash = object_set_hash(&id);
    (id, hash)
}

fn uid(tag: u32, i: usize) -> String {
    format!("{tag:08x}-0000-4000-8000-{i:012x}")
}

fn managed_fields(manager: &str, fields: Value) -> Value {
    json!([{
        "manager": manager, "operation": "Update", "apiVersion": "v1",
        "time": "2026-08-20T09:01:12Z", "fieldsType": "FieldsV1", "fieldsV1": fields
    }])
}

/// A running Pod of a Deployment, as stored (about 5 KB of JSON).
pub fn pod(i: usize) -> Value {
    let name = format!("web-7d9c6b5f4-{i:05}");
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "generateName": "web-7d9c6b5f4-", "namespace": "shop",
            "uid": uid(0x9001, i), "resourceVersion": "884213", "creationTimestamp": "2026-08-20T08:11:42Z",
            "labels": {"app": "web", "pod-template-hash": "7d9c6b5f4", "app.kubernetes.io/name": "web", "app.kubernetes.io/version": "2.4.1"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-08-19T12:00:00Z", "prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9c6b5f4", "uid": uid(0x9002, 0), "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": "2026-08-20T08:11:42Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}}, "f:ownerReferences": {".": {}, "k:{\"uid\":\"00009002-0000-4000-8000-000000000000\"}": {}}},
                              "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:ports": {}, "f:resources": {}, "f:livenessProbe": {}, "f:readinessProbe": {}}}, "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {}, "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}}}},
                {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2026-08-20T08:11:51Z", "fieldsType": "FieldsV1", "subresource": "status",
                 "fieldsV1": {"f:status": {"f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}}}, "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:podIP": {}, "f:podIPs": {}, "f:startTime": {}}}}
            ]
        },
        "spec": {
            "containers": [{
                "name": "web", "image": "registry.example.com/shop/web:2.4.1", "imagePullPolicy": "IfNotPresent",
                "args": ["--listen=:8080", "--metrics=:9090", "--log-format=json"],
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                        {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "web-db", "key": "url"}}},
                        {"name": "CACHE_TTL", "value": "300"}],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}, {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
                "resources": {"limits": {"memory": "512Mi"}, "requests": {"cpu": "250m", "memory": "256Mi"}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"}, "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http", "scheme": "HTTP"}, "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
                "volumeMounts": [{"name": "kube-api-access-x2x7k", "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}}
            }],
            "volumes": [{"name": "kube-api-access-x2x7k", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "web", "serviceAccount": "web", "nodeName": "worker-3",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}, "schedulerName": "default-scheduler",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "priority": 0, "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority"
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-08-20T08:11:45Z"},
                {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-08-20T08:11:42Z"},
                {"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-08-20T08:11:51Z"},
                {"type": "ContainersReady", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-08-20T08:11:51Z"},
                {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-08-20T08:11:42Z"}],
            "hostIP": "10.0.3.13", "hostIPs": [{"ip": "10.0.3.13"}], "podIP": format!("10.42.3.{}", i % 250), "podIPs": [{"ip": format!("10.42.3.{}", i % 250)}],
            "startTime": "2026-08-20T08:11:42Z",
            "containerStatuses": [{"name": "web", "state": {"running": {"startedAt": "2026-08-20T08:11:44Z"}}, "lastState": {}, "ready": true, "restartCount": 0,
                "image": "registry.example.com/shop/web:2.4.1", "imageID": "registry.example.com/shop/web@sha256:5d1b3c2a9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a392817065f4e",
                "containerID": "containerd://8c1b5f0e2d4a6c8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d4e", "started": true}],
            "qosClass": "Burstable"
        }
    })
}

/// A ConfigMap nobody manages with Fleet (about 1.5 KB).
pub fn plain_configmap(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": format!("settings-{i:05}"), "namespace": "shop", "uid": uid(0x9003, i),
            "resourceVersion": "771002", "creationTimestamp": "2026-08-18T14:02:11Z",
            "labels": {"app": "web"},
            "managedFields": managed_fields("kubectl-client-side-apply", json!({"f:data": {".": {}, "f:settings.yaml": {}}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}}))
        },
        "data": {"settings.yaml": "featureFlags:\n  newCheckout: true\n  recommendations: false\ncache:\n  ttl: 300\n  size: 10000\nlimits:\n  requestsPerMinute: 6000\n  burst: 200\nupstreams:\n  payments: https://payments.shop.svc:8443\n  inventory: https://inventory.shop.svc:8443\n  search: https://search.shop.svc:8443\nlogging:\n  level: info\n  format: json\n".repeat(3)}
    })
}

/// A Helm release Secret (about 12 KB: the release is gzip+base64 in `data.release`).
pub fn helm_secret(i: usize) -> Value {
    let release: String = (0..12_000)
        .map(|k| {
            let c = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                [(k * 7 + k / 13 + i) % 64];
            c as char
        })
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
        "metadata": {
            "name": format!("sh.helm.release.v1.shop.v{}", i % 40 + 1), "namespace": "shop", "uid": uid(0x9004, i),
            "resourceVersion": "660130", "creationTimestamp": "2026-08-17T10:00:00Z",
            "labels": {"name": "shop", "owner": "helm", "status": "superseded", "version": format!("{}", i % 40 + 1)},
            "managedFields": managed_fields("helm", json!({"f:data": {".": {}, "f:release": {}}, "f:metadata": {"f:labels": {".": {}, "f:name": {}, "f:owner": {}, "f:status": {}, "f:version": {}}}, "f:type": {}}))
        },
        "data": {"release": release}
    })
}

/// ConfigMap `cm-j` deployed by BundleDeployment `bd-j` (about 2 KB), as Fleet labels it.
pub fn fleet_configmap(j: usize) -> Value {
    let (id, hash) = fleet_marks(j);
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": cm_name(j), "namespace": "default", "uid": uid(0x9005, j),
            "resourceVersion": "5005", "creationTimestamp": "2026-08-20T09:01:12Z",
            "labels": {"app.kubernetes.io/managed-by": "Helm", "objectset.rio.cattle.io/hash": hash},
            "annotations": {"meta.helm.sh/release-name": bd_name(j), "meta.helm.sh/release-namespace": "default", "objectset.rio.cattle.io/id": id},
            "managedFields": managed_fields("fleetagent", json!({"f:data": {".": {}, "f:app.properties": {}}, "f:metadata": {"f:annotations": {".": {}, "f:meta.helm.sh/release-name": {}, "f:meta.helm.sh/release-namespace": {}, "f:objectset.rio.cattle.io/id": {}}, "f:labels": {".": {}, "f:app.kubernetes.io/managed-by": {}, "f:objectset.rio.cattle.io/hash": {}}}}))
        },
        "data": {"app.properties": "server.port=8080\nserver.shutdown=graceful\nspring.datasource.url=jdbc:postgresql://db:5432/app\nspring.jpa.open-in-view=false\nmanagement.endpoints.web.exposure.include=health,info,prometheus\n".repeat(6)}
    })
}

/// The DELETE review of `object` by `user`, as kube-apiserver sends it.
pub fn delete_review(
    uid_tag: u32,
    i: usize,
    object: Value,
    resource: &str,
    user: &str,
    groups: &[&str],
    dry_run: bool,
) -> Value {
    let kind = object["kind"].clone();
    let name = object["metadata"]["name"].clone();
    let namespace = object["metadata"]["namespace"].clone();
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid(uid_tag, i),
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": resource},
            "requestKind": {"group": "", "version": "v1", "kind": kind},
            "requestResource": {"group": "", "version": "v1", "resource": resource},
            "name": name, "namespace": namespace, "operation": "DELETE",
            "userInfo": {"username": user, "uid": "7b0c7a3e-1f0e-4a8b-9f3e-2d1c0b9a8f7e", "groups": groups},
            "object": null,
            "oldObject": object,
            "dryRun": dry_run,
            "options": {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "propagationPolicy": "Background"}
        }
    })
}

const USER_GROUPS: &[&str] = &["developers", "system:authenticated"];

/// Review `i` of the fast path: 6 Pods, 3 ConfigMaps, 1 Secret in 10, none Fleet's.
pub fn fast_review(i: usize) -> Value {
    let (object, resource) = match i % 10 {
        0..=5 => (pod(i), "pods"),
        6..=8 => (plain_configmap(i), "configmaps"),
        _ => (helm_secret(i), "secrets"),
    };
    delete_review(0xfa57, i, object, resource, "alice", USER_GROUPS, false)
}

/// Review `i` of a user deleting the ConfigMap of BundleDeployment `bd-j`.
pub fn fleet_review(i: usize, j: usize, dry_run: bool) -> Value {
    delete_review(
        0xf1ee,
        i,
        fleet_configmap(j),
        "configmaps",
        "alice",
        USER_GROUPS,
        dry_run,
    )
}

/// BundleDeployment `bd-j` of GitRepo `fleet-local/repo-NNN`, deploying ConfigMap `cm-j`,
/// shaped like Fleet's (about 2.5 KB).
pub fn bundle_deployment(j: usize) -> Value {
    let name = bd_name(j);
    json!({
        "apiVersion": "fleet.cattle.io/v1alpha1", "kind": "BundleDeployment",
        "metadata": {
            "name": name, "namespace": BD_NAMESPACE, "uid": uid(0xbd, j), "generation": 1,
            "creationTimestamp": "2026-08-20T09:01:05Z",
            "finalizers": ["fleet.cattle.io/bundle-deployment-finalizer"],
            "labels": {
                "fleet.cattle.io/bundle-name": name, "fleet.cattle.io/bundle-namespace": "fleet-local",
                "fleet.cattle.io/cluster": "local", "fleet.cattle.io/cluster-namespace": "fleet-local",
                "fleet.cattle.io/commit": "8b1f0c2e4d6a3f5b7c9e1d2a4b6c8e0f1a3b5c7d",
                "fleet.cattle.io/managed": "true", "fleet.cattle.io/repo-name": repo_name(j)
            }
        },
        "spec": {
            "stagedOptions": {"correctDrift": {}},
            "stagedDeploymentID": "s-810c7ca698bc36ef9b5240998d6fa0b41b6e48f417bcc6f6e0c1b39fc520b:ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356",
            "options": {"correctDrift": {}},
            "deploymentID": "s-810c7ca698bc36ef9b5240998d6fa0b41b6e48f417bcc6f6e0c1b39fc520b:ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356",
            "correctDrift": {}
        },
        "status": {
            "conditions": [
                {"type": "Installed", "status": "True", "lastUpdateTime": "2026-08-20T09:01:20Z"},
                {"type": "Deployed", "status": "True", "lastUpdateTime": "2026-08-20T09:01:20Z"},
                {"type": "Ready", "status": "True", "lastUpdateTime": "2026-08-20T09:01:20Z"},
                {"type": "Monitored", "status": "True", "lastUpdateTime": "2026-08-20T09:01:20Z"}
            ],
            "appliedDeploymentID": "s-810c7ca698bc36ef9b5240998d6fa0b41b6e48f417bcc6f6e0c1b39fc520b:ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356",
            "release": format!("default/{name}:1"), "ready": true, "nonModified": true,
            "display": {"deployed": "True", "monitored": "True", "state": "Ready"},
            "syncGeneration": 0,
            "resources": [{"kind": "ConfigMap", "apiVersion": "v1", "namespace": "default", "name": cm_name(j), "createdAt": "2026-08-20T09:01:12Z"}],
            "resourceCounts": {"ready": 1, "desiredReady": 1, "waitApplied": 0, "modified": 0, "orphaned": 0, "missing": 0, "unknown": 0, "notReady": 0}
        }
    })
}

/// GitRepo `fleet-local/repo-NNN` (metadata and a small status).
pub fn gitrepo(r: usize) -> Value {
    json!({
        "apiVersion": "fleet.cattle.io/v1alpha1", "kind": "GitRepo",
        "metadata": {"name": format!("repo-{r:03}"), "namespace": "fleet-local", "uid": uid(0x617, r), "generation": 1,
                     "creationTimestamp": "2026-08-20T09:00:00Z", "finalizers": ["fleet.cattle.io/gitrepo-finalizer"]},
        "spec": {"repo": "https://git.example.com/platform/fleet-examples", "branch": "main", "paths": [format!("apps/{r:03}")]},
        "status": {"display": {"readyBundleDeployments": "100/100"}, "resourceCounts": {"ready": 100, "desiredReady": 100, "missing": 0}}
    })
}

/// Bodies as bytes.
/// The cluster the benches seed: `n` BundleDeployments in GitRepos of
/// [`BDS_PER_REPO`], the GitRepos, and the ConfigMap each BundleDeployment deploys.
pub fn cluster(n: usize) -> impl Iterator<Item = Value> {
    (0..n.div_ceil(BDS_PER_REPO))
        .map(gitrepo)
        .chain((0..n).flat_map(|j| [bundle_deployment(j), fleet_configmap(j)]))
}

pub fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("review serialises")
}
