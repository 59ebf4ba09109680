//! The live view of a run.

use crate::exec::Sink;
use crate::playbook::human_duration;
use crate::state::{Event, EventKind, StepStatus};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Progress bars on the terminal (stderr), event lines above them.
    Tty,
    /// One line per event on stdout, for logs and pipes.
    Plain,
    /// One JSON event per line on stdout.
    Json,
}

pub struct LiveReporter {
    mode: Mode,
    multi: MultiProgress,
    overall: Option<ProgressBar>,
    spinners: HashMap<String, ProgressBar>,
    started: HashMap<String, Instant>,
    out: std::io::BufWriter<std::io::Stdout>,
    total: u64,
    /// A dry run ran nothing and keeps nothing: its end must not read like a run's.
    dry_run: bool,
}

impl LiveReporter {
    pub fn new(mode: Mode, total_steps: usize) -> Self {
        let multi = MultiProgress::with_draw_target(match mode {
            Mode::Tty => ProgressDrawTarget::stderr(),
            _ => ProgressDrawTarget::hidden(),
        });
        LiveReporter {
            mode,
            multi,
            overall: None,
            spinners: HashMap::new(),
            started: HashMap::new(),
            out: std::io::BufWriter::new(std::io::stdout()),
            total: total_steps as u64,
            dry_run: false,
        }
    }

    /// For prompts: hides the bars while `f` talks to the operator.
    pub fn multi(&self) -> MultiProgress {
        self.multi.clone()
    }

    fn line(&mut self, text: &str) {
        match self.mode {
            Mode::Tty => {
                let _ = self.multi.println(text);
            }
            Mode::Plain => {
                let _ = writeln!(self.out, "{text}");
                let _ = self.out.flush();
            }
            Mode::Json => {}
        }
    }

    fn took(&mut self, step: &str) -> String {
        match self.started.remove(step) {
            Some(t) => format!(" ({})", human_duration(t.elapsed())),
            None => String::new(),
        }
    }

    pub fn finish(&mut self) {
        if let Some(o) = self.overall.take() {
            o.finish_and_clear();
        }
        for (_, s) in self.spinners.drain() {
            s.finish_and_clear();
        }
        let _ = self.out.flush();
    }
}

impl Sink for LiveReporter {
    fn event(&mut self, ev: &Event) {
        // The terminal is a boundary of its own: whatever produced the event.
        let ev = &*crate::state::redacted(ev);
        if self.mode == Mode::Json {
            let _ = serde_json::to_writer(&mut self.out, ev);
            let _ = self.out.write_all(b"\n");
            if matches!(ev.kind, EventKind::RunFinished { .. } | EventKind::StepWaiting { .. }) {
                let _ = self.out.flush();
            }
            return;
        }
        if self.mode == Mode::Tty && self.overall.is_none() {
            let bar = self.multi.add(ProgressBar::new(self.total));
            bar.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:30.cyan/blue}] {pos}/{len} steps {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            self.overall = Some(bar);
        }
        match &ev.kind {
            EventKind::RunStarted { playbook, steps, dry_run, .. } => {
                self.dry_run = *dry_run;
                let dry = if *dry_run { " (dry run: nothing is changed)" } else { "" };
                self.line(&format!("playbook {playbook}: {} steps{dry}", steps.len()));
            }
            EventKind::RunResumed { reset, .. } => {
                self.line(&format!("resuming: {} step(s) to run again", reset.len()));
            }
            EventKind::StepStarted { step, attempt } => {
                self.started.entry(step.clone()).or_insert_with(Instant::now);
                if self.mode == Mode::Tty {
                    let sp = self.multi.add(ProgressBar::new_spinner());
                    sp.set_style(
                        ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    let again = if *attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
                    sp.set_message(format!("{step}{again}"));
                    sp.enable_steady_tick(Duration::from_millis(120));
                    if let Some(old) = self.spinners.insert(step.clone(), sp) {
                        old.finish_and_clear();
                    }
                } else {
                    let again = if *attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
                    self.line(&format!("▶ {step} started{again}"));
                }
            }
            EventKind::StepRetrying { step, attempt, error, delay_ms } => {
                self.line(&format!(
                    "↻ {step} attempt {attempt} failed: {error}; retrying in {}",
                    human_duration(Duration::from_millis(*delay_ms))
                ));
            }
            EventKind::StepPlanned { step, plan } => self.line(&format!("• {step}: would {plan}")),
            EventKind::StepFinished { step, status, error, hint, reason, .. } => {
                if let Some(sp) = self.spinners.remove(step) {
                    sp.finish_and_clear();
                }
                let took = self.took(step);
                let text = match status {
                    StepStatus::Succeeded if reason.as_deref() == Some("dry run") => None,
                    StepStatus::Succeeded => Some(format!("✔ {step} succeeded{took}")),
                    StepStatus::Failed => {
                        let mut t = format!("✘ {step} failed{took}: {}", error.as_deref().unwrap_or("unknown error"));
                        if let Some(h) = hint {
                            t.push_str(&format!("\n    hint: {h}"));
                        }
                        Some(t)
                    }
                    StepStatus::Skipped => Some(format!("- {step} skipped: {}", reason.as_deref().unwrap_or(""))),
                    _ => Some(format!("○ {step} {}", reason.as_deref().unwrap_or("not started"))),
                };
                if let Some(o) = &self.overall {
                    o.inc(1);
                }
                if let Some(t) = text {
                    self.line(&t);
                }
            }
            EventKind::StepWaiting { step, message } => {
                if let Some(sp) = self.spinners.remove(step) {
                    sp.finish_and_clear();
                }
                self.line(&format!("⏸ {step} waiting for approval: {message}"));
            }
            EventKind::StepInterrupted { step } => {
                if let Some(sp) = self.spinners.remove(step) {
                    sp.finish_and_clear();
                }
                self.line(&format!("⚠ {step} interrupted"));
            }
            EventKind::Warning { message } => self.line(&format!("warning: {message}")),
            EventKind::RunFinished { status, message } => {
                self.finish();
                let mut t = if self.dry_run {
                    "dry run done: nothing was run and nothing was kept".to_owned()
                } else {
                    format!("run {} {}", ev.run_id, status.as_str())
                };
                if let Some(m) = message {
                    t.push_str(&format!(": {m}"));
                }
                self.line(&t);
            }
        }
    }
}
