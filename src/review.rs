//! AdmissionReview bytes in, facts out; verdict in, AdmissionReview out.
//!
//! Only the objects' metadata is parsed ([`PartialObjectMeta`]): the decision needs
//! labels, annotations, name and deletionTimestamp, never the object's contents, so a
//! large Secret or ConfigMap costs a scan, not an allocation, and never reaches a log.

use kube::core::{
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation as KubeOperation},
    DynamicObject, PartialObjectMeta, Status,
};
use serde::Deserialize;

use crate::decide::{ObjectFacts, Operation, Review, Verdict};

/// The admission request as parsed: metadata only.
pub type Request = AdmissionRequest<PartialObjectMeta<DynamicObject>>;

// TODO(lead): move to crate::fleet once its label consts land.
const OBJECTSET_HASH_LABEL: &str = "objectset.rio.cattle.io/hash";
const OBJECTSET_ID_ANNOTATION: &str = "objectset.rio.cattle.io/id";
const ADMISSION_V1: &str = "admission.k8s.io/v1";
const ADMISSION_KIND: &str = "AdmissionReview";

/// Why a body is not a review we can answer. The HTTP layer turns these into 400s.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body is not an AdmissionReview: {0}")]
    NotAdmissionReview(String),
    #[error("unsupported AdmissionReview version {0:?}: only admission.k8s.io/v1 is served")]
    WrongVersion(String),
    #[error("AdmissionReview has no request")]
    NoRequest,
}

impl ReviewError {
    /// Stable label for the `errors_total{kind}` metric.
    pub fn kind(&self) -> &'static str {
        match self {
            ReviewError::NotJson(_) => "not_json",
            ReviewError::NotAdmissionReview(_) => "not_admission_review",
            ReviewError::WrongVersion(_) => "wrong_version",
            ReviewError::NoRequest => "no_request",
        }
    }
}

/// A parsed body: either a full request, or only its envelope when the object inside
/// has a shape we did not expect (the review is then allowed and logged).
#[derive(Debug)]
pub enum Parsed {
    Request(Box<Request>),
    UnexpectedShape { uid: String, detail: String },
}

/// The outer fields, read first so that version errors are reported as such.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<EnvelopeRequest>,
}

#[derive(Deserialize)]
struct EnvelopeRequest {
    uid: String,
}

/// Parse a request body into an admission request.
pub fn parse(body: &[u8]) -> Result<Parsed, ReviewError> {
    match serde_json::from_slice::<AdmissionReview<PartialObjectMeta<DynamicObject>>>(body) {
        Ok(review) => {
            check_type(&review.types.api_version, &review.types.kind)?;
            let request: Request = review.try_into().map_err(|_| ReviewError::NoRequest)?;
            Ok(Parsed::Request(Box::new(request)))
        }
        Err(full_err) => {
            // Slow path, only for bodies the typed parse refused: find out why.
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                return Err(ReviewError::NotJson(one_line(&e)));
            }
            let envelope: Envelope = serde_json::from_slice(body)
                .map_err(|e| ReviewError::NotAdmissionReview(one_line(&e)))?;
            check_type(&envelope.api_version, &envelope.kind)?;
            let request = envelope.request.ok_or(ReviewError::NoRequest)?;
            Ok(Parsed::UnexpectedShape {
                uid: request.uid,
                detail: one_line(&full_err),
            })
        }
    }
}

fn check_type(api_version: &str, kind: &str) -> Result<(), ReviewError> {
    if kind != ADMISSION_KIND {
        return Err(ReviewError::NotAdmissionReview(format!(
            "kind is {kind:?}, expected \"AdmissionReview\""
        )));
    }
    if api_version != ADMISSION_V1 {
        return Err(ReviewError::WrongVersion(api_version.to_string()));
    }
    Ok(())
}

fn one_line(e: &serde_json::Error) -> String {
    e.to_string().replace('\n', " ")
}

/// The facts of a request that the decision needs.
pub fn facts(request: &Request) -> Review {
    let operation = match request.operation {
        KubeOperation::Create => Operation::Create,
        KubeOperation::Update => Operation::Update,
        KubeOperation::Delete => Operation::Delete,
        KubeOperation::Connect => Operation::Connect,
    };
    let object = request.old_object.as_ref().map(|old| {
        let meta = &old.metadata;
        ObjectFacts {
            kind: request.kind.kind.to_ascii_lowercase(),
            // DELETECOLLECTION sends one review per item with an empty request name.
            name: meta.name.clone().unwrap_or_else(|| request.name.clone()),
            namespace: meta
                .namespace
                .clone()
                .or_else(|| request.namespace.clone())
                .unwrap_or_default(),
            objectset_hash: meta
                .labels
                .as_ref()
                .and_then(|l| l.get(OBJECTSET_HASH_LABEL))
                .cloned(),
            objectset_id: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(OBJECTSET_ID_ANNOTATION))
                .cloned(),
            terminating: meta.deletion_timestamp.is_some(),
        }
    });
    Review {
        operation,
        dry_run: request.dry_run,
        username: request.user_info.username.clone().unwrap_or_default(),
        groups: request.user_info.groups.clone().unwrap_or_default(),
        object,
    }
}

/// The AdmissionReview answering `request` with `verdict`.
pub fn respond(request: &Request, verdict: &Verdict) -> AdmissionReview<DynamicObject> {
    let mut response = AdmissionResponse::from(request);
    if let Some(message) = &verdict.denial {
        response = response.deny(message);
        response.result = Status::failure(message, "Forbidden").with_code(403);
    }
    if !verdict.warnings.is_empty() {
        response.warnings = Some(verdict.warnings.clone());
    }
    response.audit_annotations = verdict
        .audit_annotations
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    response.into_review()
}

/// An allowed answer carrying only the uid, for reviews whose object we could not read.
pub fn allow_uid(uid: &str) -> AdmissionReview<DynamicObject> {
    let mut response = AdmissionResponse::invalid("");
    response.allowed = true;
    response.result = Status::default();
    response.uid = uid.to_string();
    response.into_review()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REVIEW: &str = include_str!("../tests/fixtures/admissionreview-delete-configmap.json");

    #[test]
    fn parses_the_fixture_and_extracts_facts() {
        let Ok(Parsed::Request(req)) = parse(REVIEW.as_bytes()) else {
            panic!("fixture must parse");
        };
        let f = facts(&req);
        assert_eq!(f.operation, Operation::Delete);
        assert_eq!(f.username, "alice");
        let o = f.object.expect("oldObject");
        assert_eq!(o.kind, "configmap");
        assert_eq!(o.display_name(), "default/test-config2-one");
        assert_eq!(o.objectset_id.as_deref(), Some("default-lots-config2"));
        assert!(!o.terminating);
    }

    #[test]
    fn deletecollection_item_takes_name_from_old_object() {
        let mut v: serde_json::Value = serde_json::from_str(REVIEW).expect("json");
        v["request"]["name"] = "".into();
        let body = serde_json::to_vec(&v).expect("json");
        let Ok(Parsed::Request(req)) = parse(&body) else {
            panic!("must parse")
        };
        assert_eq!(
            facts(&req).object.map(|o| o.name).as_deref(),
            Some("test-config2-one")
        );
    }

    #[test]
    fn errors_are_classified() {
        assert!(matches!(parse(b"{not json"), Err(ReviewError::NotJson(_))));
        assert!(matches!(
            parse(br#"{"kind":"Pod","apiVersion":"v1"}"#),
            Err(ReviewError::NotAdmissionReview(_))
        ));
        let v1beta1 = REVIEW.replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1");
        assert_eq!(
            parse(v1beta1.as_bytes()).err(),
            Some(ReviewError::WrongVersion("admission.k8s.io/v1beta1".into()))
        );
        assert_eq!(
            parse(br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#).err(),
            Some(ReviewError::NoRequest)
        );
        assert!(matches!(
            parse(b"[]"),
            Err(ReviewError::NotAdmissionReview(_))
        ));
    }

    #[test]
    fn unexpected_object_shape_keeps_the_uid() {
        let mut v: serde_json::Value = serde_json::from_str(REVIEW).expect("json");
        v["request"]["oldObject"]["metadata"]["labels"] = "not-a-map".into();
        let body = serde_json::to_vec(&v).expect("json");
        match parse(&body) {
            Ok(Parsed::UnexpectedShape { uid, detail }) => {
                assert_eq!(uid, "6f1d2c3b-4a5e-4f60-9a7b-8c9d0e1f2a3b");
                assert!(!detail.contains('\n'));
            }
            other => panic!("expected UnexpectedShape, got {other:?}"),
        }
    }
}
