//! Name resolution for members, with in-process overrides.
//!
//! Why overrides: the seed's members are addressed by their own host names (abc.com,
//! xyz.com), which their certificates name, while they run on 127.0.0.1; the recipe edits
//! /etc/hosts. An override maps a name to addresses inside the process instead, so SNI and
//! certificate checks still use the real name and no system file is touched.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use tower_service::Service;

/// Resolves names through overrides first, then the system resolver.
#[derive(Debug, Clone)]
pub struct Resolver {
    overrides: Arc<HashMap<String, Vec<SocketAddr>>>,
    system: GaiResolver,
}

impl Resolver {
    /// The system resolver with these overrides (host name, lower case → addresses; the
    /// port in each address is replaced by the port being connected to).
    #[must_use]
    pub fn new(overrides: HashMap<String, Vec<SocketAddr>>) -> Self {
        Self {
            overrides: Arc::new(overrides),
            system: GaiResolver::new(),
        }
    }
}

/// The addresses a name resolved to.
pub type Addrs = std::vec::IntoIter<SocketAddr>;

impl Service<Name> for Resolver {
    type Response = Addrs;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Addrs, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.system.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        if let Some(addrs) = self.overrides.get(&name.as_str().to_ascii_lowercase()) {
            let addrs = addrs.clone();
            return Box::pin(std::future::ready(Ok(addrs.into_iter())));
        }
        let fut = self.system.call(name);
        Box::pin(async move { Ok(fut.await?.collect::<Vec<_>>().into_iter()) })
    }
}
