//! Every mistake in a file at once, as `nginx -t` and `apachectl configtest` are used: an
//! operator fixing a file before a reload should not need one run per mistake.
//!
//! How: serde stops at the first bad value, so the checker sets that value aside and reads
//! the file again — it comments the line out, or, for a key the file cannot do without
//! (`listen`, `url`, `route`, …), puts a harmless stand-in in its place — keeping every line
//! where it was, so each later error still names its own line. Then every rule between keys
//! and every part that reads a file (certificates, keys, members file, access log) is
//! checked on its own. A syntax error stops the reading there, as it does for nginx.

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use tower_balancer::registry::Registry;

use super::build::{read_config, ConfigFile};
use super::error::{parse_toml_spanned, ConfigError};
use super::file::FileConfig;
use crate::forward::ForwardConfig;
use crate::serve::{
    chain_from_pem, key_from_pem, server_tls_by_name, server_tls_from_pem, NamedCertificate,
};

/// More than this many bad values and the file is not worth reading on.
const MAX_VALUE_ERRORS: usize = 50;

impl ConfigFile {
    /// Reads `path` and finds every mistake in it: each bad value, each rule between keys
    /// the file breaks, each file it names that cannot be read or used. The configuration
    /// when there is none.
    ///
    /// # Errors
    /// Every [`ConfigError`] found, in the order of the file's values, then the rules, then
    /// the files it names.
    pub fn check_file(path: impl AsRef<Path>) -> Result<Self, Vec<ConfigError>> {
        let path = path.as_ref();
        let text = read_config(path).map_err(|e| vec![e])?;
        let (read, mut errors) = values(&text, path);
        let Some((file, read_text)) = read else {
            return Err(errors);
        };
        let config = Self {
            file,
            path: path.to_path_buf(),
            // the text the values were read from: the same lines, with bad values set aside
            text: read_text,
            lane: 0,
        };
        errors.extend(config.rules());
        errors.extend(config.parts());
        let errors = in_file_order(errors);
        if errors.is_empty() {
            let config = Self { text, ..config };
            Ok(config)
        } else {
            Err(errors)
        }
    }

    /// Each part of the build on its own, so one unreadable file does not hide another.
    fn parts(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        for lane in self.lanes() {
            out.extend(lane.lane_parts());
        }
        // the plan stops at the first file it cannot use: each on its own first
        let files = self.front_files();
        if files.is_empty() {
            out.extend(self.front_plan().err());
        }
        out.extend(files);
        out.extend(self.route_table().err());
        out
    }

    /// Every certificate, key and access log the front names that cannot be used, each on
    /// its own (a pair is tried together once both files are read).
    fn front_files(&self) -> Vec<ConfigError> {
        let s = &self.file.server;
        let mut out = Vec::new();
        if let (Some(c), Some(k)) = (&s.certificate, &s.key) {
            out.extend(self.tls_pair("server", None, c, k));
        }
        for (v, host) in self.file.vhosts.iter().enumerate() {
            if let (Some(c), Some(k)) = (&host.certificate, &host.key) {
                out.extend(self.tls_pair(&format!("vhost[{v}]"), Some(&host.names), c, k));
            }
        }
        out.extend(self.access_log_target().err());
        out
    }

    /// What is wrong with one certificate and key (`at` is `server` or `vhost[i]`; `names`
    /// the virtual host's): each unreadable file, else the pair refused.
    fn tls_pair(
        &self,
        at: &str,
        names: Option<&Vec<String>>,
        cert: &Spanned<PathBuf>,
        key: &Spanned<PathBuf>,
    ) -> Vec<ConfigError> {
        let cert_key = format!("{at}.certificate");
        let key_key = format!("{at}.key");
        // each file read and parsed on its own, so a bad one is named at its own line
        let parsed = |p: &Spanned<PathBuf>, name: &str, parse: &dyn Fn(&[u8]) -> Option<String>| {
            let pem = self.read(p, name)?;
            match parse(&pem) {
                None => Ok(pem),
                Some(e) => {
                    let file = self.resolve(p.get_ref());
                    Err(self.err(Some(p), name, format!("`{}`: {e}", file.display())))
                }
            }
        };
        let read = (
            parsed(cert, &cert_key, &|pem| {
                chain_from_pem(pem).err().map(|e| e.to_string())
            }),
            parsed(key, &key_key, &|pem| {
                key_from_pem(pem).err().map(|e| e.to_string())
            }),
        );
        let (chain_pem, key_pem) = match read {
            (Ok(c), Ok(k)) => (c, k),
            (c, k) => return [c.err(), k.err()].into_iter().flatten().collect(),
        };
        let refused = match names {
            None => server_tls_from_pem(&chain_pem, &key_pem).err(),
            Some(names) => {
                let one = NamedCertificate {
                    names: names.clone(),
                    chain_pem,
                    key_pem,
                };
                server_tls_by_name(None, std::slice::from_ref(&one)).err()
            }
        };
        refused
            .map(|e| self.err(Some(cert), &cert_key, e.to_string()))
            .into_iter()
            .collect()
    }

    /// Each part of one balancer's build on its own.
    fn lane_parts(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        let (registry, forward) = self.members().unwrap_or_else(|e| {
            out.push(e);
            (Registry::new(), ForwardConfig::new())
        });
        if let Err(e) = self.discovery(&registry) {
            out.push(e);
        }
        let forward = self.forwarding(forward).unwrap_or_else(|e| {
            out.push(e);
            ForwardConfig::new()
        });
        if let Err(e) = self.probe(&forward, &registry) {
            out.push(e);
        }
        let results = [self.stack_plan(forward).err(), self.public_url().err()];
        out.extend(results.into_iter().flatten());
        // the plan stops at the first bad key; the one it found is said once (`in_file_order`)
        out.extend(self.cookie_key_errors());
        out
    }
}

/// Errors by line, each said once: a member refused at `balancer.member[1]` for the route
/// already named at `balancer.member[1].route` on that line is the same mistake.
fn in_file_order(mut errors: Vec<ConfigError>) -> Vec<ConfigError> {
    errors.sort_by_key(ConfigError::line);
    let mut kept: Vec<ConfigError> = Vec::with_capacity(errors.len());
    let mut seen = HashSet::new();
    for e in errors {
        let again = kept.iter().any(|k| {
            k.line() == e.line()
                && k.line().is_some()
                && match (k.key(), e.key()) {
                    (Some(a), Some(b)) => a.starts_with(b) && a != b,
                    _ => false,
                }
        });
        if !again && seen.insert(e.to_string()) {
            kept.push(e);
        }
    }
    kept
}

/// The file's values, read past each bad one; the configuration read (with the bad values
/// set aside) and the text it was read from, when the reading got to the end.
#[allow(clippy::type_complexity)]
fn values(text: &str, path: &Path) -> (Option<(FileConfig, String)>, Vec<ConfigError>) {
    let mut work = text.to_owned();
    let mut errors = Vec::new();
    while errors.len() < MAX_VALUE_ERRORS {
        match parse_toml_spanned::<FileConfig>(&work, path) {
            Ok(file) => return (Some((file, work)), errors),
            Err((e, span)) => {
                let next = span.and_then(|s| set_aside(&work, s, &e));
                errors.push(e);
                match next {
                    Some(w) => work = w,
                    None => return (None, errors),
                }
            }
        }
    }
    (None, errors)
}

/// `work` with the value at `span` set aside, on the same lines; `None` when it cannot be
/// (a missing key, a value the file would not parse without).
fn set_aside(work: &str, span: Range<usize>, e: &ConfigError) -> Option<String> {
    if e.message().starts_with("missing field") || span.end > work.len() {
        return None;
    }
    let leaf = e
        .key()
        .and_then(|k| k.rsplit('.').next())
        .map(|l| l.split('[').next().unwrap_or(l));
    let stand_in = match leaf {
        Some("listen") => Some("\"127.0.0.1:0\"".to_owned()),
        Some("server_name") => Some("\"placeholder.invalid\"".to_owned()),
        Some("name") => Some("\"placeholder\"".to_owned()),
        Some("url") => Some("\"http://placeholder.invalid\"".to_owned()),
        Some("route") => Some(format!("\"placeholder{}\"", span.start)),
        _ => None,
    };
    let key_span = work.get(span.clone())? == leaf.unwrap_or("");
    let out = match stand_in {
        Some(v) if !key_span => {
            let lines = work[span.clone()].matches('\n').count();
            format!(
                "{}{v}{}{}",
                &work[..span.start],
                "\n".repeat(lines),
                &work[span.end..]
            )
        }
        _ => comment_out(work, span),
    };
    // still TOML, and changed: otherwise the reading stops here
    let parses = toml::de::DeTable::parse(&out).is_ok();
    (parses && out != work).then_some(out)
}

/// `work` with every line `span` touches commented out.
fn comment_out(work: &str, span: Range<usize>) -> String {
    let start = work[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let end = work[span.end..]
        .find('\n')
        .map_or(work.len(), |i| span.end + i);
    let mut out = String::with_capacity(work.len() + 16);
    out.push_str(&work[..start]);
    for (i, line) in work[start..end].split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push('#');
        out.push_str(line);
    }
    out.push_str(&work[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Vec<String> {
        let dir = std::env::temp_dir().join(format!("lb-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{:x}.toml", text.len() * 31 + text.lines().count()));
        std::fs::write(&path, text).unwrap();
        let out = match ConfigFile::check_file(&path) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .iter()
                .map(|e| format!("{}:{}", e.line().unwrap_or(0), e.key().unwrap_or("")))
                .collect(),
        };
        let _ = std::fs::remove_file(&path);
        out
    }

    #[test]
    fn every_unusable_certificate_key_and_log_is_named_not_only_the_first() {
        let dir = std::env::temp_dir().join(format!("lb-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let g = garbage.display();
        let text = format!(
            "[server]\n\
             listen = \"127.0.0.1:0\"\n\
             server_name = \"lb.test\"\n\
             certificate = \"no-such-cert.pem\"\n\
             key = \"{g}\"\n\
             access_log = \"/no/such/dir/access.log\"\n\
             [[balancer]]\n\
             name = \"b\"\n\
             [[balancer.member]]\n\
             url = \"http://a\"\n\
             route = \"n\"\n\
             [[vhost]]\n\
             names = [\"a.test\"]\n\
             certificate = \"{g}\"\n\
             key = \"{g}\"\n\
             [[vhost.route]]\n\
             prefix = \"/\"\n\
             balancer = \"b\"\n\
             [[vhost]]\n\
             names = [\"b.test\"]\n\
             certificate = \"no-such-vhost-cert.pem\"\n\
             key = \"{g}\"\n\
             [[vhost.route]]\n\
             prefix = \"/\"\n\
             balancer = \"b\"\n"
        );
        assert_eq!(
            check(&text),
            [
                "4:server.certificate",
                "5:server.key",
                "6:server.access_log",
                "14:vhost[0].certificate",
                "15:vhost[0].key",
                "21:vhost[1].certificate",
                "22:vhost[1].key"
            ]
        );
        let _ = std::fs::remove_file(&garbage);
    }

    #[test]
    fn every_unusable_cookie_key_is_named_not_only_the_first() {
        let text = "[server]\n\
                    listen = \"127.0.0.1:0\"\n\
                    server_name = \"lb.test\"\n\
                    [balancer]\n\
                    name = \"b\"\n\
                    cookie_key_files = [\n\
                    \"no-such-1.key\",\n\
                    \"no-such-2.key\",\n\
                    ]\n\
                    [[balancer.member]]\n\
                    url = \"http://a\"\n\
                    route = \"n\"\n";
        assert_eq!(
            check(text),
            [
                "7:balancer.cookie_key_files[0]",
                "8:balancer.cookie_key_files[1]"
            ]
        );
    }

    #[test]
    fn every_mistake_is_named_at_its_own_line() {
        let text = "[server]\n\
                    listen = \"nowhere\"\n\
                    server_name = \"lb.test\"\n\
                    header_read_timeout = \"0s\"\n\
                    color = \"blue\"\n\
                    \n\
                    [balancer]\n\
                    name = \"b\"\n\
                    maxattempts = 100000\n\
                    cookie_key_file = \"/no/such/key\"\n\
                    \n\
                    [[balancer.member]]\n\
                    url = \"ftp://a\"\n\
                    route = \"node1\"\n\
                    loadfactor = 0\n\
                    \n\
                    [[balancer.member]]\n\
                    url = \"http://b\"\n\
                    route = \"node1\"\n\
                    \n\
                    [balancer.health]\n\
                    method = \"TCP\"\n\
                    expect = \"200\"\n";
        assert_eq!(
            check(text),
            [
                "2:server.listen",
                "4:server.header_read_timeout",
                "5:server.color",
                "9:balancer.maxattempts",
                "10:balancer.cookie_key_file",
                "13:balancer.member[0].url",
                "15:balancer.member[0].loadfactor",
                "19:balancer.member[1].route",
                "22:balancer.health.method",
            ]
        );
    }

    #[test]
    fn a_good_file_has_none_and_a_syntax_error_stops_the_reading() {
        let good = "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb.test\"\n\n\
                    [balancer]\nname = \"b\"\n[[balancer.member]]\nurl = \"http://a\"\nroute = \"n1\"\n";
        assert!(check(good).is_empty());
        let broken = good.replace("name = \"b\"", "name = \"b\nx = [");
        assert_eq!(check(&broken).len(), 1);
        // a missing key is said once, not followed by what it would have caused
        let missing = good.replace("url = \"http://a\"\n", "");
        assert_eq!(check(&missing), ["7:balancer.member[0]"]);
    }
}
