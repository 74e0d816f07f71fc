//! Which Fleet release runs the cluster whose status the webhook writes.
//!
//! Fleet's chart deploys its controller as `Deployment cattle-fleet-system/fleet-controller`
//! with the image `rancher/fleet:<version>` (`charts/fleet/templates/deployment.yaml`,
//! `image.tag`); Rancher keeps that name and namespace. Reading it needs one `get` on
//! that one Deployment (a Role with `resourceNames`). When it cannot be read — no
//! rights, a downstream cluster, a renamed install, a `dev` tag — `--fleet-version`
//! says it; without either, the newest known rules apply and the log says so once.

use kube::{api::Api, Client};

use crate::{
    fleet::release::{parse_version, FleetVersion, KnownVersion, VersionError},
    health::Readiness,
    metrics::{FleetInfoLabels, Metrics},
    patcher::Patcher,
};

/// Namespace and name of Fleet's controller Deployment.
pub const CONTROLLER_NAMESPACE: &str = "cattle-fleet-system";
pub const CONTROLLER_DEPLOYMENT: &str = "fleet-controller";
/// The readiness line that reports the version (informational: never fails).
pub const VERSION_CHECK: &str = "fleet-version";

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("cannot read Deployment {CONTROLLER_NAMESPACE}/{CONTROLLER_DEPLOYMENT}: {0}")]
    Read(#[source] kube::Error),
    #[error("Deployment {CONTROLLER_NAMESPACE}/{CONTROLLER_DEPLOYMENT} has no container image")]
    NoImage,
    #[error("its image tag is not a Fleet version: {0}")]
    Tag(#[from] VersionError),
}

/// The version from the controller Deployment's image (its `fleet-controller` container,
/// else its first).
pub async fn detect(fleet: &Client) -> Result<KnownVersion, DetectError> {
    let api: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(fleet.clone(), CONTROLLER_NAMESPACE);
    let deployment = api
        .get(CONTROLLER_DEPLOYMENT)
        .await
        .map_err(DetectError::Read)?;
    let containers = deployment
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers)
        .unwrap_or_default();
    let image = containers
        .iter()
        .find(|c| c.name == CONTROLLER_DEPLOYMENT)
        .or(containers.first())
        .and_then(|c| c.image.clone())
        .ok_or(DetectError::NoImage)?;
    Ok(parse_version(&image)?)
}

/// Where the version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Controller,
    Default,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Controller => "fleet-controller",
            Source::Default => "default",
        }
    }
}

/// Decide the release (the flag wins when given), tell the patcher, and report it in
/// the log, `/readyz` and `fleet_delete_guard_fleet_info`.
pub async fn resolve(
    flag: Option<&str>,
    fleet: &Client,
    patcher: &Patcher,
    metrics: &Metrics,
    readiness: &Readiness,
) -> FleetVersion {
    let (found, source) = match flag.filter(|f| !f.is_empty() && *f != "auto") {
        Some(f) => match parse_version(f) {
            Ok(v) => (Some(v), Source::Flag),
            Err(e) => {
                tracing::error!(error = %e, "--fleet-version ignored");
                (None, Source::Default)
            }
        },
        None => match tokio::time::timeout(std::time::Duration::from_secs(10), detect(fleet)).await
        {
            Ok(Ok(v)) => (Some(v), Source::Controller),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot tell Fleet's version; set --fleet-version");
                (None, Source::Default)
            }
            Err(_) => {
                tracing::warn!("reading Fleet's version timed out; set --fleet-version");
                (None, Source::Default)
            }
        },
    };
    let (version, release) = match &found {
        Some(v) => {
            if !v.known {
                tracing::warn!(
                    version = %v.version, rules = %v.rules_of,
                    "Fleet version not among the known releases (v0.12 to v0.16): using the {} rules", v.rules_of
                );
            }
            (v.version.clone(), v.rules_of)
        }
        None => {
            tracing::warn!(
                rules = %FleetVersion::NEWEST,
                "Fleet version unknown: using the newest known rules"
            );
            ("unknown".to_string(), FleetVersion::NEWEST)
        }
    };
    tracing::info!(%version, rules = %release, source = source.as_str(), "Fleet version");
    patcher.set_fleet_release(release);
    metrics
        .fleet_info
        .get_or_create(&FleetInfoLabels {
            version: version.clone(),
            rules: release.to_string(),
            source: source.as_str(),
        })
        .set(1);
    readiness.set(
        VERSION_CHECK,
        true,
        format!("{version} ({}), {release} status rules", source.as_str()),
    );
    release
}
