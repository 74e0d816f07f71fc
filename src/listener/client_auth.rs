//! Client certificates (`--client-ca`, `--client-cert-name`): the TLS handshake
//! requires a client certificate that chains to the CA (rustls'
//! `WebPkiClientVerifier`) and, if names are given, whose subject CN or a DNS SAN is
//! one of them. The serving certificate keeps coming from the configuration
//! `src/tls.rs` reloads ([`DelegatingResolver`]); the CA file is re-read with the
//! same watcher (`crate::watch`).

use std::{
    fmt, io,
    path::{Path, PathBuf},
    sync::Arc,
};

use axum_server::tls_rustls::RustlsConfig;
use std::time::Duration;

use crate::metrics::Metrics;
use rustls::{
    client::danger::HandshakeSignatureValid,
    pki_types::{pem::PemObject, CertificateDer, UnixTime},
    server::{
        danger::{ClientCertVerified, ClientCertVerifier},
        ClientHello, ResolvesServerCert, WebPkiClientVerifier,
    },
    sign::CertifiedKey,
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientCaError {
    #[error("cannot read: {0}")]
    Read(#[from] io::Error),
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("no CA certificate in the file")]
    Empty,
    #[error("unusable CA certificate: {0}")]
    Ca(String),
}

/// Serves whatever certificate the reloadable serving configuration serves now, so
/// that a configuration with client authentication follows `src/tls.rs` reloads.
#[derive(Clone)]
pub struct DelegatingResolver(RustlsConfig);

impl fmt::Debug for DelegatingResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DelegatingResolver")
    }
}

impl ResolvesServerCert for DelegatingResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.get_inner().cert_resolver.resolve(client_hello)
    }
}

/// Client-certificate requirements.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    pub ca_file: PathBuf,
    /// Accepted subject CNs / DNS SANs; empty: any certificate from the CA.
    pub names: Vec<String>,
}

/// The CA file's bytes as last loaded.
type CaBytes = Vec<u8>;

impl ClientAuth {
    fn read(&self) -> Result<CaBytes, ClientCaError> {
        Ok(std::fs::read(&self.ca_file)?)
    }

    /// A configuration requiring client certificates, serving what `served` serves.
    pub fn config(&self, served: RustlsConfig) -> Result<(RustlsConfig, CaBytes), ClientCaError> {
        let bytes = self.read()?;
        let config = server_config_with_client_auth(&bytes, &self.names, served)?;
        Ok((RustlsConfig::from_config(config), bytes))
    }

    /// Re-read the CA file every `interval` (`crate::watch`) and put a changed, usable
    /// CA into `tls`, which keeps serving what `served` serves.
    pub(super) async fn reload_on_change(
        self,
        served: RustlsConfig,
        tls: RustlsConfig,
        loaded: CaBytes,
        interval: Duration,
        metrics: Metrics,
    ) {
        let source = WatchedCa {
            auth: self,
            served,
            tls,
        };
        crate::watch::watch(source, loaded, interval, metrics).await
    }
}

/// The client CA as the watcher sees it.
#[derive(Clone)]
struct WatchedCa {
    auth: ClientAuth,
    served: RustlsConfig,
    tls: RustlsConfig,
}

impl crate::watch::Watched for WatchedCa {
    type Bytes = CaBytes;
    type Error = ClientCaError;

    fn read(&self) -> Result<CaBytes, ClientCaError> {
        self.auth.read()
    }

    fn apply(&self, bytes: &CaBytes) -> Result<(), ClientCaError> {
        let config = server_config_with_client_auth(bytes, &self.auth.names, self.served.clone())?;
        self.tls.reload_from_config(config);
        Ok(())
    }

    fn unreadable(&self, error: &ClientCaError) {
        tracing::debug!(error = %error, "client CA file not readable; keeping the current CA");
    }

    fn reloaded(&self) {
        tracing::info!(client_ca = %self.auth.ca_file.display(), "client CA reloaded from disk");
    }

    fn rejected(&self, error: &ClientCaError) {
        tracing::error!(client_ca = %self.auth.ca_file.display(), error = %error,
            "new client CA file is not usable; still verifying against the previous one");
    }
}

/// Roots from a PEM bundle.
pub fn ca_roots(pem: &[u8]) -> Result<RootCertStore, ClientCaError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientCaError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(ClientCaError::Empty);
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| ClientCaError::Ca(e.to_string()))?;
    }
    Ok(roots)
}

/// The serving configuration of `src/tls.rs` (TLS 1.3 and 1.2, ALPN `http/1.1`, ring)
/// with mandatory client certificates from `ca_pem`, optionally limited to `names`.
pub fn server_config_with_client_auth(
    ca_pem: &[u8],
    names: &[String],
    served: RustlsConfig,
) -> Result<Arc<ServerConfig>, ClientCaError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki =
        WebPkiClientVerifier::builder_with_provider(Arc::new(ca_roots(ca_pem)?), provider.clone())
            .build()
            .map_err(|e| ClientCaError::Ca(e.to_string()))?;
    let verifier: Arc<dyn ClientCertVerifier> = if names.is_empty() {
        webpki
    } else {
        Arc::new(NamedClientVerifier {
            inner: webpki,
            names: names.to_vec(),
        })
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ClientCaError::Ca(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(DelegatingResolver(served)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The subject CN and DNS SANs of a DER certificate.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push((*dns).to_string());
            }
        }
    }
    names
}

/// WebPKI verification, then the name check.
#[derive(Debug)]
struct NamedClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    names: Vec<String>,
}

impl ClientCertVerifier for NamedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let presented = certificate_names(end_entity.as_ref());
        if presented.iter().any(|n| self.names.contains(n)) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Whether `path` holds a usable client CA (for start-up checks and tests).
pub fn check_client_ca(path: &Path) -> Result<(), ClientCaError> {
    ca_roots(&std::fs::read(path)?).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls;
    use std::time::Duration;

    #[test]
    fn ca_files_are_checked() {
        tls::install_crypto_provider();
        assert!(matches!(
            ca_roots(b"nothing here"),
            Err(ClientCaError::Empty)
        ));
        let certs = tls::generate_certificates(&["client".into()], Duration::from_secs(60))
            .expect("generate");
        assert!(ca_roots(certs.ca_pem.as_bytes()).is_ok());
        assert_eq!(
            certificate_names(
                CertificateDer::from_pem_slice(certs.cert_pem.as_bytes())
                    .expect("pem")
                    .as_ref()
            ),
            ["client", "client"],
            "CN and DNS SAN"
        );
    }
}
