use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{InstanceId, NodeId, ProjectId};

use crate::instances::types::InstanceState;
use crate::state::replicated::SharedState;
use crate::state::{Applied, ClusterState, Rejected};

pub(crate) fn cmd(at: i64, body: Body) -> pb::Command {
    pb::Command {
        actor: None,
        request: None,
        at_unix_ms: at,
        body: Some(body),
    }
}

fn state_with_node() -> (ClusterState, ProjectId, NodeId) {
    let mut s = ClusterState::default();
    let project = ProjectId::parse("prj-1").unwrap();
    let node = NodeId::parse("host-a").unwrap();
    s.apply(
        1,
        cmd(
            1,
            Body::CreateProject(pb::CreateProject {
                project_id: project.to_string(),
                name: "a".into(),
                operator: false,
                ..Default::default()
            }),
        ),
    )
    .unwrap();
    s.apply(
        2,
        cmd(
            2,
            Body::RegisterNode(pb::RegisterNode {
                node_id: node.to_string(),
                inventory: Some(pb::HostInventory {
                    region: "par".into(),
                    cpu_threads: 1,
                    memory_bytes: 3 * 1024 * 1024 * 1024,
                    ..Default::default()
                }),
                build: None,
            }),
        ),
    )
    .unwrap();
    (s, project, node)
}

fn create(s: &mut ClusterState, project: &ProjectId, memory_mib: u64) -> InstanceId {
    let id = InstanceId::generate();
    s.apply(
        10,
        cmd(
            10,
            Body::CreateInstance(pb::CreateInstance {
                instance_id: id.to_string(),
                project_id: project.to_string(),
                name: "web".into(),
                region: "par".into(),
                vcpus: 1,
                memory_mib,
                ..Default::default()
            }),
        ),
    )
    .unwrap();
    id
}

fn place(s: &mut ClusterState, id: &InstanceId, node: &NodeId) {
    s.apply(
        11,
        cmd(
            11,
            Body::PlaceInstances(pb::PlaceInstances {
                placements: vec![pb::Placement {
                    instance_id: id.to_string(),
                    node_id: node.to_string(),
                    gpus: vec![],
                }],
                unplaced: vec![],
                preemptions: vec![],
            }),
        ),
    )
    .unwrap();
}

fn observe(s: &mut ClusterState, node: &NodeId, id: &InstanceId, state: pb::ObservedState) {
    s.apply(
        12,
        cmd(
            12,
            Body::ObserveInstances(pb::ObserveInstances {
                node_id: node.to_string(),
                instances: vec![pb::InstanceStatus {
                    instance_id: id.to_string(),
                    state: state as i32,
                    message: String::new(),
                }],
            }),
        ),
    )
    .unwrap();
}

#[test]
fn snapshot_restores_the_same_state() {
    use vmcloud_consensus::StateMachine;
    let (mut s, project, node) = state_with_node();
    let id = create(&mut s, &project, 1024);
    place(&mut s, &id, &node);
    s.apply(
        20,
        cmd(
            20,
            Body::CreateInstance(pb::CreateInstance {
                instance_id: InstanceId::generate().to_string(),
                project_id: project.to_string(),
                ..Default::default()
            }),
        ),
    )
    .unwrap();
    s.apply(
        21,
        cmd(
            21,
            Body::AddApiKey(pb::AddApiKey {
                project_id: project.to_string(),
                key_id: "0011223344556677".into(),
                secret_sha256: vec![7; 32],
                ..Default::default()
            }),
        ),
    )
    .unwrap();
    let original = SharedState::new(s);
    let mut copy = SharedState::default();
    copy.restore(&original.snapshot()).unwrap();
    assert_eq!(*copy.read(), *original.read());
    assert!(
        copy.read()
            .authenticate("0011223344556677", &[7; 32])
            .is_some(),
        "API key hashes survive"
    );
    assert!(copy.restore(b"not json").is_err());
}

#[test]
fn lifecycle_create_place_run_delete() {
    let (mut s, project, node) = state_with_node();
    let id = create(&mut s, &project, 1024);
    assert_eq!(s.instances[&id].state, InstanceState::Pending);
    place(&mut s, &id, &node);
    assert_eq!(s.instances[&id].state, InstanceState::Scheduled);
    assert_eq!(s.nodes[&node].generation, 1);
    assert_eq!(s.desired_config(&node).unwrap().instances.len(), 1);

    observe(&mut s, &node, &id, pb::ObservedState::Running);
    assert_eq!(s.instances[&id].state, InstanceState::Running);
    assert_eq!(s.instances[&id].running_at_ms, Some(12));

    s.apply(
        13,
        cmd(
            13,
            Body::DeleteInstance(pb::DeleteInstance {
                instance_id: id.to_string(),
                project_id: project.to_string(),
            }),
        ),
    )
    .unwrap();
    assert_eq!(s.instances[&id].state, InstanceState::Deleting);
    assert_eq!(s.nodes[&node].generation, 2);
    assert!(s.desired_config(&node).unwrap().instances.is_empty());
    observe(&mut s, &node, &id, pb::ObservedState::Absent);
    assert!(!s.instances.contains_key(&id));
}

#[test]
fn placement_that_no_longer_fits_is_dropped() {
    let (mut s, project, node) = state_with_node();
    // 3 GiB host, 1 GiB reserved: room for 2048 MiB.
    let a = create(&mut s, &project, 1536);
    let b = create(&mut s, &project, 1024);
    place(&mut s, &a, &node);
    place(&mut s, &b, &node);
    assert_eq!(s.instances[&a].state, InstanceState::Scheduled);
    assert_eq!(s.instances[&b].state, InstanceState::Pending);
    assert_eq!(s.usage(&node).memory_mib, 1536);
}

#[test]
fn agent_cannot_report_for_another_node() {
    let (mut s, project, node) = state_with_node();
    let id = create(&mut s, &project, 512);
    place(&mut s, &id, &node);
    let other = NodeId::parse("host-b").unwrap();
    observe(&mut s, &other, &id, pb::ObservedState::Failed);
    assert_eq!(s.instances[&id].state, InstanceState::Scheduled);
}

fn keyed(at: i64, key: &str, fingerprint: &[u8], seq: u32, who: &str, body: Body) -> pb::Command {
    pb::Command {
        actor: Some(pb::Actor {
            who: Some(pb::actor::Who::ApiKeyId(who.into())),
            ..Default::default()
        }),
        request: Some(pb::Request {
            id: format!("req-{at}"),
            idempotency_key: key.into(),
            fingerprint: fingerprint.to_vec(),
            seq,
        }),
        at_unix_ms: at,
        body: Some(body),
    }
}

/// `state_with_node` with two API keys (`key-a`, `key-b`) that may deploy in its project.
fn state_with_keys() -> (ClusterState, ProjectId) {
    let (mut s, project, _) = state_with_node();
    for (n, key) in ["key-a", "key-b"].into_iter().enumerate() {
        s.apply(
            3 + n as u64,
            cmd(
                3,
                Body::AddApiKey(pb::AddApiKey {
                    project_id: project.to_string(),
                    key_id: key.into(),
                    secret_sha256: vec![n as u8; 32],
                    name: key.into(),
                    ..Default::default()
                }),
            ),
        )
        .unwrap();
    }
    (s, project)
}

fn new_instance(project: &ProjectId) -> Body {
    Body::CreateInstance(pb::CreateInstance {
        instance_id: InstanceId::generate().to_string(),
        project_id: project.to_string(),
        ..Default::default()
    })
}

#[test]
fn idempotency_key_returns_the_first_instance() {
    let (mut s, project) = state_with_keys();
    let mut first = None;
    for at in [5, 6] {
        let r = s
            .apply(
                at as u64,
                keyed(at, "k1", b"fp", 0, "key-a", new_instance(&project)),
            )
            .unwrap();
        let Applied::Instance(i) = r else {
            panic!("expected an instance")
        };
        first.get_or_insert(i.id.clone());
        assert_eq!(Some(&i.id), first.as_ref());
    }
    assert_eq!(s.instances.len(), 1);
    // Another principal's key of the same name is its own.
    s.apply(7, keyed(7, "k1", b"fp", 0, "key-b", new_instance(&project)))
        .unwrap();
    assert_eq!(s.instances.len(), 2);
}

#[test]
fn idempotency_key_with_another_request_is_refused() {
    let (mut s, project) = state_with_keys();
    s.apply(5, keyed(5, "k", b"fp1", 0, "key-a", new_instance(&project)))
        .unwrap();
    let err = s
        .apply(6, keyed(6, "k", b"fp2", 0, "key-a", new_instance(&project)))
        .unwrap_err();
    assert!(
        matches!(&err, Rejected::IdempotencyKeyReused(m) if m.contains("different request")),
        "{err:?}"
    );
    assert_eq!(s.instances.len(), 1);
}

#[test]
fn idempotency_keys_are_forgotten_after_a_day() {
    let (mut s, project) = state_with_keys();
    s.apply(5, keyed(5, "k", b"fp", 0, "key-a", new_instance(&project)))
        .unwrap();
    assert_eq!(s.idempotency_keys.by_key.len(), 1);
    let day = crate::idempotency::types::KEEP_MS;
    // Still remembered just before the day ends...
    s.apply(
        6,
        keyed(day, "other", b"fp", 0, "key-a", new_instance(&project)),
    )
    .unwrap();
    assert_eq!(s.idempotency_keys.by_key.len(), 2);
    // ...and gone after: the same key makes a new instance.
    s.apply(
        7,
        keyed(day + 6, "k", b"fp", 0, "key-a", new_instance(&project)),
    )
    .unwrap();
    assert_eq!(s.instances.len(), 3);
    assert_eq!(s.idempotency_keys.by_key.len(), 2);
    assert_eq!(s.idempotency_keys.by_time.len(), 2);
}

#[test]
fn a_refusal_is_not_remembered_and_a_secret_is_not_shown_twice() {
    let (mut s, project) = state_with_keys();
    // Refused (no such project): the key stays free, a retry tries again.
    let missing = ProjectId::generate();
    assert!(
        s.apply(5, keyed(5, "k", b"fp", 0, "key-a", new_instance(&missing)))
            .is_err()
    );
    assert!(s.idempotency_keys.by_key.is_empty());
    // An API key's secret is shown once: its retry says what was done and where.
    let add = || {
        Body::AddApiKey(pb::AddApiKey {
            project_id: project.to_string(),
            key_id: "k_retry".into(),
            secret_sha256: vec![0; 32],
            name: "ci".into(),
            ..Default::default()
        })
    };
    s.apply(6, keyed(6, "add", b"fp", 0, "key-a", add()))
        .unwrap_or_else(|e| panic!("{e}"));
    let err = s
        .apply(7, keyed(7, "add", b"fp", 0, "key-a", add()))
        .unwrap_err();
    assert!(
        matches!(&err, Rejected::Replayed { detail, location } if detail.contains("k_retry") && location.ends_with("/keys")),
        "{err:?}"
    );
}

#[test]
fn deleting_a_pending_instance_removes_it_and_others_cannot_delete() {
    let (mut s, project, _) = state_with_node();
    let id = create(&mut s, &project, 512);
    let del = |acct: &str| {
        cmd(
            14,
            Body::DeleteInstance(pb::DeleteInstance {
                instance_id: id.to_string(),
                project_id: acct.into(),
            }),
        )
    };
    assert!(matches!(
        s.apply(14, del("prj-2")),
        Err(Rejected::NotFound(_))
    ));
    s.apply(15, del(project.as_str())).unwrap();
    assert!(s.instances.is_empty());
}

#[test]
fn snapshots_in_the_older_json_format_still_restore_and_newer_formats_are_refused() {
    use crate::state::snapshot_format::{self, MAGIC};
    use vmcloud_consensus::StateMachine;
    let (s, _, _) = state_with_node();
    // Format v0: the JSON every snapshot was before the binary format.
    let json = serde_json::to_vec(&s).unwrap();
    let mut restored = SharedState::default();
    restored.restore(&json).unwrap();
    assert_eq!(*restored.read(), s);
    // The binary format round-trips and is smaller than the JSON.
    let binary = snapshot_format::encode(&s);
    assert!(binary.starts_with(MAGIC));
    let (mut decoded, history) = snapshot_format::decode(&binary).unwrap();
    decoded.reindex();
    assert_eq!(decoded, s);
    assert_eq!(history, snapshot_format::History::InStore);
    // A format from a newer binary says so instead of guessing.
    let mut newer = MAGIC.to_vec();
    newer.extend_from_slice(&99u32.to_le_bytes());
    let err = restored.restore(&newer).unwrap_err();
    assert!(err.contains("v99") && err.contains("newer"), "{err}");
}

#[test]
fn ended_instances_go_to_the_history_store_and_travel_in_snapshots() {
    use crate::history::store::HistoryStore;
    use crate::history::types::HistoryRecord;
    use prost::Message;
    use vmcloud_consensus::StateMachine;
    let dir = tempfile::tempdir().unwrap();
    let (s, project, _) = state_with_node();
    let mut shared =
        SharedState::with_history(HistoryStore::open(&dir.path().join("a.redb")).unwrap());
    shared.replace(s);
    let mut index = shared.read().applied_index;
    let mut apply = |shared: &mut SharedState, body: Body| {
        index += 1;
        let out = shared.apply(index, &cmd(10 + index as i64, body).encode_to_vec());
        shared.publish();
        out
    };
    let mut ids = Vec::new();
    for n in 0..5 {
        let id = InstanceId::generate();
        apply(
            &mut shared,
            Body::CreateInstance(pb::CreateInstance {
                instance_id: id.to_string(),
                project_id: project.to_string(),
                name: format!("vm{n}"),
                flavor: "vps-s".into(),
                image: "debian-12".into(),
                region: "par".into(),
                vcpus: 1,
                memory_mib: 512,
                disk_gib: 10,
                ..Default::default()
            }),
        )
        .unwrap();
        ids.push(id);
    }
    for id in &ids {
        apply(
            &mut shared,
            Body::DeleteInstance(pb::DeleteInstance {
                instance_id: id.to_string(),
                project_id: project.to_string(),
            }),
        )
        .unwrap();
    }
    // Live memory holds none of them; the store holds all five, in log order (written by
    // the history thread a moment after the state is published).
    assert!(shared.read().instances.is_empty());
    assert!(shared.history_written());
    let store = shared.history().unwrap().clone();
    // Five ended instances, and the audit events of the twelve commands (two made the
    // project and the node).
    assert_eq!(store.len().unwrap(), 17);
    assert_eq!(store.audit_len().unwrap(), 12);
    let first = store.page(None, 6).unwrap();
    assert_eq!(first.records.len(), 6);
    let rest = store.page(first.next, 11).unwrap();
    assert_eq!(rest.records.len(), 11);
    assert_eq!(rest.next, None);
    let ended: Vec<InstanceId> = first
        .records
        .iter()
        .chain(&rest.records)
        .filter_map(|(_, r)| match r {
            HistoryRecord::InstanceEnded {
                instance, reason, ..
            } => {
                assert_eq!(reason, "deleted before it was placed");
                Some(instance.id.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(ended, ids);
    // The project's ended instances, newest first, a page at a time, by their index.
    let dimension = format!("ended:{project}");
    let (page, last) = store.dimension_page(&dimension, None, 3).unwrap();
    let (rest, none) = store.dimension_page(&dimension, last, 3).unwrap();
    assert_eq!(none, None);
    let newest_first: Vec<InstanceId> = page
        .iter()
        .chain(&rest)
        .map(|r| match r {
            HistoryRecord::InstanceEnded { instance, .. } => instance.id.clone(),
            other => panic!("not an ended instance: {other:?}"),
        })
        .collect();
    assert_eq!(newest_first, ids.iter().rev().cloned().collect::<Vec<_>>());

    // The replica's own snapshot leaves the history in its store, made durable through the
    // snapshot's index: the snapshot does not grow with history.
    let data = shared.snapshot();
    let (_, history) = crate::state::snapshot_format::decode(&data).unwrap();
    assert_eq!(history, crate::state::snapshot_format::History::InStore);
    assert!(store.durable_through().unwrap() >= shared.read().applied_index);
    // A peer is sent the state with the history; restoring that elsewhere gives the same
    // records (written by the history thread while the state is already served).
    let outgoing =
        shared
            .outgoing_snapshot()
            .expect("a replica with history adds it")(shared.read().applied_index, &data)
        .unwrap();
    assert!(outgoing.len() > data.len());
    let mut other =
        SharedState::with_history(HistoryStore::open(&dir.path().join("b.redb")).unwrap());
    other.restore(&outgoing).unwrap();
    assert_eq!(*other.read(), *shared.read());
    assert!(other.history_written());
    assert_eq!(
        other.history().unwrap().page(None, 100).unwrap(),
        store.page(None, 100).unwrap()
    );
    // Restarted on its own store and snapshot, a replica keeps its history as it is.
    let expected = store.page(None, 100).unwrap();
    drop((store, shared));
    // (The old writer thread lets go of the file a moment after its last sender is gone.)
    let reopened = (0..100)
        .find_map(|_| {
            HistoryStore::open(&dir.path().join("a.redb"))
                .inspect_err(|_| std::thread::sleep(std::time::Duration::from_millis(20)))
                .ok()
        })
        .expect("the history store opens again");
    let mut restarted = SharedState::with_history(reopened);
    restarted.restore(&data).unwrap();
    assert!(restarted.history_written());
    assert_eq!(
        restarted.history().unwrap().page(None, 100).unwrap(),
        expected
    );
    // A snapshot in the previous format (v1: the whole state, then the history always
    // inside) still restores, history and all.
    let crate::state::snapshot_format::History::Section(section) =
        crate::state::snapshot_format::decode(&outgoing).unwrap().1
    else {
        panic!("a peer's snapshot carries its history");
    };
    let state_v1 = rmp_serde::to_vec(&*restarted.read()).unwrap();
    let mut v1 = crate::state::snapshot_format::MAGIC.to_vec();
    v1.extend_from_slice(&1u32.to_le_bytes());
    v1.extend_from_slice(&(state_v1.len() as u64).to_le_bytes());
    v1.extend_from_slice(&state_v1);
    v1.extend_from_slice(section);
    let mut old =
        SharedState::with_history(HistoryStore::open(&dir.path().join("c.redb")).unwrap());
    old.restore(&v1).unwrap();
    assert!(old.history_written());
    assert_eq!(old.history().unwrap().page(None, 100).unwrap(), expected);
}

#[test]
fn a_field_appended_with_a_default_reads_older_positional_snapshots() {
    // The snapshot format's evolution rule (state/snapshot_format.rs), checked on the
    // encoding itself: what an older binary wrote, a newer one reads.
    #[derive(serde::Serialize)]
    struct Old {
        a: u32,
        b: String,
    }
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct New {
        a: u32,
        b: String,
        #[serde(default)]
        c: Option<u32>,
    }
    let bytes = rmp_serde::to_vec(&Old {
        a: 7,
        b: "x".into(),
    })
    .unwrap();
    let new: New = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(
        new,
        New {
            a: 7,
            b: "x".into(),
            c: None
        }
    );
    // Maps with field names (how the history store writes records) read too.
    let named = rmp_serde::to_vec_named(&Old {
        a: 7,
        b: "x".into(),
    })
    .unwrap();
    assert_eq!(rmp_serde::from_slice::<New>(&named).unwrap(), new);
}

#[test]
fn a_paged_walk_over_ten_thousand_instances_sees_each_survivor_once_while_others_come_and_go() {
    use rand::{Rng as _, SeedableRng as _};
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut s, project, _) = state_with_node();
    // Far more than a company's default quota.
    s.apply(
        99,
        cmd(
            99,
            Body::SetQuota(pb::SetQuota {
                project_id: project.to_string(),
                region: "par".into(),
                limits: Some(pb::QuotaLimits {
                    instances: Some(100_000),
                    vcpus: Some(100_000),
                    memory_mib: Some(100_000_000),
                    ..Default::default()
                }),
            }),
        ),
    )
    .unwrap();
    let mut at = 100;
    let new = |s: &mut ClusterState, at: &mut i64| {
        *at += 1;
        let id = InstanceId::generate();
        s.apply(
            *at as u64,
            cmd(
                *at,
                Body::CreateInstance(pb::CreateInstance {
                    instance_id: id.to_string(),
                    project_id: project.to_string(),
                    name: "w".into(),
                    region: "par".into(),
                    vcpus: 1,
                    memory_mib: 64,
                    ..Default::default()
                }),
            ),
        )
        .unwrap();
        id
    };
    let first: Vec<InstanceId> = (0..10_000).map(|_| new(&mut s, &mut at)).collect();
    let mut deleted = std::collections::HashSet::new();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = s.instances_page(&project, after.as_ref(), 97, |_| true);
        seen.extend(page.iter().map(|i| (i.created_at_ms, i.id.clone())));
        // Between pages: some of the first ones go, new ones come.
        for _ in 0..rng.random_range(0..20) {
            let victim = &first[rng.random_range(0..first.len())];
            if deleted.insert(victim.clone()) {
                at += 1;
                s.apply(
                    at as u64,
                    cmd(
                        at,
                        Body::DeleteInstance(pb::DeleteInstance {
                            instance_id: victim.to_string(),
                            project_id: project.to_string(),
                        }),
                    ),
                )
                .unwrap();
            }
        }
        for _ in 0..rng.random_range(0..20) {
            new(&mut s, &mut at);
        }
        match next {
            Some(key) => after = Some(key),
            None => break,
        }
    }
    let unique: std::collections::HashSet<_> = seen.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "an instance was shown twice (seed {seed})"
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "out of order (seed {seed})"
    );
    for id in first.iter().filter(|id| !deleted.contains(*id)) {
        assert!(unique.contains(id), "{id} was skipped (seed {seed})");
    }
    assert_eq!(
        s.instances_of_project(&project) as usize,
        s.instances
            .values()
            .filter(|i| i.project == project)
            .count()
    );
}

#[test]
fn a_state_of_many_instances_round_trips_through_chunks_decoded_in_parallel() {
    use crate::instances::types::{Instance, InstanceSpec};
    use crate::state::snapshot_format::{History, decode, encode};
    let (mut s, project, node) = state_with_node();
    for n in 0..70_000u32 {
        let spec = InstanceSpec {
            name: format!("vm{n}"),
            flavor: "vps-s".into(),
            image: "debian-12".into(),
            region: "par".into(),
            vcpus: 1,
            memory_mib: 64,
            disk_gib: 10,
            gpu: None,
        };
        let mut i = Instance::pending(InstanceId::generate(), project.clone(), spec, n.into());
        if n % 2 == 0 {
            i.node = Some(node.clone());
            i.state = crate::instances::types::InstanceState::Running;
        }
        s.instances.insert(i.id.clone(), std::sync::Arc::new(i));
    }
    s.reindex();
    let data = encode(&s);
    let (mut back, history) = decode(&data).unwrap();
    assert_eq!(history, History::InStore);
    back.reindex();
    assert_eq!(back.instances.len(), 70_000);
    assert_eq!(back, s);
    // Cut anywhere inside the chunks, the snapshot is refused, not half-read.
    let cut = &data[..data.len() / 2];
    let err = decode(cut).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("cut short"), "{err}");
}

/// The generation epoch names the nodes of its recent steps: the gateway wakes those links
/// only; further back than it remembers, or behind a restored counter, it says so.
#[test]
fn the_generation_epoch_names_the_nodes_it_stepped_for() {
    let node = |n: &str| vmcloud_proto::NodeId::parse(n).unwrap();
    let mut e = crate::state::Epoch::default();
    e.bump(&node("a"));
    e.bump(&node("b"));
    e.bump(&node("a"));
    assert_eq!(e.nodes_since(3), Some(vec![]));
    assert_eq!(e.nodes_since(1), Some(vec![&node("b"), &node("a")]));
    assert_eq!(e.nodes_since(0).map(|n| n.len()), Some(3));
    assert_eq!(e.nodes_since(7), None, "a counter behind: restored");
    for _ in 0..crate::state::Epoch::KEPT {
        e.bump(&node("c"));
    }
    assert_eq!(e.nodes_since(2), None, "forgotten");
    assert_eq!(e.nodes_since(e.0 - 2).map(|n| n.len()), Some(2));
}
