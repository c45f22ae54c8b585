//! Stopping and starting `vmcloud dev` on the same data dir keeps the replicated state, and a
//! second process on a data dir in use is refused.

use std::time::Duration;

use vmcloud_tests::DevFleet;

use super::{agent_domains, eventually, instance_state};

#[tokio::test]
async fn state_survives_restart_and_data_dir_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let (data, config) = (dir.path().join("data"), dir.path().join("config"));
    let fleet = DevFleet::start(&data, &config);
    let out = fleet.cli(&[
        "instance",
        "create",
        "--flavor",
        "vps-s",
        "--image",
        "debian-12",
        "--region",
        "par",
        "--wait",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(
        instance_state(&fleet, &id).await.as_deref(),
        Some("running")
    );

    // A second process on the same data dir is refused, clearly, and changes nothing.
    let second = DevFleet::try_start(&data, &dir.path().join("config2"));
    let failed = second
        .err()
        .expect("a second vmcloud dev on the same data dir must not start");
    assert!(!failed.status.success());
    assert!(
        failed
            .stderr
            .contains("is in use by another vmcloud process"),
        "{}",
        failed.stderr
    );
    assert_eq!(
        instance_state(&fleet, &id).await.as_deref(),
        Some("running")
    );

    // Ctrl-C stops cleanly.
    let token = fleet.token.clone();
    fleet.stop_cleanly();

    // Started again: the instance is still there, the API key still works, and the agent
    // (whose test-driver VMs went with the old process) runs it again.
    let fleet = DevFleet::start(&data, &config);
    assert_eq!(fleet.token, token);
    let out = fleet.cli(&["instance", "list"]);
    assert!(String::from_utf8(out.stdout).unwrap().contains(&id));
    eventually(
        Duration::from_secs(5),
        "the agent to run the instance again",
        || async {
            let domains = agent_domains(&fleet).await;
            domains
                .contains(&(format!("vmcloud-{id}"), "running".into()))
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        instance_state(&fleet, &id).await.as_deref(),
        Some("running")
    );

    // Even after kill -9 the acknowledged state is there.
    fleet.kill9();
    let fleet = DevFleet::start(&data, &config);
    assert_eq!(
        instance_state(&fleet, &id).await.as_deref(),
        Some("running")
    );
    fleet.stop_cleanly();
}

#[tokio::test]
async fn a_corrupt_log_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (data, config) = (dir.path().join("data"), dir.path().join("config"));
    let fleet = DevFleet::start(&data, &config);
    let out = fleet.cli(&[
        "instance",
        "create",
        "--flavor",
        "vps-s",
        "--image",
        "debian-12",
        "--region",
        "par",
    ]);
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    fleet.stop_cleanly();

    // Flip a byte in every copy of the instance id in the Raft log.
    let log = data.join("scheduler/raft.redb");
    let mut bytes = std::fs::read(&log).unwrap();
    let needle = id.as_bytes();
    let mut flipped = 0;
    let mut i = 0;
    while let Some(pos) = bytes[i..].windows(needle.len()).position(|w| w == needle) {
        bytes[i + pos + 5] ^= 0x01;
        flipped += 1;
        i += pos + needle.len();
    }
    assert!(flipped > 0, "the instance id is in the log");
    std::fs::write(&log, bytes).unwrap();

    let failed = DevFleet::try_start(&data, &config)
        .err()
        .expect("vmcloud dev must not start on a corrupt log");
    assert!(!failed.status.success());
    assert!(failed.stderr.contains("is corrupt"), "{}", failed.stderr);
    assert!(
        failed.stderr.contains("wipe its data dir"),
        "{}",
        failed.stderr
    );
    assert!(
        failed.stderr.contains(&log.display().to_string()),
        "{}",
        failed.stderr
    );
}
