//! Spread groups: instances of one group never share a host and spread across racks.

use std::collections::{HashMap, HashSet};

use vmcloud_proto::{NodeId, ProjectId};

use crate::instances::types::Instance;
use crate::placement::fleet_index::FleetIndex;
use crate::state::ClusterState;

/// Where the instances of each (project, spread group) in this plan already are.
pub(crate) struct SpreadGroups<'s> {
    pub(crate) groups: HashMap<(&'s ProjectId, &'s str), Spread>,
}

/// One spread group: the hosts holding one of its instances (never a second) and how many
/// sit in each rack (fewest first).
#[derive(Debug, Default)]
pub struct Spread {
    pub name: String,
    pub hosts: HashSet<NodeId>,
    pub racks: HashMap<String, u32>,
}

impl<'s> SpreadGroups<'s> {
    pub(crate) fn new(state: &'s ClusterState, pending: &[&'s Instance]) -> Self {
        let mut groups: HashMap<(&ProjectId, &str), Spread> = pending
            .iter()
            .filter_map(|i| Some(((&i.project, i.spread_group.as_deref()?), i)))
            .map(|(k, i)| {
                (
                    k,
                    Spread {
                        name: i.spread_group.clone().unwrap_or_default(),
                        ..Spread::default()
                    },
                )
            })
            .collect();
        if !groups.is_empty() {
            for i in state.instances.values() {
                let (Some(g), Some(node)) = (i.spread_group.as_deref(), i.node.as_ref()) else {
                    continue;
                };
                if let Some(spread) = groups.get_mut(&(&i.project, g)) {
                    spread.hosts.insert(node.clone());
                    let rack = state.nodes.get(node).map(|n| n.rack.clone());
                    *spread.racks.entry(rack.unwrap_or_default()).or_default() += 1;
                }
            }
        }
        SpreadGroups { groups }
    }

    pub(crate) fn get(&self, i: &'s Instance) -> Option<&Spread> {
        self.groups.get(&(&i.project, i.spread_group.as_deref()?))
    }

    pub(crate) fn record(&mut self, i: &'s Instance, index: &FleetIndex<'_>, node: &NodeId) {
        let Some(g) = i.spread_group.as_deref() else {
            return;
        };
        if let Some(spread) = self.groups.get_mut(&(&i.project, g)) {
            spread.hosts.insert(node.clone());
            let rack = index
                .position(node)
                .map(|p| index.hosts[p].rack.clone())
                .unwrap_or_default();
            *spread.racks.entry(rack).or_default() += 1;
        }
    }
}
