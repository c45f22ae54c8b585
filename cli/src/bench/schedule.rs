//! `vmcloud bench schedule`: placements committed per second through a Raft group of real
//! scheduler replicas (threads of this process, real QUIC with mutual TLS on loopback, fsync
//! on), each running the production placement controller over a generated fleet.
//!
//! Every replica starts from the same generated fleet (hosts and the instances already
//! running on them, GPU pools about 80 % full), as if restored from one snapshot. Clients then
//! create the workloads through the leader (one `CreateInstance` per workload, as the API
//! does) and the backlog is committed. Then the controllers start: the leader's plans the
//! backlog in slices and proposes each plan as one `PlaceInstances` command, which every
//! replica applies (re-checking capacity). The figure is workloads placed, divided by the time
//! from the controllers' start to the last decision applied (as Nomad's C1M run measured a
//! submitted backlog); the create rate is reported beside it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;
use vmcloud_consensus::StateMachine;
use vmcloud_consensus::local::LocalQuicCluster;
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::pki::Ca;
use vmcloud_proto::{InstanceId, ProjectId};
use vmcloud_scheduler::catalog::Catalog;
use vmcloud_scheduler::fleet_generator::{generate_fleet, gpu_fragmentation};
use vmcloud_scheduler::instances::types::WAITING_FOR_PLACEMENT;
use vmcloud_scheduler::placement_controller::run_placement;
use vmcloud_scheduler::raft_handle::Cluster;
use vmcloud_scheduler::state::replicated::SharedState;
use vmcloud_scheduler::state::{ApplyResult, ClusterState};

use super::placement::request;

const BUDGET_PLACEMENTS_PER_S: f64 = 20_000.0;
/// Nomad's C1M run on 5 servers; kube-scheduler's threshold at 5,000 nodes (DESIGN.md §6).
const ANCHOR_NOMAD_C1M: f64 = 3_750.0;
const ANCHOR_KUBE_SCHEDULER: f64 = 810.0;

#[derive(Debug, Args)]
pub struct ScheduleBenchArgs {
    /// Voters in the group.
    #[arg(long, default_value_t = 3)]
    pub replicas: u64,
    #[arg(long, default_value_t = 10_000)]
    pub hosts: usize,
    /// Workloads to create and place.
    #[arg(long, default_value_t = 200_000)]
    pub workloads: usize,
    /// Share of the workloads that are GPU instances (the rest are VPSes).
    #[arg(long, default_value_t = 0.05)]
    pub gpu_share: f64,
    /// Concurrent clients creating workloads, each with one create in flight.
    #[arg(long, default_value_t = 256)]
    pub clients: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where the replicas' logs go (a fresh directory under it; removed afterwards).
    #[arg(long, env = "TMPDIR", default_value = "/tmp")]
    pub data_dir: PathBuf,
}

/// A replica's state machine that starts from the generated fleet instead of an empty state.
struct FleetReplica {
    shared: SharedState,
    fleet: Arc<ClusterState>,
}

impl StateMachine for FleetReplica {
    type Output = ApplyResult;

    fn apply(&mut self, index: u64, data: &[u8]) -> ApplyResult {
        self.shared.apply(index, data)
    }

    fn snapshot(&self) -> Vec<u8> {
        self.shared.snapshot()
    }

    fn snapshot_later(&self) -> Box<dyn FnOnce() -> Result<Vec<u8>, String> + Send> {
        self.shared.snapshot_later()
    }

    fn outgoing_snapshot(&self) -> Option<vmcloud_consensus::OutgoingSnapshotFn> {
        self.shared.outgoing_snapshot()
    }

    fn publish(&mut self) {
        self.shared.publish();
    }

    /// The group's first snapshot is empty: that is the generated fleet here.
    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        if data.is_empty() {
            self.shared.replace((*self.fleet).clone());
            return Ok(());
        }
        self.shared.restore(data)
    }
}

pub async fn schedule(args: ScheduleBenchArgs) -> anyhow::Result<()> {
    if args.replicas == 0 || args.clients == 0 || args.workloads == 0 {
        bail!("--replicas, --clients and --workloads must be at least 1");
    }
    if !(0.0..=1.0).contains(&args.gpu_share) {
        bail!("--gpu-share must be between 0 and 1");
    }
    let dir = args
        .data_dir
        .join(format!("vmcloud-bench-schedule-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = run(&args, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(args: &ScheduleBenchArgs, dir: &Path) -> anyhow::Result<()> {
    eprintln!("generating {} hosts (seed {})…", args.hosts, args.seed);
    let fleet = Arc::new(generate_fleet(args.hosts, args.seed, 0.8));
    let fragmentation_before = gpu_fragmentation(&fleet);
    let catalog = Catalog::builtin();
    let project = ProjectId::parse("prj-bench")?;
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x5c4e_d01e);
    let workloads: Arc<Vec<pb::CreateInstance>> = Arc::new(
        (0..args.workloads)
            .map(|_| {
                request(&mut rng, &catalog, args.gpu_share)
                    .create_command(&InstanceId::generate(), &project)
            })
            .collect(),
    );

    let ca = Ca::generate("bench").context("generating the bench CA")?;
    let identities = (1..=args.replicas)
        .map(|id| ca.issue_scheduler(&id.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut shared = Vec::new();
    let group = LocalQuicCluster::start(
        dir,
        &ca.identity.cert_pem,
        &identities,
        // Snapshots of a state this size are a separate cost (docs/performance.md); this
        // measures the placement pipeline.
        |config| config.snapshot_every = 0,
        |_| {
            let s = SharedState::default();
            shared.push(s.clone());
            FleetReplica {
                shared: s,
                fleet: fleet.clone(),
            }
        },
    )?;
    let leader = group
        .leader(Duration::from_secs(10))
        .await
        .context("no leader elected within 10 s")?;
    let clusters: Vec<Cluster> = group
        .replicas
        .iter()
        .zip(&shared)
        .map(|(r, s)| Cluster::new(r.raft.clone(), s.clone()))
        .collect();
    let cluster = clusters[leader].clone();
    cluster
        .propose(Body::CreateProject(pb::CreateProject {
            project_id: project.to_string(),
            name: "bench".into(),
            operator: false,
            ..Default::default()
        }))
        .await
        .context("creating the bench project")?
        .map_err(|e| anyhow::anyhow!("creating the bench project: {e}"))?;
    for body in super::unlimited_quotas(project.as_str()) {
        cluster
            .propose(body)
            .await
            .context("lifting the bench project's quotas")?
            .map_err(|e| anyhow::anyhow!("lifting the bench project's quotas: {e}"))?;
    }

    eprintln!(
        "{} replicas over QUIC on loopback, fsync on; {} workloads ({:.0} % GPU) from {} clients…",
        args.replicas,
        args.workloads,
        args.gpu_share * 100.0,
        args.clients
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..args.clients {
        let (cluster, next, workloads) = (cluster.clone(), next.clone(), workloads.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(w) = workloads.get(n) else {
                    return Ok::<_, anyhow::Error>(());
                };
                match cluster.propose(Body::CreateInstance(w.clone())).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => bail!("create {} refused: {e}", w.instance_id),
                    Err(e) => bail!("create {} not committed: {e}", w.instance_id),
                }
            }
        }));
    }
    for c in clients {
        c.await??;
    }
    let created_s = started.elapsed().as_secs_f64();
    let creates_per_s = args.workloads as f64 / created_s;

    // The backlog is committed; now every replica's controller starts (only the leader's
    // plans) and the clock runs until every workload is decided.
    eprintln!(
        "{} workloads committed in {created_s:.2} s; placing…",
        args.workloads
    );
    let started = Instant::now();
    let controllers: Vec<_> = clusters
        .iter()
        .map(|c| tokio::spawn(run_placement(c.clone())))
        .collect();

    // Done when every workload has been decided: placed, or pending with a reason.
    let deadline = Instant::now() + Duration::from_secs(600);
    let (placed, waiting) = loop {
        {
            let state = cluster.state();
            let mut undecided = 0;
            let mut waiting = 0;
            for i in state.pending().filter(|i| i.project == project) {
                waiting += 1;
                if i.pending_reason.as_deref() == Some(WAITING_FOR_PLACEMENT) {
                    undecided += 1;
                }
            }
            if undecided == 0 {
                break (args.workloads - waiting, waiting);
            }
        }
        if Instant::now() > deadline {
            bail!("workloads still undecided 600 s after the last create");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let elapsed = started.elapsed().as_secs_f64();
    let placements_per_s = placed as f64 / elapsed;
    let (fragmentation, instances, applied) = {
        let state = cluster.state();
        (
            gpu_fragmentation(&state),
            state.instances.len(),
            state.applied_index,
        )
    };
    // Every replica applies the same log to the same state.
    for (n, c) in clusters.iter().enumerate() {
        let limit = Instant::now() + Duration::from_secs(30);
        while c.state().applied_index < applied {
            if Instant::now() > limit {
                bail!("replica {} did not catch up within 30 s", n + 1);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let consistent = clusters.iter().all(|c| {
        let s = c.state();
        s.instances.len() == instances && gpu_fragmentation(&s) == fragmentation
    });
    for c in controllers {
        c.abort();
    }
    group.shutdown().await;
    if !consistent {
        bail!("the replicas' states differ after applying the same log");
    }

    println!(
        "schedule: {} replicas, {} hosts, {} workloads ({:.0} % GPU), {} clients, fsync on",
        args.replicas,
        args.hosts,
        args.workloads,
        args.gpu_share * 100.0,
        args.clients
    );
    println!("{:<34} {:>12} {:>14}", "measure", "ours", "budget");
    println!(
        "{:<34} {:>12.0} {:>14}   (Nomad C1M: {ANCHOR_NOMAD_C1M:.0}; kube-scheduler: {ANCHOR_KUBE_SCHEDULER:.0})",
        "placements committed/s",
        placements_per_s,
        format!("≥ {BUDGET_PLACEMENTS_PER_S:.0}")
    );
    println!("{:<34} {:>12}", "placed", placed);
    println!("{:<34} {:>12}", "waiting (no capacity)", waiting);
    println!("{:<34} {:>12.2}", "all decided after s", elapsed);
    println!(
        "{:<34} {:>12.0}   (one CreateInstance each, before placing)",
        "creates committed/s", creates_per_s
    );
    println!(
        "{:<34} {:>12.3}   (before: {fragmentation_before:.3})",
        "GPU fragmentation", fragmentation
    );
    println!(
        "{}",
        json!({
            "benchmark": "schedule",
            "replicas": args.replicas,
            "hosts": args.hosts,
            "workloads": args.workloads,
            "gpu_share": args.gpu_share,
            "placed": placed,
            "waiting": waiting,
            "creates_per_s": creates_per_s,
            "elapsed_s": elapsed,
            "placements_per_s": placements_per_s,
            "gpu_fragmentation": fragmentation,
            "gpu_fragmentation_before": fragmentation_before,
        })
    );
    Ok(())
}
