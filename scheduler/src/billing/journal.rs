//! The accountants' journal of a period: a CSV of double entries for every finalized invoice
//! and credit note issued in it — the receivable debited with the total, each line credited
//! to its revenue account (discounts and credits debited to theirs), the VAT credited to the
//! VAT account of its scheme. Each document's entries balance; amounts in its currency.

use rust_decimal::Decimal;
use vmcloud_billing::invoice::LineKind;
use vmcloud_billing::tax::Scheme;

use crate::billing::types::{Invoice, InvoiceStatus};
use crate::clock::rfc3339;

/// Accounts (a chart of accounts of the French/Estonian kind; configurable later).
pub const RECEIVABLE: &str = "411 Customers";
pub const REVENUE: &str = "706 Cloud services";
pub const FEES: &str = "708 Other services";
pub const DISCOUNTS: &str = "709 Discounts granted";
pub const CREDITS: &str = "6097 Service credits";

fn vat_account(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Domestic => "44571 VAT collected (EE)",
        Scheme::Oss => "44572 VAT collected (OSS)",
        Scheme::ReverseCharge | Scheme::OutsideEu => "44573 VAT not charged",
    }
}

/// CSV-quoted.
fn q(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

pub const HEADER: &str =
    "date,number,organisation,buyer,country,vat_scheme,account,description,debit,credit,currency\n";

/// The journal rows of `invoices` (finalized ones; drafts have no place in the books).
pub fn journal(invoices: &[&Invoice]) -> String {
    let mut out = String::from(HEADER);
    for inv in invoices {
        if inv.status == InvoiceStatus::Draft {
            continue;
        }
        let number = inv.number.clone().unwrap_or_default();
        let day = inv
            .issued_at_ms
            .map(|m| rfc3339(m)[..10].to_owned())
            .unwrap_or_default();
        let scheme = serde_json::to_value(inv.totals.vat_scheme)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut row = |account: &str, description: &str, amount: Decimal, debit_side: bool| {
            // A negative amount goes to the other side.
            let (debit, credit) = match (debit_side, amount >= Decimal::ZERO) {
                (true, true) | (false, false) => (amount.abs(), Decimal::ZERO),
                _ => (Decimal::ZERO, amount.abs()),
            };
            out.push_str(&format!(
                "{day},{number},{},{},{},{scheme},{},{},{:.2},{:.2},{}\n",
                inv.org,
                q(&inv.buyer.name),
                inv.buyer.country,
                q(account),
                q(description),
                debit,
                credit,
                inv.totals.currency.code()
            ));
        };
        row(RECEIVABLE, "total", inv.totals.total, true);
        for l in &inv.lines {
            let account = match l.kind {
                LineKind::Usage => REVENUE,
                LineKind::Fee => FEES,
                LineKind::Discount => DISCOUNTS,
                LineKind::Credit => CREDITS,
            };
            row(account, &l.description, l.amount, false);
        }
        row(
            vat_account(inv.totals.vat_scheme),
            &format!("VAT {} %", inv.totals.vat_rate.normalize()),
            inv.totals.vat,
            false,
        );
    }
    out
}
