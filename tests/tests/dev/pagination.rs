//! Lists page by cursor over the API: 120 instances walked 50 at a time while more are made,
//! filters, and bad paging parameters refused with what to do.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::Fixture;
use super::customers::Api;

#[tokio::test]
async fn the_instance_list_pages_by_cursor_and_filters() {
    let fx = Fixture::start();
    let api = Api {
        base: &fx.fleet.api,
    };
    let key = fx.fleet.token.as_str();
    let vm = |region: &str| json!({"flavor": "vps-s", "image": "debian-12", "region": region});
    let mut made = Vec::new();
    for n in 0..120 {
        let region = if n % 4 == 0 { "fra" } else { "par" };
        let (status, i) = api
            .call("POST", "/v1/instances", Some(key), Some(vm(region)))
            .await;
        assert!(status == 201 || status == 202, "{i}");
        made.push(i["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut path = "/v1/instances?limit=50&stale=true".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = api.call("GET", &path, Some(key), None).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let items = page["instances"].as_array().unwrap();
        assert!(items.len() <= 50);
        seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
        // Someone creates while we walk: never shown twice, the first ones all shown.
        api.call("POST", "/v1/instances", Some(key), Some(vm("par")))
            .await;
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/instances?limit=50&stale=true&cursor={c}"),
            None => break,
        }
    }
    assert!(pages >= 3, "{pages} pages");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "an instance was listed twice");
    for id in &made {
        assert!(unique.contains(id), "{id} was skipped");
    }

    // Filters.
    let (_, fra) = api
        .call(
            "GET",
            "/v1/instances?region=fra&limit=1000",
            Some(key),
            None,
        )
        .await;
    let fra: Vec<&Value> = fra["instances"].as_array().unwrap().iter().collect();
    assert_eq!(fra.len(), 30);
    assert!(fra.iter().all(|i| i["region"] == "fra"));
    let (_, all) = api
        .call("GET", "/v1/instances?limit=1000", Some(key), None)
        .await;
    let by_state = |st: &str| {
        all["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["state"] == st)
            .count()
    };
    let (_, pending) = api
        .call(
            "GET",
            "/v1/instances?state=pending&limit=1000",
            Some(key),
            None,
        )
        .await;
    assert_eq!(
        pending["instances"].as_array().unwrap().len(),
        by_state("pending")
    );

    // Bad paging: what was wrong and what to do.
    let (status, body) = api
        .call("GET", "/v1/instances?limit=5000", Some(key), None)
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("1 to 1000"),
        "{body}"
    );
    let (status, body) = api
        .call("GET", "/v1/instances?cursor=not-a-cursor", Some(key), None)
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["type"], "urn:vmcloud:problem:invalid-cursor");

    // Jobs page the same way, by submission.
    let job =
        json!({"flavor": "vps-s", "image": "debian-12", "region": "par", "max_runtime_s": 600});
    let mut jobs = Vec::new();
    for _ in 0..3 {
        let (status, j) = api
            .call("POST", "/v1/jobs", Some(key), Some(job.clone()))
            .await;
        assert!(status == 201 || status == 202, "{j}");
        jobs.push(j["id"].as_str().unwrap().to_owned());
    }
    let (_, first) = api.call("GET", "/v1/jobs?limit=2", Some(key), None).await;
    assert_eq!(first["jobs"].as_array().unwrap().len(), 2, "{first}");
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, second) = api
        .call(
            "GET",
            &format!("/v1/jobs?limit=2&cursor={cursor}"),
            Some(key),
            None,
        )
        .await;
    assert_eq!(second["jobs"].as_array().unwrap().len(), 1, "{second}");
    assert!(second.get("next_cursor").is_none(), "{second}");
    let paged: Vec<&str> = first["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["jobs"].as_array().unwrap())
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(paged, jobs.iter().map(String::as_str).collect::<Vec<_>>());

    // The CLI follows every page.
    let listed = super::cli_json(&fx, &["instance", "list"]);
    assert!(listed["instances"].as_array().unwrap().len() >= 120 + pages);
}

/// 10,000 projects walked a page at a time while others are created and deleted: every
/// project that existed throughout is seen exactly once, none twice.
#[tokio::test]
async fn ten_thousand_projects_walk_with_concurrent_writes() {
    const N: usize = 10_000;
    // Without the per-caller rate limit: one customer makes 11,000 requests here.
    let fx = Fixture::start_with(&["--api-rate-limit", "0"]);
    let api = Api {
        base: &fx.fleet.api,
    };
    let (ann, org, _) = super::customers::customer(&fx, &api, "ann@example.org", "Many").await;
    let create = |n: usize| {
        let (ann, org) = (ann.clone(), org.clone());
        let base = fx.fleet.api.clone();
        async move {
            let r = super::http()
                .post(format!("{base}/v1/projects"))
                .bearer_auth(&ann)
                .json(&json!({"organisation": org, "name": format!("p{n}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
            let v: Value = r.json().await.unwrap();
            v["id"].as_str().unwrap().to_owned()
        }
    };
    let mut before = Vec::with_capacity(N);
    for chunk in (0..N).collect::<Vec<_>>().chunks(64) {
        before.extend(futures::future::join_all(chunk.iter().map(|&n| create(n))).await);
    }
    // The walk, while a writer deletes 500 of them and creates 500 more.
    let doomed: HashSet<String> = before.iter().step_by(20).cloned().collect();
    let writer = {
        let (ann, base) = (ann.clone(), fx.fleet.api.clone());
        let doomed: Vec<String> = doomed.iter().cloned().collect();
        let extra: Vec<_> = (N..N + 500).map(create).collect();
        async move {
            for (id, make) in doomed.iter().zip(extra) {
                let r = super::http()
                    .delete(format!("{base}/v1/projects/{id}"))
                    .bearer_auth(&ann)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 204);
                make.await;
            }
        }
    };
    let walk = async {
        let mut seen: Vec<String> = Vec::new();
        let mut path = "/v1/projects?limit=1000".to_owned();
        loop {
            let (status, page) = api.call("GET", &path, Some(&ann), None).await;
            assert_eq!(status, 200, "{page}");
            seen.extend(
                page["projects"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["id"].as_str().unwrap().to_owned()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => path = format!("/v1/projects?limit=1000&cursor={c}"),
                None => break seen,
            }
        }
    };
    let ((), seen) = futures::join!(writer, walk);
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a project was listed twice");
    let missed: Vec<&String> = before
        .iter()
        .filter(|id| !doomed.contains(*id) && !unique.contains(id))
        .collect();
    assert!(missed.is_empty(), "{} projects skipped", missed.len());
    eprintln!(
        "walked {} projects while 500 were deleted and 500 made",
        seen.len()
    );
}
