//! The access log's writer: one task per log, writing lines as they come and flushing when
//! the queue runs dry. It opens its file again when asked (logrotate moved it), and when
//! asked to finish it takes no more lines, writes those queued and ends, whoever still holds
//! a sender.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Notify};

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
    /// Opens `target` and starts writing what `rx` receives, on the current runtime.
    pub(super) fn start(
        target: &LogTarget,
        rx: mpsc::Receiver<String>,
    ) -> io::Result<(Self, Control)> {
        let out = open(target)?;
        let control = Control::default();
        let task = tokio::spawn(write_lines(rx, out, target.clone(), control.clone()));
        Ok((
            Self {
                task,
                control: control.clone(),
            },
            control,
        ))
    }

    /// Takes no more lines, writes those queued and flushes, waiting at most `limit`.
    pub async fn finish(self, limit: Duration) {
        self.control.0.finish.notify_one();
        let _ = tokio::time::timeout(limit, self.task).await;
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

/// Writes lines as they come, flushing when the queue runs dry; ends when every sender is
/// gone, or it was told to finish, and the queue is empty.
async fn write_lines(
    mut rx: mpsc::Receiver<String>,
    mut out: Out,
    target: LogTarget,
    control: Control,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        tokio::select! {
            biased;
            () = control.0.reopen.notified(), if matches!(target, LogTarget::File(_)) => {
                let _ = out.flush().await;
                match open(&target) {
                    // the old file is closed here
                    Ok(new) => out = new,
                    Err(e) => tracing::warn!(log = %target, error = %e, "cannot open the access log again; writing on to the old file"),
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
                if out.write_all(&buf).await.is_err() || out.flush().await.is_err() {
                    tracing::warn!("the access log cannot be written; its lines are lost");
                }
                buf.clear();
            }
        }
    }
    let _ = out.flush().await;
}
