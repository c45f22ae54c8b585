//! Game sessions: launch queues served VIP first, then Priority+, then standard (in order
//! within a tier); one session per project; position and estimated start from the ends of
//! running sessions; a session ends at its tier's length.

use vmcloud_proto::InstanceId;
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_scheduler::instances::types::InstanceState;
use vmcloud_scheduler::nodes::liveness::LivenessConfig;
use vmcloud_scheduler::sessions::queue::standings;
use vmcloud_scheduler::state::Rejected;

use crate::fleet::Fleet;

/// A project with a gaming tier.
fn gamer(f: &mut Fleet, id: &str, tier: pb::SessionTier) {
    f.apply(Body::CreateProject(pb::CreateProject {
        project_id: id.into(),
        name: id.into(),
        operator: false,
        ..Default::default()
    }));
    f.unlimited(id);
    f.apply(Body::UpdateProject(pb::UpdateProject {
        project_id: id.into(),
        share_weight: None,
        gaming_tier: Some(tier as i32),
    }));
}

/// Launches a one-GPU session for `project` at its tier.
fn launch(f: &mut Fleet, project: &str, tier: pb::SessionTier) -> Result<InstanceId, Rejected> {
    let id = InstanceId::generate();
    let r = f.try_apply(Body::CreateInstance(pb::CreateInstance {
        instance_id: id.to_string(),
        project_id: project.into(),
        name: "game".into(),
        region: "par".into(),
        vcpus: 8,
        memory_mib: 16384,
        gpu_model: "H100".into(),
        gpu_count: 1,
        session: Some(pb::GameSession {
            tier: tier as i32,
            title: "chess".into(),
            ..Default::default()
        }),
        ..Default::default()
    }));
    f.at += 1;
    r.map(|_| id)
}

#[test]
fn launches_queue_vip_first_and_know_their_place_and_start() {
    let mut f = Fleet::new();
    let host = f.host("h1", "r1", 2);
    for (id, tier) in [
        ("prj-s1", pb::SessionTier::Standard),
        ("prj-s2", pb::SessionTier::Standard),
        ("prj-s3", pb::SessionTier::Standard),
        ("prj-p1", pb::SessionTier::PriorityPlus),
        ("prj-v1", pb::SessionTier::Vip),
    ] {
        gamer(&mut f, id, tier);
    }
    // Two standard sessions take both GPUs.
    let s1 = launch(&mut f, "prj-s1", pb::SessionTier::Standard).unwrap();
    let s2 = launch(&mut f, "prj-s2", pb::SessionTier::Standard).unwrap();
    f.place();
    for id in [&s1, &s2] {
        assert_eq!(f.instance(id).state, InstanceState::Scheduled);
        // A standard session lasts at most an hour.
        assert_eq!(f.instance(id).terminate_at_ms.unwrap(), f.at + 3_600_000);
    }
    // Then a standard, a Priority+ and a VIP gamer launch, in that order.
    let s3 = launch(&mut f, "prj-s3", pb::SessionTier::Standard).unwrap();
    let p1 = launch(&mut f, "prj-p1", pb::SessionTier::PriorityPlus).unwrap();
    let v1 = launch(&mut f, "prj-v1", pb::SessionTier::Vip).unwrap();
    f.place();
    let st = standings(&f.state);
    let order: Vec<(u32, u32)> = [&v1, &p1, &s3]
        .iter()
        .map(|id| (st[*id].position, st[*id].of))
        .collect();
    assert_eq!(order, [(1, 3), (2, 3), (3, 3)], "VIP, Priority+, standard");
    // Estimates: the VIP starts when the first standard session ends (its hour is up), the
    // Priority+ when the second does, the standard when the Priority+ session's 6 hours are
    // over (before the VIP's 8).
    let first_end = f.instance(&s1).terminate_at_ms.unwrap();
    let second_end = f.instance(&s2).terminate_at_ms.unwrap();
    assert_eq!(st[&v1].eta_ms, Some(first_end));
    assert_eq!(st[&p1].eta_ms, Some(second_end));
    assert_eq!(st[&s3].eta_ms, Some(second_end + 6 * 3_600_000));
    assert!(
        f.instance(&v1)
            .pending_reason
            .as_deref()
            .unwrap()
            .starts_with("no host in par with 1×H100 free"),
        "{:?}",
        f.instance(&v1).pending_reason
    );

    // A gamer ends the first session: the VIP gets the GPU, not the earlier standard launch.
    f.apply(Body::DeleteInstance(pb::DeleteInstance {
        instance_id: s2.to_string(),
        project_id: "prj-s2".into(),
    }));
    f.observe(&host, &s2, pb::ObservedState::Absent);
    f.place();
    assert_eq!(f.instance(&v1).state, InstanceState::Scheduled);
    assert_eq!(f.instance(&p1).state, InstanceState::Pending);
    assert_eq!(f.instance(&s3).state, InstanceState::Pending);

    // The standard session that reaches its hour is ended, with the reason.
    f.at = first_end;
    let (_, due) = f.state.notices_ending(f.at);
    assert_eq!(due, vec![s1.clone()]);
    f.apply(Body::ReclaimInstances(pb::ReclaimInstances {
        instance_ids: due.iter().map(ToString::to_string).collect(),
    }));
    assert_eq!(f.instance(&s1).state, InstanceState::Deleting);
    assert_eq!(
        f.instance(&s1).status_message.as_deref(),
        Some("ended: standard sessions last at most 1 h")
    );
    f.observe(&host, &s1, pb::ObservedState::Absent);
    f.place();
    assert_eq!(f.instance(&p1).state, InstanceState::Scheduled);
}

#[test]
fn one_session_per_account_and_never_a_job_member() {
    let mut f = Fleet::new();
    f.host("h1", "r1", 4);
    gamer(&mut f, "prj-g", pb::SessionTier::Standard);
    let first = launch(&mut f, "prj-g", pb::SessionTier::Standard).unwrap();
    let again = launch(&mut f, "prj-g", pb::SessionTier::Standard).unwrap_err();
    assert!(
        matches!(&again, Rejected::Conflict(m) if m.contains(&format!("already has session {first}"))),
        "{again}"
    );
    f.place();
    assert!(launch(&mut f, "prj-g", pb::SessionTier::Standard).is_err());
    // Once ended and gone, the gamer may launch again.
    let node = f.instance(&first).node.clone().unwrap();
    f.apply(Body::DeleteInstance(pb::DeleteInstance {
        instance_id: first.to_string(),
        project_id: "prj-g".into(),
    }));
    let ending = launch(&mut f, "prj-g", pb::SessionTier::Standard).unwrap_err();
    assert!(ending.to_string().contains("still ending"), "{ending}");
    f.observe(&node, &first, pb::ObservedState::Absent);
    launch(&mut f, "prj-g", pb::SessionTier::Standard).unwrap();

    // A session is never a job member.
    gamer(&mut f, "prj-h", pb::SessionTier::Vip);
    let member = f.try_apply(Body::CreateJob(pb::CreateJob {
        members: vec![pb::CreateInstance {
            instance_id: InstanceId::generate().to_string(),
            project_id: "prj-h".into(),
            region: "par".into(),
            vcpus: 1,
            memory_mib: 1024,
            session: Some(pb::GameSession {
                tier: pb::SessionTier::Vip as i32,
                title: "chess".into(),
                ..Default::default()
            }),
            job: Some(pb::JobSpec {
                job_id: vmcloud_proto::JobId::generate().to_string(),
                max_runtime_s: 3600,
                gang_size: 1,
                ..Default::default()
            }),
            ..Default::default()
        }],
    }));
    assert!(matches!(member, Err(Rejected::Invalid(_))), "{member:?}");
}

#[test]
fn a_spot_session_gives_its_gpu_to_an_on_demand_launch_with_notice() {
    let mut f = Fleet::new();
    let host = f.host("h1", "r1", 1);
    gamer(&mut f, "prj-cheap", pb::SessionTier::Standard);
    gamer(&mut f, "prj-full", pb::SessionTier::Standard);
    let cheap = InstanceId::generate();
    f.apply(Body::CreateInstance(pb::CreateInstance {
        instance_id: cheap.to_string(),
        project_id: "prj-cheap".into(),
        region: "par".into(),
        vcpus: 8,
        memory_mib: 16384,
        gpu_model: "H100".into(),
        gpu_count: 1,
        market: pb::Market::Spot as i32,
        preemption_notice_s: 30,
        session: Some(pb::GameSession {
            tier: pb::SessionTier::Standard as i32,
            title: "chess".into(),
            ..Default::default()
        }),
        ..Default::default()
    }));
    f.place();
    assert_eq!(f.instance(&cheap).state, InstanceState::Scheduled);
    let full = launch(&mut f, "prj-full", pb::SessionTier::Standard).unwrap();
    f.place();
    let notice_ends = f.at + 30_000;
    assert_eq!(f.instance(&cheap).terminate_at_ms, Some(notice_ends));
    assert!(
        f.instance(&full)
            .pending_reason
            .as_deref()
            .unwrap()
            .starts_with("waiting for 1 spot")
    );
    f.at = notice_ends;
    let (_, due) = f.state.notices_ending(f.at);
    assert_eq!(due, vec![cheap.clone()]);
    f.apply(Body::ReclaimInstances(pb::ReclaimInstances {
        instance_ids: due.iter().map(ToString::to_string).collect(),
    }));
    assert_eq!(
        f.instance(&cheap).status_message.as_deref(),
        Some("ended: its spot capacity was needed")
    );
    f.observe(&host, &cheap, pb::ObservedState::Absent);
    f.place();
    assert_eq!(f.instance(&full).state, InstanceState::Scheduled);
}

#[test]
fn a_latency_target_picks_the_region_within_it_where_the_launch_starts_first() {
    use vmcloud_scheduler::sessions::queue::choose_region;
    use vmcloud_scheduler::sessions::types::{LatencyTarget, SessionTier};
    let mut f = Fleet::new();
    let par = f.host_in("par", "p1", "r1", 1);
    f.host_in("fra", "f1", "r2", 1);
    gamer(&mut f, "prj-a", pb::SessionTier::Standard);
    let a = launch(&mut f, "prj-a", pb::SessionTier::Standard).unwrap();
    f.place();
    assert_eq!(
        f.instance(&a).node.as_ref(),
        Some(&par),
        "Paris is full now"
    );
    let a_ends = f.instance(&a).terminate_at_ms.unwrap();
    let target = |max_ms| LatencyTarget {
        max_ms,
        rtt_ms: vec![("par".into(), 9), ("fra".into(), 21), ("ams".into(), 26)],
    };
    let choose = |f: &Fleet, max_ms, tier| {
        choose_region(&f.state, &target(max_ms), |_| true, "H100", 1, None, tier)
    };
    // Frankfurt is within 25 ms and has a GPU free now; Paris is nearer but full.
    assert_eq!(
        choose(&f, 25, SessionTier::Standard),
        Some(("fra".into(), 21, Some(f.at)))
    );
    // Within 10 ms only Paris: the launch waits there for the running session's end.
    assert_eq!(
        choose(&f, 10, SessionTier::Standard),
        Some(("par".into(), 9, Some(a_ends)))
    );
    // A region the caller closes is never chosen; nothing within 5 ms.
    assert_eq!(
        choose_region(
            &f.state,
            &target(25),
            |r| r != "fra",
            "H100",
            1,
            None,
            SessionTier::Standard
        ),
        Some(("par".into(), 9, Some(a_ends)))
    );
    assert_eq!(choose(&f, 5, SessionTier::Standard), None);
    // Amsterdam has no H100 at all: no start can be told there, so it is never preferred.
    assert_eq!(
        choose_region(
            &f.state,
            &target(30),
            |r| r == "ams" || r == "par",
            "H100",
            1,
            None,
            SessionTier::Standard
        ),
        Some(("par".into(), 9, Some(a_ends)))
    );
}

/// A normal-priority job in par of `members` members of 2 H100s each (so one per host); its
/// members' ids.
fn gpu_job(f: &mut Fleet, members: u32) -> Vec<InstanceId> {
    let job = vmcloud_proto::JobId::generate();
    let ids: Vec<InstanceId> = (0..members).map(|_| InstanceId::generate()).collect();
    f.apply(Body::CreateJob(pb::CreateJob {
        members: ids
            .iter()
            .enumerate()
            .map(|(n, id)| pb::CreateInstance {
                instance_id: id.to_string(),
                project_id: crate::fleet::ACCOUNT.into(),
                region: "par".into(),
                vcpus: 4,
                memory_mib: 8192,
                gpu_model: "H100".into(),
                gpu_count: 2,
                job: Some(pb::JobSpec {
                    job_id: job.to_string(),
                    priority: pb::JobPriority::Normal as i32,
                    max_runtime_s: 3600,
                    gang_size: members,
                    member: n as u32,
                }),
                ..Default::default()
            })
            .collect(),
    }));
    ids
}

#[test]
fn a_lost_host_ends_its_sessions_and_requeues_its_jobs_whole() {
    let mut f = Fleet::new();
    for h in ["a", "b", "c", "d"] {
        f.host(h, h, 2);
    }
    gamer(&mut f, "prj-g", pb::SessionTier::Standard);
    // A job of 2 members of 2 GPUs each (so on two hosts), and a session on a third.
    let members = gpu_job(&mut f, 2);
    f.place();
    let session = launch(&mut f, "prj-g", pb::SessionTier::Standard).unwrap();
    f.place();
    let host_of = |f: &Fleet, id: &InstanceId| f.instance(id).node.clone().unwrap();
    let (m0, m1, s) = (
        host_of(&f, &members[0]),
        host_of(&f, &members[1]),
        host_of(&f, &session),
    );
    assert!(m0 != m1 && s != m0 && s != m1);

    // The host of one member is lost: every member goes back to the queue (the one on the
    // healthy host too), and the job starts again, whole, elsewhere.
    f.set_state(&m0, pb::NodeState::Down, 0);
    for m in &members {
        let i = f.instance(m);
        assert_eq!(i.state, InstanceState::Pending, "{m}");
        assert!(i.gpus.is_empty() && i.terminate_at_ms.is_none());
        assert!(
            i.pending_reason
                .as_deref()
                .unwrap()
                .starts_with("requeued: host"),
            "{:?}",
            i.pending_reason
        );
    }
    f.place();
    for m in &members {
        let i = f.instance(m);
        assert_eq!(i.state, InstanceState::Scheduled, "{m} placed again");
        assert_ne!(i.node.as_ref(), Some(&m0));
    }
    assert_eq!(f.instance(&session).state, InstanceState::Scheduled);

    // The session's host is lost: the session is over, with the reason.
    f.set_state(&s, pb::NodeState::Down, 0);
    assert_eq!(f.instance(&session).state, InstanceState::Deleting);
    assert!(
        f.instance(&session)
            .notices
            .last()
            .unwrap()
            .message
            .contains("this session has ended"),
        "{:?}",
        f.instance(&session).notices
    );
}

/// What the leader's liveness tracker proposes: down because the agent went silent.
fn silent_down(f: &mut Fleet, node: &vmcloud_proto::NodeId) {
    f.apply(Body::SetNodeState(pb::SetNodeState {
        node_id: node.to_string(),
        state: pb::NodeState::Down as i32,
        reason: "no heartbeat from its agent for 60 s".into(),
        deadline_unix_ms: 0,
        by_liveness: true,
    }));
}

/// What the leader proposes for each host whose workloads' lost_after ran out.
fn lose_what_is_lost(f: &mut Fleet, config: &LivenessConfig) -> Vec<String> {
    let lost = vmcloud_scheduler::nodes::liveness::lost_now(&f.state, config, f.at);
    let mut ids = Vec::new();
    for (node, instances, reason) in lost {
        ids.extend(instances.iter().cloned());
        f.apply(Body::LoseInstances(pb::LoseInstances {
            node_id: node.to_string(),
            instance_ids: instances,
            reason,
        }));
    }
    ids
}

#[test]
fn a_silent_host_keeps_its_jobs_until_their_lost_after_and_one_copy_survives() {
    let mut f = Fleet::new();
    for h in ["a", "b", "c"] {
        f.host(h, h, 2);
    }
    gamer(&mut f, "prj-g", pb::SessionTier::Standard);
    let member = gpu_job(&mut f, 1).remove(0);
    let vps = f.create(0, |_| {});
    f.place();
    let host = f.instance(&member).node.clone().unwrap();
    let config = LivenessConfig {
        job_lost_after: std::time::Duration::from_secs(300),
        session_lost_after: std::time::Duration::ZERO,
        ..Default::default()
    };

    // Declared down for silence: the job waits for its host (VPS never move).
    silent_down(&mut f, &host);
    assert_eq!(f.instance(&member).node.as_ref(), Some(&host));
    assert_eq!(f.instance(&member).state, InstanceState::Scheduled);
    assert!(
        f.instance(&member)
            .notices
            .last()
            .unwrap()
            .message
            .contains("lost unless its host comes back"),
        "{:?}",
        f.instance(&member).notices
    );
    f.at += 299_000;
    assert!(lose_what_is_lost(&mut f, &config).is_empty(), "not yet");

    // The host comes back within lost_after: nothing was lost, nothing is duplicated.
    f.set_state(&host, pb::NodeState::Ready, 0);
    f.at += 10_000;
    assert!(lose_what_is_lost(&mut f, &config).is_empty());
    assert_eq!(f.instance(&member).node.as_ref(), Some(&host));
    let desired = f.state.desired_config(&host).unwrap();
    assert!(
        desired
            .instances
            .iter()
            .any(|i| i.instance_id == member.to_string())
    );

    // Silent again, past lost_after: the job is requeued and placed elsewhere; the host's
    // desired config drops it, so when it comes back its agent removes the old copy.
    silent_down(&mut f, &host);
    f.at += 300_000;
    assert_eq!(lose_what_is_lost(&mut f, &config), vec![member.to_string()]);
    assert_eq!(f.instance(&member).state, InstanceState::Pending);
    f.place();
    let elsewhere = f.instance(&member).node.clone().unwrap();
    assert_ne!(elsewhere, host);
    f.set_state(&host, pb::NodeState::Ready, 0);
    let on: Vec<String> = ["a", "b", "c"]
        .iter()
        .flat_map(|h| {
            f.state
                .desired_config(&vmcloud_proto::NodeId::parse(h).unwrap())
                .unwrap()
                .instances
        })
        .map(|i| i.instance_id)
        .filter(|i| *i == member.to_string())
        .collect();
    assert_eq!(
        on.len(),
        1,
        "exactly one copy of the job is wanted anywhere"
    );
    // A stale LoseInstances (the host came back first) changes nothing.
    f.apply(Body::LoseInstances(pb::LoseInstances {
        node_id: elsewhere.to_string(),
        instance_ids: vec![member.to_string()],
        reason: "stale".into(),
    }));
    assert_eq!(f.instance(&member).node.as_ref(), Some(&elsewhere));

    // A session's lost_after is 0: it ends as soon as its host is declared down; an
    // operator's confirmation loses what still waits at once; the VPS stays, impaired.
    let session = launch(&mut f, "prj-g", pb::SessionTier::Standard).unwrap();
    f.place();
    let s_host = f.instance(&session).node.clone().unwrap();
    silent_down(&mut f, &s_host);
    assert_eq!(
        lose_what_is_lost(&mut f, &config),
        vec![session.to_string()]
    );
    assert_eq!(f.instance(&session).state, InstanceState::Deleting);

    let job_host = f.instance(&member).node.clone().unwrap();
    silent_down(&mut f, &job_host);
    assert_eq!(f.instance(&member).state, InstanceState::Scheduled);
    f.set_state(&job_host, pb::NodeState::Down, 0);
    assert_eq!(
        f.instance(&member).state,
        InstanceState::Pending,
        "an operator's down loses it at once"
    );
    let v = f.instance(&vps);
    if v.node.as_ref() == Some(&job_host) || v.node.as_ref() == Some(&s_host) {
        assert_eq!(v.state, InstanceState::Impaired);
    }
}
