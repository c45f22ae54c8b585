//! Applying spot reclamation: preemptions with notice, reclaimed instances and jobs.

use std::sync::Arc;

use vmcloud_proto::pb;
use vmcloud_proto::{InstanceId, JobId, NodeId};

use crate::instances::types::Instance;
use crate::instances::types::{InstanceState, Market};
use crate::state::{Applied, ApplyResult, ClusterState};
use std::collections::BTreeMap;

impl ClusterState {
    /// Gives spot instances their notice so that waiting workloads can take their capacity;
    /// each waiting workload is nominated to its victims' node.
    pub(crate) fn preempt(&mut self, preemptions: Vec<pb::Preemption>, at: i64) {
        let mut victims_for: BTreeMap<InstanceId, (NodeId, u32, i64)> = BTreeMap::new();
        for p in preemptions {
            let (Ok(victim_id), Ok(for_id)) = (
                InstanceId::parse(&p.instance_id),
                InstanceId::parse(&p.for_instance_id),
            ) else {
                continue;
            };
            let waiting = self
                .instances
                .get(&for_id)
                .is_some_and(|i| i.state == InstanceState::Pending && i.market != Market::Spot);
            let Some(victim) = self.instances.get_mut(&victim_id).map(Arc::make_mut) else {
                continue;
            };
            if !waiting || !victim.preemptible() {
                continue;
            }
            let node_id = victim
                .node
                .clone()
                .expect("preemptible instances are placed");
            let notice = victim.preemption_notice_s;
            let job = victim.job.as_ref().map(|j| j.id.clone());
            let deadline = Self::give_notice(
                &mut self.index.terminating,
                &mut self.webhook_pending,
                victim,
                at + i64::from(notice) * 1000,
                at,
            );
            victim.notify(
                at,
                format!(
                    "spot capacity reclaimed: this {} stops at {} ({notice} s notice)",
                    victim.kind(),
                    crate::clock::rfc3339(deadline),
                ),
            );
            if let Some(node) = self.nodes.get_mut(&node_id).map(Arc::make_mut) {
                node.generation += 1;
                self.generation_epoch.bump(&node_id);
            }
            // A job runs all together or not at all: its other members stop with it.
            if let Some(job) = job {
                self.reclaim_job(&job, deadline, at);
            }
            let e = victims_for.entry(for_id).or_insert((node_id, 0, deadline));
            e.1 += 1;
            e.2 = e.2.max(deadline);
        }
        for (id, (node, count, until)) in victims_for {
            let instance = self
                .instances
                .get_mut(&id)
                .map(Arc::make_mut)
                .expect("checked above");
            instance.pending_reason = Some(format!(
                "waiting for {count} spot instance(s) on {node} to stop (notice ends {})",
                crate::clock::rfc3339(until)
            ));
            instance.nominated_node = Some(node);
        }
    }

    /// Gives a spot instance its notice: it stops at `until`, or at its own end when that
    /// comes first. Returns when it stops.
    /// The instance's project hears of it (`instance.spot_notice`).
    pub(crate) fn give_notice(
        terminating: &mut imbl::OrdSet<(i64, InstanceId)>,
        events: &mut crate::webhooks::types::PendingEvents,
        instance: &mut Instance,
        until: i64,
        at: i64,
    ) -> i64 {
        instance.reclaimed_at_ms = Some(at);
        let stops = match instance.terminate_at_ms {
            Some(end) if end <= until => end,
            end => {
                if let Some(end) = end {
                    terminating.remove(&(end, instance.id.clone()));
                }
                instance.terminate_at_ms = Some(until);
                terminating.insert((until, instance.id.clone()));
                until
            }
        };
        events.0.push((
            instance.project.clone(),
            "instance.spot_notice",
            serde_json::json!({
                "instance": instance.id.to_string(),
                "project": instance.project.to_string(),
                "name": instance.name,
                "region": instance.region,
                "stops_at": crate::clock::rfc3339(stops),
                "job": instance.job.as_ref().map(|j| j.id.to_string()),
            }),
        ));
        stops
    }

    /// The members of a spot job that are still running get the same deadline as the one
    /// preempted.
    pub(crate) fn reclaim_job(&mut self, job: &JobId, until: i64, at: i64) {
        let members: Vec<InstanceId> = self
            .instances
            .values()
            .filter(|i| i.job.as_ref().is_some_and(|j| &j.id == job) && i.preemptible())
            .map(|i| i.id.clone())
            .collect();
        for m in members {
            let i = self
                .instances
                .get_mut(&m)
                .map(Arc::make_mut)
                .expect("listed above");
            let deadline = Self::give_notice(
                &mut self.index.terminating,
                &mut self.webhook_pending,
                i,
                until,
                at,
            );
            i.notify(
                at,
                format!(
                    "spot capacity reclaimed from job {job}: this member stops at {}",
                    crate::clock::rfc3339(deadline)
                ),
            );
            if let Some(node) = i
                .node
                .as_ref()
                .and_then(|n| self.nodes.get_mut(n).map(Arc::make_mut))
            {
                node.generation += 1;
                self.generation_epoch.bump(&node.id);
            }
        }
    }

    /// Stops spot instances whose notice has run out: they leave their node's desired config
    /// and their capacity is freed once the agent has removed them.
    pub(crate) fn reclaim_instances(&mut self, c: pb::ReclaimInstances, at: i64) -> ApplyResult {
        for id in c.instance_ids {
            let Ok(id) = InstanceId::parse(&id) else {
                continue;
            };
            let Some(instance) = self.instances.get_mut(&id).map(Arc::make_mut) else {
                continue;
            };
            if instance.terminate_at_ms.is_none_or(|d| d > at)
                || instance.state == InstanceState::Deleting
            {
                continue;
            }
            // Its own end (run time, session length) may come before a notice.
            let own_end = instance
                .time_limit_s()
                .zip(instance.placed_at_ms)
                .is_some_and(|(limit, placed)| placed + i64::from(limit) * 1000 <= at);
            let reclaimed = instance.reclaimed_at_ms.is_some() && !own_end;
            // (its status, what its owner is told)
            let (status, told) = if reclaimed && instance.job.is_some() {
                // Spot batch work goes back to the queue once its members are gone.
                instance.requeue_when_gone = true;
                let m = "reclaimed: its spot capacity was needed; the job is queued again once its members have stopped";
                (m.to_owned(), m.to_owned())
            } else if reclaimed && instance.session.is_some() {
                let m = "ended: its spot capacity was needed";
                (m.to_owned(), m.to_owned())
            } else if let Some(job) = &instance.job {
                let m = format!(
                    "stopped: job {} reached its maximum run time ({} s)",
                    job.id, job.max_runtime_s
                );
                (m.clone(), m)
            } else if let Some(s) = &instance.session {
                let m = match s.max_length_s {
                    Some(len) => format!(
                        "ended: this session's time ran out ({}: the plan's longest session, the household's hours left or a kid's minutes for today)",
                        crate::gaming::apply::hm(i64::from(len) * 1000)
                    ),
                    None => format!(
                        "ended: {} sessions last at most {} h",
                        s.tier.as_str(),
                        s.tier.max_length_s() / 3600
                    ),
                };
                (m.clone(), m)
            } else {
                (
                    "reclaimed: its spot capacity was needed".to_owned(),
                    "reclaimed: stopped at the end of its notice".to_owned(),
                )
            };
            instance.status_message = Some(status);
            instance.notify(at, told);
            Self::begin_delete(
                &mut self.nodes,
                &mut self.generation_epoch,
                crate::instances::apply::Meter::of(
                    &mut self.billing,
                    &mut self.gaming,
                    &self.projects,
                ),
                instance,
                at,
            );
        }
        Ok(Applied::Done)
    }
}
