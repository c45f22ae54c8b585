//! Invariant 11 across a failover: a monthly run is under way through three replicas (real
//! QUIC with mutual TLS on loopback, fsync on) when its leader is stopped; the new leader
//! carries the run on from where the log says it stands. Every organisation gets exactly one
//! invoice, numbers have no gap, and the replicas hold the same invoices byte for byte.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use vmcloud_billing::rating::Market;
use vmcloud_consensus::StateMachine;
use vmcloud_consensus::local::LocalQuicCluster;
use vmcloud_proto::pki::Ca;
use vmcloud_proto::{OrgId, ProjectId, UserId};
use vmcloud_scheduler::billing::controller::run_month;
use vmcloud_scheduler::billing::types::{UsageInterval, period_bounds, period_of};
use vmcloud_scheduler::raft_handle::Cluster;
use vmcloud_scheduler::state::replicated::SharedState;
use vmcloud_scheduler::state::{ApplyResult, ClusterState};
use vmcloud_scheduler::tenancy::types::{OrgKind, Organisation, Project, Role};

const ORGS: usize = 4_000;

struct Replica {
    shared: SharedState,
    start: Arc<ClusterState>,
}

impl StateMachine for Replica {
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

    fn publish(&mut self) {
        self.shared.publish();
    }

    fn outgoing_snapshot(&self) -> Option<vmcloud_consensus::OutgoingSnapshotFn> {
        self.shared.outgoing_snapshot()
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        if data.is_empty() {
            self.shared.replace((*self.start).clone());
            return Ok(());
        }
        self.shared.restore(data)
    }
}

fn start_state(period: &str) -> ClusterState {
    let (start, end) = period_bounds(period).unwrap();
    let owner = UserId::parse("usr-00000000000000c1").unwrap();
    let mut state = ClusterState::default();
    for k in 0..ORGS {
        let org = OrgId::parse(&format!("org-{k:06x}")).unwrap();
        let project = ProjectId::parse(&format!("prj-{k:06x}")).unwrap();
        state.organisations.insert(
            org.clone(),
            Organisation {
                id: org.clone(),
                name: format!("Customer {k}"),
                kind: OrgKind::Company,
                billing_country: ["FR", "DE", "EE", "US"][k % 4].into(),
                vat_id: None,
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
        usage.push_back(UsageInterval {
            project,
            region: "par".into(),
            resource: format!("i-{k:020x}"),
            flavor: "vps-m".into(),
            market: Market::OnDemand,
            from_ms: start + (k as i64 % 20) * 86_400_000,
            to_ms: end,
        });
    }
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_interrupted_by_a_failover_invoices_everyone_once_without_gaps() {
    let now = vmcloud_scheduler::clock::now_ms();
    let (this_month, _) = period_bounds(&period_of(now)).unwrap();
    let period = period_of(this_month - 1);
    let start = Arc::new(start_state(&period));
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("test").unwrap();
    let identities: Vec<_> = (1..=3)
        .map(|id| ca.issue_scheduler(&id.to_string()).unwrap())
        .collect();
    let mut shared = Vec::new();
    let mut group = LocalQuicCluster::start(
        dir.path(),
        &ca.identity.cert_pem,
        &identities,
        |config| config.snapshot_every = 0,
        |_| {
            let s = SharedState::default();
            shared.push(s.clone());
            Replica {
                shared: s,
                start: start.clone(),
            }
        },
    )
    .unwrap();
    let leader = group.leader(Duration::from_secs(10)).await.unwrap();
    let cluster = Cluster::new(group.replicas[leader].raft.clone(), shared[leader].clone());

    // The run starts; once some batches are in, its leader goes.
    let running = {
        let (cluster, period) = (cluster.clone(), period.clone());
        tokio::spawn(async move { run_month(&cluster, None, &period, true, 0).await })
    };
    loop {
        let done = cluster
            .state()
            .billing
            .runs
            .get(&period)
            .map_or(0, |r| r.invoices.len());
        if done >= ORGS / 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    group.stop(leader).await;
    shared.remove(leader);
    let _ = running.await;

    // A new leader carries the run on from where the log says it stands.
    let next = group.leader(Duration::from_secs(20)).await.unwrap();
    let cluster = Cluster::new(group.replicas[next].raft.clone(), shared[next].clone());
    let before = cluster
        .state()
        .billing
        .runs
        .get(&period)
        .unwrap()
        .invoices
        .len();
    assert!(before < ORGS, "the run finished before the failover");
    let result = loop {
        match run_month(&cluster, None, &period, true, 0).await {
            Ok(r) => break r,
            // The new leader may still be settling in.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    result.unwrap();

    // Both survivors: one invoice per organisation, numbers 1..=ORGS, the same bytes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut images = Vec::new();
    for s in &shared {
        let state = s.read();
        let run = state.billing.runs.get(&period).unwrap();
        assert!(run.complete);
        assert_eq!(run.invoices.len(), ORGS);
        let mut orgs: Vec<&OrgId> = state.billing.invoices.values().map(|i| &i.org).collect();
        orgs.sort();
        orgs.dedup();
        assert_eq!(orgs.len(), ORGS, "an organisation invoiced twice");
        let mut numbers: Vec<u64> = state
            .billing
            .invoices
            .values()
            .map(|i| {
                i.number
                    .as_deref()
                    .unwrap()
                    .rsplit('-')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=ORGS as u64).collect::<Vec<_>>(), "gaps");
        images.push(serde_json::to_vec(&state.billing.invoices).unwrap());
    }
    assert_eq!(images[0], images[1], "the replicas' invoices differ");
    group.shutdown().await;
}
