//! SIGTERM on the real binary: stop accepting, finish the review in flight, exit 0.

mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Polls `GET /metrics` until a line is `line` (at most 20 s).
async fn wait_for_metric(addr: std::net::SocketAddr, line: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut text = Vec::new();
        if let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await {
            let _ = tcp
                .write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                .await;
            let _ = tcp.read_to_end(&mut text).await;
        }
        if String::from_utf8_lossy(&text).lines().any(|l| l == line) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {line:?} in /metrics: {}",
            String::from_utf8_lossy(&text)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sigterm_drains_in_flight_reviews_then_exits() {
    drains_in_flight_review_then_exits(&[]).await;
}

/// The same with the runtime of several workers (`--worker-threads`; the default is
/// one thread).
#[tokio::test]
async fn sigterm_drains_with_two_worker_threads() {
    drains_in_flight_review_then_exits(&["--worker-threads=2"]).await;
}

async fn drains_in_flight_review_then_exits(args: &[&str]) {
    let certs = support::certificates();
    let dir = tempfile::tempdir().expect("tempdir");
    let files = support::write_pair(dir.path(), &certs);
    let process = support::ServeProcess::spawn(&files, args, &[]);
    let (addr, metrics_addr) = process.serving();

    let body = support::fixture("admissionreview-delete-configmap.json");
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let mut stream = support::tls_connect(addr, &certs.ca_pem, &[b"http/1.1"])
        .await
        .expect("connect");
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(first).await.expect("first half");
    stream.flush().await.expect("flush");
    // Wait until the server has read the headers (the request is dispatched, its body
    // still arriving): a connection whose request has not started yet is idle, and a
    // graceful shutdown rightly closes idle connections.
    wait_for_metric(metrics_addr, "fleet_delete_guard_requests_in_progress 1").await;

    // SAFETY: sending a signal to our own child process.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(process.child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill");
    process.wait_log("shutting down");
    assert!(
        support::tls_connect(addr, &certs.ca_pem, &[b"http/1.1"])
            .await
            .is_err(),
        "no new connections after SIGTERM"
    );

    stream.write_all(rest).await.expect("second half");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("answered")
        .expect("read");
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("6f1d2c3b-4a5e-4f60-9a7b-8c9d0e1f2a3b"),
        "same uid: {text}"
    );

    let mut child = process.drain_log();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "exit status {status:?}");
}
