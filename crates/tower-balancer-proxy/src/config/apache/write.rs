//! The imported file, written as TOML with a comment for what each line came from and a
//! list of what was not carried and why.

use std::fmt::Write as _;

/// One `key = value` line; `value` is already TOML.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    key: String,
    value: String,
    comment: String,
}

/// A table and its lines.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    pub(crate) header: String,
    pub(crate) comment: String,
    pub(crate) lines: Vec<Line>,
}

impl Table {
    pub(crate) fn new(header: &str, comment: impl Into<String>) -> Self {
        Self {
            header: header.to_owned(),
            comment: comment.into(),
            lines: Vec::new(),
        }
    }

    /// Sets `key` (replacing an earlier value) to a TOML value, with where it came from.
    pub(crate) fn set(&mut self, key: &str, value: String, from: impl Into<String>) {
        self.lines.retain(|l| l.key != key);
        self.lines.push(Line {
            key: key.to_owned(),
            value,
            comment: from.into(),
        });
    }

    pub(crate) fn remove(&mut self, key: &str) {
        self.lines.retain(|l| l.key != key);
    }

    /// The TOML value of `key`, as written.
    pub(crate) fn value(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|l| l.key == key)
            .map(|l| l.value.as_str())
    }

    /// The comment written beside `key`: where its value came from.
    pub(crate) fn comment(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|l| l.key == key)
            .map(|l| l.comment.as_str())
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.lines.iter().any(|l| l.key == key)
    }

    fn render(&self, out: &mut String) {
        let _ = write!(out, "\n{}", self.header);
        if !self.comment.is_empty() {
            let _ = write!(out, "  # {}", one_line(&self.comment));
        }
        out.push('\n');
        for l in &self.lines {
            let _ = write!(out, "{} = {}", l.key, l.value);
            if !l.comment.is_empty() {
                let _ = write!(out, "  # {}", one_line(&l.comment));
            }
            out.push('\n');
        }
    }
}

/// A TOML basic string. Written here: the `toml` crate writes values only with its `display`
/// feature (another crate to build) and this project only reads TOML.
pub(crate) fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A list of TOML strings.
pub(crate) fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// Text for a comment: one line, runs of spaces and control characters made one space.
fn one_line(s: &str) -> String {
    let spaced: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The whole file: a heading, what was not carried, then the tables in order.
pub(crate) fn render(source: &str, tables: &[Table], not_carried: &[String]) -> String {
    let mut out = format!(
        "# tower-balancer configuration imported from {}\n\
         # by `tower-balancer import-apache`. Check it with `tower-balancer --check FILE`.\n",
        one_line(source)
    );
    if !not_carried.is_empty() {
        out.push_str("#\n# Not carried from Apache's configuration, and why:\n");
        for n in not_carried {
            let _ = writeln!(out, "#   {}", one_line(n));
        }
    }
    for t in tables {
        t.render(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_toml_strings() {
        assert_eq!(q(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(q("x\u{1}"), "\"x\\u0001\"");
        assert_eq!(list(&["a".into(), "b".into()]), r#"["a", "b"]"#);
        let mut t = Table::new("[server]", "<VirtualHost *:443>");
        t.set("listen", q("0.0.0.0:443"), "Listen");
        t.set("listen", q("0.0.0.0:8443"), "again\nforged = 1");
        let text = render("a\nb", &[t], &["x:1 `Foo`: why".into()]);
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["server"]["listen"].as_str(), Some("0.0.0.0:8443"));
        assert!(!text.contains("\nforged"), "{text}");
        assert!(!text.contains("\nb"), "{text}");
    }
}
