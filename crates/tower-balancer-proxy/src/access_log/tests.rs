//! The layer writes a line per request when the body ends, and for stack errors too.

use super::*;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;

#[tokio::test]
async fn a_json_line_is_written_when_the_body_ends_and_stack_errors_are_logged_too() {
    let path = std::env::temp_dir().join(format!("access-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let (log, writer) = AccessLog::start(&LogTarget::File(path.clone()), LogFormat::Json).unwrap();
    let ok = tower::service_fn(|_: Request<()>| async {
        Ok::<_, BoxError>(Response::new(Full::new(bytes::Bytes::from_static(
            b"hello",
        ))))
    });
    let mut req = Request::builder()
        .uri("/a?b=c")
        .header("user-agent", "test \"agent\"")
        .body(())
        .unwrap();
    req.extensions_mut()
        .insert(ClientAddr("10.0.0.7:5555".parse().unwrap()));
    let res = log.layer().layer(ok).oneshot(req).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello");
    let failing = tower::service_fn(|_: Request<()>| async {
        Err::<Response<Full<bytes::Bytes>>, BoxError>(
            tower_balancer::balance::BalanceError::NoEligibleMember.into(),
        )
    });
    assert!(log
        .layer()
        .layer(failing)
        .oneshot(Request::new(()))
        .await
        .is_err());
    let head = Request::head("/").body(()).unwrap();
    assert!(log.layer().layer(failing).oneshot(head).await.is_err());
    drop(log);
    writer.finish(Duration::from_secs(5)).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0]["client"], "10.0.0.7");
    assert_eq!(lines[0]["request"], "GET /a?b=c HTTP/1.1");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["bytes"], 5);
    assert_eq!(lines[0]["user_agent"], "test \"agent\"");
    assert_eq!(lines[1]["status"], 503);
    // no member was sent it: no member time
    assert_eq!(lines[1]["upstream_ms"], serde_json::Value::Null);
    assert!(lines[0]["upstream_ms"].is_f64());
    // the length of the page the server answers with
    assert_eq!(lines[1]["bytes"], "503 Service Unavailable\n".len());
    assert_eq!(
        (&lines[2]["status"], &lines[2]["bytes"]),
        (&503.into(), &0.into())
    );
    assert_eq!(lines[1]["client"], "-");
    let _ = std::fs::remove_file(&path);
}

/// One request through `log`'s layer, its answer read whole: a line.
async fn one_request(log: &AccessLog) {
    let ok = tower::service_fn(|_: Request<()>| async {
        Ok::<_, BoxError>(Response::new(Full::new(bytes::Bytes::from_static(b"x"))))
    });
    let res = log
        .layer()
        .layer(ok)
        .oneshot(Request::new(()))
        .await
        .unwrap();
    res.into_body().collect().await.unwrap();
}

#[tokio::test]
async fn reopen_follows_logrotate_and_finish_does_not_wait_for_senders() {
    let dir = std::env::temp_dir().join(format!("access-rotate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("access.log");
    let (log, writer) = AccessLog::start(&LogTarget::File(path.clone()), LogFormat::Json).unwrap();
    one_request(&log).await;
    // written before the rename: a reopen flushes the old file first
    tokio::time::sleep(Duration::from_millis(50)).await;
    std::fs::rename(&path, dir.join("access.log.1")).unwrap();
    log.reopen();
    tokio::time::sleep(Duration::from_millis(50)).await;
    one_request(&log).await;
    one_request(&log).await;
    // a sender still held (a connection that outlives shutdown): finish does not wait for it
    let held = log.clone();
    let start = std::time::Instant::now();
    writer.finish(Duration::from_secs(5)).await;
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    let count = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(count("access.log.1"), 1);
    assert_eq!(count("access.log"), 2);
    drop((held, log));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A reopen that fails (out of descriptors at the SIGHUP, or here the log's directory gone
/// for a moment) is tried again each second, not left until the next SIGHUP.
#[tokio::test]
async fn a_reopen_that_failed_is_tried_again() {
    let dir = std::env::temp_dir().join(format!("access-retry-{}", std::process::id()));
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let path = logs.join("access.log");
    let (log, writer) = AccessLog::start(&LogTarget::File(path.clone()), LogFormat::Json).unwrap();
    // rotated with its directory, and the reopen finds no directory to open the log in
    std::fs::rename(&logs, dir.join("logs.1")).unwrap();
    log.reopen();
    tokio::time::sleep(Duration::from_millis(100)).await;
    one_request(&log).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::create_dir_all(&logs).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    one_request(&log).await;
    writer.finish(Duration::from_secs(5)).await;
    let count = |p: std::path::PathBuf| std::fs::read_to_string(p).map_or(0, |t| t.lines().count());
    assert_eq!(count(dir.join("logs.1/access.log")), 1, "before the retry");
    assert_eq!(count(path), 1, "after it");
    drop(log);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_clients_request_id_cannot_forge_fields_of_a_combined_line() {
    let id = b"zz member=evil attempts=9 \" request_id=spoof";
    let text = line_with(LogFormat::Combined, "x-request-id", id, "forge").await;
    let line = text.lines().next().unwrap();
    // one quoted field, its quote escaped: nothing after it reads as another field
    assert!(
        line.ends_with(r#" request_id="zz member=evil attempts=9 \" request_id=spoof""#),
        "{line}"
    );
    let (fields, _) = line.split_once(" request_id=\"").unwrap();
    assert_eq!(fields.matches(" member=").count(), 1, "{line}");
}

/// A request its client abandoned before the answer (the future dropped) gets nginx's 499
/// line, and an answer whose body failed after its head a `cut=1` mark: both were lines a
/// hostile test could not find (none at all; a plain 200).
#[tokio::test]
async fn an_abandoned_request_is_a_499_and_a_cut_answer_says_so() {
    let path = std::env::temp_dir().join(format!("access-cut-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let (log, writer) =
        AccessLog::start(&LogTarget::File(path.clone()), LogFormat::Combined).unwrap();
    let hung = tower::service_fn(|_: Request<()>| async {
        std::future::pending::<Result<Response<Full<bytes::Bytes>>, BoxError>>().await
    });
    let gone = log.layer().layer(hung).oneshot(Request::new(()));
    assert!(
        tokio::time::timeout(Duration::from_millis(20), gone)
            .await
            .is_err(),
        "the member never answers"
    );
    let cut =
        tower::service_fn(|_: Request<()>| async { Ok::<_, BoxError>(Response::new(Cut(0))) });
    let res = log
        .layer()
        .layer(cut)
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert!(res.into_body().collect().await.is_err());
    drop(log);
    writer.finish(Duration::from_secs(5)).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("\" 499 0 ") && lines[0].contains("member=- attempts=0 upstream_ms=- "),
        "{text}"
    );
    assert!(!lines[0].contains("cut="), "{text}");
    assert!(
        lines[1].contains("\" 200 4 ") && lines[1].ends_with(" cut=1"),
        "{text}"
    );
    let _ = std::fs::remove_file(&path);
}

/// A body that gives four bytes, then fails, as a member that closes mid-answer.
struct Cut(u8);

impl Body for Cut {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, BoxError>>> {
        self.0 += 1;
        Poll::Ready(Some(if self.0 == 1 {
            Ok(Frame::data(bytes::Bytes::from_static(b"part")))
        } else {
            Err("the member closed".into())
        }))
    }
}

/// Lines still queued when a blocked writer is given up on are counted as dropped.
#[tokio::test(flavor = "current_thread")]
async fn lines_left_queued_are_counted_when_abandoned() {
    let path = std::env::temp_dir().join(format!("abandon-{}.log", std::process::id()));
    let (log, _writer) = AccessLog::start(&LogTarget::File(path.clone()), LogFormat::Json).unwrap();
    // the writer has not run yet (nothing yielded): all three wait in the queue
    for i in 0..3 {
        log.send(format!("line {i}\n"));
    }
    assert_eq!(log.abandon_queued(), 3);
    assert_eq!(log.dropped(), 3);
    let _ = std::fs::remove_file(&path);
}

/// The line one request with `name: value` writes in `format`.
async fn line_with(format: LogFormat, name: &'static str, value: &[u8], test: &str) -> String {
    let path = std::env::temp_dir().join(format!("access-{test}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let (log, writer) = AccessLog::start(&LogTarget::File(path.clone()), format).unwrap();
    let ok = tower::service_fn(|_: Request<()>| async {
        Ok::<_, BoxError>(Response::new(Full::new(bytes::Bytes::from_static(b"ok"))))
    });
    let req = Request::builder()
        .header(name, http::HeaderValue::from_bytes(value).unwrap())
        .body(())
        .unwrap();
    let res = log.layer().layer(ok).oneshot(req).await.unwrap();
    res.into_body().collect().await.unwrap();
    drop(log);
    writer.finish(Duration::from_secs(5)).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    text
}

/// A `User-Agent` past ASCII is logged, not blanked (it was `-`, so one byte hid a client's
/// agent), and a byte that is not UTF-8 cannot pass for UTF-8 or for the text a client
/// may send in its place (the JSON line wrote `0xe9` as `é`: hostile round 4).
#[tokio::test]
async fn a_header_past_ascii_is_logged_and_no_byte_passes_for_another() {
    // the text `\xe9`, then the lone byte 0xe9; and the text, then UTF-8's é
    let lone: &[u8] = b"x \\xe9 \xe9";
    let utf8 = "x \\xe9 é".as_bytes();
    // combined: Apache's escapes, a byte at a time
    let line = line_with(LogFormat::Combined, "user-agent", lone, "lone").await;
    assert!(line.contains(r#" "x \\xe9 \xe9" member="#), "{line}");
    let line = line_with(LogFormat::Combined, "user-agent", utf8, "utf8").await;
    assert!(line.contains(r#" "x \\xe9 \xc3\xa9" member="#), "{line}");
    // JSON: UTF-8 as it is, a lone byte `\xhh`, the client's `\` as `\x5c`
    let json =
        |text: String| -> serde_json::Value { serde_json::from_str(text.trim_end()).unwrap() };
    let line = json(line_with(LogFormat::Json, "user-agent", lone, "jlone").await);
    assert_eq!(line["user_agent"], r"x \x5cxe9 \xe9");
    let line = json(line_with(LogFormat::Json, "user-agent", utf8, "jutf8").await);
    assert_eq!(line["user_agent"], r"x \x5cxe9 é");
}
