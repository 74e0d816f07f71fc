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

/// Info lines wait in memory for `--log-flush-interval` (here an hour, so only the stop
/// can write them); SIGTERM writes every one of them, in order, before the exit.
#[tokio::test]
async fn a_clean_stop_writes_the_lines_still_waiting() {
    let certs = support::certificates();
    let dir = tempfile::tempdir().expect("tempdir");
    let files = support::write_pair(dir.path(), &certs);
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fleet-delete-guard"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-flush-interval",
            "1h",
        ])
        .arg("--metrics-listen")
        .arg(metrics.to_string())
        .arg("--tls-cert")
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the binary");
    // Up (its signal handler installed) once /metrics answers; the log says nothing yet.
    wait_for_metric(metrics, "fleet_delete_guard_reviews_in_flight 0").await;

    // SAFETY: sending a signal to our own child process.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill");
    let mut stderr = child.stderr.take().expect("stderr");
    let (log, status) = tokio::task::spawn_blocking(move || {
        let mut log = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut log).expect("read the log");
        (log, child.wait().expect("wait"))
    })
    .await
    .expect("join");
    assert!(status.success(), "exit status {status:?}: {log}");
    let messages: Vec<String> = log
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("JSON ({e}): {l}"));
            v["message"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    let at = |m: &str| {
        messages
            .iter()
            .position(|x| x.contains(m))
            .unwrap_or_else(|| panic!("no {m:?} line: {messages:#?}"))
    };
    assert!(
        at("fleet-delete-guard serving") < at("shutting down"),
        "{messages:#?}"
    );
}
