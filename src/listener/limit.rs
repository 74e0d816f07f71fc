//! The connection limit (`--max-connections`): [`LimitedListener`] takes a slot of a
//! semaphore *before* it calls `accept(2)`; the slot travels with the socket
//! ([`Connection`]) and is given back when the connection ends, whatever ends it.

use std::{
    fmt, io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum_server::{AddrListener, Address};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError},
};

use crate::metrics::Metrics;

/// How often "connection limit reached" is logged at most.
const FULL_WARNING_INTERVAL: Duration = Duration::from_secs(60);

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
