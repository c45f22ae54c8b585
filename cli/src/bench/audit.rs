//! `vmcloud bench audit`: the audit trail at millions of events — the replica's memory before
//! and after (flat: events live in the on-disk history store, not in memory) and the time to
//! serve a filtered page of them.
//!
//! Real path: commands encoded as protobuf and applied by the consensus state machine
//! ([`SharedState`]) with a history store, which chains each event and writes it (and its
//! indexes) on the history thread; pages are read as `GET /v1/audit-events` reads them.

use std::time::Instant;

use anyhow::Context;
use clap::Args;
use prost::Message;
use serde_json::json;
use vmcloud_consensus::StateMachine;
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{OrgId, ProjectId, UserId};
use vmcloud_scheduler::history::audit_index::AuditFilter;
use vmcloud_scheduler::history::store::HistoryStore;
use vmcloud_scheduler::state::replicated::SharedState;

use super::{percentile, proc_mib};

/// DESIGN.md §6: a filtered page of audit events.
const BUDGET_QUERY_P99_MS: f64 = 50.0;
/// Memory may not grow with the number of events (a little for caches and allocator slack).
const BUDGET_GROWTH_MIB: f64 = 64.0;
const BATCH: usize = 64;

#[derive(Debug, Args)]
pub struct AuditBenchArgs {
    /// Audit events to write (each is one applied command).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Organisations the events belong to (a filtered page shows one's).
    #[arg(long, default_value_t = 1_000)]
    pub orgs: usize,
    /// Filtered pages read to measure the query time.
    #[arg(long, default_value_t = 1_000)]
    pub queries: usize,
    /// Where the history store is written (a fresh directory under it; removed afterwards).
    #[arg(long, env = "TMPDIR", default_value = "/tmp")]
    pub data_dir: std::path::PathBuf,
}

fn rss_mib() -> anyhow::Result<f64> {
    proc_mib(std::process::id(), "status", "VmRSS:")
}

pub fn audit(args: AuditBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.events > 0 && args.orgs > 0 && args.queries > 0,
        "--events, --orgs and --queries must be at least 1"
    );
    let dir = args
        .data_dir
        .join(format!("vmcloud-bench-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = run(&args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run(args: &AuditBenchArgs, dir: &std::path::Path) -> anyhow::Result<()> {
    let mut state = SharedState::with_history(HistoryStore::open(&dir.join("history.redb"))?);
    let mut index = 0u64;
    let mut apply = |state: &mut SharedState, at: i64, actor: pb::Actor, body: Body| {
        index += 1;
        let data = pb::Command {
            at_unix_ms: at,
            actor: Some(actor),
            request: Some(pb::Request {
                id: format!("req_{index:032x}"),
                ..Default::default()
            }),
            body: Some(body),
        }
        .encode_to_vec();
        let out = state.apply(index, &data);
        if index.is_multiple_of(BATCH as u64) {
            state.publish();
        }
        out.map(|_| ())
            .map_err(|e| anyhow::anyhow!("entry {index} was rejected: {e}"))
    };
    let system = pb::Actor {
        who: Some(pb::actor::Who::System(true)),
        source: String::new(),
        mfa: false,
    };
    // Customers: one user, organisation and project each.
    let hash =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
    let mut orgs = Vec::with_capacity(args.orgs);
    for n in 0..args.orgs {
        let org = OrgId::generate();
        apply(
            &mut state,
            1_000,
            pb::Actor {
                who: None,
                source: format!("198.51.100.{}", n % 250),
                mfa: false,
            },
            Body::SignUp(pb::SignUp {
                user_id: UserId::generate().to_string(),
                email: format!("user{n}@example.org"),
                password_hash: hash.into(),
                organisation: Some(pb::Organisation {
                    org_id: org.to_string(),
                    name: format!("Org {n}"),
                    kind: "person".into(),
                    billing_country: "FR".into(),
                    vat_id: String::new(),
                    ..Default::default()
                }),
                project_id: ProjectId::generate().to_string(),
                verification_sha256: vec![0; 32],
                verification_expires_at_unix_ms: i64::MAX,
                partner_id: String::new(),
            }),
        )?;
        orgs.push(org);
    }
    state.publish();
    anyhow::ensure!(state.history_written(), "the history writer fell behind");
    let before = rss_mib()?;
    println!(
        "{} organisations made; writing {} audit events (one per applied command)…",
        args.orgs, args.events
    );
    let started = Instant::now();
    let mut last_report = Instant::now();
    for n in 0..args.events {
        let at = 10_000 + n as i64;
        if n % 2 == 0 {
            // An organisation's change: lands in its organisation's audit trail.
            let org = &orgs[(n / 2) as usize % orgs.len()];
            apply(
                &mut state,
                at,
                system.clone(),
                Body::UpdateOrganisation(pb::UpdateOrganisation {
                    org_id: org.to_string(),
                    name: Some(format!("Org renamed {n}")),
                    ..Default::default()
                }),
            )?;
        } else {
            // A refused log-in from somewhere on the internet.
            apply(
                &mut state,
                at,
                pb::Actor {
                    who: None,
                    source: format!("203.0.113.{}", n % 250),
                    mfa: false,
                },
                Body::RecordRefusal(pb::RecordRefusal {
                    method: "POST".into(),
                    path: "/v1/login".into(),
                    status: 401,
                    kind: "unauthorized".into(),
                }),
            )?;
        }
        if last_report.elapsed().as_secs() >= 10 {
            last_report = Instant::now();
            println!(
                "  {n} events, {:.0}/s, RSS {:.0} MiB",
                n as f64 / started.elapsed().as_secs_f64(),
                rss_mib()?
            );
        }
    }
    state.publish();
    anyhow::ensure!(state.history_written(), "the history writer fell behind");
    let write_s = started.elapsed().as_secs_f64();
    let after = rss_mib()?;
    let store = state.history().context("no history store")?.clone();
    let held = store.audit_len()?;
    let disk_mib = std::fs::metadata(dir.join("history.redb"))?.len() as f64 / (1 << 20) as f64;

    // Filtered pages as operators and organisation admins ask for them: an organisation's
    // newest 50, an organisation's page deep in the past (by time), one actor's newest 50.
    let mut samples = Vec::with_capacity(args.queries);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for q in 0..args.queries {
        let org = orgs[next() as usize % orgs.len()].to_string();
        let filter = match q % 3 {
            0 => AuditFilter {
                org: Some(org),
                ..Default::default()
            },
            1 => AuditFilter {
                org: Some(org),
                until_ms: Some(10_000 + (next() % args.events) as i64),
                ..Default::default()
            },
            _ => AuditFilter {
                actor: Some("anonymous".into()),
                since_ms: Some(10_000 + (next() % args.events) as i64),
                ..Default::default()
            },
        };
        let t = Instant::now();
        let page = store.audit_page(&filter, None, 50, true)?;
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            page.events
                .iter()
                .all(|e| filter.org.is_none() || e.org == filter.org),
            "a filtered page holds another organisation's event"
        );
    }
    samples.sort_by(f64::total_cmp);
    let p50 = percentile(&samples, 50.0);
    let p99 = percentile(&samples, 99.0);
    let growth = after - before;
    println!(
        "wrote {held} audit events in {write_s:.1} s ({:.0}/s), {disk_mib:.0} MiB on disk ({:.0} bytes/event)",
        args.events as f64 / write_s,
        disk_mib * (1 << 20) as f64 / held.max(1) as f64
    );
    println!(
        "memory: {before:.0} MiB before, {after:.0} MiB after: {growth:+.0} MiB (budget: flat, ≤ {BUDGET_GROWTH_MIB:.0} MiB)"
    );
    println!(
        "a filtered page of 50 events: p50 {p50:.2} ms, p99 {p99:.2} ms over {} queries (budget p99 ≤ {BUDGET_QUERY_P99_MS:.0} ms)",
        args.queries
    );
    println!(
        "{}",
        json!({
            "events": held,
            "write_s": write_s,
            "disk_mib": disk_mib,
            "rss_before_mib": before,
            "rss_after_mib": after,
            "memory_growth_mib": growth,
            "query_p50_ms": p50,
            "query_p99_ms": p99,
        })
    );
    Ok(())
}
