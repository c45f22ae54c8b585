//! `/metrics`: public IPv4 addresses per region, free and in all, read from the state at each
//! scrape (a spent pool shows before anyone is refused).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

use crate::catalog::Catalog;
use crate::public_ips::types::pool_range;
use crate::raft_handle::Cluster;

#[derive(Debug)]
pub struct PoolsCollector {
    pub cluster: Cluster,
    pub catalog: Arc<Catalog>,
}

impl Collector for PoolsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let state = self.cluster.state();
        let mut rows = Vec::new();
        for (region, r) in &self.catalog.regions {
            let mut total = 0i64;
            let mut held = 0i64;
            for (first, last) in r.public_ipv4.iter().filter_map(|c| pool_range(c)) {
                total += i64::from(last - first) + 1;
                held += state.public_ips.range(first..=last).count() as i64;
            }
            if total > 0 {
                rows.push((region.clone(), total, total - held));
            }
        }
        for (name, help, pick) in [
            (
                "vmcloud_public_ipv4_addresses",
                "Public IPv4 addresses in the region's pools",
                0,
            ),
            (
                "vmcloud_public_ipv4_free",
                "Public IPv4 addresses of the region's pools nobody holds",
                1,
            ),
        ] {
            let gauge = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            for (region, total, free) in &rows {
                let value = if pick == 0 { *total } else { *free };
                let labels = [("region", region.as_str())];
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
