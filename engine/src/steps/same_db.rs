//! The `not_same_as` guard of destructive PostgreSQL steps (`sql`, `pg-restore`): refuse to
//! run when the target is the database the guard names (production, the restore's source).
//!
//! Issue 10: the restore drill's cleanup dropped `public` on a scratch URL that was, by a
//! typo in the inputs, production's. Comparing the URLs as text misses `localhost` against
//! `127.0.0.1`, a default port written out, a query-string host; so both are parsed and
//! normalised: each host resolved (names through DNS; `localhost`, loopback, `0.0.0.0` and
//! Unix sockets all count as "this machine"), the default port 5432, the default database
//! (the user name), and Supabase's two addresses of one project (`db.REF.supabase.co` and
//! the pooler's user `postgres.REF`). Two targets are the same when the database name is
//! the same and any host:port of one is a host:port of the other. On doubt (a host that
//! does not resolve) the names are compared as written, lowercased.
//!
//! What it cannot see: a server reached through an address of this machine other than
//! loopback (its LAN address against `localhost`), a proxy or port forward in front of the
//! same server. Those need a check against the server itself (its `system_identifier`).

use super::StepError;
use std::collections::HashSet;
use std::net::IpAddr;
use std::str::FromStr;
use tokio_postgres::config::Host;

const DEFAULT_PORT: u16 = 5432;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Machine {
    /// Loopback, unspecified, a Unix socket, `localhost`.
    Local,
    Ip(IpAddr),
    /// A name that did not resolve, lowercased.
    Name(String),
}

/// One side of the comparison, normalised.
#[derive(Debug)]
struct Target {
    endpoints: HashSet<(Machine, u16)>,
    dbname: String,
    supabase_ref: Option<String>,
}

fn local_ip(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified()
}

/// One machine for one address: `::ffff:10.0.0.5` is `10.0.0.5` (an IPv4-mapped IPv6 address
/// reaches the same server), and every loopback is `Local`.
fn machine_of(ip: IpAddr) -> Machine {
    let ip = ip.to_canonical();
    if local_ip(ip) { Machine::Local } else { Machine::Ip(ip) }
}

async fn machines(host: &Host, port: u16) -> Vec<Machine> {
    match host {
        Host::Unix(_) => vec![Machine::Local],
        Host::Tcp(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" {
                return vec![Machine::Local];
            }
            if let Ok(ip) = IpAddr::from_str(name.trim_start_matches('[').trim_end_matches(']')) {
                return vec![machine_of(ip)];
            }
            let resolved = tokio::net::lookup_host((name.as_str(), port)).await.map(|a| a.collect::<Vec<_>>());
            match resolved {
                Ok(addrs) => {
                    let mut out: Vec<Machine> = addrs.into_iter().map(|a| machine_of(a.ip())).collect();
                    // The name too: a target that does not resolve is compared by name.
                    out.push(Machine::Name(name));
                    out
                }
                Err(_) => vec![Machine::Name(name)],
            }
        }
    }
}

/// `db.REF.supabase.co` or the pooler's `postgres.REF` user: the Supabase project.
fn supabase_ref(hosts: &[Host], user: Option<&str>) -> Option<String> {
    for h in hosts {
        if let Host::Tcp(name) = h {
            let name = name.to_ascii_lowercase();
            if let Some(r) = name.strip_prefix("db.").and_then(|r| r.strip_suffix(".supabase.co")) {
                return Some(r.to_owned());
            }
        }
    }
    let pooled = hosts.iter().any(|h| matches!(h, Host::Tcp(n) if n.to_ascii_lowercase().ends_with(".supabase.com")));
    match user?.split_once('.') {
        Some((_, r)) if pooled && !r.is_empty() => Some(r.to_ascii_lowercase()),
        _ => None,
    }
}

async fn target(url: &str, param: &str) -> Result<Target, StepError> {
    // libpq reads an empty string as "every default" (the local socket): a guard whose
    // input was left out would then pass any remote target. A missing guard stops the step.
    if url.trim().is_empty() {
        return Err(StepError::failed(format!(
            "`{param}` is empty: nothing to compare the target with; nothing was changed"
        ))
        .with_hint("give the connection string of the database this step must never change (the input may be unset)"));
    }
    // The parser's message never contains the string itself, so no password leaks here.
    let cfg = tokio_postgres::Config::from_str(url).map_err(|e| {
        StepError::failed(format!("`{param}` is not a PostgreSQL connection string: {e}"))
            .with_hint("write postgresql://user:password@host:port/database")
    })?;
    let hosts = cfg.get_hosts();
    let addrs = cfg.get_hostaddrs();
    let n = hosts.len().max(addrs.len()).max(1);
    // Host i's ports: its own, the one for all, or (when the counts do not match, which the
    // connection would refuse anyway) every one of them, to err on the side of "same".
    let ports_of = |i: usize| -> Vec<u16> {
        match cfg.get_ports() {
            [] => vec![DEFAULT_PORT],
            [one] => vec![*one],
            many if many.len() == n => vec![many[i]],
            many => many.to_vec(),
        }
    };
    let mut endpoints = HashSet::new();
    if hosts.is_empty() && addrs.is_empty() {
        // libpq's default: the local Unix socket.
        for port in ports_of(0) {
            endpoints.insert((Machine::Local, port));
        }
    }
    for (i, h) in hosts.iter().enumerate() {
        for port in ports_of(i) {
            for m in machines(h, port).await {
                endpoints.insert((m, port));
            }
        }
    }
    for (i, ip) in addrs.iter().enumerate() {
        let m = machine_of(*ip);
        for port in ports_of(i) {
            endpoints.insert((m.clone(), port));
        }
    }
    let user = cfg.get_user();
    // PostgreSQL's default database is the user's name.
    let dbname = cfg.get_dbname().or(user).unwrap_or("postgres").to_owned();
    Ok(Target { endpoints, dbname, supabase_ref: supabase_ref(hosts, user) })
}

/// Whether `a` and `b` name the same database; `param_b` names `b`'s parameter in errors.
pub async fn same_database(a: &str, b: &str, param_b: &str) -> Result<bool, StepError> {
    let (a, b) = (target(a, "url").await?, target(b, param_b).await?);
    if a.dbname != b.dbname {
        return Ok(false);
    }
    // The pooler serves every project on the same host and port; its user says which.
    if let (Some(x), Some(y)) = (&a.supabase_ref, &b.supabase_ref) {
        return Ok(x == y);
    }
    Ok(a.endpoints.iter().any(|e| b.endpoints.contains(e)))
}

/// Fails the step, before it connects, when `url` is the database `not_same_as` names.
pub async fn refuse_same(url: &str, not_same_as: Option<&str>, target_label: &str) -> Result<(), StepError> {
    let Some(other) = not_same_as else { return Ok(()) };
    if same_database(url, other, "not_same_as").await? {
        return Err(StepError::failed(format!(
            "refused: the target {target_label} is the database `not_same_as` names (same host, port and database); nothing was changed"
        ))
        .with_hint("check the inputs: the target must be a different database from the one it is guarded against"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::same_database;

    async fn same(a: &str, b: &str) -> bool {
        same_database(a, b, "not_same_as").await.unwrap()
    }

    #[tokio::test]
    async fn normalises_hosts_ports_and_databases() {
        let base = "postgresql://postgres:pw@localhost:5432/app";
        assert!(same(base, "postgresql://other:x@127.0.0.1/app").await);
        assert!(same(base, "postgres://u@[::1]:5432/app?sslmode=disable").await);
        assert!(same(base, "host=/var/run/postgresql dbname=app user=postgres").await);
        assert!(same(base, "postgresql://u@/app?host=localhost&port=5432").await);
        assert!(same(base, "postgresql://u@Localhost./app").await);
        // The default database is the user's name.
        assert!(same("postgresql://app@localhost/", base).await);
        assert!(!same(base, "postgresql://postgres:pw@localhost:5433/app").await);
        assert!(!same(base, "postgresql://postgres:pw@localhost:5432/app_scratch").await);
        assert!(!same(base, "postgresql://postgres:pw@10.9.8.7:5432/app").await);
        // An IPv4-mapped IPv6 address is the IPv4 address.
        assert!(same(base, "postgresql://u@[::ffff:127.0.0.1]:5432/app").await);
        assert!(same("postgresql://u@10.9.8.7/app", "postgresql://u@[::ffff:10.9.8.7]/app").await);
        // Any host of a multi-host string.
        assert!(same("postgresql://u@10.9.8.7,localhost/app", base).await);
    }

    /// An optional input left out renders the guard empty: that is a missing guard, which
    /// must stop the destructive step, not compare as "some local database".
    #[tokio::test]
    async fn an_empty_guard_is_an_error_not_a_comparison() {
        for blank in ["", "  "] {
            for url in ["postgresql://u@localhost/postgres", "postgresql://u@10.9.8.7/app"] {
                let e = same_database(url, blank, "not_same_as").await.unwrap_err().to_string();
                assert!(e.contains("`not_same_as` is empty"), "{e}");
            }
        }
    }

    #[tokio::test]
    async fn supabase_direct_and_pooler_are_one_project() {
        let direct = "postgresql://postgres:pw@db.abcdefgh.supabase.co:5432/postgres";
        let pooler = "postgresql://postgres.abcdefgh:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres";
        assert!(same(direct, pooler).await);
        let other = "postgresql://postgres.zzzzzzzz:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres";
        assert!(!same(direct, other).await);
    }

    #[tokio::test]
    async fn a_bad_string_is_an_error_that_keeps_the_password() {
        let e = same_database("postgresql://u@localhost/app", "postgresql://u:s3cr3tpw@host:notaport/x", "not_same_as")
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("`not_same_as` is not a PostgreSQL connection string"), "{text}");
        assert!(!text.contains("s3cr3tpw"), "{text}");
    }
}
