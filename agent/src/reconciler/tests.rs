use std::sync::Arc;
use std::time::Duration;

use vmcloud_proto::{InstanceId, pb};

use crate::libvirt::Libvirt;
use std::collections::HashMap;

use crate::hypervisor::domain_name;
use crate::images::ImageCache;
use crate::reconciler::{Host, Memory, Pass, STOPPING_POLL};
use crate::scrub::SimScrubber;
use crate::tenant_net::SimLinks;

fn want(id: &InstanceId) -> pb::DesiredInstance {
    pb::DesiredInstance {
        instance_id: id.to_string(),
        name: "web".into(),
        vcpus: 1,
        memory_mib: 256,
        disk_gib: 10,
        image: "debian-12".into(),
        ..Default::default()
    }
}

fn desired(generation: u64, instances: Vec<pb::DesiredInstance>) -> pb::DesiredConfig {
    pb::DesiredConfig {
        generation,
        instances,
        ..Default::default()
    }
}

fn host(dir: &std::path::Path) -> Host {
    Host {
        hv: Arc::new(Libvirt::connect("test:///default").unwrap()),
        images: Arc::new(ImageCache::new(dir.join("images"), dir.join("instances"))),
        links: Arc::new(SimLinks::default()),
        firewall: Arc::new(crate::firewall::SimFirewall::default()),
        scrubber: Arc::new(SimScrubber::default()),
        gpus: HashMap::from([
            ("0000:17:00.0".to_owned(), 1),
            ("0000:18:00.0".to_owned(), 1),
        ]),
        numa_cpus: HashMap::from([(1, "8-15".to_owned())]),
        stop_grace: Duration::from_secs(60),
        watch_interval: Duration::from_secs(5),
    }
}

fn state_of(pass: &Pass, id: &InstanceId) -> (pb::ObservedState, String) {
    let s = pass
        .report
        .instances
        .iter()
        .find(|s| s.instance_id == id.as_str())
        .unwrap();
    (s.state(), s.message.clone())
}

#[test]
fn converges_with_the_libvirt_test_driver() {
    let _guard = crate::TEST_DRIVER.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let links = Arc::new(SimLinks::default());
    let firewall = Arc::new(crate::firewall::SimFirewall::default());
    let host = Host {
        links: links.clone(),
        firewall: firewall.clone(),
        ..host(tmp.path())
    };
    let mut mem = Memory::default();
    let (a, b) = (InstanceId::generate(), InstanceId::generate());
    let mut wa = want(&a);
    wa.nic = Some(pb::DesiredNic {
        vni: 42,
        mac: "52:54:00:00:00:01".into(),
        mtu: 1450,
        ipv4: "10.42.0.2/24".into(),
        filtered: true,
        inbound: vec![pb::FirewallRule {
            direction: "inbound".into(),
            protocol: "tcp".into(),
            port_from: 22,
            port_to: 22,
            ..Default::default()
        }],
        ..Default::default()
    });
    let pass = host
        .reconcile_once(&desired(1, vec![wa.clone(), want(&b)]), &mut mem)
        .unwrap();
    assert!(pass.all_ok, "{pass:?}");
    assert_eq!(state_of(&pass, &a).0, pb::ObservedState::Running);
    assert_eq!(state_of(&pass, &b).0, pb::ObservedState::Running);
    assert_eq!(host.links.networks().unwrap(), vec![42]);
    assert_eq!(
        links.routes().into_iter().collect::<Vec<_>>(),
        vec![("10.42.0.2".parse().unwrap(), 42)]
    );
    // a's firewall: its port filtered, only port 22 in; b (no firewall) not filtered.
    let applied = firewall.applied();
    let port = crate::firewall::port_name(a.as_str());
    assert_eq!(applied.keys().collect::<Vec<_>>(), [&port]);
    assert_eq!(applied[&port].inbound[0].port_from, 22);
    assert!(applied[&port].outbound.is_none());
    assert!(host.images.instance_dir(&a).is_dir());

    // b is no longer desired: its domain and files go, a stays untouched.
    let pass = host
        .reconcile_once(&desired(2, vec![wa.clone()]), &mut mem)
        .unwrap();
    assert!(pass.all_ok);
    assert_eq!(pass.report.generation, 2);
    assert_eq!(pass.report.instances.len(), 1);
    let names: Vec<String> = host
        .hv
        .list()
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert!(names.contains(&domain_name(&a)));
    assert!(!names.contains(&domain_name(&b)));
    assert!(!host.images.instance_dir(&b).exists());
    // Domains that are not ours are never touched.
    assert!(names.contains(&"test".to_owned()));

    // Stopped by its owner (the test driver's guest honours ACPI at once), resized while
    // off, started again with the new size.
    wa.stopped = true;
    let pass = host
        .reconcile_once(&desired(3, vec![wa.clone()]), &mut mem)
        .unwrap();
    assert_eq!(
        state_of(&pass, &a),
        (pb::ObservedState::Running, "stopping".into())
    );
    assert_eq!(pass.next, STOPPING_POLL);
    let pass = host
        .reconcile_once(&desired(3, vec![wa.clone()]), &mut mem)
        .unwrap();
    assert_eq!(
        state_of(&pass, &a),
        (pb::ObservedState::Stopped, "stopped gracefully".into())
    );
    wa.vcpus = 2;
    let pass = host
        .reconcile_once(&desired(4, vec![wa.clone()]), &mut mem)
        .unwrap();
    assert_eq!(
        state_of(&pass, &a),
        (pb::ObservedState::Stopped, "resized".into())
    );
    wa.stopped = false;
    let pass = host
        .reconcile_once(&desired(5, vec![wa.clone()]), &mut mem)
        .unwrap();
    assert_eq!(
        state_of(&pass, &a),
        (pb::ObservedState::Running, String::new())
    );
    let d = host
        .hv
        .list()
        .unwrap()
        .into_iter()
        .find(|d| d.name == domain_name(&a))
        .unwrap();
    assert_eq!(d.vcpus, 2);

    // The guest shuts itself down: reported, left off, also after an agent restart.
    host.hv.request_shutdown(&domain_name(&a)).unwrap();
    let pass = host
        .reconcile_once(&desired(5, vec![wa.clone()]), &mut mem)
        .unwrap();
    let (state, message) = state_of(&pass, &a);
    assert_eq!(state, pb::ObservedState::Stopped);
    assert!(message.contains("shut itself down"), "{message}");
    let pass = host
        .reconcile_once(&desired(5, vec![wa.clone()]), &mut Memory::default())
        .unwrap();
    assert_eq!(state_of(&pass, &a).0, pb::ObservedState::Stopped);

    // Nothing desired: everything of ours goes, networks included.
    let pass = host.reconcile_once(&desired(6, vec![]), &mut mem).unwrap();
    assert!(pass.all_ok && pass.report.instances.is_empty());
    assert!(host.links.networks().unwrap().is_empty());
    assert!(links.routes().is_empty());
    assert!(
        firewall.applied().is_empty(),
        "nothing desired, nothing filtered"
    );
    assert!(!host.images.instance_dir(&a).exists());
}

#[test]
fn what_the_host_cannot_satisfy_fails_that_instance_only() {
    let _guard = crate::TEST_DRIVER.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path());
    let mut mem = Memory::default();
    let (ok, gpu, absent_gpu, bad_image) = (
        InstanceId::generate(),
        InstanceId::generate(),
        InstanceId::generate(),
        InstanceId::generate(),
    );
    let mut w_gpu = want(&gpu);
    w_gpu.gpus = vec!["0000:17:00.0".into()];
    let mut w_absent = want(&absent_gpu);
    w_absent.gpus = vec!["0000:99:00.0".into()];
    // An image in the cache whose file does not match its checksum.
    let dir = host.images.image_dir().join("broken");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("disk.qcow2"), b"not the image").unwrap();
    std::fs::write(
        dir.join("image.json"),
        r#"{"name":"broken","disk":{"file":"disk.qcow2","sha256":"00"}}"#,
    )
    .unwrap();
    let mut w_bad = want(&bad_image);
    w_bad.image = "broken".into();
    let pass = host
        .reconcile_once(
            &desired(1, vec![want(&ok), w_gpu, w_absent, w_bad]),
            &mut mem,
        )
        .unwrap();
    assert!(!pass.all_ok);
    assert_eq!(state_of(&pass, &ok).0, pb::ObservedState::Running);
    assert_eq!(state_of(&pass, &gpu).0, pb::ObservedState::Running);
    let (state, message) = state_of(&pass, &absent_gpu);
    assert_eq!(state, pb::ObservedState::Failed);
    assert!(
        message
            .contains("GPU 0000:99:00.0 is not on this host (it has 0000:17:00.0, 0000:18:00.0)"),
        "{message}"
    );
    let (state, message) = state_of(&pass, &bad_image);
    assert_eq!(state, pb::ObservedState::Failed);
    assert!(message.contains("checksum mismatch"), "{message}");
    let listed = host.hv.list().unwrap();
    assert!(listed.iter().any(|d| d.name == domain_name(&gpu)));
    assert!(!listed.iter().any(|d| d.name == domain_name(&absent_gpu)));
    host.reconcile_once(&desired(2, vec![]), &mut mem).unwrap();
}

#[test]
fn gpus_are_scrubbed_between_tenants_and_unhealthy_ones_refused() {
    let _guard = crate::TEST_DRIVER.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let scrubber = Arc::new(SimScrubber::default());
    let host = Host {
        scrubber: scrubber.clone(),
        ..host(tmp.path())
    };
    let mut mem = Memory::default();
    let with_gpu = |id: &InstanceId, gpu: &str| {
        let mut w = want(id);
        w.gpus = vec![gpu.into()];
        w
    };
    let (x, y, z) = (
        InstanceId::generate(),
        InstanceId::generate(),
        InstanceId::generate(),
    );
    // First tenant: scrubbed before it starts (the agent knows nothing of its past).
    let pass = host
        .reconcile_once(&desired(1, vec![with_gpu(&x, "0000:17:00.0")]), &mut mem)
        .unwrap();
    assert_eq!(state_of(&pass, &x).0, pb::ObservedState::Running);
    assert_eq!(scrubber.prepared(), vec!["0000:17:00.0"]);
    // Its own GPU is not scrubbed under it.
    host.reconcile_once(&desired(1, vec![with_gpu(&x, "0000:17:00.0")]), &mut mem)
        .unwrap();
    assert_eq!(scrubber.prepared().len(), 1);
    // Next tenant: scrubbed again.
    let pass = host
        .reconcile_once(&desired(2, vec![with_gpu(&y, "0000:17:00.0")]), &mut mem)
        .unwrap();
    assert_eq!(state_of(&pass, &y).0, pb::ObservedState::Running);
    assert_eq!(scrubber.prepared().len(), 2);

    // A GPU that fails: the instance fails with why, the GPU is reported, and it is not
    // tried again.
    scrubber.fail("0000:18:00.0");
    let config = desired(
        3,
        vec![with_gpu(&y, "0000:17:00.0"), with_gpu(&z, "0000:18:00.0")],
    );
    let pass = host.reconcile_once(&config, &mut mem).unwrap();
    let (state, message) = state_of(&pass, &z);
    assert_eq!(state, pb::ObservedState::Failed);
    assert!(
        message.contains("failed its scrub or health check"),
        "{message}"
    );
    assert_eq!(pass.report.unhealthy_gpus.len(), 1);
    assert_eq!(pass.report.unhealthy_gpus[0].pci_address, "0000:18:00.0");
    assert_eq!(state_of(&pass, &y).0, pb::ObservedState::Running);
    let pass = host.reconcile_once(&config, &mut mem).unwrap();
    assert!(state_of(&pass, &z).1.contains("is unhealthy"));
    assert_eq!(scrubber.prepared().len(), 3);
    host.reconcile_once(&desired(4, vec![]), &mut mem).unwrap();
}
