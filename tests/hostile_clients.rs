//! Hostile clients on the TLS listener (RELIABILITY.md, "Hostile clients"; SECURITY.md).
//!
//! Each abuse — slow headers, slow bodies, a connection flood, idle TLS connections,
//! oversized headers, TLS garbage, plaintext HTTP — runs from hundreds of connections
//! at once against the real server, and the test asserts that
//! - every abusive connection is cut off within a bound (the request timeout plus
//!   slack, or, for protocol errors, well before the timeout), and
//! - WHILE the abuse goes on, well-formed reviews keep being answered (200, allowed),
//!   over a kept-alive connection and over fresh ones (TLS handshake included), each
//!   within 10 s.
//!
//! Latencies are printed (`hostile[...]` lines), not asserted; RELIABILITY.md records
//! a measurement run:
//! `cargo test --release --test hostile_clients -- --nocapture --test-threads=1`.
//!
//! Also: the connection limit queues connections beyond it until one ends, and
//! `--client-ca` / `--client-cert-name` refuse clients without the right certificate.

mod support;

use std::{
    future::Future,
    net::SocketAddr,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum_server::tls_rustls::RustlsConfig;
use fleet_delete_guard::{
    admission::{Admission, NoCounting, ObjectOnly},
    health::Readiness,
    listener::ConnectionConfig,
    metrics::Metrics,
    policy::DecisionConfig,
    server::{self, ListenConfig, Listeners, Services},
    tls,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::oneshot,
    task::JoinHandle,
};

/// What a well-formed review may take while the abuse goes on.
const REVIEW_BOUND: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------
// A server with the connection settings under test.

struct Server {
    addr: SocketAddr,
    ca_pem: String,
    metrics: Metrics,
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), server::ServerError>>,
}

async fn start(request_timeout: Duration, connections: ConnectionConfig) -> Server {
    raise_fd_limit();
    let certs = support::certificates();
    let dir = tempfile::tempdir().expect("tempdir");
    let files = support::write_pair(dir.path(), &certs);
    let config = ListenConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        metrics_listen: "127.0.0.1:0".parse().expect("addr"),
        request_timeout,
        max_concurrent_reviews: 1024,
        shutdown_grace: Duration::from_secs(5),
        connections,
    };
    let listeners = Listeners::bind(&config).expect("bind");
    let addr = listeners.webhook_addr().expect("addr");
    let metrics = Metrics::new();
    let (served, _) = files.load().expect("pair");
    let services = Services {
        admission: Arc::new(Admission::new(
            DecisionConfig::default(),
            Arc::new(ObjectOnly),
            Arc::new(NoCounting),
        )),
        metrics: metrics.clone(),
        readiness: Readiness::default(),
        tls: RustlsConfig::from_config(served),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(listeners, config, services, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        ca_pem: certs.ca_pem,
        metrics,
        dir,
        stop: Some(stop),
        task,
    }
}

impl Server {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("server stops")
            .expect("task")
            .expect("server result");
    }

    fn url(&self) -> String {
        format!("https://localhost:{}/validate", self.addr.port())
    }

    fn errors(&self, kind: &str) -> u64 {
        let needle = format!("fleet_delete_guard_errors_total{{kind=\"{kind}\"}} ");
        self.metrics
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix(needle.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// 500 clients and 500 server sockets in one process: more than some default limits.
#[allow(unsafe_code)] // getrlimit(2), setrlimit(2)
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max.min(65_536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn review_body() -> String {
    support::fixture("admissionreview-delete-configmap.json")
}

// ---------------------------------------------------------------------------------
// Well-formed reviews while the abuse goes on.

/// Latencies of reviews sent one after another until `done`, half over one kept-alive
/// connection (as kube-apiserver does), half over a fresh connection each.
struct Probe {
    task: JoinHandle<(Vec<Duration>, Vec<Duration>)>,
    done: Arc<AtomicBool>,
}

fn probe(server: &Server) -> Probe {
    let done = Arc::new(AtomicBool::new(false));
    let (url, ca, stop) = (server.url(), server.ca_pem.clone(), done.clone());
    let task = tokio::spawn(async move {
        let kept = support::https_client(&ca);
        let body = review_body();
        let (mut kept_alive, mut fresh) = (Vec::new(), Vec::new());
        let mut i = 0u32;
        while !stop.load(Ordering::Relaxed) || kept_alive.is_empty() || fresh.is_empty() {
            let fresh_connection = i % 2 == 1;
            i += 1;
            let client = if fresh_connection {
                support::https_client(&ca)
            } else {
                kept.clone()
            };
            let started = Instant::now();
            let (status, text) = support::post(&client, &url, body.clone()).await;
            let took = started.elapsed();
            assert_eq!(status, 200, "a well-formed review is answered: {text}");
            assert!(text.contains("\"allowed\":true"), "{text}");
            assert!(took <= REVIEW_BOUND, "a review took {took:?}");
            if fresh_connection {
                fresh.push(took)
            } else {
                kept_alive.push(took)
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (kept_alive, fresh)
    });
    Probe { task, done }
}

impl Probe {
    async fn finish(self, abuse: &str) {
        self.done.store(true, Ordering::Relaxed);
        let (kept, fresh) = self.task.await.expect("the probe's reviews all succeeded");
        eprintln!(
            "hostile[{abuse}]: reviews during the abuse: kept-alive {}, fresh connection {}",
            stats(kept),
            stats(fresh)
        );
    }
}

fn stats(mut d: Vec<Duration>) -> String {
    d.sort();
    let at = |q: f64| d[((d.len() - 1) as f64 * q).round() as usize];
    format!(
        "n={} p50={:.2?} p99={:.2?} max={:.2?}",
        d.len(),
        at(0.5),
        at(0.99),
        d[d.len() - 1]
    )
}

// ---------------------------------------------------------------------------------
// The abuse.

/// How one abusive connection ended: when the server cut it off, and the first bytes
/// it sent before (a status line, a TLS alert, nothing).
struct Cut {
    after: Duration,
    sent: Vec<u8>,
}

/// How long each abuse is kept up: clients whose connection is cut off start again.
const ABUSE_FOR: Duration = Duration::from_secs(2);

/// Runs `clients` abusive clients at once for [`ABUSE_FOR`] (each opens its next
/// abusive connection when the server cuts the last one off) while probing; asserts
/// every connection is cut off within `bound`; returns how they ended.
async fn abuse<F, Fut>(
    server: &Server,
    name: &str,
    clients: usize,
    bound: Duration,
    one: F,
) -> Vec<Cut>
where
    F: Fn(SocketAddr, String) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Cut> + Send + 'static,
{
    let started = Instant::now();
    let probe = probe(server);
    let abusers: Vec<JoinHandle<Vec<Cut>>> = (0..clients)
        .map(|_| {
            let (one, addr, ca) = (one.clone(), server.addr, server.ca_pem.clone());
            tokio::spawn(async move {
                let mut cuts = Vec::new();
                while cuts.is_empty() || started.elapsed() < ABUSE_FOR {
                    cuts.push(one(addr, ca.clone()).await);
                }
                cuts
            })
        })
        .collect();
    let mut cuts = Vec::with_capacity(clients);
    for a in abusers {
        cuts.extend(a.await.expect("abuser"));
    }
    probe.finish(name).await;
    let mut after: Vec<Duration> = cuts.iter().map(|c| c.after).collect();
    after.sort();
    eprintln!(
        "hostile[{name}]: {} connections from {clients} clients in {:.2?}, cut off after p50 {:.2?}, max {:.2?}",
        cuts.len(),
        started.elapsed(),
        after[after.len() / 2],
        after[after.len() - 1],
    );
    for cut in &cuts {
        assert!(
            cut.after <= bound,
            "{name}: a connection lasted {:?}, bound {bound:?}",
            cut.after
        );
    }
    cuts
}

/// Reads until the server closes (or resets) the connection, at most 60 s.
async fn until_closed<R: tokio::io::AsyncRead + Unpin>(reader: &mut R, started: Instant) -> Cut {
    let mut sent = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Duration::from_secs(60);
    loop {
        match tokio::time::timeout(
            deadline.saturating_sub(started.elapsed()),
            reader.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                if sent.len() < 256 {
                    sent.extend_from_slice(&buf[..n.min(256)]);
                }
            }
            Err(_) => break, // never closed: `after` exceeds every bound
        }
    }
    Cut {
        after: started.elapsed(),
        sent,
    }
}

/// TLS, then `head`, then one byte of `trickle` every 100 ms until the server closes.
async fn trickle(addr: SocketAddr, ca: String, head: Vec<u8>, trickle: u8) -> Cut {
    let started = Instant::now();
    let stream = support::tls_connect(addr, &ca, &[b"http/1.1"])
        .await
        .expect("TLS connect");
    let (mut reader, mut writer) = tokio::io::split(stream);
    let writing = tokio::spawn(async move {
        if writer.write_all(&head).await.is_err() {
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(&[trickle]).await.is_err() || writer.flush().await.is_err() {
                return;
            }
        }
    });
    let cut = until_closed(&mut reader, started).await;
    writing.abort();
    cut
}

fn status_line(cut: &Cut) -> String {
    String::from_utf8_lossy(&cut.sent)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_latency_without_abuse() {
    let server = start(Duration::from_secs(1), ConnectionConfig::default()).await;
    let probe = probe(&server);
    tokio::time::sleep(Duration::from_secs(2)).await;
    probe.finish("none (baseline)").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_are_cut_off_while_reviews_are_answered() {
    // The request timeout also bounds every TLS handshake, the probe's included: on 2
    // loaded cores, 200 handshakes at once take the server seconds, and 1 s cut the
    // probe's own connections. The default (4 s) leaves the probe room; the bound then
    // tells "cut by the server" (a trickle reaches MAX_HEADER_BYTES only after ~27 min)
    // from "never cut" (the client gives up at 60 s) with room for a loaded machine.
    let server = start(Duration::from_secs(4), ConnectionConfig::default()).await;
    let cuts = abuse(
        &server,
        "slow headers x200",
        200,
        Duration::from_secs(30),
        |addr, ca| {
            trickle(
                addr,
                ca,
                b"POST /validate HTTP/1.1\r\nhost: localhost\r\nx-slow: ".to_vec(),
                b'a',
            )
        },
    )
    .await;
    for cut in &cuts {
        assert!(
            cut.sent.is_empty(),
            "closed without an answer: {}",
            status_line(cut)
        );
    }
    // Each cut is counted: overdue headers, or (on 2 loaded cores) a server side of the
    // TLS handshake that did not finish within the request timeout although the client's
    // side had.
    let (headers, handshakes) = (
        server.errors("header_timeout"),
        server.errors("tls_handshake_timeout"),
    );
    assert!(
        headers >= 1 && headers + handshakes >= cuts.len() as u64,
        "each cut counted: {headers} header_timeout + {handshakes} tls_handshake_timeout, {} cuts",
        cuts.len()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_get_408_while_reviews_are_answered() {
    let server = start(Duration::from_secs(1), ConnectionConfig::default()).await;
    let cuts = abuse(&server, "slow bodies x100", 100, Duration::from_secs(10), |addr, ca| {
        trickle(
            addr,
            ca,
            b"POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{".to_vec(),
            b' ',
        )
    })
    .await;
    for cut in &cuts {
        assert!(
            status_line(cut).starts_with("HTTP/1.1 408"),
            "{}",
            status_line(cut)
        );
    }
    // Every 408 is counted, under its own kind.
    assert_eq!(server.errors("request_timeout"), cuts.len() as u64);
    assert!(
        server.metrics.encode().contains(&format!(
            "fleet_delete_guard_errors_total{{kind=\"request_timeout\"}} {}",
            cuts.len()
        )),
        "in the /metrics text"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_is_cut_off_while_reviews_are_answered() {
    let server = start(Duration::from_secs(1), ConnectionConfig::default()).await;
    // 500 TCP connections that never start TLS: the cheapest flood.
    abuse(
        &server,
        "TCP flood x500",
        500,
        Duration::from_secs(10),
        |addr, _| async move {
            let started = Instant::now();
            let mut tcp = TcpStream::connect(addr).await.expect("connect");
            until_closed(&mut tcp, started).await
        },
    )
    .await;
    // 200 that finish the TLS handshake and never send a request.
    abuse(
        &server,
        "idle TLS x200",
        200,
        Duration::from_secs(10),
        |addr, ca| async move {
            let started = Instant::now();
            let mut tls = support::tls_connect(addr, &ca, &[b"http/1.1"])
                .await
                .expect("TLS connect");
            until_closed(&mut tls, started).await
        },
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431_while_reviews_are_answered() {
    let server = start(Duration::from_secs(30), ConnectionConfig::default()).await;
    let cuts = abuse(
        &server,
        "64 KiB headers x64",
        64,
        Duration::from_secs(10),
        |addr, ca| async move {
            let started = Instant::now();
            let stream = support::tls_connect(addr, &ca, &[b"http/1.1"])
                .await
                .expect("TLS connect");
            let (mut reader, mut writer) = tokio::io::split(stream);
            let mut head = b"POST /validate HTTP/1.1\r\nhost: localhost\r\nx-big: ".to_vec();
            head.extend(std::iter::repeat_n(b'a', 64 * 1024));
            head.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
            // The server may close before all of it is written: that is the point.
            let writing = tokio::spawn(async move {
                let _ = writer.write_all(&head).await;
                let _ = writer.flush().await;
                writer
            });
            let cut = until_closed(&mut reader, started).await;
            let _ = writing.await;
            cut
        },
    )
    .await;
    // The answer can be lost to the reset of the unread rest; when it arrives, it is 431.
    let answered: Vec<String> = cuts
        .iter()
        .map(status_line)
        .filter(|l| !l.is_empty())
        .collect();
    assert!(
        answered.iter().all(|l| l.starts_with("HTTP/1.1 431")),
        "{answered:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_garbage_and_plaintext_http_are_dropped_at_once() {
    // A long request timeout: connections must end for their bytes, not for the clock.
    let timeout = Duration::from_secs(30);
    let server = start(timeout, ConnectionConfig::default()).await;
    let quick = Duration::from_secs(5);
    abuse(
        &server,
        "TLS garbage x200",
        200,
        quick,
        |addr, _| async move {
            let started = Instant::now();
            let mut tcp = TcpStream::connect(addr).await.expect("connect");
            let garbage: Vec<u8> = (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            let _ = tcp.write_all(&garbage).await;
            until_closed(&mut tcp, started).await
        },
    )
    .await;
    let cuts = abuse(&server, "plaintext HTTP x200", 200, quick, |addr, _| async move {
        let started = Instant::now();
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let body = review_body();
        let request = format!(
            "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = tcp.write_all(request.as_bytes()).await;
        until_closed(&mut tcp, started).await
    })
    .await;
    for cut in &cuts {
        assert!(
            !cut.sent.starts_with(b"HTTP/"),
            "plaintext gets no HTTP answer: {}",
            status_line(cut)
        );
    }
    assert!(
        server.errors("tls_handshake") >= 400,
        "handshake failures are counted"
    );
    server.stop().await;
}

/// A client that sends one review and then keeps the connection open without a next
/// request does not keep its slot forever: it is closed after `--idle-timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed() {
    let server = start(
        Duration::from_secs(1),
        ConnectionConfig {
            idle_timeout: Duration::from_secs(1),
            ..ConnectionConfig::default()
        },
    )
    .await;
    let abusers = (0..50).map(|_| {
        let (addr, ca) = (server.addr, server.ca_pem.clone());
        tokio::spawn(async move {
            let mut tls = support::tls_connect(addr, &ca, &[b"http/1.1"])
                .await
                .expect("TLS connect");
            let body = review_body();
            let request = format!(
                "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            tls.write_all(request.as_bytes()).await.expect("request");
            let mut answer = vec![0u8; 16 * 1024];
            let n = tls.read(&mut answer).await.expect("answer");
            assert!(answer[..n].starts_with(b"HTTP/1.1 200"), "answered first");
            // Keep-alive, and nothing more.
            let idle = Instant::now();
            let cut = until_closed(&mut tls, idle).await;
            cut.after
        })
    });
    let probe = probe(&server);
    let mut idle = Vec::new();
    for a in abusers.collect::<Vec<_>>() {
        idle.push(a.await.expect("abuser"));
    }
    probe.finish("idle keep-alive x50").await;
    idle.sort();
    eprintln!(
        "hostile[idle keep-alive x50]: closed after p50 {:.2?}, max {:.2?} of idleness",
        idle[idle.len() / 2],
        idle[idle.len() - 1]
    );
    assert!(
        idle.iter().all(|d| *d <= Duration::from_secs(10)),
        "{idle:?}"
    );
    server.stop().await;
}

fn review_request() -> String {
    let body = review_body();
    format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// One whole HTTP/1.1 answer (headers and `content-length` bytes of body), or what
/// came before the connection ended.
async fn read_answer<R: tokio::io::AsyncRead + Unpin>(reader: &mut R) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text;
            }
        }
        match tokio::time::timeout(REVIEW_BOUND, reader.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return String::from_utf8_lossy(&got).to_string(),
        }
    }
}

/// kube-apiserver keeps connections in a pool and reuses them after idling (up to its
/// own 90 s): a connection idle for longer than the request timeout still serves the
/// next review; a slow client on it is still cut off by the request timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_outlives_the_request_timeout_but_slow_headers_do_not() {
    let request_timeout = Duration::from_secs(1);
    let server = start(
        request_timeout,
        ConnectionConfig {
            idle_timeout: Duration::from_secs(60),
            ..ConnectionConfig::default()
        },
    )
    .await;
    let mut tls = support::tls_connect(server.addr, &server.ca_pem, &[b"http/1.1"])
        .await
        .expect("TLS connect");
    tls.write_all(review_request().as_bytes())
        .await
        .expect("first review");
    let first = read_answer(&mut tls).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    // Idle for more than twice the request timeout, then the next review.
    tokio::time::sleep(request_timeout * 5 / 2).await;
    tls.write_all(review_request().as_bytes())
        .await
        .expect("the kept-alive connection is still open");
    let second = read_answer(&mut tls).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(second.contains("\"allowed\":true"), "{second}");
    assert_eq!(server.errors("header_timeout"), 0);

    // The third request's headers trickle in: cut off by the request timeout, counted,
    // long before the 60 s idle timeout could have ended the connection.
    let (mut reader, mut writer) = tokio::io::split(tls);
    let trickling = tokio::spawn(async move {
        let _ = writer
            .write_all(b"POST /validate HTTP/1.1\r\nhost: localhost\r\nx-slow: ")
            .await;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(b"a").await.is_err() || writer.flush().await.is_err() {
                return;
            }
        }
    });
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut rest))
        .await
        .is_ok();
    trickling.abort();
    assert!(closed, "the slow request was cut off");
    assert!(rest.is_empty(), "no answer to a request without headers");
    assert_eq!(server.errors("header_timeout"), 1, "counted once");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let server = start(
        Duration::from_secs(30),
        ConnectionConfig {
            max_connections: 8,
            ..ConnectionConfig::default()
        },
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    let (url, ca) = (server.url(), server.ca_pem.clone());
    let review = tokio::spawn(async move {
        let started = Instant::now();
        let status = support::post(&support::https_client(&ca), &url, review_body())
            .await
            .0;
        (status, started.elapsed())
    });
    support::wait_until("the limit is reached", Duration::from_secs(10), || {
        server.errors("connection_limit") >= 1
    })
    .await;
    // All slots held: the ninth connection waits in the kernel's accept queue.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!review.is_finished(), "no slot, no handshake");
    drop(held.pop());
    let (status, took) = tokio::time::timeout(REVIEW_BOUND, review)
        .await
        .expect("served once a slot is free")
        .expect("task");
    assert_eq!(status, 200);
    eprintln!("hostile[connection limit 8]: the queued review was answered {took:?} after it started (500 ms of it waiting)");
    drop(held);
    server.stop().await;
}

// ---------------------------------------------------------------------------------
// Client certificates.

/// A CA for client certificates (kube-apiserver's webhook client certificate).
struct ClientCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl ClientCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        ClientCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA"),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A client certificate with subject CN `cn`.
    fn client(&self, cn: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        (
            vec![cert.der().clone()],
            PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key"),
        )
    }
}

fn client_with_cert(
    server_ca: &str,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server_ca.as_bytes()) {
        roots.add(cert.expect("PEM")).expect("root");
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).expect("identity"),
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .http1_only()
        .timeout(REVIEW_BOUND)
        .build()
        .expect("client")
}

async fn served(client: &reqwest::Client, url: &str) -> bool {
    match client
        .post(url)
        .header("content-type", "application/json")
        .body(review_body())
        .send()
        .await
    {
        Ok(resp) => resp.status().as_u16() == 200,
        Err(_) => false,
    }
}

fn write(path: &Path, contents: &str) {
    tls::write_file_atomically(path, contents.as_bytes()).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ca_requires_a_certificate_from_it_and_is_reloaded() {
    tls::install_crypto_provider();
    let apiserver_ca = ClientCa::new("apiserver-webhook-client-ca");
    let other_ca = ClientCa::new("someone-else");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("client-ca.pem");
    write(&ca_file, &apiserver_ca.pem());
    let server = start(
        Duration::from_secs(4),
        ConnectionConfig {
            client_ca: Some(ca_file.clone()),
            client_ca_reload_interval: Duration::from_millis(100),
            ..ConnectionConfig::default()
        },
    )
    .await;
    let url = server.url();

    let anonymous = client_with_cert(&server.ca_pem, None);
    assert!(!served(&anonymous, &url).await, "no certificate, no review");
    let stranger = client_with_cert(&server.ca_pem, Some(other_ca.client("kube-apiserver")));
    assert!(
        !served(&stranger, &url).await,
        "a certificate from another CA is refused"
    );
    let apiserver = client_with_cert(&server.ca_pem, Some(apiserver_ca.client("kube-apiserver")));
    assert!(served(&apiserver, &url).await, "the CA's client is served");
    assert!(server.errors("tls_handshake") >= 1, "refusals are counted");

    // The CA file is rotated to the other CA: its clients are served from then on.
    write(&ca_file, &other_ca.pem());
    let metrics = server.metrics.clone();
    support::wait_until("client CA reloaded", Duration::from_secs(10), || {
        metrics
            .encode()
            .contains(r#"fleet_delete_guard_tls_reloads_total{result="success"} 1"#)
    })
    .await;
    let rotated = client_with_cert(&server.ca_pem, Some(other_ca.client("kube-apiserver")));
    assert!(
        served(&rotated, &url).await,
        "the new CA's client is served"
    );
    let old = client_with_cert(&server.ca_pem, Some(apiserver_ca.client("kube-apiserver")));
    assert!(
        !served(&old, &url).await,
        "the old CA's clients no longer are"
    );

    // A broken file keeps the current CA.
    write(&ca_file, "not a certificate");
    support::wait_until("broken CA file rejected", Duration::from_secs(10), || {
        metrics
            .encode()
            .contains(r#"fleet_delete_guard_tls_reloads_total{result="error"} 1"#)
    })
    .await;
    assert!(
        served(&rotated, &url).await,
        "still verifying against the last good CA"
    );
    drop(server.dir);
    let _ = server.stop.map(|s| s.send(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cert_names_limit_which_certificates_of_the_ca_are_served() {
    tls::install_crypto_provider();
    let ca = ClientCa::new("cluster-ca");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("client-ca.pem");
    write(&ca_file, &ca.pem());
    let server = start(
        Duration::from_secs(4),
        ConnectionConfig {
            client_ca: Some(ca_file),
            client_cert_names: vec!["kube-apiserver".into()],
            ..ConnectionConfig::default()
        },
    )
    .await;
    let url = server.url();
    let apiserver = client_with_cert(&server.ca_pem, Some(ca.client("kube-apiserver")));
    assert!(served(&apiserver, &url).await, "the named client is served");
    let node = client_with_cert(&server.ca_pem, Some(ca.client("system:node:worker-1")));
    assert!(
        !served(&node, &url).await,
        "another certificate of the same CA (a kubelet's) is refused"
    );
    server.stop().await;
}

#[test]
fn a_missing_client_ca_stops_the_start() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let server = start(
            Duration::from_secs(4),
            ConnectionConfig {
                client_ca: Some("/nonexistent/client-ca.pem".into()),
                ..ConnectionConfig::default()
            },
        )
        .await;
        let err = tokio::time::timeout(Duration::from_secs(10), server.task)
            .await
            .expect("serve returns")
            .expect("task")
            .expect_err("a missing --client-ca is fatal");
        assert!(
            err.to_string().contains("/nonexistent/client-ca.pem"),
            "{err}"
        );
    });
}

// ---------------------------------------------------------------------------------
// The NetworkPolicy.

#[test]
fn the_network_policy_admits_only_the_webhook_and_metrics_ports() {
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/networkpolicy.yaml"),
    )
    .expect("deploy/networkpolicy.yaml");
    let policy: NetworkPolicy = serde_saphyr::from_str(&text).expect("a NetworkPolicy");
    assert_eq!(
        policy.metadata.namespace.as_deref(),
        Some("cattle-fleet-system")
    );
    let spec = policy.spec.expect("spec");
    assert_eq!(
        spec.pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .and_then(|l| l.get("app.kubernetes.io/name"))
            .map(String::as_str),
        Some("fleet-delete-guard"),
        "selects the webhook's pods (deploy/base/deployment.yaml labels)"
    );
    assert_eq!(
        spec.policy_types.as_deref(),
        Some(&["Ingress".to_string()][..])
    );
    let rules = spec.ingress.expect("ingress rules");
    let ports: Vec<String> = rules
        .iter()
        .flat_map(|r| r.ports.iter().flatten())
        .map(|p| format!("{:?}", p.port))
        .collect();
    assert_eq!(ports.len(), 2, "{ports:?}");
    let webhook = &rules[0];
    assert!(format!("{:?}", webhook.ports).contains("9443"));
    let from = webhook.from.as_ref().expect("from");
    assert!(
        from.iter().all(|peer| peer.ip_block.is_some()
            && peer.pod_selector.is_none()
            && peer.namespace_selector.is_none()),
        "the webhook port admits address blocks only (kube-apiserver), no pods"
    );
}
