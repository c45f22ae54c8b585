//! Incidents in `apply`: declared by operators, updated, resolved; kept 90 days once
//! resolved.

use vmcloud_proto::pb;

use crate::clock::rfc3339;
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};
use crate::status::types::{HISTORY_MS, Impact, Incident, IncidentKind, IncidentUpdate, SERVICES};

/// Longest title and message.
const MAX_TITLE: usize = 200;
const MAX_MESSAGE: usize = 5000;

fn text(what: &str, s: &str, max: usize) -> Result<String, Rejected> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > max {
        return Err(Rejected::Invalid(format!(
            "an incident's {what} is 1 to {max} characters"
        )));
    }
    Ok(s.to_owned())
}

impl ClusterState {
    pub(crate) fn declare_incident(&mut self, c: pb::DeclareIncident, at: i64) -> ApplyResult {
        if !c.incident_id.starts_with("inc-") {
            return Err(Rejected::Invalid("an incident's id is inc-…".into()));
        }
        if self.incidents.contains_key(&c.incident_id) {
            return Err(Rejected::Exists(format!("incident {}", c.incident_id)));
        }
        let kind = match c.kind.as_str() {
            "incident" => IncidentKind::Incident,
            "maintenance" => IncidentKind::Maintenance,
            other => {
                return Err(Rejected::Invalid(format!(
                    "`{other}` is not a kind: `incident` or `maintenance`"
                )));
            }
        };
        let impact = Impact::parse_declared(&c.impact).ok_or_else(|| {
            Rejected::Invalid(format!(
                "`{}` is not an impact: degraded, partial-outage, major-outage or maintenance",
                c.impact
            ))
        })?;
        if let Some(s) = c.services.iter().find(|s| !SERVICES.contains(&s.as_str())) {
            return Err(Rejected::Invalid(format!(
                "`{s}` is not a service: {}",
                SERVICES.join(", ")
            )));
        }
        let (starts, ends) = match kind {
            IncidentKind::Incident => (at, None),
            IncidentKind::Maintenance => {
                let starts = if c.starts_at_unix_ms > 0 {
                    c.starts_at_unix_ms
                } else {
                    at
                };
                if c.ends_at_unix_ms <= starts {
                    return Err(Rejected::Invalid(
                        "a maintenance window ends after it starts: give its planned end".into(),
                    ));
                }
                (starts, Some(c.ends_at_unix_ms))
            }
        };
        let first = match kind {
            IncidentKind::Incident => "investigating",
            IncidentKind::Maintenance if starts > at => "scheduled",
            IncidentKind::Maintenance => "in-progress",
        };
        let incident = Incident {
            id: c.incident_id.clone(),
            kind,
            title: text("title", &c.title, MAX_TITLE)?,
            regions: c.regions,
            services: c.services,
            impact,
            created_at_ms: at,
            starts_at_ms: starts,
            ends_at_ms: ends,
            resolved_at_ms: None,
            updates: vec![IncidentUpdate {
                at_ms: at,
                status: first.into(),
                message: text("message", &c.message, MAX_MESSAGE)?,
            }],
        };
        // Resolved more than 90 days ago: off the page.
        let old: Vec<String> = self
            .incidents
            .values()
            .filter(|i| i.resolved_at_ms.is_some_and(|r| r + HISTORY_MS < at))
            .map(|i| i.id.clone())
            .collect();
        for id in old {
            self.incidents.remove(&id);
        }
        self.incidents.insert(c.incident_id, incident);
        Ok(Applied::Done)
    }

    pub(crate) fn update_incident(&mut self, c: pb::UpdateIncident, at: i64) -> ApplyResult {
        let incident = self
            .incidents
            .get_mut(&c.incident_id)
            .ok_or_else(|| Rejected::NotFound(format!("incident {}", c.incident_id)))?;
        if let Some(r) = incident.resolved_at_ms {
            return Err(Rejected::Conflict(format!(
                "incident {} was closed at {}: declare a new one",
                incident.id,
                rfc3339(r)
            )));
        }
        let statuses = incident.kind.statuses();
        if !statuses.contains(&c.status.as_str()) {
            return Err(Rejected::Invalid(format!(
                "`{}` is not a status of a{} {}: {}",
                c.status,
                if incident.kind == IncidentKind::Incident {
                    "n"
                } else {
                    ""
                },
                incident.kind.as_str(),
                statuses.join(", ")
            )));
        }
        let message = text("message", &c.message, MAX_MESSAGE)?;
        if !c.impact.is_empty() {
            incident.impact = Impact::parse_declared(&c.impact).ok_or_else(|| {
                Rejected::Invalid(format!(
                    "`{}` is not an impact: degraded, partial-outage, major-outage or maintenance",
                    c.impact
                ))
            })?;
        }
        if statuses.last() == Some(&c.status.as_str()) {
            incident.resolved_at_ms = Some(at);
        }
        incident.updates.push(IncidentUpdate {
            at_ms: at,
            status: c.status,
            message,
        });
        Ok(Applied::Done)
    }
}
