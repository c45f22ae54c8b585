//! End to end on real parts: the agent's reconciler boots the test guest
//! (`images/test-guest/`) through libvirtd (`qemu:///system`, domain type `qemu`: TCG), on a
//! qcow2 overlay from the image cache, with a virtio NIC on a tenant bridge made through
//! rtnetlink; reads the boot markers from the serial log; stops it with ACPI; removes it.
//!
//! Needs root, libvirtd and QEMU (`.ci/run` installs them; see docs/agent.md). Where they are
//! missing, the test says why and is counted as skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmcloud_agent::hypervisor::domain_name;
use vmcloud_agent::images::ImageCache;
use vmcloud_agent::libvirt::Libvirt;
use vmcloud_agent::reconciler::{Host, Memory, Pass};
use vmcloud_agent::tenant_net::linux::Rtnetlink;
use vmcloud_proto::testing::skip;
use vmcloud_proto::{InstanceId, pb};

const TEST: &str = "real_guest::boots_the_test_guest_through_libvirtd";
const SOCKET: &str = "/var/run/libvirt/libvirt-sock";
const METADATA: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 169, 254);
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9zVm1DbG91ZFRlc3RHdWVzdA test@vmcloud";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Starts virtlogd and libvirtd if they are not running. Err: why they cannot run here.
fn ensure_libvirtd() -> Result<(), String> {
    if Path::new(SOCKET).exists()
        && Command::new("virsh")
            .args(["-c", "qemu:///system", "version"])
            .output()
            .is_ok_and(|o| o.status.success())
    {
        return Ok(());
    }
    for bin in ["libvirtd", "virtlogd", "qemu-system-x86_64"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .output()
            .map_or(true, |o| !o.status.success())
        {
            return Err(format!(
                "{bin} is not installed (apt-get install libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86; see docs/agent.md)"
            ));
        }
    }
    for dir in ["/var/log/libvirt", "/var/run/libvirt"] {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {dir}: {e}"))?;
    }
    let _ = Command::new("virtlogd").arg("-d").status();
    let _ = Command::new("libvirtd").arg("-d").status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if Path::new(SOCKET).exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = std::fs::read_to_string("/var/log/libvirt/libvirtd.log").unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(3).collect();
    Err(format!(
        "libvirtd did not start (is the libvirt-qemu user there?): {}",
        tail.join(" | ")
    ))
}

/// Builds the test guest into a cache shared between runs (one directory per version of the
/// recipe). Err: why it cannot be built.
fn test_guest(root: &Path) -> Result<PathBuf, String> {
    use sha2::Digest;
    let recipe = std::fs::read(repo_root().join("images/test-guest/build.sh"))
        .map_err(|e| format!("cannot read images/test-guest/build.sh: {e}"))?;
    let cache = root.join(&hex::encode(sha2::Sha256::digest(&recipe))[..12]);
    if cache.join("test-guest/image.json").is_file() {
        return Ok(cache);
    }
    let out = Command::new(repo_root().join("images/test-guest/build.sh"))
        .arg(&cache)
        .output()
        .map_err(|e| format!("cannot run images/test-guest/build.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "images/test-guest/build.sh failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(cache)
}

fn state(pass: &Pass) -> (pb::ObservedState, String) {
    let s = &pass.report.instances[0];
    (s.state(), s.message.clone())
}

fn wait_for(log: &Path, marker: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(marker) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {marker:?} in the serial log within {timeout:?}; the log has:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `id` created, placed and given its NIC by the scheduler's state (networks from `vni` on):
/// the desired instance its host gets.
fn scheduled(id: &InstanceId, vni: u32) -> pb::DesiredInstance {
    use vmcloud_proto::pb::command::Body;
    let mut state = vmcloud_scheduler::state::ClusterState::default();
    let mut apply = |body: Body| {
        let index = state.applied_index + 1;
        state
            .apply(
                index,
                pb::Command {
                    at_unix_ms: 1_000 + index as i64,
                    actor: None,
                    request: None,
                    body: Some(body),
                },
            )
            .unwrap();
    };
    apply(Body::CreateProject(pb::CreateProject {
        project_id: "prj-real".into(),
        name: "real".into(),
        ..Default::default()
    }));
    apply(Body::RegisterNode(pb::RegisterNode {
        node_id: "real-host".into(),
        inventory: Some(pb::HostInventory {
            region: "par".into(),
            cpu_threads: 4,
            memory_bytes: 4 << 30,
            ..Default::default()
        }),
        build: None,
    }));
    apply(Body::CreateInstance(pb::CreateInstance {
        instance_id: id.to_string(),
        project_id: "prj-real".into(),
        name: "real-guest".into(),
        image: "test-guest".into(),
        region: "par".into(),
        vcpus: 1,
        memory_mib: 256,
        disk_gib: 1,
        ssh_keys: vec![KEY.into()],
        vnis: Some(pb::VniRange {
            first: vni,
            last: 0x00ff_ffff,
        }),
        ..Default::default()
    }));
    apply(Body::PlaceInstances(pb::PlaceInstances {
        placements: vec![pb::Placement {
            instance_id: id.to_string(),
            node_id: "real-host".into(),
            gpus: Vec::new(),
        }],
        ..Default::default()
    }));
    let node = vmcloud_proto::NodeId::parse("real-host").unwrap();
    state
        .desired_config(&node)
        .unwrap()
        .instances
        .into_iter()
        .next()
        .unwrap()
}

#[test]
fn boots_the_test_guest_through_libvirtd() {
    if !nix::unistd::Uid::effective().is_root() {
        skip(
            TEST,
            "needs root (libvirtd's qemu:///system and a bridge on the host)",
        );
        return;
    }
    if let Err(why) = ensure_libvirtd() {
        skip(TEST, &why);
        return;
    }
    let images = match test_guest(Path::new("/var/tmp/vmcloud-test-images")) {
        Ok(dir) => dir,
        Err(why) => {
            skip(TEST, &why);
            return;
        }
    };
    // QEMU runs as libvirt-qemu: the instance directory must be reachable by it.
    let data = PathBuf::from(format!(
        "/var/tmp/vmcloud-real-guest-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&data).unwrap();
    let hv = Libvirt::connect("qemu:///system").unwrap();
    let vni = 100_000 + std::process::id() % 100_000;
    let host = Host {
        hv: Arc::new(hv),
        images: Arc::new(ImageCache::new(&images, data.join("instances"))),
        links: Arc::new(Rtnetlink::new(None, Some(METADATA)).unwrap()),
        firewall: Arc::new(vmcloud_agent::firewall::SimFirewall::default()),
        scrubber: Arc::new(vmcloud_agent::scrub::SimScrubber::default()),
        gpus: HashMap::new(),
        numa_cpus: HashMap::new(),
        stop_grace: Duration::from_secs(60),
        watch_interval: Duration::from_secs(5),
    };
    let id = InstanceId::generate();
    // The instance as the scheduler makes it: its network, VNI, MAC and address from the
    // scheduler's IPAM, in the desired config of the host it is placed on.
    let mut want = scheduled(&id, vni);
    let nic = want.nic.clone().expect("the scheduler gave it a NIC");
    let mac = nic.mac.clone();
    let address = nic.ipv4.split('/').next().unwrap().to_owned();
    assert!(address.starts_with("10.0.0."), "{nic:?}");
    let desired = |generation, instances: Vec<pb::DesiredInstance>| pb::DesiredConfig {
        generation,
        instances,
        ..Default::default()
    };
    let mut memory = Memory::default();

    // The agent's metadata endpoint on the bridge's 169.254.169.254 (the network is made
    // first so the address exists to listen on; the reconciler finds it made).
    host.links
        .ensure_network(&vmcloud_agent::tenant_net::TenantNetwork { vni, mtu: 1450 })
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_desired_tx, desired_rx) =
        tokio::sync::watch::channel(Some(desired(1, vec![want.clone()])));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind((METADATA, 80)))
        .unwrap();
    let app = vmcloud_agent::metadata::router(vmcloud_agent::metadata::MetadataState::new(
        desired_rx,
        "par".into(),
    ));
    rt.spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });

    let started = Instant::now();
    let pass = host
        .reconcile_once(&desired(1, vec![want.clone()]), &mut memory)
        .unwrap();
    assert_eq!(
        state(&pass),
        (pb::ObservedState::Running, String::new()),
        "{pass:?}"
    );
    let log = data.join("instances").join(id.as_str()).join("serial.log");
    let text = wait_for(&log, "VMCLOUD-TEST-GUEST: ready", Duration::from_secs(180));
    eprintln!(
        "test guest ready {:.1} s after the reconcile pass began (TCG)",
        started.elapsed().as_secs_f64()
    );
    assert!(text.contains("VMCLOUD-TEST-GUEST: booted"), "{text}");
    // The 1 GiB overlay over the 64 MiB base disk, and the NIC with the MAC asked for.
    assert!(
        text.contains("VMCLOUD-TEST-GUEST: disk vda 2097152 sectors"),
        "{text}"
    );
    assert!(
        text.contains(&format!("VMCLOUD-TEST-GUEST: nic eth0 {mac}")),
        "{text}"
    );
    assert_eq!(host.links.networks().unwrap(), vec![vni]);
    // The guest asked the metadata endpoint who it is, over its NIC, and was told.
    assert!(
        text.contains(&format!("VMCLOUD-TEST-GUEST: metadata instance-id {id}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("VMCLOUD-TEST-GUEST: metadata openssh-key {KEY}")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "VMCLOUD-TEST-GUEST: metadata local-ipv4 {address}"
        )),
        "{text}"
    );

    // Adopted, not recreated, by a fresh reconciler (an agent restart).
    let pass = host
        .reconcile_once(&desired(1, vec![want.clone()]), &mut Memory::default())
        .unwrap();
    assert_eq!(state(&pass).0, pb::ObservedState::Running);
    assert_eq!(
        std::fs::read_to_string(&log)
            .unwrap()
            .matches("VMCLOUD-TEST-GUEST: booted")
            .count(),
        1
    );

    // Stopped by its owner: ACPI, honoured by the guest.
    want.stopped = true;
    let deadline = Instant::now() + Duration::from_secs(90);
    let final_state = loop {
        let pass = host
            .reconcile_once(&desired(2, vec![want.clone()]), &mut memory)
            .unwrap();
        let s = state(&pass);
        if s.0 != pb::ObservedState::Running || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        final_state,
        (pb::ObservedState::Stopped, "stopped gracefully".into())
    );
    wait_for(&log, "power button, powering off", Duration::from_secs(5));

    // Deleted: domain undefined, disk and logs removed, bridge gone.
    let pass = host
        .reconcile_once(&desired(3, vec![]), &mut memory)
        .unwrap();
    assert!(pass.all_ok && pass.report.instances.is_empty(), "{pass:?}");
    assert!(
        !host
            .hv
            .list()
            .unwrap()
            .iter()
            .any(|d| d.name == domain_name(&id))
    );
    assert!(!log.exists());
    assert!(host.links.networks().unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&data);
}
