//! Fleet releases and the status rules that differ between them.
//!
//! Each rule names the release that introduced it and the file of rancher/fleet where it
//! lives; everything else the webhook computes is unchanged from v0.12.0 to v0.16.1
//! (BundleDeployment and StatusBase field paths, `calculateResourceCounts`).

use std::fmt;

/// A supported Fleet minor release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FleetRelease {
    V0_12,
    V0_13,
    V0_14,
    V0_15,
    V0_16,
}

impl FleetRelease {
    /// The newest release whose rules are known; used for unknown and newer versions.
    pub const NEWEST: FleetRelease = FleetRelease::V0_16;
    pub const ALL: [FleetRelease; 5] = [
        FleetRelease::V0_12,
        FleetRelease::V0_13,
        FleetRelease::V0_14,
        FleetRelease::V0_15,
        FleetRelease::V0_16,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FleetRelease::V0_12 => "v0.12",
            FleetRelease::V0_13 => "v0.13",
            FleetRelease::V0_14 => "v0.14",
            FleetRelease::V0_15 => "v0.15",
            FleetRelease::V0_16 => "v0.16",
        }
    }

    /// The status rules of this release.
    pub fn rules(self) -> StatusRules {
        StatusRules {
            updating_and_error_are_not_ready: self >= FleetRelease::V0_14,
            per_cluster_state_cap: self >= FleetRelease::V0_14,
            ready_true_clears_reason: self >= FleetRelease::V0_15,
            installed_message_only_when_applied: self >= FleetRelease::V0_16,
        }
    }
}

impl fmt::Display for FleetRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a version string was understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownVersion {
    /// As given, e.g. `v0.14.3` (a `v` is added when missing).
    pub version: String,
    pub release: FleetRelease,
    /// False when the version is not one of the known releases: the newest rules apply.
    pub known: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Fleet version: {0:?} (expected vMAJOR.MINOR[.PATCH], e.g. v0.14.3)")]
pub struct VersionError(pub String);

/// `v0.14.3`, `0.14.3`, `v0.15.0-rc.2`, or an image reference `rancher/fleet:v0.14.3`
/// (`@sha256:…` digests ignored). Releases before v0.12 use the v0.12 rules (they
/// are not supported; the log says so); newer ones the newest rules.
pub fn parse_version(input: &str) -> Result<KnownVersion, VersionError> {
    let err = || VersionError(input.to_string());
    let without_digest = input.split('@').next().unwrap_or(input);
    let tag = match without_digest.rsplit_once(':') {
        // An image reference: the tag after the last ':' (not a registry port: a '/' follows it).
        Some((_, tag)) if !tag.contains('/') => tag,
        _ => without_digest,
    };
    let v = tag.trim().trim_start_matches('v');
    let core = v.split(['-', '+']).next().unwrap_or(v);
    let mut parts = core.split('.');
    let major: u64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
    let minor: u64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
    if let Some(patch) = parts.next() {
        patch.parse::<u64>().map_err(|_| err())?;
    }
    if parts.next().is_some() {
        return Err(err());
    }
    let (release, known) = match (major, minor) {
        (0, m) if m < 12 => (FleetRelease::V0_12, false),
        (0, 12) => (FleetRelease::V0_12, true),
        (0, 13) => (FleetRelease::V0_13, true),
        (0, 14) => (FleetRelease::V0_14, true),
        (0, 15) => (FleetRelease::V0_15, true),
        (0, 16) => (FleetRelease::V0_16, true),
        _ => (FleetRelease::NEWEST, false),
    };
    Ok(KnownVersion {
        version: format!("v{v}"),
        release,
        known,
    })
}

/// The rules of Fleet's status computation that differ between releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRules {
    /// v0.14 (#3890): resources whose per-cluster state is `updating` or `error` are
    /// listed under `perClusterState.notReady`; before, they were left out of every list
    /// (`internal/resourcestatus/resourcekey.go`, `appendToPerClusterState`).
    pub updating_and_error_are_not_ready: bool,
    /// v0.14 (#4116): per-cluster ids are listed until ~1 MiB of them, in a stable order
    /// (`aggregateResourceStatesClustersMap`); before, without a cap.
    pub per_cluster_state_cap: bool,
    /// v0.15: a Ready condition that becomes True loses its reason
    /// (`internal/cmd/controller/summary/summary.go`, `SetReadyConditions`); before, the
    /// reason of an earlier error stayed.
    pub ready_true_clears_reason: bool,
    /// v0.16: the `Installed` condition's message counts only for the applied deployment
    /// (`MessageFromDeployment`); before, also a superseded attempt's.
    pub installed_message_only_when_applied: bool,
}

impl Default for StatusRules {
    fn default() -> Self {
        FleetRelease::NEWEST.rules()
    }
}

impl StatusRules {
    /// The `perClusterState` list a per-cluster resource state is listed under.
    pub fn per_cluster_list(&self, state: &str) -> Option<&'static str> {
        Some(match state {
            "Ready" => "Ready",
            "WaitApplied" => "WaitApplied",
            "Pending" => "Pending",
            "Modified" => "Modified",
            "NotReady" => "NotReady",
            "updating" | "error" if self.updating_and_error_are_not_ready => "NotReady",
            "Orphaned" => "Orphaned",
            "Missing" => "Missing",
            "Unknown" => "Unknown",
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_images_and_garbage() {
        let v = parse_version("rancher/fleet:v0.14.3").expect("image");
        assert_eq!(
            (v.release, v.known, v.version.as_str()),
            (FleetRelease::V0_14, true, "v0.14.3")
        );
        let v = parse_version("registry.local:5000/rancher/fleet:v0.15.0-rc.2@sha256:abc")
            .expect("digest");
        assert_eq!((v.release, v.known), (FleetRelease::V0_15, true));
        assert_eq!(
            parse_version("0.12.1").expect("bare").release,
            FleetRelease::V0_12
        );
        let newer = parse_version("v0.17.0").expect("newer");
        assert_eq!((newer.release, newer.known), (FleetRelease::V0_16, false));
        let older = parse_version("v0.11.9").expect("older");
        assert_eq!((older.release, older.known), (FleetRelease::V0_12, false));
        for bad in [
            "",
            "latest",
            "rancher/fleet:dev",
            "v0",
            "v0.x.1",
            "v0.14.3.1",
        ] {
            assert!(parse_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rules_by_release() {
        let r12 = FleetRelease::V0_12.rules();
        assert!(!r12.updating_and_error_are_not_ready && !r12.per_cluster_state_cap);
        assert_eq!(r12.per_cluster_list("updating"), None);
        let r14 = FleetRelease::V0_14.rules();
        assert_eq!(r14.per_cluster_list("error"), Some("NotReady"));
        assert!(!r14.ready_true_clears_reason);
        assert!(FleetRelease::V0_15.rules().ready_true_clears_reason);
        assert!(
            !FleetRelease::V0_15
                .rules()
                .installed_message_only_when_applied
        );
        assert_eq!(StatusRules::default(), FleetRelease::V0_16.rules());
    }
}
