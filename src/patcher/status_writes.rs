//! The writes of one owner's group of a batch: its BundleDeployments first (each
//! through [`super::write::update_status`] with the pure edit from
//! [`crate::delta::bundle_deployment`]), then — where the webhook may and the owner has
//! a status — the owner, derived from its BundleDeployments as listed after the owner
//! was read; then the lag metric and the owner's Event for the batch.

use std::{collections::HashMap, convert::Infallible, time::Duration};

use kube::api::ListParams;

use crate::{
    delta::{self, owner::WrittenBundleDeployment, ResourceChange},
    fleet::{
        api::FleetResource,
        status::{BundleDeployment, OwnerObject},
        OwnerKind, OwnerRef, LABEL_BUNDLE_NAMESPACE, LABEL_HELM_OP_NAME, LABEL_REPO_NAME,
    },
};

use super::{
    batch::{Write, WritesByBundleDeployment},
    events::{self, Deletion, Pending},
    fleet_api::FleetApi,
    lock, now_rfc3339,
    write::update_status,
    OwnerAt, Shared,
};

/// A BundleDeployment as written, with the writes and changes it took.
struct WrittenBd {
    writes: Vec<Write>,
    changes: Vec<ResourceChange>,
    bd: BundleDeployment,
    /// As read before the write, when the write changed it.
    before: Option<BundleDeployment>,
}

/// Label selector of an owner's BundleDeployments, as Fleet's status controllers list
/// them.
fn owner_selector(owner: &OwnerRef) -> Option<String> {
    let label = match owner.kind {
        OwnerKind::GitRepo => LABEL_REPO_NAME,
        OwnerKind::HelmOp => LABEL_HELM_OP_NAME,
        OwnerKind::Bundle => return None,
    };
    Some(format!(
        "{label}={},{LABEL_BUNDLE_NAMESPACE}={}",
        owner.name, owner.namespace
    ))
}

/// The owner's BundleDeployments in `api`'s namespace, or why they could not be listed.
async fn list_owner_bundle_deployments(
    api: &FleetApi<BundleDeployment>,
    selector: &str,
    timeout: Duration,
) -> Result<Vec<BundleDeployment>, String> {
    let mut params = ListParams::default().labels(selector).limit(500);
    let mut out = Vec::new();
    loop {
        let page = tokio::time::timeout(timeout, api.list(&params))
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
            .map_err(|e| e.to_string())?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        out.extend(page.items);
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

impl Shared {
    /// Write one owner's BundleDeployments, then the owner.
    pub(super) async fn write_group(&self, at: OwnerAt, bds: WritesByBundleDeployment) {
        let now = now_rfc3339();
        let mut written: Vec<WrittenBd> = Vec::new();
        for ((namespace, name), writes) in bds {
            if writes.len() > 1 {
                self.metrics.coalesced.inc_by(writes.len() as u64 - 1);
            }
            let changes: Vec<ResourceChange> = writes.iter().map(Write::change).collect();
            let api = self.bundle_deployments(&namespace);
            // The copy the written patch was computed from (the last attempt's).
            let mut read: Option<BundleDeployment> = None;
            let result = update_status(
                &api,
                &name,
                &self.config.retry,
                &self.metrics,
                || async {},
                |bd: &BundleDeployment, _: &()| {
                    read = Some(bd.clone());
                    Ok::<_, Infallible>(delta::bundle_deployment::status_after(bd, &changes, &now))
                },
            )
            .await;
            match result {
                Ok(w) => {
                    let patched = w.patched();
                    tracing::debug!(bundledeployment = %name, patched, writes = writes.len(), "BundleDeployment status written");
                    let bd = w.into_object();
                    self.after_bundle_deployment(&writes, &bd, patched);
                    written.push(WrittenBd {
                        writes,
                        changes,
                        bd,
                        before: read.filter(|_| patched),
                    });
                }
                Err(e) if e.is_transient() => {
                    // The API kept failing or conflicting: nothing is dropped, the work
                    // goes back to the queue for the next batch.
                    tracing::warn!(error = %e, deletions = writes.len(), "BundleDeployment status not written yet; retrying at the next batch");
                    self.metrics.requeued.inc_by(writes.len() as u64);
                    self.requeue(writes);
                }
                Err(e) => {
                    tracing::error!(error = %e, reason = e.reason(), deletions = writes.len(), "cannot count deletions in the BundleDeployment status");
                }
            }
        }
        let rederive_only = written.is_empty();
        let owner = &at.owner;
        let Some(selector) = owner_selector(owner).filter(|_| self.config.patch_gitrepo) else {
            // A Bundle-only owner, or no rights on owners: the BundleDeployment is all.
            self.observe_lag(&written);
            return;
        };
        let owner_api: FleetApi<OwnerObject> = FleetApi::namespaced(
            self.fleet.clone(),
            FleetResource::of_owner(owner.kind),
            &owner.namespace,
        );
        let bd_api = self.bundle_deployments(&at.bd_namespace);
        let timeout = self.config.retry.call_timeout;
        let views: Vec<WrittenBundleDeployment<'_>> = written
            .iter()
            .map(|w| WrittenBundleDeployment {
                bundle_deployment: &w.bd,
                changes: &w.changes,
                before: w.before.as_ref(),
            })
            .collect();
        let mut derived_from: HashMap<String, String> = HashMap::new();
        let rules = self.fleet_release().rules();
        let result = update_status(
            &owner_api,
            &owner.name,
            &self.config.retry,
            &self.metrics,
            // Listed after every read of the owner: never older than the owner status it
            // replaces, so a stale view can never be written over a newer one.
            || list_owner_bundle_deployments(&bd_api, &selector, timeout),
            |object: &OwnerObject, listed: &Result<Vec<BundleDeployment>, String>| {
                let known: &[BundleDeployment] = match listed {
                    Ok(bds) => bds,
                    Err(e) => {
                        tracing::warn!(%owner, error = %e, "cannot list the owner's BundleDeployments; using the ones just written");
                        &[]
                    }
                };
                derived_from = known
                    .iter()
                    .filter_map(|b| {
                        let rv = b.metadata.resource_version()?;
                        Some((b.metadata.name.clone(), rv.to_string()))
                    })
                    .collect();
                Ok::<_, Infallible>(delta::owner::status_after(
                    &rules,
                    owner.kind,
                    object.status.as_ref(),
                    &views,
                    known,
                    &now,
                ))
            },
        )
        .await;
        match result {
            Ok(w) => {
                tracing::debug!(%owner, patched = w.patched(), rederive_only, "owner status written");
                lock(&self.derived_from).insert(owner.clone(), derived_from);
                self.observe_lag(&written);
                self.publish_events(owner, w.object(), &written);
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(%owner, error = %e, "owner status not written yet; re-deriving it at the next batch");
                lock(&self.rederive).insert(at.clone());
            }
            Err(e) => {
                tracing::error!(%owner, error = %e, reason = e.reason(), "cannot count deletions in the owner's status")
            }
        }
    }

    fn observe_lag(&self, written: &[WrittenBd]) {
        for w in written.iter().flat_map(|w| &w.writes).filter(|w| w.mark) {
            if let Some(received) = w.item.received {
                self.metrics
                    .status_lag
                    .observe(received.elapsed().as_secs_f64());
            }
        }
    }

    /// One Event on the owner for the deletions a review reported in this batch (not
    /// for reverts or re-applies), queued for the publisher.
    fn publish_events(&self, owner: &OwnerRef, object: &OwnerObject, written: &[WrittenBd]) {
        let deletions: Vec<Deletion> = written
            .iter()
            .flat_map(|w| {
                w.writes
                    .iter()
                    .filter(|x| x.mark && x.item.received.is_some())
                    .map(move |x| Deletion {
                        object: x.item.object.describe(),
                        user: x.item.user.clone(),
                        bundle: x.item.object.bd.bundle.to_string(),
                        cluster: w.bd.cluster_id(),
                    })
            })
            .collect();
        let Some(note) = events::note(&deletions, &now_rfc3339()) else {
            return;
        };
        self.events.offer(Pending {
            regarding: events::regarding(owner, object),
            reason: events::EVENT_REASON,
            action: events::EVENT_ACTION,
            note,
        });
    }
}
