//! `apply`'s side of idempotency keys: answer a retry from what the key did, remember what a
//! keyed command does, forget keys after a day. See [`crate::idempotency`].

use vmcloud_proto::pb::{self, command::Body};

use crate::idempotency::types::{KEEP_MS, KeyRecord, Outcome};
use crate::state::{Applied, ApplyResult, ClusterState, Rejected};

/// Keys forgotten per applied command at most, so that one command never pays for a day's.
const FORGET_PER_COMMAND: usize = 64;

/// What a retry of a command that answered with something shown once is told instead.
fn once(body: &Body) -> Option<Outcome> {
    let (detail, location) = match body {
        Body::CreateProject(c) => (
            format!("created project {}", c.project_id),
            format!("/v1/projects/{}", c.project_id),
        ),
        Body::AddApiKey(c) => (
            format!(
                "created API key {} (its secret was shown once; revoke it if it was lost)",
                c.key_id
            ),
            format!("/v1/projects/{}/keys", c.project_id),
        ),
        Body::CreateOrganisation(c) => {
            let id = c
                .organisation
                .as_ref()
                .map(|o| o.org_id.clone())
                .unwrap_or_default();
            (
                format!("created organisation {id}"),
                format!("/v1/organisations/{id}"),
            )
        }
        Body::SignUp(c) => (
            format!(
                "signed up {} (check the mailbox for the verification link)",
                c.email
            ),
            "/v1/login".to_owned(),
        ),
        Body::StartLoginSession(_) | Body::SsoLogin(_) => (
            "started a login session (its token was shown once); log in again".to_owned(),
            "/v1/me/sessions".to_owned(),
        ),
        Body::EnrolTotp(_) | Body::ConfirmTotp(_) => (
            "changed the authenticator app set-up (its secret or recovery codes were shown once)"
                .to_owned(),
            "/v1/me".to_owned(),
        ),
        Body::StartPasswordReset(_) => (
            "sent a password reset link".to_owned(),
            "/v1/password-reset".to_owned(),
        ),
        Body::ResetPassword(_) => (
            "reset the password; log in with the new one".to_owned(),
            "/v1/login".to_owned(),
        ),
        Body::InviteMember(c) => (
            format!("invited {} (the invitation was mailed)", c.email),
            format!("/v1/organisations/{}/members", c.org_id),
        ),
        Body::AcceptInvitation(c) => (
            format!("accepted the invitation to organisation {}", c.org_id),
            format!("/v1/organisations/{}", c.org_id),
        ),
        Body::CreateWebhookEndpoint(c) => (
            format!(
                "created webhook endpoint {} (its signing secret was shown once)",
                c.endpoint_id
            ),
            format!("/v1/webhook-endpoints/{}", c.endpoint_id),
        ),
        Body::CreateJoinToken(c) => (
            format!(
                "created join token {} (its secret was shown once)",
                c.token_id
            ),
            "/v1/join-tokens".to_owned(),
        ),
        _ => return None,
    };
    Some(Outcome::Once { detail, location })
}

impl ClusterState {
    /// Applies a command an API request proposed with an Idempotency-Key: the key's earlier
    /// result when this request's command was applied before, else `dispatch` — remembered
    /// when it did something.
    pub(crate) fn apply_keyed(
        &mut self,
        slot: String,
        request: &pb::Request,
        body: Body,
        at: i64,
        dispatch: impl FnOnce(&mut ClusterState, Body) -> ApplyResult,
    ) -> ApplyResult {
        let kind = crate::state::kinds::command_kind(&body);
        let fingerprint = hex::encode(&request.fingerprint);
        if let Some(record) = self.idempotency_keys.by_key.get(&slot) {
            if record.fingerprint != fingerprint {
                return Err(Rejected::IdempotencyKeyReused(format!(
                    "this Idempotency-Key was used at {} (request {}) for a different request (another method, path or body); use a new key for a new request",
                    crate::clock::rfc3339(record.first_at_ms),
                    record.request_id
                )));
            }
            if let Some((first_kind, outcome)) = record.outcomes.get(&request.seq)
                && first_kind == kind
            {
                return self.replay(outcome.clone(), record.first_at_ms);
            }
        }
        let once = once(&body);
        let result = dispatch(self, body);
        if let Ok(applied) = &result {
            let outcome = match (once, applied) {
                (Some(once), _) => once,
                (None, Applied::Instance(i)) => Outcome::Instance(i.id.clone()),
                (None, Applied::Reservation(r)) => Outcome::Reservation(r.id.clone()),
                (None, Applied::Done) => Outcome::Done,
            };
            let keys = &mut self.idempotency_keys;
            let record = keys
                .by_key
                .entry(slot.clone())
                .or_insert_with(|| KeyRecord {
                    fingerprint,
                    first_at_ms: at,
                    request_id: request.id.clone(),
                    outcomes: Default::default(),
                });
            let first_at = record.first_at_ms;
            record
                .outcomes
                .insert(request.seq, (kind.to_owned(), outcome));
            keys.by_time.insert((first_at, slot));
        }
        result
    }

    fn replay(&self, outcome: Outcome, first_at_ms: i64) -> ApplyResult {
        let gone = |what: String| Rejected::Replayed {
            detail: format!(
                "this Idempotency-Key already made {what} at {}, which is gone since",
                crate::clock::rfc3339(first_at_ms)
            ),
            location: String::new(),
        };
        match outcome {
            Outcome::Done => Ok(Applied::Done),
            Outcome::Instance(id) => match self.instances.get(&id) {
                Some(i) => Ok(Applied::Instance(Box::new(
                    crate::instances::types::Instance::clone(i),
                ))),
                None => Err(gone(format!("instance {id}"))),
            },
            Outcome::Reservation(id) => match self.reservations.get(&id) {
                Some(r) => Ok(Applied::Reservation(Box::new(r.clone()))),
                None => Err(gone(format!("reservation {id}"))),
            },
            Outcome::Once { detail, location } => Err(Rejected::Replayed {
                detail: format!(
                    "this Idempotency-Key already {detail} at {}; it is not done twice",
                    crate::clock::rfc3339(first_at_ms)
                ),
                location,
            }),
        }
    }

    /// Forgets keys first used more than a day before `now` (a few per command).
    pub(crate) fn forget_old_keys(&mut self, now: i64) {
        let keys = &mut self.idempotency_keys;
        for _ in 0..FORGET_PER_COMMAND {
            let Some((first_at, slot)) = keys.by_time.get_min().cloned() else {
                return;
            };
            if first_at > now - KEEP_MS {
                return;
            }
            keys.by_time.remove(&(first_at, slot.clone()));
            keys.by_key.remove(&slot);
        }
    }
}
