//! Members from a file that is read again whenever it changes.
//!
//! Why a file: deployment tools (Ansible, Puppet, a sidecar rendering a template from
//! Consul or Kubernetes) are good at writing a file and bad at calling an API. The file uses
//! the member syntax of the balancer's own configuration, so a member moves from one to the
//! other unchanged:
//!
//! ```toml
//! [[member]]
//! url = "https://abc.com:9443"
//! route = "node1"
//! loadfactor = 2
//!
//! [[member]]
//! url = "https://xyz.com:9444"
//! route = "node2"
//! status = "+H"
//! ```
//!
//! The file is checked for changes every poll interval (default 1 s; polling works on every
//! file system, including the bind mounts and config maps that inotify misses). A file that
//! is unreadable, invalid, half-written or names no member changes nothing: the last good
//! membership stays, and the error, with its line and key, is logged once per change. A
//! member whose route leaves the file drains (sticky sessions stay, new ones go elsewhere)
//! for the drain period before it is removed; requests in flight to it finish either way.
//! Write the file by renaming a complete temporary file over it, so a reader never sees half
//! of it; a half-written file that happens to be valid TOML cannot be told from a real one.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_core::Stream;
use serde::Deserialize;
use tower::discover::Change;
use tower_balancer::registry::{Discovery, MemberId, MemberSpec, Registry};

use super::error::{parse_toml, ConfigError};
use super::file::MemberSection;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersToml {
    #[serde(rename = "member", default)]
    members: Vec<MemberSection>,
}

/// A members file, watched for changes.
///
/// The file uses the member syntax of the balancer's own configuration file, so a member
/// moves from one to the other unchanged:
///
/// ```toml
/// [[member]]
/// url = "https://abc.com:9443"
/// route = "node1"
/// loadfactor = 2
///
/// [[member]]
/// url = "https://xyz.com:9444"
/// route = "node2"
/// status = "+H"
/// ```
///
/// It is checked for changes every poll interval (default 1 s). A file that is unreadable,
/// invalid, half-written or names no member changes nothing: the last good membership stays,
/// and the error, with its line and key, is logged once per change. A member whose route
/// leaves the file drains for the drain period before it is removed; requests in flight to it
/// finish either way. Write the file by renaming a complete temporary file over it.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tower_balancer::registry::Registry;
/// use tower_balancer_proxy::config::MembersFile;
///
/// let registry = Registry::new();
/// let file = MembersFile::new("/etc/lb/members.toml");
/// let start = file.read()?;
/// for spec in &start {
///     registry.insert(spec.clone())?; // the members at start, checked now
/// }
/// // the watch starts from them: a member the file drops before its first poll drains too
/// tokio::spawn(file.starting_from(start).run(&registry, Duration::from_secs(30)));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MembersFile {
    path: PathBuf,
    interval: Duration,
    known: BTreeMap<MemberId, MemberSpec>,
}

impl MembersFile {
    /// Watches `path`, polling every second.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            interval: Duration::from_secs(1),
            known: BTreeMap::new(),
        }
    }

    /// Starts the watch from `members`, the ones already put in the registry from this file
    /// (what [`read`](Self::read) gave): the first poll then announces what changed since,
    /// removes included. Without it, the first poll announces the whole file and a member
    /// that left it in between stays.
    #[must_use]
    pub fn starting_from(mut self, members: impl IntoIterator<Item = MemberSpec>) -> Self {
        self.known = members.into_iter().map(|s| (s.id().clone(), s)).collect();
        self
    }

    /// The members the watch starts from.
    pub(crate) fn known(&self) -> &BTreeMap<MemberId, MemberSpec> {
        &self.known
    }

    /// Polls every `interval` instead.
    #[must_use]
    pub const fn poll_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The file watched.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and checks the file once.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, the line and the key: unreadable, not TOML, an
    /// unknown key, a bad value, a route used twice, or no member at all.
    pub fn read(&self) -> Result<Vec<MemberSpec>, ConfigError> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| ConfigError::file(&self.path, format!("cannot read the file: {e}")))?;
        parse(&text, &self.path)
    }

    /// The changes the file announces, forever: inserts for new or changed members, removes
    /// for members that left it, and an error (which changes nothing) when a changed file is
    /// refused. The first poll announces the whole file.
    pub fn into_stream(
        self,
    ) -> impl Stream<Item = Result<Change<MemberId, MemberSpec>, ConfigError>> + Send + 'static
    {
        let known = self.known.clone();
        let state = Watch {
            file: self,
            last_text: None,
            known,
            pending: std::collections::VecDeque::new(),
            first: true,
        };
        futures_util::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(item) = st.pending.pop_front() {
                    return Some((item, st));
                }
                if !st.first {
                    tokio::time::sleep(st.file.interval).await;
                }
                st.first = false;
                st.poll().await;
            }
        })
    }

    /// Applies the file to `registry` for as long as the future runs, draining members that
    /// left it for `drain` before removing them.
    pub fn run(
        self,
        registry: &Registry,
        drain: Duration,
    ) -> Discovery<
        impl Stream<Item = Result<Change<MemberId, MemberSpec>, ConfigError>> + Send + 'static,
    > {
        registry.discover(self.into_stream()).drain_removed(drain)
    }
}

struct Watch {
    file: MembersFile,
    last_text: Option<String>,
    known: BTreeMap<MemberId, MemberSpec>,
    pending: std::collections::VecDeque<Result<Change<MemberId, MemberSpec>, ConfigError>>,
    first: bool,
}

impl Watch {
    async fn poll(&mut self) {
        let path = self.file.path.clone();
        let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(path)).await;
        let text = match read {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => {
                self.last_text = None;
                self.pending.push_back(Err(ConfigError::file(
                    &self.file.path,
                    format!("cannot read the file: {e}; keeping the last good members"),
                )));
                return;
            }
            Err(_) => return,
        };
        if self.last_text.as_deref() == Some(text.as_str()) {
            return;
        }
        let parsed = parse(&text, &self.file.path);
        self.last_text = Some(text);
        let specs = match parsed {
            Ok(specs) => specs,
            Err(e) => {
                self.pending.push_back(Err(e));
                return;
            }
        };
        let mut next = BTreeMap::new();
        for spec in specs {
            let id = spec.id().clone();
            if self.known.get(&id) != Some(&spec) {
                self.pending
                    .push_back(Ok(Change::Insert(id.clone(), spec.clone())));
            }
            next.insert(id, spec);
        }
        for id in self.known.keys() {
            if !next.contains_key(id) {
                self.pending.push_back(Ok(Change::Remove(id.clone())));
            }
        }
        self.known = next;
    }
}

/// The members `text` names, checked as the balancer's own file checks them.
fn parse(text: &str, path: &Path) -> Result<Vec<MemberSpec>, ConfigError> {
    let file: MembersToml = parse_toml(text, path)?;
    if file.members.is_empty() {
        return Err(ConfigError::file(
            path,
            "the file names no member ([[member]] tables); keeping the last good members",
        ));
    }
    let mut seen = HashSet::new();
    let mut specs = Vec::with_capacity(file.members.len());
    for (i, m) in file.members.into_iter().enumerate() {
        let span = Some(m.route.span());
        let key = |leaf: &str| Some(format!("member[{i}].{leaf}"));
        let id = m.route.get_ref().id().clone();
        if !seen.insert(id.clone()) {
            return Err(ConfigError::at(
                path,
                text,
                span,
                key("route"),
                format!("route `{id}` is used by two members"),
            ));
        }
        if !m.resolve.is_empty() {
            return Err(ConfigError::at(
                path,
                text,
                span,
                key("resolve"),
                "`resolve` belongs in the balancer's configuration file, not in a members file",
            ));
        }
        specs.push(
            MemberSpec::new(id, m.url)
                .weight(m.loadfactor)
                .priority(m.lbset)
                .state(m.status)
                .max_in_flight(m.max),
        );
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_with_the_balancer_file_syntax() {
        let text = "[[member]]\nurl = \"http://127.0.0.1:9763\"\nroute = \"node1\"\nloadfactor = 2\n\n[[member]]\nurl = \"http://127.0.0.1:9764\"\nroute = \"node2\"\nstatus = \"+H\"\nlbset = 1\nmax = 8\n";
        let specs = parse(text, Path::new("m.toml")).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].id().as_str(), "node1");
        assert_eq!((specs[0].max(), specs[1].max()), (0, 8));
        assert_eq!(specs[1].endpoint(), "http://127.0.0.1:9764/");
    }

    #[test]
    fn bad_files_name_the_line_and_key() {
        let cases = [
            ("[[member]]\nurl = \"http://a\"\nroute = \"node1\"\n[[member]]\nurl = \"http://b\"\nroute = \"node1\"\n", Some(6), "member[1].route"),
            ("[[member]]\nurl = \"ftp://a\"\nroute = \"node1\"\n", Some(2), "member[0].url"),
            ("[[member]]\nurl = \"http://a\"\nroute = \"node 1\"\n", Some(3), "member[0].route"),
            ("[[member]]\nurl = \"http://a\"\nroute = \"n\"\nweight = 3\n", Some(4), "member[0].weight"),
            ("[[member]]\nurl = \"http://a\"\nroute = \"n\"\nmax = -1\n", Some(4), "member[0].max"),
        ];
        for (text, line, key) in cases {
            let e = parse(text, Path::new("m.toml")).unwrap_err();
            assert_eq!((e.line(), e.key()), (line, Some(key)), "{e}");
        }
        // half-written: cut in the middle of a value
        let e = parse(
            "[[member]]\nurl = \"http://a\"\nroute = \"no",
            Path::new("m.toml"),
        )
        .unwrap_err();
        assert_eq!(e.line(), Some(3), "{e}");
        let e = parse("# nothing yet\n", Path::new("m.toml")).unwrap_err();
        assert!(e.to_string().contains("names no member"), "{e}");
    }
}
