//! The command line, as clap sees it.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "runbook",
    version,
    about = "Run disaster-recovery procedures written as YAML playbooks",
    long_about = "runbook validates, plans and runs disaster-recovery playbooks (runbook/v1): a DAG of typed \
steps with templates, retries, approvals and checkpoints. Every run is journaled under the state dir and can be \
resumed after a crash, a failure or a pending approval.",
    after_help = "Exit codes: 0 success; 1 the run failed; 2 invalid playbook, input or usage, or a refusal; \
3 paused (approval pending or interrupted step; resumable); 130 interrupted by Ctrl-C (resumable).\n\n\
Examples:\n  runbook validate playbooks/*.yaml\n  runbook exec examples/hello.yaml -i who=ops\n  \
runbook exec playbooks/s1-full-outage.yaml --dry-run\n  runbook resume <RUN_ID> --approve go_ahead"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Where runs are kept
    #[arg(long, global = true, env = "RUNBOOK_STATE_DIR", default_value = ".runbook", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// The PostgreSQL team store (postgres://...) instead of the state dir
    #[arg(long, global = true, env = "RUNBOOK_STATE", value_name = "URL")]
    pub state: Option<String>,
    /// Output for people or for machines
    #[arg(long, global = true, value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// How playbook problems are shown: a source snippet with a caret, or one line each
    /// (auto: snippets on a terminal, lines otherwise)
    #[arg(long, global = true, value_enum, default_value_t = ErrorFormat::Auto)]
    pub error_format: ErrorFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ErrorFormat {
    Auto,
    Snippet,
    Short,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Md,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    Text,
    Md,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check playbooks; lists every problem as file:line:col (exit 2 if any)
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Show the order, the parallel levels and what each step would do
    Plan {
        file: PathBuf,
        /// An input value (repeatable): -i key=value
        #[arg(short = 'i', long = "input", value_name = "KEY=VALUE")]
        inputs: Vec<String>,
    },
    /// Draw the step graph
    Graph {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// Run a playbook
    Exec(ExecArgs),
    /// Continue a run after a crash, a failure, Ctrl-C or a pending approval
    Resume(ResumeArgs),
    /// List runs
    Runs,
    /// The timeline of one run
    Show { run_id: String },
    /// Incident report of a run: timeline, approvals, objectives against what was measured,
    /// follow-ups (for the post-mortem)
    Report {
        run_id: String,
        #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
        format: ReportFormat,
    },
    /// Semantic diff of two playbooks for reviewers (exit 0 equal, 1 different, 2 error)
    ///
    /// runbook diff OLD.yaml NEW.yaml, or runbook diff --git REV -- FILE (FILE at REV
    /// against the working tree).
    Diff {
        /// Compare FILE at this git revision with the working tree
        #[arg(long, value_name = "REV")]
        git: Option<String>,
        #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
        format: DiffFormat,
        /// OLD NEW, or FILE with --git
        #[arg(required = true, num_args = 1..=2, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Run a drill suite: several playbooks, each a normal run, and one drill report
    ///
    /// Exit codes: 0 every playbook passed; 1 any failed; 2 invalid suite or usage;
    /// 3 incomplete (a run paused or was interrupted; continue with --resume ID);
    /// 130 interrupted by Ctrl-C (resumable).
    Drill(DrillArgs),
    /// Print the JSON Schema of the playbook format
    Schema,
    /// A live, read-only web view of the runs for the incident channel
    ///
    /// Reads the state dir (or --state postgres://...) like `runbook show`; never drives or
    /// locks a run. Open the printed address; `runbook exec` in another terminal drives.
    Serve {
        /// Address and port to listen on; the default is reachable from this machine only
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
        listen: std::net::SocketAddr,
    },
    /// Manage where runs are kept
    State {
        #[command(subcommand)]
        action: StateAction,
    },
    /// Print the row-level security of a healthy database, as the expected file of `verify-rls`
    RlsSnapshot {
        /// postgresql://... (the password may also come from PGPASSWORD)
        url: String,
        /// Schemas to include
        #[arg(long, value_delimiter = ',', default_value = "public")]
        schemas: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateAction {
    /// Copy the runs of a state dir into the PostgreSQL team store
    Migrate {
        /// The state dir (default .runbook)
        #[arg(long, default_value = ".runbook", value_name = "DIR")]
        from: PathBuf,
        /// postgres://...
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    pub file: PathBuf,
    /// An input value (repeatable): -i key=value
    #[arg(short = 'i', long = "input", value_name = "KEY=VALUE")]
    pub inputs: Vec<String>,
    /// Show what would happen; run nothing, write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Approve every approval step
    #[arg(long)]
    pub yes: bool,
    /// Approve this approval step (repeatable)
    #[arg(long, value_name = "STEP")]
    pub approve: Vec<String>,
    /// How many steps may run at once
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_parallel: u32,
    /// Use this run id instead of a generated one
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The suite (runbook-drill/v1)
    pub suite: PathBuf,
    /// Use this drill id instead of a generated one (the runs are `<ID>-<entry id>`)
    #[arg(long, value_name = "ID", conflicts_with = "resume")]
    pub id: Option<String>,
    /// Continue this drill: keep the runs that ended as expected, resume the others, start the rest
    #[arg(long, value_name = "ID")]
    pub resume: Option<String>,
    /// With --resume: re-run steps that were running when a run died, even if not idempotent
    #[arg(long, requires = "resume")]
    pub rerun_interrupted: bool,
    /// With --resume: go on although the suite or a playbook changed since the drill started
    #[arg(long, requires = "resume")]
    pub allow_changed: bool,
    /// Only validate the suite and its playbooks (exit 0 or 2); run nothing
    #[arg(long, conflicts_with = "resume")]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    pub run_id: String,
    /// Input values, e.g. secrets (they are never stored)
    #[arg(short = 'i', long = "input", value_name = "KEY=VALUE")]
    pub inputs: Vec<String>,
    /// Run again from this step (and everything after it), even if it succeeded
    #[arg(long, value_name = "STEP")]
    pub from: Option<String>,
    /// Re-run steps that were running when the process died, even if not idempotent
    #[arg(long)]
    pub rerun_interrupted: bool,
    /// Re-run an interrupted step even though its processes from before still run
    #[arg(long)]
    pub even_if_alive: bool,
    /// Resume even though the playbook file changed since the run started
    #[arg(long)]
    pub allow_changed: bool,
    #[arg(long, value_name = "STEP")]
    pub approve: Vec<String>,
    #[arg(long)]
    pub yes: bool,
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_parallel: u32,
}
