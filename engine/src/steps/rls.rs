//! `verify-rls`: row-level security is on for every table in scope (and forced, if asked),
//! and the policies equal an expected file. The step fails with a readable diff.
//!
//! The expected file is YAML (written by `verify-rls` with `snapshot:`, or by
//! `runbook rls-snapshot URL`):
//! ```yaml
//! tables:
//!   public.orders:
//!     rls: true
//!     force: false
//!     policies:
//!       - { name: owner_reads, permissive: PERMISSIVE, roles: [public], cmd: SELECT, qual: "(owner = CURRENT_USER)", with_check: null }
//! ```

use super::pg;
use super::{Outputs, ParamError, StepContext, StepError, TypedStep};
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub struct VerifyRls;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RlsParams {
    /// The database to inspect: `postgresql://...`.
    pub url: String,
    /// Schemas whose tables are checked (default: `public`).
    #[serde(default)]
    pub schemas: Option<Vec<String>>,
    /// Or these tables (`schema.table`).
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// Also require FORCE ROW LEVEL SECURITY (table owners obey the policies too).
    #[serde(default)]
    pub require_force: bool,
    /// The expected policies (YAML), relative to where runbook runs.
    #[serde(default)]
    pub expect: Option<String>,
    /// Write what the database has to this file instead of comparing.
    #[serde(default)]
    pub snapshot: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub name: String,
    pub permissive: String,
    pub roles: Vec<String>,
    pub cmd: String,
    pub qual: Option<String>,
    pub with_check: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TableRls {
    pub rls: bool,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub policies: Vec<Policy>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub tables: IndexMap<String, TableRls>,
}

impl TypedStep for VerifyRls {
    const NAME: &'static str = "verify-rls";
    const SUMMARY: &'static str = "row-level security on (and forced) for every table; policies equal an expected file";
    type Params = RlsParams;

    fn idempotent(p: &RlsParams) -> bool {
        p.snapshot.is_none()
    }

    fn validate(p: &RlsParams) -> Result<(), ParamError> {
        if p.schemas.is_some() && p.tables.is_some() {
            return Err(ParamError::at("tables", "give `schemas` or `tables`, not both"));
        }
        if p.expect.is_some() && p.snapshot.is_some() {
            return Err(ParamError::at("snapshot", "give `expect` (compare) or `snapshot` (write), not both"));
        }
        Ok(())
    }

    fn plan(p: &RlsParams) -> String {
        let url = pg::label(&p.url);
        let scope = match (&p.tables, &p.schemas) {
            (Some(t), _) => format!("tables {}", t.join(", ")),
            (None, Some(s)) => format!("schemas {}", s.join(", ")),
            (None, None) => "schema public".into(),
        };
        match (&p.expect, &p.snapshot) {
            (_, Some(s)) => format!("write the RLS policies of {scope} in {url} to {s}"),
            (Some(e), _) => format!("check RLS on {scope} in {url} against {e}"),
            _ => format!("check RLS is enabled on {scope} in {url}"),
        }
    }

    async fn run(&self, ctx: &StepContext, p: RlsParams) -> Result<Outputs, StepError> {
        let (client, label) = pg::connect(&p.url).await?;
        let actual = read(&client, &label, p.schemas.as_deref(), p.tables.as_deref()).await?;
        if let Some(path) = &p.snapshot {
            let path = ctx.work_dir.join(path);
            std::fs::write(&path, to_yaml(&actual))
                .map_err(|e| StepError::failed(format!("cannot write {}: {e}", path.display())))?;
            return Ok(
                serde_json::json!({ "tables_checked": actual.tables.len(), "snapshot": path.display().to_string(), "ok": true }),
            );
        }
        let missing_rls: Vec<&String> = actual.tables.iter().filter(|(_, t)| !t.rls).map(|(n, _)| n).collect();
        let not_forced: Vec<&String> = if p.require_force {
            actual.tables.iter().filter(|(_, t)| !t.force).map(|(n, _)| n).collect()
        } else {
            Vec::new()
        };
        let diff = match &p.expect {
            Some(path) => diff(&load_expected(&ctx.work_dir.join(path))?, &actual),
            None => Vec::new(),
        };
        let ok = missing_rls.is_empty() && not_forced.is_empty() && diff.is_empty();
        let outputs = serde_json::json!({
            "tables_checked": actual.tables.len(),
            "missing_rls": missing_rls,
            "not_forced": not_forced,
            "policy_diff": diff,
            "ok": ok,
        });
        if ok {
            return Ok(outputs);
        }
        let mut msg = String::from("row-level security is not as expected:");
        for t in &missing_rls {
            msg.push_str(&format!("\n  {t}: RLS is disabled"));
        }
        for t in &not_forced {
            msg.push_str(&format!("\n  {t}: RLS is not forced"));
        }
        for d in &diff {
            msg.push_str(&format!("\n  {d}"));
        }
        Err(StepError::failed(msg).with_outputs(outputs).with_hint(
            "fix the policies (or, if the change is intended, write a new expected file with `runbook rls-snapshot`)",
        ))
    }
}

/// What the database has, table by table.
pub async fn read(
    client: &tokio_postgres::Client,
    label: &str,
    schemas: Option<&[String]>,
    tables: Option<&[String]>,
) -> Result<Snapshot, StepError> {
    let schemas: Vec<String> = schemas.map(<[String]>::to_vec).unwrap_or_else(|| vec!["public".into()]);
    let wanted: Option<Vec<String>> =
        tables.map(|t| t.iter().map(|x| if x.contains('.') { x.clone() } else { format!("public.{x}") }).collect());
    let rows = client
        .query(
            "select n.nspname || '.' || c.relname, c.relrowsecurity, c.relforcerowsecurity
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where c.relkind in ('r', 'p') and (n.nspname = any($1) or (n.nspname || '.' || c.relname) = any($2))
              order by 1",
            &[&schemas_for(&schemas, &wanted), &wanted.clone().unwrap_or_default()],
        )
        .await
        .map_err(|e| pg::query_error(label, &e))?;
    let mut snap = Snapshot::default();
    for r in &rows {
        snap.tables.insert(r.get(0), TableRls { rls: r.get(1), force: r.get(2), policies: Vec::new() });
    }
    if let Some(w) = &wanted {
        for t in w {
            if !snap.tables.contains_key(t) {
                return Err(StepError::failed(format!("{label}: table {t} does not exist")));
            }
        }
    }
    let policies = client
        .query(
            "select schemaname || '.' || tablename, policyname::text, permissive, array_to_string(roles, ','), cmd, qual, with_check
               from pg_policies order by 1, 2",
            &[],
        )
        .await
        .map_err(|e| pg::query_error(label, &e))?;
    for r in &policies {
        let table: String = r.get(0);
        if let Some(t) = snap.tables.get_mut(&table) {
            let roles: String = r.get(3);
            t.policies.push(Policy {
                name: r.get(1),
                permissive: r.get(2),
                roles: roles.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
                cmd: r.get(4),
                qual: r.get(5),
                with_check: r.get(6),
            });
        }
    }
    Ok(snap)
}

fn schemas_for(schemas: &[String], wanted: &Option<Vec<String>>) -> Vec<String> {
    if wanted.is_some() { Vec::new() } else { schemas.to_vec() }
}

fn load_expected(path: &Path) -> Result<Snapshot, StepError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| StepError::failed(format!("cannot read the expected policies {file}: {e}")))?;
    let limits = crate::playbook::node::Limits { max_depth: 16, max_nodes: 1_000_000, max_bytes: 64 << 20 };
    let node = crate::playbook::node::parse(&text, limits)
        .map_err(|e| StepError::failed(format!("{file}:{}:{}: invalid YAML: {}", e.pos.line, e.pos.col, e.message)))?;
    serde_path_to_error::deserialize::<_, Snapshot>(node.to_json()).map_err(|e| {
        let path = crate::playbook::node::segs(e.path());
        let (_, pos) = node.locate(&path);
        StepError::failed(format!("{file}:{}:{}: `{}`: {}", pos.line, pos.col, e.path(), e.inner()))
            .with_hint("write the file with `runbook rls-snapshot URL > FILE` from a healthy database")
    })
}

/// Every difference, one line each, in table order.
pub fn diff(expected: &Snapshot, actual: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (name, want) in &expected.tables {
        let Some(have) = actual.tables.get(name) else {
            out.push(format!("{name}: table is missing"));
            continue;
        };
        if want.rls != have.rls {
            out.push(format!("{name}: RLS expected {}, found {}", on(want.rls), on(have.rls)));
        }
        if want.force != have.force {
            out.push(format!("{name}: FORCE RLS expected {}, found {}", on(want.force), on(have.force)));
        }
        for p in &want.policies {
            match have.policies.iter().find(|h| h.name == p.name) {
                None => out.push(format!("{name}: policy `{}` is missing", p.name)),
                Some(h) if h != p => {
                    for (field, a, b) in [
                        ("permissive", Some(&p.permissive), Some(&h.permissive)),
                        ("cmd", Some(&p.cmd), Some(&h.cmd)),
                        ("qual", p.qual.as_ref(), h.qual.as_ref()),
                        ("with_check", p.with_check.as_ref(), h.with_check.as_ref()),
                    ] {
                        if a != b {
                            out.push(format!("{name}: policy `{}` {field}: expected {a:?}, found {b:?}", p.name));
                        }
                    }
                    if p.roles != h.roles {
                        out.push(format!(
                            "{name}: policy `{}` roles: expected {:?}, found {:?}",
                            p.name, p.roles, h.roles
                        ));
                    }
                }
                Some(_) => {}
            }
        }
        for h in &have.policies {
            if !want.policies.iter().any(|p| p.name == h.name) {
                out.push(format!("{name}: unexpected policy `{}`", h.name));
            }
        }
    }
    for name in actual.tables.keys() {
        if !expected.tables.contains_key(name) {
            out.push(format!("{name}: table is not in the expected file"));
        }
    }
    out
}

fn on(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// The expected-policies file, as YAML people can review in a PR.
pub fn to_yaml(s: &Snapshot) -> String {
    let q = |v: &str| serde_json::to_string(v).unwrap_or_default();
    let opt = |v: &Option<String>| v.as_deref().map_or("null".to_owned(), q);
    let mut out =
        String::from("# Expected row-level security, written by runbook. Review changes to it like code.\ntables:\n");
    for (name, t) in &s.tables {
        out.push_str(&format!("  {}:\n    rls: {}\n    force: {}\n", q(name), t.rls, t.force));
        if t.policies.is_empty() {
            out.push_str("    policies: []\n");
            continue;
        }
        out.push_str("    policies:\n");
        for p in &t.policies {
            out.push_str(&format!(
                "      - name: {}\n        permissive: {}\n        roles: [{}]\n        cmd: {}\n        qual: {}\n        with_check: {}\n",
                q(&p.name),
                q(&p.permissive),
                p.roles.iter().map(|r| q(r)).collect::<Vec<_>>().join(", "),
                q(&p.cmd),
                opt(&p.qual),
                opt(&p.with_check)
            ));
        }
    }
    out
}
