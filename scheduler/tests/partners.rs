//! Partners in `apply`: a partner's staff reach its customers and nothing else; VMCloud's
//! staff see a partner's customers only with support access; domains are one partner's; a
//! partner grants its own customers' entitlements. The principal each command carries is
//! checked in `apply` (invariant 13), as the API's handlers check it before proposing.

use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{OrgId, ProjectId, UserId};
use vmcloud_scheduler::state::{ApplyResult, Rejected};
use vmcloud_scheduler::tenancy::authz::{Action, Principal, Resource};

use crate::fleet::Fleet;
use crate::gaming::{HOUR, sign_up};

pub(crate) const EDGE_ADMIN: &str = "usr-00000000000000e1";
pub(crate) const FIBRA_ADMIN: &str = "usr-00000000000000f1";
pub(crate) const STRANGER: &str = "usr-00000000000000a1";
pub(crate) const EDGE_CUSTOMER: &str = "org-edge-school";

fn user(id: &str) -> Principal {
    Principal::User {
        id: UserId::parse(id).unwrap(),
        mfa: false,
    }
}

pub(crate) fn as_user(f: &mut Fleet, who: &str, body: Body) -> ApplyResult {
    f.index += 1;
    f.state.apply(
        f.index,
        pb::Command {
            actor: Some(vmcloud_scheduler::tenancy::commands::actor_of(
                &user(who),
                "192.0.2.1",
            )),
            request: None,
            at_unix_ms: f.at,
            body: Some(body),
        },
    )
}

fn partner(id: &str, owner: &str, domain: &str) -> Body {
    Body::CreatePartner(pb::CreatePartner {
        partner_id: id.into(),
        name: format!("{id} SAS"),
        staff_org_id: format!("org-staff-{id}"),
        staff_project_id: format!("prj-staff-{id}"),
        owner_user_id: owner.into(),
        billing_country: "FR".into(),
        brand: Some(pb::PartnerBrand {
            display_name: format!("{id} Play"),
            primary_colour: "#0b6e4f".into(),
            ..Default::default()
        }),
        domains: vec![domain.into()],
        pops: vec![format!("{id}-pop")],
    })
}

pub(crate) fn customer(id: &str, partner: &str) -> Body {
    Body::CreateOrganisation(pb::CreateOrganisation {
        organisation: Some(pb::Organisation {
            org_id: id.into(),
            name: "Lycée Thiers".into(),
            kind: "company".into(),
            billing_country: "FR".into(),
            vat_id: String::new(),
            billing_address: String::new(),
        }),
        owner_user_id: String::new(),
        project_id: format!("prj-{id}"),
        provider: false,
        partner_id: partner.into(),
    })
}

pub(crate) fn two_partners() -> Fleet {
    let mut f = Fleet::new();
    f.at = 1_793_610_000_000;
    sign_up(
        &mut f,
        EDGE_ADMIN,
        "admin@edgenet.example",
        "org-camille",
        "Camille",
        "prj-camille",
    );
    sign_up(
        &mut f,
        FIBRA_ADMIN,
        "lea@fibra.example",
        "org-lea",
        "Léa",
        "prj-lea",
    );
    sign_up(
        &mut f,
        STRANGER,
        "ann@example.org",
        "org-ann",
        "Ann",
        "prj-ann",
    );
    f.apply(partner("edgenet", EDGE_ADMIN, "edgenet.localhost"));
    f.apply(partner("fibra", FIBRA_ADMIN, "fibra.localhost"));
    as_user(&mut f, EDGE_ADMIN, customer(EDGE_CUSTOMER, "edgenet")).expect("its admin makes it");
    f
}

#[test]
fn a_partners_staff_reach_its_customers_and_nothing_else() {
    let mut f = two_partners();
    let org = OrgId::parse(EDGE_CUSTOMER).unwrap();
    let project = ProjectId::parse(&format!("prj-{EDGE_CUSTOMER}")).unwrap();
    let s = &f.state;
    assert_eq!(s.organisations[&org].partner.as_deref(), Some("edgenet"));
    assert!(
        s.organisations[&org].members.is_empty(),
        "its owner is invited"
    );
    let ok = |who: &str, action, resource| s.authorize(&user(who), action, resource).is_ok();
    assert!(ok(EDGE_ADMIN, Action::ReadOrg, Resource::Org(&org)));
    assert!(ok(EDGE_ADMIN, Action::ManageMembers, Resource::Org(&org)));
    assert!(ok(
        EDGE_ADMIN,
        Action::ReadProject,
        Resource::Project(&project)
    ));
    assert!(ok(
        EDGE_ADMIN,
        Action::ManagePartner,
        Resource::Partner("edgenet")
    ));
    // Not the customer's own work.
    assert!(!ok(EDGE_ADMIN, Action::Deploy, Resource::Project(&project)));
    // The other partner and a stranger: hidden.
    for who in [FIBRA_ADMIN, STRANGER] {
        assert!(matches!(
            s.authorize(&user(who), Action::ReadOrg, Resource::Org(&org)),
            Err(vmcloud_scheduler::tenancy::authz::Denied::Hidden(_))
        ));
    }
    assert!(!ok(
        FIBRA_ADMIN,
        Action::ReadPartner,
        Resource::Partner("edgenet")
    ));
    assert!(!ok(
        STRANGER,
        Action::ReadPartner,
        Resource::Partner("edgenet")
    ));
    // Fibra's admin cannot make a customer for EdgeNet, nor change its brand.
    let refused = as_user(&mut f, FIBRA_ADMIN, customer("org-intruder", "edgenet"));
    assert!(matches!(refused, Err(Rejected::NotFound(_))), "{refused:?}");
    let refused = as_user(
        &mut f,
        FIBRA_ADMIN,
        Body::UpdatePartner(pb::UpdatePartner {
            partner_id: "edgenet".into(),
            brand: Some(pb::PartnerBrand::default()),
            ..Default::default()
        }),
    );
    assert!(matches!(refused, Err(Rejected::NotFound(_))), "{refused:?}");
}

#[test]
fn vmcloud_sees_a_partners_customer_only_with_support_access() {
    let mut f = two_partners();
    // An operator: a member of the provider's organisation.
    f.apply(Body::CreateProject(pb::CreateProject {
        project_id: "acct-dev".into(),
        name: "acct-dev".into(),
        operator: true,
        org_id: String::new(),
    }));
    f.apply(Body::SetMember(pb::SetMember {
        org_id: "org-acct-dev".into(),
        user_id: STRANGER.into(),
        project_id: String::new(),
        role: "operator".into(),
    }));
    let op = Principal::User {
        id: UserId::parse(STRANGER).unwrap(),
        mfa: true,
    };
    let org = OrgId::parse(EDGE_CUSTOMER).unwrap();
    let hidden = f.state.authorize(&op, Action::ReadOrg, Resource::Org(&org));
    assert!(hidden.is_err(), "my customer's customer is not my customer");
    assert!(
        f.state
            .authorize(&op, Action::ReadPartner, Resource::Partner("edgenet"))
            .is_ok()
    );
    // The customer's partner opens support access for two hours.
    let until = f.at + 2 * HOUR;
    as_user(
        &mut f,
        EDGE_ADMIN,
        Body::GrantSupportAccess(pb::GrantSupportAccess {
            org_id: EDGE_CUSTOMER.into(),
            until_unix_ms: until,
        }),
    )
    .unwrap();
    assert!(
        f.state
            .authorize(&op, Action::ReadOrg, Resource::Org(&org))
            .is_ok()
    );
    // …which ends by itself.
    f.at += 3 * HOUR;
    // Any command moves `apply`'s clock.
    let _ = f.try_apply(Body::AdvanceClock(pb::AdvanceClock { by_ms: 1 }));
    assert!(
        f.state
            .authorize(&op, Action::ReadOrg, Resource::Org(&org))
            .is_err()
    );
    // VMCloud's staff cannot open it for themselves.
    let until = f.at + HOUR;
    let refused = as_user(
        &mut f,
        STRANGER,
        Body::GrantSupportAccess(pb::GrantSupportAccess {
            org_id: EDGE_CUSTOMER.into(),
            until_unix_ms: until,
        }),
    );
    assert!(refused.is_err(), "{refused:?}");
}

#[test]
fn domains_belong_to_one_partner_and_bad_brands_are_refused() {
    let mut f = two_partners();
    assert_eq!(
        f.state
            .partner_by_domain("edgenet.localhost")
            .map(|p| p.id.as_str()),
        Some("edgenet")
    );
    let taken = as_user(
        &mut f,
        FIBRA_ADMIN,
        Body::UpdatePartner(pb::UpdatePartner {
            partner_id: "fibra".into(),
            set_domains: true,
            domains: vec!["EdgeNet.localhost".into()],
            ..Default::default()
        }),
    );
    assert!(
        matches!(&taken, Err(Rejected::Conflict(m)) if m.contains("partner edgenet")),
        "{taken:?}"
    );
    for (brand, says) in [
        (
            pb::PartnerBrand {
                primary_colour: "green".into(),
                ..Default::default()
            },
            "#rrggbb",
        ),
        (
            pb::PartnerBrand {
                logo: "https://cdn.example/logo.png".into(),
                ..Default::default()
            },
            "data:image/png",
        ),
        (
            pb::PartnerBrand {
                support_url: "http://help.example".into(),
                ..Default::default()
            },
            "https://",
        ),
    ] {
        let refused = as_user(
            &mut f,
            FIBRA_ADMIN,
            Body::UpdatePartner(pb::UpdatePartner {
                partner_id: "fibra".into(),
                brand: Some(brand),
                ..Default::default()
            }),
        );
        assert!(
            matches!(&refused, Err(Rejected::Invalid(m)) if m.contains(says)),
            "{refused:?}"
        );
    }
    assert_eq!(f.state.partners["fibra"].brand.display_name, "fibra Play");
}

#[test]
fn a_partners_admins_cordon_and_drain_its_pop_hosts_only() {
    let mut f = two_partners();
    let pop = f.host_in("edgenet-pop", "pop-1", "r1", 0);
    let par = f.host("h-par", "r1", 0);
    let state = |node: &vmcloud_proto::NodeId, to: pb::NodeState| {
        Body::SetNodeState(pb::SetNodeState {
            node_id: node.to_string(),
            state: to as i32,
            reason: "fan swap".into(),
            deadline_unix_ms: 0,
            by_liveness: false,
        })
    };
    as_user(&mut f, EDGE_ADMIN, state(&pop, pb::NodeState::Cordoned)).unwrap();
    assert_eq!(
        f.state.nodes[&pop].state,
        vmcloud_scheduler::nodes::types::NodeState::Cordoned
    );
    // Not another partner's hosts, nor VMCloud's.
    let r = as_user(&mut f, FIBRA_ADMIN, state(&pop, pb::NodeState::Ready));
    assert!(r.is_err(), "{r:?}");
    let r = as_user(&mut f, EDGE_ADMIN, state(&par, pb::NodeState::Cordoned));
    assert!(matches!(r, Err(Rejected::Forbidden(_))), "{r:?}");
    // Which regions are its POPs is VMCloud's to say.
    let r = as_user(
        &mut f,
        EDGE_ADMIN,
        Body::UpdatePartner(pb::UpdatePartner {
            partner_id: "edgenet".into(),
            set_pops: true,
            pops: vec!["par".into()],
            ..Default::default()
        }),
    );
    assert!(matches!(r, Err(Rejected::Forbidden(_))), "{r:?}");
    as_user(&mut f, EDGE_ADMIN, state(&pop, pb::NodeState::Ready)).unwrap();
}

#[test]
fn a_partners_hosts_join_with_its_tokens_into_its_pops_only() {
    let mut f = two_partners();
    f.host("h-par", "r1", 0);
    let until = f.at + HOUR;
    let token = |id: &str, node: &str, partner: &str| {
        Body::CreateJoinToken(pb::CreateJoinToken {
            token_id: id.into(),
            node_id: node.into(),
            secret_sha256: vec![1; 32],
            expires_at_unix_ms: until,
            created_by: "partner".into(),
            partner_id: partner.into(),
        })
    };
    // Not a name VMCloud's host has; not for another partner; not a VMCloud token.
    let r = as_user(
        &mut f,
        EDGE_ADMIN,
        token("00000000000000a1", "h-par", "edgenet"),
    );
    assert!(
        matches!(&r, Err(Rejected::Conflict(m)) if m.contains("not one of edgenet's")),
        "{r:?}"
    );
    let r = as_user(
        &mut f,
        FIBRA_ADMIN,
        token("00000000000000a2", "pop-9", "edgenet"),
    );
    assert!(r.is_err(), "{r:?}");
    let r = as_user(&mut f, EDGE_ADMIN, token("00000000000000a3", "pop-9", ""));
    assert!(matches!(r, Err(Rejected::Forbidden(_))), "{r:?}");
    // Its token for a new host: the host joins, in its POP, as its host…
    as_user(
        &mut f,
        EDGE_ADMIN,
        token("00000000000000a4", "pop-9", "edgenet"),
    )
    .unwrap();
    f.apply(Body::UseJoinToken(pb::UseJoinToken {
        token_id: "00000000000000a4".into(),
        node_id: "pop-9".into(),
    }));
    let node = f.host_in("edgenet-pop", "pop-9", "r1", 0);
    assert_eq!(f.state.nodes[&node].partner.as_deref(), Some("edgenet"));
    // …and never reports itself in VMCloud's datacenter.
    let r = f.try_apply(Body::RegisterNode(pb::RegisterNode {
        node_id: "pop-9".into(),
        inventory: Some(pb::HostInventory {
            region: "par".into(),
            ..Default::default()
        }),
        build: None,
    }));
    assert!(
        matches!(&r, Err(Rejected::Forbidden(m)) if m.contains("only be in its POPs (edgenet-pop)")),
        "{r:?}"
    );
    assert_eq!(f.state.nodes[&node].region, "edgenet-pop");
}
