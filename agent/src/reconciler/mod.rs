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
//!
//! One file per resource: [`instances`] (each desired domain), [`gpus`] (scrub between
//! tenants), [`network`] (NICs, routes, bridges), [`removal`] (domains no longer desired).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use vmcloud_proto::{InstanceId, pb};

use crate::hypervisor::{
    DomainInfo, DomainSpec, DomainState, Hypervisor, HypervisorError, StateReason,
};
use crate::images::ImageCache;
use crate::scrub::GpuScrubber;
use crate::tenant_net::NetLinks;

mod error;
mod gpus;
mod instances;
mod network;
mod removal;
#[cfg(test)]
mod tests;

pub use error::InstanceError;

const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How often domains are looked at while stopping one gracefully.
const STOPPING_POLL: Duration = Duration::from_secs(1);
/// How often the ACPI shutdown is sent again while a guest has not honoured it: a guest still
/// booting (its ACPI daemon not yet listening) misses the first one, as OpenStack's libvirt
/// driver knows (it retries every 10 s too).
const ACPI_RETRY: Duration = Duration::from_secs(10);
/// Name of the marker left in an instance's directory when its guest shut itself down.
const GUEST_STOPPED: &str = "guest-stopped";

/// What the reconciler works with.
pub struct Host {
    pub hv: Arc<dyn Hypervisor>,
    pub images: Arc<ImageCache>,
    pub links: Arc<dyn NetLinks>,
    /// Filters instances' NICs as their firewalls say.
    pub firewall: Arc<dyn crate::firewall::Firewall>,
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
    /// Graceful stops under way: when each one is forced, and when the ACPI request is sent
    /// again.
    stopping: HashMap<InstanceId, (Instant, Instant)>,
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
    /// Public addresses routed to each instance's bridge.
    public: HashMap<InstanceId, std::collections::BTreeSet<std::net::IpAddr>>,
}

/// What one pass knows of one desired instance.
struct Step<'a> {
    pub want: &'a pb::DesiredInstance,
    /// Its domain, if there is one.
    pub current: Option<&'a DomainInfo>,
    /// What the last pass left it in.
    pub was: Option<(DomainState, StateReason)>,
    pub now: Instant,
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
            let step = Step {
                want,
                current,
                was,
                now,
            };
            let (state, message) = self.converge(&mut spec, step, memory, &mut next, &mut all_ok);
            all_ok &= self.route_public(want, memory);
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
            if let Some(failed) = self.remove(&id, domain, memory) {
                all_ok = false;
                statuses.push(failed);
            }
        }
        all_ok &= self.set_peers(&desired.networks, &networks_in_use);
        all_ok &= self.apply_firewalls(desired);
        all_ok &= self.remove_unused_networks(&networks_in_use);
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

/// What the reconcile loop counts, for the agent's `/metrics`.
#[derive(Debug, Default)]
pub struct ReconcileStats {
    /// Passes made (each over every desired instance and managed domain).
    pub passes: std::sync::atomic::AtomicU64,
    /// Passes where an action failed, or the hypervisor could not be read.
    pub errors: std::sync::atomic::AtomicU64,
    /// Time spent in passes, in microseconds.
    pub micros: std::sync::atomic::AtomicU64,
}

impl ReconcileStats {
    /// The counters in Prometheus' text format.
    pub fn to_prometheus(&self, node: &str) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        format!(
            "# HELP vmcloud_agent_reconcile_passes_total Reconcile passes over the desired config.\n# TYPE vmcloud_agent_reconcile_passes_total counter\nvmcloud_agent_reconcile_passes_total{{node=\"{node}\"}} {}\n# HELP vmcloud_agent_reconcile_errors_total Reconcile passes where an action failed or the hypervisor could not be read.\n# TYPE vmcloud_agent_reconcile_errors_total counter\nvmcloud_agent_reconcile_errors_total{{node=\"{node}\"}} {}\n# HELP vmcloud_agent_reconcile_seconds_total Time spent reconciling.\n# TYPE vmcloud_agent_reconcile_seconds_total counter\nvmcloud_agent_reconcile_seconds_total{{node=\"{node}\"}} {}\n",
            self.passes.load(Relaxed),
            self.errors.load(Relaxed),
            self.micros.load(Relaxed) as f64 / 1e6,
        )
    }
}

/// Runs the reconcile loop until `desired`'s sender is dropped.
pub async fn run(
    host: Arc<Host>,
    mut desired: watch::Receiver<Option<pb::DesiredConfig>>,
    status: watch::Sender<Option<pb::StatusReport>>,
    stats: Arc<ReconcileStats>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut retry = RETRY_MIN;
    let memory = Arc::new(std::sync::Mutex::new(Memory::default()));
    loop {
        let config = desired.borrow_and_update().clone();
        let wait = match config {
            None => host.watch_interval,
            Some(config) => {
                let (host, memory) = (host.clone(), memory.clone());
                let started = Instant::now();
                let pass = tokio::task::spawn_blocking(move || {
                    host.reconcile_once(&config, &mut memory.lock().unwrap())
                })
                .await;
                stats.passes.fetch_add(1, Relaxed);
                stats
                    .micros
                    .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
                if !matches!(&pass, Ok(Ok(p)) if p.all_ok) {
                    stats.errors.fetch_add(1, Relaxed);
                }
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
