//! An Iceberg table on s3s-fs registered in a SQL catalog on a real PostgreSQL server
//! (Debian's, started here on 127.0.0.1 with TLS only and a SCRAM password): `sluice stream`
//! lands through it, resumes after a kill -9 from the offsets the catalog's table holds, waits
//! out a restart of the server; pyiceberg, through the same database with its own client
//! (SQLAlchemy and psycopg2), reads every produced offset exactly once; `sluice verify` is
//! clean; `sluice compact` replaces the small files through the same catalog.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::iceberg::{CATALOG, TABLE, pyiceberg_check, write_iceberg_pipeline};
use crate::members::Member;

const EVENTS: u64 = 40_000;
const PARTITIONS: u32 = 4;
/// Events per second: the topic fills over 80 s, beyond the server's restart.
const PRODUCE_RATE: &str = "500";
/// The catalog role's password; sluice reads it from the environment.
const PASSWORD: &str = "pg-secret-4711";
/// How long the server is down.
const OUTAGE: Duration = Duration::from_secs(6);

/// A PostgreSQL server of its own, in a temporary directory, that accepts only TLS
/// connections over TCP (its certificate signed by a test CA) with the password of `sluice`.
struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl Postgres {
    /// Makes the cluster (initdb), its certificate and its access rules, and starts it.
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server = Self {
            port: free_port(),
            dir,
        };
        let tls = server.path("tls");
        make_certificates(&tls);
        std::fs::write(server.path("password"), PASSWORD).unwrap();
        // The server runs as `postgres` when the tests run as root (initdb refuses root).
        chown_to_server_user(server.dir.path());
        run_ok(
            server
                .program("initdb")
                .arg("-D")
                .arg(server.path("data"))
                .args([
                    "-U",
                    "sluice",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ])
                .arg(format!("--pwfile={}", server.path("password").display())),
            Duration::from_secs(120),
        );
        std::fs::write(
            server.path("data/pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        chown_to_server_user(server.dir.path());
        server.pg_ctl_start();
        server
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `program` of Debian's PostgreSQL, run as the server's user.
    fn program(&self, program: &str) -> Command {
        let program = postgres_bin().join(program);
        if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c ssl=on \
             -c ssl_cert_file={} -c ssl_key_file={}",
            self.port,
            self.dir.path().display(),
            self.path("tls/server.pem").display(),
            self.path("tls/server.key").display(),
        );
        run_ok(
            self.program("pg_ctl")
                .arg("-D")
                .arg(self.path("data"))
                .arg("-l")
                .arg(self.path("server.log"))
                .args(["-w", "-o", &options, "start"]),
            Duration::from_secs(60),
        );
    }

    /// Stops the server at once (no checkpoint, as in a crash).
    fn stop(&self) {
        run_ok(
            self.program("pg_ctl")
                .arg("-D")
                .arg(self.path("data"))
                .args(["-m", "immediate", "-w", "stop"]),
            Duration::from_secs(60),
        );
    }

    /// The database's URL with the password written as `password`.
    fn url(&self, scheme: &str, password: &str) -> String {
        format!(
            "{scheme}://sluice:{password}@127.0.0.1:{}/postgres?sslmode=require",
            self.port
        )
    }

    /// The CA its certificate is signed by.
    fn ca(&self) -> PathBuf {
        self.path("tls/ca.pem")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .program("pg_ctl")
            .arg("-D")
            .arg(self.path("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Debian's PostgreSQL programs: `$SLUICE_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`.
fn postgres_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("SLUICE_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("no /usr/lib/postgresql: install Debian's postgresql (.ci/run does)")
        .map(|entry| entry.unwrap().path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort_by_key(|bin| {
        let version = bin.parent().unwrap().file_name().unwrap().to_string_lossy();
        version.parse::<u32>().unwrap_or(0)
    });
    found
        .pop()
        .expect("no initdb under /usr/lib/postgresql/*/bin")
}

fn running_as_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn chown_to_server_user(dir: &Path) {
    if running_as_root() {
        run_ok(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir),
            Duration::from_secs(30),
        );
    }
}

/// A test CA and a server certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certificates(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let openssl = |args: &[&str]| {
        run_ok(
            Command::new("openssl").current_dir(dir).args(args),
            Duration::from_secs(60),
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=sluice-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-days",
        "1",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    // PostgreSQL refuses a key others can read.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

#[test]
fn a_postgres_catalog_over_tls_survives_a_kill_and_a_restart_and_compacts() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let postgres = Postgres::start();
    let topic = unique("iceberg-pg");
    create_topic(&topic, PARTITIONS);
    let report = dir.path().join("report.json");
    let producer = spawn_producer(
        sensor_producer(&topic, EVENTS, 31, "2026-12-04T00:00:00Z", "50ms", &report)
            .args(["--rate", PRODUCE_RATE]),
    );
    let prefix = format!("{}/{}", s3_bucket(), unique("iceberg-pg"));
    let section = format!(
        "\n[catalogs.{CATALOG}]\ntype = \"sql\"\nuri = \"{}\"\nwarehouse = \"s3://{prefix}/warehouse\"\n",
        postgres.url("postgresql", "${TEST_PG_PASSWORD}")
    );
    // Each member in a group of its own: the resume from the catalog's table is under test.
    let pipeline = |name: &str| {
        write_iceberg_pipeline(
            &dir.path().join(name),
            &topic,
            &unique("group"),
            &prefix,
            &section,
        )
    };
    let ca = postgres.ca();
    let sluice_for_postgres = move || {
        let mut command = sluice();
        command
            .env("TEST_PG_PASSWORD", PASSWORD)
            .env("SSL_CERT_FILE", &ca);
        command
    };

    let checked = run_ok(
        sluice_for_postgres()
            .args(["check", "--pipeline"])
            .arg(pipeline("check")),
        Duration::from_secs(60),
    );
    assert!(
        checked.contains("SQL catalog in PostgreSQL at \"postgresql://sluice:[REDACTED]@127.0.0.1"),
        "{checked}"
    );
    assert!(!checked.contains(PASSWORD), "{checked}");

    // The server's certificate is verified: without the test CA among the roots, refused.
    let unverified = run_err(
        sluice_for_postgres()
            .env_remove("SSL_CERT_FILE")
            .args(["query", "--pipeline"])
            .arg(pipeline("unverified"))
            .arg(format!("select count(*) from {TABLE}")),
        Duration::from_secs(60),
    );
    assert!(
        unverified.to_lowercase().contains("certificate"),
        "{unverified}"
    );

    // A first member lands a few commits and is killed with SIGKILL.
    let mut first = Member::start_with(
        sluice_for_postgres()
            .args(["stream", "--pipeline"])
            .arg(pipeline("first")),
        logs.join("first.log"),
    );
    first.wait_for_log("Committed", 3, Duration::from_secs(120));
    first.kill();

    // A second resumes from the table's offsets; the server stops and starts under it.
    let second_pipeline = pipeline("second");
    let mut second = Member::start_with(
        sluice_for_postgres()
            .args(["stream", "--pipeline"])
            .arg(&second_pipeline),
        logs.join("second.log"),
    );
    second.wait_for_log("Committed", 2, Duration::from_secs(120));
    postgres.stop();
    std::thread::sleep(OUTAGE);
    assert!(
        second.child.try_wait().unwrap().is_none(),
        "the stream ended while the catalog was down: {}",
        second.logged()
    );
    postgres.pg_ctl_start();
    let count = format!("select count(*) as n from {TABLE}");
    let started = Instant::now();
    while query_using(&sluice_for_postgres, &second_pipeline, &count)[0]["n"] != EVENTS {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the stream did not land every event within 5 minutes of the restart: {}",
            second.logged()
        );
        assert!(
            second.child.try_wait().unwrap().is_none(),
            "the stream ended: {}",
            second.logged()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let log = second.logged();
    second.kill();
    let produced = finish_producer(producer, &report);
    assert!(
        log.contains("Commit failed; retrying."),
        "the stream said nothing of the outage: {log}"
    );
    assert!(!log.contains(PASSWORD), "{log}");

    let context = "PostgreSQL catalog";
    let verified = verify_clean_using(&sluice_for_postgres, &second_pipeline, &report, context);
    let reader_url = postgres.url("postgresql+psycopg2", PASSWORD);
    let read = pyiceberg_check(&reader_url, &prefix, |_| {});
    assert_reader_matches_report(&read, &produced, context);
    assert_eq!(read["offsets_move_forward"], true, "{read}");
    assert_eq!(read["paths_live_twice"], serde_json::json!([]), "{read}");
    assert_eq!(read["files"], verified["tables"][0]["files"], "{verified}");

    // Compaction commits its replace snapshot through the same database.
    run_ok(
        sluice_for_postgres()
            .args(["compact", "--pipeline"])
            .arg(&second_pipeline),
        Duration::from_secs(300),
    );
    let compacted = pyiceberg_check(&reader_url, &prefix, |_| {});
    assert_reader_matches_report(&compacted, &produced, &format!("{context}, compacted"));
    let operations = compacted["operations"].as_array().unwrap();
    assert_eq!(
        operations.last().and_then(|o| o.as_str()),
        Some("replace"),
        "{compacted}"
    );
    assert!(
        compacted["files"].as_u64() < read["files"].as_u64(),
        "{read}\n{compacted}"
    );
}
