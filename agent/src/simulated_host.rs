//! Simulated hardware, to run the whole agent — link, ledger, reconciler, API — on hosts that
//! do not exist, by the thousand in one process, over the real wire protocol.
//!
//! - [`SimHypervisor`]: domains in memory with timed transitions: starting a domain takes
//!   `boot` (as libvirt's create returns once QEMU runs), a guest honours an ACPI shutdown
//!   after `shutdown`, and a test can crash a guest or shut it down from inside;
//! - [`SimHost`]: CPU and memory of a host shape;
//! - GPUs from [`crate::gpu::SimGpus`], networks in [`crate::tenant_net::SimLinks`], scrubbing by
//!   [`crate::scrub::SimScrubber`].
//!
//! [`start_agents`] starts many agents in one process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vmcloud_proto::pb;

use crate::gpu::{GpuInventory, SimGpus};
use crate::host_info::HostInfo;
use crate::hypervisor::{
    DomainInfo, DomainSpec, DomainState, Hypervisor, HypervisorError, StateReason, instance_of,
};
use crate::scrub::SimScrubber;
use crate::tenant_net::SimLinks;
use crate::{Agent, AgentConfig, AgentError, Hardware};

/// How long simulated transitions take.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// From start to running.
    pub boot: Duration,
    /// From an ACPI shutdown request to off.
    pub shutdown: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            boot: Duration::from_millis(50),
            shutdown: Duration::from_millis(200),
        }
    }
}

#[derive(Debug, Clone)]
struct SimDomain {
    spec: DomainSpec,
    state: DomainState,
    reason: StateReason,
    /// When a requested shutdown completes.
    off_at: Option<Instant>,
}

/// A hypervisor in memory.
#[derive(Debug)]
pub struct SimHypervisor {
    uri: String,
    timings: Timings,
    domains: Mutex<BTreeMap<String, SimDomain>>,
}

impl SimHypervisor {
    pub fn new(timings: Timings) -> SimHypervisor {
        SimHypervisor {
            uri: "sim:///".into(),
            timings,
            domains: Mutex::default(),
        }
    }

    fn settle(d: &mut SimDomain) {
        if let Some(at) = d.off_at
            && Instant::now() >= at
        {
            d.state = DomainState::Shutoff;
            d.reason = StateReason::GuestShutdown;
            d.off_at = None;
        }
    }

    /// The guest crashes (`on_crash=destroy`).
    pub fn crash(&self, name: &str) {
        if let Some(d) = self.domains.lock().unwrap().get_mut(name) {
            d.state = DomainState::Shutoff;
            d.reason = StateReason::Crashed;
            d.off_at = None;
        }
    }

    /// The guest shuts itself down.
    pub fn guest_shutdown(&self, name: &str) {
        if let Some(d) = self.domains.lock().unwrap().get_mut(name) {
            d.state = DomainState::Shutoff;
            d.reason = StateReason::GuestShutdown;
            d.off_at = None;
        }
    }

    fn missing(&self, operation: String) -> HypervisorError {
        HypervisorError {
            uri: self.uri.clone(),
            operation,
            message: "no such domain".into(),
        }
    }
}

impl Hypervisor for SimHypervisor {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn boots_guests(&self) -> bool {
        false
    }

    fn list(&self) -> Result<Vec<DomainInfo>, HypervisorError> {
        let mut domains = self.domains.lock().unwrap();
        Ok(domains
            .iter_mut()
            .map(|(name, d)| {
                Self::settle(d);
                DomainInfo {
                    name: name.clone(),
                    state: d.state,
                    reason: d.reason,
                    instance_id: instance_of(name),
                    vcpus: d.spec.vcpus,
                    memory_mib: d.spec.memory_mib,
                }
            })
            .collect())
    }

    fn define(&self, spec: &DomainSpec) -> Result<(), HypervisorError> {
        let mut domains = self.domains.lock().unwrap();
        let d = domains.entry(spec.domain_name()).or_insert(SimDomain {
            spec: spec.clone(),
            state: DomainState::Shutoff,
            reason: StateReason::Other,
            off_at: None,
        });
        d.spec = spec.clone();
        Ok(())
    }

    fn ensure_running(&self, spec: &DomainSpec) -> Result<(), HypervisorError> {
        {
            let mut domains = self.domains.lock().unwrap();
            if let Some(d) = domains.get_mut(&spec.domain_name()) {
                Self::settle(d);
                if d.state == DomainState::Running {
                    return Ok(());
                }
            }
        }
        self.define(spec)?;
        std::thread::sleep(self.timings.boot);
        let mut domains = self.domains.lock().unwrap();
        let d = domains
            .get_mut(&spec.domain_name())
            .ok_or_else(|| self.missing(format!("starting {}", spec.domain_name())))?;
        d.state = DomainState::Running;
        d.reason = StateReason::Other;
        Ok(())
    }

    fn request_shutdown(&self, name: &str) -> Result<(), HypervisorError> {
        if let Some(d) = self.domains.lock().unwrap().get_mut(name)
            && d.state == DomainState::Running
            && d.off_at.is_none()
        {
            d.off_at = Some(Instant::now() + self.timings.shutdown);
        }
        Ok(())
    }

    fn force_stop(&self, name: &str) -> Result<(), HypervisorError> {
        if let Some(d) = self.domains.lock().unwrap().get_mut(name)
            && d.state != DomainState::Shutoff
        {
            d.state = DomainState::Shutoff;
            d.reason = StateReason::Destroyed;
            d.off_at = None;
        }
        Ok(())
    }

    fn reboot(&self, name: &str) -> Result<(), HypervisorError> {
        let mut domains = self.domains.lock().unwrap();
        match domains.get_mut(name) {
            Some(d) if d.state == DomainState::Running => Ok(()),
            Some(_) => Err(HypervisorError {
                uri: self.uri.clone(),
                operation: format!("rebooting {name}"),
                message: "the domain is not running; start it instead".into(),
            }),
            None => Err(self.missing(format!("rebooting {name}"))),
        }
    }

    fn destroy(&self, name: &str) -> Result<(), HypervisorError> {
        self.domains.lock().unwrap().remove(name);
        Ok(())
    }
}

/// CPU and memory of a simulated host.
#[derive(Debug, Clone)]
pub struct SimHost {
    pub hostname: String,
    pub cpu_threads: u32,
    pub memory_bytes: u64,
}

impl SimHost {
    /// The host of a shape: `cpu` is a 64-thread, 256 GiB host; `gpu-<N>x<model>` hosts get
    /// 28 threads (at least 32) and 256 GiB per GPU (an 8-GPU HGX board: 224 threads, 2 TiB).
    pub fn shape(hostname: &str, shape: &str) -> Result<SimHost, String> {
        let gpus = SimGpus::shape(shape)?.read().gpus.len() as u32;
        Ok(SimHost {
            hostname: hostname.to_owned(),
            cpu_threads: if gpus == 0 { 64 } else { (28 * gpus).max(32) },
            memory_bytes: (256u64 << 30) * u64::from(gpus.max(1)),
        })
    }
}

impl HostInfo for SimHost {
    fn hostname(&self) -> String {
        self.hostname.clone()
    }
    fn cpu_model(&self) -> String {
        "Simulated EPYC".into()
    }
    fn cpu_threads(&self) -> u32 {
        self.cpu_threads
    }
    fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }
}

/// Simulated hardware of a shape, for one agent.
pub fn hardware(
    hostname: &str,
    shape: &str,
    timings: Timings,
) -> Result<(Hardware, Arc<SimHypervisor>), String> {
    let hv = Arc::new(SimHypervisor::new(timings));
    Ok((
        Hardware {
            hypervisor: hv.clone(),
            host: Box::new(SimHost::shape(hostname, shape)?),
            gpus: Box::new(SimGpus::shape(shape)?),
            links: Arc::new(SimLinks::default()),
            firewall: Arc::new(crate::firewall::SimFirewall::default()),
            scrubber: Arc::new(SimScrubber::default()),
        },
        hv,
    ))
}

/// Starts one simulated agent per config, all in this process, each with its own hardware of
/// `shape`. Agents start concurrently; the first error stops the start and is returned.
pub async fn start_agents(
    configs: Vec<AgentConfig>,
    shape: &str,
    timings: Timings,
) -> Result<Vec<(Agent, Arc<SimHypervisor>)>, AgentError> {
    let mut started = Vec::with_capacity(configs.len());
    let mut set = tokio::task::JoinSet::new();
    for config in configs {
        let (hw, hv) =
            hardware(&config.node.to_string(), shape, timings).map_err(AgentError::Shape)?;
        set.spawn(async move { Agent::start_with(config, hw).await.map(|a| (a, hv)) });
    }
    while let Some(joined) = set.join_next().await {
        started.push(joined.expect("starting an agent does not panic")?);
    }
    Ok(started)
}

/// The status a simulated agent reports, for tests that look without a scheduler.
pub fn running(report: &pb::StatusReport) -> usize {
    report
        .instances
        .iter()
        .filter(|s| s.state() == pb::ObservedState::Running)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconciler::{Host, Memory};
    use std::collections::HashMap;
    use vmcloud_proto::InstanceId;

    #[test]
    fn the_reconciler_drives_simulated_hardware_with_timed_transitions() {
        let tmp = tempfile::tempdir().unwrap();
        let (hw, hv) = hardware(
            "sim-1",
            "gpu-2xh100",
            Timings {
                boot: Duration::from_millis(20),
                shutdown: Duration::from_millis(100),
            },
        )
        .unwrap();
        assert_eq!(hw.gpus.read().gpus.len(), 2);
        assert_eq!(hw.host.cpu_threads(), 56);
        let host = Host {
            hv: hw.hypervisor.clone(),
            images: Arc::new(crate::images::ImageCache::new(
                tmp.path().join("images"),
                tmp.path().join("instances"),
            )),
            links: hw.links.clone(),
            firewall: hw.firewall.clone(),
            scrubber: hw.scrubber.clone(),
            gpus: HashMap::from([("0000:17:00.0".into(), 0)]),
            numa_cpus: HashMap::new(),
            stop_grace: Duration::from_secs(5),
            watch_interval: Duration::from_secs(5),
        };
        let id = InstanceId::generate();
        let mut want = pb::DesiredInstance {
            instance_id: id.to_string(),
            vcpus: 4,
            memory_mib: 4096,
            image: "ubuntu-24.04".into(),
            gpus: vec!["0000:17:00.0".into()],
            ..Default::default()
        };
        let config = |w: &pb::DesiredInstance| pb::DesiredConfig {
            generation: 1,
            instances: vec![w.clone()],
            ..Default::default()
        };
        let mut mem = Memory::default();
        let started = Instant::now();
        let pass = host.reconcile_once(&config(&want), &mut mem).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert_eq!(running(&pass.report), 1, "{pass:?}");
        // Simulated hosts, like libvirt's test driver, run instances whose image the cache
        // lacks (there is no guest to boot); the scrubber prepared the GPU first.
        want.stopped = true;
        let pass = host.reconcile_once(&config(&want), &mut mem).unwrap();
        assert_eq!(pass.report.instances[0].message, "stopping");
        std::thread::sleep(Duration::from_millis(150));
        let pass = host.reconcile_once(&config(&want), &mut mem).unwrap();
        assert_eq!(pass.report.instances[0].message, "stopped gracefully");
        want.stopped = false;
        host.reconcile_once(&config(&want), &mut mem).unwrap();
        hv.crash(&crate::hypervisor::domain_name(&id));
        let pass = host.reconcile_once(&config(&want), &mut mem).unwrap();
        assert_eq!(
            pass.report.instances[0].message,
            "the guest crashed and was restarted"
        );
    }
}
