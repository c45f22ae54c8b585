//! A scheduler group for benchmarks: `n` real `vmcloud scheduler` processes (Raft over QUIC
//! with mutual TLS on loopback) in a work directory, each restartable from its data after a
//! `kill -9`.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::Reaped;

pub struct Replica {
    pub process: Option<Reaped>,
    pub pid: u32,
    /// `http://ADDR` of its API.
    pub api: String,
    pub gateway: SocketAddr,
    pub log: PathBuf,
    http: SocketAddr,
}

pub struct Group {
    pub replicas: Vec<Replica>,
    exe: PathBuf,
    dir: PathBuf,
    peers: String,
    key: String,
}

impl Group {
    /// Makes the PKI and starts `n` replicas whose bootstrap API key (in the dev project) is
    /// `key`; returns once every one answers `/healthz`.
    pub async fn start(exe: &Path, dir: &Path, n: usize, key: &str) -> anyhow::Result<Group> {
        cluster_init(exe, n, &dir.join("pki"))?;
        let raft: Vec<SocketAddr> = (0..n).map(|_| free_udp()).collect::<anyhow::Result<_>>()?;
        let peers: Vec<String> = raft
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect();
        let mut group = Group {
            replicas: Vec::with_capacity(n),
            exe: exe.to_owned(),
            dir: dir.to_owned(),
            peers: peers.join(","),
            key: key.to_owned(),
        };
        for i in 0..n {
            let (http, gateway) = (free_tcp()?, free_udp()?);
            let log = dir.join(format!("replica-{}.log", i + 1));
            group.replicas.push(Replica {
                process: None,
                pid: 0,
                api: format!("http://{http}"),
                gateway,
                log,
                http,
            });
            group.spawn(i)?;
        }
        for i in 0..n {
            group.wait_healthy(i, Duration::from_secs(60)).await?;
        }
        Ok(group)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let r = &self.replicas[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&r.log)?;
        let child = Command::new(&self.exe)
            .arg("scheduler")
            .args(["--id", &(i + 1).to_string(), "--peers", &self.peers])
            .arg("--pki-dir")
            .arg(self.dir.join("pki"))
            .arg("--data-dir")
            .arg(self.dir.join(format!("replica-{}", i + 1)))
            .args(["--listen", &r.http.to_string()])
            .args(["--gateway-listen", &r.gateway.to_string()])
            .env("VMCLOUD_BOOTSTRAP_API_KEY", &self.key)
            .env("RUST_LOG", "info,raft=warn,quinn=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start vmcloud scheduler")?;
        let r = &mut self.replicas[i];
        r.pid = child.id();
        r.process = Some(Reaped(child));
        Ok(())
    }

    /// Starts replica `i` again (after a kill), from its data directory.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i)?;
        self.wait_healthy(i, Duration::from_secs(60)).await
    }

    async fn wait_healthy(&self, i: usize, within: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let r = &self.replicas[i];
        let deadline = Instant::now() + within;
        loop {
            if let Ok(resp) = http.get(format!("{}/healthz", r.api)).send().await
                && resp.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "replica {} did not start within {within:?}:\n{}",
                    i + 1,
                    tail(&r.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The benchmark's directory: `given`, or a temporary one (removed when the guard drops).
pub(super) fn work_dir(
    given: Option<&Path>,
) -> anyhow::Result<(Option<tempfile::TempDir>, PathBuf)> {
    match given {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            Ok((None, d.to_owned()))
        }
        None => {
            let tmp = tempfile::tempdir().context("cannot make a temporary directory")?;
            let path = tmp.path().to_owned();
            Ok((Some(tmp), path))
        }
    }
}

/// `vmcloud cluster init`: a CA and certificates for `replicas` replicas in `pki`.
pub(super) fn cluster_init(exe: &Path, replicas: usize, pki: &Path) -> anyhow::Result<()> {
    let out = Command::new(exe)
        .args(["cluster", "init", "--replicas", &replicas.to_string()])
        .arg("--pki-dir")
        .arg(pki)
        .output()
        .context("cannot run vmcloud cluster init")?;
    if !out.status.success() {
        bail!(
            "vmcloud cluster init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

pub(super) fn free_tcp() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

pub(super) fn free_udp() -> anyhow::Result<SocketAddr> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?)
}

/// The last lines of a log, for an error.
pub(super) fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
