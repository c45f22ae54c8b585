//! Rating: billable intervals (from the committed log) → priced lines, per second.
//!
//! One line per resource, flavor and market in a period: its seconds summed, priced at the
//! market's hourly price × seconds ÷ 3600, on demand capped at the flavor's monthly price, then
//! rounded once (half-even to the cent). Splitting an interval in two never changes a line:
//! seconds are summed before anything is priced or rounded.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::money::{Currency, Money};
use crate::prices::PriceBook;

/// How the seconds are bought.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Market {
    OnDemand,
    Spot,
    /// Drawing on a commitment of this many months.
    Reserved(u32),
}

/// A span of time a resource was billable (placed → deleted, bound, held), in Unix ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    /// `i-…`, or a public address.
    pub resource: String,
    /// The flavor, or `public-ipv4`.
    pub flavor: String,
    pub market: Market,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// A priced line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub resource: String,
    pub flavor: String,
    pub market: Market,
    pub seconds: u64,
    /// The price per hour it was rated at.
    pub hourly: Money,
    /// Rounded once.
    pub amount: Money,
    /// The monthly cap applied.
    pub capped: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatingError {
    #[error("no {currency} price for flavor `{flavor}`: add it to the price books")]
    NoPrice { currency: Currency, flavor: String },
    #[error(
        "no {currency} price for plan `{plan}`: add it to the price books ([{currency}.plans])"
    )]
    NoPlan { currency: Currency, plan: String },
    #[error("no {currency} discount for a {months}-month commitment")]
    NoTerm { currency: Currency, months: u32 },
    #[error("interval of {resource} ends before it starts ({from_ms} > {to_ms})")]
    Backwards {
        resource: String,
        from_ms: i64,
        to_ms: i64,
    },
}

/// The month a public address's monthly price is spread over, by the second (30 days).
const IPV4_MONTH_SECONDS: i64 = 30 * 24 * 3600;

/// Rates the intervals of one period (a calendar month) in `book`'s currency.
pub fn rate(book: &PriceBook, intervals: &[Interval]) -> Result<Vec<Line>, RatingError> {
    let mut seconds: BTreeMap<(&str, &str, Market), i64> = BTreeMap::new();
    for i in intervals {
        if i.to_ms < i.from_ms {
            return Err(RatingError::Backwards {
                resource: i.resource.clone(),
                from_ms: i.from_ms,
                to_ms: i.to_ms,
            });
        }
        *seconds
            .entry((i.resource.as_str(), i.flavor.as_str(), i.market))
            .or_default() += i.to_ms - i.from_ms;
    }
    let currency = book.currency;
    let mut lines = Vec::with_capacity(seconds.len());
    for ((resource, flavor, market), ms) in seconds {
        let secs = Decimal::new(ms, 3);
        let (hourly, cap) = if flavor == "public-ipv4" {
            // A month's price, by the second.
            let per_hour =
                book.public_ipv4_monthly * Decimal::from(3600) / Decimal::from(IPV4_MONTH_SECONDS);
            (per_hour, Some(book.public_ipv4_monthly))
        } else {
            let p = book
                .flavors
                .get(flavor)
                .ok_or_else(|| RatingError::NoPrice {
                    currency,
                    flavor: flavor.to_owned(),
                })?;
            match market {
                Market::OnDemand => (p.hourly, Some(p.monthly_cap)),
                Market::Spot => (p.spot_hourly(), None),
                Market::Reserved(months) => {
                    let off = book
                        .reserved_discount
                        .get(&months)
                        .ok_or(RatingError::NoTerm { currency, months })?;
                    (p.hourly * (Decimal::ONE - off), None)
                }
            }
        };
        let exact = hourly * secs / Decimal::from(3600);
        let (exact, capped) = match cap {
            Some(c) if exact > c => (c, true),
            _ => (exact, false),
        };
        lines.push(Line {
            resource: resource.to_owned(),
            flavor: flavor.to_owned(),
            market,
            seconds: (ms / 1000) as u64,
            hourly: Money::new(hourly, currency),
            amount: Money::new(exact, currency).round_line(),
            capped,
        });
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::prices::PriceBooks;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn interval(resource: &str, flavor: &str, market: Market, hours: f64) -> Interval {
        Interval {
            resource: resource.into(),
            flavor: flavor.into(),
            market,
            from_ms: 0,
            to_ms: (hours * 3_600_000.0) as i64,
        }
    }

    #[test]
    fn the_books_price_every_flavor_in_three_currencies_and_say_what_is_wrong() {
        let books = PriceBooks::builtin();
        assert_eq!(books.0.len(), 3);
        let eur = books.book(Currency::Eur).unwrap();
        assert_eq!(eur.flavors["vps-s"].hourly, d("0.0076"));
        assert_eq!(eur.flavors["vps-s"].spot_hourly(), d("0.00228"));
        assert_eq!(eur.reserved_discount[&36], d("0.35"));
        assert_eq!(eur.plans["game-priority-plus"].monthly, d("17.99"));
        assert_eq!(eur.hour_packs["pack-10h"].hours, 10);
        assert_eq!(eur.hour_packs["pack-10h"].price, d("4.99"));
        let gbp = books.book(Currency::Gbp).unwrap();
        assert_eq!(gbp.hour_packs["pack-50h"].hours, 50);
        let bad = PriceBooks::parse(
            "[EUR]\npublic_ipv4_monthly = \"0.6\"\nreserved_discount = {}\n[EUR.flavors]\nx = { hourly = \"1\", monthly = \"100\", spot_discount = \"0.9\" }\n",
        )
        .unwrap_err();
        assert_eq!(
            bad.to_string(),
            "the price books at key `EUR.flavors.x.spot_discount`: \"0.9\" is not a fraction from 0.6 to 0.8"
        );
    }

    #[test]
    fn plans_and_packs_are_the_same_in_every_book_and_errors_name_the_key() {
        let book = |code: &str, hours: u32| {
            format!(
                "[{code}]\npublic_ipv4_monthly = \"0.6\"\nreserved_discount = {{}}\n[{code}.hour_packs]\np = {{ name = \"P\", hours = {hours}, price = \"1\" }}\n[{code}.flavors]\n"
            )
        };
        let ok = PriceBooks::parse(&(book("EUR", 10) + &book("USD", 10))).unwrap();
        assert_eq!(ok.book(Currency::Usd).unwrap().hour_packs["p"].hours, 10);
        let e = PriceBooks::parse(&(book("EUR", 10) + &book("USD", 20))).unwrap_err();
        assert!(e.key.ends_with(".hour_packs.p.hours"), "{e}");
        let e = PriceBooks::parse(&book("EUR", 0)).unwrap_err();
        assert_eq!(e.key, "EUR.hour_packs.p.hours", "{e}");
        let e = PriceBooks::parse(
            "[EUR]\npublic_ipv4_monthly = \"0.6\"\nreserved_discount = {}\n[EUR.plans]\nGold = { name = \"G\", monthly = \"1\" }\n[EUR.flavors]\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "EUR.plans.Gold", "{e}");
    }

    #[test]
    fn seconds_are_priced_by_market_and_on_demand_is_capped_by_the_month() {
        let books = PriceBooks::builtin();
        let eur = books.book(Currency::Eur).unwrap();
        let lines = rate(
            eur,
            &[
                interval("i-1", "vps-s", Market::OnDemand, 10.0),
                interval("i-2", "vps-s", Market::OnDemand, 744.0),
                interval("i-3", "vps-s", Market::Spot, 10.0),
                interval("i-4", "vps-s", Market::Reserved(12), 10.0),
                interval("203.0.113.7", "public-ipv4", Market::OnDemand, 360.0),
            ],
        )
        .unwrap();
        let by: BTreeMap<&str, &Line> = lines.iter().map(|l| (l.resource.as_str(), l)).collect();
        assert_eq!(by["i-1"].amount.amount, d("0.08")); // 0.076 → 0.08
        assert_eq!(by["i-1"].seconds, 36_000);
        assert!(by["i-2"].capped);
        assert_eq!(by["i-2"].amount.amount, d("4.75"));
        assert_eq!(by["i-3"].amount.amount, d("0.02")); // 0.0228
        assert_eq!(by["i-4"].amount.amount, d("0.06")); // 0.0608
        assert_eq!(by["203.0.113.7"].amount.amount, d("0.30")); // half a month
        assert!(matches!(
            rate(eur, &[interval("i-9", "vps-zz", Market::OnDemand, 1.0)]),
            Err(RatingError::NoPrice { .. })
        ));
        assert!(matches!(
            rate(eur, &[interval("i-9", "vps-s", Market::Reserved(18), 1.0)]),
            Err(RatingError::NoTerm { months: 18, .. })
        ));
    }

    proptest::proptest! {
        /// Per second and once: an interval cut into any pieces rates to the same line, and no
        /// on-demand line is above its monthly cap.
        #[test]
        fn cutting_an_interval_changes_nothing(
            total_s in 1i64..3_000_000,
            cuts in proptest::collection::vec(0i64..3_000_000, 0..20),
            flavor in proptest::sample::select(vec!["vps-s", "vps-xl", "gpu-h100-8", "game-l40s"]),
        ) {
            let books = PriceBooks::builtin();
            let book = books.book(Currency::Gbp).unwrap();
            let whole = Interval {
                resource: "i-1".into(),
                flavor: flavor.into(),
                market: Market::OnDemand,
                from_ms: 0,
                to_ms: total_s * 1000,
            };
            let mut points: Vec<i64> = cuts.iter().map(|c| c % total_s * 1000).collect();
            points.push(0);
            points.push(total_s * 1000);
            points.sort_unstable();
            let pieces: Vec<Interval> = points
                .windows(2)
                .map(|w| Interval { from_ms: w[0], to_ms: w[1], ..whole.clone() })
                .collect();
            let one = rate(book, std::slice::from_ref(&whole)).unwrap();
            let many = rate(book, &pieces).unwrap();
            proptest::prop_assert_eq!(&one, &many);
            proptest::prop_assert!(one[0].amount.amount <= book.flavors[flavor].monthly_cap);
        }
    }
}
