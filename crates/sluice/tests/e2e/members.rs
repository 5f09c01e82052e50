//! Background `sluice stream` processes for tests with several group members: logs to files,
//! signals (kill -9, SIGSTOP/SIGCONT, SIGTERM), and waits on what they logged.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::sluice;

/// A background `sluice stream` whose log goes to a file, for tests with several members.
pub struct Member {
    pub child: Child,
    pub log: PathBuf,
}

impl Member {
    /// Starts `sluice stream --pipeline <pipeline>`, logging to `log`.
    pub fn start(pipeline: &Path, log: PathBuf) -> Self {
        Self::start_with(sluice().args(["stream", "--pipeline"]).arg(pipeline), log)
    }

    /// Starts `command` (a `sluice stream …`), logging to `log`.
    pub fn start_with(command: &mut Command, log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn sluice stream");
        Self { child, log }
    }

    /// What the member logged so far.
    pub fn logged(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the log contains `needle` within `limit` (the member still running).
    pub fn logs_within(&mut self, needle: &str, limit: Duration) -> bool {
        let started = Instant::now();
        while !self.logged().contains(needle) {
            if started.elapsed() > limit || self.child.try_wait().unwrap().is_some() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    }

    /// Waits until the log contains `needle` `times` times; panics with the log after `limit`.
    pub fn wait_for_log(&mut self, needle: &str, times: usize, limit: Duration) {
        let started = Instant::now();
        while self.logged().matches(needle).count() < times {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "member exited ({status}) before logging {needle:?}:\n{}",
                    self.logged()
                );
            }
            assert!(
                started.elapsed() < limit,
                "no {needle:?} (×{times}) after {limit:?}:\n{}",
                self.logged()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends a signal by name ("KILL", "STOP", "CONT", "TERM").
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// SIGTERM, then insists on a clean exit (buffers committed) within `limit`.
    pub fn stop(mut self, limit: Duration) {
        self.terminate(limit);
    }

    /// [`Self::stop`], keeping the member (its log) around.
    pub fn terminate(&mut self, limit: Duration) {
        self.signal("TERM");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > limit {
                self.child.kill().ok();
                panic!("member did not stop in {limit:?}:\n{}", self.logged());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "member exited {status}:\n{}",
            self.logged()
        );
    }

    /// kill -9, reaped.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        // A failing test must not leave members running.
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
