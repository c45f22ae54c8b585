//! Deliveries in `apply`, driven by a test clock: the retry schedule, giving up, disabling an
//! endpoint that fails for five days, and events only for the endpoints that want them.

use serde_json::json;
use vmcloud_proto::ProjectId;
use vmcloud_proto::pb::{self, command::Body};

use crate::state::ClusterState;
use crate::webhooks::types::{DISABLE_AFTER_MS, RETRY_AFTER_MS};

fn apply(s: &mut ClusterState, at: i64, body: Body) {
    let index = s.applied_index + 1;
    s.apply(
        index,
        pb::Command {
            at_unix_ms: at,
            actor: None,
            request: None,
            body: Some(body),
        },
    )
    .unwrap();
}

fn setup() -> (ClusterState, ProjectId) {
    let mut s = ClusterState::default();
    let project = ProjectId::parse("prj-1").unwrap();
    apply(
        &mut s,
        1,
        Body::CreateProject(pb::CreateProject {
            project_id: project.to_string(),
            name: "p".into(),
            ..Default::default()
        }),
    );
    for (id, types) in [
        ("we_all", vec![]),
        ("we_jobs", vec!["job.ended".to_owned()]),
    ] {
        apply(
            &mut s,
            2,
            Body::CreateWebhookEndpoint(pb::CreateWebhookEndpoint {
                endpoint_id: id.into(),
                project_id: project.to_string(),
                url: "https://hooks.example.org/".into(),
                event_types: types,
                sealed_secret: "sealed".into(),
                description: String::new(),
                partner_customers: false,
            }),
        );
    }
    (s, project)
}

fn fail(s: &mut ClusterState, at: i64, key: &str) {
    apply(
        s,
        at,
        Body::RecordWebhookDeliveries(pb::RecordWebhookDeliveries {
            results: vec![pb::WebhookDeliveryResult {
                delivery: key.into(),
                ok: false,
                status: 500,
                error: "the endpoint answered 500".into(),
                at_unix_ms: at,
                duration_ms: 3,
            }],
        }),
    );
}

#[test]
fn failed_deliveries_follow_the_schedule_then_give_up() {
    let (mut s, project) = setup();
    s.emit_webhook(
        &project,
        "instance.state_changed",
        json!({"state": "running"}),
    );
    // Only the endpoint that wants every type gets it.
    assert_eq!(s.webhook_outbox.len(), 1);
    let key = s.webhook_outbox.keys().next().unwrap().clone();
    assert!(key.starts_with("evt_") && key.ends_with("/we_all"), "{key}");
    let mut at = 10_000;
    for wait in RETRY_AFTER_MS {
        fail(&mut s, at, &key);
        let d = &s.webhook_outbox[&key];
        assert_eq!(d.next_at_ms, at + wait);
        at = d.next_at_ms;
    }
    // The eighth attempt fails too: given up.
    fail(&mut s, at, &key);
    assert!(s.webhook_outbox.is_empty());
    assert!(s.webhook_endpoints["we_all"].disabled_at_ms.is_none());
}

#[test]
fn an_endpoint_failing_for_five_days_is_disabled_and_a_success_resets_the_count() {
    let (mut s, project) = setup();
    let mut at = 10_000;
    // A success clears the failing streak.
    s.emit_webhook(&project, "instance.state_changed", json!({}));
    let first = s.webhook_outbox.keys().next().unwrap().clone();
    fail(&mut s, at, &first);
    assert_eq!(s.webhook_endpoints["we_all"].failing_since_ms, Some(at));
    apply(
        &mut s,
        at + 5_000,
        Body::RecordWebhookDeliveries(pb::RecordWebhookDeliveries {
            results: vec![pb::WebhookDeliveryResult {
                delivery: first,
                ok: true,
                status: 204,
                at_unix_ms: at + 5_000,
                ..Default::default()
            }],
        }),
    );
    assert_eq!(s.webhook_endpoints["we_all"].failing_since_ms, None);
    assert!(s.webhook_outbox.is_empty());
    // Then an event a day, every delivery failing, for five days.
    for day in 0..=5 {
        at = 20_000 + day * 24 * 3600 * 1000;
        s.emit_webhook(&project, "instance.state_changed", json!({"day": day}));
        let keys: Vec<String> = s.webhook_outbox.keys().cloned().collect();
        for k in keys {
            fail(&mut s, at, &k);
        }
    }
    let e = &s.webhook_endpoints["we_all"];
    assert!(at - e.failing_since_ms.unwrap() >= DISABLE_AFTER_MS);
    assert_eq!(e.disabled_at_ms, Some(at));
    assert!(s.webhook_outbox.is_empty(), "its deliveries are dropped");
    // A disabled endpoint gets no more events.
    s.emit_webhook(&project, "instance.state_changed", json!({}));
    assert!(s.webhook_outbox.is_empty());
}

fn member(project: &ProjectId, job: Option<&str>, session: bool) -> pb::CreateInstance {
    pb::CreateInstance {
        instance_id: vmcloud_proto::InstanceId::generate().to_string(),
        project_id: project.to_string(),
        name: "m".into(),
        region: "par".into(),
        vcpus: 1,
        memory_mib: 512,
        job: job.map(|j| pb::JobSpec {
            job_id: j.into(),
            max_runtime_s: 60,
            gang_size: 2,
            ..Default::default()
        }),
        session: session.then(|| pb::GameSession {
            title: "chess".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn kinds(s: &ClusterState) -> Vec<String> {
    let mut kinds: Vec<String> = s
        .webhook_outbox
        .values()
        .filter(|d| d.endpoint_id == "we_all")
        .map(|d| {
            serde_json::from_str::<serde_json::Value>(&d.payload).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    kinds.sort();
    kinds
}

#[test]
fn a_job_ends_with_its_last_member_and_a_session_with_its_instance() {
    let (mut s, project) = setup();
    let job = vmcloud_proto::JobId::generate().to_string();
    let members = vec![
        member(&project, Some(&job), false),
        member(&project, Some(&job), false),
    ];
    let ids: Vec<String> = members.iter().map(|m| m.instance_id.clone()).collect();
    apply(&mut s, 10, Body::CreateJob(pb::CreateJob { members }));
    let delete = |s: &mut ClusterState, id: &str| {
        apply(
            s,
            11,
            Body::DeleteInstance(pb::DeleteInstance {
                instance_id: id.into(),
                project_id: project.to_string(),
            }),
        )
    };
    delete(&mut s, &ids[0]);
    assert_eq!(
        kinds(&s),
        ["instance.state_changed"],
        "one member left: the job goes on"
    );
    delete(&mut s, &ids[1]);
    assert_eq!(
        kinds(&s),
        [
            "instance.state_changed",
            "instance.state_changed",
            "job.ended"
        ]
    );
    // The endpoint that wants job ends got that one only.
    let jobs_only: Vec<&str> = s
        .webhook_outbox
        .values()
        .filter(|d| d.endpoint_id == "we_jobs")
        .map(|d| d.payload.as_str())
        .collect();
    assert_eq!(jobs_only.len(), 1);
    assert!(jobs_only[0].contains(&job), "{jobs_only:?}");

    let session = member(&project, None, true);
    let id = session.instance_id.clone();
    apply(&mut s, 12, Body::CreateInstance(session));
    delete(&mut s, &id);
    assert!(
        kinds(&s).contains(&"session.ended".to_owned()),
        "{:?}",
        kinds(&s)
    );
}

fn try_apply(s: &mut ClusterState, at: i64, body: Body) -> crate::state::ApplyResult {
    let index = s.applied_index + 1;
    s.apply(
        index,
        pb::Command {
            at_unix_ms: at,
            actor: None,
            request: None,
            body: Some(body),
        },
    )
}

#[test]
fn a_resend_queues_the_event_again_under_its_id_for_its_own_projects_live_endpoints_only() {
    let (mut s, project) = setup();
    let resend = |endpoint: &str, project: &str| {
        Body::ResendWebhookEvent(pb::ResendWebhookEvent {
            endpoint_id: endpoint.into(),
            project_id: project.into(),
            event_id: "evt_7_0".into(),
            payload: r#"{"id":"evt_7_0"}"#.into(),
        })
    };
    try_apply(&mut s, 50, resend("we_all", project.as_str())).unwrap();
    let d = &s.webhook_outbox["evt_7_0/we_all"];
    assert_eq!((d.attempts, d.next_at_ms), (0, 50));
    assert_eq!(d.payload, r#"{"id":"evt_7_0"}"#);
    // Another project's endpoint: not found, nothing queued.
    let before = s.webhook_outbox.len();
    assert!(matches!(
        try_apply(&mut s, 60, resend("we_all", "prj-2")),
        Err(crate::state::Rejected::NotFound(_))
    ));
    assert_eq!(s.webhook_outbox.len(), before);
    // A disabled endpoint: refused with what to do.
    s.webhook_endpoints
        .get_mut("we_jobs")
        .unwrap()
        .disabled_at_ms = Some(1);
    match try_apply(&mut s, 70, resend("we_jobs", project.as_str())) {
        Err(crate::state::Rejected::Conflict(why)) => assert!(why.contains("new endpoint")),
        other => panic!("{other:?}"),
    }
}
