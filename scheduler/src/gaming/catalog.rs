//! The gaming part of the catalog (`config/catalog.toml`): titles (`[titles.<id>]`), the
//! fair use of gaming plans (`[gaming]`) and warm pools (`[[gaming.warm_pools]]`). Validated with the rest of the catalog; errors name
//! the file and the key.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use vmcloud_proto::config::ConfigError;

use crate::sessions::types::SessionTier;

/// A game of the catalog.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Title {
    pub name: String,
    /// PEGI age rating: 3, 7, 12, 16 or 18.
    pub pegi: u8,
    /// The game flavor it streams on.
    pub gpu_class: String,
    /// The pool of hosts it must run in (anti-cheat); absent: the general fleet.
    #[serde(default)]
    pub anti_cheat_pool: Option<String>,
    pub image: String,
    pub publisher: String,
    /// Anyone may play it: no entitlement needed.
    #[serde(default)]
    pub free_to_play: bool,
}

/// PEGI ratings.
pub const PEGI: [u8; 5] = [3, 7, 12, 16, 18];

/// What a gaming plan gives each month.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FairUse {
    /// Hours a month, for the whole household.
    pub hours: u32,
    /// Unused hours carried to the next month, at most.
    pub rollover: u32,
    /// The longest session, in hours.
    pub session_max_h: u32,
    /// `standard`, `priority-plus` or `vip`: the launch queue's order.
    #[schema(value_type = String)]
    pub tier: SessionTier,
}

/// `[gaming]`: fair use without a plan (`free`) and per gaming plan (billing's plan ids).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GamingSettings {
    pub free: FairUse,
    #[serde(default)]
    pub plans: BTreeMap<String, FairUse>,
    /// Game VMs kept booted and idle, per region, GPU class, image and pool (see
    /// [`crate::gaming::warm`]).
    #[serde(default)]
    pub warm_pools: Vec<WarmPoolConfig>,
}

/// `[[gaming.warm_pools]]`: one warm pool and the operator's bounds on its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WarmPoolConfig {
    pub region: String,
    /// A game flavor (its GPU class).
    pub flavor: String,
    /// The image its VMs boot (default: the streaming server).
    #[serde(default = "streaming_image")]
    pub image: String,
    /// A dedicated pool of hosts (e.g. `anti-cheat`); absent: the general fleet.
    #[serde(default)]
    pub pool: Option<String>,
    /// VMs kept warm at least, and at most.
    pub min: u32,
    pub max: u32,
    /// How long a VM takes to boot, in seconds, until boots have been measured.
    #[serde(default = "default_boot_s")]
    pub boot_s: u32,
}

fn streaming_image() -> String {
    crate::sessions::types::SESSION_IMAGE.to_owned()
}

fn default_boot_s() -> u32 {
    60
}

impl Default for GamingSettings {
    fn default() -> Self {
        GamingSettings {
            free: FairUse {
                hours: 10,
                rollover: 0,
                session_max_h: 1,
                tier: SessionTier::Standard,
            },
            plans: BTreeMap::new(),
            warm_pools: Vec::new(),
        }
    }
}

impl GamingSettings {
    /// The fair use of a household on `plan` (a billing plan id), or the free one.
    pub fn fair_use(&self, plan: Option<&str>) -> &FairUse {
        plan.and_then(|p| self.plans.get(p)).unwrap_or(&self.free)
    }
}

/// Checks the titles and the gaming settings: `gpu_class` must be a game flavor (one with a
/// GPU), `image` an image of the catalog.
pub fn validate(
    path: &Path,
    titles: &BTreeMap<String, Title>,
    gaming: &GamingSettings,
    gpu_flavor: impl Fn(&str) -> bool,
    image: impl Fn(&str) -> bool,
    region: impl Fn(&str) -> bool,
) -> Result<(), ConfigError> {
    let err = |key: String, msg: String| Err(ConfigError::new(path, key, msg));
    let slug = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    for (id, t) in titles {
        if !slug(id) {
            return err(
                format!("titles.{id}"),
                "title ids are lowercase letters, digits and `-`".into(),
            );
        }
        if t.name.trim().is_empty() {
            return err(format!("titles.{id}.name"), "must not be empty".into());
        }
        if !PEGI.contains(&t.pegi) {
            return err(
                format!("titles.{id}.pegi"),
                format!("{} is not a PEGI rating: 3, 7, 12, 16 or 18", t.pegi),
            );
        }
        if !gpu_flavor(&t.gpu_class) {
            return err(
                format!("titles.{id}.gpu_class"),
                format!(
                    "`{}` is not a flavor with a GPU in this catalog",
                    t.gpu_class
                ),
            );
        }
        if !image(&t.image) {
            return err(
                format!("titles.{id}.image"),
                format!("`{}` is not an image of this catalog", t.image),
            );
        }
        if let Some(pool) = &t.anti_cheat_pool
            && !slug(pool)
        {
            return err(
                format!("titles.{id}.anti_cheat_pool"),
                "a pool is lowercase letters, digits and `-`".into(),
            );
        }
    }
    for (key, f) in std::iter::once(("gaming.free".to_owned(), &gaming.free)).chain(
        gaming
            .plans
            .iter()
            .map(|(id, f)| (format!("gaming.plans.{id}"), f)),
    ) {
        if f.session_max_h == 0 || f.session_max_h > 24 {
            return err(
                format!("{key}.session_max_h"),
                "a session lasts 1 to 24 hours at most".into(),
            );
        }
        if f.hours > 744 {
            return err(
                format!("{key}.hours"),
                "a month has at most 744 hours".into(),
            );
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (n, w) in gaming.warm_pools.iter().enumerate() {
        let key = |field: &str| format!("gaming.warm_pools[{n}].{field}");
        if !region(&w.region) {
            return err(
                key("region"),
                format!("`{}` is not a region of this catalog", w.region),
            );
        }
        if !gpu_flavor(&w.flavor) {
            return err(
                key("flavor"),
                format!("`{}` is not a flavor with a GPU in this catalog", w.flavor),
            );
        }
        if !image(&w.image) {
            return err(
                key("image"),
                format!("`{}` is not an image of this catalog", w.image),
            );
        }
        if w.min > w.max {
            return err(key("min"), format!("min {} is above max {}", w.min, w.max));
        }
        if w.max > 100_000 {
            return err(key("max"), "a pool keeps at most 100000 VMs warm".into());
        }
        if w.boot_s == 0 || w.boot_s > 3600 {
            return err(key("boot_s"), "a boot takes 1 to 3600 seconds".into());
        }
        if !seen.insert((&w.region, &w.flavor, &w.image, &w.pool)) {
            return err(
                key("region"),
                "another warm pool has the same region, flavor, image and pool".into(),
            );
        }
    }
    Ok(())
}
