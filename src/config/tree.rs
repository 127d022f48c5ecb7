//! A small spanned document tree built from the TOML parser's output.
//!
//! The schema walker works on this tree instead of deserializing straight into
//! typed structs, because serde stops at the first error while `vxrouter check`
//! must report every problem in a file, each with its position. Invariant:
//! every node has a span; nodes the parser gives no span (implicit tables such
//! as `hosts` in `[hosts.x]`) inherit the span of the key that names them.

use std::ops::Range;

/// Byte range into the file text.
pub(crate) type Span = Range<usize>;

/// A TOML value with the byte span it came from.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) span: Span,
    pub(crate) kind: Kind,
}

/// The TOML value kinds.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Str(String),
    Int(i64),
    Float,
    Bool(bool),
    Datetime,
    Array(Vec<Node>),
    Table(Vec<Entry>),
}

/// One `key = value` of a table.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) key_span: Span,
    pub(crate) value: Node,
}

impl Kind {
    /// The TOML name of this kind, for "expected X, found Y" messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Kind::Str(_) => "a string",
            Kind::Int(_) => "an integer",
            Kind::Float => "a float",
            Kind::Bool(_) => "a boolean",
            Kind::Datetime => "a date-time",
            Kind::Array(_) => "an array",
            Kind::Table(_) => "a table",
        }
    }
}

/// Parses `text`; on a syntax error returns its message and span. The
/// message always says what is wrong, even where the parser's own is empty.
pub(crate) fn parse(text: &str) -> Result<Node, (String, Span)> {
    let doc = toml_edit::ImDocument::parse(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        // A control character is an error wherever it stands, and the
        // parser stops at it with a message about what it expected there
        // (or none at all, in a comment): name the character instead.
        if let Some((at, c)) = forbidden_char(text) {
            if at <= span.start {
                return (forbidden_message(c), at..at + c.len_utf8());
            }
        }
        // The parser's message repeats the position and a source excerpt over
        // several lines; keep the part that says what is wrong.
        let message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        if message.is_empty() {
            let found = match text.get(span.start..).and_then(|t| t.chars().next()) {
                Some(c) => format!("unexpected {c:?}"),
                None => "unexpected end of file".to_string(),
            };
            return (format!("invalid TOML: {found}"), span);
        }
        (message, span)
    })?;
    Ok(table(doc.as_table(), 0..0))
}

/// The first character TOML allows nowhere, with its byte offset: a control
/// character other than tab and the line ends LF and CRLF (TOML 1.0:
/// "Control characters other than tab (U+0000 to U+0008, U+000A to U+001F,
/// U+007F) are not permitted in comments", nor unescaped in strings, nor
/// anywhere else).
fn forbidden_char(text: &str) -> Option<(usize, char)> {
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let bad = match c {
            '\t' | '\n' => false,
            '\r' => chars.peek().map(|&(_, n)| n) != Some('\n'),
            _ => c.is_ascii_control(),
        };
        if bad {
            return Some((i, c));
        }
    }
    None
}

fn forbidden_message(c: char) -> String {
    if c == '\r' {
        return "a carriage return (U+000D) not followed by a line feed: a line ends with LF or CRLF".to_string();
    }
    format!(
        "control character U+{0:04X} is not allowed in a TOML file: only tab is, and in a string write it as \\u{0:04X}",
        u32::from(c)
    )
}

fn table(t: &toml_edit::Table, fallback: Span) -> Node {
    let span = t.span().unwrap_or(fallback);
    let entries = t
        .iter()
        .filter_map(|(k, _)| t.get_key_value(k))
        .map(|(key, item)| {
            let key_span = key.span().unwrap_or_else(|| span.clone());
            Entry {
                key: key.get().to_string(),
                value: self::item(item, key_span.clone()),
                key_span,
            }
        })
        .collect();
    Node {
        span,
        kind: Kind::Table(entries),
    }
}

fn item(i: &toml_edit::Item, fallback: Span) -> Node {
    match i {
        toml_edit::Item::Value(v) => value(v, fallback),
        toml_edit::Item::Table(t) => table(t, fallback),
        toml_edit::Item::ArrayOfTables(a) => {
            let span = a.span().unwrap_or_else(|| fallback.clone());
            let elems = a.iter().map(|t| table(t, span.clone())).collect();
            Node {
                span,
                kind: Kind::Array(elems),
            }
        }
        // `None` never comes out of the parser; an empty table is the closest.
        toml_edit::Item::None => Node {
            span: fallback,
            kind: Kind::Table(Vec::new()),
        },
    }
}

fn value(v: &toml_edit::Value, fallback: Span) -> Node {
    let span = v.span().unwrap_or_else(|| fallback.clone());
    let kind = match v {
        toml_edit::Value::String(s) => Kind::Str(s.value().clone()),
        toml_edit::Value::Integer(n) => Kind::Int(*n.value()),
        toml_edit::Value::Float(_) => Kind::Float,
        toml_edit::Value::Boolean(b) => Kind::Bool(*b.value()),
        toml_edit::Value::Datetime(_) => Kind::Datetime,
        toml_edit::Value::Array(a) => {
            Kind::Array(a.iter().map(|e| value(e, span.clone())).collect())
        }
        toml_edit::Value::InlineTable(t) => Kind::Table(
            t.iter()
                .filter_map(|(k, _)| t.get_key_value(k))
                .map(|(key, item)| {
                    let key_span = key.span().unwrap_or_else(|| span.clone());
                    Entry {
                        key: key.get().to_string(),
                        value: self::item(item, key_span.clone()),
                        key_span,
                    }
                })
                .collect(),
        ),
    };
    Node { span, kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_values_and_keys() {
        let text = "[a]\nx = 5\n[[b]]\ny = \"s\"\n";
        let root = parse(text).unwrap();
        let Kind::Table(top) = &root.kind else {
            panic!()
        };
        assert_eq!(top[0].key, "a");
        let Kind::Table(a) = &top[0].value.kind else {
            panic!()
        };
        assert_eq!(&text[a[0].key_span.clone()], "x");
        assert_eq!(&text[a[0].value.span.clone()], "5");
        let Kind::Array(b) = &top[1].value.kind else {
            panic!()
        };
        assert!(text[b[0].span.clone()].starts_with("[[b]]"));
    }

    #[test]
    fn implicit_tables_get_a_span() {
        let text = "[p.q]\nz = 1\n";
        let root = parse(text).unwrap();
        let Kind::Table(top) = &root.kind else {
            panic!()
        };
        let p = &top[0].value;
        assert_eq!(&text[p.span.clone()], "p");
    }

    #[test]
    fn control_characters_are_named_where_they_stand() {
        for (text, at) in [
            ("# a\u{1}b\n", 3),
            ("[overlay]\nvni = 1 # \u{0}\n", 20),
            ("a = \"x\u{1b}[31m\"\n", 6),
            ("a = 'x\u{7f}'\n", 6),
            ("a = \"\"\"\nx\n\u{1}\"\"\"\n", 10),
            ("\u{1}", 0),
        ] {
            let (msg, span) = parse(text).unwrap_err();
            assert_eq!(span.start, at, "{text:?}: {msg}");
            assert!(msg.starts_with("control character U+00"), "{text:?}: {msg}");
        }
        let (msg, span) = parse("a = 1\rb = 2\n").unwrap_err();
        assert_eq!(span.start, 5);
        assert!(msg.contains("carriage return"), "{msg}");
        // CRLF line ends and tabs are fine.
        parse("a = 1\r\n\tb = \"\tx\"\r\n").unwrap();
        // An error before a control character is still the parser's.
        let (msg, span) = parse("a = = 1\n# \u{1}\n").unwrap_err();
        assert_eq!(span.start, 4);
        assert!(!msg.contains("control character"), "{msg}");
    }

    #[test]
    fn syntax_error_has_span() {
        let (msg, span) = parse("a = \n").unwrap_err();
        assert!(!msg.is_empty());
        assert_eq!(span.start, 4);
    }
}
