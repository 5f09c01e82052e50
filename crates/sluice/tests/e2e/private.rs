//! Private instances of the dev services for tests that stop or restart them (the shared broker
//! and object store serve the other tests running in parallel). They are started through the
//! same `scripts/services.sh`, in their own run directory and on free ports, and stopped when
//! dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::helpers::{free_port, run_ok, sluice};

/// A private tansu (SQLite storage, so its log survives a restart, unless made
/// [`in_memory`](Self::in_memory)), s3s-fs, and stunnel4 in front of tansu for TLS.
pub struct PrivateServices {
    run_dir: PathBuf,
    kafka_port: u16,
    s3_port: u16,
    tls_port: u16,
    /// The broker advertises the TLS port (clients must come back through TLS).
    advertise_tls: bool,
    /// SASL users of the broker, "NAME:PASSWORD,…".
    sasl_users: Option<String>,
    /// The broker's storage.
    storage: &'static str,
}

impl PrivateServices {
    /// Reserves ports and a run directory under `dir`; starts nothing yet.
    pub fn new(dir: &Path) -> Self {
        Self {
            run_dir: dir.join("services"),
            kafka_port: free_port(),
            s3_port: free_port(),
            tls_port: free_port(),
            advertise_tls: false,
            sasl_users: None,
            storage: "sqlite://tansu.db",
        }
    }

    /// As [`Self::new`], with the broker's log in memory (lost on a restart).
    pub fn in_memory(dir: &Path) -> Self {
        let mut services = Self::new(dir);
        services.storage = "memory://tansu/";
        services
    }

    /// As [`Self::new`], for a broker reached through its `tls` service only: it advertises
    /// `localhost:<tls port>`.
    pub fn behind_tls(dir: &Path) -> Self {
        let mut services = Self::new(dir);
        services.advertise_tls = true;
        services
    }

    /// With SASL/SCRAM users ("NAME:PASSWORD,…") that clients must authenticate as.
    pub fn with_sasl_users(mut self, users: &str) -> Self {
        self.sasl_users = Some(users.to_string());
        self
    }

    /// The TLS port's bootstrap address (a name the test certificate holds).
    pub fn tls_brokers(&self) -> String {
        format!("localhost:{}", self.tls_port)
    }

    /// The test CA that signed the `tls` service's certificate.
    pub fn tls_ca(&self) -> PathBuf {
        self.run_dir.join("tls/ca.pem")
    }

    fn script(&self, args: &[&str]) -> String {
        let script = std::env::var("SLUICE_SERVICES")
            .expect("SLUICE_SERVICES is not set: run scripts/test.sh");
        let mut command = Command::new("bash");
        command
            .arg(script)
            .args(args)
            .env("SLUICE_RUN_DIR", &self.run_dir)
            .env("SLUICE_KAFKA_PORT", self.kafka_port.to_string())
            .env("SLUICE_S3_PORT", self.s3_port.to_string())
            .env("SLUICE_TLS_PORT", self.tls_port.to_string())
            .env("SLUICE_TANSU_STORAGE", self.storage);
        if self.advertise_tls {
            command.env("SLUICE_KAFKA_ADVERTISE", self.tls_brokers());
        }
        if let Some(users) = &self.sasl_users {
            command.env("SLUICE_KAFKA_SASL_USERS", users);
        }
        run_ok(&mut command, Duration::from_secs(60))
    }

    /// Starts "kafka", "s3" or "tls".
    pub fn start(&self, service: &str) {
        self.script(&["start", service]);
    }

    /// Stops "kafka" or "s3" (SIGTERM, then SIGKILL).
    pub fn stop(&self, service: &str) {
        self.script(&["stop", service]);
    }

    /// Sends a signal by name ("STOP", "CONT") to a running service's process.
    pub fn signal(&self, service: &str, signal: &str) {
        let pid_file = self.run_dir.join(format!("{service}.pid"));
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|err| panic!("{}: {err}", pid_file.display()));
        run_ok(
            Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(pid.trim()),
            Duration::from_secs(10),
        );
    }

    /// The private broker's bootstrap address.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    /// The private object store's endpoint.
    pub fn s3_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Where the private object store keeps bucket `lake` on disk.
    pub fn s3_root(&self) -> PathBuf {
        self.run_dir.join("s3/lake")
    }
}

impl PrivateServices {
    /// `sluice` talking to these services: the private broker once `kafka` runs, the private
    /// object store once `s3` runs (the shared ones otherwise).
    pub fn sluice(&self) -> Command {
        let mut command = sluice();
        self.point_at(&mut command);
        command
    }

    /// Points any command's Kafka and S3 settings at the services that run privately.
    pub fn point_at(&self, command: &mut Command) {
        if self.run_dir.join("kafka.port").exists() {
            command.env("SLUICE_BROKERS", self.brokers());
        }
        if self.run_dir.join("s3.port").exists() {
            command.env("AWS_ENDPOINT_URL", self.s3_endpoint());
        }
    }
}

impl Drop for PrivateServices {
    fn drop(&mut self) {
        // No panic here: a test may be unwinding already.
        let script = std::env::var("SLUICE_SERVICES").unwrap_or_default();
        Command::new("bash")
            .args([script.as_str(), "stop", "tls", "kafka", "s3"])
            .env("SLUICE_RUN_DIR", &self.run_dir)
            .stdout(std::process::Stdio::null())
            .status()
            .ok();
    }
}
