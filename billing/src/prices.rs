//! Price books: one per currency (`config/prices.toml`), never converted from one another.

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::money::Currency;

/// The built-in price books: `config/prices.toml`.
pub const BUILTIN_PRICES: &str = include_str!("../../config/prices.toml");

/// A flavor's prices in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlavorPrice {
    pub hourly: Decimal,
    /// A calendar month of use never costs more.
    pub monthly_cap: Decimal,
    /// Spot: the fraction taken off the hourly price (0.6 to 0.8).
    pub spot_discount: Decimal,
}

impl FlavorPrice {
    /// The spot price per hour.
    pub fn spot_hourly(&self) -> Decimal {
        self.hourly * (Decimal::ONE - self.spot_discount)
    }
}

/// The prices of one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceBook {
    pub currency: Currency,
    pub flavors: BTreeMap<String, FlavorPrice>,
    pub public_ipv4_monthly: Decimal,
    /// Commitment term (months) → the fraction it takes off the hourly price.
    pub reserved_discount: BTreeMap<u32, Decimal>,
    /// Monthly plans (billed a month in advance, prorated on change), by id.
    pub plans: BTreeMap<String, PlanPrice>,
    /// Packs of gaming hours bought once, by id.
    pub hour_packs: BTreeMap<String, HourPack>,
}

/// A pack of gaming hours and its price in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourPack {
    pub name: String,
    pub hours: u32,
    pub price: Decimal,
}

/// A monthly plan's price in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanPrice {
    /// What invoices and pages call it.
    pub name: String,
    pub monthly: Decimal,
}

/// Every currency's book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceBooks(pub BTreeMap<Currency, PriceBook>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the price books at key `{key}`: {why}")]
pub struct PriceError {
    pub key: String,
    pub why: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlavor {
    hourly: String,
    monthly: String,
    spot_discount: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBook {
    public_ipv4_monthly: String,
    reserved_discount: BTreeMap<String, String>,
    flavors: BTreeMap<String, RawFlavor>,
    #[serde(default)]
    plans: BTreeMap<String, RawPlan>,
    #[serde(default)]
    hour_packs: BTreeMap<String, RawPack>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPack {
    name: String,
    hours: u32,
    price: String,
}

/// An id of a plan or a pack: lower-case letters, digits and dashes.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    name: String,
    monthly: String,
}

fn amount(key: &str, text: &str) -> Result<Decimal, PriceError> {
    Decimal::from_str(text)
        .ok()
        .filter(|d| *d >= Decimal::ZERO)
        .ok_or_else(|| PriceError {
            key: key.to_owned(),
            why: format!("{text:?} is not an amount (a decimal string, e.g. \"0.0076\")"),
        })
}

fn fraction(key: &str, text: &str, lo: &str, hi: &str) -> Result<Decimal, PriceError> {
    let (lo, hi) = (
        Decimal::from_str(lo).unwrap(),
        Decimal::from_str(hi).unwrap(),
    );
    Decimal::from_str(text)
        .ok()
        .filter(|d| *d >= lo && *d <= hi)
        .ok_or_else(|| PriceError {
            key: key.to_owned(),
            why: format!("{text:?} is not a fraction from {lo} to {hi}"),
        })
}

impl PriceBooks {
    /// Reads the books as `config/prices.toml` writes them; errors name the key. Every book
    /// must price the same flavors.
    pub fn parse(text: &str) -> Result<PriceBooks, PriceError> {
        let raw: BTreeMap<String, RawBook> = toml::from_str(text).map_err(|e| PriceError {
            key: String::new(),
            why: e.message().to_owned(),
        })?;
        let mut books = BTreeMap::new();
        for (code, b) in raw {
            let currency = Currency::parse(&code).ok_or_else(|| PriceError {
                key: code.clone(),
                why: "not a currency we bill in: EUR, USD or GBP".into(),
            })?;
            let mut flavors = BTreeMap::new();
            for (name, f) in b.flavors {
                let key = |field: &str| format!("{code}.flavors.{name}.{field}");
                let price = FlavorPrice {
                    hourly: amount(&key("hourly"), &f.hourly)?,
                    monthly_cap: amount(&key("monthly"), &f.monthly)?,
                    spot_discount: fraction(&key("spot_discount"), &f.spot_discount, "0.6", "0.8")?,
                };
                if price.monthly_cap < price.hourly {
                    return Err(PriceError {
                        key: key("monthly"),
                        why: "the monthly cap is below one hour's price".into(),
                    });
                }
                flavors.insert(name, price);
            }
            let mut reserved = BTreeMap::new();
            for (months, off) in &b.reserved_discount {
                let key = format!("{code}.reserved_discount.{months}");
                let term: u32 = months
                    .parse()
                    .ok()
                    .filter(|m| [12, 24, 36].contains(m))
                    .ok_or_else(|| PriceError {
                        key: key.clone(),
                        why: "terms are 12, 24 or 36 months".into(),
                    })?;
                reserved.insert(term, fraction(&key, off, "0", "0.9")?);
            }
            let mut plans = BTreeMap::new();
            for (id, p) in b.plans {
                let key = |field: &str| format!("{code}.plans.{id}.{field}");
                if !valid_id(&id) {
                    return Err(PriceError {
                        key: format!("{code}.plans.{id}"),
                        why: "a plan id is lower-case letters, digits and dashes".into(),
                    });
                }
                if p.name.trim().is_empty() {
                    return Err(PriceError {
                        key: key("name"),
                        why: "a plan needs a name".into(),
                    });
                }
                let monthly = amount(&key("monthly"), &p.monthly)?;
                plans.insert(
                    id,
                    PlanPrice {
                        name: p.name,
                        monthly,
                    },
                );
            }
            let mut hour_packs = BTreeMap::new();
            for (id, p) in b.hour_packs {
                let key = |field: &str| format!("{code}.hour_packs.{id}.{field}");
                if !valid_id(&id) {
                    return Err(PriceError {
                        key: format!("{code}.hour_packs.{id}"),
                        why: "a pack id is lower-case letters, digits and dashes".into(),
                    });
                }
                if p.hours == 0 || p.hours > 1000 {
                    return Err(PriceError {
                        key: key("hours"),
                        why: "a pack holds 1 to 1000 hours".into(),
                    });
                }
                let price = amount(&key("price"), &p.price)?;
                hour_packs.insert(
                    id,
                    HourPack {
                        name: p.name,
                        hours: p.hours,
                        price,
                    },
                );
            }
            books.insert(
                currency,
                PriceBook {
                    currency,
                    flavors,
                    public_ipv4_monthly: amount(
                        &format!("{code}.public_ipv4_monthly"),
                        &b.public_ipv4_monthly,
                    )?,
                    reserved_discount: reserved,
                    plans,
                    hour_packs,
                },
            );
        }
        // The same flavors in every book.
        let all: std::collections::BTreeSet<&String> =
            books.values().flat_map(|b| b.flavors.keys()).collect();
        for book in books.values() {
            if let Some(missing) = all.iter().find(|f| !book.flavors.contains_key(**f)) {
                return Err(PriceError {
                    key: format!("{}.flavors.{missing}", book.currency.code()),
                    why: "every currency's book prices the same flavors; this one lacks it".into(),
                });
            }
        }
        // The same plans in every book.
        let all: std::collections::BTreeSet<&String> =
            books.values().flat_map(|b| b.plans.keys()).collect();
        for book in books.values() {
            if let Some(missing) = all.iter().find(|p| !book.plans.contains_key(**p)) {
                return Err(PriceError {
                    key: format!("{}.plans.{missing}", book.currency.code()),
                    why: "every currency's book prices the same plans; this one lacks it".into(),
                });
            }
        }
        // The same packs, with the same hours, in every book.
        let first = books.values().next().map(|b| &b.hour_packs);
        for book in books.values() {
            for (id, pack) in first.into_iter().flatten() {
                match book.hour_packs.get(id) {
                    Some(p) if p.hours == pack.hours => {}
                    Some(_) => {
                        return Err(PriceError {
                            key: format!("{}.hour_packs.{id}.hours", book.currency.code()),
                            why: "a pack holds the same hours in every currency".into(),
                        });
                    }
                    None => {
                        return Err(PriceError {
                            key: format!("{}.hour_packs.{id}", book.currency.code()),
                            why: "every currency's book prices the same packs; this one lacks it"
                                .into(),
                        });
                    }
                }
            }
            if book.hour_packs.len() != first.map_or(0, BTreeMap::len) {
                return Err(PriceError {
                    key: format!("{}.hour_packs", book.currency.code()),
                    why: "every currency's book prices the same packs".into(),
                });
            }
        }
        Ok(PriceBooks(books))
    }

    pub fn builtin() -> PriceBooks {
        PriceBooks::parse(BUILTIN_PRICES).expect("config/prices.toml is valid")
    }

    pub fn book(&self, currency: Currency) -> Option<&PriceBook> {
        self.0.get(&currency)
    }
}
