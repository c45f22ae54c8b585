//! Networks and IPAM in `apply`: subnets checked, VNIs never given twice, the default network
//! made on first use, addresses first free or asked for, held for the instance's life and
//! given back; a refused create leaves nothing behind. And a property test: whatever sequence
//! of creates and deletes, no address is held twice in a network and no VNI by two networks.

use std::collections::{BTreeSet, HashSet};

use proptest::prelude::*;
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{InstanceId, ProjectId};

use crate::networks::types::{Subnet, default_network_id};
use crate::state::{ApplyResult, ClusterState, Rejected};

fn apply(s: &mut ClusterState, body: Body) -> ApplyResult {
    let index = s.applied_index + 1;
    s.apply(
        index,
        pb::Command {
            at_unix_ms: 1_000 + index as i64,
            actor: None,
            request: None,
            body: Some(body),
        },
    )
}

fn vnis() -> Option<pb::VniRange> {
    Some(pb::VniRange {
        first: 4096,
        last: 4200,
    })
}

fn with_projects(names: &[&str]) -> ClusterState {
    let mut s = ClusterState::default();
    for p in names {
        apply(
            &mut s,
            Body::CreateProject(pb::CreateProject {
                project_id: (*p).into(),
                name: (*p).into(),
                ..Default::default()
            }),
        )
        .unwrap();
        apply(
            &mut s,
            Body::SetQuota(pb::SetQuota {
                project_id: (*p).into(),
                region: "par".into(),
                limits: Some(pb::QuotaLimits {
                    instances: Some(1 << 20),
                    vcpus: Some(1 << 20),
                    memory_mib: Some(1 << 30),
                    ..Default::default()
                }),
            }),
        )
        .unwrap();
    }
    s
}

fn network(
    s: &mut ClusterState,
    id: &str,
    project: &str,
    subnet: &str,
    region: &str,
) -> ApplyResult {
    apply(
        s,
        Body::CreateNetwork(pb::CreateNetwork {
            network_id: id.into(),
            project_id: project.into(),
            name: id.into(),
            subnet: subnet.into(),
            region: region.into(),
            vnis: vnis(),
        }),
    )
}

/// A valid instance id from a short tag (`"01"` → `i-00…01`).
fn iid(tag: &str) -> String {
    format!("i-{:0>20}", tag.trim_start_matches("i-"))
}

fn vm(s: &mut ClusterState, id: &str, project: &str, network: &str, ip: &str) -> ApplyResult {
    let id = iid(id);
    apply(
        s,
        Body::CreateInstance(pb::CreateInstance {
            instance_id: id.clone(),
            project_id: project.into(),
            name: id,
            flavor: "vps-s".into(),
            image: "debian-12".into(),
            region: "par".into(),
            vcpus: 1,
            memory_mib: 1024,
            disk_gib: 10,
            network_id: network.into(),
            private_ipv4: ip.into(),
            vnis: vnis(),
            ..Default::default()
        }),
    )
}

fn delete(s: &mut ClusterState, id: &str, project: &str) {
    apply(
        s,
        Body::DeleteInstance(pb::DeleteInstance {
            instance_id: iid(id),
            project_id: project.into(),
        }),
    )
    .unwrap();
}

fn ip_of(s: &ClusterState, id: &str) -> String {
    s.instances[&InstanceId::parse(&iid(id)).unwrap()]
        .nic
        .as_ref()
        .unwrap()
        .ipv4
        .to_string()
}

fn message(r: ApplyResult) -> String {
    match r {
        Err(Rejected::Invalid(m) | Rejected::Conflict(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn subnets_must_be_private_sized_aligned_and_not_overlap_within_a_project() {
    for (bad, says) in [
        ("8.8.8.0/24", "not a private range"),
        ("10.0.0.0/8", "/16 to /28"),
        ("10.0.0.0/30", "/16 to /28"),
        ("10.0.0.5/24", "10.0.0.0/24"),
        ("10.0.0.0", "write it as"),
        ("10.0.300.0/24", "not an IPv4 address"),
    ] {
        let e = Subnet::parse_private(bad).unwrap_err();
        assert!(e.contains(says), "{bad}: {e}");
    }
    let mut s = with_projects(&["prj-a", "prj-b"]);
    network(&mut s, "net-1", "prj-a", "10.1.0.0/16", "par").unwrap();
    let e = message(network(&mut s, "net-2", "prj-a", "10.1.4.0/24", "par"));
    assert!(e.contains("`subnet` 10.1.4.0/24 overlaps net-1"), "{e}");
    // Another region: no overlap to fear; another project: the same range, another VNI.
    network(&mut s, "net-3", "prj-a", "10.1.4.0/24", "fra").unwrap();
    let e = message(network(&mut s, "net-4", "prj-a", "10.1.8.0/24", ""));
    assert!(
        e.contains("overlaps"),
        "an all-regions network shares every region: {e}"
    );
    network(&mut s, "net-5", "prj-b", "10.1.0.0/16", "par").unwrap();
    assert_ne!(s.networks["net-1"].vni, s.networks["net-5"].vni);
    assert!(!s.networks.contains_key("net-2") && !s.networks.contains_key("net-4"));
}

#[test]
fn an_instance_joins_the_default_network_and_holds_its_address_until_it_is_gone() {
    let mut s = with_projects(&["prj-a"]);
    vm(&mut s, "i-01", "prj-a", "", "").unwrap();
    let default = default_network_id(&ProjectId::parse("prj-a").unwrap(), "par");
    let n = &s.networks[&default];
    assert!(n.default);
    assert_eq!(n.subnet.to_string(), "10.0.0.0/24");
    assert_eq!(n.vni, 4096);
    // .0 network, .1 gateway, .2 metadata: the first instance gets .3.
    assert_eq!(ip_of(&s, "i-01"), "10.0.0.3");
    vm(&mut s, "i-02", "prj-a", "", "").unwrap();
    assert_eq!(ip_of(&s, "i-02"), "10.0.0.4");
    vm(&mut s, "i-03", "prj-a", &default, "10.0.0.50").unwrap();
    assert_eq!(ip_of(&s, "i-03"), "10.0.0.50");
    let mac = s.instances[&InstanceId::parse(&iid("01")).unwrap()]
        .nic
        .as_ref()
        .unwrap()
        .mac
        .clone();
    assert!(mac.starts_with("02:"), "{mac}");
    // Asked-for addresses: taken, reserved, outside, not an address.
    for (ip, says) in [
        ("10.0.0.50", "taken by instance i-0000"),
        ("10.0.0.1", "reserved"),
        ("10.0.0.255", "reserved"),
        ("10.0.1.9", "outside"),
        ("ten", "not an IPv4 address"),
    ] {
        let e = message(vm(&mut s, "i-09", "prj-a", &default, ip));
        assert!(
            e.contains("`private_ipv4`") && e.contains(says),
            "{ip}: {e}"
        );
        assert!(
            !s.instances
                .contains_key(&InstanceId::parse(&iid("09")).unwrap())
        );
    }
    // Deleted (never placed: gone at once): its address is free again, first free reused.
    delete(&mut s, "i-01", "prj-a");
    assert!(
        !s.networks[&default]
            .addresses
            .values()
            .any(|i| i.as_str() == iid("01"))
    );
    vm(&mut s, "i-04", "prj-a", "", "").unwrap();
    assert_eq!(ip_of(&s, "i-04"), "10.0.0.3");
    // A network with instances is not deleted; empty, it is.
    let e = message(apply(
        &mut s,
        Body::DeleteNetwork(pb::DeleteNetwork {
            network_id: default.clone(),
            project_id: "prj-a".into(),
        }),
    ));
    assert!(e.contains("still has 3 instance(s)"), "{e}");
    for i in ["i-02", "i-03", "i-04"] {
        delete(&mut s, i, "prj-a");
    }
    apply(
        &mut s,
        Body::DeleteNetwork(pb::DeleteNetwork {
            network_id: default.clone(),
            project_id: "prj-a".into(),
        }),
    )
    .unwrap();
    // Made again on next use, with a new VNI: the old one is never given again.
    vm(&mut s, "i-05", "prj-a", "", "").unwrap();
    assert_eq!(s.networks[&default].vni, 4097);
}

#[test]
fn a_full_network_and_another_projects_or_regions_network_are_refused_with_nothing_made() {
    let mut s = with_projects(&["prj-a", "prj-b"]);
    network(&mut s, "net-tiny", "prj-a", "10.9.0.0/28", "par").unwrap();
    // 16 addresses: network, gateway, metadata, broadcast reserved: 12 for instances.
    for n in 0..12 {
        vm(&mut s, &format!("i-{n:02}"), "prj-a", "net-tiny", "").unwrap();
    }
    let e = message(vm(&mut s, "i-99", "prj-a", "net-tiny", ""));
    assert!(e.contains("no free address: all 12 are taken"), "{e}");
    assert!(matches!(
        vm(&mut s, "i-98", "prj-b", "net-tiny", ""),
        Err(Rejected::NotFound(_))
    ));
    network(&mut s, "net-fra", "prj-a", "10.8.0.0/24", "fra").unwrap();
    let e = message(vm(&mut s, "i-97", "prj-a", "net-fra", ""));
    assert!(
        e.contains("`network` net-fra is in region fra, not par"),
        "{e}"
    );
    assert_eq!(s.instances.len(), 12);
    // The default network is not made by a create that is refused.
    assert!(!s.networks.contains_key(&default_network_id(
        &ProjectId::parse("prj-b").unwrap(),
        "par"
    )));
}

#[test]
fn a_job_refused_part_way_takes_back_its_default_network() {
    let mut s = with_projects(&["prj-a"]);
    let member = |n: u32, id: &str| pb::CreateInstance {
        instance_id: iid(id),
        project_id: "prj-a".into(),
        name: id.into(),
        flavor: "vps-s".into(),
        image: "debian-12".into(),
        region: "par".into(),
        vcpus: 1,
        memory_mib: 1024,
        disk_gib: 10,
        vnis: vnis(),
        job: Some(pb::JobSpec {
            job_id: "job-0000000000000001".into(),
            gang_size: 2,
            member: n,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut bad = member(1, "i-02");
    bad.private_ipv4 = "10.0.0.1".into();
    let e = message(apply(
        &mut s,
        Body::CreateJob(pb::CreateJob {
            members: vec![member(0, "i-01"), bad],
        }),
    ));
    assert!(e.contains("reserved"), "{e}");
    assert!(s.instances.is_empty());
    assert!(s.networks.is_empty(), "{:?}", s.networks);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Invariant: no address held twice in a network, no VNI held by two networks, every
    /// held address inside its network and matching its instance.
    #[test]
    fn addresses_and_vnis_are_never_given_twice(
        ops in prop::collection::vec((0u8..4, 0u8..3, 0u8..40), 1..120),
    ) {
        let mut s = with_projects(&["prj-a", "prj-b", "prj-c"]);
        let projects = ["prj-a", "prj-b", "prj-c"];
        let mut next = 0u32;
        let mut made = 0;
        for (op, p, x) in ops {
            let project = projects[p as usize];
            match op {
                0 => {
                    next += 1;
                    made += usize::from(vm(&mut s, &format!("{next:04}"), project, "", "").is_ok());
                }
                1 => {
                    next += 1;
                    let ip = format!("10.0.0.{}", x);
                    made += usize::from(vm(&mut s, &format!("{next:04}"), project, "", &ip).is_ok());
                }
                2 => {
                    let mine: Vec<String> = s
                        .instances
                        .values()
                        .filter(|i| i.project.as_str() == project)
                        .map(|i| i.id.to_string())
                        .collect();
                    if let Some(id) = mine.get(x as usize % mine.len().max(1)) {
                        delete(&mut s, id, project);
                    }
                }
                _ => {
                    let _ = apply(
                        &mut s,
                        Body::DeleteNetwork(pb::DeleteNetwork {
                            network_id: default_network_id(&ProjectId::parse(project).unwrap(), "par"),
                            project_id: project.into(),
                        }),
                    );
                }
            }
            let mut vnis = HashSet::new();
            for n in s.networks.values() {
                prop_assert!(vnis.insert(n.vni), "VNI {} twice", n.vni);
                let mut held = BTreeSet::new();
                for (host, id) in &n.addresses {
                    prop_assert!(held.insert(*host));
                    let nic = s.instances[id].nic.as_ref().unwrap();
                    prop_assert_eq!(&nic.network, &n.id);
                    prop_assert_eq!(nic.ipv4, n.subnet.host(*host));
                    prop_assert!(n.subnet.assignable().contains(host));
                }
            }
            for i in s.instances.values() {
                let nic = i.nic.as_ref().unwrap();
                let n = &s.networks[&nic.network];
                prop_assert_eq!(n.addresses.get(&n.subnet.host_number(nic.ipv4)), Some(&i.id));
            }
        }
        // Not vacuous: creates of the first free address always succeed.
        prop_assert!(made > 0 || s.instances.is_empty());
    }
}

fn host(s: &mut ClusterState, node: &str, underlay: &str) {
    apply(
        s,
        Body::RegisterNode(pb::RegisterNode {
            node_id: node.into(),
            inventory: Some(pb::HostInventory {
                region: "par".into(),
                cpu_threads: 16,
                memory_bytes: 64 << 30,
                underlay_ipv4: underlay.into(),
                ..Default::default()
            }),
            build: None,
        }),
    )
    .unwrap();
}

fn place(s: &mut ClusterState, id: &str, node: &str) {
    apply(
        s,
        Body::PlaceInstances(pb::PlaceInstances {
            placements: vec![pb::Placement {
                instance_id: iid(id),
                node_id: node.into(),
                gpus: Vec::new(),
            }],
            ..Default::default()
        }),
    )
    .unwrap();
}

#[test]
fn each_host_floods_a_network_to_the_other_hosts_that_carry_it() {
    let mut s = with_projects(&["prj-a"]);
    host(&mut s, "node-a", "192.0.2.1");
    host(&mut s, "node-b", "192.0.2.2");
    host(&mut s, "node-c", "192.0.2.3");
    let node = |n: &str| vmcloud_proto::NodeId::parse(n).unwrap();
    vm(&mut s, "01", "prj-a", "", "").unwrap();
    vm(&mut s, "02", "prj-a", "", "").unwrap();
    vm(&mut s, "03", "prj-a", "", "").unwrap();
    place(&mut s, "01", "node-a");
    let config = s.desired_config(&node("node-a")).unwrap();
    assert_eq!(config.networks.len(), 1);
    assert!(config.networks[0].peers.is_empty(), "alone on the network");
    assert_eq!(
        config.instances[0].nic.as_ref().unwrap().ipv4,
        "10.0.0.3/24"
    );
    // node-b starts carrying the network: node-a's config changes and names it.
    let before = s.nodes[&node("node-a")].generation;
    place(&mut s, "02", "node-b");
    assert!(s.nodes[&node("node-a")].generation > before);
    let a = s.desired_config(&node("node-a")).unwrap();
    assert_eq!(a.networks[0].peers, ["192.0.2.2"]);
    let b = s.desired_config(&node("node-b")).unwrap();
    assert_eq!(b.networks[0].peers, ["192.0.2.1"]);
    assert_eq!(a.networks[0].vni, b.networks[0].vni);
    // A second instance on node-b changes nothing for node-a.
    let before = s.nodes[&node("node-a")].generation;
    place(&mut s, "03", "node-b");
    assert_eq!(s.nodes[&node("node-a")].generation, before);
    // node-c carries nothing: no networks in its config.
    assert!(
        s.desired_config(&node("node-c"))
            .unwrap()
            .networks
            .is_empty()
    );
}

#[test]
fn instances_get_ipv6_from_their_hosts_64_and_hosts_keep_their_64_to_themselves() {
    let mut s = with_projects(&["prj-a"]);
    let register = |s: &mut ClusterState, node: &str, prefix: &str| {
        apply(
            s,
            Body::RegisterNode(pb::RegisterNode {
                node_id: node.into(),
                inventory: Some(pb::HostInventory {
                    region: "par".into(),
                    cpu_threads: 16,
                    memory_bytes: 64 << 30,
                    ipv6_prefix: prefix.into(),
                    ..Default::default()
                }),
                build: None,
            }),
        )
    };
    register(&mut s, "node-a", "2001:db8:0:7::/64").unwrap();
    match register(&mut s, "node-b", "2001:db8:0:7::/64") {
        Err(Rejected::Conflict(why)) => {
            assert!(why.contains("has: each host needs a /64"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    vm(&mut s, "01", "prj-a", "", "").unwrap();
    assert_eq!(
        s.instances[&InstanceId::parse(&iid("01")).unwrap()].ipv6,
        None,
        "not placed"
    );
    place(&mut s, "01", "node-a");
    let i = &s.instances[&InstanceId::parse(&iid("01")).unwrap()];
    let mac = &i.nic.as_ref().unwrap().mac;
    // EUI-64 of the MAC: its universal/local bit flipped, ff:fe in the middle.
    let expected = crate::nodes::types::ipv6_of("2001:db8:0:7::".parse().unwrap(), mac).unwrap();
    assert_eq!(i.ipv6, Some(expected));
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    let segments = expected.segments();
    assert_eq!(segments[..4], [0x2001, 0x0db8, 0, 7]);
    assert_eq!(segments[4], u16::from_be_bytes([bytes[0] ^ 2, bytes[1]]));
    assert_eq!(segments[5], u16::from_be_bytes([bytes[2], 0xff]));
    let config = s
        .desired_config(&vmcloud_proto::NodeId::parse("node-a").unwrap())
        .unwrap();
    assert_eq!(
        config.instances[0].nic.as_ref().unwrap().ipv6,
        format!("{expected}/64")
    );
    assert_eq!(
        crate::nodes::types::parse_prefix64("2001:db8:0:7::1/64"),
        None
    );
    assert_eq!(crate::nodes::types::parse_prefix64("2001:db8::/48"), None);
}
