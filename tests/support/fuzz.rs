//! Fuzzing the request path: body bytes → AdmissionReview → decision → answer.
//!
//! Not part of the library: each of the three drivers includes this file as its
//! module `fuzz` (`#[path = …] mod fuzz;`; RELIABILITY.md, "Fuzzing"):
//! - `fuzz/` — cargo-fuzz (libFuzzer, coverage-guided; builds on stable with `-s none`),
//!   with [`mutate`] as its structure-aware custom mutator;
//! - `examples/fuzz_admission.rs` — a generator-driven runner needing nothing but
//!   cargo (per-input time bound, allocation bound, panics caught);
//! - `tests/fuzz_regressions.rs` — replays the corpus in `tests/fixtures/fuzz/`
//!   and a short generated run on every `cargo test`.
//!
//! [`Checker::check`] runs one input through [`Admission::review`] under a `warn` and
//! a `deny` configuration and panics (what fuzzers detect) when an invariant breaks:
//! answers keep the request's uid and serialize; only `deny` refuses, with 403;
//! warnings are at most 3 of at most 120 characters; a deletion is handed to counting
//! exactly when the answer says `counted: true`, never on a dry run; error texts are
//! one bounded line that never quotes the body ([`SECRET_MARKER`]); the answer is not
//! much larger than the input.

#![allow(dead_code)] // each driver uses a part of it

use std::{
    alloc::{GlobalAlloc, Layout, System},
    fmt,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Instant,
};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use fleet_delete_guard::{
    admission::{Admission, CountedDeletion, DeletionSink, NotCounted, ObjectOnly},
    decide::{MAX_WARNINGS, MAX_WARNING_CHARS},
    policy::{DecisionConfig, Policy, DEFAULT_CONTROLLER_IDENTITIES, DEFAULT_FLEET_IDENTITIES},
    redact::MAX_ERROR_CHARS,
};

/// Strings the generator plants as secret values (Secret data, annotations, labels,
/// uids, …): an error text or log line containing it quoted the body.
pub const SECRET_MARKER: &str = "fdg-secret-";

/// The break-glass group of the `deny` configuration.
pub const BREAK_GLASS_GROUP: &str = "fdg-break-glass";

/// What the path did with one input, as the corpus names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// HTTP 400, with the `errors_total` kind (`not_json`, `wrong_version`, …).
    Rejected(&'static str),
    /// A valid envelope whose object could not be read: allowed, uid kept, logged.
    UnexpectedShape,
    /// A normal decision under the `warn` configuration (`warned`, `not-managed`, …).
    Decided(&'static str),
}

impl Outcome {
    /// `400-not_json`, `unexpected-shape`, `decision-warned`: corpus file name prefixes.
    pub fn label(&self) -> String {
        match self {
            Outcome::Rejected(kind) => format!("400-{kind}"),
            Outcome::UnexpectedShape => "unexpected-shape".to_string(),
            Outcome::Decided(decision) => format!("decision-{decision}"),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// Counts what the admission path hands to counting.
#[derive(Default)]
struct CountingSink(Mutex<Vec<CountedDeletion>>);

impl DeletionSink for CountingSink {
    fn record(&self, deletion: CountedDeletion) -> Result<(), NotCounted> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(deletion);
        Ok(())
    }
}

impl CountingSink {
    fn take(&self) -> Vec<CountedDeletion> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The invariant checker: two configurations of the real admission path.
pub struct Checker {
    warn: Admission,
    deny: Admission,
    warn_sink: Arc<CountingSink>,
    deny_sink: Arc<CountingSink>,
}

impl Default for Checker {
    fn default() -> Self {
        Self::new()
    }
}

impl Checker {
    pub fn new() -> Self {
        let warn_sink = Arc::new(CountingSink::default());
        let deny_sink = Arc::new(CountingSink::default());
        let deny_config = DecisionConfig {
            policy: Policy::Deny,
            break_glass_groups: vec![BREAK_GLASS_GROUP.to_string()],
            ..DecisionConfig::default()
        };
        Checker {
            warn: Admission::new(
                DecisionConfig::default(),
                Arc::new(ObjectOnly),
                warn_sink.clone(),
            ),
            deny: Admission::new(deny_config, Arc::new(ObjectOnly), deny_sink.clone()),
            warn_sink,
            deny_sink,
        }
    }

    /// Run `body` through the path under both configurations; panic on a broken
    /// invariant. Returns the outcome under `warn` (the corpus's documented outcome).
    pub fn check(&self, body: &[u8]) -> Outcome {
        self.check_detailed(body).0
    }

    /// [`Checker::check`], with the error text or unexpected-shape detail (empty for
    /// decisions): what drivers use to tell new behaviour from known.
    pub fn check_detailed(&self, body: &[u8]) -> (Outcome, String) {
        let marker_in_type = marker_in_type_fields(body);
        let (warn, text) = self.one(&self.warn, &self.warn_sink, body, false, marker_in_type);
        let (deny, _) = self.one(&self.deny, &self.deny_sink, body, true, marker_in_type);
        match (&warn, &deny) {
            (Outcome::Rejected(a), Outcome::Rejected(b)) => assert_eq!(a, b, "same error kind"),
            (Outcome::UnexpectedShape, Outcome::UnexpectedShape) => {}
            (Outcome::Decided(_), Outcome::Decided(_)) => {}
            _ => panic!("parsing must not depend on the policy: {warn} vs {deny}"),
        }
        (warn, text)
    }

    fn one(
        &self,
        admission: &Admission,
        sink: &CountingSink,
        body: &[u8],
        deny: bool,
        marker_in_type: bool,
    ) -> (Outcome, String) {
        let result = admission.review(body, Instant::now());
        let counted = sink.take();
        let answer = match result {
            Err(e) => {
                assert!(counted.is_empty(), "a rejected body counts nothing");
                let text = e.to_string();
                check_error_text(&text, marker_in_type);
                let kind = e.kind();
                assert!(
                    [
                        "not_json",
                        "not_admission_review",
                        "wrong_version",
                        "no_request"
                    ]
                    .contains(&kind),
                    "unknown error kind {kind}"
                );
                return (Outcome::Rejected(kind), text);
            }
            Ok(answer) => answer,
        };
        let summary = &answer.summary;
        let json = answer.response.to_json();
        // The bytes written are the document kube's types make of the same answer; the
        // checks below read kube's form.
        let written: serde_json::Value = serde_json::from_slice(&json).expect("the answer is JSON");
        let review = answer.response.to_review();
        let kube = serde_json::to_value(&review).expect("kube's form serializes");
        assert_eq!(written, kube, "the answer as written and as kube writes it");
        let response = review.response.as_ref().expect("an answer has a response");
        assert_eq!(
            response.uid, summary.uid,
            "the answer keeps the request's uid"
        );
        assert!(
            json.len() <= 2 * body.len() + 8192,
            "answer of {} bytes for a body of {}",
            json.len(),
            body.len()
        );
        if let Some(detail) = &summary.unexpected_shape {
            assert!(counted.is_empty(), "an unreadable object counts nothing");
            assert!(response.allowed, "an unexpected shape is allowed");
            assert_eq!(summary.decision, "unexpected-shape");
            check_error_text(detail, false);
            return (Outcome::UnexpectedShape, detail.clone());
        }
        let decision = summary.decision;
        if !response.allowed {
            assert!(deny, "only the deny policy refuses");
            assert_eq!(decision, "denied");
            assert_eq!(response.result.code, 403, "a refusal is a 403");
        }
        if decision == "denied" {
            assert!(!response.allowed, "denied means refused");
        }
        let warnings = response.warnings.as_deref().unwrap_or_default();
        assert!(warnings.len() <= MAX_WARNINGS, "{warnings:?}");
        for w in warnings {
            assert!(w.chars().count() <= MAX_WARNING_CHARS, "{w:?}");
        }
        assert_eq!(summary.warnings, warnings.len());
        let annotations = &response.audit_annotations;
        for key in annotations.keys() {
            assert!(
                [
                    "owner",
                    "decision",
                    "counted",
                    "reason",
                    "gitrepo",
                    "bundle",
                    "objectset-id"
                ]
                .contains(&key.as_str()),
                "unknown audit annotation {key}"
            );
        }
        let says_counted = annotations.get("counted").map(String::as_str) == Some("true");
        assert_eq!(
            says_counted,
            !counted.is_empty(),
            "counted annotation and counting agree"
        );
        assert!(counted.len() <= 1, "one review counts at most once");
        if summary.dry_run {
            assert!(counted.is_empty(), "a dry run never counts");
        }
        if let Some(c) = counted.first() {
            assert_eq!(c.review_uid, summary.uid);
            assert!(
                matches!(
                    decision,
                    "controller" | "allowed" | "warned" | "break-glass"
                ),
                "{decision} must not count"
            );
        }
        // The decision labels are the metric's fixed set.
        assert!(
            fleet_delete_guard::decide::Outcome::from_label(decision).is_some(),
            "unknown decision {decision}"
        );
        (Outcome::Decided(decision), String::new())
    }
}

/// Whether the top-level `apiVersion` or `kind` carries the marker: those two are
/// echoed (bounded) in the 400 answer, as they name what was sent.
fn marker_in_type_fields(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Types {
        #[serde(rename = "apiVersion", default)]
        api_version: serde_json::Value,
        #[serde(default)]
        kind: serde_json::Value,
    }
    match serde_json::from_slice::<Types>(body) {
        Ok(t) => {
            t.api_version.to_string().contains(SECRET_MARKER)
                || t.kind.to_string().contains(SECRET_MARKER)
        }
        // Not parseable as such: any echo would be of the first value of the
        // duplicated or broken field; be lenient only if the marker is near them.
        Err(_) => false,
    }
}

fn check_error_text(text: &str, marker_allowed: bool) {
    assert!(
        !text.contains('\n') && !text.contains('\r'),
        "error text is one line: {text:?}"
    );
    // The reason is `<fixed prefix>: <bounded detail>`.
    assert!(
        text.chars().count() <= MAX_ERROR_CHARS + 100,
        "error text is bounded ({} chars): {text:?}",
        text.chars().count()
    );
    if !marker_allowed {
        assert!(
            !text.contains(SECRET_MARKER),
            "error text quotes the body: {text:?}"
        );
    }
}

// ---------------------------------------------------------------------------------
// Allocation accounting for the drivers.

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// A global allocator that tracks bytes in use and their peak. Install it in a driver
/// binary (`#[global_allocator] static A: CountingAlloc = CountingAlloc;`) and bracket
/// each input with [`start_measuring`] / [`peak_since`]. Single-threaded drivers only.
pub struct CountingAlloc;

fn note_alloc(size: usize) {
    let now = ALLOCATED.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters
// are updated besides.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (see alloc).
        unsafe { System.dealloc(ptr, layout) };
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
            note_alloc(new_size);
        }
        p
    }
}

/// Start a measurement: returns the bytes in use now.
pub fn start_measuring() -> usize {
    let now = ALLOCATED.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

/// Peak bytes in use above `base` since [`start_measuring`] returned it.
pub fn peak_since(base: usize) -> usize {
    PEAK.load(Ordering::Relaxed).saturating_sub(base)
}

/// The allocation bound the drivers enforce per input: parsing reads metadata only,
/// so what one review allocates is linear in its body (strings with escapes are
/// copied; the answer echoes a few of them), with a constant for the answer.
pub fn allocation_bound(input_len: usize) -> usize {
    8 * input_len + (1 << 20)
}

// ---------------------------------------------------------------------------------
// The structure-aware generator.

/// SplitMix64: small, fast, seedable, and the same everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// A JSON tree that keeps member order, allows duplicate keys and carries raw text
/// (huge numbers, deep nesting, invalid escapes) — what serde_json's Value cannot.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// Number text as written.
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
    /// Emitted verbatim.
    Raw(String),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json, E> {
                Ok(Json::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
                Ok(Json::Num(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
                Ok(Json::Num(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
                Ok(Json::Num(
                    serde_json::Number::from_f64(v).map_or("0".to_string(), |n| n.to_string()),
                ))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
                Ok(Json::Str(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
                Ok(Json::Str(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
                Json::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Arr(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut members = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    members.push((k, v));
                }
                Ok(Json::Obj(members))
            }
        }
        d.deserialize_any(V)
    }
}

impl Json {
    pub fn parse(bytes: &[u8]) -> Option<Json> {
        serde_json::from_slice(bytes).ok()
    }

    /// Serialize; `pretty` adds newlines and indentation as kube-apiserver does not.
    pub fn write(&self, out: &mut Vec<u8>, pretty: bool, depth: usize) {
        let indent = |out: &mut Vec<u8>, d: usize| {
            if pretty {
                out.push(b'\n');
                out.extend(std::iter::repeat_n(b' ', 2 * d));
            }
        };
        match self {
            Json::Null => out.extend_from_slice(b"null"),
            Json::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Json::Num(n) | Json::Raw(n) => out.extend_from_slice(n.as_bytes()),
            Json::Str(s) => write_str(out, s),
            Json::Arr(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    indent(out, depth + 1);
                    item.write(out, pretty, depth + 1);
                }
                if !items.is_empty() {
                    indent(out, depth);
                }
                out.push(b']');
            }
            Json::Obj(members) => {
                out.push(b'{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    indent(out, depth + 1);
                    write_str(out, k);
                    out.push(b':');
                    if pretty {
                        out.push(b' ');
                    }
                    v.write(out, pretty, depth + 1);
                }
                if !members.is_empty() {
                    indent(out, depth);
                }
                out.push(b'}');
            }
        }
    }

    pub fn to_bytes(&self, pretty: bool) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out, pretty, 0);
        out
    }

    /// The member `key` of an object (the first one when duplicated).
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Json> {
        match self {
            Json::Obj(members) => members.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The node at `path`, creating objects on the way (replacing non-objects).
    pub fn at_path(&mut self, path: &[&str]) -> &mut Json {
        let mut node = self;
        for key in path {
            if !matches!(node, Json::Obj(_)) {
                *node = Json::Obj(Vec::new());
            }
            let Json::Obj(members) = node else {
                unreachable!("made an object above")
            };
            let i = match members.iter().position(|(k, _)| k == key) {
                Some(i) => i,
                None => {
                    members.push((key.to_string(), Json::Null));
                    members.len() - 1
                }
            };
            node = &mut members[i].1;
        }
        node
    }

    fn size_hint(&self) -> usize {
        match self {
            Json::Null | Json::Bool(_) => 5,
            Json::Num(s) | Json::Raw(s) => s.len(),
            Json::Str(s) => s.len() + 2,
            Json::Arr(items) => 2 + items.iter().map(|i| i.size_hint() + 1).sum::<usize>(),
            Json::Obj(m) => {
                2 + m
                    .iter()
                    .map(|(k, v)| k.len() + 4 + v.size_hint())
                    .sum::<usize>()
            }
        }
    }

    /// Number of nodes (for picking one at random).
    fn count(&self) -> usize {
        1 + match self {
            Json::Arr(items) => items.iter().map(Json::count).sum(),
            Json::Obj(members) => members.iter().map(|(_, v)| v.count()).sum(),
            _ => 0,
        }
    }

    /// The `n`-th node in pre-order (`n < self.count()`).
    fn nth_mut(&mut self, n: usize) -> &mut Json {
        fn go<'a>(node: &'a mut Json, n: &mut usize) -> Option<&'a mut Json> {
            if *n == 0 {
                return Some(node);
            }
            *n -= 1;
            match node {
                Json::Arr(items) => items.iter_mut().find_map(|i| go(i, n)),
                Json::Obj(members) => members.iter_mut().find_map(|(_, v)| go(v, n)),
                _ => None,
            }
        }
        let mut n = n;
        go(self, &mut n).expect("n < count()")
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly as JSON requires; a String always serializes.
    serde_json::to_writer(&mut *out, s).unwrap_or_default();
}

/// Keys on the path of the fields the admission path reads.
const HOT_PATHS: &[&[&str]] = &[
    &["apiVersion"],
    &["kind"],
    &["request"],
    &["request", "uid"],
    &["request", "kind"],
    &["request", "kind", "kind"],
    &["request", "kind", "group"],
    &["request", "resource"],
    &["request", "resource", "resource"],
    &["request", "resource", "group"],
    &["request", "name"],
    &["request", "namespace"],
    &["request", "operation"],
    &["request", "userInfo"],
    &["request", "userInfo", "username"],
    &["request", "userInfo", "groups"],
    &["request", "dryRun"],
    &["request", "object"],
    &["request", "options"],
    &["request", "oldObject"],
    &["request", "oldObject", "metadata"],
    &["request", "oldObject", "metadata", "name"],
    &["request", "oldObject", "metadata", "namespace"],
    &["request", "oldObject", "metadata", "uid"],
    &["request", "oldObject", "metadata", "labels"],
    &[
        "request",
        "oldObject",
        "metadata",
        "labels",
        "objectset.rio.cattle.io/hash",
    ],
    &["request", "oldObject", "metadata", "annotations"],
    &[
        "request",
        "oldObject",
        "metadata",
        "annotations",
        "objectset.rio.cattle.io/id",
    ],
    &["request", "oldObject", "metadata", "deletionTimestamp"],
    &["request", "oldObject", "metadata", "creationTimestamp"],
    &["request", "oldObject", "metadata", "finalizers"],
    &["request", "oldObject", "metadata", "managedFields"],
    &["request", "oldObject", "data"],
    &["response"],
];

const WORDS: &[&str] = &[
    "",
    "DELETE",
    "CREATE",
    "UPDATE",
    "CONNECT",
    "delete",
    "admission.k8s.io/v1",
    "admission.k8s.io/v1beta1",
    "AdmissionReview",
    "alice",
    BREAK_GLASS_GROUP,
    "system:authenticated",
    "system:serviceaccount:cattle-fleet-system:fleet-agent",
    "system:serviceaccounts:cattle-fleet-system",
    "system:serviceaccount:kube-system:namespace-controller",
    "objectset.rio.cattle.io/hash",
    "objectset.rio.cattle.io/id",
    "default-lots-config2",
    "2026-08-21T14:30:00Z",
    "2026-08-21T14:30:00.123456789+02:00",
    "2026-13-45T99:99:99Z",
    "yesterday",
    "0001-01-01T00:00:00Z",
    "ConfigMap",
    "Secret",
    "configmaps",
    "apps",
    "ü",
    "名前",
    "🦀",
    "e\u{301}",
    "\u{202e}rtl",
    "\u{200b}",
    "\u{0}",
    "\u{1b}[31m",
    "line\nbreak",
    "tab\there",
    "quote\"back\\slash",
];

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "0.5",
    "1e308",
    "1e400",
    "-1e400",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "1E+2",
    "0.0000000000000000000000000001",
];

/// Text that is not valid JSON inside a string, or is valid but odd.
const RAW_STRINGS: &[&str] = &[
    r#""\ud800""#,
    r#""\udc00\ud800""#,
    r#""\u0000""#,
    r#""\x41""#,
    r#""\u12""#,
    r#""unterminated"#,
    "\"\u{7f}\"",
    "\"\t\"",
];

fn secret(rng: &mut Rng) -> String {
    format!("{SECRET_MARKER}{}", rng.below(1 << 20))
}

/// A random string: a word, a secret, a long string, or a mix.
fn random_string(rng: &mut Rng, budget: usize) -> String {
    match rng.below(10) {
        0..=3 => rng.pick(WORDS).to_string(),
        4 | 5 => secret(rng),
        6 => {
            // Long, sometimes with a multi-byte character across the 120th.
            let len = 1 + rng.below(budget.clamp(1, 4096));
            let c = rng.pick(&["a", "é", "名", "🦀"]);
            c.repeat(len / c.len().max(1) + 1)
        }
        7 if budget > 100_000 && rng.one_in(4) => {
            // Huge: up to the budget.
            "x".repeat(1 + rng.below(budget))
        }
        _ => {
            let n = 1 + rng.below(4);
            (0..n)
                .map(|_| rng.pick(WORDS).to_string())
                .collect::<Vec<_>>()
                .join(rng.pick(&["", "-", "/", ":"]))
        }
    }
}

fn random_scalar(rng: &mut Rng, budget: usize) -> Json {
    match rng.below(8) {
        0 => Json::Null,
        1 => Json::Bool(rng.one_in(2)),
        2 => Json::Num(rng.pick(NUMBERS).to_string()),
        3 => Json::Raw(rng.pick(RAW_STRINGS).to_string()),
        _ => Json::Str(random_string(rng, budget)),
    }
}

fn random_value(rng: &mut Rng, depth: usize, budget: usize) -> Json {
    if depth == 0 || rng.below(3) > 0 {
        return random_scalar(rng, budget);
    }
    let n = rng.below(5);
    if rng.one_in(2) {
        Json::Arr(
            (0..n)
                .map(|_| random_value(rng, depth - 1, budget / 4))
                .collect(),
        )
    } else {
        Json::Obj(
            (0..n)
                .map(|_| {
                    (
                        random_string(rng, 32),
                        random_value(rng, depth - 1, budget / 4),
                    )
                })
                .collect(),
        )
    }
}

/// `[[[…]]]` or `{"a":{"a":…}}` around `inner`, `depth` levels deep (serde_json
/// refuses more than 128).
fn nested(rng: &mut Rng, inner: &Json) -> Json {
    let depth = rng.pick(&[2, 64, 126, 127, 128, 129, 200, 5000]);
    let inner = inner.to_bytes(false);
    let mut out = Vec::with_capacity(inner.len() + depth * 6);
    let array = rng.one_in(2);
    for _ in 0..depth {
        out.extend_from_slice(if array { b"[" } else { b"{\"a\":" });
    }
    out.extend_from_slice(&inner);
    for _ in 0..depth {
        out.push(if array { b']' } else { b'}' });
    }
    Json::Raw(String::from_utf8_lossy(&out).into_owned())
}

/// A plausible value for a hot field: the values the decision distinguishes.
fn plausible(rng: &mut Rng, path: &[&str]) -> Json {
    let last = path.last().copied().unwrap_or_default();
    let s = |v: &str| Json::Str(v.to_string());
    match last {
        "operation" => s(rng.pick(&["DELETE", "CREATE", "UPDATE", "CONNECT"])),
        "username" => s(rng.pick(&[
            "alice",
            "system:serviceaccount:cattle-fleet-system:fleet-agent",
            "system:serviceaccount:kube-system:generic-garbage-collector",
            "system:serviceaccount:kube-system:namespace-controller",
        ])),
        "groups" => Json::Arr(
            (0..rng.below(4))
                .map(|_| {
                    s(rng.pick(&[
                        "system:authenticated",
                        BREAK_GLASS_GROUP,
                        DEFAULT_FLEET_IDENTITIES[0],
                        DEFAULT_CONTROLLER_IDENTITIES[0],
                    ]))
                })
                .collect(),
        ),
        "dryRun" => Json::Bool(rng.one_in(2)),
        "deletionTimestamp" | "creationTimestamp" => {
            s(rng.pick(&["2026-08-21T14:30:00Z", "2026-08-21T14:30:00.5Z"]))
        }
        "finalizers" => Json::Arr(vec![s("example.com/keep")]),
        "objectset.rio.cattle.io/hash" | "objectset.rio.cattle.io/id" => {
            Json::Str(if rng.one_in(3) {
                secret(rng)
            } else {
                "default-lots-config2".to_string()
            })
        }
        "apiVersion" => s(rng.pick(&["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])),
        "kind" => s("AdmissionReview"),
        _ => Json::Str(secret(rng)),
    }
}

/// One structural mutation of `tree` (and sometimes of a second tree, `other`).
fn mutate_tree(tree: &mut Json, other: &Json, rng: &mut Rng, budget: usize) {
    // Half the time aim at a field the path reads; else at any node.
    let node: &mut Json = if rng.one_in(2) {
        tree.at_path(rng.pick(HOT_PATHS))
    } else {
        let n = rng.below(tree.count());
        tree.nth_mut(n)
    };
    match rng.below(12) {
        0 | 1 => *node = random_value(rng, 3, budget),
        2 => *node = plausible(rng, &[]),
        3 => *node = nested(rng, node),
        4 => {
            // Drop a member or an element.
            match node {
                Json::Obj(m) if !m.is_empty() => {
                    let i = rng.below(m.len());
                    m.remove(i);
                }
                Json::Arr(a) if !a.is_empty() => {
                    let i = rng.below(a.len());
                    a.remove(i);
                }
                _ => *node = Json::Null,
            }
        }
        5 => {
            // Duplicate a key, with another value first or last.
            if let Json::Obj(m) = node {
                if !m.is_empty() {
                    let i = rng.below(m.len());
                    let key = m[i].0.clone();
                    let value = random_value(rng, 2, budget);
                    let at = if rng.one_in(2) { i } else { m.len() };
                    m.insert(at, (key, value));
                }
            }
        }
        6 => {
            // Copy a subtree of the other tree here.
            let mut donor = other.clone();
            let n = rng.below(donor.count());
            *node = std::mem::replace(donor.nth_mut(n), Json::Null);
        }
        7 => {
            if let Json::Obj(m) = node {
                let n = m.len();
                for i in (1..n).rev() {
                    let j = rng.below(i + 1);
                    m.swap(i, j);
                }
            } else {
                *node = Json::Arr(vec![node.clone()]);
            }
        }
        8 if budget > (1 << 20) && rng.one_in(2) => {
            // A huge string where the path reads one: up to the budget.
            let path = rng.pick(HOT_PATHS);
            let c = rng.pick(&["x", "é", "\\n", "🦀"]);
            *tree.at_path(path) = Json::Str(c.repeat(rng.below(budget) / c.len() + 1));
        }
        8 => {
            // Many members: a big map of labels or annotations.
            let n = 1 + rng.below((budget / 64).clamp(1, 20_000));
            *node = Json::Obj(
                (0..n)
                    .map(|i| (format!("k{i}"), Json::Str(format!("{SECRET_MARKER}{i}"))))
                    .collect(),
            );
        }
        _ => {
            let path = rng.pick(HOT_PATHS);
            *tree.at_path(path) = plausible(rng, path);
        }
    }
}

/// Byte-level mutations of serialized text.
fn mutate_text(bytes: &mut Vec<u8>, rng: &mut Rng, max_len: usize) {
    let len = bytes.len();
    match rng.below(10) {
        0 if len > 0 => bytes.truncate(rng.below(len)),
        1 => {
            let at = rng.below(len + 1);
            let junk: &[u8] = rng.pick(&[
                &b"\xff\xfe"[..],
                b"\xc3\x28",
                b"\xed\xa0\x80",
                b"\x00",
                b"\"",
                b"}",
                b"]",
                b",",
                b"\\",
                b"\\u",
                b"{\"",
                b"null",
                b"NaN",
                b"Infinity",
                b"/*c*/",
            ]);
            bytes.splice(at..at, junk.iter().copied());
        }
        2 if len > 0 => {
            let i = rng.below(len);
            bytes[i] ^= 1 << rng.below(8);
        }
        3 => {
            bytes.splice(0..0, b"\xef\xbb\xbf".iter().copied());
        }
        4 => bytes.extend_from_slice(rng.pick(&[&b" {}"[..], b"\n{\"kind\":1}", b"x", b"\x00"])),
        5 if len > 0 => {
            // Replace a digit with hundreds of them.
            if let Some(i) = bytes.iter().position(|b| b.is_ascii_digit()) {
                let digits = vec![b'9'; 1 + rng.below(400)];
                bytes.splice(i..i + 1, digits);
            }
        }
        6 if len > 1 => {
            // Repeat a slice (long strings, repeated members).
            let a = rng.below(len);
            let b = (a + 1 + rng.below(64)).min(len);
            let piece = bytes[a..b].to_vec();
            let times = 1 + rng.below(8);
            for _ in 0..times {
                bytes.splice(b..b, piece.iter().copied());
            }
        }
        7 => {
            let n = 1 + rng.below(32);
            let at = rng.below(len + 1);
            let random: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            bytes.splice(at..at, random);
        }
        _ => {
            // Inside a string: an invalid or odd escape.
            if let Some(i) = bytes.iter().rposition(|&b| b == b'"') {
                let esc = rng.pick(&[&br"\ud800"[..], br"\udfff", br"\u0000", br"\q", br"\u00e9"]);
                bytes.splice(i..i, esc.iter().copied());
            }
        }
    }
    bytes.truncate(max_len);
}

/// A structure-aware mutation of `input` within `max_len` bytes: parse it as JSON
/// (keeping order and duplicates), change 1–4 things at fields the path reads or
/// anywhere (wrong types, nulls, huge strings, unicode, deep nesting, duplicated
/// keys, secrets), serialize it compactly or pretty, and sometimes damage the text
/// (truncation, random bytes, invalid UTF-8 and escapes, BOM, trailing data).
/// Bodies that are not JSON get byte-level mutations or are replaced by a seed.
pub fn mutate(input: &[u8], seeds: &[Vec<u8>], rng: &mut Rng, max_len: usize) -> Vec<u8> {
    let seed = |rng: &mut Rng| -> Vec<u8> {
        if seeds.is_empty() {
            b"{}".to_vec()
        } else {
            seeds[rng.below(seeds.len())].clone()
        }
    };
    let parsed = Json::parse(input);
    let was_json = parsed.is_some();
    let base = match parsed {
        Some(tree) => Some(tree),
        None if rng.below(3) > 0 => Json::parse(&seed(rng)),
        None => None,
    };
    let mut bytes = match base {
        Some(mut tree) => {
            let other = Json::parse(&seed(rng)).unwrap_or(Json::Null);
            let budget = max_len.saturating_sub(tree.size_hint());
            for _ in 0..1 + rng.below(4) {
                mutate_tree(&mut tree, &other, rng, budget);
            }
            tree.to_bytes(rng.one_in(4))
        }
        None => input.to_vec(),
    };
    if rng.one_in(6) || !was_json {
        mutate_text(&mut bytes, rng, max_len);
    }
    bytes.truncate(max_len);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    const REVIEW: &[u8] = include_bytes!("../fixtures/admissionreview-delete-configmap.json");

    #[test]
    fn json_round_trips_with_order_and_duplicates() {
        let text = br#"{"b":1,"a":[true,null,"x\n"],"b":{"c":1e400}}"#;
        // serde_json refuses 1e400 as f64; as raw text it stays.
        assert!(Json::parse(text).is_none());
        let tree = Json::Obj(vec![
            ("b".into(), Json::Num("1".into())),
            (
                "a".into(),
                Json::Arr(vec![Json::Bool(true), Json::Null, Json::Str("x\n".into())]),
            ),
            ("b".into(), Json::Raw("1e400".into())),
        ]);
        assert_eq!(
            tree.to_bytes(false),
            br#"{"b":1,"a":[true,null,"x\n"],"b":1e400}"#
        );
        let parsed = Json::parse(REVIEW).expect("fixture");
        assert_eq!(
            Json::parse(&parsed.to_bytes(true)).expect("pretty parses"),
            parsed
        );
    }

    #[test]
    fn the_fixture_is_warned_and_mutations_stay_in_bounds() {
        let checker = Checker::new();
        assert_eq!(checker.check(REVIEW), Outcome::Decided("warned"));
        let seeds = vec![REVIEW.to_vec()];
        let mut rng = Rng::new(7);
        let mut input = REVIEW.to_vec();
        for _ in 0..300 {
            input = mutate(&input, &seeds, &mut rng, 64 * 1024);
            assert!(input.len() <= 64 * 1024);
            checker.check(&input);
            if rng.one_in(3) {
                input = REVIEW.to_vec();
            }
        }
    }
}
