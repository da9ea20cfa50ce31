//! How results reach the user: aligned text tables by default, JSON for scripts, and progress
//! lines on stderr.
//!
//! Every command builds its result once as a `serde_json::Value` or a [`Table`] and hands it to
//! [`Output`], so table and JSON modes never drift apart in content. Progress goes to stderr and
//! only when stderr is a terminal, so pipes and scripts see clean output. Main thread only.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde_json::Value;

/// Output mode chosen with `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Aligned, human-readable tables.
    Table,
    /// JSON (one document per command; one object per line for streams such as `consume`).
    Json,
}

/// Where a command writes its result.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    pub(crate) format: OutputFormat,
}

impl Output {
    pub(crate) fn is_json(self) -> bool {
        self.format == OutputFormat::Json
    }

    /// Prints `json` in JSON mode, otherwise the text `render` builds.
    pub(crate) fn emit(self, json: &Value, render: impl FnOnce() -> String) {
        if self.is_json() {
            println!("{json}");
        } else {
            print!("{}", render());
        }
    }
}

/// A text table: a header row and rows of cells, rendered with columns padded to their widest
/// cell (the last column is not padded, so lines carry no trailing spaces).
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Self {
        Self { header: header.iter().map(|cell| (*cell).to_owned()).collect(), rows: Vec::new() }
    }

    pub(crate) fn push(&mut self, row: Vec<String>) {
        assert_eq!(row.len(), self.header.len(), "a row has one cell per column");
        self.rows.push(row);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|cell| cell.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut text = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let last = row.len() - 1;
            for (index, cell) in row.iter().enumerate() {
                text.push_str(cell);
                if index < last {
                    let padding = widths[index] - cell.chars().count() + 2;
                    text.extend(std::iter::repeat_n(' ', padding));
                }
            }
            text.push('\n');
        }
        text
    }
}

/// Appends formatted text to `text` (writing to a `String` cannot fail).
pub(crate) fn push_fmt(text: &mut String, arguments: std::fmt::Arguments<'_>) {
    std::fmt::Write::write_fmt(text, arguments).expect("writing to a String cannot fail");
}

/// One formatted line per item.
pub(crate) fn lines<T>(items: impl IntoIterator<Item = T>, line: impl Fn(&mut String, T)) -> String {
    let mut text = String::new();
    for item in items {
        line(&mut text, item);
        text.push('\n');
    }
    text
}

/// Bytes as text for display: UTF-8 when valid, otherwise lossy.
pub(crate) fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A nullable byte field as JSON: a string, or null.
pub(crate) fn json_bytes(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Null, |bytes| Value::String(text_of(bytes)))
}

/// Rate-limited progress lines on stderr, shown only when stderr is a terminal.
#[derive(Debug)]
pub(crate) struct Progress {
    enabled: bool,
    last: Instant,
    shown: bool,
}

impl Progress {
    /// How often a progress line is refreshed.
    const INTERVAL: Duration = Duration::from_secs(1);

    pub(crate) fn new() -> Self {
        Self { enabled: std::io::stderr().is_terminal(), last: Instant::now(), shown: false }
    }

    /// Shows `message` when a second has passed since the last one.
    pub(crate) fn tick(&mut self, message: impl FnOnce() -> String) {
        if self.enabled && self.last.elapsed() >= Self::INTERVAL {
            self.last = Instant::now();
            self.shown = true;
            let mut stderr = std::io::stderr().lock();
            // Progress is best effort: a closed stderr must not fail the command.
            let _ = write!(stderr, "\r\x1b[2K{}", message());
            let _ = stderr.flush();
        }
    }

    /// Clears the progress line, if one was shown.
    pub(crate) fn finish(&mut self) {
        if self.shown {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            self.shown = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_columns_but_not_the_last() {
        let mut table = Table::new(&["TOPIC", "PARTITIONS"]);
        table.push(vec!["a-long-topic".to_owned(), "3".to_owned()]);
        table.push(vec!["b".to_owned(), "12".to_owned()]);
        assert_eq!(table.render(), "TOPIC         PARTITIONS\na-long-topic  3\nb             12\n");
    }

    #[test]
    fn invalid_utf8_is_shown_lossily_and_null_is_json_null() {
        assert_eq!(text_of(b"ok"), "ok");
        assert_eq!(text_of(&[0xff]), "\u{fffd}");
        assert_eq!(json_bytes(None), Value::Null);
        assert_eq!(json_bytes(Some(b"v")), Value::String("v".to_owned()));
    }
}
