//! Everything a person or a machine reads: live progress during a run (indicatif on a
//! TTY, plain lines otherwise, JSON events with `--output json`), and the `show`, `runs`
//! and `plan` views. Only this room touches indicatif. It never changes state.

pub mod diff;
pub mod incident;
mod live;
mod views;

pub use live::{LiveReporter, Mode, Terminal};
pub use views::{plan_json, plan_text, runs_table, show_json, show_text};
