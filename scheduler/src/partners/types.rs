//! Partners as the replicated state keeps them.

use serde::{Deserialize, Serialize};
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
