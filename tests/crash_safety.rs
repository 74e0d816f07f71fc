//! kill -9 in the middle of a burst of deletions, restart: the counts converge to
//! exact, through the start-up resync and the idempotent deltas.

mod support;

use std::{net::SocketAddr, process::Child, time::Duration};

use futures::{stream, StreamExt};
use kube_api_double::{gvr, ApiDouble, Options};
use support::fleet::{missing, seed_many, BD_NAMESPACE};

struct Webhook {
    child: Child,
    addr: SocketAddr,
}

/// The real binary, counting against the double through a kubeconfig.
fn start_webhook(
    kubeconfig: &std::path::Path,
    files: &fleet_delete_guard::tls::CertFiles,
) -> Webhook {
    let process = support::ServeProcess::spawn(
        files,
        &["--resync-interval", "300"],
        &[
            ("KUBECONFIG", kubeconfig.as_os_str()),
            ("RUST_LOG", std::ffi::OsStr::new("info")),
        ],
    );
    let (addr, _) = process.serving();
    Webhook {
        child: process.drain_log(),
        addr,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(unsafe_code)] // kill(2)
async fn kill_9_mid_burst_then_restart_converges_to_exact_counts() {
    const N: usize = 1000;
    let double = ApiDouble::start(Options::default()).await;
    seed_many(&double, N);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    double.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let certs = support::certificates();
    let files = support::write_pair(dir.path(), &certs);

    let mut first = start_webhook(&kubeconfig, &files);
    let url = format!("https://localhost:{}/validate", first.addr.port());
    let client = support::https_client(&certs.ca_pem);
    let reviews: Vec<(String, serde_json::Value)> = (0..N)
        .map(|i| {
            let name = format!("cm-{i:03}");
            (
                name.clone(),
                support::fleet::many_review(&double, &name, &format!("r-{i}")),
            )
        })
        .collect();

    // kube-apiserver: review (failurePolicy Ignore: a dead webhook does not stop the
    // deletion), then delete. The webhook is killed after a third of the burst.
    let killed = std::sync::atomic::AtomicBool::new(false);
    let answered = std::sync::atomic::AtomicUsize::new(0);
    let pid = first.child.id();
    stream::iter(reviews.into_iter().enumerate())
        .for_each_concurrent(32, |(i, (name, review))| {
            let client = client.clone();
            let url = url.clone();
            let double = &double;
            let killed = &killed;
            let answered = &answered;
            async move {
                if i == N / 3 && !killed.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    // SAFETY: signalling our own child process.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                }
                let sent = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(review.to_string())
                    .send()
                    .await;
                if matches!(sent, Ok(ref r) if r.status().is_success()) {
                    answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                double.delete_object(&gvr::CONFIGMAPS, "default", &name);
            }
        })
        .await;
    let _ = first.child.wait();
    let answered = answered.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        answered > 0 && answered < N,
        "the kill landed mid-burst ({answered} of {N} answered)"
    );

    let mut second = start_webhook(&kubeconfig, &files);
    let repo = double
        .wait_for(
            &gvr::GITREPOS,
            "fleet-local",
            "many",
            |r| missing(r) == N as i64,
            Duration::from_secs(60),
        )
        .await
        .expect("counts converge after the restart");
    assert_eq!(support::fleet::ready_of_desired(&repo), format!("0/{N}"));
    let bd = double
        .get(&gvr::BUNDLEDEPLOYMENTS, BD_NAMESPACE, "many-config")
        .expect("bd");
    assert_eq!(
        bd["status"]["resourceCounts"]["missing"], N as i64,
        "exactly once, none lost"
    );
    assert_eq!(bd["status"]["resourceCounts"]["desiredReady"], N as i64);
    let _ = second.child.kill();
    let _ = second.child.wait();
}
