//! `Status` error objects shaped like the apiserver's (`k8s.io/apimachinery/pkg/api/errors`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::resources::Gvr;

/// An API error as the double answers it: a `Status` with `status: Failure`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
    /// Sent as the `Retry-After` header and `details.retryAfterSeconds`.
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

fn resource_details(gvr: &Gvr, name: &str) -> Value {
    let mut d = Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !gvr.group.is_empty() {
        d.insert("group".into(), json!(gvr.group));
    }
    d.insert("kind".into(), json!(gvr.resource));
    Value::Object(d)
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// The reason the apiserver pairs with an HTTP code.
    pub fn reason_for_code(code: u16) -> &'static str {
        match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            406 => "NotAcceptable",
            409 => "Conflict",
            410 => "Expired",
            413 => "RequestEntityTooLarge",
            415 => "UnsupportedMediaType",
            422 => "Invalid",
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ if code >= 500 => "InternalError",
            _ => "",
        }
    }

    /// A generic error for `code` with the apiserver's usual wording.
    pub fn for_code(code: u16, gvr: Option<&Gvr>, name: &str) -> Self {
        let reason = Self::reason_for_code(code);
        let message = match code {
            403 => match gvr {
                Some(g) => format!(
                    "{} \"{}\" is forbidden: User \"system:serviceaccount:default:default\" cannot access resource \"{}\" in API group \"{}\"",
                    g.qualified_resource(),
                    name,
                    g.resource,
                    g.group
                ),
                None => "forbidden".to_string(),
            },
            404 => match gvr {
                Some(g) if !name.is_empty() => format!("{} \"{}\" not found", g.qualified_resource(), name),
                _ => "the server could not find the requested resource".to_string(),
            },
            409 => match gvr {
                Some(g) => format!(
                    "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                    g.qualified_resource(),
                    name
                ),
                None => "the server reported a conflict".to_string(),
            },
            429 => "the server has received too many requests and has asked us to try again later".to_string(),
            500 => "Internal error occurred: injected fault".to_string(),
            503 => "the server is currently unable to handle the request".to_string(),
            504 => "the server was unable to return a response in the time allotted, but may still be processing the request".to_string(),
            _ => format!("the server responded with the status code {code}"),
        };
        let mut e = Self::new(code, reason, message);
        if let Some(g) = gvr {
            e.details = Some(resource_details(g, name));
        }
        e
    }

    pub fn not_found(gvr: &Gvr, name: &str) -> Self {
        let mut e = Self::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", gvr.qualified_resource(), name),
        );
        e.details = Some(resource_details(gvr, name));
        e
    }

    pub fn path_not_found() -> Self {
        let mut e = Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
        e.details = Some(json!({}));
        e
    }

    pub fn already_exists(gvr: &Gvr, name: &str) -> Self {
        let mut e = Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", gvr.qualified_resource(), name),
        );
        e.details = Some(resource_details(gvr, name));
        e
    }

    /// The optimistic-concurrency conflict (stale `resourceVersion`).
    pub fn conflict(gvr: &Gvr, name: &str) -> Self {
        Self::conflict_with(
            gvr,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn conflict_with(gvr: &Gvr, name: &str, why: &str) -> Self {
        let mut e = Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {}",
                gvr.qualified_resource(),
                name,
                why
            ),
        );
        e.details = Some(resource_details(gvr, name));
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 422 `Invalid` with one field cause, like `errors.NewInvalid`.
    pub fn invalid(gvr: &Gvr, kind: &str, name: &str, field: &str, detail: &str) -> Self {
        let group_kind = if gvr.group.is_empty() {
            kind.to_string()
        } else {
            format!("{}.{}", kind, gvr.group)
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{group_kind} \"{name}\" is invalid: {field}: {detail}"),
        );
        let mut d = resource_details(gvr, name);
        if let Value::Object(m) = &mut d {
            m.insert("kind".into(), json!(kind));
            m.insert(
                "causes".into(),
                json!([{"reason": "FieldValueInvalid", "message": detail, "field": field}]),
            );
        }
        e.details = Some(d);
        e
    }

    pub fn method_not_allowed() -> Self {
        let mut e = Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        );
        e.details = Some(json!({}));
        e
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
        )
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        let m = message.into();
        let mut e = Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {m}"),
        );
        e.details = Some(json!({"causes": [{"message": m}]}));
        e
    }

    pub fn with_retry_after(mut self, secs: Option<u64>) -> Self {
        self.retry_after = secs;
        if let Some(s) = secs {
            let mut d = match self.details.take() {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            d.insert("retryAfterSeconds".into(), json!(s));
            self.details = Some(Value::Object(d));
        }
        self
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), json!("Status"));
        m.insert("apiVersion".into(), json!("v1"));
        m.insert("metadata".into(), json!({}));
        m.insert("status".into(), json!("Failure"));
        m.insert("message".into(), json!(self.message));
        if !self.reason.is_empty() {
            m.insert("reason".into(), json!(self.reason));
        }
        if let Some(d) = &self.details {
            m.insert("details".into(), d.clone());
        }
        m.insert("code".into(), json!(self.code));
        Value::Object(m)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        let mut resp = (code, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// A successful `Status` (what built-in resources answer to DELETE).
pub(crate) fn success_status(gvr: &Gvr, name: &str, uid: Option<&str>) -> Value {
    let mut details = resource_details(gvr, name);
    if let (Value::Object(m), Some(u)) = (&mut details, uid) {
        m.insert("uid".into(), json!(u));
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}
