//! Coupons in `apply`: billing staff create them (a percentage or an amount off, for one
//! invoice, N monthly invoices or every one; a redemption limit; an expiry); customers redeem
//! one by its code; each run applies what an organisation redeemed, as discount lines before
//! credits and VAT (see `vmcloud_billing::invoice`).

use rust_decimal::Decimal;
use vmcloud_billing::invoice::Reduction;
use vmcloud_billing::money::{Currency, Money};
use vmcloud_proto::{OrgId, pb};

use crate::billing::types::{Coupon, Off, Redeemed, currency_of, positive_amount};
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};

impl ClusterState {
    pub(crate) fn create_coupon(&mut self, c: pb::CreateCoupon, at: i64) -> ApplyResult {
        let code = c.code.trim().to_ascii_uppercase();
        if code.len() < 3
            || code.len() > 32
            || !code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(Rejected::Invalid(format!(
                "coupon code `{}`: 3 to 32 letters, digits or `-`",
                c.code
            )));
        }
        if self.billing.coupons.contains_key(&code) {
            return Err(Rejected::Exists(format!("coupon {code}")));
        }
        let off = match (c.percent_off.trim(), c.amount_off.trim()) {
            (p, "") if !p.is_empty() => {
                let p = positive_amount("percent_off", p)?;
                if p > Decimal::ONE_HUNDRED {
                    return Err(Rejected::Invalid(format!("percent_off {p} is over 100")));
                }
                Off::Percent(p)
            }
            ("", a) if !a.is_empty() => {
                let currency = Currency::parse(&c.currency).ok_or_else(|| {
                    Rejected::Invalid(format!(
                        "an amount off needs its currency (EUR, USD or GBP), not `{}`",
                        c.currency
                    ))
                })?;
                Off::Amount(positive_amount("amount_off", a)?, currency)
            }
            _ => {
                return Err(Rejected::Invalid(
                    "give either percent_off or amount_off".into(),
                ));
            }
        };
        let invoices = match c.duration.as_str() {
            "once" | "" => Some(1),
            "repeating" if c.months > 0 && c.months <= 120 => Some(c.months),
            "repeating" => {
                return Err(Rejected::Invalid(
                    "a repeating coupon needs `months` (1 to 120)".into(),
                ));
            }
            "forever" => None,
            other => {
                return Err(Rejected::Invalid(format!(
                    "duration `{other}` is not one of: once, repeating, forever"
                )));
            }
        };
        self.billing.coupons.insert(
            code.clone(),
            Coupon {
                code,
                off,
                invoices,
                max_redemptions: (c.max_redemptions > 0).then_some(c.max_redemptions),
                redemptions: 0,
                expires_at_ms: (c.expires_at_unix_ms > 0).then_some(c.expires_at_unix_ms),
                created_at_ms: at,
            },
        );
        Ok(Applied::Done)
    }

    pub(crate) fn redeem_coupon(&mut self, c: pb::RedeemCoupon, at: i64) -> ApplyResult {
        let org = OrgId::parse(&c.org_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
        let currency = self
            .organisations
            .get(&org)
            .map(currency_of)
            .ok_or_else(|| Rejected::NotFound(format!("organisation {org}")))?;
        let code = c.code.trim().to_ascii_uppercase();
        let coupon = self
            .billing
            .coupons
            .get(&code)
            .cloned()
            .ok_or_else(|| Rejected::NotFound(format!("coupon {code}")))?;
        if coupon.expires_at_ms.is_some_and(|e| at >= e) {
            return Err(Rejected::Conflict(format!("coupon {code} has expired")));
        }
        if coupon
            .max_redemptions
            .is_some_and(|m| coupon.redemptions >= m)
        {
            return Err(Rejected::Conflict(format!(
                "coupon {code} has been redeemed as many times as it may be"
            )));
        }
        if let Off::Amount(_, c) = coupon.off
            && c != currency
        {
            return Err(Rejected::Conflict(format!(
                "coupon {code} is in {c}; this organisation is invoiced in {currency}"
            )));
        }
        let account = self.billing.accounts.entry(org.clone()).or_default();
        if account.coupons.iter().any(|r| r.code == code) {
            return Err(Rejected::Conflict(format!(
                "organisation {org} has redeemed coupon {code} already"
            )));
        }
        account.coupons.push(Redeemed {
            code: code.clone(),
            off: coupon.off,
            invoices_left: coupon.invoices,
            redeemed_at_ms: at,
        });
        if let Some(k) = self.billing.coupons.get_mut(&code) {
            k.redemptions += 1;
        }
        Ok(Applied::Done)
    }

    /// The discounts of `org`'s coupons on charges of `charges` (in `currency`), in the order
    /// redeemed; each coupon used counts one invoice.
    pub(crate) fn coupon_discounts(
        &mut self,
        org: &OrgId,
        charges: Decimal,
        currency: Currency,
    ) -> Vec<Reduction> {
        let Some(account) = self.billing.accounts.get_mut(org) else {
            return Vec::new();
        };
        if account.coupons.is_empty() || charges <= Decimal::ZERO {
            return Vec::new();
        }
        let mut out = Vec::new();
        for r in account.coupons.iter_mut() {
            let available = match r.off {
                Off::Percent(p) => {
                    Money::new(charges * p / Decimal::ONE_HUNDRED, currency)
                        .round_line()
                        .amount
                }
                Off::Amount(a, c) if c == currency => a,
                Off::Amount(..) => continue,
            };
            out.push(Reduction {
                id: r.code.clone(),
                description: match r.off {
                    Off::Percent(p) => format!("Coupon {} ({}% off)", r.code, p.normalize()),
                    Off::Amount(a, c) => format!("Coupon {} ({a} {c} off)", r.code),
                },
                available,
            });
            if let Some(n) = r.invoices_left.as_mut() {
                *n = n.saturating_sub(1);
            }
        }
        account.coupons.retain(|r| r.invoices_left != Some(0));
        out
    }
}
