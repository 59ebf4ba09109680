//! `sql`: run a query on PostgreSQL; outputs `rows` (a list of maps) and `row_count`;
//! optional `expect` assertions fail the step with a message that shows the difference.

use super::pg::{self, Param};
use super::{Outputs, ParamError, StepContext, StepError, TypedStep};
use futures_util::TryStreamExt;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio_postgres::types::ToSql;

pub struct Sql;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlParams {
    /// postgresql://user:password@host:port/db (usually from a var or a secret).
    pub url: String,
    /// One statement with `$1`, `$2` placeholders; without params, several statements
    /// separated by `;` are run as one script (values of the last result come back as text).
    pub query: String,
    /// Values for `$1`, `$2`, … in the query, sent as bind parameters (never spliced into the SQL).
    #[serde(default)]
    pub params: Vec<Value>,
    /// What the result must be (`row_count`, `rows`); otherwise the step fails.
    #[serde(default)]
    pub expect: Option<Expect>,
    /// A database this query must never run on (production, the source of a restore): the
    /// step is refused, before it connects, when `url` is the same host, port and database.
    #[serde(default)]
    pub not_same_as: Option<String>,
    /// `read` (the default): the query runs in a `READ ONLY` transaction that is rolled
    /// back, so it cannot change anything, whatever its text says; the step is idempotent.
    /// `write`: the query may change data (it is committed), and the step is not re-run
    /// after a crash without asking (unless the step says `idempotent: true`).
    #[serde(default)]
    pub mode: Mode,
    /// At most this many rows are kept in `outputs.rows` (and the journal); the rest are
    /// counted in `row_count` and `rows_dropped` but not held in memory.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
}

/// Enough for any check a runbook makes by eye; a `SELECT *` on a big table stays small.
pub const DEFAULT_MAX_ROWS: usize = 1000;

fn default_max_rows() -> usize {
    DEFAULT_MAX_ROWS
}

/// The first `max` rows, and how many there were in all.
struct Kept {
    rows: Vec<Value>,
    total: u64,
}

#[derive(Debug, Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Read,
    Write,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The exact number of rows.
    #[serde(default)]
    pub row_count: Option<u64>,
    /// The rows, in order; each listed column must equal (other columns are not compared).
    #[serde(default)]
    pub rows: Option<Vec<Map<String, Value>>>,
}

impl TypedStep for Sql {
    const NAME: &'static str = "sql";
    const SUMMARY: &'static str = "run a query on PostgreSQL; outputs rows, row_count; optional expect";
    type Params = SqlParams;

    // Decided by the declared mode, never by the query's text: `explain analyze delete`,
    // `select f()` and `select ... into` all start with a reading word and all write.
    fn idempotent(p: &SqlParams) -> bool {
        p.mode == Mode::Read
    }

    fn validate(p: &SqlParams) -> Result<(), ParamError> {
        match p.expect.as_ref().and_then(|e| e.rows.as_ref()) {
            Some(rows) if rows.len() > p.max_rows => Err(ParamError::at(
                "expect.rows",
                format!("lists {} rows but `max_rows` keeps {}; raise `max_rows`", rows.len(), p.max_rows),
            )),
            _ => Ok(()),
        }
    }

    fn plan(p: &SqlParams) -> String {
        let url = pg::label(&p.url);
        let how = match p.mode {
            Mode::Read => "query (read-only)",
            Mode::Write => "write to",
        };
        format!("{how} {url}: {}", p.query.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    async fn run(&self, _ctx: &StepContext, p: SqlParams) -> Result<Outputs, StepError> {
        super::same_db::refuse_same(&p.url, p.not_same_as.as_deref(), &pg::label(&p.url)).await?;
        let (client, label) = pg::connect(&p.url).await?;
        if p.mode == Mode::Read {
            let kept = read_only_rows(&client, &p, &label).await?;
            return finish(&p, kept);
        }
        let kept = match client.prepare(&p.query).await {
            Ok(stmt) => {
                check_param_count(&stmt, &p)?;
                let (total, raw) = stream_rows(&client, &stmt, &p).await.map_err(|e| pg::query_error(&label, &e))?;
                to_kept(total, &raw)?
            }
            // Several statements cannot be prepared: run them as a script.
            Err(e) if p.params.is_empty() && e.code().is_some_and(|c| c.code() == "42601") => {
                script_rows(&client, &p.query, &label, p.max_rows).await?
            }
            Err(e) => return Err(pg::query_error(&label, &e)),
        };
        finish(&p, kept)
    }
}

fn finish(p: &SqlParams, kept: Kept) -> Result<Outputs, StepError> {
    let dropped = kept.total - kept.rows.len() as u64;
    let outputs = serde_json::json!({ "rows": kept.rows, "row_count": kept.total, "rows_dropped": dropped });
    if let Some(expect) = &p.expect
        && let Err(msg) = check_expect(expect, &kept)
    {
        return Err(StepError::failed(msg).with_outputs(outputs));
    }
    Ok(outputs)
}

/// `mode: read`: one statement, in a transaction the server itself keeps read-only, and
/// rolled back at the end. A single prepared statement cannot end that transaction or
/// switch it to read-write before it has run (PostgreSQL refuses `SET TRANSACTION READ
/// WRITE` after the first query), so nothing it does can be committed.
async fn read_only_rows(client: &tokio_postgres::Client, p: &SqlParams, label: &str) -> Result<Kept, StepError> {
    client.batch_execute("BEGIN READ ONLY").await.map_err(|e| pg::query_error(label, &e))?;
    let stmt = match client.prepare(&p.query).await {
        Ok(s) => s,
        Err(e)
            if e.code().is_some_and(|c| c.code() == "42601") && p.query.trim().trim_end_matches(';').contains(';') =>
        {
            return Err(StepError::failed(format!(
                "{label}: the query has several statements; a `mode: read` query must be one statement"
            ))
            .with_hint("run them as separate steps, or set `mode: write` if the script changes data"));
        }
        Err(e) => return Err(pg::query_error(label, &e)),
    };
    check_param_count(&stmt, p)?;
    let result = stream_rows(client, &stmt, p).await;
    // Whatever happened, nothing is kept; a failed rollback only means the connection is
    // gone, and an uncommitted transaction dies with it.
    let _ = client.batch_execute("ROLLBACK").await;
    let rows = result.map_err(|e| {
        if e.code().is_some_and(|c| c.code() == "25006") {
            StepError::failed(format!(
                "{label}: the query tried to change data, but this step runs read-only (`mode: read`, the default); nothing was changed"
            ))
            .with_hint("if the query is meant to write, set `mode: write` on the step (it is then not re-run after a crash without asking)")
        } else {
            pg::query_error(label, &e)
        }
    })?;
    let (total, raw) = rows;
    to_kept(total, &raw)
}

fn check_param_count(stmt: &tokio_postgres::Statement, p: &SqlParams) -> Result<(), StepError> {
    if stmt.params().len() != p.params.len() {
        return Err(StepError::failed(format!(
            "the query has {} placeholder(s) but `params` has {} value(s)",
            stmt.params().len(),
            p.params.len()
        )));
    }
    Ok(())
}

/// Runs a prepared statement and streams its rows: past `max_rows` they are counted, not
/// held. Returns the count of all rows and the kept ones.
async fn stream_rows(
    client: &tokio_postgres::Client,
    stmt: &tokio_postgres::Statement,
    p: &SqlParams,
) -> Result<(u64, Vec<tokio_postgres::Row>), tokio_postgres::Error> {
    let params: Vec<Param> = p.params.iter().cloned().map(Param).collect();
    let refs = params.iter().map(|x| x as &(dyn ToSql + Sync));
    let stream = client.query_raw(stmt, refs).await?;
    futures_util::pin_mut!(stream);
    let (mut total, mut raw) = (0u64, Vec::new());
    while let Some(row) = stream.try_next().await? {
        total += 1;
        if raw.len() < p.max_rows {
            raw.push(row);
        }
    }
    Ok((total, raw))
}

fn to_kept(total: u64, raw: &[tokio_postgres::Row]) -> Result<Kept, StepError> {
    Ok(Kept { rows: raw.iter().map(pg::row_json).collect::<Result<_, _>>()?, total })
}

async fn script_rows(
    client: &tokio_postgres::Client,
    query: &str,
    label: &str,
    max_rows: usize,
) -> Result<Kept, StepError> {
    let stream = client.simple_query_raw(query).await.map_err(|e| pg::query_error(label, &e))?;
    futures_util::pin_mut!(stream);
    let mut kept = Kept { rows: Vec::new(), total: 0 };
    while let Some(m) = stream.try_next().await.map_err(|e| pg::query_error(label, &e))? {
        match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                kept.total += 1;
                if kept.rows.len() >= max_rows {
                    continue;
                }
                let mut obj = Map::new();
                for (i, c) in r.columns().iter().enumerate() {
                    obj.insert(c.name().to_owned(), r.get(i).map_or(Value::Null, |s| Value::String(s.to_owned())));
                }
                kept.rows.push(Value::Object(obj));
            }
            // Each statement's result replaces the previous one: the last one counts.
            tokio_postgres::SimpleQueryMessage::RowDescription(_) => kept = Kept { rows: Vec::new(), total: 0 },
            _ => {}
        }
    }
    Ok(kept)
}

fn same(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Number(a), Value::String(b)) | (Value::String(b), Value::Number(a)) => {
            b.parse::<f64>().ok() == a.as_f64()
        }
        (Value::Bool(a), Value::String(b)) | (Value::String(b), Value::Bool(a)) => {
            (b == "t" || b == "true") == *a && matches!(b.as_str(), "t" | "f" | "true" | "false")
        }
        _ => expected == actual,
    }
}

fn check_expect(expect: &Expect, kept: &Kept) -> Result<(), String> {
    let rows = &kept.rows[..];
    if let Some(n) = expect.row_count
        && kept.total != n
    {
        return Err(format!("expected {n} row(s), got {}", kept.total));
    }
    if let Some(want) = &expect.rows {
        if want.len() as u64 != kept.total {
            let shown = if kept.total > rows.len() as u64 { " (the first ones)" } else { "" };
            return Err(format!(
                "expected {} row(s), got {}{shown}: {}",
                want.len(),
                kept.total,
                Value::Array(rows.to_vec())
            ));
        }
        for (i, (w, got)) in want.iter().zip(rows).enumerate() {
            for (col, value) in w {
                match got.get(col) {
                    None => return Err(format!("row {i}: the result has no column `{col}`")),
                    Some(actual) if !same(value, actual) => {
                        return Err(format!("row {i}, column `{col}`: expected {value}, got {actual}"));
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations() {
        let e = Expect { row_count: Some(1), rows: Some(vec![serde_json::from_str(r#"{"n": 0}"#).unwrap()]) };
        let kept = |rows: Vec<Value>| Kept { total: rows.len() as u64, rows };
        assert!(check_expect(&e, &kept(vec![serde_json::json!({"n": 0, "x": 1})])).is_ok());
        assert_eq!(
            check_expect(&e, &kept(vec![serde_json::json!({"n": 5})])).unwrap_err(),
            "row 0, column `n`: expected 0, got 5"
        );
        assert_eq!(check_expect(&e, &kept(vec![])).unwrap_err(), "expected 1 row(s), got 0");
        // row_count counts the dropped rows too.
        let counted = Expect { row_count: Some(5000), rows: None };
        assert!(check_expect(&counted, &Kept { rows: vec![], total: 5000 }).is_ok());
    }
}
