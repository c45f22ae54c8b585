//! Households in `apply` (invariant 15): a launch without the title in the library, above a
//! kid's age rating (unless a parent's PIN unlocked it, once), outside a kid's hours, past a
//! kid's minutes for today or past the household's hours this month is refused with the
//! reason and what to do — and what passes gets a session no longer than what is left. One
//! session per profile; at most six profiles; five wrong PINs lock the PIN.

use vmcloud_proto::InstanceId;
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_scheduler::state::Rejected;
use vmcloud_scheduler::state::rejected::LaunchRefusal;

use crate::fleet::Fleet;

pub(crate) const ORG: &str = "org-home";
pub(crate) const PROJECT: &str = "prj-home";
const OWNER: &str = "usr-00000000000000c1";
pub(crate) const ADULT: &str = "pf-ann";
pub(crate) const KID: &str = "pf-leo";
pub(crate) const MIN: i64 = 60_000;
pub(crate) const HOUR: i64 = 60 * MIN;

/// 2026-11-02 09:00 UTC (10:00 in the household, UTC+1), a Monday.
const T0: i64 = 1_793_610_000_000;

pub(crate) fn household() -> Fleet {
    let mut f = Fleet::new();
    f.at = T0;
    sign_up(
        &mut f,
        OWNER,
        "ann@example.org",
        ORG,
        "The Martins",
        PROJECT,
    );
    f.host("h1", "r1", 4);
    profile(&mut f, ADULT, "Ann", false, 0, 0, (0, 0)).unwrap();
    // Leo, born 2016: ten in 2026, so PEGI 7.
    profile(&mut f, KID, "Leo", true, 2016, 0, (0, 0)).unwrap();
    f.apply(Body::SetParentalPin(pb::SetParentalPin {
        org_id: ORG.into(),
        pin_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$cGlu".into(),
        utc_offset_min: 60,
    }));
    f
}

/// A household's owner signs up (verified), with the household's project.
pub(crate) fn sign_up(
    f: &mut Fleet,
    user: &str,
    email: &str,
    org: &str,
    name: &str,
    project: &str,
) {
    f.apply(Body::SignUp(pb::SignUp {
        user_id: user.into(),
        email: email.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        organisation: Some(pb::Organisation {
            org_id: org.into(),
            name: name.into(),
            kind: "household".into(),
            billing_country: "FR".into(),
            vat_id: String::new(),
            billing_address: String::new(),
        }),
        project_id: project.into(),
        verification_sha256: vec![7; 32],
        verification_expires_at_unix_ms: f.at + HOUR,
        partner_id: String::new(),
    }));
    f.apply(Body::VerifyEmail(pb::VerifyEmail {
        user_id: user.into(),
        token_sha256: vec![7; 32],
    }));
    f.unlimited(project);
}

pub(crate) fn profile(
    f: &mut Fleet,
    id: &str,
    name: &str,
    kid: bool,
    birth_year: i32,
    daily_limit_min: u32,
    hours: (u32, u32),
) -> Result<(), Rejected> {
    profile_in(f, ORG, id, name, kid, birth_year, daily_limit_min, hours)
}

/// A profile of household `org`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn profile_in(
    f: &mut Fleet,
    org: &str,
    id: &str,
    name: &str,
    kid: bool,
    birth_year: i32,
    daily_limit_min: u32,
    hours: (u32, u32),
) -> Result<(), Rejected> {
    f.try_apply(Body::CreateProfile(pb::CreateProfile {
        org_id: org.into(),
        profile_id: id.into(),
        name: name.into(),
        kid,
        birth_year,
        daily_limit_min,
        allowed_from_h: hours.0,
        allowed_to_h: hours.1,
        user_id: String::new(),
    }))
    .map(|_| ())
}

pub(crate) fn entitle(f: &mut Fleet, title: &str) {
    f.apply(Body::GrantEntitlement(pb::GrantEntitlement {
        org_id: ORG.into(),
        entitlement_id: format!("ent-{title}"),
        title: title.into(),
        profile_id: String::new(),
        kind: "purchase".into(),
        ends_at_unix_ms: 0,
    }));
}

/// Launches `title` (rated `pegi`) as `profile`, on a plan of `monthly_hours` with 6 h
/// sessions.
pub(crate) fn launch(
    f: &mut Fleet,
    profile: &str,
    title: &str,
    pegi: u32,
    monthly_hours: u32,
) -> Result<InstanceId, Rejected> {
    launch_in(f, PROJECT, profile, title, pegi, monthly_hours)
}

/// Launches as `profile` of the household owning `project`.
pub(crate) fn launch_in(
    f: &mut Fleet,
    project: &str,
    profile: &str,
    title: &str,
    pegi: u32,
    monthly_hours: u32,
) -> Result<InstanceId, Rejected> {
    let id = InstanceId::generate();
    let r = f.try_apply(Body::CreateInstance(pb::CreateInstance {
        instance_id: id.to_string(),
        project_id: project.into(),
        name: title.into(),
        region: "par".into(),
        vcpus: 8,
        memory_mib: 16384,
        gpu_model: "H100".into(),
        gpu_count: 1,
        session: Some(pb::GameSession {
            tier: pb::SessionTier::Standard as i32,
            title: title.into(),
            profile_id: profile.into(),
            title_pegi: pegi,
            title_free: false,
            monthly_hours,
            rollover_hours: 15,
            session_max_s: 6 * 3600,
            ..Default::default()
        }),
        ..Default::default()
    }));
    f.at += 1;
    r.map(|_| id)
}

/// Ends a session: its delete, and (when it was on a host) its agent saying it is gone.
pub(crate) fn end(f: &mut Fleet, id: &InstanceId) {
    let node = f.state.instances[id].node.clone();
    f.apply(Body::DeleteInstance(pb::DeleteInstance {
        instance_id: id.to_string(),
        project_id: PROJECT.into(),
    }));
    if let Some(node) = node {
        f.observe(&node, id, pb::ObservedState::Absent);
    }
}

fn refusal(r: Result<InstanceId, Rejected>) -> (LaunchRefusal, String) {
    match r {
        Err(Rejected::LaunchRefused { reason, detail }) => (reason, detail),
        other => panic!("not refused by the household's rules: {other:?}"),
    }
}

#[test]
fn the_library_and_age_ratings_decide_and_a_pin_unlocks_one_session() {
    let mut f = household();
    let (why, detail) = refusal(launch(&mut f, KID, "kart-rally", 7, 100));
    assert_eq!(why, LaunchRefusal::NoEntitlement);
    assert!(detail.contains("not in Leo's library"), "{detail}");
    entitle(&mut f, "kart-rally");
    entitle(&mut f, "night-city-noir");
    let kart = launch(&mut f, KID, "kart-rally", 7, 100).unwrap();
    // One session per profile; another profile plays at the same time.
    let again = launch(&mut f, KID, "kart-rally", 7, 100).unwrap_err();
    assert!(
        matches!(&again, Rejected::Conflict(m) if m.contains("profile pf-leo already has session")),
        "{again:?}"
    );
    let noir = launch(&mut f, ADULT, "night-city-noir", 18, 100).unwrap();
    end(&mut f, &kart);
    end(&mut f, &noir);

    // PEGI 18 is above Leo's 7: refused, with what to do.
    let (why, detail) = refusal(launch(&mut f, KID, "night-city-noir", 18, 100));
    assert_eq!(why, LaunchRefusal::AgeRating);
    assert!(
        detail.contains("PEGI 18, above Leo's PEGI 7") && detail.contains("PIN"),
        "{detail}"
    );
    // A parent's PIN unlocks it for one session.
    f.apply(Body::RecordPinAttempt(pb::RecordPinAttempt {
        org_id: ORG.into(),
        profile_id: KID.into(),
        title: "night-city-noir".into(),
        ok: true,
    }));
    let unlocked = launch(&mut f, KID, "night-city-noir", 18, 100).unwrap();
    end(&mut f, &unlocked);
    let (why, _) = refusal(launch(&mut f, KID, "night-city-noir", 18, 100));
    assert_eq!(
        why,
        LaunchRefusal::AgeRating,
        "the unlock was for one session"
    );

    // Five wrong PINs lock it; a right one is refused while locked.
    for _ in 0..5 {
        f.apply(Body::RecordPinAttempt(pb::RecordPinAttempt {
            org_id: ORG.into(),
            profile_id: KID.into(),
            title: "night-city-noir".into(),
            ok: false,
        }));
    }
    let locked = f
        .try_apply(Body::RecordPinAttempt(pb::RecordPinAttempt {
            org_id: ORG.into(),
            profile_id: KID.into(),
            title: "night-city-noir".into(),
            ok: true,
        }))
        .unwrap_err();
    assert!(
        matches!(&locked, Rejected::Conflict(m) if m.contains("locked after 5 wrong tries")),
        "{locked:?}"
    );
}

#[test]
fn kids_hours_and_minutes_and_the_households_month_are_kept() {
    let mut f = household();
    entitle(&mut f, "kart-rally");
    // Mia, 8, may play 14:00–19:00, an hour a day.
    profile(&mut f, "pf-mia", "Mia", true, 2018, 60, (14, 19)).unwrap();
    let (why, detail) = refusal(launch(&mut f, "pf-mia", "kart-rally", 7, 100));
    assert_eq!(why, LaunchRefusal::OutsideAllowedHours);
    assert!(
        detail.contains("from 14:00 to 19:00") && detail.contains("10:00"),
        "{detail}"
    );
    // 15:00 in the household: she plays, for an hour at most.
    f.at = T0 + 5 * HOUR;
    let s = launch(&mut f, "pf-mia", "kart-rally", 7, 100).unwrap();
    let spec = f.instance(&s).session.clone().unwrap();
    assert_eq!(spec.max_length_s, Some(3600));
    f.place();
    f.at += 61 * MIN;
    end(&mut f, &s);
    let (why, detail) = refusal(launch(&mut f, "pf-mia", "kart-rally", 7, 100));
    assert_eq!(why, LaunchRefusal::DailyLimit);
    assert!(detail.contains("1 h 01 min today"), "{detail}");
    // The next day, she plays again.
    f.at += 24 * HOUR;
    let next = launch(&mut f, "pf-mia", "kart-rally", 7, 100).unwrap();
    end(&mut f, &next);

    // The household's month: 2 hours on this plan, and October's 2 unused hours carried over
    // (up to 15); 1 h 01 min used. A session gets what is left; then nothing is.
    let ann = launch(&mut f, ADULT, "kart-rally", 7, 2).unwrap();
    let left = f
        .instance(&ann)
        .session
        .as_ref()
        .unwrap()
        .max_length_s
        .unwrap();
    assert_eq!(left, 4 * 3600 - 61 * 60, "{left}");
    f.place();
    f.at += 3 * HOUR;
    end(&mut f, &ann);
    let (why, detail) = refusal(launch(&mut f, ADULT, "kart-rally", 7, 2));
    assert_eq!(why, LaunchRefusal::NoHoursLeft);
    assert!(
        detail.contains("4 h 01 min this month, all of its 4 h (with 2 h carried over)")
            && detail.contains("buy an hour pack"),
        "{detail}"
    );
}

#[test]
fn a_household_has_six_profiles_at_most_and_profiles_are_checked() {
    let mut f = household();
    for (n, name) in ["Bo", "Cy", "Di", "Ed"].iter().enumerate() {
        profile(&mut f, &format!("pf-{n}"), name, false, 0, 0, (0, 0)).unwrap();
    }
    let seventh = profile(&mut f, "pf-7", "Flo", false, 0, 0, (0, 0)).unwrap_err();
    assert!(
        matches!(&seventh, Rejected::Conflict(m) if m.contains("the most a household has")),
        "{seventh:?}"
    );
    f.apply(Body::DeleteProfile(pb::DeleteProfile {
        org_id: ORG.into(),
        profile_id: "pf-0".into(),
    }));
    let twin = profile(&mut f, "pf-8", "leo", true, 2016, 0, (0, 0)).unwrap_err();
    assert!(matches!(&twin, Rejected::Exists(_)), "{twin:?}");
    let hours = profile(&mut f, "pf-9", "Gus", true, 2019, 0, (19, 14)).unwrap_err();
    assert!(
        matches!(&hours, Rejected::Invalid(m) if m.contains("not a span of the day")),
        "{hours:?}"
    );
    let adult_limits = profile(&mut f, "pf-9", "Gus", false, 2019, 0, (0, 0)).unwrap_err();
    assert!(
        matches!(&adult_limits, Rejected::Invalid(m) if m.contains("kid")),
        "{adult_limits:?}"
    );
}

#[test]
fn a_connection_token_is_taken_once_and_never_late() {
    let mut f = household();
    entitle(&mut f, "kart-rally");
    let s = launch(&mut f, ADULT, "kart-rally", 7, 100).unwrap();
    let issue = |f: &mut Fleet, sha: u8| {
        f.try_apply(Body::IssueStreamToken(pb::IssueStreamToken {
            project_id: PROJECT.into(),
            instance_id: s.to_string(),
            token_sha256: vec![sha; 32],
            expires_at_unix_ms: f.at + 60_000,
            guest_profile_id: String::new(),
        }))
    };
    let early = issue(&mut f, 1).unwrap_err();
    assert!(
        matches!(&early, Rejected::Conflict(m) if m.contains("waiting in its queue")),
        "{early:?}"
    );
    f.place();
    let node = f.instance(&s).node.clone().unwrap();
    f.observe(&node, &s, pb::ObservedState::Running);
    issue(&mut f, 1).unwrap();
    issue(&mut f, 2).unwrap();
    let redeem = |f: &mut Fleet, sha: u8| {
        f.try_apply(Body::RedeemStreamToken(pb::RedeemStreamToken {
            instance_id: s.to_string(),
            token_sha256: vec![sha; 32],
        }))
    };
    redeem(&mut f, 1).unwrap();
    let twice = redeem(&mut f, 1).unwrap_err();
    assert!(
        matches!(&twice, Rejected::Conflict(m) if m.contains("was used")),
        "{twice:?}"
    );
    f.at += 61_000;
    let late = redeem(&mut f, 2).unwrap_err();
    assert!(
        matches!(&late, Rejected::Conflict(m) if m.contains("expired")),
        "{late:?}"
    );
    let unknown = redeem(&mut f, 3).unwrap_err();
    assert!(matches!(unknown, Rejected::NotFound(_)));
}

#[test]
fn a_kid_asks_a_parent_who_approves_once_or_declines() {
    let mut f = household();
    entitle(&mut f, "starfield-tactics");
    let ask = |f: &mut Fleet, id: &str| {
        f.try_apply(Body::AskParent(pb::AskParent {
            org_id: ORG.into(),
            request_id: id.into(),
            profile_id: KID.into(),
            title: "starfield-tactics".into(),
        }))
    };
    let decide = |f: &mut Fleet, id: &str, approve: bool| {
        f.try_apply(Body::DecideParentRequest(pb::DecideParentRequest {
            org_id: ORG.into(),
            request_id: id.into(),
            approve,
        }))
    };
    ask(&mut f, "req-1").unwrap();
    let twice = ask(&mut f, "req-2").unwrap_err();
    assert!(
        matches!(&twice, Rejected::Conflict(m) if m.contains("asked for")),
        "{twice:?}"
    );
    decide(&mut f, "req-1", false).unwrap();
    let (why, _) = refusal(launch(&mut f, KID, "starfield-tactics", 12, 100));
    assert_eq!(why, LaunchRefusal::AgeRating, "declined: still refused");
    ask(&mut f, "req-3").unwrap();
    decide(&mut f, "req-3", true).unwrap();
    let again = decide(&mut f, "req-3", true).unwrap_err();
    assert!(
        matches!(&again, Rejected::Conflict(m) if m.contains("was approved")),
        "{again:?}"
    );
    let s = launch(&mut f, KID, "starfield-tactics", 12, 100).unwrap();
    end(&mut f, &s);
    let (why, _) = refusal(launch(&mut f, KID, "starfield-tactics", 12, 100));
    assert_eq!(
        why,
        LaunchRefusal::AgeRating,
        "an approval is for one session"
    );
}

/// A launch that names a warm VM no longer free is refused before the household's rules use
/// anything up: a parent's unlock is still there for the next launch.
#[test]
fn a_launch_refused_for_a_taken_warm_vm_keeps_the_parents_unlock() {
    let mut f = household();
    entitle(&mut f, "night-city-noir");
    f.apply(Body::RecordPinAttempt(pb::RecordPinAttempt {
        org_id: ORG.into(),
        profile_id: KID.into(),
        title: "night-city-noir".into(),
        ok: true,
    }));
    // A warm VM still waiting for its host: not one a launch may take.
    let warm = InstanceId::generate();
    f.apply(Body::FillWarmPool(pb::FillWarmPool {
        vms: vec![pb::CreateInstance {
            instance_id: warm.to_string(),
            name: "warm".into(),
            region: "par".into(),
            vcpus: 8,
            memory_mib: 16384,
            gpu_model: "H100".into(),
            gpu_count: 1,
            ..Default::default()
        }],
    }));
    let refused = f.try_apply(Body::CreateInstance(pb::CreateInstance {
        instance_id: warm.to_string(),
        project_id: PROJECT.into(),
        name: "night-city-noir".into(),
        region: "par".into(),
        vcpus: 8,
        memory_mib: 16384,
        gpu_model: "H100".into(),
        gpu_count: 1,
        session: Some(pb::GameSession {
            tier: pb::SessionTier::Standard as i32,
            title: "night-city-noir".into(),
            profile_id: KID.into(),
            title_pegi: 18,
            monthly_hours: 100,
            rollover_hours: 15,
            session_max_s: 6 * 3600,
            claim_warm: true,
            ..Default::default()
        }),
        ..Default::default()
    }));
    assert!(
        matches!(&refused, Err(Rejected::Conflict(m)) if m.contains("was taken")),
        "{refused:?}"
    );
    f.at += 1;
    launch(&mut f, KID, "night-city-noir", 18, 100).expect("the unlock is still there");
}

/// An hour pack adds to the month it is bought in; what is left of it rolls over like the
/// plan's hours, within the plan's rollover; a company buys none.
#[test]
fn an_hour_pack_adds_to_the_month_and_what_is_left_rolls_over() {
    let mut f = household();
    entitle(&mut f, "kart-rally");
    let buy = |f: &mut Fleet, id: &str, hours: u32| {
        f.try_apply(Body::BuyHourPack(pb::BuyHourPack {
            org_id: ORG.into(),
            purchase_id: id.into(),
            pack: format!("pack-{hours}h"),
            name: format!("{hours} gaming hours"),
            hours,
            price: "4.99".into(),
            currency: "EUR".into(),
        }))
    };
    // A 2-hour plan, used up (October carried 2 hours over).
    let s = launch(&mut f, ADULT, "kart-rally", 7, 2).unwrap();
    f.place();
    f.at += 4 * HOUR;
    end(&mut f, &s);
    let (why, _) = refusal(launch(&mut f, ADULT, "kart-rally", 7, 2));
    assert_eq!(why, LaunchRefusal::NoHoursLeft);
    // Ten more hours this month.
    buy(&mut f, "hp-1", 10).unwrap();
    assert!(matches!(buy(&mut f, "hp-1", 10), Err(Rejected::Exists(_))));
    let s = launch(&mut f, ADULT, "kart-rally", 7, 2).unwrap();
    let left = f.instance(&s).session.as_ref().unwrap().max_length_s;
    assert_eq!(
        left,
        Some(6 * 3600),
        "the plan's session cap, not the hours"
    );
    f.place();
    f.at += HOUR;
    end(&mut f, &s);
    // December: what was left of November's plan and pack (2 + 10 - 5 = 7 h) rolls over, up
    // to 15 h (the hours October carried into November do not carry again).
    f.at = T0 + 30 * 24 * HOUR;
    let org = vmcloud_proto::OrgId::parse(ORG).unwrap();
    let (allowed, played, carried) =
        vmcloud_scheduler::gaming::apply::hours_left(&f.state, &org, 2, 15, f.at);
    assert_eq!((allowed, played, carried), (9 * HOUR, 0, 7 * HOUR));
    // Bad input: the wrong currency, a price that is not one.
    let wrong = f
        .try_apply(Body::BuyHourPack(pb::BuyHourPack {
            org_id: ORG.into(),
            purchase_id: "hp-2".into(),
            pack: "pack-10h".into(),
            name: "10 gaming hours".into(),
            hours: 10,
            price: "4.99".into(),
            currency: "USD".into(),
        }))
        .unwrap_err();
    assert!(
        matches!(&wrong, Rejected::Invalid(m) if m.contains("organisation's currency (EUR)")),
        "{wrong:?}"
    );
}
