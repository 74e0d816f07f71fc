use k8s_openapi::ByteString;
use serde_json::{json, Value};

use super::*;

fn intended() -> Intended {
    Intended::default_for(
        "fleet-delete-guard",
        "cattle-fleet-system",
        "fleet-delete-guard",
    )
    .expect("base")
}

/// The configuration as the API server would return it after install, edited by `f`.
fn observed(f: impl FnOnce(&mut Value)) -> ValidatingWebhookConfiguration {
    let mut v = serde_json::to_value(&intended().config).expect("json");
    v["metadata"]["resourceVersion"] = json!("42");
    f(&mut v);
    serde_json::from_value(v).expect("a configuration")
}

fn reasons(t: &[Tamper]) -> Vec<&'static str> {
    t.iter().map(|t| t.reason().as_str()).collect()
}

#[test]
fn the_installed_configuration_is_intact() {
    assert_eq!(compare(&intended(), Some(&observed(|_| {})), None), []);
}

#[test]
fn a_missing_or_terminating_configuration_is_deleted() {
    assert_eq!(compare(&intended(), None, None), [Tamper::Deleted]);
    let terminating =
        observed(|v| v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z"));
    assert_eq!(
        reasons(&compare(&intended(), Some(&terminating), None)),
        ["deleted"]
    );
}

#[test]
fn a_removed_or_renamed_entry_is_reported() {
    let o = observed(|v| v["webhooks"] = json!([]));
    let t = compare(&intended(), Some(&o), None);
    assert_eq!(reasons(&t), ["entry_removed"]);
    assert_eq!(
        t[0].to_string(),
        "webhook delete-guard.fleet.cattle.io was removed"
    );
    let o = observed(|v| v["webhooks"][0]["name"] = json!("other.example.com"));
    assert_eq!(
        reasons(&compare(&intended(), Some(&o), None)),
        ["entry_removed"]
    );
}

#[test]
fn an_entry_pointed_elsewhere_is_reported() {
    let o = observed(|v| v["webhooks"][0]["clientConfig"]["service"]["name"] = json!("decoy"));
    let t = compare(&intended(), Some(&o), None);
    assert_eq!(reasons(&t), ["client_config_changed"]);
    assert!(
        t[0].to_string()
            .contains("service cattle-fleet-system/decoy:443/validate"),
        "{}",
        t[0]
    );
    let o = observed(|v| v["webhooks"][0]["clientConfig"] = json!({"url": "https://x/validate"}));
    assert_eq!(
        reasons(&compare(&intended(), Some(&o), None)),
        ["client_config_changed"]
    );
}

#[test]
fn narrowed_rules_are_reported_widened_ones_are_not() {
    let narrowed = observed(|v| v["webhooks"][0]["rules"][0]["resources"] = json!(["configmaps"]));
    let t = compare(&intended(), Some(&narrowed), None);
    assert_eq!(reasons(&t), ["rules_narrowed"]);
    assert!(t[0].to_string().contains("DELETE */*/*"), "{}", t[0]);
    let no_delete = observed(|v| v["webhooks"][0]["rules"][0]["operations"] = json!(["CREATE"]));
    assert_eq!(
        reasons(&compare(&intended(), Some(&no_delete), None)),
        ["rules_narrowed"]
    );
    let no_rules = observed(|v| v["webhooks"][0]["rules"] = json!([]));
    assert_eq!(
        reasons(&compare(&intended(), Some(&no_rules), None)),
        ["rules_narrowed"]
    );
    let namespaced = observed(|v| v["webhooks"][0]["rules"][0]["scope"] = json!("Namespaced"));
    assert_eq!(
        reasons(&compare(&intended(), Some(&namespaced), None)),
        ["rules_narrowed"]
    );
    let exact = observed(|v| v["webhooks"][0]["matchPolicy"] = json!("Exact"));
    assert_eq!(
        reasons(&compare(&intended(), Some(&exact), None)),
        ["rules_narrowed"]
    );
    let widened = observed(|v| {
        v["webhooks"][0]["rules"][0]["operations"] = json!(["*"]);
        v["webhooks"][0]["rules"][0]["resources"] = json!(["*/*"]);
    });
    assert_eq!(compare(&intended(), Some(&widened), None), []);
}

#[test]
fn resource_patterns_match_as_kube_apiserver_matches_them() {
    assert!(covers_resource("*", "configmaps"));
    assert!(covers_resource("*/*", "pods/exec"));
    assert!(covers_resource("pods/*", "pods/exec"));
    assert!(covers_resource("*/exec", "pods/exec"));
    assert!(!covers_resource("*", "pods/exec"), "* is no subresource");
    assert!(
        !covers_resource("configmaps", "*"),
        "a wildcard needs a wildcard"
    );
    assert!(!covers_resource("pods/*", "pods"));
}

#[test]
fn failure_policy_and_timeout_changes_are_reported_with_defaults_applied() {
    let fail = observed(|v| v["webhooks"][0]["failurePolicy"] = json!("Fail"));
    let t = compare(&intended(), Some(&fail), None);
    assert_eq!(reasons(&t), ["failure_policy_changed"]);
    assert_eq!(
        t[0].to_string(),
        "webhook delete-guard.fleet.cattle.io failurePolicy is Fail, not Ignore"
    );
    let defaulted = observed(|v| {
        v["webhooks"][0]
            .as_object_mut()
            .unwrap()
            .remove("failurePolicy");
    });
    assert_eq!(
        reasons(&compare(&intended(), Some(&defaulted), None)),
        ["failure_policy_changed"]
    );
    let slow = observed(|v| {
        v["webhooks"][0]
            .as_object_mut()
            .unwrap()
            .remove("timeoutSeconds");
    });
    let t = compare(&intended(), Some(&slow), None);
    assert_eq!(reasons(&t), ["timeout_changed"]);
    assert!(
        t[0].to_string().contains("timeoutSeconds is 10, not 5"),
        "{}",
        t[0]
    );
}

#[test]
fn match_condition_edits_name_the_conditions() {
    let never = observed(|v| {
        v["webhooks"][0]["matchConditions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "never", "expression": "false"}))
    });
    let t = compare(&intended(), Some(&never), None);
    assert_eq!(reasons(&t), ["match_conditions_changed"]);
    assert!(
        t[0].to_string().contains("added or edited: never"),
        "{}",
        t[0]
    );
    let edited =
        observed(|v| v["webhooks"][0]["matchConditions"][1]["expression"] = json!("false"));
    let t = compare(&intended(), Some(&edited), None);
    assert!(
        t[0].to_string()
            .contains("removed or edited: agent-shaped-objectset-id"),
        "{}",
        t[0]
    );
    let reflowed = observed(|v| {
        let e = v["webhooks"][0]["matchConditions"][0]["expression"]
            .as_str()
            .unwrap()
            .to_string();
        v["webhooks"][0]["matchConditions"][0]["expression"] =
            json!(format!("  {}\n", e.replace(' ', "\n  ")));
    });
    assert_eq!(
        compare(&intended(), Some(&reflowed), None),
        [],
        "whitespace is not a change"
    );
}

#[test]
fn selector_changes_are_reported_and_an_absent_selector_is_empty() {
    let o = observed(|v| {
        v["webhooks"][0]["objectSelector"] = json!({"matchLabels": {"guarded": "yes"}})
    });
    let t = compare(&intended(), Some(&o), None);
    assert_eq!(
        t,
        [Tamper::SelectorsChanged {
            webhook: "delete-guard.fleet.cattle.io".into(),
            selector: "objectSelector"
        }]
    );
    let o = observed(|v| {
        v["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]["values"] =
            json!(["cattle-fleet-system", "kube-system"])
    });
    assert_eq!(
        compare(&intended(), Some(&o), None),
        [],
        "value order is not a change"
    );
    let o = observed(|v| {
        v["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]["values"] =
            json!(["kube-system"])
    });
    assert_eq!(
        reasons(&compare(&intended(), Some(&o), None)),
        ["selectors_changed"]
    );
    let empty: Option<&LabelSelector> = None;
    assert!(same_selector(empty, Some(&LabelSelector::default())));
}

#[test]
fn the_ca_bundle_must_hold_our_current_ca() {
    crate::tls::install_crypto_provider();
    let now = jiff::Timestamp::now();
    let (ours, _) = crate::certs::new_ca(now, std::time::Duration::from_secs(86400)).expect("ca");
    let (other, _) = crate::certs::new_ca(now, std::time::Duration::from_secs(86400)).expect("ca");
    let with = |pem: &str| {
        let pem = pem.to_string();
        observed(move |v| {
            v["webhooks"][0]["clientConfig"]["caBundle"] =
                serde_json::to_value(ByteString(pem.into_bytes())).unwrap()
        })
    };
    assert_eq!(compare(&intended(), Some(&with(&ours)), Some(&ours)), []);
    let both = format!("{other}{ours}");
    assert_eq!(
        compare(&intended(), Some(&with(&both)), Some(&ours)),
        [],
        "any position"
    );
    let t = compare(&intended(), Some(&with(&other)), Some(&ours));
    assert_eq!(reasons(&t), ["ca_bundle_untrusted"]);
    let t = compare(&intended(), Some(&observed(|_| {})), Some(&ours));
    assert_eq!(reasons(&t), ["ca_bundle_untrusted"], "no caBundle");
    assert_eq!(
        compare(&intended(), Some(&with(&other)), None),
        [],
        "not ours to check"
    );
}

#[test]
fn several_changes_are_all_reported_and_reasons_have_distinct_labels() {
    let o = observed(|v| {
        v["webhooks"][0]["failurePolicy"] = json!("Fail");
        v["webhooks"][0]["rules"] = json!([]);
    });
    assert_eq!(
        reasons(&compare(&intended(), Some(&o), None)),
        ["rules_narrowed", "failure_policy_changed"]
    );
    let labels: BTreeSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(labels.len(), Reason::ALL.len());
}
