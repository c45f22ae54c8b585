//! `apply`'s side of quotas: the limits in force, the check on every create, operators'
//! changes and quota requests.

use vmcloud_proto::{ProjectId, pb};

use crate::quotas::types::{Limits, QuotaRequest, RequestState, Used, defaults};
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};

/// The most a project may ask for in one request, per limit (a typo guard, not a policy).
const MAX_REQUESTED: u64 = 1 << 32;

fn invalid(e: impl std::fmt::Display) -> Rejected {
    Rejected::Invalid(e.to_string())
}

impl ClusterState {
    /// The limits of `project` in `region`: its organisation kind's defaults with what
    /// operators set over them.
    pub fn quota_limits(&self, project: &ProjectId, region: &str) -> Limits {
        let base = self
            .projects
            .get(project)
            .and_then(|p| self.organisations.get(&p.org))
            .map_or_else(Limits::default, |o| defaults(o.kind, o.provider));
        match self.quotas.get(project).and_then(|r| r.get(region)) {
            Some(over) => base.overlaid(over),
            None => base,
        }
    }

    /// What `project` holds in `region` now.
    pub fn quota_used(&self, project: &ProjectId, region: &str) -> Used {
        let mut used = self
            .index
            .quota_used
            .get(&(project.clone(), region.to_owned()))
            .cloned()
            .unwrap_or_default();
        used.reservations = self
            .reservations
            .values()
            .filter(|r| r.project == *project && r.region == region)
            .count() as u32;
        used
    }

    /// Refuses a new workload that would take `project` past a limit in `region`.
    pub(crate) fn check_quota(
        &self,
        project: &ProjectId,
        region: &str,
        vcpus: u32,
        memory_mib: u64,
        gpu_model: &str,
        gpu_count: u32,
    ) -> Result<(), Rejected> {
        let limits = self.quota_limits(project, region);
        let used = self.quota_used(project, region);
        let by_model = used.gpus_by_model.get(gpu_model).copied().unwrap_or(0);
        let checks: [(&str, &str, u64, u64, Option<u64>); 5] = [
            (
                "instances",
                "instances",
                u64::from(used.instances),
                1,
                limits.instances.map(u64::from),
            ),
            (
                "vCPUs",
                "vcpus",
                u64::from(used.vcpus),
                u64::from(vcpus),
                limits.vcpus.map(u64::from),
            ),
            (
                "MiB of memory",
                "memory-mib",
                used.memory_mib,
                memory_mib,
                limits.memory_mib,
            ),
            (
                "GPUs",
                "gpus",
                u64::from(used.gpus),
                u64::from(gpu_count),
                limits.gpus.map(u64::from),
            ),
            (
                "GPUs of this model",
                "gpus",
                u64::from(by_model),
                u64::from(gpu_count),
                limits.gpus_by_model.get(gpu_model).map(|n| u64::from(*n)),
            ),
        ];
        for (what, flag, used, wanted, limit) in checks {
            if let Some(limit) = limit
                && wanted > 0
                && used + wanted > limit
            {
                let what = if what == "GPUs of this model" {
                    format!("{gpu_model} GPUs")
                } else {
                    what.to_owned()
                };
                return Err(Rejected::QuotaExceeded(format!(
                    "project {project} has a quota of {limit} {what} in {region} and uses {used}; this needs {wanted} more. Delete something, or ask for more: `vmcloud quota request --region {region} --{flag} {}` (POST /v1/quota-requests)",
                    (used + wanted).max(limit * 2)
                )));
            }
        }
        Ok(())
    }

    /// Refuses a reservation past the project's reservations quota in `region`.
    pub(crate) fn check_reservation_quota(
        &self,
        project: &ProjectId,
        region: &str,
    ) -> Result<(), Rejected> {
        let limit = self.quota_limits(project, region).reservations;
        let used = self.quota_used(project, region).reservations;
        match limit {
            Some(limit) if used >= limit => Err(Rejected::QuotaExceeded(format!(
                "project {project} has a quota of {limit} reservations in {region} and holds {used}. Ask for more: `vmcloud quota request --region {region} --reservations {}` (POST /v1/quota-requests)",
                (limit * 2).max(1)
            ))),
            _ => Ok(()),
        }
    }

    fn checked_limits(l: Option<&pb::QuotaLimits>) -> Result<Limits, Rejected> {
        let limits = l.map(Limits::from_pb).unwrap_or_default();
        let too_big = [
            limits.instances.map(u64::from),
            limits.vcpus.map(u64::from),
            limits.memory_mib,
            limits.gpus.map(u64::from),
            limits.reservations.map(u64::from),
        ]
        .into_iter()
        .flatten()
        .chain(limits.gpus_by_model.values().map(|n| u64::from(*n)))
        .any(|n| n > MAX_REQUESTED);
        if too_big {
            return Err(Rejected::Invalid("a quota limit is out of range".into()));
        }
        Ok(limits)
    }

    pub(crate) fn set_quota(&mut self, c: pb::SetQuota) -> ApplyResult {
        let project = ProjectId::parse(&c.project_id).map_err(invalid)?;
        if !self.projects.contains_key(&project) {
            return Err(Rejected::NotFound(format!("project {project}")));
        }
        if c.region.is_empty() {
            return Err(Rejected::Invalid("a quota is set for one region".into()));
        }
        let limits = Self::checked_limits(c.limits.as_ref())?;
        let old = self
            .quotas
            .get(&project)
            .and_then(|r| r.get(&c.region))
            .cloned();
        let merged = old
            .as_ref()
            .map_or_else(|| limits.clone(), |old| old.overlaid(&limits));
        // A partner's customer: within the partner's allowance.
        if let Some(partner) = self.partner_of_project(&project).map(str::to_owned) {
            let now = self.handed_out(&partner, self.now_ms);
            let before = old.unwrap_or_default();
            let after = crate::partners::licences::HandedOut {
                vcpus: now.vcpus - u64::from(before.vcpus.unwrap_or(0))
                    + u64::from(merged.vcpus.unwrap_or(0)),
                gpus: now.gpus - u64::from(before.gpus.unwrap_or(0))
                    + u64::from(merged.gpus.unwrap_or(0)),
                ..now
            };
            self.within_allowance(&partner, after)?;
        }
        self.quotas
            .entry(project.clone())
            .or_default()
            .insert(c.region, merged);
        Ok(Applied::Done)
    }

    pub(crate) fn request_quota(&mut self, c: pb::RequestQuota, at: i64) -> ApplyResult {
        let project = ProjectId::parse(&c.project_id).map_err(invalid)?;
        if !self.projects.contains_key(&project) {
            return Err(Rejected::NotFound(format!("project {project}")));
        }
        if self.quota_requests.contains_key(&c.request_id) {
            return Err(Rejected::Exists(format!("quota request {}", c.request_id)));
        }
        let wanted = Self::checked_limits(c.wanted.as_ref())?;
        if wanted.is_empty() {
            return Err(Rejected::Invalid(
                "a quota request names at least one limit it wants".into(),
            ));
        }
        self.quota_requests.insert(
            c.request_id.clone(),
            QuotaRequest {
                id: c.request_id,
                project,
                region: c.region,
                wanted,
                reason: c.reason,
                requested_by: c.requested_by,
                created_at_ms: at,
                state: RequestState::Open,
                decided_at_ms: None,
                note: String::new(),
            },
        );
        Ok(Applied::Done)
    }

    pub(crate) fn decide_quota_request(
        &mut self,
        c: pb::DecideQuotaRequest,
        at: i64,
    ) -> ApplyResult {
        let request = self
            .quota_requests
            .get(&c.request_id)
            .ok_or_else(|| Rejected::NotFound(format!("quota request {}", c.request_id)))?;
        if request.state != RequestState::Open {
            return Err(Rejected::Conflict(format!(
                "quota request {} was already {}",
                c.request_id,
                if request.state == RequestState::Approved {
                    "approved"
                } else {
                    "declined"
                }
            )));
        }
        let (project, region, wanted) = (
            request.project.clone(),
            request.region.clone(),
            request.wanted.clone(),
        );
        if c.approve && self.projects.contains_key(&project) {
            let regions = self.quotas.entry(project).or_default();
            let merged = regions
                .get(&region)
                .map_or_else(|| wanted.clone(), |old| old.overlaid(&wanted));
            regions.insert(region, merged);
        }
        let request = self
            .quota_requests
            .get_mut(&c.request_id)
            .expect("looked up above");
        request.state = if c.approve {
            RequestState::Approved
        } else {
            RequestState::Declined
        };
        request.decided_at_ms = Some(at);
        request.note = c.note;
        Ok(Applied::Done)
    }
}
