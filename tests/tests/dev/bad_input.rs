//! Bad input gets an `application/problem+json` answer that says what was wrong, the CLI shows
//! it and exits non-zero, and nothing is created.

use serde_json::Value;

use super::{Fixture, get_json, http};

struct Case {
    name: &'static str,
    token: Option<&'static str>,
    content_type: Option<&'static str>,
    body: &'static str,
    status: u16,
    kind: &'static str,
    detail: &'static str,
}

const GOOD_TOKEN: &str = "<good>";

#[tokio::test]
async fn bad_requests_get_problem_json_and_create_nothing() {
    let fx = Fixture::start();
    let fleet = &fx.fleet;
    let json = Some("application/json");
    let cases = [
        Case {
            name: "unknown flavor",
            token: Some(GOOD_TOKEN),
            content_type: json,
            body: r#"{"flavor":"vps-xxl","image":"debian-12","region":"par"}"#,
            status: 422,
            kind: "unknown-flavor",
            detail: "flavor `vps-xxl` does not exist; choose one of:",
        },
        Case {
            name: "unknown image",
            token: Some(GOOD_TOKEN),
            content_type: json,
            body: r#"{"flavor":"vps-s","image":"windows-95","region":"par"}"#,
            status: 422,
            kind: "unknown-image",
            detail: "image `windows-95` does not exist",
        },
        Case {
            name: "unknown region",
            token: Some(GOOD_TOKEN),
            content_type: json,
            body: r#"{"flavor":"vps-s","image":"debian-12","region":"nyc"}"#,
            status: 422,
            kind: "unknown-region",
            detail: "region `nyc` does not exist; choose one of: ams, fra, mrs-edge, par",
        },
        Case {
            name: "region in maintenance",
            token: Some(GOOD_TOKEN),
            content_type: json,
            body: r#"{"flavor":"vps-s","image":"debian-12","region":"lon"}"#,
            status: 422,
            kind: "region-unavailable",
            detail: "region `lon` (London) is in maintenance",
        },
        Case {
            name: "bad name",
            token: Some(GOOD_TOKEN),
            content_type: json,
            body: r#"{"flavor":"vps-s","image":"debian-12","region":"par","name":"Web_1"}"#,
            status: 422,
            kind: "invalid-name",
            detail: "name `Web_1`",
        },
        Case {
            name: "not an SSH key",
            token: Some(GOOD_TOKEN),
            content_type: json,
            body: r#"{"flavor":"vps-s","image":"debian-12","region":"par","ssh_keys":["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB alice","-----BEGIN OPENSSH PRIVATE KEY-----"]}"#,
            status: 422,
            kind: "invalid-ssh-key",
            detail: "ssh_keys[1] is not an OpenSSH public key",
        },
        Case {
            name: "no API key",
            token: None,
            content_type: json,
            body: r#"{"flavor":"vps-s","image":"debian-12","region":"par"}"#,
            status: 401,
            kind: "unauthorized",
            detail: "not logged in",
        },
        Case {
            name: "unknown API key",
            token: Some("vmc_0123456789abcdef_0123456789abcdef0123456789abcdef"),
            content_type: json,
            body: r#"{"flavor":"vps-s","image":"debian-12","region":"par"}"#,
            status: 401,
            kind: "unauthorized",
            detail: "invalid API key",
        },
        Case {
            name: "garbage API key",
            token: Some("hunter2"),
            content_type: json,
            body: r#"{"flavor":"vps-s","image":"debian-12","region":"par"}"#,
            status: 401,
            kind: "unauthorized",
            detail: "invalid API key",
        },
        Case {
            name: "malformed JSON",
            token: Some(GOOD_TOKEN),
            content_type: json,
            body: r#"{"flavor":"vps-s","#,
            status: 400,
            kind: "malformed-json",
            detail: "not valid JSON",
        },
        Case {
            name: "wrong type",
            token: Some(GOOD_TOKEN),
            content_type: json,
            body: r#"{"flavor":3,"image":"debian-12","region":"par"}"#,
            status: 400,
            kind: "invalid-body",
            detail: "flavor: invalid type: integer `3`, expected a string",
        },
        Case {
            name: "missing field",
            token: Some(GOOD_TOKEN),
            content_type: json,
            body: r#"{"flavor":"vps-s","image":"debian-12"}"#,
            status: 400,
            kind: "invalid-body",
            detail: "missing field `region`",
        },
        Case {
            name: "unknown field",
            token: Some(GOOD_TOKEN),
            content_type: json,
            body: r#"{"flavour":"vps-s","image":"debian-12","region":"par"}"#,
            status: 400,
            kind: "invalid-body",
            detail: "unknown field `flavour`",
        },
        Case {
            name: "not JSON at all",
            token: Some(GOOD_TOKEN),
            content_type: Some("text/plain"),
            body: "flavor=vps-s",
            status: 415,
            kind: "unsupported-media-type",
            detail: "Content-Type: application/json",
        },
    ];
    for case in &cases {
        let mut req = http()
            .post(format!("{}/v1/instances", fleet.api))
            .body(case.body);
        if let Some(ct) = case.content_type {
            req = req.header("content-type", ct);
        }
        match case.token {
            Some(GOOD_TOKEN) => req = req.bearer_auth(&fleet.token),
            Some(t) => req = req.bearer_auth(t),
            None => {}
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), case.status, "{}", case.name);
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{}",
            case.name
        );
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(
            problem["type"],
            format!("urn:vmcloud:problem:{}", case.kind),
            "{}: {problem}",
            case.name
        );
        assert_eq!(problem["status"], case.status, "{}", case.name);
        assert!(
            problem["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{}",
            case.name
        );
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(case.detail),
            "{}: detail {detail:?} should contain {:?}",
            case.name,
            case.detail
        );
    }

    // Nothing was created.
    let (status, list) = get_json(&format!("{}/v1/instances", fleet.api), Some(&fleet.token)).await;
    assert_eq!(status, 200);
    assert_eq!(list["instances"], Value::Array(vec![]));

    // Other endpoints answer problem+json too.
    for (url, status) in [
        (format!("{}/v1/instances?stale=maybe", fleet.api), 400),
        (format!("{}/v1/instances?fresh=true", fleet.api), 400),
        (format!("{}/v1/instances/i-nope", fleet.api), 404),
        (
            format!("{}/v1/instances/i-0123456789abcdef0123", fleet.api),
            404,
        ),
        (format!("{}/v1/no-such-thing", fleet.api), 404),
    ] {
        let resp = http()
            .get(&url)
            .bearer_auth(&fleet.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{url}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{url}"
        );
    }
    let resp = http()
        .get(format!("{}/v1/instances", fleet.api))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");

    // The CLI shows the problem and exits non-zero.
    for (args, says) in [
        (
            vec![
                "instance",
                "create",
                "--flavor",
                "nope",
                "--image",
                "debian-12",
                "--region",
                "par",
            ],
            "flavor `nope` does not exist",
        ),
        (
            vec![
                "instance",
                "create",
                "--flavor",
                "vps-s",
                "--image",
                "debian-12",
                "--region",
                "lon",
            ],
            "region `lon` (London) is in maintenance",
        ),
        (
            vec![
                "instance",
                "create",
                "--flavor",
                "vps-s",
                "--image",
                "debian-12",
                "--region",
                "par",
                "--token",
                "vmc_0123456789abcdef_0123456789abcdef0123456789abcdef",
            ],
            "invalid API key",
        ),
        (
            vec!["instance", "get", "i-0123456789abcdef0123"],
            "does not exist",
        ),
    ] {
        let out = fleet.cli(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    }
    let (_, list) = get_json(&format!("{}/v1/instances", fleet.api), Some(&fleet.token)).await;
    assert_eq!(list["instances"], Value::Array(vec![]));
}
