//! The error for TLS settings refused, shared by the front ([`serve`](crate::serve)) and the
//! forwarder's connections to members ([`forward`](crate::forward)): neither owns the other.

/// A TLS setting (a certificate, a key, trust roots) was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The PEM data held no certificate.
    #[error("no certificate found in the PEM data")]
    NoCertificate,
    /// A certificate or key could not be parsed.
    #[error("invalid PEM data: {0}")]
    Pem(String),
    /// rustls refused the configuration.
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}
