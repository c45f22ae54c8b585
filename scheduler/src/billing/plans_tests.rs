//! Monthly plans in `apply`: taken mid-month (prorated, then a month ahead), changed
//! (the old plan's rest given back, the new one's charged), cancelled (runs to the month's
//! end, nothing after), refusals that change nothing, and the same log giving the same
//! invoices.

use rust_decimal::Decimal;
use vmcloud_billing::invoice::LineKind;
use vmcloud_proto::pb::{self, command::Body};

use crate::billing::tests::{
    DAY, HOUR, apply_at, command, d, dec, issued, nov, org, replay, run, setup_log,
};
use crate::billing::types::period_bounds;
use crate::state::{ClusterState, Rejected};

fn plan(id: &str) -> Body {
    Body::SetPlan(pb::SetPlan {
        org_id: "org-acme".into(),
        plan: id.into(),
    })
}

/// The fee lines of the period's invoice: (amount, description).
fn fees(s: &ClusterState, period: &str) -> Vec<(Decimal, String)> {
    let Some(run) = s.billing.runs.get(period) else {
        return Vec::new();
    };
    run.invoices
        .iter()
        .flat_map(|id| issued(s, id).lines)
        .filter(|l| l.kind == LineKind::Fee)
        .map(|l| (l.amount, l.description))
        .collect()
}

#[test]
fn a_plan_is_prorated_when_taken_billed_ahead_each_month_and_changes_are_prorated() {
    let jan = period_bounds("2027-01").unwrap().0;
    let feb = period_bounds("2027-02").unwrap().0;
    let mar = period_bounds("2027-03").unwrap().0;
    let mut log = setup_log(nov());
    // Taken on 16 November: 15 of 30 days.
    log.push(command(nov() + 15 * DAY, plan("game-standard")));
    log.push(command(dec() + HOUR, run("2026-11")));
    // Priority+ from 11 December: 21 of 31 days.
    log.push(command(dec() + 10 * DAY, plan("game-priority-plus")));
    log.push(command(jan + HOUR, run("2026-12")));
    // Cancelled in January: it runs to 1 February.
    log.push(command(jan + 5 * DAY, plan("")));
    log.push(command(feb + HOUR, run("2027-01")));
    log.push(command(mar + HOUR, run("2027-02")));
    let s = replay(&log);

    let nov_fees = fees(&s, "2026-11");
    assert_eq!(
        nov_fees.iter().map(|f| f.0).collect::<Vec<_>>(),
        vec![d("5.00"), d("9.99")],
        "{nov_fees:?}"
    );
    assert!(nov_fees[0].1.contains("prorated"), "{nov_fees:?}");
    assert!(
        nov_fees[1].1.contains("December 2026 in advance"),
        "{nov_fees:?}"
    );
    let dec_fees = fees(&s, "2026-12");
    assert_eq!(
        dec_fees.iter().map(|f| f.0).collect::<Vec<_>>(),
        vec![d("12.19"), d("-6.77"), d("17.99")],
        "{dec_fees:?}"
    );
    // January: paid ahead, cancelled: nothing more, and no invoice at all for February.
    assert!(fees(&s, "2027-01").is_empty(), "{:?}", fees(&s, "2027-01"));
    assert!(s.billing.runs["2027-02"].invoices.is_empty());
    let account = &s.billing.accounts[&org()];
    assert!(account.plan_spans.is_empty() && account.plans_advanced.is_none());

    // The same log, replayed, gives the same invoices.
    assert_eq!(replay(&log).billing, s.billing);
}

#[test]
fn refused_plan_changes_say_why_and_change_nothing() {
    let mut s = replay(&setup_log(nov()));
    let at = nov() + DAY;
    let none = apply_at(&mut s, at, plan(""));
    assert!(matches!(none, Err(Rejected::NotFound(m)) if m.contains("to cancel")));
    let bad = apply_at(&mut s, at, plan("Gold Plan"));
    assert!(matches!(bad, Err(Rejected::Invalid(m)) if m.contains("not a plan id")));
    apply_at(&mut s, at, plan("support-developer")).unwrap();
    let before = s.billing.accounts[&org()].clone();
    let again = apply_at(&mut s, at + HOUR, plan("support-developer"));
    assert!(matches!(again, Err(Rejected::Conflict(m)) if m.contains("already")));
    apply_at(&mut s, at + HOUR, plan("")).unwrap();
    let twice = apply_at(&mut s, at + 2 * HOUR, plan(""));
    assert!(matches!(twice, Err(Rejected::Conflict(m)) if m.contains("already ends")));
    // Taken again before the cancellation took effect: as if never cancelled.
    apply_at(&mut s, at + 3 * HOUR, plan("support-developer")).unwrap();
    assert_eq!(s.billing.accounts[&org()], before);
}
