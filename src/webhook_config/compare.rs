//! Intended versus observed webhook configuration (pure): what an administrator, an
//! account or a tool changed that takes the guard out of the API path, or changes how
//! it is called.
//!
//! Only changes that weaken the guard or change its contract are reasons: a rule
//! widened, a label added or an entry of someone else's added to the configuration is
//! not. Fields the API server defaults are compared with their defaults
//! (`failurePolicy` Fail, `timeoutSeconds` 10, `matchPolicy` Equivalent, `scope` `*`,
//! an absent selector = `{}`).

use std::{collections::BTreeSet, fmt};

use k8s_openapi::{
    api::admissionregistration::v1::{
        RuleWithOperations, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
    },
    apimachinery::pkg::apis::meta::v1::LabelSelector,
};
use rustls::pki_types::{pem::PemObject, CertificateDer};

use super::Intended;

/// Why the configuration is not intact, in a word: the `reason` label of
/// `fleet_delete_guard_webhook_configuration_intact`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    Deleted,
    EntryRemoved,
    ClientConfigChanged,
    RulesNarrowed,
    FailurePolicyChanged,
    MatchConditionsChanged,
    SelectorsChanged,
    TimeoutChanged,
    CaBundleUntrusted,
}

impl Reason {
    /// Every reason, in label order.
    pub const ALL: [Reason; 9] = [
        Reason::Deleted,
        Reason::EntryRemoved,
        Reason::ClientConfigChanged,
        Reason::RulesNarrowed,
        Reason::FailurePolicyChanged,
        Reason::MatchConditionsChanged,
        Reason::SelectorsChanged,
        Reason::TimeoutChanged,
        Reason::CaBundleUntrusted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Deleted => "deleted",
            Reason::EntryRemoved => "entry_removed",
            Reason::ClientConfigChanged => "client_config_changed",
            Reason::RulesNarrowed => "rules_narrowed",
            Reason::FailurePolicyChanged => "failure_policy_changed",
            Reason::MatchConditionsChanged => "match_conditions_changed",
            Reason::SelectorsChanged => "selectors_changed",
            Reason::TimeoutChanged => "timeout_changed",
            Reason::CaBundleUntrusted => "ca_bundle_untrusted",
        }
    }
}

/// One difference that matters, naming the webhook entry and what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tamper {
    /// The configuration does not exist.
    Deleted,
    /// The entry is gone from the configuration.
    EntryRemoved { webhook: String },
    /// The entry no longer calls this Service (or URL).
    ClientConfigChanged {
        webhook: String,
        intended: String,
        observed: String,
    },
    /// Deletions the installed rules send are no longer sent.
    RulesNarrowed { webhook: String, lost: String },
    FailurePolicyChanged {
        webhook: String,
        intended: String,
        observed: String,
    },
    MatchConditionsChanged {
        webhook: String,
        removed: Vec<String>,
        added: Vec<String>,
    },
    SelectorsChanged {
        webhook: String,
        selector: &'static str,
    },
    TimeoutChanged {
        webhook: String,
        intended: i32,
        observed: i32,
    },
    /// kube-apiserver would not trust the serving certificate.
    CaBundleUntrusted { webhook: String },
}

impl Tamper {
    pub fn reason(&self) -> Reason {
        match self {
            Tamper::Deleted => Reason::Deleted,
            Tamper::EntryRemoved { .. } => Reason::EntryRemoved,
            Tamper::ClientConfigChanged { .. } => Reason::ClientConfigChanged,
            Tamper::RulesNarrowed { .. } => Reason::RulesNarrowed,
            Tamper::FailurePolicyChanged { .. } => Reason::FailurePolicyChanged,
            Tamper::MatchConditionsChanged { .. } => Reason::MatchConditionsChanged,
            Tamper::SelectorsChanged { .. } => Reason::SelectorsChanged,
            Tamper::TimeoutChanged { .. } => Reason::TimeoutChanged,
            Tamper::CaBundleUntrusted { .. } => Reason::CaBundleUntrusted,
        }
    }
}

impl fmt::Display for Tamper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tamper::Deleted => write!(f, "the configuration was deleted"),
            Tamper::EntryRemoved { webhook } => write!(f, "webhook {webhook} was removed"),
            Tamper::ClientConfigChanged {
                webhook,
                intended,
                observed,
            } => write!(f, "webhook {webhook} calls {observed}, not {intended}"),
            Tamper::RulesNarrowed { webhook, lost } => {
                write!(f, "webhook {webhook} no longer receives {lost}")
            }
            Tamper::FailurePolicyChanged {
                webhook,
                intended,
                observed,
            } => write!(
                f,
                "webhook {webhook} failurePolicy is {observed}, not {intended}"
            ),
            Tamper::MatchConditionsChanged {
                webhook,
                removed,
                added,
            } => {
                write!(f, "webhook {webhook} matchConditions changed")?;
                if !removed.is_empty() {
                    write!(f, " (removed or edited: {})", removed.join(", "))?;
                }
                if !added.is_empty() {
                    write!(f, " (added or edited: {})", added.join(", "))?;
                }
                Ok(())
            }
            Tamper::SelectorsChanged { webhook, selector } => {
                write!(f, "webhook {webhook} {selector} changed")
            }
            Tamper::TimeoutChanged {
                webhook,
                intended,
                observed,
            } => write!(
                f,
                "webhook {webhook} timeoutSeconds is {observed}, not {intended}"
            ),
            Tamper::CaBundleUntrusted { webhook } => write!(
                f,
                "webhook {webhook} caBundle does not hold the CA of the serving certificate"
            ),
        }
    }
}

/// The differences that matter between `intended` and `observed` (`None`: not found).
/// `ca_bundle_pem`: this webhook's CA bundle, newest first, when it manages it (the
/// certificate bootstrap); the observed caBundle must hold its first CA.
pub fn compare(
    intended: &Intended,
    observed: Option<&ValidatingWebhookConfiguration>,
    ca_bundle_pem: Option<&str>,
) -> Vec<Tamper> {
    let Some(observed) = observed else {
        return vec![Tamper::Deleted];
    };
    if observed.metadata.deletion_timestamp.is_some() {
        return vec![Tamper::Deleted];
    }
    let our_ca = ca_bundle_pem.and_then(|pem| first_der(pem.as_bytes()));
    let mut out = Vec::new();
    for want in intended.config.webhooks.iter().flatten() {
        let webhook = || want.name.clone();
        let Some(have) = observed
            .webhooks
            .iter()
            .flatten()
            .find(|w| w.name == want.name)
        else {
            out.push(Tamper::EntryRemoved { webhook: webhook() });
            continue;
        };
        let (wanted_target, observed_target) =
            (target(&want.client_config), target(&have.client_config));
        if wanted_target != observed_target {
            out.push(Tamper::ClientConfigChanged {
                webhook: webhook(),
                intended: wanted_target,
                observed: observed_target,
            });
        }
        if let Some(lost) = narrowed(want, have) {
            out.push(Tamper::RulesNarrowed {
                webhook: webhook(),
                lost,
            });
        }
        let policy = |w: &ValidatingWebhook| w.failure_policy.clone().unwrap_or("Fail".into());
        if policy(want) != policy(have) {
            out.push(Tamper::FailurePolicyChanged {
                webhook: webhook(),
                intended: policy(want),
                observed: policy(have),
            });
        }
        let (want_mc, have_mc) = (conditions(want), conditions(have));
        if want_mc != have_mc {
            let names = |a: &BTreeSet<(String, String)>, b: &BTreeSet<(String, String)>| {
                a.difference(b).map(|(n, _)| n.clone()).collect::<Vec<_>>()
            };
            out.push(Tamper::MatchConditionsChanged {
                webhook: webhook(),
                removed: names(&want_mc, &have_mc),
                added: names(&have_mc, &want_mc),
            });
        }
        for (selector, a, b) in [
            (
                "namespaceSelector",
                &want.namespace_selector,
                &have.namespace_selector,
            ),
            (
                "objectSelector",
                &want.object_selector,
                &have.object_selector,
            ),
        ] {
            if !same_selector(a.as_ref(), b.as_ref()) {
                out.push(Tamper::SelectorsChanged {
                    webhook: webhook(),
                    selector,
                });
            }
        }
        let timeout = |w: &ValidatingWebhook| w.timeout_seconds.unwrap_or(10);
        if timeout(want) != timeout(have) {
            out.push(Tamper::TimeoutChanged {
                webhook: webhook(),
                intended: timeout(want),
                observed: timeout(have),
            });
        }
        if let Some(ca) = &our_ca {
            let trusted = have
                .client_config
                .ca_bundle
                .as_ref()
                .is_some_and(|b| all_ders(&b.0).iter().any(|d| d == ca));
            if !trusted {
                out.push(Tamper::CaBundleUntrusted { webhook: webhook() });
            }
        }
    }
    out
}

/// `service NS/NAME:PORT/PATH` or `url URL`.
fn target(c: &WebhookClientConfig) -> String {
    match (&c.service, &c.url) {
        (Some(s), _) => format!(
            "service {}/{}:{}{}",
            s.namespace,
            s.name,
            s.port.unwrap_or(443),
            s.path.as_deref().unwrap_or("")
        ),
        (None, Some(url)) => format!("url {url}"),
        (None, None) => "nothing".into(),
    }
}

/// One (operation, group, version, resource, scope) an installed rule names.
type RuleTuple = (String, String, String, String, String);

fn tuples(rule: &RuleWithOperations) -> Vec<RuleTuple> {
    let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
    let scope = rule.scope.clone().unwrap_or_else(|| "*".into());
    let mut out = Vec::new();
    for op in list(&rule.operations) {
        for g in list(&rule.api_groups) {
            for v in list(&rule.api_versions) {
                for r in list(&rule.resources) {
                    out.push((op.clone(), g.clone(), v.clone(), r, scope.clone()));
                }
            }
        }
    }
    out
}

/// Does `have`'s `pattern` match everything `want` names? A wildcard is only covered by
/// a wildcard.
fn covers(pattern: &str, want: &str) -> bool {
    pattern == "*" || pattern == want
}

/// kube-apiserver's resource matching: `*` all resources, `*/*` all resources and
/// subresources, `r/*` every subresource of r, `*/s` subresource s of all.
fn covers_resource(pattern: &str, want: &str) -> bool {
    if pattern == want || pattern == "*/*" {
        return true;
    }
    let (pr, ps) = pattern.split_once('/').unwrap_or((pattern, ""));
    let (wr, ws) = want.split_once('/').unwrap_or((want, ""));
    let resource_ok = pr == "*" || pr == wr;
    let sub_ok = ps == ws || (ps == "*" && !ws.is_empty());
    resource_ok && sub_ok
}

fn tuple_covered(have: &[RuleWithOperations], t: &RuleTuple) -> bool {
    have.iter().any(|rule| {
        let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
        let scope = rule.scope.clone().unwrap_or_else(|| "*".into());
        list(&rule.operations).iter().any(|o| covers(o, &t.0))
            && list(&rule.api_groups).iter().any(|g| covers(g, &t.1))
            && list(&rule.api_versions).iter().any(|v| covers(v, &t.2))
            && list(&rule.resources)
                .iter()
                .any(|r| covers_resource(r, &t.3))
            && covers(&scope, &t.4)
    })
}

/// What the installed rules send that the observed ones do not (`None`: nothing).
fn narrowed(want: &ValidatingWebhook, have: &ValidatingWebhook) -> Option<String> {
    let have_rules = have.rules.clone().unwrap_or_default();
    let mut lost: Vec<String> = want
        .rules
        .iter()
        .flatten()
        .flat_map(tuples)
        .filter(|t| !tuple_covered(&have_rules, t))
        .map(|(op, g, v, r, s)| {
            let g = if g.is_empty() { "core".into() } else { g };
            format!("{op} {g}/{v}/{r} (scope {s})")
        })
        .collect();
    let policy = |w: &ValidatingWebhook| w.match_policy.clone().unwrap_or("Equivalent".into());
    if policy(want) == "Equivalent" && policy(have) == "Exact" {
        lost.push("requests through equivalent API versions (matchPolicy Exact)".into());
    }
    (!lost.is_empty()).then(|| lost.join(", "))
}

/// (name, expression with whitespace runs collapsed).
fn conditions(w: &ValidatingWebhook) -> BTreeSet<(String, String)> {
    w.match_conditions
        .iter()
        .flatten()
        .map(|c| {
            let expr = c
                .expression
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            (c.name.clone(), expr)
        })
        .collect()
}

fn same_selector(a: Option<&LabelSelector>, b: Option<&LabelSelector>) -> bool {
    fn normal(s: Option<&LabelSelector>) -> (Vec<(String, String)>, Vec<String>) {
        let s = s.cloned().unwrap_or_default();
        let labels = s.match_labels.unwrap_or_default().into_iter().collect();
        let mut exprs: Vec<String> = s
            .match_expressions
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                let mut values = e.values.unwrap_or_default();
                values.sort();
                format!("{} {} {values:?}", e.key, e.operator)
            })
            .collect();
        exprs.sort();
        (labels, exprs)
    }
    normal(a) == normal(b)
}

fn all_ders(pem: &[u8]) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .map(|d| d.to_vec())
        .collect()
}

fn first_der(pem: &[u8]) -> Option<Vec<u8>> {
    all_ders(pem).into_iter().next()
}

#[cfg(test)]
mod tests;
