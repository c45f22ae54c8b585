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
