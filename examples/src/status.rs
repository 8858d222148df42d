//! One line per member whenever its state or health changes, so an operator watching the
//! terminal sees a node go down and come back.

use std::collections::BTreeMap;

use tower_balancer::registry::{AdminState, Health, HealthSource, Registry, Snapshot};

/// What a member looked like last time.
type Seen = BTreeMap<String, (AdminState, Health, u32)>;

/// The status line for each member that changed since `seen`, updating `seen`.
pub fn changes(snapshot: &Snapshot, seen: &mut Seen) -> Vec<String> {
    let mut lines = Vec::new();
    for m in snapshot.members() {
        let now = (m.state(), m.health(), m.weight());
        let id = m.id().as_str().to_owned();
        if seen.get(&id) == Some(&now) {
            continue;
        }
        let by: Vec<&str> = [
            (HealthSource::Probe, "health probe"),
            (HealthSource::Outlier, "passive ejection"),
            (HealthSource::Operator, "operator"),
        ]
        .iter()
        .filter(|(s, _)| m.is_down_by(*s))
        .map(|(_, n)| *n)
        .collect();
        let health = if by.is_empty() {
            m.health().to_string()
        } else {
            format!("{} (by {})", m.health(), by.join(", "))
        };
        lines.push(format!(
            "member {id} {}: {}, {health}, weight {}",
            m.endpoint(),
            m.state(),
            m.weight()
        ));
        seen.insert(id, now);
    }
    lines
}

/// Prints a line whenever a member changes, until the registry is dropped.
pub async fn watch(registry: Registry, mut print: impl FnMut(&str) + Send) {
    let mut seen = Seen::new();
    let mut changes_rx = registry.subscribe();
    loop {
        changes_rx.mark_seen();
        for line in changes(&registry.snapshot(), &mut seen) {
            print(&line);
        }
        if changes_rx.changed().await.is_err() {
            return;
        }
    }
}
