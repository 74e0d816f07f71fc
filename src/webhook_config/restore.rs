//! `--restore-webhook-configuration`: put the configuration back as installed.
//!
//! Off by default: an administrator who deletes or edits the configuration usually
//! means it (an incident, an upgrade, a migration), and a webhook that silently undoes
//! that is a webhook the administrator will fight. With the flag on, the person who
//! installed the guard decided that the guard wins; every repair is rate-limited by
//! the caller and announced by an Event.
//!
//! [`desired`] is pure: the installed configuration, with the caBundle kept from the
//! observed entry (cert-manager's injector or the certificate bootstrap wrote it) or
//! else this webhook's CA, and the observed metadata (labels, annotations,
//! resourceVersion as the precondition of the update). Entries that are not in the
//! manifest are dropped: the configuration is re-asserted as installed.

use k8s_openapi::{api::admissionregistration::v1::ValidatingWebhookConfiguration, ByteString};
use kube::api::{Api, PostParams};

use super::Intended;

/// What a repair did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// The configuration was deleted and is created again.
    Created,
    /// The configuration existed and its webhooks are as installed again.
    Reasserted,
}

impl Restored {
    pub fn as_str(self) -> &'static str {
        match self {
            Restored::Created => "re-created",
            Restored::Reasserted => "re-asserted",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cannot re-create ValidatingWebhookConfiguration {name}: {source}")]
    Create { name: String, source: kube::Error },
    #[error("cannot update ValidatingWebhookConfiguration {name}: {source}")]
    Update { name: String, source: kube::Error },
}

impl RestoreError {
    /// Another writer got there first (409: created by another replica, or changed
    /// since it was read). The watch sees that write and the caller decides again.
    pub fn is_conflict(&self) -> bool {
        let (RestoreError::Create { source, .. } | RestoreError::Update { source, .. }) = self;
        matches!(source, kube::Error::Api(s) if s.code == 409)
    }
}

/// The configuration to write: `observed` (`None`: deleted) made as installed again.
/// `ca_bundle_pem`: this webhook's CA bundle, for entries that have none.
pub fn desired(
    intended: &Intended,
    observed: Option<&ValidatingWebhookConfiguration>,
    ca_bundle_pem: Option<&str>,
) -> ValidatingWebhookConfiguration {
    let mut out = intended.config.clone();
    if let Some(o) = observed {
        out.metadata = o.metadata.clone();
        out.metadata.managed_fields = None;
    }
    for w in out.webhooks.iter_mut().flatten() {
        let kept = observed
            .and_then(|o| o.webhooks.as_ref())
            .and_then(|hooks| hooks.iter().find(|h| h.name == w.name))
            .and_then(|h| h.client_config.ca_bundle.clone())
            .filter(|b| !b.0.is_empty());
        w.client_config.ca_bundle =
            kept.or_else(|| ca_bundle_pem.map(|pem| ByteString(pem.as_bytes().to_vec())));
    }
    out
}

/// Write [`desired`]: create when deleted, else update with the observed
/// resourceVersion as precondition (a concurrent writer wins; the watch sees its change
/// and the caller decides again).
pub async fn restore(
    api: &Api<ValidatingWebhookConfiguration>,
    intended: &Intended,
    observed: Option<&ValidatingWebhookConfiguration>,
    ca_bundle_pem: Option<&str>,
) -> Result<Restored, RestoreError> {
    let name = intended.name().to_string();
    let object = desired(intended, observed, ca_bundle_pem);
    match observed {
        None => api
            .create(&PostParams::default(), &object)
            .await
            .map(|_| Restored::Created)
            .map_err(|source| RestoreError::Create { name, source }),
        Some(_) => api
            .replace(&name, &PostParams::default(), &object)
            .await
            .map(|_| Restored::Reasserted)
            .map_err(|source| RestoreError::Update { name, source }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::webhook_config::compare;

    fn intended() -> Intended {
        Intended::default_for(
            "fleet-delete-guard",
            "cattle-fleet-system",
            "fleet-delete-guard",
        )
        .expect("base")
    }

    #[test]
    fn a_deleted_configuration_comes_back_as_installed_with_our_ca() {
        let d = desired(&intended(), None, Some("PEM"));
        assert_eq!(d.metadata.name.as_deref(), Some("fleet-delete-guard"));
        let hooks = d.webhooks.as_ref().expect("webhooks");
        assert_eq!(
            hooks[0].client_config.ca_bundle,
            Some(ByteString(b"PEM".to_vec()))
        );
        assert_eq!(compare(&intended(), Some(&d), None), []);
    }

    #[test]
    fn an_edited_configuration_gets_its_entries_back_and_keeps_metadata_and_ca_bundle() {
        let mut v = serde_json::to_value(&intended().config).expect("json");
        v["metadata"]["resourceVersion"] = json!("42");
        v["metadata"]["annotations"] = json!({"cert-manager.io/inject-ca-from": "ns/cert"});
        v["webhooks"][0]["failurePolicy"] = json!("Fail");
        v["webhooks"][0]["rules"] = json!([]);
        v["webhooks"][0]["clientConfig"]["caBundle"] = json!("SU5KRUNURUQ=");
        v["webhooks"].as_array_mut().unwrap().push(json!({
            "name": "extra.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"url": "https://elsewhere/validate"}
        }));
        let observed: ValidatingWebhookConfiguration = serde_json::from_value(v).expect("vwc");
        let d = desired(&intended(), Some(&observed), Some("OURS"));
        assert_eq!(
            d.metadata.resource_version.as_deref(),
            Some("42"),
            "precondition"
        );
        assert!(
            d.metadata.annotations.is_some(),
            "annotations are the admin's"
        );
        let hooks = d.webhooks.as_ref().expect("webhooks");
        assert_eq!(hooks.len(), 1, "as installed");
        assert_eq!(
            hooks[0].client_config.ca_bundle,
            Some(ByteString(b"INJECTED".to_vec()))
        );
        assert_eq!(compare(&intended(), Some(&d), None), []);
    }
}
