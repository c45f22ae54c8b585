//! A customer on the command line, from a fresh profile: sign up, verify, log in, turn on
//! TOTP, log in again with a code into a profile that acts in a project, make a key, run an
//! instance with the key and see it with the login — `-o json` throughout.

use std::path::Path;

use serde_json::Value;
use totp_rs::TOTP;

use super::Fixture;
use super::customers::PASSWORD;

/// `vmcloud ARGS` as a customer (fresh config home, the fleet's API), which must succeed.
fn run(home: &Path, api: &str, args: &[&str]) -> String {
    let out = vmcloud_tests::command(home)
        .env("VMCLOUD_API", api)
        .env("VMCLOUD_PASSWORD", PASSWORD)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vmcloud {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(home: &Path, api: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&run(home, api, &all)).unwrap()
}

fn fails(home: &Path, api: &str, args: &[&str]) -> String {
    let out = vmcloud_tests::command(home)
        .env("VMCLOUD_API", api)
        .env("VMCLOUD_PASSWORD", PASSWORD)
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "vmcloud {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_customer_from_a_fresh_profile_on_the_command_line() {
    let fx = Fixture::start();
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let api = fx.fleet.api.as_str();
    let email = "cli@example.com";

    let made = json(
        home,
        api,
        &[
            "signup",
            "--email",
            email,
            "--org-name",
            "Shell Co",
            "--country",
            "NL",
        ],
    );
    let user = made["user_id"].as_str().unwrap();
    let project = made["project_id"].as_str().unwrap().to_owned();
    // The token from the mail vmcloud dev wrote.
    let mail_dir = fx.fleet.data_dir.join("mail");
    let mail = std::fs::read_dir(&mail_dir)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .find(|m| m.contains(&format!("To: {email}")))
        .unwrap();
    let token = mail
        .split("token=")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect::<String>();
    run(home, api, &["verify-email", user, &token]);
    run(
        home,
        api,
        &["login", "--email", email, "--save-as", "shell"],
    );

    // TOTP from the command line.
    let enrol = json(home, api, &["mfa", "enrol", "--profile", "shell"]);
    let app = TOTP::from_url_unchecked(enrol["otpauth_url"].as_str().unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let confirmed = json(
        home,
        api,
        &["mfa", "confirm", &app.generate(now), "--profile", "shell"],
    );
    assert_eq!(confirmed["recovery_codes"].as_array().unwrap().len(), 10);
    let refused = fails(
        home,
        api,
        &["login", "--email", email, "--save-as", "shell"],
    );
    assert!(refused.contains("--totp"), "{refused}");
    run(
        home,
        api,
        &[
            "login",
            "--email",
            email,
            "--totp",
            &app.generate(now + 30),
            "--project",
            &project,
            "--save-as",
            "shell",
        ],
    );

    // A key, an instance made with it, seen through the login in the profile's project.
    let key = json(
        home,
        api,
        &[
            "key",
            "create",
            "--project",
            &project,
            "--name",
            "ci",
            "--profile",
            "shell",
        ],
    );
    let key = key["token"].as_str().unwrap();
    let vm = json(
        home,
        api,
        &[
            "instance",
            "create",
            "--flavor",
            "vps-s",
            "--image",
            "debian-12",
            "--region",
            "par",
            "--token",
            key,
        ],
    );
    let listed = json(home, api, &["instance", "list", "--profile", "shell"]);
    assert!(
        listed.to_string().contains(vm["id"].as_str().unwrap()),
        "{listed}"
    );
    let keys = json(
        home,
        api,
        &["key", "list", "--project", &project, "--profile", "shell"],
    );
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1, "{keys}");
    assert!(
        keys["keys"][0].get("token").is_none(),
        "a key list shows a secret: {keys}"
    );
    let orgs = json(home, api, &["org", "list", "--profile", "shell"]);
    assert_eq!(orgs["organisations"][0]["name"], "Shell Co");

    // Switching the profile's project checks the project exists for this user.
    let err = fails(
        home,
        api,
        &[
            "project",
            "use",
            "prj-0000000000000000",
            "--profile",
            "shell",
        ],
    );
    assert!(err.contains("does not exist"), "{err}");
    run(
        home,
        api,
        &["project", "use", &project, "--profile", "shell"],
    );
    run(home, api, &["logout", "--profile", "shell"]);
    let err = fails(home, api, &["instance", "list", "--profile", "shell"]);
    assert!(err.contains("log in again"), "{err}");
}
