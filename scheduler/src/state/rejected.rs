//! Why a committed command changed nothing. Its own file so that what stores a refusal (the
//! idempotency records) need not import the state.

use serde::{Deserialize, Serialize};

/// A command that was committed but changed nothing, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Rejected {
    #[error("the log entry cannot be decoded")]
    Malformed,
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// Valid, but the state does not allow it now (capacity taken, a reservation full).
    #[error("{0}")]
    Conflict(String),
    /// The principal's role does not allow it (checked again here from the command's actor).
    #[error("{0}")]
    Forbidden(String),
    /// The command's principal is no longer valid (a key revoked, a session ended).
    #[error("{0}")]
    Unauthenticated(String),
    /// A trial organisation asked for more than its trial allows (GPUs, instances).
    #[error("{0}")]
    TrialLimit(String),
    /// The organisation is suspended for unpaid invoices: what is due and how to pay.
    #[error("{0}")]
    Suspended(String),
    /// A pool (public addresses) has nothing free: what is spent and what to do.
    #[error("{0}")]
    Exhausted(String),
    /// A create would take the project past a quota: what is used, the limit, how to ask.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The request's Idempotency-Key was used before for a different request (another
    /// method, path or body).
    #[error("{0}")]
    IdempotencyKeyReused(String),
    /// The request's Idempotency-Key already did this, and what it answered then cannot be
    /// given again (a secret shown once): says what it did and where to look.
    #[error("{detail}")]
    Replayed { detail: String, location: String },
    /// A game launch the household's rules refuse (invariant 15): why, and what can be done.
    #[error("{detail}")]
    LaunchRefused {
        reason: LaunchRefusal,
        detail: String,
    },
}

/// Why a game launch is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LaunchRefusal {
    /// The household has no entitlement to the title.
    NoEntitlement,
    /// Above the kid's age rating, and not unlocked by a parent.
    AgeRating,
    /// The month's hours are used.
    NoHoursLeft,
    /// The kid's minutes for today are used.
    DailyLimit,
    /// Outside the hours the kid may play.
    OutsideAllowedHours,
    /// Every seat of the partner's site the launch came from is in use.
    SiteFull,
}
