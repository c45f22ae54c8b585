//! First-start set-up of a development cluster: the dev project (an operator of its fleet)
//! and its API key.

use vmcloud_proto::ProjectId;
use vmcloud_proto::pb::{self, command::Body};

use crate::raft_handle::Cluster;
use crate::tenancy::api_key::ApiKeyToken;

/// The project `vmcloud dev` creates.
pub const DEV_PROJECT: &str = "acct-dev";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("could not commit the dev project")]
    Propose(#[from] vmcloud_consensus::ProposeError),
    #[error("the dev project was refused")]
    Rejected(#[from] crate::state::Rejected),
}

/// Makes sure the dev project exists and `existing` is one of its keys; if `existing` is
/// missing or no longer valid, creates a new key and returns it.
pub async fn ensure_dev_project(
    cluster: &Cluster,
    existing: Option<ApiKeyToken>,
) -> Result<ApiKeyToken, BootstrapError> {
    let project = ProjectId::parse(DEV_PROJECT).expect("a valid project id");
    if let Some(token) = existing
        && cluster
            .state()
            .authenticate(&token.key_id, &token.secret_sha256())
            == Some(&project)
    {
        return Ok(token);
    }
    if !cluster.state().projects.contains_key(&project) {
        cluster
            .propose(Body::CreateProject(pb::CreateProject {
                project_id: project.to_string(),
                name: "Development".into(),
                operator: true,
                ..Default::default()
            }))
            .await??;
    }
    let token = ApiKeyToken::generate();
    cluster
        .propose(Body::AddApiKey(pb::AddApiKey {
            project_id: project.to_string(),
            key_id: token.key_id.clone(),
            secret_sha256: token.secret_sha256(),
            name: "dev".into(),
            ..Default::default()
        }))
        .await??;
    Ok(token)
}

/// Makes sure `token` is a key of the dev project, creating the project and the key when
/// missing. Idempotent, so every replica of a cluster may call it at start.
pub async fn ensure_api_key(cluster: &Cluster, token: &ApiKeyToken) -> Result<(), BootstrapError> {
    let project = ProjectId::parse(DEV_PROJECT).expect("a valid project id");
    if cluster
        .state()
        .authenticate(&token.key_id, &token.secret_sha256())
        == Some(&project)
    {
        return Ok(());
    }
    let exists_is_fine =
        |r: Result<crate::state::ApplyResult, vmcloud_consensus::ProposeError>| match r {
            Ok(Ok(_)) | Ok(Err(crate::state::Rejected::Exists(_))) => Ok(()),
            Ok(Err(e)) => Err(BootstrapError::Rejected(e)),
            Err(e) => Err(BootstrapError::Propose(e)),
        };
    if !cluster.state().projects.contains_key(&project) {
        exists_is_fine(
            cluster
                .propose(Body::CreateProject(pb::CreateProject {
                    project_id: project.to_string(),
                    name: "Development".into(),
                    operator: true,
                    ..Default::default()
                }))
                .await,
        )?;
    }
    exists_is_fine(
        cluster
            .propose(Body::AddApiKey(pb::AddApiKey {
                project_id: project.to_string(),
                key_id: token.key_id.clone(),
                secret_sha256: token.secret_sha256(),
                name: "dev".into(),
                ..Default::default()
            }))
            .await,
    )
}

/// The demo customer `vmcloud dev` makes, so the console has someone to log in as at once.
pub const DEMO_EMAIL: &str = "demo@vmcloud.example";

/// Makes sure the demo customer exists (a verified user owning the "Demo" organisation with
/// its `default` project) with `password`. Does nothing when the email is taken.
pub async fn ensure_demo_customer(
    cluster: &Cluster,
    catalog: &crate::catalog::Catalog,
    password: &str,
    demo_instance_in: Option<&str>,
) -> Result<(), BootstrapError> {
    if cluster.state().users_by_email.contains_key(DEMO_EMAIL) {
        return Ok(());
    }
    let user = vmcloud_proto::UserId::generate();
    let project = ProjectId::generate();
    let (token, token_sha256) = crate::tenancy::api_key::mail_token();
    let pw = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || crate::tenancy::password::hash(&pw))
        .await
        .expect("hashing does not panic");
    cluster
        .propose(Body::SignUp(pb::SignUp {
            user_id: user.to_string(),
            email: DEMO_EMAIL.to_owned(),
            password_hash: hash,
            organisation: Some(pb::Organisation {
                org_id: vmcloud_proto::OrgId::generate().to_string(),
                name: "Demo".to_owned(),
                kind: "company".to_owned(),
                billing_country: "FR".to_owned(),
                vat_id: String::new(),
                billing_address: "12 rue de la Paix\n75002 Paris\nFrance".to_owned(),
            }),
            project_id: project.to_string(),
            verification_sha256: token_sha256,
            verification_expires_at_unix_ms: crate::clock::now_ms() + 3_600_000,
            partner_id: String::new(),
        }))
        .await??;
    cluster
        .propose(Body::VerifyEmail(pb::VerifyEmail {
            user_id: user.to_string(),
            token_sha256: crate::tenancy::api_key::mail_token_sha256(&token),
        }))
        .await??;
    demo_network(cluster, catalog, &project, demo_instance_in).await
}

/// The demo gaming household `vmcloud dev` makes: its owner logs in with this email.
pub const DEMO_GAMER_EMAIL: &str = "gamer@vmcloud.example";

/// The demo household's parental PIN (a dev fleet's, printed at start).
pub const DEMO_PIN: &str = "1234";

/// Makes sure the demo household exists: a verified owner (`gamer@vmcloud.example`, with
/// `password`) of "The Demo Family" with two profiles — Alex (the owner) and Sam (a kid of
/// nine: PEGI 7, two hours a day, 8:00 to 21:00) — the parental PIN [`DEMO_PIN`], and titles
/// in its library (two bought, one on a 14-day trial). Does nothing when the email is taken.
pub async fn ensure_demo_household(
    cluster: &Cluster,
    password: &str,
) -> Result<(), BootstrapError> {
    if cluster
        .state()
        .users_by_email
        .contains_key(DEMO_GAMER_EMAIL)
    {
        return Ok(());
    }
    let user = vmcloud_proto::UserId::generate();
    let org = vmcloud_proto::OrgId::generate();
    let (token, token_sha256) = crate::tenancy::api_key::mail_token();
    let (pw, pin) = (password.to_owned(), DEMO_PIN.to_owned());
    let (hash, pin_hash) = tokio::task::spawn_blocking(move || {
        (
            crate::tenancy::password::hash(&pw),
            crate::tenancy::password::hash(&pin),
        )
    })
    .await
    .expect("hashing does not panic");
    let now = crate::clock::now_ms();
    let year = crate::billing::types::date_of(now).year();
    let mut commands = vec![
        Body::SignUp(pb::SignUp {
            user_id: user.to_string(),
            email: DEMO_GAMER_EMAIL.to_owned(),
            password_hash: hash,
            organisation: Some(pb::Organisation {
                org_id: org.to_string(),
                name: "The Demo Family".to_owned(),
                kind: "household".to_owned(),
                billing_country: "FR".to_owned(),
                vat_id: String::new(),
                billing_address: String::new(),
            }),
            project_id: ProjectId::generate().to_string(),
            verification_sha256: token_sha256,
            verification_expires_at_unix_ms: now + 3_600_000,
            partner_id: String::new(),
        }),
        Body::VerifyEmail(pb::VerifyEmail {
            user_id: user.to_string(),
            token_sha256: crate::tenancy::api_key::mail_token_sha256(&token),
        }),
        Body::CreateProfile(pb::CreateProfile {
            org_id: org.to_string(),
            profile_id: "pf-demo-alex".into(),
            name: "Alex".into(),
            user_id: user.to_string(),
            ..Default::default()
        }),
        Body::CreateProfile(pb::CreateProfile {
            org_id: org.to_string(),
            profile_id: "pf-demo-sam".into(),
            name: "Sam".into(),
            kid: true,
            birth_year: year - 9,
            daily_limit_min: 120,
            allowed_from_h: 8,
            allowed_to_h: 21,
            ..Default::default()
        }),
        Body::SetParentalPin(pb::SetParentalPin {
            org_id: org.to_string(),
            pin_hash,
            utc_offset_min: 60,
        }),
    ];
    for (title, kind, ends) in [
        ("kart-rally", "purchase", 0),
        ("night-city-noir", "purchase", 0),
        ("starfield-tactics", "trial", now + 14 * 86_400_000),
    ] {
        commands.push(Body::GrantEntitlement(pb::GrantEntitlement {
            org_id: org.to_string(),
            entitlement_id: format!("ent-demo-{title}"),
            title: title.into(),
            profile_id: String::new(),
            kind: kind.into(),
            ends_at_unix_ms: ends,
        }));
    }
    for command in commands {
        cluster.propose(command).await??;
    }
    Ok(())
}

/// What the demo project shows of networks: a second private network, a firewall for a web
/// server, a floating IP; and with `instance_in` (a region), an instance with a public address
/// there behind the firewall, with the floating IP on it.
async fn demo_network(
    cluster: &Cluster,
    catalog: &crate::catalog::Catalog,
    project: &ProjectId,
    instance_in: Option<&str>,
) -> Result<(), BootstrapError> {
    let region = instance_in.unwrap_or("par");
    let (Some(flavor), Some(r)) = (catalog.flavors.get("vps-s"), catalog.regions.get(region))
    else {
        return Ok(());
    };
    let rule = |ports: u32| pb::FirewallRule {
        direction: "inbound".into(),
        protocol: "tcp".into(),
        port_from: ports,
        port_to: ports,
        ..Default::default()
    };
    let instance = vmcloud_proto::InstanceId::generate();
    let firewall = format!("fw-{:016x}", rand::random::<u64>());
    let fip = format!("fip-{:016x}", rand::random::<u64>());
    let mut bodies = vec![
        Body::CreateNetwork(pb::CreateNetwork {
            network_id: format!("net-{:016x}", rand::random::<u64>()),
            project_id: project.to_string(),
            name: "backend".into(),
            subnet: "10.20.0.0/24".into(),
            region: region.into(),
            vnis: Some(catalog.networks.vnis()),
        }),
        Body::CreateFirewall(pb::CreateFirewall {
            firewall_id: firewall.clone(),
            project_id: project.to_string(),
            name: "web".into(),
            rules: vec![rule(22), rule(80), rule(443)],
        }),
    ];
    let with_instance = [
        Body::CreateInstance(pb::CreateInstance {
            vnis: Some(catalog.networks.vnis()),
            public_ipv4: !r.public_ipv4.is_empty(),
            public_pool: r.public_ipv4.clone(),
            ..flavor
                .spec("demo-web".into(), "vps-s", "debian-12", region)
                .create_command(&instance, project)
        }),
        Body::AttachFirewall(pb::AttachFirewall {
            firewall_id: firewall,
            project_id: project.to_string(),
            instance_id: instance.to_string(),
            detach: false,
        }),
    ];
    if instance_in.is_some() {
        bodies.extend(with_instance);
    }
    let public = !r.public_ipv4.is_empty();
    if public {
        bodies.push(Body::CreateFloatingIp(pb::CreateFloatingIp {
            floating_ip_id: fip.clone(),
            project_id: project.to_string(),
            region: region.into(),
            public_pool: r.public_ipv4.clone(),
            description: "demo".into(),
        }));
    }
    if public && instance_in.is_some() {
        bodies.push(Body::AssignFloatingIp(pb::AssignFloatingIp {
            floating_ip_id: fip,
            project_id: project.to_string(),
            instance_id: instance.to_string(),
        }));
    }
    for body in bodies {
        cluster.propose(body).await??;
    }
    Ok(())
}

/// The demo NOC operator `vmcloud dev` makes: a person of VMCloud's own organisation (the
/// operator project's) with the `operator` role.
pub const DEMO_OPERATOR_EMAIL: &str = "noc@vmcloud.example";

/// Makes sure the demo operator exists (verified, `password`, operator of the organisation of
/// [`DEV_PROJECT`]; its own sign-up organisation beside). The NOC's pages ask for two-step
/// verification: they turn it on in their account at first. Does nothing when the email is
/// taken or there is no operator project.
pub async fn ensure_demo_operator(cluster: &Cluster, password: &str) -> Result<(), BootstrapError> {
    let provider = {
        let state = cluster.state();
        if state.users_by_email.contains_key(DEMO_OPERATOR_EMAIL) {
            return Ok(());
        }
        let Some(p) = ProjectId::parse(DEV_PROJECT)
            .ok()
            .and_then(|p| state.projects.get(&p).map(|p| p.org.clone()))
        else {
            return Ok(());
        };
        p
    };
    let user = vmcloud_proto::UserId::generate();
    let (token, token_sha256) = crate::tenancy::api_key::mail_token();
    let pw = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || crate::tenancy::password::hash(&pw))
        .await
        .expect("hashing does not panic");
    for body in [
        Body::SignUp(pb::SignUp {
            user_id: user.to_string(),
            email: DEMO_OPERATOR_EMAIL.to_owned(),
            password_hash: hash,
            organisation: Some(pb::Organisation {
                org_id: vmcloud_proto::OrgId::generate().to_string(),
                name: "NOC".to_owned(),
                kind: "company".to_owned(),
                billing_country: "FR".to_owned(),
                vat_id: String::new(),
                billing_address: String::new(),
            }),
            project_id: ProjectId::generate().to_string(),
            verification_sha256: token_sha256,
            verification_expires_at_unix_ms: crate::clock::now_ms() + 3_600_000,
            partner_id: String::new(),
        }),
        Body::VerifyEmail(pb::VerifyEmail {
            user_id: user.to_string(),
            token_sha256: crate::tenancy::api_key::mail_token_sha256(&token),
        }),
        Body::SetMember(pb::SetMember {
            org_id: provider.to_string(),
            user_id: user.to_string(),
            project_id: String::new(),
            role: "operator".into(),
        }),
    ] {
        cluster.propose(body).await??;
    }
    Ok(())
}

/// The demo partner `vmcloud dev` makes: as the catalog's `mrs-edge` POP names it.
pub const DEMO_PARTNER: &str = "edgenet";
pub const DEMO_PARTNER_NAME: &str = "EdgeNet Play";
/// Its portal's host name: `*.localhost` resolves to this machine without any set-up.
pub const DEMO_PARTNER_DOMAIN: &str = "edgenet.localhost";
/// Its first admin.
pub const DEMO_PARTNER_EMAIL: &str = "admin@edgenet.example";
/// Its school's licensed site and the school network's range.
pub const DEMO_PARTNER_SITE: &str = "lycee-thiers";
pub const DEMO_PARTNER_SITE_RANGE: &str = "10.13.0.0/16";

/// EdgeNet's logo: a small SVG, as partners give theirs.
const DEMO_PARTNER_LOGO: &str = "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'><circle cx='16' cy='16' r='15' fill='#f29e4c'/><path d='M9 10h14v3H13v2h8v3h-8v2h10v3H9z' fill='#fff'/></svg>";

/// Makes sure the demo partner exists: a verified admin ([`DEMO_PARTNER_EMAIL`], with
/// `password`), the partner EdgeNet with its brand on [`DEMO_PARTNER_DOMAIN`], two customers
/// it made (a school and a household; their owners not invited yet), its licence terms and
/// the school's licensed site. Does nothing when the partner exists.
pub async fn ensure_demo_partner(
    cluster: &Cluster,
    password: &str,
    pops: Vec<String>,
) -> Result<(), BootstrapError> {
    let known = cluster
        .state()
        .partners
        .get(DEMO_PARTNER)
        .map(|p| p.pops.clone());
    if let Some(known) = known {
        // A fleet from before partners had POPs in the state: they come from the catalog.
        if known != pops {
            cluster
                .propose(Body::UpdatePartner(pb::UpdatePartner {
                    partner_id: DEMO_PARTNER.to_owned(),
                    set_pops: true,
                    pops,
                    ..Default::default()
                }))
                .await??;
        }
        return Ok(());
    }
    let user = vmcloud_proto::UserId::generate();
    let (token, token_sha256) = crate::tenancy::api_key::mail_token();
    let pw = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || crate::tenancy::password::hash(&pw))
        .await
        .expect("hashing does not panic");
    let now = crate::clock::now_ms();
    let org = |name: &str, kind: &str| pb::Organisation {
        org_id: vmcloud_proto::OrgId::generate().to_string(),
        name: name.to_owned(),
        kind: kind.to_owned(),
        billing_country: "FR".to_owned(),
        vat_id: String::new(),
        billing_address: String::new(),
    };
    use base64::Engine as _;
    let logo = format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(DEMO_PARTNER_LOGO)
    );
    let mut bodies = vec![
        Body::SignUp(pb::SignUp {
            user_id: user.to_string(),
            email: DEMO_PARTNER_EMAIL.to_owned(),
            password_hash: hash,
            organisation: Some(org("Camille Martin", "person")),
            project_id: ProjectId::generate().to_string(),
            verification_sha256: token_sha256,
            verification_expires_at_unix_ms: now + 3_600_000,
            partner_id: String::new(),
        }),
        Body::VerifyEmail(pb::VerifyEmail {
            user_id: user.to_string(),
            token_sha256: crate::tenancy::api_key::mail_token_sha256(&token),
        }),
        Body::CreatePartner(pb::CreatePartner {
            partner_id: DEMO_PARTNER.to_owned(),
            name: "EdgeNet SAS".to_owned(),
            staff_org_id: vmcloud_proto::OrgId::generate().to_string(),
            staff_project_id: ProjectId::generate().to_string(),
            owner_user_id: user.to_string(),
            billing_country: "FR".to_owned(),
            brand: Some(pb::PartnerBrand {
                display_name: DEMO_PARTNER_NAME.to_owned(),
                logo,
                primary_colour: "#0b6e4f".to_owned(),
                accent_colour: "#d9731a".to_owned(),
                support_email: "support@edgenet.example".to_owned(),
                support_url: "https://support.edgenet.example".to_owned(),
                legal: "EdgeNet SAS, 13002 Marseille — a demo partner of VMCloud".to_owned(),
            }),
            domains: vec![DEMO_PARTNER_DOMAIN.to_owned()],
            pops,
        }),
    ];
    let school = org("Lycée Thiers", "company");
    let school_id = school.org_id.clone();
    for o in [school, org("Famille Durand", "household")] {
        bodies.push(Body::CreateOrganisation(pb::CreateOrganisation {
            organisation: Some(o),
            owner_user_id: String::new(),
            project_id: ProjectId::generate().to_string(),
            provider: false,
            partner_id: DEMO_PARTNER.to_owned(),
        }));
    }
    // Its licence, and the school's site: 24 seats on the school's network.
    bodies.push(Body::SetPartnerLicence(pb::SetPartnerLicence {
        partner_id: DEMO_PARTNER.to_owned(),
        currency: "EUR".to_owned(),
        base_monthly: "250.00".to_owned(),
        per_active_user: "1.50".to_owned(),
        partner_share_percent: "30".to_owned(),
        allowance: Some(pb::PartnerAllowance {
            vcpus: Some(512),
            gpus: Some(32),
            entitlements: Some(1000),
            ..Default::default()
        }),
    }));
    bodies.push(Body::PutPartnerSite(pb::PutPartnerSite {
        partner_id: DEMO_PARTNER.to_owned(),
        site_id: DEMO_PARTNER_SITE.to_owned(),
        name: "Lycée Thiers — CDI".to_owned(),
        ranges: vec![DEMO_PARTNER_SITE_RANGE.to_owned()],
        seats: 24,
        org_id: school_id,
        device_codes: Vec::new(),
    }));
    for body in bodies {
        cluster.propose(body).await??;
    }
    Ok(())
}
