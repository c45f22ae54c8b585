//! The reconciler: one task that converges the host onto the desired config.
//!
//! It wakes when a new desired config is accepted (persisted first by the link) or when its
//! timer fires: every few seconds to watch the domains (the `virt` crate has no event API, so
//! a guest that shuts itself down or crashes is seen by its state and reason at the next
//! look), sooner while a graceful stop is under way, and with backoff after a failure. It
//! publishes a full [`pb::StatusReport`] whenever what it observes changes.
//!
//! Until the agent has a desired config it touches nothing: a VM is never destroyed because
//! the scheduler has not been heard from. Domains found running at start are adopted as they
//! are, never recreated.
//!
//! Per desired instance:
//! - a spec the host cannot satisfy (a GPU not on this host, an image missing or damaged, the
//!   disk full, a network that clashes) fails that instance with the reason; the others go on;
//! - running and wanted: left alone (a vCPU or memory change waits for a stop);
//! - absent or stopped and wanted: files prepared (qcow2 overlay over the cached image),
//!   network made, defined and started;
//! - crashed: restarted, and the report says it crashed;
//! - shut down from inside the guest: left off and reported stopped (as EC2 does), until its
//!   owner stops and starts it; a marker file in the instance directory remembers this across
//!   agent restarts;
//! - `stopped`: ACPI shutdown, forced after the grace period; resized while off.
//!
//! Managed domains that are not desired are destroyed, undefined and their files removed;
//! bridges of networks no desired instance uses any more are removed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use vmcloud_proto::{InstanceId, pb};

use crate::hypervisor::{
    DirectBoot, DomainInfo, DomainSpec, DomainState, HostDev, Hypervisor, HypervisorError, Nic,
    StateReason, domain_name,
};
use crate::images::{ImageCache, ImageError};
use crate::netlinks::{NetLinks, TenantNetwork};
use crate::scrub::{GpuScrubber, ScrubError};

const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How often domains are looked at while stopping one gracefully.
const STOPPING_POLL: Duration = Duration::from_secs(1);
/// Name of the marker left in an instance's directory when its guest shut itself down.
const GUEST_STOPPED: &str = "guest-stopped";

/// What the reconciler works with.
pub struct Host {
    pub hv: Arc<dyn Hypervisor>,
    pub images: Arc<ImageCache>,
    pub links: Arc<dyn NetLinks>,
    /// Scrubs and checks a GPU before it goes to a new tenant.
    pub scrubber: Arc<dyn GpuScrubber>,
    /// GPUs present: PCI address → NUMA node.
    pub gpus: HashMap<String, u32>,
    /// CPUs of each NUMA node (`"0-15,32-47"`), to pin GPU guests near their GPUs.
    pub numa_cpus: HashMap<u32, String>,
    /// How long a guest has to honour an ACPI shutdown before it is stopped forcibly.
    pub stop_grace: Duration,
    /// How often domains are looked at when nothing else wakes the reconciler.
    pub watch_interval: Duration,
}

/// What the reconciler remembers between passes (lost on restart; nothing depends on it
/// that the host itself does not also say).
#[derive(Debug, Default)]
pub struct Memory {
    /// Graceful stops under way: when each one is forced.
    stopping: HashMap<InstanceId, Instant>,
    /// The state each managed domain had at the last pass.
    last: HashMap<InstanceId, (DomainState, StateReason)>,
    /// GPUs scrubbed since their last tenant. After a restart none is: every GPU is scrubbed
    /// again before it goes to a new tenant.
    clean: HashSet<String>,
    /// Which instance each GPU was last given to.
    gpu_owner: HashMap<String, InstanceId>,
    /// GPUs that failed their scrub or health check, with why.
    unhealthy: HashMap<String, String>,
    /// Guest addresses routed to their bridges, to remove with the instance.
    routes: HashMap<InstanceId, std::net::Ipv4Addr>,
}

/// The guest's address and prefix length from its NIC (`"10.42.0.5/24"`), if it has one.
fn guest_address(nic: &pb::DesiredNic) -> Result<Option<(std::net::Ipv4Addr, u8)>, String> {
    if nic.ipv4.is_empty() {
        return Ok(None);
    }
    let bad = || {
        format!(
            "guest address {:?} is not IPv4 with a prefix (\"10.42.0.5/24\")",
            nic.ipv4
        )
    };
    let (ip, prefix) = nic.ipv4.split_once('/').ok_or_else(bad)?;
    let ip = ip.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (1..=32).contains(p))
        .ok_or_else(bad)?;
    Ok(Some((ip, prefix)))
}

/// The outcome of one pass.
#[derive(Debug)]
pub struct Pass {
    pub report: pb::StatusReport,
    /// Every action succeeded.
    pub all_ok: bool,
    /// When to look again at the latest.
    pub next: Duration,
}

fn status(
    id: &InstanceId,
    state: pb::ObservedState,
    message: impl Into<String>,
) -> pb::InstanceStatus {
    pb::InstanceStatus {
        instance_id: id.to_string(),
        state: state as i32,
        message: message.into(),
    }
}

impl Host {
    /// Fills the spec's files, NIC and NUMA placement, making what is missing. Errors are the
    /// reason the instance cannot run here.
    fn complete(
        &self,
        spec: &mut DomainSpec,
        want: &pb::DesiredInstance,
        memory: &mut Memory,
    ) -> Result<(), String> {
        for dev in &spec.hostdevs {
            let addr = dev.gpu().to_string();
            if !self.gpus.contains_key(&addr) {
                let mut have: Vec<&String> = self.gpus.keys().collect();
                have.sort();
                return Err(format!(
                    "GPU {addr} is not on this host (it has {})",
                    if have.is_empty() {
                        "no GPUs".to_owned()
                    } else {
                        have.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ));
            }
        }
        if let Some(node) = spec
            .hostdevs
            .first()
            .and_then(|d| self.gpus.get(&d.gpu().to_string()))
        {
            spec.numa_node = Some(*node);
            spec.cpuset = self.numa_cpus.get(node).cloned();
        }
        let image = match self.images.image(&spec.image) {
            Ok(image) => Some(image),
            // libvirt's test driver and simulated hosts run no guest: instances of images the
            // cache does not hold are defined without a disk (the dev fleet and most tests).
            Err(ImageError::Missing { .. }) if !self.hv.boots_guests() => None,
            Err(e) => return Err(e.to_string()),
        };
        let files = self
            .images
            .prepare(&spec.instance_id, image.as_ref(), want.disk_gib)
            .map_err(|e| e.to_string())?;
        spec.disk = files.disk;
        spec.serial_log = Some(files.serial_log);
        if let Some(image) = image
            && let Some(kernel) = image.kernel
        {
            spec.boot = Some(DirectBoot {
                kernel,
                initrd: image.initrd,
                cmdline: image.cmdline.unwrap_or_default(),
            });
        }
        if let Some(nic) = &want.nic {
            let net = TenantNetwork {
                vni: nic.vni,
                mtu: nic.mtu,
            };
            let bridge = self.links.ensure_network(&net).map_err(|e| e.to_string())?;
            spec.nic = Some(Nic {
                bridge,
                mac: nic.mac.clone(),
                mtu: nic.mtu,
            });
            if let Some((ip, prefix)) = guest_address(nic)? {
                self.links
                    .route_guest(nic.vni, ip)
                    .map_err(|e| e.to_string())?;
                memory.routes.insert(spec.instance_id.clone(), ip);
                // Images booted directly get their address the kernel's way (`ip=`).
                if let Some(boot) = &mut spec.boot {
                    let mask = std::net::Ipv4Addr::from(
                        u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0),
                    );
                    boot.cmdline = format!("{} ip={ip}:::{mask}::eth0:off", boot.cmdline)
                        .trim_start()
                        .to_owned();
                }
            }
        }
        Ok(())
    }

    /// Makes the instance's whole GPUs ready for it: a GPU that last served another tenant
    /// (or whose history is unknown) is scrubbed and checked first. MIG slices are not
    /// scrubbed here (see docs/agent.md).
    fn gpus_ready(&self, spec: &DomainSpec, memory: &mut Memory) -> Result<(), String> {
        let whole: Vec<String> = spec
            .hostdevs
            .iter()
            .filter_map(|d| match d {
                HostDev::Pci(a) => Some(a.to_string()),
                HostDev::Mdev { .. } => None,
            })
            .collect();
        for pci in &whole {
            if let Some(why) = memory.unhealthy.get(pci) {
                return Err(format!("GPU {pci} is unhealthy: {why}"));
            }
            if memory.gpu_owner.get(pci) == Some(&spec.instance_id) || memory.clean.contains(pci) {
                continue;
            }
            match self.scrubber.prepare(pci) {
                Ok(r) => {
                    tracing::info!(
                        gpu = pci,
                        scrubbed_mib = r.scrubbed_mib,
                        total_mib = r.total_mib,
                        bandwidth_gbps = r.bandwidth_gbps,
                        seconds = r.seconds,
                        "GPU scrubbed and healthy"
                    );
                    memory.clean.insert(pci.clone());
                }
                Err(ScrubError::Unhealthy { reason, .. }) => {
                    tracing::error!(gpu = pci, %reason, "GPU failed its scrub or health check; no tenant gets it");
                    memory.unhealthy.insert(pci.clone(), reason.clone());
                    return Err(format!(
                        "GPU {pci} failed its scrub or health check: {reason}"
                    ));
                }
                Err(e @ ScrubError::Unavailable(_)) => {
                    return Err(format!(
                        "GPU {pci} cannot be scrubbed before it goes to a new tenant: {e}"
                    ));
                }
            }
        }
        for pci in whole {
            memory.clean.remove(&pci);
            memory.gpu_owner.insert(pci, spec.instance_id.clone());
        }
        Ok(())
    }

    fn marker(&self, id: &InstanceId) -> std::path::PathBuf {
        self.images.instance_dir(id).join(GUEST_STOPPED)
    }

    /// One pass over every desired instance and every managed domain.
    pub fn reconcile_once(
        &self,
        desired: &pb::DesiredConfig,
        memory: &mut Memory,
    ) -> Result<Pass, HypervisorError> {
        let hv = &*self.hv;
        let domains = hv.list()?;
        let mut by_instance: HashMap<InstanceId, &DomainInfo> = domains
            .iter()
            .filter_map(|d| d.instance_id.clone().map(|id| (id, d)))
            .collect();
        let mut statuses = Vec::new();
        let mut all_ok = true;
        let mut next = self.watch_interval;
        let mut networks_in_use = HashSet::new();
        let now = Instant::now();
        for want in &desired.instances {
            let mut spec = match DomainSpec::from_desired(want) {
                Ok(spec) => spec,
                Err(reason) => {
                    tracing::warn!(instance = want.instance_id, %reason, "desired instance refused");
                    all_ok = false;
                    statuses.push(pb::InstanceStatus {
                        instance_id: want.instance_id.clone(),
                        state: pb::ObservedState::Failed as i32,
                        message: reason,
                    });
                    continue;
                }
            };
            if let Some(nic) = &want.nic {
                networks_in_use.insert(nic.vni);
            }
            let id = spec.instance_id.clone();
            let current = by_instance.remove(&id);
            let was = memory.last.get(&id).copied();
            let (state, message) = match (current, want.stopped) {
                // Wanted off.
                (Some(d), true) if d.state != DomainState::Shutoff => {
                    let _ = std::fs::remove_file(self.marker(&id));
                    match memory.stopping.get(&id) {
                        None => match hv.request_shutdown(&spec.domain_name()) {
                            Ok(()) => {
                                tracing::info!(instance = %id, "stopping: ACPI shutdown requested");
                                memory.stopping.insert(id.clone(), now + self.stop_grace);
                                next = next.min(STOPPING_POLL);
                                (pb::ObservedState::Running, "stopping".to_owned())
                            }
                            Err(e) => {
                                all_ok = false;
                                (pb::ObservedState::Running, e.to_string())
                            }
                        },
                        Some(deadline) if now < *deadline => {
                            next = next.min(STOPPING_POLL);
                            (pb::ObservedState::Running, "stopping".to_owned())
                        }
                        Some(_) => match hv.force_stop(&spec.domain_name()) {
                            Ok(()) => {
                                memory.stopping.remove(&id);
                                tracing::warn!(instance = %id, grace = ?self.stop_grace, "the guest ignored the ACPI shutdown; stopped forcibly");
                                (
                                    pb::ObservedState::Stopped,
                                    format!(
                                        "stopped forcibly: the guest did not shut down within {} s",
                                        self.stop_grace.as_secs()
                                    ),
                                )
                            }
                            Err(e) => {
                                all_ok = false;
                                (pb::ObservedState::Running, e.to_string())
                            }
                        },
                    }
                }
                (current, true) => {
                    let _ = std::fs::remove_file(self.marker(&id));
                    let stopped_now = memory.stopping.remove(&id).is_some();
                    // Defined (or redefined: an offline resize) but not started.
                    let resize = current
                        .is_some_and(|d| (d.vcpus, d.memory_mib) != (spec.vcpus, spec.memory_mib));
                    if current.is_none() || resize {
                        match self
                            .complete(&mut spec, want, memory)
                            .and_then(|()| hv.define(&spec).map_err(|e| e.to_string()))
                        {
                            Ok(()) if resize => {
                                tracing::info!(instance = %id, vcpus = spec.vcpus, memory_mib = spec.memory_mib, "resized while stopped");
                                (pb::ObservedState::Stopped, "resized".to_owned())
                            }
                            Ok(()) => (pb::ObservedState::Stopped, String::new()),
                            Err(reason) => {
                                all_ok = false;
                                (pb::ObservedState::Failed, reason)
                            }
                        }
                    } else if stopped_now {
                        tracing::info!(instance = %id, "stopped gracefully");
                        (pb::ObservedState::Stopped, "stopped gracefully".to_owned())
                    } else {
                        (pb::ObservedState::Stopped, String::new())
                    }
                }
                // Wanted running and running: adopted as it is.
                (Some(d), false)
                    if d.state != DomainState::Shutoff && d.state != DomainState::Crashed =>
                {
                    memory.stopping.remove(&id);
                    // Adopted after a restart: its GPUs and its route are its own.
                    if let Some(nic) = &want.nic
                        && let Ok(Some((ip, _))) = guest_address(nic)
                    {
                        memory.routes.insert(id.clone(), ip);
                    }
                    for dev in &spec.hostdevs {
                        memory.gpu_owner.insert(dev.gpu().to_string(), id.clone());
                    }
                    if (d.vcpus, d.memory_mib) != (spec.vcpus, spec.memory_mib) {
                        (
                            pb::ObservedState::Running,
                            format!(
                                "runs with {} vCPUs and {} MiB; the new size applies after the instance is stopped",
                                d.vcpus, d.memory_mib
                            ),
                        )
                    } else {
                        (pb::ObservedState::Running, String::new())
                    }
                }
                // The guest shut itself down: it stays off.
                (Some(d), false)
                    if d.reason == StateReason::GuestShutdown
                        && (self.marker(&id).exists()
                            || was.is_some_and(|(s, _)| s != DomainState::Shutoff)) =>
                {
                    if !self.marker(&id).exists() {
                        tracing::info!(instance = %id, "the guest shut itself down; it stays stopped");
                        let _ = std::fs::write(self.marker(&id), b"");
                    }
                    (
                        pb::ObservedState::Stopped,
                        "the guest shut itself down; stop and start the instance to run it again"
                            .to_owned(),
                    )
                }
                // Absent, stopped or crashed, and wanted running.
                (current, false) => {
                    let crashed = current.is_some_and(|d| d.reason == StateReason::Crashed);
                    match self
                        .complete(&mut spec, want, memory)
                        .and_then(|()| self.gpus_ready(&spec, memory))
                        .and_then(|()| hv.ensure_running(&spec).map_err(|e| e.to_string()))
                    {
                        Ok(()) if crashed => {
                            tracing::warn!(instance = %id, "the guest crashed; restarted");
                            (
                                pb::ObservedState::Running,
                                "the guest crashed and was restarted".to_owned(),
                            )
                        }
                        Ok(()) => {
                            tracing::info!(instance = %id, domain = spec.domain_name(), "instance started");
                            (pb::ObservedState::Running, String::new())
                        }
                        Err(reason) => {
                            all_ok = false;
                            tracing::warn!(instance = %id, %reason, "instance could not be started");
                            (pb::ObservedState::Failed, reason)
                        }
                    }
                }
            };
            // What this pass leaves behind, for the next one to tell what changed.
            let left = if state == pb::ObservedState::Running {
                (DomainState::Running, StateReason::Other)
            } else {
                current.map_or((DomainState::Shutoff, StateReason::Other), |d| {
                    (d.state, d.reason)
                })
            };
            memory.last.insert(id.clone(), left);
            statuses.push(status(&id, state, message));
        }
        // Managed domains that are no longer desired.
        for (id, domain) in by_instance {
            memory.last.remove(&id);
            memory.stopping.remove(&id);
            if let Some(ip) = memory.routes.remove(&id)
                && let Err(e) = self.links.unroute_guest(ip)
            {
                tracing::warn!(instance = %id, %ip, error = %e, "the route to a removed guest could not be removed");
            }
            let name = domain_name(&id);
            let removed = hv
                .destroy(&name)
                .map_err(|e| e.to_string())
                .and_then(|()| self.images.remove(&id).map_err(|e| e.to_string()));
            match removed {
                Ok(()) => tracing::info!(instance = %id, domain = name, "instance removed"),
                Err(reason) => {
                    all_ok = false;
                    tracing::warn!(instance = %id, %reason, "instance could not be removed");
                    let state = match domain.state {
                        DomainState::Running => pb::ObservedState::Running,
                        _ => pb::ObservedState::Stopped,
                    };
                    statuses.push(status(&id, state, reason));
                }
            }
        }
        // Networks no desired instance uses any more.
        match self.links.networks() {
            Ok(vnis) => {
                for vni in vnis.into_iter().filter(|v| !networks_in_use.contains(v)) {
                    match self.links.remove_network(vni) {
                        Ok(()) => tracing::info!(vni, "tenant network removed from this host"),
                        Err(e) => {
                            all_ok = false;
                            tracing::warn!(vni, error = %e, "tenant network could not be removed");
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list tenant networks"),
        }
        memory.last.retain(|id, _| {
            desired
                .instances
                .iter()
                .any(|i| i.instance_id == id.as_str())
        });
        statuses.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        Ok(Pass {
            report: pb::StatusReport {
                generation: desired.generation,
                instances: statuses,
                unhealthy_gpus: {
                    let mut gpus: Vec<pb::UnhealthyGpu> = memory
                        .unhealthy
                        .iter()
                        .map(|(pci, reason)| pb::UnhealthyGpu {
                            pci_address: pci.clone(),
                            reason: reason.clone(),
                        })
                        .collect();
                    gpus.sort_by(|a, b| a.pci_address.cmp(&b.pci_address));
                    gpus
                },
                // Added by the link from the telemetry.
                conditions: Vec::new(),
            },
            all_ok,
            next,
        })
    }
}

/// Runs the reconcile loop until `desired`'s sender is dropped.
pub async fn run(
    host: Arc<Host>,
    mut desired: watch::Receiver<Option<pb::DesiredConfig>>,
    status: watch::Sender<Option<pb::StatusReport>>,
) {
    let mut retry = RETRY_MIN;
    let memory = Arc::new(std::sync::Mutex::new(Memory::default()));
    loop {
        let config = desired.borrow_and_update().clone();
        let wait = match config {
            None => host.watch_interval,
            Some(config) => {
                let (host, memory) = (host.clone(), memory.clone());
                let pass = tokio::task::spawn_blocking(move || {
                    host.reconcile_once(&config, &mut memory.lock().unwrap())
                })
                .await;
                match pass {
                    Ok(Ok(pass)) => {
                        status.send_if_modified(|s| {
                            let changed = s.as_ref() != Some(&pass.report);
                            *s = Some(pass.report);
                            changed
                        });
                        if pass.all_ok {
                            retry = RETRY_MIN;
                            pass.next
                        } else {
                            let wait = retry;
                            retry = (retry * 2).min(RETRY_MAX);
                            wait.min(pass.next)
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, retry_in = ?retry, "cannot read the hypervisor");
                        let wait = retry;
                        retry = (retry * 2).min(RETRY_MAX);
                        wait
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reconcile pass panicked");
                        RETRY_MAX
                    }
                }
            }
        };
        // Both arms are cancel-safe: a missed timer is re-armed by the next round, and
        // `changed` only marks the value seen (the loop re-reads it).
        tokio::select! {
            changed = desired.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::libvirt::Libvirt;
    use crate::netlinks::SimLinks;
    use crate::scrub::SimScrubber;

    fn want(id: &InstanceId) -> pb::DesiredInstance {
        pb::DesiredInstance {
            instance_id: id.to_string(),
            name: "web".into(),
            vcpus: 1,
            memory_mib: 256,
            disk_gib: 10,
            image: "debian-12".into(),
            ..Default::default()
        }
    }

    fn desired(generation: u64, instances: Vec<pb::DesiredInstance>) -> pb::DesiredConfig {
        pb::DesiredConfig {
            generation,
            instances,
            ..Default::default()
        }
    }

    fn host(dir: &std::path::Path) -> Host {
        Host {
            hv: Arc::new(Libvirt::connect("test:///default").unwrap()),
            images: Arc::new(ImageCache::new(dir.join("images"), dir.join("instances"))),
            links: Arc::new(SimLinks::default()),
            scrubber: Arc::new(SimScrubber::default()),
            gpus: HashMap::from([
                ("0000:17:00.0".to_owned(), 1),
                ("0000:18:00.0".to_owned(), 1),
            ]),
            numa_cpus: HashMap::from([(1, "8-15".to_owned())]),
            stop_grace: Duration::from_secs(60),
            watch_interval: Duration::from_secs(5),
        }
    }

    fn state_of(pass: &Pass, id: &InstanceId) -> (pb::ObservedState, String) {
        let s = pass
            .report
            .instances
            .iter()
            .find(|s| s.instance_id == id.as_str())
            .unwrap();
        (s.state(), s.message.clone())
    }

    #[test]
    fn converges_with_the_libvirt_test_driver() {
        let _guard = crate::TEST_DRIVER.lock().unwrap_or_else(|e| e.into_inner());
        let tmp = tempfile::tempdir().unwrap();
        let links = Arc::new(SimLinks::default());
        let host = Host {
            links: links.clone(),
            ..host(tmp.path())
        };
        let mut mem = Memory::default();
        let (a, b) = (InstanceId::generate(), InstanceId::generate());
        let mut wa = want(&a);
        wa.nic = Some(pb::DesiredNic {
            vni: 42,
            mac: "52:54:00:00:00:01".into(),
            mtu: 1450,
            ipv4: "10.42.0.2/24".into(),
        });
        let pass = host
            .reconcile_once(&desired(1, vec![wa.clone(), want(&b)]), &mut mem)
            .unwrap();
        assert!(pass.all_ok, "{pass:?}");
        assert_eq!(state_of(&pass, &a).0, pb::ObservedState::Running);
        assert_eq!(state_of(&pass, &b).0, pb::ObservedState::Running);
        assert_eq!(host.links.networks().unwrap(), vec![42]);
        assert_eq!(
            links.routes().into_iter().collect::<Vec<_>>(),
            vec![("10.42.0.2".parse().unwrap(), 42)]
        );
        assert!(host.images.instance_dir(&a).is_dir());

        // b is no longer desired: its domain and files go, a stays untouched.
        let pass = host
            .reconcile_once(&desired(2, vec![wa.clone()]), &mut mem)
            .unwrap();
        assert!(pass.all_ok);
        assert_eq!(pass.report.generation, 2);
        assert_eq!(pass.report.instances.len(), 1);
        let names: Vec<String> = host
            .hv
            .list()
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert!(names.contains(&domain_name(&a)));
        assert!(!names.contains(&domain_name(&b)));
        assert!(!host.images.instance_dir(&b).exists());
        // Domains that are not ours are never touched.
        assert!(names.contains(&"test".to_owned()));

        // Stopped by its owner (the test driver's guest honours ACPI at once), resized while
        // off, started again with the new size.
        wa.stopped = true;
        let pass = host
            .reconcile_once(&desired(3, vec![wa.clone()]), &mut mem)
            .unwrap();
        assert_eq!(
            state_of(&pass, &a),
            (pb::ObservedState::Running, "stopping".into())
        );
        assert_eq!(pass.next, STOPPING_POLL);
        let pass = host
            .reconcile_once(&desired(3, vec![wa.clone()]), &mut mem)
            .unwrap();
        assert_eq!(
            state_of(&pass, &a),
            (pb::ObservedState::Stopped, "stopped gracefully".into())
        );
        wa.vcpus = 2;
        let pass = host
            .reconcile_once(&desired(4, vec![wa.clone()]), &mut mem)
            .unwrap();
        assert_eq!(
            state_of(&pass, &a),
            (pb::ObservedState::Stopped, "resized".into())
        );
        wa.stopped = false;
        let pass = host
            .reconcile_once(&desired(5, vec![wa.clone()]), &mut mem)
            .unwrap();
        assert_eq!(
            state_of(&pass, &a),
            (pb::ObservedState::Running, String::new())
        );
        let d = host
            .hv
            .list()
            .unwrap()
            .into_iter()
            .find(|d| d.name == domain_name(&a))
            .unwrap();
        assert_eq!(d.vcpus, 2);

        // The guest shuts itself down: reported, left off, also after an agent restart.
        host.hv.request_shutdown(&domain_name(&a)).unwrap();
        let pass = host
            .reconcile_once(&desired(5, vec![wa.clone()]), &mut mem)
            .unwrap();
        let (state, message) = state_of(&pass, &a);
        assert_eq!(state, pb::ObservedState::Stopped);
        assert!(message.contains("shut itself down"), "{message}");
        let pass = host
            .reconcile_once(&desired(5, vec![wa.clone()]), &mut Memory::default())
            .unwrap();
        assert_eq!(state_of(&pass, &a).0, pb::ObservedState::Stopped);

        // Nothing desired: everything of ours goes, networks included.
        let pass = host.reconcile_once(&desired(6, vec![]), &mut mem).unwrap();
        assert!(pass.all_ok && pass.report.instances.is_empty());
        assert!(host.links.networks().unwrap().is_empty());
        assert!(links.routes().is_empty());
        assert!(!host.images.instance_dir(&a).exists());
    }

    #[test]
    fn what_the_host_cannot_satisfy_fails_that_instance_only() {
        let _guard = crate::TEST_DRIVER.lock().unwrap_or_else(|e| e.into_inner());
        let tmp = tempfile::tempdir().unwrap();
        let host = host(tmp.path());
        let mut mem = Memory::default();
        let (ok, gpu, absent_gpu, bad_image) = (
            InstanceId::generate(),
            InstanceId::generate(),
            InstanceId::generate(),
            InstanceId::generate(),
        );
        let mut w_gpu = want(&gpu);
        w_gpu.gpus = vec!["0000:17:00.0".into()];
        let mut w_absent = want(&absent_gpu);
        w_absent.gpus = vec!["0000:99:00.0".into()];
        // An image in the cache whose file does not match its checksum.
        let dir = host.images.image_dir().join("broken");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("disk.qcow2"), b"not the image").unwrap();
        std::fs::write(
            dir.join("image.json"),
            r#"{"name":"broken","disk":{"file":"disk.qcow2","sha256":"00"}}"#,
        )
        .unwrap();
        let mut w_bad = want(&bad_image);
        w_bad.image = "broken".into();
        let pass = host
            .reconcile_once(
                &desired(1, vec![want(&ok), w_gpu, w_absent, w_bad]),
                &mut mem,
            )
            .unwrap();
        assert!(!pass.all_ok);
        assert_eq!(state_of(&pass, &ok).0, pb::ObservedState::Running);
        assert_eq!(state_of(&pass, &gpu).0, pb::ObservedState::Running);
        let (state, message) = state_of(&pass, &absent_gpu);
        assert_eq!(state, pb::ObservedState::Failed);
        assert!(
            message.contains(
                "GPU 0000:99:00.0 is not on this host (it has 0000:17:00.0, 0000:18:00.0)"
            ),
            "{message}"
        );
        let (state, message) = state_of(&pass, &bad_image);
        assert_eq!(state, pb::ObservedState::Failed);
        assert!(message.contains("checksum mismatch"), "{message}");
        let listed = host.hv.list().unwrap();
        assert!(listed.iter().any(|d| d.name == domain_name(&gpu)));
        assert!(!listed.iter().any(|d| d.name == domain_name(&absent_gpu)));
        host.reconcile_once(&desired(2, vec![]), &mut mem).unwrap();
    }

    #[test]
    fn gpus_are_scrubbed_between_tenants_and_unhealthy_ones_refused() {
        let _guard = crate::TEST_DRIVER.lock().unwrap_or_else(|e| e.into_inner());
        let tmp = tempfile::tempdir().unwrap();
        let scrubber = Arc::new(SimScrubber::default());
        let host = Host {
            scrubber: scrubber.clone(),
            ..host(tmp.path())
        };
        let mut mem = Memory::default();
        let with_gpu = |id: &InstanceId, gpu: &str| {
            let mut w = want(id);
            w.gpus = vec![gpu.into()];
            w
        };
        let (x, y, z) = (
            InstanceId::generate(),
            InstanceId::generate(),
            InstanceId::generate(),
        );
        // First tenant: scrubbed before it starts (the agent knows nothing of its past).
        let pass = host
            .reconcile_once(&desired(1, vec![with_gpu(&x, "0000:17:00.0")]), &mut mem)
            .unwrap();
        assert_eq!(state_of(&pass, &x).0, pb::ObservedState::Running);
        assert_eq!(scrubber.prepared(), vec!["0000:17:00.0"]);
        // Its own GPU is not scrubbed under it.
        host.reconcile_once(&desired(1, vec![with_gpu(&x, "0000:17:00.0")]), &mut mem)
            .unwrap();
        assert_eq!(scrubber.prepared().len(), 1);
        // Next tenant: scrubbed again.
        let pass = host
            .reconcile_once(&desired(2, vec![with_gpu(&y, "0000:17:00.0")]), &mut mem)
            .unwrap();
        assert_eq!(state_of(&pass, &y).0, pb::ObservedState::Running);
        assert_eq!(scrubber.prepared().len(), 2);

        // A GPU that fails: the instance fails with why, the GPU is reported, and it is not
        // tried again.
        scrubber.fail("0000:18:00.0");
        let config = desired(
            3,
            vec![with_gpu(&y, "0000:17:00.0"), with_gpu(&z, "0000:18:00.0")],
        );
        let pass = host.reconcile_once(&config, &mut mem).unwrap();
        let (state, message) = state_of(&pass, &z);
        assert_eq!(state, pb::ObservedState::Failed);
        assert!(
            message.contains("failed its scrub or health check"),
            "{message}"
        );
        assert_eq!(pass.report.unhealthy_gpus.len(), 1);
        assert_eq!(pass.report.unhealthy_gpus[0].pci_address, "0000:18:00.0");
        assert_eq!(state_of(&pass, &y).0, pb::ObservedState::Running);
        let pass = host.reconcile_once(&config, &mut mem).unwrap();
        assert!(state_of(&pass, &z).1.contains("is unhealthy"));
        assert_eq!(scrubber.prepared().len(), 3);
        host.reconcile_once(&desired(4, vec![]), &mut mem).unwrap();
    }
}
