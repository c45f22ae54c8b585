//! Usage as it stands (month to date), rated for the API and the console — a read of the
//! state, not a command: closed usage not invoiced yet plus every meter still running, cut at
//! the time asked.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;
use vmcloud_billing::prices::PriceBook;
use vmcloud_billing::rating::{self, Market};
use vmcloud_proto::{OrgId, ProjectId};

use crate::billing::meters::{PUBLIC_IPV4, instance_interval, reservation_market};
use crate::billing::types::UsageInterval;
use crate::state::ClusterState;

impl ClusterState {
    /// The organisation's projects.
    pub fn projects_of_org(&self, org: &OrgId) -> Vec<ProjectId> {
        self.index
            .org_projects
            .get(org)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The organisation's billable intervals within `[from, to)`: closed ones not invoiced
    /// yet and running meters, cut at `to`.
    pub fn usage_between(
        &self,
        org: &OrgId,
        from: i64,
        to: i64,
        terms: &[u32],
    ) -> Vec<UsageInterval> {
        let clip = |i: UsageInterval| {
            let (f, t) = (i.from_ms.max(from), i.to_ms.min(to));
            (t > f).then_some(UsageInterval {
                from_ms: f,
                to_ms: t,
                ..i
            })
        };
        let mut out: Vec<UsageInterval> = self
            .billing
            .usage
            .get(org)
            .into_iter()
            .flatten()
            .cloned()
            .filter_map(clip)
            .collect();
        for project in self.projects_of_org(org) {
            for id in self.index.per_project.get(&project).into_iter().flatten() {
                let Some(i) = self.instances.get(&id.1) else {
                    continue;
                };
                if let Some(f) = i.meter_from_ms
                    && let Some(interval) = instance_interval(i, f, to)
                {
                    out.extend(clip(interval));
                }
            }
            for (address, h) in self.public_ips.iter().filter(|(_, h)| h.project == project) {
                out.extend(clip(UsageInterval {
                    project: project.clone(),
                    region: h.region.clone(),
                    resource: std::net::Ipv4Addr::from(*address).to_string(),
                    flavor: PUBLIC_IPV4.into(),
                    market: Market::OnDemand,
                    from_ms: h.since_ms,
                    to_ms: to,
                }));
            }
            for r in self.reservations.values().filter(|r| r.project == project) {
                let start = r.billed_to_ms.unwrap_or(r.start_ms);
                let market = reservation_market(r, terms);
                for slot in 1..=r.count {
                    out.extend(clip(UsageInterval {
                        project: project.clone(),
                        region: r.region.clone(),
                        resource: format!("{}/{slot}", r.id),
                        flavor: r.flavor.clone(),
                        market,
                        from_ms: start,
                        to_ms: r.end_ms.min(to),
                    }));
                }
            }
        }
        out
    }
}

/// One resource's usage in a report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UsageRow {
    pub project: String,
    pub region: String,
    pub resource: String,
    pub flavor: String,
    /// `on-demand`, `spot` or `reserved-12` (months).
    pub market: String,
    pub seconds: u64,
    /// Rated, before credits and VAT.
    #[schema(value_type = String)]
    pub amount: Decimal,
    /// The flavor's monthly cap was reached.
    pub capped: bool,
}

/// Cost in one hour (before monthly caps, credits and VAT).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HourCost {
    /// The hour's start (RFC 3339).
    pub hour: String,
    #[schema(value_type = String)]
    pub amount: Decimal,
}

/// What an organisation used in a span and what it costs so far.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UsageReport {
    pub organisation: String,
    pub currency: String,
    pub from: String,
    pub to: String,
    pub rows: Vec<UsageRow>,
    /// Sum of the rows.
    #[schema(value_type = String)]
    pub total: Decimal,
    /// By project, flavor and region: the rows summed.
    pub by_project: BTreeMap<String, String>,
    pub by_flavor: BTreeMap<String, String>,
    pub by_region: BTreeMap<String, String>,
    pub hourly: Vec<HourCost>,
}

fn market_name(m: Market) -> String {
    match m {
        Market::OnDemand => "on-demand".into(),
        Market::Spot => "spot".into(),
        Market::Reserved(n) => format!("reserved-{n}"),
    }
}

fn add(map: &mut BTreeMap<String, Decimal>, key: &str, v: Decimal) {
    *map.entry(key.to_owned()).or_default() += v;
}

/// Rates `intervals` (one organisation's, in `[from, to)`) with `book`.
pub fn report(
    org: &OrgId,
    book: &PriceBook,
    intervals: &[UsageInterval],
    from: i64,
    to: i64,
) -> Result<UsageReport, rating::RatingError> {
    let rated: Vec<rating::Interval> = intervals.iter().map(UsageInterval::rated).collect();
    let lines = rating::rate(book, &rated)?;
    let mut whereabouts: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for i in intervals {
        whereabouts.insert(&i.resource, (i.project.as_str(), &i.region));
    }
    let (mut by_project, mut by_flavor, mut by_region) =
        (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    let rows: Vec<UsageRow> = lines
        .iter()
        .map(|l| {
            let (project, region) = whereabouts
                .get(l.resource.as_str())
                .copied()
                .unwrap_or_default();
            add(&mut by_project, project, l.amount.amount);
            add(&mut by_flavor, &l.flavor, l.amount.amount);
            add(&mut by_region, region, l.amount.amount);
            UsageRow {
                project: project.to_owned(),
                region: region.to_owned(),
                resource: l.resource.clone(),
                flavor: l.flavor.clone(),
                market: market_name(l.market),
                seconds: l.seconds,
                amount: l.amount.amount,
                capped: l.capped,
            }
        })
        .collect();
    let total = rows.iter().map(|r| r.amount).sum();
    let hourly = hourly(book, intervals, from, to);
    let text = |m: BTreeMap<String, Decimal>| {
        m.into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    Ok(UsageReport {
        organisation: org.to_string(),
        currency: book.currency.code().to_owned(),
        from: crate::clock::rfc3339(from),
        to: crate::clock::rfc3339(to),
        rows,
        total,
        by_project: text(by_project),
        by_flavor: text(by_flavor),
        by_region: text(by_region),
        hourly,
    })
}

const HOUR_MS: i64 = 3_600_000;

/// The hourly price of an interval's flavor and market (public addresses: their month by
/// the hour, 30 days).
fn hourly_price(book: &PriceBook, i: &UsageInterval) -> Decimal {
    if i.flavor == PUBLIC_IPV4 {
        return book.public_ipv4_monthly / Decimal::from(720);
    }
    let Some(p) = book.flavors.get(&i.flavor) else {
        return Decimal::ZERO;
    };
    match i.market {
        Market::OnDemand => p.hourly,
        Market::Spot => p.spot_hourly(),
        Market::Reserved(m) => {
            p.hourly * (Decimal::ONE - book.reserved_discount.get(&m).copied().unwrap_or_default())
        }
    }
}

/// Cost per hour in `[from, to)`, to a hundredth of a cent (before monthly caps; a chart's
/// figures, not a bill's).
fn hourly(book: &PriceBook, intervals: &[UsageInterval], from: i64, to: i64) -> Vec<HourCost> {
    let first = from.div_euclid(HOUR_MS);
    let last = (to - 1).div_euclid(HOUR_MS);
    if last < first || last - first > 24 * 62 {
        return Vec::new();
    }
    let mut buckets = vec![Decimal::ZERO; usize::try_from(last - first + 1).unwrap_or(0)];
    for i in intervals {
        let price = hourly_price(book, i) / Decimal::from(HOUR_MS);
        let mut t = i.from_ms.max(from);
        let end = i.to_ms.min(to);
        while t < end {
            let h = t.div_euclid(HOUR_MS);
            let upto = ((h + 1) * HOUR_MS).min(end);
            if let Some(b) = usize::try_from(h - first)
                .ok()
                .and_then(|k| buckets.get_mut(k))
            {
                *b += price * Decimal::from(upto - t);
            }
            t = upto;
        }
    }
    buckets
        .into_iter()
        .enumerate()
        .map(|(k, v)| HourCost {
            hour: crate::clock::rfc3339((first + k as i64) * HOUR_MS),
            amount: v.round_dp(4),
        })
        .collect()
}

/// What the rest of the period will likely add: every meter running at `now` going on at its
/// hourly price to `end`, an on-demand resource no further than its monthly cap.
pub fn forecast_rest(
    book: &PriceBook,
    so_far: &UsageReport,
    running: &[UsageInterval],
    now: i64,
    end: i64,
) -> Decimal {
    let hours_left = Decimal::from((end - now).max(0)) / Decimal::from(HOUR_MS);
    let mut rest = Decimal::ZERO;
    for i in running {
        let more = hourly_price(book, i) * hours_left;
        let more = match (i.market, book.flavors.get(&i.flavor)) {
            (Market::OnDemand, Some(p)) => {
                let spent: Decimal = so_far
                    .rows
                    .iter()
                    .filter(|r| r.resource == i.resource)
                    .map(|r| r.amount)
                    .sum();
                more.min((p.monthly_cap - spent).max(Decimal::ZERO))
            }
            _ => more,
        };
        rest += more;
    }
    rest.round_dp(2)
}
