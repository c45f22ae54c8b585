//! Webhook endpoints through a running `vmcloud dev`: made from the CLI (the secret shown
//! once, sealed in the log), a test event signed as Standard Webhooks say and verified by the
//! reference library (PyPI `standardwebhooks`) in a receiver of its own; the same receiver
//! refuses a delivery replayed after five minutes and a wrong signature.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Fixture;

const TEST: &str = "dev::webhooks::endpoints_sign_test_events_a_reference_receiver_verifies";

#[tokio::test]
async fn endpoints_sign_test_events_a_reference_receiver_verifies() {
    let Some(python) = vmcloud_tests::python_with("standardwebhooks") else {
        vmcloud_proto::testing::skip(
            TEST,
            "no Python with standardwebhooks (scripts/test makes .venv with it; or set VMCLOUD_PYTHON)",
        );
        return;
    };
    let receiver = vmcloud_tests::WebhookReceiver::start(&python);
    let fx = Fixture::start();
    let url = format!("http://127.0.0.1:{}/hooks", receiver.port);

    // Made from the CLI: the secret is printed once, and never in the list.
    let out = fx.fleet.cli(&[
        "webhook",
        "create",
        "--url",
        &url,
        "--event-type",
        "instance.state_changed",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    std::fs::write(&receiver.secret, &secret).unwrap();
    let out = fx.fleet.cli(&["webhook", "list", "-o", "json"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains(&id) && !listed.contains(&secret),
        "{listed}"
    );
    // The secret is sealed in the replica's files, never in clear.
    let mut grep = Command::new("grep")
        .args(["-rlF", &secret])
        .arg(&fx.fleet.data_dir)
        .output()
        .unwrap();
    grep.stdout.retain(|b| *b != b'\n');
    assert!(
        grep.stdout.is_empty(),
        "the secret is in clear in {:?}",
        String::from_utf8_lossy(&grep.stdout)
    );
    // An unknown event type is refused, saying which exist.
    let out = fx.fleet.cli(&[
        "webhook",
        "create",
        "--url",
        &url,
        "--event-type",
        "instance.exploded",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("instance.state_changed"));

    // A test event: signed, delivered, verified by the reference library.
    let out = fx.fleet.cli(&["webhook", "test", &id, "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sent["delivered"], true, "{sent}");
    assert_eq!(sent["status"], 204, "{sent}");
    let log = receiver.seen();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["ok"], true, "{log:?}");
    assert_eq!(log[0]["type"], "webhook.test");
    assert_eq!(log[0]["id"], sent["webhook_id"]);

    // A delivery replayed six minutes later, and one with a wrong secret: refused.
    let body = r#"{"type":"webhook.test","data":{}}"#;
    let old = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 360)
        .to_string();
    let signed = |secret: &str, ts: Option<&str>| -> Value {
        let mut args = vec![
            "webhook",
            "sign",
            "--secret",
            secret,
            "--id",
            "msg_replay",
            "-o",
            "json",
        ];
        if let Some(ts) = ts {
            args.extend(["--timestamp", ts]);
        }
        args.push(body);
        let out = fx.fleet.cli(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let http = reqwest::Client::new();
    for (headers, why) in [
        (signed(&secret, Some(&old)), "too old"),
        (
            signed("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", None),
            "signature",
        ),
    ] {
        let mut req = http.post(&url).body(body);
        for h in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            req = req.header(h, headers[h].as_str().unwrap());
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{why}");
        let last = receiver.seen().pop().unwrap();
        assert_eq!(last["ok"], false);
        assert!(
            last["error"].as_str().unwrap().to_lowercase().contains(why),
            "{last}"
        );
    }

    // Events from the log: an instance created, running, deleted — each delivered, signed,
    // with an id from the log index.
    let out = fx.fleet.cli(&[
        "instance",
        "create",
        "--flavor",
        "vps-s",
        "--image",
        "debian-12",
        "--region",
        "par",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let instance = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let events = |state: &str| {
        receiver
            .seen()
            .into_iter()
            .filter(|e| e["type"] == "instance.state_changed" && e["state"] == state)
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while events("running") == 0 {
        assert!(
            Instant::now() < deadline,
            "no running event: {:?}",
            receiver.seen()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = fx.fleet.cli(&["instance", "delete", &instance]);
    assert!(out.status.success());
    while events("deleted") == 0 {
        assert!(
            Instant::now() < deadline,
            "no deleted event: {:?}",
            receiver.seen()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let from_log: Vec<Value> = receiver
        .seen()
        .into_iter()
        .filter(|e| e["type"] == "instance.state_changed")
        .collect();
    for e in &from_log {
        assert_eq!(e["ok"], true, "{e}");
        assert!(e["id"].as_str().unwrap().starts_with("evt_"), "{e}");
        assert_eq!(e["instance"], instance.as_str(), "{e}");
    }

    // Every attempt is in the endpoint's delivery log, newest first (the receiver may have
    // the last event a moment before the leader has committed what its delivery got).
    let log: Value = super::eventually(
        Duration::from_secs(10),
        "the deliveries recorded",
        || async {
            let (status, log) = super::get_json(
                &format!("{}/v1/webhook-endpoints/{id}/deliveries", fx.fleet.api),
                Some(&fx.fleet.token),
            )
            .await;
            assert_eq!(status, 200, "{log}");
            (log["deliveries"].as_array().is_some_and(|a| a.len() >= 2)
                && log["pending"].as_array().is_none_or(|p| p.is_empty()))
            .then_some(log)
        },
    )
    .await;
    let attempts = log["deliveries"].as_array().unwrap();
    assert!(attempts.len() >= 2, "{log}");
    assert!(
        attempts
            .iter()
            .all(|a| a["delivered"] == true && a["status"] == 204),
        "{log}"
    );
    for e in &from_log {
        assert!(
            attempts.iter().any(|a| a["event_id"] == e["id"]),
            "{} is not in the log: {log}",
            e["id"]
        );
    }

    // A past event sent again: the same webhook-id, verified again, and a second attempt in
    // the log; the CLI lists the attempts.
    let first = from_log[0]["id"].as_str().unwrap().to_owned();
    let out = fx
        .fleet
        .cli(&["webhook", "resend", &id, &first, "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resent: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(resent["type"], "instance.state_changed", "{resent}");
    let seen_of = |event: &str| {
        receiver
            .seen()
            .into_iter()
            .filter(|e| e["id"] == event && e["ok"] == true)
            .count()
    };
    while seen_of(&first) < 2 {
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "the resent event did not arrive: {:?}",
            receiver.seen()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = fx.fleet.cli(&["webhook", "deliveries", &id]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.lines().filter(|l| l.contains(&first)).count() >= 2,
        "{table}"
    );
    // An event that is not the project's, or not an event: 404, and nothing queued.
    let out = fx.fleet.cli(&["webhook", "resend", &id, "evt_999999_0"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Deleted: gone from the list, and its test is 404.
    let out = fx.fleet.cli(&["webhook", "delete", &id]);
    assert!(out.status.success());
    let out = fx.fleet.cli(&["webhook", "test", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
}
