//! Payments, voids and credit notes, credits and the test clock, in `apply`.

use std::sync::Arc;

use rust_decimal::Decimal;
use vmcloud_billing::invoice::{InvoiceLine, LineKind, Totals};
use vmcloud_billing::money::Currency;
use vmcloud_proto::{OrgId, UserId, pb};

use crate::billing::types::{
    Credit, CreditKind, DocumentKind, Invoice, InvoiceStatus, Payment, currency_of, invoice_id,
    positive_amount,
};
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};

/// The trial credit, in the organisation's currency.
pub const TRIAL_CREDIT: Decimal = Decimal::from_parts(50, 0, 0, false, 0);
/// How long the trial credit lasts.
pub const TRIAL_CREDIT_DAYS: i64 = 30;

impl ClusterState {
    fn invoice_mut(&mut self, id: &str) -> Result<&mut Invoice, Rejected> {
        self.billing
            .invoices
            .get_mut(id)
            .map(Arc::make_mut)
            .ok_or_else(|| Rejected::NotFound(format!("invoice {id}")))
    }

    pub(crate) fn record_payment(&mut self, c: pb::RecordPayment, at: i64) -> ApplyResult {
        if !matches!(c.method.as_str(), "bank-transfer" | "card") {
            return Err(Rejected::Invalid(format!(
                "payment method `{}` is not one of: bank-transfer, card",
                c.method
            )));
        }
        if c.reference.trim().is_empty() || c.reference.chars().count() > 200 {
            return Err(Rejected::Invalid(
                "a payment needs its reference (the bank's or the card processor's), at most 200 characters"
                    .into(),
            ));
        }
        let paid = positive_amount("amount", &c.amount)?;
        let inv = self.invoice_mut(&c.invoice_id)?;
        match inv.status {
            InvoiceStatus::Open => {}
            InvoiceStatus::Draft => {
                return Err(Rejected::Conflict(format!(
                    "invoice {} is a draft: finalize it before recording a payment",
                    inv.id
                )));
            }
            InvoiceStatus::Paid => {
                return Err(Rejected::Conflict(format!(
                    "invoice {} is paid already",
                    inv.number.as_deref().unwrap_or(&inv.id)
                )));
            }
            InvoiceStatus::Void => {
                return Err(Rejected::Conflict(format!(
                    "invoice {} is void; nothing is due on it",
                    inv.number.as_deref().unwrap_or(&inv.id)
                )));
            }
        }
        if paid != inv.totals.amount_due {
            return Err(Rejected::Invalid(format!(
                "invoice {} is for {} {}, not {paid}: record the whole amount due",
                inv.number.as_deref().unwrap_or(&inv.id),
                inv.totals.amount_due,
                inv.totals.currency
            )));
        }
        inv.payments.push(Payment {
            method: c.method,
            reference: c.reference,
            amount: paid,
            at_ms: at,
        });
        inv.status = InvoiceStatus::Paid;
        inv.next_attempt_ms = None;
        let org = inv.org.clone();
        self.lift_if_settled(&org);
        Ok(Applied::Done)
    }

    /// Voids an open invoice, or corrects a paid one with a credit note for its whole amount
    /// (a new document in the same number sequence); a finalized invoice itself never
    /// changes but for its status (invariant 12).
    pub(crate) fn void_invoice(&mut self, c: pb::VoidInvoice, at: i64) -> ApplyResult {
        let reason = c.reason.trim().to_owned();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(Rejected::Invalid(
                "say why (a reason of at most 500 characters): it is printed on the credit note"
                    .into(),
            ));
        }
        let inv = self.invoice_mut(&c.invoice_id)?;
        if inv.kind == DocumentKind::CreditNote {
            return Err(Rejected::Conflict(format!(
                "{} is a credit note; credit notes are not voided",
                inv.id
            )));
        }
        match inv.status {
            InvoiceStatus::Draft => Err(Rejected::Conflict(format!(
                "invoice {} is a draft: it has no number yet; finalize it first, or leave it",
                inv.id
            ))),
            InvoiceStatus::Void => Err(Rejected::Conflict(format!(
                "invoice {} is void already",
                inv.number.as_deref().unwrap_or(&inv.id)
            ))),
            InvoiceStatus::Open => {
                inv.status = InvoiceStatus::Void;
                inv.voided = Some((at, reason));
                inv.next_attempt_ms = None;
                let org = inv.org.clone();
                self.lift_if_settled(&org);
                self.restore_credits(&c.invoice_id);
                let back = self.billing.invoices[&c.invoice_id].totals.prepaid_applied;
                self.draw_prepaid(&org, -back);
                Ok(Applied::Done)
            }
            InvoiceStatus::Paid => {
                let original = inv.clone();
                if self
                    .billing
                    .by_org
                    .get(&original.org)
                    .into_iter()
                    .flatten()
                    .filter_map(|id| self.billing.invoices.get(id))
                    .any(|n| n.corrects.as_deref() == Some(&original.id))
                {
                    return Err(Rejected::Conflict(format!(
                        "invoice {} has a credit note already",
                        original.number.as_deref().unwrap_or(&original.id)
                    )));
                }
                self.issue_credit_note(&original, reason, at);
                Ok(Applied::Done)
            }
        }
    }

    fn restore_credits(&mut self, invoice: &str) {
        let Some(org) = self.billing.invoices.get(invoice).map(|i| i.org.clone()) else {
            return;
        };
        if let Some(credits) = self.billing.credits.get_mut(&org) {
            for k in credits.iter_mut() {
                let back: Decimal = k
                    .drawn
                    .iter()
                    .filter(|(i, _)| i == invoice)
                    .map(|(_, a)| *a)
                    .sum();
                k.remaining += back;
                k.drawn.retain(|(i, _)| i != invoice);
            }
        }
    }

    fn issue_credit_note(&mut self, original: &Invoice, reason: String, at: i64) {
        let id = invoice_id(
            &original.org,
            &original.period,
            DocumentKind::CreditNote,
            &original.id,
        );
        let of = original
            .number
            .clone()
            .unwrap_or_else(|| original.id.clone());
        let lines: Vec<InvoiceLine> = original
            .lines
            .iter()
            .map(|l| InvoiceLine {
                kind: l.kind,
                description: format!("{} (credits {of}: {reason})", l.description),
                quantity: l.quantity.clone(),
                amount: -l.amount,
                source: l.source.clone(),
            })
            .collect();
        let t = &original.totals;
        let totals = Totals {
            net: -t.net,
            vat: -t.vat,
            total: -t.total,
            prepaid_applied: -t.prepaid_applied,
            amount_due: -t.amount_due,
            ..t.clone()
        };
        let note = Invoice {
            id: id.clone(),
            kind: DocumentKind::CreditNote,
            status: InvoiceStatus::Draft,
            number: None,
            corrects: Some(original.id.clone()),
            created_at_ms: at,
            issued_at_ms: None,
            due_at_ms: None,
            lines,
            totals,
            payments: Vec::new(),
            voided: None,
            failures: Vec::new(),
            next_attempt_ms: None,
            self_billed: original.self_billed,
            ..original.clone()
        };
        self.billing.invoices.insert(id.clone(), Arc::new(note));
        self.billing
            .by_org
            .entry(original.org.clone())
            .or_default()
            .push(id.clone());
        self.finalize_one(&id, at);
        // What the prepaid balance paid goes back to it; the rest is refunded.
        self.draw_prepaid(&original.org, -t.prepaid_applied);
        // A refund is owed: the note stands as "paid" once issued (the refund is recorded
        // with the payment processor).
        if let Some(n) = self.billing.invoices.get_mut(&id).map(Arc::make_mut) {
            n.status = InvoiceStatus::Paid;
        }
    }

    pub(crate) fn grant_credit(&mut self, c: pb::GrantCredit, at: i64) -> ApplyResult {
        let org = OrgId::parse(&c.org_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        let o = self
            .organisations
            .get(&org)
            .ok_or_else(|| Rejected::NotFound(format!("organisation {org}")))?;
        let kind = CreditKind::parse(&c.kind).ok_or_else(|| {
            Rejected::Invalid(format!(
                "credit kind `{}` is not one of: sla, promotional, trial",
                c.kind
            ))
        })?;
        let value = positive_amount("amount", &c.amount)?;
        let currency = if c.currency.is_empty() {
            currency_of(o)
        } else {
            Currency::parse(&c.currency).ok_or_else(|| {
                Rejected::Invalid(format!(
                    "currency `{}` is not one of: EUR, USD, GBP",
                    c.currency
                ))
            })?
        };
        if currency != currency_of(o) {
            return Err(Rejected::Invalid(format!(
                "organisation {org} is invoiced in {}, so its credits are too",
                currency_of(o)
            )));
        }
        let description = c.description.trim();
        if description.is_empty() || description.chars().count() > 200 {
            return Err(Rejected::Invalid(
                "a credit needs a description (at most 200 characters): it is printed on invoices"
                    .into(),
            ));
        }
        if c.expires_at_unix_ms != 0 && c.expires_at_unix_ms <= at {
            return Err(Rejected::Invalid(
                "the credit would expire before it is granted".into(),
            ));
        }
        let credits = self.billing.credits.entry(org).or_default();
        if credits.iter().any(|k| k.id == c.credit_id) {
            return Err(Rejected::Exists(format!("credit {}", c.credit_id)));
        }
        credits.push(Credit {
            id: c.credit_id,
            kind,
            description: description.to_owned(),
            currency,
            amount: value,
            remaining: value,
            granted_at_ms: at,
            expires_at_ms: (c.expires_at_unix_ms != 0).then_some(c.expires_at_unix_ms),
            drawn: Vec::new(),
        });
        Ok(Applied::Done)
    }

    /// The trial credit of the trial organisations `user` owns, once each, when the user's
    /// email is verified.
    pub(crate) fn grant_trial_credit(&mut self, user: &UserId, at: i64) {
        let orgs: Vec<(OrgId, Currency)> = self
            .organisations
            .values()
            .filter(|o| {
                o.trial
                    && o.members.get(user) == Some(&crate::tenancy::types::Role::Owner)
                    && !self
                        .billing
                        .credits
                        .get(&o.id)
                        .is_some_and(|ks| ks.iter().any(|k| k.kind == CreditKind::Trial))
            })
            .map(|o| (o.id.clone(), currency_of(o)))
            .collect();
        for (org, currency) in orgs {
            self.billing
                .credits
                .entry(org.clone())
                .or_default()
                .push(Credit {
                    id: format!("trial-{org}"),
                    kind: CreditKind::Trial,
                    description: format!(
                        "Trial credit ({TRIAL_CREDIT} {currency}, {TRIAL_CREDIT_DAYS} days)"
                    ),
                    currency,
                    amount: TRIAL_CREDIT,
                    remaining: TRIAL_CREDIT,
                    granted_at_ms: at,
                    expires_at_ms: Some(at + TRIAL_CREDIT_DAYS * 86_400_000),
                    drawn: Vec::new(),
                });
        }
    }

    pub(crate) fn advance_clock(&mut self, c: pb::AdvanceClock, at: i64) -> ApplyResult {
        const MAX: i64 = 400 * 86_400_000;
        if c.by_ms <= 0 || c.by_ms > MAX {
            return Err(Rejected::Invalid(
                "the test clock moves forward only, by at most 400 days at a time".into(),
            ));
        }
        self.billing.clock_offset_ms += c.by_ms;
        self.now_ms = self.now_ms.max(at + c.by_ms);
        Ok(Applied::Done)
    }

    /// Finalizes one draft (a credit note) with the year's next number.
    fn finalize_one(&mut self, id: &str, at: i64) {
        self.finalize_ids(&[id.to_owned()], 0, at);
    }
}

/// What a line is, for CSV and PDF: `usage`, `fee`, `discount`, `credit`.
pub fn line_kind(k: LineKind) -> &'static str {
    match k {
        LineKind::Usage => "usage",
        LineKind::Fee => "fee",
        LineKind::Discount => "discount",
        LineKind::Credit => "credit",
    }
}
