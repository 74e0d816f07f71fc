//! Validating admission webhooks, called on DELETE the way kube-apiserver calls them.
//!
//! For every stored `ValidatingWebhookConfiguration` (by name) and each of its webhooks:
//! `rules` (operations, apiGroups, apiVersions, resources with `*` and `*/*`, scope),
//! `namespaceSelector` (the Namespace's labels, or just `kubernetes.io/metadata.name`
//! when the Namespace is not stored; a Namespace object is matched by its own labels),
//! `objectSelector` (against `oldObject`), then `matchConditions` as real CEL
//! (kube-cel: `object` (null), `oldObject`, `request`; no `authorizer`). A webhook
//! whose `sideEffects` is not `None`/`NoneOnDryRun` fails a dry-run request without
//! being called.
//!
//! The call: an `admission.k8s.io/v1` AdmissionReview (uid, kind, resource, name
//! — empty for DELETECOLLECTION —, namespace, operation DELETE, userInfo, `object` null,
//! `oldObject`, `dryRun`, `options` DeleteOptions) POSTed over HTTPS/1.1 to
//! `https://NAME.NAMESPACE.svc:PORT/PATH?timeout=Ns` (server name and certificate
//! checked against the decoded `caBundle`), connected to the endpoint registered with
//! [`crate::ApiDouble::set_service_endpoint`] (or the `url`), bounded by
//! `timeoutSeconds` (default 10). Answers: allowed → its warnings go back to the
//! client as `Warning: 299 - "..."` headers (deduplicated), its audit annotations are
//! recorded as `<webhook>/<key>`; denied → the client gets the webhook's Status with
//! `admission webhook "<name>" denied the request: <message>` (code < 400 → 400);
//! call errors → `failurePolicy` Ignore (default Fail): the request goes on and the
//! audit event gets `failed-open.validating.webhook.admission.k8s.io/round_0_index_<i>`;
//! Fail: 500 `Internal error occurred: failed calling webhook "<name>": ...`. A match
//! condition that cannot be evaluated: Ignore skips the webhook (no `failed-open`
//! annotation); Fail refuses the request, 403 `<resource> "<name>" is forbidden:
//! expression '<expression>' resulted in error: <why>`. A condition that does not
//! compile is refused when the configuration is written (422 `Invalid`).
//!
//! Differences from kube-apiserver: webhooks are called one after the other (the
//! apiserver calls validating webhooks in parallel); only DELETE and DELETECOLLECTION
//! are sent to webhooks (CREATE/UPDATE/PATCH never are); no client-go retries on
//! 429/5xx with Retry-After; the 4096-rune total truncation of warnings is not applied.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::http::{header, Request};
use base64::Engine as _;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use serde_json::{json, Map, Value};

use crate::auth::UserInfo;
use crate::resources::{gvr, ResourceDef};
use crate::status::ApiError;
use crate::{lock, Shared};

/// One call the double made to a webhook (or decided not to make).
#[derive(Clone, Debug)]
pub struct AdmissionCall {
    /// The webhook's name (`delete-guard.fleet.cattle.io`).
    pub webhook: String,
    /// The AdmissionReview sent.
    pub review: Value,
    /// The AdmissionReview's `response`, when one came back.
    pub response: Option<Value>,
    /// Why the call failed (transport, timeout, bad answer).
    pub error: Option<String>,
    pub elapsed: Duration,
}

/// What admission added to a request that goes on.
#[derive(Clone, Debug, Default)]
pub(crate) struct Admitted {
    pub warnings: Vec<String>,
    pub annotations: BTreeMap<String, String>,
}

/// The DELETE being admitted.
pub(crate) struct DeleteRequest<'a> {
    pub rd: &'a ResourceDef,
    pub namespace: &'a str,
    /// Empty for an item of a DELETECOLLECTION, as kube-apiserver sends it.
    pub name: &'a str,
    pub old: &'a Value,
    pub user: &'a UserInfo,
    pub dry_run: bool,
    pub options: &'a Value,
}

/// How the request looked, for the audit event.
#[derive(Clone, Debug, Default)]
pub(crate) struct RequestInfo {
    pub uri: String,
    pub user_agent: String,
    pub received: Option<SystemTime>,
}

fn labels_of(obj: &Value) -> Map<String, Value> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// A `metav1.LabelSelector` (`matchLabels` and `matchExpressions`) against labels;
/// absent or `{}` selects everything.
pub(crate) fn selector_matches(selector: Option<&Value>, labels: &Map<String, Value>) -> bool {
    let Some(sel) = selector.filter(|s| !s.is_null()) else {
        return true;
    };
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
        if !ml.iter().all(|(k, v)| label(k) == v.as_str()) {
            return false;
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let have = label(key);
        let ok = match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => have.is_some_and(|v| values.contains(&v)),
            "NotIn" => have.is_none_or(|v| !values.contains(&v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn list_has(v: Option<&Value>, want: &str) -> bool {
    v.and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x == "*" || x == want))
}

/// `rules` as kube-apiserver matches them for a main resource (no subresource).
pub(crate) fn rules_match(webhook: &Value, rd: &ResourceDef, operation: &str) -> bool {
    webhook
        .get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|r| {
            let resource_ok = r
                .get("resources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .any(|res| {
                    let (res, sub) = res.split_once('/').unwrap_or((res, ""));
                    (res == "*" || res == rd.gvr.resource) && (sub == "*" || sub.is_empty())
                });
            let scope_ok = match r.get("scope").and_then(Value::as_str).unwrap_or("*") {
                "Cluster" => !rd.namespaced,
                "Namespaced" => rd.namespaced,
                _ => true,
            };
            list_has(r.get("operations"), operation)
                && list_has(r.get("apiGroups"), &rd.gvr.group)
                && list_has(r.get("apiVersions"), &rd.gvr.version)
                && resource_ok
                && scope_ok
        })
}

/// kube-apiserver compiles every match condition of a ValidatingWebhookConfiguration
/// when it is written, and refuses one that does not compile (422 `Invalid`); the
/// conformance test in tests/real_cluster.rs compares it.
pub(crate) fn check_match_conditions(rd: &ResourceDef, body: &Value) -> Result<(), ApiError> {
    if rd.gvr != gvr::VALIDATING_WEBHOOK_CONFIGURATIONS {
        return Ok(());
    }
    let name = body
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let webhooks = body.get("webhooks").and_then(Value::as_array);
    for (i, webhook) in webhooks.into_iter().flatten().enumerate() {
        let conditions = webhook.get("matchConditions").and_then(Value::as_array);
        for (j, condition) in conditions.into_iter().flatten().enumerate() {
            let expression = condition
                .get("expression")
                .and_then(Value::as_str)
                .unwrap_or("");
            if let Err(e) = kube_cel::cel::Program::compile(expression) {
                return Err(ApiError::invalid(
                    &rd.gvr,
                    &rd.kind,
                    name,
                    &format!("webhooks[{i}].matchConditions[{j}].expression"),
                    &format!("Invalid value: {expression:?}: compilation failed: {e}"),
                ));
            }
        }
    }
    Ok(())
}

/// `Ok(true)`: call; `Ok(false)`: some condition is false, skip; `Err`: an error (and no
/// condition false).
pub(crate) fn match_conditions(webhook: &Value, req: &DeleteRequest<'_>) -> Result<bool, String> {
    let conditions: Vec<(String, String)> = webhook
        .get("matchConditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                c.get("expression")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    if conditions.is_empty() {
        return Ok(true);
    }
    let kind = req
        .old
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or(&req.rd.kind);
    // The variables as kube-apiserver binds them. Object keys are not escaped: the
    // apiserver escapes only declared property names, and map keys — labels,
    // annotations, data — are user data, reached as `m['objectset.rio.cattle.io/id']`.
    // (kube-cel's VapEvaluator escapes every key when it has no schema, which would
    // make such lookups fail where the apiserver succeeds.)
    let request = serde_json::json!({
        "operation": "DELETE",
        "name": req.name,
        "namespace": req.namespace,
        "dryRun": req.dry_run,
        "kind": {"group": req.rd.gvr.group, "version": req.rd.gvr.version, "kind": kind},
        "resource": {"group": req.rd.gvr.group, "version": req.rd.gvr.version, "resource": req.rd.gvr.resource},
        "userInfo": {"username": req.user.username, "uid": req.user.uid, "groups": req.user.groups},
    });
    use kube_cel::KubeCelExt;
    let mut ctx = kube_cel::cel::Context::default();
    ctx.register_all();
    let bind = |ctx: &mut kube_cel::cel::Context<'_>, name: &str, v: &Value| {
        ctx.add_variable(name, v.clone())
            .map_err(|e| format!("cannot bind {name}: {e}"))
    };
    bind(&mut ctx, "oldObject", req.old)?;
    bind(&mut ctx, "object", &Value::Null)?;
    bind(&mut ctx, "request", &request)?;
    let mut error = None;
    for (_, expression) in &conditions {
        let result = kube_cel::cel::Program::compile(expression)
            .map_err(|e| format!("compile error: {e}"))
            .and_then(|p| {
                p.execute(&ctx)
                    .map_err(|e| format!("evaluation error: {e}"))
            });
        // kube-apiserver's wording: `expression '<expression>' resulted in error: <why>`.
        match result {
            Ok(kube_cel::cel::Value::Bool(true)) => {}
            Ok(kube_cel::cel::Value::Bool(false)) => return Ok(false),
            Ok(other) => {
                error.get_or_insert_with(|| {
                    format!("expression '{expression}' resulted in error: not a bool: {other:?}")
                });
            }
            Err(e) => {
                error.get_or_insert_with(|| {
                    format!("expression '{expression}' resulted in error: {e}")
                });
            }
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(true),
    }
}

fn namespace_labels(sh: &Shared, req: &DeleteRequest<'_>) -> Option<Map<String, Value>> {
    if !req.rd.namespaced {
        // A Namespace is matched by its own labels; other cluster-scoped objects always match.
        return (req.rd.gvr == gvr::NAMESPACES).then(|| labels_of(req.old));
    }
    let stored = sh
        .rt
        .by_gvr(&gvr::NAMESPACES)
        .and_then(|res| sh.db().get(res, "", req.namespace).cloned());
    let mut labels = stored.as_ref().map(labels_of).unwrap_or_default();
    labels.insert("kubernetes.io/metadata.name".into(), json!(req.namespace));
    Some(labels)
}

fn review(req: &DeleteRequest<'_>) -> Value {
    let kind = req
        .old
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or(&req.rd.kind);
    let gvk = json!({"group": req.rd.gvr.group, "version": req.rd.gvr.version, "kind": kind});
    let gvr = json!({"group": req.rd.gvr.group, "version": req.rd.gvr.version, "resource": req.rd.gvr.resource});
    let mut options = match req.options {
        Value::Object(m) => Value::Object(m.clone()),
        _ => json!({}),
    };
    options["apiVersion"] = json!("meta.k8s.io/v1");
    options["kind"] = json!("DeleteOptions");
    if req.dry_run {
        options["dryRun"] = json!(["All"]);
    }
    let mut request = json!({
        "uid": crate::util::new_uid(),
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "name": req.name,
        "operation": "DELETE",
        "userInfo": req.user.to_json(),
        "object": null,
        "oldObject": req.old,
        "dryRun": req.dry_run,
        "options": options,
    });
    if req.rd.namespaced {
        request["namespace"] = json!(req.namespace);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

/// Where and how to call one webhook.
struct Target {
    url: String,
    server_name: String,
    host_header: String,
    path: String,
    addr: Result<SocketAddr, String>,
}

fn target(sh: &Shared, webhook: &Value, timeout: Duration) -> Result<Target, String> {
    let cc = webhook.get("clientConfig").cloned().unwrap_or(Value::Null);
    let query = format!("timeout={}s", timeout.as_secs());
    if let Some(svc) = cc.get("service") {
        let name = svc.get("name").and_then(Value::as_str).unwrap_or("");
        let ns = svc.get("namespace").and_then(Value::as_str).unwrap_or("");
        let port = svc.get("port").and_then(Value::as_u64).unwrap_or(443);
        let path = svc.get("path").and_then(Value::as_str).unwrap_or("/");
        let host = format!("{name}.{ns}.svc");
        let url = format!("https://{host}:{port}{path}?{query}");
        let service = sh
            .rt
            .by_gvr(&gvr::SERVICES)
            .and_then(|res| sh.db().get(res, ns, name).cloned());
        let has_port = service.as_ref().is_none_or(|s| {
            s.pointer("/spec/ports")
                .and_then(Value::as_array)
                .is_some_and(|ps| {
                    ps.iter()
                        .any(|p| p.get("port").and_then(Value::as_u64) == Some(port))
                })
        });
        let addr = if !has_port {
            Err(format!("dial tcp {host}:{port}: connect: connection refused (service {ns}/{name} has no port {port})"))
        } else {
            lock(&sh.endpoints)
                .get(&(ns.to_string(), name.to_string()))
                .copied()
                .ok_or_else(|| format!("no endpoints available for service \"{name}\""))
        };
        return Ok(Target {
            url,
            server_name: host.clone(),
            host_header: if port == 443 {
                host
            } else {
                format!("{host}:{port}")
            },
            path: format!("{path}?{query}"),
            addr,
        });
    }
    let url = cc
        .get("url")
        .and_then(Value::as_str)
        .ok_or("webhook has neither clientConfig.service nor clientConfig.url")?;
    let rest = url
        .strip_prefix("https://")
        .ok_or("webhook url must be https")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>().map_err(|_| format!("bad port in {url}"))?,
        ),
        None => (authority, 443),
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("dial tcp: lookup {host}: no such host"));
    let sep = if path.contains('?') { '&' } else { '?' };
    Ok(Target {
        url: format!("{url}{sep}{query}"),
        server_name: host.to_string(),
        host_header: authority.to_string(),
        path: format!("{path}{sep}{query}"),
        addr,
    })
}

fn tls_config(webhook: &Value) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(b64) = webhook
        .pointer("/clientConfig/caBundle")
        .and_then(Value::as_str)
    {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("caBundle is not base64: {e}"))?;
        for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
            let _ = roots.add(cert);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // kube-apiserver speaks HTTP/1.1 to webhooks.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// An I/O error as Go words it (`connection refused`, not `Connection refused (os error 111)`).
fn go_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    text.to_lowercase()
}

async fn post(target: &Target, tls: rustls::ClientConfig, body: Vec<u8>) -> Result<Value, String> {
    let addr = target.addr.clone()?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("dial tcp {addr}: connect: {}", go_error(&e)))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(target.server_name.clone()).map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: failed to verify certificate: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::post(&target.path)
        .header(header::HOST, &target.host_header)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, */*")
        .header(header::USER_AGENT, "kube-apiserver-admission")
        .body(Body::from(body))
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let code = resp.status().as_u16();
    let bytes = axum::body::to_bytes(Body::new(resp.into_body()), 8 * 1024 * 1024)
        .await
        .map_err(|e| e.to_string())?;
    if code != 200 {
        return Err(format!(
            "an error on the server (\"{}\") has prevented the request from succeeding (code {code})",
            String::from_utf8_lossy(&bytes).trim()
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("the response is not JSON: {e}"))
}

async fn call(sh: &Shared, webhook: &Value, review: &Value) -> Result<Value, String> {
    let timeout = Duration::from_secs(
        webhook
            .get("timeoutSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(10)
            .clamp(1, 30),
    );
    let target = target(sh, webhook, timeout)?;
    let tls = tls_config(webhook)?;
    let body = serde_json::to_vec(review).map_err(|e| e.to_string())?;
    let answer = match tokio::time::timeout(timeout, post(&target, tls, body)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            return Err(format!(
                "failed to call webhook: Post \"{}\": {e}",
                target.url
            ))
        }
        Err(_) => {
            return Err(format!(
                "failed to call webhook: Post \"{}\": context deadline exceeded",
                target.url
            ))
        }
    };
    if answer.get("apiVersion").and_then(Value::as_str) != Some("admission.k8s.io/v1")
        || answer.get("kind").and_then(Value::as_str) != Some("AdmissionReview")
    {
        return Err(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {}, Kind={}",
            answer.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
            answer.get("kind").and_then(Value::as_str).unwrap_or("")
        ));
    }
    let response = answer.get("response").cloned().unwrap_or(Value::Null);
    let want = review
        .pointer("/request/uid")
        .cloned()
        .unwrap_or(Value::Null);
    if response.get("uid") != Some(&want) {
        return Err(format!(
            "expected response.uid={want}, got {}",
            response.get("uid").cloned().unwrap_or(Value::Null)
        ));
    }
    Ok(response)
}

/// kube-apiserver's `ToStatusErr` for a denial.
fn denial(webhook: &str, status: Option<&Value>) -> ApiError {
    let deny = format!("admission webhook \"{webhook}\" denied the request");
    let status = status.cloned().unwrap_or(Value::Null);
    let code = status
        .get("code")
        .and_then(Value::as_u64)
        .map(|c| c as u16)
        .filter(|c| *c >= 400)
        .unwrap_or(400);
    let message = status.get("message").and_then(Value::as_str).unwrap_or("");
    let reason = status.get("reason").and_then(Value::as_str).unwrap_or("");
    let message = if !message.is_empty() {
        format!("{deny}: {message}")
    } else if !reason.is_empty() {
        format!("{deny}: {reason}")
    } else {
        format!("{deny} without explanation")
    };
    let mut e = ApiError::new(code, reason, message);
    e.details = status.get("details").cloned();
    e
}

fn calling_error(webhook: &str, why: &str) -> ApiError {
    ApiError::internal(format!("failed calling webhook \"{webhook}\": {why}"))
}

/// Run every matching webhook for one DELETE. `Err` carries the error for the client
/// and what was recorded so far (for the audit event).
pub(crate) async fn validate_delete(
    sh: &Arc<Shared>,
    req: &DeleteRequest<'_>,
) -> Result<Admitted, (ApiError, Admitted)> {
    let mut out = Admitted::default();
    let configs: Vec<Value> = match sh.rt.by_gvr(&gvr::VALIDATING_WEBHOOK_CONFIGURATIONS) {
        Some(res) => sh.db().iter(res, None).map(|(_, v)| v.clone()).collect(),
        None => Vec::new(),
    };
    let webhooks: Vec<Value> = configs
        .iter()
        .flat_map(|c| {
            c.get("webhooks")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let ns_labels = namespace_labels(sh, req);
    let old_labels = labels_of(req.old);
    for (index, w) in webhooks.iter().enumerate() {
        let name = w
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ignore = w.get("failurePolicy").and_then(Value::as_str) == Some("Ignore");
        if !rules_match(w, req.rd, "DELETE") {
            continue;
        }
        if let Some(labels) = &ns_labels {
            if !selector_matches(w.get("namespaceSelector"), labels) {
                continue;
            }
        }
        if !selector_matches(w.get("objectSelector"), &old_labels) {
            continue;
        }
        let fail_open = |out: &mut Admitted| {
            out.annotations.insert(
                format!("failed-open.validating.webhook.admission.k8s.io/round_0_index_{index}"),
                name.clone(),
            );
        };
        match match_conditions(w, req) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) if ignore => {
                // Skipped as if it did not match: kube-apiserver writes no `failed-open`
                // annotation for a match condition's error (compared in
                // tests/real_cluster.rs), only for a call that failed.
                tracing::debug!(webhook = %name, error = %e, "match condition error; skipping the webhook");
                continue;
            }
            Err(e) => {
                // Under `failurePolicy: Fail` kube-apiserver refuses the request as
                // Forbidden, without calling the webhook (compared in
                // tests/real_cluster.rs).
                let mut refused = ApiError::for_code(403, Some(&req.rd.gvr), req.name);
                refused.message = format!(
                    "{} \"{}\" is forbidden: {e}",
                    req.rd.gvr.qualified_resource(),
                    req.name
                );
                return Err((refused, out));
            }
        }
        let side_effects = w.get("sideEffects").and_then(Value::as_str).unwrap_or("");
        if req.dry_run && !matches!(side_effects, "None" | "NoneOnDryRun") {
            let e = ApiError::bad_request(format!(
                "admission webhook \"{name}\" does not support dry run"
            ));
            return Err((e, out));
        }
        let review = review(req);
        let started = Instant::now();
        let result = call(sh, w, &review).await;
        lock(&sh.admission_log).push(AdmissionCall {
            webhook: name.clone(),
            review: review.clone(),
            response: result.as_ref().ok().cloned(),
            error: result.as_ref().err().cloned(),
            elapsed: started.elapsed(),
        });
        sh.admission_changed.send_modify(|n| *n += 1);
        match result {
            Ok(response) => {
                for (k, v) in response
                    .get("auditAnnotations")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    if let Some(v) = v.as_str() {
                        out.annotations.insert(format!("{name}/{k}"), v.to_string());
                    }
                }
                for warning in response
                    .get("warnings")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if !out.warnings.iter().any(|w| w == warning) {
                        out.warnings.push(warning.to_string());
                    }
                }
                if response.get("allowed") != Some(&Value::Bool(true)) {
                    return Err((denial(&name, response.get("status")), out));
                }
            }
            Err(e) if ignore => {
                tracing::debug!(webhook = %name, error = %e, "webhook call failed; failing open");
                fail_open(&mut out);
            }
            Err(e) => return Err((calling_error(&name, &e), out)),
        }
    }
    Ok(out)
}

/// `Warning: 299 - "<text>"`, quoted as kube-apiserver quotes it.
pub(crate) fn warning_header(text: &str) -> String {
    let mut out = String::from("299 - \"");
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn rfc3339_micros(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = crate::util::rfc3339(d.as_secs());
    format!("{}.{:06}Z", secs.trim_end_matches('Z'), d.subsec_micros())
}

/// Records the audit event (audit.k8s.io/v1, level Metadata, stage ResponseComplete)
/// of one DELETE or DELETECOLLECTION.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_audit(
    sh: &Shared,
    info: &RequestInfo,
    verb: &str,
    rd: &ResourceDef,
    namespace: &str,
    name: &str,
    user: &UserInfo,
    code: u16,
    annotations: &BTreeMap<String, String>,
) {
    let now = SystemTime::now();
    let mut object_ref = json!({"resource": rd.gvr.resource, "apiVersion": rd.gvr.version});
    if !rd.gvr.group.is_empty() {
        object_ref["apiGroup"] = json!(rd.gvr.group);
    }
    if !namespace.is_empty() {
        object_ref["namespace"] = json!(namespace);
    }
    if !name.is_empty() {
        object_ref["name"] = json!(name);
    }
    let mut all = annotations.clone();
    all.insert("authorization.k8s.io/decision".into(), "allow".into());
    all.insert("authorization.k8s.io/reason".into(), String::new());
    let event = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": crate::util::new_uid(),
        "stage": "ResponseComplete",
        "requestURI": info.uri,
        "verb": verb,
        "user": user.to_json(),
        "sourceIPs": ["127.0.0.1"],
        "userAgent": info.user_agent,
        "objectRef": object_ref,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": rfc3339_micros(info.received.unwrap_or(now)),
        "stageTimestamp": rfc3339_micros(now),
        "annotations": all,
    });
    lock(&sh.audit).push(event);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::BUILTIN_RESOURCES;

    fn configmaps() -> &'static ResourceDef {
        BUILTIN_RESOURCES
            .iter()
            .find(|d| d.gvr == gvr::CONFIGMAPS)
            .expect("configmaps")
    }

    #[test]
    fn label_selectors() {
        let labels: Map<String, Value> =
            serde_json::from_value(json!({"objectset.rio.cattle.io/hash": "abc", "app": "x"}))
                .expect("labels");
        assert!(selector_matches(None, &labels));
        assert!(selector_matches(Some(&json!({})), &labels));
        let exists = json!({"matchExpressions": [{"key": "objectset.rio.cattle.io/hash", "operator": "Exists"}]});
        assert!(selector_matches(Some(&exists), &labels));
        assert!(!selector_matches(Some(&exists), &Map::new()));
        let not_in = json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]});
        let kube_system: Map<String, Value> =
            serde_json::from_value(json!({"kubernetes.io/metadata.name": "kube-system"}))
                .expect("labels");
        assert!(!selector_matches(Some(&not_in), &kube_system));
        assert!(selector_matches(Some(&not_in), &labels));
        assert!(selector_matches(
            Some(&json!({"matchLabels": {"app": "x"}})),
            &labels
        ));
        assert!(!selector_matches(
            Some(&json!({"matchLabels": {"app": "y"}})),
            &labels
        ));
    }

    #[test]
    fn rules() {
        let all = json!({"rules": [{"operations": ["DELETE"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"], "scope": "*"}]});
        assert!(rules_match(&all, configmaps(), "DELETE"));
        assert!(!rules_match(&all, configmaps(), "CREATE"));
        let sub_only = json!({"rules": [{"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps/status"]}]});
        assert!(!rules_match(&sub_only, configmaps(), "DELETE"));
        let cluster = json!({"rules": [{"operations": ["DELETE"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"], "scope": "Cluster"}]});
        assert!(!rules_match(&cluster, configmaps(), "DELETE"));
    }

    #[test]
    fn match_conditions_are_real_cel() {
        let w = json!({"matchConditions": [{"name": "not-fleet", "expression":
            "!request.userInfo.groups.exists(g, g in [\"system:serviceaccounts:cattle-fleet-system\"])"}]});
        let old = json!({"kind": "ConfigMap", "metadata": {"name": "a", "namespace": "default"}});
        let alice = UserInfo::new("alice", &["system:authenticated"]);
        let agent = UserInfo::service_account("cattle-fleet-system", "fleet-agent");
        let req = |user| DeleteRequest {
            rd: configmaps(),
            namespace: "default",
            name: "a",
            old: &old,
            user,
            dry_run: false,
            options: &Value::Null,
        };
        assert_eq!(match_conditions(&w, &req(&alice)), Ok(true));
        assert_eq!(match_conditions(&w, &req(&agent)), Ok(false));
        let by_name = json!({"matchConditions": [{"name": "n", "expression": "oldObject.metadata.name == 'a' && request.operation == 'DELETE'"}]});
        assert_eq!(match_conditions(&by_name, &req(&alice)), Ok(true));
        let broken = json!({"matchConditions": [{"name": "b", "expression": "oldObject.metadata.nope.deeper == 1"}]});
        assert!(match_conditions(&broken, &req(&alice)).is_err());
        let false_wins = json!({"matchConditions": [
            {"name": "b", "expression": "oldObject.metadata.nope.deeper == 1"},
            {"name": "f", "expression": "false"}]});
        assert_eq!(
            match_conditions(&false_wins, &req(&alice)),
            Ok(false),
            "a false condition wins over an error"
        );
    }

    #[test]
    fn map_keys_are_not_escaped_as_on_the_apiserver() {
        let expr = "oldObject != null && has(oldObject.metadata.annotations) && \
            'objectset.rio.cattle.io/id' in oldObject.metadata.annotations && \
            oldObject.metadata.annotations['objectset.rio.cattle.io/id'].startsWith('default-')";
        let w = json!({"matchConditions": [{"name": "a", "expression": expr}]});
        let alice = UserInfo::new("alice", &["system:authenticated"]);
        let check = |old: Value| {
            let req = DeleteRequest {
                rd: configmaps(),
                namespace: "default",
                name: "a",
                old: &old,
                user: &alice,
                dry_run: false,
                options: &Value::Null,
            };
            match_conditions(&w, &req)
        };
        assert_eq!(
            check(json!({"kind": "ConfigMap", "metadata": {"name": "a",
                "annotations": {"objectset.rio.cattle.io/id": "default-x"}}})),
            Ok(true)
        );
        assert_eq!(
            check(json!({"kind": "ConfigMap", "metadata": {"name": "a",
                "annotations": {"objectset.rio.cattle.io/id": "cluster-registration"}}})),
            Ok(false)
        );
        assert_eq!(
            check(json!({"kind": "ConfigMap", "metadata": {"name": "a"}})),
            Ok(false),
            "no annotations: has() is false, no error"
        );
        let not_bool = json!({"matchConditions": [{"name": "n", "expression": "1 + 1"}]});
        let old = json!({"kind": "ConfigMap", "metadata": {"name": "a"}});
        let req = DeleteRequest {
            rd: configmaps(),
            namespace: "default",
            name: "a",
            old: &old,
            user: &alice,
            dry_run: false,
            options: &Value::Null,
        };
        assert!(match_conditions(&not_bool, &req).is_err());
    }

    #[test]
    fn warning_headers_are_quoted() {
        assert_eq!(warning_header("a \"b\" \\ c"), r#"299 - "a \"b\" \\ c""#);
    }

    #[test]
    fn audit_timestamps() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_112_345_123_456);
        assert_eq!(rfc3339_micros(t), "2025-11-25T23:12:25.123456Z");
    }
}
