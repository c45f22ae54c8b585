//! Amounts with their currency, and the one rounding rule.

use std::fmt;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// The currencies price books exist in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Currency {
    Eur,
    Usd,
    Gbp,
}

impl Currency {
    pub fn code(self) -> &'static str {
        match self {
            Currency::Eur => "EUR",
            Currency::Usd => "USD",
            Currency::Gbp => "GBP",
        }
    }

    pub fn parse(code: &str) -> Option<Currency> {
        match code.trim().to_ascii_uppercase().as_str() {
            "EUR" => Some(Currency::Eur),
            "USD" => Some(Currency::Usd),
            "GBP" => Some(Currency::Gbp),
            _ => None,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Two amounts of different currencies were combined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot combine {0} with {1}: amounts of different currencies are never added")]
pub struct CurrencyMismatch(pub Currency, pub Currency);

/// An amount and its currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub amount: Decimal,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Money {
        Money { amount, currency }
    }

    pub fn zero(currency: Currency) -> Money {
        Money::new(Decimal::ZERO, currency)
    }

    /// The rounding rule: half-even (banker's) to the cent, once per line.
    pub fn round_line(self) -> Money {
        Money::new(
            self.amount
                .round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven),
            self.currency,
        )
    }

    pub fn checked_add(self, other: Money) -> Result<Money, CurrencyMismatch> {
        if self.currency != other.currency {
            return Err(CurrencyMismatch(self.currency, other.currency));
        }
        Ok(Money::new(self.amount + other.amount, self.currency))
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, CurrencyMismatch> {
        if self.currency != other.currency {
            return Err(CurrencyMismatch(self.currency, other.currency));
        }
        Ok(Money::new(self.amount - other.amount, self.currency))
    }

    /// This amount times a quantity (hours, seconds, a rate), not rounded.
    pub fn times(self, factor: Decimal) -> Money {
        Money::new(self.amount * factor, self.currency)
    }

    /// The sum of `lines` (each already rounded), all in `currency`.
    pub fn sum<'a>(
        currency: Currency,
        lines: impl IntoIterator<Item = &'a Money>,
    ) -> Result<Money, CurrencyMismatch> {
        lines
            .into_iter()
            .try_fold(Money::zero(currency), |total, l| total.checked_add(*l))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            self.amount
                .round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven),
            self.currency.code()
        )
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn eur(s: &str) -> Money {
        Money::new(Decimal::from_str(s).unwrap(), Currency::Eur)
    }

    #[test]
    fn lines_round_half_even_to_the_cent_and_currencies_never_mix() {
        for (raw, rounded) in [
            ("0.125", "0.12"),
            ("0.135", "0.14"),
            ("0.1250001", "0.13"),
            ("-0.125", "-0.12"),
            ("2.675", "2.68"),
            ("1", "1"),
        ] {
            assert_eq!(eur(raw).round_line(), eur(rounded), "{raw}");
        }
        let usd = Money::new(Decimal::ONE, Currency::Usd);
        assert_eq!(
            eur("1").checked_add(usd).unwrap_err().to_string(),
            "cannot combine EUR with USD: amounts of different currencies are never added"
        );
        assert_eq!(eur("10.005").to_string(), "10.00 EUR");
        assert_eq!(Currency::parse("gbp"), Some(Currency::Gbp));
        // 0.1 + 0.2 is 0.3 exactly: no floats.
        assert_eq!(eur("0.1").checked_add(eur("0.2")).unwrap(), eur("0.3"));
    }

    proptest::proptest! {
        /// Rounding is once and for all: a rounded line rounds to itself, is within half a
        /// cent of the exact amount, and a total is the exact sum of its rounded lines.
        #[test]
        fn rounded_lines_add_up_exactly(cents in proptest::collection::vec(-10_000_000i64..10_000_000, 1..50)) {
            let lines: Vec<Money> = cents
                .iter()
                .map(|c| Money::new(Decimal::new(*c, 5), Currency::Eur).round_line())
                .collect();
            let half = Decimal::new(5, 3);
            for (l, c) in lines.iter().zip(&cents) {
                proptest::prop_assert_eq!(l.round_line(), *l);
                proptest::prop_assert!((l.amount - Decimal::new(*c, 5)).abs() <= half);
            }
            let total = Money::sum(Currency::Eur, &lines).unwrap();
            let exact: Decimal = lines.iter().map(|l| l.amount).sum();
            proptest::prop_assert_eq!(total.amount, exact);
            proptest::prop_assert_eq!(total.round_line(), total);
        }
    }
}
