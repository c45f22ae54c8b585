//! Partners' monthly documents, made by the billing run's last batch from each partner's
//! statement (DESIGN.md §8 "Partners"): when the partner owes VMCloud (its licence fees above
//! its share of its customers' net), an invoice from VMCloud to the partner; when VMCloud owes
//! the partner, a **self-billed invoice** VMCloud issues in the partner's name, numbered in the
//! partner's own series, never charged to it. Either lists the same lines: the share, the base
//! fee, the fees per active user.

use std::sync::Arc;

use rust_decimal::Decimal;
use vmcloud_billing::invoice::{self, Inputs, InvoiceLine, LineKind};
use vmcloud_billing::tax::{self, Buyer, VatRates};

use crate::billing::types::{
    DocumentKind, Invoice, InvoiceStatus, Party, buyer_of, invoice_id, seller,
};
use crate::partners::statement::{Statement, statement_with};
use crate::state::{ClusterState, Rejected};

fn line(kind: LineKind, description: String, quantity: String, amount: Decimal) -> InvoiceLine {
    InvoiceLine {
        kind,
        description,
        quantity,
        amount,
        source: None,
    }
}

/// The lines of a partner's month, signed for the document's seller: VMCloud's invoice
/// (`owes_vmcloud`) charges the fees and credits the share; the self-billed one the reverse.
fn lines(st: &Statement, owes_vmcloud: bool) -> Vec<InvoiceLine> {
    let sign = if owes_vmcloud {
        Decimal::ONE
    } else {
        Decimal::NEGATIVE_ONE
    };
    let fee = if owes_vmcloud {
        LineKind::Fee
    } else {
        LineKind::Credit
    };
    let share = if owes_vmcloud {
        LineKind::Credit
    } else {
        LineKind::Fee
    };
    let mut out = vec![line(
        fee,
        format!("Licence base fee, {}", st.period),
        "1 month".into(),
        sign * st.base_fee,
    )];
    if st.active_user_fees != Decimal::ZERO {
        out.push(line(
            fee,
            format!(
                "Monthly active users, {} × {} {}",
                st.active_users, st.per_active_user, st.currency
            ),
            format!("{} users", st.active_users),
            sign * st.active_user_fees,
        ));
    }
    if st.partner_keeps != Decimal::ZERO {
        out.push(line(
            share,
            format!(
                "Partner's share: {} % of its customers' invoiced net {} {}",
                st.partner_share_percent, st.customers_net, st.currency
            ),
            format!("{} customers", st.customers.len()),
            -sign * st.partner_keeps,
        ));
    }
    out
}

impl ClusterState {
    /// Each partner's document for `period`, as drafts the run finalizes with its customers'
    /// (ids given back). None for a partner with no terms, or whose month comes to nothing.
    pub(crate) fn partner_documents(
        &mut self,
        period: &str,
        rates: &VatRates,
        tax_date: time::Date,
        at: i64,
    ) -> Result<Vec<String>, Rejected> {
        let partners: Vec<_> = self.partners.values().cloned().collect();
        let mut made = Vec::new();
        for p in partners {
            // Its customers' drafts of this run count: they are finalized with this document.
            let Some(st) = statement_with(self, &p, period, at, true) else {
                continue;
            };
            if st.licence_fees == Decimal::ZERO && st.partner_keeps == Decimal::ZERO {
                continue;
            }
            let Some(staff) = self.organisations.get(&p.staff_org).cloned() else {
                continue;
            };
            let id = invoice_id(&p.staff_org, period, DocumentKind::Invoice, "partner");
            if self.billing.invoices.contains_key(&id) {
                continue;
            }
            let owes_vmcloud = st.balance <= Decimal::ZERO;
            // Between VMCloud and a business partner; the same treatment either way (within
            // the EU with a VAT id: reverse charge).
            let vat = tax::treatment(
                rates,
                &Buyer {
                    country: staff.billing_country.clone(),
                    business: true,
                    vat_id: staff.vat_id.clone(),
                },
                tax_date,
            )
            .map_err(|e| Rejected::Invalid(format!("VAT for partner {}: {e}", p.id)))?;
            let inputs = Inputs {
                currency: p.licence.currency,
                charges: lines(&st, owes_vmcloud),
                discounts: Vec::new(),
                credits: Vec::new(),
                prepaid: Decimal::ZERO,
            };
            let assembled = invoice::assemble(&inputs, &vat)
                .map_err(|e| Rejected::Invalid(format!("statement of partner {}: {e}", p.id)))?;
            let partner_party = Party {
                name: p.name.clone(),
                ..buyer_of(&staff)
            };
            let (sell, buy) = if owes_vmcloud {
                (seller(), partner_party)
            } else {
                (partner_party, seller())
            };
            let draft = Invoice {
                id: id.clone(),
                org: p.staff_org.clone(),
                period: period.to_owned(),
                kind: DocumentKind::Invoice,
                status: InvoiceStatus::Draft,
                number: None,
                corrects: None,
                seller: sell,
                buyer: buy,
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
                self_billed: !owes_vmcloud,
            };
            self.billing.invoices.insert(id.clone(), Arc::new(draft));
            self.billing
                .by_org
                .entry(p.staff_org.clone())
                .or_default()
                .push(id.clone());
            made.push(id);
        }
        Ok(made)
    }
}
