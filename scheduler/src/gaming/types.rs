//! What gaming keeps in the replicated state: each household's profiles, parental PIN and
//! unlocks, entitlements, and the playtime its sessions used (from committed commands).

use std::collections::BTreeMap;

use imbl::{OrdMap, Vector};
use serde::{Deserialize, Serialize};
use vmcloud_proto::{InstanceId, OrgId, ProjectId, UserId};

/// Most profiles a household has: the owner's and five more.
pub const MAX_PROFILES: usize = 6;

/// Wrong PINs in a row before the PIN locks.
pub const PIN_TRIES: u32 = 5;

/// How long a PIN stays locked after [`PIN_TRIES`] wrong ones.
pub const PIN_LOCK_MS: i64 = 15 * 60_000;

/// How long an unlock by PIN lasts when no session takes it first.
pub const UNLOCK_MS: i64 = 30 * 60_000;

/// The age a PEGI rating asks for.
pub fn age_for(pegi: u8) -> u8 {
    pegi
}

/// A member of a household who plays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// `pf-<hex>`.
    pub id: String,
    pub name: String,
    /// A kid: the parental rules below apply.
    pub kid: bool,
    /// Kids: the year they were born (their PEGI limit follows).
    pub birth_year: Option<i32>,
    /// Kids: minutes a day they may play (household's local day).
    pub daily_limit_min: Option<u32>,
    /// Kids: the hours of the day they may play, `[from, to)` in the household's local time.
    pub allowed_hours: Option<(u8, u8)>,
    /// A member with a login of their own, when there is one.
    pub user: Option<UserId>,
    pub created_at_ms: i64,
}

impl Profile {
    /// The highest PEGI rating the profile may play without a parent's unlock, in `year`.
    pub fn pegi_limit(&self, year: i32) -> u8 {
        if !self.kid {
            return 18;
        }
        let age = self.birth_year.map_or(0, |b| (year - b).max(0));
        crate::gaming::catalog::PEGI
            .iter()
            .rev()
            .copied()
            .find(|p| i32::from(*p) <= age)
            .unwrap_or(0)
    }
}

/// How a household came to own a title.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntitlementKind {
    Purchase,
    Subscription,
    PartnerLicence,
    Trial,
}

impl EntitlementKind {
    pub const ALL: [EntitlementKind; 4] = [
        EntitlementKind::Purchase,
        EntitlementKind::Subscription,
        EntitlementKind::PartnerLicence,
        EntitlementKind::Trial,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntitlementKind::Purchase => "purchase",
            EntitlementKind::Subscription => "subscription",
            EntitlementKind::PartnerLicence => "partner-licence",
            EntitlementKind::Trial => "trial",
        }
    }

    pub fn parse(s: &str) -> Option<EntitlementKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The right to play a title: the whole household's, or one profile's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entitlement {
    /// `ent-<hex>`.
    pub id: String,
    pub title: String,
    pub profile: Option<String>,
    pub kind: EntitlementKind,
    pub granted_at_ms: i64,
    /// Trials (and licences with a term) end.
    pub ends_at_ms: Option<i64>,
}

impl Entitlement {
    /// Whether it lets `profile` play `title` at `at`.
    pub fn covers(&self, title: &str, profile: &str, at: i64) -> bool {
        self.title == title
            && self.profile.as_deref().is_none_or(|p| p == profile)
            && self.ends_at_ms.is_none_or(|e| at < e)
    }
}

/// A title a parent unlocked for a kid with the PIN: for the next session, or until
/// `until_ms`, whichever comes first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unlock {
    pub profile: String,
    pub title: String,
    pub until_ms: i64,
}

/// A span a profile played (a session on a host: from its placement to its end, cut at
/// months' ends like billing's meters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Played {
    pub profile: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// A Share-Play guest's time in a friend's session: a kid's minutes today count it, the
    /// household's monthly hours do not (the host's session uses the host's).
    #[serde(default)]
    pub guest: bool,
}

/// A household: its profiles and parental settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Household {
    pub profiles: BTreeMap<String, Profile>,
    /// The parental PIN (argon2id, PHC string).
    pub pin_hash: Option<String>,
    /// Wrong PINs in a row.
    pub pin_failures: u32,
    pub pin_locked_until_ms: Option<i64>,
    pub unlocks: Vec<Unlock>,
    pub entitlements: Vec<Entitlement>,
    /// The household's local time: minutes east of UTC (kids' days and allowed hours).
    pub utc_offset_min: i32,
    /// Kids' "ask a parent" requests, newest last (the last [`KEPT_REQUESTS`]).
    #[serde(default)]
    pub requests: Vec<ParentRequest>,
}

/// Requests a household keeps.
pub const KEPT_REQUESTS: usize = 20;

/// A kid asked a parent for a title.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRequest {
    /// `req-<hex>`.
    pub id: String,
    pub profile: String,
    pub title: String,
    pub at_ms: i64,
    /// `None` while it waits; then approved or not, and when.
    pub decided: Option<(bool, i64)>,
}

/// Gaming's part of the state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GamingBook {
    pub households: OrdMap<OrgId, Household>,
    /// Closed playtime, by organisation (recent months only: what fair use and kids' days
    /// need).
    pub played: OrdMap<OrgId, Vector<Played>>,
    /// Warm pools' figures by class key (see [`crate::gaming::warm`]): launches over the
    /// last hour, boot time.
    #[serde(default)]
    pub warm: OrdMap<String, crate::gaming::pools::WarmFigures>,
    /// Share-Play invites by their code's SHA-256 (hex): open ones, and used or expired ones
    /// for a day (so a code used twice is told so).
    #[serde(default)]
    pub invites: OrdMap<String, ShareInvite>,
    /// Profiles playing as Share-Play guests now, by [`guest_key`] (their household's project
    /// and profile): the session they are in (checked against it: a guest's play also ends
    /// with time).
    #[serde(default)]
    pub guests: OrdMap<String, InstanceId>,
    /// Launches a warm VM took while they waited in the queue: the launch's id → the warm
    /// VM's (the session's id since) and when, for a day (see
    /// [`crate::gaming::warm_queue`]).
    #[serde(default)]
    pub moved: OrdMap<InstanceId, (InstanceId, i64)>,
}

/// The key of a Share-Play guest in [`GamingBook::guests`].
pub fn guest_key(project: &ProjectId, profile: &str) -> String {
    format!("{project}/{profile}")
}

/// A Share-Play invite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareInvite {
    pub instance: InstanceId,
    pub expires_at_ms: i64,
    pub used_at_ms: Option<i64>,
}
