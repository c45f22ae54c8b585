//! The catalog: regions (and whether they take new workloads), flavors and images.
//!
//! Loaded once at start from TOML (the shipped `config/catalog.toml` unless another file is
//! named) and validated; the API checks every request against it before proposing anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::instances::types::{GpuRequest, InstanceSpec};
use vmcloud_proto::config::{ConfigError, parse_toml};

/// The catalog that ships with the scheduler.
pub const DEFAULT_CATALOG: &str = include_str!("../../config/catalog.toml");

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub regions: BTreeMap<String, Region>,
    pub flavors: BTreeMap<String, Flavor>,
    pub images: BTreeMap<String, Image>,
    /// Private networks' settings (defaults when absent).
    #[serde(default)]
    pub networks: NetworkSettings,
    /// Games the gamers' portal offers, by id (see [`crate::gaming::catalog`]).
    #[serde(default)]
    pub titles: BTreeMap<String, crate::gaming::catalog::Title>,
    /// Gaming plans' fair use.
    #[serde(default)]
    pub gaming: crate::gaming::catalog::GamingSettings,
}

/// `[networks]`: where private networks' VXLAN identifiers come from.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkSettings {
    /// The first and last VNI the scheduler gives networks (each is given once). Default:
    /// 4096 to 16777215, leaving 1–4095 to the operators' own use.
    #[serde(default = "default_vni_range")]
    pub vni_range: [u32; 2],
}

fn default_vni_range() -> [u32; 2] {
    [4096, 0x00ff_ffff]
}

impl Default for NetworkSettings {
    fn default() -> Self {
        NetworkSettings {
            vni_range: default_vni_range(),
        }
    }
}

impl NetworkSettings {
    /// The range as commands carry it.
    pub fn vnis(&self) -> vmcloud_proto::pb::VniRange {
        vmcloud_proto::pb::VniRange {
            first: self.vni_range[0],
            last: self.vni_range[1],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub name: String,
    pub status: RegionStatus,
    /// A partner POP: the site and its hosts belong to this partner (its id, as in the
    /// `partner:<id>` pools); absent: one of VMCloud's own datacenters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<String>,
    /// The region's public IPv4 pools (CIDRs the datacenter routes to its hosts); empty: no
    /// public addresses offered there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_ipv4: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RegionStatus {
    Active,
    Maintenance,
    Planned,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Flavor {
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuSpec>,
    /// Notice a spot instance of this flavor gets before it is reclaimed, unless it asks for
    /// another (default 120 s).
    #[serde(default = "default_spot_notice")]
    pub spot_notice_s: u32,
}

impl Flavor {
    /// What an instance of this flavor (named `flavor` in the catalog) is made of.
    pub fn spec(&self, name: String, flavor: &str, image: &str, region: &str) -> InstanceSpec {
        InstanceSpec {
            name,
            flavor: flavor.to_owned(),
            image: image.to_owned(),
            region: region.to_owned(),
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            disk_gib: self.disk_gib,
            gpu: self.gpu.as_ref().map(|g| GpuRequest {
                model: g.model.clone(),
                count: g.count,
                mig_profile: g.mig.clone(),
            }),
        }
    }
}

/// Seconds of notice spot work may ask for, or a flavor may set.
pub const SPOT_NOTICE_RANGE: std::ops::RangeInclusive<u32> = 30..=3600;

fn default_spot_notice() -> u32 {
    crate::instances::types::DEFAULT_PREEMPTION_NOTICE_S
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    pub model: String,
    pub count: u32,
    /// A MIG profile ("1g.10gb"): one slice of a GPU in MIG mode instead of whole GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mig: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub name: String,
}

impl Catalog {
    /// The catalog that ships with the scheduler.
    pub fn builtin() -> Catalog {
        Catalog::parse(Path::new("config/catalog.toml (built in)"), DEFAULT_CATALOG)
            .expect("the built-in catalog is valid")
    }

    /// Reads and validates the catalog at `path`.
    pub fn load(path: &Path) -> Result<Catalog, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, "", format!("cannot read the file: {e}")))?;
        Catalog::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Catalog, ConfigError> {
        let catalog: Catalog = parse_toml(path, text)?;
        catalog.validate(path)?;
        Ok(catalog)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let err = |key: String, msg: &str| Err(ConfigError::new(path, key, msg));
        if !self
            .regions
            .values()
            .any(|r| r.status == RegionStatus::Active)
        {
            return err("regions".into(), "at least one region must be `active`");
        }
        let [first, last] = self.networks.vni_range;
        if first == 0 || first > last || last > 0x00ff_ffff {
            return err(
                "networks.vni_range".into(),
                "a VNI range is [first, last] with 1 <= first <= last <= 16777215",
            );
        }
        for (code, r) in &self.regions {
            if !is_slug(code) {
                return err(
                    format!("regions.{code}"),
                    "region codes are lowercase letters, digits and `-`",
                );
            }
            for (n, cidr) in r.public_ipv4.iter().enumerate() {
                if crate::public_ips::types::pool_range(cidr).is_none()
                    || crate::firewalls::types::parse_cidr(cidr).is_err()
                {
                    return err(
                        format!("regions.{code}.public_ipv4[{n}]"),
                        "a pool is an IPv4 CIDR with its host bits zero (203.0.113.0/26)",
                    );
                }
            }
            if let Some(partner) = &r.partner
                && (partner.is_empty() || !is_slug(partner))
            {
                return err(
                    format!("regions.{code}.partner"),
                    "a partner id is lowercase letters, digits, `.` and `-`",
                );
            }
        }
        for (name, f) in &self.flavors {
            if !is_slug(name) {
                return err(
                    format!("flavors.{name}"),
                    "flavor names are lowercase letters, digits, `.` and `-`",
                );
            }
            if f.vcpus == 0 {
                return err(format!("flavors.{name}.vcpus"), "must be at least 1");
            }
            if f.memory_mib < 64 {
                return err(format!("flavors.{name}.memory_mib"), "must be at least 64");
            }
            if !SPOT_NOTICE_RANGE.contains(&f.spot_notice_s) {
                return err(
                    format!("flavors.{name}.spot_notice_s"),
                    "must be between 30 and 3600 seconds",
                );
            }
            if let Some(gpu) = &f.gpu {
                if gpu.count == 0 {
                    return err(format!("flavors.{name}.gpu.count"), "must be at least 1");
                }
                if gpu.model.is_empty() {
                    return err(format!("flavors.{name}.gpu.model"), "must not be empty");
                }
                if let Some(profile) = &gpu.mig {
                    if !crate::nodes::mig::capable(&gpu.model) {
                        return err(
                            format!("flavors.{name}.gpu.mig"),
                            &format!(
                                "{} has no MIG; MIG profiles exist on {}",
                                gpu.model,
                                crate::nodes::mig::MIG_MODELS.join(", ")
                            ),
                        );
                    }
                    if !crate::nodes::mig::is_profile_name(profile) {
                        return err(
                            format!("flavors.{name}.gpu.mig"),
                            "a MIG profile is named `<compute>g.<memory>gb` with 1, 2, 3, 4 or 7 compute slices, e.g. `1g.10gb`",
                        );
                    }
                    if gpu.count != 1 {
                        return err(
                            format!("flavors.{name}.gpu.count"),
                            "must be 1 with a MIG profile (one slice per instance)",
                        );
                    }
                }
            }
        }
        crate::gaming::catalog::validate(
            path,
            &self.titles,
            &self.gaming,
            |f| self.flavors.get(f).is_some_and(|f| f.gpu.is_some()),
            |i| self.images.contains_key(i),
            |r| self.regions.contains_key(r),
        )?;
        for name in self.images.keys() {
            if !is_slug(name) {
                return err(
                    format!("images.{name}"),
                    "image names are lowercase letters, digits, `.` and `-`",
                );
            }
        }
        Ok(())
    }

    /// The partner owning a region's site, when it is a partner POP.
    pub fn partner_of(&self, region: &str) -> Option<&str> {
        self.regions.get(region)?.partner.as_deref()
    }

    /// Region codes that take new workloads, for error messages.
    pub fn active_regions(&self) -> Vec<&str> {
        self.regions
            .iter()
            .filter(|(_, r)| r.status == RegionStatus::Active)
            .map(|(c, _)| c.as_str())
            .collect()
    }
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// Where a catalog came from, for the startup banner.
#[derive(Debug, Clone)]
pub enum CatalogSource {
    Builtin,
    File(PathBuf),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flavor_on_sale_has_a_price_in_every_currency_and_no_price_is_for_nothing() {
        let catalog = Catalog::builtin();
        let books = vmcloud_billing::prices::PriceBooks::builtin();
        for book in books.0.values() {
            for flavor in catalog.flavors.keys() {
                assert!(
                    book.flavors.contains_key(flavor),
                    "config/prices.toml has no {} price for flavor {flavor}",
                    book.currency.code()
                );
            }
            for priced in book.flavors.keys() {
                assert!(
                    catalog.flavors.contains_key(priced),
                    "config/prices.toml prices {priced}, which the catalog does not sell"
                );
            }
        }
    }

    #[test]
    fn builtin_catalog_has_what_the_product_sells() {
        let c = Catalog::builtin();
        for f in [
            "vps-s",
            "vps-m",
            "vps-l",
            "vps-xl",
            "gpu-l40s-1",
            "gpu-a100-1",
            "gpu-h100-1",
            "gpu-h100-8",
        ] {
            assert!(c.flavors.contains_key(f), "{f}");
        }
        for i in ["debian-12", "ubuntu-24.04"] {
            assert!(c.images.contains_key(i), "{i}");
        }
        assert_eq!(c.active_regions(), vec!["ams", "fra", "mrs-edge", "par"]);
        assert_eq!(c.partner_of("mrs-edge"), Some("edgenet"));
        assert_eq!(c.partner_of("par"), None);
        assert_eq!(c.regions["lon"].status, RegionStatus::Maintenance);
    }

    #[test]
    fn bad_catalogs_name_the_key() {
        let path = Path::new("cat.toml");
        let cases = [
            (
                "[regions.par]\nname='P'\nstatus='closed'\n[flavors]\n[images]\n",
                "regions.par.status",
            ),
            (
                "[regions.par]\nname='P'\nstatus='active'\npartner='Acme Corp'\n[flavors]\n[images]\n",
                "regions.par.partner",
            ),
            (
                "[regions.par]\nname='P'\nstatus='active'\n[flavors.x]\nvcpus=0\nmemory_mib=512\ndisk_gib=1\n[images]\n",
                "flavors.x.vcpus",
            ),
            (
                "[regions.par]\nname='P'\nstatus='active'\n[flavors.x]\nvcpu=1\nmemory_mib=512\ndisk_gib=1\n[images]\n",
                "flavors.x",
            ),
            (
                "[regions.par]\nname='P'\nstatus='maintenance'\n[flavors]\n[images]\n",
                "regions",
            ),
            (
                "[regions.par]\nname='P'\nstatus='active'\n[flavors.x]\nvcpus=1\nmemory_mib=512\ndisk_gib=1\nspot_notice_s=5\n[images]\n",
                "flavors.x.spot_notice_s",
            ),
            (
                "[regions.par]\nname='P'\nstatus='active'\n[flavors.x]\nvcpus=1\nmemory_mib=512\ndisk_gib=1\ngpu={model='L40S',count=1,mig='1g.6gb'}\n[images]\n",
                "flavors.x.gpu.mig",
            ),
            (
                "[regions.par]\nname='P'\nstatus='active'\n[flavors.x]\nvcpus=1\nmemory_mib=512\ndisk_gib=1\ngpu={model='H100',count=1,mig='5g.50gb'}\n[images]\n",
                "flavors.x.gpu.mig",
            ),
            (
                "[regions.par]\nname='P'\nstatus='active'\n[flavors.x]\nvcpus=1\nmemory_mib=512\ndisk_gib=1\ngpu={model='H100',count=2,mig='1g.10gb'}\n[images]\n",
                "flavors.x.gpu.count",
            ),
        ];
        for (text, key) in cases {
            let e = Catalog::parse(path, text).unwrap_err();
            assert!(e.key.starts_with(key), "{text}: got key `{}` ({e})", e.key);
            assert!(e.to_string().contains("cat.toml"), "{e}");
        }
    }
}
