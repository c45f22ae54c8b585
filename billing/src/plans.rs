//! Monthly plans: billed a month in advance, prorated by the second when they change.
//!
//! An organisation's plan history is a list of spans (a plan, from a time, to a time or on).
//! Each month's invoice carries, for the plans:
//!
//! 1. **the adjustment** of the months it closes: for each plan, the seconds it was held less
//!    the seconds already billed in advance, priced at the plan's monthly price × seconds ÷ the
//!    seconds of that calendar month — positive when a plan was taken or changed to during the
//!    month, negative (a credit for time not used) when the plan billed in advance was left;
//! 2. **the next month in advance**: every plan held at the end of the period, in full.
//!
//! A cancelled plan ends at the end of the month it was cancelled in (it was paid for that
//! month), so a cancellation never makes a negative line; a change of plan does (the old plan's
//! rest of the month, given back). Each line is rounded once, half-even to the cent.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::money::Money;
use crate::prices::PriceBook;
use crate::rating::RatingError;

/// A plan held from `from_ms` to `to_ms` (open: still held).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub plan: String,
    pub from_ms: i64,
    pub to_ms: Option<i64>,
}

/// What a plan line charges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Held less billed in advance over the closed months, in ms (negative: given back).
    Adjustment { held_ms: i64, advanced_ms: i64 },
    /// The next month, in advance.
    Advance,
}

/// One priced plan line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanLine {
    pub plan: String,
    pub name: String,
    pub charge: Charge,
    /// Rounded once.
    pub amount: Money,
}

/// What was billed in advance: these plans, over `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Advanced {
    pub plans: Vec<String>,
    pub from_ms: i64,
    pub to_ms: i64,
}

fn overlap(a: (i64, i64), b: (i64, i64)) -> i64 {
    (a.1.min(b.1) - a.0.max(b.0)).max(0)
}

/// The plan lines of an invoice closing `months` (consecutive calendar months, each
/// `[start, end)`, oldest first) and billing `next` (the month after them) in advance.
pub fn plan_lines(
    book: &PriceBook,
    spans: &[Span],
    advanced: &Advanced,
    months: &[(i64, i64)],
    next: (i64, i64),
) -> Result<Vec<PlanLine>, RatingError> {
    let price = |plan: &str| {
        book.plans.get(plan).ok_or_else(|| RatingError::NoPlan {
            currency: book.currency,
            plan: plan.to_owned(),
        })
    };
    // Per plan: the exact amount and the ms held and advanced.
    let mut adjust: BTreeMap<&str, (Decimal, i64, i64)> = BTreeMap::new();
    for &(start, end) in months {
        let month_ms = Decimal::from(end - start);
        let mut per_plan: BTreeMap<&str, i64> = BTreeMap::new();
        for s in spans {
            let held = overlap((s.from_ms, s.to_ms.unwrap_or(i64::MAX)), (start, end));
            if held > 0 {
                *per_plan.entry(s.plan.as_str()).or_default() += held;
            }
        }
        for plan in &advanced.plans {
            per_plan.entry(plan.as_str()).or_default();
        }
        for (plan, held) in per_plan {
            let advanced_ms = if advanced.plans.iter().any(|p| p == plan) {
                overlap((advanced.from_ms, advanced.to_ms), (start, end))
            } else {
                0
            };
            if held == advanced_ms {
                if held > 0 {
                    let e = adjust.entry(plan).or_default();
                    e.1 += held;
                    e.2 += advanced_ms;
                }
                continue;
            }
            let p = price(plan)?;
            let e = adjust.entry(plan).or_default();
            e.0 += p.monthly * Decimal::from(held - advanced_ms) / month_ms;
            e.1 += held;
            e.2 += advanced_ms;
        }
    }
    let mut lines = Vec::new();
    for (plan, (exact, held_ms, advanced_ms)) in adjust {
        if held_ms == advanced_ms {
            continue;
        }
        let p = price(plan)?;
        lines.push(PlanLine {
            plan: plan.to_owned(),
            name: p.name.clone(),
            charge: Charge::Adjustment {
                held_ms,
                advanced_ms,
            },
            amount: Money::new(exact, book.currency).round_line(),
        });
    }
    let mut ahead: Vec<&str> = spans
        .iter()
        .filter(|s| s.from_ms <= next.0 && s.to_ms.is_none_or(|t| t > next.0))
        .map(|s| s.plan.as_str())
        .collect();
    ahead.sort_unstable();
    ahead.dedup();
    for plan in ahead {
        let p = price(plan)?;
        lines.push(PlanLine {
            plan: plan.to_owned(),
            name: p.name.clone(),
            charge: Charge::Advance,
            amount: Money::new(p.monthly, book.currency).round_line(),
        });
    }
    Ok(lines)
}

/// The plans billed in advance by [`plan_lines`] for `next`.
pub fn advanced_for(spans: &[Span], next: (i64, i64)) -> Advanced {
    let mut plans: Vec<String> = spans
        .iter()
        .filter(|s| s.from_ms <= next.0 && s.to_ms.is_none_or(|t| t > next.0))
        .map(|s| s.plan.clone())
        .collect();
    plans.sort_unstable();
    plans.dedup();
    Advanced {
        plans,
        from_ms: next.0,
        to_ms: next.1,
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::money::Currency;
    use crate::prices::PriceBooks;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    const DAY: i64 = 86_400_000;
    // November 2026 has 30 days, December 31.
    const NOV: (i64, i64) = (1_793_491_200_000, 1_793_491_200_000 + 30 * DAY);
    const DEC: (i64, i64) = (NOV.1, NOV.1 + 31 * DAY);
    const JAN: (i64, i64) = (DEC.1, DEC.1 + 31 * DAY);

    fn span(plan: &str, from: i64, to: Option<i64>) -> Span {
        Span {
            plan: plan.into(),
            from_ms: from,
            to_ms: to,
        }
    }

    fn amounts(lines: &[PlanLine]) -> Vec<(String, Charge, Decimal)> {
        lines
            .iter()
            .map(|l| (l.plan.clone(), l.charge, l.amount.amount))
            .collect()
    }

    #[test]
    fn a_plan_taken_mid_month_is_prorated_then_billed_a_month_ahead() {
        let books = PriceBooks::builtin();
        let eur = books.book(Currency::Eur).unwrap();
        assert_eq!(eur.plans["game-standard"].monthly, d("9.99"));
        // Taken on 16 November at 00:00: 15 of 30 days.
        let spans = [span("game-standard", NOV.0 + 15 * DAY, None)];
        let lines = plan_lines(eur, &spans, &Advanced::default(), &[NOV], DEC).unwrap();
        assert_eq!(
            amounts(&lines),
            vec![
                (
                    "game-standard".into(),
                    Charge::Adjustment {
                        held_ms: 15 * DAY,
                        advanced_ms: 0
                    },
                    d("5.00") // 4.995 → 5.00 (half-even on the cent: 499.5 → 500)
                ),
                ("game-standard".into(), Charge::Advance, d("9.99")),
            ]
        );
        // December, unchanged: only January in advance.
        let advanced = advanced_for(&spans, DEC);
        let lines = plan_lines(eur, &spans, &advanced, &[DEC], JAN).unwrap();
        assert_eq!(
            amounts(&lines),
            vec![("game-standard".into(), Charge::Advance, d("9.99"))]
        );
    }

    #[test]
    fn a_change_gives_back_the_old_plans_rest_and_charges_the_new_ones() {
        let books = PriceBooks::builtin();
        let eur = books.book(Currency::Eur).unwrap();
        // Standard was billed for December in advance; Priority+ from 11 December (21 of 31
        // days left).
        let change = DEC.0 + 10 * DAY;
        let spans = [
            span("game-standard", NOV.0, Some(change)),
            span("game-priority-plus", change, None),
        ];
        let advanced = Advanced {
            plans: vec!["game-standard".into()],
            from_ms: DEC.0,
            to_ms: DEC.1,
        };
        let lines = plan_lines(eur, &spans, &advanced, &[DEC], JAN).unwrap();
        // 17.99 × 21/31 = 12.1867… ; 9.99 × 21/31 = 6.7674…
        assert_eq!(
            amounts(&lines),
            vec![
                (
                    "game-priority-plus".into(),
                    Charge::Adjustment {
                        held_ms: 21 * DAY,
                        advanced_ms: 0
                    },
                    d("12.19")
                ),
                (
                    "game-standard".into(),
                    Charge::Adjustment {
                        held_ms: 10 * DAY,
                        advanced_ms: 31 * DAY
                    },
                    d("-6.77")
                ),
                ("game-priority-plus".into(), Charge::Advance, d("17.99")),
            ]
        );
    }

    #[test]
    fn a_cancelled_plan_runs_to_the_months_end_and_nothing_follows() {
        let books = PriceBooks::builtin();
        let eur = books.book(Currency::Eur).unwrap();
        let spans = [span("support-business", NOV.0, Some(DEC.1))];
        let advanced = advanced_for(&spans, DEC);
        assert_eq!(advanced.plans, vec!["support-business".to_string()]);
        let lines = plan_lines(eur, &spans, &advanced, &[DEC], JAN).unwrap();
        assert!(lines.is_empty(), "{lines:?}");
    }

    #[test]
    fn months_without_a_run_are_caught_up_month_by_month() {
        let books = PriceBooks::builtin();
        let eur = books.book(Currency::Eur).unwrap();
        // Taken on 1 November, nothing billed until the run of December.
        let spans = [span("support-developer", NOV.0, None)];
        let lines = plan_lines(eur, &spans, &Advanced::default(), &[NOV, DEC], JAN).unwrap();
        assert_eq!(
            amounts(&lines),
            vec![
                (
                    "support-developer".into(),
                    Charge::Adjustment {
                        held_ms: 61 * DAY,
                        advanced_ms: 0
                    },
                    d("58.00")
                ),
                ("support-developer".into(), Charge::Advance, d("29.00")),
            ]
        );
    }

    #[test]
    fn an_unpriced_plan_is_an_error_that_names_it() {
        let books = PriceBooks::builtin();
        let eur = books.book(Currency::Eur).unwrap();
        let e = plan_lines(
            eur,
            &[span("gold", NOV.0, None)],
            &Advanced::default(),
            &[NOV],
            DEC,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "no EUR price for plan `gold`: add it to the price books ([EUR.plans])"
        );
    }
}
