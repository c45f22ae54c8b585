//! The chain `apply` builds, its check, and the store's filtered pages.

use prost::Message;
use vmcloud_consensus::StateMachine;
use vmcloud_proto::pb::{self, command::Body};

use crate::audit::types::{AuditEvent, Break, GENESIS, verify};
use crate::history::audit_index::AuditFilter;
use crate::history::store::HistoryStore;
use crate::state::replicated::SharedState;

fn command(at: i64, who: Option<pb::actor::Who>, body: Body) -> Vec<u8> {
    pb::Command {
        at_unix_ms: at,
        actor: Some(pb::Actor {
            who,
            source: "192.0.2.7".into(),
            mfa: false,
        }),
        request: Some(pb::Request {
            id: format!("req-{at}"),
            ..Default::default()
        }),
        body: Some(body),
    }
    .encode_to_vec()
}

fn system() -> Option<pb::actor::Who> {
    Some(pb::actor::Who::System(true))
}

/// A replica with two projects in two organisations' names, and some changes and refusals.
fn replica(dir: &std::path::Path) -> SharedState {
    let mut shared = SharedState::with_history(HistoryStore::open(&dir.join("h.redb")).unwrap());
    let mut index = 0;
    let mut apply = |shared: &mut SharedState, at: i64, who, body| {
        index += 1;
        let out = shared.apply(index, &command(at, who, body));
        shared.publish();
        out
    };
    for (n, project) in ["prj-a", "prj-b"].into_iter().enumerate() {
        apply(
            &mut shared,
            1_000 + n as i64,
            system(),
            Body::CreateProject(pb::CreateProject {
                project_id: project.into(),
                name: project.into(),
                ..Default::default()
            }),
        )
        .unwrap();
    }
    for n in 0..20 {
        let project = if n % 2 == 0 { "prj-a" } else { "prj-b" };
        apply(
            &mut shared,
            2_000 + n,
            system(),
            Body::CreateInstance(pb::CreateInstance {
                instance_id: vmcloud_proto::InstanceId::generate().to_string(),
                project_id: project.into(),
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
    }
    // Refused by apply: an unknown API key may not create; an anonymous wrong password.
    let refused = apply(
        &mut shared,
        3_000,
        Some(pb::actor::Who::ApiKeyId("k_gone".into())),
        Body::DeleteProject(pb::DeleteProject {
            project_id: "prj-a".into(),
        }),
    );
    assert!(refused.is_err());
    apply(
        &mut shared,
        3_001,
        None,
        Body::RecordRefusal(pb::RecordRefusal {
            method: "POST".into(),
            path: "/v1/login".into(),
            status: 401,
            kind: "unauthorized".into(),
        }),
    )
    .unwrap();
    assert!(shared.history_written());
    shared
}

fn all(store: &HistoryStore) -> Vec<AuditEvent> {
    store
        .audit_page(&AuditFilter::default(), None, 1000, false)
        .unwrap()
        .events
}

#[test]
fn every_command_and_refusal_becomes_a_chained_event() {
    let dir = tempfile::tempdir().unwrap();
    let shared = replica(dir.path());
    let store = shared.history().unwrap().clone();
    let events = all(&store);
    assert_eq!(events.len(), 24);
    assert_eq!(verify(&events, (1, GENESIS)), Ok(24));
    assert_eq!(shared.read().audit_head.hash, events[23].hash);
    let created = &events[2];
    assert_eq!(created.action, "create_instance");
    assert_eq!(created.actor, "system");
    assert_eq!(created.source, "192.0.2.7");
    assert_eq!(created.request_id, "req-2000");
    assert_eq!(created.project.as_deref(), Some("prj-a"));
    assert!(created.resource.starts_with("instance/i-"));
    assert_eq!(created.outcome, "ok");
    let refused = &events[22];
    assert_eq!(refused.actor, "key:k_gone");
    assert!(refused.outcome.starts_with("refused: "), "{refused:?}");
    let login = &events[23];
    assert_eq!(
        (
            login.actor.as_str(),
            login.action.as_str(),
            login.outcome.as_str()
        ),
        ("anonymous", "refused_request", "refused: 401 unauthorized")
    );
    assert_eq!(login.resource, "request/POST /v1/login");
}

#[test]
fn verify_says_where_and_how_the_chain_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let shared = replica(dir.path());
    let events = all(shared.history().unwrap());
    // An event edited after the fact.
    let mut edited = events.clone();
    edited[5].outcome = "refused: nothing to see".into();
    assert!(matches!(
        verify(&edited, (1, GENESIS)),
        Err(Break::Altered { number: 6, .. })
    ));
    // An event edited and its hash recomputed: the next one no longer links to it.
    edited[5].hash = edited[5].compute_hash();
    assert!(matches!(
        verify(&edited, (1, GENESIS)),
        Err(Break::Unlinked { number: 7, .. })
    ));
    // An event removed.
    let mut removed = events.clone();
    removed.remove(10);
    let err = verify(&removed, (1, GENESIS)).unwrap_err();
    assert!(
        matches!(
            err,
            Break::Gap {
                number: 12,
                expected: 11,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn pages_filter_by_project_actor_resource_and_time_in_both_orders() {
    let dir = tempfile::tempdir().unwrap();
    let shared = replica(dir.path());
    let store = shared.history().unwrap();
    // Newest first, in pages of 7, resumes where the last page ended.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .audit_page(&AuditFilter::default(), after, 7, true)
            .unwrap();
        seen.extend(page.events.iter().map(|e| e.number));
        match page.last {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    assert_eq!(seen, (1..=24).rev().collect::<Vec<u64>>());
    // By actor, by resource, by time.
    let by_key = AuditFilter {
        actor: Some("key:k_gone".into()),
        ..Default::default()
    };
    assert_eq!(
        store
            .audit_page(&by_key, None, 50, true)
            .unwrap()
            .events
            .len(),
        1
    );
    let one = &all(store)[5];
    let by_resource = AuditFilter {
        resource: Some(one.resource.clone()),
        ..Default::default()
    };
    let found = store
        .audit_page(&by_resource, None, 50, false)
        .unwrap()
        .events;
    assert_eq!(found, vec![one.clone()]);
    let window = AuditFilter {
        since_ms: Some(2_005),
        until_ms: Some(2_010),
        ..Default::default()
    };
    let found = store.audit_page(&window, None, 50, false).unwrap().events;
    assert_eq!(
        found.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
        (2_005..2_010).collect::<Vec<_>>()
    );
    let newest = store.audit_page(&window, None, 2, true).unwrap();
    assert_eq!(
        newest.events.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
        vec![2_009, 2_008]
    );
    let next = store.audit_page(&window, newest.last, 50, true).unwrap();
    assert_eq!(
        next.events.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
        vec![2_007, 2_006, 2_005]
    );
}

#[test]
fn a_snapshot_sent_to_a_peer_carries_the_chain_and_its_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let shared = replica(dir.path());
    let data = shared.snapshot();
    let index = shared.read().applied_index;
    let data = shared.outgoing_snapshot().expect("history goes to peers")(index, &data).unwrap();
    let mut other =
        SharedState::with_history(HistoryStore::open(&dir.path().join("b.redb")).unwrap());
    other.restore(&data).unwrap();
    assert!(other.history_written());
    let store = other.history().unwrap();
    assert_eq!(all(store), all(shared.history().unwrap()));
    let by_actor = AuditFilter {
        actor: Some("anonymous".into()),
        ..Default::default()
    };
    assert_eq!(
        store
            .audit_page(&by_actor, None, 10, true)
            .unwrap()
            .events
            .len(),
        1
    );
}

#[test]
fn host_events_say_what_changed() {
    use crate::audit::apply::detail_of;
    let drain = Body::SetNodeState(pb::SetNodeState {
        node_id: "n1".into(),
        state: pb::NodeState::Draining as i32,
        reason: "fan replacement".into(),
        deadline_unix_ms: 1_764_590_400_000,
        by_liveness: false,
    });
    assert_eq!(
        detail_of(&drain),
        "→ draining: fan replacement (empty by 2025-12-01T12:00:00Z)"
    );
    let down = Body::SetNodeState(pb::SetNodeState {
        node_id: "n1".into(),
        state: pb::NodeState::Down as i32,
        reason: "silent 97 s".into(),
        by_liveness: true,
        ..Default::default()
    });
    assert_eq!(detail_of(&down), "→ down (liveness): silent 97 s");
    let gpus = Body::SetGpuHealth(pb::SetGpuHealth {
        node_id: "n1".into(),
        unhealthy: vec![pb::UnhealthyGpu {
            pci_address: "0000:17:00.0".into(),
            reason: "XID 79".into(),
        }],
    });
    assert_eq!(detail_of(&gpus), "unhealthy: 0000:17:00.0 (XID 79)");
    // Commands whose kind and resource say it all have none, and keep their old hashes.
    let create = Body::CreateProject(pb::CreateProject::default());
    assert_eq!(detail_of(&create), "");
}
