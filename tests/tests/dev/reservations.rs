//! Reservations from a customer's seat: `vmcloud reservation ...` and reserved instances
//! against a running `vmcloud dev`, with the agent's libvirt domains as the witness.

use std::time::Duration;

use serde_json::Value;

use super::{
    Fixture, agent_domains, cli_fails, cli_json, create, eventually, instance, wait_state,
};

/// How many vps-l (4 vCPUs, 8 GiB) the dev host can hold now.
fn vps_l_room(fx: &Fixture) -> u64 {
    let node = &cli_json(fx, &["node", "list"])["nodes"][0];
    let free = |total: &str, used: &str, held: &str| {
        node[total].as_u64().unwrap() - node[used].as_u64().unwrap() - node[held].as_u64().unwrap()
    };
    let vcpus = free("allocatable_vcpus", "used_vcpus", "held_vcpus") / 4;
    let memory = free(
        "allocatable_memory_mib",
        "used_memory_mib",
        "held_memory_mib",
    ) / 8192;
    vcpus.min(memory)
}

fn create_vps_l(fx: &Fixture, extra: &[&str]) -> Value {
    let mut args = vec![
        "instance",
        "create",
        "--flavor",
        "vps-l",
        "--image",
        "debian-12",
        "--region",
        "par",
    ];
    args.extend(extra);
    cli_json(fx, &args)
}

#[tokio::test]
async fn reserve_the_host_run_on_it_and_let_it_end() {
    let fx = Fixture::start();
    let room = vps_l_room(&fx);
    assert!(
        room >= 2,
        "the dev host must hold two vps-l (4 vCPUs, 8 GiB) for this test; it holds {room}"
    );
    let count = room.to_string();

    // Hold all of the host for 6 s.
    let r = cli_json(
        &fx,
        &[
            "reservation",
            "create",
            "--flavor",
            "vps-l",
            "--region",
            "par",
            "--count",
            &count,
            "--for",
            "6s",
        ],
    );
    let rid = r["id"].as_str().unwrap().to_owned();
    assert_eq!(r["status"], "active", "{r}");
    assert_eq!(r["used"], 0);
    assert_eq!(vps_l_room(&fx), 0, "everything is held");

    // On-demand work waits and says why.
    let on_demand = create(&fx, &[]);
    let waiting = eventually(Duration::from_secs(5), "a held reason", || async {
        instance(&fx, &on_demand).await.filter(|i| {
            i["pending_reason"]
                .as_str()
                .is_some_and(|r| r.contains("1 with the room held for reservations"))
        })
    })
    .await;
    assert_eq!(waiting["state"], "pending");

    // A reserved instance takes a slot and runs; the reservation counts it.
    let mine = create_vps_l(&fx, &["--market", "reserved"]);
    assert_eq!(mine["reservation"], rid.as_str());
    let mine = mine["id"].as_str().unwrap().to_owned();
    let running = wait_state(&fx, &mine, "running").await;
    assert_eq!(running["market"], "reserved");
    let r = cli_json(&fx, &["reservation", "get", &rid]);
    assert_eq!(r["used"], 1, "{r}");
    assert_eq!(r["instances"][0], mine.as_str());

    // Spot borrows the capacity still held.
    let spot = create(&fx, &["--market", "spot"]);
    let borrowed = wait_state(&fx, &spot, "running").await;
    assert_eq!(
        borrowed["preemption_notice_s"], 120,
        "vps flavors give spot the default notice: {borrowed}"
    );

    // The reservation ends: its instance goes on running on demand and the waiting work runs.
    eventually(
        Duration::from_secs(15),
        "the reservation to end",
        || async {
            let r = cli_json(&fx, &["reservation", "get", &rid]);
            (r["status"] == "expired").then_some(())
        },
    )
    .await;
    let after = wait_state(&fx, &mine, "running").await;
    assert_eq!(after["market"], "on-demand", "{after}");
    assert!(
        after["notices"][0]["message"]
            .as_str()
            .unwrap()
            .contains("goes on running on demand"),
        "{after}"
    );
    wait_state(&fx, &on_demand, "running").await;
    let domains = agent_domains(&fx.fleet).await;
    for id in [&mine, &on_demand, &spot] {
        assert!(
            domains.iter().any(|(name, _)| name.contains(id.as_str())),
            "{id} has a domain: {domains:?}"
        );
    }
    let list = cli_json(&fx, &["reservation", "list"]);
    assert_eq!(list["reservations"][0]["status"], "expired");
}

#[tokio::test]
async fn reservations_refuse_bad_input_and_change_nothing() {
    let fx = Fixture::start();
    let base = ["reservation", "create", "--flavor", "vps-l", "--region"];
    let err = cli_fails(
        &fx,
        &[&base[..], &["par", "--count", "1", "--term", "7"]].concat(),
    );
    assert!(err.contains("term_months 7 is not offered"), "{err}");
    let err = cli_fails(
        &fx,
        &[&base[..], &["lon", "--count", "1", "--for", "1h"]].concat(),
    );
    assert!(err.contains("is in maintenance"), "{err}");
    let err = cli_fails(
        &fx,
        &[
            "reservation",
            "create",
            "--flavor",
            "gpu-h100-3g.40gb",
            "--region",
            "par",
            "--count",
            "1",
            "--for",
            "1h",
        ],
    );
    assert!(err.contains("reservations take whole GPUs"), "{err}");
    let err = cli_fails(
        &fx,
        &[&base[..], &["par", "--count", "1000", "--for", "1h"]].concat(),
    );
    assert!(
        err.contains("Not enough capacity to reserve (409)") && err.contains("of 1000 vps-l"),
        "{err}"
    );
    let err = cli_fails(
        &fx,
        &[
            &base[..],
            &[
                "par",
                "--count",
                "1",
                "--start",
                "2020-01-01T00:00:00Z",
                "--for",
                "1h",
            ],
        ]
        .concat(),
    );
    assert!(err.contains("is in the past"), "{err}");
    // A reserved instance needs a reservation of its flavor and region.
    let err = cli_fails(
        &fx,
        &[
            "instance",
            "create",
            "--flavor",
            "vps-s",
            "--image",
            "debian-12",
            "--region",
            "par",
            "--market",
            "reserved",
        ],
    );
    assert!(
        err.contains("no active reservation of vps-s in par"),
        "{err}"
    );
    let list = cli_json(&fx, &["reservation", "list"]);
    assert_eq!(list["reservations"].as_array().unwrap().len(), 0);
    let instances = cli_json(&fx, &["instance", "list"]);
    assert_eq!(instances["instances"].as_array().unwrap().len(), 0);
}
