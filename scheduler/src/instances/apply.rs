//! Applying instance commands: create, delete, and what agents observe.

use std::sync::Arc;

use vmcloud_proto::pb;
use vmcloud_proto::{InstanceId, JobId, NodeId, ProjectId, ReservationId};

use crate::history::types::HistoryRecord;
use crate::instances::types::{
    DEFAULT_PREEMPTION_NOTICE_S, GpuRequest, Instance, InstanceSpec, InstanceState, Market,
    WAITING_FOR_PLACEMENT,
};
use crate::jobs::types::JobSpec;
use crate::nodes::types::Node;
use crate::sessions::types::SessionSpec;
use crate::state::Epoch;
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};

impl ClusterState {
    pub(crate) fn create_instance(&mut self, mut c: pb::CreateInstance, at: i64) -> ApplyResult {
        let id = InstanceId::parse(&c.instance_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        let project =
            ProjectId::parse(&c.project_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        // The state's own copy of the id: every instance of the project shares it.
        let Some((project, _)) = self.projects.get_key_value(&project) else {
            return Err(Rejected::NotFound(format!("project {project}")));
        };
        let project = project.clone();
        // A launch that takes a warm VM names it (see `crate::gaming::warm`).
        let claim = c.session.as_ref().is_some_and(|s| s.claim_warm);
        if claim {
            let taken = self.instances.get(&id).is_none_or(|i| !i.is_warm());
            if taken || c.market() != pb::Market::OnDemand || c.vnis.is_some() {
                return Err(Rejected::Conflict(format!(
                    "warm VM {id} was taken by another launch; launch again"
                )));
            }
        } else if self.instances.contains_key(&id) {
            return Err(Rejected::Exists(format!("instance {id}")));
        }
        self.check_suspended(&project)?;
        // A household profile's game session is bounded by its plan's fair use (the free plan
        // included), not by the trial's limits.
        if c.session.as_ref().is_none_or(|s| s.profile_id.is_empty()) {
            self.check_trial(&project, !c.gpu_model.is_empty())?;
        }
        // What the NIC is planned from (the rest of `c` is taken apart below).
        let c_nic = pb::CreateInstance {
            network_id: std::mem::take(&mut c.network_id),
            private_ipv4: std::mem::take(&mut c.private_ipv4),
            vnis: c.vnis.take(),
            region: c.region.clone(),
            public_ipv4: c.public_ipv4,
            public_pool: std::mem::take(&mut c.public_pool),
            ..Default::default()
        };
        if let Err(refused) = self.check_quota(
            &project,
            &c.region,
            c.vcpus,
            c.memory_mib,
            &c.gpu_model,
            c.gpu_count,
        ) {
            self.emit_webhook(
                &project,
                "quota.refused",
                serde_json::json!({"project": project.to_string(), "region": c.region,
                    "flavor": c.flavor, "detail": refused.to_string()}),
            );
            return Err(refused);
        }
        let market = c.market();
        // A household profile's launch, judged by its rules below (invariant 15).
        let launch = c.session.clone().filter(|s| !s.profile_id.is_empty());
        let token = c
            .session
            .as_ref()
            .filter(|s| !s.stream_token_sha256.is_empty())
            .map(|s| crate::sessions::types::StreamToken {
                sha256: s.stream_token_sha256.clone(),
                expires_at_ms: s.stream_token_expires_at_unix_ms,
                used_at_ms: None,
                guest: false,
            });
        let instance = Instance {
            state: InstanceState::Pending,
            pending_reason: Some(WAITING_FOR_PLACEMENT.into()),
            market: market.into(),
            pool: (!c.pool.is_empty()).then_some(c.pool),
            node_selector: c.node_selector.into_iter().collect(),
            spread_group: (!c.spread_group.is_empty()).then_some(c.spread_group),
            preemption_notice_s: if c.preemption_notice_s == 0 {
                DEFAULT_PREEMPTION_NOTICE_S
            } else {
                c.preemption_notice_s
            },
            user_data: (!c.user_data.is_empty()).then_some(c.user_data),
            ssh_keys: c.ssh_keys,
            reservation: ReservationId::parse(&c.reservation_id).ok(),
            job: c.job.as_ref().and_then(|j| {
                Some(JobSpec {
                    id: JobId::parse(&j.job_id).ok()?,
                    priority: j.priority().into(),
                    max_runtime_s: j.max_runtime_s,
                    gang_size: j.gang_size.max(1),
                    member: j.member,
                })
            }),
            session: c.session.as_ref().map(|s| SessionSpec {
                tier: s.tier().into(),
                title: s.title.clone(),
                rtt_ms: (s.rtt_ms > 0).then_some(s.rtt_ms),
                profile: (!s.profile_id.is_empty()).then(|| s.profile_id.clone()),
                max_length_s: None,
                stream_tokens: Vec::new(),
                share: Default::default(),
                site: None,
            }),
            ..Instance::pending(
                id.clone(),
                project,
                InstanceSpec {
                    name: c.name,
                    flavor: c.flavor,
                    image: c.image,
                    region: c.region,
                    vcpus: c.vcpus,
                    memory_mib: c.memory_mib,
                    disk_gib: c.disk_gib,
                    gpu: (c.gpu_count > 0).then_some(GpuRequest {
                        model: c.gpu_model,
                        count: c.gpu_count,
                        mig_profile: (!c.gpu_mig_profile.is_empty()).then_some(c.gpu_mig_profile),
                    }),
                },
                at,
            )
        };
        if instance.session.is_some() {
            if instance.job.is_some() {
                return Err(Rejected::Invalid(
                    "a game session is an instance, not a job member".into(),
                ));
            }
            // Invariant 7: one session per project at a time (per profile in a household).
            let profile = instance.session.as_ref().and_then(|s| s.profile.clone());
            if let Some(other) = self.live_session(&instance.project, profile.as_deref()) {
                return Err(Rejected::Conflict(format!(
                    "{} already has session {} ({}); end it before launching another",
                    match &profile {
                        Some(p) => format!("profile {p}"),
                        None => format!("project {}", instance.project),
                    },
                    other.id,
                    if other.state == InstanceState::Deleting {
                        "still ending; try again in a moment"
                    } else {
                        other.state.as_str()
                    }
                )));
            }
            if let Some((host, g)) = profile
                .as_deref()
                .and_then(|p| self.guest_in(&instance.project, p, at))
            {
                return Err(Rejected::Conflict(format!(
                    "{} plays along in a friend's session {} until {}: leave it before launching",
                    g.name,
                    host.id,
                    crate::clock::rfc3339(g.until_ms)
                )));
            }
        }
        let nic = self.plan_nic(&c_nic, &instance.project, at)?;
        let public = match (c_nic.public_ipv4, &nic) {
            (false, _) => None,
            (true, None) => {
                return Err(Rejected::Invalid(
                    "`public_ipv4` needs a NIC on a private network to route the address to".into(),
                ));
            }
            (true, Some(_)) => Some(self.free_public_ipv4(&c_nic.region, &c_nic.public_pool)?),
        };
        if instance.market == Market::Reserved {
            self.admit_reserved(&instance, at)?;
        }
        let mut instance = instance;
        // A warm VM taken meanwhile (or not of this launch's class) is refused before the
        // household's check below uses anything up.
        if claim
            && !self.warm_ready(
                &instance.id,
                &crate::gaming::pools::WarmClass::of(&instance),
            )
        {
            return Err(Rejected::Conflict(format!(
                "warm VM {} was taken by another launch; launch again",
                instance.id
            )));
        }
        // Last of the checks: it uses up a parent's unlock when it passes.
        if let Some(launch) = &launch {
            let (cap_ms, site) = self.admit_launch(&instance.project, launch, at)?;
            if let Some(s) = instance.session.as_mut() {
                s.max_length_s = Some(u32::try_from(cap_ms / 1000).unwrap_or(u32::MAX).max(1));
                s.site = site;
            }
        }
        if claim {
            return self.claim_warm(instance, token, at, true);
        }
        if instance.session.is_some() {
            self.record_launch(&crate::gaming::pools::WarmClass::of(&instance), false, at);
        }
        if let Some(plan) = nic {
            self.commit_nic(plan, &mut instance);
        }
        if let Some(address) = public {
            self.public_ips.insert(
                address,
                crate::public_ips::types::Holder {
                    project: instance.project.clone(),
                    region: instance.region.clone(),
                    by: instance.id.to_string(),
                    reverse_dns: None,
                    since_ms: at,
                },
            );
            instance.public_ipv4 = Some(std::net::Ipv4Addr::from(address));
        }
        self.admit_pending(instance.clone());
        // A launch that came just as a warm VM of its class booted (the API saw none) takes
        // it now, or the launch before it in the queue does.
        if instance.session.is_some() && !instance.is_warm() {
            let class = crate::gaming::pools::WarmClass::of(&instance);
            let ready = self.ready_warm(&class).next().cloned();
            if let Some(w) = ready {
                self.hand_warm_to_queue(&w, at);
            }
        }
        Ok(Applied::Instance(Box::new(instance)))
    }

    /// Adds a new pending instance to the state and its indexes.
    pub(crate) fn admit_pending(&mut self, instance: Instance) {
        self.index
            .pending
            .insert((instance.created_at_ms, instance.id.clone()));
        self.index_owner(&instance);
        self.instances
            .insert(instance.id.clone(), Arc::new(instance));
    }

    /// Indexes an instance under its project: the project's list, its quota use, its session.
    pub(crate) fn index_owner(&mut self, instance: &Instance) {
        if let Some(s) = &instance.session {
            self.index.sessions.insert(
                (instance.project.clone(), s.profile.clone()),
                instance.id.clone(),
            );
        }
        self.index
            .per_project
            .entry(instance.project.clone())
            .or_default()
            .insert((instance.created_at_ms, instance.id.clone()));
        self.index
            .quota_used
            .entry((instance.project.clone(), instance.region.clone()))
            .or_default()
            .add(instance);
    }

    pub(crate) fn delete_instance(&mut self, c: pb::DeleteInstance, at: i64) -> ApplyResult {
        let id = InstanceId::parse(&c.instance_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        let instance = self
            .instances
            .get_mut(&id)
            .map(Arc::make_mut)
            .filter(|i| i.project.as_str() == c.project_id)
            .ok_or_else(|| Rejected::NotFound(format!("instance {id}")))?;
        match (&instance.node, instance.state) {
            (_, InstanceState::Deleting) => {}
            (None, _) => {
                let removed = self.instances.remove(&id).expect("found above");
                self.index
                    .pending
                    .remove(&(removed.created_at_ms, removed.id.clone()));
                self.release_slot(&removed);
                self.capacity_epoch += 1;
                self.forget(&removed);
                self.record_ended(&removed, "deleted before it was placed");
                return Ok(Applied::Instance(Box::new(Instance::clone(&removed))));
            }
            (Some(_), _) => Self::begin_delete(
                &mut self.nodes,
                &mut self.generation_epoch,
                Meter::of(&mut self.billing, &mut self.gaming, &self.projects),
                instance,
                at,
            ),
        }
        Ok(Applied::Instance(Box::new(Instance::clone(
            &self.instances[&id],
        ))))
    }

    /// Status from a node's agent. Only instances placed on that node are touched: an agent
    /// speaks for its own node only.
    pub(crate) fn observe_instances(&mut self, c: pb::ObserveInstances, at: i64) -> ApplyResult {
        let node = NodeId::parse(&c.node_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        // State changes the projects' webhooks hear of, once the loop lets go of the state.
        let mut changed: Vec<(ProjectId, serde_json::Value)> = Vec::new();
        // Requeued job members left this host: its networks' other hosts may need new peers.
        let mut left: Vec<String> = Vec::new();
        // Warm VMs that booted (or broke): the pool's index and boot time follow.
        let mut warm_changed: Vec<InstanceId> = Vec::new();
        for status in c.instances {
            let Ok(id) = InstanceId::parse(&status.instance_id) else {
                continue;
            };
            let Some(instance) = self.instances.get_mut(&id).map(Arc::make_mut) else {
                continue;
            };
            if instance.node.as_ref() != Some(&node) {
                continue;
            }
            let observed = status.state();
            let message = (!status.message.is_empty()).then_some(status.message);
            let before = instance.state;
            match (observed, instance.state) {
                (pb::ObservedState::Absent, InstanceState::Deleting) => {
                    if let Some(u) = self.index.usage.get_mut(&node).map(Arc::make_mut) {
                        u.remove(instance);
                    }
                    if let Some(d) = instance.terminate_at_ms {
                        self.index.terminating.remove(&(d, id.clone()));
                    }
                    self.capacity_epoch += 1;
                    if instance.requeue_when_gone {
                        // A reclaimed spot job member waits in the queue again, in the place
                        // its submission gave it (its job starts when all members are back).
                        instance.state = InstanceState::Pending;
                        instance.node = None;
                        instance.ipv6 = None;
                        if let Some(nic) = &instance.nic {
                            left.push(nic.network.clone());
                        }
                        instance.gpus.clear();
                        instance.placed_at_ms = None;
                        crate::billing::meters::stop_instance(
                            &mut self.billing.usage,
                            &mut self.gaming.played,
                            &self.projects,
                            instance,
                            at,
                        );
                        instance.running_at_ms = None;
                        instance.terminate_at_ms = None;
                        instance.reclaimed_at_ms = None;
                        instance.requeue_when_gone = false;
                        instance.deleted_in_generation = None;
                        instance.status_message = None;
                        instance.pending_reason = Some(
                            "requeued: its spot capacity was reclaimed; the job starts again when its members fit".into(),
                        );
                        self.index
                            .pending
                            .insert((instance.created_at_ms, id.clone()));
                        continue;
                    }
                    if let Some(removed) = self.instances.remove(&id) {
                        self.release_slot(&removed);
                        let reason = if removed.reclaimed_at_ms.is_some() {
                            "its spot capacity was reclaimed"
                        } else {
                            "deleted"
                        };
                        self.forget(&removed);
                        self.record_ended(&removed, reason);
                    }
                    continue;
                }
                (_, InstanceState::Deleting) | (pb::ObservedState::Absent, _) => {}
                (pb::ObservedState::Running, _) => {
                    instance.state = InstanceState::Running;
                    instance.running_at_ms.get_or_insert(at);
                    instance.status_message = message;
                }
                (pb::ObservedState::Stopped, _) => {
                    instance.state = InstanceState::Stopped;
                    instance.status_message = message;
                }
                (pb::ObservedState::Failed, _) => {
                    instance.state = InstanceState::Failed;
                    instance.status_message = message;
                }
                (pb::ObservedState::Unspecified, _) => {}
            }
            if instance.state != before && instance.is_warm() {
                warm_changed.push(id.clone());
            }
            if instance.state != before
                && matches!(
                    instance.state,
                    InstanceState::Running | InstanceState::Stopped | InstanceState::Failed
                )
            {
                changed.push((instance.project.clone(), instance_event(instance)));
            }
        }
        for network in left {
            self.network_hosts_changed(&network, &node);
        }
        for id in warm_changed {
            self.warm_observed(&id);
            self.hand_warm_to_queue(&id, at);
        }
        for (project, data) in changed {
            self.emit_webhook(&project, "instance.state_changed", data);
        }
        Ok(Applied::Done)
    }

    /// Takes back a placement made earlier in the same command (a gang that did not fit
    /// whole): the instance is pending again and holds nothing.
    pub(crate) fn unplace(&mut self, id: &InstanceId) {
        let Some(instance) = self.instances.get_mut(id).map(Arc::make_mut) else {
            return;
        };
        if let Some(u) = instance
            .node
            .as_ref()
            .and_then(|n| self.index.usage.get_mut(n).map(Arc::make_mut))
        {
            u.remove(instance);
        }
        if let Some(d) = instance.terminate_at_ms.take() {
            self.index.terminating.remove(&(d, id.clone()));
        }
        crate::billing::meters::stop_instance(
            &mut self.billing.usage,
            &mut self.gaming.played,
            &self.projects,
            instance,
            self.now_ms,
        );
        instance.reclaimed_at_ms = None;
        instance.requeue_when_gone = false;
        instance.gpus.clear();
        instance.node = None;
        instance.ipv6 = None;
        instance.placed_at_ms = None;
        instance.state = InstanceState::Pending;
        instance.pending_reason =
            Some("another member of its job no longer fits; planned again".into());
        self.index
            .pending
            .insert((instance.created_at_ms, id.clone()));
    }

    /// Takes an instance that holds capacity out of its node's desired config; it is removed
    /// when its agent reports it gone.
    /// Moves an instance that is gone into history (the log index and time of the entry
    /// being applied).
    pub(crate) fn record_ended(&mut self, instance: &Instance, reason: &str) {
        let mut data = instance_event(instance);
        data["state"] = "deleted".into();
        data["reason"] = reason.into();
        self.emit_webhook(&instance.project, "instance.state_changed", data);
        if instance.session.is_some() {
            self.emit_webhook(
                &instance.project,
                "session.ended",
                serde_json::json!({"session": instance.id.to_string(),
                    "project": instance.project.to_string(), "reason": reason}),
            );
        }
        // A job ends with its last member.
        if let Some(job) = &instance.job {
            let members_left = self
                .index
                .per_project
                .get(&instance.project)
                .into_iter()
                .flatten()
                .filter_map(|(_, id)| self.instances.get(id))
                .any(|i| i.job.as_ref().is_some_and(|j| j.id == job.id));
            if !members_left {
                self.emit_webhook(
                    &instance.project,
                    "job.ended",
                    serde_json::json!({"job": job.id.to_string(),
                        "project": instance.project.to_string(), "reason": reason}),
                );
            }
        }
        self.history.push(
            self.applied_index,
            HistoryRecord::InstanceEnded {
                instance: Box::new(instance.clone()),
                ended_at_ms: self.now_ms,
                reason: reason.to_owned(),
            },
        );
    }

    /// Starts an instance's delete (its agent removes it; it is gone when the agent says so)
    /// and stops its meter at `at`: nothing is billed after the delete is committed.
    pub(crate) fn begin_delete(
        nodes: &mut imbl::OrdMap<NodeId, Arc<Node>>,
        generation_epoch: &mut Epoch,
        meter: Meter<'_>,
        instance: &mut Instance,
        at: i64,
    ) {
        crate::billing::meters::stop_instance(
            meter.usage,
            meter.played,
            meter.projects,
            instance,
            at,
        );
        if let Some(node) = instance.node.clone() {
            crate::billing::sla::close_outage(meter.incidents, meter.projects, &node, instance, at);
        }
        instance.state = InstanceState::Deleting;
        if let Some(node) = instance
            .node
            .as_ref()
            .and_then(|n| nodes.get_mut(n).map(Arc::make_mut))
        {
            node.generation += 1;
            generation_epoch.bump(&node.id);
            instance.deleted_in_generation = Some(node.generation);
        }
    }
}

/// What a webhook says of an instance.
fn instance_event(i: &Instance) -> serde_json::Value {
    serde_json::json!({
        "instance": i.id.to_string(),
        "project": i.project.to_string(),
        "name": i.name,
        "region": i.region,
        "state": i.state,
        "node": i.node.as_ref().map(ToString::to_string),
        "message": i.status_message,
        "job": i.job.as_ref().map(|j| j.id.to_string()),
        "session": i.session.is_some(),
    })
}

/// What stopping a meter writes to: the billing book's usage and the projects (to find the
/// organisation), borrowed beside the instance being changed.
pub(crate) struct Meter<'a> {
    pub usage: &'a mut imbl::OrdMap<
        vmcloud_proto::OrgId,
        imbl::Vector<crate::billing::types::UsageInterval>,
    >,
    pub incidents: &'a mut imbl::OrdMap<vmcloud_proto::OrgId, Vec<crate::billing::sla::Incident>>,
    /// Household sessions' playtime.
    pub played:
        &'a mut imbl::OrdMap<vmcloud_proto::OrgId, imbl::Vector<crate::gaming::types::Played>>,
    pub projects: &'a imbl::OrdMap<ProjectId, crate::tenancy::types::Project>,
}

impl<'a> Meter<'a> {
    pub(crate) fn of(
        billing: &'a mut crate::billing::types::BillingBook,
        gaming: &'a mut crate::gaming::types::GamingBook,
        projects: &'a imbl::OrdMap<ProjectId, crate::tenancy::types::Project>,
    ) -> Meter<'a> {
        Meter {
            usage: &mut billing.usage,
            incidents: &mut billing.incidents,
            played: &mut gaming.played,
            projects,
        }
    }
}
