//! How Fleet's agent labels what it deploys: setID (annotation
//! `objectset.rio.cattle.io/id`) and its SHA-1 (label
//! `objectset.rio.cattle.io/hash`). The webhook recomputes these to find the
//! BundleDeployment that owns a deleted object.

use sha1::{Digest, Sha1};

use super::names::{hex_lower, safe_concat_name};

/// The agent's label prefix: the literal constant `default`, not its namespace.
pub const DEFAULT_LABEL_PREFIX: &str = "default";
/// setID used for the fleet-agent bundle on every cluster.
pub const AGENT_BOOTSTRAP_SET_ID: &str = "fleet-agent-bootstrap";

/// Fleet's `GetSetID(bundleID, labelPrefix, labelSuffix)` where bundleID is the
/// BundleDeployment name and `scope` is the agent's `AGENT_SCOPE` (empty for
/// standalone Fleet, e.g. `cattle-fleet-local-system` for Rancher's local agent).
pub fn set_id(bd_name: &str, label_prefix: &str, scope: &str) -> String {
    if bd_name.starts_with("fleet-agent") {
        if scope.is_empty() {
            return AGENT_BOOTSTRAP_SET_ID.to_string();
        }
        return safe_concat_name(&[AGENT_BOOTSTRAP_SET_ID, scope]);
    }
    if scope.is_empty() {
        safe_concat_name(&[label_prefix, bd_name])
    } else {
        safe_concat_name(&[label_prefix, bd_name, scope])
    }
}

/// Value of the `objectset.rio.cattle.io/hash` label for a setID: lowercase
/// hex SHA-1 of the setID (the owner-* keys Fleet also hashes are always empty).
pub fn object_set_hash(set_id: &str) -> String {
    hex_lower(&Sha1::digest(set_id.as_bytes()))
}

/// Hash label value the agent with `scope` puts on objects of BD `bd_name`.
pub fn hash_for_bundle_deployment(bd_name: &str, scope: &str) -> String {
    object_set_hash(&set_id(bd_name, DEFAULT_LABEL_PREFIX, scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_example_standalone_and_rancher() {
        let id = set_id("lots-config-one", DEFAULT_LABEL_PREFIX, "");
        assert_eq!(id, "default-lots-config-one");
        assert_eq!(
            object_set_hash(&id),
            "ec4b361339aee0ed3797931ec95840485448986c"
        );

        let id = set_id(
            "lots-config-one",
            DEFAULT_LABEL_PREFIX,
            "cattle-fleet-local-system",
        );
        assert_eq!(id, "default-lots-config-one-cattle-fleet-local-system");
        assert_eq!(id.len(), 49);
        assert_eq!(
            object_set_hash(&id),
            "f34ee4454c5178beebc55b97344d8b61972f603f"
        );
    }

    #[test]
    fn fixture_bundle_hashes() {
        for (bd, hash) in [
            ("lots-config1", "ba58bbccf47282ed0e4730455ed431fa5871d167"),
            ("lots-config2", "37517d22b0ca4dbc462436d47410a3bdfce3c6f9"),
            ("lots-config3", "1f6cbdedabb336dab13100bdf94ba7ff6d50ca9b"),
        ] {
            assert_eq!(hash_for_bundle_deployment(bd, ""), hash, "{bd}");
        }
    }

    #[test]
    fn fleet_agent_special_case() {
        assert_eq!(
            set_id("fleet-agent-local", "default", ""),
            "fleet-agent-bootstrap"
        );
        assert_eq!(
            set_id("fleet-agent-c-abc", "default", "cattle-fleet-local-system"),
            "fleet-agent-bootstrap-cattle-fleet-local-system"
        );
    }

    #[test]
    fn long_set_ids_are_truncated_like_fleet() {
        let bd = "a-very-long-bundle-deployment-name-that-goes-on-and-on-forever";
        let id = set_id(bd, "default", "cattle-fleet-local-system");
        assert_eq!(id.len(), 63);
        assert!(id.starts_with("default-a-very-long"));
    }
}
