//! Each node's desired config, derived from the state.

use vmcloud_proto::NodeId;
use vmcloud_proto::pb;

use crate::instances::types::InstanceState;
use crate::state::ClusterState;

impl ClusterState {
    /// What should run on `node`: every instance placed there that is not being deleted.
    pub fn desired_config(&self, node: &NodeId) -> Option<pb::DesiredConfig> {
        let n = self.nodes.get(node)?;
        let on_node = self.index.usage.get(node).map(|u| &u.instances);
        let instances = on_node
            .into_iter()
            .flatten()
            .filter_map(|id| self.instances.get(id))
            .filter(|i| i.node.as_ref() == Some(node) && i.state != InstanceState::Deleting)
            .map(|i| pb::DesiredInstance {
                instance_id: i.id.to_string(),
                name: i.name.clone(),
                vcpus: i.vcpus,
                memory_mib: i.memory_mib,
                disk_gib: i.disk_gib,
                image: i.image.clone(),
                gpus: i.gpus.iter().map(ToString::to_string).collect(),
                terminate_at_unix_ms: i.terminate_at_ms.unwrap_or(0),
                hostname: i.name.clone(),
                availability_zone: i.region.clone(),
                user_data: i.user_data.clone().unwrap_or_default(),
                ssh_keys: i.ssh_keys.clone(),
                nic: i.nic.as_ref().map(|n| {
                    let f = self.firewall_of_instance(i);
                    pb::DesiredNic {
                        vni: n.vni,
                        mac: n.mac.clone(),
                        mtu: crate::networks::types::TENANT_MTU,
                        ipv4: n.cidr(),
                        filtered: f.filtered,
                        outbound_restricted: f.outbound_restricted,
                        inbound: f.inbound,
                        outbound: f.outbound,
                        ipv6: i.ipv6.map(|a| format!("{a}/64")).unwrap_or_default(),
                        public_ipv4s: self
                            .public_ipv4s_of(i)
                            .iter()
                            .map(ToString::to_string)
                            .collect(),
                    }
                }),
                // Stopped while its organisation is suspended for unpaid invoices
                // (owner-driven stop/start is not in the scheduler's model yet).
                stopped: self.suspended(&i.project).is_some(),
            })
            .collect::<Vec<_>>();
        let networks = self.vxlan_peers(
            node,
            on_node
                .into_iter()
                .flatten()
                .filter_map(|id| self.instances.get(id)?.nic.as_ref())
                .map(|nic| nic.network.as_str()),
        );
        Some(pb::DesiredConfig {
            generation: n.generation,
            instances,
            networks,
            ..Default::default()
        })
    }
}
