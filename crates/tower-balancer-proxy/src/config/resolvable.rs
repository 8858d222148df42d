//! Whether each member's host resolves now, for `--check`.
//!
//! Why a warning and not an error: a member's host is looked up when a connection to it is
//! made, not when the file is read, so a name that does not resolve yet (a node still being
//! provisioned, DNS that comes up after the balancer) is not a mistake in the file. But a
//! typo in a host name otherwise shows only as a 502 on every request to that member: `nginx
//! -t` refuses such a file, and an operator checking one before a reload wants to hear of it.

use std::net::{IpAddr, ToSocketAddrs};

use super::build::ConfigFile;
use super::error::ConfigError;

impl ConfigFile {
    /// The members, in every balancer of the file, whose host the system resolver does not
    /// resolve now (members with `resolve` lines, or an address for a host, are not looked
    /// up): one error each, naming the member's `url` key and what to do. Looks the names
    /// up, so it blocks while the resolver answers.
    #[must_use]
    pub fn unresolved_members(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        for lane in self.lanes() {
            for (i, m) in lane.file.balancer.members.iter().enumerate() {
                let Some(host) = m.url.host() else { continue };
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                if !m.resolve.is_empty() || bare.parse::<IpAddr>().is_ok() {
                    continue;
                }
                let https = m.url.scheme_str() == Some("https");
                let port = m.url.port_u16().unwrap_or(if https { 443 } else { 80 });
                let found = (bare, port)
                    .to_socket_addrs()
                    .map(|mut a| a.next().is_some());
                let why = match found {
                    Ok(true) => continue,
                    Ok(false) => "no address".to_owned(),
                    Err(e) => e.to_string(),
                };
                out.push(lane.err(
                    None::<&toml::Spanned<()>>,
                    &format!("balancer.member[{i}].url"),
                    format!(
                        "the host {bare} does not resolve now ({why}): requests to this member \
                         fail until it does; fix the name or DNS, or add resolve = \
                         [\"IP:{port}\"] to the member"
                    ),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn members(urls: &[&str]) -> ConfigFile {
        let mut text = "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb.test\"\n\n\
                        [balancer]\nname = \"b\"\n"
            .to_owned();
        for (i, u) in urls.iter().enumerate() {
            text.push_str(&format!(
                "[[balancer.member]]\nurl = \"{u}\"\nroute = \"n{i}\"\n"
            ));
        }
        ConfigFile::from_toml(&text, Path::new("lb.toml")).unwrap()
    }

    #[test]
    fn a_host_that_does_not_resolve_is_named_at_its_line() {
        // `.invalid` never resolves (RFC 6761 §6.4)
        let config = members(&[
            "http://127.0.0.1:9763",
            "http://no-such-host.invalid:9764",
            "http://localhost:9765",
            "http://[::1]:9766",
        ]);
        let found = config.unresolved_members();
        assert_eq!(found.len(), 1, "{found:?}");
        let said = found[0].to_string();
        assert_eq!(found[0].line(), Some(11), "{said}");
        assert!(
            said.contains("balancer.member[1].url") && said.contains("no-such-host.invalid"),
            "{said}"
        );
    }

    #[test]
    fn a_member_with_resolve_lines_is_not_looked_up() {
        let mut config = members(&["http://no-such-host.invalid:9764"]);
        assert_eq!(config.unresolved_members().len(), 1);
        config.file.balancer.members[0].resolve = vec!["127.0.0.1:9764".parse().unwrap()];
        assert!(config.unresolved_members().is_empty());
    }
}
