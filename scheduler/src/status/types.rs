//! Incidents and maintenance windows as the replicated state keeps them.

use serde::{Deserialize, Serialize};

/// The services the status page reports, in its order.
pub const SERVICES: [&str; 6] = ["api", "console", "compute", "gpu", "gaming", "billing"];

/// How long resolved incidents stay on the page.
pub const HISTORY_MS: i64 = 90 * 86_400_000;

/// A service's status, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Impact {
    Operational,
    Maintenance,
    Degraded,
    PartialOutage,
    MajorOutage,
}

impl Impact {
    pub fn as_str(self) -> &'static str {
        match self {
            Impact::Operational => "operational",
            Impact::Maintenance => "maintenance",
            Impact::Degraded => "degraded",
            Impact::PartialOutage => "partial-outage",
            Impact::MajorOutage => "major-outage",
        }
    }

    /// What an incident may declare (not `operational`).
    pub fn parse_declared(s: &str) -> Option<Impact> {
        [
            Impact::Maintenance,
            Impact::Degraded,
            Impact::PartialOutage,
            Impact::MajorOutage,
        ]
        .into_iter()
        .find(|i| i.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IncidentKind {
    Incident,
    Maintenance,
}

impl IncidentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::Incident => "incident",
            IncidentKind::Maintenance => "maintenance",
        }
    }

    /// The statuses an update may give, the last one closing it.
    pub fn statuses(self) -> &'static [&'static str] {
        match self {
            IncidentKind::Incident => &["investigating", "identified", "monitoring", "resolved"],
            IncidentKind::Maintenance => &["scheduled", "in-progress", "completed"],
        }
    }
}

/// One thing operators said about an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentUpdate {
    pub at_ms: i64,
    pub status: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// `inc-<hex>`.
    pub id: String,
    pub kind: IncidentKind,
    pub title: String,
    /// Empty: every region.
    pub regions: Vec<String>,
    /// Empty: every service.
    pub services: Vec<String>,
    pub impact: Impact,
    pub created_at_ms: i64,
    pub starts_at_ms: i64,
    /// A maintenance window's planned end.
    pub ends_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    /// Oldest first; the first is the declaration's.
    pub updates: Vec<IncidentUpdate>,
}

impl Incident {
    /// Whether it weighs on the page at `at`: an open incident, or a maintenance window under
    /// way (started, not completed, and — unless an update said it is in progress — not past
    /// its planned end).
    pub fn active_at(&self, at: i64) -> bool {
        if self.resolved_at_ms.is_some() || at < self.starts_at_ms {
            return false;
        }
        match self.kind {
            IncidentKind::Incident => true,
            IncidentKind::Maintenance => {
                self.status() == "in-progress" || self.ends_at_ms.is_none_or(|e| at < e)
            }
        }
    }

    /// A maintenance window still to come at `at`.
    pub fn scheduled_at(&self, at: i64) -> bool {
        self.kind == IncidentKind::Maintenance
            && self.resolved_at_ms.is_none()
            && at < self.starts_at_ms
    }

    pub fn status(&self) -> &str {
        self.updates.last().map_or("", |u| u.status.as_str())
    }

    /// Whether it covers `region`'s `service`.
    pub fn covers(&self, region: &str, service: &str) -> bool {
        (self.regions.is_empty() || self.regions.iter().any(|r| r == region))
            && (self.services.is_empty() || self.services.iter().any(|s| s == service))
    }
}
