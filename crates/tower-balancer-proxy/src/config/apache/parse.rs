//! Apache's configuration syntax: directives, `<Section>`s and `Include`, into a tree.
//!
//! Why our own reader: no maintained crate reads httpd.conf, and the syntax is small — one
//! directive a line, `\` continuing a line, `#` starting a comment line, arguments split on
//! spaces unless quoted, `<Name args>` … `</Name>` sections — plus `Include` and
//! `IncludeOptional` with wildcards, read in place as Apache does.

use std::path::{Path, PathBuf};

/// The most files `Include` may pull in (a loop of includes stops here).
const MAX_FILES: usize = 256;

/// The most bytes one file may have.
const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// A directive or a section, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directive {
    /// As written (`ProxyPass`); compare with `eq_ignore_ascii_case`.
    pub(crate) name: String,
    pub(crate) args: Vec<String>,
    /// The directives inside, for a section.
    pub(crate) body: Option<Vec<Directive>>,
    /// `file:line`.
    pub(crate) at: String,
    /// The line as written, for comments about it.
    pub(crate) text: String,
}

impl Directive {
    /// Whether this is `name` (Apache's names are case-insensitive).
    pub(crate) fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// Why a file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApacheSyntaxError {
    /// A file could not be read.
    #[error("{0}: {1}")]
    Read(String, String),
    /// A section was opened and not closed, or closed and not opened.
    #[error("{at}: {why}")]
    Sections {
        /// `file:line`.
        at: String,
        /// What is wrong.
        why: String,
    },
    /// A quoted argument has no closing quote.
    #[error("{0}: a quote is not closed")]
    Quote(String),
    /// Too many files or bytes.
    #[error("{0}")]
    TooMuch(String),
}

/// Reads `path` and every file it includes into one tree, and Apache's `ServerRoot`, against
/// which relative `Include` paths are taken (the first file's directory when the file does
/// not set it).
pub(crate) fn read_tree(path: &Path) -> Result<(Vec<Directive>, PathBuf), ApacheSyntaxError> {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut reader = Reader {
        root: base.clone(),
        base,
        files: 0,
    };
    let tree = reader.file(path)?;
    Ok((tree, reader.root))
}

struct Reader {
    root: PathBuf,
    base: PathBuf,
    files: usize,
}

impl Reader {
    /// The text of the file at `path`, refused past the limits on files and bytes.
    fn read(&mut self, path: &Path) -> Result<String, ApacheSyntaxError> {
        self.files += 1;
        if self.files > MAX_FILES {
            return Err(ApacheSyntaxError::TooMuch(format!(
                "more than {MAX_FILES} files included (an Include loop?)"
            )));
        }
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path)
            .map_err(|e| ApacheSyntaxError::Read(shown.clone(), e.to_string()))?;
        if !meta.is_file() {
            return Err(ApacheSyntaxError::Read(
                shown,
                "not a regular file (a directory or a device)".into(),
            ));
        }
        let size = meta.len();
        if size > MAX_BYTES {
            return Err(ApacheSyntaxError::TooMuch(format!(
                "{shown} is {size} bytes, more than {MAX_BYTES}"
            )));
        }
        let bytes =
            std::fs::read(path).map_err(|e| ApacheSyntaxError::Read(shown, e.to_string()))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The directives of the file at `path`, sections nested and `Include`s read in place.
    fn file(&mut self, path: &Path) -> Result<Vec<Directive>, ApacheSyntaxError> {
        let text = self.read(path)?;
        let shown = path.display().to_string();
        let mut stack: Vec<(Directive, Vec<Directive>)> = Vec::new();
        let mut top = Vec::new();
        for (line_no, line) in logical_lines(&text) {
            let at = format!("{shown}:{line_no}");
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if let Some(name) = trimmed.strip_prefix("</") {
                let done = close(&mut stack, name.trim_end_matches('>').trim(), at)?;
                push(&mut stack, &mut top, done);
                continue;
            }
            if let Some(open) = trimmed.strip_prefix('<') {
                let open = open.strip_suffix('>').unwrap_or(open);
                let words = split_args(open).map_err(|()| ApacheSyntaxError::Quote(at.clone()))?;
                let Some((name, args)) = words.split_first() else {
                    continue;
                };
                stack.push((
                    Directive {
                        name: name.clone(),
                        args: args.to_vec(),
                        body: None,
                        at,
                        text: trimmed.to_owned(),
                    },
                    Vec::new(),
                ));
                continue;
            }
            let words = split_args(trimmed).map_err(|()| ApacheSyntaxError::Quote(at.clone()))?;
            let Some((name, args)) = words.split_first() else {
                continue;
            };
            let d = Directive {
                name: name.clone(),
                args: args.to_vec(),
                body: None,
                at,
                text: trimmed.to_owned(),
            };
            if d.is("ServerRoot") {
                if let Some(r) = d.args.first() {
                    // a relative ServerRoot is taken from the first file's directory
                    self.root = self.base.join(r);
                }
            }
            if d.is("Include") || d.is("IncludeOptional") {
                let optional = d.is("IncludeOptional");
                for included in self.expand(&d, optional)? {
                    for inner in self.file(&included)? {
                        push(&mut stack, &mut top, inner);
                    }
                }
                continue;
            }
            push(&mut stack, &mut top, d);
        }
        if let Some((open, _)) = stack.pop() {
            return Err(ApacheSyntaxError::Sections {
                at: open.at.clone(),
                why: format!("<{}> is never closed", open.name),
            });
        }
        Ok(top)
    }

    /// The files an `Include` names, in name order; a wildcard in the last part only.
    fn expand(&self, d: &Directive, optional: bool) -> Result<Vec<PathBuf>, ApacheSyntaxError> {
        let Some(pattern) = d.args.first() else {
            return Ok(Vec::new());
        };
        let path = self.root.join(pattern);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.contains(['*', '?']) {
            if !path.exists() && optional {
                return Ok(Vec::new());
            }
            return Ok(vec![path]);
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut found: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|f| wildcard(&name, &f.to_string_lossy()))
                })
                .collect(),
            Err(_) if optional => Vec::new(),
            Err(e) => {
                return Err(ApacheSyntaxError::Read(
                    dir.display().to_string(),
                    e.to_string(),
                ))
            }
        };
        found.sort();
        Ok(found)
    }
}

/// Closes the innermost open section, which must be `name`.
fn close(
    stack: &mut Vec<(Directive, Vec<Directive>)>,
    name: &str,
    at: String,
) -> Result<Directive, ApacheSyntaxError> {
    let Some((open, body)) = stack.pop() else {
        return Err(ApacheSyntaxError::Sections {
            at,
            why: format!("</{name}> closes no section"),
        });
    };
    if !open.is(name) {
        return Err(ApacheSyntaxError::Sections {
            at,
            why: format!("</{name}> closes <{}> ({})", open.name, open.at),
        });
    }
    Ok(Directive {
        body: Some(body),
        ..open
    })
}

fn push(stack: &mut [(Directive, Vec<Directive>)], top: &mut Vec<Directive>, d: Directive) {
    match stack.last_mut() {
        Some((_, body)) => body.push(d),
        None => top.push(d),
    }
}

/// Lines joined where one ends in `\`, each with the number of its first line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let (start, mut acc) = current.take().unwrap_or((i + 1, String::new()));
        match line.strip_suffix('\\') {
            Some(part) => {
                acc.push_str(part);
                acc.push(' ');
                current = Some((start, acc));
            }
            None => {
                acc.push_str(line);
                out.push((start, acc));
            }
        }
    }
    if let Some(last) = current {
        out.push(last);
    }
    out
}

/// Splits on spaces, keeping `"quoted words"` (and `'…'`) whole, quotes removed and `\"`
/// read as `"`.
pub(crate) fn split_args(line: &str) -> Result<Vec<String>, ()> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' || c == '\'' {
            chars.next();
            let mut closed = false;
            while let Some(ch) = chars.next() {
                if ch == '\\' && chars.peek() == Some(&c) {
                    word.push(c);
                    chars.next();
                } else if ch == c {
                    closed = true;
                    break;
                } else {
                    word.push(ch);
                }
            }
            if !closed {
                return Err(());
            }
        } else {
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() {
                    break;
                }
                word.push(ch);
                chars.next();
            }
        }
        out.push(word);
    }
    Ok(out)
}

/// `*` and `?` wildcards against a whole name.
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_split_on_spaces_and_quotes() {
        assert_eq!(
            split_args(
                r#"Header add Set-Cookie "ROUTEID=.%{BALANCER_WORKER_ROUTE}e; path=/" env=X"#
            )
            .unwrap(),
            [
                "Header",
                "add",
                "Set-Cookie",
                "ROUTEID=.%{BALANCER_WORKER_ROUTE}e; path=/",
                "env=X"
            ]
        );
        assert_eq!(split_args(r#"A "b \"c\" d""#).unwrap(), ["A", r#"b "c" d"#]);
        assert!(split_args(r#"A "open"#).is_err());
    }

    #[test]
    fn wildcards_match_whole_names() {
        assert!(wildcard("*.conf", "a.conf"));
        assert!(!wildcard("*.conf", "a.conf.bak"));
        assert!(wildcard("site-?.conf", "site-1.conf"));
        assert!(wildcard("*", "x"));
    }

    #[test]
    fn sections_nest_and_includes_are_read_in_place() {
        let dir = std::env::temp_dir().join(format!("apache-parse-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sites")).unwrap();
        std::fs::write(
            dir.join("httpd.conf"),
            "Listen 443\n# a comment\nInclude sites/*.conf\nIncludeOptional missing/*.conf\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("sites/a.conf"),
            "<VirtualHost *:443>\n  ServerName wso2.com\n  <Proxy \"balancer://b\">\n    BalancerMember https://abc.com:9443 \\\n      route=node1\n  </Proxy>\n</VirtualHost>\n",
        )
        .unwrap();
        let (tree, _) = read_tree(&dir.join("httpd.conf")).unwrap();
        assert_eq!(tree.len(), 2);
        let vhost = &tree[1];
        assert!(vhost.is("virtualhost"));
        let body = vhost.body.as_ref().unwrap();
        let proxy = body[1].body.as_ref().unwrap();
        assert_eq!(proxy[0].args, ["https://abc.com:9443", "route=node1"]);
        assert!(proxy[0].at.ends_with("a.conf:4"), "{}", proxy[0].at);
        std::fs::write(dir.join("bad.conf"), "<Proxy x>\n</VirtualHost>\n").unwrap();
        let e = read_tree(&dir.join("bad.conf")).unwrap_err();
        assert!(e.to_string().contains("closes <Proxy>"), "{e}");
        std::fs::write(dir.join("loop.conf"), "Include loop.conf\n").unwrap();
        let e = read_tree(&dir.join("loop.conf")).unwrap_err();
        assert!(e.to_string().contains("Include loop"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
