//! AI job queues: priority classes, fair share, gangs all-or-nothing (in the plan and in
//! apply), backfill behind a blocked job, maximum run time, position and estimated start.

use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{InstanceId, JobId};
use vmcloud_scheduler::placement::plan_pending;
use vmcloud_scheduler::queue::standings;
use vmcloud_scheduler::state::InstanceState;

use crate::fleet::{ACCOUNT, Fleet};

const OTHER: &str = "acct-other";

/// Submits a job of `members` × `gpus` H100s; gives its id and its members.
fn submit(
    f: &mut Fleet,
    account: &str,
    members: u32,
    gpus: u32,
    runtime_s: u32,
    priority: pb::JobPriority,
) -> (JobId, Vec<InstanceId>) {
    let job = JobId::generate();
    let ids: Vec<InstanceId> = (0..members).map(|_| InstanceId::generate()).collect();
    f.apply(Body::CreateJob(pb::CreateJob {
        members: ids
            .iter()
            .enumerate()
            .map(|(n, id)| pb::CreateInstance {
                instance_id: id.to_string(),
                account_id: account.into(),
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
                    member: n as u32,
                }),
                ..Default::default()
            })
            .collect(),
    }));
    f.at += 1;
    (job, ids)
}

fn other_account(f: &mut Fleet) {
    f.apply(Body::CreateAccount(pb::CreateAccount {
        account_id: OTHER.into(),
        name: "other".into(),
        operator: false,
    }));
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
            gpus: plan.placements[1].1.gpus.clone(),
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
