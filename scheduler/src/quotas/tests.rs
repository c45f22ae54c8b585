//! Invariant 15 for quotas: no sequence of creates and deletes, in any order, takes a project
//! past a limit; the usage index always equals a count of the instances.

use rand::{Rng, SeedableRng};
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{InstanceId, OrgId, ProjectId, UserId};

use crate::quotas::types::Used;
use crate::state::{ClusterState, Rejected};

fn cmd(at: i64, body: Body) -> pb::Command {
    pb::Command {
        at_unix_ms: at,
        actor: None,
        request: None,
        body: Some(body),
    }
}

fn customer(s: &mut ClusterState, kind: &str) -> ProjectId {
    let project = ProjectId::generate();
    s.apply(
        s.applied_index + 1,
        cmd(
            1,
            Body::SignUp(pb::SignUp {
                user_id: UserId::generate().to_string(),
                email: format!("{}@example.org", rand::random::<u32>()),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
                organisation: Some(pb::Organisation {
                    org_id: OrgId::generate().to_string(),
                    name: "Quota Test".into(),
                    kind: kind.into(),
                    billing_country: "FR".into(),
                    vat_id: String::new(),
                    ..Default::default()
                }),
                project_id: project.to_string(),
                verification_sha256: vec![0; 32],
                verification_expires_at_unix_ms: i64::MAX,
                partner_id: String::new(),
            }),
        ),
    )
    .unwrap();
    // Past its trial (payment methods come with billing): quotas are what bind.
    let org = s.projects[&project].org.clone();
    s.organisations.get_mut(&org).unwrap().trial = false;
    project
}

fn counted(s: &ClusterState, project: &ProjectId, region: &str) -> Used {
    let mut used = Used::default();
    for i in s.instances.values() {
        if i.project == *project && i.region == region {
            used.add(i);
        }
    }
    used
}

#[test]
fn no_sequence_of_creates_passes_a_quota() {
    let seed: u64 = std::env::var("QUOTA_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed {seed} (QUOTA_SEED={seed} replays it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut s = ClusterState::default();
    let projects = [customer(&mut s, "company"), customer(&mut s, "person")];
    // Operators lower some limits so that every dimension binds somewhere.
    s.apply(
        s.applied_index + 1,
        cmd(
            2,
            Body::SetQuota(pb::SetQuota {
                project_id: projects[0].to_string(),
                region: "par".into(),
                limits: Some(pb::QuotaLimits {
                    vcpus: Some(24),
                    gpus_by_model: [("H100".to_owned(), 3)].into(),
                    ..Default::default()
                }),
            }),
        ),
    )
    .unwrap();
    let regions = ["par", "fra"];
    let models = ["", "", "H100", "L40S"];
    let mut live: Vec<InstanceId> = Vec::new();
    let (mut made, mut refused) = (0, 0);
    for step in 0..3_000 {
        let at = 10 + step;
        if !live.is_empty() && rng.random_bool(0.3) {
            let id = live.swap_remove(rng.random_range(0..live.len()));
            let project = s.instances[&id].project.to_string();
            s.apply(
                s.applied_index + 1,
                cmd(
                    at,
                    Body::DeleteInstance(pb::DeleteInstance {
                        instance_id: id.to_string(),
                        project_id: project,
                    }),
                ),
            )
            .unwrap();
        } else {
            let project = &projects[rng.random_range(0..projects.len())];
            let model = models[rng.random_range(0..models.len())];
            let id = InstanceId::generate();
            let r = s.apply(
                s.applied_index + 1,
                cmd(
                    at,
                    Body::CreateInstance(pb::CreateInstance {
                        instance_id: id.to_string(),
                        project_id: project.to_string(),
                        name: "vm".into(),
                        flavor: "f".into(),
                        image: "debian-12".into(),
                        region: regions[rng.random_range(0..regions.len())].into(),
                        vcpus: rng.random_range(1..=16),
                        memory_mib: rng.random_range(1..=64) * 1024,
                        disk_gib: 10,
                        gpu_model: model.into(),
                        gpu_count: if model.is_empty() {
                            0
                        } else {
                            rng.random_range(1..=2)
                        },
                        ..Default::default()
                    }),
                ),
            );
            match r {
                Ok(_) => {
                    made += 1;
                    live.push(id);
                }
                Err(Rejected::QuotaExceeded(why)) => {
                    refused += 1;
                    assert!(why.contains("vmcloud quota request"), "{why}");
                }
                Err(e) => panic!("seed {seed}: unexpected refusal {e}"),
            }
        }
        for project in &projects {
            for region in regions {
                let limits = s.quota_limits(project, region);
                let used = s.quota_used(project, region);
                let mut indexed = used.clone();
                indexed.reservations = 0;
                assert_eq!(
                    indexed,
                    counted(&s, project, region),
                    "seed {seed}: the index drifted"
                );
                let over = |u: u64, l: Option<u64>| l.is_some_and(|l| u > l);
                assert!(
                    !over(used.instances.into(), limits.instances.map(u64::from))
                        && !over(used.vcpus.into(), limits.vcpus.map(u64::from))
                        && !over(used.memory_mib, limits.memory_mib)
                        && !over(used.gpus.into(), limits.gpus.map(u64::from))
                        && limits.gpus_by_model.iter().all(|(m, l)| {
                            used.gpus_by_model.get(m).copied().unwrap_or(0) <= *l
                        }),
                    "seed {seed}, step {step}: {project} in {region} uses {used:?} over {limits:?}"
                );
            }
        }
    }
    eprintln!("{made} created, {refused} refused by a quota");
    assert!(
        made > 100 && refused > 100,
        "both paths ran: {made} made, {refused} refused"
    );
}
