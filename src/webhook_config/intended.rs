//! The configuration the webhook is meant to run under: the ValidatingWebhookConfiguration
//! as installed (pure: parsing only).
//!
//! Source: `--webhook-config-manifest FILE` (YAML or JSON, one object, e.g. a ConfigMap
//! key mounted by an overlay that changes the configuration), else the compiled-in
//! `deploy/base/webhook.yaml`, whose entries are pointed at `--service-name` in
//! `--namespace`. The `caBundle` of the manifest is ignored: it is written at run time
//! (certificate bootstrap or cert-manager) and checked separately.

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;

/// `deploy/base/webhook.yaml`, as the default install applies it.
pub const DEFAULT_MANIFEST: &str = include_str!("../../deploy/base/webhook.yaml");

/// `--webhook-config-manifest builtin:NAME`: the configurations deploy/'s overlays
/// install, compiled in (tests/manifests.rs checks each against `kubectl kustomize`).
pub const BUILTIN_MANIFESTS: [(&str, &str); 3] = [
    ("base", DEFAULT_MANIFEST),
    (
        "breaker",
        include_str!("../../deploy/breaker/webhook-config.yaml"),
    ),
    (
        "breaker-fail-closed",
        include_str!("../../deploy/breaker-fail-closed/webhook-config.yaml"),
    ),
];

/// The prefix of a compiled-in manifest's name in `--webhook-config-manifest`.
pub const BUILTIN_PREFIX: &str = "builtin:";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read the webhook configuration manifest {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the webhook configuration manifest {origin} is not a ValidatingWebhookConfiguration: {message}")]
    Parse { origin: String, message: String },
    #[error("the webhook configuration manifest {origin} {problem}")]
    Invalid { origin: String, problem: String },
}

/// The configuration as installed.
#[derive(Debug, Clone, PartialEq)]
pub struct Intended {
    /// Name, webhook entries (without caBundle) and labels as installed.
    pub config: ValidatingWebhookConfiguration,
}

impl Intended {
    /// Parse a manifest (YAML or JSON); `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ManifestError> {
        let config: ValidatingWebhookConfiguration =
            serde_saphyr::from_str(text).map_err(|e| ManifestError::Parse {
                origin: origin.to_string(),
                message: e.to_string(),
            })?;
        Self::new(config, origin)
    }

    /// Read and parse `path`.
    pub fn read(path: &std::path::Path) -> Result<Self, ManifestError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: origin.clone(),
            source,
        })?;
        Self::parse(&text, &origin)
    }

    /// The compiled-in `deploy/base/webhook.yaml`, named `name`, its entries calling
    /// Service `namespace`/`service`.
    pub fn default_for(name: &str, namespace: &str, service: &str) -> Result<Self, ManifestError> {
        Self::builtin("base", name, namespace, service)
    }

    /// A compiled-in manifest ([`BUILTIN_MANIFESTS`]), named `name`, its entries calling
    /// Service `namespace`/`service`.
    pub fn builtin(
        variant: &str,
        name: &str,
        namespace: &str,
        service: &str,
    ) -> Result<Self, ManifestError> {
        let origin = format!("{BUILTIN_PREFIX}{variant}");
        let Some((_, text)) = BUILTIN_MANIFESTS.iter().find(|(v, _)| *v == variant) else {
            let known: Vec<&str> = BUILTIN_MANIFESTS.iter().map(|(v, _)| *v).collect();
            return Err(ManifestError::Invalid {
                origin,
                problem: format!("is not compiled in (known: {})", known.join(", ")),
            });
        };
        let mut intended = Self::parse(text, &origin)?;
        intended.config.metadata.name = Some(name.to_string());
        for w in intended.config.webhooks.iter_mut().flatten() {
            if let Some(s) = w.client_config.service.as_mut() {
                s.namespace = namespace.to_string();
                s.name = service.to_string();
            }
        }
        Ok(intended)
    }

    fn new(
        mut config: ValidatingWebhookConfiguration,
        origin: &str,
    ) -> Result<Self, ManifestError> {
        let invalid = |problem: &str| ManifestError::Invalid {
            origin: origin.to_string(),
            problem: problem.to_string(),
        };
        if config.metadata.name.as_deref().unwrap_or("").is_empty() {
            return Err(invalid("has no metadata.name"));
        }
        if config.webhooks.as_ref().is_none_or(Vec::is_empty) {
            return Err(invalid("has no webhooks"));
        }
        // Only what the installer decides is kept; the rest is the API server's.
        let m = &mut config.metadata;
        m.namespace = None;
        m.resource_version = None;
        m.uid = None;
        m.generation = None;
        m.creation_timestamp = None;
        m.managed_fields = None;
        m.deletion_timestamp = None;
        m.deletion_grace_period_seconds = None;
        m.owner_references = None;
        m.finalizers = None;
        for w in config.webhooks.iter_mut().flatten() {
            w.client_config.ca_bundle = None;
        }
        Ok(Self { config })
    }

    /// The configuration's name.
    pub fn name(&self) -> &str {
        self.config.metadata.name.as_deref().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_base_manifest_pointed_at_our_service() {
        let i = Intended::default_for("guard", "ops", "guard-svc").expect("base parses");
        assert_eq!(i.name(), "guard");
        let hooks = i.config.webhooks.as_ref().expect("webhooks");
        assert_eq!(hooks[0].name, "delete-guard.fleet.cattle.io");
        let svc = hooks[0].client_config.service.as_ref().expect("service");
        assert_eq!(
            (svc.namespace.as_str(), svc.name.as_str()),
            ("ops", "guard-svc")
        );
        assert_eq!(hooks[0].failure_policy.as_deref(), Some("Ignore"));
        assert_eq!(hooks[0].match_conditions.as_ref().map(Vec::len), Some(2));
    }

    #[test]
    fn the_overlays_manifests_are_compiled_in() {
        let breaker = Intended::builtin("breaker", "g", "ns", "svc").expect("breaker");
        let hooks = breaker.config.webhooks.as_ref().expect("webhooks");
        assert_eq!(hooks[0].match_conditions.as_ref().map(Vec::len), Some(1));
        let fail = Intended::builtin("breaker-fail-closed", "g", "ns", "svc").expect("fail-closed");
        let hooks = fail.config.webhooks.as_ref().expect("webhooks");
        assert_eq!(hooks.len(), 2);
        for h in hooks {
            assert_eq!(
                h.client_config.service.as_ref().map(|s| s.name.as_str()),
                Some("svc")
            );
        }
        let e = Intended::builtin("nope", "g", "ns", "svc").expect_err("unknown");
        assert!(
            e.to_string()
                .contains("known: base, breaker, breaker-fail-closed"),
            "{e}"
        );
    }

    #[test]
    fn a_manifest_keeps_what_the_installer_decides_and_drops_the_rest() {
        let json = r#"{"apiVersion":"admissionregistration.k8s.io/v1","kind":"ValidatingWebhookConfiguration",
            "metadata":{"name":"g","resourceVersion":"7","uid":"u"},
            "webhooks":[{"name":"w","admissionReviewVersions":["v1"],"sideEffects":"None",
              "clientConfig":{"url":"https://x/validate","caBundle":"Zm9v"}}]}"#;
        let i = Intended::parse(json, "test").expect("JSON is YAML");
        assert_eq!(i.config.metadata.resource_version, None);
        assert_eq!(i.config.metadata.uid, None);
        assert_eq!(
            i.config.webhooks.as_ref().unwrap()[0]
                .client_config
                .ca_bundle,
            None
        );
    }

    #[test]
    fn unusable_manifests_are_refused_with_a_reason() {
        let no_name = "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {}\nwebhooks: []\n";
        let e = Intended::parse(no_name, "m.yaml").expect_err("no name");
        assert!(e.to_string().contains("no metadata.name"), "{e}");
        let no_hooks = "metadata: {name: g}\nwebhooks: []\n";
        let e = Intended::parse(no_hooks, "m.yaml").expect_err("no webhooks");
        assert!(e.to_string().contains("no webhooks"), "{e}");
        let e = Intended::parse("- a list", "m.yaml").expect_err("not an object");
        assert!(matches!(e, ManifestError::Parse { .. }), "{e}");
        let e =
            Intended::read(std::path::Path::new("/nonexistent/webhook.yaml")).expect_err("missing");
        assert!(matches!(e, ManifestError::Read { .. }), "{e}");
    }
}
