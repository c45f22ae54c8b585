//! `/metrics` for the NOC (DESIGN.md §8 "NOC and observability"): the fleet as the replicated
//! state has it, read at each scrape — hosts by region and state; GPUs by region, model and
//! state (bound, warm, held by reservations, free, unhealthy); vCPUs and memory by region
//! (capacity, allocated, held); workloads waiting by kind, region and reason with the oldest
//! wait; game sessions by region and state; billing runs. The same on every replica (a
//! follower's figures are as fresh as its applied state).

use std::collections::BTreeMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::instances::types::{Instance, InstanceState};
use crate::raft_handle::Cluster;
use crate::state::ClusterState;

#[derive(Debug)]
pub struct FleetCollector {
    pub cluster: Cluster,
    /// The leader's liveness verdict (empty on a follower).
    pub liveness: crate::nodes::liveness::LivenessView,
}

/// Labels and a value, in a family.
type Rows = BTreeMap<Vec<(&'static str, String)>, f64>;

/// A reason a workload waits, as a small set of classes (the state's reasons are sentences).
pub fn reason_class(reason: Option<&str>) -> &'static str {
    let r = reason.unwrap_or("");
    if r.is_empty() || r == crate::instances::types::WAITING_FOR_PLACEMENT {
        "placement"
    } else if r.contains("spot instance") {
        "preempting-spot"
    } else if r.starts_with("requeued") {
        "requeued"
    } else if r.contains("reservation") {
        "reservation"
    } else if r.starts_with("no host in region") {
        "no-host-in-region"
    } else if r.contains("GPU") || r.contains("gpu") {
        "no-gpu-free"
    } else if r.starts_with("no host") {
        "no-capacity"
    } else {
        "other"
    }
}

/// What a waiting instance is, for `kind`.
fn kind_of(i: &Instance) -> &'static str {
    if i.is_warm() {
        "warm-vm"
    } else if i.session.is_some() {
        "session"
    } else if i.job.is_some() {
        "job"
    } else {
        "instance"
    }
}

fn labels(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// The fleet's figures: (name, help, rows) per family.
pub fn fleet_figures(state: &ClusterState, now_ms: i64) -> Vec<(&'static str, &'static str, Rows)> {
    let mut hosts = Rows::new();
    let mut gpus = Rows::new();
    let mut vcpus = Rows::new();
    let mut memory = Rows::new();
    for node in state.nodes.values() {
        *hosts
            .entry(labels(&[
                ("region", &node.region),
                ("state", node.state.as_str()),
            ]))
            .or_default() += 1.0;
        let used = state.usage(&node.id);
        let schedulable = node.state == crate::nodes::types::NodeState::Ready;
        // Which GPUs warm VMs hold (they are bound like any other, but waiting for launches).
        let warm: std::collections::BTreeSet<_> = used
            .instances
            .iter()
            .filter_map(|id| state.instances.get(id))
            .filter(|i| i.is_warm())
            .flat_map(|i| i.gpus.iter().map(|b| b.gpu().clone()))
            .collect();
        let mut free_by_model: BTreeMap<&str, i64> = BTreeMap::new();
        for g in node.gpus.iter().filter(|g| !g.mig) {
            let st = if g.unhealthy.is_some() {
                "unhealthy"
            } else if warm.contains(&g.pci_address) {
                "warm"
            } else if used.gpus.contains(&g.pci_address) {
                "bound"
            } else if !schedulable {
                "unschedulable"
            } else {
                *free_by_model.entry(g.model.as_str()).or_default() += 1;
                continue;
            };
            *gpus
                .entry(labels(&[
                    ("region", &node.region),
                    ("model", &g.model),
                    ("state", st),
                ]))
                .or_default() += 1.0;
        }
        // Reservation slots nobody uses yet hold free GPUs (of their model, in practice the
        // node's one model).
        let mut held = i64::from(used.held.gpus);
        for (model, free) in free_by_model {
            let h = held.min(free);
            held -= h;
            for (st, n) in [("held", h), ("free", free - h)] {
                if n > 0 {
                    *gpus
                        .entry(labels(&[
                            ("region", &node.region),
                            ("model", model),
                            ("state", st),
                        ]))
                        .or_default() += n as f64;
                }
            }
        }
        for (kind, v, m) in [
            (
                "capacity",
                f64::from(node.cpu_threads),
                node.memory_bytes as f64,
            ),
            (
                "allocated",
                f64::from(used.vcpus),
                used.memory_mib as f64 * 1_048_576.0,
            ),
            (
                "held",
                f64::from(used.held.vcpus),
                used.held.memory_mib as f64 * 1_048_576.0,
            ),
        ] {
            *vcpus
                .entry(labels(&[("region", &node.region), ("kind", kind)]))
                .or_default() += v;
            *memory
                .entry(labels(&[("region", &node.region), ("kind", kind)]))
                .or_default() += m;
        }
    }
    let mut pending = Rows::new();
    let mut oldest = Rows::new();
    for i in state.pending() {
        let kind = kind_of(i);
        *pending
            .entry(labels(&[
                ("kind", kind),
                ("region", &i.region),
                ("reason", reason_class(i.pending_reason.as_deref())),
            ]))
            .or_default() += 1.0;
        let age = ((now_ms - i.created_at_ms).max(0) as f64) / 1000.0;
        let e = oldest
            .entry(labels(&[("kind", kind), ("region", &i.region)]))
            .or_default();
        *e = e.max(age);
    }
    let mut sessions = Rows::new();
    for i in state
        .instances
        .values()
        .filter(|i| i.session.is_some() && !i.is_warm())
    {
        let st = match i.state {
            InstanceState::Pending => "queued",
            InstanceState::Scheduled => "starting",
            other => other.as_str(),
        };
        *sessions
            .entry(labels(&[("region", &i.region), ("state", st)]))
            .or_default() += 1.0;
        if i.session
            .as_ref()
            .and_then(|s| s.share.guest.as_ref())
            .is_some_and(|g| g.until_ms > now_ms)
        {
            *sessions
                .entry(labels(&[
                    ("region", &i.region),
                    ("state", "share-play-guest"),
                ]))
                .or_default() += 1.0;
        }
    }
    let mut endpoints = Rows::new();
    for e in state.webhook_endpoints.values() {
        let st = if e.disabled_at_ms.is_some() {
            "disabled"
        } else if e.failing_since_ms.is_some() {
            "failing"
        } else {
            "ok"
        };
        *endpoints.entry(labels(&[("state", st)])).or_default() += 1.0;
    }
    let mut outbox = Rows::new();
    for d in state.webhook_outbox.values() {
        let st = if d.attempts == 0 { "new" } else { "retrying" };
        *outbox.entry(labels(&[("state", st)])).or_default() += 1.0;
    }
    let mut runs = Rows::new();
    runs.insert(Vec::new(), state.billing.runs.len() as f64);
    let mut last_run = Rows::new();
    if let Some(r) = state.billing.runs.values().map(|r| r.at_ms).max() {
        last_run.insert(Vec::new(), r as f64 / 1000.0);
    }
    vec![
        (
            "vmcloud_hosts",
            "Hosts by region and state (ready, cordoned, draining, maintenance, down)",
            hosts,
        ),
        (
            "vmcloud_gpus",
            "Whole GPUs by region, model and state: bound (to a workload), warm (a warm game VM waits on it), held (an unused reservation slot), free, unschedulable (its host is not ready), unhealthy",
            gpus,
        ),
        (
            "vmcloud_vcpus",
            "vCPUs by region: capacity (hardware threads of every host), allocated (to workloads), held (by unused reservation slots)",
            vcpus,
        ),
        (
            "vmcloud_memory_bytes",
            "Memory by region: capacity, allocated (to workloads), held (by unused reservation slots)",
            memory,
        ),
        (
            "vmcloud_pending_workloads",
            "Workloads waiting for a host by kind (instance, job, session, warm-vm), region and reason",
            pending,
        ),
        (
            "vmcloud_pending_oldest_seconds",
            "How long the oldest waiting workload of a kind and region has waited",
            oldest,
        ),
        (
            "vmcloud_sessions",
            "Game sessions by region and state (queued, starting, running, ending, …; share-play-guest: sessions a friend plays along in)",
            sessions,
        ),
        (
            "vmcloud_webhook_endpoints",
            "Webhook endpoints by state: ok, failing (deliveries failing since some time), disabled (after failing too long)",
            endpoints,
        ),
        (
            "vmcloud_webhook_outbox_deliveries",
            "Webhook deliveries waiting to be made: new, or retrying after a failure",
            outbox,
        ),
        (
            "vmcloud_billing_runs",
            "Billing runs recorded in the state (one per period billed)",
            runs,
        ),
        (
            "vmcloud_billing_last_run_timestamp_seconds",
            "When the last billing run was committed (Unix seconds)",
            last_run,
        ),
    ]
}

/// What the leader's liveness tracker makes of each host (alive, suspect, down) by region, and
/// which datacenters went silent at once (a cut link, not dead hosts). Empty on followers.
fn liveness_figures(
    state: &ClusterState,
    view: &crate::nodes::liveness::LivenessView,
) -> Vec<(&'static str, &'static str, Rows)> {
    use crate::nodes::liveness::Liveness;
    let verdict = view.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut hosts = Rows::new();
    for (node, l) in &verdict.liveness {
        let Some(region) = state.nodes.get(node).map(|n| n.region.as_str()) else {
            continue;
        };
        let l = match l {
            Liveness::Alive => "alive",
            Liveness::Suspect => "suspect",
            Liveness::Down => "down",
        };
        *hosts
            .entry(labels(&[("region", region), ("liveness", l)]))
            .or_default() += 1.0;
    }
    let mut silent = Rows::new();
    let regions: std::collections::BTreeSet<&str> =
        state.nodes.values().map(|n| n.region.as_str()).collect();
    if !verdict.liveness.is_empty() {
        for r in regions {
            let alarm = verdict.alarms.iter().any(|a| a.region == r);
            silent.insert(labels(&[("region", r)]), if alarm { 1.0 } else { 0.0 });
        }
    }
    vec![
        (
            "vmcloud_hosts_liveness",
            "Hosts by region as the leader hears their agents: alive, suspect (silent past the suspect timeout), down",
            hosts,
        ),
        (
            "vmcloud_datacenter_silent",
            "1 while most of a datacenter's hosts went silent at once (a cut link: nobody is declared down meanwhile), else 0; on the leader",
            silent,
        ),
    ]
}

impl Collector for FleetCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let state = self.cluster.state();
        let now = crate::clock::now_ms().max(state.now_ms);
        let placed = ConstCounter::new(state.placements.0);
        placed.encode(encoder.encode_descriptor(
            "vmcloud_placements",
            "Workloads placed on hosts (VMs, job members, sessions, warm VMs), as this replica applied them since it started",
            None,
            placed.metric_type(),
        )?)?;
        let mut figures = fleet_figures(&state, now);
        figures.extend(liveness_figures(&state, &self.liveness));
        for (name, help, rows) in figures {
            let gauge = ConstGauge::new(0.0f64);
            let mut family = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            for (labels, value) in &rows {
                let pairs: Vec<(&str, &str)> =
                    labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                ConstGauge::new(*value).encode(family.encode_family(&pairs)?)?;
            }
        }
        Ok(())
    }
}
