//! The monthly billing run and finalizing (numbering) its drafts, in `apply`.

use std::collections::BTreeMap;
use std::sync::Arc;

use rust_decimal::Decimal;
use vmcloud_billing::invoice::{self, Inputs, InvoiceLine, LineKind, Reduction};
use vmcloud_billing::prices::{PriceBook, PriceBooks};
use vmcloud_billing::rating::{self, Market};
use vmcloud_billing::tax::{self, Buyer, VatRates};
use vmcloud_proto::OrgId;
use vmcloud_proto::pb;

use crate::billing::meters::{self, PUBLIC_IPV4, instance_interval, reservation_market};
use crate::billing::sla;
use crate::billing::types::{
    Credit, CreditKind, DocumentKind, Invoice, InvoiceStatus, RunRecord, UsageInterval, buyer_of,
    credit_order, currency_of, date_of, invoice_id, period_bounds, seller,
};
use crate::clock::rfc3339;
use crate::history::types::HistoryRecord;
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};
use crate::tenancy::types::OrgKind;

/// Days a finalized invoice is due in when the command says nothing.
pub const DEFAULT_DUE_DAYS: u32 = 14;

impl ClusterState {
    /// Bills the period `c.period` (see [`crate::billing`]).
    pub(crate) fn run_billing(&mut self, c: pb::RunBilling, at: i64) -> ApplyResult {
        let (start, end) = period_bounds(&c.period).ok_or_else(|| {
            Rejected::Invalid(format!(
                "`{}` is not a period: write the month as YYYY-MM (e.g. 2026-11)",
                c.period
            ))
        })?;
        if at < end {
            return Err(Rejected::Conflict(format!(
                "period {} has not ended: it can be billed from {}",
                c.period,
                rfc3339(end)
            )));
        }
        let existing = self.billing.runs.get(&c.period).cloned();
        match &existing {
            Some(r) if r.complete => {
                return Err(Rejected::Conflict(format!(
                    "period {} was billed at {} ({} invoices); to correct one, void it or issue a credit note",
                    c.period,
                    rfc3339(r.at_ms),
                    r.invoices.len()
                )));
            }
            Some(r) => {
                let at_cursor = r.cursor.as_ref().map(|o| o.to_string()).unwrap_or_default();
                if c.after_org != at_cursor {
                    return Err(Rejected::Conflict(format!(
                        "the run of {} stands after organisation `{at_cursor}`, not `{}`: its next batch starts there",
                        c.period, c.after_org
                    )));
                }
            }
            None => {
                if !c.after_org.is_empty() {
                    return Err(Rejected::Conflict(format!(
                        "no run of {} has started: its first batch starts at the beginning",
                        c.period
                    )));
                }
                if let Some((other, _)) = self.billing.runs.iter().find(|(_, r)| !r.complete) {
                    return Err(Rejected::Conflict(format!(
                        "the run of {other} is not finished: finish it before starting {}",
                        c.period
                    )));
                }
                if let Some((last, _)) = self.billing.runs.get_max()
                    && *last > c.period
                {
                    return Err(Rejected::Conflict(format!(
                        "period {last} was billed already; periods are billed in order, and usage of {} went into {last}'s invoices",
                        c.period
                    )));
                }
            }
        }
        let books = PriceBooks::parse(&c.prices_toml)
            .map_err(|e| Rejected::Invalid(format!("the run's price books: {e}")))?;
        let rates = VatRates::parse(&c.vat_toml)
            .map_err(|e| Rejected::Invalid(format!("the run's VAT table: {e}")))?;
        let tax_date = date_of(end - 1);
        let mut drafts = Vec::new();
        // This batch's organisations, in id order after the cursor.
        let after = OrgId::parse(&c.after_org).ok();
        let limit = if c.max_orgs == 0 {
            usize::MAX
        } else {
            c.max_orgs as usize
        };
        let orgs: Vec<OrgId> = match &after {
            Some(a) => self
                .organisations
                .range((
                    std::ops::Bound::Excluded(a.clone()),
                    std::ops::Bound::Unbounded,
                ))
                .map(|(id, _)| id.clone())
                .take(limit)
                .collect(),
            None => self.organisations.keys().take(limit).cloned().collect(),
        };
        let complete = orgs.len() < limit
            || orgs.last().is_none_or(|last| {
                self.organisations
                    .range((
                        std::ops::Bound::Excluded(last.clone()),
                        std::ops::Bound::Unbounded,
                    ))
                    .next()
                    .is_none()
            });
        self.cut_meters(&orgs, end, &books);
        for org_id in orgs.clone() {
            let Some(org) = self.organisations.get(&org_id).cloned() else {
                continue;
            };
            let currency = currency_of(&org);
            let book = books.0.get(&currency).ok_or_else(|| {
                Rejected::Invalid(format!("the run's price books have no {currency} book"))
            })?;
            let mut plan_lines = self
                .bill_plans(&org_id, book, end)
                .map_err(|e| Rejected::Invalid(format!("plans of {org_id}: {e}")))?;
            plan_lines.extend(self.bill_hour_packs(&org_id, end));
            // Usage up to the period's end is billed now; what came after waits.
            let all = self.billing.usage.remove(&org_id).unwrap_or_default();
            let (now, later): (Vec<UsageInterval>, Vec<UsageInterval>) =
                all.into_iter().partition(|i| i.from_ms < end);
            let mut billed = Vec::with_capacity(now.len());
            let mut kept: imbl::Vector<UsageInterval> = later.into_iter().collect();
            for i in now {
                if i.to_ms > end {
                    kept.push_back(UsageInterval {
                        from_ms: end,
                        ..i.clone()
                    });
                    billed.push(UsageInterval { to_ms: end, ..i });
                } else {
                    billed.push(i);
                }
            }
            if !kept.is_empty() {
                self.billing.usage.insert(org_id.clone(), kept);
            }
            if billed.is_empty() && plan_lines.is_empty() {
                continue;
            }
            let mut charges = usage_lines(book, &billed, &self.projects)
                .map_err(|e| Rejected::Invalid(format!("rating {}: {e}", org_id)))?;
            charges.extend(plan_lines);
            // The period's usage leaves the state for history (`GET /v1/usage?period=` reads
            // it there).
            if !billed.is_empty() {
                self.history.push(
                    self.applied_index,
                    HistoryRecord::ClosedUsage {
                        org: org_id.clone(),
                        period: c.period.clone(),
                        intervals: billed,
                    },
                );
            }
            let buyer = Buyer {
                country: org.billing_country.clone(),
                business: org.kind == OrgKind::Company,
                vat_id: org.vat_id.clone(),
            };
            let vat = tax::treatment(&rates, &buyer, tax_date)
                .map_err(|e| Rejected::Invalid(format!("VAT for {org_id}: {e}")))?;
            self.credit_incidents(&org_id, book, end, at);
            let mut credits = self
                .billing
                .credits
                .get(&org_id)
                .cloned()
                .unwrap_or_default();
            credits.sort_by(credit_order);
            let usable: Vec<Reduction> = credits
                .iter()
                .filter(|k| {
                    k.currency == currency
                        && k.remaining > Decimal::ZERO
                        && k.expires_at_ms.is_none_or(|e| e > start)
                })
                .map(|k| Reduction {
                    id: k.id.clone(),
                    description: k.description.clone(),
                    available: k.remaining,
                })
                .collect();
            let charged: Decimal = charges.iter().map(|l| l.amount).sum();
            let discounts = self.coupon_discounts(&org_id, charged, currency);
            let inputs = Inputs {
                currency,
                charges,
                discounts,
                credits: usable,
                prepaid: self.prepaid_available(&org_id, currency),
            };
            let assembled = invoice::assemble(&inputs, &vat)
                .map_err(|e| Rejected::Invalid(format!("invoice of {org_id}: {e}")))?;
            let id = invoice_id(&org_id, &c.period, DocumentKind::Invoice, "");
            for (credit, amount) in &assembled.drawn {
                if let Some(k) = credits.iter_mut().find(|k| &k.id == credit) {
                    k.remaining -= *amount;
                    k.drawn.push((id.clone(), *amount));
                }
            }
            self.billing.credits.insert(org_id.clone(), credits);
            self.draw_prepaid(&org_id, assembled.totals.prepaid_applied);
            let draft = Invoice {
                id: id.clone(),
                org: org_id.clone(),
                period: c.period.clone(),
                kind: DocumentKind::Invoice,
                status: InvoiceStatus::Draft,
                number: None,
                corrects: None,
                seller: seller(),
                buyer: buyer_of(&org),
                created_at_ms: at,
                issued_at_ms: None,
                due_at_ms: None,
                tax_date: tax_date.to_string(),
                lines: assembled.lines,
                totals: assembled.totals,
                payments: Vec::new(),
                voided: None,
                failures: Vec::new(),
                next_attempt_ms: None,
                self_billed: false,
            };
            self.billing.invoices.insert(id.clone(), Arc::new(draft));
            self.billing
                .by_org
                .entry(org_id.clone())
                .or_default()
                .push(id.clone());
            drafts.push(id);
        }
        // The run's last batch: each partner's statement of the month as a document.
        if complete {
            drafts.extend(self.partner_documents(&c.period, &rates, tax_date, at)?);
        }
        let mut record = existing.unwrap_or(RunRecord {
            period: c.period.clone(),
            at_ms: at,
            invoices: imbl::Vector::new(),
            cursor: None,
            complete: false,
        });
        record.invoices.extend(drafts.iter().cloned());
        if let Some(last) = orgs.last() {
            record.cursor = Some(last.clone());
        }
        record.complete = complete;
        self.billing.runs.insert(c.period.clone(), record);
        if c.finalize {
            self.finalize_ids(&drafts, c.due_days, at);
        }
        Ok(Applied::Done)
    }

    /// Cuts the open meters of `orgs`' resources at `end`: what ran before it is closed usage
    /// of the period, and the meter goes on from `end`.
    fn cut_meters(&mut self, orgs: &[OrgId], end: i64, books: &PriceBooks) {
        let projects: std::collections::BTreeSet<vmcloud_proto::ProjectId> =
            orgs.iter().flat_map(|o| self.projects_of_org(o)).collect();
        let running: Vec<_> = projects
            .iter()
            .flat_map(|p| self.index.per_project.get(p).into_iter().flatten())
            .filter(|(_, id)| {
                self.instances
                    .get(id)
                    .is_some_and(|i| i.meter_from_ms.is_some_and(|f| f < end))
            })
            .map(|(_, id)| id.clone())
            .collect();
        for id in running {
            let Some(i) = self.instances.get_mut(&id).map(Arc::make_mut) else {
                continue;
            };
            let from = i.meter_from_ms.replace(end).expect("filtered above");
            if let Some(interval) = instance_interval(i, from, end) {
                meters::record(&mut self.billing.usage, &self.projects, interval);
            }
            meters::record_played(&mut self.gaming.played, &self.projects, i, from, end);
        }
        let held: Vec<u32> = self
            .public_ips
            .iter()
            .filter(|(_, h)| h.since_ms < end && projects.contains(&h.project))
            .map(|(a, _)| *a)
            .collect();
        for address in held {
            let Some(h) = self.public_ips.get_mut(&address) else {
                continue;
            };
            let interval = UsageInterval {
                project: h.project.clone(),
                region: h.region.clone(),
                resource: std::net::Ipv4Addr::from(address).to_string(),
                flavor: PUBLIC_IPV4.into(),
                market: Market::OnDemand,
                from_ms: h.since_ms,
                to_ms: end,
            };
            h.since_ms = end;
            meters::record(&mut self.billing.usage, &self.projects, interval);
        }
        // Reservations: every second of their term, used or not.
        let terms = meters::terms(books);
        let ids: Vec<_> = self
            .reservations
            .values()
            .filter(|r| projects.contains(&r.project))
            .filter(|r| r.billed_to_ms.unwrap_or(r.start_ms) < end.min(r.end_ms))
            .map(|r| r.id.clone())
            .collect();
        for id in ids {
            let Some(r) = self.reservations.get_mut(&id) else {
                continue;
            };
            let from = r.billed_to_ms.unwrap_or(r.start_ms);
            let to = end.min(r.end_ms);
            r.billed_to_ms = Some(to);
            let market = reservation_market(r, &terms);
            let r = r.clone();
            for slot in 1..=r.count {
                let interval = UsageInterval {
                    project: r.project.clone(),
                    region: r.region.clone(),
                    resource: format!("{}/{slot}", r.id),
                    flavor: r.flavor.clone(),
                    market,
                    from_ms: from,
                    to_ms: to,
                };
                meters::record(&mut self.billing.usage, &self.projects, interval);
            }
        }
    }

    /// Turns the organisation's SLA incidents that ended before `end` into credits (once:
    /// the incident is forgotten when its credit exists).
    fn credit_incidents(&mut self, org: &OrgId, book: &PriceBook, end: i64, at: i64) {
        let Some(all) = self.billing.incidents.remove(org) else {
            return;
        };
        let (now, later): (Vec<_>, Vec<_>) = all.into_iter().partition(|i| i.to_ms < end);
        if !later.is_empty() {
            self.billing.incidents.insert(org.clone(), later);
        }
        let credits = self.billing.credits.entry(org.clone()).or_default();
        for incident in now {
            let Some(amount) = sla::credit_for(book, &incident) else {
                continue;
            };
            let id = format!("sla-{}-{}", incident.instance, incident.from_ms);
            if credits.iter().any(|k| k.id == id) {
                continue;
            }
            credits.push(Credit {
                id,
                kind: CreditKind::Sla,
                description: format!(
                    "SLA credit: host {} down {} from {} ({})",
                    incident.node,
                    sla::outage_text(incident.to_ms - incident.from_ms),
                    rfc3339(incident.from_ms),
                    incident.instance
                ),
                currency: book.currency,
                amount,
                remaining: amount,
                granted_at_ms: at,
                expires_at_ms: None,
                drawn: Vec::new(),
            });
        }
    }

    /// Finalizes the drafts of a period (all, or the ids named).
    pub(crate) fn finalize_invoices(&mut self, c: pb::FinalizeInvoices, at: i64) -> ApplyResult {
        let run =
            self.billing.runs.get(&c.period).ok_or_else(|| {
                Rejected::NotFound(format!("a billing run of period {}", c.period))
            })?;
        let ids: Vec<String> = if c.invoice_ids.is_empty() {
            run.invoices.iter().cloned().collect()
        } else {
            for id in &c.invoice_ids {
                if !run.invoices.contains(id) {
                    return Err(Rejected::NotFound(format!(
                        "invoice {id} in period {}",
                        c.period
                    )));
                }
            }
            c.invoice_ids
        };
        self.finalize_ids(&ids, c.due_days, at);
        Ok(Applied::Done)
    }

    /// Numbers the drafts among `ids`, in the order given: one number each, the year's next,
    /// so numbers have no gaps (a draft is never numbered twice; anything else is skipped).
    /// Each document, as issued with all its lines, goes to history; the state keeps one line
    /// per kind (what credit notes and the journal need) beside what can still change.
    pub(crate) fn finalize_ids(&mut self, ids: &[String], due_days: u32, at: i64) {
        let year = date_of(at).year();
        let due_days = if due_days == 0 {
            DEFAULT_DUE_DAYS
        } else {
            due_days
        };
        for id in ids {
            let Some(draft) = self
                .billing
                .invoices
                .get(id)
                .filter(|i| i.status == InvoiceStatus::Draft)
            else {
                continue;
            };
            let number = if draft.self_billed {
                // The partner's own series.
                let partner = self
                    .partner_of_staff(&draft.org)
                    .map_or_else(|| draft.org.to_string(), |p| p.id.clone());
                let n = self
                    .billing
                    .self_billed_numbers
                    .entry(format!("{partner}/{year}"))
                    .or_insert(0);
                *n += 1;
                format!("SB-{}-{year}-{n:04}", partner.to_uppercase())
            } else {
                let n = self.billing.numbers.entry(year).or_insert(0);
                *n += 1;
                format!("VMC-{year}-{n:06}")
            };
            let inv = Arc::make_mut(self.billing.invoices.get_mut(id).expect("found above"));
            inv.number = Some(number);
            inv.issued_at_ms = Some(at);
            inv.due_at_ms = Some(at + i64::from(due_days) * 86_400_000);
            inv.status = if inv.totals.amount_due <= Decimal::ZERO {
                InvoiceStatus::Paid
            } else {
                InvoiceStatus::Open
            };
            // A saved card is charged at once; without one, the first reminder is at the due
            // date. A self-billed invoice is VMCloud's to pay: never charged.
            if inv.status == InvoiceStatus::Open && !inv.self_billed {
                let card = self
                    .billing
                    .accounts
                    .get(&inv.org)
                    .is_some_and(|a| a.card.is_some());
                inv.next_attempt_ms = Some(if card {
                    at
                } else {
                    inv.due_at_ms.unwrap_or(at)
                });
            }
            let issued = inv.clone();
            inv.lines = summary_lines(&issued.lines);
            self.history.push(
                self.applied_index,
                HistoryRecord::InvoiceIssued(Box::new(issued)),
            );
        }
    }
}

/// Rated usage as invoice lines: one per resource, flavor and market, described with its
/// project and region.
pub fn usage_lines(
    book: &PriceBook,
    intervals: &[UsageInterval],
    projects: &imbl::OrdMap<vmcloud_proto::ProjectId, crate::tenancy::types::Project>,
) -> Result<Vec<InvoiceLine>, rating::RatingError> {
    let rated: Vec<rating::Interval> = intervals.iter().map(UsageInterval::rated).collect();
    let mut whereabouts: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for i in intervals {
        whereabouts.insert(&i.resource, (i.project.as_str(), &i.region));
    }
    let lines = rating::rate(book, &rated)?;
    Ok(lines
        .into_iter()
        .map(|l| {
            let (project, region) = whereabouts
                .get(l.resource.as_str())
                .copied()
                .unwrap_or_default();
            let project = vmcloud_proto::ProjectId::parse(project)
                .ok()
                .and_then(|p| projects.get(&p).map(|p| p.name.clone()))
                .unwrap_or_else(|| project.to_owned());
            let market = match l.market {
                Market::OnDemand => "on demand".to_owned(),
                Market::Spot => "spot".to_owned(),
                Market::Reserved(m) => format!("reserved {m} months"),
            };
            let what = if l.flavor == PUBLIC_IPV4 {
                format!("Public IPv4 {} ({region}, project {project})", l.resource)
            } else {
                format!(
                    "{} {market}, {} ({region}, project {project}){}",
                    l.flavor,
                    l.resource,
                    if l.capped { ", monthly cap" } else { "" }
                )
            };
            InvoiceLine {
                kind: LineKind::Usage,
                description: what,
                quantity: format!("{} h", hours(l.seconds)),
                amount: l.amount.amount,
                source: None,
            }
        })
        .collect())
}

/// One line per kind (usage, fees, discounts, credits) with the kind's sum: what the state
/// keeps of an issued document (history has each line).
pub fn summary_lines(lines: &[InvoiceLine]) -> Vec<InvoiceLine> {
    let mut out = Vec::new();
    for (kind, noun) in [
        (LineKind::Usage, "Usage"),
        (LineKind::Fee, "Fees"),
        (LineKind::Discount, "Discounts"),
        (LineKind::Credit, "Credits"),
    ] {
        let of_kind: Vec<&InvoiceLine> = lines.iter().filter(|l| l.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        out.push(InvoiceLine {
            kind,
            description: format!(
                "{noun}: {} line{}",
                of_kind.len(),
                if of_kind.len() == 1 { "" } else { "s" }
            ),
            quantity: String::new(),
            amount: of_kind.iter().map(|l| l.amount).sum(),
            source: None,
        });
    }
    out
}

/// Seconds as hours with two decimals.
fn hours(seconds: u64) -> Decimal {
    (Decimal::from(seconds) / Decimal::from(3600)).round_dp(2)
}
