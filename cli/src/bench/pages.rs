//! `vmcloud bench pages --hosts 10000`: the NOC's pages over a generated fleet (seeded) — the
//! server's work for the fleet page (the fleet view over every host, encoded as the API
//! answers it, decoded as the page reads it, and rendered) and for a host page (what runs on
//! it and who it belongs to, likewise). Not measured here: HTTP itself, and the node's live
//! link and liveness details the host page also shows.

use std::time::Instant;

use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use vmcloud_scheduler::fleet_generator::generate_fleet;
use vmcloud_scheduler::nodes::liveness::Verdict;
use vmcloud_scheduler::nodes::noc_api::{FleetQuery, RaftSummary, fleet_view, host_workloads};
use vmcloud_web::i18n::Lang;
use vmcloud_web::noc_pages::{fleet_body, host_body};

use super::percentile;

const BUDGET_P99_MS: f64 = 50.0;

#[derive(Debug, Args)]
pub struct PagesBenchArgs {
    #[arg(long, default_value_t = 10_000)]
    pub hosts: usize,
    /// Renders of each page.
    #[arg(long, default_value_t = 200)]
    pub renders: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// As the page gets it: the API's JSON, through bytes.
fn through_json<T: serde::Serialize>(v: &T) -> Value {
    let bytes = serde_json::to_vec(v).expect("a view encodes");
    serde_json::from_slice(&bytes).expect("and decodes")
}

pub fn pages(args: PagesBenchArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let state = generate_fleet(args.hosts, args.seed, 0.8);
    eprintln!(
        "generated {} hosts and {} instances in {:.1} s",
        state.nodes.len(),
        state.instances.len(),
        started.elapsed().as_secs_f64()
    );
    let verdict = Verdict::default();
    let now = vmcloud_scheduler::clock::now_ms();
    let raft = || RaftSummary {
        term: 7,
        leader: 1,
        voters: vec![1, 2, 3],
        commit_index: 1_000_000,
        lagging: Vec::new(),
    };
    let mut fleet_ms = Vec::with_capacity(args.renders);
    let mut bytes = 0;
    for i in 0..args.renders {
        // Every other render searches (a name), as operators do at 10,000 hosts.
        let q = if i % 2 == 0 {
            FleetQuery::default()
        } else {
            FleetQuery {
                q: Some(format!("h{:05}", i % args.hosts.max(1))),
                ..Default::default()
            }
        };
        let t = Instant::now();
        let v = through_json(&fleet_view(&state, &q, &verdict, raft(), now));
        let html = fleet_body(Lang::En, &v, &Default::default()).into_string();
        fleet_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        bytes = bytes.max(html.len());
    }
    let nodes: Vec<_> = state.nodes.keys().cloned().collect();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut host_ms = Vec::with_capacity(args.renders);
    let mut most = 0;
    for _ in 0..args.renders {
        let id = &nodes[rng.random_range(0..nodes.len())];
        let t = Instant::now();
        let w = through_json(&host_workloads(&state, id));
        let node = through_json(&*state.nodes[id]);
        let html =
            host_body(Lang::En, id.as_str(), &node, &w, &serde_json::Value::Null).into_string();
        host_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        most = most.max(w["workloads"].as_array().map_or(0, Vec::len));
        std::hint::black_box(html);
    }
    fleet_ms.sort_by(f64::total_cmp);
    host_ms.sort_by(f64::total_cmp);
    let (fp50, fp99) = (percentile(&fleet_ms, 50.0), percentile(&fleet_ms, 99.0));
    let (hp50, hp99) = (percentile(&host_ms, 50.0), percentile(&host_ms, 99.0));
    println!(
        "fleet page over {} hosts: p50 {fp50:.2} ms, p99 {fp99:.2} ms (budget p99 ≤ {BUDGET_P99_MS} ms), largest page {} KiB",
        args.hosts,
        bytes / 1024
    );
    println!(
        "host page: p50 {hp50:.2} ms, p99 {hp99:.2} ms (budget p99 ≤ {BUDGET_P99_MS} ms), up to {most} workloads on a host"
    );
    println!(
        "{}",
        json!({
            "hosts": args.hosts,
            "renders": args.renders,
            "fleet_page_p50_ms": fp50,
            "fleet_page_p99_ms": fp99,
            "host_page_p50_ms": hp50,
            "host_page_p99_ms": hp99,
            "budget_p99_ms": BUDGET_P99_MS,
        })
    );
    Ok(())
}
