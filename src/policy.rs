//! What to do with a hand-made deletion of a Fleet-managed object, and who is exempt.

use std::str::FromStr;

/// The answer to a user's deletion of a Fleet-managed object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Policy {
    /// Allow silently (the deletion is still counted).
    Allow,
    /// Allow, and tell the user through kubectl warnings (default).
    Warn,
    /// Refuse, unless the user is in a break-glass group.
    Deny,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Allow => "allow",
            Policy::Warn => "warn",
            Policy::Deny => "deny",
        }
    }
}

impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "allow" => Ok(Policy::Allow),
            "warn" => Ok(Policy::Warn),
            "deny" => Ok(Policy::Deny),
            other => Err(format!(
                "unknown policy {other:?}: expected allow, warn or deny"
            )),
        }
    }
}

/// Service-account groups of Fleet's agent namespaces. Fleet's Helm actions impersonate
/// several service accounts there, so the group, not one user name, identifies Fleet.
pub const DEFAULT_FLEET_IDENTITIES: &[&str] = &[
    "system:serviceaccounts:cattle-fleet-system",
    "system:serviceaccounts:cattle-fleet-local-system",
];

/// Kubernetes' own controllers that delete objects on behalf of a namespace deletion,
/// an ownerReference cascade or a finished Job's TTL. Denying them leaves namespaces
/// stuck in Terminating, so they are never denied; the objects are gone all the same.
pub const DEFAULT_CONTROLLER_IDENTITIES: &[&str] = &[
    "system:serviceaccount:kube-system:namespace-controller",
    "system:serviceaccount:kube-system:generic-garbage-collector",
    "system:serviceaccount:kube-system:ttl-after-finished-controller",
];

/// The configuration the pure decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionConfig {
    /// Cluster-wide policy; a GitRepo may override it (see [`crate::decide::Owner::policy`]).
    pub policy: Policy,
    /// User names or groups whose deletions are Fleet's own.
    pub fleet_identities: Vec<String>,
    /// User names or groups of Kubernetes controllers.
    pub controller_identities: Vec<String>,
    /// Groups allowed to delete under `deny` (with a warning).
    pub break_glass_groups: Vec<String>,
}

impl Default for DecisionConfig {
    fn default() -> Self {
        Self {
            policy: Policy::Warn,
            fleet_identities: DEFAULT_FLEET_IDENTITIES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            controller_identities: DEFAULT_CONTROLLER_IDENTITIES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            break_glass_groups: Vec::new(),
        }
    }
}

/// True when `username` or one of `groups` is in `identities`.
pub fn matches_identity(identities: &[String], username: &str, groups: &[String]) -> bool {
    identities
        .iter()
        .any(|id| id == username || groups.iter().any(|g| g == id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_parses_case_insensitively_and_rejects_unknown() {
        assert_eq!("Deny".parse::<Policy>(), Ok(Policy::Deny));
        assert_eq!(" warn ".parse::<Policy>(), Ok(Policy::Warn));
        let err = "block".parse::<Policy>().unwrap_err();
        assert!(err.contains("allow, warn or deny"), "{err}");
    }

    #[test]
    fn identity_matches_user_or_group() {
        let ids = vec!["system:serviceaccounts:cattle-fleet-system".to_string()];
        let groups = vec!["system:serviceaccounts:cattle-fleet-system".to_string()];
        assert!(matches_identity(
            &ids,
            "system:serviceaccount:cattle-fleet-system:fleet-default",
            &groups
        ));
        assert!(matches_identity(
            &ids,
            "system:serviceaccounts:cattle-fleet-system",
            &[]
        ));
        assert!(!matches_identity(
            &ids,
            "alice",
            &["system:authenticated".to_string()]
        ));
    }
}
