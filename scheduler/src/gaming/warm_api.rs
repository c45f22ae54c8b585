//! `GET /v1/warm-pools` (operators): each warm pool of the catalog — its bounds, the size the
//! controller aims at, what its VMs are doing, how long they take to boot and how many of the
//! last hour's launches it served at once.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::api::context::{ApiQuery, ApiState, Operator, ReadOptions};
use crate::api::problem::Problem;
use crate::gaming::pools::{RATE_WINDOW_MIN, WarmClass, launches_p95_per_min};
use crate::gaming::warm_controller::pool_size;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WarmPoolView {
    pub region: String,
    pub flavor: String,
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The operator's bounds (the catalog's `[[gaming.warm_pools]]`).
    pub min: u32,
    pub max: u32,
    /// What the controller keeps: the busiest minutes' launches (95th percentile over the last
    /// hour) during one boot, within `min` and `max`.
    pub target: u32,
    /// Booted and idle: a launch takes one at once.
    pub ready: u32,
    /// Waiting for a host or booting.
    pub booting: u32,
    /// Being reclaimed by real work, or removed.
    pub leaving: u32,
    /// Placement to running, measured on the pool's own VMs (absent before the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_ms: Option<i64>,
    /// Launches of this class in the last hour, and how many a warm VM served.
    pub launches_last_hour: u32,
    pub served_warm_last_hour: u32,
    /// The 95th percentile of launches per minute over the last hour.
    pub launches_p95_per_min: u32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WarmPoolList {
    pub pools: Vec<WarmPoolView>,
}

/// `GET /v1/warm-pools`.
pub async fn list(
    State(s): State<ApiState>,
    Operator(_who): Operator,
    ApiQuery(read): ApiQuery<ReadOptions>,
) -> Result<Json<WarmPoolList>, Problem> {
    read.prepare(&s.cluster).await?;
    let state = s.cluster.state();
    let now = crate::clock::now_ms().max(state.now_ms);
    let minute = now.div_euclid(60_000);
    let pools = s
        .catalog
        .gaming
        .warm_pools
        .iter()
        .map(|c| {
            let size = pool_size(&state, c, now);
            let figures = state.gaming.warm.get(&WarmClass::of_config(c).key());
            let recent: Vec<_> = figures
                .map(|f| {
                    f.minutes
                        .iter()
                        .filter(|m| minute - m.minute < RATE_WINDOW_MIN)
                        .copied()
                        .collect()
                })
                .unwrap_or_default();
            WarmPoolView {
                region: c.region.clone(),
                flavor: c.flavor.clone(),
                image: c.image.clone(),
                pool: c.pool.clone(),
                min: c.min,
                max: c.max,
                target: size.target,
                ready: size.ready,
                booting: size.booting,
                leaving: size.leaving,
                boot_ms: figures.and_then(|f| f.boot_ms),
                launches_last_hour: recent.iter().map(|m| m.warm + m.cold).sum(),
                served_warm_last_hour: recent.iter().map(|m| m.warm).sum(),
                launches_p95_per_min: launches_p95_per_min(&recent, now),
            }
        })
        .collect();
    Ok(Json(WarmPoolList { pools }))
}
