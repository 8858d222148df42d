//! Discovery's tests: changes applied in batches, errors skipped, drains that end.

use std::collections::VecDeque;

use super::*;

struct Items<T>(VecDeque<T>);
impl<T: Unpin> futures_core::Stream for Items<T> {
    type Item = T;
    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<T>> {
        Poll::Ready(self.0.pop_front())
    }
}

fn id(s: &str) -> MemberId {
    MemberId::new(s).unwrap()
}

#[tokio::test]
async fn errors_and_bad_changes_are_skipped_and_the_rest_applied() {
    let r = Registry::new();
    let items: Vec<Result<Change<MemberId, MemberSpec>, &str>> = vec![
        Ok(Change::Insert(
            id("a"),
            MemberSpec::new(id("a"), "http://a.test".parse().unwrap()),
        )),
        Err("resolver down"),
        Ok(Change::Insert(
            id("b"),
            MemberSpec::new(id("b"), "http://b.test".parse().unwrap()).weight(0),
        )),
        Ok(Change::Remove(id("never-there"))),
    ];
    let report = r.discover(Items(items.into())).await;
    assert_eq!(report.applied, 1);
    assert_eq!(report.skipped, 2);
    assert!(r.load().get("a").is_some());
    assert!(r.load().get("b").is_none());
}

struct Channel<T>(tokio::sync::mpsc::UnboundedReceiver<T>);
impl<T> futures_core::Stream for Channel<T> {
    type Item = T;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

fn insert(name: &str) -> Result<Change<MemberId, MemberSpec>, String> {
    Ok(Change::Insert(
        id(name),
        MemberSpec::new(id(name), format!("http://{name}.test").parse().unwrap()),
    ))
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_changes_is_applied_in_few_rebuilds() {
    let r = Registry::new();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    // a burst ready at once: a rebuild for what one poll reads (tokio's channel hands
    // out 128 items a poll), the rest at most every MIN_APPLY_INTERVAL
    for i in 0..1000 {
        tx.send(insert(&format!("m{i}"))).unwrap();
    }
    let before = r.load().version();
    let _task = tokio::spawn(
        r.discover(Channel(rx))
            .drain_removed(Duration::from_secs(1)),
    );
    tokio::task::yield_now().await;
    assert!(r.load().len() >= 100, "the first batch at once");
    tokio::time::sleep(MIN_APPLY_INTERVAL * 8).await;
    assert_eq!(r.load().len(), 1000);
    let rebuilds = r.load().version() - before;
    assert!(rebuilds <= 8, "{rebuilds} rebuilds for a burst of 1,000");
    // changes that keep coming, one every millisecond for 500 ms: batched at most every
    // MIN_APPLY_INTERVAL, and the last one applied within it
    let before = r.load().version();
    for i in 0..500u32 {
        let spec = MemberSpec::new(id("m1"), "http://m1.test".parse().unwrap()).weight(i + 1);
        tx.send(Ok(Change::Insert(id("m1"), spec))).unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(MIN_APPLY_INTERVAL).await;
    assert_eq!(r.load().get("m1").unwrap().weight(), 500);
    let rebuilds = r.load().version() - before;
    assert!(
        (2..=7).contains(&rebuilds),
        "{rebuilds} rebuilds for 500 changes over 500 ms"
    );
    // a removal of most members drains them, then they go in one rebuild
    for i in 1..1000 {
        tx.send(Ok(Change::Remove(id(&format!("m{i}"))))).unwrap();
    }
    tokio::time::sleep(MIN_APPLY_INTERVAL).await;
    let before = r.load().version();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(r.load().len(), 1);
    assert_eq!(
        r.load().version() - before,
        1,
        "one rebuild for the drained members"
    );
}

#[tokio::test(start_paused = true)]
async fn removed_members_drain_for_the_grace_period_then_leave() {
    let r = Registry::new();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(
        r.discover(Channel(rx))
            .drain_removed(Duration::from_secs(30)),
    );
    tx.send(insert("a")).unwrap();
    tx.send(insert("b")).unwrap();
    tx.send(Ok(Change::Remove(id("a")))).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let a = r
        .load()
        .get("a")
        .cloned()
        .expect("a is still there while draining");
    assert_eq!(a.state(), AdminState::Draining);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(r.load().get("a").is_none(), "a left after the grace period");
    assert_eq!(r.load().get("b").unwrap().state(), AdminState::Active);

    // back before the grace ends: taken back, and never removed
    tx.send(Ok(Change::Remove(id("b")))).unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    tx.send(insert("b")).unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(r.load().get("b").unwrap().state(), AdminState::Active);

    // the stream ends while a drain is pending: the future finishes it first
    tx.send(Ok(Change::Remove(id("b")))).unwrap();
    drop(tx);
    let report = task.await.unwrap();
    assert!(r.load().is_empty());
    assert_eq!(report.applied, 6);
}

#[tokio::test(start_paused = true)]
async fn a_member_back_and_gone_again_drains_for_its_second_drain_in_full() {
    let r = Registry::new();
    r.insert(MemberSpec::new(id("a"), "http://a.test".parse().unwrap()))
        .unwrap();
    let remove = || vec![Ok::<_, std::convert::Infallible>(Change::Remove(id("a")))];
    let grace = Duration::from_secs(6);
    let first = tokio::spawn(r.discover(Items(remove().into())).drain_removed(grace));
    tokio::time::sleep(Duration::from_secs(1)).await;
    // back (a reload naming it again), then gone again at 4 s by another drain
    r.upsert(MemberSpec::new(id("a"), "http://a.test".parse().unwrap()))
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = tokio::spawn(r.discover(Items(remove().into())).drain_removed(grace));
    // past the first drain's deadline: the second one's member stays, draining
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(first.is_finished());
    let a = r.load().get("a").cloned().expect("a drains until 10 s");
    assert_eq!(a.state(), AdminState::Draining);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        r.load().get("a").is_none(),
        "a left at the second drain's end"
    );
    second.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_member_the_operator_took_back_is_not_removed_by_the_drain() {
    let r = Registry::new();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(
        r.discover(Channel(rx))
            .drain_removed(Duration::from_secs(5)),
    );
    tx.send(insert("a")).unwrap();
    tx.send(Ok(Change::Remove(id("a")))).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.set_state("a", AdminState::Active).unwrap();
    drop(tx);
    task.await.unwrap();
    assert!(r.load().get("a").is_some());
}

/// Counts WARN events on this thread.
struct Warnings(std::sync::Arc<std::sync::atomic::AtomicUsize>);
impl tracing::Subscriber for Warnings {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        if *e.metadata().level() == tracing::Level::WARN {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test(flavor = "current_thread")]
async fn the_same_error_is_logged_once_per_change() {
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let _guard = tracing::subscriber::set_default(Warnings(count.clone()));
    let r = Registry::new();
    let mut items: Vec<Result<Change<MemberId, MemberSpec>, String>> = vec![insert("a")];
    items.extend((0..50).map(|_| Err("timed out".to_owned())));
    items.extend((0..50).map(|_| Err("SERVFAIL".to_owned())));
    items.push(insert("b"));
    items.extend((0..50).map(|_| Err("SERVFAIL".to_owned())));
    let report = r.discover(Items(items.into())).await;
    assert_eq!(report.skipped, 150);
    assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), 3);
    assert_eq!(r.load().len(), 2);
}
