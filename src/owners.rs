//! Owner resolution without an API call on the admission path.
//!
//! A kube-runtime watcher follows this cluster's BundleDeployments (selected by
//! Fleet's cluster labels) and a second one the GitRepos' metadata for the per-GitRepo
//! policy annotation. [`OwnerIndex`] is the store these watchers feed — the only copy
//! kept, instead of a reflector store of the objects next to it. It maps the
//! setID that Fleet writes into `objectset.rio.cattle.io/id` — and its SHA-1, the
//! `objectset.rio.cattle.io/hash` label — to the owning BundleDeployment, its Bundle
//! and its GitRepo. A lookup is one hash-map read under a read lock.

use std::{
    collections::HashMap,
    hash::BuildHasher,
    sync::{
        atomic::{AtomicU64, AtomicU8, Ordering::Relaxed},
        Arc, RwLock,
    },
};

use kube::{api::DynamicObject, runtime::watcher::Event, Resource, ResourceExt};
use tokio::sync::watch;

use crate::{
    admission::OwnerResolver,
    decide::{ObjectFacts, Owner},
    fleet::{
        gates::Gates, object_set_hash_bytes, parse_object_set_hash, set_id,
        view::BundleDeploymentView, OwnerKind, OwnerRef, DEFAULT_LABEL_PREFIX, LABEL_BUNDLE_NAME,
    },
    policy::Policy,
};

/// Annotation on a GitRepo or HelmOp that overrides `--policy` for the objects it deploys.
pub const POLICY_ANNOTATION: &str = "fleet-delete-guard/policy";

/// Agent scopes tried when matching setIDs: standalone Fleet (`""`) and Rancher's
/// local agent (`cattle-fleet-local-system`). Fleet appends the scope to the setID.
pub const DEFAULT_AGENT_SCOPES: &[&str] = &["", "cattle-fleet-local-system"];

/// The BundleDeployment that owns an object, with what its labels say.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BundleDeploymentRef {
    pub namespace: String,
    pub name: String,
    /// The Bundle (Fleet makes the BD name equal to it). Shared: a review's owner takes
    /// a reference, not a copy.
    pub bundle: Arc<str>,
    /// The GitRepo or HelmOp behind the Bundle, or the Bundle itself; in the owner index,
    /// one for all of the owner's BundleDeployments.
    pub owner: Arc<OwnerRef>,
    /// Why Fleet's agent does not monitor it now (paused, off schedule, waiting for
    /// values), if so: then nothing is counted for it.
    pub unmonitored: Option<&'static str>,
}

/// A BundleDeployment as some reader holds it: metadata, and the spec gates.
pub trait BundleDeploymentObject: Resource {
    fn gates(&self) -> Gates;
}

impl<const R: bool> BundleDeploymentObject for BundleDeploymentView<R> {
    fn gates(&self) -> Gates {
        self.gates
    }
}

impl BundleDeploymentObject for DynamicObject {
    fn gates(&self) -> Gates {
        let flag = |k: &str| self.data["spec"][k].as_bool().unwrap_or(false);
        Gates {
            paused: flag("paused"),
            off_schedule: flag("offSchedule"),
            waiting_for_values: flag("waitingForValues"),
        }
    }
}

impl BundleDeploymentRef {
    /// From a BundleDeployment (any representation of it).
    pub fn from_object<K: BundleDeploymentObject>(bd: &K) -> Option<Self> {
        let meta = bd.meta();
        let name = meta.name.clone()?;
        let namespace = meta.namespace.clone().unwrap_or_default();
        let labels = bd.labels();
        let bundle = labels
            .get(LABEL_BUNDLE_NAME)
            .filter(|b| !b.is_empty())
            .map_or_else(|| Arc::from(name.as_str()), |b| Arc::from(b.as_str()));
        let owner = Arc::new(OwnerRef::from_bundle_deployment_labels(labels, &name));
        Some(BundleDeploymentRef {
            namespace,
            name,
            bundle,
            owner,
            unmonitored: bd.gates().unmonitored(),
        })
    }
}

/// What a BundleDeployment's status says of its size, for the breaker's fraction rule.
pub trait DesiredReady {
    /// `status.resourceCounts.desiredReady`.
    fn desired_ready(&self) -> Option<u64>;
}

impl<const R: bool> DesiredReady for crate::fleet::view::BundleDeploymentView<R> {
    fn desired_ready(&self) -> Option<u64> {
        self.status.desired_ready
    }
}

impl DesiredReady for kube::api::DynamicObject {
    fn desired_ready(&self) -> Option<u64> {
        self.data
            .get("status")
            .and_then(|s| s.get("resourceCounts"))
            .and_then(|c| c.get("desiredReady"))
            .and_then(serde_json::Value::as_u64)
    }
}

/// The index's maps hash with foldhash, seeded per process, instead of SipHash: the
/// keys are setIDs and SHA-1 digests, looked up on every Fleet-managed review, and
/// SipHash was about 3 % of such a review's CPU (BENCHMARKS.md, "Beside the kube-rs
/// admission example"). Only lookups take a key from a review; the keys stored come from
/// BundleDeployments, GitRepos and HelmOps.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One key of an indexed BundleDeployment, held in the table itself: a review's lookup
/// goes from the table's slot straight to the BundleDeployment, one dependent cache miss
/// fewer than through a shared entry of its own (BENCHMARKS.md, "What the gaps are made
/// of"). Its keys (one per agent scope) each hold a copy.
#[derive(Debug, Clone)]
struct Slot {
    bd: Arc<BundleDeploymentRef>,
    /// Its owner's policy and desiredReady, shared with the owner's other slots.
    owner: Arc<OwnerFacts>,
    /// Its own desiredReady (what leaves the owner's sum when it goes): 32 bits, so that
    /// the slot fits the 8 bytes beside the flags (a BundleDeployment's resources number
    /// far fewer; a larger value counts as `u32::MAX`).
    desired_ready: u32,
    /// It has a deletionTimestamp: its owner was deleted, Fleet's agent uninstalls it.
    deleting: bool,
    /// Index of the agent scope the key was made for.
    scope: u8,
    /// The setID of the key, hashed with [`Maps::id_check`]: a review whose hash label
    /// finds this slot and whose id annotation hashes to this has the setID whose SHA-1
    /// the key is, so its label agrees without a SHA-1 computed per review.
    id_check: u64,
}

/// What a review needs of its owner beside the BundleDeployment: the owner's policy
/// override and its BundleDeployments' desiredReady summed. One per owner, shared by its
/// BundleDeployments' slots, so that a review reads it through its slot — one load —
/// instead of looking the owner up in two more tables (hashing its names and comparing
/// them with the keys': about six dependent cache misses per review). Written only under
/// the index's write lock; atomic only because it is shared.
#[derive(Debug)]
struct OwnerFacts {
    /// The owner, shared by its BundleDeployments (one copy of its names per owner).
    owner: Arc<OwnerRef>,
    /// 0: no override; else [`policy_code`].
    policy: AtomicU8,
    desired_ready: AtomicU64,
}

fn policy_code(policy: Option<Policy>) -> u8 {
    match policy {
        None => 0,
        Some(Policy::Allow) => 1,
        Some(Policy::Warn) => 2,
        Some(Policy::Deny) => 3,
    }
}

impl OwnerFacts {
    fn policy(&self) -> Option<Policy> {
        match self.policy.load(Relaxed) {
            1 => Some(Policy::Allow),
            2 => Some(Policy::Warn),
            3 => Some(Policy::Deny),
            _ => None,
        }
    }

    fn set_policy(&self, policy: Option<Policy>) {
        self.policy.store(policy_code(policy), Relaxed);
    }

    /// `None` when it sums to 0 (no BundleDeployment reports a desiredReady yet).
    fn desired_ready(&self) -> Option<u64> {
        Some(self.desired_ready.load(Relaxed)).filter(|&d| d > 0)
    }
}

/// The keys of the index. What a BundleDeployment costs here is in BENCHMARKS.md
/// ("Memory per cached BundleDeployment"): one key per agent scope, the 20 bytes of the
/// SHA-1 of the setID — what Fleet writes into the hash label — inside the table itself.
/// A setID is looked up by its SHA-1 (one block with the CPU's SHA instructions,
/// cheaper than a second table whose string keys each cost a heap allocation and a
/// cache miss to compare); on removal the keys are computed again from the name.
#[derive(Default)]
struct Maps {
    /// SHA-1 of the setID (= the hash label's bytes) → its BundleDeployment.
    by_hash: Map<[u8; 20], Slot>,
    /// Per owner of an indexed BundleDeployment, its facts (its slots hold them too; an
    /// owner whose last BundleDeployment is removed is removed).
    owners: Map<OwnerRef, Arc<OwnerFacts>>,
    /// Seeded per process (the odds that another id gives a slot's `id_check` are
    /// 2⁻⁶⁴ and cannot be aimed at); a relisting's maps bring their own with their slots.
    id_check: foldhash::quality::RandomState,
}

impl Maps {
    /// Index `bd`; `policy` is its owner's override, when it is a new owner here.
    fn insert(
        &mut self,
        mut bd: BundleDeploymentRef,
        deleting: bool,
        desired_ready: u64,
        scopes: &[String],
        policy: Option<Policy>,
    ) {
        self.remove(&bd.namespace, &bd.name, scopes);
        let owner = self
            .owners
            .entry(OwnerRef::clone(&bd.owner))
            .or_insert_with(|| {
                Arc::new(OwnerFacts {
                    owner: bd.owner.clone(),
                    policy: AtomicU8::new(policy_code(policy)),
                    desired_ready: AtomicU64::new(0),
                })
            })
            .clone();
        bd.owner = owner.owner.clone();
        let desired_ready = u32::try_from(desired_ready).unwrap_or(u32::MAX);
        let sum = owner.desired_ready.load(Relaxed);
        owner
            .desired_ready
            .store(sum.saturating_add(u64::from(desired_ready)), Relaxed);
        let bd = Arc::new(bd);
        for (i, scope) in scopes.iter().enumerate() {
            let set_id = set_id(&bd.name, DEFAULT_LABEL_PREFIX, scope);
            let slot = Slot {
                bd: bd.clone(),
                owner: owner.clone(),
                desired_ready,
                deleting,
                scope: u8::try_from(i).unwrap_or(u8::MAX),
                id_check: self.id_check.hash_one(set_id.as_str()),
            };
            if let Some(displaced) = self.by_hash.insert(object_set_hash_bytes(&set_id), slot) {
                if !Arc::ptr_eq(&displaced.bd, &bd) {
                    self.forget_if_unindexed(displaced, scopes);
                }
            }
        }
    }

    /// `displaced` lost a key to another BundleDeployment (two `fleet-agent*`
    /// BundleDeployments share the bootstrap setID): when none of its keys maps to it
    /// any more it is no longer indexed, so its desiredReady leaves its owner's sum now
    /// (its removal later finds no key and subtracts nothing), and its owner's entry goes
    /// with its last slot.
    fn forget_if_unindexed(&mut self, displaced: Slot, scopes: &[String]) {
        let bd = &displaced.bd;
        let still_indexed = scopes.iter().any(|scope| {
            let hash = object_set_hash_bytes(&set_id(&bd.name, DEFAULT_LABEL_PREFIX, scope));
            self.by_hash
                .get(&hash)
                .is_some_and(|s| Arc::ptr_eq(&s.bd, bd))
        });
        if !still_indexed {
            self.release(displaced);
        }
    }

    /// A BundleDeployment's last slot is gone: its desiredReady leaves its owner's sum,
    /// and the owner's entry goes when no other slot holds it.
    fn release(&mut self, gone: Slot) {
        let sum = gone.owner.desired_ready.load(Relaxed);
        gone.owner
            .desired_ready
            .store(sum.saturating_sub(u64::from(gone.desired_ready)), Relaxed);
        let Slot { bd, owner, .. } = gone;
        // Only the owners table holds it now: its last BundleDeployment is gone.
        if Arc::strong_count(&owner) == 2 {
            self.owners.remove(bd.owner.as_ref());
        }
    }

    /// Remove BundleDeployment `namespace/name`: the keys its name makes that still
    /// map to it (another one may have taken a key since, e.g. two `fleet-agent*`
    /// BundleDeployments share the bootstrap setID).
    fn remove(&mut self, namespace: &str, name: &str, scopes: &[String]) {
        let is_it = |s: &Slot| s.bd.name == name && s.bd.namespace == namespace;
        let mut removed: Option<Slot> = None;
        for scope in scopes {
            let hash = object_set_hash_bytes(&set_id(name, DEFAULT_LABEL_PREFIX, scope));
            if self.by_hash.get(&hash).is_some_and(is_it) {
                removed = self.by_hash.remove(&hash).or(removed);
            }
        }
        if let Some(gone) = removed {
            self.release(gone);
        }
    }

    /// `owner`'s policy override changed.
    fn set_policy(&self, owner: &OwnerRef, policy: Option<Policy>) {
        if let Some(facts) = self.owners.get(owner) {
            facts.set_policy(policy);
        }
    }

    /// The policies of every owner of `kind` are now those of `policies`.
    fn set_policies(&self, kind: OwnerKind, policies: &Map<OwnerRef, Policy>) {
        for (owner, facts) in self.owners.iter().filter(|(o, _)| o.kind == kind) {
            facts.set_policy(policies.get(owner).copied());
        }
    }

    /// BundleDeployments that resolve (by their first scope's setID).
    fn len(&self) -> usize {
        self.by_hash.values().filter(|slot| slot.scope == 0).count()
    }

    /// The entry of a setID annotation (by its SHA-1, the key).
    fn by_set_id(&self, id: &str) -> Option<&Slot> {
        self.by_hash.get(&object_set_hash_bytes(id))
    }

    /// The entry of a hash label (only a label Fleet could have written: 40 hex digits).
    fn by_hash(&self, label: &str) -> Option<&Slot> {
        parse_object_set_hash(label).and_then(|h| self.by_hash.get(&h))
    }

    /// The entry of a setID annotation and whether the hash label agrees with it (is
    /// the setID's SHA-1). The label is tried first: when its entry's setID is `id`,
    /// both are answered without hashing `id` with SHA-1 (the case of every object
    /// Fleet's agent applied).
    fn by_set_id_and_label(&self, id: &str, label: Option<&str>) -> (Option<&Slot>, bool) {
        let label = label.map(parse_object_set_hash);
        if let Some(slot) = label
            .flatten()
            .and_then(|h| self.by_hash.get(&h))
            .filter(|slot| slot.id_check == self.id_check.hash_one(id))
        {
            return (Some(slot), true);
        }
        let id_hash = object_set_hash_bytes(id);
        let agrees = label.is_none_or(|h| h == Some(id_hash));
        (self.by_hash.get(&id_hash), agrees)
    }
}

#[derive(Default)]
struct State {
    live: Maps,
    /// Filled during a re-list, swapped in at `InitDone`.
    relisting: Option<Maps>,
    policies: Map<OwnerRef, Policy>,
    relisting_policies: Option<Map<OwnerRef, Policy>>,
}

impl State {
    /// `owner`'s policy override is `policy` (the owners' watch said so).
    fn set_policy(&mut self, owner: OwnerRef, policy: Option<Policy>) {
        self.live.set_policy(&owner, policy);
        if let Some(maps) = &self.relisting {
            maps.set_policy(&owner, policy);
        }
        match policy {
            Some(p) => self.policies.insert(owner, p),
            None => self.policies.remove(&owner),
        };
    }
}

/// Which watch streams have delivered their first complete list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Synced {
    pub bundle_deployments: bool,
    /// GitRepos and HelmOps (the owners a policy annotation can be on).
    pub gitrepos: bool,
    pub helmops: bool,
}

/// setID/hash → owner, fed by the watch streams. Cheap to share (`Arc`).
pub struct OwnerIndex {
    scopes: Vec<String>,
    state: RwLock<State>,
    synced: watch::Sender<Synced>,
}

impl OwnerIndex {
    pub fn new(scopes: Vec<String>) -> Self {
        OwnerIndex {
            scopes,
            state: RwLock::new(State::default()),
            synced: watch::Sender::new(Synced::default()),
        }
    }

    /// Wait until the BundleDeployments (and, with `gitrepos`, the GitRepos and HelmOps) have been
    /// listed once. The index is the only cache: there is no separate reflector store.
    pub async fn wait_synced(&self, gitrepos: bool) {
        let mut rx = self.synced.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we borrow it.
        let _ = rx
            .wait_for(|s| s.bundle_deployments && ((s.gitrepos && s.helmops) || !gitrepos))
            .await;
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Apply one BundleDeployment watch event.
    pub fn apply_bundle_deployment_event<K: BundleDeploymentObject + DesiredReady>(
        &self,
        event: &Event<K>,
    ) {
        let mut state = self.write();
        match event {
            Event::Init => state.relisting = Some(Maps::default()),
            Event::InitApply(bd) => {
                if let Some(owner) = BundleDeploymentRef::from_object(bd) {
                    let state = &mut *state;
                    let policy = state.policies.get(&owner.owner).copied();
                    state.relisting.get_or_insert_with(Maps::default).insert(
                        owner,
                        bd.meta().deletion_timestamp.is_some(),
                        bd.desired_ready().unwrap_or(0),
                        &self.scopes,
                        policy,
                    );
                }
            }
            Event::InitDone => {
                if let Some(fresh) = state.relisting.take() {
                    state.live = fresh;
                }
                self.synced
                    .send_if_modified(|s| !std::mem::replace(&mut s.bundle_deployments, true));
            }
            Event::Apply(bd) => {
                if let Some(owner) = BundleDeploymentRef::from_object(bd) {
                    let state = &mut *state;
                    let policy = state.policies.get(&owner.owner).copied();
                    state.live.insert(
                        owner,
                        bd.meta().deletion_timestamp.is_some(),
                        bd.desired_ready().unwrap_or(0),
                        &self.scopes,
                        policy,
                    );
                }
            }
            Event::Delete(bd) => {
                let namespace = bd.meta().namespace.as_deref().unwrap_or_default();
                state.live.remove(namespace, &bd.name_any(), &self.scopes);
            }
        }
    }

    /// Apply one GitRepo watch event (only the policy annotation matters).
    pub fn apply_gitrepo_event<K: Resource>(&self, event: &Event<K>) {
        self.apply_owner_event(OwnerKind::GitRepo, event)
    }

    /// Apply one watch event of GitRepos or HelmOps (only the policy annotation matters).
    pub fn apply_owner_event<K: Resource>(&self, kind: OwnerKind, event: &Event<K>) {
        let mut state = self.write();
        match event {
            Event::Init => state.relisting_policies = Some(Map::default()),
            Event::InitApply(owner) => {
                if let Some((key, Some(policy))) = owner_policy(kind, owner) {
                    state
                        .relisting_policies
                        .get_or_insert_with(Map::default)
                        .insert(key, policy);
                }
            }
            Event::InitDone => {
                if let Some(fresh) = state.relisting_policies.take() {
                    state.policies.retain(|k, _| k.kind != kind);
                    state
                        .policies
                        .extend(fresh.into_iter().filter(|(k, _)| k.kind == kind));
                    state.live.set_policies(kind, &state.policies);
                    if let Some(maps) = &state.relisting {
                        maps.set_policies(kind, &state.policies);
                    }
                }
                self.mark_owners_synced(kind);
            }
            Event::Apply(owner) => {
                if let Some((key, policy)) = owner_policy(kind, owner) {
                    state.set_policy(key, policy);
                }
            }
            Event::Delete(owner) => {
                if let Some((key, _)) = owner_policy(kind, owner) {
                    state.set_policy(key, None);
                }
            }
        }
    }

    /// This kind of owner has been listed once, or cannot be (a Fleet without HelmOps):
    /// readiness does not wait for it.
    pub fn mark_owners_synced(&self, kind: OwnerKind) {
        self.synced.send_if_modified(|s| {
            let flag = match kind {
                OwnerKind::GitRepo => &mut s.gitrepos,
                OwnerKind::HelmOp => &mut s.helmops,
                OwnerKind::Bundle => return false,
            };
            !std::mem::replace(flag, true)
        });
    }

    /// The owning BundleDeployment of an object, by setID, else by hash label.
    pub fn bundle_deployment(
        &self,
        set_id: Option<&str>,
        hash: Option<&str>,
    ) -> Option<Arc<BundleDeploymentRef>> {
        let state = self.read();
        set_id
            .and_then(|id| state.live.by_set_id(id))
            .or_else(|| hash.and_then(|h| state.live.by_hash(h)))
            .map(|slot| slot.bd.clone())
    }

    /// Number of BundleDeployments indexed (counted, not stored: called at sync only).
    pub fn len(&self) -> usize {
        self.read().live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `(owner, policy)` of a GitRepo or HelmOp; a bad annotation value is logged and ignored.
fn owner_policy<K: Resource>(kind: OwnerKind, object: &K) -> Option<(OwnerRef, Option<Policy>)> {
    let key = OwnerRef::new(
        kind,
        object.meta().namespace.as_deref()?,
        object.meta().name.as_deref()?,
    );
    let policy = object.annotations().get(POLICY_ANNOTATION).and_then(|v| {
        v.parse::<Policy>()
            .map_err(|e| {
                tracing::warn!(owner = %key, annotation = POLICY_ANNOTATION, error = %e, "ignoring the policy override")
            })
            .ok()
    });
    Some((key, policy))
}

impl OwnerResolver for OwnerIndex {
    /// On the admission path: one read lock for the BundleDeployment and the policy.
    /// Only the id annotation resolves: a hash label alone is what kube-controller-manager
    /// copies from a Service onto its Endpoints.
    fn resolve(&self, object: &ObjectFacts) -> Owner {
        let mut owner = Owner::from_object(object);
        let Some(id) = object.objectset_id.as_deref() else {
            return owner;
        };
        let state = self.read();
        let (slot, hash_agrees) = state
            .live
            .by_set_id_and_label(id, object.objectset_hash.as_deref());
        if let Some(slot) = slot {
            // The hash label agrees with the id when it is the id's SHA-1: the same key,
            // so the same entry and scope.
            owner.hash_agrees = Some(hash_agrees);
            let bd = &slot.bd;
            owner.bundle = Some(bd.bundle.clone());
            owner.policy = slot.owner.policy();
            owner.desired_ready = slot.owner.desired_ready();
            owner.bundle_deleting = slot.deleting;
            owner.owned_by = Some(bd.owner.clone());
            owner.unmonitored = bd.unmonitored;
        }
        owner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::object_set_hash;

    fn bd(name: &str, repo: Option<&str>) -> DynamicObject {
        let mut labels = serde_json::json!({
            "fleet.cattle.io/bundle-name": name,
            "fleet.cattle.io/cluster": "local",
            "fleet.cattle.io/cluster-namespace": "fleet-local",
        });
        if let Some(repo) = repo {
            labels["fleet.cattle.io/repo-name"] = repo.into();
            labels["fleet.cattle.io/bundle-namespace"] = "fleet-local".into();
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "fleet.cattle.io/v1alpha1", "kind": "BundleDeployment",
            "metadata": {"name": name, "namespace": "cluster-fleet-local-local-1a3d67d0a899", "labels": labels}
        }))
        .expect("bd")
    }

    fn repo(name: &str, policy: Option<&str>) -> DynamicObject {
        let mut meta = serde_json::json!({"name": name, "namespace": "fleet-local"});
        if let Some(p) = policy {
            meta["annotations"] = serde_json::json!({ POLICY_ANNOTATION: p });
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "fleet.cattle.io/v1alpha1", "kind": "GitRepo", "metadata": meta
        }))
        .expect("repo")
    }

    fn index() -> OwnerIndex {
        OwnerIndex::new(DEFAULT_AGENT_SCOPES.iter().map(|s| s.to_string()).collect())
    }

    fn object(id: Option<&str>, hash: Option<&str>) -> ObjectFacts {
        ObjectFacts {
            kind: "configmap".into(),
            namespace: "default".into(),
            name: "x".into(),
            objectset_id: id.map(str::to_string),
            objectset_hash: hash.map(str::to_string),
            terminating: false,
        }
    }

    #[test]
    fn resolves_by_set_id_and_by_hash_for_both_scopes() {
        let idx = index();
        idx.apply_bundle_deployment_event(&Event::Apply(bd("lots-config2", Some("lots"))));
        let by_id = idx.resolve(&object(Some("default-lots-config2"), None));
        assert_eq!(
            by_id.owned_by.as_ref().map(ToString::to_string).as_deref(),
            Some("GitRepo fleet-local/lots")
        );
        assert_eq!(by_id.bundle.as_deref(), Some("lots-config2"));
        // A hash label alone (an Endpoints copy of a Service's labels) does not resolve.
        let by_hash = idx.resolve(&object(
            None,
            Some("37517d22b0ca4dbc462436d47410a3bdfce3c6f9"),
        ));
        assert_eq!(by_hash.owned_by, None);
        let rancher = idx.resolve(&object(
            Some("default-lots-config2-cattle-fleet-local-system"),
            None,
        ));
        assert_eq!(rancher.bundle.as_deref(), Some("lots-config2"));
        let unknown = idx.resolve(&object(Some("default-elsewhere"), None));
        assert_eq!(unknown.owned_by, None);
        assert_eq!(unknown.set_id.as_deref(), Some("default-elsewhere"));
    }

    #[test]
    fn delete_and_relist_replace_the_index() {
        let idx = index();
        idx.apply_bundle_deployment_event(&Event::Apply(bd("a", Some("r"))));
        idx.apply_bundle_deployment_event(&Event::Delete(bd("a", Some("r"))));
        assert!(idx.is_empty());
        idx.apply_bundle_deployment_event(&Event::Apply(bd("stale", Some("r"))));
        idx.apply_bundle_deployment_event(&Event::<DynamicObject>::Init);
        idx.apply_bundle_deployment_event(&Event::InitApply(bd("b", None)));
        assert!(
            idx.bundle_deployment(Some("default-stale"), None).is_some(),
            "old view served during relist"
        );
        idx.apply_bundle_deployment_event(&Event::<DynamicObject>::InitDone);
        assert!(idx.bundle_deployment(Some("default-stale"), None).is_none());
        let b = idx.bundle_deployment(Some("default-b"), None).expect("b");
        assert_eq!(
            b.owner.kind,
            OwnerKind::Bundle,
            "no repo-name label, no GitRepo"
        );
    }

    #[test]
    fn desired_ready_is_summed_per_owner_and_a_deleting_bundle_is_told() {
        let with = |name: &str, desired: u64, deleting: bool| {
            let mut o = bd(name, Some("lots"));
            o.data["status"] =
                serde_json::json!({"resourceCounts": {"ready": 1, "desiredReady": desired}});
            if deleting {
                o.metadata.deletion_timestamp =
                    Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                    ));
            }
            o
        };
        let idx = index();
        idx.apply_bundle_deployment_event(&Event::Apply(with("lots-config1", 4, false)));
        idx.apply_bundle_deployment_event(&Event::Apply(with("lots-config2", 4, false)));
        idx.apply_bundle_deployment_event(&Event::Apply(with("lots-config3", 3, true)));
        idx.apply_bundle_deployment_event(&Event::Apply(bd("other", Some("other"))));
        let o = idx.resolve(&object(Some("default-lots-config2"), None));
        assert_eq!(o.desired_ready, Some(11));
        assert!(!o.bundle_deleting);
        assert!(
            idx.resolve(&object(Some("default-lots-config3"), None))
                .bundle_deleting
        );
        // An update replaces the BundleDeployment's share, a delete removes it.
        idx.apply_bundle_deployment_event(&Event::Apply(with("lots-config2", 2, false)));
        let o = idx.resolve(&object(Some("default-lots-config1"), None));
        assert_eq!(o.desired_ready, Some(9));
        idx.apply_bundle_deployment_event(&Event::Delete(with("lots-config1", 4, false)));
        let o = idx.resolve(&object(Some("default-lots-config2"), None));
        assert_eq!(o.desired_ready, Some(5));
        // No status counts: zero.
        assert_eq!(
            idx.resolve(&object(Some("default-other"), None))
                .desired_ready,
            None
        );
    }

    #[test]
    fn a_bundle_deployment_that_loses_its_keys_leaves_its_owners_sum_and_table() {
        let counted = |name: &str, repo: &str, desired: u64| {
            let mut o = bd(name, Some(repo));
            o.data["status"] = serde_json::json!({"resourceCounts": {"desiredReady": desired}});
            o
        };
        let desired_of =
            |idx: &OwnerIndex, id: &str| idx.resolve(&object(Some(id), None)).desired_ready;
        let owners_of = |idx: &OwnerIndex| {
            let mut names: Vec<String> = idx
                .read()
                .live
                .owners
                .keys()
                .map(|o| o.name.clone())
                .collect();
            names.sort();
            names
        };
        let idx = index();
        idx.apply_bundle_deployment_event(&Event::Apply(counted("fleet-agent-local", "lots", 3)));
        idx.apply_bundle_deployment_event(&Event::Apply(counted("lots-config1", "lots", 4)));
        assert_eq!(desired_of(&idx, "default-lots-config1"), Some(7));
        // Another agent BundleDeployment takes the bootstrap setID on every scope: the
        // first is no longer indexed, so its 3 leave its owner's sum.
        idx.apply_bundle_deployment_event(&Event::Apply(counted("fleet-agent-c1", "other", 5)));
        assert_eq!(desired_of(&idx, "default-lots-config1"), Some(4));
        assert_eq!(desired_of(&idx, "fleet-agent-bootstrap"), Some(5));
        // Its deletion later finds no key and subtracts nothing more.
        idx.apply_bundle_deployment_event(&Event::Delete(counted("fleet-agent-local", "lots", 3)));
        assert_eq!(desired_of(&idx, "default-lots-config1"), Some(4));
        assert_eq!(owners_of(&idx), ["lots", "other"]);
        // Back under another owner, it takes the keys again: the displaced one's owner,
        // left without a slot, leaves the owners table.
        idx.apply_bundle_deployment_event(&Event::Apply(counted("fleet-agent-local", "solo", 2)));
        assert_eq!(
            desired_of(&idx, "fleet-agent-bootstrap-cattle-fleet-local-system"),
            Some(2)
        );
        assert_eq!(owners_of(&idx), ["lots", "solo"]);
        assert_eq!(idx.len(), 2);
        // A key taken on one scope only ("lots-config1" in Rancher's scope is the setID of
        // "lots-config1-cattle-fleet-local-system" standalone) leaves the first indexed by
        // its other key, and counted.
        let long = "lots-config1-cattle-fleet-local-system";
        idx.apply_bundle_deployment_event(&Event::Apply(counted(long, "other", 5)));
        assert_eq!(desired_of(&idx, "default-lots-config1"), Some(4));
        assert_eq!(desired_of(&idx, &format!("default-{long}")), Some(5));
        assert_eq!(owners_of(&idx), ["lots", "other", "solo"]);
        // Deleted, it gives its one remaining key and its share back.
        idx.apply_bundle_deployment_event(&Event::Delete(counted("lots-config1", "lots", 4)));
        assert_eq!(desired_of(&idx, "default-lots-config1"), None);
        assert_eq!(owners_of(&idx), ["other", "solo"]);
    }

    #[test]
    fn keys_are_computed_again_on_removal_and_a_shared_key_stays_with_its_holder() {
        let idx = index();
        for name in [
            "lots-config1",
            "lots-config2",
            "fleet-agent-local",
            "fleet-agent-c1",
        ] {
            idx.apply_bundle_deployment_event(&Event::Apply(bd(name, Some("lots"))));
        }
        // The two agent BundleDeployments share the bootstrap setID: the later holds it.
        assert_eq!(idx.len(), 3);
        let agent = idx.bundle_deployment(Some("fleet-agent-bootstrap"), None);
        assert_eq!(
            agent.map(|b| b.name.clone()).as_deref(),
            Some("fleet-agent-c1")
        );
        // Removing the one that lost the key leaves the holder's keys alone.
        idx.apply_bundle_deployment_event(&Event::Delete(bd("fleet-agent-local", Some("lots"))));
        assert!(idx
            .bundle_deployment(Some("fleet-agent-bootstrap"), None)
            .is_some());
        // A re-applied BundleDeployment keeps one entry; a deleted one leaves no key.
        idx.apply_bundle_deployment_event(&Event::Apply(bd("lots-config1", Some("lots"))));
        assert_eq!(idx.len(), 3);
        idx.apply_bundle_deployment_event(&Event::Delete(bd("lots-config1", Some("lots"))));
        assert_eq!(idx.len(), 2);
        let hash = object_set_hash("default-lots-config1");
        assert!(idx
            .bundle_deployment(Some("default-lots-config1"), None)
            .is_none());
        assert!(idx.bundle_deployment(None, Some(&hash)).is_none());
        let scoped = object_set_hash("default-lots-config1-cattle-fleet-local-system");
        assert!(idx.bundle_deployment(None, Some(&scoped)).is_none());
        // The other keeps both kinds of key, for both scopes.
        let hash2 = object_set_hash("default-lots-config2-cattle-fleet-local-system");
        assert!(idx.bundle_deployment(None, Some(&hash2)).is_some());
        // Only Fleet's own spelling of a hash resolves.
        let upper = object_set_hash("default-lots-config2").to_uppercase();
        assert!(idx.bundle_deployment(None, Some(&upper)).is_none());
    }

    #[tokio::test]
    async fn synced_once_each_watch_has_listed() {
        let idx = Arc::new(index());
        let wait_both = tokio::spawn({
            let idx = idx.clone();
            async move { idx.wait_synced(true).await }
        });
        idx.apply_bundle_deployment_event(&Event::<DynamicObject>::Init);
        idx.apply_bundle_deployment_event(&Event::InitApply(bd("a", Some("r"))));
        idx.apply_bundle_deployment_event(&Event::<DynamicObject>::InitDone);
        // BundleDeployments alone are enough when GitRepos are not watched.
        idx.wait_synced(false).await;
        assert!(!wait_both.is_finished(), "GitRepos have not listed yet");
        idx.apply_gitrepo_event(&Event::<DynamicObject>::Init);
        idx.apply_gitrepo_event(&Event::<DynamicObject>::InitDone);
        tokio::task::yield_now().await;
        assert!(!wait_both.is_finished(), "HelmOps have not listed yet");
        idx.mark_owners_synced(OwnerKind::HelmOp);
        wait_both.await.expect("synced");
        assert_eq!(idx.len(), 1);
        // A later re-list keeps the index synced (no flapping readiness).
        idx.apply_bundle_deployment_event(&Event::<DynamicObject>::Init);
        idx.wait_synced(true).await;
    }

    #[test]
    fn gitrepo_annotation_overrides_policy_and_bad_values_are_ignored() {
        let idx = index();
        idx.apply_bundle_deployment_event(&Event::Apply(bd("lots-config2", Some("lots"))));
        idx.apply_gitrepo_event(&Event::Apply(repo("lots", Some("deny"))));
        assert_eq!(
            idx.resolve(&object(Some("default-lots-config2"), None))
                .policy,
            Some(Policy::Deny)
        );
        idx.apply_gitrepo_event(&Event::Apply(repo("lots", Some("bogus"))));
        assert_eq!(
            idx.resolve(&object(Some("default-lots-config2"), None))
                .policy,
            None
        );
        idx.apply_gitrepo_event(&Event::Apply(repo("lots", Some("allow"))));
        idx.apply_gitrepo_event(&Event::Delete(repo("lots", None)));
        assert_eq!(
            idx.resolve(&object(Some("default-lots-config2"), None))
                .policy,
            None
        );
    }

    /// A slot is 32 bytes (two pointers, the setID check, desiredReady and the flags):
    /// with its 20-byte key, 56 bytes per agent scope and BundleDeployment in the table.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn an_owner_is_kept_once_and_a_review_shares_it() {
        let idx = index();
        idx.apply_bundle_deployment_event(&Event::Apply(bd("lots-config1", Some("lots"))));
        idx.apply_bundle_deployment_event(&Event::Apply(bd("lots-config2", Some("lots"))));
        let one = idx.resolve(&object(Some("default-lots-config1"), None));
        let two = idx.resolve(&object(Some("default-lots-config2"), None));
        let (Some(a), Some(b)) = (&one.owned_by, &two.owned_by) else {
            panic!("both resolve");
        };
        assert!(
            Arc::ptr_eq(a, b),
            "one copy of the owner for its BundleDeployments"
        );
        // The review's owner and bundle are the index's, not copies.
        let held = idx
            .bundle_deployment(Some("default-lots-config1"), None)
            .expect("indexed");
        assert!(Arc::ptr_eq(a, &held.owner));
        assert!(Arc::ptr_eq(
            one.bundle.as_ref().expect("bundle"),
            &held.bundle
        ));
        // Gone and back, the owner is a fresh entry, shared again.
        idx.apply_bundle_deployment_event(&Event::Delete(bd("lots-config1", Some("lots"))));
        idx.apply_bundle_deployment_event(&Event::Delete(bd("lots-config2", Some("lots"))));
        idx.apply_bundle_deployment_event(&Event::Apply(bd("lots-config1", Some("lots"))));
        let again = idx.resolve(&object(Some("default-lots-config1"), None));
        assert_eq!(again.owned_by.as_deref(), Some(&**a));
    }

    #[test]
    fn a_slot_stays_32_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        assert_eq!(std::mem::size_of::<([u8; 20], Slot)>(), 56);
    }

    /// The owner's policy reaches its BundleDeployments however the two arrive: a
    /// BundleDeployment indexed after its GitRepo, a re-list of the GitRepos, a re-list of
    /// the BundleDeployments, and an owner whose last BundleDeployment went and came back.
    #[test]
    fn policies_reach_bundle_deployments_in_any_order_and_through_relists() {
        let idx = index();
        let policy = |idx: &OwnerIndex, id: &str| idx.resolve(&object(Some(id), None)).policy;
        idx.apply_gitrepo_event(&Event::Apply(repo("lots", Some("deny"))));
        idx.apply_bundle_deployment_event(&Event::Apply(bd("lots-config1", Some("lots"))));
        assert_eq!(policy(&idx, "default-lots-config1"), Some(Policy::Deny));

        // GitRepos re-listed: the override is now `allow`; another GitRepo has none.
        idx.apply_bundle_deployment_event(&Event::Apply(bd("other-a", Some("other"))));
        idx.apply_gitrepo_event(&Event::<DynamicObject>::Init);
        idx.apply_gitrepo_event(&Event::InitApply(repo("lots", Some("allow"))));
        idx.apply_gitrepo_event(&Event::InitApply(repo("other", None)));
        idx.apply_gitrepo_event(&Event::<DynamicObject>::InitDone);
        assert_eq!(policy(&idx, "default-lots-config1"), Some(Policy::Allow));
        assert_eq!(policy(&idx, "default-other-a"), None);

        // BundleDeployments re-listed, with a policy change while the re-list runs.
        idx.apply_bundle_deployment_event(&Event::<DynamicObject>::Init);
        idx.apply_bundle_deployment_event(&Event::InitApply(bd("lots-config1", Some("lots"))));
        idx.apply_gitrepo_event(&Event::Apply(repo("lots", Some("warn"))));
        idx.apply_bundle_deployment_event(&Event::InitApply(bd("lots-config2", Some("lots"))));
        idx.apply_bundle_deployment_event(&Event::<DynamicObject>::InitDone);
        assert_eq!(policy(&idx, "default-lots-config1"), Some(Policy::Warn));
        assert_eq!(policy(&idx, "default-lots-config2"), Some(Policy::Warn));
        // `other-a` was not in the re-list: gone.
        assert_eq!(
            idx.resolve(&object(Some("default-other-a"), None)).bundle,
            None
        );

        // A GitRepo re-list that ends while the BundleDeployments re-list.
        idx.apply_bundle_deployment_event(&Event::<DynamicObject>::Init);
        idx.apply_bundle_deployment_event(&Event::InitApply(bd("lots-config1", Some("lots"))));
        idx.apply_gitrepo_event(&Event::<DynamicObject>::Init);
        idx.apply_gitrepo_event(&Event::InitApply(repo("lots", Some("allow"))));
        idx.apply_gitrepo_event(&Event::<DynamicObject>::InitDone);
        idx.apply_bundle_deployment_event(&Event::InitApply(bd("lots-config2", Some("lots"))));
        idx.apply_bundle_deployment_event(&Event::<DynamicObject>::InitDone);
        assert_eq!(policy(&idx, "default-lots-config1"), Some(Policy::Allow));
        assert_eq!(policy(&idx, "default-lots-config2"), Some(Policy::Allow));

        // The owner's last BundleDeployment goes; the policy changes; it comes back.
        idx.apply_bundle_deployment_event(&Event::Delete(bd("lots-config1", Some("lots"))));
        idx.apply_bundle_deployment_event(&Event::Delete(bd("lots-config2", Some("lots"))));
        idx.apply_gitrepo_event(&Event::Apply(repo("lots", Some("deny"))));
        idx.apply_bundle_deployment_event(&Event::Apply(bd("lots-config2", Some("lots"))));
        assert_eq!(policy(&idx, "default-lots-config2"), Some(Policy::Deny));
        idx.apply_gitrepo_event(&Event::Delete(repo("lots", None)));
        assert_eq!(policy(&idx, "default-lots-config2"), None);
    }

    #[test]
    fn helmop_owners_resolve_and_carry_their_policy() {
        let idx = index();
        let bd: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "fleet.cattle.io/v1alpha1", "kind": "BundleDeployment",
            "metadata": {"name": "redis", "namespace": "cluster-fleet-local-local-1a3d67d0a899", "labels": {
                "fleet.cattle.io/bundle-name": "redis",
                "fleet.cattle.io/bundle-namespace": "fleet-default",
                "fleet.cattle.io/fleet-helm-name": "redis",
            }}
        }))
        .expect("bd");
        idx.apply_bundle_deployment_event(&Event::Apply(bd));
        let op: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "fleet.cattle.io/v1alpha1", "kind": "HelmOp",
            "metadata": {"name": "redis", "namespace": "fleet-default",
                "annotations": {POLICY_ANNOTATION: "deny"}}
        }))
        .expect("helmop");
        idx.apply_owner_event(OwnerKind::HelmOp, &Event::Apply(op.clone()));
        // A GitRepo of the same name is another owner.
        idx.apply_gitrepo_event(&Event::Apply(repo("redis", Some("allow"))));
        let owner = idx.resolve(&object(Some("default-redis"), None));
        assert_eq!(
            owner.owned_by.as_ref().map(ToString::to_string).as_deref(),
            Some("HelmOp fleet-default/redis")
        );
        assert_eq!(owner.policy, Some(Policy::Deny));
        idx.apply_owner_event(OwnerKind::HelmOp, &Event::Delete(op));
        assert_eq!(
            idx.resolve(&object(Some("default-redis"), None)).policy,
            None
        );
    }

    #[test]
    fn the_index_says_whether_the_hash_label_belongs_to_the_id() {
        let idx = index();
        idx.apply_bundle_deployment_event(&Event::Apply(bd("lots-config2", Some("lots"))));
        idx.apply_bundle_deployment_event(&Event::Apply(bd("lots-config1", Some("lots"))));
        let id = "default-lots-config2";
        let agrees = idx.resolve(&object(Some(id), Some(&object_set_hash(id))));
        assert_eq!(agrees.hash_agrees, Some(true));
        // Another bundle's hash, or the same bundle's hash for another agent scope.
        let other = idx.resolve(&object(
            Some(id),
            Some(&object_set_hash("default-lots-config1")),
        ));
        assert_eq!(other.hash_agrees, Some(false));
        // The id decides the entry, whatever entry the label points at.
        assert_eq!(other.bundle.as_deref(), Some("lots-config2"));
        assert_eq!(agrees.bundle.as_deref(), Some("lots-config2"));
        // A label Fleet could not have written: upper-case, short, not hex.
        for label in [
            object_set_hash(id).to_uppercase(),
            object_set_hash(id)[..39].to_string(),
            "x".repeat(40),
        ] {
            let o = idx.resolve(&object(Some(id), Some(&label)));
            assert_eq!(o.hash_agrees, Some(false), "{label}");
            assert_eq!(o.bundle.as_deref(), Some("lots-config2"), "{label}");
        }
        let scope = object_set_hash("default-lots-config2-cattle-fleet-local-system");
        assert_eq!(
            idx.resolve(&object(Some(id), Some(&scope))).hash_agrees,
            Some(false)
        );
        assert_eq!(idx.resolve(&object(Some(id), None)).hash_agrees, Some(true));
        assert_eq!(
            idx.resolve(&object(Some("default-elsewhere"), None))
                .hash_agrees,
            None
        );
    }
}
