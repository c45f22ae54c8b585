//! Gaming in `apply`: households' profiles, the parental PIN and its unlocks, entitlements,
//! and the checks a launch passes (invariant 15: a launch past the hours left, past a kid's
//! limit or above their age rating is refused here, with the reason and what can be done).

use vmcloud_proto::pb;
use vmcloud_proto::{OrgId, ProjectId, UserId};

use crate::billing::types::{date_of, period_bounds, period_of};
use crate::clock::rfc3339;
use crate::gaming::types::{
    Entitlement, EntitlementKind, Household, MAX_PROFILES, PIN_LOCK_MS, PIN_TRIES, Profile,
    UNLOCK_MS,
};
use crate::state::rejected::LaunchRefusal;
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};
use crate::tenancy::types::OrgKind;

const DAY_MS: i64 = 86_400_000;

fn refuse(reason: LaunchRefusal, detail: String) -> Rejected {
    Rejected::LaunchRefused { reason, detail }
}

/// Hours and minutes, for people.
pub fn hm(ms: i64) -> String {
    let m = ms.max(0) / 60_000;
    match (m / 60, m % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m:02} min"),
    }
}

/// A kid's rules as a command gives them, checked: birth year, minutes a day, allowed hours.
type KidRules = (Option<i32>, Option<u32>, Option<(u8, u8)>);

/// Checks a profile's kid settings as a command gives them.
fn kid_settings(
    kid: bool,
    birth_year: i32,
    daily_limit_min: u32,
    from_h: u32,
    to_h: u32,
    year: i32,
) -> Result<KidRules, Rejected> {
    if !kid {
        if birth_year != 0 || daily_limit_min != 0 || from_h != 0 || to_h != 0 {
            return Err(Rejected::Invalid(
                "birth year, daily limit and allowed hours are for kid profiles: set `kid` too, or leave them out".into(),
            ));
        }
        return Ok((None, None, None));
    }
    if birth_year != 0 && !(year - 120..=year).contains(&birth_year) {
        return Err(Rejected::Invalid(format!(
            "birth year {birth_year} is not a year of birth (from {} to {year})",
            year - 120
        )));
    }
    if daily_limit_min > 24 * 60 {
        return Err(Rejected::Invalid(format!(
            "a daily limit of {daily_limit_min} minutes is more than a day: give 1 to 1440, or 0 for none"
        )));
    }
    let hours = match (from_h, to_h) {
        (0, 0) => None,
        (f, t) if f < t && t <= 24 => Some((f as u8, t as u8)),
        (f, t) => {
            return Err(Rejected::Invalid(format!(
                "allowed hours {f}–{t} are not a span of the day: give from < to, within 0–24 (e.g. 14–19)"
            )));
        }
    };
    Ok((
        (birth_year != 0).then_some(birth_year),
        (daily_limit_min != 0).then_some(daily_limit_min),
        hours,
    ))
}

fn check_name(name: &str) -> Result<String, Rejected> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 40 {
        return Err(Rejected::Invalid(
            "a profile's name is 1 to 40 characters".into(),
        ));
    }
    Ok(name.to_owned())
}

impl ClusterState {
    /// The household of `org`: refused unless it is one.
    fn household_org(&self, org: &str) -> Result<OrgId, Rejected> {
        let id = OrgId::parse(org).map_err(|e| Rejected::Invalid(e.to_string()))?;
        let o = self
            .organisations
            .get(&id)
            .ok_or_else(|| Rejected::NotFound(format!("organisation {id}")))?;
        if o.kind != OrgKind::Household {
            return Err(Rejected::Conflict(format!(
                "organisation {id} is a {}, not a household: profiles and entitlements are for gaming households",
                o.kind.as_str()
            )));
        }
        Ok(id)
    }

    pub(crate) fn create_profile(&mut self, c: pb::CreateProfile, at: i64) -> ApplyResult {
        let org = self.household_org(&c.org_id)?;
        if !c.profile_id.starts_with("pf-") || c.profile_id.len() > 40 {
            return Err(Rejected::Invalid(format!(
                "`{}` is not a profile id (pf-…)",
                c.profile_id
            )));
        }
        let name = check_name(&c.name)?;
        let year = date_of(at).year();
        let (birth_year, daily_limit_min, allowed_hours) = kid_settings(
            c.kid,
            c.birth_year,
            c.daily_limit_min,
            c.allowed_from_h,
            c.allowed_to_h,
            year,
        )?;
        let user = if c.user_id.is_empty() {
            None
        } else {
            let u = UserId::parse(&c.user_id).map_err(|e| Rejected::Invalid(e.to_string()))?;
            if !self.organisations[&org].members.contains_key(&u) {
                return Err(Rejected::Invalid(format!(
                    "user {u} is not a member of household {org}: invite them first"
                )));
            }
            Some(u)
        };
        let household = self.gaming.households.entry(org.clone()).or_default();
        if household.profiles.contains_key(&c.profile_id) {
            return Err(Rejected::Exists(format!("profile {}", c.profile_id)));
        }
        if household.profiles.len() >= MAX_PROFILES {
            return Err(Rejected::Conflict(format!(
                "household {org} has {MAX_PROFILES} profiles, the most a household has: remove one before adding another"
            )));
        }
        if let Some(p) = household
            .profiles
            .values()
            .find(|p| p.name.to_lowercase() == name.to_lowercase())
        {
            return Err(Rejected::Exists(format!(
                "a profile named `{}` ({})",
                p.name, p.id
            )));
        }
        if let Some(u) = &user
            && let Some(p) = household
                .profiles
                .values()
                .find(|p| p.user.as_ref() == Some(u))
        {
            return Err(Rejected::Conflict(format!(
                "user {u} already plays as profile {} ({})",
                p.name, p.id
            )));
        }
        household.profiles.insert(
            c.profile_id.clone(),
            Profile {
                id: c.profile_id,
                name,
                kid: c.kid,
                birth_year,
                daily_limit_min,
                allowed_hours,
                user,
                created_at_ms: at,
            },
        );
        Ok(Applied::Done)
    }

    pub(crate) fn update_profile(&mut self, c: pb::UpdateProfile, at: i64) -> ApplyResult {
        let org = self.household_org(&c.org_id)?;
        let name = check_name(&c.name)?;
        let (birth_year, daily_limit_min, allowed_hours) = kid_settings(
            c.kid,
            c.birth_year,
            c.daily_limit_min,
            c.allowed_from_h,
            c.allowed_to_h,
            date_of(at).year(),
        )?;
        let household = self
            .gaming
            .households
            .get_mut(&org)
            .filter(|h| h.profiles.contains_key(&c.profile_id))
            .ok_or_else(|| Rejected::NotFound(format!("profile {}", c.profile_id)))?;
        if household
            .profiles
            .values()
            .any(|p| p.id != c.profile_id && p.name.to_lowercase() == name.to_lowercase())
        {
            return Err(Rejected::Exists(format!("a profile named `{name}`")));
        }
        let p = household.profiles.get_mut(&c.profile_id).expect("checked");
        p.name = name;
        p.kid = c.kid;
        p.birth_year = birth_year;
        p.daily_limit_min = daily_limit_min;
        p.allowed_hours = allowed_hours;
        Ok(Applied::Done)
    }

    pub(crate) fn delete_profile(&mut self, c: pb::DeleteProfile) -> ApplyResult {
        let org = self.household_org(&c.org_id)?;
        if !self
            .gaming
            .households
            .get(&org)
            .is_some_and(|h| h.profiles.contains_key(&c.profile_id))
        {
            return Err(Rejected::NotFound(format!("profile {}", c.profile_id)));
        }
        if let Some(s) = self
            .projects_of_org(&org)
            .into_iter()
            .find_map(|p| self.live_session(&p, Some(&c.profile_id)))
        {
            return Err(Rejected::Conflict(format!(
                "profile {} is playing (session {}): end the session first",
                c.profile_id, s.id
            )));
        }
        let household = self.gaming.households.get_mut(&org).expect("checked");
        household.profiles.remove(&c.profile_id);
        household.unlocks.retain(|u| u.profile != c.profile_id);
        household
            .entitlements
            .retain(|e| e.profile.as_deref() != Some(&c.profile_id));
        Ok(Applied::Done)
    }

    pub(crate) fn set_parental_pin(&mut self, c: pb::SetParentalPin) -> ApplyResult {
        let org = self.household_org(&c.org_id)?;
        if !c.pin_hash.starts_with("$argon2") {
            return Err(Rejected::Invalid(
                "the PIN arrives hashed (argon2id), never as digits".into(),
            ));
        }
        if !(-12 * 60..=14 * 60).contains(&c.utc_offset_min) {
            return Err(Rejected::Invalid(format!(
                "a UTC offset of {} minutes is not a time zone's (−720 to +840)",
                c.utc_offset_min
            )));
        }
        let household = self.gaming.households.entry(org).or_default();
        household.pin_hash = Some(c.pin_hash);
        household.pin_failures = 0;
        household.pin_locked_until_ms = None;
        household.utc_offset_min = c.utc_offset_min;
        Ok(Applied::Done)
    }

    pub(crate) fn record_pin_attempt(&mut self, c: pb::RecordPinAttempt, at: i64) -> ApplyResult {
        let org = self.household_org(&c.org_id)?;
        let household = self
            .gaming
            .households
            .get_mut(&org)
            .filter(|h| h.pin_hash.is_some())
            .ok_or_else(|| {
                Rejected::Conflict(format!(
                    "household {org} has no parental PIN: the owner sets one first"
                ))
            })?;
        if !household.profiles.contains_key(&c.profile_id) {
            return Err(Rejected::NotFound(format!("profile {}", c.profile_id)));
        }
        if let Some(until) = household.pin_locked_until_ms
            && at < until
        {
            return Err(Rejected::Conflict(format!(
                "the PIN is locked after {PIN_TRIES} wrong tries, until {}",
                rfc3339(until)
            )));
        }
        if c.ok {
            household.pin_failures = 0;
            household.pin_locked_until_ms = None;
            household
                .unlocks
                .retain(|u| u.until_ms > at && !(u.profile == c.profile_id && u.title == c.title));
            household.unlocks.push(crate::gaming::types::Unlock {
                profile: c.profile_id,
                title: c.title,
                until_ms: at + UNLOCK_MS,
            });
        } else {
            household.pin_failures += 1;
            if household.pin_failures >= PIN_TRIES {
                household.pin_failures = 0;
                household.pin_locked_until_ms = Some(at + PIN_LOCK_MS);
            }
        }
        Ok(Applied::Done)
    }

    pub(crate) fn grant_entitlement(&mut self, c: pb::GrantEntitlement, at: i64) -> ApplyResult {
        let org = self.household_org(&c.org_id)?;
        let kind = EntitlementKind::parse(&c.kind).ok_or_else(|| {
            Rejected::Invalid(format!(
                "entitlement kind `{}` is not one of: purchase, subscription, partner-licence, trial",
                c.kind
            ))
        })?;
        if !c.entitlement_id.starts_with("ent-") {
            return Err(Rejected::Invalid(format!(
                "`{}` is not an entitlement id (ent-…)",
                c.entitlement_id
            )));
        }
        if c.title.is_empty() {
            return Err(Rejected::Invalid("an entitlement names a title".into()));
        }
        let ends = (c.ends_at_unix_ms != 0).then_some(c.ends_at_unix_ms);
        match ends {
            None if kind == EntitlementKind::Trial => {
                return Err(Rejected::Invalid(
                    "a trial ends: give its end (ends_at)".into(),
                ));
            }
            Some(e) if e <= at => {
                return Err(Rejected::Invalid(format!(
                    "the end {} is in the past",
                    rfc3339(e)
                )));
            }
            _ => {}
        }
        // A partner's customer: within the partner's allowance.
        if let Some(partner) = self.organisations.get(&org).and_then(|o| o.partner.clone()) {
            let now = self.handed_out(&partner, at);
            self.within_allowance(
                &partner,
                crate::partners::licences::HandedOut {
                    entitlements: now.entitlements + 1,
                    ..now
                },
            )?;
        }
        let household = self.gaming.households.entry(org).or_default();
        let profile = (!c.profile_id.is_empty()).then_some(c.profile_id);
        if let Some(p) = &profile
            && !household.profiles.contains_key(p)
        {
            return Err(Rejected::NotFound(format!("profile {p}")));
        }
        if household
            .entitlements
            .iter()
            .any(|e| e.id == c.entitlement_id)
        {
            return Err(Rejected::Exists(format!(
                "entitlement {}",
                c.entitlement_id
            )));
        }
        household.entitlements.push(Entitlement {
            id: c.entitlement_id,
            title: c.title,
            profile,
            kind,
            granted_at_ms: at,
            ends_at_ms: ends,
        });
        Ok(Applied::Done)
    }

    pub(crate) fn revoke_entitlement(&mut self, c: pb::RevokeEntitlement) -> ApplyResult {
        let org = self.household_org(&c.org_id)?;
        let household = self
            .gaming
            .households
            .get_mut(&org)
            .ok_or_else(|| Rejected::NotFound(format!("entitlement {}", c.entitlement_id)))?;
        let before = household.entitlements.len();
        household.entitlements.retain(|e| e.id != c.entitlement_id);
        if household.entitlements.len() == before {
            return Err(Rejected::NotFound(format!(
                "entitlement {}",
                c.entitlement_id
            )));
        }
        Ok(Applied::Done)
    }

    /// Playtime of `org` over `[from, to)` at `at` (closed spans, and running sessions so
    /// far), all profiles (the household's own sessions: what its hours pay for) or one (a
    /// Share-Play guest's time in a friend's session too: what a kid's minutes count).
    pub fn played_ms(
        &self,
        org: &OrgId,
        profile: Option<&str>,
        from: i64,
        to: i64,
        at: i64,
    ) -> i64 {
        let within = |a: i64, b: i64| (b.min(to) - a.max(from)).max(0);
        let closed: i64 = self
            .gaming
            .played
            .get(org)
            .into_iter()
            .flatten()
            .filter(|p| match profile {
                Some(q) => p.profile == q,
                None => !p.guest,
            })
            .map(|p| within(p.from_ms, p.to_ms))
            .sum();
        let guest: i64 = match profile {
            Some(q) => self
                .projects_of_org(org)
                .into_iter()
                .filter_map(|p| self.guest_in(&p, q, at))
                .map(|(_, g)| within(g.joined_at_ms, g.until_ms.min(at)))
                .sum(),
            None => 0,
        };
        let running: i64 = self
            .projects_of_org(org)
            .into_iter()
            .flat_map(|p| {
                self.index
                    .per_project
                    .get(&p)
                    .into_iter()
                    .flatten()
                    .cloned()
            })
            .filter_map(|(_, id)| self.instances.get(&id))
            .filter(|i| {
                i.session.as_ref().is_some_and(|s| {
                    s.profile.is_some() && profile.is_none_or(|q| s.profile.as_deref() == Some(q))
                })
            })
            .filter_map(|i| i.meter_from_ms.map(|f| within(f, at)))
            .sum();
        closed + running + guest
    }

    /// A kid's rules for playing `title` (rated `pegi`) at `at`: their age rating (unless a
    /// parent unlocked it: then `true`, for the caller to use the unlock up), their allowed
    /// hours, and what is left of their minutes today (`None`: no daily limit). Grown-ups
    /// pass with `(None, false)`.
    pub(crate) fn kid_rules(
        &self,
        org: &OrgId,
        household: &Household,
        profile: &Profile,
        title: &str,
        pegi: u32,
        at: i64,
    ) -> Result<(Option<i64>, bool), Rejected> {
        if !profile.kid {
            return Ok((None, false));
        }
        let local = at + i64::from(household.utc_offset_min) * 60_000;
        let mut unlocked = false;
        let limit = profile.pegi_limit(date_of(local).year());
        if pegi as u8 > limit {
            unlocked = household
                .unlocks
                .iter()
                .any(|u| u.profile == profile.id && u.title == title && at < u.until_ms);
            if !unlocked {
                return Err(refuse(
                    LaunchRefusal::AgeRating,
                    format!(
                        "{title} is rated PEGI {pegi}, above {}'s PEGI {limit}: a parent can unlock it for one session with the PIN, or {} can ask a parent",
                        profile.name, profile.name
                    ),
                ));
            }
        }
        if let Some((from_h, to_h)) = profile.allowed_hours {
            let hour = (local.rem_euclid(DAY_MS) / 3_600_000) as u8;
            if hour < from_h || hour >= to_h {
                return Err(refuse(
                    LaunchRefusal::OutsideAllowedHours,
                    format!(
                        "{} may play from {from_h}:00 to {to_h}:00 (household time); it is {hour}:{:02} now",
                        profile.name,
                        local.rem_euclid(3_600_000) / 60_000
                    ),
                ));
            }
        }
        let Some(limit) = profile.daily_limit_min else {
            return Ok((None, unlocked));
        };
        let day_start = local - local.rem_euclid(DAY_MS) - (local - at);
        let today = self.played_ms(org, Some(&profile.id), day_start, day_start + DAY_MS, at);
        let left = i64::from(limit) * 60_000 - today;
        if left <= 0 {
            return Err(refuse(
                LaunchRefusal::DailyLimit,
                format!(
                    "{} has played {} today, their daily limit: play again tomorrow, or ask a parent to raise the limit",
                    profile.name,
                    hm(today)
                ),
            ));
        }
        Ok((Some(left), unlocked))
    }

    /// Checks a household profile's launch (invariant 15) and gives back how long the session
    /// may last at most (the plan's cap, the hours left, a kid's minutes left today) in ms, and
    /// the partner site whose seat it takes. Uses up a parent's unlock of the title.
    pub(crate) fn admit_launch(
        &mut self,
        project: &ProjectId,
        s: &pb::GameSession,
        at: i64,
    ) -> Result<(i64, Option<String>), Rejected> {
        let org = self
            .projects
            .get(project)
            .map(|p| p.org.clone())
            .ok_or_else(|| Rejected::NotFound(format!("project {project}")))?;
        let household = self
            .gaming
            .households
            .get(&org)
            .ok_or_else(|| Rejected::NotFound(format!("profile {}", s.profile_id)))?;
        let profile = household
            .profiles
            .get(&s.profile_id)
            .ok_or_else(|| Rejected::NotFound(format!("profile {}", s.profile_id)))?
            .clone();
        // The library.
        if !s.title_free
            && !household
                .entitlements
                .iter()
                .any(|e| e.covers(&s.title, &profile.id, at))
        {
            return Err(refuse(
                LaunchRefusal::NoEntitlement,
                format!(
                    "{} is not in {}'s library: buy it, or ask the household's owner to add it",
                    s.title, profile.name
                ),
            ));
        }
        let (kid_left, unlocked) =
            self.kid_rules(&org, household, &profile, &s.title, s.title_pegi, at)?;
        let mut cap = i64::from(s.session_max_s.max(60)) * 1000;
        if let Some(left) = kid_left {
            cap = cap.min(left);
        }
        // The household's hours this month.
        let (allowed, this_month, rollover) =
            hours_left(self, &org, s.monthly_hours, s.rollover_hours, at);
        let left = allowed - this_month;
        if left <= 0 {
            return Err(refuse(
                LaunchRefusal::NoHoursLeft,
                format!(
                    "the household has played {} this month, all of its {} (with {} carried over): buy an hour pack, or move to a bigger plan",
                    hm(this_month),
                    hm(allowed),
                    hm(rollover)
                ),
            ));
        }
        cap = cap.min(left);
        // A partner's site: a seat free.
        let site = self.admit_site(&org, &s.source, &s.device_code)?;
        if unlocked {
            let household = self.gaming.households.get_mut(&org).expect("found above");
            household
                .unlocks
                .retain(|u| !(u.profile == profile.id && u.title == s.title));
        }
        Ok((cap, site))
    }
}

/// A household's hours this month: (allowed — the plan's, the hour packs bought this month
/// and what last month carried over —, played so far, carried over). Unused hours of last
/// month, the plan's and its packs', carry over up to the plan's rollover.
pub fn hours_left(
    state: &ClusterState,
    org: &OrgId,
    monthly_hours: u32,
    rollover_hours: u32,
    at: i64,
) -> (i64, i64, i64) {
    let (month_start, month_end) = period_bounds(&period_of(at)).unwrap_or((at, at));
    let (last_start, _) = period_bounds(&period_of(month_start - 1)).unwrap_or((at, at));
    let monthly = i64::from(monthly_hours) * 3_600_000;
    let last_month = state.played_ms(org, None, last_start, month_start, at);
    let last_packs = state.pack_ms(org, last_start, month_start);
    let rollover = (monthly + last_packs - last_month)
        .max(0)
        .min(i64::from(rollover_hours) * 3_600_000);
    let played = state.played_ms(org, None, month_start, month_end, at);
    let packs = state.pack_ms(org, month_start, month_end);
    (monthly + packs + rollover, played, rollover)
}

impl Household {
    /// The profile a user plays as, if any.
    pub fn profile_of(&self, user: &UserId) -> Option<&Profile> {
        self.profiles
            .values()
            .find(|p| p.user.as_ref() == Some(user))
    }
}

impl ClusterState {
    /// Records connection details' one-time token for a running session of `c.project_id`,
    /// or for its Share-Play guest (`c.project_id` the guest's, with their profile).
    pub(crate) fn issue_stream_token(&mut self, c: pb::IssueStreamToken, at: i64) -> ApplyResult {
        let id = vmcloud_proto::InstanceId::parse(&c.instance_id)
            .map_err(|e| Rejected::Invalid(e.to_string()))?;
        let guest = !c.guest_profile_id.is_empty();
        if guest {
            let project = ProjectId::parse(&c.project_id)
                .map_err(|_| Rejected::NotFound(format!("session {id}")))?;
            if self
                .guest_in(&project, &c.guest_profile_id, at)
                .is_none_or(|(i, _)| i.id != id)
            {
                return Err(Rejected::NotFound(format!("session {id}")));
            }
        }
        let i = self
            .instances
            .get_mut(&id)
            .map(std::sync::Arc::make_mut)
            .filter(|i| (guest || i.project.as_str() == c.project_id) && i.session.is_some())
            .ok_or_else(|| Rejected::NotFound(format!("session {id}")))?;
        if i.state != crate::instances::types::InstanceState::Running {
            return Err(Rejected::Conflict(format!(
                "session {id} is {}, not running: connection details come once it runs",
                match i.state {
                    crate::instances::types::InstanceState::Pending => "waiting in its queue",
                    crate::instances::types::InstanceState::Scheduled => "starting",
                    other => other.as_str(),
                }
            )));
        }
        if c.token_sha256.len() != 32 || c.expires_at_unix_ms <= at {
            return Err(Rejected::Invalid(
                "a stream token is a SHA-256 with an end after now".into(),
            ));
        }
        let session = i.session.as_mut().expect("filtered");
        session.stream_tokens.retain(|t| t.expires_at_ms > at);
        session.stream_tokens.truncate(3);
        session
            .stream_tokens
            .push(crate::sessions::types::StreamToken {
                sha256: c.token_sha256,
                expires_at_ms: c.expires_at_unix_ms,
                used_at_ms: None,
                guest,
            });
        Ok(Applied::Done)
    }

    /// The streaming server takes a token: once, before it expires.
    pub(crate) fn redeem_stream_token(&mut self, c: pb::RedeemStreamToken, at: i64) -> ApplyResult {
        let id = vmcloud_proto::InstanceId::parse(&c.instance_id)
            .map_err(|_| Rejected::NotFound("stream token".into()))?;
        let token = self
            .instances
            .get_mut(&id)
            .map(std::sync::Arc::make_mut)
            .and_then(|i| i.session.as_mut())
            .and_then(|s| {
                s.stream_tokens
                    .iter_mut()
                    .find(|t| t.sha256 == c.token_sha256)
            })
            .ok_or_else(|| Rejected::NotFound("stream token".into()))?;
        if let Some(used) = token.used_at_ms {
            return Err(Rejected::Conflict(format!(
                "this token was used at {}: ask the portal for new connection details",
                rfc3339(used)
            )));
        }
        if at >= token.expires_at_ms {
            return Err(Rejected::Conflict(format!(
                "this token expired at {}: ask the portal for new connection details",
                rfc3339(token.expires_at_ms)
            )));
        }
        token.used_at_ms = Some(at);
        Ok(Applied::Done)
    }
}

impl ClusterState {
    /// A kid asks a parent for a title ("ask a parent").
    pub(crate) fn ask_parent(&mut self, c: pb::AskParent, at: i64) -> ApplyResult {
        let org = self.household_org(&c.org_id)?;
        if !c.request_id.starts_with("req-") || c.title.is_empty() {
            return Err(Rejected::Invalid(
                "a request has an id (req-…) and names a title".into(),
            ));
        }
        let household = self
            .gaming
            .households
            .get_mut(&org)
            .filter(|h| h.profiles.contains_key(&c.profile_id))
            .ok_or_else(|| Rejected::NotFound(format!("profile {}", c.profile_id)))?;
        if household
            .requests
            .iter()
            .any(|r| r.decided.is_none() && r.profile == c.profile_id && r.title == c.title)
        {
            return Err(Rejected::Conflict(format!(
                "{} has asked for {} already: a parent will answer",
                household.profiles[&c.profile_id].name, c.title
            )));
        }
        household
            .requests
            .push(crate::gaming::types::ParentRequest {
                id: c.request_id,
                profile: c.profile_id,
                title: c.title,
                at_ms: at,
                decided: None,
            });
        let kept = crate::gaming::types::KEPT_REQUESTS;
        if household.requests.len() > kept {
            let extra = household.requests.len() - kept;
            household.requests.drain(..extra);
        }
        Ok(Applied::Done)
    }

    /// The owner approves a request (the title is unlocked for the kid's next session) or
    /// declines it.
    pub(crate) fn decide_parent_request(
        &mut self,
        c: pb::DecideParentRequest,
        at: i64,
    ) -> ApplyResult {
        let org = self.household_org(&c.org_id)?;
        let household = self
            .gaming
            .households
            .get_mut(&org)
            .ok_or_else(|| Rejected::NotFound(format!("request {}", c.request_id)))?;
        let request = household
            .requests
            .iter_mut()
            .find(|r| r.id == c.request_id)
            .ok_or_else(|| Rejected::NotFound(format!("request {}", c.request_id)))?;
        if let Some((approved, when)) = request.decided {
            return Err(Rejected::Conflict(format!(
                "request {} was {} at {}",
                c.request_id,
                if approved { "approved" } else { "declined" },
                rfc3339(when)
            )));
        }
        request.decided = Some((c.approve, at));
        if c.approve {
            let (profile, title) = (request.profile.clone(), request.title.clone());
            household
                .unlocks
                .retain(|u| u.until_ms > at && !(u.profile == profile && u.title == title));
            household.unlocks.push(crate::gaming::types::Unlock {
                profile,
                title,
                until_ms: at + UNLOCK_MS,
            });
        }
        Ok(Applied::Done)
    }
}
