//! The HTTP side: accept loop, routing, handlers, watch streams, discovery.

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::FutureExt;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::admission::{self, DeleteRequest, RequestInfo};
use crate::auth::{self, Attributes, UserInfo};
use crate::faults::FaultAction;
use crate::log::{Origin, RequestRecord, Verb};
use crate::resources::ResourceDef;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{success_status, ApiError};
use crate::store::{event_line, Key, PatchType, WatchFrom, WatchMsg};
use crate::util::{hex_decode, hex_encode};
use crate::{lock, Shared};

pub(crate) struct Running {
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) task: JoinHandle<()>,
}

#[derive(Clone)]
struct Ctx {
    sh: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
}

/// Resolves once the flag is true (or its sender is gone).
async fn until_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

pub(crate) fn spawn(sh: Arc<Shared>, listener: TcpListener) -> Running {
    let (tx, rx) = watch::channel(false);
    let router = Router::new().fallback(handle).with_state(Ctx {
        sh: sh.clone(),
        shutdown: rx.clone(),
    });
    let grace = sh.opts.shutdown_grace;
    let tls = sh
        .tls
        .as_ref()
        .map(|t| tokio_rustls::TlsAcceptor::from(t.config.clone()));
    let task = sh
        .runtime
        .spawn(accept_loop(listener, router, rx, grace, tls));
    Running { shutdown: tx, task }
}

/// Serves one connection (plain or TLS) until it ends or the server shuts down.
async fn serve_conn<S>(io: S, router: Router, mut crx: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = TowerToHyperService::new(router);
    let conn = http1::Builder::new().serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = until_true(&mut crx) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.as_mut().await;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    mut rx: watch::Receiver<bool>,
    grace: Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = until_true(&mut rx) => break,
            acc = listener.accept() => match acc {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let router = router.clone();
                    let crx = rx.clone();
                    let tls = tls.clone();
                    conns.spawn(async move {
                        match tls {
                            Some(acceptor) => {
                                let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await;
                                if let Ok(Ok(stream)) = handshake {
                                    serve_conn(stream, router, crx).await;
                                }
                            }
                            None => serve_conn(stream, router, crx).await,
                        }
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

// ---------------------------------------------------------------------- routing

#[derive(Clone, Debug)]
enum Target {
    Version,
    ApiVersions,
    ApiGroups,
    ResourceList {
        group: String,
        version: String,
    },
    Resource {
        res: usize,
        ns: Option<String>,
        name: Option<String>,
        sub: Option<String>,
    },
    Unknown,
}

fn parse_target(sh: &Shared, path: &str) -> Target {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => Target::Version,
        ["api"] => Target::ApiVersions,
        ["apis"] => Target::ApiGroups,
        ["api", v, rest @ ..] => resource_target(sh, "", v, rest),
        ["apis", g, v, rest @ ..] => resource_target(sh, g, v, rest),
        _ => Target::Unknown,
    }
}

fn resource_target(sh: &Shared, group: &str, version: &str, rest: &[&str]) -> Target {
    let rt = &sh.rt;
    if rest.is_empty() {
        return if rt
            .group_versions()
            .iter()
            .any(|(g, v)| g == group && v == version)
        {
            Target::ResourceList {
                group: group.to_string(),
                version: version.to_string(),
            }
        } else {
            Target::Unknown
        };
    }
    if rest.len() >= 3 && rest[0] == "namespaces" {
        if let Some(res) = rt.by_path(group, version, rest[2]) {
            if rt.get(res).namespaced {
                if rest.len() > 5 {
                    return Target::Unknown;
                }
                return Target::Resource {
                    res,
                    ns: Some(rest[1].to_string()),
                    name: rest.get(3).map(|s| s.to_string()),
                    sub: rest.get(4).map(|s| s.to_string()),
                };
            }
        }
    }
    match rt.by_path(group, version, rest[0]) {
        Some(res) if rest.len() <= 3 => Target::Resource {
            res,
            ns: None,
            name: rest.get(1).map(|s| s.to_string()),
            sub: rest.get(2).map(|s| s.to_string()),
        },
        _ => Target::Unknown,
    }
}

/// Query parameters; the last occurrence wins for `get`.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(uri: &Uri) -> Self {
        Params(
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
                .map(|q| q.0)
                .unwrap_or_default(),
        )
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
    fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    fn flag(&self, k: &str) -> Option<bool> {
        self.get(k)
            .map(|v| matches!(v, "true" | "1" | "t" | "T" | "True" | "TRUE"))
    }
}

fn verb_for(method: &Method, target: &Target, watch: bool) -> Verb {
    match target {
        Target::Version | Target::ApiVersions | Target::ApiGroups | Target::ResourceList { .. } => {
            Verb::Discovery
        }
        Target::Unknown => Verb::Unknown,
        Target::Resource { name, .. } => match (method.as_str(), name.is_some()) {
            ("GET", false) if watch => Verb::Watch,
            ("GET", false) => Verb::List,
            ("GET", true) => Verb::Get,
            ("POST", _) => Verb::Create,
            ("PUT", _) => Verb::Update,
            ("PATCH", _) => Verb::Patch,
            ("DELETE", false) => Verb::DeleteCollection,
            ("DELETE", true) => Verb::Delete,
            _ => Verb::Unknown,
        },
    }
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = (code, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

// ---------------------------------------------------------------------- handler

async fn handle(State(ctx): State<Ctx>, req: Request) -> Response {
    match AssertUnwindSafe(handle_inner(ctx, req))
        .catch_unwind()
        .await
    {
        Ok(r) => r,
        Err(_) => {
            ApiError::internal("the api double panicked while handling the request").into_response()
        }
    }
}

async fn handle_inner(ctx: Ctx, req: Request) -> Response {
    let sh = ctx.sh.clone();
    let latency = *lock(&sh.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (parts, body) = req.into_parts();
    let params = Params::parse(&parts.uri);
    let target = parse_target(&sh, parts.uri.path());
    let verb = verb_for(
        &parts.method,
        &target,
        params.flag("watch").unwrap_or(false),
    );
    let bytes = axum::body::to_bytes(body, sh.opts.max_body_bytes).await;
    let (gvr, ns, name, sub) = match &target {
        Target::Resource { res, ns, name, sub } => (
            Some(sh.rt.get(*res).gvr.clone()),
            ns.clone(),
            name.clone(),
            sub.clone(),
        ),
        _ => (None, None, None, None),
    };
    let header_str = |h: &HeaderMap, k: header::HeaderName| {
        h.get(k).and_then(|v| v.to_str().ok()).map(String::from)
    };
    let authenticated = authenticate(&sh, &parts.headers);
    let user = authenticated
        .clone()
        .unwrap_or_else(|_| UserInfo::anonymous());
    let rec = RequestRecord {
        seq: 0,
        at: Duration::ZERO,
        origin: Origin::Client,
        method: parts.method.to_string(),
        verb,
        gvr: gvr.clone(),
        subresource: sub,
        namespace: ns,
        name: name.clone(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        content_type: header_str(&parts.headers, header::CONTENT_TYPE),
        accept: header_str(&parts.headers, header::ACCEPT),
        user_agent: header_str(&parts.headers, header::USER_AGENT),
        user: Some(user.username.clone()),
        body: bytes
            .as_ref()
            .ok()
            .filter(|b| !b.is_empty())
            .and_then(|b| serde_json::from_slice(b).ok()),
        status: None,
        faulted: false,
    };
    if let Err(e) = authenticated {
        let seq = sh.log_request(rec);
        sh.log_finish(seq, e.code, false);
        return e.into_response();
    }
    if let Some(e) = authorization_error(&sh, &user, &target, verb, &params) {
        let seq = sh.log_request(rec);
        sh.log_finish(seq, e.code, false);
        return e.into_response();
    }
    let rc = ReqCtx {
        user,
        info: RequestInfo {
            uri: match parts.uri.query() {
                Some(q) => format!("{}?{q}", parts.uri.path()),
                None => parts.uri.path().to_string(),
            },
            user_agent: header_str(&parts.headers, header::USER_AGENT).unwrap_or_default(),
            received: Some(std::time::SystemTime::now()),
        },
    };
    let fault = sh.take_fault(&rec);
    let seq = sh.log_request(rec);
    let Ok(bytes) = bytes else {
        let e = ApiError::new(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        );
        sh.log_finish(seq, 413, false);
        return e.into_response();
    };
    let faulted = fault.is_some();
    let resp = match fault {
        Some(FaultAction::Respond {
            code,
            message,
            retry_after,
        }) => {
            let mut e = ApiError::for_code(code, gvr.as_ref(), name.as_deref().unwrap_or(""));
            if let Some(m) = message {
                e.message = m;
            }
            e.with_retry_after(retry_after).into_response()
        }
        Some(FaultAction::Hang) => {
            let mut rx = ctx.shutdown.clone();
            tokio::select! {
                _ = until_true(&mut rx) => {}
                _ = tokio::time::sleep(sh.opts.max_hang) => {}
            }
            ApiError::for_code(503, None, "").into_response()
        }
        delay @ (Some(FaultAction::Delay(_)) | None) => {
            if let Some(FaultAction::Delay(d)) = delay {
                tokio::time::sleep(d).await;
            }
            serve(
                &ctx,
                &rc,
                target,
                &parts.method,
                &parts.headers,
                &params,
                bytes,
            )
            .await
        }
    };
    sh.log_finish(seq, resp.status().as_u16(), faulted);
    resp
}

/// Who asks, and how the request looked (for admission and audit).
struct ReqCtx {
    user: UserInfo,
    info: RequestInfo,
}

/// The user of a bearer token; anonymous without one; 401 for an unknown one.
fn authenticate(sh: &Shared, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(UserInfo::anonymous());
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    token
        .and_then(|t| lock(&sh.auth).tokens.get(t).cloned())
        .ok_or_else(auth::unauthorized)
}

/// RBAC, when enforced; discovery is open to everyone.
fn authorization_error(
    sh: &Shared,
    user: &UserInfo,
    target: &Target,
    verb: Verb,
    params: &Params,
) -> Option<ApiError> {
    if !lock(&sh.auth).enforce_rbac {
        return None;
    }
    let Target::Resource { res, ns, name, sub } = target else {
        return None;
    };
    let gvr = sh.rt.get(*res).gvr.clone();
    // kube-apiserver's RequestInfoFactory: a list or watch with a `metadata.name=X`
    // field selector is authorized as a request for the object X (resourceNames apply).
    let selected = match verb.as_str() {
        "list" | "watch" if name.is_none() => params.get("fieldSelector").and_then(selected_name),
        _ => None,
    };
    let attrs = Attributes {
        verb: verb.as_str(),
        gvr: &gvr,
        subresource: sub.as_deref(),
        namespace: ns.as_deref(),
        name: name.as_deref().or(selected.as_deref()),
    };
    let allowed = auth::authorize(&sh.db(), user, &attrs);
    (!allowed).then(|| auth::forbidden(user, &attrs))
}

/// `X` of a field selector that is exactly `metadata.name=X` (or `==X`).
fn selected_name(selector: &str) -> Option<String> {
    let mut terms = selector.split(',');
    let term = terms.next()?.trim();
    if terms.next().is_some() {
        return None;
    }
    let value = term
        .strip_prefix("metadata.name==")
        .or_else(|| term.strip_prefix("metadata.name="))?;
    (!value.is_empty()).then(|| value.to_string())
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(v) = HeaderValue::from_bytes(admission::warning_header(w).as_bytes()) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

async fn serve(
    ctx: &Ctx,
    rc: &ReqCtx,
    target: Target,
    method: &Method,
    headers: &HeaderMap,
    params: &Params,
    body: Bytes,
) -> Response {
    let sh = &ctx.sh;
    let result = match target {
        Target::Unknown => Err(ApiError::path_not_found()),
        Target::Version | Target::ApiVersions | Target::ApiGroups | Target::ResourceList { .. } => {
            if method != Method::GET {
                Err(ApiError::method_not_allowed())
            } else {
                Ok(json_response(StatusCode::OK, &discovery(sh, &target)))
            }
        }
        Target::Resource { res, ns, name, sub } => {
            resource(ctx, rc, res, ns, name, sub, method, headers, params, body).await
        }
    };
    match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
    })
}

#[allow(clippy::too_many_arguments)]
async fn resource(
    ctx: &Ctx,
    rc: &ReqCtx,
    res: usize,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
    method: &Method,
    headers: &HeaderMap,
    params: &Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let sh = &ctx.sh;
    let rd = sh.rt.get(res).clone();
    if rd.namespaced && ns.is_none() && name.is_some() {
        return Err(ApiError::path_not_found());
    }
    if let Some(s) = &sub {
        if s != "status" || !rd.status_subresource {
            return Err(ApiError::path_not_found());
        }
        if !(method == Method::GET || method == Method::PUT || method == Method::PATCH) {
            return Err(ApiError::method_not_allowed());
        }
    }
    let status_only = sub.is_some();
    let dry_run = {
        let all = params.all("dryRun");
        if all.iter().any(|v| *v != "All") {
            return Err(ApiError::bad_request(format!(
                "Invalid dry run value: {all:?}"
            )));
        }
        !all.is_empty()
    };
    let ns_str = ns.clone().unwrap_or_default();
    let metadata_only = wants_metadata_only(headers);
    match (method.as_str(), name) {
        ("GET", None) => {
            if params.flag("watch").unwrap_or(false) {
                watch(ctx, res, ns, params, metadata_only)
            } else {
                list(sh, &rd, res, ns.as_deref(), params, metadata_only)
            }
        }
        ("GET", Some(n)) => sh
            .db()
            .get(res, &ns_str, &n)
            .map(|o| {
                if metadata_only && !status_only {
                    json_response(StatusCode::OK, &partial_object_metadata(o))
                } else {
                    json_response(StatusCode::OK, o)
                }
            })
            .ok_or_else(|| ApiError::not_found(&rd.gvr, &n)),
        ("POST", None) => {
            if rd.namespaced && ns.is_none() {
                return Err(ApiError::method_not_allowed());
            }
            let obj = parse_body(&body)?;
            let out = sh.write(|db| db.create(res, &ns_str, obj, dry_run))?;
            Ok(json_response(StatusCode::CREATED, &out.object))
        }
        ("PUT", Some(n)) => {
            let obj = parse_body(&body)?;
            let out = sh.write(|db| db.update(res, &ns_str, &n, obj, status_only, dry_run))?;
            Ok(json_response(StatusCode::OK, &out.object))
        }
        ("PATCH", Some(n)) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let media = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            let ptype = match media.as_str() {
                "application/merge-patch+json" => PatchType::Merge,
                "application/json-patch+json" => PatchType::Json,
                "application/apply-patch+yaml" => PatchType::Apply,
                // approximated as a merge patch for built-in kinds (no merge keys)
                "application/strategic-merge-patch+json" if !rd.custom => PatchType::Merge,
                _ => return Err(ApiError::unsupported_media_type(ct)),
            };
            if matches!(ptype, PatchType::Apply)
                && params.get("fieldManager").is_none_or(str::is_empty)
            {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            let patch = parse_body(&body)?;
            let out =
                sh.write(|db| db.patch(res, &ns_str, &n, ptype, &patch, status_only, dry_run))?;
            let code = if out.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(json_response(code, &out.object))
        }
        ("DELETE", Some(n)) => {
            let opts = if body.is_empty() {
                json!({})
            } else {
                parse_body(&body)?
            };
            let dry_run = dry_run || body_dry_run(&opts)?;
            let old = sh
                .db()
                .get(res, &ns_str, &n)
                .cloned()
                .ok_or_else(|| ApiError::not_found(&rd.gvr, &n))?;
            let request = DeleteRequest {
                rd: &rd,
                namespace: &ns_str,
                name: &n,
                old: &old,
                user: &rc.user,
                dry_run,
                options: &opts,
            };
            let admitted = match admission::validate_delete(sh, &request).await {
                Ok(a) => a,
                Err((e, a)) => {
                    admission::record_audit(
                        sh,
                        &rc.info,
                        "delete",
                        &rd,
                        &ns_str,
                        &n,
                        &rc.user,
                        e.code,
                        &a.annotations,
                    );
                    return Err(e);
                }
            };
            let result = sh.write(|db| db.delete(res, &ns_str, &n, &opts, dry_run));
            let code = result.as_ref().map(|_| 200).unwrap_or_else(|e| e.code);
            admission::record_audit(
                sh,
                &rc.info,
                "delete",
                &rd,
                &ns_str,
                &n,
                &rc.user,
                code,
                &admitted.annotations,
            );
            let out = result?;
            let resp = if out.removed && !rd.custom {
                let uid = crate::store::meta_str(&out.object, "uid").map(String::from);
                json_response(StatusCode::OK, &success_status(&rd.gvr, &n, uid.as_deref()))
            } else {
                json_response(StatusCode::OK, &out.object)
            };
            Ok(with_warnings(resp, &admitted.warnings))
        }
        ("DELETE", None) => {
            let opts = if body.is_empty() {
                json!({})
            } else {
                parse_body(&body)?
            };
            let dry_run = dry_run || body_dry_run(&opts)?;
            let (labels, fields) = selectors(params)?;
            let items: Vec<(Key, Value)> = sh
                .db()
                .iter(res, ns.as_deref())
                .filter(|(_, o)| labels.matches(o) && fields.matches(o))
                .map(|(k, o)| (k.clone(), o.clone()))
                .collect();
            // One review per item, with an empty name, as kube-apiserver sends them.
            let mut deleted = Vec::new();
            let mut warnings: Vec<String> = Vec::new();
            let mut annotations = std::collections::BTreeMap::new();
            for ((kns, kname), old) in &items {
                let request = DeleteRequest {
                    rd: &rd,
                    namespace: kns,
                    name: "",
                    old,
                    user: &rc.user,
                    dry_run,
                    options: &opts,
                };
                match admission::validate_delete(sh, &request).await {
                    Ok(a) => {
                        for w in a.warnings {
                            if !warnings.contains(&w) {
                                warnings.push(w);
                            }
                        }
                        annotations.extend(a.annotations);
                    }
                    Err((e, a)) => {
                        annotations.extend(a.annotations);
                        admission::record_audit(
                            sh,
                            &rc.info,
                            "deletecollection",
                            &rd,
                            &ns_str,
                            "",
                            &rc.user,
                            e.code,
                            &annotations,
                        );
                        return Err(e);
                    }
                }
                match sh.write(|db| db.delete(res, kns, kname, &opts, dry_run)) {
                    Ok(out) => deleted.push(out.object),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            admission::record_audit(
                sh,
                &rc.info,
                "deletecollection",
                &rd,
                &ns_str,
                "",
                &rc.user,
                200,
                &annotations,
            );
            let resp = if rd.custom {
                let rv = sh.db().rv.to_string();
                json_response(
                    StatusCode::OK,
                    &json!({"apiVersion": rd.api_version(), "kind": rd.list_kind(), "metadata": {"resourceVersion": rv}, "items": deleted}),
                )
            } else {
                json_response(
                    StatusCode::OK,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
                )
            };
            Ok(with_warnings(resp, &warnings))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// `DeleteOptions.dryRun` in the body (kube-rs sends it there rather than in the query).
fn body_dry_run(opts: &Value) -> Result<bool, ApiError> {
    match opts.get("dryRun") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Array(a)) if a.iter().all(|v| v == "All") => Ok(!a.is_empty()),
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid dry run value: {other}"
        ))),
    }
}

fn selectors(params: &Params) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(params.get("labelSelector").unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(params.get("fieldSelector").unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

/// `Accept: application/json;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`, as
/// kube's `list_metadata`, `get_metadata` and `metadata_watcher` send it: answer with the
/// objects' metadata only, as kube-apiserver does.
fn wants_metadata_only(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            let mut params = media.split(';').map(str::trim).skip(1);
            params.any(|p| p == "as=PartialObjectMetadata" || p == "as=PartialObjectMetadataList")
        })
}

/// An object as a `meta.k8s.io/v1` `PartialObjectMetadata`.
pub(crate) fn partial_object_metadata(o: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

fn list(
    sh: &Shared,
    rd: &ResourceDef,
    res: usize,
    ns: Option<&str>,
    params: &Params,
    metadata_only: bool,
) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(params)?;
    let limit = match params.get("limit") {
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?
            .max(0) as usize,
        None => 0,
    };
    let db = sh.db();
    let (list_rv, after): (u64, Option<Key>) =
        match params.get("continue").filter(|c| !c.is_empty()) {
            Some(tok) => {
                let bad = || ApiError::bad_request(format!("continue key is not valid: {tok}"));
                let raw = hex_decode(tok).ok_or_else(bad)?;
                let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
                let rv = v.get(0).and_then(Value::as_u64).ok_or_else(bad)?;
                let kns = v
                    .get(1)
                    .and_then(Value::as_str)
                    .ok_or_else(bad)?
                    .to_string();
                let kname = v
                    .get(2)
                    .and_then(Value::as_str)
                    .ok_or_else(bad)?
                    .to_string();
                if rv < db.floor {
                    return Err(ApiError::expired(CONTINUE_EXPIRED));
                }
                (rv, Some((kns, kname)))
            }
            None => (db.rv, None),
        };
    // Items are serialized from the store in place (no copy), except the
    // metadata-only ones, which are new objects.
    let mut items: Vec<Cow<'_, Value>> = Vec::new();
    let mut last_key: Option<Key> = None;
    let mut remaining = 0usize;
    let selected =
        |k: &Key, o: &Value| ns.is_none_or(|n| n == k.0) && labels.matches(o) && fields.matches(o);
    let mut rest = db.iter_after(res, after);
    for (k, o) in rest.by_ref() {
        if !selected(k, o) {
            continue;
        }
        if limit > 0 && items.len() >= limit {
            remaining = 1;
            break;
        }
        items.push(if metadata_only {
            Cow::Owned(partial_object_metadata(o))
        } else {
            Cow::Borrowed(o)
        });
        last_key = Some(k.clone());
    }
    // As kube-apiserver: the exact count only without selectors; with them, only
    // whether there is more (found above).
    if remaining > 0 && labels.is_empty() && fields.is_empty() {
        remaining += rest.filter(|(k, o)| selected(k, o)).count();
    }
    let mut meta = json!({"resourceVersion": list_rv.to_string()});
    if remaining > 0 {
        if let Some((kns, kname)) = last_key {
            let tok = serde_json::to_vec(&json!([list_rv, kns, kname])).unwrap_or_default();
            meta["continue"] = json!(hex_encode(&tok));
            if labels.is_empty() && fields.is_empty() {
                meta["remainingItemCount"] = json!(remaining);
            }
        }
    }
    let (api_version, kind) = if metadata_only {
        (
            "meta.k8s.io/v1".to_string(),
            "PartialObjectMetadataList".to_string(),
        )
    } else {
        (rd.api_version(), rd.list_kind())
    };
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct List<'a> {
        api_version: String,
        kind: String,
        metadata: Value,
        items: Vec<Cow<'a, Value>>,
    }
    let body = serde_json::to_vec(&List {
        api_version,
        kind,
        metadata: meta,
        items,
    })
    .map_err(|e| ApiError::internal(format!("cannot encode the list: {e}")))?;
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

// ---------------------------------------------------------------------- watch

fn watch(
    ctx: &Ctx,
    res: usize,
    ns: Option<String>,
    params: &Params,
    metadata_only: bool,
) -> Result<Response, ApiError> {
    let sh = ctx.sh.clone();
    let (labels, fields) = selectors(params)?;
    let rv = params.get("resourceVersion").unwrap_or("");
    let send_initial = params.flag("sendInitialEvents");
    let bookmarks = params.flag("allowWatchBookmarks").unwrap_or(false);
    // kube-apiserver's validation of a watch's list options (found by the conformance
    // test against it): sendInitialEvents needs resourceVersionMatch=NotOlderThan, and
    // resourceVersionMatch needs sendInitialEvents.
    let rv_match = params.get("resourceVersionMatch").unwrap_or("");
    let forbidden = |detail: &str| {
        ApiError::new(
            422,
            "Invalid",
            format!("ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: {detail}"),
        )
    };
    if send_initial.is_some() && rv_match != "NotOlderThan" {
        return Err(forbidden(
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ));
    }
    if !rv_match.is_empty() && send_initial.is_none() {
        return Err(forbidden(
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        ));
    }
    let from = if rv.is_empty() || rv == "0" {
        WatchFrom::Now {
            initial_events: send_initial != Some(false),
            end_bookmark: send_initial == Some(true),
        }
    } else {
        WatchFrom::After(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?,
        )
    };
    let timeout = match params.get("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
        ),
        None => Duration::from_secs(1800),
    };
    if *ctx.shutdown.borrow() {
        return Err(ApiError::for_code(503, None, ""));
    }
    let registered = sh.db().watch(res, ns, labels, fields, from);
    let (id, rx) = match registered {
        Ok(r) => r,
        Err(e) => {
            // the apiserver answers 200 and reports the error as the stream's only event
            let line = event_line("ERROR", &e.to_status());
            return Ok(stream_response(Body::from(line)));
        }
    };
    let bookmark_timer = match (bookmarks, sh.opts.bookmark_interval) {
        (true, Some(every)) if !every.is_zero() => Some(tokio::time::interval_at(
            tokio::time::Instant::now() + every,
            every,
        )),
        _ => None,
    };
    let state = WatchState {
        rx,
        deadline: Box::pin(tokio::time::sleep(timeout)),
        bookmarks: bookmark_timer,
        shutdown: ctx.shutdown.clone(),
        guard: WatchGuard { sh, id },
        done: false,
        metadata_only,
    };
    Ok(stream_response(Body::from_stream(watch_stream(state))))
}

/// A watch event line with its object reduced to `PartialObjectMetadata` (ERROR events,
/// whose object is a Status, pass unchanged).
fn metadata_only_event(line: Bytes) -> Bytes {
    let Ok(mut event) = serde_json::from_slice::<Value>(&line) else {
        return line;
    };
    if event.get("type").and_then(Value::as_str) == Some("ERROR") {
        return line;
    }
    if let Some(object) = event.get_mut("object") {
        *object = partial_object_metadata(object);
    }
    match serde_json::to_vec(&event) {
        Ok(mut v) => {
            v.push(b'\n');
            Bytes::from(v)
        }
        Err(_) => line,
    }
}

fn stream_response(body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

struct WatchGuard {
    sh: Arc<Shared>,
    id: u64,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.sh.db().remove_watch(self.id);
    }
}

struct WatchState {
    rx: UnboundedReceiver<WatchMsg>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    bookmarks: Option<tokio::time::Interval>,
    shutdown: watch::Receiver<bool>,
    guard: WatchGuard,
    done: bool,
    /// Send each event's object as `PartialObjectMetadata`.
    metadata_only: bool,
}

enum Step {
    Msg(Option<WatchMsg>),
    End,
    Tick,
}

fn watch_stream(state: WatchState) -> impl futures::Stream<Item = Result<Bytes, io::Error>> + Send {
    futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let step = {
                let WatchState {
                    rx,
                    deadline,
                    bookmarks,
                    shutdown,
                    ..
                } = &mut st;
                let tick = async {
                    match bookmarks.as_mut() {
                        Some(i) => {
                            i.tick().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    biased;
                    m = rx.recv() => Step::Msg(m),
                    _ = until_true(shutdown) => Step::End,
                    _ = deadline.as_mut() => Step::End,
                    _ = tick => Step::Tick,
                }
            };
            match step {
                Step::Msg(Some(WatchMsg::Line(b))) => {
                    let line = if st.metadata_only {
                        metadata_only_event(b)
                    } else {
                        b
                    };
                    return Some((Ok(line), st));
                }
                Step::Msg(Some(WatchMsg::Abort)) => {
                    st.done = true;
                    return Some((
                        Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            "watch dropped by the api double",
                        )),
                        st,
                    ));
                }
                Step::Msg(None) | Step::End => return None,
                Step::Tick => {
                    let id = st.guard.id;
                    if !st.guard.sh.db().send_bookmark(id) {
                        return None;
                    }
                }
            }
        }
    })
}

// ---------------------------------------------------------------------- discovery

fn discovery(sh: &Shared, target: &Target) -> Value {
    match target {
        Target::Version => json!({
            "major": "1",
            "minor": "33",
            "gitVersion": "v1.33.0-api-double",
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "go1.24",
            "compiler": "gc",
            "platform": "linux/amd64"
        }),
        Target::ApiVersions => json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": lock(&sh.addr).to_string()}]
        }),
        Target::ApiGroups => {
            let mut groups: Vec<Value> = Vec::new();
            for (g, v) in sh.rt.group_versions() {
                if g.is_empty() {
                    continue;
                }
                let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
                match groups.iter_mut().find(|x| x["name"] == json!(g)) {
                    Some(x) => {
                        if let Some(a) = x["versions"].as_array_mut() {
                            a.push(gv);
                        }
                    }
                    None => groups
                        .push(json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})),
                }
            }
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        Target::ResourceList { group, version } => {
            let mut resources = Vec::new();
            for d in sh
                .rt
                .all()
                .iter()
                .filter(|d| d.gvr.group == *group && d.gvr.version == *version)
            {
                let mut entry = json!({
                    "name": d.gvr.resource,
                    "singularName": d.kind.to_lowercase(),
                    "namespaced": d.namespaced,
                    "kind": d.kind,
                    "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                });
                let short = crate::resources::short_names(&d.gvr);
                if !short.is_empty() {
                    entry["shortNames"] = json!(short);
                }
                resources.push(entry);
                if d.status_subresource {
                    resources.push(json!({
                        "name": format!("{}/status", d.gvr.resource),
                        "singularName": "",
                        "namespaced": d.namespaced,
                        "kind": d.kind,
                        "verbs": ["get", "patch", "update"],
                    }));
                }
            }
            let gv = if group.is_empty() {
                version.clone()
            } else {
                format!("{group}/{version}")
            };
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
        }
        _ => json!({}),
    }
}
