//! The audit trail through a running `vmcloud dev`: each change and each refusal is an event
//! with who, from where and in which request; an organisation's admins see theirs and nobody
//! else's; operators see all; `vmcloud audit verify` checks the hash chain end to end.

use serde_json::{Value, json};

use super::Fixture;
use super::customers::{Api, customer};

fn events(v: &Value) -> &Vec<Value> {
    v["events"].as_array().unwrap()
}

#[tokio::test]
async fn changes_and_refusals_are_audited_and_the_chain_verifies() {
    let fx = Fixture::start();
    let api = Api {
        base: &fx.fleet.api,
    };
    let (ann, ann_org, ann_project) = customer(&fx, &api, "ann@example.org", "Org A").await;
    let (bob, bob_org, _) = customer(&fx, &api, "bob@example.org", "Org B").await;
    let (status, made) = api
        .call(
            "POST",
            &format!("/v1/instances?project={ann_project}"),
            Some(&ann),
            Some(json!({"flavor": "vps-s", "image": "debian-12", "region": "par"})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let instance = made["id"].as_str().unwrap().to_owned();
    // A wrong password for Ann, and Bob trying Ann's project.
    let (status, _) = api
        .call(
            "POST",
            "/v1/login",
            None,
            Some(json!({"email": "ann@example.org", "password": "not-her-password-at-all"})),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = api
        .call(
            "POST",
            &format!("/v1/projects/{ann_project}/keys"),
            Some(&bob),
            Some(json!({"name": "x", "role": "project-admin"})),
        )
        .await;
    assert_eq!(status, 404);

    // Ann (owner of one organisation) sees her organisation's events, newest first.
    let (status, mine) = api.call("GET", "/v1/audit-events", Some(&ann), None).await;
    assert_eq!(status, 200, "{mine}");
    let list = events(&mine);
    let of_org = |e: &Value, org: &str| {
        e["org"] == org
            || e["member_of"]
                .as_array()
                .is_some_and(|m| m.iter().any(|o| o == org))
    };
    assert!(list.iter().all(|e| of_org(e, &ann_org)), "{mine}");
    // Her log-in belongs to no organisation, but her organisation's admins see it.
    let login = list
        .iter()
        .find(|e| e["action"] == "start_login_session")
        .unwrap_or_else(|| panic!("no log-in event: {mine}"));
    assert_eq!(login["org"], Value::Null, "{login}");
    assert_eq!(login["member_of"], json!([ann_org]), "{login}");
    let created = list
        .iter()
        .find(|e| e["action"] == "create_instance")
        .unwrap_or_else(|| panic!("no create_instance event: {mine}"));
    assert_eq!(created["resource"], format!("instance/{instance}"));
    assert_eq!(created["project"], ann_project.as_str());
    assert_eq!(created["outcome"], "ok");
    assert_eq!(created["source"], "127.0.0.1");
    assert!(
        created["actor"].as_str().unwrap().starts_with("user:usr"),
        "{created}"
    );
    assert!(
        created["request_id"].as_str().unwrap().starts_with("req_"),
        "{created}"
    );
    assert!(list.iter().any(|e| e["action"] == "sign_up"), "{mine}");
    let numbers: Vec<u64> = list.iter().map(|e| e["number"].as_u64().unwrap()).collect();
    assert!(
        numbers.windows(2).all(|w| w[0] > w[1]),
        "newest first: {numbers:?}"
    );
    // Filtered by resource.
    let (_, one) = api
        .call(
            "GET",
            &format!("/v1/audit-events?resource=instance/{instance}"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(events(&one).len(), 1, "{one}");
    // Bob sees nothing of Ann's: naming her organisation is 404, his own shows none of hers.
    let (status, _) = api
        .call(
            "GET",
            &format!("/v1/audit-events?org={ann_org}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (_, his) = api.call("GET", "/v1/audit-events", Some(&bob), None).await;
    assert!(events(&his).iter().all(|e| of_org(e, &bob_org)), "{his}");
    assert!(!his.to_string().contains(&instance), "{his}");

    // The operator sees everything, refusals included.
    let token = fx.fleet.token.as_str();
    let (_, refused) = api
        .call(
            "GET",
            "/v1/audit-events?actor=anonymous&limit=1000",
            Some(token),
            None,
        )
        .await;
    assert!(
        events(&refused)
            .iter()
            .any(|e| e["resource"] == "request/POST /v1/login"
                && e["outcome"] == "refused: 401 unauthorized"),
        "{refused}"
    );
    let (status, bad) = api
        .call("GET", "/v1/audit-events?limit=5000", Some(token), None)
        .await;
    assert_eq!(status, 400, "{bad}");

    // The CLI verifies the whole chain and exports it as JSON lines.
    let out = fx.fleet.cli(&["audit", "verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("the audit chain holds"), "{stdout}");
    let out = fx.fleet.cli(&[
        "audit",
        "export",
        "--resource",
        &format!("instance/{instance}"),
    ]);
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["action"], "create_instance");
}
