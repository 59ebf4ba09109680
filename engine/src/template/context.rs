//! What a template sees: `inputs`, `vars`, `env`, `run` and the `steps` finished so far.

use minijinja::value::{Enumerator, Object, ObjectRepr, Value as JValue};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

/// The process environment, read lazily: a missing variable is undefined (strict: an
/// error), except when reading a playbook (`plan`, dry run), where it is a placeholder.
#[derive(Debug)]
pub struct EnvObject {
    pub placeholders: bool,
}

impl Object for EnvObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }
    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        let name = key.as_str()?;
        match std::env::var(name) {
            Ok(v) => Some(JValue::from(v)),
            Err(_) if self.placeholders => Some(Placeholder::value(format!("env.{name}"))),
            Err(_) => None,
        }
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::NonEnumerable
    }
}

/// The `steps` variable: `steps.<id>.outputs` and `steps.<id>.status`. The dispatcher puts
/// every step in at the start (`pending`, no outputs) and updates it as it goes, so a step
/// that never ran is still there with its status: a `trigger: always` step can read
/// `steps.verify.status` on exactly the path where `verify` did not run.
/// Shared, so the dispatcher adds a step's results once instead of rebuilding the context.
#[derive(Debug, Default)]
pub struct StepsView {
    steps: RwLock<HashMap<String, JValue>>,
    /// Why a step is not (or not yet) done, for error messages only: templates cannot read it.
    notes: RwLock<HashMap<String, String>>,
}

impl StepsView {
    pub fn set(&self, id: &str, status: &str, outputs: JValue) {
        // A step without outputs has an empty map, so `steps.x.outputs.url` is an undefined
        // value the error message can name, not a "none has no attribute" puzzle.
        let outputs = if outputs.is_none() || outputs.is_undefined() {
            JValue::from(std::collections::BTreeMap::<String, JValue>::new())
        } else {
            outputs
        };
        let entry = minijinja::context! { outputs => outputs, status => status };
        self.steps.write().unwrap_or_else(|e| e.into_inner()).insert(id.to_owned(), entry);
    }

    /// Records why a step was skipped or not started (or forgets it).
    pub fn set_note(&self, id: &str, note: Option<String>) {
        let mut notes = self.notes.write().unwrap_or_else(|e| e.into_inner());
        match note {
            Some(n) => notes.insert(id.to_owned(), n),
            None => notes.remove(id),
        };
    }

    /// Why `steps.<id>.outputs.<field>` has nothing to give, in words: "step `verify` was
    /// skipped (trigger not met: restore failed)".
    pub fn explain(&self, id: &str, field: Option<&str>) -> Option<String> {
        let entry = self.steps.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned()?;
        let status = entry.get_attr("status").ok()?.as_str().map(str::to_owned)?;
        let note = self.notes.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned();
        let why = |s: String| match &note {
            Some(n) => format!("{s} ({n})"),
            None => s,
        };
        Some(match status.as_str() {
            "pending" => why(format!("step `{id}` never started")),
            "skipped" => why(format!("step `{id}` was skipped")),
            "failed" => format!("step `{id}` failed"),
            "succeeded" => match field {
                Some(f) => format!("step `{id}` succeeded without an output `{f}`"),
                None => format!("step `{id}` succeeded"),
            },
            other => format!("step `{id}` is {other}"),
        })
    }
}

impl Object for StepsView {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }
    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        self.steps.read().unwrap_or_else(|e| e.into_inner()).get(key.as_str()?).cloned()
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let keys: Vec<JValue> =
            self.steps.read().unwrap_or_else(|e| e.into_inner()).keys().map(|k| JValue::from(k.as_str())).collect();
        Enumerator::Values(keys)
    }
}

/// The vars rendered so far, while `vars` are rendered one by one: each sees the ones before
/// it through this growing map instead of a copy of all of them (rebuilt for each var,
/// 20,000 vars took 27 s to start a run).
#[derive(Debug, Default)]
pub struct VarsSoFar(RwLock<indexmap::IndexMap<String, JValue>>);

impl VarsSoFar {
    pub fn push(&self, name: &str, value: &serde_json::Value) {
        let value = JValue::from(minijinja::value::Serde(value));
        self.0.write().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), value);
    }
}

impl Object for VarsSoFar {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }
    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).get(key.as_str()?).cloned()
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.0.read().unwrap_or_else(|e| e.into_inner()).keys().map(|k| JValue::from(k.as_str())).collect(),
        )
    }
}

/// Stands for a value that is not known yet (dry run, plan): any attribute or index of it is
/// another placeholder, and it renders as `<steps.x.outputs.rows[0].n>`.
#[derive(Debug)]
pub struct Placeholder(pub String);

impl Placeholder {
    pub fn value(path: impl Into<String>) -> JValue {
        JValue::from_object(Placeholder(path.into()))
    }
}

impl Object for Placeholder {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        Some(match key.as_str() {
            Some(name) => Placeholder::value(format!("{}.{name}", self.0)),
            None => Placeholder::value(format!("{}[{key}]", self.0)),
        })
    }
    fn is_true(self: &Arc<Self>) -> bool {
        true
    }
    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.0)
    }
}

/// The fixed part of the context of one run, built once.
#[derive(Debug, Clone)]
pub struct Context {
    root: JValue,
    env: JValue,
    inputs: JValue,
    run: JValue,
    pub steps: Arc<StepsView>,
}

impl Context {
    /// `reading`: for plans and dry runs, missing env vars become placeholders.
    pub fn new(inputs: JValue, vars: JValue, run: JValue, reading: bool) -> Self {
        let steps = Arc::new(StepsView::default());
        let env = JValue::from_object(EnvObject { placeholders: reading });
        Context { root: Self::build(inputs.clone(), vars, run.clone(), &env, &steps), env, inputs, run, steps }
    }

    fn build(inputs: JValue, vars: JValue, run: JValue, env: &JValue, steps: &Arc<StepsView>) -> JValue {
        minijinja::context! {
            inputs => inputs,
            vars => vars,
            env => env.clone(),
            run => run,
            steps => JValue::from_dyn_object(steps.clone()),
        }
    }

    /// A context for rendering `vars` one by one: the vars rendered so far are visible.
    pub fn with_vars(&self, vars: JValue) -> Self {
        Context {
            root: Self::build(self.inputs.clone(), vars, self.run.clone(), &self.env, &self.steps),
            env: self.env.clone(),
            inputs: self.inputs.clone(),
            run: self.run.clone(),
            steps: self.steps.clone(),
        }
    }

    pub fn value(&self) -> &JValue {
        &self.root
    }

    /// The context of `retry.until`: everything, plus the step's own `outputs`.
    pub fn with_outputs(&self, outputs: &serde_json::Value) -> JValue {
        minijinja::context! { outputs => JValue::from(minijinja::value::Serde(outputs)), ..self.root.clone() }
    }
}
