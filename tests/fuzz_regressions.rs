//! The fuzzing corpus (`tests/fixtures/fuzz/`) replayed with its documented outcomes,
//! inputs too big to store, a short generated run, and the guarantee that no log line
//! or 400 answer quotes a request body (RELIABILITY.md, "Fuzzing"; SECURITY.md).

#[path = "support/fuzz.rs"]
mod fuzz;
mod support;

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    time::Duration,
};

use fleet_delete_guard::server::MAX_REVIEW_BYTES;
use fuzz::{Checker, CountingAlloc, Rng, SECRET_MARKER};
use serde_json::{json, Value};
use support::{ServerOptions, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Allocations are counted so that the big-input test can check its bound.
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Tests of this binary run one at a time: allocation peaks are process-wide, and the
/// captured log is shared.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz")
}

/// (file name, documented outcome, body) for every corpus file.
fn corpus() -> Vec<(String, String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("tests/fixtures/fuzz")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("UTF-8 file name")
                .to_string();
            let (outcome, _) = name
                .split_once("--")
                .unwrap_or_else(|| panic!("{name}: name it <outcome>--<what>.json"));
            let body = std::fs::read(&path).expect("read");
            (name.clone(), outcome.to_string(), body)
        })
        .collect()
}

fn secret_review() -> Value {
    support::fixture_json("fuzz/decision-warned--secret.json")
}

#[test]
fn the_corpus_keeps_its_documented_outcomes() {
    let _serial = serial();
    let checker = Checker::new();
    let mut by_outcome: BTreeMap<String, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    for (name, expected, body) in corpus() {
        let got = checker.check(&body).label();
        if got != expected {
            wrong.push(format!("{name}: documented {expected}, got {got}"));
        }
        *by_outcome.entry(expected).or_default() += 1;
    }
    assert!(wrong.is_empty(), "outcomes changed:\n{}", wrong.join("\n"));
    for needed in [
        "400-not_json",
        "400-not_admission_review",
        "400-wrong_version",
        "400-no_request",
        "unexpected-shape",
        "decision-warned",
        "decision-fleet",
        "decision-not-managed",
    ] {
        assert!(
            by_outcome.contains_key(needed),
            "the corpus covers {needed}: {by_outcome:?}"
        );
    }
}

/// Inputs up to the 7 MiB the HTTP layer lets through, too big to keep as files: each
/// gets its answer, within the allocation bound the fuzzers enforce.
#[test]
fn big_inputs_are_answered_within_bounded_allocation() {
    let _serial = serial();
    let checker = Checker::new();
    let mib = 1024 * 1024;
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();

    let mut r = secret_review();
    r["request"]["oldObject"]["metadata"]["annotations"]
        ["kubectl.kubernetes.io/last-applied-configuration"] =
        format!("{{\"data\":\"{SECRET_MARKER}{}\"}}", "s".repeat(6 * mib)).into();
    cases.push((
        "6 MiB annotation",
        serde_json::to_vec(&r).expect("json"),
        "decision-warned",
    ));

    let mut r = secret_review();
    let labels = r["request"]["oldObject"]["metadata"]["labels"]
        .as_object_mut()
        .expect("labels");
    let hash = labels.remove("objectset.rio.cattle.io/hash").expect("hash");
    for i in 0..100_000 {
        labels.insert(
            format!("example.com/l{i}"),
            format!("{SECRET_MARKER}{i}").into(),
        );
    }
    labels.insert("objectset.rio.cattle.io/hash".into(), hash);
    cases.push((
        "100,000 labels",
        serde_json::to_vec(&r).expect("json"),
        "decision-warned",
    ));

    let mut r = secret_review();
    r["request"]["oldObject"]["data"]["blob"] = "\n\"\\é".repeat(3 * mib / 4).into();
    cases.push((
        "6 MiB of escapes in data",
        serde_json::to_vec(&r).expect("json"),
        "decision-warned",
    ));

    let mut r = secret_review();
    let name = "名".repeat(mib);
    r["request"]["name"] = name.clone().into();
    r["request"]["oldObject"]["metadata"]["name"] = name.into();
    // Identifiers longer than MAX_IDENTIFIER_BYTES are not echoed: unexpected shape.
    cases.push((
        "3 MiB name",
        serde_json::to_vec(&r).expect("json"),
        "unexpected-shape",
    ));

    let mut r = secret_review();
    r["request"]["oldObject"]["metadata"]["annotations"]["objectset.rio.cattle.io/id"] =
        "🦀".repeat(7 * mib / 4 - 1024).into();
    cases.push((
        "7 MiB setID (found by fuzzing)",
        serde_json::to_vec(&r).expect("json"),
        "unexpected-shape",
    ));

    let mut r = secret_review();
    r["request"]["uid"] = "u".repeat(6 * mib).into();
    cases.push((
        "6 MiB uid",
        serde_json::to_vec(&r).expect("json"),
        "unexpected-shape",
    ));

    let depth = 500_000;
    let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let r = serde_json::to_string(&secret_review()).expect("json");
    let in_data = r.replacen("\"data\":{", &format!("\"data\":{{\"deep\":{deep},"), 1);
    cases.push((
        "500,000 levels in data",
        in_data.into_bytes(),
        "decision-warned",
    ));
    let in_labels = r.replacen("\"labels\":{", &format!("\"labels\":{{\"deep\":{deep},"), 1);
    cases.push((
        "500,000 levels in labels",
        in_labels.into_bytes(),
        "unexpected-shape",
    ));
    let whole = format!("{}{}", "[".repeat(3 * mib), "]".repeat(3 * mib));
    cases.push((
        "3 Mi levels",
        whole.into_bytes(),
        "400-not_admission_review",
    ));

    let mut padded = vec![b' '; MAX_REVIEW_BYTES - r.len()];
    padded.extend_from_slice(r.as_bytes());
    cases.push(("7 MiB of whitespace first", padded, "decision-warned"));

    for (what, body, expected) in cases {
        assert!(
            body.len() <= MAX_REVIEW_BYTES,
            "{what}: {} bytes",
            body.len()
        );
        let base = fuzz::start_measuring();
        let got = checker.check(&body).label();
        let peak = fuzz::peak_since(base);
        assert_eq!(got, expected, "{what}");
        assert!(
            peak <= fuzz::allocation_bound(body.len()),
            "{what}: {peak} bytes allocated for {} bytes",
            body.len()
        );
    }
}

/// A 7 MiB string of non-ASCII characters where a struct, list, map or bool is due:
/// serde_json used to format (Debug-escape) the whole string into its error before
/// src/redact.rs dropped it, about 0.65 s per review (RELIABILITY.md, "Fuzzing"). The
/// refusal now names the type only: a bounded, value-free detail. Speed is measured by
/// `fuzz_admission --replay`, not asserted here.
#[test]
fn huge_refused_strings_give_bounded_value_free_errors() {
    let _serial = serial();
    let checker = Checker::new();
    let mib = 1024 * 1024;
    let huge = format!("{SECRET_MARKER}{}", "🦀".repeat(7 * mib / 4 - 2048));
    let cases: [(&[&str], &str, &str); 5] = [
        (
            &["request", "userInfo"],
            "unexpected-shape",
            "expected struct UserInfo",
        ),
        (
            &["request", "oldObject", "metadata", "labels"],
            "unexpected-shape",
            "expected a map of strings",
        ),
        (
            &["request", "oldObject", "metadata", "finalizers"],
            "unexpected-shape",
            "expected a list of strings",
        ),
        (
            &["request", "operation"],
            "unexpected-shape",
            "expected one of `CREATE`",
        ),
        (
            &["request"],
            "400-not_admission_review",
            "expected struct EnvelopeRequest",
        ),
    ];
    for (path, expected, says) in cases {
        let mut r = secret_review();
        let (last, parents) = path.split_last().expect("path");
        let mut at = &mut r;
        for p in parents {
            at = &mut at[*p];
        }
        at[*last] = huge.clone().into();
        let body = serde_json::to_vec(&r).expect("json");
        assert!(body.len() <= MAX_REVIEW_BYTES, "{path:?}: {}", body.len());
        let base = fuzz::start_measuring();
        let (outcome, detail) = checker.check_detailed(&body);
        let peak = fuzz::peak_since(base);
        assert_eq!(outcome.label(), expected, "{path:?}");
        assert!(detail.contains(says), "{path:?}: {detail}");
        assert!(
            detail.chars().count() <= 200
                && !detail.contains(SECRET_MARKER)
                && !detail.contains('🦀'),
            "{path:?}: {detail}"
        );
        assert!(
            peak <= fuzz::allocation_bound(body.len()),
            "{path:?}: {peak} bytes allocated for {} bytes",
            body.len()
        );
    }
}

/// A short structure-aware run on every `cargo test` (the long runs are in
/// RELIABILITY.md): the generator and the invariants stay in working order.
#[test]
fn generated_inputs_keep_the_invariants() {
    let _serial = serial();
    let checker = Checker::new();
    let seeds: Vec<Vec<u8>> = corpus().into_iter().map(|(_, _, body)| body).collect();
    let mut rng = Rng::new(20_261_125);
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..3_000 {
        let parent = &seeds[rng.below(seeds.len())];
        let input = fuzz::mutate(parent, &seeds, &mut rng, 16 * 1024);
        *outcomes.entry(checker.check(&input).label()).or_default() += 1;
    }
    assert!(
        outcomes.len() >= 5,
        "the generator reaches several outcomes: {outcomes:?}"
    );
}

// ---------------------------------------------------------------------------------
// Logs.

/// Every log record of this test binary, as the server writes them in a cluster
/// (JSON, one object per line), at debug level; `log` records (rustls) included.
fn captured_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(move || LogWriter(writer.clone()))
            .try_init()
            .expect("this test binary's only subscriber");
        buffer
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The Secret review, with `change` applied, as bytes.
fn secret_with(change: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut r = secret_review();
    change(&mut r);
    serde_json::to_vec(&r).expect("json")
}

/// Sends every hand-written corpus file and a Secret review through each error path
/// of the real server (400 of each kind, unexpected shape, 413, 415, 408, 405), then
/// checks that neither a log line nor an answer to a refused request carries any of
/// the Secret's values. A normal review is answered and logged too: the log line names
/// the object, never its contents.
#[test]
fn secrets_never_reach_logs_or_error_answers() {
    let log = captured_log();
    let _serial = serial();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(send_secrets_everywhere(log));
}

async fn send_secrets_everywhere(log: Arc<Mutex<Vec<u8>>>) {
    let server = TestServer::start(ServerOptions {
        request_timeout: Duration::from_millis(500),
        ..ServerOptions::default()
    })
    .await;
    let client = server.client();
    let url = server.url();
    let mut answers: Vec<(String, u16, String)> = Vec::new();

    for (name, outcome, body) in corpus() {
        if name.contains("--found-") {
            continue; // generated: markers may sit in logged identifiers
        }
        let (status, text) = support::post(&client, &url, body).await;
        let expected = if outcome.starts_with("400-") {
            400
        } else {
            200
        };
        assert_eq!(status, expected, "{name}: {text}");
        answers.push((name, status, text));
    }

    let targeted: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "labels are the secret",
            secret_with(|r| {
                r["request"]["oldObject"]["metadata"]["labels"] =
                    format!("{SECRET_MARKER}labels").into()
            }),
            200,
        ),
        (
            "annotation is a map holding the secret",
            secret_with(|r| {
                r["request"]["oldObject"]["metadata"]["annotations"]["objectset.rio.cattle.io/id"] =
                    json!({ "password": format!("{SECRET_MARKER}nested") })
            }),
            200,
        ),
        (
            "deletionTimestamp is the secret",
            secret_with(|r| {
                r["request"]["oldObject"]["metadata"]["deletionTimestamp"] =
                    format!("2026-08-21T{SECRET_MARKER}").into()
            }),
            200,
        ),
        (
            "operation is the secret",
            secret_with(|r| r["request"]["operation"] = format!("{SECRET_MARKER}op").into()),
            200,
        ),
        (
            "request is the secret",
            secret_with(|r| r["request"] = format!("{SECRET_MARKER}request").into()),
            400,
        ),
        (
            "uid is a list holding the secret",
            secret_with(|r| r["request"]["uid"] = json!([format!("{SECRET_MARKER}uid")])),
            400,
        ),
        (
            "truncated in the middle of the secret",
            {
                let body = secret_with(|_| {});
                let at = body
                    .windows(SECRET_MARKER.len())
                    .position(|w| w == SECRET_MARKER.as_bytes())
                    .expect("marker")
                    + 4;
                body[..at + SECRET_MARKER.len()].to_vec()
            },
            400,
        ),
        (
            "wrong version",
            secret_with(|r| r["apiVersion"] = "admission.k8s.io/v1beta1".into()),
            400,
        ),
        (
            "no request",
            secret_with(|r| {
                r.as_object_mut().expect("object").remove("request");
                r["data"] = json!({ "password": format!("{SECRET_MARKER}top") });
            }),
            400,
        ),
        ("well-formed", secret_with(|_| {}), 200),
    ];
    for (what, body, expected) in targeted {
        let (status, text) = support::post(&client, &url, body).await;
        assert_eq!(status, expected, "{what}: {text}");
        answers.push((what.to_string(), status, text));
    }

    // 413: a body over the limit, the Secret at its start.
    let mut big = secret_with(|_| {});
    big.resize(MAX_REVIEW_BYTES + 1, b' ');
    let (status, text) = support::post(&client, &url, big).await;
    assert_eq!(status, 413, "{text}");
    answers.push(("too large".into(), status, text));

    // 415: a Secret review sent as text.
    let resp = client
        .post(&url)
        .header("content-type", "text/plain")
        .body(secret_with(|_| {}))
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    answers.push((
        "content type".into(),
        status,
        resp.text().await.expect("text"),
    ));
    assert_eq!(status, 415);

    // 405.
    let resp = client.get(&url).send().await.expect("send");
    answers.push((
        "GET".into(),
        resp.status().as_u16(),
        resp.text().await.expect("text"),
    ));

    // 408: half the Secret review, then silence.
    let body = secret_with(|_| {});
    let mut stream = support::tls_connect(server.webhook, &server.ca_pem, &[b"http/1.1"])
        .await
        .expect("connect");
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream
        .write_all(&body[..body.len() / 2])
        .await
        .expect("half");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("the server ends a stalled request")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    answers.push(("stalled".into(), 408, text));

    server.stop().await;

    for (what, status, text) in &answers {
        if *status != 200 {
            assert!(
                !text.contains(SECRET_MARKER),
                "{what}: the {status} answer quotes the body: {text}"
            );
        }
    }
    let log = String::from_utf8(log.lock().unwrap_or_else(|e| e.into_inner()).clone())
        .expect("UTF-8 log");
    assert!(
        log.contains("review answered") && log.contains("db-credentials"),
        "reviews were logged, naming the object: {log}"
    );
    assert!(
        log.contains("request rejected") && log.contains("unexpected shape"),
        "the error paths were logged: {log}"
    );
    let leaks: Vec<&str> = log.lines().filter(|l| l.contains(SECRET_MARKER)).collect();
    assert!(
        leaks.is_empty(),
        "log lines carrying a secret value:\n{}",
        leaks.join("\n")
    );
}
