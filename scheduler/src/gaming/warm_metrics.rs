//! `/metrics`: each warm pool's VMs by state and its target, read from the state at each
//! scrape (a pool short of its target shows before launches start to queue).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

use crate::catalog::Catalog;
use crate::gaming::warm_controller::{PoolSize, pool_size};
use crate::raft_handle::Cluster;

/// Which figure of a pool a metric shows.
type Pick = fn(&PoolSize) -> u32;

#[derive(Debug)]
pub struct WarmPoolsCollector {
    pub cluster: Cluster,
    pub catalog: Arc<Catalog>,
}

impl Collector for WarmPoolsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let state = self.cluster.state();
        let now = crate::clock::now_ms().max(state.now_ms);
        let pools: Vec<(&crate::gaming::catalog::WarmPoolConfig, PoolSize)> = self
            .catalog
            .gaming
            .warm_pools
            .iter()
            .map(|c| (c, pool_size(&state, c, now)))
            .collect();
        let figures: [(&str, &str, Pick); 3] = [
            (
                "vmcloud_warm_pool_target_vms",
                "Warm game VMs the pool's controller keeps (within the catalog's min and max)",
                |s| s.target,
            ),
            (
                "vmcloud_warm_pool_ready_vms",
                "Warm game VMs booted and idle: launches take them at once",
                |s| s.ready,
            ),
            (
                "vmcloud_warm_pool_booting_vms",
                "Warm game VMs waiting for a host or booting",
                |s| s.booting,
            ),
        ];
        for (name, help, pick) in figures {
            let gauge = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            for (c, size) in &pools {
                let labels = [
                    ("region", c.region.as_str()),
                    ("flavor", c.flavor.as_str()),
                    ("image", c.image.as_str()),
                    ("pool", c.pool.as_deref().unwrap_or("")),
                ];
                ConstGauge::new(i64::from(pick(size))).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
