//! The discovery sources a balancer file names: a members file, DNS and etcd.

use std::time::Duration;

use tower_balancer::discovery::DnsDiscovery;
use tower_balancer::registry::Registry;

use super::build::{ConfigFile, NO_SPAN};
use super::error::ConfigError;
use super::members::MembersFile;
use super::plan::SourcePlan;
use super::typed::DnsTarget;

impl ConfigFile {
    /// Reads the members file (its members are in the registry from the start) and prepares
    /// the discovery sources that run beside the balancer.
    pub(super) fn discovery(&self, registry: &Registry) -> Result<SourcePlan, ConfigError> {
        let b = &self.file.balancer;
        let mut plan = SourcePlan {
            drain: b.drain.unwrap_or(Duration::from_secs(30)),
            slow_start: b.slow_start,
            ..SourcePlan::default()
        };
        if let Some(p) = &b.members_file {
            let mut file = MembersFile::new(self.resolve(p.get_ref()));
            if let Some(t) = b.members_poll {
                file = file.poll_interval(t);
            }
            let specs = file.read().map_err(|e| match e.line() {
                // the members file's own line: its error says where, and what named it
                Some(_) => {
                    let key = self.lane_key("balancer.members_file");
                    e.noting(&format!(
                        "the members file named by `{key}` in {}",
                        self.path.display()
                    ))
                }
                // unreadable or empty: say which key of this file named it
                None => self.err(Some(p), "balancer.members_file", e.to_string()),
            })?;
            // a route this file declares stays this file's, as it does while running
            let (specs, shadowed): (Vec<_>, Vec<_>) = specs
                .into_iter()
                .partition(|s| registry.load().get(s.id().as_str()).is_none());
            for spec in &shadowed {
                tracing::warn!(
                    member = %spec.id(),
                    "the members file names a member this file declares: this file's member stays as it says"
                );
            }
            file = file.starting_from(specs.iter().cloned());
            for spec in specs {
                // checked above: no member of this id yet
                let _ = registry.insert(spec);
            }
            plan.file = Some(file);
        }
        if let Some(d) = &b.dns {
            let target = d
                .target()
                .map_err(|e| self.err(NO_SPAN, "balancer.dns", e))?;
            let mut dns = match target {
                DnsTarget::Srv(srv) => DnsDiscovery::srv(srv),
                DnsTarget::Addresses { name, port } => DnsDiscovery::addresses(name, port),
            };
            dns = dns
                .scheme(d.scheme.as_str())
                .id_prefix(d.id_prefix.as_str())
                .name_servers(d.name_servers.iter().copied());
            if let Some(t) = d.ttl_floor {
                dns = dns.ttl_floor(t);
            }
            if let Some(t) = d.ttl_ceiling {
                dns = dns.ttl_ceiling(t);
            }
            if let Some(t) = d.remove_after {
                dns = dns.remove_after(t);
            }
            if let Some(n) = d.max_members {
                dns = dns.max_members(n);
            }
            plan.dns = Some(
                dns.build()
                    .map_err(|e| self.err(NO_SPAN, "balancer.dns", e.to_string()))?,
            );
        }
        plan.etcd = self.etcd()?;
        Ok(plan)
    }
}
