//! Share-Play in `apply`: a code lets one friend in once, before it expires; the guest gets a
//! stream token of their own and plays at most 60 minutes; a guest plays nowhere else
//! meanwhile and a profile playing elsewhere cannot join (invariant 7); a kid guest is held to
//! their rating and minutes (invariant 15); the host ends it, the guest leaves, or the
//! session's end takes the guest with it; the guest's time counts for a kid's minutes and not
//! for their household's monthly hours.

use vmcloud_proto::InstanceId;
use vmcloud_proto::ProjectId;
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_scheduler::state::Rejected;
use vmcloud_scheduler::state::rejected::LaunchRefusal;

use crate::fleet::Fleet;
use crate::gaming::{
    ADULT, HOUR, MIN, PROJECT, end, entitle, household, launch, launch_in, profile_in, sign_up,
};

const FRIENDS: &str = "org-duval";
const FRIENDS_PROJECT: &str = "prj-duval";
const ZOE: &str = "pf-zoe";
/// Tom, born 2019: seven in 2026 (PEGI 7), 30 minutes a day.
const TOM: &str = "pf-tom";

/// The Martins (Ann plays kart-rally, running) and their friends the Duvals (Zoe, and Tom, a
/// kid).
fn friends() -> (Fleet, InstanceId) {
    let mut f = household();
    sign_up(
        &mut f,
        "usr-00000000000000d1",
        "zoe@example.org",
        FRIENDS,
        "The Duvals",
        FRIENDS_PROJECT,
    );
    profile_in(&mut f, FRIENDS, ZOE, "Zoe", false, 0, 0, (0, 0)).unwrap();
    profile_in(&mut f, FRIENDS, TOM, "Tom", true, 2019, 30, (0, 0)).unwrap();
    entitle(&mut f, "kart-rally");
    entitle(&mut f, "night-city-noir");
    let s = launch(&mut f, ADULT, "kart-rally", 7, 100).unwrap();
    run(&mut f, &s);
    (f, s)
}

fn run(f: &mut Fleet, s: &InstanceId) {
    f.place();
    let node = f.instance(s).node.clone().unwrap();
    f.observe(&node, s, pb::ObservedState::Running);
}

fn invite(f: &mut Fleet, s: &InstanceId, code: u8) -> Result<(), Rejected> {
    let expires = f.at + 10 * MIN;
    f.try_apply(Body::InviteSharePlay(pb::InviteSharePlay {
        project_id: PROJECT.into(),
        instance_id: s.to_string(),
        code_sha256: vec![code; 32],
        expires_at_unix_ms: expires,
    }))
    .map(|_| ())
}

fn join(f: &mut Fleet, code: u8, profile: &str, pegi: u32) -> Result<(), Rejected> {
    let expires = f.at + MIN;
    let r = f.try_apply(Body::JoinSharePlay(pb::JoinSharePlay {
        code_sha256: vec![code; 32],
        guest_project_id: FRIENDS_PROJECT.into(),
        guest_profile_id: profile.into(),
        title_pegi: pegi,
        token_sha256: vec![code + 100; 32],
        token_expires_at_unix_ms: expires,
    }));
    f.at += 1;
    r.map(|_| ())
}

fn end_share(f: &mut Fleet, s: &InstanceId, guest: Option<&str>) -> Result<(), Rejected> {
    f.try_apply(Body::EndSharePlay(pb::EndSharePlay {
        project_id: if guest.is_some() {
            FRIENDS_PROJECT
        } else {
            PROJECT
        }
        .into(),
        instance_id: s.to_string(),
        guest_profile_id: guest.unwrap_or_default().into(),
    }))
    .map(|_| ())
}

fn guest_of(f: &Fleet, profile: &str) -> Option<InstanceId> {
    let project = ProjectId::parse(FRIENDS_PROJECT).unwrap();
    f.state
        .guest_in(&project, profile, f.at)
        .map(|(i, _)| i.id.clone())
}

fn conflict(r: Result<(), Rejected>, says: &str) {
    assert!(
        matches!(&r, Err(Rejected::Conflict(m)) if m.contains(says)),
        "expected a conflict saying `{says}`: {r:?}"
    );
}

#[test]
fn a_code_lets_one_friend_in_once_with_a_token_of_their_own_for_an_hour_at_most() {
    let (mut f, s) = friends();
    invite(&mut f, &s, 1).unwrap();
    join(&mut f, 1, ZOE, 7).unwrap();
    assert_eq!(guest_of(&f, ZOE), Some(s.clone()));
    let g = f.instance(&s).session.as_ref().unwrap().share.guest.clone();
    let g = g.unwrap();
    assert_eq!(
        (g.name.as_str(), g.until_ms - g.joined_at_ms),
        ("Zoe", HOUR)
    );
    // The guest's token: taken once by the streaming server.
    f.apply(Body::RedeemStreamToken(pb::RedeemStreamToken {
        instance_id: s.to_string(),
        token_sha256: vec![101; 32],
    }));
    // The same code again, by anyone: refused, saying when it was used.
    conflict(join(&mut f, 1, TOM, 7), "was used at");
    // One session at a time: Zoe launches nothing of her own while she plays along.
    f.apply(Body::GrantEntitlement(pb::GrantEntitlement {
        org_id: FRIENDS.into(),
        entitlement_id: "ent-zoe".into(),
        title: "kart-rally".into(),
        profile_id: String::new(),
        kind: "purchase".into(),
        ends_at_unix_ms: 0,
    }));
    let own = launch_in(&mut f, FRIENDS_PROJECT, ZOE, "kart-rally", 7, 100).unwrap_err();
    assert!(
        matches!(&own, Rejected::Conflict(m) if m.contains("plays along in a friend's session")),
        "{own:?}"
    );
    // One guest at a time.
    conflict(invite(&mut f, &s, 2), "Zoe plays along until");
    // An hour later she is out: the host may invite again, and Zoe may launch her own.
    f.at += HOUR;
    assert_eq!(guest_of(&f, ZOE), None);
    invite(&mut f, &s, 3).unwrap();
    let hers = launch_in(&mut f, FRIENDS_PROJECT, ZOE, "kart-rally", 7, 100).unwrap();
    // ... and while she plays her own, she joins nobody's.
    conflict(join(&mut f, 3, ZOE, 7), "end it before joining");
    f.apply(Body::DeleteInstance(pb::DeleteInstance {
        instance_id: hers.to_string(),
        project_id: FRIENDS_PROJECT.into(),
    }));
    // An invite expires after ten minutes.
    f.at += 11 * MIN;
    conflict(join(&mut f, 3, ZOE, 7), "expired at");
    // An unknown code.
    assert!(matches!(
        join(&mut f, 9, ZOE, 7),
        Err(Rejected::NotFound(_))
    ));
    // Her hour along counts for nobody's monthly hours but the host's session.
    let duvals = f.state.projects[&ProjectId::parse(FRIENDS_PROJECT).unwrap()]
        .org
        .clone();
    let month = (f.at - 40 * 86_400_000, f.at + 1);
    let zoe_alone = f
        .state
        .played_ms(&duvals, Some(ZOE), month.0, month.1, f.at);
    let household = f.state.played_ms(&duvals, None, month.0, month.1, f.at);
    assert!(zoe_alone >= HOUR, "{zoe_alone}");
    assert!(household < zoe_alone, "{household} vs {zoe_alone}");
}

#[test]
fn the_host_ends_it_the_guest_leaves_and_the_sessions_end_takes_the_guest() {
    let (mut f, s) = friends();
    conflict(end_share(&mut f, &s, None), "no Share-Play to end");
    invite(&mut f, &s, 1).unwrap();
    join(&mut f, 1, ZOE, 7).unwrap();
    // Another household's project cannot end it, nor can a profile not in it leave it.
    assert!(matches!(
        end_share(&mut f, &s, Some(TOM)),
        Err(Rejected::NotFound(_))
    ));
    end_share(&mut f, &s, Some(ZOE)).unwrap();
    assert_eq!(guest_of(&f, ZOE), None);
    let tokens = &f.instance(&s).session.as_ref().unwrap().stream_tokens;
    assert!(tokens.iter().all(|t| !t.guest), "the guest's tokens go");
    // The host ends a guest's play.
    invite(&mut f, &s, 2).unwrap();
    join(&mut f, 2, ZOE, 7).unwrap();
    end_share(&mut f, &s, None).unwrap();
    assert_eq!(guest_of(&f, ZOE), None);
    // The session's end takes its guest with it.
    invite(&mut f, &s, 3).unwrap();
    join(&mut f, 3, ZOE, 7).unwrap();
    end(&mut f, &s);
    assert_eq!(guest_of(&f, ZOE), None);
    // An invite to a session that ended is refused, saying so.
    let s2 = launch(&mut f, ADULT, "kart-rally", 7, 100).unwrap();
    run(&mut f, &s2);
    invite(&mut f, &s2, 4).unwrap();
    end(&mut f, &s2);
    conflict(join(&mut f, 4, ZOE, 7), "has ended");
    // A queued session invites nobody.
    let s3 = launch(&mut f, ADULT, "kart-rally", 7, 100).unwrap();
    conflict(invite(&mut f, &s3, 5), "once it runs");
}

#[test]
fn a_kid_guest_keeps_their_rating_and_minutes() {
    let (mut f, s) = friends();
    end(&mut f, &s);
    let noir = launch(&mut f, ADULT, "night-city-noir", 18, 100).unwrap();
    run(&mut f, &noir);
    invite(&mut f, &noir, 1).unwrap();
    let refused = join(&mut f, 1, TOM, 18).unwrap_err();
    assert!(
        matches!(&refused, Rejected::LaunchRefused { reason: LaunchRefusal::AgeRating, detail }
            if detail.contains("above Tom's PEGI 7")),
        "{refused:?}"
    );
    // Refused, nothing used: Zoe may still take the invite.
    join(&mut f, 1, ZOE, 18).unwrap();
    end(&mut f, &noir);

    // Tom, 30 minutes a day: a guest's play lasts what is left of them.
    let kart = launch(&mut f, ADULT, "kart-rally", 7, 100).unwrap();
    run(&mut f, &kart);
    invite(&mut f, &kart, 2).unwrap();
    join(&mut f, 2, TOM, 7).unwrap();
    let g = f
        .instance(&kart)
        .session
        .as_ref()
        .unwrap()
        .share
        .guest
        .clone();
    let g = g.unwrap();
    assert_eq!(g.until_ms - g.joined_at_ms, 30 * MIN);
    f.at += 31 * MIN;
    assert_eq!(guest_of(&f, TOM), None, "his minutes are up");
    invite(&mut f, &kart, 3).unwrap();
    let (reason, detail) = match join(&mut f, 3, TOM, 7) {
        Err(Rejected::LaunchRefused { reason, detail }) => (reason, detail),
        other => panic!("{other:?}"),
    };
    assert_eq!(reason, LaunchRefusal::DailyLimit, "{detail}");
}
