//! Partners as the replicated state keeps them.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use vmcloud_billing::money::Currency;
use vmcloud_proto::OrgId;

/// A white-label partner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partner {
    /// Lowercase letters, digits, `.` and `-`: as the catalog's `partner` of its POPs and the
    /// `partner:<id>` pool of its hosts.
    pub id: String,
    pub name: String,
    /// The organisation of its staff.
    pub staff_org: OrgId,
    pub brand: Brand,
    /// Host names its portal answers on, lower case.
    pub domains: Vec<String>,
    pub created_at_ms: i64,
    /// What it pays and keeps each month (set by VMCloud's operators).
    #[serde(default)]
    pub licence: Licence,
    /// Its licensed sites (schools, libraries) by id.
    #[serde(default)]
    pub sites: BTreeMap<String, Site>,
    /// Its POPs: catalog regions whose hosts are its (its admins cordon and drain them).
    #[serde(default)]
    pub pops: Vec<String>,
}

impl Partner {
    /// The name pages and mails show.
    pub fn display_name(&self) -> &str {
        if self.brand.display_name.is_empty() {
            &self.name
        } else {
            &self.brand.display_name
        }
    }
}

/// How a partner's pages and mails look.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Brand {
    pub display_name: String,
    /// A `data:` URI (PNG or SVG), or empty.
    pub logo: String,
    /// `#rrggbb`.
    pub primary_colour: String,
    pub accent_colour: String,
    pub support_email: String,
    pub support_url: String,
    pub legal: String,
}

/// VMCloud's own colours, for requests on no partner's domain.
pub const VMCLOUD_PRIMARY: &str = "#14213d";
pub const VMCLOUD_ACCENT: &str = "#2855d8";

/// The longest logo, as a `data:` URI.
pub const MAX_LOGO: usize = 64 * 1024;

/// A partner's licence terms: a base fee and a fee per monthly active user that it pays, and
/// the share of its customers' invoiced net that it keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Licence {
    pub currency: Currency,
    pub base_monthly: Decimal,
    pub per_active_user: Decimal,
    /// Percent, 0–100.
    pub partner_share_percent: Decimal,
    /// What it may hand out to its customers.
    #[serde(default)]
    pub allowance: Allowance,
}

/// The most a partner hands out across all its customers; `None`: no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allowance {
    /// Quota it sets on its customers' projects, all regions together.
    pub vcpus: Option<u32>,
    pub gpus: Option<u32>,
    /// Entitlements it grants that are in force.
    pub entitlements: Option<u32>,
    /// The plans its customers may take (price book ids); `None`: any.
    #[serde(default)]
    pub plans: Option<Vec<String>>,
}

impl Default for Licence {
    /// No fee and no share until operators set the terms.
    fn default() -> Licence {
        Licence {
            currency: Currency::Eur,
            base_monthly: Decimal::ZERO,
            per_active_user: Decimal::ZERO,
            partner_share_percent: Decimal::ZERO,
            allowance: Allowance::default(),
        }
    }
}

/// A licensed site: the address ranges its terminals launch from and how many may play at
/// once. A launch by one of the partner's customers from a site's range uses a seat while its
/// session lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    pub id: String,
    pub name: String,
    /// CIDRs, normalised (`192.0.2.0/24`).
    pub ranges: Vec<String>,
    pub seats: u32,
    /// The customer it belongs to; absent: any of the partner's customers.
    pub org: Option<OrgId>,
    pub created_at_ms: i64,
    /// Its terminals' device codes (upper case).
    #[serde(default)]
    pub device_codes: Vec<String>,
}

impl Site {
    /// Whether `address` is in one of its ranges.
    pub fn covers(&self, address: std::net::IpAddr) -> bool {
        self.ranges.iter().any(|r| {
            r.parse::<ipnet::IpNet>()
                .is_ok_and(|net| net.contains(&address))
        })
    }

    /// The key sessions carry: `partner/site`.
    pub fn key(partner: &str, site: &str) -> String {
        format!("{partner}/{site}")
    }
}

/// The most sites a partner has, the most ranges and device codes a site has.
pub const MAX_SITES: usize = 1000;
pub const MAX_RANGES: usize = 64;
pub const MAX_DEVICES: usize = 10_000;
