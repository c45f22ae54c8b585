//! `vmcloud bench agent-idle`: the footprint of an idle agent. Starts a dev fleet (scheduler
//! and its own agent) and, as a separate process, the agent under measurement (the
//! `vmcloud-agent` binary beside this one, or `vmcloud agent` with `--whole-binary`; libvirt's
//! test driver, simulated networks) in a region of its own; defines
//! `--vms` instances there through the API; waits until all run; then samples the agent
//! process's RSS and CPU time from /proc for `--duration`. Prints the figures beside the
//! DESIGN.md §6 budget and, last, a JSON line.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

use super::{Reaped, proc_mib, sample};

/// DESIGN.md §6: idle agent ≤ 15 MiB RSS, ≤ 0.5 % of a core.
const BUDGET_RSS_MIB: f64 = 15.0;
const BUDGET_CPU_PERCENT: f64 = 0.5;

#[derive(Debug, Args)]
pub struct AgentIdleBenchArgs {
    /// How long to sample the idle agent (e.g. 60s).
    #[arg(long, default_value = "60s", value_parser = super::parse_duration)]
    pub duration: Duration,
    /// Instances defined on the agent while it idles.
    #[arg(long, default_value_t = 20)]
    pub vms: usize,
    /// Measure `vmcloud agent` (the whole binary) instead of `vmcloud-agent`.
    #[arg(long)]
    pub whole_binary: bool,
}

/// Starts `vmcloud dev` and returns it with its API address and agent gateway.
fn start_dev(exe: &Path, dir: &Path) -> anyhow::Result<(Reaped, String, String)> {
    let mut child = Command::new(exe)
        .args(["dev", "--no-profile", "--listen", "127.0.0.1:0"])
        .args([
            "--gateway-listen",
            "127.0.0.1:0",
            "--agent-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start vmcloud dev")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let reaped = Reaped(child);
    let (mut api, mut gateway) = (None, None);
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading vmcloud dev's banner")?;
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("API ") {
            api = Some(rest.trim().to_owned());
        } else if let Some(rest) = t.strip_prefix("agent link ") {
            gateway = rest
                .split_whitespace()
                .next()
                .and_then(|g| g.strip_prefix("quic://"))
                .map(str::to_owned);
        }
        if let (Some(a), Some(g)) = (&api, &gateway) {
            return Ok((reaped, a.clone(), g.clone()));
        }
    }
    bail!("vmcloud dev exited before printing its addresses")
}

pub async fn agent_idle(args: AgentIdleBenchArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the vmcloud binary")?;
    let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
    let (_dev, api, gateway) = start_dev(&exe, &dir.path().join("dev"))?;
    let token = std::fs::read_to_string(dir.path().join("dev/dev-api-key"))
        .context("vmcloud dev wrote no API key")?
        .trim()
        .to_owned();
    let lean = exe.with_file_name("vmcloud-agent");
    let (mut command, binary) = if args.whole_binary {
        let mut c = Command::new(&exe);
        c.arg("agent");
        (c, "vmcloud agent")
    } else if lean.exists() {
        (Command::new(&lean), "vmcloud-agent")
    } else {
        bail!(
            "{} is missing: build it (cargo build --release -p vmcloud-cli builds both binaries), or measure the whole binary with --whole-binary",
            lean.display()
        );
    };
    let agent = command
        .args(["--node", "bench-agent", "--region", "ams"])
        .args(["--hypervisor", "test:///default", "--networks", "sim"])
        // The test driver's VMs use nothing; the host is reported as a 64-thread, 256 GiB
        // one so 20 VMs fit whatever machine runs the benchmark.
        .args(["--shape", "cpu"])
        .args(["--scheduler", &gateway])
        .arg("--pki-dir")
        .arg(dir.path().join("dev/pki"))
        .arg("--data-dir")
        .arg(dir.path().join("agent"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {binary}"))?;
    let pid = agent.id();
    let _agent = Reaped(agent);

    let http = reqwest::Client::new();
    let mut ids = Vec::with_capacity(args.vms);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ids.len() < args.vms {
        let resp = http
            .post(format!("{api}/v1/instances"))
            .bearer_auth(&token)
            .json(
                &json!({ "flavor": "vps-s", "image": "debian-12", "region": "ams",
                           "name": format!("idle-{}", ids.len()) }),
            )
            .send()
            .await?;
        let body: Value = resp.json().await?;
        match body["id"].as_str() {
            Some(id) => ids.push(id.to_owned()),
            None if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            None => bail!("cannot create instances: {body}"),
        }
    }
    loop {
        let body: Value = http
            .get(format!("{api}/v1/instances"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        let running = body["instances"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|i| i["state"] == "running").count());
        if running >= args.vms {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {running} of {} instances run after 30 s", args.vms);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let start-up work (registration, first reconciles, allocator growth) settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!(
        "{} instances run on the agent (pid {pid}); sampling it for {:?}…",
        args.vms, args.duration
    );
    let (_, cpu0) = sample(pid)?;
    let t0 = Instant::now();
    let mut rss_max: f64 = 0.0;
    while t0.elapsed() < args.duration {
        let (rss, _) = sample(pid)?;
        rss_max = rss_max.max(rss);
        tokio::time::sleep(Duration::from_secs(1).min(args.duration)).await;
    }
    let (rss, cpu1) = sample(pid)?;
    rss_max = rss_max.max(rss);
    // What the resident set is made of: the process's own memory, and its share of pages
    // mapped from files (the binary, libvirt, OpenSSL, GnuTLS, libxml2…) shared with others.
    let anon = proc_mib(pid, "status", "RssAnon:")?;
    let pss = proc_mib(pid, "smaps_rollup", "Pss:")?;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu_percent = (cpu1 - cpu0) / elapsed * 100.0;

    println!(
        "idle agent ({binary}): libvirt test driver, {} VMs defined, sampled {elapsed:.0} s",
        args.vms
    );
    println!("  {:<18} {:>10} {:>10}", "", "measured", "budget");
    println!(
        "  {:<18} {:>10.1} {:>10.1}",
        "RSS (MiB, max)", rss_max, BUDGET_RSS_MIB
    );
    println!(
        "  {:<18} {:>10.3} {:>10.1}",
        "CPU (% of a core)", cpu_percent, BUDGET_CPU_PERCENT
    );
    println!(
        "  of the RSS: {anon:.1} MiB the agent's own (anonymous), the rest file pages of the binary and shared libraries; PSS {pss:.1} MiB"
    );
    println!(
        "{}",
        json!({
            "bench": "agent-idle",
            "binary": binary,
            "vms": args.vms,
            "duration_s": (elapsed * 10.0).round() / 10.0,
            "rss_mib": (rss_max * 10.0).round() / 10.0,
            "anon_mib": (anon * 10.0).round() / 10.0,
            "pss_mib": (pss * 10.0).round() / 10.0,
            "cpu_percent": (cpu_percent * 1000.0).round() / 1000.0,
            "budget_rss_mib": BUDGET_RSS_MIB,
            "budget_cpu_percent": BUDGET_CPU_PERCENT,
        })
    );
    Ok(())
}
