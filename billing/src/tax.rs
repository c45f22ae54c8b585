//! EU VAT for a seller in Estonia: which rate applies to a buyer on a date, and the mention
//! an invoice must carry.

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Serialize;
use time::Date;

use crate::money::Money;

/// The seller's country.
pub const SELLER_COUNTRY: &str = "EE";

/// What a reverse-charged invoice must say (Council Directive 2006/112/EC, article 196).
pub const REVERSE_CHARGE_MENTION: &str = "Reverse charge: VAT to be accounted for by the recipient (Article 196, Council Directive 2006/112/EC)";

/// The built-in table: `config/vat.toml`.
pub const BUILTIN_TABLE: &str = include_str!("../../config/vat.toml");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaxError {
    #[error("the VAT table at key `{key}`: {why}")]
    Table { key: String, why: String },
    #[error("no VAT rate for {country} on {date}: the table starts later")]
    NoRate { country: String, date: Date },
    #[error("`{0}` is not a country code (two letters, ISO 3166-1, e.g. FR)")]
    BadCountry(String),
}

/// Every EU country's standard rate over time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VatRates {
    /// Country → (from, percent), oldest first.
    rates: BTreeMap<String, Vec<(Date, Decimal)>>,
}

impl VatRates {
    /// Reads a table as `config/vat.toml` writes it; errors name the key.
    pub fn parse(text: &str) -> Result<VatRates, TaxError> {
        let table: BTreeMap<String, Vec<(String, String)>> =
            toml::from_str(text).map_err(|e| TaxError::Table {
                key: String::new(),
                why: e.message().to_owned(),
            })?;
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let mut rates = BTreeMap::new();
        for (country, entries) in table {
            if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(TaxError::Table {
                    key: country,
                    why: "a country is two capital letters (ISO 3166-1)".into(),
                });
            }
            let mut list = Vec::with_capacity(entries.len());
            for (n, (from, percent)) in entries.iter().enumerate() {
                let key = format!("{country}[{n}]");
                let from = Date::parse(from, format).map_err(|_| TaxError::Table {
                    key: key.clone(),
                    why: format!("{from:?} is not a date (YYYY-MM-DD)"),
                })?;
                let percent = Decimal::from_str(percent)
                    .ok()
                    .filter(|p| *p >= Decimal::ZERO && *p < Decimal::ONE_HUNDRED)
                    .ok_or_else(|| TaxError::Table {
                        key: key.clone(),
                        why: format!("{percent:?} is not a percentage"),
                    })?;
                if list.last().is_some_and(|(d, _)| *d >= from) {
                    return Err(TaxError::Table {
                        key,
                        why: "dates must grow".into(),
                    });
                }
                list.push((from, percent));
            }
            rates.insert(country, list);
        }
        Ok(VatRates { rates })
    }

    pub fn builtin() -> VatRates {
        VatRates::parse(BUILTIN_TABLE).expect("config/vat.toml is valid")
    }

    /// Whether `country` is an EU member state (it is in the table).
    pub fn in_eu(&self, country: &str) -> bool {
        self.rates.contains_key(country)
    }

    /// `country`'s standard rate (percent) on `date`.
    pub fn standard_rate(&self, country: &str, date: Date) -> Result<Decimal, TaxError> {
        self.rates
            .get(country)
            .and_then(|list| list.iter().rev().find(|(from, _)| *from <= date))
            .map(|(_, p)| *p)
            .ok_or_else(|| TaxError::NoRate {
                country: country.to_owned(),
                date,
            })
    }

    pub fn countries(&self) -> impl Iterator<Item = &str> {
        self.rates.keys().map(String::as_str)
    }
}

/// Who is invoiced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buyer {
    /// ISO 3166-1 alpha-2 (`FR`).
    pub country: String,
    pub business: bool,
    /// An EU VAT id (checked elsewhere; here: present or not).
    pub vat_id: Option<String>,
}

/// Why a rate applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// Estonian VAT: an Estonian buyer, business or consumer.
    Domestic,
    /// A consumer (or a business without a VAT id) elsewhere in the EU: their country's VAT,
    /// declared through the One-Stop Shop.
    Oss,
    /// An EU business with a VAT id outside Estonia: 0 %, the buyer accounts for the VAT.
    ReverseCharge,
    /// Outside the EU: no EU VAT.
    OutsideEu,
}

/// The VAT an invoice line carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Treatment {
    pub scheme: Scheme,
    /// Percent.
    pub rate: Decimal,
    /// Whose VAT it is (none outside the EU or reverse-charged).
    pub country: Option<String>,
    /// What the invoice must say.
    pub mention: Option<&'static str>,
}

/// The VAT for `buyer` on `date` (DESIGN.md §8).
pub fn treatment(rates: &VatRates, buyer: &Buyer, date: Date) -> Result<Treatment, TaxError> {
    let country = buyer.country.trim().to_ascii_uppercase();
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(TaxError::BadCountry(buyer.country.clone()));
    }
    let vat_id = buyer
        .vat_id
        .as_deref()
        .is_some_and(|v| !v.trim().is_empty());
    let (scheme, vat_country) = if country == SELLER_COUNTRY {
        (Scheme::Domestic, Some(country))
    } else if !rates.in_eu(&country) {
        (Scheme::OutsideEu, None)
    } else if buyer.business && vat_id {
        (Scheme::ReverseCharge, None)
    } else {
        (Scheme::Oss, Some(country))
    };
    let rate = match &vat_country {
        Some(c) => rates.standard_rate(c, date)?,
        None => Decimal::ZERO,
    };
    Ok(Treatment {
        scheme,
        rate,
        country: vat_country,
        mention: (scheme == Scheme::ReverseCharge).then_some(REVERSE_CHARGE_MENTION),
    })
}

/// The VAT on a net amount at `rate` percent, rounded as a line is.
pub fn vat_on(net: Money, rate: Decimal) -> Money {
    net.times(rate / Decimal::ONE_HUNDRED).round_line()
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;
    use crate::money::Currency;

    fn buyer(country: &str, business: bool, vat_id: Option<&str>) -> Buyer {
        Buyer {
            country: country.into(),
            business,
            vat_id: vat_id.map(str::to_owned),
        }
    }

    #[test]
    fn the_table_has_every_member_state_and_its_dated_rates() {
        let rates = VatRates::builtin();
        assert_eq!(rates.countries().count(), 27);
        let d = |s: &str| Decimal::from_str(s).unwrap();
        for (country, day, rate) in [
            ("EE", date!(2025 - 06 - 30), "22"),
            ("EE", date!(2025 - 07 - 01), "24"),
            ("FI", date!(2024 - 08 - 31), "24"),
            ("FI", date!(2026 - 11 - 30), "25.5"),
            ("DE", date!(2020 - 08 - 01), "16"),
            ("DE", date!(2026 - 11 - 30), "19"),
            ("SK", date!(2026 - 11 - 30), "23"),
            ("RO", date!(2026 - 11 - 30), "21"),
            ("HU", date!(2026 - 11 - 30), "27"),
            ("LU", date!(2026 - 11 - 30), "17"),
        ] {
            assert_eq!(
                rates.standard_rate(country, day).unwrap(),
                d(rate),
                "{country} {day}"
            );
        }
        assert!(matches!(
            rates.standard_rate("FR", date!(2010 - 01 - 01)),
            Err(TaxError::NoRate { .. })
        ));
        let bad = VatRates::parse("FR = [[\"2016-13-01\", \"20\"]]").unwrap_err();
        assert_eq!(
            bad.to_string(),
            "the VAT table at key `FR[0]`: \"2016-13-01\" is not a date (YYYY-MM-DD)"
        );
    }

    #[test]
    fn each_tax_case_gets_its_rate_and_mention() {
        let rates = VatRates::builtin();
        let on = date!(2026 - 11 - 30);
        let d = |s: &str| Decimal::from_str(s).unwrap();
        // (buyer, scheme, rate, whose VAT, mention)
        let cases = [
            (
                buyer("FR", false, None),
                Scheme::Oss,
                "20",
                Some("FR"),
                false,
            ),
            (
                buyer("DE", true, None),
                Scheme::Oss,
                "19",
                Some("DE"),
                false,
            ),
            (
                buyer("DE", true, Some("DE123456789")),
                Scheme::ReverseCharge,
                "0",
                None,
                true,
            ),
            (
                buyer("IE", true, Some("IE6388047V")),
                Scheme::ReverseCharge,
                "0",
                None,
                true,
            ),
            (
                buyer("EE", true, Some("EE100931558")),
                Scheme::Domestic,
                "24",
                Some("EE"),
                false,
            ),
            (
                buyer("EE", false, None),
                Scheme::Domestic,
                "24",
                Some("EE"),
                false,
            ),
            (buyer("US", true, None), Scheme::OutsideEu, "0", None, false),
            (
                buyer("CH", false, None),
                Scheme::OutsideEu,
                "0",
                None,
                false,
            ),
            (
                buyer("GB", true, Some("GB123456789")),
                Scheme::OutsideEu,
                "0",
                None,
                false,
            ),
            (
                buyer("fi", false, Some("  ")),
                Scheme::Oss,
                "25.5",
                Some("FI"),
                false,
            ),
        ];
        for (b, scheme, rate, country, mention) in cases {
            let t = treatment(&rates, &b, on).unwrap();
            assert_eq!(t.scheme, scheme, "{b:?}");
            assert_eq!(t.rate, d(rate), "{b:?}");
            assert_eq!(t.country.as_deref(), country, "{b:?}");
            assert_eq!(t.mention.is_some(), mention, "{b:?}");
        }
        assert_eq!(
            treatment(&rates, &buyer("France", false, None), on).unwrap_err(),
            TaxError::BadCountry("France".into())
        );
        // VAT on a line: rounded half-even to the cent.
        let net = Money::new(d("10.125"), Currency::Eur);
        assert_eq!(vat_on(net, d("20")).amount, d("2.02"));
        assert_eq!(
            vat_on(Money::new(d("0.10"), Currency::Eur), d("25.5")).amount,
            d("0.03")
        );
    }
}
