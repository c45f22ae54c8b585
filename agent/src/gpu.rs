//! The `GpuInventory` trait: the host's GPUs, as the scheduler places on them (model family,
//! memory, PCI address, NUMA node, NVLink group, MIG mode) and as operators watch them
//! (UUID, driver and CUDA versions, temperature, power, utilization, ECC errors).
//!
//! The real implementation, [`Nvml`], loads NVIDIA's `libnvidia-ml.so` at run time through
//! nvml-wrapper: a host without the driver reports zero GPUs and says why once (no crash, no
//! log spam). [`SimGpus`] is a fixed shape (`gpu-8xh100`, …) for simulated hosts and tests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use vmcloud_proto::pb;

/// One GPU as read.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuStatus {
    /// Model family as the catalog names it ("H100", "RTX4090").
    pub model: String,
    /// The name the driver gives ("NVIDIA H100 80GB HBM3").
    pub name: String,
    pub uuid: String,
    /// `0000:17:00.0`: lowercase, four-digit domain, as sysfs and libvirt write it.
    pub pci_address: String,
    pub memory_mib: u64,
    pub numa_node: u32,
    /// PCI addresses at the far end of its active NVLinks (GPUs or NVSwitches).
    pub nvlink_peers: Vec<String>,
    pub mig_mode: bool,
    pub temperature_c: Option<u32>,
    pub power_w: Option<f64>,
    pub utilization_pct: Option<u32>,
    /// Uncorrected ECC errors since the driver loaded.
    pub ecc_uncorrected: Option<u64>,
    /// Critical XID errors the driver reported since the agent started, and the last one's
    /// code (NVML's XID events; `None` where events cannot be watched).
    pub xid: Option<XidSeen>,
}

/// The critical XID errors of one GPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XidSeen {
    pub count: u64,
    pub last: u64,
}

/// XIDs that mean the GPU itself needs attention (NVIDIA's XID catalogue: double-bit ECC,
/// row remapping, NVLink, fallen off the bus, uncontained ECC, GSP errors), as opposed to
/// those an application's own fault raises (13, 31, 43, 45).
pub const XIDS_NEEDING_ATTENTION: [u64; 12] = [48, 61, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120];

/// What a read found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuReport {
    pub driver_version: Option<String>,
    pub cuda_version: Option<String>,
    pub gpus: Vec<GpuStatus>,
    /// Why no GPU could be read at all (no driver, no permission), when so.
    pub unavailable: Option<String>,
    /// GPUs that could not be read, with why (a GPU fallen off the bus).
    pub errors: Vec<String>,
}

impl GpuReport {
    /// The GPUs as the scheduler's inventory carries them, with NVLink groups numbered from 1
    /// (0: no NVLink).
    pub fn to_pb(&self) -> Vec<pb::GpuDevice> {
        let groups = nvlink_groups(&self.gpus);
        self.gpus
            .iter()
            .map(|g| pb::GpuDevice {
                model: g.model.clone(),
                memory_mib: g.memory_mib,
                pci_address: g.pci_address.clone(),
                numa_node: g.numa_node,
                nvlink_group: groups.get(&g.pci_address).copied().unwrap_or(0),
                mig_mode: g.mig_mode,
            })
            .collect()
    }
}

pub trait GpuInventory: Send + Sync + 'static {
    /// Reads every GPU now. Never panics; what cannot be read is in the report.
    fn read(&self) -> GpuReport;
}

/// The catalog's model family for a driver's device name: "NVIDIA H100 80GB HBM3" → "H100",
/// "NVIDIA A100-SXM4-80GB" → "A100", "NVIDIA GeForce RTX 4090" → "RTX4090", "NVIDIA L40S" →
/// "L40S". Unknown names keep their words without "NVIDIA" and spaces.
pub fn model_family(name: &str) -> String {
    let words: Vec<&str> = name
        .split(|c: char| c.is_whitespace() || c == '-')
        .filter(|w| !w.is_empty() && !w.eq_ignore_ascii_case("nvidia"))
        .collect();
    for (n, w) in words.iter().enumerate() {
        let upper = w.to_ascii_uppercase();
        if upper == "RTX"
            && let Some(next) = words.get(n + 1)
        {
            return format!("RTX{}", next.to_ascii_uppercase());
        }
        let known = [
            "H100", "H200", "H20", "A100", "A40", "A30", "A10", "L40S", "L40", "L4",
        ];
        if known.contains(&upper.as_str()) {
            return upper;
        }
    }
    words
        .iter()
        .filter(|w| !w.eq_ignore_ascii_case("geforce"))
        .map(|w| w.to_ascii_uppercase())
        .collect()
}

/// `00000000:17:00.0` (NVML) → `0000:17:00.0`.
pub fn normalize_pci(bus_id: &str) -> String {
    let lower = bus_id.trim().to_ascii_lowercase();
    match lower.split_once(':') {
        Some((domain, rest)) if domain.len() > 4 => {
            format!("{}:{rest}", &domain[domain.len() - 4..])
        }
        _ => lower,
    }
}

/// NVLink groups: GPUs joined by NVLink, directly or through NVSwitches, share a number (from
/// 1, in PCI order); a GPU with no active link gets none.
pub fn nvlink_groups(gpus: &[GpuStatus]) -> BTreeMap<String, u32> {
    // Union-find over every address seen (GPUs and switches).
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    fn root<'a>(parent: &mut BTreeMap<&'a str, &'a str>, x: &'a str) -> &'a str {
        let mut r = x;
        while let Some(&p) = parent.get(r).filter(|&&p| p != r) {
            r = p;
        }
        parent.insert(x, r);
        r
    }
    for g in gpus {
        parent.entry(&g.pci_address).or_insert(&g.pci_address);
        for p in &g.nvlink_peers {
            parent.entry(p).or_insert(p);
            let (a, b) = (root(&mut parent, &g.pci_address), root(&mut parent, p));
            if a != b {
                parent.insert(a.max(b), a.min(b));
            }
        }
    }
    let mut numbers: BTreeMap<&str, u32> = BTreeMap::new();
    let mut out = BTreeMap::new();
    let mut sorted: Vec<&GpuStatus> = gpus.iter().collect();
    sorted.sort_by(|a, b| a.pci_address.cmp(&b.pci_address));
    for g in sorted.into_iter().filter(|g| !g.nvlink_peers.is_empty()) {
        let r = root(&mut parent, &g.pci_address);
        let next = numbers.len() as u32 + 1;
        out.insert(g.pci_address.clone(), *numbers.entry(r).or_insert(next));
    }
    out
}

/// NVLinks a GPU may have (NVML's `NVML_NVLINK_MAX_LINKS`; 18 on H100).
const NVLINK_MAX_LINKS: u32 = 18;

/// The GPUs NVML sees.
pub struct Nvml {
    nvml: Option<nvml_wrapper::Nvml>,
    why: Option<String>,
    /// Critical XIDs by PCI address, counted by the watcher thread.
    xids: XidCounts,
    /// Whether the watcher could register for XID events.
    xids_watched: Arc<AtomicBool>,
}

type XidCounts = Arc<Mutex<BTreeMap<String, XidSeen>>>;

impl std::fmt::Debug for Nvml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nvml")
            .field("loaded", &self.nvml.is_some())
            .field("why", &self.why)
            .finish()
    }
}

impl Nvml {
    /// Loads NVML. Without the driver this logs once why no GPU will be reported, and every
    /// read is empty.
    pub fn load() -> Nvml {
        match nvml_wrapper::Nvml::init() {
            Ok(nvml) => {
                let xids = XidCounts::default();
                let xids_watched = Arc::new(AtomicBool::new(false));
                let (counts, watched) = (xids.clone(), xids_watched.clone());
                if let Err(e) = std::thread::Builder::new()
                    .name("nvml-xid".into())
                    .spawn(move || watch_xids(&counts, &watched))
                {
                    tracing::warn!("cannot start the XID watcher thread: {e}");
                }
                Nvml {
                    nvml: Some(nvml),
                    why: None,
                    xids,
                    xids_watched,
                }
            }
            Err(e) => {
                let why = format!(
                    "NVML is not available ({e}); this host reports no GPUs (install the NVIDIA driver, see docs/agent.md)"
                );
                tracing::info!("{why}");
                Nvml {
                    nvml: None,
                    why: Some(why),
                    xids: XidCounts::default(),
                    xids_watched: Arc::default(),
                }
            }
        }
    }
}

impl GpuInventory for Nvml {
    fn read(&self) -> GpuReport {
        use nvml_wrapper::enum_wrappers::device::{EccCounter, MemoryError, TemperatureSensor};
        let Some(nvml) = &self.nvml else {
            return GpuReport {
                unavailable: self.why.clone(),
                ..GpuReport::default()
            };
        };
        let mut report = GpuReport {
            driver_version: nvml.sys_driver_version().ok(),
            cuda_version: nvml
                .sys_cuda_driver_version()
                .ok()
                .map(|v| format!("{}.{}", v / 1000, (v % 1000) / 10)),
            ..GpuReport::default()
        };
        let count = match nvml.device_count() {
            Ok(n) => n,
            Err(e) => {
                report.unavailable = Some(format!("NVML cannot count the GPUs: {e}"));
                return report;
            }
        };
        for index in 0..count {
            let device = match nvml.device_by_index(index) {
                Ok(d) => d,
                Err(e) => {
                    report.errors.push(format!("GPU {index}: {e}"));
                    continue;
                }
            };
            let (name, pci) = match (device.name(), device.pci_info()) {
                (Ok(n), Ok(p)) => (n, normalize_pci(&p.bus_id)),
                (Err(e), _) | (_, Err(e)) => {
                    report.errors.push(format!("GPU {index}: {e}"));
                    continue;
                }
            };
            let mut peers = BTreeSet::new();
            for link in 0..NVLINK_MAX_LINKS {
                let l = device.link_wrapper_for(link);
                if l.is_active().unwrap_or(false)
                    && let Ok(remote) = l.remote_pci_info()
                {
                    peers.insert(normalize_pci(&remote.bus_id));
                }
            }
            report.gpus.push(GpuStatus {
                model: model_family(&name),
                uuid: device.uuid().unwrap_or_default(),
                memory_mib: device.memory_info().map_or(0, |m| m.total >> 20),
                numa_node: device
                    .numa_node_id()
                    .ok()
                    .or_else(|| sysfs_numa_node(&pci))
                    .unwrap_or(0),
                nvlink_peers: peers.into_iter().collect(),
                mig_mode: device.mig_mode().is_ok_and(|m| m.current == 1),
                temperature_c: device.temperature(TemperatureSensor::Gpu).ok(),
                power_w: device.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
                utilization_pct: device.utilization_rates().ok().map(|u| u.gpu),
                ecc_uncorrected: device
                    .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
                    .ok(),
                xid: self.xids_watched.load(Ordering::Relaxed).then(|| {
                    self.xids
                        .lock()
                        .map(|x| x.get(&pci).copied().unwrap_or_default())
                        .unwrap_or_default()
                }),
                name,
                pci_address: pci,
            });
        }
        report
    }
}

/// Counts the critical XID errors NVML reports, on its own thread (NVML's event wait
/// blocks), with its own NVML handle (NVML counts its initialisations). A GPU that cannot
/// report events (some consumer boards) is left out and said once.
fn watch_xids(counts: &XidCounts, watched: &AtomicBool) {
    use nvml_wrapper::bitmasks::event::EventTypes;
    use nvml_wrapper::enums::event::XidError;
    use nvml_wrapper::error::NvmlError;
    let Ok(nvml) = nvml_wrapper::Nvml::init() else {
        return;
    };
    let devices: Vec<_> = (0..nvml.device_count().unwrap_or(0))
        .filter_map(|i| nvml.device_by_index(i).ok())
        .filter(|d| {
            d.supported_event_types()
                .is_ok_and(|t| t.contains(EventTypes::CRITICAL_XID_ERROR))
        })
        .collect();
    let Ok(mut set) = nvml.create_event_set() else {
        return;
    };
    let mut registered = 0;
    for d in &devices {
        match d.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
            Ok(s) => {
                set = s;
                registered += 1;
            }
            Err(e) => {
                // The set was released: watch none rather than half.
                tracing::warn!(
                    "cannot watch XID errors: {e:?}; vmcloud_agent_gpu_xid_errors_total is not reported"
                );
                return;
            }
        }
    }
    if registered == 0 {
        tracing::info!(
            "no GPU here reports XID events; vmcloud_agent_gpu_xid_errors_total is not reported"
        );
        return;
    }
    watched.store(true, Ordering::Relaxed);
    tracing::info!("watching XID errors on {registered} GPUs");
    loop {
        match set.wait(5_000) {
            Ok(event) => {
                let Ok(pci) = event.device.pci_info().map(|p| normalize_pci(&p.bus_id)) else {
                    continue;
                };
                let code = match event.event_data {
                    Some(XidError::Value(v)) => v,
                    _ => 0,
                };
                tracing::warn!("GPU {pci}: XID {code}");
                if let Ok(mut c) = counts.lock() {
                    let seen = c.entry(pci).or_default();
                    seen.count += 1;
                    seen.last = code;
                }
            }
            Err(NvmlError::Timeout) => {}
            Err(e) => {
                tracing::warn!("XID watcher stopped: {e}");
                watched.store(false, Ordering::Relaxed);
                return;
            }
        }
    }
}

/// The NUMA node of a PCI device from sysfs (`-1`, no NUMA: none).
fn sysfs_numa_node(pci: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/bus/pci/devices/{pci}/numa_node"))
        .ok()?
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|n| u32::try_from(n).ok())
}

/// A fixed set of GPUs: what a simulated host of a shape has.
#[derive(Debug, Clone, Default)]
pub struct SimGpus {
    gpus: Vec<GpuStatus>,
}

/// GPU models a simulated shape may name: (shape word, family, full name, memory MiB, NVLink).
const SIM_MODELS: [(&str, &str, &str, u64, bool); 6] = [
    ("h100", "H100", "NVIDIA H100 80GB HBM3", 81_559, true),
    ("h200", "H200", "NVIDIA H200", 143_771, true),
    ("a100", "A100", "NVIDIA A100-SXM4-80GB", 81_920, true),
    ("l40s", "L40S", "NVIDIA L40S", 46_068, false),
    (
        "rtx4090",
        "RTX4090",
        "NVIDIA GeForce RTX 4090",
        24_564,
        false,
    ),
    ("a10", "A10", "NVIDIA A10", 23_028, false),
];

impl SimGpus {
    /// No GPUs.
    pub fn none() -> SimGpus {
        SimGpus::default()
    }

    /// The GPUs of a host shape: `cpu` (none) or `gpu-<N>x<model>` (`gpu-8xh100`,
    /// `gpu-4xl40s`, `gpu-2xrtx4090`): N GPUs, half on each NUMA node, SXM models joined by
    /// one NVLink fabric. The error lists what exists.
    pub fn shape(shape: &str) -> Result<SimGpus, String> {
        let models = || {
            SIM_MODELS
                .iter()
                .map(|m| m.0)
                .collect::<Vec<_>>()
                .join(", ")
        };
        if shape == "cpu" {
            return Ok(SimGpus::none());
        }
        let parsed = shape.strip_prefix("gpu-").and_then(|rest| {
            let (n, model) = rest.split_once('x')?;
            let n: u32 = n.parse().ok().filter(|n| (1..=16).contains(n))?;
            let m = SIM_MODELS.iter().find(|m| m.0 == model)?;
            Some((n, m))
        });
        let Some((n, &(_, family, name, memory_mib, nvlink))) = parsed else {
            return Err(format!(
                "unknown host shape `{shape}`: use `cpu` or `gpu-<1..16>x<model>` with a model of {}",
                models()
            ));
        };
        let gpus = (0..n)
            .map(|i| GpuStatus {
                model: family.to_owned(),
                name: name.to_owned(),
                uuid: format!("GPU-sim-{family}-{i:02}"),
                pci_address: format!("0000:{:02x}:00.0", 0x17 + i * 0x10),
                memory_mib,
                numa_node: if i < n.div_ceil(2) { 0 } else { 1 },
                // One NVSwitch fabric, as on HGX boards.
                nvlink_peers: if nvlink && n > 1 {
                    vec!["0000:ff:00.0".to_owned()]
                } else {
                    Vec::new()
                },
                mig_mode: false,
                temperature_c: Some(35),
                power_w: Some(70.0),
                utilization_pct: Some(0),
                ecc_uncorrected: Some(0),
                xid: Some(XidSeen::default()),
            })
            .collect();
        Ok(SimGpus { gpus })
    }
}

impl GpuInventory for SimGpus {
    fn read(&self) -> GpuReport {
        GpuReport {
            driver_version: (!self.gpus.is_empty()).then(|| "sim".to_owned()),
            cuda_version: None,
            gpus: self.gpus.clone(),
            unavailable: None,
            errors: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names_become_catalog_families() {
        for (name, family) in [
            ("NVIDIA H100 80GB HBM3", "H100"),
            ("NVIDIA H100 PCIe", "H100"),
            ("NVIDIA H200", "H200"),
            ("NVIDIA A100-SXM4-80GB", "A100"),
            ("NVIDIA GeForce RTX 4090", "RTX4090"),
            ("NVIDIA L40S", "L40S"),
            ("NVIDIA L4", "L4"),
            ("Tesla T4", "TESLAT4"),
        ] {
            assert_eq!(model_family(name), family, "{name}");
        }
    }

    #[test]
    fn pci_addresses_are_normalized() {
        assert_eq!(normalize_pci("00000000:17:00.0"), "0000:17:00.0");
        assert_eq!(normalize_pci("0000:AB:00.0"), "0000:ab:00.0");
    }

    #[test]
    fn nvlink_groups_follow_links_through_switches() {
        let gpu = |pci: &str, peers: &[&str]| GpuStatus {
            pci_address: pci.into(),
            nvlink_peers: peers.iter().map(|p| (*p).to_owned()).collect(),
            ..SimGpus::shape("gpu-1xh100").unwrap().gpus[0].clone()
        };
        // Two pairs linked directly, two GPUs on one switch, one alone.
        let gpus = [
            gpu("0000:01:00.0", &["0000:02:00.0"]),
            gpu("0000:02:00.0", &["0000:01:00.0"]),
            gpu("0000:03:00.0", &["0000:04:00.0"]),
            gpu("0000:04:00.0", &[]),
            gpu("0000:05:00.0", &["0000:ff:00.0"]),
            gpu("0000:06:00.0", &["0000:ff:00.0"]),
            gpu("0000:07:00.0", &[]),
        ];
        let g = nvlink_groups(&gpus);
        assert_eq!(g["0000:01:00.0"], 1);
        assert_eq!(g["0000:02:00.0"], 1);
        assert_eq!(g["0000:03:00.0"], 2);
        assert!(!g.contains_key("0000:04:00.0"), "no active link of its own");
        assert_eq!(g["0000:05:00.0"], 3);
        assert_eq!(g["0000:06:00.0"], 3);
        assert!(!g.contains_key("0000:07:00.0"));
    }

    #[test]
    fn shapes_give_their_gpus_and_bad_shapes_say_what_exists() {
        let r = SimGpus::shape("gpu-8xh100").unwrap().read();
        let pb = r.to_pb();
        assert_eq!(pb.len(), 8);
        assert!(pb.iter().all(|g| g.model == "H100" && g.nvlink_group == 1));
        assert_eq!(pb.iter().filter(|g| g.numa_node == 1).count(), 4);
        let l40s = SimGpus::shape("gpu-2xl40s").unwrap().read().to_pb();
        assert!(l40s.iter().all(|g| g.nvlink_group == 0));
        assert!(SimGpus::shape("cpu").unwrap().read().gpus.is_empty());
        let err = SimGpus::shape("gpu-8xv100").unwrap_err();
        assert!(err.contains("h100, h200, a100"), "{err}");
        assert!(SimGpus::shape("gpu-0xh100").is_err());
    }

    /// On a host without the NVIDIA driver (like CI) the real inventory reports no GPU and
    /// says why; with one (the device machine), it reads every GPU.
    #[test]
    fn nvml_reads_the_gpus_or_says_why_there_are_none() {
        let report = Nvml::load().read();
        match &report.unavailable {
            Some(why) => {
                eprintln!("no NVIDIA driver here: checked the no-GPU path ({why})");
                assert!(report.gpus.is_empty());
                assert!(why.contains("NVML is not available"), "{why}");
            }
            None => {
                eprintln!("NVML: {report:#?}");
                assert!(report.driver_version.is_some());
                for g in &report.gpus {
                    assert!(!g.model.is_empty() && g.memory_mib > 0, "{g:?}");
                    assert!(g.pci_address.len() == 12, "{g:?}");
                }
            }
        }
    }
}
