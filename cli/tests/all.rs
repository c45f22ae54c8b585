//! The `vmcloud` binary without a fleet: version, CLI config errors, missing configuration.

use std::process::Command;

fn vmcloud(config_home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vmcloud"))
        .env("XDG_CONFIG_HOME", config_home)
        .env_remove("VMCLOUD_API")
        .env_remove("VMCLOUD_TOKEN")
        .env_remove("VMCLOUD_PROFILE")
        .args(args)
        .output()
        .unwrap()
}

/// Runs a benchmark or simulation, which must succeed, and returns its stdout and the JSON
/// line of figures it ends with.
fn figures(args: &[&str]) -> (String, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_vmcloud"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    (stdout, last)
}

#[test]
fn version_names_git_sha_and_build_date() {
    let dir = tempfile::tempdir().unwrap();
    let out = vmcloud(dir.path(), &["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(concat!("vmcloud ", env!("CARGO_PKG_VERSION"), " (git ")),
        "{text}"
    );
    assert!(text.contains(", built 20"), "{text}");
}

#[test]
fn config_errors_name_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vmcloud/config.toml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let cases = [
        (
            "[profiles.dev]\napi = \"http://127.0.0.1:8080\"\ntokn = \"x\"\n",
            "profiles.dev.tokn",
            "unknown field `tokn`",
        ),
        (
            "[profiles.dev]\napi = \"127.0.0.1:8080\"\ntoken = \"x\"\n",
            "profiles.dev.api",
            "not an http:// or https:// URL",
        ),
        (
            "current_profile = \"prod\"\n",
            "current_profile",
            "no profile named `prod`",
        ),
        ("[profiles.dev\n", "", "line 1"),
    ];
    for (text, key, says) in cases {
        std::fs::write(&file, text).unwrap();
        let out = vmcloud(dir.path(), &["instance", "list"]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&file.display().to_string()), "{stderr}");
        assert!(
            stderr.contains(&format!("key `{key}`")) || key.is_empty(),
            "{stderr}"
        );
        assert!(stderr.contains(says), "{stderr}");
    }
}

#[test]
fn without_configuration_the_cli_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = vmcloud(dir.path(), &["instance", "list"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no API configured") && stderr.contains("vmcloud dev"),
        "{stderr}"
    );

    // An API that is not there: the error names the address and where it came from.
    let out = Command::new(env!("CARGO_BIN_EXE_vmcloud"))
        .env("XDG_CONFIG_HOME", dir.path())
        .env("VMCLOUD_API", "http://127.0.0.1:9")
        .env(
            "VMCLOUD_TOKEN",
            "vmc_0123456789abcdef_0123456789abcdef0123456789abcdef",
        )
        .args(["instance", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach the VMCloud API at http://127.0.0.1:9 (VMCLOUD_API)"),
        "{stderr}"
    );
}

#[test]
fn bad_dev_flags_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = vmcloud(
        dir.path(),
        &[
            "dev",
            "--data-dir",
            data.to_str().unwrap(),
            "--region",
            "nyc",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--region nyc: no such region"), "{stderr}");

    let catalog = dir.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        "[regions.par]\nname = \"Paris\"\nstatus = \"open\"\n[flavors]\n[images]\n",
    )
    .unwrap();
    let out = vmcloud(
        dir.path(),
        &[
            "dev",
            "--data-dir",
            data.to_str().unwrap(),
            "--catalog",
            catalog.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&catalog.display().to_string()) && stderr.contains("regions.par.status"),
        "{stderr}"
    );
}

#[test]
fn bench_raft_runs_and_ends_with_a_json_line_of_figures() {
    // Not a timed test: it checks the benchmark works and reports, whatever the numbers.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vmcloud"))
        .args([
            "bench",
            "raft",
            "--replicas",
            "3",
            "--duration",
            "300ms",
            "--clients",
            "4",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout.lines().last().unwrap();
    let figures: serde_json::Value = serde_json::from_str(last).unwrap();
    for key in ["commits_per_s", "p50_ms", "p99_ms", "failover_ms"] {
        assert!(
            figures[key].as_f64().is_some_and(|v| v > 0.0),
            "{key} missing in {last}"
        );
    }
    assert!(stdout.contains("budget"), "{stdout}");
    // The replicas' logs are cleaned up.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn sim_fleet_and_bench_placement_run_at_small_size() {
    let out = Command::new(env!("CARGO_BIN_EXE_vmcloud"))
        .args(["sim", "fleet", "--hosts", "300", "--seed", "3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fleet: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fleet["hosts"], 300);
    let utilization = fleet["gpu_utilization"].as_f64().unwrap();
    assert!(
        (0.6..0.95).contains(&utilization),
        "GPU pools about 80 % full: {utilization}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_vmcloud"))
        .args(["bench", "placement", "--hosts", "300", "--decisions", "300"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let figures: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    for key in ["hosts", "p50_ms", "p99_ms", "placements_per_s"] {
        assert!(
            figures[key].as_f64().is_some_and(|v| v > 0.0),
            "{key} missing: {stdout}"
        );
    }
    assert!(figures["placed"].as_u64().unwrap() > 0);
}

#[test]
fn bench_raft_beside_etcd_runs_both_and_prints_the_ratio() {
    if !std::path::Path::new("/usr/bin/etcd").exists() {
        vmcloud_proto::testing::skip(
            "bench_raft_beside_etcd_runs_both_and_prints_the_ratio",
            "no /usr/bin/etcd (Debian's etcd-server; scripts/test installs it as root)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (stdout, figures) = figures(&[
        "bench",
        "raft",
        "--replicas",
        "3",
        "--duration",
        "1s",
        "--clients",
        "8",
        "--no-failover",
        "--peer",
        "etcd",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    for key in [
        "commits_per_s",
        "etcd_commits_per_s",
        "ratio",
        "etcd_p99_ms",
    ] {
        assert!(
            figures[key].as_f64().is_some_and(|v| v > 0.0),
            "{key} missing: {stdout}"
        );
    }
    // etcd's members and data are gone with the run.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn sim_efficiency_replays_a_stream_on_an_empty_fleet_at_small_size() {
    let run = || {
        figures(&[
            "sim",
            "efficiency",
            "--hosts",
            "300",
            "--days",
            "2",
            "--seed",
            "5",
        ])
        .1
    };
    let figures = run();
    for key in ["stranded_share", "refused_large_share", "filled_share"] {
        let v = figures[key].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&v), "{key} is a share: {figures}");
    }
    // The stream fills the fleet to the goal and spot and backfill take most of the rest.
    let on_demand = figures["on_demand_share"].as_f64().unwrap();
    assert!((0.6..0.9).contains(&on_demand), "{figures}");
    assert!(figures["filled_share"].as_f64().unwrap() > on_demand);
    for kind in ["gpu-8", "session-1", "mig-1", "spot-1", "vps-0"] {
        assert!(
            figures["requests"][kind]["placed"].as_u64().unwrap() > 0,
            "{kind} placed: {figures}"
        );
    }
    // Seeded: the same seed replays the same month.
    let again = run();
    for key in [
        "stranded_share",
        "refused_large_share",
        "filled_share",
        "commands",
    ] {
        assert_eq!(figures[key], again[key], "{key}");
    }
}

#[test]
fn bench_schedule_places_through_three_replicas_at_small_size() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vmcloud"))
        .args([
            "bench",
            "schedule",
            "--hosts",
            "300",
            "--workloads",
            "3000",
            "--clients",
            "32",
        ])
        .env("TMPDIR", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let figures: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(figures["replicas"], 3);
    let placed = figures["placed"].as_u64().unwrap();
    let waiting = figures["waiting"].as_u64().unwrap();
    assert_eq!(placed + waiting, 3000, "every workload decided: {stdout}");
    assert!(placed > 2000, "most fit in 300 hosts: {stdout}");
    assert!(figures["placements_per_s"].as_f64().unwrap() > 0.0);
    let fragmentation = figures["gpu_fragmentation"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&fragmentation), "{stdout}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn bench_agent_idle_measures_a_separate_agent_process() {
    // Not a timed test: it checks the benchmark runs a real agent with VMs and reports.
    let out = Command::new(env!("CARGO_BIN_EXE_vmcloud"))
        .args(["bench", "agent-idle", "--duration", "2s", "--vms", "5"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout.lines().last().unwrap();
    let figures: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(figures["vms"], 5, "{last}");
    assert!(
        figures["rss_mib"].as_f64().is_some_and(|v| v > 1.0),
        "{last}"
    );
    assert!(
        figures["cpu_percent"].as_f64().is_some_and(|v| v >= 0.0),
        "{last}"
    );
    assert!(stdout.contains("budget"), "{stdout}");
}

#[test]
fn the_agent_role_writes_only_settings_the_agent_reads_and_the_agent_reads_them() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let env_template =
        std::fs::read_to_string(root.join("ansible/roles/agent/templates/agent.env.j2")).unwrap();
    let unit = std::fs::read_to_string(
        root.join("ansible/roles/agent/templates/vmcloud-agent.service.j2"),
    )
    .unwrap();
    assert!(unit.contains("EnvironmentFile=/etc/vmcloud/agent.env"));
    // The role installs and runs the agent alone (decision 0015).
    assert!(unit.contains("ExecStart=/usr/local/bin/vmcloud-agent\n"));
    let tasks = std::fs::read_to_string(root.join("ansible/roles/agent/tasks/main.yml")).unwrap();
    assert!(
        tasks.contains("dest: /usr/local/bin/vmcloud-agent"),
        "{tasks}"
    );
    let help = Command::new(env!("CARGO_BIN_EXE_vmcloud-agent"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let names: Vec<&str> = env_template
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .filter(|k| k.starts_with("VMCLOUD_AGENT_"))
        .collect();
    assert!(names.len() >= 9, "{names:?}");
    for name in names {
        assert!(
            help.contains(&format!("env: {name}")),
            "the role sets {name}, which `vmcloud-agent` does not read"
        );
    }

    // As the unit runs it: settings from the environment only. A missing CA is named, with
    // what to do.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vmcloud-agent"))
        .env("VMCLOUD_AGENT_NODE", "par-r1-h07")
        .env("VMCLOUD_AGENT_PKI_DIR", dir.path().join("pki"))
        .env("VMCLOUD_AGENT_DATA_DIR", dir.path().join("data"))
        .env("VMCLOUD_AGENT_HYPERVISOR", "test:///default")
        .env("VMCLOUD_AGENT_STOP_GRACE", "30s")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ca.pem is missing") && err.contains("vmcloud cluster init"),
        "{err}"
    );
}
