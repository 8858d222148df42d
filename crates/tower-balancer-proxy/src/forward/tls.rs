//! TLS to members: trust roots, an optional client certificate, ALPN.
//!
//! Why custom roots: in the seed each Identity Server node presents its own certificate
//! (CN abc.com, xyz.com) signed by a private CA imported into the balancer's trust store;
//! the public web PKI is the wrong trust anchor for a cluster's inside.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::tls::TlsError;

/// How the forwarder speaks TLS to members.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    roots: RootCertStore,
    client: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
}

impl UpstreamTls {
    /// Trusts the CA certificates in `pem` (one or more `BEGIN CERTIFICATE` blocks).
    ///
    /// # Errors
    /// [`TlsError`] if the PEM holds no certificate or a certificate is invalid.
    pub fn from_pem_roots(pem: &[u8]) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| TlsError::Pem(e.to_string()))?;
            roots.add(cert)?;
            n += 1;
        }
        if n == 0 {
            return Err(TlsError::NoCertificate);
        }
        Ok(Self {
            roots,
            client: None,
        })
    }

    /// Trusts nothing: every TLS member fails to connect.
    pub(crate) fn empty() -> Self {
        Self {
            roots: RootCertStore::empty(),
            client: None,
        }
    }

    /// Presents a client certificate chain and key (PEM) to members that ask for one.
    ///
    /// # Errors
    /// [`TlsError`] if the chain or key cannot be parsed.
    pub fn client_certificate(
        mut self,
        chain_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem(e.to_string()))?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        let key =
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem(e.to_string()))?;
        self.client = Some((chain, Arc::new(key)));
        Ok(self)
    }

    /// The rustls client configuration (ring provider, TLS 1.2 and 1.3). Host names are
    /// verified against each member's endpoint host, which is also sent as SNI.
    ///
    /// # Errors
    /// [`TlsError::Rustls`] if rustls refuses the client certificate.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(self.roots.clone());
        Ok(match &self.client {
            Some((chain, key)) => builder.with_client_auth_cert(chain.clone(), key.clone_key())?,
            None => builder.with_no_client_auth(),
        })
    }
}
