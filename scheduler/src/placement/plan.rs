//! What placement returns: a plan of choices, preemptions and reasons.

use vmcloud_proto::pb;
use vmcloud_proto::{GpuBinding, InstanceId, NodeId};

/// One decision: the node and the GPUs (PCI addresses) to bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub node: NodeId,
    pub gpus: Vec<GpuBinding>,
}

/// Where each pending instance goes, or why it cannot go anywhere yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub placements: Vec<(InstanceId, Choice)>,
    pub unplaced: Vec<(InstanceId, String)>,
    /// (spot instance to preempt, the waiting instance it makes room for).
    pub preemptions: Vec<(InstanceId, InstanceId)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.placements.is_empty() && self.unplaced.is_empty() && self.preemptions.is_empty()
    }

    pub fn to_command(&self) -> pb::PlaceInstances {
        pb::PlaceInstances {
            placements: self
                .placements
                .iter()
                .map(|(i, c)| pb::Placement {
                    instance_id: i.to_string(),
                    node_id: c.node.to_string(),
                    gpus: c.gpus.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            unplaced: self
                .unplaced
                .iter()
                .map(|(i, r)| pb::Unplaced {
                    instance_id: i.to_string(),
                    reason: r.clone(),
                })
                .collect(),
            preemptions: self
                .preemptions
                .iter()
                .map(|(victim, for_instance)| pb::Preemption {
                    instance_id: victim.to_string(),
                    for_instance_id: for_instance.to_string(),
                })
                .collect(),
        }
    }
}

/// Most new instances one plan takes: planning holds the state's read lock, so a burst of
/// creates is planned in slices and the applier is never held up for long.
pub const MAX_NEW_PER_PLAN: usize = 4096;
