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
//!
//! Files: `bind.rs` (ports and their listen backlog), `limit.rs` (connection limit),
//! `deadline.rs` (handshake accounting, request deadline), `client_auth.rs` (client
//! certificates).

mod bind;
mod client_auth;
mod deadline;
mod limit;

use std::{io, path::PathBuf, time::Duration};

use axum_server::{
    tls_rustls::{RustlsAcceptor, RustlsConfig},
    Server,
};

pub use bind::{bind_tcp, LISTEN_BACKLOG};
pub use client_auth::{
    ca_roots, certificate_names, check_client_ca, server_config_with_client_auth, ClientAuth,
    ClientCaError, DelegatingResolver,
};
pub use deadline::{CountingAcceptor, RequestDeadline, Requests, TrackRequests};
pub use limit::{Connection, LimitedListener, PeerAddr};

use crate::metrics::Metrics;

/// Request line plus headers, at most. kube-apiserver sends well under 4 KiB (a bearer
/// token included); more is answered 431 and the connection closed. Also bounds
/// hyper's read buffer (its `max_buf_size`), so it cannot be smaller than 8 KiB.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Default of `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Default of `--idle-timeout`: longer than the 90 s after which kube-apiserver (Go's
/// `http.Transport`, `IdleConnTimeout`) closes its idle pooled connections itself.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Settings of the webhook port's connection layer (flags: `ConnectionArgs` in src/cli.rs).
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
    let acceptor = CountingAcceptor::new(
        RustlsAcceptor::new(tls).handshake_timeout(request_timeout),
        metrics,
        request_timeout,
    );
    Ok(Server::from_listener(listener).acceptor(acceptor))
}
