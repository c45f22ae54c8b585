//! SLA credits: an instance (on demand or reserved — never spot, never a job member or a game
//! session) whose host was declared down is owed a credit by how long the outage lasted, as a
//! share of its flavor's monthly price:
//!
//! | outage            | credit |
//! |-------------------|--------|
//! | under 5 minutes   | none   |
//! | 5 min to 1 h      | 10 %   |
//! | 1 h to 4 h        | 25 %   |
//! | 4 h to 24 h       | 50 %   |
//! | 24 h or more      | 100 %  |
//!
//! An incident opens when the host is declared down (the command's time) and closes when it
//! is back or the instance is deleted. The billing run of the month it closed in turns it into
//! a credit (id `sla-<instance>-<start>`) and forgets it: one credit per incident, never two.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use vmcloud_billing::prices::PriceBook;
use vmcloud_proto::{NodeId, OrgId, ProjectId};

use crate::instances::types::{Instance, Market};
use crate::tenancy::types::Project;

/// An outage of one instance's host, ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub instance: String,
    pub project: ProjectId,
    pub node: NodeId,
    pub flavor: String,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// The share of the monthly price an outage of `ms` earns (the module's table).
pub fn credit_share(ms: i64) -> Decimal {
    const MIN: i64 = 60_000;
    match ms {
        m if m < 5 * MIN => Decimal::ZERO,
        m if m < 60 * MIN => Decimal::new(10, 2),
        m if m < 4 * 60 * MIN => Decimal::new(25, 2),
        m if m < 24 * 60 * MIN => Decimal::new(50, 2),
        _ => Decimal::ONE,
    }
}

/// Whether an instance is covered by the SLA.
pub fn covered(i: &Instance) -> bool {
    i.market != Market::Spot && i.job.is_none() && i.session.is_none()
}

/// Closes the instance's open outage at `at` (its host is back, or it is deleted).
pub(crate) fn close_outage(
    incidents: &mut imbl::OrdMap<OrgId, Vec<Incident>>,
    projects: &imbl::OrdMap<ProjectId, Project>,
    node: &NodeId,
    instance: &mut Instance,
    at: i64,
) {
    let Some(from) = instance.outage_since_ms.take() else {
        return;
    };
    if !covered(instance) || at <= from {
        return;
    }
    if let Some(p) = projects.get(&instance.project) {
        incidents.entry(p.org.clone()).or_default().push(Incident {
            instance: instance.id.to_string(),
            project: instance.project.clone(),
            node: node.clone(),
            flavor: instance.flavor.clone(),
            from_ms: from,
            to_ms: at,
        });
    }
}

/// The credit an incident earns in `book`'s currency (rounded to the cent), or nothing.
pub fn credit_for(book: &PriceBook, incident: &Incident) -> Option<Decimal> {
    let share = credit_share(incident.to_ms - incident.from_ms);
    let monthly = book.flavors.get(&incident.flavor)?.monthly_cap;
    let amount = (monthly * share).round_dp(2);
    (amount > Decimal::ZERO).then_some(amount)
}

/// How long, for a credit's description: `2 h 10 min`.
pub fn outage_text(ms: i64) -> String {
    let minutes = ms / 60_000;
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}
