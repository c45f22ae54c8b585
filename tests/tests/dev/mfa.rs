//! Two-step verification as a customer meets it: enrol TOTP from the QR code's URL (read by
//! an independent TOTP implementation, as an authenticator app would), confirm, log in with a
//! code, a replayed code and a reused recovery code refused, an organisation that requires
//! it turning away sessions without it — and the seed never in the replicas' files in clear
//! (DESIGN.md invariant 14).

use serde_json::json;
use totp_rs::TOTP;

use super::Fixture;
use super::customers::{Api, PASSWORD, customer};

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn totp_enrolment_login_replay_recovery_and_an_org_that_requires_it() {
    let fx = Fixture::start();
    let api = Api {
        base: &fx.fleet.api,
    };
    let email = "mfa@example.com";
    let (plain, org, project) = customer(&fx, &api, email, "Two Step SAS").await;

    // Confirming before enrolling says how to start.
    let (status, body) = api
        .call(
            "POST",
            "/v1/me/totp/confirm",
            Some(plain.as_str()),
            Some(json!({"code": "123456"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");

    let (status, enrol) = api
        .call("POST", "/v1/me/totp", Some(plain.as_str()), None)
        .await;
    assert_eq!(status, 200, "{enrol}");
    assert!(enrol["qr_svg"].as_str().unwrap().contains("<svg"));
    let app = TOTP::from_url_unchecked(enrol["otpauth_url"].as_str().unwrap()).unwrap();
    assert_eq!(app.get_secret_base32(), enrol["secret"].as_str().unwrap());

    let (status, body) = api
        .call(
            "POST",
            "/v1/me/totp/confirm",
            Some(plain.as_str()),
            Some(json!({"code": "000000"})),
        )
        .await;
    assert!(
        status == 401 || app.generate_current().unwrap() == "000000",
        "{body}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = app.generate(now);
    let (status, confirmed) = api
        .call(
            "POST",
            "/v1/me/totp/confirm",
            Some(plain.as_str()),
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(status, 200, "{confirmed}");
    let recovery: Vec<String> = confirmed["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);

    // The seed is sealed in the log and snapshots: neither its bytes nor its base32 appear.
    let secret = app.secret.clone();
    let base32 = app.get_secret_base32();
    for path in files_under(&fx.fleet.data_dir.join("scheduler")) {
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_slice()),
            "the TOTP seed is in clear in {}",
            path.display()
        );
        assert!(
            !bytes.windows(base32.len()).any(|w| w == base32.as_bytes()),
            "the TOTP seed (base32) is in clear in {}",
            path.display()
        );
    }

    // Password alone is no longer enough, and says what is missing.
    let login = |extra: serde_json::Value| {
        let mut body = json!({"email": email, "password": PASSWORD});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let (status, body) = api
        .call("POST", "/v1/login", None, Some(login(json!({}))))
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["type"], "urn:vmcloud:problem:totp-required");
    // The confirming code cannot log in again (its step is spent) …
    let (status, body) = api
        .call(
            "POST",
            "/v1/login",
            None,
            Some(login(json!({"totp_code": code}))),
        )
        .await;
    assert_eq!(status, 401, "a TOTP code was accepted twice: {body}");
    assert!(
        body["detail"].as_str().unwrap().contains("used already"),
        "{body}"
    );
    // … the next step's code can (one step of skew is allowed), once.
    let next = app.generate(now + 30);
    let (status, body) = api
        .call(
            "POST",
            "/v1/login",
            None,
            Some(login(json!({"totp_code": next}))),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let with_code = body["token"].as_str().unwrap().to_owned();
    let (status, body) = api
        .call(
            "POST",
            "/v1/login",
            None,
            Some(login(json!({"totp_code": next}))),
        )
        .await;
    assert_eq!(status, 401, "a TOTP code was replayed: {body}");
    let (_, me) = api
        .call("GET", "/v1/me", Some(with_code.as_str()), None)
        .await;
    assert_eq!(me["totp_enabled"], true, "{me}");
    assert_eq!(me["session_mfa"], true, "{me}");

    // A recovery code works once (typed in capitals, without dashes).
    let typed = recovery[0].to_uppercase().replace('-', "");
    let (status, body) = api
        .call(
            "POST",
            "/v1/login",
            None,
            Some(login(json!({"recovery_code": typed}))),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .call(
            "POST",
            "/v1/login",
            None,
            Some(login(json!({"recovery_code": recovery[0]}))),
        )
        .await;
    assert_eq!(status, 401, "a recovery code worked twice: {body}");
    let (_, me) = api
        .call("GET", "/v1/me", Some(with_code.as_str()), None)
        .await;
    assert_eq!(me["recovery_codes_left"], 9, "{me}");

    // Requiring MFA: refused from a session without it (it would lock the owner out) …
    let (status, body) = api
        .call(
            "PATCH",
            &format!("/v1/organisations/{org}"),
            Some(plain.as_str()),
            Some(json!({"mfa_required": true})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = api
        .call(
            "PATCH",
            &format!("/v1/organisations/{org}"),
            Some(with_code.as_str()),
            Some(json!({"mfa_required": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // … and from then on the session without a second factor sees the org's projects 403.
    let (status, body) = api
        .call(
            "GET",
            &format!("/v1/projects/{project}"),
            Some(plain.as_str()),
            None,
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("requires two-step verification"),
        "{body}"
    );
    let (status, body) = api
        .call(
            "GET",
            &format!("/v1/projects/{project}"),
            Some(with_code.as_str()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Turning it off needs a session that used a code.
    let (status, body) = api
        .call("DELETE", "/v1/me/totp", Some(plain.as_str()), None)
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = api
        .call("DELETE", "/v1/me/totp", Some(with_code.as_str()), None)
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = api
        .call("POST", "/v1/login", None, Some(login(json!({}))))
        .await;
    assert_eq!(status, 200, "{body}");
    // The sessions, listed; ending one (the password-only one) from the other.
    let (status, sessions) = api
        .call("GET", "/v1/me/sessions", Some(with_code.as_str()), None)
        .await;
    assert_eq!(status, 200, "{sessions}");
    let list = sessions["sessions"].as_array().unwrap();
    assert!(list.len() >= 2, "{sessions}");
    assert_eq!(list.iter().filter(|l| l["current"] == true).count(), 1);
    let plain_id = plain.split('_').nth(1).unwrap();
    let (status, _) = api
        .call(
            "DELETE",
            &format!("/v1/me/sessions/{plain_id}"),
            Some(with_code.as_str()),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = api.call("GET", "/v1/me", Some(plain.as_str()), None).await;
    assert_eq!(status, 401, "an ended session still works");
}
