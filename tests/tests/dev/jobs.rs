//! AI batch jobs from a customer's seat: `vmcloud job ...` against a running `vmcloud dev`
//! (CPU flavors: the dev host has no GPUs), with the agent's libvirt domains as the witness.

use std::time::Duration;

use super::{Fixture, agent_domains, cli_fails, cli_json, eventually, wait_state};

#[tokio::test]
async fn a_gang_job_runs_whole_and_is_cancelled_whole() {
    let fx = Fixture::start();
    let job = cli_json(
        &fx,
        &[
            "job",
            "submit",
            "--flavor",
            "vps-s",
            "--image",
            "debian-12",
            "--region",
            "par",
            "--members",
            "2",
            "--max-runtime",
            "1h",
            "--priority",
            "high",
            "--name",
            "train",
        ],
    );
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(job["priority"], "high");
    assert_eq!(job["instances"].as_array().unwrap().len(), 2);
    let members: Vec<String> = job["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_owned())
        .collect();
    for m in &members {
        wait_state(&fx, m, "running").await;
    }
    let running = cli_json(&fx, &["job", "get", &id]);
    assert_eq!(running["state"], "running", "{running}");
    assert!(running["ends_by"].is_string(), "{running}");
    let list = cli_json(&fx, &["job", "list"]);
    assert_eq!(list["jobs"][0]["id"], id.as_str());

    cli_json(&fx, &["job", "cancel", &id]);
    eventually(Duration::from_secs(10), "the job's VMs gone", || async {
        let domains = agent_domains(&fx.fleet).await;
        (!members
            .iter()
            .any(|m| domains.iter().any(|(name, _)| name.contains(m.as_str()))))
        .then_some(())
    })
    .await;

    // Bad input is refused and queues nothing.
    let base = [
        "job",
        "submit",
        "--flavor",
        "vps-s",
        "--image",
        "debian-12",
        "--region",
        "par",
    ];
    let err = cli_fails(&fx, &[&base[..], &["--max-runtime", "5s"]].concat());
    assert!(err.contains("max_runtime_s 5 must be between 60"), "{err}");
    let err = cli_fails(
        &fx,
        &[&base[..], &["--max-runtime", "1h", "--priority", "urgent"]].concat(),
    );
    assert!(err.contains("choose one of: low, normal, high"), "{err}");
    let err = cli_fails(
        &fx,
        &[&base[..], &["--max-runtime", "1h", "--members", "65"]].concat(),
    );
    assert!(err.contains("members 65 must be between 1 and 64"), "{err}");
    let err = cli_fails(
        &fx,
        &[
            "job",
            "submit",
            "--flavor",
            "gpu-h100-1g.10gb",
            "--image",
            "debian-12",
            "--region",
            "par",
            "--max-runtime",
            "1h",
        ],
    );
    assert!(
        err.contains("is a MIG slice (1g.10gb); AI jobs take whole GPUs"),
        "{err}"
    );
    eventually(Duration::from_secs(10), "no jobs left", || async {
        let list = cli_json(&fx, &["job", "list"]);
        list["jobs"].as_array().unwrap().is_empty().then_some(())
    })
    .await;
}
