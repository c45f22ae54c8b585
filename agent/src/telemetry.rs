//! Host telemetry: what the host does now, every few seconds (5 s by default).
//!
//! Routine figures — CPU and memory use, the disks (size, free), the NICs (bytes in and out),
//! every GPU's temperature, power, utilization and ECC errors, the domains — go to the agent's
//! `/metrics` (Prometheus text) and, compact, into each heartbeat. Changes that matter are
//! **conditions** in the status report, sent whenever the set changes:
//! - `gpu-lost`: a GPU seen at start is no longer there (fallen off the bus, driver lost it);
//! - `gpu-ecc`: a GPU's uncorrected ECC errors reached the threshold;
//! - `disk-full`: the filesystem holding the agent's data directory (instance disks) has less
//!   free space than the threshold.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use sysinfo::{CpuRefreshKind, Disks, MemoryRefreshKind, Networks, RefreshKind, System};
use vmcloud_proto::pb;

use crate::gpu::{GpuInventory, GpuReport};

/// When a condition is raised.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Uncorrected ECC errors on one GPU.
    pub gpu_ecc_uncorrected: u64,
    /// Free space on the data directory's filesystem, percent.
    pub disk_free_percent: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            gpu_ecc_uncorrected: 1,
            disk_free_percent: 10.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DiskUse {
    pub mount_point: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NicUse {
    pub name: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// One sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub cpu_percent: f32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub disks: Vec<DiskUse>,
    /// The filesystem holding the data directory (index into `disks`).
    pub data_disk: Option<usize>,
    pub nics: Vec<NicUse>,
    pub gpus: GpuReport,
    pub domains: usize,
}

impl Snapshot {
    pub fn summary(&self) -> pb::HostSummary {
        let disk = self.data_disk.and_then(|i| self.disks.get(i));
        let utils: Vec<u32> = self
            .gpus
            .gpus
            .iter()
            .filter_map(|g| g.utilization_pct)
            .collect();
        pb::HostSummary {
            cpu_percent: self.cpu_percent,
            memory_used_mib: self.memory_used_bytes >> 20,
            memory_total_mib: self.memory_total_bytes >> 20,
            disk_free_gib: disk.map_or(0, |d| d.free_bytes >> 30),
            disk_total_gib: disk.map_or(0, |d| d.total_bytes >> 30),
            gpu_utilization_pct: if utils.is_empty() {
                0
            } else {
                utils.iter().sum::<u32>() / utils.len() as u32
            },
            gpus: self
                .gpus
                .gpus
                .iter()
                .map(|g| pb::GpuSample {
                    pci_address: g.pci_address.clone(),
                    temperature_c: g.temperature_c,
                    power_w: g.power_w,
                    utilization_pct: g.utilization_pct,
                    ecc_uncorrected: g.ecc_uncorrected,
                    xid_errors: g.xid.map(|x| x.count),
                    last_xid: g.xid.filter(|x| x.count > 0).map(|x| x.last),
                })
                .collect(),
        }
    }

    /// The figures in Prometheus' text format.
    pub fn to_prometheus(&self, node: &str) -> String {
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, help: &str, kind: &str, rows: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{{node=\"{node}\"{labels}}} {value}");
            }
        };
        let one = |v: String| vec![(String::new(), v)];
        metric(
            "vmcloud_agent_cpu_percent",
            "Host CPU use, percent of all CPUs.",
            "gauge",
            one(format!("{:.1}", self.cpu_percent)),
        );
        metric(
            "vmcloud_agent_memory_used_bytes",
            "Host memory in use.",
            "gauge",
            one(self.memory_used_bytes.to_string()),
        );
        metric(
            "vmcloud_agent_memory_total_bytes",
            "Host memory.",
            "gauge",
            one(self.memory_total_bytes.to_string()),
        );
        let disk = |f: fn(&DiskUse) -> u64| {
            self.disks
                .iter()
                .map(|d| (format!(",mount=\"{}\"", d.mount_point), f(d).to_string()))
                .collect()
        };
        metric(
            "vmcloud_agent_disk_total_bytes",
            "Filesystem size.",
            "gauge",
            disk(|d| d.total_bytes),
        );
        metric(
            "vmcloud_agent_disk_free_bytes",
            "Filesystem space available.",
            "gauge",
            disk(|d| d.free_bytes),
        );
        let nic = |f: fn(&NicUse) -> u64| {
            self.nics
                .iter()
                .map(|n| (format!(",nic=\"{}\"", n.name), f(n).to_string()))
                .collect()
        };
        metric(
            "vmcloud_agent_nic_received_bytes_total",
            "Bytes received by the NIC.",
            "counter",
            nic(|n| n.rx_bytes),
        );
        metric(
            "vmcloud_agent_nic_transmitted_bytes_total",
            "Bytes sent by the NIC.",
            "counter",
            nic(|n| n.tx_bytes),
        );
        let gpu = |f: &dyn Fn(&crate::gpu::GpuStatus) -> Option<String>| {
            self.gpus
                .gpus
                .iter()
                .filter_map(|g| {
                    f(g).map(|v| {
                        (
                            format!(",gpu=\"{}\",model=\"{}\"", g.pci_address, g.model),
                            v,
                        )
                    })
                })
                .collect()
        };
        metric(
            "vmcloud_agent_gpu_temperature_celsius",
            "GPU temperature.",
            "gauge",
            gpu(&|g| g.temperature_c.map(|v| v.to_string())),
        );
        metric(
            "vmcloud_agent_gpu_power_watts",
            "GPU power draw.",
            "gauge",
            gpu(&|g| g.power_w.map(|v| format!("{v:.1}"))),
        );
        metric(
            "vmcloud_agent_gpu_utilization_percent",
            "GPU utilization.",
            "gauge",
            gpu(&|g| g.utilization_pct.map(|v| v.to_string())),
        );
        metric(
            "vmcloud_agent_gpu_ecc_uncorrected_total",
            "Uncorrected ECC errors since the driver loaded.",
            "counter",
            gpu(&|g| g.ecc_uncorrected.map(|v| v.to_string())),
        );
        metric(
            "vmcloud_agent_gpu_xid_errors_total",
            "Critical XID errors the driver reported since the agent started.",
            "counter",
            gpu(&|g| g.xid.map(|x| x.count.to_string())),
        );
        metric(
            "vmcloud_agent_gpu_last_xid",
            "Code of the last critical XID error the driver reported (0: none yet).",
            "gauge",
            gpu(&|g| g.xid.map(|x| x.last.to_string())),
        );
        metric(
            "vmcloud_agent_domains",
            "libvirt domains the agent manages.",
            "gauge",
            one(self.domains.to_string()),
        );
        out
    }
}

/// Reads the host; one per agent, used from a blocking thread.
pub struct Sampler {
    system: Option<System>,
    disks: Option<Disks>,
    networks: Option<Networks>,
    gpus: Box<dyn GpuInventory>,
    /// GPUs seen at start.
    expected_gpus: BTreeSet<String>,
    data_dir: PathBuf,
    thresholds: Thresholds,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl Sampler {
    pub fn new(
        gpus: Box<dyn GpuInventory>,
        expected_gpus: BTreeSet<String>,
        data_dir: &Path,
        thresholds: Thresholds,
    ) -> Sampler {
        let refresh = RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing().with_usage())
            .with_memory(MemoryRefreshKind::nothing().with_ram());
        let warn = |what: &str, e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, "cannot read {what}; it is left out of telemetry");
        };
        Sampler {
            system: System::new_with_specifics(refresh)
                .map_err(|e| warn("CPU and memory", &e))
                .ok(),
            disks: Disks::new_with_refreshed_list()
                .map_err(|e| warn("disks", &e))
                .ok(),
            networks: Networks::new_with_refreshed_list()
                .map_err(|e| warn("NICs", &e))
                .ok(),
            gpus,
            expected_gpus,
            data_dir: data_dir.to_owned(),
            thresholds,
        }
    }

    /// Reads the host now, with `domains` managed domains.
    pub fn sample(&mut self, domains: usize) -> Snapshot {
        let mut snap = Snapshot {
            domains,
            ..Snapshot::default()
        };
        if let Some(sys) = &mut self.system {
            sys.refresh_cpu_usage();
            sys.refresh_memory();
            snap.cpu_percent = sys.global_cpu_usage();
            snap.memory_used_bytes = sys.used_memory();
            snap.memory_total_bytes = sys.total_memory();
        }
        if let Some(disks) = &mut self.disks {
            disks.refresh(true);
            let mut best: Option<(usize, usize)> = None;
            for d in disks.iter() {
                let mount = d.mount_point();
                if self.data_dir.starts_with(mount) {
                    let depth = mount.components().count();
                    if best.is_none_or(|(_, b)| depth > b) {
                        best = Some((snap.disks.len(), depth));
                    }
                }
                snap.disks.push(DiskUse {
                    mount_point: mount.display().to_string(),
                    total_bytes: d.total_space(),
                    free_bytes: d.available_space(),
                });
            }
            snap.data_disk = best.map(|(i, _)| i);
        }
        if let Some(nets) = &mut self.networks {
            nets.refresh(true);
            let mut nics: Vec<NicUse> = nets
                .iter()
                .map(|(name, data)| NicUse {
                    name: name.to_string_lossy().into_owned(),
                    rx_bytes: data.total_received(),
                    tx_bytes: data.total_transmitted(),
                })
                .collect();
            nics.sort_by(|a, b| a.name.cmp(&b.name));
            snap.nics = nics;
        }
        snap.gpus = self.gpus.read();
        snap
    }

    /// What is wrong with the host in this sample.
    pub fn conditions(&self, snap: &Snapshot) -> Vec<pb::HostCondition> {
        let mut out = Vec::new();
        let present: BTreeSet<&str> = snap
            .gpus
            .gpus
            .iter()
            .map(|g| g.pci_address.as_str())
            .collect();
        for lost in self
            .expected_gpus
            .iter()
            .filter(|g| !present.contains(g.as_str()))
        {
            out.push(pb::HostCondition {
                kind: "gpu-lost".into(),
                subject: lost.clone(),
                message: format!(
                    "GPU {lost} was here at start and is no longer seen by the driver"
                ),
            });
        }
        for g in &snap.gpus.gpus {
            if let Some(n) = g.ecc_uncorrected
                && n >= self.thresholds.gpu_ecc_uncorrected
            {
                out.push(pb::HostCondition {
                    kind: "gpu-ecc".into(),
                    subject: g.pci_address.clone(),
                    message: format!(
                        "GPU {} has {n} uncorrected ECC errors (threshold {})",
                        g.pci_address, self.thresholds.gpu_ecc_uncorrected
                    ),
                });
            }
        }
        for g in &snap.gpus.gpus {
            if let Some(x) = g.xid
                && x.count > 0
                && crate::gpu::XIDS_NEEDING_ATTENTION.contains(&x.last)
            {
                out.push(pb::HostCondition {
                    kind: "gpu-xid".into(),
                    subject: g.pci_address.clone(),
                    message: format!(
                        "GPU {} reported XID {} ({} critical XID errors since the agent started); see docs/runbooks/GpuXidErrors.md",
                        g.pci_address, x.last, x.count
                    ),
                });
            }
        }
        if let Some(d) = snap.data_disk.and_then(|i| snap.disks.get(i))
            && d.total_bytes > 0
        {
            let free = d.free_bytes as f64 * 100.0 / d.total_bytes as f64;
            if free < self.thresholds.disk_free_percent {
                out.push(pb::HostCondition {
                    kind: "disk-full".into(),
                    subject: d.mount_point.clone(),
                    message: format!(
                        "{} has {:.1} % free ({} MiB), under the {} % threshold; new instance disks may not fit",
                        d.mount_point,
                        free,
                        d.free_bytes >> 20,
                        self.thresholds.disk_free_percent
                    ),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::SimGpus;
    use std::sync::{Arc, Mutex};

    /// GPUs a test can change under the sampler.
    struct Changing(Arc<Mutex<GpuReport>>);

    impl GpuInventory for Changing {
        fn read(&self) -> GpuReport {
            self.0.lock().unwrap().clone()
        }
    }

    #[test]
    fn samples_the_host_and_raises_conditions_when_things_change() {
        let report = Arc::new(Mutex::new(SimGpus::shape("gpu-4xh100").unwrap().read()));
        let expected = report
            .lock()
            .unwrap()
            .gpus
            .iter()
            .map(|g| g.pci_address.clone())
            .collect();
        let tmp = tempfile::tempdir().unwrap();
        let mut sampler = Sampler::new(
            Box::new(Changing(report.clone())),
            expected,
            tmp.path(),
            Thresholds {
                gpu_ecc_uncorrected: 5,
                disk_free_percent: 0.0,
            },
        );
        let snap = sampler.sample(3);
        assert!(snap.memory_total_bytes > 0 && snap.memory_used_bytes > 0);
        assert!(snap.data_disk.is_some(), "{:?}", snap.disks);
        assert!(snap.nics.iter().any(|n| n.name == "lo"), "{:?}", snap.nics);
        assert!(sampler.conditions(&snap).is_empty());
        let summary = snap.summary();
        assert!(summary.disk_total_gib > 0 || summary.disk_free_gib == 0);
        let text = snap.to_prometheus("n1");
        for line in [
            "vmcloud_agent_domains{node=\"n1\"} 3",
            "vmcloud_agent_gpu_temperature_celsius{node=\"n1\",gpu=\"0000:17:00.0\",model=\"H100\"} 35",
            "# TYPE vmcloud_agent_nic_received_bytes_total counter",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }

        // A GPU falls off the bus, the other passes the ECC threshold.
        {
            let mut r = report.lock().unwrap();
            r.gpus.remove(0);
            r.gpus[0].ecc_uncorrected = Some(7);
            // An application's own fault (XID 13) is no condition; XID 79 is.
            r.gpus[1].xid = Some(crate::gpu::XidSeen { count: 1, last: 13 });
            r.gpus[2].xid = Some(crate::gpu::XidSeen { count: 2, last: 79 });
        }
        let snap = sampler.sample(3);
        let conditions = sampler.conditions(&snap);
        let kinds: Vec<(&str, &str)> = conditions
            .iter()
            .map(|c| (c.kind.as_str(), c.subject.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("gpu-lost", "0000:17:00.0"),
                ("gpu-ecc", "0000:27:00.0"),
                ("gpu-xid", "0000:47:00.0")
            ]
        );
        assert!(
            conditions[2].message.contains("XID 79"),
            "{}",
            conditions[2].message
        );
        let text = snap.to_prometheus("n1");
        assert!(
            text.contains("vmcloud_agent_gpu_xid_errors_total{node=\"n1\",gpu=\"0000:47:00.0\",model=\"H100\"} 2"),
            "{text}"
        );

        // The disk threshold: any filesystem is "full" against a 100 % threshold.
        sampler.thresholds.disk_free_percent = 100.0;
        let snap = sampler.sample(3);
        let conditions = sampler.conditions(&snap);
        assert!(
            conditions.iter().any(|c| c.kind == "disk-full"),
            "{conditions:?}"
        );
    }
}
