//! Configuration errors: each names the file, the line and the key, so an operator can go
//! straight to the mistake.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A configuration file that could not be read, parsed or turned into a balancer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    file: PathBuf,
    line: Option<usize>,
    key: Option<String>,
    message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigError {
    /// An error about `file` as a whole (unreadable, say).
    pub(crate) fn file(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: None,
            key: None,
            message: message.into(),
        }
    }

    /// An error at `span` of `text`, about `key`.
    pub(crate) fn at(
        file: &Path,
        text: &str,
        span: Option<Range<usize>>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_path_buf(),
            line: span.map(|s| line_of(text, s.start)),
            key: key.filter(|k| !k.is_empty() && k != "."),
            message: message.into(),
        }
    }

    /// The same error, saying after its message where it came from (`note`).
    #[must_use]
    pub(crate) fn noting(mut self, note: &str) -> Self {
        self.message = format!("{} ({note})", self.message);
        self
    }

    /// The file the error is in.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The 1-based line, when the error has one.
    #[must_use]
    pub const fn line(&self) -> Option<usize> {
        self.line
    }

    /// The key, dotted from the top (`balancer.member[1].url`), when the error has one.
    #[must_use]
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// What is wrong.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The 1-based line holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Where `key` (`balancer.member[1].route`, `balancer.dns`) is written in `text`, found by
/// the TOML parser itself: the key's own span, or its nearest written parent's when the key is
/// missing (a rule about an absent key points at its table). For errors raised after the file
/// was read, about values that carry no span of their own.
pub(super) fn locate(text: &str, key: &str) -> Option<Range<usize>> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut found = None;
    for segment in key.split('.') {
        let (name, index) = match segment.split_once('[') {
            Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let Some((k, v)) = table.iter().find(|(k, _)| &**k.get_ref() == name) else {
            break;
        };
        found = Some(k.span());
        let value = match (v.get_ref(), index) {
            (DeValue::Array(items), Some(i)) => match items.get(i) {
                Some(item) => {
                    found = Some(item.span());
                    item.get_ref()
                }
                None => break,
            },
            (other, _) => other,
        };
        match value {
            DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    found
}

/// Parses `text` (read from `path`) as `T`; an error names the line and the dotted key.
pub(super) fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<T, ConfigError> {
    parse_toml_spanned(text, path).map_err(|(e, _)| e)
}

/// As [`parse_toml`], with the span of `text` the error is about, when it has one.
pub(super) fn parse_toml_spanned<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<T, (ConfigError, Option<Range<usize>>)> {
    let de = toml::Deserializer::parse(text).map_err(|e| {
        let message = match e.span().and_then(|s| text.get(s)) {
            // toml names no key: the span holds it
            Some(key) if e.message().starts_with("duplicate key") => {
                format!("`{key}` is given twice")
            }
            _ => e.message().to_owned(),
        };
        // a syntax error: nothing after it can be read
        (ConfigError::at(path, text, e.span(), None, message), None)
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        // `Spanned` values add a private segment to the path: the key is the value's
        let key = e.path().to_string();
        let key = key
            .split('.')
            .filter(|s| !s.starts_with("$__"))
            .collect::<Vec<_>>()
            .join(".");
        let inner = e.into_inner();
        let span = inner.span();
        let err = ConfigError::at(
            path,
            text,
            span.clone(),
            Some(key),
            plain_words(inner.message()),
        );
        (err, span)
    })
}

/// serde's words for a wrong type, in an operator's words.
fn plain_words(message: &str) -> String {
    const WORDS: [(&str, &str); 9] = [
        ("expected usize", "expected a whole number, not negative"),
        ("expected u64", "expected a whole number, not negative"),
        ("expected u32", "expected a whole number, not negative"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        (
            "invalid type: map, expected a sequence",
            "expected a list: write [[table]] (two brackets) for each entry, or [ ... ]",
        ),
    ];
    let mut out = message.to_owned();
    // toml reads an integer past 64 bits as an i128, and serde names that type
    if let Some(rest) = out.strip_prefix("invalid type: integer ") {
        if let Some((n, after)) = rest.split_once(" as i128") {
            out = format!("integer {n} is too large{after}");
        }
    }
    for (from, to) in WORDS {
        out = out.replace(from, to);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_from_one() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a", 99), 1);
    }

    #[test]
    fn keys_are_located_by_the_parser() {
        let text = "[server]\nlisten = 1\n\n[balancer]\nname = \"x\"\n\n[[balancer.member]]\nroute = \"a\"\n\n[[balancer.member]]\n# note\nroute = \"b\"\n\n[balancer.dns]\nsrv = \"s\"\n";
        let line = |key: &str| locate(text, key).map(|s| line_of(text, s.start));
        assert_eq!(line("server.listen"), Some(2));
        assert_eq!(line("balancer.name"), Some(5));
        assert_eq!(line("balancer.member[1].route"), Some(12));
        assert_eq!(line("balancer.dns"), Some(14));
        // a key not written points at its table
        assert_eq!(line("balancer.dns.name"), Some(14));
        assert_eq!(line("nowhere"), None);
        assert_eq!(locate("not = [toml", "not"), None);
    }

    #[test]
    fn display_names_file_line_and_key() {
        let e = ConfigError::at(
            Path::new("lb.toml"),
            "x\ny = 1\n",
            Some(2..3),
            Some("balancer.y".into()),
            "bad",
        );
        assert_eq!(e.to_string(), "lb.toml:2: `balancer.y`: bad");
    }
}
