//! `vmcloud token`: single-use join tokens for new hosts, from an operator's seat.

use super::{Fixture, cli_fails, cli_json};

#[tokio::test]
async fn operators_make_join_tokens_whose_secret_is_shown_once() {
    let fx = Fixture::start();
    let out = fx.fleet.cli(&[
        "token",
        "create",
        "--node-name",
        "par-r1-h07",
        "--ttl",
        "15m",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    // vmcjoin_<16 hex id>_<32 hex secret: 128 bits>
    assert!(
        token.starts_with("vmcjoin_") && token.len() == 57,
        "{token}"
    );
    let secret = token.rsplit('_').next().unwrap().to_owned();

    let made = cli_json(
        &fx,
        &[
            "token",
            "create",
            "--node-name",
            "par-r1-h08",
            "--ttl",
            "1h",
        ],
    );
    assert_eq!(made["node_name"], "par-r1-h08");
    assert_eq!(made["status"], "valid");
    assert!(made["token"].as_str().unwrap().starts_with("vmcjoin_"));

    let list = cli_json(&fx, &["token", "list"]);
    let tokens = list["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    assert!(tokens.iter().all(|t| t["token"].is_null()));
    assert!(
        !list.to_string().contains(&secret),
        "a listed token shows its secret"
    );

    let err = cli_fails(
        &fx,
        &[
            "token",
            "create",
            "--node-name",
            "par-r1-h09",
            "--ttl",
            "10s",
        ],
    );
    assert!(err.contains("ttl_s 10 must be between 60"), "{err}");
    let err = cli_fails(&fx, &["token", "create", "--node-name", "Bad_Name"]);
    assert!(err.contains("node"), "{err}");
    assert_eq!(
        cli_json(&fx, &["token", "list"])["tokens"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
