//! The file watcher behind every hot reload: the serving certificate (`src/tls.rs`)
//! and the client CA (`src/listener/client_auth.rs`).
//!
//! Every `interval` the files are read on the blocking pool; when their bytes differ
//! from the ones in use (and from the last rejected ones) the new bytes are applied.
//! A success or failure is counted once in `tls_reloads_total{result}` and logged by
//! the [`Watched`] source; on failure the previous configuration stays in use.
//! Polling, not inotify: Kubernetes replaces Secret and ConfigMap volumes by swapping
//! a `..data` symlink, which inotify watches on the files themselves miss.

use std::{fmt::Display, time::Duration};

use crate::metrics::{Metrics, ResultLabels};

/// Something loaded from files that can be reloaded when they change.
pub trait Watched: Clone + Send + Sync + 'static {
    /// The files' bytes as read.
    type Bytes: PartialEq + Send + 'static;
    type Error: Display + Send + 'static;

    /// Read the files (blocking).
    fn read(&self) -> Result<Self::Bytes, Self::Error>;
    /// Put `bytes` in use, or say why they are not usable.
    fn apply(&self, bytes: &Self::Bytes) -> Result<(), Self::Error>;
    /// The files could not be read; what is in use stays.
    fn unreadable(&self, error: &Self::Error);
    /// New bytes are in use.
    fn reloaded(&self);
    /// New bytes were refused; what is in use stays.
    fn rejected(&self, error: &Self::Error);
}

/// Watch `source`, whose files held `loaded` when it was put in use. Runs forever.
pub async fn watch<W: Watched>(
    source: W,
    mut loaded: W::Bytes,
    interval: Duration,
    metrics: Metrics,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rejected: Option<W::Bytes> = None;
    loop {
        ticker.tick().await;
        let reader = source.clone();
        let current = match tokio::task::spawn_blocking(move || reader.read()).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                source.unreadable(&e);
                continue;
            }
            Err(_) => continue,
        };
        if current == loaded || rejected.as_ref() == Some(&current) {
            continue;
        }
        match source.apply(&current) {
            Ok(()) => {
                metrics
                    .tls_reloads
                    .get_or_create(&ResultLabels { result: "success" })
                    .inc();
                source.reloaded();
                loaded = current;
                rejected = None;
            }
            Err(e) => {
                metrics
                    .tls_reloads
                    .get_or_create(&ResultLabels { result: "error" })
                    .inc();
                source.rejected(&e);
                rejected = Some(current);
            }
        }
    }
}
