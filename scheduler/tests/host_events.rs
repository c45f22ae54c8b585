//! Host states, pools, labels, spread groups and spot preemption, driven through the real
//! `apply` and planner as the leader's controller drives them.

use vmcloud_proto::InstanceId;
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_scheduler::instances::types::InstanceState;
use vmcloud_scheduler::nodes::types::NodeState;

use crate::fleet::Fleet;

fn spot(c: &mut pb::CreateInstance) {
    c.market = pb::Market::Spot as i32;
    c.preemption_notice_s = 60;
    c.user_data = "#cloud-config\n".into();
    c.ssh_keys = vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB alice".into()];
}

#[test]
fn cordoned_hosts_take_nothing_new_and_the_reason_says_so() {
    let mut f = Fleet::new();
    let a = f.host("a", "r1", 0);
    let first = f.create(0, |_| {});
    f.place();
    assert_eq!(f.instance(&first).node.as_ref(), Some(&a));

    f.set_state(&a, pb::NodeState::Cordoned, 0);
    assert_eq!(f.state.nodes[&a].state, NodeState::Cordoned);
    let second = f.create(0, |_| {});
    f.place();
    let i = f.instance(&second);
    assert_eq!(i.state, InstanceState::Pending);
    assert_eq!(
        i.pending_reason.as_deref(),
        Some(
            "no host in par with 4 vCPU and 8192 MiB free: 0 full, 1 not ready (cordoned, draining, in maintenance or down)"
        )
    );
    assert_eq!(
        f.instance(&first).state,
        InstanceState::Scheduled,
        "what runs there stays"
    );

    f.set_state(&a, pb::NodeState::Ready, 0);
    f.place();
    assert_eq!(f.instance(&second).node.as_ref(), Some(&a));
}

#[test]
fn pools_and_labels_keep_workloads_apart() {
    let mut f = Fleet::new();
    let general = f.host("general", "r1", 0);
    let pooled = f.host("pooled", "r1", 0);
    f.apply(Body::SetNodeLabels(pb::SetNodeLabels {
        node_id: pooled.to_string(),
        labels: [("cpu".to_owned(), "epyc-9554".to_owned())].into(),
        pools: vec!["anti-cheat".into()],
    }));
    let anywhere = f.create(0, |_| {});
    let in_pool = f.create(0, |c| c.pool = "anti-cheat".into());
    let selected = f.create(0, |c| {
        c.pool = "anti-cheat".into();
        c.node_selector = [("cpu".to_owned(), "epyc-9554".to_owned())].into();
    });
    let impossible = f.create(0, |c| {
        c.node_selector = [("cpu".to_owned(), "xeon".to_owned())].into();
    });
    f.place();
    assert_eq!(f.instance(&anywhere).node.as_ref(), Some(&general));
    assert_eq!(f.instance(&in_pool).node.as_ref(), Some(&pooled));
    assert_eq!(f.instance(&selected).node.as_ref(), Some(&pooled));
    let reason = f.instance(&impossible).pending_reason.clone().unwrap();
    assert!(
        reason.ends_with("2 in a dedicated pool or without the labels asked for"),
        "{reason}"
    );
}

#[test]
fn a_spread_group_never_shares_a_host_and_prefers_other_racks() {
    let mut f = Fleet::new();
    f.host("a1", "r1", 0);
    f.host("a2", "r1", 0);
    f.host("b1", "r2", 0);
    let group: Vec<InstanceId> = (0..3)
        .map(|_| f.create(0, |c| c.spread_group = "web".into()))
        .collect();
    let fourth = f.create(0, |c| c.spread_group = "web".into());
    f.place();
    let hosts: Vec<String> = group
        .iter()
        .map(|i| f.instance(i).node.as_ref().unwrap().to_string())
        .collect();
    let mut distinct = hosts.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "one per host: {hosts:?}");
    // The first two go to different racks before a rack takes a second.
    let racks: Vec<&str> = hosts[..2]
        .iter()
        .map(|h| if h.starts_with('a') { "r1" } else { "r2" })
        .collect();
    assert_ne!(racks[0], racks[1], "{hosts:?}");
    let reason = f.instance(&fourth).pending_reason.clone().unwrap();
    assert!(
        reason.ends_with("3 already hold one of spread group web"),
        "{reason}"
    );
}

#[test]
fn on_demand_preempts_the_cheapest_spot_set_with_notice() {
    let mut f = Fleet::new();
    let host = f.host("g", "r1", 8);
    // Spot work fills the host: one with 4 GPUs, two with 2.
    let big = f.create(4, spot);
    let small1 = f.create(2, spot);
    let small2 = f.create(2, spot);
    f.place();
    for s in [&big, &small1, &small2] {
        assert_eq!(f.instance(s).node.as_ref(), Some(&host));
        f.observe(&host, s, pb::ObservedState::Running);
    }
    // An on-demand pair: one small spot instance is enough (the cheapest set).
    let pair = f.create(2, |_| {});
    let at = f.at;
    f.place();
    let preempted: Vec<&InstanceId> = [&big, &small1, &small2]
        .into_iter()
        .filter(|s| f.instance(s).terminate_at_ms.is_some())
        .collect();
    assert_eq!(preempted.len(), 1, "one victim");
    let victim = preempted[0].clone();
    assert_ne!(victim, big, "the smallest set that frees 2 GPUs");
    assert_eq!(f.instance(&victim).terminate_at_ms, Some(at + 60_000));
    assert_eq!(
        f.instance(&victim).state,
        InstanceState::Running,
        "it keeps running through its notice"
    );
    assert!(
        f.instance(&victim).notices[0]
            .message
            .starts_with("spot capacity reclaimed"),
        "the owner is told"
    );
    let desired = f.state.desired_config(&host).unwrap();
    let d = desired
        .instances
        .iter()
        .find(|d| d.instance_id == victim.to_string())
        .unwrap();
    assert_eq!(d.terminate_at_unix_ms, at + 60_000, "the agent learns it");
    // What its guest reads from the metadata endpoint comes with it.
    assert_eq!(d.availability_zone, "par");
    assert_eq!(d.hostname, f.instance(&victim).name);
    assert_eq!(d.user_data, "#cloud-config\n");
    assert_eq!(
        d.ssh_keys,
        vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB alice"]
    );
    let nominee = f.instance(&pair);
    assert_eq!(nominee.nominated_node.as_ref(), Some(&host));
    assert!(
        nominee
            .pending_reason
            .as_deref()
            .unwrap()
            .starts_with("waiting for 1 spot instance(s) on g to stop"),
        "{:?}",
        nominee.pending_reason
    );

    // Planning again before the notice ends preempts nothing more.
    f.place();
    assert_eq!(
        [&big, &small1, &small2]
            .into_iter()
            .filter(|s| f.instance(s).terminate_at_ms.is_some())
            .count(),
        1
    );

    // Not before the notice ends…
    assert!(f.state.notices_ending(f.at).1.is_empty());
    f.apply(Body::ReclaimInstances(pb::ReclaimInstances {
        instance_ids: vec![victim.to_string()],
    }));
    assert_eq!(f.instance(&victim).state, InstanceState::Running);
    // …then it is stopped, and its capacity goes to the nominee once the agent removed it.
    f.at = at + 60_000;
    let (_, due) = f.state.notices_ending(f.at);
    assert_eq!(due, vec![victim.clone()]);
    f.apply(Body::ReclaimInstances(pb::ReclaimInstances {
        instance_ids: due.iter().map(ToString::to_string).collect(),
    }));
    assert_eq!(f.instance(&victim).state, InstanceState::Deleting);
    f.observe(&host, &victim, pb::ObservedState::Absent);
    assert!(!f.state.instances.contains_key(&victim));
    f.place();
    assert_eq!(f.instance(&pair).state, InstanceState::Scheduled);
    assert_eq!(f.instance(&pair).node.as_ref(), Some(&host));
    assert_eq!(f.instance(&pair).nominated_node, None);
}

#[test]
fn spot_never_preempts_and_nothing_is_preempted_for_what_fits() {
    let mut f = Fleet::new();
    let host = f.host("g", "r1", 2);
    let first = f.create(2, spot);
    f.place();
    f.observe(&host, &first, pb::ObservedState::Running);
    let second = f.create(2, spot);
    f.place();
    assert_eq!(f.instance(&first).terminate_at_ms, None);
    assert_eq!(f.instance(&second).state, InstanceState::Pending);
}

#[test]
fn drain_gives_spot_notice_and_tells_owners_down_impairs() {
    let mut f = Fleet::new();
    // The project's webhook endpoint for spot notices.
    f.apply(Body::CreateWebhookEndpoint(pb::CreateWebhookEndpoint {
        endpoint_id: "we_spot".into(),
        project_id: crate::fleet::ACCOUNT.into(),
        url: "https://hooks.example.org/".into(),
        event_types: vec!["instance.spot_notice".into()],
        sealed_secret: "sealed".into(),
        description: String::new(),
        partner_customers: false,
    }));
    let host = f.host("h", "r1", 0);
    let vps = f.create(0, |_| {});
    let spot_vm = f.create(0, spot);
    f.place();
    f.observe(&host, &vps, pb::ObservedState::Running);
    f.observe(&host, &spot_vm, pb::ObservedState::Running);

    // A drain with a deadline shorter than the spot notice cuts the notice short.
    let deadline = f.at + 30_000;
    f.set_state(&host, pb::NodeState::Draining, deadline);
    assert_eq!(f.state.nodes[&host].drain_deadline_ms, Some(deadline));
    assert_eq!(f.instance(&spot_vm).terminate_at_ms, Some(deadline));
    // The notice is a webhook event, for the one endpoint that wants it.
    let queued: Vec<&str> = f
        .state
        .webhook_outbox
        .values()
        .map(|d| d.payload.as_str())
        .collect();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert!(
        queued[0].contains("instance.spot_notice") && queued[0].contains(spot_vm.as_str()),
        "{queued:?}"
    );
    let told = &f.instance(&vps).notices;
    assert_eq!(told.len(), 1);
    assert!(told[0].message.contains("is draining"), "{told:?}");
    assert_eq!(
        f.instance(&vps).state,
        InstanceState::Running,
        "a VPS is not stopped by a drain"
    );

    f.set_state(&host, pb::NodeState::Down, 0);
    let v = f.instance(&vps);
    assert_eq!(v.state, InstanceState::Impaired);
    assert!(v.notices.last().unwrap().message.contains("is down"));
    assert_eq!(
        v.node.as_ref(),
        Some(&host),
        "never silently recreated elsewhere"
    );
    assert_eq!(f.instance(&spot_vm).state, InstanceState::Deleting);

    // The host comes back: the VPS follows its agent's report.
    f.set_state(&host, pb::NodeState::Ready, 0);
    f.observe(&host, &vps, pb::ObservedState::Running);
    assert_eq!(f.instance(&vps).state, InstanceState::Running);
}

#[test]
fn operator_settings_survive_reregistration_and_restore() {
    use vmcloud_consensus::StateMachine;
    let mut f = Fleet::new();
    let host = f.host("h", "r1", 0);
    f.apply(Body::SetNodeLabels(pb::SetNodeLabels {
        node_id: host.to_string(),
        labels: [("k".to_owned(), "v".to_owned())].into(),
        pools: vec!["partner:acme".into()],
    }));
    f.set_state(&host, pb::NodeState::Maintenance, 0);
    f.host("h", "r1", 0);
    let n = &f.state.nodes[&host];
    assert_eq!(n.state, NodeState::Maintenance);
    assert!(n.pools.contains("partner:acme"));
    assert_eq!(n.labels["k"], "v");

    let original = vmcloud_scheduler::state::replicated::SharedState::new(f.state.clone());
    let mut copy = vmcloud_scheduler::state::replicated::SharedState::default();
    copy.restore(&original.snapshot()).unwrap();
    assert_eq!(*copy.read(), f.state);
}

#[test]
fn spot_goes_where_it_is_easy_to_reclaim() {
    let mut f = Fleet::new();
    let busy = f.host("a", "r1", 8);
    let spotty = f.host("b", "r1", 8);
    let on_demand = f.create(4, |c| c.vcpus = 4);
    f.place();
    assert_eq!(f.instance(&on_demand).node.as_ref(), Some(&busy));
    // Put a spot instance on b by cordoning a for a moment.
    f.set_state(&busy, pb::NodeState::Cordoned, 0);
    let first_spot = f.create(2, spot);
    f.place();
    assert_eq!(f.instance(&first_spot).node.as_ref(), Some(&spotty));
    f.set_state(&busy, pb::NodeState::Ready, 0);

    // Bin-packing alone would put the next 2 GPUs on a (4 free, the tightest); spot goes
    // beside the other spot instead, on-demand still bin-packs.
    let second_spot = f.create(2, spot);
    let second_on_demand = f.create(2, |_| {});
    f.place();
    assert_eq!(f.instance(&second_spot).node.as_ref(), Some(&spotty));
    assert_eq!(f.instance(&second_on_demand).node.as_ref(), Some(&busy));
}

#[test]
fn unhealthy_gpus_are_recorded_and_skipped_until_healthy_again() {
    let mut f = Fleet::new();
    let a = f.host("a", "r1", 2);
    let pci = f.state.nodes[&a].gpus[0].pci_address.clone();
    f.apply(Body::SetGpuHealth(pb::SetGpuHealth {
        node_id: a.to_string(),
        unhealthy: vec![pb::UnhealthyGpu {
            pci_address: pci.to_string(),
            reason: "health check failed: memory pattern mismatch".into(),
        }],
    }));
    assert_eq!(
        f.state.nodes[&a].gpus[0].unhealthy.as_deref(),
        Some("health check failed: memory pattern mismatch")
    );
    assert!(f.state.nodes[&a].gpus[1].unhealthy.is_none());
    // Two GPUs do not fit on a host with one healthy GPU; one does, on the healthy one.
    let two = f.create(2, |_| {});
    let one = f.create(1, |_| {});
    f.place();
    assert_eq!(f.instance(&two).state, InstanceState::Pending);
    assert_eq!(f.instance(&one).node.as_ref(), Some(&a));
    assert_ne!(
        f.instance(&one).gpus,
        vec![vmcloud_proto::GpuBinding::Whole(pci.clone())]
    );

    // Healthy again (and the one-GPU instance gone): the two-GPU instance fits.
    f.apply(Body::SetGpuHealth(pb::SetGpuHealth {
        node_id: a.to_string(),
        unhealthy: vec![],
    }));
    assert!(f.state.nodes[&a].gpus.iter().all(|g| g.unhealthy.is_none()));
    f.apply(Body::DeleteInstance(pb::DeleteInstance {
        instance_id: one.to_string(),
        project_id: crate::fleet::ACCOUNT.into(),
    }));
    f.observe(&a, &one, pb::ObservedState::Absent);
    f.place();
    assert_eq!(f.instance(&two).node.as_ref(), Some(&a));
}
