//! Mail through a real SMTP relay: `vmcloud dev --smtp-url` against aiosmtpd (Python, from the
//! virtual environment `scripts/test` makes) writing a Maildir. Sign-up's verification link,
//! a password reset (the same answer for an unknown address, a link that works once), and the
//! mail a new member gets.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Fixture;
use super::customers::{Api, PASSWORD};

const TEST: &str = "dev::mail::verification_reset_and_invitation_mails_go_through_smtp";

struct Sink {
    child: Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sink(python: &Path) -> Sink {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let maildir = tempfile::tempdir().unwrap();
    let child = Command::new(python)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir.path().join("Maildir"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("aiosmtpd starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "aiosmtpd did not listen in 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    Sink {
        child,
        port,
        maildir,
    }
}

/// Quoted-printable to text (soft line breaks and =XX escapes).
fn unquote(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Sink {
    fn mails(&self) -> Vec<String> {
        let dir = self.maildir.path().join("Maildir/new");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| unquote(&std::fs::read_to_string(e.path()).unwrap()))
            .collect()
    }

    /// Waits for a mail to `to` whose subject has `subject` in it; returns it.
    async fn wait_mail(&self, to: &str, subject: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self.mails().into_iter().find(|m| {
                m.lines()
                    .any(|l| l.eq_ignore_ascii_case(&format!("To: {to}")))
                    && m.lines()
                        .any(|l| l.starts_with("Subject: ") && l.contains(subject))
            });
            if let Some(mail) = found {
                return mail;
            }
            assert!(
                Instant::now() < deadline,
                "no mail to {to} about `{subject}` within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn link_in(mail: &str, page: &str) -> String {
    mail.lines()
        .map(str::trim)
        .find(|l| l.contains(page))
        .unwrap_or_else(|| panic!("no {page} link in:\n{mail}"))
        .to_owned()
}

fn query_of(link: &str) -> (String, String) {
    let q = link.split_once('?').unwrap().1;
    let get = |k: &str| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_owned()
    };
    (get("user"), get("token"))
}

#[tokio::test]
async fn verification_reset_and_invitation_mails_go_through_smtp() {
    let Some(python) = vmcloud_tests::python_with("aiosmtpd") else {
        vmcloud_proto::testing::skip(
            TEST,
            "no Python with aiosmtpd (scripts/test makes .venv with it; or set VMCLOUD_PYTHON)",
        );
        return;
    };
    let sink = start_sink(&python);
    let fx = Fixture::start_with(&["--smtp-url", &format!("smtp://127.0.0.1:{}", sink.port)]);
    let api = Api {
        base: &fx.fleet.api,
    };
    let signup = |email: &str, org: &str| {
        json!({"email": email, "password": PASSWORD,
               "organisation": {"name": org, "billing_country": "DE"}})
    };

    // The verification link arrives through the relay and works once.
    let (status, body) = api
        .call(
            "POST",
            "/v1/signup",
            None,
            Some(signup("mia@example.com", "Mia")),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mail = sink
        .wait_mail("mia@example.com", "Confirm your email")
        .await;
    assert!(
        mail.contains("Subject: Confirm your email address for VMCloud"),
        "{mail}"
    );
    let (user, token) = query_of(&link_in(&mail, "/verify?"));
    let verify = format!("/v1/verify-email?user={user}&token={token}");
    let (status, body) = api.call("GET", &verify, None, None).await;
    assert_eq!(status, 200, "{body}");

    // Reset: an unknown address gets the same answer and no mail.
    let (status, unknown) = api
        .call(
            "POST",
            "/v1/password-reset",
            None,
            Some(json!({"email": "nobody@example.com"})),
        )
        .await;
    assert_eq!(status, 202);
    let (status, known) = api
        .call(
            "POST",
            "/v1/password-reset",
            None,
            Some(json!({"email": "mia@example.com"})),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        unknown, known,
        "the answer tells which addresses have accounts"
    );
    let mail = sink
        .wait_mail("mia@example.com", "Reset your VMCloud password")
        .await;
    let (user, token) = query_of(&link_in(&mail, "/reset?"));
    let (status, login) = api
        .call(
            "POST",
            "/v1/login",
            None,
            Some(json!({"email": "mia@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let old_session = login["token"].as_str().unwrap().to_owned();
    let confirm = |password: &str| json!({"user": user, "token": token, "new_password": password});
    let (status, body) = api
        .call(
            "POST",
            "/v1/password-reset/confirm",
            None,
            Some(confirm("password1")),
        )
        .await;
    assert_eq!(status, 422, "a weak password was taken: {body}");
    let new_password = "quiet-harbour-lantern-97";
    let (status, body) = api
        .call(
            "POST",
            "/v1/password-reset/confirm",
            None,
            Some(confirm(new_password)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .call(
            "POST",
            "/v1/password-reset/confirm",
            None,
            Some(confirm("another-long-phrase-42")),
        )
        .await;
    assert_eq!(status, 422, "a reset link worked twice: {body}");
    assert_eq!(body["type"], "urn:vmcloud:problem:invalid-link");
    // Every earlier session ended; the old password no longer works, the new one does.
    let (status, _) = api.call("GET", "/v1/me", Some(&old_session), None).await;
    assert_eq!(status, 401);
    let (status, _) = api
        .call(
            "POST",
            "/v1/login",
            None,
            Some(json!({"email": "mia@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 401);
    let (status, login) = api
        .call(
            "POST",
            "/v1/login",
            None,
            Some(json!({"email": "mia@example.com", "password": new_password})),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let mia = login["token"].as_str().unwrap().to_owned();

    // A new member gets a mail saying where they now belong.
    let (status, _) = api
        .call(
            "POST",
            "/v1/signup",
            None,
            Some(signup("noah@example.com", "Noah")),
        )
        .await;
    assert_eq!(status, 201);
    let (_, me) = api.call("GET", "/v1/me", Some(&mia), None).await;
    let org = me["organisations"][0]["id"].as_str().unwrap().to_owned();
    let (status, body): (u16, Value) = api
        .call(
            "POST",
            &format!("/v1/organisations/{org}/members"),
            Some(&mia),
            Some(json!({"email": "noah@example.com", "role": "member"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mail = sink
        .wait_mail("noah@example.com", "You were added to")
        .await;
    assert!(
        mail.contains("You are now member of the organisation"),
        "{mail}"
    );
    assert!(mail.contains(&format!("{}/login", fx.fleet.api)), "{mail}");
}
