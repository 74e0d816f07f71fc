//! Generator of the benchmark log for `fleet-delete-guard audit` (BENCHMARKS.md,
//! "Audit report"). Ignored by `cargo test`; run it on purpose:
//!
//! ```sh
//! AUDIT_BENCH_LOG=/tmp/audit-1m.log AUDIT_BENCH_EVENTS=1000000 \
//!   cargo test --release --test audit_bench -- --ignored --nocapture
//! ```
//!
//! `AUDIT_BENCH_FLEET_PERCENT` (default 2) sets the share of Fleet-managed deletions;
//! 100 gives the worst case for memory, where every event becomes a row.
//! The log is deterministic (fixed seed): the same variables give the same bytes.

#[path = "fixtures/audit/events.rs"]
mod events;

use std::io::{BufWriter, Write};

use events::*;
use serde_json::json;

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const USERS: [&str; 6] = [
    "alice",
    "bob",
    "carol",
    "system:serviceaccount:kube-system:replicaset-controller",
    "system:kube-scheduler",
    "system:node:worker-1",
];
const RESOURCES: [&str; 6] = [
    "configmaps",
    "pods",
    "secrets",
    "deployments.apps",
    "services",
    "leases.coordination.k8s.io",
];
const NAMESPACES: [&str; 4] = ["default", "apps", "kube-system", "cattle-fleet-system"];
const DECISIONS: [&str; 6] = [
    "warned",
    "denied",
    "controller",
    "fleet",
    "allowed",
    "repeat",
];
const GITREPOS: [&str; 3] = [
    "fleet-local/lots",
    "fleet-default/web",
    "fleet-default/infra",
];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "writes a large benchmark log; run with --ignored"]
fn generate_audit_log() {
    let path = std::env::var("AUDIT_BENCH_LOG").unwrap_or_else(|_| {
        std::env::temp_dir()
            .join("audit-bench.log")
            .display()
            .to_string()
    });
    let events: u64 = env_or("AUDIT_BENCH_EVENTS", 1_000_000);
    let fleet_percent: u64 = env_or("AUDIT_BENCH_FLEET_PERCENT", 2);
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start: jiff::Timestamp = "2024-05-01T00:00:00Z".parse().unwrap();
    let (mut bytes, mut fleet, mut malformed) = (0u64, 0u64, 0u64);

    for i in 0..events {
        // ~8.6 ms apart, up to 2 s early: log order is not time order.
        let t = start + jiff::SignedDuration::from_micros((i * 8_640) as i64)
            - jiff::SignedDuration::from_millis(rng.below(2_000) as i64);
        let time = t.to_string();
        let id = format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            i,
            rng.below(1 << 16),
            rng.below(1 << 12),
            rng.below(1 << 12),
            rng.next() >> 16
        );
        let user = rng.pick(&USERS);
        let resource = rng.pick(&RESOURCES);
        let ns = rng.pick(&NAMESPACES);
        let name = format!("obj-{}", rng.below(5_000));
        let roll = rng.below(10_000);
        let fleet_cut = fleet_percent * 100;
        let line = if roll < fleet_cut {
            fleet += 1;
            let decision = rng.pick(&DECISIONS);
            let gitrepo = rng.pick(&GITREPOS);
            let bundle = format!(
                "{}-config{}",
                gitrepo.split('/').nth(1).unwrap(),
                rng.below(4)
            );
            let set_id = format!("default-{bundle}");
            let mut ev = if rng.below(20) == 0 {
                Ev::delete_collection(&id, NAMESPACE_CONTROLLER, resource, ns)
            } else if decision == "fleet" {
                Ev::delete(&id, FLEET_AGENT, resource, ns, &name).impersonating(
                    FLEET_DEFAULT,
                    &[
                        "system:serviceaccounts",
                        "system:serviceaccounts:cattle-fleet-system",
                        "system:authenticated",
                    ],
                )
            } else {
                Ev::delete(&id, user, resource, ns, &name)
            }
            .at(&time)
            .webhook(HOOK, decision, Some(gitrepo), Some(&bundle), &set_id);
            ev = match rng.below(3) {
                0 => ev,
                1 => ev.level("Request"),
                _ => ev.level("RequestResponse").response_object(fleet_object(
                    "ConfigMap",
                    ns,
                    &name,
                    &set_id,
                    "37517d22b0ca4dbc462436d47410a3bdfce3c6f9",
                )),
            };
            if decision == "denied" {
                ev = ev.denied_by(HOOK).code(403);
            } else if rng.below(10) == 0 {
                ev = ev.dry_run();
            }
            ev.line()
        } else if roll < fleet_cut + 10 {
            malformed += 1;
            format!("{{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",\"auditID\":\"{id}\",\"stage\":\"Respo")
        } else {
            let kind = (roll - fleet_cut) * 100 / (10_000 - fleet_cut).max(1);
            match kind {
                // RequestReceived of anything, deletions included.
                0..=9 => Ev::delete(&id, user, resource, ns, &name)
                    .at(&time)
                    .stage("RequestReceived")
                    .line(),
                // Deletions of objects that are not Fleet's.
                10..=14 => {
                    let ev = Ev::delete(&id, user, resource, ns, &name).at(&time);
                    if kind.is_multiple_of(2) {
                        ev.level("RequestResponse")
                            .response_object(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": name}}))
                            .line()
                    } else {
                        ev.line()
                    }
                }
                // Updates recorded with their bodies (some of Fleet's objects: not deletions).
                15..=24 => {
                    let object = if kind.is_multiple_of(3) {
                        fleet_object(
                            "ConfigMap",
                            ns,
                            &name,
                            "default-lots-config2",
                            "37517d22b0ca4dbc462436d47410a3bdfce3c6f9",
                        )
                    } else {
                        plain_object("ConfigMap", ns, &name)
                    };
                    Ev::new(&id, "update", user, resource, ns, &name)
                        .at(&time)
                        .level("RequestResponse")
                        .response_object(object)
                        .line()
                }
                25..=34 => Ev::new(&id, "create", user, resource, ns, &name)
                    .at(&time)
                    .level("Request")
                    .line(),
                35..=49 => Ev::new(&id, "list", user, resource, ns, "")
                    .at(&time)
                    .line(),
                50..=54 => Ev::new(&id, "watch", user, resource, ns, "")
                    .at(&time)
                    .line(),
                _ => Ev::new(&id, "get", user, resource, ns, &name)
                    .at(&time)
                    .line(),
            }
        };
        bytes += line.len() as u64 + 1;
        out.write_all(line.as_bytes()).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
    println!(
        "wrote {path}: {events} events, {bytes} bytes, {fleet} Fleet-managed deletions, {malformed} malformed lines"
    );
}
