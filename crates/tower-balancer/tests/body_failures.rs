//! Answers whose bodies break off count against their member, in paused time.
//!
//! An answer's head used to be the whole verdict: a member that sent good heads and then
//! closed every connection part way through the body was counted healthy on each request,
//! its failure streak reset at each head, and never ejected, while every client got a cut
//! answer. Now a body that ends ends the streak, a body that breaks off is a failure (and
//! may eject the member), and a body dropped part way (the client went away) is neither.
#![allow(clippy::unwrap_used)]

mod common;

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty};
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_balancer::balance::{BalanceLayer, Picked, ResponseBody};
use tower_balancer::health::{OutlierConfig, OutlierDetection};
use tower_balancer::registry::{Health, Registry};
use tower_balancer::strategy::RoundRobin;
use tower_balancer::BoxError;

/// How a member's answer body goes after its first piece.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ends {
    Whole,
    Cut,
}

/// A piece of data, then the end or an error.
struct Answer {
    ends: Ends,
    sent: bool,
}

impl Body for Answer {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if !self.sent {
            self.sent = true;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"part")))));
        }
        Poll::Ready(match self.ends {
            Ends::Whole => None,
            Ends::Cut => Some(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "the member closed mid-body",
            ))),
        })
    }
}

/// Two members; how each one's bodies end is set per member, and its hits counted.
#[derive(Clone)]
struct Members {
    ends: Arc<Mutex<[Ends; 2]>>,
    hits: Arc<[AtomicUsize; 2]>,
}

type Svc =
    tower::util::BoxCloneService<Request<Empty<Bytes>>, Response<ResponseBody<Answer>>, BoxError>;

fn stack(r: &Registry, members: &Members, outliers: &OutlierDetection) -> Svc {
    let m = members.clone();
    let svc = ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()).observer(outliers.clone()))
        .service(service_fn(move |req: Request<_>| {
            let m = m.clone();
            async move {
                let id = req.extensions().get::<Picked>().unwrap().0.id().to_string();
                let i: usize = id[1..].parse().unwrap();
                m.hits[i].fetch_add(1, Ordering::Relaxed);
                let ends = m.ends.lock().unwrap()[i];
                Ok::<_, BoxError>(Response::new(Answer { ends, sent: false }))
            }
        }));
    tower::util::BoxCloneService::new(svc)
}

/// Sends `n` requests and reads each answer whole (or to its error); `read`: false drops
/// each answer after its first piece, as a client that goes away does.
async fn send_n(svc: &Svc, n: usize, read: bool) {
    for _ in 0..n {
        let res = svc
            .clone()
            .oneshot(Request::new(Empty::new()))
            .await
            .unwrap();
        let mut body = res.into_body();
        if read {
            let _ = body.collect().await;
        } else {
            let _ = body.frame().await;
            drop(body);
        }
        tokio::task::yield_now().await;
    }
}

fn setup(ends: [Ends; 2]) -> (Registry, Members, OutlierDetection, Svc) {
    let r = common::registry(2);
    let members = Members {
        ends: Arc::new(Mutex::new(ends)),
        hits: Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]),
    };
    let outliers = OutlierDetection::new(r.clone(), OutlierConfig::default());
    let svc = stack(&r, &members, &outliers);
    (r, members, outliers, svc)
}

fn stats(r: &Registry, id: &str) -> tower_balancer::registry::StatsView {
    r.load().get(id).unwrap().stats().view()
}

#[tokio::test(start_paused = true)]
async fn a_member_whose_every_body_breaks_off_is_ejected_at_the_fifth() {
    let (r, members, outliers, svc) = setup([Ends::Cut, Ends::Whole]);
    let _task = outliers.spawn();
    send_n(&svc, 40, true).await;
    assert_eq!(members.hits[0].load(Ordering::Relaxed), 5);
    assert_eq!(members.hits[1].load(Ordering::Relaxed), 35);
    assert_eq!(r.load().get("m0").unwrap().health(), Health::Unhealthy);
    let m0 = stats(&r, "m0");
    assert_eq!((m0.requests, m0.failures), (5, 5), "{m0:?}");
    let m1 = stats(&r, "m1");
    assert_eq!((m1.failures, m1.consecutive_failures), (0, 0), "{m1:?}");
}

#[tokio::test(start_paused = true)]
async fn a_whole_body_ends_the_streak_and_a_dropped_one_is_neither() {
    let (r, members, outliers, svc) = setup([Ends::Cut, Ends::Whole]);
    let _task = outliers.spawn();
    // round robin: m0 gets every other request; four cut bodies
    send_n(&svc, 8, true).await;
    assert_eq!(stats(&r, "m0").consecutive_failures, 4);
    // clients that go away mid-body: no verdict either way
    send_n(&svc, 8, false).await;
    let m0 = stats(&r, "m0");
    assert_eq!((m0.failures, m0.consecutive_failures), (4, 4), "{m0:?}");
    // one whole body: the streak is over
    members.ends.lock().unwrap()[0] = Ends::Whole;
    send_n(&svc, 2, true).await;
    assert_eq!(stats(&r, "m0").consecutive_failures, 0);
    members.ends.lock().unwrap()[0] = Ends::Cut;
    send_n(&svc, 8, true).await;
    let m0 = stats(&r, "m0");
    assert_eq!((m0.failures, m0.consecutive_failures), (8, 4), "{m0:?}");
    assert!(outliers.ejected().is_empty());
    assert_eq!(members.hits[0].load(Ordering::Relaxed), 13);
}
