//! Share-Play in `apply` (DESIGN.md §8 "Gaming"): the host of a running session invites a
//! friend with a one-time code; a household profile joins with it — the same GPU, a second
//! stream token — for up to 60 minutes; the host ends it, or the guest leaves, or time does.
//! A guest plays nowhere else meanwhile (invariant 7 holds for guests too); a kid guest is held
//! to their rating, hours and minutes (invariant 15); the guest's time counts for a kid's
//! minutes, not for either household's monthly hours beyond the host's own session.

use std::sync::Arc;

use vmcloud_proto::{InstanceId, ProjectId, pb};

use crate::clock::rfc3339;
use crate::gaming::types::{ShareInvite, guest_key};
use crate::instances::types::{Instance, InstanceState};
use crate::sessions::types::{SHARE_PLAY_MS, ShareGuest, StreamToken};
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};

/// Used and expired invites are remembered this long (to say "used at …", not "unknown").
const INVITES_KEPT_MS: i64 = 86_400_000;

/// Whether a session's guest still plays at `at`.
fn playing(g: &ShareGuest, at: i64) -> bool {
    at < g.until_ms
}

impl ClusterState {
    /// The session `profile` of `project` plays in as a Share-Play guest at `at`, with the
    /// guest's details.
    pub fn guest_in(
        &self,
        project: &ProjectId,
        profile: &str,
        at: i64,
    ) -> Option<(&Instance, &ShareGuest)> {
        let id = self.gaming.guests.get(&guest_key(project, profile))?;
        let i = self.instances.get(id)?;
        let g = i.session.as_ref()?.share.guest.as_ref()?;
        (&g.project == project && g.profile == profile && playing(g, at)).then_some((&**i, g))
    }

    /// The host's session `instance` of `project`, to change its Share-Play.
    fn shared_session<'i>(
        instances: &'i mut imbl::OrdMap<InstanceId, Arc<Instance>>,
        project: &str,
        instance: &str,
    ) -> Result<&'i mut Instance, Rejected> {
        let id = InstanceId::parse(instance)
            .map_err(|_| Rejected::NotFound(format!("session {instance}")))?;
        instances
            .get_mut(&id)
            .filter(|i| i.project.as_str() == project && i.session.is_some() && !i.is_warm())
            .map(Arc::make_mut)
            .ok_or_else(|| Rejected::NotFound(format!("session {id}")))
    }

    /// The host invites a friend: a code for one guest, valid a few minutes.
    pub(crate) fn invite_share_play(&mut self, c: pb::InviteSharePlay, at: i64) -> ApplyResult {
        if c.code_sha256.len() != 32 || c.expires_at_unix_ms <= at {
            return Err(Rejected::Invalid(
                "an invite's code is a SHA-256 with an end after now".into(),
            ));
        }
        let key = hex::encode(&c.code_sha256);
        if self.gaming.invites.contains_key(&key) {
            return Err(Rejected::Conflict(
                "this code was given before: ask for another invite".into(),
            ));
        }
        let i = Self::shared_session(&mut self.instances, &c.project_id, &c.instance_id)?;
        if i.state != InstanceState::Running {
            return Err(Rejected::Conflict(format!(
                "session {} is {}: invite a friend once it runs",
                i.id,
                match i.state {
                    InstanceState::Pending => "waiting in its queue",
                    InstanceState::Scheduled => "starting",
                    other => other.as_str(),
                }
            )));
        }
        let share = &i.session.as_ref().expect("a session").share;
        if let Some(g) = share.guest.as_ref().filter(|g| playing(g, at)) {
            return Err(Rejected::Conflict(format!(
                "{} plays along until {}: end their Share-Play before inviting someone else",
                g.name,
                rfc3339(g.until_ms)
            )));
        }
        // A guest whose time is over leaves now; an unused invite is replaced.
        crate::billing::meters::end_guest(&mut self.gaming.played, i, at);
        let id = i.id.clone();
        i.session.as_mut().expect("a session").share.invite =
            Some((key.clone(), c.expires_at_unix_ms));
        let stale: Vec<String> = self
            .gaming
            .invites
            .iter()
            .filter(|(_, v)| {
                (v.instance == id && v.used_at_ms.is_none())
                    || v.expires_at_ms + INVITES_KEPT_MS < at
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.gaming.invites.remove(&k);
        }
        self.gaming.invites.insert(
            key,
            ShareInvite {
                instance: id,
                expires_at_ms: c.expires_at_unix_ms,
                used_at_ms: None,
            },
        );
        Ok(Applied::Done)
    }

    /// A household profile joins the session an invite's code names.
    pub(crate) fn join_share_play(&mut self, c: pb::JoinSharePlay, at: i64) -> ApplyResult {
        let key = hex::encode(&c.code_sha256);
        let invite = self
            .gaming
            .invites
            .get(&key)
            .cloned()
            .ok_or_else(|| Rejected::NotFound("a Share-Play invite with this code".into()))?;
        if let Some(used) = invite.used_at_ms {
            return Err(Rejected::Conflict(format!(
                "this code was used at {}: a code lets one friend in once; ask the host for a new invite",
                rfc3339(used)
            )));
        }
        if at >= invite.expires_at_ms {
            return Err(Rejected::Conflict(format!(
                "this code expired at {}: ask the host for a new invite",
                rfc3339(invite.expires_at_ms)
            )));
        }
        let host = self
            .instances
            .get(&invite.instance)
            .filter(|i| {
                i.state == InstanceState::Running
                    && i.session
                        .as_ref()
                        .is_some_and(|s| s.share.invite.as_ref().is_some_and(|(k, _)| *k == key))
            })
            .ok_or_else(|| {
                Rejected::Conflict(
                    "the session this code invites to has ended (or its host made a new invite): ask the host for a new one"
                        .into(),
                )
            })?
            .clone();
        let spec = host.session.as_ref().expect("a session");
        // The guest: a profile of the household owning the guest's project.
        let guest_project = ProjectId::parse(&c.guest_project_id)
            .map_err(|_| Rejected::NotFound(format!("project {}", c.guest_project_id)))?;
        let org = self
            .projects
            .get(&guest_project)
            .map(|p| p.org.clone())
            .ok_or_else(|| Rejected::NotFound(format!("project {guest_project}")))?;
        let household = self
            .gaming
            .households
            .get(&org)
            .filter(|h| h.profiles.contains_key(&c.guest_profile_id))
            .ok_or_else(|| Rejected::NotFound(format!("profile {}", c.guest_profile_id)))?;
        let profile = household.profiles[&c.guest_profile_id].clone();
        if host.project == guest_project && spec.profile.as_deref() == Some(&profile.id) {
            return Err(Rejected::Invalid(
                "this is your own session: send the code to a friend".into(),
            ));
        }
        // Invariant 7 for guests: one session at a time, one's own or a friend's.
        if let Some(own) = self.live_session(&guest_project, Some(&profile.id)) {
            return Err(Rejected::Conflict(format!(
                "{} is playing in session {}: end it before joining a friend's",
                profile.name, own.id
            )));
        }
        if let Some((other, _)) = self.guest_in(&guest_project, &profile.id, at) {
            return Err(Rejected::Conflict(format!(
                "{} already plays along in session {}: leave it before joining another",
                profile.name, other.id
            )));
        }
        // Invariant 15 for guests: a kid's rating, hours and minutes today.
        let (kid_left, unlocked) =
            self.kid_rules(&org, household, &profile, &spec.title, c.title_pegi, at)?;
        if c.token_sha256.len() != 32 || c.token_expires_at_unix_ms <= at {
            return Err(Rejected::Invalid(
                "a stream token is a SHA-256 with an end after now".into(),
            ));
        }
        let mut until = at + SHARE_PLAY_MS;
        if let Some(end) = host.terminate_at_ms {
            until = until.min(end);
        }
        if let Some(left) = kid_left {
            until = until.min(at + left);
        }
        if unlocked {
            let title = spec.title.clone();
            let household = self.gaming.households.get_mut(&org).expect("found above");
            household
                .unlocks
                .retain(|u| !(u.profile == profile.id && u.title == title));
        }
        let guest = ShareGuest {
            org,
            project: guest_project.clone(),
            profile: profile.id.clone(),
            name: profile.name.clone(),
            joined_at_ms: at,
            until_ms: until,
        };
        let i = Arc::make_mut(
            self.instances
                .get_mut(&invite.instance)
                .expect("found above"),
        );
        let session = i.session.as_mut().expect("a session");
        session.share.invite = None;
        session.share.guest = Some(guest);
        session.stream_tokens.retain(|t| t.expires_at_ms > at);
        session.stream_tokens.push(StreamToken {
            sha256: c.token_sha256,
            expires_at_ms: c.token_expires_at_unix_ms,
            used_at_ms: None,
            guest: true,
        });
        if let Some(v) = self.gaming.invites.get_mut(&key) {
            v.used_at_ms = Some(at);
        }
        // Guests whose play ended with time (or with their session) are forgotten.
        let gone: Vec<String> = self
            .gaming
            .guests
            .iter()
            .filter(|(k, id)| {
                !self.instances.get(*id).is_some_and(|i| {
                    i.session
                        .as_ref()
                        .and_then(|s| s.share.guest.as_ref())
                        .is_some_and(|g| playing(g, at) && guest_key(&g.project, &g.profile) == **k)
                })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.gaming.guests.remove(&k);
        }
        self.gaming.guests.insert(
            guest_key(&guest_project, &profile.id),
            invite.instance.clone(),
        );
        Ok(Applied::Done)
    }

    /// The host ends the guest's play, or the guest leaves.
    pub(crate) fn end_share_play(&mut self, c: pb::EndSharePlay, at: i64) -> ApplyResult {
        let id = InstanceId::parse(&c.instance_id)
            .map_err(|_| Rejected::NotFound(format!("session {}", c.instance_id)))?;
        let i = self
            .instances
            .get_mut(&id)
            .filter(|i| {
                let guest = i
                    .session
                    .as_ref()
                    .and_then(|s| s.share.guest.as_ref())
                    .filter(|g| playing(g, at));
                if c.guest_profile_id.is_empty() {
                    i.project.as_str() == c.project_id && i.session.is_some()
                } else {
                    guest.is_some_and(|g| {
                        g.project.as_str() == c.project_id && g.profile == c.guest_profile_id
                    })
                }
            })
            .map(Arc::make_mut)
            .ok_or_else(|| Rejected::NotFound(format!("session {id}")))?;
        let share = &i.session.as_ref().expect("a session").share;
        if share.guest.is_none() && share.invite.is_none() {
            return Err(Rejected::Conflict(format!(
                "session {id} has no Share-Play to end: nobody is invited or playing along"
            )));
        }
        if let Some(g) = &share.guest {
            self.gaming
                .guests
                .remove(&guest_key(&g.project, &g.profile));
        }
        if let Some((key, _)) = &share.invite {
            self.gaming.invites.remove(key);
        }
        crate::billing::meters::end_guest(&mut self.gaming.played, i, at);
        Ok(Applied::Done)
    }
}
