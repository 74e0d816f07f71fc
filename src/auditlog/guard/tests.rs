use serde_json::{json, Value};

use super::*;

fn guard() -> GuardObjects {
    GuardObjects::new(
        "cattle-fleet-system",
        "fleet-delete-guard",
        &["fleet-delete-guard-tls".to_string()],
    )
}

/// `kubectl delete validatingwebhookconfiguration fleet-delete-guard` at Metadata level.
fn vwc_delete() -> Value {
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": "1b7a4e8e-7c55-4c52-9a5c-0d0e8a1f2b3c", "stage": "ResponseComplete",
        "requestURI": "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/fleet-delete-guard",
        "verb": "delete",
        "user": {"username": "mallory", "groups": ["system:authenticated"]},
        "userAgent": "kubectl/v1.33.0 (linux/amd64) kubernetes/abc",
        "objectRef": {"resource": "validatingwebhookconfigurations", "name": "fleet-delete-guard",
                      "apiGroup": "admissionregistration.k8s.io", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "status": "Success", "code": 200},
        "requestReceivedTimestamp": "2026-05-01T10:00:00.000000Z",
        "stageTimestamp": "2026-05-01T10:00:00.010000Z"
    })
}

fn parse_value(v: &Value) -> Option<GuardChange> {
    parse(v.to_string().as_bytes(), &guard())
}

#[test]
fn deleting_the_webhook_configuration_is_a_guard_row_naming_who_and_when() {
    let c = parse_value(&vwc_delete()).expect("a guard row");
    assert_eq!(c.kind, "ValidatingWebhookConfiguration");
    assert_eq!((c.user.as_str(), c.verb.as_str()), ("mallory", "delete"));
    assert_eq!(c.time, "2026-05-01T10:00:00Z".parse::<Timestamp>().unwrap());
    assert_eq!(c.outcome, Outcome::Succeeded);
    assert_eq!(
        c.object(),
        "ValidatingWebhookConfiguration fleet-delete-guard"
    );
}

#[test]
fn patches_of_the_deployment_scale_and_secret_updates_are_rows_status_writes_are_not() {
    let mut scale = vwc_delete();
    scale["verb"] = json!("patch");
    scale["level"] = json!("Request");
    scale["objectRef"] = json!({"resource": "deployments", "namespace": "cattle-fleet-system",
        "name": "fleet-delete-guard", "apiGroup": "apps", "apiVersion": "v1", "subresource": "scale"});
    scale["requestObject"] = json!({"spec": {"replicas": 0}});
    let c = parse_value(&scale).expect("scale to 0");
    assert_eq!(
        c.object(),
        "Deployment cattle-fleet-system/fleet-delete-guard/scale"
    );
    assert_eq!(c.patch, r#"{"spec":{"replicas":0}}"#);

    let mut status = scale.clone();
    status["objectRef"]["subresource"] = json!("status");
    assert_eq!(parse_value(&status), None, "the controller's status writes");

    let mut secret = vwc_delete();
    secret["verb"] = json!("update");
    secret["objectRef"] = json!({"resource": "secrets", "namespace": "cattle-fleet-system",
        "name": "fleet-delete-guard-tls", "apiVersion": "v1"});
    secret["responseStatus"] = json!({"code": 403});
    let c = parse_value(&secret).expect("secret update");
    assert_eq!((c.kind, c.outcome), ("Secret", Outcome::Forbidden));

    let mut service = vwc_delete();
    service["objectRef"] = json!({"resource": "services", "namespace": "cattle-fleet-system",
        "name": "fleet-delete-guard", "apiVersion": "v1"});
    assert_eq!(parse_value(&service).expect("service").kind, "Service");
}

#[test]
fn reads_other_objects_and_other_stages_are_not_rows() {
    let mut get = vwc_delete();
    get["verb"] = json!("get");
    assert_eq!(parse_value(&get), None);
    let mut received = vwc_delete();
    received["stage"] = json!("RequestReceived");
    assert_eq!(parse_value(&received), None);
    let mut elsewhere = vwc_delete();
    elsewhere["objectRef"] = json!({"resource": "deployments", "namespace": "default",
        "name": "fleet-delete-guard", "apiGroup": "apps"});
    assert_eq!(
        parse_value(&elsewhere),
        None,
        "another namespace's namesake"
    );
    let mut other_secret = vwc_delete();
    other_secret["objectRef"] =
        json!({"resource": "secrets", "namespace": "cattle-fleet-system", "name": "other"});
    assert_eq!(parse_value(&other_secret), None);
    // The guard's own requests name it only as a user: not read at all.
    let by_guard = r#"{"verb":"patch","user":{"username":"system:serviceaccount:cattle-fleet-system:fleet-delete-guard"}}"#;
    assert_eq!(parse(by_guard.as_bytes(), &guard()), None);
    assert_eq!(
        parse(b"not json \"fleet-delete-guard\"", &guard()),
        None,
        "malformed: left to the deletion parser"
    );
}

#[test]
fn the_prefilter_is_the_names_common_prefix() {
    assert_eq!(guard().prefilter, b"\"fleet-delete-guard");
    let unrelated = GuardObjects::new("ns", "guard", &["tls".to_string()]);
    assert_eq!(unrelated.prefilter, b"\"", "only the quote in common");
    let mut other = vwc_delete();
    other["objectRef"]["name"] = json!("guard");
    assert!(parse(
        other.to_string().as_bytes(),
        &GuardObjects::new("", "guard", &[])
    )
    .is_some());
}

#[test]
fn long_patches_are_cut() {
    let mut p = vwc_delete();
    p["verb"] = json!("patch");
    p["requestObject"] = json!({"webhooks": [{"name": "x".repeat(400)}]});
    let c = parse_value(&p).expect("row");
    assert_eq!(c.patch.chars().count(), PATCH_MAX_CHARS);
    assert!(c.patch.ends_with('…'));
}

#[test]
fn rows_print_as_a_table_and_as_json_and_filter_by_time_and_user() {
    let c = parse_value(&vwc_delete()).expect("row");
    let mut table = Vec::new();
    write_table(&mut [c.clone()], &mut table).expect("write");
    let table = String::from_utf8(table).expect("utf-8");
    assert!(
        table.starts_with("Changes to the guard itself (1):\nTIME"),
        "{table}"
    );
    assert!(table.contains("mallory  kubectl/v1.33.0  delete  ValidatingWebhookConfiguration fleet-delete-guard  200 succeeded  -"), "{table}");
    let mut json_line = Vec::new();
    write_json_line(&c, &mut json_line).expect("write");
    let v: Value = serde_json::from_slice(&json_line).expect("json");
    assert_eq!(v["row"], "guard");
    assert_eq!(v["kind"], "ValidatingWebhookConfiguration");
    assert_eq!(v["user"], "mallory");
    let mut empty = Vec::new();
    write_table(&mut [], &mut empty).expect("write");
    assert!(empty.is_empty(), "no section without rows");

    let at = |s: &str| Some(s.parse::<Timestamp>().unwrap());
    assert!(keeps(&c, at("2026-05-01T10:00:00Z"), None, &[]));
    assert!(!keeps(&c, None, at("2026-05-01T10:00:00Z"), &[]));
    assert!(keeps(&c, None, None, &["mall*".to_string()]));
    assert!(!keeps(&c, None, None, &["alice".to_string()]));
}
