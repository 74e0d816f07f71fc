//! Serving certificates: generate (rcgen), load (rustls), and hot-reload from disk
//! (with the watcher of `src/watch.rs`).
//!
//! kube-apiserver calls webhooks over HTTP/1.1 only, so ALPN offers `http/1.1` alone.
//! The process uses one rustls crypto provider, ring, which is also kube's default:
//! two providers in one binary make rustls panic at start-up.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use axum_server::tls_rustls::RustlsConfig;
use jiff::{SignedDuration, Timestamp};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    ServerConfig,
};

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no PEM certificate found in the certificate file")]
    NoCertificate,
    #[error("invalid PEM certificate: {0}")]
    BadCertificate(String),
    #[error("invalid or missing PEM private key: {0}")]
    BadKey(String),
    #[error("certificate and key do not form a usable pair: {0}")]
    Pair(#[from] rustls::Error),
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Install ring as the process-wide rustls provider. Call once, first thing in `main`
/// and in tests; later calls are harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A CA and a serving certificate signed by it, PEM encoded.
#[derive(Debug, Clone)]
pub struct GeneratedCertificates {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Generate a CA and an ECDSA P-256 serving certificate for `names` (DNS names or IP
/// addresses), valid from now for `validity`. ECDSA P-256 makes a TLS handshake about
/// three times cheaper than RSA 2048 for the server.
pub fn generate_certificates(
    names: &[String],
    validity: Duration,
) -> Result<GeneratedCertificates, TlsError> {
    let now = Timestamp::now();
    let not_before = backdated(now);
    let not_after = SignedDuration::try_from(validity)
        .ok()
        .and_then(|v| now.checked_add(v).ok())
        .unwrap_or(Timestamp::MAX);

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fleet-delete-guard CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut ca_params, not_before, not_after);
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let mut leaf_params = CertificateParams::new(names.to_vec())?;
    leaf_params.distinguished_name = DistinguishedName::new();
    if let Some(first) = names.first() {
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
    }
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    set_validity(&mut leaf_params, not_before, not_after);
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca)?;

    Ok(GeneratedCertificates {
        ca_pem: ca.pem(),
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
    })
}

/// Five minutes before `now`: new certificates tolerate that much clock skew.
pub(crate) fn backdated(now: Timestamp) -> Timestamp {
    now.checked_sub(SignedDuration::from_mins(5)).unwrap_or(now)
}

/// Set rcgen's validity bounds from timestamps. rcgen takes `time` values; they are
/// built from rcgen's own epoch date, so that this crate depends on one date-time
/// crate (jiff). Instants before 1970 are taken as 1970.
pub(crate) fn set_validity(
    params: &mut CertificateParams,
    not_before: Timestamp,
    not_after: Timestamp,
) {
    let since_epoch = |t: Timestamp| Duration::from_secs(u64::try_from(t.as_second()).unwrap_or(0));
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_before);
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_after);
}

/// A rustls server configuration for a PEM certificate chain and key: TLS 1.2 and 1.3,
/// ALPN `http/1.1`. Fails when the key does not match the certificate.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey(e.to_string()))?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The raw bytes of a certificate file and its key file, as last read.
pub type PairBytes = (Vec<u8>, Vec<u8>);

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    fn read(&self) -> Result<PairBytes, TlsError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| TlsError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        Ok((read(&self.cert)?, read(&self.key)?))
    }

    /// Load the pair once, for start-up: an error here is fatal.
    pub fn load(&self) -> Result<(Arc<ServerConfig>, PairBytes), TlsError> {
        let bytes = self.read()?;
        Ok((server_config(&bytes.0, &bytes.1)?, bytes))
    }
}

/// Write `contents` to `path` atomically (temporary file + rename).
pub fn write_file_atomically(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    let write_err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, contents).map_err(write_err)?;
    std::fs::rename(&tmp, path).map_err(write_err)
}

/// Check the certificate files every `interval` (`crate::watch`) and swap the served
/// certificate when their bytes change and the new pair is valid. A broken pair is
/// logged and counted once; the old one stays.
pub async fn reload_on_change(
    files: CertFiles,
    served: RustlsConfig,
    loaded: PairBytes,
    interval: Duration,
    metrics: Metrics,
) {
    crate::watch::watch(ServedPair { files, served }, loaded, interval, metrics).await
}

/// The serving certificate as the watcher sees it.
#[derive(Clone)]
struct ServedPair {
    files: CertFiles,
    served: RustlsConfig,
}

impl crate::watch::Watched for ServedPair {
    type Bytes = PairBytes;
    type Error = TlsError;

    fn read(&self) -> Result<PairBytes, TlsError> {
        self.files.read()
    }

    fn apply(&self, bytes: &PairBytes) -> Result<(), TlsError> {
        self.served
            .reload_from_config(server_config(&bytes.0, &bytes.1)?);
        Ok(())
    }

    fn unreadable(&self, error: &TlsError) {
        tracing::debug!(error = %error, "certificate files not readable; keeping the served certificate");
    }

    fn reloaded(&self) {
        tracing::info!("serving certificate reloaded from disk");
    }

    fn rejected(&self, error: &TlsError) {
        tracing::error!(error = %error, "new certificate files are not a valid pair; still serving the previous certificate");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["localhost".into(), "127.0.0.1".into()]
    }

    #[test]
    fn generated_pair_loads() {
        install_crypto_provider();
        let certs = generate_certificates(&names(), Duration::from_secs(3600)).expect("generate");
        assert!(certs.ca_pem.contains("BEGIN CERTIFICATE"));
        let config =
            server_config(certs.cert_pem.as_bytes(), certs.key_pem.as_bytes()).expect("config");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn mismatched_key_is_rejected() {
        install_crypto_provider();
        let a = generate_certificates(&names(), Duration::from_secs(3600)).expect("a");
        let b = generate_certificates(&names(), Duration::from_secs(3600)).expect("b");
        let err = server_config(a.cert_pem.as_bytes(), b.key_pem.as_bytes()).expect_err("mismatch");
        assert!(matches!(err, TlsError::Pair(_)), "{err}");
    }

    #[test]
    fn garbage_files_give_clear_errors() {
        install_crypto_provider();
        let a = generate_certificates(&names(), Duration::from_secs(3600)).expect("a");
        assert!(matches!(
            server_config(b"hello", a.key_pem.as_bytes()),
            Err(TlsError::NoCertificate)
        ));
        assert!(matches!(
            server_config(a.cert_pem.as_bytes(), b"nope"),
            Err(TlsError::BadKey(_))
        ));
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let files = CertFiles {
            cert: "/nonexistent/tls.crt".into(),
            key: "/nonexistent/tls.key".into(),
        };
        let err = files.load().expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/tls.crt"), "{err}");
    }
}
