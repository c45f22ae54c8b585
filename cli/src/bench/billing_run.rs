//! `vmcloud bench billing-run`: a monthly billing run of many organisations through a Raft
//! group of real scheduler replicas (threads of this process, QUIC with mutual TLS on
//! loopback, fsync on): the run's total time and the longest time `apply` was held by one
//! entry on any replica (DESIGN.md §6: ≤ 30 s for 100,000 organisations, no pause > 50 ms).
//!
//! Every replica starts from the same state (as if restored from one snapshot): the
//! organisations, a project each, and last month's usage — a few instances each (on demand,
//! spot, a public address), some running past the month's end. The run is proposed as the
//! leader proposes it (`billing::controller::run_month`: batches of organisations, one log
//! entry each), finalized and numbered. Each replica writes its history store (the period's
//! usage and the issued invoices go there; the state keeps one line per kind of each
//! invoice), and the bench prints how many bytes an invoice takes in the state and in history.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use vmcloud_billing::rating::Market;
use vmcloud_consensus::StateMachine;
use vmcloud_consensus::local::LocalQuicCluster;
use vmcloud_proto::pki::Ca;
use vmcloud_proto::{OrgId, ProjectId, UserId};
use vmcloud_scheduler::billing::types::{UsageInterval, period_bounds, period_of};
use vmcloud_scheduler::history::store::HistoryStore;
use vmcloud_scheduler::history::types::HistoryRecord;
use vmcloud_scheduler::raft_handle::Cluster;
use vmcloud_scheduler::state::replicated::SharedState;
use vmcloud_scheduler::state::{ApplyResult, ClusterState};
use vmcloud_scheduler::tenancy::types::{OrgKind, Organisation, Project, Role};

const BUDGET_RUN_S: f64 = 30.0;
const BUDGET_PAUSE_MS: f64 = 50.0;

#[derive(Debug, Args)]
pub struct BillingRunBenchArgs {
    #[arg(long, default_value_t = 100_000)]
    pub orgs: usize,
    /// Voters in the group.
    #[arg(long, default_value_t = 3)]
    pub replicas: u64,
    /// Usage intervals per organisation.
    #[arg(long, default_value_t = 4)]
    pub intervals: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where the replicas' logs go (a fresh directory under it; removed afterwards).
    #[arg(long, env = "TMPDIR", default_value = "/tmp")]
    pub data_dir: PathBuf,
}

/// A replica that starts from the prepared state and times every `apply`.
struct TimedReplica {
    shared: SharedState,
    start: Arc<ClusterState>,
    longest_us: Arc<AtomicU64>,
}

impl StateMachine for TimedReplica {
    type Output = ApplyResult;

    fn apply(&mut self, index: u64, data: &[u8]) -> ApplyResult {
        let t = Instant::now();
        let out = self.shared.apply(index, data);
        self.longest_us
            .fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        out
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

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        if data.is_empty() {
            self.shared.replace((*self.start).clone());
            return Ok(());
        }
        self.shared.restore(data)
    }
}

/// `orgs` organisations with a project each and last month's usage.
fn prepared(args: &BillingRunBenchArgs, period: &str) -> anyhow::Result<ClusterState> {
    let (start, end) = period_bounds(period).context("a period")?;
    let mut state = ClusterState::default();
    let owner = UserId::parse("usr-00000000000000b1")?;
    let mut rng = args.seed.max(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let flavors = ["vps-s", "vps-m", "vps-l", "vps-xl", "gpu-l40s-1"];
    let countries = ["FR", "DE", "EE", "NL", "US", "GB", "IT"];
    let month = end - start;
    for k in 0..args.orgs {
        let org = OrgId::parse(&format!("org-{k:08x}"))?;
        let project = ProjectId::parse(&format!("prj-{k:08x}"))?;
        let country = countries[k % countries.len()];
        state.organisations.insert(
            org.clone(),
            Organisation {
                id: org.clone(),
                name: format!("Customer {k}"),
                kind: if k % 3 == 0 {
                    OrgKind::Person
                } else {
                    OrgKind::Company
                },
                billing_country: country.into(),
                vat_id: (k % 3 == 1 && country == "DE").then(|| "DE123456789".into()),
                billing_address: Vec::new(),
                created_at_ms: start,
                members: BTreeMap::from([(owner.clone(), Role::Owner)]),
                mfa_required: false,
                trial: false,
                provider: false,
                sso: None,
                invitations: BTreeMap::new(),
                api_per_hour: None,
                partner: None,
                support_access_until_ms: None,
            },
        );
        state.projects.insert(
            project.clone(),
            Project::new(project.clone(), org.clone(), "default".into(), start),
        );
        let usage = state.billing.usage.entry(org).or_default();
        for n in 0..args.intervals {
            let from = start + (next() % month as u64) as i64;
            let len = (next() % (month as u64 / 2)) as i64;
            let (flavor, market) = match n % 4 {
                0 => ("public-ipv4", Market::OnDemand),
                1 => (flavors[(next() % 5) as usize], Market::Spot),
                _ => (flavors[(next() % 5) as usize], Market::OnDemand),
            };
            usage.push_back(UsageInterval {
                project: project.clone(),
                region: "par".into(),
                resource: format!("i-{:020x}", next()),
                flavor: flavor.into(),
                market,
                from_ms: from,
                // Some run past the month's end: the run cuts them.
                to_ms: (from + len).min(end + month / 10),
            });
        }
    }
    Ok(state)
}

pub async fn billing_run(args: BillingRunBenchArgs) -> anyhow::Result<()> {
    if args.orgs == 0 || args.replicas == 0 {
        bail!("--orgs and --replicas must be at least 1");
    }
    let dir = args
        .data_dir
        .join(format!("vmcloud-bench-billing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = run(&args, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(args: &BillingRunBenchArgs, dir: &Path) -> anyhow::Result<()> {
    let now = vmcloud_scheduler::clock::now_ms();
    let (this_month, _) = period_bounds(&period_of(now)).context("this month")?;
    let period = period_of(this_month - 1);
    eprintln!(
        "preparing {} organisations with {} usage intervals each in {period} (seed {})…",
        args.orgs, args.intervals, args.seed
    );
    let start = Arc::new(prepared(args, &period)?);
    let ca = Ca::generate("bench").context("generating the bench CA")?;
    let identities = (1..=args.replicas)
        .map(|id| ca.issue_scheduler(&id.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let longest = Arc::new(AtomicU64::new(0));
    let mut shared = Vec::new();
    let mut stores = Vec::new();
    for n in 0..args.replicas {
        let path = dir.join(format!("history-{n}.redb"));
        stores.push(Some(HistoryStore::open(&path).with_context(|| {
            format!("cannot open the history store {}", path.display())
        })?));
    }
    let mut stores = stores.into_iter();
    let group = LocalQuicCluster::start(
        dir,
        &ca.identity.cert_pem,
        &identities,
        |config| config.snapshot_every = 0,
        |_| {
            let s = SharedState::with_history(
                stores
                    .next()
                    .flatten()
                    .expect("one history store per replica"),
            );
            shared.push(s.clone());
            TimedReplica {
                shared: s,
                start: start.clone(),
                longest_us: longest.clone(),
            }
        },
    )?;
    let leader = group
        .leader(Duration::from_secs(10))
        .await
        .context("no leader elected within 10 s")?;
    let cluster = Cluster::new(group.replicas[leader].raft.clone(), shared[leader].clone());
    longest.store(0, Ordering::Relaxed);
    eprintln!(
        "{} replicas over QUIC on loopback, fsync on; running {period}…",
        args.replicas
    );
    let t = Instant::now();
    vmcloud_scheduler::billing::controller::run_month(&cluster, None, &period, true, 0)
        .await
        .context("the run was not committed")?
        .map_err(|e| anyhow::anyhow!("the run was refused: {e}"))?;
    let run_s = t.elapsed().as_secs_f64();
    let pause_ms = longest.load(Ordering::Relaxed) as f64 / 1000.0;
    let state = cluster.state();
    let record = state.billing.runs.get(&period).context("no run record")?;
    let invoices = record.invoices.len();
    let mut numbers: Vec<u64> = record
        .invoices
        .iter()
        .filter_map(|id| state.billing.invoices.get(id))
        .filter_map(|i| i.number.as_deref()?.rsplit('-').next()?.parse().ok())
        .collect();
    numbers.sort_unstable();
    let gapless = numbers.windows(2).all(|w| w[1] == w[0] + 1);
    // What an invoice takes: in the state (one line per kind) and in history (every line), as
    // JSON, over a sample of the run's invoices.
    anyhow::ensure!(
        shared[leader].history_written(),
        "the leader's history was not written within 60 s"
    );
    let store = shared[leader].history().context("a history store")?.clone();
    let (mut in_state, mut in_history, mut sampled) = (0usize, 0usize, 0usize);
    for id in record.invoices.iter().step_by((invoices / 1000).max(1)) {
        let Some(kept) = state.billing.invoices.get(id) else {
            continue;
        };
        let (page, _) = store.dimension_page(&format!("invoice:{id}"), None, 1)?;
        let Some(HistoryRecord::InvoiceIssued(doc)) = page.into_iter().next() else {
            bail!("invoice {id} is not in the leader's history");
        };
        in_state += serde_json::to_vec(&**kept)?.len();
        in_history += serde_json::to_vec(&doc)?.len();
        sampled += 1;
    }
    let state_bytes = in_state / sampled.max(1);
    let history_bytes = in_history / sampled.max(1);
    group.shutdown().await;
    anyhow::ensure!(
        invoices == args.orgs,
        "{invoices} invoices for {} organisations",
        args.orgs
    );
    anyhow::ensure!(gapless, "invoice numbers have gaps");
    println!(
        "billed {} organisations ({invoices} invoices, numbers without gaps) in {run_s:.2} s (budget ≤ {BUDGET_RUN_S:.0} s)",
        args.orgs
    );
    println!(
        "longest apply of one entry on any replica: {pause_ms:.1} ms (budget ≤ {BUDGET_PAUSE_MS:.0} ms; batches of {} organisations)",
        vmcloud_scheduler::billing::controller::BATCH_ORGS
    );
    println!(
        "an invoice takes {state_bytes} bytes in the state (one line per kind) and {history_bytes} bytes in history (every line), as JSON, over {sampled} invoices"
    );
    println!(
        "{}",
        json!({
            "bench": "billing-run",
            "orgs": args.orgs,
            "replicas": args.replicas,
            "intervals_per_org": args.intervals,
            "seed": args.seed,
            "invoices": invoices,
            "run_s": run_s,
            "apply_pause_max_ms": pause_ms,
            "invoice_state_bytes": state_bytes,
            "invoice_history_bytes": history_bytes,
            "budget_run_s": BUDGET_RUN_S,
            "budget_apply_pause_ms": BUDGET_PAUSE_MS,
            "within_budget": run_s <= BUDGET_RUN_S && pause_ms <= BUDGET_PAUSE_MS,
        })
    );
    Ok(())
}
