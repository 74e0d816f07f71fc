//! deploy/ as `kubectl kustomize` renders it: every object parses into its k8s-openapi
//! type with no unknown field, and the install has the properties docs/src/install.md
//! and docs/src/rbac.md promise (webhook registration, hardening, least-privilege RBAC,
//! cert-manager overlay).
//! That the RBAC is *enough* is proven by tests/e2e_kubectl.rs, which runs the real
//! binary against an API double enforcing these rules.

#[path = "support/kubectl.rs"]
mod kubectl;

use std::collections::{BTreeMap, BTreeSet};

use clap::CommandFactory;
use fleet_delete_guard::{
    auditlog::DEFAULT_WEBHOOK_NAME, cli::Cli, policy::DEFAULT_FLEET_IDENTITIES,
};
use k8s_openapi::api::{
    admissionregistration::v1::ValidatingWebhookConfiguration,
    apps::v1::Deployment,
    core::v1::{Secret, Service, ServiceAccount, Volume},
    policy::v1::PodDisruptionBudget,
    rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding},
};
use serde::de::DeserializeOwned;
use serde_json::Value;

const NAMESPACE: &str = "cattle-fleet-system";

fn render(sub: &str) -> Option<Vec<Value>> {
    let k = kubectl::require(&format!("manifests ({sub})"))?;
    Some(kubectl::render(&k, sub))
}

/// Paths present in `original` but not in `roundtrip` (fields the type does not know)
/// or with another value.
fn lost_fields(original: &Value, roundtrip: &Value, path: &str, out: &mut Vec<String>) {
    match (original, roundtrip) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(w) => lost_fields(v, w, &p, out),
                    None if v.is_null() => {}
                    None => out.push(format!("{p} (unknown field)")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                lost_fields(v, w, &format!("{path}[{i}]"), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: {a} became {b}")),
    }
}

fn strictly<T: DeserializeOwned + serde::Serialize>(obj: &Value) -> T {
    let typed: T =
        serde_json::from_value(obj.clone()).unwrap_or_else(|e| panic!("{}: {e}", describe(obj)));
    let back = serde_json::to_value(&typed).expect("serialize");
    let mut lost = Vec::new();
    lost_fields(obj, &back, "", &mut lost);
    assert!(lost.is_empty(), "{}: {lost:#?}", describe(obj));
    typed
}

fn describe(obj: &Value) -> String {
    format!(
        "{} {}/{}",
        obj["kind"].as_str().unwrap_or("?"),
        obj["metadata"]["namespace"].as_str().unwrap_or(""),
        obj["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// cert-manager kinds have no k8s-openapi type: check their fields against the
/// cert-manager v1 API.
fn cert_manager_fields(obj: &Value) {
    let allowed: &[(&str, &[&str])] = match obj["kind"].as_str() {
        Some("Issuer") => &[
            ("spec", &["selfSigned", "ca"]),
            ("spec.ca", &["secretName"]),
        ],
        Some("Certificate") => &[
            (
                "spec",
                &[
                    "isCA",
                    "commonName",
                    "secretName",
                    "duration",
                    "renewBefore",
                    "privateKey",
                    "issuerRef",
                    "dnsNames",
                    "usages",
                ],
            ),
            (
                "spec.privateKey",
                &["algorithm", "size", "rotationPolicy", "encoding"],
            ),
            ("spec.issuerRef", &["name", "kind", "group"]),
        ],
        other => panic!("unexpected cert-manager kind {other:?}"),
    };
    assert_eq!(obj["apiVersion"], "cert-manager.io/v1", "{}", describe(obj));
    for (path, keys) in allowed {
        let v = path.split('.').fold(obj, |v, k| &v[k]);
        for k in v.as_object().into_iter().flatten().map(|(k, _)| k) {
            assert!(
                keys.contains(&k.as_str()),
                "{}: unknown field {path}.{k}",
                describe(obj)
            );
        }
    }
}

/// Every object parsed into its type; returns them by kind.
fn parse_all(objects: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut by_kind: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for obj in objects {
        match obj["kind"].as_str().unwrap_or("") {
            "ServiceAccount" => drop(strictly::<ServiceAccount>(obj)),
            "Secret" => drop(strictly::<Secret>(obj)),
            "ClusterRole" => drop(strictly::<ClusterRole>(obj)),
            "ClusterRoleBinding" => drop(strictly::<ClusterRoleBinding>(obj)),
            "Role" => drop(strictly::<Role>(obj)),
            "RoleBinding" => drop(strictly::<RoleBinding>(obj)),
            "Service" => drop(strictly::<Service>(obj)),
            "Deployment" => drop(strictly::<Deployment>(obj)),
            "PodDisruptionBudget" => drop(strictly::<PodDisruptionBudget>(obj)),
            "ValidatingWebhookConfiguration" => {
                drop(strictly::<ValidatingWebhookConfiguration>(obj))
            }
            "Issuer" | "Certificate" => cert_manager_fields(obj),
            other => panic!("unexpected kind {other} in deploy/"),
        }
        let ns = obj["metadata"]["namespace"].as_str();
        let cluster_scoped = matches!(
            obj["kind"].as_str(),
            Some("ClusterRole" | "ClusterRoleBinding" | "ValidatingWebhookConfiguration")
        );
        // The one exception: the downstream webhook's Role in the management cluster
        // lives in that cluster's BundleDeployment namespace (`cluster-…`).
        let downstream_role = matches!(obj["kind"].as_str(), Some("Role" | "RoleBinding"))
            && obj["metadata"]["name"] == "fleet-delete-guard-downstream"
            && ns.is_some_and(|ns| ns.starts_with("cluster-"));
        if !downstream_role {
            assert_eq!(
                ns,
                (!cluster_scoped).then_some(NAMESPACE),
                "{}",
                describe(obj)
            );
        }
        by_kind
            .entry(obj["kind"].as_str().unwrap_or("").to_string())
            .or_default()
            .push(obj.clone());
    }
    by_kind
}

/// The pod volume of the first container's mount under which `path` lies.
fn volume_holding(d: Deployment, path: &str, what: &str) -> Volume {
    let pod = d.spec.and_then(|s| s.template.spec).expect("pod");
    let mount = pod.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| path.starts_with(&m.mount_path))
        .unwrap_or_else(|| panic!("{what}"))
        .clone();
    pod.volumes
        .into_iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .expect("volume")
}

fn one<T: DeserializeOwned>(by_kind: &BTreeMap<String, Vec<Value>>, kind: &str) -> T {
    let list = by_kind.get(kind).unwrap_or_else(|| panic!("no {kind}"));
    assert_eq!(list.len(), 1, "one {kind}");
    serde_json::from_value(list[0].clone()).expect("typed")
}

fn env_of(d: &Deployment) -> BTreeMap<String, String> {
    let c = &d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
        .containers[0];
    c.env
        .iter()
        .flatten()
        .map(|e| {
            (
                e.name.clone(),
                e.value.clone().unwrap_or_else(|| "<from>".into()),
            )
        })
        .collect()
}

#[test]
fn the_default_install_renders_into_valid_objects() {
    let Some(objects) = render("") else { return };
    let by_kind = parse_all(&objects);
    let counts: BTreeMap<&str, usize> =
        by_kind.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
    assert_eq!(
        counts,
        BTreeMap::from([
            ("ClusterRole", 3),
            ("ClusterRoleBinding", 3),
            ("Deployment", 1),
            ("PodDisruptionBudget", 1),
            ("Role", 3),
            ("RoleBinding", 3),
            ("Service", 1),
            ("ServiceAccount", 1),
            ("ValidatingWebhookConfiguration", 1),
        ]),
        "no Namespace: cattle-fleet-system is Fleet's, and `kubectl delete -k` must never remove it"
    );
}

#[test]
fn the_webhook_is_registered_to_never_block_the_cluster() {
    let Some(objects) = render("") else { return };
    let by_kind = parse_all(&objects);
    let vwc: ValidatingWebhookConfiguration = one(&by_kind, "ValidatingWebhookConfiguration");
    let webhooks = vwc.webhooks.clone().unwrap_or_default();
    assert_eq!(webhooks.len(), 1);
    let w = &webhooks[0];
    assert_eq!(
        w.name, DEFAULT_WEBHOOK_NAME,
        "the audit subcommand's default prefix"
    );
    assert_eq!(w.admission_review_versions, vec!["v1".to_string()]);
    assert_eq!(w.failure_policy.as_deref(), Some("Ignore"));
    assert_eq!(w.side_effects, "NoneOnDryRun");
    let timeout = w.timeout_seconds.expect("timeoutSeconds");
    assert!((1..=5).contains(&timeout), "timeoutSeconds {timeout}");
    // The server answers within --request-timeout, which must stay below timeoutSeconds.
    let cli =
        <Cli as clap::Parser>::try_parse_from(["fleet-delete-guard", "serve"]).expect("defaults");
    let fleet_delete_guard::cli::Command::Serve(serve) = cli.command else {
        panic!("serve")
    };
    assert!(serve.request_timeout.as_secs_f64() < f64::from(timeout));

    let rules = w.rules.clone().unwrap_or_default();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0].operations,
        Some(vec!["DELETE".to_string()]),
        "DELETE only"
    );
    assert_eq!(rules[0].resources, Some(vec!["*".to_string()]));

    let object_selector = serde_json::to_value(&w.object_selector).expect("json");
    assert_eq!(
        object_selector,
        serde_json::json!({"matchExpressions": [{"key": "objectset.rio.cattle.io/hash", "operator": "Exists"}]})
    );
    let ns_selector = serde_json::to_value(&w.namespace_selector).expect("json");
    let excluded = &ns_selector["matchExpressions"][0];
    assert_eq!(excluded["key"], "kubernetes.io/metadata.name");
    assert_eq!(excluded["operator"], "NotIn");
    let values: BTreeSet<&str> = excluded["values"]
        .as_array()
        .expect("values")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(values, BTreeSet::from(["kube-system", NAMESPACE]));

    // matchConditions skip exactly the identities the server treats as Fleet's own.
    // A second one sends only objects whose objectset id has the agent's shape
    // (tests/e2e_kubectl.rs proves both through the double's CEL).
    let conditions = w.match_conditions.clone().unwrap_or_default();
    assert_eq!(conditions.len(), 2);
    assert_eq!(conditions[1].name, "agent-shaped-objectset-id");
    for needle in [
        "'objectset.rio.cattle.io/id'",
        "startsWith('default-')",
        "startsWith('fleet-agent-bootstrap')",
    ] {
        assert!(conditions[1].expression.contains(needle), "{needle}");
    }
    for id in DEFAULT_FLEET_IDENTITIES {
        assert!(
            conditions[0].expression.contains(&format!("\"{id}\"")),
            "{} misses {id}",
            conditions[0].expression
        );
    }

    // The webhook calls our Service on 443, which leads to the container's 9443.
    let svc_ref = w.client_config.service.clone().expect("service reference");
    assert_eq!(
        (svc_ref.namespace.as_str(), svc_ref.name.as_str()),
        (NAMESPACE, "fleet-delete-guard")
    );
    assert_eq!(svc_ref.path.as_deref(), Some("/validate"));
    assert_eq!(svc_ref.port, Some(443));
    assert!(
        w.client_config.ca_bundle.is_none(),
        "the caBundle is written at run time"
    );
    let service: Service = one(&by_kind, "Service");
    assert_eq!(
        service.metadata.name.as_deref(),
        Some(svc_ref.name.as_str())
    );
    let port = &service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .expect("ports")[0];
    assert_eq!(port.port, 443);
    let target = serde_json::to_value(&port.target_port).expect("json");
    let deployment: Deployment = one(&by_kind, "Deployment");
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("pod");
    let container_port = pod.containers[0]
        .ports
        .iter()
        .flatten()
        .find(|p| Some(p.name.as_deref().unwrap_or("")) == target.as_str())
        .expect("the Service's targetPort names a container port");
    assert_eq!(container_port.container_port, 9443);
    let selector = service
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .expect("selector");
    let pod_labels = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.clone())
        .and_then(|m| m.labels)
        .expect("labels");
    assert!(
        selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "the Service selects the pods"
    );
}

#[test]
fn the_deployment_is_hardened_and_configured_with_real_flags() {
    let Some(objects) = render("") else { return };
    let by_kind = parse_all(&objects);
    let d: Deployment = one(&by_kind, "Deployment");
    let spec = d.spec.clone().expect("spec");
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.clone().expect("pod");
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("fleet-delete-guard")
    );
    let psc = pod.security_context.clone().expect("pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.seccomp_profile.map(|p| p.type_),
        Some("RuntimeDefault".into())
    );
    let spread = pod.topology_spread_constraints.clone().unwrap_or_default();
    assert!(
        spread
            .iter()
            .any(|t| t.topology_key == "kubernetes.io/hostname"),
        "spread over nodes"
    );
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    let sc = c
        .security_context
        .clone()
        .expect("container securityContext");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(
        sc.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_string()])
    );
    assert_eq!(
        sc.seccomp_profile.map(|p| p.type_),
        Some("RuntimeDefault".into())
    );
    let resources = c.resources.clone().expect("resources");
    for key in ["cpu", "memory"] {
        assert!(
            resources
                .requests
                .as_ref()
                .is_some_and(|r| r.contains_key(key)),
            "request {key}"
        );
        assert!(
            resources
                .limits
                .as_ref()
                .is_some_and(|r| r.contains_key(key)),
            "limit {key}"
        );
    }
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref().and_then(|p| p.http_get.as_ref()).map(|h| {
            (
                h.path.clone().unwrap_or_default(),
                serde_json::to_value(&h.port).expect("port"),
            )
        })
    };
    assert_eq!(
        probe_path(&c.liveness_probe),
        Some(("/healthz".into(), "metrics".into()))
    );
    assert_eq!(
        probe_path(&c.readiness_probe),
        Some(("/readyz".into(), "metrics".into()))
    );
    let metrics = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .expect("metrics port");
    assert_eq!(metrics.container_port, 8080);
    // Every FLEET_DELETE_GUARD_* variable is one `serve` reads (a typo would be ignored).
    let serve = Cli::command()
        .find_subcommand("serve")
        .expect("serve")
        .clone();
    let known: BTreeSet<String> = serve
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    let env = env_of(&d);
    for name in env.keys() {
        assert!(
            known.contains(name) || name == "POD_NAME",
            "{name} is not a serve flag's variable"
        );
    }
    // The writable paths are volumes.
    let mounts: BTreeSet<String> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.clone())
        .collect();
    assert!(
        mounts.contains(&env["FLEET_DELETE_GUARD_CERT_DIR"]),
        "the certificate directory is a volume"
    );
    assert!(mounts.contains("/tmp"));

    let pdb: PodDisruptionBudget = one(&by_kind, "PodDisruptionBudget");
    let pdb_spec = pdb.spec.expect("pdb spec");
    assert!(pdb_spec.min_available.is_some() || pdb_spec.max_unavailable.is_some());
    let pod_labels = spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .expect("labels");
    let pdb_selects = pdb_spec
        .selector
        .and_then(|s| s.match_labels)
        .expect("pdb selector");
    assert!(
        pdb_selects
            .iter()
            .all(|(k, v)| pod_labels.get(k) == Some(v)),
        "the PDB covers the pods"
    );
}

fn rules(by_kind: &BTreeMap<String, Vec<Value>>, kind: &str) -> BTreeMap<String, Vec<PolicyRule>> {
    by_kind
        .get(kind)
        .into_iter()
        .flatten()
        .map(|o| {
            let name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
            let rules: Vec<PolicyRule> = serde_json::from_value(o["rules"].clone()).expect("rules");
            (name, rules)
        })
        .collect()
}

#[test]
fn rbac_is_least_privilege_and_matches_the_configuration() {
    let Some(objects) = render("") else { return };
    let by_kind = parse_all(&objects);
    let d: Deployment = one(&by_kind, "Deployment");
    let env = env_of(&d);
    let cluster_roles = rules(&by_kind, "ClusterRole");
    let roles = rules(&by_kind, "Role");

    for (name, rs) in cluster_roles.iter().chain(roles.iter()) {
        for r in rs {
            let text = format!("{name}: {r:?}");
            assert!(
                !r.verbs.iter().any(|v| v == "*"),
                "no verb wildcard: {text}"
            );
            assert!(
                !r.resources.iter().flatten().any(|v| v.contains('*')),
                "no resource wildcard: {text}"
            );
            assert!(
                !r.api_groups.iter().flatten().any(|v| v == "*"),
                "no group wildcard: {text}"
            );
            assert!(
                !r.verbs.iter().any(|v| matches!(
                    v.as_str(),
                    "delete" | "deletecollection" | "escalate" | "bind" | "impersonate"
                )),
                "never destructive or escalating: {text}"
            );
        }
    }
    // Cluster-wide: nothing on Secrets, and writes only to statuses, Events and our own webhook.
    for (name, rs) in &cluster_roles {
        for r in rs {
            let resources = r.resources.clone().unwrap_or_default();
            assert!(
                !resources.iter().any(|x| x == "secrets"),
                "{name}: no cluster-wide Secret access"
            );
            let writes = r
                .verbs
                .iter()
                .any(|v| matches!(v.as_str(), "create" | "update" | "patch"));
            if writes {
                let ok = resources.iter().all(|x| {
                    x.ends_with("/status")
                        || x == "events"
                        || x == "validatingwebhookconfigurations"
                });
                assert!(ok, "{name}: writes {resources:?}");
            }
            if resources
                .iter()
                .any(|x| x == "validatingwebhookconfigurations")
            {
                assert_eq!(
                    r.resource_names.clone().unwrap_or_default(),
                    vec![env["FLEET_DELETE_GUARD_WEBHOOK_CONFIG"].clone()],
                    "only its own webhook configuration"
                );
            }
        }
    }
    let vwc: ValidatingWebhookConfiguration = one(&by_kind, "ValidatingWebhookConfiguration");
    assert_eq!(
        vwc.metadata.name.as_deref(),
        Some(env["FLEET_DELETE_GUARD_WEBHOOK_CONFIG"].as_str())
    );
    // The certificate Role: create (cannot be named), and get/update of its own Secret only.
    let certs = &roles["fleet-delete-guard-certs"];
    for r in certs {
        if r.verbs.iter().any(|v| v != "create") {
            assert_eq!(
                r.resource_names.clone().unwrap_or_default(),
                vec![env["FLEET_DELETE_GUARD_CERT_SECRET"].clone()]
            );
        }
    }
    // The breaker's Role: Leases in its own namespace; create, list, watch, and patch of
    // the counts Lease only (only an operator closes a breaker, by deleting its Lease).
    let breaker = &roles["fleet-delete-guard-breaker"];
    assert_eq!(breaker.len(), 2);
    for rule in breaker {
        assert_eq!(
            rule.api_groups.clone().unwrap_or_default(),
            ["coordination.k8s.io"]
        );
        assert_eq!(rule.resources.clone().unwrap_or_default(), ["leases"]);
    }
    let verbs: BTreeSet<&str> = breaker[0].verbs.iter().map(String::as_str).collect();
    assert_eq!(verbs, BTreeSet::from(["create", "list", "watch"]));
    assert_eq!(breaker[0].resource_names, None);
    assert_eq!(breaker[1].verbs, ["patch"]);
    assert_eq!(
        breaker[1].resource_names.clone().unwrap_or_default(),
        [fleet_delete_guard::breaker::counts::COUNTS_LEASE]
    );
    let role = by_kind["Role"]
        .iter()
        .find(|r| r["metadata"]["name"] == "fleet-delete-guard-breaker")
        .expect("breaker role");
    assert_eq!(role["metadata"]["namespace"], NAMESPACE);
    // Every role is bound to the webhook's ServiceAccount, and only to it.
    let sa: ServiceAccount = one(&by_kind, "ServiceAccount");
    let bound: BTreeSet<String> = ["ClusterRoleBinding", "RoleBinding"]
        .iter()
        .flat_map(|k| by_kind.get(*k).into_iter().flatten())
        .map(|b| {
            let subjects = b["subjects"].as_array().expect("subjects");
            assert_eq!(subjects.len(), 1, "{}", describe(b));
            assert_eq!(subjects[0]["kind"], "ServiceAccount");
            assert_eq!(subjects[0]["name"].as_str(), sa.metadata.name.as_deref());
            assert_eq!(subjects[0]["namespace"], NAMESPACE);
            b["roleRef"]["name"].as_str().unwrap_or("").to_string()
        })
        .collect();
    let defined: BTreeSet<String> = cluster_roles.keys().chain(roles.keys()).cloned().collect();
    assert_eq!(bound, defined);
}

#[test]
fn the_cert_manager_overlay_swaps_the_bootstrap_for_cert_manager() {
    let Some(objects) = render("cert-manager") else {
        return;
    };
    let by_kind = parse_all(&objects);
    // The Roles that stay: Fleet's version and the breaker's Leases; no Secret rights.
    for kind in ["Role", "RoleBinding"] {
        let mut names: Vec<&str> = by_kind
            .get(kind)
            .map(|v| {
                v.iter()
                    .filter_map(|o| o["metadata"]["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        assert_eq!(
            names,
            [
                "fleet-delete-guard-breaker",
                "fleet-delete-guard-fleet-version"
            ],
            "{kind}: no Secret rights"
        );
    }
    let cluster_roles = rules(&by_kind, "ClusterRole");
    // The webhook configuration: watched (read-only), never written.
    for r in &cluster_roles["fleet-delete-guard-webhook-config"] {
        if r.resources
            .iter()
            .flatten()
            .any(|x| x == "validatingwebhookconfigurations")
        {
            assert_eq!(r.verbs, ["get", "list", "watch"], "read-only");
        }
    }
    let d: Deployment = one(&by_kind, "Deployment");
    let env = env_of(&d);
    assert!(
        !env.contains_key("FLEET_DELETE_GUARD_CERT_SECRET"),
        "bootstrap off"
    );
    let cert_path = &env["FLEET_DELETE_GUARD_TLS_CERT"];
    let volume = volume_holding(d, cert_path, "the certificate files are mounted");
    let secret_name = volume
        .secret
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .expect("a Secret volume");
    assert!(volume.empty_dir.is_none());

    let certificates = &by_kind["Certificate"];
    let serving = certificates
        .iter()
        .find(|c| c["spec"]["secretName"] == secret_name.as_str())
        .expect("a Certificate writes the mounted Secret");
    let vwc: ValidatingWebhookConfiguration = one(&by_kind, "ValidatingWebhookConfiguration");
    let inject = vwc.metadata.annotations.clone().unwrap_or_default()
        ["cert-manager.io/inject-ca-from"]
        .clone();
    assert_eq!(
        inject,
        format!(
            "{NAMESPACE}/{}",
            serving["metadata"]["name"].as_str().unwrap_or("")
        )
    );
    let svc = vwc.webhooks.unwrap_or_default()[0]
        .client_config
        .service
        .clone()
        .expect("service");
    let names: Vec<&str> = serving["spec"]["dnsNames"]
        .as_array()
        .expect("dnsNames")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        names.contains(&format!("{}.{}.svc", svc.name, svc.namespace).as_str()),
        "{names:?}"
    );
    // The serving certificate's issuer is a CA Issuer (renewals keep the caBundle).
    let issuer = serving["spec"]["issuerRef"]["name"]
        .as_str()
        .expect("issuer");
    let ca_issuer = by_kind["Issuer"]
        .iter()
        .find(|i| i["metadata"]["name"] == issuer)
        .expect("issuer defined");
    assert!(ca_issuer["spec"]["ca"]["secretName"].is_string());
}

#[test]
fn fleet_can_deploy_it_as_a_bundle() {
    let text = std::fs::read_to_string(kubectl::root().join("deploy/fleet.yaml"))
        .expect("deploy/fleet.yaml");
    let docs = kubectl::parse_yaml_stream(&text);
    let fleet = &docs[0];
    assert_eq!(fleet["defaultNamespace"], NAMESPACE);
    let dir = fleet["kustomize"]["dir"].as_str().expect("kustomize.dir");
    assert!(kubectl::root()
        .join("deploy")
        .join(dir)
        .join("kustomization.yaml")
        .exists());
    let patch = &fleet["diff"]["comparePatches"][0];
    assert_eq!(patch["kind"], "ValidatingWebhookConfiguration");
    assert_eq!(patch["name"], "fleet-delete-guard");
    assert_eq!(
        patch["jsonPointers"][0],
        "/webhooks/0/clientConfig/caBundle"
    );
}

#[test]
fn the_multi_cluster_manifests_give_the_downstream_webhook_what_it_needs_and_no_more() {
    let (Some(management), Some(downstream), Some(base)) = (
        render("multi-cluster/management"),
        render("multi-cluster/downstream"),
        render(""),
    ) else {
        return;
    };
    let management = parse_all(&management);
    let downstream = parse_all(&downstream);
    let base = parse_all(&base);

    // Management cluster: a ServiceAccount with a token, allowed exactly the
    // BundleDeployment part of the base's counting role.
    let token: Secret = one(&management, "Secret");
    assert_eq!(
        token.type_.as_deref(),
        Some("kubernetes.io/service-account-token")
    );
    let sa: ServiceAccount = one(&management, "ServiceAccount");
    assert_eq!(
        token
            .metadata
            .annotations
            .unwrap_or_default()
            .get("kubernetes.io/service-account.name"),
        sa.metadata.name.as_ref()
    );
    // Namespaced: a Role in the cluster's BundleDeployment namespace, bound to the
    // ServiceAccount; nothing cluster-wide, so a compromised downstream cluster cannot
    // touch other clusters' BundleDeployments.
    assert!(
        rules(&management, "ClusterRole").is_empty()
            && !management.contains_key("ClusterRoleBinding"),
        "no cluster-wide rights in the management cluster"
    );
    let role = &management["Role"][0];
    let binding = &management["RoleBinding"][0];
    let role_ns = role["metadata"]["namespace"]
        .as_str()
        .expect("Role namespace");
    assert!(role_ns.starts_with("cluster-"), "{role_ns}");
    assert_eq!(binding["metadata"]["namespace"], role_ns);
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(
        binding["subjects"][0]["name"].as_str(),
        sa.metadata.name.as_deref()
    );
    assert_eq!(
        binding["subjects"][0]["namespace"].as_str(),
        sa.metadata.namespace.as_deref()
    );
    let remote = &rules(&management, "Role")["fleet-delete-guard-downstream"];
    let counting = &rules(&base, "ClusterRole")["fleet-delete-guard"];
    for r in remote {
        assert!(
            counting.contains(r),
            "{r:?} is not something the webhook does"
        );
        assert!(
            r.resources
                .iter()
                .flatten()
                .all(|x| x.starts_with("bundledeployments")),
            "{r:?}"
        );
    }

    // Downstream: the base without the counting role (no Fleet objects there), pointed at
    // the management cluster through a mounted kubeconfig.
    assert!(!rules(&downstream, "ClusterRole").contains_key("fleet-delete-guard"));
    let d: Deployment = one(&downstream, "Deployment");
    let env = env_of(&d);
    let kubeconfig = &env["FLEET_DELETE_GUARD_FLEET_KUBECONFIG"];
    assert!(env["FLEET_DELETE_GUARD_FLEET_CLUSTER"].contains('/'));
    let volume = volume_holding(d, kubeconfig, "the kubeconfig is mounted");
    assert!(volume.secret.is_some(), "from a Secret");
}

#[test]
fn the_monitoring_overlay_scrapes_the_metrics_port_and_ships_rules_and_the_dashboard() {
    let (Some(monitoring), Some(base)) = (render("monitoring"), render("")) else {
        return;
    };
    let kinds: BTreeSet<String> = monitoring.iter().map(describe).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ConfigMap cattle-dashboards/fleet-delete-guard-dashboard".to_string(),
            format!("PodMonitor {NAMESPACE}/fleet-delete-guard"),
            format!("PrometheusRule {NAMESPACE}/fleet-delete-guard"),
        ]),
        "only monitoring objects: it is applied next to an install, not instead"
    );
    let find = |kind: &str| {
        monitoring
            .iter()
            .find(|o| o["kind"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind}"))
    };

    // The PodMonitor selects the Deployment's pods and scrapes its plain-HTTP port.
    let monitor = find("PodMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let d: Deployment = one(&parse_all(&base), "Deployment");
    let template = d.spec.expect("spec").template;
    let pod_labels = template.metadata.and_then(|m| m.labels).unwrap_or_default();
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(pod_labels.get(k).map(String::as_str), v.as_str(), "{k}");
    }
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        serde_json::json!([NAMESPACE])
    );
    // job="fleet-delete-guard", which the alerts select on.
    let job_label = monitor["spec"]["jobLabel"].as_str().expect("jobLabel");
    assert_eq!(
        pod_labels.get(job_label).map(String::as_str),
        Some("fleet-delete-guard")
    );
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["scheme"], "http");
    let container = &template.spec.expect("pod").containers[0];
    let port = container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == endpoint["port"].as_str())
        .expect("the PodMonitor's port is a named container port");
    let metrics_listen = env_of_container(container)
        .get("FLEET_DELETE_GUARD_METRICS_LISTEN")
        .cloned()
        .unwrap_or_else(|| "0.0.0.0:8080".into());
    assert!(
        metrics_listen.ends_with(&format!(":{}", port.container_port)),
        "the metrics listener ({metrics_listen}) is the scraped port"
    );

    // The PrometheusRule's expressions use metrics the binary exports (checked in
    // tests/monitoring.rs with promtool and a real Prometheus).
    let rule = find("PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    let groups = rule["spec"]["groups"].as_array().expect("groups");
    assert!(!groups.is_empty());

    // The dashboard ConfigMap: the sidecar's label, a stable name, readable JSON.
    let cm = find("ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let json = cm["data"]["fleet-deletions.json"]
        .as_str()
        .expect("dashboard file");
    let dashboard: Value = serde_json::from_str(json).expect("dashboard JSON");
    assert_eq!(dashboard["title"], "Fleet / Deletions");
    assert_eq!(dashboard["uid"], "fleet-delete-guard-deletions");
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(
        variables.contains(&"namespace") && variables.contains(&"owner"),
        "{variables:?}"
    );
    assert!(
        json.lines().count() > 100,
        "pretty-printed, one field a line"
    );
}

fn env_of_container(c: &k8s_openapi::api::core::v1::Container) -> BTreeMap<String, String> {
    c.env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect()
}

/// The webhooks of a rendered overlay.
fn webhooks_of(
    sub: &str,
) -> Option<Vec<k8s_openapi::api::admissionregistration::v1::ValidatingWebhook>> {
    let objects = render(sub)?;
    let by_kind = parse_all(&objects);
    let vwc: ValidatingWebhookConfiguration = one(&by_kind, "ValidatingWebhookConfiguration");
    Some(vwc.webhooks.unwrap_or_default())
}

const AGENT_GROUPS: [&str; 2] = [
    "system:serviceaccounts:cattle-fleet-system",
    "system:serviceaccounts:cattle-fleet-local-system",
];

#[test]
fn the_breaker_overlay_sends_the_agents_deletions_and_changes_nothing_else() {
    let (Some(base), Some(breaker)) = (webhooks_of(""), webhooks_of("breaker")) else {
        return;
    };
    assert_eq!(breaker.len(), 1);
    let names = |w: &k8s_openapi::api::admissionregistration::v1::ValidatingWebhook| {
        w.match_conditions
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&base[0]),
        ["not-fleet-itself", "agent-shaped-objectset-id"]
    );
    assert_eq!(
        names(&breaker[0]),
        ["agent-shaped-objectset-id"],
        "the agent's deletions are sent (of Fleet's agent's objects only)"
    );
    // Everything else is the base's: Ignore, selectors, rules, timeout.
    let mut same = breaker[0].clone();
    same.match_conditions = base[0].match_conditions.clone();
    assert_eq!(same, base[0]);
    // The rest of the install is the base's.
    let (Some(a), Some(b)) = (render(""), render("breaker")) else {
        return;
    };
    let others = |v: Vec<Value>| -> Vec<Value> {
        v.into_iter()
            .filter(|o| o["kind"] != "ValidatingWebhookConfiguration")
            .filter_map(without_the_webhook_config_manifest)
            .collect()
    };
    assert_eq!(others(a), others(b));
}

/// The install without what tells the webhook its configuration as installed (an
/// overlay that changes the configuration names its compiled-in manifest).
fn without_the_webhook_config_manifest(mut o: Value) -> Option<Value> {
    if o["kind"] == "Deployment" {
        let pod = &mut o["spec"]["template"]["spec"];
        for c in pod["containers"].as_array_mut().into_iter().flatten() {
            if let Some(e) = c["env"].as_array_mut() {
                e.retain(|e| e["name"] != "FLEET_DELETE_GUARD_WEBHOOK_CONFIG_MANIFEST");
            }
        }
    }
    Some(o)
}

#[test]
fn the_fail_closed_overlay_fails_closed_only_for_the_agents_protected_kinds() {
    let (Some(breaker), Some(fail)) = (webhooks_of("breaker"), webhooks_of("breaker-fail-closed"))
    else {
        return;
    };
    assert_eq!(fail.len(), 2);
    let (main, protect) = (&fail[0], &fail[1]);
    assert_eq!(main.name, DEFAULT_WEBHOOK_NAME);
    assert_eq!(main.failure_policy.as_deref(), Some("Ignore"));
    assert_eq!(main.rules, breaker[0].rules, "everything else, as before");
    let cond = main.match_conditions.clone().unwrap_or_default();
    assert_eq!(cond.len(), 2);
    assert_eq!(cond[0].name, "agent-shaped-objectset-id");
    assert!(
        cond[1].expression.starts_with("!("),
        "{}",
        cond[1].expression
    );
    for g in AGENT_GROUPS {
        assert!(cond[1].expression.contains(g), "{}", cond[1].expression);
    }
    let protect_conditions: Vec<String> = protect
        .match_conditions
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(
        protect_conditions,
        ["agent-shaped-objectset-id", "fleet-agent-only"]
    );

    assert_eq!(protect.name, "protect.delete-guard.fleet.cattle.io");
    assert_eq!(protect.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(protect.side_effects, "NoneOnDryRun");
    assert_eq!(protect.timeout_seconds, main.timeout_seconds);
    assert_eq!(
        protect.client_config, main.client_config,
        "the same Service"
    );
    assert_eq!(protect.object_selector, main.object_selector);
    assert_eq!(protect.namespace_selector, main.namespace_selector);
    let resources: BTreeSet<String> = protect
        .rules
        .iter()
        .flatten()
        .flat_map(|r| {
            assert_eq!(r.operations, Some(vec!["DELETE".to_string()]));
            r.resources.clone().unwrap_or_default()
        })
        .collect();
    let protected: BTreeSet<String> = [
        "customresourcedefinitions",
        "namespaces",
        "persistentvolumeclaims",
    ]
    .map(String::from)
    .into();
    assert_eq!(resources, protected);
    // The main entry skips exactly these, for the agent: each deletion is reviewed once.
    for r in &protected {
        assert!(cond[1].expression.contains(&format!("\"{r}\"")), "{r}");
    }
    let only = protect.match_conditions.clone().unwrap_or_default();
    assert_eq!(only.len(), 2);
    for g in AGENT_GROUPS {
        assert!(only[1].expression.contains(g));
    }
    assert!(!only[1].expression.starts_with('!'));
}

// --- webhook configuration tamper evidence (src/webhook_config/) ---------------------

/// In every overlay that watches its configuration, the manifest the webhook compares
/// with (compiled in, or mounted and named by FLEET_DELETE_GUARD_WEBHOOK_CONFIG_MANIFEST)
/// is the configuration the overlay installs: a fresh install is intact, not "tampered".
#[test]
fn every_install_gives_the_webhook_the_configuration_it_installs() {
    use fleet_delete_guard::webhook_config::{compare, Intended};
    let mut watched = 0;
    for overlay in [
        "",
        "breaker",
        "breaker-fail-closed",
        "restore-webhook-configuration",
        "multi-cluster/downstream",
        "cert-manager",
    ] {
        let Some(objects) = render(overlay) else {
            return;
        };
        let by_kind = parse_all(&objects);
        let d: Deployment = one(&by_kind, "Deployment");
        let env = env_of(&d);
        let Some(name) = env.get("FLEET_DELETE_GUARD_WEBHOOK_CONFIG") else {
            panic!("deploy/{overlay}: the configuration is not watched");
        };
        watched += 1;
        let service = &env["FLEET_DELETE_GUARD_SERVICE_NAME"];
        let intended = match env.get("FLEET_DELETE_GUARD_WEBHOOK_CONFIG_MANIFEST") {
            None => Intended::default_for(name, NAMESPACE, service).expect("compiled-in manifest"),
            Some(m) => {
                let variant = m
                    .strip_prefix("builtin:")
                    .unwrap_or_else(|| panic!("deploy/{overlay}: a compiled-in manifest, not {m}"));
                Intended::builtin(variant, name, NAMESPACE, service).expect("compiled in")
            }
        };
        let vwc: ValidatingWebhookConfiguration = one(&by_kind, "ValidatingWebhookConfiguration");
        assert_eq!(intended.name(), name.as_str());
        assert_eq!(
            compare(&intended, Some(&vwc), None),
            [],
            "deploy/{overlay}: the webhook would report its own install as tampered"
        );
    }
    assert_eq!(watched, 6, "every install watches its configuration");
}

#[test]
fn the_webhook_watches_its_configuration_by_name_and_only_the_overlay_may_restore_it() {
    let Some(objects) = render("") else { return };
    let by_kind = parse_all(&objects);
    let env = env_of(&one::<Deployment>(&by_kind, "Deployment"));
    let name = env["FLEET_DELETE_GUARD_WEBHOOK_CONFIG"].clone();
    assert!(
        !env.contains_key("FLEET_DELETE_GUARD_RESTORE_WEBHOOK_CONFIGURATION"),
        "repair is off by default"
    );
    let vwc_rules = |roles: &BTreeMap<String, Vec<PolicyRule>>| -> Vec<(String, PolicyRule)> {
        roles
            .iter()
            .flat_map(|(n, rs)| rs.iter().map(move |r| (n.clone(), r.clone())))
            .filter(|(_, r)| {
                r.resources
                    .iter()
                    .flatten()
                    .any(|x| x == "validatingwebhookconfigurations")
            })
            .collect()
    };
    let base = vwc_rules(&rules(&by_kind, "ClusterRole"));
    let verbs: BTreeSet<&str> = base
        .iter()
        .flat_map(|(_, r)| r.verbs.iter().map(String::as_str))
        .collect();
    assert_eq!(
        verbs,
        BTreeSet::from(["get", "list", "patch", "watch"]),
        "watch, and the caBundle"
    );
    for (_, r) in &base {
        assert_eq!(
            r.resource_names.clone().unwrap_or_default(),
            [name.as_str()]
        );
    }

    let Some(objects) = render("restore-webhook-configuration") else {
        return;
    };
    let by_kind = parse_all(&objects);
    let env = env_of(&one::<Deployment>(&by_kind, "Deployment"));
    assert_eq!(
        env["FLEET_DELETE_GUARD_RESTORE_WEBHOOK_CONFIGURATION"],
        "true"
    );
    let cluster_roles = rules(&by_kind, "ClusterRole");
    let restore = &cluster_roles["fleet-delete-guard-restore-webhook-config"];
    for r in restore {
        assert_eq!(
            r.api_groups.clone().unwrap_or_default(),
            ["admissionregistration.k8s.io"]
        );
        assert_eq!(
            r.resources.clone().unwrap_or_default(),
            ["validatingwebhookconfigurations"]
        );
        match r.verbs.as_slice() {
            [v] if v == "create" => {} // cannot be limited to a name
            [v] if v == "update" => {
                assert_eq!(
                    r.resource_names.clone().unwrap_or_default(),
                    [name.as_str()]
                )
            }
            other => panic!("only create and update: {other:?}"),
        }
    }
    let binding = by_kind["ClusterRoleBinding"]
        .iter()
        .find(|b| b["roleRef"]["name"] == "fleet-delete-guard-restore-webhook-config")
        .expect("bound");
    assert_eq!(binding["subjects"][0]["name"], "fleet-delete-guard");
    assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
    // Everything else is the base's.
    let (Some(a), Some(b)) = (render(""), render("restore-webhook-configuration")) else {
        return;
    };
    let others = |v: Vec<Value>| -> Vec<Value> {
        v.into_iter()
            .filter(|o| {
                o["kind"] != "Deployment"
                    && o["metadata"]["name"] != "fleet-delete-guard-restore-webhook-config"
            })
            .collect()
    };
    assert_eq!(others(a), others(b));
}
// --- end webhook configuration tamper evidence ----------------------------------------
