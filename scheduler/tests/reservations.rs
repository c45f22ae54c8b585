//! Reservations: admission on real capacity, the hold kept from on-demand work, lending to
//! spot and taking it back by preemption, slots released and re-held, expiry.

use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{InstanceId, ReservationId};
use vmcloud_scheduler::instances::types::{InstanceState, Market};
use vmcloud_scheduler::reservations::apply::plan_reservation;
use vmcloud_scheduler::state::{Applied, Rejected};

use crate::fleet::{ACCOUNT, Fleet};

/// A request for `count` slots of 4×H100 (4 vCPUs, 8 GiB) in par, ending at `end`.
fn request(count: u32, end: i64) -> pb::CreateReservation {
    pb::CreateReservation {
        reservation_id: ReservationId::generate().to_string(),
        project_id: ACCOUNT.into(),
        region: "par".into(),
        flavor: "gpu-h100-4".into(),
        vcpus: 4,
        memory_mib: 8192,
        gpu_model: "H100".into(),
        gpu_count: 4,
        start_unix_ms: 0,
        end_unix_ms: end,
        count,
        ..Default::default()
    }
}

/// Plans and applies a reservation the way the API does.
fn reserve(f: &mut Fleet, count: u32, end: i64) -> Result<ReservationId, String> {
    let mut req = request(count, end);
    req.slot_nodes = plan_reservation(&f.state, &req)?
        .into_iter()
        .map(|n| n.to_string())
        .collect();
    match f.try_apply(Body::CreateReservation(req)) {
        Ok(Applied::Reservation(r)) => Ok(r.id.clone()),
        other => Err(format!("{other:?}")),
    }
}

fn reserved(rid: &ReservationId) -> impl FnOnce(&mut pb::CreateInstance) + '_ {
    move |c| {
        c.market = pb::Market::Reserved as i32;
        c.reservation_id = rid.to_string();
    }
}

fn spot(c: &mut pb::CreateInstance) {
    c.market = pb::Market::Spot as i32;
    c.preemption_notice_s = 60;
}

fn backed(f: &Fleet) {
    f.state
        .check_reservations_backed()
        .expect("reserved capacity is backed");
}

#[test]
fn held_capacity_is_kept_from_on_demand_lent_to_spot_and_taken_back_by_preemption() {
    let mut f = Fleet::new();
    let host = f.host("g", "r1", 8);
    let rid = reserve(&mut f, 1, i64::MAX).expect("4 of 8 GPUs can be held");
    assert_eq!(f.state.usage(&host).held.gpus, 4);
    backed(&f);

    // On-demand may use the 4 GPUs not held, never the held ones.
    let whole = f.create(8, |_| {});
    let half = f.create(4, |_| {});
    f.place();
    assert_eq!(f.instance(&half).node.as_ref(), Some(&host));
    let reason = f.instance(&whole).pending_reason.clone().unwrap();
    assert!(
        reason.contains("1 with the room held for reservations"),
        "the 8-GPU request waits for the hold: {reason}"
    );
    let more = f.create(4, |_| {});
    f.place();
    let reason = f.instance(&more).pending_reason.clone().unwrap();
    assert!(
        reason.contains("1 with the room held for reservations"),
        "the reason names the hold: {reason}"
    );
    backed(&f);

    // Spot borrows the held GPUs.
    let borrower = f.create(4, spot);
    f.place();
    assert_eq!(f.instance(&borrower).node.as_ref(), Some(&host));
    f.observe(&host, &borrower, pb::ObservedState::Running);
    backed(&f);

    // The owner comes: the borrower gets its notice, the owner is nominated, then placed.
    let mine = f.create(4, reserved(&rid));
    assert_eq!(f.instance(&mine).market, Market::Reserved);
    f.place();
    let deadline = f.instance(&borrower).terminate_at_ms.expect("given notice");
    assert_eq!(deadline, f.at + 60_000);
    assert_eq!(f.instance(&mine).nominated_node.as_ref(), Some(&host));
    assert_eq!(
        f.instance(&more).nominated_node,
        None,
        "on-demand never preempts into held capacity"
    );
    f.at = deadline;
    f.apply(Body::ReclaimInstances(pb::ReclaimInstances {
        instance_ids: vec![borrower.to_string()],
    }));
    f.observe(&host, &borrower, pb::ObservedState::Absent);
    f.place();
    assert_eq!(f.instance(&mine).state, InstanceState::Scheduled);
    assert_eq!(f.instance(&mine).gpus.len(), 4);
    assert_eq!(f.state.usage(&host).held.gpus, 0, "the slot is in use");
    assert_eq!(f.instance(&more).state, InstanceState::Pending);
    backed(&f);

    // Deleting the reserved instance holds its slot again: on-demand still may not use it.
    f.apply(Body::DeleteInstance(pb::DeleteInstance {
        instance_id: mine.to_string(),
        project_id: ACCOUNT.into(),
    }));
    f.observe(&host, &mine, pb::ObservedState::Absent);
    assert_eq!(f.state.usage(&host).held.gpus, 4);
    f.place();
    assert_eq!(f.instance(&more).state, InstanceState::Pending);
    backed(&f);
}

#[test]
fn admission_holds_only_what_exists_and_says_how_much() {
    let mut f = Fleet::new();
    f.host("a", "r1", 8);
    f.host("b", "r1", 8);
    // Spot work does not block a reservation: it can be evicted.
    for _ in 0..4 {
        f.create(4, spot);
    }
    f.place();
    let err = reserve(&mut f, 5, i64::MAX).unwrap_err();
    assert!(
        err.contains("only 4 of 5 gpu-h100-4 slots can be held in par"),
        "{err}"
    );
    assert!(f.state.reservations.is_empty(), "nothing half-created");
    reserve(&mut f, 4, i64::MAX).expect("the whole fleet, borrowed by spot, can be held");
    backed(&f);
    let err = reserve(&mut f, 1, i64::MAX).unwrap_err();
    assert!(err.contains("only 0 of 1"), "{err}");
}

#[test]
fn a_plan_overtaken_by_other_work_is_refused_whole() {
    let mut f = Fleet::new();
    f.host("g", "r1", 8);
    let mut req = request(2, i64::MAX);
    req.slot_nodes = plan_reservation(&f.state, &req)
        .unwrap()
        .into_iter()
        .map(|n| n.to_string())
        .collect();
    // Meanwhile on-demand work takes half the host.
    f.create(4, |_| {});
    f.place();
    let result = f.try_apply(Body::CreateReservation(req));
    assert!(
        matches!(&result, Err(Rejected::Conflict(m)) if m.contains("taken meanwhile")),
        "{result:?}"
    );
    assert!(f.state.reservations.is_empty());
    assert_eq!(f.state.usage(&"g".parse().unwrap()).held.gpus, 0);
}

#[test]
fn reserved_instances_must_fit_their_reservation() {
    let mut f = Fleet::new();
    f.host("g", "r1", 8);
    let rid = reserve(&mut f, 1, i64::MAX).unwrap();
    let create = |f: &mut Fleet, gpus: u32, at_offset: i64| {
        let mut c = pb::CreateInstance {
            instance_id: InstanceId::generate().to_string(),
            project_id: ACCOUNT.into(),
            region: "par".into(),
            vcpus: 4,
            memory_mib: 8192,
            gpu_model: "H100".into(),
            gpu_count: gpus,
            ..Default::default()
        };
        reserved(&rid)(&mut c);
        f.at += at_offset;
        f.try_apply(Body::CreateInstance(c))
    };
    let wrong = create(&mut f, 2, 0);
    assert!(
        matches!(&wrong, Err(Rejected::Conflict(m)) if m.contains("holds gpu-h100-4 in par")),
        "{wrong:?}"
    );
    assert!(create(&mut f, 4, 0).is_ok());
    let full = create(&mut f, 4, 0);
    assert!(
        matches!(&full, Err(Rejected::Conflict(m)) if m.contains("all 1 slots")),
        "{full:?}"
    );
    assert_eq!(
        f.state.instances.len(),
        1,
        "refused creates leave nothing behind"
    );
}

#[test]
fn a_reservation_that_has_not_started_holds_but_cannot_be_used_yet() {
    let mut f = Fleet::new();
    let host = f.host("g", "r1", 8);
    let mut req = request(1, f.at + 7_200_000);
    req.start_unix_ms = f.at + 3_600_000;
    req.slot_nodes = plan_reservation(&f.state, &req)
        .unwrap()
        .into_iter()
        .map(|n| n.to_string())
        .collect();
    let rid = ReservationId::parse(&req.reservation_id).unwrap();
    f.apply(Body::CreateReservation(req));
    assert_eq!(f.state.usage(&host).held.gpus, 4, "held from the start");
    let c = pb::CreateInstance {
        instance_id: InstanceId::generate().to_string(),
        project_id: ACCOUNT.into(),
        region: "par".into(),
        vcpus: 4,
        memory_mib: 8192,
        gpu_model: "H100".into(),
        gpu_count: 4,
        market: pb::Market::Reserved as i32,
        reservation_id: rid.to_string(),
        ..Default::default()
    };
    let early = f.try_apply(Body::CreateInstance(c));
    assert!(
        matches!(&early, Err(Rejected::Conflict(m)) if m.contains("is scheduled")),
        "{early:?}"
    );
}

#[test]
fn an_ended_reservation_releases_its_hold_and_its_instances_go_on_demand() {
    let mut f = Fleet::new();
    let host = f.host("g", "r1", 8);
    let end = f.at + 10_000;
    let rid = reserve(&mut f, 2, end).unwrap();
    let mine = f.create(4, reserved(&rid));
    f.place();
    assert_eq!(f.instance(&mine).node.as_ref(), Some(&host));
    let waiting = f.create(4, |_| {});
    f.place();
    assert_eq!(f.instance(&waiting).state, InstanceState::Pending);

    let (next, due) = f.state.reservations_ending(f.at);
    assert_eq!((next, due.len()), (Some(end), 0));
    f.at = end;
    let (_, due) = f.state.reservations_ending(f.at);
    assert_eq!(due, vec![rid.clone()]);
    f.apply(Body::ExpireReservations(pb::ExpireReservations {
        reservation_ids: vec![rid.to_string()],
    }));
    assert!(f.state.reservations[&rid].expired);
    assert_eq!(f.state.usage(&host).held.gpus, 0);
    let i = f.instance(&mine);
    assert_eq!((i.market, i.reservation.clone()), (Market::OnDemand, None));
    assert!(i.notices[0].message.contains("goes on running on demand"));
    f.place();
    assert_eq!(f.instance(&waiting).state, InstanceState::Scheduled);
    backed(&f);
}

#[test]
fn holds_survive_a_snapshot() {
    let mut f = Fleet::new();
    let host = f.host("g", "r1", 8);
    let rid = reserve(&mut f, 2, i64::MAX).unwrap();
    f.create(4, reserved(&rid));
    f.place();
    let json = serde_json::to_vec(&f.state).unwrap();
    let mut restored: vmcloud_scheduler::state::ClusterState =
        serde_json::from_slice(&json).unwrap();
    restored.reindex();
    assert_eq!(restored, f.state);
    assert_eq!(restored.usage(&host).held.gpus, 4);
}
