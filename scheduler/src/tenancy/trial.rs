//! Trial limits: an organisation that signed up and has no payment method yet may not use
//! GPU flavors and may hold at most [`TRIAL_MAX_INSTANCES`] instances across its projects.
//! Checked in `apply` (so every path that creates instances — the API, jobs, sessions — is
//! held to it); billing lifts the flag when a payment method is added.

use vmcloud_proto::ProjectId;

use crate::state::{ClusterState, Rejected};
use crate::tenancy::types::TRIAL_MAX_INSTANCES;

impl ClusterState {
    /// Refuses a new instance of `project` that its organisation's trial does not allow.
    pub(crate) fn check_trial(&self, project: &ProjectId, gpu: bool) -> Result<(), Rejected> {
        let Some(org) = self
            .projects
            .get(project)
            .and_then(|p| self.organisations.get(&p.org))
            .filter(|o| o.trial)
        else {
            return Ok(());
        };
        if gpu {
            return Err(Rejected::TrialLimit(format!(
                "organisation {} is on a trial, which has no GPU flavors: add a payment method to use them",
                org.id
            )));
        }
        let held: u32 = self
            .projects
            .values()
            .filter(|p| p.org == org.id)
            .map(|p| self.instances_of_project(&p.id))
            .sum();
        if held as usize >= TRIAL_MAX_INSTANCES {
            return Err(Rejected::TrialLimit(format!(
                "organisation {} is on a trial, which allows {TRIAL_MAX_INSTANCES} instances and has {held}: delete one, or add a payment method",
                org.id
            )));
        }
        Ok(())
    }
}
