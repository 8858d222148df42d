//! The forwarding response future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::ResponseFuture as ClientFuture;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tower_balancer::upstream::UpstreamError;

use super::error::upstream;
use super::service::ForwardSettings;

pin_project! {
    /// Response future of [`Forward`](super::Forward).
    pub struct ResponseFuture {
        #[pin]
        kind: Kind,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind {
        Failed { error: Option<UpstreamError> },
        Pending {
            #[pin]
            inner: ClientFuture,
            shared: Arc<ForwardSettings>,
            client_upgrade: Option<OnUpgrade>,
            extended: bool,
        },
    }
}

impl ResponseFuture {
    pub(crate) fn failed(error: UpstreamError) -> Self {
        Self {
            kind: Kind::Failed { error: Some(error) },
        }
    }

    pub(crate) fn pending(
        inner: ClientFuture,
        shared: Arc<ForwardSettings>,
        client_upgrade: Option<OnUpgrade>,
        extended: bool,
    ) -> Self {
        Self {
            kind: Kind::Pending {
                inner,
                shared,
                client_upgrade,
                extended,
            },
        }
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// Joins the client's and the member's upgraded connections and copies bytes both ways until
/// either side closes (a member that goes away closes its tunnels).
fn tunnel(client: OnUpgrade, member: OnUpgrade) {
    tokio::spawn(async move {
        let (client, member) = match (client.await, member.await) {
            (Ok(c), Ok(m)) => (c, m),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let (mut client, mut member) = (TokioIo::new(client), TokioIo::new(member));
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut member).await {
            tracing::debug!(error = %e, "tunnel closed with an error");
        }
    });
}

impl Future for ResponseFuture {
    type Output = Result<Response<Incoming>, UpstreamError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Failed { error } => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                UpstreamError::from_kind(tower_balancer::upstream::UpstreamErrorKind::Protocol)
            }))),
            KindProj::Pending {
                inner,
                shared,
                client_upgrade,
                extended,
            } => {
                let mut res = ready!(inner.poll(cx)).map_err(upstream)?;
                if res.status().as_u16() > 599 {
                    // RFC 9110 §15: a status is 100-599; anything else is a broken answer
                    return Poll::Ready(Err(UpstreamError::from_kind(
                        tower_balancer::upstream::UpstreamErrorKind::Protocol,
                    )));
                }
                shared.finish(&mut res);
                if res.status() == StatusCode::SWITCHING_PROTOCOLS {
                    let Some(client) = client_upgrade.take() else {
                        // a switch the client never asked for (or asked for a protocol
                        // not on the list): nothing to join it to, so it is a bad answer
                        return Poll::Ready(Err(UpstreamError::from_kind(
                            tower_balancer::upstream::UpstreamErrorKind::Protocol,
                        )));
                    };
                    tunnel(client, hyper::upgrade::on(&mut res));
                    if *extended {
                        // RFC 8441: an HTTP/2 client is told 200, and the stream is the tunnel
                        *res.status_mut() = StatusCode::OK;
                        *res.version_mut() = http::Version::HTTP_2;
                        let h = res.headers_mut();
                        h.remove(http::header::SEC_WEBSOCKET_ACCEPT);
                        h.remove(http::header::UPGRADE);
                        h.remove(http::header::CONNECTION);
                        h.remove(http::header::CONTENT_LENGTH);
                    }
                }
                Poll::Ready(Ok(res))
            }
        }
    }
}
