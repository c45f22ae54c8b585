//! The peer of `vmcloud bench raft --peer etcd`: a 3-member etcd (Debian's `etcd-server`) on
//! loopback, fsync on (etcd's default), driven by a small gRPC client of our own with the same
//! load as our group: `clients` concurrent clients, one put of `payload` bytes in flight each,
//! sent to the leader (as ours are). The client speaks gRPC over HTTP/2 by hand — a put is a
//! length-prefixed `PutRequest` protobuf posted to `/etcdserverpb.KV/Put` — so nothing between
//! the load and etcd's Raft is slower than etcd's own clients.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::Reaped;
use super::cluster::{free_tcp, tail};

/// What one run of the load gave.
pub struct Figures {
    pub commits_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    pub version: String,
}

/// The members, stopped (and their data removed with `dir`) when dropped.
pub struct Etcd {
    _members: Vec<Reaped>,
    clients: Vec<String>,
}

const ETCD: &str = "/usr/bin/etcd";

impl Etcd {
    /// Starts `n` members under `dir`; returns once every one says it is healthy.
    pub async fn start(dir: &Path, n: usize) -> anyhow::Result<Etcd> {
        if !Path::new(ETCD).exists() {
            bail!(
                "{ETCD} is missing: install Debian's etcd-server (apt-get install etcd-server) to compare with etcd"
            );
        }
        let peers: Vec<String> = (0..n)
            .map(|_| free_tcp().map(|a| format!("http://{a}")))
            .collect::<anyhow::Result<_>>()?;
        let clients: Vec<String> = (0..n)
            .map(|_| free_tcp().map(|a| format!("http://{a}")))
            .collect::<anyhow::Result<_>>()?;
        let initial: Vec<String> = peers
            .iter()
            .enumerate()
            .map(|(i, p)| format!("m{}={p}", i + 1))
            .collect();
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            let log = dir.join(format!("etcd-{}.log", i + 1));
            let child = Command::new(ETCD)
                .args(["--name", &format!("m{}", i + 1)])
                .arg("--data-dir")
                .arg(dir.join(format!("etcd-{}", i + 1)))
                .args(["--listen-client-urls", &clients[i]])
                .args(["--advertise-client-urls", &clients[i]])
                .args(["--listen-peer-urls", &peers[i]])
                .args(["--initial-advertise-peer-urls", &peers[i]])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "vmcloud-bench"])
                .args(["--logger", "zap", "--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .spawn()
                .with_context(|| format!("cannot start {ETCD}"))?;
            members.push(Reaped(child));
        }
        let etcd = Etcd {
            _members: members,
            clients,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        for (i, url) in etcd.clients.iter().enumerate() {
            loop {
                let healthy = match http.get(format!("{url}/health")).send().await {
                    Ok(r) => r.text().await.unwrap_or_default().contains("true"),
                    Err(_) => false,
                };
                if healthy {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "etcd member {} is not healthy within 30 s:\n{}",
                        i + 1,
                        tail(&dir.join(format!("etcd-{}.log", i + 1)))
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(etcd)
    }

    /// The client URL of the member that leads (asked through etcd's JSON gateway).
    async fn leader(&self) -> anyhow::Result<String> {
        let http = reqwest::Client::new();
        for url in &self.clients {
            let status: serde_json::Value = http
                .post(format!("{url}/v3/maintenance/status"))
                .body("{}")
                .send()
                .await?
                .json()
                .await?;
            if status["header"]["member_id"] == status["leader"] {
                return Ok(url.clone());
            }
        }
        bail!("no etcd member says it leads")
    }

    /// `clients` clients each putting `payload` bytes, one put in flight each, for `duration`.
    pub async fn load(
        &self,
        clients: usize,
        payload: usize,
        duration: Duration,
    ) -> anyhow::Result<Figures> {
        let version = reqwest::get(format!("{}/version", self.clients[0]))
            .await?
            .json::<serde_json::Value>()
            .await?["etcdserver"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        let leader = self.leader().await?;
        // 16 clients to an HTTP/2 connection, as gRPC clients share channels.
        let connections: Vec<reqwest::Client> = (0..clients.div_ceil(16))
            .map(|_| {
                reqwest::Client::builder()
                    .http2_prior_knowledge()
                    .timeout(Duration::from_secs(5))
                    .build()
            })
            .collect::<Result<_, _>>()?;
        let url = Arc::new(format!("{leader}/etcdserverpb.KV/Put"));
        let deadline = Instant::now() + duration;
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(clients);
        for c in 0..clients {
            let http = connections[c / 16].clone();
            let url = url.clone();
            let body = put_request(format!("bench-{c}").as_bytes(), &vec![0x5a; payload]);
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if put(&http, &url, body.clone()).await {
                        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            }));
        }
        let (latencies, errors) = super::gather(tasks).await?;
        let elapsed = started.elapsed().as_secs_f64();
        Ok(Figures {
            commits_per_s: latencies.len() as f64 / elapsed,
            p50_ms: super::percentile(&latencies, 50.0),
            p99_ms: super::percentile(&latencies, 99.0),
            errors,
            version,
        })
    }
}

/// A gRPC message: no compression, its length, then `etcdserverpb.PutRequest { key = 1;
/// value = 2; }` in protobuf.
fn put_request(key: &[u8], value: &[u8]) -> bytes::Bytes {
    let mut message = Vec::with_capacity(key.len() + value.len() + 8);
    for (tag, field) in [(0x0a_u8, key), (0x12, value)] {
        message.push(tag);
        prost::encoding::encode_varint(field.len() as u64, &mut message);
        message.extend_from_slice(field);
    }
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    framed.into()
}

/// One put: true when etcd answered with a `PutResponse` (gRPC status OK).
async fn put(http: &reqwest::Client, url: &str, body: bytes::Bytes) -> bool {
    let Ok(resp) = http
        .post(url)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .send()
        .await
    else {
        return false;
    };
    // A refusal comes as a trailers-only answer: grpc-status in the headers.
    let refused = resp
        .headers()
        .get("grpc-status")
        .is_some_and(|s| s.as_bytes() != b"0");
    if !resp.status().is_success() || refused {
        return false;
    }
    resp.bytes().await.is_ok_and(|b| b.len() >= 5)
}
