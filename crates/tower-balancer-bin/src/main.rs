//! `tower-balancer`: the balancer as operators run it, from a TOML file that mirrors an
//! Apache virtual host.
//!
//! ```text
//! tower-balancer --check lb.toml          # validate the file (exit 0: good), like nginx -t
//! tower-balancer --config lb.toml         # run it; SIGHUP reloads the file, SIGUSR1
//!                                         # reopens the access log, SIGTERM or Ctrl-C
//!                                         # drains and stops
//! tower-balancer --config lb.toml --workers 4
//! tower-balancer import-apache httpd.conf > lb.toml   # an Apache balancer, as this file
//! ```
//!
//! Built for speed as deployments build: mimalloc as the allocator, and per-core
//! current-thread runtimes, each with its own `SO_REUSEPORT` listener (`server.workers`,
//! default: the number of cores). `cargo install --path crates/tower-balancer-bin --profile
//! dist` adds fat LTO and one codegen unit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use tower_balancer_proxy::config::ConfigFile;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An HTTP load balancer run from a TOML file that mirrors an Apache virtual host.
#[derive(Debug, Parser)]
#[command(
    name = "tower-balancer",
    version,
    about,
    subcommand_negates_reqs = true
)]
struct Args {
    /// Run the balancer FILE describes.
    #[arg(long, value_name = "FILE", required_unless_present = "check")]
    config: Option<PathBuf>,
    /// Check FILE (every value, every file it names) and exit: 0 when it is good.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check: Option<PathBuf>,
    /// Runtimes serving the front [default: the file's `server.workers`, else the number of
    /// cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Write the balancer an Apache configuration describes as this project's file, on
    /// stdout, with a comment for every directive not carried and why.
    ImportApache {
        /// The Apache configuration (httpd.conf or a site file); `Include`s are followed.
        #[arg(value_name = "HTTPD_CONF")]
        file: PathBuf,
        /// HOST=IP: members named HOST are reached at IP (what /etc/hosts said for Apache).
        #[arg(long, value_name = "HOST=IP", value_parser = host_ip)]
        resolve: Vec<(String, std::net::IpAddr)>,
        /// Where the balancer-manager listens [default: 127.0.0.1:9000].
        #[arg(long, value_name = "ADDR")]
        manager: Option<std::net::SocketAddr>,
    },
}

fn host_ip(s: &str) -> Result<(String, std::net::IpAddr), String> {
    let (host, ip) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not HOST=IP"))?;
    let ip = ip
        .parse()
        .map_err(|_| format!("`{ip}` is not an IP address"))?;
    Ok((host.to_owned(), ip))
}

/// `import-apache`: the TOML on stdout, what was not carried on stderr too.
fn import(
    file: &Path,
    resolve: &[(String, std::net::IpAddr)],
    manager: Option<std::net::SocketAddr>,
) -> Result<(), Error> {
    let mut options = tower_balancer_proxy::config::ImportOptions::new();
    for (host, ip) in resolve {
        options = options.resolve(host.clone(), *ip);
    }
    if let Some(addr) = manager {
        options = options.manager(addr);
    }
    let imported = tower_balancer_proxy::config::import_apache(file, &options)?;
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        out.write_all(imported.toml.as_bytes())?;
        out.flush()?;
    }
    for n in &imported.not_carried {
        eprintln!("not carried: {n}");
    }
    eprintln!(
        "imported {}; {} directive(s) not carried (listed above and in the file). Check the result with --check.",
        file.display(),
        imported.not_carried.len()
    );
    Ok(())
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Logs to stderr at INFO, or at what `RUST_LOG` says (`debug`, or per target:
/// `info,tower_balancer=debug`): debug turns on each request's span and its events. A value
/// that does not parse is said and INFO kept.
fn init_logging() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let asked = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let parsed = asked.as_deref().map(str::parse::<Targets>);
    let filter = match &parsed {
        Some(Ok(targets)) => targets.clone(),
        // h2 warns of each client that breaks its rules (a reset flood: a line a connection,
        // with no address); the server's own line for the close has the client and a budget
        _ => Targets::new()
            .with_default(LevelFilter::INFO)
            .with_target("h2", LevelFilter::ERROR),
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false),
        )
        .with(filter)
        .init();
    if let Some(Err(e)) = parsed {
        tracing::warn!(error = %e, "RUST_LOG not understood; logging at INFO");
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    if let Some(Command::ImportApache {
        file,
        resolve,
        manager,
    }) = &args.command
    {
        return match import(file, resolve, *manager) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let result = match (&args.check, &args.config) {
        (Some(file), _) => check(file),
        (None, Some(file)) => run(file, args.workers),
        (None, None) => Err("give --config FILE or --check FILE".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A runtime for the work that is not serving: building, probes, discovery, the manager.
fn control_runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// `--check`: every mistake in the file, each on its own line (values, rules between keys,
/// every certificate, key and members file it names).
fn check(file: &Path) -> Result<(), Error> {
    control_runtime()?.block_on(async {
        match ConfigFile::check_file(file) {
            Ok(config) => {
                // not a mistake in the file (a name may resolve later), but a typo in one
                // shows only as a 502 on every request to that member
                for w in config.unresolved_members() {
                    eprintln!("warning: {w}");
                }
                println!("{}: the configuration is good", file.display());
                Ok(())
            }
            Err(errors) => Err(mistakes(file, &errors)),
        }
    })
}

/// Says each of `errors`, a line each; the error that ends the run.
fn mistakes(file: &Path, errors: &[impl std::fmt::Display]) -> Error {
    for e in errors {
        eprintln!("error: {e}");
    }
    let n = errors.len();
    let s = if n == 1 { "" } else { "s" };
    format!("{n} mistake{s} in {}", file.display()).into()
}

/// `--config`: run until SIGTERM or Ctrl-C, then drain; SIGHUP reloads, SIGUSR1 reopens the
/// access log.
fn run(file: &Path, workers: Option<u16>) -> Result<(), Error> {
    let runtime = control_runtime()?;
    let result = runtime.block_on(async {
        // first of all: from here on a signal is handled, never the default (death)
        let signals = Signals::install()?;
        let config = match ConfigFile::from_file(file) {
            Ok(config) => config,
            // every mistake, as `--check` lists them, not only the first the load met
            Err(first) => match ConfigFile::check_file(file) {
                Err(errors) if !errors.is_empty() => return Err(mistakes(file, &errors)),
                _ => return Err(first.into()),
            },
        };
        // said at the start, beside the lines of a good start, without holding it up
        let lookups = config.clone();
        tokio::task::spawn_blocking(move || {
            for w in lookups.unresolved_members() {
                tracing::warn!("{w}");
            }
        });
        // before the connection cap is taken from it (`server.max_connections` unset)
        raise_open_file_limit();
        let mut gateway = config.build()?;
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let workers = workers
            .map(usize::from)
            .or(config.file().server.workers)
            .unwrap_or(cores);
        gateway.set_workers(workers);
        let bound = gateway.bind().await?;
        let stop = signals.serve(bound.reloader(), file.to_path_buf());
        // the first line of stdout, for supervisors and tests: where it listens
        println!("listening on {}", bound.local_addr()?);
        if let Some(m) = bound.manager_addr() {
            println!("manager on http://{m}/balancer-manager");
        }
        tracing::info!(workers, "serving");
        bound.serve(stop).await?;
        Ok(())
    });
    // a write to a blocked stdout (an access log whose reader stopped reading) runs on a
    // blocking thread the runtime would wait for on drop: the stop has already waited for
    // the log as long as it will (and said so), so the process exits now
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    result
}

/// The most the open-file soft limit is raised to (Linux's default `fs.nr_open`).
const MOST_OPEN_FILES: u64 = 1 << 20;

/// Raises the open-file soft limit to the hard one, as Go's runtime and HAProxy do: the
/// connection cap is half the soft limit, and systemd gives services a soft limit of 1,024
/// under a hard one of 524,288, a cap of 480 connections on a machine that could hold a
/// thousand times more (and, under it, a few clients holding every member connection).
fn raise_open_file_limit() {
    let Ok((soft, hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return;
    };
    if soft >= hard.min(MOST_OPEN_FILES) {
        return;
    }
    match rlimit::increase_nofile_limit(hard.min(MOST_OPEN_FILES)) {
        Ok(now) => tracing::info!(from = soft, to = now, "raised the open-file soft limit"),
        Err(e) => tracing::warn!(
            error = %e,
            soft,
            hard,
            "could not raise the open-file soft limit: the connection cap is half of it"
        ),
    }
}

/// The signals an operator sends, caught from the start.
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> Result<Self, Error> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// Handles SIGHUP (reload `file`), SIGUSR1 (reopen the access log) and SIGUSR2
    /// (ignored, said) while serving; the future completes on SIGTERM or SIGINT, and a
    /// second of either exits the process at once, without the rest of the drain.
    fn serve(
        self,
        reloader: tower_balancer_proxy::config::Reloader,
        file: PathBuf,
    ) -> impl std::future::Future<Output = ()> + Send {
        let Self {
            mut term,
            mut int,
            mut hup,
            mut usr1,
            mut usr2,
        } = self;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(()) = hup.recv() => {
                        // DEBUG: the outcome is the reload's one line (INFO "configuration
                        // reloaded", or ERROR), logged and counted by the balancer
                        tracing::debug!(file = %file.display(), "SIGHUP: reloading");
                        if let Err(tower_balancer_proxy::config::ReloadError::Stopped) =
                            reloader.reload_file(&file).await
                        {
                            break;
                        }
                    }
                    Some(()) = usr1.recv() => {
                        tracing::info!("SIGUSR1: opening the access log again");
                        if reloader.reopen_logs().await.is_err() {
                            break;
                        }
                    }
                    Some(()) = usr2.recv() => {
                        tracing::warn!("SIGUSR2 ignored: SIGHUP reloads, SIGUSR1 reopens the access log");
                    }
                    else => break,
                }
            }
        });
        async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!(
                "stopping: finishing requests in flight (a second SIGTERM or Ctrl-C stops at once)"
            );
            // an operator who cannot wait out the graceful timeout has a way out
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                tracing::warn!("second stop signal: exiting now; requests in flight get no answer");
                std::process::exit(1);
            });
        }
    }
}

/// Elsewhere: Ctrl-C stops; reload by restarting.
#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    #[allow(clippy::unnecessary_wraps)]
    fn install() -> Result<Self, Error> {
        Ok(Self)
    }

    fn serve(
        self,
        _: tower_balancer_proxy::config::Reloader,
        _: PathBuf,
    ) -> impl std::future::Future<Output = ()> + Send {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
