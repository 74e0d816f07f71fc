//! The admission adapter: body bytes → facts → [`decide`] → AdmissionReview bytes.
//!
//! Synchronous and I/O-free ([`Admission::review`]), so the benchmarks and the fuzzer call
//! the same code as the HTTP handler. Owner lookup and deletion counting are injected
//! ([`OwnerResolver`], [`DeletionSink`]) so that this module never waits on the network;
//! the one exception is the mass-deletion breaker shared between replicas
//! ([`Admission::review_shared`], the HTTP handler's): a counted deletion waits for one
//! bounded write of the window counts ([`BreakerGate::judge_shared`]).

use std::{sync::Arc, time::Instant};

use crate::{
    decide::{decide, ObjectFacts, Outcome, Owner, Verdict},
    metrics::Metrics,
    policy::DecisionConfig,
    review::{self, Parsed, Request, ReviewError},
};

/// Finds the Fleet owner of an object from an in-memory cache. Must not block.
pub trait OwnerResolver: Send + Sync {
    fn resolve(&self, object: &ObjectFacts) -> Owner;
}

/// Resolves owners from the object's own annotation only (no cluster connection).
#[derive(Debug, Default, Clone, Copy)]
pub struct ObjectOnly;

impl OwnerResolver for ObjectOnly {
    fn resolve(&self, object: &ObjectFacts) -> Owner {
        Owner::from_object(object)
    }
}

/// A deletion to be counted in its GitRepo's status, identified by the object's uid:
/// kube-apiserver may review one deletion several times with new request uids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedDeletion {
    pub review_uid: String,
    pub object_uid: String,
    pub group: String,
    pub version: String,
    pub kind: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub username: String,
    pub owner: Owner,
    pub objectset_hash: Option<String>,
    /// The object had finalizers: it is gone only when they are removed.
    pub has_finalizers: bool,
    /// The object's creationTimestamp (Fleet lists it in the BundleDeployment status).
    pub created_at: Option<String>,
    pub received: Instant,
}

/// Why a deletion the verdict would count is not counted after all: the `counted`
/// audit annotation then says `false` and the reason says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotCounted {
    #[error("counting is off")]
    Off,
    #[error("no BundleDeployment of this cluster is known for it")]
    NoBundleDeployment,
    #[error("the patch queue is full")]
    QueueFull,
}

/// Receives deletions to count. Must not block: it hands work to a queue. Says
/// whether the deletion was taken to be counted.
pub trait DeletionSink: Send + Sync {
    fn record(&self, deletion: CountedDeletion) -> Result<(), NotCounted>;
}

/// Counting is off: nothing to do.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCounting;

impl DeletionSink for NoCounting {
    fn record(&self, _: CountedDeletion) -> Result<(), NotCounted> {
        Err(NotCounted::Off)
    }
}

/// Applies the mass-deletion breaker to a verdict (counting the deletion in its owner's
/// window).
pub trait BreakerGate: Send + Sync {
    /// On this replica's counts. Must not block: it only takes an in-memory lock.
    fn judge(
        &self,
        review: &crate::decide::Review,
        owner: &Owner,
        verdict: Verdict,
        received: Instant,
    ) -> Verdict;

    /// On every replica's counts: may wait for one write of the shared counts, bounded
    /// (by default the same as [`BreakerGate::judge`]).
    fn judge_shared<'a>(
        &'a self,
        review: &'a crate::decide::Review,
        owner: &'a Owner,
        verdict: Verdict,
        received: Instant,
    ) -> Judged<'a> {
        Judged::Ready(self.judge(review, owner, verdict, received))
    }
}

/// A shared judgement: settled by this replica's counts alone (no breaker open, a dry
/// run: nearly every review), or waiting for the shared counts. The first costs no
/// allocation on the review path; only the second boxes its future.
pub enum Judged<'a> {
    Ready(Verdict),
    Waiting(futures::future::BoxFuture<'a, Verdict>),
}

impl Judged<'_> {
    pub async fn verdict(self) -> Verdict {
        match self {
            Judged::Ready(verdict) => verdict,
            Judged::Waiting(future) => future.await,
        }
    }
}

/// A review read and decided, before the breaker.
struct Prepared<'b> {
    request: Box<Request<'b>>,
    facts: crate::decide::Review,
    owner: Owner,
    verdict: Verdict,
}

/// What the handler logs and counts about one answered review.
#[derive(Debug, Clone)]
pub struct Answer {
    pub response: review::Response,
    pub summary: Summary,
}

/// The facts of one review for its log line and metrics.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub uid: String,
    pub user: String,
    pub operation: &'static str,
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub decision: &'static str,
    pub dry_run: bool,
    pub warnings: usize,
    /// The review ended on the fast path (not a deletion, or not of a Fleet-managed
    /// object): logged at debug level only.
    pub fast_path: bool,
    /// Set when the object inside the review could not be read.
    pub unexpected_shape: Option<String>,
}

/// The decision service: configuration plus injected lookups.
pub struct Admission {
    config: DecisionConfig,
    owners: Arc<dyn OwnerResolver>,
    sink: Arc<dyn DeletionSink>,
    /// Where deletions are counted by owner (`owner_deletions_total`), when set.
    metrics: Option<Metrics>,
    breaker: Option<Arc<dyn BreakerGate>>,
}

impl Admission {
    pub fn new(
        config: DecisionConfig,
        owners: Arc<dyn OwnerResolver>,
        sink: Arc<dyn DeletionSink>,
    ) -> Self {
        Admission {
            config,
            owners,
            sink,
            metrics: None,
            breaker: None,
        }
    }

    /// Count deletions of Fleet-managed objects by owner in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// With the mass-deletion breaker applied to every Fleet-managed deletion.
    pub fn with_breaker(mut self, breaker: Option<Arc<dyn BreakerGate>>) -> Self {
        self.breaker = breaker;
        self
    }

    pub fn config(&self) -> &DecisionConfig {
        &self.config
    }

    /// Answer one review body, the breaker on this replica's counts alone. Errors mean
    /// the body is not a review (HTTP 400).
    pub fn review(&self, body: &[u8], received: Instant) -> Result<Answer, ReviewError> {
        let mut p = match self.prepare(body)? {
            Ok(p) => p,
            Err(answer) => return Ok(answer),
        };
        if let Some(breaker) = self.breaker_for(&p.verdict) {
            p.verdict = breaker.judge(&p.facts, &p.owner, p.verdict, received);
        }
        Ok(self.finish(p, received))
    }

    /// [`Admission::review`] with the breaker on every replica's counts: a counted
    /// deletion waits for one bounded write of the shared window counts.
    pub async fn review_shared(
        &self,
        body: &[u8],
        received: Instant,
    ) -> Result<Answer, ReviewError> {
        let mut p = match self.prepare(body)? {
            Ok(p) => p,
            Err(answer) => return Ok(answer),
        };
        if let Some(breaker) = self.breaker_for(&p.verdict) {
            p.verdict = breaker
                .judge_shared(&p.facts, &p.owner, p.verdict, received)
                .verdict()
                .await;
        }
        Ok(self.finish(p, received))
    }

    /// The breaker, for verdicts it looks at.
    fn breaker_for(&self, verdict: &Verdict) -> Option<&Arc<dyn BreakerGate>> {
        self.breaker.as_ref().filter(|_| !verdict.is_fast_path())
    }

    /// Parsed and decided; `Err` carries the answer to a body that is no usable review.
    #[allow(clippy::type_complexity)]
    fn prepare<'b>(&self, body: &'b [u8]) -> Result<Result<Prepared<'b>, Answer>, ReviewError> {
        let request = match review::parse(body)? {
            Parsed::Request(request) => request,
            Parsed::UnexpectedShape { uid, detail } => {
                return Ok(Err(unexpected_shape(&uid, detail)))
            }
        };
        // --- identifier bound (fuzzing, RELIABILITY.md): see MAX_IDENTIFIER_BYTES ---
        if let Some(field) = oversized_identifier(&request) {
            let detail = format!("{field} is longer than {MAX_IDENTIFIER_BYTES} bytes");
            return Ok(Err(unexpected_shape(&request.uid, detail)));
        }
        let facts = review::facts(&request);
        let owner = match &facts.object {
            Some(object) if object.has_objectset_metadata() => self.owners.resolve(object),
            _ => Owner::default(),
        };
        let verdict = decide(&facts, &owner, &self.config);
        Ok(Ok(Prepared {
            request,
            facts,
            owner,
            verdict,
        }))
    }

    /// Metrics, counting and the answer of a judged review.
    fn finish(&self, p: Prepared<'_>, received: Instant) -> Answer {
        let Prepared {
            request,
            facts,
            owner,
            verdict,
        } = p;
        let summary = summarize(&request, &facts, &verdict);
        if let Some(metrics) = self
            .metrics
            .as_ref()
            .filter(|_| owner_deletion(&facts, &verdict))
        {
            // The owner index resolved it (bounded by this cluster's
            // BundleDeployments), else `unknown`.
            metrics.count_owner_deletion(owner.owned_by.as_deref(), verdict.outcome.as_str());
        }
        let mut verdict = verdict;
        if verdict.count {
            if let Err(why) = self.sink.record(counted(&request, facts, owner, received)) {
                verdict.not_counted(&why.to_string());
            }
        }
        Answer {
            response: review::respond(&request, verdict),
            summary,
        }
    }
}

/// Whether a review is a deletion of a Fleet-managed object for `owner_deletions_total`:
/// not the fast path (not a DELETE, no object, not Fleet's), not a dry run (nothing is
/// deleted), not a repeat review of an object already terminating (counted when its
/// first DELETE was admitted). Denied deletions count: someone tried.
fn owner_deletion(facts: &crate::decide::Review, verdict: &Verdict) -> bool {
    !verdict.is_fast_path() && !facts.dry_run && verdict.outcome != Outcome::RepeatDeletion
}

/// Longest identifier a review may carry: uid, kind, resource, name, namespace, user,
/// groups, Fleet's two markers. Kubernetes bounds them far lower (names 253 bytes,
/// label values 63, all annotations of an object 256 KiB), and they are copied into the
/// answer (a setID up to three times), the log line and the counting queue. A body
/// with longer ones was not sent by kube-apiserver; it is allowed as an unexpected
/// shape instead of being echoed (the fuzzer found a 7 MiB setID costing 20 times its
/// size in memory).
pub const MAX_IDENTIFIER_BYTES: usize = 4096;

/// The first identifier of `request` longer than [`MAX_IDENTIFIER_BYTES`].
fn oversized_identifier(request: &Request<'_>) -> Option<&'static str> {
    let long = |s: &str| s.len() > MAX_IDENTIFIER_BYTES;
    let opt = |s: &Option<review::Text<'_>>| s.as_deref().is_some_and(long);
    if long(&request.uid) {
        return Some("request.uid");
    }
    if [
        &request.kind.group,
        &request.kind.version,
        &request.kind.kind,
    ]
    .into_iter()
    .chain([
        &request.resource.group,
        &request.resource.version,
        &request.resource.resource,
    ])
    .any(|t| long(t))
    {
        return Some("request.kind or request.resource");
    }
    if long(&request.name) || opt(&request.namespace) {
        return Some("request.name or request.namespace");
    }
    let user = &request.user_info;
    if opt(&user.username) || user.groups.iter().flatten().any(|g| long(g)) {
        return Some("request.userInfo");
    }
    if let Some(old) = &request.old_object {
        let m = &old.metadata;
        if opt(&m.name) || opt(&m.namespace) || opt(&m.uid) {
            return Some("request.oldObject.metadata name, namespace or uid");
        }
        if opt(&m.objectset_hash) || opt(&m.objectset_id) {
            return Some("request.oldObject.metadata Fleet label or annotation");
        }
    }
    None
}

/// Allowed, carrying only the uid (cut to [`MAX_IDENTIFIER_BYTES`]), for a review whose
/// object could not be read.
fn unexpected_shape(uid: &str, detail: String) -> Answer {
    let uid = if uid.len() > MAX_IDENTIFIER_BYTES {
        crate::redact::truncated(uid, MAX_IDENTIFIER_BYTES / 4)
    } else {
        uid.to_string()
    };
    Answer {
        response: review::allow_uid(&uid),
        summary: Summary {
            uid,
            operation: "UNKNOWN",
            decision: "unexpected-shape",
            unexpected_shape: Some(detail),
            ..Summary::default()
        },
    }
}

fn counted(
    request: &Request<'_>,
    facts: crate::decide::Review,
    owner: Owner,
    received: Instant,
) -> CountedDeletion {
    let meta = request.old_object.as_ref().map(|o| &o.metadata);
    let (namespace, name, objectset_hash) = match facts.object {
        Some(o) => (o.namespace, o.name, o.objectset_hash),
        None => Default::default(),
    };
    CountedDeletion {
        review_uid: request.uid.to_string(),
        object_uid: meta
            .and_then(|m| m.uid.as_deref())
            .unwrap_or_default()
            .to_string(),
        group: request.kind.group.to_string(),
        version: request.kind.version.to_string(),
        kind: request.kind.kind.to_string(),
        resource: request.resource.resource.to_string(),
        namespace,
        name,
        username: facts.username,
        owner,
        objectset_hash,
        has_finalizers: meta.is_some_and(|m| m.has_finalizers),
        created_at: meta
            .and_then(|m| m.creation_timestamp.as_ref())
            .map(|t| t.0.to_string()),
        received,
    }
}

fn summarize(request: &Request<'_>, facts: &crate::decide::Review, verdict: &Verdict) -> Summary {
    let resource = if request.resource.group.is_empty() {
        request.resource.resource.to_string()
    } else {
        format!("{}.{}", request.resource.resource, request.resource.group)
    };
    let (namespace, name) = match &facts.object {
        Some(o) => (o.namespace.clone(), o.name.clone()),
        None => (
            request.namespace.as_deref().unwrap_or_default().to_string(),
            request.name.to_string(),
        ),
    };
    Summary {
        uid: request.uid.to_string(),
        user: facts.username.clone(),
        operation: facts.operation.as_str(),
        resource,
        namespace,
        name,
        decision: verdict.outcome.as_str(),
        dry_run: facts.dry_run,
        warnings: verdict.warnings.len(),
        fast_path: verdict.is_fast_path(),
        unexpected_shape: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REVIEW: &str = include_str!("../tests/fixtures/admissionreview-delete-configmap.json");

    struct Refusing(NotCounted);

    impl DeletionSink for Refusing {
        fn record(&self, _: CountedDeletion) -> Result<(), NotCounted> {
            Err(self.0)
        }
    }

    fn annotation(answer: &Answer, key: &str) -> Option<String> {
        answer.response.audit_annotation(key).map(str::to_string)
    }

    /// Issue #9: `counted` says what happened, not what the verdict wanted.
    #[test]
    fn counted_is_false_with_the_reason_when_the_sink_does_not_count() {
        for (sink, why) in [
            (NotCounted::Off, "counting is off"),
            (NotCounted::NoBundleDeployment, "no BundleDeployment"),
            (NotCounted::QueueFull, "queue is full"),
        ] {
            let admission = Admission::new(
                DecisionConfig::default(),
                Arc::new(ObjectOnly),
                Arc::new(Refusing(sink)),
            );
            let answer = admission
                .review(REVIEW.as_bytes(), Instant::now())
                .expect("a review");
            assert_eq!(annotation(&answer, "decision").as_deref(), Some("warned"));
            assert_eq!(annotation(&answer, "counted").as_deref(), Some("false"));
            let reason = annotation(&answer, "reason").unwrap_or_default();
            assert!(reason.contains(why), "{reason}");
        }
        let counting = Admission::new(
            DecisionConfig::default(),
            Arc::new(ObjectOnly),
            Arc::new(NoCounting),
        );
        let answer = counting
            .review(REVIEW.as_bytes(), Instant::now())
            .expect("a review");
        assert_eq!(annotation(&answer, "counted").as_deref(), Some("false"));
    }
}
