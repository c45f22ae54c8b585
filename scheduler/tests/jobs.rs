//! AI job queues: priority classes, fair share, gangs all-or-nothing (in the plan and in
//! apply), backfill behind a blocked job, maximum run time, position and estimated start.

use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{InstanceId, JobId};
use vmcloud_scheduler::instances::types::InstanceState;
use vmcloud_scheduler::jobs::queue::standings;
use vmcloud_scheduler::placement::plan_pending;

use crate::fleet::{ACCOUNT, Fleet};

const OTHER: &str = "prj-other";

/// Submits a job of `members` × `gpus` H100s; gives its id and its members.
fn submit(
    f: &mut Fleet,
    project: &str,
    members: u32,
    gpus: u32,
    runtime_s: u32,
    priority: pb::JobPriority,
) -> (JobId, Vec<InstanceId>) {
    let c = job_of(project, members, gpus, runtime_s, priority, |_| {});
    submit_command(f, c).expect("submitted")
}

/// The command submitting a job of `members` × `gpus` H100s, each member changed by `tweak`.
fn job_of(
    project: &str,
    members: u32,
    gpus: u32,
    runtime_s: u32,
    priority: pb::JobPriority,
    tweak: impl Fn(&mut pb::CreateInstance),
) -> pb::CreateJob {
    let job = JobId::generate();
    pb::CreateJob {
        members: (0..members)
            .map(|n| pb::CreateInstance {
                instance_id: InstanceId::generate().to_string(),
                project_id: project.into(),
                name: format!("train-{n}"),
                region: "par".into(),
                vcpus: 4,
                memory_mib: 8192,
                gpu_model: "H100".into(),
                gpu_count: gpus,
                job: Some(pb::JobSpec {
                    job_id: job.to_string(),
                    priority: priority as i32,
                    max_runtime_s: runtime_s,
                    gang_size: members,
                    member: n,
                }),
                ..Default::default()
            })
            .map(|mut c| {
                tweak(&mut c);
                c
            })
            .collect(),
    }
}

/// Applies a job submission; gives its id and its members.
fn submit_command(
    f: &mut Fleet,
    c: pb::CreateJob,
) -> Result<(JobId, Vec<InstanceId>), vmcloud_scheduler::state::Rejected> {
    let ids: Vec<InstanceId> = c
        .members
        .iter()
        .map(|m| InstanceId::parse(&m.instance_id).unwrap())
        .collect();
    let job = JobId::parse(&c.members[0].job.as_ref().unwrap().job_id).unwrap();
    f.try_apply(Body::CreateJob(c))?;
    f.at += 1;
    Ok((job, ids))
}

fn other_account(f: &mut Fleet) {
    f.apply(Body::CreateProject(pb::CreateProject {
        project_id: OTHER.into(),
        name: "other".into(),
        operator: false,
        ..Default::default()
    }));
    f.unlimited(OTHER);
}

fn state_of(f: &Fleet, ids: &[InstanceId]) -> Vec<InstanceState> {
    ids.iter().map(|i| f.instance(i).state).collect()
}

const HOUR: u32 = 3600;

#[test]
fn higher_classes_go_first_then_the_account_using_least_of_its_share() {
    let mut f = Fleet::new();
    other_account(&mut f);
    f.host("g", "r1", 8);
    // ACCOUNT already runs a job on half the host.
    let (_, running) = submit(&mut f, ACCOUNT, 1, 4, HOUR, pb::JobPriority::Normal);
    f.place();
    assert_eq!(state_of(&f, &running), [InstanceState::Scheduled]);

    // Room for one more 4-GPU job. ACCOUNT asks first, OTHER second: OTHER, using none of
    // its share, goes first. A low-priority job waits behind both.
    let (_, low) = submit(&mut f, OTHER, 1, 4, HOUR, pb::JobPriority::Low);
    let (mine, mine_ids) = submit(&mut f, ACCOUNT, 1, 4, HOUR, pb::JobPriority::Normal);
    let (theirs, theirs_ids) = submit(&mut f, OTHER, 1, 4, HOUR, pb::JobPriority::Normal);
    let before = standings(&f.state);
    assert_eq!((before[&theirs].position, before[&theirs].of), (1, 3));
    assert_eq!(before[&mine].position, 2);
    f.place();
    assert_eq!(state_of(&f, &theirs_ids), [InstanceState::Scheduled]);
    assert_eq!(state_of(&f, &mine_ids), [InstanceState::Pending]);
    assert_eq!(state_of(&f, &low), [InstanceState::Pending]);

    // A high-priority job jumps the queue.
    let (urgent, _) = submit(&mut f, ACCOUNT, 1, 4, HOUR, pb::JobPriority::High);
    let now = standings(&f.state);
    assert_eq!(now[&urgent].position, 1);
    assert_eq!(now[&mine].position, 2);
    // Both running jobs end an hour after they started: the urgent job is expected then.
    let first_end = f.instance(&running[0]).terminate_at_ms.unwrap();
    assert_eq!(now[&urgent].eta_ms, Some(first_end));
}

#[test]
fn a_gang_starts_whole_or_not_at_all() {
    let mut f = Fleet::new();
    f.host("a", "r1", 8);
    let (_, gang) = submit(&mut f, ACCOUNT, 2, 8, HOUR, pb::JobPriority::Normal);
    f.place();
    assert_eq!(state_of(&f, &gang), [InstanceState::Pending; 2]);
    let reason = f.instance(&gang[0]).pending_reason.clone().unwrap();
    assert!(
        reason.starts_with("job of 2 members, all or none: no host in par with 8×H100 free"),
        "{reason}"
    );
    assert!(
        f.state.usage(&"a".parse().unwrap()).gpus.is_empty(),
        "nothing half-placed"
    );

    f.host("b", "r1", 8);
    f.place();
    assert_eq!(state_of(&f, &gang), [InstanceState::Scheduled; 2]);
}

#[test]
fn apply_takes_back_a_gang_that_no_longer_fits_whole() {
    let mut f = Fleet::new();
    f.host("a", "r1", 8);
    f.host("b", "r1", 8);
    let (_, gang) = submit(&mut f, ACCOUNT, 2, 8, HOUR, pb::JobPriority::Normal);
    let plan = plan_pending(&f.state, true);
    assert_eq!(plan.placements.len(), 2);
    // Meanwhile an instance takes one of the hosts.
    let other = f.create(8, |_| {});
    f.apply(Body::PlaceInstances(pb::PlaceInstances {
        placements: vec![pb::Placement {
            instance_id: other.to_string(),
            node_id: plan.placements[1].1.node.to_string(),
            gpus: plan.placements[1]
                .1
                .gpus
                .iter()
                .map(ToString::to_string)
                .collect(),
        }],
        ..Default::default()
    }));
    f.apply(Body::PlaceInstances(plan.to_command()));
    assert_eq!(state_of(&f, &gang), [InstanceState::Pending; 2]);
    let used: usize = f.state.usage_by_node().values().map(|u| u.gpus.len()).sum();
    assert_eq!(used, 8, "only the other instance's GPUs are bound");
    // A plan with only part of a gang is refused whole too.
    let mut partial = plan_pending(&f.state, true);
    partial.placements.truncate(1);
    f.apply(Body::PlaceInstances(partial.to_command()));
    assert_eq!(state_of(&f, &gang), [InstanceState::Pending; 2]);
}

#[test]
fn backfill_runs_only_what_ends_before_the_blocked_job_starts() {
    let mut f = Fleet::new();
    f.host("g", "r1", 8);
    let (_, running) = submit(&mut f, ACCOUNT, 1, 4, HOUR, pb::JobPriority::Normal);
    f.place();
    let ends = f.instance(&running[0]).terminate_at_ms.unwrap();
    assert_eq!(ends, f.at + i64::from(HOUR) * 1000);

    let (big, big_ids) = submit(&mut f, ACCOUNT, 1, 8, HOUR, pb::JobPriority::Normal);
    let (_, long) = submit(&mut f, ACCOUNT, 1, 4, 2 * HOUR, pb::JobPriority::Normal);
    let (_, short) = submit(&mut f, ACCOUNT, 1, 4, HOUR / 2, pb::JobPriority::Normal);
    f.place();
    assert_eq!(state_of(&f, &big_ids), [InstanceState::Pending]);
    assert_eq!(
        state_of(&f, &short),
        [InstanceState::Scheduled],
        "backfilled"
    );
    assert_eq!(state_of(&f, &long), [InstanceState::Pending]);
    let reason = f.instance(&long[0]).pending_reason.clone().unwrap();
    assert!(
        reason.contains(&format!("queued behind job {big}")),
        "{reason}"
    );
    assert_eq!(standings(&f.state)[&big].eta_ms, Some(ends));

    // At the end of their maximum run time jobs are stopped; the big job then starts.
    f.at = ends;
    let (_, due) = f.state.notices_ending(f.at);
    assert_eq!(due.len(), 2, "the first job and the backfilled one");
    f.apply(Body::ReclaimInstances(pb::ReclaimInstances {
        instance_ids: due.iter().map(ToString::to_string).collect(),
    }));
    let stopped = f.instance(&running[0]);
    assert_eq!(stopped.state, InstanceState::Deleting);
    assert!(
        stopped
            .status_message
            .as_deref()
            .unwrap()
            .contains("maximum run time"),
        "{stopped:?}"
    );
    for id in due {
        let node = f.instance(&id).node.clone().unwrap();
        f.observe(&node, &id, pb::ObservedState::Absent);
    }
    f.place();
    assert_eq!(state_of(&f, &big_ids), [InstanceState::Scheduled]);
}

fn spot(c: &mut pb::CreateInstance) {
    c.market = pb::Market::Spot as i32;
    c.preemption_notice_s = 60;
}

#[test]
fn spot_jobs_give_way_to_on_demand_jobs_and_come_back_whole() {
    let mut f = Fleet::new();
    let hosts = [f.host("a", "r1", 4), f.host("b", "r2", 4)];
    // A spot gang of 2 × 4 GPUs fills both hosts.
    let c = job_of(ACCOUNT, 2, 4, HOUR, pb::JobPriority::Normal, spot);
    let (spot_job, spot_ids) = submit_command(&mut f, c).unwrap();
    f.place();
    assert_eq!(state_of(&f, &spot_ids), [InstanceState::Scheduled; 2]);

    // An on-demand job of 4 GPUs cannot fit: one spot member is preempted for it, and the
    // whole spot gang gets the same notice (it runs all together or not at all).
    let (od, od_ids) = submit(&mut f, ACCOUNT, 1, 4, HOUR, pb::JobPriority::Low);
    let plan = plan_pending(&f.state, true);
    assert_eq!(plan.preemptions.len(), 1, "{plan:?}");
    f.apply(Body::PlaceInstances(plan.to_command()));
    let deadline = f.at + 60_000;
    for id in &spot_ids {
        let m = f.instance(id);
        assert_eq!(m.terminate_at_ms, Some(deadline), "{m:?}");
        assert!(
            m.notices
                .iter()
                .any(|n| n.message.contains("spot capacity reclaimed")),
            "{m:?}"
        );
    }
    let waiting = f.instance(&od_ids[0]);
    assert!(
        waiting
            .pending_reason
            .as_deref()
            .unwrap()
            .starts_with("waiting for 1 spot instance(s)"),
        "{waiting:?}"
    );
    // While they leave, nothing more is preempted.
    assert!(plan_pending(&f.state, true).preemptions.is_empty());

    // The notice runs out: both members stop.
    f.at = deadline;
    let (_, due) = f.state.notices_ending(f.at);
    assert_eq!(due.len(), 2);
    f.apply(Body::ReclaimInstances(pb::ReclaimInstances {
        instance_ids: due.iter().map(ToString::to_string).collect(),
    }));
    for id in &spot_ids {
        let m = f.instance(id);
        assert_eq!(m.state, InstanceState::Deleting);
        assert!(
            m.status_message
                .as_deref()
                .unwrap()
                .contains("queued again"),
            "{m:?}"
        );
    }
    // One member is gone: the on-demand job starts; the spot job waits for its other member.
    let node_of = |f: &Fleet, id: &InstanceId| f.instance(id).node.clone().unwrap();
    let (n0, n1) = (node_of(&f, &spot_ids[0]), node_of(&f, &spot_ids[1]));
    assert!(hosts.contains(&n0) && hosts.contains(&n1));
    f.observe(&n0, &spot_ids[0], pb::ObservedState::Absent);
    assert_eq!(f.instance(&spot_ids[0]).state, InstanceState::Pending);
    f.place();
    assert_eq!(state_of(&f, &od_ids), [InstanceState::Scheduled]);
    assert!(!standings(&f.state).contains_key(&spot_job));
    // Both gone: the spot job is queued again, whole, behind nothing but the room it needs.
    f.observe(&n1, &spot_ids[1], pb::ObservedState::Absent);
    f.place();
    assert_eq!(state_of(&f, &spot_ids), [InstanceState::Pending; 2]);
    let standing = standings(&f.state)[&spot_job];
    assert_eq!(standing.position, 1);
    // It starts again once the on-demand job is done.
    f.apply(Body::DeleteInstance(pb::DeleteInstance {
        instance_id: od_ids[0].to_string(),
        project_id: ACCOUNT.into(),
    }));
    f.observe(&n0, &od_ids[0], pb::ObservedState::Absent);
    f.place();
    assert_eq!(state_of(&f, &spot_ids), [InstanceState::Scheduled; 2]);
    let _ = od;
}

#[test]
fn a_reserved_job_runs_on_its_slots_and_is_admitted_whole_or_not_at_all() {
    use vmcloud_proto::ReservationId;
    let mut f = Fleet::new();
    f.host("a", "r1", 8);
    f.host("b", "r2", 8);
    let mut req = pb::CreateReservation {
        reservation_id: ReservationId::generate().to_string(),
        project_id: ACCOUNT.into(),
        region: "par".into(),
        flavor: "gpu-h100-4".into(),
        vcpus: 4,
        memory_mib: 8192,
        gpu_model: "H100".into(),
        gpu_count: 4,
        start_unix_ms: 0,
        end_unix_ms: f.at + 86_400_000,
        count: 3,
        ..Default::default()
    };
    req.slot_nodes = vmcloud_scheduler::reservations::apply::plan_reservation(&f.state, &req)
        .unwrap()
        .into_iter()
        .map(|n| n.to_string())
        .collect();
    let rid = req.reservation_id.clone();
    f.apply(Body::CreateReservation(req));
    let reserved = |c: &mut pb::CreateInstance| {
        c.market = pb::Market::Reserved as i32;
        c.reservation_id = rid.clone();
        c.flavor = "gpu-h100-4".into();
    };
    // On-demand work takes the capacity that is not held: 2 × 4 GPUs are left, 12 held.
    let (_, od) = submit(&mut f, ACCOUNT, 1, 4, HOUR, pb::JobPriority::High);
    let c = job_of(ACCOUNT, 2, 4, HOUR, pb::JobPriority::Normal, reserved);
    let (_, members) = submit_command(&mut f, c).unwrap();
    f.place();
    assert_eq!(state_of(&f, &od), [InstanceState::Scheduled]);
    assert_eq!(state_of(&f, &members), [InstanceState::Scheduled; 2]);
    let r = &f.state.reservations[&ReservationId::parse(&rid).unwrap()];
    let bound: Vec<_> = r.slots.iter().filter_map(|s| s.instance.clone()).collect();
    assert_eq!(bound.len(), 2);
    assert!(members.iter().all(|m| bound.contains(m)));
    f.state.check_reservations_backed().unwrap();

    // A second reserved job of 2 needs 2 slots; 1 is free: refused, nothing created.
    let before = f.state.instances.len();
    let c = job_of(ACCOUNT, 2, 4, HOUR, pb::JobPriority::Normal, reserved);
    let refused = submit_command(&mut f, c).unwrap_err();
    assert!(refused.to_string().contains("slots"), "{refused}");
    assert_eq!(f.state.instances.len(), before);
    let r = &f.state.reservations[&ReservationId::parse(&rid).unwrap()];
    assert_eq!(r.instances.len(), 2, "the refused job holds no slot");
}
