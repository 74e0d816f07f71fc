//! AdmissionReview bytes in, facts out; verdict in, AdmissionReview out.
//!
//! Only what the decision, the answer, the log line and counting read is parsed: the
//! request's uid, kind, resource, name, namespace, operation, user and dryRun, and of
//! `oldObject` its name, namespace, uid, the two Fleet markers, finalizers and
//! timestamps. Everything else — the object's contents, `managedFields`, `object`,
//! `options` — is skipped by the JSON scanner without being built, so a large Secret or
//! ConfigMap costs a scan, not an allocation, and never reaches a log. Strings are
//! borrowed from the body where JSON allows (no escapes).
//!
//! kube's `AdmissionReview<PartialObjectMeta<_>>` is not used for input: its
//! `#[serde(flatten)]` fields make serde buffer the whole body, `oldObject` included,
//! into an intermediate tree before reading it (about 90 % of the cost of a review).

use std::{borrow::Cow, fmt, marker::PhantomData, ops::Deref};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::{
    admission::{AdmissionResponse, AdmissionReview, Operation as KubeOperation},
    DynamicObject, Status, TypeMeta,
};
use serde::{
    de::{
        self,
        value::{MapAccessDeserializer, SeqAccessDeserializer},
        Expected, MapAccess, SeqAccess, Unexpected, Visitor,
    },
    Deserialize, Deserializer,
};

use crate::decide::{ObjectFacts, Operation, Review, Verdict};

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

/// A JSON string, borrowed from the body unless it had escapes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// `kind` of a request: group, version, kind (all required, as in kube's type).
#[derive(Debug, Deserialize)]
pub struct Gvk<'a> {
    #[serde(borrow)]
    pub group: Text<'a>,
    #[serde(borrow)]
    pub version: Text<'a>,
    #[serde(borrow)]
    pub kind: Text<'a>,
}

/// `resource` of a request: group, version, resource (all required).
#[derive(Debug, Deserialize)]
pub struct Gvr<'a> {
    #[serde(borrow)]
    pub group: Text<'a>,
    #[serde(borrow)]
    pub version: Text<'a>,
    #[serde(borrow)]
    pub resource: Text<'a>,
}

/// `userInfo`: who asks.
#[derive(Debug, Deserialize)]
pub struct UserInfo<'a> {
    #[serde(default, borrow)]
    pub username: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "optional_strings")]
    pub groups: Option<Vec<Text<'a>>>,
}

/// `oldObject`: only its metadata is read.
#[derive(Debug, Default, Deserialize)]
pub struct OldObject<'a> {
    #[serde(default, borrow, deserialize_with = "object")]
    pub metadata: Meta<'a>,
}

/// The metadata of `oldObject` that the decision and counting read. Labels and
/// annotations are scanned for Fleet's two markers only (each must still be a map of
/// strings, as in Kubernetes' ObjectMeta).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta<'a> {
    #[serde(default, borrow)]
    pub name: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub namespace: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub uid: Option<Text<'a>>,
    /// Fleet's `objectset.rio.cattle.io/hash` label.
    #[serde(
        rename = "labels",
        default,
        borrow,
        deserialize_with = "objectset_hash_label"
    )]
    pub objectset_hash: Option<Text<'a>>,
    /// Fleet's `objectset.rio.cattle.io/id` annotation.
    #[serde(
        rename = "annotations",
        default,
        borrow,
        deserialize_with = "objectset_id_annotation"
    )]
    pub objectset_id: Option<Text<'a>>,
    /// `finalizers` is a non-empty list of strings.
    #[serde(rename = "finalizers", default, deserialize_with = "non_empty_strings")]
    pub has_finalizers: bool,
    #[serde(default)]
    pub creation_timestamp: Option<Time>,
    #[serde(default)]
    pub deletion_timestamp: Option<Time>,
}

/// The value of `key` in an optional map of strings; the other entries are checked to
/// be strings and dropped.
fn pick<'de, D: Deserializer<'de>>(d: D, key: &'static str) -> Result<Option<Text<'de>>, D::Error> {
    struct Pick(&'static str);
    impl<'de> Visitor<'de> for Pick {
        type Value = Option<Text<'de>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of strings")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(refused_string(&self))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(k) = map.next_key::<Text<'de>>()? {
                let v = map.next_value::<Text<'de>>()?;
                if *k == *self.0 {
                    found = Some(v);
                }
            }
            Ok(found)
        }
    }
    // `deserialize_any`, not `deserialize_option`/`_map`: see [`refused_string`].
    d.deserialize_any(Pick(key))
}

fn objectset_hash_label<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Text<'de>>, D::Error> {
    pick(d, OBJECTSET_HASH_LABEL)
}

fn objectset_id_annotation<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Text<'de>>, D::Error> {
    pick(d, OBJECTSET_ID_ANNOTATION)
}

/// True for a non-empty list of strings; null and `[]` are false.
fn non_empty_strings<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct Count;
    impl<'de> Visitor<'de> for Count {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of strings")
        }
        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_none<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
            Err(refused_string(&self))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
            let mut any = false;
            while seq.next_element::<Text<'de>>()?.is_some() {
                any = true;
            }
            Ok(any)
        }
    }
    d.deserialize_any(Count)
}

// ---------------------------------------------------------------------------------
// Refusing a string without quoting it.
//
// serde_json refuses a string where it expected a map, a list, a struct or a bool by
// formatting it into its message (`invalid type: string "<value>", expected …`,
// Debug-escaped character by character) before src/redact.rs throws the value away:
// about 0.3 s per MiB of non-ASCII text, where a whole valid 7 MiB review takes 30 ms.
// The fields below are read with `deserialize_any` and visitors that refuse a string
// as `Unexpected::Other("string")`, which says "string" and nothing of the value.

/// The error for a string where `expected` was due: names the type only.
fn refused_string<E: de::Error>(expected: &dyn Expected) -> E {
    E::invalid_type(Unexpected::Other("string"), expected)
}

/// A struct read from a JSON object (or, as serde allows, positionally from an
/// array); a string is refused unquoted.
struct Shape<T> {
    what: &'static str,
    optional: bool,
    _t: PhantomData<fn() -> T>,
}

impl<T> Shape<T> {
    fn new(optional: bool) -> Self {
        let full = std::any::type_name::<T>();
        // `fleet_delete_guard::review::UserInfo<'_>` → `UserInfo`: the name serde's
        // derive gives in `expected struct UserInfo`.
        let short = full.split('<').next().unwrap_or(full);
        let what = short.rsplit("::").next().unwrap_or(short);
        Shape {
            what,
            optional,
            _t: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Shape<T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "struct {}", self.what)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        if self.optional {
            Ok(None)
        } else {
            Err(E::invalid_type(Unexpected::Unit, &self))
        }
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(refused_string(&self))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Some)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        T::deserialize(SeqAccessDeserializer::new(seq)).map(Some)
    }
}

/// A required struct field (`deserialize_with`).
fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    let shape = Shape::<T>::new(false);
    let what = shape.what;
    d.deserialize_any(shape)?.ok_or_else(|| {
        de::Error::custom(format_args!("invalid type: null, expected struct {what}"))
    })
}

/// An optional struct field: null is `None`.
fn optional_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    d.deserialize_any(Shape::<T>::new(true))
}

/// An optional list of strings (`userInfo.groups`): null is `None`.
fn optional_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Text<'de>>>, D::Error> {
    struct Strings;
    impl<'de> Visitor<'de> for Strings {
        type Value = Option<Vec<Text<'de>>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a sequence")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(refused_string(&self))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut all = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(s) = seq.next_element::<Text<'de>>()? {
                all.push(s);
            }
            Ok(Some(all))
        }
    }
    d.deserialize_any(Strings)
}

/// A bool field (`dryRun`).
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct Flag;
    impl<'de> Visitor<'de> for Flag {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a boolean")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
            Err(refused_string(&self))
        }
    }
    d.deserialize_any(Flag)
}

/// `operation`: one of kube's four names. serde's derive would refuse another string
/// as ``unknown variant `<value>` `` (the value copied into the message).
fn operation<'de, D: Deserializer<'de>>(d: D) -> Result<KubeOperation, D::Error> {
    struct Op;
    const EXPECTED: &str = "one of `CREATE`, `UPDATE`, `DELETE`, `CONNECT`";
    impl<'de> Visitor<'de> for Op {
        type Value = KubeOperation;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(EXPECTED)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<KubeOperation, E> {
            match v {
                "CREATE" => Ok(KubeOperation::Create),
                "UPDATE" => Ok(KubeOperation::Update),
                "DELETE" => Ok(KubeOperation::Delete),
                "CONNECT" => Ok(KubeOperation::Connect),
                _ => Err(E::invalid_value(Unexpected::Other("string"), &self)),
            }
        }
        // serde_json's externally tagged form (`{"DELETE": null}`), as kube's derive reads it.
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<KubeOperation, A::Error> {
            KubeOperation::deserialize(MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(Op)
}

/// The admission request as parsed: what is read of it, borrowed from the body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    #[serde(borrow)]
    pub uid: Text<'a>,
    #[serde(borrow, deserialize_with = "object")]
    pub kind: Gvk<'a>,
    #[serde(borrow, deserialize_with = "object")]
    pub resource: Gvr<'a>,
    #[serde(default, borrow)]
    pub name: Text<'a>,
    #[serde(default, borrow)]
    pub namespace: Option<Text<'a>>,
    #[serde(deserialize_with = "operation")]
    pub operation: KubeOperation,
    #[serde(borrow, deserialize_with = "object")]
    pub user_info: UserInfo<'a>,
    #[serde(default, borrow, deserialize_with = "optional_object")]
    pub old_object: Option<OldObject<'a>>,
    #[serde(default, deserialize_with = "flag")]
    pub dry_run: bool,
}

/// The body: `apiVersion` and `kind` (required, checked after parsing) and the request.
/// `response`, and every field of the request not listed above, are skipped unread.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    #[serde(borrow)]
    api_version: Text<'a>,
    #[serde(borrow)]
    kind: Text<'a>,
    #[serde(default, borrow, deserialize_with = "optional_object")]
    request: Option<Request<'a>>,
}

/// A parsed body: either a full request, or only its envelope when the object inside
/// has a shape we did not expect (the review is then allowed and logged).
#[derive(Debug)]
pub enum Parsed<'a> {
    Request(Box<Request<'a>>),
    UnexpectedShape { uid: String, detail: String },
}

/// The outer fields, read first so that version errors are reported as such.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default, deserialize_with = "optional_object")]
    request: Option<EnvelopeRequest>,
}

#[derive(Deserialize)]
struct EnvelopeRequest {
    uid: String,
}

/// Parse a request body into an admission request.
pub fn parse(body: &[u8]) -> Result<Parsed<'_>, ReviewError> {
    match serde_json::from_slice::<Body<'_>>(body) {
        Ok(review) => {
            check_type(&review.api_version, &review.kind)?;
            let request = review.request.ok_or(ReviewError::NoRequest)?;
            Ok(Parsed::Request(Box::new(request)))
        }
        Err(full_err) => {
            // Slow path, only for bodies the typed parse refused: find out why.
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                return Err(ReviewError::NotJson(one_line(&e)));
            }
            if is_bare_request(body) {
                return Err(ReviewError::NotAdmissionReview(BARE_REQUEST.to_string()));
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

/// What a bare AdmissionRequest is told (issue #12).
pub const BARE_REQUEST: &str =
    "it is a bare AdmissionRequest (uid, operation, ... at the top level); \
    expected an admission.k8s.io/v1 AdmissionReview: {\"apiVersion\": \"admission.k8s.io/v1\", \
    \"kind\": \"AdmissionReview\", \"request\": {...}}";

/// The top-level fields that tell an AdmissionRequest sent without its envelope.
#[derive(Deserialize)]
struct BareRequest {
    #[serde(default)]
    request: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    uid: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    operation: Option<serde::de::IgnoredAny>,
}

/// The body is an object with an AdmissionRequest's `uid` and `operation` and no
/// `request`: someone posted the request without its AdmissionReview.
fn is_bare_request(body: &[u8]) -> bool {
    serde_json::from_slice::<BareRequest>(body)
        .is_ok_and(|b| b.request.is_none() && b.uid.is_some() && b.operation.is_some())
}

fn check_type(api_version: &str, kind: &str) -> Result<(), ReviewError> {
    if kind != ADMISSION_KIND {
        return Err(ReviewError::NotAdmissionReview(format!(
            "kind is {}, expected \"AdmissionReview\"",
            crate::redact::excerpt(kind, 64)
        )));
    }
    if api_version != ADMISSION_V1 {
        return Err(ReviewError::WrongVersion(crate::redact::truncated(
            api_version,
            64,
        )));
    }
    Ok(())
}

/// One bounded line that never quotes the body (src/redact.rs).
fn one_line(e: &serde_json::Error) -> String {
    crate::redact::json_error(e)
}

/// The facts of a request that the decision needs.
pub fn facts(request: &Request<'_>) -> Review {
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
            name: meta.name.as_deref().unwrap_or(&request.name).to_string(),
            namespace: meta
                .namespace
                .as_deref()
                .or(request
                    .namespace
                    .as_deref()
                    .filter(|_| !is_namespace(request)))
                .unwrap_or_default()
                .to_string(),
            objectset_hash: meta.objectset_hash.as_deref().map(str::to_string),
            objectset_id: meta.objectset_id.as_deref().map(str::to_string),
            terminating: meta.deletion_timestamp.is_some(),
        }
    });
    Review {
        operation,
        dry_run: request.dry_run,
        username: request
            .user_info
            .username
            .as_deref()
            .unwrap_or_default()
            .to_string(),
        groups: request
            .user_info
            .groups
            .as_ref()
            .map(|g| g.iter().map(|g| g.to_string()).collect())
            .unwrap_or_default(),
        object,
    }
}

/// A Namespace is cluster-scoped, yet kube-apiserver puts its name in
/// `request.namespace` (the request's namespace is the object's own name there).
fn is_namespace(request: &Request<'_>) -> bool {
    request.resource.group.is_empty() && request.resource.resource.as_str() == "namespaces"
}

/// The answer to one review, as kube-apiserver reads it: an `admission.k8s.io/v1`
/// AdmissionReview whose response allows or denies, with warnings and audit annotations.
///
/// [`Response::to_json`] writes it straight into its bytes — the same document as kube's
/// `AdmissionReview<DynamicObject>` carrying an `AdmissionResponse` ([`Response::to_review`];
/// a test and the fuzzer compare the two for every shape). Building kube's response put
/// each audit annotation in a `HashMap<String, String>` (a SipHash and two allocations
/// apiece) and went through serde: about 14 % of a review's handler, and most of what a
/// resolved owner added to it (BENCHMARKS.md, "This round (fifth session)").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub uid: String,
    /// The refusal text the user sees; `None`: allowed.
    pub denial: Option<String>,
    pub warnings: Vec<String>,
    /// Keys are bare names: kube-apiserver prefixes them with the webhook name.
    pub audit_annotations: Vec<(&'static str, String)>,
}

impl Response {
    pub fn allowed(&self) -> bool {
        self.denial.is_none()
    }

    /// The value of audit annotation `key`.
    pub fn audit_annotation(&self, key: &str) -> Option<&str> {
        self.audit_annotations
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The AdmissionReview's JSON.
    pub fn to_json(&self) -> Vec<u8> {
        use crate::json_text::push_str;
        let texts: usize = self.uid.len()
            + self.denial.as_ref().map_or(0, String::len)
            + self.warnings.iter().map(|w| w.len() + 3).sum::<usize>()
            + self
                .audit_annotations
                .iter()
                .map(|(k, v)| k.len() + v.len() + 6)
                .sum::<usize>();
        let mut out = Vec::with_capacity(texts + 192);
        out.extend_from_slice(
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#,
        );
        push_str(&mut out, &self.uid);
        match &self.denial {
            None => out.extend_from_slice(br#","allowed":true,"status":{}"#),
            Some(message) => {
                // kube's `Status::failure(message, "Forbidden").with_code(403)`, which
                // leaves an empty message out.
                out.extend_from_slice(
                    br#","allowed":false,"status":{"status":"Failure","code":403"#,
                );
                if !message.is_empty() {
                    out.extend_from_slice(br#","message":"#);
                    push_str(&mut out, message);
                }
                out.extend_from_slice(br#","reason":"Forbidden"}"#);
            }
        }
        if !self.audit_annotations.is_empty() {
            out.extend_from_slice(br#","auditAnnotations":{"#);
            for (i, (key, value)) in self.audit_annotations.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_str(&mut out, key);
                out.push(b':');
                push_str(&mut out, value);
            }
            out.push(b'}');
        }
        if !self.warnings.is_empty() {
            out.extend_from_slice(br#","warnings":["#);
            for (i, warning) in self.warnings.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_str(&mut out, warning);
            }
            out.push(b']');
        }
        out.extend_from_slice(b"}}");
        out
    }

    /// The same answer as kube's types (tests, tools; the server writes
    /// [`Response::to_json`]).
    pub fn to_review(&self) -> AdmissionReview<DynamicObject> {
        let mut response = AdmissionResponse::invalid("");
        response.types = TypeMeta {
            api_version: ADMISSION_V1.to_string(),
            kind: ADMISSION_KIND.to_string(),
        };
        response.allowed = true;
        response.result = Status::default();
        response.uid = self.uid.clone();
        if let Some(message) = &self.denial {
            response = response.deny(message);
            response.result = Status::failure(message, "Forbidden").with_code(403);
        }
        if !self.warnings.is_empty() {
            response.warnings = Some(self.warnings.clone());
        }
        response.audit_annotations = self
            .audit_annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        response.into_review()
    }
}

/// The answer to `request` with `verdict` (whose warnings and annotations move into it).
pub fn respond(request: &Request<'_>, verdict: Verdict) -> Response {
    Response {
        uid: request.uid.to_string(),
        denial: verdict.denial,
        warnings: verdict.warnings,
        audit_annotations: verdict.audit_annotations,
    }
}

/// An allowed answer carrying only the uid, for reviews whose object we could not read.
pub fn allow_uid(uid: &str) -> Response {
    Response {
        uid: uid.to_string(),
        ..Response::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer as written is the document kube's types make of it (audit
    /// annotations are a map: compared as JSON values, not bytes).
    fn assert_as_kube_writes_it(response: &Response) {
        let written: serde_json::Value =
            serde_json::from_slice(&response.to_json()).expect("the answer is JSON");
        let kube = serde_json::to_value(response.to_review()).expect("kube's form");
        assert_eq!(written, kube);
        // And kube reads it back as the same answer.
        let back: AdmissionReview<DynamicObject> =
            serde_json::from_slice(&response.to_json()).expect("kube reads it");
        let back = back.response.expect("a response");
        assert_eq!(back.uid, response.uid);
        assert_eq!(back.allowed, response.allowed());
        assert_eq!(
            back.audit_annotations.len(),
            response.audit_annotations.len()
        );
    }

    #[test]
    fn the_answer_is_written_as_kube_writes_it() {
        let allowed = Response {
            uid: "705ab4f5-6393-11e8-b7cc-42010a800002".into(),
            ..Response::default()
        };
        assert_as_kube_writes_it(&allowed);
        assert_eq!(
            String::from_utf8_lossy(&allowed.to_json()),
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true,"status":{}}}"#
        );
        let warned = Response {
            uid: "u".into(),
            denial: None,
            warnings: vec![
                "Fleet GitRepo fleet-local/lots owns this \"x\"".into(),
                "second".into(),
            ],
            audit_annotations: vec![
                ("decision", "warn".into()),
                ("owner", "fleet-local/lots".into()),
                ("reason", "tab\there, newline\n, é→🚀, \u{1}".into()),
            ],
        };
        assert_as_kube_writes_it(&warned);
        let denied = Response {
            uid: "u2".into(),
            denial: Some("refused: \"Git owns it\"\n".into()),
            warnings: Vec::new(),
            audit_annotations: vec![("decision", "deny".into())],
        };
        assert_as_kube_writes_it(&denied);
        let denied_blank = Response {
            denial: Some(String::new()),
            ..Response::default()
        };
        assert_as_kube_writes_it(&denied_blank);
    }

    proptest::proptest! {
        #[test]
        fn any_answer_is_written_as_kube_writes_it(
            uid in ".{0,40}",
            denial in proptest::option::of(".{0,60}"),
            warnings in proptest::collection::vec(".{0,60}", 0..3),
            values in proptest::collection::vec(".{0,40}", 0..4),
        ) {
            const KEYS: [&str; 4] = ["decision", "owner", "gitrepo", "reason"];
            let response = Response {
                uid,
                denial,
                warnings,
                audit_annotations: KEYS.iter().copied().zip(values).collect(),
            };
            assert_as_kube_writes_it(&response);
        }
    }

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

    /// Issue #10: kube-apiserver sends a Namespace's DELETE with `request.namespace`
    /// set to its own name; the Namespace is cluster-scoped and prints without one.
    #[test]
    fn a_namespace_is_cluster_scoped_whatever_request_namespace_says() {
        let mut v: serde_json::Value = serde_json::from_str(REVIEW).expect("json");
        v["request"]["kind"] =
            serde_json::json!({"group": "", "version": "v1", "kind": "Namespace"});
        v["request"]["resource"] =
            serde_json::json!({"group": "", "version": "v1", "resource": "namespaces"});
        v["request"]["name"] = "cattle-dashboards".into();
        v["request"]["namespace"] = "cattle-dashboards".into();
        v["request"]["oldObject"]["kind"] = "Namespace".into();
        v["request"]["oldObject"]["metadata"]["name"] = "cattle-dashboards".into();
        if let Some(m) = v["request"]["oldObject"]["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        let body = serde_json::to_vec(&v).expect("json");
        let Ok(Parsed::Request(req)) = parse(&body) else {
            panic!("must parse")
        };
        let o = facts(&req).object.expect("oldObject");
        assert_eq!((o.kind.as_str(), o.namespace.as_str()), ("namespace", ""));
        assert_eq!(o.display_name(), "cattle-dashboards");
    }

    /// Issue #12: the request without its envelope is told what was expected, not a
    /// serde message about line 3 column 10.
    #[test]
    fn a_bare_admission_request_is_told_what_was_expected() {
        let v: serde_json::Value = serde_json::from_str(REVIEW).expect("json");
        let body = serde_json::to_vec_pretty(&v["request"]).expect("json");
        let err = parse(&body).expect_err("not a review");
        assert_eq!(err.kind(), "not_admission_review");
        let text = err.to_string();
        assert!(text.contains("bare AdmissionRequest"), "{text}");
        assert!(
            text.contains("admission.k8s.io/v1 AdmissionReview"),
            "{text}"
        );
        assert!(text.contains("\"request\""), "{text}");
        assert!(!text.contains("line 3"), "{text}");
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

    /// A string where a struct, list, map or bool is due is refused without being
    /// formatted into serde_json's message: the raw error (before src/redact.rs) is
    /// short and names the type only, whatever the size of the string.
    #[test]
    fn refused_strings_are_not_quoted_even_before_redaction() {
        let huge = format!("fdg-secret-é🦀{}", "é🦀".repeat(64 * 1024));
        let cases: [(&[&str], &str); 12] = [
            (&["request"], "struct Request"),
            (&["request", "kind"], "struct Gvk"),
            (&["request", "resource"], "struct Gvr"),
            (&["request", "userInfo"], "struct UserInfo"),
            (&["request", "userInfo", "groups"], "a sequence"),
            (&["request", "oldObject"], "struct OldObject"),
            (&["request", "oldObject", "metadata"], "struct Meta"),
            (
                &["request", "oldObject", "metadata", "labels"],
                "a map of strings",
            ),
            (
                &["request", "oldObject", "metadata", "annotations"],
                "a map of strings",
            ),
            (
                &["request", "oldObject", "metadata", "finalizers"],
                "a list of strings",
            ),
            (&["request", "dryRun"], "a boolean"),
            (
                &["request", "operation"],
                "one of `CREATE`, `UPDATE`, `DELETE`, `CONNECT`",
            ),
        ];
        for (path, expected) in cases {
            let mut v: serde_json::Value = serde_json::from_str(REVIEW).expect("json");
            let (last, parents) = path.split_last().expect("path");
            let mut at = &mut v;
            for p in parents {
                at = &mut at[*p];
            }
            at[*last] = huge.clone().into();
            let body = serde_json::to_vec(&v).expect("json");
            let raw = serde_json::from_slice::<Body<'_>>(&body)
                .err()
                .unwrap_or_else(|| panic!("{path:?}: a string is refused"))
                .to_string();
            assert!(
                raw.starts_with("invalid type: string, expected ")
                    || raw.starts_with("invalid value: string, expected "),
                "{path:?}: {raw}"
            );
            assert!(raw.contains(expected), "{path:?}: {raw}");
            assert!(
                raw.len() < 160 && !raw.contains("fdg-secret") && !raw.contains('🦀'),
                "{path:?}: {raw}"
            );
            let outcome = parse(&body);
            if *path == ["request"] {
                let Err(ReviewError::NotAdmissionReview(detail)) = outcome else {
                    panic!("request as a string: {outcome:?}")
                };
                assert!(detail.starts_with("invalid value, expected struct EnvelopeRequest"));
            } else {
                let Ok(Parsed::UnexpectedShape { detail, .. }) = outcome else {
                    panic!("{path:?}: {outcome:?}")
                };
                assert!(
                    detail.starts_with(&format!("invalid value, expected {expected} at line 1")),
                    "{path:?}: {detail}"
                );
            }
        }
    }

    #[test]
    fn null_where_a_struct_is_due_is_refused_and_optional_ones_are_none() {
        let mut v: serde_json::Value = serde_json::from_str(REVIEW).expect("json");
        v["request"]["userInfo"] = serde_json::Value::Null;
        let body = serde_json::to_vec(&v).expect("json");
        let Ok(Parsed::UnexpectedShape { detail, .. }) = parse(&body) else {
            panic!("userInfo null")
        };
        assert!(
            detail.starts_with("invalid value, expected struct UserInfo"),
            "{detail}"
        );

        let mut v: serde_json::Value = serde_json::from_str(REVIEW).expect("json");
        v["request"]["oldObject"] = serde_json::Value::Null;
        v["request"]["userInfo"]["groups"] = serde_json::Value::Null;
        v["request"]["operation"] = serde_json::json!({"UPDATE": null});
        let body = serde_json::to_vec(&v).expect("json");
        let Ok(Parsed::Request(req)) = parse(&body) else {
            panic!("null oldObject and groups parse")
        };
        assert!(req.old_object.is_none() && req.user_info.groups.is_none());
        assert_eq!(
            req.operation,
            KubeOperation::Update,
            "tagged form still read"
        );
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
