//! One desired instance: what to do with its domain (define, start, adopt, stop gracefully,
//! leave off), and the files and placement it needs first.

use std::time::Duration;

use vmcloud_proto::{InstanceId, pb};

use super::error::InstanceError;
use super::network::guest_address;
use super::{ACPI_RETRY, GUEST_STOPPED, Host, Memory, STOPPING_POLL, Step};
use crate::hypervisor::{DirectBoot, DomainSpec, DomainState, StateReason};
use crate::images::ImageError;

impl Host {
    /// Converges one desired instance; returns what to report. Clears `all_ok` when an action
    /// failed and shortens `next` while a graceful stop is under way.
    pub(super) fn converge(
        &self,
        spec: &mut DomainSpec,
        step: Step<'_>,
        memory: &mut Memory,
        next: &mut Duration,
        all_ok: &mut bool,
    ) -> (pb::ObservedState, String) {
        let Step {
            want,
            current,
            was,
            now,
        } = step;
        let hv = &*self.hv;
        let id = spec.instance_id.clone();
        match (current, want.stopped) {
            // Wanted off.
            (Some(d), true) if d.state != DomainState::Shutoff => {
                let _ = std::fs::remove_file(self.marker(&id));
                match memory.stopping.get(&id) {
                    None => match hv.request_shutdown(&spec.domain_name()) {
                        Ok(()) => {
                            tracing::info!(instance = %id, "stopping: ACPI shutdown requested");
                            memory
                                .stopping
                                .insert(id.clone(), (now + self.stop_grace, now + ACPI_RETRY));
                            *next = (*next).min(STOPPING_POLL);
                            (pb::ObservedState::Running, "stopping".to_owned())
                        }
                        Err(e) => {
                            *all_ok = false;
                            (pb::ObservedState::Running, e.to_string())
                        }
                    },
                    Some((deadline, ask_again)) if now < *deadline => {
                        if now >= *ask_again {
                            let again = hv.request_shutdown(&spec.domain_name());
                            tracing::info!(instance = %id, ok = again.is_ok(), "stopping: ACPI shutdown requested again");
                            let deadline = *deadline;
                            memory
                                .stopping
                                .insert(id.clone(), (deadline, now + ACPI_RETRY));
                        }
                        *next = (*next).min(STOPPING_POLL);
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
                            *all_ok = false;
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
                        .complete(spec, want, memory)
                        .and_then(|()| hv.define(spec).map_err(InstanceError::from))
                    {
                        Ok(()) if resize => {
                            tracing::info!(instance = %id, vcpus = spec.vcpus, memory_mib = spec.memory_mib, "resized while stopped");
                            (pb::ObservedState::Stopped, "resized".to_owned())
                        }
                        Ok(()) => (pb::ObservedState::Stopped, String::new()),
                        Err(reason) => {
                            *all_ok = false;
                            (pb::ObservedState::Failed, reason.to_string())
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
                    .complete(spec, want, memory)
                    .and_then(|()| self.gpus_ready(spec, memory))
                    .and_then(|()| hv.ensure_running(spec).map_err(InstanceError::from))
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
                        *all_ok = false;
                        tracing::warn!(instance = %id, reason = %vmcloud_proto::ErrorChain(&reason), "instance could not be started");
                        (pb::ObservedState::Failed, reason.to_string())
                    }
                }
            }
        }
    }

    /// Fills the spec's files, NIC and NUMA placement, making what is missing. Errors are the
    /// reason the instance cannot run here.
    pub(super) fn complete(
        &self,
        spec: &mut DomainSpec,
        want: &pb::DesiredInstance,
        memory: &mut Memory,
    ) -> Result<(), InstanceError> {
        for dev in &spec.hostdevs {
            let addr = dev.gpu().to_string();
            if !self.gpus.contains_key(&addr) {
                let mut have: Vec<&String> = self.gpus.keys().collect();
                have.sort();
                return Err(InstanceError::GpuNotHere {
                    gpu: addr,
                    have: if have.is_empty() {
                        "no GPUs".to_owned()
                    } else {
                        have.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                });
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
            Err(e) => return Err(e.into()),
        };
        let files = self
            .images
            .prepare(&spec.instance_id, image.as_ref(), want.disk_gib)?;
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
            self.attach_nic(spec, nic, memory)?;
        }
        Ok(())
    }

    pub(super) fn marker(&self, id: &InstanceId) -> std::path::PathBuf {
        self.images.instance_dir(id).join(GUEST_STOPPED)
    }
}
