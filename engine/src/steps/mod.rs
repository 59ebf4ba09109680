//! The step types: one file each, behind one small object-safe trait.
//!
//! A step type declares typed parameters (`TypedStep::Params`), whether it changes the
//! world (`idempotent`), what it would do (`plan`, for `plan` and `--dry-run`) and how it
//! runs. It never touches run state or the terminal: it gets its rendered parameters and a
//! [`StepContext`], and returns outputs or an error.

mod approval;
mod backups;
mod check_status;
mod dump;
mod export;
mod http;
mod notify;
pub mod pg;
pub mod pg_restore;
pub mod pitr;
mod redis;
pub mod rls;
mod rollback;
mod rotate;
pub mod s3;
mod saas;
pub mod same_db;
mod shell;
mod sql;
mod wait;

pub mod support;

use futures_util::future::BoxFuture;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

pub type Outputs = Value;

pub use crate::playbook::node::Seg;

/// Parameters that do not fit the step type.
#[derive(Debug, Clone)]
pub struct ParamError {
    pub path: Vec<Seg>,
    pub message: String,
}

impl ParamError {
    pub fn at(key: &str, message: impl Into<String>) -> Self {
        ParamError { path: vec![Seg::Key(key.to_owned())], message: message.into() }
    }

    pub fn root(message: impl Into<String>) -> Self {
        ParamError { path: Vec::new(), message: message.into() }
    }

    pub fn path_string(&self) -> String {
        let mut s = String::from("with");
        for seg in &self.path {
            match seg {
                Seg::Key(k) => {
                    s.push('.');
                    s.push_str(k);
                }
                Seg::Index(i) => s.push_str(&format!("[{i}]")),
            }
        }
        s
    }
}

/// A human decision on an approval step.
#[derive(Debug, Clone)]
pub enum Decision {
    Approved {
        by: String,
    },
    Denied {
        by: String,
    },
    /// Nobody can answer now (non-interactive run): the run pauses, `resume --approve` goes on.
    Pending,
}

/// Who answers approval prompts. The CLI provides one that knows the flags and the TTY.
pub trait ApprovalGate: Send + Sync {
    fn decide<'a>(&'a self, step_id: &'a str, message: &'a str) -> BoxFuture<'a, Decision>;
}

/// What a running step may use.
pub struct StepContext {
    pub run_id: String,
    pub step_id: String,
    pub attempt: u32,
    pub http: reqwest::Client,
    pub gate: Arc<dyn ApprovalGate>,
    /// Where relative paths in parameters are resolved: the directory `runbook` runs in.
    pub work_dir: PathBuf,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StepError {
    #[error("{message}")]
    Failed { message: String, hint: Option<String>, outputs: Option<Outputs> },
    #[error("waiting for approval: {message}")]
    NeedsApproval { message: String },
}

impl StepError {
    pub fn failed(message: impl Into<String>) -> Self {
        StepError::Failed { message: message.into(), hint: None, outputs: None }
    }

    pub fn with_hint(self, hint: impl Into<String>) -> Self {
        match self {
            StepError::Failed { message, outputs, .. } => {
                StepError::Failed { message, hint: Some(hint.into()), outputs }
            }
            other => other,
        }
    }

    pub fn with_outputs(self, outputs: Outputs) -> Self {
        match self {
            StepError::Failed { message, hint, .. } => StepError::Failed { message, hint, outputs: Some(outputs) },
            other => other,
        }
    }
}

/// The object-safe face of a step type, as the engine uses it.
pub trait StepKind: Send + Sync {
    fn name(&self) -> &'static str;
    fn summary(&self) -> &'static str;
    /// Checks parameters at validate time (templated values are accepted as they stand)
    /// and tells whether running the step twice is harmless with them. Unknown (a
    /// templated value decides) means no.
    fn check(&self, params: &Value) -> Result<bool, ParamError>;
    /// One line saying what the step would do with these (rendered) parameters.
    fn plan(&self, params: &Value) -> String;
    /// Whether a failure of this step lets the run go on (as a warning) when the playbook
    /// does not say `continue_on_error`: true only for steps whose failure never matters
    /// to the recovery (a notification).
    fn continue_on_error_default(&self, params: &Value) -> bool;
    /// Dry run, when every parameter is known: a more precise plan from read-only calls
    /// (which deployment a rollback would pick). `None` when the type has none.
    fn preview<'a>(&'a self, ctx: &'a StepContext, params: Value) -> BoxFuture<'a, Option<String>>;
    fn run<'a>(&'a self, ctx: &'a StepContext, params: Value) -> BoxFuture<'a, Result<Outputs, StepError>>;
    fn params_schema(&self, generator: &mut SchemaGenerator) -> Schema;
}

/// How a step type is written: typed parameters and plain async code.
pub trait TypedStep: Send + Sync + 'static {
    const NAME: &'static str;
    const SUMMARY: &'static str;
    type Params: DeserializeOwned + JsonSchema + Send;

    fn idempotent(params: &Self::Params) -> bool;
    /// Checks that serde cannot express (one of two fields, non-empty lists).
    fn validate(_params: &Self::Params) -> Result<(), ParamError> {
        Ok(())
    }
    /// For parameters that are an internally tagged enum (`provider: ...`): serde reports an
    /// error inside a variant without its path, so the variant's own parse (which has it) is
    /// asked here. `None` for plain parameter structs, or when the tag itself is wrong.
    fn variant_error(_params: &Value) -> Option<ParamError> {
        None
    }
    fn plan(params: &Self::Params) -> String;
    /// See [`StepKind::continue_on_error_default`].
    fn continue_on_error_default(_params: &Self::Params) -> bool {
        false
    }
    /// Read-only look-ups for a dry run's plan; never changes anything.
    fn preview(&self, _ctx: &StepContext, _params: &Self::Params) -> impl Future<Output = Option<String>> + Send {
        async { None }
    }
    fn run(&self, ctx: &StepContext, params: Self::Params) -> impl Future<Output = Result<Outputs, StepError>> + Send;
}

pub(crate) fn parse_params<P: DeserializeOwned>(params: &Value) -> Result<P, ParamError> {
    serde_path_to_error::deserialize(params).map_err(|err| {
        let path = crate::playbook::node::segs(err.path());
        ParamError { path, message: err.into_inner().to_string() }
    })
}

/// Whether the path runs through a templated string, whose type is only known at run time.
fn path_is_templated(params: &Value, path: &[Seg]) -> bool {
    let mut v = params;
    for seg in path {
        if let Value::String(s) = v {
            return crate::template::is_template(s);
        }
        let next = match seg {
            Seg::Key(k) => v.get(k),
            Seg::Index(i) => v.get(i),
        };
        match next {
            Some(n) => v = n,
            None => return false,
        }
    }
    matches!(v, Value::String(s) if crate::template::is_template(s))
}

impl<T: TypedStep> StepKind for T {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn summary(&self) -> &'static str {
        T::SUMMARY
    }

    fn check(&self, params: &Value) -> Result<bool, ParamError> {
        let parsed = parse_params::<T::Params>(params)
            .map_err(|e| if e.path.is_empty() { T::variant_error(params).unwrap_or(e) } else { e });
        match parsed {
            Ok(p) => T::validate(&p).map(|_| T::idempotent(&p)),
            // Templated values are typed at run time. serde cannot always say where the
            // error is (inside a tagged enum the path stops at the enum), but it quotes the
            // offending value: a quoted template is one.
            Err(e) if path_is_templated(params, &e.path) || e.message.contains("{{") => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn plan(&self, params: &Value) -> String {
        match parse_params::<T::Params>(params) {
            Ok(p) => T::plan(&p),
            Err(_) => format!("{} with {}", T::NAME, params),
        }
    }

    fn continue_on_error_default(&self, params: &Value) -> bool {
        // Unparsable parameters fail validation anyway; the strict answer costs nothing.
        parse_params::<T::Params>(params).is_ok_and(|p| T::continue_on_error_default(&p))
    }

    fn preview<'a>(&'a self, ctx: &'a StepContext, params: Value) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let p = parse_params::<T::Params>(&params).ok()?;
            T::preview(self, ctx, &p).await
        })
    }

    fn run<'a>(&'a self, ctx: &'a StepContext, params: Value) -> BoxFuture<'a, Result<Outputs, StepError>> {
        Box::pin(async move {
            let p = parse_params::<T::Params>(&params)
                .map_err(|e| StepError::failed(format!("`{}`: {}", e.path_string(), e.message)))?;
            T::validate(&p).map_err(|e| StepError::failed(format!("`{}`: {}", e.path_string(), e.message)))?;
            T::run(self, ctx, p).await
        })
    }

    fn params_schema(&self, generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<T::Params>()
    }
}

/// Alphabetical: error messages list them in this order.
static KINDS: &[&dyn StepKind] = &[
    &approval::Approval,
    &backups::CheckBackups,
    &check_status::CheckStatus,
    &export::ExportSecrets,
    &http::Http,
    &notify::Notify,
    &dump::PgDump,
    &pg_restore::PgRestore,
    &pitr::Pitr,
    &redis::RedisPing,
    &rollback::RollbackDeploy,
    &rotate::RotateSecret,
    &s3::S3Copy,
    &s3::S3RestoreVersions,
    &s3::S3Versioning,
    &shell::Shell,
    &sql::Sql,
    &rls::VerifyRls,
    &wait::Wait,
];

pub fn lookup(name: &str) -> Option<&'static dyn StepKind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

pub fn all() -> &'static [&'static dyn StepKind] {
    KINDS
}

pub fn known_names() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|k| k.name())
}
