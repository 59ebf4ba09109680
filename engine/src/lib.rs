//! `runbook`: a declarative runbook engine for disaster-recovery procedures.
//!
//! The data flows one way: YAML → [`playbook::Playbook`] (checked, with its sealed
//! [`graph::Dag`]) → [`exec`] (the dispatcher, the only owner of run state) → events →
//! [`state`] (journal, snapshot, lock) and [`report`] (terminal, JSON). See
//! docs/ARCHITECTURE.md.

pub mod cli;
pub mod drill;
pub mod exec;
pub mod graph;
pub mod playbook;
pub mod report;
pub mod serve;
pub mod state;
pub mod steps;
pub mod template;
