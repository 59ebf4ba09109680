//! Throwaway PostgreSQL clusters for tests: `initdb` + `pg_ctl` from the installed
//! PostgreSQL, on a free port, in a temp dir, with WAL archiving; started as the `postgres`
//! OS user when the tests run as root (PostgreSQL refuses to run as root). Stopped and
//! removed on drop, with any cluster restored from them.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const PASSWORD: &str = "drill-secret-pw";

pub struct Cluster {
    pub root: tempfile::TempDir,
    pub port: u16,
    /// Data dirs of clusters started from this one (restores), stopped on drop too.
    pub others: std::cell::RefCell<Vec<PathBuf>>,
}

/// The engine's own lookup, so the tests run the programs a step would run.
pub fn bin(name: &str) -> PathBuf {
    runbook::steps::pg::program(name)
}

fn root_user() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A PostgreSQL program, run as `postgres` when we are root.
pub fn pg(program: &str) -> Command {
    if root_user() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin(program));
        c
    } else {
        Command::new(bin(program))
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run(mut c: Command, what: &str) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Cluster {
    pub fn start() -> Cluster {
        Self::start_with(false)
    }

    /// A cluster that also accepts TLS (a self-signed certificate made with openssl).
    pub fn start_tls() -> Cluster {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Cluster {
        let root = tempfile::Builder::new().prefix("runbook-pg-").tempdir().unwrap();
        let mut port = free_port();
        std::fs::create_dir_all(root.path().join("archive")).unwrap();
        if root_user() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("-R").arg("postgres:").arg(root.path());
                    c
                },
                "chown",
            );
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let data = root.path().join("data");
        let pwfile = root.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut init = pg("initdb");
        init.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        init.arg(format!("--pwfile={}", pwfile.display()));
        run(init, "initdb");
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{root}'\nwal_level = replica\n\
             archive_mode = on\narchive_command = 'cp %p {root}/archive/%f'\nfsync = off\n",
            root = root.path().display()
        );
        let mut f = std::fs::OpenOptions::new().append(true).open(data.join("postgresql.conf")).unwrap();
        std::io::Write::write_all(&mut f, conf.as_bytes()).unwrap();
        if tls {
            let mut c = Command::new("openssl");
            c.args(["req", "-new", "-x509", "-days", "2", "-nodes", "-subj", "/CN=localhost", "-keyout"])
                .arg(data.join("server.key"))
                .arg("-out")
                .arg(data.join("server.crt"));
            run(c, "openssl req");
            if root_user() {
                let mut c = Command::new("chown");
                c.arg("postgres:").arg(data.join("server.key")).arg(data.join("server.crt"));
                run(c, "chown key");
            }
            std::fs::set_permissions(data.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
            std::io::Write::write_all(&mut f, b"ssl = on\n").unwrap();
        }
        // Another test may take the free port between our look and the server's bind:
        // then try another one (the last `port =` line of the config wins).
        for attempt in 1..=3 {
            let mut start = pg("pg_ctl");
            start.arg("-D").arg(&data).arg("-l").arg(root.path().join("log")).args(["-w", "start"]);
            let out = start.output().expect("pg_ctl runs");
            if out.status.success() {
                break;
            }
            let log = std::fs::read_to_string(root.path().join("log")).unwrap_or_default();
            assert!(attempt < 3 && log.contains("could not bind"), "pg_ctl start failed: {log}");
            port = free_port();
            std::io::Write::write_all(&mut f, format!("port = {port}\n").as_bytes()).unwrap();
        }
        Cluster { root, port, others: Default::default() }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    pub fn url(&self) -> String {
        format!("postgresql://postgres:{PASSWORD}@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs SQL through psql over the socket, returns unaligned tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_port(self.port, sql)
    }

    pub fn psql_port(&self, port: u16, sql: &str) -> String {
        self.psql_at(port, "postgres", sql)
    }

    /// Like `psql`, in another database of this cluster.
    pub fn psql_db(&self, db: &str, sql: &str) -> String {
        self.psql_at(self.port, db, sql)
    }

    fn psql_at(&self, port: u16, db: &str, sql: &str) -> String {
        let mut c = Command::new(bin("psql"));
        c.args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", db])
            .arg("-p")
            .arg(port.to_string())
            .arg("-c")
            .arg(sql)
            .env("PGPASSWORD", PASSWORD)
            // Our SQL text is UTF-8 (names like "Café"), whatever the locale says.
            .env("PGCLIENTENCODING", "UTF8");
        run(c, &format!("psql {sql}")).trim().to_owned()
    }

    /// A base backup in `<root>/base`.
    pub fn base_backup(&self) -> PathBuf {
        let dest = self.path("base");
        let mut c = pg("pg_basebackup");
        c.args(["-h", "127.0.0.1", "-U", "postgres", "-X", "stream", "-c", "fast", "-p"])
            .arg(self.port.to_string())
            .arg("-D")
            .arg(&dest)
            .env("PGPASSWORD", PASSWORD);
        run(c, "pg_basebackup");
        dest
    }

    /// A custom-format `pg_dump` of database `postgres` into `to` (what the nightly backup writes).
    pub fn dump_custom(&self, to: &Path) {
        let mut c = Command::new(bin("pg_dump"));
        c.args(["-Fc", "-f"]).arg(to).arg(self.url());
        run(c, "pg_dump");
    }

    /// Forces the current WAL segment into the archive and waits until it is there.
    pub fn archive_now(&self) {
        let segment = self.psql("select pg_walfile_name(pg_switch_wal())");
        let archived = self.path("archive").join(&segment);
        crate::support::eventually(
            &format!("segment {segment} was never archived"),
            std::time::Duration::from_secs(10),
            || archived.exists().then_some(()),
        );
    }

    /// The server's clock, as RFC 3339.
    pub fn now(&self) -> String {
        self.psql("select to_char(clock_timestamp() at time zone 'utc', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
    }

    pub fn adopt(&self, data_dir: &Path) {
        self.others.borrow_mut().push(data_dir.to_path_buf());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut dirs = self.others.borrow().clone();
        dirs.push(self.path("data"));
        for d in dirs {
            if d.join("postmaster.pid").exists() {
                let mut c = pg("pg_ctl");
                c.arg("-D").arg(&d).args(["-m", "immediate", "-w", "stop"]);
                let _ = c.output();
            }
        }
    }
}
