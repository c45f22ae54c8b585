//! Warm pools' pure part: the class a warm VM serves, the launches the state counts per
//! minute, and the size a pool should have (see [`crate::gaming::warm`]).

use imbl::Vector;
use serde::{Deserialize, Serialize};

use crate::gaming::catalog::WarmPoolConfig;
use crate::instances::types::Instance;

/// What a warm VM serves: launches of this region, flavor, image and pool.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WarmClass {
    pub region: String,
    pub flavor: String,
    pub image: String,
    pub pool: Option<String>,
}

impl WarmClass {
    pub fn of(i: &Instance) -> WarmClass {
        WarmClass {
            region: i.region.clone(),
            flavor: i.flavor.clone(),
            image: i.image.clone(),
            pool: i.pool.clone(),
        }
    }

    /// Whether `i` is of this class (without copying its fields).
    pub fn holds(&self, i: &Instance) -> bool {
        self.region == i.region
            && self.flavor == i.flavor
            && self.image == i.image
            && self.pool == i.pool
    }

    pub fn of_config(c: &WarmPoolConfig) -> WarmClass {
        WarmClass {
            region: c.region.clone(),
            flavor: c.flavor.clone(),
            image: c.image.clone(),
            pool: c.pool.clone(),
        }
    }

    /// `region/flavor/image/pool` (`-`: the general fleet): the state's key for its figures.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.region,
            self.flavor,
            self.image,
            self.pool.as_deref().unwrap_or("-")
        )
    }
}

/// Launches of a class in one minute: those a warm VM served and those that waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchMinute {
    /// Minutes since the Unix epoch.
    pub minute: i64,
    pub warm: u32,
    pub cold: u32,
}

/// What the state keeps of a class: its launches over the last hour and how long its warm
/// VMs took to boot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmFigures {
    pub minutes: Vector<LaunchMinute>,
    /// Placement to running of its warm VMs, smoothed (⅞ old, ⅛ new).
    pub boot_ms: Option<i64>,
}

/// Minutes of launches a pool is sized from.
pub const RATE_WINDOW_MIN: i64 = 60;

/// Notice a warm VM gets when real work reclaims its capacity (nobody is playing on it).
pub const WARM_NOTICE_S: u32 = 5;

/// The 95th percentile of launches per minute over the last [`RATE_WINDOW_MIN`] minutes
/// before `now_ms` (minutes without launches count as 0).
pub fn launches_p95_per_min(minutes: &[LaunchMinute], now_ms: i64) -> u32 {
    let now = now_ms.div_euclid(60_000);
    let mut counts = vec![0u32; RATE_WINDOW_MIN as usize];
    for m in minutes {
        let age = now - m.minute;
        if (0..RATE_WINDOW_MIN).contains(&age) {
            counts[age as usize] += m.warm + m.cold;
        }
    }
    counts.sort_unstable();
    // The 57th of 60 ascending: 95 % of the minutes had at most this many.
    counts[(counts.len() * 95).div_ceil(100) - 1]
}

/// How many VMs a pool should keep warm: enough for the launches of a busy minute (the 95th
/// percentile) during one boot, within the operator's bounds.
pub fn target_size(config: &WarmPoolConfig, figures: Option<&WarmFigures>, now_ms: i64) -> u32 {
    let minutes: Vec<LaunchMinute> = figures
        .map(|f| f.minutes.iter().copied().collect())
        .unwrap_or_default();
    let p95 = u64::from(launches_p95_per_min(&minutes, now_ms));
    let boot_ms = figures
        .and_then(|f| f.boot_ms)
        .unwrap_or(i64::from(config.boot_s) * 1000)
        .max(1) as u64;
    let need = (p95 * boot_ms).div_ceil(60_000);
    u32::try_from(need)
        .unwrap_or(u32::MAX)
        .clamp(config.min, config.max)
}
