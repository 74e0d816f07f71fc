//! What the load benches read of a measured server process from /proc: CPU time,
//! context switches, memory; and how they start, probe and stop it.

// libc: SIGTERM to the measured process, CPU affinity of the bench itself.
#![allow(unsafe_code, dead_code)]

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

/// The server binary: `--server-bin`, else the release binary cargo built for the bench.
pub fn server_bin(given: Option<&Path>) -> PathBuf {
    given
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_fleet-delete-guard")))
}

/// Where a bench keeps logs and files: `--keep-dir` (created), else a temporary
/// directory removed when the returned guard is dropped.
pub fn work_dir(keep: Option<&Path>) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = match keep {
        Some(d) => {
            std::fs::create_dir_all(d).expect("keep dir");
            d.to_path_buf()
        }
        None => tmp.path().to_path_buf(),
    };
    (tmp, dir)
}

/// A port free on loopback now (the server binds it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `VmHWM` (peak RSS) and `VmRSS` of `pid`, in KiB.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Context switches (voluntary and not) of every thread of `pid` so far.
pub fn context_switches(pid: u32) -> u64 {
    let mut total = 0u64;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("status")) {
                total += s
                    .lines()
                    .filter(|l| l.contains("ctxt_switches:"))
                    .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum::<u64>();
            }
        }
    }
    total
}

/// Minor page faults, user and kernel CPU ticks of process `pid` (all its threads;
/// `/proc/PID/stat` fields 10, 14 and 15).
pub fn fault_and_tick_counts(pid: u32) -> (u64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name, in parentheses, may hold spaces: count fields after it.
    let after = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let field = |n: usize| -> u64 {
        // `after` starts with field 3 (the state).
        after
            .split_whitespace()
            .nth(n - 3)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field(10), field(14), field(15))
}

/// Sum of the CPU time of every thread of `pid` (`/proc/PID/task/*/schedstat`, ns).
pub fn process_cpu(pid: u32) -> Duration {
    let mut total = 0u64;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
                total += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Duration::from_nanos(total)
}

/// `GET /readyz` answered 200 on the plain-HTTP listener at `addr`.
pub async fn readyz(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::with_capacity(512);
    let _ = s.read_to_end(&mut buf).await;
    buf.starts_with(b"HTTP/1.1 200")
}

/// Poll `ready` every `every` until it says yes. Panics with the server's log when the
/// child exits first, or after `timeout` (`what` names it in the message).
pub async fn wait_ready<F, Fut>(
    what: &str,
    child: &mut Child,
    log: &Path,
    timeout: Duration,
    every: Duration,
    mut ready: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !ready().await {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited with {status} before ready; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} not ready within {timeout:?}"
        );
        tokio::time::sleep(every).await;
    }
}

/// SIGTERM (graceful shutdown, as in a cluster), then SIGKILL after 30 s.
pub async fn stop(child: &mut Child) {
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Pin this process (every thread it starts later, and the processes it spawns) to
/// `cpus`, a `taskset -c` list such as `0` or `0-1`.
pub fn pin_self(cpus: &str) {
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for part in cpus.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse().unwrap_or(0), b.parse().unwrap_or(0)),
            None => {
                let a: usize = part.parse().unwrap_or(0);
                (a, a)
            }
        };
        for c in a..=b {
            unsafe { libc::CPU_SET(c, &mut set) };
        }
    }
    // Every thread of this process: called before the runtime starts its threads.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(rc, 0, "sched_setaffinity {cpus}");
}
