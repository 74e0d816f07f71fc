//! The real server on ephemeral ports, over real TLS, with a real HTTP client.

mod support;

use std::time::Duration;

use fleet_delete_guard::policy::{DecisionConfig, Policy};
use serde_json::{json, Value};
use support::{fixture, fixture_json, post, ServerOptions, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn user_review() -> Value {
    fixture_json("admissionreview-delete-configmap.json")
}

fn response(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    v["response"].clone()
}

async fn review(server: &TestServer, body: &Value) -> Value {
    let (status, text) = post(&server.client(), &server.url(), body.to_string()).await;
    assert_eq!(status, 200, "{text}");
    response(&text)
}

fn with_user(mut review: Value, user: &str, groups: &[&str]) -> Value {
    review["request"]["userInfo"] = json!({ "username": user, "groups": groups });
    review
}

fn assert_silent(r: &Value) {
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("warnings").is_none(), "no warnings expected: {r}");
}

#[tokio::test]
async fn user_delete_is_allowed_with_warnings_audit_annotations_and_counted() {
    let server = TestServer::start(ServerOptions::default()).await;
    let r = review(&server, &user_review()).await;
    assert_eq!(r["uid"], "6f1d2c3b-4a5e-4f60-9a7b-8c9d0e1f2a3b");
    assert_eq!(r["allowed"], true);
    let warnings: Vec<String> = serde_json::from_value(r["warnings"].clone()).expect("warnings");
    assert!((1..=3).contains(&warnings.len()));
    assert!(
        warnings[0].contains("configmap default/test-config2-one"),
        "{warnings:?}"
    );
    assert!(warnings[0].contains("default-lots-config2"), "{warnings:?}");
    assert!(warnings.iter().all(|w| w.chars().count() <= 120));
    let audit = &r["auditAnnotations"];
    assert_eq!(audit["decision"], "warned");
    assert_eq!(audit["counted"], "true");
    assert_eq!(audit["owner"], "objectset:default-lots-config2");
    let counted = server.sink.take();
    assert_eq!(counted.len(), 1);
    assert_eq!(
        counted[0].object_uid,
        "dcec6997-ad47-5a46-8fda-dbb8baee8664"
    );
    assert_eq!(counted[0].name, "test-config2-one");
    assert_eq!(counted[0].resource, "configmaps");

    let metrics = reqwest::get(format!("http://{}/metrics", server.metrics_addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            r#"fleet_delete_guard_reviews_total{operation="DELETE",decision="warned"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("fleet_delete_guard_review_duration_seconds_count 1"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn fleet_agent_controllers_and_unmanaged_objects_are_silent() {
    let server = TestServer::start(ServerOptions::default()).await;
    let agent = review(
        &server,
        &fixture_json("admissionreview-delete-by-fleet-agent.json"),
    )
    .await;
    assert_silent(&agent);
    assert_eq!(agent["auditAnnotations"]["decision"], "fleet");
    assert_eq!(agent["auditAnnotations"]["counted"], "false");
    assert!(
        server.sink.take().is_empty(),
        "Fleet's own deletions are never counted"
    );

    for user in [
        "system:serviceaccount:kube-system:namespace-controller",
        "system:serviceaccount:kube-system:generic-garbage-collector",
    ] {
        let r = review(
            &server,
            &with_user(user_review(), user, &["system:serviceaccounts"]),
        )
        .await;
        assert_silent(&r);
        assert_eq!(r["auditAnnotations"]["decision"], "controller", "{user}");
        assert_eq!(r["auditAnnotations"]["counted"], "true", "{user}");
    }
    assert_eq!(
        server.sink.take().len(),
        2,
        "controller deletions are counted"
    );

    let mut plain = user_review();
    plain["request"]["oldObject"]["metadata"]["labels"] = json!({"app": "mine"});
    plain["request"]["oldObject"]["metadata"]["annotations"] = json!({});
    let r = review(&server, &plain).await;
    assert_silent(&r);
    assert!(
        r.get("auditAnnotations").is_none(),
        "fast path adds nothing: {r}"
    );

    for op in ["CREATE", "UPDATE"] {
        let mut other = user_review();
        other["request"]["operation"] = op.into();
        other["request"]["object"] = other["request"]["oldObject"].clone();
        let r = review(&server, &other).await;
        assert_silent(&r);
        assert!(r.get("auditAnnotations").is_none());
    }
    assert!(server.sink.take().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn deletecollection_item_dry_run_and_repeats() {
    let server = TestServer::start(ServerOptions::default()).await;
    let mut item = user_review();
    item["request"]["name"] = "".into();
    let r = review(&server, &item).await;
    assert!(
        r["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .contains("default/test-config2-one"),
        "{r}"
    );
    assert_eq!(server.sink.take().len(), 1);

    let mut dry = user_review();
    dry["request"]["dryRun"] = true.into();
    let r = review(&server, &dry).await;
    assert_eq!(r["allowed"], true);
    assert_eq!(
        r["warnings"].as_array().map(Vec::len),
        Some(3),
        "dry run warns the same"
    );
    assert_eq!(r["auditAnnotations"]["counted"], "false");
    assert!(server.sink.take().is_empty(), "dry run has no side effects");

    let mut repeat = user_review();
    repeat["request"]["oldObject"]["metadata"]["deletionTimestamp"] = "2026-08-21T14:30:00Z".into();
    repeat["request"]["oldObject"]["metadata"]["finalizers"] = json!(["example.com/keep"]);
    let r = review(&server, &repeat).await;
    assert_silent(&r);
    assert_eq!(r["auditAnnotations"]["decision"], "repeat");
    assert!(server.sink.take().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn deny_policy_refuses_and_break_glass_is_allowed() {
    let server = TestServer::start(ServerOptions {
        decision: DecisionConfig {
            policy: Policy::Deny,
            break_glass_groups: vec!["sre-oncall".into()],
            ..DecisionConfig::default()
        },
        ..ServerOptions::default()
    })
    .await;
    let r = review(&server, &user_review()).await;
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 403);
    let msg = r["status"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("default-lots-config2") && msg.contains("Git"),
        "{msg}"
    );
    assert_eq!(r["auditAnnotations"]["decision"], "denied");
    assert!(
        server.sink.take().is_empty(),
        "a refused deletion is not counted"
    );

    let r = review(&server, &with_user(user_review(), "bob", &["sre-oncall"])).await;
    assert_eq!(r["allowed"], true);
    assert!(
        r["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .contains("break-glass"),
        "{r}"
    );
    assert_eq!(server.sink.take().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn bad_bodies_get_one_line_reasons_and_never_break_the_server() {
    let server = TestServer::start(ServerOptions::default()).await;
    let client = server.client();
    let url = server.url();
    let full = fixture("admissionreview-delete-configmap.json");
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("not JSON", b"hello".to_vec(), 400, "not JSON"),
        (
            "truncated",
            full.as_bytes()[..full.len() / 2].to_vec(),
            400,
            "not JSON",
        ),
        (
            "not a review",
            br#"{"kind":"ConfigMap","apiVersion":"v1"}"#.to_vec(),
            400,
            "not an AdmissionReview",
        ),
        (
            "wrong version",
            full.replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
                .into_bytes(),
            400,
            "v1beta1",
        ),
        (
            "no request",
            br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#.to_vec(),
            400,
            "no request",
        ),
        ("empty", Vec::new(), 400, "not JSON"),
    ];
    for (what, body, status, needle) in cases {
        let (got, text) = post(&client, &url, body).await;
        assert_eq!(got, status, "{what}: {text}");
        assert!(text.contains(needle), "{what}: {text}");
        assert_eq!(
            text.trim_end().lines().count(),
            1,
            "{what}: one-line reason: {text}"
        );
    }

    let oversize = vec![b' '; fleet_delete_guard::server::MAX_REVIEW_BYTES + 1];
    let (got, text) = post(&client, &url, oversize).await;
    assert_eq!(got, 413, "{text}");

    let resp = client
        .post(&url)
        .header("content-type", "text/plain")
        .body(full.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 415);

    let get = client.get(&url).send().await.expect("send");
    assert_eq!(get.status().as_u16(), 405);

    // A valid envelope whose object is not an object: allowed, uid kept, logged.
    let mut odd = user_review();
    odd["request"]["oldObject"] = json!("a string, not an object");
    let r = review(&server, &odd).await;
    assert_eq!(r["allowed"], true);
    assert_eq!(r["uid"], "6f1d2c3b-4a5e-4f60-9a7b-8c9d0e1f2a3b");

    // Still serving normally after all that.
    let r = review(&server, &user_review()).await;
    assert_eq!(r["allowed"], true);
    let metrics = reqwest::get(format!("http://{}/metrics", server.metrics_addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for kind in [
        "not_json",
        "wrong_version",
        "too_large",
        "content_type",
        "unexpected_shape",
    ] {
        assert!(
            metrics.contains(&format!("kind=\"{kind}\"")),
            "{kind} counted: {metrics}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn stalled_client_is_timed_out() {
    let server = TestServer::start(ServerOptions {
        request_timeout: Duration::from_millis(500),
        ..ServerOptions::default()
    })
    .await;
    // Headers promise a body that never comes.
    let mut stream = support::tls_connect(server.webhook, &server.ca_pem, &[b"http/1.1"])
        .await
        .expect("connect");
    stream
        .write_all(
            b"POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{",
        )
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(read.is_ok(), "server must end a stalled request");
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");

    // Slow headers: never finished.
    let mut stream = support::tls_connect(server.webhook, &server.ca_pem, &[b"http/1.1"])
        .await
        .expect("connect");
    stream
        .write_all(b"POST /validate HTTP/1.1\r\nhost: loc")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "server must close a connection whose headers never finish"
    );

    let r = review(&server, &user_review()).await;
    assert_eq!(r["allowed"], true);
    server.stop().await;
}

#[tokio::test]
async fn only_http1_is_negotiated() {
    let server = TestServer::start(ServerOptions::default()).await;
    let stream = support::tls_connect(server.webhook, &server.ca_pem, &[b"h2", b"http/1.1"])
        .await
        .expect("connect");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let h2_only = support::tls_connect(server.webhook, &server.ca_pem, &[b"h2"]).await;
    assert!(h2_only.is_err(), "a client that only speaks h2 is refused");
    server.stop().await;
}

#[tokio::test]
async fn replaced_certificate_is_served_on_the_next_handshake_and_a_broken_one_is_ignored() {
    let server = TestServer::start(ServerOptions::default()).await;
    let old_ca = server.ca_pem.clone();
    assert!(
        support::tls_connect(server.webhook, &old_ca, &[b"http/1.1"])
            .await
            .is_ok()
    );

    // A broken pair (key of another certificate) is rejected and the old one kept.
    let other = support::certificates();
    let old_key = std::fs::read(&server.files.key).expect("key");
    std::fs::write(&server.files.key, other.key_pem.as_bytes()).expect("write key");
    let metrics = server.metrics.clone();
    support::wait_until("reload error counted", Duration::from_secs(10), || {
        metrics
            .encode()
            .contains(r#"fleet_delete_guard_tls_reloads_total{result="error"} 1"#)
    })
    .await;
    assert!(
        support::tls_connect(server.webhook, &old_ca, &[b"http/1.1"])
            .await
            .is_ok(),
        "old pair still served"
    );
    std::fs::write(&server.files.key, old_key).expect("restore key");

    // A valid new pair, as cert-manager writes it.
    let new = support::certificates();
    support::write_pair(server.dir.path(), &new);
    support::wait_until("reload success counted", Duration::from_secs(10), || {
        metrics
            .encode()
            .contains(r#"fleet_delete_guard_tls_reloads_total{result="success"} 1"#)
    })
    .await;
    let fresh = support::tls_connect(server.webhook, &new.ca_pem, &[b"http/1.1"])
        .await
        .expect("new CA trusted");
    let presented = fresh.get_ref().1.peer_certificates().expect("peer certs")[0].clone();
    let expected =
        rustls::pki_types::CertificateDer::from_pem_slice(new.cert_pem.as_bytes()).expect("pem");
    assert_eq!(
        presented.as_ref(),
        expected.as_ref(),
        "the new certificate is presented"
    );
    assert!(
        support::tls_connect(server.webhook, &old_ca, &[b"http/1.1"])
            .await
            .is_err(),
        "old CA no longer matches"
    );

    // Reviews still answered over the new certificate.
    let (status, _) = support::post(
        &support::https_client(&new.ca_pem),
        &server.url(),
        user_review().to_string(),
    )
    .await;
    assert_eq!(status, 200);
    server.stop().await;
}

use rustls::pki_types::pem::PemObject;

#[tokio::test]
async fn probes_report_health_and_readiness() {
    let server = TestServer::start(ServerOptions::default()).await;
    let base = format!("http://{}", server.metrics_addr);
    let health = reqwest::get(format!("{base}/healthz"))
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    let ready = reqwest::get(format!("{base}/readyz"))
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);
    assert!(ready.text().await.expect("text").contains("[+]tls ok"));
    server.stop().await;
}
