//! White-label partners through `vmcloud dev`: the demo partner (EdgeNet, on
//! `edgenet.localhost`) and a second one an operator makes (Fibra, on `fibra.localhost`).
//! Each partner's staff see their own brand, customers and POP and nothing of the other's; a
//! sign-up on a partner's domain becomes its customer; VMCloud's staff see a partner's
//! customers counted, and one in full only once it opened support access. Both portals in
//! Chromium: each shows its own brand and customers only.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use super::browser::{Shots, browser, click, fill, find_program, start_driver, text, wait_for};
use super::customers::{Api, PASSWORD, customer};
use super::{Fixture, eventually};

const TEST: &str = "dev::partners::two_partners_on_two_domains_see_only_their_own";

/// The API as reached on a partner's domain (its `Host`), resolved to the fleet.
pub(super) async fn on_host(
    base: &str,
    host: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let addr: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let client = reqwest::Client::builder()
        .resolve(host, addr)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut req = client.request(
        method.parse().unwrap(),
        format!("http://{host}:{}{path}", addr.port()),
    );
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub(super) async fn login(api: &Api<'_>, email: &str, password: &str) -> String {
    let (status, body) = api
        .call(
            "POST",
            "/v1/login",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

fn names(list: &Value) -> Vec<String> {
    list["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn two_partners_on_two_domains_see_only_their_own() {
    let fx = Fixture::start_with(&["--game-hosts", "1", "--game-host-shape", "gpu-1xrtx4090"]);
    let base = fx.fleet.api.clone();
    let api = Api { base: &base };
    let operator = fx.fleet.token.clone();
    let password = std::fs::read_to_string(fx.fleet.data_dir.join("demo-password")).unwrap();
    let password = password.trim().to_owned();

    // The brand follows the host.
    let (_, vmcloud) = api.call("GET", "/v1/brand", None, None).await;
    assert_eq!(vmcloud["name"], "VMCloud", "{vmcloud}");
    let (_, edge) = on_host(&base, "edgenet.localhost", "GET", "/v1/brand", None, None).await;
    assert_eq!(edge["name"], "EdgeNet Play", "{edge}");
    assert_eq!(edge["partner"], "edgenet", "{edge}");

    // An operator makes a second partner; its first admin signed up before.
    let (lea, _, _) = customer(&fx, &api, "lea@fibra.example", "Léa").await;
    let fibra = json!({"id": "fibra", "name": "Fibra SA", "billing_country": "FR",
        "admin_email": "lea@fibra.example", "domains": ["fibra.localhost"],
        "brand": {"display_name": "Fibra Games", "primary_colour": "#5b2a86", "accent_colour": "#e0a100"}});
    let (status, denied) = api
        .call("POST", "/v1/partners", Some(&lea), Some(fibra.clone()))
        .await;
    assert_eq!(status, 403, "only operators make partners: {denied}");
    // Bad input, each refused with what to give; nothing made.
    for (bad, says) in [
        (json!({"id": "Fibra!"}), "partner id `Fibra!`"),
        (
            json!({"domains": ["edgenet.localhost"]}),
            "already the domain of partner edgenet",
        ),
        (
            json!({"domains": ["http://fibra.localhost:8080"]}),
            "is not a host name",
        ),
        (
            json!({"brand": {"primary_colour": "purple"}}),
            "write it #rrggbb",
        ),
        (
            json!({"admin_email": "nobody@fibra.example"}),
            "signs up first",
        ),
    ] {
        let mut body = fibra.clone();
        for (k, v) in bad.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, answer) = api
            .call("POST", "/v1/partners", Some(&operator), Some(body))
            .await;
        assert!(status == 422 || status == 409, "{status} {answer}");
        assert!(
            answer["detail"].as_str().unwrap().contains(says),
            "{answer}"
        );
    }
    let (status, made) = api
        .call("POST", "/v1/partners", Some(&operator), Some(fibra))
        .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["brand"]["name"], "Fibra Games", "{made}");

    // EdgeNet's admin (the demo partner's, as `vmcloud dev` prints) sees EdgeNet only.
    let edge_admin = login(&api, "admin@edgenet.example", &password).await;
    let (_, list) = api
        .call("GET", "/v1/partners", Some(&edge_admin), None)
        .await;
    let ids: Vec<&str> = list["partners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["edgenet"], "{list}");
    assert_eq!(list["partners"][0]["pops"], json!(["mrs-edge"]), "{list}");
    let (status, _) = api
        .call("GET", "/v1/partners/fibra", Some(&edge_admin), None)
        .await;
    assert_eq!(status, 404, "another partner does not exist for EdgeNet");
    let (status, _) = api
        .call(
            "GET",
            "/v1/partners/fibra/customers",
            Some(&edge_admin),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (_, edge_customers) = api
        .call(
            "GET",
            "/v1/partners/edgenet/customers",
            Some(&edge_admin),
            None,
        )
        .await;
    assert_eq!(edge_customers["total"], 2, "{edge_customers}");
    assert_eq!(
        names(&edge_customers),
        ["Famille Durand", "Lycée Thiers"],
        "{edge_customers}"
    );
    // A partner cannot take another partner's domain.
    let (status, answer) = api
        .call(
            "PATCH",
            "/v1/partners/edgenet",
            Some(&edge_admin),
            Some(json!({"domains": ["edgenet.localhost", "fibra.localhost"]})),
        )
        .await;
    assert_eq!(status, 409, "{answer}");

    // EdgeNet makes a customer; its owner is invited in EdgeNet's name, to EdgeNet's portal.
    let (status, petit) = api
        .call(
            "POST",
            "/v1/partners/edgenet/customers",
            Some(&edge_admin),
            Some(json!({"name": "Famille Petit", "kind": "household",
                "billing_country": "FR", "owner_email": "marc@petit.example"})),
        )
        .await;
    assert_eq!(status, 201, "{petit}");
    assert_eq!(petit["invited"], json!(["marc@petit.example"]), "{petit}");
    let petit_org = petit["id"].as_str().unwrap().to_owned();
    let mail = std::fs::read_dir(fx.fleet.data_dir.join("mail"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .find(|m| m.contains("To: marc@petit.example"))
        .expect("the invitation mail");
    assert!(
        mail.contains("on EdgeNet Play") && mail.contains("http://edgenet.localhost:"),
        "{mail}"
    );
    // Its staff administer it; the other partner and VMCloud's customers find nothing.
    let (status, org) = api
        .call(
            "GET",
            &format!("/v1/organisations/{petit_org}"),
            Some(&edge_admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{org}");
    let fibra_admin = login(&api, "lea@fibra.example", PASSWORD).await;
    for who in [&fibra_admin, &lea] {
        let (status, _) = api
            .call(
                "GET",
                &format!("/v1/organisations/{petit_org}"),
                Some(who),
                None,
            )
            .await;
        assert_eq!(status, 404);
    }
    let (status, _) = api
        .call("GET", "/v1/partners/edgenet/pop", Some(&fibra_admin), None)
        .await;
    assert_eq!(status, 404, "another partner's POP");

    // VMCloud's operators see EdgeNet's customers counted, not listed, until one opens access.
    let (_, seen) = api
        .call(
            "GET",
            "/v1/partners/edgenet/customers",
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(seen["total"], 3, "{seen}");
    assert_eq!(seen["customers"], json!([]), "{seen}");
    let (status, _) = api
        .call(
            "GET",
            &format!("/v1/organisations/{petit_org}"),
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(status, 404, "my customer's customer is not my customer");
    let (status, opened) = api
        .call(
            "POST",
            &format!("/v1/organisations/{petit_org}/support-access"),
            Some(&edge_admin),
            Some(json!({"hours": 2})),
        )
        .await;
    assert_eq!(status, 200, "{opened}");
    let (status, _) = api
        .call(
            "GET",
            &format!("/v1/organisations/{petit_org}"),
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(status, 200, "with support access open");
    let (status, answer) = api
        .call(
            "POST",
            &format!("/v1/organisations/{petit_org}/support-access"),
            Some(&edge_admin),
            Some(json!({"hours": 5000})),
        )
        .await;
    assert_eq!(status, 422, "{answer}");

    // A sign-up on Fibra's portal is Fibra's customer.
    let (status, signed) = on_host(
        &base,
        "fibra.localhost",
        "POST",
        "/v1/signup",
        None,
        Some(json!({"email": "tom@example.org", "password": PASSWORD,
            "organisation": {"name": "Tom", "kind": "household", "billing_country": "FR"}})),
    )
    .await;
    assert_eq!(status, 201, "{signed}");
    let (_, fibra_customers) = api
        .call(
            "GET",
            "/v1/partners/fibra/customers",
            Some(&fibra_admin),
            None,
        )
        .await;
    assert_eq!(names(&fibra_customers), ["Tom"], "{fibra_customers}");
    let mail = std::fs::read_dir(fx.fleet.data_dir.join("mail"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .find(|m| m.contains("To: tom@example.org"))
        .expect("the verification mail");
    assert!(
        mail.contains("Welcome to Fibra Games") && mail.contains("http://fibra.localhost:"),
        "{mail}"
    );

    // EdgeNet's POP: its hosts, not VMCloud's datacenters.
    let pop = eventually(Duration::from_secs(60), "EdgeNet's POP hosts", || async {
        let (_, pop) = api
            .call("GET", "/v1/partners/edgenet/pop", Some(&edge_admin), None)
            .await;
        (pop["hosts"].as_array().map_or(0, Vec::len) == 2).then_some(pop)
    })
    .await;
    assert!(
        pop["regions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["region"] == "mrs-edge"),
        "{pop}"
    );
    // Its hosts are EdgeNet's to cordon, not Fibra's; VMCloud's hosts are not EdgeNet's.
    let pop_node = pop["hosts"][0]["id"].as_str().unwrap().to_owned();
    let (status, answer) = api
        .call(
            "PATCH",
            &format!("/v1/nodes/{pop_node}"),
            Some(&fibra_admin),
            Some(json!({"state": "cordoned"})),
        )
        .await;
    assert!(status == 403 || status == 404, "{status} {answer}");
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
            "PATCH",
            &format!("/v1/nodes/{vmcloud_node}"),
            Some(&edge_admin),
            Some(json!({"state": "cordoned"})),
        )
        .await;
    assert_eq!(status, 403, "{answer}");

    // Both portals in Chromium.
    let (Some(chromium), Some(chromedriver)) = (
        find_program(&["chromium", "chromium-browser", "google-chrome"]),
        find_program(&["chromedriver"]),
    ) else {
        vmcloud_proto::testing::skip(
            TEST,
            "no chromium and chromedriver on PATH (scripts/test installs Debian's chromium and chromium-driver as root)",
        );
        return;
    };
    let port = base.rsplit(':').next().unwrap().to_owned();
    let driver = start_driver(&chromedriver).await;
    let c = browser(&driver, &chromium).await;
    let mut shots = Shots::new("partners");
    for (domain, email, pass, brand, own, other) in [
        (
            "edgenet.localhost",
            "admin@edgenet.example",
            password.as_str(),
            "EdgeNet Play",
            "Lycée Thiers",
            "Tom",
        ),
        (
            "fibra.localhost",
            "lea@fibra.example",
            PASSWORD,
            "Fibra Games",
            "Tom",
            "Lycée Thiers",
        ),
    ] {
        let site = format!("http://{domain}:{port}");
        c.goto(&format!("{site}/login")).await.unwrap();
        wait_for(&c, "#email", Duration::from_secs(10)).await;
        assert_eq!(text(&c, "#brand").await, brand);
        fill(&c, "#email", email).await;
        fill(&c, "#password", pass).await;
        click(&c, "#login").await;
        wait_for(&c, "#logout", Duration::from_secs(10)).await;
        c.goto(&format!("{site}/partner")).await.unwrap();
        wait_for(&c, "#customers", Duration::from_secs(10)).await;
        assert_eq!(text(&c, "#partner-name").await, brand);
        let customers = text(&c, "#customers").await;
        assert!(
            customers.contains(own) && !customers.contains(other),
            "{domain}: {customers}"
        );
        let page = c.source().await.unwrap();
        for stranger in ["EdgeNet Play", "Fibra Games"]
            .into_iter()
            .filter(|b| *b != brand)
        {
            assert!(!page.contains(stranger), "{domain} shows {stranger}");
        }
        shots.take(&c, domain).await;
    }
    // EdgeNet's admin makes a customer from the console.
    let site = format!("http://edgenet.localhost:{port}");
    c.goto(&format!("{site}/partner")).await.unwrap();
    wait_for(&c, "#new-customer", Duration::from_secs(10)).await;
    fill(&c, "#customer-name", "Médiathèque de Marseille").await;
    fill(&c, "#customer-owner", "accueil@mediatheque.example").await;
    click(&c, "#create-customer").await;
    wait_for(&c, ".notice", Duration::from_secs(10)).await;
    assert!(
        text(&c, "#customers")
            .await
            .contains("Médiathèque de Marseille")
    );
    assert!(text(&c, "#pops").await.contains("mrs-edge"));
    // Its school's site and this month's statement.
    let sites = text(&c, "#sites").await;
    assert!(
        sites.contains("Lycée Thiers")
            && sites.contains("10.13.0.0/16")
            && sites.contains("0 / 24"),
        "{sites}"
    );
    let fees = text(&c, "#licence-fees").await;
    assert!(
        fees.starts_with("250.00") && fees.ends_with("EUR"),
        "{fees}"
    );
    shots.take(&c, "customer-made").await;
    // Its admin cordons one of its POP's hosts, and puts it back.
    let node = pop["hosts"][0]["id"].as_str().unwrap().to_owned();
    click(&c, &format!("#cordon-{node}")).await;
    wait_for(&c, &format!("#ready-{node}"), Duration::from_secs(10)).await;
    assert_eq!(
        text(&c, &format!("tr[data-node='{node}'] td.state")).await,
        "cordoned"
    );
    shots.take(&c, "pop-host-cordoned").await;
    click(&c, &format!("#ready-{node}")).await;
    wait_for(&c, &format!("#cordon-{node}"), Duration::from_secs(10)).await;
    let _ = c.close().await;
}
