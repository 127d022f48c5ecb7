//! Diagnostics: `file:line:col: field: message` errors with positions
//! resolved from byte spans.
//!
//! Invariant: every [`Diagnostic`] built by the parser carries a 1-based line
//! and column that point into the file text; line 0 is reserved for errors
//! about the file as a whole (it cannot be read), which display as
//! `file: message`.

use std::fmt;
use std::ops::Range;

/// One problem found in a topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as given to [`super::parse`] or [`super::load`].
    pub file: String,
    /// 1-based line; 0 when the error concerns the whole file.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
    /// Dotted path of the offending field, e.g. `hosts[1].ports[0].addresses[2]`.
    pub field: String,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: ", self.file)?;
        } else {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one topology file, in file order.
///
/// Parsing does not stop at the first problem: one run of `vxrouter check`
/// lists everything the user has to fix (a TOML syntax error is the
/// exception, since nothing after it can be read reliably).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems, sorted by line and column.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Maps byte offsets to 1-based (line, column) pairs.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset at which each line starts.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// (line, column) of byte `offset`; offsets past the end clamp to the end.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        // Spans come from the TOML parser and sit on char boundaries; `get`
        // keeps a bad offset from panicking all the same.
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line, col + 1)
    }
}

/// Collects diagnostics for one file.
pub(crate) struct Sink<'a> {
    file: &'a str,
    lines: LineIndex<'a>,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl<'a> Sink<'a> {
    pub(crate) fn new(text: &'a str, file: &'a str) -> Self {
        Sink {
            file,
            lines: LineIndex::new(text),
            diagnostics: Vec::new(),
        }
    }

    /// Records a problem at the start of `span`.
    pub(crate) fn error(
        &mut self,
        span: &Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, col) = self.lines.position(span.start);
        self.diagnostics.push(Diagnostic {
            file: self.file.to_string(),
            line,
            col,
            field: field.into(),
            message: message.into(),
        });
    }

    /// 1-based line of `span`, for messages that point at an earlier definition.
    pub(crate) fn line_of(&self, span: &Range<usize>) -> usize {
        self.lines.position(span.start).0
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.diagnostics.is_empty()
    }

    pub(crate) fn into_error(mut self) -> ConfigError {
        // Stable sort: problems on one spot keep the order they were found in.
        self.diagnostics.sort_by_key(|d| (d.line, d.col));
        self.diagnostics.dedup();
        ConfigError {
            diagnostics: self.diagnostics,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_chars() {
        let text = "ab\ncé d\n\nx";
        let idx = LineIndex::new(text);
        assert_eq!(idx.position(0), (1, 1));
        assert_eq!(idx.position(1), (1, 2));
        assert_eq!(idx.position(3), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(idx.position(7), (2, 4));
        assert_eq!(idx.position(9), (3, 1));
        assert_eq!(idx.position(10), (4, 1));
        assert_eq!(idx.position(1000), (4, 2));
    }

    #[test]
    fn display_formats() {
        let d = Diagnostic {
            file: "t.toml".into(),
            line: 3,
            col: 7,
            field: "links[0].cost".into(),
            message: "must not be zero".into(),
        };
        assert_eq!(d.to_string(), "t.toml:3:7: links[0].cost: must not be zero");
        let whole = Diagnostic {
            line: 0,
            col: 0,
            field: String::new(),
            message: "cannot read".into(),
            ..d
        };
        assert_eq!(whole.to_string(), "t.toml: cannot read");
    }
}
