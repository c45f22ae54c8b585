//! The status page's incidents in `apply`: a maintenance window weighs on the page only while
//! it is under way; an update closes an incident once, and a closed one takes no more; what
//! was closed more than 90 days ago leaves the page when the next incident is declared.

use vmcloud_proto::pb::{self, command::Body};
use vmcloud_scheduler::state::Rejected;
use vmcloud_scheduler::status::types::Impact;

use crate::fleet::Fleet;

const HOUR: i64 = 3_600_000;

fn declare(f: &mut Fleet, id: &str, kind: &str, starts: i64, ends: i64) -> Result<(), Rejected> {
    f.try_apply(Body::DeclareIncident(pb::DeclareIncident {
        incident_id: id.into(),
        kind: kind.into(),
        title: "Switch replacement".into(),
        regions: vec!["par".into()],
        services: vec!["compute".into()],
        impact: if kind == "maintenance" {
            "maintenance"
        } else {
            "major-outage"
        }
        .into(),
        message: "Planned.".into(),
        starts_at_unix_ms: starts,
        ends_at_unix_ms: ends,
    }))
    .map(|_| ())
}

fn update(f: &mut Fleet, id: &str, status: &str) -> Result<(), Rejected> {
    f.try_apply(Body::UpdateIncident(pb::UpdateIncident {
        incident_id: id.into(),
        status: status.into(),
        message: "News.".into(),
        impact: String::new(),
    }))
    .map(|_| ())
}

#[test]
fn maintenance_weighs_while_under_way_and_closed_incidents_leave_after_90_days() {
    let mut f = Fleet::new();
    let t0 = f.at;
    declare(&mut f, "inc-m", "maintenance", t0 + HOUR, t0 + 3 * HOUR).unwrap();
    let m = f.state.incidents["inc-m"].clone();
    assert_eq!((m.status(), m.impact), ("scheduled", Impact::Maintenance));
    assert!(m.scheduled_at(t0) && !m.active_at(t0));
    assert!(
        m.active_at(t0 + 2 * HOUR) && m.covers("par", "compute") && !m.covers("fra", "compute")
    );
    assert!(!m.active_at(t0 + 4 * HOUR), "past its planned end");
    // An incident: statuses of its kind only; resolved once.
    declare(&mut f, "inc-i", "incident", 0, 0).unwrap();
    assert!(
        matches!(update(&mut f, "inc-i", "completed"), Err(Rejected::Invalid(m)) if m.contains("investigating, identified"))
    );
    update(&mut f, "inc-i", "identified").unwrap();
    update(&mut f, "inc-i", "resolved").unwrap();
    assert!(
        matches!(update(&mut f, "inc-i", "monitoring"), Err(Rejected::Conflict(m)) if m.contains("was closed at"))
    );
    assert!(matches!(
        declare(&mut f, "inc-i", "incident", 0, 0),
        Err(Rejected::Exists(_))
    ));
    // 91 days later, a new incident: the closed one leaves the page; the open one stays.
    f.at += 91 * 24 * HOUR;
    declare(&mut f, "inc-n", "incident", 0, 0).unwrap();
    assert!(!f.state.incidents.contains_key("inc-i"));
    assert!(f.state.incidents.contains_key("inc-m"));
}
