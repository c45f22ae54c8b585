//! Public addresses in `apply`: taken from the region's pools, never twice, given back when
//! their instance goes; floating IPs assigned, moved and kept; reverse DNS; pools that run
//! out refuse with what to do. And a property test: whatever the sequence, no pool address is
//! held twice.

use std::collections::BTreeSet;

use proptest::prelude::*;
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{InstanceId, NodeId};

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

fn iid(tag: &str) -> String {
    format!("i-{tag:0>20}")
}

/// 203.0.113.0/30: two usable addresses (network and broadcast kept out).
fn pool() -> Vec<String> {
    vec!["203.0.113.0/30".into()]
}

fn setup() -> ClusterState {
    let mut s = ClusterState::default();
    apply(
        &mut s,
        Body::CreateProject(pb::CreateProject {
            project_id: "prj-a".into(),
            name: "a".into(),
            ..Default::default()
        }),
    )
    .unwrap();
    apply(
        &mut s,
        Body::SetQuota(pb::SetQuota {
            project_id: "prj-a".into(),
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
    apply(
        &mut s,
        Body::RegisterNode(pb::RegisterNode {
            node_id: "node-a".into(),
            inventory: Some(pb::HostInventory {
                region: "par".into(),
                cpu_threads: 64,
                memory_bytes: 256 << 30,
                ..Default::default()
            }),
            build: None,
        }),
    )
    .unwrap();
    s
}

fn vm(s: &mut ClusterState, tag: &str, region: &str, public: bool) -> ApplyResult {
    apply(
        s,
        Body::CreateInstance(pb::CreateInstance {
            instance_id: iid(tag),
            project_id: "prj-a".into(),
            name: tag.into(),
            region: region.into(),
            vcpus: 1,
            memory_mib: 512,
            vnis: Some(pb::VniRange {
                first: 4096,
                last: 9000,
            }),
            public_ipv4: public,
            public_pool: if public { pool() } else { Vec::new() },
            ..Default::default()
        }),
    )
}

fn delete(s: &mut ClusterState, tag: &str) {
    apply(
        s,
        Body::DeleteInstance(pb::DeleteInstance {
            instance_id: iid(tag),
            project_id: "prj-a".into(),
        }),
    )
    .unwrap();
}

fn fip(s: &mut ClusterState, id: &str) -> ApplyResult {
    apply(
        s,
        Body::CreateFloatingIp(pb::CreateFloatingIp {
            floating_ip_id: id.into(),
            project_id: "prj-a".into(),
            region: "par".into(),
            public_pool: pool(),
            description: String::new(),
        }),
    )
}

fn assign(s: &mut ClusterState, id: &str, tag: &str) -> ApplyResult {
    apply(
        s,
        Body::AssignFloatingIp(pb::AssignFloatingIp {
            floating_ip_id: id.into(),
            project_id: "prj-a".into(),
            instance_id: if tag.is_empty() {
                String::new()
            } else {
                iid(tag)
            },
        }),
    )
}

fn instance<'a>(s: &'a ClusterState, tag: &str) -> &'a crate::instances::types::Instance {
    &s.instances[&InstanceId::parse(&iid(tag)).unwrap()]
}

#[test]
fn pools_give_each_address_once_and_take_it_back() {
    let mut s = setup();
    vm(&mut s, "01", "par", true).unwrap();
    assert_eq!(
        instance(&s, "01").public_ipv4.unwrap().to_string(),
        "203.0.113.1"
    );
    fip(&mut s, "fip-1").unwrap();
    assert_eq!(s.floating_ips["fip-1"].address.to_string(), "203.0.113.2");
    // The pool is spent: a clear refusal, nothing made.
    match vm(&mut s, "02", "par", true) {
        Err(Rejected::Exhausted(why)) => assert!(why.contains("203.0.113.0/30"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(
        !s.instances
            .contains_key(&InstanceId::parse(&iid("02")).unwrap())
    );
    assert!(matches!(fip(&mut s, "fip-2"), Err(Rejected::Exhausted(_))));
    // The instance goes (never placed: at once): its address is free again.
    delete(&mut s, "01");
    vm(&mut s, "03", "par", true).unwrap();
    assert_eq!(
        instance(&s, "03").public_ipv4.unwrap().to_string(),
        "203.0.113.1"
    );
}

#[test]
fn floating_ips_move_between_instances_of_their_region_and_outlive_them() {
    let mut s = setup();
    for (tag, region) in [("01", "par"), ("02", "par"), ("03", "fra")] {
        vm(&mut s, tag, region, false).unwrap();
    }
    apply(
        &mut s,
        Body::PlaceInstances(pb::PlaceInstances {
            placements: vec![pb::Placement {
                instance_id: iid("01"),
                node_id: "node-a".into(),
                gpus: Vec::new(),
            }],
            ..Default::default()
        }),
    )
    .unwrap();
    fip(&mut s, "fip-1").unwrap();
    let node = NodeId::parse("node-a").unwrap();
    let before = s.nodes[&node].generation;
    assign(&mut s, "fip-1", "01").unwrap();
    assert!(s.nodes[&node].generation > before, "its host hears of it");
    let config = s.desired_config(&node).unwrap();
    assert_eq!(
        config.instances[0].nic.as_ref().unwrap().public_ipv4s,
        ["203.0.113.1"]
    );
    match assign(&mut s, "fip-1", "03") {
        Err(Rejected::Invalid(why)) => assert!(why.contains("is in par, instance"), "{why}"),
        other => panic!("{other:?}"),
    }
    // Moved: off 01, onto 02.
    let before = s.nodes[&node].generation;
    assign(&mut s, "fip-1", "02").unwrap();
    assert!(s.nodes[&node].generation > before, "01's host drops it");
    assert!(instance(&s, "01").floating_ips.is_empty());
    assert_eq!(instance(&s, "02").floating_ips, ["fip-1"]);
    // 02 goes; the floating IP stays, unassigned.
    delete(&mut s, "02");
    assert_eq!(s.floating_ips["fip-1"].instance, None);
    // Reverse DNS: checked, stored, shown; not for addresses of others.
    let rdns = |s: &mut ClusterState, address: &str, name: &str, project: &str| {
        apply(
            s,
            Body::SetReverseDns(pb::SetReverseDns {
                address: address.into(),
                project_id: project.into(),
                name: name.into(),
            }),
        )
    };
    rdns(&mut s, "203.0.113.1", "mail.example.org.", "prj-a").unwrap();
    assert_eq!(
        s.public_ips[&u32::from("203.0.113.1".parse::<std::net::Ipv4Addr>().unwrap())]
            .reverse_dns
            .as_deref(),
        Some("mail.example.org")
    );
    assert!(matches!(
        rdns(&mut s, "203.0.113.1", "bad name!", "prj-a"),
        Err(Rejected::Invalid(_))
    ));
    assert!(matches!(
        rdns(&mut s, "203.0.113.1", "x.example.org", "prj-b"),
        Err(Rejected::NotFound(_))
    ));
    apply(
        &mut s,
        Body::DeleteFloatingIp(pb::DeleteFloatingIp {
            floating_ip_id: "fip-1".into(),
            project_id: "prj-a".into(),
        }),
    )
    .unwrap();
    assert!(s.public_ips.is_empty() && s.floating_ips.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Invariant: no pool address is held twice, and every address held is one an instance or
    /// a floating IP says it has.
    #[test]
    fn no_pool_address_is_given_twice(ops in prop::collection::vec((0u8..5, 0u8..8), 1..80)) {
        let mut s = setup();
        let mut made = 0u32;
        for (op, x) in ops {
            match op {
                0 => {
                    made += 1;
                    let _ = vm(&mut s, &format!("{made:04}"), "par", true);
                }
                1 => {
                    let _ = fip(&mut s, &format!("fip-{x}"));
                }
                2 => {
                    let tags: Vec<String> = s.instances.keys().map(|i| i.to_string()).collect();
                    if let Some(id) = tags.get(x as usize % tags.len().max(1)) {
                        let _ = apply(&mut s, Body::DeleteInstance(pb::DeleteInstance {
                            instance_id: id.clone(),
                            project_id: "prj-a".into(),
                        }));
                    }
                }
                3 => {
                    let _ = apply(&mut s, Body::DeleteFloatingIp(pb::DeleteFloatingIp {
                        floating_ip_id: format!("fip-{x}"),
                        project_id: "prj-a".into(),
                    }));
                }
                _ => {
                    let tags: Vec<String> = s.instances.keys().map(|i| i.to_string()).collect();
                    if let Some(id) = tags.get(x as usize % tags.len().max(1)) {
                        let _ = apply(&mut s, Body::AssignFloatingIp(pb::AssignFloatingIp {
                            floating_ip_id: format!("fip-{}", x % 3),
                            project_id: "prj-a".into(),
                            instance_id: id.clone(),
                        }));
                    }
                }
            }
            let mut claimed = BTreeSet::new();
            for i in s.instances.values() {
                if let Some(a) = i.public_ipv4 {
                    prop_assert!(claimed.insert(u32::from(a)), "{a} twice");
                }
            }
            for f in s.floating_ips.values() {
                prop_assert!(claimed.insert(u32::from(f.address)), "{} twice", f.address);
            }
            let held: BTreeSet<u32> = s.public_ips.keys().copied().collect();
            prop_assert_eq!(held, claimed);
        }
    }
}
