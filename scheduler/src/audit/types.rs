//! An audit event, the chain's head, and the chain's check.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash before the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audited command or refusal. Field order matters: the hash covers the fields in this
/// order, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// `ae-<log index>-<n>`: where it sits in the log, its order in the chain.
    pub id: String,
    /// Its place in the chain (1 for the first event ever).
    pub number: u64,
    pub at_ms: i64,
    /// `user:<id>`, `key:<id>`, `node:<id>`, `system` or `anonymous`.
    pub actor: String,
    /// The client's address (empty for the system's own commands).
    pub source: String,
    /// The API request behind it (`X-Request-Id`; empty for the system's own commands).
    pub request_id: String,
    /// The command's kind (`create_instance`, `start_login_session`, …), or `refused_request`.
    pub action: String,
    /// What it acted on, as `kind/id` (`instance/i-…`, `project/prj-…`, `user/usr_…`).
    pub resource: String,
    /// The organisation it belongs to, when it belongs to one.
    pub org: Option<String>,
    pub project: Option<String>,
    /// For an event about a user that belongs to no organisation (a log-in, a password or
    /// two-step change): the organisations the user was a member of, whose owners and admins
    /// see it too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_of: Vec<String>,
    /// What changed, in words, where the action and resource alone do not say it (a host's
    /// new state and why, the GPUs marked unhealthy).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// `ok`, or `refused: <why>`.
    pub outcome: String,
    /// The previous event's hash ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// SHA-256 over `prev_hash` and every field above, hex.
    pub hash: String,
}

#[derive(Serialize)]
struct Hashed<'a> {
    id: &'a str,
    number: u64,
    at_ms: i64,
    actor: &'a str,
    source: &'a str,
    request_id: &'a str,
    action: &'a str,
    resource: &'a str,
    org: &'a Option<String>,
    project: &'a Option<String>,
    /// Not in the hash when empty: events from before it existed keep their hashes.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    member_of: &'a [String],
    /// Not in the hash when empty, likewise.
    #[serde(skip_serializing_if = "str::is_empty")]
    detail: &'a str,
    outcome: &'a str,
    prev_hash: &'a str,
}

impl AuditEvent {
    /// The hash this event's fields give (what `hash` must be).
    pub fn compute_hash(&self) -> String {
        let content = serde_json::to_vec(&Hashed {
            id: &self.id,
            number: self.number,
            at_ms: self.at_ms,
            actor: &self.actor,
            source: &self.source,
            request_id: &self.request_id,
            action: &self.action,
            resource: &self.resource,
            org: &self.org,
            project: &self.project,
            member_of: &self.member_of,
            detail: &self.detail,
            outcome: &self.outcome,
            prev_hash: &self.prev_hash,
        })
        .expect("an audit event encodes");
        hex::encode(Sha256::digest(content))
    }
}

/// The end of the chain so far (replicated state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub events: u64,
    pub hash: String,
}

impl Default for AuditHead {
    fn default() -> Self {
        AuditHead {
            events: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

/// Where a chain breaks, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Break {
    #[error(
        "event {id} (number {number}) was changed: its hash is {stored} but its fields give {computed}"
    )]
    Altered {
        id: String,
        number: u64,
        stored: String,
        computed: String,
    },
    #[error(
        "event {id} (number {number}) does not follow the one before it: it names {names} as the previous hash, the one before hashes to {previous} (an event was removed, inserted or reordered)"
    )]
    Unlinked {
        id: String,
        number: u64,
        names: String,
        previous: String,
    },
    #[error("event {id} is number {number} where number {expected} was due (an event is missing)")]
    Gap {
        id: String,
        number: u64,
        expected: u64,
    },
}

/// Checks events given in chain order, from event number `from.0` whose predecessor hashes to
/// `from.1` ([`GENESIS`] and 1 for the whole chain). Returns how many were checked.
pub fn verify<'a>(
    events: impl IntoIterator<Item = &'a AuditEvent>,
    from: (u64, &str),
) -> Result<u64, Break> {
    let (mut expected, prev) = from;
    let mut prev = prev.to_owned();
    let mut checked = 0;
    for e in events {
        if e.number != expected {
            return Err(Break::Gap {
                id: e.id.clone(),
                number: e.number,
                expected,
            });
        }
        if e.prev_hash != prev {
            return Err(Break::Unlinked {
                id: e.id.clone(),
                number: e.number,
                names: e.prev_hash.clone(),
                previous: prev,
            });
        }
        let computed = e.compute_hash();
        if computed != e.hash {
            return Err(Break::Altered {
                id: e.id.clone(),
                number: e.number,
                stored: e.hash.clone(),
                computed,
            });
        }
        prev = e.hash.clone();
        expected += 1;
        checked += 1;
    }
    Ok(checked)
}
