//! The NOC's views (operators; a person needs two-step verification): `GET /v1/noc/fleet` —
//! per datacenter, hosts by state, GPUs by model and state, CPU and memory allocated and held
//! against capacity, work waiting, a silent datacenter; Raft's health; and the hosts matching
//! a search, densely (the first 200: a fleet of 10,000 is searched, not scrolled) —
//! and `GET /v1/nodes/{id}/workloads`: what runs on a host and **who it belongs to**, to say
//! before a drain what will happen to whom.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use vmcloud_proto::NodeId;

use crate::api::context::{ApiQuery, ApiState, Operator, Who};
use crate::api::problem::Problem;
use crate::instances::types::InstanceState;
use crate::nodes::liveness::Liveness;
use crate::state::ClusterState;
use crate::tenancy::authz::Principal;
use crate::tenancy::types::OrgKind;

/// Hosts a fleet view lists at most.
pub const MAX_ROWS: usize = 200;

/// A person at the NOC must have logged in with a second factor.
pub fn require_mfa(who: &Who) -> Result<(), Problem> {
    match who.principal {
        Principal::User { mfa: false, .. } => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "mfa-required",
            "Two-step verification required",
            "the NOC's views need a login with two-step verification: turn it on in your account, then log in again with a code",
        )),
        _ => Ok(()),
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FleetQuery {
    /// One datacenter (a catalog region).
    #[serde(default)]
    pub region: Option<String>,
    /// Hosts in this state: ready, cordoned, draining, maintenance, down (or `suspect`: as the
    /// leader hears them).
    #[serde(default)]
    pub state: Option<String>,
    /// Part of a host's name or id.
    #[serde(default)]
    pub q: Option<String>,
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct RegionSummary {
    pub region: String,
    /// Hosts by state.
    pub hosts: BTreeMap<String, u32>,
    /// Hosts the leader does not hear (suspect).
    pub suspect: u32,
    /// GPUs by model, then by state (bound, warm, held, free, unschedulable, unhealthy).
    pub gpus: BTreeMap<String, BTreeMap<String, u32>>,
    /// Bound and held GPUs over all of them (0 to 1).
    pub gpu_tension: f64,
    pub vcpus_capacity: u64,
    pub vcpus_allocated: u64,
    pub vcpus_held: u64,
    pub memory_capacity_mib: u64,
    pub memory_allocated_mib: u64,
    pub memory_held_mib: u64,
    /// Work waiting for a host, by kind (instance, job, session, warm-vm).
    pub pending: BTreeMap<String, u32>,
    /// The longest wait, in seconds.
    pub oldest_pending_s: u64,
    /// Most of its hosts went silent at once (a cut link).
    pub silent: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RaftSummary {
    pub term: u64,
    /// 0: none known.
    pub leader: u64,
    pub voters: Vec<u64>,
    pub commit_index: u64,
    /// On the leader: voters more than 1,000 entries behind (or not heard): unreachable or
    /// slow replicas.
    pub lagging: Vec<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HostRow {
    pub id: String,
    pub hostname: String,
    pub region: String,
    pub state: String,
    /// As the leader hears it: alive, suspect, down (absent on a follower).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<String>,
    pub gpus: u32,
    pub gpus_bound: u32,
    pub gpus_unhealthy: u32,
    pub vcpus_allocated: u32,
    pub vcpus: u32,
    pub instances: u32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FleetView {
    pub regions: Vec<RegionSummary>,
    pub raft: RaftSummary,
    /// Hosts matching the query.
    pub matching: u32,
    /// The first of them (at most 200), by region then name.
    pub hosts: Vec<HostRow>,
}

fn liveness_str(l: Liveness) -> &'static str {
    match l {
        Liveness::Alive => "alive",
        Liveness::Suspect => "suspect",
        Liveness::Down => "down",
    }
}

/// The fleet as the NOC sees it (pure, for the page's benchmark too).
pub fn fleet_view(
    state: &ClusterState,
    q: &FleetQuery,
    liveness: &crate::nodes::liveness::Verdict,
    raft: RaftSummary,
    now_ms: i64,
) -> FleetView {
    /// A datacenter's figures while hosts are counted (borrowed keys: no allocation per host).
    #[derive(Default)]
    struct Acc<'s> {
        hosts: BTreeMap<&'static str, u32>,
        gpus: BTreeMap<(&'s str, &'static str), u32>,
        suspect: u32,
        vcpus: [u64; 3],
        memory: [u64; 3],
        pending: BTreeMap<&'static str, u32>,
        oldest_ms: i64,
    }
    let mut acc: BTreeMap<&str, Acc> = BTreeMap::new();
    let silent: BTreeSet<&str> = liveness.alarms.iter().map(|a| a.region.as_str()).collect();
    let needle = q.q.as_deref().map(str::to_lowercase);
    let mut rows = Vec::new();
    let mut matching = 0;
    for n in state.nodes.values() {
        let used = state.usage(&n.id);
        let live = liveness.liveness.get(&n.id).copied();
        let r = acc.entry(n.region.as_str()).or_default();
        *r.hosts.entry(n.state.as_str()).or_default() += 1;
        r.suspect += u32::from(live == Some(Liveness::Suspect));
        r.vcpus[0] += u64::from(n.allocatable_vcpus());
        r.vcpus[1] += u64::from(used.vcpus);
        r.vcpus[2] += u64::from(used.held.vcpus);
        r.memory[0] += n.allocatable_memory_mib();
        r.memory[1] += used.memory_mib;
        r.memory[2] += used.held.memory_mib;
        let mut bound = 0;
        let mut unhealthy = 0;
        let mut held = used.held.gpus;
        for g in n.gpus.iter().filter(|g| !g.mig) {
            let is_bound = used.gpus.contains(&g.pci_address);
            bound += u32::from(is_bound);
            unhealthy += u32::from(g.unhealthy.is_some());
            let st = if g.unhealthy.is_some() {
                "unhealthy"
            } else if is_bound {
                "bound"
            } else if n.state != crate::nodes::types::NodeState::Ready {
                "unschedulable"
            } else if held > 0 {
                held -= 1;
                "held"
            } else {
                "free"
            };
            *r.gpus.entry((g.model.as_str(), st)).or_default() += 1;
        }
        let state_ok = q.state.as_deref().is_none_or(|st| {
            n.state.as_str() == st || (st == "suspect" && live == Some(Liveness::Suspect))
        });
        let region_ok = q.region.as_deref().is_none_or(|x| x == n.region);
        let text_ok = needle
            .as_deref()
            .is_none_or(|x| n.hostname.to_lowercase().contains(x) || n.id.as_str().contains(x));
        if state_ok && region_ok && text_ok {
            matching += 1;
            // Rows are made for the first few only (after sorting), not for 10,000 hosts.
            rows.push((
                n.region.as_str(),
                n.hostname.as_str(),
                &**n,
                bound,
                unhealthy,
            ));
        }
    }
    for i in state.pending() {
        if let Some(r) = acc.get_mut(i.region.as_str()) {
            let kind = if i.is_warm() {
                "warm-vm"
            } else if i.session.is_some() {
                "session"
            } else if i.job.is_some() {
                "job"
            } else {
                "instance"
            };
            *r.pending.entry(kind).or_default() += 1;
            r.oldest_ms = r.oldest_ms.max(now_ms - i.created_at_ms);
        }
    }
    let regions: Vec<RegionSummary> = acc
        .into_iter()
        .map(|(region, a)| {
            let mut gpus: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
            let (mut taken, mut all) = (0u32, 0u32);
            for ((model, st), count) in a.gpus {
                all += count;
                if st == "bound" || st == "held" {
                    taken += count;
                }
                gpus.entry(model.to_owned())
                    .or_default()
                    .insert(st.to_owned(), count);
            }
            RegionSummary {
                region: region.to_owned(),
                hosts: a
                    .hosts
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
                suspect: a.suspect,
                gpus,
                gpu_tension: if all == 0 {
                    0.0
                } else {
                    f64::from(taken) / f64::from(all)
                },
                vcpus_capacity: a.vcpus[0],
                vcpus_allocated: a.vcpus[1],
                vcpus_held: a.vcpus[2],
                memory_capacity_mib: a.memory[0],
                memory_allocated_mib: a.memory[1],
                memory_held_mib: a.memory[2],
                pending: a
                    .pending
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
                oldest_pending_s: (a.oldest_ms.max(0) / 1000) as u64,
                silent: silent.contains(region),
            }
        })
        .collect();
    rows.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let rows: Vec<HostRow> = rows
        .into_iter()
        .take(MAX_ROWS)
        .map(|(_, _, n, bound, unhealthy)| {
            let used = state.usage(&n.id);
            HostRow {
                id: n.id.to_string(),
                hostname: n.hostname.clone(),
                region: n.region.clone(),
                state: n.state.as_str().to_owned(),
                liveness: liveness
                    .liveness
                    .get(&n.id)
                    .map(|l| liveness_str(*l).to_owned()),
                gpus: n.gpus.len() as u32,
                gpus_bound: bound,
                gpus_unhealthy: unhealthy,
                vcpus_allocated: used.vcpus,
                vcpus: n.allocatable_vcpus(),
                instances: used.instances.len() as u32,
            }
        })
        .collect();
    FleetView {
        regions,
        raft,
        matching,
        hosts: rows,
    }
}

/// `GET /v1/noc/fleet`.
pub async fn fleet(
    State(s): State<ApiState>,
    Operator(who): Operator,
    ApiQuery(q): ApiQuery<FleetQuery>,
) -> Result<Json<FleetView>, Problem> {
    require_mfa(&who)?;
    let state = s.cluster.state();
    let status = s.cluster.raft_status().borrow().clone();
    let verdict = s.liveness.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let lagging = if status.is_leader {
        status
            .voters
            .iter()
            .filter(|v| **v != status.id)
            .filter(|v| {
                status
                    .matched
                    .get(v)
                    .is_none_or(|m| m + 1000 < status.commit)
            })
            .copied()
            .collect()
    } else {
        Vec::new()
    };
    let raft = RaftSummary {
        term: status.term,
        leader: status.leader_id,
        voters: status.voters,
        commit_index: status.commit,
        lagging,
    };
    let now = crate::clock::now_ms().max(state.now_ms);
    Ok(Json(fleet_view(&state, &q, &verdict, raft, now)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkloadRow {
    pub id: String,
    pub name: String,
    /// instance, job member, session, warm VM.
    pub kind: String,
    pub state: String,
    pub market: String,
    pub project: String,
    pub organisation: String,
    pub organisation_name: String,
    /// company, person or household.
    pub organisation_kind: String,
    pub gpus: u32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HostWorkloads {
    pub node: String,
    pub workloads: Vec<WorkloadRow>,
    /// Distinct organisations with work on the host.
    pub organisations: u32,
    /// Of them, customers (companies and people) and gamers' households.
    pub customers: u32,
    pub households: u32,
    /// Spot work (stopped at once by a drain, with its notice).
    pub spot: u32,
    /// Game sessions running there (a drain ends them at its deadline).
    pub sessions: u32,
    /// Warm game VMs waiting for launches there (nobody plays on them: they leave at once).
    pub warm: u32,
}

/// What runs on `node` and who it belongs to.
pub fn host_workloads(state: &ClusterState, node: &NodeId) -> HostWorkloads {
    let used = state.usage(node);
    let mut orgs: BTreeMap<String, OrgKind> = BTreeMap::new();
    let mut workloads = Vec::new();
    let (mut spot, mut sessions, mut warm) = (0, 0, 0);
    for i in used
        .instances
        .iter()
        .filter_map(|id| state.instances.get(id))
    {
        let org = state.projects.get(&i.project).map(|p| p.org.clone());
        let o = org.as_ref().and_then(|o| state.organisations.get(o));
        if !i.is_warm()
            && let (Some(org), Some(o)) = (&org, o)
        {
            orgs.insert(org.to_string(), o.kind);
        }
        spot += u32::from(i.market == crate::instances::types::Market::Spot && !i.is_warm());
        sessions += u32::from(i.session.is_some() && !i.is_warm());
        warm += u32::from(i.is_warm());
        workloads.push(WorkloadRow {
            id: i.id.to_string(),
            name: i.name.clone(),
            kind: if i.is_warm() {
                "warm VM".into()
            } else {
                i.kind().to_owned()
            },
            state: match i.state {
                InstanceState::Scheduled => "starting".into(),
                other => other.as_str().to_owned(),
            },
            market: i.market.as_str().to_owned(),
            project: i.project.to_string(),
            organisation: org.map(|o| o.to_string()).unwrap_or_default(),
            organisation_name: o.map(|o| o.name.clone()).unwrap_or_default(),
            organisation_kind: o.map(|o| o.kind.as_str().to_owned()).unwrap_or_default(),
            gpus: i.gpus.len() as u32,
        });
    }
    workloads.sort_by(|a, b| (&a.organisation_name, &a.id).cmp(&(&b.organisation_name, &b.id)));
    let households = orgs.values().filter(|k| **k == OrgKind::Household).count() as u32;
    HostWorkloads {
        node: node.to_string(),
        organisations: orgs.len() as u32,
        customers: orgs.len() as u32 - households,
        households,
        spot,
        sessions,
        warm,
        workloads,
    }
}

/// `GET /v1/nodes/{id}/workloads`.
pub async fn workloads(
    State(s): State<ApiState>,
    Operator(who): Operator,
    Path(id): Path<String>,
) -> Result<Json<HostWorkloads>, Problem> {
    require_mfa(&who)?;
    let node =
        NodeId::parse(&id).map_err(|e| Problem::not_found(format!("no node `{id}`: {e}")))?;
    let state = s.cluster.state();
    if !state.nodes.contains_key(&node) {
        return Err(Problem::not_found(format!("no node `{id}`")));
    }
    Ok(Json(host_workloads(&state, &node)))
}
