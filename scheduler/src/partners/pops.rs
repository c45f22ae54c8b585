//! The POP rule: a partner's POP (a catalog region whose `partner` is it) takes the work of
//! the partner's customers and staff only, by default. Checked where work picks its region
//! (instances, jobs, launches), so work of others never queues for hosts it may not use.

use vmcloud_proto::ProjectId;

use crate::api::problem::Problem;
use crate::catalog::Catalog;
use crate::state::ClusterState;

/// Whether `project`'s organisation may run work in `region`.
pub fn pop_open_to(
    catalog: &Catalog,
    state: &ClusterState,
    region: &str,
    project: &ProjectId,
) -> bool {
    let Some(partner) = catalog.partner_of(region) else {
        return true;
    };
    let Some(org) = state
        .projects
        .get(project)
        .and_then(|p| state.organisations.get(&p.org))
    else {
        return false;
    };
    org.partner.as_deref() == Some(partner)
        || state
            .partner_of_staff(&org.id)
            .is_some_and(|p| p.id == partner)
}

/// [`pop_open_to`], as the API answers it.
pub fn check_pop(
    catalog: &Catalog,
    state: &ClusterState,
    region: &str,
    project: &ProjectId,
) -> Result<(), Problem> {
    if pop_open_to(catalog, state, region, project) {
        return Ok(());
    }
    let name = catalog
        .regions
        .get(region)
        .map_or(region, |r| r.name.as_str());
    Err(Problem::new(
        axum::http::StatusCode::FORBIDDEN,
        "pop-reserved",
        "A partner's POP",
        format!(
            "region `{region}` ({name}) is a partner's POP and runs its own customers' work only: choose one of VMCloud's regions"
        ),
    ))
}
