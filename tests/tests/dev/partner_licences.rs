//! Partners' licences through `vmcloud dev`: the demo partner's terms and school site, a site
//! EdgeNet adds for this machine's address whose one seat a launch of its household takes (the
//! next launch from there refused), a kiosk registered by device code, join tokens for its own
//! hosts only, its POP closed to VMCloud's own customers, and its monthly statement as JSON and
//! CSV.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::Fixture;
use super::customers::{Api, PASSWORD, customer, mailed_link};
use super::partners::{login, on_host};

#[tokio::test]
async fn a_partners_sites_seats_pop_and_statement() {
    let fx = Fixture::start_with(&["--game-hosts", "1", "--game-host-shape", "gpu-1xrtx4090"]);
    let base = fx.fleet.api.clone();
    let api = Api { base: &base };
    let operator = fx.fleet.token.clone();
    let password = std::fs::read_to_string(fx.fleet.data_dir.join("demo-password")).unwrap();
    let edge_admin = login(&api, "admin@edgenet.example", password.trim()).await;

    // The demo partner's terms, set by VMCloud's operators only.
    let (status, licence) = api
        .call(
            "GET",
            "/v1/partners/edgenet/licence",
            Some(&edge_admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{licence}");
    for (k, v) in [
        ("currency", "EUR"),
        ("base_monthly", "250.00"),
        ("per_active_user", "1.50"),
        ("partner_share_percent", "30"),
    ] {
        assert_eq!(licence[k], v, "{licence}");
    }
    assert_eq!(
        licence["allowance"],
        json!({"vcpus": 512, "gpus": 32, "entitlements": 1000}),
        "{licence}"
    );
    assert_eq!(licence["handed_out"]["vcpus"], 0, "{licence}");
    let mut terms = licence.clone();
    terms.as_object_mut().unwrap().remove("handed_out");
    let (status, _) = api
        .call(
            "PUT",
            "/v1/partners/edgenet/licence",
            Some(&edge_admin),
            Some(terms.clone()),
        )
        .await;
    assert_eq!(status, 403, "a partner does not set its own terms");
    let mut bad = terms.clone();
    bad["partner_share_percent"] = json!("150");
    let (status, answer) = api
        .call(
            "PUT",
            "/v1/partners/edgenet/licence",
            Some(&operator),
            Some(bad),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        answer["type"], "urn:vmcloud:problem:invalid-licence",
        "{answer}"
    );
    assert!(
        answer["detail"].as_str().unwrap().contains("0 to 100"),
        "{answer}"
    );

    // The school's site, as `vmcloud dev` makes it.
    let (_, sites) = api
        .call("GET", "/v1/partners/edgenet/sites", Some(&edge_admin), None)
        .await;
    assert_eq!(sites["sites"][0]["id"], "lycee-thiers", "{sites}");
    assert_eq!(sites["sites"][0]["seats"], 24, "{sites}");
    assert_eq!(
        sites["sites"][0]["ranges"],
        json!(["10.13.0.0/16"]),
        "{sites}"
    );

    // A site on this machine's address with one seat; bad sites refused whole.
    let site = json!({"name": "Médiathèque", "ranges": ["127.0.0.0/8"], "seats": 1});
    let (status, answer) = api
        .call(
            "PUT",
            "/v1/partners/edgenet/sites/mediatheque",
            Some(&edge_admin),
            Some(json!({"name": "Gym", "ranges": ["10.13.7.0/24"], "seats": 4})),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("your site `lycee-thiers`"),
        "{answer}"
    );
    let (status, answer) = api
        .call(
            "PUT",
            "/v1/partners/edgenet/sites/Médiathèque",
            Some(&edge_admin),
            Some(site.clone()),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        answer["type"], "urn:vmcloud:problem:invalid-site",
        "{answer}"
    );
    let (status, made) = api
        .call(
            "PUT",
            "/v1/partners/edgenet/sites/mediatheque",
            Some(&edge_admin),
            Some(site),
        )
        .await;
    assert_eq!(status, 200, "{made}");
    assert_eq!(made["seats_used"], 0, "{made}");

    // A household signs up on EdgeNet's portal: EdgeNet's customer.
    let email = "ines@durand.example";
    let (status, signed) = on_host(
        &base,
        "edgenet.localhost",
        "POST",
        "/v1/signup",
        None,
        Some(json!({"email": email, "password": PASSWORD,
            "organisation": {"name": "Les Durand", "kind": "household", "billing_country": "FR"}})),
    )
    .await;
    assert_eq!(status, 201, "{signed}");
    let home = signed["organisation_id"].as_str().unwrap().to_owned();
    let (status, _) = api.call("GET", &mailed_link(&fx, email), None, None).await;
    assert_eq!(status, 200);
    let ines = login(&api, email, PASSWORD).await;
    let mut profiles = Vec::new();
    for name in ["Inès", "Hugo"] {
        let (status, p) = api
            .call(
                "POST",
                &format!("/v1/households/{home}/profiles"),
                Some(&ines),
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(status, 201, "{p}");
        profiles.push(p["id"].as_str().unwrap().to_owned());
    }
    // From the médiathèque (this machine), the first launch takes the seat…
    let launch =
        |profile: &str| json!({"profile": profile, "title": "chess-arena", "region": "mrs-edge"});
    let path = format!("/v1/households/{home}/launch");
    let (status, first) = api
        .call("POST", &path, Some(&ines), Some(launch(&profiles[0])))
        .await;
    assert!((200..300).contains(&status), "{status} {first}");
    let (_, sites) = api
        .call("GET", "/v1/partners/edgenet/sites", Some(&edge_admin), None)
        .await;
    let used: Vec<(&str, &Value)> = sites["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), &s["seats_used"]))
        .collect();
    assert_eq!(
        used,
        [("lycee-thiers", &json!(0)), ("mediatheque", &json!(1))]
    );
    // …and the second is refused, saying why and what to do.
    let (status, refused) = api
        .call("POST", &path, Some(&ines), Some(launch(&profiles[1])))
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(
        refused["type"], "urn:vmcloud:problem:site-seats-used",
        "{refused}"
    );
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("all 1 seats of Médiathèque are in use"),
        "{refused}"
    );

    // A kiosk registered by its device code takes a seat of its own site, wherever it is.
    let (status, kiosk) = api
        .call(
            "PUT",
            "/v1/partners/edgenet/sites/kiosk",
            Some(&edge_admin),
            Some(json!({"name": "Borne du hall", "device_codes": ["borne-01"], "seats": 1})),
        )
        .await;
    assert_eq!(status, 200, "{kiosk}");
    assert_eq!(kiosk["device_codes"], json!(["BORNE-01"]), "{kiosk}");
    let mut on_kiosk = launch(&profiles[1]);
    on_kiosk["device"] = json!("BORNE-01");
    let (status, second) = api.call("POST", &path, Some(&ines), Some(on_kiosk)).await;
    assert!((200..300).contains(&status), "{status} {second}");
    let (_, kiosk) = api
        .call("GET", "/v1/partners/edgenet/sites", Some(&edge_admin), None)
        .await;
    assert!(
        kiosk["sites"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == "kiosk" && s["seats_used"] == 1),
        "{kiosk}"
    );

    // Its hosts join with its own tokens: new names only, never a VMCloud host's.
    let (status, token) = api
        .call(
            "POST",
            "/v1/join-tokens",
            Some(&edge_admin),
            Some(json!({"node_name": "mrs-pop-h09", "partner": "edgenet"})),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    assert!(
        token["token"].as_str().unwrap().starts_with("vmcjoin_"),
        "{token}"
    );
    let (_, nodes) = api.call("GET", "/v1/nodes", Some(&operator), None).await;
    let vmcloud_node = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["region"] != "mrs-edge")
        .and_then(|n| n["id"].as_str())
        .unwrap()
        .to_owned();
    let (status, answer) = api
        .call(
            "POST",
            "/v1/join-tokens",
            Some(&edge_admin),
            Some(json!({"node_name": vmcloud_node, "partner": "edgenet"})),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    let (status, _) = api
        .call(
            "POST",
            "/v1/join-tokens",
            Some(&edge_admin),
            Some(json!({"node_name": "mrs-pop-h10"})),
        )
        .await;
    assert_eq!(status, 403, "a VMCloud token is the operators'");

    // EdgeNet's POP runs its customers' work only.
    let (ann, _, _) = customer(&fx, &api, "ann@example.org", "Ann's Shop").await;
    let (status, answer) = api
        .call(
            "POST",
            "/v1/instances",
            Some(&ann),
            Some(json!({"flavor": "vps-s", "image": "debian-12", "region": "mrs-edge"})),
        )
        .await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(
        answer["type"], "urn:vmcloud:problem:pop-reserved",
        "{answer}"
    );

    // The month's statement, JSON and CSV; another partner's is not there for EdgeNet.
    let (_, customers) = api
        .call(
            "GET",
            "/v1/partners/edgenet/customers",
            Some(&edge_admin),
            None,
        )
        .await;
    let period = customers["customers"][0]["created_at"].as_str().unwrap()[..7].to_owned();
    let (status, st) = api
        .call(
            "GET",
            &format!("/v1/partners/edgenet/statements/{period}"),
            Some(&edge_admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["closed"], false, "{st}");
    assert_eq!(st["currency"], "EUR", "{st}");
    assert_eq!(st["customers"].as_array().unwrap().len(), 3, "{st}");
    let users = st["active_users"].as_u64().unwrap();
    let fees: Decimal = st["licence_fees"].as_str().unwrap().parse().unwrap();
    assert!(users <= 1, "{st}");
    assert_eq!(
        fees,
        Decimal::new(25000, 2) + Decimal::new(150, 2) * Decimal::from(users),
        "{st}"
    );
    let client = reqwest::Client::new();
    let resp = client
        .get(format!(
            "{base}/v1/partners/edgenet/statements/{period}?format=csv"
        ))
        .bearer_auth(&edge_admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/csv; charset=utf-8"
    );
    let text = resp.text().await.unwrap();
    assert!(
        text.starts_with("kind,org_id,name,active_users,amount,currency\n"),
        "{text}"
    );
    assert!(text.contains(",Les Durand,"), "{text}");
    assert!(text.contains("\nbase_fee,,,,250.00,EUR\n"), "{text}");
    let (status, answer) = api
        .call(
            "GET",
            "/v1/partners/edgenet/statements/2026-13",
            Some(&edge_admin),
            None,
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    let (status, _) = api
        .call(
            "GET",
            &format!("/v1/partners/edgenet/statements/{period}"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(status, 404, "a stranger finds no partner");
}
