//! A Kubernetes API server double for fleet-delete-guard's tests.
//!
//! [`ApiDouble`] is a plain-HTTP server on `127.0.0.1` that speaks the Kubernetes REST
//! protocol a kube-rs `Client` uses (GET/LIST/WATCH/POST/PUT/PATCH/DELETE, `/status`,
//! label and field selectors, pagination, resourceVersion preconditions, `Status` errors,
//! watch resumption with `410 Expired`), keeps objects in memory, and lets tests inject
//! faults, observe requests, await object states and imitate controllers with hooks.
//!
//! ```no_run
//! # async fn demo() {
//! use kube_api_double::{gvr, ApiDouble, Options};
//! let double = ApiDouble::start(Options::default()).await;
//! double.seed(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
//!     "metadata": {"name": "a", "namespace": "default"}})).unwrap();
//! let config = kube::Config::new(double.url().parse().unwrap()); // then Client::try_from(config)
//! # }
//! ```
//!
//! # Semantics worth knowing
//! - One global resourceVersion counter (starts at [`Options::initial_resource_version`]);
//!   every committed write bumps it. A write that changes nothing (after the subresource
//!   rules) is a no-op: no new resourceVersion, no watch event, no hook call.
//! - `metadata.resourceVersion` in a PUT body or in the result of a PATCH is a precondition
//!   (409 `Conflict`). JSON patch failures (a failed `test` included) are 422 `Invalid`.
//! - Kinds with a status subresource: `.status` is dropped on create, ignored on the main
//!   resource, and the only thing `/status` writes change. `metadata.generation` is bumped
//!   when anything outside `metadata`/`status` changes (CRDs and Deployments).
//! - DELETE: finalizers → only `deletionTimestamp` (MODIFIED); removing the last finalizer
//!   of a terminating object deletes it (DELETED). CRDs answer with the object, built-ins
//!   with a success `Status`. `dryRun=All` (query or DeleteOptions body) changes nothing.
//! - Watches: `resourceVersion` unset/"0" → synthetic ADDED for the current state (plus the
//!   `k8s.io/initial-events-end` BOOKMARK with `sendInitialEvents=true`, which needs
//!   `resourceVersionMatch=NotOlderThan`, as `resourceVersionMatch` needs it: else 422);
//!   a resourceVersion older than the retained history (or than the double: its history
//!   starts at resourceVersion 1000, like a cluster whose older history was compacted) →
//!   HTTP 200 with one ERROR event (410 `Expired`).
//!   Objects entering/leaving a selector are ADDED/DELETED for that watch.
//!   [`ApiDouble::restart`] and [`ApiDouble::compact`] drop the history.
//!
//! # Authentication, RBAC, admission webhooks, audit (for the end-to-end tests)
//! - [`Options::https`] serves TLS with a generated CA ([`ApiDouble::ca_pem`]; the
//!   kubeconfigs carry it). kubectl sends bearer tokens only over HTTPS.
//! - Bearer tokens map to users ([`ApiDouble::add_token`]; [`DEFAULT_TOKEN`] is an
//!   administrator in `system:masters`); no token is `system:anonymous`, an unknown one 401.
//! - [`ApiDouble::enforce_rbac`] authorizes every resource request against the stored
//!   ClusterRoles, ClusterRoleBindings, Roles and RoleBindings as kube-apiserver's RBAC
//!   authorizer does, answering 403 with its wording; [`ApiDouble::forbidden_requests`]
//!   lists the refusals. Discovery is open to all. No aggregated ClusterRoles.
//! - DELETE and DELETECOLLECTION call the stored ValidatingWebhookConfigurations' webhooks
//!   as kube-apiserver does (rules, namespaceSelector, objectSelector, matchConditions in
//!   real CEL, sideEffects and dryRun, HTTPS/1.1 trusting the caBundle, timeoutSeconds,
//!   failurePolicy; warnings as `Warning: 299 - "..."` headers, denials as the webhook's
//!   Status): see the `admission` module. Services are reached at the address given to
//!   [`ApiDouble::set_service_endpoint`]. [`ApiDouble::admission_calls`] records each call,
//!   [`ApiDouble::audit_events`] the audit.k8s.io/v1 events of DELETEs with the webhooks'
//!   audit annotations (and `failed-open…` ones).
//! - Served besides Fleet's kinds and the core ones: ServiceAccount, PodDisruptionBudget,
//!   ValidatingWebhookConfiguration and the RBAC kinds, with kubectl's short names.
//!
//! # Known gaps versus a real apiserver
//! No admission on CREATE/UPDATE/PATCH, no mutating webhooks, webhooks are called one
//! after the other (kube-apiserver calls validating webhooks in parallel), no
//! `authorizer` in CEL, no impersonation; no schema validation or defaulting; server-side
//! apply and strategic merge are plain RFC 7386 merges (no field ownership, no list merge
//! keys, no `managedFields` updates, YAML apply bodies are not parsed); no garbage collection
//! (ownerReferences, `propagationPolicy` ignored) and no namespace lifecycle (objects may live
//! in namespaces that do not exist); list pages after the first are read from the current
//! state (not a snapshot at the first page's resourceVersion); `resourceVersion` /
//! `resourceVersionMatch` on GET and LIST are ignored (always the latest); field selectors
//! support only `metadata.name` and `metadata.namespace`; no `Secret.stringData`
//! conversion; no protobuf/CBOR bodies (kubectl's `create configmap` sends protobuf: seed
//! such objects instead) or table output, no gzip, HTTP/1.1 only; watches without
//! `timeoutSeconds` last 30 minutes.

mod admission;
mod auth;
mod faults;
mod hooks;
mod log;
mod patch;
mod resources;
mod selector;
mod server;
mod status;
mod store;
mod util;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;

pub use admission::AdmissionCall;
pub use auth::{UserInfo, DEFAULT_TOKEN, DEFAULT_USER};
pub use faults::{Fault, FaultAction, FaultId};
pub use hooks::{HookFn, HookId, HookOptions, ObjectKey, StoreView, Write};
pub use log::{Origin, RequestRecord, Verb};
pub use patch::{json_patch, merge_patch, JsonPatchError};
pub use resources::{gvr, Gvr, ResourceDef, BUILTIN_RESOURCES};
pub use selector::{FieldSelector, LabelSelector};
pub use status::ApiError;
pub use store::EventType;

use faults::ActiveFault;
use hooks::HookEntry;
use resources::ResourceTable;
use store::{Committed, Db, PatchType};

/// How to start an [`ApiDouble`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Kinds served besides [`BUILTIN_RESOURCES`] (an entry with the same GVR replaces one).
    pub extra_resources: Vec<ResourceDef>,
    /// Watch events kept for resumption; watching from before the oldest gets `410 Expired`.
    pub history_limit: usize,
    /// Send a BOOKMARK this often on watches that allow bookmarks (`None`: never, except
    /// the `initial-events-end` bookmark of `sendInitialEvents=true`).
    pub bookmark_interval: Option<Duration>,
    /// Upper bound for [`Fault::hang`].
    pub max_hang: Duration,
    /// The first resourceVersion handed out is this plus one.
    pub initial_resource_version: u64,
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Request bodies above this get `413` (the apiserver's limit is 3 MiB).
    pub max_body_bytes: usize,
    /// How long `stop()` lets connections finish before cutting them.
    pub shutdown_grace: Duration,
    /// Serve HTTPS with a generated CA and a certificate for 127.0.0.1/localhost
    /// ([`ApiDouble::ca_pem`]). kubectl sends credentials (bearer tokens) only over
    /// HTTPS, so tests that need kubectl's user (RBAC, `userInfo`) use it.
    pub https: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            extra_resources: Vec::new(),
            history_limit: 10_000,
            bookmark_interval: None,
            max_hang: Duration::from_secs(120),
            initial_resource_version: 1000,
            port: 0,
            max_body_bytes: 3 * 1024 * 1024,
            shutdown_grace: Duration::from_millis(500),
            https: false,
        }
    }
}

/// A bounded wait ran out.
#[derive(Clone, Debug)]
pub struct Timeout {
    pub waited: Duration,
    pub what: String,
    /// The last value seen (the object for `wait_for`), to help a failing assertion.
    pub last: Option<Value>,
}

impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "timed out after {:?} waiting for {}",
            self.waited, self.what
        )?;
        if let Some(l) = &self.last {
            write!(f, "; last seen: {l}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Timeout {}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) struct Shared {
    pub(crate) rt: ResourceTable,
    pub(crate) db: Mutex<Db>,
    /// Bumped after every batch of committed writes.
    changed: watch::Sender<u64>,
    pub(crate) log: Mutex<Vec<RequestRecord>>,
    log_changed: watch::Sender<u64>,
    faults: Mutex<Vec<ActiveFault>>,
    pub(crate) latency: Mutex<Duration>,
    hooks: Mutex<Vec<HookEntry>>,
    hooks_in_flight: watch::Sender<usize>,
    next_id: AtomicU64,
    pub(crate) opts: Options,
    pub(crate) runtime: tokio::runtime::Handle,
    started: Instant,
    pub(crate) addr: Mutex<SocketAddr>,
    pub(crate) auth: Mutex<AuthState>,
    /// Where `Service` NAMESPACE/NAME is reached (what kube-proxy would do).
    pub(crate) endpoints: Mutex<HashMap<(String, String), SocketAddr>>,
    pub(crate) admission_log: Mutex<Vec<AdmissionCall>>,
    pub(crate) admission_changed: watch::Sender<u64>,
    /// audit.k8s.io/v1 Events of DELETE requests.
    pub(crate) audit: Mutex<Vec<Value>>,
    pub(crate) tls: Option<ServingTls>,
}

/// The double's own serving certificate (with [`Options::https`]).
pub(crate) struct ServingTls {
    pub(crate) config: Arc<rustls::ServerConfig>,
    pub(crate) ca_pem: String,
}

fn serving_tls() -> std::io::Result<ServingTls> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let err = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    let ca_key = KeyPair::generate().map_err(|e| err(&e))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| err(&e))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kube-api-double CA");
    let ca = ca_params.self_signed(&ca_key).map_err(|e| err(&e))?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().map_err(|e| err(&e))?;
    let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(|e| err(&e))?;
    let cert = params.signed_by(&key, &issuer).map_err(|e| err(&e))?;
    let chain = vec![CertificateDer::from_pem_slice(cert.pem().as_bytes()).map_err(|e| err(&e))?];
    let private =
        PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).map_err(|e| err(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&e))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| err(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServingTls {
        config: Arc::new(config),
        ca_pem: ca.pem(),
    })
}

/// Tokens and whether RBAC is enforced.
pub(crate) struct AuthState {
    pub(crate) tokens: HashMap<String, UserInfo>,
    pub(crate) enforce_rbac: bool,
}

impl Shared {
    pub(crate) fn db(&self) -> MutexGuard<'_, Db> {
        lock(&self.db)
    }

    /// Runs an operation on the locked store, then tells waiters and hooks what it committed.
    pub(crate) fn write<T>(self: &Arc<Self>, f: impl FnOnce(&mut Db) -> T) -> T {
        let (out, committed) = {
            let mut db = self.db();
            let out = f(&mut db);
            (out, std::mem::take(&mut db.pending))
        };
        if !committed.is_empty() {
            self.changed.send_modify(|v| *v += 1);
            self.fire_hooks(committed);
        }
        out
    }

    fn fire_hooks(self: &Arc<Self>, committed: Vec<Committed>) {
        for c in committed.into_iter().filter(|c| c.fire_hooks) {
            let matching: Vec<(HookOptions, Arc<HookFn>)> = lock(&self.hooks)
                .iter()
                .filter(|h| h.res == c.res && h.opts.events.contains(&c.ty))
                .map(|h| (h.opts.clone(), h.f.clone()))
                .collect();
            for (opts, f) in matching {
                self.hooks_in_flight.send_modify(|n| *n += 1);
                let sh = self.clone();
                let obj = c.object.clone();
                let ty = c.ty;
                self.runtime.spawn(async move {
                    struct Done(Arc<Shared>);
                    impl Drop for Done {
                        fn drop(&mut self) {
                            self.0
                                .hooks_in_flight
                                .send_modify(|n| *n = n.saturating_sub(1));
                        }
                    }
                    let done = Done(sh);
                    if !opts.delay.is_zero() {
                        tokio::time::sleep(opts.delay).await;
                    }
                    let writes = {
                        let db = done.0.db();
                        let view = StoreView { db: &db, event: ty };
                        std::panic::catch_unwind(AssertUnwindSafe(|| f(&view, &obj)))
                    };
                    match writes {
                        Ok(ws) => {
                            for w in ws {
                                done.0.apply_write(w, &opts.name);
                            }
                        }
                        Err(_) => tracing::error!(hook = %opts.name, "api double hook panicked"),
                    }
                });
            }
        }
    }

    /// Applies a hook's write as its own writer and logs it.
    fn apply_write(self: &Arc<Self>, w: Write, hook: &str) {
        let (verb, key, sub, body) = match &w {
            Write::Put(obj) => {
                let gvr = obj
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .zip(obj.get("kind").and_then(Value::as_str))
                    .and_then(|(av, k)| self.rt.by_api_version_kind(av, k))
                    .map(|res| self.rt.get(res).gvr.clone());
                let key = gvr.map(|g| {
                    ObjectKey::new(
                        &g,
                        store::meta_str(obj, "namespace").unwrap_or(""),
                        store::meta_str(obj, "name").unwrap_or(""),
                    )
                });
                (Verb::Update, key, None, Some(obj.clone()))
            }
            Write::MergePatch {
                target,
                patch,
                status,
            } => (
                Verb::Patch,
                Some(target.clone()),
                status.then(|| "status".to_string()),
                Some(patch.clone()),
            ),
            Write::Delete(target) => (Verb::Delete, Some(target.clone()), None, None),
        };
        let seq = self.log_request(RequestRecord {
            seq: 0,
            at: Duration::ZERO,
            origin: Origin::Hook(hook.to_string()),
            method: String::new(),
            verb,
            gvr: key.as_ref().map(|k| k.gvr.clone()),
            subresource: sub,
            namespace: key
                .as_ref()
                .map(|k| k.namespace.clone())
                .filter(|n| !n.is_empty()),
            name: key.as_ref().map(|k| k.name.clone()),
            path: String::new(),
            query: String::new(),
            content_type: None,
            accept: None,
            user_agent: None,
            user: None,
            body,
            status: None,
            faulted: false,
        });
        let result: Result<(), ApiError> = match w {
            Write::Put(obj) => self.write(|db| db.put_direct(obj, false)).map(|_| ()),
            Write::MergePatch {
                target,
                patch,
                status,
            } => match self.rt.by_gvr(&target.gvr) {
                Some(res) => self
                    .write(|db| {
                        db.patch(
                            res,
                            &target.namespace,
                            &target.name,
                            PatchType::Merge,
                            &patch,
                            status,
                            false,
                        )
                    })
                    .map(|_| ()),
                None => Err(ApiError::not_found(&target.gvr, &target.name)),
            },
            Write::Delete(target) => match self.rt.by_gvr(&target.gvr) {
                Some(res) => self
                    .write(|db| db.delete(res, &target.namespace, &target.name, &json!({}), false))
                    .map(|_| ()),
                None => Err(ApiError::not_found(&target.gvr, &target.name)),
            },
        };
        let code = match result {
            Ok(()) => 200,
            Err(e) => {
                tracing::debug!(hook, error = %e, "api double hook write failed");
                e.code
            }
        };
        self.log_finish(seq, code, false);
    }

    /// Appends a record; returns its sequence number.
    pub(crate) fn log_request(&self, mut rec: RequestRecord) -> u64 {
        let seq = {
            let mut log = lock(&self.log);
            rec.seq = log.len() as u64;
            rec.at = self.started.elapsed();
            let seq = rec.seq;
            log.push(rec);
            seq
        };
        self.log_changed.send_modify(|v| *v += 1);
        seq
    }

    pub(crate) fn log_finish(&self, seq: u64, status: u16, faulted: bool) {
        if let Some(r) = lock(&self.log).get_mut(seq as usize) {
            r.status = Some(status);
            r.faulted |= faulted;
        }
        self.log_changed.send_modify(|v| *v += 1);
    }

    /// The action of the first active fault matching a request, counting the hit.
    pub(crate) fn take_fault(&self, rec: &RequestRecord) -> Option<FaultAction> {
        let mut faults = lock(&self.faults);
        let f = faults
            .iter_mut()
            .find(|f| f.remaining != Some(0) && f.fault.matches(rec))?;
        f.hits += 1;
        if let Some(n) = &mut f.remaining {
            *n -= 1;
        }
        Some(f.fault.action.clone())
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// A running (or stopped) Kubernetes API double. Cheap to clone; all clones control the
/// same server.
#[derive(Clone)]
pub struct ApiDouble {
    sh: Arc<Shared>,
    server: Arc<tokio::sync::Mutex<Option<server::Running>>>,
}

impl std::fmt::Debug for ApiDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiDouble")
            .field("addr", &self.addr())
            .finish()
    }
}

impl ApiDouble {
    /// Binds `127.0.0.1:{options.port}` and starts serving. Panics if it cannot bind
    /// (use [`ApiDouble::try_start`] to handle that). Must be called inside a tokio runtime.
    pub async fn start(options: Options) -> Self {
        match Self::try_start(options).await {
            Ok(d) => d,
            Err(e) => panic!("kube-api-double: cannot bind 127.0.0.1: {e}"),
        }
    }

    pub async fn try_start(options: Options) -> std::io::Result<Self> {
        let listener = server::bind(SocketAddr::from(([127, 0, 0, 1], options.port)))?;
        let addr = listener.local_addr()?;
        let tls = if options.https {
            Some(serving_tls()?)
        } else {
            None
        };
        let rt = ResourceTable::new(&options.extra_resources);
        let db = Db::new(
            rt.clone(),
            options.history_limit,
            options.initial_resource_version,
        );
        let sh = Arc::new(Shared {
            rt,
            db: Mutex::new(db),
            changed: watch::channel(0).0,
            log: Mutex::new(Vec::new()),
            log_changed: watch::channel(0).0,
            faults: Mutex::new(Vec::new()),
            latency: Mutex::new(Duration::ZERO),
            hooks: Mutex::new(Vec::new()),
            hooks_in_flight: watch::channel(0).0,
            next_id: AtomicU64::new(1),
            opts: options,
            runtime: tokio::runtime::Handle::current(),
            started: Instant::now(),
            addr: Mutex::new(addr),
            auth: Mutex::new(AuthState {
                tokens: HashMap::from([(
                    auth::DEFAULT_TOKEN.to_string(),
                    UserInfo::admin(auth::DEFAULT_USER),
                )]),
                enforce_rbac: false,
            }),
            endpoints: Mutex::new(HashMap::new()),
            admission_log: Mutex::new(Vec::new()),
            admission_changed: watch::channel(0).0,
            audit: Mutex::new(Vec::new()),
            tls,
        });
        let running = server::spawn(sh.clone(), listener);
        Ok(Self {
            sh,
            server: Arc::new(tokio::sync::Mutex::new(Some(running))),
        })
    }

    // ------------------------------------------------------------------ addressing

    pub fn addr(&self) -> SocketAddr {
        *lock(&self.sh.addr)
    }

    /// `http://127.0.0.1:PORT` (`https://` with [`Options::https`]).
    pub fn url(&self) -> String {
        let scheme = if self.sh.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr())
    }

    /// The CA of the double's serving certificate (with [`Options::https`]).
    pub fn ca_pem(&self) -> Option<String> {
        self.sh.tls.as_ref().map(|t| t.ca_pem.clone())
    }

    /// A kubeconfig for this double: server [`ApiDouble::url`], the administrator token
    /// [`DEFAULT_TOKEN`]; over HTTPS the double's CA, over HTTP insecure.
    pub fn kubeconfig_yaml(&self) -> String {
        use base64::Engine as _;
        let trust = match &self.sh.tls {
            Some(t) => format!(
                "certificate-authority-data: {}",
                base64::engine::general_purpose::STANDARD.encode(t.ca_pem.as_bytes())
            ),
            None => "insecure-skip-tls-verify: true".to_string(),
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: api-double\n  cluster:\n    server: {}\n    {trust}\nusers:\n- name: api-double\n  user:\n    token: api-double-token\ncontexts:\n- name: api-double\n  context:\n    cluster: api-double\n    user: api-double\n    namespace: default\ncurrent-context: api-double\npreferences: {{}}\n",
            self.url()
        )
    }

    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// A kubeconfig like [`ApiDouble::kubeconfig_yaml`] that authenticates with `token`
    /// (register it with [`ApiDouble::add_token`]) and defaults to `namespace`.
    pub fn kubeconfig_yaml_for(&self, token: &str, namespace: &str) -> String {
        self.kubeconfig_yaml()
            .replace(
                &format!("token: {}", auth::DEFAULT_TOKEN),
                &format!("token: {token}"),
            )
            .replace("namespace: default", &format!("namespace: {namespace}"))
    }

    pub fn write_kubeconfig_for(
        &self,
        path: impl AsRef<Path>,
        token: &str,
        namespace: &str,
    ) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml_for(token, namespace))
    }

    // ------------------------------------------------------------------ authn, authz

    /// Requests with `Authorization: Bearer <token>` are made as `user` (what RBAC
    /// checks and webhooks see in `userInfo`). Unknown tokens get 401; requests without
    /// a token are `system:anonymous`. [`DEFAULT_TOKEN`] is an administrator.
    pub fn add_token(&self, token: &str, user: UserInfo) {
        lock(&self.sh.auth).tokens.insert(token.to_string(), user);
    }

    /// Enforce RBAC from the stored ClusterRoles, ClusterRoleBindings, Roles and
    /// RoleBindings (off by default: every request is allowed). Members of
    /// `system:masters` are always allowed; discovery is open to everyone.
    pub fn enforce_rbac(&self, on: bool) {
        lock(&self.sh.auth).enforce_rbac = on;
    }

    /// Client requests RBAC refused (403, not injected faults).
    pub fn forbidden_requests(&self) -> Vec<RequestRecord> {
        lock(&self.sh.log)
            .iter()
            .filter(|r| r.origin == Origin::Client && r.status == Some(403) && !r.faulted)
            .cloned()
            .collect()
    }

    // ------------------------------------------------------------------ admission

    /// Webhooks whose `clientConfig.service` is `namespace/name` are called at `addr`
    /// (TLS server name `name.namespace.svc`, as kube-apiserver checks it).
    pub fn set_service_endpoint(&self, namespace: &str, name: &str, addr: SocketAddr) {
        lock(&self.sh.endpoints).insert((namespace.to_string(), name.to_string()), addr);
    }

    /// The Service has no ready endpoints any more (calls fail, failurePolicy applies).
    pub fn remove_service_endpoint(&self, namespace: &str, name: &str) {
        lock(&self.sh.endpoints).remove(&(namespace.to_string(), name.to_string()));
    }

    /// Every webhook call made so far, in order.
    pub fn admission_calls(&self) -> Vec<AdmissionCall> {
        lock(&self.sh.admission_log).clone()
    }

    /// Waits until at least `n` webhook calls were made; returns them all.
    pub async fn wait_for_admission_calls(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<AdmissionCall>, Timeout> {
        let mut rx = self.sh.admission_changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            let calls = self.admission_calls();
            if calls.len() >= n {
                return Ok(calls);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Err(Timeout {
                    waited: timeout,
                    what: format!("{n} webhook calls (have {})", calls.len()),
                    last: None,
                });
            }
        }
    }

    /// audit.k8s.io/v1 Events (level Metadata) of the DELETE and DELETECOLLECTION
    /// requests served, with the webhooks' audit annotations as `<webhook>/<key>`.
    pub fn audit_events(&self) -> Vec<Value> {
        lock(&self.sh.audit).clone()
    }

    /// The audit events as kube-apiserver's log backend writes them: one JSON a line.
    pub fn write_audit_log(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        let mut out = String::new();
        for e in self.audit_events() {
            out.push_str(&e.to_string());
            out.push('\n');
        }
        std::fs::write(path, out)
    }

    // ------------------------------------------------------------------ state

    /// Stores an object as given (status included). `apiVersion`/`kind` pick the resource;
    /// uid and creationTimestamp are kept or generated; a numeric resourceVersion newer
    /// than any handed out is kept, otherwise a fresh one is assigned. Emits a watch event;
    /// hooks are not called.
    pub fn seed(&self, obj: Value) -> Result<Value, ApiError> {
        self.sh.write(|db| db.put_direct(obj, true)).map(|(_, o)| o)
    }

    /// Seeds every item of a `*List` (items without apiVersion/kind take the list's).
    pub fn seed_list(&self, list: Value) -> Result<Vec<Value>, ApiError> {
        let av = list
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let kind = list
            .get("kind")
            .and_then(Value::as_str)
            .and_then(|k| k.strip_suffix("List"))
            .unwrap_or("")
            .to_string();
        let items = list
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| {
                ApiError::bad_request("seed_list needs an object with an items array")
            })?;
        items
            .into_iter()
            .map(|mut item| {
                if let Value::Object(m) = &mut item {
                    m.entry("apiVersion").or_insert_with(|| json!(av));
                    m.entry("kind").or_insert_with(|| json!(kind));
                }
                self.seed(item)
            })
            .collect()
    }

    /// Seeds a JSON file holding one object or a `*List`.
    pub fn seed_json_file(&self, path: impl AsRef<Path>) -> Result<Vec<Value>, ApiError> {
        let text = std::fs::read_to_string(path.as_ref())
            .map_err(|e| ApiError::bad_request(format!("{}: {e}", path.as_ref().display())))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| ApiError::bad_request(format!("{}: {e}", path.as_ref().display())))?;
        if v.get("items").is_some() {
            self.seed_list(v)
        } else {
            self.seed(v).map(|o| vec![o])
        }
    }

    /// The stored object (`namespace` "" for cluster-scoped kinds).
    pub fn get(&self, gvr: &Gvr, namespace: &str, name: &str) -> Option<Value> {
        let res = self.sh.rt.by_gvr(gvr)?;
        self.sh.db().get(res, namespace, name).cloned()
    }

    /// Stored objects of a kind, in one namespace or all, in (namespace, name) order.
    pub fn list(&self, gvr: &Gvr, namespace: Option<&str>) -> Vec<Value> {
        let Some(res) = self.sh.rt.by_gvr(gvr) else {
            return Vec::new();
        };
        self.sh
            .db()
            .iter(res, namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Creates or replaces a whole object (status included) as a privileged writer: no
    /// preconditions, a fresh resourceVersion, a watch event, and hooks run.
    pub fn put_object(&self, obj: Value) -> Result<Value, ApiError> {
        self.sh
            .write(|db| db.put_direct(obj, false))
            .map(|(_, o)| o)
    }

    /// Merge-patches an object (status and metadata included) as a privileged writer.
    /// Removing the last finalizer of a terminating object deletes it, as on the apiserver.
    pub fn merge_patch_object(
        &self,
        gvr: &Gvr,
        namespace: &str,
        name: &str,
        patch: Value,
    ) -> Result<Value, ApiError> {
        let res = self
            .sh
            .rt
            .by_gvr(gvr)
            .ok_or_else(|| ApiError::not_found(gvr, name))?;
        self.sh
            .write(|db| db.merge_direct(res, namespace, name, &patch))
    }

    /// Removes an object at once (finalizers ignored), emitting DELETED; hooks run.
    /// Returns the removed object.
    pub fn delete_object(&self, gvr: &Gvr, namespace: &str, name: &str) -> Option<Value> {
        let res = self.sh.rt.by_gvr(gvr)?;
        self.sh.write(|db| db.remove_direct(res, namespace, name))
    }

    /// The latest resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.sh.db().rv
    }

    /// Forgets the watch history, like an etcd compaction: watches resuming from any
    /// resourceVersion handed out so far get `410 Expired` (clients must re-list).
    pub fn compact(&self) {
        self.sh.db().compact();
    }

    /// Waits until the object exists and satisfies `pred`.
    pub async fn wait_for<F>(
        &self,
        gvr: &Gvr,
        namespace: &str,
        name: &str,
        pred: F,
        timeout: Duration,
    ) -> Result<Value, Timeout>
    where
        F: Fn(&Value) -> bool,
    {
        let what = format!("{gvr} {namespace}/{name} to satisfy the predicate");
        self.wait_store(timeout, what, |d| {
            d.get(gvr, namespace, name).filter(|o| pred(o))
        })
        .await
        .map_err(|mut t| {
            t.last = self.get(gvr, namespace, name);
            t
        })
    }

    /// Waits until the object is gone.
    pub async fn wait_for_absent(
        &self,
        gvr: &Gvr,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<(), Timeout> {
        let what = format!("{gvr} {namespace}/{name} to be absent");
        self.wait_store(timeout, what, |d| {
            d.get(gvr, namespace, name).is_none().then_some(())
        })
        .await
    }

    async fn wait_store<T>(
        &self,
        timeout: Duration,
        what: String,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> Result<T, Timeout> {
        let mut rx = self.sh.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if let Some(v) = check(self) {
                return Ok(v);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => {
                    return Err(Timeout {
                        waited: timeout,
                        what,
                        last: None,
                    })
                }
            }
        }
    }

    // ------------------------------------------------------------------ faults

    /// Adds a fault rule; rules are tried in the order they were injected.
    pub fn inject(&self, fault: Fault) -> FaultId {
        let id = FaultId(self.sh.next_id());
        lock(&self.sh.faults).push(ActiveFault {
            id,
            remaining: fault.times,
            fault,
            hits: 0,
        });
        id
    }

    /// How many requests a fault has applied to.
    pub fn fault_hits(&self, id: FaultId) -> u32 {
        lock(&self.sh.faults)
            .iter()
            .find(|f| f.id == id)
            .map(|f| f.hits)
            .unwrap_or(0)
    }

    pub fn remove_fault(&self, id: FaultId) {
        lock(&self.sh.faults).retain(|f| f.id != id);
    }

    pub fn clear_faults(&self) {
        lock(&self.sh.faults).clear();
    }

    /// Added before every request (watches: before the response starts).
    pub fn set_global_latency(&self, latency: Duration) {
        *lock(&self.sh.latency) = latency;
    }

    /// Cuts every open watch stream abruptly (no final chunk), as a dying connection would.
    /// Returns how many were open.
    pub fn drop_watches(&self) -> usize {
        self.sh.db().end_watches(true)
    }

    /// Watch streams currently open.
    pub fn open_watches(&self) -> usize {
        self.sh.db().open_watches()
    }

    /// Waits until at least `n` watch streams are open (e.g. a reflector re-watched).
    pub async fn wait_for_open_watches(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<usize, Timeout> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.sh.log_changed.subscribe();
        loop {
            rx.borrow_and_update();
            let open = self.open_watches();
            if open >= n {
                return Ok(open);
            }
            // watches register right after they are logged; poll briefly between log events
            let tick = tokio::time::sleep(Duration::from_millis(20));
            tokio::select! {
                _ = rx.changed() => {}
                _ = tick => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Timeout {
                    waited: timeout,
                    what: format!("{n} open watches (have {open})"),
                    last: None,
                });
            }
        }
    }

    // ------------------------------------------------------------------ hooks

    /// Calls `hook` after every committed write of `gvr` (HTTP and hook writes, and
    /// `put_object`/`merge_patch_object`/`delete_object`; not `seed`), and applies the
    /// writes it returns. No-op writes (nothing changed) do not trigger hooks, so a
    /// controller imitation that converges stops by itself.
    pub fn on_update<F>(&self, gvr: &Gvr, hook: F) -> HookId
    where
        F: Fn(&StoreView<'_>, &Value) -> Vec<Write> + Send + Sync + 'static,
    {
        self.on_update_with(
            gvr,
            HookOptions::named(&format!("hook:{}", gvr.resource)),
            hook,
        )
    }

    pub fn on_update_with<F>(&self, gvr: &Gvr, options: HookOptions, hook: F) -> HookId
    where
        F: Fn(&StoreView<'_>, &Value) -> Vec<Write> + Send + Sync + 'static,
    {
        let id = HookId(self.sh.next_id());
        match self.sh.rt.by_gvr(gvr) {
            Some(res) => lock(&self.sh.hooks).push(HookEntry {
                id,
                res,
                opts: options,
                f: Arc::new(hook),
            }),
            None => tracing::warn!(%gvr, "on_update for a resource the double does not serve"),
        }
        id
    }

    pub fn remove_hook(&self, id: HookId) {
        lock(&self.sh.hooks).retain(|h| h.id != id);
    }

    /// Waits until no hook is running or waiting for its delay.
    pub async fn wait_hooks_idle(&self, timeout: Duration) -> Result<(), Timeout> {
        let mut rx = self.sh.hooks_in_flight.subscribe();
        let idle =
            tokio::time::timeout(timeout, async { rx.wait_for(|n| *n == 0).await.is_ok() }).await;
        match idle {
            Ok(true) => Ok(()),
            _ => Err(Timeout {
                waited: timeout,
                what: "hooks to finish".into(),
                last: None,
            }),
        }
    }

    // ------------------------------------------------------------------ observation

    /// A copy of the request log (client requests and hook writes).
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.sh.log).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.sh.log).clear();
    }

    /// Client requests with this verb on this plural resource and subresource
    /// (`None` = the main resource), e.g. `count(Verb::Patch, "gitrepos", Some("status"))`.
    pub fn count(&self, verb: Verb, resource: &str, subresource: Option<&str>) -> usize {
        lock(&self.sh.log)
            .iter()
            .filter(|r| r.origin == Origin::Client && r.is(verb, resource, subresource))
            .count()
    }

    /// Records (client or hook) that satisfy `pred`.
    pub fn count_where(&self, pred: impl Fn(&RequestRecord) -> bool) -> usize {
        lock(&self.sh.log).iter().filter(|r| pred(r)).count()
    }

    /// The last client request with this verb, resource and subresource.
    pub fn last_request(
        &self,
        verb: Verb,
        resource: &str,
        subresource: Option<&str>,
    ) -> Option<RequestRecord> {
        lock(&self.sh.log)
            .iter()
            .rev()
            .find(|r| r.origin == Origin::Client && r.is(verb, resource, subresource))
            .cloned()
    }

    /// Waits until `count(verb, resource, subresource) >= n`; returns the count.
    pub async fn wait_for_count(
        &self,
        verb: Verb,
        resource: &str,
        subresource: Option<&str>,
        n: usize,
        timeout: Duration,
    ) -> Result<usize, Timeout> {
        let what = format!(
            "{n} {} requests on {resource} {subresource:?}",
            verb.as_str()
        );
        self.wait_log(timeout, what, |d| {
            let c = d.count(verb, resource, subresource);
            (c >= n).then_some(c)
        })
        .await
    }

    /// Waits until some log record satisfies `pred`; returns it.
    pub async fn wait_for_request(
        &self,
        pred: impl Fn(&RequestRecord) -> bool,
        timeout: Duration,
    ) -> Result<RequestRecord, Timeout> {
        self.wait_log(timeout, "a matching request".into(), |d| {
            lock(&d.sh.log).iter().find(|r| pred(r)).cloned()
        })
        .await
    }

    async fn wait_log<T>(
        &self,
        timeout: Duration,
        what: String,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> Result<T, Timeout> {
        let mut rx = self.sh.log_changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if let Some(v) = check(self) {
                return Ok(v);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => {
                    return Err(Timeout {
                        waited: timeout,
                        what,
                        last: None,
                    })
                }
            }
        }
    }

    // ------------------------------------------------------------------ lifecycle

    pub async fn is_running(&self) -> bool {
        self.server.lock().await.is_some()
    }

    /// Stops serving: open watches end cleanly, hung requests get 503, connections close,
    /// and the port refuses connections ("down") until [`ApiDouble::restart`]. The stored
    /// objects stay.
    pub async fn stop(&self) {
        let mut guard = self.server.lock().await;
        if let Some(running) = guard.take() {
            running.shutdown.send_replace(true);
            self.sh.db().end_watches(false);
            let _ = running.task.await;
        }
    }

    /// Stops (if running) and serves again on the same port, like an apiserver restart:
    /// objects survive, the watch history does not (old resourceVersions get `410 Expired`).
    pub async fn restart(&self) -> std::io::Result<()> {
        self.stop().await;
        self.sh.db().compact();
        let mut guard = self.server.lock().await;
        let addr = self.addr();
        let mut attempt = 0;
        let listener = loop {
            match server::bind(addr) {
                Ok(l) => break l,
                Err(e) if attempt < 50 => {
                    attempt += 1;
                    tracing::debug!(error = %e, "rebinding api double port");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        };
        *guard = Some(server::spawn(self.sh.clone(), listener));
        Ok(())
    }

    /// Stops the server for good.
    pub async fn shutdown(self) {
        self.stop().await;
        lock(&self.sh.hooks).clear();
    }
}
