//! Facts about the client's connection that the server puts into request extensions.
//!
//! Why extensions: a tower layer sees requests, not sockets. The server that accepted the
//! connection knows whether it was TLS and who the peer is; it records that here so the sticky
//! layer can mark its cookie `Secure` and the proxy can write `X-Forwarded-*`.

use std::net::SocketAddr;

/// Present when the request arrived over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientTls;

/// The client's address as the server saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// The host name the client named in TLS (SNI), when it named one: a router uses it to
/// refuse a request whose `Host` is another virtual host's than the certificate's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsName(pub std::sync::Arc<str>);
