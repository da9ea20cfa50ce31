//! Shared helpers for sluicectl's integration tests: run the `sluicectl` binary, and start the
//! real `sluice` broker binary on a loopback port with its own data directory.
//!
//! The broker binary is the one next to `sluicectl` (`target/<profile>/sluice`). Cargo does not
//! build another package's binary for these tests, so the first test that needs it runs
//! `cargo build --bin sluice` for the same profile (a no-op when it is up to date). Only when that
//! build fails do the tests skip, with a loud message on stderr. `SLUICE_TEST_BROKER_BIN` names
//! a broker binary to use instead; `./tests/run` sets it to the one `cargo test --workspace`
//! builds for the broker's integration tests.

#![allow(dead_code, unreachable_pub, reason = "each test crate uses a subset")]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a broker gets to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The sluicectl binary under test.
pub fn sluicectl_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluicectl"))
}

/// The result of one sluicectl run.
#[derive(Debug)]
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from_output(output: &Output) -> Self {
        Self {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.status, 0, "sluicectl failed\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        &self.stdout
    }

    /// Asserts failure with a one-line error and returns it.
    #[track_caller]
    pub fn error(&self) -> &str {
        assert_ne!(self.status, 0, "sluicectl should have failed\nstdout:\n{}", self.stdout);
        let line = self.stderr.trim_end();
        assert_eq!(line.lines().count(), 1, "the error is one line: {line:?}");
        assert!(line.starts_with("sluicectl: error: "), "{line}");
        line
    }

    /// Parses stdout as one JSON document.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|error| panic!("stdout is not JSON ({error}):\n{}", self.stdout))
    }

    /// Parses stdout as JSON lines.
    #[track_caller]
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.ok().lines().map(|line| serde_json::from_str(line).expect("each line is JSON")).collect()
    }
}

/// Runs sluicectl with `args` (no bootstrap flag added), feeding `stdin`.
pub fn run_raw(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(sluicectl_path())
        .args(args)
        .env_remove("SLUICE_BOOTSTRAP")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluicectl starts");
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // sluicectl may exit before reading all of it (an error); that is the test's business.
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().expect("sluicectl runs");
    writer.join().expect("stdin writer");
    Run::from_output(&output)
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tools/ has a parent").to_path_buf()
}

/// The broker binary next to sluicectl, built once per test process; `None` when it cannot be
/// built (the caller skips, loudly).
pub fn broker_binary() -> Option<PathBuf> {
    static BINARY: OnceLock<Option<PathBuf>> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            // `./tests/run` names the broker `cargo test --workspace` has just built for the
            // broker's own integration tests (the same sources): `cargo build --bin sluice` alone
            // resolves features for one package, not the workspace, so it would rebuild much of
            // the dependency tree (libc, serde, ...) a second time.
            if let Some(binary) = std::env::var_os("SLUICE_TEST_BROKER_BIN").map(PathBuf::from)
                && binary.is_file()
            {
                return Some(binary);
            }
            let profile_dir = sluicectl_path().parent().expect("binary has a directory").to_path_buf();
            let release = profile_dir.file_name().is_some_and(|name| name == "release");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let mut build = Command::new(cargo);
            build.current_dir(repository_root()).args(["build", "--quiet", "--bin", "sluice"]);
            if release {
                build.arg("--release");
            }
            let built = build.status().is_ok_and(|status| status.success());
            let binary = profile_dir.join("sluice");
            if built && binary.is_file() {
                Some(binary)
            } else {
                eprintln!(
                    "\n!!!!! SKIPPING: cannot build the broker (cargo build --bin sluice failed); \
                     sluicectl's broker tests did not run !!!!!\n"
                );
                None
            }
        })
        .clone()
}

/// A running `sluice` broker on a free loopback port; killed when dropped.
pub struct Broker {
    child: Child,
    pub address: String,
    pub data_dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker, or `None` when the binary cannot be built.
    pub fn start() -> Option<Self> {
        let binary = broker_binary()?;
        let data_dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("address").port();
        let address = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(data_dir.path().join("broker.log")).expect("log file");
        let child = Command::new(binary)
            .args(["--listen", &address, "--data-dir"])
            .arg(data_dir.path().join("data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("broker starts");
        let mut broker = Self { child, address, data_dir };
        broker.wait_ready();
        Some(broker)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("broker status") {
                panic!("broker exited with {status} before it was ready:\n{}", self.log());
            }
            if TcpStream::connect(&self.address).is_ok()
                && sluice_client::Connection::connect(&self.address, &sluice_client::ConnectionConfig::default())
                    .is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "broker not ready on {} in time:\n{}", self.address, self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("broker.log")).unwrap_or_default()
    }

    /// The data directory the broker writes.
    pub fn data_path(&self) -> PathBuf {
        self.data_dir.path().join("data")
    }

    /// Runs sluicectl against this broker.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_input(args, b"")
    }

    /// Runs sluicectl against this broker, feeding `stdin`.
    pub fn run_with_input(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut full = vec!["--bootstrap-server", self.address.as_str()];
        full.extend_from_slice(args);
        run_raw(&full, stdin)
    }

    /// Whether the broker advertises the consumer-group APIs sluicectl needs.
    pub fn supports_groups(&self) -> bool {
        use sluice_client::kafka_protocol::messages::ApiKey;
        let connection = sluice_client::Connection::connect(&self.address, &sluice_client::ConnectionConfig::default())
            .expect("broker answers");
        [ApiKey::FindCoordinator, ApiKey::JoinGroup, ApiKey::SyncGroup, ApiKey::OffsetCommit, ApiKey::OffsetFetch]
            .into_iter()
            .all(|api| connection.versions().version_for(api).is_ok())
    }

    /// Stops the broker with SIGTERM (a clean shutdown writes indexes and checkpoints).
    pub fn stop(mut self) -> tempfile::TempDir {
        let pid = self.child.id().to_string();
        let signalled = Command::new("kill").args(["-TERM", &pid]).status().is_ok_and(|status| status.success());
        if signalled {
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if self.child.try_wait().expect("broker status").is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let empty = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.data_dir, empty)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // Already exited when stopped; killing an exited child is harmless.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a broker or returns from the test with a loud skip message.
#[macro_export]
macro_rules! broker_or_skip {
    () => {
        match support::Broker::start() {
            Some(broker) => broker,
            None => {
                eprintln!("!!!!! SKIPPED {}: the sluice broker binary is unavailable", module_path!());
                return;
            }
        }
    };
}

/// A topic name unique within a test run.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}
