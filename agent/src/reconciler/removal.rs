//! Managed domains that are no longer desired: destroyed, undefined, their files and route
//! removed.

use vmcloud_proto::{InstanceId, pb};

use super::{Host, Memory, status};
use crate::hypervisor::{DomainInfo, DomainState, domain_name};

impl Host {
    /// Removes a domain no desired instance owns; the status to report if that failed.
    pub(super) fn remove(
        &self,
        id: &InstanceId,
        domain: &DomainInfo,
        memory: &mut Memory,
    ) -> Option<pb::InstanceStatus> {
        memory.last.remove(id);
        memory.stopping.remove(id);
        if let Some(ip) = memory.routes.remove(id)
            && let Err(e) = self.links.unroute_guest(ip.into())
        {
            tracing::warn!(instance = %id, %ip, error = %e, "the route to a removed guest could not be removed");
        }
        for ip in memory.public.remove(id).unwrap_or_default() {
            if let Err(e) = self.links.unroute_guest(ip) {
                tracing::warn!(instance = %id, %ip, error = %e, "the route to a removed guest's public address could not be removed");
            }
        }
        let name = domain_name(id);
        let removed = self
            .hv
            .destroy(&name)
            .map_err(|e| e.to_string())
            .and_then(|()| self.images.remove(id).map_err(|e| e.to_string()));
        match removed {
            Ok(()) => {
                tracing::info!(instance = %id, domain = name, "instance removed");
                None
            }
            Err(reason) => {
                tracing::warn!(instance = %id, %reason, "instance could not be removed");
                let state = match domain.state {
                    DomainState::Running => pb::ObservedState::Running,
                    _ => pb::ObservedState::Stopped,
                };
                Some(status(id, state, reason))
            }
        }
    }
}
