//! Benchmarks: commands that print our figure beside the budget of DESIGN.md §6 and end with
//! one JSON line of the figures.

pub mod agent_idle;
pub mod api;
pub mod audit;
pub mod billing_run;
pub mod cluster;
pub mod create;
pub mod efficiency;
pub mod etcd;
pub mod failover;
pub mod fleet;
pub mod launch;
pub mod pages;
pub mod placement;
pub mod raft;
pub mod rating;
pub mod schedule;
pub mod state;
pub mod webhooks;

use anyhow::Context;

/// Commands lifting `project`'s quotas in every region far above what a benchmark asks
/// for (the benchmarks measure placement and the state, not quotas).
pub fn unlimited_quotas(project: &str) -> Vec<vmcloud_proto::pb::command::Body> {
    use vmcloud_proto::pb;
    ["par", "fra", "ams", "lon", "mad", "mil", "mrs-edge"]
        .into_iter()
        .map(|region| {
            pb::command::Body::SetQuota(pb::SetQuota {
                project_id: project.into(),
                region: region.into(),
                limits: Some(pb::QuotaLimits {
                    instances: Some(1 << 31),
                    vcpus: Some(1 << 31),
                    memory_mib: Some(1 << 31),
                    gpus: Some(1 << 31),
                    reservations: Some(1 << 31),
                    ..Default::default()
                }),
            })
        })
        .collect()
}

/// Kills the child when the benchmark ends, however it ends.
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `/proc/PID/<file>` field in kB, as MiB.
pub fn proc_mib(pid: u32, file: &str, field: &str) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .with_context(|| format!("process {pid} is gone"))?;
    let kib: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field} in /proc/PID/{file}"))?;
    Ok(kib / 1024.0)
}

/// (resident set in MiB, user + system CPU seconds) of a process, from /proc.
pub fn sample(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc/PID/status")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let after = stat
        .rsplit_once(')')
        .context("unreadable /proc/PID/stat")?
        .1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Ok((rss_kib / 1024.0, ticks / hz))
}

/// Waits for load clients that each return (latencies in ms, failures): all latencies,
/// sorted, and the failures.
pub async fn gather(
    clients: Vec<tokio::task::JoinHandle<(Vec<f64>, u64)>>,
) -> anyhow::Result<(Vec<f64>, u64)> {
    let mut latencies = Vec::new();
    let mut errors = 0;
    for c in clients {
        let (l, e) = c.await?;
        latencies.extend(l);
        errors += e;
    }
    latencies.sort_by(f64::total_cmp);
    Ok((latencies, errors))
}

/// The `p`th percentile of sorted samples (nearest rank); NaN when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub use crate::duration::{parse_duration, parse_duration_or_zero};
