//! The HTTP adapters: the HTTPS webhook listener and the plain-HTTP metrics/health one.

use std::{
    future::Future,
    net::{SocketAddr, TcpListener},
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, DefaultBodyLimit, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use axum_server::{tls_rustls::RustlsConfig, Handle};
use tower::{util::MapResponseLayer, ServiceBuilder};
use tower_http::timeout::TimeoutLayer;

use crate::{
    admission::{Admission, Summary},
    health::Readiness,
    metrics::{Metrics, ReviewLabels},
};

/// kube-apiserver never sends more: old and new object ≤ 3 MiB each plus the envelope.
pub const MAX_REVIEW_BYTES: usize = 7 * 1024 * 1024;

/// How the listeners behave.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    /// Whole-request bound (TLS handshake, headers, body, answer); keep below the
    /// webhook's timeoutSeconds. Idle keep-alive: `connections.idle_timeout`.
    pub request_timeout: Duration,
    /// Reviews handled at once; more wait for a slot (still within `request_timeout`).
    pub max_concurrent_reviews: usize,
    /// How long in-flight reviews may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Connection limit and client certificates (src/listener/).
    pub connections: crate::listener::ConnectionConfig,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            listen: ([0, 0, 0, 0], 9443).into(),
            metrics_listen: ([0, 0, 0, 0], 8080).into(),
            request_timeout: Duration::from_secs(4),
            max_concurrent_reviews: 1024,
            shutdown_grace: Duration::from_secs(20),
            connections: crate::listener::ConnectionConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// Handler state, behind one `Arc`: axum clones it for every request, and a clone of
/// [`Metrics`] is a few dozen reference counts.
#[derive(Clone)]
struct AppState(Arc<AppStateInner>);

struct AppStateInner {
    admission: Arc<Admission>,
    metrics: Metrics,
    readiness: Readiness,
}

impl AppState {
    fn new(admission: Arc<Admission>, metrics: Metrics, readiness: Readiness) -> Self {
        AppState(Arc::new(AppStateInner {
            admission,
            metrics,
            readiness,
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;
    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// The webhook router: `POST /validate`.
pub fn webhook_router(
    admission: Arc<Admission>,
    metrics: Metrics,
    readiness: Readiness,
    request_timeout: Duration,
    max_concurrent: usize,
) -> Router {
    let timeouts = Arc::new(metrics.clone());
    let state = AppState::new(admission, metrics, readiness);
    Router::new()
        .route("/validate", post(validate))
        .layer(DefaultBodyLimit::max(MAX_REVIEW_BYTES))
        .layer(
            ServiceBuilder::new()
                .layer(MapResponseLayer::new(move |response: Response| {
                    count_timeout(&timeouts, &response);
                    response
                }))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    request_timeout,
                ))
                .concurrency_limit(max_concurrent.max(1)),
        )
        .with_state(state)
}

/// Counts a 408 of the request timeout (`TimeoutLayer`: the body, a slot among
/// `--max-concurrent-reviews` or the answer was not ready in time). The handler never
/// answers 408 itself.
fn count_timeout(metrics: &Metrics, response: &Response) {
    if response.status() == StatusCode::REQUEST_TIMEOUT {
        metrics.error("request_timeout");
        // Debug level: a slow-body flood must not flood the log; the metric counts it.
        tracing::debug!(status = 408, kind = "request_timeout", "request timed out");
    }
}

/// The metrics and health router: `GET /metrics`, `/healthz`, `/readyz`.
pub fn metrics_router(metrics: Metrics, readiness: Readiness, admission: Arc<Admission>) -> Router {
    let state = AppState::new(admission, metrics, readiness);
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics_text(State(app): State<AppState>) -> Response {
    app.metrics.observe_readiness(&app.readiness);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

async fn readyz(State(app): State<AppState>) -> Response {
    let code = if app.readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, app.readiness.report()).into_response()
}

fn reject(app: &AppState, status: StatusCode, kind: &'static str, reason: String) -> Response {
    app.metrics.error(kind);
    tracing::warn!(status = status.as_u16(), kind, reason = %reason, "request rejected");
    (status, format!("{reason}\n")).into_response()
}

async fn validate(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let received = Instant::now();
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default();
        if !ct.starts_with("application/json") {
            return reject(
                &app,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content_type",
                format!("content type must be application/json, not {ct:?}"),
            );
        }
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "body"
            };
            let reason = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("request body exceeds {MAX_REVIEW_BYTES} bytes")
            } else {
                format!("cannot read request body: {}", rejection.body_text())
            };
            return reject(&app, status, kind, reason);
        }
    };

    // The review is I/O-free but for a counted deletion with the breaker on, which waits
    // for one bounded write of the shared window counts (src/breaker/share.rs). No tracing
    // span around it: the log line carries the uid itself, and a span (created, uid
    // recorded, entered, serialised into the line, closed) cost a third of the line's
    // formatting time.
    app.metrics.in_flight.inc();
    let result = app.admission.review_shared(&body, received).await;
    app.metrics.in_flight.dec();

    let answer = match result {
        Ok(answer) => answer,
        Err(e) => return reject(&app, StatusCode::BAD_REQUEST, e.kind(), e.to_string()),
    };
    let bytes = answer.response.to_json();
    let latency = received.elapsed();
    let s = &answer.summary;
    app.metrics
        .reviews
        .get_or_create(&ReviewLabels {
            operation: s.operation,
            decision: s.decision,
        })
        .inc();
    app.metrics.review_duration.observe(latency.as_secs_f64());
    if s.unexpected_shape.is_some() {
        app.metrics.error("unexpected_shape");
    }
    log_answer(s, latency);
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// The log line of one answered review: one JSON object per line with the JSON log
/// format — `review answered` at info level for a deletion of a Fleet-managed object,
/// at debug level for the fast path (`not-managed`, `not-fleet`, …: most of the
/// reviews, and nothing happened to them; the `reviews_total` metric counts them);
/// `unexpected shape` at warn level.
pub fn log_answer(s: &Summary, latency: Duration) {
    macro_rules! answered {
        ($level:ident) => {
            tracing::$level!(
                uid = s.uid.as_str(),
                user = s.user.as_str(),
                operation = s.operation,
                resource = s.resource.as_str(),
                namespace = s.namespace.as_str(),
                name = s.name.as_str(),
                decision = s.decision,
                dry_run = s.dry_run,
                warnings = s.warnings,
                latency_us = latency.as_micros() as u64,
                "review answered"
            )
        };
    }
    match &s.unexpected_shape {
        Some(detail) => {
            tracing::warn!(
                uid = s.uid.as_str(),
                detail = detail.as_str(),
                latency_us = latency.as_micros() as u64,
                "review allowed: its object has an unexpected shape"
            );
        }
        None if s.fast_path => answered!(debug),
        None => answered!(info),
    }
}

/// Bound listeners, before serving: ports are known (tests bind port 0).
pub struct Listeners {
    webhook: TcpListener,
    metrics: TcpListener,
}

impl Listeners {
    pub fn bind(config: &ListenConfig) -> Result<Self, ServerError> {
        let bind = |addr: SocketAddr| {
            // With a listen backlog of its own (src/listener/bind.rs).
            let l = crate::listener::bind_tcp(addr)
                .map_err(|source| ServerError::Bind { addr, source })?;
            l.set_nonblocking(true)
                .map_err(|source| ServerError::Bind { addr, source })?;
            Ok::<_, ServerError>(l)
        };
        Ok(Listeners {
            webhook: bind(config.listen)?,
            metrics: bind(config.metrics_listen)?,
        })
    }

    pub fn webhook_addr(&self) -> std::io::Result<SocketAddr> {
        self.webhook.local_addr()
    }

    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.metrics.local_addr()
    }
}

/// Everything [`serve`] needs besides the listeners.
pub struct Services {
    pub admission: Arc<Admission>,
    pub metrics: Metrics,
    pub readiness: Readiness,
    pub tls: RustlsConfig,
}

/// Serve until `shutdown` completes, then stop accepting, let in-flight reviews
/// finish (bounded by `shutdown_grace`) and return.
pub async fn serve(
    listeners: Listeners,
    config: ListenConfig,
    services: Services,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let Services {
        admission,
        metrics,
        readiness,
        tls,
    } = services;
    let webhook = webhook_router(
        admission.clone(),
        metrics.clone(),
        readiness.clone(),
        config.request_timeout,
        config.max_concurrent_reviews,
    );
    let probes = metrics_router(metrics.clone(), readiness, admission);

    // Connection limit, TLS (client certificates), handshake bound: src/listener/.
    let handle: Handle<crate::listener::PeerAddr> = Handle::new();
    let mut server = crate::listener::webhook_server(
        listeners.webhook,
        tls,
        &config.connections,
        config.request_timeout,
        metrics,
    )?
    .handle(handle.clone())
    .http1_only();
    // hyper's header-read timer starts when a connection goes idle: it is the idle
    // timeout. A started request's headers are bounded by the request timeout in
    // src/listener/deadline.rs (`RequestDeadline`, also for a new connection's first request).
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(config.connections.idle_timeout)
        .max_buf_size(crate::listener::MAX_HEADER_BYTES);

    let metrics_listener = tokio::net::TcpListener::from_std(listeners.metrics)?;
    let (probe_stop_tx, probe_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let probes_task = tokio::spawn(async move {
        axum::serve(metrics_listener, probes)
            .with_graceful_shutdown(async {
                let _ = probe_stop_rx.await;
            })
            .await
    });

    let grace = config.shutdown_grace;
    let shutdown_handle = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!(
            grace_s = grace.as_secs(),
            "shutting down: no new connections, finishing in-flight reviews"
        );
        shutdown_handle.graceful_shutdown(Some(grace));
    });

    let result = server.serve(webhook.into_make_service()).await;
    let _ = probe_stop_tx.send(());
    let _ = probes_task.await;
    tracing::info!("webhook server stopped");
    result.map_err(ServerError::from)
}
