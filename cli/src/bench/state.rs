//! `vmcloud bench state`: the replicated state at a million workloads — memory per instance,
//! how long a snapshot takes to write (off the apply path) and to restore, how long `apply`
//! is paused while one is written, and whether memory grows with history.
//!
//! Everything goes through the real path: commands encoded as protobuf and applied by the
//! consensus state machine ([`SharedState`]), which publishes a copy after each batch; the
//! snapshot is taken with `snapshot_later` (an immutable copy on the apply thread), encoded
//! and saved on another thread by the consensus crate's snapshot files (CRC, temporary file,
//! fsync, rename) while this thread keeps applying.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use prost::Message;
use serde_json::json;
use vmcloud_consensus::StateMachine;
use vmcloud_consensus::snapshot::{SnapshotDir, SnapshotFile};
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{InstanceId, NodeId, ProjectId};
use vmcloud_scheduler::catalog::Catalog;
use vmcloud_scheduler::history::store::HistoryStore;
use vmcloud_scheduler::state::replicated::SharedState;

use super::{percentile, proc_mib};

const BUDGET_BYTES_PER_INSTANCE: f64 = 1024.0;
const BUDGET_WRITE_S: f64 = 3.0;
const BUDGET_RESTORE_S: f64 = 3.0;
const BUDGET_PAUSE_MS: f64 = 50.0;
const BUDGET_HISTORY_GROWTH: f64 = 0.1;
/// Entries applied between two publications (a Raft Ready batch is about this size under load).
const BATCH: usize = 64;

#[derive(Debug, Args)]
pub struct StateBenchArgs {
    /// Live instances in the generated state.
    #[arg(long, default_value_t = 1_000_000)]
    pub instances: usize,
    /// Projects (organisations, as they exist today) owning them.
    #[arg(long, default_value_t = 100_000)]
    pub orgs: usize,
    /// Hosts the instances are placed on.
    #[arg(long, default_value_t = 10_000)]
    pub hosts: usize,
    /// Instances created and deleted again for the history case (0: skip it).
    #[arg(long, default_value_t = 1_000_000)]
    pub churn: usize,
    /// Where the snapshot file is written (a fresh directory under it; removed afterwards).
    #[arg(long, env = "TMPDIR", default_value = "/tmp")]
    pub data_dir: PathBuf,
}

/// Applies commands as the consensus applier does: one log index each, a publication per
/// batch. Returns each entry's apply time in ms.
struct Applier {
    state: SharedState,
    index: u64,
    at_ms: i64,
    pending: usize,
}

impl Applier {
    /// Publishes what is applied and waits for its history to be on disk.
    fn settle(&mut self) -> anyhow::Result<()> {
        self.state.publish();
        anyhow::ensure!(
            self.state.history_written(),
            "the history writer did not catch up within a minute"
        );
        Ok(())
    }

    fn apply(&mut self, body: Body) -> anyhow::Result<f64> {
        self.index += 1;
        self.at_ms += 1;
        let data = pb::Command {
            actor: None,
            request: None,
            at_unix_ms: self.at_ms,
            body: Some(body),
        }
        .encode_to_vec();
        let started = Instant::now();
        let applied = self.state.apply(self.index, &data);
        self.pending += 1;
        if self.pending >= BATCH {
            self.state.publish();
            self.pending = 0;
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        applied.map_err(|e| anyhow::anyhow!("entry {} was rejected: {e}", self.index))?;
        Ok(ms)
    }
}

fn rss_mib() -> anyhow::Result<f64> {
    proc_mib(std::process::id(), "status", "VmRSS:")
}

fn delete(id: &InstanceId, project: &ProjectId) -> Body {
    Body::DeleteInstance(pb::DeleteInstance {
        instance_id: id.to_string(),
        project_id: project.to_string(),
    })
}

fn create(id: &InstanceId, project: &ProjectId, region: &str) -> Body {
    static CATALOG: std::sync::OnceLock<Catalog> = std::sync::OnceLock::new();
    let flavor = &CATALOG.get_or_init(Catalog::builtin).flavors["vps-s"];
    let name = format!("vm-{}", &id.as_str()[id.as_str().len() - 6..]);
    Body::CreateInstance(
        flavor
            .spec(name, "vps-s", "debian-12", region)
            .create_command(id, project),
    )
}

pub fn state(args: StateBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.instances > 0 && args.orgs > 0 && args.hosts > 0,
        "--instances, --orgs and --hosts must be at least 1"
    );
    anyhow::ensure!(
        args.instances.div_ceil(args.orgs) <= 150,
        "{} instances over {} organisations is more than their quotas allow (50 instances per region, 3 regions): ask for more --orgs",
        args.instances,
        args.orgs
    );
    let regions = ["par", "fra", "ams"];
    let dir = args
        .data_dir
        .join(format!("vmcloud-bench-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = run(&args, &dir, regions);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run(args: &StateBenchArgs, dir: &std::path::Path, regions: [&str; 3]) -> anyhow::Result<()> {
    let history = HistoryStore::open(&dir.join("history.redb"))?;
    let mut a = Applier {
        state: SharedState::with_history(history),
        index: 0,
        at_ms: 1_800_000_000_000,
        pending: 0,
    };
    let rss_empty = rss_mib()?;
    eprintln!(
        "generating {} hosts, {} projects, {} instances through apply ...",
        args.hosts, args.orgs, args.instances
    );
    let started = Instant::now();
    let projects: Vec<ProjectId> = (0..args.orgs)
        .map(|n| ProjectId::parse(&format!("prj-{n:06}")).expect("valid id"))
        .collect();
    for project in &projects {
        a.apply(Body::CreateProject(pb::CreateProject {
            project_id: project.to_string(),
            name: format!("Organisation {project}"),
            operator: false,
            ..Default::default()
        }))?;
    }
    let nodes: Vec<NodeId> = (0..args.hosts)
        .map(|n| NodeId::parse(&format!("host-{n:05}")).expect("valid id"))
        .collect();
    let per_host = args.instances.div_ceil(args.hosts) as u32;
    for (n, node) in nodes.iter().enumerate() {
        a.apply(Body::RegisterNode(pb::RegisterNode {
            node_id: node.to_string(),
            inventory: Some(pb::HostInventory {
                hostname: node.to_string(),
                region: regions[n % regions.len()].into(),
                cpu_model: "AMD EPYC 9654".into(),
                cpu_threads: per_host.div_ceil(4).max(8),
                memory_bytes: (u64::from(per_host) + 2) << 30,
                rack: format!("r{:03}", n / 40),
                ..Default::default()
            }),
            build: Some(pb::BuildInfo::default()),
        }))?;
    }
    let rss_fleet = rss_mib()?;
    // Instances, placed in batches as plans are.
    let mut made = 0;
    while made < args.instances {
        let chunk = (args.instances - made).min(1000);
        let mut placements = Vec::with_capacity(chunk);
        for k in made..made + chunk {
            let id = InstanceId::generate();
            let host = k % args.hosts;
            a.apply(create(
                &id,
                &projects[k % projects.len()],
                regions[host % regions.len()],
            ))?;
            placements.push(pb::Placement {
                instance_id: id.to_string(),
                node_id: nodes[host].to_string(),
                gpus: Vec::new(),
            });
        }
        a.apply(Body::PlaceInstances(pb::PlaceInstances {
            placements,
            ..Default::default()
        }))?;
        made += chunk;
    }
    a.state.publish();
    let live = a.state.read();
    anyhow::ensure!(
        live.instances.len() == args.instances && live.pending().next().is_none(),
        "the generated state has {} instances, {} of them pending; expected {} placed",
        live.instances.len(),
        live.pending().count(),
        args.instances
    );
    drop(live);
    let rss_live = rss_mib()?;
    let bytes_per_instance = (rss_live - rss_fleet) * 1024.0 * 1024.0 / args.instances as f64;
    eprintln!(
        "generated in {:.1} s: RSS {rss_empty:.0} MiB empty, {rss_fleet:.0} MiB with hosts and projects, {rss_live:.0} MiB with {} instances",
        started.elapsed().as_secs_f64(),
        args.instances
    );

    // Snapshot: copy on this thread, encode and save on another, keep applying meanwhile.
    let snapshots = SnapshotDir::new(dir.join("snapshots"));
    let copy_started = Instant::now();
    let encode = a.state.snapshot_later();
    let copy_ms = copy_started.elapsed().as_secs_f64() * 1000.0;
    let index = a.index;
    let writer = std::thread::spawn(move || {
        let started = Instant::now();
        let data = encode().map_err(|e| anyhow::anyhow!("encoding the snapshot: {e}"))?;
        let encoded_s = started.elapsed().as_secs_f64();
        let bytes = data.len();
        snapshots
            .save(&SnapshotFile {
                index,
                term: 1,
                conf_state: Default::default(),
                data,
            })
            .map(|()| (encoded_s, started.elapsed().as_secs_f64(), bytes))
            .context("saving the snapshot")
    });
    let mut during = Vec::new();
    let mut live_ids = Vec::new();
    let mut k = 0usize;
    while !writer.is_finished() {
        // Creates and deletes, as a busy API would send them.
        let id = InstanceId::generate();
        let project = &projects[k % projects.len()];
        during.push(a.apply(create(&id, project, regions[k % regions.len()]))?);
        live_ids.push((id, project.clone()));
        if live_ids.len() > 100 {
            let (id, project) = live_ids.remove(0);
            during.push(a.apply(delete(&id, &project))?);
        }
        k += 1;
    }
    let (encode_s, write_s, snapshot_bytes) = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the snapshot thread panicked"))??;
    during.sort_by(f64::total_cmp);
    let apply_p99_ms = percentile(&during, 99.0);
    let apply_max_ms = during.last().copied().unwrap_or(0.0);
    let pause_max_ms = copy_ms.max(apply_max_ms);
    eprintln!(
        "snapshot: {:.0} MiB, copied in {copy_ms:.3} ms on the apply thread, encoded in {encode_s:.2} s and written in {write_s:.2} s on its own thread; {} entries applied meanwhile (p99 {apply_p99_ms:.3} ms, max {apply_max_ms:.3} ms)",
        snapshot_bytes as f64 / (1 << 20) as f64,
        during.len()
    );

    // Restore: read, check, decode, reindex, publish — as a replica does at start from its
    // own snapshot (its history is in its own store), with nothing else running (the
    // history writer catches up with the deletes above first).
    a.settle()?;
    let restore_started = Instant::now();
    let file = SnapshotDir::new(dir.join("snapshots"))
        .latest()
        .context("reading the snapshot back")?
        .context("the snapshot is missing")?;
    let read_s = restore_started.elapsed().as_secs_f64();
    let mut restored = SharedState::new(Default::default());
    let parts = restored
        .restore_timed(&file.data)
        .map_err(|e| anyhow::anyhow!("restoring the snapshot: {e}"))?;
    let restore_s = restore_started.elapsed().as_secs_f64();
    anyhow::ensure!(
        restored.read().instances.len() == args.instances,
        "the restored state has {} instances, expected {}",
        restored.read().instances.len(),
        args.instances
    );
    drop(restored);
    eprintln!(
        "restored in {restore_s:.2} s: file read and checked in {read_s:.2} s, state decoded in {:.2} s, indexes rebuilt in {:.2} s",
        parts.decode.as_secs_f64(),
        parts.index.as_secs_f64()
    );

    // What a new replica is sent instead: the state with the history through the snapshot's
    // index (made on the leader's snapshot-reading thread), restored on a fresh store: the
    // state is served once restored, history is written by the history thread meanwhile.
    let made_started = Instant::now();
    let make = a
        .state
        .outgoing_snapshot()
        .context("a replica with history makes what peers are sent")?;
    let peer = make(file.index, &file.data).map_err(|e| anyhow::anyhow!("{e}"))?;
    drop(file);
    let peer_make_s = made_started.elapsed().as_secs_f64();
    let peer_started = Instant::now();
    let mut joined = SharedState::with_history(HistoryStore::open(&dir.join("joined.redb"))?);
    joined
        .restore_timed(&peer)
        .map_err(|e| anyhow::anyhow!("restoring the peer snapshot: {e}"))?;
    let peer_restore_s = peer_started.elapsed().as_secs_f64();
    anyhow::ensure!(
        joined.history_written(),
        "the new replica's history writer did not finish within a minute"
    );
    let peer_history_s = peer_started.elapsed().as_secs_f64();
    let history_records = joined.history().map(|h| h.len()).transpose()?.unwrap_or(0);
    drop(joined);
    eprintln!(
        "a peer's snapshot: {:.0} MiB with {history_records} history records, made in {peer_make_s:.2} s; a fresh replica serves its state {peer_restore_s:.2} s after it starts restoring and has written its history after {peer_history_s:.2} s",
        peer.len() as f64 / (1 << 20) as f64
    );
    drop(peer);

    // History: create and delete `churn` instances; live memory must not grow with them.
    let mut history_growth_share = 0.0;
    if args.churn > 0 {
        for (id, project) in live_ids.drain(..) {
            a.apply(delete(&id, &project))?;
        }
        a.state.publish();
        let before = rss_mib()?;
        let mut batch = Vec::with_capacity(1000);
        for k in 0..args.churn {
            let id = InstanceId::generate();
            let project = &projects[k % projects.len()];
            a.apply(create(&id, project, regions[k % regions.len()]))?;
            batch.push((id, project.clone()));
            if batch.len() == 1000 || k + 1 == args.churn {
                for (id, project) in batch.drain(..) {
                    a.apply(delete(&id, &project))?;
                }
            }
        }
        a.settle()?;
        let after = rss_mib()?;
        anyhow::ensure!(
            a.state.read().instances.len() == args.instances,
            "instances were left behind by the churn"
        );
        history_growth_share = (after - before) / before;
        let records = a.state.history().map(|h| h.len()).transpose()?.unwrap_or(0);
        anyhow::ensure!(
            records >= args.churn as u64,
            "the history store holds {records} records; expected at least {}",
            args.churn
        );
        let on_disk = std::fs::metadata(dir.join("history.redb"))?.len();
        eprintln!(
            "history: {} instances created and deleted; RSS {before:.0} MiB before, {after:.0} MiB after; {records} records in the history store ({:.0} MiB on disk)",
            args.churn,
            on_disk as f64 / (1 << 20) as f64
        );
    }

    println!(
        "memory per instance  {bytes_per_instance:>8.0} B    budget ≤ {BUDGET_BYTES_PER_INSTANCE:.0} B"
    );
    println!(
        "snapshot write       {write_s:>8.2} s    budget ≤ {BUDGET_WRITE_S} s, off the apply path"
    );
    println!("snapshot restore     {restore_s:>8.2} s    budget ≤ {BUDGET_RESTORE_S} s");
    println!("apply paused (max)   {pause_max_ms:>8.2} ms   budget ≤ {BUDGET_PAUSE_MS} ms");
    println!(
        "history growth       {history_growth_share:>8.3}      budget ≤ {BUDGET_HISTORY_GROWTH}"
    );
    println!(
        "{}",
        json!({
            "bench": "state",
            "instances": args.instances,
            "orgs": args.orgs,
            "hosts": args.hosts,
            "bytes_per_instance": bytes_per_instance.round(),
            "snapshot_bytes": snapshot_bytes,
            "snapshot_copy_ms": copy_ms,
            "snapshot_encode_s": encode_s,
            "snapshot_write_s": write_s,
            "restore_s": restore_s,
            "restore_read_s": read_s,
            "restore_decode_s": parts.decode.as_secs_f64(),
            "restore_index_s": parts.index.as_secs_f64(),
            "history_records": history_records,
            "peer_snapshot_make_s": peer_make_s,
            "peer_restore_s": peer_restore_s,
            "peer_history_written_s": peer_history_s,
            "entries_applied_during_write": during.len(),
            "apply_p99_ms_during_write": apply_p99_ms,
            "apply_pause_max_ms": pause_max_ms,
            "churn": args.churn,
            "history_growth_share": history_growth_share,
        })
    );
    Ok(())
}
