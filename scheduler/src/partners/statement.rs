//! A partner's monthly statement (DESIGN.md §8 "Partners"): its customers' invoiced net and
//! monthly active users, its licence fees (base + per active user), and the share each side
//! keeps. Computed from the committed state, so every replica gives the same figures.

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;
use vmcloud_proto::OrgId;

use crate::billing::types::{InvoiceStatus, period_bounds};
use crate::partners::types::Partner;
use crate::state::ClusterState;

/// One customer's line.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatementCustomer {
    pub org_id: String,
    pub name: String,
    /// Net of its finalized invoices and credit notes of the month, in the licence's
    /// currency.
    #[schema(value_type = String)]
    pub invoiced_net: Decimal,
    pub active_users: u32,
}

/// A partner's month.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Statement {
    pub partner: String,
    pub period: String,
    pub currency: String,
    /// Whether the month is over (the figures of a month under way still move).
    pub closed: bool,
    pub customers: Vec<StatementCustomer>,
    #[schema(value_type = String)]
    pub customers_net: Decimal,
    pub active_users: u32,
    #[schema(value_type = String)]
    pub base_fee: Decimal,
    #[schema(value_type = String)]
    pub per_active_user: Decimal,
    #[schema(value_type = String)]
    pub active_user_fees: Decimal,
    /// Base fee + active-user fees: what the partner owes VMCloud for its licence.
    #[schema(value_type = String)]
    pub licence_fees: Decimal,
    #[schema(value_type = String)]
    pub partner_share_percent: Decimal,
    /// The partner's share of its customers' net.
    #[schema(value_type = String)]
    pub partner_keeps: Decimal,
    #[schema(value_type = String)]
    pub vmcloud_keeps: Decimal,
    /// Partner keeps − licence fees: above 0 VMCloud pays the partner (a self-billed
    /// invoice), below 0 the partner pays VMCloud.
    #[schema(value_type = String)]
    pub balance: Decimal,
}

fn cents(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven)
}

/// The statement of `partner` for `period` (`YYYY-MM`) as of `now`, from its customers'
/// finalized invoices; none for a period that is not a month.
pub fn statement(
    state: &ClusterState,
    partner: &Partner,
    period: &str,
    now: i64,
) -> Option<Statement> {
    statement_with(state, partner, period, now, false)
}

/// [`statement`], counting its customers' drafts too when `drafts` (the billing run makes the
/// partner's document beside the drafts it finalizes with it).
pub fn statement_with(
    state: &ClusterState,
    partner: &Partner,
    period: &str,
    now: i64,
    drafts: bool,
) -> Option<Statement> {
    let (from, to) = period_bounds(period)?;
    let licence = &partner.licence;
    let mut users: BTreeMap<OrgId, u32> = BTreeMap::new();
    for (org, _) in state.active_users(&partner.id, from, to) {
        *users.entry(org).or_default() += 1;
    }
    let mut customers = Vec::new();
    for org in state
        .organisations
        .values()
        .filter(|o| o.partner.as_deref() == Some(partner.id.as_str()))
    {
        let net: Decimal = state
            .billing
            .by_org
            .get(&org.id)
            .into_iter()
            .flatten()
            .filter_map(|id| state.billing.invoices.get(id))
            .filter(|i| {
                i.period == period
                    && (i.number.is_some() || (drafts && i.status == InvoiceStatus::Draft))
                    && i.totals.currency == licence.currency
            })
            .map(|i| i.totals.net)
            .sum();
        customers.push(StatementCustomer {
            org_id: org.id.to_string(),
            name: org.name.clone(),
            invoiced_net: net,
            active_users: users.get(&org.id).copied().unwrap_or(0),
        });
    }
    customers.sort_by(|a, b| a.name.cmp(&b.name).then(a.org_id.cmp(&b.org_id)));
    let customers_net: Decimal = customers.iter().map(|c| c.invoiced_net).sum();
    let active_users: u32 = customers.iter().map(|c| c.active_users).sum();
    let active_user_fees = cents(licence.per_active_user * Decimal::from(active_users));
    let licence_fees = licence.base_monthly + active_user_fees;
    let partner_keeps = cents(customers_net * licence.partner_share_percent / Decimal::ONE_HUNDRED);
    Some(Statement {
        partner: partner.id.clone(),
        period: period.to_owned(),
        currency: licence.currency.code().to_owned(),
        closed: now >= to,
        customers,
        customers_net,
        active_users,
        base_fee: licence.base_monthly,
        per_active_user: licence.per_active_user,
        active_user_fees,
        licence_fees,
        partner_share_percent: licence.partner_share_percent,
        partner_keeps,
        vmcloud_keeps: customers_net - partner_keeps,
        balance: partner_keeps - licence_fees,
    })
}

/// A field for CSV (RFC 4180): quoted when it holds a comma, a quote or a line break.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The statement as CSV: a line per customer, then the totals and the licence's lines.
pub fn csv(s: &Statement) -> String {
    let mut out = String::from("kind,org_id,name,active_users,amount,currency\n");
    let cur = &s.currency;
    for c in &s.customers {
        out += &format!(
            "customer,{},{},{},{},{cur}\n",
            c.org_id,
            field(&c.name),
            c.active_users,
            c.invoiced_net
        );
    }
    let rows = [
        ("customers_net", s.active_users.to_string(), s.customers_net),
        ("base_fee", String::new(), s.base_fee),
        (
            "active_user_fees",
            s.active_users.to_string(),
            s.active_user_fees,
        ),
        ("partner_keeps", String::new(), s.partner_keeps),
        ("vmcloud_keeps", String::new(), s.vmcloud_keeps),
        ("balance", String::new(), s.balance),
    ];
    for (kind, users, amount) in rows {
        out += &format!("{kind},,,{users},{amount},{cur}\n");
    }
    out
}
