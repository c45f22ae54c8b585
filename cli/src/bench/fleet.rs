//! `vmcloud bench fleet`: many agents on one scheduler cluster. Starts `--replicas` scheduler
//! replicas (`vmcloud scheduler`, Raft over QUIC) and `--agents` simulated agents
//! (`vmcloud agent --sim --count`, `--per-process` to a process), all over real QUIC with
//! mutual TLS on loopback, heartbeats every 5 s. Each agent process is given every replica's
//! gateway, in a different order, so followers redirect most agents to the leader.
//!
//! Measures: the time until the leader has every agent registered; then, over `--measure`,
//! the leader's CPU share and memory (from /proc) and how late it handles heartbeats (its
//! `vmcloud_gateway_heartbeat_delay_seconds` histogram); then `kill -9` of the leader and the
//! time until every agent is attached to the new one, and how many nodes were declared down
//! (there must be none). Prints the figures beside the DESIGN.md §6 budget and, last, a JSON
//! line.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use rand::Rng;
use serde_json::{Value, json};

use super::cluster::{Replica, tail, work_dir};
use super::{Reaped, sample};

/// DESIGN.md §6 and issues 6 and 23: the leader under half a core with 10,000 agents; every
/// agent re-attached within 15 s of a failover (issue 6 asked 30 s); no node falsely
/// declared down.
const BUDGET_LEADER_CPU_PERCENT: f64 = 50.0;
const BUDGET_REATTACH_S: f64 = 15.0;

#[derive(Debug, Args)]
pub struct FleetBenchArgs {
    /// Simulated agents.
    #[arg(long, default_value_t = 1_000)]
    pub agents: usize,
    /// Scheduler replicas (Raft voters).
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// Simulated agents per process (each agent has its own QUIC endpoint, ledger and API
    /// socket: about 4 file descriptors).
    #[arg(long, default_value_t = 2_500)]
    pub per_process: usize,
    /// How long to measure the leader once every agent is registered.
    #[arg(long, default_value = "30s", value_parser = super::parse_duration)]
    pub measure: Duration,
    /// Give up waiting for registration, or for re-attachment, after this long.
    #[arg(long, default_value = "600s", value_parser = super::parse_duration)]
    pub timeout: Duration,
    /// Start each agent process only once the previous ones' agents are registered (for
    /// fleets too large to start at once on the benchmark machine: its CPUs, not the
    /// scheduler's, would set the pace). Registration is then timed from the first start.
    #[arg(long)]
    pub ramp: bool,
    /// Keep the cluster's files (logs, data) in this directory instead of a temporary one.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// Cumulative histogram buckets `(upper bound, count)` of `name` in a Prometheus text page.
fn buckets(page: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    page.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// The `q` quantile of the observations between two readings of the same histogram,
/// interpolated linearly inside its bucket (as Prometheus' `histogram_quantile`); None when
/// nothing was observed. A quantile in the last (+Inf) bucket is reported as its lower bound.
fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<(f64, u64)> {
    let diff: Vec<(f64, f64)> = after
        .iter()
        .map(|&(le, n)| {
            let was = before
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |(_, c)| *c);
            (le, n - was)
        })
        .collect();
    let total = diff.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, cum) in &diff {
        if cum >= rank {
            if le.is_infinite() {
                return Some((lower.0, total as u64));
            }
            let share = if cum > lower.1 {
                (rank - lower.1) / (cum - lower.1)
            } else {
                1.0
            };
            return Some((lower.0 + (le - lower.0) * share, total as u64));
        }
        lower = (le, cum);
    }
    None
}

struct Api {
    http: reqwest::Client,
    key: String,
}

impl Api {
    async fn get(&self, url: &str) -> Option<Value> {
        let resp = self
            .http
            .get(url)
            .bearer_auth(&self.key)
            .send()
            .await
            .ok()?;
        resp.error_for_status().ok()?.json().await.ok()
    }

    async fn text(&self, url: &str) -> Option<String> {
        let resp = self.http.get(url).send().await.ok()?;
        resp.error_for_status().ok()?.text().await.ok()
    }

    /// (is leader, agents attached) as replica `api` says.
    async fn attached(&self, api: &str) -> Option<(bool, u64)> {
        let v = self.get(&format!("{api}/v1/cluster")).await?;
        Some((v["is_leader"].as_bool()?, v["connected_agents"].as_u64()?))
    }

    /// The replica that says it leads (of those still running), with its attached agents.
    async fn leader(&self, replicas: &[Replica]) -> Option<(usize, u64)> {
        for (i, r) in replicas.iter().enumerate() {
            if r.process.is_some()
                && let Some((true, n)) = self.attached(&r.api).await
            {
                return Some((i, n));
            }
        }
        None
    }
}

pub async fn fleet(args: FleetBenchArgs) -> anyhow::Result<()> {
    if args.agents == 0 || args.replicas == 0 || args.per_process == 0 {
        bail!("--agents, --replicas and --per-process must be at least 1");
    }
    let nofile = crate::limits::raise_nofile();
    let exe = std::env::current_exe().context("cannot find the vmcloud binary")?;
    let (_tmp, dir) = work_dir(args.work_dir.as_deref())?;
    let pki = dir.join("pki");
    let mut rng = rand::rng();
    let key = format!(
        "vmc_{:016x}_{:032x}",
        rng.random::<u64>(),
        rng.random::<u128>()
    );
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()?,
        key,
    };

    // The scheduler replicas.
    let group = super::cluster::Group::start(&exe, &dir, args.replicas, &api.key).await?;
    let mut replicas = group.replicas;
    let leader_of = |view: &Value| view["leader"].as_u64().map(|l| l as usize - 1);
    let mut leader = loop {
        if let Some(v) = api.get(&format!("{}/v1/cluster", replicas[0].api)).await
            && let Some(l) = leader_of(&v)
        {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "{} scheduler replicas up; replica {} leads",
        args.replicas,
        leader + 1
    );

    // The agents: `per_process` to a process, datacenters in turn, every replica's gateway in
    // a different order.
    let processes = args.agents.div_ceil(args.per_process);
    let regions = ["par", "fra", "ams"];
    let started = Instant::now();
    let mut agent_procs = Vec::with_capacity(processes);
    for k in 0..processes {
        let count = args.per_process.min(args.agents - k * args.per_process);
        let order: Vec<String> = (0..args.replicas)
            .map(|j| replicas[(j + k) % args.replicas].gateway.to_string())
            .collect();
        let log = dir.join(format!("agents-{}.log", k + 1));
        let child = Command::new(&exe)
            .args(["agent", "--sim", "--shape", "cpu"])
            .args(["--count", &count.to_string()])
            .args(["--node", &format!("b{}", k + 1)])
            .args(["--region", regions[k % regions.len()]])
            .args(["--scheduler", &order.join(",")])
            // Each process's agent API sockets on a loopback address of its own: 65,000 on
            // one address would exhaust its ephemeral ports.
            .args([
                "--agent-listen",
                &format!("127.1.{}.{}:0", k / 250, k % 250 + 1),
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
        agent_procs.push((Reaped(child), log));
        if args.ramp {
            let want = ((k + 1) * args.per_process).min(args.agents) as u64;
            while api.leader(&replicas).await.is_none_or(|(_, n)| n < want) {
                if let Ok(Some(status)) = agent_procs[k].0.0.try_wait() {
                    bail!(
                        "an agent process exited ({status}):\n{}",
                        tail(&agent_procs[k].1)
                    );
                }
                if started.elapsed() > args.timeout {
                    bail!("agents not registered within {:?}", args.timeout);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            eprintln!(
                "  {want} / {} registered after {:.0} s",
                args.agents,
                started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!(
        "{} simulated agents starting in {processes} process(es) (open-file limit {nofile})",
        args.agents
    );

    // Registration.
    let target = args.agents as u64;
    let mut last_report = Instant::now();
    let mut attached = 0;
    let first_leader = leader;
    while attached < target {
        if started.elapsed() > args.timeout {
            bail!(
                "only {attached} of {target} agents registered after {:?}",
                args.timeout
            );
        }
        for (p, log) in &mut agent_procs {
            if let Ok(Some(status)) = p.0.try_wait() {
                bail!("an agent process exited ({status}):\n{}", tail(log));
            }
        }
        if let Some((l, n)) = api.leader(&replicas).await {
            if l != leader {
                eprintln!("  the lead moved to replica {} during registration", l + 1);
                leader = l;
            }
            attached = n;
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "  {attached} / {target} registered after {:.0} s",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let registered_s = started.elapsed().as_secs_f64();
    eprintln!("all {target} agents registered in {registered_s:.1} s; settling 10 s");
    tokio::time::sleep(Duration::from_secs(10)).await;

    // Steady state on the leader.
    let leader_api = replicas[leader].api.clone();
    let pid = replicas[leader].pid;
    let metric = "vmcloud_gateway_heartbeat_delay_seconds";
    let page0 = api
        .text(&format!("{leader_api}/metrics"))
        .await
        .context("the leader serves no metrics")?;
    let agent_cpu = |procs: &[(Reaped, PathBuf)]| -> f64 {
        procs
            .iter()
            .filter_map(|(p, _)| sample(p.0.id()).ok())
            .map(|(_, cpu)| cpu)
            .sum()
    };
    let (_, cpu0) = sample(pid)?;
    let agents_cpu0 = agent_cpu(&agent_procs);
    let t0 = Instant::now();
    eprintln!("measuring the leader for {:?}", args.measure);
    let mut rss_max: f64 = 0.0;
    while t0.elapsed() < args.measure {
        rss_max = rss_max.max(sample(pid)?.0);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (rss, cpu1) = sample(pid)?;
    let elapsed = t0.elapsed().as_secs_f64();
    let agents_cpu_percent = (agent_cpu(&agent_procs) - agents_cpu0) / elapsed * 100.0;
    let rss_max = rss_max.max(rss);
    let leader_cpu_percent = (cpu1 - cpu0) / elapsed * 100.0;
    let page1 = api
        .text(&format!("{leader_api}/metrics"))
        .await
        .context("the leader serves no metrics")?;
    let (heartbeat_p99_ms, heartbeats) =
        quantile(&buckets(&page0, metric), &buckets(&page1, metric), 0.99)
            .map_or((None, 0), |(p, n)| (Some(p * 1000.0), n));

    // Failover: kill -9 the leader; every agent must find the new one.
    eprintln!("kill -9 the leader (replica {})", leader + 1);
    let killed = Instant::now();
    replicas[leader].process.take();
    last_report = killed;
    let mut new_leader = None;
    let mut best = 0;
    let reattach_s = loop {
        if killed.elapsed() > args.timeout {
            break None;
        }
        for (i, r) in replicas.iter().enumerate() {
            if i == leader {
                continue;
            }
            if let Some((true, n)) = api.attached(&r.api).await {
                new_leader = Some(i);
                best = n;
            }
        }
        if best >= target {
            break Some(killed.elapsed().as_secs_f64());
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "  {best} / {target} re-attached after {:.0} s",
                killed.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let new_leader = new_leader.context("no new leader was elected")?;
    // The new leader is busiest right after the re-attachment: ask again for up to a minute.
    // Every page of the list, each page asked again until it answers.
    let asked = Instant::now();
    let mut all: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            // The leader's own view (`stale`: no quorum round per page while it is at its
            // busiest): whether it declared nodes down is what is asked.
            Some(c) => format!(
                "{}/v1/nodes?limit=1000&stale=true&cursor={c}",
                replicas[new_leader].api
            ),
            None => format!(
                "{}/v1/nodes?limit=1000&stale=true",
                replicas[new_leader].api
            ),
        };
        let page = match api.http.get(&url).bearer_auth(&api.key).send().await {
            Ok(resp) if resp.status().is_success() => resp.json::<Value>().await?,
            answer if asked.elapsed() > Duration::from_secs(60) => bail!(
                "the new leader does not list the nodes ({}):\n{}",
                match answer {
                    Ok(resp) => format!("HTTP {}", resp.status()),
                    Err(e) => e.to_string(),
                },
                tail(&replicas[new_leader].log)
            ),
            _ => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        all.extend(page["nodes"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let listed = all.len();
    let false_downs = all.iter().filter(|n| n["state"] == "down").count();
    if listed < args.agents {
        bail!(
            "the new leader lists {listed} nodes, not {}:\n{}",
            args.agents,
            tail(&replicas[new_leader].log)
        );
    }

    let fmt = |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
    println!(
        "fleet: {} agents in {processes} process(es), {} replicas, QUIC + mTLS on loopback, heartbeats every 5 s",
        args.agents, args.replicas
    );
    println!("  {:<34} {:>10} {:>10}", "", "measured", "budget");
    println!(
        "  {:<34} {:>10.1} {:>10}",
        "registered (s)", registered_s, ""
    );
    println!(
        "  {:<34} {:>10.1} {:>10.1}",
        "leader CPU (% of a core)", leader_cpu_percent, BUDGET_LEADER_CPU_PERCENT
    );
    println!(
        "  {:<34} {:>10.1} {:>10}",
        "leader RSS (MiB, max)", rss_max, ""
    );
    println!(
        "  {:<34} {:>10} {:>10}",
        "heartbeat handling p99 (ms)",
        fmt(heartbeat_p99_ms, 2),
        ""
    );
    println!(
        "  {:<34} {:>10} {:>10.1}",
        "re-attached after kill -9 (s)",
        fmt(reattach_s, 1),
        BUDGET_REATTACH_S
    );
    println!(
        "  {:<34} {:>10} {:>10}",
        "nodes falsely declared down", false_downs, 0
    );
    println!(
        "  ({heartbeats} heartbeats in the window; the agent processes used {agents_cpu_percent:.0} % of a core; Kubernetes: 5,000 nodes, GKE 65,000)"
    );
    println!(
        "{}",
        json!({
            "bench": "fleet",
            "agents": args.agents,
            "replicas": args.replicas,
            "agent_processes": processes,
            "registered_s": (registered_s * 10.0).round() / 10.0,
            "leader_cpu_percent": (leader_cpu_percent * 10.0).round() / 10.0,
            "leader_rss_mib": (rss_max * 10.0).round() / 10.0,
            "heartbeat_p99_ms": heartbeat_p99_ms.map(|v| (v * 100.0).round() / 100.0),
            "heartbeats_measured": heartbeats,
            "agents_cpu_percent": agents_cpu_percent.round(),
            "reattach_s": reattach_s.map(|v| (v * 10.0).round() / 10.0),
            "false_downs": false_downs,
            "lead_moved_during_registration": leader != first_leader,
            "budget_leader_cpu_percent": BUDGET_LEADER_CPU_PERCENT,
            "budget_reattach_s": BUDGET_REATTACH_S,
        })
    );
    if reattach_s.is_none() {
        bail!(
            "only {best} of {target} agents re-attached within {:?}",
            args.timeout
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets_observed_between_two_readings() {
        let page = |a: u32, b: u32, inf: u32| {
            format!(
                "# TYPE h histogram\nh_bucket{{le=\"0.001\"}} {a}\nh_bucket{{le=\"0.002\"}} {b}\nh_bucket{{le=\"+Inf\"}} {inf}\nh_sum 0\nh_count {inf}\n"
            )
        };
        let before = buckets(&page(10, 10, 10), "h");
        assert_eq!(before.len(), 3);
        // 100 new observations: 50 under 1 ms, 50 between 1 and 2 ms.
        let after = buckets(&page(60, 110, 110), "h");
        let (p50, n) = quantile(&before, &after, 0.5).unwrap();
        assert_eq!(n, 100);
        assert!((p50 - 0.001).abs() < 1e-9, "{p50}");
        let (p99, _) = quantile(&before, &after, 0.99).unwrap();
        assert!((p99 - 0.00198).abs() < 1e-9, "{p99}");
        // Past the last bound: its lower bound.
        let (p99, _) = quantile(&before, &buckets(&page(10, 10, 20), "h"), 0.99).unwrap();
        assert_eq!(p99, 0.002);
        assert!(quantile(&before, &before, 0.99).is_none());
    }
}
