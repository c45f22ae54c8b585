//! `vmcloud bench launch`: game launches from warm pools through a replicated scheduler.
//! Starts `--replicas` scheduler replicas (`vmcloud scheduler`, Raft over QUIC, fsync on) with
//! a catalog whose warm pool keeps `--sessions` game VMs booted, and simulated GPU hosts
//! (`vmcloud agent --sim`, `--shape`) enough for them, all over real QUIC with mutual TLS on
//! loopback. Once the pool is full it makes one project (with its own API key) per launch,
//! then `--concurrency` clients launch one session each through the leader's HTTP API
//! (`POST /v1/sessions`, as a gamer's client does) until `--sessions` are launched.
//!
//! Measures, per launch, the time from the request to the answer with connection details
//! (host, port, one-time token) — or, when no warm VM was free, to the queued answer — and the
//! launches per second; reports the share served warm. Prints the figures beside the budget of
//! issue 20 (DESIGN.md §6: p99 ≤ 100 ms, ≥ 2,000 launches/s) and, last, a JSON line.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use rand::Rng;
use serde_json::{Value, json};

use super::cluster::{cluster_init, free_tcp, free_udp, tail, work_dir};
use super::{Reaped, percentile};

const BUDGET_P99_MS: f64 = 100.0;
const BUDGET_LAUNCHES_PER_S: f64 = 2_000.0;

#[derive(Debug, Args)]
pub struct LaunchBenchArgs {
    /// Launches (one per gamer project); the warm pool is sized for all of them.
    #[arg(long, default_value_t = 20_000)]
    pub sessions: usize,
    /// Launches in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Scheduler replicas (Raft voters).
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// Host shape of the simulated game hosts.
    #[arg(long, default_value = "gpu-8xrtx4090")]
    pub shape: String,
    /// Simulated hosts per agent process.
    #[arg(long, default_value_t = 2_500)]
    pub per_process: usize,
    /// Give up waiting for the pool (or the set-up) after this long.
    #[arg(long, default_value = "900s", value_parser = super::parse_duration)]
    pub timeout: Duration,
    /// Keep the cluster's files in this directory instead of a temporary one.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// The flavor and title launched.
const FLAVOR: &str = "game-rtx4090";
const TITLE: &str = "chess-arena";

struct Http {
    http: reqwest::Client,
}

impl Http {
    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        key: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self.http.request(method, url).bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let v = resp.json().await.unwrap_or(Value::Null);
        Ok((status, v))
    }
}

pub async fn launch(args: LaunchBenchArgs) -> anyhow::Result<()> {
    if args.sessions == 0 || args.replicas == 0 || args.concurrency == 0 {
        bail!("--sessions, --replicas and --concurrency must be at least 1");
    }
    vmcloud_agent::gpu::SimGpus::shape(&args.shape).map_err(|e| anyhow::anyhow!("--shape: {e}"))?;
    let gpus_per_host: usize = args
        .shape
        .strip_prefix("gpu-")
        .and_then(|r| r.split_once('x')?.0.parse().ok())
        .with_context(|| {
            format!(
                "--shape {}: a game host needs GPUs (e.g. gpu-8xrtx4090)",
                args.shape
            )
        })?;
    let hosts = args.sessions.div_ceil(gpus_per_host);
    crate::limits::raise_nofile();
    let exe = std::env::current_exe().context("cannot find the vmcloud binary")?;
    let (_tmp, dir) = work_dir(args.work_dir.as_deref())?;
    let pki = dir.join("pki");
    cluster_init(&exe, args.replicas, &pki)?;
    // The shipped catalog with a warm pool sized for every launch.
    let catalog = dir.join("catalog.toml");
    std::fs::write(
        &catalog,
        format!(
            "{}\n[[gaming.warm_pools]]\nregion = \"par\"\nflavor = \"{FLAVOR}\"\nmin = {n}\nmax = {n}\nboot_s = 1\n",
            vmcloud_scheduler::catalog::DEFAULT_CATALOG,
            n = args.sessions
        ),
    )?;
    let mut rng = rand::rng();
    let operator = format!(
        "vmc_{:016x}_{:032x}",
        rng.random::<u64>(),
        rng.random::<u128>()
    );
    let http = Arc::new(Http {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(args.concurrency)
            .build()?,
    });

    // The replicas.
    let raft: Vec<std::net::SocketAddr> = (0..args.replicas)
        .map(|_| free_udp())
        .collect::<anyhow::Result<_>>()?;
    let peers: Vec<String> = raft
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect();
    let mut replicas = Vec::new();
    for i in 0..args.replicas {
        let (api, gateway) = (free_tcp()?, free_udp()?);
        let log = dir.join(format!("replica-{}.log", i + 1));
        let child = Command::new(&exe)
            .arg("scheduler")
            .args(["--id", &(i + 1).to_string(), "--peers", &peers.join(",")])
            .arg("--pki-dir")
            .arg(&pki)
            .arg("--data-dir")
            .arg(dir.join(format!("replica-{}", i + 1)))
            .arg("--catalog")
            .arg(&catalog)
            .args(["--listen", &api.to_string()])
            .args(["--gateway-listen", &gateway.to_string()])
            // The benchmark's clients are many gamers at once from one address.
            .args(["--api-rate-limit", "0"])
            .env("VMCLOUD_BOOTSTRAP_API_KEY", &operator)
            .env("RUST_LOG", "warn,raft=warn,quinn=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start vmcloud scheduler")?;
        replicas.push((Reaped(child), format!("http://{api}"), gateway, log));
    }
    let started = Instant::now();
    let leader = loop {
        let mut found = None;
        for (i, (_, api, _, _)) in replicas.iter().enumerate() {
            if let Ok((200, v)) = http
                .call(
                    reqwest::Method::GET,
                    &format!("{api}/v1/cluster"),
                    &operator,
                    None,
                )
                .await
                && v["is_leader"] == true
            {
                found = Some(i);
            }
        }
        if let Some(i) = found {
            break i;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("no replica leads after 60 s:\n{}", tail(&replicas[0].3));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let api = replicas[leader].1.clone();
    eprintln!(
        "{} scheduler replicas up; replica {} leads; starting {hosts} simulated game hosts ({})",
        args.replicas,
        leader + 1,
        args.shape
    );

    // The game hosts.
    let mut agents = Vec::new();
    let gateways: Vec<String> = replicas.iter().map(|r| r.2.to_string()).collect();
    for k in 0..hosts.div_ceil(args.per_process) {
        let count = args.per_process.min(hosts - k * args.per_process);
        let log = dir.join(format!("agents-{}.log", k + 1));
        let child = Command::new(&exe)
            .args(["agent", "--sim", "--shape", &args.shape])
            .args(["--count", &count.to_string()])
            .args(["--node", &format!("g{}", k + 1)])
            .args(["--region", "par"])
            .args(["--scheduler", &gateways.join(",")])
            .args([
                "--agent-listen",
                &format!("127.2.{}.{}:0", k / 250, k % 250 + 1),
            ])
            .arg("--pki-dir")
            .arg(&pki)
            .arg("--data-dir")
            .arg(dir.join(format!("agents-{}", k + 1)))
            .env("RUST_LOG", "warn,quinn=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start vmcloud agent")?;
        agents.push((Reaped(child), log));
    }

    // The pool fills.
    let mut last_report = Instant::now();
    loop {
        for (p, log) in &mut agents {
            if let Ok(Some(status)) = p.0.try_wait() {
                bail!("an agent process exited ({status}):\n{}", tail(log));
            }
        }
        let (_, pools) = http
            .call(
                reqwest::Method::GET,
                &format!("{api}/v1/warm-pools"),
                &operator,
                None,
            )
            .await
            .unwrap_or((0, Value::Null));
        let ready = pools["pools"][0]["ready"].as_u64().unwrap_or(0) as usize;
        if ready >= args.sessions {
            break;
        }
        if started.elapsed() > args.timeout {
            bail!(
                "only {ready} of {} warm VMs ready after {:?}:\n{}",
                args.sessions,
                args.timeout,
                tail(&replicas[leader].3)
            );
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "  {ready} / {} warm VMs ready after {:.0} s",
                args.sessions,
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "warm pool full ({} VMs) after {:.0} s; making {} gamer projects",
        args.sessions,
        started.elapsed().as_secs_f64(),
        args.sessions
    );

    // One project and key per launch (one session per project at a time).
    let (_, dev) = http
        .call(
            reqwest::Method::GET,
            &format!("{api}/v1/projects/acct-dev"),
            &operator,
            None,
        )
        .await?;
    let org = dev["organisation"]
        .as_str()
        .context("the operator's project has no organisation")?
        .to_owned();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (http, api, org, operator, next) = (
            http.clone(),
            api.clone(),
            org.clone(),
            operator.clone(),
            next.clone(),
        );
        let total = args.sessions;
        tasks.push(tokio::spawn(async move {
            let mut keys = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return Ok::<_, anyhow::Error>(keys);
                }
                let (status, p) = http
                    .call(
                        reqwest::Method::POST,
                        &format!("{api}/v1/projects"),
                        &operator,
                        Some(json!({"organisation": org, "name": format!("gamer-{n}")})),
                    )
                    .await?;
                anyhow::ensure!(status == 201, "creating a gamer project: {status} {p}");
                let id = p["id"].as_str().context("a project id")?.to_owned();
                let (status, k) = http
                    .call(
                        reqwest::Method::POST,
                        &format!("{api}/v1/projects/{id}/keys"),
                        &operator,
                        Some(json!({"name": "client"})),
                    )
                    .await?;
                anyhow::ensure!(status == 201, "creating a gamer key: {status} {k}");
                keys.push(k["token"].as_str().context("a key")?.to_owned());
            }
        }));
    }
    let mut keys = Vec::with_capacity(args.sessions);
    for t in tasks {
        keys.extend(t.await??);
    }
    // Every replica has applied the set-up before the clock starts (a follower still applying
    // it would take the CPUs the launches are measured on).
    let (_, leader_view) = http
        .call(
            reqwest::Method::GET,
            &format!("{api}/v1/cluster"),
            &operator,
            None,
        )
        .await?;
    let commit = leader_view["commit_index"].as_u64().unwrap_or(0);
    for (_, replica_api, _, log) in &replicas {
        loop {
            let (_, v) = http
                .call(
                    reqwest::Method::GET,
                    &format!("{replica_api}/v1/cluster"),
                    &operator,
                    None,
                )
                .await
                .unwrap_or((0, Value::Null));
            if v["applied_index"].as_u64().unwrap_or(0) >= commit {
                break;
            }
            if started.elapsed() > args.timeout {
                bail!(
                    "a replica did not catch up within {:?}:\n{}",
                    args.timeout,
                    tail(log)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!(
        "{} gamers ready after {:.0} s; launching, {} at a time, through replica {}",
        keys.len(),
        started.elapsed().as_secs_f64(),
        args.concurrency,
        leader + 1
    );

    // The launches.
    let keys = Arc::new(keys);
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (http, api, keys, next) = (http.clone(), api.clone(), keys.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut out: Vec<(f64, bool)> = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= keys.len() {
                    return Ok::<_, anyhow::Error>(out);
                }
                let t = Instant::now();
                let (status, s) = http
                    .call(
                        reqwest::Method::POST,
                        &format!("{api}/v1/sessions"),
                        &keys[n],
                        Some(json!({"title": TITLE, "flavor": FLAVOR, "region": "par"})),
                    )
                    .await?;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                anyhow::ensure!(status == 201, "a launch was refused: {status} {s}");
                out.push((ms, s["connection"]["token"].is_string()));
            }
        }));
    }
    let mut results = Vec::with_capacity(args.sessions);
    for t in tasks {
        results.extend(t.await??);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let warm = results.iter().filter(|(_, w)| *w).count();
    let mut all: Vec<f64> = results.iter().map(|(ms, _)| *ms).collect();
    all.sort_by(f64::total_cmp);
    let mut served_warm: Vec<f64> = results
        .iter()
        .filter(|(_, w)| *w)
        .map(|(ms, _)| *ms)
        .collect();
    served_warm.sort_by(f64::total_cmp);
    let launches_per_s = results.len() as f64 / elapsed;
    let warm_share = warm as f64 / results.len() as f64;
    println!(
        "{} launches through a {}-replica cluster ({} simulated game hosts, {}), {} in flight, {:.1} s",
        results.len(),
        args.replicas,
        hosts,
        args.shape,
        args.concurrency,
        elapsed
    );
    println!("{:<46} {:>10} {:>10}", "measure", "figure", "budget");
    println!(
        "{:<46} {:>10.0} {:>10}",
        "launches per second",
        launches_per_s,
        format!("≥ {BUDGET_LAUNCHES_PER_S:.0}")
    );
    for (name, p) in [("p50", 50.0), ("p99", 99.0)] {
        println!(
            "{:<46} {:>10.1} {:>10}",
            format!("request → connection details, {name} ms"),
            percentile(&served_warm, p),
            if name == "p99" {
                format!("≤ {BUDGET_P99_MS:.0}")
            } else {
                String::new()
            }
        );
    }
    println!(
        "{:<46} {:>10.1} {:>10}",
        "every launch (warm or queued), p99 ms",
        percentile(&all, 99.0),
        ""
    );
    println!(
        "{:<46} {:>9.1}% {:>10}",
        "served warm",
        warm_share * 100.0,
        ""
    );
    println!(
        "{}",
        json!({
            "benchmark": "launch",
            "sessions": results.len(),
            "replicas": args.replicas,
            "hosts": hosts,
            "concurrency": args.concurrency,
            "launches_per_s": launches_per_s,
            "p50_ms": percentile(&served_warm, 50.0),
            "p99_ms": percentile(&served_warm, 99.0),
            "all_p99_ms": percentile(&all, 99.0),
            "warm_share": warm_share,
        })
    );
    Ok(())
}
