//! Applying a job submission: its members, created together.

use vmcloud_proto::pb;
use vmcloud_proto::{InstanceId, ProjectId};

use crate::state::{Applied, ApplyResult, ClusterState, Rejected};

impl ClusterState {
    /// Creates every member of an AI batch job at once.
    pub(crate) fn create_job(&mut self, c: pb::CreateJob, at: i64) -> ApplyResult {
        let first = c
            .members
            .first()
            .ok_or_else(|| Rejected::Invalid("a job has at least one member".into()))?;
        let project = first.project_id.clone();
        let valid = c.members.iter().all(|m| {
            m.job.is_some()
                && m.session.is_none()
                && m.market() == first.market()
                && m.reservation_id == first.reservation_id
                && m.project_id == project
                && InstanceId::parse(&m.instance_id)
                    .is_ok_and(|id| !self.instances.contains_key(&id))
        });
        if !valid {
            return Err(Rejected::Invalid(
                "job members are new instances of one project, one market and one reservation"
                    .into(),
            ));
        }
        // All members or none: what was created before a refusal is taken back (the default
        // network too, when the first member made it).
        let default_network = ProjectId::parse(&project)
            .map(|p| crate::networks::types::default_network_id(&p, &first.region))
            .ok()
            .filter(|id| !self.networks.contains_key(id));
        let mut first_created = None;
        let mut created: Vec<InstanceId> = Vec::with_capacity(c.members.len());
        for m in c.members {
            match self.create_instance(m, at) {
                Ok(Applied::Instance(i)) => {
                    created.push(i.id.clone());
                    first_created.get_or_insert(i);
                }
                Ok(_) => {}
                Err(e) => {
                    for id in created {
                        if let Some(i) = self.instances.remove(&id) {
                            self.index.pending.remove(&(i.created_at_ms, id));
                            self.release_slot(&i);
                            self.forget(&i);
                        }
                    }
                    if let Some(id) = default_network
                        && self
                            .networks
                            .get(&id)
                            .is_some_and(|n| n.addresses.is_empty())
                    {
                        self.networks.remove(&id);
                    }
                    return Err(e);
                }
            }
        }
        Ok(Applied::Instance(
            first_created.expect("one member at least"),
        ))
    }
}
