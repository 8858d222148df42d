//! The access log's writer: one task per log, writing lines as they come and flushing when
//! the queue runs dry. It opens its file again when asked (logrotate moved it), and when
//! asked to finish it takes no more lines, writes those queued and ends, whoever still holds
//! a sender.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Notify};
use tower_balancer::log_budget::LogBudget;

use super::LogTarget;

type Out = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// Signals from the log's senders and owner to its writer.
#[derive(Debug, Clone, Default)]
pub(super) struct Control(Arc<Signals>);

#[derive(Debug, Default)]
struct Signals {
    reopen: Notify,
    finish: Notify,
}

impl Control {
    pub(super) fn reopen(&self) {
        self.0.reopen.notify_one();
    }
}

/// The writer task; [`finish`](Self::finish) writes what is queued and flushes.
#[derive(Debug)]
pub struct AccessLogWriter {
    task: tokio::task::JoinHandle<()>,
    control: Control,
}

impl AccessLogWriter {
    /// Opens `target` and starts writing what `rx` receives, on the current runtime; lines
    /// it fails to write are counted on `dropped`.
    pub(super) fn start(
        target: &LogTarget,
        rx: mpsc::Receiver<String>,
        dropped: Arc<AtomicU64>,
    ) -> io::Result<(Self, Control)> {
        let out = open(target)?;
        let control = Control::default();
        let task = tokio::spawn(write_lines(
            rx,
            out,
            (target.clone(), dropped),
            control.clone(),
        ));
        Ok((
            Self {
                task,
                control: control.clone(),
            },
            control,
        ))
    }

    /// Takes no more lines, writes those queued and flushes, waiting at most `limit`;
    /// `false` when that was not enough (its output is blocked) and the lines left are lost
    /// (see [`AccessLog::abandon_queued`](super::AccessLog::abandon_queued)).
    pub async fn finish(self, limit: Duration) -> bool {
        self.control.0.finish.notify_one();
        tokio::time::timeout(limit, self.task).await.is_ok()
    }
}

fn open(target: &LogTarget) -> io::Result<Out> {
    Ok(match target {
        LogTarget::Stdout => Box::new(tokio::io::stdout()),
        LogTarget::File(path) => Box::new(tokio::fs::File::from_std(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        )),
    })
}

/// How soon a reopen that failed is tried again.
const REOPEN_RETRY: Duration = Duration::from_secs(1);

/// Writes lines as they come, flushing when the queue runs dry; ends when every sender is
/// gone, or it was told to finish, and the queue is empty.
async fn write_lines(
    mut rx: mpsc::Receiver<String>,
    mut out: Out,
    (target, dropped): (LogTarget, Arc<AtomicU64>),
    control: Control,
) {
    // a closed stdout fails every write: a line a second says so, not one a batch
    static FAILED: LogBudget = LogBudget::warn(1, "access log writes that failed");
    let mut buf = Vec::with_capacity(64 * 1024);
    // a reopen that failed is tried again each second: after logrotate, the old file is
    // no longer where anyone reads (round 12: out of descriptors at the SIGHUP, every line
    // went on to the rotated file until the next SIGHUP)
    let mut retry: Option<tokio::time::Instant> = None;
    loop {
        let retry_at = retry.unwrap_or_else(tokio::time::Instant::now);
        tokio::select! {
            biased;
            () = control.0.reopen.notified(), if matches!(target, LogTarget::File(_)) => {
                let _ = out.flush().await;
                match open(&target) {
                    // the old file is closed here
                    Ok(new) => (out, retry) = (new, None),
                    Err(e) => {
                        tracing::warn!(log = %target, error = %e, "cannot open the access log again; writing on to the old file, and trying again each second");
                        retry = Some(tokio::time::Instant::now() + REOPEN_RETRY);
                    }
                }
            }
            () = tokio::time::sleep_until(retry_at), if retry.is_some() => {
                let _ = out.flush().await;
                match open(&target) {
                    Ok(new) => {
                        (out, retry) = (new, None);
                        tracing::info!(log = %target, "the access log opened again");
                    }
                    Err(e) => {
                        tracing::debug!(log = %target, error = %e, "cannot open the access log again yet");
                        retry = Some(tokio::time::Instant::now() + REOPEN_RETRY);
                    }
                }
            }
            () = control.0.finish.notified() => rx.close(),
            line = rx.recv() => {
                let Some(line) = line else { break };
                buf.extend_from_slice(line.as_bytes());
                while let Ok(more) = rx.try_recv() {
                    buf.extend_from_slice(more.as_bytes());
                    if buf.len() >= 64 * 1024 {
                        break;
                    }
                }
                if let Err(e) = write_out(&mut out, &buf).await {
                    let lost = buf.iter().filter(|&&b| b == b'\n').count() as u64;
                    dropped.fetch_add(lost, Ordering::Relaxed);
                    if FAILED.admit() {
                        let dropped = dropped.load(Ordering::Relaxed);
                        tracing::warn!(log = %target, error = %e, dropped, "the access log cannot be written; its lines are lost");
                    }
                }
                buf.clear();
            }
        }
    }
    let _ = out.flush().await;
}

/// Writes `buf` and flushes.
async fn write_out(out: &mut Out, buf: &[u8]) -> io::Result<()> {
    out.write_all(buf).await?;
    out.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// An output whose every write fails, as a closed pipe's does.
    struct Closed;

    impl tokio::io::AsyncWrite for Closed {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn lines_that_cannot_be_written_are_counted_as_dropped() {
        let (tx, rx) = mpsc::channel(16);
        for i in 0..3 {
            tx.send(format!("line {i}\n")).await.unwrap();
        }
        drop(tx);
        let dropped = Arc::new(AtomicU64::new(0));
        let target = (LogTarget::Stdout, dropped.clone());
        write_lines(rx, Box::new(Closed), target, Control::default()).await;
        assert_eq!(dropped.load(Ordering::Relaxed), 3);
    }
}
