//! `vmcloud sim efficiency`: how well placement packs GPUs, measured from an empty fleet.
//!
//! The fleet of `vmcloud sim fleet` starts with nothing on it, and a seeded stream of arrivals
//! and departures is replayed against one scheduler state through the same path the
//! scheduler takes: every arrival is a `CreateInstance` (or `CreateJob`) command applied to
//! [`ClusterState`], the production planner ([`plan_pending`]) decides, its plan is applied as
//! a `PlaceInstances` command (which re-checks it), spot notices run out through
//! `ReclaimInstances` as the placement controller proposes them, departures are
//! `DeleteInstance`, and simulated agents report the instances gone (`ObserveInstances`). Time
//! comes from the commands (5-minute steps), so 30 days take minutes, not a month.
//!
//! The stream, per region and GPU model: on-demand instances of 1, 2, 4 and 8 GPUs (as many
//! as the model's hosts hold), cloud-gaming sessions (1 GPU, short) on L40S and RTX 4090, MIG
//! slices on the hosts in MIG mode, VPSes of 8 to 32 vCPUs on the CPU hosts (half their
//! vCPUs: load enough to matter if it spilled onto GPU hosts, few enough instances to replay
//! a month in minutes). Their arrival rate follows the
//! load: it rises from an empty fleet until on-demand work holds `--load` of the GPUs, then
//! keeps it there (Little's law, corrected by how far the load is from the goal). Spot
//! instances and spot AI jobs (the backfill) wait in a standing queue and take what on-demand
//! work leaves; on-demand work that finds no room preempts them. On-demand work that can be
//! placed nowhere is refused (the customer goes elsewhere).
//!
//! Figures are taken every simulated hour after a warm-up (a tenth of the run, at least 12
//! hours):
//! - `stranded_share`: of the GPUs on-demand work could have (free, or held by spot and
//!   backfill it may preempt), the share on hosts where on-demand work already holds a GPU, so
//!   that no whole-host request of that model fits there (GPUs in MIG mode are left out).
//! - `refused_large_share`: of the 8-GPU requests, the share refused while the region had at
//!   least 8 GPUs of the model that on-demand work could have had in total.
//! - `filled_share`: the share of GPU-hours bound to any work (on-demand, spot, backfill).
//!
//! Each figure is printed beside its goal; the last line is JSON.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{GpuBinding, InstanceId, JobId, NodeId, ProjectId};
use vmcloud_scheduler::fleet_generator::{REGIONS, generate_fleet};
use vmcloud_scheduler::instances::types::{InstanceState, Market, WAITING_FOR_PLACEMENT};
use vmcloud_scheduler::placement::plan_pending;
use vmcloud_scheduler::state::{ApplyResult, ClusterState};

const GOAL_STRANDED: f64 = 0.02;
const GOAL_FILLED: f64 = 0.95;
const STEP_MS: i64 = 5 * 60_000;
const STEPS_PER_HOUR: i64 = 12;
/// Customers the stream's work is spread over.
const PROJECTS: usize = 256;
/// Spot requests of each size kept waiting per region and model, and backfill jobs per
/// region and model that takes them.
const SPOT_BACKLOG: usize = 2;
const JOB_BACKLOG: usize = 2;
/// VPSes keep this share of the CPU hosts' vCPUs bound.
const VPS_LOAD: f64 = 0.5;
/// The simulated clock's start: 2026-01-01.
const EPOCH_MS: i64 = 1_767_225_600_000;

#[derive(Debug, Args)]
pub struct EfficiencyArgs {
    /// Hosts of the generated fleet (the mix of `vmcloud sim fleet`), all empty at the start.
    #[arg(long, default_value_t = 10_000)]
    pub hosts: usize,
    /// Simulated days.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Seed of the fleet and of the stream: the same seed replays the same month.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of the GPUs on-demand work keeps bound once the fleet has filled.
    #[arg(long, default_value_t = 0.8)]
    pub load: f64,
}

/// What a piece of work is, for the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Vps,
    Gpu,
    Session,
    Mig,
    Spot,
    Job,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Vps => "vps",
            Kind::Gpu => "gpu",
            Kind::Session => "session",
            Kind::Mig => "mig",
            Kind::Spot => "spot",
            Kind::Job => "job",
        }
    }

    /// Spot and backfill: what on-demand work may take back.
    fn preemptible(self) -> bool {
        matches!(self, Kind::Spot | Kind::Job)
    }
}

/// On-demand demand on a model: (kind, GPUs, share of the model's on-demand GPU-hours, mean
/// life in hours).
fn demand(model: &str) -> &'static [(Kind, u32, f64, f64)] {
    match model {
        "H100" | "A100" => &[
            (Kind::Gpu, 1, 0.25, 8.0),
            (Kind::Gpu, 2, 0.15, 12.0),
            (Kind::Gpu, 4, 0.20, 24.0),
            (Kind::Gpu, 8, 0.40, 48.0),
        ],
        "L40S" => &[
            (Kind::Session, 1, 0.40, 1.5),
            (Kind::Gpu, 1, 0.30, 12.0),
            (Kind::Gpu, 2, 0.15, 24.0),
            (Kind::Gpu, 4, 0.15, 24.0),
        ],
        _ => &[
            (Kind::Session, 1, 0.70, 1.5),
            (Kind::Gpu, 1, 0.20, 12.0),
            (Kind::Gpu, 2, 0.10, 24.0),
        ],
    }
}

/// The GPUs of one model in one region (whole GPUs; MIG slices counted apart).
#[derive(Debug, Default)]
struct Pool {
    region: &'static str,
    model: String,
    per_host: u32,
    /// Whole GPUs (not in MIG mode).
    gpus: u32,
    /// 1g slices of its GPUs in MIG mode, and that profile's name.
    slices: u32,
    mig_profile: Option<String>,
    /// Bound now: GPUs to on-demand work, to spot and backfill; slices.
    on_demand: u32,
    preemptible: u32,
    slices_bound: u32,
}

/// A placed piece of work, for the counters.
#[derive(Debug, Clone)]
struct Placed {
    pool: Option<usize>,
    region: usize,
    kind: Kind,
    gpus: u32,
    vcpus: u32,
    node: NodeId,
}

/// What the stream made, before it is placed.
#[derive(Debug, Clone)]
struct Meta {
    pool: Option<usize>,
    region: usize,
    kind: Kind,
    gpus: u32,
    /// How long it runs once placed (jobs stop at their maximum run time instead).
    life_ms: Option<i64>,
    /// Placed once already (a spot job member requeued after a preemption).
    placed_before: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Requests {
    asked: u64,
    placed: u64,
    refused: u64,
    /// Refused while the region had enough GPUs of the model for it in total.
    refused_with_room: u64,
}

/// The figures, summed over the hourly samples after the warm-up.
#[derive(Debug, Default)]
struct Tally {
    samples: u64,
    gpus: u64,
    on_demand: u64,
    preemptible: u64,
    /// GPUs on-demand work could have, and those of them on hosts it has started.
    could_have: u64,
    stranded: u64,
    slices: u64,
    slices_bound: u64,
    cpu_vcpus: u64,
    vps_vcpus: u64,
}

struct Sim {
    state: ClusterState,
    index: u64,
    now_ms: i64,
    rng: StdRng,
    next_id: u64,
    projects: Vec<ProjectId>,
    pools: Vec<Pool>,
    /// (region, model) → pool.
    pool_of: HashMap<(&'static str, String), usize>,
    /// GPU hosts: (node, pool, whole GPUs).
    gpu_hosts: Vec<(NodeId, usize, u32)>,
    /// vCPUs of CPU hosts per region, and bound by VPSes.
    cpu_vcpus: [u64; 3],
    vps_vcpus: [u64; 3],
    meta: HashMap<InstanceId, Meta>,
    placed: HashMap<InstanceId, Placed>,
    /// Per host: GPUs bound to on-demand work and to preemptible work.
    host_gpus: HashMap<NodeId, (u32, u32)>,
    departures: BinaryHeap<Reverse<(i64, InstanceId)>>,
    requests: BTreeMap<(Kind, u32), Requests>,
    preemptions: u64,
    commands: u64,
    tally: Tally,
}

pub fn efficiency(args: EfficiencyArgs) -> anyhow::Result<()> {
    if args.hosts == 0 || args.days == 0 {
        bail!("--hosts and --days must be at least 1");
    }
    if !(0.05..=0.99).contains(&args.load) {
        bail!(
            "--load is the share of GPUs on-demand work keeps bound: between 0.05 and 0.99, not {}",
            args.load
        );
    }
    let started = Instant::now();
    let mut sim = Sim::new(&args)?;
    let total_steps = i64::from(args.days) * 24 * STEPS_PER_HOUR;
    let warm_up = (total_steps / 10)
        .max(12 * STEPS_PER_HOUR)
        .min(total_steps / 2);
    eprintln!(
        "{} hosts ({} GPU hosts, {} whole GPUs, {} MIG slices), empty; {} days in 5-minute steps, seed {}, on-demand load {:.0} %, warm-up {} h",
        args.hosts,
        sim.gpu_hosts.len(),
        sim.pools.iter().map(|p| p.gpus).sum::<u32>(),
        sim.pools.iter().map(|p| p.slices).sum::<u32>(),
        args.days,
        args.seed,
        args.load * 100.0,
        warm_up / STEPS_PER_HOUR
    );
    for step in 0..total_steps {
        sim.now_ms = EPOCH_MS + step * STEP_MS;
        sim.step(args.load)
            .with_context(|| format!("simulated step {step}"))?;
        if step >= warm_up && step % STEPS_PER_HOUR == 0 {
            sim.sample();
        }
        if step % (24 * STEPS_PER_HOUR) == 24 * STEPS_PER_HOUR - 1 {
            let (gpus, od, pre) = sim.pools.iter().fold((0, 0, 0), |a, p| {
                (a.0 + p.gpus, a.1 + p.on_demand, a.2 + p.preemptible)
            });
            eprintln!(
                "day {:>3}: on-demand {:.1} % of GPUs, spot and backfill {:.1} %, {} instances, {:.0} s",
                (step + 1) / (24 * STEPS_PER_HOUR),
                100.0 * f64::from(od) / f64::from(gpus.max(1)),
                100.0 * f64::from(pre) / f64::from(gpus.max(1)),
                sim.state.instances.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    sim.report(&args, started.elapsed().as_secs_f64());
    Ok(())
}

impl Sim {
    fn new(args: &EfficiencyArgs) -> anyhow::Result<Sim> {
        let mut state = generate_fleet(args.hosts, args.seed, 0.0);
        // The generator's VPSes: the fleet starts empty.
        state.instances.clear();
        state.reindex();
        let mut sim = Sim {
            state,
            index: 0,
            now_ms: EPOCH_MS,
            rng: StdRng::seed_from_u64(args.seed ^ 0xeff1_c1e4),
            next_id: 0,
            projects: Vec::new(),
            pools: Vec::new(),
            pool_of: HashMap::new(),
            gpu_hosts: Vec::new(),
            cpu_vcpus: [0; 3],
            vps_vcpus: [0; 3],
            meta: HashMap::new(),
            placed: HashMap::new(),
            host_gpus: HashMap::new(),
            departures: BinaryHeap::new(),
            requests: BTreeMap::new(),
            preemptions: 0,
            commands: 0,
            tally: Tally::default(),
        };
        let nodes: Vec<_> = sim.state.nodes.values().cloned().collect();
        for node in nodes {
            let region = REGIONS
                .iter()
                .position(|r| *r == node.region)
                .context("a generated host in an unknown region")?;
            let Some(first) = node.gpus.first() else {
                sim.cpu_vcpus[region] += u64::from(node.allocatable_vcpus());
                continue;
            };
            let key = (REGIONS[region], first.model.clone());
            let next = sim.pools.len();
            let pool = *sim.pool_of.entry(key).or_insert(next);
            if pool == next {
                sim.pools.push(Pool {
                    region: REGIONS[region],
                    model: first.model.clone(),
                    ..Pool::default()
                });
            }
            let p = &mut sim.pools[pool];
            let whole = node.whole_gpus() as u32;
            p.per_host = p.per_host.max(node.gpus.len() as u32);
            p.gpus += whole;
            for g in node.gpus.iter().filter(|g| g.mig) {
                let profile = vmcloud_scheduler::nodes::mig::profiles(&g.model, g.memory_mib)
                    .into_iter()
                    .next()
                    .context("a GPU in MIG mode has profiles")?;
                p.slices += 7;
                p.mig_profile = Some(profile.name);
            }
            if whole > 0 {
                sim.gpu_hosts.push((node.id.clone(), pool, whole));
            }
        }
        for n in 0..PROJECTS {
            let project = ProjectId::parse(&format!("prj-sim-{n:03}"))?;
            sim.apply(Body::CreateProject(pb::CreateProject {
                project_id: project.to_string(),
                name: format!("customer {n}"),
                operator: false,
                ..Default::default()
            }))?
            .map_err(|e| anyhow::anyhow!("creating project {project}: {e}"))?;
            for body in super::unlimited_quotas(project.as_str()) {
                sim.apply(body)?
                    .map_err(|e| anyhow::anyhow!("lifting {project}'s quotas: {e}"))?;
            }
            sim.projects.push(project);
        }
        Ok(sim)
    }

    /// Applies one command at the simulated time, as a replica applies a committed entry.
    fn apply(&mut self, body: Body) -> anyhow::Result<ApplyResult> {
        self.index += 1;
        self.commands += 1;
        let result = self.state.apply(
            self.index,
            pb::Command {
                actor: None,
                request: None,
                at_unix_ms: self.now_ms,
                body: Some(body),
            },
        );
        // What the history store would have written.
        self.state.history.0.clear();
        Ok(result)
    }

    fn step(&mut self, load: f64) -> anyhow::Result<()> {
        let mut gone: Vec<InstanceId> = Vec::new();
        // Spot notices and jobs' run times that have run out, as the controller proposes them.
        let (_, due) = self.state.notices_ending(self.now_ms);
        if !due.is_empty() {
            let ids = due.iter().map(ToString::to_string).collect();
            self.apply(Body::ReclaimInstances(pb::ReclaimInstances {
                instance_ids: ids,
            }))?
            .map_err(|e| anyhow::anyhow!("reclaiming: {e}"))?;
            gone.extend(due);
        }
        // Work that ends.
        while let Some(Reverse((at, _))) = self.departures.peek() {
            if *at > self.now_ms {
                break;
            }
            let Some(Reverse((_, id))) = self.departures.pop() else {
                break;
            };
            let Some(i) = self.state.instances.get(&id) else {
                continue;
            };
            if i.state == InstanceState::Deleting || i.node.is_none() {
                continue;
            }
            let project = i.project.to_string();
            self.apply(Body::DeleteInstance(pb::DeleteInstance {
                instance_id: id.to_string(),
                project_id: project,
            }))?
            .map_err(|e| anyhow::anyhow!("deleting {id}: {e}"))?;
            gone.push(id);
        }
        self.agents_report_gone(gone)?;
        self.arrivals(load)?;
        self.place()?;
        self.refuse()
    }

    /// The simulated agents stop what is being deleted and say so.
    fn agents_report_gone(&mut self, ids: Vec<InstanceId>) -> anyhow::Result<()> {
        let mut by_node: BTreeMap<NodeId, Vec<InstanceId>> = BTreeMap::new();
        for id in ids {
            if let Some(i) = self.state.instances.get(&id)
                && i.state == InstanceState::Deleting
                && let Some(node) = &i.node
            {
                by_node.entry(node.clone()).or_default().push(id);
            }
        }
        for (node, ids) in by_node {
            let instances = ids
                .iter()
                .map(|id| pb::InstanceStatus {
                    instance_id: id.to_string(),
                    state: pb::ObservedState::Absent as i32,
                    message: String::new(),
                })
                .collect();
            self.apply(Body::ObserveInstances(pb::ObserveInstances {
                node_id: node.to_string(),
                instances,
            }))?
            .map_err(|e| anyhow::anyhow!("{node} reporting: {e}"))?;
            for id in ids {
                self.unplaced(&id);
            }
        }
        Ok(())
    }

    fn unplaced(&mut self, id: &InstanceId) {
        let Some(p) = self.placed.remove(id) else {
            return;
        };
        if let Some(pool) = p.pool {
            let pool = &mut self.pools[pool];
            match p.kind {
                Kind::Mig => pool.slices_bound -= 1,
                k if k.preemptible() => pool.preemptible -= p.gpus,
                _ => pool.on_demand -= p.gpus,
            }
            if p.kind != Kind::Mig
                && let Some(h) = self.host_gpus.get_mut(&p.node)
            {
                if p.kind.preemptible() {
                    h.1 -= p.gpus;
                } else {
                    h.0 -= p.gpus;
                }
            }
        } else {
            self.vps_vcpus[p.region] -= u64::from(p.vcpus);
        }
        // A requeued job member waits again: it keeps its description.
        if !self.state.instances.contains_key(id) {
            self.meta.remove(id);
        }
    }

    fn new_id(&mut self) -> InstanceId {
        self.next_id += 1;
        let tail: u32 = self.rng.random();
        InstanceId::parse(&format!("i-{:012x}{tail:08x}", self.next_id))
            .expect("a valid instance id")
    }

    /// Draws a count with mean `mean` (Poisson).
    fn poisson(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        if mean > 30.0 {
            // Normal approximation.
            let (u1, u2): (f64, f64) = (self.rng.random(), self.rng.random());
            let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            return (mean + z * mean.sqrt()).round().max(0.0) as u64;
        }
        let limit = (-mean).exp();
        let (mut k, mut p) = (0, 1.0);
        loop {
            p *= self.rng.random::<f64>();
            if p <= limit {
                return k;
            }
            k += 1;
        }
    }

    fn life(&mut self, mean_h: f64) -> i64 {
        let u: f64 = self.rng.random();
        let h = -mean_h * (1.0 - u).ln();
        // At least one step.
        ((h * 3_600_000.0) as i64).max(STEP_MS)
    }

    /// How much faster than the steady rate work arrives while the load is below its goal
    /// (and slower above it).
    fn pace(bound: f64, goal: f64) -> f64 {
        if goal <= 0.0 {
            return 0.0;
        }
        (1.0 + 4.0 * (goal - bound) / goal).clamp(0.0, 5.0)
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        pool: Option<usize>,
        region: usize,
        kind: Kind,
        gpus: u32,
        vcpus: u32,
        memory_mib: u64,
        life_h: f64,
    ) -> anyhow::Result<()> {
        let id = self.new_id();
        let project = self.projects[self.rng.random_range(0..self.projects.len())].clone();
        let (model, mig) = match pool {
            Some(p) => (
                self.pools[p].model.clone(),
                (kind == Kind::Mig)
                    .then(|| self.pools[p].mig_profile.clone())
                    .flatten()
                    .unwrap_or_default(),
            ),
            None => (String::new(), String::new()),
        };
        let market = if kind.preemptible() {
            pb::Market::Spot
        } else {
            pb::Market::OnDemand
        };
        let life_ms = self.life(life_h);
        let create = pb::CreateInstance {
            instance_id: id.to_string(),
            project_id: project.to_string(),
            name: kind.name().into(),
            flavor: format!("sim-{}-{gpus}", kind.name()),
            image: "debian-12".into(),
            region: REGIONS[region].into(),
            vcpus,
            memory_mib,
            disk_gib: 25,
            gpu_model: model,
            gpu_count: gpus,
            gpu_mig_profile: mig,
            market: market as i32,
            ..Default::default()
        };
        self.apply(Body::CreateInstance(create))?
            .map_err(|e| anyhow::anyhow!("creating a {} request: {e}", kind.name()))?;
        self.meta.insert(
            id,
            Meta {
                pool,
                region,
                kind,
                gpus,
                life_ms: Some(life_ms),
                placed_before: false,
            },
        );
        self.requests.entry((kind, gpus)).or_default().asked += 1;
        Ok(())
    }

    /// A spot AI job of `members` members of `gpus` GPUs each.
    fn create_job(&mut self, pool: usize, members: u32, gpus: u32) -> anyhow::Result<()> {
        let job = JobId::parse(&format!("job-{:016x}", self.rng.random::<u64>()))?;
        let project = self.projects[self.rng.random_range(0..self.projects.len())].clone();
        let max_runtime_s = self.rng.random_range(3_600..8 * 3_600);
        let (region, model) = (self.pools[pool].region, self.pools[pool].model.clone());
        let region_pos = REGIONS.iter().position(|r| *r == region).unwrap_or(0);
        let mut ids = Vec::new();
        let members_cmd = (0..members)
            .map(|member| {
                let id = self.new_id();
                ids.push(id.clone());
                pb::CreateInstance {
                    instance_id: id.to_string(),
                    project_id: project.to_string(),
                    name: format!("job-{member}"),
                    flavor: format!("sim-job-{gpus}"),
                    image: "debian-12".into(),
                    region: region.into(),
                    vcpus: 12 * gpus,
                    memory_mib: 98_304 * u64::from(gpus),
                    disk_gib: 25,
                    gpu_model: model.clone(),
                    gpu_count: gpus,
                    market: pb::Market::Spot as i32,
                    job: Some(pb::JobSpec {
                        job_id: job.to_string(),
                        priority: pb::JobPriority::Normal as i32,
                        max_runtime_s,
                        gang_size: members,
                        member,
                    }),
                    ..Default::default()
                }
            })
            .collect();
        self.apply(Body::CreateJob(pb::CreateJob {
            members: members_cmd,
        }))?
        .map_err(|e| anyhow::anyhow!("creating job {job}: {e}"))?;
        for id in ids {
            self.meta.insert(
                id,
                Meta {
                    pool: Some(pool),
                    region: region_pos,
                    kind: Kind::Job,
                    gpus,
                    life_ms: None,
                    placed_before: false,
                },
            );
        }
        self.requests.entry((Kind::Job, gpus)).or_default().asked += u64::from(members);
        Ok(())
    }

    fn arrivals(&mut self, load: f64) -> anyhow::Result<()> {
        let step_h = STEP_MS as f64 / 3_600_000.0;
        // On-demand GPU work and MIG slices, per pool.
        for pool in 0..self.pools.len() {
            let (gpus, bound, per_host, model) = {
                let p = &self.pools[pool];
                (
                    f64::from(p.gpus),
                    f64::from(p.on_demand),
                    p.per_host,
                    p.model.clone(),
                )
            };
            let region = REGIONS
                .iter()
                .position(|r| *r == self.pools[pool].region)
                .unwrap_or(0);
            let goal = load * gpus;
            let pace = Self::pace(bound, goal);
            for &(kind, count, share, life_h) in demand(&model) {
                if count > per_host {
                    continue;
                }
                let mean = share * goal / f64::from(count) / life_h * step_h * pace;
                for _ in 0..self.poisson(mean) {
                    self.create(
                        Some(pool),
                        region,
                        kind,
                        count,
                        12 * count,
                        98_304 * u64::from(count),
                        life_h,
                    )?;
                }
            }
            let slices = f64::from(self.pools[pool].slices);
            if slices > 0.0 {
                let goal = load * slices;
                let pace = Self::pace(f64::from(self.pools[pool].slices_bound), goal);
                let life_h = 6.0;
                for _ in 0..self.poisson(goal / life_h * step_h * pace) {
                    self.create(Some(pool), region, Kind::Mig, 1, 2, 12_288, life_h)?;
                }
            }
        }
        // VPSes on the CPU hosts.
        for region in 0..REGIONS.len() {
            let goal = VPS_LOAD * self.cpu_vcpus[region] as f64;
            let pace = Self::pace(self.vps_vcpus[region] as f64, goal);
            let (mean_vcpus, life_h) = (56.0 / 3.0, 72.0);
            for _ in 0..self.poisson(goal / mean_vcpus / life_h * step_h * pace) {
                let (vcpus, memory_mib) =
                    [(8, 16_384), (16, 65_536), (32, 131_072)][self.rng.random_range(0..3)];
                self.create(None, region, Kind::Vps, 0, vcpus, memory_mib, life_h)?;
            }
        }
        // Spot and backfill wait in a standing queue: top it up.
        let mut waiting: HashMap<(usize, Kind, u32), usize> = HashMap::new();
        let mut jobs_waiting: HashMap<usize, usize> = HashMap::new();
        for i in self.state.pending() {
            let Some(m) = self.meta.get(&i.id) else {
                continue;
            };
            match (m.kind, m.pool) {
                (Kind::Spot, Some(pool)) => {
                    *waiting.entry((pool, m.kind, m.gpus)).or_default() += 1
                }
                (Kind::Job, Some(pool)) => *jobs_waiting.entry(pool).or_default() += 1,
                _ => {}
            }
        }
        for pool in 0..self.pools.len() {
            let (per_host, region) = (
                self.pools[pool].per_host,
                REGIONS
                    .iter()
                    .position(|r| *r == self.pools[pool].region)
                    .unwrap_or(0),
            );
            for count in [1, 2, 4, 8].into_iter().filter(|c| *c <= per_host) {
                let have = waiting
                    .get(&(pool, Kind::Spot, count))
                    .copied()
                    .unwrap_or(0);
                for _ in have..SPOT_BACKLOG {
                    self.create(
                        Some(pool),
                        region,
                        Kind::Spot,
                        count,
                        12 * count,
                        98_304 * u64::from(count),
                        6.0,
                    )?;
                }
            }
            // Backfill jobs on the training GPUs.
            if per_host >= 8 {
                let have = jobs_waiting.get(&pool).copied().unwrap_or(0);
                let mut members_waiting = have;
                while members_waiting < JOB_BACKLOG {
                    let members = if self.rng.random_bool(0.7) { 1 } else { 2 };
                    let gpus = [1, 2, 4, 8][self.rng.random_range(0..4)];
                    self.create_job(pool, members, gpus)?;
                    members_waiting += members as usize;
                }
            }
        }
        Ok(())
    }

    /// Plans and applies until nothing changes, as the placement controller does.
    fn place(&mut self) -> anyhow::Result<()> {
        let mut planned_epoch = None;
        let mut last = None;
        for _ in 0..50 {
            let all = planned_epoch != Some(self.state.capacity_epoch);
            planned_epoch = Some(self.state.capacity_epoch);
            let plan = plan_pending(&self.state, all);
            if plan.is_empty() || last.as_ref() == Some(&plan) {
                break;
            }
            self.apply(Body::PlaceInstances(plan.to_command()))?
                .map_err(|e| anyhow::anyhow!("applying a plan: {e}"))?;
            self.preemptions += plan.preemptions.len() as u64;
            for (id, _) in &plan.placements {
                self.placed_now(id);
            }
            last = Some(plan);
        }
        Ok(())
    }

    /// Counts an instance the last plan placed (if applying it kept the placement).
    fn placed_now(&mut self, id: &InstanceId) {
        let Some(i) = self.state.instances.get(id) else {
            return;
        };
        let (Some(node), Some(meta)) = (i.node.clone(), self.meta.get(id).cloned()) else {
            return;
        };
        if self.placed.contains_key(id) {
            return;
        }
        let whole = i
            .gpus
            .iter()
            .filter(|g| matches!(g, GpuBinding::Whole(_)))
            .count() as u32;
        if let Some(pool) = meta.pool {
            let p = &mut self.pools[pool];
            match meta.kind {
                Kind::Mig => p.slices_bound += 1,
                k if k.preemptible() => p.preemptible += whole,
                _ => p.on_demand += whole,
            }
            if meta.kind != Kind::Mig {
                let h = self.host_gpus.entry(node.clone()).or_default();
                if meta.kind.preemptible() {
                    h.1 += whole;
                } else {
                    h.0 += whole;
                }
            }
        } else {
            self.vps_vcpus[meta.region] += u64::from(i.vcpus);
        }
        if !meta.placed_before {
            self.requests
                .entry((meta.kind, meta.gpus))
                .or_default()
                .placed += 1;
            if let Some(m) = self.meta.get_mut(id) {
                m.placed_before = true;
            }
        }
        if let Some(life) = meta.life_ms {
            self.departures
                .push(Reverse((self.now_ms + life, id.clone())));
        }
        self.placed.insert(
            id.clone(),
            Placed {
                pool: meta.pool,
                region: meta.region,
                kind: meta.kind,
                gpus: whole,
                vcpus: i.vcpus,
                node,
            },
        );
    }

    /// On-demand work placement found no room for (and no spot to preempt) is refused: the
    /// customer goes elsewhere.
    fn refuse(&mut self) -> anyhow::Result<()> {
        let refused: Vec<(InstanceId, String)> = self
            .state
            .pending()
            .filter(|i| {
                i.market != Market::Spot
                    && i.job.is_none()
                    && i.nominated_node.is_none()
                    && i.pending_reason.as_deref() != Some(WAITING_FOR_PLACEMENT)
            })
            .map(|i| {
                tracing::debug!(instance = %i.id, reason = ?i.pending_reason, "refused");
                (i.id.clone(), i.project.to_string())
            })
            .collect();
        for (id, project) in refused {
            if let Some(meta) = self.meta.remove(&id) {
                let room = meta.pool.is_some_and(|p| {
                    let p = &self.pools[p];
                    p.gpus - p.on_demand >= meta.gpus
                });
                let r = self.requests.entry((meta.kind, meta.gpus)).or_default();
                r.refused += 1;
                r.refused_with_room += u64::from(room);
            }
            self.apply(Body::DeleteInstance(pb::DeleteInstance {
                instance_id: id.to_string(),
                project_id: project,
            }))?
            .map_err(|e| anyhow::anyhow!("withdrawing {id}: {e}"))?;
        }
        Ok(())
    }

    /// One hourly sample of the figures.
    fn sample(&mut self) {
        let t = &mut self.tally;
        t.samples += 1;
        for (node, _, whole) in &self.gpu_hosts {
            let (od, pre) = self.host_gpus.get(node).copied().unwrap_or_default();
            t.gpus += u64::from(*whole);
            t.on_demand += u64::from(od);
            t.preemptible += u64::from(pre);
            let could = u64::from(whole - od);
            t.could_have += could;
            if od > 0 {
                t.stranded += could;
            }
        }
        for p in &self.pools {
            t.slices += u64::from(p.slices);
            t.slices_bound += u64::from(p.slices_bound);
        }
        t.cpu_vcpus += self.cpu_vcpus.iter().sum::<u64>();
        t.vps_vcpus += self.vps_vcpus.iter().sum::<u64>();
    }

    fn report(&self, args: &EfficiencyArgs, wall_s: f64) {
        let t = &self.tally;
        let share = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let stranded = share(t.stranded, t.could_have);
        let filled = share(t.on_demand + t.preemptible, t.gpus);
        let on_demand_load = share(t.on_demand, t.gpus);
        let backfilled = share(t.preemptible, t.gpus - t.on_demand.min(t.gpus));
        let large = self
            .requests
            .iter()
            .filter(|((k, g), _)| !k.preemptible() && *g == 8)
            .fold(Requests::default(), |a, (_, r)| Requests {
                asked: a.asked + r.asked,
                placed: a.placed + r.placed,
                refused: a.refused + r.refused,
                refused_with_room: a.refused_with_room + r.refused_with_room,
            });
        let refused_large = share(large.refused_with_room, large.asked);
        println!(
            "sim efficiency: {} hosts, {} days from an empty fleet, seed {}, on-demand load goal {:.0} %; {} commands applied in {wall_s:.0} s",
            args.hosts,
            args.days,
            args.seed,
            args.load * 100.0,
            self.commands
        );
        println!("{:<44} {:>10} {:>10}", "measure", "ours", "goal");
        println!(
            "{:<44} {:>10.4} {:>10}",
            "stranded_share (of GPUs on-demand could have)",
            stranded,
            format!("≤ {GOAL_STRANDED}")
        );
        println!(
            "{:<44} {:>10.4} {:>10}",
            "refused_large_share (8-GPU, room in total)", refused_large, ""
        );
        println!(
            "{:<44} {:>10.4} {:>10}",
            "filled_share (GPU-hours bound)",
            filled,
            format!("≥ {GOAL_FILLED}")
        );
        println!(
            "{:<44} {:>10.4}",
            "  on-demand share of GPU-hours", on_demand_load
        );
        println!(
            "{:<44} {:>10.4}",
            "  spot and backfill, of what on-demand left", backfilled
        );
        println!(
            "{:<44} {:>10.4}",
            "MIG slices bound",
            share(t.slices_bound, t.slices)
        );
        println!(
            "{:<44} {:>10.4}",
            "CPU hosts' vCPUs bound to VPSes",
            share(t.vps_vcpus, t.cpu_vcpus)
        );
        println!(
            "{:<16} {:>10} {:>10} {:>10} {:>12}",
            "requests", "asked", "placed", "refused", "with room"
        );
        for ((kind, gpus), r) in &self.requests {
            println!(
                "{:<16} {:>10} {:>10} {:>10} {:>12}",
                format!("{} {gpus} GPU", kind.name()),
                r.asked,
                r.placed,
                r.refused,
                r.refused_with_room
            );
        }
        let requests: BTreeMap<String, serde_json::Value> = self
            .requests
            .iter()
            .map(|((kind, gpus), r)| {
                (
                    format!("{}-{gpus}", kind.name()),
                    json!({"asked": r.asked, "placed": r.placed, "refused": r.refused, "refused_with_room": r.refused_with_room}),
                )
            })
            .collect();
        println!(
            "{}",
            json!({
                "benchmark": "efficiency",
                "hosts": args.hosts,
                "days": args.days,
                "seed": args.seed,
                "load": args.load,
                "stranded_share": stranded,
                "refused_large_share": refused_large,
                "filled_share": filled,
                "on_demand_share": on_demand_load,
                "backfilled_share": backfilled,
                "preemptions": self.preemptions,
                "large_asked": large.asked,
                "large_refused": large.refused,
                "mig_slices_bound_share": share(t.slices_bound, t.slices),
                "requests": requests,
                "commands": self.commands,
                "wall_s": wall_s,
            })
        );
    }
}
