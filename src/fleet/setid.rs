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

/// The SHA-1 behind [`object_set_hash`], as bytes: what the owner index keeps (20 bytes
/// in the map's own table instead of a 40-character string on the heap).
pub fn object_set_hash_bytes(set_id: &str) -> [u8; 20] {
    Sha1::digest(set_id.as_bytes()).into()
}

/// The bytes of a hash label, when it is what [`object_set_hash`] writes: exactly 40
/// lowercase hex digits. Anything else is no hash of Fleet's (None).
pub fn parse_object_set_hash(label: &str) -> Option<[u8; 20]> {
    let digits = label.as_bytes();
    if digits.len() != 40 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 20];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Hash label value the agent with `scope` puts on objects of BD `bd_name`.
pub fn hash_for_bundle_deployment(bd_name: &str, scope: &str) -> String {
    object_set_hash(&set_id(bd_name, DEFAULT_LABEL_PREFIX, scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_bytes_round_trip_through_the_label() {
        let id = set_id("lots-config-one", DEFAULT_LABEL_PREFIX, "");
        let label = object_set_hash(&id);
        assert_eq!(
            parse_object_set_hash(&label),
            Some(object_set_hash_bytes(&id))
        );
        // Only what Fleet writes: 40 lowercase hex digits.
        assert_eq!(parse_object_set_hash(&label.to_uppercase()), None);
        assert_eq!(parse_object_set_hash(&label[..39]), None);
        assert_eq!(parse_object_set_hash(&format!("{label}0")), None);
        assert_eq!(parse_object_set_hash(&format!("{}g", &label[..39])), None);
        assert_eq!(parse_object_set_hash(""), None);
        assert_eq!(parse_object_set_hash("é"), None);
    }

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
