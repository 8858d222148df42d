//! Serves the balancer-manager over a demo registry on 127.0.0.1, for a look in a browser:
//!
//! ```sh
//! cargo run -p tower-balancer-proxy --example manager_demo -- --seconds 30 &
//! chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
//!   --disable-component-update --disable-sync --user-data-dir="$(mktemp -d)" \
//!   --window-size=1400,500 --screenshot=manager.png http://127.0.0.1:8099/balancer-manager
//! ```
//!
//! It stops by itself after `--seconds` (default 30).

use std::time::Duration;

use tower_balancer::outcome::Outcome;
use tower_balancer::registry::{AdminState, Health, InFlight, MemberId, MemberSpec, Registry};
use tower_balancer_proxy::manager::{ManagerInfo, ManagerService};
use tower_balancer_proxy::serve::{ServeConfig, Server};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .map_or(Ok(30), |s| s.parse())?;
    let registry = Registry::new();
    registry.insert(
        MemberSpec::new(MemberId::new("node1")?, "https://abc.com:9443".parse()?).weight(2),
    )?;
    registry.insert(MemberSpec::new(
        MemberId::new("node2")?,
        "https://xyz.com:9444".parse()?,
    ))?;
    registry.insert(
        MemberSpec::new(
            MemberId::new("node3")?,
            "https://spare.example:9445".parse()?,
        )
        .state(AdminState::Standby)
        .priority(1),
    )?;
    registry.set_health("node2", Health::Unhealthy)?;
    // some traffic so the counters are not all zero
    let snapshot = registry.snapshot();
    let mut busy = Vec::new();
    for (i, m) in snapshot.members().iter().enumerate() {
        for _ in 0..(40 / (i + 1)) {
            m.stats().record(&Outcome::Success {
                latency: Duration::from_millis(12 + 3 * i as u64),
            });
            m.stats().add_bytes_from_member(5120);
            m.stats().add_bytes_to_member(512);
        }
        busy.push(InFlight::start(m.clone()));
    }
    let manager = ManagerService::new(
        registry,
        ManagerInfo {
            name: "wso2-is".into(),
            strategy: "round-robin".into(),
            sticky: "ROUTEID (signed), JSESSIONID route, ;jsessionid=".into(),
            failover: "3 retries, 64 KiB replay, budget 20% + 10/s".into(),
        },
    )?;
    let server = Server::bind("127.0.0.1:8099".parse()?, ServeConfig::new()).await?;
    println!(
        "balancer-manager on http://{}/balancer-manager for {seconds} s",
        server.local_addr()?
    );
    server
        .serve(manager, tokio::time::sleep(Duration::from_secs(seconds)))
        .await?;
    drop(busy);
    Ok(())
}
