//! The prepaid balance: top-ups checked in `apply`, invoices paid from the balance first,
//! and what a void or a credit note gives back.

use rust_decimal::Decimal;
use vmcloud_proto::pb::{self, command::Body};

use crate::billing::tests::{
    HOUR, apply_at, command, create, d, dec, nov, org, place, replay, run, setup_log,
};
use crate::billing::types::InvoiceStatus;
use crate::state::Rejected;

fn top_up(amount: &str, currency: &str, reference: &str) -> Body {
    Body::TopUpPrepaid(pb::TopUpPrepaid {
        org_id: "org-acme".into(),
        amount: amount.into(),
        currency: currency.into(),
        method: "bank-transfer".into(),
        reference: reference.into(),
    })
}

#[test]
fn invoices_are_paid_from_the_prepaid_balance_first_and_a_void_gives_it_back() {
    let t0 = nov() + 24 * HOUR;
    let mut log = setup_log(t0);
    // Two capped vps-xl: 70.80, less the 50 € trial credit = 20.80 net + 20 % = 24.96.
    for tag in ["a", "b"] {
        log.push(command(t0, create(tag, "vps-xl", pb::Market::OnDemand)));
        log.push(command(t0, place(tag)));
    }
    log.push(command(t0, top_up("10.00", "EUR", "SEPA-1")));
    let mut s = replay(&log);
    assert_eq!(s.billing.accounts[&org()].prepaid, d("10.00"));

    // Refused, and nothing changes: the same reference twice, another currency, no amount.
    let before = s.billing.accounts[&org()].clone();
    let again = apply_at(&mut s, t0, top_up("10.00", "EUR", "SEPA-1"));
    assert!(matches!(again, Err(Rejected::Exists(m)) if m.contains("SEPA-1")));
    let dollars = apply_at(&mut s, t0, top_up("10.00", "USD", "SEPA-2"));
    assert!(matches!(dollars, Err(Rejected::Invalid(m)) if m.contains("EUR")));
    let nothing = apply_at(&mut s, t0, top_up("-5", "EUR", "SEPA-3"));
    assert!(matches!(nothing, Err(Rejected::Invalid(m)) if m.contains("positive")));
    assert_eq!(s.billing.accounts[&org()], before);

    // The run takes 10.00 of the 24.96 from the balance; 14.96 is left to pay.
    apply_at(&mut s, dec() + HOUR, run("2026-11")).unwrap();
    let id = s.billing.runs["2026-11"].invoices[0].clone();
    let inv = s.billing.invoices[&id].clone();
    assert_eq!(inv.totals.total, d("24.96"));
    assert_eq!(inv.totals.prepaid_applied, d("10.00"));
    assert_eq!(inv.totals.amount_due, d("14.96"));
    assert_eq!(inv.status, InvoiceStatus::Open);
    assert_eq!(s.billing.accounts[&org()].prepaid, Decimal::ZERO);

    // Voided, the invoice gives the balance back.
    apply_at(
        &mut s,
        dec() + 2 * HOUR,
        Body::VoidInvoice(pb::VoidInvoice {
            invoice_id: id,
            reason: "billed twice by mistake".into(),
        }),
    )
    .unwrap();
    assert_eq!(s.billing.accounts[&org()].prepaid, d("10.00"));
}

#[test]
fn a_balance_that_covers_the_invoice_pays_it_and_a_credit_note_returns_it() {
    let t0 = nov() + 24 * HOUR;
    let mut log = setup_log(t0);
    for tag in ["a", "b"] {
        log.push(command(t0, create(tag, "vps-xl", pb::Market::OnDemand)));
        log.push(command(t0, place(tag)));
    }
    log.push(command(t0, top_up("100.00", "EUR", "SEPA-9")));
    log.push(command(dec() + HOUR, run("2026-11")));
    let mut s = replay(&log);
    let id = s.billing.runs["2026-11"].invoices[0].clone();
    let inv = s.billing.invoices[&id].clone();
    assert_eq!(inv.totals.prepaid_applied, d("24.96"));
    assert_eq!(inv.totals.amount_due, Decimal::ZERO);
    assert_eq!(inv.status, InvoiceStatus::Paid, "paid from the balance");
    assert_eq!(s.billing.accounts[&org()].prepaid, d("75.04"));
    // A credit note for it puts what the balance paid back.
    apply_at(
        &mut s,
        dec() + 2 * HOUR,
        Body::VoidInvoice(pb::VoidInvoice {
            invoice_id: id,
            reason: "goodwill".into(),
        }),
    )
    .unwrap();
    assert_eq!(s.billing.accounts[&org()].prepaid, d("100.00"));
}
