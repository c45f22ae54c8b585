//! Where usage starts and stops. Every time here is a committed command's time (`at`, or the
//! state's `now_ms`, which is the command being applied), never a replica's clock.
//!
//! - An instance's meter starts when a placement binds it to a host and stops when its delete
//!   is committed (by its owner, a reclaim, a lost host, a session's end) or when it is taken
//!   off its host to wait again (a job requeued). Job members bill like instances. Game
//!   sessions bill through gaming plans, not here; instances drawing on a reservation bill
//!   through the reservation.
//! - A public address's meter runs while a project holds it (from the instance create or the
//!   floating IP create to its release).
//! - A reservation bills every second of its term, used or not.

use imbl::{OrdMap, Vector};
use vmcloud_billing::rating::Market;
use vmcloud_proto::{OrgId, ProjectId};

use crate::billing::types::UsageInterval;
use crate::gaming::types::Played;
use crate::instances::types::{Instance, Market as InstanceMarket};
use crate::reservations::types::Reservation;
use crate::state::ClusterState;
use crate::tenancy::types::Project;

/// The flavor name public addresses are priced under.
pub const PUBLIC_IPV4: &str = "public-ipv4";

/// The shortest commitment with a reserved price: shorter reservations are capacity held at
/// the on-demand price.
pub const SHORTEST_TERM_MONTHS: u32 = 12;

/// The commitment terms (months) the price books have a discount for.
pub fn terms(books: &vmcloud_billing::prices::PriceBooks) -> Vec<u32> {
    books
        .0
        .values()
        .next()
        .map(|b| b.reserved_discount.keys().copied().collect())
        .unwrap_or_default()
}

/// The interval an instance's meter covers from `from` to `to`; `None` when the instance is
/// not billed by usage (a game session, a warm game VM, a reserved instance) or the span is
/// empty.
pub fn instance_interval(i: &Instance, from: i64, to: i64) -> Option<UsageInterval> {
    if i.session.is_some() || i.is_warm() || to <= from {
        return None;
    }
    let market = match i.market {
        InstanceMarket::OnDemand => Market::OnDemand,
        InstanceMarket::Spot => Market::Spot,
        InstanceMarket::Reserved => return None,
    };
    Some(UsageInterval {
        project: i.project.clone(),
        region: i.region.clone(),
        resource: i.id.to_string(),
        flavor: i.flavor.clone(),
        market,
        from_ms: from,
        to_ms: to,
    })
}

/// A reservation's commitment: its term in whole months (30-day months, rounded down) when it
/// reaches the shortest commitment, priced as such; else on demand.
pub fn reservation_market(r: &Reservation, terms: &[u32]) -> Market {
    let months = u32::try_from((r.end_ms - r.start_ms) / (30 * 86_400_000)).unwrap_or(0);
    match terms.iter().rev().find(|t| months >= **t) {
        Some(t) if *t >= SHORTEST_TERM_MONTHS => Market::Reserved(*t),
        _ => Market::OnDemand,
    }
}

/// Adds a closed interval to its organisation's usage.
pub(crate) fn record(
    usage: &mut OrdMap<OrgId, Vector<UsageInterval>>,
    projects: &OrdMap<ProjectId, Project>,
    interval: UsageInterval,
) {
    if let Some(p) = projects.get(&interval.project) {
        usage.entry(p.org.clone()).or_default().push_back(interval);
    }
}

/// Closed playtime is kept this long (this month and the last: fair use's rollover).
const PLAYED_KEPT_MS: i64 = 62 * 86_400_000;

/// Adds a household session's span on a host, `from` to `to`, to its playtime (gaming plans'
/// fair use and kids' daily limits count it); spans older than last month are forgotten.
pub(crate) fn record_played(
    played: &mut OrdMap<OrgId, Vector<Played>>,
    projects: &OrdMap<ProjectId, Project>,
    i: &Instance,
    from: i64,
    to: i64,
) {
    let Some(profile) = i.session.as_ref().and_then(|s| s.profile.clone()) else {
        return;
    };
    let Some(org) = projects.get(&i.project).map(|p| p.org.clone()) else {
        return;
    };
    if to <= from {
        return;
    }
    push_played(
        played,
        org,
        Played {
            profile,
            from_ms: from,
            to_ms: to,
            guest: false,
        },
    );
}

/// Adds a span to `org`'s playtime, forgetting those older than last month.
fn push_played(played: &mut OrdMap<OrgId, Vector<Played>>, org: OrgId, span: Played) {
    let to = span.to_ms;
    let spans = played.entry(org).or_default();
    spans.push_back(span);
    spans.retain(|p| p.to_ms >= to - PLAYED_KEPT_MS);
}

/// Ends a session's Share-Play guest at `at` (or when their play ended before): their time
/// goes to their own household's playtime, as a guest's.
pub(crate) fn end_guest(
    played: &mut OrdMap<OrgId, Vector<Played>>,
    instance: &mut Instance,
    at: i64,
) {
    let Some(session) = instance.session.as_mut() else {
        return;
    };
    session.share.invite = None;
    session.stream_tokens.retain(|t| !t.guest);
    let Some(g) = session.share.guest.take() else {
        return;
    };
    let to = at.min(g.until_ms);
    if to > g.joined_at_ms {
        push_played(
            played,
            g.org,
            Played {
                profile: g.profile,
                from_ms: g.joined_at_ms,
                to_ms: to,
                guest: true,
            },
        );
    }
}

/// Stops an instance's meter at `at` (nothing when it is not running): its usage, or a
/// household session's playtime.
pub(crate) fn stop_instance(
    usage: &mut OrdMap<OrgId, Vector<UsageInterval>>,
    played: &mut OrdMap<OrgId, Vector<Played>>,
    projects: &OrdMap<ProjectId, Project>,
    instance: &mut Instance,
    at: i64,
) {
    if let Some(from) = instance.meter_from_ms.take() {
        if let Some(interval) = instance_interval(instance, from, at) {
            record(usage, projects, interval);
        }
        record_played(played, projects, instance, from, at);
    }
    end_guest(played, instance, at);
}

impl ClusterState {
    /// Stops the meter of the public address `address` (about to be given back).
    pub(crate) fn stop_public_ip(&mut self, address: u32) {
        let at = self.now_ms;
        if let Some(h) = self.public_ips.get(&address)
            && at > h.since_ms
        {
            let interval = UsageInterval {
                project: h.project.clone(),
                region: h.region.clone(),
                resource: std::net::Ipv4Addr::from(address).to_string(),
                flavor: PUBLIC_IPV4.into(),
                market: Market::OnDemand,
                from_ms: h.since_ms,
                to_ms: at,
            };
            record(&mut self.billing.usage, &self.projects, interval);
        }
    }
}
