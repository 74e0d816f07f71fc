//! The worker loop: one task wakes on new work or every tick, drains the queue, takes
//! a bounded share of the owners waiting to be re-derived, hands both to the batch
//! ([`super::batch`]) and then checks the marks that are due ([`super::mark_checks`]).
//! It starts the Event publisher ([`super::events`]) first.

use std::{collections::BTreeSet, time::Instant};

use kube::runtime::events::Reporter;

use super::{events, lock, OwnerAt, Patcher};

/// Owners re-derived per worker batch at most.
const REDERIVE_PER_BATCH: usize = 64;

impl Patcher {
    /// The worker; spawn it once. It starts the Event publisher.
    pub async fn run(self) {
        let shared = self.shared;
        if let Some(rx) = lock(&shared.event_receiver).take() {
            tokio::spawn(events::publish(
                rx,
                shared.fleet.clone(),
                Reporter {
                    controller: "fleet-delete-guard".into(),
                    instance: Some(shared.config.instance.clone()),
                },
                shared.config.retry.call_timeout,
                shared.metrics.clone(),
            ));
        }
        tracing::debug!("patch worker started");
        loop {
            tokio::select! {
                _ = shared.notify.notified() => {}
                _ = tokio::time::sleep(shared.config.tick) => {}
            }
            let items = lock(&shared.queue).drain();
            shared.metrics.queue_depth.set(0);
            // Bounded per batch, so many owners changing at once never hold up the
            // counting of new deletions; the rest wait for the next ticks.
            let mut rederive: BTreeSet<OwnerAt> = {
                let mut pending = lock(&shared.rederive);
                std::iter::from_fn(|| pending.pop_first())
                    .take(REDERIVE_PER_BATCH)
                    .collect()
            };
            // The resync's sweep, within its rate.
            {
                let now = Instant::now();
                let mut sweep = lock(&shared.sweep);
                let mut budget = lock(&shared.sweep_budget);
                while !sweep.is_empty() && budget.try_take(now) {
                    if let Some(owner) = sweep.pop_first() {
                        rederive.insert(owner);
                    }
                }
            }
            if !items.is_empty() || !rederive.is_empty() {
                shared.handle(items, rederive).await;
            }
            shared.check_marks().await;
        }
    }
}
