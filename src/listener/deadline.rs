//! Handshake accounting and the request deadline: [`CountingAcceptor`] counts failed
//! and timed-out TLS handshakes and puts each accepted connection under a
//! [`RequestDeadline`] (`--request-timeout` for a request's line and headers) shared
//! with its service ([`TrackRequests`]).

use std::{
    fmt,
    future::Future,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use axum_server::accept::Accept;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Connection;
use crate::metrics::Metrics;

/// Wraps the rustls acceptor: counts failed and timed-out handshakes, and puts each
/// accepted connection under a [`RequestDeadline`] shared with its service
/// ([`TrackRequests`]).
#[derive(Clone)]
pub struct CountingAcceptor<A> {
    inner: A,
    metrics: Metrics,
    request_timeout: Duration,
}

impl<A> CountingAcceptor<A> {
    /// `inner` (the rustls acceptor) with handshakes counted and requests under a
    /// `request_timeout` deadline.
    pub fn new(inner: A, metrics: Metrics, request_timeout: Duration) -> Self {
        CountingAcceptor {
            inner,
            metrics,
            request_timeout,
        }
    }
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
                    let in_progress = metrics.requests_in_progress.clone();
                    Ok((
                        RequestDeadline::new(stream, requests.clone(), request_timeout, metrics),
                        TrackRequests {
                            inner: service,
                            requests,
                            in_progress,
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
    /// `requests_in_progress` alone: hyper clones the service for every request, and a
    /// clone of [`Metrics`] is a few dozen reference counts.
    in_progress: Gauge,
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
        let in_service = InService::start(self.requests.clone(), &self.in_progress);
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
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        // Overdue only when nothing more has arrived: bytes that are here when the
        // connection is finally polled are read first, even if the deadline passed in the
        // meantime (a starved server must not blame its own lateness on the client). A
        // client trickling its head still stalls between bytes and is cut then; one
        // sending fast hits MAX_HEADER_BYTES.
        if read.is_pending() && this.armed.is_some() && this.deadline.as_mut().poll(cx).is_ready() {
            this.armed = None;
            this.expired = true;
            this.metrics.error("header_timeout");
            tracing::debug!(
                timeout_ms = this.timeout.as_millis() as u64,
                "request headers overdue; connection closed"
            );
            return Poll::Ready(Err(Self::overdue()));
        }
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const HEAD: &[u8] = b"POST /validate HTTP/1.1\r\nhost: localhost\r\n\r\n";

    fn deadline(
        timeout: Duration,
    ) -> (
        RequestDeadline<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
        Metrics,
    ) {
        let (server, client) = tokio::io::duplex(1024);
        let metrics = Metrics::new();
        let stream = RequestDeadline::new(
            server,
            Arc::new(Requests::default()),
            timeout,
            metrics.clone(),
        );
        (stream, client, metrics)
    }

    fn header_timeouts(metrics: &Metrics) -> bool {
        metrics
            .encode()
            .contains(r#"fleet_delete_guard_errors_total{kind="header_timeout"} 1"#)
    }

    /// The server is polled late (a loaded machine): the head arrived in time, the
    /// deadline passed before the server looked. The head is read, not refused.
    #[tokio::test]
    async fn a_head_that_arrived_is_read_though_the_server_looks_after_the_deadline() {
        let (mut stream, mut client, metrics) = deadline(Duration::from_millis(20));
        client.write_all(HEAD).await.expect("write");
        // Nobody polls the server side until the deadline is long past.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut buf = vec![0u8; 1024];
        let n = stream.read(&mut buf).await.expect("the head is delivered");
        assert_eq!(&buf[..n], HEAD);
        assert!(!header_timeouts(&metrics), "{}", metrics.encode());
    }

    /// Nothing more arrives after the deadline passed: the read fails, counted.
    #[tokio::test]
    async fn a_head_that_stalls_past_the_deadline_is_cut_and_counted() {
        let (mut stream, mut client, metrics) = deadline(Duration::from_millis(20));
        client
            .write_all(b"POST /validate HTTP/1.1\r\n")
            .await
            .expect("write");
        let mut buf = vec![0u8; 1024];
        let n = stream.read(&mut buf).await.expect("the first bytes");
        assert!(n > 0);
        let cut = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
            .await
            .expect("cut by the deadline, not by this test's bound")
            .expect_err("overdue");
        assert_eq!(cut.kind(), io::ErrorKind::TimedOut);
        assert!(header_timeouts(&metrics), "{}", metrics.encode());
        // And it stays cut.
        let again = stream.read(&mut buf).await.expect_err("still overdue");
        assert_eq!(again.kind(), io::ErrorKind::TimedOut);
    }
}
