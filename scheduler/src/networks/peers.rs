//! Which hosts carry each tenant network, for VXLAN: a host floods a network's broadcast and
//! unknown traffic to the other hosts with instances on it. A host's desired config lists,
//! per network it carries, those hosts' underlay addresses; when a host starts or stops
//! carrying a network, the others' configs change (their generation grows).

use std::collections::{BTreeMap, BTreeSet};

use vmcloud_proto::{NodeId, pb};

use crate::state::ClusterState;

impl ClusterState {
    /// The hosts with instances of `network`, and how many each has.
    fn network_hosts(&self, network: &str) -> BTreeMap<&NodeId, usize> {
        let mut hosts = BTreeMap::new();
        if let Some(n) = self.networks.get(network) {
            for id in n.addresses.values() {
                if let Some(node) = self.instances.get(id).and_then(|i| i.node.as_ref()) {
                    *hosts.entry(node).or_default() += 1;
                }
            }
        }
        hosts
    }

    /// An instance of `network` came to or left `node`: when that made `node` start or stop
    /// carrying the network, every other host of the network gets a new desired config (its
    /// peers changed).
    pub(crate) fn network_hosts_changed(&mut self, network: &str, node: &NodeId) {
        let hosts = self.network_hosts(network);
        if hosts.get(node).copied().unwrap_or(0) > 1 {
            return;
        }
        let others: Vec<NodeId> = hosts.into_keys().filter(|n| *n != node).cloned().collect();
        for other in others {
            if let Some(n) = self.nodes.get_mut(&other) {
                std::sync::Arc::make_mut(n).generation += 1;
                self.generation_epoch.bump(&other);
            }
        }
    }

    /// For each network `node`'s instances are on: the other hosts' underlay addresses.
    pub fn vxlan_peers<'a>(
        &self,
        node: &NodeId,
        networks: impl Iterator<Item = &'a str>,
    ) -> Vec<pb::VxlanPeers> {
        let networks: BTreeSet<&str> = networks.collect();
        networks
            .into_iter()
            .filter_map(|net| {
                let vni = self.networks.get(net)?.vni;
                let peers: BTreeSet<String> = self
                    .network_hosts(net)
                    .into_keys()
                    .filter(|n| *n != node)
                    .filter_map(|n| self.nodes.get(n)?.underlay_ipv4)
                    .map(|ip| ip.to_string())
                    .collect();
                Some(pb::VxlanPeers {
                    vni,
                    peers: peers.into_iter().collect(),
                })
            })
            .collect()
    }
}
