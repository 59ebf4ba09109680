//! Playbooks: the `runbook/v1` format, loading with positions, every static check, and
//! the JSON Schema. Loading goes in stages: YAML text → [`node::Node`] tree with
//! positions → raw serde structs, section by section → a checked [`Playbook`] with its
//! sealed DAG. All problems of a file are collected in one pass and sorted. Nothing here
//! runs anything.

mod check;
pub mod diag;
mod duration;
pub mod inputs;
mod model;
pub mod node;
pub mod raw;
pub mod schema;

pub(crate) use check::de_node;
pub use check::{LoadError, MAX_FILE_BYTES, hex, load, load_str};
pub use diag::Diagnostic;
pub use duration::{Dur, between, format_duration, human_duration, human_ms, parse_duration};
pub use model::{Playbook, Retry, Step, When};
pub use raw::{Backoff, InputType, RawInput, RawObjectives, RpoValue, Trigger};
