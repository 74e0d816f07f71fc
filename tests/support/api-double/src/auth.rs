//! Authentication by bearer token and RBAC authorization from the stored ClusterRoles,
//! ClusterRoleBindings, Roles and RoleBindings, as kube-apiserver's RBAC authorizer
//! evaluates them (verbs, apiGroups, resources with `*` and `*/subresource`,
//! resourceNames; ServiceAccount, User and Group subjects).
//!
//! Not modelled: aggregated ClusterRoles (`aggregationRule`), nonResourceURLs (every
//! authenticated user may read discovery, as the default `system:discovery` binding
//! allows), impersonation, and the escalation checks on writes of RBAC objects.

use serde_json::{json, Value};

use crate::resources::Gvr;
use crate::status::ApiError;
use crate::store::Db;

/// The user a request is made as (what the webhook sees in `request.userInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn new(username: &str, groups: &[&str]) -> Self {
        Self {
            username: username.to_string(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    /// A service account as kube-apiserver authenticates its token.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self::new(
            &format!("system:serviceaccount:{namespace}:{name}"),
            &[
                "system:serviceaccounts",
                &format!("system:serviceaccounts:{namespace}"),
                "system:authenticated",
            ],
        )
    }

    /// A cluster administrator (group `system:masters`: RBAC never denies it).
    pub fn admin(username: &str) -> Self {
        Self::new(username, &["system:masters", "system:authenticated"])
    }

    pub(crate) fn anonymous() -> Self {
        Self::new("system:anonymous", &["system:unauthenticated"])
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({"username": self.username, "groups": self.groups});
        if !self.uid.is_empty() {
            v["uid"] = json!(self.uid);
        }
        v
    }
}

/// The token of [`crate::ApiDouble::kubeconfig_yaml`]: an administrator.
pub const DEFAULT_TOKEN: &str = "api-double-token";
pub const DEFAULT_USER: &str = "api-double-admin";

/// What one request asks for, in RBAC terms.
#[derive(Clone, Debug)]
pub(crate) struct Attributes<'a> {
    pub verb: &'a str,
    pub gvr: &'a Gvr,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

fn strs(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn subject_matches(subject: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let kind = subject.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = subject.get("name").and_then(Value::as_str).unwrap_or("");
    match kind {
        "User" => name == user.username,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = subject
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            user.username == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn resource_matches(rule_resources: &[String], resource: &str, subresource: Option<&str>) -> bool {
    let combined = match subresource {
        Some(s) => format!("{resource}/{s}"),
        None => resource.to_string(),
    };
    rule_resources.iter().any(|r| {
        if r == "*" || *r == combined {
            return true;
        }
        match subresource {
            Some(s) => r.strip_prefix("*/") == Some(s),
            None => false,
        }
    })
}

/// Does one PolicyRule allow the request?
pub(crate) fn rule_allows(rule: &Value, a: &Attributes<'_>) -> bool {
    let verbs = strs(rule, "verbs");
    if !verbs.iter().any(|v| v == "*" || v == a.verb) {
        return false;
    }
    let groups = strs(rule, "apiGroups");
    if !groups.iter().any(|g| g == "*" || *g == a.gvr.group) {
        return false;
    }
    if !resource_matches(&strs(rule, "resources"), &a.gvr.resource, a.subresource) {
        return false;
    }
    let names = strs(rule, "resourceNames");
    names.is_empty() || a.name.is_some_and(|n| names.iter().any(|x| x == n))
}

fn rules_of(db: &Db, role_ref: &Value, binding_ns: Option<&str>) -> Vec<Value> {
    let kind = role_ref.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = role_ref.get("name").and_then(Value::as_str).unwrap_or("");
    let (gvr, ns) = match (kind, binding_ns) {
        ("ClusterRole", _) => (crate::resources::gvr::CLUSTER_ROLES, ""),
        ("Role", Some(ns)) => (crate::resources::gvr::ROLES, ns),
        _ => return Vec::new(),
    };
    let Some(res) = db.rt.by_gvr(&gvr) else {
        return Vec::new();
    };
    db.get(res, ns, name)
        .and_then(|r| r.get("rules"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// RBAC: allowed, or the reason it is not.
pub(crate) fn authorize(db: &Db, user: &UserInfo, a: &Attributes<'_>) -> bool {
    if user.groups.iter().any(|g| g == "system:masters") {
        return true;
    }
    let crb = db.rt.by_gvr(&crate::resources::gvr::CLUSTER_ROLE_BINDINGS);
    if let Some(res) = crb {
        for (_, b) in db.iter(res, None) {
            let subjects = b.get("subjects").and_then(Value::as_array);
            if !subjects.is_some_and(|s| s.iter().any(|s| subject_matches(s, user, ""))) {
                continue;
            }
            let role_ref = b.get("roleRef").cloned().unwrap_or(Value::Null);
            if rules_of(db, &role_ref, None)
                .iter()
                .any(|r| rule_allows(r, a))
            {
                return true;
            }
        }
    }
    let Some(ns) = a.namespace else {
        return false;
    };
    let rb = db.rt.by_gvr(&crate::resources::gvr::ROLE_BINDINGS);
    if let Some(res) = rb {
        for (_, b) in db.iter(res, Some(ns)) {
            let subjects = b.get("subjects").and_then(Value::as_array);
            if !subjects.is_some_and(|s| s.iter().any(|s| subject_matches(s, user, ns))) {
                continue;
            }
            let role_ref = b.get("roleRef").cloned().unwrap_or(Value::Null);
            if rules_of(db, &role_ref, Some(ns))
                .iter()
                .any(|r| rule_allows(r, a))
            {
                return true;
            }
        }
    }
    false
}

/// The 403 kube-apiserver answers, worded as its RBAC authorizer does.
pub(crate) fn forbidden(user: &UserInfo, a: &Attributes<'_>) -> ApiError {
    let resource = match a.subresource {
        Some(s) => format!("{}/{s}", a.gvr.resource),
        None => a.gvr.resource.to_string(),
    };
    let why = match a.namespace {
        Some(ns) => format!(
            "User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" in the namespace \"{ns}\"",
            user.username, a.verb, a.gvr.group
        ),
        None => format!(
            "User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" at the cluster scope",
            user.username, a.verb, a.gvr.group
        ),
    };
    let qualified = a.gvr.qualified_resource();
    let message = match a.name.filter(|n| !n.is_empty()) {
        Some(n) => format!("{qualified} \"{n}\" is forbidden: {why}"),
        None => format!("{qualified} is forbidden: {why}"),
    };
    let mut e = ApiError::new(403, "Forbidden", message);
    let mut details = json!({"kind": a.gvr.resource});
    if let Some(n) = a.name.filter(|n| !n.is_empty()) {
        details["name"] = json!(n);
    }
    if !a.gvr.group.is_empty() {
        details["group"] = json!(a.gvr.group);
    }
    e.details = Some(details);
    e
}

pub(crate) fn unauthorized() -> ApiError {
    ApiError::new(401, "Unauthorized", "Unauthorized")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs<'a>(
        verb: &'a str,
        gvr: &'a Gvr,
        sub: Option<&'a str>,
        name: Option<&'a str>,
    ) -> Attributes<'a> {
        Attributes {
            verb,
            gvr,
            subresource: sub,
            namespace: Some("ns"),
            name,
        }
    }

    #[test]
    fn rules_match_like_rbac() {
        let bd = Gvr::new_static("fleet.cattle.io", "v1alpha1", "bundledeployments");
        let rule = json!({"apiGroups": ["fleet.cattle.io"], "resources": ["bundledeployments/status"], "verbs": ["get", "patch"]});
        assert!(rule_allows(
            &rule,
            &attrs("patch", &bd, Some("status"), Some("x"))
        ));
        assert!(
            !rule_allows(&rule, &attrs("patch", &bd, None, Some("x"))),
            "status is not the main resource"
        );
        assert!(!rule_allows(
            &rule,
            &attrs("update", &bd, Some("status"), Some("x"))
        ));
        let star = json!({"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]});
        assert!(rule_allows(
            &star,
            &attrs("patch", &bd, Some("status"), None)
        ));
        assert!(!rule_allows(&star, &attrs("patch", &bd, None, None)));
        let named = json!({"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["tls"], "verbs": ["get", "update"]});
        let secrets = Gvr::new_static("", "v1", "secrets");
        assert!(rule_allows(
            &named,
            &attrs("get", &secrets, None, Some("tls"))
        ));
        assert!(!rule_allows(
            &named,
            &attrs("get", &secrets, None, Some("other"))
        ));
        assert!(
            !rule_allows(&named, &attrs("list", &secrets, None, None)),
            "a named rule never allows a list"
        );
    }

    #[test]
    fn forbidden_is_worded_like_the_apiserver() {
        let gvr = Gvr::new_static("fleet.cattle.io", "v1alpha1", "gitrepos");
        let user = UserInfo::service_account("cattle-fleet-system", "fleet-delete-guard");
        let e = forbidden(&user, &attrs("patch", &gvr, Some("status"), Some("lots")));
        assert_eq!(
            e.message,
            "gitrepos.fleet.cattle.io \"lots\" is forbidden: User \"system:serviceaccount:cattle-fleet-system:fleet-delete-guard\" \
             cannot patch resource \"gitrepos/status\" in API group \"fleet.cattle.io\" in the namespace \"ns\""
        );
    }
}
