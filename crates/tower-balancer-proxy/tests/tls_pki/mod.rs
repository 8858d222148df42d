//! A private CA and a member certificate signed by it, made with rcgen, for TLS members in
//! tests (the recipe's keystores).
#![allow(dead_code)]

use std::sync::Arc;

pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
}

/// A private CA and a server certificate for `name` signed by it, as the recipe's keystores.
pub(crate) fn pki(name: &str) -> Pki {
    pki_speaking(name, &[b"h2", b"http/1.1"])
}

/// [`pki`], the server offering the protocols `alpn` by ALPN.
pub(crate) fn pki_speaking(name: &str, alpn: &[&[u8]]) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Pki {
        ca_pem: ca.pem(),
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    }
}
