//! A certificate for each virtual host, chosen by the name the client gives in TLS (SNI),
//! as Apache does for `<VirtualHost>`s on one port, each with its `SSLCertificateFile`.
//!
//! Why not rustls' `ResolvesServerCertUsingSni`: it knows exact names only, and a client
//! that names no host or an unknown one gets no certificate at all; virtual hosts use
//! `*.example.com` names, and Apache answers unknown names with the default (first) host's
//! certificate, which is what clients of a migrated site will expect.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::crypto::ring::default_provider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::tls::TlsError;

/// Certificates by server name, with a default for every other name.
#[derive(Debug)]
pub(crate) struct SniCertificates {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `(suffix, key)` for `*.suffix`, in the order given.
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
}

impl SniCertificates {
    /// The certificate for `name` (lowercase).
    fn find(&self, name: &str) -> &Arc<CertifiedKey> {
        if let Some(k) = self.exact.get(name) {
            return k;
        }
        self.wildcard
            .iter()
            .find(|(suffix, _)| crate::routes::host_matches(&format!("*.{suffix}"), name))
            .map_or(&self.default, |(_, k)| k)
    }
}

impl ResolvesServerCert for SniCertificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map(str::to_ascii_lowercase);
        Some(match name {
            Some(n) => self.find(&n).clone(),
            None => self.default.clone(),
        })
    }
}

/// A chain and key from PEM, checked to belong together.
fn certified(chain_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, TlsError> {
    let (chain, key) = super::config::chain_and_key(chain_pem, key_pem)?;
    Ok(Arc::new(CertifiedKey::from_der(
        chain,
        key,
        &default_provider(),
    )?))
}

/// One virtual host's names and its certificate chain and key (PEM).
#[derive(Debug, Clone)]
pub(crate) struct NamedCertificate {
    pub(crate) names: Vec<String>,
    pub(crate) chain_pem: Vec<u8>,
    pub(crate) key_pem: Vec<u8>,
}

/// A TLS front that presents each virtual host's certificate to clients naming it, and
/// `default`'s (or the first host's, when there is no default) to every other client;
/// HTTP/2 and HTTP/1.1 by ALPN, ring provider.
///
/// # Errors
/// [`TlsError`] naming the first chain or key refused; `NoCertificate` when there is none.
pub(crate) fn server_tls_by_name(
    default: Option<(&[u8], &[u8])>,
    named: &[NamedCertificate],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut exact = HashMap::new();
    let mut wildcard = Vec::new();
    let mut first = None;
    for host in named {
        let key = certified(&host.chain_pem, &host.key_pem)?;
        first.get_or_insert_with(|| key.clone());
        for name in &host.names {
            let name = name.to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(suffix) => wildcard.push((suffix.to_owned(), key.clone())),
                None => {
                    exact.entry(name).or_insert_with(|| key.clone());
                }
            }
        }
    }
    let default = match default {
        Some((chain, key)) => certified(chain, key)?,
        None => first.ok_or(TlsError::NoCertificate)?,
    };
    let resolver = SniCertificates {
        exact,
        wildcard,
        default,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(name: &str) -> NamedCertificate {
        let c = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        NamedCertificate {
            names: vec![name.to_owned()],
            chain_pem: c.cert.pem().into_bytes(),
            key_pem: c.key_pair.serialize_pem().into_bytes(),
        }
    }

    #[test]
    fn each_name_gets_its_certificate_and_others_the_first() {
        let (a, b) = (pem("a.test"), pem("*.b.test"));
        let ka = certified(&a.chain_pem, &a.key_pem).unwrap();
        let kb = certified(&b.chain_pem, &b.key_pem).unwrap();
        let r = SniCertificates {
            exact: HashMap::from([("a.test".to_owned(), ka.clone())]),
            wildcard: vec![("b.test".to_owned(), kb.clone())],
            default: ka.clone(),
        };
        assert!(Arc::ptr_eq(r.find("x.b.test"), &kb));
        assert!(Arc::ptr_eq(r.find("a.test"), &ka));
        assert!(Arc::ptr_eq(r.find("b.test"), &ka));
        assert!(server_tls_by_name(None, &[a, b]).is_ok());
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let (a, b) = (pem("a.test"), pem("b.test"));
        let mixed = NamedCertificate {
            key_pem: b.key_pem,
            ..a
        };
        assert!(server_tls_by_name(None, &[mixed]).is_err());
        assert!(matches!(
            server_tls_by_name(None, &[]),
            Err(TlsError::NoCertificate)
        ));
    }
}
