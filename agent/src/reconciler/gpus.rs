//! GPUs between tenants: a whole GPU that last served another tenant (or whose history is
//! unknown) is scrubbed and health-checked before it is given out; one that fails is kept
//! back and reported unhealthy.

use super::error::InstanceError;
use super::{Host, Memory};
use crate::hypervisor::{DomainSpec, HostDev};
use crate::scrub::ScrubError;

impl Host {
    /// Makes the instance's whole GPUs ready for it: a GPU that last served another tenant
    /// (or whose history is unknown) is scrubbed and checked first. MIG slices are not
    /// scrubbed here (see docs/agent.md).
    pub(super) fn gpus_ready(
        &self,
        spec: &DomainSpec,
        memory: &mut Memory,
    ) -> Result<(), InstanceError> {
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
                return Err(InstanceError::GpuUnhealthy {
                    gpu: pci.clone(),
                    reason: why.clone(),
                });
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
                    return Err(InstanceError::GpuFailedScrub {
                        gpu: pci.clone(),
                        reason,
                    });
                }
                Err(source @ ScrubError::Unavailable(_)) => {
                    return Err(InstanceError::GpuScrubUnavailable {
                        gpu: pci.clone(),
                        source,
                    });
                }
            }
        }
        for pci in whole {
            memory.clean.remove(&pci);
            memory.gpu_owner.insert(pci, spec.instance_id.clone());
        }
        Ok(())
    }
}
