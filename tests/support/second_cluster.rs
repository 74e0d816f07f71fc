//! The worked example's BundleDeployments copied onto a second cluster,
//! `fleet-default/downstream1` (pure: shared by the delta tests).

use fleet_delete_guard::fleet::{
    cluster_namespace, status::BundleDeployment, LABEL_CLUSTER, LABEL_CLUSTER_NAMESPACE,
};

/// `list` plus a copy of each on `fleet-default/downstream1`, whose UIDs start with
/// `uid_prefix` instead of their first character (UIDs order Fleet's capped lists).
pub fn with_second_cluster(
    mut list: Vec<BundleDeployment>,
    uid_prefix: char,
) -> Vec<BundleDeployment> {
    let second: Vec<BundleDeployment> = list
        .iter()
        .map(|b| {
            let mut b = b.clone();
            b.metadata.uid = format!("{uid_prefix}{}", &b.metadata.uid[1..]);
            b.metadata.namespace = cluster_namespace("fleet-default", "downstream1");
            b.metadata
                .labels
                .insert(LABEL_CLUSTER.into(), "downstream1".into());
            b.metadata
                .labels
                .insert(LABEL_CLUSTER_NAMESPACE.into(), "fleet-default".into());
            b
        })
        .collect();
    list.extend(second);
    list
}
