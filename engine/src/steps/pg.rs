//! PostgreSQL plumbing shared by the database steps: connecting with errors that say what
//! to do, rows as JSON, JSON values as query parameters, and running the client tools
//! (`pg_dump`, `pg_restore`, `psql`, `pg_ctl`) without putting a password on a command line.

use super::StepError;
use bytes::BytesMut;
use serde_json::{Map, Value};
use std::error::Error as _;
use std::time::Duration;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Config, NoTls, Row};

/// A parsed connection string, and how to name it without the password.
pub struct Target {
    pub config: Config,
    pub label: String,
}

pub fn target(url: &str) -> Result<Target, StepError> {
    let mut config: Config = url.parse().map_err(|e| {
        StepError::failed(format!("invalid PostgreSQL connection string: {e}"))
            .with_hint("write it as postgresql://user:password@host:5432/dbname")
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("runbook");
    }
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let label = format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or(config.get_user().unwrap_or("postgres"))
    );
    Ok(Target { config, label })
}

/// Connects; the connection task lives as long as the client.
///
/// TLS follows libpq: `sslmode=disable` never, `prefer` (the default) when the server
/// offers it, `require` always. As with libpq's `require`, the server certificate is not
/// checked against a CA (Supabase's is signed by its own CA): the link is encrypted, not
/// authenticated. `verify-full` is not supported yet and is refused by the parser.
pub async fn connect(url: &str) -> Result<(Client, String), StepError> {
    let t = target(url)?;
    let client = if t.config.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
        open(&t, NoTls).await?
    } else {
        open(&t, tls()).await?
    };
    Ok((client, t.label))
}

async fn open<T>(t: &Target, tls: T) -> Result<Client, StepError>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, conn) = t.config.connect(tls).await.map_err(|e| connect_error(&t.label, &e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn tls() -> tokio_postgres_rustls::MakeRustlsConnect {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the default TLS versions are supported")
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(EncryptOnly(provider)))
        .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

/// libpq's `sslmode=require`: any certificate is accepted, but the handshake signatures
/// are still checked (the server proves it holds the certificate's key).
#[derive(Debug)]
struct EncryptOnly(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn connect_error(label: &str, e: &tokio_postgres::Error) -> StepError {
    if let Some(db) = e.as_db_error() {
        let hint = match db.code().code() {
            "28P01" | "28000" => "check the user and password in the connection string",
            "3D000" => "check the database name in the connection string",
            _ => "check the connection string and the server's pg_hba.conf",
        };
        return StepError::failed(format!("cannot connect to {label}: {}", db.message())).with_hint(hint);
    }
    StepError::failed(format!("cannot connect to {label}: {}", describe_error(e)))
        .with_hint("is the server running and reachable from here (host, port, firewall)?")
}

/// PostgreSQL's own words with the SQLSTATE, or the cause of a broken connection: the
/// error's own text says only "db error" or "error communicating with the server".
pub fn describe_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.source().map(|s| s.to_string()).unwrap_or_else(|| e.to_string()),
    }
}

/// A query error with PostgreSQL's own words (and its hint, if it gave one).
pub fn query_error(label: &str, e: &tokio_postgres::Error) -> StepError {
    let err = StepError::failed(format!("{label}: {}", describe_error(e)));
    match e.as_db_error().and_then(|db| db.hint()) {
        Some(h) => err.with_hint(h.to_owned()),
        None => err,
    }
}

/// Any column value, decoded from PostgreSQL's binary format by type.
pub struct Cell(pub Value);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        use postgres_protocol::types as t;
        let v = match *ty {
            Type::BOOL => Value::Bool(t::bool_from_sql(raw)?),
            Type::INT2 => Value::from(t::int2_from_sql(raw)?),
            Type::INT4 => Value::from(t::int4_from_sql(raw)?),
            Type::INT8 => Value::from(t::int8_from_sql(raw)?),
            Type::OID => Value::from(t::oid_from_sql(raw)?),
            Type::FLOAT4 => float(t::float4_from_sql(raw)? as f64),
            Type::FLOAT8 => float(t::float8_from_sql(raw)?),
            Type::NUMERIC => numeric(raw)?,
            Type::JSON => serde_json::from_slice(raw)?,
            Type::JSONB => serde_json::from_slice(raw.get(1..).unwrap_or_default())?,
            Type::TIMESTAMPTZ | Type::TIMESTAMP => {
                let micros = t::timestamp_from_sql(raw)?;
                // PostgreSQL counts from 2000-01-01 00:00:00 UTC.
                let ts = jiff::Timestamp::from_microsecond(micros + 946_684_800_000_000)?;
                Value::String(ts.to_string())
            }
            Type::DATE => {
                let days = t::date_from_sql(raw)?;
                let d = jiff::civil::date(2000, 1, 1).checked_add(jiff::Span::new().days(days as i64))?;
                Value::String(d.to_string())
            }
            Type::UUID => {
                let b = t::uuid_from_sql(raw)?;
                let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
                Value::String(format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]))
            }
            Type::BYTEA => Value::String(format!("\\x{}", raw.iter().map(|x| format!("{x:02x}")).collect::<String>())),
            _ if is_texty(ty) => Value::String(String::from_utf8_lossy(raw).into_owned()),
            _ => Value::String(format!("<{} value; cast it to text in the query>", ty.name())),
        };
        Ok(Cell(v))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Cell(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

fn is_texty(ty: &Type) -> bool {
    matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::CHAR)
        || ty.name() == "citext"
        || matches!(ty.kind(), tokio_postgres::types::Kind::Enum(_))
}

fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// NUMERIC: a number when it fits an f64 without losing digits that matter, else text.
fn numeric(raw: &[u8]) -> Result<Value, Box<dyn std::error::Error + Sync + Send>> {
    if raw.len() < 8 {
        return Err("short numeric".into());
    }
    let rd = |i: usize| i16::from_be_bytes([raw[i], raw[i + 1]]);
    let (ndigits, weight, sign, dscale) = (rd(0) as usize, rd(2) as i32, rd(4) as u16, rd(6) as usize);
    if sign == 0xC000 {
        return Ok(Value::String("NaN".into()));
    }
    let digits: Vec<i16> = (0..ndigits).map(|i| rd(8 + 2 * i)).collect();
    let mut int_part = String::new();
    for w in 0..=weight.max(0) {
        let d = if w <= weight { digits.get(w as usize).copied().unwrap_or(0) } else { 0 };
        if int_part.is_empty() {
            if weight >= 0 {
                int_part.push_str(&d.to_string());
            }
        } else {
            int_part.push_str(&format!("{d:04}"));
        }
    }
    if int_part.is_empty() {
        int_part.push('0');
    }
    let mut frac = String::new();
    let mut idx = weight + 1;
    while frac.len() < dscale {
        let d = if idx < 0 { 0 } else { digits.get(idx as usize).copied().unwrap_or(0) };
        frac.push_str(&format!("{d:04}"));
        idx += 1;
    }
    frac.truncate(dscale);
    let text =
        format!("{}{int_part}{}{frac}", if sign == 0x4000 { "-" } else { "" }, if dscale > 0 { "." } else { "" });
    if dscale == 0 {
        if let Ok(i) = text.parse::<i64>() {
            return Ok(Value::from(i));
        }
    } else if text.len() <= 15
        && let Ok(f) = text.parse::<f64>()
    {
        return Ok(float(f));
    }
    Ok(Value::String(text))
}

pub fn row_json(row: &Row) -> Result<Value, StepError> {
    let mut m = Map::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let cell: Cell = row.try_get(i).map_err(|e| StepError::failed(format!("column `{}`: {}", col.name(), e)))?;
        m.insert(col.name().to_owned(), cell.0);
    }
    Ok(Value::Object(m))
}

/// A JSON value sent as a parameter of the type the server expects.
#[derive(Debug)]
pub struct Param(pub Value);

impl ToSql for Param {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres_protocol::types as t;
        let v = &self.0;
        if v.is_null() {
            return Ok(IsNull::Yes);
        }
        let text = || match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let int = || -> Result<i64, Box<dyn std::error::Error + Sync + Send>> {
            match v {
                Value::Number(n) => n.as_i64().ok_or_else(|| format!("`{n}` is not an integer").into()),
                Value::String(s) => Ok(s.trim().parse::<i64>()?),
                Value::Bool(b) => Ok(*b as i64),
                other => Err(format!("`{other}` is not an integer").into()),
            }
        };
        match *ty {
            Type::BOOL => t::bool_to_sql(
                match v {
                    Value::Bool(b) => *b,
                    Value::String(s) => matches!(s.as_str(), "true" | "t" | "1"),
                    _ => return Err(format!("`{v}` is not a boolean").into()),
                },
                out,
            ),
            Type::INT2 => t::int2_to_sql(i16::try_from(int()?)?, out),
            Type::INT4 => t::int4_to_sql(i32::try_from(int()?)?, out),
            Type::INT8 => t::int8_to_sql(int()?, out),
            Type::FLOAT4 | Type::FLOAT8 => {
                let f = match v {
                    Value::Number(n) => n.as_f64().unwrap_or(0.0),
                    Value::String(s) => s.trim().parse::<f64>()?,
                    _ => return Err(format!("`{v}` is not a number").into()),
                };
                if *ty == Type::FLOAT4 { t::float4_to_sql(f as f32, out) } else { t::float8_to_sql(f, out) }
            }
            Type::JSON => out.extend_from_slice(serde_json::to_string(v)?.as_bytes()),
            Type::JSONB => {
                out.extend_from_slice(&[1]);
                out.extend_from_slice(serde_json::to_string(v)?.as_bytes());
            }
            Type::TIMESTAMPTZ | Type::TIMESTAMP => {
                let ts: jiff::Timestamp = text().parse()?;
                t::timestamp_to_sql(ts.as_microsecond() - 946_684_800_000_000, out);
            }
            _ if is_texty(ty) => t::text_to_sql(&text(), out),
            _ => {
                return Err(format!(
                    "runbook cannot send a parameter of type {} yet; cast it in the query, e.g. `$1::text::{}`",
                    ty.name(),
                    ty.name()
                )
                .into());
            }
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Environment for the client tools: the password goes in PGPASSWORD, never on argv.
pub fn tool_env(url: &str) -> Result<(String, Vec<(String, String)>), StepError> {
    let t = target(url)?;
    let mut env = vec![("PGCONNECT_TIMEOUT".to_owned(), "10".to_owned())];
    if let Some(pw) = t.config.get_password() {
        env.push(("PGPASSWORD".to_owned(), String::from_utf8_lossy(pw).into_owned()));
    }
    Ok((strip_password(url), env))
}

/// The connection string without its password (URL or key=value form).
pub fn strip_password(url: &str) -> String {
    if let Ok(mut u) = reqwest::Url::parse(url) {
        if u.password().is_some() {
            let _ = u.set_password(None);
        }
        return u.to_string();
    }
    url.split_whitespace().filter(|kv| !kv.starts_with("password=")).collect::<Vec<_>>().join(" ")
}

/// Finds a PostgreSQL program: `$RUNBOOK_PG_BIN`, then the newest /usr/lib/postgresql/*/bin
/// (Debian keeps server programs there, off PATH), then PATH.
pub fn program(name: &str) -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("RUNBOOK_PG_BIN") {
        return std::path::Path::new(&dir).join(name);
    }
    let mut versions: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin").join(name))))
        .filter(|(_, p): &(u32, std::path::PathBuf)| p.exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p).unwrap_or_else(|| name.into())
}

/// A command for a PostgreSQL program, dropped to `user` with runuser(1) when given.
pub fn pg_command(program: &str, user: Option<&str>) -> tokio::process::Command {
    let prog = self::program(program);
    let mut c = match user {
        Some(u) => {
            let mut c = tokio::process::Command::new("runuser");
            c.args(["-u", u, "--"]).arg(prog);
            c
        }
        None => tokio::process::Command::new(prog),
    };
    c.stdin(std::process::Stdio::null()).kill_on_drop(true);
    c
}

/// How plans name a database: `user@host:port/db`, or the text as given (without any
/// password) when it is not a connection string yet (a placeholder in a dry run).
pub fn label(url: &str) -> String {
    target(url).map(|t| t.label).unwrap_or_else(|_| strip_password(url))
}
