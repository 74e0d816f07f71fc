//! A runtime of its own for the work that follows the cluster — the watches that feed the
//! owner index, the patcher, the resync — on one thread beside the webhook's workers.
//!
//! Why: glibc gives each thread its own malloc arena. Built on the workers, the index and
//! the start-up resync's transients (a comparison of every deployed object, LIST pages)
//! left the arenas the reviews allocate from fragmented, and with 10,000 BundleDeployments
//! cached a review cost measurably more CPU in malloc than with counting off
//! (BENCHMARKS.md, "Beside the kube-rs admission example"). A resync's parsing also no
//! longer runs between two reviews on a worker.

use tokio::runtime::{Builder, Handle};

/// The thread's name (what `top -H` and `/proc/PID/task/*/comm` show).
pub const THREAD_NAME: &str = "fdg-background";

/// Start the background runtime on its own thread and return its handle. The runtime
/// lives as long as the process.
pub fn start() -> std::io::Result<Handle> {
    let runtime = Builder::new_current_thread()
        .enable_all()
        .thread_name(THREAD_NAME)
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_spawned_under_its_handle_run_on_its_thread() {
        let handle = start().expect("background runtime");
        let task = {
            let _entered = handle.enter();
            tokio::spawn(async { std::thread::current().name().map(str::to_string) })
        };
        assert_eq!(task.await.expect("task").as_deref(), Some(THREAD_NAME));
        // Timers and I/O are enabled there.
        let slept = handle.spawn(async {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            true
        });
        assert!(slept.await.expect("timer task"));
    }
}
