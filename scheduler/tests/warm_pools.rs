//! Warm pools in `apply`: the controller's fill is placed and booted like any instance; a
//! launch takes a booted warm VM at once (running, the gamer's, with its connection token);
//! two launches never take the same VM; a launch the household's rules refuse leaves the VM
//! warm; warm VMs are spot capacity that real work reclaims; a shrink leaves taken VMs alone;
//! the pool's size follows the launches of the last hour.

use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{InstanceId, NodeId};
use vmcloud_scheduler::catalog::Catalog;
use vmcloud_scheduler::gaming::catalog::WarmPoolConfig;
use vmcloud_scheduler::gaming::pools::{LaunchMinute, WarmClass, target_size};
use vmcloud_scheduler::gaming::warm_controller::{plan, pool_size};
use vmcloud_scheduler::instances::types::{InstanceState, Market};
use vmcloud_scheduler::state::Rejected;

use crate::fleet::{ACCOUNT, Fleet};

fn pool(min: u32, max: u32) -> WarmPoolConfig {
    WarmPoolConfig {
        region: "par".into(),
        flavor: "game-h100".into(),
        image: "game-streaming".into(),
        pool: None,
        min,
        max,
        boot_s: 60,
    }
}

fn catalog(min: u32, max: u32) -> Catalog {
    let mut c = Catalog::builtin();
    let mut flavor = c.flavors["game-rtx4090"].clone();
    flavor.gpu.as_mut().unwrap().model = "H100".into();
    c.flavors.insert("game-h100".into(), flavor);
    c.gaming.warm_pools = vec![pool(min, max)];
    c
}

fn class() -> WarmClass {
    WarmClass::of_config(&pool(0, 0))
}

/// Runs the controller's plan once, places what waits and boots what was placed.
fn warm_up(f: &mut Fleet, catalog: &Catalog) {
    for body in plan(&f.state, catalog, f.at) {
        f.apply(body);
    }
    f.place();
    let placed: Vec<(NodeId, InstanceId)> = f
        .state
        .instances
        .values()
        .filter(|i| i.is_warm() && i.state == InstanceState::Scheduled)
        .map(|i| (i.node.clone().unwrap(), i.id.clone()))
        .collect();
    f.at += 40_000;
    for (node, id) in placed {
        f.observe(&node, &id, pb::ObservedState::Running);
    }
}

fn launch(f: &mut Fleet, project: &str, warm: Option<&InstanceId>) -> Result<InstanceId, Rejected> {
    let id = warm.cloned().unwrap_or_else(InstanceId::generate);
    let r = f.try_apply(Body::CreateInstance(pb::CreateInstance {
        instance_id: id.to_string(),
        project_id: project.into(),
        name: "kart".into(),
        flavor: "game-h100".into(),
        image: "game-streaming".into(),
        region: "par".into(),
        vcpus: 8,
        memory_mib: 16384,
        disk_gib: 100,
        gpu_model: "H100".into(),
        gpu_count: 1,
        session: Some(pb::GameSession {
            tier: pb::SessionTier::Standard as i32,
            title: "kart-rally".into(),
            claim_warm: warm.is_some(),
            stream_token_sha256: vec![9; 32],
            stream_token_expires_at_unix_ms: f.at + 60_000,
            ..Default::default()
        }),
        ..Default::default()
    }));
    f.at += 1;
    r.map(|_| id)
}

fn other_project(f: &mut Fleet, id: &str) {
    f.apply(Body::CreateProject(pb::CreateProject {
        project_id: id.into(),
        name: id.into(),
        ..Default::default()
    }));
    f.unlimited(id);
}

#[test]
fn a_launch_takes_a_booted_warm_vm_at_once_and_only_one_launch_takes_it() {
    let mut f = Fleet::new();
    let catalog = catalog(2, 4);
    f.host("h1", "r1", 4);
    warm_up(&mut f, &catalog);
    let size = pool_size(&f.state, &catalog.gaming.warm_pools[0], f.at);
    assert_eq!(
        (size.target, size.ready, size.booting),
        (2, 2, 0),
        "{size:?}"
    );
    let ready: Vec<InstanceId> = f.state.ready_warm(&class()).cloned().collect();
    assert_eq!(ready.len(), 2);
    let vm = f.instance(&ready[0]).clone();
    assert_eq!(vm.market, Market::Spot, "warm VMs wait as spot capacity");

    let id = launch(&mut f, ACCOUNT, Some(&ready[0])).expect("the warm VM is taken");
    assert_eq!(id, ready[0], "the session is the warm VM");
    let s = f.instance(&id).clone();
    assert_eq!(s.project.as_str(), ACCOUNT);
    assert_eq!(s.state, InstanceState::Running, "running at once");
    assert_eq!(
        s.market,
        Market::OnDemand,
        "a gamer's session is not reclaimed"
    );
    assert_eq!(s.node, vm.node, "on the host it booted on");
    assert_eq!(s.gpus, vm.gpus, "with the GPU it holds");
    assert_eq!(
        s.running_at_ms,
        Some(f.at - 1),
        "its time starts with the launch"
    );
    assert_eq!(
        s.terminate_at_ms,
        Some(f.at - 1 + 3600 * 1000),
        "ends at its tier's length"
    );
    assert_eq!(s.session.as_ref().unwrap().stream_tokens.len(), 1);
    assert_eq!(f.state.ready_warm(&class()).count(), 1);
    // The GPU is bound once, to the session.
    let on_host: Vec<_> = f.state.instances_on(s.node.as_ref().unwrap()).collect();
    let mut gpus: Vec<_> = on_host.iter().flat_map(|i| i.gpus.clone()).collect();
    gpus.sort();
    gpus.dedup();
    assert_eq!((on_host.len(), gpus.len()), (2, 2), "two VMs, two GPUs");
    let spot = on_host.iter().filter(|i| i.market == Market::Spot).count();
    assert_eq!(spot, 1, "one warm VM left");
    // The same VM again (another gamer who picked it at the same time): refused, nothing made.
    other_project(&mut f, "prj-other");
    let again = launch(&mut f, "prj-other", Some(&ready[0]));
    assert!(
        matches!(again, Err(Rejected::Conflict(ref m)) if m.contains("taken")),
        "{again:?}"
    );
    assert_eq!(f.instance(&ready[0]).project.as_str(), ACCOUNT);
    // One session per project still holds for warm launches.
    let second = launch(&mut f, ACCOUNT, Some(&ready[1]));
    assert!(
        matches!(second, Err(Rejected::Conflict(ref m)) if m.contains("already has session")),
        "{second:?}"
    );
    assert!(
        f.state.warm_ready(&ready[1], &class()),
        "a refused launch leaves the VM warm"
    );
    // The other gamer gets the other one; the pool refills behind them.
    launch(&mut f, "prj-other", Some(&ready[1])).expect("the second warm VM");
    assert_eq!(f.state.ready_warm(&class()).count(), 0);
    warm_up(&mut f, &catalog);
    assert_eq!(
        f.state.ready_warm(&class()).count(),
        2,
        "refilled to its minimum"
    );
    // The state rebuilt from its maps (a restore) finds the same warm VMs.
    let before: Vec<InstanceId> = f.state.ready_warm(&class()).cloned().collect();
    f.state.reindex();
    let after: Vec<InstanceId> = f.state.ready_warm(&class()).cloned().collect();
    assert_eq!(before, after);
}

#[test]
fn warm_vms_are_reclaimed_by_real_work_and_a_shrink_leaves_taken_ones_alone() {
    let mut f = Fleet::new();
    let smaller = catalog(0, 0);
    let catalog = catalog(2, 2);
    f.host("h1", "r1", 2);
    warm_up(&mut f, &catalog);
    assert_eq!(f.state.ready_warm(&class()).count(), 2);
    // A GPU instance needs a GPU: placement reclaims a warm VM for it.
    let job = f.create(1, |_| {});
    f.place();
    let reclaimed = f
        .state
        .instances
        .values()
        .filter(|i| i.is_warm() && i.reclaimed_at_ms.is_some())
        .count();
    assert_eq!(reclaimed, 1, "one warm VM given notice for {job}");
    assert_eq!(
        f.state.ready_warm(&class()).count(),
        1,
        "a VM being reclaimed is not offered"
    );
    // The operator lowers the pool to 0: a shrink of both; one was taken meanwhile.

    let commands = plan(&f.state, &smaller, f.at);
    let taken: InstanceId = f.state.ready_warm(&class()).next().unwrap().clone();
    launch(&mut f, ACCOUNT, Some(&taken)).expect("taken before the shrink applies");
    for body in commands {
        f.apply(body);
    }
    let s = f.instance(&taken);
    assert_eq!(s.project.as_str(), ACCOUNT, "the session stays");
    assert_eq!(s.state, InstanceState::Running);
}

#[test]
fn a_pool_is_sized_from_a_busy_minute_of_the_last_hour_times_the_boot() {
    let now = 1_800_000_000_000;
    let minute = now / 60_000;
    let minutes = |counts: &[(i64, u32)]| vmcloud_scheduler::gaming::pools::WarmFigures {
        minutes: counts
            .iter()
            .map(|(ago, n)| LaunchMinute {
                minute: minute - ago,
                warm: *n,
                cold: 0,
            })
            .collect(),
        boot_ms: Some(90_000),
    };
    // Nothing launched: the minimum.
    assert_eq!(target_size(&pool(3, 50), None, now), 3);
    // 20 a minute for most of the hour, booting in 90 s: 30 warm.
    let busy: Vec<(i64, u32)> = (0..60).map(|m| (m, 20)).collect();
    assert_eq!(target_size(&pool(3, 50), Some(&minutes(&busy)), now), 30);
    // Three spikes of 100 are the top 5 %: the percentile does not follow them.
    let mut spiky = busy.clone();
    for m in [5, 15, 25] {
        spiky[m].1 = 100;
    }
    assert_eq!(target_size(&pool(3, 50), Some(&minutes(&spiky)), now), 30);
    // Older than an hour: forgotten.
    let old: Vec<(i64, u32)> = (60..120).map(|m| (m, 20)).collect();
    assert_eq!(target_size(&pool(3, 50), Some(&minutes(&old)), now), 3);
    // Never more than the operator's maximum.
    assert_eq!(target_size(&pool(3, 10), Some(&minutes(&busy)), now), 10);
}

#[test]
fn launches_are_counted_per_minute_for_the_pools_sizing() {
    let mut f = Fleet::new();
    f.host("h1", "r1", 4);
    for n in 0..3 {
        let p = format!("prj-g{n}");
        other_project(&mut f, &p);
        launch(&mut f, &p, None).expect("a cold launch");
    }
    let figures = &f.state.gaming.warm[&class().key()];
    let counted: u32 = figures.minutes.iter().map(|m| m.cold).sum();
    assert_eq!(counted, 3);
}

/// A launch that finds no booted warm VM waits, expecting to start when the warm VM booting
/// for its pool is ready (not stopping it for a boot of its own); once booted, that VM is
/// handed to it — before a later launch — and its first id still answers.
#[test]
fn a_queued_launch_takes_the_next_booted_warm_vm_before_any_later_launch() {
    use vmcloud_scheduler::sessions::queue::standings;
    let mut f = Fleet::new();
    let catalog = catalog(1, 4);
    f.host("h1", "r1", 2);
    warm_up(&mut f, &catalog);
    let first = f.state.ready_warm(&class()).next().cloned().unwrap();
    launch(&mut f, ACCOUNT, Some(&first)).unwrap();
    // The pool refills on the free GPU: booting.
    for body in plan(&f.state, &catalog, f.at) {
        f.apply(body);
    }
    f.place();
    let refill = f
        .state
        .instances
        .values()
        .find(|i| i.is_warm() && i.state == InstanceState::Scheduled)
        .map(|i| {
            (
                i.id.clone(),
                i.node.clone().unwrap(),
                i.placed_at_ms.unwrap(),
            )
        })
        .expect("a warm VM booting");
    other_project(&mut f, "prj-b");
    other_project(&mut f, "prj-c");
    let b = launch(&mut f, "prj-b", None).unwrap();
    f.place();
    let c = launch(&mut f, "prj-c", None).unwrap();
    f.place();
    let waiting = standings(&f.state);
    // The pool's measured boot is 40 s: B expects to start then.
    assert_eq!(waiting[&b].position, 1);
    assert_eq!(
        waiting[&b].eta_ms,
        Some(refill.2 + 40_000),
        "{:?}",
        waiting[&b]
    );
    assert_eq!(waiting[&c].position, 2);
    assert!(
        f.instance(&refill.0).reclaimed_at_ms.is_none(),
        "the booting warm VM is not stopped for a launch of its own class"
    );
    // Booted: B takes it, C still waits.
    f.at += 40_000;
    f.observe(&refill.1, &refill.0, pb::ObservedState::Running);
    assert!(!f.state.instances.contains_key(&b), "B left the queue");
    let now = f.state.session_now(&b).expect("B's id still answers");
    assert_eq!(now.id, refill.0);
    assert_eq!(now.project.as_str(), "prj-b");
    assert_eq!(now.state, InstanceState::Running);
    assert_eq!(f.instance(&c).state, InstanceState::Pending);
    assert_eq!(standings(&f.state)[&c].position, 1);
}
