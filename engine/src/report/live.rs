//! The live view of a run.

use crate::exec::Sink;
use crate::playbook::human_duration;
use crate::state::{Event, EventKind, StepStatus};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
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

/// The terminal (stderr) of a TTY session, shared by the reporter and the approval prompt.
/// While a question is open the bars are hidden (they would redraw over what the operator
/// types), event lines go on printing below it, each followed by the question again, and
/// nothing holds a lock while the operator thinks: the runtime keeps running every branch,
/// timeout and Ctrl-C.
#[derive(Clone)]
pub struct Terminal {
    multi: MultiProgress,
    question: Arc<Mutex<Option<String>>>,
}

impl Terminal {
    /// Shows `question` (bars hidden until [`close_prompt`](Self::close_prompt)).
    pub fn open_prompt(&self, question: &str) {
        if let Ok(mut q) = self.question.lock() {
            self.multi.set_draw_target(ProgressDrawTarget::hidden());
            eprint!("{question}");
            let _ = std::io::stderr().flush();
            *q = Some(question.to_owned());
        }
    }

    pub fn close_prompt(&self) {
        if let Ok(mut q) = self.question.lock()
            && q.take().is_some()
        {
            self.multi.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    fn println(&self, text: &str) {
        match self.question.lock() {
            Ok(q) if q.is_some() => {
                // Below the open question, which is asked again so it stays the last line.
                eprint!("\n{text}\n{}", q.as_deref().unwrap_or_default());
                let _ = std::io::stderr().flush();
            }
            _ => {
                let _ = self.multi.println(text);
            }
        }
    }
}

pub struct LiveReporter {
    mode: Mode,
    multi: MultiProgress,
    terminal: Terminal,
    overall: Option<ProgressBar>,
    spinners: HashMap<String, ProgressBar>,
    started: HashMap<String, Instant>,
    out: std::io::BufWriter<std::io::Stdout>,
    total: u64,
    /// A dry run ran nothing and keeps nothing: its end must not read like a run's.
    dry_run: bool,
    /// The reader of stdout went away (`runbook exec x | head -1`): printing stops, the run
    /// goes on. The journal, not the screen, is the record of a run.
    reader_gone: bool,
}

/// A run must outlive whoever reads its output: with SIGPIPE at its default, the first line
/// written after `head -1` exits kills the process mid-step and leaves the run interrupted,
/// and so does a child that closes the stdin we feed it. Ignored, both become EPIPE errors,
/// which the reporter and the steps handle. `main` keeps the default for the reading
/// commands (`show ID | head` ends quietly); only a process that drives a run changes it.
/// Children get the default back: the standard library resets SIGPIPE before exec.
pub fn keep_running_without_reader() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

impl LiveReporter {
    pub fn new(mode: Mode, total_steps: usize) -> Self {
        keep_running_without_reader();
        let multi = MultiProgress::with_draw_target(match mode {
            Mode::Tty => ProgressDrawTarget::stderr(),
            _ => ProgressDrawTarget::hidden(),
        });
        LiveReporter {
            mode,
            terminal: Terminal { multi: multi.clone(), question: Arc::new(Mutex::new(None)) },
            multi,
            overall: None,
            spinners: HashMap::new(),
            started: HashMap::new(),
            out: std::io::BufWriter::new(std::io::stdout()),
            total: total_steps as u64,
            dry_run: false,
            reader_gone: false,
        }
    }

    /// For prompts: the one way to the terminal besides the reporter's own lines.
    pub fn multi(&self) -> Terminal {
        self.terminal.clone()
    }

    /// Prints a line outside the event stream (the run id); never fails the run.
    pub fn say(&mut self, text: &str) {
        if self.reader_gone {
            return;
        }
        let r = writeln!(self.out, "{text}").and_then(|()| self.out.flush());
        self.check(r);
    }

    fn check(&mut self, r: std::io::Result<()>) {
        if let Err(e) = r
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            self.reader_gone = true;
        }
    }

    fn line(&mut self, text: &str) {
        match self.mode {
            Mode::Tty => self.terminal.println(text),
            Mode::Plain if !self.reader_gone => {
                let r = writeln!(self.out, "{text}").and_then(|()| self.out.flush());
                self.check(r);
            }
            Mode::Plain | Mode::Json => {}
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
        if !self.reader_gone {
            let r = self.out.flush();
            self.check(r);
        }
    }
}

impl Sink for LiveReporter {
    fn event(&mut self, ev: &Event) {
        // The terminal is a boundary of its own: whatever produced the event.
        let ev = &*crate::state::redacted(ev);
        if self.mode == Mode::Json {
            if self.reader_gone {
                return;
            }
            let mut r = serde_json::to_writer(&mut self.out, ev).map_err(std::io::Error::from);
            r = r.and_then(|()| self.out.write_all(b"\n"));
            if matches!(ev.kind, EventKind::RunFinished { .. } | EventKind::StepWaiting { .. }) {
                r = r.and_then(|()| self.out.flush());
            }
            self.check(r);
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
            EventKind::StepProcess { .. } => {}
            EventKind::InputChanged { input, from, to, .. } => {
                self.line(&format!("input `{input}` changed: {from} → {to}"));
            }
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
