//! Hosts joining with a single-use token: `vmcloud agent --token` against a running dev fleet,
//! over QUIC with TLS (the host trusts only the cluster CA; it has no certificate yet).

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use vmcloud_tests::vmcloud_bin;

use super::{Fixture, cli_json, eventually};

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
        let mut cmd = Command::new(vmcloud_bin());
        cmd.args(["agent", "--node", node, "--region", "ams", "--token", token])
            .args([
                "--hypervisor",
                "test:///default",
                "--networks",
                "sim",
                "--shape",
                "cpu",
            ])
            .args(["--scheduler", &fx.fleet.gateway])
            .arg("--pki-dir")
            .arg(&pki)
            .arg("--data-dir")
            .arg(dir.path().join(data))
            .stdin(Stdio::null());
        cmd
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
