//! Audit events as managed clusters export them, recognised line by line without a flag.
//! Pure: a line in, the audit.k8s.io/v1 events it holds (as JSON bytes) out.
//!
//! - **GKE** (Cloud Logging, e.g. a Cloud Storage or Pub/Sub sink, `gcloud logging read
//!   --format=json` made one entry a line): a `LogEntry` whose `protoPayload` is a
//!   `google.cloud.audit.AuditLog`. It is not the Kubernetes event but a translation:
//!   `methodName` `io.k8s.<group>.<version>.<resource>.<verb>` (the verb is the last
//!   part), `resourceName` `<group>/<version>[/namespaces/<ns>]/<resource>[/<name>[/<sub>]]`
//!   (group `core` for the core group), `authenticationInfo.principalEmail` the user,
//!   `requestMetadata` the caller, `status` a google.rpc.Status (absent or code 0 when
//!   it succeeded), `request`/`response` the objects, the entry's `labels` the audit
//!   annotations (so the webhook's `…/decision`), `operation.id` or `insertId` the audit
//!   ID, `timestamp` the time. Only the final stage is logged. The event is rebuilt from
//!   these fields; groups and impersonation are not in the entry.
//! - **AKS** (Azure Monitor diagnostic settings to a storage account or an Event Hub):
//!   records with `category` `kube-audit` or `kube-audit-admin`, the event in
//!   `properties.log` as a JSON string (or an object); a line holding a whole blob
//!   `{"records":[…]}` gives each record.
//! - **EKS** (CloudWatch Logs, log streams `kube-apiserver-audit-…`): the event as the
//!   `message` string of a log event (`aws logs filter-log-events`, one event a line or
//!   the whole `{"events":[…]}` output on one line; `logEvents` of a subscription or
//!   Firehose delivery), or `@message` of a CloudWatch Logs Insights result.
//!
//! A line that is a JSON array is read element by element, each of these forms or a
//! plain event (as a string or an object).

use serde_json::{Map, Value};

/// What a line that is not a plain audit event turned out to be.
#[derive(Debug)]
pub(crate) enum Unwrapped {
    /// None of the providers' forms: the line is malformed as a plain event.
    NotWrapped,
    /// The events it holds, in order.
    Events(Vec<Record>),
}

/// One event taken out of a provider's form.
#[derive(Debug)]
pub(crate) struct Record {
    /// The form it came in, for error messages: `GKE Cloud Logging entry`, …
    pub from: &'static str,
    /// The audit event's JSON, or why the record holds none.
    pub event: Result<Vec<u8>, String>,
    /// A well-formed record that holds no Kubernetes API request (counted as skipped
    /// by this reason, not as malformed).
    pub skipped: Option<&'static str>,
}

/// GKE logs kube-apiserver's non-resource requests (`/readyz`, `/livez`, `/version`:
/// methodName `io.k8s.get`, no resource) next to the API's.
pub(crate) const GKE_NON_RESOURCE: &str = "GKE entry for a non-resource URL, e.g. /readyz";
/// A Cloud Logging export may hold other services' audit logs too.
pub(crate) const GKE_NOT_KUBERNETES: &str = "GKE entry of another service than Kubernetes";

/// How deep arrays and wrappers may nest (`{"records":[…]}` inside an array is 2).
const MAX_DEPTH: usize = 4;

/// The events a provider's line holds. Called only for lines that are not plain audit
/// events, so plain logs pay nothing.
pub(crate) fn unwrap(line: &[u8]) -> Unwrapped {
    let Ok(value) = serde_json::from_slice::<Value>(line) else {
        return Unwrapped::NotWrapped;
    };
    if !is_wrapper(&value) {
        return Unwrapped::NotWrapped;
    }
    let mut events = Vec::new();
    collect(&value, 0, &mut events);
    if events.is_empty() {
        // `[]`, `{"records":[]}`: nothing to read, as malformed as before.
        return Unwrapped::NotWrapped;
    }
    Unwrapped::Events(events)
}

fn is_wrapper(value: &Value) -> bool {
    match value {
        Value::Array(_) => true,
        Value::Object(o) => form(o).is_some(),
        _ => false,
    }
}

/// The provider's form of one object, if it is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    GkeEntry,
    AzureRecord,
    AzureBlob,
    CloudWatchEvents,
    CloudWatchEvent,
}

fn form(o: &Map<String, Value>) -> Option<Form> {
    // A plain event (even a broken one) is never unwrapped.
    if o.contains_key("verb") || o.get("kind").is_some_and(|k| k == "Event") {
        return None;
    }
    if o.contains_key("protoPayload") {
        Some(Form::GkeEntry)
    } else if o.contains_key("category") && o.contains_key("properties") {
        Some(Form::AzureRecord)
    } else if o.contains_key("records") {
        Some(Form::AzureBlob)
    } else if o.contains_key("logEvents") || o.contains_key("events") {
        Some(Form::CloudWatchEvents)
    } else if o.contains_key("message") || o.contains_key("@message") {
        Some(Form::CloudWatchEvent)
    } else {
        None
    }
}

const IN_A_LIST: &str = "list element";
const GKE: &str = "GKE Cloud Logging entry";
const AZURE: &str = "Azure diagnostic record";
const CLOUDWATCH: &str = "CloudWatch log event";

fn collect(value: &Value, depth: usize, out: &mut Vec<Record>) {
    let record = |from, event| Record {
        from,
        event,
        skipped: None,
    };
    if depth > MAX_DEPTH {
        let error = format!("wrappers nested deeper than {MAX_DEPTH}");
        out.push(record(IN_A_LIST, Err(error)));
        return;
    }
    match value {
        Value::Array(items) => items.iter().for_each(|v| collect(v, depth + 1, out)),
        Value::String(s) => out.push(record(IN_A_LIST, Ok(s.as_bytes().to_vec()))),
        Value::Object(o) => match form(o) {
            None => out.push(record(IN_A_LIST, Ok(value.to_string().into_bytes()))),
            Some(Form::GkeEntry) => match gke_skip(o) {
                Some(reason) => out.push(Record {
                    from: GKE,
                    event: Err(reason.to_string()),
                    skipped: Some(reason),
                }),
                None => {
                    let event = gke_event(o).map(|e| e.to_string().into_bytes());
                    out.push(record(GKE, event));
                }
            },
            Some(Form::AzureRecord) => out.push(record(AZURE, azure_event(o))),
            Some(Form::AzureBlob) => match &o["records"] {
                Value::Array(records) => records.iter().for_each(|r| collect(r, depth + 1, out)),
                other => {
                    let error = format!("\"records\" is {}, not a list", kind(other));
                    out.push(record("Azure diagnostic logs", Err(error)));
                }
            },
            Some(Form::CloudWatchEvents) => {
                let (key, events) = match o.get("logEvents") {
                    Some(v) => ("logEvents", v),
                    None => ("events", &o["events"]),
                };
                match events {
                    Value::Array(items) => items.iter().for_each(|e| collect(e, depth + 1, out)),
                    other => {
                        let error = format!("{key:?} is {}, not a list", kind(other));
                        out.push(record("CloudWatch Logs export", Err(error)));
                    }
                }
            }
            Some(Form::CloudWatchEvent) => out.push(record(CLOUDWATCH, cloudwatch_event(o))),
        },
        other => {
            let error = format!(
                "{} where an audit event or a provider's record was expected",
                kind(other)
            );
            out.push(record(IN_A_LIST, Err(error)));
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The event carried as a JSON string or as an object.
fn embedded(v: &Value, what: &str) -> Result<Vec<u8>, String> {
    match v {
        Value::String(s) if s.trim_start().starts_with('{') => Ok(s.trim().as_bytes().to_vec()),
        Value::String(s) => Err(format!(
            "{what} is a string not holding a JSON object: {:?}",
            s.chars().take(40).collect::<String>()
        )),
        Value::Object(_) => Ok(v.to_string().into_bytes()),
        other => Err(format!("{what} is {}, not an audit event", kind(other))),
    }
}

fn azure_event(o: &Map<String, Value>) -> Result<Vec<u8>, String> {
    let category = o["category"].as_str().unwrap_or_default();
    if category != "kube-audit" && category != "kube-audit-admin" {
        return Err(format!(
            "category {category:?} is not kube-audit or kube-audit-admin"
        ));
    }
    match o["properties"].get("log") {
        Some(log) => embedded(log, "properties.log"),
        None => Err("no properties.log".into()),
    }
}

fn cloudwatch_event(o: &Map<String, Value>) -> Result<Vec<u8>, String> {
    let (key, message) = match o.get("message") {
        Some(m) => ("message", m),
        None => ("@message", &o["@message"]),
    };
    embedded(message, key)
}

/// Why a GKE entry holds no Kubernetes API request, if it holds none: another
/// service's method, or a Kubernetes method without a resource (`io.k8s.get` on
/// `/readyz`). Entries without a methodName are malformed, not skipped.
fn gke_skip(entry: &Map<String, Value>) -> Option<&'static str> {
    let method = entry.get("protoPayload")?.get("methodName")?.as_str()?;
    match method.strip_prefix("io.k8s.") {
        None => Some(GKE_NOT_KUBERNETES),
        Some(rest) if !rest.contains('.') => Some(GKE_NON_RESOURCE),
        Some(_) => None,
    }
}

/// The audit.k8s.io/v1 event a GKE Cloud Logging entry stands for.
fn gke_event(entry: &Map<String, Value>) -> Result<Value, String> {
    let payload = entry["protoPayload"]
        .as_object()
        .ok_or("protoPayload is not an object")?;
    let text = |v: &Value| v.as_str().map(str::to_string);
    let method = payload
        .get("methodName")
        .and_then(Value::as_str)
        .ok_or("no protoPayload.methodName")?;
    let verb = method
        .strip_prefix("io.k8s.")
        .and_then(|m| m.rsplit_once('.'))
        .map(|(_, verb)| verb)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            format!("methodName {method:?} is not a Kubernetes API method (io.k8s.…)")
        })?;
    let resource_name = payload
        .get("resourceName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let object_ref = gke_object_ref(resource_name).ok_or_else(|| {
        format!("resourceName {resource_name:?} is not <group>/<version>/…/<resource>")
    })?;
    let time = [&entry.get("timestamp"), &entry.get("receiveTimestamp")]
        .into_iter()
        .flatten()
        .find_map(|v| text(v))
        .ok_or("no timestamp")?;
    let audit_id = entry
        .get("operation")
        .and_then(|o| o.get("id"))
        .or_else(|| entry.get("insertId"))
        .and_then(text)
        .unwrap_or_default();
    let status = payload.get("status");
    let grpc = status
        .and_then(|s| s.get("code"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let message = status
        .and_then(|s| s.get("message"))
        .and_then(text)
        .unwrap_or_default();
    let auth = payload.get("authenticationInfo");
    let user = auth
        .and_then(|a| {
            a.get("principalEmail")
                .or_else(|| a.get("principalSubject"))
        })
        .and_then(text)
        .unwrap_or_default();
    let meta = payload.get("requestMetadata");
    let mut event = serde_json::json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "requestURI": format!("/{resource_name}"),
        "verb": verb,
        "user": {"username": user},
        "userAgent": meta.and_then(|m| m.get("callerSuppliedUserAgent")).and_then(text).unwrap_or_default(),
        "objectRef": object_ref,
        "responseStatus": {"code": http_code(grpc), "message": message},
        "requestReceivedTimestamp": time,
        "stageTimestamp": time,
        "annotations": entry.get("labels").cloned().unwrap_or(Value::Null),
    });
    for (from, to) in [("request", "requestObject"), ("response", "responseObject")] {
        if let Some(object) = payload.get(from).filter(|v| v.is_object()) {
            event[to] = object.clone();
        }
    }
    Ok(event)
}

/// `core/v1/namespaces/default/configmaps/x` → objectRef. `None` when it has fewer than
/// three parts, an empty one, or no Kubernetes version (`v1`, `v1beta1`) second.
fn gke_object_ref(resource_name: &str) -> Option<Value> {
    let parts: Vec<&str> = resource_name.split('/').collect();
    let is_version = |v: &str| {
        v.strip_prefix('v')
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
    };
    if parts.len() < 3 || parts.iter().any(|p| p.is_empty()) || !is_version(parts[1]) {
        return None;
    }
    let group = match parts[0] {
        "core" => "",
        g => g,
    };
    let (namespace, rest) = match parts[2..] {
        // A Namespace itself: core/v1/namespaces/<name>.
        ["namespaces", name] => ("", vec!["namespaces", name]),
        ["namespaces", ns, ref rest @ ..] => (ns, rest.to_vec()),
        ref rest => ("", rest.to_vec()),
    };
    let mut rest = rest.into_iter();
    let resource = rest.next()?;
    let name = rest.next().unwrap_or_default();
    let subresource = rest.next().unwrap_or_default();
    // A Namespace's objectRef names it as its own namespace (as kube-apiserver writes).
    let namespace = if resource == "namespaces" && group.is_empty() {
        name
    } else {
        namespace
    };
    Some(serde_json::json!({
        "resource": resource,
        "namespace": namespace,
        "name": name,
        "apiGroup": group,
        "apiVersion": parts[1],
        "subresource": subresource,
    }))
}

/// The HTTP status a google.rpc.Status code stands for.
fn http_code(grpc: i64) -> u16 {
    match grpc {
        0 => 200,
        3 | 9 | 11 => 400, // INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE
        16 => 401,         // UNAUTHENTICATED
        7 => 403,          // PERMISSION_DENIED
        5 => 404,          // NOT_FOUND
        6 | 10 => 409,     // ALREADY_EXISTS, ABORTED
        8 => 429,          // RESOURCE_EXHAUSTED
        4 => 504,          // DEADLINE_EXCEEDED
        14 => 503,         // UNAVAILABLE
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auditlog::event::{parse_line, Deletion, Outcome, Parsed};

    const HOOK: &str = "delete-guard.fleet.cattle.io";

    /// kube-apiserver's event for alice's warned deletion of test-config2-one.
    fn event() -> Value {
        json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": "4d2a1e0c-1111-4f60-9a7b-8c9d0e1f2a3b", "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/default/configmaps/test-config2-one",
            "verb": "delete", "user": {"username": "alice", "groups": ["system:authenticated"]},
            "userAgent": "kubectl/v1.30.1",
            "objectRef": {"resource": "configmaps", "namespace": "default",
                          "name": "test-config2-one", "apiVersion": "v1"},
            "responseStatus": {"code": 200},
            "requestReceivedTimestamp": "2024-05-01T10:00:00.000000Z",
            "stageTimestamp": "2024-05-01T10:00:00.010000Z",
            "annotations": {
                "delete-guard.fleet.cattle.io/decision": "warned",
                "delete-guard.fleet.cattle.io/owner": "fleet-local/lots",
                "delete-guard.fleet.cattle.io/gitrepo": "fleet-local/lots",
                "delete-guard.fleet.cattle.io/counted": "true"
            }
        })
    }

    /// The same deletion as GKE's Cloud Logging writes it.
    fn gke_entry() -> Value {
        json!({
            "insertId": "7f3c2b1a-entry",
            "logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
            "operation": {"id": "4d2a1e0c-1111-4f60-9a7b-8c9d0e1f2a3b", "producer": "k8s.io",
                          "first": true, "last": true},
            "protoPayload": {
                "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                "authenticationInfo": {"principalEmail": "alice@example.com"},
                "authorizationInfo": [{"granted": true,
                    "permission": "io.k8s.core.v1.configmaps.delete",
                    "resource": "core/v1/namespaces/default/configmaps/test-config2-one"}],
                "methodName": "io.k8s.core.v1.configmaps.delete",
                "requestMetadata": {"callerIp": "192.0.2.10",
                                    "callerSuppliedUserAgent": "kubectl/v1.30.1"},
                "resourceName": "core/v1/namespaces/default/configmaps/test-config2-one",
                "serviceName": "k8s.io"
            },
            "receiveTimestamp": "2024-05-01T10:00:01.5Z",
            "resource": {"type": "k8s_cluster",
                         "labels": {"cluster_name": "c", "location": "europe-west1", "project_id": "p"}},
            "timestamp": "2024-05-01T10:00:00Z",
            "labels": {
                "authorization.k8s.io/decision": "allow",
                "delete-guard.fleet.cattle.io/decision": "warned",
                "delete-guard.fleet.cattle.io/owner": "fleet-local/lots",
                "delete-guard.fleet.cattle.io/gitrepo": "fleet-local/lots"
            }
        })
    }

    fn records(line: &str) -> Vec<Record> {
        match unwrap(line.as_bytes()) {
            Unwrapped::Events(r) => r,
            Unwrapped::NotWrapped => panic!("not recognised: {line}"),
        }
    }

    fn deletion(record: &Record) -> Deletion {
        let bytes = record
            .event
            .as_ref()
            .unwrap_or_else(|e| panic!("{}: {e}", record.from));
        match parse_line(bytes, HOOK) {
            Ok(Parsed::Deletion(d)) => *d,
            other => panic!("{}: {other:?}", record.from),
        }
    }

    fn errors(line: &str) -> Vec<String> {
        records(line)
            .into_iter()
            .map(|r| format!("{}: {}", r.from, r.event.expect_err("an error")))
            .collect()
    }

    #[test]
    fn gke_entries_become_the_audit_event_they_stand_for() {
        let [record] = records(&gke_entry().to_string()).try_into().expect("one");
        assert_eq!(record.from, GKE);
        let d = deletion(&record);
        assert_eq!(d.user, "alice@example.com");
        assert_eq!(d.audit_id, "4d2a1e0c-1111-4f60-9a7b-8c9d0e1f2a3b");
        assert_eq!(
            (d.resource.as_str(), d.namespace.as_str(), d.name.as_str()),
            ("configmaps", "default", "test-config2-one")
        );
        assert_eq!(d.api_group, "");
        assert_eq!(d.decision, "warned");
        assert_eq!(d.gitrepo, "fleet-local/lots");
        assert_eq!(d.outcome, Outcome::Succeeded);
        assert_eq!(d.user_agent, "kubectl/v1.30.1");
        assert_eq!(d.time.to_string(), "2024-05-01T10:00:00Z");
        assert!(!d.collection);

        // Refused by the webhook: google.rpc PERMISSION_DENIED with its message; the
        // insertId stands in for a missing operation.
        let mut denied = gke_entry();
        denied["protoPayload"]["status"] = json!({"code": 7,
            "message": "admission webhook \"delete-guard.fleet.cattle.io\" denied the request: no"});
        denied["operation"] = Value::Null;
        denied["labels"]["delete-guard.fleet.cattle.io/decision"] = json!("denied");
        let d = deletion(&records(&denied.to_string())[0]);
        assert_eq!(d.outcome, Outcome::Denied);
        assert_eq!(d.denied_by, HOOK);
        assert_eq!(d.audit_id, "7f3c2b1a-entry");

        // A deletecollection of a custom resource, with the recorded objects.
        let mut collection = gke_entry();
        collection["protoPayload"]["methodName"] =
            json!("io.k8s.fleet.cattle.io.v1alpha1.bundledeployments.deletecollection");
        collection["protoPayload"]["resourceName"] =
            json!("fleet.cattle.io/v1alpha1/namespaces/fleet-local/bundledeployments");
        collection["protoPayload"]["request"] =
            json!({"@type": "meta.k8s.io/v1.DeleteOptions", "dryRun": ["All"]});
        let d = deletion(&records(&collection.to_string())[0]);
        assert!(d.collection);
        assert!(d.dry_run);
        assert_eq!(
            (
                d.api_group.as_str(),
                d.api_version.as_str(),
                d.resource.as_str()
            ),
            ("fleet.cattle.io", "v1alpha1", "bundledeployments")
        );
    }

    #[test]
    fn gke_resource_names_map_to_object_refs() {
        let table: &[(&str, Option<[&str; 6]>)] = &[
            // resourceName → [group, version, namespace, resource, name, subresource]
            (
                "core/v1/namespaces/default/configmaps/x",
                Some(["", "v1", "default", "configmaps", "x", ""]),
            ),
            (
                "apps/v1/namespaces/ns/deployments/d",
                Some(["apps", "v1", "ns", "deployments", "d", ""]),
            ),
            (
                "core/v1/namespaces/ns/pods/p/status",
                Some(["", "v1", "ns", "pods", "p", "status"]),
            ),
            (
                "core/v1/namespaces/ns/configmaps",
                Some(["", "v1", "ns", "configmaps", "", ""]),
            ),
            (
                "core/v1/namespaces/team-a",
                Some(["", "v1", "team-a", "namespaces", "team-a", ""]),
            ),
            (
                "rbac.authorization.k8s.io/v1/clusterroles/r",
                Some([
                    "rbac.authorization.k8s.io",
                    "v1",
                    "",
                    "clusterroles",
                    "r",
                    "",
                ]),
            ),
            ("core/v1", None),
            ("projects/p/zones/z/clusters/c", None),
            ("", None),
            ("core//namespaces/x", None),
        ];
        for (name, want) in table {
            let got = gke_object_ref(name).map(|r| {
                [
                    "apiGroup",
                    "apiVersion",
                    "namespace",
                    "resource",
                    "name",
                    "subresource",
                ]
                .map(|k| r[k].as_str().unwrap_or_default().to_string())
            });
            assert_eq!(got, want.map(|w| w.map(String::from)), "{name}");
        }
    }

    #[test]
    fn grpc_codes_map_to_http_status() {
        for (grpc, http) in [
            (0, 200),
            (7, 403),
            (5, 404),
            (10, 409),
            (6, 409),
            (3, 400),
            (13, 500),
            (99, 500),
        ] {
            assert_eq!(http_code(grpc), http, "{grpc}");
        }
    }

    #[test]
    fn azure_records_carry_the_event_as_a_string_or_an_object_one_or_many_a_line() {
        let record = |category: &str, log: Value| {
            json!({"time": "2024-05-01T10:00:00.5Z",
                   "resourceId": "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/C",
                   "category": category, "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
                   "properties": {"log": log, "stream": "stdout", "pod": "kube-apiserver-abc"}})
        };
        let as_string = record("kube-audit", json!(event().to_string()));
        let as_object = record("kube-audit-admin", event());
        for line in [as_string.to_string(), as_object.to_string()] {
            let [r] = records(&line).try_into().expect("one");
            assert_eq!(r.from, AZURE);
            assert_eq!(deletion(&r).user, "alice");
        }
        let blob = json!({"records": [as_string, as_object]}).to_string();
        let all = records(&blob);
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|r| deletion(r).decision == "warned"));
    }

    #[test]
    fn cloudwatch_exports_carry_the_event_as_message() {
        let e = event().to_string();
        let lines = [
            // `aws logs filter-log-events`, one event a line (jq -c '.events[]').
            json!({"logStreamName": "kube-apiserver-audit-0123", "timestamp": 1714557600000_u64,
                   "message": e, "ingestionTime": 1714557601000_u64, "eventId": "1"})
            .to_string(),
            // The whole output on one line.
            json!({"events": [{"message": e, "logStreamName": "kube-apiserver-audit-0123"}],
                   "searchedLogStreams": []})
            .to_string(),
            // A subscription filter's delivery (Firehose to S3).
            json!({"messageType": "DATA_MESSAGE", "logGroup": "/aws/eks/c/cluster",
                   "logStream": "kube-apiserver-audit-0123",
                   "logEvents": [{"id": "1", "timestamp": 1714557600000_u64, "message": e}]})
            .to_string(),
            // CloudWatch Logs Insights results, exported as JSON.
            json!([{"@timestamp": "2024-05-01 10:00:00.000", "@message": e}]).to_string(),
            // `--query 'events[].message'`: a list of the events as strings.
            json!([e]).to_string(),
        ];
        for line in lines {
            let [r] = records(&line).try_into().expect("one");
            assert_eq!(deletion(&r).name, "test-config2-one", "{line}");
        }
    }

    #[test]
    fn malformed_wrappers_are_clear_errors_per_record_never_a_crash() {
        let entry = |edit: &dyn Fn(&mut Value)| {
            let mut e = gke_entry();
            edit(&mut e);
            e.to_string()
        };
        let cases = [
            (entry(&|e| e["protoPayload"] = json!("x")), "GKE Cloud Logging entry: protoPayload is not an object"),
            (entry(&|e| e["protoPayload"]["methodName"] = Value::Null), "GKE Cloud Logging entry: no protoPayload.methodName"),
            (
                entry(&|e| e["protoPayload"]["resourceName"] = json!("projects/p/zones/z/clusters/c")),
                "GKE Cloud Logging entry: resourceName \"projects/p/zones/z/clusters/c\" is not <group>/<version>/…/<resource>",
            ),
            (
                entry(&|e| {
                    e["timestamp"] = Value::Null;
                    e["receiveTimestamp"] = Value::Null;
                }),
                "GKE Cloud Logging entry: no timestamp",
            ),
            (
                json!({"category": "kube-apiserver", "properties": {"log": "I0501 started"}}).to_string(),
                "Azure diagnostic record: category \"kube-apiserver\" is not kube-audit or kube-audit-admin",
            ),
            (json!({"category": "kube-audit", "properties": {}}).to_string(), "Azure diagnostic record: no properties.log"),
            (
                json!({"category": "kube-audit", "properties": {"log": "not json"}}).to_string(),
                "Azure diagnostic record: properties.log is a string not holding a JSON object: \"not json\"",
            ),
            (json!({"records": {"a": 1}}).to_string(), "Azure diagnostic logs: \"records\" is an object, not a list"),
            (json!({"logEvents": "x"}).to_string(), "CloudWatch Logs export: \"logEvents\" is a string, not a list"),
            (json!({"message": 42}).to_string(), "CloudWatch log event: message is a number, not an audit event"),
            (json!([1]).to_string(), "list element: a number where an audit event or a provider's record was expected"),
            (json!([[[[[[e_str()]]]]]]).to_string(), "list element: wrappers nested deeper than 4"),
        ];
        for (line, want) in cases {
            assert_eq!(errors(&line), [want.to_string()], "{line}");
        }
        // A wrapper whose event is not an audit event: read, then refused by the parser.
        let bad_event = json!({"message": "{\"kind\":\"Event\"}"}).to_string();
        let [r] = records(&bad_event).try_into().expect("one");
        assert!(parse_line(&r.event.expect("bytes"), HOOK).is_err());
    }

    /// Issue #15: a GKE export is full of kube-apiserver's health checks (`io.k8s.get`
    /// on /readyz) and may hold other services' entries: skipped by reason, not
    /// malformed.
    #[test]
    fn gke_entries_without_a_kubernetes_api_request_are_skipped_by_reason() {
        let entry = |method: &str, resource: &str| {
            let mut e = gke_entry();
            e["protoPayload"]["methodName"] = json!(method);
            e["protoPayload"]["resourceName"] = json!(resource);
            e.to_string()
        };
        for (line, reason) in [
            (entry("io.k8s.get", "readyz"), GKE_NON_RESOURCE),
            (entry("io.k8s.get", "/livez"), GKE_NON_RESOURCE),
            (
                entry(
                    "google.container.v1.ClusterManager.CreateCluster",
                    "projects/p/zones/z/clusters/c",
                ),
                GKE_NOT_KUBERNETES,
            ),
        ] {
            let [r] = records(&line).try_into().expect("one");
            assert_eq!(r.skipped, Some(reason), "{line}");
        }
        let [r] = records(&gke_entry().to_string()).try_into().expect("one");
        assert_eq!(r.skipped, None);
    }

    fn e_str() -> String {
        event().to_string()
    }

    #[test]
    fn plain_events_and_other_json_are_not_unwrapped() {
        for line in [
            event().to_string(),
            json!({"kind": "Event", "message": "x"}).to_string(),
            json!({"verb": "delete", "records": []}).to_string(),
            json!({"kind": "EventList", "items": []}).to_string(),
            "[]".to_string(),
            json!({"records": []}).to_string(),
            "{not json".to_string(),
            "\"a string\"".to_string(),
        ] {
            assert!(
                matches!(unwrap(line.as_bytes()), Unwrapped::NotWrapped),
                "{line}"
            );
        }
    }
}
