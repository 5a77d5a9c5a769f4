//! The demo's progress display: a bar per phase and a status line on a
//! terminal, and plain lines always.

use std::io::Write;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Result;

/// The progress display: phase bars on a terminal, and phase lines always.
pub struct Display<'a> {
    out: &'a mut dyn Write,
    multi: MultiProgress,
    visible: bool,
    phase: Option<ProgressBar>,
    status: Option<ProgressBar>,
}

impl<'a> Display<'a> {
    /// A display writing its lines to `out`, with bars if `visible`.
    pub fn new(out: &'a mut dyn Write, visible: bool) -> Self {
        let multi =
            if visible { MultiProgress::new() } else { MultiProgress::with_draw_target(ProgressDrawTarget::hidden()) };
        Display { out, multi, visible, phase: None, status: None }
    }

    /// Prints a line above the bars.
    pub fn line(&mut self, text: &str) -> Result<()> {
        let out = &mut self.out;
        if self.visible {
            self.multi.suspend(|| -> std::io::Result<()> {
                writeln!(out, "{text}")?;
                out.flush()
            })?;
        } else {
            writeln!(out, "{text}")?;
            out.flush()?;
        }
        Ok(())
    }

    /// Starts a phase bar of `len` `unit`s.
    pub fn begin(&mut self, label: &str, len: u64, unit: &str) {
        let style = ProgressStyle::with_template(&format!(
            "{{prefix:.bold}} [{{bar:30.cyan/blue}}] {{pos:>3}}/{{len}} {unit}  {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        // The phase bar above the status line.
        let bar = self.multi.insert(0, ProgressBar::new(len).with_style(style).with_prefix(label.to_string()));
        if self.status.is_none() {
            let style = ProgressStyle::with_template("      {msg}").unwrap_or_else(|_| ProgressStyle::default_bar());
            self.status = Some(self.multi.add(ProgressBar::new(1).with_style(style)));
        }
        self.phase = Some(bar);
    }

    /// Moves the phase bar and rewrites the status line.
    pub fn progress(&self, pos: u64, msg: String, status: String) {
        if let Some(bar) = &self.phase {
            bar.set_position(pos);
            bar.set_message(msg);
        }
        if let Some(bar) = &self.status {
            bar.set_message(status);
        }
    }

    /// Clears the phase bar.
    pub fn end(&mut self) {
        if let Some(bar) = self.phase.take() {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }

    /// Clears every bar.
    pub fn close(&mut self) {
        self.end();
        if let Some(bar) = self.status.take() {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }
}

/// `n` bytes for a person: B, KiB or MiB.
pub fn human_bytes(n: u64) -> String {
    if n < 10 * 1024 {
        format!("{n} B")
    } else if n < 10 * 1024 * 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
    }
}
