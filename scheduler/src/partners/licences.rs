//! Partners' licences in `apply`: the terms operators set, the sites partners license (address
//! ranges and seats) and the seat a launch from a site takes, and the monthly active users
//! counted from the committed log.

use std::collections::BTreeSet;
use std::net::IpAddr;

use rust_decimal::Decimal;
use vmcloud_billing::money::Currency;
use vmcloud_proto::OrgId;
use vmcloud_proto::pb;

use crate::partners::types::{Allowance, Licence, MAX_DEVICES, MAX_RANGES, MAX_SITES, Site};
use crate::state::rejected::LaunchRefusal;
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};

fn invalid(msg: String) -> Rejected {
    Rejected::Invalid(msg)
}

/// A non-negative decimal with at most two decimals (`what` names the field).
fn amount(what: &str, text: &str) -> Result<Decimal, Rejected> {
    text.trim()
        .parse::<Decimal>()
        .ok()
        .filter(|d| *d >= Decimal::ZERO && d.scale() <= 2)
        .ok_or_else(|| {
            invalid(format!(
                "{what} `{text}` is not an amount: write a decimal of 0 or more with at most two decimals (e.g. 250.00)"
            ))
        })
}

/// A site's id: lowercase letters, digits and `-`, 1 to 40.
pub fn site_id(s: &str) -> Result<&str, Rejected> {
    let ok = !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-');
    if ok {
        Ok(s)
    } else {
        Err(invalid(format!(
            "site id `{s}` is not valid: use 1 to 40 lowercase letters, digits and `-` (e.g. `lycee-thiers`)"
        )))
    }
}

/// Device codes, upper case, checked: 4 to 32 letters, digits and `-`, without repeats.
fn device_codes(given: &[String]) -> Result<Vec<String>, Rejected> {
    if given.len() > MAX_DEVICES {
        return Err(invalid(format!(
            "a site has {MAX_DEVICES} device codes at most"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for code in given {
        let c = code.trim().to_ascii_uppercase();
        let ok = (4..=32).contains(&c.len())
            && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(invalid(format!(
                "device code `{code}` is not valid: use 4 to 32 letters, digits and `-` (e.g. `CDI-POSTE-07`)"
            )));
        }
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// Ranges as CIDRs, normalised (`192.0.2.7/24` → `192.0.2.0/24`), without repeats.
fn ranges(given: &[String]) -> Result<Vec<ipnet::IpNet>, Rejected> {
    if given.len() > MAX_RANGES {
        return Err(invalid(format!(
            "a site has {MAX_RANGES} address ranges at most"
        )));
    }
    let mut out: Vec<ipnet::IpNet> = Vec::new();
    for r in given {
        let net = r
            .trim()
            .parse::<ipnet::IpNet>()
            .or_else(|_| r.trim().parse::<IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| {
                invalid(format!(
                    "`{r}` is not an address range: write a CIDR such as `192.0.2.0/24` or `2001:db8:1::/48`"
                ))
            })?
            .trunc();
        if net.prefix_len() == 0 {
            return Err(invalid(format!(
                "`{r}` covers the whole Internet: give the site's own ranges"
            )));
        }
        if !out.contains(&net) {
            out.push(net);
        }
    }
    Ok(out)
}

fn overlaps(a: &ipnet::IpNet, b: &ipnet::IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

impl ClusterState {
    pub(crate) fn set_partner_licence(&mut self, c: pb::SetPartnerLicence) -> ApplyResult {
        if !self.partners.contains_key(&c.partner_id) {
            return Err(Rejected::NotFound(format!("partner {}", c.partner_id)));
        }
        let currency = Currency::parse(&c.currency).ok_or_else(|| {
            invalid(format!(
                "currency `{}` is not one VMCloud bills in: EUR, USD or GBP",
                c.currency
            ))
        })?;
        let share = amount("the partner's share", &c.partner_share_percent)?;
        if share > Decimal::ONE_HUNDRED {
            return Err(invalid(format!(
                "the partner's share `{share}` is a percent: give 0 to 100"
            )));
        }
        let a = c.allowance.unwrap_or_default();
        let licence = Licence {
            currency,
            base_monthly: amount("the base fee", &c.base_monthly)?,
            per_active_user: amount("the fee per active user", &c.per_active_user)?,
            partner_share_percent: share,
            allowance: Allowance {
                vcpus: a.vcpus,
                gpus: a.gpus,
                entitlements: a.entitlements,
                plans: a.limit_plans.then_some(a.plans),
            },
        };
        self.partners
            .get_mut(&c.partner_id)
            .expect("checked above")
            .licence = licence;
        Ok(Applied::Done)
    }

    pub(crate) fn put_partner_site(&mut self, c: pb::PutPartnerSite, at: i64) -> ApplyResult {
        let partner = self
            .partners
            .get(&c.partner_id)
            .ok_or_else(|| Rejected::NotFound(format!("partner {}", c.partner_id)))?;
        let id = site_id(&c.site_id)?.to_owned();
        let name = c.name.trim();
        if name.is_empty() || name.chars().count() > 80 {
            return Err(invalid(
                "a site needs a name of 1 to 80 characters (e.g. `Lycée Thiers — CDI`)".into(),
            ));
        }
        if c.seats == 0 || c.seats > 100_000 {
            return Err(invalid(format!(
                "a site has 1 to 100000 seats, not {}",
                c.seats
            )));
        }
        let org = if c.org_id.is_empty() {
            None
        } else {
            let org = OrgId::parse(&c.org_id)
                .ok()
                .filter(|o| {
                    self.organisations
                        .get(o)
                        .is_some_and(|o| o.partner.as_deref() == Some(partner.id.as_str()))
                })
                .ok_or_else(|| {
                    Rejected::NotFound(format!(
                        "organisation `{}` among {}'s customers",
                        c.org_id, partner.id
                    ))
                })?;
            Some(org)
        };
        if !partner.sites.contains_key(&id) && partner.sites.len() >= MAX_SITES {
            return Err(invalid(format!(
                "a partner has {MAX_SITES} sites at most: remove one first"
            )));
        }
        let nets = ranges(&c.ranges)?;
        let devices = device_codes(&c.device_codes)?;
        if nets.is_empty() && devices.is_empty() {
            return Err(invalid(
                "a site needs at least one address range (a CIDR such as `192.0.2.0/24`) or device code".into(),
            ));
        }
        // No address belongs to two sites, of this partner or another.
        for (pid, p) in &self.partners {
            for (sid, s) in &p.sites {
                if pid == &partner.id && sid == &id {
                    continue;
                }
                if let Some(d) = devices.iter().find(|d| s.device_codes.contains(d)) {
                    return Err(Rejected::Conflict(format!(
                        "device {d} is already a terminal of {}: a device belongs to one site only",
                        if pid == &partner.id {
                            format!("your site `{sid}`")
                        } else {
                            "another partner's site".to_owned()
                        }
                    )));
                }
                for theirs in s
                    .ranges
                    .iter()
                    .filter_map(|r| r.parse::<ipnet::IpNet>().ok())
                {
                    if let Some(mine) = nets.iter().find(|n| overlaps(n, &theirs)) {
                        let whose = if pid == &partner.id {
                            format!("your site `{sid}`")
                        } else {
                            "another partner's site".to_owned()
                        };
                        return Err(Rejected::Conflict(format!(
                            "{mine} overlaps {theirs} of {whose}: an address belongs to one site only"
                        )));
                    }
                }
            }
        }
        let created_at_ms = partner.sites.get(&id).map_or(at, |s| s.created_at_ms);
        let site = Site {
            id: id.clone(),
            name: name.to_owned(),
            ranges: nets.iter().map(ToString::to_string).collect(),
            seats: c.seats,
            org,
            created_at_ms,
            device_codes: devices,
        };
        self.partners
            .get_mut(&c.partner_id)
            .expect("checked above")
            .sites
            .insert(id, site);
        Ok(Applied::Done)
    }

    pub(crate) fn delete_partner_site(&mut self, c: pb::DeletePartnerSite) -> ApplyResult {
        let partner = self
            .partners
            .get_mut(&c.partner_id)
            .ok_or_else(|| Rejected::NotFound(format!("partner {}", c.partner_id)))?;
        partner
            .sites
            .remove(&c.site_id)
            .ok_or_else(|| Rejected::NotFound(format!("site {}", c.site_id)))?;
        Ok(Applied::Done)
    }

    /// The site of `org`'s partner a launch from `source` comes from (its key), checked to have
    /// a seat free; none when the organisation is no partner's or the address is in no site.
    pub(crate) fn admit_site(
        &self,
        org: &OrgId,
        source: &str,
        device: &str,
    ) -> Result<Option<String>, Rejected> {
        let address = source.parse::<IpAddr>().ok();
        let device = device.trim().to_ascii_uppercase();
        let Some(partner) = self
            .organisations
            .get(org)
            .and_then(|o| o.partner.as_ref())
            .and_then(|p| self.partners.get(p))
        else {
            return Ok(None);
        };
        // A registered device first, wherever it is; then the address.
        let mine = |s: &&Site| s.org.as_ref().is_none_or(|o| o == org);
        let Some(site) = partner
            .sites
            .values()
            .filter(mine)
            .find(|s| !device.is_empty() && s.device_codes.contains(&device))
            .or_else(|| {
                address.and_then(|a| partner.sites.values().filter(mine).find(|s| s.covers(a)))
            })
        else {
            return Ok(None);
        };
        let key = Site::key(&partner.id, &site.id);
        let used = self.seats_used(&key);
        if used >= site.seats {
            return Err(Rejected::LaunchRefused {
                reason: LaunchRefusal::SiteFull,
                detail: format!(
                    "all {} seats of {} are in use: wait for a session there to end, or ask {} for more seats",
                    site.seats,
                    site.name,
                    partner.display_name()
                ),
            });
        }
        Ok(Some(key))
    }

    /// The live sessions using a seat of the site `key` (`partner/site`).
    pub fn seats_used(&self, key: &str) -> u32 {
        let n = self
            .index
            .sessions
            .values()
            .filter_map(|id| self.instances.get(id))
            .filter(|i| {
                i.session
                    .as_ref()
                    .is_some_and(|s| s.site.as_deref() == Some(key))
            })
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// A partner's monthly active users from `from` to `to` (ms): its customers' household
    /// profiles that played in that span (spans closed in the committed log, and sessions
    /// running now), as `(organisation, profile)`.
    pub fn active_users(&self, partner: &str, from: i64, to: i64) -> BTreeSet<(OrgId, String)> {
        let customers: BTreeSet<&OrgId> = self
            .organisations
            .values()
            .filter(|o| o.partner.as_deref() == Some(partner))
            .map(|o| &o.id)
            .collect();
        let mut users = BTreeSet::new();
        for org in &customers {
            if let Some(spans) = self.gaming.played.get(*org) {
                for p in spans.iter().filter(|p| p.from_ms < to && p.to_ms > from) {
                    users.insert(((*org).clone(), p.profile.clone()));
                }
            }
        }
        for ((project, profile), id) in &self.index.sessions {
            let (Some(profile), Some(org)) = (profile, self.projects.get(project).map(|p| &p.org))
            else {
                continue;
            };
            let running = self
                .instances
                .get(id)
                .and_then(|i| i.running_at_ms)
                .is_some_and(|since| since < to);
            if running && customers.contains(org) {
                users.insert((org.clone(), profile.clone()));
            }
        }
        users
    }
}

impl ClusterState {
    /// Refuses plan `plan` for `org` when it is a partner's customer and the partner's
    /// allowance does not offer it.
    pub(crate) fn plan_allowed(&self, org: &OrgId, plan: &str) -> Result<(), Rejected> {
        let Some(p) = self
            .organisations
            .get(org)
            .and_then(|o| o.partner.as_ref())
            .and_then(|p| self.partners.get(p))
        else {
            return Ok(());
        };
        match &p.licence.allowance.plans {
            Some(plans) if !plans.iter().any(|x| x == plan) => Err(Rejected::Conflict(format!(
                "{} offers its customers the plans {}, not `{plan}`: choose one of those",
                p.display_name(),
                if plans.is_empty() {
                    "(none)".to_owned()
                } else {
                    plans.join(", ")
                }
            ))),
            _ => Ok(()),
        }
    }
}

/// What a partner has handed out to its customers: (quota vCPUs, quota GPUs, entitlements in
/// force at `at`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandedOut {
    pub vcpus: u64,
    pub gpus: u64,
    pub entitlements: u64,
}

impl ClusterState {
    /// The partner (id) whose customer owns `project`, if any.
    pub fn partner_of_project(&self, project: &vmcloud_proto::ProjectId) -> Option<&str> {
        self.projects
            .get(project)
            .and_then(|p| self.organisations.get(&p.org))
            .and_then(|o| o.partner.as_deref())
    }

    /// What `partner` has handed out: the quotas set on its customers' projects (all regions)
    /// and the entitlements in force in its customers' households.
    pub fn handed_out(&self, partner: &str, at: i64) -> HandedOut {
        let mut out = HandedOut::default();
        for (project, regions) in &self.quotas {
            if self.partner_of_project(project) != Some(partner) {
                continue;
            }
            for l in regions.values() {
                out.vcpus += u64::from(l.vcpus.unwrap_or(0));
                out.gpus += u64::from(l.gpus.unwrap_or(0));
            }
        }
        for (org, h) in &self.gaming.households {
            if self
                .organisations
                .get(org)
                .and_then(|o| o.partner.as_deref())
                == Some(partner)
            {
                out.entitlements += h
                    .entitlements
                    .iter()
                    .filter(|e| e.ends_at_ms.is_none_or(|end| end > at))
                    .count() as u64;
            }
        }
        out
    }

    /// Refuses what would take `partner` past its allowance, given what it would hand out
    /// then (`after`).
    pub(crate) fn within_allowance(&self, partner: &str, after: HandedOut) -> Result<(), Rejected> {
        let Some(p) = self.partners.get(partner) else {
            return Ok(());
        };
        let Allowance {
            vcpus,
            gpus,
            entitlements,
            ..
        } = p.licence.allowance;
        for (what, cap, wanted) in [
            ("vCPUs of quota", vcpus, after.vcpus),
            ("GPUs of quota", gpus, after.gpus),
            ("entitlements in force", entitlements, after.entitlements),
        ] {
            if let Some(cap) = cap
                && wanted > u64::from(cap)
            {
                return Err(Rejected::Conflict(format!(
                    "{} may hand out {cap} {what} to its customers, and this would make {wanted}: lower another customer's, or ask VMCloud for a bigger allowance",
                    p.display_name()
                )));
            }
        }
        Ok(())
    }
}
