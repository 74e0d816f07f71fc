//! Serving certificates without cert-manager.
//!
//! Two entry points:
//!
//! - [`bootstrap`], called by `serve` before TLS is set up when `--cert-secret` is
//!   given: keeps a CA and a serving certificate in a Secret of the webhook's own
//!   namespace, writes the pair to `--cert-dir` and returns those files (served with
//!   the usual hot reload), and keeps the ValidatingWebhookConfiguration's `caBundle` equal to the Secret's CA
//!   bundle. Several replicas starting at once agree on one Secret: creation is
//!   first-writer-wins (409 AlreadyExists → read the winner's), renewals are updates
//!   with the read resourceVersion as precondition (409 Conflict → read again).
//! - [`run_certs`], the `certs` subcommand: writes a CA and a serving certificate for
//!   given DNS names into files, for a certificate managed by hand.
//!
//! Rotation: the serving certificate is renewed `--cert-renew-before` its expiry (or
//! when its names change) and signed by the same CA, so the `caBundle` does not change.
//! The CA (10 years by default) is renewed the same way; the bundle then holds the new
//! and the old CA, so replicas still serving a certificate of the old CA stay trusted
//! until they pick the new one up (every `--cert-check-interval`, then within
//! `--tls-reload-interval`).
//!
//! The Secret (type `kubernetes.io/tls`) holds `tls.crt`, `tls.key`, `ca.crt` (the CA
//! bundle, newest first) and `ca.key` (the current CA's key, needed to renew the serving
//! certificate under the same CA). The CA is trusted nowhere but in this webhook's
//! `caBundle`, and has path length 0.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{
    api::{admissionregistration::v1::ValidatingWebhookConfiguration, core::v1::Secret},
    ByteString,
};
use kube::{
    api::{Api, ObjectMeta, Patch, PatchParams, PostParams},
    Client, Config,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{pem::PemObject, CertificateDer};
use x509_parser::{certificate::X509Certificate, extensions::GeneralName};

use crate::{health::Readiness, tls};

/// The readiness check that reports the certificate bootstrap.
pub const CERTIFICATE_CHECK: &str = "certificate";

/// Keys of the bootstrap Secret.
pub const KEY_TLS_CRT: &str = "tls.crt";
pub const KEY_TLS_KEY: &str = "tls.key";
pub const KEY_CA_CRT: &str = "ca.crt";
pub const KEY_CA_KEY: &str = "ca.key";

/// `NAME.NAMESPACE.svc` and `NAME.NAMESPACE.svc.cluster.local`: what kube-apiserver
/// verifies when it calls a webhook through a Service.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("no cluster configuration for the certificate bootstrap: {0}")]
    Connect(String),
    #[error("Secret {namespace}/{name}: {message}")]
    Secret {
        namespace: String,
        name: String,
        message: String,
    },
    #[error("certificate bootstrap gave up after {waited:?}: {last}")]
    GaveUp { waited: Duration, last: String },
    #[error("{0}")]
    Invalid(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

// ------------------------------------------------------------------ material (pure)

/// A CA and a serving certificate, PEM encoded: the content of the Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    /// Every CA to trust, newest first: the `caBundle`.
    pub ca_bundle: String,
    /// The current CA's key (signs renewed serving certificates).
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

/// How long certificates live and when they are renewed.
#[derive(Debug, Clone, Copy)]
pub struct RenewalPolicy {
    pub cert_validity: Duration,
    pub ca_validity: Duration,
    pub renew_before: Duration,
}

impl RenewalPolicy {
    fn check(&self) -> Result<(), CertError> {
        if self.renew_before >= self.cert_validity || self.renew_before >= self.ca_validity {
            return Err(CertError::Invalid(format!(
                "--cert-renew-before ({:?}) must be shorter than --cert-validity ({:?}) and --ca-validity ({:?})",
                self.renew_before, self.cert_validity, self.ca_validity
            )));
        }
        Ok(())
    }
}

/// What the stored material needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assessment {
    Keep,
    /// A new serving certificate from the current CA.
    RenewCert(String),
    /// A new CA (kept beside the old one in the bundle) and a new serving certificate.
    RenewCa(String),
}

/// `t + d`, saturating at the end of representable time.
fn plus(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

fn ders(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Base64 of the PEM bundle: the `caBundle` field's wire form.
pub fn ca_bundle_base64(ca_bundle_pem: &str) -> String {
    BASE64.encode(ca_bundle_pem.as_bytes())
}

fn not_after(cert: &X509Certificate<'_>) -> Timestamp {
    Timestamp::from_second(cert.validity().not_after.timestamp()).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn covers(cert: &X509Certificate<'_>, names: &[String]) -> bool {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return names.is_empty();
    };
    names.iter().all(|name| {
        san.value.general_names.iter().any(|g| match g {
            GeneralName::DNSName(d) => d.eq_ignore_ascii_case(name),
            GeneralName::IPAddress(bytes) => match name.parse::<IpAddr>() {
                Ok(IpAddr::V4(ip)) => *bytes == ip.octets(),
                Ok(IpAddr::V6(ip)) => *bytes == ip.octets(),
                Err(_) => false,
            },
            _ => false,
        })
    })
}

/// Decide whether `m` can go on being served for `names` at `now`.
pub fn assess(
    m: &Material,
    names: &[String],
    now: Timestamp,
    policy: &RenewalPolicy,
) -> Assessment {
    let due = plus(now, policy.renew_before);
    let ca_ders = ders(&m.ca_bundle);
    let Some(ca_der) = ca_ders.first() else {
        return Assessment::RenewCa("no CA certificate".into());
    };
    let Ok((_, ca)) = x509_parser::parse_x509_certificate(ca_der) else {
        return Assessment::RenewCa("the CA certificate does not parse".into());
    };
    let ca_key_matches = KeyPair::from_pem(&m.ca_key)
        .map(|k| k.public_key_raw() == &*ca.public_key().subject_public_key.data)
        .unwrap_or(false);
    if !ca_key_matches {
        return Assessment::RenewCa("the CA key is missing or does not match the CA".into());
    }
    if not_after(&ca) <= due {
        return Assessment::RenewCa(format!("the CA expires at {}", not_after(&ca)));
    }
    let leaf_ders = ders(&m.cert);
    let Some(leaf_der) = leaf_ders.first() else {
        return Assessment::RenewCert("no serving certificate".into());
    };
    let Ok((_, leaf)) = x509_parser::parse_x509_certificate(leaf_der) else {
        return Assessment::RenewCert("the serving certificate does not parse".into());
    };
    if leaf.verify_signature(Some(ca.public_key())).is_err() {
        return Assessment::RenewCert(
            "the serving certificate is not signed by the current CA".into(),
        );
    }
    if tls::server_config(m.cert.as_bytes(), m.key.as_bytes()).is_err() {
        return Assessment::RenewCert("the serving key does not match the certificate".into());
    }
    if !covers(&leaf, names) {
        return Assessment::RenewCert(format!(
            "the serving certificate does not name all of {names:?}"
        ));
    }
    if not_after(&leaf) <= due {
        return Assessment::RenewCert(format!(
            "the serving certificate expires at {}",
            not_after(&leaf)
        ));
    }
    Assessment::Keep
}

fn ca_params(now: Timestamp, validity: Duration) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    let stamp = Timestamp::from_second(now.as_second()).unwrap_or(now);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("fleet-delete-guard CA {stamp}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    tls::set_validity(&mut params, tls::backdated(now), plus(now, validity));
    Ok(params)
}

/// A new self-signed CA: (certificate PEM, key PEM).
pub fn new_ca(now: Timestamp, validity: Duration) -> Result<(String, String), CertError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = ca_params(now, validity)?.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A serving certificate for `names`, signed by the CA; it never outlives the CA.
pub fn issue_cert(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    names: &[String],
    now: Timestamp,
    validity: Duration,
) -> Result<(String, String), CertError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let ca_ders = ders(ca_cert_pem);
    let ca_der = ca_ders
        .first()
        .ok_or_else(|| CertError::Invalid("no CA certificate".into()))?;
    let ca_not_after = x509_parser::parse_x509_certificate(ca_der)
        .map(|(_, c)| not_after(&c))
        .map_err(|e| CertError::Invalid(format!("the CA certificate does not parse: {e}")))?;
    let issuer = Issuer::from_ca_cert_der(ca_der, ca_key)?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = DistinguishedName::new();
    if let Some(first) = names.first() {
        params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    tls::set_validity(
        &mut params,
        tls::backdated(now),
        plus(now, validity).min(ca_not_after),
    );
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Fresh material: a new CA and a serving certificate.
pub fn fresh(
    names: &[String],
    now: Timestamp,
    policy: &RenewalPolicy,
) -> Result<Material, CertError> {
    let (ca_cert, ca_key) = new_ca(now, policy.ca_validity)?;
    let (cert, key) = issue_cert(&ca_cert, &ca_key, names, now, policy.cert_validity)?;
    Ok(Material {
        ca_bundle: ca_cert,
        ca_key,
        cert,
        key,
    })
}

/// What `m` becomes after `assessment` (None for [`Assessment::Keep`]).
pub fn renew(
    m: &Material,
    assessment: &Assessment,
    names: &[String],
    now: Timestamp,
    policy: &RenewalPolicy,
) -> Result<Option<Material>, CertError> {
    match assessment {
        Assessment::Keep => Ok(None),
        Assessment::RenewCert(_) => {
            let current_ca = ders(&m.ca_bundle)
                .first()
                .map(|d| pem_encode("CERTIFICATE", d))
                .unwrap_or_default();
            let (cert, key) = issue_cert(&current_ca, &m.ca_key, names, now, policy.cert_validity)?;
            Ok(Some(Material {
                cert,
                key,
                ..m.clone()
            }))
        }
        Assessment::RenewCa(_) => {
            let mut next = fresh(names, now, policy)?;
            // Keep the CAs that are still valid: replicas serving a certificate of the
            // old CA stay trusted until they pick up the new one.
            for der in ders(&m.ca_bundle) {
                let still_valid = x509_parser::parse_x509_certificate(&der)
                    .map(|(_, c)| not_after(&c) > now)
                    .unwrap_or(false);
                if still_valid {
                    next.ca_bundle.push_str(&pem_encode("CERTIFICATE", &der));
                }
            }
            Ok(Some(next))
        }
    }
}

// ------------------------------------------------------------------ the Secret

fn secret_string(secret: &Secret, key: &str) -> String {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default()
}

fn material_of(secret: &Secret) -> Material {
    Material {
        ca_bundle: secret_string(secret, KEY_CA_CRT),
        ca_key: secret_string(secret, KEY_CA_KEY),
        cert: secret_string(secret, KEY_TLS_CRT),
        key: secret_string(secret, KEY_TLS_KEY),
    }
}

fn data_of(m: &Material) -> BTreeMap<String, ByteString> {
    [
        (KEY_TLS_CRT, &m.cert),
        (KEY_TLS_KEY, &m.key),
        (KEY_CA_CRT, &m.ca_bundle),
        (KEY_CA_KEY, &m.ca_key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
    .collect()
}

/// Where the bootstrap keeps and serves its certificate (`serve --cert-secret …`).
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub namespace: String,
    pub secret: String,
    pub webhook_config: Option<String>,
    pub service_name: String,
    pub names: Vec<String>,
    pub policy: RenewalPolicy,
    /// Where the served `tls.crt`/`tls.key` (and `ca.crt`) are written.
    pub cert_dir: PathBuf,
    /// How often the Secret is checked (renewal due, renewed by another replica).
    pub check_interval: Duration,
    /// Start-up gives up when the Secret cannot be read or written for this long.
    pub timeout: Duration,
}

/// What one pass over the Secret did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The Secret was fine as it was (possibly written by another replica).
    Read,
    Created,
    Renewed(String),
}

impl Bootstrap {
    fn secret_error(&self, message: impl Into<String>) -> CertError {
        CertError::Secret {
            namespace: self.namespace.clone(),
            name: self.secret.clone(),
            message: message.into(),
        }
    }

    /// Read the Secret; create or renew it when needed. Races with other replicas end
    /// with everyone using the winner's material.
    pub async fn ensure(&self, client: &Client) -> Result<(Material, Outcome), CertError> {
        self.policy.check()?;
        let api: Api<Secret> = Api::namespaced(client.clone(), &self.namespace);
        let mut last = String::new();
        for _ in 0..8 {
            let now = Timestamp::now();
            let current = api
                .get_opt(&self.secret)
                .await
                .map_err(|e| self.secret_error(format!("cannot read it: {e}")))?;
            let Some(secret) = current else {
                let material = fresh(&self.names, now, &self.policy)?;
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(self.secret.clone()),
                        namespace: Some(self.namespace.clone()),
                        labels: Some(BTreeMap::from([
                            (
                                "app.kubernetes.io/name".to_string(),
                                "fleet-delete-guard".to_string(),
                            ),
                            (
                                "app.kubernetes.io/managed-by".to_string(),
                                "fleet-delete-guard".to_string(),
                            ),
                        ])),
                        ..ObjectMeta::default()
                    },
                    type_: Some("kubernetes.io/tls".into()),
                    data: Some(data_of(&material)),
                    ..Secret::default()
                };
                match api.create(&PostParams::default(), &secret).await {
                    Ok(_) => return Ok((material, Outcome::Created)),
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        tracing::debug!(secret = %self.secret, "another replica created the certificate Secret first; reading it");
                        last = "created concurrently".into();
                        continue;
                    }
                    Err(e) => return Err(self.secret_error(format!("cannot create it: {e}"))),
                }
            };
            let stored = material_of(&secret);
            let assessment = assess(&stored, &self.names, now, &self.policy);
            let Some(next) = renew(&stored, &assessment, &self.names, now, &self.policy)? else {
                return Ok((stored, Outcome::Read));
            };
            let reason = match &assessment {
                Assessment::RenewCert(r) => format!("new serving certificate: {r}"),
                Assessment::RenewCa(r) => format!("new CA and serving certificate: {r}"),
                Assessment::Keep => String::new(),
            };
            let mut updated = secret.clone();
            updated.data = Some(data_of(&next));
            updated.metadata.managed_fields = None;
            // The read resourceVersion stays in `updated`: a concurrent renewal gets 409.
            match api
                .replace(&self.secret, &PostParams::default(), &updated)
                .await
            {
                Ok(_) => return Ok((next, Outcome::Renewed(reason))),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    tracing::debug!(secret = %self.secret, "the certificate Secret changed while renewing it; reading it again");
                    last = "renewed concurrently".into();
                    continue;
                }
                Err(e) => return Err(self.secret_error(format!("cannot update it: {e}"))),
            }
        }
        Err(self.secret_error(format!("kept conflicting with other writers ({last})")))
    }

    /// Make the caBundle of every webhook of the configuration that calls our Service
    /// equal to `ca_bundle`. Returns how many webhooks were changed.
    pub async fn sync_ca_bundle(&self, client: &Client, ca_bundle: &str) -> Result<usize, String> {
        let Some(name) = &self.webhook_config else {
            return Ok(0);
        };
        let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        let vwc = api
            .get(name)
            .await
            .map_err(|e| format!("cannot read ValidatingWebhookConfiguration {name}: {e}"))?;
        let wanted = ca_bundle_base64(ca_bundle);
        let mut ops = Vec::new();
        let mut ours = 0;
        for (i, w) in vwc.webhooks.iter().flatten().enumerate() {
            let calls_us = w
                .client_config
                .service
                .as_ref()
                .is_some_and(|s| s.name == self.service_name && s.namespace == self.namespace);
            if !calls_us {
                continue;
            }
            ours += 1;
            let have = w
                .client_config
                .ca_bundle
                .as_ref()
                .map(|b| BASE64.encode(&b.0))
                .unwrap_or_default();
            if have != wanted {
                ops.push(serde_json::json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": w.name}));
                ops.push(serde_json::json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": wanted}));
            }
        }
        if ours == 0 {
            return Err(format!(
                "ValidatingWebhookConfiguration {name} has no webhook calling service {}/{}",
                self.namespace, self.service_name
            ));
        }
        if ops.is_empty() {
            return Ok(0);
        }
        let changed = ops.len() / 2;
        let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
            .map_err(|e| format!("cannot build the caBundle patch: {e}"))?;
        api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
            .map_err(|e| {
                format!("cannot patch the caBundle of ValidatingWebhookConfiguration {name}: {e}")
            })?;
        Ok(changed)
    }
}

/// The served pair as files: written only when the bytes change (the hot reload
/// compares bytes too), key first, each atomically.
pub fn write_pair(dir: &Path, m: &Material) -> Result<tls::CertFiles, CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let files = tls::CertFiles {
        cert: dir.join(KEY_TLS_CRT),
        key: dir.join(KEY_TLS_KEY),
    };
    let ca = dir.join(KEY_CA_CRT);
    for (path, content) in [
        (&files.key, &m.key),
        (&files.cert, &m.cert),
        (&ca, &m.ca_bundle),
    ] {
        if std::fs::read(path).ok().as_deref() != Some(content.as_bytes()) {
            tls::write_file_atomically(path, content.as_bytes())?;
        }
    }
    Ok(files)
}

/// Default of `--cert-dir`.
pub fn default_cert_dir() -> PathBuf {
    std::env::temp_dir().join("fleet-delete-guard-certs")
}

async fn connect() -> Result<Client, CertError> {
    let config = Config::infer()
        .await
        .map_err(|e| CertError::Connect(e.to_string()))?;
    Client::try_from(config).map_err(|e| CertError::Connect(e.to_string()))
}

/// What the bootstrap shares with the watch on the webhook configuration
/// (src/webhook_config/watch.rs): the CA bundle it keeps in the caBundle, and a way to
/// ask for a sync now (when the watch sees a caBundle that no longer trusts it) rather
/// than at the next `--cert-check-interval`.
#[derive(Debug, Clone)]
pub struct CaBundleLink {
    pub ca_bundle: tokio::sync::watch::Sender<Option<String>>,
    pub sync_now: std::sync::Arc<tokio::sync::Notify>,
}

impl Default for CaBundleLink {
    fn default() -> Self {
        Self {
            ca_bundle: tokio::sync::watch::Sender::new(None),
            sync_now: std::sync::Arc::default(),
        }
    }
}

/// Called by `serve` before TLS is set up, with `--cert-secret`: bootstraps the Secret
/// (retrying for [`Bootstrap::timeout`]), writes the pair to [`Bootstrap::cert_dir`],
/// syncs the caBundle, keeps both up to date in the background, and returns the files
/// to serve (with the usual hot reload).
pub async fn bootstrap(
    boot: Bootstrap,
    readiness: &Readiness,
    link: CaBundleLink,
) -> Result<tls::CertFiles, CertError> {
    boot.policy.check()?;
    let dir = boot.cert_dir.clone();
    let client = connect().await?;
    let started = std::time::Instant::now();
    let timeout = boot.timeout;
    let mut backoff = Duration::from_millis(200);
    let (material, outcome) = loop {
        match boot.ensure(&client).await {
            Ok(done) => break done,
            Err(e @ (CertError::Invalid(_) | CertError::Generate(_))) => return Err(e),
            Err(e) if started.elapsed() + backoff > timeout => {
                return Err(CertError::GaveUp {
                    waited: started.elapsed(),
                    last: e.to_string(),
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "certificate bootstrap failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    let files = write_pair(&dir, &material)?;
    tracing::info!(
        secret = %format!("{}/{}", boot.namespace, boot.secret),
        outcome = ?outcome,
        names = ?boot.names,
        cert_dir = %dir.display(),
        "serving certificate bootstrapped"
    );
    let synced = sync_and_log(&boot, &client, &material.ca_bundle).await;
    link.ca_bundle
        .send_replace(Some(material.ca_bundle.clone()));
    readiness.set(
        CERTIFICATE_CHECK,
        true,
        format!(
            "from Secret {}/{}{}",
            boot.namespace,
            boot.secret,
            if synced {
                ""
            } else {
                "; caBundle not synced yet"
            }
        ),
    );
    let interval = boot.check_interval;
    tokio::spawn(maintain(
        boot,
        client,
        dir,
        interval,
        synced,
        readiness.clone(),
        link,
    ));
    Ok(files)
}

async fn sync_and_log(boot: &Bootstrap, client: &Client, ca_bundle: &str) -> bool {
    match boot.sync_ca_bundle(client, ca_bundle).await {
        Ok(0) => true,
        Ok(n) => {
            tracing::info!(
                webhook_config = boot.webhook_config.as_deref().unwrap_or(""),
                webhooks = n,
                "caBundle updated"
            );
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot sync the caBundle yet; kube-apiserver cannot call this webhook until it is (failurePolicy Ignore lets deletions through)");
            false
        }
    }
}

/// Every `interval` (every 10 s while the caBundle is not synced, and at once when the
/// webhook configuration watch asks): renew when due, pick up renewals of other
/// replicas, keep the caBundle in sync.
async fn maintain(
    boot: Bootstrap,
    client: Client,
    dir: PathBuf,
    interval: Duration,
    mut synced: bool,
    readiness: Readiness,
    link: CaBundleLink,
) {
    loop {
        let wait = if synced {
            interval
        } else {
            interval.min(Duration::from_secs(10))
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = link.sync_now.notified() => {}
        }
        match boot.ensure(&client).await {
            Ok((material, outcome)) => {
                if let Outcome::Renewed(reason) = &outcome {
                    tracing::info!(reason = %reason, "certificate renewed");
                }
                if let Err(e) = write_pair(&dir, &material) {
                    tracing::error!(error = %e, "cannot write the renewed certificate files");
                    continue;
                }
                synced = sync_and_log(&boot, &client, &material.ca_bundle).await;
                link.ca_bundle.send_if_modified(|ca| {
                    let changed = ca.as_deref() != Some(material.ca_bundle.as_str());
                    if changed {
                        *ca = Some(material.ca_bundle.clone());
                    }
                    changed
                });
                readiness.set(
                    CERTIFICATE_CHECK,
                    true,
                    format!(
                        "from Secret {}/{}{}",
                        boot.namespace,
                        boot.secret,
                        if synced {
                            ""
                        } else {
                            "; caBundle not synced yet"
                        }
                    ),
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "certificate check failed; serving the current certificate")
            }
        }
    }
}

// ------------------------------------------------------------------ `certs` subcommand

/// What `fleet-delete-guard certs` writes (flags: `CertsArgs` in src/cli.rs).
#[derive(Debug, Clone)]
pub struct CertsOptions {
    /// DNS names or IP addresses of the serving certificate.
    pub dns_names: Vec<String>,
    /// Directory for ca.crt, ca.key, tls.crt and tls.key (created when missing).
    pub out_dir: PathBuf,
    /// Sign with this existing CA (PEM, with its key) instead of creating one.
    pub ca_cert: Option<PathBuf>,
    pub ca_key: Option<PathBuf>,
    /// Validity of the serving certificate.
    pub validity: Duration,
    /// Validity of a new CA.
    pub ca_validity: Duration,
    /// Overwrite existing files.
    pub force: bool,
}

/// Run `certs`; returns what to print.
pub fn run_certs(args: &CertsOptions) -> Result<String, CertError> {
    tls::install_crypto_provider();
    let now = Timestamp::now();
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p)
            .map_err(|e| CertError::Invalid(format!("cannot read {}: {e}", p.display())))
    };
    let (ca_cert, ca_key, new_ca_made) = match (&args.ca_cert, &args.ca_key) {
        (Some(c), Some(k)) => (read(c)?, read(k)?, false),
        _ => {
            let (c, k) = new_ca(now, args.ca_validity)?;
            (c, k, true)
        }
    };
    let (cert, key) = issue_cert(&ca_cert, &ca_key, &args.dns_names, now, args.validity)?;
    std::fs::create_dir_all(&args.out_dir).map_err(|source| CertError::Write {
        path: args.out_dir.clone(),
        source,
    })?;
    let mut files: Vec<(&str, &str)> = vec![(KEY_TLS_CRT, &cert), (KEY_TLS_KEY, &key)];
    if new_ca_made {
        files.push((KEY_CA_CRT, &ca_cert));
        files.push((KEY_CA_KEY, &ca_key));
    }
    if !args.force {
        if let Some((name, _)) = files.iter().find(|(n, _)| args.out_dir.join(n).exists()) {
            return Err(CertError::Invalid(format!(
                "{} exists; use --force to overwrite",
                args.out_dir.join(name).display()
            )));
        }
    }
    for (name, content) in &files {
        let path = args.out_dir.join(name);
        tls::write_file_atomically(&path, content.as_bytes())?;
        #[cfg(unix)]
        if name.ends_with(".key") {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
    }
    let dir = args.out_dir.display();
    let mut out = String::new();
    out.push_str(&format!(
        "wrote {} in {dir} for {}\n",
        files.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
        args.dns_names.join(", ")
    ));
    out.push_str(&format!(
        "\nServe it:\n  fleet-delete-guard serve --tls-cert {dir}/tls.crt --tls-key {dir}/tls.key\n"
    ));
    out.push_str(&format!(
        "\nIn a cluster (instead of the built-in bootstrap, see certs/README.md):\n  \
         kubectl -n cattle-fleet-system create secret tls fleet-delete-guard-own-cert --cert {dir}/tls.crt --key {dir}/tls.key\n"
    ));
    out.push_str(&format!(
        "\ncaBundle for the ValidatingWebhookConfiguration:\n{}\n",
        ca_bundle_base64(&ca_cert)
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RenewalPolicy {
        RenewalPolicy {
            cert_validity: Duration::from_secs(365 * 86400),
            ca_validity: Duration::from_secs(3650 * 86400),
            renew_before: Duration::from_secs(30 * 86400),
        }
    }

    fn names() -> Vec<String> {
        service_dns_names("fleet-delete-guard", "cattle-fleet-system")
    }

    #[test]
    fn fresh_material_is_kept_and_serves() {
        tls::install_crypto_provider();
        let now = Timestamp::now();
        let m = fresh(&names(), now, &policy()).expect("fresh");
        assert_eq!(assess(&m, &names(), now, &policy()), Assessment::Keep);
        tls::server_config(m.cert.as_bytes(), m.key.as_bytes()).expect("a usable pair");
    }

    #[test]
    fn the_serving_certificate_is_renewed_before_expiry_under_the_same_ca() {
        tls::install_crypto_provider();
        let now = Timestamp::now();
        let m = fresh(&names(), now, &policy()).expect("fresh");
        let later = now + SignedDuration::from_hours(340 * 24);
        let a = assess(&m, &names(), later, &policy());
        assert!(matches!(a, Assessment::RenewCert(_)), "{a:?}");
        let renewed = renew(&m, &a, &names(), later, &policy())
            .expect("renew")
            .expect("changed");
        assert_eq!(
            renewed.ca_bundle, m.ca_bundle,
            "same CA: the caBundle does not change"
        );
        assert_ne!(renewed.cert, m.cert);
        assert_eq!(
            assess(&renewed, &names(), later, &policy()),
            Assessment::Keep
        );
    }

    #[test]
    fn new_names_give_a_new_certificate() {
        tls::install_crypto_provider();
        let now = Timestamp::now();
        let m = fresh(&names(), now, &policy()).expect("fresh");
        let more = vec![
            "other.cattle-fleet-system.svc".to_string(),
            "127.0.0.1".to_string(),
        ];
        assert!(matches!(
            assess(&m, &more, now, &policy()),
            Assessment::RenewCert(_)
        ));
        let renewed = renew(
            &m,
            &assess(&m, &more, now, &policy()),
            &more,
            now,
            &policy(),
        )
        .expect("renew")
        .expect("changed");
        assert_eq!(assess(&renewed, &more, now, &policy()), Assessment::Keep);
    }

    #[test]
    fn an_expiring_ca_is_replaced_and_the_old_one_stays_in_the_bundle() {
        tls::install_crypto_provider();
        let now = Timestamp::now();
        let m = fresh(&names(), now, &policy()).expect("fresh");
        let later = now + SignedDuration::from_hours(3640 * 24);
        let a = assess(&m, &names(), later, &policy());
        assert!(matches!(a, Assessment::RenewCa(_)), "{a:?}");
        let renewed = renew(&m, &a, &names(), later, &policy())
            .expect("renew")
            .expect("changed");
        let bundle = ders(&renewed.ca_bundle);
        assert_eq!(bundle.len(), 2, "new CA first, the old one still trusted");
        assert_eq!(pem_encode("CERTIFICATE", &bundle[1]), m.ca_bundle);
        assert_eq!(
            assess(&renewed, &names(), later, &policy()),
            Assessment::Keep
        );
    }

    #[test]
    fn broken_material_is_replaced() {
        tls::install_crypto_provider();
        let now = Timestamp::now();
        let m = fresh(&names(), now, &policy()).expect("fresh");
        let empty = Material {
            ca_bundle: String::new(),
            ca_key: String::new(),
            cert: String::new(),
            key: String::new(),
        };
        assert!(matches!(
            assess(&empty, &names(), now, &policy()),
            Assessment::RenewCa(_)
        ));
        let other = fresh(&names(), now, &policy()).expect("other");
        let foreign_leaf = Material {
            cert: other.cert.clone(),
            key: other.key.clone(),
            ..m.clone()
        };
        assert!(matches!(
            assess(&foreign_leaf, &names(), now, &policy()),
            Assessment::RenewCert(_)
        ));
        let wrong_key = Material {
            key: other.key.clone(),
            ..m.clone()
        };
        assert!(matches!(
            assess(&wrong_key, &names(), now, &policy()),
            Assessment::RenewCert(_)
        ));
        let wrong_ca_key = Material {
            ca_key: other.ca_key.clone(),
            ..m.clone()
        };
        assert!(matches!(
            assess(&wrong_ca_key, &names(), now, &policy()),
            Assessment::RenewCa(_)
        ));
    }

    #[test]
    fn renew_before_must_be_shorter_than_the_validity() {
        let p = RenewalPolicy {
            renew_before: Duration::from_secs(400 * 86400),
            ..policy()
        };
        assert!(p.check().is_err());
        assert!(policy().check().is_ok());
    }

    #[test]
    fn certs_writes_files_and_refuses_to_overwrite() {
        let dir = tempfile_dir();
        let args = CertsOptions {
            dns_names: vec!["localhost".into(), "127.0.0.1".into()],
            out_dir: dir.clone(),
            ca_cert: None,
            ca_key: None,
            validity: Duration::from_secs(86400),
            ca_validity: Duration::from_secs(10 * 86400),
            force: false,
        };
        let out = run_certs(&args).expect("certs");
        assert!(out.contains("caBundle"), "{out}");
        for f in [KEY_CA_CRT, KEY_CA_KEY, KEY_TLS_CRT, KEY_TLS_KEY] {
            assert!(dir.join(f).exists(), "{f}");
        }
        assert!(run_certs(&args).is_err(), "no silent overwrite");
        // Renew the serving certificate under the same CA.
        let ca = std::fs::read_to_string(dir.join(KEY_CA_CRT)).expect("ca");
        let renew = CertsOptions {
            ca_cert: Some(dir.join(KEY_CA_CRT)),
            ca_key: Some(dir.join(KEY_CA_KEY)),
            force: true,
            ..args
        };
        run_certs(&renew).expect("renew");
        let m = Material {
            ca_bundle: ca,
            ca_key: std::fs::read_to_string(dir.join(KEY_CA_KEY)).expect("ca key"),
            cert: std::fs::read_to_string(dir.join(KEY_TLS_CRT)).expect("cert"),
            key: std::fs::read_to_string(dir.join(KEY_TLS_KEY)).expect("key"),
        };
        let p = RenewalPolicy {
            cert_validity: Duration::from_secs(86400),
            ca_validity: Duration::from_secs(10 * 86400),
            renew_before: Duration::from_secs(60),
        };
        assert_eq!(
            assess(
                &m,
                &["localhost".into(), "127.0.0.1".into()],
                Timestamp::now(),
                &p
            ),
            Assessment::Keep
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "fleet-delete-guard-certs-test-{}-{}",
            std::process::id(),
            Timestamp::now().as_nanosecond()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }
}
