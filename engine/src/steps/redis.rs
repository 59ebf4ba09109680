//! `redis-ping`: is Redis there, and how fast? `PING` (timed) and `INFO` over the Redis
//! protocol (RESP2), with `AUTH` from the URL and TLS for `rediss://` (certificates checked
//! against the public roots, as managed Redis services use). The seed's app degrades
//! gracefully without Redis (rate limiting lets requests through), so S2 uses this to say
//! *that* Redis is down, not to stop the run.

use super::{Outputs, StepContext, StepError, TypedStep};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

pub struct RedisPing;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisParams {
    /// `redis://[user:password@]host:6379[/db]` or `rediss://` for TLS.
    pub url: String,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl TypedStep for RedisPing {
    const NAME: &'static str = "redis-ping";
    const SUMMARY: &'static str = "Redis PING (latency) and INFO (version, role), with AUTH and TLS";
    type Params = RedisParams;

    fn idempotent(_: &RedisParams) -> bool {
        true
    }

    fn plan(p: &RedisParams) -> String {
        format!("PING and INFO {}", label(&p.url))
    }

    async fn run(&self, _ctx: &StepContext, p: RedisParams) -> Result<Outputs, StepError> {
        let url = reqwest::Url::parse(&p.url).map_err(|e| {
            StepError::failed(format!("invalid Redis URL: {e}"))
                .with_hint("write it as redis://:password@host:6379 or rediss://...")
        })?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => return Err(StepError::failed(format!("unsupported scheme `{other}`: use redis:// or rediss://"))),
        };
        let host = url.host_str().unwrap_or("localhost").to_owned();
        let port = url.port().unwrap_or(6379);
        let name = label(&p.url);
        let tcp = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect((host.as_str(), port)))
            .await
            .map_err(|_| StepError::failed(format!("cannot connect to {name}: timed out after 10s")))?
            .map_err(|e| {
                StepError::failed(format!("cannot connect to {name}: {e}"))
                    .with_hint("is Redis running and reachable from here?")
            })?;
        let stream: Box<dyn Stream> = if tls {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| StepError::failed(format!("TLS: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let server = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| StepError::failed(format!("TLS: bad host name `{host}`: {e}")))?;
            let s = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
                .connect(server, tcp)
                .await
                .map_err(|e| StepError::failed(format!("TLS handshake with {name} failed: {e}")))?;
            Box::new(s)
        } else {
            Box::new(tcp)
        };
        let mut conn = BufReader::new(stream);
        if let Some(pw) = url.password() {
            let pw = percent_decode(pw);
            let user = percent_decode(url.username());
            let args: Vec<&str> = if user.is_empty() { vec!["AUTH", &pw] } else { vec!["AUTH", &user, &pw] };
            command(&mut conn, &args).await.map_err(|e| {
                let hint = if e.contains("WRONGPASS") || e.contains("invalid password") {
                    "check the password in the URL"
                } else {
                    "check the URL's user and password"
                };
                StepError::failed(format!("{name}: AUTH failed: {e}")).with_hint(hint)
            })?;
        }
        let db = url.path().trim_start_matches('/');
        if !db.is_empty() {
            command(&mut conn, &["SELECT", db])
                .await
                .map_err(|e| StepError::failed(format!("{name}: SELECT {db}: {e}")))?;
        }
        let started = Instant::now();
        let pong = command(&mut conn, &["PING"]).await.map_err(|e| {
            let hint = if e.contains("NOAUTH") {
                "Redis wants a password: put it in the URL (redis://:password@host)"
            } else {
                "see the Redis log"
            };
            StepError::failed(format!("{name}: PING failed: {e}")).with_hint(hint)
        })?;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        if pong != "PONG" {
            return Err(StepError::failed(format!("{name}: PING answered `{pong}`")));
        }
        let info = command(&mut conn, &["INFO"]).await.unwrap_or_default();
        let field = |k: &str| info.lines().find_map(|l| l.strip_prefix(&format!("{k}:"))).map(|v| v.trim().to_owned());
        Ok(json!({
            "latency_ms": (latency_ms * 1000.0).round() / 1000.0,
            "version": field("redis_version"),
            "role": field("role"),
            "connected_clients": field("connected_clients").and_then(|v| v.parse::<u64>().ok()),
            "used_memory_human": field("used_memory_human"),
        }))
    }
}

/// Sends one command, reads one reply (simple string, error, integer or bulk string).
async fn command(conn: &mut BufReader<Box<dyn Stream>>, args: &[&str]) -> Result<String, String> {
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    conn.get_mut().write_all(out.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut line = String::new();
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read_line(&mut line))
        .await
        .map_err(|_| "no answer within 10s".to_owned())?
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("the server closed the connection".into());
    }
    let line = line.trim_end();
    match line.split_at(1) {
        ("+", s) | (":", s) => Ok(s.to_owned()),
        ("-", e) => Err(e.to_owned()),
        ("$", len) => {
            let len: i64 = len.parse().map_err(|_| format!("bad reply `{line}`"))?;
            if len < 0 {
                return Ok(String::new());
            }
            let mut buf = vec![0u8; len as usize + 2];
            conn.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            buf.truncate(len as usize);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        _ => Err(format!("unexpected reply `{line}`")),
    }
}

/// `host:port` of a Redis URL, without credentials.
fn label(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}://{}:{}", u.scheme(), u.host_str().unwrap_or("?"), u.port().unwrap_or(6379)),
        Err(_) => super::pg::strip_password(url),
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if let (b'%', Some(Some(hi)), Some(Some(lo))) =
            (b[i], b.get(i + 1).map(|c| hex(*c)), b.get(i + 2).map(|c| hex(*c)))
        {
            out.push(hi * 16 + lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_decoding_never_panics() {
        assert_eq!(super::percent_decode("p%40ss%2Fw%zz%"), "p@ss/w%zz%");
        assert_eq!(super::percent_decode("ä%C3%A4%"), "ää%");
    }
}
