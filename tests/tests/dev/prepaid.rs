//! Prepaid balance against `localstripe`: a customer tops up with the saved card (charged at
//! once), billing staff record a bank transfer with the bank's reference (once), a customer
//! cannot record a transfer, and without a saved card a top-up says what to do first.

use serde_json::json;

use super::customers::{Api, customer};
use super::payments::fleet_with_localstripe;
use super::{cli_fails, cli_json};

const TEST: &str = "dev::prepaid::top_ups_by_card_and_by_bank_transfer";

#[tokio::test]
async fn top_ups_by_card_and_by_bank_transfer() {
    let Some((_ls, fx)) = fleet_with_localstripe(TEST).await else {
        return;
    };
    let api = Api {
        base: &fx.fleet.api,
    };
    let (ann, ann_org, _) = customer(&fx, &api, "ann@example.org", "Acme SAS").await;

    // No card yet: the top-up says to save one first, and nothing is added.
    let (status, body) = api
        .call(
            "POST",
            "/v1/billing/top-ups",
            Some(&ann),
            Some(json!({"amount": "25.00"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("save a card"),
        "{body}"
    );

    let (status, body) = api
        .call(
            "POST",
            "/v1/billing/payment-method",
            Some(&ann),
            Some(json!({"card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Not an amount: refused before any card is charged.
    let (status, body) = api
        .call(
            "POST",
            "/v1/billing/top-ups",
            Some(&ann),
            Some(json!({"amount": "lots"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("25.00"), "{body}");

    // By card: charged through Stripe at once, the payment intent is the reference.
    let (status, body) = api
        .call(
            "POST",
            "/v1/billing/top-ups",
            Some(&ann),
            Some(json!({"amount": "25.00"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["balance"], "25.00", "{body}");
    assert_eq!(body["currency"], "EUR", "{body}");
    assert_eq!(body["top_ups"][0]["method"], "card", "{body}");
    assert!(
        body["top_ups"][0]["reference"]
            .as_str()
            .unwrap()
            .starts_with("pi_"),
        "{body}"
    );

    // A customer cannot record a bank transfer; billing staff can, once per reference.
    let (status, body) = api
        .call(
            "POST",
            "/v1/billing/top-ups",
            Some(&ann),
            Some(json!({"amount": "1000.00", "method": "bank-transfer", "reference": "SEPA-1"})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let staff = cli_json(
        &fx,
        &[
            "billing",
            "top-up",
            "10.00",
            "--org",
            &ann_org,
            "--bank-transfer",
            "SEPA-2026-12-0007",
        ],
    );
    assert_eq!(staff["balance"], "35.00", "{staff}");
    let again = cli_fails(
        &fx,
        &[
            "billing",
            "top-up",
            "10.00",
            "--org",
            &ann_org,
            "--bank-transfer",
            "SEPA-2026-12-0007",
        ],
    );
    assert!(again.contains("SEPA-2026-12-0007"), "{again}");
    let (_, body) = api
        .call("GET", "/v1/billing/top-ups", Some(&ann), None)
        .await;
    assert_eq!(body["balance"], "35.00", "{body}");
    assert_eq!(body["top_ups"].as_array().unwrap().len(), 2, "{body}");
}
