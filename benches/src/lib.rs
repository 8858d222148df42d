//! Shared set-up for the criterion benches of tower-balancer (see `benches/`).
//!
//! `cargo bench -p benches` runs them; the README quotes the medians with the machine they were
//! taken on.

use tower_balancer::registry::{MemberId, MemberSpec, Registry, RegistryError};

/// A registry with `n` members `m0..`, weights cycling 1..=4 so weighted strategies do work.
///
/// # Panics
/// Never for the ids and URIs it makes (they are valid by construction).
#[must_use]
pub fn registry(n: usize) -> Registry {
    let r = Registry::new();
    r.update(|b| {
        for i in 0..n {
            let id = MemberId::new(format!("m{i}"))?;
            let port = 1024 + (i % 60_000);
            let uri = format!("http://127.0.0.1:{port}")
                .parse()
                .expect("a loopback URI with a numeric port is valid");
            let weight = u32::try_from(i % 4 + 1).expect("weights 1..=4 fit in u32");
            b.insert(MemberSpec::new(id, uri).weight(weight))?;
        }
        Ok::<_, RegistryError>(())
    })
    .expect("fresh ids in an empty registry are accepted");
    r
}

/// Member counts every pick bench runs at.
pub const SIZES: [usize; 4] = [2, 16, 256, 4096];

/// One request's worth of picking: load the snapshot, pick, and return the member's serial
/// (so the member's state is touched, as a real request would).
#[must_use]
pub fn pick_serial<S: tower_balancer::strategy::Strategy>(
    registry: &Registry,
    picker: &tower_balancer::strategy::Picker<S>,
    cx: &tower_balancer::strategy::PickContext<'_>,
) -> Option<u64> {
    let snapshot = registry.load();
    picker.pick(&snapshot, cx).ok().map(|m| m.serial())
}

/// Runs `serve` on a one-thread runtime for `seconds`, as the floor binaries (`hyper_floor`,
/// `same_task_floor`) do, so scripts start and stop them alike.
///
/// # Errors
/// The runtime cannot be built, or `serve` failed (it could not bind, say).
pub fn serve_for<F>(seconds: u64, serve: F) -> Result<(), Box<dyn std::error::Error>>
where
    F: std::future::Future<Output = Result<(), Box<dyn std::error::Error>>>,
{
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let stop = tokio::time::sleep(std::time::Duration::from_secs(seconds));
            tokio::select! {
                r = serve => r,
                () = stop => Ok(()),
            }
        })
}
