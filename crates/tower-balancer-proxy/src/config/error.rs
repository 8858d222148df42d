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

/// Where `key` (`balancer.health.expect`) is written in `text`: its line under its table's
/// header, or the header itself. Only for errors about values read without a span.
pub(super) fn find_key(text: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let (table, leaf) = key.rsplit_once('.').unwrap_or(("", key));
    let is_header = |line: &str| line.trim_start().starts_with('[');
    let mut offset = 0;
    let mut in_table = table.is_empty();
    let mut header_at = None;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if is_header(t) {
            let name = t.trim_matches(|c| c == '[' || c == ']').trim();
            in_table = name == table;
            if in_table && header_at.is_none() {
                header_at = Some(offset..offset + line.len());
            }
            // the key may itself be a table
            if name == key {
                return Some(offset..offset + line.len());
            }
        } else if in_table
            && t.strip_prefix(leaf)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            return Some(offset..offset + line.len());
        }
        offset += line.len();
    }
    header_at
}

/// Parses `text` (read from `path`) as `T`; an error names the line and the dotted key.
pub(super) fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<T, ConfigError> {
    let de = toml::Deserializer::parse(text)
        .map_err(|e| ConfigError::at(path, text, e.span(), None, e.message()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        ConfigError::at(path, text, inner.span(), Some(key), inner.message())
    })
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
