//! Which objects Fleet's agent deployed.
//!
//! The `objectset.rio.cattle.io/*` metadata is wrangler's, and many writers besides
//! Fleet's agent use it: kube-controller-manager copies a Service's hash label onto its
//! Endpoints (no id annotation), Rancher and Fleet's controller apply their own object
//! sets (`cluster-registration`, `fleet-bootstrap`, …), and k3s/RKE2 add-ons carry an
//! empty id. The agent uses exactly two setID shapes — `SafeConcatName("default",
//! <BundleDeployment>[, <agent scope>])` and `fleet-agent-bootstrap[-<scope>]` — and
//! always writes both the id annotation and its SHA-1 as the hash label.

use super::names::MAX_NAME_LEN;
use super::setid::{object_set_hash, AGENT_BOOTSTRAP_SET_ID, DEFAULT_LABEL_PREFIX};

/// Who put the objectset metadata on an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// No objectset label or annotation at all.
    NoObjectset,
    /// Fleet's agent: the id names a BundleDeployment this replica knows, or has the
    /// agent's shape and a consistent hash.
    FleetAgent,
    /// Some other writer of objectset metadata (Endpoints copy, Rancher's object sets,
    /// k3s/RKE2 add-ons, a user copying labels).
    OtherWriter,
}

/// Decide the provenance from the object's `objectset.rio.cattle.io/id` annotation, its
/// `objectset.rio.cattle.io/hash` label, and whether the owner index resolved the id to
/// a BundleDeployment.
pub fn provenance(id: Option<&str>, hash: Option<&str>, id_resolved: bool) -> Provenance {
    provenance_known(id, hash, id_resolved, None)
}

/// [`provenance`] when whether the hash label is sha1(id) is already known (`Some`, the
/// owner index's answer for an id it resolved); `None` computes it.
pub fn provenance_known(
    id: Option<&str>,
    hash: Option<&str>,
    id_resolved: bool,
    hash_agrees: Option<bool>,
) -> Provenance {
    let Some(id) = id else {
        return if hash.is_some() {
            Provenance::OtherWriter
        } else {
            Provenance::NoObjectset
        };
    };
    let hash_agrees = hash_agrees.unwrap_or_else(|| hash.is_none_or(|h| h == object_set_hash(id)));
    if hash_agrees && (id_resolved || has_agent_shape(id)) {
        Provenance::FleetAgent
    } else {
        Provenance::OtherWriter
    }
}

/// The id has a shape only Fleet's agent writes.
pub fn has_agent_shape(id: &str) -> bool {
    if id.len() > MAX_NAME_LEN || !is_dns_label_like(id) {
        return false;
    }
    if id == AGENT_BOOTSTRAP_SET_ID {
        return true;
    }
    if let Some(scope) = id
        .strip_prefix(AGENT_BOOTSTRAP_SET_ID)
        .and_then(|rest| rest.strip_prefix('-'))
    {
        return !scope.is_empty();
    }
    id.strip_prefix(DEFAULT_LABEL_PREFIX)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|bd| !bd.is_empty())
}

/// The kinds (lower case) in the agent's own bundle, the only BundleDeployment whose
/// objects carry a `fleet-agent-bootstrap[-<scope>]` id: `agent.Manifest` in
/// `internal/cmd/controller/agentmanagement/agent/manifest.go` (called by
/// `manageagent.go`; the same at v0.12.19, v0.13.15, v0.14.10, v0.15.6 and v0.16.1)
/// builds a ClusterRole, a ClusterRoleBinding, two ServiceAccounts, the agent's
/// Deployment and a NetworkPolicy. fleet-controller's import (`agent.AgentWithConfig`)
/// and Rancher also apply the agent's Namespace, Secrets and ConfigMap under that id,
/// but no bundle contains them: Fleet never reports them Missing.
pub const AGENT_BUNDLE_KINDS: [&str; 5] = [
    "clusterrole",
    "clusterrolebinding",
    "serviceaccount",
    "deployment",
    "networkpolicy",
];

/// [`AGENT_BUNDLE_KINDS`] as API resources (an audit event's `objectRef.resource`).
pub const AGENT_BUNDLE_RESOURCES: [&str; 5] = [
    "clusterroles",
    "clusterrolebindings",
    "serviceaccounts",
    "deployments",
    "networkpolicies",
];

fn is_agent_bootstrap_id(id: &str) -> bool {
    id == AGENT_BOOTSTRAP_SET_ID
        || id
            .strip_prefix(AGENT_BOOTSTRAP_SET_ID)
            .is_some_and(|rest| rest.starts_with('-'))
}

/// True when an object of `kind` (any case) with this id cannot be in any bundle of
/// Fleet's agent: the id is the agent bootstrap's and the agent's bundle has no such kind.
pub fn outside_agent_bundle(id: &str, kind: &str) -> bool {
    is_agent_bootstrap_id(id)
        && !AGENT_BUNDLE_KINDS
            .iter()
            .any(|k| k.eq_ignore_ascii_case(kind))
}

/// [`outside_agent_bundle`] for an API resource (`namespaces`, `secrets`, …).
pub fn outside_agent_bundle_resource(id: &str, resource: &str) -> bool {
    is_agent_bootstrap_id(id) && !AGENT_BUNDLE_RESOURCES.contains(&resource)
}

/// Lower-case alphanumerics, `-` and `.`, as Fleet's names are.
fn is_dns_label_like(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::setid::set_id;

    fn sha(id: &str) -> String {
        object_set_hash(id)
    }

    /// Each writer of objectset metadata seen in real Rancher, RKE2 and k3s clusters
    /// (fleet-semantics §9), and the answer it gets.
    #[test]
    fn each_writer_of_objectset_metadata() {
        let long = set_id(
            "mcc-a-really-long-managed-chart-name-for-monitoring",
            DEFAULT_LABEL_PREFIX,
            "cattle-fleet-local-system",
        );
        assert_eq!(long.len(), 63, "{long}");
        type Case = (
            &'static str,
            Option<String>,
            Option<String>,
            bool,
            Provenance,
        );
        let cases: Vec<Case> = vec![
            (
                "no objectset metadata",
                None,
                None,
                false,
                Provenance::NoObjectset,
            ),
            (
                "Endpoints with the hash label copied from a Fleet Service",
                None,
                Some(sha("default-lots-config2")),
                false,
                Provenance::OtherWriter,
            ),
            (
                "Endpoints copy even when the hash resolves",
                None,
                Some(sha("default-lots-config2")),
                true,
                Provenance::OtherWriter,
            ),
            (
                "Rancher's cluster-registration object set",
                Some("cluster-registration".into()),
                Some(sha("cluster-registration")),
                false,
                Provenance::OtherWriter,
            ),
            (
                "Fleet controller's fleet-bootstrap object set",
                Some("fleet-bootstrap".into()),
                Some(sha("fleet-bootstrap")),
                false,
                Provenance::OtherWriter,
            ),
            (
                "Rancher's apiservice object set",
                Some("apiservice".into()),
                Some(sha("apiservice")),
                false,
                Provenance::OtherWriter,
            ),
            (
                "k3s/RKE2 add-on with an empty id",
                Some(String::new()),
                Some(sha("")),
                false,
                Provenance::OtherWriter,
            ),
            (
                "agent id, standalone (no scope), known bundle",
                Some("default-lots-config2".into()),
                Some(sha("default-lots-config2")),
                true,
                Provenance::FleetAgent,
            ),
            (
                "agent id with Rancher's local agent scope, bundle not known yet",
                Some("default-mcc-rancher-monitoring-cattle-fleet-local-system".into()),
                Some(sha(
                    "default-mcc-rancher-monitoring-cattle-fleet-local-system",
                )),
                false,
                Provenance::FleetAgent,
            ),
            (
                "truncated agent id with a hash suffix",
                Some(long.clone()),
                Some(sha(&long)),
                false,
                Provenance::FleetAgent,
            ),
            (
                "fleet-agent-bootstrap",
                Some("fleet-agent-bootstrap".into()),
                Some(sha("fleet-agent-bootstrap")),
                false,
                Provenance::FleetAgent,
            ),
            (
                "fleet-agent-bootstrap with scope",
                Some("fleet-agent-bootstrap-cattle-fleet-local-system".into()),
                Some(sha("fleet-agent-bootstrap-cattle-fleet-local-system")),
                false,
                Provenance::FleetAgent,
            ),
            (
                "agent-shaped id whose hash label disagrees (copied labels)",
                Some("default-lots-config2".into()),
                Some(sha("default-lots-config1")),
                true,
                Provenance::OtherWriter,
            ),
            (
                "agent id without the hash label (annotation only)",
                Some("default-lots-config2".into()),
                None,
                false,
                Provenance::FleetAgent,
            ),
            (
                "unknown non-agent id without hash",
                Some("harvester-public".into()),
                None,
                false,
                Provenance::OtherWriter,
            ),
            (
                "bare prefix",
                Some("default-".into()),
                None,
                false,
                Provenance::OtherWriter,
            ),
            (
                "upper case is not a Fleet name",
                Some("default-Lots".into()),
                None,
                false,
                Provenance::OtherWriter,
            ),
        ];
        for (what, id, hash, resolved, want) in cases {
            assert_eq!(
                provenance(id.as_deref(), hash.as_deref(), resolved),
                want,
                "{what}"
            );
        }
    }

    /// Issue #8: a real RKE2 support bundle has `cattle-fleet-system` (id
    /// `fleet-agent-bootstrap`) and `cattle-fleet-local-system` (id
    /// `fleet-agent-bootstrap-cattle-fleet-local-system`) written by fleet-controller and
    /// Rancher only; the agent's bundle deploys no Namespace.
    #[test]
    fn the_agent_bundle_deploys_no_namespace() {
        for id in [
            "fleet-agent-bootstrap",
            "fleet-agent-bootstrap-cattle-fleet-local-system",
        ] {
            assert!(outside_agent_bundle(id, "namespace"), "{id}");
            assert!(outside_agent_bundle(id, "Secret"), "{id}");
            assert!(outside_agent_bundle(id, "configmap"), "{id}");
            assert!(!outside_agent_bundle(id, "deployment"), "{id}");
            assert!(!outside_agent_bundle(id, "ServiceAccount"), "{id}");
        }
        assert!(!outside_agent_bundle("default-lots-config2", "namespace"));
        assert!(outside_agent_bundle_resource(
            "fleet-agent-bootstrap",
            "namespaces"
        ));
        assert!(!outside_agent_bundle_resource(
            "fleet-agent-bootstrap",
            "deployments"
        ));
        assert!(!outside_agent_bundle("fleet-agent-bootstrapx", "namespace"));
    }

    #[test]
    fn a_resolved_id_is_the_agents_whatever_its_shape() {
        // The index only resolves ids it computed from a BundleDeployment's name.
        assert_eq!(
            provenance(Some("odd"), Some(&sha("odd")), true),
            Provenance::FleetAgent
        );
    }
}
