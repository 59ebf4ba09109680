//! Integration tests: they run the real `runbook` binary over playbooks written for them,
//! in a temp dir each, and read results the way users do (exit codes, stderr, `show --output json`).

mod support;

mod bounded;
mod browser;
mod cloud;
mod crash;
mod crash_matrix;
mod diff;
mod drill;
mod drill_e2e;
mod faults;
mod formats;
mod hostile;
mod pg;
mod pg_cluster;
mod props;
mod providers;
mod report;
mod run;
mod s3;
mod schema;
mod secrets;
mod serve;
mod supabase;
mod team;
mod tty;
mod validate;
mod vercel_fake;
