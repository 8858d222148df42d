//! The HTTP probe against misbehaving members, and the checker against real listeners on
//! 127.0.0.1 that are killed and restarted. Every test is bounded.
#![allow(clippy::unwrap_used)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{Empty, Full, StreamBody};
use tower::{service_fn, Service, ServiceExt};
use tower_balancer::health::{
    HealthChange, HealthProbe, HttpProbe, ProbeFailure, ProbeResult, ProbeSettings, TcpProbe,
};
use tower_balancer::registry::{Health, Member, MemberId, MemberSpec, Registry};
use tower_balancer::BoxError;

fn member(uri: &str) -> Arc<Member> {
    let r = Registry::new();
    r.insert(MemberSpec::new(
        MemberId::new("m").unwrap(),
        uri.parse().unwrap(),
    ))
    .unwrap()
}

/// A client that answers every request with `make()`.
fn client<B, F>(
    make: F,
) -> impl Service<Request<Empty<Bytes>>, Response = Response<B>, Error = BoxError, Future = impl Send>
       + Clone
where
    F: Fn(&Request<Empty<Bytes>>) -> Result<Response<B>, BoxError> + Clone + Send + 'static,
    B: Send + 'static,
{
    service_fn(move |req: Request<Empty<Bytes>>| std::future::ready(make(&req)))
}

fn status(code: u16) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(b"<html>ok: carbon</html>")));
    *r.status_mut() = StatusCode::from_u16(code).unwrap();
    r
}

#[tokio::test]
async fn statuses_redirects_errors_and_body_matches_are_judged() {
    let m = member("https://abc.com:9443");
    let probe = |code: u16| HttpProbe::new(client(move |_| Ok(status(code)))).path("/carbon/");
    assert_eq!(
        probe(200).oneshot(m.clone()).await.unwrap(),
        ProbeResult::Pass
    );
    // a failure says why
    assert_eq!(
        probe(500).oneshot(m.clone()).await.unwrap_err().to_string(),
        "status 500, expected 200-399"
    );
    // a redirect fails when only 2xx is expected
    assert_eq!(
        probe(302)
            .expect_status(200, 299)
            .oneshot(m.clone())
            .await
            .unwrap_err()
            .to_string(),
        "status 302, expected 200-299"
    );
    assert_eq!(
        probe(404)
            .drain_on([StatusCode::NOT_FOUND])
            .oneshot(m.clone())
            .await
            .unwrap(),
        ProbeResult::Drain
    );
    assert_eq!(
        probe(200)
            .body_contains("carbon")
            .oneshot(m.clone())
            .await
            .unwrap(),
        ProbeResult::Pass
    );
    assert!(matches!(
        probe(200)
            .body_contains("wso2 is down")
            .oneshot(m.clone())
            .await
            .unwrap_err()
            .downcast_ref::<ProbeFailure>(),
        Some(ProbeFailure::Body)
    ));
    // a client error (reset, garbage the client could not parse) fails
    let broken = HttpProbe::new(client(|_| {
        Err::<Response<Full<Bytes>>, _>("connection reset".into())
    }));
    let e = broken.oneshot(m.clone()).await.unwrap_err();
    assert_eq!(
        tower_balancer::error::DisplayChain(&*e).to_string(),
        "no answer: connection reset"
    );
    // the fail header
    let header = HeaderName::from_static("x-health-fail-now");
    let failing = HttpProbe::new(client(|_| {
        let mut r = status(200);
        r.headers_mut()
            .insert("x-health-fail-now", "1".parse().unwrap());
        Ok(r)
    }))
    .fail_header(header);
    assert_eq!(
        failing.oneshot(m.clone()).await.unwrap(),
        ProbeResult::FailNow
    );
}

#[tokio::test]
async fn the_request_names_the_member_path_and_host() {
    let m = member("https://abc.com:9443");
    let probe = HttpProbe::new(client(|req: &Request<Empty<Bytes>>| {
        assert_eq!(
            req.uri().to_string(),
            "https://abc.com:9443/carbon/admin/login.jsp"
        );
        assert_eq!(req.headers()[http::header::HOST], "wso2.com");
        Ok(status(200))
    }))
    .path("/carbon/admin/login.jsp")
    .host("wso2.com");
    assert_eq!(probe.oneshot(m).await.unwrap(), ProbeResult::Pass);
}

/// A `Host` the URI already says is left to the client (which writes it from the URI over
/// HTTP/1.1, and sends the URI as `:authority` over HTTP/2, where a `Host` beside it gets
/// 400 from nginx before 1.25).
#[tokio::test]
async fn a_host_the_uri_already_says_is_not_written_again() {
    for (url, host) in [
        ("https://abc.com:9443", None),
        ("https://abc.com:443", None),
        ("http://abc.com", Some("ABC.com")),
        ("https://abc.com:9443", Some("abc.com:9443")),
    ] {
        let probe = HttpProbe::new(client(|req: &Request<Empty<Bytes>>| {
            assert!(req.headers().get(http::header::HOST).is_none(), "{req:?}");
            Ok(status(200))
        }));
        let probe = match host {
            Some(h) => probe.host(h),
            None => probe,
        };
        assert_eq!(probe.oneshot(member(url)).await.unwrap(), ProbeResult::Pass);
    }
}

#[tokio::test]
async fn a_huge_body_is_read_only_up_to_the_limit() {
    let m = member("http://127.0.0.1:1");
    // an endless body: 2 GiB and more, 64 KiB a frame
    let endless = || {
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let frames =
            std::iter::repeat_with(move || Ok::<_, Infallible>(Frame::data(chunk.clone())));
        Response::new(StreamBody::new(Endless(Box::new(frames))))
    };
    let probe = HttpProbe::new(client(move |_| Ok(endless()))).body_contains("never there");
    let verdict = tokio::time::timeout(Duration::from_secs(10), probe.oneshot(m))
        .await
        .unwrap();
    assert!(matches!(
        verdict.unwrap_err().downcast_ref::<ProbeFailure>(),
        Some(ProbeFailure::Body)
    ));
}

struct Endless(Box<dyn Iterator<Item = Result<Frame<Bytes>, Infallible>> + Send + Unpin>);
impl futures_core::Stream for Endless {
    type Item = Result<Frame<Bytes>, Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.0.next())
    }
}

async fn listener_on(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move { while let Ok((_sock, _)) = l.accept().await {} })
}

async fn wait_for(r: &Registry, id: &str, want: Health) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while r.load().get(id).unwrap().health() != want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{id} never became {want}"));
}

#[tokio::test]
async fn a_killed_listener_is_marked_down_and_readmitted_when_restarted() {
    let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = first.local_addr().unwrap();
    drop(first);
    let server = listener_on(addr).await;
    let r = Registry::new();
    r.set_panic_threshold(0.0);
    r.insert(MemberSpec::new(
        MemberId::new("node1").unwrap(),
        format!("http://{addr}").parse().unwrap(),
    ))
    .unwrap();
    let settings = ProbeSettings::default()
        .interval(Duration::from_millis(100))
        .fast_interval(Duration::from_millis(50))
        .timeout(Duration::from_millis(200));
    let checker = HealthProbe::new(r.clone(), TcpProbe, settings);
    let mut events = checker.subscribe();
    let _task = checker.spawn();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.load().get("node1").unwrap().health(), Health::Healthy);
    server.abort();
    let _ = server.await;
    wait_for(&r, "node1", Health::Unhealthy).await;
    // the event that took it out says why
    let down = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(down.change, HealthChange::Down);
    let reason = down.reason.unwrap();
    assert!(
        reason.starts_with(&format!("connect to 127.0.0.1:{}: ", addr.port())),
        "{reason}"
    );
    let _server = listener_on(addr).await;
    wait_for(&r, "node1", Health::Healthy).await;
}

/// A raw TCP member that answers every connection with `reply` (or nothing) then closes.
async fn raw_member(reply: Option<&'static [u8]>, hang: bool) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                if hang {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                if let Some(r) = reply {
                    let _ = sock.write_all(r).await;
                }
                if reply.is_none() {
                    // reset: linger 0 makes the close an RST; with a zero timeout the drop
                    // does not block, which is what the deprecation warns about
                    #[allow(deprecated)]
                    let _ = sock.set_linger(Some(Duration::ZERO));
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn garbage_resets_hangs_and_endless_bodies_fail_within_the_timeout_over_real_sockets() {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let garbage = raw_member(Some(b"HELLO GARBAGE\r\n\r\n\x00\x01"), false).await;
    let reset = raw_member(None, false).await;
    let hang = raw_member(None, true).await;
    let endless = raw_member(
        Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2147483648\r\n\r\nxxxxxxxxxxxxxxxx"),
        true,
    )
    .await;
    let r = Registry::new();
    r.set_panic_threshold(0.0);
    for (id, addr) in [
        ("garbage", garbage),
        ("reset", reset),
        ("hang", hang),
        ("endless", endless),
    ] {
        r.insert(MemberSpec::new(
            MemberId::new(id).unwrap(),
            format!("http://{addr}").parse().unwrap(),
        ))
        .unwrap();
    }
    let probe = HttpProbe::new(client).path("/health").body_contains("UP");
    let settings = ProbeSettings::default()
        .interval(Duration::from_millis(100))
        .fast_interval(Duration::from_millis(50))
        .timeout(Duration::from_millis(300))
        .fall(2);
    let _task = HealthProbe::new(r.clone(), probe, settings).spawn();
    for id in ["garbage", "reset", "hang", "endless"] {
        wait_for(&r, id, Health::Unhealthy).await;
    }
}
