//! What billing keeps in the replicated state: closed usage not invoiced yet, credits,
//! invoices, runs and the invoice numbers given.

use std::collections::BTreeMap;
use std::sync::Arc;

use imbl::{OrdMap, Vector};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vmcloud_billing::invoice::{InvoiceLine, Totals};
use vmcloud_billing::money::Currency;
use vmcloud_billing::rating::Market;
use vmcloud_proto::{OrgId, ProjectId};

use crate::tenancy::types::Organisation;

/// A span a resource was billable, from committed commands' times (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageInterval {
    pub project: ProjectId,
    pub region: String,
    /// `i-…`, `r-…` (a reservation) or a public address.
    pub resource: String,
    /// The flavor, or `public-ipv4`.
    pub flavor: String,
    pub market: Market,
    pub from_ms: i64,
    pub to_ms: i64,
}

impl UsageInterval {
    /// The interval as the pure rating takes it.
    pub fn rated(&self) -> vmcloud_billing::rating::Interval {
        vmcloud_billing::rating::Interval {
            resource: self.resource.clone(),
            flavor: self.flavor.clone(),
            market: self.market,
            from_ms: self.from_ms,
            to_ms: self.to_ms,
        }
    }
}

/// Why a credit was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CreditKind {
    /// A host the instance was on was declared down (DESIGN.md §8; never for spot).
    Sla,
    /// The sign-up trial (50 in the organisation's currency, 30 days).
    Trial,
    /// Goodwill or a promotion, granted by an operator.
    Promotional,
}

impl CreditKind {
    pub fn parse(s: &str) -> Option<CreditKind> {
        match s {
            "sla" => Some(CreditKind::Sla),
            "trial" => Some(CreditKind::Trial),
            "promotional" => Some(CreditKind::Promotional),
            _ => None,
        }
    }
}

/// Credit an organisation may draw on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    pub id: String,
    pub kind: CreditKind,
    pub description: String,
    pub currency: Currency,
    pub amount: Decimal,
    /// What is left of it.
    pub remaining: Decimal,
    pub granted_at_ms: i64,
    /// It covers usage of periods that start before this time.
    pub expires_at_ms: Option<i64>,
    /// The invoices that drew on it, with how much.
    #[serde(default)]
    pub drawn: Vec<(String, Decimal)>,
}

/// The order credits apply in: SLA credits, then the one expiring first, then the oldest.
pub fn credit_order(a: &Credit, b: &Credit) -> std::cmp::Ordering {
    (a.kind != CreditKind::Sla)
        .cmp(&(b.kind != CreditKind::Sla))
        .then(
            a.expires_at_ms
                .unwrap_or(i64::MAX)
                .cmp(&b.expires_at_ms.unwrap_or(i64::MAX)),
        )
        .then(a.granted_at_ms.cmp(&b.granted_at_ms))
        .then(a.id.cmp(&b.id))
}

/// Where an invoice stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum InvoiceStatus {
    /// Computed by a run, waiting to be finalized (numbered); operators may look at it
    /// first (`vmcloud billing run --draft`).
    Draft,
    /// Finalized and numbered, not paid yet: immutable from here on.
    Open,
    Paid,
    /// Cancelled after it was finalized (it keeps its number).
    Void,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "draft",
            InvoiceStatus::Open => "open",
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::Void => "void",
        }
    }
}

/// An invoice, or a credit note correcting one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DocumentKind {
    Invoice,
    CreditNote,
}

/// A seller or a buyer, as an invoice names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Party {
    pub name: String,
    /// Postal address lines.
    pub address: Vec<String>,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vat_id: Option<String>,
}

/// The seller on every invoice.
pub fn seller() -> Party {
    Party {
        name: "VMCloud OÜ".into(),
        address: vec![
            "Narva mnt 5".into(),
            "10117 Tallinn".into(),
            "Estonia".into(),
        ],
        country: "EE".into(),
        vat_id: Some("EE102345678".into()),
    }
}

/// A payment received against an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Payment {
    /// `bank-transfer` or `card`.
    pub method: String,
    pub reference: String,
    #[schema(value_type = String)]
    pub amount: Decimal,
    pub at_ms: i64,
}

/// An invoice: its figures are computed once by a run and never change after it is
/// finalized; only its status (paid, void) moves on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub id: String,
    pub org: OrgId,
    /// `YYYY-MM`.
    pub period: String,
    pub kind: DocumentKind,
    pub status: InvoiceStatus,
    /// `VMC-2026-000001`, once finalized.
    pub number: Option<String>,
    /// A credit note: the invoice it corrects.
    pub corrects: Option<String>,
    pub seller: Party,
    pub buyer: Party,
    pub created_at_ms: i64,
    pub issued_at_ms: Option<i64>,
    pub due_at_ms: Option<i64>,
    /// The tax point: the period's last day (`YYYY-MM-DD`).
    pub tax_date: String,
    pub lines: Vec<InvoiceLine>,
    pub totals: Totals,
    pub payments: Vec<Payment>,
    pub voided: Option<(i64, String)>,
    /// Failed charges (time, reason), for dunning.
    #[serde(default)]
    pub failures: Vec<(i64, String)>,
    /// When the next charge (or reminder) is due, while it is open.
    #[serde(default)]
    pub next_attempt_ms: Option<i64>,
    /// A self-billed invoice: VMCloud issues it in the name of its seller (a partner, for its
    /// share) and is the one to pay it; it is never charged to the partner.
    #[serde(default)]
    pub self_billed: bool,
}

/// A saved card (what may be shown of it; the number stays with the processor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    pub payment_method: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: u32,
    pub exp_year: u32,
    pub saved_at_ms: i64,
}

/// Why and since when an organisation is suspended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    pub since_ms: i64,
    pub reason: String,
}

/// An organisation's way to pay, and its suspension for unpaid invoices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The payment processor's customer (Stripe `cus_…`).
    pub processor_customer: Option<String>,
    pub card: Option<Card>,
    pub suspended: Option<Suspension>,
    /// Budget alerts: amounts in the organisation's currency.
    #[serde(default)]
    pub budget_thresholds: Vec<Decimal>,
    /// The alerts sent: (period, threshold); only the latest period's are kept.
    #[serde(default)]
    pub budget_alerts_sent: Vec<(String, Decimal)>,
    /// Coupons redeemed that still apply.
    #[serde(default)]
    pub coupons: Vec<Redeemed>,
    /// Money paid in advance and not used yet, in `prepaid_currency` (see
    /// [`crate::billing::prepaid`]).
    #[serde(default)]
    pub prepaid: Decimal,
    #[serde(default)]
    pub prepaid_currency: Option<Currency>,
    /// Top-ups received, oldest first.
    #[serde(default)]
    pub top_ups: Vec<TopUp>,
    /// Monthly plans held and not billed to their end yet (see [`crate::billing::plans`]).
    #[serde(default)]
    pub plan_spans: Vec<PlanSpan>,
    /// The plans the last run billed in advance, and for which month.
    #[serde(default)]
    pub plans_advanced: Option<PlansAdvanced>,
    /// Plans are billed up to here (the end of the last period a run billed).
    #[serde(default)]
    pub plans_billed_to_ms: Option<i64>,
    /// Gaming hour packs bought this month and last (see [`crate::billing::hour_packs`]).
    #[serde(default)]
    pub hour_packs: Vec<HourPack>,
}

/// A pack of gaming hours a household bought.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourPack {
    /// `hp-<hex>`.
    pub id: String,
    pub pack: String,
    pub name: String,
    pub hours: u32,
    /// In `currency`, at purchase.
    pub price: Decimal,
    pub currency: Currency,
    pub bought_at_ms: i64,
    /// Whether an invoice carried it.
    pub billed: bool,
}

/// A monthly plan held from `from_ms` to `to_ms` (open: still held).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSpan {
    pub plan: String,
    pub from_ms: i64,
    pub to_ms: Option<i64>,
}

/// Plans billed in advance over `[from_ms, to_ms)` (a calendar month).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlansAdvanced {
    pub plans: Vec<String>,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// Money paid in advance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopUp {
    pub at_ms: i64,
    pub amount: Decimal,
    /// `card` or `bank-transfer`.
    pub method: String,
    pub reference: String,
}

/// What a coupon takes off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Off {
    /// Percent of the invoice's charges.
    Percent(Decimal),
    /// An amount in the coupon's currency.
    Amount(Decimal, Currency),
}

/// A coupon, by its code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coupon {
    pub code: String,
    pub off: Off,
    /// Invoices it applies to (`None`: every one).
    pub invoices: Option<u32>,
    pub max_redemptions: Option<u32>,
    pub redemptions: u32,
    pub expires_at_ms: Option<i64>,
    pub created_at_ms: i64,
}

/// A coupon an organisation redeemed, and how many invoices it still applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redeemed {
    pub code: String,
    pub off: Off,
    /// `None`: forever.
    pub invoices_left: Option<u32>,
    pub redeemed_at_ms: i64,
}

/// Dunning: retries after 1, 3 and 7 days from the first failure, then suspension.
pub const RETRY_DAYS: [i64; 3] = [1, 3, 7];

/// A billing run of one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub period: String,
    pub at_ms: i64,
    /// The drafts it made (a persistent vector: a batch appends without copying the others).
    pub invoices: Vector<String>,
    /// The last organisation billed so far (the next batch starts after it).
    #[serde(default)]
    pub cursor: Option<OrgId>,
    /// Every organisation has been billed.
    #[serde(default = "complete")]
    pub complete: bool,
}

fn complete() -> bool {
    true
}

/// Billing's part of the state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BillingBook {
    /// Closed usage not invoiced yet, by organisation.
    pub usage: OrdMap<OrgId, Vector<UsageInterval>>,
    pub credits: OrdMap<OrgId, Vec<Credit>>,
    pub invoices: OrdMap<String, Arc<Invoice>>,
    /// Each organisation's invoices, oldest first.
    pub by_org: OrdMap<OrgId, Vec<String>>,
    /// Runs by period.
    pub runs: OrdMap<String, RunRecord>,
    /// The last number given, per year.
    pub numbers: BTreeMap<i32, u64>,
    /// The test clock's lead over the proposers' own clocks (0 on a real cluster).
    pub clock_offset_ms: i64,
    /// Organisations' payment methods and suspensions.
    #[serde(default)]
    pub accounts: OrdMap<OrgId, Account>,
    /// Coupons by code (upper case).
    #[serde(default)]
    pub coupons: OrdMap<String, Coupon>,
    /// SLA incidents that ended and are not credited yet, by organisation.
    #[serde(default)]
    pub incidents: OrdMap<OrgId, Vec<crate::billing::sla::Incident>>,
    /// Self-billed invoices' last numbers, per partner and year (`edgenet/2026`): each
    /// partner's own series, as self-billing asks.
    #[serde(default)]
    pub self_billed_numbers: BTreeMap<String, u64>,
}

/// The currency an organisation is invoiced in: pounds in the United Kingdom, dollars in the
/// United States, euros everywhere else.
pub fn currency_of(org: &Organisation) -> Currency {
    match org.billing_country.as_str() {
        "GB" => Currency::Gbp,
        "US" => Currency::Usd,
        _ => Currency::Eur,
    }
}

/// The buyer as an invoice names it.
pub fn buyer_of(org: &Organisation) -> Party {
    Party {
        name: org.name.clone(),
        address: org.billing_address.clone(),
        country: org.billing_country.clone(),
        vat_id: org.vat_id.clone(),
    }
}

/// A document's id: derived from what it is, so replaying the log gives the same ids.
pub fn invoice_id(org: &OrgId, period: &str, kind: DocumentKind, of: &str) -> String {
    let mut h = Sha256::new();
    h.update(org.as_str());
    h.update([0]);
    h.update(period);
    h.update([0]);
    h.update(if kind == DocumentKind::Invoice {
        "invoice"
    } else {
        "credit-note"
    });
    h.update([0]);
    h.update(of);
    let d = h.finalize();
    let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("inv-{hex}")
}

/// A calendar month `YYYY-MM`: its first millisecond and the next month's.
pub fn period_bounds(period: &str) -> Option<(i64, i64)> {
    let (y, m) = period.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let year: i32 = y.parse().ok()?;
    let month: u8 = m.parse().ok()?;
    let month = time::Month::try_from(month).ok()?;
    let start = time::Date::from_calendar_date(year, month, 1).ok()?;
    let next = if month == time::Month::December {
        time::Date::from_calendar_date(year + 1, time::Month::January, 1).ok()?
    } else {
        time::Date::from_calendar_date(year, month.next(), 1).ok()?
    };
    let ms = |d: time::Date| d.midnight().assume_utc().unix_timestamp() * 1000;
    Some((ms(start), ms(next)))
}

/// The period (`YYYY-MM`) a time falls in (UTC).
pub fn period_of(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}", t.year(), u8::from(t.month()))
}

/// The date (UTC) of a time.
pub fn date_of(ms: i64) -> time::Date {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date()
}

/// A positive amount with at most two decimals, as commands carry amounts (`what` names the
/// field in the refusal).
pub fn positive_amount(
    what: &str,
    text: &str,
) -> Result<Decimal, crate::state::rejected::Rejected> {
    text.trim()
        .parse::<Decimal>()
        .ok()
        .filter(|d| *d > Decimal::ZERO && d.scale() <= 2)
        .ok_or_else(|| {
            crate::state::rejected::Rejected::Invalid(format!(
                "{what} `{text}` is not an amount: write a positive decimal with at most two decimals (e.g. 25.00)"
            ))
        })
}
