//! Gaming hour packs (`config/prices.toml`, `hour_packs`): a household buys one when its
//! plan's hours run out. Its hours add to the month it is bought in (and what is left of them
//! at the month's end rolls over like the plan's, within the plan's rollover); the next
//! invoice bills it once, at the price the book gave when it was bought.

use axum::extract::State;
use axum::response::Response;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use vmcloud_billing::invoice::{InvoiceLine, LineKind};
use vmcloud_billing::money::Currency;
use vmcloud_proto::OrgId;
use vmcloud_proto::pb::{self, command::Body};

use crate::api::context::{ApiJson, ApiState, Who, created};
use crate::api::problem::Problem;
use crate::billing::api::{billing_org, price_books};
use crate::billing::types::{HourPack, currency_of, date_of, period_bounds, period_of};
use crate::clock::rfc3339;
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};
use crate::tenancy::authz::Action;
use crate::tenancy::types::OrgKind;

impl ClusterState {
    /// A household buys a pack of hours.
    pub(crate) fn buy_hour_pack(&mut self, c: pb::BuyHourPack, at: i64) -> ApplyResult {
        let org = OrgId::parse(&c.org_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        let o = self
            .organisations
            .get(&org)
            .ok_or_else(|| Rejected::NotFound(format!("organisation {org}")))?;
        if o.kind != OrgKind::Household {
            return Err(Rejected::Conflict(format!(
                "organisation {org} is a {}: hour packs are for gaming households",
                o.kind.as_str()
            )));
        }
        let price: Decimal = c
            .price
            .parse()
            .ok()
            .filter(|p: &Decimal| *p >= Decimal::ZERO)
            .ok_or_else(|| Rejected::Invalid(format!("`{}` is not a price", c.price)))?;
        let currency = Currency::parse(&c.currency)
            .filter(|cur| *cur == currency_of(o))
            .ok_or_else(|| {
                Rejected::Invalid(format!(
                    "a pack is priced in the organisation's currency ({}), not `{}`",
                    currency_of(o),
                    c.currency
                ))
            })?;
        if !c.purchase_id.starts_with("hp-") || c.hours == 0 || c.pack.is_empty() {
            return Err(Rejected::Invalid(
                "a purchase has an id (hp-…), a pack and its hours".into(),
            ));
        }
        let account = self.billing.accounts.entry(org).or_default();
        if account.hour_packs.iter().any(|p| p.id == c.purchase_id) {
            return Err(Rejected::Exists(format!("purchase {}", c.purchase_id)));
        }
        // Packs older than last month count for nothing any more (billed, and past rollover).
        let (month_start, _) = period_bounds(&period_of(at)).unwrap_or((at, at));
        let (last_start, _) = period_bounds(&period_of(month_start - 1)).unwrap_or((at, at));
        account
            .hour_packs
            .retain(|p| !p.billed || p.bought_at_ms >= last_start);
        account.hour_packs.push(HourPack {
            id: c.purchase_id,
            pack: c.pack,
            name: c.name,
            hours: c.hours,
            price,
            currency,
            bought_at_ms: at,
            billed: false,
        });
        Ok(Applied::Done)
    }

    /// Hours of the packs `org` bought in `[from, to)`, in ms.
    pub fn pack_ms(&self, org: &OrgId, from: i64, to: i64) -> i64 {
        self.billing
            .accounts
            .get(org)
            .into_iter()
            .flat_map(|a| &a.hour_packs)
            .filter(|p| p.bought_at_ms >= from && p.bought_at_ms < to)
            .map(|p| i64::from(p.hours) * 3_600_000)
            .sum()
    }

    /// The invoice lines of `org`'s packs bought before `end` and not billed yet; they are
    /// billed now.
    pub(crate) fn bill_hour_packs(&mut self, org: &OrgId, end: i64) -> Vec<InvoiceLine> {
        let Some(account) = self.billing.accounts.get_mut(org) else {
            return Vec::new();
        };
        let mut lines = Vec::new();
        for p in account
            .hour_packs
            .iter_mut()
            .filter(|p| !p.billed && p.bought_at_ms < end)
        {
            p.billed = true;
            lines.push(InvoiceLine {
                kind: LineKind::Fee,
                description: format!(
                    "{} ({}), bought {}",
                    p.name,
                    p.pack,
                    date_of(p.bought_at_ms)
                ),
                quantity: format!("{} h", p.hours),
                amount: p.price,
                source: None,
            });
        }
        lines
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackRequest {
    /// The household (default: the caller's only organisation).
    #[serde(default)]
    pub org: Option<String>,
    /// A pack id from `GET /v1/billing/plan`'s `hour_packs` (e.g. `pack-10h`).
    pub pack: String,
}

/// A pack bought.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PackBought {
    pub purchase: String,
    pub pack: String,
    pub name: String,
    pub hours: u32,
    #[schema(value_type = String)]
    pub price: Decimal,
    pub currency: String,
    pub bought_at: String,
    /// The household's hours left this month with the pack, in minutes.
    pub left_min: i64,
}

/// `POST /v1/billing/hour-packs`: the household buys a pack of hours — at once on this
/// month's hours, on the next invoice once.
pub async fn buy(
    State(s): State<ApiState>,
    who: Who,
    ApiJson(req): ApiJson<PackRequest>,
) -> Result<Response, Problem> {
    let org = billing_org(&s, &who, req.org.as_deref(), Action::ManageBilling)?;
    let currency = {
        let state = s.cluster.state();
        state
            .organisations
            .get(&org)
            .map(currency_of)
            .ok_or_else(|| Problem::not_found(format!("organisation {org} does not exist")))?
    };
    let books = price_books();
    let book = books
        .book(currency)
        .ok_or_else(|| Problem::internal("no price book for the organisation's currency"))?;
    let pack = book.hour_packs.get(&req.pack).ok_or_else(|| {
        let known: Vec<&str> = book.hour_packs.keys().map(String::as_str).collect();
        Problem::unprocessable(
            "invalid-pack",
            "No such hour pack",
            format!(
                "there is no hour pack `{}`: choose one of {}",
                req.pack,
                known.join(", ")
            ),
        )
    })?;
    let purchase = format!("hp-{:016x}", rand::random::<u64>());
    s.cluster
        .propose_as(
            who.actor(),
            Body::BuyHourPack(pb::BuyHourPack {
                org_id: org.to_string(),
                purchase_id: purchase.clone(),
                pack: req.pack.clone(),
                name: pack.name.clone(),
                hours: pack.hours,
                price: pack.price.to_string(),
                currency: currency.to_string(),
            }),
        )
        .await??;
    let state = s.cluster.state();
    let now = crate::clock::now_ms();
    let (_, fair) = crate::gaming::api::plan_of(&s, &state, &org);
    let (allowed, played, _) =
        crate::gaming::apply::hours_left(&state, &org, fair.hours, fair.rollover, now);
    let bought_at = state
        .billing
        .accounts
        .get(&org)
        .and_then(|a| a.hour_packs.iter().find(|p| p.id == purchase))
        .map_or(now, |p| p.bought_at_ms);
    Ok(created(
        "/v1/billing/plan".to_owned(),
        PackBought {
            purchase,
            pack: req.pack,
            name: pack.name.clone(),
            hours: pack.hours,
            price: pack.price,
            currency: currency.to_string(),
            bought_at: rfc3339(bought_at),
            left_min: (allowed - played).max(0) / 60_000,
        },
    ))
}
