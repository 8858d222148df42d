//! The handle a serving balancer is reloaded through ([`Reloader`]), and what a reload
//! answers: what it changed ([`Reloaded`]) or why it was refused ([`ReloadError`]). The
//! reload itself is in the `reload` module.

use std::path::Path;

use tokio::sync::{mpsc, oneshot};

use super::build::ConfigFile;
use super::error::ConfigError;
use crate::access_log::LogTarget;
use crate::tls::TlsError;
use tower_balancer::registry::MemberId;

/// Asks a serving balancer ([`Bound::serve`](super::Bound::serve)) to take a new
/// configuration; cheap to clone. Reloads are applied one at a time, in the order asked.
#[derive(Debug, Clone)]
pub struct Reloader {
    tx: mpsc::Sender<Ask>,
}

/// What the reload task is asked to do.
#[derive(Debug)]
pub(super) enum Ask {
    /// Take this configuration (or count this unreadable file as a refused reload).
    Reload(
        Box<Result<ConfigFile, ConfigError>>,
        oneshot::Sender<Result<Reloaded, ReloadError>>,
    ),
    /// Open the access log file again.
    ReopenLogs,
}

/// A reload that was refused: the configuration in force stays, untouched.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file has a mistake (its line and key are in the error).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The members' TLS settings were refused.
    #[error("the members' TLS settings were refused: {0}")]
    Tls(#[from] TlsError),
    /// The new access log could not be opened.
    #[error("cannot open the access log {target}: {source}")]
    AccessLog {
        /// Where it was to go.
        target: LogTarget,
        /// Why.
        source: std::io::Error,
    },
    /// The balancer is not serving (it stopped, or never started).
    #[error("the balancer is not serving")]
    Stopped,
}

/// What an applied reload changed in the membership, and what waits for a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reloaded {
    /// Members the file added.
    pub added: Vec<MemberId>,
    /// Members whose URL, weight, set or status the file changed.
    pub changed: Vec<MemberId>,
    /// Members the file dropped: they drain, then leave.
    pub draining: Vec<MemberId>,
    /// Keys whose new values take effect at the next start (`server.listen`, …).
    pub at_restart: Vec<&'static str>,
    /// Balancers the file added.
    pub balancers_added: Vec<String>,
    /// Balancers the file dropped (requests in flight on them finish).
    pub balancers_removed: Vec<String>,
}

impl Reloader {
    pub(super) fn channel() -> (Self, mpsc::Receiver<Ask>) {
        let (tx, rx) = mpsc::channel(4);
        (Self { tx }, rx)
    }

    /// Applies `config`, or refuses it and keeps the configuration in force.
    ///
    /// # Errors
    /// [`ReloadError`]: why it was refused.
    pub async fn reload(&self, config: ConfigFile) -> Result<Reloaded, ReloadError> {
        self.ask(Ok(config)).await
    }

    /// Reads and applies `path`, as SIGHUP does in the `tower-balancer` binary. The file is
    /// read on a blocking thread, for at most [`RELOAD_READ_LIMIT`] (a file on a hung mount, a
    /// FIFO), so nothing else the balancer runs waits for it.
    ///
    /// # Errors
    /// [`ReloadError`]: why it was refused (a file that cannot be read or parsed is counted
    /// as a refused reload, like one that does not build).
    ///
    /// A file that cannot be read while the process is out of file descriptors is read
    /// again each second, within the same limit: the reload waits for a descriptor rather
    /// than being refused.
    pub async fn reload_file(&self, path: impl AsRef<Path>) -> Result<Reloaded, ReloadError> {
        let path = path.as_ref().to_path_buf();
        let started = tokio::time::Instant::now();
        loop {
            let read = tokio::task::spawn_blocking({
                let path = path.clone();
                move || ConfigFile::from_file(&path)
            });
            let left = RELOAD_READ_LIMIT.saturating_sub(started.elapsed());
            let config = match tokio::time::timeout(left, read).await {
                Ok(Ok(Ok(config))) => Ok(config),
                Ok(Ok(Err(e))) => {
                    if started.elapsed() + super::reload::SHORT_WAIT < RELOAD_READ_LIMIT
                        && super::reload::short_of_descriptors("the configuration file")
                    {
                        tokio::time::sleep(super::reload::SHORT_WAIT).await;
                        continue;
                    }
                    let path = path.clone();
                    let every = tokio::task::spawn_blocking(move || said_every_mistake(&path));
                    let left = RELOAD_READ_LIMIT.saturating_sub(started.elapsed());
                    let _ = tokio::time::timeout(left, every).await;
                    Err(e)
                }
                Ok(Err(_)) => return Err(ReloadError::Stopped),
                Err(_) => Err(ConfigError::file(
                    &path,
                    format!("could not be read within {RELOAD_READ_LIMIT:?}"),
                )),
            };
            return self.ask(config).await;
        }
    }

    /// Opens the access log file again (logrotate moved it), without a reload: what SIGUSR1
    /// does in the binary, as in nginx. A reload does it too, applied or refused.
    ///
    /// # Errors
    /// [`ReloadError::Stopped`] when the balancer is not serving.
    pub async fn reopen_logs(&self) -> Result<(), ReloadError> {
        self.tx
            .send(Ask::ReopenLogs)
            .await
            .map_err(|_| ReloadError::Stopped)
    }

    async fn ask(&self, config: Result<ConfigFile, ConfigError>) -> Result<Reloaded, ReloadError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Ask::Reload(Box::new(config), tx))
            .await
            .map_err(|_| ReloadError::Stopped)?;
        rx.await.map_err(|_| ReloadError::Stopped)?
    }
}

/// How long a reload waits for its file to be read.
pub const RELOAD_READ_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A file the reload refused may hold more than the first mistake the load met (which the
/// refusal's own line names): each is logged, as `--check` lists them, so the file is not
/// mended one SIGHUP at a time.
fn said_every_mistake(path: &Path) {
    if let Err(mistakes) = ConfigFile::check_file(path) {
        if mistakes.len() > 1 {
            for m in &mistakes {
                tracing::error!(mistake = %m, "a mistake in the reloaded file");
            }
        }
    }
}
