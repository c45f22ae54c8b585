//! Hosts joining with a single-use token: `vmcloud agent --token` against a running dev fleet,
//! over QUIC with TLS (the host trusts only the cluster CA; it has no certificate yet).

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use vmcloud_tests::vmcloud_bin;

use super::{Fixture, cli_json, eventually};

/// `vmcloud agent` for `node` on the test driver, reporting to the fleet, joining with
/// `token` when given.
fn agent(
    fx: &Fixture,
    pki: &std::path::Path,
    data_dir: &std::path::Path,
    node: &str,
    token: Option<&str>,
) -> Command {
    let mut cmd = Command::new(vmcloud_bin());
    cmd.args(["agent", "--node", node, "--region", "ams"])
        .args(["--hypervisor", "test:///default", "--networks", "sim"])
        .args(["--shape", "cpu", "--scheduler", &fx.fleet.gateway])
        .arg("--pki-dir")
        .arg(pki)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null());
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    cmd
}

#[tokio::test]
async fn a_host_joins_once_with_a_token_for_its_node() {
    let fx = Fixture::start();
    let dir = tempfile::tempdir().unwrap();
    // The host gets the CA certificate only: no key to issue anything itself.
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    std::fs::copy(fx.fleet.data_dir.join("pki/ca.pem"), pki.join("ca.pem")).unwrap();
    let token = |node: &str| {
        cli_json(
            &fx,
            &["token", "create", "--node-name", node, "--ttl", "15m"],
        )["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let agent = |node: &str, token: &str, data: &str| {
        agent(&fx, &pki, &dir.path().join(data), node, Some(token))
    };

    let t1 = token("joined-1");
    let mut host = agent("joined-1", &t1, "h1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(20), "joined-1 connected", || async {
        let n = cli_json(&fx, &["node", "list"]);
        n["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"] == "joined-1" && n["connected"] == true)
            .then_some(())
    })
    .await;
    let key = dir.path().join("h1/identity/node.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let tokens = cli_json(&fx, &["token", "list"]);
    assert_eq!(tokens["tokens"][0]["status"], "used", "{tokens}");

    // The same token again, from another host: refused, and it says why.
    let out = agent("joined-1", &t1, "h2").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already used"), "{err}");
    assert!(!dir.path().join("h2/identity/node.pem").exists());

    // A token for another node.
    let t2 = token("joined-2");
    let out = agent("joined-3", &t2, "h3").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is for node joined-2, not joined-3"), "{err}");

    // Not a token at all.
    let out = agent("joined-2", "hunter2", "h4").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a join token"), "{err}");

    // Restarted, the joined host uses the certificate it kept (the used token is not needed).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(host.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    host.wait().unwrap();
    let mut again = agent("joined-1", &t1, "h1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(20), "joined-1 back", || async {
        let n = cli_json(&fx, &["node", "get", "joined-1"]);
        (n["connected"] == true).then_some(())
    })
    .await;
    let _ = again.kill();
    let _ = again.wait();
}

#[tokio::test]
async fn certificates_are_renewed_over_the_link_before_they_expire() {
    // Node certificates valid 20 s (backdated 2 s): agents renew ~13 s after issue.
    let fx = Fixture::start_with(&["--node-cert-ttl", "20s"]);
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    std::fs::copy(fx.fleet.data_dir.join("pki/ca.pem"), pki.join("ca.pem")).unwrap();
    let token = cli_json(&fx, &["token", "create", "--node-name", "rot-1"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent = |token: Option<&str>| agent(&fx, &pki, &dir.path().join("h"), "rot-1", token);
    let cert_path = dir.path().join("h/identity/node.pem");
    let mut host = agent(Some(&token))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = eventually(
        Duration::from_secs(15),
        "the joined certificate",
        || async { std::fs::read_to_string(&cert_path).ok() },
    )
    .await;
    let (_, first_until) = vmcloud_proto::pki::cert_validity(&first).unwrap();
    // Renewed over the link, nothing restarted: a new certificate on disk, valid for longer.
    let renewed = eventually(Duration::from_secs(30), "a renewed certificate", || async {
        std::fs::read_to_string(&cert_path)
            .ok()
            .filter(|c| *c != first)
    })
    .await;
    let (_, renewed_until) = vmcloud_proto::pki::cert_validity(&renewed).unwrap();
    assert!(renewed_until > first_until);
    let key = dir.path().join("h/identity/node.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let node = cli_json(&fx, &["node", "get", "rot-1"]);
    assert_eq!(node["connected"], true, "{node}");

    // After the first certificate has expired, a restart connects with the renewed one,
    // without a token.
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    while now() <= first_until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(host.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    host.wait().unwrap();
    let mut again = agent(None)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "rot-1 back with its renewed certificate",
        || async {
            let n = cli_json(&fx, &["node", "get", "rot-1"]);
            (n["connected"] == true).then_some(())
        },
    )
    .await;
    let _ = again.kill();
    let _ = again.wait();

    // An expired certificate and no token: the agent says what to do.
    let expired = dir.path().join("old");
    std::fs::create_dir_all(expired.join("identity")).unwrap();
    std::fs::write(expired.join("identity/node.pem"), &first).unwrap();
    std::fs::write(expired.join("identity/node.key"), "unused").unwrap();
    let out = Command::new(vmcloud_bin())
        .args([
            "agent",
            "--node",
            "rot-1",
            "--hypervisor",
            "test:///default",
        ])
        .args(["--networks", "sim", "--scheduler", &fx.fleet.gateway])
        .arg("--pki-dir")
        .arg(&pki)
        .arg("--data-dir")
        .arg(&expired)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("expired") && err.contains("fresh join token"),
        "{err}"
    );
}
