//! The forwarding response future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use super::body::MemberBody;
use http::{Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use pin_project_lite::pin_project;
use tower_balancer::registry::{InFlight, Member};
use tower_balancer::upstream::UpstreamError;

use super::client::MemberFuture as ClientFuture;
use super::service::ForwardSettings;
use super::tunnel::Tunnel;

pin_project! {
    /// Response future of [`Forward`](super::Forward).
    ///
    /// Dropped before the member answered (the client went away) on a member with a limit
    /// on requests in flight, the exchange goes on in a task that holds the member's slot
    /// until the member answers or the attempt's time is up: the member is still working on
    /// the request, so its slot is not free (HAProxy keeps the server's slot the same way).
    pub struct ResponseFuture {
        #[pin]
        kind: Kind,
    }

    impl PinnedDrop for ResponseFuture {
        fn drop(this: Pin<&mut Self>) {
            if let KindProj::Pending { inner, limited, .. } = this.project().kind.project() {
                if let (Some(fut), Some(hold)) = (inner.take(), limited.take()) {
                    hold_until_answered(fut, hold);
                }
            }
        }
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind {
        Failed { error: Option<UpstreamError> },
        Pending {
            // boxed, so it moves out whole when the client goes away
            inner: Option<ClientFuture>,
            shared: Arc<ForwardSettings>,
            client_upgrade: Option<Box<Upgrading>>,
            extended: bool,
            limited: Option<LimitedMember>,
        },
    }
}

/// A request to switch protocols: the client's side of the connection, joined to the
/// member's once it answers `101`, and the protocols the member was asked for (boxed: a
/// plain request's future carries only the pointer's room).
pub(crate) struct Upgrading {
    pub(crate) client: OnUpgrade,
    pub(crate) asked: Option<http::HeaderValue>,
}

/// Whether a `101`'s `Upgrade` names only protocols the request asked for (RFC 9110 §7.8):
/// a member switching to another (`h2c` for a WebSocket) gave the client a tunnel speaking
/// what it never asked for.
fn switched_as_asked(
    asked: Option<&http::HeaderValue>,
    answered: Option<&http::HeaderValue>,
) -> bool {
    let tokens = |v: &http::HeaderValue| -> Vec<String> {
        String::from_utf8_lossy(v.as_bytes())
            .split(',')
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect()
    };
    let (Some(asked), Some(answered)) = (asked, answered) else {
        return false;
    };
    let asked = tokens(asked);
    let answered = tokens(answered);
    !answered.is_empty() && answered.iter().all(|t| asked.contains(t))
}

/// A member with a limit on requests in flight, and how long an abandoned exchange with it
/// may hold a slot.
pub(crate) struct LimitedMember {
    pub(crate) member: Arc<Member>,
    pub(crate) limit: Duration,
}

/// The client went away before `fut` (an exchange with a limited member) finished: it runs
/// on, counted on the member, until the member answers or `limit` passes.
fn hold_until_answered(fut: ClientFuture, hold: LimitedMember) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    // counted again before the balance layer's own count ends: the slot never looks free
    let slot = InFlight::start(hold.member);
    runtime.spawn(async move {
        let _ = tokio::time::timeout(hold.limit, fut).await;
        drop(slot);
    });
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
        client_upgrade: Option<Box<Upgrading>>,
        extended: bool,
        limited: Option<LimitedMember>,
    ) -> Self {
        Self {
            kind: Kind::Pending {
                inner: Some(inner),
                shared,
                client_upgrade,
                extended,
                limited,
            },
        }
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<MemberBody>, UpstreamError>;

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
                limited,
            } => {
                let Some(fut) = inner.as_mut() else {
                    return Poll::Ready(Err(UpstreamError::from_kind(
                        tower_balancer::upstream::UpstreamErrorKind::Protocol,
                    )));
                };
                let res = ready!(Pin::new(fut).poll(cx));
                // answered: nothing is left to hold the member's slot for
                *inner = None;
                *limited = None;
                let mut res = res?;
                if res.status().as_u16() > 599 {
                    // RFC 9110 §15: a status is 100-599; anything else is a broken answer
                    return Poll::Ready(Err(UpstreamError::from_kind(
                        tower_balancer::upstream::UpstreamErrorKind::Protocol,
                    )));
                }
                shared.finish(&mut res)?;
                if *extended && res.status().is_success() {
                    // RFC 8441 over HTTP/1.1: only a 101 makes the tunnel. A 2xx for a
                    // CONNECT over HTTP/2 says the tunnel is open and may have no body, so
                    // hyper's server would reset the stream with no answer at all
                    // (a valid answer, for a path that is no WebSocket: not held against it)
                    return Poll::Ready(Err(UpstreamError::new(
                        tower_balancer::upstream::UpstreamErrorKind::NotSwitched,
                        format!(
                            "the member answered an HTTP/2 client's WebSocket handshake with {}, not 101",
                            res.status()
                        ),
                    )));
                }
                if res.status() == StatusCode::SWITCHING_PROTOCOLS {
                    let Some(up) = client_upgrade.take() else {
                        // a switch the client never asked for (or asked for a protocol
                        // not on the list): nothing to join it to, so it is a bad answer
                        return Poll::Ready(Err(UpstreamError::from_kind(
                            tower_balancer::upstream::UpstreamErrorKind::Protocol,
                        )));
                    };
                    let answered = res.headers().get(http::header::UPGRADE);
                    if !switched_as_asked(up.asked.as_ref(), answered) {
                        return Poll::Ready(Err(UpstreamError::new(
                            tower_balancer::upstream::UpstreamErrorKind::Protocol,
                            "the member switched to a protocol the request did not ask for",
                        )));
                    }
                    let client = up.client;
                    // run by the server that holds the client's connection, when it takes
                    // the answer (`Tunnel`)
                    let member = hyper::upgrade::on(&mut res);
                    let tunnel = Tunnel::new(client, member, shared.tunnel_idle);
                    res.extensions_mut().insert(tunnel);
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
