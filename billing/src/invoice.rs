//! An invoice from rated usage, fees, discounts and credits: the lines, the VAT and what is
//! due.
//!
//! Order (documented in docs/billing.md):
//! 1. usage lines (rated, rounded once each) and fee lines;
//! 2. discounts (coupons), each a negative line, never more than what is left;
//! 3. credits (SLA credits first, then promotional credits such as the trial credit, the one
//!    that expires first before the others), each a negative line, never more than what is
//!    left — a credit is not money paid, so it lowers the taxable amount;
//! 4. VAT on what is left (the net), at the buyer's rate, rounded once;
//! 5. prepaid balance, a payment already made, taken from the total (not a line).
//!
//! Invariant 10 holds by construction and is property-tested below: the sum of the lines is
//! rated usage + fees − discounts − credits, to the cent.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::money::{Currency, CurrencyMismatch, Money};
use crate::tax::{Scheme, Treatment, vat_on};

/// What a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineKind {
    Usage,
    Fee,
    Discount,
    Credit,
}

/// One line of an invoice (net of VAT).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceLine {
    pub kind: LineKind,
    pub description: String,
    /// A quantity with its unit (`"12.5 h"`), for the reader.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub quantity: String,
    /// Rounded to the cent; negative for discounts and credits.
    pub amount: Decimal,
    /// The credit or coupon it draws on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A reduction that may be drawn on: a coupon's discount or a credit's balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reduction {
    /// The coupon or credit id.
    pub id: String,
    pub description: String,
    /// At most this much (in the invoice's currency).
    pub available: Decimal,
}

/// What went into an invoice, before it is put together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub currency: Currency,
    /// Usage and fees, each rounded already.
    pub charges: Vec<InvoiceLine>,
    /// Coupons' discounts, in the order they apply.
    pub discounts: Vec<Reduction>,
    /// Credits, in the order they apply.
    pub credits: Vec<Reduction>,
    /// Prepaid balance available.
    pub prepaid: Decimal,
}

/// An invoice's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub currency: Currency,
    /// Sum of the lines (net of VAT).
    pub net: Decimal,
    /// Percent.
    pub vat_rate: Decimal,
    pub vat_scheme: Scheme,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vat_country: Option<String>,
    pub vat: Decimal,
    /// Net + VAT.
    pub total: Decimal,
    /// Taken from the prepaid balance.
    pub prepaid_applied: Decimal,
    /// What is left to pay.
    pub amount_due: Decimal,
    /// The legal mention (reverse charge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mention: Option<String>,
}

/// An assembled invoice: its lines and totals, and how much of each reduction it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    pub lines: Vec<InvoiceLine>,
    pub totals: Totals,
    /// (reduction id, amount drawn), for discounts and credits.
    pub drawn: Vec<(String, Decimal)>,
}

/// Puts an invoice together (see the module's order).
pub fn assemble(inputs: &Inputs, vat: &Treatment) -> Result<Assembled, CurrencyMismatch> {
    let c = inputs.currency;
    let mut lines: Vec<InvoiceLine> = inputs.charges.clone();
    let mut left: Decimal = lines.iter().map(|l| l.amount).sum();
    let mut drawn = Vec::new();
    for (kind, reductions) in [
        (LineKind::Discount, &inputs.discounts),
        (LineKind::Credit, &inputs.credits),
    ] {
        for r in reductions {
            let take = Money::new(r.available.min(left).max(Decimal::ZERO), c)
                .round_line()
                .amount;
            if take.is_zero() {
                continue;
            }
            left -= take;
            drawn.push((r.id.clone(), take));
            lines.push(InvoiceLine {
                kind,
                description: r.description.clone(),
                quantity: String::new(),
                amount: -take,
                source: Some(r.id.clone()),
            });
        }
    }
    let net = Money::sum(
        c,
        lines
            .iter()
            .map(|l| Money::new(l.amount, c))
            .collect::<Vec<_>>()
            .iter(),
    )?;
    let vat_amount = vat_on(net, vat.rate);
    let total = net.checked_add(vat_amount)?;
    let prepaid_applied = inputs
        .prepaid
        .max(Decimal::ZERO)
        .min(total.amount.max(Decimal::ZERO));
    Ok(Assembled {
        totals: Totals {
            currency: c,
            net: net.amount,
            vat_rate: vat.rate,
            vat_scheme: vat.scheme,
            vat_country: vat.country.clone(),
            vat: vat_amount.amount,
            total: total.amount,
            prepaid_applied,
            amount_due: total.amount - prepaid_applied,
            mention: vat.mention.map(str::to_owned),
        },
        lines,
        drawn,
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use proptest::prelude::*;

    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn oss(rate: &str) -> Treatment {
        Treatment {
            scheme: Scheme::Oss,
            rate: d(rate),
            country: Some("FR".into()),
            mention: None,
        }
    }

    fn charge(amount: &str) -> InvoiceLine {
        InvoiceLine {
            kind: LineKind::Usage,
            description: "cx22".into(),
            quantity: String::new(),
            amount: d(amount),
            source: None,
        }
    }

    fn reduction(id: &str, available: &str) -> Reduction {
        Reduction {
            id: id.into(),
            description: id.into(),
            available: d(available),
        }
    }

    #[test]
    fn credits_lower_the_taxable_amount_and_the_prepaid_balance_pays_what_is_left() {
        let inputs = Inputs {
            currency: Currency::Eur,
            charges: vec![charge("80.00"), charge("20.00")],
            discounts: vec![reduction("coupon-10", "10.00")],
            credits: vec![reduction("sla", "5.00"), reduction("trial", "50.00")],
            prepaid: d("30.00"),
        };
        let a = assemble(&inputs, &oss("20")).unwrap();
        assert_eq!(a.totals.net, d("35.00"));
        assert_eq!(a.totals.vat, d("7.00"));
        assert_eq!(a.totals.total, d("42.00"));
        assert_eq!(a.totals.prepaid_applied, d("30.00"));
        assert_eq!(a.totals.amount_due, d("12.00"));
        assert_eq!(
            a.drawn,
            vec![
                ("coupon-10".into(), d("10.00")),
                ("sla".into(), d("5.00")),
                ("trial".into(), d("50.00"))
            ]
        );
    }

    #[test]
    fn a_credit_never_takes_an_invoice_below_zero() {
        let inputs = Inputs {
            currency: Currency::Eur,
            charges: vec![charge("12.34")],
            discounts: vec![],
            credits: vec![reduction("trial", "50.00"), reduction("other", "9.00")],
            prepaid: Decimal::ZERO,
        };
        let a = assemble(&inputs, &oss("24")).unwrap();
        assert_eq!(a.totals.net, Decimal::ZERO);
        assert_eq!(a.totals.amount_due, Decimal::ZERO);
        // What is left of the trial credit stays for later; the second is not touched.
        assert_eq!(a.drawn, vec![("trial".into(), d("12.34"))]);
    }

    #[test]
    fn reverse_charge_carries_its_mention_and_no_vat() {
        let rc = Treatment {
            scheme: Scheme::ReverseCharge,
            rate: Decimal::ZERO,
            country: None,
            mention: Some(crate::tax::REVERSE_CHARGE_MENTION),
        };
        let inputs = Inputs {
            currency: Currency::Eur,
            charges: vec![charge("100.00")],
            discounts: vec![],
            credits: vec![],
            prepaid: Decimal::ZERO,
        };
        let a = assemble(&inputs, &rc).unwrap();
        assert_eq!(a.totals.vat, Decimal::ZERO);
        assert_eq!(a.totals.total, d("100.00"));
        assert!(
            a.totals
                .mention
                .as_deref()
                .unwrap()
                .starts_with("Reverse charge")
        );
    }

    fn cents() -> impl Strategy<Value = Decimal> {
        (0i64..5_000_000).prop_map(|c| Decimal::new(c, 2))
    }

    proptest! {
        /// Invariant 10: the lines add up to rated usage + fees − discounts − credits, to the
        /// cent; VAT is the rate on that; what is due is the total less the prepaid balance.
        #[test]
        fn money_adds_up(
            usage in prop::collection::vec(cents(), 0..20),
            fees in prop::collection::vec(cents(), 0..3),
            discounts in prop::collection::vec(cents(), 0..3),
            credits in prop::collection::vec(cents(), 0..4),
            prepaid in cents(),
            rate in prop::sample::select(vec!["0", "17", "20", "21", "22", "24", "25.5", "27"]),
        ) {
            let mut charges: Vec<InvoiceLine> = usage.iter().map(|a| charge(&a.to_string())).collect();
            charges.extend(fees.iter().map(|a| InvoiceLine { kind: LineKind::Fee, ..charge(&a.to_string()) }));
            let inputs = Inputs {
                currency: Currency::Eur,
                charges,
                discounts: discounts.iter().enumerate().map(|(i, a)| reduction(&format!("c{i}"), &a.to_string())).collect(),
                credits: credits.iter().enumerate().map(|(i, a)| reduction(&format!("k{i}"), &a.to_string())).collect(),
                prepaid,
            };
            let a = assemble(&inputs, &oss(rate)).unwrap();
            let sum: Decimal = a.lines.iter().map(|l| l.amount).sum();
            let rated: Decimal = usage.iter().sum();
            let fee: Decimal = fees.iter().sum();
            let disc: Decimal = a.lines.iter().filter(|l| l.kind == LineKind::Discount).map(|l| -l.amount).sum();
            let cred: Decimal = a.lines.iter().filter(|l| l.kind == LineKind::Credit).map(|l| -l.amount).sum();
            prop_assert_eq!(sum, rated + fee - disc - cred);
            prop_assert_eq!(sum, a.totals.net);
            prop_assert!(a.totals.net >= Decimal::ZERO);
            prop_assert_eq!(a.totals.vat, vat_on(Money::new(sum, Currency::Eur), d(rate)).amount);
            prop_assert_eq!(a.totals.total, a.totals.net + a.totals.vat);
            prop_assert_eq!(a.totals.amount_due + a.totals.prepaid_applied, a.totals.total);
            prop_assert!(a.totals.amount_due >= Decimal::ZERO);
            let drawn: Decimal = a.drawn.iter().map(|(_, x)| *x).sum();
            prop_assert_eq!(drawn, disc + cred);
        }
    }
}
