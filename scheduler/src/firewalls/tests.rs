//! Firewalls in `apply`: rules checked (each error names its field), attached only to
//! instances with a NIC, in the desired config of the instance's host with peer firewalls
//! resolved to addresses, the hosts told when rules or peers change, and a firewall in use
//! not deleted.

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

fn rule(direction: &str, protocol: &str, ports: (u32, u32), cidrs: &[&str]) -> pb::FirewallRule {
    pb::FirewallRule {
        direction: direction.into(),
        protocol: protocol.into(),
        port_from: ports.0,
        port_to: ports.1,
        cidrs: cidrs.iter().map(|c| (*c).to_owned()).collect(),
        ..Default::default()
    }
}

fn setup() -> ClusterState {
    let mut s = ClusterState::default();
    for body in [
        Body::CreateProject(pb::CreateProject {
            project_id: "prj-a".into(),
            name: "a".into(),
            ..Default::default()
        }),
        Body::RegisterNode(pb::RegisterNode {
            node_id: "node-a".into(),
            inventory: Some(pb::HostInventory {
                region: "par".into(),
                cpu_threads: 16,
                memory_bytes: 64 << 30,
                ..Default::default()
            }),
            build: None,
        }),
    ] {
        apply(&mut s, body).unwrap();
    }
    for (n, network) in [("01", true), ("02", true), ("03", false)] {
        apply(
            &mut s,
            Body::CreateInstance(pb::CreateInstance {
                instance_id: iid(n),
                project_id: "prj-a".into(),
                name: n.into(),
                region: "par".into(),
                vcpus: 1,
                memory_mib: 512,
                vnis: network.then_some(pb::VniRange {
                    first: 4096,
                    last: 5000,
                }),
                ..Default::default()
            }),
        )
        .unwrap();
        apply(
            &mut s,
            Body::PlaceInstances(pb::PlaceInstances {
                placements: vec![pb::Placement {
                    instance_id: iid(n),
                    node_id: "node-a".into(),
                    gpus: Vec::new(),
                }],
                ..Default::default()
            }),
        )
        .unwrap();
    }
    s
}

fn create(s: &mut ClusterState, id: &str, rules: Vec<pb::FirewallRule>) -> ApplyResult {
    apply(
        s,
        Body::CreateFirewall(pb::CreateFirewall {
            firewall_id: id.into(),
            project_id: "prj-a".into(),
            name: id.into(),
            rules,
        }),
    )
}

fn attach(s: &mut ClusterState, fw: &str, instance: &str, detach: bool) -> ApplyResult {
    apply(
        s,
        Body::AttachFirewall(pb::AttachFirewall {
            firewall_id: fw.into(),
            project_id: "prj-a".into(),
            instance_id: iid(instance),
            detach,
        }),
    )
}

fn nic_of(s: &ClusterState, instance: &str) -> pb::DesiredNic {
    let config = s.desired_config(&NodeId::parse("node-a").unwrap()).unwrap();
    config
        .instances
        .into_iter()
        .find(|i| i.instance_id == iid(instance))
        .unwrap()
        .nic
        .unwrap()
}

fn refusal(r: ApplyResult) -> String {
    match r {
        Err(Rejected::Invalid(m) | Rejected::Conflict(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn bad_rules_are_refused_naming_the_field() {
    let mut s = setup();
    for (bad, says) in [
        (
            rule("sideways", "tcp", (22, 22), &[]),
            "`rules[0].direction`",
        ),
        (rule("inbound", "sctp", (0, 0), &[]), "`rules[0].protocol`"),
        (
            rule("inbound", "tcp", (80, 22), &[]),
            "`rules[0].ports` 80-22",
        ),
        (
            rule("inbound", "icmp", (22, 22), &[]),
            "`rules[0].ports` are for tcp and udp",
        ),
        (
            rule("inbound", "tcp", (22, 22), &["10.0.0.1/24"]),
            "`rules[0].cidrs[0]`",
        ),
        (
            rule("inbound", "tcp", (22, 22), &["bogus"]),
            "not an IPv4 address",
        ),
    ] {
        let e = refusal(create(&mut s, "fw-bad", vec![bad]));
        assert!(e.contains(says), "{e}");
    }
    let mut peer = rule("inbound", "any", (0, 0), &[]);
    peer.peer_firewall = "fw-missing".into();
    let e = refusal(create(&mut s, "fw-bad", vec![peer]));
    assert!(e.contains("`rules[0].peer_firewall` fw-missing"), "{e}");
    assert!(s.firewalls.is_empty());
}

#[test]
fn attached_rules_reach_the_host_with_peers_resolved_and_follow_changes() {
    let mut s = setup();
    let node = NodeId::parse("node-a").unwrap();
    create(&mut s, "fw-db", vec![]).unwrap();
    let mut from_db = rule("inbound", "tcp", (5432, 5432), &[]);
    from_db.peer_firewall = "fw-db".into();
    create(
        &mut s,
        "fw-web",
        vec![
            rule("inbound", "tcp", (22, 22), &["203.0.113.0/24"]),
            from_db,
        ],
    )
    .unwrap();
    // No NIC, nothing to filter.
    let e = refusal(attach(&mut s, "fw-web", "03", false));
    assert!(e.contains("no NIC"), "{e}");
    // Not attached: not filtered.
    assert!(!nic_of(&s, "01").filtered);
    let before = s.nodes[&node].generation;
    attach(&mut s, "fw-web", "01", false).unwrap();
    assert!(s.nodes[&node].generation > before, "the host hears of it");
    let nic = nic_of(&s, "01");
    assert!(nic.filtered && !nic.outbound_restricted);
    // The rule naming an empty peer firewall allows nobody: it is left out.
    assert_eq!(nic.inbound.len(), 1, "{:?}", nic.inbound);
    assert_eq!(nic.inbound[0].cidrs, ["203.0.113.0/24"]);
    // 02 joins fw-db: 01's rule now allows 02's address.
    let before = s.nodes[&node].generation;
    attach(&mut s, "fw-db", "02", false).unwrap();
    assert!(s.nodes[&node].generation > before);
    let nic = nic_of(&s, "01");
    assert_eq!(nic.inbound.len(), 2);
    assert_eq!(nic.inbound[1].cidrs, ["10.0.0.4/32"]);
    assert_eq!(nic.inbound[1].port_from, 5432);
    // Outbound rules restrict outbound.
    apply(
        &mut s,
        Body::SetFirewallRules(pb::SetFirewallRules {
            firewall_id: "fw-web".into(),
            project_id: "prj-a".into(),
            rules: vec![rule("outbound", "udp", (53, 53), &["10.0.0.2"])],
        }),
    )
    .unwrap();
    let nic = nic_of(&s, "01");
    assert!(nic.filtered && nic.outbound_restricted && nic.inbound.is_empty());
    assert_eq!(nic.outbound[0].cidrs, ["10.0.0.2/32"]);
    // In use: not deleted. Detached, it can go.
    let e = refusal(apply(
        &mut s,
        Body::DeleteFirewall(pb::DeleteFirewall {
            firewall_id: "fw-web".into(),
            project_id: "prj-a".into(),
        }),
    ));
    assert!(e.contains("attached to 1 instance"), "{e}");
    attach(&mut s, "fw-web", "01", true).unwrap();
    assert!(!nic_of(&s, "01").filtered);
    apply(
        &mut s,
        Body::DeleteFirewall(pb::DeleteFirewall {
            firewall_id: "fw-web".into(),
            project_id: "prj-a".into(),
        }),
    )
    .unwrap();
    // An instance that goes leaves its firewalls.
    let id = InstanceId::parse(&iid("02")).unwrap();
    assert!(s.firewalls["fw-db"].instances.contains(&id));
    let removed = s.instances.remove(&id).unwrap();
    s.forget(&removed);
    assert!(s.firewalls["fw-db"].instances.is_empty());
}
