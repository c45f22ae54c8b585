//! What the replicated state remembers of each idempotency key.

use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};
use vmcloud_proto::pb::{self, actor::Who};
use vmcloud_proto::{InstanceId, ReservationId};

/// How long a key is remembered after its first use.
pub const KEEP_MS: i64 = 24 * 3600 * 1000;
/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// What one command of a keyed request did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Changed the state and answers nothing of its own: a retry answers `Done` again.
    Done,
    /// Made (or changed) this instance: a retry answers it as it is now.
    Instance(InstanceId),
    Reservation(ReservationId),
    /// Answered with something shown once: a retry is told what was done, and where.
    Once {
        detail: String,
        location: String,
    },
}

/// One key: the request it was first used for, and what that request's commands did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// SHA-256 of method, path and body, hex.
    pub fingerprint: String,
    pub first_at_ms: i64,
    pub request_id: String,
    /// By the command's place in the request: its kind and what it did.
    pub outcomes: OrdMap<u32, (String, Outcome)>,
}

/// Every key remembered, by `"<principal> <key>"`, and the same by first use (to forget them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyKeys {
    pub by_key: OrdMap<String, KeyRecord>,
    pub by_time: OrdSet<(i64, String)>,
}

/// Where a key is remembered: keys are the principal's own (two customers may pick the same
/// key), and an anonymous request's are its address's.
pub fn slot(actor: Option<&pb::Actor>, key: &str) -> String {
    let who = match actor.and_then(|a| a.who.as_ref()) {
        Some(Who::UserId(u)) => format!("user:{u}"),
        Some(Who::ApiKeyId(k)) => format!("key:{k}"),
        Some(Who::NodeId(n)) => format!("node:{n}"),
        Some(Who::System(_)) => "system".to_owned(),
        None => format!(
            "anon:{}",
            actor.map(|a| a.source.as_str()).unwrap_or_default()
        ),
    };
    format!("{who} {key}")
}
