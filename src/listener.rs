//! The webhook port below HTTP: how many connections it holds, and who may open one.
//!
//! - **Connection limit** (`--max-connections`): [`LimitedListener`] takes a slot of a
//!   semaphore *before* it calls `accept(2)`; the slot travels with the socket
//!   ([`Connection`]) and is given back when the connection ends, whatever ends it.
//!   With every slot taken the server stops accepting: new connections wait in the
//!   kernel's accept queue (the listen backlog, [`LISTEN_BACKLOG`]) and are served as
//!   slots free up, or, once that queue is full too, the kernel drops their SYNs and
//!   the client retries or gives up (kube-apiserver after the webhook's
//!   `timeoutSeconds`, then fails open). Nothing beyond the limit costs the process
//!   memory or a file descriptor. A slot is held at most for the TLS handshake
//!   (`--request-timeout`), then per request for `--request-timeout`; an idle
//!   keep-alive connection holds its slot until the client closes it or it has been
//!   idle for `--idle-timeout`.
//! - **Timeouts** (`--request-timeout`, `--idle-timeout`): an idle keep-alive
//!   connection is closed after `--idle-timeout` (hyper's header-read timer, which
//!   starts when a connection goes idle); longer than kube-apiserver's own idle timeout
//!   for pooled connections (90 s, Go's `IdleConnTimeout`), so that the client, not the
//!   server, closes an idle connection, and never in the moment the client reuses it.
//!   Once a request's first byte arrives — or the TLS handshake of a new connection is
//!   done — its request line and headers are due within `--request-timeout`
//!   ([`RequestDeadline`]: hyper has one timer for both); `errors_total{kind="header_timeout"}`
//!   counts connections closed for it. Body and answer are bounded by the
//!   `--request-timeout` of `src/server.rs` (408, `errors_total{kind="request_timeout"}`).
//! - **Client certificates** (`--client-ca`, `--client-cert-name`): optional; when set,
//!   the TLS handshake requires a client certificate that chains to the CA (rustls'
//!   `WebPkiClientVerifier`) and, if names are given, whose subject CN or a DNS SAN is
//!   one of them. The serving certificate keeps coming from the configuration
//!   `src/tls.rs` reloads ([`DelegatingResolver`]); the CA file is re-read every
//!   `--tls-reload-interval`.
//! - **Handshake failures** (garbage bytes, plaintext HTTP, a refused client
//!   certificate, a stalled handshake) close the connection at once and are counted in
//!   `errors_total{kind="tls_handshake"|"tls_handshake_timeout"}`; logged at debug
//!   level only, so a flood of them cannot flood the log.
//!
//! The header-size bound ([`MAX_HEADER_BYTES`]) is applied to hyper in `src/server.rs`.

use std::{
    fmt,
    future::Future,
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum_server::{
    accept::Accept,
    tls_rustls::{RustlsAcceptor, RustlsConfig},
    AddrListener, Address, Server,
};
use rustls::{
    client::danger::HandshakeSignatureValid,
    pki_types::{pem::PemObject, CertificateDer, UnixTime},
    server::{
        danger::{ClientCertVerified, ClientCertVerifier},
        ClientHello, ResolvesServerCert, WebPkiClientVerifier,
    },
    sign::CertifiedKey,
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError},
};

use crate::metrics::{Metrics, ResultLabels};
use prometheus_client::metrics::gauge::Gauge;

/// Request line plus headers, at most. kube-apiserver sends well under 4 KiB (a bearer
/// token included); more is answered 431 and the connection closed. Also bounds
/// hyper's read buffer (its `max_buf_size`), so it cannot be smaller than 8 KiB.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Default of `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Default of `--idle-timeout`: longer than the 90 s after which kube-apiserver (Go's
/// `http.Transport`, `IdleConnTimeout`) closes its idle pooled connections itself.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Listen backlog: connections the kernel queues for `accept(2)` (capped by
/// `net.core.somaxconn`, 4096 on current kernels). Where connections wait when all
/// `--max-connections` slots are taken; std's default (128) drops the handshakes of a
/// burst beyond it.
pub const LISTEN_BACKLOG: i32 = 1024;

/// A TCP listener on `addr` with [`LISTEN_BACKLOG`] (SO_REUSEADDR as std sets it).
pub fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// How often "connection limit reached" is logged at most.
const FULL_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Settings of the webhook port's connection layer (flags: `crate::cli::ConnectionArgs`).
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Connections held open at once; beyond it new ones wait in the accept queue.
    pub max_connections: usize,
    /// How long a keep-alive connection may stay idle between requests.
    pub idle_timeout: Duration,
    /// PEM CA bundle every client certificate must chain to; `None`: no client
    /// certificates asked for.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: accepted subject CNs / DNS SANs; empty: any.
    pub client_cert_names: Vec<String>,
    /// How often the `client_ca` file is checked for changes.
    pub client_ca_reload_interval: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            client_ca: None,
            client_cert_names: Vec::new(),
            client_ca_reload_interval: Duration::from_secs(10),
        }
    }
}

// ---------------------------------------------------------------------------------
// The connection limit.

/// The webhook listener's address type: the peer's socket address. A type of its own
/// so that axum-server accepts through [`LimitedListener`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

impl Address for PeerAddr {
    type Stream = Connection;
    type Listener = LimitedListener;
}

/// A TCP listener that accepts only while it has a free slot.
pub struct LimitedListener {
    tcp: tokio::net::TcpListener,
    slots: Arc<Semaphore>,
    max: usize,
    metrics: Metrics,
    last_full_warning: Mutex<Option<Instant>>,
}

impl fmt::Debug for LimitedListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitedListener")
            .field("local_addr", &self.tcp.local_addr().ok())
            .field("max", &self.max)
            .field("free", &self.slots.available_permits())
            .finish()
    }
}

impl LimitedListener {
    pub fn new(tcp: std::net::TcpListener, max: usize, metrics: Metrics) -> io::Result<Self> {
        tcp.set_nonblocking(true)?;
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Ok(LimitedListener {
            tcp: tokio::net::TcpListener::from_std(tcp)?,
            slots: Arc::new(Semaphore::new(max)),
            max,
            metrics,
            last_full_warning: Mutex::new(None),
        })
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    fn note_full(&self) {
        self.metrics.error("connection_limit");
        let now = Instant::now();
        let mut last = self
            .last_full_warning
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| now.duration_since(t) >= FULL_WARNING_INTERVAL) {
            *last = Some(now);
            tracing::warn!(
                max_connections = self.max,
                "connection limit reached: new connections wait in the kernel's accept queue until one ends \
                 (errors_total{{kind=\"connection_limit\"}} counts each wait)"
            );
        }
    }

    async fn slot(&self) -> io::Result<OwnedSemaphorePermit> {
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => Ok(slot),
            Err(TryAcquireError::NoPermits) => {
                self.note_full();
                self.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| io::Error::other("connection slots closed"))
            }
            Err(TryAcquireError::Closed) => Err(io::Error::other("connection slots closed")),
        }
    }
}

impl AddrListener<Connection, PeerAddr> for LimitedListener {
    async fn bind_to(addr: PeerAddr) -> io::Result<Self> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "bind {} with server::Listeners and pass it to listener::webhook_server",
                addr.0
            ),
        ))
    }

    async fn accept_stream(&self) -> io::Result<(Connection, PeerAddr)> {
        // The slot first: with none free, accept(2) is not called and the kernel queues.
        let slot = self.slot().await?;
        let (tcp, peer) = self.tcp.accept().await?;
        // One request, one answer: never wait for Nagle.
        let _ = tcp.set_nodelay(true);
        Ok((Connection { tcp, _slot: slot }, PeerAddr(peer)))
    }

    fn get_local_addr(&self) -> io::Result<PeerAddr> {
        self.tcp.local_addr().map(PeerAddr)
    }
}

/// An accepted TCP connection holding its slot until dropped.
#[derive(Debug)]
pub struct Connection {
    tcp: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------------
// Handshake accounting and the request deadline.

/// Wraps the rustls acceptor: counts failed and timed-out handshakes, and puts each
/// accepted connection under a [`RequestDeadline`] shared with its service
/// ([`TrackRequests`]).
#[derive(Clone)]
pub struct CountingAcceptor<A> {
    inner: A,
    metrics: Metrics,
    request_timeout: Duration,
}

impl<A> fmt::Debug for CountingAcceptor<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountingAcceptor").finish_non_exhaustive()
    }
}

type BoxedAccept<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

impl<A, S> Accept<Connection, S> for CountingAcceptor<A>
where
    A: Accept<Connection, S>,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = RequestDeadline<A::Stream>;
    type Service = TrackRequests<A::Service>;
    type Future = BoxedAccept<(Self::Stream, Self::Service)>;

    fn accept(&self, stream: Connection, service: S) -> Self::Future {
        let peer = stream.peer_addr().ok();
        let metrics = self.metrics.clone();
        let request_timeout = self.request_timeout;
        let accepted = self.inner.accept(stream, service);
        Box::pin(async move {
            match accepted.await {
                Ok((stream, service)) => {
                    let requests = Arc::new(Requests::default());
                    Ok((
                        RequestDeadline::new(
                            stream,
                            requests.clone(),
                            request_timeout,
                            metrics.clone(),
                        ),
                        TrackRequests {
                            inner: service,
                            requests,
                            metrics,
                        },
                    ))
                }
                Err(e) => {
                    let kind = if e.kind() == io::ErrorKind::TimedOut {
                        "tls_handshake_timeout"
                    } else {
                        "tls_handshake"
                    };
                    metrics.error(kind);
                    tracing::debug!(peer = ?peer, error = %e, kind, "TLS handshake failed; connection closed");
                    Err(e)
                }
            }
        })
    }
}

/// What a connection's service tells its stream: how many requests were dispatched
/// (their headers read) and whether one is being served now.
#[derive(Debug, Default)]
pub struct Requests {
    dispatched: AtomicU64,
    in_service: AtomicU32,
}

/// The per-connection service: marks each request as dispatched and in service until
/// its answer is ready (or the request is dropped), for [`RequestDeadline`] and the
/// `requests_in_progress` gauge.
#[derive(Clone)]
pub struct TrackRequests<S> {
    inner: S,
    requests: Arc<Requests>,
    metrics: Metrics,
}

impl<S> fmt::Debug for TrackRequests<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackRequests")
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

/// Ends a request's "in service" when dropped, however the request ends.
struct InService {
    requests: Arc<Requests>,
    /// `requests_in_progress` (one `Arc`, not a clone of every metric per request).
    gauge: Gauge,
}

impl InService {
    fn start(requests: Arc<Requests>, gauge: &Gauge) -> Self {
        requests.dispatched.fetch_add(1, Ordering::AcqRel);
        requests.in_service.fetch_add(1, Ordering::AcqRel);
        gauge.inc();
        InService {
            requests,
            gauge: gauge.clone(),
        }
    }
}

impl Drop for InService {
    fn drop(&mut self) {
        self.requests.in_service.fetch_sub(1, Ordering::AcqRel);
        self.gauge.dec();
    }
}

impl<S, R> tower::Service<R> for TrackRequests<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let in_service =
            InService::start(self.requests.clone(), &self.metrics.requests_in_progress);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            drop(in_service);
            answer
        })
    }
}

/// A connection's stream with the request-head deadline: from the end of the TLS
/// handshake, and from the first byte of each later request, the request line and
/// headers must arrive (the request be dispatched) within the request timeout, or the
/// next read fails with `TimedOut` and hyper closes the connection. While the
/// connection is idle, no deadline runs (hyper's `header_read_timeout`, set to
/// `--idle-timeout`, bounds idleness).
///
/// Known gap: bytes of a next request that arrived with the previous one (pipelining)
/// are not seen as a new first byte; such a head is bounded by `--idle-timeout`.
pub struct RequestDeadline<T> {
    inner: T,
    requests: Arc<Requests>,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// Running for the request after this many dispatched ones, if running.
    armed: Option<u64>,
    expired: bool,
    metrics: Metrics,
}

impl<T> fmt::Debug for RequestDeadline<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestDeadline")
            .field("timeout", &self.timeout)
            .field("armed", &self.armed)
            .field("expired", &self.expired)
            .finish_non_exhaustive()
    }
}

impl<T> RequestDeadline<T> {
    /// Running from now, for the connection's first request.
    pub fn new(inner: T, requests: Arc<Requests>, timeout: Duration, metrics: Metrics) -> Self {
        RequestDeadline {
            inner,
            requests,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            armed: Some(0),
            expired: false,
            metrics,
        }
    }

    fn overdue() -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "request headers not received within --request-timeout",
        )
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for RequestDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(Err(Self::overdue()));
        }
        let dispatched = this.requests.dispatched.load(Ordering::Acquire);
        if this.armed.is_some_and(|at| at != dispatched) {
            // The request the deadline ran for was dispatched.
            this.armed = None;
        }
        if this.armed.is_some() && this.deadline.as_mut().poll(cx).is_ready() {
            this.armed = None;
            this.expired = true;
            this.metrics.error("header_timeout");
            tracing::debug!(
                timeout_ms = this.timeout.as_millis() as u64,
                "request headers overdue; connection closed"
            );
            return Poll::Ready(Err(Self::overdue()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(())))
            && buf.filled().len() > before
            && this.armed.is_none()
            && this.requests.in_service.load(Ordering::Acquire) == 0
        {
            // The first byte of a new request on an idle connection.
            this.armed = Some(dispatched);
            let at = tokio::time::Instant::now() + this.timeout;
            this.deadline.as_mut().reset(at);
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for RequestDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The webhook server on `tcp`: connection limit, rustls (with client certificates
/// when configured), handshake accounting, the request-head deadline (both bounded by
/// `request_timeout`). `src/server.rs` adds HTTP settings (the idle timeout).
pub fn webhook_server(
    tcp: std::net::TcpListener,
    served: RustlsConfig,
    config: &ConnectionConfig,
    request_timeout: Duration,
    metrics: Metrics,
) -> io::Result<Server<PeerAddr, CountingAcceptor<RustlsAcceptor>>> {
    let listener = LimitedListener::new(tcp, config.max_connections, metrics.clone())?;
    let tls = match &config.client_ca {
        None => served,
        Some(path) => {
            let auth = ClientAuth {
                ca_file: path.clone(),
                names: config.client_cert_names.clone(),
            };
            let (tls, loaded) = auth.config(served.clone()).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("--client-ca {}: {e}", path.display()),
                )
            })?;
            tracing::info!(
                client_ca = %path.display(),
                names = ?config.client_cert_names,
                "client certificates required"
            );
            tokio::spawn(auth.reload_on_change(
                served,
                tls.clone(),
                loaded,
                config.client_ca_reload_interval,
                metrics.clone(),
            ));
            tls
        }
    };
    let acceptor = CountingAcceptor {
        inner: RustlsAcceptor::new(tls).handshake_timeout(request_timeout),
        metrics,
        request_timeout,
    };
    Ok(Server::from_listener(listener).acceptor(acceptor))
}

// ---------------------------------------------------------------------------------
// Client certificates.

#[derive(Debug, thiserror::Error)]
pub enum ClientCaError {
    #[error("cannot read: {0}")]
    Read(#[from] io::Error),
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("no CA certificate in the file")]
    Empty,
    #[error("unusable CA certificate: {0}")]
    Ca(String),
}

/// Serves whatever certificate the reloadable serving configuration serves now, so
/// that a configuration with client authentication follows `src/tls.rs` reloads.
#[derive(Clone)]
pub struct DelegatingResolver(RustlsConfig);

impl fmt::Debug for DelegatingResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DelegatingResolver")
    }
}

impl ResolvesServerCert for DelegatingResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.get_inner().cert_resolver.resolve(client_hello)
    }
}

/// Client-certificate requirements.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    pub ca_file: PathBuf,
    /// Accepted subject CNs / DNS SANs; empty: any certificate from the CA.
    pub names: Vec<String>,
}

/// The CA file's bytes as last loaded.
type CaBytes = Vec<u8>;

impl ClientAuth {
    fn read(&self) -> Result<CaBytes, ClientCaError> {
        Ok(std::fs::read(&self.ca_file)?)
    }

    /// A configuration requiring client certificates, serving what `served` serves.
    pub fn config(&self, served: RustlsConfig) -> Result<(RustlsConfig, CaBytes), ClientCaError> {
        let bytes = self.read()?;
        let config = server_config_with_client_auth(&bytes, &self.names, served)?;
        Ok((RustlsConfig::from_config(config), bytes))
    }

    async fn reload_on_change(
        self,
        served: RustlsConfig,
        tls: RustlsConfig,
        mut loaded: CaBytes,
        interval: Duration,
        metrics: Metrics,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rejected: Option<CaBytes> = None;
        loop {
            ticker.tick().await;
            let this = self.clone();
            let current = match tokio::task::spawn_blocking(move || this.read()).await {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "client CA file not readable; keeping the current CA");
                    continue;
                }
                Err(_) => continue,
            };
            if current == loaded || rejected.as_ref() == Some(&current) {
                continue;
            }
            match server_config_with_client_auth(&current, &self.names, served.clone()) {
                Ok(config) => {
                    tls.reload_from_config(config);
                    metrics
                        .tls_reloads
                        .get_or_create(&ResultLabels { result: "success" })
                        .inc();
                    tracing::info!(client_ca = %self.ca_file.display(), "client CA reloaded from disk");
                    loaded = current;
                    rejected = None;
                }
                Err(e) => {
                    metrics
                        .tls_reloads
                        .get_or_create(&ResultLabels { result: "error" })
                        .inc();
                    tracing::error!(client_ca = %self.ca_file.display(), error = %e,
                        "new client CA file is not usable; still verifying against the previous one");
                    rejected = Some(current);
                }
            }
        }
    }
}

/// Roots from a PEM bundle.
pub fn ca_roots(pem: &[u8]) -> Result<RootCertStore, ClientCaError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientCaError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(ClientCaError::Empty);
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| ClientCaError::Ca(e.to_string()))?;
    }
    Ok(roots)
}

/// The serving configuration of `src/tls.rs` (TLS 1.3 and 1.2, ALPN `http/1.1`, ring)
/// with mandatory client certificates from `ca_pem`, optionally limited to `names`.
pub fn server_config_with_client_auth(
    ca_pem: &[u8],
    names: &[String],
    served: RustlsConfig,
) -> Result<Arc<ServerConfig>, ClientCaError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki =
        WebPkiClientVerifier::builder_with_provider(Arc::new(ca_roots(ca_pem)?), provider.clone())
            .build()
            .map_err(|e| ClientCaError::Ca(e.to_string()))?;
    let verifier: Arc<dyn ClientCertVerifier> = if names.is_empty() {
        webpki
    } else {
        Arc::new(NamedClientVerifier {
            inner: webpki,
            names: names.to_vec(),
        })
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ClientCaError::Ca(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(DelegatingResolver(served)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The subject CN and DNS SANs of a DER certificate.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push((*dns).to_string());
            }
        }
    }
    names
}

/// WebPKI verification, then the name check.
#[derive(Debug)]
struct NamedClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    names: Vec<String>,
}

impl ClientCertVerifier for NamedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let presented = certificate_names(end_entity.as_ref());
        if presented.iter().any(|n| self.names.contains(n)) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Whether `path` holds a usable client CA (for start-up checks and tests).
pub fn check_client_ca(path: &Path) -> Result<(), ClientCaError> {
    ca_roots(&std::fs::read(path)?).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls;

    #[test]
    fn ca_files_are_checked() {
        tls::install_crypto_provider();
        assert!(matches!(
            ca_roots(b"nothing here"),
            Err(ClientCaError::Empty)
        ));
        let certs = tls::generate_certificates(&["client".into()], Duration::from_secs(60))
            .expect("generate");
        assert!(ca_roots(certs.ca_pem.as_bytes()).is_ok());
        assert_eq!(
            certificate_names(
                CertificateDer::from_pem_slice(certs.cert_pem.as_bytes())
                    .expect("pem")
                    .as_ref()
            ),
            ["client", "client"],
            "CN and DNS SAN"
        );
    }
}
