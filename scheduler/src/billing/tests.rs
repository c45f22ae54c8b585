//! Billing in `apply`, driven by commands and their times (a test clock: nothing sleeps).
//! Usage from placement to delete, cut at months' ends; runs that draft, number without gaps
//! and refuse to run twice; credits drawn in order; credit notes instead of changes; and the
//! same log replayed (whole, or restored from a snapshot half-way) gives the same invoices
//! byte for byte (invariant 11). A property test: whatever the order of lifecycle commands,
//! repeated commands and snapshot/restores (a failover, a replica restart), every second an
//! instance was placed is billed exactly once (invariant 6).

use proptest::prelude::*;
use rust_decimal::Decimal;
use vmcloud_billing::prices::BUILTIN_PRICES;
use vmcloud_billing::tax::BUILTIN_TABLE;
use vmcloud_proto::OrgId;
use vmcloud_proto::pb::{self, command::Body};

use crate::billing::types::{Invoice, InvoiceStatus, period_bounds};
use crate::history::types::HistoryRecord;
use crate::state::{ApplyResult, ClusterState, Rejected};

pub(super) const HOUR: i64 = 3_600_000;
pub(super) const DAY: i64 = 24 * HOUR;

pub(super) fn nov() -> i64 {
    period_bounds("2026-11").unwrap().0
}

pub(super) fn dec() -> i64 {
    period_bounds("2026-12").unwrap().0
}

pub(super) fn command(at: i64, body: Body) -> pb::Command {
    pb::Command {
        at_unix_ms: at,
        actor: None,
        request: None,
        body: Some(body),
    }
}

pub(super) fn apply_at(s: &mut ClusterState, at: i64, body: Body) -> ApplyResult {
    let index = s.applied_index + 1;
    s.apply(index, command(at, body))
}

fn iid(tag: &str) -> String {
    let n = tag
        .bytes()
        .fold(0u64, |a, b| a.wrapping_mul(131).wrapping_add(u64::from(b)));
    format!("i-{n:020x}")
}

/// The commands that make a verified customer (`org-acme`, France, a person: 20 % VAT) with a
/// project, and a host in `par`.
pub(super) fn setup_log(at: i64) -> Vec<pb::Command> {
    vec![
        command(
            at,
            Body::SignUp(pb::SignUp {
                user_id: "usr-00000000000000a1".into(),
                email: "ann@example.org".into(),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
                organisation: Some(pb::Organisation {
                    org_id: "org-acme".into(),
                    name: "Ann Martin".into(),
                    kind: "person".into(),
                    billing_country: "FR".into(),
                    vat_id: String::new(),
                    billing_address: "3 rue Oberkampf\n75011 Paris".into(),
                }),
                project_id: "prj-acme".into(),
                verification_sha256: vec![7; 32],
                verification_expires_at_unix_ms: at + DAY,
                partner_id: String::new(),
            }),
        ),
        command(
            at,
            Body::VerifyEmail(pb::VerifyEmail {
                user_id: "usr-00000000000000a1".into(),
                token_sha256: vec![7; 32],
            }),
        ),
        command(
            at,
            Body::RegisterNode(pb::RegisterNode {
                node_id: "node-a".into(),
                inventory: Some(pb::HostInventory {
                    region: "par".into(),
                    cpu_threads: 64,
                    memory_bytes: 256 << 30,
                    ..Default::default()
                }),
                build: None,
            }),
        ),
    ]
}

pub(super) fn create(tag: &str, flavor: &str, market: pb::Market) -> Body {
    Body::CreateInstance(pb::CreateInstance {
        instance_id: iid(tag),
        project_id: "prj-acme".into(),
        name: tag.into(),
        flavor: flavor.into(),
        region: "par".into(),
        vcpus: 1,
        memory_mib: 512,
        market: market.into(),
        ..Default::default()
    })
}

pub(super) fn place(tag: &str) -> Body {
    Body::PlaceInstances(pb::PlaceInstances {
        placements: vec![pb::Placement {
            instance_id: iid(tag),
            node_id: "node-a".into(),
            gpus: Vec::new(),
        }],
        ..Default::default()
    })
}

fn delete(tag: &str) -> Body {
    Body::DeleteInstance(pb::DeleteInstance {
        instance_id: iid(tag),
        project_id: "prj-acme".into(),
    })
}

pub(super) fn run(period: &str) -> Body {
    batch(period, "", 0)
}

fn batch(period: &str, after_org: &str, max_orgs: u32) -> Body {
    Body::RunBilling(pb::RunBilling {
        period: period.into(),
        prices_toml: BUILTIN_PRICES.into(),
        vat_toml: BUILTIN_TABLE.into(),
        finalize: true,
        due_days: 0,
        after_org: after_org.into(),
        max_orgs,
    })
}

pub(super) fn replay(log: &[pb::Command]) -> ClusterState {
    let mut s = ClusterState::default();
    for (n, c) in log.iter().enumerate() {
        let _ = s.apply(n as u64 + 1, c.clone());
    }
    s
}

/// An invoice as issued, with every line (from the history records `apply` produced; the
/// state keeps one line per kind), or a draft as the state holds it.
pub(super) fn issued(s: &ClusterState, id: &str) -> Invoice {
    s.history
        .0
        .iter()
        .rev()
        .find_map(|(_, r)| match r {
            HistoryRecord::InvoiceIssued(i) if i.id == id => Some(Invoice::clone(i)),
            _ => None,
        })
        .unwrap_or_else(|| Invoice::clone(&s.billing.invoices[id]))
}

/// Every document issued, as history holds it, in log order.
fn issued_bytes(s: &ClusterState) -> Vec<u8> {
    let docs: Vec<&Invoice> = s
        .history
        .0
        .iter()
        .filter_map(|(_, r)| match r {
            HistoryRecord::InvoiceIssued(i) => Some(&**i),
            _ => None,
        })
        .collect();
    serde_json::to_vec(&docs).unwrap()
}

pub(super) fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

pub(super) fn org() -> OrgId {
    OrgId::parse("org-acme").unwrap()
}

#[test]
fn an_instance_is_billed_from_its_placement_to_its_delete_with_the_trial_credit_and_vat() {
    let t0 = nov() + 9 * DAY;
    let mut log = setup_log(t0);
    log.push(command(t0, create("web", "vps-xl", pb::Market::OnDemand)));
    log.push(command(t0 + HOUR, place("web")));
    // 1,000 hours: past the monthly cap (35.40 € at 0.0567 €/h = 624 h).
    log.push(command(t0 + HOUR + 1_000 * HOUR / 2, delete("web")));
    log.push(command(dec() + HOUR, run("2026-11")));
    let s = replay(&log);
    let ids = &s.billing.runs["2026-11"].invoices;
    assert_eq!(ids.len(), 1);
    let inv = &issued(&s, &ids[0]);
    assert_eq!(inv.number.as_deref(), Some("VMC-2026-000001"));
    // 500 h × 0.0567 = 28.35 €, under the cap.
    assert_eq!(inv.lines[0].amount, d("28.35"));
    assert_eq!(inv.lines[0].quantity, "500 h");
    // The trial credit (50 €) covers it all: nothing is due, nothing taxed.
    assert_eq!(inv.lines[1].amount, d("-28.35"));
    assert_eq!(inv.totals.net, Decimal::ZERO);
    assert_eq!(inv.totals.amount_due, Decimal::ZERO);
    assert_eq!(inv.status, InvoiceStatus::Paid);
    assert_eq!(inv.totals.vat_rate, d("20"));
    let trial = &s.billing.credits[&org()][0];
    assert_eq!(trial.remaining, d("21.65"));
    // Issued, the document's lines went to history; the state keeps one line per kind, and
    // the period's usage went to history too.
    let kept: Vec<_> = s.billing.invoices[&ids[0]]
        .lines
        .iter()
        .map(|l| (l.description.clone(), l.amount))
        .collect();
    assert_eq!(
        kept,
        vec![
            ("Usage: 1 line".to_owned(), d("28.35")),
            ("Credits: 1 line".to_owned(), d("-28.35"))
        ]
    );
    let closed: Vec<_> = s
        .history
        .0
        .iter()
        .filter_map(|(_, r)| match r {
            HistoryRecord::ClosedUsage {
                org: o,
                period,
                intervals,
            } if *o == org() && period == "2026-11" => Some(intervals.len()),
            _ => None,
        })
        .collect();
    assert_eq!(closed, vec![1]);
}

#[test]
fn a_month_end_cuts_running_meters_and_the_next_month_goes_on_numbering() {
    let t0 = nov() + 20 * DAY;
    let mut log = setup_log(t0);
    log.push(command(t0, create("gpu", "vps-l", pb::Market::OnDemand)));
    log.push(command(t0, place("gpu")));
    log.push(command(t0, create("spot", "vps-m", pb::Market::Spot)));
    log.push(command(t0, place("spot")));
    // Too early: November has not ended.
    log.push(command(dec() - 1, run("2026-11")));
    log.push(command(dec() + 2 * HOUR, run("2026-11")));
    // Run again (a retry after a failover): refused, nothing doubled.
    log.push(command(dec() + 3 * HOUR, run("2026-11")));
    log.push(command(dec() + 5 * DAY, delete("gpu")));
    log.push(command(dec() + 5 * DAY, delete("spot")));
    log.push(command(period_bounds("2027-01").unwrap().0, run("2026-12")));
    let mut s = ClusterState::default();
    let mut results = Vec::new();
    for (n, c) in log.iter().enumerate() {
        results.push(s.apply(n as u64 + 1, c.clone()));
    }
    let n = log.len();
    assert!(
        matches!(&results[n - 6], Err(Rejected::Conflict(m)) if m.contains("has not ended")),
        "{:?}",
        results[n - 6]
    );
    assert!(results[n - 5].is_ok());
    assert!(
        matches!(&results[n - 4], Err(Rejected::Conflict(m)) if m.contains("was billed at")),
        "{:?}",
        results[n - 4]
    );
    let november = &issued(&s, &s.billing.runs["2026-11"].invoices[0]);
    let december = &issued(&s, &s.billing.runs["2026-12"].invoices[0]);
    // 10 days in November, 5 in December: 240 h and 120 h.
    let hours = |i: &crate::billing::types::Invoice| {
        i.lines
            .iter()
            .filter(|l| l.kind == vmcloud_billing::invoice::LineKind::Usage)
            .map(|l| l.quantity.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(hours(november), vec!["240 h", "240 h"]);
    assert_eq!(hours(december), vec!["120 h", "120 h"]);
    // vps-l 240 h × 0.0287 = 6.888 → 6.89; spot vps-m 240 h × 0.0146 × 0.3 = 1.0512 → 1.05.
    assert_eq!(november.lines[0].amount, d("6.89"));
    assert_eq!(november.lines[1].amount, d("1.05"));
    assert_eq!(november.number.as_deref(), Some("VMC-2026-000001"));
    // Numbered by the year it is issued in: January 2027's first.
    assert_eq!(december.number.as_deref(), Some("VMC-2027-000001"));
    assert!(s.billing.usage.get(&org()).is_none_or(|u| u.is_empty()));
}

#[test]
fn a_paid_invoice_never_changes_and_a_credit_note_corrects_it() {
    let t0 = nov() + DAY;
    let mut log = setup_log(t0);
    log.push(command(t0, create("big", "vps-xl", pb::Market::OnDemand)));
    log.push(command(t0, place("big")));
    log.push(command(dec() + HOUR, run("2026-11")));
    let mut s = replay(&log);
    let id = s.billing.runs["2026-11"].invoices[0].clone();
    let before = s.billing.invoices[&id].clone();
    // 29 days capped at 35.40, less the 50 € credit → 0: use a second month instead.
    assert_eq!(issued(&s, &id).lines[0].amount, d("35.40"));
    assert_eq!(before.totals.amount_due, Decimal::ZERO);
    let at = dec() + 2 * HOUR;
    let wrong = apply_at(
        &mut s,
        at,
        Body::RecordPayment(pb::RecordPayment {
            invoice_id: id.clone(),
            method: "bank-transfer".into(),
            reference: "SEPA-1".into(),
            amount: "1.00".into(),
        }),
    );
    assert!(matches!(wrong, Err(Rejected::Conflict(m)) if m.contains("paid already")));
    apply_at(
        &mut s,
        at,
        Body::VoidInvoice(pb::VoidInvoice {
            invoice_id: id.clone(),
            reason: "goodwill: the host was slow".into(),
        }),
    )
    .unwrap();
    assert_eq!(
        s.billing.invoices[&id], before,
        "a finalized invoice never changes"
    );
    let note = s
        .billing
        .invoices
        .values()
        .find(|i| i.corrects.as_deref() == Some(id.as_str()))
        .expect("a credit note");
    assert_eq!(note.number.as_deref(), Some("VMC-2026-000002"));
    assert_eq!(note.lines[0].amount, d("-35.40"));
}

#[test]
fn an_open_invoice_is_paid_by_bank_transfer_of_the_whole_amount() {
    let t0 = nov() + DAY;
    let mut log = setup_log(t0);
    log.push(command(t0, create("a", "vps-xl", pb::Market::OnDemand)));
    log.push(command(t0, place("a")));
    log.push(command(t0, create("b", "vps-xl", pb::Market::OnDemand)));
    log.push(command(t0, place("b")));
    log.push(command(dec() + HOUR, run("2026-11")));
    let mut s = replay(&log);
    let id = s.billing.runs["2026-11"].invoices[0].clone();
    let inv = s.billing.invoices[&id].clone();
    // 2 × 35.40 = 70.80, less 50 credit = 20.80 net, + 20 % = 24.96.
    assert_eq!(inv.totals.net, d("20.80"));
    assert_eq!(inv.totals.vat, d("4.16"));
    assert_eq!(inv.totals.amount_due, d("24.96"));
    assert_eq!(inv.status, InvoiceStatus::Open);
    let pay = |amount: &str| {
        Body::RecordPayment(pb::RecordPayment {
            invoice_id: id.clone(),
            method: "bank-transfer".into(),
            reference: "SEPA-2026-12-0001".into(),
            amount: amount.into(),
        })
    };
    let short = apply_at(&mut s, dec() + 2 * HOUR, pay("20.00"));
    assert!(matches!(short, Err(Rejected::Invalid(m)) if m.contains("24.96")));
    apply_at(&mut s, dec() + 2 * HOUR, pay("24.96")).unwrap();
    assert_eq!(s.billing.invoices[&id].status, InvoiceStatus::Paid);
}

/// Invariant 11: the same log gives the same invoices, byte for byte — replayed whole on a
/// fresh replica, or restored from a snapshot taken half-way (a replica restart).
#[test]
fn replaying_the_log_gives_the_same_invoices_byte_for_byte() {
    let t0 = nov() + 3 * DAY;
    let mut log = setup_log(t0);
    for (k, tag) in ["a", "b", "c"].iter().enumerate() {
        let at = t0 + k as i64 * 7 * HOUR + 123;
        log.push(command(at, create(tag, "vps-m", pb::Market::OnDemand)));
        log.push(command(at + 1_500, place(tag)));
    }
    log.push(command(t0 + 50 * HOUR + 17, delete("b")));
    log.push(command(dec() + HOUR, run("2026-11")));
    log.push(command(dec() + 9 * DAY, delete("a")));
    log.push(command(
        period_bounds("2027-01").unwrap().0 + HOUR,
        run("2026-12"),
    ));
    // The state's invoices and the documents issued to history.
    let bytes = |s: &ClusterState| {
        let mut b = serde_json::to_vec(&s.billing.invoices).unwrap();
        b.extend(issued_bytes(s));
        b
    };
    let whole = replay(&log);
    assert_eq!(whole.billing.invoices.len(), 2, "one invoice a month");
    assert!(!issued_bytes(&whole).is_empty());
    assert_eq!(bytes(&whole), bytes(&replay(&log)));
    for cut in [log.len() / 3, log.len() / 2, log.len() - 3] {
        let half = replay(&log[..cut]);
        let snapshot = serde_json::to_vec(&half).unwrap();
        let mut restored: ClusterState = serde_json::from_slice(&snapshot).unwrap();
        restored.reindex();
        // History is beside the snapshot (the store survives a restart; a peer gets it with
        // the snapshot).
        restored.history = half.history.clone();
        for (n, c) in log.iter().enumerate().skip(cut) {
            let _ = restored.apply(n as u64 + 1, c.clone());
        }
        assert_eq!(
            bytes(&whole),
            bytes(&restored),
            "restored after entry {cut}"
        );
    }
    assert_eq!(whole.billing.runs.len(), 2);
}

/// Billed seconds of every instance, across invoices and usage not invoiced yet.
fn billed_ms(s: &ClusterState, upto: i64) -> i64 {
    let from_usage: i64 = s
        .usage_between(&org(), 0, upto, &[12, 24, 36])
        .iter()
        .filter(|i| i.resource.starts_with("i-"))
        .map(|i| i.to_ms - i.from_ms)
        .sum();
    let from_invoices: i64 = s
        .billing
        .invoices
        .keys()
        .flat_map(|id| issued(s, id).lines)
        .filter(|l| l.kind == vmcloud_billing::invoice::LineKind::Usage)
        .map(|l| {
            let h: Decimal = l.quantity.trim_end_matches(" h").parse().unwrap();
            i64::try_from((h * Decimal::from(HOUR)).round().mantissa()).unwrap()
        })
        .sum();
    from_usage + from_invoices
}

#[derive(Debug, Clone)]
enum Step {
    Create(u8),
    Place(u8),
    Delete(u8),
    Run,
    /// The same command proposed again (a client's retry, a leader re-proposing).
    Again,
    /// A replica restarts from a snapshot.
    Restore,
    Wait(u32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..4).prop_map(Step::Create),
        (0u8..4).prop_map(Step::Place),
        (0u8..4).prop_map(Step::Delete),
        Just(Step::Run),
        Just(Step::Again),
        Just(Step::Restore),
        (1u32..(40 * 24)).prop_map(Step::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Invariant 6: every millisecond an instance was placed and not deleted is billed once —
    /// whatever commands are repeated and wherever a replica restarts from a snapshot.
    #[test]
    fn every_placed_second_is_billed_exactly_once(steps in prop::collection::vec(step(), 1..60)) {
        let t0 = nov();
        let mut s = ClusterState::default();
        for c in setup_log(t0) {
            let i = s.applied_index + 1;
            s.apply(i, c).unwrap();
        }
        let mut now = t0;
        let mut last: Option<pb::Command> = None;
        // Expected: per instance, when it was placed (and not deleted since).
        let mut placed: std::collections::BTreeMap<u8, i64> = Default::default();
        let mut expected = 0i64;
        let mut period = t0;
        for st in steps {
            let c = match st {
                Step::Create(k) => Some(command(now, create(&k.to_string(), "vps-s", pb::Market::OnDemand))),
                Step::Place(k) => Some(command(now, place(&k.to_string()))),
                Step::Delete(k) => Some(command(now, delete(&k.to_string()))),
                Step::Run => {
                    let (_, end) = period_bounds(&crate::billing::types::period_of(period)).unwrap();
                    if now >= end {
                        let p = crate::billing::types::period_of(period);
                        period = end;
                        Some(command(now, run(&p)))
                    } else {
                        None
                    }
                }
                Step::Again => last.clone().map(|mut c| { c.at_unix_ms = now; c }),
                Step::Restore => {
                    let snap = serde_json::to_vec(&s).unwrap();
                    let history = std::mem::take(&mut s.history);
                    s = serde_json::from_slice(&snap).unwrap();
                    s.reindex();
                    // The history store survives the restart.
                    s.history = history;
                    None
                }
                Step::Wait(h) => {
                    now += i64::from(h) * HOUR;
                    None
                }
            };
            let Some(c) = c else { continue };
            // What the command does to the expectation, judged from the state before it.
            // Billable: on a host and not being deleted — judged from the instance's
            // lifecycle, not from the meter under test.
            let billable = |s: &ClusterState| -> Vec<String> {
                s.instances
                    .values()
                    .filter(|i| i.node.is_some() && i.state != crate::instances::types::InstanceState::Deleting)
                    .map(|i| i.id.to_string())
                    .collect()
            };
            let before_placed = billable(&s);
            let i = s.applied_index + 1;
            let _ = s.apply(i, c.clone());
            let after_placed = billable(&s);
            for k in 0u8..4 {
                let id = iid(&k.to_string());
                let was = before_placed.contains(&id);
                let is = after_placed.contains(&id);
                if !was && is {
                    placed.insert(k, now);
                }
                if was && !is {
                    expected += now - placed.remove(&k).unwrap();
                }
            }
            last = Some(c);
        }
        for (_, from) in placed {
            expected += now - from;
        }
        prop_assert_eq!(billed_ms(&s, now), expected);
    }
}

fn node_state(state: pb::NodeState) -> Body {
    Body::SetNodeState(pb::SetNodeState {
        node_id: "node-a".into(),
        state: state.into(),
        reason: "test".into(),
        deadline_unix_ms: 0,
        by_liveness: false,
    })
}

#[test]
fn a_host_down_earns_on_demand_instances_one_sla_credit_and_spot_none() {
    let t0 = nov() + DAY;
    let mut log = setup_log(t0);
    log.push(command(t0, create("od", "vps-m", pb::Market::OnDemand)));
    log.push(command(t0, place("od")));
    log.push(command(t0, create("sp", "vps-m", pb::Market::Spot)));
    log.push(command(t0, place("sp")));
    log.push(command(t0 + 10 * DAY, node_state(pb::NodeState::Down)));
    // Back 2 h 10 min later; the same command again changes nothing.
    log.push(command(
        t0 + 10 * DAY + 130 * 60_000,
        node_state(pb::NodeState::Ready),
    ));
    log.push(command(
        t0 + 10 * DAY + 131 * 60_000,
        node_state(pb::NodeState::Ready),
    ));
    log.push(command(dec() + HOUR, run("2026-11")));
    log.push(command(
        period_bounds("2027-01").unwrap().0 + HOUR,
        run("2026-12"),
    ));
    let s = replay(&log);
    let sla: Vec<_> = s.billing.credits[&org()]
        .iter()
        .filter(|k| k.kind == crate::billing::types::CreditKind::Sla)
        .collect();
    assert_eq!(sla.len(), 1, "{sla:?}");
    // 1 h to 4 h: 25 % of vps-m's month (9.20 €).
    assert_eq!(sla[0].amount, d("2.30"));
    assert!(
        sla[0].description.contains("2 h 10 min"),
        "{}",
        sla[0].description
    );
    // Drawn first, on November's invoice.
    let nov_invoice = &issued(&s, &s.billing.runs["2026-11"].invoices[0]);
    let credit_lines: Vec<_> = nov_invoice
        .lines
        .iter()
        .filter(|l| l.kind == vmcloud_billing::invoice::LineKind::Credit)
        .collect();
    assert!(
        credit_lines[0].description.starts_with("SLA credit"),
        "{credit_lines:?}"
    );
    assert!(s.billing.incidents.get(&org()).is_none_or(|i| i.is_empty()));
}

#[test]
fn four_failed_charges_suspend_the_organisation_and_paying_lifts_it() {
    let t0 = nov() + DAY;
    let mut log = setup_log(t0);
    for tag in ["a", "b"] {
        log.push(command(t0, create(tag, "vps-xl", pb::Market::OnDemand)));
        log.push(command(t0, place(tag)));
    }
    log.push(command(dec() + HOUR, run("2026-11")));
    let mut s = replay(&log);
    let id = s.billing.runs["2026-11"].invoices[0].clone();
    // No card: the first reminder is due with the invoice.
    let due = s.billing.invoices[&id].due_at_ms.unwrap();
    assert_eq!(s.billing.invoices[&id].next_attempt_ms, Some(due));
    let fail = |s: &mut ClusterState, at: i64| {
        apply_at(
            s,
            at,
            Body::RecordPaymentFailure(pb::RecordPaymentFailure {
                invoice_id: id.clone(),
                reason: "card_declined".into(),
            }),
        )
        .unwrap();
    };
    fail(&mut s, due);
    assert_eq!(s.billing.invoices[&id].next_attempt_ms, Some(due + DAY));
    fail(&mut s, due + DAY);
    assert_eq!(s.billing.invoices[&id].next_attempt_ms, Some(due + 3 * DAY));
    fail(&mut s, due + 3 * DAY);
    assert_eq!(s.billing.invoices[&id].next_attempt_ms, Some(due + 7 * DAY));
    let project = vmcloud_proto::ProjectId::parse("prj-acme").unwrap();
    assert!(s.suspended(&project).is_none());
    fail(&mut s, due + 7 * DAY);
    assert!(s.suspended(&project).is_some());
    // Stopped on their host, not deleted; nothing new.
    let node = vmcloud_proto::NodeId::parse("node-a").unwrap();
    let desired = s.desired_config(&node).unwrap();
    assert_eq!(desired.instances.len(), 2);
    assert!(desired.instances.iter().all(|i| i.stopped));
    let refused = apply_at(
        &mut s,
        due + 8 * DAY,
        create("c", "vps-s", pb::Market::OnDemand),
    );
    assert!(
        matches!(refused, Err(Rejected::Suspended(_))),
        "{refused:?}"
    );
    // Paid by bank transfer: running again at once.
    let amount = s.billing.invoices[&id].totals.amount_due.to_string();
    apply_at(
        &mut s,
        due + 9 * DAY,
        Body::RecordPayment(pb::RecordPayment {
            invoice_id: id.clone(),
            method: "bank-transfer".into(),
            reference: "SEPA-9".into(),
            amount,
        }),
    )
    .unwrap();
    assert!(s.suspended(&project).is_none());
    assert!(
        s.desired_config(&node)
            .unwrap()
            .instances
            .iter()
            .all(|i| !i.stopped)
    );
}

/// A run in batches (one organisation each) gives the invoices a run in one entry gives, byte
/// for byte, with the same gapless numbers; a batch proposed twice is refused.
#[test]
fn a_run_in_batches_gives_the_same_invoices_and_refuses_a_repeated_batch() {
    let t0 = nov() + 2 * DAY;
    let mut log = setup_log(t0);
    // Two more organisations, each with an instance.
    for (k, org) in ["org-b", "org-c"].iter().enumerate() {
        log.push(command(
            t0,
            Body::CreateOrganisation(pb::CreateOrganisation {
                organisation: Some(pb::Organisation {
                    org_id: (*org).into(),
                    name: format!("Org {k}"),
                    kind: "company".into(),
                    billing_country: "DE".into(),
                    ..Default::default()
                }),
                owner_user_id: "usr-00000000000000a1".into(),
                project_id: format!("prj-{k}"),
                provider: false,
                partner_id: String::new(),
            }),
        ));
        let tag = format!("o{k}");
        log.push(command(
            t0,
            Body::CreateInstance(pb::CreateInstance {
                instance_id: iid(&tag),
                project_id: format!("prj-{k}"),
                name: tag.clone(),
                flavor: "vps-l".into(),
                region: "par".into(),
                vcpus: 1,
                memory_mib: 512,
                ..Default::default()
            }),
        ));
        log.push(command(t0, place(&tag)));
    }
    log.push(command(t0, create("a", "vps-m", pb::Market::OnDemand)));
    log.push(command(t0, place("a")));
    let at = dec() + HOUR;
    let mut whole = log.clone();
    whole.push(command(at, run("2026-11")));
    let whole = replay(&whole);
    let mut s = replay(&log);
    let orgs: Vec<String> = s.organisations.keys().map(|o| o.to_string()).collect();
    let mut after = String::new();
    for org in &orgs {
        apply_at(&mut s, at, batch("2026-11", &after, 1)).unwrap();
        // The same batch again: refused, nothing doubled.
        let again = apply_at(&mut s, at, batch("2026-11", &after, 1));
        assert!(matches!(again, Err(Rejected::Conflict(_))), "{again:?}");
        after = org.clone();
    }
    assert!(s.billing.runs["2026-11"].complete);
    assert_eq!(
        serde_json::to_vec(&s.billing.invoices).unwrap(),
        serde_json::to_vec(&whole.billing.invoices).unwrap()
    );
    let mut numbers: Vec<String> = s
        .billing
        .invoices
        .values()
        .filter_map(|i| i.number.clone())
        .collect();
    numbers.sort();
    assert_eq!(
        numbers,
        vec!["VMC-2026-000001", "VMC-2026-000002", "VMC-2026-000003"]
    );
}

#[test]
fn a_coupon_takes_its_share_off_the_invoices_it_covers_and_no_more() {
    let t0 = nov() + DAY;
    let mut log = setup_log(t0);
    log.push(command(
        t0,
        Body::CreateCoupon(pb::CreateCoupon {
            code: "launch-10".into(),
            percent_off: "10".into(),
            duration: "repeating".into(),
            months: 2,
            max_redemptions: 1,
            ..Default::default()
        }),
    ));
    log.push(command(
        t0,
        Body::RedeemCoupon(pb::RedeemCoupon {
            org_id: "org-acme".into(),
            code: "Launch-10".into(),
        }),
    ));
    for tag in ["a", "b"] {
        log.push(command(t0, create(tag, "vps-xl", pb::Market::OnDemand)));
        log.push(command(t0, place(tag)));
    }
    let mut at = dec() + HOUR;
    for p in ["2026-11", "2026-12", "2027-01"] {
        log.push(command(at, run(p)));
        at = period_bounds(p).unwrap().1 + 32 * DAY;
    }
    let mut s = replay(&log);
    let discount = |p: &str| -> Vec<Decimal> {
        let inv = issued(&s, &s.billing.runs[p].invoices[0]);
        inv.lines
            .iter()
            .filter(|l| l.kind == vmcloud_billing::invoice::LineKind::Discount)
            .map(|l| l.amount)
            .collect()
    };
    // 2 × 35.40 = 70.80 charged each month: 10 % off the first two invoices only.
    assert_eq!(discount("2026-11"), vec![d("-7.08")]);
    assert_eq!(discount("2026-12"), vec![d("-7.08")]);
    assert_eq!(discount("2027-01"), Vec::<Decimal>::new());
    assert_eq!(s.billing.coupons["LAUNCH-10"].redemptions, 1);
    // Its one redemption is used: a second is refused.
    let again = apply_at(
        &mut s,
        at,
        Body::RedeemCoupon(pb::RedeemCoupon {
            org_id: "org-acme".into(),
            code: "LAUNCH-10".into(),
        }),
    );
    assert!(
        matches!(&again, Err(Rejected::Conflict(m)) if m.contains("as many times")),
        "{again:?}"
    );
}
