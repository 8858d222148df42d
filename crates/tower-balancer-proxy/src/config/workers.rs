//! More than one worker: per-core current-thread runtimes, each with its own `SO_REUSEPORT`
//! listener on the front's address and its own stack (so its own member connection pool),
//! sharing the registry, passive ejection and the manager. The kernel spreads new
//! connections over the listeners; a connection stays on the worker that accepted it, with
//! no cross-thread wake-ups on the request path.

use std::io;
use std::net::SocketAddr;
use std::thread::JoinHandle;

use tokio::runtime::Runtime;
use tokio::sync::watch;
use tower_balancer::health::OutlierDetection;
use tower_balancer::registry::Registry;

use super::reload::Slots;
use super::run::BindError;
use super::strategy::ConfiguredStrategy;
use crate::proxy::StackPlan;
use crate::serve::{LiveSettings, Reloadable, Servable, ServeConfig, Server};
use crate::tls::TlsError;

/// What one balancer's layers are built from: its plan, registry and passive ejection.
pub(crate) type LaneBuild = (StackPlan<ConfiguredStrategy>, Registry, OutlierDetection);

/// One more worker: its runtime and the listener bound on it.
#[derive(Debug)]
pub(crate) struct Worker {
    runtime: Option<Runtime>,
    server: Option<Server>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // dropped unstarted, perhaps inside an async context: never block there
        if let Some(rt) = self.runtime.take() {
            drop(self.server.take());
            rt.shutdown_background();
        }
    }
}

/// Opens `count` more listeners on `addr` (the front's, bound with `SO_REUSEPORT`), each on
/// a current-thread runtime of its own, so a port in use is found before anything runs.
#[cfg(unix)]
pub(crate) fn open(
    addr: SocketAddr,
    config: &ServeConfig,
    settings: &LiveSettings,
    count: usize,
) -> io::Result<Vec<Worker>> {
    (0..count)
        .map(|_| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let server = {
                let _in = runtime.enter();
                // one set of settings for the port: a reload reaches every worker
                Server::bind_reuseport(addr, config.clone())?.with_settings(settings.clone())
            };
            Ok(Worker {
                runtime: Some(runtime),
                server: Some(server),
            })
        })
        .collect()
}

/// Without `SO_REUSEPORT` there is one worker.
#[cfg(not(unix))]
pub(crate) fn open(
    _: SocketAddr,
    _: &ServeConfig,
    _: &LiveSettings,
    _: usize,
) -> io::Result<Vec<Worker>> {
    Ok(Vec::new())
}

/// A worker's thread, which ends when its server does.
pub(crate) type Started = JoinHandle<io::Result<()>>;

/// Starts each worker on a thread of its own, serving its own stack (made by `build` on the
/// worker's runtime) until `stop` turns true; join the handles after. The slots replace the
/// workers' stacks on reload.
pub(crate) fn start<S, F>(
    workers: Vec<Worker>,
    lanes: &[LaneBuild],
    stop: &watch::Receiver<bool>,
    build: F,
) -> Result<(Vec<Started>, Slots<S>), BindError>
where
    S: Servable + Sync,
    F: Fn(Vec<LaneBuild>) -> Result<S, TlsError>,
{
    let mut handles = Vec::with_capacity(workers.len());
    let mut slots = Vec::with_capacity(workers.len());
    for (i, mut w) in workers.into_iter().enumerate() {
        let (Some(runtime), Some(server)) = (w.runtime.take(), w.server.take()) else {
            continue;
        };
        let stack = {
            // the stack's connection pool spawns its tasks on the worker's runtime
            let _in = runtime.enter();
            Reloadable::new(build(lanes.to_vec())?)
        };
        slots.push((runtime.handle().clone(), stack.clone()));
        let mut stop = stop.clone();
        let handle = std::thread::Builder::new()
            .name(format!("lb-worker-{}", i + 1))
            .spawn(move || {
                runtime.block_on(server.serve(stack, async move {
                    let _ = stop.wait_for(|s| *s).await;
                }))
            })
            .map_err(BindError::Worker)?;
        handles.push(handle);
    }
    Ok((handles, slots))
}
