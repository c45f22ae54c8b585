//! Node liveness, on the leader, in memory (not in Raft).
//!
//! A node is **alive** while its agent is heard (heartbeats, every 5 s). Silent past
//! `suspect_after` it is **suspect**; past `down_after` (plus a per-node jitter, so a flapping
//! network does not take every host down in the same instant) the leader declares it **down**
//! through Raft, and the host-down path follows (jobs requeued, sessions ended, VPS impaired).
//!
//! Two guards against declaring what is not so:
//! - a new leader gives every node `grace` (30 s) before declaring anything down — it has not
//!   heard anyone yet;
//! - when most of a datacenter's nodes go silent at once (at least `partition_fraction` of
//!   them, and at least `partition_min_nodes`), the leader suspects the link to that
//!   datacenter, raises an alarm and declares none of its nodes down; an operator who confirms
//!   the hosts are really gone marks them down (`vmcloud node down`);
//! - when such an alarm clears (the link came back, some agents are heard again), the
//!   datacenter's nodes get `grace` again before any is declared down: thousands of agents
//!   reconnect over tens of seconds, and those not back yet are past `down_after` already.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use vmcloud_proto::NodeId;

#[derive(Debug, Clone, Copy)]
pub struct LivenessConfig {
    pub suspect_after: Duration,
    pub down_after: Duration,
    /// Up to this fraction of `down_after` is added per node (fixed per node).
    pub jitter: f64,
    pub grace: Duration,
    pub partition_fraction: f64,
    pub partition_min_nodes: usize,
    /// Disconnect policy: how long jobs and game sessions on a host declared down (silent)
    /// wait for it to come back before they are lost — jobs requeued, sessions ended. VPS are
    /// never lost: they stay impaired and come back with their host.
    pub job_lost_after: Duration,
    pub session_lost_after: Duration,
    /// While agents are still arriving (one first heard within this long), a node this leader
    /// has not heard yet is not declared down: after a failover, a large fleet takes longer
    /// than the grace to re-attach.
    pub reattach_quiet: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig {
            suspect_after: Duration::from_secs(15),
            down_after: Duration::from_secs(60),
            jitter: 0.2,
            grace: Duration::from_secs(30),
            partition_fraction: 0.5,
            partition_min_nodes: 3,
            job_lost_after: Duration::from_secs(300),
            session_lost_after: Duration::ZERO,
            reattach_quiet: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    Alive,
    Suspect,
    /// Declared down (or already down in the state).
    Down,
}

/// A node as the tracker needs it.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    pub id: NodeId,
    pub region: String,
    /// Down in the replicated state already.
    pub down: bool,
    /// When its agent was last heard, if ever since this leader started.
    pub last_heard: Option<Instant>,
}

/// A datacenter whose nodes went silent together.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PartitionAlarm {
    pub region: String,
    pub silent: usize,
    pub nodes: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub liveness: BTreeMap<NodeId, Liveness>,
    /// Nodes to declare down now.
    pub declare_down: Vec<NodeId>,
    pub alarms: Vec<PartitionAlarm>,
}

/// Per-node jitter in [0, 1): fixed for a node, spread across nodes.
fn jitter_of(node: &NodeId) -> f64 {
    let h = node
        .as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    (h % 10_000) as f64 / 10_000.0
}

/// Datacenters whose partition alarm cleared: their hosts are coming back, and none is declared
/// down while they do — for `grace` after the alarm cleared, and for as long after that as
/// hosts of the datacenter keep being heard again after their silence (a host returning less
/// than `grace` ago): agents that failed to reconnect during a long cut wait out a handshake
/// timeout and their backoff (10 s and up to 15 s, with jitter), sometimes twice, and return
/// over tens of seconds.
#[derive(Debug, Default)]
pub struct Heals(BTreeMap<String, Heal>);

#[derive(Debug, Clone, Copy)]
struct Heal {
    cleared: Instant,
    last_return: Instant,
}

impl Heals {
    /// `region`'s alarm cleared at `now`.
    pub fn cleared(&mut self, region: &str, now: Instant) {
        self.0.insert(
            region.to_owned(),
            Heal {
                cleared: now,
                last_return: now,
            },
        );
    }

    /// A host of `region`, silent until now, was heard again at `now`.
    pub fn returned(&mut self, region: &str, now: Instant) {
        if let Some(h) = self.0.get_mut(region) {
            h.last_return = h.last_return.max(now);
        }
    }

    /// Whether `region`'s hosts are still coming back at `now`.
    pub fn healing(&self, config: &LivenessConfig, region: &str, now: Instant) -> bool {
        self.0.get(region).is_some_and(|h| {
            now.saturating_duration_since(h.cleared.max(h.last_return)) < config.grace
        })
    }

    /// Forgets the heals that are over.
    pub fn forget_over(&mut self, config: &LivenessConfig, now: Instant) {
        let over: Vec<String> = self
            .0
            .keys()
            .filter(|r| !self.healing(config, r, now))
            .cloned()
            .collect();
        for r in over {
            self.0.remove(&r);
        }
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// Decides liveness from what the leader heard. Pure: the caller gives the time.
///
/// `last_first_heard`: when this leader last heard a node for the first time; `heals`: the
/// datacenters coming back after a partition alarm.
pub fn evaluate(
    config: &LivenessConfig,
    leader_since: Instant,
    now: Instant,
    nodes: &[NodeFacts],
    last_first_heard: Option<Instant>,
    heals: &Heals,
) -> Verdict {
    let mut verdict = Verdict::default();
    let in_grace = now.saturating_duration_since(leader_since) < config.grace;
    let healing = |region: &str| heals.healing(config, region, now);
    let reattaching =
        last_first_heard.is_some_and(|t| now.saturating_duration_since(t) < config.reattach_quiet);
    let silent_for = |n: &NodeFacts| {
        let heard = n.last_heard.map_or(leader_since, |h| h.max(leader_since));
        now.saturating_duration_since(heard)
    };
    let mut by_region: HashMap<&str, (usize, usize)> = HashMap::new();
    for n in nodes.iter().filter(|n| !n.down) {
        let e = by_region.entry(n.region.as_str()).or_default();
        e.0 += 1;
        if silent_for(n) >= config.suspect_after {
            e.1 += 1;
        }
    }
    let partitioned: BTreeSet<&str> = by_region
        .iter()
        .filter(|(_, (total, silent))| {
            *total >= config.partition_min_nodes
                && *silent as f64 >= config.partition_fraction * *total as f64
        })
        .map(|(r, _)| *r)
        .collect();
    for region in &partitioned {
        let (total, silent) = by_region[region];
        verdict.alarms.push(PartitionAlarm {
            region: (*region).to_owned(),
            silent,
            nodes: total,
        });
    }
    for n in nodes {
        if n.down {
            verdict.liveness.insert(n.id.clone(), Liveness::Down);
            continue;
        }
        let silent = silent_for(n);
        let down_after = config
            .down_after
            .mul_f64(1.0 + config.jitter * jitter_of(&n.id));
        let state = if silent < config.suspect_after {
            Liveness::Alive
        } else {
            let awaited = reattaching && n.last_heard.is_none_or(|h| h < leader_since);
            if silent >= down_after
                && !in_grace
                && !awaited
                && !partitioned.contains(n.region.as_str())
                && !healing(&n.region)
            {
                verdict.declare_down.push(n.id.clone());
            }
            Liveness::Suspect
        };
        verdict.liveness.insert(n.id.clone(), state);
    }
    verdict
}

/// What the API shows: the latest verdict (empty off the leader).
pub type LivenessView = std::sync::Arc<std::sync::Mutex<Verdict>>;

/// Runs on every replica; acts only while it leads. Every second: what was heard → verdict →
/// nodes declared down through Raft, alarms logged, the view updated.
pub async fn run(
    cluster: crate::raft_handle::Cluster,
    links: crate::gateway::links::NodeLinks,
    config: LivenessConfig,
    view: LivenessView,
) {
    use vmcloud_proto::pb::{self, command::Body};
    let mut status = cluster.raft_status();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leader_since: Option<Instant> = None;
    let mut last_heard: HashMap<NodeId, Instant> = HashMap::new();
    let mut alarmed: BTreeSet<String> = BTreeSet::new();
    let mut heals = Heals::default();
    let mut last_first_heard: Option<Instant> = None;
    loop {
        tick.tick().await;
        if !status.borrow_and_update().is_leader {
            leader_since = None;
            last_heard.clear();
            last_first_heard = None;
            alarmed.clear();
            heals.clear();
            *view.lock().unwrap() = Verdict::default();
            continue;
        }
        let since = *leader_since.get_or_insert_with(|| {
            tracing::info!(grace = ?config.grace, "leading: liveness starts with a grace period");
            Instant::now()
        });
        // The state first, then the links: a node registers only once its link is listed,
        // so every node read here that has a link is in the links read after.
        let mut nodes: Vec<NodeFacts> = {
            let state = cluster.state();
            state
                .nodes
                .values()
                .map(|n| NodeFacts {
                    id: n.id.clone(),
                    region: n.region.clone(),
                    down: n.state == crate::nodes::types::NodeState::Down,
                    last_heard: None,
                })
                .collect()
        };
        let region_of: HashMap<&NodeId, &str> =
            nodes.iter().map(|n| (&n.id, n.region.as_str())).collect();
        let now = Instant::now();
        links.heartbeats(|node, at| match last_heard.insert(node.clone(), at) {
            None => last_first_heard = Some(now),
            Some(before) if at.saturating_duration_since(before) >= config.suspect_after => {
                if let Some(region) = region_of.get(node) {
                    heals.returned(region, now);
                }
            }
            Some(_) => {}
        });
        drop(region_of);
        for n in &mut nodes {
            n.last_heard = last_heard.get(&n.id).copied();
        }
        heals.forget_over(&config, now);
        // A datacenter whose alarm clears on this very tick is healing already: the heal is
        // recorded first, then the verdict made with it (else the hosts not back yet would be
        // declared down on the tick the alarm lifts).
        let still_silent = evaluate(&config, since, now, &nodes, last_first_heard, &heals).alarms;
        for r in alarmed.iter() {
            if !still_silent.iter().any(|a| &a.region == r) {
                heals.cleared(r, now);
            }
        }
        let verdict = evaluate(&config, since, now, &nodes, last_first_heard, &heals);
        for alarm in &verdict.alarms {
            if alarmed.insert(alarm.region.clone()) {
                tracing::error!(
                    region = alarm.region,
                    silent = alarm.silent,
                    nodes = alarm.nodes,
                    "most of a datacenter went silent at once: suspecting the link, not the hosts; none is declared down until an operator marks them (vmcloud node down)"
                );
            }
        }
        // An alarm that cleared: the datacenter is heard again; its hosts get the grace to
        // re-attach before any is declared down.
        alarmed.retain(|r| {
            let still = verdict.alarms.iter().any(|a| &a.region == r);
            if !still {
                tracing::warn!(
                    region = r.as_str(),
                    grace = ?config.grace,
                    "the datacenter is heard again: its hosts have the grace to re-attach before any is declared down"
                );
            }
            still
        });
        for node in &verdict.declare_down {
            let silent = last_heard
                .get(node)
                .map_or(Instant::now().saturating_duration_since(since), |h| {
                    h.elapsed()
                });
            tracing::warn!(%node, silent_s = silent.as_secs(), "no heartbeat: declaring the node down");
            let command = Body::SetNodeState(pb::SetNodeState {
                node_id: node.to_string(),
                state: pb::NodeState::Down as i32,
                reason: format!("no heartbeat from its agent for {} s", silent.as_secs()),
                deadline_unix_ms: 0,
                by_liveness: true,
            });
            if let Err(e) = cluster.propose(command).await {
                tracing::warn!(%node, error = %e, "could not declare the node down");
            }
        }
        let lost = lost_now(&cluster.state(), &config, crate::clock::now_ms());
        for (node, ids, reason) in lost {
            tracing::warn!(%node, instances = ids.len(), "{reason}: losing its jobs and sessions");
            let command = Body::LoseInstances(pb::LoseInstances {
                node_id: node.to_string(),
                instance_ids: ids,
                reason,
            });
            if let Err(e) = cluster.propose(command).await {
                tracing::warn!(%node, error = %e, "could not record lost instances");
            }
        }
        *view.lock().unwrap() = verdict;
    }
}

/// Jobs and sessions on hosts the leader declared down whose class's `lost_after` has run
/// out at `now_ms`: per node, the instances and the reason.
pub fn lost_now(
    state: &crate::state::ClusterState,
    config: &LivenessConfig,
    now_ms: i64,
) -> Vec<(NodeId, Vec<String>, String)> {
    let down_for: HashMap<&NodeId, Duration> = state
        .nodes
        .values()
        .filter_map(|n| match (n.state, n.down_by_liveness, n.down_since_ms) {
            (crate::nodes::types::NodeState::Down, true, Some(since)) => Some((
                &n.id,
                Duration::from_millis(u64::try_from(now_ms - since).unwrap_or(0)),
            )),
            _ => None,
        })
        .collect();
    if down_for.is_empty() {
        return Vec::new();
    }
    let mut lost: BTreeMap<&NodeId, Vec<String>> = BTreeMap::new();
    for i in state.instances.values() {
        let Some(d) = i.node.as_ref().and_then(|n| down_for.get(n)) else {
            continue;
        };
        let past = (i.job.is_some() && *d >= config.job_lost_after)
            || (i.session.is_some() && *d >= config.session_lost_after);
        if past && i.state != crate::instances::types::InstanceState::Deleting {
            lost.entry(i.node.as_ref().expect("on a node"))
                .or_default()
                .push(i.id.to_string());
        }
    }
    lost.into_iter()
        .map(|(node, ids)| {
            let reason = format!(
                "down for {} s, past its workloads' lost_after",
                down_for[node].as_secs()
            );
            (node.clone(), ids, reason)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, region: &str, heard: Option<Instant>) -> NodeFacts {
        NodeFacts {
            id: NodeId::parse(id).unwrap(),
            region: region.into(),
            down: false,
            last_heard: heard,
        }
    }

    #[test]
    fn a_new_leader_waits_for_agents_still_arriving_before_declaring_unheard_nodes_down() {
        let config = LivenessConfig::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Ten hosts per datacenter; after the failover at t0, nine of each were heard again
        // and one of each not yet (no partition alarm: one in ten is silent).
        let nodes: Vec<NodeFacts> = ["par", "fra", "ams"]
            .iter()
            .flat_map(|r| {
                (0..10).map(move |i| {
                    let heard = (i > 0).then(|| at(100));
                    node(&format!("{r}-{i}"), r, heard)
                })
            })
            .collect();
        // Past grace + down_after (+ jitter), but an agent was first heard 5 s ago: the
        // re-attachment is still under way, nobody unheard is declared down.
        let v = evaluate(
            &config,
            t0,
            at(100),
            &nodes,
            Some(at(95)),
            &Heals::default(),
        );
        assert!(v.alarms.is_empty());
        assert!(v.declare_down.is_empty(), "{:?}", v.declare_down);
        // Arrivals stopped 10 s ago: the three that never came back are declared down.
        let v = evaluate(
            &config,
            t0,
            at(100),
            &nodes,
            Some(at(90)),
            &Heals::default(),
        );
        assert_eq!(v.declare_down.len(), 3, "{:?}", v.declare_down);
    }

    #[test]
    fn a_datacenter_heard_again_gives_its_hosts_the_grace_before_any_is_declared_down() {
        let config = LivenessConfig::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // ams's link was cut from t=100 to t=190; from t=192, 15 of its 20 agents are heard
        // again (at `now`), 5 not yet (silent since 100, past down_after and its jitter);
        // par is fine.
        let nodes = |now: u64| -> Vec<NodeFacts> {
            (0..20)
                .map(|i| {
                    let heard = if i < 15 { at(now) } else { at(100) };
                    node(&format!("ams-{i}"), "ams", Some(heard))
                })
                .chain((0..20).map(|i| node(&format!("par-{i}"), "par", Some(at(now)))))
                .collect()
        };
        // Without the heal's grace, the five would be declared down: the false downs.
        let v = evaluate(&config, t0, at(192), &nodes(192), None, &Heals::default());
        assert!(v.alarms.is_empty(), "5 of 20 silent is no partition");
        assert_eq!(v.declare_down.len(), 5);
        // The alarm cleared at t=191: ams's hosts have the grace to re-attach.
        let mut heals = Heals::default();
        heals.cleared("ams", at(191));
        let v = evaluate(&config, t0, at(192), &nodes(192), None, &heals);
        assert!(v.declare_down.is_empty(), "{:?}", v.declare_down);
        let v = evaluate(&config, t0, at(220), &nodes(220), None, &heals);
        assert!(v.declare_down.is_empty(), "{:?}", v.declare_down);
        // Still silent once the grace is over: really gone.
        let v = evaluate(&config, t0, at(222), &nodes(222), None, &heals);
        assert_eq!(v.declare_down.len(), 5, "{:?}", v.declare_down);
        // But while hosts keep coming back (one returned at t=215, out of its backoff), the
        // rest are awaited a while longer…
        heals.returned("ams", at(215));
        let v = evaluate(&config, t0, at(244), &nodes(244), None, &heals);
        assert!(v.declare_down.is_empty(), "{:?}", v.declare_down);
        // …until none has returned for the grace.
        let v = evaluate(&config, t0, at(246), &nodes(246), None, &heals);
        assert_eq!(v.declare_down.len(), 5, "{:?}", v.declare_down);
        heals.forget_over(&config, at(246));
        assert!(!heals.healing(&config, "ams", at(246)));
        // A region that was never cut is not helped by a host of it returning.
        heals.returned("par", at(245));
        assert!(!heals.healing(&config, "par", at(246)));
    }

    #[test]
    fn silent_nodes_become_suspect_then_down_but_not_in_grace_or_a_partition() {
        let config = LivenessConfig::default();
        let t0 = Instant::now();
        let leader_since = t0;
        let at = |s: u64| t0 + Duration::from_secs(s);
        // par: 4 hosts, one goes silent at t=0; fra: 3 hosts, all silent at t=0.
        let nodes = |now: Instant| {
            vec![
                node("par-1", "par", Some(now)),
                node("par-2", "par", Some(now)),
                node("par-3", "par", Some(now)),
                node("par-4", "par", Some(t0)),
                node("fra-1", "fra", Some(t0)),
                node("fra-2", "fra", Some(t0)),
                node("fra-3", "fra", Some(t0)),
            ]
        };
        let v = evaluate(
            &config,
            leader_since,
            at(10),
            &nodes(at(10)),
            None,
            &Heals::default(),
        );
        assert!(v.liveness.values().all(|l| *l == Liveness::Alive));
        let v = evaluate(
            &config,
            leader_since,
            at(20),
            &nodes(at(20)),
            None,
            &Heals::default(),
        );
        let par4 = NodeId::parse("par-4").unwrap();
        assert_eq!(v.liveness[&par4], Liveness::Suspect);
        assert!(v.declare_down.is_empty(), "suspect, not down yet");
        // fra went silent as a whole: an alarm, not downs.
        assert_eq!(
            v.alarms,
            vec![PartitionAlarm {
                region: "fra".into(),
                silent: 3,
                nodes: 3
            }]
        );
        // Past down_after + its jitter: par-4 is declared down; fra's nodes are not.
        let v = evaluate(
            &config,
            leader_since,
            at(75),
            &nodes(at(75)),
            None,
            &Heals::default(),
        );
        assert_eq!(v.declare_down, vec![par4.clone()]);
        assert_eq!(v.alarms.len(), 1);

        // A new leader (grace): nothing declared down in its first 30 s, whoever is silent.
        let v = evaluate(
            &config,
            at(60),
            at(80),
            &nodes(at(80)),
            None,
            &Heals::default(),
        );
        assert!(v.declare_down.is_empty());
        // After the grace and down_after counted from the leader's start: down.
        let v = evaluate(
            &config,
            at(60),
            at(60 + 75),
            &nodes(at(60 + 75)),
            None,
            &Heals::default(),
        );
        assert_eq!(v.declare_down, vec![par4]);

        // Jitter spreads the moments nodes are declared down, within 20 % of down_after.
        let spread: BTreeSet<u64> = (0..50)
            .map(|i| {
                let n = NodeId::parse(&format!("h-{i}")).unwrap();
                (jitter_of(&n) * 1000.0) as u64
            })
            .collect();
        assert!(spread.len() > 40);
    }
}
