//! What a stack must be for the server to serve it, said once: `Server::serve`, its
//! per-connection service and the config path all name this trait instead of repeating five
//! bounds.

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_balancer::BoxError;
use tower_service::Service;

/// A service [`Server::serve`](super::Server::serve) can serve: it takes requests with
/// bodies of type `B` ([`ClientBody`](super::ClientBody) for the server), answers with a body of
/// [`Bytes`], is cloned per request, and its errors and body errors convert into
/// [`BoxError`] (the server maps them to 502/503/504 with
/// [`client_status`](super::client_status)). Implemented for every such service.
pub trait Servable<B = super::ClientBody>:
    Service<
        Request<B>,
        Response = Response<Self::ResBody>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
    /// The response body.
    type ResBody: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B, R> Servable<B> for S
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    R: Body<Data = Bytes> + Send + 'static,
    R::Error: Into<BoxError>,
{
    type ResBody = R;
}
