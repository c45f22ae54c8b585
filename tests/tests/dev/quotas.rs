//! Quotas through a running `vmcloud dev`: a create past a limit is refused with what is used
//! and how to ask; the project asks, an operator approves, the create goes through.

use serde_json::{Value, json};

use super::Fixture;
use super::customers::{Api, customer};

fn region<'a>(view: &'a Value, name: &str) -> &'a Value {
    view["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == name)
        .unwrap_or_else(|| panic!("no {name} in {view}"))
}

#[tokio::test]
async fn a_create_past_a_quota_is_refused_until_an_operator_grants_more() {
    let fx = Fixture::start();
    let api = Api {
        base: &fx.fleet.api,
    };
    let operator = fx.fleet.token.as_str();
    let (ann, _, project) = customer(&fx, &api, "ann@example.org", "Org A").await;
    let (bob, _, _) = customer(&fx, &api, "bob@example.org", "Org B").await;

    // A company's defaults; an operator lowers par's vCPUs to 1.
    let (status, view) = api
        .call(
            "GET",
            &format!("/v1/quotas?project={project}"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(region(&view, "par")["limits"]["vcpus"], 200, "{view}");
    assert_eq!(region(&view, "par")["used"]["vcpus"], 0, "{view}");
    let (status, set) = api
        .call(
            "PUT",
            &format!("/v1/projects/{project}/quotas"),
            Some(operator),
            Some(json!({"region": "par", "vcpus": 1})),
        )
        .await;
    assert_eq!(status, 200, "{set}");
    // Only operators set quotas.
    let (status, _) = api
        .call(
            "PUT",
            &format!("/v1/projects/{project}/quotas"),
            Some(&ann),
            Some(json!({"region": "par", "vcpus": 100})),
        )
        .await;
    assert_eq!(status, 403);

    let vm = json!({"flavor": "vps-s", "image": "debian-12", "region": "par"});
    let create_path = format!("/v1/instances?project={project}");
    let create = || api.call("POST", &create_path, Some(&ann), Some(vm.clone()));
    let (status, first) = create().await;
    assert_eq!(status, 201, "{first}");
    let (status, refused) = create().await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["type"], "urn:vmcloud:problem:quota-exceeded");
    let detail = refused["detail"].as_str().unwrap();
    assert!(
        detail.contains("quota of 1 vCPUs in par and uses 1")
            && detail.contains("vmcloud quota request --region par --vcpus"),
        "{detail}"
    );
    let (_, view) = api
        .call(
            "GET",
            &format!("/v1/quotas?project={project}&region=par"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(view["regions"].as_array().unwrap().len(), 1, "{view}");
    assert_eq!(region(&view, "par")["used"]["instances"], 1, "{view}");

    // Ann asks; Bob sees nothing of it; an operator sees it open and approves.
    let (status, asked) = api
        .call(
            "POST",
            &format!("/v1/quota-requests?project={project}"),
            Some(&ann),
            Some(json!({"region": "par", "vcpus": 4, "reason": "a second web server"})),
        )
        .await;
    assert_eq!(status, 201, "{asked}");
    assert_eq!(asked["state"], "open");
    let id = asked["id"].as_str().unwrap().to_owned();
    let (status, bad) = api
        .call(
            "POST",
            &format!("/v1/quota-requests?project={project}"),
            Some(&ann),
            Some(json!({"region": "par", "reason": "nothing named"})),
        )
        .await;
    assert_eq!(status, 422, "{bad}");
    let (_, his) = api
        .call("GET", "/v1/quota-requests", Some(&bob), None)
        .await;
    assert!(!his.to_string().contains(&id), "{his}");
    let (status, _) = api
        .call(
            "POST",
            &format!("/v1/quota-requests/{id}/approve"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(status, 403, "a customer approves their own request");
    let out = fx.fleet.cli(&["quota", "requests", "--state", "open"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains(&id) && listed.contains("a second web server"),
        "{listed}"
    );
    let out = fx.fleet.cli(&["quota", "approve", &id, "--note", "enjoy"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, again) = api
        .call(
            "POST",
            &format!("/v1/quota-requests/{id}/decline"),
            Some(operator),
            None,
        )
        .await;
    assert_eq!(status, 409, "decided twice: {again}");
    let (_, mine) = api
        .call(
            "GET",
            &format!("/v1/quota-requests?project={project}"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(mine["quota_requests"][0]["state"], "approved", "{mine}");
    assert_eq!(mine["quota_requests"][0]["note"], "enjoy", "{mine}");
    let (status, second) = create().await;
    assert_eq!(status, 201, "{second}");
}
