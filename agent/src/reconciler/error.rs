//! Why one desired instance cannot run here. The status message its owner sees is the
//! error's `Display` (the wrapped errors already say which image, disk or domain).

use crate::hypervisor::HypervisorError;
use crate::images::ImageError;
use crate::scrub::ScrubError;
use crate::tenant_net::NetError;

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("GPU {gpu} is not on this host (it has {have})")]
    GpuNotHere { gpu: String, have: String },
    #[error("GPU {gpu} is unhealthy: {reason}")]
    GpuUnhealthy { gpu: String, reason: String },
    #[error("GPU {gpu} failed its scrub or health check: {reason}")]
    GpuFailedScrub { gpu: String, reason: String },
    #[error("GPU {gpu} cannot be scrubbed before it goes to a new tenant: {source}")]
    GpuScrubUnavailable {
        gpu: String,
        #[source]
        source: ScrubError,
    },
    #[error("guest address {value:?} is not IPv4 with a prefix (\"10.42.0.5/24\")")]
    GuestAddress { value: String },
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The tenant network `vni` could not be made here (the error says why).
    #[error("{error}")]
    Network { vni: u32, error: NetError },
    /// The guest's address could not be routed to its bridge.
    #[error("{error}")]
    Route {
        ip: std::net::Ipv4Addr,
        error: NetError,
    },
    #[error(transparent)]
    Hypervisor(#[from] HypervisorError),
}
