//! Does a deleted object still exist? A metadata-only GET in the deletion cluster.

use std::time::Duration;

use kube::{
    api::{Api, ApiResource, DynamicObject, GroupVersionKind},
    core::PartialObjectMeta,
    Client,
};

use super::{marks::Seen, queue::Tracked};

/// GET the tracked object's metadata (uid, deletionTimestamp: all this reads); its
/// contents are never transferred. `None` when the API did not answer usefully (retry
/// later).
pub async fn look(cluster: &Client, o: &Tracked, timeout: Duration) -> Option<Seen> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&o.group, &o.version, &o.kind),
        &o.plural,
    );
    let api: Api<PartialObjectMeta<DynamicObject>> = if o.namespace.is_empty() {
        Api::all_with(cluster.clone(), &ar)
    } else {
        Api::namespaced_with(cluster.clone(), &o.namespace, &ar)
    };
    match tokio::time::timeout(timeout, api.get_opt(&o.name)).await {
        Ok(Ok(None)) => Some(Seen::Gone),
        Ok(Ok(Some(live))) if live.metadata.uid.as_deref() == Some(o.uid.as_str()) => {
            Some(Seen::Same {
                terminating: live.metadata.deletion_timestamp.is_some(),
            })
        }
        Ok(Ok(Some(_))) => Some(Seen::Replaced),
        Ok(Err(kube::Error::Api(status))) if status.code == 403 => {
            tracing::warn!(
                object = %o.describe(),
                "may not read this kind (RBAC): the deletion stays counted but is not verified"
            );
            Some(Seen::Unreadable)
        }
        Ok(Err(e)) => {
            tracing::debug!(object = %o.describe(), error = %e, "cannot check the deleted object; will retry");
            None
        }
        Err(_) => None,
    }
}
