//! `pg-restore`: put back the rows of chosen tables (or a whole dump) from a `pg-dump`.
//!
//! A table restore runs in ONE transaction on the target: the chosen tables are emptied
//! with a single `TRUNCATE ONLY a, b, ...` (so foreign keys between them are no obstacle),
//! their user triggers are disabled for the load (by name, and re-enabled as they were, so
//! an audit or `updated_at` trigger does not fire a second time on restored rows), the data
//! is loaded parents first, the sequences the tables own are set back, and only then is
//! the transaction committed. A table outside the set that references one of them is a
//! refusal naming it: a silent CASCADE would empty tables nobody asked to restore.
//!
//! The dump is never held in memory: `pg_restore` writes SQL into a pipe that runbook
//! copies into `psql` in small chunks while other tasks drain both programs' output, so
//! neither can block on a full pipe. The bytes are passed through untouched (a LATIN1
//! dump sets its own `client_encoding`), and `COMMIT` is only written once `pg_restore`
//! has exited cleanly: a dump cut short rolls back instead of committing half the rows.

use super::pg;
use super::pg::pg_command;
use super::support::tail_lines;
use super::{Outputs, ParamError, StepContext, StepError, TypedStep};
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;
use tokio::io::AsyncReadExt;

pub struct PgRestore;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreParams {
    /// The database to restore into.
    pub url: String,
    /// A dump written by `pg-dump` (custom format for table-by-table restores).
    pub from: String,
    /// Restore only these tables: `schema.table` or `table` (schema `public`), written as
    /// in SQL: an unquoted name folds to lower case (`public.Orders` is `public.orders`),
    /// a quoted one is exact (`public."Orders"`). Their rows are replaced; their schema,
    /// policies and grants are kept. Empty: restore the whole dump.
    #[serde(default)]
    pub tables: Vec<String>,
    /// The chosen tables' user triggers during the load: `disable` (the default; restored
    /// rows are not new events, so audit/`updated_at`/counter triggers must not run on
    /// them) or `fire`. Constraint triggers of foreign keys always run.
    #[serde(default)]
    pub triggers: Triggers,
    /// A database this restore must never write to (production, the dump's source): the
    /// step is refused, before it connects, when `url` is the same host, port and database.
    #[serde(default)]
    pub not_same_as: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Triggers {
    #[default]
    Disable,
    Fire,
}

/// A table name as PostgreSQL resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    /// `"schema"."name"`, safe to put in SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.quoted())
    }
}

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Parses `schema.table` the way PostgreSQL reads a qualified name: quoted parts are
/// exact (`""` is a quote), unquoted parts fold ASCII letters to lower case. Anything else
/// (`;`, spaces inside a name, a third part) is an error, so a name can never carry SQL.
pub fn parse_table(text: &str) -> Result<TableName, String> {
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(format!("`{text}`: a quoted name is not closed")),
                }
            }
            if part.is_empty() {
                return Err(format!("`{text}`: a quoted name is empty"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_alphanumeric() || c == '_' || c == '$' {
                    part.push(c.to_ascii_lowercase());
                    chars.next();
                } else {
                    break;
                }
            }
            if part.is_empty() || part.starts_with(|c: char| c.is_ascii_digit() || c == '$') {
                let at = chars.peek().map_or("the end".to_owned(), |c| format!("`{c}`"));
                return Err(format!(
                    "`{text}`: expected a table name at {at}; write `schema.table`, quoting names with other characters (`public.\"Order Items\"`)"
                ));
            }
        }
        parts.push(part);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some('.') => continue,
            Some(c) => {
                return Err(format!(
                    "`{text}`: unexpected `{c}`; write `schema.table`, quoting names with other characters (`public.\"Order Items\"`)"
                ));
            }
        }
    }
    match parts.len() {
        1 => Ok(TableName { schema: "public".into(), name: parts.remove(0) }),
        2 => Ok(TableName { schema: parts.remove(0), name: parts.remove(0) }),
        _ => Err(format!("`{text}`: a table name has at most two parts, `schema.table`")),
    }
}

impl TypedStep for PgRestore {
    const NAME: &'static str = "pg-restore";
    const SUMMARY: &'static str = "restore chosen tables (or all) from a dump, in one transaction";
    type Params = RestoreParams;

    fn idempotent(_: &RestoreParams) -> bool {
        false
    }

    fn validate(p: &RestoreParams) -> Result<(), ParamError> {
        for (i, t) in p.tables.iter().enumerate() {
            if crate::template::is_template(t) {
                continue;
            }
            parse_table(t).map_err(|e| ParamError::at(&format!("tables.{i}"), e))?;
        }
        Ok(())
    }

    fn plan(p: &RestoreParams) -> String {
        let url = pg::label(&p.url);
        if p.tables.is_empty() {
            format!("restore all of {} into {url}", p.from)
        } else {
            format!("replace the rows of {} in {url} with those in {}", p.tables.join(", "), p.from)
        }
    }

    async fn run(&self, ctx: &StepContext, p: RestoreParams) -> Result<Outputs, StepError> {
        let started = Instant::now();
        super::same_db::refuse_same(&p.url, p.not_same_as.as_deref(), &pg::label(&p.url)).await?;
        let from = ctx.work_dir.join(&p.from);
        if !from.is_file() {
            return Err(StepError::failed(format!("dump {} does not exist", from.display())));
        }
        let mut tables = Vec::new();
        for t in &p.tables {
            tables.push(parse_table(t).map_err(|e| StepError::failed(format!("tables: {e}")))?);
        }
        let custom = std::fs::File::open(&from)
            .and_then(|mut f| {
                let mut magic = [0u8; 5];
                f.read_exact(&mut magic).map(|_| &magic == b"PGDMP")
            })
            .unwrap_or(false);
        let (conn, env) = pg::tool_env(&p.url)?;
        if tables.is_empty() {
            whole(&from, custom, &conn, &env, &ctx.step_id).await?;
            return Ok(serde_json::json!({ "tables": {}, "duration_ms": started.elapsed().as_millis() as u64 }));
        }
        if !custom {
            return Err(StepError::failed(
                "restoring chosen tables needs a custom-format dump (`format: custom` in pg-dump)",
            )
            .with_hint("restore the whole plain dump (no `tables`) or dump again with format: custom"));
        }
        // Every name must be in the dump before the target is even looked at.
        let toc = list(&from).await?;
        let mut data = HashMap::new();
        for t in &tables {
            data.insert(t.quoted(), toc.find("TABLE DATA", t, &from)?);
        }
        let (client, label) = pg::connect(&p.url).await?;
        let target = Target::inspect(&client, &label, &tables).await?;
        // The dump's entries for the chosen tables (parents first) and their sequences.
        let mut entries: Vec<Vec<u8>> = target.order.iter().map(|t| data[&t.quoted()].clone()).collect();
        let mut sequences = Vec::new();
        for s in &target.sequences {
            // A sequence the dump does not have (added since) is left as it is.
            if let Ok(line) = toc.find("SEQUENCE SET", s, &from) {
                entries.push(line);
                sequences.push(s.to_string());
            }
        }
        let list_file = std::env::temp_dir().join(format!(
            "runbook-{}-{}-{}.list",
            std::process::id(),
            ctx.run_id.replace('/', "_"),
            ctx.step_id.replace('/', "_")
        ));
        std::fs::write(&list_file, entries.join(&b'\n').into_iter().chain([b'\n']).collect::<Vec<u8>>())
            .map_err(|e| StepError::failed(format!("cannot write {}: {e}", list_file.display())))?;
        let mut pre = String::from("BEGIN;\nSET CONSTRAINTS ALL DEFERRED;\n");
        let mut post = String::from("SET client_encoding = 'UTF8';\n");
        if p.triggers == Triggers::Disable {
            for (t, name, mode) in &target.triggers {
                pre.push_str(&format!("ALTER TABLE {} DISABLE TRIGGER {};\n", t.quoted(), quote_ident(name)));
                let how = match mode {
                    'A' => "ENABLE ALWAYS",
                    'R' => "ENABLE REPLICA",
                    _ => "ENABLE",
                };
                post.push_str(&format!("ALTER TABLE {} {how} TRIGGER {};\n", t.quoted(), quote_ident(name)));
            }
        }
        let names: Vec<String> = target.order.iter().map(TableName::quoted).collect();
        pre.push_str(&format!("TRUNCATE ONLY {};\n", names.join(", ")));
        post.push_str("COMMIT;\n");
        let loaded = load(&from, &list_file, &conn, &env, &pre, &post).await;
        let _ = std::fs::remove_file(&list_file);
        loaded?;
        let mut rows = serde_json::Map::new();
        for (text, t) in p.tables.iter().zip(&tables) {
            let q = format!("select count(*) from {}", t.quoted());
            let n: i64 = client.query_one(&q, &[]).await.map_err(|e| pg::query_error(&label, &e))?.get(0);
            rows.insert(text.trim().to_owned(), n.into());
        }
        Ok(serde_json::json!({
            "tables": rows,
            "sequences": sequences,
            "triggers_disabled": if p.triggers == Triggers::Disable { target.triggers.len() } else { 0 },
            "duration_ms": started.elapsed().as_millis() as u64,
        }))
    }
}

/// A whole dump: the client tool reads the file itself, in one transaction.
async fn whole(from: &Path, custom: bool, conn: &str, env: &[(String, String)], step: &str) -> Result<(), StepError> {
    let mut cmd = if custom {
        let mut c = pg_command("pg_restore", None);
        c.arg("--dbname").arg(conn).args(["--no-password", "--single-transaction", "--exit-on-error"]).arg(from);
        c
    } else {
        let mut c = pg_command("psql", None);
        c.arg("--dbname")
            .arg(conn)
            .args([
                "--no-password",
                "--no-psqlrc",
                "--quiet",
                "--single-transaction",
                "-v",
                "ON_ERROR_STOP=1",
                "--file",
            ])
            .arg(from);
        c
    };
    cmd.envs(env.iter().cloned());
    let out = super::support::output_in_group(cmd, step).await.map_err(tool_missing)?;
    if !out.status.success() {
        return Err(StepError::failed(format!(
            "the restore was rolled back: {}",
            tail_lines(&String::from_utf8_lossy(&out.stderr), 5)
        )));
    }
    Ok(())
}

fn tool_missing(e: std::io::Error) -> StepError {
    StepError::failed(format!("cannot run the PostgreSQL client: {e}"))
        .with_hint("install the PostgreSQL client (postgresql-client) or set RUNBOOK_PG_BIN")
}

/// `pg_restore --list`: the dump's table of contents. pg_restore prints names as the
/// dump stores them, in the dump's encoding, so lines are kept as bytes.
struct Toc {
    lines: Vec<Vec<u8>>,
    encoding: String,
}

async fn list(from: &Path) -> Result<Toc, StepError> {
    let out = pg_command("pg_restore", None).arg("--list").arg(from).output().await.map_err(tool_missing)?;
    if !out.status.success() {
        return Err(StepError::failed(format!(
            "cannot read the dump {}: {}",
            from.display(),
            tail_lines(&String::from_utf8_lossy(&out.stderr), 3)
        )));
    }
    let lines: Vec<Vec<u8>> = out.stdout.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    // The list does not say the encoding; the preamble of an empty selection does.
    let pre = pg_command("pg_restore", None)
        .args(["--file=-", "--use-list=/dev/null"])
        .arg(from)
        .output()
        .await
        .map_err(tool_missing)?;
    let encoding = String::from_utf8_lossy(&pre.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("SET client_encoding = '").and_then(|e| e.strip_suffix("';")).map(str::to_owned))
        .unwrap_or_else(|| "UTF8".into());
    Ok(Toc { lines, encoding })
}

impl Toc {
    /// A name in the dump's encoding: UTF-8 and SQL_ASCII dumps hold UTF-8 text, LATIN1
    /// one byte per character; other encodings only for ASCII names.
    fn encode(&self, name: &str) -> Result<Vec<u8>, StepError> {
        match self.encoding.as_str() {
            "UTF8" | "SQL_ASCII" => Ok(name.as_bytes().to_vec()),
            _ if name.is_ascii() => Ok(name.as_bytes().to_vec()),
            "LATIN1" if name.chars().all(|c| (c as u32) < 256) => Ok(name.chars().map(|c| c as u8).collect()),
            enc => Err(StepError::failed(format!(
                "the name `{name}` has characters runbook cannot look up in a {enc} dump"
            ))
            .with_hint("restore this table with pg_restore by hand, or rename it to ASCII")),
        }
    }

    fn decode(&self, bytes: &[u8]) -> String {
        if self.encoding == "LATIN1" {
            bytes.iter().map(|&b| b as char).collect()
        } else {
            String::from_utf8_lossy(bytes).into_owned()
        }
    }

    /// The entry `N; tableoid oid KIND schema name owner` for exactly this object.
    /// Names are printed unquoted and space-separated, so a match must be unique.
    fn find(&self, kind: &str, t: &TableName, from: &Path) -> Result<Vec<u8>, StepError> {
        let mut key = format!("{kind} ").into_bytes();
        key.extend(self.encode(&t.schema)?);
        key.push(b' ');
        key.extend(self.encode(&t.name)?);
        let hits: Vec<&Vec<u8>> = self
            .lines
            .iter()
            .filter(|l| !l.starts_with(b";"))
            .filter(|l| {
                // Skip "N;", the table oid and the object oid.
                let mut rest: &[u8] = l;
                for _ in 0..3 {
                    match rest.iter().position(|&b| b == b' ') {
                        Some(i) => rest = &rest[i + 1..],
                        None => return false,
                    }
                }
                rest == key.as_slice() || (rest.starts_with(&key) && rest.get(key.len()) == Some(&b' '))
            })
            .collect();
        match hits.as_slice() {
            [one] => Ok((*one).clone()),
            [] => {
                let marker = format!(" {kind} ");
                let have: Vec<String> = self
                    .lines
                    .iter()
                    .map(|l| self.decode(l))
                    .filter_map(|l| l.split_once(&marker).map(|(_, r)| r.to_owned()))
                    .map(|r| r.rsplit_once(' ').map_or(r.clone(), |(n, _)| n.replacen(' ', ".", 1)))
                    .collect();
                Err(StepError::failed(format!(
                    "table {t} is not in the dump {} (it has data for: {})",
                    from.display(),
                    if have.is_empty() { "no table".to_owned() } else { have.join(", ") }
                ))
                .with_hint("an unquoted name folds to lower case: write a mixed-case name in double quotes, e.g. public.\"Orders\""))
            }
            _ => Err(StepError::failed(format!(
                "table {t} matches several entries of the dump {}; restore it with pg_restore by hand",
                from.display()
            ))),
        }
    }
}

/// What the target database says about the chosen tables.
struct Target {
    /// The tables, parents before the tables that reference them.
    order: Vec<TableName>,
    /// Enabled user triggers on them: (table, trigger, `tgenabled`).
    triggers: Vec<(TableName, String, char)>,
    /// Sequences owned by their columns (serial / identity).
    sequences: Vec<TableName>,
}

impl Target {
    async fn inspect(client: &tokio_postgres::Client, label: &str, tables: &[TableName]) -> Result<Target, StepError> {
        let q = |e: tokio_postgres::Error| pg::query_error(label, &e);
        let mut oids = Vec::new();
        for t in tables {
            let row = client
                .query_opt(
                    "select c.oid, c.relkind::text from pg_class c join pg_namespace n on n.oid = c.relnamespace \
                     where n.nspname = $1 and c.relname = $2",
                    &[&t.schema, &t.name],
                )
                .await
                .map_err(q)?;
            let Some(row) = row else {
                return Err(StepError::failed(format!("table {t} does not exist in {label}"))
                    .with_hint("pg-restore replaces the rows of existing tables; restore the schema first (a whole-dump restore), or check the name's case"));
            };
            let kind: String = row.get(1);
            if kind != "r" {
                return Err(StepError::failed(format!(
                    "{t} is not a plain table (relkind {kind}); list a partitioned table's partitions instead"
                )));
            }
            let oid: u32 = row.get(0);
            if oids.contains(&oid) {
                return Err(StepError::failed(format!("table {t} is listed twice in `tables`")));
            }
            oids.push(oid);
        }
        let name_of: HashMap<u32, TableName> = oids.iter().copied().zip(tables.iter().cloned()).collect();
        // Referenced from outside the set: TRUNCATE would fail, CASCADE would empty them.
        let outside = client
            .query(
                "select conrelid::regclass::text, confrelid, conname from pg_constraint \
                 where contype = 'f' and confrelid = any($1) and not conrelid = any($1) order by 1, 3",
                &[&oids],
            )
            .await
            .map_err(q)?;
        if let Some(r) = outside.first() {
            let (from, to, name): (String, u32, String) = (r.get(0), r.get(1), r.get(2));
            return Err(StepError::failed(format!(
                "table {from} references {} (foreign key {}), and is not in `tables`",
                name_of[&to],
                quote_ident(&name)
            ))
            .with_hint(format!(
                "add {from} to `tables` so both are restored together; runbook never empties a table you did not list (no TRUNCATE ... CASCADE)"
            )));
        }
        let edges = client
            .query(
                "select conrelid, confrelid from pg_constraint where contype = 'f' \
                 and conrelid = any($1) and confrelid = any($1) and conrelid <> confrelid",
                &[&oids],
            )
            .await
            .map_err(q)?;
        let parents: Vec<(u32, u32)> = edges.iter().map(|r| (r.get(0), r.get(1))).collect();
        let order = parents_first(&oids, &parents).into_iter().map(|o| name_of[&o].clone()).collect();
        let mut triggers = Vec::new();
        for r in client
            .query(
                "select tgrelid, tgname, tgenabled::text from pg_trigger \
                 where tgrelid = any($1) and not tgisinternal and tgenabled <> 'D' order by 1, 2",
                &[&oids],
            )
            .await
            .map_err(q)?
        {
            let (rel, name, mode): (u32, String, String) = (r.get(0), r.get(1), r.get(2));
            triggers.push((name_of[&rel].clone(), name, mode.chars().next().unwrap_or('O')));
        }
        let mut sequences = Vec::new();
        for r in client
            .query(
                "select n.nspname, s.relname from pg_depend d join pg_class s on s.oid = d.objid and s.relkind = 'S' \
                 join pg_namespace n on n.oid = s.relnamespace \
                 where d.classid = 'pg_class'::regclass and d.refobjid = any($1) and d.deptype in ('a', 'i') order by 1, 2",
                &[&oids],
            )
            .await
            .map_err(q)?
        {
            sequences.push(TableName { schema: r.get(0), name: r.get(1) });
        }
        Ok(Target { order, triggers, sequences })
    }
}

/// Tables ordered so that a referenced table comes before the tables referencing it (a
/// cycle keeps the given order; deferrable keys are deferred to the commit).
fn parents_first(oids: &[u32], child_parent: &[(u32, u32)]) -> Vec<u32> {
    let mut done: Vec<u32> = Vec::new();
    let mut left: Vec<u32> = oids.to_vec();
    while !left.is_empty() {
        let ready = left
            .iter()
            .position(|o| child_parent.iter().all(|(c, p)| c != o || done.contains(p) || !left.contains(p)))
            .unwrap_or(0);
        done.push(left.remove(ready));
    }
    done
}

/// `pg_restore` (data of the listed entries) piped into `psql`, in one transaction.
///
/// psql's stdin is one end of a socket pair, written with `send(MSG_NOSIGNAL)`: when psql
/// quits on an error, runbook gets EPIPE instead of a SIGPIPE that would kill it (it
/// restores SIGPIPE's default disposition for `runbook show | head`).
async fn load(
    from: &Path,
    list_file: &Path,
    conn: &str,
    env: &[(String, String)],
    pre: &str,
    post: &str,
) -> Result<(), StepError> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| StepError::failed(format!("cannot create a socket pair for psql: {e}")))?;
    // The command (and its copy of psql's end) is dropped right after the spawn: with a
    // copy left open here, psql's exit would not be seen as EPIPE.
    let mut psql = {
        let mut cmd = pg_command("psql", None);
        cmd.arg("--dbname")
            .arg(conn)
            .args(["--no-password", "--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1", "--file=-"])
            .envs(env.iter().cloned())
            // Our own statements are UTF-8; the dump switches to its encoding itself.
            .env("PGCLIENTENCODING", "UTF8")
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().map_err(tool_missing)?
    };
    let mut dump = {
        let mut cmd = pg_command("pg_restore", None);
        cmd.args(["--data-only", "--file=-", "--use-list"])
            .arg(list_file)
            .arg(from)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match cmd.spawn() {
            Ok(d) => d,
            Err(e) => {
                let _ = psql.start_kill();
                return Err(tool_missing(e));
            }
        }
    };
    let drain = |r: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
        tokio::spawn(async move {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                // Keep only the end: the error is there.
                let mut chunk = vec![0u8; 64 * 1024];
                while let Ok(n) = r.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.len() > 256 * 1024 {
                        buf.drain(..buf.len() - 128 * 1024);
                    }
                }
            }
            buf
        })
    };
    let psql_out = drain(psql.stdout.take().map(|s| Box::new(s) as _));
    let psql_err = drain(psql.stderr.take().map(|s| Box::new(s) as _));
    let dump_err = drain(dump.stderr.take().map(|s| Box::new(s) as _));
    let source = dump
        .stdout
        .take()
        .expect("piped")
        .into_owned_fd()
        .map_err(|e| StepError::failed(format!("reading pg_restore's output: {e}")))?;
    let pre = pre.to_owned();
    // Copy in 64 KiB chunks on a blocking thread: memory stays flat whatever the dump's size.
    let copied = tokio::task::spawn_blocking(move || -> std::io::Result<std::os::unix::net::UnixStream> {
        use std::io::Read as _;
        set_blocking(&source)?;
        send_all(&ours, pre.as_bytes())?;
        let mut source = std::fs::File::from(source);
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = source.read(&mut chunk)?;
            if n == 0 {
                return Ok(ours);
            }
            send_all(&ours, &chunk[..n])?;
        }
    })
    .await
    .map_err(|e| StepError::failed(format!("copying the dump into psql: {e}")))?;
    let ours = match copied {
        Ok(ours) => ours,
        Err(_) => {
            // psql stopped reading (it hit an error and quit): stop pg_restore too; psql's
            // own error is the one to report.
            let _ = dump.start_kill();
            let _ = dump.wait().await;
            let _ = psql.wait().await;
            let err = psql_err.await.unwrap_or_default();
            return Err(StepError::failed(format!(
                "the restore was rolled back: {}",
                tail_lines(&String::from_utf8_lossy(&err), 5)
            )));
        }
    };
    let dump_status = dump.wait().await.map_err(|e| StepError::failed(format!("waiting for pg_restore: {e}")))?;
    let dump_err = dump_err.await.unwrap_or_default();
    if !dump_status.success() {
        // Never COMMIT what may be half a dump: psql dies without it, and the server
        // rolls the transaction back.
        let _ = psql.start_kill();
        let _ = psql.wait().await;
        return Err(StepError::failed(format!(
            "the restore was rolled back: pg_restore failed: {}",
            tail_lines(&String::from_utf8_lossy(&dump_err), 5)
        )));
    }
    let post = post.to_owned();
    let finished = tokio::task::spawn_blocking(move || send_all(&ours, post.as_bytes()))
        .await
        .map_err(|e| StepError::failed(format!("copying the dump into psql: {e}")))?;
    let status = psql.wait().await.map_err(|e| StepError::failed(format!("waiting for psql: {e}")))?;
    let err = psql_err.await.unwrap_or_default();
    let _ = psql_out.await;
    if !status.success() || finished.is_err() {
        return Err(StepError::failed(format!(
            "the restore was rolled back: {}",
            tail_lines(&String::from_utf8_lossy(&err), 5)
        )));
    }
    Ok(())
}

fn set_blocking(fd: &std::os::fd::OwnedFd) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a descriptor we own, with flags read from it.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Writes all of `buf`; a closed peer is an EPIPE error, never a SIGPIPE.
fn send_all(sock: &std::os::unix::net::UnixStream, mut buf: &[u8]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    while !buf.is_empty() {
        // SAFETY: a valid socket and a live buffer of `buf.len()` bytes.
        let n = unsafe { libc::send(sock.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_like_postgresql() {
        let t = |s| parse_table(s).map(|t| (t.schema, t.name));
        assert_eq!(t("public.Orders"), Ok(("public".into(), "orders".into())));
        assert_eq!(t("public.\"Orders\""), Ok(("public".into(), "Orders".into())));
        assert_eq!(t("Orders"), Ok(("public".into(), "orders".into())));
        assert_eq!(t(" \"My Schema\" . \"a\"\"b\" "), Ok(("My Schema".into(), "a\"b".into())));
        assert_eq!(t("app.café"), Ok(("app".into(), "café".into())));
        assert!(t("orders; drop table users").unwrap_err().contains("unexpected `;`"));
        assert!(t("a.b.c").unwrap_err().contains("at most two parts"));
        assert!(t("\"open").unwrap_err().contains("not closed"));
        assert!(t("public.").unwrap_err().contains("expected a table name"));
        assert!(t("1abc").is_err());
        assert_eq!(parse_table("public.\"Or\"\"ders\"").unwrap().quoted(), "\"public\".\"Or\"\"ders\"");
    }

    #[test]
    fn parents_come_first() {
        // 3 references 2, 2 references 1.
        assert_eq!(parents_first(&[3, 2, 1], &[(3, 2), (2, 1)]), vec![1, 2, 3]);
        // A cycle keeps going instead of looping.
        assert_eq!(parents_first(&[1, 2], &[(1, 2), (2, 1)]).len(), 2);
    }
}
