//! `runbook drill SUITE.yaml`: a DR test of several playbooks in one command. The suite
//! (`runbook-drill/v1`, [`suite`]) lists playbooks with their inputs, environment,
//! approvals and expected outcome; each one runs as a normal run of this program
//! ([`run`]: journaled, resumable, its run id `<drill id>-<entry id>`), and one report
//! ([`report`], md and json) judges them all. See docs/drills.md.

pub mod report;
pub mod run;
pub mod suite;
