//! A multi-replica scheduler as real processes (`vmcloud scheduler`), for crash tests: start,
//! `kill -9` and restart replicas, on free loopback ports.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::vmcloud_bin;

/// The API key every replica makes sure the dev project has.
pub const TEST_API_KEY: &str = "vmc_0123456789abcdef_0123456789abcdef0123456789abcdef";

fn free_tcp() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn free_udp() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub struct SchedulerCluster {
    pub dir: tempfile::TempDir,
    raft: Vec<SocketAddr>,
    api: Vec<SocketAddr>,
    gateway: Vec<SocketAddr>,
    processes: Vec<Option<Child>>,
    /// Replicas `0..initial` form the group; later ones join it.
    initial: usize,
    /// The network namespace each replica runs in (`ip netns exec`), if not this one.
    netns: Vec<Option<String>>,
    /// More flags for every replica.
    extra_args: Vec<String>,
}

impl SchedulerCluster {
    /// Makes the PKI (`vmcloud cluster init`) and picks ports for `n` replicas; starts none.
    pub fn new(n: usize) -> SchedulerCluster {
        SchedulerCluster::with_spares(n, 0)
    }

    /// A group of `n` replicas plus `spares` that can join it later ([`Self::start_joining`]).
    pub fn with_spares(n: usize, spares: usize) -> SchedulerCluster {
        let initial = n;
        let n = n + spares;
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(vmcloud_bin())
            .args(["cluster", "init", "--replicas", &n.to_string(), "--pki-dir"])
            .arg(dir.path().join("pki"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cluster init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // One secrets key for every replica (they open what any of them sealed).
        let key = Command::new(vmcloud_bin())
            .args(["secrets", "new-key"])
            .output()
            .unwrap();
        assert!(key.status.success());
        let key_file = dir.path().join("secrets.key");
        std::fs::write(&key_file, &key.stdout).unwrap();
        std::fs::set_permissions(
            &key_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        SchedulerCluster {
            dir,
            raft: (0..n).map(|_| free_udp()).collect(),
            api: (0..n).map(|_| free_tcp()).collect(),
            gateway: (0..n).map(|_| free_udp()).collect(),
            processes: (0..n).map(|_| None).collect(),
            initial,
            netns: (0..n).map(|_| None).collect(),
            extra_args: Vec::new(),
        }
    }

    /// A group of one replica per `(namespace, address)`, each run in that network namespace
    /// and listening on that address (Raft 7100, API 8080, agent gateway 7443), with
    /// `extra_args` for every replica. The namespaces must exist.
    pub fn in_namespaces(
        placements: &[(String, std::net::IpAddr)],
        extra_args: &[&str],
    ) -> SchedulerCluster {
        let mut cluster = SchedulerCluster::new(placements.len());
        for (i, (ns, ip)) in placements.iter().enumerate() {
            cluster.raft[i] = SocketAddr::new(*ip, 7100);
            cluster.api[i] = SocketAddr::new(*ip, 8080);
            cluster.gateway[i] = SocketAddr::new(*ip, 7443);
            cluster.netns[i] = Some(ns.clone());
        }
        cluster.extra_args = extra_args.iter().map(|a| a.to_string()).collect();
        cluster
    }

    /// Replica `i`'s raft link address.
    pub fn raft_address(&self, i: usize) -> SocketAddr {
        self.raft[i]
    }

    pub fn len(&self) -> usize {
        self.processes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
    }

    /// Replica `i`'s agent gateway (QUIC).
    pub fn gateway(&self, i: usize) -> SocketAddr {
        self.gateway[i]
    }

    /// The cluster's PKI directory (CA certificate and key, replicas' certificates).
    pub fn pki_dir(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    /// Base URL of replica `i` (0-based)'s API.
    pub fn api(&self, i: usize) -> String {
        format!("http://{}", self.api[i])
    }

    /// Replica `i`'s log (stderr).
    pub fn log(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("replica-{}.log", i + 1))
    }

    /// Starts replica `i` (0-based) and returns without waiting for it.
    pub fn start(&mut self, i: usize) {
        let join = i >= self.initial;
        self.spawn(i, join);
    }

    /// Starts replicas `0..n` and waits until each serves.
    pub fn start_ready(&mut self, n: usize) {
        for i in 0..n {
            self.start(i);
        }
        for i in 0..n {
            self.wait_ready(i, Duration::from_secs(60));
        }
    }

    /// Starts spare replica `i` with `--join`: it waits to be added to the group.
    pub fn start_joining(&mut self, i: usize) {
        self.spawn(i, true);
    }

    fn spawn(&mut self, i: usize, join: bool) {
        assert!(self.processes[i].is_none(), "replica {} is running", i + 1);
        let known = if join { self.raft.len() } else { self.initial };
        let peers: Vec<String> = self.raft[..known]
            .iter()
            .enumerate()
            .map(|(j, a)| format!("{}={a}", j + 1))
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(i))
            .unwrap();
        let mut command = match &self.netns[i] {
            Some(ns) => {
                let mut c = Command::new("ip");
                // `ip netns exec` execs the command: the child is the replica itself.
                c.args(["netns", "exec", ns]).arg(vmcloud_bin());
                c
            }
            None => Command::new(vmcloud_bin()),
        };
        let child = command
            .arg("scheduler")
            .args(["--id", &(i + 1).to_string(), "--peers", &peers.join(",")])
            .arg("--pki-dir")
            .arg(self.dir.path().join("pki"))
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("data-{}", i + 1)))
            .args([
                "--listen",
                &self.api[i].to_string(),
                "--gateway-listen",
                &self.gateway[i].to_string(),
            ])
            .args(if join { &["--join"][..] } else { &[][..] })
            .arg("--secrets-key")
            .arg(self.dir.path().join("secrets.key"))
            // The tests' webhook receivers listen on loopback.
            .arg("--webhooks-allow-private")
            .args(&self.extra_args)
            .env("VMCLOUD_BOOTSTRAP_API_KEY", TEST_API_KEY)
            .env("RUST_LOG", "info,raft=warn,quinn=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.processes[i] = Some(child);
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.processes[i].is_some()
    }

    /// `kill -9` replica `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.processes[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until replica `i`'s API answers (it serves only once its log is replayed).
    pub fn wait_ready(&mut self, i: usize, within: Duration) {
        let deadline = Instant::now() + within;
        let url = format!("{}/healthz", self.api(i));
        loop {
            if let Some(child) = self.processes[i].as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "replica {} exited ({status}):\n{}",
                    i + 1,
                    std::fs::read_to_string(self.log(i)).unwrap_or_default()
                );
            }
            if std::net::TcpStream::connect_timeout(&self.api[i], Duration::from_millis(100))
                .is_ok()
                && http_ok(&url)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replica {} not ready within {within:?}:\n{}",
                i + 1,
                std::fs::read_to_string(self.log(i)).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A minimal blocking `GET` over plain HTTP/1.1: the status and the body.
pub fn http_get(url: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.get(9..12)?.parse().ok()?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

fn http_ok(url: &str) -> bool {
    http_get(url).is_some_and(|(status, _)| status == 200)
}

impl Drop for SchedulerCluster {
    fn drop(&mut self) {
        for i in 0..self.processes.len() {
            self.kill9(i);
        }
    }
}
