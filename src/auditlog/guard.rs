//! Rows of their own for changes to the guard itself: deletions, updates and patches
//! (and re-creations) of the webhook's own ValidatingWebhookConfiguration, Deployment,
//! Service and certificate Secret. They are not Fleet-managed, but "who took the guard
//! out of the API path before the deletions" belongs in the same report.
//!
//! Cheap for every other line: a line is read as JSON only when one of the objects'
//! names appears in it as a JSON string (`"fleet-delete-guard"`), which the audit
//! events of requests on those objects carry in `objectRef.name`.

use std::{
    borrow::Cow,
    io::{self, Write},
};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::event::{ObjectRefView, Outcome, StatusView, UserView};

/// Which objects are the guard's (`audit --guard-*` flags).
#[derive(Debug, Clone)]
pub struct GuardObjects {
    /// The webhook's namespace (Deployment, Service, Secrets).
    pub namespace: String,
    /// Name of the ValidatingWebhookConfiguration, the Deployment and the Service.
    pub name: String,
    /// Names of the certificate Secrets.
    pub secrets: Vec<String>,
    /// `"name"` for each name: what a line must contain to be read.
    needles: Vec<Vec<u8>>,
    /// `"` and the names' common prefix (`"fleet-delete-guard` by default): one search
    /// rules out almost every line before the per-name searches.
    prefilter: Vec<u8>,
}

impl GuardObjects {
    pub fn new(namespace: &str, name: &str, secrets: &[String]) -> Self {
        let needles: Vec<Vec<u8>> = std::iter::once(name)
            .chain(secrets.iter().map(String::as_str))
            .filter(|n| !n.is_empty())
            .map(|n| format!("\"{n}\"").into_bytes())
            .collect();
        let mut prefilter = needles.first().cloned().unwrap_or_default();
        for n in &needles {
            let common = prefilter.iter().zip(n).take_while(|(a, b)| a == b).count();
            prefilter.truncate(common);
        }
        GuardObjects {
            namespace: namespace.to_string(),
            name: name.to_string(),
            secrets: secrets.to_vec(),
            needles,
            prefilter,
        }
    }

    /// The kind of guard object `object_ref` names, if any.
    fn kind_of(
        &self,
        group: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Option<&'static str> {
        match (group, resource) {
            ("admissionregistration.k8s.io", "validatingwebhookconfigurations")
                if name == self.name =>
            {
                Some("ValidatingWebhookConfiguration")
            }
            ("apps", "deployments") if namespace == self.namespace && name == self.name => {
                Some("Deployment")
            }
            ("", "services") if namespace == self.namespace && name == self.name => Some("Service"),
            ("", "secrets")
                if namespace == self.namespace && self.secrets.iter().any(|s| s == name) =>
            {
                Some("Secret")
            }
            _ => None,
        }
    }
}

/// One change (or attempted change) to a guard object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GuardChange {
    pub time: Timestamp,
    pub audit_id: String,
    pub verb: String,
    pub user: String,
    pub impersonated_user: Option<String>,
    pub user_agent: String,
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub subresource: String,
    pub code: u16,
    pub outcome: Outcome,
    /// The patch, when the audit level recorded it (compact JSON, cut at 200 characters).
    pub patch: String,
}

impl GuardChange {
    fn object(&self) -> String {
        let mut s = if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        };
        if !self.subresource.is_empty() {
            s.push('/');
            s.push_str(&self.subresource);
        }
        s
    }
}

// The user, objectRef and responseStatus views are the deletion reader's
// (event.rs): one reading of those audit fields.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct GuardView<'a> {
    #[serde(rename = "auditID", borrow)]
    audit_id: Cow<'a, str>,
    #[serde(borrow)]
    stage: Cow<'a, str>,
    #[serde(borrow)]
    verb: Cow<'a, str>,
    #[serde(borrow)]
    user: UserView<'a>,
    #[serde(borrow)]
    impersonated_user: Option<UserView<'a>>,
    #[serde(borrow)]
    user_agent: Cow<'a, str>,
    #[serde(borrow)]
    object_ref: Option<ObjectRefView<'a>>,
    response_status: Option<StatusView<'a>>,
    #[serde(borrow)]
    request_received_timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    stage_timestamp: Option<Cow<'a, str>>,
    request_object: Option<serde_json::Value>,
}

const VERBS: [&str; 5] = ["delete", "deletecollection", "update", "patch", "create"];
const PATCH_MAX_CHARS: usize = 200;

/// The change to a guard object this line records, if it is one. Lines that are not
/// (most) cost one substring search per name.
pub(crate) fn parse(line: &[u8], guard: &GuardObjects) -> Option<GuardChange> {
    let has = |needle: &[u8]| memchr::memmem::find(line, needle).is_some();
    if guard.needles.is_empty()
        || (guard.prefilter.len() > 1 && !has(&guard.prefilter))
        || !guard.needles.iter().any(|n| has(n))
    {
        return None;
    }
    let v: GuardView = serde_json::from_slice(line).ok()?;
    if !(v.stage == "ResponseComplete" || v.stage == "Panic") || !VERBS.contains(&v.verb.as_ref()) {
        return None;
    }
    let r = v.object_ref?;
    // A Deployment's status is its controller's; scale is not.
    if r.subresource == "status" {
        return None;
    }
    let kind = guard.kind_of(&r.api_group, &r.resource, &r.namespace, &r.name)?;
    let time = v
        .request_received_timestamp
        .or(v.stage_timestamp)
        .and_then(|t| t.parse::<Timestamp>().ok())?;
    let code = v
        .response_status
        .and_then(|s| s.code)
        .and_then(|c| u16::try_from(c).ok())
        .unwrap_or(0);
    let outcome = match code {
        _ if v.stage == "Panic" => Outcome::Panic,
        0 => Outcome::Unknown,
        200..=299 => Outcome::Succeeded,
        403 => Outcome::Forbidden,
        404 => Outcome::NotFound,
        409 => Outcome::Conflict,
        _ => Outcome::Failed,
    };
    let patch = match (&*v.verb, &v.request_object) {
        ("patch", Some(p)) => {
            let text = p.to_string();
            if text.chars().count() > PATCH_MAX_CHARS {
                let mut cut: String = text.chars().take(PATCH_MAX_CHARS - 1).collect();
                cut.push('…');
                cut
            } else {
                text
            }
        }
        _ => String::new(),
    };
    Some(GuardChange {
        time,
        audit_id: v.audit_id.into_owned(),
        verb: v.verb.into_owned(),
        user: v.user.username.into_owned(),
        impersonated_user: v.impersonated_user.map(|u| u.username.into_owned()),
        user_agent: v.user_agent.into_owned(),
        kind,
        namespace: r.namespace.into_owned(),
        name: r.name.into_owned(),
        subresource: r.subresource.into_owned(),
        code,
        outcome,
        patch,
    })
}

/// A guard row in `--output json`: `"row": "guard"` tells it from deletion rows.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonGuardRow<'c> {
    row: &'static str,
    time: String,
    #[serde(rename = "auditID")]
    audit_id: &'c str,
    verb: &'c str,
    user: &'c str,
    impersonated_user: Option<&'c str>,
    user_agent: &'c str,
    kind: &'c str,
    namespace: &'c str,
    name: &'c str,
    subresource: Option<&'c str>,
    code: Option<u16>,
    result: &'static str,
    patch: Option<&'c str>,
}

pub(crate) fn write_json_line(c: &GuardChange, out: &mut impl Write) -> io::Result<()> {
    let row = JsonGuardRow {
        row: "guard",
        time: c.time.to_string(),
        audit_id: &c.audit_id,
        verb: &c.verb,
        user: &c.user,
        impersonated_user: c.impersonated_user.as_deref(),
        user_agent: &c.user_agent,
        kind: c.kind,
        namespace: &c.namespace,
        name: &c.name,
        subresource: (!c.subresource.is_empty()).then_some(c.subresource.as_str()),
        code: (c.code != 0).then_some(c.code),
        result: c.outcome.as_str(),
        patch: (!c.patch.is_empty()).then_some(c.patch.as_str()),
    };
    serde_json::to_writer(&mut *out, &row)?;
    out.write_all(b"\n")
}

/// The guard rows before the deletions, as their own table (nothing when none).
pub(crate) fn write_table(rows: &mut [GuardChange], out: &mut impl Write) -> io::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    rows.sort_by_key(|c| c.time);
    let header = ["TIME", "USER", "AGENT", "VERB", "OBJECT", "RESULT", "PATCH"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|c| {
            let user = match &c.impersonated_user {
                Some(imp) => format!("{imp} (via {})", c.user),
                None => c.user.clone(),
            };
            let result = match c.code {
                0 => c.outcome.as_str().to_string(),
                code => format!("{code} {}", c.outcome.as_str()),
            };
            [
                format!("{:.0}", c.time),
                user,
                c.user_agent
                    .split_whitespace()
                    .next()
                    .unwrap_or("-")
                    .to_string(),
                c.verb.clone(),
                c.object(),
                result,
                if c.patch.is_empty() {
                    "-".into()
                } else {
                    c.patch.clone()
                },
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    writeln!(out, "Changes to the guard itself ({}):", rows.len())?;
    let line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(cell);
            if i + 1 < cells.len() {
                s.extend(std::iter::repeat_n(
                    ' ',
                    w.saturating_sub(cell.chars().count()),
                ));
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(&header))?;
    for row in &cells {
        let refs: Vec<&str> = row.iter().map(String::as_str).collect();
        writeln!(out, "{}", line(&refs))?;
    }
    writeln!(out)
}

/// Whether `--since`/`--until`/`--user` keep the row (`--gitrepo` does not apply: the
/// guard is every GitRepo's).
pub(crate) fn keeps(
    c: &GuardChange,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    users: &[String],
) -> bool {
    if since.is_some_and(|s| c.time < s) || until.is_some_and(|u| c.time >= u) {
        return false;
    }
    users.is_empty()
        || users.iter().any(|p| {
            let m = |u: &str| match p.strip_suffix('*') {
                Some(prefix) => u.starts_with(prefix),
                None => u == p,
            };
            m(&c.user) || c.impersonated_user.as_deref().is_some_and(m)
        })
}

#[cfg(test)]
mod tests;
