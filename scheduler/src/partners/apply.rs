//! Partners in `apply`: made by operators (with their staff organisation and first admin),
//! their brand and domains changed by their admins, support access opened and closed.

use std::collections::BTreeMap;

use vmcloud_proto::pb;
use vmcloud_proto::{OrgId, ProjectId, UserId};

use crate::partners::types::{Brand, MAX_LOGO, Partner};
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};
use crate::tenancy::types::{DEFAULT_PROJECT, OrgKind, Organisation, Project, Role};

fn invalid(msg: String) -> Rejected {
    Rejected::Invalid(msg)
}

/// A partner's id: as the catalog's `partner` of its POPs.
pub fn partner_id(s: &str) -> Result<&str, Rejected> {
    let ok = (2..=40).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.as_bytes()[0].is_ascii_lowercase();
    if ok {
        Ok(s)
    } else {
        Err(invalid(format!(
            "partner id `{s}`: 2 to 40 lowercase letters, digits, `.` and `-`, starting with a letter (as the catalog's `partner` of its POP regions)"
        )))
    }
}

/// A host name a partner's portal answers on: lower case, dot-separated labels, no port.
pub fn domain(s: &str) -> Result<String, Rejected> {
    let d = s.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if d.len() <= 253 && d.contains('.') && d.split('.').all(label_ok) {
        Ok(d)
    } else {
        Err(invalid(format!(
            "`{s}` is not a host name for a portal: give labels of letters, digits and `-` joined by dots, without a port or scheme (play.example.net)"
        )))
    }
}

fn colour(what: &str, s: &str) -> Result<String, Rejected> {
    let c = s.trim().to_ascii_lowercase();
    if c.is_empty() {
        return Ok(c);
    }
    if c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(c)
    } else {
        Err(invalid(format!(
            "{what} `{s}` is not a colour: write it #rrggbb"
        )))
    }
}

fn text(what: &str, s: &str, max: usize) -> Result<String, Rejected> {
    let t = s.trim();
    if t.chars().count() > max || t.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid(format!(
            "{what} is {max} characters at most, without control characters"
        )));
    }
    Ok(t.to_owned())
}

/// A brand as given, checked.
pub fn brand(b: &pb::PartnerBrand) -> Result<Brand, Rejected> {
    let logo = b.logo.trim();
    if !logo.is_empty() {
        let kind_ok = ["data:image/png;base64,", "data:image/svg+xml;base64,"]
            .iter()
            .any(|p| logo.starts_with(p));
        if !kind_ok || logo.len() > MAX_LOGO {
            return Err(invalid(format!(
                "the logo is a data:image/png;base64,… or data:image/svg+xml;base64,… URI of {} KiB at most",
                MAX_LOGO / 1024
            )));
        }
    }
    let support_email = if b.support_email.trim().is_empty() {
        String::new()
    } else {
        crate::tenancy::validate::email(&b.support_email)
            .map_err(|e| invalid(format!("support email: {e}")))?
    };
    let support_url = b.support_url.trim();
    if !support_url.is_empty() && !support_url.starts_with("https://") {
        return Err(invalid(format!(
            "the support URL `{support_url}` must start with https://"
        )));
    }
    Ok(Brand {
        display_name: text("the display name", &b.display_name, 80)?,
        logo: logo.to_owned(),
        primary_colour: colour("the primary colour", &b.primary_colour)?,
        accent_colour: colour("the accent colour", &b.accent_colour)?,
        support_email,
        support_url: text("the support URL", support_url, 300)?,
        legal: text("the legal mentions", &b.legal, 2000)?,
    })
}

impl ClusterState {
    /// The partner a host name belongs to.
    pub fn partner_by_domain(&self, host: &str) -> Option<&Partner> {
        let host = host.trim_end_matches('.');
        self.partners
            .values()
            .find(|p| p.domains.iter().any(|d| d.eq_ignore_ascii_case(host)))
    }

    /// The partner whose POP `region` is.
    pub fn partner_of_region(&self, region: &str) -> Option<&Partner> {
        self.partners
            .values()
            .find(|p| p.pops.iter().any(|r| r == region))
    }

    /// The partner whose staff organisation this is.
    pub fn partner_of_staff(&self, org: &OrgId) -> Option<&Partner> {
        self.partners.values().find(|p| &p.staff_org == org)
    }

    /// Domains, checked and not another partner's.
    fn partner_domains(&self, id: &str, given: &[String]) -> Result<Vec<String>, Rejected> {
        let mut out: Vec<String> = Vec::new();
        for d in given {
            let d = domain(d)?;
            if let Some(other) = self.partner_by_domain(&d).filter(|other| other.id != id) {
                return Err(Rejected::Conflict(format!(
                    "{d} is already the domain of partner {}: pick another host name",
                    other.id
                )));
            }
            if !out.contains(&d) {
                out.push(d);
            }
        }
        if out.len() > 10 {
            return Err(invalid("a partner has 10 domains at most".into()));
        }
        Ok(out)
    }

    pub(crate) fn create_partner(&mut self, c: pb::CreatePartner, at: i64) -> ApplyResult {
        let id = partner_id(&c.partner_id)?.to_owned();
        if self.partners.contains_key(&id) {
            return Err(Rejected::Exists(format!("partner {id}")));
        }
        let owner = UserId::parse(&c.owner_user_id).map_err(|e| invalid(e.to_string()))?;
        if !self.users.contains_key(&owner) {
            return Err(Rejected::NotFound(format!(
                "user {owner} (a partner's first admin signs up first)"
            )));
        }
        let staff_org = OrgId::parse(&c.staff_org_id).map_err(|e| invalid(e.to_string()))?;
        let project = ProjectId::parse(&c.staff_project_id).map_err(|e| invalid(e.to_string()))?;
        if self.organisations.contains_key(&staff_org) || self.projects.contains_key(&project) {
            return Err(Rejected::Exists(format!("organisation {staff_org}")));
        }
        let details = crate::tenancy::validate::org_details(
            &c.name,
            OrgKind::Company,
            &c.billing_country,
            "",
        )
        .map_err(|e| invalid(e.to_string()))?;
        let brand = brand(&c.brand.unwrap_or_default())?;
        let domains = self.partner_domains(&id, &c.domains)?;
        self.organisations.insert(
            staff_org.clone(),
            Organisation {
                id: staff_org.clone(),
                name: details.name.clone(),
                kind: OrgKind::Company,
                billing_country: details.country,
                vat_id: None,
                billing_address: Vec::new(),
                created_at_ms: at,
                members: BTreeMap::from([(owner, Role::Owner)]),
                // Partner staff reach every customer of the partner.
                mfa_required: false,
                trial: false,
                provider: false,
                sso: None,
                invitations: BTreeMap::new(),
                api_per_hour: None,
                partner: None,
                support_access_until_ms: None,
            },
        );
        self.insert_project(Project::new(
            project,
            staff_org.clone(),
            DEFAULT_PROJECT.to_owned(),
            at,
        ));
        self.partners.insert(
            id.clone(),
            Partner {
                id,
                name: details.name,
                staff_org,
                brand,
                domains,
                created_at_ms: at,
                licence: Default::default(),
                sites: Default::default(),
                pops: c.pops,
            },
        );
        Ok(Applied::Done)
    }

    pub(crate) fn update_partner(&mut self, c: pb::UpdatePartner) -> ApplyResult {
        if !self.partners.contains_key(&c.partner_id) {
            return Err(Rejected::NotFound(format!("partner {}", c.partner_id)));
        }
        let brand = c.brand.as_ref().map(brand).transpose()?;
        let domains = if c.set_domains {
            Some(self.partner_domains(&c.partner_id, &c.domains)?)
        } else {
            None
        };
        let p = self.partners.get_mut(&c.partner_id).expect("checked above");
        if let Some(b) = brand {
            p.brand = b;
        }
        if let Some(d) = domains {
            p.domains = d;
        }
        if c.set_pops {
            p.pops = c.pops;
        }
        Ok(Applied::Done)
    }

    pub(crate) fn grant_support_access(
        &mut self,
        c: pb::GrantSupportAccess,
        at: i64,
    ) -> ApplyResult {
        let id = OrgId::parse(&c.org_id)
            .map_err(|_| Rejected::NotFound(format!("organisation `{}`", c.org_id)))?;
        let org = self
            .organisations
            .get_mut(&id)
            .ok_or_else(|| Rejected::NotFound(format!("organisation {id}")))?;
        if org.partner.is_none() {
            return Err(Rejected::Conflict(format!(
                "organisation {id} is VMCloud's own customer: its support already sees it"
            )));
        }
        if c.until_unix_ms != 0 && (c.until_unix_ms <= at || c.until_unix_ms > at + 30 * 86_400_000)
        {
            return Err(invalid(
                "support access lasts from now to 30 days at most: give an end within that (or 0 to close it)".into(),
            ));
        }
        org.support_access_until_ms = (c.until_unix_ms != 0).then_some(c.until_unix_ms);
        Ok(Applied::Done)
    }
}
