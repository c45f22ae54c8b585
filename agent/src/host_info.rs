//! The `HostInfo` trait: what the host is (name, CPU, NUMA, memory, disks, NICs). The real
//! implementation reads it with sysinfo and sysfs; GPUs come from [`crate::gpu`]; what the
//! host does over time is [`crate::telemetry`].

use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};
use vmcloud_proto::pb;

pub trait HostInfo: Send + Sync + 'static {
    fn hostname(&self) -> String;
    fn cpu_model(&self) -> String;
    fn cpu_threads(&self) -> u32;
    fn memory_bytes(&self) -> u64;
    fn cpu_cores(&self) -> u32 {
        self.cpu_threads()
    }
    fn numa_nodes(&self) -> u32 {
        1
    }
    fn disks(&self) -> Vec<pb::DiskDevice> {
        Vec::new()
    }
    fn nics(&self) -> Vec<pb::NicDevice> {
        Vec::new()
    }

    /// The inventory sent at registration, with the GPUs read by [`crate::gpu`].
    fn inventory(
        &self,
        region: &str,
        hypervisor_uri: &str,
        gpus: Vec<pb::GpuDevice>,
    ) -> pb::HostInventory {
        pb::HostInventory {
            hostname: self.hostname(),
            region: region.to_owned(),
            cpu_model: self.cpu_model(),
            cpu_threads: self.cpu_threads(),
            memory_bytes: self.memory_bytes(),
            hypervisor_uri: hypervisor_uri.to_owned(),
            gpus,
            // Racks come from the agent's config.
            rack: String::new(),
            cpu_cores: self.cpu_cores(),
            numa_nodes: self.numa_nodes(),
            disks: self.disks(),
            nics: self.nics(),
            // The underlay comes from the agent's config.
            underlay_ipv4: String::new(),
            ipv6_prefix: String::new(),
        }
    }
}

/// This machine, read with sysinfo.
#[derive(Debug, Clone)]
pub struct SysinfoHost {
    hostname: String,
    cpu_model: String,
    cpu_threads: u32,
    memory_bytes: u64,
}

impl SysinfoHost {
    pub fn read() -> SysinfoHost {
        let refresh = RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing())
            .with_memory(MemoryRefreshKind::nothing().with_ram());
        let (cpu_model, cpu_threads, memory_bytes) = match System::new_with_specifics(refresh) {
            Ok(sys) => (
                sys.cpus()
                    .first()
                    .map(|c| c.brand().trim().to_owned())
                    .unwrap_or_default(),
                sys.cpus().len() as u32,
                sys.total_memory(),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read CPU and memory; reporting none");
                (String::new(), 0, 0)
            }
        };
        SysinfoHost {
            hostname: System::host_name().unwrap_or_else(|_| "localhost".into()),
            cpu_model,
            cpu_threads,
            memory_bytes,
        }
    }
}

impl HostInfo for SysinfoHost {
    fn hostname(&self) -> String {
        self.hostname.clone()
    }
    fn cpu_model(&self) -> String {
        self.cpu_model.clone()
    }
    fn cpu_threads(&self) -> u32 {
        self.cpu_threads
    }
    fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }
    fn cpu_cores(&self) -> u32 {
        System::physical_core_count().map_or(self.cpu_threads, |c| c as u32)
    }
    fn numa_nodes(&self) -> u32 {
        (numa_cpus().len() as u32).max(1)
    }
    fn disks(&self) -> Vec<pb::DiskDevice> {
        sysinfo::Disks::new_with_refreshed_list()
            .map(|disks| {
                disks
                    .iter()
                    .map(|d| pb::DiskDevice {
                        name: d.name().to_string_lossy().into_owned(),
                        mount_point: d.mount_point().display().to_string(),
                        total_bytes: d.total_space(),
                        free_bytes: d.available_space(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    fn nics(&self) -> Vec<pb::NicDevice> {
        let mut nics: Vec<pb::NicDevice> = sysinfo::Networks::new_with_refreshed_list()
            .map(|nets| {
                nets.iter()
                    .map(|(name, data)| pb::NicDevice {
                        name: name.to_string_lossy().into_owned(),
                        mac: data.mac_address().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        nics.sort_by(|a, b| a.name.cmp(&b.name));
        nics
    }
}

/// The CPUs of each NUMA node, as the kernel lists them (`"0-15,32-47"`); empty where sysfs
/// does not say (a VM without NUMA, another OS).
pub fn numa_cpus() -> std::collections::HashMap<u32, String> {
    let mut out = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir("/sys/devices/system/node") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(node) = name
            .to_str()
            .and_then(|n| n.strip_prefix("node"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(list) = std::fs::read_to_string(entry.path().join("cpulist")) {
            let list = list.trim();
            if !list.is_empty() {
                out.insert(node, list.to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machine() {
        let host = SysinfoHost::read();
        assert!(host.cpu_threads() >= 1);
        assert!(host.memory_bytes() > 0);
        assert!(!host.hostname().is_empty());
        let inv = host.inventory("par", "test:///default", Vec::new());
        assert_eq!(inv.region, "par");
        assert!(inv.cpu_cores >= 1 && inv.cpu_cores <= inv.cpu_threads);
        assert!(inv.numa_nodes >= 1);
        assert!(
            inv.disks
                .iter()
                .any(|d| d.mount_point == "/" && d.total_bytes > 0),
            "{:?}",
            inv.disks
        );
        assert!(inv.nics.iter().any(|n| n.name == "lo"), "{:?}", inv.nics);
    }
}
