//! Every API caller has an allowance (here `--api-rate-limit 20` an hour): every answer says
//! where it stands (`RateLimit-Policy`, `RateLimit`), past it `429` with `Retry-After`;
//! callers without a key or session are counted by address; the operators' key is not limited.

use serde_json::Value;

use super::customers::{Api, customer};
use super::{Fixture, http};

#[tokio::test]
async fn callers_see_their_allowance_and_are_refused_past_it() {
    let fx = Fixture::start_with(&["--api-rate-limit", "20"]);
    let api = Api {
        base: &fx.fleet.api,
    };
    let (user, _, _) = customer(&fx, &api, "busy@example.com", "Busy").await;
    let url = format!("{}/v1/me", fx.fleet.api);
    let first = http().get(&url).bearer_auth(&user).send().await.unwrap();
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(
        first.headers()["ratelimit-policy"],
        "\"default\";q=20;w=3600"
    );
    let standing = first.headers()["ratelimit"].to_str().unwrap().to_owned();
    assert!(standing.starts_with("\"default\";r=19;t="), "{standing}");
    for _ in 0..19 {
        let r = http().get(&url).bearer_auth(&user).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let over = http().get(&url).bearer_auth(&user).send().await.unwrap();
    assert_eq!(over.status().as_u16(), 429);
    let retry: u64 = over.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=180).contains(&retry), "Retry-After {retry}");
    assert!(
        over.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .contains("r=0")
    );
    let body: Value = over.json().await.unwrap();
    assert_eq!(body["type"], "urn:vmcloud:problem:rate-limited");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("20 requests an hour"),
        "{body}"
    );

    // The operators' key is not counted.
    for _ in 0..30 {
        let r = http()
            .get(format!("{}/v1/instances", fx.fleet.api))
            .bearer_auth(&fx.fleet.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }

    // Without a key or session, the address pays (sign-up and log-in above spent some).
    let mut refused = false;
    for _ in 0..25 {
        let r = http()
            .get(format!("{}/v1/catalog", fx.fleet.api))
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 429 {
            refused = true;
            break;
        }
    }
    assert!(refused, "anonymous requests were never limited");
}

/// Operators give an organisation its own limit (`vmcloud org rate-limit`): its callers see
/// the `"organisation"` policy and are held to it; others keep the default.
#[tokio::test]
async fn operators_set_an_organisations_own_limit() {
    let fx = Fixture::start_with(&["--api-rate-limit", "20"]);
    let api = Api {
        base: &fx.fleet.api,
    };
    let (big, org, _) = customer(&fx, &api, "big@example.com", "Big").await;
    let (small, _, _) = customer(&fx, &api, "small@example.com", "Small").await;
    // Customers cannot raise their own.
    let (status, _) = api
        .call(
            "PUT",
            &format!("/v1/organisations/{org}/rate-limit"),
            Some(&big),
            Some(serde_json::json!({"per_hour": 100000})),
        )
        .await;
    assert_eq!(status, 403);
    let out = fx
        .fleet
        .cli(&["org", "rate-limit", &org, "--per-hour", "50", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["api_per_hour"], 50, "{view}");
    let url = format!("{}/v1/me", fx.fleet.api);
    let mut served = 0;
    loop {
        let r = http().get(&url).bearer_auth(&big).send().await.unwrap();
        if served == 0 {
            assert_eq!(
                r.headers()["ratelimit-policy"],
                "\"organisation\";q=50;w=3600"
            );
        }
        if r.status().as_u16() == 429 {
            break;
        }
        served += 1;
        assert!(served <= 50, "more than the organisation's 50 served");
    }
    // A new limit starts a full bucket of its size (the 403 above was counted against the old).
    assert_eq!(served, 50, "the organisation's 50 an hour");
    let r = http().get(&url).bearer_auth(&small).send().await.unwrap();
    assert_eq!(r.headers()["ratelimit-policy"], "\"default\";q=20;w=3600");
}
