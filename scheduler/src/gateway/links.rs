//! Link bookkeeping: which agents are connected to this replica, what each reported last,
//! and the gateway's metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use vmcloud_proto::NodeId;
use vmcloud_proto::pb::{self};

/// What the leader knows about each connected agent.
#[derive(Debug, Clone)]
pub struct LinkInfo {
    /// Distinguishes a reconnect from the connection it replaces.
    pub connection: u64,
    pub connected_since: Instant,
    pub last_heartbeat: Instant,
    /// The desired-config generation the agent last reported it reconciled.
    pub acked_generation: Option<u64>,
    /// The host's latest telemetry summary (heartbeats).
    pub summary: Option<pb::HostSummary>,
    /// What the agent last said is wrong with the host, and GPUs it will not give out.
    pub conditions: Vec<pb::HostCondition>,
    pub unhealthy_gpus: Vec<pb::UnhealthyGpu>,
    /// Wakes the connection when the node's desired-config generation changes.
    pub(crate) wake: Arc<tokio::sync::Notify>,
    /// The node's generation when `wake` was last woken.
    pub(crate) generation_seen: u64,
}

/// Connected agents, by node. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct NodeLinks(
    pub(crate) Arc<Mutex<HashMap<NodeId, LinkInfo>>>,
    pub(crate) Arc<GatewayMetrics>,
    /// Whether this replica leads; changes only when the lead does.
    pub(crate) Arc<tokio::sync::watch::Sender<bool>>,
);

/// What the gateway exports on `/metrics`.
#[derive(Debug)]
pub struct GatewayMetrics {
    /// Agents registered on this replica's gateway now.
    pub connected_agents: prometheus_client::metrics::gauge::Gauge,
    /// From an agent sending a heartbeat (its clock) to this gateway handling it, seconds.
    pub heartbeat_delay_seconds: prometheus_client::metrics::histogram::Histogram,
    /// Agents sent to the leader because this replica does not lead.
    pub redirects: prometheus_client::metrics::counter::Counter,
    /// Desired configs sent whole, and as deltas on the one before.
    pub desired_whole: prometheus_client::metrics::counter::Counter,
    pub desired_deltas: prometheus_client::metrics::counter::Counter,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        GatewayMetrics {
            connected_agents: Default::default(),
            // 100 µs … ~3 s, buckets √2 apart.
            heartbeat_delay_seconds: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(
                    0.000_1,
                    std::f64::consts::SQRT_2,
                    30,
                ),
            ),
            redirects: Default::default(),
            desired_whole: Default::default(),
            desired_deltas: Default::default(),
        }
    }
}

impl GatewayMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "vmcloud_gateway_connected_agents",
            "Agents registered on this replica's gateway",
            self.connected_agents.clone(),
        );
        registry.register(
            "vmcloud_gateway_heartbeat_delay_seconds",
            "From an agent sending a heartbeat (its clock) to the gateway handling it",
            self.heartbeat_delay_seconds.clone(),
        );
        registry.register(
            "vmcloud_gateway_redirects",
            "Agents sent to the leader because this replica does not lead",
            self.redirects.clone(),
        );
        registry.register(
            "vmcloud_gateway_desired_configs_whole",
            "Desired configs sent whole",
            self.desired_whole.clone(),
        );
        registry.register(
            "vmcloud_gateway_desired_configs_delta",
            "Desired configs sent as a delta on the one before (large configs)",
            self.desired_deltas.clone(),
        );
    }
}

impl NodeLinks {
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.1
    }

    /// Agents connected now.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with each connected node and when it was last heard.
    pub fn heartbeats(&self, mut f: impl FnMut(&NodeId, Instant)) {
        for (node, link) in self.0.lock().unwrap().iter() {
            f(node, link.last_heartbeat);
        }
    }

    pub fn snapshot(&self) -> HashMap<NodeId, LinkInfo> {
        self.0.lock().unwrap().clone()
    }

    pub(crate) fn update(&self, node: &NodeId, f: impl FnOnce(&mut LinkInfo)) {
        if let Some(link) = self.0.lock().unwrap().get_mut(node) {
            f(link);
        }
    }
}
