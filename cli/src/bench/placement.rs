//! `vmcloud sim fleet` and `vmcloud bench placement`: a generated fleet (seeded), and the
//! latency of one placement decision over it — on one thread, and on every core deciding in
//! parallel against the same snapshot, as the scheduler's planners do.

use std::time::Instant;

use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use vmcloud_proto::{InstanceId, ProjectId};
use vmcloud_scheduler::catalog::Catalog;
use vmcloud_scheduler::fleet_generator::{REGIONS, generate_fleet, summary};
use vmcloud_scheduler::instances::types::{Instance, InstanceSpec};
use vmcloud_scheduler::placement::fleet_index::FleetIndex;
use vmcloud_scheduler::placement::select::place_one;
use vmcloud_scheduler::state::index::Usage;

use super::percentile;

const BUDGET_P99_MS_10K: f64 = 1.0;
const BUDGET_P99_MS_65K: f64 = 5.0;

#[derive(Debug, Args)]
pub struct FleetArgs {
    #[arg(long, default_value_t = 10_000)]
    pub hosts: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of GPUs already bound.
    #[arg(long, default_value_t = 0.8)]
    pub gpu_fill: f64,
}

pub fn fleet(args: FleetArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let state = generate_fleet(args.hosts, args.seed, args.gpu_fill);
    eprintln!("generated in {:.2} s", started.elapsed().as_secs_f64());
    println!("{}", serde_json::to_string(&summary(&state))?);
    Ok(())
}

#[derive(Debug, Args)]
pub struct PlacementBenchArgs {
    #[arg(long, default_value_t = 10_000)]
    pub hosts: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Decisions to time on one thread (as many again per core for the parallel figure).
    #[arg(long, default_value_t = 20_000)]
    pub decisions: usize,
}

/// A request drawn from the catalog: a VPS, or a GPU instance with probability `gpu_share`.
pub(super) fn request(rng: &mut StdRng, catalog: &Catalog, gpu_share: f64) -> InstanceSpec {
    let flavors: Vec<(&String, _)> = catalog.flavors.iter().collect();
    let gpu = rng.random_bool(gpu_share);
    let pool: Vec<_> = flavors
        .iter()
        .filter(|(_, f)| f.gpu.is_some() == gpu)
        .collect();
    let (name, flavor) = pool[rng.random_range(0..pool.len())];
    let region = REGIONS[rng.random_range(0..REGIONS.len())];
    let spec = flavor.spec("bench".into(), name, "debian-12", region);
    InstanceSpec {
        vcpus: spec.vcpus.min(12),
        memory_mib: spec.memory_mib.min(98_304),
        ..spec
    }
}

/// Times `n` decisions; applies each successful one to `usage` (so later ones see it).
fn run(index: &FleetIndex<'_>, usage: &mut [Usage], requests: &[Instance]) -> (Vec<f64>, usize) {
    let mut latencies = Vec::with_capacity(requests.len());
    let mut placed = 0;
    for r in requests {
        let t = Instant::now();
        let decision = place_one(index, usage, r);
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        if let Ok(choice) = decision {
            placed += 1;
            index.take(usage, &choice, r);
        }
    }
    (latencies, placed)
}

pub fn placement(args: PlacementBenchArgs) -> anyhow::Result<()> {
    let catalog = Catalog::builtin();
    let project = ProjectId::parse("prj-bench")?;
    eprintln!("generating {} hosts (seed {})…", args.hosts, args.seed);
    let state = generate_fleet(args.hosts, args.seed, 0.8);
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x5eed);
    let requests: Vec<Instance> = (0..args.decisions)
        .map(|_| {
            let spec = request(&mut rng, &catalog, 0.3);
            Instance::pending(InstanceId::generate(), project.clone(), spec, 0)
        })
        .collect();

    // One thread, each decision applied before the next.
    let index = FleetIndex::new(&state);
    let mut usage = index.usage(&state);
    let started = Instant::now();
    let (mut latencies, placed) = run(&index, &mut usage, &requests);
    let single_secs = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);

    // Every core, each planning against the same snapshot (as parallel evaluations do).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..cores {
            let (state, index, requests) = (&state, &index, &requests);
            scope.spawn(move || {
                let mut usage = index.usage(state);
                run(index, &mut usage, requests);
            });
        }
    });
    let parallel_secs = started.elapsed().as_secs_f64();

    let (p50, p99) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0));
    let budget = if args.hosts <= 10_000 {
        BUDGET_P99_MS_10K
    } else {
        BUDGET_P99_MS_65K
    };
    let per_s_single = args.decisions as f64 / single_secs;
    let per_s_all = (args.decisions * cores) as f64 / parallel_secs;
    println!(
        "placement: {} hosts, {} decisions (70 % VPS, 30 % GPU; {placed} placed)",
        args.hosts, args.decisions
    );
    println!("{:<32} {:>10} {:>12}", "measure", "ours", "budget");
    println!("{:<32} {:>10.3} {:>12}", "decision p50 ms", p50, "");
    println!(
        "{:<32} {:>10.3} {:>12}",
        "decision p99 ms",
        p99,
        format!("≤ {budget}")
    );
    println!(
        "{:<32} {:>10.0} {:>12}",
        "placements/s, one thread", per_s_single, ""
    );
    println!(
        "{:<32} {:>10.0} {:>12}",
        format!("placements/s, {cores} cores"),
        per_s_all,
        ""
    );
    println!(
        "{}",
        json!({
            "benchmark": "placement",
            "hosts": args.hosts,
            "decisions": args.decisions,
            "placed": placed,
            "p50_ms": p50,
            "p99_ms": p99,
            "placements_per_s": per_s_single,
            "placements_per_s_all_cores": per_s_all,
            "cores": cores,
        })
    );
    Ok(())
}
