//! What active probing costs: 1 000 members probed every second for 10 s, over TCP and with an
//! in-process probe (the checker alone), measured as CPU time of the runtime thread that runs the
//! checker (the listener answering TCP probes runs on another thread and is not counted).
//! Bounded: about 24 s in all.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use benches::registry;
use tower_balancer::health::{HealthProbe, ProbeResult, ProbeSettings, TcpProbe};
use tower_balancer::registry::{MemberId, MemberSpec, RegistryError};

/// CPU seconds used by the calling thread so far: (user, system), from /proc.
fn thread_cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // fields after the command name, which ends with the last ')'
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on Linux
    Some((utime / 100.0, stime / 100.0))
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing: run either way
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port is free");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    let r = registry(0);
    r.update(|b| {
        for i in 0..1000 {
            let uri = format!("http://{addr}")
                .parse()
                .expect("a loopback URI is valid");
            b.insert(MemberSpec::new(MemberId::new(format!("m{i}"))?, uri))?;
        }
        Ok::<_, RegistryError>(())
    })
    .expect("fresh ids are accepted");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime starts");
    measure(&rt, &r, "over TCP", TcpProbe);
    // the checker's own machinery (timers, tasks, bookkeeping), with a probe that does no I/O
    let in_process = tower::service_fn(|_m: std::sync::Arc<tower_balancer::registry::Member>| {
        std::future::ready(Ok::<_, tower_balancer::BoxError>(ProbeResult::Pass))
    });
    measure(&rt, &r, "in process (no I/O)", in_process);
}

fn measure<P>(
    rt: &tokio::runtime::Runtime,
    r: &tower_balancer::registry::Registry,
    what: &str,
    probe: P,
) where
    P: tower::Service<std::sync::Arc<tower_balancer::registry::Member>, Response = ProbeResult>
        + Clone
        + Send
        + 'static,
    P::Error: Into<tower_balancer::BoxError>,
    P::Future: Send,
{
    let members = r.load().len();
    let settings = ProbeSettings::default().interval(Duration::from_secs(1));
    rt.block_on(async {
        let _task = HealthProbe::new(r.clone(), probe, settings).spawn();
        tokio::time::sleep(Duration::from_secs(2)).await; // every member probed at least once
        let (cpu0, t0) = (thread_cpu_seconds(), Instant::now());
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (cpu1, wall) = (thread_cpu_seconds(), t0.elapsed());
        match (cpu0, cpu1) {
            (Some((u0, s0)), Some((u1, s1))) => {
                let secs = wall.as_secs_f64();
                let (user, system) = (u1 - u0, s1 - s0);
                println!(
                    "probing {members} members every 1 s {what} for {secs:.1} s: {:.2}% of one core \
                     ({:.2}% user, {:.2}% system)",
                    (user + system) / secs * 100.0,
                    user / secs * 100.0,
                    system / secs * 100.0,
                );
            }
            _ => println!("no /proc/thread-self/stat on this system: CPU time not measured"),
        }
        let down = r.load().members().iter().filter(|m| m.health() != tower_balancer::registry::Health::Healthy).count();
        println!("members marked down during the run: {down} (expected 0)");
    });
}
