//! Fleet releases and the status rules that differ between them.
//!
//! Each rule names the release (down to the patch) that introduced it and the file of
//! rancher/fleet where it lives; everything else the webhook computes is unchanged from
//! v0.12.0 to v0.16.1 (BundleDeployment and StatusBase field paths,
//! `calculateResourceCounts`). `tests/fleet_conformance.rs` runs Fleet's own test tables
//! against these rules at the newest patch of each minor release.

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

    /// The newest patch release of this minor whose rules were checked (tags of
    /// rancher/fleet up to August 2026).
    pub fn newest_patch(self) -> u64 {
        match self {
            FleetRelease::V0_12 => 19,
            FleetRelease::V0_13 => 15,
            FleetRelease::V0_14 => 10,
            FleetRelease::V0_15 => 6,
            FleetRelease::V0_16 => 1,
        }
    }

    /// This release at patch `patch`.
    pub fn at(self, patch: u64) -> FleetVersion {
        FleetVersion {
            release: self,
            patch,
        }
    }

    /// The status rules of this release's newest known patch ([`Self::newest_patch`]);
    /// rules change within a minor release, see [`FleetVersion::rules`].
    pub fn rules(self) -> StatusRules {
        self.at(self.newest_patch()).rules()
    }
}

/// A Fleet release down to its patch: the status rules change between patch
/// releases (v0.13.0 vs v0.13.1 vs v0.13.5, v0.14.0 vs v0.14.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FleetVersion {
    pub release: FleetRelease,
    pub patch: u64,
}

impl FleetVersion {
    /// The newest known release, used for unknown and newer versions.
    pub const NEWEST: FleetVersion = FleetVersion {
        release: FleetRelease::NEWEST,
        patch: 1,
    };

    /// The status rules of this release. Each rule is on from the first patch release
    /// that has it (checked at every patch tag of rancher/fleet v0.12.0–v0.16.1) and
    /// stays on in every later one.
    pub fn rules(self) -> StatusRules {
        use FleetRelease::*;
        let since = |release: FleetRelease, patch: u64| self >= release.at(patch);
        StatusRules {
            updating_is_not_ready: since(V0_13, 1),
            error_is_not_ready: since(V0_14, 0),
            per_cluster_state_cap: since(V0_13, 5),
            ready_true_clears_reason: since(V0_14, 3),
            installed_message_only_when_applied: since(V0_16, 0),
        }
    }
}

impl fmt::Display for FleetVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.release, self.patch)
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
    /// The release and patch whose rules apply: `v0.14.3` → v0.14.3; a pre-release
    /// (`v0.14.3-rc.2`) gets its patch's rules; no patch (`v0.14`) means `.0`; versions
    /// before v0.12 get v0.12.0's rules, newer ones the newest known release's.
    pub rules_of: FleetVersion,
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
    let patch: u64 = match parts.next() {
        Some(p) => p.parse().map_err(|_| err())?,
        None => 0,
    };
    if parts.next().is_some() {
        return Err(err());
    }
    let (rules_of, known) = match (major, minor) {
        (0, m) if m < 12 => (FleetRelease::V0_12.at(0), false),
        (0, 12) => (FleetRelease::V0_12.at(patch), true),
        (0, 13) => (FleetRelease::V0_13.at(patch), true),
        (0, 14) => (FleetRelease::V0_14.at(patch), true),
        (0, 15) => (FleetRelease::V0_15.at(patch), true),
        (0, 16) => (FleetRelease::V0_16.at(patch), true),
        _ => (FleetVersion::NEWEST, false),
    };
    Ok(KnownVersion {
        version: format!("v{v}"),
        release: rules_of.release,
        rules_of,
        known,
    })
}

/// The rules of Fleet's status computation that differ between releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRules {
    /// v0.13.1: resources whose per-cluster state is `updating` are listed under
    /// `perClusterState.notReady`; before, they were left out of every list
    /// (`internal/resourcestatus/resourcekey.go`, `appendToPerClusterState`; absent at
    /// v0.13.0, present at v0.13.1).
    pub updating_is_not_ready: bool,
    /// v0.14.0: so are resources whose per-cluster state is `error` (same function,
    /// `case "NotReady", "updating", "error"` from v0.14.0; never in v0.13.x).
    pub error_is_not_ready: bool,
    /// v0.13.5: per-cluster ids are listed until ~1 MiB of them, in a stable order
    /// (`aggregateResourceStatesClustersMap`, `size < 1024*1024`; absent at v0.13.4);
    /// before, without a cap.
    pub per_cluster_state_cap: bool,
    /// v0.14.3: a Ready condition that becomes True loses its reason
    /// (`internal/cmd/controller/summary/summary.go`, `SetReadyConditions`; absent at
    /// v0.14.2 and in every v0.13.x); before, the reason of an earlier error stayed.
    pub ready_true_clears_reason: bool,
    /// v0.16.0: the `Installed` condition's message counts only for the applied deployment
    /// (`MessageFromDeployment`; not in v0.15.6); before, also a superseded attempt's.
    pub installed_message_only_when_applied: bool,
}

impl Default for StatusRules {
    fn default() -> Self {
        StatusRules::NEWEST
    }
}

impl StatusRules {
    /// The newest known release's rules (every rule on).
    pub const NEWEST: StatusRules = StatusRules {
        updating_is_not_ready: true,
        error_is_not_ready: true,
        per_cluster_state_cap: true,
        ready_true_clears_reason: true,
        installed_message_only_when_applied: true,
    };

    /// The `perClusterState` list a per-cluster resource state is listed under.
    pub fn per_cluster_list(&self, state: &str) -> Option<&'static str> {
        Some(match state {
            "Ready" => "Ready",
            "WaitApplied" => "WaitApplied",
            "Pending" => "Pending",
            "Modified" => "Modified",
            "NotReady" => "NotReady",
            "updating" if self.updating_is_not_ready => "NotReady",
            "error" if self.error_is_not_ready => "NotReady",
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
        assert!(!r12.updating_is_not_ready && !r12.per_cluster_state_cap);
        assert_eq!(r12.per_cluster_list("updating"), None);
        let r14 = FleetRelease::V0_14.rules();
        assert_eq!(r14.per_cluster_list("error"), Some("NotReady"));
        assert!(
            !FleetRelease::V0_15
                .rules()
                .installed_message_only_when_applied
        );
        assert_eq!(StatusRules::default(), FleetRelease::V0_16.rules());
        assert_eq!(StatusRules::NEWEST, FleetVersion::NEWEST.rules());
    }

    /// Each rule from the patch tag that introduced it (rancher/fleet tags; see the
    /// field docs of [`StatusRules`]).
    #[test]
    fn rules_follow_patch_releases() {
        use FleetRelease::*;
        let r = |release: FleetRelease, patch| release.at(patch).rules();
        // v0.13.0 has none of the v0.13 backports; v0.13.1 lists `updating` as notReady.
        assert_eq!(r(V0_13, 0), r(V0_12, 19));
        assert_eq!(r(V0_13, 0).per_cluster_list("updating"), None);
        assert_eq!(r(V0_13, 1).per_cluster_list("updating"), Some("NotReady"));
        assert_eq!(r(V0_13, 15).per_cluster_list("error"), None);
        // The 1 MiB cap from v0.13.5.
        assert!(!r(V0_13, 4).per_cluster_state_cap);
        assert!(r(V0_13, 5).per_cluster_state_cap);
        // `error` → notReady from v0.14.0; the Ready reason cleared from v0.14.3.
        assert_eq!(r(V0_14, 0).per_cluster_list("error"), Some("NotReady"));
        assert!(!r(V0_14, 2).ready_true_clears_reason);
        assert!(r(V0_14, 3).ready_true_clears_reason);
        assert!(r(V0_14, 4).ready_true_clears_reason);
        assert!(!r(V0_15, 6).installed_message_only_when_applied);
        assert!(r(V0_16, 0).installed_message_only_when_applied);
        // Parsed versions keep their patch.
        let at = |v: &str| parse_version(v).expect("version").rules_of;
        assert_eq!(at("v0.13.5"), V0_13.at(5));
        assert_eq!(at("rancher/fleet:v0.14.3-rc.2"), V0_14.at(3));
        assert_eq!(at("v0.14"), V0_14.at(0));
        assert_eq!(at("v0.11.9"), V0_12.at(0));
        assert_eq!(at("v0.17.2"), FleetVersion::NEWEST);
        assert_eq!(V0_14.at(3).to_string(), "v0.14.3");
    }
}
