//! Billing through a running `vmcloud dev`, on its test clock (nothing sleeps a month): a
//! customer's instances show in month-to-date usage; the clock moves two months on; an
//! operator bills both months with the CLI; the customer sees numbered, reverse-charged
//! invoices (a French company with a VAT id), each month's instances at their monthly cap;
//! a bank transfer pays one, a void of a paid one makes a credit note, a second run of a
//! month is refused, and another organisation finds none of it.

use serde_json::{Value, json};

use super::customers::{Api, PASSWORD, customer};
use super::{Fixture, cli_fails, cli_json, eventually};

fn month_after(period: &str) -> String {
    let (y, m) = period.split_once('-').unwrap();
    let (y, m): (i32, u32) = (y.parse().unwrap(), m.parse().unwrap());
    if m == 12 {
        format!("{}-01", y + 1)
    } else {
        format!("{y}-{:02}", m + 1)
    }
}

fn number_of(invoice: &Value) -> (i32, u32) {
    let n = invoice["number"].as_str().expect("a numbered invoice");
    let parts: Vec<&str> = n.split('-').collect();
    assert_eq!(parts[0], "VMC", "{n}");
    assert_eq!(parts[2].len(), 6, "{n}");
    (parts[1].parse().unwrap(), parts[2].parse().unwrap())
}

#[tokio::test]
async fn months_of_usage_become_numbered_invoices_on_the_test_clock() {
    let fx = Fixture::start();
    super::to_mid_month(&fx);
    let api = Api {
        base: &fx.fleet.api,
    };
    let (mut ann, org, project) = customer(&fx, &api, "ann@example.org", "Acme SAS").await;
    let (mut bob, _, _) = customer(&fx, &api, "bob@example.org", "Other SARL").await;

    // The address invoices print (six lines are too many: nothing changes).
    let (status, body) = api
        .call(
            "PATCH",
            &format!("/v1/organisations/{org}"),
            Some(&ann),
            Some(json!({"billing_address": "1\n2\n3\n4\n5\n6"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("5 at most"),
        "{body}"
    );
    let (status, body) = api
        .call(
            "PATCH",
            &format!("/v1/organisations/{org}"),
            Some(&ann),
            Some(json!({"billing_address": "3 rue Oberkampf\n75011 Paris\nFrance"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["billing_address"][1], "75011 Paris", "{body}");

    // A coupon made by billing staff, redeemed by the customer (once).
    cli_json(
        &fx,
        &[
            "billing",
            "coupon",
            "WELCOME-5",
            "--amount",
            "5.00",
            "--currency",
            "EUR",
        ],
    );
    let (status, body) = api
        .call(
            "POST",
            "/v1/billing/redeem",
            Some(&ann),
            Some(json!({"code": "welcome-5"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .call(
            "POST",
            "/v1/billing/redeem",
            Some(&ann),
            Some(json!({"code": "welcome-5"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");

    // The trial credit came with the verified sign-up.
    let (status, credits) = api.call("GET", "/v1/credits", Some(&ann), None).await;
    assert_eq!(status, 200, "{credits}");
    assert_eq!(credits["credits"][0]["kind"], "trial", "{credits}");
    assert_eq!(credits["credits"][0]["amount"], "50", "{credits}");

    let mut instances = Vec::new();
    for name in ["web-1", "web-2"] {
        let (status, made) = api
            .call(
                "POST",
                &format!("/v1/instances?project={project}"),
                Some(&ann),
                Some(
                    json!({"name": name, "flavor": "vps-m", "image": "debian-12", "region": "par"}),
                ),
            )
            .await;
        assert_eq!(status, 201, "{made}");
        instances.push(made["id"].as_str().unwrap().to_owned());
    }
    // Month to date: both instances, once placed.
    let usage: Value = eventually(
        std::time::Duration::from_secs(30),
        "both instances in the month's usage",
        || async {
            let (status, u) = api.call("GET", "/v1/usage", Some(&ann), None).await;
            assert_eq!(status, 200, "{u}");
            let rows = u["rows"].as_array().cloned().unwrap_or_default();

            instances
                .iter()
                .all(|i| rows.iter().any(|r| r["resource"] == i.as_str()))
                .then_some(u)
        },
    )
    .await;
    assert_eq!(usage["currency"], "EUR");
    let first = usage["from"].as_str().unwrap()[..7].to_owned();
    let second = month_after(&first);
    let (status, forecast) = api
        .call("GET", "/v1/billing/forecast", Some(&ann), None)
        .await;
    assert_eq!(status, 200, "{forecast}");
    assert_eq!(forecast["period"], first.as_str());

    // Not a month has passed: the month cannot be billed yet.
    let early = cli_fails(&fx, &["billing", "run", &first]);
    assert!(early.contains("has not ended"), "{early}");
    // The customer cannot move the clock or run billing.
    let (status, _) = api
        .call(
            "POST",
            "/v1/test-clock",
            Some(&ann),
            Some(json!({"advance_s": 60})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = api
        .call(
            "POST",
            "/v1/billing/runs",
            Some(&ann),
            Some(json!({"period": first})),
        )
        .await;
    assert_eq!(status, 403);

    // Three months on (the trial credit, 30 days, has expired by the third).
    let clock = cli_json(&fx, &["billing", "clock", "93d"]);
    assert!(clock["lead_s"].as_i64().unwrap() >= 93 * 86_400, "{clock}");
    // Log-in sessions last a week: log in again.
    for (token, email) in [(&mut ann, "ann@example.org"), (&mut bob, "bob@example.org")] {
        let (status, body) = api
            .call(
                "POST",
                "/v1/login",
                None,
                Some(json!({"email": email, "password": PASSWORD})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        *token = body["token"].as_str().unwrap().to_owned();
    }
    let periods = [first.clone(), second.clone(), month_after(&second)];
    let mut numbers = Vec::new();
    for p in &periods {
        let run = cli_json(&fx, &["billing", "run", p]);
        for i in run["invoices"].as_array().unwrap() {
            numbers.push(number_of(i));
        }
    }
    let again = cli_fails(&fx, &["billing", "run", &second]);
    assert!(again.contains("was billed at"), "{again}");
    // Numbers have no gaps: each run's invoices follow the last (per year).
    for w in numbers.windows(2) {
        assert!(
            w[1] == (w[0].0, w[0].1 + 1) || (w[1].0 == w[0].0 + 1 && w[1].1 == 1),
            "{numbers:?}"
        );
    }

    // The customer's invoices: one a month, finalized.
    let (status, list) = api.call("GET", "/v1/invoices", Some(&ann), None).await;
    assert_eq!(status, 200, "{list}");
    let invoices = list["invoices"].as_array().unwrap();
    assert_eq!(invoices.len(), 3, "{list}");
    let mut docs = Vec::new();
    for i in invoices {
        let (status, doc) = api
            .call(
                "GET",
                &format!("/v1/invoices/{}", i["id"].as_str().unwrap()),
                Some(&ann),
                None,
            )
            .await;
        assert_eq!(status, 200, "{doc}");
        docs.push(doc);
    }
    // A billed month's usage is still there to read (history keeps it once invoiced), and
    // its cost is what the invoice charged for usage.
    let (status, usage) = api
        .call(
            "GET",
            &format!("/v1/usage?period={second}"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(
        usage["rows"].as_array().unwrap().len(),
        instances.len(),
        "{usage}"
    );
    let charged: rust_decimal::Decimal = docs[1]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == "usage")
        .map(|l| {
            l["amount"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        })
        .sum();
    assert_eq!(
        usage["total"].as_str().unwrap(),
        charged.to_string(),
        "{usage}"
    );
    // Whole months of each instance: its flavor's monthly cap (vps-m: 9.20 €).
    for doc in &docs[1..] {
        for i in &instances {
            let line = doc["lines"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["description"].as_str().unwrap().contains(i.as_str()))
                .unwrap_or_else(|| panic!("no line for {i}: {doc}"));
            assert_eq!(line["amount"], "9.20", "{line}");
            assert!(
                line["description"]
                    .as_str()
                    .unwrap()
                    .contains("monthly cap")
            );
        }
    }
    for doc in &docs {
        // Invariant 10 on what the API shows: the lines add up to the net.
        let sum: rust_decimal::Decimal = doc["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                l["amount"]
                    .as_str()
                    .unwrap()
                    .parse::<rust_decimal::Decimal>()
                    .unwrap()
            })
            .sum();
        assert_eq!(
            sum.to_string(),
            doc["totals"]["net"].as_str().unwrap(),
            "{doc}"
        );
        // A French company with a VAT id: reverse charge, with its mention.
        assert_eq!(doc["totals"]["vat_scheme"], "reverse-charge", "{doc}");
        assert!(
            doc["totals"]["mention"]
                .as_str()
                .unwrap()
                .contains("Reverse charge")
        );
        assert_eq!(doc["seller"]["name"], "VMCloud OÜ");
        assert_eq!(doc["buyer"]["vat_id"], "FR40303265045");
    }

    // The third month is past the trial credit: 2 × 9.20 due. Paid by bank transfer (an
    // operator records it), then corrected by a credit note.
    let third = &docs[2];
    let id = third["id"].as_str().unwrap().to_owned();
    assert_eq!(third["totals"]["amount_due"], "18.40", "{third}");
    assert_eq!(third["status"], "open", "{third}");
    let wrong = cli_fails(
        &fx,
        &[
            "billing",
            "pay",
            &id,
            "--reference",
            "SEPA-1",
            "--amount",
            "1.00",
        ],
    );
    assert!(wrong.contains("record the whole amount due"), "{wrong}");
    // Billing staff see it among the receivables (issued just now: not due yet); Ann may not
    // look at them.
    let owed = cli_json(&fx, &["billing", "receivables"]);
    let mine = owed["organisations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["organisation"] == org.as_str())
        .unwrap_or_else(|| panic!("{org} is not among the receivables: {owed}"))
        .clone();
    assert_eq!(mine["amount_due"], "18.40", "{owed}");
    assert_eq!(mine["open_invoices"], 1, "{owed}");
    assert_eq!(mine["days_overdue"], 0, "{owed}");
    let eur = &owed["totals"]["EUR"];
    assert_eq!(eur["total"], eur["not_due"], "{owed}");
    let (status, _) = api
        .call("GET", "/v1/billing/receivables", Some(&ann), None)
        .await;
    assert_eq!(status, 403);
    let paid = cli_json(
        &fx,
        &[
            "billing",
            "pay",
            &id,
            "--reference",
            "SEPA-1",
            "--amount",
            "18.40",
        ],
    );
    assert_eq!(paid["status"], "paid", "{paid}");
    cli_json(
        &fx,
        &["billing", "void", &id, "--reason", "goodwill: a slow host"],
    );
    let (_, list) = api.call("GET", "/v1/invoices", Some(&ann), None).await;
    let note = list["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "credit-note")
        .unwrap_or_else(|| panic!("no credit note: {list}"))
        .clone();
    let last = *numbers.last().unwrap();
    assert_eq!(number_of(&note), (last.0, last.1 + 1), "{note}");
    assert_eq!(note["total"], "-18.40", "{note}");
    let (_, after) = api
        .call("GET", &format!("/v1/invoices/{id}"), Some(&ann), None)
        .await;
    assert_eq!(
        after["lines"], third["lines"],
        "a paid invoice never changes"
    );
    let ids: Vec<String> = docs
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();

    // The PDF: what an EU invoice must say, in the document itself.
    let pdf_path = fx.fleet.data_dir.join("invoice.pdf");
    let out = fx
        .fleet
        .cli(&["billing", "pdf", &id, "--out", pdf_path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pdf = std::fs::read(&pdf_path).unwrap();
    assert!(pdf.starts_with(b"%PDF-"), "not a PDF");
    let text = String::from_utf8_lossy(&pdf);
    for needle in [
        third["number"].as_str().unwrap(),
        "FR40303265045",
        "75011 Paris",
        "EE102345678",
        "Reverse charge",
        "Date of supply",
        "Amount due",
        "18.40 EUR",
    ] {
        assert!(text.contains(needle), "the PDF does not say {needle:?}");
    }
    let (status, _) = api
        .call("GET", &format!("/v1/invoices/{id}/pdf"), Some(&bob), None)
        .await;
    assert_eq!(status, 404);
    // The journal of the month the third invoice was issued in: every document balances.
    let issued = &third["issued_at"].as_str().unwrap()[..7];
    let out = fx.fleet.cli(&["billing", "journal", issued]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut balance: std::collections::BTreeMap<String, rust_decimal::Decimal> = Default::default();
    for row in csv.lines().skip(1) {
        // The last three cells: debit, credit, currency.
        let cells: Vec<&str> = row.rsplitn(4, ',').collect();
        let (credit, debit) = (cells[1], cells[2]);
        let number = row.split(',').nth(1).unwrap().to_owned();
        *balance.entry(number).or_default() += debit.parse::<rust_decimal::Decimal>().unwrap()
            - credit.parse::<rust_decimal::Decimal>().unwrap();
    }
    assert!(
        balance.contains_key(third["number"].as_str().unwrap()),
        "{csv}"
    );
    assert!(
        balance.values().all(|b| b.is_zero()),
        "unbalanced: {balance:?}\n{csv}"
    );

    // Another organisation finds nothing of it.
    for path in [
        format!("/v1/invoices/{}", ids[0]),
        format!("/v1/invoices?org={org}"),
        format!("/v1/usage?org={org}"),
        format!("/v1/credits?org={org}"),
    ] {
        let (status, body) = api.call("GET", &path, Some(&bob), None).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
}

#[tokio::test]
async fn the_leader_bills_a_month_once_it_has_ended() {
    let fx = Fixture::start_with(&["--billing-run-after", "1s"]);
    let api = Api {
        base: &fx.fleet.api,
    };
    let (ann, _, project) = customer(&fx, &api, "ann@example.org", "Acme SAS").await;
    let (status, made) = api
        .call(
            "POST",
            &format!("/v1/instances?project={project}"),
            Some(&ann),
            Some(json!({"name": "web", "flavor": "vps-s", "image": "debian-12", "region": "par"})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let (_, usage) = api.call("GET", "/v1/usage", Some(&ann), None).await;
    let first = usage["from"].as_str().unwrap()[..7].to_owned();
    // Nothing is billed while the month runs.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (_, list) = api.call("GET", "/v1/invoices", Some(&ann), None).await;
    assert_eq!(list["invoices"].as_array().unwrap().len(), 0, "{list}");

    cli_json(&fx, &["billing", "clock", "32d"]);
    let (status, login) = api
        .call(
            "POST",
            "/v1/login",
            None,
            Some(json!({"email": "ann@example.org", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let ann = login["token"].as_str().unwrap().to_owned();
    let list: Value = eventually(
        std::time::Duration::from_secs(60),
        "the leader's run of the month",
        || async {
            let (_, list) = api.call("GET", "/v1/invoices", Some(&ann), None).await;
            (!list["invoices"].as_array().unwrap().is_empty()).then_some(list)
        },
    )
    .await;
    assert_eq!(list["invoices"][0]["period"], first.as_str(), "{list}");
    assert_ne!(list["invoices"][0]["status"], "draft", "{list}");
    // Once: the run is not made again (an operator running it by hand is refused).
    let again = cli_fails(&fx, &["billing", "run", &first]);
    assert!(again.contains("was billed at"), "{again}");
}

/// The console's billing page in Chromium: the month's cost so far with its chart, then —
/// a month later on the test clock — the invoice listed, its PDF downloaded through the
/// console, and the page in French.
#[tokio::test]
async fn the_console_shows_the_months_cost_and_the_invoices() {
    use super::browser::{Shots, browser, click, fill, find_program, start_driver, text, wait_for};
    use std::time::Duration;
    const TEST: &str = "dev::billing::the_console_shows_the_months_cost_and_the_invoices";
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
    // With a localstripe when there is one: the card form is shown in test mode.
    let stripe = match vmcloud_tests::python_with("localstripe") {
        Some(python) => Some(super::payments::start_localstripe(&python).await),
        None => {
            eprintln!("no localstripe: the card form is not tried");
            None
        }
    };
    let fx = match &stripe {
        Some(ls) => Fixture::start_with(&[
            "--stripe-api",
            &ls.url,
            "--stripe-secret-key",
            "sk_test_vmcloud",
        ]),
        None => Fixture::start(),
    };
    let base = fx.fleet.api.clone();
    let api = Api { base: &base };
    let (ann, org, project) = customer(&fx, &api, "ann@example.org", "Acme SAS").await;
    for name in ["web-1", "db-1"] {
        let (status, made) = api
            .call(
                "POST",
                &format!("/v1/instances?project={project}"),
                Some(&ann),
                Some(
                    json!({"name": name, "flavor": "vps-m", "image": "debian-12", "region": "par"}),
                ),
            )
            .await;
        assert_eq!(status, 201, "{made}");
    }
    // Two days of use (on the test clock) before Ann looks.
    cli_json(&fx, &["billing", "clock", "2d"]);
    let driver = start_driver(&chromedriver).await;
    let c = browser(&driver, &chromium).await;
    let mut shots = Shots::new("billing");
    async fn log_in(c: &fantoccini::Client, base: &str) {
        c.goto(&format!("{base}/login")).await.unwrap();
        fill(c, "#email", "ann@example.org").await;
        fill(c, "#password", PASSWORD).await;
        click(c, "#login").await;
        wait_for(c, "#projects", Duration::from_secs(10)).await;
    }
    log_in(&c, &base).await;
    c.goto(&format!("{}/console/orgs/{org}", fx.fleet.api))
        .await
        .unwrap();
    click(&c, "#billing-link").await;
    wait_for(&c, "#month-to-date", Duration::from_secs(10)).await;
    assert!(text(&c, "#month-to-date").await.ends_with("EUR"));
    assert_eq!(text(&c, "#credit-left").await, "50 EUR");
    assert!(text(&c, "#usage").await.contains("vps-m"));
    assert!(
        c.find(fantoccini::Locator::Css("#cost-chart svg rect"))
            .await
            .is_ok(),
        "no bar in the chart"
    );
    assert!(text(&c, "#invoices").await.contains("No invoice yet"));
    shots.take(&c, "month-to-date").await;
    // A monthly plan, taken from the page (the first on offer), then cancelled: it runs to
    // the end of the month.
    assert!(text(&c, "#plan").await.contains("No monthly plan"));
    click(&c, "#take-plan").await;
    wait_for(&c, "p.notice", Duration::from_secs(20)).await;
    assert!(
        text(&c, "#plan").await.contains("Gaming Priority+"),
        "{}",
        text(&c, "#plan").await
    );
    click(&c, "#cancel-plan").await;
    wait_for(&c, "p.notice", Duration::from_secs(20)).await;
    assert!(
        text(&c, "#plan").await.contains("ends at"),
        "{}",
        text(&c, "#plan").await
    );
    c.execute("document.getElementById('plan').scrollIntoView()", vec![])
        .await
        .unwrap();
    shots.take(&c, "plan-cancelled").await;
    if stripe.is_some() {
        click(&c, "#save-card").await;
        // The page before it has a notice too: wait for the answer's own content.
        until_text(&c, "#card", "•••• 4242").await;
        shots.take(&c, "card-saved").await;
        // With a card saved, the prepaid balance can be topped up from the page.
        assert_eq!(text(&c, "#prepaid").await, "0 EUR");
        fill(&c, "#top-up-amount", "20.00").await;
        click(&c, "#top-up").await;
        until_text(&c, "#prepaid", "20.00 EUR").await;
        shots.take(&c, "topped-up").await;
    } else {
        assert!(text(&c, "#card").await.contains("No card saved"));
    }

    // A month later: the operator bills the month; the invoice is on the page.
    let (_, usage) = api.call("GET", "/v1/usage", Some(&ann), None).await;
    let first = usage["from"].as_str().unwrap()[..7].to_owned();
    cli_json(&fx, &["billing", "clock", "32d"]);
    let run = cli_json(&fx, &["billing", "run", &first]);
    let invoice = run["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["organisation"] == org.as_str())
        .unwrap_or_else(|| panic!("no invoice for {org}: {run}"))
        .clone();
    // The log-in session has expired (a week) on the new time.
    c.delete_all_cookies().await.unwrap();
    log_in(&c, &base).await;
    c.goto(&format!("{}/console/orgs/{org}/billing", fx.fleet.api))
        .await
        .unwrap();
    wait_for(&c, "#invoices a.pdf", Duration::from_secs(10)).await;
    let number = invoice["number"].as_str().unwrap();
    assert!(text(&c, "#invoices").await.contains(number));
    shots.take(&c, "invoice-listed").await;
    // The PDF link, fetched with the browser's session.
    let href = c
        .find(fantoccini::Locator::Css("#invoices a.pdf"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let cookie = c.get_named_cookie("vmcloud_session").await.unwrap();
    let pdf = super::http()
        .get(format!("{}{href}", fx.fleet.api))
        .header("cookie", format!("vmcloud_session={}", cookie.value()))
        .send()
        .await
        .unwrap();
    assert_eq!(pdf.status(), 200);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    assert!(
        pdf.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains(number)
    );
    let bytes = pdf.bytes().await.unwrap();
    assert!(bytes.starts_with(b"%PDF-"));
    c.goto(&format!(
        "{}/console/orgs/{org}/billing?lang=fr",
        fx.fleet.api
    ))
    .await
    .unwrap();
    assert_eq!(text(&c, "h1").await, "Facturation");
    shots.take(&c, "billing-in-french").await;
    c.close().await.unwrap();
}

#[tokio::test]
async fn a_budget_alert_is_mailed_once_when_the_months_cost_crosses_it() {
    let fx = Fixture::start();
    let api = Api {
        base: &fx.fleet.api,
    };
    let (ann, _, project) = customer(&fx, &api, "ann@example.org", "Acme SAS").await;
    let (status, body) = api
        .call(
            "PUT",
            "/v1/billing/budget-alerts",
            Some(&ann),
            Some(json!({"thresholds": ["a lot"]})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("not an amount"),
        "{body}"
    );
    let (status, body) = api
        .call(
            "PUT",
            "/v1/billing/budget-alerts",
            Some(&ann),
            Some(json!({"thresholds": ["0.50", "1000"]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["thresholds"], json!(["0.50", "1000"]), "{body}");
    for name in ["web-1", "web-2"] {
        let (status, made) = api
            .call(
                "POST",
                &format!("/v1/instances?project={project}"),
                Some(&ann),
                Some(
                    json!({"name": name, "flavor": "vps-m", "image": "debian-12", "region": "par"}),
                ),
            )
            .await;
        assert_eq!(status, 201, "{made}");
    }
    // Two days on: about 1.40 € this month, past 0.50 and far from 1000.
    cli_json(&fx, &["billing", "clock", "2d"]);
    let ann = {
        let (_, login) = api
            .call(
                "POST",
                "/v1/login",
                None,
                Some(json!({"email": "ann@example.org", "password": PASSWORD})),
            )
            .await;
        login["token"].as_str().unwrap().to_owned()
    };
    let sent: Value = eventually(
        std::time::Duration::from_secs(30),
        "the 0.50 alert",
        || async {
            let (_, b) = api
                .call("GET", "/v1/billing/budget-alerts", Some(&ann), None)
                .await;
            (!b["sent_this_month"].as_array().unwrap().is_empty()).then_some(b)
        },
    )
    .await;
    assert_eq!(sent["sent_this_month"], json!(["0.50"]), "{sent}");
    let mails = || {
        let dir = fx.fleet.data_dir.join("mail");
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .filter(|t| t.contains("To: ann@example.org") && t.contains("Budget alert"))
            .count()
    };
    eventually(
        std::time::Duration::from_secs(10),
        "the budget mail",
        || async { (mails() == 1).then_some(()) },
    )
    .await;
    // Once a month: still one a while later.
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    assert_eq!(mails(), 1);
}

/// Stripe's own card form in Chromium (Stripe.js as localstripe serves it, under the page's
/// CSP): a declined card says so in the form and saves nothing; a good one is confirmed with
/// Stripe in the browser and saved — the card number never reaches VMCloud.
#[tokio::test]
async fn the_card_is_entered_in_stripes_own_form() {
    use super::browser::{Shots, browser, click, fill, find_program, start_driver, text, wait_for};
    use std::time::Duration;
    const TEST: &str = "dev::billing::the_card_is_entered_in_stripes_own_form";
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
    let Some(python) = vmcloud_tests::python_with("localstripe") else {
        vmcloud_proto::testing::skip(
            TEST,
            "no Python with localstripe (scripts/test makes .venv with it; or set VMCLOUD_PYTHON)",
        );
        return;
    };
    let ls = super::payments::start_localstripe(&python).await;
    let fx = Fixture::start_with(&[
        "--stripe-api",
        &ls.url,
        "--stripe-secret-key",
        "sk_test_vmcloud",
        "--stripe-publishable-key",
        "pk_test_vmcloud",
    ]);
    let base = fx.fleet.api.clone();
    let api = Api { base: &base };
    let (ann, org, _) = customer(&fx, &api, "ann@example.org", "Acme SAS").await;
    // Another organisation's setup intent is not Ann's to save.
    let (bob, bob_org, _) = customer(&fx, &api, "bob@example.org", "Other SARL").await;
    let (status, si) = api
        .call(
            "POST",
            "/v1/billing/setup-intents",
            Some(&bob),
            Some(json!({"org": bob_org})),
        )
        .await;
    assert_eq!(status, 201, "{si}");
    assert_eq!(si["publishable_key"], "pk_test_vmcloud");
    assert!(
        si["js"].as_str().unwrap().ends_with("/js.stripe.com/v3/"),
        "{si}"
    );
    let (status, body) = api
        .call(
            "POST",
            "/v1/billing/payment-method",
            Some(&ann),
            Some(json!({"setup_intent": si["setup_intent"]})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("not one of this organisation's"),
        "{body}"
    );

    let driver = start_driver(&chromedriver).await;
    let c = browser(&driver, &chromium).await;
    let mut shots = Shots::new("stripe-card-form");
    c.goto(&format!("{base}/login")).await.unwrap();
    fill(&c, "#email", "ann@example.org").await;
    fill(&c, "#password", PASSWORD).await;
    click(&c, "#login").await;
    wait_for(&c, "#projects", Duration::from_secs(10)).await;
    c.goto(&format!("{base}/console/orgs/{org}/billing"))
        .await
        .unwrap();
    // Stripe.js loaded (the CSP lets it) and mounted its card element.
    wait_for(
        &c,
        "#stripe-card[data-ready='true']",
        Duration::from_secs(20),
    )
    .await;
    assert!(
        c.find(fantoccini::Locator::Css("#card-number"))
            .await
            .is_err(),
        "the card-number form is for test mode without Stripe's form"
    );
    let enter = |number: &'static str| {
        let c = c.clone();
        async move {
            for (field, value) in [
                ("number", number),
                ("exp_month", "12"),
                ("exp_year", "34"),
                ("cvc", "123"),
                ("postal_code", "75011"),
            ] {
                fill(
                    &c,
                    &format!("#card-element input[placeholder='{field}']"),
                    value,
                )
                .await;
            }
        }
    };
    enter("4000000000000002").await;
    shots.take(&c, "declined-card-entered").await;
    click(&c, "#save-card").await;
    wait_for(&c, "#card-errors:not(:empty)", Duration::from_secs(20)).await;
    assert!(
        text(&c, "#card-errors")
            .await
            .to_lowercase()
            .contains("declined"),
        "{}",
        text(&c, "#card-errors").await
    );
    shots.take(&c, "declined").await;
    let (_, pm) = api
        .call("GET", "/v1/billing/payment-method", Some(&ann), None)
        .await;
    assert!(pm["card"].is_null(), "a declined card was saved: {pm}");

    enter("4242424242424242").await;
    click(&c, "#save-card").await;
    wait_for(&c, "p.notice", Duration::from_secs(20)).await;
    assert!(text(&c, "#card").await.contains("•••• 4242"));
    shots.take(&c, "saved").await;
    let (_, pm) = api
        .call("GET", "/v1/billing/payment-method", Some(&ann), None)
        .await;
    assert_eq!(pm["card"]["last4"], "4242", "{pm}");
    assert_eq!(pm["card_form"], true, "{pm}");
    // With a card saved, the form is behind a link.
    assert!(
        c.find(fantoccini::Locator::Css("#replace-card"))
            .await
            .is_ok()
    );
}

/// Waits (20 s at most) until the element `css` shows `wanted`: the page after a form's answer.
async fn until_text(c: &fantoccini::Client, css: &str, wanted: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let now = match c.find(fantoccini::Locator::Css(css)).await {
            Ok(el) => el.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if now.contains(wanted) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "`{css}` shows {now:?}, not {wanted:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
