//! The pure verdict on one admission review: no I/O, no clock, no global state.
//!
//! [`decide`] takes the facts of a review ([`Review`]), what is known of the object's
//! Fleet owner ([`Owner`]) and the configuration, and returns a [`Verdict`]: allowed or
//! not, the warnings kubectl prints, the audit annotations, and whether the deletion is
//! to be counted in its owner's status.

use std::{fmt, sync::Arc};

use crate::fleet::recognize::{outside_agent_bundle, provenance_known, Provenance};
use crate::fleet::{OwnerKind, OwnerRef};
use crate::policy::{matches_identity, DecisionConfig, Policy};

/// kube-apiserver recommends warnings of at most 120 characters.
pub const MAX_WARNING_CHARS: usize = 120;
/// At most this many warnings per response: kubectl prints each on its own line.
pub const MAX_WARNINGS: usize = 3;

/// The admission operation, as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// The deleted object's metadata that matters to the decision (`oldObject` on DELETE).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectFacts {
    /// Lower-case kind as kubectl names it, e.g. `configmap`.
    pub kind: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    /// From `oldObject.metadata.name`: DELETECOLLECTION reviews carry an empty request name.
    pub name: String,
    /// Fleet's `objectset.rio.cattle.io/hash` label.
    pub objectset_hash: Option<String>,
    /// Fleet's `objectset.rio.cattle.io/id` annotation (the setID).
    pub objectset_id: Option<String>,
    /// `metadata.deletionTimestamp` is set: finalizers are pending, this is a repeat.
    pub terminating: bool,
}

impl ObjectFacts {
    /// Carries any objectset metadata (Fleet's agent's, or another writer's).
    pub fn has_objectset_metadata(&self) -> bool {
        self.objectset_hash.is_some() || self.objectset_id.is_some()
    }

    /// `namespace/name`, or `name` for cluster-scoped objects.
    pub fn display_name(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

/// The facts of one review, taken from the AdmissionRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub operation: Operation,
    pub dry_run: bool,
    pub username: String,
    pub groups: Vec<String>,
    /// `None` when the review carries no `oldObject` (never for DELETE since Kubernetes 1.15).
    pub object: Option<ObjectFacts>,
}

/// What is known of the Fleet owner of the object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    /// The setID from the object's annotation, when present.
    pub set_id: Option<String>,
    /// The GitRepo, HelmOp or Bundle behind the object's BundleDeployment, once the
    /// owner index resolved the setID.
    pub owned_by: Option<Arc<OwnerRef>>,
    /// Name of the owning Bundle (equal to the BundleDeployment name), once resolved.
    /// Both shared with the owner index's entry: resolving copies no name.
    pub bundle: Option<Arc<str>>,
    /// A per-GitRepo/HelmOp override of the cluster-wide policy.
    pub policy: Option<Policy>,
    /// Whether the object's hash label is sha1 of its id, when the owner index already
    /// knows (it resolved the id); `None`: computed by [`decide`].
    pub hash_agrees: Option<bool>,
    /// Fleet's agent does not monitor the bundle now (`paused`, `off schedule`,
    /// `waiting for values`): the deletion is warned about but not counted.
    pub unmonitored: Option<&'static str>,
    /// The owner's `desiredReady` on this cluster: its BundleDeployments'
    /// `status.resourceCounts.desiredReady` summed (the breaker's fraction rule).
    pub desired_ready: Option<u64>,
    /// The object's BundleDeployment is being deleted (its owner was deleted): Fleet's
    /// agent uninstalling it is meant.
    pub bundle_deleting: bool,
}

impl Owner {
    /// The owner only from what the object itself says.
    pub fn from_object(object: &ObjectFacts) -> Self {
        Owner {
            set_id: object.objectset_id.clone(),
            ..Owner::default()
        }
    }

    /// Short human description: `Fleet GitRepo ns/name (bundle b)`, `Fleet HelmOp ns/name
    /// (bundle b)`, `Fleet Bundle ns/mcc-x (ManagedChart ns/x)` or `Fleet (objectset <id>)`.
    pub fn describe(&self) -> String {
        match (&self.owned_by, &self.bundle) {
            (Some(o), _) if o.kind == OwnerKind::Bundle => match o.managed_chart() {
                Some(chart) => format!("Fleet {o} (ManagedChart {chart})"),
                None => format!("Fleet {o}"),
            },
            (Some(o), Some(bundle)) => format!("Fleet {o} (bundle {bundle})"),
            (Some(o), None) => format!("Fleet {o}"),
            (None, Some(bundle)) => format!("Fleet bundle {bundle}"),
            (None, None) => match &self.set_id {
                Some(id) => format!("Fleet (objectset {id})"),
                None => "Fleet".to_string(),
            },
        }
    }

    /// [`Self::describe`] without the parenthesis: `Fleet GitRepo ns/name`.
    pub fn describe_short(&self) -> String {
        match (&self.owned_by, &self.bundle) {
            (Some(o), _) => format!("Fleet {o}"),
            (None, Some(bundle)) => format!("Fleet bundle {bundle}"),
            (None, None) => self.describe(),
        }
    }

    /// Whose status Fleet will show it Missing in: `GitRepo status`, `HelmOp status`,
    /// `status of ManagedChart ns/x's Bundle` or `Bundle status`; `GitRepo status` when
    /// the owner is not resolved.
    pub fn status_name(&self) -> String {
        match &self.owned_by {
            Some(o) if o.kind == OwnerKind::GitRepo => "GitRepo status".to_string(),
            Some(o) if o.kind == OwnerKind::HelmOp => "HelmOp status".to_string(),
            Some(o) => match o.managed_chart() {
                Some(chart) => format!("status of ManagedChart {chart}'s Bundle"),
                None => "Bundle status".to_string(),
            },
            None => "GitRepo status".to_string(),
        }
    }

    /// Where the object is defined, to be changed instead of deleting it (Git when the
    /// owner is a GitRepo or not resolved: most Fleet objects come from GitRepos).
    pub fn source(&self) -> String {
        match &self.owned_by {
            Some(o) if o.kind == OwnerKind::HelmOp => format!("HelmOp {}", o.key()),
            Some(o) if o.kind == OwnerKind::Bundle => match o.managed_chart() {
                Some(chart) => format!("ManagedChart {chart}"),
                None => format!("Bundle {}", o.key()),
            },
            _ => "it in Git".to_string(),
        }
    }

    /// What to do instead of deleting by hand, for the refusal.
    fn remedy(&self) -> String {
        match &self.owned_by {
            Some(o) if o.kind != OwnerKind::GitRepo => format!("change {}", self.source()),
            _ => "remove it from the Git repository".to_string(),
        }
    }

    /// The value of the `owner` audit annotation: `ns/name` for a GitRepo (as always),
    /// `helmop:ns/name` or `bundle:ns/name` for the other kinds, else `objectset:<setID>`.
    /// `key` is the owner's [`OwnerRef::key`], when resolved.
    fn audit_value(&self, key: Option<&str>) -> String {
        match (&self.owned_by, key) {
            (Some(o), Some(key)) if o.kind == OwnerKind::GitRepo => key.to_string(),
            (Some(o), Some(key)) if o.kind == OwnerKind::HelmOp => format!("helmop:{key}"),
            (Some(_), Some(key)) => format!("bundle:{key}"),
            _ => self
                .set_id
                .as_ref()
                .map(|id| format!("objectset:{id}"))
                .unwrap_or_else(|| "unknown".to_string()),
        }
    }
}

/// Why the verdict is what it is; also the `decision` label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Not a DELETE: nothing to do.
    NotDelete,
    /// A DELETE without an `oldObject`: nothing to decide on.
    NoObject,
    /// The object carries no objectset label or annotation.
    NotManaged,
    /// Objectset metadata from another writer than Fleet's agent (Endpoints copying a
    /// Service's labels, Rancher's object sets, k3s/RKE2 add-ons).
    NotFleet,
    /// Fleet deletes what it deployed (prune, uninstall, force-replace).
    FleetDeletion,
    /// The object is already terminating: an earlier DELETE was admitted.
    RepeatDeletion,
    /// Namespace controller, garbage collector, TTL controller.
    ControllerDeletion,
    /// Policy `allow`.
    Allowed,
    /// Policy `warn`.
    Warned,
    /// Policy `deny`, user in a break-glass group.
    BreakGlass,
    /// Policy `deny`.
    Denied,
    /// The owner's mass-deletion breaker is open (`--breaker enforce`).
    BreakerOpen,
}

impl Outcome {
    /// Every outcome: the `decision` values of the metrics and audit annotations.
    pub const ALL: [Outcome; 12] = [
        Outcome::NotDelete,
        Outcome::NoObject,
        Outcome::NotManaged,
        Outcome::NotFleet,
        Outcome::FleetDeletion,
        Outcome::RepeatDeletion,
        Outcome::ControllerDeletion,
        Outcome::Allowed,
        Outcome::Warned,
        Outcome::BreakGlass,
        Outcome::Denied,
        Outcome::BreakerOpen,
    ];

    /// The outcome whose label is `label`.
    pub fn from_label(label: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == label)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::NotDelete => "not-delete",
            Outcome::NoObject => "no-object",
            Outcome::NotManaged => "not-managed",
            Outcome::NotFleet => "not-fleet",
            Outcome::FleetDeletion => "fleet",
            Outcome::RepeatDeletion => "repeat",
            Outcome::ControllerDeletion => "controller",
            Outcome::Allowed => "allowed",
            Outcome::Warned => "warned",
            Outcome::BreakGlass => "break-glass",
            Outcome::Denied => "denied",
            Outcome::BreakerOpen => "breaker-open",
        }
    }

    /// Whether the object is gone (or going) in a way Fleet will report as Missing.
    fn counts(self) -> bool {
        matches!(
            self,
            Outcome::ControllerDeletion | Outcome::Allowed | Outcome::Warned | Outcome::BreakGlass
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict on one review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub allowed: bool,
    /// The refusal text the user sees (only when not allowed).
    pub denial: Option<String>,
    /// At most [`MAX_WARNINGS`] of at most [`MAX_WARNING_CHARS`] characters.
    pub warnings: Vec<String>,
    /// Keys are bare names: kube-apiserver prefixes them with the webhook name.
    pub audit_annotations: Vec<(&'static str, String)>,
    /// Count this deletion in its owner's status (never for dry-run reviews).
    pub count: bool,
}

impl Verdict {
    /// The deletion is not counted after all (counting is off, no BundleDeployment
    /// known, queue full): the `counted` and `reason` annotations say so.
    pub fn not_counted(&mut self, why: &str) {
        if !self.count {
            return;
        }
        self.count = false;
        for (key, value) in self.audit_annotations.iter_mut() {
            match *key {
                "counted" => *value = "false".to_string(),
                "reason" => *value = format!("{value}; not counted: {why}"),
                _ => {}
            }
        }
    }

    fn silent(outcome: Outcome) -> Self {
        Verdict {
            outcome,
            allowed: true,
            denial: None,
            warnings: Vec::new(),
            audit_annotations: Vec::new(),
            count: false,
        }
    }

    /// The fast path: no warnings, no annotations, nothing else done.
    pub fn is_fast_path(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::NotDelete | Outcome::NoObject | Outcome::NotManaged | Outcome::NotFleet
        )
    }
}

/// Decide on one review. Pure: the same input always gives the same verdict.
pub fn decide(review: &Review, owner: &Owner, config: &DecisionConfig) -> Verdict {
    if review.operation != Operation::Delete {
        return Verdict::silent(Outcome::NotDelete);
    }
    let Some(object) = &review.object else {
        return Verdict::silent(Outcome::NoObject);
    };
    match provenance_known(
        object.objectset_id.as_deref(),
        object.objectset_hash.as_deref(),
        owner.bundle.is_some(),
        owner.hash_agrees,
    ) {
        Provenance::NoObjectset => return Verdict::silent(Outcome::NotManaged),
        Provenance::OtherWriter => return Verdict::silent(Outcome::NotFleet),
        Provenance::FleetAgent => {}
    }
    if object
        .objectset_id
        .as_deref()
        .is_some_and(|id| outside_agent_bundle(id, &object.kind))
    {
        // fleet-controller's or Rancher's object under the agent's bootstrap id.
        return Verdict::silent(Outcome::NotFleet);
    }
    let groups = review.groups.as_slice();
    let policy = owner.policy.unwrap_or(config.policy);

    let outcome = if matches_identity(&config.fleet_identities, &review.username, groups) {
        Outcome::FleetDeletion
    } else if object.terminating {
        Outcome::RepeatDeletion
    } else if matches_identity(&config.controller_identities, &review.username, groups) {
        Outcome::ControllerDeletion
    } else {
        match policy {
            Policy::Allow => Outcome::Allowed,
            Policy::Warn => Outcome::Warned,
            Policy::Deny if matches_identity(&config.break_glass_groups, "", groups) => {
                Outcome::BreakGlass
            }
            Policy::Deny => Outcome::Denied,
        }
    };

    let count = outcome.counts() && !review.dry_run && owner.unmonitored.is_none();
    let allowed = outcome != Outcome::Denied;
    let warnings = match outcome {
        Outcome::Warned => warnings(object, owner, None),
        Outcome::BreakGlass => warnings(
            object,
            owner,
            Some("Allowed by break-glass group; policy is deny."),
        ),
        _ => Vec::new(),
    };
    let denial = (!allowed).then(|| denial_message(object, owner));

    let key = owner.owned_by.as_deref().map(OwnerRef::key);
    let mut audit = Vec::with_capacity(7);
    audit.extend([
        ("owner", owner.audit_value(key.as_deref())),
        ("decision", outcome.as_str().to_string()),
        ("counted", count.to_string()),
        (
            "reason",
            reason(outcome, review.dry_run, policy, owner.unmonitored),
        ),
    ]);
    match (owner.owned_by.as_ref().map(|o| o.kind), key) {
        (Some(OwnerKind::GitRepo), Some(key)) => audit.push(("gitrepo", key)),
        (Some(OwnerKind::HelmOp), Some(key)) => audit.push(("helmop", key)),
        _ => {}
    }
    if let Some(bundle) = &owner.bundle {
        audit.push(("bundle", bundle.to_string()));
    }
    if let Some(id) = &owner.set_id {
        audit.push(("objectset-id", id.clone()));
    }

    Verdict {
        outcome,
        allowed,
        denial,
        warnings,
        audit_annotations: audit,
        count,
    }
}

fn reason(outcome: Outcome, dry_run: bool, policy: Policy, unmonitored: Option<&str>) -> String {
    let mut text = String::with_capacity(64);
    match outcome {
        Outcome::FleetDeletion => text.push_str("deleted by Fleet itself"),
        Outcome::RepeatDeletion => {
            text.push_str("object already terminating; counted once when gone")
        }
        Outcome::ControllerDeletion => text.push_str("deleted by a Kubernetes controller"),
        _ => {
            text.push_str("manual deletion, policy ");
            text.push_str(policy.as_str());
        }
    }
    if let Some(why) = unmonitored.filter(|_| outcome.counts()) {
        text.push_str("; Fleet does not monitor the bundle now (");
        text.push_str(why);
        text.push_str("), not counted");
    }
    if dry_run {
        text.push_str("; dry run, no side effects");
    }
    text
}

fn warnings(object: &ObjectFacts, owner: &Owner, first: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = first.map(str::to_string).into_iter().collect();
    let by = owner.describe();
    // Shorten the sentence, never the owner's name: the longest form that fits. Each
    // form is written only when the one before it did not fit.
    out.push(fitting(&[
        &|| {
            format!(
                "{} {} is managed by {by}.",
                object.kind,
                object.display_name()
            )
        },
        &|| format!("Managed by {by}."),
        &|| format!("Managed by {}.", owner.describe_short()),
    ]));
    let status = owner.status_name();
    out.push(match owner.unmonitored {
        Some(why) => fitting(&[
            &|| format!("Fleet does not monitor this bundle now ({why}); its {status} will not show it Missing."),
            &|| format!("Fleet does not monitor this bundle now ({why}); not counted."),
        ]),
        None => fitting(&[
            &|| format!("Fleet will report it Missing in the {status} until it is re-created."),
            &|| format!("Fleet will report it Missing in the {status}."),
        ]),
    });
    out.push(format!(
        "Change {} instead; Fleet's drift correction may re-create it.",
        owner.source()
    ));
    out.truncate(MAX_WARNINGS);
    out.into_iter()
        .map(|w| truncate_chars(w, MAX_WARNING_CHARS))
        .collect()
}

/// The first of `forms` that fits in a warning, else the last one (cut at a word).
fn fitting(forms: &[&dyn Fn() -> String]) -> String {
    let mut form = String::new();
    for write in forms {
        form = write();
        if form.chars().count() <= MAX_WARNING_CHARS {
            break;
        }
    }
    form
}

fn denial_message(object: &ObjectFacts, owner: &Owner) -> String {
    format!(
        "fleet-delete-guard: {} {} is managed by {}; {} instead of deleting it by hand \
         (cluster policy: deny)",
        object.kind,
        object.display_name(),
        owner.describe(),
        owner.remedy()
    )
}

/// Cut `s` to at most `max` characters, marking the cut with an ellipsis.
/// The cut falls between words when there is a space in the second half, so that a
/// name is never cut mid-word.
pub fn truncate_chars(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        return s;
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    if let Some(space) = cut
        .rfind(' ')
        .filter(|&i| cut[..i].chars().count() >= max / 2)
    {
        cut.truncate(space);
    }
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn managed_object() -> ObjectFacts {
        ObjectFacts {
            kind: "configmap".into(),
            namespace: "default".into(),
            name: "test-config2-one".into(),
            objectset_hash: Some("37517d22b0ca4dbc462436d47410a3bdfce3c6f9".into()),
            objectset_id: Some("default-lots-config2".into()),
            terminating: false,
        }
    }

    fn review(user: &str, groups: &[&str]) -> Review {
        Review {
            operation: Operation::Delete,
            dry_run: false,
            username: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            object: Some(managed_object()),
        }
    }

    fn owner() -> Owner {
        Owner::from_object(&managed_object())
    }

    fn annotation<'a>(v: &'a Verdict, key: &str) -> Option<&'a str> {
        v.audit_annotations
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn user_delete_warns_and_counts_by_default() {
        let v = decide(
            &review("alice", &["system:authenticated"]),
            &owner(),
            &DecisionConfig::default(),
        );
        assert_eq!(v.outcome, Outcome::Warned);
        assert!(v.allowed && v.count && v.denial.is_none());
        assert_eq!(v.warnings.len(), 3);
        assert!(
            v.warnings[0].contains("configmap default/test-config2-one"),
            "{:?}",
            v.warnings
        );
        assert!(v.warnings[0].contains("objectset default-lots-config2"));
        assert!(v.warnings.iter().any(|w| w.contains("Git")));
        assert!(v
            .warnings
            .iter()
            .all(|w| w.chars().count() <= MAX_WARNING_CHARS));
        assert_eq!(annotation(&v, "decision"), Some("warned"));
        assert_eq!(annotation(&v, "counted"), Some("true"));
        assert_eq!(
            annotation(&v, "owner"),
            Some("objectset:default-lots-config2")
        );
    }

    #[test]
    fn non_delete_operations_take_the_fast_path() {
        for op in [Operation::Create, Operation::Update, Operation::Connect] {
            let mut r = review("alice", &[]);
            r.operation = op;
            let v = decide(&r, &owner(), &DecisionConfig::default());
            assert_eq!(v.outcome, Outcome::NotDelete);
            assert!(
                v.allowed
                    && v.is_fast_path()
                    && v.warnings.is_empty()
                    && v.audit_annotations.is_empty()
            );
        }
    }

    #[test]
    fn unlabelled_object_is_not_managed() {
        let mut r = review("alice", &[]);
        if let Some(o) = r.object.as_mut() {
            o.objectset_hash = None;
            o.objectset_id = None;
        }
        let v = decide(&r, &Owner::default(), &DecisionConfig::default());
        assert_eq!(v.outcome, Outcome::NotManaged);
        assert!(v.allowed && !v.count && v.audit_annotations.is_empty());
    }

    #[test]
    fn the_id_annotation_makes_it_fleets_the_hash_label_alone_does_not() {
        let mut only_label = managed_object();
        only_label.objectset_id = None;
        let mut only_annotation = managed_object();
        only_annotation.objectset_hash = None;
        assert!(only_label.has_objectset_metadata() && only_annotation.has_objectset_metadata());
        let with = |o: ObjectFacts| Review {
            object: Some(o),
            ..review("alice", &[])
        };
        let cfg = DecisionConfig::default();
        assert_eq!(
            decide(&with(only_label), &Owner::default(), &cfg).outcome,
            Outcome::NotFleet,
            "an Endpoints copy of a Service's labels"
        );
        assert_eq!(
            decide(&with(only_annotation), &Owner::default(), &cfg).outcome,
            Outcome::Warned
        );
    }

    /// Issue #8 (a real RKE2 support bundle): the agent's namespaces carry the agent's
    /// bootstrap id, but only fleet-controller and Rancher write them and the agent's
    /// bundle has no Namespace: not Fleet-managed for the webhook. The agent's own
    /// Deployment under that id is.
    #[test]
    fn namespaces_under_the_agent_bootstrap_id_are_not_fleets() {
        for (ns, id) in [
            ("cattle-fleet-system", "fleet-agent-bootstrap"),
            (
                "cattle-fleet-local-system",
                "fleet-agent-bootstrap-cattle-fleet-local-system",
            ),
        ] {
            let object = |kind: &str, namespace: &str, name: &str| ObjectFacts {
                kind: kind.into(),
                namespace: namespace.into(),
                name: name.into(),
                objectset_hash: Some(crate::fleet::object_set_hash(id)),
                objectset_id: Some(id.into()),
                terminating: false,
            };
            let r = Review {
                object: Some(object("namespace", "", ns)),
                ..review("alice", &[])
            };
            let v = decide(&r, &Owner::default(), &DecisionConfig::default());
            assert_eq!(v.outcome, Outcome::NotFleet, "{ns}");
            assert!(!v.count && v.warnings.is_empty() && v.audit_annotations.is_empty());
            let r = Review {
                object: Some(object("deployment", ns, "fleet-agent")),
                ..review("alice", &[])
            };
            let v = decide(&r, &Owner::default(), &DecisionConfig::default());
            assert_eq!(v.outcome, Outcome::Warned, "{ns}");
        }
    }

    #[test]
    fn delete_without_old_object_is_allowed_silently() {
        let mut r = review("alice", &[]);
        r.object = None;
        let v = decide(&r, &Owner::default(), &DecisionConfig::default());
        assert_eq!(v.outcome, Outcome::NoObject);
        assert!(v.allowed && v.warnings.is_empty());
    }

    #[test]
    fn fleet_agent_is_silent_and_never_counted_even_under_deny() {
        let cfg = DecisionConfig {
            policy: Policy::Deny,
            ..DecisionConfig::default()
        };
        let r = review(
            "system:serviceaccount:cattle-fleet-system:fleet-agent",
            &[
                "system:serviceaccounts",
                "system:serviceaccounts:cattle-fleet-system",
                "system:authenticated",
            ],
        );
        let v = decide(&r, &owner(), &cfg);
        assert_eq!(v.outcome, Outcome::FleetDeletion);
        assert!(v.allowed && !v.count && v.warnings.is_empty());
        assert_eq!(annotation(&v, "counted"), Some("false"));
    }

    #[test]
    fn any_service_account_of_the_local_agent_namespace_is_fleet() {
        let r = review(
            "system:serviceaccount:cattle-fleet-local-system:fleet-default",
            &["system:serviceaccounts:cattle-fleet-local-system"],
        );
        assert_eq!(
            decide(&r, &owner(), &DecisionConfig::default()).outcome,
            Outcome::FleetDeletion
        );
    }

    #[test]
    fn controllers_are_silent_counted_and_never_denied() {
        let cfg = DecisionConfig {
            policy: Policy::Deny,
            ..DecisionConfig::default()
        };
        for user in DEFAULT_CONTROLLERS {
            let v = decide(
                &review(user, &["system:serviceaccounts:kube-system"]),
                &owner(),
                &cfg,
            );
            assert_eq!(v.outcome, Outcome::ControllerDeletion, "{user}");
            assert!(v.allowed && v.count && v.warnings.is_empty(), "{user}");
        }
    }
    const DEFAULT_CONTROLLERS: &[&str] = crate::policy::DEFAULT_CONTROLLER_IDENTITIES;

    #[test]
    fn terminating_object_is_a_repeat_and_not_counted_again() {
        let mut r = review("alice", &[]);
        if let Some(o) = r.object.as_mut() {
            o.terminating = true;
        }
        let cfg = DecisionConfig {
            policy: Policy::Deny,
            ..DecisionConfig::default()
        };
        let v = decide(&r, &owner(), &cfg);
        assert_eq!(v.outcome, Outcome::RepeatDeletion);
        assert!(v.allowed && !v.count);
    }

    #[test]
    fn policy_allow_is_silent_but_counted() {
        let cfg = DecisionConfig {
            policy: Policy::Allow,
            ..DecisionConfig::default()
        };
        let v = decide(&review("alice", &[]), &owner(), &cfg);
        assert_eq!(v.outcome, Outcome::Allowed);
        assert!(v.allowed && v.count && v.warnings.is_empty());
        assert_eq!(annotation(&v, "decision"), Some("allowed"));
    }

    #[test]
    fn policy_deny_refuses_with_owner_and_git_hint() {
        let cfg = DecisionConfig {
            policy: Policy::Deny,
            ..DecisionConfig::default()
        };
        let o = Owner {
            owned_by: Some(OwnerRef::new(OwnerKind::GitRepo, "fleet-local", "lots").into()),
            bundle: Some("lots-config2".into()),
            ..owner()
        };
        let v = decide(&review("alice", &["system:authenticated"]), &o, &cfg);
        assert_eq!(v.outcome, Outcome::Denied);
        assert!(!v.allowed && !v.count);
        let msg = v.denial.clone().unwrap_or_default();
        assert!(
            msg.contains("Fleet GitRepo fleet-local/lots (bundle lots-config2)"),
            "{msg}"
        );
        assert!(msg.contains("Git repository"), "{msg}");
        assert_eq!(annotation(&v, "gitrepo"), Some("fleet-local/lots"));
        assert_eq!(annotation(&v, "bundle"), Some("lots-config2"));
    }

    #[test]
    fn break_glass_group_is_allowed_with_a_warning() {
        let cfg = DecisionConfig {
            policy: Policy::Deny,
            break_glass_groups: vec!["sre-oncall".into()],
            ..DecisionConfig::default()
        };
        let v = decide(&review("bob", &["sre-oncall"]), &owner(), &cfg);
        assert_eq!(v.outcome, Outcome::BreakGlass);
        assert!(v.allowed && v.count);
        assert!(v.warnings[0].contains("break-glass"));
        assert!(v.warnings.len() <= MAX_WARNINGS);
        // a user named like the group is not a member
        let v = decide(&review("sre-oncall", &[]), &owner(), &cfg);
        assert_eq!(v.outcome, Outcome::Denied);
    }

    #[test]
    fn gitrepo_override_beats_cluster_policy() {
        let cfg = DecisionConfig {
            policy: Policy::Warn,
            ..DecisionConfig::default()
        };
        let o = Owner {
            policy: Some(Policy::Deny),
            ..owner()
        };
        assert_eq!(
            decide(&review("alice", &[]), &o, &cfg).outcome,
            Outcome::Denied
        );
    }

    #[test]
    fn dry_run_gets_the_same_answer_but_is_never_counted() {
        let mut r = review("alice", &[]);
        r.dry_run = true;
        let v = decide(&r, &owner(), &DecisionConfig::default());
        let wet = decide(&review("alice", &[]), &owner(), &DecisionConfig::default());
        assert_eq!(v.warnings, wet.warnings);
        assert_eq!(v.outcome, Outcome::Warned);
        assert!(!v.count);
        assert_eq!(annotation(&v, "counted"), Some("false"));
        assert!(annotation(&v, "reason")
            .unwrap_or_default()
            .contains("dry run"));
    }

    #[test]
    fn long_names_are_cut_to_the_warning_limit() {
        let mut r = review("alice", &[]);
        if let Some(o) = r.object.as_mut() {
            o.name = "x".repeat(253);
        }
        let v = decide(&r, &owner(), &DecisionConfig::default());
        assert!(v
            .warnings
            .iter()
            .all(|w| w.chars().count() <= MAX_WARNING_CHARS));
        // The sentence is shortened; the owner is named whole (issue #11).
        assert_eq!(
            v.warnings[0],
            "Managed by Fleet (objectset default-lots-config2)."
        );
    }

    #[test]
    fn a_cut_falls_between_words() {
        let cut = truncate_chars("aaaa bbbb cccc-dddd-eeee".to_string(), 16);
        assert_eq!(cut, "aaaa bbbb…");
        let cut = truncate_chars("x".repeat(30), 10);
        assert_eq!(cut.chars().count(), 10);
    }

    #[test]
    fn truncation_respects_multibyte_characters() {
        let s = "é".repeat(200);
        let cut = truncate_chars(s, 10);
        assert_eq!(cut.chars().count(), 10);
    }

    #[test]
    fn other_writers_of_objectset_metadata_are_allowed_silently_and_not_counted() {
        let cfg = DecisionConfig {
            policy: Policy::Deny,
            ..DecisionConfig::default()
        };
        for (id, hash) in [
            (
                None,
                Some(crate::fleet::object_set_hash("default-lots-config2")),
            ),
            (Some("cluster-registration".to_string()), None),
            (Some(String::new()), Some(crate::fleet::object_set_hash(""))),
        ] {
            let mut r = review("alice", &[]);
            if let Some(o) = r.object.as_mut() {
                o.objectset_id = id.clone();
                o.objectset_hash = hash.clone();
            }
            let v = decide(&r, &Owner::default(), &cfg);
            assert_eq!(v.outcome, Outcome::NotFleet, "{id:?} {hash:?}");
            assert!(v.allowed && !v.count && v.is_fast_path());
            assert!(v.warnings.is_empty() && v.audit_annotations.is_empty());
        }
    }

    #[test]
    fn helmop_and_bundle_only_owners_are_named() {
        let op = Owner {
            owned_by: Some(OwnerRef::new(OwnerKind::HelmOp, "fleet-default", "redis").into()),
            bundle: Some("redis".into()),
            ..owner()
        };
        let v = decide(&review("alice", &[]), &op, &DecisionConfig::default());
        assert!(
            v.warnings[0].contains("Fleet HelmOp fleet-default/redis (bundle redis)"),
            "{:?}",
            v.warnings
        );
        assert!(v.warnings[1].contains("HelmOp status"), "{:?}", v.warnings);
        assert_eq!(annotation(&v, "helmop"), Some("fleet-default/redis"));
        assert_eq!(annotation(&v, "owner"), Some("helmop:fleet-default/redis"));
        assert_eq!(annotation(&v, "gitrepo"), None);

        let mcc = Owner {
            owned_by: Some(
                OwnerRef::new(OwnerKind::Bundle, "fleet-local", "mcc-rancher-monitoring").into(),
            ),
            bundle: Some("mcc-rancher-monitoring".into()),
            ..owner()
        };
        let v = decide(&review("alice", &[]), &mcc, &DecisionConfig::default());
        // Issue #11: the ManagedChart and its Bundle are named whole, no GitRepo nor Git.
        assert!(
            v.warnings[0].contains(
                "Fleet Bundle fleet-local/mcc-rancher-monitoring (ManagedChart fleet-local/rancher-monitoring)."
            ),
            "{:?}",
            v.warnings
        );
        assert!(
            v.warnings[1].contains("ManagedChart fleet-local/rancher-monitoring"),
            "{:?}",
            v.warnings
        );
        assert!(
            v.warnings[2].starts_with("Change ManagedChart fleet-local/rancher-monitoring instead"),
            "{:?}",
            v.warnings
        );
        for w in &v.warnings {
            assert!(!w.contains("Git") && !w.ends_with('…'), "{w}");
            assert!(w.chars().count() <= MAX_WARNING_CHARS, "{w}");
        }
        let applied = Owner {
            owned_by: Some(OwnerRef::new(OwnerKind::Bundle, "fleet-local", "my-app").into()),
            bundle: Some("my-app".into()),
            ..owner()
        };
        let w = decide(&review("alice", &[]), &applied, &DecisionConfig::default());
        assert!(
            w.warnings[1].contains("in the Bundle status"),
            "{:?}",
            w.warnings
        );
        assert!(w.warnings[2].starts_with("Change Bundle fleet-local/my-app instead"));
        assert!(
            w.warnings.iter().all(|w| !w.contains("Git")),
            "{:?}",
            w.warnings
        );
        let denied = DecisionConfig {
            policy: Policy::Deny,
            ..DecisionConfig::default()
        };
        let d = decide(&review("alice", &[]), &mcc, &denied);
        let denial = d.denial.unwrap_or_default();
        assert!(
            denial.contains("change ManagedChart fleet-local/rancher-monitoring instead"),
            "{denial}"
        );
        assert_eq!(
            annotation(&v, "owner"),
            Some("bundle:fleet-local/mcc-rancher-monitoring")
        );
        assert!(v.count);
    }

    #[test]
    fn a_bundle_fleet_does_not_monitor_is_warned_about_but_not_counted() {
        for why in ["paused", "off schedule", "waiting for values"] {
            let o = Owner {
                owned_by: Some(OwnerRef::new(OwnerKind::GitRepo, "fleet-local", "lots").into()),
                bundle: Some("lots-config2".into()),
                unmonitored: Some(why),
                ..owner()
            };
            let v = decide(&review("alice", &[]), &o, &DecisionConfig::default());
            assert_eq!(v.outcome, Outcome::Warned);
            assert!(v.allowed && !v.count, "{why}");
            assert!(
                v.warnings[1].contains(&format!("Fleet does not monitor this bundle now ({why})")),
                "{:?}",
                v.warnings
            );
            assert_eq!(annotation(&v, "counted"), Some("false"));
            assert!(
                annotation(&v, "reason")
                    .is_some_and(|r| r.contains(why) && r.contains("not counted")),
                "{v:?}"
            );
        }
    }

    #[test]
    fn every_outcome_is_listed_once_with_its_label() {
        // Exhaustive: a new outcome does not compile until it is placed here and in ALL.
        let position = |o: Outcome| match o {
            Outcome::NotDelete => 0,
            Outcome::NoObject => 1,
            Outcome::NotManaged => 2,
            Outcome::NotFleet => 3,
            Outcome::FleetDeletion => 4,
            Outcome::RepeatDeletion => 5,
            Outcome::ControllerDeletion => 6,
            Outcome::Allowed => 7,
            Outcome::Warned => 8,
            Outcome::BreakGlass => 9,
            Outcome::Denied => 10,
            Outcome::BreakerOpen => 11,
        };
        for (i, o) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(position(o), i, "{o}");
            assert_eq!(Outcome::from_label(o.as_str()), Some(o));
        }
        assert_eq!(Outcome::from_label("bogus"), None);
    }
}
