//! Test support shared by the crates' tests: [`linearizability`], a checker for recorded
//! histories, and the harness for whole-fleet tests: starts `vmcloud dev` as a real process on free ports with its
//! own data dir and CLI config, reads the addresses it prints, runs the CLI against it, and
//! stops it with SIGINT (what Ctrl-C sends) or kills it.
//!
//! The `vmcloud` binary is found next to the test executable (`target/<profile>/vmcloud`), or
//! at `$VMCLOUD_BIN`. `cargo test --workspace` builds it (the cli package has integration
//! tests, so cargo builds its binary).

pub mod cluster;
pub mod linearizability;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub fn vmcloud_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("VMCLOUD_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("the test executable has a path");
    // target/debug/deps/all-<hash> → target/debug/vmcloud
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("vmcloud"))
        .expect("the test executable is in target/<profile>/deps");
    assert!(
        bin.is_file(),
        "{} does not exist: build it with `cargo build -p vmcloud-cli` (scripts/test does), or set VMCLOUD_BIN",
        bin.display()
    );
    bin
}

/// A `vmcloud dev` process.
pub struct DevFleet {
    child: Option<Child>,
    pub api: String,
    pub agent_api: String,
    /// The scheduler's agent gateway (QUIC), HOST:PORT.
    pub gateway: String,
    pub node: String,
    pub token: String,
    pub data_dir: PathBuf,
    pub config_home: PathBuf,
    stderr: Arc<Mutex<String>>,
}

/// How a start that was expected to fail ended.
#[derive(Debug)]
pub struct Failed {
    pub status: ExitStatus,
    pub stderr: String,
}

/// The `vmcloud` binary with `config_home` as its config home and none of the caller's
/// VMCLOUD_* settings.
pub fn command(config_home: &Path) -> Command {
    let mut cmd = Command::new(vmcloud_bin());
    cmd.env("XDG_CONFIG_HOME", config_home)
        .env_remove("VMCLOUD_API")
        .env_remove("VMCLOUD_TOKEN")
        .env_remove("VMCLOUD_PROFILE")
        .env_remove("VMCLOUD_PROJECT")
        .env_remove("VMCLOUD_PASSWORD")
        .env_remove("VMCLOUD_DATA_DIR")
        .env("RUST_LOG", "info,raft=warn,quinn=warn");
    cmd
}

impl DevFleet {
    /// Starts `vmcloud dev` and waits until it says it is running.
    pub fn start(data_dir: &Path, config_home: &Path) -> DevFleet {
        match DevFleet::try_start(data_dir, config_home) {
            Ok(fleet) => fleet,
            Err(failed) => panic!(
                "vmcloud dev did not start ({}):\n{}",
                failed.status, failed.stderr
            ),
        }
    }

    pub fn try_start(data_dir: &Path, config_home: &Path) -> Result<DevFleet, Failed> {
        DevFleet::try_start_with(data_dir, config_home, &[])
    }

    /// [`DevFleet::try_start`] with more arguments for `vmcloud dev` (e.g. `--gpus`).
    pub fn try_start_with(
        data_dir: &Path,
        config_home: &Path,
        extra: &[&str],
    ) -> Result<DevFleet, Failed> {
        // The tests' fleets start with an empty host (a test that wants the demo instance
        // says `--demo-instance true`).
        let demo: &[&str] = if extra.contains(&"--demo-instance") {
            &[]
        } else {
            &["--demo-instance", "false"]
        };
        // The tests' fleets have no game hosts (a test that wants them says so).
        let game: &[&str] = if extra.contains(&"--game-hosts") {
            &[]
        } else {
            &["--game-hosts", "0"]
        };
        // Billing runs are made by hand in tests (a test that wants the leader's says so).
        let billing: &[&str] = if extra.contains(&"--billing-run-after") {
            &[]
        } else {
            &["--billing-run-after", "0"]
        };
        let mut child = command(config_home)
            .args([
                "dev",
                "--listen",
                "127.0.0.1:0",
                "--gateway-listen",
                "127.0.0.1:0",
                "--agent-listen",
                "127.0.0.1:0",
            ])
            .args(demo)
            .args(game)
            .args(billing)
            .args(extra)
            .arg("--data-dir")
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vmcloud starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let err_pipe = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let (tx, rx) = mpsc::channel();
        let out_pipe = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            // Keep reading after the banner has been seen (the receiver is gone then): a
            // closed pipe would make the process's next write to stdout fail.
            for line in BufReader::new(out_pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut api, mut agent_api, mut node, mut gateway) = (None, None, None, None);
        while api.is_none() || agent_api.is_none() || gateway.is_none() {
            let wait = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait.min(Duration::from_millis(100))) {
                Ok(line) => {
                    let t = line.trim();
                    if let Some(rest) = t.strip_prefix("API ") {
                        api = Some(rest.trim().to_owned());
                    } else if let Some(rest) = t.strip_prefix("agent link ") {
                        gateway = rest
                            .split_whitespace()
                            .next()
                            .and_then(|g| g.strip_prefix("quic://"))
                            .map(str::to_owned);
                    } else if let Some(rest) = t.strip_prefix("agent API ") {
                        let mut words = rest.split_whitespace();
                        agent_api = words.next().map(str::to_owned);
                        node = rest
                            .split("(node ")
                            .nth(1)
                            .and_then(|r| r.split_whitespace().next())
                            .map(str::to_owned);
                    }
                }
                Err(_) => {
                    if let Some(status) = child.try_wait().expect("waitable") {
                        std::thread::sleep(Duration::from_millis(100));
                        return Err(Failed {
                            status,
                            stderr: stderr.lock().unwrap().clone(),
                        });
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        panic!(
                            "vmcloud dev printed no addresses within 30 s:\n{}",
                            stderr.lock().unwrap()
                        );
                    }
                }
            }
        }
        let token = std::fs::read_to_string(data_dir.join("dev-api-key"))
            .expect("vmcloud dev writes the dev API key")
            .trim()
            .to_owned();
        Ok(DevFleet {
            child: Some(child),
            api: api.unwrap(),
            agent_api: agent_api.unwrap(),
            gateway: gateway.unwrap(),
            node: node.expect("the banner names the node"),
            token,
            data_dir: data_dir.to_owned(),
            config_home: config_home.to_owned(),
            stderr,
        })
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    /// What the process has logged so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The last `n` lines the process has logged, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let logs = self.logs();
        let lines: Vec<&str> = logs.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Sends SIGINT (Ctrl-C) and waits for the process to exit.
    pub fn stop(mut self) -> ExitStatus {
        kill(self.pid(), Signal::SIGINT).expect("signal the process");
        self.wait(Duration::from_secs(15))
    }

    /// Sends SIGINT and checks the process exits 0; if not, fails with its exit status and
    /// the end of its log.
    pub fn stop_cleanly(self) {
        let stderr = self.stderr.clone();
        let status = self.stop();
        if !status.success() {
            let logs = stderr.lock().unwrap().clone();
            let lines: Vec<&str> = logs.lines().collect();
            panic!(
                "vmcloud dev exited with {status} on Ctrl-C; the end of its log:\n{}",
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }

    /// `kill -9`.
    pub fn kill9(mut self) -> ExitStatus {
        kill(self.pid(), Signal::SIGKILL).expect("signal the process");
        self.wait(Duration::from_secs(15))
    }

    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("waitable") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "vmcloud dev did not exit within {limit:?}:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a CLI command against this fleet (through the `dev` profile it wrote).
    pub fn cli(&self, args: &[&str]) -> Output {
        command(&self.config_home)
            .args(args)
            .output()
            .expect("the CLI runs")
    }
}

impl Drop for DevFleet {
    fn drop(&mut self) {
        // A failing test shows what the process said.
        if std::thread::panicking() {
            eprintln!(
                "--- the end of vmcloud dev's log ({}) ---\n{}",
                self.data_dir.display(),
                self.log_tail(60)
            );
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the CLI with a given config home (no fleet needed).
pub fn cli(config_home: &Path, args: &[&str]) -> Output {
    command(config_home)
        .args(args)
        .output()
        .expect("the CLI runs")
}

/// Every (method, path) the API's router declares, read from its source
/// (`scheduler/src/api/mod.rs`).
pub fn declared_routes() -> std::collections::BTreeSet<(String, String)> {
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scheduler/src/api/mod.rs"
    ))
    .unwrap();
    let mut routes = std::collections::BTreeSet::new();
    for chunk in source.split(".route(").skip(1) {
        let chunk = chunk.split(".fallback(").next().unwrap();
        let path = chunk.split('"').nth(1).unwrap().to_owned();
        for method in ["get", "post", "patch", "delete", "put"] {
            let call = format!("{method}(");
            let found = chunk.match_indices(&call).any(|(i, _)| {
                i == 0
                    || !chunk.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && chunk.as_bytes()[i - 1] != b'_'
            });
            if found {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// A Python that can import `module`: $VMCLOUD_PYTHON, the repository's .venv (which
/// scripts/test makes), or python3.
pub fn python_with(module: &str) -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let candidates = [
        std::env::var_os("VMCLOUD_PYTHON").map(PathBuf::from),
        Some(venv),
        Some(PathBuf::from("python3")),
    ];
    candidates.into_iter().flatten().find(|py| {
        Command::new(py)
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// A webhook receiver (tests/webhooks/receiver.py) that verifies every delivery with the
/// Standard Webhooks reference library and logs what it saw. Killed when dropped.
pub struct WebhookReceiver {
    child: Child,
    pub port: u16,
    log: PathBuf,
    /// Write the endpoint's `whsec_` secret here once it is made.
    pub secret: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl WebhookReceiver {
    pub fn start(python: &Path) -> WebhookReceiver {
        let dir = tempfile::tempdir().unwrap();
        let (port_file, secret, log) = (
            dir.path().join("port"),
            dir.path().join("secret"),
            dir.path().join("log.jsonl"),
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("webhooks/receiver.py");
        let child = Command::new(python)
            .arg(script)
            .args([&port_file, &secret, &log])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|p| p.trim().parse().ok())
            {
                break p;
            }
            assert!(Instant::now() < deadline, "the receiver did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        WebhookReceiver {
            child,
            port,
            log,
            secret,
            _dir: dir,
        }
    }

    /// Every delivery it got, in order: `{"id", "ok", "type", "state", "instance", "error"}`.
    pub fn seen(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}
