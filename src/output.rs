//! Rendering: every command returns a `Report`; this module alone decides between a table for
//! people and one JSON document for scripts, and owns stderr (status lines, progress bars).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::exit_codes;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// What a command produced: the data in both shapes and the exit code it earned.
pub trait Report: Serialize {
    /// The text for people; empty prints nothing (cron-friendly quiet success).
    fn human(&self) -> String;
    fn exit_code(&self) -> u8 {
        exit_codes::OK
    }
}

/// A finished command: its exit code and its report, rendered only in the format asked for
/// (a million-row JSON document is streamed to stdout, never built in memory for a table).
pub struct Outcome {
    pub code: u8,
    render: Box<Renderer>,
    extra: Option<(&'static str, Value)>,
}

/// Writes a report in one format.
type Renderer =
    dyn Fn(Format, &mut dyn Write, Option<&(&'static str, Value)>) -> std::io::Result<()>;

impl Outcome {
    pub fn of<R: Report + 'static>(report: R) -> Result<Outcome> {
        Ok(Outcome {
            code: report.exit_code(),
            render: Box::new(move |format, out, extra| match format {
                Format::Json => {
                    match extra {
                        // One more field in the report's object (the cache's pending keys).
                        Some((key, value)) => {
                            let mut doc =
                                serde_json::to_value(&report).map_err(std::io::Error::other)?;
                            if let Value::Object(fields) = &mut doc {
                                fields.insert(key.to_string(), value.clone());
                            }
                            serde_json::to_writer_pretty(&mut *out, &doc)
                        }
                        None => serde_json::to_writer_pretty(&mut *out, &report),
                    }
                    .map_err(std::io::Error::other)?;
                    out.write_all(b"\n")
                }
                Format::Table => {
                    let text = report.human();
                    if text.is_empty() {
                        return Ok(());
                    }
                    out.write_all(text.as_bytes())?;
                    if !text.ends_with('\n') {
                        out.write_all(b"\n")?;
                    }
                    Ok(())
                }
            }),
            extra: None,
        })
    }

    /// The routing cache could not be told of every change: `"cache": {"pending": [...]}` in
    /// the JSON, and exit 5 (partly done) unless the command already failed otherwise.
    pub fn with_cache_pending(mut self, pending: Vec<String>) -> Outcome {
        if self.code == exit_codes::OK {
            self.code = exit_codes::PARTIAL;
        }
        self.extra = Some(("cache", serde_json::json!({ "pending": pending })));
        self
    }

    /// Writes the outcome to stdout. A closed pipe (`| head`) is not an error.
    pub fn print(&self, format: Format) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let written =
            (self.render)(format, &mut out, self.extra.as_ref()).and_then(|_| out.flush());
        match written {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }
}

/// The JSON error object of PRODUCT.md section 3b.
/// One line on stderr. A closed or full stderr is not worth failing for (cron may close it):
/// the exit code and stdout still say what happened.
pub fn write_stderr(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

pub fn error_json(kind: &str, message: &str) -> Value {
    serde_json::json!({ "error": { "kind": kind, "message": message } })
}

pub fn write_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// A table for people.
pub fn table(headers: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.to_vec());
    // No cell moves the cursor or reorders what is shown; stored text (an owner, a command)
    // has its newlines escaped too where it is put in (`types::shown`), so it forges no row.
    for row in rows {
        t.add_row(
            row.iter()
                .map(|c| crate::types::shown_cell(c))
                .collect::<Vec<_>>(),
        );
    }
    t.to_string()
}

/// stderr: status lines, debug lines and progress bars, according to `-q`, `-v` and the format.
#[derive(Clone, Debug)]
pub struct Ui {
    pub quiet: bool,
    pub verbose: bool,
    pub format: Format,
    stderr_is_tty: bool,
    /// While several bars share the terminal: lines are printed above them.
    multi: Option<MultiProgress>,
}

impl Ui {
    pub fn new(quiet: bool, verbose: bool, format: Format) -> Ui {
        Ui {
            quiet,
            verbose,
            format,
            stderr_is_tty: std::io::stderr().is_terminal(),
            multi: None,
        }
    }

    /// A copy whose bars share the terminal (each new bar is a line of its own) and whose
    /// messages are printed above them.
    pub fn multi(&self) -> Ui {
        Ui {
            multi: self
                .shows_progress()
                .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            ..self.clone()
        }
    }

    fn line(&self, msg: &str) {
        match &self.multi {
            Some(m) => m.suspend(|| write_stderr(msg)),
            None => write_stderr(msg),
        }
    }

    fn add(&self, bar: ProgressBar) -> ProgressBar {
        match &self.multi {
            Some(m) => m.add(bar),
            None => bar,
        }
    }

    /// A line of chatter for people; silent under `-q`.
    pub fn status(&self, msg: &str) {
        if !self.quiet {
            self.line(msg);
        }
    }

    /// A warning: shown even under `-q`.
    pub fn warn(&self, msg: &str) {
        self.line(&format!("warning: {msg}"));
    }

    /// A line of another program's output passed through (a roll's command): shown even
    /// under `-q`, above any progress bar.
    pub fn passthrough(&self, line: &str) {
        self.line(line);
    }

    /// Detail shown only with `-v`.
    pub fn debug(&self, msg: &str) {
        if self.verbose {
            self.line(msg);
        }
    }

    /// Whether progress bars may be drawn: stderr is a terminal, not `-q`, not JSON.
    pub fn shows_progress(&self) -> bool {
        self.stderr_is_tty && !self.quiet && self.format == Format::Table
    }

    /// A counting bar, hidden where progress must not be drawn.
    pub fn progress(&self, total: u64, what: &str) -> ProgressBar {
        let bar = self.counting_bar(
            total,
            "{msg:>12} [{bar:40.cyan/blue}] {human_pos}/{human_len} {per_sec} eta {eta}",
        );
        bar.set_message(what.to_string());
        bar
    }

    /// A bar counting to `total` in `template`'s style, ticking; hidden where progress must not
    /// be drawn.
    fn counting_bar(&self, total: u64, template: &str) -> ProgressBar {
        if !self.shows_progress() {
            return ProgressBar::hidden();
        }
        let bar = self.add(ProgressBar::with_draw_target(
            Some(total),
            ProgressDrawTarget::stderr(),
        ));
        let style = ProgressStyle::with_template(template)
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// A spinner for a step of unknown length.
    pub fn spinner(&self, what: &str) -> ProgressBar {
        if !self.shows_progress() {
            return ProgressBar::hidden();
        }
        let bar = self.add(ProgressBar::with_draw_target(
            None,
            ProgressDrawTarget::stderr(),
        ));
        if let Ok(style) = ProgressStyle::with_template("{spinner:.green} {msg}") {
            bar.set_style(style);
        }
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }
}

impl Ui {
    /// The overall bar of a long job counted in accounts, with rows and the rate in its
    /// message (`{msg}`), hidden where progress must not be drawn.
    pub fn accounts_bar(&self, total: u64) -> ProgressBar {
        let bar = self.counting_bar(
            total,
            "{prefix:>8} [{bar:30.cyan/blue}] {human_pos}/{human_len} accounts {msg} · eta {eta}",
        );
        bar.set_prefix("moving");
        bar
    }
}

/// A share as a small text bar, so skew is visible at a glance.
pub fn share_bar(share: f64, width: usize) -> String {
    let filled = (share.clamp(0.0, 1.0) * width as f64).round() as usize;
    format!("{}{}", "#".repeat(filled), ".".repeat(width - filled))
}

/// Prints a failure the way every command does (one line on stderr; the JSON error object on
/// stdout with `--format json`) and returns its exit code.
pub fn fail(kind: &str, message: &str, json: bool, code: u8) -> u8 {
    // One line, and bounded: an error may quote input, and input may be anything.
    let message = crate::error::excerpt(&crate::error::one_line(message), 2000);
    write_stderr(&format!("error: {message}"));
    if json {
        let doc = format!("{}\n", error_json(kind, &message));
        let _ = write_stdout(&doc);
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_bar_is_proportional() {
        assert_eq!(share_bar(0.5, 10), "#####.....");
        assert_eq!(share_bar(1.5, 4), "####");
        assert_eq!(share_bar(0.0, 3), "...");
    }
}
