//! `sql`: run a query on PostgreSQL; outputs `rows` (a list of maps) and `row_count`;
//! optional `expect` assertions fail the step with a message that shows the difference.

use super::pg::{self, Param};
use super::{Outputs, StepContext, StepError, TypedStep};
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

fn read_only(query: &str) -> bool {
    let first = query.trim_start().split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or("");
    matches!(first.to_ascii_lowercase().as_str(), "select" | "show" | "explain" | "values" | "table")
        && !query.trim().trim_end_matches(';').contains(';')
}

impl TypedStep for Sql {
    const NAME: &'static str = "sql";
    const SUMMARY: &'static str = "run a query on PostgreSQL; outputs rows, row_count; optional expect";
    type Params = SqlParams;

    fn idempotent(p: &SqlParams) -> bool {
        read_only(&p.query)
    }

    fn plan(p: &SqlParams) -> String {
        let url = pg::label(&p.url);
        format!("query {url}: {}", p.query.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    async fn run(&self, _ctx: &StepContext, p: SqlParams) -> Result<Outputs, StepError> {
        super::same_db::refuse_same(&p.url, p.not_same_as.as_deref(), &pg::label(&p.url)).await?;
        let (client, label) = pg::connect(&p.url).await?;
        let rows: Vec<Value> = match client.prepare(&p.query).await {
            Ok(stmt) => {
                if stmt.params().len() != p.params.len() {
                    return Err(StepError::failed(format!(
                        "the query has {} placeholder(s) but `params` has {} value(s)",
                        stmt.params().len(),
                        p.params.len()
                    )));
                }
                let params: Vec<Param> = p.params.iter().cloned().map(Param).collect();
                let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|x| x as &(dyn ToSql + Sync)).collect();
                let rows = client.query(&stmt, &refs).await.map_err(|e| pg::query_error(&label, &e))?;
                rows.iter().map(pg::row_json).collect::<Result<_, _>>()?
            }
            // Several statements cannot be prepared: run them as a script.
            Err(e) if p.params.is_empty() && e.code().is_some_and(|c| c.code() == "42601") => {
                script_rows(&client, &p.query, &label).await?
            }
            Err(e) => return Err(pg::query_error(&label, &e)),
        };
        let outputs = serde_json::json!({ "rows": rows, "row_count": rows.len() });
        if let Some(expect) = &p.expect
            && let Err(msg) = check_expect(expect, &rows)
        {
            return Err(StepError::failed(msg).with_outputs(outputs));
        }
        Ok(outputs)
    }
}

async fn script_rows(client: &tokio_postgres::Client, query: &str, label: &str) -> Result<Vec<Value>, StepError> {
    let messages = client.simple_query(query).await.map_err(|e| pg::query_error(label, &e))?;
    let mut rows = Vec::new();
    for m in messages {
        match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                let mut obj = Map::new();
                for (i, c) in r.columns().iter().enumerate() {
                    obj.insert(c.name().to_owned(), r.get(i).map_or(Value::Null, |s| Value::String(s.to_owned())));
                }
                rows.push(Value::Object(obj));
            }
            // Each statement's result replaces the previous one: the last one counts.
            tokio_postgres::SimpleQueryMessage::RowDescription(_) => rows.clear(),
            _ => {}
        }
    }
    Ok(rows)
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

fn check_expect(expect: &Expect, rows: &[Value]) -> Result<(), String> {
    if let Some(n) = expect.row_count
        && rows.len() as u64 != n
    {
        return Err(format!("expected {n} row(s), got {}", rows.len()));
    }
    if let Some(want) = &expect.rows {
        if want.len() != rows.len() {
            return Err(format!("expected {} row(s), got {}: {}", want.len(), rows.len(), Value::Array(rows.to_vec())));
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
    fn read_only_detection_and_expectations() {
        assert!(read_only("  SELECT count(*) from orders"));
        assert!(!read_only("delete from orders"));
        assert!(!read_only("select 1; delete from orders"));
        let e = Expect { row_count: Some(1), rows: Some(vec![serde_json::from_str(r#"{"n": 0}"#).unwrap()]) };
        assert!(check_expect(&e, &[serde_json::json!({"n": 0, "x": 1})]).is_ok());
        assert_eq!(
            check_expect(&e, &[serde_json::json!({"n": 5})]).unwrap_err(),
            "row 0, column `n`: expected 0, got 5"
        );
        assert_eq!(check_expect(&e, &[]).unwrap_err(), "expected 1 row(s), got 0");
    }
}
