//! Partners' licences in `apply`: a site's seats are taken by launches of the partner's
//! customers from its address ranges and given back when their sessions end; ranges belong to
//! one site; monthly active users and the monthly statement come from the committed log.

use rust_decimal::Decimal;
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{InstanceId, OrgId};
use vmcloud_scheduler::billing::types::period_bounds;
use vmcloud_scheduler::partners::statement::{csv, statement};
use vmcloud_scheduler::state::Rejected;
use vmcloud_scheduler::state::rejected::LaunchRefusal;

use crate::fleet::Fleet;
use crate::gaming::{HOUR, profile_in};
use crate::partners::{
    EDGE_ADMIN, EDGE_CUSTOMER, FIBRA_ADMIN, STRANGER, as_user, customer, two_partners,
};

const HOME: &str = "org-edge-home";
const HOME_PROJECT: &str = "prj-edge-home";
const HOME_OWNER: &str = "usr-00000000000000e9";
const SCHOOL_NET: &str = "10.13.0.0/16";

/// A household that signed up on EdgeNet's portal, with three profiles and no limits.
fn edge_household(f: &mut Fleet) {
    edge_household_bare(f);
    f.unlimited(HOME_PROJECT);
}

/// [`edge_household`] with the default quotas.
fn edge_household_bare(f: &mut Fleet) {
    f.apply(Body::SignUp(pb::SignUp {
        user_id: HOME_OWNER.into(),
        email: "durand@example.fr".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        organisation: Some(pb::Organisation {
            org_id: HOME.into(),
            name: "Famille Durand".into(),
            kind: "household".into(),
            billing_country: "FR".into(),
            ..Default::default()
        }),
        project_id: HOME_PROJECT.into(),
        verification_sha256: vec![9; 32],
        verification_expires_at_unix_ms: f.at + HOUR,
        partner_id: "edgenet".into(),
    }));
    for p in ["pf-a", "pf-b", "pf-c"] {
        profile_in(f, HOME, p, p, false, 0, 0, (0, 0)).unwrap();
    }
}

fn site(partner: &str, id: &str, ranges: &[&str], seats: u32) -> Body {
    Body::PutPartnerSite(pb::PutPartnerSite {
        partner_id: partner.into(),
        site_id: id.into(),
        name: format!("Site {id}"),
        ranges: ranges.iter().map(|r| (*r).to_owned()).collect(),
        seats,
        org_id: String::new(),
        device_codes: Vec::new(),
    })
}

/// A free title launched as `profile` of the household owning `project`, from `source`.
fn launch_from(
    f: &mut Fleet,
    project: &str,
    profile: &str,
    source: &str,
) -> Result<InstanceId, Rejected> {
    launch_with(f, project, profile, source, "")
}

/// [`launch_from`] on a terminal with a device code.
fn launch_with(
    f: &mut Fleet,
    project: &str,
    profile: &str,
    source: &str,
    device: &str,
) -> Result<InstanceId, Rejected> {
    let id = InstanceId::generate();
    let r = f.try_apply(Body::CreateInstance(pb::CreateInstance {
        instance_id: id.to_string(),
        project_id: project.into(),
        name: "kart".into(),
        region: "par".into(),
        vcpus: 8,
        memory_mib: 16384,
        gpu_model: "H100".into(),
        gpu_count: 1,
        session: Some(pb::GameSession {
            tier: pb::SessionTier::Standard as i32,
            title: "kart-rally".into(),
            profile_id: profile.into(),
            title_free: true,
            monthly_hours: 100,
            rollover_hours: 15,
            session_max_s: 6 * 3600,
            source: source.into(),
            device_code: device.into(),
            ..Default::default()
        }),
        ..Default::default()
    }));
    f.at += 1;
    r.map(|_| id)
}

fn end(f: &mut Fleet, project: &str, id: &InstanceId) {
    let node = f.state.instances[id].node.clone();
    f.apply(Body::DeleteInstance(pb::DeleteInstance {
        instance_id: id.to_string(),
        project_id: project.into(),
    }));
    if let Some(node) = node {
        f.observe(&node, id, pb::ObservedState::Absent);
    }
}

#[test]
fn a_sites_seats_are_taken_by_launches_from_its_ranges_and_given_back() {
    let mut f = two_partners();
    f.host("h1", "r1", 8);
    edge_household(&mut f);
    as_user(&mut f, EDGE_ADMIN, site("edgenet", "cdi", &[SCHOOL_NET], 2)).unwrap();
    let key = "edgenet/cdi";
    let a = launch_from(&mut f, HOME_PROJECT, "pf-a", "10.13.4.5").unwrap();
    let b = launch_from(&mut f, HOME_PROJECT, "pf-b", "10.13.200.9").unwrap();
    assert_eq!(f.state.seats_used(key), 2);
    assert_eq!(
        f.state.instances[&a]
            .session
            .as_ref()
            .unwrap()
            .site
            .as_deref(),
        Some(key)
    );
    // The third launch from the school is refused whole, saying what to do.
    let before = f.state.instances.len();
    match launch_from(&mut f, HOME_PROJECT, "pf-c", "10.13.0.1") {
        Err(Rejected::LaunchRefused {
            reason: LaunchRefusal::SiteFull,
            detail,
        }) => {
            assert!(detail.contains("all 2 seats of Site cdi"), "{detail}");
            assert!(
                detail.contains("ask edgenet Play for more seats"),
                "{detail}"
            );
        }
        other => panic!("not refused for seats: {other:?}"),
    }
    assert_eq!(f.state.instances.len(), before, "nothing half-started");
    // From home it is no site's: no seat needed.
    let home = launch_from(&mut f, HOME_PROJECT, "pf-c", "198.51.100.7").unwrap();
    assert_eq!(
        f.state.instances[&home].session.as_ref().unwrap().site,
        None
    );
    end(&mut f, HOME_PROJECT, &home);
    // A session placed and running keeps its seat; ending it gives the seat back.
    f.place();
    let node = f.state.instances[&a].node.clone().unwrap();
    f.observe(&node, &a, pb::ObservedState::Running);
    assert_eq!(f.state.seats_used(key), 2);
    end(&mut f, HOME_PROJECT, &a);
    assert_eq!(f.state.seats_used(key), 1);
    launch_from(&mut f, HOME_PROJECT, "pf-c", "10.13.0.1").unwrap();
    assert_eq!(f.state.seats_used(key), 2);
    end(&mut f, HOME_PROJECT, &b);
    assert_eq!(f.state.seats_used(key), 1);
    // A VMCloud customer at the same address is not EdgeNet's: no seat of its site.
    profile_in(&mut f, "org-ann", "pf-ann", "Ann", false, 0, 0, (0, 0)).unwrap();
    as_user(&mut f, EDGE_ADMIN, site("edgenet", "cdi", &[SCHOOL_NET], 1)).unwrap();
    let ann = launch_from(&mut f, "prj-ann", "pf-ann", "10.13.0.2").unwrap();
    assert_eq!(f.state.instances[&ann].session.as_ref().unwrap().site, None);
}

#[test]
fn an_address_belongs_to_one_site_and_bad_sites_are_refused() {
    let mut f = two_partners();
    as_user(
        &mut f,
        EDGE_ADMIN,
        site("edgenet", "cdi", &[SCHOOL_NET], 30),
    )
    .unwrap();
    // Another partner's range inside it, or around it.
    for range in ["10.13.128.0/17", "10.0.0.0/8"] {
        let r = as_user(&mut f, FIBRA_ADMIN, site("fibra", "lib", &[range], 5));
        assert!(
            matches!(&r, Err(Rejected::Conflict(m)) if m.contains("another partner's site")),
            "{range}: {r:?}"
        );
    }
    // Its own other site.
    let r = as_user(
        &mut f,
        EDGE_ADMIN,
        site("edgenet", "gym", &["10.13.9.0/24"], 5),
    );
    assert!(
        matches!(&r, Err(Rejected::Conflict(m)) if m.contains("your site `cdi`")),
        "{r:?}"
    );
    // Replacing a site's own ranges is no overlap.
    as_user(
        &mut f,
        EDGE_ADMIN,
        site("edgenet", "cdi", &["10.13.0.7/16", "2001:db8:13::/48"], 40),
    )
    .unwrap();
    let cdi = &f.state.partners["edgenet"].sites["cdi"];
    assert_eq!(cdi.ranges, vec!["10.13.0.0/16", "2001:db8:13::/48"]);
    assert_eq!(cdi.seats, 40);
    for (ranges, seats, what) in [
        (vec!["10.13.0.0/33"], 5, "not an address range"),
        (vec!["banana"], 5, "not an address range"),
        (vec![], 5, "at least one address range"),
        (vec!["0.0.0.0/0"], 5, "the whole Internet"),
        (vec!["192.0.2.0/24"], 0, "1 to 100000 seats"),
    ] {
        let r = as_user(&mut f, EDGE_ADMIN, site("edgenet", "new", &ranges, seats));
        assert!(
            matches!(&r, Err(Rejected::Invalid(m)) if m.contains(what)),
            "{ranges:?} {seats}: {r:?}"
        );
    }
    assert!(!f.state.partners["edgenet"].sites.contains_key("new"));
    // Only the partner's staff manage its sites; only operators set its licence.
    let r = as_user(
        &mut f,
        FIBRA_ADMIN,
        site("edgenet", "x", &["192.0.2.0/24"], 5),
    );
    assert!(r.is_err(), "{r:?}");
    let licence = Body::SetPartnerLicence(pb::SetPartnerLicence {
        partner_id: "edgenet".into(),
        currency: "EUR".into(),
        base_monthly: "0".into(),
        per_active_user: "0".into(),
        partner_share_percent: "100".into(),
        allowance: None,
    });
    let r = as_user(&mut f, EDGE_ADMIN, licence);
    assert!(matches!(r, Err(Rejected::Forbidden(_))), "{r:?}");
    let r = as_user(&mut f, STRANGER, site("edgenet", "x", &["192.0.2.0/24"], 5));
    assert!(r.is_err(), "{r:?}");
}

#[test]
fn active_users_and_the_monthly_statement_come_from_the_log() {
    let mut f = two_partners();
    let h1 = f.host("h1", "r1", 8);
    edge_household(&mut f);
    f.unlimited(&format!("prj-{EDGE_CUSTOMER}"));
    f.apply(Body::SetPartnerLicence(pb::SetPartnerLicence {
        partner_id: "edgenet".into(),
        currency: "EUR".into(),
        base_monthly: "250.00".into(),
        per_active_user: "1.50".into(),
        partner_share_percent: "30".into(),
        allowance: None,
    }));
    let (from, to) = period_bounds("2026-11").unwrap();
    // November: two of the household's profiles play an hour each; the school runs a VPS
    // for a day; a VMCloud household plays too (not EdgeNet's).
    let vps = f.create(0, |c| {
        c.project_id = format!("prj-{EDGE_CUSTOMER}");
        c.flavor = "vps-s".into();
    });
    // Fibra keeps 90 % of its shop's VPS and pays no fee: VMCloud owes it.
    as_user(&mut f, FIBRA_ADMIN, customer("org-fibra-shop", "fibra")).unwrap();
    f.unlimited("prj-org-fibra-shop");
    f.apply(Body::SetPartnerLicence(pb::SetPartnerLicence {
        partner_id: "fibra".into(),
        currency: "EUR".into(),
        base_monthly: "0".into(),
        per_active_user: "0".into(),
        partner_share_percent: "90".into(),
        allowance: None,
    }));
    let shop_vm = f.create(0, |c| {
        c.project_id = "prj-org-fibra-shop".into();
        c.flavor = "vps-xl".into();
    });
    let mut played = Vec::new();
    for p in ["pf-a", "pf-b"] {
        played.push(launch_from(&mut f, HOME_PROJECT, p, "198.51.100.7").unwrap());
    }
    f.place();
    for id in played.iter().chain([&vps, &shop_vm]) {
        f.observe(&h1, id, pb::ObservedState::Running);
    }
    f.at += HOUR;
    for id in &played {
        end(&mut f, HOME_PROJECT, id);
    }
    f.at += 23 * HOUR;
    end(&mut f, &format!("prj-{EDGE_CUSTOMER}"), &vps);
    end(&mut f, "prj-org-fibra-shop", &shop_vm);
    let users = f.state.active_users("edgenet", from, to);
    let home = OrgId::parse(HOME).unwrap();
    assert_eq!(
        users.into_iter().collect::<Vec<_>>(),
        vec![
            (home.clone(), "pf-a".to_owned()),
            (home.clone(), "pf-b".to_owned())
        ]
    );
    // December: the month is billed; one profile plays again, still running.
    f.at = to + HOUR;
    f.apply(Body::RunBilling(pb::RunBilling {
        period: "2026-11".into(),
        prices_toml: vmcloud_billing::prices::BUILTIN_PRICES.into(),
        vat_toml: vmcloud_billing::tax::BUILTIN_TABLE.into(),
        finalize: true,
        due_days: 14,
        after_org: String::new(),
        max_orgs: 0,
    }));
    let live = launch_from(&mut f, HOME_PROJECT, "pf-c", "198.51.100.7").unwrap();
    f.place();
    f.observe(&h1, &live, pb::ObservedState::Running);
    let (dec_from, dec_to) = period_bounds("2026-12").unwrap();
    assert_eq!(f.state.active_users("edgenet", dec_from, dec_to).len(), 1);
    assert_eq!(f.state.active_users("fibra", from, to).len(), 0);

    let partner = f.state.partners["edgenet"].clone();
    let st = statement(&f.state, &partner, "2026-11", f.at).unwrap();
    assert!(st.closed);
    assert_eq!(st.active_users, 2);
    assert_eq!(st.active_user_fees, Decimal::new(300, 2));
    assert_eq!(st.licence_fees, Decimal::new(25300, 2));
    // The school's day of VPS is on its finalized invoice, and only EdgeNet's customers count.
    let school = st
        .customers
        .iter()
        .find(|c| c.org_id == EDGE_CUSTOMER)
        .unwrap();
    let invoiced: Decimal = f
        .state
        .billing
        .invoices
        .values()
        .filter(|i| i.org.as_str() == EDGE_CUSTOMER && i.period == "2026-11")
        .map(|i| i.totals.net)
        .sum();
    assert!(invoiced > Decimal::ZERO, "the VPS day was billed");
    assert_eq!(school.invoiced_net, invoiced);
    assert_eq!(st.customers.len(), 2, "{:?}", st.customers);
    assert_eq!(
        st.partner_keeps,
        (st.customers_net * Decimal::new(30, 2)).round_dp(2)
    );
    assert_eq!(st.vmcloud_keeps + st.partner_keeps, st.customers_net);
    assert_eq!(st.balance, st.partner_keeps - st.licence_fees);
    let text = csv(&st);
    assert!(
        text.starts_with("kind,org_id,name,active_users,amount,currency\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("customer,{HOME},Famille Durand,2,")),
        "{text}"
    );
    assert!(text.contains("\nbase_fee,,,,250.00,EUR\n"), "{text}");
    assert!(
        text.contains(&format!("\nbalance,,,,{},EUR\n", st.balance)),
        "{text}"
    );
    // The run issued each partner's month: EdgeNet owes its fees less its share (an invoice
    // to EdgeNet); VMCloud owes Fibra its share (a self-billed invoice in Fibra's name, in
    // Fibra's own series, never charged).
    let doc = |f: &Fleet, org: &str| {
        f.state
            .billing
            .invoices
            .values()
            .find(|i| i.org.as_str() == org && i.period == "2026-11")
            .cloned()
            .unwrap_or_else(|| panic!("no document of {org}"))
    };
    let edge_doc = doc(&f, "org-staff-edgenet");
    assert!(!edge_doc.self_billed);
    assert_eq!(edge_doc.seller.name, "VMCloud OÜ");
    assert_eq!(edge_doc.buyer.name, "edgenet SAS");
    assert_eq!(edge_doc.totals.net, -st.balance);
    assert!(edge_doc.number.as_deref().unwrap().starts_with("VMC-2026-"));
    let fibra_st = statement(
        &f.state,
        &f.state.partners["fibra"].clone(),
        "2026-11",
        f.at,
    )
    .unwrap();
    assert!(fibra_st.balance > Decimal::ZERO, "{fibra_st:?}");
    let fibra_doc = doc(&f, "org-staff-fibra");
    assert!(fibra_doc.self_billed);
    assert_eq!(fibra_doc.seller.name, "fibra SAS");
    assert_eq!(fibra_doc.buyer.name, "VMCloud OÜ");
    assert_eq!(fibra_doc.totals.net, fibra_st.balance);
    assert_eq!(fibra_doc.number.as_deref(), Some("SB-FIBRA-2026-0001"));
    assert_eq!(
        fibra_doc.next_attempt_ms, None,
        "never charged to the partner"
    );
    // December is under way.
    let dec = statement(&f.state, &partner, "2026-12", f.at).unwrap();
    assert!(!dec.closed);
    assert_eq!(dec.active_users, 1);
    assert!(statement(&f.state, &partner, "2026-13", f.at).is_none());
}

#[test]
fn a_partners_endpoint_gets_its_customers_events_and_no_one_elses() {
    let mut f = two_partners();
    let h1 = f.host("h1", "r1", 0);
    as_user(&mut f, FIBRA_ADMIN, customer("org-fibra-shop", "fibra")).unwrap();
    let endpoint = |id: &str, project: &str| {
        Body::CreateWebhookEndpoint(pb::CreateWebhookEndpoint {
            endpoint_id: id.into(),
            project_id: project.into(),
            url: "https://hooks.edgenet.example/".into(),
            event_types: vec!["instance.state_changed".into()],
            sealed_secret: "sealed".into(),
            description: String::new(),
            partner_customers: true,
        })
    };
    // Only a partner's staff project asks for its customers' events.
    let refused = f.try_apply(endpoint("we_ann", "prj-ann"));
    assert!(
        matches!(&refused, Err(Rejected::Invalid(m)) if m.contains("not a partner's")),
        "{refused:?}"
    );
    f.apply(endpoint("we_edge", "prj-staff-edgenet"));
    let mut vms = Vec::new();
    for project in [
        format!("prj-{EDGE_CUSTOMER}"),
        "prj-org-fibra-shop".to_owned(),
    ] {
        f.unlimited(&project);
        vms.push(f.create(0, |c| {
            c.project_id = project.clone();
            c.flavor = "vps-s".into();
        }));
    }
    f.place();
    for vm in &vms {
        f.observe(&h1, vm, pb::ObservedState::Running);
    }
    let to_edge: Vec<&str> = f
        .state
        .webhook_outbox
        .values()
        .filter(|d| d.endpoint_id == "we_edge")
        .map(|d| d.payload.as_str())
        .collect();
    assert!(!to_edge.is_empty(), "EdgeNet's customer's events come");
    for payload in &to_edge {
        assert!(payload.contains(vms[0].as_str()), "{payload}");
        assert!(
            !payload.contains(vms[1].as_str()),
            "Fibra's customer: {payload}"
        );
    }
}

#[test]
fn a_partner_hands_out_quota_and_entitlements_within_its_allowance() {
    let mut f = two_partners();
    edge_household_bare(&mut f);
    f.apply(Body::SetPartnerLicence(pb::SetPartnerLicence {
        partner_id: "edgenet".into(),
        currency: "EUR".into(),
        base_monthly: "0".into(),
        per_active_user: "0".into(),
        partner_share_percent: "0".into(),
        allowance: Some(pb::PartnerAllowance {
            vcpus: Some(64),
            gpus: Some(4),
            entitlements: Some(2),
            limit_plans: true,
            plans: vec!["game-standard".into()],
        }),
    }));
    let school = format!("prj-{EDGE_CUSTOMER}");
    let quota = |project: &str, region: &str, vcpus: u32| {
        Body::SetQuota(pb::SetQuota {
            project_id: project.into(),
            region: region.into(),
            limits: Some(pb::QuotaLimits {
                vcpus: Some(vcpus),
                ..Default::default()
            }),
        })
    };
    // Its admin shares 64 vCPUs among its customers, all regions together…
    as_user(&mut f, EDGE_ADMIN, quota(&school, "par", 48)).unwrap();
    as_user(&mut f, EDGE_ADMIN, quota(HOME_PROJECT, "fra", 16)).unwrap();
    assert_eq!(f.state.handed_out("edgenet", f.at).vcpus, 64);
    // …and not one more, whole: nothing changed.
    let r = as_user(&mut f, EDGE_ADMIN, quota(HOME_PROJECT, "fra", 17));
    assert!(
        matches!(&r, Err(Rejected::Conflict(m))
            if m.contains("edgenet Play may hand out 64 vCPUs of quota") && m.contains("would make 65")),
        "{r:?}"
    );
    assert_eq!(f.state.handed_out("edgenet", f.at).vcpus, 64);
    // Lowering one customer's makes room for another's.
    as_user(&mut f, EDGE_ADMIN, quota(&school, "par", 40)).unwrap();
    as_user(&mut f, EDGE_ADMIN, quota(HOME_PROJECT, "fra", 24)).unwrap();
    // Not another partner's customers, nor VMCloud's.
    let r = as_user(&mut f, FIBRA_ADMIN, quota(&school, "par", 1));
    assert!(r.is_err(), "{r:?}");
    let r = as_user(&mut f, EDGE_ADMIN, quota("prj-ann", "par", 1));
    assert!(matches!(r, Err(Rejected::Forbidden(_))), "{r:?}");
    // Entitlements in force: two; a trial that ended gives its place back.
    let grant = |id: &str, ends: i64| {
        Body::GrantEntitlement(pb::GrantEntitlement {
            org_id: HOME.into(),
            entitlement_id: id.into(),
            title: "kart-rally".into(),
            profile_id: String::new(),
            kind: if ends == 0 { "purchase" } else { "trial" }.into(),
            ends_at_unix_ms: ends,
        })
    };
    as_user(&mut f, EDGE_ADMIN, grant("ent-1", 0)).unwrap();
    let trial_end = f.at + HOUR;
    as_user(&mut f, EDGE_ADMIN, grant("ent-2", trial_end)).unwrap();
    let r = as_user(&mut f, EDGE_ADMIN, grant("ent-3", 0));
    assert!(
        matches!(&r, Err(Rejected::Conflict(m)) if m.contains("2 entitlements in force")),
        "{r:?}"
    );
    f.at += 2 * HOUR;
    as_user(&mut f, EDGE_ADMIN, grant("ent-3", 0)).unwrap();
    assert_eq!(f.state.handed_out("edgenet", f.at).entitlements, 2);
    // Plans: those the partner offers, set by its admins (or the customer).
    let plan = |plan: &str| {
        Body::SetPlan(pb::SetPlan {
            org_id: HOME.into(),
            plan: plan.into(),
        })
    };
    let r = as_user(&mut f, EDGE_ADMIN, plan("game-priority-plus"));
    assert!(
        matches!(&r, Err(Rejected::Conflict(m))
            if m.contains("offers its customers the plans game-standard, not `game-priority-plus`")),
        "{r:?}"
    );
    as_user(&mut f, EDGE_ADMIN, plan("game-standard")).unwrap();
    let r = as_user(&mut f, FIBRA_ADMIN, plan("game-standard"));
    assert!(r.is_err(), "{r:?}");
}

#[test]
fn a_sites_registered_device_takes_a_seat_wherever_it_is() {
    let mut f = two_partners();
    f.host("h1", "r1", 8);
    edge_household(&mut f);
    let kiosk = |partner: &str, id: &str, codes: &[&str]| {
        let mut body = site(partner, id, &[], 1);
        if let Body::PutPartnerSite(s) = &mut body {
            s.device_codes = codes.iter().map(|c| (*c).to_owned()).collect();
        }
        body
    };
    as_user(
        &mut f,
        EDGE_ADMIN,
        kiosk("edgenet", "kiosk", &["cdi-poste-07"]),
    )
    .unwrap();
    assert_eq!(
        f.state.partners["edgenet"].sites["kiosk"].device_codes,
        vec!["CDI-POSTE-07"]
    );
    // From any address, the registered terminal takes the site's seat…
    let a = launch_with(&mut f, HOME_PROJECT, "pf-a", "198.51.100.7", "CDI-POSTE-07").unwrap();
    assert_eq!(
        f.state.instances[&a]
            .session
            .as_ref()
            .unwrap()
            .site
            .as_deref(),
        Some("edgenet/kiosk")
    );
    // …and the next launch from it waits for the seat.
    let r = launch_with(&mut f, HOME_PROJECT, "pf-b", "203.0.113.9", "cdi-poste-07");
    assert!(
        matches!(
            r,
            Err(Rejected::LaunchRefused {
                reason: LaunchRefusal::SiteFull,
                ..
            })
        ),
        "{r:?}"
    );
    // A device belongs to one site; a code is checked.
    let r = as_user(
        &mut f,
        FIBRA_ADMIN,
        kiosk("fibra", "lib", &["CDI-POSTE-07"]),
    );
    assert!(
        matches!(&r, Err(Rejected::Conflict(m)) if m.contains("another partner's site")),
        "{r:?}"
    );
    let r = as_user(&mut f, EDGE_ADMIN, kiosk("edgenet", "bad", &["x"]));
    assert!(
        matches!(&r, Err(Rejected::Invalid(m)) if m.contains("device code `x`")),
        "{r:?}"
    );
}
