//! What Fleet reports against what exists: the comparison behind `fleet-delete-guard
//! verify` and the resync's `owner_discrepancies` gauge.
//!
//! Pure: the adapter ([`crate::cluster::scan`]) feeds it this cluster's
//! BundleDeployments a page at a time ([`Comparison::add_bundle_deployment`]), then, for
//! each kind they name ([`Comparison::kinds`]), the objects that exist with Fleet's hash
//! label, a page at a time ([`Comparison::observe`]), and ends each kind with
//! [`Comparison::kind_listed`] or [`Comparison::kind_failed`]. It keeps one entry per resource the BundleDeployments
//! name, never the objects themselves. [`Comparison::finish`] gives the [`Report`].
//!
//! Fleet's report (fleet-semantics.md §4): `status.resources` lists the live objects of a
//! BundleDeployment, `status.modifiedStatus` the desired ones that do not exist
//! (`missing`), `status.nonReadyStatus` the live ones not ready (with their uid), and
//! `status.resourceCounts` the numbers; a GitRepo's or HelmOp's
//! `perClusterResourceCounts[<cluster>]` is the sum of that cluster's BundleDeployments.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::fleet::{
    hash_for_bundle_deployment, status::ResourceCounts, view::ListedBundleDeployment, OwnerKind,
    OwnerRef, ResourceKey,
};
use crate::owners::BundleDeploymentRef;

/// The `apiVersion` and `kind` of deployed objects: one LIST each.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct KindKey {
    pub api_version: String,
    pub kind: String,
}

impl KindKey {
    pub fn new(api_version: impl Into<String>, kind: impl Into<String>) -> Self {
        KindKey {
            api_version: api_version.into(),
            kind: kind.into(),
        }
    }

    /// `(group, version)`; the core group is `""`.
    pub fn group_version(&self) -> (&str, &str) {
        match self.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", self.api_version.as_str()),
        }
    }
}

impl fmt::Display for KindKey {
    /// `ConfigMap v1`, `Deployment apps/v1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.api_version)
    }
}

/// One deployed object as the report names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    /// Fleet's own wording: `configmap.v1 default/test-config2-one`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = ResourceKey::new(
            &self.api_version,
            &self.kind,
            Some(&self.namespace),
            &self.name,
        );
        f.write_str(&key.fleet_name())
    }
}

/// A disagreement between Fleet's status and the cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Discrepancy {
    /// Listed live in `status.resources`, but no such object exists (deleted while no
    /// webhook reviewed, and Fleet has not noticed).
    ReportedReadyButAbsent {
        #[serde(rename = "bundleDeployment")]
        bundle_deployment: String,
        object: ObjectRef,
    },
    /// Listed `missing` in `status.modifiedStatus`, but the object exists (re-created).
    ReportedMissingButPresent {
        #[serde(rename = "bundleDeployment")]
        bundle_deployment: String,
        object: ObjectRef,
    },
    /// The object exists, but not the one Fleet reported: another uid
    /// (`nonReadyStatus`) or another creationTimestamp (`resources[].createdAt`).
    Recreated {
        #[serde(rename = "bundleDeployment")]
        bundle_deployment: String,
        object: ObjectRef,
        /// `uid` or `createdAt`.
        field: &'static str,
        reported: String,
        actual: String,
    },
    /// An object of that name exists, but with the hash label of another object set:
    /// not this BundleDeployment's (checked against `--agent-scope`).
    OtherObjectSet {
        #[serde(rename = "bundleDeployment")]
        bundle_deployment: String,
        object: ObjectRef,
        hash: String,
    },
    /// The owner's counts for this cluster differ from the sum of its
    /// BundleDeployments' `resourceCounts` (Fleet's owner status not recomputed).
    OwnerCounts {
        reported: Counts,
        #[serde(rename = "bundleDeployments")]
        bundle_deployments: Counts,
    },
}

impl fmt::Display for Discrepancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Discrepancy::ReportedReadyButAbsent {
                bundle_deployment,
                object,
            } => write!(f, "{bundle_deployment}: {object} reported Ready but absent"),
            Discrepancy::ReportedMissingButPresent {
                bundle_deployment,
                object,
            } => write!(f, "{bundle_deployment}: {object} reported Missing but present"),
            Discrepancy::Recreated {
                bundle_deployment,
                object,
                field,
                reported,
                actual,
            } => write!(
                f,
                "{bundle_deployment}: {object} re-created ({field} {reported} reported, {actual} present)"
            ),
            Discrepancy::OtherObjectSet {
                bundle_deployment,
                object,
                hash,
            } => write!(
                f,
                "{bundle_deployment}: {object} present with another object set's hash {hash}"
            ),
            Discrepancy::OwnerCounts {
                reported,
                bundle_deployments,
            } => write!(
                f,
                "owner resourceCounts {reported} differ from its BundleDeployments' sum {bundle_deployments}"
            ),
        }
    }
}

/// The numbers of `resourceCounts`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub desired_ready: i64,
    pub ready: i64,
    pub missing: i64,
    pub not_ready: i64,
    pub modified: i64,
    pub orphaned: i64,
    pub unknown: i64,
    pub wait_applied: i64,
}

impl From<&ResourceCounts> for Counts {
    fn from(c: &ResourceCounts) -> Self {
        Counts {
            desired_ready: c.desired_ready,
            ready: c.ready,
            missing: c.missing,
            not_ready: c.not_ready,
            modified: c.modified,
            orphaned: c.orphaned,
            unknown: c.unknown,
            wait_applied: c.wait_applied,
        }
    }
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        let add = |a: &mut i64, b: i64| *a = a.saturating_add(b);
        add(&mut self.desired_ready, o.desired_ready);
        add(&mut self.ready, o.ready);
        add(&mut self.missing, o.missing);
        add(&mut self.not_ready, o.not_ready);
        add(&mut self.modified, o.modified);
        add(&mut self.orphaned, o.orphaned);
        add(&mut self.unknown, o.unknown);
        add(&mut self.wait_applied, o.wait_applied);
    }
}

impl fmt::Display for Counts {
    /// `10/11 (missing 1)`: ready/desiredReady and the non-zero rest.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ready, self.desired_ready)?;
        let rest: Vec<String> = [
            ("missing", self.missing),
            ("notReady", self.not_ready),
            ("modified", self.modified),
            ("orphaned", self.orphaned),
            ("unknown", self.unknown),
            ("waitApplied", self.wait_applied),
        ]
        .iter()
        .filter(|(_, n)| *n != 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
        if !rest.is_empty() {
            write!(f, " ({})", rest.join(", "))?;
        }
        Ok(())
    }
}

/// Which owners to compare (`--owner`, `--namespace`); empty: all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerFilter {
    /// Any of these; a `None` kind matches every kind.
    pub owners: Vec<(Option<OwnerKind>, String, String)>,
    /// The owner's namespace.
    pub namespace: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--owner must be KIND/NAMESPACE/NAME or NAMESPACE/NAME (KIND: GitRepo, HelmOp, Bundle), got {0:?}")]
pub struct OwnerFilterError(pub String);

impl OwnerFilter {
    /// Parses one `--owner` value.
    pub fn parse_owner(s: &str) -> Result<(Option<OwnerKind>, String, String), OwnerFilterError> {
        let err = || OwnerFilterError(s.to_string());
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(err());
        }
        match parts.as_slice() {
            [ns, name] => Ok((None, ns.to_string(), name.to_string())),
            [kind, ns, name] => {
                let kind = [OwnerKind::GitRepo, OwnerKind::HelmOp, OwnerKind::Bundle]
                    .into_iter()
                    .find(|k| k.as_str().eq_ignore_ascii_case(kind))
                    .ok_or_else(err)?;
                Ok((Some(kind), ns.to_string(), name.to_string()))
            }
            _ => Err(err()),
        }
    }

    pub fn matches(&self, owner: &OwnerRef) -> bool {
        if let Some(ns) = &self.namespace {
            if &owner.namespace != ns {
                return false;
            }
        }
        self.owners.is_empty()
            || self.owners.iter().any(|(kind, ns, name)| {
                kind.is_none_or(|k| k == owner.kind)
                    && ns == &owner.namespace
                    && name == &owner.name
            })
    }
}

/// What Fleet says of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reported {
    /// In `status.resources`.
    Ready,
    /// `missing` in `status.modifiedStatus`.
    Missing,
}

/// What the listing found of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    NotYet,
    Present,
    Absent,
    Unchecked,
}

/// One resource a BundleDeployment names.
#[derive(Debug)]
struct Claim {
    bd: u32,
    reported: Reported,
    created_at: Option<String>,
    uid: Option<String>,
    seen: Seen,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ObjKey {
    namespace: String,
    name: String,
}

struct Bd {
    owner: usize,
    bd: Arc<BundleDeploymentRef>,
}

#[derive(Default)]
struct OwnerAcc {
    bundle_deployments: usize,
    sum: Counts,
    present: usize,
    absent: usize,
    unchecked: usize,
    discrepancies: Vec<Discrepancy>,
    /// The owner's own counts for this cluster, when read.
    reported: Option<Counts>,
}

/// A resource listed live by a BundleDeployment that does not exist: what the resync
/// counts as a deletion made while no replica was reviewing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbsentResource<'a> {
    pub kind: &'a KindKey,
    pub namespace: &'a str,
    pub name: &'a str,
    pub created_at: Option<&'a str>,
    pub bundle_deployment: &'a Arc<BundleDeploymentRef>,
}

/// One object that exists, as a metadata-only LIST returns it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveObject<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: Option<&'a str>,
    /// creationTimestamp, in seconds since the epoch.
    pub created_at: Option<i64>,
    /// The `objectset.rio.cattle.io/hash` label.
    pub hash: Option<&'a str>,
}

/// The comparison in progress. See the module documentation for the order of calls.
pub struct Comparison {
    scopes: Vec<String>,
    filter: OwnerFilter,
    owners: Vec<(OwnerRef, OwnerAcc)>,
    owner_index: HashMap<OwnerRef, usize>,
    bds: Vec<Bd>,
    by_kind: BTreeMap<KindKey, HashMap<ObjKey, Vec<Claim>>>,
    errors: Vec<VerifyError>,
    notes: Vec<String>,
    listed_bundle_deployments: usize,
    resources: usize,
}

/// Something that could not be checked; the rest of the report stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyError {
    /// `BundleDeployments`, or the kind (`Secret v1`).
    pub what: String,
    pub message: String,
    /// Resources of that kind whose existence was not checked.
    pub unchecked: usize,
}

impl Comparison {
    /// `scopes`: the agent scopes (`--agent-scope`) whose hash an object of a
    /// BundleDeployment may carry; empty: the hash is not checked.
    pub fn new(scopes: Vec<String>, filter: OwnerFilter) -> Self {
        Comparison {
            scopes,
            filter,
            owners: Vec::new(),
            owner_index: HashMap::new(),
            bds: Vec::new(),
            by_kind: BTreeMap::new(),
            errors: Vec::new(),
            notes: Vec::new(),
            listed_bundle_deployments: 0,
            resources: 0,
        }
    }

    /// One BundleDeployment of this cluster; returns whether its owner passes the filter.
    pub fn add_bundle_deployment(&mut self, bd: &ListedBundleDeployment) -> bool {
        self.listed_bundle_deployments += 1;
        let Some(bd_ref) = BundleDeploymentRef::from_object(bd) else {
            return false;
        };
        let owner = OwnerRef::clone(&bd_ref.owner);
        if !self.filter.matches(&owner) {
            return false;
        }
        let owner_at = match self.owner_index.get(&owner) {
            Some(i) => *i,
            None => {
                self.owners.push((owner.clone(), OwnerAcc::default()));
                self.owner_index.insert(owner, self.owners.len() - 1);
                self.owners.len() - 1
            }
        };
        let acc = &mut self.owners[owner_at].1;
        acc.bundle_deployments += 1;
        if let Some(c) = &bd.status.resource_counts {
            acc.sum.add(&Counts::from(c));
        }
        let Ok(bd_at) = u32::try_from(self.bds.len()) else {
            return false;
        };
        self.bds.push(Bd {
            owner: owner_at,
            bd: Arc::new(bd_ref),
        });
        let uid_of = |key: &ResourceKey| {
            bd.status
                .non_ready
                .iter()
                .find(|e| e.key.same_object(key))
                .and_then(|e| e.uid.clone())
                .filter(|u| !u.is_empty())
        };
        let live = bd.status.resources.iter().map(|r| (r, Reported::Ready));
        let missing = bd
            .status
            .modified
            .iter()
            .filter(|m| m.is_missing())
            .map(|m| (m, Reported::Missing));
        for (entry, reported) in live.chain(missing) {
            if reported == Reported::Ready {
                self.resources += 1;
            }
            let claim = Claim {
                bd: bd_at,
                reported,
                created_at: entry.created_at.clone(),
                uid: uid_of(&entry.key),
                seen: Seen::NotYet,
            };
            self.by_kind
                .entry(KindKey::new(&entry.key.api_version, &entry.key.kind))
                .or_default()
                .entry(ObjKey {
                    namespace: entry.key.namespace.clone(),
                    name: entry.key.name.clone(),
                })
                // Almost every object has one claim: room for one, not `push`'s four
                // (about 200 bytes less per deployed object during a resync).
                .or_insert_with(|| Vec::with_capacity(1))
                .push(claim);
        }
        true
    }

    /// BundleDeployments listed (before the filter).
    pub fn listed_bundle_deployments(&self) -> usize {
        self.listed_bundle_deployments
    }

    /// Entries of `status.resources` of the compared BundleDeployments.
    pub fn resources(&self) -> usize {
        self.resources
    }

    /// The kinds to list, in a stable order.
    pub fn kinds(&self) -> Vec<KindKey> {
        self.by_kind.keys().cloned().collect()
    }

    /// The owners compared so far, in the order first seen.
    pub fn owners(&self) -> impl Iterator<Item = &OwnerRef> {
        self.owners.iter().map(|(o, _)| o)
    }

    /// One object of `kind` that exists.
    pub fn observe(&mut self, kind: &KindKey, object: LiveObject<'_>) {
        let Some(claims) = self.by_kind.get_mut(kind) else {
            return;
        };
        let key = ObjKey {
            namespace: object.namespace.to_string(),
            name: object.name.to_string(),
        };
        let Some(claims) = claims.get_mut(&key) else {
            return;
        };
        for claim in claims.iter_mut() {
            if claim.seen == Seen::Present {
                continue;
            }
            let bd = &self.bds[claim.bd as usize];
            let acc = &mut self.owners[bd.owner].1;
            let object_ref = || ObjectRef {
                api_version: kind.api_version.clone(),
                kind: kind.kind.clone(),
                namespace: key.namespace.clone(),
                name: key.name.clone(),
            };
            let bundle_deployment = bd.bd.name.clone();
            let own_hash = match object.hash {
                Some(hash) if !self.scopes.is_empty() => self
                    .scopes
                    .iter()
                    .any(|scope| hash_for_bundle_deployment(&bd.bd.name, scope) == hash),
                _ => true,
            };
            if !own_hash && claim.reported == Reported::Missing {
                // Another object set's object of that name: Fleet's own is missing
                // indeed (Fleet reports it so, `exist` aside).
                claim.seen = Seen::Absent;
                acc.absent += 1;
                continue;
            }
            claim.seen = Seen::Present;
            acc.present += 1;
            if !own_hash {
                acc.discrepancies.push(Discrepancy::OtherObjectSet {
                    bundle_deployment,
                    object: object_ref(),
                    hash: object.hash.unwrap_or_default().to_string(),
                });
                continue;
            }
            if claim.reported == Reported::Missing {
                acc.discrepancies
                    .push(Discrepancy::ReportedMissingButPresent {
                        bundle_deployment,
                        object: object_ref(),
                    });
                continue;
            }
            if let (Some(reported), Some(actual)) = (&claim.uid, object.uid) {
                if reported != actual {
                    acc.discrepancies.push(Discrepancy::Recreated {
                        bundle_deployment,
                        object: object_ref(),
                        field: "uid",
                        reported: reported.clone(),
                        actual: actual.to_string(),
                    });
                    continue;
                }
            }
            if let (Some(reported), Some(actual)) = (&claim.created_at, object.created_at) {
                match reported.parse::<jiff::Timestamp>() {
                    Ok(t) if t.as_second() != actual => {
                        acc.discrepancies.push(Discrepancy::Recreated {
                            bundle_deployment,
                            object: object_ref(),
                            field: "createdAt",
                            reported: reported.clone(),
                            actual: jiff::Timestamp::from_second(actual)
                                .map(|t| t.to_string())
                                .unwrap_or_else(|_| actual.to_string()),
                        });
                    }
                    _ => {}
                }
            }
        }
    }

    /// Every object of `kind` has been observed: what was not seen is absent.
    pub fn kind_listed(&mut self, kind: &KindKey) {
        let Some(claims) = self.by_kind.get_mut(kind) else {
            return;
        };
        let mut all: Vec<_> = claims.iter_mut().collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        for (key, claims) in all {
            for claim in claims.iter_mut().filter(|c| c.seen == Seen::NotYet) {
                claim.seen = Seen::Absent;
                let bd = &self.bds[claim.bd as usize];
                let acc = &mut self.owners[bd.owner].1;
                acc.absent += 1;
                if claim.reported == Reported::Ready {
                    acc.discrepancies.push(Discrepancy::ReportedReadyButAbsent {
                        bundle_deployment: bd.bd.name.clone(),
                        object: ObjectRef {
                            api_version: kind.api_version.clone(),
                            kind: kind.kind.clone(),
                            namespace: key.namespace.clone(),
                            name: key.name.clone(),
                        },
                    });
                }
            }
        }
    }

    /// `kind` could not be listed (discovery or LIST failed, e.g. forbidden): what was
    /// not seen yet stays unchecked.
    pub fn kind_failed(&mut self, kind: &KindKey, message: impl Into<String>) {
        let mut unchecked = 0;
        if let Some(claims) = self.by_kind.get_mut(kind) {
            for claim in claims
                .values_mut()
                .flatten()
                .filter(|c| c.seen == Seen::NotYet)
            {
                claim.seen = Seen::Unchecked;
                unchecked += 1;
                self.owners[self.bds[claim.bd as usize].owner].1.unchecked += 1;
            }
        }
        self.errors.push(VerifyError {
            what: kind.to_string(),
            message: message.into(),
            unchecked,
        });
    }

    /// Something else could not be read (the BundleDeployments themselves).
    pub fn error(&mut self, what: impl Into<String>, message: impl Into<String>) {
        self.errors.push(VerifyError {
            what: what.into(),
            message: message.into(),
            unchecked: 0,
        });
    }

    /// Something not checked that is no error (an owner status the credentials may not
    /// read).
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// The owner's own counts for this cluster (`perClusterResourceCounts`, or
    /// `resourceCounts` for Fleet before v0.12). Ignored for owners not compared.
    pub fn owner_counts(&mut self, owner: &OwnerRef, counts: &ResourceCounts) {
        if let Some(i) = self.owner_index.get(owner) {
            self.owners[*i].1.reported = Some(Counts::from(counts));
        }
    }

    /// Resources listed live that were found absent, by kind, then namespace and name.
    pub fn absent_reported(&self) -> Vec<AbsentResource<'_>> {
        let mut out = Vec::new();
        for (kind, claims) in &self.by_kind {
            let mut found: Vec<_> = claims
                .iter()
                .flat_map(|(key, claims)| claims.iter().map(move |c| (key, c)))
                .filter(|(_, c)| c.seen == Seen::Absent && c.reported == Reported::Ready)
                .collect();
            found.sort_by(|a, b| a.0.cmp(b.0).then(a.1.bd.cmp(&b.1.bd)));
            out.extend(found.into_iter().map(|(key, c)| AbsentResource {
                kind,
                namespace: &key.namespace,
                name: &key.name,
                created_at: c.created_at.as_deref(),
                bundle_deployment: &self.bds[c.bd as usize].bd,
            }));
        }
        out
    }

    /// The report, owners in kind/namespace/name order.
    pub fn finish(self) -> Report {
        let mut owners: Vec<OwnerReport> = self
            .owners
            .into_iter()
            .map(|(owner, mut acc)| {
                if let Some(reported) = acc.reported {
                    if owner.kind.has_resource_counts() && reported != acc.sum {
                        acc.discrepancies.push(Discrepancy::OwnerCounts {
                            reported,
                            bundle_deployments: acc.sum,
                        });
                    }
                }
                acc.discrepancies.sort();
                OwnerReport {
                    kind: owner.kind.as_str(),
                    namespace: owner.namespace.clone(),
                    name: owner.name.clone(),
                    owner,
                    bundle_deployments: acc.bundle_deployments,
                    desired_ready: acc.sum.desired_ready,
                    reported_ready: acc.sum.ready,
                    reported_missing: acc.sum.missing,
                    present: acc.present,
                    absent: acc.absent,
                    unchecked: acc.unchecked,
                    owner_counts: acc.reported,
                    discrepancies: acc.discrepancies,
                }
            })
            .collect();
        owners.sort_by(|a, b| a.owner.cmp(&b.owner));
        Report {
            bundle_deployments: self.listed_bundle_deployments,
            owners,
            errors: self.errors,
            notes: self.notes,
        }
    }
}

/// One owner's line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReport {
    #[serde(skip)]
    pub owner: OwnerRef,
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub bundle_deployments: usize,
    /// Σ `resourceCounts.desiredReady` of its BundleDeployments on this cluster.
    pub desired_ready: i64,
    /// Σ `resourceCounts.ready`.
    pub reported_ready: i64,
    /// Σ `resourceCounts.missing`.
    pub reported_missing: i64,
    /// Resources its BundleDeployments name (live or missing) that exist.
    pub present: usize,
    /// …that do not exist.
    pub absent: usize,
    /// …of kinds that could not be listed.
    pub unchecked: usize,
    /// The owner's own counts for this cluster, when read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_counts: Option<Counts>,
    pub discrepancies: Vec<Discrepancy>,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// BundleDeployments of this cluster listed.
    pub bundle_deployments: usize,
    pub owners: Vec<OwnerReport>,
    pub errors: Vec<VerifyError>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Report {
    pub fn discrepancies(&self) -> usize {
        self.owners.iter().map(|o| o.discrepancies.len()).sum()
    }

    /// 0: everything agrees; 1: discrepancies; 2: something could not be checked
    /// (whatever else was found: the report is incomplete).
    pub fn exit_code(&self) -> u8 {
        if !self.errors.is_empty() {
            2
        } else if self.discrepancies() > 0 {
            1
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const NS: &str = "cluster-fleet-local-local-1a3d67d0a899";
    const T0: &str = "2026-08-20T09:01:12Z";

    fn cm(name: &str) -> Value {
        json!({"kind": "ConfigMap", "apiVersion": "v1", "namespace": "default", "name": name, "createdAt": T0})
    }

    fn bd(name: &str, labels: Value, status: Value) -> ListedBundleDeployment {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": NS, "labels": labels},
            "status": status,
        }))
        .expect("bd")
    }

    fn repo_bd(name: &str, status: Value) -> ListedBundleDeployment {
        bd(
            name,
            json!({"fleet.cattle.io/repo-name": "lots", "fleet.cattle.io/bundle-namespace": "fleet-local"}),
            status,
        )
    }

    fn counts(ready: i64, desired: i64, missing: i64) -> Value {
        json!({"ready": ready, "desiredReady": desired, "missing": missing})
    }

    fn t0() -> i64 {
        T0.parse::<jiff::Timestamp>().expect("ts").as_second()
    }

    /// An object of BD `bd` (standalone agent) as a LIST returns it.
    fn live<'a>(name: &'a str, uid: &'a str, hash: &'a str) -> LiveObject<'a> {
        LiveObject {
            namespace: "default",
            name,
            uid: Some(uid),
            created_at: Some(t0()),
            hash: Some(hash),
        }
    }

    fn cm_kind() -> KindKey {
        KindKey::new("v1", "ConfigMap")
    }

    fn scopes() -> Vec<String> {
        vec![String::new(), "cattle-fleet-local-system".to_string()]
    }

    /// BDs, then the objects that exist (name, uid, created_at, hash owner BD), listed.
    fn compare(
        bds: &[ListedBundleDeployment],
        objects: &[(&str, &str, i64, &str)],
        owner_counts: Option<Value>,
    ) -> (Report, usize) {
        let mut c = Comparison::new(scopes(), OwnerFilter::default());
        for b in bds {
            c.add_bundle_deployment(b);
        }
        assert_eq!(c.kinds(), vec![cm_kind()]);
        let hashes: Vec<String> = objects
            .iter()
            .map(|(_, _, _, owner)| hash_for_bundle_deployment(owner, ""))
            .collect();
        for ((name, uid, created, _), hash) in objects.iter().zip(&hashes) {
            c.observe(
                &cm_kind(),
                LiveObject {
                    created_at: Some(*created),
                    ..live(name, uid, hash)
                },
            );
        }
        c.kind_listed(&cm_kind());
        if let Some(v) = owner_counts {
            let rc: ResourceCounts = serde_json::from_value(v).expect("counts");
            c.owner_counts(
                &OwnerRef::new(OwnerKind::GitRepo, "fleet-local", "lots"),
                &rc,
            );
        }
        let absent = c.absent_reported().len();
        (c.finish(), absent)
    }

    fn object(name: &str) -> ObjectRef {
        ObjectRef {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: "default".into(),
            name: name.into(),
        }
    }

    #[test]
    fn table() {
        let two_ready = || {
            repo_bd(
                "lots-config1",
                json!({"resources": [cm("a"), cm("b")], "resourceCounts": counts(2, 2, 0)}),
            )
        };
        let t = t0();
        struct Case {
            name: &'static str,
            bds: Vec<ListedBundleDeployment>,
            objects: Vec<(&'static str, &'static str, i64, &'static str)>,
            owner_counts: Option<Value>,
            want: Vec<Discrepancy>,
            present_absent: (usize, usize),
            resync_marks: usize,
        }
        let cases = vec![
            Case {
                name: "agreement",
                bds: vec![two_ready()],
                objects: vec![
                    ("a", "u-a", t, "lots-config1"),
                    ("b", "u-b", t, "lots-config1"),
                ],
                owner_counts: Some(counts(2, 2, 0)),
                want: vec![],
                present_absent: (2, 0),
                resync_marks: 0,
            },
            Case {
                name: "deleted while no webhook ran: reported Ready, absent",
                bds: vec![two_ready()],
                objects: vec![("a", "u-a", t, "lots-config1")],
                owner_counts: Some(counts(2, 2, 0)),
                want: vec![Discrepancy::ReportedReadyButAbsent {
                    bundle_deployment: "lots-config1".into(),
                    object: object("b"),
                }],
                present_absent: (1, 1),
                resync_marks: 1,
            },
            Case {
                name: "counted deletion: reported Missing, absent",
                bds: vec![repo_bd(
                    "lots-config1",
                    json!({"resources": [cm("a")], "resourceCounts": counts(1, 2, 1),
                           "modifiedStatus": [{"kind": "ConfigMap", "apiVersion": "v1", "namespace": "default", "name": "b", "missing": true}]}),
                )],
                objects: vec![("a", "u-a", t, "lots-config1")],
                owner_counts: Some(counts(1, 2, 1)),
                want: vec![],
                present_absent: (1, 1),
                resync_marks: 0,
            },
            Case {
                name: "re-created: reported Missing, present",
                bds: vec![repo_bd(
                    "lots-config1",
                    json!({"resources": [cm("a")], "resourceCounts": counts(1, 2, 1),
                           "modifiedStatus": [{"kind": "ConfigMap", "apiVersion": "v1", "namespace": "default", "name": "b", "missing": true}]}),
                )],
                objects: vec![
                    ("a", "u-a", t, "lots-config1"),
                    ("b", "u-b2", t + 60, "lots-config1"),
                ],
                owner_counts: None,
                want: vec![Discrepancy::ReportedMissingButPresent {
                    bundle_deployment: "lots-config1".into(),
                    object: object("b"),
                }],
                present_absent: (2, 0),
                resync_marks: 0,
            },
            Case {
                name: "re-created: another uid than nonReadyStatus reports",
                bds: vec![repo_bd(
                    "lots-config1",
                    json!({"resources": [cm("a"), cm("b")], "resourceCounts": {"ready": 1, "desiredReady": 2, "notReady": 1},
                           "nonReadyStatus": [{"uid": "u-b", "kind": "ConfigMap", "apiVersion": "v1", "namespace": "default", "name": "b"}]}),
                )],
                objects: vec![
                    ("a", "u-a", t, "lots-config1"),
                    ("b", "u-b2", t, "lots-config1"),
                ],
                owner_counts: None,
                want: vec![Discrepancy::Recreated {
                    bundle_deployment: "lots-config1".into(),
                    object: object("b"),
                    field: "uid",
                    reported: "u-b".into(),
                    actual: "u-b2".into(),
                }],
                present_absent: (2, 0),
                resync_marks: 0,
            },
            Case {
                name: "re-created: another creationTimestamp than resources[].createdAt",
                bds: vec![two_ready()],
                objects: vec![
                    ("a", "u-a", t, "lots-config1"),
                    ("b", "u-b2", t + 3600, "lots-config1"),
                ],
                owner_counts: None,
                want: vec![Discrepancy::Recreated {
                    bundle_deployment: "lots-config1".into(),
                    object: object("b"),
                    field: "createdAt",
                    reported: T0.into(),
                    actual: "2026-08-20T10:01:12Z".into(),
                }],
                present_absent: (2, 0),
                resync_marks: 0,
            },
            Case {
                name: "another object set's object of that name",
                bds: vec![two_ready()],
                objects: vec![
                    ("a", "u-a", t, "lots-config1"),
                    ("b", "u-b", t, "someone-else"),
                ],
                owner_counts: None,
                want: vec![Discrepancy::OtherObjectSet {
                    bundle_deployment: "lots-config1".into(),
                    object: object("b"),
                    hash: hash_for_bundle_deployment("someone-else", ""),
                }],
                present_absent: (2, 0),
                resync_marks: 0,
            },
            Case {
                name: "status Fleet never updated: GitRepo counts behind its BundleDeployments",
                bds: vec![repo_bd(
                    "lots-config1",
                    json!({"resources": [cm("a")], "resourceCounts": counts(1, 2, 1),
                               "modifiedStatus": [{"kind": "ConfigMap", "apiVersion": "v1", "namespace": "default", "name": "b", "missing": true}]}),
                )],
                objects: vec![("a", "u-a", t, "lots-config1")],
                owner_counts: Some(counts(2, 2, 0)),
                want: vec![Discrepancy::OwnerCounts {
                    reported: Counts {
                        ready: 2,
                        desired_ready: 2,
                        ..Counts::default()
                    },
                    bundle_deployments: Counts {
                        ready: 1,
                        desired_ready: 2,
                        missing: 1,
                        ..Counts::default()
                    },
                }],
                present_absent: (1, 1),
                resync_marks: 0,
            },
        ];
        for case in cases {
            let (report, marks) = compare(&case.bds, &case.objects, case.owner_counts);
            assert_eq!(report.owners.len(), 1, "{}", case.name);
            let o = &report.owners[0];
            assert_eq!(o.discrepancies, case.want, "{}", case.name);
            assert_eq!((o.present, o.absent), case.present_absent, "{}", case.name);
            assert_eq!(marks, case.resync_marks, "{}: resync marks", case.name);
            assert!(report.errors.is_empty(), "{}", case.name);
            let code = if case.want.is_empty() { 0 } else { 1 };
            assert_eq!(report.exit_code(), code, "{}", case.name);
        }
    }

    #[test]
    fn owners_are_summed_per_owner_and_bundles_have_no_counts_to_compare() {
        let mut c = Comparison::new(scopes(), OwnerFilter::default());
        c.add_bundle_deployment(&repo_bd(
            "lots-config1",
            json!({"resources": [cm("a")], "resourceCounts": counts(1, 1, 0)}),
        ));
        c.add_bundle_deployment(&repo_bd(
            "lots-config2",
            json!({"resources": [cm("b")], "resourceCounts": counts(1, 1, 0)}),
        ));
        c.add_bundle_deployment(&bd(
            "redis",
            json!({"fleet.cattle.io/fleet-helm-name": "redis", "fleet.cattle.io/bundle-namespace": "fleet-default"}),
            json!({"resources": [cm("r")], "resourceCounts": counts(1, 1, 0)}),
        ));
        c.add_bundle_deployment(&bd(
            "mcc-x",
            json!({"fleet.cattle.io/bundle-namespace": "fleet-local"}),
            json!({"resources": [cm("x")], "resourceCounts": counts(1, 1, 0)}),
        ));
        for (name, bd) in [
            ("a", "lots-config1"),
            ("b", "lots-config2"),
            ("r", "redis"),
            ("x", "mcc-x"),
        ] {
            let hash = hash_for_bundle_deployment(bd, "cattle-fleet-local-system");
            c.observe(&cm_kind(), live(name, "u", &hash));
        }
        c.kind_listed(&cm_kind());
        let report = c.finish();
        let summary: Vec<_> = report
            .owners
            .iter()
            .map(|o| {
                (
                    o.owner.to_string(),
                    o.bundle_deployments,
                    o.reported_ready,
                    o.desired_ready,
                    o.present,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("GitRepo fleet-local/lots".to_string(), 2, 2, 2, 2),
                ("HelmOp fleet-default/redis".to_string(), 1, 1, 1, 1),
                ("Bundle fleet-local/mcc-x".to_string(), 1, 1, 1, 1),
            ]
        );
        assert_eq!(report.exit_code(), 0, "{report:?}");
    }

    #[test]
    fn a_kind_that_cannot_be_listed_is_an_error_and_leaves_its_resources_unchecked() {
        let mut c = Comparison::new(scopes(), OwnerFilter::default());
        c.add_bundle_deployment(&repo_bd(
            "lots-config1",
            json!({"resources": [cm("a"), {"kind": "Secret", "apiVersion": "v1", "namespace": "default", "name": "s"}],
                   "resourceCounts": counts(2, 2, 0)}),
        ));
        let secret = KindKey::new("v1", "Secret");
        assert_eq!(c.kinds(), vec![cm_kind(), secret.clone()]);
        let hash = hash_for_bundle_deployment("lots-config1", "");
        c.observe(&cm_kind(), live("a", "u", &hash));
        c.kind_listed(&cm_kind());
        c.kind_failed(&secret, "forbidden");
        assert!(c.absent_reported().is_empty(), "unchecked is not absent");
        let report = c.finish();
        let o = &report.owners[0];
        assert_eq!((o.present, o.absent, o.unchecked), (1, 0, 1));
        assert!(o.discrepancies.is_empty());
        assert_eq!(
            report.errors,
            [VerifyError {
                what: "Secret v1".into(),
                message: "forbidden".into(),
                unchecked: 1
            }]
        );
        assert_eq!(report.exit_code(), 2);
    }

    #[test]
    fn owner_filters() {
        let f = |owners: &[&str], ns: Option<&str>| OwnerFilter {
            owners: owners
                .iter()
                .map(|o| OwnerFilter::parse_owner(o).expect("parse"))
                .collect(),
            namespace: ns.map(str::to_string),
        };
        let lots = OwnerRef::new(OwnerKind::GitRepo, "fleet-local", "lots");
        let redis = OwnerRef::new(OwnerKind::HelmOp, "fleet-default", "redis");
        for (filter, lots_in, redis_in) in [
            (f(&[], None), true, true),
            (f(&["GitRepo/fleet-local/lots"], None), true, false),
            (f(&["gitrepo/fleet-local/lots"], None), true, false),
            (f(&["HelmOp/fleet-local/lots"], None), false, false),
            (f(&["fleet-default/redis"], None), false, true),
            (f(&[], Some("fleet-default")), false, true),
            (
                f(&["fleet-local/lots"], Some("fleet-default")),
                false,
                false,
            ),
        ] {
            assert_eq!(filter.matches(&lots), lots_in, "{filter:?}");
            assert_eq!(filter.matches(&redis), redis_in, "{filter:?}");
        }
        for bad in ["lots", "a/b/c/d", "Cluster/a/b", "/a", "a/"] {
            let err = OwnerFilter::parse_owner(bad).expect_err(bad);
            assert!(err.to_string().contains("KIND/NAMESPACE/NAME"), "{err}");
        }
        // BundleDeployments of other owners are left out, kinds included.
        let mut c = Comparison::new(scopes(), f(&["fleet-default/redis"], None));
        assert!(!c.add_bundle_deployment(&repo_bd("lots-config1", json!({"resources": [cm("a")]}))));
        assert!(c.kinds().is_empty());
        assert_eq!(c.listed_bundle_deployments(), 1);
    }
}
